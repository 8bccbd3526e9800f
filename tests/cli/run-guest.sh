# run-guest.sh - boot the tiny test guest (tests/guest/) in the builtin
# KVM monitor through `appliance run`, as a user would.  The guest is a
# few thousand instructions, so this stays fast even where KVM runs
# guests emulated.  Without a usable /dev/kvm the boots are skipped.
. "$TOP/tests/cli/lib.sh"
A=$APPLIANCE
G=$BUILD_ABS/tests/guest.bin

# Usage errors need no KVM.
t_fail "run without a kernel is a usage error" 2 $A run --engine builtin
t_fail "bad --cpus" 2 $A run --engine builtin --kernel "$G" --cpus 0
t_fail "bad --memory" 2 $A run --engine builtin --kernel "$G" --memory 1K
t_fail "bad --cpu-affinity" 2 $A run --engine builtin --kernel "$G" --cpu-affinity 3-1
t_fail "unknown engine" 2 $A run --engine vmware --kernel "$G"
t_fail "bad --net" 2 $A run --engine builtin --kernel "$G" --net tap:a,b
t_fail "-p with --net tap is a usage error" 2 $A run --engine builtin --kernel "$G" --net tap:t0 -p 8080:80
t_run "help run" $A help run
# The mount code (libguestfs, libfuse) lives in the appliance-mount
# helper: a `run` does not map it; `img mount` and friends exec it.
t_check "appliance links neither libguestfs nor libfuse" sh -c "! ldd '$A' | grep -qE 'guestfs|fuse'"
t_check "  ... the helper does" sh -c "ldd '$BUILD_ABS/appliance-mount' | grep -q guestfs"
t_check "  ... and img attach --help reaches it" sh -c "$A img attach --help | grep -q 'attach'"
mkdir -p alone/bin inst/bin inst/libexec/appliance
cp "$A" alone/bin/appliance
t_fail "img ls without the helper fails" 1 alone/bin/appliance img ls x.img /
t_check "  ... and says what is missing" sh -c "alone/bin/appliance img ls x.img / 2>&1 | grep -q 'appliance-mount is not installed'"
cp "$A" inst/bin/appliance
cp "$BUILD_ABS/appliance-mount" inst/libexec/appliance/
t_check "the installed layout finds the helper in libexec" sh -c "inst/bin/appliance img unmount --help | grep -q unmount"
t_check "  ... which names the tap network" sh -c "$A help run | grep -q 'tap:IFNAME'"
# The VM lives in appliance-run, which `run` execs once any pull is done:
# it maps neither libcurl nor libarchive (docs/PERFORMANCE.md, run's RSS).
R=$BUILD_ABS/appliance-run
t_check "appliance-run links neither libcurl nor libarchive" sh -c "! ldd '$R' | grep -qE 'libcurl|libarchive'"
t_fail "appliance-run by hand is a usage error" 2 "$R"
t_fail "run without appliance-run fails" 1 alone/bin/appliance run --engine qemu --kernel "$G"
t_check "  ... and says what is missing" sh -c "alone/bin/appliance run --engine qemu --kernel '$G' 2>&1 | grep -q 'appliance-run is not installed'"
t_fail "  ... but usage errors still come first" 2 alone/bin/appliance run --cpus 0 --kernel "$G"
cp "$R" inst/libexec/appliance/
t_check "the installed layout finds appliance-run in libexec" sh -c "inst/bin/appliance run --engine qemu --console none --kernel /nonexistent 2>&1 | grep -q 'could not open kernel file'"

