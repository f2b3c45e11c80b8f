#!/bin/sh
# Bad input and bad usage for hu-window, vol-resize, roi-crop and vol-restore:
# one line on stderr, exit 2 (usage) or 1 (run time), nothing on stdout.
. tests/lib.sh
$PY - "$T" <<'PYEOF' || { fail gen "cannot make test frames"; exit 0; }
import sys
sys.path.insert(0, "tests/gen")
import numpy as np
from nrrdframe import frame
t = sys.argv[1]
d = [(0.8, 0, 0), (0, 0.8, 0), (0, 0, 2.5)]
img = np.arange(4 * 6 * 7, dtype=np.int16).reshape(4, 6, 7)
lab = np.zeros((4, 6, 7), np.uint8); lab[1:3, 2:4, 2:5] = 1
def w(name, b): open(t + "/" + name, "wb").write(b)
im = lambda a, **k: frame(a, dirs=d, keys=dict({"medpipe.role": "image", "medpipe.case": "c"}, **k))
lb = lambda a, **k: frame(a, dirs=d, keys=dict({"medpipe.role": "label", "medpipe.case": "c"}, **k))
w("case.nrrd", im(img) + lb(lab))
w("img.nrrd", im(img))
w("zero.nrrd", im(np.zeros_like(img)))
w("flab.nrrd", im(img) + lb(lab.astype(np.float32)))
w("flabonly.nrrd", lb(lab.astype(np.float32)))
w("empty.nrrd", im(img) + lb(np.zeros_like(lab)))
w("rgb.nrrd", frame(np.zeros((4, 5, 3), np.uint8), dirs=[None, (1, 0, 0), (0, 1, 0)], extra="kinds: RGB-color domain domain"))
w("nospace.nrrd", frame(img, keys={"medpipe.role": "image"}).replace(b"space: left-posterior-superior\n", b"").replace(b"space directions: (1.0,0.0,0.0) (0.0,1.0,0.0) (0.0,0.0,1.0)\n", b"").replace(b"space origin: (0,0,0)\n", b""))
w("nohist.nrrd", lb(lab))
w("badhist.nrrd", lb(lab, **{"medpipe.grid0.sizes": "7 6 4", "medpipe.grid0.directions": "(1,0,0) (0,1,0) (0,0,1)",
                             "medpipe.grid0.origin": "(0,0,0)", "medpipe.history": "crop 9x9x9>7x6x4 at 0,0,0"}))
w("junkhist.nrrd", lb(lab, **{"medpipe.grid0.sizes": "7 6 4", "medpipe.grid0.directions": "(1,0,0) (0,1,0) (0,0,1)",
                              "medpipe.grid0.origin": "(0,0,0)", "medpipe.history": "twist 45 degrees"}))
w("trunc.nrrd", im(img)[:-10])
w("garbage.nrrd", b"hello world\n\n")
PYEOF
: > "$T/nothing"
# like expect_err, but output before the error is allowed: a streaming filter
# has written the frames (and the part of a frame) before the bad data came
expect_err_streamed() {
	n=$1; code=$2; pat=$3; shift 3
	"$@" > "$T/.out" 2> "$T/.err"; rc=$?
	if [ "$rc" -ne "$code" ]; then fail "$n" "exit $rc, wanted $code: $(head -c 300 "$T/.err")"
	elif [ "$(wc -l < "$T/.err")" -ne 1 ]; then fail "$n" "not one line on stderr: $(head -c 300 "$T/.err" | tr '\n' '|')"
	elif ! grep -Eq -- "$pat" "$T/.err"; then fail "$n" "message '$(cat "$T/.err")' does not match '$pat'"
	else pass "$n"; fi
}

