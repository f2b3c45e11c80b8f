#!/bin/sh
# dcm2vol vs dcm2niix on a generated CT series (BENCH_SLICES slices of
# 512x512 int16, default 500), uncompressed and JPEG lossless (process 14
# SV1, written by DCMTK's dcmcjpeg), caches warm:
#   dcm2vol DIR | vol-save out.nii   vs dcm2niix -z n -b n   (goal <= 1.0)
#   dcm2vol -o out.nii DIR           vs dcm2niix -z n -b n
#   dcm2vol -o out.nii.gz DIR        vs dcm2niix -z y -b n   (goal <= 0.6)
# Best of 3 runs (1 for the compressed pair: dcm2niix -z y takes tens of
# seconds without pigz), wall and CPU time (user + system of the programs,
# getrusage). Prints both ratios medpipe/dcm2niix (< 1: medpipe faster), the
# goal, and met / NOT met on the CPU ratio (these machines are shared).
PY=${PY:-/usr/bin/python3}
N=${BENCH_SLICES:-500}
command -v dcm2niix > /dev/null || { echo "dcm2vol: SKIP (no dcm2niix)"; exit 0; }
command -v dcm2vol > /dev/null || { echo "dcm2vol: SKIP (no bin/dcm2vol)"; exit 0; }
D=$(mktemp -d "${TMPDIR:-/tmp}/bench-dcm2vol.XXXXXX")
trap 'rm -rf "$D"' EXIT
# BENCH_DCM_DIR: reuse a folder made by tests/gen/dcmtree.py --bench
if [ -n "${BENCH_DCM_DIR:-}" ] && [ -d "$BENCH_DCM_DIR/plain" ]; then ln -s "$(cd "$BENCH_DCM_DIR" && pwd)" "$D/in"
else $PY tests/gen/dcmtree.py --bench "$D/in" --slices "$N" --size 512 || exit 1; fi
cat "$D"/in/*/* > /dev/null
$PY - "$D" "$N" <<'PYEOF'
import os, subprocess, sys
sys.path.insert(0, "tests/bench")
from benchlib import best
d, n = sys.argv[1], int(sys.argv[2])
os.makedirs(d + "/o1", exist_ok=True)
os.makedirs(d + "/o2", exist_ok=True)
def sh(cmd):
    return lambda: subprocess.run(cmd, shell=True, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
def theirs(z, src):
    return sh("rm -f %s/o2/*; dcm2niix -z %s -b n -o %s/o2 -f out %s" % (d, z, d, src))
for kind in ("plain", "jpegll"):
    src = "%s/in/%s" % (d, kind)
    if not os.path.isdir(src):
        print("dcm2vol %s: SKIP (no data)" % kind)
        continue
    rows = [("dcm2vol | vol-save out.nii", sh("dcm2vol %s | vol-save %s/o1/out.nii" % (src, d)), "n", 1.0, 3),
            ("dcm2vol -o out.nii", sh("dcm2vol -o %s/o1/out.nii %s" % (d, src)), "n", None, 3),
            ("dcm2vol -o out.nii.gz", sh("dcm2vol -o %s/o1/out.nii.gz %s" % (d, src)), "y", 0.6, 1)]
    peer = {}
    for what, fn, z, goal, reps in rows:
        try:
            a = best(fn, reps)
            if (z, reps) not in peer:
                peer[(z, reps)] = best(theirs(z, src), reps)
        except subprocess.CalledProcessError as e:
            print("dcm2vol %s: %s failed: %s" % (kind, what, e))
            continue
        b = peer[(z, reps)]
        g = "" if goal is None else ", goal <= %.1f: %s" % (goal, "met" if a[1] / b[1] <= goal else "NOT met")
        print("dcm2vol %s %d slices 512x512: %s %.3fs (cpu %.3fs), dcm2niix -z %s %.3fs (cpu %.3fs), "
              "ratio medpipe/dcm2niix %.2f wall, %.2f cpu%s" % (kind, n, what, a[0], a[1], z, b[0], b[1],
                                                               a[0] / b[0], a[1] / b[1], g), flush=True)
PYEOF
