#!/bin/sh
# the build never redoes work: after `make`, a second make has nothing to do,
# and a changed kernel source recompiles only the file that embeds the kernels
. tests/lib.sh
S="SANITIZE=${SANITIZE:-0}"
if make -q $S all > /dev/null 2>&1; then pass make-q-up-to-date
else fail make-q-up-to-date "make -q all says out of date after a build: $(make -n $S all 2>&1 | head -3 | tr '\n' '|')"; fi
n=$(make -n $S all 2>/dev/null | grep -c -- ' -c -o ')
if [ "$n" -eq 0 ]; then pass make-twice-nothing; else fail make-twice-nothing "$n compiles on a second make"; fi
objs=$(make -n -W opencl/resize.cl $S all 2>/dev/null | grep -- ' -c -o ' | sed 's/.* -c -o \([^ ]*\) .*/\1/' | tr '\n' ' ')
if [ "$objs" = "build/opencl/cl_runtime.o " ]; then pass kernel-change-one-object
else fail kernel-change-one-object "a changed .cl recompiles: $objs"; fi
n=$(make -n $S CFLAGS=-O0 all 2>/dev/null | grep -c -- ' -c -o ')
if [ "$n" -gt 20 ]; then pass flags-change-rebuilds; else fail flags-change-rebuilds "$n compiles after a flags change"; fi
