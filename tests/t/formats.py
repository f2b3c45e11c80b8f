#!/usr/bin/env python3
"""File formats against independent readers.

- every NIfTI/Analyze file under $DATA/nifti: our voxels and LPS world
  geometry equal nibabel's (img.dataobj, img.affine with x, y negated); files
  nibabel cannot read (missing .img) must fail with one line naming the file;
- every NRRD file under $DATA/nrrd: voxels equal the .nii.gz twin read by
  nibabel, or numpy reading the data the header describes; bzip2 and
  invalid byte skips are refused;
- every MetaImage under $DATA/meta: voxels and geometry equal SimpleITK's
  (ITK's own reader), voxels equal numpy reading the raw/zraw data; the .nhdr
  twins hold the same image;
- files we write: .nii.gz/.nii/.hdr open in nibabel, .nrrd (raw and gzip) in
  pynrrd and teem's unu, .mha/.mhd in SimpleITK, .npy in numpy, each with the
  same voxels and geometry;
- malformed files: exit 1, one line on stderr, nothing on stdout.
Reads files through build/tests/test_fmt (the library); malformed files go
through bin/vol-cat when it exists (the program contract).
"""
import glob
import gzip
import os
import re
import subprocess
import sys
import tempfile
import zlib

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from mpstream import read_frames  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import mptest  # noqa: E402
from mptest import ok, skip  # noqa: E402

DATA = os.environ.get("DATA", "../shared/data")
BIN = os.environ.get("BIN", "bin")
CONV = os.environ.get("FMT_CONV", "build/tests/test_fmt")
CAT = [os.path.join(BIN, "vol-cat")] if os.access(os.path.join(BIN, "vol-cat"), os.X_OK) else [CONV, "cat"]
T = tempfile.mkdtemp(prefix="medpipe-formats.")

try:
    import nibabel as nib
except ImportError:
    nib = None
try:
    import SimpleITK as sitk
except ImportError:
    sitk = None
try:
    import nrrd as pynrrd
except ImportError:
    pynrrd = None


