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
	eval "p=\$pid$2"
	k=0; while [ -z "$(ls -A "$d" | grep "\.tmp-$p-")" ] && [ $k -lt 200 ]; do sleep 0.05; k=$((k + 1)); done
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

# ---------------------------------------------------------------- 3, 8. plain NRRD files (no medpipe keys)
# written as 3D Slicer / pyradiomics / pynrrd write them
cat > "$T/plain.py" <<'PYEOF'
import sys, numpy as np, nibabel as nib
def wr(path, a, sp=(0.8, 0.8, 2.5)):
    t = {"uint8": "uint8", "int16": "short", "float32": "float"}[str(a.dtype)]
    h = ("NRRD0004\ntype: %s\ndimension: 3\nspace: left-posterior-superior\nsizes: %d %d %d\n"
         "space directions: (%g,0,0) (0,%g,0) (0,0,%g)\nkinds: domain domain domain\nendian: little\n"
         "encoding: raw\nspace origin: (0,0,0)\n\n") % ((t,) + a.shape + sp)
    open(path, "wb").write(h.encode() + a.tobytes(order="F"))
d = sys.argv[1]
s = np.asanyarray(nib.load(d + "/p1_seg.nii.gz").dataobj).astype(np.uint8)
p = np.asanyarray(nib.load(d + "/p1_pred.nii.gz").dataobj).astype(np.uint8)
wr(d + "/label.nrrd", s); wr(d + "/pred.nrrd", p); wr(d + "/labelf.nrrd", s.astype(np.float32))
wr(d + "/ct.nrrd", np.asanyarray(nib.load(d + "/p1.nii.gz").dataobj).astype(np.int16))
PYEOF
$PY "$T/plain.py" "$T" || fail newuser/plain_gen "plain.py failed"
seg-eval --ref "$T/label.nrrd" "$T/pred.nrrd" > "$T/plain.csv" 2> "$T/plain.err"
vol-cat --label "$T/p1_seg.nii.gz" --mask "$T/p1_pred.nii.gz" | seg-eval > "$T/nii.csv" 2>&1
if [ "$(cut -d, -f3- "$T/plain.csv")" = "$(cut -d, -f3- "$T/nii.csv")" ] && [ "$(wc -l < "$T/plain.csv")" -gt 2 ]; then
	pass newuser/seg_eval_plain_nrrd
else
	fail newuser/seg_eval_plain_nrrd "$(cat "$T/plain.err") $(head -3 "$T/plain.csv" | tr '\n' '|')"
fi
# the case of a plain file is its name
check newuser/seg_eval_plain_nrrd_case grep -q '^pred,1,all,' "$T/plain.csv"
roles=$(vol-cat "$T/ct.nrrd" --label "$T/label.nrrd" | vol-info --brief | cut -f2,3 | tr '\t\n' ': ')
check newuser/volcat_plain_nrrd_roles test "$roles" = "ct:image ct:label "
roles=$(vol-cat - < "$T/ct.nrrd" | vol-info --keys | grep -c 'medpipe.role:=image')
check newuser/volcat_plain_nrrd_stdin_role test "$roles" -eq 1
t=$(vol-cat "$T/ct.nrrd" --label "$T/labelf.nrrd" | vol-info --brief | sed -n 2p | cut -f4)
check newuser/volcat_plain_nrrd_float_label test "$t" = uint8
# a plain label frame into programs that act on labels
n=$(vol-cat "$T/ct.nrrd" --label "$T/label.nrrd" | roi-crop --slices labelled | vol-info --brief | wc -l)
check newuser/volcat_plain_nrrd_roi_crop test "$n" -eq 2

