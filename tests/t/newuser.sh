#!/bin/sh
# What a new user meets first (issue 10): output files readable as the umask
# allows, stale temporaries of killed runs removed, plain NRRD files (no
# medpipe.role) through vol-cat and seg-eval, (H,W,3) .npy as colour frames,
# sam-embed refusing frames that cannot be images, an explicit OpenCL device
# never falling back to C, and a case whose labels are all cleaned away
# skipped by the dataset Makefiles.
. tests/lib.sh
GEN="$PY tests/gen/phantom.py"
$PY -c "import numpy, nibabel" 2>/dev/null || { skip newuser "numpy or nibabel missing"; exit 0; }
$GEN --size 40x36x8 --seed 3 --case p1 --image "$T/p1.nii.gz" --label "$T/p1_seg.nii.gz" \
	--perturbed "$T/p1_pred.nii.gz" --nrrd "$T/p1.nrrd" || { fail newuser/gen "phantom.py failed"; exit 0; }
mode() { stat -c %a "$1"; }

# ---------------------------------------------------------------- 2. modes follow the umask
for um in 022 077 002; do
	want=$(printf '%o' $((0666 & ~0$um)))
	d=$T/umask$um; mkdir -p "$d"
	(
		umask $um
		vol-save -i "$T/p1.nrrd" --as image="$d/img.nii.gz" --as label="$d/seg.nrrd" --as mask="$d/pred.mha" &&
		vol2npz -o "$d/c.npz" "$T/p1.nrrd" &&
		hu-window --preset soft-tissue --mapping medsam "$T/p1.nrrd" | vol2npz --slices "$d/sl" --size 64 -o "$d/m.npz" --layout medsam &&
		vol-cat --label "$T/p1_seg.nii.gz" --mask "$T/p1_pred.nii.gz" | seg-eval --no-nsd -o "$d/m.csv" &&
		vol-cat "$T/p1.nii.gz" | vol-preview -o "$d/p.png"
	) > "$T/um.log" 2>&1 || { fail "newuser/umask_$um" "a tool failed: $(head -c 300 "$T/um.log")"; continue; }
	bad=""
	for f in "$d/img.nii.gz" "$d/seg.nrrd" "$d/pred.mha" "$d/c.npz" "$d/m.npz" "$d/m.csv" "$d/p.png" \
		"$(ls "$d"/sl/imgs/*.npy | head -1)" "$(ls "$d"/sl/gts/*.npy | head -1)"; do
		[ "$(mode "$f")" = "$want" ] || bad="$bad $(basename "$f"):$(mode "$f")"
	done
	if [ -z "$bad" ]; then pass "newuser/umask_$um (mode $want)"; else fail "newuser/umask_$um" "want $want:$bad"; fi
done

# ---------------------------------------------------------------- 5. stale temporaries of killed runs
# a writer stalled after its first frame holds .c.tmp-PID-XXXXXX.npz; SIGKILL
# leaves it; the next run writing c.npz removes it, and never a live writer's
d=$T/stale; mkdir -p "$d"
stalled() { # start vol2npz -o $1 that has a temporary open and waits for more input
	mkfifo "$d/fifo$2"
	vol2npz -o "$1" < "$d/fifo$2" &
	eval "pid$2=\$!"
	exec 7> "$d/fifo$2"
	cat "$T/p1.nrrd" >&7
	k=0; while [ -z "$(ls -A "$d" | grep '\.tmp-')" ] && [ $k -lt 200 ]; do sleep 0.05; k=$((k + 1)); done
}
stalled "$d/c.npz" 1
tmp1=$(ls -A "$d" | grep "^\.c\.tmp-$pid1-......\.npz$")
kill -KILL "$pid1"; wait "$pid1" 2>/dev/null; exec 7>&-
[ -n "$tmp1" ] && [ -e "$d/$tmp1" ] || fail newuser/stale_tmp_named "no temporary named .c.tmp-$pid1-XXXXXX.npz: $(ls -A "$d" | tr '\n' ' ')"
# a live writer of the same target (stalled, holding its temporary)
stalled "$d/c.npz" 2
tmp2=$(ls -A "$d" | grep "^\.c\.tmp-$pid2-")
vol2npz -o "$d/c.npz" "$T/p1.nrrd"
left=$(ls -A "$d" | grep '\.tmp-' | tr '\n' ' ')
if [ -n "$tmp1" ] && [ ! -e "$d/$tmp1" ] && [ -n "$tmp2" ] && [ -e "$d/$tmp2" ] && [ -s "$d/c.npz" ]; then
	pass newuser/stale_tmp_removed_live_kept
else
	fail newuser/stale_tmp_removed_live_kept "killed: '$tmp1', live: '$tmp2', left: $left"
fi
# the live writer finishes normally
cat "$T/p1.nrrd" >&7 2>/dev/null; exec 7>&-; wait "$pid2"
check newuser/live_writer_finishes test -z "$(ls -A "$d" | grep '\.tmp-')" -a -s "$d/c.npz"
# a killed vol-save of a NIfTI (written by nifti_clib to the temporary name)
mkfifo "$d/fifo3"; vol-save "$d/img.nii.gz" < "$d/fifo3" & p3=$!
exec 7> "$d/fifo3"; head -c 2000 "$T/p1.nrrd" >&7
k=0; while [ -z "$(ls -A "$d" | grep '^\.img\.tmp-')" ] && [ $k -lt 100 ]; do sleep 0.05; k=$((k + 1)); done
kill -KILL $p3; wait $p3 2>/dev/null; exec 7>&-
n3=$(ls -A "$d" | grep -c '^\.img\.tmp-')
vol-cat "$T/p1.nii.gz" | vol-save "$d/img.nii.gz"
check newuser/stale_nifti_tmp_removed test "$n3" -ge 1 -a "$(ls -A "$d" | grep -c '^\.img\.tmp-')" -eq 0
