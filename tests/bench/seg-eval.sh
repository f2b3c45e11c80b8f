#!/bin/sh
# seg-eval vs MedSAM's evaluation in Python (DeepMind's surface-distance
# package, as compute_metrics.py calls it) on the same label maps, same run:
# the TotalSegmentator example (41 labels) and a 256x256x96 phantom, each
# against a shifted and eroded copy.  Whole program time for seg-eval (reading
# frames included) vs the Python metric time alone.  Repeat: BENCH=seg-eval make bench
cd "$(dirname "$0")/../.." || exit 1
VPY=${VPY:-.venv/bin/python3}; [ -x "$VPY" ] || VPY=/usr/bin/python3
"$VPY" -c "import surface_distance" 2>/dev/null || { echo "seg-eval: SKIP: pip install surface-distance (in .venv)"; exit 0; }
exec "$VPY" - <<'PY'
import os, subprocess, sys, tempfile, time
import numpy as np
from scipy import ndimage as ndi
sys.path.insert(0, "tests/gen")
import phantom
from surface_distance import metrics as sd

def medsam(gt, pr, sp):
    d, n = [], []
    for l in np.unique(gt)[1:]:
        g, p = gt == l, pr == l
        d.append(sd.compute_dice_coefficient(g, p))
        n.append(sd.compute_surface_dice_at_tolerance(sd.compute_surface_distances(g, p, sp), 2.0))
    return np.mean(d), np.mean(n)

cases = []
f = "../shared/data/nifti/totalseg/example_seg.nii.gz"
if os.path.exists(f):
    import nibabel as nib
    im = nib.load(f)
    cases.append(("totalseg 122x101x30, 41 labels", np.asarray(im.dataobj).astype(np.uint8).transpose(2, 1, 0).copy(),
                  tuple(float(z) for z in im.header.get_zooms()[:3])))
_, lab = phantom.make_phantom((256, 256, 96), (0.8, 0.8, 2.5), 1)
cases.append(("phantom 256x256x96, 6 labels", lab, (0.8, 0.8, 2.5)))
with tempfile.TemporaryDirectory() as t:
    for name, gt, spx in cases:
        pr = np.roll(gt, 1, axis=2)
        er = ndi.grey_erosion(pr, size=(1, 3, 3))
        pr = np.where(er == pr, pr, 0).astype(np.uint8)
        D = np.diag(spx)
        path = os.path.join(t, "p.nrrd")
        with open(path, "wb") as fh:
            fh.write(phantom.nrrd_frame(gt, D, (0, 0, 0), "label", "c"))
            fh.write(phantom.nrrd_frame(pr, D, (0, 0, 0), "mask", "c"))
        best_c = best_p = 1e9
        for _ in range(3):
            t0 = time.perf_counter()
            out = subprocess.run(["bin/seg-eval", "--summary", path], capture_output=True, text=True, check=True).stdout
            best_c = min(best_c, time.perf_counter() - t0)
            t0 = time.perf_counter()
            pd, pn = medsam(gt, pr, (spx[2], spx[1], spx[0]))
            best_p = min(best_p, time.perf_counter() - t0)
        row = out.strip().split("\n")[1].split(",")
        same = round(pd, 4) == float(row[5]) and round(pn, 4) == float(row[6])
        print("seg-eval %-32s seg-eval %.3f s, surface-distance (python) %.3f s: %.1fx faster; dice %s nsd %s (%s)"
              % (name, best_c, best_p, best_p / best_c, row[5], row[6], "equal to 4 decimals" if same else "DIFFERENT"))
PY
