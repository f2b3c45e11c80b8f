"""hu-window against numpy: the clinical mapping, MedSAM's CT mapping and its
MR rule (percentiles over voxels > 0, zeros kept), written here as
pre_CT_MR.py writes them; output ranges and types; keys; pass-through."""
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


def run(args, data):
    p = subprocess.run([os.path.join(BIN, "hu-window")] + args, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise RuntimeError("hu-window %s: exit %d: %s" % (" ".join(args), p.returncode, p.stderr.decode()))
    return read_frames(p.stdout)


def ndiff(a, b):
    if a.shape != b.shape or a.dtype != b.dtype:
        return "shape/dtype %s %s vs %s %s" % (a.shape, a.dtype, b.shape, b.dtype)
    return "%d voxels differ (max %g)" % (int((a != b).sum()), float(np.abs(a.astype(float) - b.astype(float)).max()))


rng = np.random.default_rng(3)
ct = rng.integers(-1024, 2000, size=(100, 128, 130)).astype(np.int16)   # > 1M voxels: several slabs
DIRS = [(0.8, 0, 0), (0, 0.8, 0), (0, 0, 2.0)]
data = frame(ct, dirs=DIRS, keys={"medpipe.role": "image", "medpipe.case": "a"})


def clinical(x, lo, hi, olo=0.0, ohi=255.0):
    t = (np.clip(x.astype(np.float64), lo, hi) - lo) / (hi - lo)
    return olo + t * (ohi - olo) if olo != 0 else t * (ohi - olo)


def round_away(v):
    return np.where(v >= 0, np.floor(v + 0.5), np.ceil(v - 0.5))


# clinical, presets and explicit windows
for args, lo, hi in ((["--preset", "soft-tissue"], -160, 240), (["-l", "-600", "-w", "1500"], -1350, 150),
                     (["--preset", "bone"], -450, 1050), (["--preset", "brain"], 0, 80), (["--preset", "liver"], -15, 135)):
    fr = run(args, data)[0]
    want = round_away(clinical(ct, lo, hi)).astype(np.uint8)
    res("window-clinical-%s" % "_".join(args).lstrip("-"), np.array_equal(fr.array, want), ndiff(fr.array, want))
fr = run(["--preset", "lung", "--range", "-1,1"], data)[0]
want = clinical(ct, -1350, 150, -1.0, 1.0).astype(np.float32)
res("window-clinical-range-pm1-float", np.array_equal(fr.array, want), ndiff(fr.array, want))
fr = run(["--preset", "lung", "--range", "0,1", "--type", "double"], data)[0]
want = clinical(ct, -1350, 150, 0.0, 1.0)
res("window-clinical-range-01-double", np.array_equal(fr.array, want), ndiff(fr.array, want))
fr = run(["-l", "40", "-w", "400", "--range", "0,1000", "--type", "int16"], data)[0]
want = round_away(clinical(ct, -160, 240, 0.0, 1000.0)).astype(np.int16)
res("window-clinical-int16-0-1000", np.array_equal(fr.array, want), ndiff(fr.array, want))
k = fr.keys
res("window-keys", k.get("medpipe.window.level") == "40" and k.get("medpipe.window.width") == "400" and
    k.get("medpipe.window.mapping") == "clinical" and k.get("medpipe.window.in") == "-160,240" and
    k.get("medpipe.window.out") == "0,1000", str(k))

# MedSAM CT: clip, min-max of the clipped volume, *255, np.uint8 (pre_CT_MR.py)


def medsam_ct(x, level, width):
    lower, upper = level - width / 2, level + width / 2
    pre = np.clip(x, lower, upper)
    pre = (pre - np.min(pre)) / (np.max(pre) - np.min(pre)) * 255.0
    return np.uint8(pre)


fr = run(["--preset", "soft-tissue", "--mapping", "medsam"], data)[0]
want = medsam_ct(ct, 40, 400)
res("window-medsam-ct", np.array_equal(fr.array, want), ndiff(fr.array, want))
narrow = rng.integers(-100, 101, size=(7, 50, 60)).astype(np.int16)   # does not reach the window bounds
fr = run(["--preset", "soft-tissue", "--mapping", "medsam"], frame(narrow, keys={"medpipe.role": "image"}))[0]
want = medsam_ct(narrow, 40, 400)
res("window-medsam-ct-narrow-range (min-max of the clipped volume)", np.array_equal(fr.array, want), ndiff(fr.array, want))
res("window-medsam-keys", fr.keys.get("medpipe.window.in") == "-100,100" and fr.keys.get("medpipe.window.mapping") == "medsam",
    str(fr.keys))

# MedSAM MR: percentiles 0.5/99.5 over voxels > 0, zeros stay zero


def medsam_mr(x):
    lower, upper = np.percentile(x[x > 0], 0.5), np.percentile(x[x > 0], 99.5)
    pre = np.clip(x, lower, upper)
    pre = (pre - np.min(pre)) / (np.max(pre) - np.min(pre)) * 255.0
    pre[x == 0] = 0
    return np.uint8(pre)


for dt in (np.uint16, np.int16, np.float32, np.float64):
    mr = (rng.gamma(2.0, 300.0, size=(9, 70, 80))).astype(dt)
    mr[:, :10, :] = 0
    if dt == np.int16:
        mr[0, 0, :5] = -3      # negative values: clipped to the lower percentile, not kept
    fr = run(["--percentiles", "0.5,99.5", "--nonzero", "--mapping", "medsam"], frame(mr, keys={"medpipe.role": "image"}))[0]
    want = medsam_mr(mr)
    res("window-medsam-mr-%s" % np.dtype(dt).name, np.array_equal(fr.array, want), ndiff(fr.array, want))
    if dt == np.float64:
        p = fr.keys.get("medpipe.window.in", "nan,nan").split(",")
        ref = (np.percentile(mr[mr > 0], 0.5), np.percentile(mr[mr > 0], 99.5))
        res("window-percentiles-values", float(p[0]) == ref[0] and float(p[1]) == ref[1], "%s vs %s" % (p, ref))

# percentiles over all voxels, clinical mapping, float output
mr = rng.normal(500, 100, size=(5, 40, 30)).astype(np.float32)
fr = run(["--percentiles", "1,99", "--range", "0,1"], frame(mr, keys={"medpipe.role": "image"}))[0]
lo, hi = np.percentile(mr.astype(np.float64), 1), np.percentile(mr.astype(np.float64), 99)
want = clinical(mr, lo, hi, 0.0, 1.0).astype(np.float32)
err = float(np.abs(fr.array.astype(np.float64) - want).max())
res("window-percentiles-clinical (max err %.2g)" % err, err < 1e-6, "max err %g" % err)

# other roles pass byte for byte; image frames windowed
lab = frame((ct[:3] > 0).astype(np.uint8), keys={"medpipe.role": "label"})
p = subprocess.run([os.path.join(BIN, "hu-window"), "--preset", "bone"], input=lab, stdout=subprocess.PIPE)
res("window-pass-label-byte-exact", p.returncode == 0 and p.stdout == lab, "changed")

sys.exit(mptest.status())
