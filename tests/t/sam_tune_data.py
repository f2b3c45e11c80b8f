#!/usr/bin/env python3
"""sam-tune's data inputs, validation, learning-rate schedules and gradient
accumulation, on the tiny random-weight model (tests/gen/sam_ckpt.py):

- MedSAM's npz files (3-D imgs/gts as vol2npz --layout medsam writes them,
  and 2-D imgs (H,W,3)) and per-slice npy folders (vol2npz --slices) give
  bit for bit the checkpoint and log of the equivalent frame stream (the
  same arrays as image + label frames), in --mode lora and --mode decoder
  (images embedded once by the frozen encoder: bit for bit the same as
  training on sam-embed's embeddings of the stream);
- --val FRACTION holds out whole cases (no case both trained on and
  validated); the validation Dice of each case equals the Dice that
  sam-embed + sam-decode --from-label + seg-eval give with the tuned
  checkpoint (within 2e-3: the training forward pass and sam-decode are
  different code, so a pixel at the threshold may flip; measured: equal
  to the 9 digits printed), and it rises as the decoder learns;
- the lr column against torch.optim.lr_scheduler (PolynomialLR power 0.9,
  CosineAnnealingLR, LambdaLR for the warm-up, LinearLR): relative error
  <= 1e-12;
- --accum N equals --batch N x batch bit for bit (checkpoint and log);
- resume with a warm-up and cosine schedule is bit for bit;
- errors."""
import math
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "gen"))
sys.path.insert(0, os.path.join(HERE, ".."))
BIN = os.environ.get("BIN", "bin")
fails = 0


def ok(name, cond, why=""):
    global fails
    if cond:
        print("PASS", name)
    else:
        fails += 1
        print("FAIL %s: %s" % (name, why))


try:
    import torch
    import sam_ckpt
    sam_ckpt.load_sam()
except Exception as e:  # noqa: BLE001
    print("SKIP sam_tune_data: torch or segment_anything unavailable (%s)" % str(e).split("\n")[0])
    sys.exit(0)
import nrrdframe  # noqa: E402

torch.set_num_threads(2)
T = tempfile.mkdtemp(prefix="medpipe-tunedata.")
rng = np.random.default_rng(11)
CK = os.path.join(T, "tiny.pth")
sam, cfg = sam_ckpt.build("tiny", seed=3)
sam_ckpt.save(sam, CK)
S = cfg["img"]


def run(cmd):
    r = subprocess.run(cmd, shell=True, capture_output=True)
    return r.returncode, r.stdout, r.stderr.decode()


def p(name):
    return os.path.join(T, name)


def read(name):
    with open(p(name), "rb") as f:
        return f.read()


def csv(name):
    rows = open(p(name)).read().split("\n")
    return rows[0], [r.split(",") for r in rows[1:] if r]


def nolog_ms(name):
    return [r[:6] for r in csv(name)[1]]


# four cases of 5 slices (96 x 80: resized to the model's 256), uint8 images,
# two structures on most slices, one slice without a label
NX, NY, NZ = 96, 80, 5
yy, xx = np.mgrid[0:NY, 0:NX]
cases = {}
for ci in range(4):
    vol = np.zeros((NZ, NY, NX), np.uint8)
    lab = np.zeros((NZ, NY, NX), np.uint8)
    for z in range(NZ):
        circ = (xx - 30 - 3 * z - 4 * ci) ** 2 + (yy - 40 + 2 * z) ** 2 < (12 + z + ci) ** 2
        rect = (abs(xx - 70 + ci) < 10) & (abs(yy - 25 - 2 * z) < 7)
        v = 40 + 60 * circ + 120 * rect + rng.normal(0, 12, (NY, NX))
        vol[z] = np.clip(v, 0, 255).astype(np.uint8)
        if z != 2:
            lab[z][circ] = 1
            lab[z][rect] = 3
    cases["c%d" % (ci + 1)] = (vol, lab)


def stream(names, fname, arrs=None):
    with open(p(fname), "wb") as f:
        for c in names:
            vol, lab = (arrs or cases)[c]
            f.write(nrrdframe.frame(vol, keys={"medpipe.case": c}))
            f.write(nrrdframe.frame(lab, keys={"medpipe.case": c, "medpipe.role": "label"}))


stream(["c1", "c2"], "c12.nrrd")
stream(["c1", "c2", "c3", "c4"], "all.nrrd")
os.makedirs(p("npz"))
os.makedirs(p("npy"))
rc, _, err = run("%s/vol2npz --layout medsam -o '%s/{case}.npz' --slices %s --size %d %s"
                 % (BIN, p("npz"), p("npy"), S, p("c12.nrrd")))
