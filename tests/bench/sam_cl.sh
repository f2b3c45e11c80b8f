#!/bin/sh
# The SAM encoder on an OpenCL device: bytes across the bus and CPU time per
# slice, op by op through the backend's entries (MEDPIPE_SAM_CL_RESIDENT=0,
# composed attention: the path before the resident encoder) against the
# resident encoder with composed attention (MEDPIPE_SAM_CL_ATTN=composed, the
# default on CPU devices) and with the fused kernel (MEDPIPE_SAM_CL_ATTN=fused,
# the default on GPUs), in the same run.  Random-weight
# models (tests/gen/sam_ckpt.py): SAMCL_CONFIGS (default "tiny grid64"),
# SAMCL_SLICES (default 4), SAMCL_REPEATS (default 3; the median).  Per slice:
# (CPU time of SLICES slices - CPU time of 1 slice) / (SLICES - 1), so that
# loading and the kernel cache do not count.  On PoCL (a CPU) the CPU time is
# what the device spends; on a GPU read the wall time instead.  Then the
# mask decoder of grid64 the same way: op by op against its resident image
# side, bytes and CPU time per box.
cd "$(dirname "$0")/../.." || exit 1
export PATH="$PWD/bin:$PATH"
VPY=${VPY:-.venv/bin/python3}
"$VPY" -c "import torch" 2>/dev/null || { echo "sam_cl: SKIP (no torch)"; exit 0; }
medpipe-devices --brief 2> /dev/null | grep -q '^opencl:' || { echo "sam_cl: SKIP (no OpenCL device)"; exit 0; }
T=$(mktemp -d "${TMPDIR:-/tmp}/medpipe-bench-samcl.XXXXXX")
trap 'rm -rf "$T"' EXIT
"$VPY" - "$T" "${SAMCL_CONFIGS:-tiny grid64}" "${SAMCL_SLICES:-4}" "${SAMCL_REPEATS:-3}" <<'PYEOF'
import os, re, resource, subprocess, sys, statistics
sys.path.insert(0, "tests/gen"); sys.path.insert(0, "tests")
import numpy as np
import nrrdframe
T, configs, NS, R = sys.argv[1], sys.argv[2].split(), int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(0)
modes = [("op by op, composed", {"MEDPIPE_SAM_CL_RESIDENT": "0", "MEDPIPE_SAM_CL_ATTN": "composed"}),
         ("resident, composed", {"MEDPIPE_SAM_CL_ATTN": "composed"}),
         ("resident, fused", {"MEDPIPE_SAM_CL_ATTN": "fused"})]

def run(ck, img, env):
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run(["sam-embed", "--verbose", "-w", ck, "--device", "opencl:0", img],
                       env=dict(os.environ, **env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode:
        sys.exit("sam-embed failed: " + p.stderr.strip().splitlines()[-1])
    b = [tuple(map(int, m)) for m in re.findall(r"encoder, slice \d+: (\d+) bytes to the device, (\d+) from it", p.stderr)]
    return (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), b

for cfg in configs:
    ck = f"{T}/{cfg}.pth"
    subprocess.run([sys.executable, "tests/gen/sam_ckpt.py", ck, "--config", cfg], check=True, stdout=subprocess.DEVNULL)
    S = 256 if cfg == "tiny" else 1024
    for n in (1, NS):
        vol = rng.uniform(0, 255, (n, S, S)).astype(np.float32)
        open(f"{T}/img{n}.nrrd", "wb").write(nrrdframe.frame(vol))
    res = {}
    for name, env in modes:
        per = []
        for _ in range(R):
            t1, _ = run(ck, f"{T}/img1.nrrd", env)
            tn, b = run(ck, f"{T}/img{NS}.nrrd", env)
            per.append((tn - t1) / (NS - 1))
        res[name] = (statistics.median(per), b[-1])
    base = res[modes[0][0]][0]
    for name, (t, b) in res.items():
        print(f"sam_cl {cfg}: {name:20s}: {b[0]:>10d} bytes to the device, {b[1]:>10d} from it per slice; "
              f"CPU {t:7.3f} s per slice ({t / base:.2f}x op by op)")

# the mask decoder (grid64: SAM's decoder, whose box prompts fold): per
# prompt, bytes and CPU time op by op against the resident image side
# ((CPU of 8 boxes - CPU of 1 box) / 7; the embedding from the C path)
if "grid64" in configs:
    ck = f"{T}/grid64.pth"
    img = rng.uniform(0, 255, (1024, 1024)).astype(np.float32)
    open(f"{T}/dimg.nrrd", "wb").write(nrrdframe.frame(img))
    with open(f"{T}/demb.nrrd", "wb") as f:
        subprocess.run(["sam-embed", "-w", ck, "--mode", "sam", f"{T}/dimg.nrrd"], stdout=f, check=True)
    for n in (1, 8):
        with open(f"{T}/b{n}.csv", "w") as f:
            f.write("".join("%d,%d,%d,%d,0,%d\n" % (60 + 40 * i, 80 + 30 * i, 500 + 30 * i, 520 + 25 * i, i + 1)
                            for i in range(n)))

    def dec(n, env):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        p = subprocess.run(["sam-decode", "--verbose", "-w", ck, "--device", "opencl:0", "--boxes", f"{T}/b{n}.csv",
                            f"{T}/demb.nrrd"], env=dict(os.environ, **env), stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if p.returncode:
            sys.exit("sam-decode failed: " + p.stderr.strip().splitlines()[-1])
        b = re.findall(r"decoder, slice \d+, \d+ prompts?: (\d+) bytes to the device, (\d+) from it", p.stderr)
        return (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), tuple(map(int, b[-1]))

    res = {}
    for name, env in (("op by op", {"MEDPIPE_SAM_CL_RESIDENT": "0"}), ("resident", {})):
        per = []
        for _ in range(R):
            t1, b1 = dec(1, env)
            t8, b8 = dec(8, env)
            per.append((t8 - t1) / 7)
        res[name] = (statistics.median(per), (b8[0] - b1[0]) / 7, (b8[1] - b1[1]) / 7, b1)
    base = res["op by op"][0]
    for name, (t, to, fr, b1) in res.items():
        print(f"sam_cl grid64 decoder: {name:9s}: {to:>11.0f} bytes to the device, {fr:>11.0f} from it per box "
              f"(one box: {b1[0]} to, {b1[1]} from); CPU {1e3 * t:7.1f} ms per box ({t / base:.2f}x op by op)")
PYEOF
