#!/usr/bin/python3
"""dcm2vol on generated DICOM trees (tests/gen/dcmtree.py, pydicom-written):
mixed series in one folder with shuffled names, a scout, a missing slice,
non-DICOM files, a truncated file, privacy of identifying tags, --list,
--series, thread determinism, and pixel rules (BitsStored junk and sign,
MONOCHROME1, PixelPaddingValue, non-integer slope)."""
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

BIN = os.environ.get("BIN", "bin")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "gen"))
from mpstream import read_frames, affine  # noqa: E402
import dcmtree  # noqa: E402

fails = 0
UMASK = os.umask(0o022)
os.umask(UMASK)


def out(kind, name, why=""):
    global fails
    if kind == "FAIL":
        fails += 1
    print("%s %s%s" % (kind, name, (": " + why) if why and kind != "PASS" else ""), flush=True)


def run(args):
    p = subprocess.run([os.path.join(BIN, "dcm2vol")] + args, capture_output=True)
    return p.returncode, p.stdout, p.stderr.decode(errors="replace")


def expected_affine(iop, origin, spacing):
    iop = np.array(iop, float)
    a = np.eye(4)
    a[:3, 0] = iop[:3] * spacing[0]
    a[:3, 1] = iop[3:] * spacing[1]
    a[:3, 2] = np.cross(iop[:3], iop[3:]) * spacing[2]
    a[:3, 3] = origin
    return a


def main():
    tmp = tempfile.mkdtemp(prefix="dcm2vol-gen.")
    try:
        body(tmp)
    finally:
        shutil.rmtree(tmp)


