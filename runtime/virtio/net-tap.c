/*
 * net-tap.c - frames to and from a Linux tap interface (see net.h).
 *
 * /dev/net/tun with IFF_TAP | IFF_NO_PI: one read() is one whole
 * Ethernet frame, one write() sends one.  No IFF_VNET_HDR: the virtio-net
 * device offers no offloads and strips its 12-byte header before a frame
 * reaches a backend, so the frames here are plain Ethernet.
 *
 * Attaching to a tap that does not exist creates it (needs
 * CAP_NET_ADMIN; it disappears when the monitor exits); a persistent tap
 * made beforehand (`ip tuntap add dev tap0 mode tap user USER`) can be
 * used without privileges.  Bringing the interface up, bridging or
 * addressing it is the host's business, as with QEMU's -netdev tap.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "runtime/virtio/net.h"

struct tap {
	struct net_backend be;   /* first */
	int fd;
	char ifname[IFNAMSIZ];
};

static int tap_send(struct net_backend *be, const struct iovec *iov, int n,
		    size_t len)
{
	struct tap *t = (struct tap *)be;

	if (len == 0 || len > NET_MAX_FRAME || n > VIRTQ_MAX_SEGS)
		return -EMSGSIZE;
	for (;;) {
		/* A tap takes a frame whole or not at all. */
		ssize_t w = writev(t->fd, iov, n);
		if (w >= 0)
			return (size_t)w == len ? 0 : -EIO;
		if (errno == EINTR)
			continue;
		/* EAGAIN (the fd is non-blocking): full, the device sends
		 * it again later.  EIO while the interface is down: the
		 * frame is lost, the backend lives on. */
		return -errno;
	}
}

static ssize_t tap_recv(struct net_backend *be, void *buf)
{
	struct tap *t = (struct tap *)be;

	for (;;) {
		ssize_t r = read(t->fd, buf, NET_MAX_FRAME);
		if (r > 0)
			return r;
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		/* 0 would mean an empty frame, which a tap never gives;
		 * anything else is the tap going away. */
		return r == 0 ? 0 : -errno;
	}
}

static int tap_poll_fd(struct net_backend *be)
{
	return ((struct tap *)be)->fd;
}

static void tap_free(struct net_backend *be)
{
	struct tap *t = (struct tap *)be;

	if (t->fd >= 0)
		close(t->fd);
	free(t);
}

static const struct net_backend_ops tap_ops = {
	.send = tap_send,
	.recv = tap_recv,
	.poll_fd = tap_poll_fd,
	.free = tap_free,
};

bool net_tap__valid_name(const char *ifname)
{
	size_t n = ifname ? strlen(ifname) : 0;

	if (n == 0 || n >= IFNAMSIZ)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = ifname[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '_' || c == '.' ||
		      c == '-'))
			return false;
	}
	return true;
}

int net_tap__open(const char *ifname, struct net_backend **out)
{
	struct ifreq ifr;
	struct tap *t;
	int e;

	*out = NULL;
	if (!net_tap__valid_name(ifname))
		return virtio__err(EINVAL, "tap: bad interface name '%s' "
				   "(1 to %d of A-Z a-z 0-9 _ . -)",
				   ifname ? ifname : "", IFNAMSIZ - 1);
	t = calloc(1, sizeof(*t));
	if (!t)
		return virtio__err(ENOMEM, "tap: out of memory");
	t->fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (t->fd < 0) {
		e = errno;
		free(t);
		return virtio__err(e, "tap %s: /dev/net/tun: %s", ifname,
				   strerror(e));
	}
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	memcpy(ifr.ifr_name, ifname, strlen(ifname));
	if (ioctl(t->fd, TUNSETIFF, &ifr) < 0) {
		e = errno;
		close(t->fd);
		free(t);
		return virtio__err(e, "tap %s: TUNSETIFF: %s%s", ifname,
				   strerror(e), e == EPERM ? " (create it "
				   "first with `ip tuntap add dev NAME mode tap "
				   "user USER`, or run as root)" : e == EBUSY ?
				   " (in use by another program, or not a "
				   "tap)" : "");
	}
	memcpy(t->ifname, ifr.ifr_name, IFNAMSIZ);
	t->ifname[IFNAMSIZ - 1] = '\0';
	t->be.ops = &tap_ops;
	t->be.name = t->ifname;
	*out = &t->be;
	return 0;
}
