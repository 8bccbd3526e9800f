#!/bin/sh
# fuzz/seeds.sh - make starting inputs for the fuzz targets.
#
#   APPLIANCE=build/appliance sh fuzz/seeds.sh OUTDIR
#
# writes OUTDIR/TARGET/ for each target (image, package, text, nbd,
# virtio, devices): small valid inputs of every format (made by our own writers
# and by qemu-img), so that libFuzzer starts from deep inside each
# parser rather than at its magic number.  Each image seed appears twice: mode byte 0 (detect,
# read-only) and 8 (detect, read-write), AVD and VHD ones also with mode
# bit 4 (checksums recomputed); see fuzz/fuzz-image.c.
set -eu
OUT=$1
APPLIANCE=${APPLIANCE:-build/appliance}
case $APPLIANCE in /*) ;; *) APPLIANCE=$(pwd)/$APPLIANCE ;; esac
TOP=$(cd "$(dirname "$0")/.." && pwd)
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
mkdir -p "$OUT/image" "$OUT/package" "$OUT/text" "$OUT/nbd" "$OUT/virtio" \
	"$OUT/devices"

# Some data at the start, in the middle and at the end of a 1 MiB disk.
data() {
	printf 'appliance fuzz seed %s\n' "$1" | head -c 4096 > "$W/d1"
	"$APPLIANCE" img write "$2" 0 "$(stat -c %s "$W/d1")" < "$W/d1"
	head -c 20000 /dev/urandom | "$APPLIANCE" img write "$2" 300000 20000
	head -c 4096 /dev/zero | tr '\0' 'z' |
		"$APPLIANCE" img write "$2" 1044480 4096
}
"$APPLIANCE" img create -o cluster_size=4096 "$W/plain.avd" 1M >/dev/null
data avd "$W/plain.avd"
"$APPLIANCE" img convert -O avd -c -o cluster_size=4096 "$W/plain.avd" \
	"$W/compressed.avd"
"$APPLIANCE" img create -b "$W/plain.avd" -F avd "$W/overlay.avd" >/dev/null
printf 'overlay' | "$APPLIANCE" img write "$W/overlay.avd" 8192 7
"$APPLIANCE" img create -f qcow2 -o cluster_size=4096 "$W/ours.qcow2" 1M >/dev/null
data qcow2 "$W/ours.qcow2"
"$APPLIANCE" img convert -O raw "$W/plain.avd" "$W/plain.raw"
qemu-img convert -q -f raw -O qcow2 -o cluster_size=4096 "$W/plain.raw" "$W/qemu.qcow2"
qemu-img convert -q -c -f raw -O qcow2 -o cluster_size=4096 "$W/plain.raw" \
	"$W/compressed.qcow2"
qemu-img create -q -f qcow2 -o cluster_size=4096 -b "$W/qemu.qcow2" -F qcow2 \
	"$W/overlay.qcow2"
qemu-img convert -q -f raw -O vmdk "$W/plain.raw" "$W/sparse.vmdk"
qemu-img convert -q -f raw -O vmdk -o subformat=streamOptimized \
	"$W/plain.raw" "$W/stream.vmdk"
qemu-img convert -q -f raw -O vpc "$W/plain.raw" "$W/dynamic.vhd"
qemu-img convert -q -f raw -O vpc -o subformat=fixed "$W/plain.raw" \
	"$W/fixed.vhd"
# seed MODE FILE PREFIX: the mode byte, then the image.  A fixed VHD
# is raw data plus a footer, detected only when named (as in qemu), so
# its seeds name the format (mode 4).
seed() {
	m=$1
	[ "$2" = fixed.vhd ] && m=$((m | 4))
	{ printf "\\$(printf %03o "$m")"; cat "$W/$2"; } > "$OUT/image/$3-$2"
}
for f in plain.avd compressed.avd overlay.avd ours.qcow2 qemu.qcow2 \
	 compressed.qcow2 overlay.qcow2 sparse.vmdk stream.vmdk \
	 dynamic.vhd fixed.vhd; do
	seed 0 "$f" ro; seed 8 "$f" rw
done
# With checksums recomputed by the target (mode bit 4) where they guard
# the header fields.
for f in plain.avd compressed.avd overlay.avd dynamic.vhd fixed.vhd; do
	seed 16 "$f" fix-ro; seed 24 "$f" fix-rw
done
# Converted (mode bit 5) to avd (0), qcow2 (64), vmdk (128), vhd (192).
seed $((32 + 192)) plain.avd convert-vhd
seed $((32 + 64)) compressed.avd convert-qcow2
seed 32 qemu.qcow2 convert-avd
seed $((32 + 128)) compressed.qcow2 convert-vmdk
seed $((32 + 64)) sparse.vmdk convert-qcow2
seed 32 stream.vmdk convert-avd
seed $((32 + 128)) dynamic.vhd convert-vmdk

# A small signed package (the shape tests/cli/lib-pkg.sh builds).
APPLIANCE=$APPLIANCE
. "$TOP/tests/cli/lib-pkg.sh"
mkbuild "$W/b" 1.0 30000 >/dev/null
# Signed by fuzz/fixed.key, the key fuzz-package.c checks against, so
# that the fuzzer's manifests reach the Ed25519 verification (a public
# test key: never trust it).
cp "$TOP/fuzz/fixed.key" "$W/k.key"
"$APPLIANCE" pack "$W/b" --sign "$W/k.key" -o "$OUT/package/blake3.appliance" \
	>/dev/null
"$APPLIANCE" pack "$W/b" --sign "$W/k.key" --leaf-hash sha256 \
	-o "$OUT/package/sha256.appliance" >/dev/null

# Text: selector byte (fuzz/fuzz-text.c), then the text.
text() { { printf "\\$(printf %03o "$1")"; cat "$2"; } > "$OUT/text/$3"; }
text 0 "$W/b/manifest.toml" toml-manifest
for f in "$TOP"/recipes/*/recipe.toml; do
	n=$(basename "$(dirname "$f")")
	text 0 "$f" "toml-$n"
	text 5 "$f" "recipe-$n"
