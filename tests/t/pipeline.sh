#!/bin/sh
# pipelines/*.mk on a generated dataset of phantom cases (nnU-Net NIfTI and
# DICOM studies): -j2 -k with a broken case, a run killed half way and run
# again must end with every output complete and identical to an uninterrupted
# run; only changed cases are rebuilt; summary CSV; sanity files; MR twin.
. tests/lib.sh
MB=${MEDPIPE_BIN:-$PWD/$BIN}
GEN="$PY tests/gen/phantom.py"

for p in hu-window ccl-clean roi-crop vol2npz vol-info; do
	if [ ! -x "$MB/$p" ]; then
		skip pipeline "$p is not built"; exit 0
	fi
done
if [ ! -x "$MB/vol-cat" ]; then
	skip pipeline "vol-cat is not built (reads the NIfTI cases)"; exit 0
fi
$PY -c "import nibabel" 2>/dev/null || { skip_ref pipeline "python3-nibabel missing"; exit 0; }

DS=$T/ds
mkdir -p "$DS/imagesTr" "$DS/labelsTr"
i=0
for c in c01 c02 c03 c04 c05 c06; do
	i=$((i + 1))
	$GEN --size 64x56x18 --seed $i --case $c --image "$DS/imagesTr/${c}_0000.nii.gz" --label "$DS/labelsTr/$c.nii.gz" || exit 1
done
ndcm=0
if [ -x "$MB/dcm2vol" ] && have_cmd dump2dcm; then
	for c in d01 d02; do
		i=$((i + 1))
		$GEN --size 64x56x18 --seed $i --case $c --dicom "$DS/$c/dicom" --label "$DS/$c/label.nii.gz" || exit 1
	done
	ndcm=2
elif [ -x "$MB/dcm2vol" ]; then
	skip_ref pipeline/dicom_cases "dump2dcm (dcmtk) missing: DICOM cases left out"
else
	skip pipeline/dicom_cases "dcm2vol not built: DICOM cases left out"
fi
# a broken case: its image is not a NIfTI file
printf 'this is not a nifti file' | gzip > "$DS/imagesTr/broken_0000.nii.gz"
cp "$DS/labelsTr/c01.nii.gz" "$DS/labelsTr/broken.nii.gz"
ncases=$((6 + ndcm))

mk() { make --no-print-directory -f pipelines/ct-npz.mk MEDPIPE_BIN="$MB" IN="$DS" "$@"; }

# --------------------------------------------------------------- reference run
mk -j2 -k OUT="$T/ref" > "$T/ref.log" 2>&1; rc=$?
if [ $rc -ne 0 ] && [ "$(ls "$T/ref/npz" 2>/dev/null | wc -l)" -eq $ncases ] \
	&& [ ! -e "$T/ref/npz/broken.npz" ] && [ ! -e "$T/ref/work/broken.nrrd" ]; then
	pass pipeline/keep_going_broken_case
else
	fail pipeline/keep_going_broken_case "rc $rc, npz: $(ls "$T/ref/npz" 2>/dev/null | tr '\n' ' ') :: $(tail -5 "$T/ref.log" | tr '\n' ' ')"
fi
n=$(grep -c '^npz ' "$T/ref.log")
check pipeline/progress_one_line_per_case test "$n" -eq $ncases
ls "$T/ref/work" | grep -q tmp && fail pipeline/no_tmp_left "$(ls "$T/ref/work" | tr '\n' ' ')" || pass pipeline/no_tmp_left

mk OUT="$T/ref" partial-summary > /dev/null 2>&1
lines=$(wc -l < "$T/ref/summary-partial.csv" 2>/dev/null || echo 0)
if [ ! -e "$T/ref/summary.csv" ] && [ "$lines" -eq $((ncases + 1)) ]; then
	pass pipeline/partial_summary_after_failure
else
	fail pipeline/partial_summary_after_failure "summary.csv exists or $lines lines"
