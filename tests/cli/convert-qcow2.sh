# convert-qcow2.sh - qcow2 read/write and `img convert`/`img compare`,
# with qemu-img as the oracle: images qemu-img makes read the same through
# us, images we make pass `qemu-img check` and compare identical.
. "$TOP/tests/cli/lib.sh"
A=$APPLIANCE

if ! command -v qemu-img >/dev/null 2>&1; then
	echo "qemu-img not installed (make deps); skipping"
	t_done
fi

# A 12 MiB source: random data, a run of zeros, text, and an unaligned
# tail so the last cluster is partial in every cluster size.
head -c 3M /dev/urandom > src.raw
head -c 1M /dev/zero >> src.raw
yes "appliance qcow2 convert test line" | head -c 2M >> src.raw
truncate -s 12582912 src.raw
printf 'the end' | dd of=src.raw bs=1 seek=12000003 conv=notrunc 2>/dev/null
truncate -s 12584448 src.raw # 512-aligned (qemu rounds), no larger cluster fits

# Read qcow2 images written by qemu-img with many option sets: our raw
# output must be identical to the source.
i=0
for opts in "-o cluster_size=4096" "-o cluster_size=65536" \
	    "-o cluster_size=2M" "-o cluster_size=512" "-o compat=0.10" \
	    "-c" "-c -o compression_type=zstd" \
	    "-c -o compression_type=zstd,cluster_size=4096" \
	    "-o extended_l2=on" "-o extended_l2=on,cluster_size=2M" \
	    "-c -o extended_l2=on" "-o preallocation=metadata" \
	    "-o preallocation=full,cluster_size=1M" "-o refcount_bits=1" \
	    "-o refcount_bits=64,lazy_refcounts=on"; do
	i=$((i + 1))
	qemu-img convert -f raw -O qcow2 $opts src.raw q$i.qcow2
	rm -f o$i.raw
	t_run "read qemu qcow2 ($opts)" $A img convert -O raw q$i.qcow2 o$i.raw
	t_check "content of qemu qcow2 ($opts)" cmp -s src.raw o$i.raw
	t_run "our check of qemu qcow2 ($opts)" $A img check q$i.qcow2
done
t_check "info names the cluster size" sh -c "$A img info q3.qcow2 | grep -q 'cluster size: 2097152'"
t_check "map reports compressed clusters" sh -c "$A img map q6.qcow2 | grep -q compressed"
t_check "map reports a hole for the zero run" sh -c "$A img map --json q2.qcow2 | grep -q '\"kind\": \"zero\"'"

# Zero clusters (v3 zero flag, and zeroed subclusters with extended L2)
# over a backing file: they must read as zeros, not the backing data.
if command -v qemu-io >/dev/null 2>&1; then
	qemu-img create -q -f qcow2 -b src.raw -F raw ov.qcow2
	qemu-io -c "write -z 0 64k" -c "write -P 0x5a 100k 8k" \
		-c "write -z 200k 1M" ov.qcow2 >/dev/null
	qemu-img convert -O raw ov.qcow2 ov-expect.raw
	t_run "read overlay with zero clusters" $A img convert -O raw ov.qcow2 ov.raw
	t_check "zero clusters over a backing file" cmp -s ov-expect.raw ov.raw
	t_run "compare against qemu's view" $A img compare ov.qcow2 ov-expect.raw
	qemu-img create -q -f qcow2 -o extended_l2=on -b src.raw -F raw ovx.qcow2
	qemu-io -c "write -z 4k 4k" -c "write -P 0x33 70k 2k" \
		-c "write -z 300k 20k" ovx.qcow2 >/dev/null
	qemu-img convert -O raw ovx.qcow2 ovx-expect.raw
	t_run "read extended L2 overlay" $A img convert -O raw ovx.qcow2 ovx.raw
	t_check "subclusters: data, zero and backing" cmp -s ovx-expect.raw ovx.raw
fi

# A three-deep backing chain (qcow2 on qcow2 on raw), backing named
# relative to the overlay.
mkdir -p chain
cp src.raw chain/base.raw
qemu-img create -q -f qcow2 -b base.raw -F raw chain/mid.qcow2
printf 'middle layer' | qemu-io -c "write -P 0x11 1M 64k" chain/mid.qcow2 >/dev/null 2>&1 || true
qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 chain/top.qcow2
qemu-io -c "write -P 0x22 1056k 4k" chain/top.qcow2 >/dev/null 2>&1 || true
qemu-img convert -O raw chain/top.qcow2 chain-expect.raw
t_run "read a backing chain" $A img convert -O raw chain/top.qcow2 chain.raw
t_check "backing chain flattened" cmp -s chain-expect.raw chain.raw
t_check "info shows the chain depth" sh -c "$A img info chain/top.qcow2 | grep -q 'depth: 3'"

