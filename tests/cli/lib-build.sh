# tests/cli/lib-build.sh - what the builder's command-level tests share
# (sourced after lib.sh): the build cache, the recipe, a fixed epoch, and
# booting a built appliance under QEMU.
CACHE=${APPLIANCE_TEST_CACHE:-/var/tmp/appliance-test-cache}
RECIPE="$TOP/recipes/busybox-hello"
SDE=1700000000

build() { "$APPLIANCE" build -q --cache "$CACHE" --source-date-epoch "$SDE" "$@"; }

# Boot a copy of an appliance directory's raw export (the guest mounts its
# root read-write); prints the console.  MACHINE microvm uses virtio-mmio
# devices described in ACPI, pc uses virtio-pci: the initramfs loads both
# drivers, and the test boots each once.  tsc_early_khz: under TCG on a
# loaded host the kernel's PIT calibration of the TSC can fail, and on
# microvm (no HPET, no ACPI PM timer) it then hangs; giving the frequency
# skips the calibration.
boot() {
	machine=$1 dir=$2 root=$3
	cp --sparse=always "$dir/disk.raw" boot.raw
	case $machine in
	microvm) m=microvm,pit=on,pic=on,rtc=on,acpi=on dev=virtio-blk-device ;;
	*) m=pc dev=virtio-blk-pci ;;
	esac
	timeout 300 qemu-system-x86_64 -M "$m" -m 128 -no-reboot -nographic \
		-nodefaults -serial stdio -kernel "$dir/vmlinuz" \
		-initrd "$dir/initrd.img" \
		-append "console=ttyS0 root=$root rw quiet tsc_early_khz=2000000" \
		-drive id=d,file=boot.raw,format=raw,if=none \
		-device "$dev",drive=d 2>&1
}

