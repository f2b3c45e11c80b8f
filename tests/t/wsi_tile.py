#!/usr/bin/env python3
"""wsi-tile against openslide-python and OpenCV:

- every tile of $DATA/wsi/cmu-1-small-region.svs (level 0, 1024, zero padding
  at the right/bottom edge) and of wsi/openslide/boxes.tiff (every level, non-
  integer downsamples, overlapping stride) equals
  read_region((x, y), level, (N, N)).convert("RGB") at the position its keys
  name (on boxes levels 2-3 OpenSlide 3.4 leaves a few pixels unwritten, whose
  values change from read to read: those are left out, and counted); spacing MPP x downsample; origin (x + (ds - 1) / 2) MPP;
- small.svs: spacing 0.000499 mm;
- broken.svs, unreadable.svs, unopenable.tiff and a missing file: exit 1, one
  line on stderr, nothing on stdout;
- the tissue mask (--emit-mask; sat and otsu) equals OpenCV's: the S channel
  of cv2.cvtColor(RGB2HSV), cv2.medianBlur(7), > 8 or cv2.THRESH_OTSU; each
  tile's medpipe.wsi.tissue equals the share of mask pixels under it.
"""
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from mpstream import read_frames  # noqa: E402
import mptest  # noqa: E402
from mptest import ok, skip  # noqa: E402

DATA = os.environ.get("DATA", "../shared/data")
BIN = os.environ.get("BIN", "bin")
W = os.path.join(BIN, "wsi-tile")


def tiles(*args):
    r = subprocess.run([W] + list(args), capture_output=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.decode().strip())
    return read_frames(r.stdout)


