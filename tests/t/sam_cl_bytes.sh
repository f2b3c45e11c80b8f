#!/bin/sh
# The bytes that cross the bus between host and OpenCL device per slice
# (sam-embed / sam-decode --verbose, counted by opencl/cl_runtime.c as a
# device with its own memory would copy them, also on PoCL): the model's
# weights once (constants), then per slice of the encoder the input image
# and the output embedding: the encoder keeps its activations on the device
# (opencl/cl_sam.c, cl_encode), so a slice moves at most the input + output +
# 4 KiB (the stated constant; today exactly input + output).  The resident
# encoder gives the same bytes as the path op by op through the backend's
# entries (MEDPIPE_SAM_CL_RESIDENT=0), whose traffic is printed beside.
# Tiny random-weight ViT (tests/gen/sam_ckpt.py).
# Skips without an OpenCL device or the model (torch, segment_anything).
. tests/lib.sh
ncl=$(medpipe-devices --brief 2> /dev/null | grep -c '^opencl:')
[ "$ncl" -gt 0 ] || { skip sam_cl_bytes "no OpenCL device (medpipe-devices)"; exit 0; }
"$VPY" tests/gen/sam_ckpt.py "$T/tiny.pth" --config tiny > "$T/ck.log" 2>&1 \
	|| { skip sam_cl_bytes "no random-weight model: $(tail -n 1 "$T/ck.log")"; exit 0; }
"$VPY" tests/gen/phantom.py --size 80x70x3 --seed 3 --image "$T/ct.nii.gz" --label "$T/seg.nii.gz" > /dev/null 2>&1 \
	&& vol-cat "$T/ct.nii.gz" --label "$T/seg.nii.gz" | hu-window --preset soft-tissue > "$T/ct.nrrd" \
	|| { fail sam_cl_bytes/fixture "phantom.py or vol-cat failed"; exit 0; }

# tiny: image 3x256x256 floats in, embedding 64x16x16 floats out
IN=$((3 * 256 * 256 * 4)) OUT=$((64 * 16 * 16 * 4))
sam-embed --verbose -w "$T/tiny.pth" --device opencl:0 "$T/ct.nrrd" 2> "$T/embed.log" > "$T/emb.nrrd"
grep 'encoder, slice' "$T/embed.log" | sed 's/.*slice \([0-9]*\): \([0-9]*\) bytes to the device, \([0-9]*\) from it (and \([0-9]*\) bytes.*/\1 \2 \3 \4/' > "$T/embed.bytes"
n=$(wc -l < "$T/embed.bytes")
if [ "$n" -eq 3 ]; then pass bytes-embed-lines; else fail bytes-embed-lines "--verbose printed $n byte counts for 3 slices"; fi
# the weights cross once: constants on the first slice only
awk 'NR == 1 && $4 > 0 { c++ } NR > 1 && $4 == 0 { c++ } END { exit c != NR }' "$T/embed.bytes" \
	&& pass bytes-embed-constants-once || fail bytes-embed-constants-once "$(tr '\n' ';' < "$T/embed.bytes")"
awk -v lim=$((IN + OUT + 4096)) '$2 + $3 > lim { bad = bad " slice " $1 ": " $2 " + " $3 } END { if (bad != "") { print bad; exit 1 } }' \
	"$T/embed.bytes" > "$T/over" && pass bytes-embed-resident \
	|| fail bytes-embed-resident "over input $IN + output $OUT + 4096 bytes:$(cat "$T/over")"
echo "# encoder per slice (to from constants): $(awk '{ print $2, $3, $4 }' "$T/embed.bytes" | tr '\n' ';') input $IN output $OUT"
MEDPIPE_SAM_CL_RESIDENT=0 sam-embed --verbose -w "$T/tiny.pth" --device opencl:0 "$T/ct.nrrd" 2> "$T/embed0.log" > "$T/emb0.nrrd"
check bytes-embed-resident-same cmp "$T/emb.nrrd" "$T/emb0.nrrd"
echo "# op by op (MEDPIPE_SAM_CL_RESIDENT=0): $(grep 'encoder, slice' "$T/embed0.log" | sed 's/.*encoder, //' | tr '\n' ';')"
# the fused attention kernel (the default on GPUs; MEDPIPE_SAM_CL_ATTN=fused
# here) against the composed path: embeddings within 1e-5 relative (L2), the
# tolerance of the OpenCL path against the C path in tests/t/sam.py
for m in fused composed; do
	MEDPIPE_SAM_CL_ATTN=$m sam-embed -w "$T/tiny.pth" --device opencl:0 "$T/ct.nrrd" > "$T/emb-$m.nrrd" \
		|| fail bytes-embed-$m "sam-embed failed"
