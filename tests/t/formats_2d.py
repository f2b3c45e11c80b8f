#!/usr/bin/env python3
"""2D pictures, TIFF stacks and OME-TIFF through vol-cat, against PIL and
tifffile (independent readers):

- every PNG under $DATA/images2d, $DATA/micro/stardist/histo.jpg and the
  stardist 2D TIFFs: voxels equal numpy.asarray(PIL.Image.open(...)) (palette
  expanded to RGB, alpha dropped, as skimage.io.imread gives it);
- pictures PIL writes here: BMP (24-bit, 8-bit grey), JPEG grey, PNG
  RGBA/LA/palette/16-bit/pHYs (spacing 0.1 mm from 254 dpi);
- every series of $DATA/micro/galaxy/{multiseries.ome.tiff,sample_ovule.tiff}
  and micro/stardist/img3d.tif: voxels, channel order and physical sizes equal
  tifffile's; --series N;
- TIFFs tifffile writes here: tiled RGB, planar, deflate/LZW, BigTIFF, float,
  int16, an ImageJ hyperstack (T, Z, C) with spacing, an OME-TIFF of two
  series with PhysicalSize units;
- masks given with --label become label frames.
"""
import glob
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from mpstream import read_frames  # noqa: E402
import mptest  # noqa: E402
from mptest import ok, skip  # noqa: E402

DATA = os.environ.get("DATA", "../shared/data")
BIN = os.environ.get("BIN", "bin")
T = tempfile.mkdtemp(prefix="mp-fmt2d-")

try:
    from PIL import Image
except ImportError:
    Image = None
try:
    import tifffile
except ImportError:
    tifffile = None


def cat(*args):
    r = subprocess.run([os.path.join(BIN, "vol-cat")] + list(args), capture_output=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.decode().strip())
    return read_frames(r.stdout)


def pil_ref(p):
    im = Image.open(p)
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA"):
        im = im.convert(im.mode[:-1] if im.mode != "PA" else "RGB")
    return np.asarray(im)


def spacing(fr):
    return [float(np.linalg.norm(d)) for d in fr.dirs if d is not None]


def check_pil(name, p, sp=None, extra=()):
    try:
        fr = cat(*extra, p)
    except RuntimeError as e:
        ok(name, False, str(e))
        return
    ref = pil_ref(p)
    a = fr[0].array
    good = len(fr) == 1 and a.shape == ref.shape and np.array_equal(a.astype(np.int64), ref.astype(np.int64))
    why = "shape %s vs PIL %s" % (a.shape, ref.shape) if a.shape != ref.shape else "voxels differ"
    if good and sp is not None:
        good = np.allclose(spacing(fr[0]), sp, rtol=1e-6)
        why = "spacing %s, want %s" % (spacing(fr[0]), sp)
    if good and ref.ndim == 3:
        good = fr[0].fields["kinds"].split()[0] == "RGB-color"
        why = "kinds %s" % fr[0].fields["kinds"]
    ok(name, good, why)


def canon(arr, axes):
    """a tifffile series array to our frame layout per time point:
    list over T of arrays (Z, Y, X, C) squeezed as the frame is"""
    axes = axes.replace("Q", "Z").replace("I", "Z")
    for ax in "TZCS":
        if ax not in axes:
            arr = arr[np.newaxis]
            axes = ax + axes
    arr = np.transpose(arr, [axes.index(a) for a in "TZYXCS"])
    t, z, y, x, c, s = arr.shape
    arr = arr.reshape(t, z, y, x, c * s)
    out = []
    for k in range(t):
        a = arr[k]
        if a.shape[3] == 1:
            a = a[..., 0]
        if a.shape[0] == 1:
            a = a[0]
        out.append(a)
    return out