def check_tiles(name, path, level, n, stride=None):
    import openslide
    s = openslide.OpenSlide(path)
    args = ["--level", str(level), "--tile", str(n)] + (["--stride", str(stride)] if stride else []) + [path]
    try:
        fr = tiles(*args)
    except RuntimeError as e:
        ok(name, False, str(e))
        return
    lw, lh = s.level_dimensions[level]
    st = stride or n
    want = ((lw + st - 1) // st) * ((lh + st - 1) // st)
    if len(fr) != want:
        ok(name, False, "%d tiles, want %d" % (len(fr), want))
        return
    ds = s.level_downsamples[level]
    mpp = float(s.properties.get("openslide.mpp-x", 1000))
    unstable = 0
    for f in fr:
        x, y = int(f.keys["medpipe.wsi.x"]), int(f.keys["medpipe.wsi.y"])
        ref = np.asarray(s.read_region((x, y), level, (n, n)).convert("RGB"))
        if f.array.shape != ref.shape:
            ok(name, False, "tile at (%d, %d): shape %s" % (x, y, f.array.shape))
            return
        if not np.array_equal(f.array, ref):
            # OpenSlide 3.4 reads a TIFF tile wider than its level through
            # libtiff's TIFFReadRGBATile, which then "adapts the raster width"
            # and leaves part of OpenSlide's buffer unwritten: those pixels
            # hold whatever the memory held and change from read to read,
            # in openslide-python as here. They are the pixels where a read
            # in a fresh process differs from this one; all others must agree.
            fresh = np.frombuffer(subprocess.run(
                [sys.executable, "-c", "import sys, numpy, openslide; sys.stdout.buffer.write(numpy.asarray("
                 "openslide.OpenSlide(sys.argv[1]).read_region((int(sys.argv[2]), int(sys.argv[3])), int(sys.argv[4]),"
                 " (int(sys.argv[5]),) * 2).convert('RGB')).tobytes())", path, str(x), str(y), str(level), str(n)],
                capture_output=True).stdout, dtype=np.uint8).reshape(ref.shape)
            bad = np.any(ref != fresh, axis=2)
            unstable += int(bad.sum())
            if not np.array_equal(f.array[~bad], ref[~bad]):
                ok(name, False, "tile at (%d, %d) differs from read_region in %d stable pixels" % (
                    x, y, np.sum(np.any(f.array != ref, axis=2) & ~bad)))
                return
        sp = [np.linalg.norm(d) for d in f.dirs if d is not None]
        org = [(x + (ds - 1) / 2) * mpp / 1000, (y + (ds - 1) / 2) * mpp / 1000]
        if not np.allclose(sp, [mpp * ds / 1000] * 2, rtol=1e-9) or not np.allclose(f.origin[:2], org, rtol=1e-9):
            ok(name, False, "tile at (%d, %d): spacing %s origin %s, want %s %s" % (x, y, sp, f.origin, mpp * ds / 1000, org))
            return
    if unstable:
        print("# %s: %d pixels left out: OpenSlide's own output changes between reads there" % (name, unstable))
    ok(name, True)


def check_tissue(name, path, method, median=7):
    import cv2
    import openslide
    s = openslide.OpenSlide(path)
    lv = s.level_count - 1
    rgb = np.ascontiguousarray(np.asarray(s.read_region((0, 0), lv, s.level_dimensions[lv]).convert("RGB")))
    sat = cv2.medianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[:, :, 1], median)
    if method == "otsu":
        _, ref = cv2.threshold(sat, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    else:
        _, ref = cv2.threshold(sat, 8, 255, cv2.THRESH_BINARY)
    try:
        fr = tiles("--tissue", method, "--median", str(median), "--emit-mask", "--min-tissue", "0", "--tile", "512", path)
    except RuntimeError as e:
        ok(name, False, str(e))
        return
    m = fr[0].array
    ok(name + "-mask", m.shape == ref.shape and np.array_equal(m, ref),
       "mask differs from OpenCV's in %s pixels" % (np.sum(m != ref) if m.shape == ref.shape else "all"))
    ds = s.level_downsamples[lv]
    bad = 0
    for f in fr[1:]:
        x, y = int(f.keys["medpipe.wsi.x"]), int(f.keys["medpipe.wsi.y"])
        x0, y0 = int(np.floor(x / ds)), int(np.floor(y / ds))
        x1, y1 = int(np.ceil((x + 512) / ds)), int(np.ceil((y + 512) / ds))
        frac = np.sum(ref[y0:y1, x0:x1] > 0) / ((x1 - x0) * (y1 - y0))
        if abs(float(f.keys["medpipe.wsi.tissue"]) - frac) > 1e-12:
            bad += 1
    ok(name + "-fraction", bad == 0, "%d tiles with another tissue fraction" % bad)


def main():
    if not os.access(W, os.X_OK):
        skip("wsi-tile", "bin/wsi-tile not built")
        return 0
    try:
        import openslide  # noqa: F401
    except ImportError:
        skip("wsi-tile", "openslide-python not installed")
        return 0
    d = os.path.join(DATA, "wsi")
    if not os.path.isdir(d):
        skip("wsi-tile", "%s absent" % d)
        return 0
    check_tiles("wsi-cmu1-level0", os.path.join(d, "cmu-1-small-region.svs"), 0, 1024)
    boxes = os.path.join(d, "openslide", "boxes.tiff")
    for lv in range(4):
        if lv >= 2 and os.environ.get("SANITIZE") == "1":
            # the pixels OpenSlide 3.4 leaves unwritten there come from its own
            # heap, which AddressSanitizer fills differently from a plain process
            skip("wsi-boxes-level%d" % lv, "under SANITIZE=1 OpenSlide's unwritten pixels differ from a plain process's")
            continue
        check_tiles("wsi-boxes-level%d" % lv, boxes, lv, 64, 48)
    fr = tiles(os.path.join(d, "openslide", "small.svs"))
    sp = [np.linalg.norm(v) for v in fr[0].dirs if v is not None]
    ok("wsi-small-svs-spacing", np.allclose(sp, [0.000499, 0.000499], rtol=1e-12), "spacing %s" % sp)
    r = subprocess.run([W, "--mpp", "2", boxes], capture_output=True)
    ok("wsi-mpp-without-mpp-refused", r.returncode == 1 and r.stderr.decode().count("\n") == 1 and not r.stdout,
       "rc %d: %s" % (r.returncode, r.stderr.decode()))
    fr = tiles("--mpp", "0.6", "--tile", "2048", os.path.join(d, "cmu-1-small-region.svs"))
    ok("wsi-mpp-level", len(fr) == 4 and fr[0].keys["medpipe.wsi.level"] == "0", "%d tiles" % len(fr))
    for bad in ("broken.svs", "openslide/unreadable.svs", "openslide/unopenable.tiff", "missing.svs"):
        r = subprocess.run([W, os.path.join(d, bad)], capture_output=True)
        err = r.stderr.decode().strip().split("\n")
        ok("wsi-refuses-" + os.path.basename(bad), r.returncode == 1 and len(err) == 1 and not r.stdout and
           os.path.basename(bad) in err[0], "rc %d, stdout %d bytes: %s" % (r.returncode, len(r.stdout), err))
    try:
        import cv2  # noqa: F401
        check_tissue("wsi-tissue-sat", os.path.join(d, "cmu-1-small-region.svs"), "sat")
        check_tissue("wsi-tissue-otsu", os.path.join(d, "cmu-1-small-region.svs"), "otsu")
        check_tissue("wsi-tissue-otsu-median5", os.path.join(d, "cmu-1-small-region.svs"), "otsu", 5)
    except ImportError:
        skip("wsi-tissue", "OpenCV not installed")
    return mptest.status()


if __name__ == "__main__":
    sys.exit(main())
