#!/usr/bin/env python3
"""--device cpu against --device opencl:0 (PoCL in CI) in every program with a
heavy step: hu-window, ccl-clean and (when it has --device) vol-resize, on
random frames and on real CT and label maps from ../shared/data.  The output
streams must be byte-identical (the kernels mirror the C code; floating point
results are compared exactly too, since they come out equal)."""
import gzip
import os
import re
import struct
import subprocess
import sys

import numpy as np
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import mptest  # noqa: E402
from mptest import ok  # noqa: E402

BIN = os.environ.get("BIN", "bin")
DATA = os.environ.get("DATA", "../shared/data")
NP2NRRD = {np.dtype(np.uint8): "uint8", np.dtype(np.int8): "int8", np.dtype(np.uint16): "uint16",
           np.dtype(np.int16): "int16", np.dtype(np.uint32): "uint32", np.dtype(np.int32): "int32",
           np.dtype(np.float32): "float", np.dtype(np.float64): "double"}


def frame(arr, role, spacing=(0.8, 0.8, 2.5), case="c1"):
    arr = np.ascontiguousarray(arr)
    z, y, x = arr.shape
    h = ("NRRD0004\ntype: %s\ndimension: 3\nspace: left-posterior-superior\nsizes: %d %d %d\n"
         "space directions: (%r,0,0) (0,%r,0) (0,0,%r)\nkinds: domain domain domain\nendian: little\n"
         "encoding: raw\nspace origin: (0,0,0)\nmedpipe.case:=%s\nmedpipe.role:=%s\n\n"
         % (NP2NRRD[arr.dtype], x, y, z, spacing[0], spacing[1], spacing[2], case, role))
    return h.encode() + arr.astype(arr.dtype.newbyteorder("<")).tobytes()


def nifti(rel):
    """(Z,Y,X) array of a .nii.gz, read with gzip+struct only"""
    p = os.path.join(DATA, rel)
    if not os.path.exists(p):
        return None
    b = gzip.open(p).read()
    d = struct.unpack("<8h", b[40:56])
    dt = {2: np.uint8, 4: np.int16, 8: np.int32, 16: np.float32}[struct.unpack("<h", b[70:72])[0]]
    vo = int(struct.unpack("<f", b[108:112])[0])
    n = d[1] * d[2] * d[3]
    return np.frombuffer(b[vo:vo + n * np.dtype(dt).itemsize], dtype=dt).reshape(d[3], d[2], d[1])


