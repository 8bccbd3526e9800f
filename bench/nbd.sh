#!/bin/sh
# bench/nbd.sh - one NBD client (fio's nbd engine, queue depth 16) against
# our server on AVD, qemu-nbd on qcow2 with the same cluster size, and
# qemu-nbd on raw (the floor).  Run by hand: sh bench/nbd.sh [SIZE_MiB] [SECONDS]
# Prints a markdown table (IOPS / MiB/s) with ratios for docs/PERFORMANCE.md.
set -eu
BUILD=${BUILD:-build}
A=$(cd "$BUILD" && pwd)/appliance
SIZE=${1:-1024}
SECS=${2:-10}
DIR=$(mktemp -d "${TMPDIR:-/var/tmp}/nbd-bench.XXXXXX")
trap 'kill $SRV 2>/dev/null; rm -rf "$DIR"' EXIT
SRV=
SOCK=$DIR/s.sock

fio_run() { # RW BS -> "IOPS BW_MiB"
	fio --name=b --ioengine=nbd --uri="nbd+unix:///?socket=$SOCK" --rw="$1" \
	    --bs="$2" --iodepth=16 --size="${SIZE}M" --time_based --runtime="$SECS" \
	    --output-format=json 2>/dev/null | python3 -c '
import json, sys
text = sys.stdin.read()
j = json.loads(text[text.index("{"):])["jobs"][0]
side = j["read"] if j["read"]["io_bytes"] else j["write"]
print("%.0f %.1f" % (side["iops"], side["bw"] / 1024))'
}
wait_sock() { for i in $(seq 100); do [ -S "$SOCK" ] && return; sleep 0.05; done; }
fill() { # fully allocate the export so reads hit data
	fio --name=f --ioengine=nbd --uri="nbd+unix:///?socket=$SOCK" --rw=write --bs=1M \
	    --iodepth=16 --size="${SIZE}M" >/dev/null 2>&1
}

results=$DIR/results
for target in avd qcow2 raw; do
	rm -f "$DIR"/img.*
	case $target in
	avd) "$A" img create -o cluster_size=65536 "$DIR/img.avd" "${SIZE}M" >/dev/null
	     "$A" img serve --socket "$SOCK" "$DIR/img.avd" 2>/dev/null & SRV=$! ;;
	qcow2) qemu-img create -q -f qcow2 -o cluster_size=65536 "$DIR/img.qcow2" "${SIZE}M"
	     qemu-nbd -t -e 4 -f qcow2 --cache=writeback -k "$SOCK" "$DIR/img.qcow2" & SRV=$! ;;
	raw) qemu-img create -q -f raw "$DIR/img.raw" "${SIZE}M"
	     qemu-nbd -t -e 4 -f raw --cache=writeback -k "$SOCK" "$DIR/img.raw" & SRV=$! ;;
	esac
	wait_sock
	echo "$target randwrite-4k-alloc $(fio_run randwrite 4k)" >> "$results"
	fill
	for pat in "randread 4k" "randwrite 4k" "read 1M" "write 1M"; do
		set -- $pat
		echo "$target $1-$2 $(fio_run "$1" "$2")" >> "$results"
	done
	kill "$SRV"; wait "$SRV" 2>/dev/null || true
	rm -f "$SOCK"
done

echo "| pattern (QD16) | ours on AVD | qemu-nbd qcow2 | qemu-nbd raw | ours / qcow2 | ours / raw |"
echo "|---|---|---|---|---|---|"
for p in randwrite-4k-alloc randread-4k randwrite-4k read-1M write-1M; do
	o=$(awk -v p=$p '$1=="avd" && $2==p {print $3}' "$results")
	q=$(awk -v p=$p '$1=="qcow2" && $2==p {print $3}' "$results")
	r=$(awk -v p=$p '$1=="raw" && $2==p {print $3}' "$results")
	echo "| $p | $o IOPS | $q IOPS | $r IOPS | $(echo "$o $q" | awk '{printf "%.2fx", $1/$2}') | $(echo "$o $r" | awk '{printf "%.2fx", $1/$2}') |"
done
