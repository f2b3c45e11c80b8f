#!/usr/bin/python3
"""phantom.py - a seeded CT-like (or MR-like) abdominal phantom with a label map.

Writes the image as NIfTI (int16 HU for CT), the label map as NIfTI (uint8),
and optionally a DICOM series (one file per slice) and a perturbed copy of
the label map (for seg-eval tests).  Nothing here is random unless seeded:
the same arguments give the same bytes.

Geometry: voxel (i,j,k) = (x,y,z) with spacing --spacing (default 0.8x0.8x2.5
mm); the grid is rotated in world space by --rotate (degrees about the L, P
and S axes, default 5,0,10), so the direction matrix is not diagonal and the
DICOM ImageOrientationPatient is oblique.  World coordinates are LPS (as
DICOM); the NIfTI affine is the same geometry in RAS.  The DICOM series has
ImagePositionPatient = origin + k * spacing_z * (row x col), so a reader that
orders slices by position along the normal rebuilds exactly the NIfTI grid.

Labels (CT HU in brackets):
  1 liver [60]        2 spleen [50]       3 kidney_left [35]
  4 kidney_right [35] 5 vertebra [450]    6 lesion (small, inside the liver) [10]
plus a few small "speckle" components of labels 1-3 (3..8 voxels, in soft
tissue, image unchanged) that a connected-component clean-up should remove.
Unlabelled: air -1000, subcutaneous fat -100, muscle 45, aorta 180,
lungs -850 (upper slices).  Gaussian noise (sigma --noise, HU).

DICOM: written by DCMTK's dump2dcm (default, --dicom-writer dcmtk) from a
text dump plus a raw pixel file per slice; --dicom-writer pydicom uses
pydicom instead.  CT: int16 stored values, RescaleIntercept -1024, slope 1
(stored = HU + 1024).  MR: uint16, no rescale.

Examples:
  tests/gen/phantom.py --image ct.nii.gz --label seg.nii.gz --dicom ct/
  tests/gen/phantom.py --size 64x64x16 --seed 3 --image a.nii.gz --label a_seg.nii.gz \\
      --perturbed a_pred.nii.gz
"""
import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

LABELS = {1: "liver", 2: "spleen", 3: "kidney_left", 4: "kidney_right",
          5: "vertebra", 6: "lesion"}


