#!/usr/bin/env python3
"""MedSAM parity: the CT/MR preprocessing of MedSAM's pre_CT_MR.py, run as a
medpipe pipeline (hu-window | ccl-clean | roi-crop | vol2npz), against an
independent Python implementation of the same steps with the libraries
MedSAM uses (SimpleITK, cc3d, numpy, scikit-image) on the TotalSegmentator
CT and MR examples: identical imgs and gts, equal spacing. Per-slice files
against scikit-image's resize(order=3, anti_aliasing=True,
preserve_range=True) within 1e-5 (3 slices; all with MEDPIPE_SLOW=1).

The frames are written from nibabel's reading of the NIfTI files (not from
SimpleITK's) and, when vol-cat is built, also by vol-cat itself."""
import os
import subprocess
import sys
import tempfile

import numpy as np
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import mptest  # noqa: E402
from mptest import ok  # noqa: E402

BIN = os.environ.get("BIN", "bin")
DATA = os.environ.get("DATA", "../shared/data")
SLOW = os.environ.get("MEDPIPE_SLOW") == "1"
TS = os.path.join(DATA, "nifti/totalseg")
T = tempfile.mkdtemp(prefix="medpipe-medsam.")


def skip_all(why, ref=False):
    for n in ("medsam-ct", "medsam-ct-lite", "medsam-mr", "medsam-slices"):
        if ref:
            mptest.skip_ref(n, why)
        else:
            print("SKIP %s: %s" % (n, why))
    sys.exit(mptest.status())


try:
    import SimpleITK as sitk
    import cc3d
    import nibabel as nib
except ImportError as e:
    skip_all("missing %s in the venv" % e.name, ref=True)
if not os.path.isdir(TS):
    skip_all("%s absent" % TS)
for tool in ("hu-window", "ccl-clean", "roi-crop", "vol2npz"):
    if not os.access(os.path.join(BIN, tool), os.X_OK):
        skip_all("%s not built" % tool)

NP2NRRD = {"u1": "uint8", "i1": "int8", "u2": "uint16", "i2": "int16", "u4": "uint32", "i4": "int32",
           "f4": "float", "f8": "double"}


def nifti_frame(path, role, case):
    """a frame from nibabel: voxels in file order, directions RAS->LPS"""
    img = nib.load(path)
    a = np.asanyarray(img.dataobj)
    a = np.ascontiguousarray(a.transpose(2, 1, 0))     # (z, y, x), x fastest
    aff = img.affine.copy()
    aff[:2] *= -1                                       # RAS -> LPS
    dirs = " ".join("(%r,%r,%r)" % tuple(float(v) for v in aff[:3, c]) for c in range(3))
    h = ("NRRD0004\ntype: %s\ndimension: 3\nspace: left-posterior-superior\nsizes: %d %d %d\n"
         "space directions: %s\nkinds: domain domain domain\nendian: little\nencoding: raw\n"
         "space origin: (%r,%r,%r)\nmedpipe.case:=%s\nmedpipe.role:=%s\n\n"
         % (NP2NRRD[a.dtype.str[1:]], a.shape[2], a.shape[1], a.shape[0], dirs,
            float(aff[0, 3]), float(aff[1, 3]), float(aff[2, 3]), case, role))
    return h.encode() + a.astype(a.dtype.newbyteorder("<")).tobytes()


def reference(ct, seg, modality, t3, t2):
    """MedSAM's pre_CT_MR.py steps, written again with its libraries"""
    gt_sitk = sitk.ReadImage(seg)
    gt = np.uint8(sitk.GetArrayFromImage(gt_sitk))
    gt = cc3d.dust(gt, threshold=t3, connectivity=26, in_place=True)
    for i in range(gt.shape[0]):
        gt[i, :, :] = cc3d.dust(gt[i, :, :], threshold=t2, connectivity=8, in_place=True)
    z = np.unique(np.where(gt > 0)[0])
    img_sitk = sitk.ReadImage(ct)
    image = sitk.GetArrayFromImage(img_sitk)
    if modality == "CT":
        lo, hi = 40 - 400 / 2, 40 + 400 / 2
        pre = np.clip(image, lo, hi)
        pre = (pre - np.min(pre)) / (np.max(pre) - np.min(pre)) * 255.0
    else:
        nz = image[image > 0]
        lo, hi = np.percentile(nz, 0.5), np.percentile(nz, 99.5)
        pre = np.clip(image, lo, hi)
        pre = (pre - np.min(pre)) / (np.max(pre) - np.min(pre)) * 255.0
        pre[image == 0] = 0
    pre = np.uint8(pre)
    return pre[z, :, :], gt[z, :, :], img_sitk.GetSpacing()


