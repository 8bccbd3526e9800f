# convert-vmdk-vhd.sh - VMDK and VHD (qemu's "vpc") in and out, with
# qemu-img as the oracle: what qemu-img writes we read identically, and
# what we write qemu-img checks clean and compares identical.
. "$TOP/tests/cli/lib.sh"
A=$APPLIANCE

if ! command -v qemu-img >/dev/null 2>&1; then
	echo "qemu-img not installed: skipped"
	t_done
fi

# 24 MiB + 1.5 KiB: not a whole number of grains, blocks or CHS cylinders.
# Data at an unaligned offset near the start, a 2 MiB run at 17 MiB, and
# the last three sectors; everything else is zero.
SIZE=$((24 * 1048576 + 1536))
head -c 3200000 /dev/urandom > rnd
truncate -s $SIZE src.raw
dd if=rnd of=src.raw bs=1 seek=70001 count=300000 conv=notrunc 2>/dev/null
dd if=rnd of=src.raw bs=1M seek=17 count=2 conv=notrunc iflag=fullblock 2>/dev/null
dd if=rnd of=src.raw bs=512 seek=$((SIZE / 512 - 3)) count=3 conv=notrunc 2>/dev/null

# ---- images qemu-img made, read by us ------------------------------------
for sub in monolithicSparse streamOptimized monolithicFlat \
	   twoGbMaxExtentSparse twoGbMaxExtentFlat; do
	qemu-img convert -f raw -O vmdk -o subformat=$sub src.raw q-$sub.vmdk
	t_run "qemu $sub: identical to the source" $A img compare q-$sub.vmdk src.raw
	t_check "qemu $sub: info names the subformat" \
		sh -c "$A img info --json q-$sub.vmdk | grep -q '\"subformat\": \"$sub\"'"
	rm -f ours.raw
	t_run "qemu $sub: convert to raw" $A img convert -O raw q-$sub.vmdk ours.raw
	t_run "qemu $sub: raw copy matches byte for byte" cmp ours.raw src.raw
done
t_check "qemu streamOptimized: map says compressed" \
	sh -c "$A img map q-streamOptimized.vmdk | grep -q 'compressed'"
t_check "qemu monolithicSparse: map shows the holes" \
	sh -c "$A img map --json q-monolithicSparse.vmdk | grep -q '\"kind\": \"zero\"'"

# Zeroed grains (version 2, GTE 1) read as zeros and map as zero.
qemu-img convert -f raw -O vmdk -o zeroed_grain=on src.raw zg.vmdk
qemu-io -c "write -z 17M 1M" zg.vmdk >/dev/null
qemu-img convert -O raw zg.vmdk zg-theirs.raw
t_run "qemu zeroed_grain: convert" $A img convert -O raw zg.vmdk zg-ours.raw
t_run "qemu zeroed_grain: same bytes as qemu reads" cmp zg-ours.raw zg-theirs.raw
t_check "qemu zeroed_grain: the zeroed MiB maps as zero, data after it" \
	sh -c "$A img map zg.vmdk | grep -q '^18874368 .*1048576 .*data'"

# A child qemu-img made on top of a vmdk base reads through the chain.
qemu-img create -q -f vmdk -b q-monolithicSparse.vmdk -F vmdk child.vmdk
qemu-io -c "write -P 0x55 1M 64k" child.vmdk >/dev/null
qemu-img convert -O raw child.vmdk child-theirs.raw
t_run "qemu vmdk child: convert through the backing chain" \
	$A img convert -O raw child.vmdk child-ours.raw
t_run "qemu vmdk child: same bytes as qemu reads" cmp child-ours.raw child-theirs.raw

# An OVA: the .ovf first, then the disk; we read the first .vmdk member.
printf '<?xml version="1.0"?>\n<Envelope/>\n' > vm.ovf
cp q-streamOptimized.vmdk disk1.vmdk
tar --format=ustar -cf vm.ova vm.ovf disk1.vmdk
t_run "ova: the disk inside is identical to the source" $A img compare vm.ova src.raw
t_run "ova: convert to vmdk" $A img convert -O vmdk vm.ova from-ova.vmdk
t_run "ova: qemu-img agrees with the result" qemu-img compare -f vmdk -F raw from-ova.vmdk src.raw

# qemu's vpc rounds the size up to whole CHS cylinders unless force_size=on;
# compare with qemu-img's own raw view of the same file.
for sub in dynamic fixed; do
	for force in off on; do
		name=q-$sub-$force.vhd
		qemu-img convert -f raw -O vpc -o subformat=$sub,force_size=$force src.raw $name
		rm -f theirs.raw ours.raw
		qemu-img convert -f vpc -O raw $name theirs.raw
		t_run "qemu vpc $sub force_size=$force: convert to raw" \
			$A img convert -f vhd -O raw $name ours.raw
		t_run "qemu vpc $sub force_size=$force: same bytes and size as qemu reads" \
			cmp ours.raw theirs.raw
	done
done
t_check "qemu vpc force_size=on keeps the exact size" \
	[ "$(stat -c %s theirs.raw)" = $SIZE ]
t_check "qemu dynamic vpc is detected by magic" \
	sh -c "$A img info q-dynamic-off.vhd | grep -q 'vhd (dynamic)'"

