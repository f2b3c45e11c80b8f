#!/usr/bin/env python3
"""npy and npz files written by numpy (every dtype, both byte orders,
Fortran order, format versions 1.0/2.0/3.0, np.savez stored and
np.savez_compressed deflated, ZIP64 archives) read back with the same
voxels; a damaged CRC or truncated archive is refused with one line."""
import io
import os
import subprocess
import sys
import tempfile
import zipfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from mpstream import read_frames  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import mptest  # noqa: E402
from mptest import ok  # noqa: E402

CONV = os.environ.get("FMT_CONV", "build/tests/test_fmt")
T = tempfile.mkdtemp(prefix="medpipe-npy.")


def cat(path):
    r = subprocess.run([CONV, "cat", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.decode(errors="replace").strip())
    return read_frames(r.stdout)


def same(fr, a):
    a = np.asarray(a)
    if a.dtype == np.bool_:
        a = a.astype(np.uint8)
    a = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("="))
    while a.ndim > 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 0:
        a = a.reshape(1)
    return fr.array.shape == a.shape and fr.array.dtype == a.dtype and np.array_equal(fr.array, a)


def main():
    if not os.access(CONV, os.X_OK):
        print("SKIP formats-npy: %s not built" % CONV)
        return 0
    rng = np.random.default_rng(7)
    base = rng.integers(-1000, 1000, size=(3, 4, 5))
    for dt in ("i1", "u1", "<i2", ">i2", "<u2", "<i4", ">u4", "<i8", "<u8", "<f4", ">f4", "<f8", ">f8", "?"):
        a = (base % 2 == 0) if dt == "?" else base.astype(dt)
        p = os.path.join(T, "a.npy")
        np.save(p, a)
        try:
            ok("npy-dtype-" + dt, same(cat(p)[0], a), "voxels differ")
        except RuntimeError as e:
            ok("npy-dtype-" + dt, False, str(e))
    cases = {
        "fortran-3d": np.asfortranarray(base.astype(np.int16)),
        "fortran-2d": np.asfortranarray(base[0].astype(np.float32)),
        "1d": np.arange(7, dtype=np.uint16),
        "0d": np.array(3.5),
        "4d": rng.integers(0, 9, size=(2, 3, 4, 5)).astype(np.uint8),
        "5d-leading-1": rng.integers(0, 9, size=(1, 2, 3, 4, 5)).astype(np.int32),
    }
    for name, a in cases.items():
        p = os.path.join(T, name + ".npy")
        np.save(p, a)
        try:
            ok("npy-" + name, same(cat(p)[0], a), "voxels differ")
        except RuntimeError as e:
            ok("npy-" + name, False, str(e))
    for ver in ((1, 0), (2, 0), (3, 0)):
        p = os.path.join(T, "v%d.npy" % ver[0])
        with open(p, "wb") as fp:
            np.lib.format.write_array(fp, base.astype(np.int16), version=ver)
        try:
            ok("npy-version-%d.%d" % ver, same(cat(p)[0], base.astype(np.int16)), "voxels differ")
        except RuntimeError as e:
            ok("npy-version-%d.%d" % ver, False, str(e))
    # our .npy files open in numpy
    for dt in ("u1", "i2", "f4", "f8", "i8"):
        src = os.path.join(T, "src.npy")
        a = base.astype(dt)
        np.save(src, a)
        out = os.path.join(T, "ours.npy")
        r = subprocess.run([CONV, "conv", src, out], stderr=subprocess.PIPE)
        ok("npy-write-" + dt, r.returncode == 0 and np.array_equal(np.load(out), a) and np.load(out).dtype == a.dtype,
           r.stderr.decode())
    # npz: stored, deflated, ZIP64
    arrs = {"imgs": base.astype(np.uint8), "gts": (base > 0).astype(np.uint8), "spacing": np.array([1.5, 0.7, 0.7])}
    for kind in ("savez", "savez_compressed", "zip64"):
        p = os.path.join(T, kind + ".npz")
        if kind == "savez":
            np.savez(p, **arrs)
        elif kind == "savez_compressed":
            np.savez_compressed(p, **arrs)
        else:
            with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_DEFLATED) as z:
                for k, v in arrs.items():
                    with z.open(k + ".npy", "w", force_zip64=True) as fp:
                        np.lib.format.write_array(fp, v)
        try:
            frs = cat(p)
            good = len(frs) == 3 and all(same(fr, arrs[fr.keys.get("medpipe.npz.name")]) for fr in frs)
            good = good and [fr.keys.get("medpipe.role", "") for fr in frs if fr.keys["medpipe.npz.name"] == "gts"] == ["label"]
            ok("npz-" + kind, good, "arrays differ")
        except (RuntimeError, KeyError) as e:
            ok("npz-" + kind, False, str(e))
    # damaged archives
    p = os.path.join(T, "savez.npz")
    b = bytearray(open(p, "rb").read())
    i = b.find(b"NUMPY")
    b[i - 1 + 128 + 10] ^= 0xFF  # inside the first array's data (after its 128-byte npy header): CRC mismatch
    bad = os.path.join(T, "crc.npz")
    open(bad, "wb").write(bytes(b))
    for name, path, data in (("crc", bad, None), ("truncated", os.path.join(T, "trunc.npz"), bytes(b[: len(b) // 2]))):
        if data is not None:
            open(path, "wb").write(data)
        r = subprocess.run([CONV, "cat", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        err = r.stderr.decode()
        ok("npz-bad-" + name, r.returncode == 1 and err.count("\n") == 1 and os.path.basename(path) in err and not r.stdout,
           "exit %d: %s" % (r.returncode, err))
    return mptest.status()


if __name__ == "__main__":
    try:
        rc = main()
    finally:
        subprocess.run(["rm", "-rf", T])
    sys.exit(rc)
