#!/bin/sh
# vol-resize 512 -> 1024 vs OpenCV (cv2.resize per slice: linear, cubic, area,
# nearest) on a 512x512x200 int16 CT-like volume (200 slices: CPU times are counted in 10 ms ticks), and bspline3 vs scikit-image
# (resize order=3, anti_aliasing, preserve_range) on 4 slices. Both sides read
# the file and write the result (to /dev/null); Python's start-up and imports
# are not counted. OpenCV runs with its default threads (this machine: all
# cores); vol-resize uses one. Ratio peer/medpipe: > 1 means medpipe is faster.
PY=${PY:-/usr/bin/python3}
exec $PY - <<'PYEOF'
import os, subprocess, tempfile, time
import sys
sys.path.insert(0, "tests/bench")
from benchlib import best, ratio  # noqa: E402,F401
import numpy as np
try:
    import cv2
except ImportError:
    cv2 = None
try:
    from skimage.transform import resize as skresize
except ImportError:
    skresize = None
d = tempfile.mkdtemp()
rng = np.random.default_rng(0)
y, x = np.mgrid[0:512, 0:512]
body = ((x - 256) ** 2 + (y - 256) ** 2 < 220 ** 2) * 1040 - 1000


def write(n, name):
    vol = (body[None] + rng.normal(0, 40, size=(n, 512, 512))).astype("<i2")
    hdr = ("NRRD0004\ntype: int16\ndimension: 3\nspace: left-posterior-superior\nsizes: 512 512 %d\n"
           "space directions: (0.7,0,0) (0,0.7,0) (0,0,1.5)\nendian: little\nencoding: raw\nspace origin: (0,0,0)\n"
           "medpipe.role:=image\n\n" % n).encode()
    f = os.path.join(d, name)
    with open(f, "wb") as fh:
        fh.write(hdr)
        vol.tofile(fh)
    return f, len(hdr), n


def mp(f, interp):
    return lambda: subprocess.run(["vol-resize", "1024x1024", "--interp", interp, f], stdout=subprocess.DEVNULL, check=True)


big = write(200, "ct200.nrrd")
if cv2 is None:
    print("vol-resize vs OpenCV: skipped (python3-opencv missing)")
else:
    for interp, flag in (("linear", cv2.INTER_LINEAR), ("cubic", cv2.INTER_CUBIC), ("area", cv2.INTER_AREA),
                         ("nearest", cv2.INTER_NEAREST_EXACT)):
        def ref():
            f, off, n = big
            a = np.fromfile(f, dtype="<i2", offset=off).reshape(n, 512, 512)
            with open(os.devnull, "wb") as out:
                for s in a:
                    out.write(cv2.resize(s, (1024, 1024), interpolation=flag).tobytes())
        ratio("vol-resize %-8s 512->1024 x200 int16" % interp, best(mp(big[0], interp)), best(ref), "OpenCV")
# 4 slices: the program's start-up (~3 ms of CPU, most of it OpenBLAS's
# initialisation) weighs; 16 slices: closer to a whole case
for ns in (4, 16):
    small = write(ns, "ct%d.nrrd" % ns)
    if skresize is None:
        print("vol-resize bspline3 vs scikit-image: skipped (scikit-image missing)")
        break

    def ref():
        f, off, n = small
        a = np.fromfile(f, dtype="<i2", offset=off).reshape(n, 512, 512)
        with open(os.devnull, "wb") as out:
            for s in a:
                r = skresize(s.astype(np.float64), (1024, 1024), order=3, anti_aliasing=True, preserve_range=True)
                out.write(np.round(r).astype(np.int16).tobytes())
    a, b = best(mp(small[0], "bspline3"), 5), best(ref, 1)
    ratio("vol-resize bspline3 512->1024 x%d int16" % ns, a, b, "scikit-image")
    print("  bspline3 x%d: cpu ratio %.2fx, goal >= 15x (issue 17): %s" % (ns, b[1] / a[1], "met" if b[1] / a[1] >= 15 else "NOT met"))
for f in os.listdir(d):
    os.unlink(os.path.join(d, f))
os.rmdir(d)
PYEOF