# The PVH build of the guest is a correct PVH kernel by an independent
# loader's judgement: QEMU's (TCG, well under a second), so a failure
# of the builtin boot below is the monitor's, not the test guest's.
P=$BUILD_ABS/tests/guest-pvh.elf
printf 'INITRD-PVH-MODULE' > pvh-initrd.img
if command -v qemu-system-x86_64 >/dev/null; then
	timeout 60 qemu-system-x86_64 -M pc -accel tcg -m 64M -smp 2 -nographic \
		-nodefaults -serial stdio -no-reboot -kernel "$P" \
		-initrd pvh-initrd.img -append "test=pvh-qemu" >pvh-qemu.txt 2>&1
	t_check "QEMU boots the PVH test guest through its entry note" grep -q '^guest: pvh start_info version 0x1' pvh-qemu.txt
	t_check "  ... which reaches the same guest code and powers off" grep -q '^guest: poweroff' pvh-qemu.txt
	# The QEMU engine's console: to a file, or nowhere with "none" (the
	# idle guest runs until timeout's SIGTERM).
	Q="$A run --engine qemu --memory 64M --kernel $P --append idle"
	timeout 10 $Q --console con.txt >/dev/null 2>&1
	timeout 10 $Q --console none --stats >none.txt 2>&1
	t_check "QEMU engine: --console FILE gets the guest's output" grep -q '^guest: idle until stopped' con.txt
	t_check "  ... and --console none shows none of it" sh -c "! grep -q '^guest:' none.txt"
	t_check "  ... (that run was stopped by the signal)" grep -q 'stopped by a signal' none.txt
fi

if ! [ -r /dev/kvm ] || ! [ -w /dev/kvm ]; then
	echo "no usable /dev/kvm: builtin-monitor boots skipped"
	t_done
fi

B="$A run --engine builtin --memory 64M"

t_run "boot the test guest on 2 vCPUs" $B --cpus 2 --kernel "$G" --append "test=run-guest" --console out.txt
t_check "guest printed hello on the UART" grep -q '^guest: hello' out.txt
t_check "command line reached the guest" grep -q "^guest: cmdline 'test=run-guest" out.txt
t_check "e820 map reserves the MP table area" grep -q '^guest: e820 0x9f000 0x1000 0x2' out.txt
t_check "CPUID has the hypervisor bit" grep -q '^guest: hypervisor bit set' out.txt
# CMPXCHG16B is hidden exactly when the host KVM has no EPT/NPT (its
# emulator cannot run the instruction on shadowed page-table pages).
if grep -qE '^(Y|1)$' /sys/module/kvm_intel/parameters/ept /sys/module/kvm_amd/parameters/npt 2>/dev/null; then
	t_check "CX16 kept where KVM has EPT/NPT" grep -q '^guest: cx16 present' out.txt
else
	t_check "CX16 hidden where KVM shadow-pages" grep -q '^guest: cx16 hidden' out.txt
	t_check "noxsave appended where KVM shadow-pages" grep -q "^guest: cmdline 'test=run-guest noxsave'" out.txt
fi
t_check "CPUID reports 2 CPUs" grep -q '^guest: cpus 0x2' out.txt
t_check "second vCPU came up via INIT/SIPI with APIC id 1" grep -q '^guest: cpu1 up, apic id 0x1' out.txt
t_check "guest powered off through the i8042" grep -q '^guest: poweroff' out.txt

t_run "one vCPU, console on stdout" sh -c "$B --kernel '$G' --console stdio </dev/null >stdout.txt"
t_check "stdout has the guest's output" grep -q '^guest: cpus 0x1' stdout.txt
t_check "no second vCPU on a 1-vCPU guest" sh -c "! grep -q cpu1 stdout.txt"

t_run "pinned to host CPU 0, no seccomp" $B --kernel "$G" --cpus 2 --cpu-affinity 0 --no-seccomp --console none
t_run "3 GiB+ of RAM splits around the hole" $B --memory 4G --kernel "$G" --console big.txt
t_check "e820 shows RAM above 4 GiB" grep -q '^guest: e820 0x100000000 0x40000000 0x1' big.txt

# A virtio-blk disk (AVD format) the guest reads and writes over PCI.
$A img create disk.avd 1M >/dev/null
printf 'APPLIANCE-DISK-0 and more' | $A img write disk.avd 0 25
t_run "boot with a virtio-blk disk" $B --kernel "$G" --disk disk.avd --console disk.txt
t_check "guest found the disk on PCI" grep -q '^guest: virtio-blk in slot 0x1' disk.txt
t_check "virtio-rng sits in the slot after the disk" grep -q '^guest: virtio device 0x1044 in slot 0x2' disk.txt
t_check "  ... and in slot 1 without disks" grep -q '^guest: virtio device 0x1044 in slot 0x1' out.txt
if command -v passt >/dev/null; then
	t_run "boot with a port forward (user-mode network through passt)" $B --kernel "$G" -p 18123:80 --console net.txt
	t_check "  ... the guest sees a virtio-net device" grep -q '^guest: virtio device 0x1041' net.txt
	t_check "  ... and no passt is left behind" sh -c '! pgrep -f "[p]asst.*127.0.0.1/18123:80" >/dev/null'
