#!/bin/sh
# File formats: medpipe's readers/writers vs SimpleITK (ITK's NIfTI, NRRD and
# MetaImage IO; nibabel when SimpleITK is absent) on a CT-sized volume
# (512x512xBENCH_SLICES int16, default 200, smooth anatomy plus noise):
#   read .nii.gz  -> write .nrrd     (vol-cat F > G;  sitk.ReadImage + WriteImage)
#   read .nrrd    -> write .nii.gz   (library conv;   sitk.ReadImage + WriteImage, compressed)
#   read .mha     -> write .nii      (library conv;   sitk.ReadImage + WriteImage)
# Both sides do the whole conversion, files on the same disk, best of 3.
# Prints seconds and the ratio medpipe/peer (< 1: medpipe faster).
# Repeat: BENCH=formats make bench
cd "$(dirname "$0")/../.." || exit 1
VPY=${VPY:-.venv/bin/python3}; [ -x "$VPY" ] || VPY=/usr/bin/python3
CONV=build/tests/test_fmt
[ -x "$CONV" ] || { echo "formats: SKIP (build/tests/test_fmt not built)"; exit 0; }
N=${BENCH_SLICES:-200}
D=$(mktemp -d "${TMPDIR:-/tmp}/bench-formats.XXXXXX")
trap 'rm -rf "$D"' EXIT
$VPY - "$D" "$N" <<'PYEOF' || exit 1
import sys, numpy as np
d, n = sys.argv[1], int(sys.argv[2])
z, y, x = np.mgrid[0:n, 0:512, 0:512].astype(np.float32)
body = ((x - 256) ** 2 / 200 ** 2 + (y - 256) ** 2 / 150 ** 2) < 1
v = np.where(body, 40 + 30 * np.sin(z / 9) * np.cos(x / 23), -1000) + np.random.default_rng(1).normal(0, 15, body.shape)
v = v.astype(np.int16)
try:
    import SimpleITK as sitk
    img = sitk.GetImageFromArray(v)
    img.SetSpacing((0.7, 0.7, 1.25))
    img.SetOrigin((-180.0, -150.0, 30.0))
    sitk.WriteImage(img, d + "/ct.nii.gz", True)
    sitk.WriteImage(img, d + "/ct.nrrd", False)
    sitk.WriteImage(img, d + "/ct.mha", False)
except ImportError:
    import nibabel as nib
    nib.save(nib.Nifti1Image(np.transpose(v), np.diag([-0.7, -0.7, 1.25, 1])), d + "/ct.nii.gz")
PYEOF
best() {  # best of 3 wall-clock seconds of "$@"
	b=""
	for i in 1 2 3; do
		s=$(date +%s.%N)
		"$@" > /dev/null 2>&1 || { echo "failed: $*" >&2; return 1; }
		e=$(date +%s.%N)
		b=$(echo "$s $e $b" | awk '{t=$2-$1; if ($3 == "" || t < $3) print t; else print $3}')
	done
	echo "$b"
}
peer() {  # peer IN OUT COMPRESS
	$VPY -c "
import sys
try:
    import SimpleITK as sitk
    sitk.WriteImage(sitk.ReadImage(sys.argv[1]), sys.argv[2], sys.argv[3] == '1')
except ImportError:
    import nibabel as nib, numpy as np
    im = nib.load(sys.argv[1]); nib.save(nib.Nifti1Image(np.asanyarray(im.dataobj), im.affine), sys.argv[2].replace('.nrrd', '.nii'))
" "$1" "$2" "$3"
}
volcat() { if [ -x bin/vol-cat ]; then bin/vol-cat "$1" > "$2"; else $CONV conv "$1" "$2"; fi; }
PEER=$($VPY -c "import SimpleITK" 2>/dev/null && echo SimpleITK || echo nibabel)
report() {  # name ours peer
	echo "$1 $2 $3" | awk -v p="$PEER" '{printf "formats %s: medpipe %.2fs, %s %.2fs, ratio %.2f\n", $1, $2, p, $3, $2 / $3}'
}
a=$(best volcat "$D/ct.nii.gz" "$D/o1.nrrd") && b=$(best peer "$D/ct.nii.gz" "$D/p1.nrrd" 0) && report nii.gz-to-nrrd "$a" "$b"
if [ -f "$D/ct.nrrd" ]; then
	a=$(best $CONV conv "$D/ct.nrrd" "$D/o2.nii.gz") && b=$(best peer "$D/ct.nrrd" "$D/p2.nii.gz" 1) && report nrrd-to-nii.gz "$a" "$b"
	a=$(best $CONV conv "$D/ct.mha" "$D/o3.nii") && b=$(best peer "$D/ct.mha" "$D/p3.nii" 0) && report mha-to-nii "$a" "$b"
	ls -l "$D"/o2.nii.gz "$D"/p2.nii.gz | awk '{printf "  %s: %d bytes\n", $NF, $5}' | sed "s|$D/||"
fi
