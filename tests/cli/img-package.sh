#!/bin/sh
# tests/cli/img-package.sh - `appliance img` commands given an appliance
# package: they open its disk, read-only and verified cluster by cluster,
# only once the signature is trusted (or by --key's key; --insecure opens
# any, with a warning); a tampered cluster stops them; an explicit -f
# still opens the file as that format.
. "$(dirname "$0")/lib.sh"
. "$TOP/tests/cli/lib-pkg.sh"
A=$APPLIANCE
export APPLIANCE_CACHE=$T_TMP/cache APPLIANCE_TRUST_DIR=$T_TMP/trust \
	APPLIANCE_SYSTEM_TRUST_DIR=$T_TMP/systrust

$A key generate --public k.pub --secret k.key --no-passphrase >/dev/null
mkbuild b 1 300000
$A pack b -o t.appliance --sign k.key >/dev/null
$A img convert -O raw b/disk.avd disk.raw

t_check "an untrusted package's disk is not opened" sh -c "! $A img info t.appliance 2>err && grep -q 'not in the trust store' err && grep -q -- '--insecure opens it anyway' err"
# --key K.pub and --insecure, as run and pull take them, on each of the
# img commands' option parsers (info, convert, compare, serve, and the
# mount helper's attach).
$A key generate --public o.pub --secret o.key --no-passphrase >/dev/null
t_check "img info --key K.pub opens it, verified by that key" sh -c "$A img info --key k.pub t.appliance | grep -qx 'file format: avd (verified)'"
t_check "  ... not by another key" sh -c "! $A img info --key o.pub t.appliance 2>err && grep -q 'not by the given key' err"
t_check "  ... nor with a key file that is not there" sh -c "! $A img info --key none.pub t.appliance 2>err && grep -q 'none.pub' err"
t_run "img compare --key K.pub" $A img compare --key k.pub t.appliance b/disk.avd
t_check "img serve --key checks it too (another key: refused)" sh -c "! timeout 10 $A img serve --read-only --key o.pub --socket ks.sock t.appliance 2>err && grep -q 'not by the given key' err"
t_check "img convert --insecure opens it, with a warning naming why" sh -c "$A img convert --insecure -O raw t.appliance ins.raw 2>err && grep -q 'not in the trust store.*; opened anyway (--insecure)' err && cmp -s ins.raw disk.raw"
$A pack b -o unsigned.appliance >/dev/null
t_check "an unsigned package opens only with --insecure" sh -c "! $A img info unsigned.appliance 2>err && grep -q 'not signed' err && $A img info --insecure unsigned.appliance 2>/dev/null | grep -qx 'file format: avd (verified)'"
t_run "img attach --key K.pub (the mount helper)" $A img attach --key k.pub --background t.appliance kview.raw
t_check "  ... byte for byte" cmp -s kview.raw disk.raw
$A img unmount kview.raw
$A trust add k.pub >/dev/null
t_check "img info shows the disk, verified" sh -c "$A img info t.appliance | grep -qx 'file format: avd (verified)'"
t_check "  ... and its virtual size" sh -c "$A img info t.appliance | grep -q '(4194304 bytes)'"
t_run "img convert exports the disk" $A img convert -O raw t.appliance out.raw
t_check "  ... byte for byte" cmp -s out.raw disk.raw
t_run "img compare: the package's disk equals its AVD" $A img compare t.appliance b/disk.avd
t_check "img read reads through the view" sh -c "$A img read t.appliance 65536 300000 | cmp -s -i 0:65536 -n 300000 - disk.raw"
t_run "img check reads and verifies every cluster" $A img check t.appliance
t_check "img write is refused (read-only)" sh -c "! $A img write t.appliance 0 4 </dev/zero 2>err && grep -q 'read-only' err"
t_check "img serve without --read-only is refused" sh -c "! timeout 10 $A img serve --socket s.sock t.appliance 2>err && grep -q 'read-only' err"
$A img serve --read-only --socket "$T_TMP/s.sock" t.appliance 2>/dev/null & srv=$!
for i in $(seq 100); do [ -S "$T_TMP/s.sock" ] && break; sleep 0.05; done
t_run "img serve --read-only serves the verified disk (qemu-img compare)" \
	qemu-img compare -f raw disk.raw "nbd+unix:///?socket=$T_TMP/s.sock"
kill $srv; wait $srv 2>/dev/null
t_run "img attach shows the verified disk as a file" $A img attach --background t.appliance view.raw
t_check "  ... byte for byte" cmp -s view.raw disk.raw
t_run "  ... and unmounts" $A img unmount view.raw
t_check "img attach --rw is refused" sh -c "! $A img attach --rw --background t.appliance v2.raw 2>err && grep -q 'read-only' err"
t_check "-f raw opens the file itself" sh -c "$A img info -f raw t.appliance | grep -qx 'file format: raw'"

