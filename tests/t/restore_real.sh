#!/bin/sh
# Real data (TotalSegmentator's example CT and MR with their label maps):
# label -> roi-crop -> vol-resize -> vol-restore -> vol-save NIfTI gives back the
# label map exactly with the original affine (checked with nibabel), and
# hu-window's MedSAM mapping equals numpy on the image as nibabel reads it.
. tests/lib.sh
D=nifti/totalseg
have_data $D/example_ct_sm.nii.gz || { skip restore-real "$DATA/$D absent"; exit 0; }
for t in vol-cat vol-save; do have_cmd $t || { skip restore-real "$t not built"; exit 0; }; done
cmpnii() {   # cmpnii NAME RESTORED ORIGINAL
	$PY - "$2" "$3" <<'PYEOF' > "$T/cmp" 2>&1 && pass "$1" || fail "$1" "$(tail -c 300 "$T/cmp")"
import sys
import nibabel as nib
import numpy as np
a, b = nib.load(sys.argv[1]), nib.load(sys.argv[2])
x, y = np.asarray(a.dataobj), np.asarray(b.dataobj)
assert x.shape == y.shape, (x.shape, y.shape)
assert np.array_equal(x, y), "%d voxels differ" % int((x != y).sum())
assert np.allclose(a.affine, b.affine, atol=1e-4), (a.affine, b.affine)
PYEOF
}
for m in ct mr; do
	img=$DATA/$D/example_${m}_sm.nii.gz
	seg=$DATA/$D/example_seg.nii.gz; [ $m = mr ] && seg=$DATA/$D/example_seg_mr.nii.gz
	vol-cat "$img" --label "$seg" | roi-crop --slices labelled --bbox 2d --margin 3 \
		| vol-resize --longest 1024 --pad --interp bspline3 | vol-restore | vol-save --as label="$T/$m-seg.nii.gz" --as image="$T/$m-img.nii.gz" 2> "$T/err" \
		|| { fail restore-real-$m "pipeline: $(cat "$T/err")"; continue; }
	cmpnii restore-real-$m-slices-bbox-longest-pad "$T/$m-seg.nii.gz" "$seg"
	vol-cat "$img" --label "$seg" | roi-crop --bbox 3d --margin-mm 10 | vol-resize 256x256 | vol-restore --ref "$img" --roles label \
		| vol-save --as label="$T/$m-seg2.nii.gz" --as image="$T/$m-img2.nii.gz" 2> "$T/err" \
		|| { fail restore-real-$m-ref "pipeline: $(cat "$T/err")"; continue; }
	cmpnii restore-real-$m-bbox3d-mm-ref "$T/$m-seg2.nii.gz" "$seg"
done
# hu-window MedSAM CT mapping on the real CT, against numpy on nibabel's array
vol-cat "$DATA/$D/example_ct_sm.nii.gz" | hu-window --preset soft-tissue --mapping medsam | vol-save "$T/w.nii.gz" 2> "$T/err" || fail window-real-ct "$(cat "$T/err")"
$PY - "$T/w.nii.gz" "$DATA/$D/example_ct_sm.nii.gz" <<'PYEOF' > "$T/cmp" 2>&1 && pass window-real-ct-medsam || fail window-real-ct-medsam "$(tail -c 300 "$T/cmp")"
import sys
import nibabel as nib
import numpy as np
w = np.asarray(nib.load(sys.argv[1]).dataobj)
x = np.asarray(nib.load(sys.argv[2]).dataobj)
if x.dtype.kind == "f" and np.all(x == np.round(x)):
    x = x.astype(np.int16)     # SimpleITK would read the stored int16
p = np.clip(x, -160.0, 240.0)
p = (p - p.min()) / (p.max() - p.min()) * 255.0
assert np.array_equal(w, np.uint8(p)), "%d voxels differ" % int((w != np.uint8(p)).sum())
PYEOF
