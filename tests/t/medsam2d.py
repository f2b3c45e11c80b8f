#!/usr/bin/env python3
"""MedSAM's 2D preprocessing: vol-cat IMG --label MASK | hu-window --medsam-2d |
vol2npz --layout medsam [--slices DIR] against an independent numpy /
scikit-image reference of MedSAM's 2D rules (pre_grey_rgb):

- 16-bit images: (x - min) / (max - min) * 255 over the whole image, truncated
  to uint8; then
- grey images: 0.5 / 99.5 percentiles of the pixels > 0, clip, min-max of the
  clipped image to 0..255, truncated, pixels that were 0 stay 0; repeated to 3
  channels;
- RGB images: unchanged;
- npz: imgs (H, W, 3) uint8 and gts (H, W) uint8, identical;
- npy: skimage.transform.resize(imgs, (1024, 1024), order=3,
  preserve_range=True, mode="constant", anti_aliasing=True), min-max to [0, 1],
  within 1e-6; gts resized with order 0.

Data: every image of $DATA/images2d/sam-med2d with its first mask,
images2d/medsam/img_demo.png (with a mask made here), micro/stardist
img2d.tif with mask2d.tif.
"""
import glob
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import mptest  # noqa: E402
from mptest import ok, skip  # noqa: E402

DATA = os.environ.get("DATA", "../shared/data")
BIN = os.environ.get("BIN", "bin")
T = tempfile.mkdtemp(prefix="mp-medsam2d-")


def load(p):
    if p.endswith((".tif", ".tiff")):
        import tifffile
        return tifffile.imread(p)
    from PIL import Image
    im = Image.open(p)
    if im.mode in ("RGBA", "P"):
        im = im.convert("RGB")
    return np.asarray(im)


def reference(img, gt):
    """MedSAM's 2D rules, written from their description"""
    if img.dtype != np.uint8:
        img = img.astype(np.float64)
        img = np.uint8((img - img.min()) / (img.max() - img.min()) * 255.0)
    if img.ndim == 2:
        pos = img[img > 0]
        lo, hi = np.percentile(pos, 0.5), np.percentile(pos, 99.5)
        pre = np.clip(img, lo, hi)
        pre = (pre - np.min(pre)) / (np.max(pre) - np.min(pre)) * 255.0
        pre[img == 0] = 0
        img = np.repeat(np.uint8(pre)[:, :, None], 3, axis=-1)
    if gt.ndim == 3:
        gt = gt[:, :, 0]
    return img, np.uint8(gt)


def run_case(name, img, mask, npy=False):
    out = os.path.join(T, name + ".npz")
    sl = os.path.join(T, name + "-slices")
    cmd = "%s/vol-cat '%s' --label '%s' | %s/hu-window --medsam-2d | %s/vol2npz --layout medsam -o '%s' --border constant%s" % (
        BIN, img, mask, BIN, BIN, out, (" --slices '%s' --name %s" % (sl, name)) if npy else "")
    r = subprocess.run(["sh", "-c", cmd], capture_output=True)
    if r.returncode != 0:
        ok("medsam2d-" + name, False, r.stderr.decode().strip())
        return
    z = np.load(out)
    ri, rg = reference(load(img), load(mask))
    good = set(z.files) == {"imgs", "gts"} and z["imgs"].dtype == np.uint8 and z["gts"].dtype == np.uint8 and \
        z["imgs"].shape == ri.shape and np.array_equal(z["imgs"], ri) and np.array_equal(z["gts"], rg)
    why = "arrays %s shapes %s vs %s; imgs max diff %s" % (
        z.files, z["imgs"].shape, ri.shape,
        np.abs(z["imgs"].astype(int) - ri.astype(int)).max() if z["imgs"].shape == ri.shape else "-")
    ok("medsam2d-npz-" + name, good, why)
    if npy:
        from skimage import transform
        rs = transform.resize(ri, (1024, 1024), order=3, preserve_range=True, mode="constant", anti_aliasing=True)
        rs = (rs - rs.min()) / np.clip(rs.max() - rs.min(), a_min=1e-8, a_max=None)
        gs = transform.resize(rg, (1024, 1024), order=0, preserve_range=True, mode="constant",
                              anti_aliasing=False).astype(np.uint8)
        a = np.load(os.path.join(sl, "imgs", name + "-000.npy"))
        g = np.load(os.path.join(sl, "gts", name + "-000.npy"))
        err = np.abs(a - rs).max() if a.shape == rs.shape else None
        ok("medsam2d-npy-" + name, a.shape == (1024, 1024, 3) and err is not None and err <= 1e-6,
           "shape %s, max error %s" % (a.shape, err))
        gd = np.mean(g != gs) if g.shape == gs.shape else 1
        ok("medsam2d-npy-gts-" + name, g.dtype == np.uint8 and gd < 0.002, "%.4f of pixels differ" % gd)


