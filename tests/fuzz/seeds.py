#!/usr/bin/env python3
"""tests/fuzz/seeds.py OUT [DATA] - the starting corpus of each harness.

OUT/<harness>/ gets small files made here (numpy, and torch when present) and
small real files from DATA (../shared/data) when it is there. Nothing made
here is committed; `make fuzz` runs this before fuzzing."""
import glob, gzip, io, json, os, struct, sys, zipfile, zlib

out = sys.argv[1]
data = sys.argv[2] if len(sys.argv) > 2 else ""
MAXB = 200 * 1024


def put(h, name, b):
    d = os.path.join(out, h)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(b)


def real(h, patterns, maxb=MAXB, limit=40):
    if not data or not os.path.isdir(data):
        return
    n = 0
    for pat in patterns:
        for p in sorted(glob.glob(os.path.join(data, pat), recursive=True)):
            if os.path.isfile(p) and os.path.getsize(p) <= maxb and n < limit:
                with open(p, "rb") as f:
                    put(h, "real_%d_%s" % (n, os.path.basename(p)), f.read())
                n += 1


def nrrd_hdr(sizes, typ="uint8", enc="raw", extra=""):
    s = "NRRD0004\ntype: %s\ndimension: %d\nsizes: %s\nencoding: %s\nendian: little\n" % (
        typ, len(sizes), " ".join(map(str, sizes)), enc)
    if len(sizes) == 3:
        s += "space: left-posterior-superior\nspace directions: (1,0,0) (0,1,0) (0,0,2.5)\nspace origin: (-1,2,3)\n"
    return (s + extra + "\n").encode()


# --- NRRD stream frames and files
vox = bytes(range(24))
frames = [
    nrrd_hdr([2, 3, 4]) + vox,
    nrrd_hdr([2, 3, 4], extra="medpipe.role:=label\nmedpipe.case:=c1\n") + vox,
    nrrd_hdr([3, 2, 2], "int16") + bytes(24),
    nrrd_hdr([2, 2, 1], "float", "gzip") + gzip.compress(struct.pack("<4f", 1, -2, 3.5, 0)),
    nrrd_hdr([4], "double", "ascii") + b"1 2 3.5 -4\n",
    nrrd_hdr([3, 2, 2], "uint8", extra="kinds: RGB-color domain domain\n") + bytes(12),
]
for i, f in enumerate(frames):
    put("nrrd", "gen%d.nrrd" % i, f)
put("nrrd_stream", "one", frames[0])
put("nrrd_stream", "two", frames[1] + frames[2])
put("nrrd_stream", "three", frames[3] + frames[0] + frames[4])
real("nrrd", ["nrrd/pynrrd/*.nrrd"])
real("nrrd_stream", ["nrrd/pynrrd/*raw.nrrd", "nrrd/pynrrd/*_gz.nrrd"])


# --- NIfTI-1 / Analyze headers
def nifti1(dims, dt, bp, magic=b"n+1\0", vox_off=352, slope=0.0, inter=0.0):
    h = bytearray(348)
    struct.pack_into("<i", h, 0, 348)
    d = [len(dims)] + list(dims) + [1] * (7 - len(dims))
    struct.pack_into("<8h", h, 40, *d)
    struct.pack_into("<hh", h, 70, dt, bp)
    struct.pack_into("<8f", h, 76, 1, 1.5, 1.5, 2.0, 1, 1, 1, 1)
    struct.pack_into("<f", h, 108, vox_off)
    struct.pack_into("<ff", h, 112, slope, inter)
    struct.pack_into("<hh", h, 252, 1, 1)
    struct.pack_into("<4f", h, 256, 0, 0, 0, 1)
    struct.pack_into("<12f", h, 280, -1.5, 0, 0, 10, 0, 1.5, 0, 20, 0, 0, 2, 30)
    h[344:348] = magic
    return bytes(h)


