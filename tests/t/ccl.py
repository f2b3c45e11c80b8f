#!/usr/bin/env python3
"""ccl-clean against scipy.ndimage.label and cc3d: component ids, counts,
sizes for every connectivity, removal of small components (cc3d.dust),
keep-largest, on random volumes and on a real label map; bad input."""
import os
import subprocess
import sys

import numpy as np
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import mptest  # noqa: E402
import mpstream  # noqa: E402
from mptest import ok  # noqa: E402

BIN = os.environ.get("BIN", "bin")
DATA = os.environ.get("DATA", "../shared/data")
NP2NRRD = {np.dtype(np.uint8): "uint8", np.dtype(np.int8): "int8", np.dtype(np.uint16): "uint16",
           np.dtype(np.int16): "int16", np.dtype(np.uint32): "uint32", np.dtype(np.int32): "int32",
           np.dtype(np.uint64): "uint64", np.dtype(np.int64): "int64", np.dtype(np.float32): "float",
           np.dtype(np.float64): "double"}


def frame(arr, role="label", spacing=(1.0, 1.0, 1.0), case="c1"):
    """one NRRD frame of a C-order (Z,Y,X) array"""
    arr = np.ascontiguousarray(arr)
    z, y, x = arr.shape
    h = ("NRRD0004\ntype: %s\ndimension: 3\nspace: left-posterior-superior\nsizes: %d %d %d\n"
         "space directions: (%r,0,0) (0,%r,0) (0,0,%r)\nkinds: domain domain domain\nendian: little\n"
         "encoding: raw\nspace origin: (0,0,0)\nmedpipe.case:=%s\nmedpipe.role:=%s\n\n"
         % (NP2NRRD[arr.dtype], x, y, z, spacing[0], spacing[1], spacing[2], case, role))
    return h.encode() + arr.astype(arr.dtype.newbyteorder("<")).tobytes()


def read_frames(buf):
    """(keys, array) per frame, read by tests/mpstream.py"""
    return [(f.keys, f.array) for f in mpstream.read_frames(buf)]


def run(args, data, env=None):
    p = subprocess.run([os.path.join(BIN, "ccl-clean")] + args, input=data, capture_output=True,
                       env=dict(os.environ, **(env or {})))
    return p.returncode, p.stdout, p.stderr.decode()


def ids_of(vol, conn, extra=()):
    rc, out, err = run(["--ids-only", "--connectivity", str(conn)] + list(extra), frame(vol))
    if rc != 0:
        raise RuntimeError(err)
    return read_frames(out)[0][1]


def same_partition(a, b):
    """a and b label the same sets (a bijection between non-zero ids)"""
    if not np.array_equal(a == 0, b == 0):
        return False
    m = a != 0
    pairs = np.unique(np.stack([a[m].astype(np.int64), b[m].astype(np.int64)]), axis=1)
    return len(np.unique(pairs[0])) == pairs.shape[1] and len(np.unique(pairs[1])) == pairs.shape[1]


def sizes(a):
    return sorted(np.bincount(a.ravel().astype(np.int64))[1:].tolist())


try:
    import scipy.ndimage as ndi
except ImportError:
    ndi = None
try:
    import cc3d
except ImportError:
    cc3d = None

rng = np.random.default_rng(4)
binv = (rng.random((23, 31, 37)) < 0.45).astype(np.uint8)
multi = rng.integers(0, 4, (23, 31, 37)).astype(np.int16)
multi[rng.random(multi.shape) < 0.3] = 0
blobs = (ndi.gaussian_filter(rng.random((40, 48, 56)), 2) > 0.52).astype(np.uint8) if ndi else binv
blobs = blobs * rng.integers(1, 3, blobs.shape).astype(np.uint8) if False else blobs

# --- ids vs scipy (binary): exact arrays (both number in raster order)
if ndi is None:
    mptest.skip_ref("ccl-scipy", "no scipy")
