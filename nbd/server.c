/*
 * server.c - the NBD server (see server.h and protocol.h).
 *
 * One thread accepts (or the caller hands over connected sockets); each
 * connection gets a thread that negotiates and then serves requests.  A
 * client is untrusted: every length is checked before anything is
 * allocated or read, and a protocol error ends only that client's
 * connection.
 */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "protocol.h"
#include "server.h"

#define MAX_CONNECTIONS 64
#define MAX_OPTION_LEN 4096     /* longest option payload we accept */
#define MAX_STATUS_EXTENTS 1024 /* descriptors per block-status reply */
#define META_CONTEXT_ID 1       /* our id for base:allocation */
#define NBD_WORKERS 4           /* concurrent requests per connection */
#define NBD_MAX_INFLIGHT (64u << 20) /* payload bytes queued per connection */

static __thread char nbd_errbuf[512];

const char *nbd__error(void)
{
	return nbd_errbuf;
}

static int nbd_err(int err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int nbd_err(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(nbd_errbuf, sizeof(nbd_errbuf), fmt, ap);
	va_end(ap);
	return -(err > 0 ? err : EIO);
}

struct nbd_conn {
	struct nbd_server *srv;
	int fd;
	int structured;       /* NBD_OPT_STRUCTURED_REPLY negotiated */
	int meta_allocation;  /* base:allocation selected */
	int no_zeroes;
	pthread_t thread;
	int slot;

	/* Transmission: the reader hands requests to the workers. */
	pthread_mutex_t send_lock;   /* one reply at a time on the socket */
	pthread_mutex_t qlock;
	pthread_cond_t qwork, qspace;
	struct nbd_request *head, *tail;
	uint64_t inflight;           /* payload bytes queued or in service */
	int closing, broken;
};

struct nbd_server {
	imgfmt_image *img;
	uint64_t size;
	int writable;
	char *export_name;
	char *description;
	char *socket_path;
	int listen_fd;
	int stop_pipe[2];
	pthread_mutex_t lock;
	pthread_cond_t conn_gone;
	struct nbd_conn *conns[MAX_CONNECTIONS];
	int nconns;
};

/* ---- socket helpers -------------------------------------------------- */

static int read_full(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = recv(fd, p, len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int write_full(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Read and throw away `len` bytes, to stay in step with a client whose
 * payload we refuse. */
static int discard_bytes(int fd, uint64_t len)
{
	uint8_t buf[65536];

	while (len > 0) {
		size_t n = len < sizeof(buf) ? (size_t)len : sizeof(buf);
		if (read_full(fd, buf, n) < 0)
			return -1;
		len -= n;
	}
	return 0;
}

static void put16(uint8_t *p, uint16_t v) { v = htobe16(v); memcpy(p, &v, 2); }
static void put32(uint8_t *p, uint32_t v) { v = htobe32(v); memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { v = htobe64(v); memcpy(p, &v, 8); }
static uint16_t get16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return be16toh(v); }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return be32toh(v); }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return be64toh(v); }

/* ---- handshake ------------------------------------------------------- */

static int opt_reply(struct nbd_conn *c, uint32_t opt, uint32_t type,
		     const void *data, uint32_t len)
{
	uint8_t h[20];

	put64(h, NBD_REP_MAGIC);
	put32(h + 8, opt);
	put32(h + 12, type);
	put32(h + 16, len);
	if (write_full(c->fd, h, sizeof(h)) < 0)
		return -1;
	return len ? write_full(c->fd, data, len) : 0;
}

static uint16_t transmission_flags(const struct nbd_server *s)
{
	uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH |
		     NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_DF |
		     NBD_FLAG_CAN_MULTI_CONN | NBD_FLAG_SEND_CACHE;

	if (s->writable)
		f |= NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES |
		     NBD_FLAG_SEND_FAST_ZERO;
	else
		f |= NBD_FLAG_READ_ONLY;
	return f;
}

static int name_matches(const struct nbd_server *s, const char *name,
			size_t len)
{
	/* The empty name is the default export. */
	return len == 0 || (strlen(s->export_name) == len &&
			    memcmp(s->export_name, name, len) == 0);
}

/* NBD_OPT_INFO / NBD_OPT_GO.  Returns 1 when GO succeeded (transmission
 * starts), 0 to keep negotiating, -1 to drop the client. */
static int handle_info_go(struct nbd_conn *c, uint32_t opt,
			  const uint8_t *data, uint32_t len)
{
	struct nbd_server *s = c->srv;
	uint8_t buf[32];

	if (len < 6)
		return opt_reply(c, opt, NBD_REP_ERR_INVALID, NULL, 0);
	uint32_t namelen = get32(data);
	if (namelen > len - 6)
		return opt_reply(c, opt, NBD_REP_ERR_INVALID, NULL, 0);
	uint16_t nreq = get16(data + 4 + namelen);
	if (6 + namelen + 2ull * nreq != len)
		return opt_reply(c, opt, NBD_REP_ERR_INVALID, NULL, 0);
	if (!name_matches(s, (const char *)data + 4, namelen))
		return opt_reply(c, opt, NBD_REP_ERR_UNKNOWN, NULL, 0) < 0
			? -1 : 0;

	put16(buf, NBD_INFO_EXPORT);
	put64(buf + 2, s->size);
	put16(buf + 10, transmission_flags(s));
	if (opt_reply(c, opt, NBD_REP_INFO, buf, 12) < 0)
		return -1;
	/* Always offer the block sizes: clients may ignore them. */
	put16(buf, NBD_INFO_BLOCK_SIZE);
	put32(buf + 2, 1);
	put32(buf + 6, 4096);
	put32(buf + 10, NBD_MAX_PAYLOAD);
	if (opt_reply(c, opt, NBD_REP_INFO, buf, 14) < 0)
		return -1;
	for (uint16_t i = 0; i < nreq; i++) {
		uint16_t t = get16(data + 6 + namelen + 2 * i);
		if (t == NBD_INFO_NAME) {
			size_t n = strlen(s->export_name);
			uint8_t nb[2 + 256];
			if (n > 256)
				n = 256;
			put16(nb, NBD_INFO_NAME);
			memcpy(nb + 2, s->export_name, n);
			if (opt_reply(c, opt, NBD_REP_INFO, nb, 2 + n) < 0)
				return -1;
		} else if (t == NBD_INFO_DESCRIPTION && s->description) {
			size_t n = strlen(s->description);
			uint8_t nb[2 + 256];
			if (n > 256)
				n = 256;
			put16(nb, NBD_INFO_DESCRIPTION);
			memcpy(nb + 2, s->description, n);
			if (opt_reply(c, opt, NBD_REP_INFO, nb, 2 + n) < 0)
				return -1;
		}
	}
	if (opt_reply(c, opt, NBD_REP_ACK, NULL, 0) < 0)
		return -1;
	return opt == NBD_OPT_GO ? 1 : 0;
}

/* NBD_OPT_LIST_META_CONTEXT / SET_META_CONTEXT: we know one context,
 * base:allocation. */
static int handle_meta(struct nbd_conn *c, uint32_t opt, const uint8_t *data,
		       uint32_t len)
{
	static const char ctx[] = "base:allocation";
	uint8_t rep[4 + sizeof(ctx)];
	int selected = 0;

	if (opt == NBD_OPT_SET_META_CONTEXT && !c->structured)
		return opt_reply(c, opt, NBD_REP_ERR_INVALID, NULL, 0);
	if (len < 8)
		return opt_reply(c, opt, NBD_REP_ERR_INVALID, NULL, 0);
	uint32_t namelen = get32(data);
	if (namelen > len - 8)
		return opt_reply(c, opt, NBD_REP_ERR_INVALID, NULL, 0);
	if (!name_matches(c->srv, (const char *)data + 4, namelen))
		return opt_reply(c, opt, NBD_REP_ERR_UNKNOWN, NULL, 0);
	uint32_t nq = get32(data + 4 + namelen);
	uint32_t pos = 8 + namelen;

	put32(rep, META_CONTEXT_ID);
	memcpy(rep + 4, ctx, sizeof(ctx) - 1);
	for (uint32_t i = 0; i < nq; i++) {
		if (len - pos < 4)
			return opt_reply(c, opt, NBD_REP_ERR_INVALID, NULL, 0);
		uint32_t ql = get32(data + pos);
		pos += 4;
		if (ql > len - pos)
			return opt_reply(c, opt, NBD_REP_ERR_INVALID, NULL, 0);
		const char *q = (const char *)data + pos;
		pos += ql;
		/* "base:" alone (list only) or exactly our context. */
		if ((ql == sizeof(ctx) - 1 && memcmp(q, ctx, ql) == 0) ||
		    (opt == NBD_OPT_LIST_META_CONTEXT && ql == 5 &&
		     memcmp(q, "base:", 5) == 0))
			selected = 1;
	}
	if (pos != len)
		return opt_reply(c, opt, NBD_REP_ERR_INVALID, NULL, 0);
	if (nq == 0 && opt == NBD_OPT_LIST_META_CONTEXT)
		selected = 1;
	if (opt == NBD_OPT_SET_META_CONTEXT)
		c->meta_allocation = selected;
	if (selected &&
	    opt_reply(c, opt, NBD_REP_META_CONTEXT, rep, sizeof(rep) - 1) < 0)
		return -1;
	return opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
}

/* Returns 0 when transmission begins, -1 when the client is gone. */
static int negotiate(struct nbd_conn *c)
{
	struct nbd_server *s = c->srv;
	uint8_t hello[18], cflags[4], oh[16];
	uint8_t *data = NULL;
	int rc = -1;

	put64(hello, NBD_MAGIC);
	put64(hello + 8, NBD_IHAVEOPT);
	put16(hello + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
	if (write_full(c->fd, hello, sizeof(hello)) < 0 ||
	    read_full(c->fd, cflags, 4) < 0)
		return -1;
	uint32_t cf = get32(cflags);
	if (!(cf & NBD_FLAG_C_FIXED_NEWSTYLE) ||
	    (cf & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)))
		return -1;
	c->no_zeroes = (cf & NBD_FLAG_C_NO_ZEROES) != 0;

	for (int n = 0; n < 1000; n++) { /* bound the option phase */
		if (read_full(c->fd, oh, sizeof(oh)) < 0)
			break;
		if (get64(oh) != NBD_IHAVEOPT)
			break;
		uint32_t opt = get32(oh + 8), len = get32(oh + 12);
		if (len > MAX_OPTION_LEN) {
			if (discard_bytes(c->fd, len) < 0 ||
			    opt_reply(c, opt, NBD_REP_ERR_TOO_BIG, NULL, 0) < 0)
				break;
			continue;
		}
		free(data);
		data = malloc(len + 1);
		if (!data || read_full(c->fd, data, len) < 0)
			break;
		data[len] = 0;

		int r;
		switch (opt) {
		case NBD_OPT_EXPORT_NAME: {
			uint8_t reply[10 + 124] = { 0 };
			if (!name_matches(s, (char *)data, len))
				goto out; /* this option cannot reply errors */
			put64(reply, s->size);
			put16(reply + 8, transmission_flags(s));
			if (write_full(c->fd, reply,
				       c->no_zeroes ? 10 : sizeof(reply)) < 0)
				goto out;
			rc = 0;
			goto out;
		}
		case NBD_OPT_ABORT:
			opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
			goto out;
		case NBD_OPT_LIST: {
			size_t nl = strlen(s->export_name);
			uint8_t *rep = malloc(4 + nl);
			if (!rep)
				goto out;
			put32(rep, (uint32_t)nl);
			memcpy(rep + 4, s->export_name, nl);
			r = len ? opt_reply(c, opt, NBD_REP_ERR_INVALID, NULL, 0)
				: opt_reply(c, opt, NBD_REP_SERVER, rep,
					    (uint32_t)(4 + nl));
			free(rep);
			if (r == 0 && !len)
				r = opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
			break;
		}
		case NBD_OPT_STRUCTURED_REPLY:
			if (len) {
				r = opt_reply(c, opt, NBD_REP_ERR_INVALID, NULL, 0);
				break;
			}
			c->structured = 1;
			r = opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
			break;
		case NBD_OPT_INFO:
		case NBD_OPT_GO:
			r = handle_info_go(c, opt, data, len);
			if (r == 1) {
				rc = 0;
				goto out;
			}
			break;
		case NBD_OPT_LIST_META_CONTEXT:
		case NBD_OPT_SET_META_CONTEXT:
			r = handle_meta(c, opt, data, len);
			break;
		case NBD_OPT_STARTTLS:
			r = opt_reply(c, opt, NBD_REP_ERR_POLICY, NULL, 0);
			break;
		default:
			r = opt_reply(c, opt, NBD_REP_ERR_UNSUP, NULL, 0);
			break;
		}
		if (r < 0)
			break;
	}
out:
	free(data);
	return rc;
}

/* ---- transmission ---------------------------------------------------- */

static uint32_t errno_to_nbd(int err)
{
	switch (err) {
	case EPERM: case EROFS: return NBD_EPERM;
	case ENOMEM: return NBD_ENOMEM;
	case EINVAL: return NBD_EINVAL;
	case ENOSPC: case EFBIG: return NBD_ENOSPC;
	case EOVERFLOW: return NBD_EOVERFLOW;
	case ENOTSUP: return NBD_ENOTSUP;
	default: return NBD_EIO;
	}
}

static int simple_reply(struct nbd_conn *c, uint64_t cookie, uint32_t error,
			const void *data, size_t len)
{
	uint8_t h[16];

	put32(h, NBD_SIMPLE_REPLY_MAGIC);
	put32(h + 4, error);
	put64(h + 8, cookie);
	if (write_full(c->fd, h, sizeof(h)) < 0)
		return -1;
	return len ? write_full(c->fd, data, len) : 0;
}

static int chunk_header(struct nbd_conn *c, uint16_t flags, uint16_t type,
			uint64_t cookie, uint32_t len)
{
	uint8_t h[20];

	put32(h, NBD_STRUCTURED_REPLY_MAGIC);
	put16(h + 4, flags);
	put16(h + 6, type);
	put64(h + 8, cookie);
	put32(h + 16, len);
	return write_full(c->fd, h, sizeof(h));
}

/* Success or failure of a request that carries no data back. */
static int reply_status_locked(struct nbd_conn *c, uint64_t cookie,
			       uint32_t error, const char *msg)
{
	if (!c->structured)
		return simple_reply(c, cookie, error, NULL, 0);
	if (!error)
		return chunk_header(c, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE,
				    cookie, 0);
	size_t ml = msg ? strlen(msg) : 0;
	if (ml > 1024)
		ml = 1024;
	uint8_t p[6 + 1024];
	put32(p, error);
	put16(p + 4, (uint16_t)ml);
	memcpy(p + 6, msg, ml);
	if (chunk_header(c, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, cookie,
			 (uint32_t)(6 + ml)) < 0)
		return -1;
	return write_full(c->fd, p, 6 + ml);
}

static int reply_status(struct nbd_conn *c, uint64_t cookie, uint32_t error,
			const char *msg)
{
	pthread_mutex_lock(&c->send_lock);
	int r = reply_status_locked(c, cookie, error, msg);
	pthread_mutex_unlock(&c->send_lock);
	return r;
}

static int send_read_reply(struct nbd_conn *c, uint64_t cookie,
			   uint16_t flags, uint64_t off, uint32_t len,
			   const uint8_t *buf, const struct imgfmt_extent *ext,
			   int n);

static int do_read(struct nbd_conn *c, uint64_t cookie, uint16_t flags,
		   uint64_t off, uint32_t len, uint8_t *buf)
{
	imgfmt_image *img = c->srv->img;
	struct imgfmt_extent ext[64];
	int n = 0;

	/* Structured replies send holes as OFFSET_HOLE chunks with no
	 * payload, so sparse images cross the wire as sparse.  All I/O
	 * happens first, so an error can still be the request's only
	 * answer, and the socket is held only while sending. */
	if (c->structured && !(flags & NBD_CMD_FLAG_DF)) {
		uint64_t pos = off, end = off + len;
		while (pos < end && n < 64) {
			if (imgfmt__map(img, pos, end - pos, &ext[n]) < 0)
				return reply_status(c, cookie, NBD_EIO,
						    imgfmt__error());
			pos += ext[n].length;
			n++;
		}
		if (pos < end) { /* too fragmented: the tail goes as data */
			ext[n - 1].length += end - pos;
			ext[n - 1].kind = IMGFMT_EXTENT_DATA;
		}
	}
	if (imgfmt__pread(img, buf, len, off) < 0)
		return reply_status(c, cookie, NBD_EIO, imgfmt__error());
	pthread_mutex_lock(&c->send_lock);
	int r = send_read_reply(c, cookie, flags, off, len, buf, ext, n);
	pthread_mutex_unlock(&c->send_lock);
	return r;
}

static int send_read_reply(struct nbd_conn *c, uint64_t cookie,
			   uint16_t flags, uint64_t off, uint32_t len,
			   const uint8_t *buf, const struct imgfmt_extent *ext,
			   int n)
{
	uint8_t p[12];

	if (!c->structured)
		return simple_reply(c, cookie, 0, buf, len);
	if (n == 0 || (flags & NBD_CMD_FLAG_DF)) {
		put64(p, off);
		if (chunk_header(c, NBD_REPLY_FLAG_DONE,
				 NBD_REPLY_TYPE_OFFSET_DATA, cookie,
				 8 + len) < 0 ||
		    write_full(c->fd, p, 8) < 0)
			return -1;
		return write_full(c->fd, buf, len);
	}
	for (int i = 0; i < n; i++) {
		uint64_t eo = ext[i].offset;
		uint32_t el = (uint32_t)ext[i].length;
		put64(p, eo);
		if (ext[i].kind == IMGFMT_EXTENT_ZERO) {
			put32(p + 8, el);
			if (chunk_header(c, 0, NBD_REPLY_TYPE_OFFSET_HOLE,
					 cookie, 12) < 0 ||
			    write_full(c->fd, p, 12) < 0)
				return -1;
		} else {
			if (chunk_header(c, 0, NBD_REPLY_TYPE_OFFSET_DATA,
					 cookie, 8 + el) < 0 ||
			    write_full(c->fd, p, 8) < 0 ||
			    write_full(c->fd, buf + (eo - off), el) < 0)
				return -1;
		}
	}
	return chunk_header(c, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE,
			    cookie, 0);
}

static int do_block_status(struct nbd_conn *c, uint64_t cookie,
			   uint16_t flags, uint64_t off, uint32_t len)
{
	static __thread uint8_t p[4 + 8 * MAX_STATUS_EXTENTS];
	imgfmt_image *img = c->srv->img;
	int max = (flags & NBD_CMD_FLAG_REQ_ONE) ? 1 : MAX_STATUS_EXTENTS;
	int n = 0;
	uint64_t pos = off, end = off + len;

	put32(p, META_CONTEXT_ID);
	while (pos < end && n < max) {
		struct imgfmt_extent e;
		if (imgfmt__map(img, pos, end - pos, &e) < 0)
			return reply_status(c, cookie, NBD_EIO,
					    imgfmt__error());
		uint32_t st = e.kind == IMGFMT_EXTENT_ZERO
			? NBD_STATE_HOLE | NBD_STATE_ZERO : 0;
		/* Merge with the previous descriptor when the state is the
		 * same, so clients see the fewest extents. */
		if (n > 0 && get32(p + 4 + 8 * (n - 1) + 4) == st &&
		    get32(p + 4 + 8 * (n - 1)) + e.length <= UINT32_MAX) {
			put32(p + 4 + 8 * (n - 1),
			      get32(p + 4 + 8 * (n - 1)) + (uint32_t)e.length);
		} else {
			put32(p + 4 + 8 * n, (uint32_t)e.length);
			put32(p + 4 + 8 * n + 4, st);
			n++;
		}
		pos += e.length;
	}
	pthread_mutex_lock(&c->send_lock);
	int r = chunk_header(c, NBD_REPLY_FLAG_DONE,
			     NBD_REPLY_TYPE_BLOCK_STATUS, cookie,
			     (uint32_t)(4 + 8 * n));
	if (r == 0)
		r = write_full(c->fd, p, 4 + 8 * (size_t)n);
	pthread_mutex_unlock(&c->send_lock);
	return r;
}

/* One request between the reader and a worker. */
struct nbd_request {
	struct nbd_request *next;
	uint16_t flags, type;
	uint64_t cookie, off;
	uint32_t len;
	uint8_t *data;        /* a write's payload (owned) */
	uint64_t reserved;    /* bytes counted against the in-flight cap */
};

/* Carry out one request and send its reply.  Runs on a worker; replies of
 * different requests never interleave (the send lock). */
static int serve_one(struct nbd_conn *c, struct nbd_request *rq)
{
	struct nbd_server *s = c->srv;
	uint64_t off = rq->off, cookie = rq->cookie;
	uint32_t len = rq->len;
	uint16_t flags = rq->flags;
	int in_range = off <= s->size && len <= s->size - off;
	int r;

	switch (rq->type) {
	case NBD_CMD_WRITE:
		if (!s->writable)
			return reply_status(c, cookie, NBD_EPERM,
					    "export is read-only");
		if (!in_range)
			return reply_status(c, cookie, NBD_ENOSPC,
					    "write past the end of the export");
		r = imgfmt__pwrite(s->img, rq->data, len, off);
		if (r == 0 && (flags & NBD_CMD_FLAG_FUA))
			r = imgfmt__flush(s->img);
		return reply_status(c, cookie, r < 0 ? errno_to_nbd(-r) : 0,
				    imgfmt__error());
	case NBD_CMD_READ: {
		if (len > NBD_MAX_PAYLOAD)
			return reply_status(c, cookie, NBD_EOVERFLOW,
					    "read larger than the maximum "
					    "payload");
		if (!in_range)
			return reply_status(c, cookie, NBD_EINVAL,
					    "read past the end of the export");
		if (len == 0)
			return reply_status(c, cookie, NBD_EINVAL,
					    "empty read");
		uint8_t *buf = malloc(len);
		if (!buf)
			return reply_status(c, cookie, NBD_ENOMEM,
					    "out of memory");
		r = do_read(c, cookie, flags, off, len, buf);
		free(buf);
		return r;
	}
	case NBD_CMD_FLUSH:
		return reply_status(c, cookie,
				    imgfmt__flush(s->img) < 0 ? NBD_EIO : 0,
				    imgfmt__error());
	case NBD_CMD_TRIM:
	case NBD_CMD_WRITE_ZEROES: {
		int e;
		if (!s->writable)
			return reply_status(c, cookie, NBD_EPERM,
					    "export is read-only");
		if (!in_range)
			return reply_status(c, cookie, NBD_ENOSPC,
					    "range past the end of the export");
		if (rq->type == NBD_CMD_TRIM)
			e = imgfmt__discard(s->img, off, len);
		else
			e = imgfmt__write_zeroes(s->img, off, len,
				(flags & NBD_CMD_FLAG_NO_HOLE)
				? 0 : IMGFMT_ZERO_MAY_UNMAP);
		if (e == 0 && (flags & NBD_CMD_FLAG_FUA))
			e = imgfmt__flush(s->img);
		return reply_status(c, cookie, e < 0 ? errno_to_nbd(-e) : 0,
				    imgfmt__error());
	}
	case NBD_CMD_CACHE:
		return reply_status(c, cookie, in_range ? 0 : NBD_EINVAL,
				    "cache past the end of the export");
	case NBD_CMD_BLOCK_STATUS:
		if (!c->structured || !c->meta_allocation)
			return reply_status(c, cookie, NBD_EINVAL,
					    "no meta context negotiated");
		if (!in_range || len == 0)
			return reply_status(c, cookie, NBD_EINVAL,
					    "block status past the end of the "
					    "export");
		return do_block_status(c, cookie, flags, off, len);
	default:
		return reply_status(c, cookie, NBD_EINVAL, "unknown command");
	}
}

static void *worker_thread(void *arg)
{
	struct nbd_conn *c = arg;

	pthread_mutex_lock(&c->qlock);
	for (;;) {
		while (!c->head && !c->closing)
			pthread_cond_wait(&c->qwork, &c->qlock);
		struct nbd_request *rq = c->head;
		if (!rq)
			break; /* closing and drained */
		c->head = rq->next;
		if (!c->head)
			c->tail = NULL;
		pthread_mutex_unlock(&c->qlock);

		int r = c->broken ? 0 : serve_one(c, rq);

		pthread_mutex_lock(&c->qlock);
		if (r < 0 && !c->broken) {
			/* The client is gone: wake the reader out of recv. */
			c->broken = 1;
			shutdown(c->fd, SHUT_RDWR);
		}
		c->inflight -= rq->reserved;
		pthread_cond_broadcast(&c->qspace);
		free(rq->data);
		free(rq);
	}
	pthread_mutex_unlock(&c->qlock);
	return NULL;
}

/* Wait until `bytes` more fit under the in-flight cap (or nothing is in
 * flight), and reserve them.  0, or -1 if the connection broke. */
static int reserve(struct nbd_conn *c, uint64_t bytes)
{
	pthread_mutex_lock(&c->qlock);
	while (!c->broken && c->inflight &&
	       c->inflight + bytes > NBD_MAX_INFLIGHT)
		pthread_cond_wait(&c->qspace, &c->qlock);
	c->inflight += bytes;
	int r = c->broken ? -1 : 0;
	pthread_mutex_unlock(&c->qlock);
	return r;
}

static void enqueue(struct nbd_conn *c, struct nbd_request *rq)
{
	pthread_mutex_lock(&c->qlock);
	if (c->tail)
		c->tail->next = rq;
	else
		c->head = rq;
	c->tail = rq;
	pthread_cond_signal(&c->qwork);
	pthread_mutex_unlock(&c->qlock);
}

/* Serve requests until the client disconnects or breaks the framing.  One
 * thread reads requests (and write payloads) in order; a few workers
 * carry them out concurrently, so a client's queue depth turns into
 * parallel I/O on the image.  Bytes in flight per connection are capped,
 * so a client cannot make us buffer more than NBD_MAX_INFLIGHT. */
static void transmission(struct nbd_conn *c)
{
	pthread_t workers[NBD_WORKERS];
	int nworkers = 0;
	uint8_t h[28];

	for (int i = 0; i < NBD_WORKERS; i++)
		if (pthread_create(&workers[i], NULL, worker_thread, c) == 0)
			nworkers++;
	while (nworkers > 0 && read_full(c->fd, h, sizeof(h)) == 0) {
		struct nbd_request *rq;
		uint32_t magic = get32(h);

		if (magic != NBD_REQUEST_MAGIC)
			break; /* framing lost: nothing sane to answer */
		rq = calloc(1, sizeof(*rq));
		if (!rq)
			break;
		rq->flags = get16(h + 4);
		rq->type = get16(h + 6);
		rq->cookie = get64(h + 8);
		rq->off = get64(h + 16);
		rq->len = get32(h + 24);
		if (rq->type == NBD_CMD_DISC) {
			free(rq);
			break;
		}
		if (rq->type == NBD_CMD_WRITE && rq->len > NBD_MAX_PAYLOAD) {
			/* Skip the payload to stay in step, then refuse. */
			uint64_t cookie = rq->cookie;
			free(rq);
			if (discard_bytes(c->fd, get32(h + 24)) < 0 ||
			    reply_status(c, cookie, NBD_EOVERFLOW,
					 "write larger than the maximum "
					 "payload") < 0)
				break;
			continue;
		}
		if (rq->type == NBD_CMD_WRITE || (rq->type == NBD_CMD_READ &&
						  rq->len <= NBD_MAX_PAYLOAD))
			rq->reserved = rq->len;
		if (reserve(c, rq->reserved) < 0) {
			free(rq);
			break;
		}
		if (rq->type == NBD_CMD_WRITE) {
			rq->data = malloc(rq->len ? rq->len : 1);
			if (!rq->data || read_full(c->fd, rq->data, rq->len) < 0) {
				pthread_mutex_lock(&c->qlock);
				c->inflight -= rq->reserved;
				pthread_mutex_unlock(&c->qlock);
				free(rq->data);
				free(rq);
				break;
			}
		}
		enqueue(c, rq);
	}
	/* Finish what was asked (NBD_CMD_DISC promises it), then stop. */
	pthread_mutex_lock(&c->qlock);
	c->closing = 1;
	pthread_cond_broadcast(&c->qwork);
	pthread_mutex_unlock(&c->qlock);
	for (int i = 0; i < nworkers; i++)
		pthread_join(workers[i], NULL);
}

static void *conn_thread(void *arg)
{
	struct nbd_conn *c = arg;
	struct nbd_server *s = c->srv;

	if (negotiate(c) == 0)
		transmission(c);
	close(c->fd);
	pthread_mutex_lock(&s->lock);
	s->conns[c->slot] = NULL;
	s->nconns--;
	pthread_cond_broadcast(&s->conn_gone);
	pthread_mutex_unlock(&s->lock);
	pthread_mutex_destroy(&c->send_lock);
	pthread_mutex_destroy(&c->qlock);
	pthread_cond_destroy(&c->qwork);
	pthread_cond_destroy(&c->qspace);
	free(c);
	return NULL;
}

/* Give a connected socket (accepted, or handed over by the caller) its
 * thread; on failure the socket is closed (a client beyond
 * MAX_CONNECTIONS sees its connection end). */
int nbd_server__add_client(struct nbd_server *s, int fd)
{
	struct nbd_conn *c = calloc(1, sizeof(*c));
	int slot = -1;

	if (!c) {
		close(fd);
		return nbd_err(ENOMEM, "out of memory");
	}
	pthread_mutex_lock(&s->lock);
	for (int i = 0; i < MAX_CONNECTIONS; i++)
		if (!s->conns[i]) {
			slot = i;
			break;
		}
	if (slot < 0) {
		pthread_mutex_unlock(&s->lock);
		free(c);
		close(fd);
		return nbd_err(EBUSY, "too many connections");
	}
	c->srv = s;
	c->fd = fd;
	c->slot = slot;
	pthread_mutex_init(&c->send_lock, NULL);
	pthread_mutex_init(&c->qlock, NULL);
	pthread_cond_init(&c->qwork, NULL);
	pthread_cond_init(&c->qspace, NULL);
	s->conns[slot] = c;
	s->nconns++;
	if (pthread_create(&c->thread, NULL, conn_thread, c) != 0) {
		s->conns[slot] = NULL;
		s->nconns--;
		pthread_mutex_unlock(&s->lock);
		close(fd);
		pthread_mutex_destroy(&c->send_lock);
		pthread_mutex_destroy(&c->qlock);
		pthread_cond_destroy(&c->qwork);
		pthread_cond_destroy(&c->qspace);
		free(c);
		return nbd_err(EAGAIN, "cannot start a connection thread");
	}
	pthread_detach(c->thread);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/* ---- listening ------------------------------------------------------- */

/* A socket file at path that nobody listens on any more: a server that
 * was killed before it could remove it.  Only a socket is ever removed,
 * and only when connecting to it is refused.  0 removed; else why not. */
static const char *remove_stale_socket(const struct sockaddr_un *sa)
{
	struct stat st;
	int fd, r;

	if (lstat(sa->sun_path, &st) < 0)
		return strerror(errno);
	if (!S_ISSOCK(st.st_mode))
		return "exists and is not a socket";
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return strerror(errno);
	r = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	close(fd);
	if (r == 0)
		return "another server is listening on it";
	if (errno != ECONNREFUSED)
		return strerror(errno);
	return unlink(sa->sun_path) < 0 ? strerror(errno) : NULL;
}

static int listen_unix(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, r;

	if (strlen(path) >= sizeof(sa.sun_path))
		return nbd_err(ENAMETOOLONG, "%s: socket path too long", path);
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return nbd_err(errno, "socket: %s", strerror(errno));
	r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	if (r < 0 && errno == EADDRINUSE) {
		const char *why = remove_stale_socket(&sa);
		if (why) {
			close(fd);
			return nbd_err(EADDRINUSE, "%s: %s", path, why);
		}
		r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	}
	if (r < 0 || listen(fd, 16) < 0) {
		int e = errno;
		close(fd);
		return nbd_err(e, "%s: %s", path, strerror(e));
	}
	return fd;
}

static int listen_tcp(const char *addr, int port)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res;
	char ps[16];
	int fd, one = 1, r;

	snprintf(ps, sizeof(ps), "%d", port);
	r = getaddrinfo(addr ? addr : "127.0.0.1", ps, &hints, &res);
	if (r != 0)
		return nbd_err(EINVAL, "%s: %s", addr, gai_strerror(r));
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		freeaddrinfo(res);
		return nbd_err(errno, "socket: %s", strerror(errno));
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 16) < 0) {
		int e = errno;
		close(fd);
		freeaddrinfo(res);
		return nbd_err(e, "%s:%d: %s", addr ? addr : "127.0.0.1", port,
			       strerror(e));
	}
	freeaddrinfo(res);
	return fd;
}

