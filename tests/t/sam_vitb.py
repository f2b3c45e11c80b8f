#!/usr/bin/env python3
"""Full-size SAM ViT-B (random weights, tests/gen/sam_ckpt.py) against the
official segment-anything code: the image embedding of a 1024x1024 slice
(relative error <= 1e-4) and the masks, logits and IoU predictions of a few
boxes. About 40 s on two cores; MEDPIPE_FAST=1 skips it (the same code
paths run at small size in tests/t/sam.py).
With an OpenCL device (PoCL on a CPU: about 60 s more on two cores) the
embedding is made again with --device opencl and held to the official code
(1e-4) and to the C path's (1e-5 relative: float rounding, measured ~1e-6),
and the first box decoded on it with --device opencl."""
import atexit
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "gen"))
sys.path.insert(0, os.path.join(HERE, ".."))
BIN = os.environ.get("BIN", "bin")
if os.environ.get("MEDPIPE_FAST") == "1":
    print("SKIP sam-vitb: MEDPIPE_FAST=1 skips the full-size ViT-B (40 s)")
    sys.exit(0)
try:
    import torch
    import torch.nn.functional as F
    import sam_ckpt
    sam_ckpt.load_sam()
except Exception as e:  # noqa: BLE001
    import mptest
    mptest.skip_ref("sam-vitb", "torch or segment_anything unavailable (%s)" % str(e).split("\n")[0])
    sys.exit(mptest.status())
import mpstream  # noqa: E402
import nrrdframe  # noqa: E402

fails = 0


def ok(name, cond, why=""):
    global fails
    print("PASS %s" % name if cond else "FAIL %s: %s" % (name, why))
    fails += 0 if cond else 1


T = tempfile.mkdtemp(prefix="medpipe-sam-vitb.")
atexit.register(shutil.rmtree, T, True)   # nothing left behind, whatever the outcome
sam, cfg = sam_ckpt.build("vit_b", 5)
CK = os.path.join(T, "vitb.pth")
sam_ckpt.save(sam, CK, "pth")
rng = np.random.default_rng(3)
y, x = np.mgrid[0:1024, 0:1024]
img = (np.sin(x / 40.0) * np.cos(y / 55.0) * 80 + 120 + 20 * rng.standard_normal((1024, 1024))).astype(np.float32)
img[300:600, 350:700] += 60
with open(os.path.join(T, "img.nrrd"), "wb") as f:
    f.write(nrrdframe.frame(img))
boxes = [(340, 290, 710, 610), (100, 150, 400, 500), (600, 620, 900, 1000)]
r = subprocess.run("%s/sam-embed -w %s --mode sam %s/img.nrrd > %s/emb.nrrd" % (BIN, CK, T, T), shell=True,
                   capture_output=True)
if r.returncode:
    ok("vitb-embed", False, r.stderr.decode())
    sys.exit(1)
ours = mpstream.read_frames(open(os.path.join(T, "emb.nrrd"), "rb").read())[0].array[0]
torch.set_num_threads(os.cpu_count() or 1)
with torch.no_grad():
    ref = sam.image_encoder(sam.preprocess(torch.from_numpy(np.repeat(img[None], 3, 0)))[None])
e = float(np.linalg.norm(ours - ref[0].numpy()) / np.linalg.norm(ref[0].numpy()))
ok("vitb-embed", e <= 1e-4, "rel err %.3g" % e)
print("  vitb embedding rel err %.3g" % e, file=sys.stderr)
r = subprocess.run("%s/medpipe-devices --brief" % BIN, shell=True, capture_output=True)
HAVE_CL = r.returncode == 0 and b"\nopencl:" in b"\n" + r.stdout
if not HAVE_CL:
    print("SKIP vitb-embed-opencl: no OpenCL device")
else:
    r = subprocess.run("%s/sam-embed -w %s --device opencl --mode sam %s/img.nrrd > %s/emb-cl.nrrd" % (BIN, CK, T, T),
                       shell=True, capture_output=True)
    if r.returncode:
        ok("vitb-embed-opencl", False, r.stderr.decode())
        HAVE_CL = False
    else:
        cl = mpstream.read_frames(open(os.path.join(T, "emb-cl.nrrd"), "rb").read())[0].array[0]
        ec = float(np.linalg.norm(cl - ours) / np.linalg.norm(ours))
        eo = float(np.linalg.norm(cl - ref[0].numpy()) / np.linalg.norm(ref[0].numpy()))
        ok("vitb-embed-opencl", ec <= 1e-5 and eo <= 1e-4, "rel err vs C %.3g, vs official %.3g" % (ec, eo))
        print("  vitb OpenCL embedding rel err vs C %.3g, vs official %.3g" % (ec, eo), file=sys.stderr)
args = " ".join("--box %d,%d,%d,%d" % b for b in boxes)
runs = [(i, b, "") for i, b in enumerate(boxes)] + ([(0, boxes[0], "--device opencl")] if HAVE_CL else [])
for i, b, dev in runs:
    name = "vitb-decode-%d%s" % (i, "-opencl" if dev else "")
    r = subprocess.run("%s/sam-decode -w %s %s --logits --box %d,%d,%d,%d %s/emb.nrrd" % (BIN, CK, dev, *b, T),
                       shell=True, capture_output=True)
    if r.returncode:
        ok(name, False, r.stderr.decode())
        continue
    frs = mpstream.read_frames(r.stdout)
    mk, lg = frs[0].array > 0, frs[1].array
    io = float(frs[0].keys["medpipe.sam.iou"].split("=")[1])
    with torch.no_grad():
        sp, de = sam.prompt_encoder(points=None, boxes=torch.tensor([b], dtype=torch.float32), masks=None)
        low, iou = sam.mask_decoder(image_embeddings=torch.from_numpy(ours)[None],
                                    image_pe=sam.prompt_encoder.get_dense_pe(), sparse_prompt_embeddings=sp,
                                    dense_prompt_embeddings=de, multimask_output=False)
        v = sam.postprocess_masks(low, (1024, 1024), (1024, 1024))[0, 0].numpy()
    m = v > 0
    u = (m | mk).sum()
    j = 1.0 if u == 0 else (m & mk).sum() / u
    err = float(np.abs(lg - v).max())
    ok(name, j >= 0.999 and err <= 1e-3 and abs(io - float(iou)) <= 1e-4,
       "IoU %.6f logits err %.3g iou-pred err %.3g" % (j, err, abs(io - float(iou))))
    print("  %s: mask IoU %.6f, logits max abs err %.2g, IoU-prediction err %.2g"
          % (name, j, err, abs(io - float(iou))), file=sys.stderr)
sys.exit(1 if fails else 0)
