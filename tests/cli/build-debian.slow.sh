#!/bin/sh
# tests/cli/build-debian.slow.sh - Debian appliances: debian-minimal boots
# to its login prompt, debian-nginx serves its page through a forwarded
# port.  Slow (mmdebstrap + systemd under TCG); needs root and the Debian
# archive.  Both builds keep their mmdebstrap tarball in the shared cache,
# so reruns skip it; a rebuild that only changes files must not rerun
# mmdebstrap.
. "$(dirname "$0")/lib.sh"

CACHE=${APPLIANCE_TEST_CACHE:-/var/tmp/appliance-test-cache}
build() { "$APPLIANCE" build -q --cache "$CACHE" --source-date-epoch 1700000000 "$@"; }

# Start QEMU on a copy of DIR's raw disk in the background; console to
# console.log.  Extra QEMU arguments follow.
start_vm() {
	dir=$1; shift
	cp --sparse=always "$dir/disk.raw" boot.raw
	: > console.log
	timeout 600 qemu-system-x86_64 -M pc -m 512 -no-reboot -nographic \
		-nodefaults -serial file:console.log -kernel "$dir/vmlinuz" \
		-initrd "$dir/initrd.img" \
		-append "$(sed -n 's/^cmdline = "\(.*\)"$/\1/p' "$dir/manifest.toml")" \
		-drive id=d,file=boot.raw,format=raw,if=none \
		-device virtio-blk-pci,drive=d "$@" &
	VM=$!
}
stop_vm() { kill "$VM" 2>/dev/null; wait "$VM" 2>/dev/null; }
# wait_for SECONDS CMD...: poll until CMD succeeds.
wait_for() {
	n=$1; shift
	while [ "$n" -gt 0 ]; do
		"$@" && return 0
		kill -0 "$VM" 2>/dev/null || return 1
		sleep 2; n=$((n - 2))
	done
	return 1
}

t_run "build debian-minimal" build --output-format raw -o min "$TOP/recipes/debian-minimal"
t_check "Debian kernel and initramfs shipped" test -s min/vmlinuz -a -s min/initrd.img
t_run "filesystem checks clean" e2fsck -fn min/disk.raw
t_run "rebuild debian-minimal from the cached base" build --output-format raw -o min2 "$TOP/recipes/debian-minimal"
t_check "the rebuild is byte-identical" cmp -s min/disk.raw min2/disk.raw
rm -rf min2
t_check "user admin in /etc/passwd" sh -c \
	'debugfs -R "cat /etc/passwd" min/disk.raw 2>/dev/null | grep -q "^admin:x:1000:"'
t_check "hostname set" sh -c \
	'debugfs -R "cat /etc/hostname" min/disk.raw 2>/dev/null | grep -qx minimal'

start_vm min
wait_for 400 grep -q "minimal login:" console.log
t_check "boots to the login prompt" grep -q "minimal login:" console.log
t_check "first-boot command ran" grep -q "first boot of minimal done" console.log
stop_vm
tail -n 5 console.log | sed 's/^/  console: /'

# Only files changed: the cached Debian base is reused (no mmdebstrap).
mkdir -p edit
sed 's/^hostname = "minimal"/hostname = "edited"/' \
	"$TOP/recipes/debian-minimal/recipe.toml" > edit/recipe.toml
t_run "rebuild with another hostname" "$APPLIANCE" build -v --cache "$CACHE" -o edit.out edit/recipe.toml
t_check "mmdebstrap did not run again" sh -c '! grep -q "^\$ mmdebstrap" edit.out/build.log'

t_run "build debian-nginx" build --output-format raw -o web "$TOP/recipes/debian-nginx"
t_check "manifest declares 8080->80" sh -c \
	'grep -A3 "^\[\[vm.ports\]\]" web/manifest.toml | grep -q "host = 8080"'
PORT=$((20000 + $$ % 10000))
start_vm web -netdev user,id=n,hostfwd=tcp:127.0.0.1:$PORT-:80 \
	-device virtio-net-pci,netdev=n
page() { curl -fsS --max-time 5 "http://127.0.0.1:$PORT/" 2>/dev/null | grep -q "Hello from debian-nginx"; }
wait_for 500 page
t_check "nginx serves the page through the forwarded port" page
stop_vm
tail -n 5 console.log | sed 's/^/  console: /'
t_done
