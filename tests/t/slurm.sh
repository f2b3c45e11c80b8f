#!/bin/sh
# The dataset Makefiles (pipelines/*.mk) under a real single-node Slurm
# cluster (tests/slurm-cluster.sh; installs Debian's packages when root):
# with RUN=srun every recipe line is a job step, and the results are byte for
# byte those of a plain make -j2, in salloc and in sbatch --wait; make inside a
# step runs its lines with plain bash (no deadlock); scancel half way leaves no
# file under a final name that is not whole and no temporary file, and a
# second submission makes only what is missing; a broken case fails its step
# and -k carries on.  Skips (with the reason) when the cluster cannot start,
# except under CI=true where that is a failure.
. tests/lib.sh
MB=$PWD/$BIN
for p in vol-cat dcm2vol hu-window ccl-clean roi-crop vol2npz vol-info vol-save vol-preview; do
	[ -x "$MB/$p" ] || { skip slurm "$p is not built"; exit 0; }
done
$PY -c "import nibabel" 2> /dev/null || { skip slurm "python3-nibabel missing"; exit 0; }

C=$T/slurm
trap 'bash tests/slurm-cluster.sh stop "$C" > /dev/null 2>&1; rm -rf "$T"' EXIT
trap 'exit 1' HUP INT TERM
if ! bash tests/slurm-cluster.sh start "$C" > "$T/env" 2> "$T/start.err"; then
	why=$(tail -n 1 "$T/start.err")
	if [ "${CI:-}" = true ]; then fail slurm/cluster "$why"; else skip slurm "$why"; fi
	exit 0
fi
. "$T/env"
pass slurm/cluster
export PATH="$PATH:/usr/sbin"
# the jobs' make is not a sub-make of the make that runs the tests
unset MAKEFLAGS MFLAGS MAKELEVEL

# the dataset: 4 nnU-Net cases and (with DCMTK's dump2dcm) 2 DICOM studies
sh examples/phantom-dataset.sh "$T/ds" 4 > "$T/ds.log" 2>&1 || { fail slurm/dataset "$(tail -n 3 "$T/ds.log")"; exit 0; }
DS=$T/ds
MK="-f pipelines/ct-npz.mk"
SMK="-f pipelines/sanity.mk"

# same REF DIR: every file of REF is in DIR with the same bytes, and no other
same() {
	(cd "$1" && find . -type f | sort) > "$T/a.lst"
	(cd "$2" && find . -type f | sort) > "$T/b.lst"
	cmp -s "$T/a.lst" "$T/b.lst" || { echo "files differ: $(diff "$T/a.lst" "$T/b.lst" | grep '^[<>]' | head -3 | tr '\n' ' ')"; return 1; }
	while read -r f; do cmp -s "$1/$f" "$2/$f" || { echo "$f differs"; return 1; }; done < "$T/a.lst"
}
# the reference: plain make -j2
t0=$(date +%s.%N)
make $MK -j2 IN="$DS" OUT="$T/ref" > "$T/ref.log" 2>&1 && make $SMK -j2 IN="$DS" OUT="$T/ref" >> "$T/ref.log" 2>&1 \
	|| { fail slurm/reference "plain make failed: $(tail -n 2 "$T/ref.log")"; exit 0; }
t1=$(date +%s.%N)
ncases=$(make --no-print-directory $MK IN="$DS" OUT="$T/ref" list | wc -l)

# salloc -n2 make -j2 RUN=srun
salloc -n2 sh -c "make $MK -j2 RUN=srun IN='$DS' OUT='$T/sa' && make $SMK -j2 RUN=srun IN='$DS' OUT='$T/sa'" > "$T/sa.log" 2>&1
rc=$?
t2=$(date +%s.%N)
if [ $rc -ne 0 ]; then fail slurm/salloc "exit $rc: $(grep -v '^salloc:' "$T/sa.log" | grep -E 'srun|error|rror' | head -n 4 | tr '\n' ' ')"
elif ! grep -q 'Granted job allocation' "$T/sa.log"; then fail slurm/salloc "no allocation: $(head -n 2 "$T/sa.log")"
elif why=$(same "$T/ref" "$T/sa"); then pass slurm/salloc-identical
else fail slurm/salloc-identical "$why"; fi
# the recipes ran as job steps: slurmd launched one per recipe line (5 files
# a case, and the folders and the summary)
job=$(sed -n 's/.*Granted job allocation \([0-9]*\).*/\1/p' "$T/sa.log")
steps=$(grep -c "launch task StepId=$job\." "$C/slurmd.log")
if [ "$steps" -ge $((5 * ncases)) ]; then pass slurm/salloc-steps
else fail slurm/salloc-steps "job $job ran $steps steps for $ncases cases (slurmd.log)"; fi
echo "# $ncases cases, ct-npz + sanity: plain make -j2 $(awk "BEGIN { print $t1 - $t0 }") s, salloc -n2 make -j2 RUN=srun $(awk "BEGIN { print $t2 - $t1 }") s"

