#!/usr/bin/python3
"""vol-augment: reproducible for a seed, image and label moved by the same
transform (checked against scipy.ndimage.affine_transform with the parameters
the tool records), labels nearest with no new values, flips exact, copies."""
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

BIN = os.environ.get("BIN", "bin")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "gen"))
import phantom  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import mptest  # noqa: E402
import mpstream  # noqa: E402
import augref  # noqa: E402


def res(cond, name, why=""):
    mptest.ok(name, cond, why)


def read_frames(data):
    """(keys, fields, array) per frame, read by tests/mpstream.py"""
    return [(f.keys, f.fields, f.array) for f in mpstream.read_frames(data)]


def run(args, stream):
    p = subprocess.run([os.path.join(BIN, "vol-augment"), *args, stream], capture_output=True)
    return p.returncode, p.stdout, p.stderr.decode()


def params(desc):
    d = dict(kv.split("=", 1) for kv in desc.split())
    return ([float(v) for v in d["rot"].split(",")], float(d["scale"]),
            [int(v) for v in d["flip"].split(",")])


def index_matrix(rot, scale, flip, sp):
    """source index = c + A (p - c), axes x,y,z (as the man page describes)"""
    R = np.eye(3)
    for a in range(3):
        t = np.radians(rot[a])
        Q = np.eye(3)
        i, j = (a + 1) % 3, (a + 2) % 3
        Q[i, i], Q[i, j], Q[j, i], Q[j, j] = np.cos(t), -np.sin(t), np.sin(t), np.cos(t)
        R = Q @ R
    M = np.diag([-1.0 if f else 1.0 for f in flip]) @ R.T / scale
    S = np.diag(sp)
    return np.linalg.inv(S) @ M @ S


