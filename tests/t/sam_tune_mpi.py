#!/usr/bin/env python3
"""Data-parallel sam-tune over MPI (Open MPI's mpirun, and a 2-task job of a
real single-node Slurm cluster, tests/slurm-cluster.sh), on the random-weight
tiny SAM of tests/gen/sam_ckpt.py.

--batch is the batch of a step over all ranks: `mpirun -np 2 sam-tune
--batch 4` (2 samples per rank, positions r, r+2 of each batch) must equal
one process with --batch 4. Summation order differs (each rank sums its
share, MPI_Allreduce then adds the ranks), so the comparison is within
float rounding:
- the summed gradient buffer of every step (MEDPIPE_TUNE_GRADS) within 1e-6
  relative L2 (measured about 1.5e-7), for --mode decoder (5 steps) and
  --mode lora (2 steps);
- the loss log: every value within 1e-5 relative;
- the checkpoint's mask decoder (and for lora the merged encoder qkv
  weights) after 5 steps within 1e-5 relative L2;
- resume under 2 ranks (2 steps + --state, then --resume to 4) is bit for
  bit a 4-step 2-rank run; a 2-rank state resumes in 1 process;
- only rank 0 talks: --verbose lines once, nothing on standard output; an
  error on rank 0 alone (its --out folder missing) ends both ranks;
  --batch below the rank count and standard input are refused, and so is a
  Slurm step of 2 tasks without MPI's wire-up;
- under Slurm: `sbatch -n2 --wait --wrap 'srun --mpi=pmix sam-tune ...'`
  and `mpirun` in an sbatch script give the checkpoint of the mpirun run
  byte for byte;
- the step time of 1 rank vs 2 ranks, the same global batch, on the
  'grid64' model (SAM's decoder at full size), printed (no pass/fail;
  left out under MEDPIPE_FAST=1).
Skips with the reason when mpirun is missing or sam-tune was built without
MPI; under CI=true (tests/deps.sh installs Open MPI) that is a failure."""
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "gen"))
sys.path.insert(0, os.path.join(HERE, ".."))
import mptest  # noqa: E402

ROOT = os.getcwd()
BIN = os.path.abspath(os.environ.get("BIN", "bin"))
TUNE = os.path.join(BIN, "sam-tune")

try:
    import torch
    import sam_ckpt
    sam_ckpt.load_sam()
    import nrrdframe
except Exception as e:  # noqa: BLE001
    mptest.skip("sam_tune_mpi", "torch or segment_anything unavailable (%s)" % str(e).split("\n")[0])
    sys.exit(0)

if not shutil.which("mpirun"):
    mptest.skip_ref("sam_tune_mpi", "mpirun missing (Debian openmpi-bin, libopenmpi-dev; tests/deps.sh)")
    sys.exit(mptest.status())
ver = subprocess.run([TUNE, "--version"], capture_output=True, text=True).stdout
if "MPI: built in" not in ver:
    mptest.skip_ref("sam_tune_mpi", "sam-tune built without MPI (mpicc was missing at build time: make clean all)")
    sys.exit(mptest.status())
mptest.ok("version-says-mpi", "Open MPI" in ver, ver)

