#!/usr/bin/python3
"""dcmtree.py - DICOM series for dcm2vol's tests and benchmark, written with
pydicom (seeded: the same arguments give the same files).

As a module:
    write_series(folder, vol, ...)   one file per slice of vol (z, y, x)
As a program (benchmark data):
    tests/gen/dcmtree.py --bench OUT --slices 500 --size 512 [--seed 1]
        writes OUT/plain/ (explicit little endian, int16 CT) and, when
        DCMTK's dcmcjpeg is present, OUT/jpegll/ (JPEG lossless, process 14 SV1).
"""
import argparse
import os
import shutil
import subprocess
import sys

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"

PHI = {
    "PatientName": "Zyxwvut^Quirinella",
    "PatientID": "PID-8675309-QX",
    "PatientBirthDate": "19230417",
    "StudyDate": "20190923",
    "AccessionNumber": "ACC77441199",
    "InstitutionName": "Saint Obscurus Infirmary",
    "ReferringPhysicianName": "Vlkqrst^Bartholomew",
    "StudyInstanceUID": "1.2.826.0.1.3680043.8.498.99887766554433221100",
}


def write_series(folder, vol, *, series_uid=None, series_number=1, modality="CT", description="test series",
                 iop=(1, 0, 0, 0, 1, 0), origin=(0.0, 0.0, 0.0), spacing=(0.8, 0.7, 2.5), slope=1.0,
                 intercept=-1024.0, stored=None, bits_stored=16, signed=True, photometric="MONOCHROME2",
                 padding=None, names=None, skip=(), image_type="ORIGINAL\\PRIMARY\\AXIAL", phi=None,
                 positions=None, rng=None):
    """vol: (z, y, x) array of stored values (or HU when stored is None: HU -> stored
    through slope/intercept). spacing: (column spacing x, row spacing y, slice step).
    names: list of file names per slice (default: IM%04d). skip: slices not written.
    positions: explicit ImagePositionPatient per slice (overrides origin/spacing)."""
    os.makedirs(folder, exist_ok=True)
    series_uid = series_uid or generate_uid(prefix="1.2.826.0.1.3680043.8.498.")
    phi = PHI if phi is None else phi
    iop = np.array(iop, float)
    r, c = iop[:3], iop[3:]
    n = np.cross(r, c)
    if stored is None:
        stored = np.rint((vol - intercept) / slope)
    dt = np.int16 if signed else np.uint16
    files = []
    for k in range(vol.shape[0]):
        if k in skip:
            continue
        ds = Dataset()
        fm = FileMetaDataset()
        fm.MediaStorageSOPClassUID = CT_STORAGE if modality == "CT" else MR_STORAGE
        fm.MediaStorageSOPInstanceUID = generate_uid(prefix="1.2.826.0.1.3680043.8.498.", entropy_srcs=[series_uid, str(k)])
        fm.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = fm
        ds.SOPClassUID = fm.MediaStorageSOPClassUID
        ds.SOPInstanceUID = fm.MediaStorageSOPInstanceUID
        for key, v in phi.items():
            setattr(ds, key, v)
        ds.Modality = modality
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = series_number
        ds.SeriesDescription = description
        ds.InstanceNumber = k + 1
        ds.ImageType = image_type.split("\\")
        ds.Manufacturer = "medpipe-test"
        ds.ImageOrientationPatient = [float(x) for x in iop]
        if positions is not None:
            p = np.array(positions[k], float)
        else:
            p = np.array(origin, float) + k * spacing[2] * n
        ds.ImagePositionPatient = [round(float(x), 6) for x in p]
        ds.PixelSpacing = [spacing[1], spacing[0]]
        ds.SliceThickness = abs(spacing[2])
        ds.Rows, ds.Columns = vol.shape[1], vol.shape[2]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated = 16
        ds.BitsStored = bits_stored
        ds.HighBit = bits_stored - 1
        ds.PixelRepresentation = 1 if signed else 0
        if slope != 1.0 or intercept != 0.0 or modality == "CT":
            ds.RescaleSlope = slope
            ds.RescaleIntercept = intercept
        if padding is not None:
            ds.PixelPaddingValue = int(padding)
        raw = stored[k]
        ds.PixelData = raw.astype(dt).tobytes() if raw.dtype != np.uint16 else raw.tobytes()
        ds.is_little_endian, ds.is_implicit_VR = True, False
        name = names[k] if names else "IM%04d" % (k + 1)
        path = os.path.join(folder, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        ds.save_as(path, write_like_original=False)
        files.append(path)
    return files, series_uid


def write_enhanced(path, stored, *, order, iop=(1, 0, 0, 0, 1, 0), origin=(0.0, 0.0, 0.0), spacing=(0.5, 0.6, 1.5),
                   intercepts=None, slope=1.0, series_uid="1.2.826.0.1.3680043.8.498.2001"):
    """one Enhanced CT object: frame f holds slice order[f] of stored (z, y, x int16),
    with its own PlanePositionSequence and PixelValueTransformationSequence
    (intercepts[slice]); orientation and pixel spacing in the shared groups"""
    from pydicom.sequence import Sequence
    iop = np.array(iop, float)
    n = np.cross(iop[:3], iop[3:])
    ds = Dataset()
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"
    fm.MediaStorageSOPInstanceUID = series_uid + ".1"
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = fm
    ds.SOPClassUID, ds.SOPInstanceUID = fm.MediaStorageSOPClassUID, fm.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber = "CT", series_uid, 9
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.Rows, ds.Columns = stored.shape[1], stored.shape[2]
    ds.NumberOfFrames = len(order)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    sh = Dataset()
    pm = Dataset()
    pm.PixelSpacing = [spacing[1], spacing[0]]
    pm.SliceThickness = spacing[2]
    po = Dataset()
    po.ImageOrientationPatient = [float(x) for x in iop]
    sh.PixelMeasuresSequence = Sequence([pm])
    sh.PlaneOrientationSequence = Sequence([po])
    ds.SharedFunctionalGroupsSequence = Sequence([sh])
    per = []
    for k in order:
        fg = Dataset()
        pp = Dataset()
        pp.ImagePositionPatient = [round(float(x), 6) for x in np.array(origin) + k * spacing[2] * n]
        fg.PlanePositionSequence = Sequence([pp])
        pv = Dataset()
        pv.RescaleSlope = slope
        pv.RescaleIntercept = float(intercepts[k]) if intercepts is not None else 0.0
        pv.RescaleType = "HU"
        fg.PixelValueTransformationSequence = Sequence([pv])
        per.append(fg)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per)
    ds.PixelData = np.ascontiguousarray(stored[list(order)].astype("<i2")).tobytes()
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.save_as(path, write_like_original=False)


