#!/usr/bin/env python3
"""nbd_hostile.py SOCKET - a misbehaving NBD client.

Negotiates like a real client, then sends malformed requests one after the
other and checks each gets a protocol error while the connection (and the
server) lives on.  Prints PASS:/FAIL: lines for tests/cli/lib.sh's counter.
"""
import socket
import struct
import sys

SOCK = sys.argv[1]
fails = 0


def report(ok, name):
    global fails
    print(("PASS: " if ok else "FAIL: ") + name)
    if not ok:
        fails += 1


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        d = s.recv(n - len(b))
        if not d:
            raise EOFError("server closed the connection")
        b += d
    return b


def connect(structured=False):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(SOCK)
    hello = recv_exact(s, 18)
    assert hello[:16] == b"NBDMAGICIHAVEOPT", hello
    s.sendall(struct.pack(">I", 3))  # fixed newstyle + no zeroes
    if structured:
        s.sendall(struct.pack(">QII", 0x49484156454F5054, 8, 0))
        magic, opt, rtype, ln = struct.unpack(">QIII", recv_exact(s, 20))
        assert rtype == 1, rtype
    # NBD_OPT_GO for the default export, no info requests
    s.sendall(struct.pack(">QII", 0x49484156454F5054, 7, 6) + struct.pack(">IH", 0, 0))
    size = None
    while True:
        magic, opt, rtype, ln = struct.unpack(">QIII", recv_exact(s, 20))
        data = recv_exact(s, ln)
        if rtype == 3 and struct.unpack(">H", data[:2])[0] == 0:
            size = struct.unpack(">Q", data[2:10])[0]
        if rtype == 1:
            break
        assert rtype < 0x80000000, hex(rtype)
    return s, size


def request(s, cmd, off, length, flags=0, cookie=1, payload=b""):
    s.sendall(struct.pack(">IHHQQI", 0x25609513, flags, cmd, cookie, off, length) + payload)


def simple_reply(s):
    magic, err, cookie = struct.unpack(">IIQ", recv_exact(s, 16))
    assert magic == 0x67446698, hex(magic)
    return err, cookie


s, size = connect()
report(size == 64 << 20, "negotiated size %s" % size)

request(s, 0, size - 10, 100, cookie=2)  # read past the end
err, c = simple_reply(s)
report(err == 22 and c == 2, "read past the end -> EINVAL (got %d)" % err)

request(s, 0, 1 << 63, 4096, cookie=3)  # absurd offset
err, c = simple_reply(s)
report(err == 22, "read at 2^63 -> EINVAL (got %d)" % err)

request(s, 0, 0, 64 << 20, cookie=4)  # read larger than the max payload
err, c = simple_reply(s)
report(err == 75, "oversized read -> EOVERFLOW (got %d)" % err)

request(s, 1, 0, 33 << 20, cookie=5, payload=b"\0" * (33 << 20))  # oversized write
err, c = simple_reply(s)
report(err == 75 and c == 5, "oversized write -> EOVERFLOW, payload skipped (got %d)" % err)

request(s, 1, size - 2, 4, cookie=6, payload=b"abcd")  # write past the end
err, c = simple_reply(s)
report(err == 28, "write past the end -> ENOSPC (got %d)" % err)

request(s, 99, 0, 0, cookie=7)  # unknown command
err, c = simple_reply(s)
report(err == 22 and c == 7, "unknown command -> EINVAL (got %d)" % err)

request(s, 7, 0, 4096, cookie=8)  # block status without a meta context
err, c = simple_reply(s)
report(err == 22, "block status without context -> EINVAL (got %d)" % err)

request(s, 1, 4096, 5, cookie=9, payload=b"alive")  # still serving?
err, c = simple_reply(s)
request(s, 0, 4096, 5, cookie=10)
err2, c2 = simple_reply(s)
data = recv_exact(s, 5)
report(err == 0 and err2 == 0 and data == b"alive", "connection still serves after the errors")

# A client that disconnects in the middle of a write payload.
s2, _ = connect()
request(s2, 1, 0, 1 << 20, cookie=11, payload=b"x" * 1000)
s2.close()
# One that sends garbage instead of a request header.
s3, _ = connect()
s3.sendall(b"\xde\xad\xbe\xef" * 7)
s3.close()
# One that hangs up during negotiation.
s4 = socket.socket(socket.AF_UNIX)
s4.connect(SOCK)
s4.close()

s5, _ = connect(structured=True)
request(s5, 0, size, 1, cookie=12)
hdr = recv_exact(s5, 20)
magic, flags, typ, cookie, ln = struct.unpack(">IHHQI", hdr)
payload = recv_exact(s5, ln)
report(magic == 0x668E33EF and typ == 0x8001 and flags & 1 and
       struct.unpack(">I", payload[:4])[0] == 22,
       "structured error chunk for a read past the end")
s5.close()

s6, _ = connect()
request(s6, 0, 4096, 5, cookie=13)
err, c = simple_reply(s6)
report(err == 0 and recv_exact(s6, 5) == b"alive", "server lives on after hostile clients")
request(s6, 2, 0, 0)  # NBD_CMD_DISC
s6.close()
s.close()
sys.exit(1 if fails else 0)