# Write qcow2: qemu-img check must be clean and content identical.
for opts in "" "-o cluster_size=4096" "-o cluster_size=2M" \
	    "-o cluster_size=512" "-c" "-c -o compression_type=zstd" \
	    "-c --level 9 -o cluster_size=4096" "-c -o compression_type=zstd,cluster_size=512"; do
	rm -f w.qcow2
	t_run "write qcow2 ($opts)" $A img convert -j 3 -O qcow2 $opts src.raw w.qcow2
	t_run "qemu-img check clean ($opts)" qemu-img check -q w.qcow2
	t_run "qemu-img compare identical ($opts)" qemu-img compare -q src.raw w.qcow2
	t_run "our check clean ($opts)" $A img check w.qcow2
done
rm -f w.qcow2
$A img convert -O qcow2 src.raw w.qcow2
t_check "sparseness kept: the zero MiB is a hole" \
	sh -c "qemu-img map --output=json w.qcow2 | grep -q '\"start\": 3145728, \"length\": 1048576, \"depth\": 0, \"present\": false, \"zero\": true'"
t_check "written file is smaller than the disk" [ "$(stat -c %s w.qcow2)" -lt 12584448 ]
rm -f z.qcow2
$A img convert -c -O qcow2 -o compression_type=zstd src.raw z.qcow2
t_check "zstd image is marked zstd for qemu" sh -c "qemu-img info z.qcow2 | grep -q 'compression type: zstd'"
t_check "compressed image is smaller" [ "$(stat -c %s z.qcow2)" -lt "$(stat -c %s w.qcow2)" ]

rm -f m.qcow2
t_run "several -o options add up" $A img convert -c -O qcow2 -o compression_type=zstd -o cluster_size=4096 src.raw m.qcow2
t_check "both -o options applied" sh -c "qemu-img info m.qcow2 | grep -q 'cluster_size: 4096' && qemu-img info m.qcow2 | grep -q 'compression type: zstd'"
rm -f p.qcow2
$A img convert -p -O qcow2 src.raw p.qcow2 2>progress.err
t_check "-p draws nothing when stderr is not a terminal" [ ! -s progress.err ]

head -c 1000 /dev/urandom > odd.raw
rm -f odd.qcow2
t_run "convert a disk that is not a whole number of sectors" $A img convert -O qcow2 odd.raw odd.qcow2
t_run "qemu reads its last partial sector" qemu-img compare -q odd.raw odd.qcow2

# Empty images: create, and an all-zero source.
t_run "create qcow2" $A img create -f qcow2 empty.qcow2 1G
t_run "qemu-img check of created image" qemu-img check -q empty.qcow2
t_check "qemu-img sees the size" sh -c "qemu-img info empty.qcow2 | grep -q '1 GiB'"
t_run "create qcow2 with backing file" $A img create -f qcow2 -b src.raw -F raw bk.qcow2
t_run "qemu-img check of overlay" qemu-img check -q bk.qcow2
t_check "backing format recorded for qemu" sh -c "qemu-img info bk.qcow2 | grep -q 'backing file format: raw'"
t_run "overlay reads the backing file" qemu-img compare -q src.raw bk.qcow2
t_run "we read our own overlay" $A img compare bk.qcow2 src.raw

# Read-write: writes through our driver into images qemu-img made (plain,
# compressed, overlay, preallocated, 512-byte clusters) and into ours;
# qemu-img must find them clean and see the bytes.
head -c 200000 /dev/urandom > patch.bin
cp src.raw want.raw
dd if=patch.bin of=want.raw bs=1 seek=777777 conv=notrunc status=none
for kind in plain compressed overlay prealloc small ours; do
	rm -f rw.qcow2
	case $kind in
	plain) qemu-img convert -O qcow2 src.raw rw.qcow2 ;;
	compressed) qemu-img convert -c -O qcow2 -o compression_type=zstd src.raw rw.qcow2 ;;
	overlay) qemu-img create -q -f qcow2 -b src.raw -F raw rw.qcow2 ;;
	prealloc) qemu-img convert -O qcow2 -o preallocation=metadata src.raw rw.qcow2 ;;
	small) qemu-img convert -O qcow2 -o cluster_size=512 src.raw rw.qcow2 ;;
	ours) $A img convert -O qcow2 src.raw rw.qcow2 ;;
	esac
	t_run "write into a $kind qcow2" sh -c "$A img write rw.qcow2 777777 200000 < patch.bin"
	t_run "qemu-img check clean after writing ($kind)" qemu-img check -q rw.qcow2
	t_run "qemu-img sees the written bytes ($kind)" qemu-img compare -q want.raw rw.qcow2