# sbatch --wait (the log is the job's -o file)
sbatch -n2 --wait -o "$T/sb.log" --wrap "make $MK -j2 RUN=srun IN='$DS' OUT='$T/sb' && make $SMK -j2 RUN=srun IN='$DS' OUT='$T/sb'" > /dev/null 2> "$T/sb.err"
rc=$?
if [ $rc -ne 0 ]; then fail slurm/sbatch "exit $rc: $(cat "$T/sb.err" "$T/sb.log" 2> /dev/null | tail -n 2 | tr '\n' ' ')"
elif why=$(same "$T/ref" "$T/sb"); then pass slurm/sbatch-identical
else fail slurm/sbatch-identical "$why"; fi

# make itself as a job step of a 1-CPU job: its lines must not ask for
# steps of their own (the job has no CPU left for them: they would wait for ever)
timeout 120 srun -n1 sh -c "echo \$SLURM_JOB_ID > '$T/st.job' && make $MK -j2 RUN=srun IN='$DS' OUT='$T/st' && make $SMK -j2 RUN=srun IN='$DS' OUT='$T/st'" > "$T/st.log" 2>&1
rc=$?
if [ $rc -ne 0 ]; then fail slurm/make-in-step "exit $rc (124: deadlock): $(tail -n 2 "$T/st.log" | tr '\n' ' ')"
elif [ "$(grep -c "launch task StepId=$(cat "$T/st.job")\." "$C/slurmd.log")" -ne 1 ]; then
	fail slurm/make-in-step "the lines of make in a step ran as steps of their own"
elif why=$(same "$T/ref" "$T/st"); then pass slurm/make-in-step
else fail slurm/make-in-step "$why"; fi

