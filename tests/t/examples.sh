#!/bin/sh
# Every documented example is a test (issue 10): each command of README.md,
# HACKING.md, the EXAMPLES of every man page and the usage lines of
# examples/*.sh (extracted by tests/gen/examples.py) runs as written, with
# bash -o pipefail, in a folder holding generated files of the names the
# examples use (ct.nii.gz, seg.nii.gz, ct/case01/ DICOM, study/ with three
# series, case.vol, emb.nrrd, medsam_vit_b.pth ...).  An example passes when
# it exits 0.
#
# Markers, read from the example's text: a weights file (*.pth) is made by
# tests/gen/sam_ckpt.py with random weights (a small model, image 256, named as
# the example names it), so those examples need torch and segment_anything;
# --device opencl / MEDPIPE_DEVICE=opencl:N needs that OpenCL device.  Where
# a need is not met the example is listed as SKIP with the reason.
# `make check` is not run from inside itself; `make demo` runs as
# examples/demo.sh (what it runs after building).
. tests/lib.sh
GEN="$PY tests/gen/phantom.py"
ROOT=$PWD
$PY -c "import numpy, nibabel" 2>/dev/null || { skip examples "numpy or nibabel missing"; exit 0; }
"$PY" tests/gen/examples.py > "$T/examples.tsv" || { fail examples/extract "tests/gen/examples.py failed"; exit 0; }
n=$(wc -l < "$T/examples.tsv")
check "examples/extracted_$n" test "$n" -ge 40

# ---------------------------------------------------------------- fixtures
E=$T/ex
mkdir -p "$E/seg" "$E/ct" "$E/imagesTr" "$E/labelsTr" "$E/study"
{
	$GEN --size 64x60x8 --seed 1 --case ct --image "$E/ct.nii.gz" --label "$E/seg.nii.gz" \
		--perturbed "$E/pred.nii.gz" &&
	$GEN --size 64x60x8 --seed 2 --modality mr --image "$E/mr.nii.gz" --label "$T/mrseg.nii.gz" &&
	$GEN --size 64x60x16 --seed 3 --case case01 --dicom "$E/ct/case01" --label "$E/seg/case01.nii.gz" &&
	for s in 1 2 3; do
		$GEN --size 48x44x12 --seed $((10 + s)) --case study --dicom "$E/study/s$s" --label "$T/st$s.nii.gz" || exit 1
	done &&
	cp "$E/ct.nii.gz" "$E/imagesTr/liver_003_0000.nii.gz" && cp "$E/seg.nii.gz" "$E/labelsTr/liver_003.nii.gz" &&
	cp "$E/seg.nii.gz" "$E/ref.nii.gz" &&
	vol-cat "$E/ct.nii.gz" --label "$E/seg.nii.gz" > "$E/ct.nrrd" &&
	cp "$E/ct.nii.gz" "$E/train.nii.gz" && cp "$E/seg.nii.gz" "$E/train-seg.nii.gz" &&
	$GEN --size 64x60x8 --seed 5 --case test --image "$E/test.nii.gz" --label "$E/test-seg.nii.gz" &&
	vol-cat "$E/test.nii.gz" --label "$E/test-seg.nii.gz" > "$E/test.nrrd" &&
	vol-cat "$E/ct.nii.gz" --label "$E/seg.nii.gz" > "$E/case.vol" &&
	cp "$E/case.vol" "$E/case.nrrd" &&
	{ cat "$E/case.vol"; vol-cat --case two "$E/mr.nii.gz" --label "$T/mrseg.nii.gz"; } > "$E/cases.nrrd" &&
	cp "$E/cases.nrrd" "$E/many.vol" &&
	vol-cat --label "$E/seg.nii.gz" > "$E/seg.vol" && cp "$E/seg.vol" "$E/in.nrrd" &&
	vol-cat --mask "$E/pred.nii.gz" > "$E/mask.vol" &&
	vol-cat --mask "$E/pred.nii.gz" --label "$E/seg.nii.gz" > "$E/pred.nrrd" &&
	vol-save -i "$E/case.vol" "$E/img.mha" "$E/seg.mha"
} > "$T/fix.log" 2>&1 || { fail examples/fixtures "$(tail -3 "$T/fix.log" | tr '\n' ' ')"; exit 0; }

# pictures and a microscopy stack (PIL, tifffile), a slide (the shared data)
"$PY" - "$E" <<'PYEOF' > "$T/pic.log" 2>&1 || fail examples/fixtures-pictures "$(tail -2 "$T/pic.log" | tr '\n' ' ')"
import sys, numpy as np
from PIL import Image
import tifffile
e = sys.argv[1]
y, x = np.mgrid[0:96, 0:128]
disc = (x - 60) ** 2 + (y - 50) ** 2 < 25 ** 2
Image.fromarray((40 + 120 * disc + (x % 7)).astype(np.uint8)).save(e + "/img.png")
Image.fromarray((255 * disc).astype(np.uint8)).save(e + "/mask.png")
stack = (np.arange(4 * 2 * 32 * 48) % 4000).astype(np.uint16).reshape(4, 2, 32, 48)
tifffile.imwrite(e + "/cells.ome.tiff", stack, ome=True,
                 metadata={"axes": "ZCYX", "PhysicalSizeX": 0.65, "PhysicalSizeY": 0.65, "PhysicalSizeZ": 2.0})
PYEOF
slide=""
if [ -f "$DATA/wsi/cmu-1-small-region.svs" ]; then cp "$DATA/wsi/cmu-1-small-region.svs" "$E/slide.svs"; slide=ok; fi

# weights and embeddings (a small random-weight model: image 256, grid 16)
weights=""
if [ "${MEDPIPE_FAST:-0}" = 1 ]; then
	why_w="MEDPIPE_FAST=1: examples that run a model are left out"