done
mkdir -p "$W/repo"
"$APPLIANCE" publish "$OUT/package/blake3.appliance" --repo "$W/repo" \
	--key "$W/k.key" >/dev/null
for f in "$W"/repo/index*; do
	case $f in
	*.minisig) text 3 "$f" "sig-$(basename "$f")" ;;
	*) text 1 "$f" "index-$(basename "$f")" ;;
	esac
done
text 4 "$W/k.key" seckey
printf "untrusted comment: minisign public key 9044771B9CB29870\nRWRwmLKcG3dEkMpEabFkJrQ36B0KPa78vgWSApOYOzst3Mw06Qt6jtw4\n" > "$W/k.pub"
text 2 "$W/k.pub" pubkey

# NBD client transcripts (fuzz/fuzz-nbd.c): the handshake of a modern
# client, then each kind of request against the 1 MiB export.
python3 - "$OUT/nbd" <<'PY'
import os, struct, sys
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
IHAVEOPT, REQ = 0x49484156454F5054, 0x25609513
def opt(n, data=b""):
    return struct.pack(">QII", IHAVEOPT, n, len(data)) + data
def req(t, off=0, ln=0, flags=0, cookie=1, payload=b""):
    return struct.pack(">IHHQQI", REQ, flags, t, cookie, off, ln) + payload
hello = struct.pack(">I", 3)          # fixed newstyle, no zeroes
meta = struct.pack(">I", 0) + struct.pack(">I", 1) + \
       struct.pack(">I", 15) + b"base:allocation"
go = struct.pack(">IH", 0, 1) + struct.pack(">H", 3)  # info: block size
modern = hello + opt(8) + opt(10, meta) + opt(7, go)
seeds = {
    "list": hello + opt(3) + opt(9, meta) + opt(6, go) + opt(2),
    "export-name": hello + opt(1) + req(0, 0, 4096) + req(2),
    "read-write": modern + req(1, 4096, 512, payload=b"x" * 512) +
                  req(0, 4096, 512, cookie=2) + req(3, cookie=3) + req(2),
    "zero-trim": modern + req(6, 0, 65536) + req(4, 65536, 65536, cookie=2) +
                 req(6, 8192, 4096, flags=2, cookie=3) + req(5, 0, 4096, cookie=4) +
                 req(2),
    "block-status": modern + req(7, 0, 1 << 20) + req(0, 1 << 20, 1, cookie=2) +
                    req(2),
    "bad-request": modern + req(1, 0, 64 << 20) + req(99) + struct.pack(">I", 0),
}
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
PY