def check_tifffile(name, p, sp=None, extra=()):
    try:
        frames = cat(*extra, p)
    except RuntimeError as e:
        ok(name, False, str(e))
        return
    tf = tifffile.TiffFile(p)
    ref = []
    series = [s for s in tf.series if not (len(tf.series) > 1 and s.kind in ("ome",) and False)]
    for si, s in enumerate(series):
        for a in canon(s.asarray(), s.axes):
            ref.append((si, a))
    if "--series" in extra:
        n = int(extra[extra.index("--series") + 1])
        ref = [r for r in ref if r[0] == n]
    good = len(frames) == len(ref)
    why = "%d frames, tifffile %d" % (len(frames), len(ref))
    for fr, (si, a) in zip(frames, ref):
        if not good:
            break
        if fr.array.shape != a.shape or not np.array_equal(fr.array, a):
            good, why = False, "series %d: shape %s vs tifffile %s or voxels differ" % (si, fr.array.shape, a.shape)
        elif fr.keys.get("medpipe.series") != str(si):
            good, why = False, "medpipe.series %s, want %d" % (fr.keys.get("medpipe.series"), si)
        elif sp is not None and not np.allclose(spacing(fr), sp[:len(spacing(fr))], rtol=1e-6):
            good, why = False, "spacing %s, want %s" % (spacing(fr), sp)
    ok(name, good, why)


