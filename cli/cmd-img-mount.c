/*
 * cmd-img-mount.c - looking inside images without booting them:
 * `appliance img attach|mount|unmount|ls|cat|cp-in|cp-out|edit`.
 *
 * The work is in mount/ (FUSE and libguestfs); this file parses options,
 * prints, daemonizes for --background, and runs $EDITOR for edit.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "mount/mount.h"

/* How long `img unmount` waits for a server to flush and exit.  A
 * libguestfs appliance under TCG can take tens of seconds to sync and
 * power off. */
#define UNMOUNT_TIMEOUT_S 600

/* ---- --background ------------------------------------------------------ */

/* The child writes one byte here once its mount is ready; the parent
 * exits 0 on that byte, or with the child's status if the pipe closes
 * without it (the child has printed why). */
static int ready_fd = -1;
static const char *ready_what, *ready_where;

static void notify_ready(void *opaque)
{
	(void)opaque;
	if (ready_fd < 0) {
		fprintf(stderr, "appliance: %s on %s; stop with 'appliance img "
			"unmount %s' or Ctrl-C\n", ready_what, ready_where,
			ready_where);
		return;
	}
	/* From here on nobody is reading our output: detach from the
	 * caller's terminal or pipe so that `$(appliance img attach
	 * --background ...)` returns. */
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null >= 0) {
		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
		close(null);
	}
	ssize_t w;
	do
		w = write(ready_fd, "R", 1);
	while (w < 0 && errno == EINTR);
	close(ready_fd);
	ready_fd = -1;
}

/* Returns -1 in the child (carry on), or an exit status for the parent. */
static int go_background(void)
{
	int p[2], status;
	char c;
	ssize_t n;

	if (pipe2(p, O_CLOEXEC) < 0) {
		cli__error("pipe: %s", strerror(errno));
		return EXIT_FAIL;
	}
	pid_t pid = fork();
	if (pid < 0) {
		cli__error("fork: %s", strerror(errno));
		return EXIT_FAIL;
	}
	if (pid == 0) {
		close(p[0]);
		setsid();
		ready_fd = p[1];
		return -1;
	}
	close(p[1]);
	do
		n = read(p[0], &c, 1);
	while (n < 0 && errno == EINTR);
	close(p[0]);
	if (n == 1)
		return EXIT_OK;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
		return WEXITSTATUS(status);
	return EXIT_FAIL;
}

/* ---- attach / unmount --------------------------------------------------- */

int img_attach(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "rw", no_argument, NULL, 'w' },
		{ "format", required_argument, NULL, 'f' },
		{ "background", no_argument, NULL, 'B' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct attach_opts ao = { 0 };
	int c, background = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "f:h", opts, NULL)) != -1) {
		switch (c) {
		case 'w': ao.rw = 1; break;
		case 'f': ao.format = optarg; break;
		case 'B': background = 1; break;
		case 'h': fputs(cmd_img_help, stdout); return EXIT_OK;
		default: return cli__usage("img", "img attach: bad option");
		}
	}
	if (argc - optind != 2)
		return cli__usage("img", "img attach: expected IMAGE FILE");
	ao.image = argv[optind];
	ao.file = argv[optind + 1];
	ao.ready = notify_ready;
	ready_what = ao.rw ? "attached read-write" : "attached read-only";
	ready_where = ao.file;
	if (background) {
		int rc = go_background();
		if (rc >= 0)
			return rc;
	}
	if (attach__run(&ao) < 0) {
		cli__error("%s", mount__error());
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

int img_unmount(int argc, char **argv)
{
	optind = 1;
	if (argc == 2 && (strcmp(argv[1], "-h") == 0 ||
			  strcmp(argv[1], "--help") == 0)) {
		fputs(cmd_img_help, stdout);
		return EXIT_OK;
	}
	if (argc != 2)
		return cli__usage("img", "img unmount: expected DIR or FILE");
	if (mount__unmount(argv[1], UNMOUNT_TIMEOUT_S) < 0) {
		cli__error("%s", mount__error());
		return EXIT_FAIL;
	}
	return EXIT_OK;
}
