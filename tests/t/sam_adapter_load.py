#!/usr/bin/env python3
"""sam-embed --adapter / sam-decode --adapter: what sam-tune --adapter-out
writes, applied on top of --weights (issue 14), on the tiny random-weight
ViT of tests/gen/sam_ckpt.py (image 256, 4 blocks).

- (a) a LoRA trained by sam-tune --mode lora: sam-embed -w base --adapter D
  equals sam-embed -w tuned.pth (the merged checkpoint sam-tune --out writes)
  within 1e-5 relative L2 (float rounding of the two merges);
- (b) against the references: peft's PeftModel.from_pretrained(base, D)
  gives the same embedding (<= 1e-4 relative L2) and, through the official
  predictor path, the same masks (>= 99.9 % of pixels, probabilities within
  1e-4) as sam-embed/sam-decode --adapter D; Medical-SAM-Adapter's adapters
  (sam-tune --mode adapter) against the torch reimplementation of their
  block (tests/gen/sam_msa.py): embedding within 1e-4 relative L2, and
  sam-embed --device opencl (where an OpenCL device is present) within 1e-4
  of the C path;
- (c) an adapter written by peft itself (get_peft_model on the tiny model,
  target_modules ["qkv"], rank 3, lora_alpha 5, modules_to_save
  ["mask_decoder"], random LoRA matrices and a perturbed decoder, saved with
  save_pretrained; also with use_rslora): embeddings and masks as (b);
- (d) errors: a missing folder or file, bad JSON, an unsupported config
  (peft_type, DoRA, fan_in_fan_out, regex target_modules), a tensor not in
  the model, a shape mismatch, a LoRA module outside target_modules,
  embeddings of other weights in sam-decode: exit 1, one line naming the
  file."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "gen"))
sys.path.insert(0, os.path.join(HERE, ".."))
import mptest  # noqa: E402
from mptest import ok  # noqa: E402

BIN = os.environ.get("BIN", "bin")

try:
    import peft  # noqa: F401  (before sam_ckpt, which may stub torchvision)
    from peft import LoraConfig, PeftModel, get_peft_model
    from safetensors.numpy import load_file as st_load, save_file as st_save
    peft_why = ""
except Exception as e:  # noqa: BLE001
    peft = None
    peft_why = str(e).split("\n")[0]
try:
    import torch
    import torch.nn.functional as F
    import sam_ckpt
    sam_ckpt.load_sam()
    import sam_msa
except Exception as e:  # noqa: BLE001
    mptest.skip_ref("sam_adapter_load", "torch or segment_anything unavailable (%s)" % str(e).split("\n")[0])
    sys.exit(mptest.status())
import mpstream  # noqa: E402
import nrrdframe  # noqa: E402

torch.set_num_threads(2)
T = tempfile.mkdtemp(prefix="medpipe-adload.")
rng = np.random.default_rng(11)


def run(cmd):
    r = subprocess.run(cmd, shell=True, capture_output=True)
    return r.returncode, r.stdout, r.stderr.decode()


def l2rel(a, b):
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / max(np.linalg.norm(b), 1e-30))


CK = os.path.join(T, "base.pth")
sam, cfg = sam_ckpt.build("tiny", seed=3)
sam_ckpt.save(sam, CK)
S, D = cfg["img"], cfg["depth"]

# a volume of S x S slices (medsam preprocessing: min-max only) with labels
yy, xx = np.mgrid[0:S, 0:S]
NZ = 3
vol = np.zeros((NZ, S, S), np.float32)
lab = np.zeros((NZ, S, S), np.uint8)
for z in range(NZ):
    circ = (xx - 80 - 8 * z) ** 2 + (yy - 120 + 5 * z) ** 2 < (30 + 2 * z) ** 2
    rect = (abs(xx - 190) < 25) & (abs(yy - 60 - 4 * z) < 15)
    vol[z] = 50 * circ + 120 * rect + 20 * rng.standard_normal((S, S))
    lab[z][circ] = 1
    lab[z][rect] = 3
VL = os.path.join(T, "vl.nrrd")
with open(VL, "wb") as f:
    f.write(nrrdframe.frame(vol, keys={"medpipe.case": "c1"}))
    f.write(nrrdframe.frame(lab, keys={"medpipe.case": "c1", "medpipe.role": "label"}))


def embed(args):
    """sam-embed's embeddings (N, C, G, G) of every slice, or (None, err)"""
    rc, out, err = run("%s/sam-embed -t 2 %s %s" % (BIN, args, VL))
    if rc:
        return None, err.strip()
    return [fr for fr in mpstream.read_frames(out) if fr.keys.get("medpipe.role") == "embedding"][0].array, ""


