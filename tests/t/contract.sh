#!/bin/sh
# The promises every program makes (DESIGN.md): --help, --version, a man page
# in step with the code, exit 2 with one line on bad usage.
. tests/lib.sh
for p in bin/*; do
	[ -x "$p" ] || continue
	n=$(basename "$p")
	check "$n-help" sh -c "$p --help | grep -q '^Usage: $n'"
	check "$n-version" sh -c "$p --version | grep -q '^$n (medpipe) [0-9]'"
	if [ -f "man/man1/$n.1" ]; then
		if "$p" --man | cmp -s - "man/man1/$n.1"; then pass "$n-man-in-step"
		else fail "$n-man-in-step" "man/man1/$n.1 differs from '$n --man' (run make man)"; fi
		if have_cmd man; then
			check "$n-man-renders" sh -c "MANWIDTH=80 man -l man/man1/$n.1 2>&1 >/dev/null | grep -v 'cannot adjust' | grep . && exit 1 || exit 0"
		fi
	else
		fail "$n-man" "no man/man1/$n.1"
	fi
	expect_err "$n-bad-option" 2 "^$n: unknown option" "$p" --no-such-option
done
