"""mpstream.py - an independent reader of medpipe frame streams for tests.

    from mpstream import read_frames
    for fr in read_frames(open('x.nrrd','rb').read()):
        fr.array      # numpy array, C order (Z,Y,X) i.e. NRRD sizes reversed
        fr.fields     # {'type': 'int16', 'sizes': '...', ...}
        fr.keys       # {'medpipe.role': 'image', ...}
        fr.dirs       # list per NRRD axis: 3-tuple (LPS) or None
        fr.origin     # 3-tuple (LPS)
        fr.affine()   # 4x4 LPS voxel(i,j,k)->world matrix (3 spatial axes)

Written from the NRRD format description, not from medpipe's code.
"""
import gzip
import zlib

import numpy as np

DT = {"int8": "i1", "uint8": "u1", "int16": "i2", "uint16": "u2", "int32": "i4", "uint32": "u4",
      "int64": "i8", "uint64": "u8", "float": "f4", "double": "f8"}


class Frame:
    pass


def _vec(s):
    s = s.strip()
    if s == "none":
        return None
    return tuple(float(x) for x in s.strip("()").split(","))


def read_frames(b):
    out = []
    pos = 0
    while pos < len(b):
        end = b.index(b"\n\n", pos)
        lines = b[pos:end].decode().split("\n")
        pos = end + 2
        assert lines[0].startswith("NRRD000"), lines[0]
        fr = Frame()
        fr.fields, fr.keys = {}, {}
        for ln in lines[1:]:
            if ln.startswith("#"):
                continue
            i = ln.index(":")
            if ln[i + 1:i + 2] == "=":
                fr.keys[ln[:i]] = ln[i + 2:].replace("\\n", "\n").replace("\\\\", "\\")
            else:
                fr.fields[ln[:i]] = ln[i + 1:].strip()
        sizes = [int(x) for x in fr.fields["sizes"].split()]
        dt = np.dtype(DT[fr.fields["type"]])
        if dt.itemsize > 1:
            dt = dt.newbyteorder("<" if fr.fields["endian"] == "little" else ">")
        n = int(np.prod(sizes)) * dt.itemsize
        if fr.fields["encoding"] == "raw":
            raw = b[pos:pos + n]
            pos += n
        else:
            d = zlib.decompressobj(16 + 15)
            raw = d.decompress(b[pos:])
            pos = len(b) - len(d.unused_data)
        assert len(raw) == n, "short data"
        fr.array = np.frombuffer(raw, dtype=dt).reshape(sizes[::-1]).astype(dt.newbyteorder("="))
        fr.dirs = [_vec(x) for x in fr.fields.get("space directions", "").replace(") (", ")|(").replace(") none", ")|none").replace("none (", "none|(").replace("none none", "none|none").split("|")] if "space directions" in fr.fields else None
        fr.origin = _vec(fr.fields["space origin"]) if "space origin" in fr.fields else (0, 0, 0)
        out.append(fr)
    return out


def affine(fr):
    m = np.eye(4)
    spatial = [d for d in fr.dirs if d is not None]
    for i, d in enumerate(spatial[:3]):
        m[:3, i] = d
    m[:3, 3] = fr.origin
    return m


Frame.affine = affine