ok("vol2npz-setup", rc == 0 and os.path.exists(p("npz/c1.npz")) and os.path.exists(p("npy/imgs/c2-004.npy")),
   err.strip())

TUNE = "%s/sam-tune -w %s " % (BIN, CK)


# ---------------------------------------------------------------- npz and npy inputs
def same_run(name, args, a_in, b_in):
    """the same training on two inputs: checkpoints and logs (ms aside) equal"""
    ra = run(TUNE + "-o %s --log %s %s %s" % (p(name + "-a.pth"), p(name + "-a.csv"), args, a_in))
    rb = run(TUNE + "-o %s --log %s %s %s" % (p(name + "-b.pth"), p(name + "-b.csv"), args, b_in))
    if ra[0] or rb[0]:
        ok(name, False, (ra[2] + rb[2]).strip())
        return
    la, lb = nolog_ms(name + "-a.csv"), nolog_ms(name + "-b.csv")
    ok(name, read(name + "-a.pth") == read(name + "-b.pth") and la == lb and len(la) > 0,
       "checkpoints equal: %s; logs %s vs %s" % (read(name + "-a.pth") == read(name + "-b.pth"), la, lb))


same_run("npz-lora-equals-stream", "--mode lora --steps 3 --lr 1e-3", "%s %s" % (p("npz/c1.npz"), p("npz/c2.npz")),
         p("c12.nrrd"))

# the per-slice npy files: the equivalent stream holds their labelled slices
# (channel 0 as float32 grey, gts as uint8) in slice order
npy_arrs = {}
for c in ("c1", "c2"):
    zs = [z for z in range(NZ) if np.load(p("npy/gts/%s-%03d.npy" % (c, z))).any()]
    im = np.stack([np.load(p("npy/imgs/%s-%03d.npy" % (c, z)))[..., 0].astype(np.float32) for z in zs])
    gt = np.stack([np.load(p("npy/gts/%s-%03d.npy" % (c, z))).astype(np.uint8) for z in zs])
    npy_arrs[c] = (im, gt)
stream(["c1", "c2"], "npy-eq.nrrd", npy_arrs)
same_run("npy-folder-lora-equals-stream", "--mode lora --steps 3 --lr 1e-3", p("npy"), p("npy-eq.nrrd"))

# decoder mode on images: embedded once by the frozen encoder, the same as on sam-embed's embeddings
rc, _, err = run("%s/sam-embed -w %s --slices labelled %s > %s" % (BIN, CK, p("c12.nrrd"), p("emb12.nrrd")))
ok("embed-setup", rc == 0, err.strip())
same_run("npz-decoder-equals-embeddings", "--steps 4 --lr 1e-3", "%s %s" % (p("npz/c1.npz"), p("npz/c2.npz")),
         p("emb12.nrrd"))

# a 2-D npz (imgs (H,W,3), grey repeated) against a 2-D image frame
im2 = cases["c3"][0][1]
gt2 = cases["c3"][1][1]
np.savez(p("d2.npz"), imgs=np.repeat(im2[..., None], 3, 2), gts=gt2)
with open(p("d2.nrrd"), "wb") as f:
    f.write(nrrdframe.frame(im2, keys={"medpipe.case": "d2"}))
    f.write(nrrdframe.frame(gt2, keys={"medpipe.case": "d2", "medpipe.role": "label"}))
same_run("npz-2d-equals-stream", "--batch 1 --steps 2 --lr 1e-3", p("d2.npz"), p("d2.nrrd"))

# ---------------------------------------------------------------- --val
EMB = p("emb-all.nrrd")
rc, _, err = run("%s/sam-embed -w %s --slices labelled %s > %s" % (BIN, CK, p("all.nrrd"), EMB))
rc, _, err = run(TUNE + "-o %s --epochs 12 --lr 3e-3 --val 0.5 --val-log %s --verbose %s"
                 % (p("v.pth"), p("val.csv"), EMB))
if rc:
    ok("val-split-by-case", False, err.strip())
