#!/bin/sh
# bench/convert.sh - `appliance img convert` against `qemu-img convert`.
#
# Run by hand (not part of make check):
#   make && sh bench/convert.sh            # results as a markdown table
#
# Builds a 2 GiB raw disk holding an ext4 filesystem about half full of
# real files (mke2fs -d of BENCH_SRC, default /usr/share), then times, as
# the median of BENCH_RUNS (3) rounds in which ours and qemu-img take
# turns, ours vs qemu-img for:
#   raw -> qcow2
#   raw -> compressed (ours: -O avd -c if avd is available, else
#          -O qcow2 -c -o compression_type=zstd; qemu-img: -c -O qcow2
#          -o compression_type=zstd)
#   qcow2 -> raw (the qcow2 qemu-img wrote)
# and prints output sizes (bytes allocated on disk) and CPU time (user +
# sys, which other load on a shared machine distorts far less than wall
# time).  Ours always fsyncs
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

# Run "$@" once; print "wall_seconds cpu_seconds" (cpu: user+sys of the
# command and its threads, from getrusage, which the machine's other load
# does not inflate the way it inflates wall time).
run1() {
	python3 -c '
import os, resource, sys, time
t = time.monotonic()
pid = os.fork()
if pid == 0:
    fd = os.open(os.devnull, os.O_WRONLY)
    os.dup2(fd, 1)
    os.execvp(sys.argv[1], sys.argv[1:])
_, status = os.waitpid(pid, 0)
w = time.monotonic() - t
u = resource.getrusage(resource.RUSAGE_CHILDREN)
print("%.3f %.3f" % (w, u.ru_utime + u.ru_stime))
sys.exit(1 if status else 0)' "$@"
}

# Median of a file of "wall cpu" lines: prints "wall cpu".
median() {
	w=$(cut -d' ' -f1 "$1" | sort -n | awk '{a[NR]=$1} END {printf "%.2f", a[int((NR+1)/2)]}')
	c=$(cut -d' ' -f2 "$1" | sort -n | awk '{a[NR]=$1} END {printf "%.2f", a[int((NR+1)/2)]}')
	echo "$w $c"
}

# Once: remove the output file $1, sync, run the rest, append "wall cpu"
# to the file $2.
once() {
	out=$1 log=$2; shift 2
	rm -f "$out"
	sync
	run1 "$@" >> "$log"
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
# convert arguments (run with and without -t writeback).  The three
# commands take turns within each of the $RUNS rounds, and each round
# starts with the next one, so ours and the peer see the same load from
# whatever else runs on the machine and none always runs first.
row() {
	label=$1 o=$2 q=$3 ours=$4; shift 4
	: > t-ours.txt; : > t-wb.txt; : > t-def.txt
	i=0
	while [ $i -lt "$RUNS" ]; do
		for k in 0 1 2; do
			case $(( (i + k) % 3 )) in
			0) once "$o" t-ours.txt sh -c "$ours" ;;
			1) once "$q" t-wb.txt qemu-img convert -t writeback "$@" ;;
			2) once "$q" t-def.txt qemu-img convert "$@" ;;
			esac
		done
		i=$((i + 1))
	done
	set -- $(median t-ours.txt) $(median t-wb.txt) $(median t-def.txt)
	echo "| $label | $1 | $3 | $(ratio "$1" "$3") | $2 | $4 | $(ratio "$2" "$4") | $5 | $(mib "$(alloc "$o")") | $(mib "$(alloc "$q")") |"
}

load0=$(cut -d' ' -f1-3 /proc/loadavg)
echo "| conversion | ours wall (s) | qemu-img -t writeback wall (s) | wall ours/qemu | ours CPU (s) | qemu-img CPU (s) | CPU ours/qemu | qemu-img default wall (s) | ours size (MiB) | qemu-img size (MiB) |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
row "raw -> qcow2" o.qcow2 q.qcow2 "$A img convert -O qcow2 disk.raw o.qcow2" \
	-O qcow2 disk.raw q.qcow2
qemu-img compare -q disk.raw o.qcow2
if [ "$OURS_C_EXT" = avd ]; then
	row "raw -> compressed (ours: -O qcow2 -c zstd)" oz.qcow2 qc.qcow2 \
		"$A img convert -O qcow2 -c -o compression_type=zstd disk.raw oz.qcow2" \
		-c -O qcow2 -o compression_type=zstd disk.raw qc.qcow2
	qemu-img compare -q disk.raw oz.qcow2
fi
row "raw -> compressed (ours: $OURS_C)" oc.$OURS_C_EXT qc.qcow2 \
	"$A img convert $OURS_C disk.raw oc.$OURS_C_EXT" \
	-c -O qcow2 -o compression_type=zstd disk.raw qc.qcow2
"$A" img compare disk.raw oc.$OURS_C_EXT >/dev/null
row "qcow2 -> raw" o.raw q.raw "$A img convert -O raw q.qcow2 o.raw" \
	-O raw q.qcow2 q.raw
cmp o.raw disk.raw
echo
echo "median of $RUNS interleaved runs; $(nproc) CPUs; load average at the start: $load0, at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$(qemu-img --version | head -n 1)"
[ -n "${BENCH_DIR:-}" ] || rm -rf "$W"