def run(prog, args, stdin, device):
    env = dict(os.environ, MEDPIPE_DEVICE="")
    p = subprocess.run([os.path.join(BIN, prog)] + args + ["--device", device], input=stdin,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    return p.returncode, p.stdout, p.stderr.decode(errors="replace").strip()


NRRD2NP = {"uint8": np.uint8, "int8": np.int8, "uint16": np.uint16, "int16": np.int16, "uint32": np.uint32,
           "int32": np.int32, "uint64": np.uint64, "int64": np.int64, "float": np.float32, "double": np.float64}


def frames(b):
    """(header text, array) of every frame of a stream"""
    out, o = [], 0
    while o < len(b):
        e = b.index(b"\n\n", o)
        h = b[o:e].decode()
        kv = dict(l.split(": ", 1) for l in h.splitlines()[1:] if ": " in l and ":=" not in l)
        n = int(np.prod([int(x) for x in kv["sizes"].split()]))
        dt = np.dtype(NRRD2NP[kv["type"]])
        out.append((h, np.frombuffer(b[e + 2:e + 2 + n * dt.itemsize], dt)))
        o = e + 2 + n * dt.itemsize
    return out


def same(name, prog, args, stdin, tol=None):
    """byte-identical; with tol, the same headers and values within tol (float
    frames: tol * value range; integer frames: off by at most 1 where the
    float result sits on a rounding edge, in at most 0.1% of the voxels)"""
    rc1, o1, e1 = run(prog, args, stdin, "cpu")
    rc2, o2, e2 = run(prog, args, stdin, "opencl:0")
    if rc1 != 0 or rc2 != 0:
        ok(name, False, "exit %d/%d: %s | %s" % (rc1, rc2, e1[:200], e2[:200]))
    elif tol is None or o1 == o2:
        ok(name, o1 == o2 and len(o1) > 0,
           "outputs differ (%d vs %d bytes)" % (len(o1), len(o2)))
    else:
        f1, f2 = frames(o1), frames(o2)
        why = ""
        if len(f1) != len(f2):
            why = "%d vs %d frames" % (len(f1), len(f2))
        for (h1, a1), (h2, a2) in zip(f1, f2):
            if h1 != h2 or a1.shape != a2.shape:
                why = "headers differ"
            elif a1.dtype.kind == "f":
                rng_ = float(np.nanmax(a1) - np.nanmin(a1)) or 1.0
                d = float(np.nanmax(np.abs(a1.astype(np.float64) - a2)))
                if not np.array_equal(np.isnan(a1), np.isnan(a2)):
                    why = "NaN in different voxels"
                elif not (d <= tol * rng_):
                    why = "float difference %g of range %g" % (d, rng_)
            else:
                d = np.abs(a1.astype(np.int64) - a2.astype(np.int64))
                if d.max() > 1 or (d > 0).mean() > 1e-3:
                    why = "integer difference max %d in %d voxels" % (d.max(), int((d > 0).sum()))
        ok(name, not why, why)


def main():
    devs = subprocess.run([os.path.join(BIN, "medpipe-devices"), "--brief"], stdout=subprocess.PIPE).stdout.decode()
    if "opencl:0" not in devs:
        print("SKIP opencl tools: no OpenCL device (medpipe-devices lists none)")
        return 0
    rng = np.random.default_rng(6)
    # a CT-like image with NaN-free int16 values and a multi-label map with small bits
    img = (rng.normal(40, 300, (12, 70, 90))).astype(np.int16)
    lab = np.zeros((12, 70, 90), np.uint8)
    lab[2:10, 10:50, 20:70] = 1
    lab[4:8, 30:60, 5:40] = 2
    lab[rng.random(lab.shape) < 0.03] = 3
    lab[rng.random(lab.shape) < 0.01] = 0
    fimg = rng.normal(0, 1, (5, 40, 33)).astype(np.float32)
    stream = frame(img, "image") + frame(lab, "label") + frame(fimg, "image", case="c2")
    ct = nifti("nifti/totalseg/example_ct_sm.nii.gz")
    seg = nifti("nifti/totalseg/example_seg.nii.gz")
    real = None
    if ct is not None and seg is not None:
        real = frame(ct, "image", (1.5, 1.5, 1.5), "ts") + frame(seg, "label", (1.5, 1.5, 1.5), "ts")

    for what, s in (("random", stream), ("TotalSegmentator", real)):
        if s is None:
            print("SKIP opencl tools on %s: no %s/nifti/totalseg" % (what, DATA))
            continue
        same("hu-window soft-tissue (%s)" % what, "hu-window", ["--preset", "soft-tissue"], s)
        same("hu-window medsam float (%s)" % what, "hu-window", ["-l", "40", "-w", "400", "--mapping", "medsam", "--range", "0,1", "--type", "float"], s)
        same("hu-window percentiles nonzero (%s)" % what, "hu-window", ["--percentiles", "0.5,99.5", "--nonzero", "--mapping", "medsam"], s)
        same("ccl-clean MedSAM rule (%s)" % what, "ccl-clean", ["--min", "100", "--min2d", "10"], s)
        same("ccl-clean keep-largest 6 (%s)" % what, "ccl-clean", ["--keep-largest", "-c", "6"], s)
        same("ccl-clean binary 18 ids (%s)" % what, "ccl-clean", ["--binary", "-c", "18", "--min", "5", "--ids"], s)
        same("ccl-clean ids 2D 4 (%s)" % what, "ccl-clean", ["--ids-only", "-c", "4"], s)
        same("ccl-clean ids 2D 8 (%s)" % what, "ccl-clean", ["--ids-only", "-c", "8", "--min2d", "3"], s)
    h = subprocess.run([os.path.join(BIN, "vol-resize"), "--help"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE) if os.path.exists(os.path.join(BIN, "vol-resize")) else None
    if h is None or b"--device" not in h.stdout:
        print("SKIP vol-resize --device: vol-resize has no --device option yet")
    else:
        for s, what in ((stream, "random"), (real, "TotalSegmentator")):
            if s is None:
                continue
            for m in ("nearest", "linear", "cubic", "area", "bspline3"):
                # float methods: within 1e-5 of the range (measured identical except
                # where the C code changes its B-spline prefilter), nearest: exact
                tol = None if m == "nearest" else 1e-5
                same("vol-resize %s up (%s)" % (m, what), "vol-resize", ["--size", "128x100", "--interp", m], s, tol)
                same("vol-resize %s down (%s)" % (m, what), "vol-resize", ["--size", "31x27", "--interp", m], s, tol)
                same("vol-resize %s float out (%s)" % (m, what), "vol-resize",
                     ["--size", "64x50", "--interp", m, "--type", "float"], s, tol)
            same("vol-resize longest 256 pad (%s)" % what, "vol-resize", ["--longest", "256", "--pad"], s, 1e-5)
    # auto on this machine and a device that does not exist
    rc, o, e = run("ccl-clean", ["--min", "10"], stream, "auto")
    rc2, o2, e2 = run("ccl-clean", ["--min", "10"], stream, "cpu")
    ok("ccl-clean --device auto", rc == 0 and o == o2, e)
    rc, o, e = run("ccl-clean", ["--min", "10"], stream, "opencl:42")
    ok("ccl-clean --device opencl:42 fails", rc == 1 and len(o) == 0 and "no device 42" in e and e.count("\n") == 0, e)
    # the connected-components kernels keep everything on the device: the
    # labels go in, the ids come back with the component count (4 bytes);
    # nothing crosses the bus between kernels (the chunks' prefix sums are a
    # kernel too). --verbose counts the bytes as a device with its own memory
    # would copy them.
    rc, o, e = run("ccl-clean", ["--ids-only", "--verbose"], frame(lab, "label"), "opencl:0")
    m = re.search(r"connected components, 90x70x12: (\d+) bytes to the device, (\d+) from it", e)
    want = (lab.size, lab.size * 4 + 4)
    ok("ccl-clean bytes on the bus: labels in, ids + count out", rc == 0 and m is not None
       and (int(m.group(1)), int(m.group(2))) == want,
       "want %d to, %d from: %s" % (want + ((m.group(0) if m else e[-300:]),)))
    rc, o, e = run("hu-window", ["--preset", "bone"], stream, "gpu")
    ok("hu-window --device gpu is a usage error", rc == 2 and "bad device" in e, e)
    return mptest.status()


sys.exit(main())
