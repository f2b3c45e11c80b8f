#!/bin/sh
# tests/run.sh - runs every test and prints "N passed, N failed, N skipped".
# The failures are listed again just before that line.  A file with a
# failure is run a second time (RERUN=0: not): if it passes then, it counts
# as passed and is listed under "flaky" with the first run's failures.
#   unit tests:  build/tests/*          (from tests/unit/*.c)
#   tool tests:  tests/t/*.sh, tests/t/*.py
# Each prints PASS/FAIL/SKIP lines; a test program that exits non-zero without
# printing a FAIL line counts as one failure, and so does one that prints no
# PASS or SKIP line at all.  Logs: build/test-logs/.
# TESTS="pattern" runs only the tests whose file name matches the pattern.
# CI=true: a missing reference (.venv, a PyPI or Debian package the tests
# compare against) is a failure, not a skip (skip_ref in tests/lib.sh and
# tests/mptest.py).  The skip reasons are listed, grouped, before the last line.
cd "$(dirname "$0")/.." || exit 1
PY=${PY:-/usr/bin/python3}
VPY=.venv/bin/python3; [ -x "$VPY" ] || VPY=$PY
export PY VPY DATA="${DATA:-../shared/data}" BIN=bin
if [ "${SANITIZE:-0}" = 1 ]; then
	export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=99
	export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:exitcode=99
	export LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
fi
[ -d "$DATA" ] || echo "note: $DATA is absent: tests that need real data will be skipped"
logs=build/test-logs; mkdir -p $logs
p=0; f=0; s=0
: > $logs/.skips
: > $logs/.fails
if [ "${CI:-}" = true ] && [ "$VPY" = "$PY" ]; then
	echo "FAIL venv: .venv/bin/python3 is missing and CI=true (run tests/deps.sh): the PyPI reference tests cannot run"
	f=1
fi
# run test file $1 into log $2: sets rc, and tp, tf, ts (its PASS, FAIL and
# SKIP lines; a non-zero exit without a FAIL line, or no line at all, is one
# failure, noted in $3)
run_file() {
	case "$1" in
	*.sh) timeout 900 sh "$1" > "$2" 2>&1 ;;
	*.py) timeout 900 "$VPY" "$1" > "$2" 2>&1 ;;
	*)    timeout 900 "$1" > "$2" 2>&1 ;;
	esac
	rc=$?
	tp=$(grep -c '^PASS ' "$2"); tf=$(grep -c '^FAIL ' "$2"); ts=$(grep -c '^SKIP ' "$2")
	: > "$3"
	if [ "$rc" -ne 0 ] && [ "$tf" -eq 0 ]; then
		echo "$name: exited $rc: $(tail -n 1 "$2")" > "$3"
		tf=1
	elif [ "$tp" -eq 0 ] && [ "$tf" -eq 0 ] && [ "$ts" -eq 0 ]; then
		echo "$name: exited $rc but printed no PASS, FAIL or SKIP line" > "$3"
		tf=1
	fi
	grep '^FAIL ' "$2" | sed "s|^FAIL |$name: |" >> "$3"
}
: > $logs/.flaky
for t in build/tests/* tests/t/*.sh tests/t/*.py; do
	[ -f "$t" ] || continue
	case "$t" in *.d|*.o) continue;; esac
	if [ -n "${TESTS:-}" ]; then case "$t" in *$TESTS*) ;; *) continue;; esac; fi
	name=$(basename "$t")
	log=$logs/$name.log
	start=$(date +%s)
	rm -f "$log.first"
	run_file "$t" "$log" $logs/.cur
	# a file with a failure runs once more (RERUN=0: not): failing again, it
	# counts as failed; passing, it counts as passed but is listed as flaky
	# at the end with the first run's failures (log kept as NAME.log.first)
	if [ "$tf" -gt 0 ] && [ "${RERUN:-1}" != 0 ]; then
		mv "$log" "$log.first"; mv $logs/.cur $logs/.first
		echo "RERUN $name: $(head -n 1 $logs/.first | cut -c 1-200)"
		run_file "$t" "$log" $logs/.cur
		if [ "$tf" -eq 0 ]; then
			sed 's/^/first run: /' $logs/.first >> $logs/.flaky
		fi
	fi
	if [ "$rc" -ne 0 ] && [ "$(grep -c '^FAIL ' "$log")" -eq 0 ]; then
		echo "FAIL $name: exited $rc (see $log)"; tail -n 5 "$log" | sed 's/^/    /'
	elif [ "$tf" -gt 0 ] && [ "$(grep -c '^FAIL ' "$log")" -eq 0 ]; then
		echo "FAIL $name: exited $rc but printed no PASS, FAIL or SKIP line (see $log)"
	fi
	grep -E '^(FAIL|SKIP) ' "$log" | sed "s|^|  $name: |"
	grep '^SKIP ' "$log" | sed 's/^SKIP [^:]*: *//' >> $logs/.skips
	cat $logs/.cur >> $logs/.fails
	echo "$name: $tp passed, $tf failed, $ts skipped ($(( $(date +%s) - start ))s)"
	p=$((p + tp)); f=$((f + tf)); s=$((s + ts))
done
if [ -s $logs/.skips ]; then
	echo "skipped, by reason:"
	sort $logs/.skips | uniq -c | sort -rn | sed 's/^ *\([0-9]*\) /  \1 x /'
fi
# the flaky files and the failures again at the end, where a log's last
# lines show them
if [ -s $logs/.flaky ]; then
	echo "flaky (failed, then passed when run again):"
	cut -c 1-300 $logs/.flaky | head -n 20 | sed 's/^/  /'
fi
if [ -s $logs/.fails ]; then
	echo "failed:"
	cut -c 1-300 $logs/.fails | head -n 20 | sed 's/^/  /'
fi
echo "$p passed, $f failed, $s skipped"
[ "$f" -eq 0 ]
