#!/bin/sh
# bench/pull.sh - `appliance pull` of a large package from a loopback HTTP
# server vs `curl -o` of the same file, and `appliance verify --full` vs
# `sha256sum` of the same bytes.  Run by hand: sh bench/pull.sh [SIZE_MiB]
set -eu
BUILD=${BUILD:-build}
A=$(cd "$BUILD" && pwd)/appliance
SIZE=${1:-1024}
DIR=$(mktemp -d "${TMPDIR:-/var/tmp}/pull-bench.XXXXXX")
trap 'kill $SRV 2>/dev/null; rm -rf "$DIR"' EXIT
cd "$DIR"
export APPLIANCE_CACHE=$DIR/cache APPLIANCE_TRUST_DIR=$DIR/trust APPLIANCE_SYSTEM_TRUST_DIR=$DIR/trust
"$A" key generate --public k.pub --secret k.key --no-passphrase >/dev/null
"$A" trust add k.pub >/dev/null
# A build directory whose disk holds SIZE MiB of incompressible data.
mkdir b
head -c 1000000 /dev/urandom > b/vmlinuz
"$A" img create b/disk.avd "${SIZE}M" >/dev/null
head -c "$((SIZE * 1048576))" /dev/urandom | "$A" img write b/disk.avd 0 "$((SIZE * 1048576))"
cat > b/manifest.toml <<EOT
manifest_version = 1
[appliance]
name = "big"
version = "1"
architecture = "x86_64"
build_time = 0
[vm]
memory = 134217728
cpus = 1
cmdline = "console=ttyS0"
[[files]]
role = "disk"
name = "disk.avd"
format = "avd"
size = $(stat -c %s b/disk.avd)
sha256 = "$(sha256sum b/disk.avd | cut -c1-64)"
[[files]]
role = "kernel"
name = "vmlinuz"
size = 1000000
sha256 = "$(sha256sum b/vmlinuz | cut -c1-64)"
EOT
"$A" pack b -o big-1.appliance --sign k.key >/dev/null
"$A" publish big-1.appliance --repo repo --key k.key
python3 -m http.server 8931 --bind 127.0.0.1 --directory repo >/dev/null 2>&1 & SRV=$!
sleep 1
# Each timed step starts with nothing dirty in the page cache (a global
# sync first): otherwise the writeback of one step's file lands on the next.
t() { sync; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); awk "BEGIN { print $e - $s }"; }
# eatmydata (if installed) turns fsync and sync_file_range into no-ops:
# a pull under it costs what our code costs beyond making the file
# durable, which plain `curl -o` does not do.
EMD=$(command -v eatmydata || true)
for i in 1 2 3 4 5; do
	rm -rf cache curl.out
	echo "curl $(t curl -s -o curl.out http://127.0.0.1:8931/packages/big-1.appliance)"
	rm -f curl.out
	echo "curl-sync $(t sh -c 'curl -s -o curl.out http://127.0.0.1:8931/packages/big-1.appliance && sync curl.out')"
	rm -f curl.out
	# The disk's floor for a durable copy: no network, no hashing.
	echo "dd-fsync $(t dd if=big-1.appliance of=dd.out bs=1M conv=fsync status=none)"
	rm -f dd.out
	echo "pull $(t "$A" pull http://127.0.0.1:8931/big)"
	echo "sha256sum $(t sha256sum cache/packages/big-1.appliance)"
	echo "openssl $(t openssl dgst -sha256 cache/packages/big-1.appliance)"
	echo "verify-full $(t "$A" verify --full cache/packages/big-1.appliance)"
	if [ -n "$EMD" ]; then
		rm -rf cache
		echo "pull-nosync $(t $EMD "$A" pull http://127.0.0.1:8931/big)"
	fi
done > times
med() { grep "^$1 " times | awk '{print $2}' | sort -n | sed -n 3p; }
echo "| operation | ours (s) | peer (s) | ours / peer |"
echo "|---|---|---|---|"
echo "| pull $(stat -c %s big-1.appliance) bytes over loopback HTTP vs curl -o | $(med pull) | $(med curl) | $(echo "$(med pull) $(med curl)" | awk '{printf "%.2fx", $1/$2}') |"
echo "| pull vs curl -o followed by sync of the file (the same durability) | $(med pull) | $(med curl-sync) | $(echo "$(med pull) $(med curl-sync)" | awk '{printf "%.2fx", $1/$2}') |"
row() { # LABEL OURS PEER
	echo "| $1 | $(med $2) | $(med $3) | $(echo "$(med $2) $(med $3)" | awk '{printf "%.2fx", $1/$2}') |"
}
row "pull vs dd conv=fsync of the package from the page cache (the disk's floor)" pull dd-fsync
[ -z "$EMD" ] || row "pull under eatmydata (no fsync) vs curl -o" pull-nosync curl
row "verify --full vs sha256sum" verify-full sha256sum
row "verify --full vs openssl dgst -sha256 (SHA-NI)" verify-full openssl
