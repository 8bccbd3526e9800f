/*
 * cmd-img-mount.c - looking inside images without booting them:
 * `appliance img attach|mount|unmount|ls|cat|cp-in|cp-out|edit`.
 *
 * The work is in mount/ (FUSE and libguestfs); this file parses options,
 * prints, daemonizes for --background, and runs $EDITOR for edit.
 *
 * It is linked into the helper program appliance-mount only (the
 * Makefile's mount helper rule), so that libguestfs and libfuse are not
 * mapped into every `appliance` process (a `run` monitor among them):
 * the `appliance` binary's cli/cmd-img-mount.c execs the helper.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli.h"
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
static const char *log_path;  /* --log: the daemon's stderr from then on */

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
	int log = log_path ? open(log_path, O_WRONLY | O_CREAT | O_APPEND |
				  O_CLOEXEC, 0644) : -1;
	if (null >= 0) {
		dup2(null, 0);
		dup2(null, 1);
		dup2(log >= 0 ? log : null, 2);
		close(null);
	}
	if (log >= 0)
		close(log);
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
		{ "log", required_argument, NULL, 'L' },
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
		case 'L': log_path = optarg; break;
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

/* ---- libguestfs commands ------------------------------------------------ */

/* Options shared by mount, ls, cat, cp-in, cp-out and edit. */
struct guest_args {
	struct guest_opts go;
	int background;
};

enum { OPT_RW = 1000, OPT_PART, OPT_INSPECT, OPT_BG, OPT_LOG };

/* Returns -1 to go on, or an exit status. */
static int parse_guest_args(int argc, char **argv, struct guest_args *a,
			    int allow_rw, int allow_bg)
{
	static const struct option opts[] = {
		{ "rw", no_argument, NULL, OPT_RW },
		{ "format", required_argument, NULL, 'f' },
		{ "partition", required_argument, NULL, OPT_PART },
		{ "inspect", no_argument, NULL, OPT_INSPECT },
		{ "background", no_argument, NULL, OPT_BG },
		{ "log", required_argument, NULL, OPT_LOG },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t n;
	int c;

	memset(a, 0, sizeof(*a));
	a->go.partition = -1;
	optind = 1;
	while ((c = getopt_long(argc, argv, "f:vh", opts, NULL)) != -1) {
		switch (c) {
		case OPT_RW:
			if (!allow_rw)
				return cli__usage("img", "img %s: no --rw "
						  "(it writes anyway or only "
						  "reads)", argv[0]);
			a->go.rw = 1;
			break;
		case 'f': a->go.format = optarg; break;
		case OPT_PART:
			if (cli__parse_u64(optarg, &n) < 0 || n > 4096)
				return cli__usage("img", "img %s: bad "
						  "--partition '%s'", argv[0],
						  optarg);
			a->go.partition = (int)n;
			break;
		case OPT_INSPECT: a->go.inspect = 1; break;
		case OPT_BG:
			if (!allow_bg)
				return cli__usage("img", "img %s: no "
						  "--background", argv[0]);
			a->background = 1;
			break;
		case OPT_LOG:
			if (!allow_bg)
				return cli__usage("img", "img %s: no --log",
						  argv[0]);
			log_path = optarg;
			break;
		case 'v': a->go.verbose = 1; break;
		case 'h': fputs(cmd_img_help, stdout); return EXIT_OK;
		default:
			return cli__usage("img", "img %s: bad option", argv[0]);
		}
	}
	if (a->go.inspect && a->go.partition >= 0)
		return cli__usage("img", "img %s: --partition and --inspect "
				  "exclude each other", argv[0]);
	return -1;
}

static int open_guest(struct guest_args *a, const char *image,
		      struct guest **g)
{
	a->go.image = image;
	/* Our NBD server writes to sockets QEMU may close first. */
	signal(SIGPIPE, SIG_IGN);
	if (guest__open(&a->go, g) < 0) {
		cli__error("%s", mount__error());
		return -1;
	}
	return 0;
}

/* Close and report: the exit status of the whole command. */
static int close_guest(struct guest *g, int status)
{
	if (guest__close(g) < 0) {
		cli__error("%s", mount__error());
		return EXIT_FAIL;
	}
	return status;
}

int img_mount(int argc, char **argv)
{
	struct guest_args a;
	struct guest *g;
	int rc = parse_guest_args(argc, argv, &a, 1, 1);

	if (rc >= 0)
		return rc;
	if (argc - optind != 2)
		return cli__usage("img", "img mount: expected IMAGE DIR");
	const char *image = argv[optind], *dir = argv[optind + 1];
	struct stat st;
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		cli__error("%s: not a directory", dir);
		return EXIT_FAIL;
	}
	ready_what = a.go.rw ? "mounted read-write" : "mounted read-only";
	ready_where = dir;
	if (a.background) {
		rc = go_background();
		if (rc >= 0)
			return rc;
	}
	if (open_guest(&a, image, &g) < 0)
		return EXIT_FAIL;
	rc = EXIT_OK;
	if (guest__mount_local(g, dir, notify_ready, NULL) < 0) {
		cli__error("%s", mount__error());
		rc = EXIT_FAIL;
	}
	return close_guest(g, rc);
}

