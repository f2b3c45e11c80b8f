#!/usr/bin/python3
"""vol-preview: the PNG opens in OpenCV and scikit-image, has the size the
spacing implies, shows each label's fixed colour, greys follow the window,
output is reproducible, errors are one line."""
import os
import subprocess
import sys
import tempfile

import numpy as np

BIN = os.environ.get("BIN", "bin")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "gen"))
import phantom  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import mptest  # noqa: E402


def res(cond, name, why=""):
    mptest.ok(name, cond, why)


PALETTE = {1: (230, 25, 75), 2: (60, 180, 75), 3: (255, 225, 25), 4: (0, 130, 200),
           5: (245, 130, 48), 6: (145, 30, 180)}


def run(*a):
    return subprocess.run([os.path.join(BIN, "vol-preview"), *a], capture_output=True)


def read_png(path):
    try:
        import cv2
        im = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if im is None:
            return None
        return im[:, :, ::-1]   # BGR -> RGB
    except ImportError:
        from skimage import io
        return io.imread(path)


def has_colour(im, rgb):
    return bool(np.all(im == np.array(rgb, np.uint8), axis=2).any())


def main():
    with tempfile.TemporaryDirectory() as tmp:
        size, sp = (64, 48, 16), (0.8, 0.8, 2.5)
        img, lab = phantom.make_phantom(size, sp, 3)
        D, origin = phantom.geometry(size, sp, (5, 0, 10))
        stream = os.path.join(tmp, "c.nrrd")
        with open(stream, "wb") as f:
            f.write(phantom.nrrd_frame(img, D, origin, "image", "c1"))
            f.write(phantom.nrrd_frame(lab, D, origin, "label", "c1"))

        # outlines only: exact palette colours present for every label on the chosen slices
        out = os.path.join(tmp, "o.png")
        p = run("--alpha", "0", "--outline", "--slices", "all", "--max", "0", "--no-text", "--no-legend",
                "-p", "soft-tissue", "-o", out, stream)
        res(p.returncode == 0, "outline/run", p.stderr.decode())
        im = read_png(out)
        res(im is not None and im.ndim == 3 and im.shape[2] == 3, "outline/opens_in_opencv")
        if im is not None:
            # 16 slices, 4 columns, 4 rows; tile 64x48 (square pixels in-plane), gap 4
            res(im.shape[:2] == (4 * 48 + 5 * 4, 4 * 64 + 5 * 4), "outline/size", str(im.shape))
            present = sorted(int(v) for v in np.unique(lab) if v)
            missing = [l for l in present if not has_colour(im, PALETTE[l])]
            res(not missing, "outline/label_colours", "missing %s" % missing)
            # air (-1000) is black and the tile of slice 0 top-left pixel is air
            res(tuple(im[4, 4]) == (0, 0, 0), "outline/air_black", str(im[4, 4]))
            # window: a voxel of muscle (45 HU +- noise) under soft tissue (-160..240) is mid grey
            g = (45 + 160) / 400 * 255
            tile = im[4:4 + 48, 4:4 + 64]
            z0 = 0
            from skimage import io as skio
            sk = skio.imread(out)
            res(np.array_equal(sk[:, :, :3], im), "outline/skimage_agrees")
            grey = tile[(tile[:, :, 0] == tile[:, :, 1]) & (tile[:, :, 1] == tile[:, :, 2])][:, 0]
            mid = grey[(grey > 60) & (grey < 200)]
            res(mid.size > 50 and abs(np.median(mid) - g) < 12, "outline/window_grey",
                "median %s vs %.1f" % (np.median(mid) if mid.size else None, g))
            del z0

        # fill with alpha: colour blended (not pure), legend present
        out2 = os.path.join(tmp, "f.png")
        p = run("-p", "soft-tissue", "--alpha", "0.5", "-o", out2, stream)
        im2 = read_png(out2)
        res(p.returncode == 0 and im2 is not None, "fill/run", p.stderr.decode())
        if im2 is not None:
            # legend swatches are pure colours (16x16 squares)
            present = sorted(int(v) for v in np.unique(lab) if v)
            missing = [l for l in present if not has_colour(im2, PALETTE[l])]
            res(not missing, "fill/legend_colours", "missing %s" % missing)
            # blended liver: red channel above green/blue on many pixels
            r, g_, b = [im2[:, :, k].astype(int) for k in range(3)]
            res(((r - g_ > 60) & (r - b > 40)).sum() > 200, "fill/blend")

        # aspect from spacing: coronal tile height = 16 slices * 2.5/0.8
        out3 = os.path.join(tmp, "c.png")
        p = run("-a", "coronal", "--slices", "24", "--no-text", "--no-legend", "-o", out3, stream)
        im3 = read_png(out3)
        exp_h = int(np.floor(16 * 2.5 / 0.8 + 0.5))
        res(p.returncode == 0 and im3 is not None and im3.shape[:2] == (exp_h + 8, 64 + 8),
            "coronal/aspect", "%s vs %s" % (None if im3 is None else im3.shape, (exp_h + 8, 72)))
        out4 = os.path.join(tmp, "s.png")
        p = run("-a", "sagittal", "--slices", "30", "--no-text", "--no-legend", "--scale", "2", "-o", out4, stream)
        im4 = read_png(out4)
        res(p.returncode == 0 and im4 is not None and im4.shape[:2] == (2 * exp_h + 8, 2 * 48 + 8),
            "sagittal/aspect_scale", str(None if im4 is None else im4.shape))

        # every:N and labelled selections: count tiles via --cols 1 height
        out5 = os.path.join(tmp, "e.png")
        p = run("--slices", "every:5", "--cols", "1", "--no-text", "--no-legend", "-o", out5, stream)
        im5 = read_png(out5)
        n = len(range(0, 16, 5))
        res(p.returncode == 0 and im5 is not None and im5.shape[0] == n * 48 + (n + 1) * 4, "slices/every")
        labelled = [z for z in range(16) if lab[z].any()]
        p = run("--cols", "1", "--max", "0", "--no-text", "--no-legend", "-o", out5, stream)
        im5 = read_png(out5)
        n = len(labelled)
        res(p.returncode == 0 and im5 is not None and im5.shape[0] == n * 48 + (n + 1) * 4, "slices/labelled")

        # reproducible bytes
        out6 = os.path.join(tmp, "f2.png")
        run("-p", "soft-tissue", "--alpha", "0.5", "-o", out6, stream)
        res(open(out2, "rb").read() == open(out6, "rb").read(), "reproducible")

        # several cases need %c
        two = os.path.join(tmp, "two.nrrd")
        with open(two, "wb") as f:
            for c in ("a", "b"):
                f.write(phantom.nrrd_frame(img, D, origin, "image", c))
                f.write(phantom.nrrd_frame(lab, D, origin, "label", c))
        p = run("-o", os.path.join(tmp, "p_%c.png"), two)
        res(p.returncode == 0 and os.path.exists(os.path.join(tmp, "p_a.png"))
            and os.path.exists(os.path.join(tmp, "p_b.png")), "cases/pattern", p.stderr.decode())
        p = run("-o", os.path.join(tmp, "q_{case}_{n}.png"), two)
        res(p.returncode == 0 and os.path.exists(os.path.join(tmp, "q_a_1.png"))
            and os.path.exists(os.path.join(tmp, "q_b_2.png")), "cases/pattern_braces", p.stderr.decode())
        p = run("-o", os.path.join(tmp, "one.png"), two)
        res(p.returncode == 1 and p.stderr.decode().count("\n") == 1, "cases/needs_pattern", p.stderr.decode())

        # errors
        p = run("-o", out, "--axis", "oblique", stream)
        res(p.returncode == 2 and p.stderr.decode().count("\n") == 1, "error/bad_axis")
        p = run(stream)
        res(p.returncode == 2, "error/no_output")
        bad = os.path.join(tmp, "bad.nrrd")
        with open(bad, "wb") as f:
            f.write(phantom.nrrd_frame(img, D, origin, "image", "c1"))
            f.write(phantom.nrrd_frame(lab[:, :, :-1].copy(), D, origin, "label", "c1"))
        p = run("-o", os.path.join(tmp, "bad.png"), bad)
        res(p.returncode == 1 and p.stderr.decode().count("\n") == 1
            and not os.path.exists(os.path.join(tmp, "bad.png")), "error/size_mismatch", p.stderr.decode())
        with open(bad, "wb") as f:
            f.write(phantom.nrrd_frame(img, D, origin, "image", "c1")[:-100])
        p = run("-o", os.path.join(tmp, "bad.png"), bad)
        res(p.returncode == 1 and p.stderr.decode().count("\n") == 1
            and not os.path.exists(os.path.join(tmp, "bad.png")), "error/truncated", p.stderr.decode())
    return mptest.status()


if __name__ == "__main__":
    sys.exit(main())
