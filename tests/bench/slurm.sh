#!/bin/sh
# A dataset job (pipelines/ct-npz.mk) under Slurm against plain make -j2 on
# the same cases, on a private single-node cluster (tests/slurm-cluster.sh):
#   plain:   make -j2
#   salloc:  salloc -n2 make -j2 RUN=srun          (every recipe line a job step)
#   sbatch:  sbatch -n2 --wait --wrap 'make -j2 RUN=srun'  (wall time, which
#            includes sbatch's polling, and the job's own time)
# on two datasets: examples/phantom-dataset.sh (small cases: the cost of a
# step shows), and 4 CT-sized cases (TotalSegmentator's example CT and labels
# enlarged to 512x512x120).  Best of 2 each; the outputs must be identical.
# Repeat: BENCH=slurm make bench
cd "$(dirname "$0")/../.." || exit 1
PY=${PY:-/usr/bin/python3}
DATA=${DATA:-../shared/data}
T=$(mktemp -d "${TMPDIR:-/tmp}/medpipe-bench.XXXXXX")
C=$T/slurm
trap 'bash tests/slurm-cluster.sh stop "$C" > /dev/null 2>&1; rm -rf "$T"' EXIT
trap 'exit 1' HUP INT TERM
bash tests/slurm-cluster.sh start "$C" > "$T/env" 2> "$T/err" || { echo "slurm: skipped: $(tail -n 1 "$T/err")"; exit 0; }
. "$T/env"
export PATH="$PATH:/usr/sbin"
unset MAKEFLAGS MFLAGS MAKELEVEL  # the jobs' make is not a sub-make of make bench
MK="-f pipelines/ct-npz.mk"

now() { date +%s.%N; }
sub() { awk "BEGIN { printf \"%.2f\", $1 - $2 }"; }
min() { awk "BEGIN { print ($1 < $2) ? $1 : $2 }"; }

bench() { # NAME IN
	bp=999; bs=999; bb=999; bj=999
	for r in 1 2; do
		rm -rf "$T/o1" "$T/o2" "$T/o3"
		t0=$(now); make $MK -j2 IN="$2" OUT="$T/o1" > /dev/null 2>&1 || { echo "slurm: plain make failed"; return; }
		t1=$(now); salloc -n2 make $MK -j2 RUN=srun IN="$2" OUT="$T/o2" > /dev/null 2>&1 || { echo "slurm: salloc failed"; return; }
		t2=$(now); sbatch -n2 --wait -o /dev/null --wrap "s=\$(date +%s.%N); make $MK -j2 RUN=srun IN='$2' OUT='$T/o3' && awk \"BEGIN { print \$(date +%s.%N) - \$s }\" > '$T/job'" > /dev/null 2>&1 || { echo "slurm: sbatch failed"; return; }
		t3=$(now)
		bp=$(min "$bp" "$(sub "$t1" "$t0")"); bs=$(min "$bs" "$(sub "$t2" "$t1")")
		bb=$(min "$bb" "$(sub "$t3" "$t2")"); bj=$(min "$bj" "$(cat "$T/job")")
	done
	same=identical
	diff -r "$T/o1" "$T/o2" > /dev/null && diff -r "$T/o1" "$T/o3" > /dev/null || same=DIFFER
	n=$(make --no-print-directory $MK IN="$2" OUT=x list | wc -l)
	echo "slurm: $1, $n cases: make -j2 $bp s; salloc -n2 RUN=srun $bs s ($(awk "BEGIN { printf \"%.2f\", $bs / $bp }")x); sbatch --wait $bb s (the job itself $(awk "BEGIN { printf \"%.2f\", $bj }") s); outputs $same"
}

sh examples/phantom-dataset.sh "$T/ph" 4 > /dev/null 2>&1 || { echo "slurm: skipped: examples/phantom-dataset.sh failed"; exit 0; }
echo "slurm: load average $(cut -d' ' -f1 /proc/loadavg) on $(nproc) cores"
bench "phantom 96x96x32" "$T/ph"
ts=$DATA/nifti/totalseg
if [ -f "$ts/example_ct_sm.nii.gz" ] && "$PY" - "$ts" "$T/ct" <<'EOF'
import os, sys
import numpy as np, nibabel as nib, scipy.ndimage as ndi
ts, out = sys.argv[1:]
os.makedirs(out + "/imagesTr"); os.makedirs(out + "/labelsTr")
ci = nib.load(ts + "/example_ct_sm.nii.gz")
ct = np.asanyarray(ci.dataobj).astype(np.int16)
sg = np.asanyarray(nib.load(ts + "/example_seg.nii.gz").dataobj).astype(np.uint8)
zf = [a / b for a, b in zip((512, 512, 120), ct.shape)]
ct, sg = ndi.zoom(ct, zf, order=1), ndi.zoom(sg, zf, order=0)
aff = ci.affine.copy(); aff[:3, :3] /= np.array(zf)
for i in range(4):
    nib.save(nib.Nifti1Image(ct, aff), "%s/imagesTr/ct%02d_0000.nii.gz" % (out, i))
    nib.save(nib.Nifti1Image(sg, aff), "%s/labelsTr/ct%02d.nii.gz" % (out, i))
EOF
then bench "CT 512x512x120" "$T/ct"
else echo "slurm: CT-sized cases skipped ($ts absent or python3-nibabel/scipy missing)"; fi
