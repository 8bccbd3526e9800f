#!/bin/sh
# bench/run-rss.sh - resident memory of the `appliance run` process
# itself, against Firecracker's published < 5 MiB per-VM overhead.
#
#   sh bench/run-rss.sh [ENGINE] [APPLIANCE...]
#
# ENGINE: builtin (needs a usable /dev/kvm; VmRSS minus the guest RAM it
# touched is the monitor's overhead, see `run --stats`) or qemu (default:
# the appliance process beside QEMU, which holds the front end, the NBD
# server and nothing of the guest).  Each binary boots the tiny PVH test
# guest in its idle mode, is sampled from /proc/PID/status once the guest
# waits, then stopped with SIGTERM; binaries are interleaved, 5 rounds,
# medians reported in KiB.
ENGINE=${1:-qemu}
[ $# -gt 0 ] && shift
BUILD=${BUILD:-build}
[ $# -gt 0 ] || set -- "$BUILD/appliance"
GUEST=$BUILD/tests/guest-pvh.elf
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg), engine $ENGINE"
for round in 1 2 3 4 5; do
	i=0
	for A in "$@"; do
		i=$((i + 1))
		"$A" run --engine "$ENGINE" --memory 64M --console "$T/con" \
			--kernel "$GUEST" --append idle 2>/dev/null &
		pid=$!
		n=0
		while ! grep -q 'idle until stopped' "$T/con" 2>/dev/null && [ $n -lt 600 ]; do
			sleep 0.1; n=$((n + 1))
		done
		awk -v i=$i '/^(VmRSS|RssAnon|RssFile):/ { printf "%s %s %s\n", i, $1, $2 }' \
			/proc/$pid/status >>"$T/samples"
		kill -TERM $pid; wait $pid; rm -f "$T/con"
	done
done
i=0
for A in "$@"; do
	i=$((i + 1))
	for f in VmRSS: RssAnon: RssFile:; do
		med=$(awk -v i=$i -v f=$f '$1 == i && $2 == f { print $3 }' "$T/samples" |
			sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
		printf '%s %s %s KiB  ' "$A" "$f" "$med"
	done
	echo
done
