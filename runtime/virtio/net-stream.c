/*
 * net-stream.c - frames over a byte stream, 4-byte big-endian length
 * first (QEMU "-netdev stream" / passt framing).  See net.h.
 *
 * The peer is untrusted: a length of 0 is skipped, a length above
 * NET_MAX_FRAME means the stream is out of step (there is no way to find
 * the next frame boundary), so the backend reports itself finished.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "runtime/virtio/net.h"

struct stream {
	struct net_backend be;   /* first */
	int fd;
	uint8_t hdr[4];
	size_t hdr_have;
	uint32_t frame_len;
	size_t frame_have;
	uint8_t frame[NET_MAX_FRAME];
};

/* Write all of iov, riding out short writes and EINTR; the socket is
 * non-blocking for reads, so wait in poll() when it is full.  sendmsg with
 * MSG_NOSIGNAL: a peer that went away must give EPIPE, not a SIGPIPE that
 * kills the monitor. */
static int write_all(int fd, struct iovec *iov, int n)
{
	while (n > 0) {
		struct msghdr m = { .msg_iov = iov, .msg_iovlen = (size_t)n };
		ssize_t w = sendmsg(fd, &m, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			struct pollfd p = { fd, POLLOUT, 0 };

			if (poll(&p, 1, -1) < 0 && errno != EINTR)
				return -errno;
			continue;
		}
		if (w < 0)
			return -errno;
		while (n > 0 && (size_t)w >= iov->iov_len) {
			w -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

static int stream_send(struct net_backend *be, const struct iovec *iov,
		       int n, size_t len)
{
	struct stream *s = (struct stream *)be;
	struct iovec v[1 + VIRTQ_MAX_SEGS];
	uint8_t hdr[4];

	if (len == 0 || len > NET_MAX_FRAME || n > VIRTQ_MAX_SEGS)
		return -EMSGSIZE;
	hdr[0] = (uint8_t)(len >> 24);
	hdr[1] = (uint8_t)(len >> 16);
	hdr[2] = (uint8_t)(len >> 8);
	hdr[3] = (uint8_t)len;
	v[0].iov_base = hdr;
	v[0].iov_len = 4;
	memcpy(v + 1, iov, sizeof(*iov) * (size_t)n);
	return write_all(s->fd, v, n + 1);
}

/* Read what is available into [p, p+want); returns bytes read, 0 if none
 * now, -errno (-EPIPE at end of stream). */
static ssize_t read_some(int fd, void *p, size_t want)
{
	for (;;) {
		ssize_t r = read(fd, p, want);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EPIPE;
		return r;
	}
}

static ssize_t stream_recv(struct net_backend *be, void *buf)
{
	struct stream *s = (struct stream *)be;

	for (;;) {
		ssize_t r;

		if (s->hdr_have < 4) {
			r = read_some(s->fd, s->hdr + s->hdr_have,
				      4 - s->hdr_have);
			if (r <= 0)
				return r;
			s->hdr_have += (size_t)r;
			if (s->hdr_have < 4)
				continue;
			s->frame_len = (uint32_t)s->hdr[0] << 24 |
				       (uint32_t)s->hdr[1] << 16 |
				       (uint32_t)s->hdr[2] << 8 | s->hdr[3];
			s->frame_have = 0;
			if (s->frame_len > NET_MAX_FRAME)
				return -EPROTO;
			if (s->frame_len == 0) {
				s->hdr_have = 0;
				continue;
			}
		}
		r = read_some(s->fd, s->frame + s->frame_have,
			      s->frame_len - s->frame_have);
		if (r <= 0)
			return r;
		s->frame_have += (size_t)r;
		if (s->frame_have == s->frame_len) {
			memcpy(buf, s->frame, s->frame_len);
			s->hdr_have = 0;
			return (ssize_t)s->frame_len;
		}
	}
}

static int stream_poll_fd(struct net_backend *be)
{
	return ((struct stream *)be)->fd;
}

static void stream_free(struct net_backend *be)
{
	struct stream *s = (struct stream *)be;

	close(s->fd);
	free(s);
}

static const struct net_backend_ops stream_ops = {
	.send = stream_send,
	.recv = stream_recv,
	.poll_fd = stream_poll_fd,
	.free = stream_free,
};

int net_stream__new(int fd, struct net_backend **out)
{
	struct stream *s;
	int fl;

	*out = NULL;
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		int e = errno;

		close(fd);
		return virtio__err(e, "net stream: fd %d: %s", fd,
				   strerror(e));
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		close(fd);
		return virtio__err(ENOMEM, "net stream: out of memory");
	}
	s->be.ops = &stream_ops;
	s->be.name = "stream";
	s->fd = fd;
	*out = &s->be;
	return 0;
}

int net_stream__connect(const char *path, struct net_backend **out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	*out = NULL;
	if (strlen(path) >= sizeof(sa.sun_path))
		return virtio__err(ENAMETOOLONG, "net stream: socket path "
				   "'%s' is too long", path);
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return virtio__err(errno, "net stream: socket: %s",
				   strerror(errno));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;

		close(fd);
		return virtio__err(e, "net stream: connecting to %s: %s",
				   path, strerror(e));
	}
	return net_stream__new(fd, out);
}