fi
if [ -e /dev/net/tun ]; then
	t_run "boot with a tap network" $B --kernel "$G" --net tap:aprun$$ --console tap.txt
	t_check "  ... the guest sees a virtio-net device" grep -q '^guest: virtio device 0x1041' tap.txt
	t_check "  ... and the transient tap is gone afterwards" sh -c "! ip link show aprun$$ 2>/dev/null"
else
	echo "SKIP: /dev/net/tun is missing: no tap boot"
fi
t_check "guest sees the disk size" grep -q '^guest: disk sectors 0x800' disk.txt
t_check "guest read sector 0" grep -q "^guest: disk read 'APPLIANCE-DISK-0'" disk.txt
t_check "guest wrote sector 1" grep -q '^guest: disk write ok' disk.txt
t_check "the write landed in the image" [ "$($A img read disk.avd 512 25)" = "written by the test guest" ]
t_check "the image is consistent afterwards" $A img check disk.avd
$A img create -f raw ro.raw 64K >/dev/null
t_run "boot with a read-only disk" $B --kernel "$G" --disk ro.raw,ro --console ro.txt
t_check "a read-only disk refuses the guest's write" grep -q '^guest: disk write failed' ro.txt
t_check "the read-only image is unchanged" [ "$($A img read ro.raw 512 5 | od -An -c | tr -d ' \n')" = '\0\0\0\0\0' ]
t_check "without --disk the guest finds none" grep -q '^guest: no virtio-blk' out.txt
t_fail "a missing disk image fails" 1 $B --kernel "$G" --disk nonexistent.avd --console none
# A raw disk whose first bytes look like a qcow2 header opens as qcow2
# unless its format is named (and a detected raw disk refuses the guest
# writes that would make it look so: test_raw, nbd-serve.sh).
printf 'QFI\373-NAMED-RAW-DISK' > named.raw && truncate -s 64K named.raw
t_fail "a raw disk starting with a qcow2 magic is not raw when detected" 1 $B --kernel "$G" --disk named.raw --console none
t_run "  ... but is with ,format=raw" $B --kernel "$G" --disk named.raw,format=raw --console named.txt
t_check "  ... the guest reads its first sector" grep -q "^guest: disk read 'QFI.-NAMED-RAW-D'" named.txt
t_check "  ... and writes the second" grep -q '^guest: disk write ok' named.txt
t_run "  ... options in either order" $B --kernel "$G" --disk named.raw,format=raw,ro --console named-ro.txt
t_check "  ... ro taken too" grep -q '^guest: disk write failed' named-ro.txt
t_fail "an unknown --disk format fails" 1 $B --kernel "$G" --disk named.raw,format=bogus --console none
# A disk image that names a backing file would give the guest that file
# (a downloaded qcow2 naming ~/.ssh/id_rsa): refused unless allowed.
$A img create base.avd 1M >/dev/null
printf 'BASE-SECTOR-ZERO' | $A img write base.avd 0 16
$A img create -b base.avd over.avd >/dev/null
t_fail "a disk naming a backing file is refused" 1 $B --kernel "$G" --disk over.avd --console none
t_check "  ... naming the file and how to allow it" sh -c \
	"$B --kernel '$G' --disk over.avd --console none 2>&1 | grep -q 'names a backing file, base.avd.*--disk over.avd,backing=on lets the guest read it'"
