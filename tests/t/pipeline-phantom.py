#!/usr/bin/python3
"""tests/gen/phantom.py, the generated data every pipeline test and the demo
use: seeded (same bytes twice), the DICOM series written through DCMTK reads
back in pydicom and dcm2niix with the voxels and world geometry of the NIfTI
file (rotated direction, spacing from positions), labels as documented; and
dcm2vol reads the series to the same grid as the frame stream phantom.py
writes."""
import glob
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import mptest  # noqa: E402


def res(cond, name, why=""):
    mptest.ok(name, cond, why)


BIN = os.environ.get("BIN", "bin")
HERE = os.path.dirname(os.path.abspath(__file__))
GEN = os.path.join(HERE, "..", "gen", "phantom.py")
PY = os.environ.get("PY", "/usr/bin/python3")


def gen(*a):
    return subprocess.run([PY, GEN, *a], capture_output=True, text=True)


def main():
    try:
        import nibabel as nib
    except ImportError:
        mptest.skip_ref("phantom", "nibabel missing")
        return 0
    with tempfile.TemporaryDirectory() as t:
        args = ["--size", "48x40x12", "--seed", "5", "--case", "p1"]
        have_dcmtk = shutil.which("dump2dcm") is not None
        dcm = ["--dicom", os.path.join(t, "dcm")] if have_dcmtk else []
        p = gen(*args, "--image", os.path.join(t, "a.nii.gz"), "--label", os.path.join(t, "a_seg.nii.gz"),
                "--nrrd", os.path.join(t, "a.nrrd"), "--print-geometry", *dcm)
        res(p.returncode == 0, "generate", p.stderr)
        if p.returncode:
            return 1
        p2 = gen(*args, "--image", os.path.join(t, "b.nii.gz"), "--label", os.path.join(t, "b_seg.nii.gz"),
                 "--nrrd", os.path.join(t, "b.nrrd"))
        same = all(open(os.path.join(t, x), "rb").read() == open(os.path.join(t, y), "rb").read()
                   for x, y in (("a.nii.gz", "b.nii.gz"), ("a_seg.nii.gz", "b_seg.nii.gz"), ("a.nrrd", "b.nrrd")))
        res(p2.returncode == 0 and same, "seeded_same_bytes")
        p3 = gen("--size", "48x40x12", "--seed", "6", "--label", os.path.join(t, "c_seg.nii.gz"))
        res(p3.returncode == 0 and open(os.path.join(t, "c_seg.nii.gz"), "rb").read()
            != open(os.path.join(t, "a_seg.nii.gz"), "rb").read(), "other_seed_differs")

        im, lb = nib.load(os.path.join(t, "a.nii.gz")), nib.load(os.path.join(t, "a_seg.nii.gz"))
        A = im.affine
        zooms = np.sqrt((A[:3, :3] ** 2).sum(0))
        res(np.allclose(zooms, (0.8, 0.8, 2.5)) and im.shape == (48, 40, 12), "spacing_and_size", zooms)
        R = A[:3, :3] / zooms
        res(np.abs(R - np.diag(np.diag(R))).max() > 0.05 and np.allclose(R.T @ R, np.eye(3), atol=1e-6),
            "rotated_orthonormal_direction")
        L = np.asanyarray(lb.dataobj)
        present = set(np.unique(L)) - {0}
        res(present == {1, 2, 3, 4, 5, 6} and lb.get_data_dtype() == np.uint8, "labels_1_to_6", present)
        from scipy import ndimage as ndi
        lesion = (L == 6).sum()
        ncomp = [ndi.label(L == k, structure=np.ones((3, 3, 3)))[1] for k in (1, 2, 3)]
        res(0 < lesion < 0.05 * (L == 1).sum() and max(ncomp) >= 2, "small_lesion_and_speckles",
            "lesion %d, components %s" % (lesion, ncomp))
        I = np.asanyarray(im.dataobj)
        res(I.dtype == np.int16 and I.min() >= -1024 and I.max() < 3072, "ct_hu_range", (I.min(), I.max()))
        res(abs(np.median(I[L == 1]) - 60) < 5 and abs(np.median(I[L == 5]) - 450) < 10, "organ_hu",
            (np.median(I[L == 1]), np.median(I[L == 5])))

        if not have_dcmtk:
            mptest.skip_ref("dicom", "dump2dcm (dcmtk) missing")
            return mptest.status()
        files = sorted(glob.glob(os.path.join(t, "dcm", "*.dcm")))
        res(len(files) == 12, "dicom_one_file_per_slice", len(files))
        try:
            import pydicom
        except ImportError:
            pydicom = None
            mptest.skip_ref("dicom_pydicom", "pydicom missing")
        if pydicom:
            ds = [pydicom.dcmread(f) for f in files]
            ok = all(d.Modality == "CT" and d.PixelRepresentation == 1 and float(d.RescaleIntercept) == -1024
                     and d.file_meta.ImplementationVersionName.startswith("OFFIS_DCMTK") for d in ds)
            res(ok, "dicom_tags_ct_int16_intercept_dcmtk")
            iop = np.array(ds[0].ImageOrientationPatient, float)
            ipp = np.array([d.ImagePositionPatient for d in ds], float)
            n = np.cross(iop[:3], iop[3:])
            order = np.argsort(ipp @ n)
            vol = np.stack([ds[k].pixel_array.astype(np.int32) * 1 - 1024 for k in order])  # (z, y, x)
            res(np.array_equal(vol, I.transpose(2, 1, 0)), "dicom_voxels_equal_nifti")
            lps = np.diag([-1, -1, 1]) @ A[:3, :]
            res(np.allclose(ipp[order[0]], lps[:, 3], atol=1e-6) and np.allclose(iop[:3], lps[:, 0] / 0.8, atol=1e-9)
                and np.allclose(iop[3:], lps[:, 1] / 0.8, atol=1e-9), "dicom_geometry_equal_nifti")
            steps = np.diff(np.sort(ipp @ n))
            res(np.allclose(steps, 2.5, atol=1e-6), "dicom_positions_spacing", steps[:3])
        if shutil.which("dcm2niix"):
            out = os.path.join(t, "n")
            os.makedirs(out)
            q = subprocess.run(["dcm2niix", "-o", out, "-f", "x", os.path.join(t, "dcm")], capture_output=True)
            nn = nib.load(os.path.join(out, "x.nii"))
            B = nn.get_fdata()
            # dcm2niix stores rows flipped (its usual y flip) with the affine to match
            fl = np.eye(4)
            fl[1, 1], fl[1, 3] = -1, nn.shape[1] - 1
            res(q.returncode == 0 and np.array_equal(B[:, ::-1, :], I) and np.allclose(nn.affine @ fl, A, atol=1e-4),
                "dcm2niix_reads_same_volume")
        else:
            mptest.skip_ref("dcm2niix", "not installed")
        if os.path.exists(os.path.join(BIN, "dcm2vol")) and os.path.exists(os.path.join(BIN, "vol-info")):
            a = subprocess.run([os.path.join(BIN, "dcm2vol"), os.path.join(t, "dcm")], capture_output=True)
            sys.path.insert(0, os.path.join(HERE, "..", "gen"))
            info = subprocess.run([os.path.join(BIN, "vol-info")], input=a.stdout, capture_output=True).stdout.decode()
            ref = subprocess.run([os.path.join(BIN, "vol-info"), os.path.join(t, "a.nrrd")], capture_output=True,
                                 text=True).stdout

            def geo(txt):
                blk = txt.split("frame ")[1]
                keep = [ln for ln in blk.split("\n") if ln.strip().startswith(("sizes", "origin", "directions", "range", "type"))]
                import re
                return [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", " ".join(keep))]
            ga, gb = geo(info), geo(ref)
            res(a.returncode == 0 and len(ga) == len(gb) and np.allclose(ga, gb, atol=1e-6), "dcm2vol_same_grid",
                a.stderr.decode()[:200])
        else:
            print("SKIP dcm2vol_same_grid: dcm2vol not built")
    return mptest.status()


if __name__ == "__main__":
    sys.exit(main())
