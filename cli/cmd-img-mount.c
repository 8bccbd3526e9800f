/*
 * cmd-img-mount.c - `appliance img attach|mount|unmount|ls|cat|cp-in|
 * cp-out|edit`, handed to the helper program appliance-mount.
 *
 * The mount code needs libguestfs and libfuse, whose mappings cost every
 * process that loads them ~15 MiB of resident memory; a `run` monitor has
 * no use for them (its overhead target is Firecracker's < 5 MiB).  So the
 * `appliance` binary does not link them: these sub-commands exec
 * appliance-mount (the same command-line front end, built with the mount
 * code: cli/mount-helper/), looked for next to the running binary, then
 * in ../libexec/appliance/ relative to it (`make install`'s layout).  The
 * exec keeps the process: exit status, signals and --background behave
 * as if the command ran here.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define HELPER "appliance-mount"

/* Where the helper is: next to /proc/self/exe, or in libexec beside its
 * bin directory.  Returns 0 with the path in buf, -1 if neither exists. */
static int find_helper(char *buf, size_t len)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	if (n <= 0)
		return -1;
	self[n] = '\0';
	char *slash = strrchr(self, '/');
	if (!slash)
		return -1;
	*slash = '\0';
	static const char *const where[] = {
		"%s/" HELPER,
		"%s/../libexec/appliance/" HELPER,
	};
	for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
		if ((size_t)snprintf(buf, len, where[i], self) >= len)
			continue;
		if (access(buf, X_OK) == 0)
			return 0;
	}
	return -1;
}

/* argv[0] is the img sub-command's name: run `appliance-mount img NAME
 * ARGS...`.  Returns only on failure. */
static int exec_helper(int argc, char **argv)
{
	char path[PATH_MAX + 64];
	char **av = calloc((size_t)argc + 3, sizeof(*av));

	if (!av) {
		cli__error("out of memory");
		return EXIT_FAIL;
	}
	if (find_helper(path, sizeof(path)) < 0) {
		cli__error("img %s: the helper program %s is not installed next "
			   "to appliance (or in ../libexec/appliance/)",
			   argv[0], HELPER);
		free(av);
		return EXIT_FAIL;
	}
	av[0] = (char *)"appliance";
	av[1] = (char *)"img";
	for (int i = 0; i < argc; i++)
		av[i + 2] = argv[i];
	fflush(NULL);
	execv(path, av);
	cli__error("img %s: cannot run %s: %s", argv[0], path,
		   strerror(errno));
	free(av);
	return EXIT_FAIL;
}

int img_attach(int argc, char **argv) { return exec_helper(argc, argv); }
int img_unmount(int argc, char **argv) { return exec_helper(argc, argv); }
int img_mount(int argc, char **argv) { return exec_helper(argc, argv); }
int img_ls(int argc, char **argv) { return exec_helper(argc, argv); }
int img_cat(int argc, char **argv) { return exec_helper(argc, argv); }
int img_cp_in(int argc, char **argv) { return exec_helper(argc, argv); }
int img_cp_out(int argc, char **argv) { return exec_helper(argc, argv); }
int img_edit(int argc, char **argv) { return exec_helper(argc, argv); }