int nbd_server__create(imgfmt_image *img, const struct nbd_server_opts *o,
		       struct nbd_server **out)
{
	struct nbd_server *s = calloc(1, sizeof(*s));
	struct imgfmt_info info;

	*out = NULL;
	if (!s)
		return nbd_err(ENOMEM, "out of memory");
	s->listen_fd = -1;
	s->stop_pipe[0] = s->stop_pipe[1] = -1;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->conn_gone, NULL);
	s->img = img;
	if (imgfmt__info(img, &info) < 0) {
		nbd_err(EIO, "%s", imgfmt__error());
		goto fail;
	}
	s->size = info.virtual_size;
	s->writable = !info.read_only && !o->read_only;
	s->export_name = strdup(o->export_name ? o->export_name : "");
	s->description = o->description ? strdup(o->description) : NULL;
	if (!s->export_name) {
		nbd_err(ENOMEM, "out of memory");
		goto fail;
	}
	if (pipe2(s->stop_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
		nbd_err(errno, "pipe: %s", strerror(errno));
		goto fail;
	}
	if (o->no_listen) {
		*out = s;
		return 0;
	}
	if (o->socket_path) {
		s->listen_fd = listen_unix(o->socket_path);
		if (s->listen_fd >= 0)
			s->socket_path = strdup(o->socket_path);
	} else {
		s->listen_fd = listen_tcp(o->bind_addr,
					  o->port ? o->port : 10809);
	}
	if (s->listen_fd < 0)
		goto fail;
	*out = s;
	return 0;
fail:
	nbd_server__destroy(s);
	return -EIO;
}

