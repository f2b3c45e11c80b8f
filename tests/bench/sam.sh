#!/bin/sh
# sam-embed per 1024x1024 slice and sam-decode per box against the official
# segment-anything (PyTorch) code with the same number of threads, on a
# random-weight SAM ViT-B (tests/gen/sam_ckpt.py), in the same run.
# The OpenCL path (sam-embed --device opencl, one slice; PoCL where there is
# no GPU) is timed as well, with its ratio to the C path: on a CPU it shows
# why --device auto keeps to the C path there.
# SAM_BENCH_THREADS (default: all CPUs), SAM_BENCH_SLICES (default 2), SAM_BENCH_BOXES (default 20),
# SAM_BENCH_CL=0 skips the OpenCL run (minutes on PoCL).
VPY=${VPY:-.venv/bin/python3}
"$VPY" -c "import torch" 2>/dev/null || { echo "sam: SKIP (no torch)"; exit 0; }
T=$(mktemp -d "${TMPDIR:-/tmp}/medpipe-bench-sam.XXXXXX")
trap 'rm -rf "$T"' EXIT
N=${SAM_BENCH_THREADS:-$(nproc)}
NS=${SAM_BENCH_SLICES:-2}
NB=${SAM_BENCH_BOXES:-20}
"$VPY" tests/gen/sam_ckpt.py "$T/vitb.pth" --config vit_b --seed 0 || exit 1
"$VPY" - "$T" "$N" "$NS" "$NB" "${SAM_BENCH_CL:-1}" <<'PYEOF'
import os, subprocess, sys, time, resource
sys.path.insert(0, "tests/gen"); sys.path.insert(0, "tests")
import numpy as np, torch
import sam_ckpt, nrrdframe
T, N, NS, NB, CL = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] != "0"
torch.set_num_threads(N)
rng = np.random.default_rng(0)
vol = rng.uniform(0, 255, (NS, 1024, 1024)).astype(np.float32)
open(T + "/img.nrrd", "wb").write(nrrdframe.frame(vol))
boxes = []
for i in range(NB):
    x0, y0 = rng.integers(0, 700, 2)
    boxes.append((int(x0), int(y0), int(x0 + rng.integers(50, 300)), int(y0 + rng.integers(50, 300))))
# ours
t = time.time()
r = subprocess.run(["bin/sam-embed", "-w", T + "/vitb.pth", "--threads", str(N), "--mode", "sam", T + "/img.nrrd"],
                   stdout=open(T + "/emb.nrrd", "wb"), stderr=subprocess.PIPE)
t_emb_all = time.time() - t
if r.returncode:
    sys.exit("sam-embed failed: " + r.stderr.decode())
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
# decode: time with 1 box and with NB boxes on slice 0, the difference per box
def dec(nb):
    args = ["bin/sam-decode", "-w", T + "/vitb.pth", "--threads", str(N)]
    for b in boxes[:nb]:
        args += ["--box", "%d,%d,%d,%d,0" % b]
    t = time.time()
    r = subprocess.run(args + [T + "/emb.nrrd"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if r.returncode:
        sys.exit("sam-decode failed: " + r.stderr.decode())
    return time.time() - t
d1, dn = dec(1), dec(NB)
t_box = (dn - d1) / (NB - 1)
# load time of the encoder alone (no slices)
t = time.time()
subprocess.run(["bin/sam-embed", "-w", T + "/vitb.pth", "--threads", str(N), "--slices", "0", T + "/img.nrrd"],
               stdout=subprocess.DEVNULL)
t_one = time.time() - t
t_slice = (t_emb_all - t_one) / (NS - 1) if NS > 1 else t_one
# OpenCL: one slice; the encoder's own time from --verbose ("total X s")
cl_line = None
devs = subprocess.run(["bin/medpipe-devices", "--brief"], capture_output=True, text=True).stdout
if CL and "\nopencl:" in "\n" + devs:
    name = [l for l in devs.split("\n") if l.startswith("opencl:")][0].split(None, 2)[-1].strip()
    r = subprocess.run(["bin/sam-embed", "-w", T + "/vitb.pth", "--device", "opencl", "--verbose", "--mode", "sam",
                        "--slices", "0", T + "/img.nrrd"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    tot = [l for l in r.stderr.split("\n") if "encoder: neck" in l]
    if r.returncode or not tot:
        cl_line = "sam-embed --device opencl: failed: " + r.stderr.strip().split("\n")[-1]
    else:
        t_cl = float(tot[-1].split("total")[1].split()[0])
        cl_line = lambda ps: ("sam-embed --device opencl (%s): %.2f s per slice, C %.2f s, PyTorch %.2f s: "
                              "ratio %.1f (OpenCL/C), %.1f (OpenCL/PyTorch)"
                              % (name, t_cl, t_slice, ps, t_cl / t_slice, t_cl / ps))
elif CL:
    cl_line = "sam-embed --device opencl: SKIP (no OpenCL device)"
# PyTorch
sam, _ = sam_ckpt.build("vit_b", 0)
sam.load_state_dict(torch.load(T + "/vitb.pth"))
with torch.no_grad():
    x = torch.from_numpy(np.repeat(vol[:1], 3, 0))
    t = time.time()
    for z in range(NS):
        emb = sam.image_encoder(sam.preprocess(torch.from_numpy(np.repeat(vol[z:z + 1], 3, 0)))[None])
    p_slice = (time.time() - t) / NS
    pe = sam.prompt_encoder.get_dense_pe()
    t = time.time()
    for b in boxes:
        sp, de = sam.prompt_encoder(points=None, boxes=torch.tensor([b], dtype=torch.float32), masks=None)
        low, iou = sam.mask_decoder(image_embeddings=emb, image_pe=pe, sparse_prompt_embeddings=sp,
                                    dense_prompt_embeddings=de, multimask_output=False)
        m = sam.postprocess_masks(low, (1024, 1024), (1024, 1024)) > 0
    p_box = (time.time() - t) / NB
E, Mlp, Tk = 768, 3072, 4096
Tw = 4900
fl = 0
for i in range(12):
    n = Tk if i in (2, 5, 8, 11) else Tw
    fl += 2 * n * (E * 3 * E + E * E) + 2 * Tk * 2 * E * Mlp   # the MLP runs on the 4096 tokens only
    fl += 2 * 2 * (Tk * Tk * E if i in (2, 5, 8, 11) else 25 * 196 * 196 * E)
fl += 2 * Tk * (768 * E) + 2 * Tk * (E * 256 + 9 * 256 * 256)
print("sam-embed: %.2f s per 1024x1024 slice (ViT-B, %d threads), PyTorch %.2f s: ratio %.2f (medpipe/PyTorch); "
      "encoder %.0f GFLOP -> %.0f GFLOP/s; peak RSS %.0f MB" % (t_slice, N, p_slice, t_slice / p_slice, fl / 1e9,
                                                               fl / 1e9 / t_slice, peak))
print("sam-decode: %.1f ms per box (incl. postprocessing to 1024x1024), PyTorch %.1f ms: ratio %.2f" %
      (1000 * t_box, 1000 * p_box, t_box / p_box))
if cl_line:
    print(cl_line(p_slice) if callable(cl_line) else cl_line)
PYEOF
