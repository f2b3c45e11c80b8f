#!/usr/bin/env python3
"""label-map against numpy (maps, keep, renumber, type) and cc3d / scipy
(instances as MedSAM's pre_CT_MR.py makes them); bad input."""
import os
import subprocess
import sys
import tempfile

import numpy as np
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import mptest  # noqa: E402
from mptest import ok  # noqa: E402

BIN = os.environ.get("BIN", "bin")
DATA = os.environ.get("DATA", "../shared/data")
T = tempfile.mkdtemp(prefix="medpipe-lmap.")
NP2NRRD = {"u1": "uint8", "i1": "int8", "u2": "uint16", "i2": "int16", "u4": "uint32", "i4": "int32",
           "u8": "uint64", "i8": "int64", "f4": "float", "f8": "double"}
NRRD2NP = {v: k for k, v in NP2NRRD.items()}


def frame(a, role="label"):
    a = np.ascontiguousarray(a)
    z, y, x = a.shape
    h = ("NRRD0004\ntype: %s\ndimension: 3\nspace: left-posterior-superior\nsizes: %d %d %d\n"
         "space directions: (1,0,0) (0,1,0) (0,0,2)\nspace origin: (0,0,0)\nendian: little\nencoding: raw\n"
         "medpipe.role:=%s\n\n" % (NP2NRRD[a.dtype.str[1:]], x, y, z, role))
    return h.encode() + a.astype(a.dtype.newbyteorder("<")).tobytes()


def read1(buf):
    end = buf.index(b"\n\n")
    f = dict(l.split(": ", 1) for l in buf[:end].decode().split("\n")[1:] if ": " in l and ":=" not in l)
    sizes = [int(s) for s in f["sizes"].split()]
    return np.frombuffer(buf[end + 2:], dtype=np.dtype("<" + NRRD2NP[f["type"]])).reshape(sizes[::-1])


def run(args, data):
    p = subprocess.run([os.path.join(BIN, "label-map")] + args, input=data, capture_output=True)
    return p.returncode, p.stdout, p.stderr.decode()


def check(name, args, vol, ref):
    rc, out, err = run(args, frame(vol))
    got = read1(out) if rc == 0 else None
    ok(name, got is not None and got.dtype == ref.dtype and np.array_equal(got, ref),
       err or "differs in %d voxels" % int((got != ref).sum()))


rng = np.random.default_rng(3)
lab = rng.integers(0, 15, (8, 21, 25)).astype(np.uint8)


def mapped(v, rules):
    out = v.copy()
    for f, t in rules:
        out[v == f] = t
    return out


check("lmap-remove", ["--map", "12:0"], lab, mapped(lab, [(12, 0)]))
check("lmap-merge", ["--map", "1,2,3:1"], lab, mapped(lab, [(1, 1), (2, 1), (3, 1)]))
check("lmap-simultaneous", ["--map", "1:2", "--map", "2:3"], lab, mapped(lab, [(1, 2), (2, 3)]))
check("lmap-later-wins", ["--map", "4:9", "--map", "4:7"], lab, mapped(lab, [(4, 7)]))
check("lmap-range", ["--map", "5-9:5"], lab, mapped(lab, [(k, 5) for k in range(5, 10)]))
mf = os.path.join(T, "map.txt")
with open(mf, "w") as fp:
    fp.write("# comment\n1 10\n2,3:0  # trailing\n\n14:1\n")
check("lmap-file", ["--map-file", mf], lab, mapped(lab, [(1, 10), (2, 0), (3, 0), (14, 1)]))
ref = lab.copy()
ref[~np.isin(lab, [1, 2])] = 0
check("lmap-keep", ["--keep", "1,2"], lab, ref)
ref = mapped(lab, [(1, 2), (3, 2)])
ref[~np.isin(ref, [2])] = 0
check("lmap-map-then-keep", ["--map", "1,3:2", "--keep", "2"], lab, ref)
sub = lab * 3
u = np.unique(sub[sub > 0])
ref = np.zeros_like(sub)
for i, v in enumerate(u):
    ref[sub == v] = i + 1
