#!/usr/bin/env python3
"""driver of tests/bench/opencl.sh: makes the inputs, times the peer in this
process, runs build/tests/test_cl_bench for the C and OpenCL timings."""
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

BENCH = "build/tests/test_cl_bench"
DATA = os.environ.get("DATA", "../shared/data")


def best(f, reps=3):
    t = 1e30
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        t = min(t, time.perf_counter() - t0)
    return t


def ours(args):
    p = subprocess.run([BENCH] + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise RuntimeError(p.stderr.decode())
    w = p.stdout.split()
    return float(w[1]), float(w[3]), w[5] == b"1"


def line(what, peer_name, tp, tc, tl, same):
    print("%-34s C %8.4f s  OpenCL %8.4f s  %-12s %8.4f s  C/peer %5.2fx  OpenCL/peer %6.2fx  OpenCL/C %6.2fx  %s"
          % (what, tc, tl, peer_name, tp, tc / tp, tl / tp, tl / tc, "identical" if same else "DIFFERENT"))


def ccl(rng, tmp):
    # connected components: the frog (real, 26 labels) and a random binary volume
    try:
        import cc3d
    except ImportError:
        print("ccl: skipped (no cc3d in %s)" % sys.executable)
        return 0
    vols = []
    zr = os.path.join(DATA, "meta/frog/frogtissue.zraw")
    if os.path.exists(zr):
        import zlib
        frog = np.frombuffer(zlib.decompress(open(zr, "rb").read()), np.uint8).reshape(136, 470, 500).copy()
        vols.append(("frog 500x470x136 labels", frog))
    rb = (rng.random((128, 256, 256)) < 0.4).astype(np.uint8)
    vols.append(("random 256x256x128 binary 40%", rb))
    for what, v in vols:
        f = os.path.join(tmp, "v.raw")
        v.tofile(f)
        z, y, x = v.shape
        for conn in (26, 6):
            tp = best(lambda: cc3d.connected_components(v, connectivity=conn))
            tc, tl, same = ours(["ccl", f, x, y, z, conn])
            line("ccl %d %s" % (conn, what), "cc3d", tp, tc, tl, same)
    return 0


def tools(rng, tmp):
    """end to end: the programs with --device cpu and --device opencl:0 (stream I/O included)"""
    ct = rng.normal(0, 300, (48, 512, 512)).astype(np.int16)
    h = ("NRRD0004\ntype: int16\ndimension: 3\nspace: left-posterior-superior\nsizes: 512 512 48\n"
         "space directions: (0.8,0,0) (0,0.8,0) (0,0,2)\nkinds: domain domain domain\nendian: little\n"
         "encoding: raw\nspace origin: (0,0,0)\nmedpipe.role:=%s\n\n")
    img = (h % "image").encode() + ct.tobytes()
    lab = (h.replace("int16", "uint8") % "label").encode() + (ct > 200).astype(np.uint8).tobytes()
    for what, args, data in (("hu-window soft-tissue 512x512x48", ["hu-window", "--preset", "soft-tissue"], img),
                             ("vol-resize 1024x1024 512x512x48", ["vol-resize", "1024x1024"], img),
                             ("vol-resize bspline3 256 512x512x48", ["vol-resize", "--longest", "256", "--interp", "bspline3"], img),
                             ("ccl-clean --min 100 512x512x48", ["ccl-clean", "--min", "100", "--min2d", "10"], lab)):
        t = {}
        out = {}
        for d in ("cpu", "opencl:0"):
            def go():
                out[d] = subprocess.run(["bin/" + args[0]] + args[1:] + ["--device", d], input=data,
                                        stdout=subprocess.PIPE, check=True).stdout
            t[d] = best(go)
        print("%-34s C %8.4f s  OpenCL %8.4f s  (whole program)  OpenCL/C %6.2fx  %s"
              % (what, t["cpu"], t["opencl:0"], t["opencl:0"] / t["cpu"],
                 "identical" if out["cpu"] == out["opencl:0"] else "DIFFERENT"))


def main():
    dev = subprocess.run(["bin/medpipe-devices", "--brief"], stdout=subprocess.PIPE).stdout.decode().strip().splitlines()
    print("device: " + (dev[1] if len(dev) > 1 else "none"))
    print("(ratios are time/time: < 1 means faster than the peer)")
    rng = np.random.default_rng(1)
    tmp = tempfile.mkdtemp(prefix="medpipe-bench.")
    try:
        if os.environ.get("OPENCL_BENCH_ONLY") == "ccl":
            return ccl(rng, tmp)
        if os.environ.get("OPENCL_BENCH_ONLY") == "tools":
            return tools(rng, tmp)
        # windowing: a 512x512x96 CT-like int16 volume, soft tissue to uint8
        ct = rng.normal(0, 400, (96, 512, 512)).astype(np.int16)
        f = os.path.join(tmp, "ct.raw")
        ct.tofile(f)

        def np_window():
            v = np.clip(ct.astype(np.float64), -160, 240)
            return np.clip(np.round((v + 160) / 400 * 255), 0, 255).astype(np.uint8)
        tp = best(np_window)
        tc, tl, same = ours(["window", f, 512, 512, 96])
        line("window 512x512x96 int16->uint8", "numpy", tp, tc, tl, same)

        # resize: 32 float slices 512x512 -> 1024x1024 (SAM) and -> 256x256
        import cv2
        sl = rng.normal(0, 1, (32, 512, 512)).astype(np.float32)
        f = os.path.join(tmp, "sl.raw")
        sl.tofile(f)
        for m, flag in (("linear", cv2.INTER_LINEAR), ("cubic", cv2.INTER_CUBIC), ("area", cv2.INTER_AREA),
                        ("nearest", None)):
            for d in (1024, 256):
                if flag is None:
                    def peer():
                        iy = ((2 * np.arange(d) + 1) * 512) // (2 * d)
                        return sl[:, iy[:, None], iy[None, :]]
                    name = "numpy"
                else:
                    def peer():
                        return [cv2.resize(s, (d, d), interpolation=flag) for s in sl]
                    name = "OpenCV"
                tp = best(peer)
                tc, tl, same = ours(["resize", f, 512, 512, 32, d, d, m])
                line("resize %s 32x512^2 -> %d^2" % (m, d), name, tp, tc, tl, same)
        try:
            from skimage.transform import resize as skresize
            few = sl[:4]
            tp = best(lambda: [skresize(s, (256, 256), order=3, mode="reflect", anti_aliasing=True) for s in few], 1)
            f4 = os.path.join(tmp, "few.raw")
            few.tofile(f4)
            tc, tl, same = ours(["resize", f4, 512, 512, 4, 256, 256, "bspline3"])
            line("resize bspline3 4x512^2 -> 256^2", "skimage", tp, tc, tl, same)
        except ImportError:
            print("resize bspline3: skipped (no scikit-image)")

        ccl(rng, tmp)
        tools(rng, tmp)
    finally:
        for n in os.listdir(tmp):
            os.unlink(os.path.join(tmp, n))
        os.rmdir(tmp)
    return 0


sys.exit(main())