T = tempfile.mkdtemp(prefix="medpipe-mpi.")
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")
for k in ("MEDPIPE_TUNE_GRADS", "SLURM_STEP_NUM_TASKS", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK"):
    ENV.pop(k, None)
if os.environ.get("SANITIZE") == "1":
    # OpenMPI loses memory in MPI_Init/MPI_Finalize, inside plugins built without frame pointers:
    # only full stacks reach libmpi, which tests/lsan.supp names
    ENV["ASAN_OPTIONS"] = os.environ.get("ASAN_OPTIONS", "") + ":fast_unwind_on_malloc=0"
MPIRUN = "mpirun --oversubscribe -np 2 "


def run(cmd, grads=None, timeout=300, env=None):
    e = dict(env or ENV)
    if grads:
        e["MEDPIPE_TUNE_GRADS"] = os.path.join(T, grads)
    try:
        r = subprocess.run(cmd, shell=True, capture_output=True, cwd=T, env=e, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, "", "timed out after %d s" % timeout
    return r.returncode, r.stdout.decode(), r.stderr.decode()


def l2rel(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def params(path, keys):
    sd = torch.load(os.path.join(T, path), weights_only=True)
    return np.concatenate([sd[k].numpy().ravel().astype(np.float64) for k in keys])


def logrows(path):
    rows = open(os.path.join(T, path)).read().split("\n")[1:]
    return np.array([[float(x) for x in r.split(",")[2:5]] for r in rows if r])


# the tiny model and a volume with two labelled structures per slice (as sam_tune.py)
CK = os.path.join(T, "tiny.pth")
sam, cfg = sam_ckpt.build("tiny", seed=3)
sam_ckpt.save(sam, CK)
S = cfg["img"]
rng = np.random.default_rng(7)
yy, xx = np.mgrid[0:S, 0:S]
vol = np.zeros((6, S, S), np.float32)
lab = np.zeros((6, S, S), np.uint8)
for z in range(6):
    circ = (xx - 80 - 8 * z) ** 2 + (yy - 120 + 5 * z) ** 2 < (30 + 2 * z) ** 2
    rect = (abs(xx - 190) < 25) & (abs(yy - 60 - 4 * z) < 15)
    vol[z] = 50 * circ + 120 * rect + 20 * rng.standard_normal((S, S))
    lab[z][circ] = 1
    lab[z][rect] = 3
with open(os.path.join(T, "vl.nrrd"), "wb") as f:
    f.write(nrrdframe.frame(vol, keys={"medpipe.case": "c1"}))
    f.write(nrrdframe.frame(lab, keys={"medpipe.case": "c1", "medpipe.role": "label"}))
rc, _, err = run("%s/sam-embed -w tiny.pth --slices labelled vl.nrrd > emb.nrrd" % BIN)
if rc:
    mptest.ok("embed", False, err.strip())
    sys.exit(mptest.status())
DEC = [k for k in torch.load(CK, weights_only=True) if k.startswith("mask_decoder.")]
TUNEA = "%s -w tiny.pth --steps 5 --batch 4 " % TUNE


def compare(name, one, two, steps, keys, glog=True):
    """one-process and two-rank runs: (checkpoint, log, gradient dump) names"""
    g1 = np.fromfile(os.path.join(T, one[2]), np.float32).astype(np.float64).reshape(steps, -1)
    g2 = np.fromfile(os.path.join(T, two[2]), np.float32).astype(np.float64).reshape(steps, -1)
    ge = [l2rel(g2[i], g1[i]) for i in range(steps)]
    mptest.ok(name + "-gradients", max(ge) <= 1e-6, "relative L2 per step %s" % ["%.2g" % e for e in ge])
    l1, l2 = logrows(one[1]), logrows(two[1])
    le = float(np.abs(l1 - l2).max() / np.abs(l1).max()) if l1.shape == l2.shape and len(l1) == steps else 1.0
    mptest.ok(name + "-loss-log", le <= 1e-5, "max relative difference %.2g (%d, %d rows)" % (le, len(l1), len(l2)))
    pe = l2rel(params(two[0], keys), params(one[0], keys))
    mptest.ok(name + "-parameters", pe <= 1e-5, "relative L2 %.2g" % pe)
    print("  %s: 2 ranks vs 1 process: gradients rel L2 <= %.2g, parameters after %d steps %.2g"
          % (name, max(ge), steps, pe), file=sys.stderr)


# --mode decoder: 1 process --batch 4 vs 2 ranks --batch 4 (2 each)
rc1, _, e1 = run(TUNEA + "-o one.pth --log one.csv emb.nrrd", grads="one.g")
rc2, o2, e2 = run(MPIRUN + TUNEA + "--verbose -o two.pth --log two.csv emb.nrrd", grads="two.g")
if rc1 or rc2:
    mptest.ok("decoder-2-ranks", False, "exit %d/%d: %s" % (rc1, rc2, (e1 + e2).strip()[-600:]))
else:
    compare("decoder-2-ranks", ("one.pth", "one.csv", "one.g"), ("two.pth", "two.csv", "two.g"), 5, DEC)
    # rank 0 alone talks and writes
    steps = [ln for ln in e2.split("\n") if ln.startswith("sam-tune: step ")]
    mptest.ok("rank0-only-output", len(steps) == 5 and "2 MPI ranks" in e2 and not o2.strip(),
              "stderr: %s" % e2.strip()[-400:])

# resume under 2 ranks: 2 steps + state, resume to 4 == 4 steps, bit for bit
R2 = MPIRUN + "%s -w tiny.pth --batch 2 --lr 1e-3 " % TUNE
rca, _, ea = run(R2 + "--steps 4 -o ra.pth --log ra.csv emb.nrrd")
rcb, _, eb = run(R2 + "--steps 2 -o rb.pth --state r.state emb.nrrd")
rcc, _, ec = run(R2 + "--steps 4 -o rc.pth --resume r.state --log rc.csv emb.nrrd")
if rca or rcb or rcc:
    mptest.ok("resume-2-ranks-bit-for-bit", False, (ea + eb + ec).strip()[-600:])
else:
    a = open(os.path.join(T, "ra.pth"), "rb").read()
    c = open(os.path.join(T, "rc.pth"), "rb").read()
    la = open(os.path.join(T, "ra.csv")).read().split("\n")[3:]
    lc = [",".join(r.split(",")[:-1]) for r in open(os.path.join(T, "rc.csv")).read().split("\n")[1:] if r]
    la = [",".join(r.split(",")[:-1]) for r in la if r]
    mptest.ok("resume-2-ranks-bit-for-bit", a == c and la == lc, "checkpoints %s, logs %s / %s" %
              ("equal" if a == c else "differ", la, lc))
    # a state of 2 ranks resumes in one process (--batch is global: same data hash)
    rc, _, err = run("%s -w tiny.pth --batch 2 --lr 1e-3 --steps 4 -o r1.pth --resume r.state emb.nrrd" % TUNE)
    pe = l2rel(params("r1.pth", DEC), params("ra.pth", DEC)) if rc == 0 else 1.0
    mptest.ok("resume-2-ranks-in-1", rc == 0 and pe <= 1e-5, "exit %d, relative L2 %.2g: %s" % (rc, pe, err.strip()))

# --mode lora: 2 steps, batch 2 (1 image per rank)
LA = "%s --mode lora -w tiny.pth --steps 2 --batch 2 --lr 1e-3 " % TUNE
rc1, _, e1 = run(LA + "-o lone.pth --log lone.csv vl.nrrd", grads="lone.g")
rc2, _, e2 = run(MPIRUN + LA + "-o ltwo.pth --log ltwo.csv vl.nrrd", grads="ltwo.g")
if rc1 or rc2:
    mptest.ok("lora-2-ranks", False, "exit %d/%d: %s" % (rc1, rc2, (e1 + e2).strip()[-600:]))
else:
    QKV = DEC + [k for k in torch.load(CK, weights_only=True) if k.endswith("attn.qkv.weight")]
    compare("lora-2-ranks", ("lone.pth", "lone.csv", "lone.g"), ("ltwo.pth", "ltwo.csv", "ltwo.g"), 2, QKV)

# errors
rc, _, err = run(MPIRUN + TUNEA + "-o nodir/x.pth emb.nrrd", timeout=120)
mptest.ok("error-on-rank-0-ends-all", rc not in (0, 124) and "nodir/x.pth" in err, "exit %d: %s" % (rc, err.strip()))
rc, _, err = run(MPIRUN + "%s -w tiny.pth --batch 1 --steps 1 -o x.pth emb.nrrd" % TUNE, timeout=120)
mptest.ok("error-batch-below-ranks", rc != 0 and "at least one sample per rank" in err and
          not os.path.exists(os.path.join(T, "x.pth")), "exit %d: %s" % (rc, err.strip()))
rc, _, err = run(MPIRUN + TUNEA + "-o x.pth < emb.nrrd", timeout=120)
mptest.ok("error-stdin-under-mpi", rc != 0 and "not standard input" in err and
          not os.path.exists(os.path.join(T, "x.pth")), "exit %d: %s" % (rc, err.strip()))
rc, _, err = run(TUNEA + "-o x.pth emb.nrrd", env=dict(ENV, SLURM_STEP_NUM_TASKS="2"))
mptest.ok("error-tasks-without-mpi", rc == 1 and "srun --mpi=pmix" in err and
          not os.path.exists(os.path.join(T, "x.pth")), "exit %d: %s" % (rc, err.strip()))

# under Slurm: srun --mpi=pmix in sbatch, and mpirun in sbatch, equal the mpirun run
C = os.path.join(T, "slurm")
r = subprocess.run(["bash", os.path.join(ROOT, "tests", "slurm-cluster.sh"), "start", C], capture_output=True,
                   text=True)
if r.returncode:
    why = (r.stderr.strip().split("\n") or ["?"])[-1]
    if os.environ.get("CI") == "true":
        mptest.ok("slurm-cluster", False, why)
    else:
        mptest.skip("slurm-sbatch", why)
else:
    try:
        senv = dict(ENV, SLURM_CONF=os.path.join(C, "slurm.conf"), PATH=ENV["PATH"] + ":/usr/sbin")
        for k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL"):
            senv.pop(k, None)
        for name, wrap in (("srun-pmix", "srun --mpi=pmix %s -o s1.pth --log s1.csv emb.nrrd" % TUNEA),
                           ("mpirun", "mpirun %s -o s2.pth --log s2.csv emb.nrrd" % TUNEA)):
            out = "s1.pth" if name == "srun-pmix" else "s2.pth"
            t0 = time.time()
            rc, _, err = run("sbatch -n2 --wait -o %s.log --wrap '%s'" % (name, wrap), env=senv, timeout=300)
            log = open(os.path.join(T, name + ".log")).read() if os.path.exists(os.path.join(T, name + ".log")) else ""
            same = rc == 0 and open(os.path.join(T, out), "rb").read() == open(os.path.join(T, "two.pth"), "rb").read()
            mptest.ok("slurm-sbatch-%s-equals-mpirun" % name, same, "exit %d: %s %s" % (rc, err.strip(), log.strip()))
            print("  sbatch -n2 --wait --wrap '%s': %.1f s" % (wrap.replace(TUNE, "sam-tune"), time.time() - t0),
                  file=sys.stderr)
    finally:
        subprocess.run(["bash", os.path.join(ROOT, "tests", "slurm-cluster.sh"), "stop", C], capture_output=True)

# step time, decoder mode, SAM's decoder size (grid64: image 1024, width 256), global batch 4
if os.environ.get("MEDPIPE_FAST") == "1":
    mptest.skip("step-time", "MEDPIPE_FAST=1")
else:
    sam_ckpt.save(sam_ckpt.build("grid64", seed=3)[0], os.path.join(T, "g64.pth"))
    rc, _, err = run("%s/sam-embed -w g64.pth --slices labelled vl.nrrd > emb64.nrrd" % BIN)
    G = "%s -w g64.pth --steps 3 --batch 4 --loss-res 256 " % TUNE
    rc1, _, e1 = run(G + "-o t1.pth --log t1.csv emb64.nrrd") if rc == 0 else (rc, "", err)
    rc2, _, e2 = run(MPIRUN + G + "-o t2.pth --log t2.csv emb64.nrrd") if rc == 0 else (rc, "", err)
    if rc1 or rc2:
        mptest.ok("step-time", False, (e1 + e2).strip()[-400:])
    else:
        ms = [np.mean([float(r.split(",")[6]) for r in open(os.path.join(T, f)).read().split("\n")[2:] if r])
              for f in ("t1.csv", "t2.csv")]
        ncpu = os.cpu_count()
        print("  step time, --mode decoder, SAM-size decoder (grid64), --batch 4 --loss-res 256, steps 2-3, %d CPUs: "
              "1 process %.0f ms, mpirun -np 2 %.0f ms (%.2fx)" % (ncpu, ms[0], ms[1], ms[0] / ms[1]), file=sys.stderr)
        mptest.ok("step-time", True)

shutil.rmtree(T, ignore_errors=True)
sys.exit(mptest.status())