elif "$VPY" -c "import torch, segment_anything" 2>/dev/null || "$VPY" -c "import torch; import sys; sys.path.insert(0, 'tests/gen'); import sam_ckpt; sam_ckpt.load_sam()" 2>/dev/null; then
	if "$VPY" tests/gen/sam_ckpt.py "$E/medsam_vit_b.pth" --config tiny > "$T/ck.log" 2>&1; then
		weights=ok
		# emb.nrrd: 12 slices of 288x288 (the sam-decode examples' boxes fit);
		# for sam-tune's examples, with their label frame (they train on it)
		$GEN --size 288x288x12 --seed 4 --image "$T/big.nii.gz" --label "$T/bigseg.nii.gz" > /dev/null 2>&1 &&
		vol-cat "$T/big.nii.gz" --label "$T/bigseg.nii.gz" | hu-window --preset soft-tissue | sam-embed -t 2 -w "$E/medsam_vit_b.pth" > "$T/emb-lab.nrrd" 2> "$T/emb.log" &&
		vol-cat "$T/big.nii.gz" | hu-window --preset soft-tissue | sam-embed -t 2 -w "$E/medsam_vit_b.pth" > "$E/emb.nrrd" 2> "$T/emb.log" \
			|| { fail examples/fixture_emb "$(tail -2 "$T/emb.log" | tr '\n' ' ')"; weights=""; }
	else
		why_w="tests/gen/sam_ckpt.py failed: $(tail -1 "$T/ck.log")"
	fi
else
	why_w="needs model weights: torch and segment_anything (in $VPY) make the random-weight checkpoint"
fi
ncl=$(medpipe-devices --brief 2>/dev/null | grep -c '^opencl:')
# mpirun examples need Open MPI and a sam-tune built with it; Open MPI wants
# these as root and with more ranks than cores
mpi=""
command -v mpirun > /dev/null && "$ROOT/$BIN/sam-tune" --version 2>/dev/null | grep -q "MPI: built in" && mpi=ok
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1

# ---------------------------------------------------------------- run
i=0
lastblock=""
while IFS='	' read -r src block cmd; do
	i=$((i + 1))
	name="examples/$(basename "$src"):$i"
	short=$(printf '%s' "$cmd" | cut -c1-70)
	case "$cmd" in
	"make check"*) skip "$name $short" "make check itself (this test is part of it)"; continue ;;
	"make demo"*) cmd="DEMO_DIR=$E/demo sh $ROOT/examples/demo.sh" ;;
	esac
	case "$cmd" in
	*.pth*) [ -n "$weights" ] || { skip "$name $short" "$why_w"; continue; } ;;
	esac
	case "$cmd" in
	mpirun*) [ -n "$mpi" ] || { skip "$name $short" "needs mpirun (openmpi-bin) and sam-tune built with MPI"; continue; } ;;
	esac
	case "$cmd" in
	*slide.svs*) [ -n "$slide" ] || { skip "$name $short" "needs $DATA/wsi/cmu-1-small-region.svs"; continue; } ;;
	esac
	# (a skipped example leaves its block's folder as it was)
	need=$(printf '%s' "$cmd" | grep -o 'opencl:[0-9]*' | head -1 | cut -d: -f2)
	if [ -n "$need" ] && [ "$need" -ge "$ncl" ]; then
		skip "$name $short" "needs OpenCL device $need ($ncl present)"; continue
	fi
	case "$cmd" in
	*"--device opencl"*|*"DEVICE=opencl"*) [ "$ncl" -gt 0 ] || { skip "$name $short" "needs an OpenCL device"; continue; } ;;
	esac
	# the examples of examples/*.sh and make -f pipelines run from the tree
	case "$cmd" in
	examples/*|make\ -f\ pipelines/*) dir=$ROOT; cmd=$(printf '%s' "$cmd" | sed "s|IN=ph|IN=$E/ph|; s|OUT=ph-out|OUT=$E/ph-out|; s|examples/phantom-dataset.sh ph|examples/phantom-dataset.sh $E/ph|") ;;
	*)	# a fresh copy of the fixtures for each block of examples: one
		# example's output is not another's input, unless they are shown together
		dir=$T/run$block
		[ "$block" = "$lastblock" ] || (rm -rf "$T"/run*; mkdir "$dir"; cd "$E" && for f in * .[!.]*; do
			case "$f" in
			medsam_vit_b.pth|demo|ph|ph-out) [ -e "$f" ] && ln -s "$E/$f" "$dir/$f" ;;
			emb.nrrd) case "$cmd" in *sam-tune*emb.nrrd*) cp "$T/emb-lab.nrrd" "$dir/emb.nrrd" ;; *emb.nrrd*) cp "$f" "$dir/" ;; esac ;;
			*) [ -e "$f" ] && cp -R "$f" "$dir/" ;;
			esac
		done) ;;
	esac
	lastblock=$block
	# a model named with -w that no earlier example of the block made (a
	# tuned checkpoint) is the random-weight one
	for w in $(printf '%s' "$cmd" | grep -o -- '-w [^ ]*\.pth' | cut -c4-); do
		[ -e "$dir/$w" ] || ln -s "$E/medsam_vit_b.pth" "$dir/$w"
	done
	t0=$(date +%s)
	if (cd "$dir" && PATH="$ROOT/$BIN:$PATH" timeout 600 bash -o pipefail -c "$cmd") > "$T/out.$i" 2> "$T/err.$i" < /dev/null; then
		pass "$name $short ($(( $(date +%s) - t0 ))s)"
	else
		fail "$name $short" "exit $?: $(tail -c 300 "$T/err.$i" | tr '\n' ' ')"
	fi
done < "$T/examples.tsv"
