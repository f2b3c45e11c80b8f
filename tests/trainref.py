"""trainref.py - what the training tests share (tests/t/sam_tune*.py): the
test_sam_train driver (float32 arrays in on stdin, out on stdout) and the
comparisons of its results with torch autograd."""
import os
import subprocess

import numpy as np

DRV = os.path.join("build", "tests", "test_sam_train")


def drv(args, inp):
    """run the driver op args[0]; inp: arrays sent as float32"""
    r = subprocess.run([DRV] + [str(a) for a in args], input=b"".join(np.asarray(a, np.float32).tobytes()
                                                                       for a in inp), capture_output=True)
    if r.returncode:
        raise RuntimeError("%s: %s" % (args[0], r.stderr.decode().strip()))
    return np.frombuffer(r.stdout, np.float32).astype(np.float64), r.stderr.decode()


def split(flat, shapes):
    """flat cut into arrays of these shapes, in order"""
    out, o = [], 0
    for s in shapes:
        n = int(np.prod(s))
        out.append(flat[o:o + n].reshape(s))
        o += n
    return out


def maxrel(a, b):
    """max |a - b| over max |b|"""
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def l2rel(a, b):
    """||a - b|| over ||b||"""
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def t64(a, grad=True):
    """a float32 array as a float64 torch tensor (the references run in float64)"""
    import torch
    return torch.tensor(np.asarray(a, np.float32).astype(np.float64), requires_grad=grad)
