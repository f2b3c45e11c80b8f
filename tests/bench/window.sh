#!/bin/sh
# hu-window vs numpy on a 512x512x200 int16 CT-like volume: the clinical
# mapping (streamed) and MedSAM's (whole volume). Both sides read the file
# and write the uint8 result (to /dev/null); numpy's time excludes Python's
# start-up and imports. Prints seconds and the ratio numpy/medpipe (> 1: medpipe faster).
PY=${PY:-/usr/bin/python3}
exec $PY - <<'PYEOF'
import os, subprocess, tempfile, time
import sys
sys.path.insert(0, "tests/bench")
from benchlib import best, ratio  # noqa: E402,F401
import numpy as np
N = int(os.environ.get("BENCH_SLICES", "200"))
d = tempfile.mkdtemp()
f = os.path.join(d, "ct.nrrd")
rng = np.random.default_rng(0)
y, x = np.mgrid[0:512, 0:512]
body = ((x - 256) ** 2 + (y - 256) ** 2 < 220 ** 2) * 1040 - 1000
vol = (body[None] + rng.normal(0, 40, size=(N, 512, 512))).astype("<i2")
hdr = ("NRRD0004\ntype: int16\ndimension: 3\nspace: left-posterior-superior\nsizes: 512 512 %d\n"
       "space directions: (0.7,0,0) (0,0.7,0) (0,0,1.5)\nendian: little\nencoding: raw\nspace origin: (0,0,0)\n"
       "medpipe.role:=image\n\n" % N).encode()
with open(f, "wb") as fh:
    fh.write(hdr)
    vol.tofile(fh)
del vol


def mp(args):
    return lambda: subprocess.run(["hu-window"] + args + [f], stdout=subprocess.DEVNULL, check=True)

def load():
    return np.fromfile(f, dtype="<i2", offset=len(hdr)).reshape(N, 512, 512)

def np_clinical():
    a = load()
    t = (np.clip(a, -160.0, 240.0) + 160.0) / 400.0 * 255.0
    np.floor(t + 0.5).astype(np.uint8).tofile(os.devnull)

def np_medsam():
    a = load()
    p = np.clip(a, -160.0, 240.0)
    p = (p - np.min(p)) / (np.max(p) - np.min(p)) * 255.0
    np.uint8(p).tofile(os.devnull)

for name, args, ref in (("clinical", ["--preset", "soft-tissue"], np_clinical),
                        ("medsam", ["--preset", "soft-tissue", "--mapping", "medsam"], np_medsam)):
    ratio("hu-window %-8s 512x512x%d int16" % (name, N), best(mp(args)), best(ref), "numpy")
os.unlink(f)
os.rmdir(d)
PYEOF