else:
    for conn, rank in ((6, 1), (18, 2), (26, 3)):
        st = ndi.generate_binary_structure(3, rank)
        for nm, v in (("random", binv), ("blobs", blobs)):
            ref, n = ndi.label(v, structure=st)
            got = ids_of(v, conn, ["--binary"])
            ok("ccl-scipy-%s-%d" % (nm, conn), np.array_equal(ref, got),
               "components %d vs scipy %d" % (got.max(), n))
    for conn, rank in ((4, 1), (8, 2)):
        st = np.zeros((3, 3, 3), bool)
        st[1] = ndi.generate_binary_structure(2, rank)
        ref, n = ndi.label(binv, structure=st)
        got = ids_of(binv, conn, ["--binary"])
        ok("ccl-scipy-2d-%d" % conn, np.array_equal(ref, got), "components %d vs scipy %d" % (got.max(), n))
    # multi-label vs scipy label by label
    for conn, rank in ((6, 1), (26, 3)):
        st = ndi.generate_binary_structure(3, rank)
        got = ids_of(multi, conn)
        ref = np.zeros(multi.shape, np.int64)
        base = 0
        for lab in (1, 2, 3):
            l, n = ndi.label(multi == lab, structure=st)
            ref[l > 0] = l[l > 0] + base
            base += n
        ok("ccl-scipy-multilabel-%d" % conn, same_partition(got, ref) and got.max() == base,
           "components %d vs %d" % (got.max(), base))

# --- runs: uint8 multi-label volumes of long runs (widths not a multiple of
# 8, labels touching in x), ids exactly as scipy label by label renumbered in
# raster order of each component's first voxel; every element size
def raster_ids(v, st):
    ref = np.zeros(v.shape, np.int64)
    base = 0
    for lab in np.unique(v[v != 0]):
        l, n = ndi.label(v == lab, structure=st)
        ref[l > 0] = l[l > 0] + base
        base += n
    first = np.full(base + 1, ref.size)
    np.minimum.at(first, ref.ravel(), np.arange(ref.size))
    order = np.argsort(first[1:], kind="stable") + 1
    m = np.zeros(base + 1, np.int64)
    m[order] = np.arange(1, base + 1)
    return m[ref]


