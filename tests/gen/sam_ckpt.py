#!/usr/bin/env python3
"""sam_ckpt.py - random-weight SAM checkpoints made with the official
segment-anything code, for tests (never real weights).

    sam_ckpt.py OUT.pth [--config tiny|tiny_hd48|grid64|vit_b] [--seed N]
                [--format pth|nested|fp16|safetensors|evil-global|evil-opcode]

As a module: build(config, seed) -> (sam model, config dict); load_sam() imports
segment_anything without torchvision (only its predictor needs torchvision).
Configurations:
  tiny    image 256, patch 16 (grid 16), embed 96, depth 4, 3 heads, window 7
          (padded to 21), global blocks 1 and 3; prompt/decoder width 64
  grid64  image 1024 (grid 64), embed 64, depth 2, 2 heads, window 14, global 1;
          decoder width 256 as SAM's
  vit_b   the real SAM ViT-B architecture
"""
import json
import pickle
import struct
import sys
import types
import zipfile
from functools import partial

CONFIGS = {
    "tiny": dict(img=256, patch=16, embed=96, depth=4, heads=3, window=7, glob=(1, 3), out=64,
                 mlp_dim=128, iou_hidden=64),
    "grid64": dict(img=1024, patch=16, embed=64, depth=2, heads=2, window=14, glob=(1,), out=256,
                   mlp_dim=2048, iou_hidden=256),
    # heads of 48 values (ViT-H's 80 is not a multiple of 32 either): the
    # 16-float attention kernels' last 16 channels alone
    "tiny_hd48": dict(img=256, patch=16, embed=96, depth=2, heads=2, window=7, glob=(1,), out=64,
                      mlp_dim=128, iou_hidden=64),
    "vit_b": dict(img=1024, patch=16, embed=768, depth=12, heads=12, window=14, glob=(2, 5, 8, 11), out=256,
                  mlp_dim=2048, iou_hidden=256),
}


def load_sam():
    """import segment_anything; stub torchvision when it is absent"""
    try:
        import torchvision  # noqa: F401
    except ImportError:
        tv = types.ModuleType("torchvision")
        tr = types.ModuleType("torchvision.transforms")
        fn = types.ModuleType("torchvision.transforms.functional")
        fn.resize = None
        fn.to_pil_image = None
        ops = types.ModuleType("torchvision.ops")
        bx = types.ModuleType("torchvision.ops.boxes")
        bx.batched_nms = bx.box_area = None
        tr.functional = fn
        tv.transforms = tr
        tv.ops = ops
        ops.boxes = bx
        tv.__path__ = []
        sys.modules.update({"torchvision": tv, "torchvision.transforms": tr,
                            "torchvision.transforms.functional": fn, "torchvision.ops": ops,
                            "torchvision.ops.boxes": bx})
    import segment_anything
    return segment_anything


def build(config="tiny", seed=0):
    import torch
    sa = load_sam()
    from segment_anything.modeling import (ImageEncoderViT, MaskDecoder, PromptEncoder, Sam,
                                           TwoWayTransformer)
    c = CONFIGS[config]
    torch.manual_seed(seed)
    g = c["img"] // c["patch"]
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=c["depth"], embed_dim=c["embed"], img_size=c["img"], mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=c["heads"],
            patch_size=c["patch"], qkv_bias=True, use_rel_pos=True,
            global_attn_indexes=c["glob"], window_size=c["window"], out_chans=c["out"]),
        prompt_encoder=PromptEncoder(embed_dim=c["out"], image_embedding_size=(g, g),
                                     input_image_size=(c["img"], c["img"]), mask_in_chans=16),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=c["out"], mlp_dim=c["mlp_dim"], num_heads=8),
            transformer_dim=c["out"], iou_head_depth=3, iou_head_hidden_dim=c["iou_hidden"]),
        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375])
    # defaults leave norms at 1/0 and relative positions at 0: randomise them
    with torch.no_grad():
        for name, p in sam.named_parameters():
            if "rel_pos" in name or "pos_embed" in name:
                p.normal_(0, 0.3)
            elif p.dim() == 1 and "norm" in name or name.endswith("neck.1.weight") or name.endswith("neck.3.weight") \
                    or name.endswith("output_upscaling.1.weight"):
                if name.endswith("weight"):
                    p.normal_(1, 0.2)
                else:
                    p.normal_(0, 0.2)
            elif p.dim() == 1:
                p.normal_(0, 0.1)
    sam.eval()
    return sam, c


def save(sam, out, fmt="pth"):
    import torch
    sd = sam.state_dict()
    if fmt == "pth":
        torch.save(sd, out)
    elif fmt == "nested":
        torch.save({"epoch": 3, "model": sd, "optimizer": {"lr": 1e-4, "betas": [0.9, 0.999]}}, out)
    elif fmt == "fp16":
        torch.save({k: v.half() for k, v in sd.items()}, out)
    elif fmt == "safetensors":
        header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
        for k, v in sd.items():
            b = v.detach().float().contiguous().numpy().tobytes()
            header[k] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [off, off + len(b)]}
            blobs.append(b)
            off += len(b)
        h = json.dumps(header).encode()
        h += b" " * (-len(h) % 8)
        with open(out, "wb") as f:
            f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    elif fmt in ("evil-global", "evil-opcode"):
        # a valid torch zip whose data.pkl calls os.system / uses INST
        torch.save(sd, out)
        with zipfile.ZipFile(out) as z:
            names = z.namelist()
            items = {n: z.read(n) for n in names}
        pk = [n for n in names if n.endswith("data.pkl")][0]
        if fmt == "evil-global":
            items[pk] = b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03."
        else:
            items[pk] = b"(S'true'\nios\nsystem\n."
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
            for n in names:
                z.writestr(n, items[n])
    else:
        raise SystemExit("unknown format " + fmt)


def main():
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--config", default="tiny", choices=sorted(CONFIGS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--format", default="pth")
    a = ap.parse_args()
    sam, _ = build(a.config, a.seed)
    save(sam, a.out, a.format)


if __name__ == "__main__":
    pickle  # noqa: imported for readers of evil payloads
    main()
