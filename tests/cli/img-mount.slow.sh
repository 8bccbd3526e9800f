# img-mount.slow.sh - the libguestfs commands at length: partitions,
# qcow2, ls/cp-in/cp-out/edit, read-only mounts, SIGTERM, inspection.
# About nine appliance launches (20-30 s each under TCG), so SLOW=1 only.
# Results are checked without libguestfs where possible (debugfs on the
# image converted to raw) to keep the launches down.
. "$TOP/tests/cli/lib.sh"
A=$APPLIANCE
export LIBGUESTFS_BACKEND=direct LIBGUESTFS_BACKEND_SETTINGS=${LIBGUESTFS_BACKEND_SETTINGS:-force_tcg}

if ! ls /boot/vmlinuz-* >/dev/null 2>&1 && ! ls /lib/modules/*/vmlinuz >/dev/null 2>&1; then
	t_failed "libguestfs has a kernel for its appliance" "no kernel in /boot (install linux-image-amd64: make deps)"
	t_done
fi
command -v sfdisk >/dev/null || { t_failed "sfdisk is installed"; t_done; }

# A partitioned disk: p1 ext4 "one", p2 ext4 "two" with a hostile name.
mkdir -p t1 t2/etc t2/srv
echo one > t1/which
echo two > t2/which
echo "colour=blue" > t2/etc/app.conf
printf 'x' > "t2/evil$(printf '\033')[31mred"
mke2fs -q -F -t ext4 -d t1 p1.raw 16M
mke2fs -q -F -t ext4 -d t2 p2.raw 24M
qemu-img create -q -f raw disk.raw 48M
printf 'label: dos\nstart=2048, size=32768, type=83\nstart=34816, size=49152, type=83\n' | sfdisk -q disk.raw
dd if=p1.raw of=disk.raw bs=512 seek=2048 conv=notrunc status=none
dd if=p2.raw of=disk.raw bs=512 seek=34816 conv=notrunc status=none
qemu-img convert -f raw -O qcow2 disk.raw disk.qcow2
part2() { # IMAGE -> p2 as raw in p2.out
	rm -f whole.out; $A img convert -O raw "$1" whole.out >/dev/null && dd if=whole.out of=p2.out bs=512 skip=34816 count=49152 status=none
}

# 1: ls on partition 2 of a qcow2 made by qemu-img; control characters
# in names are escaped.
$A img ls --partition 2 disk.qcow2 / > ls.out 2>ls.err
t_check "ls --partition 2 (qcow2) exits 0" [ $? = 0 ]
t_check "ls lists partition 2's files" grep -qx which ls.out
t_check "ls escapes control characters in names" grep -q 'evil\\x1b\[31mred' ls.out
t_check "ls prints no raw escape byte" sh -c "! grep -q \"\$(printf '\\033')\" ls.out"

# 2: partition beyond the table: a clear error.
$A img ls --partition 3 disk.raw / > /dev/null 2>p3.err
t_check "ls --partition 3 of 2 fails" [ $? = 1 ]
t_check "...naming how many there are" grep -q "has 2 partitions" p3.err

# 3: cp-in a directory tree into partition 2 of an AVD copy.
$A img convert -O avd disk.raw disk.avd >/dev/null
mkdir -p payload/sub && echo "deep" > payload/sub/f && head -c 100000 /dev/urandom > payload/bin
t_run "cp-in a directory" $A img cp-in --partition 2 disk.avd payload /srv
part2 disk.avd
t_check "cp-in: the tree is in the image" sh -c "debugfs -R 'cat /srv/payload/sub/f' p2.out 2>/dev/null | grep -qx deep"
debugfs -R 'cat /srv/payload/bin' p2.out 2>/dev/null > bin.out
t_run "cp-in: binary content intact" cmp bin.out payload/bin
t_run "image consistent after cp-in" $A img check disk.avd

# 4: cp-out brings it back.
mkdir out
t_run "cp-out a directory" $A img cp-out --partition 2 disk.avd /srv/payload out
t_run "cp-out: same tree" diff -r payload out/payload

# 5: edit with a non-interactive editor.
EDITOR="sed -i s/blue/green/" $A img edit --partition 2 disk.avd /etc/app.conf 2>edit.err
t_check "edit exits 0" [ $? = 0 ]
part2 disk.avd
t_check "edit: the change is in the image" sh -c "debugfs -R 'cat /etc/app.conf' p2.out 2>/dev/null | grep -qx colour=green"
t_run "fsck.ext4 -n: partition 2 clean after cp-in and edit" fsck.ext4 -n -f p2.out

# 6: read-only mount refuses writes and leaves the image alone.
cp disk.avd ro.avd
mkdir mnt
t_run "mount read-only (partition 1)" $A img mount --background --partition 1 ro.avd mnt
t_check "read-only mount shows partition 1" sh -c "[ \"\$(cat mnt/which)\" = one ]"
out=$(sh -c 'echo x > mnt/new' 2>&1)
t_check "writing into a read-only mount fails" [ ! -e mnt/new ]
t_check "...with EROFS" sh -c "echo '$out' | grep -q 'Read-only file system'"
t_run "unmount read-only" $A img unmount mnt
t_run "read-only mount left the image identical" $A img compare disk.avd ro.avd

# 7: foreground mount, changed, stopped with SIGTERM: the change persists.
$A img mount --rw --partition 1 ro.avd mnt 2>fg.err &
pid=$!
for i in $(seq 1200); do grep -q " $T_TMP/mnt " /proc/self/mountinfo && break; kill -0 $pid 2>/dev/null || break; sleep 0.1; done
t_check "foreground mount came up" grep -q " $T_TMP/mnt " /proc/self/mountinfo
echo "written before SIGTERM" > mnt/sigterm.txt
kill -TERM $pid; wait $pid; rc=$?
t_check "SIGTERM: exit 0" [ "$rc" = 0 ]
[ "$rc" = 0 ] || sed 's/^/  | /' fg.err
t_check "SIGTERM: unmounted" sh -c "! grep -q ' $T_TMP/mnt ' /proc/self/mountinfo"
rm -f whole.out; $A img convert -O raw ro.avd whole.out >/dev/null
dd if=whole.out of=p1.out bs=512 skip=2048 count=32768 status=none
t_check "SIGTERM: the file written before it is in the image" sh -c "debugfs -R 'cat /sigterm.txt' p1.out 2>/dev/null | grep -qx 'written before SIGTERM'"

# 8: inspection on a disk without an OS says so.
$A img ls --inspect disk.raw / > /dev/null 2>insp.err
t_check "--inspect without an OS fails" [ $? = 1 ]
t_check "...saying no operating system was found" grep -q "no operating system" insp.err

# 9: inspection finds a (minimal, fake) Debian root by its own files.
mkdir -p os/etc os/bin
printf 'NAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n' > os/etc/os-release
echo 12.0 > os/etc/debian_version
echo 'LABEL=root / ext4 defaults 0 1' > os/etc/fstab
echo osguest > os/etc/hostname
cp /bin/ls os/bin/ls
mke2fs -q -F -t ext4 -L root -d os os.raw 32M
$A img convert -O avd os.raw os.avd >/dev/null
$A img cat --inspect os.avd /etc/hostname > insp.out 2>insp.err
t_check "cat --inspect finds the OS root" [ "$(cat insp.out)" = osguest ]
[ "$(cat insp.out)" = osguest ] || sed 's/^/  | /' insp.err
# Leave no mount behind, whatever failed above.
for m in $(awk -v t="$T_TMP/" 'index($5, t) == 1 { print $5 }' /proc/self/mountinfo); do
	$A img unmount "$m" >/dev/null 2>&1 || fusermount3 -u -z "$m"
done
t_done