int img_ls(int argc, char **argv)
{
	struct guest_args a;
	struct guest *g;
	char **names;
	int rc = parse_guest_args(argc, argv, &a, 0, 0);

	if (rc >= 0)
		return rc;
	if (argc - optind < 1 || argc - optind > 2)
		return cli__usage("img", "img ls: expected IMAGE [DIR]");
	const char *dir = argc - optind == 2 ? argv[optind + 1] : "/";
	if (open_guest(&a, argv[optind], &g) < 0)
		return EXIT_FAIL;
	rc = EXIT_OK;
	if (guest__ls(g, dir, &names) < 0) {
		cli__error("%s", mount__error());
		rc = EXIT_FAIL;
	} else {
		for (char **p = names; *p; p++) {
			cli__print_untrusted(stdout, *p);
			putchar('\n');
		}
		guest__free_list(names);
	}
	return close_guest(g, rc);
}

int img_cat(int argc, char **argv)
{
	struct guest_args a;
	struct guest *g;
	int rc = parse_guest_args(argc, argv, &a, 0, 0);

	if (rc >= 0)
		return rc;
	if (argc - optind < 2)
		return cli__usage("img", "img cat: expected IMAGE PATH...");
	if (open_guest(&a, argv[optind], &g) < 0)
		return EXIT_FAIL;
	rc = EXIT_OK;
	fflush(stdout);
	for (int i = optind + 1; i < argc && rc == EXIT_OK; i++)
		if (guest__cat(g, argv[i], STDOUT_FILENO) < 0) {
			cli__error("%s", mount__error());
			rc = EXIT_FAIL;
		}
	return close_guest(g, rc);
}

int img_cp_in(int argc, char **argv)
{
	struct guest_args a;
	struct guest *g;
	int rc = parse_guest_args(argc, argv, &a, 0, 0);

	if (rc >= 0)
		return rc;
	if (argc - optind < 3)
		return cli__usage("img", "img cp-in: expected IMAGE LOCAL... "
				  "GUESTDIR");
	a.go.rw = 1;
	if (open_guest(&a, argv[optind], &g) < 0)
		return EXIT_FAIL;
	rc = EXIT_OK;
	for (int i = optind + 1; i < argc - 1 && rc == EXIT_OK; i++)
		if (guest__copy_in(g, argv[i], argv[argc - 1]) < 0) {
			cli__error("%s", mount__error());
			rc = EXIT_FAIL;
		}
	return close_guest(g, rc);
}

