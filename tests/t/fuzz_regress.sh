#!/bin/sh
# Replays the fuzzing findings kept in tests/fuzz/regress/<harness>/ through
# the real programs, as a user would meet them: every file must give exit 1,
# exactly one line on stderr, no crash or sanitizer report, and nothing on
# stdout or under a final output name. (make fuzz replays them through the
# harnesses too; see tests/fuzz/README.)
. tests/lib.sh
R=tests/fuzz/regress
# run NAME CMD...: the checks above; stdout goes to $T/out/stdout
run() {
	local n rc lines
	n=$1; shift
	rm -rf "$T/out"; mkdir -p "$T/out"
	"$@" > "$T/out/stdout" 2> "$T/err" < /dev/null; rc=$?
	lines=$(wc -l < "$T/err")
	if [ "$rc" -ne 1 ]; then fail "$n" "exit $rc, wanted 1: $(head -c 300 "$T/err" | tr '\n' '|')"
	elif grep -Eq 'Sanitizer|runtime error|Segmentation|Aborted' "$T/err"; then fail "$n" "sanitizer: $(head -c 300 "$T/err")"
	elif [ "$lines" -ne 1 ]; then fail "$n" "$lines lines on stderr: $(head -c 300 "$T/err" | tr '\n' '|')"
	elif [ -s "$T/out/stdout" ]; then fail "$n" "wrote $(wc -c < "$T/out/stdout") bytes to stdout"
	elif [ "$(ls -A "$T/out" | grep -v '^stdout$')" ]; then fail "$n" "left $(ls -A "$T/out" | grep -v '^stdout$' | head -3 | tr '\n' ' ')"
	else pass "$n"; fi
}
# split_nul FILE HDR DATA: the bytes of FILE before its first NUL byte to HDR,
# those after it to DATA (the fz_file.c FZ_SPLIT harnesses' input)
split_nul() {
	local k
	k=$(od -An -v -tu1 -w1 "$1" | grep -n -m1 -x ' *0' | cut -d: -f1)
	if [ -z "$k" ]; then cp "$1" "$2"; : > "$3"
	else head -c $((k - 1)) "$1" > "$2"; tail -c +$((k + 1)) "$1" > "$3"; fi
}
count=0
for f in $R/*/*; do
	[ -f "$f" ] || continue
	h=$(basename "$(dirname "$f")")
	n="fuzz-regress-$h-$(basename "$f")"
	in=$T/in; rm -rf "$in"; mkdir -p "$in"
	count=$((count + 1))
	case $h in
	nrrd_stream) run "$n" vol-save -i "$f" "$T/out/x.nrrd" ;;
	nrrd)     cp "$f" "$in/x.nrrd"; run "$n" vol-cat "$in/x.nrrd" ;;
	nifti)    cp "$f" "$in/x.nii"; run "$n" vol-cat "$in/x.nii" ;;
	analyze)  head -c 348 "$f" > "$in/x.hdr"; tail -c +349 "$f" > "$in/x.img"; run "$n" vol-cat "$in/x.hdr" ;;
	meta)     cp "$f" "$in/x.mha"; run "$n" vol-cat "$in/x.mha" ;;
	npy)      cp "$f" "$in/x.npy"; run "$n" vol-cat "$in/x.npy" ;;
	npz)      cp "$f" "$in/x.npz"; run "$n" vol-cat "$in/x.npz" ;;
	npzboxes) cp "$f" "$in/x.npz"; run "$n" sam-decode --boxes "$in/x.npz" ;;
	torch|safetensors) run "$n" sam-embed -w "$f" ;;
	dicom)    cp "$f" "$in/x.dcm"; run "$n" dcm2vol "$in" ;;
	dicomdir) cp "$f" "$in/DICOMDIR"; run "$n" dcm2vol "$in" ;;
	png)      cp "$f" "$in/x.png"; run "$n" vol-cat "$in/x.png" ;;
	jpeg)     cp "$f" "$in/x.jpg"; run "$n" vol-cat "$in/x.jpg" ;;
	bmp)      cp "$f" "$in/x.bmp"; run "$n" vol-cat "$in/x.bmp" ;;
	tiff)     cp "$f" "$in/x.tif"; run "$n" vol-cat "$in/x.tif" ;;
	# MINC: 2 s at most (libnetcdf took 4 s, most of it in the kernel, to
	# allocate and free a 5 KB file's 2^27 declared dimensions before the
	# header walk refused it; the MINC reader works in a child process, so a
	# CPU limit would not show it)
	# and under the fuzz harnesses' MEDPIPE_MAX_BYTES (256 MiB, tests/fuzz/fuzz.h):
	# a 18 KB MINC2 file of 216M unwritten uint8 voxels (HDF5 fills them) with
	# image-min/max took 2.5 GB, its float64 scaled copy unchecked (CI's
	# fuzzing: out-of-memory); now refused before the copy
	minc)     cp "$f" "$in/x.mnc"; run "$n" env MEDPIPE_MAX_BYTES=268435456 timeout 2 vol-cat "$in/x.mnc" ;;
	niigz)    cp "$f" "$in/x.nii.gz"; run "$n" vol-cat "$in/x.nii.gz" ;;
	# detached header: the bytes before the first NUL, the data file ("d") after it
	nhdr|mhd) split_nul "$f" "$in/x.$h" "$in/d"; run "$n" vol-cat "$in/x.$h" ;;
	wsi)      cp "$f" "$in/x.tiff"; run "$n" wsi-tile "$in/x.tiff" ;;
	# --adapter DIR: adapter_config.json before the first NUL, adapter_model.safetensors after it,
	# applied to a tiny random SAM checkpoint (made once; needs torch)
	adapter)
		if [ ! -s "$T/tiny.pth" ] && ! "$VPY" tests/gen/sam_ckpt.py "$T/tiny.pth" --config tiny > "$T/ck.log" 2>&1; then
			skip "$n" "no torch to make a checkpoint: $(tail -n 1 "$T/ck.log")"; continue
		fi
		mkdir -p "$in/ad"; split_nul "$f" "$in/ad/adapter_config.json" "$in/ad/adapter_model.safetensors"
		run "$n" sam-embed -w "$T/tiny.pth" --adapter "$in/ad" ;;
	*)        fail "$n" "no program for harness $h" ;;
	esac
done
[ $count -gt 0 ] || skip fuzz-regress "no files under $R"
