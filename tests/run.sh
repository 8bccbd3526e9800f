#!/bin/sh
# tests/run.sh - run every suite and end with one summary.
#
# Unit suites are Check programs ($BUILD/tests/test_*); command-level suites
# are shell scripts (tests/cli/*.sh) that report "PASS: name" / "FAIL: name"
# lines through tests/cli/lib.sh.  Scripts named *.slow.sh run only with
# SLOW=1.  The last lines are Check's summary format for the whole run and
# the plain "N passed, N failed" line.
BUILD=${BUILD:-build}
TOP=$(cd "$(dirname "$0")/.." && pwd)
cd "$TOP" || exit 2
BUILD_ABS=$(cd "$BUILD" && pwd)
export APPLIANCE="$BUILD_ABS/appliance" BUILD_ABS TOP
LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/appliance-tests.XXXXXX")
passed=0 failed=0 errors=0 suites_failed=""

if [ "$SANITIZE" = 1 ]; then
	# Check forks each test; leak reports from forked children that
	# exit through Check are noise, real errors still abort.
	export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:${ASAN_OPTIONS:-}"
	export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
fi

run_unit() {
	bin=$1 name=$(basename "$1")
	log="$LOGDIR/$name.log"
	start=$(date +%s)
	"$bin" >"$log" 2>&1
	rc=$?
	line=$(grep -E '^[0-9]+%: Checks: [0-9]+, Failures: [0-9]+, Errors: [0-9]+' "$log" | tail -n 1)
	if [ -z "$line" ]; then
		echo "ERROR: $name produced no summary (exit $rc)"
		tail -n 30 "$log"
		errors=$((errors + 1))
		suites_failed="$suites_failed $name"
		return
	fi
	n=$(echo "$line" | sed -E 's/.*Checks: ([0-9]+).*/\1/')
	f=$(echo "$line" | sed -E 's/.*Failures: ([0-9]+).*/\1/')
	e=$(echo "$line" | sed -E 's/.*Errors: ([0-9]+).*/\1/')
	passed=$((passed + n - f - e))
	failed=$((failed + f))
	errors=$((errors + e))
	echo "$name: $line ($(( $(date +%s) - start ))s)"
	if [ "$f" != 0 ] || [ "$e" != 0 ] || [ "$rc" != 0 ]; then
		grep -E ':[EF]:' "$log" | head -n 20
		[ "$rc" != 0 ] && [ "$f" = 0 ] && [ "$e" = 0 ] && {
			echo "ERROR: $name exited $rc"; tail -n 20 "$log"
			errors=$((errors + 1)); }
		suites_failed="$suites_failed $name"
	fi
}

run_script() {
	script=$1 name=$(basename "$1" .sh)
	log="$LOGDIR/$name.log"
	start=$(date +%s)
	sh "$script" >"$log" 2>&1
	rc=$?
	p=$(grep -c '^PASS: ' "$log")
	f=$(grep -c '^FAIL: ' "$log")
	passed=$((passed + p))
	failed=$((failed + f))
	echo "$name: $p passed, $f failed ($(( $(date +%s) - start ))s)"
	if [ "$f" != 0 ] || [ "$rc" != 0 ]; then
		grep -A8 '^FAIL: ' "$log" | head -n 60
		if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
			echo "ERROR: $name exited $rc"; tail -n 20 "$log"
			errors=$((errors + 1))
		fi
		suites_failed="$suites_failed $name"
	fi
}

for bin in "$BUILD_ABS"/tests/test_*; do
	[ -x "$bin" ] && run_unit "$bin"
done
for script in tests/cli/*.sh; do
	case "$script" in
	*/lib.sh|*/lib-*.sh) continue ;;
	*.slow.sh) [ "$SLOW" = 1 ] || continue ;;
	esac
	run_script "$script"
done

total=$((passed + failed + errors))
pct=100
[ "$total" -gt 0 ] && pct=$((passed * 100 / total))
[ -n "$suites_failed" ] && echo "failing suites:$suites_failed (logs in $LOGDIR)"
[ -z "$suites_failed" ] && rm -rf "$LOGDIR"
echo "$pct%: Checks: $total, Failures: $failed, Errors: $errors"
echo "$passed passed, $((failed + errors)) failed"
[ "$total" -gt 0 ] && [ $((failed + errors)) = 0 ]