fi
# without the broken case the run completes, with the summary
rm -f "$DS/imagesTr/broken_0000.nii.gz" "$DS/labelsTr/broken.nii.gz"
mk -j2 OUT="$T/ref" > "$T/ref2.log" 2>&1
check pipeline/complete_after_fix test $? -eq 0 -a -s "$T/ref/summary.csv"
rm -f "$T/ref/summary-partial.csv"

# the npz holds MedSAM's layout, labelled slices only
cat > "$T/chk.py" <<'EOF'
import sys, numpy as np, nibabel as nib
npz, lab = sys.argv[1], sys.argv[2]
z = np.load(npz)
assert sorted(z.keys()) == ["gts", "imgs", "spacing"], list(z.keys())
assert z["imgs"].dtype == np.uint8 and z["gts"].dtype == np.uint8 and z["imgs"].shape == z["gts"].shape
g = np.asanyarray(nib.load(lab).dataobj).transpose(2, 1, 0)
assert z["gts"].shape[1:] == g.shape[1:]
assert 0 < z["gts"].shape[0] <= sum(1 for k in range(g.shape[0]) if g[k].any())
assert all(z["gts"][k].any() for k in range(z["gts"].shape[0])), "unlabelled slice kept"
assert np.allclose(z["spacing"], nib.load(lab).header.get_zooms()[:3], atol=1e-5), z["spacing"]
assert set(np.unique(z["gts"])) <= set(np.unique(g)), "new label values"
assert z["imgs"].max() == 255 and z["imgs"].min() == 0
EOF
check pipeline/npz_layout "$PY" "$T/chk.py" "$T/ref/npz/c02.npz" "$DS/labelsTr/c02.nii.gz"
lines=$(wc -l < "$T/ref/summary.csv" 2>/dev/null || echo 0)
if [ "$lines" -eq $((ncases + 1)) ] && head -1 "$T/ref/summary.csv" | grep -q '^case,slices,size,spacing_mm,labels,status$' \
	&& grep -q '^c01,[0-9][0-9]*,64x56x[0-9]*,0.8x0.8x2.5,1:[0-9]' "$T/ref/summary.csv"; then
	pass pipeline/summary_csv
else
	fail pipeline/summary_csv "$(head -3 "$T/ref/summary.csv" 2>/dev/null | tr '\n' '|')"
fi

# --------------------------------------------------------------- killed half way, then again
# started in its own process group; killed (TERM, as timeout does) once some
# cases are finished while others run
setsid make --no-print-directory -f pipelines/ct-npz.mk MEDPIPE_BIN="$MB" IN="$DS" -j2 OUT="$T/run" > "$T/kill.log" 2>&1 &
pid=$!
k=0
while kill -0 $pid 2>/dev/null && [ "$(ls "$T/run/work" "$T/run/npz" 2>/dev/null | grep -c "\.n[rp][rz][dz]$")" -lt 2 ] && [ $k -lt 1200 ]; do
	sleep 0.05; k=$((k + 1))
done
running=0; kill -0 $pid 2>/dev/null && running=1
kill -TERM -$pid 2>/dev/null
wait $pid 2>/dev/null
# make exits at once on TERM; the recipes' shells of its process group then
# finish their EXIT traps (removing their .tmp files): look once they are gone
k=0
while kill -0 -$pid 2>/dev/null && [ $k -lt 200 ]; do sleep 0.05; k=$((k + 1)); done
nnpz=$(ls "$T/run/npz" 2>/dev/null | wc -l); nref=$(ls "$T/ref/npz" | wc -l)
partial="$(ls "$T/run/work" 2>/dev/null | grep -c "nrrd$") processed, $nnpz npz"
# the kill must have come while cases were left to do, or the rest tests nothing
if [ "$running" = 1 ] && [ "$nnpz" -lt "$nref" ]; then
	pass "pipeline/killed_half_way ($nnpz of $nref npz files done)"
else
	fail pipeline/killed_half_way "the kill came when make had finished ($nnpz of $nref npz files done): nothing tested"
