/*
 * server.h - an NBD server exporting one imgfmt image.
 *
 * Newstyle fixed handshake, NBD_OPT_GO/INFO/LIST/EXPORT_NAME, structured
 * replies with sparse reads, the base:allocation meta context for block
 * status, flush, FUA, trim, write-zeroes (with fast-zero) and cache.  All
 * connections share the one image handle, so a flush on any connection
 * covers writes from all of them (NBD_FLAG_CAN_MULTI_CONN).
 *
 * Every request is validated before it touches the image: unknown
 * commands, lengths over the advertised maximum and ranges past the end
 * get an error reply and the connection goes on; a client that breaks
 * the framing (bad magic) or disconnects is dropped without affecting the
 * others.
 */
#ifndef NBD_SERVER_H
#define NBD_SERVER_H

#include <stdint.h>

#include "imgfmt.h"

/* Largest read or write payload we accept (advertised in
 * NBD_INFO_BLOCK_SIZE). */
#define NBD_MAX_PAYLOAD (32u << 20)

struct nbd_server_opts {
	const char *socket_path; /* listen on this unix socket, or */
	const char *bind_addr;   /* TCP: address (default 127.0.0.1) ... */
	int port;                /* ... and port (0: unix socket only) */
	const char *export_name; /* the export's name; "" is accepted too */
	const char *description;
	int read_only;           /* refuse writes even if the image is RW */
	int no_listen;           /* no listening socket: clients come only
	                            through nbd_server__add_client() */
};

struct nbd_server;

/* Message of the most recent failing call in this thread. */
const char *nbd__error(void);

/* Bind and listen; the image stays owned by the caller and must outlive
 * the server. */
int nbd_server__create(imgfmt_image *img, const struct nbd_server_opts *o,
		       struct nbd_server **out);

/* Serve an already connected stream socket (one end of a socketpair
 * whose other end a client such as QEMU was given): no socket file for
 * anyone else to find, nothing left behind if we die.  Takes the fd, which
 * is closed on failure too.  Thread-safe; may be called before or while
 * nbd_server__run() runs, not after it returned. */
int nbd_server__add_client(struct nbd_server *s, int fd);

/* Serve until nbd_server__stop() is called (from any thread or a signal
 * handler).  Returns when every connection has ended. */
int nbd_server__run(struct nbd_server *s);

/* Async-signal-safe: wake run() and make it shut down. */
void nbd_server__stop(struct nbd_server *s);

/* Flush the image, close the listening socket (unlinking a unix socket)
 * and free the server.  Returns the flush's result. */
int nbd_server__destroy(struct nbd_server *s);

#endif /* NBD_SERVER_H */