void nbd_server__stop(struct nbd_server *s)
{
	ssize_t r = write(s->stop_pipe[1], "x", 1);
	(void)r;
}

int nbd_server__run(struct nbd_server *s)
{
	struct pollfd p[2] = {
		{ .fd = s->listen_fd, .events = POLLIN },
		{ .fd = s->stop_pipe[0], .events = POLLIN },
	};

	for (;;) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents)
			break;
		if (!(p[0].revents & POLLIN))
			continue;
		int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		nbd_server__add_client(s, fd);
	}

	/* Shut down: wake every connection thread out of its recv(), wait
	 * for all of them, so nothing touches the image afterwards. */
	pthread_mutex_lock(&s->lock);
	for (int i = 0; i < MAX_CONNECTIONS; i++)
		if (s->conns[i])
			shutdown(s->conns[i]->fd, SHUT_RDWR);
	while (s->nconns > 0)
		pthread_cond_wait(&s->conn_gone, &s->lock);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

int nbd_server__destroy(struct nbd_server *s)
{
	int r = 0;

	if (!s)
		return 0;
	if (s->img && s->writable && imgfmt__flush(s->img) < 0)
		r = nbd_err(EIO, "%s", imgfmt__error());
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	if (s->socket_path)
		unlink(s->socket_path);
	if (s->stop_pipe[0] >= 0)
		close(s->stop_pipe[0]);
	if (s->stop_pipe[1] >= 0)
		close(s->stop_pipe[1]);
	free(s->socket_path);
	free(s->export_name);
	free(s->description);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->conn_gone);
	free(s);
	return r;
}
