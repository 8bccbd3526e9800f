# tests/cli/lib.sh - helpers for command-level tests (sourced).
#
#   t_run NAME CMD...      PASS if CMD exits 0
#   t_fail NAME STATUS CMD...  PASS if CMD exits with STATUS
#   t_check NAME COND...   PASS if the test command COND succeeds
# Each test prints "PASS: NAME" or "FAIL: NAME" and, on failure, what ran.
# The script exits non-zero at the end if anything failed (t_done).
set -u
: "${APPLIANCE:?run through tests/run.sh or set APPLIANCE}"
T_FAILS=0
T_TMP=$(mktemp -d "${TMPDIR:-/tmp}/appliance-cli.XXXXXX")
trap 'rm -rf "$T_TMP"' EXIT
cd "$T_TMP" || exit 2

t_pass() { echo "PASS: $1"; }
t_failed() { echo "FAIL: $1"; shift; [ $# -gt 0 ] && echo "  $*"; T_FAILS=$((T_FAILS + 1)); }

t_run() {
	name=$1; shift
	if out=$("$@" 2>&1); then t_pass "$name"; else
		t_failed "$name" "command: $* (exit $?)"; echo "$out" | tail -n 15 | sed 's/^/  | /'; fi
}

t_fail() {
	name=$1 want=$2; shift 2
	out=$("$@" 2>&1); rc=$?
	if [ "$rc" = "$want" ]; then t_pass "$name"; else
		t_failed "$name" "command: $* (exit $rc, wanted $want)"; echo "$out" | tail -n 15 | sed 's/^/  | /'; fi
}

t_check() {
	name=$1; shift
	if "$@"; then t_pass "$name"; else t_failed "$name" "condition: $*"; fi
}

t_done() { exit $((T_FAILS > 0)); }

# flip_byte FILE OFFSET: invert one byte in place.  Tampering tests
# invert rather than write a fixed value: in random data a fixed value is
# already there one run in 256, and the "tampered" file is then intact.
flip_byte() {
	_b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
	printf "\\$(printf '%03o' $((255 - _b)))" |
		dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
