# tests/lib.sh - sourced by every shell test (tests/t/*.sh), run from the
# project root by tests/run.sh.  Each test case prints one line:
#   PASS name | FAIL name: why | SKIP name: why
# Variables: BIN (programs), DATA (../shared/data), T (a private temp dir),
# PY (Debian's python3 with numpy/scipy/nibabel), VPY (the venv's python, with
# PyPI packages; may lack some: test with have_py MODULE).
BIN=${BIN:-bin}
DATA=${DATA:-../shared/data}
PY=${PY:-/usr/bin/python3}
VPY=${VPY:-.venv/bin/python3}
[ -x "$VPY" ] || VPY=$PY
T=$(mktemp -d "${TMPDIR:-/tmp}/medpipe-test.XXXXXX")
trap 'rm -rf "$T"' EXIT
export PATH="$PWD/$BIN:$PATH"

pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }
skip() { echo "SKIP $1: $2"; }
# skip_ref NAME WHY: a reference (package, program) the comparison needs is
# missing: a skip, but a failure under CI=true, where tests/deps.sh installs it
skip_ref() {
	if [ "${CI:-}" = true ]; then echo "FAIL $1: $2 (a missing reference fails under CI=true; run tests/deps.sh)"
	else echo "SKIP $1: $2"; fi
}
# check NAME CMD... : pass if CMD exits 0 (its stderr shown on failure)
check() {
	local n
	n=$1; shift
	if "$@" > "$T/.out" 2> "$T/.err"; then pass "$n"
	else fail "$n" "exit $? from: $* :: $(head -c 300 "$T/.err" | tr '\n' ' ')"; fi
}
# expect_err NAME CODE PATTERN CMD... : CMD must exit CODE and print exactly
# one line on stderr matching PATTERN (grep -E), and nothing on stdout
expect_err() {
	local n code pat rc lines
	n=$1; code=$2; pat=$3; shift 3
	"$@" > "$T/.out" 2> "$T/.err"; rc=$?
	lines=$(wc -l < "$T/.err")
	if [ "$rc" -ne "$code" ]; then fail "$n" "exit $rc, wanted $code: $(head -c 300 "$T/.err")"
	elif [ "$lines" -ne 1 ]; then fail "$n" "$lines lines on stderr: $(head -c 300 "$T/.err" | tr '\n' '|')"
	elif ! grep -Eq -- "$pat" "$T/.err"; then fail "$n" "message '$(cat "$T/.err")' does not match '$pat'"
	elif [ -s "$T/.out" ] && [ "$code" -ne 0 ]; then fail "$n" "wrote $(wc -c < "$T/.out") bytes to stdout"
	else pass "$n"; fi
}
have_data() { [ -e "$DATA/$1" ]; }
have_py() { "$VPY" -c "import $1" 2>/dev/null; }
have_cmd() { command -v "$1" >/dev/null 2>&1; }
