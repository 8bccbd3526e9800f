#!/bin/sh
# bench/build.sh - `appliance build` of recipes/debian-minimal, cold (empty
# cache) and warm (cached base, a changed file), against the floor: the
# same mmdebstrap + mke2fs -d alone; and the size of our compressed AVD
# package disk against the same tree as a zstd-compressed qcow2.
# Run by hand (needs root and the Debian archive): sh bench/build.sh
set -eu
TOP=$(cd "$(dirname "$0")/.." && pwd)
A=${APPLIANCE:-$TOP/build/appliance}
DIR=$(mktemp -d "${TMPDIR:-/var/tmp}/build-bench.XXXXXX")
trap 'rm -rf "$DIR"' EXIT
cd "$DIR"
t() { s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); awk "BEGIN { printf \"%.1f\", $e - $s }"; }
R=$TOP/recipes/debian-minimal/recipe.toml
pk=$(sed -n 's/^packages = \[\(.*\)\]/\1/p' "$R" | tr -d '" ' | head -n 1)

cold=$(t "$A" build -q --cache cache --source-date-epoch 1700000000 -o out1 "$R")
sed 's/^hostname = .*/hostname = "benched"/' "$R" > changed.toml
cp -r "$(dirname "$R")"/* . 2>/dev/null || true
warm=$(t "$A" build -q --cache cache --source-date-epoch 1700000000 -o out2 changed.toml)
floor=$(t sh -c "mmdebstrap --variant=minbase ${pk:+--include=$pk} bookworm root.tar && mkdir -p root && tar -C root -xf root.tar && mke2fs -q -t ext4 -d root floor.raw 1G")
"$A" img convert -O raw out1/disk.avd tree.raw
qemu-img convert -c -O qcow2 -o compression_type=zstd tree.raw tree.qcow2
echo "| step | ours (s) | floor: mmdebstrap + mke2fs -d (s) | ours / floor |"
echo "|---|---|---|---|"
echo "| debian-minimal, cold cache | $cold | $floor | $(awk "BEGIN { printf \"%.2fx\", $cold / $floor }") |"
echo "| debian-minimal, warm cache (a changed file) | $warm | $floor | $(awk "BEGIN { printf \"%.2fx\", $warm / $floor }") |"
echo
echo "| disk | bytes |"
echo "|---|---|"
echo "| our compressed AVD (disk.avd) | $(stat -c %s out1/disk.avd) |"
echo "| same tree as qcow2, zstd (qemu-img convert -c) | $(stat -c %s tree.qcow2) |"
