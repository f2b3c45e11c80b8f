#!/usr/bin/env python3
"""Write NRRD frames for tests, independently of medpipe's own writer.

    nrrdframe.py OUT KIND   (KIND: one of the cases below; OUT '-' = stdout)

Also importable: frame(array, ...) returns the bytes of one frame.
"""
import gzip
import sys

import numpy as np

NRRD_TYPES = {"i1": "int8", "u1": "uint8", "i2": "int16", "u2": "uint16", "i4": "int32",
              "u4": "uint32", "i8": "int64", "u8": "uint64", "f4": "float", "f8": "double"}


def frame(a, space="left-posterior-superior", dirs=None, origin=(0, 0, 0), keys=None,
          encoding="raw", endian="little", version="NRRD0004", extra=""):
    """a: numpy array in C order (Z,Y,X) -> NRRD sizes X Y Z."""
    a = np.ascontiguousarray(a)
    t = NRRD_TYPES[a.dtype.str[1:]]
    sizes = " ".join(str(s) for s in a.shape[::-1])
    n = a.ndim
    if dirs is None:
        dirs = [tuple(1.0 if c == i else 0.0 for c in range(3)) for i in range(n)]
    h = [version, "type: " + t, "dimension: %d" % n, "space: " + space, "sizes: " + sizes,
         "space directions: " + " ".join("(%r,%r,%r)" % tuple(d) if d else "none" for d in dirs)]
    if a.dtype.itemsize > 1:
        h.append("endian: " + endian)
    h.append("encoding: " + encoding)
    h.append("space origin: (%r,%r,%r)" % tuple(origin))
    for k, v in (keys or {}).items():
        h.append("%s:=%s" % (k, v))
    if extra:
        h.append(extra)
    data = a.astype(a.dtype.newbyteorder("<" if endian == "little" else ">")).tobytes()
    if encoding == "gzip":
        data = gzip.compress(data, mtime=0)
    return ("\n".join(h) + "\n\n").encode() + data


def main():
    out, kind = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(1)
    vol = rng.integers(-1000, 1000, size=(5, 6, 7)).astype(np.int16)
    dirs = [(0.7, 0.1, 0), (-0.1, 0.7, 0), (0, 0, 2.5)]
    keys = {"medpipe.case": "c1", "medpipe.role": "image"}
    if kind == "basic":
        b = frame(vol, dirs=dirs, origin=(-10.5, 20.25, 3), keys=keys)
    elif kind == "two":
        b = frame(vol, dirs=dirs, keys=keys) + frame((vol > 0).astype(np.uint8), dirs=dirs,
                                                       keys={"medpipe.case": "c1", "medpipe.role": "label"})
    elif kind == "gzip":
        b = frame(vol, dirs=dirs, keys=keys, encoding="gzip") + frame(vol, dirs=dirs, keys=keys)
    elif kind == "big":
        b = frame(vol.astype(np.float32), dirs=dirs, keys=keys, endian="big")
    elif kind == "ras":
        b = frame(vol, dirs=dirs, origin=(1, 2, 3), space="right-anterior-superior", keys=keys)
    elif kind == "alltypes":
        b = b"".join(frame(vol.astype(t), dirs=dirs, keys=keys) for t in
                     ("i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f4", "f8"))
    elif kind == "rgb":
        rgb = rng.integers(0, 255, size=(4, 5, 3)).astype(np.uint8)
        b = frame(rgb, dirs=[None, (1, 0, 0), (0, 1, 0)], extra="kinds: RGB-color domain domain")
    else:
        sys.exit("unknown kind " + kind)
    (sys.stdout.buffer if out == "-" else open(out, "wb")).write(b)


if __name__ == "__main__":
    main()