else:
    tr = [ln.split("training cases: ")[1].split(",") for ln in err.split("\n") if "training cases: " in ln]
    va = [ln.split("validation cases: ")[1].split(",") for ln in err.split("\n") if "validation cases: " in ln]
    tr, va = (tr[0] if tr else []), (va[0] if va else [])
    head, rows = csv("val.csv")
    vcases = sorted(set(r[2] for r in rows if r[2] != "mean"))
    nslices = [ln for ln in err.split("\n") if "labelled slices" in ln]
    ok("val-split-by-case", len(va) == 2 and len(tr) == 2 and not set(tr) & set(va) and
       sorted(tr + va) == ["c1", "c2", "c3", "c4"] and vcases == sorted(va) and
       nslices and nslices[0].split("sam-tune: ")[-1].startswith("8 labelled slices"),
       "training %s, validation %s, val log cases %s, %s" % (tr, va, vcases, nslices))
    epochs = [r[0] for r in rows if r[2] == "mean"]
    means = [r for r in rows if r[2] == "mean"]
    ok("val-log", head == "epoch,step,case,dice" and epochs == [str(e) for e in range(1, 13)] and
       len(rows) == 36 and [m[1] for m in means] == [str(4 * e) for e in range(1, 13)] and
       all(abs(float(m[3]) - np.mean([float(r[3]) for r in rows if r[0] == m[0] and r[2] != "mean"])) < 1e-6
           for m in means) and sum("validation Dice" in ln for ln in err.split("\n")) == 12,
       "%s %s" % (head, rows))
    # the held-out cases get better as the decoder learns
    ok("val-dice-rises", float(means[-1][3]) > 0.2 and float(means[-1][3]) > float(means[0][3]) + 0.1,
       "mean Dice per epoch %s" % [m[3] for m in means])
    print("  validation Dice per epoch: %s" % " ".join("%.3f" % float(m[3]) for m in means), file=sys.stderr)
    # the last evaluation against sam-decode + seg-eval with the tuned checkpoint
    stream(va, "val.nrrd")
    rc, out, err = run("%s/sam-embed -w %s --slices labelled %s | %s/sam-decode -w %s --from-label | %s/seg-eval "
                       "--no-nsd --digits 9" % (BIN, p("v.pth"), p("val.nrrd"), BIN, p("v.pth"), BIN))
    if rc:
        ok("val-dice-equals-seg-eval", False, err.strip())
    else:
        ref = {ln.split(",")[0]: float(ln.split(",")[5]) for ln in out.decode().split("\n")[1:]
               if ",all," in ln}
        got = {r[2]: float(r[3]) for r in rows if r[0] == "12" and r[2] != "mean"}
        errs = [abs(got[c] - ref.get(c, -9)) for c in got]
        ok("val-dice-equals-seg-eval", len(got) == 2 and max(errs) <= 2e-3 and min(got.values()) > 0,
           "sam-tune %s, seg-eval %s" % (got, ref))
        print("  validation Dice: sam-tune %s, sam-decode + seg-eval %s" % (got, ref), file=sys.stderr)
# --val FILE, in lora mode (the encoder with LoRA); the same mean as the fraction picks
rc, _, err = run(TUNE + "--mode lora -o %s --steps 2 --val %s --val-log %s %s"
                 % (p("vl.pth"), p("npz/c2.npz"), p("vall.csv"), p("npz/c1.npz")))
rows = csv("vall.csv")[1] if rc == 0 else []
ok("val-files-lora", rc == 0 and [r[2] for r in rows] == ["c2", "mean"] and 0 <= float(rows[0][3]) <= 1,
   err.strip() + str(rows))

# ---------------------------------------------------------------- schedules
N, BASE = 10, 1e-3


def torch_lrs(make):
    w = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([w], lr=BASE)
    sch = make(opt)
    out = []
    for _ in range(N):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sch.step()
    return out


LS = torch.optim.lr_scheduler
W = 3
for name, args, make in (
        ("poly", "--schedule poly", lambda o: LS.PolynomialLR(o, total_iters=N, power=0.9)),
        ("cosine", "--schedule cosine", lambda o: LS.CosineAnnealingLR(o, T_max=N, eta_min=0)),
        ("warmup-constant", "--warmup %d" % W,
         lambda o: LS.LinearLR(o, start_factor=1 / W, end_factor=1.0, total_iters=W - 1)),
        ("warmup-cosine", "--warmup %d --schedule cosine" % W,
         lambda o: LS.LambdaLR(o, lambda s: (s + 1) / W if s < W else
                               (1 + math.cos(math.pi * (s - W) / (N - W))) / 2)),
        ("warmup-poly", "--warmup %d --schedule poly" % W,
         lambda o: LS.LambdaLR(o, lambda s: (s + 1) / W if s < W else (1 - (s - W) / (N - W)) ** 0.9))):
    rc, _, err = run(TUNE + "-o %s --steps %d --lr %g %s --log %s %s" % (p("s.pth"), N, BASE, args, p("s.csv"),
                                                                         p("emb12.nrrd")))
    if rc:
        ok("schedule-" + name, False, err.strip())
        continue
    got = [float(r[5]) for r in csv("s.csv")[1]]
    ref = torch_lrs(make)
    e = max(abs(a - b) / b for a, b in zip(got, ref)) if len(got) == N else 1
    ok("schedule-" + name, e <= 1e-12, "max rel err %.3g: %s vs %s" % (e, got, ref))

