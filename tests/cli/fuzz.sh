#!/bin/sh
# fuzz.sh - the fuzz targets (fuzz/) over their saved corpus and over
# fresh seeds, without libFuzzer.
#
# fuzz/corpus/TARGET/ keeps every input that once crashed, leaked or hung
# a target (named after what it broke) and the coverage corpus of the
# last long run, merged small; fuzz/seeds.sh makes valid inputs of every
# format (our writers and qemu-img), on which the image target's
# write-then-read oracle also runs.  A replay fails on a crash, an
# abort() of a target's oracle, a hang (120 s for a whole folder, which
# replays in seconds), or (under SANITIZE=1) any sanitizer report.
. "$(dirname "$0")/lib.sh"

for dir in "$TOP"/fuzz/corpus/*/; do
	[ -d "$dir" ] || continue
	target=$(basename "$dir")
	n=$(find "$dir" -type f | wc -l)
	t_run "fuzz corpus $target ($n inputs)" \
		timeout 120 "$BUILD_ABS/fuzz/replay-$target" "$dir"
done

if APPLIANCE=$APPLIANCE sh "$TOP/fuzz/seeds.sh" seeds >seeds.log 2>&1; then
	t_pass "fuzz seeds made"
	for target in image package text nbd virtio devices; do
		t_check "fuzz seeds $target present" \
			[ -n "$(ls seeds/$target)" ]
		t_run "fuzz seeds $target" \
			timeout 120 "$BUILD_ABS/fuzz/replay-$target" "seeds/$target"
	done
else
	t_failed "fuzz seeds made" "$(tail -n 5 seeds.log)"
fi
t_done
