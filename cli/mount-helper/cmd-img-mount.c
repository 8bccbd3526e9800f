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

/* ---- options ------------------------------------------------------------ */

/* What each sub-command accepts, and the operands it wants after the
 * options.  attach (the FUSE raw view) knows --rw, --format, --background
 * and --log; the libguestfs commands also --partition, --inspect and
 * --verbose.  Of those, only mount takes --rw, --background and --log:
 * cp-in and edit write anyway, ls, cat and cp-out only read, and the
 * one-shot commands have nothing to serve in the background. */
#define CMD_RW    1u    /* --rw */
#define CMD_BG    2u    /* --background, --log */
#define CMD_GUEST 4u    /* --partition, --inspect, --verbose, -v */

enum { ATTACH, MOUNT, LS, CAT, CP_IN, CP_OUT, EDIT };

static const struct img_cmd {
	unsigned flags;
	int min_args, max_args;     /* operands, IMAGE included */
	const char *usage;          /* "expected ..." */
} cmds[] = {
	[ATTACH] = { CMD_RW | CMD_BG, 2, 2, "IMAGE FILE" },
	[MOUNT] = { CMD_RW | CMD_BG | CMD_GUEST, 2, 2, "IMAGE DIR" },
	[LS] = { CMD_GUEST, 1, 2, "IMAGE [DIR]" },
	[CAT] = { CMD_GUEST, 2, INT_MAX, "IMAGE PATH..." },
	[CP_IN] = { CMD_GUEST, 3, INT_MAX, "IMAGE LOCAL... GUESTDIR" },
	[CP_OUT] = { CMD_GUEST, 3, INT_MAX, "IMAGE PATH... LOCALDIR" },
	[EDIT] = { CMD_GUEST, 2, 2, "IMAGE PATH" },
};

enum { OPT_RW = 1000, OPT_PART, OPT_INSPECT, OPT_BG, OPT_LOG };

/* Every option, and the flag a command needs for getopt to know it at
 * all (0: every command knows it).  A known option the command does not
 * take (--rw, --background, --log on a libguestfs command) is refused
 * with a reason rather than as unknown. */
static const struct {
	struct option opt;
	unsigned known_with;
} options[] = {
	{ { "rw", no_argument, NULL, OPT_RW }, 0 },
	{ { "format", required_argument, NULL, 'f' }, 0 },
	{ { "partition", required_argument, NULL, OPT_PART }, CMD_GUEST },
	{ { "inspect", no_argument, NULL, OPT_INSPECT }, CMD_GUEST },
	{ { "background", no_argument, NULL, OPT_BG }, 0 },
	{ { "log", required_argument, NULL, OPT_LOG }, 0 },
	{ { "verbose", no_argument, NULL, 'v' }, CMD_GUEST },
	{ CLI_PKG_KEY_OPTION, 0 },
	{ CLI_PKG_INSECURE_OPTION, 0 },
	{ { "help", no_argument, NULL, 'h' }, 0 },
};
#define NR_OPTIONS (sizeof(options) / sizeof(options[0]))

struct img_args {
	struct guest_opts go;       /* format, rw, partition, ... */
	int background;
	int first;                  /* argv[first] is IMAGE */
};

/* Parse the options and count the operands of sub-command argv[0]
 * (cmds[which]).  Returns -1 to go on, or an exit status. */
static int parse_args(int argc, char **argv, int which, struct img_args *a)
{
	const struct img_cmd *cmd = &cmds[which];
	struct option opts[NR_OPTIONS + 1];
	size_t n = 0;
	uint64_t v;
	int c;

	for (size_t i = 0; i < NR_OPTIONS; i++)
		if ((options[i].known_with & cmd->flags) ==
		    options[i].known_with)
			opts[n++] = options[i].opt;
	memset(&opts[n], 0, sizeof(opts[n]));
	memset(a, 0, sizeof(*a));
	a->go.partition = -1;
	optind = 1;
	while ((c = getopt_long(argc, argv, cmd->flags & CMD_GUEST ? "f:vh"
				: "f:h", opts, NULL)) != -1) {
		switch (c) {
		case OPT_RW:
			if (!(cmd->flags & CMD_RW))
				return cli__usage("img", "img %s: no --rw "
						  "(it writes anyway or only "
						  "reads)", argv[0]);
			a->go.rw = 1;
			break;
		case 'f': a->go.format = optarg; break;
		case OPT_PART:
			if (cli__parse_u64(optarg, &v) < 0 || v > 4096)
				return cli__usage("img", "img %s: bad "
						  "--partition '%s'", argv[0],
						  optarg);
			a->go.partition = (int)v;
			break;
		case OPT_INSPECT: a->go.inspect = 1; break;
		case OPT_BG:
			if (!(cmd->flags & CMD_BG))
				return cli__usage("img", "img %s: no "
						  "--background", argv[0]);
			a->background = 1;
			break;
		case OPT_LOG:
			if (!(cmd->flags & CMD_BG))
				return cli__usage("img", "img %s: no --log",
						  argv[0]);
			log_path = optarg;
			break;
		case 'v': a->go.verbose = 1; break;
		case 'h': fputs(cmd_img_help, stdout); return EXIT_OK;
		default:
			if (cli__img_trust_option(c, optarg))
				break;
			return cli__usage("img", "img %s: bad option", argv[0]);
		}
	}
	if (a->go.inspect && a->go.partition >= 0)
		return cli__usage("img", "img %s: --partition and --inspect "
				  "exclude each other", argv[0]);
	if (argc - optind < cmd->min_args || argc - optind > cmd->max_args)
		return cli__usage("img", "img %s: expected %s", argv[0],
				  cmd->usage);
	a->first = optind;
	return -1;
}

