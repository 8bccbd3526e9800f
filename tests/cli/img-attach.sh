# img-attach.sh - `appliance img attach`: an image's raw view as a FUSE
# file, used by stock raw-disk tools (mke2fs, fsck, qemu-img, cmp).
. "$TOP/tests/cli/lib.sh"
A=$APPLIANCE

if [ ! -c /dev/fuse ] || ! command -v fusermount3 >/dev/null; then
	t_failed "FUSE is available" "/dev/fuse or fusermount3 missing (install fuse3)"
	t_done
fi

mounted() { grep -q " $T_TMP/$1 .* fuse.appliance appliance:" /proc/self/mountinfo; }

# ---- AVD, read-write: a filesystem made through the attached file ------
$A img create -f avd d.avd 64M >/dev/null
t_run "avd: attach --rw --background" $A img attach --rw --background --log daemon.log d.avd raw
t_check "avd: FILE is a FUSE mount named after its server" mounted raw
t_check "avd: FILE has the virtual size" [ "$(stat -c %s raw)" = 67108864 ]
t_run "avd: mke2fs -t ext4 on the attached file" mke2fs -q -F -t ext4 -L attached raw
t_run "avd: fsck.ext4 -n on the attached file" fsck.ext4 -n raw
printf 'hello through FUSE\n' > hello.txt
t_run "avd: debugfs writes a file into the filesystem" debugfs -w -R "write hello.txt hello.txt" raw
cp raw snap.raw
t_run "avd: qemu-img compare against a copy" qemu-img compare -f raw -F raw raw snap.raw
t_run "avd: unmount" $A img unmount raw
t_check "avd: FILE created by attach is gone again" [ ! -e raw ]
$A img read d.avd 0 64M > after.raw
t_run "avd: img read sees what was written through FUSE" cmp after.raw snap.raw
t_check "avd: the filesystem is in the image" sh -c "debugfs -R 'cat hello.txt' after.raw 2>/dev/null | grep -q 'hello through FUSE'"
t_run "avd: image is consistent" $A img check d.avd

# ---- qcow2 (made by qemu-img), read-only -----------------------------
qemu-img create -q -f qcow2 q.qcow2 32M
qemu-io -f qcow2 -c "write -P 0x5a 1M 2M" -c "write -P 0x11 20M 64k" q.qcow2 >/dev/null
: > view
t_run "qcow2: attach read-only (FILE exists)" $A img attach --background --log daemon.log q.qcow2 view
t_run "qcow2: qemu-img compare attached file with the image" qemu-img compare -f raw -F qcow2 view q.qcow2
qemu-img convert -f qcow2 -O raw q.qcow2 q.raw
t_run "qcow2: cmp with qemu-img's raw conversion" cmp view q.raw
# Concurrent readers see the same bytes.
( for i in 1 2 3 4; do cat view > c$i.raw & done; wait )
t_check "qcow2: four concurrent readers got the same bytes" sh -c 'cmp c1.raw q.raw && cmp c2.raw q.raw && cmp c3.raw q.raw && cmp c4.raw q.raw'
# A read-only attach refuses writes.
out=$(dd if=/dev/zero of=view bs=4k count=1 conv=notrunc 2>&1); rc=$?
t_check "qcow2: write to a read-only attach fails" [ "$rc" != 0 ]
t_check "qcow2: ...with EROFS or EACCES" sh -c "echo '$out' | grep -Eq 'Read-only file system|Permission denied'"
t_run "qcow2: unmount" $A img unmount view
t_check "qcow2: FILE that existed before stays" [ -f view ] && [ ! -s view ]
t_run "qcow2: image unchanged" qemu-img compare -f raw -F qcow2 q.raw q.qcow2

# ---- qcow2, read-write through FUSE, checked by qemu-img -------------
# (only where this build's qcow2 driver can write)
if { $A img create -f qcow2 probe.qcow2 1M && printf x | $A img write probe.qcow2 0 1; } >/dev/null 2>&1; then
	t_run "qcow2: attach --rw" $A img attach --rw --background --log daemon.log q.qcow2 view
	t_run "qcow2: write through the attached file at 8 MiB" dd if=hello.txt of=view bs=1 seek=8388608 conv=notrunc,fsync status=none
	t_run "qcow2: unmount after writing" $A img unmount view
	t_run "qcow2: qemu-img check is clean" qemu-img check -q q.qcow2
	qemu-img convert -f qcow2 -O raw q.qcow2 q2.raw
	t_check "qcow2: qemu-img reads the written bytes" sh -c "dd if=q2.raw bs=1 skip=8388608 count=19 status=none | grep -q 'hello through FUSE'"
else
	echo "qcow2 is not writable in this build: read-write qcow2 attach skipped"
fi

# ---- foreground attach stops cleanly on SIGTERM -----------------------
$A img attach d.avd fg 2>fg.log &
pid=$!
for i in $(seq 100); do mounted fg && break; sleep 0.05; done
t_check "foreground attach mounts" mounted fg
kill -TERM $pid; wait $pid; rc=$?
t_check "SIGTERM: exit 0" [ "$rc" = 0 ]
t_check "SIGTERM: the mount is gone" sh -c "! grep -q ' $T_TMP/fg ' /proc/self/mountinfo"

# ---- a mount whose server died can still be unmounted ----------------
$A img attach --background d.avd dead
pid=$(sed -n "s|.* $T_TMP/dead .* appliance:\([0-9]*\) .*|\1|p" /proc/self/mountinfo)
t_check "the mount names its server's pid" [ -n "$pid" ]
[ -n "$pid" ] && kill -KILL "$pid"
sleep 0.2
t_run "unmount after the server was killed" $A img unmount dead
t_check "...the dead mount is gone" sh -c "! grep -q ' $T_TMP/dead ' /proc/self/mountinfo"

# The background servers said nothing after they were ready (a failed
# flush on the way out, or a sanitizer report, would be there).
touch daemon.log
t_check "background servers logged no error" [ ! -s daemon.log ]
[ -s daemon.log ] && sed 's/^/  | /' daemon.log

# ---- errors ----------------------------------------------------------
t_fail "attach of a missing image fails" 1 $A img attach nothere.avd x
t_check "...and leaves no FILE behind" [ ! -e x ]
mkdir adir
t_fail "attach onto a directory is refused" 1 $A img attach d.avd adir
t_fail "unmount of a path that is not a mount" 1 $A img unmount adir
t_fail "attach without FILE is a usage error" 2 $A img attach d.avd
# A hostile header is refused before anything is mounted, with imgfmt's
# message naming the field.
qemu-img create -q -f qcow2 bad.qcow2 16M
printf '\000\000\000\143' | dd of=bad.qcow2 bs=1 seek=4 conv=notrunc status=none
$A img attach --background bad.qcow2 bv 2>bad.err
t_check "attach of a qcow2 claiming version 99 fails" [ $? = 1 ]
t_check "...naming the version" grep -q "version 99" bad.err
t_check "...with nothing mounted or left behind" [ ! -e bv ]
# Whatever happened above, leave no mount behind (lib.sh's cleanup could
# not remove the temporary directory, and the next run would trip on it).
for m in $(awk -v t="$T_TMP/" 'index($5, t) == 1 { print $5 }' /proc/self/mountinfo); do
	$A img unmount "$m" >/dev/null 2>&1 || fusermount3 -u -z "$m"
done
t_done
