/*
 * verified-nbd.c - serve a package's disk over NBD twice: through the
 * verified view (what `appliance run` hands a guest: every cluster
 * checked against the signed hash tree as it is read) and as the plain
 * AVD member (no checks), on two unix sockets, so that an NBD client
 * (bench/verified-nbd.sh drives fio) sees what verification costs a
 * consumer of the disk rather than a bare pread loop.
 *
 *   verified-nbd PKG VERIFIED_SOCKET PLAIN_SOCKET
 *
 * Serves until SIGTERM or SIGINT.  The package's signature is not
 * checked (it plays no part in reads); its members are, as `run` does.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>

#include "appliances/package.h"
#include "imgfmt.h"
#include "nbd/server.h"

static void *serve(void *arg)
{
	nbd_server__run(arg);
	return NULL;
}

static int start(imgfmt_image *img, const char *sock, struct nbd_server **s,
		 pthread_t *t)
{
	struct nbd_server_opts o = { .socket_path = sock, .read_only = 1 };

	if (nbd_server__create(img, &o, s) < 0) {
		fprintf(stderr, "%s: %s\n", sock, nbd__error());
		return -1;
	}
	return pthread_create(t, NULL, serve, *s) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
	struct package *p;
	imgfmt_image *plain, *verified;
	struct nbd_server *sv, *sp;
	pthread_t tv, tp;
	sigset_t stop;
	int sig;

	if (argc != 4) {
		fprintf(stderr, "usage: verified-nbd PKG VERIFIED_SOCKET "
			"PLAIN_SOCKET\n");
		return 2;
	}
	if (package__open(argv[1], &p) < 0 ||
	    package__verify_members(p, false) < 0) {
		fprintf(stderr, "%s\n", package__error());
		return 1;
	}
	struct package_member *d = &p->members[p->disk];
	struct imgfmt_open_opts o = { .format = "avd", .offset = d->offset,
				      .length = d->size };
	if (imgfmt__open(p->path, &o, &plain) < 0 ||
	    package__open_disk(p, &verified) < 0) {
		fprintf(stderr, "opening the disk failed\n");
		return 1;
	}
	/* Threads inherit the mask: only sigwait below takes the signals. */
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (start(verified, argv[2], &sv, &tv) < 0 ||
	    start(plain, argv[3], &sp, &tp) < 0)
		return 1;
	sigwait(&stop, &sig);
	nbd_server__stop(sv);
	nbd_server__stop(sp);
	pthread_join(tv, NULL);
	pthread_join(tp, NULL);
	nbd_server__destroy(sv);
	nbd_server__destroy(sp);
	imgfmt__close(verified);
	imgfmt__close(plain);
	package__close(p);
	return 0;
}
