"""roi-crop against numpy: MedSAM's slice rule (np.unique(np.where(gt > 0)[0])),
slice ranges, 2-D and 3-D boxes with margins in voxels and mm, chosen labels,
several cases in one stream, empty labels, geometry of the cropped frames."""
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


def run(args, data, rc=0):
    p = subprocess.run([os.path.join(BIN, "roi-crop")] + args, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != rc:
        raise RuntimeError("roi-crop %s: exit %d: %s" % (" ".join(args), p.returncode, p.stderr.decode()))
    return p


rng = np.random.default_rng(5)
DIRS = [(0.8, 0.0, 0.0), (0.0, 0.8, 0.0), (0.0, 0.0, 2.5)]
ORIG = (10.0, -20.0, 30.0)
Z, Y, X = 16, 40, 50
img = rng.integers(-1000, 1000, size=(Z, Y, X)).astype(np.int16)
lab = np.zeros((Z, Y, X), np.uint8)
lab[3:6, 10:20, 12:30] = 1
lab[9:11, 25:28, 5:9] = 2     # slices 6..8 empty: not contiguous
lab[10, 39, 49] = 1           # touches the border: margins get clipped


def case(name, im, lb):
    k = {"medpipe.case": name}
    return frame(im, dirs=DIRS, origin=ORIG, keys=dict(k, **{"medpipe.role": "image"})) + \
        frame(lb, dirs=DIRS, origin=ORIG, keys=dict(k, **{"medpipe.role": "label"}))


def world(ijk):
    return np.array(ORIG) + np.array(DIRS).T @ np.array(ijk, float)


data = case("c1", img, lab)

# MedSAM's slice selection
fr = read_frames(run(["--slices", "labelled"], data).stdout)
zi = np.unique(np.where(lab > 0)[0])
res("crop-slices-labelled-medsam-rule", len(fr) == 2 and np.array_equal(fr[0].array, img[zi]) and np.array_equal(fr[1].array, lab[zi]),
    "z %s" % zi)
res("crop-slices-labelled-geometry", np.allclose(fr[0].origin, world([0, 0, zi[0]])) and np.allclose(fr[1].origin, world([0, 0, zi[0]])),
    str(fr[0].origin))
fr = read_frames(run(["--slices", "range"], data).stdout)
res("crop-slices-range", np.array_equal(fr[0].array, img[zi[0]:zi[-1] + 1]) and np.array_equal(fr[1].array, lab[zi[0]:zi[-1] + 1]), "")
fr = read_frames(run(["--slices", "range", "--margin", "0,0,2"], data).stdout)
res("crop-slices-range-margin", np.array_equal(fr[1].array, lab[zi[0] - 2:zi[-1] + 3]), "")


def box(lb, m, sel=None):
    idx = np.argwhere(lb > 0 if sel is None else np.isin(lb, sel))
    lo = np.maximum(idx.min(0) - m[::-1], 0)
    hi = np.minimum(idx.max(0) + m[::-1] + 1, lb.shape)
    return lo, hi


# 3-D box with margin in voxels and in mm
for args, m, sel in ((["--bbox", "3d"], np.array([0, 0, 0]), None), (["--bbox", "3d", "--margin", "3"], np.array([3, 3, 3]), None),
                     (["--bbox", "3d", "--margin-mm", "2"], np.array([3, 3, 1]), None),
                     (["--bbox", "3d", "--margin", "1,2,0", "--labels", "2"], np.array([1, 2, 0]), [2])):
    fr = read_frames(run(args, data).stdout)
    lo, hi = box(lab, m, sel)
    sl = tuple(slice(a, b) for a, b in zip(lo, hi))
    ok = np.array_equal(fr[0].array, img[sl]) and np.array_equal(fr[1].array, lab[sl])
    okg = np.allclose(fr[1].origin, world(lo[::-1])) and all(np.allclose(a, b) for a, b in zip(fr[1].dirs, DIRS))
    h = fr[1].keys.get("medpipe.history", "")
    want_h = "crop %dx%dx%d>%dx%dx%d at %d,%d,%d" % ((X, Y, Z) + tuple((hi - lo)[::-1]) + tuple(lo[::-1]))
    res("crop-%s" % "_".join(args).replace("-", ""), ok and okg and h == want_h, "box %s..%s history '%s' want '%s'" % (lo, hi, h, want_h))

# 2-D box over the labelled slices
fr = read_frames(run(["--bbox", "2d", "--slices", "labelled", "--margin", "2"], data).stdout)
lo, hi = box(lab, np.array([2, 2, 0]))
want = lab[zi][:, lo[1]:hi[1], lo[2]:hi[2]]
res("crop-bbox2d-slices", np.array_equal(fr[1].array, want) and np.array_equal(fr[0].array, img[zi][:, lo[1]:hi[1], lo[2]:hi[2]]), "")

# several cases, each by its own label; a frame on another grid passes unchanged
lab2 = np.zeros((Z, Y, X), np.uint8)
lab2[7, 1:3, 40:45] = 5
other = frame(np.arange(24, dtype=np.float32).reshape(2, 3, 4), keys={"medpipe.case": "c2", "medpipe.role": "embedding"})
data2 = case("c1", img, lab) + case("c2", img, lab2)[:] + other
p = run(["--bbox", "3d"], data2)
fr = read_frames(p.stdout)
lo1, hi1 = box(lab, np.zeros(3, int))
lo2, hi2 = box(lab2, np.zeros(3, int))
ok = len(fr) == 5 and fr[1].array.shape == tuple(hi1 - lo1) and fr[3].array.shape == tuple(hi2 - lo2) and \
    np.array_equal(fr[3].array, lab2[lo2[0]:hi2[0], lo2[1]:hi2[1], lo2[2]:hi2[2]])
res("crop-cases", ok, "shapes %s" % [f.array.shape for f in fr])
res("crop-other-grid-byte-exact", p.stdout.endswith(other), "embedding frame changed")

# empty label: error (exit 1, one line), keep, drop
empty = case("e", img, np.zeros_like(lab))
p = run(["--bbox", "3d"], empty, rc=1)
res("crop-empty-error", p.stdout == b"" and len(p.stderr.decode().strip().split("\n")) == 1 and b"nothing to keep" in p.stderr, p.stderr.decode())
p = run(["--bbox", "3d", "--allow-empty"], empty)
res("crop-empty-keep-byte-exact", p.stdout == empty, "changed")
p = run(["--bbox", "3d", "--empty", "drop"], empty + data)
fr = read_frames(p.stdout)
res("crop-empty-drop", len(fr) == 2 and fr[0].keys["medpipe.case"] == "c1", "%d frames" % len(fr))

sys.exit(mptest.status())
