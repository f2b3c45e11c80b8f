#!/bin/sh
# dcm2vol vs dcm2niix on a generated CT series (BENCH_SLICES slices of
# 512x512 int16, default 500), uncompressed and JPEG lossless (process 14
# SV1, written by DCMTK's dcmcjpeg): `dcm2vol DIR | vol-save out.nii` (or
# `> out.nrrd` when vol-save is not built) against `dcm2niix -z n -b n`.
# Also `dcm2vol DIR > out.nrrd` alone (the same kind of output as dcm2niix's
# .nii: one file holding the volume). Best of 3 wall-clock runs each, caches
# warm. Prints seconds and the ratio medpipe/dcm2niix (< 1: medpipe faster;
# the goal is <= 0.5).
PY=${PY:-/usr/bin/python3}
N=${BENCH_SLICES:-500}
command -v dcm2niix > /dev/null || { echo "dcm2vol: SKIP (no dcm2niix)"; exit 0; }
command -v dcm2vol > /dev/null || { echo "dcm2vol: SKIP (no bin/dcm2vol)"; exit 0; }
D=$(mktemp -d "${TMPDIR:-/tmp}/bench-dcm2vol.XXXXXX")
trap 'rm -rf "$D"' EXIT
# BENCH_DCM_DIR: reuse a folder made by tests/gen/dcmtree.py --bench
if [ -n "${BENCH_DCM_DIR:-}" ] && [ -d "$BENCH_DCM_DIR/plain" ]; then ln -s "$(cd "$BENCH_DCM_DIR" && pwd)" "$D/in"
else $PY tests/gen/dcmtree.py --bench "$D/in" --slices "$N" --size 512 || exit 1; fi
mkdir -p "$D/o1" "$D/o2"
best() {  # best of 3 wall-clock seconds of "$@"
	b=""
	for i in 1 2 3; do
		s=$(date +%s.%N)
		"$@" > /dev/null 2>&1 || { echo "failed: $*" >&2; return 1; }
		e=$(date +%s.%N)
		b=$(echo "$s $e $b" | awk '{t=$2-$1; if ($3 == "" || t < $3) print t; else print $3}')
	done
	echo "$b"
}
ours() {
	if command -v vol-save > /dev/null; then dcm2vol "$1" | vol-save "$D/o1/out.nii"
	else dcm2vol "$1" > "$D/o1/out.nrrd"; fi
}
alone() { dcm2vol "$1" > "$D/o1/out.nrrd"; }
theirs() { rm -f "$D"/o2/*; dcm2niix -z n -b n -o "$D/o2" -f out "$1"; }
for kind in plain jpegll; do
	[ -d "$D/in/$kind" ] || { echo "dcm2vol $kind: SKIP (no data)"; continue; }
	# warm the page cache
	cat "$D/in/$kind"/* > /dev/null
	a=$(best ours "$D/in/$kind") || continue
	c=$(best alone "$D/in/$kind") || continue
	b=$(best theirs "$D/in/$kind") || continue
	echo "$a $b" | awk -v k="$kind" -v n="$N" '{printf "dcm2vol %s %d slices 512x512: dcm2vol | vol-save out.nii %.3fs, dcm2niix %.3fs, ratio %.2f (medpipe/dcm2niix)\n", k, n, $1, $2, $1/$2}'
	echo "$c $b" | awk -v k="$kind" -v n="$N" '{printf "dcm2vol %s %d slices 512x512: dcm2vol > out.nrrd %.3fs, dcm2niix %.3fs, ratio %.2f (medpipe/dcm2niix)\n", k, n, $1, $2, $1/$2}'
done