def decode(eargs, dargs):
    """sam-embed | sam-decode --from-label --logits: (mask, prob) or (None, err)"""
    rc, out, err = run("%s/sam-embed -t 2 %s %s | %s/sam-decode -t 2 %s --from-label --logits"
                       % (BIN, eargs, VL, BIN, dargs))
    if rc:
        return None, err.strip()
    frs = mpstream.read_frames(out)
    return (frs[0].array, frs[1].array), ""


def ref_encode(model):
    xs = []
    with torch.no_grad():
        for z in range(NZ):
            x = np.repeat(vol[z][None], 3, 0)
            x = (x - x.min()) / max(x.max() - x.min(), 1e-8)
            xs.append(model.image_encoder(torch.from_numpy(x.astype(np.float32))[None])[0].numpy())
    return np.stack(xs)


def ref_masks(model):
    """the official model's masks and probabilities for boxes from the labels"""
    ref = np.zeros((NZ, S, S), np.int64)
    refp = np.zeros((NZ, S, S), np.float32)
    embs = ref_encode(model)
    with torch.no_grad():
        for z in range(NZ):
            e = torch.from_numpy(embs[z])[None]
            for v in (1, 3):
                ys, xs_ = np.nonzero(lab[z] == v)
                sp, de = model.prompt_encoder(points=None, masks=None, boxes=torch.tensor(
                    [[xs_.min(), ys.min(), xs_.max(), ys.max()]], dtype=torch.float32))
                low, _ = model.mask_decoder(image_embeddings=e, image_pe=model.prompt_encoder.get_dense_pe(),
                                            sparse_prompt_embeddings=sp, dense_prompt_embeddings=de,
                                            multimask_output=False)
                p = F.interpolate(torch.sigmoid(low), size=(S, S), mode="bilinear", align_corners=False)
                ref[z][p[0, 0].numpy() > 0.5] = v
                refp[z] = np.maximum(refp[z], p[0, 0].numpy())
    return ref, refp


def check_masks(name, got, model):
    if got[0] is None:
        ok(name, False, got[1])
        return
    (mask, prob), _ = got
    ref, refp = ref_masks(model)
    agree = float((mask == ref).mean())
    perr = float(np.abs(prob - refp).max())
    ok(name, mask.shape == ref.shape and agree >= 0.999 and perr <= 1e-4,
       "%.5f of pixels agree with the reference, probabilities max abs err %.2g" % (agree, perr))
    print("  %s: %.5f of pixels agree (%.3f foreground), probabilities max abs err %.2g"
          % (name, agree, (ref > 0).mean(), perr), file=sys.stderr)


def peft_model(pdir):
    base = sam_ckpt.build("tiny", seed=3)[0]
    pm = PeftModel.from_pretrained(base, pdir)
    pm.eval()
    return pm.base_model.model


# ---------------------------------------------------------------- LoRA from sam-tune
LP = os.path.join(T, "lp")
rc, _, err = run("%s/sam-tune --mode lora -w %s -o %s/l.pth --steps 3 --lr 1e-3 --rank 2 --adapter-out %s %s"
                 % (BIN, CK, T, LP, VL))
if rc:
    ok("lora-tune", False, err.strip())
