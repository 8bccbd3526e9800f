#!/bin/sh
# bench/convert.sh - `appliance img convert` against `qemu-img convert`.
#
# Run by hand (not part of make check):
#   make && sh bench/convert.sh            # results as a markdown table
#
# Builds a 2 GiB raw disk holding an ext4 filesystem about half full of
# real files (mke2fs -d of BENCH_SRC, default /usr/share), then times, as
# the median of BENCH_RUNS (3) runs each, ours vs qemu-img for:
#   raw -> qcow2
#   raw -> compressed (ours: -O avd -c if avd is available, else
#          -O qcow2 -c -o compression_type=zstd; qemu-img: -c -O qcow2
#          -o compression_type=zstd)
#   qcow2 -> raw (the qcow2 qemu-img wrote)
# and prints output sizes (bytes allocated on disk).  Ours always fsyncs
# the result before renaming it into place; qemu-img's default cache mode
# for convert ("unsafe") never flushes, so qemu-img is timed twice: as
# run by default, and with -t writeback, which flushes like we do (the
# like-for-like ratio).  Both read a warm page cache; the machine is
# shared and noisy, so read the ratios, not the absolute times.  BENCH_DIR keeps the work files (and reuses the
# disk between runs).
set -eu

TOP=$(cd "$(dirname "$0")/.." && pwd)
A=${APPLIANCE:-$TOP/build/appliance}
RUNS=${BENCH_RUNS:-3}
SRC=${BENCH_SRC:-/usr/share}
W=${BENCH_DIR:-$(mktemp -d "${TMPDIR:-/var/tmp}/bench-convert.XXXXXX")}
mkdir -p "$W"
cd "$W"

command -v qemu-img >/dev/null || { echo "qemu-img missing (make deps)" >&2; exit 2; }
[ -x "$A" ] || { echo "$A missing: run make first" >&2; exit 2; }

if [ ! -f disk.raw ]; then
	echo "building a 2 GiB ext4 disk from $SRC ..." >&2
	mke2fs -q -F -t ext4 -E root_owner=0:0 -d "$SRC" disk.raw 2G
fi

now() { date +%s.%N; }

# median of $RUNS timings of "$@" (output removed before each run)
timeit() {
	out=$1; shift
	ts=""
	i=0
	while [ $i -lt "$RUNS" ]; do
		rm -f "$out"
		sync
		t0=$(now)
		"$@" >/dev/null
		t1=$(now)
		ts="$ts $(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')"
		i=$((i + 1))
	done
	echo $ts | tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END {printf "%.2f", a[int((NR+1)/2)]}'
}

alloc() { echo $(( $(stat -c %b "$1") * $(stat -c %B "$1") )); }
mib() { awk -v b="$1" 'BEGIN {printf "%.0f", b / 1048576}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "-"}'; }

if "$A" img create -f avd probe.avd 1M >/dev/null 2>&1; then
	rm -f probe.avd
	OURS_C="-O avd -c"
	OURS_C_EXT=avd
else
	OURS_C="-O qcow2 -c -o compression_type=zstd"
	OURS_C_EXT=qcow2
fi

used=$(alloc disk.raw)
echo "source: 2 GiB raw disk, $(mib "$used") MiB allocated (ext4 of $SRC)" >&2

# One row: label, our output, qemu's output, our command, then qemu-img's
# convert arguments (run with and without -t writeback).
row() {
	label=$1 o=$2 q=$3 ours=$4; shift 4
	t_o=$(timeit "$o" sh -c "$ours")
	t_q=$(timeit "$q" qemu-img convert "$@")
	t_w=$(timeit "$q" qemu-img convert -t writeback "$@")
	echo "| $label | $t_o | $t_w | $(ratio "$t_o" "$t_w") | $t_q | $(ratio "$t_o" "$t_q") | $(mib "$(alloc "$o")") | $(mib "$(alloc "$q")") |"
}

echo "| conversion | ours (s) | qemu-img -t writeback (s) | ours/qemu (both fsync) | qemu-img default (s) | ours/qemu default | ours size (MiB) | qemu-img size (MiB) |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
row "raw -> qcow2" o.qcow2 q.qcow2 "$A img convert -O qcow2 disk.raw o.qcow2" \
	-O qcow2 disk.raw q.qcow2
qemu-img compare -q disk.raw o.qcow2
row "raw -> compressed (ours: $OURS_C)" oc.$OURS_C_EXT qc.qcow2 \
	"$A img convert $OURS_C disk.raw oc.$OURS_C_EXT" \
	-c -O qcow2 -o compression_type=zstd disk.raw qc.qcow2
"$A" img compare disk.raw oc.$OURS_C_EXT >/dev/null
row "qcow2 -> raw" o.raw q.raw "$A img convert -O raw q.qcow2 o.raw" \
	-O raw q.qcow2 q.raw
cmp o.raw disk.raw
echo
echo "median of $RUNS runs, $(nproc) CPUs, $(qemu-img --version | head -n 1)"
[ -n "${BENCH_DIR:-}" ] || rm -rf "$W"