done
rm -f ext.qcow2
qemu-img create -q -f qcow2 -o extended_l2=on ext.qcow2 1M
t_fail "extended L2 images are read-only" 1 sh -c "printf x | $A img write ext.qcow2 0 1"

# Round trips raw -> qcow2 -> qcow2 (compressed) -> raw.
rm -f rt1.qcow2 rt2.qcow2 rt.raw
t_run "round trip 1" $A img convert -O qcow2 src.raw rt1.qcow2
t_run "round trip 2" $A img convert -c -O qcow2 rt1.qcow2 rt2.qcow2
t_run "round trip 3" $A img convert -O raw rt2.qcow2 rt.raw
t_check "round trip content" cmp -s src.raw rt.raw
if $A img create -f avd probe.avd 1M >/dev/null 2>&1; then
	rm -f rt.avd rt3.qcow2
	t_run "qcow2 -> avd" $A img convert -O avd rt2.qcow2 rt.avd
	t_run "avd -> qcow2" $A img convert -O qcow2 rt.avd rt3.qcow2
	t_run "avd round trip identical" qemu-img compare -q src.raw rt3.qcow2
fi

# compare: identical, different (first offset), shorter-but-zero-tail.
cp src.raw diff.raw
printf 'X' | dd of=diff.raw bs=1 seek=5000000 conv=notrunc 2>/dev/null
t_run "compare identical" $A img compare src.raw w.qcow2
t_fail "compare different" 1 $A img compare w.qcow2 diff.raw
t_check "compare prints the first differing offset" \
	sh -c "$A img compare w.qcow2 diff.raw | grep -q 'offset 5000000'"
cp src.raw longer.raw; truncate -s 20M longer.raw
t_run "longer with zero tail equals" $A img compare src.raw longer.raw
printf 'Y' | dd of=longer.raw bs=1 seek=15000000 conv=notrunc 2>/dev/null
t_fail "longer with data tail differs" 1 $A img compare longer.raw src.raw
t_fail "compare usage" 2 $A img compare src.raw
t_fail "compare missing file" 2 $A img compare src.raw nonexistent.img

# convert's own rules.
t_fail "refuse to overwrite" 1 $A img convert -O qcow2 src.raw w.qcow2
t_run "overwrite with --force" $A img convert --force -O qcow2 src.raw w.qcow2
t_fail "missing -O is a usage error" 2 $A img convert src.raw x.qcow2
t_fail "unknown -o key is a usage error" 2 $A img convert -O qcow2 -o frob=1 src.raw x.qcow2
t_fail "bad cluster size fails" 1 $A img convert -O qcow2 -o cluster_size=3000 src.raw x.qcow2
t_check "no temporary files left behind" sh -c "! ls | grep -q '\.tmp-'"
t_check "failed convert leaves no destination" [ ! -e x.qcow2 ]
head -c 1000 /dev/urandom > trunc.qcow2
qemu-img convert -O qcow2 src.raw good.qcow2
head -c 300000 good.qcow2 > trunc.qcow2
t_fail "truncated qcow2 fails cleanly" 1 $A img convert -O raw trunc.qcow2 trunc.raw
t_check "no destination after a failed read" [ ! -e trunc.raw ]
# A write that fails half way (here the file size limit; a full disk
# alike): the message names the destination, not the temporary file
# that no longer exists, and nothing is left.
sh -c 'trap "" XFSZ; ulimit -f 256; exec "$1" img convert -O qcow2 src.raw big.qcow2' - "$A" >efbig.out 2>&1
t_check "a failed write names the destination" grep -q '^appliance: big.qcow2: write at [0-9]*: File too large' efbig.out
t_check "  ... and leaves nothing" sh -c "! ls | grep -q 'big.qcow2'"
# A convert killed outright: the image it was writing has no name yet
# (O_TMPFILE), so nothing of it stays.  Killed once the unnamed file is
# open: /proc shows it as DIR/#INODE (deleted).
head -c 256M /dev/urandom > slow.raw
"$A" img convert -O qcow2 -c slow.raw killed.qcow2 &
pid=$!
for i in $(seq 500); do
	ls -l /proc/$pid/fd 2>/dev/null | grep -q "$PWD/#.* (deleted)" && break
	sleep 0.01
done
kill -KILL $pid; wait $pid 2>/dev/null
t_check "a convert killed midway leaves nothing behind" sh -c "[ \"\$(ls | grep killed)\" = '' ]"
rm -f slow.raw
t_done