n = 3 * 2 * 2
put("nifti", "u8.nii", nifti1([3, 2, 2], 2, 8) + bytes(4) + bytes(range(n)))
put("nifti", "i16s.nii", nifti1([3, 2, 2], 4, 16, slope=1, inter=-1024) + bytes(4) + bytes(2 * n))
put("nifti", "f32.nii", nifti1([2, 2, 2, 2], 16, 32) + bytes(4) + bytes(4 * 16))
put("nifti", "rgb.nii", nifti1([2, 2, 2], 128, 24) + bytes(4) + bytes(3 * 8))
put("nifti", "rgba4d.nii", nifti1([3, 2, 2, 2], 2304, 32) + bytes(4) + bytes(4 * 24))
put("nifti", "vec5d.nii", nifti1([2, 2, 1, 1, 3], 16, 32) + bytes(4) + bytes(4 * 12))
real("nifti", ["nifti/nibabel/*.nii", "nifti/nibabel/*.nii.gz"])
put("analyze", "u8", nifti1([3, 2, 2], 2, 8, magic=b"\0\0\0\0", vox_off=0) + bytes(range(n)))
put("analyze", "ni1", nifti1([3, 2, 2], 4, 16, magic=b"ni1\0", vox_off=0) + bytes(2 * n))
put("analyze", "rgb4d", nifti1([3, 2, 2, 2], 128, 24, magic=b"\0\0\0\0", vox_off=0) + bytes(3 * 24))
if data:
    for hp in sorted(glob.glob(os.path.join(data, "nifti/nibabel/*.hdr"))):
        ip = hp[:-4] + ".img"
        with open(hp, "rb") as f:
            b = f.read()[:348]
        if os.path.exists(ip) and os.path.getsize(ip) < MAXB:
            with open(ip, "rb") as f:
                b += f.read()
        put("analyze", "real_" + os.path.basename(hp), b)

# --- MetaImage
def mha(extra, body):
    return ("ObjectType = Image\nNDims = 3\nDimSize = 3 2 2\nElementSpacing = 1 1 2\n"
            "Offset = 1 2 3\nTransformMatrix = 1 0 0 0 1 0 0 0 1\n%sElementDataFile = LOCAL\n" % extra).encode() + body
put("meta", "u8.mha", mha("ElementType = MET_UCHAR\n", bytes(range(12))))
put("meta", "s16.mha", mha("ElementType = MET_SHORT\nBinaryDataByteOrderMSB = True\n", bytes(24)))
put("meta", "z.mha", mha("ElementType = MET_FLOAT\nCompressedData = True\nCompressedDataSize = %d\n"
                        % len(zlib.compress(bytes(48))), zlib.compress(bytes(48))))
put("meta", "vec.mha", mha("ElementType = MET_UCHAR\nElementNumberOfChannels = 2\n", bytes(24)))
real("meta", ["meta/itk/*.mha"])

# --- npy / npz
try:
    import numpy as np
except ImportError:
    np = None
if np is not None:
    arrs = {"u8": np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
            "i16be": np.arange(12, dtype=">i2").reshape(3, 4),
            "f32": np.linspace(0, 1, 8, dtype=np.float32).reshape(2, 2, 2),
            "f64f": np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3)),
            "bool": np.array([[True, False], [False, True]])}
    for k, a in arrs.items():
        b = io.BytesIO(); np.save(b, a); put("npy", k + ".npy", b.getvalue())
    for comp in (False, True):
        b = io.BytesIO()
        (np.savez_compressed if comp else np.savez)(b, imgs=arrs["u8"], gts=arrs["u8"] % 3, spacing=np.array([1.0, 1.0, 2.5]))
        put("npz", "z%d.npz" % comp, b.getvalue())
        b = io.BytesIO()
        (np.savez_compressed if comp else np.savez)(b, boxes=np.array([[1, 2, 10, 12]], dtype=np.int64))
        put("npzboxes", "b2d%d.npz" % comp, b.getvalue())
        b = io.BytesIO()
        (np.savez_compressed if comp else np.savez)(b, boxes=np.array([[1, 2, 0, 10, 12, 3]], dtype=np.float64), imgs=arrs["u8"])
        put("npzboxes", "b3d%d.npz" % comp, b.getvalue())

# --- checkpoints: safetensors by hand, torch zip when torch is there
def safet(tensors):
    hdr, blob = {"__metadata__": {"format": "pt"}}, b""
    for name, (dt, shape, raw) in tensors.items():
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(blob), len(blob) + len(raw)]}
        blob += raw
    h = json.dumps(hdr).encode()
    return struct.pack("<Q", len(h)) + h + blob
