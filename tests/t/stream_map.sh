#!/bin/sh
# Frames held whole are mapped from a regular input file (mp_in_rest_map)
# rather than read: the output from a file is byte for byte that from a pipe,
# for frames of several MiB at offsets that are not page-aligned, in a stream
# of two cases; a file shorter than its header says is an error, not a crash.
# Data after a header of odd length is read, not mapped (it would be
# misaligned): the same bytes, and no UBSan report under SANITIZE=1.
. tests/lib.sh
$PY - "$T" <<'PYEOF'
import sys
import numpy as np
T = sys.argv[1]
rng = np.random.default_rng(3)


def frame(a, role, case):
    t = {"int16": "int16", "uint8": "uint8"}[a.dtype.name]
    h = ("NRRD0004\ntype: %s\ndimension: 3\nspace: left-posterior-superior\nsizes: %d %d %d\n"
         "space directions: (0.8,0,0) (0,0.8,0) (0,0,2.5)\nendian: little\nencoding: raw\n"
         "space origin: (1,2,3)\nmedpipe.case:=%s\nmedpipe.role:=%s\n\n"
         % (t, a.shape[2], a.shape[1], a.shape[0], case, role))
    return h.encode() + a.tobytes()


out = b""
for case, nz in (("a", 300), ("b", 97)):
    ct = rng.integers(-1000, 1500, (nz, 72, 66)).astype(np.int16)
    lab = np.zeros((nz, 72, 66), np.uint8)
    lab[20:nz - 30, 10:50, 12:40] = 1 + (rng.random((nz - 50, 40, 28)) < 0.3)
    lab[nz // 2, 60:63, 60:62] = 3      # dust
    out += frame(ct, "image", case) + frame(lab, "label", case)
open(T + "/case.vol", "wb").write(out)
open(T + "/short.vol", "wb").write(out[:len(out) // 3])
# every header of odd length, so that all data lies at odd file offsets: a
# mapping would put int16 values at odd addresses (undefined behaviour, which
# make check SANITIZE=1 stops on); such data is read instead
odd = b""
for case, nz in (("a", 120), ("b", 40)):
    ct = rng.integers(-1000, 1500, (nz, 72, 66)).astype(np.int16)
    lab = np.zeros((nz, 72, 66), np.uint8)
    lab[10:nz - 10, 10:50, 12:40] = 1
    for a, role in ((ct, "image"), (lab, "label")):
        fr = frame(a, role, case)
        h = len(fr) - a.nbytes
        if h % 2 == 0:
            fr = fr[:h - 1] + b"# \n\n" + fr[h:]
        assert (len(fr) - a.nbytes) % 2 == 1
        odd += fr
open(T + "/odd.vol", "wb").write(odd)
ct = rng.integers(-1000, 1500, (120, 72, 66)).astype(np.int16)   # 1.1 MiB: mapped if aligned
fr = frame(ct, "image", "c")
if (len(fr) - ct.nbytes) % 2 == 0:
    fr = fr[:len(fr) - ct.nbytes - 1] + b"# \n\n" + fr[len(fr) - ct.nbytes:]
assert (len(fr) - ct.nbytes) % 2 == 1
open(T + "/odd.nrrd", "wb").write(fr)
# a MetaImage label map with its header inline, of odd length (the format layer maps raw data)
lab = (rng.random((120, 72, 66)) * 4).astype(np.int16)
h = "ObjectType = Image\nNDims = 3\nDimSize = 66 72 120\nElementType = MET_SHORT\nElementDataFile = LOCAL\n"
if len(h) % 2 == 0:
    h = h.replace("NDims = 3", "NDims =  3")
assert len(h) % 2 == 1
open(T + "/odd.mha", "wb").write(h.encode() + lab.tobytes())
PYEOF
for c in "hu-window --preset soft-tissue --mapping medsam" "roi-crop --slices labelled"; do
	n=$(echo "$c" | cut -d' ' -f1)
	$c "$T/odd.vol" > "$T/file.out" 2> "$T/file.err"; r1=$?
	cat "$T/odd.vol" | $c > "$T/pipe.out" 2> "$T/pipe.err"; r2=$?
	if [ $r1 -eq 0 ] && [ $r2 -eq 0 ] && [ -s "$T/file.out" ] && cmp -s "$T/file.out" "$T/pipe.out"; then pass "odd-offsets-$n"
	else fail "odd-offsets-$n" "rc $r1/$r2 $(head -c 300 "$T/file.err")"; fi
done
# what medpipe writes keeps the data of every frame at a multiple of 16 bytes
# from the start (a comment line pads the header), so a saved stream maps
hu-window --preset soft-tissue "$T/odd.vol" | roi-crop --slices labelled > "$T/al.vol" 2> "$T/file.err"
if $PY - "$T/al.vol" <<'PYEOF'
import sys
d = open(sys.argv[1], "rb").read()
pos, offs = 0, []
while pos < len(d):
    end = d.index(b"\n\n", pos) + 2
    hdr = d[pos:end].decode()
    sizes = [int(v) for ln in hdr.split("\n") if ln.startswith("sizes:") for v in ln.split()[1:]]
    es = {"int16": 2, "uint8": 1, "float": 4}[[ln.split()[1] for ln in hdr.split("\n") if ln.startswith("type:")][0]]
    n = es
    for v in sizes:
        n *= v
    offs.append(end)
    pos = end + n
sys.exit(0 if len(offs) == 4 and all(o % 16 == 0 for o in offs) else 1)
PYEOF
then pass aligned-output
else fail aligned-output "data offsets not all multiples of 16 (or not 4 frames): $(head -c 200 "$T/file.err")"; fi
# vol-preview reads the held image value by value (where the demo stopped under UBSan)
mkdir -p "$T/pf" "$T/pp"
vol-preview --max 4 -o "$T/pf/{case}.png" "$T/odd.vol" 2> "$T/file.err"; r1=$?
cat "$T/odd.vol" | vol-preview --max 4 -o "$T/pp/{case}.png" 2> "$T/pipe.err"; r2=$?
if [ $r1 -eq 0 ] && [ $r2 -eq 0 ] && [ -s "$T/pf/a.png" ] && [ -s "$T/pf/b.png" ] && cmp -s "$T/pf/a.png" "$T/pp/a.png" \
	&& cmp -s "$T/pf/b.png" "$T/pp/b.png"; then pass odd-offsets-vol-preview
else fail odd-offsets-vol-preview "rc $r1/$r2 $(head -c 300 "$T/file.err")"; fi
# the same in the format layer (a .nrrd file read by vol-cat)
vol-cat "$T/odd.nrrd" 2> "$T/file.err" | hu-window --percentiles 1,99 > "$T/file.out"; r1=$?
hu-window --percentiles 1,99 < "$T/odd.nrrd" > "$T/pipe.out" 2> "$T/pipe.err"; r2=$?
if [ $r1 -eq 0 ] && [ $r2 -eq 0 ] && [ ! -s "$T/file.err" ] && cmp -s "$T/file.out" "$T/pipe.out"; then pass odd-offsets-nrrd-file
else fail odd-offsets-nrrd-file "rc $r1/$r2 $(head -c 300 "$T/file.err" "$T/pipe.err")"; fi
seg-eval --ref "$T/odd.mha" "$T/odd.mha" > "$T/eval.csv" 2> "$T/file.err"; rc=$?
if [ $rc -eq 0 ] && [ ! -s "$T/file.err" ] && grep -q ',all,.*,1\(\.0*\)\?,\?$' "$T/eval.csv"; then pass odd-offsets-mha-file
else fail odd-offsets-mha-file "rc $rc $(head -c 300 "$T/file.err") $(tail -n 1 "$T/eval.csv")"; fi
for c in "hu-window --preset soft-tissue --mapping medsam" "hu-window --percentiles 1,99" \
	"ccl-clean --min 50 --min2d 5" "roi-crop --slices labelled" "roi-crop --bbox 2d --margin 2 --slices range" \
	"roi-crop --bbox 3d --margin 1"; do
	n=$(echo "$c" | tr ' ,' '__' | tr -s '_' | sed 's/--//g')
	$c "$T/case.vol" > "$T/file.out" 2> "$T/file.err"; r1=$?
	cat "$T/case.vol" | $c > "$T/pipe.out" 2> "$T/pipe.err"; r2=$?
	if [ $r1 -eq 0 ] && [ $r2 -eq 0 ] && [ -s "$T/file.out" ] && cmp -s "$T/file.out" "$T/pipe.out"; then pass "map-$n"
	else fail "map-$n" "rc $r1/$r2 $(head -c 200 "$T/file.err")"; fi
done
for c in "hu-window --preset soft-tissue --mapping medsam" "ccl-clean --min 50" "roi-crop --slices labelled"; do
	n=$(echo "$c" | cut -d' ' -f1)
	$c "$T/short.vol" > /dev/null 2> "$T/short.err"; rc=$?
	if [ $rc -eq 1 ] && [ "$(wc -l < "$T/short.err")" -eq 1 ] && grep -q 'truncated' "$T/short.err"; then pass "map-short-file-$n"
	else fail "map-short-file-$n" "rc $rc: $(head -c 200 "$T/short.err")"; fi
	# the same through a pipe: large reads go straight into the frame
	cat "$T/short.vol" | $c > /dev/null 2> "$T/short.err"; rc=$?
	if [ $rc -eq 1 ] && [ "$(wc -l < "$T/short.err")" -eq 1 ] && grep -q 'truncated' "$T/short.err"; then pass "short-pipe-$n"
	else fail "short-pipe-$n" "rc $rc: $(head -c 200 "$T/short.err")"; fi
done

# files read by the format layer: raw data of 1 MiB or more is mapped, and
# what changes it afterwards (NIfTI scaling, a float label made integer, .npy)
# replaces the mapping: values as nibabel/numpy read them
$PY - "$T" <<'PYEOF'
import sys
import numpy as np
import nibabel as nib
T = sys.argv[1]
rng = np.random.default_rng(5)
a = rng.integers(-1000, 1000, (80, 70, 120)).astype(np.int16)
img = nib.Nifti1Image(a, np.diag([0.7, 0.8, 2.0, 1.0]))
img.header.set_slope_inter(2.0, -3.0)
nib.save(img, T + "/scaled.nii")
lab = (rng.random((80, 70, 120)) * 4).astype(np.float32).round()
nib.save(nib.Nifti1Image(lab, np.diag([0.7, 0.8, 2.0, 1.0])), T + "/flab.nii")
np.save(T + "/big.npy", a)
PYEOF
cat > "$T/chk.py" <<'PYEOF'
import sys
sys.path.insert(0, "tests")
import numpy as np
import nibabel as nib
from mpstream import read_frames
T = sys.argv[1]
fr = read_frames(open(T + "/maps.vol", "rb").read())
want = [np.asanyarray(nib.load(T + "/scaled.nii").dataobj), np.asanyarray(nib.load(T + "/flab.nii").dataobj),
        np.load(T + "/big.npy")]
assert len(fr) == 3, len(fr)
assert np.array_equal(fr[0].array.transpose(2, 1, 0), want[0]), "scaled"
assert fr[1].array.dtype.kind in "iu" and np.array_equal(fr[1].array.transpose(2, 1, 0), want[1]), "label"
assert np.array_equal(fr[2].array, want[2]) or np.array_equal(fr[2].array.transpose(2, 1, 0), want[2]), "npy"
PYEOF
if vol-cat "$T/scaled.nii" --label "$T/flab.nii" "$T/big.npy" > "$T/maps.vol" 2> "$T/maps.err" && $PY "$T/chk.py" "$T" 2>> "$T/maps.err"; then
	pass map-format-files
else fail map-format-files "$(tail -c 300 "$T/maps.err")"; fi

# gzip files are inflated by ISA-L: one member or several (as pigz/bgzip and
# `cat a.gz b.gz` make), a truncated file, a wrong CRC-32
$PY - "$T" <<'PYEOF'
import gzip, sys
T = sys.argv[1]
raw = open(T + "/scaled.nii", "rb").read()
open(T + "/one.nii.gz", "wb").write(gzip.compress(raw, 6))
h = len(raw) // 3
open(T + "/multi.nii.gz", "wb").write(gzip.compress(raw[:h], 1) + gzip.compress(raw[h:2 * h], 9) + gzip.compress(raw[2 * h:], 6))
z = gzip.compress(raw, 6)
open(T + "/cut.nii.gz", "wb").write(z[:len(z) * 2 // 3])
bad = bytearray(z)
bad[-8] ^= 0x55
open(T + "/crc.nii.gz", "wb").write(bytes(bad))
PYEOF
vol-cat --case g "$T/scaled.nii" > "$T/plain.vol" 2>/dev/null
for k in one multi; do
	if vol-cat --case g "$T/$k.nii.gz" > "$T/$k.vol" 2> "$T/$k.err" && cmp -s "$T/plain.vol" "$T/$k.vol"; then pass "gzip-$k-member"
	else fail "gzip-$k-member" "$(head -c 200 "$T/$k.err")"; fi
done
expect_err gzip-truncated 1 "truncated" vol-cat "$T/cut.nii.gz"
expect_err gzip-bad-crc 1 "corrupt compressed data" vol-cat "$T/crc.nii.gz"
