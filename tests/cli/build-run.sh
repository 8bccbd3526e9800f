#!/bin/sh
# tests/cli/build-run.sh - the whole chain on busybox-hello: `appliance
# build`, `appliance pack` into one package, `appliance run` it (QEMU
# engine: the builtin KVM monitor is too slow on these hosts for a Linux
# boot) and see the greeting.
. "$(dirname "$0")/lib.sh"

CACHE=${APPLIANCE_TEST_CACHE:-/var/tmp/appliance-test-cache}
t_run "build" "$APPLIANCE" build -q --cache "$CACHE" --source-date-epoch 1700000000 \
	-o hello.dir "$TOP/recipes/busybox-hello"
t_run "pack" "$APPLIANCE" pack hello.dir -o hello.appliance
out=$(timeout 300 "$APPLIANCE" run --insecure --engine qemu --console stdio \
	hello.appliance 2>&1); rc=$?
echo "$out" | tail -n 3 | sed 's/^/  console: /'
t_check "run: the appliance greets" sh -c 'echo "$1" | grep -q "Hello from busybox-hello!"' - "$out"
t_check "run: it powers off by itself (exit $rc)" test "$rc" = 0
t_done