if ndi is not None:
    bad = []
    for seed, shp in ((1, (7, 13, 61)), (2, (5, 9, 203)), (3, (4, 6, 17))):
        r = np.random.default_rng(seed)
        small = r.integers(0, 4, (shp[0], shp[1], shp[2] // 6 + 1)).astype(np.uint8)
        small[r.random(small.shape) < 0.3] = 0
        v = np.ascontiguousarray(np.repeat(small, 6, axis=2)[:, :, :shp[2]])
        for conn, st in ((6, ndi.generate_binary_structure(3, 1)), (18, ndi.generate_binary_structure(3, 2)),
                         (26, ndi.generate_binary_structure(3, 3)), (4, None), (8, None)):
            if st is None:
                st = np.zeros((3, 3, 3), bool)
                st[1] = ndi.generate_binary_structure(2, 1 if conn == 4 else 2)
            ref = raster_ids(v, st)
            for dt in (np.uint8, np.uint16, np.uint32, np.uint64):
                if not np.array_equal(ids_of(v.astype(dt), conn), ref):
                    bad.append("ids %s %d %s" % (shp, conn, np.dtype(dt).name))
    ok("ccl-runs-exact-ids", not bad, "; ".join(bad[:4]))

# --- thin and tiny volumes (borders on every side): ids vs scipy, dust both ways vs numpy
if ndi is not None:
    bad = []
    for shp in ((1, 1, 1), (1, 1, 9), (1, 7, 1), (6, 1, 1), (3, 1, 7), (5, 4, 1), (2, 3, 2), (4, 9, 1)):
        v = (rng.random(shp) < 0.6).astype(np.uint8)
        for conn, st in ((6, ndi.generate_binary_structure(3, 1)), (18, ndi.generate_binary_structure(3, 2)),
                         (26, ndi.generate_binary_structure(3, 3))):
            ref, n = ndi.label(v, structure=st)
            if not np.array_equal(ids_of(v, conn, ["--binary"]), ref):
                bad.append("ids %s %d" % (shp, conn))
            sz = np.bincount(ref.ravel())
            want = np.where(sz[ref] < 2, 0, v).astype(np.uint8)
            for how in ("full", "slices"):
                rc, out, err = run(["--min", "2", "--binary", "-c", str(conn)], frame(v), {"MEDPIPE_DUST": how})
                if rc != 0 or not np.array_equal(read_frames(out)[0][1], want):
                    bad.append("dust %s %d %s %s" % (shp, conn, how, err.strip()))
    ok("ccl-thin-volumes", not bad, "; ".join(bad[:4]))

# --- vs cc3d: counts, sizes, partitions, every connectivity; dust
if cc3d is None:
    mptest.skip_ref("ccl-cc3d", "no cc3d in the venv")
else:
    for conn in (6, 18, 26):
        for nm, v in (("binary", binv), ("multi", multi), ("blobs", blobs)):
            ref, n = cc3d.connected_components(v, connectivity=conn, return_N=True)
            got = ids_of(v, conn)
            ok("ccl-cc3d-%s-%d" % (nm, conn), got.max() == n and sizes(got) == sizes(ref) and same_partition(got, ref),
               "components %d vs cc3d %d" % (got.max(), n))
    for conn in (4, 8):
        n = 0
        ref = np.zeros(multi.shape, np.int64)
        for z in range(multi.shape[0]):
            l, k = cc3d.connected_components(multi[z], connectivity=conn, return_N=True)
            ref[z][l > 0] = l[l > 0] + n
            n += k
        got = ids_of(multi, conn)
        ok("ccl-cc3d-2d-%d" % conn, got.max() == n and same_partition(got, ref), "components %d vs %d" % (got.max(), n))
    # dust: 3D then per slice, as MedSAM
    for conn, t3, t2, c2 in ((26, 5, 3, 8), (6, 3, 2, 4), (18, 4, 3, 8)):
        ref = cc3d.dust(multi.copy(), threshold=t3, connectivity=conn)
        for z in range(ref.shape[0]):
            ref[z] = cc3d.dust(np.ascontiguousarray(ref[z]), threshold=t2, connectivity=c2)
        for how in ("full", "slices"):
            rc, out, err = run(["--min", str(t3), "--min2d", str(t2), "--connectivity", str(conn),
                                "--connectivity2d", str(c2)], frame(multi), {"MEDPIPE_DUST": how})
            got = read_frames(out)[0][1] if rc == 0 else None
            ok("ccl-dust-%d-%d-%s" % (conn, c2, how), got is not None and got.dtype == multi.dtype and np.array_equal(got, ref),
               err or "differs from cc3d.dust in %d voxels" % (0 if got is None else int((got != ref).sum())))
    # binary dust: all non-zero as one class (reference: scipy labels of the mask)
    if ndi is not None:
        l, n = ndi.label(multi != 0, structure=ndi.generate_binary_structure(3, 3))
        s = np.bincount(l.ravel())
        ref = multi.copy()
        ref[(l > 0) & (s[l] < 6)] = 0
        for how in ("full", "slices"):
            rc, out, err = run(["--min", "6", "--binary"], frame(multi), {"MEDPIPE_DUST": how})
            ok("ccl-dust-binary-" + how, rc == 0 and np.array_equal(read_frames(out)[0][1], ref), err)

# --- keep-largest vs numpy on scipy labels, per label
if ndi is not None:
    st = ndi.generate_binary_structure(3, 3)
    ref = multi.copy()
    for lab in (1, 2, 3):
        l, n = ndi.label(multi == lab, structure=st)
        s = np.bincount(l.ravel())
        s[0] = 0
        ref[(l > 0) & (l != np.argmax(s))] = 0
    for how in ("full", "slices"):
        rc, out, err = run(["--keep-largest"], frame(multi), {"MEDPIPE_DUST": how})
        ok("ccl-keep-largest-" + how, rc == 0 and np.array_equal(read_frames(out)[0][1], ref), err)
    # mm^3 threshold: spacing 2x2x2.5 = 10 mm^3 per voxel; 60 mm^3 is 6 voxels
    rc, out, err = run(["--min-mm3", "60"], frame(multi, spacing=(2.0, 2.0, 2.5)))
    rc2, out2, err2 = run(["--min", "6"], frame(multi, spacing=(2.0, 2.0, 2.5)))
    ok("ccl-min-mm3", rc == 0 and rc2 == 0 and np.array_equal(read_frames(out)[0][1], read_frames(out2)[0][1]), err + err2)

    rc, out, err = run(["--min2d-mm2", "12", "--connectivity2d", "4"], frame(multi, spacing=(2.0, 2.0, 2.5)))
    rc2, out2, err2 = run(["--min2d", "3", "--connectivity2d", "4"], frame(multi, spacing=(2.0, 2.0, 2.5)))
    ok("ccl-min2d-mm2", rc == 0 and rc2 == 0 and np.array_equal(read_frames(out)[0][1], read_frames(out2)[0][1])
       and not np.array_equal(read_frames(out)[0][1], multi), err + err2)

# --- --ids: the cleaned frame, then its component ids (role instance)
rc, out, err = run(["--min", "4", "--ids", "-c", "18"], frame(multi))
fr = read_frames(out) if rc == 0 else []
good = len(fr) == 2 and fr[1][0].get("medpipe.role") == "instance" and fr[1][1].dtype == np.uint32
if good and cc3d is not None:
    ref, n = cc3d.connected_components(fr[0][1].copy(), connectivity=18, return_N=True)
    good = int(fr[1][0].get("medpipe.components", -1)) == n and same_partition(fr[1][1], ref)
ok("ccl-ids-frame", good, err)
rc, out, err = run(["--ids-only", "--ids64"], frame(multi))
fr = read_frames(out) if rc == 0 else []
ok("ccl-ids64", len(fr) == 1 and fr[0][1].dtype == np.uint64 and np.array_equal(fr[0][1], ids_of(multi, 26)), err)

# --- pass-through of other roles, byte for byte
img = frame(rng.integers(-100, 100, (3, 4, 5)).astype(np.int16), role="image")
rc, out, err = run(["--min", "5"], img + frame(multi))
ok("ccl-pass-image", rc == 0 and out.startswith(img), err)

# --- real label map
seg = os.path.join(DATA, "nifti/totalseg/example_seg.nii.gz")
if not os.path.exists(seg):
    print("SKIP ccl-real: %s absent" % seg)
elif cc3d is None:
    mptest.skip_ref("ccl-real", "no cc3d")
else:
    import nibabel as nib
    lab = np.ascontiguousarray(np.asanyarray(nib.load(seg).dataobj).astype(np.uint8).transpose(2, 1, 0))
    for conn in (6, 18, 26):
        ref, n = cc3d.connected_components(lab, connectivity=conn, return_N=True)
        got = ids_of(lab, conn)
        ok("ccl-real-%d" % conn, got.max() == n and sizes(got) == sizes(ref) and same_partition(got, ref),
           "components %d vs cc3d %d" % (got.max(), n))
    ref = cc3d.dust(lab.copy(), threshold=1000, connectivity=26)
    for z in range(ref.shape[0]):
        ref[z] = cc3d.dust(np.ascontiguousarray(ref[z]), threshold=100, connectivity=8)
    for how in ("full", "slices"):
        rc, out, err = run(["--min", "1000", "--min2d", "100"], frame(lab), {"MEDPIPE_DUST": how})
        ok("ccl-real-medsam-dust-" + how, rc == 0 and np.array_equal(read_frames(out)[0][1], ref), err)

# --- bad input
rc, out, err = run([], frame(np.zeros((2, 2, 2), np.float32)))
ok("ccl-err-float", rc == 1 and err.count("\n") == 1 and "integer" in err and not out, "rc %d: %s" % (rc, err))
rc, out, err = run(["--connectivity", "7"], b"")
ok("ccl-err-conn", rc == 2 and err.count("\n") == 1, "rc %d: %s" % (rc, err))
rc, out, err = run([], b"NRRD0004\ntype: uint8\nsizes: 4\n")
ok("ccl-err-trunc", rc == 1 and err.count("\n") == 1 and not out, "rc %d: %s" % (rc, err))
sys.exit(mptest.status())