/* ---- attach / unmount --------------------------------------------------- */

/* An appliance package opens as its verified disk (cli/img-open.c), which
 * the mount library then serves as given; anything else it opens itself. */
static int open_package(const char *image, const char *format, int rw,
			imgfmt_image **img)
{
	struct imgfmt_open_opts o = { .flags = rw ? IMGFMT_OPEN_RDWR : 0 };

	*img = NULL;
	if (format || !cli__is_package(image))
		return 0;
	return cli__img_open(image, &o, img);
}

int img_attach(int argc, char **argv)
{
	struct img_args a;
	int rc = parse_args(argc, argv, ATTACH, &a);

	if (rc >= 0)
		return rc;
	struct attach_opts ao = {
		.image = argv[a.first], .file = argv[a.first + 1],
		.format = a.go.format, .rw = a.go.rw, .ready = notify_ready,
	};
	ready_what = ao.rw ? "attached read-write" : "attached read-only";
	ready_where = ao.file;
	if (a.background) {
		rc = go_background();
		if (rc >= 0)
			return rc;
	}
	if (open_package(ao.image, ao.format, ao.rw, &ao.img) < 0)
		return EXIT_FAIL;
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

static int open_guest(struct img_args *a, const char *image,
		      struct guest **g)
{
	a->go.image = image;
	if (open_package(image, a->go.format, a->go.rw, &a->go.img) < 0)
		return -1;
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
	struct img_args a;
	struct guest *g;
	int rc = parse_args(argc, argv, MOUNT, &a);

	if (rc >= 0)
		return rc;
	const char *image = argv[a.first], *dir = argv[a.first + 1];
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
	struct img_args a;
	struct guest *g;
	char **names;
	int rc = parse_args(argc, argv, LS, &a);

	if (rc >= 0)
		return rc;
	const char *dir = a.first + 1 < argc ? argv[a.first + 1] : "/";
	if (open_guest(&a, argv[a.first], &g) < 0)
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

/* cat, cp-in and cp-out: open IMAGE, then op(g, path, last) for each
 * operand after IMAGE (the last one excluded when `to_last`), stopping at
 * the first failure. */
static int each_path(int argc, char **argv, int which, int rw,
		     int to_last, int (*op)(struct guest *, const char *,
					    const char *))
{
	struct img_args a;
	struct guest *g;
	int rc = parse_args(argc, argv, which, &a);

	if (rc >= 0)
		return rc;
	if (rw)
		a.go.rw = 1;
	if (open_guest(&a, argv[a.first], &g) < 0)
		return EXIT_FAIL;
	rc = EXIT_OK;
	fflush(stdout);
	for (int i = a.first + 1; i < argc - to_last && rc == EXIT_OK; i++)
		if (op(g, argv[i], argv[argc - 1]) < 0) {
			cli__error("%s", mount__error());
			rc = EXIT_FAIL;
		}
	return close_guest(g, rc);
}

static int cat_one(struct guest *g, const char *path, const char *unused)
{
	(void)unused;
	return guest__cat(g, path, STDOUT_FILENO);
}

int img_cat(int argc, char **argv)
{
	return each_path(argc, argv, CAT, 0, 0, cat_one);
}

int img_cp_in(int argc, char **argv)
{
	return each_path(argc, argv, CP_IN, 1, 1, guest__copy_in);
}

int img_cp_out(int argc, char **argv)
{
	return each_path(argc, argv, CP_OUT, 0, 1, guest__copy_out);
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
	struct img_args a;
	struct guest *g;
	char dir[] = "/tmp/appliance-edit.XXXXXX", work[PATH_MAX],
	     orig[PATH_MAX];
	int rc = parse_args(argc, argv, EDIT, &a);

	if (rc >= 0)
		return rc;
	const char *path = argv[a.first + 1];
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
	if (open_guest(&a, argv[a.first], &g) < 0) {
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
