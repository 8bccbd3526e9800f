/*
 * net-stream.c - frames over a byte stream, 4-byte big-endian length
 * first (QEMU "-netdev stream" / passt framing).  See net.h.
 *
 * The peer is untrusted: a length of 0 is skipped, a length above
 * NET_MAX_FRAME means the stream is out of step (there is no way to find
 * the next frame boundary), so the backend reports itself finished.
 *
 * Sending never blocks.  A frame the socket takes only in part must still
 * be finished before any other byte goes out (the stream has no other
 * frame boundary), so its rest is copied aside and written by flush()
 * when the socket drains; until then send() takes nothing new.
 */
#include <errno.h>
#include <fcntl.h>
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
	/* The unsent rest of a frame the socket took in part. */
	size_t out_at, out_len;
	uint8_t out[4 + NET_MAX_FRAME];
};

/* sendmsg, riding out EINTR; MSG_NOSIGNAL: a peer that went away must
 * give EPIPE, not a SIGPIPE that kills the monitor. */
static ssize_t send_some(int fd, struct iovec *iov, int n)
{
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = (size_t)n };

	for (;;) {
		ssize_t w = sendmsg(fd, &m, MSG_NOSIGNAL);

		if (w >= 0 || errno != EINTR)
			return w;
	}
}

static int stream_flush(struct net_backend *be)
{
	struct stream *s = (struct stream *)be;

	while (s->out_at < s->out_len) {
		struct iovec v = { s->out + s->out_at, s->out_len - s->out_at };
		ssize_t w = send_some(s->fd, &v, 1);

		if (w < 0 && errno == EAGAIN)
			return 1;
		if (w < 0) {
			s->out_at = s->out_len = 0;
			return -errno;
		}
		s->out_at += (size_t)w;
	}
	s->out_at = s->out_len = 0;
	return 0;
}

static int stream_send(struct net_backend *be, const struct iovec *iov,
		       int n, size_t len)
{
	struct stream *s = (struct stream *)be;
	struct iovec v[1 + VIRTQ_MAX_SEGS];
	uint8_t hdr[4];
	int r;

	if (len == 0 || len > NET_MAX_FRAME || n > VIRTQ_MAX_SEGS)
		return -EMSGSIZE;
	r = stream_flush(be);
	if (r != 0)
		return r == 1 ? -EAGAIN : r;
	hdr[0] = (uint8_t)(len >> 24);
	hdr[1] = (uint8_t)(len >> 16);
	hdr[2] = (uint8_t)(len >> 8);
	hdr[3] = (uint8_t)len;
	v[0].iov_base = hdr;
	v[0].iov_len = 4;
	memcpy(v + 1, iov, sizeof(*iov) * (size_t)n);

	ssize_t w = send_some(s->fd, v, n + 1);
	if (w < 0)
		return -errno;            /* EAGAIN: nothing taken */
	if ((size_t)w == 4 + len)
		return 0;
	/* Keep the rest: skip what went, copy what did not. */
	s->out_at = s->out_len = 0;
	for (int i = 0; i <= n; i++) {
		size_t l = v[i].iov_len, skip = (size_t)w < l ? (size_t)w : l;

		w -= (ssize_t)skip;
		memcpy(s->out + s->out_len, (uint8_t *)v[i].iov_base + skip,
		       l - skip);
		s->out_len += l - skip;
	}
	return 1;
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
	.flush = stream_flush,
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
