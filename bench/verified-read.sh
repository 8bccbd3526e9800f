#!/bin/sh
# bench/verified-read.sh - make the two packages bench/verified-read.c
# reads, then run it at 4 KiB, 64 KiB and 1 MiB requests on each:
#
#   worst      a 256 MiB disk of random bytes, uncompressed AVD: nothing
#              to skip, nothing to decompress, every byte is hashed
#   realistic  a 512 MiB ext4 filesystem (mke2fs -d) holding a Debian
#              minbase root (the builder's cached mmdebstrap tar) or, if
#              there is none, /usr/share/doc; compressed AVD (-c) as
#              `appliance build` makes package disks
#
# Each is packed twice, with BLAKE3 leaves (the default) and with SHA-256
# leaves (--leaf-hash sha256), to show what the leaf hash costs.
#
#   BUILD=build-NAME sh bench/verified-read.sh [WORKDIR]
#
# Needs `make bench BUILD=...` first.  Prints the load average before and
# after: other benchmarks on the machine skew both columns alike (the
# bench interleaves verified and unverified passes) but not equally.
set -eu
TOP=$(cd "$(dirname "$0")/.." && pwd)
B=$TOP/${BUILD:-build}
APP=$B/appliance
BENCH=$B/bench/verified-read
W=${1:-/var/tmp/verified-read-bench}
mkdir -p "$W"

# A build directory as `appliance build` leaves it around DISK (an AVD).
make_pkg() {
	name=$1 disk=$2 out=$3
	d=$W/$name.dir
	rm -rf "$d" && mkdir -p "$d"
	head -c 5000 /dev/urandom >"$d/vmlinuz"
	head -c 3000 /dev/urandom >"$d/initrd.img"
	mv "$disk" "$d/disk.avd"
	files=""
	for f in disk.avd vmlinuz initrd.img; do
		case $f in
		disk.avd) role=disk fmt='format = "avd"
' ;;
		vmlinuz) role=kernel fmt= ;;
		*) role=initrd fmt= ;;
		esac
		files="$files
[[files]]
role = \"$role\"
name = \"$f\"
${fmt}size = $(stat -c %s "$d/$f")
sha256 = \"$(sha256sum "$d/$f" | cut -d' ' -f1)\"
"
	done
	cat >"$d/manifest.toml" <<EOF
manifest_version = 1

[appliance]
name = "$name"
version = "1.0"
description = "verified-read benchmark"
architecture = "x86_64"
build_time = 1700000000

[vm]
memory = 268435456
cpus = 1
cmdline = "console=ttyS0 root=/dev/vda"
console = "serial"
$files
EOF
	for alg in blake3 sha256; do
		rm -f "$out-$alg.appliance"
		"$APP" pack "$d" --leaf-hash $alg -o "$out-$alg.appliance" \
			>/dev/null
	done
	rm -rf "$d"
}

# Packages made before disk-subtrees existed are made again.
if ! "$APP" inspect "$W/worst-blake3.appliance" 2>/dev/null |
   grep -q 'small reads in'; then
	rm -f "$W"/*.appliance
fi
if [ ! -f "$W/worst-sha256.appliance" ]; then
	head -c $((256 << 20)) /dev/urandom >"$W/worst.raw"
	"$APP" img convert -f raw -O avd "$W/worst.raw" "$W/worst.avd"
	rm -f "$W/worst.raw"
	make_pkg worst "$W/worst.avd" "$W/worst"
fi
if [ ! -f "$W/realistic-sha256.appliance" ]; then
	root=$W/root
	rm -rf "$root" && mkdir -p "$root"
	tar=$(ls /var/tmp/appliance-test-cache/debian/*.tar 2>/dev/null |
	      head -n 1 || true)
	if [ -n "$tar" ]; then
		tar -C "$root" -xf "$tar" --exclude='./dev/*' 2>/dev/null || true
	else
		cp -a /usr/share/doc "$root/"
	fi
	rm -f "$W/realistic.ext4"
	mke2fs -q -t ext4 -E root_owner=0:0 -d "$root" "$W/realistic.ext4" 512M
	rm -rf "$root"
	"$APP" img convert -f raw -O avd -c "$W/realistic.ext4" \
		"$W/realistic.avd"
	rm -f "$W/realistic.ext4"
	make_pkg realistic "$W/realistic.avd" "$W/realistic"
fi

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for pkg in worst-blake3 worst-sha256 realistic-blake3 realistic-sha256; do
	echo "$pkg:"
	echo "| request size | verified, first read | verified, again | unverified | first / unverified | again / unverified | checks skipped |"
	echo "|---|---|---|---|---|---|---|"
	for bs in 4096 65536 1048576; do
		"$BENCH" "$W/$pkg.appliance" "$bs"
	done
	for bs in 65536 1048576; do
		"$BENCH" "$W/$pkg.appliance" "$bs" cold
	done
	"$BENCH" "$W/$pkg.appliance" 4096 random
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