# Guest RAM images for fuzz-virtio.c: rings at the fixed places and
# well-formed requests of each device, the starting point for hostile
# ones.
python3 - "$OUT/virtio" <<'PY'
import os, struct, sys
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
BASE, DESC, AVAIL, USED, BUFS = 0x100000, 0, 4096, 8192, 12288
F_NEXT, F_WRITE, F_INDIRECT = 1, 2, 4

def image(chains, mode, qlog=5, indirect=False):
    """chains: lists of (bytes, device_writable)."""
    ram = bytearray(64 * 1024)
    at, d, heads = BUFS, 0, []
    def put(data):
        nonlocal at
        a = at
        ram[a:a + len(data)] = data
        at = (a + len(data) + 15) & ~15
        return a
    for chain in chains:
        descs = []
        for data, writable in chain:
            a = put(data if not writable else bytes(len(data)))
            descs.append((BASE + a, len(data), F_WRITE if writable else 0))
        if indirect:
            table = bytearray()
            for i, (a, ln, fl) in enumerate(descs):
                nx = i + 1 if i + 1 < len(descs) else 0
                table += struct.pack("<QIHH", a, ln,
                                     fl | (F_NEXT if i + 1 < len(descs) else 0), nx)
            t = put(bytes(table))
            struct.pack_into("<QIHH", ram, DESC + 16 * d, BASE + t, len(table),
                             F_INDIRECT, 0)
            heads.append(d)
            d += 1
        else:
            heads.append(d)
            for i, (a, ln, fl) in enumerate(descs):
                last = i + 1 == len(descs)
                struct.pack_into("<QIHH", ram, DESC + 16 * d, a, ln,
                                 fl | (0 if last else F_NEXT), d + 1)
                d += 1
    struct.pack_into("<HH", ram, AVAIL, 0, len(heads))
    for i, h in enumerate(heads):
        struct.pack_into("<H", ram, AVAIL + 4 + 2 * i, h)
    return bytes([mode, qlog]) + bytes(ram)

def blk(t, sector, data=b"", inlen=0, status=1):
    hdr = struct.pack("<IIQ", t, 0, sector)
    c = [(hdr, False)]
    if data:
        c.append((data, False))
    if inlen:
        c.append((bytes(inlen), True))
    c.append((bytes(status), True))
    return c

io = [blk(1, 8, b"w" * 4096), blk(0, 8, inlen=4096), blk(4, 0),
      blk(8, 0, inlen=20),
      blk(11, 0, struct.pack("<QII", 16, 8, 0)),
      blk(13, 0, struct.pack("<QII", 32, 8, 1))]
seeds = {
    "blk": image(io, 0),
    "blk-indirect": image(io, 0 | 4, indirect=True),
    "blk-event-idx-ro": image(io, 0 | 8 | 16),
    "rng": image([[(bytes(64), True)], [(bytes(7), True), (bytes(9), True)]], 1),
    "net": image([[(bytes(12) + b"\xff" * 6 + b"\x02" * 6 + b"\x08\x00" +
                    b"payload" * 8, False)],
                  [(bytes(12), False), (b"\x01" * 60, False)],
                  [(bytes(1526), True)]], 2, indirect=False),
}
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
PY

# Register-level sessions for fuzz-devices.c: a PCI bus scan, the
# legacy devices poked, and for each virtio device the driver's whole
# bring-up (features, a queue, DRIVER_OK), a request in guest RAM and
# the notify, in the target's operation encoding.
python3 - "$OUT/devices" <<'PY'
import os, struct, sys
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
SIZES = {1: 0, 2: 1, 4: 2, 8: 3}

def pio(port, size, value=None):
    op = 0 | (SIZES[size] << 3) | (4 if value is not None else 0)
    b = bytes([op]) + struct.pack("<H", port)
    return b + (value.to_bytes(size, "little") if value is not None else b"")

def mmio(off, size, value=None):
    op = 1 | (SIZES[size] << 3) | (4 if value is not None else 0)
    b = bytes([op]) + off.to_bytes(3, "little")
    return b + (value.to_bytes(size, "little") if value is not None else b"")

