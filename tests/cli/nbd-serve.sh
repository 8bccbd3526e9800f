# nbd-serve.sh - `appliance img serve` against real NBD clients (qemu-img,
# nbdinfo, nbdcopy, qemu-io, fio) and a hostile one.
. "$TOP/tests/cli/lib.sh"
A=$APPLIANCE
SOCK=$T_TMP/nbd.sock
URI="nbd+unix:///?socket=$SOCK"

start_server() { # IMAGE [ARGS...]
	rm -f "$SOCK"
	"$A" img serve --socket "$SOCK" "$@" 2>server.log &
	SERVER=$!
	for i in $(seq 100); do [ -S "$SOCK" ] && return 0; sleep 0.05; done
	echo "server did not start"; cat server.log; return 1
}
stop_server() {
	kill -TERM "$SERVER"; wait "$SERVER"; SERVER_RC=$?
}

for fmt in raw avd qcow2; do
	# Serve read-write only what this build can write.
	if [ "$fmt" != raw ] && ! { $A img create -f $fmt probe.$fmt 1M &&
	     printf x | $A img write probe.$fmt 0 1; } >/dev/null 2>&1; then
		echo "format $fmt is not writable in this build: skipped"
		rm -f probe.$fmt
		continue
	fi
	rm -f probe.$fmt
	# A source with data, zeros and holes.
	qemu-img create -q -f raw src.raw 64M
	qemu-io -f raw -c "write -P 0x5a 1M 3M" -c "write -P 0x11 40M 64k" src.raw >/dev/null
	$A img create -f $fmt disk.$fmt 64M >/dev/null
	start_server disk.$fmt
	t_run "$fmt: qemu-img info over NBD" qemu-img info "$URI"
	t_run "$fmt: qemu-img convert into the export" qemu-img convert -n -f raw -O raw src.raw "$URI"
	t_run "$fmt: qemu-img compare over NBD" qemu-img compare -f raw src.raw "$URI"
	nbdinfo --map "$URI" > map.txt 2>&1
	t_check "$fmt: nbdinfo --map shows data at 1M" grep -Eq '^ +1048576 +3145728 +0 +data' map.txt
	t_check "$fmt: nbdinfo --map shows the hole after it" grep -Eq '^ +4194304 +[0-9]+ +3 +hole,zero' map.txt
	t_run "$fmt: nbdcopy out" nbdcopy "$URI" copy.raw
	t_run "$fmt: nbdcopy copy is identical" cmp copy.raw src.raw
	t_run "$fmt: qemu-io write-zeroes and trim" qemu-io -f raw -c "write -z 1M 64k" -c "discard 2M 1M" "$URI"
	t_check "$fmt: zeroed range reads zero" sh -c "qemu-io -f raw -c 'read -P 0 1M 64k' '$URI' | grep -q 'read 65536'"
	# Concurrent readers.
	( for i in 1 2 3 4; do nbdcopy "$URI" c$i.raw & done; wait )
	t_check "$fmt: four concurrent readers got the same bytes" sh -c 'cmp c1.raw c2.raw && cmp c1.raw c3.raw && cmp c1.raw c4.raw'
	stop_server
	t_check "$fmt: SIGTERM stops the server cleanly" [ "$SERVER_RC" = 0 ]
	$A img read disk.$fmt 0 64M > final.raw
	t_run "$fmt: what NBD clients wrote is in the image after shutdown" cmp final.raw c1.raw
	# Consistent after serving (space freed by trims may still show as
	# leaked clusters until reused or compacted).
	[ "$fmt" = raw ] || t_check "$fmt: image has no corruption after serving" sh -c \
		"$A img check disk.$fmt | grep -Eq '^No errors|^0 corruptions, [0-9]+ leaked clusters, 0 checksum errors'"
	rm -f disk.$fmt src.raw copy.raw c?.raw final.raw
done

# Read-only export refuses writes.
qemu-img create -q -f raw ro.raw 8M
start_server ro.raw --read-only
t_check "read-only export says so" sh -c "nbdinfo '$URI' | grep -q 'is_read_only: true'"
t_fail "write to read-only export fails" 1 qemu-io -f raw -c "write 0 4k" "$URI"
stop_server

