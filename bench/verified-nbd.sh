#!/bin/sh
# bench/verified-nbd.sh - what lazy verification costs an NBD client
# (as QEMU is, when `appliance run` uses the QEMU engine): fio's nbd
# engine at queue depth 16 against bench/verified-nbd, which serves a
# package's disk verified and plain on two sockets.  Takes the packages
# bench/verified-read.sh made (run that first):
#
#   BUILD=build-NAME sh bench/verified-nbd.sh [WORKDIR] [ROUNDS] [SECONDS]
#
# Each pattern runs against the two sockets in turn, ROUNDS times; the
# table gives medians of MiB/s.
set -eu
TOP=$(cd "$(dirname "$0")/.." && pwd)
B=$TOP/${BUILD:-build}
APP=$B/appliance
SERVE=$B/bench/verified-nbd
W=${1:-/var/tmp/verified-read-bench}
ROUNDS=${2:-3}
SECS=${3:-5}
SRV=
trap 'kill $SRV 2>/dev/null || true' EXIT

bw() { # SOCKET RW BS SIZE_BYTES -> MiB/s
	fio --name=b --ioengine=nbd --uri="nbd+unix:///?socket=$1" \
	    --rw="$2" --bs="$3" --iodepth=16 --size="$4" \
	    --time_based --runtime="$SECS" --output-format=json 2>/dev/null |
	python3 -c '
import json, sys
text = sys.stdin.read()
print("%.0f" % (json.loads(text[text.index("{"):])["jobs"][0]["read"]["bw"] / 1024))'
}

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for pkg in worst-blake3 realistic-blake3 worst-sha256 realistic-sha256; do
	[ -f "$W/$pkg.appliance" ] || continue
	size=$("$APP" inspect --json "$W/$pkg.appliance" | python3 -c '
import json, sys
print(json.load(sys.stdin)["disk_verity"]["virtual_size"])')
	rm -f "$W/v.sock" "$W/p.sock" "$W/results"
	"$SERVE" "$W/$pkg.appliance" "$W/v.sock" "$W/p.sock" & SRV=$!
	for i in $(seq 100); do
		[ -S "$W/v.sock" ] && [ -S "$W/p.sock" ] && break
		sleep 0.05
	done
	for round in $(seq "$ROUNDS"); do
		for pat in "read 4k" "read 64k" "read 1M" "randread 4k"; do
			set -- $pat
			echo "$1-$2 v $(bw "$W/v.sock" "$1" "$2" "$size")" \
			    >>"$W/results"
			echo "$1-$2 p $(bw "$W/p.sock" "$1" "$2" "$size")" \
			    >>"$W/results"
		done
	done
	kill $SRV && wait $SRV || true
	SRV=
	echo "$pkg:"
	echo "| fio over NBD, QD16 | verified (MiB/s) | plain (MiB/s) | verified / plain |"
	echo "|---|---|---|---|"
	for pat in read-4k read-64k read-1M randread-4k; do
		med() { grep "^$pat $1 " "$W/results" | cut -d' ' -f3 |
			sort -n | sed -n "$(( (ROUNDS + 1) / 2 ))p"; }
		v=$(med v) p=$(med p)
		echo "| $pat | $v | $p | $(echo "$v $p" |
		    awk '{printf "%.2fx", $1 / $2}') |"
	done
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