put("safetensors", "a.safetensors", safet({"w": ("F32", [2, 3], struct.pack("<6f", *range(6))),
                                           "b": ("F16", [2], b"\x00\x3c\x00\xc0"),
                                           "i": ("I64", [1], struct.pack("<q", 7))}))
put("safetensors", "m.safetensors", safet({"module.x": ("BF16", [1, 2], b"\x80\x3f\x00\x40"),
                                           "module.y": ("F64", [], struct.pack("<d", 2.5))}))
# --- sam-embed --adapter DIR (fz_adapter.c): adapter_config.json, NUL, adapter_model.safetensors
_lcfg = json.dumps({"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["qkv"],
                    "modules_to_save": ["mask_decoder"], "fan_in_fan_out": False, "use_dora": False,
                    "use_rslora": False, "bias": "none", "rank_pattern": {}, "alpha_pattern": {},
                    "note": ["\u00e9\ud83d\ude00", 1.5e-3, -0, None, True]}, indent=1).encode()
_p = "base_model.model."
put("adapter", "lora.bin", _lcfg + b"\0" + safet({
    _p + "image_encoder.blocks.0.attn.qkv.lora_A.weight": ("F32", [2, 4], struct.pack("<8f", *range(8))),
    _p + "image_encoder.blocks.0.attn.qkv.lora_B.weight": ("F32", [6, 2], struct.pack("<12f", *range(12))),
    _p + "mask_decoder.a.weight": ("F32", [2, 2], struct.pack("<4f", 1, 2, 3, 4))}))
put("adapter", "msa.bin", safet({"image_encoder.blocks.0.%s_Adapter.D_fc%d.%s" % (m, k, w):
                                 ("F32", [1, 4] if (k, w) == (1, "weight") else [4, 1] if w == "weight" else
                                  [1] if k == 1 else [4], struct.pack("<4f", 1, 2, 3, 4)[:16 if w == "weight" or k == 2 else 4])
                                 for m in ("Space", "MLP") for k in (1, 2) for w in ("weight", "bias")}))
try:
    import torch
    sd = {"a.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3),
          "a.bias": torch.zeros(3, dtype=torch.float16),
          "t": torch.arange(12, dtype=torch.float32).reshape(3, 4).t(),
          "n": torch.tensor([1, 2], dtype=torch.int64),
          "h": torch.ones(2, 2, dtype=torch.bfloat16)}
    for k, obj in (("sd", sd), ("ckpt", {"model": sd, "epoch": 3, "lr": 0.1, "name": "x", "l": [1, (2, 3)]})):
        b = io.BytesIO(); torch.save(obj, b); put("torch", k + ".pth", b.getvalue())
except Exception:
    pass

# --- DICOM files and DICOMDIRs
real("dicom", ["dicom/pydicom/*.dcm", "dicom/mr-syntaxes/**/*.dcm", "dicom/12bit/**/*.dcm",
               "dicom/pydicom-data/**/*.dcm", "dicom/ct-syntaxes/**/*.dcm"], maxb=MAXB, limit=60)
real("dicomdir", ["dicom/pydicom/dicomdirtests/DICOMDIR*", "dicom/pydicom/dicomdirtests/**/DICOMDIR"])
for h in ("dicom", "dicomdir", "torch"):
    os.makedirs(os.path.join(out, h), exist_ok=True)

# --- 2D images: PNG, JPEG, BMP (PIL when present), and the real PNG/JPEG files
def png(w, h, ctype, depth, rows, extra=b""):
    def chunk(t, b):
        return struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b) & 0xffffffff)
    raw = b"".join(b"\0" + r for r in rows)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 0))
            + extra + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
put("png", "g8.png", png(3, 2, 0, 8, [bytes([0, 128, 255])] * 2))
put("png", "g16.png", png(2, 2, 0, 16, [bytes(4), b"\xff\xff\x12\x34"]))
put("png", "rgb.png", png(2, 2, 2, 8, [bytes(range(6))] * 2))
put("png", "rgba.png", png(2, 1, 6, 8, [bytes(range(8))]))
put("png", "ga.png", png(2, 1, 4, 8, [bytes(range(4))]))
put("png", "g1.png", png(9, 2, 0, 1, [b"\xa5\x80"] * 2))
put("png", "pal.png", png(2, 2, 3, 8, [b"\0\1", b"\1\0"],
                          extra=(lambda t, b: struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b) & 0xffffffff))(b"PLTE", bytes([0, 0, 0, 255, 0, 0]))))
