"""sam_msa.py - Medical-SAM-Adapter's adapters on segment_anything's ViT, a
small torch reimplementation (the reference of tests/t/sam_tune.py's
gradients and of tests/t/sam_adapter_load.py's sam-embed --adapter):
in every block a Space_Adapter (Linear D->D/4, GELU, Linear D/4->D, with a
skip) on the attention's output inside the windows, and an MLP_Adapter
beside the MLP on norm2's output, scaled 0.5. Import after torch and
segment_anything are importable (sam_ckpt.load_sam())."""
import types

import torch
import torch.nn.functional as F

ADN = ["Space_Adapter.D_fc1.weight", "Space_Adapter.D_fc1.bias", "Space_Adapter.D_fc2.weight",
       "Space_Adapter.D_fc2.bias", "MLP_Adapter.D_fc1.weight", "MLP_Adapter.D_fc1.bias",
       "MLP_Adapter.D_fc2.weight", "MLP_Adapter.D_fc2.bias"]


class Adapter(torch.nn.Module):
    """Medical-SAM-Adapter's bottleneck: Linear D->D/4, GELU, Linear D/4->D, optional skip"""

    def __init__(self, d, skip):
        super().__init__()
        self.D_fc1 = torch.nn.Linear(d, d // 4)
        self.D_fc2 = torch.nn.Linear(d // 4, d)
        self.skip = skip

    def forward(self, x):
        y = self.D_fc2(F.gelu(self.D_fc1(x)))
        return x + y if self.skip else y


def adapter_forward(blk, x):
    """segment_anything's Block.forward with Medical-SAM-Adapter's adapters: the
    Space_Adapter (with skip) on the attention's output inside the windows, the
    MLP_Adapter beside the MLP on norm2's output, scaled 0.5"""
    from segment_anything.modeling.image_encoder import window_partition, window_unpartition
    shortcut = x
    x = blk.norm1(x)
    if blk.window_size > 0:
        H, W = x.shape[1], x.shape[2]
        x, pad_hw = window_partition(x, blk.window_size)
    x = blk.Space_Adapter(blk.attn(x))
    if blk.window_size > 0:
        x = window_unpartition(x, blk.window_size, pad_hw, (H, W))
    x = shortcut + x
    xn = blk.norm2(x)
    return x + blk.mlp(xn) + 0.5 * blk.MLP_Adapter(xn)


def add_adapters(model, mats=None, dtype=torch.float64):
    """adapters in every encoder block of model; mats[block][k]: the array of
    ADN[k] (else nn.Linear's initialisation)"""
    for bi, blk in enumerate(model.image_encoder.blocks):
        e = blk.norm1.weight.shape[0]
        blk.Space_Adapter = Adapter(e, True)
        blk.MLP_Adapter = Adapter(e, False)
        if mats is not None:
            for k, nm in enumerate(ADN):
                mod, fc, kind = nm.split(".")
                getattr(getattr(blk, mod), fc)._parameters[kind] = torch.nn.Parameter(
                    torch.tensor(mats[bi][k], dtype=dtype))
        blk.forward = types.MethodType(adapter_forward, blk)
