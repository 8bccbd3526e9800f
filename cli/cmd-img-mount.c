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
#include "cli.h"

static int exec_helper(int argc, char **argv)
{
	return cli__exec_helper("appliance-mount", "img", argc, argv);
}

int img_attach(int argc, char **argv) { return exec_helper(argc, argv); }
int img_unmount(int argc, char **argv) { return exec_helper(argc, argv); }
int img_mount(int argc, char **argv) { return exec_helper(argc, argv); }
int img_ls(int argc, char **argv) { return exec_helper(argc, argv); }
int img_cat(int argc, char **argv) { return exec_helper(argc, argv); }
int img_cp_in(int argc, char **argv) { return exec_helper(argc, argv); }
int img_cp_out(int argc, char **argv) { return exec_helper(argc, argv); }
int img_edit(int argc, char **argv) { return exec_helper(argc, argv); }