put("png", "phys.png", png(2, 2, 0, 8, [b"\0\1"] * 2,
                           extra=(lambda t, b: struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b) & 0xffffffff))(b"pHYs", struct.pack(">IIB", 2000, 4000, 1))))
real("png", ["images2d/sam-med2d/masks/amos_0004_75_aorta_000.png", "wsi/openslide/boxes.png"])
try:
    from PIL import Image
    import numpy as _np
    g = Image.fromarray((_np.arange(48) * 5 % 256).astype(_np.uint8).reshape(6, 8))
    c = Image.fromarray((_np.arange(6 * 8 * 3) * 7 % 256).astype(_np.uint8).reshape(6, 8, 3))
    for name, im, kw in (("g.jpg", g, {}), ("c.jpg", c, {"quality": 90}), ("p.jpg", c, {"progressive": True}),
                         ("s.jpg", c, {"subsampling": 0, "dpi": (300, 300)})):
        b = io.BytesIO(); im.save(b, "JPEG", **kw); put("jpeg", name, b.getvalue())
    b = io.BytesIO(); c.convert("CMYK").save(b, "JPEG"); put("jpeg", "cmyk.jpg", b.getvalue())
    for name, im in (("g.bmp", g), ("c.bmp", c), ("p.bmp", c.convert("P")), ("b.bmp", g.convert("1")),
                     ("a.bmp", c.convert("RGBA"))):
        b = io.BytesIO(); im.save(b, "BMP"); put("bmp", name, b.getvalue())
except Exception:
    pass
real("jpeg", ["micro/stardist/histo.jpg"])
os.makedirs(os.path.join(out, "bmp"), exist_ok=True)

# --- TIFF: plain, ImageJ, OME, BigTIFF, compressed (tifffile when present)
try:
    import numpy as _np, tifffile
    a = (_np.arange(3 * 4 * 5) % 251).astype(_np.uint8).reshape(3, 4, 5)
    def tif(name, arr, **kw):
        b = io.BytesIO(); tifffile.imwrite(b, arr, **kw); put("tiff", name, b.getvalue())
    tif("u8.tif", a[0])
    tif("stack.tif", a)
    tif("u16c.tif", a.astype(_np.uint16) * 300, compression="zlib")
    tif("f32.tif", a.astype(_np.float32) / 3, predictor=False)
    tif("rgb.tif", _np.stack([a[0]] * 3, -1), photometric="rgb")
    tif("ij.tif", a.astype(_np.uint16), imagej=True, resolution=(1 / 0.5, 1 / 0.5),
        metadata={"spacing": 2.5, "unit": "um", "axes": "ZYX"})
    tif("ome.ome.tif", _np.stack([a, a + 1]), ome=True, metadata={"axes": "CZYX", "PhysicalSizeX": 0.65})
    tif("big.tif", a, bigtiff=True)
    tif("tiled.tif", _np.zeros((32, 32), _np.uint8), tile=(16, 16))
    tif("lzw.tif", a, compression="lzw")
    tif("pb.tif", a, compression="packbits")
    # a generic tiled pyramid for OpenSlide
    b = io.BytesIO()
    with tifffile.TiffWriter(b) as t:
        t.write(_np.full((32, 48, 3), 200, _np.uint8), tile=(16, 16), photometric="rgb")
        t.write(_np.full((16, 24, 3), 100, _np.uint8), tile=(16, 16), photometric="rgb")
    put("wsi", "pyr.tiff", b.getvalue())
    b = io.BytesIO()
    with tifffile.TiffWriter(b) as t:
        t.write(_np.full((32, 32, 3), 50, _np.uint8), tile=(16, 16), photometric="rgb",
                description="Aperio Image Library v10.0.0\n32x32 [0,0 32x32] (16x16) JPEG/RGB Q=70|AppMag = 20|MPP = 0.5")
    put("wsi", "aperio.svs", b.getvalue())
except Exception:
    pass
real("tiff", ["micro/**/*.tif", "micro/**/*.tiff", "wsi/openslide/*.tiff"], maxb=40 * 1024)
real("wsi", ["wsi/openslide/*.svs", "wsi/openslide/*.tiff", "wsi/broken.svs"])

