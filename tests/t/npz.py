#!/usr/bin/env python3
"""vol2npz: files that numpy.load and zipfile read, with the right dtypes,
shapes and values; deflate and stored; ZIP64 records; pipes; MedSAM's
layout; one file per case; errors. MEDPIPE_SLOW=1 adds a 4.3 GB entry."""
import os
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import mptest  # noqa: E402
from mptest import ok  # noqa: E402

BIN = os.environ.get("BIN", "bin")
T = tempfile.mkdtemp(prefix="medpipe-npz.")
NP2NRRD = {"u1": "uint8", "i1": "int8", "u2": "uint16", "i2": "int16", "u4": "uint32", "i4": "int32",
           "u8": "uint64", "i8": "int64", "f4": "float", "f8": "double"}


def header(shape, dt, role, spacing=None, case="c1"):
    sizes = list(shape)[::-1]
    n = len(sizes)
    sp = spacing or [1.0] * n
    dirs = " ".join("(" + ",".join(repr(sp[i]) if j == i else "0" for j in range(3)) + ")" for i in range(min(n, 3)))
    if n == 4:
        dirs += " none"
    h = "NRRD0004\ntype: %s\ndimension: %d\n" % (NP2NRRD[np.dtype(dt).str[1:]], n)
    if n <= 4:
        h += "space: left-posterior-superior\nspace directions: %s\nspace origin: (0,0,0)\n" % dirs
    h += "sizes: %s\nendian: little\nencoding: raw\n" % " ".join(map(str, sizes))
    h += "medpipe.case:=%s\nmedpipe.role:=%s\n\n" % (case, role)
    return h.encode()


def frame(a, role="image", spacing=None, case="c1"):
    a = np.ascontiguousarray(a)
    return header(a.shape, a.dtype, role, spacing, case) + a.astype(a.dtype.newbyteorder("<")).tobytes()


def run(args, data, env=None):
    p = subprocess.run([os.path.join(BIN, "vol2npz")] + args, input=data, capture_output=True,
                       env=dict(os.environ, **(env or {})))
    return p.returncode, p.stdout, p.stderr.decode()