int img_cp_out(int argc, char **argv)
{
	struct guest_args a;
	struct guest *g;
	int rc = parse_guest_args(argc, argv, &a, 0, 0);

	if (rc >= 0)
		return rc;
	if (argc - optind < 3)
		return cli__usage("img", "img cp-out: expected IMAGE PATH... "
				  "LOCALDIR");
	if (open_guest(&a, argv[optind], &g) < 0)
		return EXIT_FAIL;
	rc = EXIT_OK;
	for (int i = optind + 1; i < argc - 1 && rc == EXIT_OK; i++)
		if (guest__copy_out(g, argv[i], argv[argc - 1]) < 0) {
			cli__error("%s", mount__error());
			rc = EXIT_FAIL;
		}
	return close_guest(g, rc);
}

/* Whole-file equality, to skip the upload when the editor changed
 * nothing. */
static int same_file(const char *a, const char *b)
{
	FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
	int same = fa && fb;
	char ba[65536], bb[65536];

	while (same) {
		size_t na = fread(ba, 1, sizeof(ba), fa);
		size_t nb = fread(bb, 1, sizeof(bb), fb);
		if (na != nb || memcmp(ba, bb, na) != 0)
			same = 0;
		else if (na == 0)
			break;
	}
	if (fa)
		fclose(fa);
	if (fb)
		fclose(fb);
	return same;
}

static int copy_file(const char *from, const char *to)
{
	FILE *in = fopen(from, "rb"), *out = in ? fopen(to, "wb") : NULL;
	char buf[65536];
	size_t n;
	int ok = in && out;

	while (ok && (n = fread(buf, 1, sizeof(buf), in)) > 0)
		ok = fwrite(buf, 1, n, out) == n;
	if (in && ferror(in))
		ok = 0;
	if (in)
		fclose(in);
	if (out && fclose(out) != 0)
		ok = 0;
	return ok ? 0 : -1;
}

/* $EDITOR (default vi) on `file`, through the shell so that EDITOR may
 * carry arguments ("code --wait"). */
static int run_editor(const char *file)
{
	const char *ed = getenv("VISUAL");
	int status;

	if (!ed || !*ed)
		ed = getenv("EDITOR");
	if (!ed || !*ed)
		ed = "vi";
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		execl("/bin/sh", "sh", "-c", "exec $0 \"$1\"", ed, file,
		      (char *)NULL);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

int img_edit(int argc, char **argv)
{
	struct guest_args a;
	struct guest *g;
	char dir[] = "/tmp/appliance-edit.XXXXXX", work[PATH_MAX],
	     orig[PATH_MAX];
	int rc = parse_guest_args(argc, argv, &a, 0, 0);

	if (rc >= 0)
		return rc;
	if (argc - optind != 2)
		return cli__usage("img", "img edit: expected IMAGE PATH");
	const char *path = argv[optind + 1];
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	if (!*base)
		return cli__usage("img", "img edit: '%s' names a directory",
				  path);
	if (!mkdtemp(dir)) {
		cli__error("%s: %s", dir, strerror(errno));
		return EXIT_FAIL;
	}
	/* Keep the guest's file name: editors pick a mode from it. */
	snprintf(work, sizeof(work), "%s/%s", dir, base);
	snprintf(orig, sizeof(orig), "%s/.orig", dir);
	a.go.rw = 1;
	if (open_guest(&a, argv[optind], &g) < 0) {
		rmdir(dir);
		return EXIT_FAIL;
	}
	rc = EXIT_OK;
	if (guest__download(g, path, work) < 0) {
		cli__error("%s", mount__error());
		rc = EXIT_FAIL;
	} else if (copy_file(work, orig) < 0) {
		cli__error("%s: cannot keep a copy: %s", orig, strerror(errno));
		rc = EXIT_FAIL;
	} else if (run_editor(work) < 0) {
		cli__error("the editor failed; %s left unchanged", path);
		rc = EXIT_FAIL;
	} else if (same_file(work, orig)) {
		fprintf(stderr, "appliance: %s unchanged\n", path);
	} else if (guest__upload(g, work, path) < 0) {
		cli__error("%s (your edit is kept in %s)", mount__error(),
			   work);
		rc = EXIT_FAIL;
		orig[0] = '\0';
	}
	rc = close_guest(g, rc);
	if (orig[0]) {
		unlink(work);
		unlink(orig);
		rmdir(dir);
	}
	return rc;
}
