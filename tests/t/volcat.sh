#!/bin/sh
# vol-cat and vol-save: roles, cases, label maps, names and patterns.
. tests/lib.sh
$PY - "$T" <<'PYEOF'
import sys, numpy as np, nibabel as nib
T = sys.argv[1]
aff = np.array([[-0.8, 0, 0, 100], [0, -0.8, 0, 120], [0, 0, 2.5, -50], [0, 0, 0, 1]])
img = (np.arange(8 * 9 * 4).reshape(8, 9, 4) % 300 - 100).astype(np.int16)
lab = np.zeros((8, 9, 4), np.float32); lab[2:5, 3:6, 1:3] = 2; lab[6, 7, 3] = 1
nib.save(nib.Nifti1Image(img, aff), T + "/liver_003_0000.nii.gz")
nib.save(nib.Nifti1Image(lab, aff), T + "/liver_003.nii.gz")
bad = lab.copy(); bad[0, 0, 0] = 0.5
nib.save(nib.Nifti1Image(bad, aff), T + "/bad.nii.gz")
PYEOF
I=$T/liver_003_0000.nii.gz L=$T/liver_003.nii.gz
vol-cat "$I" --label "$L" > "$T/s.nrrd"
check roles sh -c "vol-info -b $T/s.nrrd | cut -f2,3 | tr '\t\n' ': ' | grep -qx 'liver_003:image liver_003:label '"
check float-label-to-uint8 sh -c "vol-info -b $T/s.nrrd | sed -n 2p | cut -f4 | grep -qx uint8"
check label-values sh -c "vol-info $T/s.nrrd | grep -q 'labels:      2: 1(1) 2(18)'"
check case-option sh -c "vol-cat --case X1 $I --label $L | vol-info -b | cut -f2 | sort -u | grep -qx X1"
check mask-role sh -c "vol-cat $I --mask $L | vol-info -b | cut -f3 | tr '\n' ' ' | grep -qx 'image mask '"
check source-key sh -c "vol-info -k $T/s.nrrd | grep -q 'medpipe.source:=NIfTI'"
expect_err label-not-integer 1 "^vol-cat: .*bad.nii.gz: label map holds a value that is not a whole number" vol-cat --label "$T/bad.nii.gz"
expect_err missing-file 1 "^vol-cat: .*nope.nii.gz" vol-cat "$T/nope.nii.gz"
expect_err bad-role 2 "role" vol-cat --role "a b" "$I"
# stream in the middle of files keeps its frames
check stream-arg sh -c "vol-cat $I - $L < $T/s.nrrd | vol-info -b | wc -l | grep -qx 4"
# vol-save: by order, by pattern, by role; voxels and geometry kept (nibabel)
check save-pattern sh -c "vol-save $T/out-{case}-{role}.nii.gz < $T/s.nrrd && test -f $T/out-liver_003-image.nii.gz && test -f $T/out-liver_003-label.nii.gz"
check save-as sh -c "vol-save -p --as label=$T/sub/seg.nii.gz --as image=$T/sub/img.nii.gz < $T/s.nrrd && test -f $T/sub/seg.nii.gz"
check nibabel-roundtrip $PY -c "
import nibabel as nib, numpy as np
a = nib.load('$I'); b = nib.load('$T/sub/img.nii.gz')
assert np.array_equal(np.asanyarray(a.dataobj), np.asanyarray(b.dataobj))
assert np.allclose(a.affine, b.affine, atol=1e-6), (a.affine, b.affine)
l = nib.load('$T/sub/seg.nii.gz'); assert l.get_data_dtype() == np.uint8
assert np.array_equal(np.asanyarray(l.dataobj), np.asanyarray(nib.load('$L').dataobj))
"
# same bytes for the same input and options
check deterministic sh -c "vol-cat $I --label $L | cmp - $T/s.nrrd"
# DICOM folders through the dcm2vol library, a label from another tool beside them
if have_data dicom/ct-3slice/In; then
	check dicom-with-label sh -c "vol-cat $DATA/dicom/ct-3slice/In --label $DATA/dicom/ct-3slice/labels/liver_seg.nrrd > $T/d.nrrd && $PY -c \"
import sys; sys.path.insert(0, 'tests'); import numpy as np; from mpstream import read_frames
a, b = read_frames(open('$T/d.nrrd', 'rb').read())
assert a.keys['medpipe.case'] == b.keys['medpipe.case'] and b.keys['medpipe.role'] == 'label'
assert np.allclose(a.affine(), b.affine(), atol=1e-4), (a.affine(), b.affine())
assert a.array.shape == b.array.shape
\""
else
	skip dicom-with-label "no $DATA/dicom/ct-3slice"
fi
# vol-save writes NIfTI as the data arrives; a vector frame (channels fastest
# in the stream, slowest in NIfTI) is reordered; a truncated stream leaves no file
$PY -c "
import numpy as np
a = np.arange(3 * 4 * 5 * 6, dtype='<f4').reshape(6, 5, 4, 3)
h = ('NRRD0004\ntype: float\ndimension: 4\nspace: left-posterior-superior\nsizes: 3 4 5 6\n'
     'kinds: vector domain domain domain\nspace directions: none (1,0,0) (0,1,0) (0,0,2)\n'
     'endian: little\nencoding: raw\nspace origin: (0,0,0)\nmedpipe.role:=image\n\n').encode()
open('$T/vec.nrrd', 'wb').write(h + a.tobytes())"
check save-nifti-vector sh -c "vol-save -i $T/vec.nrrd $T/vec.nii.gz && $PY -c \"
import nibabel as nib, numpy as np
b = np.asanyarray(nib.load('$T/vec.nii.gz').dataobj)
a = np.arange(3 * 4 * 5 * 6, dtype='<f4').reshape(6, 5, 4, 3)
assert b.shape == (4, 5, 6, 1, 3) and np.array_equal(b.reshape(4, 5, 6, 3), a.transpose(2, 1, 0, 3))
\""
head -c 300 "$T/vec.nrrd" > "$T/vec-cut.nrrd"
expect_err save-nifti-truncated 1 "truncated" vol-save -i "$T/vec-cut.nrrd" "$T/cut.nii"
check save-nifti-truncated-no-file test ! -e "$T/cut.nii"