rng = np.random.default_rng(7)
arrays = []
for dt in ("u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "f4", "f8"):
    d = np.dtype(dt)
    if d.kind == "f":
        a = rng.normal(size=(4, 5, 6)).astype(d)
    else:
        info = np.iinfo(d)
        a = rng.integers(info.min, info.max, (4, 5, 6), dtype=d, endpoint=True)
    arrays.append(a)
arrays.append(rng.integers(0, 9, (7, 9), dtype=np.uint8))          # 2D frame
arrays.append(rng.normal(size=(2, 3, 4, 5)).astype(np.float32))    # 4D frame
stream = b"".join(frame(a, role="image" if i % 2 else "label") for i, a in enumerate(arrays))

for mode, args, env in (("deflate", [], None), ("level9", ["--level", "9"], None), ("stored", ["--stored"], None),
                        ("zip64", [], {"MEDPIPE_ZIP64": "1"}), ("zip64-stored", ["--stored"], {"MEDPIPE_ZIP64": "1"})):
    out = os.path.join(T, mode + ".npz")
    rc, so, err = run(["-o", out] + args, stream, env)
    good = rc == 0
    why = err
    if good:
        z = np.load(out)
        names = ["label", "image"] + ["label_%d" % (i // 2 + 1) if i % 2 == 0 else "image_%d" % (i // 2 + 1)
                                      for i in range(2, len(arrays))]
        if z.files != names:
            good, why = False, "names %s" % z.files
        for n, a in zip(names, arrays):
            if good and not (z[n].dtype == a.dtype and z[n].shape == a.shape and np.array_equal(z[n], a)):
                good, why = False, "%s: %s %s vs %s %s" % (n, z[n].dtype, z[n].shape, a.dtype, a.shape)
        with zipfile.ZipFile(out) as zf:
            bad = zf.testzip()
            if bad:
                good, why = False, "CRC error in %s" % bad
            want = zipfile.ZIP_STORED if "stored" in mode else zipfile.ZIP_DEFLATED
            if any(i.compress_type != want for i in zf.infolist()):
                good, why = False, "compression method"
    ok("npz-" + mode, good, why)

# through a pipe (data descriptors), plain and ZIP64
for env in ({}, {"MEDPIPE_ZIP64": "1"}):
    out = os.path.join(T, "pipe.npz")
    p = subprocess.run("%s -o - | cat > %s" % (os.path.join(BIN, "vol2npz"), out), shell=True, input=stream,
                       capture_output=True, env=dict(os.environ, **env))
    good = p.returncode == 0
    if good:
        z = np.load(out)
        good = all(np.array_equal(z[n], a) for n, a in zip(z.files, arrays)) and len(z.files) == len(arrays)
        with zipfile.ZipFile(out) as zf:
            good = good and zf.testzip() is None and all(i.flag_bits & 8 for i in zf.infolist())
    ok("npz-pipe" + ("-zip64" if env else ""), good, p.stderr.decode())

# a single .npy; the data starts at a multiple of 64 bytes
out = os.path.join(T, "one.npy")
rc, so, err = run(["-o", out], frame(arrays[3]))
ok("npy-single", rc == 0 and np.array_equal(np.load(out), arrays[3]) and np.load(out).dtype == arrays[3].dtype, err)
with open(out, "rb") as fp:
    raw = fp.read()
ok("npy-align", (len(raw) - arrays[3].nbytes) % 64 == 0 and raw[6] == 1, "header of %d bytes" % (len(raw) - arrays[3].nbytes))
rc, so, err = run(["-o", os.path.join(T, "two.npy")], frame(arrays[0]) + frame(arrays[1]))
ok("npy-two-frames", rc == 1 and err.count("\n") == 1 and not os.path.exists(os.path.join(T, "two.npy"))
   and not [f for f in os.listdir(T) if f.startswith("two")], "rc %d: %s" % (rc, err))

# same input, same bytes
a1, a2 = os.path.join(T, "d1.npz"), os.path.join(T, "d2.npz")
run(["-o", a1], stream)
run(["-o", a2], stream)
ok("npz-deterministic", open(a1, "rb").read() == open(a2, "rb").read())

# several deflate pieces (1 MiB each, compressed on threads): same bytes for any thread count
big = (np.arange(5 * 2 ** 20 + 12345) % 251).astype(np.uint8).reshape(1, 1, -1)
big[0, 0, ::7] = rng.integers(0, 255, big[0, 0, ::7].shape, dtype=np.uint8)
outs = []
for th in ("1", "3"):
    out = os.path.join(T, "big%s.npz" % th)
    rc, so, err = run(["-o", out], frame(big), {"MEDPIPE_THREADS": th})
    outs.append(open(out, "rb").read() if rc == 0 else b"")
good = outs[0] and outs[0] == outs[1] and np.array_equal(np.load(os.path.join(T, "big3.npz"))["image"], big)
with zipfile.ZipFile(os.path.join(T, "big3.npz")) as zf:
    good = good and zf.testzip() is None
ok("npz-threads", good, err)

# every level (1..3: ISA-L's igzip, 4..9: zlib) on pieces that compress well, badly
# (random bytes: a piece's output longer than its input) and not at all: numpy
# reads the same array back, zipfile's CRC check passes, any thread count gives the same bytes
mix = big.copy()
mix[0, 0, 2 ** 20:3 * 2 ** 20] = rng.integers(0, 256, 2 * 2 ** 20, dtype=np.uint8)
img8 = (np.arange(7 * 9 * 5) % 3).astype(np.uint8).reshape(7, 9, 5)
for lv in ("1", "2", "3", "4", "6"):
    outs, good, err = [], True, ""
    for th in ("1", "2"):
        out = os.path.join(T, "lv%s-%s.npz" % (lv, th))
        rc, so, err = run(["--level", lv, "-o", out], frame(mix) + frame(img8, "label"),
                          {"MEDPIPE_THREADS": th})
        good = good and rc == 0
        outs.append(open(out, "rb").read() if rc == 0 else b"")
    if good:
        z = np.load(os.path.join(T, "lv%s-2.npz" % lv))
        good = outs[0] == outs[1] and np.array_equal(z["image"], mix) and np.array_equal(z["label"], img8)
        with zipfile.ZipFile(os.path.join(T, "lv%s-2.npz" % lv)) as zf:
            good = good and zf.testzip() is None and all(i.compress_type == zipfile.ZIP_DEFLATED for i in zf.infolist())
    ok("npz-level-" + lv, good, err)

# MedSAM's layout
img = rng.integers(0, 256, (6, 20, 30), dtype=np.uint8)
lab = rng.integers(0, 5, (6, 20, 30)).astype(np.int16)
sp = (0.7421875, 0.75, 2.5)
out = os.path.join(T, "m.npz")
rc, so, err = run(["--layout", "medsam", "-o", out], frame(img, "image", sp) + frame(lab, "label", sp))
good = rc == 0
if good:
    z = np.load(out)
    good = (z.files == ["imgs", "gts", "spacing"] and z["imgs"].dtype == np.uint8 and z["gts"].dtype == np.uint8
            and np.array_equal(z["imgs"], img) and np.array_equal(z["gts"], lab) and z["spacing"].dtype == np.float64
            and z["spacing"].tolist() == list(sp))
ok("npz-medsam", good, err)
# one file per case
two = frame(img, "image", sp, "a") + frame(lab, "label", sp, "a") + frame(img[:2], "image", sp, "b") + frame(lab[:2], "label", sp, "b")
rc, so, err = run(["--layout", "medsam", "-o", os.path.join(T, "case-{case}.npz")], two)
ok("npz-medsam-cases", rc == 0 and np.load(os.path.join(T, "case-b.npz"))["imgs"].shape == (2, 20, 30)
   and np.load(os.path.join(T, "case-a.npz"))["gts"].shape == (6, 20, 30), err)
# {n}: the case's number; a case id made safe for a file name (as vol-save's {case})
rc, so, err = run(["--layout", "medsam", "-o", os.path.join(T, "n{n}.npz")], two)
ok("npz-medsam-cases-n", rc == 0 and np.load(os.path.join(T, "n2.npz"))["imgs"].shape == (2, 20, 30)
   and np.load(os.path.join(T, "n1.npz"))["gts"].shape == (6, 20, 30), err)
odd = frame(img[:1], "image", sp, "p/q r") + frame(lab[:1], "label", sp, "p/q r")
rc, so, err = run(["-o", os.path.join(T, "s-{case}.npz")], odd)
ok("npz-case-name-made-safe", rc == 0 and os.path.exists(os.path.join(T, "s-p_q_r.npz")), "rc %d: %s" % (rc, err))
rc, so, err = run(["--layout", "medsam", "-o", os.path.join(T, "x.npz")], two)
ok("npz-medsam-two-cases-one-file", rc == 1 and err.count("\n") == 1 and "{case}" in err, "rc %d: %s" % (rc, err))
rc, so, err = run(["--layout", "medsam", "-o", os.path.join(T, "x.npz")], frame(lab, "image") + frame(lab, "label"))
ok("npz-medsam-not-uint8", rc == 1 and err.count("\n") == 1 and "uint8" in err, "rc %d: %s" % (rc, err))
rc, so, err = run(["--layout", "medsam", "-o", os.path.join(T, "x.npz")], frame(img, "image") + frame(lab * 100, "label"))
ok("npz-medsam-label-range", rc == 1 and err.count("\n") == 1 and "fit" in err, "rc %d: %s" % (rc, err))
rc, so, err = run(["--layout", "medsam", "-o", os.path.join(T, "x.npz")], frame(img, "image"))
ok("npz-medsam-no-label", rc == 1 and err.count("\n") == 1 and "label" in err, "rc %d: %s" % (rc, err))
ok("npz-medsam-no-partial", not os.path.exists(os.path.join(T, "x.npz")))

# usage errors
for nm, args in (("layout", ["--layout", "x", "-o", "a.npz"]), ("no-output", []), ("ext", ["-o", "a.txt"]),
                 ("level", ["--level", "12", "-o", "a.npz"])):
    rc, so, err = run(args, b"")
    ok("npz-usage-" + nm, rc == 2 and err.count("\n") == 1, "rc %d: %s" % (rc, err))
# an empty pipe: the stage before has said why; exit 1 quietly (--verbose says more)
rc, so, err = run(["-o", os.path.join(T, "e.npz")], b"")
ok("npz-empty-input", rc == 1 and err == "" and not os.path.exists(os.path.join(T, "e.npz")), "rc %d: %s" % (rc, err))
rc, so, err = run(["--verbose", "-o", os.path.join(T, "e.npz")], b"")
ok("npz-empty-input-verbose", rc == 1 and "empty stream" in err, "rc %d: %s" % (rc, err))
rc, so, err = run(["-o", os.path.join(T, "e.npz")], frame(img)[:-10])
ok("npz-truncated-input", rc == 1 and err.count("\n") == 1 and not os.path.exists(os.path.join(T, "e.npz")), "rc %d: %s" % (rc, err))

# a real ZIP64 entry: 4.3 GB of zeros streamed through a pipe
if os.environ.get("MEDPIPE_SLOW") == "1":
    shape = (17, 16384, 16384)     # 4.56e9 bytes
    out = os.path.join(T, "big.npz")
    p = subprocess.Popen([os.path.join(BIN, "vol2npz"), "-o", out], stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdin.write(header(shape, np.uint8, "image"))
    chunk = bytes(1 << 24)
    left = int(np.prod(shape))
    while left:
        k = min(left, len(chunk))
        p.stdin.write(chunk[:k])
        left -= k
    p.stdin.close()
    rc = p.wait()
    good = rc == 0
    if good:
        with zipfile.ZipFile(out) as zf:
            info = zf.infolist()[0]
            good = info.file_size > 0xFFFFFFFF
            with zf.open(info) as fp:
                hdr = fp.read(128)
                n = 128
                while True:
                    b = fp.read(1 << 26)
                    if not b:
                        break
                    n += len(b)
            good = good and n == info.file_size and b"(17, 16384, 16384)" in hdr
    ok("npz-zip64-4GB", good, p.stderr.read().decode())
    os.unlink(out)
else:
    print("SKIP npz-zip64-4GB: set MEDPIPE_SLOW=1 (4.3 GB entry)")
subprocess.run(["rm", "-rf", T])
sys.exit(mptest.status())