def main():
    if not os.access(os.path.join(BIN, "vol-cat"), os.X_OK):
        skip("formats-2d", "bin/vol-cat not built")
        return 0
    if Image is None:
        skip("formats-2d-pil", "PIL not installed")
    else:
        if os.path.isdir(DATA):
            pngs = sorted(glob.glob(os.path.join(DATA, "images2d", "**", "*.png"), recursive=True))
            for p in pngs:
                check_pil("png-" + os.path.relpath(p, DATA).replace("/", "-"), p, sp=[1, 1])
            for p in sorted(glob.glob(os.path.join(DATA, "micro", "stardist", "*2d.tif"))) + \
                    [os.path.join(DATA, "micro", "stardist", "histo.jpg")]:
                if os.path.exists(p):
                    check_pil("pil-" + os.path.basename(p), p)
            m = sorted(glob.glob(os.path.join(DATA, "images2d", "sam-med2d", "masks", "*.png")))
            if m:
                fr = cat("--label", m[0])
                ok("png-mask-label", fr[0].keys.get("medpipe.role") == "label" and fr[0].array.dtype == np.uint8,
                   "role %s type %s" % (fr[0].keys.get("medpipe.role"), fr[0].array.dtype))
        else:
            skip("formats-2d-data", "%s absent" % DATA)
        rng = np.random.default_rng(5)
        rgb = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
        grey = rng.integers(0, 256, (41, 29), dtype=np.uint8)
        g16 = rng.integers(0, 65536, (23, 31), dtype=np.uint16)
        cases = [
            ("bmp-rgb", "a.bmp", Image.fromarray(rgb), {}),
            ("bmp-grey", "g.bmp", Image.fromarray(grey), {}),
            ("jpeg-grey", "g.jpg", Image.fromarray(grey), {"quality": 90}),
            ("jpeg-rgb", "c.jpg", Image.fromarray(rgb), {"quality": 90}),
            ("png-rgba", "a.png", Image.fromarray(np.dstack([rgb, rgb[..., :1]])), {}),
            ("png-la", "la.png", Image.fromarray(grey).convert("LA"), {}),
            ("png-palette", "p.png", Image.fromarray(rgb).quantize(17), {}),
            ("png-16bit", "g16.png", Image.fromarray(g16), {}),
            ("png-1bit", "b.png", Image.fromarray(grey > 128), {}),
        ]
        for name, fn, im, kw in cases:
            p = os.path.join(T, fn)
            im.save(p, **kw)
            check_pil(name, p, sp=[1, 1])
        p = os.path.join(T, "lzw.tif")
        Image.fromarray(rgb).save(p, compression="tiff_lzw")
        check_pil("tiff-lzw-pil", p)
        p = os.path.join(T, "jpeg.tif")
        Image.fromarray(rgb).save(p, compression="jpeg")
        check_pil("tiff-jpeg-ycbcr-pil", p)
        p = os.path.join(T, "rgbmask.png")
        m = np.zeros((20, 30, 3), np.uint8)
        m[5:9, 3:7] = 255
        m[10:12, 0:2, 0] = 2
        Image.fromarray(m).save(p)
        fr = cat("--label", p)
        ok("png-rgb-mask-first-channel", fr[0].keys.get("medpipe.role") == "label" and
           np.array_equal(fr[0].array, m[..., 0]), "shape %s" % (fr[0].array.shape,))
        p = os.path.join(T, "dpi.png")
        Image.fromarray(grey).save(p, dpi=(254, 127))
        check_pil("png-phys-spacing", p, sp=[0.1, 0.2])
    if tifffile is None:
        skip("formats-tiff", "tifffile not installed")
        return mptest.status()
    if os.path.isdir(DATA):
        g = os.path.join(DATA, "micro", "galaxy")
        check_tifffile("ome-multiseries", os.path.join(g, "multiseries.ome.tiff"), sp=[0.00065, 0.00065])
        check_tifffile("ome-multiseries-series3", os.path.join(g, "multiseries.ome.tiff"), extra=("--series", "3"))
        check_tifffile("imagej-ovule", os.path.join(g, "sample_ovule.tiff"), sp=[0.00015, 0.00015, 0.000235])
        check_tifffile("tiff-stack-img3d", os.path.join(DATA, "micro", "stardist", "img3d.tif"), sp=[1, 1, 1])
        check_tifffile("tiff-stack-mask3d", os.path.join(DATA, "micro", "stardist", "mask3d.tif"))
        r = subprocess.run([os.path.join(BIN, "vol-cat"), "--series", "9", os.path.join(g, "multiseries.ome.tiff")],
                           capture_output=True)
        err = r.stderr.decode().strip().split("\n")
        ok("ome-series-missing", r.returncode == 1 and len(err) == 1 and "no series 9" in err[0] and not r.stdout,
           "rc %d: %s" % (r.returncode, err))
    rng = np.random.default_rng(7)
    a3 = rng.integers(0, 256, (45, 70, 3), dtype=np.uint8)
    s16 = rng.integers(-3000, 3000, (5, 33, 47), dtype=np.int16)
    f32 = rng.standard_normal((3, 20, 24)).astype(np.float32)
    gen = [
        ("tiff-rgb-tiled-deflate", "rgbt.tif", a3, dict(tile=(16, 32), compression="zlib", photometric="rgb")),
        ("tiff-rgb-planar", "rgbp.tif", np.moveaxis(a3, 2, 0), dict(planarconfig="separate", photometric="rgb")),
        ("tiff-int16-stack", "s16.tif", s16, dict()),
        ("tiff-float-bigtiff", "f32.tif", f32, dict(bigtiff=True)),
    ]
    for name, fn, arr, kw in gen:
        p = os.path.join(T, fn)
        tifffile.imwrite(p, arr, **kw)
        check_tifffile(name, p)
    p = os.path.join(T, "hyper.tif")
    hs = rng.integers(0, 4000, (2, 4, 3, 17, 19), dtype=np.uint16)   # TZCYX
    tifffile.imwrite(p, hs, imagej=True, resolution=(1 / 0.2, 1 / 0.2),
                     metadata={"spacing": 1.5, "unit": "um", "axes": "TZCYX"})
    check_tifffile("imagej-hyperstack", p, sp=[0.0002, 0.0002, 0.0015])
    p = os.path.join(T, "two.ome.tif")
    with tifffile.TiffWriter(p, ome=True) as w:
        w.write(rng.integers(0, 255, (3, 2, 12, 14), dtype=np.uint8),
                metadata={"axes": "ZCYX", "PhysicalSizeX": 0.5, "PhysicalSizeXUnit": "mm",
                          "PhysicalSizeY": 0.25, "PhysicalSizeYUnit": "mm",
                          "PhysicalSizeZ": 2.0, "PhysicalSizeZUnit": "µm"})
        w.write(rng.integers(0, 60000, (4, 9, 11), dtype=np.uint16), metadata={"axes": "CYX"})
    check_tifffile("ome-written-two-series", p)
    fr = cat(p)
    ok("ome-written-spacing", np.allclose(spacing(fr[0]), [0.5, 0.25, 0.002]), "spacing %s" % spacing(fr[0]))
    return mptest.status()


if __name__ == "__main__":
    try:
        rc = main()
    finally:
        subprocess.run(["rm", "-rf", T])
    sys.exit(rc)
