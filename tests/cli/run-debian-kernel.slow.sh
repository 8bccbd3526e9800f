# run-debian-kernel.slow.sh - boot Debian's stock cloud kernel in the
# builtin monitor until its banner and its ACPI CPU discovery appear.
#
# Slow where KVM runs guests emulated (~10,000x): decompressing the
# kernel alone takes minutes there, so this runs only with SLOW=1 and is
# time-boxed.  The kernel package is fetched once with apt-get download
# into a cache directory (no root, the host's /boot untouched).
. "$TOP/tests/cli/lib.sh"
A=$APPLIANCE
CACHE=${APPLIANCE_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/appliance-tests}/debian-kernel
LIMIT=${DEBIAN_BOOT_TIMEOUT:-1200}

if ! [ -r /dev/kvm ] || ! [ -w /dev/kvm ]; then
	echo "no usable /dev/kvm: Debian kernel boot skipped"
	t_done
fi
K=$(ls "$CACHE"/x/boot/vmlinuz-* 2>/dev/null | head -n 1)
if [ -z "$K" ]; then
	mkdir -p "$CACHE"
	pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
	      awk '/Depends: linux-image-/ { print $2; exit }')
	if [ -z "$pkg" ] || ! (cd "$CACHE" && apt-get download "$pkg" >/dev/null 2>&1 &&
	     dpkg-deb -x "$CACHE"/"$pkg"_*.deb "$CACHE"/x); then
		echo "cannot fetch linux-image-cloud-amd64 with apt: Debian kernel boot skipped"
		t_done
	fi
	K=$(ls "$CACHE"/x/boot/vmlinuz-* | head -n 1)
fi
echo "kernel: $K"

$A run --engine builtin --kernel "$K" --memory 256M --cpus 2 \
	--append "console=ttyS0 earlyprintk=ttyS0 panic=-1 reboot=k" \
	--console boot.txt 2>run.err &
pid=$!
start=$(date +%s)
# The banner comes after decompression; "Allowing 2 CPUs" shows that the
# kernel found both vCPUs in our ACPI MADT.
while kill -0 $pid 2>/dev/null && [ $(( $(date +%s) - start )) -lt "$LIMIT" ]; do
	grep -q 'smpboot: Allowing 2 CPUs' boot.txt 2>/dev/null && break
	sleep 2
done
echo "waited $(( $(date +%s) - start )) s"
alive=0
kill -0 $pid 2>/dev/null && alive=1
kill -TERM $pid 2>/dev/null
wait $pid
rc=$?
t_check "the monitor was still running the guest" [ "$alive" = 1 ]
t_check "boot banner on the serial console" grep -q '^\[ *[0-9.]*\] Linux version' boot.txt
t_check "the kernel got our command line" grep -q 'Command line: console=ttyS0 earlyprintk=ttyS0' boot.txt
t_check "our e820 map reached the kernel" grep -q 'BIOS-e820: \[mem 0x000000000009f000-0x000000000009ffff\] reserved' boot.txt
t_check "the kernel found the ACPI tables" grep -q 'ACPI: RSDP 0x00000000000E0000' boot.txt
t_check "the kernel found 2 CPUs in the MADT" grep -q 'smpboot: Allowing 2 CPUs' boot.txt
t_check "SIGTERM stopped the monitor cleanly" [ "$rc" = 0 ]
tail -n 5 boot.txt
cat run.err
t_done