# One byte changed inside the disk's data (virtual 65536.. is at file
# offset 196608 of the AVD here; found with img map).
doff=$(python3 -c "
import tarfile
print([m.offset_data for m in tarfile.open('t.appliance') if m.name == 'disk.avd'][0])")
foff=$($A img map b/disk.avd | awk '$3 == "data" { print $4; exit }')
cp t.appliance bad.appliance
flip_byte bad.appliance $((doff + foff + 70000))
t_check "a tampered cluster stops img convert" sh -c "! $A img convert -O raw bad.appliance bad.raw 2>err && grep -q 'cluster 2 (bytes 131072+65536) fails verification' err"
t_check "  ... leaving no output file" test ! -e bad.raw
t_check "  ... and img compare reports an error (2)" sh -c "$A img compare bad.appliance b/disk.avd 2>/dev/null; test \$? = 2"
t_check "  ... and img check counts it (exit 1), naming the cluster" sh -c "$A img check bad.appliance >out; test \$? = 1 && grep -q '1 checksum errors' out && grep -q 'cluster 2 (bytes 131072' out"
$A img attach --background bad.appliance bview.raw
# The bytes before the tampered one come through (clusters 0 and 1 whole;
# of cluster 2 at most the 4 KiB part before it, checked by its part CV),
# the tampered one never.
t_check "  ... and reading it through img attach fails at that byte" sh -c "! dd if=bview.raw of=/dev/null bs=64k 2>/dev/null && n=\$(dd if=bview.raw bs=64k 2>/dev/null | wc -c) && [ \$n -ge 131072 ] && [ \$n -le 135168 ]"
$A img unmount bview.raw
t_run "  ... while untouched clusters still read" sh -c "$A img read bad.appliance 65536 65536 >/dev/null"
cp unsigned.appliance ubad.appliance
flip_byte ubad.appliance $((doff + foff + 70000))
t_check "--insecure does not let a tampered cluster through" sh -c "! $A img convert --insecure -O raw ubad.appliance ubad.raw 2>err && grep -q 'cluster 2 (bytes 131072+65536) fails verification' err"

# Changed while being served (appliances/FORMAT.md "Checked once"): a
# part read and checked before is not hashed again, but the write (by
# another process, held by the server's read lease only until the server
# lets go) makes the next read of it check it, and fail.  Each read of
# the part is followed by eight far away, so that the view takes the
# next one for a random read (checked by its part, from the file), not
# for a stream it serves from its cache of verified clusters.
cp t.appliance live.appliance
$A img serve --read-only --socket "$T_TMP/l.sock" live.appliance 2>/dev/null & srv=$!
for i in $(seq 100); do [ -S "$T_TMP/l.sock" ] && break; sleep 0.05; done
LURI="nbd+unix:///?socket=$T_TMP/l.sock"
cat >part-then-far.sh <<EOF
qemu-io -r -f raw -c 'read 135168 4k' -c 'read 1M 4k' -c 'read 1280k 4k' \\
	-c 'read 1536k 4k' -c 'read 1792k 4k' -c 'read 2M 4k' \\
	-c 'read 2304k 4k' -c 'read 2560k 4k' -c 'read 2816k 4k' '$LURI'
EOF
t_check "served: a part of cluster 2 reads, twice" sh -c "for i in 1 2; do sh part-then-far.sh | grep -q 'read 4096/4096 bytes at offset 135168' || exit 1; done"
at=$((doff + foff + 70000))
b=$(od -An -tu1 -j "$at" -N1 live.appliance | tr -d ' ')
printf "\\$(printf '%03o' $((255 - b)))" >flip.bin
t_run "  ... changing it under the server is not held up" timeout 10 dd if=flip.bin of=live.appliance bs=1 seek="$at" conv=notrunc status=none
t_check "  ... and the next read of it fails" sh -c "qemu-io -r -f raw -c 'read 135168 4k' '$LURI' 2>&1 | grep -q 'read failed'"
kill $srv; wait $srv 2>/dev/null

# disk.subtrees (the optional part CVs) damaged: not hashed up front, so
# the package still opens and reads the genuine bytes (those clusters are
# checked whole); verify --full names the member.
soff=$(python3 -c "
import tarfile
print([m.offset_data for m in tarfile.open('t.appliance') if m.name == 'disk.subtrees'][0])")
cp t.appliance sub.appliance
flip_byte sub.appliance $((soff + 2 * 512 + 3))
t_check "damaged part CVs: the disk still reads, byte for byte" sh -c "$A img read sub.appliance 131072 8192 | cmp -s -i 0:131072 -n 8192 - disk.raw"
t_run "  ... and verify (without --full) passes" $A verify sub.appliance
t_check "  ... but verify --full names disk.subtrees" sh -c "! $A verify --full sub.appliance 2>err && grep -q \"member 'disk.subtrees' does not match\" err"
t_done