# scancel half way: hu-window made slow (3 s) so that cases are in flight
mkdir -p "$T/slow"
for p in "$MB"/*; do ln -s "$p" "$T/slow/"; done
rm "$T/slow/hu-window"
printf '#!/bin/sh\nsleep 3\nexec %s/hu-window "$@"\n' "$MB" > "$T/slow/hu-window"
chmod +x "$T/slow/hu-window"
K=$T/cancel
job=$(sbatch --parsable -n2 -o "$T/c1.log" --wrap "make $MK -j2 RUN=srun MEDPIPE_BIN='$T/slow' IN='$DS' OUT='$K'")
i=0
while [ $i -lt 300 ]; do
	# at least one case finished and others under way (their work/*.nrrd.tmp
	# lasts the 3 s of the slow hu-window; info/*.csv.tmp comes and goes)
	[ -n "$(find "$K" -name '*.nrrd' 2> /dev/null | head -1)" ] && [ -n "$(find "$K" -name '*.nrrd.tmp' 2> /dev/null | head -1)" ] && break
	sleep 0.1; i=$((i + 1))
done
inflight=$(find "$K" -name '*.nrrd.tmp' 2> /dev/null | wc -l)
scancel "$job"
i=0
while [ $i -lt 300 ] && [ -n "$(squeue -h -j "$job" 2> /dev/null)" ]; do sleep 0.1; i=$((i + 1)); done
left=$(find "$K" -name '*.tmp*' | tr '\n' ' ')
bad=""
for f in $(cd "$K" && find . -type f); do cmp -s "$T/ref/$f" "$K/$f" || bad="$bad $f"; done
done1=$(cd "$K" && find . -type f | sort)
if [ "$inflight" -eq 0 ]; then fail slurm/scancel-clean "no case was under way when cancelled: $(tail -n 3 "$T/c1.log" | tr '\n' ' ')"
elif [ -n "$(squeue -h -j "$job" 2> /dev/null)" ]; then fail slurm/scancel-clean "job $job still in the queue 30 s after scancel"
elif [ -n "$left" ]; then fail slurm/scancel-clean "temporary files left: $left"
elif [ -n "$bad" ]; then fail slurm/scancel-clean "files under a final name that differ from a whole run:$bad"
elif ! grep -q CANCELLED "$T/c1.log"; then fail slurm/scancel-clean "the job log does not say CANCELLED: $(tail -n 2 "$T/c1.log" | tr '\n' ' ')"
else pass slurm/scancel-clean; fi
# ... and a second submission makes only what is missing
stat -c '%n %y' $(find "$K" -type f) > "$T/before"
sbatch -n2 --wait -o "$T/c2.log" --wrap "make $MK -j2 RUN=srun IN='$DS' OUT='$K' && make $SMK -j2 RUN=srun IN='$DS' OUT='$K'" > /dev/null 2> "$T/c2.err"
rc=$?
redone=$(grep -c '^prep ' "$T/c2.log")
ndone=$(echo "$done1" | grep -c 'work/.*\.nrrd$')
if [ $rc -ne 0 ]; then fail slurm/resubmit "exit $rc: $(cat "$T/c2.err" "$T/c2.log" | tail -n 2 | tr '\n' ' ')"
elif ! why=$(same "$T/ref" "$K"); then fail slurm/resubmit "$why"
elif ! stat -c '%n %y' $(cut -d' ' -f1 "$T/before") | cmp -s - "$T/before"; then fail slurm/resubmit "files made before the cancel were made again"
elif [ "$redone" -ne $((ncases - ndone)) ]; then fail slurm/resubmit "prepared $redone cases, $((ncases - ndone)) were missing"
else pass slurm/resubmit-finishes-missing; fi
echo "# scancel with $inflight files under way and $ndone of $ncases cases done; the second job prepared $redone"

# a broken case fails its step; -k makes the others
B=$T/dsk
mkdir -p "$B/imagesTr" "$B/labelsTr"
for f in "$DS"/imagesTr/* "$DS"/labelsTr/*; do ln -s "$f" "$B/${f#"$DS"/}"; done
for d in "$DS"/dc*; do [ -d "$d" ] && ln -s "$d" "$B/"; done
printf 'not a nifti file' | gzip > "$B/imagesTr/bad_0000.nii.gz"
salloc -n2 make $MK -j2 -k RUN=srun IN="$B" OUT="$T/k" > "$T/k.log" 2>&1
rc=$?
missing=""
for c in $(make --no-print-directory $MK IN="$DS" OUT=x list); do
	cmp -s "$T/ref/npz/$c.npz" "$T/k/npz/$c.npz" || missing="$missing $c"
done
if [ $rc -eq 0 ]; then fail slurm/k-failing-case "make exited 0 with a broken case"
elif ! grep -q 'srun: error: .*task 0: Exited with exit code' "$T/k.log"; then fail slurm/k-failing-case "no failed step in the log: $(tail -n 3 "$T/k.log" | tr '\n' ' ')"
elif ! grep -q 'work/bad.nrrd\] Error' "$T/k.log"; then fail slurm/k-failing-case "make did not report the broken case"
elif [ -n "$missing" ]; then fail slurm/k-failing-case "cases not made (or different) after the broken one:$missing"
elif [ -n "$(find "$T/k" -name 'bad*' -o -name '*.tmp*')" ]; then fail slurm/k-failing-case "left: $(find "$T/k" -name 'bad*' -o -name '*.tmp*' | tr '\n' ' ')"
elif [ -e "$T/k/summary.csv" ]; then fail slurm/k-failing-case "summary.csv made although a case failed"
else pass slurm/k-failing-case; fi

# stop: daemons gone, folder removed
pids=$(cat "$C"/*.pid 2> /dev/null)
bash tests/slurm-cluster.sh stop "$C" > "$T/stop.log" 2>&1
alive=""
for p in $pids; do kill -0 "$p" 2> /dev/null && alive="$alive $p"; done
if [ -n "$alive" ] || [ -e "$C" ]; then fail slurm/stop "still running:$alive; $(cat "$T/stop.log")"
else pass slurm/stop; fi
