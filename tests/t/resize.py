"""vol-resize against independent references: OpenCV (linear, cubic, area,
nearest), scikit-image (bspline3 = resize order 3 with anti-aliasing),
scipy.ndimage (resampling to a spacing), numpy (geometry, padding)."""
import os
import warnings
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
warnings.filterwarnings("ignore")


def run(args, data):
    p = subprocess.run([os.path.join(BIN, "vol-resize")] + args, input=data,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise RuntimeError("vol-resize %s: exit %d: %s" % (" ".join(args), p.returncode, p.stderr.decode()))
    return read_frames(p.stdout)


rng = np.random.default_rng(7)
DIRS = [(0.6, 0.1, 0.0), (-0.1, 0.6, 0.0), (0.0, 0.0, 2.5)]
ORIG = (-20.5, 13.25, 7.0)
# smooth-ish random slices: 3 slices of 37 x 23 (x, y)
base = rng.normal(size=(3, 23, 37)).cumsum(axis=2).cumsum(axis=1)
imgf = (base * 10).astype(np.float32)
rngv = float(imgf.max() - imgf.min())

try:
    import cv2
except ImportError:
    cv2 = None

# ---------------------------------------------------------------- OpenCV modes
SIZES = [(64, 50), (17, 11), (50, 15), (74, 46), (37, 23), (12, 23), (1, 5)]
if cv2 is None:
    mptest.skip_ref("resize-opencv", "python3-opencv not installed")
else:
    data = frame(imgf, dirs=DIRS, origin=ORIG, keys={"medpipe.role": "image"})
    for interp, flag in (("linear", cv2.INTER_LINEAR), ("cubic", cv2.INTER_CUBIC), ("area", cv2.INTER_AREA)):
        worst = 0.0
        for (w, h) in SIZES:
            out = run(["%dx%d" % (w, h), "--interp", interp], data)[0].array
            ref = np.stack([cv2.resize(s, (w, h), interpolation=flag) for s in imgf])
            if out.shape != ref.shape:
                worst = np.inf
                break
            worst = mptest.worse(worst, float(np.abs(out.astype(np.float64) - ref).max()) / rngv)
        res("resize-%s-float-vs-opencv (max err %.2g of range, limit 1e-5)" % (interp, worst), worst <= 1e-5,
            "max relative error %g" % worst)
    # uint8 input: OpenCV uses fixed point for 8-bit; allow 1 grey level
    img8 = np.clip((imgf - imgf.min()) / rngv * 255, 0, 255).astype(np.uint8)
    data8 = frame(img8, dirs=DIRS, origin=ORIG, keys={"medpipe.role": "image"})
    for interp, flag in (("linear", cv2.INTER_LINEAR), ("cubic", cv2.INTER_CUBIC), ("area", cv2.INTER_AREA)):
        worst = 0
        for (w, h) in SIZES:
            out = run(["%dx%d" % (w, h), "--interp", interp], data8)[0].array
            ref = np.stack([cv2.resize(s, (w, h), interpolation=flag) for s in img8])
            worst = mptest.worse(worst, int(np.abs(out.astype(int) - ref.astype(int)).max()))
        res("resize-%s-uint8-vs-opencv (max diff %d, limit 1)" % (interp, worst), worst <= 1, "max diff %d" % worst)
    # int16 CT-like values, linear
    img16 = (imgf * 20).astype(np.int16)
    out = run(["64x50"], frame(img16, dirs=DIRS, keys={"medpipe.role": "image"}))[0].array
    ref = np.stack([cv2.resize(s.astype(np.float32), (64, 50), interpolation=cv2.INTER_LINEAR) for s in img16])
    d = np.abs(out.astype(np.float64) - ref).max()
    res("resize-linear-int16 (rounded, max diff %.2f)" % d, out.dtype == np.int16 and d <= 0.5 + 1e-3, "diff %g dtype %s" % (d, out.dtype))
    # nearest for images: pixel centres
    if hasattr(cv2, "INTER_NEAREST_EXACT"):
        worst = 0
        for (w, h) in [(64, 50), (74, 46), (17, 11), (111, 69)]:
            out = run(["%dx%d" % (w, h), "--interp", "nearest"], data8)[0].array
            ref = np.stack([cv2.resize(s, (w, h), interpolation=cv2.INTER_NEAREST_EXACT) for s in img8])
            worst = mptest.worse(worst, int((out != ref).sum()))
        res("resize-nearest-vs-opencv-nearest-exact", worst == 0, "%d pixels differ" % worst)

# ---------------------------------------------------------------- labels: nearest, exact
lab = rng.integers(0, 6, size=(3, 23, 37)).astype(np.int16)
lab[1, 5, 5] = -7
out = run(["100x61"], frame(lab, dirs=DIRS, origin=ORIG, keys={"medpipe.role": "label"}))[0]
xi = ((2 * np.arange(100) + 1) * 37) // 200
yi = ((2 * np.arange(61) + 1) * 23) // 122
ref = lab[:, yi][:, :, xi]
res("resize-label-nearest-exact", out.array.dtype == np.int16 and np.array_equal(out.array, ref), "labels differ")
res("resize-label-values-kept", set(np.unique(out.array)) <= set(np.unique(lab)), "new label values appeared")

# nearest for an image whose type narrows (float64 -> uint8): values picked
# as for labels, then converted (rounded, clamped) as numpy would
img64 = rng.random((3, 23, 37)) * 300 - 20
o64 = run(["100x61", "--interp", "nearest", "--type", "uint8"], frame(img64, keys={"medpipe.role": "image"}))[0]
ref = np.clip(np.round(img64[:, yi][:, :, xi].astype(np.float32)), 0, 255).astype(np.uint8)
res("resize-nearest-float64-to-uint8", o64.array.dtype == np.uint8 and np.array_equal(o64.array, ref),
    "%d pixels differ" % int((o64.array != ref).sum()))

# ---------------------------------------------------------------- geometry
fr = out
d0 = np.array(DIRS)
sx, sy = 37 / 100, 23 / 61
want_dirs = [d0[0] * sx, d0[1] * sy, d0[2]]
want_org = np.array(ORIG) + d0[0] * (sx - 1) / 2 + d0[1] * (sy - 1) / 2
ok = all(np.allclose(a, b, atol=1e-12) for a, b in zip(fr.dirs, want_dirs)) and np.allclose(fr.origin, want_org, atol=1e-9)
# the corner of the pixel grid stays where it was
c_old = np.array(ORIG) - d0[0] / 2 - d0[1] / 2
c_new = np.array(fr.origin) - np.array(fr.dirs[0]) / 2 - np.array(fr.dirs[1]) / 2
res("resize-geometry-pixel-area", ok and np.allclose(c_old, c_new, atol=1e-9), "dirs %s origin %s" % (fr.dirs, fr.origin))
h = fr.keys.get("medpipe.history", "")
g0 = (fr.keys.get("medpipe.grid0.directions"), fr.keys.get("medpipe.grid0.origin"))
g0ok = g0[0] is not None and np.allclose([float(v) for v in g0[0].replace("(", " ").replace(")", " ").replace(",", " ").split()], np.ravel(DIRS)) \
    and np.allclose([float(v) for v in g0[1].strip("()").split(",")], ORIG)
res("resize-history", h == "resize 37x23>100x61 nearest" and fr.keys.get("medpipe.grid0.sizes") == "37 23 3" and g0ok,
    "history '%s' grid0 '%s'" % (h, fr.keys.get("medpipe.grid0.sizes")))

# ---------------------------------------------------------------- longest side + pad
img = (rng.random((2, 200, 300)) * 1000).astype(np.float32)
fr = run(["--longest", "1024", "--pad", "--pad-value", "-5"], frame(img, keys={"medpipe.role": "image"}))[0]
nh = int(200 * (1024 / 300) + 0.5)
ok = fr.array.shape == (2, 1024, 1024) and np.all(fr.array[:, nh:, :] == -5)
if cv2 is not None:
    ref = np.stack([cv2.resize(s, (1024, nh), interpolation=cv2.INTER_LINEAR) for s in img])
    ok = ok and np.abs(fr.array[:, :nh, :] - ref).max() < 1e-3
res("resize-longest-pad (1024x%d padded to 1024x1024)" % nh, ok, "shape %s" % (fr.array.shape,))
res("resize-longest-pad-history", fr.keys.get("medpipe.history") == "resize 300x200>1024x%d linear; pad 1024x%dx2>1024x1024x2 at 0,0,0" % (nh, nh),
    fr.keys.get("medpipe.history"))
labp = (rng.random((2, 200, 300)) > 0.5).astype(np.uint8) * 3
fr = run(["--longest", "256", "--pad", "--pad-value", "9"], frame(labp, keys={"medpipe.role": "label"}))[0]
nh = int(200 * (256 / 300) + 0.5)
res("resize-longest-pad-label-zero", fr.array.shape == (2, 256, 256) and np.all(fr.array[:, nh:, :] == 0) and
    set(np.unique(fr.array)) <= {0, 3}, "bad padding or values")

# ---------------------------------------------------------------- scikit-image order 3
try:
    from skimage.transform import resize as skresize
except ImportError:
    skresize = None
if skresize is None:
    mptest.skip_ref("resize-bspline3-vs-skimage", "scikit-image not installed")
else:
    data = frame(imgf, dirs=DIRS, keys={"medpipe.role": "image"})
    worst = 0.0
    for (w, h) in [(64, 50), (17, 11), (50, 15), (101, 23), (9, 40)]:
        out = run(["%dx%d" % (w, h), "--interp", "bspline3"], data)[0].array
        ref = np.stack([skresize(s.astype(np.float64), (h, w), order=3, mode="reflect", anti_aliasing=True,
                                 preserve_range=True) for s in imgf])
        worst = mptest.worse(worst, float(np.abs(out - ref).max()) / rngv)
    res("resize-bspline3-vs-skimage (max err %.2g of range, limit 1e-5)" % worst, worst <= 1e-5, "max relative error %g" % worst)
    big = (rng.normal(size=(2, 180, 256)).cumsum(axis=2).cumsum(axis=1) * 3).astype(np.float32)
    worst = 0.0
    for (w, h) in [(128, 300), (513, 97)]:
        out = run(["%dx%d" % (w, h), "--interp", "bspline3"], frame(big, keys={"medpipe.role": "image"}))[0].array
        ref = np.stack([skresize(s.astype(np.float64), (h, w), order=3, mode="reflect", anti_aliasing=True,
                                 preserve_range=True) for s in big])
        worst = mptest.worse(worst, float(np.abs(out - ref).max()) / float(np.ptp(big)))
    res("resize-bspline3-vs-skimage-256x180 (max err %.2g of range, limit 1e-5)" % worst, worst <= 1e-5,
        "max relative error %g" % worst)
    worst = 0.0
    for (w, h) in [(64, 50), (17, 11), (50, 15), (9, 40)]:
        out = run(["%dx%d" % (w, h), "--interp", "bspline3", "--border", "constant"], data)[0].array
        ref = np.stack([skresize(s.astype(np.float64), (h, w), order=3, mode="constant", anti_aliasing=True,
                                 preserve_range=True) for s in imgf])
        worst = mptest.worse(worst, float(np.abs(out - ref).max()) / rngv)
    res("resize-bspline3-constant-vs-skimage (MedSAM's mode; max err %.2g of range, limit 1e-5)" % worst, worst <= 1e-5,
        "max relative error %g" % worst)
    nd = 0
    for (w, h) in [(100, 61), (74, 46), (18, 11), (37, 23), (13, 40), (1024, 1024)]:
        out = run(["%dx%d" % (w, h)], frame(lab, keys={"medpipe.role": "label"}))[0].array
        ref = np.stack([skresize(s, (h, w), order=0, mode="constant", anti_aliasing=False, preserve_range=True)
                        for s in lab]).astype(lab.dtype)
        nd += int((out != ref).sum())
    res("resize-label-vs-skimage-order0 (MedSAM's gt resize)", nd == 0, "%d labels differ" % nd)

# ---------------------------------------------------------------- spacing (scipy)
try:
    from scipy import ndimage
except ImportError:
    ndimage = None
if ndimage is None:
    mptest.skip_ref("resize-spacing", "scipy not installed")
else:
    vol = (rng.normal(size=(9, 20, 30)).cumsum(axis=2) * 50).astype(np.float32)
    dirs = [(0.8, 0, 0), (0, 0.8, 0), (0, 0, 2.5)]
    fr = run(["--spacing", "0.5,1.1,1.0"], frame(vol, dirs=dirs, origin=ORIG, keys={"medpipe.role": "image"}))[0]
    n = [int(np.floor(30 * 0.8 / 0.5 + 0.5)), int(np.floor(20 * 0.8 / 1.1 + 0.5)), int(np.floor(9 * 2.5 / 1.0 + 0.5))]
    step = [0.5 / 0.8, 1.1 / 0.8, 1.0 / 2.5]
    zz, yy, xx = np.meshgrid(np.arange(n[2]) * step[2], np.arange(n[1]) * step[1], np.arange(n[0]) * step[0], indexing="ij")
    ref = ndimage.map_coordinates(vol.astype(np.float64), [zz, yy, xx], order=1, mode="nearest")
    ok = fr.array.shape == tuple(n[::-1])
    err = float(np.abs(fr.array - ref).max()) if ok else np.inf
    okg = np.allclose([np.linalg.norm(d) for d in fr.dirs], [0.5, 1.1, 1.0]) and np.allclose(fr.origin, ORIG)
    res("resize-spacing-trilinear-vs-scipy (max err %.2g)" % err, ok and err < 1e-3 * float(np.ptp(vol)) and okg,
        "shape %s err %g geometry %s" % (fr.array.shape, err, fr.dirs))
    labv = rng.integers(0, 4, size=(9, 20, 30)).astype(np.uint8)
    fr = run(["--spacing", "0.5,1.1,1.0"], frame(labv, dirs=dirs, origin=ORIG, keys={"medpipe.role": "label"}))[0]
    ix = [np.minimum(np.floor(np.arange(n[a]) * step[a] + 0.5).astype(int), labv.shape[2 - a] - 1) for a in range(3)]
    ref = labv[ix[2]][:, ix[1]][:, :, ix[0]]
    res("resize-spacing-label-nearest", np.array_equal(fr.array, ref), "labels differ")

# ---------------------------------------------------------------- other roles pass byte for byte
emb = frame(rng.random((4, 5, 6)).astype(np.float32), keys={"medpipe.role": "embedding"})
p = subprocess.run([os.path.join(BIN, "vol-resize"), "8x8"], input=emb, stdout=subprocess.PIPE)
res("resize-pass-other-roles", p.returncode == 0 and p.stdout == emb, "not byte-identical")

sys.exit(mptest.status())