def phantom(shape, seed=0):
    """a smooth CT-like volume in HU, int16 range"""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape).astype(float)
    cz, cy, cx = [(s - 1) / 2 for s in shape]
    rr = ((x - cx) / (shape[2] / 2.3)) ** 2 + ((y - cy) / (shape[1] / 2.6)) ** 2
    v = np.where(rr < 1, 40.0, -1000.0)
    v += np.where(((x - cx * 0.7) ** 2 + (y - cy) ** 2) < (shape[2] / 9) ** 2, 600.0, 0)
    v += 20 * np.sin(z / 3.0)
    v += rng.normal(0, 10, shape)
    return np.rint(v).astype(np.int16)


def bench(out, nslices, size, seed):
    vol = phantom((nslices, size, size), seed)
    plain = os.path.join(out, "plain")
    if os.path.isdir(plain):
        shutil.rmtree(plain)
    write_series(plain, vol, spacing=(0.7, 0.7, 1.0), description="bench", names=None)
    if shutil.which("dcmcjpeg"):
        jl = os.path.join(out, "jpegll")
        if os.path.isdir(jl):
            shutil.rmtree(jl)
        os.makedirs(jl)
        for f in sorted(os.listdir(plain)):
            subprocess.run(["dcmcjpeg", "+e1", os.path.join(plain, f), os.path.join(jl, f)], check=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", metavar="OUT", required=True)
    ap.add_argument("--slices", type=int, default=500)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    bench(a.bench, a.slices, a.size, a.seed)
    sys.exit(0)
