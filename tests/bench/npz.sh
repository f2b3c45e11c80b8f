#!/bin/sh
# vol2npz vs numpy's savez_compressed / savez on a CT-sized case in MedSAM's
# layout (imgs uint8 + gts uint8 512x512x300, spacing): TotalSegmentator's
# example CT windowed 40/400 and its labels, enlarged (random data when
# ../shared/data is absent). medpipe: the whole program (read two frames,
# write the npz), best of 3; numpy: the savez call on arrays in memory.
# Repeat: BENCH=npz make bench
cd "$(dirname "$0")/../.." || exit 1
VPY=${VPY:-.venv/bin/python3}; [ -x "$VPY" ] || VPY=/usr/bin/python3
DATA=${DATA:-../shared/data}
exec "$VPY" - "$DATA" <<'EOF'
import os, resource, subprocess, sys, tempfile, time
sys.path.insert(0, "tests/bench")
from benchlib import best, ratio  # noqa: E402,F401
import numpy as np
import scipy.ndimage as ndi

ts = os.path.join(sys.argv[1], "nifti/totalseg")
shape = (300, 512, 512)
if os.path.exists(os.path.join(ts, "example_ct_sm.nii.gz")):
    import nibabel as nib
    ct = np.asanyarray(nib.load(os.path.join(ts, "example_ct_sm.nii.gz")).dataobj).transpose(2, 1, 0).astype(np.float32)
    sg = np.asanyarray(nib.load(os.path.join(ts, "example_seg.nii.gz")).dataobj).astype(np.uint8).transpose(2, 1, 0)
    zf = [a / b for a, b in zip(shape, ct.shape)]
    ct = ndi.zoom(ct, zf, order=1)
    sg = ndi.zoom(sg, zf, order=0)
    what = "TotalSegmentator example CT + labels enlarged"
else:
    rng = np.random.default_rng(0)
    ct = ndi.zoom(ndi.gaussian_filter(rng.normal(0, 300, (75, 128, 128)), 2), 4, order=1)
    sg = (ct > 50).astype(np.uint8) * 3
    what = "random smooth volume"
c = np.clip(ct, -160, 240)
imgs = np.ascontiguousarray(np.uint8((c - c.min()) / (c.max() - c.min()) * 255.0))
gts = np.ascontiguousarray(sg)
spacing = (0.8, 0.8, 1.5)
z, y, x = imgs.shape
T = tempfile.mkdtemp()
src = os.path.join(T, "case.nrrd")
with open(src, "wb") as fp:
    for a, role in ((imgs, "image"), (gts, "label")):
        fp.write(("NRRD0004\ntype: uint8\ndimension: 3\nspace: left-posterior-superior\nsizes: %d %d %d\n"
                  "space directions: (0.8,0,0) (0,0.8,0) (0,0,1.5)\nspace origin: (0,0,0)\nendian: little\n"
                  "encoding: raw\nmedpipe.role:=%s\n\n" % (x, y, z, role)).encode())
        fp.write(a.tobytes())


def ours(*args):
    out = os.path.join(T, "ours.npz")
    r = best(lambda: subprocess.run(["bin/vol2npz", "--layout", "medsam", "-o", out] + list(args) + [src], check=True))
    return r, os.path.getsize(out)


def theirs(fn):
    out = os.path.join(T, "np.npz")
    r = best(lambda: fn(out, imgs=imgs, gts=gts, spacing=spacing))
    return r, os.path.getsize(out)


print("npz: %s, imgs+gts %dx%dx%d uint8 (%.0f MB)" % (what, x, y, z, 2 * imgs.nbytes / 1e6))
print("npz: load average %.1f on %d cores (cpu = user+sys)" % (os.getloadavg()[0], os.cpu_count()))
npc = theirs(np.savez_compressed)
for args, label in ((["--level", "1"], "deflate level 1 (default)"), (["--level", "6"], "deflate level 6 (numpy's)")):
    m = ours(*args)
    print("npz: %-26s medpipe %.3f s (cpu %.3f) %5.1f MB  np.savez_compressed %.3f s (cpu %.3f) %5.1f MB  ratio %.2fx (cpu %.2fx)"
          % (label, m[0][0], m[0][1], m[1] / 1e6, npc[0][0], npc[0][1], npc[1] / 1e6, npc[0][0] / m[0][0], npc[0][1] / m[0][1]))
m = ours("--stored")
nps = theirs(np.savez)
print("npz: %-26s medpipe %.3f s (cpu %.3f)  np.savez %.3f s (cpu %.3f)  ratio %.2fx (cpu %.2fx)"
      % ("stored", m[0][0], m[0][1], nps[0][0], nps[0][1], nps[0][0] / m[0][0], nps[0][1] / m[0][1]))
subprocess.run(["rm", "-rf", T])
EOF
