#!/bin/sh
# The bytes that cross the bus between host and OpenCL device per slice
# (sam-embed / sam-decode --verbose, counted by opencl/cl_runtime.c as a
# device with its own memory would copy them, also on PoCL): the model's
# weights once (constants), then per slice of the encoder the input image
# and the output embedding.  Tiny random-weight ViT (tests/gen/sam_ckpt.py).
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
echo "# encoder per slice (to from constants): $(awk '{ print $2, $3, $4 }' "$T/embed.bytes" | tr '\n' ';') input $IN output $OUT"

sam-decode --verbose -w "$T/tiny.pth" --device opencl:0 --from-label < "$T/emb.nrrd" 2> "$T/decode.log" > /dev/null
n=$(grep -c 'decoder, slice .* bytes to the device' "$T/decode.log")
if [ "$n" -eq 3 ]; then pass bytes-decode-lines; else fail bytes-decode-lines "--verbose printed $n byte counts for 3 slices"; fi
echo "# decoder per slice: $(grep 'decoder, slice' "$T/decode.log" | sed 's/.*decoder, //' | tr '\n' ';')"
