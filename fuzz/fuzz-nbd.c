/* fuzz/fuzz-nbd.c - a hostile client of `appliance img serve`.
 *
 * Input: the bytes a client sends, from its handshake flags on: options,
 * then requests with their payloads.  One server (over a 1 MiB raw image
 * in memory, read-write) lives for the whole run; each input is one
 * connection to it, sent while the replies are drained, then half-closed
 * and read to the end.  The oracle: no crash, no sanitizer report, no
 * leak, no hang, and the server still answers the next connection. */
#include "fuzz/fuzz.h"
#include "nbd/server.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static struct nbd_server *server;
static char socket_path[108];

static void *serve(void *arg)
{
	nbd_server__run(arg);
	return NULL;
}

static void start_server(void)
{
	static uint8_t zeros[4096];
	char dir[] = "/tmp/fuzz-nbd.XXXXXX", path[64];
	if (!mkdtemp(dir))
		abort();
	snprintf(socket_path, sizeof socket_path, "%s/sock", dir);
	int fd = fuzz__file(zeros, sizeof zeros, path);
	if (fd < 0 || ftruncate(fd, 1 << 20) < 0)
		abort();
	struct imgfmt_open_opts o = {
		.flags = IMGFMT_OPEN_RDWR, .format = "raw"
	};
	imgfmt_image *img;
	struct nbd_server_opts so = { .socket_path = socket_path };
	pthread_t t;
	if (imgfmt__open(path, &o, &img) < 0 ||
	    nbd_server__create(img, &so, &server) < 0 ||
	    pthread_create(&t, NULL, serve, server) != 0)
		abort();
	pthread_detach(t);
	/* The image, the server and its socket live until the process
	 * ends, as a served image does. */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t sink[1 << 16];
	if (!server)
		start_server();
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	memcpy(sa.sun_path, socket_path, strlen(socket_path) + 1);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
		abort(); /* the server stopped accepting */
	fcntl(fd, F_SETFL, O_NONBLOCK);

	size_t sent = 0;
	int reading = 1;
	if (size == 0)
		shutdown(fd, SHUT_WR);
	while (reading) {
		struct pollfd p = {
			.fd = fd,
			.events = POLLIN | (sent < size ? POLLOUT : 0),
		};
		int ready = poll(&p, 1, 30000);
		if (ready < 0 && errno == EINTR)
			continue; /* libFuzzer's timeout timer */
		if (ready <= 0)
			abort(); /* the server neither reads nor answers */
		if (p.revents & POLLOUT) {
			ssize_t n = send(fd, data + sent, size - sent,
					 MSG_NOSIGNAL);
			if (n > 0)
				sent += (size_t)n;
			else if (n < 0 && errno != EAGAIN)
				sent = size; /* the server hung up */
			if (sent == size)
				shutdown(fd, SHUT_WR);
		}
		if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t n = recv(fd, sink, sizeof sink, 0);
			if (n == 0 || (n < 0 && errno != EAGAIN))
				reading = 0;
		}
	}
	close(fd);
	return 0;
}
