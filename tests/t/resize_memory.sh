#!/bin/sh
# Memory: a 512x512xN int16 CT-like volume (N = 1000 with MEDPIPE_SLOW=1,
# 192 otherwise: a frame of 96 MiB) with its label goes through hu-window,
# vol-resize, roi-crop and vol-restore; peak RSS (GNU time -v) must stay
# within what each step needs: streaming steps a few slices (a quarter of the
# frame at most, so that holding the frame fails), whole-frame steps their
# frames.
. tests/lib.sh
have_cmd /usr/bin/time || { skip_ref memory "/usr/bin/time (GNU time) missing"; exit 0; }
# the C code's own memory: probing OpenCL (PoCL) alone adds about 60 MiB
export MEDPIPE_DEVICE=cpu
N=192; [ "${MEDPIPE_SLOW:-0}" = 1 ] && N=1000
MB=$((512 * 512 * 2 * N / 1048576))   # image size in MiB
SL=$((MB / 4))                        # streaming limit: well below one frame
gen() {   # gen WHAT: image, label or both on stdout
	$PY - "$N" "$1" <<'PYEOF'
import sys
import numpy as np
n, what = int(sys.argv[1]), sys.argv[2]
out = sys.stdout.buffer
def hdr(t, role):
    return ("NRRD0004\ntype: %s\ndimension: 3\nspace: left-posterior-superior\nsizes: 512 512 %d\n"
            "space directions: (0.7,0,0) (0,0.7,0) (0,0,1.5)\nendian: little\nencoding: raw\n"
            "space origin: (-180,-180,-700)\nmedpipe.case:=big\nmedpipe.role:=%s\n\n" % (t, n, role)).encode()
y, x = np.mgrid[0:512, 0:512]
sl = (((x - 256) ** 2 + (y - 256) ** 2 < 200 ** 2) * 1040 - 1000 + (x * 7 + y * 3) % 50).astype("<i2")
if what in ("image", "both"):
    out.write(hdr("int16", "image"))
    for z in range(n):
        out.write(sl.tobytes())
if what in ("label", "both"):
    out.write(hdr("uint8", "label"))
    lab = (((x - 240) ** 2 + (y - 250) ** 2) < 90 ** 2).astype(np.uint8)
    empty = np.zeros_like(lab)
    for z in range(n):
        out.write((lab if n // 4 <= z < 3 * n // 4 else empty).tobytes())
PYEOF
}
# peak NAME LIMIT_MIB CMD...: stdin from the generator kind in $KIND
# under SANITIZE=1 AddressSanitizer's shadow memory and runtime add a few tens
# of MiB whatever the program does: the limits grow by that much (still well
# under one 96 MiB frame, so holding a frame fails there too)
ASAN_EXTRA=0; [ "${SANITIZE:-0}" = 1 ] && ASAN_EXTRA=40
peak() {
	n=$1; lim=$(($2 + ASAN_EXTRA)); shift 2
	gen $KIND | /usr/bin/time -v "$@" 2> "$T/time" > /dev/null
	rc=$?
	kb=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$T/time")
	if [ "$rc" -ne 0 ] || [ -z "$kb" ]; then fail "$n" "exit $rc: $(grep -v '^	' "$T/time" | head -c 300)"
	elif [ $((kb / 1024)) -gt "$lim" ]; then fail "$n" "peak RSS $((kb / 1024)) MiB > $lim MiB (image $MB MiB)"
	else pass "$n (peak RSS $((kb / 1024)) MiB, limit $lim, image ${MB} MiB, 512x512x$N)"; fi
}
KIND=image
peak mem-hu-window-clinical-streams $SL hu-window --preset soft-tissue
peak mem-hu-window-medsam $((MB * 3 / 2 + 64)) hu-window --preset soft-tissue --mapping medsam
peak mem-vol-resize-1024-streams $SL vol-resize 1024x1024 --interp cubic
peak mem-vol-resize-spacing-streams $SL vol-resize --spacing 1,1,1
KIND=both
peak mem-roi-crop $((MB * 2 + 64)) roi-crop --bbox 3d --margin 5
# vol-restore of the cropped, enlarged label: holds that label (uint8)
gen both | roi-crop --bbox 3d --margin 5 | vol-resize 1024x1024 > "$T/pred.nrrd" 2> "$T/err" || fail mem-prep "$(cat "$T/err")"
/usr/bin/time -v vol-restore "$T/pred.nrrd" 2> "$T/time" > "$T/rest.nrrd"
kb=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$T/time")
PMB=$(( $(wc -c < "$T/pred.nrrd") / 2097152 ))   # the label frame: about half the file
lim=$((PMB + 64 + ASAN_EXTRA))
if [ -z "$kb" ] || [ $((kb / 1024)) -gt "$lim" ]; then fail mem-vol-restore "peak RSS $((${kb:-0} / 1024)) MiB > $lim MiB: $(head -c 200 "$T/time")"
else pass "mem-vol-restore (peak RSS $((kb / 1024)) MiB, limit $lim)"; fi
# and it is the original label again
gen label > "$T/lab.nrrd"
$PY - "$T/rest.nrrd" "$T/lab.nrrd" <<'PYEOF' && pass mem-round-trip-exact || fail mem-round-trip-exact "restored label differs"
import sys
sys.path.insert(0, "tests")
import numpy as np
from mpstream import read_frames
a = [f for f in read_frames(open(sys.argv[1], "rb").read()) if f.keys["medpipe.role"] == "label"][0]
b = read_frames(open(sys.argv[2], "rb").read())[0]
sys.exit(0 if np.array_equal(a.array, b.array) and np.allclose(a.origin, b.origin) else 1)
PYEOF
