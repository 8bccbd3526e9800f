/*
 * passt.h - user-mode networking for the builtin monitor through passt.
 *
 * passt (Debian's package of the same name) gives a VM a network with
 * no root, no tap and no bridge: it speaks Ethernet frames with the
 * guest over a stream socket (4-byte big-endian length, then the frame:
 * QEMU's "-netdev stream" framing, which runtime/virtio/net-stream.c
 * speaks) and NATs them through ordinary host sockets, forwarding host
 * ports to the guest as asked.  We start one passt per VM on one end of
 * a socketpair and hand the other end to virtio-net.
 */
#ifndef RUNTIME_PASST_H
#define RUNTIME_PASST_H

#include <stdbool.h>
#include <sys/types.h>

struct passt_forward {
	int host_port;    /* on 127.0.0.1 */
	int guest_port;
	bool udp;
};

struct passt {
	pid_t pid;
	int fd;           /* our end of the frame stream */
};

/* Start passt with the given forwards; -errno with vm__error() set. */
int passt__start(const struct passt_forward *fw, int n, struct passt *out);

/* Stop it (SIGTERM) and reap it. */
void passt__stop(struct passt *p);

#endif /* RUNTIME_PASST_H */
