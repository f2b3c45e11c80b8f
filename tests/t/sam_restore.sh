#!/bin/sh
# The SAM pipeline puts its masks back on the original grid: phantom ->
# hu-window (medsam) -> roi-crop -> vol-resize --longest 256 --pad ->
# sam-embed -> sam-decode --from-label -> vol-restore gives a mask frame whose
# grid (sizes, directions, origin) is the original image's as nibabel reads
# it from the NIfTI, and the label frame that went the same way comes back
# equal to the original label inside the crop (nibabel, numpy).
# Weights: a random tiny SAM made with the official segment-anything code.
. tests/lib.sh

if ! have_py torch || ! have_py nibabel; then
	skip_ref sam-restore "torch or nibabel missing in $VPY"
	exit 0
fi
if ! "$VPY" tests/gen/sam_ckpt.py "$T/tiny.pth" --config tiny --seed 0 > /dev/null 2> "$T/ck.err"; then
	skip_ref sam-restore "no segment_anything to make weights: $(tail -n 1 "$T/ck.err")"
	exit 0
fi
"$VPY" tests/gen/phantom.py --size 96x80x12 --image "$T/img.nii.gz" --label "$T/lab.nii.gz" > /dev/null ||
	{ fail sam-restore "phantom.py failed"; exit 0; }

check sam-restore-pipeline sh -c "vol-cat '$T/img.nii.gz' --label '$T/lab.nii.gz' |
	hu-window --preset soft-tissue --mapping medsam | roi-crop --bbox 3d --margin 4 |
	vol-resize --longest 256 --pad | sam-embed -w '$T/tiny.pth' |
	sam-decode -w '$T/tiny.pth' --from-label | vol-restore > '$T/back.nrrd'"
# the embeddings of a whole CT (16 MiB a slice) are spooled to a mapped file
# above 1 GiB; MEDPIPE_SPOOL_BYTES=1 takes that path here: same bytes out
vol-cat "$T/img.nii.gz" --label "$T/lab.nii.gz" | hu-window --preset soft-tissue --mapping medsam |
	sam-embed -w "$T/tiny.pth" --slices 3-5 > "$T/emb.nrrd" 2> "$T/emb.err"
sam-decode -w "$T/tiny.pth" --from-label "$T/emb.nrrd" > "$T/d1.nrrd" 2> "$T/d1.err"
MEDPIPE_SPOOL_BYTES=1 sam-decode -w "$T/tiny.pth" --from-label "$T/emb.nrrd" > "$T/d2.nrrd" 2> "$T/d2.err"
if [ -s "$T/d1.nrrd" ] && cmp -s "$T/d1.nrrd" "$T/d2.nrrd"; then pass sam-decode-spooled-embeddings
else fail sam-decode-spooled-embeddings "outputs differ: $(cat "$T/emb.err" "$T/d1.err" "$T/d2.err" | head -c 300)"; fi
expect_err sam-decode-spool-dir-missing 1 "spool file in /nonexistent" \
	env MEDPIPE_SPOOL_BYTES=1 TMPDIR=/nonexistent sam-decode -w "$T/tiny.pth" --from-label "$T/emb.nrrd"

check sam-restore-save vol-save -i "$T/back.nrrd" --as mask="$T/mask.nii.gz" --as label="$T/label.nii.gz"

"$VPY" - "$T" <<'EOF'
import sys
import nibabel as nib
import numpy as np
T = sys.argv[1]
lab = nib.load(T + "/lab.nii.gz")
L = np.asanyarray(lab.dataobj)
for role in ("mask", "label"):
    try:
        img = nib.load("%s/%s.nii.gz" % (T, role))
    except Exception as e:
        print("FAIL sam-restore-%s-grid: %s" % (role, e))
        continue
    a = np.asanyarray(img.dataobj)
    good = a.shape == L.shape and np.allclose(img.affine, lab.affine, atol=1e-4)
    print(("PASS sam-restore-%s-grid" % role) if good else
          "FAIL sam-restore-%s-grid: shape %s vs %s, affine\n%s\nvs\n%s" % (role, a.shape, L.shape, img.affine, lab.affine))
    if role == "label" and good:
        # the crop keeps every labelled voxel (bbox + margin): all of it back
        print("PASS sam-restore-label-values" if np.array_equal(a, L) else
              "FAIL sam-restore-label-values: %d voxels differ" % int((a != L).sum()))
    if role == "mask" and good:
        # mask labels are the label values the prompts came from
        extra = sorted(set(np.unique(a)) - set(np.unique(L)))
        print("PASS sam-restore-mask-labels" if not extra else "FAIL sam-restore-mask-labels: %s" % extra)
        # and there is a mask: every labelled slice was prompted, so each label's
        # mask is somewhere, and all of it inside the crop (the labels' box + 4)
        idx = np.argwhere(L > 0)
        lo, hi = np.maximum(idx.min(0) - 4, 0), idx.max(0) + 4
        box = np.zeros(L.shape, bool)
        box[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, lo[2]:hi[2] + 1] = True
        got = sorted(int(v) for v in np.unique(a[a > 0]))
        want = sorted(int(v) for v in np.unique(L[L > 0]))
        outside = int(((a > 0) & ~box).sum())
        print("PASS sam-restore-mask-not-empty (%d voxels, labels %s)" % (int((a > 0).sum()), got)
              if got == want and not outside else
              "FAIL sam-restore-mask-not-empty: mask labels %s, wanted %s; %d voxels outside the crop"
              % (got, want, outside))
EOF