# ---------------------------------------------------------------- 4. (H,W,3) .npy is a colour image
"$PY" -c "
import numpy as np
a = (np.arange(40 * 36 * 3) % 251).astype(np.float64).reshape(40, 36, 3)
np.save('$T/rgb.npy', a); np.save('$T/rgbf.npy', np.asfortranarray(a))
np.save('$T/rgba.npy', (np.arange(40 * 36 * 4) % 200).astype(np.uint8).reshape(40, 36, 4))
np.save('$T/thin.npy', np.zeros((4, 40, 3), np.int16))
"
s=$(vol-cat "$T/rgb.npy" | vol-info | grep 'sizes:' | tr -s ' ')
check newuser/npy_hw3_is_colour test "$s" = " sizes: 3 36 40 (RGB-color domain domain)"
s=$(vol-cat "$T/rgbf.npy" | vol-info | grep 'sizes:' | tr -s ' ')
check newuser/npy_hw3_fortran_is_colour test "$s" = " sizes: 3 36 40 (RGB-color domain domain)"
s=$(vol-cat "$T/rgba.npy" | vol-info | grep 'sizes:' | tr -s ' ')
check newuser/npy_hw4_is_rgba test "$s" = " sizes: 4 36 40 (RGBA-color domain domain)"
s=$(vol-cat --no-colour "$T/rgb.npy" | vol-info | grep 'sizes:' | tr -s ' ')
check newuser/npy_no_colour test "$s" = " sizes: 3 36 40 (domain domain domain)"
s=$(vol-cat "$T/thin.npy" | vol-info | grep 'sizes:' | tr -s ' ')
check newuser/npy_short_axes_not_colour test "$s" = " sizes: 3 40 4 (domain domain domain)"
# the colour frame keeps numpy's values, pixel by pixel: saved back as .npy it is the same array
vol-cat "$T/rgb.npy" | vol-save "$T/back.npy" 2> "$T/back.err"
check newuser/npy_colour_roundtrip "$PY" -c "
import numpy as np
a = np.load('$T/rgb.npy'); b = np.load('$T/back.npy')
assert a.shape == b.shape and (a == b).all(), (a.shape, b.shape)"
# MedSAM's per-slice images as vol2npz --slices writes them are colour frames again
hu-window --preset soft-tissue --mapping medsam "$T/p1.nrrd" | vol2npz --layout medsam --slices "$T/sl" --size 64 -o "$T/sl.npz"
f=$(ls "$T"/sl/imgs/*.npy | head -1)
s=$(vol-cat "$f" | vol-info | grep 'sizes:' | tr -s ' ')
check newuser/npy_medsam_slice_is_colour test "$s" = " sizes: 3 64 64 (RGB-color domain domain)"
# sam-embed refuses what cannot be an image, in one line
if "$VPY" tests/gen/sam_ckpt.py "$T/tiny.pth" --config tiny > "$T/ck.log" 2>&1; then
	vol-cat --no-colour "$T/rgb.npy" > "$T/slivers.nrrd"
	expect_err newuser/sam_embed_refuses_slivers 1 'frame 1: slices of 3 x 36 pixels are not images' sam-embed -w "$T/tiny.pth" "$T/slivers.nrrd"
	vol-cat "$T/rgba.npy" > "$T/rgba.nrrd"
	expect_err newuser/sam_embed_refuses_rgba 1 'frame 1: a RGBA-color frame of 4 samples per pixel' sam-embed -w "$T/tiny.pth" "$T/rgba.nrrd"
	n=$(vol-cat "$T/rgb.npy" | sam-embed -w "$T/tiny.pth" -t 2 | vol-info --brief | cut -f3)
	check newuser/sam_embed_colour_npy_one_slice test "$n" = embedding
else
	skip newuser/sam_embed_refuses "no random-weight checkpoint: $(tail -1 "$T/ck.log")"
fi

# ---------------------------------------------------------------- 6. a device named is a promise
if [ "$(medpipe-devices --brief 2>/dev/null | grep -c '^opencl:')" -gt 0 ]; then
	vol-cat "$T/p1.nii.gz" --label "$T/p1_seg.nii.gz" > "$T/case.nrrd"
	expect_err newuser/opencl_spacing_no_fallback 1 'vol-resize: resampling to a spacing \(--spacing\) runs only in C, not on opencl:0' \
		vol-resize --device opencl:0 --spacing 1 "$T/case.nrrd"
	expect_err newuser/opencl_border_constant_no_fallback 1 'vol-resize: --border constant runs only in C, not on opencl' \
		vol-resize --device opencl --interp bspline3 --border constant 64x64 "$T/case.nrrd"
	# pieces too small for one slice: the OpenCL step cannot run (frames
	# before the failing one have gone downstream: exit 1 and one line, as
	# any failure at run time)
	MEDPIPE_CL_PIECE=2000; export MEDPIPE_CL_PIECE
	expect_err newuser/opencl_ccl_ids_small_pieces_fail 1 'ccl-clean: .*frame 2: component ids: connected components: cannot run on opencl:0' \
		sh -c "ccl-clean --ids-only --device opencl:0 '$T/case.nrrd' > /dev/null"
	expect_err newuser/opencl_resize_small_pieces_fail 1 'vol-resize: .*resize: cannot run on opencl:0' \
		sh -c "vol-resize --device opencl 64x64 '$T/case.nrrd' > /dev/null"
	# auto still falls back (with a note under --verbose only)
	check newuser/auto_small_pieces_falls_back sh -c "ccl-clean --ids-only --device auto '$T/case.nrrd' | vol-info --brief | grep -q instance"
	check newuser/env_named_device_no_fallback sh -c "! MEDPIPE_DEVICE=opencl:0 ccl-clean --ids-only '$T/case.nrrd' > /dev/null 2>&1"
	unset MEDPIPE_CL_PIECE
	expect_err newuser/opencl_ids64_no_fallback 1 'ccl-clean: --ids64 runs only in C, not on opencl' \
		ccl-clean --ids64 --device opencl "$T/case.nrrd"
	expect_err newuser/opencl_medsam2d_no_fallback 1 'hu-window: --medsam-2d runs only in C, not on opencl:0' \
		hu-window --medsam-2d --device opencl:0 "$T/case.nrrd"
	# what can run on the device still does, identical to C
	a=$(vol-resize --device opencl 64x64 "$T/case.nrrd" | cksum); b=$(vol-resize --device cpu 64x64 "$T/case.nrrd" | cksum)
	check newuser/opencl_resize_runs test "$a" = "$b"
else
	skip newuser/opencl_no_fallback "no OpenCL device (pocl-opencl-icd)"
fi

# ---------------------------------------------------------------- 7. a case cleaned to nothing is skipped
DS=$T/ds
mkdir -p "$DS/imagesTr" "$DS/labelsTr"
for c in c01 c02; do
	$GEN --size 64x56x18 --seed ${c#c0} --image "$DS/imagesTr/${c}_0000.nii.gz" --label "$DS/labelsTr/$c.nii.gz" > /dev/null
done
cp "$DS/imagesTr/c01_0000.nii.gz" "$DS/imagesTr/tiny_0000.nii.gz"
# only structures under MIN=1000 voxels
"$PY" -c "
import nibabel as nib, numpy as np
im = nib.load('$DS/labelsTr/c01.nii.gz'); a = np.zeros(im.shape, np.uint8)
a[10:20, 10:20, 4:8] = 1; a[40:45, 30:35, 2:5] = 2
nib.save(nib.Nifti1Image(a, im.affine), '$DS/labelsTr/tiny.nii.gz')"
for k in "" -k; do
	out=$T/out$k
	make --no-print-directory -f pipelines/ct-npz.mk MEDPIPE_BIN="$PWD/$BIN" IN="$DS" OUT="$out" -j2 $k > "$T/mk.log" 2>&1; rc=$?
	if [ $rc -eq 0 ] && [ -s "$out/npz/c01.npz" ] && [ -s "$out/npz/c02.npz" ] && [ ! -e "$out/npz/tiny.npz" ] \
		&& [ "$(grep -c '^skip   tiny: no label left after the clean-up' "$T/mk.log")" -eq 1 ] \
		&& [ "$(grep -c 'roi-crop: .*case tiny: .*case left out' "$T/mk.log")" -eq 1 ] \
		&& grep -q '^tiny,0,,,,skipped: no label left' "$out/summary.csv" \
		&& [ "$(grep -c ',ok$' "$out/summary.csv")" -eq 2 ] && grep -q '1 skipped' "$T/mk.log"; then
		pass "newuser/pipeline_skips_empty_case${k:+_keep_going}"
	else
		fail "newuser/pipeline_skips_empty_case${k:+_keep_going}" "rc $rc: $(tr '\n' '|' < "$T/mk.log") :: $(tr '\n' '|' < "$out/summary.csv" 2>/dev/null)"
	fi
done
# run again: nothing rebuilt, the skip said again, sanity.mk skips it too
make --no-print-directory -f pipelines/ct-npz.mk MEDPIPE_BIN="$PWD/$BIN" IN="$DS" OUT="$T/out" > "$T/mk2.log" 2>&1
check newuser/pipeline_skip_rerun test $? -eq 0 -a "$(grep -c '^prep' "$T/mk2.log")" -eq 0
if [ -x "$BIN/vol-preview" ]; then
	make --no-print-directory -f pipelines/sanity.mk MEDPIPE_BIN="$PWD/$BIN" IN="$DS" OUT="$T/out" -j2 > "$T/mk3.log" 2>&1
	check newuser/sanity_skips_empty_case test $? -eq 0 -a -s "$T/out/preview/c01.png" -a ! -e "$T/out/preview/tiny.png"
fi

# ---------------------------------------------------------------- 10. more a newcomer meets
# a program started at a prompt with no input says so, instead of waiting
if have_cmd script; then
	script -qc "$BIN/vol-info; echo rc=\$?" /dev/null < /dev/null > "$T/tty.log" 2>&1
	if grep -q 'vol-info: no input: standard input is a terminal' "$T/tty.log" && grep -q 'rc=2' "$T/tty.log"; then
		pass newuser/stdin_terminal_refused
	else
		fail newuser/stdin_terminal_refused "$(tr '\r\n' '  ' < "$T/tty.log")"
	fi
else
	skip newuser/stdin_terminal_refused "script(1) missing"
fi
# vol2npz given its output where inputs go names the fix
expect_err newuser/vol2npz_output_as_input 2 "vol2npz: $T/new.npz: no such input file; to write it, give -o $T/new.npz" \
	vol2npz "$T/new.npz"
# vol-preview names like vol-save's and vol2npz's
{ vol-cat "$T/p1.nii.gz" --label "$T/p1_seg.nii.gz"; vol-cat --case two "$T/p1.nii.gz" --label "$T/p1_seg.nii.gz"; } > "$T/two.nrrd"
check newuser/vol_preview_case_pattern sh -c "vol-preview -o '$T/pv_{case}_{n}.png' '$T/two.nrrd' && test -s '$T/pv_p1_1.png' -a -s '$T/pv_two_2.png'"
# vol-save says how to name a frame it has no name for
expect_err newuser/vol_save_unnamed_role 1 'frame 2 \(role label\): no output name for it \(give one, or --as label=NAME\)' \
	vol-save -i "$T/two.nrrd" --as image="$T/x_{case}.nii.gz"
# no doubled ': :' in messages of library calls
echo 'five' > "$T/bad.map"
expect_err newuser/no_double_colon 2 'bad.map: line 1: want FROM:TO' label-map --map-file "$T/bad.map" "$T/p1.nrrd"

# ---------------------------------------------------------------- 5. ... and in the dataset Makefiles
# temporaries left by SIGKILLed runs (a pid that is no process) go when a
# file is next written in their folder; a second interrupted run does not add
# to them
dead=999999; while kill -0 $dead 2>/dev/null; do dead=$((dead - 1)); done
touch "$T/out/npz/.c01.tmp-$dead-AbC123.npz" "$T/out/npz/.c01.tmp-$dead-XyZ789.npz" "$T/out/npz/.c02.tmp-$dead-QqQ111.npz"
sleep 1; touch "$T/out/work/c01.nrrd"
make --no-print-directory -f pipelines/ct-npz.mk MEDPIPE_BIN="$PWD/$BIN" IN="$DS" OUT="$T/out" > "$T/mk4.log" 2>&1
left=$(ls -A "$T/out/npz" | grep '\.tmp-' | tr '\n' ' ')
check newuser/pipeline_stale_tmp_removed test -z "$left"
# a real kill: the whole run SIGKILLed while vol2npz holds its temporary
# (a wrapper keeps its input open), twice; then a run to the end
mkdir -p "$T/wb"
for p in "$PWD/$BIN"/*; do ln -s "$p" "$T/wb/"; done
rm "$T/wb/vol2npz"
# (called as: vol2npz --layout medsam -o OUT WORK; the roles layout opens OUT at the first frame)
printf '#!/bin/sh\n{ cat "$5"; sleep 30; } | "%s/vol2npz" -o "$4"\n' "$PWD/$BIN" > "$T/wb/vol2npz"; chmod +x "$T/wb/vol2npz"
for k in 1 2; do
	sleep 1; touch "$T/out/work/c01.nrrd"
	setsid make --no-print-directory -f pipelines/ct-npz.mk MEDPIPE_BIN="$T/wb" IN="$DS" OUT="$T/out" "$T/out/npz/c01.npz" > /dev/null 2>&1 &
	mk=$!
	# the first run's temporary is removed by the second run's vol2npz when it starts
	w=0; while [ -z "$(ls -A "$T/out/npz" | grep "^\.c01\.tmp-$(pgrep -f "$PWD/$BIN/vol2npz -o $T/out/npz/c01.npz" | head -1)-")" ] && [ $w -lt 300 ]; do sleep 0.05; w=$((w + 1)); done
	kill -KILL -$mk 2>/dev/null; wait $mk 2>/dev/null
done
n=$(ls -A "$T/out/npz" | grep -c '^\.c01\.tmp-')
make --no-print-directory -f pipelines/ct-npz.mk MEDPIPE_BIN="$PWD/$BIN" IN="$DS" OUT="$T/out" > "$T/mk5.log" 2>&1
if [ "$n" -eq 1 ] && [ "$(ls -A "$T/out/npz" | grep -c '^\.c01\.tmp-')" -eq 0 ] && [ -s "$T/out/npz/c01.npz" ]; then
	pass newuser/pipeline_killed_twice_no_tmp_left
else
	fail newuser/pipeline_killed_twice_no_tmp_left "$n temporaries after two kills (want 1), then: $(ls -A "$T/out/npz" | tr '\n' ' ')"
fi
# what is not a medpipe temporary of a gone writer stays: other names, live
# writers' (this shell's pid), and ones whose lock is held
d=$T/keep; mkdir -p "$d"
touch "$d/.a.tmp-$dead-AbC12.npz" "$d/.a.tmp-x$dead-AbC123.npz" "$d/a.tmp-$dead-AbC123.npz" "$d/.a.tmp-$$-AbC123.npz" \
	"$d/.b.tmp-$dead-LoCk12.nrrd" "$d/.c.tmp-$dead-GoNe12.nii.gz" "$d/.d.tmp-$dead-GoNe12"
( flock -x 9; sleep 3 ) 9< "$d/.b.tmp-$dead-LoCk12.nrrd" &
sleep 0.3
vol2npz -o "$d/x.npz" "$T/p1.nrrd"
wait
bad=""
for f in ".a.tmp-$$-AbC123.npz" ".a.tmp-$dead-AbC12.npz" ".a.tmp-x$dead-AbC123.npz" ".b.tmp-$dead-LoCk12.nrrd" "a.tmp-$dead-AbC123.npz" x.npz; do
	[ -e "$d/$f" ] || bad="$bad removed:$f"
done
for f in ".c.tmp-$dead-GoNe12.nii.gz" ".d.tmp-$dead-GoNe12"; do
	[ ! -e "$d/$f" ] || bad="$bad kept:$f"
done
check newuser/stale_tmp_only_gone_writers test -z "$bad"

# ---------------------------------------------------------------- 1. the README's first pipeline makes MedSAM's npz
R=$T/readme; mkdir -p "$R/seg"
if have_cmd dump2dcm; then
	$GEN --size 64x56x18 --seed 1 --case case01 --dicom "$R/ct/case01" --label "$R/seg/case01.nii.gz" > /dev/null 2>&1
	"$PY" tests/gen/examples.py | awk -F'\t' '$1 == "README.md" && /dcm2vol ct\/case01/ { print $3 }' > "$T/readme.cmd"
	"$PY" tests/gen/examples.py | awk -F'\t' '$1 == "README.md" && $3 == "mkdir -p out"' | grep -q . || fail newuser/readme_first_pipeline "no 'mkdir -p out' before it"
	mkdir -p "$R/out"
	(cd "$R" && bash -o pipefail -c "$(cat "$T/readme.cmd")") > "$T/readme.log" 2>&1
	check newuser/readme_first_pipeline "$PY" -c "
import numpy as np
z = np.load('$R/out/case01.npz')
assert sorted(z.keys()) == ['gts', 'imgs', 'spacing'], list(z.keys())
assert z['imgs'].dtype == np.uint8 and z['gts'].dtype == np.uint8 and z['imgs'].shape == z['gts'].shape
assert z['imgs'].shape[1:] == (1024, 1024) and z['imgs'].max() == 255 and z['imgs'].min() == 0
assert all(z['gts'][k].any() for k in range(z['gts'].shape[0]))
assert z['spacing'].dtype == np.float64 and z['spacing'].shape == (3,)"
else
	skip newuser/readme_first_pipeline "dump2dcm (dcmtk) missing: no DICOM phantom"
fi