else:
    e_ad, why = embed("-w %s --adapter %s" % (CK, LP))
    e_m, why2 = embed("-w %s/l.pth" % T)
    e_0, _ = embed("-w %s" % CK)
    if e_ad is None or e_m is None:
        ok("lora-adapter-vs-merged", False, why or why2)
    else:
        e, moved = l2rel(e_ad, e_m), l2rel(e_0, e_m)
        ok("lora-adapter-vs-merged", e <= 1e-5 and moved > 1e-4,
           "rel L2 %.2g (<= 1e-5), LoRA moved the embedding by %.2g" % (e, moved))
        print("  sam-embed --adapter vs the merged checkpoint: rel L2 %.2g (the LoRA moves it by %.2g)"
              % (e, moved), file=sys.stderr)
    if peft is None:
        mptest.skip_ref("lora-adapter-vs-peft", "peft unavailable (%s)" % peft_why)
    elif e_ad is not None:
        try:
            pm = peft_model(LP)
            r = ref_encode(pm)
            e = l2rel(e_ad, r)
            ok("lora-adapter-vs-peft", e <= 1e-4, "embedding rel L2 %.2g (<= 1e-4)" % e)
            print("  sam-embed --adapter vs PeftModel.from_pretrained: rel L2 %.2g" % e, file=sys.stderr)
            check_masks("lora-adapter-decode-vs-peft", decode("-w %s -a %s" % (CK, LP), "-w %s -a %s" % (CK, LP)), pm)
        except Exception as ex:  # noqa: BLE001
            ok("lora-adapter-vs-peft", False, "%s: %s" % (type(ex).__name__, ex))
    # the embeddings name base + adapter: sam-decode without the adapter refuses them
    rc, _, err = run("%s/sam-embed -w %s -a %s %s | %s/sam-decode -w %s --from-label > /dev/null"
                     % (BIN, CK, LP, VL, BIN, CK))
    ok("error-decode-without-adapter", rc == 1 and "embeddings made by" in err and err.count("\n") == 1,
       "rc %d: %s" % (rc, err.strip()))

# ---------------------------------------------------------------- Medical-SAM-Adapter from sam-tune
AP = os.path.join(T, "ap")
rc, _, err = run("%s/sam-tune --mode adapter -w %s -o %s/a.pth --steps 3 --lr 1e-3 --adapter-out %s %s"
                 % (BIN, CK, T, AP, VL))
if rc:
    ok("msa-tune", False, err.strip())
else:
    e_ad, why = embed("-w %s/a.pth --adapter %s" % (T, AP))
    try:
        from safetensors.torch import load_file as stt_load
        sta = stt_load(os.path.join(AP, "adapter_model.safetensors"))
        mats = [[sta["image_encoder.blocks.%d.%s" % (b, n)].numpy() for n in sam_msa.ADN] for b in range(D)]
        ma = sam_ckpt.build("tiny", seed=5)[0]
        ma.load_state_dict(torch.load(os.path.join(T, "a.pth"), weights_only=True), strict=True)
        sam_msa.add_adapters(ma, mats, dtype=torch.float32)
        ma.eval()
        have_ref = True
    except Exception as ex:  # noqa: BLE001
        have_ref = False
        mptest.skip_ref("msa-adapter-vs-torch", "%s: %s" % (type(ex).__name__, ex))
    if e_ad is None:
        ok("msa-adapter-vs-torch", False, why)
    elif have_ref:
        r = ref_encode(ma)
        e0, _ = embed("-w %s/a.pth" % T)
        e, moved = l2rel(e_ad, r), l2rel(e0, r)
        ok("msa-adapter-vs-torch", e <= 1e-4 and moved > 1e-3,
           "embedding rel L2 %.2g (<= 1e-4); without the adapters %.2g" % (e, moved))
        print("  Medical-SAM-Adapter: sam-embed --adapter vs torch: rel L2 %.2g (adapters move it by %.2g)"
              % (e, moved), file=sys.stderr)
        check_masks("msa-adapter-decode-vs-torch",
                    decode("-w %s/a.pth -a %s" % (T, AP), "-w %s/a.pth -a %s" % (T, AP)), ma)
    # on an OpenCL device: the same kernels run the adapters
    rc, out, _ = run("%s/medpipe-devices --brief" % BIN)
    if rc or "opencl:" not in out.decode():
        mptest.skip("msa-adapter-opencl", "no OpenCL device")
    elif e_ad is not None:
        e_cl, why = embed("--device opencl:0 -w %s/a.pth --adapter %s" % (T, AP))
        if e_cl is None:
            ok("msa-adapter-opencl", False, why)
        else:
            e = l2rel(e_cl, e_ad)
            ok("msa-adapter-opencl", e <= 1e-4, "OpenCL vs C rel L2 %.2g (<= 1e-4)" % e)
            print("  Medical-SAM-Adapter on opencl:0 vs the C path: rel L2 %.2g" % e, file=sys.stderr)