def body(tmp):
    rng = np.random.default_rng(7)
    tree = os.path.join(tmp, "tree")
    # series A: oblique CT 24x20x12, shuffled names in nested folders
    iop_a = (0.9848077530, 0.1736481777, 0.0, -0.1736481777, 0.9848077530, 0.0)
    org_a = (-12.5, 30.25, -100.0)
    sp_a = (0.8, 0.7, 2.5)
    va = dcmtree.phantom((12, 20, 24), 1)
    names = ["x%s/%s" % (rng.integers(0, 3), "".join(rng.choice(list("abcdefgh"), 10))) for _ in range(12)]
    _, uid_a = dcmtree.write_series(tree, va, series_uid="1.2.826.0.1.3680043.8.498.1001", series_number=3,
                                    description="A oblique", iop=iop_a, origin=org_a, spacing=sp_a, names=names)
    # series B: sagittal MR (uint16, no rescale) 16x18x9, slices listed in reverse
    iop_b = (0, 1, 0, 0, 0, -1)
    vb = rng.integers(0, 4000, (9, 18, 16)).astype(np.uint16)
    _, uid_b = dcmtree.write_series(tree, vb.astype(np.float64), stored=vb, series_uid="1.2.826.0.1.3680043.8.498.1002",
                                    series_number=5, modality="MR", description="B sag", iop=iop_b,
                                    origin=(40.0, -20.0, 60.0), spacing=(1.0, 1.2, -3.0), slope=1.0, intercept=0.0,
                                    signed=False, names=["mr_%02d" % ((k * 5) % 9) for k in range(9)])
    # a scout in series A's UID (coronal, one slice) and one in a series of its own
    dcmtree.write_series(tree, dcmtree.phantom((1, 20, 24), 2), series_uid="1.2.826.0.1.3680043.8.498.1001",
                         series_number=3, description="A oblique", iop=(1, 0, 0, 0, 0, -1), names=["scoutA"])
    dcmtree.write_series(tree, dcmtree.phantom((1, 20, 24), 3), series_uid="1.2.826.0.1.3680043.8.498.1003",
                         series_number=1, description="localizer", image_type="ORIGINAL\\PRIMARY\\LOCALIZER",
                         iop=(1, 0, 0, 0, 0, -1), names=["loc"])
    # series C: a missing slice
    vc = dcmtree.phantom((8, 10, 12), 4)
    dcmtree.write_series(tree, vc, series_uid="1.2.826.0.1.3680043.8.498.1004", series_number=7,
                         description="C gap", spacing=(1.0, 1.0, 2.0), skip=(4,))
    # not DICOM
    with open(os.path.join(tree, "README.txt"), "w") as f:
        f.write("not a DICOM file\n")
    with open(os.path.join(tree, "x0", "junk.bin"), "wb") as f:
        f.write(bytes(range(256)) * 3)

    rc, o, e = run(["--verbose", tree])
    if rc != 0:
        out("FAIL", "tree converts", "exit %d: %s" % (rc, e[:300]))
        return
    fr = read_frames(o)
    out("PASS" if len(fr) == 3 else "FAIL", "tree: 3 series (scouts skipped)", "got %d frames" % len(fr))
    if len(fr) != 3:
        return
    byno = {f.keys.get("medpipe.dicom.series_number"): f for f in fr}
    notes_ok = "not DICOM" in e and "scout" in e and "localizer" in e.lower()
    out("PASS" if notes_ok else "FAIL", "tree: --verbose notes the skipped files", e[:400])
    a = byno.get("3")
    ok = a is not None and a.array.shape == va.shape and np.array_equal(a.array, va) and \
        np.allclose(affine(a), expected_affine(iop_a, org_a, sp_a), atol=1e-5)
    out("PASS" if ok else "FAIL", "tree: oblique CT series, shuffled names: voxels and geometry exact")
    b = byno.get("5")
    # B was written with a negative step: the sorted order runs along +normal
    exp_b = expected_affine(iop_b, np.array((40.0, -20.0, 60.0)) + 8 * -3.0 * np.cross(iop_b[:3], iop_b[3:]),
                            (1.0, 1.2, 3.0))
    ok = b is not None and b.fields["type"] in ("int16", "uint16") and np.array_equal(b.array, vb[::-1]) and \
        np.allclose(affine(b), exp_b, atol=1e-5)
    out("PASS" if ok else "FAIL", "tree: sagittal MR, reversed positions: voxels and geometry exact")
    c = byno.get("7")
    ok = c is not None and c.array.shape == (8, 10, 12) and "resampled" in c.keys.get("medpipe.dicom.uneven", "")
    if ok:
        want = vc.astype(float).copy()
        h = (vc[3].astype(float) + vc[5]) / 2  # linear, halfway; rounded half away from zero
        want[4] = np.sign(h) * np.floor(np.abs(h) + 0.5)
        ok = np.array_equal(c.array, want)
    out("PASS" if ok else "FAIL", "tree: missing slice detected and resampled linearly",
        "" if c is None else str(c.keys.get("medpipe.dicom.uneven")))

    # privacy
    leaks = [k for k, v in dcmtree.PHI.items() if v.encode() in o or v.replace("^", " ").encode() in o]
    leaks += [u for u in (uid_a, uid_b) if u.encode() in o]
    out("PASS" if not leaks else "FAIL", "privacy: no identifying value in the output bytes", ",".join(leaks))
    rc, o2, e2 = run(["--keep-phi", tree])
    got = [k for k, v in dcmtree.PHI.items() if v.encode() in o2]
    out("PASS" if rc == 0 and "PatientName" in got and "PatientID" in got else "FAIL",
        "privacy: --keep-phi writes them", str(got))
    cases = [f.keys.get("medpipe.case") for f in fr]
    out("PASS" if len(set(cases)) == 3 and all(len(x) == 16 for x in cases) else "FAIL",
        "medpipe.case: 16 hex digits, one per series", str(cases))

    # --list and --series
    rc, lo, le = run(["--list", tree])
    lines = lo.decode().strip().split("\n")
    ok = rc == 0 and len(lines) >= 4 and "A oblique" in lo.decode() and "24x20x12" in lo.decode()
    out("PASS" if ok else "FAIL", "--list: a table of 3 series", lo.decode()[:300])
    rc, so, se = run(["--series", "2", tree])
    sf = read_frames(so) if rc == 0 else []
    out("PASS" if len(sf) == 1 and sf[0].keys.get("medpipe.dicom.series_number") == "5" else "FAIL",
        "--series 2 picks the second row of --list")
    rc, so, se = run(["--series", "9", tree])
    out("PASS" if rc == 2 and len(se.strip().split("\n")) == 1 else "FAIL", "--series out of range: usage error", se)

    # threads: same bytes
    r1 = run(["-j", "1", tree])
    r4 = run(["-j", "4", tree])
    out("PASS" if r1[1] == r4[1] == o else "FAIL", "same bytes with 1 and 4 threads")

    # --out: files through the format layer, the same as the pipe into vol-save
    outdir = os.path.join(tmp, "outs")
    rc, oo, oe = run(["-p", "-o", os.path.join(outdir, "{n}_{case}.nii.gz"), tree])
    got = sorted(os.listdir(outdir)) if os.path.isdir(outdir) else []
    piped = os.path.join(tmp, "piped")
    p1 = subprocess.Popen([os.path.join(BIN, "dcm2vol"), tree], stdout=subprocess.PIPE)
    p2 = subprocess.run([os.path.join(BIN, "vol-save"), "-p", os.path.join(piped, "{n}_{case}.nii.gz")],
                        stdin=p1.stdout, capture_output=True)
    p1.wait()
    same = got and got == sorted(os.listdir(piped)) and all(
        open(os.path.join(outdir, x), "rb").read() == open(os.path.join(piped, x), "rb").read() for x in got)
    out("PASS" if rc == 0 and not oo and len(got) == 3 and same else "FAIL",
        "--out {n}_{case}.nii.gz: 3 files, byte for byte those of dcm2vol | vol-save", "%d %s %s" % (rc, got, oe[:200]))
    try:
        import nibabel
        ok = True
        for x in got:
            img = nibabel.load(os.path.join(outdir, x))
            f = [g for g in fr if g.keys.get("medpipe.case") == x.split("_", 1)[1][:-7]][0]
            arr = np.asarray(img.dataobj).transpose(2, 1, 0)
            lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ img.affine
            ok = ok and np.array_equal(arr, f.array) and np.allclose(lps, affine(f), atol=1e-4)
        out("PASS" if ok and got else "FAIL", "--out: nibabel reads the voxels and geometry of the stream's frames")
    except ImportError:
        out("SKIP", "--out: nibabel reads the files", "nibabel is not installed")
    one = os.path.join(tmp, "one.nii")
    rc, oo, oe = run(["-o", one, tree])
    out("PASS" if rc == 2 and not os.path.exists(one) and len(oe.strip().split("\n")) == 1 and "pattern" in oe
        else "FAIL", "--out one name for 3 series: usage error, nothing written", oe)
    rc, oo, oe = run(["--series", "2", "-o", one, tree])
    ok = rc == 0 and os.path.exists(one) and oct(os.stat(one).st_mode & 0o777) == oct(0o666 & ~UMASK)
    out("PASS" if ok else "FAIL", "--series 2 -o one.nii: one file, mode from the umask", oe)
    rc, oo, oe = run(["-o", os.path.join(tmp, "x.png"), tree])
    out("PASS" if rc == 2 and len(oe.strip().split("\n")) == 1 else "FAIL", "--out .png: usage error", oe)
    rc, oo, oe = run(["-o", os.path.join(tmp, "nofolder", "{n}.nrrd"), tree])
    out("PASS" if rc == 1 and len(oe.strip().split("\n")) == 1 and "nofolder" in oe and
        not os.path.exists(os.path.join(tmp, "nofolder")) else "FAIL", "--out into a missing folder without -p: one line, exit 1", oe)
    rc, oo, oe = run(["-p", tree])
    out("PASS" if rc == 2 else "FAIL", "--mkdir without --out: usage error", oe)

    # a truncated file fails its series only
    bad = os.path.join(tmp, "bad")
    shutil.copytree(tree, bad)
    victim = os.path.join(bad, names[5])
    data = open(victim, "rb").read()
    open(victim, "wb").write(data[:len(data) - 300])
    rc, bo, be = run([bad])
    lines = [x for x in be.split("\n") if x]
    ok = rc == 1 and len(lines) == 1 and names[5].split("/")[-1] in lines[0] and len(read_frames(bo)) == 2
    out("PASS" if ok else "FAIL", "truncated file: one line naming it, other series converted, exit 1", be[:300])
    rc, eo, ee = run([os.path.join(tree, "README.txt")])
    out("PASS" if rc == 1 and len(ee.strip().split("\n")) == 1 and not eo else "FAIL",
        "only non-DICOM input: one line, exit 1", ee)

    # pixel rules
    px = os.path.join(tmp, "px")
    raw = rng.integers(-2048, 2048, (3, 6, 5)).astype(np.int16)
    junk = (raw.view(np.uint16) & 0x0FFF) | 0xA000    # 12 bits stored, junk above
    dcmtree.write_series(os.path.join(px, "s12"), raw.astype(float), stored=junk.astype(np.uint16), bits_stored=12,
                         slope=1.0, intercept=0.0, modality="MR")
    rc, o, e = run([os.path.join(px, "s12")])
    f = read_frames(o)[0] if rc == 0 else None
    out("PASS" if f is not None and np.array_equal(f.array, raw) else "FAIL",
        "signed 12-bit with junk high bits: masked and sign-extended", e)
    st = rng.integers(0, 4096, (3, 6, 5)).astype(np.int16)
    dcmtree.write_series(os.path.join(px, "m1"), st.astype(float), stored=st, bits_stored=12, slope=1.0, intercept=0.0,
                         modality="MR", photometric="MONOCHROME1", signed=False)
    rc, o, e = run([os.path.join(px, "m1")])
    f = read_frames(o)[0] if rc == 0 else None
    out("PASS" if f is not None and np.array_equal(f.array, 4095 - st) else "FAIL", "MONOCHROME1 inverted", e)
    st = rng.integers(0, 3000, (3, 6, 5)).astype(np.int16)
    st[:, 0, :] = -2000
    dcmtree.write_series(os.path.join(px, "pad"), st.astype(float), stored=st, slope=1.0, intercept=-1024.0,
                         padding=-2000)
    rc, o, e = run([os.path.join(px, "pad")])
    f = read_frames(o)[0] if rc == 0 else None
    lowest = st[:, 1:, :].min() - 1024
    ok = f is not None and np.all(f.array[:, 0, :] == lowest) and np.array_equal(f.array[:, 1:, :], st[:, 1:, :] - 1024)
    out("PASS" if ok else "FAIL", "PixelPaddingValue mapped to the lowest value", e)
    st = rng.integers(0, 4000, (3, 6, 5)).astype(np.int16)
    dcmtree.write_series(os.path.join(px, "fl"), st.astype(float), stored=st, slope=0.25, intercept=-7.5)
    rc, o, e = run([os.path.join(px, "fl")])
    f = read_frames(o)[0] if rc == 0 else None
    ok = f is not None and f.fields["type"] == "float" and np.array_equal(f.array, (st * 0.25 - 7.5).astype(np.float32))
    out("PASS" if ok else "FAIL", "non-integer slope: float32, exact", e)

    # enhanced CT: frames out of position order, per-frame rescale intercepts
    st = rng.integers(0, 3000, (7, 8, 9)).astype(np.int16)
    inter = np.array([-1024, -1000, -1024, -900, -1024, -1100, -1024], float)
    order = [3, 0, 6, 2, 5, 1, 4]
    iop = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
    dcmtree.write_enhanced(os.path.join(px, "enh.dcm"), st, order=order, iop=iop, origin=(5.0, -3.0, 7.0),
                           spacing=(0.5, 0.6, 1.5), intercepts=inter)
    rc, o, e = run([os.path.join(px, "enh.dcm")])
    f = read_frames(o)[0] if rc == 0 else None
    want = st + inter[:, None, None]
    ok = f is not None and np.array_equal(f.array, want) and \
        np.allclose(affine(f), expected_affine(iop, (5.0, -3.0, 7.0), (0.5, 0.6, 1.5)), atol=1e-5)
    out("PASS" if ok else "FAIL", "enhanced CT: frames ordered by PlanePositionSequence, per-frame rescale", e)


main()
sys.exit(1 if fails else 0)
