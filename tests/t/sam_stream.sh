#!/bin/sh
# The order of frames through sam-embed --slices labelled and sam-decode
# --from-label, whose image or embedding frame waits for the label frame of
# its case next to it (mp_read_frames_wait): what comes out, in which order,
# for each layout of the input stream, and the one-line error when the label
# is not there. Frames the tools do not act on come out byte for byte.
# Skips without the random-weight model (torch, segment_anything).
. tests/lib.sh
"$VPY" tests/gen/sam_ckpt.py "$T/tiny.pth" --config tiny > "$T/ck.log" 2>&1 \
	|| { skip sam_stream "no random-weight model: $(tail -n 1 "$T/ck.log")"; exit 0; }
$PY tests/gen/phantom.py --size 60x50x4 --seed 3 --image "$T/a.nii.gz" --label "$T/aseg.nii.gz" > /dev/null 2>&1 \
	&& $PY tests/gen/phantom.py --size 50x40x3 --seed 4 --image "$T/b.nii.gz" --label "$T/bseg.nii.gz" > /dev/null 2>&1 \
	&& vol-cat -c A "$T/a.nii.gz" > "$T/imgA.nrrd" && vol-cat -c A --label "$T/aseg.nii.gz" > "$T/labA.nrrd" \
	&& vol-cat -c B --label "$T/bseg.nii.gz" > "$T/labB.nrrd" && vol-cat -c B --mask "$T/bseg.nii.gz" > "$T/maskB.nrrd" \
	&& sam-embed -w "$T/tiny.pth" "$T/imgA.nrrd" > "$T/embA.nrrd" \
	|| { fail sam_stream/fixture "phantom.py, vol-cat or sam-embed failed"; exit 0; }

# the frames of a stream as role:case words
frames() { vol-info "$1" | awk '/^  case:/ { c = $2 } /^  role:/ { printf "%s%s:%s", n++ ? " " : "", $2, c } END { print "" }'; }
# order NAME WANT TOOL ARGS... < stream: exit 0 and the frames WANT
order() {
	n=$1; want=$2; shift 2
	"$@" > "$T/o.nrrd" 2> "$T/o.err" || { fail "$n" "exit $?: $(head -c 300 "$T/o.err")"; return; }
	got=$(frames "$T/o.nrrd")
	if [ "$got" = "$want" ]; then pass "$n"; else fail "$n" "frames '$got', wanted '$want'"; fi
}
E="sam-embed -w $T/tiny.pth --slices labelled"
D="sam-decode -w $T/tiny.pth --from-label"
cat "$T/imgA.nrrd" "$T/labA.nrrd" "$T/maskB.nrrd" > "$T/s1"
order embed-image-label "embedding:A label:A mask:B" $E "$T/s1"
cat "$T/labA.nrrd" "$T/maskB.nrrd" "$T/imgA.nrrd" > "$T/s2"
order embed-label-first "label:A mask:B embedding:A" $E "$T/s2"
cat "$T/maskB.nrrd" "$T/imgA.nrrd" "$T/labA.nrrd" "$T/imgA.nrrd" > "$T/s3"
order embed-label-between "mask:B embedding:A label:A embedding:A" $E "$T/s3"
cat "$T/imgA.nrrd" "$T/maskB.nrrd" "$T/labA.nrrd" > "$T/s4"
expect_err embed-nothing-overtakes 1 "s4: frame 1: --slices labelled: no label frame of case 'A'" $E "$T/s4"
cat "$T/imgA.nrrd" "$T/imgA.nrrd" "$T/labA.nrrd" > "$T/s5"
expect_err embed-image-image 1 "s5: frame 1: --slices labelled: no label frame of case 'A'" $E "$T/s5"
expect_err embed-no-label 1 "imgA.nrrd: frame 1: --slices labelled: no label frame of case 'A'" $E "$T/imgA.nrrd"

cat "$T/embA.nrrd" "$T/maskB.nrrd" "$T/labA.nrrd" > "$T/d1"
order decode-others-pass "mask:B mask:A label:A" $D "$T/d1"
cat "$T/labA.nrrd" "$T/embA.nrrd" "$T/embA.nrrd" > "$T/d2"
order decode-label-first "label:A mask:A mask:A" $D "$T/d2"
cat "$T/embA.nrrd" "$T/labB.nrrd" "$T/labA.nrrd" > "$T/d3"
order decode-other-label-passes "label:B mask:A label:A" $D "$T/d3"
cat "$T/embA.nrrd" "$T/embA.nrrd" "$T/labA.nrrd" > "$T/d4"
expect_err decode-emb-emb 1 "d4: frame 1: --from-label: no label frame of case 'A' next to the embeddings" $D "$T/d4"
expect_err decode-no-label 1 "embA.nrrd: frame 1: --from-label: no label frame of case 'A'" $D "$T/embA.nrrd"
# the labels of two inputs do not meet
$D "$T/labA.nrrd" "$T/embA.nrrd" > "$T/o.nrrd" 2> "$T/o.err"
rc=$?
[ "$rc" -eq 1 ] && grep -q "embA.nrrd: frame 1: --from-label: no label frame of case 'A'" "$T/o.err" \
	&& [ "$(frames "$T/o.nrrd")" = "label:A" ] && pass decode-label-other-input \
	|| fail decode-label-other-input "exit $rc, frames '$(frames "$T/o.nrrd")': $(head -c 300 "$T/o.err")"

# passed frames byte for byte
cat "$T/maskB.nrrd" "$T/embA.nrrd" "$T/maskB.nrrd" > "$T/p1"
n=$(wc -c < "$T/maskB.nrrd")
sam-decode -w "$T/tiny.pth" --box 5,5,40,40,1 "$T/p1" > "$T/p1.out" 2> "$T/p1.err" \
	&& head -c "$n" "$T/p1.out" | cmp -s - "$T/maskB.nrrd" && tail -c "$n" "$T/p1.out" | cmp -s - "$T/maskB.nrrd" \
	&& pass decode-pass-bytes || fail decode-pass-bytes "the mask frames did not come through byte for byte: $(head -c 300 "$T/p1.err")"
cat "$T/maskB.nrrd" "$T/imgA.nrrd" "$T/maskB.nrrd" > "$T/p2"
sam-embed -w "$T/tiny.pth" --slices 1 "$T/p2" > "$T/p2.out" 2> "$T/p2.err" \
	&& head -c "$n" "$T/p2.out" | cmp -s - "$T/maskB.nrrd" && tail -c "$n" "$T/p2.out" | cmp -s - "$T/maskB.nrrd" \
	&& pass embed-pass-bytes || fail embed-pass-bytes "the mask frames did not come through byte for byte: $(head -c 300 "$T/p2.err")"
