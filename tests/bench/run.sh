#!/bin/sh
# tests/bench/run.sh - runs every benchmark (tests/bench/*.sh except this one).
# Each runs a medpipe step and the tool a user would otherwise use on the same
# input in the same run, and prints the ratio. Not part of `make check`.
# BENCH="pattern" runs a subset.
cd "$(dirname "$0")/../.." || exit 1
export PATH="$PWD/bin:$PATH" PY=${PY:-/usr/bin/python3}
VPY=.venv/bin/python3; [ -x "$VPY" ] || VPY=$PY
export VPY
for b in tests/bench/*.sh; do
	case "$b" in */run.sh) continue;; esac
	if [ -n "${BENCH:-}" ]; then case "$b" in *$BENCH*) ;; *) continue;; esac; fi
	echo "== $(basename "$b" .sh)"
	sh "$b" || echo "(benchmark $b failed with status $?)"
done