# ---------------------------------------------------------------- an adapter written by peft itself
PP = os.path.join(T, "pp")
if peft is None:
    mptest.skip_ref("peft-written", "peft unavailable (%s)" % peft_why)
else:
    for name, rs in (("peft-written", False), ("peft-written-rslora", True)):
        try:
            torch.manual_seed(4)
            base = sam_ckpt.build("tiny", seed=3)[0]
            pm = get_peft_model(base, LoraConfig(r=3, lora_alpha=5, target_modules=["qkv"],
                                                 modules_to_save=["mask_decoder"], use_rslora=rs))
            with torch.no_grad():
                for n_, p in pm.named_parameters():
                    if "lora_" in n_:
                        p.copy_(torch.randn_like(p) * 0.2)
                    elif "modules_to_save" in n_:
                        p.add_(torch.randn_like(p) * 0.005)
            pm.create_or_update_model_card = lambda *a, **k: None   # the model card wants Jinja2
            pdir = PP + ("r" if rs else "")
            pm.save_pretrained(pdir)
            pm.eval()
            model = pm.base_model.model
            e_ad, why = embed("-w %s --adapter %s" % (CK, pdir))
            if e_ad is None:
                ok(name, False, why)
                continue
            r = ref_encode(model)
            e, moved = l2rel(e_ad, r), l2rel(ref_encode(sam_ckpt.build("tiny", seed=3)[0]), r)
            ok(name, e <= 1e-4 and moved > 1e-3, "embedding rel L2 %.2g (<= 1e-4), LoRA moves it by %.2g"
               % (e, moved))
            print("  %s: sam-embed --adapter vs peft's model: rel L2 %.2g" % (name, e), file=sys.stderr)
            if not rs:
                got = decode("-w %s -a %s" % (CK, pdir), "-w %s -a %s" % (CK, pdir))
                check_masks("peft-written-decode", got, model)
                # the same adapter without its modules_to_save: other probabilities
                nd = os.path.join(T, "nodec")
                shutil.copytree(pdir, nd)
                c = json.load(open(os.path.join(nd, "adapter_config.json")))
                c["modules_to_save"] = None
                json.dump(c, open(os.path.join(nd, "adapter_config.json"), "w"))
                st = st_load(os.path.join(nd, "adapter_model.safetensors"))
                st_save({k: v for k, v in st.items() if "lora_" in k}, os.path.join(nd, "adapter_model.safetensors"),
                        metadata={"format": "pt"})
                got2 = decode("-w %s -a %s" % (CK, nd), "-w %s -a %s" % (CK, nd))
                if got[0] is None or got2[0] is None:
                    ok("peft-written-decoder-applied", False, got[1] or got2[1])
                else:
                    d = float(np.abs(got[0][1] - got2[0][1]).max())
                    ok("peft-written-decoder-applied", d > 1e-3,
                       "probabilities with and without modules_to_save differ by %.2g" % d)
        except Exception as ex:  # noqa: BLE001
            ok(name, False, "%s: %s" % (type(ex).__name__, ex))

# ---------------------------------------------------------------- errors
def bad_copy(name, src, cfg_edit=None, st_edit=None, text=None):
    """a copy of adapter folder src with its config or tensors changed"""
    d = os.path.join(T, name)
    shutil.copytree(src, d)
    if text is not None:
        open(os.path.join(d, "adapter_config.json"), "w").write(text)
    if cfg_edit:
        c = json.load(open(os.path.join(d, "adapter_config.json")))
        cfg_edit(c)
        json.dump(c, open(os.path.join(d, "adapter_config.json"), "w"))
    if st_edit:
        st = st_load(os.path.join(d, "adapter_model.safetensors"))
        st_edit(st)
        st_save(st, os.path.join(d, "adapter_model.safetensors"), metadata={"format": "pt"})
    return d


def renamed(st, a, b):
    st[b] = st.pop(a)


