/*
 * cli.h - shared pieces of the `appliance` command-line front end.
 *
 * Only the CLI prints and picks exit statuses: 0 success, 1 failure (or
 * problems found), 2 usage error.  Each sub-command lives in its own file
 * (cmd-img.c, ...) and is listed in the table in main.c.
 */
#ifndef CLI_H
#define CLI_H

#include <stdint.h>
#include <stdio.h>

#include "imgfmt.h"

#define EXIT_OK 0
#define EXIT_FAIL 1
#define EXIT_USAGE 2

struct cli_command {
	const char *name;
	int (*run)(int argc, char **argv);   /* argv[0] is the command name */
	const char *summary;
	const char *help;                    /* full text for `help NAME` */
};

/* Print "appliance: <message>" to stderr, control bytes but line breaks
 * escaped (\x1b): messages quote what images and packages say. */
void cli__error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print a usage error plus a pointer to `appliance help CMD`; returns 2. */
int cli__usage(const char *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Print attacker-chosen text with its control bytes escaped as \xHH. */
void cli__print_untrusted(FILE *f, const char *s);

/* Parse a size such as "512", "64K", "10G", "1.5M" (binary units, optional
 * trailing "iB"/"B").  Returns 0 or -1 on malformed or overflowing input. */
int cli__parse_size(const char *s, uint64_t *out);
/* Parse a non-negative decimal or 0x-hex integer. */
int cli__parse_u64(const char *s, uint64_t *out);
/* "1.5 GiB" style rendering into buf. */
const char *cli__human_size(uint64_t n, char *buf, size_t len);

/* Remove a directory tree (symlinks are removed, not followed). */
int cli__remove_tree(const char *path);

/* Print a string as a JSON string literal (with quotes). */
void cli__json_string(FILE *f, const char *s);

/* Replace this process with the helper program HELPER (appliance-mount,
 * appliance-run), found next to the running binary or in
 * ../libexec/appliance/, as `appliance [PREFIX] ARGV...`.  Helpers hold
 * the code that needs heavy libraries (or must not map them), so that
 * each process maps only what its job needs.  Returns only on failure,
 * having printed why. */
int cli__exec_helper(const char *helper, const char *prefix, int argc,
		     char **argv);

int cmd_img(int argc, char **argv);
int cmd_img_convert(int argc, char **argv);
int cmd_img_compare(int argc, char **argv);
int img_serve(int argc, char **argv);
int img_attach(int argc, char **argv);   /* cmd-img-mount.c */
int img_unmount(int argc, char **argv);
int img_mount(int argc, char **argv);
int img_ls(int argc, char **argv);
int img_cat(int argc, char **argv);
int img_cp_in(int argc, char **argv);
int img_cp_out(int argc, char **argv);
int img_edit(int argc, char **argv);
extern const char cmd_img_help[];
int cmd_build(int argc, char **argv);
extern const char cmd_build_help[];
int cmd_key(int argc, char **argv);
extern const char cmd_key_help[];
int cmd_sign(int argc, char **argv);
extern const char cmd_sign_help[];
int cmd_verify(int argc, char **argv);
extern const char cmd_verify_help[];
int cmd_trust(int argc, char **argv);
extern const char cmd_trust_help[];
char *cli__passphrase(const char *file, int confirm); /* cmd-key.c */
void cli__passphrase_free(char *pw);
int cmd_run(int argc, char **argv);
extern const char cmd_run_help[];

/* cmd-pkg.c: packages and repositories */
struct minisign_seckey;
int cmd_pack(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_publish(int argc, char **argv);
int cmd_pull(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_rm(int argc, char **argv);
extern const char cmd_pack_help[], cmd_inspect_help[], cmd_publish_help[],
	cmd_pull_help[], cmd_list_help[], cmd_rm_help[];
/* Load a secret key file, asking for its passphrase only if needed. */
int cli__load_secret_key(const char *path, const char *passphrase_file,
			 struct minisign_seckey *sk);
/* Pull ref into the cache (progress on a terminal); prints errors. */
int cli__pull(const char *ref, const char *keyfile, int insecure,
	      char **path);

/* Is the file an appliance package (a ustar whose first member is the
 * manifest)?  And check one, printing the result. */
int cli__is_package(const char *path);

/* --key K.pub and --insecure, which every `img` command that can open a
 * package takes (cli/img-open.c): the long options for its table, and
 * their handler, which records them for cli__img_open (1 if c was one of
 * them, else 0). */
enum { CLI_OPT_PKG_KEY = 1900, CLI_OPT_PKG_INSECURE };
#define CLI_PKG_KEY_OPTION { "key", required_argument, NULL, CLI_OPT_PKG_KEY }
#define CLI_PKG_INSECURE_OPTION                                      \
	{ "insecure", no_argument, NULL, CLI_OPT_PKG_INSECURE }
#define CLI_PKG_TRUST_OPTIONS CLI_PKG_KEY_OPTION, CLI_PKG_INSECURE_OPTION
int cli__img_trust_option(int c, const char *arg);

/* Open what an `img` command was given (cli/img-open.c): an image, or a
 * package's disk, read-only and verified as it is read.  Prints errors;
 * 0 or -1. */
int cli__img_open(const char *path, const struct imgfmt_open_opts *o,
		  imgfmt_image **img);
int cli__verify_package(const char *path, const char *keyfile, int full,
			int quiet);

#endif /* CLI_H */
