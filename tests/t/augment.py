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
