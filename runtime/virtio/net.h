/*
 * net.h - virtio-net (virtio 1.2, 5.1) and its packet backends.
 *
 * The device has one receive queue (0) and one transmit queue (1), no
 * control queue, no offloads, no mergeable receive buffers: every frame
 * travels whole in one descriptor chain behind the 12-byte virtio 1.x
 * header.  It offers VIRTIO_NET_F_MAC (the MAC in config space),
 * VIRTIO_NET_F_STATUS (link always up) and VIRTIO_NET_F_MTU.
 *
 * The MTU matters with passt: its DHCP server offers a 65520-byte MTU, and
 * a Linux guest that takes it while posting 1518-byte receive buffers (no
 * mergeable buffers, no F_MTU above 1500) drops every large frame.  With
 * F_MTU the guest cannot raise the MTU past what the device says, and
 * with an MTU above 1500 Linux posts 64 KiB receive chains instead.
 *
 * Transmit runs on the thread that rang the doorbell and never blocks
 * there: when the backend is full (the peer stopped reading), the device
 * keeps the frame it could not send and the transmit queue waits, and
 * its own thread resumes transmit when the backend drains (backpressure
 * on the guest, as a real NIC's full ring, never a vCPU stuck in the
 * peer's hands).  Receive runs on that same thread, which waits for the
 * backend; when the guest has no receive buffer posted, it stops reading
 * the backend until the guest posts one (backpressure instead of
 * dropping), and frames arriving while the driver is not up are dropped
 * (a cable not plugged).
 *
 * A backend moves whole Ethernet frames.  Two are provided: "stream"
 * speaks the framing of QEMU's -netdev stream and passt/pasta (each frame
 * a 4-byte big-endian length followed by that many bytes, over a
 * connected SOCK_STREAM socket, usually passt's unix socket), and "tap"
 * reads and writes a Linux tap interface.
 */
#ifndef RUNTIME_VIRTIO_NET_H
#define RUNTIME_VIRTIO_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "runtime/virtio/virtio.h"

/* Largest frame either side may send: the 16-bit IP total length plus an
 * Ethernet header with a VLAN tag, which is what passt allows too. */
#define NET_MAX_FRAME 65535u
#define VIRTIO_NET_HDR_LEN 12

struct net_backend;

struct net_backend_ops {
	/* Send one frame of `len` bytes gathered from iov, without
	 * blocking:
	 *   0        sent, all of it
	 *   1        taken, but part of it is still queued in the backend:
	 *            call flush() once poll_fd polls writable
	 *   -EAGAIN  the backend is full and did not take the frame: send
	 *            it again once poll_fd polls writable
	 *   -errno   the frame is lost (the backend may live on) */
	int (*send)(struct net_backend *be, const struct iovec *iov, int n,
		    size_t len);
	/* Write what send() left queued: 0 all of it, 1 some still queued,
	 * -errno the backend failed and the rest is lost.  NULL for a
	 * backend whose send() takes frames whole or not at all. */
	int (*flush)(struct net_backend *be);
	/* Receive one frame into buf (NET_MAX_FRAME bytes), without
	 * blocking: > 0 its length, 0 nothing complete yet, -errno the
	 * backend is finished (peer closed, or it broke the framing). */
	ssize_t (*recv)(struct net_backend *be, void *buf);
	/* A descriptor that polls readable when recv may have progress, and
	 * writable when send or flush may. */
	int (*poll_fd)(struct net_backend *be);
	void (*free)(struct net_backend *be);
};

struct net_backend {
	const struct net_backend_ops *ops;
	const char *name;
};

/* Stream backend on a connected SOCK_STREAM socket; takes ownership of
 * fd (closed by free, also on failure). */
int net_stream__new(int fd, struct net_backend **out);
/* Connect to a unix socket (passt's --socket path) and wrap it. */
int net_stream__connect(const char *path, struct net_backend **out);

/* Tap backend (net-tap.c): attach to the tap interface `ifname` through
 * /dev/net/tun (IFF_TAP | IFF_NO_PI), creating it if it does not exist
 * and we may.  Plain Ethernet frames, one per read/write. */
int net_tap__open(const char *ifname, struct net_backend **out);
/* Whether `ifname` is a name we accept for a tap: 1 to 15 characters of
 * [A-Za-z0-9_.-] (no separators that could reach a QEMU option). */
bool net_tap__valid_name(const char *ifname);

struct virtio_net_opts {
	uint8_t mac[6];         /* all zero: a random locally administered
				   unicast address */
	uint16_t queue_size;    /* 0: VIRTQ_MAX_SIZE */
	uint16_t mtu;           /* 0: 1500; at most NET_MAX_FRAME - 14 */
};

/* A virtio-net device on `be` (ownership passes to the device, also on
 * failure). */
int virtio_net__new(struct net_backend *be, const struct virtio_net_opts *o,
		    const struct guest_mem *mem, struct virtio_dev **out);

struct virtio_net_stats {
	uint64_t tx_frames, tx_dropped;    /* malformed/oversized or send
					      failure */
	uint64_t rx_frames, rx_dropped;    /* driver not up or buffer too
					      small */
	int backend_dead;                  /* recv reported an error */
};
void virtio_net__stats(struct virtio_dev *vdev, struct virtio_net_stats *st);

#endif /* RUNTIME_VIRTIO_NET_H */
