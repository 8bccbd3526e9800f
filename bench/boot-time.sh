#!/bin/sh
# bench/boot-time.sh - how long `appliance run` takes to boot busybox-hello
# to its greeting (and to its power-off), against QEMU alone booting the
# same kernel, initramfs and disk: what our front end, signature and
# member checks, per-cluster disk verification, the overlay and the NBD
# server add to a boot.
#
#   sh bench/boot-time.sh [ENGINE] [ROUNDS]   (default: qemu 5)
#
# ENGINE qemu: both sides are QEMU TCG with the same machine (-M microvm,
# virtio-mmio), ours serving the disk over NBD, the peer reading the same
# disk as a raw file with snapshot=on (throwaway writes, like our
# overlay).  ENGINE builtin: ours is the KVM monitor (needs a /dev/kvm
# that runs guests at hardware speed: the boot-to-init target there is
# under 150 ms); the peer stays QEMU, with -accel kvm.  Rounds alternate
# ours and the peer; medians are printed, in seconds.  Needs root for the
# build (or an existing package as $PKG).
set -eu
ENGINE=${1:-qemu}
ROUNDS=${2:-5}
TOP=$(cd "$(dirname "$0")/.." && pwd)
A=${APPLIANCE:-$TOP/build/appliance}
CACHE=${CACHE:-/var/tmp/appliance-test-cache}
DIR=$(mktemp -d "${TMPDIR:-/var/tmp}/boot-bench.XXXXXX")
trap 'rm -rf "$DIR"' EXIT
cd "$DIR"

if [ -z "${PKG:-}" ]; then
	"$A" build -q --cache "$CACHE" -o bh.appliance \
		"$TOP/recipes/busybox-hello/recipe.toml"
	PKG=$DIR/bh.appliance
fi
tar -xf "$PKG" manifest.toml vmlinuz initrd.img disk.avd
"$A" img convert -O raw disk.avd disk.raw
cmdline=$(sed -n 's/^cmdline = "\(.*\)"$/\1/p' manifest.toml)
if [ "$ENGINE" = builtin ]; then
	accel="-accel kvm -cpu host"
	extra=""
else
	accel="-accel tcg -cpu max"
	extra=" tsc_early_khz=2000000"   # as the QEMU engine passes it
fi

# timed OUT CMD...: run CMD with its output in OUT; print "greeting exit"
# in seconds from the start (greeting polled every 5 ms).
timed() {
	out=$1; shift
	: > "$out"
	s=$(date +%s%N)
	"$@" > "$out" 2>&1 &
	pid=$!
	g=""
	while kill -0 $pid 2>/dev/null; do
		if [ -z "$g" ] && grep -q 'Hello from busybox-hello' "$out"; then
			g=$(date +%s%N)
		fi
		sleep 0.005
	done
	wait $pid || true
	e=$(date +%s%N)
	[ -n "$g" ] || grep -q 'Hello from busybox-hello' "$out" || {
		echo "no greeting from: $*" >&2; cat "$out" >&2; exit 1; }
	[ -n "$g" ] || g=$e
	awk -v s="$s" -v g="$g" -v e="$e" \
		'BEGIN { printf "%.3f %.3f\n", (g - s) / 1e9, (e - s) / 1e9 }'
}

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg), engine $ENGINE"
for r in $(seq "$ROUNDS"); do
	timed ours.txt "$A" run --insecure --engine "$ENGINE" \
		--console stdio "$PKG" >> ours.times
	# shellcheck disable=SC2086
	timed peer.txt qemu-system-x86_64 -M microvm,pit=on,pic=on,rtc=on,acpi=on \
		$accel -m 128 -smp 1 -nodefaults -no-user-config \
		-display none -no-reboot -serial stdio -kernel vmlinuz \
		-initrd initrd.img -append "$cmdline$extra" \
		-drive id=d,if=none,format=raw,file=disk.raw,snapshot=on \
		-device virtio-blk-device,drive=d -device virtio-rng-device \
		>> peer.times
done
med() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
og=$(cut -d' ' -f1 ours.times | med); oe=$(cut -d' ' -f2 ours.times | med)
pg=$(cut -d' ' -f1 peer.times | med); pe=$(cut -d' ' -f2 peer.times | med)
echo "| to | ours (s) | QEMU alone (s) | ours / QEMU |"
echo "|---|---|---|---|"
echo "| greeting | $og | $pg | $(awk "BEGIN { printf \"%.2fx\", $og / $pg }") |"
echo "| power-off, process exit | $oe | $pe | $(awk "BEGIN { printf \"%.2fx\", $oe / $pe }") |"