def pipeline(stream, window, t3, t2, out, extra=(), first=None):
    b = lambda t: os.path.join(BIN, t)
    cmd = ([first] if first else []) + [[b("hu-window"), "--mapping", "medsam"] + window,
           [b("ccl-clean"), "--min", str(t3), "--min2d", str(t2)],
           [b("roi-crop"), "--slices", "labelled"],
           [b("vol2npz"), "--layout", "medsam", "-o", out] + list(extra)]
    procs, prev = [], None
    for i, c in enumerate(cmd):
        p = subprocess.Popen(c, stdin=subprocess.PIPE if i == 0 else prev.stdout,
                             stdout=subprocess.PIPE if i < len(cmd) - 1 else subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
        if prev:
            prev.stdout.close()
        procs.append(p)
        prev = p
    procs[0].stdin.write(stream or b"")
    procs[0].stdin.close()
    errs = []
    for p in procs:
        p.wait()
        e = p.stderr.read().decode().strip()
        if p.returncode:
            errs.append("%s: exit %d %s" % (os.path.basename(p.args[0]), p.returncode, e))
    return "; ".join(errs)


cases = (("medsam-ct", "example_ct_sm.nii.gz", "example_seg.nii.gz", "CT", 1000, 100, ["--preset", "soft-tissue"]),
         ("medsam-ct-lite", "example_ct_sm.nii.gz", "example_seg.nii.gz", "CT", 100, 10, ["--level", "40", "--width", "400"]),
         ("medsam-mr", "example_mr_sm.nii.gz", "example_seg_mr.nii.gz", "MR", 1000, 100,
          ["--percentiles", "0.5,99.5", "--nonzero"]))
# a label map whose first 10 slices hold only specks: slice selection must drop them
sp = nib.load(os.path.join(TS, "example_seg.nii.gz"))
sd = np.asanyarray(sp.dataobj).copy()
sd[:, :, :10] = 0
sd[40:43, 50:53, 2] = 7
sd[60, 60, 5] = 3
nib.save(nib.Nifti1Image(sd, sp.affine, sp.header), os.path.join(T, "sparse_seg.nii.gz"))
cases += (("medsam-ct-sparse", "example_ct_sm.nii.gz", os.path.join(T, "sparse_seg.nii.gz"), "CT", 1000, 100,
           ["--preset", "soft-tissue"]),)
volcat = os.access(os.path.join(BIN, "vol-cat"), os.X_OK)
if volcat:
    cases += (("medsam-ct-volcat",) + cases[0][1:], ("medsam-mr-volcat",) + cases[2][1:])
else:
    print("SKIP medsam-ct-volcat: vol-cat not built")
    print("SKIP medsam-mr-volcat: vol-cat not built")
for name, ct, seg, mod, t3, t2, win in cases:
    ct, seg = os.path.join(TS, ct), os.path.join(TS, seg)
    out = os.path.join(T, name + ".npz")
    if name.endswith("-volcat"):
        # the real user pipeline: vol-cat reads the NIfTI files itself
        err = pipeline(None, win, t3, t2, out, first=[os.path.join(BIN, "vol-cat"), ct, "--label", seg])
    else:
        stream = nifti_frame(ct, "image", name) + nifti_frame(seg, "label", name)
        err = pipeline(stream, win, t3, t2, out)
    if err:
        ok(name, False, err)
        continue
    imgs, gts, sp = reference(ct, seg, mod, t3, t2)
    z = np.load(out)
    why = []
    if z.files != ["imgs", "gts", "spacing"]:
        why.append("keys %s" % z.files)
    for k, ref in (("imgs", imgs), ("gts", gts)):
        if z[k].dtype != ref.dtype or z[k].shape != ref.shape:
            why.append("%s: %s %s, MedSAM %s %s" % (k, z[k].dtype, z[k].shape, ref.dtype, ref.shape))
        elif not np.array_equal(z[k], ref):
            why.append("%s: %d voxels differ" % (k, int((z[k] != ref).sum())))
    if z["spacing"].tolist() != list(sp):
        why.append("spacing %s, MedSAM %s" % (z["spacing"].tolist(), list(sp)))
    ok(name, not why, "; ".join(why))
    print("# %s: %d slices kept, %d labels" % (name, imgs.shape[0], len(np.unique(gts)) - 1))

# per-slice files (MedSAM's imgs/ and gts/ folders)
try:
    from skimage import transform
except ImportError:
    transform = None
if transform is None:
    mptest.skip_ref("medsam-slices", "no scikit-image")
else:
    ct, seg = os.path.join(TS, "example_ct_sm.nii.gz"), os.path.join(TS, "example_seg.nii.gz")
    sd = os.path.join(T, "npy")
    out = os.path.join(T, "s.npz")
    err = pipeline(nifti_frame(ct, "image", "s") + nifti_frame(seg, "label", "s"), ["--preset", "soft-tissue"],
                   1000, 100, out, ["--slices", sd, "--name", "CT_Abd_s"])
    if err:
        ok("medsam-slices", False, err)
    else:
        z = np.load(out)
        n = z["imgs"].shape[0]
        names = sorted(os.listdir(os.path.join(sd, "imgs")))
        good = names == ["CT_Abd_s-%03d.npy" % i for i in range(n)] and names == sorted(os.listdir(os.path.join(sd, "gts")))
        why = "" if good else "file names %s" % names[:3]
        worst = worst_c = 0.0
        for i in (range(n) if SLOW else sorted({0, n // 2, n - 1})):
            a = np.load(os.path.join(sd, "imgs", names[i]))
            g = np.load(os.path.join(sd, "gts", names[i]))
            img3 = np.repeat(z["imgs"][i][:, :, None], 3, axis=-1)
            r = transform.resize(img3, (1024, 1024), order=3, preserve_range=True, anti_aliasing=True)
            r = (r - r.min()) / np.clip(r.max() - r.min(), a_min=1e-8, a_max=None)
            rg = np.uint8(transform.resize(z["gts"][i], (1024, 1024), order=0, preserve_range=True,
                                           mode="constant", anti_aliasing=False))
            if a.shape != (1024, 1024, 3) or a.dtype != np.float64 or g.shape != (1024, 1024) or g.dtype != np.uint8:
                good, why = False, "slice %d: %s %s / %s %s" % (i, a.dtype, a.shape, g.dtype, g.shape)
                break
            worst = mptest.worse(worst, float(np.abs(a - r).max()))
            if not np.array_equal(g, rg):
                good, why = False, "gts slice %d: %d pixels differ" % (i, int((g != rg).sum()))
            if i == 0:
                rc = transform.resize(img3, (1024, 1024), order=3, preserve_range=True, mode="constant", anti_aliasing=True)
                rc = (rc - rc.min()) / np.clip(rc.max() - rc.min(), a_min=1e-8, a_max=None)
                worst_c = float(np.abs(a - rc).max())
        if not (worst <= 1e-5):   # NaN-aware
            good, why = False, "imgs differ from scikit-image by %.3g (tolerance 1e-5)" % worst
        ok("medsam-slices", good, why)
        print("# per-slice imgs: max |diff| %.3g vs resize(order=3, anti_aliasing=True, preserve_range=True); "
              "%.3g vs MedSAM's mode='constant' (borders)" % (worst, worst_c))
        # --border constant: MedSAM's own call, resize(..., mode="constant")
        sdc = os.path.join(T, "npyc")
        err = pipeline(nifti_frame(ct, "image", "s") + nifti_frame(seg, "label", "s"), ["--preset", "soft-tissue"],
                       1000, 100, os.path.join(T, "c.npz"), ["--slices", sdc, "--name", "CT_Abd_s", "--border", "constant"])
        if err:
            ok("medsam-slices-constant", False, err)
        else:
            worst = 0.0
            for i in sorted({0, n // 2, n - 1}):
                a = np.load(os.path.join(sdc, "imgs", names[i]))
                img3 = np.repeat(z["imgs"][i][:, :, None], 3, axis=-1)
                rc = transform.resize(img3, (1024, 1024), order=3, preserve_range=True, mode="constant", anti_aliasing=True)
                rc = (rc - rc.min()) / np.clip(rc.max() - rc.min(), a_min=1e-8, a_max=None)
                worst = mptest.worse(worst, float(np.abs(a - rc).max()))
            ok("medsam-slices-constant", worst <= 1e-5,
               "imgs differ from resize(mode='constant') by %.3g (tolerance 1e-5)" % worst)
            print("# --border constant: max |diff| %.3g vs MedSAM's resize(mode='constant')" % worst)
subprocess.run(["rm", "-rf", T])
sys.exit(mptest.status())
