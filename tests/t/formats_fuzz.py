#!/usr/bin/env python3
"""Damaged files of every format (random byte changes, truncation, header
fields set to extreme values): reading each must end with exit 0 (still
valid) or exit 1 with one line naming the file, never a crash or a hang.
Seeded, so the same files every run; MEDPIPE_SLOW=1 tries ten times as many.
FMT_CONV may name a sanitizer build of tests/unit/test_fmt.c."""
import os
import random
import struct
import subprocess
import sys
import tempfile

import numpy as np

CONV = os.environ.get("FMT_CONV", "build/tests/test_fmt")
T = tempfile.mkdtemp(prefix="medpipe-fuzz.")
N = 40 * (10 if os.environ.get("MEDPIPE_SLOW") == "1" else 1)


def fuzz(out, victims, ext, rng):
    """damaged copies of each victim file, read through CONV cat out: the count of failures"""
    bad = 0
    for v in victims:
        orig = open(v, "rb").read()
        for i in range(N):
            b = bytearray(orig)
            how = rng.randrange(4)
            if how == 0 and len(b) > 1:
                b = b[:rng.randrange(len(b))]
            elif how == 1:
                for _ in range(rng.randrange(1, 8)):
                    b[rng.randrange(len(b))] = rng.randrange(256)
            elif how == 2:
                # an extreme integer somewhere in the first 400 bytes
                p = rng.randrange(min(len(b), 400) - 4)
                b[p:p + 4] = struct.pack("<i", rng.choice([-1, 0, 0x7FFFFFFF, -0x80000000, 65535, 32767]))
            else:
                # a digit in the text header changed
                digits = [k for k in range(min(len(b), 400)) if 48 <= b[k] <= 57]
                if digits:
                    b[rng.choice(digits)] = rng.choice(b"09-")
            open(v, "wb").write(bytes(b))
            try:
                r = subprocess.run([CONV, "cat", out], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=20)
            except subprocess.TimeoutExpired:
                print("FAIL fuzz-%s: hang on case %d of %s" % (ext, i, os.path.basename(v)))
                bad += 1
                continue
            err = r.stderr.decode(errors="replace")
            if r.returncode not in (0, 1) or (r.returncode == 1 and err.count("\n") != 1):
                bad += 1
                print("FAIL fuzz-%s: exit %d on case %d of %s: %s" % (ext, r.returncode, i, os.path.basename(v), err[-300:]))
            elif r.returncode == 1 and not any(x in err for x in victims):
                bad += 1   # the one line names the file read (or its data file)
                print("FAIL fuzz-%s: case %d of %s: the message does not name the file: %s"
                      % (ext, i, os.path.basename(v), err[-300:]))
        open(v, "wb").write(orig)
    if bad == 0:
        print("PASS fuzz-%s (%d damaged files)" % (ext, N * len(victims)))
    return bad


def pictures():
    """samples of the picture and microscopy formats, written by PIL and tifffile when present"""
    out = []
    a = (np.arange(23 * 17 * 3) % 251).astype(np.uint8).reshape(17, 23, 3)
    try:
        from PIL import Image
        for fn, im in (("ok.png", Image.fromarray(a)), ("g16.png", Image.fromarray((a[..., 0].astype(np.uint16) * 200))),
                       ("ok.jpg", Image.fromarray(a)), ("ok.bmp", Image.fromarray(a)), ("g.bmp", Image.fromarray(a[..., 0]))):
            im.save(os.path.join(T, fn))
            out.append(fn)
    except ImportError:
        print("SKIP fuzz-pictures: PIL not installed")
    try:
        import tifffile
        tifffile.imwrite(os.path.join(T, "ok.tif"), a, photometric="rgb")
        tifffile.imwrite(os.path.join(T, "tiled.tif"), np.stack([a[..., 0]] * 3), tile=(16, 16), compression="zlib")
        tifffile.imwrite(os.path.join(T, "ok.ome.tif"), np.stack([a[..., 0]] * 4).reshape(2, 2, 17, 23),
                         ome=True, metadata={"axes": "CZYX", "PhysicalSizeX": 0.5})
        out += ["ok.tif", "tiled.tif", "ok.ome.tif"]
    except ImportError:
        print("SKIP fuzz-tiff: tifffile not installed")
    data = os.environ.get("DATA", "../shared/data")
    for fn in ("minc1_1_scale.mnc", "minc2_1_scale.mnc"):
        src = os.path.join(data, "nifti", "nibabel", fn)
        if os.path.exists(src):
            open(os.path.join(T, fn), "wb").write(open(src, "rb").read())
            out.append(fn)
    return out


def main():
    if not os.access(CONV, os.X_OK):
        print("SKIP formats-fuzz: %s not built" % CONV)
        return 0
    rng = random.Random(1234)
    # a small frame, written by us in every format
    src = os.path.join(T, "src.npy")
    np.save(src, (np.arange(6 * 5 * 4, dtype=np.int16) * 13 - 300).reshape(4, 5, 6))
    fails = 0
    cases = [("ok.nrrd", [], None), ("ok.nhdr", [], "ok.raw"), ("ok.nii", [], None), ("ok.nii.gz", [], None),
             ("ok.hdr", [], "ok.img"), ("ok.mha", [], None), ("ok.mhd", [], "ok.raw"), ("ok.npy", [], None),
             ("gz.nrrd", ["-z"], None), ("z.mhd", ["-z"], "z.zraw"), ("z.mha", ["-z"], None)]
    for fname, opts, side in cases:
        ext = fname
        out = os.path.join(T, fname)
        if subprocess.run([CONV, "conv", src, out] + opts).returncode != 0:
            print("FAIL fuzz-%s: cannot write the sample" % ext)
            fails += 1
            continue
        # the file that holds the header (and for attached formats the data)
        victims = [out] + ([os.path.join(T, side)] if side else [])
        fails += fuzz(out, victims, ext, rng)
    for fname in pictures():
        out = os.path.join(T, fname)
        fails += fuzz(out, [out], fname, rng)
    return 1 if fails else 0


if __name__ == "__main__":
    try:
        rc = main()
    finally:
        subprocess.run(["rm", "-rf", T])
    sys.exit(rc)