def check_pipeline(d):
    """pipelines/2d-npz.mk on a folder of the sam-med2d images and a mask each"""
    ds = os.path.join(T, "ds")
    os.makedirs(os.path.join(ds, "images"))
    os.makedirs(os.path.join(ds, "masks"))
    pairs = {}
    for p in sorted(glob.glob(os.path.join(d, "images", "*.png"))):
        stem = os.path.basename(p)[:-4]
        m = sorted(glob.glob(os.path.join(d, "masks", stem + "_*.png")))
        if m:
            os.symlink(os.path.abspath(p), os.path.join(ds, "images", stem + ".png"))
            os.symlink(os.path.abspath(m[0]), os.path.join(ds, "masks", stem + ".png"))
            pairs[stem] = (p, m[0])
    out = os.path.join(T, "out")
    r = subprocess.run(["make", "-s", "-f", "pipelines/2d-npz.mk", "-j2", "IN=" + ds, "OUT=" + out,
                        "MEDPIPE_BIN=" + os.path.abspath(BIN)], capture_output=True)
    good, why = r.returncode == 0, r.stderr.decode()[-300:]
    for stem, (p, m) in pairs.items():
        if not good:
            break
        z = np.load(os.path.join(out, "npz", stem + ".npz"))
        ri, rg = reference(load(p), load(m))
        if not (np.array_equal(z["imgs"], ri) and np.array_equal(z["gts"], rg)):
            good, why = False, "%s: arrays differ from the reference" % stem
    ok("medsam2d-pipeline-2d-npz-mk", good and len(pairs) > 0, why)


def main():
    if not os.access(os.path.join(BIN, "vol2npz"), os.X_OK):
        skip("medsam2d", "bin/vol2npz not built")
        return 0
    if not os.path.isdir(os.path.join(DATA, "images2d")):
        skip("medsam2d", "%s/images2d absent" % DATA)
        return 0
    try:
        from PIL import Image
    except ImportError:
        skip("medsam2d", "PIL not installed")
        return 0
    d = os.path.join(DATA, "images2d", "sam-med2d")
    for k, p in enumerate(sorted(glob.glob(os.path.join(d, "images", "*.png")))):
        stem = os.path.basename(p)[:-4]
        masks = sorted(glob.glob(os.path.join(d, "masks", stem + "_*.png")))
        if masks:
            run_case(stem, p, masks[0], npy=(k == 0))
    demo = os.path.join(DATA, "images2d", "medsam", "img_demo.png")
    if os.path.exists(demo):
        a = load(demo)
        m = os.path.join(T, "demo_mask.png")
        Image.fromarray(((a if a.ndim == 2 else a[..., 0]) > 128).astype(np.uint8)).save(m)
        run_case("img_demo", demo, m, npy=True)
    check_pipeline(d)
    s = os.path.join(DATA, "micro", "stardist")
    try:
        import tifffile  # noqa: F401
        if os.path.exists(os.path.join(s, "img2d.tif")):
            run_case("stardist_img2d", os.path.join(s, "img2d.tif"), os.path.join(s, "mask2d.tif"), npy=True)
    except ImportError:
        skip("medsam2d-stardist", "tifffile not installed")
    return mptest.status()


if __name__ == "__main__":
    try:
        rc = main()
    finally:
        subprocess.run(["rm", "-rf", T])
    sys.exit(rc)
