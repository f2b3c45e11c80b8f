"""augref.py - an independent Python model of vol-augment's random draws
(libcommon/augment.c, described in vol-augment(1)): splitmix64 seeding,
xoshiro256** numbers, 53-bit uniforms, Box-Muller normals, FNV-1a case
hash.  tests/t/augment.py compares the tool's gamma, contrast, noise and
elastic field with what this model predicts for a seed."""
import math

import numpy as np

M64 = (1 << 64) - 1


def splitmix(x):
    """(new state, output)"""
    x = (x + 0x9e3779b97f4a7c15) & M64
    z = x
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M64
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M64
    return x, z ^ (z >> 31)


def rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & M64


class Rng:
    def __init__(self, seed):
        self.s = []
        x = seed & M64
        for _ in range(4):
            x, v = splitmix(x)
            self.s.append(v)

    def next(self):
        s = self.s
        res = (rotl((s[1] * 5) & M64, 7) * 9) & M64
        t = (s[1] << 17) & M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        return res

    def uniform(self, lo, hi):
        return lo + (hi - lo) * ((self.next() >> 11) * (1.0 / 9007199254740992.0))

    def normal(self):
        u1, u2 = self.uniform(0, 1), self.uniform(0, 1)
        u1 = max(u1, 1e-300)
        return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def hash64(b, h):
    h = (h ^ 0xcbf29ce484222325) & M64
    for c in b:
        h ^= c
        h = (h * 0x100000001b3) & M64
    return splitmix(h)[1]


def copy_seed(seed, case, copy):
    """the seed of copy number `copy` (1-based) of case `case`"""
    return hash64(case.encode(), (seed * 0x9e3779b97f4a7c15 + copy) & M64)


def draw(seed, rot, scale, flip, gamma, contrast, dim, sp, elastic=(0.0, 0.0)):
    """the parameters of one copy, as a dict; rot (3 max degrees), scale/gamma/
    contrast (lo, hi), flip (3 0/1), dim (x, y, z), sp (x, y, z) in mm.  'disp'
    is the elastic control grid (gz, gy, gx, 3) in mm, 'g'/'gs' its size/step."""
    g = Rng(seed)
    r = [g.uniform(-rot[a], rot[a]) for a in range(3)]
    if dim[2] == 1:
        r[0] = r[1] = 0.0
    sc = g.uniform(*scale)
    fl = []
    for a in range(3):   # drawn whether the axis may flip or not
        f = g.uniform(0, 1) < 0.5
        fl.append(int(bool(flip[a]) and f and not (a == 2 and dim[2] == 1)))
    out = {"rot": r, "scale": sc, "flip": fl, "gamma": g.uniform(*gamma), "contrast": g.uniform(*contrast)}
    alpha, sigma = elastic
    if alpha > 0 and sigma > 0:
        gg = [int(math.ceil(dim[a] * sp[a] / sigma)) + 2 if dim[a] > 1 else 1 for a in range(3)]
        gs = [dim[a] * sp[a] / (gg[a] - 1) if gg[a] > 1 else 1.0 for a in range(3)]
        n = gg[0] * gg[1] * gg[2]
        v = np.array([g.normal() * alpha for _ in range(3 * n)])
        if dim[2] == 1:
            v[2::3] = 0
        out.update(g=gg, gs=gs, disp=v.astype(np.float32).reshape(gg[2], gg[1], gg[0], 3))
    return out


def noise_normals(seed, n):
    """the n standard normals the noise step of copy `seed` adds (scaled by SIGMA)"""
    g = Rng(seed ^ 0x5bd1e995)
    return np.array([g.normal() for _ in range(n)])


def elastic_source(p, dim, sp):
    """source index (z, y, x arrays) of every output voxel with no rotation,
    zoom or flip: the output point moved by the interpolated control grid"""
    nx, ny, nz = dim
    kk, jj, ii = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    idx = [ii, jj, kk]
    f, i0 = [], []
    for a in range(3):
        if p["g"][a] > 1:
            u = idx[a] * sp[a] / p["gs"][a]
            fl = np.clip(np.floor(u), 0, p["g"][a] - 2)
            f.append(u - fl)
            i0.append(fl.astype(int))
        else:
            f.append(np.zeros(idx[a].shape))
            i0.append(np.zeros(idx[a].shape, int))
    d = np.zeros(ii.shape + (3,))
    for c in range(8):
        b = [(c >> a) & 1 for a in range(3)]
        w = np.ones(ii.shape)
        ci = []
        for a in range(3):
            w = w * (f[a] if b[a] else 1 - f[a])
            ci.append(np.minimum(i0[a] + b[a], p["g"][a] - 1))
        d += w[..., None] * p["disp"][ci[2], ci[1], ci[0]].astype(np.float64)
    return [idx[a] + d[..., a] / sp[a] for a in range(3)]