# Hostile client.
qemu-img create -q -f raw h.raw 64M
start_server h.raw
python3 "$TOP/tests/cli/nbd_hostile.py" "$SOCK"
t_check "server survived the hostile clients" kill -0 "$SERVER"
stop_server

# A client (a guest) cannot turn a raw export into a qcow2 image that
# names a host file as its backing file: the next server, detecting the
# format, would serve that file's bytes.  Refused unless the format was
# named (-f raw), as qemu does.
echo "the host's secret" > secret.txt
qemu-img create -q -f qcow2 -b "$PWD/secret.txt" -F raw evil.qcow2 64M
head -c 65536 evil.qcow2 > evil.head
qemu-img create -q -f raw guest.raw 64M
start_server guest.raw
qemu-io -f raw -c "write -s evil.head 0 64k" "$URI" > evil.out 2>&1
t_check "a qcow2 header written into a detected raw export is refused" \
	grep -q 'Operation not permitted' evil.out
t_run "  ... the rest of the disk is still writable" qemu-io -f raw -c "write -P 0x33 1M 64k" "$URI"
stop_server
t_check "  ... the image is still raw" sh -c "$A img info guest.raw | grep -q 'file format: raw'"
t_check "  ... and nothing of the host file shows" sh -c \
	"! $A img read guest.raw 0 64M | grep -q 'secret'"
start_server -f raw guest.raw
t_run "named raw (-f raw), the export takes any bytes" qemu-io -f raw -c "write -s evil.head 0 64k" "$URI"
stop_server
rm -f secret.txt evil.qcow2 evil.head evil.out guest.raw

# SIGHUP (the terminal closing) stops it as SIGTERM does: written data
# flushed, the socket removed.
qemu-img create -q -f raw hup.raw 8M
start_server hup.raw
qemu-io -f raw -c "write -P 0x6b 0 64k" "$URI" >/dev/null
kill -HUP "$SERVER"; wait "$SERVER"; SERVER_RC=$?
t_check "SIGHUP stops the server cleanly" [ "$SERVER_RC" = 0 ]
t_check "  ... the socket is gone" [ ! -e "$SOCK" ]
t_check "  ... the write is in the image" sh -c "qemu-io -f raw -c 'read -P 0x6b 0 64k' hup.raw | grep -q 'read 65536'"

# A server killed outright leaves its socket file; the next one on that
# path takes it over.  A live server's socket, or a file that is not a
# socket, is never taken.
start_server hup.raw
kill -KILL "$SERVER"; wait "$SERVER" 2>/dev/null
t_check "a killed server leaves its socket" [ -S "$SOCK" ]
# (not start_server, which removes the socket first)
"$A" img serve --socket "$SOCK" hup.raw 2>server.log &
SERVER=$!
for i in $(seq 100); do nbdinfo "$URI" >/dev/null 2>&1 && break; sleep 0.05; done
t_check "  ... which the next server takes over" kill -0 "$SERVER"
t_check "  ... and serves" sh -c "nbdinfo '$URI' | grep -q 'export-size: 8388608'"
t_fail "a second server on a live socket is refused" 1 timeout 10 $A img serve --socket "$SOCK" hup.raw
t_check "  ... saying so" sh -c "timeout 10 $A img serve --socket '$SOCK' hup.raw 2>&1 | grep -q 'another server is listening on it'"
t_check "  ... and the first still serves" sh -c "nbdinfo '$URI' | grep -q 'export-size: 8388608'"
stop_server
echo precious > notasocket
t_fail "a path that is not a socket is refused" 1 timeout 10 $A img serve --socket notasocket hup.raw
t_check "  ... and left as it was" [ "$(cat notasocket)" = precious ]

# fio's nbd engine, briefly (the benchmark runs it for real).
if fio --enghelp 2>/dev/null | grep -qw nbd; then
	qemu-img create -q -f raw f.raw 64M
	start_server f.raw
	t_run "fio nbd engine, random 4k writes+reads with verify" fio --name=t --ioengine=nbd --uri="$URI" \
		--rw=randwrite --bs=4k --size=16M --iodepth=16 --verify=crc32c --do_verify=1 --output=/dev/null
	stop_server
fi
t_done
