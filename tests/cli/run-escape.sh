# run-escape.sh - the console escape: `appliance run` on a pseudo-
# terminal (console_escape.py), a guest that stays up, Ctrl-A x typed.
# Documented (`appliance help run`): on a terminal Ctrl-A x quits, exit
# status 0, the terminal restored; the guest's disk writes are flushed
# (kept in the --persist overlay) or the throwaway overlay is gone.
#
# QEMU engine: the PVH test guest idling, and a busybox appliance that
# writes a file to its disk and then waits.  Builtin engine (needs a
# usable /dev/kvm): the test guest writes its disk, idles, and the write
# must be in the image after the escape.
. "$TOP/tests/cli/lib.sh"
A=$APPLIANCE
ESC="python3 $TOP/tests/cli/console_escape.py"

t_check "help run documents the escape" sh -c "$A help run | grep -q 'Ctrl-A x quits'"

if command -v qemu-system-x86_64 >/dev/null; then
	$ESC "guest: idle until stopped" 120 $A run --engine qemu --memory 64M \
		--kernel "$BUILD_ABS/tests/guest-pvh.elf" --append "console=ttyS0 idle" >qemu.txt 2>&1
	t_check "QEMU engine: the escape ends an idle guest" grep -q '^exit-status: 0$' qemu.txt
	t_check "  ... QEMU says it terminated" grep -q 'QEMU: Terminated' qemu.txt
	t_check "  ... the terminal is cooked again" grep -q '^terminal: cooked$' qemu.txt
	sed -n '/idle until/,$p' qemu.txt | sed 's/^/  | /'

	# A package: the guest's write must be in the --persist overlay, and
	# a throwaway overlay must be gone, after the escape.
	cat > recipe.toml <<'EOF'
[appliance]
name = "escape-test"
version = "1.0"

[base]
type = "busybox"

[[files]]
path = "/etc/init.d/idle"
mode = "0755"
content = """
#!/bin/sh
case "$1" in
start)
	echo "ESCAPE-TEST-$((6 * 7))-WRITTEN" > /marker
	sync
	echo "escape-test: ready"
	exec sleep 100000
	;;
esac
"""

[system]
hostname = "escape-test"
services = ["idle"]

[disk]
size = "64M"

[vm]
memory = "128M"
cpus = 1
EOF
	CACHE=${APPLIANCE_TEST_CACHE:-/var/tmp/appliance-test-cache}
	t_run "build a package that writes its disk and waits" $A build -q --cache "$CACHE" \
		--source-date-epoch 1700000000 -o esc.dir recipe.toml
	t_run "  ... pack it" $A pack esc.dir -o esc.appliance
	mkdir run-tmp
	pkg_sum=$(sha256sum <esc.appliance)
	TMPDIR=$T_TMP/run-tmp CONSOLE_ESCAPE_LS=$T_TMP/run-tmp $ESC "escape-test: ready" 300 \
		$A run --insecure --engine qemu --persist ov.avd esc.appliance >pkg.txt 2>&1
	t_check "package: the escape ends it with status 0" grep -q '^exit-status: 0$' pkg.txt
	# The script holds the marker's recipe, only the guest's write holds
	# the marker itself.
	t_check "  ... the guest's write is in the persisted overlay" grep -q ESCAPE-TEST-42-WRITTEN ov.avd
	t_check "  ... which is a consistent image" $A img check ov.avd
	t_check "  ... and the package is untouched" [ "$(sha256sum <esc.appliance)" = "$pkg_sum" ]
	tail -n 4 pkg.txt | sed 's/^/  | /'
	TMPDIR=$T_TMP/run-tmp CONSOLE_ESCAPE_LS=$T_TMP/run-tmp $ESC "escape-test: ready" 300 \
		$A run --insecure --engine qemu esc.appliance >pkg2.txt 2>&1
	t_check "throwaway overlay: the escape ends it with status 0" grep -q '^exit-status: 0$' pkg2.txt
	# The overlay, kernel and initramfs have no names while it runs
	# (so a run killed outright leaves nothing behind, run-stop.sh).
	t_check "  ... nothing of the run was in TMPDIR while it ran" grep -qx 'during-run: *' pkg2.txt
	t_check "  ... and is gone afterwards" sh -c "[ -z \"\$(ls -A run-tmp)\" ]"
	grep '^during-run' pkg2.txt | sed 's/^/  | /'
else
	echo "SKIP: no qemu-system-x86_64: QEMU-engine escape tests skipped"
fi

if ! [ -r /dev/kvm ] || ! [ -w /dev/kvm ]; then
	echo "SKIP: no usable /dev/kvm: builtin-monitor escape test skipped"
	t_done
fi
$A img create disk.avd 1M >/dev/null
printf 'APPLIANCE-DISK-0 and more' | $A img write disk.avd 0 25
$ESC "guest: idle until stopped" 300 $A run --engine builtin --memory 64M \
	--kernel "$BUILD_ABS/tests/guest.bin" --disk disk.avd --append "idle" >builtin.txt 2>&1
t_check "builtin: the escape ends an idle guest with status 0" grep -q '^exit-status: 0$' builtin.txt
t_check "  ... and says why" grep -q 'appliance: run: console escape (Ctrl-A x)' builtin.txt
t_check "  ... the terminal is cooked again" grep -q '^terminal: cooked$' builtin.txt
t_check "  ... the guest's write was flushed to the image" [ "$($A img read disk.avd 512 25)" = "written by the test guest" ]
t_check "  ... which is consistent" $A img check disk.avd
t_done
