#!/bin/sh
# bench/nbd.sh - one NBD client (fio's nbd engine, queue depth 16) against
# our server on AVD, qemu-nbd on qcow2 with the same cluster size, and
# qemu-nbd on raw (the floor).  Run by hand: sh bench/nbd.sh [SIZE_MiB] [SECONDS]
# Prints a markdown table (IOPS / MiB/s) with ratios for docs/PERFORMANCE.md.
#
# sh bench/nbd.sh compressed [ROUNDS] [SECONDS]: reads of a compressed
# image of a real filesystem (mke2fs -d ${SRC_DIR:-/usr/share} into a
# ${CSIZE:-1536} MiB raw, or RAW=FILE): ours on `img convert -c -O avd`, qemu-nbd on
# `qemu-img convert -c -O qcow2 -o compression_type=zstd` of the same raw,
# 64 KiB clusters both; with BASE=/path/to/other/appliance also that
# binary (before/after).  Servers take turns pattern by pattern, ROUNDS
# times, and the table gives medians.
set -eu
BUILD=${BUILD:-build}
A=$(cd "$BUILD" && pwd)/appliance
if [ "${1:-}" = compressed ]; then
	ROUNDS=${2:-3}
	SECS=${3:-5}
	CSIZE=${CSIZE:-1536}
	DIR=$(mktemp -d "${TMPDIR:-/var/tmp}/nbd-bench.XXXXXX")
	SRV=
	trap 'kill $SRV 2>/dev/null || true; rm -rf "$DIR"' EXIT
	SOCK=$DIR/s.sock
	SIZE=$CSIZE
	FS=${RAW:-$DIR/fs.raw} # RAW=FILE: reuse a filesystem image
	if [ -z "${RAW:-}" ]; then
		truncate -s "${CSIZE}M" "$FS"
		mke2fs -q -t ext4 -d "${SRC_DIR:-/usr/share}" "$FS"
	fi
	SIZE=$(($(stat -c %s "$FS") / 1048576))
	"$A" img convert -c -f raw -O avd -o cluster_size=65536 "$FS" \
	    "$DIR/img.avd"
	qemu-img convert -c -f raw -O qcow2 \
	    -o compression_type=zstd,cluster_size=65536 "$FS" \
	    "$DIR/img.qcow2"
	rm -f "$DIR/fs.raw"
	servers="ours qemu"
	[ -n "${BASE:-}" ] && servers="base $servers"
	start() {
		rm -f "$SOCK"
		case $1 in
		ours) "$A" img serve --read-only --socket "$SOCK" "$DIR/img.avd" \
		      2>/dev/null & SRV=$! ;;
		base) "$BASE" img serve --read-only --socket "$SOCK" \
		      "$DIR/img.avd" 2>/dev/null & SRV=$! ;;
		qemu) qemu-nbd -t -r -e 4 -f qcow2 --cache=writeback -k "$SOCK" \
		      "$DIR/img.qcow2" & SRV=$! ;;
		esac
		for i in $(seq 100); do [ -S "$SOCK" ] && return; sleep 0.05; done
	}
	crun() { # RW BS -> "IOPS BW_MiB"
		fio --name=b --ioengine=nbd --uri="nbd+unix:///?socket=$SOCK" \
		    --rw="$1" --bs="$2" --iodepth=16 --size="${SIZE}M" \
		    --time_based --runtime="$SECS" --output-format=json \
		    2>/dev/null | python3 -c '
import json, sys
text = sys.stdin.read()
j = json.loads(text[text.index("{"):])["jobs"][0]
print("%.0f %.1f" % (j["read"]["iops"], j["read"]["bw"] / 1024))'
	}
	conv() { # SERVER -> seconds to convert its image to raw
		t0=$(date +%s.%N)
		case $1 in
		ours) "$A" img convert -O raw "$DIR/img.avd" "$DIR/out.raw" ;;
		base) "$BASE" img convert -O raw "$DIR/img.avd" "$DIR/out.raw" ;;
		qemu) qemu-img convert -O raw "$DIR/img.qcow2" "$DIR/out.raw" ;;
		esac
		echo "$(date +%s.%N) $t0" | awk '{printf "%.3f", $1 - $2}'
		rm -f "$DIR/out.raw"
	}
	load0=$(cut -d" " -f1-3 /proc/loadavg)
	for round in $(seq "$ROUNDS"); do
		for s in $servers; do
			t=$(conv "$s")
			echo "$s convert-to-raw $(echo "$SIZE $t" |
			    awk '{printf "%.1f %.1f", $1 / $2, $1 / $2}') $round" \
			    >> "$DIR/results"
		done
		for pat in "randread 4k" "read 4k" "read 1M"; do
			set -- $pat
			for s in $servers; do
				start "$s"
				echo "$s $1-$2 $(crun "$1" "$2") $round" \
				    >> "$DIR/results"
				kill "$SRV"; wait "$SRV" 2>/dev/null || true
			done
		done
	done
	med() { # SERVER PATTERN FIELD -> median
		awk -v s="$1" -v p="$2" -v f="$3" '$1==s && $2==p {print $f}' \
		    "$DIR/results" | sort -n | awk '{v[NR]=$1}
		    END {print NR % 2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'
	}
	echo "compressed: $(du -m "$DIR/img.avd" | cut -f1) MiB AVD," \
	     "$(du -m "$DIR/img.qcow2" | cut -f1) MiB qcow2; load $load0 ->" \
	     "$(cut -d" " -f1-3 /proc/loadavg); medians of $ROUNDS x ${SECS}s"
	ratio() { # A B PATTERN -> median over rounds of A's IOPS / B's
		awk -v a="$1" -v b="$2" -v p="$3" '$2==p && $1==a {x[$5]=$3}
		    $2==p && $1==b {y[$5]=$3}
		    END {for (r in x) if (y[r]) print x[r] / y[r]}' \
		    "$DIR/results" | sort -n | awk '{v[NR]=$1} END {
		    printf "%.2fx", NR % 2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'
	}
	hdr="| pattern (QD16) |"; sep="|---|"
	for s in $servers; do hdr="$hdr $s |"; sep="$sep---|"; done
	[ -n "${BASE:-}" ] && { hdr="$hdr ours / base |"; sep="$sep---|"; }
	echo "$hdr ours / qemu |"; echo "$sep---|"
	for p in randread-4k read-4k read-1M convert-to-raw; do
		line="| $p |"
		for s in $servers; do
			if [ $p = convert-to-raw ]; then
				line="$line $(med $s $p 4) MiB/s |"
			else
				line="$line $(med $s $p 3) IOPS, $(med $s $p 4) MiB/s |"
			fi
		done
		[ -n "${BASE:-}" ] && line="$line $(ratio ours base $p) |"
		echo "$line $(ratio ours qemu $p) |"
	done
	echo "(ratios: medians of the per-round ratios; convert-to-raw:" \
	     "img convert / qemu-img convert -O raw of the whole image," \
	     "virtual MiB/s, each tool's default threads)"
	exit 0
fi
SIZE=${1:-1024}
SECS=${2:-10}
DIR=$(mktemp -d "${TMPDIR:-/var/tmp}/nbd-bench.XXXXXX")
trap 'kill $SRV 2>/dev/null || true; rm -rf "$DIR"' EXIT
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
