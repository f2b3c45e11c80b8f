#!/bin/sh
# sam-tune --mode decoder: one training step (forward, backward, AdamW) of
# the mask decoder on cached embeddings, batch 8, against the official
# segment-anything decoder + MONAI's DiceLoss + torch.optim.AdamW with the
# same number of threads, in the same run, on a random-weight model with
# SAM's decoder (width 256, 64x64 embeddings; tests/gen/sam_ckpt.py grid64).
# Both loss resolutions (256: low-res logits; 1024: upsampled, MedSAM's).
# The C side runs through build/tests/test_sam_train (the library's driver);
# its checkpoint load is timed apart and taken off.
# TUNE_BENCH_THREADS (default 1), TUNE_BENCH_STEPS (default 2).
VPY=${VPY:-.venv/bin/python3}
"$VPY" -c "import torch, monai" 2>/dev/null || { echo "sam_tune: SKIP (no torch or monai)"; exit 0; }
T=$(mktemp -d "${TMPDIR:-/tmp}/medpipe-bench-tune.XXXXXX")
trap 'rm -rf "$T"' EXIT
"$VPY" tests/gen/sam_ckpt.py "$T/g64.pth" --config grid64 --seed 0 || exit 1
"$VPY" - "$T" "${TUNE_BENCH_THREADS:-1}" "${TUNE_BENCH_STEPS:-2}" <<'PYEOF'
import os, subprocess, sys
sys.path.insert(0, "tests/gen"); sys.path.insert(0, "tests/bench")
import numpy as np, torch, torch.nn.functional as F
import sam_ckpt
from benchlib import best, ratio
from monai.losses import DiceLoss
T, N, STEPS = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(N)
B = 8
r = np.random.default_rng(0)
embs = (r.standard_normal((B, 256, 64, 64)) * 0.5).astype(np.float32)
box = np.array([100, 200, 500, 600], np.float32)
sam = sam_ckpt.build("grid64", 0)[0]
dl = DiceLoss(sigmoid=True, squared_pred=True, reduction="mean")
env = dict(os.environ, MEDPIPE_TRAIN_THREADS=str(N))
for LR in (256, 1024):
    gts = (r.random((B, LR, LR)) < 0.2).astype(np.float32)
    one = b"".join(e.tobytes() + box.tobytes() + g.tobytes() for e, g in zip(embs, gts))

    def c(steps):
        subprocess.run(["build/tests/test_sam_train", "adamw", T + "/g64.pth", str(B), str(LR), str(steps)],
                       input=one * steps, env=env, stdout=subprocess.DEVNULL, check=True)
    load = best(lambda: c(0), 2)
    full = best(lambda: c(STEPS), 2)
    ours = ((full[0] - load[0]) / STEPS, (full[1] - load[1]) / STEPS)
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
    tb = best(tstep, 2)
    ratio("decoder step, batch 8, loss at %d, %d thread(s)" % (LR, N), ours, (tb[0] / STEPS, tb[1] / STEPS),
          "pytorch")
PYEOF