def ram(gpa, data):
    data = data + bytes(-len(data) % 8)
    return b"".join(bytes([2]) + (gpa + i).to_bytes(3, "little") +
                    data[i:i + 8] for i in range(0, len(data), 8))

def conf(slot, reg, size=4, value=None):
    a = 0x80000000 | (slot << 11) | (reg & 0xFC)
    return pio(0xCF8, 4, a) + pio(0xCFC + (reg & 3), size, value)

scan = b"".join(conf(s, r) for s in range(5) for r in (0, 8, 0x10, 0x34))
# BAR sizing, as firmware does: all ones, read back, restore.
scan += conf(1, 0x10, 4, 0xFFFFFFFF) + conf(1, 0x10) + conf(1, 0x10, 4, 0xE0000000)
legacy = (pio(0x3F8 + 3, 1, 0x80) + pio(0x3F8, 1, 1) + pio(0x3F8 + 3, 1, 3) +
          pio(0x3F8 + 1, 1, 0xF) + pio(0x3F8, 1, 0x41) + pio(0x3F8 + 5, 1) +
          pio(0x3F8 + 2, 1) + bytes([3, 0x42]) + pio(0x3F8, 1) +
          pio(0x70, 1, 0x0A) + pio(0x71, 1) + pio(0x70, 1, 0x0B) + pio(0x71, 1, 0x02) +
          pio(0x64, 1, 0x20) + pio(0x60, 1) + pio(0x64, 1, 0xAA) + pio(0x60, 1))
for name, data in (("pci-scan", scan), ("legacy", legacy)):
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)

DESC, AVAIL, USED, BUF = 0x10000, 0x11000, 0x12000, 0x13000
def bringup(k, features_lo, queue, qsize, chain):
    bar = 0x4000 * k
    c = lambda reg, size, v: mmio(bar + reg, size, v)
    s = c(0x14, 1, 0) + c(0x14, 1, 1) + c(0x14, 1, 3)
    s += c(0x08, 4, 1) + c(0x0C, 4, 1) + c(0x08, 4, 0) + c(0x0C, 4, features_lo)
    s += c(0x14, 1, 0xB) + mmio(bar + 0x14, 1)
    s += c(0x16, 2, queue) + mmio(bar + 0x18, 2) + c(0x18, 2, qsize)
    s += c(0x1A, 2, 0) + c(0x10, 2, 1)
    s += c(0x20, 4, DESC) + c(0x24, 4, 0) + c(0x28, 4, AVAIL) + c(0x2C, 4, 0)
    s += c(0x30, 4, USED) + c(0x34, 4, 0) + c(0x1C, 2, 1) + c(0x14, 1, 0xF)
    descs, at = b"", BUF
    for i, (data, writable) in enumerate(chain):
        s += ram(at, data)
        flags = (2 if writable else 0) | (1 if i + 1 < len(chain) else 0)
        descs += struct.pack("<QIHH", at, len(data), flags, i + 1)
        at += (len(data) + 15) & ~15
    s += ram(DESC, descs) + ram(AVAIL, struct.pack("<HHH", 0, 1, 0))
    s += mmio(bar + 0x3000 + 4 * queue, 2, queue)
    s += mmio(bar + 0x1000, 1) + mmio(bar + 0x2000, 8) + mmio(bar + 0x2000, 4)
    return s

blk_read = [(struct.pack("<IIQ", 0, 0, 0), False), (bytes(512), True), (bytes(1), True)]
blk_write = [(struct.pack("<IIQ", 1, 0, 1), False), (b"w" * 512, False), (bytes(1), True)]
rng = [(bytes(64), True)]
net_tx = [(bytes(12) + b"\xff" * 6 + b"\x02" * 6 + b"\x08\x00" + bytes(46), False)]
net_rx = [(bytes(1526), True)]
for name, data in (("blk-read", bringup(0, 0, 0, 8, blk_read)),
                   ("blk-write-indirect-eventidx", bringup(0, 3 << 28, 0, 8, blk_write)),
                   ("rng", bringup(1, 0, 0, 4, rng)),
                   ("net-tx", bringup(2, 0, 1, 8, net_tx)),
                   ("net-rx", bringup(2, 0, 0, 8, net_rx))):
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
PY