def main():
    from scipy import ndimage as ndi
    with tempfile.TemporaryDirectory() as tmp:
        size, sp = (56, 48, 14), (0.8, 0.8, 2.5)
        img, lab = phantom.make_phantom(size, sp, 11)
        D, origin = phantom.geometry(size, sp, (5, 0, 10))
        stream = os.path.join(tmp, "c.nrrd")
        with open(stream, "wb") as f:
            f.write(phantom.nrrd_frame(img, D, origin, "image", "c1"))
            f.write(phantom.nrrd_frame(lab, D, origin, "label", "c1"))
            f.write(phantom.nrrd_frame(np.zeros(4, np.float32).reshape(1, 1, 4), np.eye(3), origin,
                                       "embedding", "c1"))

        rc, a1, err = run(["-n", "2", "--seed", "3", "-r", "8,8,20", "-e", "2,20", "--noise", "4"], stream)
        rc2, a2, _ = run(["-n", "2", "--seed", "3", "-r", "8,8,20", "-e", "2,20", "--noise", "4"], stream)
        rc3, a3, _ = run(["-n", "2", "--seed", "4", "-r", "8,8,20", "-e", "2,20", "--noise", "4"], stream)
        res(rc == 0 and rc2 == 0 and a1 == a2, "reproducible", err)
        res(rc3 == 0 and a1 != a3, "seed_changes_output")
        fr = read_frames(a1)
        roles = [(kv.get("medpipe.case"), kv.get("medpipe.role")) for kv, _, _ in fr]
        res(roles == [("c1", "embedding"), ("c1_aug1", "image"), ("c1_aug1", "label"),
                      ("c1_aug2", "image"), ("c1_aug2", "label")], "copies_and_passthrough", roles)
        # the copies' parameters depend on the case and copy only
        rcx, one, _ = run(["-n", "1", "--seed", "3", "-r", "8,8,20", "-e", "2,20", "--noise", "4"], stream)
        fr1 = read_frames(one)
        res(fr1[1][0]["medpipe.augment"] == fr[1][0]["medpipe.augment"] and
            np.array_equal(fr1[2][2], fr[2][2]), "copy1_independent_of_count")
        orig = set(np.unique(lab))
        ok = all(set(np.unique(arr)) <= orig for kv, _, arr in fr if kv.get("medpipe.role") == "label")
        res(ok, "labels_no_new_values")
        # geometry kept
        def geo(f):
            nums = re.findall(r"[-+0-9.eE]+", f["space directions"] + f["space origin"])
            return np.array([float(v) for v in nums])
        g0 = geo(read_frames(open(stream, "rb").read())[0][1])
        res(all(np.allclose(geo(f), g0, rtol=0, atol=1e-12) for kv, f, _ in fr[1:]), "geometry_kept")

        # flips only: exact
        rc, a, err = run(["--seed", "1", "-r", "0", "--scale", "1,1", "-f", "xyz", "--no-intensity", "-n", "6"], stream)
        fr = read_frames(a)
        good, seen = True, 0
        for kv, _, arr in fr[1:]:
            _, _, flip = params(kv["medpipe.augment"])
            ref = img if kv["medpipe.role"] == "image" else lab
            exp = ref
            for ax, fl in zip((2, 1, 0), flip):
                if fl:
                    exp = np.flip(exp, axis=ax)
            seen |= sum(flip)
            good &= np.array_equal(arr, exp)
        res(rc == 0 and good and seen, "flips_exact", err)

        # rotation + zoom: against scipy.ndimage.affine_transform with the recorded parameters
        rc, a, err = run(["--seed", "9", "-r", "6,6,25", "--scale", "0.85,1.15", "-f", "x", "--no-intensity", "-n", "3"], stream)
        fr = read_frames(a)
        c = (np.array(size) - 1) / 2.0
        lab_ok, img_ok, worst = True, True, []
        for kv, _, arr in fr[1:]:
            rot, scale, flip = params(kv["medpipe.augment"])
            A = index_matrix(rot, scale, flip, sp)
            # scipy works in (z,y,x)
            P = np.eye(3)[::-1]
            Az = P @ A @ P
            cz = c[::-1]
            off = cz - Az @ cz
            if kv["medpipe.role"] == "label":
                ref = ndi.affine_transform(lab, Az, offset=off, order=0, mode="constant", cval=0)
                agree = (ref == arr).mean()
                worst.append(agree)
                lab_ok &= agree > 0.995
            else:
                ref = ndi.affine_transform(img.astype(np.float64), Az, offset=off, order=1, mode="nearest")
                inside = ndi.affine_transform(np.ones(img.shape), Az, offset=off, order=0, mode="constant", cval=0) > 0
                inner = ndi.binary_erosion(inside, iterations=2)
                diff = np.abs(np.rint(ref[inner]) - arr[inner])
                img_ok &= np.percentile(diff, 99) <= 1.0
                worst.append(float(np.percentile(diff, 99)))
        res(rc == 0 and lab_ok, "rotation_labels_vs_scipy_order0", worst)
        res(rc == 0 and img_ok, "rotation_image_vs_scipy_order1", worst)

        # image and label moved together: image made of label values, elastic on
        limg = (lab.astype(np.int16) * 100)
        s2 = os.path.join(tmp, "l.nrrd")
        with open(s2, "wb") as f:
            f.write(phantom.nrrd_frame(limg, D, origin, "image", "c"))
            f.write(phantom.nrrd_frame(lab, D, origin, "label", "c"))
        rc, a, err = run(["--seed", "2", "-r", "5,5,30", "-e", "3,20", "--no-intensity", "--fill", "0"], s2)
        fr = read_frames(a)
        wi, wl = fr[0][2].astype(float), fr[1][2].astype(float)
        # where the image disagrees with 100*label, the voxel must sit at a label boundary
        # (trilinear mixes neighbours there); anywhere else the two moved together
        edge = ndi.grey_dilation(wl, size=3) != ndi.grey_erosion(wl, size=3)
        bad = (np.abs(wi - 100 * wl) >= 1) & ~edge
        res(rc == 0 and bad.mean() < 0.002 and edge.mean() < 0.5, "image_label_same_transform_elastic",
            "%.4f off-boundary disagreement" % bad.mean())

        # intensity only: gamma keeps the order of values and the range
        rc, a, err = run(["--seed", "5", "-r", "0", "--scale", "1,1", "--gamma", "0.6,0.7", "--contrast", "1,1"], stream)
        fr = read_frames(a)
        out_img = fr[1][2].astype(float).ravel()
        o = np.argsort(img.ravel(), kind="stable")
        res(rc == 0 and np.all(np.diff(out_img[o]) >= -1) and
            abs(out_img.min() - img.min()) <= 1 and abs(out_img.max() - img.max()) <= 1, "gamma_monotonic")

        # gamma, contrast and noise against tests/augref.py's model of the draws (float32
        # images: no rounding); a gamma inverted, switched off or drawn from the wrong
        # number, a contrast about 0 instead of the mean, noise of the wrong size fail
        imf = img.astype(np.float32)
        s3 = os.path.join(tmp, "f.nrrd")
        with open(s3, "wb") as f:
            f.write(phantom.nrrd_frame(imf, D, origin, "image", "g"))
        lo, hi = float(imf.min()), float(imf.max())
        v0 = imf.astype(np.float64)
        for name, opt, gam, con, sig in (("gamma", ["--gamma", "0.5,0.8", "--contrast", "1,1"], (0.5, 0.8), (1, 1), 0),
                                         ("gamma_above_1", ["--gamma", "1.3,2", "--contrast", "1,1"], (1.3, 2), (1, 1), 0),
                                         ("contrast", ["--gamma", "1,1", "--contrast", "0.4,0.7"], (1, 1), (0.4, 0.7), 0),
                                         ("noise", ["--gamma", "1,1", "--contrast", "1,1", "--noise", "7"], (1, 1), (1, 1), 7),
                                         ("gamma_contrast_noise", ["--gamma", "0.7,1.4", "--contrast", "0.8,1.2", "--noise", "5"],
                                          (0.7, 1.4), (0.8, 1.2), 5)):
            rc, a, err = run(["--seed", "5", "-r", "0", "--scale", "1,1", "-n", "2"] + opt, s3)
            fr = read_frames(a) if rc == 0 else []
            errs, why = [], err
            for c, (kv, _, arr) in enumerate(fr, 1):
                cs = augref.copy_seed(5, "g", c)
                p = augref.draw(cs, (0, 0, 0), (1, 1), (0, 0, 0), gam, con, size, sp)
                d = dict(x.split("=", 1) for x in kv["medpipe.augment"].split())
                if not (abs(float(d["gamma"]) - p["gamma"]) <= 6e-5 and abs(float(d["contrast"]) - p["contrast"]) <= 6e-5):
                    why = "recorded %s, model gamma=%.4f contrast=%.4f" % (kv["medpipe.augment"], p["gamma"], p["contrast"])
                    errs.append(np.inf)
                    continue
                want = v0
                if p["gamma"] != 1:
                    want = lo + (hi - lo) * np.clip((want - lo) / (hi - lo), 0, 1) ** p["gamma"]
                if p["contrast"] != 1:
                    m = want.astype(np.float32).astype(np.float64).mean()
                    want = m + p["contrast"] * (want - m)
                if sig:
                    want = want + sig * augref.noise_normals(cs, want.size).reshape(want.shape)
                    r = arr.astype(np.float64) - v0 if p["gamma"] == 1 and p["contrast"] == 1 else None
                    if r is not None and not (abs(r.std() - sig) <= 0.03 * sig and abs(r.mean()) <= 0.05 * sig):
                        why = "noise residual mean %g std %g, wanted 0, %g" % (r.mean(), r.std(), sig)
                        errs.append(np.inf)
                        continue
                errs.append(float(np.abs(arr.astype(np.float64) - want).max()) / (hi - lo))
            worst = float(np.max(errs)) if len(errs) == 2 else np.inf  # NaN stays NaN
            res(rc == 0 and worst <= 1e-5, "intensity_%s_vs_model (max err %.2g of range, limit 1e-5)" % (name, worst), why)

        # elastic field: three ramp images (value = source index along x, y, z) give the
        # displacement of every voxel; checked against the model's control grid and, free
        # of the model, its size (trilinear interpolation of independent normals of
        # standard deviation ALPHA has an RMS of about 0.54 ALPHA)
        zz, yy, xx = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in size[::-1]], indexing="ij")
        s4 = os.path.join(tmp, "r.nrrd")
        with open(s4, "wb") as f:
            for ramp in (xx, yy, zz):
                f.write(phantom.nrrd_frame(ramp, D, origin, "image", "r"))
        for alpha, sigma in ((3.0, 15.0), (1.5, 7.0)):
            rc, a, err = run(["--seed", "8", "-r", "0", "--scale", "1,1", "--no-intensity", "--fill", "-1000",
                              "-e", "%g,%g" % (alpha, sigma)], s4)
            fr = read_frames(a) if rc == 0 else []
            p = augref.draw(augref.copy_seed(8, "r", 1), (0, 0, 0), (1, 1), (0, 0, 0), (0.8, 1.25), (0.9, 1.1), size, sp,
                            (alpha, sigma))
            src = augref.elastic_source(p, size, sp)
            inside = np.ones(xx.shape, bool)
            for a_, n in enumerate(size):
                inside &= (src[a_] >= 1e-4) & (src[a_] <= n - 1 - 1e-4)
            err_m, rms = np.inf, 0.0
            if len(fr) == 3 and inside.mean() > 0.5:
                err_m = float(np.max([np.abs(fr[a_][2][inside] - src[a_][inside]).max() for a_ in range(3)]))
                disp = np.stack([(fr[a_][2][inside] - (xx, yy, zz)[a_][inside]) * sp[a_] for a_ in range(3)])
                rms = float(np.sqrt((disp ** 2).sum(axis=0).mean() / 3))
            res(rc == 0 and err_m <= 1e-3, "elastic_%g_%g_field_vs_model (max err %.2g voxel)" % (alpha, sigma, err_m), err)
            res(rc == 0 and 0.4 * alpha <= rms <= 0.7 * alpha,
                "elastic_%g_%g_rms (%.3g mm, wanted 0.4..0.7 alpha)" % (alpha, sigma, rms), err)

        for bad, name in ((["--rotate", "1,2"], "bad_rotate"), (["--scale", "2,1"], "bad_scale"),
                          (["--flip", "q"], "bad_flip"), (["-n", "0"], "bad_copies"),
                          (["--elastic", "2"], "bad_elastic")):
            rc, out, err = run(bad, stream)
            res(rc == 2 and err.count("\n") == 1 and not out, "error/" + name, "%d %s" % (rc, err))
        trunc = os.path.join(tmp, "t.nrrd")
        with open(trunc, "wb") as f:
            f.write(phantom.nrrd_frame(img, D, origin, "image", "c1")[:-10])
        rc, out, err = run([], trunc)
        res(rc == 1 and err.count("\n") == 1, "error/truncated", err)
    return mptest.status()


if __name__ == "__main__":
    sys.exit(main())
