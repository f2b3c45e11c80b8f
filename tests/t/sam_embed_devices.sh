#!/bin/sh
# sam-embed over several OpenCL devices (--device opencl:all, opencl:A,B,...):
# the slices of a frame go to the devices in turn and the embeddings come out
# in slice order, the same bytes as one device of that kind.  Where there is
# one OpenCL device (PoCL on a CPU) the list opencl:0,0 opens it twice (two
# contexts, two models, two threads): the same path as two devices.  Also the
# spec errors.  Skips without an OpenCL device or the random-weight model
# (torch, segment_anything).
. tests/lib.sh
ncl=$(medpipe-devices --brief 2> /dev/null | grep -c '^opencl:')
"$VPY" tests/gen/sam_ckpt.py "$T/tiny.pth" --config tiny > "$T/ck.log" 2>&1 \
	|| { skip sam_embed_devices "no random-weight model: $(tail -n 1 "$T/ck.log")"; exit 0; }
$PY tests/gen/phantom.py --size 80x70x7 --seed 3 --image "$T/ct.nii.gz" --label "$T/seg.nii.gz" > /dev/null 2>&1 \
	&& vol-cat "$T/ct.nii.gz" --label "$T/seg.nii.gz" | hu-window --preset soft-tissue > "$T/ct.nrrd" \
	|| { fail sam_embed_devices/fixture "phantom.py or vol-cat failed"; exit 0; }

expect_err devices-bad-list 2 "bad device list" sam-embed -w "$T/tiny.pth" --device opencl:0,x "$T/ct.nrrd"
expect_err devices-bad-list-empty 2 "bad device list" sam-embed -w "$T/tiny.pth" --device opencl:0, "$T/ct.nrrd"
if [ "$ncl" -eq 0 ]; then
	skip sam_embed_devices "no OpenCL device (medpipe-devices)"
	exit 0
fi
expect_err devices-missing 1 "opencl:$ncl|$ncl" sam-embed -w "$T/tiny.pth" --device "opencl:0,$ncl" "$T/ct.nrrd"

t0=$(date +%s.%N)
check devices-one sh -c "sam-embed -w '$T/tiny.pth' --device opencl:0 '$T/ct.nrrd' > '$T/one.nrrd'"
t1=$(date +%s.%N)
check devices-all sh -c "sam-embed -w '$T/tiny.pth' --device opencl:all '$T/ct.nrrd' > '$T/all.nrrd'"
t2=$(date +%s.%N)
check devices-twice sh -c "sam-embed -w '$T/tiny.pth' --device opencl:0,0 --slices 0-4 '$T/ct.nrrd' > '$T/two5.nrrd' && sam-embed -w '$T/tiny.pth' --device opencl:0,0 '$T/ct.nrrd' > '$T/two.nrrd'"
t3=$(date +%s.%N)
check devices-one-5 sh -c "sam-embed -w '$T/tiny.pth' --device opencl:0 --slices 0-4 '$T/ct.nrrd' > '$T/one5.nrrd'"
check devices-all-identical cmp "$T/one.nrrd" "$T/all.nrrd"
# 7 slices over 2 contexts: a last round of one slice; 5 slices likewise
check devices-twice-identical cmp "$T/one.nrrd" "$T/two.nrrd"
check devices-twice-identical-5 cmp "$T/one5.nrrd" "$T/two5.nrrd"
# the label frame passes through and sam-decode reads the result
check devices-decode sh -c "sam-embed -w '$T/tiny.pth' --device opencl:0,0 --slices labelled '$T/ct.nrrd' | sam-decode -w '$T/tiny.pth' --from-label > '$T/pred.nrrd'"
# two models, one per context (--verbose names the device of each)
n=$(sam-embed --verbose -w "$T/tiny.pth" --device opencl:0,0 --slices 0-1 "$T/ct.nrrd" 2>&1 > /dev/null | grep -c 'encoder on opencl:0')
if [ "$n" -eq 2 ]; then pass devices-two-models; else fail devices-two-models "--verbose named $n encoders, wanted 2"; fi
echo "# 7 slices: opencl:0 $(awk "BEGIN { print $t1 - $t0 }") s, opencl:all ($ncl devices) $(awk "BEGIN { print $t2 - $t1 }") s, opencl:0,0 (5 + 7 slices) $(awk "BEGIN { print $t3 - $t2 }") s"
