#!/bin/sh
# cppcheck over every C source: no warnings (DESIGN: no warnings from cppcheck).
. tests/lib.sh
if ! have_cmd cppcheck; then skip_ref cppcheck "cppcheck not installed"; exit 0; fi
for d in libcommon opencl tools tests/unit tests/fuzz; do
	ls $d/*.c > /dev/null 2>&1 || continue
	if cppcheck --enable=warning,performance,portability --error-exitcode=1 -q --std=c11 \
		-D_GNU_SOURCE -Ilibcommon -Iopencl -Itests/fuzz --suppress=missingIncludeSystem \
		-j2 $d/*.c > "$T/cc.out" 2>&1; then
		pass "cppcheck-$d"
	else
		fail "cppcheck-$d" "$(head -c 600 "$T/cc.out" | tr '\n' ' ')"
	fi
done
