#!/bin/sh
# bench/imgfmt.sh - the imgfmt library (AVD) vs plain pread/pwrite on a raw
# file, through one harness, and vs `qemu-img bench` on qcow2 with the same
# cluster size.  Run by hand:  sh bench/imgfmt.sh [SIZE_MiB] [RUNS]
# Prints a markdown table of medians and ratios for docs/PERFORMANCE.md,
# and the load average before and after (the machines are shared).
set -eu
BUILD=${BUILD:-build}
SIZE=${1:-1024}
RUNS=${2:-3}
CLUSTER=65536
B=$BUILD/bench/imgfmt-bench
DIR=$(mktemp -d "${TMPDIR:-/var/tmp}/imgfmt-bench.XXXXXX")
trap 'rm -rf "$DIR"' EXIT
make -s BUILD="$BUILD" bench >/dev/null
load0=$(cut -d' ' -f1-3 /proc/loadavg)

median() { sort -n | awk '{a[NR]=$1} END {if (NR) print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# Each backend prints "backend phase MiB/s IOPS" lines, one per phase.
# qemu-img bench on qcow2, same cluster size, cache=writeback like ours.
QB() { qemu-img bench -f qcow2 -t writeback "$@" "$DIR/q.qcow2" 2>&1 | awk '/Run completed/ {print $(NF-1)}'; }
qcow2() {
	rm -f "$DIR/q.qcow2"
	qemu-img create -q -f qcow2 -o cluster_size=$CLUSTER "$DIR/q.qcow2" "${SIZE}M"
	n=$((SIZE * 1048576 / CLUSTER))
	t=$(QB -w -c "$n" -s 4096 -S $CLUSTER -d 1)
	echo "qcow2 alloc-write-4k $(echo "$n $t" | awk '{printf "%.1f", $1*4096/$2/1048576}') $(echo "$n $t" | awk '{printf "%.0f", $1/$2}')"
	rm -f "$DIR/q.qcow2"
	qemu-img create -q -f qcow2 -o cluster_size=$CLUSTER "$DIR/q.qcow2" "${SIZE}M"
	n=$SIZE
	t=$(QB -w -c "$n" -s 1048576 -d 1)
	echo "qcow2 seq-write-fresh $(echo "$n $t" | awk '{printf "%.1f", $1/$2}') $(echo "$n $t" | awk '{printf "%.0f", $1/$2}')"
	n=$((SIZE * 16)) # passes over the disk (qemu-img bench wraps around)
	t=$(QB -c "$n" -s 1048576 -d 1)
	echo "qcow2 seq-read $(echo "$n $t" | awk '{printf "%.1f", $1/$2}') $(echo "$n $t" | awk '{printf "%.0f", $1/$2}')"
	rm -f "$DIR/q.qcow2"
}
posix() { $B --backend posix --size "$SIZE" --seconds 3 "$DIR" | awk 'NR>1 {print "posix", $1, $2, $4}'; }
avd() { $B --backend imgfmt --format avd --cluster $CLUSTER --size "$SIZE" --seconds 3 "$DIR" | awk 'NR>1 {print "avd", $1, $2, $4}'; }

# One run measures all three back to back, and who goes first rotates,
# so that each sees the page cache and the machine's load alike.
for run in $(seq "$RUNS"); do
	case $((run % 3)) in
	1) posix; avd; qcow2 ;;
	2) avd; qcow2; posix ;;
	0) qcow2; posix; avd ;;
	esac
done > "$DIR/results"

echo "| phase | posix raw MiB/s | AVD MiB/s | AVD / raw | qcow2 (qemu-img bench) MiB/s | AVD / qcow2 |"
echo "|---|---|---|---|---|---|"
for phase in seq-write-fresh seq-read rand-read-4k rand-write-4k alloc-write-4k; do
	p=$(awk -v ph=$phase '$1=="posix" && $2==ph {print $3}' "$DIR/results" | median)
	a=$(awk -v ph=$phase '$1=="avd" && $2==ph {print $3}' "$DIR/results" | median)
	q=$(awk -v ph=$phase '$1=="qcow2" && $2==ph {print $3}' "$DIR/results" | median)
	r1=$(echo "$a $p" | awk '{ if ($2 > 0) printf "%.2fx", $1/$2; else print "-" }')
	if [ -n "$q" ]; then r2=$(echo "$a $q" | awk '{ if ($2 > 0) printf "%.2fx", $1/$2; else print "-" }'); else q="-"; r2="-"; fi
	echo "| $phase | $p | $a | $r1 | $q | $r2 |"
done
echo
echo "load average before: $load0; after: $(cut -d' ' -f1-3 /proc/loadavg)"
