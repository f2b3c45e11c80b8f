#!/bin/sh
# medpipe-devices and the --device choice (through PoCL in CI)
. tests/lib.sh
export MEDPIPE_CACHE_DIR="$T/cache"
check "medpipe-devices lists cpu" sh -c 'medpipe-devices | grep -q "^cpu "'
if ! have_cmd clinfo || ! clinfo -l 2>/dev/null | grep -q Device; then
	skip "medpipe-devices opencl" "no OpenCL device (clinfo -l lists none)"
else
	check "medpipe-devices lists an OpenCL device" sh -c 'medpipe-devices --brief | grep -q "^opencl:0 "'
	check "medpipe-devices --build fills the cache" sh -c 'medpipe-devices --build --device opencl:0 | grep -q "program convert" && ls "$MEDPIPE_CACHE_DIR" | grep -q "^convert-.*\.clbin$"'
	check "medpipe-devices --build loads from the cache" sh -c 'medpipe-devices --build --device opencl:0 | grep -q "convert *loaded from cache"'
	expect_err "medpipe-devices --device opencl:99" 1 "^medpipe-devices: opencl: no device 99" medpipe-devices --device opencl:99
fi
expect_err "medpipe-devices --device bad" 2 "^medpipe-devices: --device: bad device 'gpu'" medpipe-devices --device gpu
expect_err "medpipe-devices bad MEDPIPE_DEVICE" 2 "bad device" env MEDPIPE_DEVICE=x medpipe-devices --device y
# no platform at all: the ICD loader finds no vendor file
OCL_ICD_VENDORS=$T/none medpipe-devices > "$T/np" 2>&1
if [ $? -eq 0 ] && grep -q "^opencl *none: opencl: no OpenCL platform found" "$T/np" && grep -q "^auto *cpu" "$T/np"; then
	pass "medpipe-devices without a platform"
else
	fail "medpipe-devices without a platform" "$(cat "$T/np" | tr '\n' '|')"
fi
# auto without a GPU: the choice is remembered, and still cpu
if medpipe-devices | grep -q "^auto *cpu"; then
	check "auto without a GPU remembered in the cache" sh -c 'ls "$MEDPIPE_CACHE_DIR" | grep -q "^auto-"'
	check "auto remembered gives cpu" sh -c 'medpipe-devices | grep -q "^auto *cpu"'
else
	skip "auto remembered" "auto chose an OpenCL device here"
fi
check "medpipe-devices --help" medpipe-devices --help
