#!/bin/sh
# The ViT-B image encoder of sam-embed (C path) against the rate of the very
# OpenBLAS it links, in one run with the same threads: the encoder's FLOPs,
# its CPU time per 1024x1024 slice, its GFLOP/s, and the time OpenBLAS's
# SGEMM would need for the same products (each class of product timed on its
# own shape), as the ratio encoder time / SGEMM time next to the goal (1.2).
# CPU time of the process (all threads), not wall time: the machine may be
# shared. Each repeat times the encoder once and every SGEMM shape once,
# one after the other, so both see the same load; the ratio of each repeat
# is printed and the median quoted. Random-weight ViT-B (tests/gen/sam_ckpt.py).
#
# FLOPs (2 per multiply-add) are those of the products the C path computes:
# patch embedding, qkv, proj, lin1, lin2 of the 4096 tokens in every block
# (the window blocks' padded tokens are not multiplied), attention Q K^T and
# P V (window blocks: the real queries against the window's 196 keys; global
# blocks: 4096 x 4096), the relative-position products q . R (as the official
# model counts them: the rows used), and the neck's 1x1 and 3x3 convolutions.
# Non-product work (layer norms, GELU, softmax, copies) is not counted but is
# in the encoder's time. The official model's count (padded tokens multiplied
# in the window blocks) is printed beside it.
#
# SAM_BENCH_THREADS (default: all CPUs), SAM_BENCH_REPEAT (default 3),
# SAM_BENCH_BIN (default bin: another build's bin folder, e.g. an older one,
# to compare; its encoder CPU time comes from its --verbose "CPU" note, or
# where it has none, from the process CPU time of 2 slices minus 1 slice),
# MEDPIPE_SAM_PROFILE=1 adds the per-operation table of the last repeat.
VPY=${VPY:-.venv/bin/python3}
"$VPY" -c "import torch" 2>/dev/null || { echo "sam_encoder: SKIP (no torch)"; exit 0; }
T=$(mktemp -d "${TMPDIR:-/tmp}/medpipe-bench-samenc.XXXXXX")
trap 'rm -rf "$T"' EXIT
"$VPY" tests/gen/sam_ckpt.py "$T/vitb.pth" --config vit_b --seed 0 || exit 1
"$VPY" - "$T" "${SAM_BENCH_THREADS:-$(nproc)}" "${SAM_BENCH_REPEAT:-3}" "${SAM_BENCH_BIN:-bin}" <<'PYEOF'
import ctypes, os, re, resource, subprocess, sys, time
sys.path.insert(0, "tests/gen")
import numpy as np
import nrrdframe
T, N, R, BIN = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rng = np.random.default_rng(0)
open(T + "/img.nrrd", "wb").write(nrrdframe.frame(rng.uniform(0, 255, (2, 1024, 1024)).astype(np.float32)))

# the OpenBLAS that sam-embed links
lib = None
for l in subprocess.run(["ldd", BIN + "/sam-embed"], capture_output=True, text=True).stdout.split("\n"):
    if "blas" in l and "=>" in l:
        lib = l.split("=>")[1].split("(")[0].strip()
if not lib:
    sys.exit("sam_encoder: no BLAS library in ldd " + BIN + "/sam-embed")
blas = ctypes.CDLL(lib)
blas.openblas_set_num_threads(N)
P = ctypes.c_void_p
blas.cblas_sgemm.argtypes = [ctypes.c_int] * 6 + [ctypes.c_float, P, ctypes.c_int, P, ctypes.c_int, ctypes.c_float,
                                                  P, ctypes.c_int]

