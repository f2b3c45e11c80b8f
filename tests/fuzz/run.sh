#!/bin/sh
# tests/fuzz/run.sh [HARNESS...] - run each libFuzzer harness for
# $FUZZ_SECONDS seconds (default 60), after replaying its regression files
# (tests/fuzz/regress/HARNESS/). Seeds: tests/fuzz/seeds.py (generated files and
# small files of ../shared/data). New corpus: build/fuzz/corpus/HARNESS/;
# findings: build/fuzz/findings/HARNESS/ (crash-*, leak-*, timeout-*, oom-*).
# Prints one line per harness: PASS/FAIL, executions per second, coverage,
# findings. Exits 1 when any harness found something.
# FUZZ_JOBS=N (default 1) runs N harnesses at a time (CI: 2, one per core);
# the lines come out in the order of the harness list once all have run.
cd "$(dirname "$0")/../.." || exit 2
B=build/fuzz
SECS=${FUZZ_SECONDS:-60}
DATA=${DATA:-../shared/data}
PY=python3
[ -x .venv/bin/python3 ] && PY=.venv/bin/python3
# default: every harness fuzz.mk builds (its HARNESSES list)
HARNESSES=${*:-$(sed -n '/^HARNESSES *=/,/[^\\]$/p' tests/fuzz/fuzz.mk | sed 's/^HARNESSES *=//; s/\\$//' | tr -s ' \t\n' '   ')}
# leaks inside libhdf5/libnetcdf on damaged files are theirs (lsan.supp)
JOBS=${FUZZ_JOBS:-1}
case $JOBS in ''|*[!0-9]*|0) echo "fuzz: FUZZ_JOBS must be a positive number: $JOBS" >&2; exit 2 ;; esac
if [ -z "${FUZZ_CHILD:-}" ]; then
	export LSAN_OPTIONS="suppressions=$PWD/tests/fuzz/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
	rm -rf $B/seeds
	$PY tests/fuzz/seeds.py $B/seeds "$DATA" || { echo "fuzz: seeds.py failed" >&2; exit 2; }
fi
if [ "$JOBS" -gt 1 ]; then
	# one queue of harnesses per job (round robin), each run by this script
	# (FUZZ_CHILD: the seeds are written) into its own file; the harnesses'
	# lines are printed in list order once every job has ended
	mkdir -p $B/log
	i=0; pids=
	for h in $HARNESSES; do
		eval "q$((i % JOBS))=\"\${q$((i % JOBS)):-} $h\""
		i=$((i + 1))
	done
	j=0
	while [ $j -lt $JOBS ] && [ $j -lt $i ]; do
		eval "q=\$q$j"
		FUZZ_CHILD=1 FUZZ_JOBS=1 sh tests/fuzz/run.sh $q > $B/log/job$j.out 2>&1 &
		pids="$pids $!"
		j=$((j + 1))
	done
	fail=0
	for p in $pids; do wait $p || fail=1; done
	for h in $HARNESSES; do
		grep -h -E "^(PASS|FAIL) fuzz-$h[:]" $B/log/job*.out || { echo "FAIL fuzz-$h: no result (see $B/log/job*.out)"; fail=1; }
	done
	# anything else the jobs said (errors, the first sanitizer line of a finding)
	grep -h -v -E '^(PASS|FAIL) fuzz-' $B/log/job*.out
	[ $fail -eq 0 ] && rm -f $B/log/job*.out
	exit $fail
fi
fail=0
for h in $HARNESSES; do
	bin=$B/bin/$h
	[ -x $bin ] || { echo "FAIL fuzz-$h: $bin not built (make fuzz)"; fail=1; continue; }
	mkdir -p $B/corpus/$h $B/findings/$h $B/log
	rm -f $B/findings/$h/*
	log=$B/log/$h.log
	# DCMTK allocates an element's declared length (32 bits: up to 4 GiB)
	# before it finds the file too short for it; dcm2vol then fails cleanly
	# (exit 1, one line, ~10 MB resident: tests/fuzz/regress/dicom/oom-*),
	# so the malloc limit of the DICOM harnesses is above 4 GiB
	lim=-rss_limit_mb=2048
	# minc: a damaged NetCDF header can take the ASan build ~10 s per read
	# (child and parent: libnetcdf's huge allocations, shadow memory; the
	# gcc build reads the same file in 0.14 s)
	to=20; [ $h = minc ] && to=60
	case $h in dicom*) lim="$lim -malloc_limit_mb=4200" ;; esac
	# the MINC reader's forked child may ask libhdf5 for any size: above
	# the limit, libFuzzer's malloc hook would report it (tests/fuzz/fuzz.h)
	# OpenSlide (glib) allocates sizes a damaged slide declares (4 GB seen)
	# without touching them; wsi-tile stays at ~25 MB resident on such a file
	case $h in minc|wsi) lim="$lim -malloc_limit_mb=1048576" ;; esac
	# the regression files first: each must run clean
	if ls tests/fuzz/regress/$h/* > /dev/null 2>&1; then
		if ! $bin $lim -timeout=$to tests/fuzz/regress/$h/* > $log.regress 2>&1; then
			echo "FAIL fuzz-$h: a regression file fails again (see $log.regress)"
			fail=1
			continue
		fi
	fi
	# the regression files seed the run too (new inputs go to the first folder)
	reg=; [ -d tests/fuzz/regress/$h ] && reg=tests/fuzz/regress/$h
	nice $bin -max_total_time=$SECS -timeout=$to $lim -print_final_stats=1 \
		-artifact_prefix=$B/findings/$h/ $B/corpus/$h $B/seeds/$h $reg > $log 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' $log)
	eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' $log)
	cov=$(grep -o 'cov: [0-9]*' $log | tail -1 | cut -d' ' -f2)
	ft=$(grep -o 'ft: [0-9]*' $log | tail -1 | cut -d' ' -f2)
	# slow-unit-*: libFuzzer keeps the slowest input (over 10 s); not a finding
	nf=$(ls $B/findings/$h | grep -v '^slow-unit-' | wc -l)
	msg="${SECS}s, ${execs:-?} runs, ${eps:-?} exec/s, cov ${cov:-?}, ft ${ft:-?}, findings $nf"
	if [ $rc -ne 0 ] || [ "$nf" -ne 0 ]; then
		echo "FAIL fuzz-$h: $msg (rc $rc; $B/findings/$h/, log $log)"
		grep -m1 -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error' $log | sed 's/^/  /'
		fail=1
	else
		echo "PASS fuzz-$h: $msg"
	fi
done
exit $fail