def cat(path):
    r = subprocess.run([CONV, "cat", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.decode(errors="replace").strip())
    return read_frames(r.stdout)


def conv(src, dst, *opts):
    r = subprocess.run([CONV, "conv", src, dst] + list(opts), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.decode(errors="replace").strip())


LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def frame_affine(fr):
    """4x4 LPS affine of a frame's first three spatial axes (padding missing
    axes with unit vectors as medpipe's writers do, for 2D comparison)."""
    m = np.eye(4)
    sp = [d for d in fr.dirs if d is not None] if fr.dirs else []
    for i, d in enumerate(sp[:3]):
        m[:3, i] = d
    m[:3, 3] = fr.origin
    return m, len(sp)


def close(a, b, tol=1e-5):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return a.shape == b.shape and np.allclose(a, b, rtol=tol, atol=tol)


def expect_refusal(name, path, pattern=None):
    r = subprocess.run(CAT + [path], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    err = r.stderr.decode(errors="replace")
    lines = err.strip().split("\n") if err.strip() else []
    if r.returncode != 1:
        ok(name, False, "exit %d: %s" % (r.returncode, err[:200]))
    elif len(lines) != 1:
        ok(name, False, "%d lines on stderr: %s" % (len(lines), err[:300]))
    elif r.stdout:
        ok(name, False, "wrote %d bytes to stdout" % len(r.stdout))
    elif os.path.basename(path) not in err:
        ok(name, False, "message does not name the file: " + err.strip())
    elif pattern and not re.search(pattern, err):
        ok(name, False, "message %r lacks %r" % (err.strip(), pattern))
    else:
        ok(name, True)


# ------------------------------------------------------------------ NIfTI
def nib_arrays(img):
    """nibabel's voxels in our (C order, NRRD axes reversed) layout."""
    a = np.asanyarray(img.dataobj)
    while a.ndim > 3 and a.shape[-1] == 1:  # medpipe reads x,y,z,1 as 3D
        a = a[..., 0]
    return np.transpose(a)


def check_minc_file(path, name=None):
    """MINC1/MINC2: voxels within 1e-12 relative (nibabel scales in float64,
    we store float32 when exact) and the affine (RAS, spatial axes in file
    order) equal nibabel's; the same file gzip'd reads the same"""
    name = name or "nibabel-" + os.path.relpath(path, DATA).replace("/", "-")
    try:
        img = nib.load(path)
        ref = np.asarray(img.dataobj, dtype=np.float64)
    except ImportError as e:
        skip(name, "nibabel needs %s for this file" % e.name)
        return
    try:
        fr = cat(path)[0]
    except Exception as e:
        ok(name, False, str(e))
        return
    a = fr.array.astype(np.float64)
    if a.shape != ref.shape:
        ok(name, False, "shape %s, nibabel %s" % (a.shape, ref.shape))
        return
    if not np.allclose(a, ref, rtol=1e-12, atol=0):
        ok(name, False, "voxels differ (max %g)" % np.max(np.abs(a - ref)))
        return
    # ours: spatial directions in frame order (fastest first) -> file order
    cols = [d for d in fr.dirs if d is not None][::-1]
    aff = np.eye(4)
    for i, d in enumerate(cols):
        aff[:3, i] = d
    aff[:3, 3] = fr.origin
    aff[:2, :] *= -1   # LPS -> RAS
    ok(name, np.allclose(aff, img.affine, atol=1e-9), "affine %s, nibabel %s" % (aff.tolist(), img.affine.tolist()))
    gz = os.path.join(T, os.path.basename(path) + ".gz")
    open(gz, "wb").write(gzip.compress(open(path, "rb").read()))
    try:
        b = cat(gz)[0].array
        ok(name + "-gz", np.array_equal(b, fr.array), "the gzip'd file reads differently")
    except Exception as e:
        ok(name + "-gz", False, str(e))


def check_minc_debian():
    """the MINC files of Debian's nibabel test data, when installed"""
    d = os.path.join(os.path.dirname(nib.__file__), "tests", "data")
    for p in sorted(glob.glob(os.path.join(d, "*.mnc"))):
        check_minc_file(p, "nibabel-debian-" + os.path.basename(p))


def check_nifti_file(path, name=None):
    name = name or "nibabel-" + os.path.relpath(path, DATA).replace("/", "-")
    try:
        img = nib.load(path)
        ref = nib_arrays(img)
    except Exception as e:  # nibabel cannot read it: we must refuse it too
        expect_refusal(name + "-refused", path, "missing|not")
        if path.endswith(".hdr") and os.path.exists(path) and not os.path.basename(path).startswith("withimg-"):
            # a header without its .img: give it one (random voxels) and
            # compare the header's geometry and scaling with nibabel
            import shutil
            hdr = os.path.join(T, "withimg-" + os.path.basename(path))
            shutil.copy(path, hdr)
            os.chmod(hdr, 0o644)
            h = nib.load(hdr).header
            # (nibabel shows vox_offset 0 for a loaded pair but reads at the file's value)
            n = int(np.prod(h.get_data_shape())) * h.get_data_dtype().itemsize + 4096
            open(hdr[:-4] + ".img", "wb").write(np.random.default_rng(3).integers(0, 255, n, dtype=np.uint8).tobytes())
            check_nifti_file(hdr, name + "-with-img")
        return
    try:
        fr = cat(path)[0]
    except Exception as e:
        ok(name, False, str(e))
        return
    a = fr.array
    if a.shape != ref.shape:
        ok(name, False, "shape %s, nibabel %s" % (a.shape, ref.shape))
        return
    if not np.array_equal(a.astype(np.float64), ref.astype(np.float64)):
        ok(name, False, "voxels differ (max %g)" % np.max(np.abs(a.astype(float) - ref.astype(float))))
        return
    m, nsp = frame_affine(fr)
    want = LPS @ img.affine
    n = min(nsp, 3)
    good = close(m[:3, :n], want[:3, :n]) and close(m[:3, 3], want[:3, 3])
    ok(name, good, "affine\n%s\nnibabel (LPS)\n%s" % (m, want))


# ------------------------------------------------------------------ NRRD
def nrrd_numpy(path):
    """an independent reading of a simple NRRD file: header fields, then
    raw/gzip/ascii data with byte/line skip, or None when not simple"""
    b = open(path, "rb").read()
    end = b.find(b"\n\n")
    hdr = b[: end if end >= 0 else len(b)].decode("latin-1").split("\n")
    f = {}
    for ln in hdr[1:]:
        if ln.startswith("#") or ":" not in ln:
            continue
        k, v = ln.split(":", 1)
        if v.startswith("="):
            k, v = k, v[1:]
        f[k.strip()] = v.strip()
    types = {"short": "i2", "int16": "i2", "signed short": "i2", "int": "i4", "int32": "i4", "int8": "i1",
             "uint8": "u1", "signed char": "i1", "float32": "f4", "float64": "f8", "unsigned char": "u1", "uchar": "u1", "unsigned short": "u2",
             "double": "f8", "float": "f4", "uint16": "u2"}
    dt = np.dtype(types[f["type"]]).newbyteorder("<" if f.get("endian", "little") == "little" else ">")
    sizes = [int(x) for x in f["sizes"].split()]
    n = int(np.prod(sizes))
    if "data file" in f:
        raw = open(os.path.join(os.path.dirname(path), f["data file"]), "rb").read()
    else:
        raw = b[end + 2:]
    for _ in range(int(f.get("line skip", 0))):
        raw = raw[raw.index(b"\n") + 1:]
    enc = f["encoding"].lower()
    if enc in ("gzip", "gz"):
        raw = gzip.decompress(raw)
    if enc in ("ascii", "text", "txt"):
        vals = np.array([float(x) for x in raw.decode().split()])[:n]
        return vals.astype(dt).reshape(sizes[::-1])
    bs = int(f.get("byte skip", 0))
    raw = raw[-n * dt.itemsize:] if bs == -1 else raw[bs:bs + n * dt.itemsize]
    return np.frombuffer(raw, dtype=dt).reshape(sizes[::-1]).astype(dt.newbyteorder("="))


def check_analyze():
    """Analyze 7.5 (no NIfTI magic) and SPM variants written by nibabel"""
    a = (np.arange(6 * 5 * 4, dtype=np.int16) * 11 - 500).reshape(6, 5, 4)
    aff = np.diag([-2.0, 3.0, 4.0, 1.0])
    aff[:3, 3] = [10, -20, 30]
    for cls in (nib.AnalyzeImage, nib.Spm99AnalyzeImage, nib.Spm2AnalyzeImage):
        img = cls(a, aff)
        if cls is not nib.AnalyzeImage:
            img.header.set_slope_inter(0.5, None)
        p = os.path.join(T, cls.__name__ + ".hdr")
        nib.save(img, p)
        if os.path.exists(p[:-4] + ".mat"):
            os.remove(p[:-4] + ".mat")  # SPM's MATLAB sidecar: medpipe reads the header only
        check_nifti_file(p, "analyze-" + cls.__name__)
    # a plain Analyze header with gl/cal scaling and an SPM origin
    img = nib.Spm2AnalyzeImage(a, aff)
    p = os.path.join(T, "spm2.hdr")
    nib.save(img, p)
    if os.path.exists(p[:-4] + ".mat"):
        os.remove(p[:-4] + ".mat")
    b = bytearray(open(p, "rb").read())
    b[112:116] = np.float32(0).tobytes()          # no funused1 slope
    b[124:132] = np.array([100, -50], "<f4").tobytes()  # cal_max, cal_min
    b[140:148] = np.array([1000, -1000], "<i4").tobytes()  # glmax, glmin
    b[253:259] = np.array([2, 3, 1], "<i2").tobytes()      # SPM origin (1-based)
    open(p, "wb").write(bytes(b))
    check_nifti_file(p, "analyze-spm2-glcal-origin")


def check_nifti_variants():
    """qform only (rotation, qfac -1), sform preferred over a different
    qform, neither (pixdim), scaling, big endian, NIfTI-2: all as nibabel"""
    a = (np.arange(5 * 6 * 7, dtype=np.int16) * 3 - 200).reshape(5, 6, 7)
    c, s_ = np.cos(0.4), np.sin(0.4)
    rot = np.array([[c, -s_, 0, 12.5], [s_, c, 0, -7.25], [0, 0, -1, 33], [0, 0, 0, 1]]) @ np.diag([0.8, 0.9, 2.5, 1])
    cases = {}
    img = nib.Nifti1Image(a, rot)
    img.set_sform(None, code=0)
    img.set_qform(rot, code=1)
    cases["qform-only-qfac"] = img
    img = nib.Nifti1Image(a, rot)
    img.set_qform(np.diag([1, 2, 3, 1]), code=1)
    img.set_sform(rot, code=2)
    cases["sform-over-qform"] = img
    img = nib.Nifti1Image(a, rot)
    img.set_sform(None, code=0)
    img.set_qform(None, code=0)
    cases["no-transform"] = img
    img = nib.Nifti1Image(a, rot)
    img.header.set_slope_inter(0.25, -3.5)
    cases["scaled"] = img
    img = nib.Nifti1Image(a.astype(">i2"), rot, nib.Nifti1Header(endianness=">"))
    cases["big-endian"] = img
    cases["nifti2"] = nib.Nifti2Image(a.astype(np.float32), rot)
    for name, img in cases.items():
        p = os.path.join(T, "var-" + name + ".nii")
        nib.save(img, p)
        check_nifti_file(p, "nibabel-variant-" + name)


def check_rgb():
    """RGB24 NIfTI from nibabel read as a first axis of 3; ours read by nibabel"""
    rgb = np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")])
    a = np.zeros((4, 5, 3), dtype=rgb)
    a["R"] = np.arange(60).reshape(4, 5, 3)
    a["G"] = 7
    a["B"] = np.arange(60).reshape(4, 5, 3)[::-1] * 3
    p = os.path.join(T, "rgb.nii")
    aff = np.diag([-1.5, 2, 3, 1.0])
    nib.save(nib.Nifti1Image(a, aff), p)
    want = np.stack([a["R"], a["G"], a["B"]], -1).transpose(2, 1, 0, 3)
    try:
        fr = cat(p)[0]
        ok("nibabel-rgb24-read", fr.array.shape == want.shape and np.array_equal(fr.array, want) and
           fr.fields["kinds"].startswith("RGB-color"), "voxels/kinds differ")
        out = os.path.join(T, "rgb-ours.nii.gz")
        conv(p, out)
        b = np.asanyarray(nib.load(out).dataobj)
        ok("nibabel-rgb24-write", b.dtype == rgb and np.array_equal(b, a) and close(nib.load(out).affine, aff),
           "nibabel reads other voxels")
    except RuntimeError as e:
        ok("nibabel-rgb24", False, str(e))


def check_label_names():
    """TotalSegmentator's label table (a NIfTI extension) becomes
    medpipe.label_names and is written back as an extension nibabel sees"""
    p = os.path.join(DATA, "nifti", "totalseg", "example_seg.nii.gz")
    if not os.path.exists(p):
        print("SKIP nifti-label-names: no data")
        return
    img = nib.load(p)
    xml = b"".join(e.get_content() for e in img.header.extensions)
    want = dict((int(k), v.decode()) for k, v in re.findall(rb'<Label Key="(\d+)"[^>]*><!\[CDATA\[([^\]]*)\]\]>', xml))
    fr = cat(p)[0]
    got = dict((int(kv.split("=", 1)[0]), kv.split("=", 1)[1]) for kv in fr.keys.get("medpipe.label_names", "").split(";") if kv)
    ok("nifti-label-names-read", got == want and len(want) > 10, "%d names, nibabel's extension has %d" % (len(got), len(want)))
    out = os.path.join(T, "seg-names.nii.gz")
    conv(p, out)
    o = nib.load(out)
    xml = b"".join(e.get_content() for e in o.header.extensions)
    again = dict((int(k), v.decode()) for k, v in re.findall(rb'<Label Key="(\d+)"[^>]*><!\[CDATA\[([^\]]*)\]\]>', xml))
    ok("nifti-label-names-write", again == want and np.array_equal(np.asanyarray(o.dataobj), np.asanyarray(img.dataobj)),
       "nibabel sees %d names" % len(again))


def check_nrrd_files():
    d = os.path.join(DATA, "nrrd", "pynrrd")
    twin = os.path.join(d, "BallBinary30x30x30.nii.gz")
    ball = nib_arrays(nib.load(twin)) if nib and os.path.exists(twin) else None
    for p in sorted(glob.glob(os.path.join(d, "*.n*"))):
        if p.endswith(".nii.gz"):
            continue
        base = os.path.basename(p)
        name = "nrrd-" + base
        if "bz2" in base:
            expect_refusal(name + "-bzip2-refused", p, "bzip2")
            continue
        if "minus_five" in base:
            expect_refusal(name + "-bad-byteskip-refused", p, "byte skip")
            continue
        try:
            fr = cat(p)[0]
        except Exception as e:
            ok(name, False, str(e))
            continue
        ref = nrrd_numpy(p)
        good = fr.array.shape == ref.shape and np.array_equal(fr.array, ref)
        if good and base.startswith("BallBinary") and "_nifti.nhdr" not in base and ball is not None:
            good = np.array_equal(fr.array, ball)
            # geometry: LPS identity at 0 as in the header
            good = good and close(frame_affine(fr)[0], np.eye(4))
        ok(name, good, "voxels differ from numpy reading of the data / the nibabel twin")


def nrrd_affine(path):
    """LPS 4x4 from a NRRD header written in LPS (unu's output)"""
    b = open(path, "rb").read()
    hdr = b[:b.find(b"\n\n")].decode("latin-1")
    assert "space: left-posterior-superior" in hdr
    m = np.eye(4)
    dirs = re.search(r"\nspace directions: (.*)", hdr).group(1)
    vecs = [v for v in re.findall(r"\(([^)]*)\)", dirs)]
    for i, v in enumerate(vecs[:3]):
        m[:3, i] = [float(x) for x in v.split(",")]
    m[:3, 3] = [float(x) for x in re.search(r"\nspace origin: \(([^)]*)\)", hdr).group(1).split(",")]
    return m


# ------------------------------------------------------------------ MetaImage
def meta_numpy(path):
    txt = open(path, "rb").read()
    i = txt.find(b"ElementDataFile")
    j = txt.find(b"\n", i)
    hdr = {}
    for ln in txt[:j].decode("latin-1").split("\n"):
        if "=" in ln:
            k, v = ln.split("=", 1)
            hdr[k.strip()] = v.strip()
    types = {"MET_UCHAR": "u1", "MET_CHAR": "i1", "MET_SHORT": "i2", "MET_USHORT": "u2", "MET_FLOAT": "f4",
             "MET_DOUBLE": "f8", "MET_INT": "i4", "MET_UINT": "u4"}
    dt = np.dtype(types[hdr["ElementType"]]).newbyteorder(
        ">" if hdr.get("BinaryDataByteOrderMSB", hdr.get("ElementByteOrderMSB", "False")) == "True" else "<")
    dims = [int(x) for x in hdr["DimSize"].split()]
    nch = int(hdr.get("ElementNumberOfChannels", 1))
    df = hdr["ElementDataFile"]
    raw = txt[j + 1:] if df == "LOCAL" else open(os.path.join(os.path.dirname(path), df), "rb").read()
    if hdr.get("CompressedData", "False") == "True":
        raw = zlib.decompress(raw)
    n = int(np.prod(dims)) * nch
    shape = dims[::-1] + ([nch] if nch > 1 else [])
    return np.frombuffer(raw[: n * dt.itemsize], dtype=dt).reshape(shape).astype(dt.newbyteorder("="))


def sitk_geometry(img):
    """4x4 LPS affine from SimpleITK (3D, 2D padded)"""
    d = img.GetDimension()
    D = np.array(img.GetDirection()).reshape(d, d)
    S = np.diag(img.GetSpacing())
    k = min(d, 3)
    m = np.eye(4)
    m[:k, :k] = (D @ S)[:k, :k]
    m[:k, 3] = img.GetOrigin()[:k]
    return m


def check_meta_files():
    for p in sorted(glob.glob(os.path.join(DATA, "meta", "*", "*.mh[ad]")) +
                    glob.glob(os.path.join(DATA, "meta", "*", "*.nhdr"))):
        base = os.path.basename(p)
        name = "meta-" + base
        try:
            fr = cat(p)[0]
        except Exception as e:
            if "missing data file" in str(e):
                expect_refusal(name + "-missing-data-refused", p, "missing data file")
            else:
                ok(name, False, str(e))
            continue
        if p.endswith(".nhdr"):
            ref = nrrd_numpy(p)
            mhd = p[:-5] + ".mhd"
            good = np.array_equal(fr.array, ref)
            if good and os.path.exists(mhd):
                good = np.array_equal(fr.array, cat(mhd)[0].array) and close(
                    frame_affine(fr)[0], frame_affine(cat(mhd)[0])[0], 1e-5)
            ok(name + "-twin", good, "differs from numpy / its .mhd twin")
            continue
        ref = meta_numpy(p)
        ok(name + "-numpy", np.array_equal(fr.array, ref), "voxels differ from numpy reading the data")
        if sitk is None:
            mptest.skip_ref(name + "-sitk", "SimpleITK not installed")
            continue
        img = sitk.ReadImage(p)
        arr = sitk.GetArrayFromImage(img)
        m, nsp = frame_affine(fr)
        want = sitk_geometry(img)
        d = img.GetDimension()
        same = np.array_equal(fr.array, arr)
        csize = re.search(rb"CompressedDataSize = (\d+)", open(p, "rb").read(1000))
        zraw = re.search(rb"ElementDataFile = (\S+\.zraw)", open(p, "rb").read(1000))
        if not same and csize and zraw and int(csize.group(1)) < os.path.getsize(os.path.join(os.path.dirname(p), zraw.group(1).decode())):
            # ITK stops reading at CompressedDataSize, which is smaller than the
            # .zraw here: it decodes only what those bytes hold (its last voxels
            # are left unset); the zlib stream (numpy) holds them all
            zb = open(os.path.join(os.path.dirname(p), zraw.group(1).decode()), "rb").read()[:int(csize.group(1))]
            k = len(zlib.decompressobj().decompress(zb)) // arr.dtype.itemsize
            same = np.array_equal(fr.array.ravel()[:k], arr.ravel()[:k])
        good = same and close(m[:d, :d], want[:d, :d], 1e-9) and close(m[:d, 3], want[:d, 3], 1e-9)
        ok(name + "-sitk", good, "voxels/geometry differ from SimpleITK:\n%s\n%s" % (m, want))


# ------------------------------------------------------------------ writing
def check_written():
    srcs = [os.path.join(DATA, "nifti", "totalseg", "example_ct_sm.nii.gz"),
            os.path.join(DATA, "nifti", "nibabel", "example4d.nii.gz"),
            os.path.join(DATA, "nifti", "nibabel", "reoriented_anat_moved.nii"),
            os.path.join(DATA, "meta", "itk", "BrainProtonDensitySliceShifted13x17yDirectionPlus30.mhd")]
    for src in srcs:
        if not os.path.exists(src):
            skip("write-" + os.path.basename(src), "no data")
            continue
        s = os.path.basename(src).split(".")[0]
        ref = cat(src)[0]
        m0, nsp = frame_affine(ref)
        n = min(nsp, 3)
        # NIfTI through nibabel
        for ext in ("nii.gz", "nii", "hdr"):
            out = os.path.join(T, s + "." + ext)
            try:
                conv(src, out)
                img = nib.load(out)
                a = nib_arrays(img)
                want = LPS @ img.affine
                good = np.array_equal(a, ref.array) and close(want[:3, :n], m0[:3, :n], 1e-4) and close(want[:3, 3], m0[:3, 3], 1e-4)
                # the qform (quaternion, qfac) says the same as the sform
                hd = img.header
                # The quaternion is float32 and a = sqrt(1-b2-c2-d2) loses digits
                # near a 180-degree rotation (example4d: 1.4e-4 mm in its own
                # file), so the bound is nibabel's own qform of the same sform.
                hq = nib.Nifti1Header()
                hq.set_qform(hd.get_sform(), 1)
                qtol = max(1e-4, 1.01 * np.abs(hq.get_qform() - hd.get_sform()).max())
                good = good and hd["qform_code"] == 1 and hd["sform_code"] == 1 and close(hd.get_qform(), hd.get_sform(), qtol)
                ok("write-%s-%s-nibabel" % (s, ext), good, "nibabel reads other voxels/affine:\n%s\n%s" % (want, m0))
            except Exception as e:
                ok("write-%s-%s-nibabel" % (s, ext), False, str(e))
        # NRRD through pynrrd and unu
        for z, ext in (("", "nrrd"), ("-z", "nrrd"), ("", "nhdr"), ("-z", "nhdr")):
            out = os.path.join(T, s + (".gz" if z else "") + "." + ext)
            conv(src, out, *([z] if z else []))
            if pynrrd is None:
                mptest.skip_ref("write-%s-%s%s-pynrrd" % (s, ext, z), "pynrrd not installed")
            else:
                data, h = pynrrd.read(out)
                a = np.transpose(data)
                dirs = h.get("space directions")
                m = np.eye(4)
                k = 0
                for dv in dirs:
                    if dv is not None and not np.all(np.isnan(np.asarray(dv, float))):
                        m[:3, k] = dv
                        k += 1
                m[:3, 3] = h["space origin"]
                good = h["space"] == "left-posterior-superior" and np.array_equal(a, ref.array) and close(m, m0, 1e-12)
                ok("write-%s-%s%s-pynrrd" % (s, ext, z), good, "pynrrd reads other voxels/geometry")
            unu = "teem-unu" if subprocess.run(["sh", "-c", "command -v teem-unu"], stdout=subprocess.DEVNULL).returncode == 0 else (
                "unu" if subprocess.run(["sh", "-c", "command -v unu"], stdout=subprocess.DEVNULL).returncode == 0 else None)
            if unu is None:
                mptest.skip_ref("write-%s-%s%s-unu" % (s, ext, z), "teem's unu not installed")
            else:
                again = os.path.join(T, s + "-unu.nrrd")
                r = subprocess.run([unu, "save", "-i", out, "-f", "nrrd", "-e", "raw", "-en", "little", "-o", again],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                if r.returncode != 0:
                    ok("write-%s-%s%s-unu" % (s, ext, z), False, r.stderr.decode()[:300])
                else:
                    a = nrrd_numpy(again)
                    good = np.array_equal(a, ref.array) and close(nrrd_affine(again), m0, 1e-12)
                    ok("write-%s-%s%s-unu" % (s, ext, z), good, "unu reads other voxels/geometry")
        # MetaImage through SimpleITK
        for ext, z in (("mha", ""), ("mhd", ""), ("mha", "-z"), ("mhd", "-z")):
            label = "write-%s-%s%s-sitk" % (s, ext, z)
            if sitk is None:
                mptest.skip_ref(label, "SimpleITK not installed")
                continue
            out = os.path.join(T, s + z + "." + ext)
            conv(src, out, *([z] if z else []))
            img = sitk.ReadImage(out)
            a = sitk.GetArrayFromImage(img)
            want = sitk_geometry(img)
            d = min(img.GetDimension(), 3)
            good = np.array_equal(a, ref.array) and close(want[:3, :d], m0[:3, :d], 1e-12) and close(want[:3, 3], m0[:3, 3], 1e-12)
            ok(label, good, "SimpleITK reads other voxels/geometry:\n%s\n%s" % (want, m0))
        out = os.path.join(T, s + ".npy")
        conv(src, out)
        ok("write-%s-npy-numpy" % s, np.array_equal(np.load(out), ref.array), "numpy reads other voxels")


def check_malformed():
    def w(name, b):
        p = os.path.join(T, name)
        open(p, "wb").write(b)
        return p
    src = os.path.join(T, "good.nii")
    a = (np.arange(1000, dtype=np.int16) * 7).reshape(10, 10, 10)
    if nib is not None:
        nib.save(nib.Nifti1Image(a, np.diag([1.5, 2, 3, 1])), src)
        b = open(src, "rb").read()
        expect_refusal("bad-truncated-nii", w("trunc.nii", b[:len(b) - 100]), "header needs")
        expect_refusal("bad-truncated-nii-gz", w("trunc.nii.gz", gzip.compress(b)[:300]), "trunc|compressed")
        expect_refusal("bad-garbage-nii", w("garbage.nii", os.urandom(2000)), "NIfTI")
    expect_refusal("bad-empty-nrrd", w("empty.nrrd", b""), "")
    expect_refusal("bad-empty-nii", w("empty.nii", b""), "")
    expect_refusal("bad-garbage-nrrd", w("garbage.nrrd", b"NRRD0004\n\xff\xfe\x00garbage\n\n"), "")
    expect_refusal("bad-absurd-nrrd", w("absurd.nrrd", b"NRRD0004\ntype: double\ndimension: 3\nsizes: 99999 99999 99999\nendian: little\nencoding: raw\n\n"), "")
    expect_refusal("bad-type-nrrd", w("type.nrrd", b"NRRD0004\ntype: complex\ndimension: 1\nsizes: 2\nencoding: raw\n\nab"), "type")
    expect_refusal("bad-short-nrrd", w("short.nrrd", b"NRRD0004\ntype: int16\ndimension: 1\nsizes: 20\nendian: little\nencoding: raw\n\nabc"), "header needs|truncated")
    expect_refusal("bad-missing-mhd", w("m.mhd", b"ObjectType = Image\nNDims = 2\nDimSize = 4 4\nElementType = MET_UCHAR\nElementDataFile = nowhere.raw\n"), "nowhere.raw")
    expect_refusal("bad-size-mha", w("s.mha", b"NDims = 2\nDimSize = 4 4\nElementType = MET_UCHAR\nElementDataFile = LOCAL\n" + b"x" * 10), "header needs")
    expect_refusal("bad-garbage-npy", w("g.npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': 'x'}  "), "")
    expect_refusal("bad-truncated-npz", w("t.npz", b"PK\x03\x04" + os.urandom(100)), "")
    expect_refusal("bad-unknown", w("what.xyz", os.urandom(100)), "unknown")


def main():
    if not os.access(CONV, os.X_OK):
        skip("formats", "build/tests/test_fmt not built")
        return 0
    if not os.path.isdir(DATA):
        skip("formats-data", "%s absent" % DATA)
    else:
        if nib is None:
            mptest.skip_ref("formats-nibabel", "nibabel not installed")
        else:
            for p in sorted(glob.glob(os.path.join(DATA, "nifti", "*", "*"))):
                if p.endswith((".nii", ".nii.gz", ".hdr")):
                    check_nifti_file(p)
                elif p.endswith(".mnc"):
                    check_minc_file(p)
            check_minc_debian()
            check_analyze()
            check_rgb()
            check_nifti_variants()
            check_label_names()
            check_nrrd_files()
        check_meta_files()
        if nib is not None:
            check_written()
    check_malformed()
    return mptest.status()


if __name__ == "__main__":
    try:
        rc = main()
    finally:
        subprocess.run(["rm", "-rf", T])
    sys.exit(rc)
