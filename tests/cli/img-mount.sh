# img-mount.sh - `appliance img mount --rw` / `img cat` on an AVD image
# through libguestfs fed by our NBD server.  Two appliance launches (about
# 20-30 s each under TCG); everything heavier is in img-mount.slow.sh.
. "$TOP/tests/cli/lib.sh"
A=$APPLIANCE
# KVM is unusable for libguestfs on these machines (ENVIRONMENT.md).
export LIBGUESTFS_BACKEND=direct LIBGUESTFS_BACKEND_SETTINGS=${LIBGUESTFS_BACKEND_SETTINGS:-force_tcg}

# No libguestfs appliance, no test: say why and fail rather than pretend.
if ! ls /boot/vmlinuz-* >/dev/null 2>&1 && ! ls /lib/modules/*/vmlinuz >/dev/null 2>&1; then
	t_failed "libguestfs has a kernel for its appliance" "no kernel in /boot (install linux-image-amd64: make deps)"
	t_done
fi

# An ext4 filesystem from a small tree, as an AVD image.
mkdir -p tree/etc tree/srv/data
echo original-host > tree/etc/hostname
echo "keep me" > tree/etc/motd
head -c 300000 /dev/urandom > tree/srv/data/blob
mke2fs -q -F -t ext4 -d tree -E root_owner=0:0 fs.raw 32M
$A img convert -O avd fs.raw fs.avd >/dev/null
$A img convert -O raw fs.avd before.raw >/dev/null

# Launch 1: mount read-write, change a file through the mount, unmount.
mkdir mnt
t_run "mount --rw --background an AVD image" $A img mount --rw --background --log daemon.log fs.avd mnt
t_check "the mount is ours (appliance:PID)" grep -q " $T_TMP/mnt .* appliance:" /proc/self/mountinfo
t_check "the guest's files show through the mount" sh -c "[ \"\$(cat mnt/etc/hostname)\" = original-host ]"
t_run "a guest file read through the mount is intact" cmp mnt/srv/data/blob tree/srv/data/blob
t_run "change a file through the mount" sh -c "echo changed-host > mnt/etc/hostname"
t_run "unmount (waits for the flush)" $A img unmount mnt
t_check "the mount is gone" sh -c "! grep -q ' $T_TMP/mnt ' /proc/self/mountinfo"
touch daemon.log
t_check "the mount's server logged no error" [ ! -s daemon.log ]
[ -s daemon.log ] && sed 's/^/  | /' daemon.log

# Launch 2: img cat sees the change, and the other file is untouched.
$A img cat fs.avd /etc/hostname /etc/motd > cat.out 2>cat.err
rc=$?
t_check "img cat exits 0" [ "$rc" = 0 ]
[ "$rc" = 0 ] || sed 's/^/  | /' cat.err
printf 'changed-host\nkeep me\n' > want.out
t_run "img cat shows the change made through the mount" cmp cat.out want.out

# Only filesystem metadata and the changed file's block differ.
$A img convert -O raw fs.avd after.raw >/dev/null
t_fail "the image's content changed" 1 qemu-img compare -q -f raw -F raw before.raw after.raw
t_run "the image is consistent" $A img check fs.avd
t_run "fsck.ext4 -n finds the filesystem clean" fsck.ext4 -n -f after.raw
blob_blk=$(debugfs -R "bmap /srv/data/blob 0" before.raw 2>/dev/null)
t_check "the untouched file's data did not move or change" sh -c \
	"debugfs -R 'cat /srv/data/blob' after.raw 2>/dev/null | cmp - tree/srv/data/blob && [ \"\$(debugfs -R 'bmap /srv/data/blob 0' after.raw 2>/dev/null)\" = '$blob_blk' ]"
changed=$(cmp -l before.raw after.raw | wc -l)
t_check "few bytes changed ($changed)" [ "$changed" -gt 0 ] && [ "$changed" -lt 200000 ]
# Whatever happened above, leave no mount behind (lib.sh's cleanup could
# not remove the temporary directory, and the next run would trip on it).
for m in $(awk -v t="$T_TMP/" 'index($5, t) == 1 { print $5 }' /proc/self/mountinfo); do
	$A img unmount "$m" >/dev/null 2>&1 || fusermount3 -u -z "$m"
done
t_done
