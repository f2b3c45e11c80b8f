#!/bin/sh
# The medpipe.* keys are defined once (libcommon/mp_keys.h): no other file of
# libcommon/, tools/ or opencl/ spells one out in a string, and every key
# macro is in the table (MP_KEY_TABLE) that tests/unit/test_keys.c compares
# with man/man5/medpipe-vol.5.
. tests/lib.sh
H=libcommon/mp_keys.h
# string literals outside comments: strip /* */ and // comments, then look for "...medpipe.
lits=$(for f in libcommon/*.c libcommon/*.h libcommon/*.cc tools/*.c opencl/*.c opencl/*.h; do
	[ -f "$f" ] || continue
	case "$f" in $H|libcommon/keys.c) continue;; esac
	sed -e 's://.*$::' "$f" | awk -v F="$f" '
		{ line = $0; out = "" }
		{ while (line != "") {
			if (inc) { i = index(line, "*/"); if (!i) { line = ""; break } line = substr(line, i + 2); inc = 0 }
			i = index(line, "/*"); if (!i) { out = out line; line = ""; break }
			out = out substr(line, 1, i - 1); line = substr(line, i + 2); inc = 1 } }
		out ~ /"[^"]*medpipe\./ { print F ":" NR ": " out }'
done)
if [ -z "$lits" ]; then pass keys-no-literals
else fail keys-no-literals "key names spelled out outside $H (use its MP_K_ macros): $(echo "$lits" | head -5 | tr '\n' ' ')"; fi
defs=$(sed -n 's/^#define \(MP_K_[A-Z0-9_]*\) *"medpipe\.[^"]*[^."]".*/\1/p' $H | sort)
rows=$(sed -n 's/^[[:space:]]*X(\(MP_K_[A-Z0-9_]*\),.*/\1/p' $H | sort)
if [ -n "$defs" ] && [ "$defs" = "$rows" ]; then pass keys-table-complete
else fail keys-table-complete "macros and table rows differ: $(printf '%s\n' "$defs" > $T/d; printf '%s\n' "$rows" > $T/r; diff $T/d $T/r | grep '^[<>]' | tr '\n' ' ')"; fi
