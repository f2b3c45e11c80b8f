#!/usr/bin/env python3
"""tests/fuzz/issue_cases.py DIR - writes the inputs of issue 11 (crashes found by
an earlier fuzzing campaign) as regression files under DIR/<harness>/.
The committed files in tests/fuzz/regress/ were made by this script; it needs
only the Python standard library (Debian's pydicom for the DICOM case)."""
import collections, json, os, pickle, struct, sys, types, zipfile, io

out = sys.argv[1]


def zput(zf, name, data):
    # a fixed date: the same bytes on every run
    zf.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), data)


def put(h, name, b):
    os.makedirs(os.path.join(out, h), exist_ok=True)
    with open(os.path.join(out, h, name), "wb") as f:
        f.write(b)


# a ZIP64 locator pointing far away, then an end record asking for ZIP64:
# torchload.c's check "z64 > len - 56" wrapped for files under 56 bytes
loc = struct.pack("<IIQI", 0x07064B50, 0, 0xFFFFFFFFFFFFFF00, 1)
eocd = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
put("torch", "zip64-short.pth", b"PK\x03\x04" + loc + eocd)          # 46 bytes
put("npzboxes", "zip64-short.npz", loc + eocd)                       # 42 bytes

# a bad second central directory record: zip_open failed after allocating
# the first entry, and mp_tl_npz_array skipped zip_free (a leak)
z = io.BytesIO()
with zipfile.ZipFile(z, "w", zipfile.ZIP_STORED) as zf:
    zput(zf, "imgs.npy", b"x" * 8)
    zput(zf, "boxes.npy", b"y" * 8)
zb = bytearray(z.getvalue())
second = zb.index(b"PK\x01\x02", zb.index(b"PK\x01\x02") + 4)
zb[second + 3] = 0x09
put("npzboxes", "bad-second-entry.npz", bytes(zb))

# torch checkpoints written with a stand-in torch module (no torch needed)
torch = types.ModuleType("torch")
tu = types.ModuleType("torch._utils")


def _rebuild_tensor_v2(*a):
    pass


class FloatStorage:
    pass


_rebuild_tensor_v2.__module__ = "torch._utils"
FloatStorage.__module__ = "torch"
tu._rebuild_tensor_v2 = _rebuild_tensor_v2
torch._utils = tu
torch.FloatStorage = FloatStorage
sys.modules["torch"] = torch
sys.modules["torch._utils"] = tu


class Storage:
    def __init__(self, key, numel):
        self.key, self.numel = key, numel


class Tensor:
    def __init__(self, st, off, shape, stride):
        self.a = (st, off, shape, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return (_rebuild_tensor_v2, self.a)


class P(pickle.Pickler):
    def persistent_id(self, o):
        if isinstance(o, Storage):
            return ("storage", FloatStorage, o.key, "cpu", o.numel)
        return None


def ckpt(sd, storages):
    b = io.BytesIO()
    P(b, protocol=2).dump(collections.OrderedDict(sd))
    z = io.BytesIO()
    with zipfile.ZipFile(z, "w", zipfile.ZIP_STORED) as zf:
        zput(zf, "archive/data.pkl", b.getvalue())
        for k, raw in storages.items():
            zput(zf, "archive/data/" + k, raw)
        zput(zf, "archive/version", "3\n")
    return z.getvalue()


# shape 16777217 with stride 2^40 over a one-element storage: (n-1)*stride is
# 2^64, which wrapped to 0 and passed the storage check
st = Storage("0", 1)
put("torch", "huge-stride.pth", ckpt({"w": Tensor(st, 0, (16777217,), (1 << 40,))}, {"0": b"\0" * 4}))
# shape and stride products past 2^63 (signed overflow)
put("torch", "stride-overflow.pth", ckpt({"w": Tensor(st, 0, (1 << 40, 1 << 40), (1 << 40, 1 << 40))}, {"0": b"\0" * 4}))

# safetensors: shape product 2^62 times 4 bytes wraps to 0 = the data's length
h = json.dumps({"w": {"dtype": "F32", "shape": [1 << 31, 1 << 31], "data_offsets": [0, 0]}}).encode()
put("safetensors", "size-wraps.safetensors", struct.pack("<Q", len(h)) + h)

# an RLE frame whose segment offset points far outside its fragment
try:
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import RLELossless, SecondaryCaptureImageStorage, generate_uid
except ImportError:
    pydicom = None
if pydicom is not None:
    def rle_file(hdr):
        m = FileMetaDataset()
        m.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
        m.MediaStorageSOPInstanceUID = "1.2.3.4.5"
        m.TransferSyntaxUID = RLELossless
        ds = Dataset()
        ds.file_meta = m
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.SOPClassUID = m.MediaStorageSOPClassUID
        ds.SOPInstanceUID = m.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = "1.2.3.4"
        ds.SeriesInstanceUID = "1.2.3.4.1"
        ds.Modality = "OT"
        ds.Rows, ds.Columns = 4, 4
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        # one segment: a literal run of 16 bytes
        seg = bytes([15]) + bytes(range(16))
        ds.PixelData = encapsulate([hdr + seg + b"\0" * (len(seg) % 2)])
        ds["PixelData"].VR = "OB"
        b = io.BytesIO()
        ds.save_as(b, write_like_original=False)
        return b.getvalue()
    put("dicom", "rle-offset-outside.dcm", rle_file(struct.pack("<16I", 1, 0x7FFFFF00, *[0] * 14)))
    put("dicom", "rle-16-segments.dcm", rle_file(struct.pack("<16I", 16, *range(64, 64 + 15))))