def parse_x(s, n, typ):
    parts = s.lower().split("x")
    if len(parts) != n:
        raise argparse.ArgumentTypeError("expected %d values separated by 'x': %s" % (n, s))
    try:
        v = [typ(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError("bad number in %s" % s)
    if any(x <= 0 for x in v):
        raise argparse.ArgumentTypeError("values must be positive: %s" % s)
    return v


def rot(angles_deg):
    """rotation matrix: about L (x), then P (y), then S (z) axes"""
    a, b, c = np.radians(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def geometry(size, spacing, angles, origin=None):
    """LPS direction matrix D (columns: step along i, j, k in mm) and origin of voxel 0"""
    R = rot(angles)
    D = R @ np.diag(spacing)
    if origin is None:
        # put the grid centre at world (0, 0, 0) shifted a little, as scanners do
        centre = np.array([(n - 1) / 2.0 for n in size])
        origin = -D @ centre + np.array([3.5, -12.25, -150.0])
    return D, np.asarray(origin, float)


def make_phantom(size, spacing, seed, modality="ct", noise=12.0):
    nx, ny, nz = size
    sx, sy, sz = spacing
    rng = np.random.default_rng(seed)
    # physical coordinates (mm) relative to the grid centre, arrays of shape (Z, Y, X)
    z = (np.arange(nz) - (nz - 1) / 2.0) * sz
    y = (np.arange(ny) - (ny - 1) / 2.0) * sy
    x = (np.arange(nx) - (nx - 1) / 2.0) * sx
    Z, Y, X = np.meshgrid(z, y, x, indexing="ij")
    a = 0.44 * nx * sx          # body semi-axes (mm)
    b = 0.34 * ny * sy
    hz = max(nz * sz / 2.0, 1e-6)
    # small seeded jitter of organ positions so that seeds differ visibly
    jit = rng.uniform(-0.04, 0.04, size=(8, 3))
    U, V, W = X / a, Y / b, Z / hz   # normalised coordinates

    def ell(cu, cv, cw, ru, rv, rw, j):
        cu, cv, cw = cu + jit[j, 0], cv + jit[j, 1], cw + jit[j, 2]
        return ((U - cu) / ru) ** 2 + ((V - cv) / rv) ** 2 + ((W - cw) / rw) ** 2 <= 1.0

    # body tapers slightly towards the ends
    taper = 1.0 - 0.08 * W ** 2
    body = (U / taper) ** 2 + (V / taper) ** 2 <= 1.0
    inner = (U / (0.88 * taper)) ** 2 + (V / (0.86 * taper)) ** 2 <= 1.0

    lab = np.zeros((nz, ny, nx), np.uint8)
    liver = ell(-0.42, -0.12, 0.15, 0.40, 0.50, 0.75, 0) & inner
    spleen = ell(0.52, 0.18, 0.30, 0.17, 0.26, 0.45, 1) & inner
    kid_l = ell(0.36, 0.46, -0.20, 0.13, 0.20, 0.45, 2) & inner
    kid_r = ell(-0.36, 0.46, -0.28, 0.13, 0.20, 0.45, 3) & inner
    vert = (((U - 0.0) / 0.13) ** 2 + ((V - 0.74) / (0.13 * a / b)) ** 2 <= 1.0) & inner & (np.abs(W) <= 0.8)
    aorta = (((U - 0.12) / 0.07) ** 2 + ((V - 0.48) / (0.07 * a / b)) ** 2 <= 1.0) & inner
    lungs = ((ell(-0.45, 0.05, 1.15, 0.35, 0.55, 0.45, 4) | ell(0.45, 0.05, 1.15, 0.35, 0.55, 0.45, 5))
             & inner & ~liver)
    # lesion: a small ellipsoid (radius ~0.12 b in-plane, at least 2.2 slices in z) in the liver
    lr = 0.12 * b
    lrz = max(lr, 2.2 * sz)
    lc = np.array([-0.50 * a, -0.15 * b, 0.15 * hz])
    lesion = (((X - lc[0]) / lr) ** 2 + ((Y - lc[1]) / lr) ** 2 + ((Z - lc[2]) / lrz) ** 2 <= 1.0) & liver

    lab[liver] = 1
    lab[spleen] = 2
    lab[kid_l] = 3
    lab[kid_r] = 4
    lab[vert] = 5
    lab[lesion] = 6

    if modality == "ct":
        vals = dict(air=-1000, fat=-100, muscle=45, lung=-850, aorta=180,
                    organ={1: 60, 2: 50, 3: 35, 4: 35, 5: 450, 6: 10})
    else:  # MR T1-like, arbitrary units
        vals = dict(air=0, fat=900, muscle=350, lung=30, aorta=120,
                    organ={1: 520, 2: 420, 3: 380, 4: 380, 5: 650, 6: 200})
    img = np.full((nz, ny, nx), float(vals["air"]))
    img[body] = vals["fat"]
    img[inner] = vals["muscle"]
    img[lungs] = vals["lung"]
    img[aorta] = vals["aorta"]
    for k, v in vals["organ"].items():
        img[lab == k] = v
    # unlabelled aorta stays where no organ is
    img += rng.normal(0.0, noise, img.shape) * (body | (modality == "ct"))
    if modality == "mr":
        # smooth bias field
        img *= 1.0 + 0.15 * (U * 0.6 - V * 0.4)
        img = np.clip(img, 0, None)

    # speckles: small components of labels 1..3 in plain muscle, image unchanged
    free = inner & (lab == 0) & ~aorta & ~lungs
    spots = [(0.05, -0.55, 0.0, 1), (0.30, -0.45, -0.3, 2), (-0.10, 0.20, 0.35, 3), (0.20, 0.05, -0.5, 1)]
    for (cu, cv, cw, l) in spots:
        ci = int(round(cu * a / sx + (nx - 1) / 2.0))
        cj = int(round(cv * b / sy + (ny - 1) / 2.0))
        ck = int(round(cw * hz / sz + (nz - 1) / 2.0))
        ext = (2, 2, 1) if l != 3 else (2, 1, 2)   # 4 voxels
        sl = (slice(ck, ck + ext[2]), slice(cj, cj + ext[1]), slice(ci, ci + ext[0]))
        if ck < 0 or cj < 0 or ci < 0 or ck + ext[2] > nz or cj + ext[1] > ny or ci + ext[0] > nx:
            continue
        if free[sl].all():
            lab[sl] = l
    if modality == "ct":
        img = np.clip(np.rint(img), -1024, 3071).astype(np.int16)
    else:
        img = np.clip(np.rint(img), 0, 4095).astype(np.int16)
    return img, lab


def perturb(lab, seed):
    """a 'prediction': the reference shifted, eroded/dilated and with a component dropped"""
    from scipy import ndimage as ndi
    rng = np.random.default_rng(seed + 1000)
    out = lab.copy()
    # shift the liver by one voxel in x and y
    liver = lab == 1
    out[liver] = 0
    out[np.roll(np.roll(liver, 1, axis=2), -1, axis=1) & (out == 0)] = 1
    # erode the spleen, dilate the left kidney
    sp = lab == 2
    out[sp & ~ndi.binary_erosion(sp)] = 0
    kl = ndi.binary_dilation(lab == 3) & (out == 0)
    out[kl] = 3
    # drop the lesion (filled as liver) and the right kidney's lower half
    out[lab == 6] = 1
    kr = np.argwhere(lab == 4)
    if len(kr):
        zmid = int(np.median(kr[:, 0]))
        m = lab == 4
        m[zmid:] = False
        out[m] = 0
    # a few random false-positive voxels of label 5
    body = np.argwhere(lab == 0)
    if len(body):
        pick = body[rng.choice(len(body), size=min(5, len(body)), replace=False)]
        out[tuple(pick.T)] = 5
    return out


def nifti_affine(D, origin):
    A = np.eye(4)
    A[:3, :3] = D
    A[:3, 3] = origin
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ A   # LPS -> RAS


def save_nifti(path, arr_zyx, D, origin, descrip):
    import nibabel as nib
    aff = nifti_affine(D, origin)
    im = nib.Nifti1Image(np.ascontiguousarray(arr_zyx.transpose(2, 1, 0)), aff)
    im.set_sform(aff, code=1)
    im.set_qform(aff, code=1)
    im.header["descrip"] = descrip.encode()[:79]
    im.header.set_xyzt_units("mm", "sec")
    atomic_write(path, lambda tmp: nib.save(im, tmp))


def atomic_write(path, fn):
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    base = os.path.basename(path)
    # keep the extension so writers choose the right format
    tmp = os.path.join(d, ".tmp%d-%s" % (os.getpid(), base))
    try:
        fn(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def nrrd_frame(arr_zyx, D, origin, role, case, extra=None):
    """one medpipe stream frame (a complete NRRD, raw little endian) as bytes"""
    nz, ny, nx = arr_zyx.shape
    t = {"uint8": "uint8", "int16": "int16", "int32": "int32", "float32": "float",
         "uint16": "uint16", "float64": "double"}[arr_zyx.dtype.name]
    dirs = " ".join("(%s)" % ",".join(repr(float(v)) for v in D[:, a]) for a in range(3))
    hdr = ["NRRD0005", "type: %s" % t, "dimension: 3", "space: left-posterior-superior",
           "sizes: %d %d %d" % (nx, ny, nz), "space directions: %s" % dirs,
           "kinds: domain domain domain", "endian: little", "encoding: raw",
           "space origin: (%s)" % ",".join(repr(float(v)) for v in origin),
           "medpipe.case:=%s" % case, "medpipe.role:=%s" % role]
    for k, v in (extra or {}).items():
        hdr.append("%s:=%s" % (k, v))
    data = np.ascontiguousarray(arr_zyx).astype(arr_zyx.dtype.newbyteorder("<")).tobytes()
    return ("\n".join(hdr) + "\n\n").encode() + data


def uid(*parts):
    h = hashlib.sha256("/".join(str(p) for p in parts).encode()).hexdigest()
    return "2.25." + str(int(h[:30], 16))


def dicom_slices(img, D, origin, spacing, args):
    """(tags, pixel bytes) per slice; tags as (group, elem, VR, value) in a list"""
    nz, ny, nx = img.shape
    ct = args.modality == "ct"
    rowdir = D[:, 0] / np.linalg.norm(D[:, 0])
    coldir = D[:, 1] / np.linalg.norm(D[:, 1])
    normal = np.cross(rowdir, coldir)
    sz = spacing[2]
    key = (args.seed, args.case, args.modality, tuple(img.shape), tuple(spacing))
    study, series, frame = uid("study", *key), uid("series", *key), uid("for", *key)
    sop_class = "1.2.840.10008.5.1.4.1.1.2" if ct else "1.2.840.10008.5.1.4.1.1.4"

    def ds(v):
        # the most precise decimal string that fits DICOM's 16 characters
        v = float(v)
        if v == 0:
            return "0"
        for prec in range(15, 0, -1):
            s = "%.*g" % (prec, v)
            if len(s) <= 16 and "e" not in s:
                return s
        return "%.6e" % v

    out = []
    for k in range(nz):
        ipp = origin + k * sz * normal
        sop = uid("sop", k, *key)
        if ct:
            stored = (img[k].astype(np.int32) + 1024).astype("<i2")
        else:
            stored = img[k].astype("<u2")
        tags = [
            (0x0002, 0x0002, "UI", sop_class), (0x0002, 0x0003, "UI", sop),
            (0x0002, 0x0010, "UI", "1.2.840.10008.1.2.1"),
            (0x0008, 0x0008, "CS", "ORIGINAL\\PRIMARY\\AXIAL"),
            (0x0008, 0x0016, "UI", sop_class), (0x0008, 0x0018, "UI", sop),
            (0x0008, 0x0020, "DA", "20240101"), (0x0008, 0x0030, "TM", "120000"),
            (0x0008, 0x0060, "CS", "CT" if ct else "MR"),
            (0x0008, 0x0070, "LO", "medpipe phantom"),
            (0x0008, 0x103e, "LO", "phantom %s seed %d" % (args.modality, args.seed)),
            (0x0010, 0x0010, "PN", "Phantom^%s" % args.case), (0x0010, 0x0020, "LO", args.case),
            (0x0018, 0x0050, "DS", ds(sz)),
            (0x0020, 0x000d, "UI", study), (0x0020, 0x000e, "UI", series),
            (0x0020, 0x0011, "IS", "1"), (0x0020, 0x0013, "IS", str(k + 1)),
            (0x0020, 0x0032, "DS", "\\".join(ds(v) for v in ipp)),
            (0x0020, 0x0037, "DS", "\\".join(ds(v) for v in list(rowdir) + list(coldir))),
            (0x0020, 0x0052, "UI", frame),
            (0x0020, 0x1041, "DS", ds(float(np.dot(ipp, normal)))),
            (0x0028, 0x0002, "US", "1"), (0x0028, 0x0004, "CS", "MONOCHROME2"),
            (0x0028, 0x0010, "US", str(ny)), (0x0028, 0x0011, "US", str(nx)),
            (0x0028, 0x0030, "DS", "%s\\%s" % (ds(spacing[1]), ds(spacing[0]))),
            (0x0028, 0x0100, "US", "16"), (0x0028, 0x0101, "US", "16"), (0x0028, 0x0102, "US", "15"),
            (0x0028, 0x0103, "US", "1" if ct else "0"),
        ]
        if ct:
            tags += [(0x0018, 0x0060, "DS", "120"),
                     (0x0028, 0x1050, "DS", "40"), (0x0028, 0x1051, "DS", "400"),
                     (0x0028, 0x1052, "DS", "-1024"), (0x0028, 0x1053, "DS", "1"),
                     (0x0028, 0x1054, "LO", "HU")]
        else:
            tags += [(0x0018, 0x0087, "DS", "1.5")]
        out.append((k, tags, stored.tobytes()))
    return out


def write_dicom_dcmtk(slices, outdir):
    exe = shutil.which("dump2dcm")
    if not exe:
        raise RuntimeError("dump2dcm (DCMTK) not found; install dcmtk or use --dicom-writer pydicom")
    with tempfile.TemporaryDirectory() as td:
        for k, tags, pix in slices:
            raw = os.path.join(td, "pix%d.raw" % k)
            with open(raw, "wb") as f:
                f.write(pix)
            dump = os.path.join(td, "s%d.dump" % k)
            with open(dump, "w") as f:
                for g, e, vr, v in sorted(tags, key=lambda t: (t[0], t[1])):
                    f.write("(%04x,%04x) %s [%s]\n" % (g, e, vr, v) if vr not in ("US",)
                            else "(%04x,%04x) %s %s\n" % (g, e, vr, v))
                f.write("(7fe0,0010) OW =%s\n" % raw)
            dst = os.path.join(outdir, "IM%04d.dcm" % (k + 1))
            atomic_write(dst, lambda tmp: subprocess.run(
                [exe, "-q", "+te", dump, tmp], check=True))


def write_dicom_pydicom(slices, outdir):
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian
    for k, tags, pix in slices:
        meta = FileMetaDataset()
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        for g, e, vr, v in tags:
            if g == 0x0002:
                meta.add_new((g, e), vr, v)
                continue
            val = v.split("\\") if "\\" in v else v
            if vr == "US":
                val = int(v)
            ds.add_new((g, e), vr, val)
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.add_new((0x7fe0, 0x0010), "OW", pix)
        dst = os.path.join(outdir, "IM%04d.dcm" % (k + 1))
        if hasattr(ds, "save_as"):
            atomic_write(dst, lambda tmp: ds.save_as(tmp, write_like_original=False))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 2)[2])
    ap.add_argument("--size", default="128x128x40", type=lambda s: parse_x(s, 3, int),
                    help="XxYxZ voxels (default 128x128x40)")
    ap.add_argument("--spacing", default="0.8x0.8x2.5", type=lambda s: parse_x(s, 3, float),
                    help="mm (default 0.8x0.8x2.5)")
    ap.add_argument("--rotate", default="5,0,10",
                    help="degrees about L,P,S of the grid (default 5,0,10; 0,0,0 for axis aligned)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--modality", choices=("ct", "mr"), default="ct")
    ap.add_argument("--noise", type=float, default=None, help="noise sigma (default 12 for CT, 20 for MR)")
    ap.add_argument("--case", default="phantom", help="PatientID / case name in DICOM")
    ap.add_argument("--image", help="write the image as NIfTI (.nii or .nii.gz)")
    ap.add_argument("--label", help="write the label map as NIfTI")
    ap.add_argument("--perturbed", help="write a perturbed copy of the label map (a fake prediction)")
    ap.add_argument("--dicom", help="write a DICOM series into this folder (IM0001.dcm ...)")
    ap.add_argument("--dicom-writer", choices=("dcmtk", "pydicom"), default="dcmtk")
    ap.add_argument("--nrrd", help="write a medpipe frame stream: image (role image) then label (role label)"
                    " and, with --perturbed, the perturbed map (role mask)")
    ap.add_argument("--npy", help="write image and label as NAME_img.npy / NAME_seg.npy (Z,Y,X)")
    ap.add_argument("--print-geometry", action="store_true", help="print spacing, direction, origin")
    args = ap.parse_args()
    try:
        angles = [float(v) for v in args.rotate.split(",")]
        assert len(angles) == 3
    except (ValueError, AssertionError):
        ap.error("--rotate wants three numbers a,b,c")
    if args.noise is None:
        args.noise = 12.0 if args.modality == "ct" else 20.0
    img, lab = make_phantom(args.size, args.spacing, args.seed, args.modality, args.noise)
    D, origin = geometry(args.size, args.spacing, angles)
    desc = "medpipe phantom %s seed %d" % (args.modality, args.seed)
    if args.image:
        save_nifti(args.image, img, D, origin, desc)
    if args.label:
        save_nifti(args.label, lab, D, origin, desc + " labels")
    if args.perturbed:
        save_nifti(args.perturbed, perturb(lab, args.seed), D, origin, desc + " perturbed")
    if args.nrrd:
        def wr(tmp):
            with open(tmp, "wb") as f:
                f.write(nrrd_frame(img, D, origin, "image", args.case))
                f.write(nrrd_frame(lab, D, origin, "label", args.case))
                if args.perturbed:
                    f.write(nrrd_frame(perturb(lab, args.seed), D, origin, "mask", args.case))
        atomic_write(args.nrrd, wr)
    if args.npy:
        np.save(args.npy + "_img.npy", img)
        np.save(args.npy + "_seg.npy", lab)
    if args.dicom:
        os.makedirs(args.dicom, exist_ok=True)
        sl = dicom_slices(img, D, origin, args.spacing, args)
        if args.dicom_writer == "dcmtk":
            write_dicom_dcmtk(sl, args.dicom)
        else:
            write_dicom_pydicom(sl, args.dicom)
    if args.print_geometry:
        print("spacing", " ".join("%g" % v for v in args.spacing))
        print("direction_lps", " ".join("%.9g" % v for v in D.T.ravel()))
        print("origin_lps", " ".join("%.9g" % v for v in origin))
        print("labels", " ".join("%d:%s:%d" % (k, n, int((lab == k).sum())) for k, n in LABELS.items()))


if __name__ == "__main__":
    try:
        main()
    except (OSError, RuntimeError, subprocess.CalledProcessError) as e:
        print("phantom.py: %s" % e, file=sys.stderr)
        sys.exit(1)