# ---------------------------------------------------------------- accumulation
ra = run(TUNE + "-o %s --log %s --steps 3 --lr 1e-3 --batch 1 --accum 2 %s" % (p("ac1.pth"), p("ac1.csv"),
                                                                                   p("emb12.nrrd")))
rb = run(TUNE + "-o %s --log %s --steps 3 --lr 1e-3 --batch 2 %s" % (p("ac2.pth"), p("ac2.csv"), p("emb12.nrrd")))
ok("accum-2x1-equals-batch-2", ra[0] == rb[0] == 0 and read("ac1.pth") == read("ac2.pth") and
   nolog_ms("ac1.csv") == nolog_ms("ac2.csv"), (ra[2] + rb[2]).strip())
ra = run(TUNE + "--mode lora -o %s --steps 2 --batch 2 --accum 2 %s" % (p("al1.pth"), p("c12.nrrd")))
rb = run(TUNE + "--mode lora -o %s --steps 2 --batch 4 %s" % (p("al2.pth"), p("c12.nrrd")))
ok("accum-lora-2x2-equals-batch-4", ra[0] == rb[0] == 0 and read("al1.pth") == read("al2.pth"),
   (ra[2] + rb[2]).strip())

# ---------------------------------------------------------------- resume with a schedule
sch = "--warmup 1 --schedule cosine --lr 1e-3"
r1 = run(TUNE + "-o %s --steps 4 %s --log %s %s" % (p("r1.pth"), sch, p("r1.csv"), p("emb12.nrrd")))
r2 = run(TUNE + "-o %s --steps 2 --schedule-steps 4 %s --state %s %s" % (p("r2.pth"), sch, p("r.state"),
                                                                          p("emb12.nrrd")))
r3 = run(TUNE + "-o %s --steps 4 %s --resume %s --log %s %s" % (p("r3.pth"), sch, p("r.state"), p("r3.csv"),
                                                                  p("emb12.nrrd")))
ok("resume-schedule-bit-for-bit", r1[0] == r2[0] == r3[0] == 0 and read("r1.pth") == read("r3.pth") and
   nolog_ms("r1.csv")[2:] == nolog_ms("r3.csv"), (r1[2] + r2[2] + r3[2]).strip())
rc, _, err = run(TUNE + "-o %s --steps 4 --schedule poly --resume %s %s" % (p("x.pth"), p("r.state"),
                                                                            p("emb12.nrrd")))
ok("resume-other-schedule", rc == 1 and "schedule" in err and not os.path.exists(p("x.pth")), err.strip())

# ---------------------------------------------------------------- errors
np.savez(p("nogts.npz"), imgs=cases["c1"][0])
np.savez(p("colour.npz"), imgs=rng.integers(0, 255, (40, 50, 3), dtype=np.uint8),
         gts=np.ones((40, 50), np.uint8))
os.makedirs(p("badnpy/imgs"))
os.makedirs(p("badnpy/gts"))
np.save(p("badnpy/imgs/slice.npy"), np.zeros((8, 8, 3)))
E = p("emb12.nrrd")
for name, cmd, want, msg in (
        ("schedule", "--schedule step %s" % E, 2, "--schedule"),
        ("val-fraction", "--val 1.5 %s" % E, 2, "--val 1.5"),
        ("val-log-alone", "--val-log %s %s" % (p("y.csv"), E), 2, "--val-log"),
        ("accum", "--accum 0 %s" % E, 2, "--accum"),
        ("val-one-case", "--val 0.5 %s" % p("npz/c1.npz"), 1, "too few"),
        ("val-lora-embeddings", "--mode lora --val %s %s" % (E, p("npz/c1.npz")), 1, "no image frames"),
        ("npz-no-gts", p("nogts.npz"), 1, "no 'gts' array"),
        ("npz-colour", p("colour.npz"), 1, "colour"),
        ("npy-name", p("badnpy"), 1, "CASE-NNN.npy"),
        ("same-case-twice", "%s %s" % (p("npz/c1.npz"), p("c12.nrrd")), 1, "two label frames of case 'c1'")):
    rc, _, err = run(TUNE + "-o %s %s" % (p("x.pth"), cmd))
    ok("error-" + name, rc == want and msg in err and len(err.strip().split("\n")) == 1 and
       not os.path.exists(p("x.pth")), "rc %d: %s" % (rc, err.strip()))

print("# %d failed" % fails, file=sys.stderr)
shutil.rmtree(T, ignore_errors=True)
sys.exit(1 if fails else 0)