# hu-window
expect_err win-no-window 2 'exactly one of' hu-window "$T/img.nrrd"
expect_err win-two-windows 2 'exactly one of' hu-window --preset bone -l 40 -w 400 "$T/img.nrrd"
expect_err win-unknown-preset 2 "unknown preset 'kidneys'" hu-window --preset kidneys "$T/img.nrrd"
expect_err win-nonzero-alone 2 'nonzero needs --percentiles' hu-window --preset bone --nonzero "$T/img.nrrd"
expect_err win-bad-mapping 2 'mapping' hu-window --preset bone --mapping fancy "$T/img.nrrd"
expect_err win-bad-width 2 'width must be > 0' hu-window -l 40 -w 0 "$T/img.nrrd"
expect_err win-range-type 2 'does not fit the type uint8' hu-window --preset bone --range 0,1000 --type uint8 "$T/img.nrrd"
expect_err win-bad-percentiles 2 'percentiles' hu-window --percentiles 99,1 "$T/img.nrrd"
expect_err win-empty-stream 1 'empty stream' hu-window --preset bone "$T/nothing"
expect_err win-garbage 1 'garbage.nrrd' hu-window --preset bone "$T/garbage.nrrd"
expect_err_streamed win-truncated 1 'trunc.nrrd: frame 1' hu-window --preset bone "$T/trunc.nrrd"
expect_err win-no-positive 1 'frame 1: no positive voxels' hu-window --percentiles 1,99 --nonzero "$T/zero.nrrd"
check win-list-presets sh -c "hu-window --list-presets | grep -q '^soft-tissue *40 *400'"

# vol-resize
expect_err rs-no-size 2 'exactly one of' vol-resize "$T/img.nrrd"
expect_err rs-two-sizes 2 'exactly one of' vol-resize 8x8 --longest 16 "$T/img.nrrd"
expect_err rs-pad-alone 2 'pad needs --longest' vol-resize 8x8 --pad "$T/img.nrrd"
expect_err rs-bad-interp 2 "unknown interpolation 'sinc'" vol-resize 8x8 --interp sinc "$T/img.nrrd"
expect_err rs-bad-size 2 "bad size" vol-resize --size 0x5 "$T/img.nrrd"
expect_err rs-spacing-cubic 2 'linear or nearest only' vol-resize --spacing 1 --interp cubic "$T/img.nrrd"
expect_err_streamed rs-float-label-second 1 'frame 2: label frame is not of an integer type' vol-resize 8x8 "$T/flab.nrrd"
expect_err rs-float-label 1 'frame 1: label frame is not of an integer type' vol-resize 8x8 "$T/flabonly.nrrd"
expect_err rs-rgb 1 'not a 2-D or 3-D scalar frame' vol-resize 8x8 "$T/rgb.nrrd"
expect_err rs-no-space 1 'no world geometry' vol-resize --spacing 1 "$T/nospace.nrrd"
expect_err_streamed rs-truncated 1 'trunc.nrrd: frame 1' vol-resize 8x8 "$T/trunc.nrrd"

# roi-crop
expect_err crop-nothing 2 'give --slices and/or --bbox' roi-crop "$T/case.nrrd"
expect_err crop-3d-slices 2 'does not go with --slices' roi-crop --bbox 3d --slices labelled "$T/case.nrrd"
expect_err crop-two-margins 2 'exclude each other' roi-crop --bbox 3d --margin 1 --margin-mm 2 "$T/case.nrrd"
expect_err crop-bad-mode 2 "'some'" roi-crop --slices some "$T/case.nrrd"
expect_err crop-bad-labels 2 'labels' roi-crop --bbox 2d --labels 1,x "$T/case.nrrd"
expect_err crop-no-label 1 'case c: no frame of role label' roi-crop --bbox 3d "$T/img.nrrd"
expect_err crop-float-label 1 'not of an integer type' roi-crop --bbox 3d "$T/flab.nrrd"
expect_err crop-empty 1 'holds no label: nothing to keep' roi-crop --bbox 3d "$T/empty.nrrd"

# vol-restore
expect_err restore-no-history 1 'no recorded original grid' vol-restore "$T/nohist.nrrd"
expect_err restore-bad-chain 1 'operation 1 expects a 9x9x9 grid' vol-restore "$T/badhist.nrrd"
expect_err restore-junk-history 1 "cannot read 'twist 45 degrees'" vol-restore "$T/junkhist.nrrd"
expect_err restore-missing-ref 1 'nosuch.nrrd' vol-restore --ref "$T/nosuch.nrrd" "$T/nohist.nrrd"
expect_err restore-empty-roles 2 'roles' vol-restore --roles '' "$T/nohist.nrrd"
check restore-image-passes sh -c "vol-restore '$T/img.nrrd' | cmp - '$T/img.nrrd'"
