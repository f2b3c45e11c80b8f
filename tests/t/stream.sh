#!/bin/sh
# The frame stream: reading every variant, writing, passing through, and
# refusing malformed input with one line (see medpipe-vol(5)).
. tests/lib.sh
G="$PY tests/gen/nrrdframe.py"
for k in basic two gzip big ras alltypes rgb; do $G "$T/$k.nrrd" $k; done

check info-basic sh -c "vol-info $T/basic.nrrd | grep -q 'sizes:       7 6 5'"
check info-orient sh -c "vol-info -b $T/basic.nrrd | grep -q 'LPS'"
check info-rgb sh -c "vol-info $T/rgb.nrrd | grep -q 'RGB-color'"
check pass-byte-exact sh -c "vol-cat - < $T/two.nrrd | cmp - $T/two.nrrd"
check pass-file-byte-exact sh -c "vol-cat $T/two.nrrd $T/basic.nrrd > $T/cat.out && cat $T/two.nrrd $T/basic.nrrd | cmp - $T/cat.out"

# independent reader (numpy) on what we write
cat > "$T/cmp.py" <<'PYEOF'
import sys
sys.path.insert(0, "tests"); sys.path.insert(0, "tests/gen")
import numpy as np
from mpstream import read_frames
a = read_frames(open(sys.argv[1], "rb").read())
b = read_frames(open(sys.argv[2], "rb").read())
flip = len(sys.argv) > 3 and sys.argv[3] == "ras"
assert len(a) == len(b), (len(a), len(b))
for x, y in zip(a, b):
    assert x.array.dtype == y.array.dtype and x.array.shape == y.array.shape, (x.array.dtype, y.array.dtype)
    assert np.array_equal(x.array, y.array, equal_nan=True)
    s = np.array([-1, -1, 1]) if flip else np.ones(3)
    for dx, dy in zip(x.dirs, y.dirs):
        assert (dx is None) == (dy is None)
        if dx is not None:
            assert np.allclose(np.array(dx) * s, dy, rtol=0, atol=0), (dx, dy)
    assert np.allclose(np.array(x.origin) * s, y.origin, rtol=0, atol=0)
    assert y.fields["space"] == "left-posterior-superior" and y.fields["encoding"] == "raw"
PYEOF
for k in gzip big alltypes rgb; do
	check "rewrite-$k" sh -c "vol-cat - < $T/$k.nrrd > $T/$k.out && $PY $T/cmp.py $T/$k.nrrd $T/$k.out"
done
check rewrite-ras-to-lps sh -c "vol-cat $T/ras.nrrd > $T/ras.out && $PY $T/cmp.py $T/ras.nrrd $T/ras.out ras"
check set-role sh -c "vol-cat --role label --case zz $T/basic.nrrd | vol-info -k | grep -q 'medpipe.role:=label'"