done
r=$("$VPY" -c '
import sys; sys.path.insert(0, "tests")
import numpy as np, mpstream
a, b = (mpstream.read_frames(open(f, "rb").read())[0].array.astype(np.float64) for f in sys.argv[1:3])
print("%.3g" % (np.linalg.norm(a - b) / np.linalg.norm(b)))' "$T/emb-fused.nrrd" "$T/emb-composed.nrrd" 2>&1)
if awk -v r="$r" 'BEGIN { exit !(r + 0 == r && r <= 1e-5) }'; then pass "bytes-embed-fused-attention: rel err $r"
else fail bytes-embed-fused-attention "relative error $r (tolerance 1e-5)"; fi

# the decoder (tiny: its 32-wide attentions do not fold; their image side
# is resident too, cl_sam.c dec_t2i_attn/dec_i2t_attn): per slice the image
# tokens up once (16 x 16 x 64 floats, 64 KiB), per prompt the masks down
# (4 x 64 x 64 floats, 64 KiB) and the prompt tokens' side both ways, at
# most 128 KiB per prompt each way (the stated constant for this model;
# 72 KiB up and 57 KiB down here)
sam-decode --verbose -w "$T/tiny.pth" --device opencl:0 --from-label < "$T/emb.nrrd" 2> "$T/decode.log" > /dev/null
n=$(grep -c 'decoder, slice .* bytes to the device' "$T/decode.log")
if [ "$n" -eq 3 ]; then pass bytes-decode-lines; else fail bytes-decode-lines "--verbose printed $n byte counts for 3 slices"; fi
echo "# decoder per slice: $(grep 'decoder, slice' "$T/decode.log" | sed 's/.*decoder, //' | tr '\n' ';')"
grep 'decoder, slice .* bytes to the device' "$T/decode.log" \
	| sed 's/.*slice \([0-9]*\), \([0-9]*\) prompts*: \([0-9]*\) bytes to the device, \([0-9]*\) from it.*/\1 \2 \3 \4/' > "$T/dt.bytes"
awk -v inb=65536 -v outb=65536 -v c=131072 '$3 > inb + $2 * c || $4 > $2 * (outb + c) { bad = bad " slice " $1 ": " $2 " prompts, " $3 " to, " $4 " from" }
	END { if (bad != "" || NR != 3) { print bad; exit 1 } }' "$T/dt.bytes" > "$T/overt" \
	&& pass bytes-decode-resident-unfolded \
	|| fail bytes-decode-resident-unfolded "over 64 KiB + 128 KiB a prompt to the device or 192 KiB a prompt from it:$(cat "$T/overt")"

# The resident decoder (cl_sam.c, dec_*: the image side of the decoder's
# folded attentions and its upscaling on the device) on a model with SAM's
# decoder (grid64: 256 channels, 64 x 64 image tokens; a box prompt folds,
# the tiny model's 32-wide attentions do not): per slice the image tokens go
# up once (input: 64 x 64 x 256 floats, 4 MiB), per prompt the low-resolution
# masks come down (output: 4 x 256 x 256 floats, 1 MiB), and the prompt
# tokens' side crosses both ways: at most 1 MiB per prompt each way (the
# stated constant; 0.72 MiB up and 0.46 MiB down with this model).
# The path op by op (MEDPIPE_SAM_CL_RESIDENT=0) moves the image tokens at
# every product: its bytes are printed beside, its masks compared.
"$VPY" tests/gen/sam_ckpt.py "$T/g64.pth" --config grid64 > "$T/ck64.log" 2>&1 \
	|| { fail bytes-decode-resident "sam_ckpt.py grid64: $(tail -n 1 "$T/ck64.log")"; exit 0; }
sam-embed -w "$T/g64.pth" --mode sam "$T/ct.nrrd" > "$T/emb64.nrrd" 2> "$T/e64.err" \
	|| { fail bytes-decode-resident "sam-embed grid64: $(cat "$T/e64.err")"; exit 0; }
MIB=1048576
for r in 1 0; do
	MEDPIPE_SAM_CL_RESIDENT=$r sam-decode --verbose -w "$T/g64.pth" --device opencl:0 --from-label < "$T/emb64.nrrd" \
		2> "$T/d64-$r.log" > "$T/m64-$r.nrrd" || fail "bytes-decode-resident-run-$r" "$(tail -n 1 "$T/d64-$r.log")"
	grep 'decoder, slice .* bytes to the device' "$T/d64-$r.log" \
		| sed 's/.*slice \([0-9]*\), \([0-9]*\) prompts*: \([0-9]*\) bytes to the device, \([0-9]*\) from it.*/\1 \2 \3 \4/' > "$T/d64-$r.bytes"
done
n=$(wc -l < "$T/d64-1.bytes")
[ "$n" -eq 3 ] || fail bytes-decode-resident-lines "--verbose printed $n byte counts for 3 slices"
awk -v inb=$((4 * MIB)) -v outb=$MIB -v c=$MIB '$3 > inb + $2 * c || $4 > $2 * (outb + c) { bad = bad " slice " $1 ": " $2 " prompts, " $3 " to, " $4 " from" }
	END { if (bad != "" || NR != 3) { print bad; exit 1 } }' "$T/d64-1.bytes" > "$T/over64" \
	&& pass bytes-decode-resident \
	|| fail bytes-decode-resident "over 4 MiB + 1 MiB a prompt to the device or 2 MiB a prompt from it:$(cat "$T/over64")"
echo "# resident decoder per slice (slice prompts to from): $(tr '\n' ';' < "$T/d64-1.bytes")"
echo "# op by op (MEDPIPE_SAM_CL_RESIDENT=0): $(tr '\n' ';' < "$T/d64-0.bytes")"
# the same masks (a voxel may flip where the logit is within float rounding
# of the threshold: at most 1 in 10^5)
r=$("$VPY" -c '
import sys; sys.path.insert(0, "tests")
import mpstream
a, b = (mpstream.read_frames(open(f, "rb").read())[0].array for f in sys.argv[1:3])
print(int((a != b).sum()), a.size)' "$T/m64-1.nrrd" "$T/m64-0.nrrd" 2>&1)
set -- $r
if [ "${1:-x}" -ge 0 ] 2> /dev/null && [ "$1" -le $(( ${2:-0} / 100000 + 1 )) ]; then pass "bytes-decode-resident-same-masks: $1 of $2 voxels differ"
else fail bytes-decode-resident-same-masks "$r"; fi