# ViT-B on a 1024x1024 image: the FLOPs of each class of product
E, H, hd, G, w, mlp, C, depth = 768, 12, 64, 64, 14, 3072, 256, 12
glob = {2, 5, 8, 11}
Tk = G * G
nw = -(-G // w)
Np = nw * nw * w * w
f = {"patch": 2 * Tk * E * 768, "qkv": 0, "proj": 0, "mlp1": 0, "mlp2": 0, "gqk": 0, "gav": 0, "wqk": 0, "wav": 0,
     "relpos": 0, "neck1": 2 * Tk * E * C, "neck3": 2 * Tk * 9 * C * C}
official = f["patch"] + f["neck1"] + f["neck3"]
for i in range(depth):
    g = G if i in glob else w
    f["qkv"] += 2 * Tk * E * 3 * E
    f["proj"] += 2 * Tk * E * E
    f["mlp1"] += 2 * Tk * E * mlp
    f["mlp2"] += 2 * Tk * E * mlp
    att = 2 * H * Tk * g * g * hd
    f["gqk" if g == G else "wqk"] += att
    f["gav" if g == G else "wav"] += att
    f["relpos"] += 2 * 2 * H * Tk * g * hd
    n = Tk if g == G else Np
    official += 2 * n * E * 4 * E + 4 * Tk * E * mlp + 2 * 2 * H * n * g * g * hd + 2 * 2 * H * n * g * hd
flops = sum(f.values())

# SGEMM shapes (row-major m, n, k, B transposed?, lda, ldb, calls): the
# products of each class as OpenBLAS would be called for them
shapes = {
    "qkv": (Tk, 3 * E, E, 1, E, E, 1), "proj": (Tk, E, E, 1, E, E, 1), "patch": (Tk, E, 768, 1, 768, 768, 1),
    "mlp1": (Tk, mlp, E, 1, E, E, 1), "mlp2": (Tk, E, mlp, 1, mlp, mlp, 1),
    "gqk": (Tk, Tk, hd, 1, 3 * E, 3 * E, 1), "gav": (Tk, hd, Tk, 0, Tk, 3 * E, 1),
    "wqk": (w * w, w * w, hd, 1, 3 * E, 3 * E, 25), "wav": (w * w, hd, w * w, 0, w * w, 3 * E, 25),
    "relpos": (Tk, G, hd, 1, 3 * E, hd, 1),
    "neck1": (Tk, C, E, 1, E, E, 1), "neck3": (Tk, C, 9 * C, 1, 9 * C, 9 * C, 1),
}
bufs = {}
def sgemm_rate(key):
    m, n, k, tb, lda, ldb, calls = shapes[key]
    if key not in bufs:
        a = rng.standard_normal(m * lda + k).astype(np.float32)
        b = rng.standard_normal((n if tb else k) * ldb + n).astype(np.float32)
        c = np.zeros(m * n, np.float32)
        bufs[key] = (a, b, c)
    a, b, c = bufs[key]
    def run():
        for _ in range(calls):
            blas.cblas_sgemm(101, 111, 112 if tb else 111, m, n, k, 1.0, a.ctypes.data, lda, b.ctypes.data, ldb,
                             0.0, c.ctypes.data, n)
    run()   # warm
    reps = max(1, int(2e10 / (2 * m * n * k * calls)))
    t = time.process_time()
    for _ in range(reps):
        run()
    return 2.0 * m * n * k * calls * reps / (time.process_time() - t) / 1e9

def child_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime

def embed(slices):
    c0 = child_cpu()
    r = subprocess.run([BIN + "/sam-embed", "-w", T + "/vitb.pth", "--threads", str(N), "--mode", "sam", "--verbose",
                        "--slices", slices, T + "/img.nrrd"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode:
        sys.exit("sam-embed failed: " + r.stderr)
    return child_cpu() - c0, r.stderr

rows = []
for rep in range(R):
    cpu1, err = embed("0")
    m = re.findall(r"encoder: neck .*total ([0-9.]+) s; CPU ([0-9.]+) s", err)
    if m:
        wall, enc = float(m[-1][0]), float(m[-1][1])
    else:   # an older build without the CPU note: 2 slices minus 1
        cpu2, err2 = embed("0,1")
        enc = cpu2 - cpu1
        wall = float(re.findall(r"total ([0-9.]+) s", err2)[-1])
    rates = {key: sgemm_rate(key) for key in shapes}
    ref = sum(f[key] / (rates[key] * 1e9) for key in f)
    rows.append((enc, wall, rates, ref))
    print("repeat %d: encoder CPU %.2f s (wall %.2f s): %.1f GFLOP/s; SGEMM time for the same products %.2f s "
          "(%.1f GFLOP/s); ratio %.2f" % (rep + 1, enc, wall, flops / enc / 1e9, ref, flops / ref / 1e9, enc / ref),
          flush=True)
    if rep == R - 1 and "sam profile" in err:
        sys.stderr.write(err[err.index("sam profile"):])
rows.sort(key=lambda r: r[0] / r[3])
enc, wall, rates, ref = rows[len(rows) // 2]
print("SGEMM rates (GFLOP/s, %d threads, CPU time) of the median repeat: %s" % (
    N, ", ".join("%s %.1f" % (k, rates[k]) for k in shapes)))
best = max(rates.values())
print("sam-embed encoder (ViT-B, 1024x1024, %d threads): %.1f GFLOP (official model %.1f), CPU %.2f s per slice, "
      "%.1f GFLOP/s; OpenBLAS SGEMM on the same products %.1f GFLOP/s (best shape %.1f); "
      "ratio %.2f (goal <= 1.2: %s; vs the best shape's rate %.2f); median of %d" % (
          N, flops / 1e9, official / 1e9, enc, flops / enc / 1e9, flops / ref / 1e9, best, enc / ref,
          "met" if enc / ref <= 1.2 else "NOT met", enc / (flops / best / 1e9), R))
PYEOF
