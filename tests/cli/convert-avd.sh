# convert-avd.sh - `img convert` into AVD (compressed and not) and into raw
# through the streaming writers' shared I/O path (writer.c: gathered
# appends, recycled buffers, early writeback; raw chunks that point into
# the reader's buffer instead of a copy).
. "$TOP/tests/cli/lib.sh"
A=$APPLIANCE

# 20 MiB with a partial last cluster: incompressible, zero, text and
# incompressible again, so compressed payloads and raw clusters alternate
# (raw clusters are cluster aligned after packed payloads), and more than
# the writer's 8 MiB writeback step is written.
head -c 6M /dev/urandom > src.raw
head -c 3M /dev/zero >> src.raw
yes "appliance avd convert test line" | head -c 5M >> src.raw
head -c 300K /dev/urandom >> src.raw
yes "tail" | head -c 5M >> src.raw
truncate -s 20971000 src.raw
for i in 1 2 3 4 5 6 7 8; do
	# Short random runs inside the text: clusters that compress well
	# next to clusters that do not.
	head -c 70000 /dev/urandom | dd of=src.raw bs=1 seek=$((9437184 + i * 400000)) conv=notrunc 2>/dev/null
done

t_run "raw -> avd -c" $A img convert -O avd -c src.raw c.avd
t_run "compressed avd is identical" $A img compare src.raw c.avd
t_check "compressed avd reads back byte for byte" sh -c "$A img read c.avd 0 20971000 | cmp -s - src.raw"
t_run "compressed avd checks clean" $A img check c.avd
t_check "compressed output defaults to 128 KiB clusters" sh -c "$A img info --json c.avd | grep -q '\"cluster-size\": 131072'"
t_check "compressed output is smaller than the source" sh -c "[ \$(stat -c %s c.avd) -lt 16000000 ]"
t_check "map shows compressed clusters" sh -c "$A img map c.avd | grep -q compressed"

t_run "avd -c with 64 KiB clusters asked for" $A img convert -O avd -c -o cluster_size=65536 src.raw c64.avd
t_check "the asked cluster size is kept" sh -c "$A img info --json c64.avd | grep -q '\"cluster-size\": 65536'"
t_run "64 KiB compressed avd is identical" $A img compare src.raw c64.avd
t_run "64 KiB compressed avd checks clean" $A img check c64.avd

t_run "raw -> avd" $A img convert -O avd src.raw u.avd
t_check "uncompressed output keeps 64 KiB clusters" sh -c "$A img info --json u.avd | grep -q '\"cluster-size\": 65536'"
t_run "uncompressed avd is identical" $A img compare src.raw u.avd
t_run "uncompressed avd checks clean" $A img check u.avd

# One worker and several: the order of puts and the recycling of buffers
# must not depend on how many threads encode.
for j in 1 3; do
	t_run "raw -> avd -c -j $j" $A img convert -j $j -O avd -c src.raw cj$j.avd
	t_run "avd -c -j $j is identical" $A img compare src.raw cj$j.avd
	t_run "avd -c -j $j -> raw" $A img convert -j $j -O raw cj$j.avd back$j.raw
	t_check "avd -c -j $j -> raw is the source" cmp -s src.raw back$j.raw
done

# raw output: chunks point into the read buffers; content and holes.
t_run "compressed avd -> raw" $A img convert -O raw c.avd r.raw
t_check "raw output is the source" cmp -s src.raw r.raw
t_check "raw output keeps the zero run a hole" sh -c "[ \$(stat -c %b r.raw) -lt \$(( (20971000 - 3145728) / 512 + 2048 )) ]"
# Zero blocks inside a 1 MiB chunk stay holes too: 64 KiB of data, then
# 64 KiB of zeros, eight times (512 KiB of data in 1 MiB).
: > holes.raw
for i in 1 2 3 4 5 6 7 8; do
	head -c 65536 /dev/urandom >> holes.raw
	head -c 65536 /dev/zero >> holes.raw
done
t_run "raw with zero blocks -> raw" $A img convert -O raw holes.raw holes-out.raw
t_check "zero blocks copied as zeros" cmp -s holes.raw holes-out.raw
t_check "zero blocks inside a chunk are holes" sh -c "[ \$(stat -c %b holes-out.raw) -le \$(( 600 * 1024 / 512 )) ]"
if command -v qemu-img >/dev/null 2>&1; then
	qemu-img convert -f raw -O qcow2 src.raw q.qcow2
	t_run "qemu qcow2 -> raw" $A img convert -O raw q.qcow2 rq.raw
	# qemu rounds the size up to 512 bytes: the source plus a zero tail.
	t_check "qcow2 -> raw is the source" cmp -s -n 20971000 src.raw rq.raw
	t_check "qcow2 -> raw has qemu's size" sh -c "[ \$(stat -c %s rq.raw) = 20971008 ]"
	t_run "raw -> qcow2 -c zstd" $A img convert -O qcow2 -c -o compression_type=zstd src.raw qz.qcow2
	t_run "qemu-img checks our zstd qcow2" qemu-img check -q qz.qcow2
	t_run "qemu-img finds our zstd qcow2 identical" qemu-img compare -q src.raw qz.qcow2
fi
t_done