# --- MINC1 (NetCDF) / MINC2 (HDF5): the real samples (small)
real("minc", ["nifti/nibabel/*.mnc"])
os.makedirs(os.path.join(out, "minc"), exist_ok=True)

# --- .nii.gz: the NIfTI seeds gzipped, and small real ones
for f in sorted(os.listdir(os.path.join(out, "nifti"))):
    if not f.endswith(".gz"):
        with open(os.path.join(out, "nifti", f), "rb") as fp:
            put("niigz", f + ".gz", gzip.compress(fp.read()))
real("niigz", ["nifti/nibabel/*.nii.gz", "nrrd/pynrrd/*.nii.gz"], maxb=32 * 1024)

# --- detached headers: header, a NUL byte, then the data file (named "d")
def split(hdr, body):
    return hdr + b"\0" + body
nh = "NRRD0004\ntype: %s\ndimension: 3\nsizes: 3 2 2\nencoding: %s\nendian: %s\n%sdata file: d\n\n"
put("nhdr", "raw", split((nh % ("uint8", "raw", "little", "")).encode(), bytes(range(12))))
put("nhdr", "be16", split((nh % ("int16", "raw", "big", "byte skip: 4\n")).encode(), bytes(28)))
put("nhdr", "gz", split((nh % ("float", "gzip", "little", "")).encode(), gzip.compress(bytes(48))))
put("nhdr", "ascii", split((nh % ("double", "ascii", "little", "line skip: 1\n")).encode(), b"skip\n" + b"1 2 3 4 5 6 7 8 9 10 11 12\n"))
put("nhdr", "list", split(b"NRRD0004\ntype: uint8\ndimension: 3\nsizes: 2 2 2\nencoding: raw\ndata file: LIST 2\nd\nd\n", bytes(4)))
put("nhdr", "pattern", split(b"NRRD0004\ntype: uint8\ndimension: 3\nsizes: 2 2 1\nencoding: raw\ndata file: %c 100 100 1\n", bytes(4)))
mh = "ObjectType = Image\nNDims = 3\nDimSize = 3 2 2\nElementSpacing = 1 1 2\n%sElementDataFile = d\n"
put("mhd", "u8", split((mh % "ElementType = MET_UCHAR\n").encode(), bytes(range(12))))
put("mhd", "s16", split((mh % "ElementType = MET_SHORT\nBinaryDataByteOrderMSB = True\nHeaderSize = 4\n").encode(), bytes(28)))
put("mhd", "z", split((mh % ("ElementType = MET_FLOAT\nCompressedData = True\nCompressedDataSize = %d\n"
                             % len(zlib.compress(bytes(48))))).encode(), zlib.compress(bytes(48))))
put("mhd", "hs", split((mh % "ElementType = MET_UCHAR\nHeaderSize = -1\nElementNumberOfChannels = 2\n").encode(), bytes(30)))
put("mhd", "list", split(b"ObjectType = Image\nNDims = 3\nDimSize = 2 2 2\nElementType = MET_UCHAR\nElementDataFile = LIST\nd\nd\n", bytes(4)))
if data:
    import re
    for pat, h, key in (("nrrd/pynrrd/*.nhdr", "nhdr", rb"data file: *[^\n]*"), ("meta/itk/*.nhdr", "nhdr", rb"data file: *[^\n]*"),
                        ("meta/itk/*.mhd", "mhd", rb"ElementDataFile *= *[^\n]*")):
        for hp in sorted(glob.glob(os.path.join(data, pat))):
            with open(hp, "rb") as f:
                hb = f.read()
            m = re.search(key, hb)
            if not m:
                continue
            dname = m.group(0).split(b"=" if b"=" in m.group(0) else b":", 1)[1].strip().decode()
            dp = os.path.join(os.path.dirname(hp), dname)
            body = b""
            if os.path.isfile(dp) and os.path.getsize(dp) <= 16 * 1024:
                with open(dp, "rb") as f:
                    body = f.read()
            new = (b"data file: d" if h == "nhdr" else b"ElementDataFile = d")
            put(h, "real_" + os.path.basename(hp), split(hb[:m.start()] + new + hb[m.end():], body))
for h in ("png", "jpeg", "tiff", "wsi", "nhdr", "mhd", "niigz"):
    os.makedirs(os.path.join(out, h), exist_ok=True)