# ---- images we write, judged by qemu-img --------------------------------
for sub in monolithicSparse streamOptimized; do
	t_run "ours $sub: convert" $A img convert -O vmdk -o subformat=$sub src.raw o-$sub.vmdk
	t_run "ours $sub: qemu-img check" qemu-img check -f vmdk o-$sub.vmdk
	t_run "ours $sub: qemu-img compare" qemu-img compare -f vmdk -F raw o-$sub.vmdk src.raw
	t_check "ours $sub: qemu-img sees the subformat" \
		sh -c "qemu-img info --output=json o-$sub.vmdk | grep -q '\"create-type\": \"$sub\"'"
	t_check "ours $sub: stays sparse" [ "$(stat -c %s o-$sub.vmdk)" -lt 8000000 ]
	t_run "ours $sub: our check" $A img check o-$sub.vmdk
	t_check "ours $sub: the descriptor's extent is the file's own name" \
		sh -c "head -c 70000 o-$sub.vmdk | strings | grep -qx 'RW [0-9]* SPARSE \"o-$sub.vmdk\"'"
done
t_run "default vmdk subformat is monolithicSparse" $A img convert -O vmdk src.raw o-default.vmdk
t_check "default vmdk is monolithicSparse for qemu-img" \
	sh -c "qemu-img info o-default.vmdk | grep -q 'create type: monolithicSparse'"

for sub in dynamic fixed; do
	t_run "ours vhd $sub: convert" $A img convert -O vhd -o subformat=$sub src.raw o-$sub.vhd
	t_run "ours vhd $sub: qemu-img compare (exact size)" \
		qemu-img compare -f vpc -F raw o-$sub.vhd src.raw
	t_check "ours vhd $sub: qemu-img reads the exact size" \
		sh -c "qemu-img convert -f vpc -O raw o-$sub.vhd back-$sub.raw && [ \$(stat -c %s back-$sub.raw) = $SIZE ]"
	t_run "ours vhd $sub: our check" $A img check -f vhd o-$sub.vhd
done
t_check "ours vhd dynamic: qemu-img info shows the exact size" \
	sh -c "qemu-img info -f vpc o-dynamic.vhd | grep -q 'virtual size: .*($SIZE bytes)'"
t_check "ours vhd dynamic: stays sparse" [ "$(stat -c %s o-dynamic.vhd)" -lt 12000000 ]
t_check "ours fixed vhd is footer-after-data" [ "$(stat -c %s o-fixed.vhd)" = $((SIZE + 512)) ]
t_check "a fixed vhd is raw unless named (as in qemu)" \
	sh -c "$A img info o-fixed.vhd | grep -q 'file format: raw'"

# VHD read-write: what `img write` puts in is what qemu-img sees.
t_run "vhd rw: create" $A img create -f vhd rw.vhd 8M
printf 'hello vhd' > hello.bin
t_run "vhd rw: write into a new block" sh -c "$A img write rw.vhd 3M 9 < hello.bin"
t_run "vhd rw: write across a block boundary" sh -c "$A img write rw.vhd 4194300 9 < hello.bin"
truncate -s 8M rw.raw
dd if=hello.bin of=rw.raw bs=1 seek=3145728 conv=notrunc 2>/dev/null
dd if=hello.bin of=rw.raw bs=1 seek=4194300 conv=notrunc 2>/dev/null
t_run "vhd rw: qemu-img agrees" qemu-img compare -f vpc -F raw rw.vhd rw.raw
t_run "vhd rw: our check is clean" $A img check rw.vhd

# VMDK read-write (monolithicSparse): qemu-img checks and compares it.
t_run "vmdk rw: create" $A img create -f vmdk rw.vmdk 8M
t_run "vmdk rw: write into a new grain" sh -c "$A img write rw.vmdk 3M 9 < hello.bin"
t_run "vmdk rw: write across a grain boundary" sh -c "$A img write rw.vmdk 4194300 9 < hello.bin"
t_run "vmdk rw: qemu-img check" qemu-img check rw.vmdk
t_run "vmdk rw: qemu-img agrees" qemu-img compare -f vmdk -F raw rw.vmdk rw.raw
t_run "vmdk rw: our check is clean (both table copies agree)" $A img check rw.vmdk
t_fail "vmdk rw: streamOptimized cannot be written in place" 1 \
	sh -c "$A img write o-streamOptimized.vmdk 0 9 < hello.bin"

# Chains across formats end where they began.
t_run "vmdk -> vhd" $A img convert -O vhd o-streamOptimized.vmdk chain.vhd
t_run "vhd -> vmdk" $A img convert -O vmdk -o subformat=streamOptimized chain.vhd chain.vmdk
t_run "chain round trip is identical" qemu-img compare -f vmdk -F raw chain.vmdk src.raw

# ---- refusals ------------------------------------------------------------
printf 'secret' > ../outside-$$.bin 2>/dev/null || true
cat > evil.vmdk <<EOF
# Disk DescriptorFile
version=1
CID=fffffffe
parentCID=ffffffff
createType="monolithicFlat"
RW 8 FLAT "../outside-$$.bin" 0
EOF
t_fail "descriptor extent with .. is refused" 1 $A img info evil.vmdk
t_check "the refusal names the field" \
	sh -c "$A img info evil.vmdk 2>&1 | grep -q 'leaves the descriptor'"
rm -f ../outside-$$.bin
sed 's|"../outside-[0-9]*.bin"|"/etc/passwd"|' evil.vmdk > abs.vmdk
t_fail "descriptor extent with an absolute path is refused" 1 $A img info abs.vmdk
t_fail "odd-sized vmdk output is refused" 1 sh -c \
	"head -c 1000 /dev/zero > odd.raw && $A img convert -O vmdk odd.raw odd.vmdk"
t_done