t_run "  ... allowed with ,backing=on" $B --kernel "$G" --disk over.avd,backing=on --console over.txt
t_check "  ... the guest reads the backing file through it" grep -q "^guest: disk read 'BASE-SECTOR-ZERO'" over.txt
t_check "  ... and its write lands in the overlay, not the backing file" \
	sh -c "[ \"\$($A img read over.avd 512 25)\" = 'written by the test guest' ] && [ \"\$($A img read -f avd base.avd 512 7 | tr -d '\\0')\" = '' ]"

# The same guest as an ELF vmlinux-alike through the PVH entry: 32-bit
# protected mode, paging off, %ebx = hvm_start_info.
t_run "PVH direct boot of the ELF test guest on 2 vCPUs" $B --cpus 2 --kernel "$P" --initrd pvh-initrd.img --append "test=pvh" --disk disk.avd --console pvh.txt
t_check "  ... entered at the PVH note's address with a start_info" grep -q '^guest: pvh start_info version 0x1' pvh.txt
t_check "  ... the initramfs is module 0" grep -q "^guest: pvh module 0 size 0x11 starts 'INITRD-P'" pvh.txt
t_check "  ... the ACPI RSDP is in the start_info" grep -q '^guest: pvh rsdp 0xe' pvh.txt
t_check "  ... the command line arrived" grep -q "^guest: cmdline 'test=pvh" pvh.txt
t_check "  ... the memory map reserves the MP table area" grep -q '^guest: e820 0x9f000 0x1000 0x2' pvh.txt
t_check "  ... the second vCPU came up" grep -q '^guest: cpu1 up, apic id 0x1' pvh.txt
t_check "  ... the disk reads" grep -q "^guest: disk read 'APPLIANCE-DISK-0'" pvh.txt
t_check "  ... and it powered off" grep -q '^guest: poweroff' pvh.txt
head -c 200 "$P" > pvh-short.elf
t_fail "a truncated ELF kernel is refused" 1 $B --kernel pvh-short.elf --console none
t_check "  ... with a message naming the problem" sh -c "$B --kernel pvh-short.elf --console none 2>&1 | grep -q 'run past the end'"

# --stats reports the monitor's own figures.
$B --kernel "$G" --console none --stats 2>stats.txt
t_check "--stats reports setup time and overhead" grep -q 'setup to first KVM_RUN .* monitor overhead' stats.txt
cat stats.txt

# Hostile or broken kernels fail with a message, not a crash.
printf 'not a kernel at all' > junk.bin
t_fail "a text file is refused" 1 $B --kernel junk.bin --console none
t_check "the message names the problem" sh -c "$B --kernel junk.bin --console none 2>&1 | grep -q 'too short'"
head -c 700 "$G" > short.bin
t_fail "a truncated bzImage is refused" 1 $B --kernel short.bin --console none
t_fail "a missing kernel is refused" 1 $B --kernel nonexistent.bin --console none
t_fail "initrd larger than guest RAM" 1 sh -c "head -c 80000000 /dev/zero > big.img; $B --memory 32M --kernel '$G' --initrd big.img --console none"

# A guest that crashes (ud2 at the 64-bit entry, no IDT: triple fault)
# is an error; one that spins forever stops cleanly on SIGTERM.
cp "$G" crash.bin
printf '\017\013' | dd of=crash.bin bs=1 seek=$((0x600)) conv=notrunc 2>/dev/null
t_fail "triple fault exits 1" 1 $B --kernel crash.bin --console none
t_check "triple fault is reported" sh -c "$B --kernel crash.bin --console none 2>&1 | grep -q 'triple fault'"
cp "$G" spin.bin
printf '\353\376' | dd of=spin.bin bs=1 seek=$((0x600)) conv=notrunc 2>/dev/null
$B --kernel spin.bin --console none 2>spin.err &
pid=$!
sleep 1
kill -TERM $pid
wait $pid
rc=$?
t_check "SIGTERM stops a running guest with status 0" [ "$rc" = 0 ]
t_check "SIGTERM is reported" grep -q 'stopped by SIGTERM' spin.err

# The KVM speed probe gives a verdict (which one depends on the host).
t_check "--check-kvm gives a verdict" sh -c "$A run --check-kvm | grep -Eq '^(hardware|emulated): guest loop'"
$A run --check-kvm
t_done
