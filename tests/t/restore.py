"""Round trips: label -> roi-crop -> vol-resize -> vol-restore gives back the
label exactly inside the crop and zeros outside, on the original geometry
(checked with numpy on the stream, and with nibabel on a saved NIfTI when
vol-save exists); --ref onto the same and onto a different grid (world
coordinates, checked with numpy)."""
import os
import subprocess
import sys

sys.path.insert(0, "tests")
sys.path.insert(0, "tests/gen")
import numpy as np  # noqa: E402
from mpstream import read_frames  # noqa: E402
from nrrdframe import frame  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import mptest  # noqa: E402
from mptest import ok as res  # noqa: E402

BIN = os.environ.get("BIN", "bin")


def pipe(cmds, data):
    for c in cmds:
        p = subprocess.run([os.path.join(BIN, c[0])] + c[1:], input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if p.returncode != 0:
            raise RuntimeError("%s: exit %d: %s" % (" ".join(c), p.returncode, p.stderr.decode()))
        data = p.stdout
    return data


rng = np.random.default_rng(11)
th = 0.3
DIRS = [(0.7 * np.cos(th), 0.7 * np.sin(th), 0.0), (-0.7 * np.sin(th), 0.7 * np.cos(th), 0.1), (0.0, -0.2, 2.5)]
ORIG = (-100.25, 40.5, -300.0)
Z, Y, X = 20, 48, 60
img = rng.integers(-1000, 1000, size=(Z, Y, X)).astype(np.int16)
lab = np.zeros((Z, Y, X), np.uint8)
zz, yy, xx = np.mgrid[0:Z, 0:Y, 0:X]
lab[((xx - 30) / 12.0) ** 2 + ((yy - 20) / 9.0) ** 2 + ((zz - 9) / 5.0) ** 2 < 1] = 1
lab[((xx - 38) / 5.0) ** 2 + ((yy - 25) / 4.0) ** 2 + ((zz - 11) / 3.0) ** 2 < 1] = 2
lab[15:18, 5:8, 50:53] = 3   # a separate blob: slices 6..7 and 12 empty in between? keep z-range
lab[2, 40, 10] = 4           # an isolated voxel far away: slice 2, then a gap before 4..
case = {"medpipe.case": "c1"}
data = frame(img, dirs=DIRS, origin=ORIG, keys=dict(case, **{"medpipe.role": "image"})) + \
    frame(lab, dirs=DIRS, origin=ORIG, keys=dict(case, **{"medpipe.role": "label"}))


def check_restored(name, fr, want):
    ok_geom = all(np.allclose(a, b, atol=1e-9) for a, b in zip(fr.dirs, DIRS)) and np.allclose(fr.origin, ORIG, atol=1e-9)
    same = fr.array.shape == want.shape and np.array_equal(fr.array, want)
    why = "geometry %s %s" % (fr.dirs, fr.origin) if not ok_geom else \
        "%d voxels differ" % (int((fr.array != want).sum()) if fr.array.shape == want.shape else -1)
    res(name, ok_geom and same and "medpipe.history" not in fr.keys, why)


# 1. 3-D box with a margin, enlarged in-plane (64x64), restored
for margin, size in (("2", "64x64"), ("0", "200x170"), ("1,3,0", "57x45")):
    out = pipe([["roi-crop", "--bbox", "3d", "--margin", margin], ["vol-resize", size], ["vol-restore"]], data)
    frs = read_frames(out)
    res("restore-passes-image-%s" % margin, frs[0].keys["medpipe.role"] == "image" and frs[0].array.shape[1:] == tuple(int(v) for v in size.split("x")[::-1]),
        "image frame changed: %s" % (frs[0].array.shape,))
    check_restored("restore-bbox3d-margin%s-resize%s-exact" % (margin, size), frs[1], lab)

# 2. labelled slices (non-contiguous: slice 2, then 4..17) + 2-D box + longest side with padding
out = pipe([["roi-crop", "--slices", "labelled", "--bbox", "2d", "--margin-mm", "1.5"], ["vol-resize", "--longest", "256", "--pad"]], data)
mid = read_frames(out)
h = mid[1].keys.get("medpipe.history", "")
res("restore-history-text", h.startswith("crop ") and "; slices 20>" in h and "; resize " in h and "; pad " in h, h)
frs = read_frames(pipe([["vol-restore"]], out))
check_restored("restore-slices-labelled-longest-pad-exact", frs[1], lab)

# 3. only label 2: the other labels are cut away outside its box -> zeros there
out = pipe([["roi-crop", "--bbox", "3d", "--labels", "2"], ["vol-resize", "128x128"], ["vol-restore"]], data)
frs = read_frames(out)
idx = np.argwhere(lab == 2)
lo, hi = idx.min(0), idx.max(0) + 1
want = np.zeros_like(lab)
want[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = lab[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
check_restored("restore-inside-crop-zero-outside", frs[1], want)

# 3b. resampling to a finer spacing (nearest for labels) is undone exactly too
out = pipe([["roi-crop", "--bbox", "3d", "--margin", "1"], ["vol-resize", "--spacing", "0.5,0.33,1.2"], ["vol-restore"]], data)
check_restored("restore-crop-resample-spacing-exact", read_frames(out)[1], lab)

# 4. --ref: the original image (same grid) -> same answer, geometry from the reference
refp = os.path.join(os.environ.get("TMPDIR", "/tmp"), "restore-ref-%d.nrrd" % os.getpid())
with open(refp, "wb") as fh:
    fh.write(frame(img, dirs=DIRS, origin=ORIG, keys={"medpipe.role": "image"}))
out = pipe([["roi-crop", "--bbox", "3d"], ["vol-resize", "90x90"], ["vol-restore", "--ref", refp, "--roles", "label"]], data)
check_restored("restore-ref-same-grid", read_frames(out)[1], lab)

# 5. --ref on another grid: each reference voxel takes the label at its world position
rdirs = [(1.1, 0.0, 0.0), (0.0, 0.9, 0.0), (0.0, 0.0, 1.7)]
rorig = (-110.0, 30.0, -305.0)
with open(refp, "wb") as fh:
    fh.write(frame(np.zeros((40, 70, 80), np.int16), dirs=rdirs, origin=rorig, keys={"medpipe.role": "image"}))
out = pipe([["roi-crop", "--bbox", "3d", "--margin", "1"], ["vol-resize", "100x100"], ["vol-restore", "--ref", refp]], data)
fr = read_frames(out)[1]
M = np.column_stack([np.array(DIRS).T, ORIG])
M = np.vstack([M, [0, 0, 0, 1]])
R = np.column_stack([np.array(rdirs).T, rorig])
R = np.vstack([R, [0, 0, 0, 1]])
kk, jj, ii = np.mgrid[0:40, 0:70, 0:80]
pts = np.stack([ii.ravel(), jj.ravel(), kk.ravel(), np.ones(ii.size)])
q = np.floor(np.linalg.solve(M, R @ pts)[:3] + 0.5).astype(int)
inside = (q[0] >= 0) & (q[0] < X) & (q[1] >= 0) & (q[1] < Y) & (q[2] >= 0) & (q[2] < Z)
want = np.zeros(ii.size, np.uint8)
want[inside] = lab[q[2][inside], q[1][inside], q[0][inside]]
want = want.reshape(40, 70, 80)
nd = int((fr.array != want).sum()) if fr.array.shape == want.shape else -1
res("restore-ref-other-grid-world (%d of %d voxels differ)" % (nd, want.size),
    nd == 0 and np.allclose(fr.origin, rorig) and int(want.sum()) > 0, "%d differ, shape %s" % (nd, fr.array.shape))
os.unlink(refp)

# 5b. the same reference as NIfTI (written by nibabel, RAS), read through mp_file_read
try:
    import nibabel as nib
except ImportError:
    nib = None
if nib is None:
    mptest.skip_ref("restore-ref-nifti", "nibabel missing")
else:
    refn = os.path.join(os.environ.get("TMPDIR", "/tmp"), "restore-ref-%d.nii.gz" % os.getpid())
    nib.save(nib.Nifti1Image(np.zeros((80, 70, 40), np.int16), np.diag([-1, -1, 1, 1]) @ R), refn)
    out = pipe([["roi-crop", "--bbox", "3d", "--margin", "1"], ["vol-resize", "100x100"], ["vol-restore", "--ref", refn]], data)
    fr = read_frames(out)[1]
    nd = int((fr.array != want).sum()) if fr.array.shape == want.shape else -1
    res("restore-ref-nifti-other-grid", nd == 0 and np.allclose(fr.origin, rorig, atol=1e-4), "%d differ, origin %s" % (nd, fr.origin))
    os.unlink(refn)

# 6. nibabel on the saved NIfTI (when vol-save exists)
vs = os.path.join(BIN, "vol-save")
try:
    import nibabel as nib
except ImportError:
    nib = None
if nib is None:
    mptest.skip_ref("restore-nifti-nibabel", "nibabel missing")
elif not os.path.exists(vs):
    print("SKIP restore-nifti-nibabel: vol-save not built yet")
else:
    d = os.environ.get("TMPDIR", "/tmp")
    outp = os.path.join(d, "restore-%d.nii.gz" % os.getpid())
    lab_only = frame(lab, dirs=DIRS, origin=ORIG, keys=dict(case, **{"medpipe.role": "label"}))
    rest = pipe([["roi-crop", "--bbox", "3d", "--margin", "2"], ["vol-resize", "64x64"], ["vol-restore"]], lab_only)
    p = subprocess.run([vs, outp], input=rest, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        res("restore-nifti-nibabel", False, "vol-save: " + p.stderr.decode())
    else:
        im = nib.load(outp)
        a = np.asarray(im.dataobj)            # (X, Y, Z)
        aff = im.affine
        want_aff = np.diag([-1, -1, 1, 1]) @ M  # LPS -> RAS
        ok = a.shape == (X, Y, Z) and np.array_equal(a.transpose(2, 1, 0), lab) and np.allclose(aff, want_aff, atol=1e-4)
        res("restore-nifti-nibabel", ok, "shape %s affine %s" % (a.shape, aff.tolist()))
        os.unlink(outp)

sys.exit(mptest.status())
