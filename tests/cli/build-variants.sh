#!/bin/sh
# tests/cli/build-variants.sh - `appliance build` beyond the basic
# busybox-hello build (build-busybox.sh): qcow2/vmdk exports, a GPT disk
# booted on -M pc with a first-boot command, a tarball base with users and
# SSH keys, a hostile tarball, and an interrupted build.
. "$(dirname "$0")/lib.sh"
. "$TOP/tests/cli/lib-build.sh"

t_run "build busybox-hello (raw export)" build --output-format raw -o a2 "$RECIPE"
# Exports in other formats hold the same disk, checked by qemu-img.
for fmt in qcow2 vmdk; do
	t_run "build with --output-format $fmt" build --output-format $fmt -o x-$fmt "$RECIPE"
	t_run "disk.$fmt equals the raw export (qemu-img compare)" \
		qemu-img compare -q "x-$fmt/disk.$fmt" a2/disk.raw
	t_check "manifest lists disk.$fmt" grep -q "name = \"disk.$fmt\"" x-$fmt/manifest.toml
done

# GPT layout: the filesystem in partition 1, booted as /dev/vda1.
mkdir -p gpt
sed -e 's/^size = "64M"/size = "64M"\ngpt = true/' "$RECIPE/recipe.toml" > gpt/recipe.toml
printf '\n[commands]\nfirst_boot = ["echo first-boot-marker"]\n' >> gpt/recipe.toml
t_run "build with a GPT" build --output-format raw -o g1 gpt/recipe.toml
t_check "sfdisk sees one Linux partition at 1 MiB" sh -c \
	'sfdisk -d g1/disk.raw | grep -q "start=        2048.*type=0FC63DAF-8483-4772-8E79-3D69D8477DE4"'
t_check "manifest boots from /dev/vda1" grep -q 'root=/dev/vda1' g1/manifest.toml
out=$(boot pc g1 /dev/vda1); rc=$?
t_check "GPT disk boots on pc and greets" sh -c 'echo "$1" | grep -q "Hello from busybox-hello!"' - "$out"
t_check "first-boot command ran" sh -c 'echo "$1" | grep -q "first-boot-marker"' - "$out"

# A tarball base (here: the busybox root we just built, dumped back out),
# plus users, groups and SSH keys.
mkdir -p tb/root
debugfs -R "rdump / tb/root" a2/disk.raw >/dev/null 2>&1
rm -rf tb/root/lost+found
tar -C tb/root -czf tb/root.tar.gz .
cat > tb/recipe.toml <<'TOML'
[appliance]
name = "from-tarball"
version = "2"

[base]
type = "tarball"
source = "root.tar.gz"

[[groups]]
name = "ops"
gid = 2000

[[users]]
name = "alice"
uid = 1001
groups = ["ops"]
password = "$6$salt$hash"
ssh_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE0000000000000000000000000000000000000000000 alice@test"]

[[files]]
path = "/srv/data/note.txt"
content = "owned by alice"
owner = "alice"
group = "ops"
mode = "0640"

[system]
hostname = "tarbox"
TOML
t_run "build from a tarball base" build --output-format raw -o tbout tb/recipe.toml
dbg() { debugfs -R "$1" tbout/disk.raw 2>/dev/null; }
t_check "tarball content is in the disk" sh -c '[ -n "$(debugfs -R "stat /bin/busybox" tbout/disk.raw 2>/dev/null | grep "Type: regular")" ]'
t_check "hostname from the recipe" sh -c '[ "$(debugfs -R "cat /etc/hostname" tbout/disk.raw 2>/dev/null)" = tarbox ]'
t_check "user in passwd" sh -c 'debugfs -R "cat /etc/passwd" tbout/disk.raw 2>/dev/null | grep -qx "alice:x:1001:1001::/home/alice:/bin/sh"'
t_check "password hash in shadow" sh -c 'debugfs -R "cat /etc/shadow" tbout/disk.raw 2>/dev/null | grep -q "^alice:\$6\$salt\$hash:"'
t_check "user in group ops" sh -c 'debugfs -R "cat /etc/group" tbout/disk.raw 2>/dev/null | grep -qx "ops:x:2000:alice"'
keys=$(dbg "stat /home/alice/.ssh/authorized_keys")
t_check "authorized_keys is mode 0600" sh -c 'echo "$1" | grep -q "Mode:  0600"' - "$keys"
t_check "authorized_keys is owned by alice" sh -c 'echo "$1" | grep -q "User:  1001 "' - "$keys"
t_check "file owner, group and mode" sh -c 'debugfs -R "stat /srv/data/note.txt" tbout/disk.raw 2>/dev/null | grep -q "User:  1001   Group:  2000   Project: *0   Size: 14"'