check("lmap-renumber", ["--renumber"], sub, ref)
# wide types use the sorted-rule path
l32 = (lab.astype(np.int32) - 3) * 100000
check("lmap-int32", ["--map", "-300000:7", "--map", "500000:0"], l32, mapped(l32, [(-300000, 7), (500000, 0)]))
check("lmap-type", ["--type", "uint16", "--map", "3:1000"], lab, mapped(lab.astype(np.uint16), [(3, 1000)]))
rc, out, err = run(["--map", "3:1000"], frame(lab))
ok("lmap-err-overflow", rc == 1 and err.count("\n") == 1 and "fit" in err and not out, "rc %d: %s" % (rc, err))

# instances: MedSAM's tumour rule (cc3d, 26-connected, ids from max+2)
try:
    import cc3d
except ImportError:
    cc3d = None
blob = np.zeros((12, 30, 30), np.uint8)
blob[2:5, 2:6, 2:6] = 5
blob[7:10, 20:25, 3:9] = 5
blob[1:4, 20:28, 20:28] = 5
blob[6:8, 8:20, 12:18] = 2
blob[9, 0:4, 25:29] = 5
blob[10, 4, 29] = 5         # touches the previous one only at a corner
if cc3d is None:
    mptest.skip_ref("lmap-instances-cc3d", "no cc3d")
else:
    for conn in (26, 6):
        g = blob.copy()
        tb = np.uint8(g == 5)
        g[tb > 0] = 0
        inst, n = cc3d.connected_components(tb, connectivity=conn, return_N=True)
        g[inst > 0] = inst[inst > 0] + np.max(g) + 1
        check("lmap-instances-medsam-%d" % conn,
              ["--instances", "5", "--instance-offset", "2", "--connectivity", str(conn)], blob, g)
try:
    import scipy.ndimage as ndi
    l, n = ndi.label(np.isin(blob, [2, 5]), structure=np.ones((3, 3, 3)))
    ref = np.where(l > 0, l + 99, blob).astype(np.uint8)
    check("lmap-instances-scipy", ["--instances", "2,5", "--instance-start", "100"], blob, ref)
except ImportError:
    mptest.skip_ref("lmap-instances-scipy", "no scipy")
rc, out, err = run(["--instances", "5", "--instance-start", "255"], frame(blob))
ok("lmap-err-instances-overflow", rc == 1 and err.count("\n") == 1 and "fit" in err, "rc %d: %s" % (rc, err))

# real label map: a map file merging TotalSegmentator's labels, vs numpy
seg = os.path.join(DATA, "nifti/totalseg/example_seg.nii.gz")
if os.path.exists(seg):
    import nibabel as nib
    s = np.ascontiguousarray(np.asanyarray(nib.load(seg).dataobj).astype(np.uint8).transpose(2, 1, 0))
    rules = [(k, 1 + k % 4) for k in range(1, 60, 2)]
    with open(mf, "w") as fp:
        fp.writelines("%d:%d\n" % r for r in rules)
    check("lmap-real", ["--map-file", mf, "--keep", "1-3"], s,
          np.where(np.isin(mapped(s, rules), [1, 2, 3]), mapped(s, rules), 0).astype(np.uint8))
else:
    print("SKIP lmap-real: %s absent" % seg)

# other roles pass through; bad input
img = frame(rng.integers(0, 9, (2, 3, 4)).astype(np.int16), role="image")
rc, out, err = run(["--map", "1:0"], img + frame(lab))
ok("lmap-pass-image", rc == 0 and out.startswith(img), err)
rc, out, err = run(["--map", "1:0"], frame(np.zeros((2, 2, 2), np.float32)))
ok("lmap-err-float", rc == 1 and err.count("\n") == 1 and "integer" in err and not out, "rc %d: %s" % (rc, err))
for nm, args in (("spec", ["--map", "1:x"]), ("nothing", []), ("type", ["--type", "float", "--renumber"]),
                 ("list", ["--keep", "1,,a"]), ("conn", ["--instances", "1", "--connectivity", "5"])):
    rc, out, err = run(args, frame(lab))
    ok("lmap-usage-" + nm, rc == 2 and err.count("\n") == 1 and not out, "rc %d: %s" % (rc, err))
subprocess.run(["rm", "-rf", T])
sys.exit(mptest.status())