cases = [("error-missing-folder", os.path.join(T, "nope"), "nope")]
if os.path.isdir(LP):
    os.makedirs(os.path.join(T, "empty"))
    cases.append(("error-no-safetensors", os.path.join(T, "empty"), "adapter_model.safetensors"))
    nc = os.path.join(T, "nocfg")
    shutil.copytree(LP, nc)
    os.unlink(os.path.join(nc, "adapter_config.json"))
    cases.append(("error-no-config", nc, "adapter_config.json is missing"))
    cases.append(("error-bad-json", bad_copy("bj", LP, text='{"r": 4, "lora_alpha": 8,}'), "adapter_config.json"))
    cases.append(("error-peft-type", bad_copy("pt", LP, lambda c: c.update(peft_type="IA3")), "adapter_config.json"))
    cases.append(("error-dora", bad_copy("do", LP, lambda c: c.update(use_dora=True)), "adapter_config.json"))
    cases.append(("error-fan-in-fan-out", bad_copy("ff", LP, lambda c: c.update(fan_in_fan_out=True)),
                  "adapter_config.json"))
    cases.append(("error-regex-targets", bad_copy("rx", LP, lambda c: c.update(target_modules=".*qkv")),
                  "adapter_config.json"))
    cases.append(("error-rank", bad_copy("rk", LP, lambda c: c.update(r=7)), "adapter_model.safetensors"))
    cases.append(("error-not-target", bad_copy("nt", LP, lambda c: c.update(target_modules=["proj"])),
                  "adapter_model.safetensors"))
    if peft is not None:
        pre = "base_model.model.image_encoder.blocks.0.attn.qkv."
        cases.append(("error-tensor-not-in-model", bad_copy("tn", LP, st_edit=lambda st: renamed(
            st, "base_model.model.mask_decoder.iou_token.weight", "base_model.model.mask_decoder.bogus.weight")),
            "adapter_model.safetensors"))
        cases.append(("error-lora-module-not-in-model", bad_copy("tm", LP, st_edit=lambda st: [
            renamed(st, pre + "lora_A.weight", "base_model.model.image_encoder.blocks.9.attn.qkv.lora_A.weight"),
            renamed(st, pre + "lora_B.weight", "base_model.model.image_encoder.blocks.9.attn.qkv.lora_B.weight")]),
            "adapter_model.safetensors"))
        cases.append(("error-shape", bad_copy("sh", LP, st_edit=lambda st: st.update(
            {pre + "lora_A.weight": st[pre + "lora_A.weight"][:, :-1].copy()})), "adapter_model.safetensors"))
        cases.append(("error-lora-b-missing", bad_copy("lb", LP, st_edit=lambda st: st.pop(pre + "lora_B.weight")),
                      "adapter_model.safetensors"))
if os.path.isdir(AP) and peft is not None:
    cases.append(("error-msa-shape", bad_copy("ms", AP, st_edit=lambda st: st.update(
        {"image_encoder.blocks.1.MLP_Adapter.D_fc2.bias": np.zeros(5, np.float32)})), "adapter_model.safetensors"))
    cases.append(("error-msa-unknown", bad_copy("mu", AP, st_edit=lambda st: renamed(
        st, "image_encoder.blocks.1.MLP_Adapter.D_fc2.bias", "image_encoder.blocks.1.Depth_Adapter.D_fc2.bias")),
        "adapter_model.safetensors"))
    cases.append(("error-msa-block", bad_copy("mb", AP, st_edit=lambda st: [renamed(
        st, "image_encoder.blocks.1.%s" % n, "image_encoder.blocks.7.%s" % n) for n in sam_msa.ADN]),
        "adapter_model.safetensors"))
for name, d, what in cases:
    for tool in ("sam-embed", "sam-decode --box 1,1,9,9"):
        rc, out, err = run("%s/%s -w %s --adapter %s %s" % (BIN, tool, CK, d, VL))
        ok("%s-%s" % (name, tool.split()[0]), rc == 1 and not out and err.count("\n") == 1 and what in err,
           "rc %d, %d bytes out: %s" % (rc, len(out), err.strip()))

if not os.environ.get("KEEP"):
    shutil.rmtree(T, ignore_errors=True)
else:
    print("kept", T, file=sys.stderr)
sys.exit(mptest.status())