# The same tarball from a URL: downloaded once into the cache.
HPORT=$((30000 + $$ % 10000))
python3 -m http.server "$HPORT" --bind 127.0.0.1 --directory tb >/dev/null 2>&1 &
hpid=$!
n=0
while [ $n -lt 50 ] && ! curl -fsS -o /dev/null "http://127.0.0.1:$HPORT/root.tar.gz" 2>/dev/null; do
	sleep 0.1; n=$((n + 1))
done
mkdir -p url ucache
ln -s "$CACHE/kernel" ucache/kernel
SUM=$(sha256sum tb/root.tar.gz | cut -c1-64)
BAD=$(echo "$SUM" | tr 0-9a-f 1-9a-f0)
sed "s|^source = \"root.tar.gz\"|source = \"http://127.0.0.1:$HPORT/root.tar.gz\"|" \
	tb/recipe.toml > url/nosum.toml
# A URL is pinned by the tarball's SHA-256: without it, whoever serves
# the URL would pick the root filesystem that the build signs.
build --cache ucache -o nosum url/nosum.toml > nosum.out 2>&1; rc=$?
t_check "a tarball URL without sha256 is a recipe error (exit $rc)" test "$rc" = 1
t_check "  ... naming base.source at its line" grep -q "nosum.toml:[0-9]*:[0-9]*: base.source: a URL needs sha256" nosum.out
sed "s|^source = .*|&\nsha256 = \"$BAD\"|" url/nosum.toml > url/bad.toml
build --cache ucache -o badout url/bad.toml > bad.out 2>&1; rc=$?
t_check "a tarball whose SHA-256 differs fails the build (exit $rc)" test "$rc" = 1
t_check "  ... naming both digests" sh -c "grep -q 'has SHA-256 $SUM, the recipe says $BAD' bad.out"
t_check "  ... and caches nothing" sh -c '[ "$(ls ucache/tarballs 2>/dev/null | wc -l)" = 0 ]'
sed "s|^source = .*|&\nsha256 = \"$SUM\"|" url/nosum.toml > url/recipe.toml
t_run "build from a tarball URL" build --cache ucache --output-format raw -o urlout url/recipe.toml
kill "$hpid" 2>/dev/null; wait "$hpid" 2>/dev/null
t_check "the URL build has the same disk as the local one" cmp -s urlout/disk.raw tbout/disk.raw
t_check "the download is cached" sh -c '[ "$(ls ucache/tarballs | wc -l)" = 1 ]'
t_run "rebuild from the cached download (server gone)" build --cache ucache -o urlout2 url/recipe.toml
# A local tarball may be pinned too.
sed "s|^source = .*|&\nsha256 = \"$BAD\"|" tb/recipe.toml > tb/bad.toml
build -o tbbad tb/bad.toml > tbbad.out 2>&1; rc=$?
t_check "a local tarball whose SHA-256 differs fails the build (exit $rc)" test "$rc" = 1
t_check "  ... naming it" grep -q "root.tar.gz has SHA-256 $SUM" tbbad.out

# A hostile tarball: refused, entry named, nothing written outside.
mkdir -p evil/in
python3 - evil/evil.tar <<'PY'
import io, sys, tarfile
with tarfile.open(sys.argv[1], "w") as t:
    i = tarfile.TarInfo("../escaped"); data = b"pwned"; i.size = len(data)
    t.addfile(i, io.BytesIO(data))
