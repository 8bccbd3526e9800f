/*
 * main.c - `appliance`: dispatch to a sub-command.
 *
 * One table maps command names to the functions in cmd-*.c (git's and
 * kvmtool's layout), and `appliance help [CMD]` prints from the same table.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char main_help[] =
	"usage: appliance COMMAND [ARGS...]\n"
	"\n"
	"Build, sign, distribute and run virtual appliances, and work with\n"
	"virtual disk images.\n";

static int cmd_help(int argc, char **argv);

static const struct cli_command commands[] = {
	{ "img", cmd_img, "work with disk images (create, info, convert, ...)",
	  cmd_img_help },
	{ "key", cmd_key, "make signing keys (minisign format)", cmd_key_help },
	{ "sign", cmd_sign, "sign files (writes FILE.minisig)", cmd_sign_help },
	{ "verify", cmd_verify, "check a file's signature", cmd_verify_help },
	{ "trust", cmd_trust, "manage trusted signing keys", cmd_trust_help },
	{ "run", cmd_run, "boot a kernel in a microVM (builtin KVM monitor)",
	  cmd_run_help },
	{ "build", cmd_build, "build an appliance from a recipe.toml", cmd_build_help },
	{ "pack", cmd_pack, "assemble a build directory into a package",
	  cmd_pack_help },
	{ "inspect", cmd_inspect, "show a package's manifest and signature",
	  cmd_inspect_help },
	{ "publish", cmd_publish, "add packages to a signed repository",
	  cmd_publish_help },
	{ "pull", cmd_pull, "download and verify a package into the cache",
	  cmd_pull_help },
	{ "list", cmd_list, "list cached packages", cmd_list_help },
	{ "rm", cmd_rm, "remove cached packages", cmd_rm_help },
	{ "help", cmd_help, "show help for a command", NULL },
	{ NULL, NULL, NULL, NULL },
};

static void print_overview(FILE *f)
{
	fputs(main_help, f);
	fputs("\ncommands:\n", f);
	for (const struct cli_command *c = commands; c->name; c++)
		fprintf(f, "  %-10s %s\n", c->name, c->summary);
	fputs("\n'appliance help COMMAND' shows a command's options.\n", f);
}

static const struct cli_command *find_command(const char *name)
{
	for (const struct cli_command *c = commands; c->name; c++)
		if (strcmp(c->name, name) == 0)
			return c;
	return NULL;
}

static int cmd_help(int argc, char **argv)
{
	if (argc < 2) {
		print_overview(stdout);
		return EXIT_OK;
	}
	const struct cli_command *c = find_command(argv[1]);
	if (!c || !c->help)
		return cli__usage("help", "no help for '%s'", argv[1]);
	fputs(c->help, stdout);
	return EXIT_OK;
}

/* With stdin, stdout or stderr closed (as some CI runners and daemons
 * start us), the next file opened would take that number and be read or
 * written as if it were the console; give each /dev/null instead. */
static void ensure_std_fds(void)
{
	for (int fd = 0; fd < 3; fd++)
		if (fcntl(fd, F_GETFD) < 0 && errno == EBADF &&
		    open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY) < 0)
			return;
}

int main(int argc, char **argv)
{
	ensure_std_fds();
	if (argc < 2) {
		print_overview(stderr);
		return EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		print_overview(stdout);
		return EXIT_OK;
	}
	if (strcmp(argv[1], "--version") == 0) {
		puts("appliance 0.1");
		return EXIT_OK;
	}
	const struct cli_command *c = find_command(argv[1]);
	if (!c) {
		cli__error("unknown command '%s'", argv[1]);
		print_overview(stderr);
		return EXIT_USAGE;
	}
	return c->run(argc - 1, argv + 1);
}
