#!/bin/sh
# tests/cli/build-busybox.sh - `appliance build` end to end with the
# busybox-hello recipe: build, boot under QEMU (TCG), rebuild to the same
# bytes, and fail cleanly.
. "$(dirname "$0")/lib.sh"
. "$TOP/tests/cli/lib-build.sh"

t_run "build busybox-hello" build --output-format raw -o a1 "$RECIPE"
t_check "appliance has disk, kernel, initrd, manifest, log" \
	test -s a1/vmlinuz -a -s a1/initrd.img -a -s a1/manifest.toml \
	-a -s a1/build.log -a -s a1/disk.raw
disk=$(ls a1 | grep -E '^disk\.(avd|raw)$' | head -n 1)
t_check "manifest names the appliance" grep -q '^name = "busybox-hello"' a1/manifest.toml
t_check "manifest has the build time" grep -q "^build_time = $SDE" a1/manifest.toml
sum=$(sha256sum "a1/$disk" | cut -d' ' -f1)
t_check "manifest SHA-256 matches $disk" grep -q "sha256 = \"$sum\"" a1/manifest.toml
t_check "no temporary directories left" sh -c '! ls -d a1.tmp-* a1.old-* 2>/dev/null | grep -q .'
t_run "filesystem checks clean" e2fsck -fn a1/disk.raw
if [ -f a1/disk.avd ]; then
	t_run "disk.avd holds the same disk as the raw export" \
		"$APPLIANCE" img compare a1/disk.avd a1/disk.raw
fi

out=$(boot microvm a1 /dev/vda); rc=$?
echo "$out" | tail -n 5 | sed 's/^/  console: /'
t_check "boots on microvm and greets" sh -c 'echo "$1" | grep -q "Hello from busybox-hello!"' - "$out"
t_check "powers off by itself (qemu exit $rc)" test "$rc" = 0

# Reproducible: same recipe, same epoch, same bytes.
t_run "rebuild" build --output-format raw -o a2 "$RECIPE"
for f in "$disk" disk.raw initrd.img vmlinuz manifest.toml; do
	t_check "rebuild gives identical $f" cmp -s "a1/$f" "a2/$f"
done
SDE=1700000001 t_run "build with another epoch" \
	"$APPLIANCE" build -q --cache "$CACHE" --source-date-epoch 1700000001 \
	-o a3 "$RECIPE"
t_check "another epoch changes the disk" sh -c "! cmp -s a1/$disk a3/$disk"

# A failing build command: the error names the step, the command, its
# status and its output; nothing appears at the output path, and a
# previous build there survives.
mkdir -p bad
cp "$RECIPE/recipe.toml" bad/recipe.toml
cat >> bad/recipe.toml <<'TOML'

[commands]
build = ["echo marker-before-failure; exit 3"]
TOML
build -o badout bad/recipe.toml > bad.out 2>&1; rc=$?
t_check "failing command exits 1 (got $rc)" test "$rc" = 1
t_check "error names the step" grep -q "step 'commands' failed" bad.out
t_check "error names the command and status" grep -q "marker-before-failure; exit 3.*status 3" bad.out
t_check "error shows the output tail" grep -q "^marker-before-failure" bad.out
t_check "nothing at the output path" test ! -e badout
t_check "no temporary output left" sh -c '! ls -d badout.tmp-* 2>/dev/null | grep -q .'
t_check "build log kept beside it" grep -q "marker-before-failure" badout.failed.log
cp -r a1 keep
build -o keep bad/recipe.toml > /dev/null 2>&1
t_check "failed rebuild keeps the previous appliance" cmp -s a1/manifest.toml keep/manifest.toml
t_check "and leaves its log beside it" test -s keep.failed.log
t_run "a successful rebuild replaces it" build -o keep "$RECIPE"
t_check "and removes the stale failure log" test ! -e keep.failed.log

# Build commands see a running system's /proc, /sys and /dev, and leave
# neither mounts on the host nor anything in the image's mount points.
mkdir -p sys
cp "$RECIPE/recipe.toml" sys/recipe.toml
cat >> sys/recipe.toml <<'TOML'

[commands]
build = [
  "readlink /proc/self/exe > /etc/proc-exe",
  "test -c /dev/null && echo gone > /dev/null && head -c 8 /dev/urandom | wc -c > /etc/urandom-bytes",
  "test -d /sys/kernel && echo sysfs > /etc/sys-seen",
]
TOML
t_run "build with commands that use /proc, /dev and /sys" build --output-format raw -o sysout sys/recipe.toml
t_check "/proc was mounted for the command" sh -c '[ "$(debugfs -R "cat /etc/proc-exe" sysout/disk.raw 2>/dev/null)" = /bin/busybox ]'
t_check "/dev/urandom was readable" sh -c '[ "$(debugfs -R "cat /etc/urandom-bytes" sysout/disk.raw 2>/dev/null | tr -d " ")" = 8 ]'
t_check "/sys was mounted" sh -c 'debugfs -R "cat /etc/sys-seen" sysout/disk.raw 2>/dev/null | grep -q sysfs'
entries() { debugfs -R "ls -p $1" sysout/disk.raw 2>/dev/null | awk -F/ 'NF > 5 && $6 != "." && $6 != ".."' | wc -l; }
t_check "the image's /proc and /sys stay empty" sh -c '[ "$1" = 0 ] && [ "$2" = 0 ]' - "$(entries /proc)" "$(entries /sys)"
t_check "no mount left on the host" sh -c '! grep -q "$1" /proc/mounts' - "$CACHE"

# Recipe and usage errors.
printf '[appliance]\nname = "x"\nversion = "1"\nnmae = 2\n' > typo.toml
t_fail "recipe error exits 1" 1 build -o t typo.toml
t_fail "missing recipe exits 1" 1 build -o t nonexistent.toml
t_fail "no recipe is a usage error" 2 "$APPLIANCE" build
t_fail "bad output format is a usage error" 2 "$APPLIANCE" build --output-format zip "$RECIPE"
t_done