PY
printf '[appliance]\nname = "evil"\nversion = "1"\n[base]\ntype = "tarball"\nsource = "evil.tar"\n' > evil/recipe.toml
build -o evil/out evil/recipe.toml > evil.out 2>&1; rc=$?
t_check "hostile tarball fails the build (exit $rc)" test "$rc" = 1
t_check "error names the entry" grep -q "entry '../escaped' has a '..' component" evil.out
t_check "nothing escaped" sh -c '! find "$1" -name escaped | grep -q .' - "$CACHE"

# Interrupted (SIGTERM) in the middle of a build command: the command is
# stopped, the build fails as "interrupted" and cleans up after itself.
mkdir -p slow
cp "$RECIPE/recipe.toml" slow/recipe.toml
# A sleep no other process on the machine runs, to find it with pgrep.
SLEEPN=$((100000 + $$))
printf '\n[commands]\nbuild = ["sleep %s"]\n' "$SLEEPN" >> slow/recipe.toml
# A private cache (sharing the downloaded kernel) so that other builds
# running at the same time do not show up in its work/ directory.
mkdir -p pcache
ln -s "$CACHE/kernel" pcache/kernel
# (not through build(): $! must be the appliance process itself)
"$APPLIANCE" build -q --cache pcache -o slowout slow/recipe.toml > slow.out 2>&1 &
bpid=$!
n=0
while [ $n -lt 100 ] && ! pgrep -fx "sleep $SLEEPN" >/dev/null; do sleep 0.2; n=$((n + 1)); done
kill -TERM $bpid
wait $bpid; rc=$?
t_check "interrupted build exits 1 (got $rc)" test "$rc" = 1
t_check "says it was interrupted" grep -q "interrupted" slow.out
n=0
while [ $n -lt 25 ] && pgrep -fx "sleep $SLEEPN" >/dev/null; do sleep 0.2; n=$((n + 1)); done
t_check "the build command was stopped" sh -c '! pgrep -fx "sleep $1" >/dev/null' - "$SLEEPN"
t_check "nothing at the output path" test ! -e slowout
t_check "no temporary output left" sh -c '! ls -d slowout.tmp-* 2>/dev/null | grep -q .'
t_check "scratch directory removed" sh -c '[ -z "$(ls pcache/work)" ]'

# Killed outright (SIGKILL, the OOM killer): no cleanup is possible, so
# the next build that uses the cache removes what it left.
"$APPLIANCE" build -q --cache pcache -o killout slow/recipe.toml > kill.out 2>&1 &
bpid=$!
n=0
while [ $n -lt 100 ] && ! pgrep -fx "sleep $SLEEPN" >/dev/null; do sleep 0.2; n=$((n + 1)); done
live=$(ls pcache/work)
(cd evil && "$APPLIANCE" build -q --cache ../pcache -o out2 recipe.toml) > evil2.out 2>&1
t_check "a build running meanwhile leaves a live build's work alone" sh -c '[ -n "$1" ] && [ -d "pcache/work/$1" ] && kill -0 $2' - "$live" "$bpid"
kill -KILL $bpid
wait $bpid 2>/dev/null
pkill -fx "sleep $SLEEPN"   # the build command it left running
t_check "a killed build leaves its work directory" sh -c '[ -n "$(ls pcache/work)" ]'
t_check "  ... and its temporary output" sh -c 'ls -d killout.tmp-* 2>/dev/null | grep -q .'
# Any build will do, even one that fails (the hostile tarball above).
(cd evil && "$APPLIANCE" build -q --cache ../pcache -o out2 recipe.toml) > evil3.out 2>&1
t_check "the next build removes the work directory" sh -c '[ -z "$(ls pcache/work)" ]'
t_check "  ... and the temporary output" sh -c '! ls -d killout.tmp-* 2>/dev/null | grep -q .'

t_done