# malformed input: exit 1, one line, nothing on stdout
B=$T/basic.nrrd
hdrlen=$(grep -a -b -m1 '^$' "$B" | cut -d: -f1)
head -c $((hdrlen + 1 + 100)) "$B" > "$T/trunc-data"
head -c 40 "$B" > "$T/trunc-hdr"
: > "$T/empty"
head -c 3000 /dev/urandom > "$T/garbage"
sed 's/^type: int16/type: int17/' "$B" > "$T/badtype"
sed 's/^sizes: 7 6 5/sizes: 7 6 -5/' "$B" > "$T/negsize"
sed 's/^sizes: 7 6 5/sizes: 4294967296 4294967296 4294967296/' "$B" > "$T/overflow"
sed 's/^sizes: 7 6 5/sizes: 100000 100000 100000/' "$B" > "$T/absurd"
sed 's/^endian: little/colour: blue/' "$B" > "$T/unknownfield"
sed '/^endian: little/d' "$B" > "$T/noendian"
sed 's/^encoding: raw/encoding: bzip2/' "$B" > "$T/bzip2"
sed 's/^dimension: 3/dimension: 7/' "$B" > "$T/dim7"
sed 's/^encoding: raw/encoding: gzip/' "$B" > "$T/badgzip"
sed 's/^space origin: .*/space origin: (1,2)/' "$B" > "$T/badorigin"
sed 's/^space directions: .*/space directions: (1,0,0) (0,1,0)/' "$B" > "$T/fewdirs"
sed 's/^encoding: raw/encoding raw/' "$B" > "$T/nocolon"
{ cat "$B"; head -c 50 "$B"; } > "$T/trunc-second"
printf 'NRRD0004\ntype: short\ndimension: 1\nsizes: 4\nendian: little\nencoding: raw\ndata file: x.raw\n\n' > "$T/datafile"
for c in trunc-data:truncated trunc-hdr:truncated empty:empty garbage:NRRD badtype:type negsize:sizes \
	overflow:overflow absurd:limit unknownfield:unknown noendian:endian bzip2:bzip2 dim7:dimension \
	badgzip:gzip badorigin:origin fewdirs:directions nocolon:line datafile:data.file; do
	f=${c%%:*}; pat=${c#*:}
	expect_err "reject-$f" 1 "^vol-info: .*$pat" vol-info "$T/$f"
	expect_err "reject-cat-$f" 1 "^vol-cat: .*$pat" vol-cat - < "$T/$f"
done

# a bad second frame: the first goes on whole, then one line and exit 1
vol-cat - < "$T/trunc-second" > "$T/ts.out" 2> "$T/ts.err"; rc=$?
if [ $rc -eq 1 ] && [ "$(wc -l < "$T/ts.err")" -eq 1 ] && grep -q "frame 2" "$T/ts.err" && cmp -s "$T/ts.out" "$B"; then pass reject-trunc-second
else fail reject-trunc-second "rc=$rc $(cat "$T/ts.err")"; fi

# a reader that goes away ends the writer quietly
$PY -c "
import sys; sys.path.insert(0,'tests/gen'); import numpy as np, nrrdframe
sys.stdout.buffer.write(nrrdframe.frame(np.zeros((64,256,256),np.int16)) * 4)" > "$T/big.nrrd"
vol-cat "$T/big.nrrd" 2> "$T/pipe.err" | head -c 100 > /dev/null
if [ -s "$T/pipe.err" ]; then fail quiet-epipe "$(cat "$T/pipe.err")"; else pass quiet-epipe; fi

# refusing a terminal
if have_cmd script; then
	script -qec "vol-cat $B" /dev/null > "$T/tty.out" 2>&1; rc=$?
	if [ $rc -eq 2 ] && grep -q terminal "$T/tty.out"; then pass refuse-terminal; else fail refuse-terminal "rc=$rc $(head -c 200 $T/tty.out)"; fi
else
	skip refuse-terminal "no script(1)"
fi

# vol-save: whole files or none
check save-nrrd-exact sh -c "vol-save $T/s1.nrrd < $B && cmp $T/s1.nrrd $B"
vol-save "$T/ok-{n}.nrrd" < "$T/trunc-second" 2>/dev/null; rc=$?
left=$(ls "$T" | grep -c 'tmp-')
if [ $rc -eq 1 ] && [ -f "$T/ok-1.nrrd" ] && [ ! -e "$T/ok-2.nrrd" ] && [ "$left" -eq 0 ]; then pass save-atomic
else fail save-atomic "rc=$rc files: $(ls $T | tr '\n' ' ')"; fi
expect_err save-same-name 1 "already holds" vol-save "$T/same.nrrd" "$T/same.nrrd" < "$T/two.nrrd"
expect_err save-no-name 2 "no output" vol-save < "$B"
expect_err save-unknown-ext 1 "unknown output format" vol-save "$T/x.xyz" < "$B"

# one failure in a pipeline prints one line: later stages that get an empty
# pipe exit 1 quietly (--verbose says why); an empty file is still reported
sh -c "vol-cat $T/missing.nii | hu-window --preset bone | ccl-clean --min 10 | vol-resize --size 8x8 | vol-info" > /dev/null 2> "$T/chain.err"; rc=$?
if [ $rc -eq 1 ] && [ "$(wc -l < "$T/chain.err")" -eq 1 ] && grep -q '^vol-cat: .*missing.nii' "$T/chain.err"; then pass pipeline-one-error-line
else fail pipeline-one-error-line "rc=$rc: $(tr '\n' '|' < "$T/chain.err")"; fi
for p in "hu-window --preset bone" "ccl-clean --min 10" "vol-info" "vol-save $T/never.nrrd" "vol2npz -o $T/never.npz" "seg-eval" "vol-preview -o $T/never.png"; do
	n=$(echo "$p" | cut -d' ' -f1)
	: | $p > /dev/null 2> "$T/q.err"; rc=$?
	if [ $rc -eq 1 ] && [ ! -s "$T/q.err" ]; then pass "empty-pipe-quiet-$n"; else fail "empty-pipe-quiet-$n" "rc=$rc $(head -c 200 "$T/q.err")"; fi
done
: | hu-window --preset bone --verbose > /dev/null 2> "$T/q.err"
if grep -q 'empty stream' "$T/q.err"; then pass empty-pipe-verbose; else fail empty-pipe-verbose "$(cat "$T/q.err")"; fi
