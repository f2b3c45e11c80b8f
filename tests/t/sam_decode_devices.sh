#!/bin/sh
# sam-decode over several OpenCL devices (--device opencl:all, opencl:A,B,...):
# queued prompts go to the device of their slice (the i-th embedded slice to
# device i mod count), the masks are painted in the prompts' order: the same
# bytes as one device of that kind.  Where there is one OpenCL device (PoCL
# on a CPU) opencl:0,0 opens it twice (two contexts, two models, two
# threads).  Against the C path: masks equal, logits within 1e-5 absolute
# (CL_LOGIT_TOL of tests/t/sam.py).  Prompts: --from-label (every label on
# every slice, queued), 2-D boxes and points, and a 3-D box (its slices one
# after another).  Skips without an OpenCL device or the random-weight model.
. tests/lib.sh
ncl=$(medpipe-devices --brief 2> /dev/null | grep -c '^opencl:')
"$VPY" tests/gen/sam_ckpt.py "$T/tiny.pth" --config tiny > "$T/ck.log" 2>&1 \
	|| { skip sam_decode_devices "no random-weight model: $(tail -n 1 "$T/ck.log")"; exit 0; }
$PY tests/gen/phantom.py --size 80x70x7 --seed 5 --image "$T/ct.nii.gz" --label "$T/seg.nii.gz" > /dev/null 2>&1 \
	&& vol-cat "$T/ct.nii.gz" --label "$T/seg.nii.gz" | hu-window --preset soft-tissue > "$T/ct.nrrd" \
	&& sam-embed -w "$T/tiny.pth" --device cpu "$T/ct.nrrd" > "$T/emb.nrrd" \
	|| { fail sam_decode_devices/fixture "phantom.py, vol-cat or sam-embed failed"; exit 0; }

expect_err decode-devices-bad-list 2 "bad device list" sam-decode -w "$T/tiny.pth" --from-label --device opencl:0,x "$T/emb.nrrd"
if [ "$ncl" -eq 0 ]; then
	skip sam_decode_devices "no OpenCL device (medpipe-devices)"
	exit 0
fi
expect_err decode-devices-missing 1 "opencl:$ncl|$ncl" sam-decode -w "$T/tiny.pth" --from-label --device "opencl:0,$ncl" "$T/emb.nrrd"

i=0
for args in "--from-label" "--from-label --shift 5 --multimask" \
	"--box 15,12,50,48,2 --point 30,30,2 --box 20,20,60,60,4,3 --box 5,5,40,40,1 --box 10,8,70,60,5,7" \
	"--box3d 10,10,1,60,55,5 --box 20,20,60,60,3,9"; do
	i=$((i + 1))
	for d in cpu opencl:0 opencl:0,0 opencl:all; do
		f=$(echo "$d" | tr ':,' '__')
		sam-decode -w "$T/tiny.pth" --logits $args --device "$d" "$T/emb.nrrd" > "$T/m$i-$f.nrrd" 2> "$T/m$i-$f.err" \
			|| { fail "decode-devices-$i-$f" "exit $? from sam-decode $args --device $d: $(head -c 300 "$T/m$i-$f.err")"; continue 2; }
	done
	check "decode-devices-$i-twice-identical" cmp "$T/m$i-opencl_0.nrrd" "$T/m$i-opencl_0_0.nrrd"
	check "decode-devices-$i-all-identical" cmp "$T/m$i-opencl_0.nrrd" "$T/m$i-opencl_all.nrrd"
	r=$("$VPY" - "$T/m$i-cpu.nrrd" "$T/m$i-opencl_0_0.nrrd" << 'PYEOF'
import sys
import numpy as np
sys.path.insert(0, "tests")
import mpstream
a = mpstream.read_frames(open(sys.argv[1], "rb").read())
b = mpstream.read_frames(open(sys.argv[2], "rb").read())
roles = [f.keys.get("medpipe.role") for f in a]
ok = len(a) == len(b) and roles == [f.keys.get("medpipe.role") for f in b]
d, same, n = 0.0, True, 0
for fa, fb in zip(a, b):
    r = fa.keys.get("medpipe.role")
    if r == "logits":
        d = max(d, float(np.abs(fa.array - fb.array).max()))
    elif r == "mask":
        same = same and np.array_equal(fa.array, fb.array)
        n += int((fa.array > 0).sum())
print("ok" if ok and same and d <= 1e-5 and n > 0 else "bad",
      "frames %s, masks equal %s (%d voxels), logits max abs diff %.3g" % (roles, same, n, d))
PYEOF
)
	case "$r" in
	ok*) pass "decode-devices-$i-vs-c" ;;
	*) fail "decode-devices-$i-vs-c" "$r" ;;
	esac
	echo "# decode set $i: C vs opencl:0,0: ${r#* }"
done
# the error of a prompt names it as with one device
expect_err decode-devices-bad-slice 1 "slice 9" sam-decode -w "$T/tiny.pth" --box 1,1,9,9,2 --box 1,1,9,9,9 --device opencl:0,0 "$T/emb.nrrd"
# two models, one per context (--verbose names the device of each)
n=$(sam-decode --verbose -w "$T/tiny.pth" --from-label --device opencl:0,0 "$T/emb.nrrd" 2>&1 > /dev/null | grep -c 'decoder on opencl:0')
if [ "$n" -eq 2 ]; then pass decode-devices-two-models; else fail decode-devices-two-models "--verbose named $n decoders, wanted 2"; fi
# a device that fails in the decoder (an allocation limit below its buffers:
# the resident image side, and the path op by op) stops with one line that
# says why, and writes nothing (a failure in the middle of the decoder once
# reached its end as success: the status checks between products cleared it)
for r in 1 0; do
	expect_err "decode-devices-fails-one-line-$r" 1 "mask decoder: opencl: .*allocation limit" \
		env MEDPIPE_SAM_CL_RESIDENT=$r MEDPIPE_CL_PIECE=4096 sam-decode -w "$T/tiny.pth" --from-label --device opencl:0 "$T/emb.nrrd"
done