fi
# whatever exists after the kill must already be complete and correct
bad=""
for f in $(cd "$T/run" 2>/dev/null && find . -type f); do
	cmp -s "$T/run/$f" "$T/ref/$f" || bad="$bad $f"
done
check pipeline/killed_leaves_no_partial_output test -z "$bad"
mk -j2 -k OUT="$T/run" > "$T/rerun.log" 2>&1
diffs=$(cd "$T/ref" && for f in $(find . -type f | sort); do cmp -s "$f" "$T/run/$f" || echo "$f"; done)
extra=$(cd "$T/run" && find . -type f | sort | while read -r f; do [ -e "$T/ref/$f" ] || echo "$f"; done)
if [ -z "$diffs" ] && [ -z "$extra" ] && true; then
	pass "pipeline/rerun_after_kill_identical ($partial of $ncases cases existed after the kill)"
else
	fail pipeline/rerun_after_kill_identical "differ: $diffs; extra: $extra; at the kill: $partial"
fi

# --------------------------------------------------------------- only changed cases rebuilt
sleep 1
touch "$DS/labelsTr/c03.nii.gz"
mk -j2 -k OUT="$T/run" > "$T/touch.log" 2>&1
rebuilt=$(grep '^prep ' "$T/touch.log" | awk '{print $2}' | tr '\n' ' ')
check pipeline/only_changed_rebuilt test "$rebuilt" = "c03 "

# --------------------------------------------------------------- sanity.mk
if [ -x "$MB/vol-preview" ]; then
	make --no-print-directory -f pipelines/sanity.mk MEDPIPE_BIN="$MB" IN="$DS" OUT="$T/ref" -j2 -k > "$T/san.log" 2>&1
	if [ -s "$T/ref/preview/c01.png" ] && [ "$(od -An -tx1 -N8 "$T/ref/preview/c01.png" | tr -d ' \n')" = 89504e470d0a1a0a ]; then
		pass pipeline/sanity_png
	else
		fail pipeline/sanity_png "$(tail -3 "$T/san.log" | tr '\n' ' ')"
	fi
	if [ -x "$MB/vol-save" ]; then
		cat > "$T/nii.py" <<'EOF'
import sys, nibabel as nib, numpy as np
a = nib.load(sys.argv[1]); b = nib.load(sys.argv[2])
assert a.shape == b.shape and np.allclose(a.affine, b.affine, atol=1e-4)
assert np.asanyarray(b.dataobj).max() > 0
EOF
		check pipeline/sanity_nifti "$PY" "$T/nii.py" "$T/ref/sanity/c01_image.nii.gz" "$T/ref/sanity/c01_label.nii.gz"
	else
		skip pipeline/sanity_nifti "vol-save is not built"
	fi
else
	skip pipeline/sanity "vol-preview is not built"
fi

# --------------------------------------------------------------- MR twin
MR=$T/mr
mkdir -p "$MR/imagesTr" "$MR/labelsTr"
$GEN --modality mr --size 48x48x12 --seed 9 --image "$MR/imagesTr/m01_0000.nii.gz" --label "$MR/labelsTr/m01.nii.gz" || exit 1
make --no-print-directory -f pipelines/mr-npz.mk MEDPIPE_BIN="$MB" IN="$MR" OUT="$T/mrout" SIZE=256 > "$T/mr.log" 2>&1
cat > "$T/mr.py" <<'EOF'
import sys, numpy as np
z = np.load(sys.argv[1])
assert z["imgs"].shape[1:] == (256, 256) and z["imgs"].dtype == np.uint8, z["imgs"].shape
assert z["imgs"].max() == 255 and z["imgs"].min() == 0
EOF
check pipeline/mr_twin_resized "$PY" "$T/mr.py" "$T/mrout/npz/m01.npz"

# --------------------------------------------------------------- usage
make --no-print-directory -f pipelines/ct-npz.mk > "$T/use.log" 2>&1
if [ $? -ne 0 ] && grep -q 'IN is not set' "$T/use.log"; then pass pipeline/usage_message; else fail pipeline/usage_message "$(cat "$T/use.log")"; fi
exit 0
