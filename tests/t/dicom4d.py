#!/usr/bin/python3
"""4D DICOM: a series holding several volumes (repeated slice positions)
becomes one 4D frame (volumes in acquisition order), --split-4d one 3D frame
per volume; compared with the generated values and with Debian's dcm2niix
(its 4D NIfTI, read with nibabel and brought to our LPS axes):

- GE style: one series, every file a slice, volumes one after another in
  instance number, one acquisition number, shuffled file names;
- Siemens style: one file per volume slice, AcquisitionNumber and
  AcquisitionTime per volume.
"""
import glob
import os
import random
import shutil
import subprocess
import sys
import tempfile

import numpy as np

BIN = os.environ.get("BIN", "bin")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "gen"))
from mpstream import read_frames  # noqa: E402
import mptest  # noqa: E402
from mptest import ok, skip  # noqa: E402

T = tempfile.mkdtemp(prefix="mp-dicom4d-")
NV, NZ, NY, NX = 3, 5, 6, 7


def make(style):
    import dcmtree
    import pydicom
    rng = np.random.default_rng(11)
    vols = rng.integers(-500, 1500, (NV, NZ, NY, NX)).astype(np.float64)
    folder = os.path.join(T, style)
    n = np.array([0.0, 0.0, 1.0])
    origin = np.array([-10.0, 20.0, 30.0])
    pos = [origin + (k % NZ) * 2.5 * n for k in range(NV * NZ)]
    names = ["f%03d" % k for k in range(NV * NZ)]
    random.Random(3).shuffle(names)
    dcmtree.write_series(folder, vols.reshape(NV * NZ, NY, NX), modality="MR", slope=1.0, intercept=0.0,
                         spacing=(0.8, 0.7, 2.5), positions=pos, names=names)
    for k, nm in enumerate(names):
        p = os.path.join(folder, nm)
        ds = pydicom.dcmread(p)
        if style == "siemens":
            ds.AcquisitionNumber = k // NZ + 1
            ds.InstanceNumber = k + 1
            ds.AcquisitionTime = "1200%02d.000000" % (k // NZ)
        else:
            ds.AcquisitionNumber = 1
            ds.InstanceNumber = k + 1
        ds.save_as(p)
    return folder, vols


def cat(*args):
    r = subprocess.run([os.path.join(BIN, "dcm2vol")] + list(args), capture_output=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.decode().strip())
    return read_frames(r.stdout)


def main():
    try:
        import dcmtree  # noqa: F401
        import pydicom  # noqa: F401
    except ImportError as e:
        skip("dicom4d", "%s not installed" % e.name)
        return 0
    for style in ("ge", "siemens"):
        folder, vols = make(style)
        try:
            fr = cat(folder)
        except RuntimeError as e:
            ok("dicom4d-%s" % style, False, str(e))
            continue
        f = fr[0]
        ok("dicom4d-%s-4d" % style, len(fr) == 1 and f.array.shape == (NV, NZ, NY, NX) and
           np.array_equal(f.array, vols) and f.keys.get("medpipe.dicom.volumes") == str(NV),
           "%d frames, shape %s" % (len(fr), f.array.shape))
        sp = [np.linalg.norm(d) for d in f.dirs if d is not None]
        ok("dicom4d-%s-geometry" % style, np.allclose(sp, [0.8, 0.7, 2.5]) and np.allclose(f.origin, [-10, 20, 30]),
           "spacing %s origin %s" % (sp, f.origin))
        fr = cat("--split-4d", folder)
        ok("dicom4d-%s-split" % style, len(fr) == NV and all(np.array_equal(fr[v].array, vols[v]) for v in range(NV)),
           "%d frames" % len(fr))
        r = subprocess.run([os.path.join(BIN, "vol-cat"), folder], capture_output=True)
        ok("dicom4d-%s-vol-cat" % style, r.returncode == 0 and read_frames(r.stdout)[0].array.shape == (NV, NZ, NY, NX),
           r.stderr.decode())
        if not shutil.which("dcm2niix"):
            skip("dicom4d-%s-dcm2niix" % style, "dcm2niix not installed")
            continue
        import nibabel as nib
        out = os.path.join(T, style + "-nii")
        os.makedirs(out)
        subprocess.run(["dcm2niix", "-z", "n", "-b", "n", "-f", "x", "-o", out, folder], capture_output=True)
        nii = sorted(glob.glob(os.path.join(out, "*.nii")))
        if len(nii) != 1:
            ok("dicom4d-%s-dcm2niix" % style, False, "dcm2niix wrote %d files" % len(nii))
            continue
        img = nib.load(nii[0])
        d = np.asarray(img.dataobj)
        # dcm2niix's axes to ours: world LPS of its voxel axes, flipped where they point the other way
        aff = img.affine.copy()
        aff[:2] *= -1
        for ax in range(3):
            if aff[ax, ax] < 0:
                d = np.flip(d, axis=ax)
        ref = np.transpose(d, (3, 2, 1, 0))
        match = [[int(np.allclose(ref[i], f.array[j])) for j in range(NV)] for i in range(ref.shape[0])] if ref.shape == f.array.shape else None
        ok("dicom4d-%s-dcm2niix" % style, ref.shape == f.array.shape and np.allclose(ref, f.array),
           "dcm2niix shape %s, volume match %s, slices %s" % (ref.shape, match, [[int(np.allclose(ref[0, i], f.array[0, j])) for j in range(NZ)] for i in range(NZ)]))
    return mptest.status()


if __name__ == "__main__":
    try:
        rc = main()
    finally:
        shutil.rmtree(T, ignore_errors=True)
    sys.exit(rc)
