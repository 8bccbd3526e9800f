/*
 * cmd-trust.c - `appliance trust ...`: manage the keys `appliance verify`
 * accepts without --key.
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "appliances/trust.h"
#include "cli.h"

const char cmd_trust_help[] =
	"usage: appliance trust SUBCOMMAND [OPTIONS]\n"
	"\n"
	"  add K.pub [--system]\n"
	"        trust a minisign public key (stored as KEYID.pub)\n"
	"  list [--json]\n"
	"        show the trusted keys of both stores\n"
	"  remove KEYID|K.pub [--system]\n"
	"        stop trusting a key\n"
	"\n"
	"Stores: the user's ${XDG_CONFIG_HOME:-~/.config}/appliance/trusted/\n"
	"(or $APPLIANCE_TRUST_DIR), and with --system /etc/appliance/trusted/\n"
	"(or $APPLIANCE_SYSTEM_TRUST_DIR).  verify looks in both, user first.\n"
	"\n"
	"Exit status: 0 ok, 1 failure, 2 usage error.\n";

enum { OPT_SYSTEM = 1000, OPT_JSON };

static const struct option trust_opts[] = {
	{ "system", no_argument, NULL, OPT_SYSTEM },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

struct trust_args {
	int system, json;
};

/* Returns 0, -1 after --help, or a usage exit status. */
static int parse(int argc, char **argv, struct trust_args *a)
{
	int c;

	memset(a, 0, sizeof(*a));
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", trust_opts, NULL)) != -1) {
		switch (c) {
		case OPT_SYSTEM: a->system = 1; break;
		case OPT_JSON: a->json = 1; break;
		case 'h': fputs(cmd_trust_help, stdout); return -1;
		default: return cli__usage("trust", "bad option for 'trust %s'",
					   argv[0]);
		}
	}
	return 0;
}

static int trust_add(int argc, char **argv)
{
	struct trust_args a;
	struct trust_entry *e;
	int rc = parse(argc, argv, &a);

	if (rc)
		return rc < 0 ? EXIT_OK : rc;
	if (argc - optind != 1)
		return cli__usage("trust", "trust add: expected one public key "
				  "file");
	e = malloc(sizeof(*e));
	if (!e) {
		cli__error("out of memory");
		return EXIT_FAIL;
	}
	rc = trust__add(a.system ? TRUST_SYSTEM : TRUST_USER, argv[optind], e);
	if (rc < 0)
		cli__error("%s", trust__error());
	else
		printf("trusted key %s: %s\n", e->keyid, e->path);
	free(e);
	return rc < 0 ? EXIT_FAIL : EXIT_OK;
}

static int trust_list(int argc, char **argv)
{
	struct trust_args a;
	struct trust_entry *list;
	size_t n;
	int rc = parse(argc, argv, &a);

	if (rc)
		return rc < 0 ? EXIT_OK : rc;
	if (argc != optind)
		return cli__usage("trust", "trust list takes no arguments");
	if (trust__list(&list, &n) < 0) {
		cli__error("%s", trust__error());
		return EXIT_FAIL;
	}
	if (a.json)
		printf("[");
	for (size_t i = 0; i < n; i++) {
		const struct trust_entry *e = &list[i];
		const char *scope = e->scope == TRUST_SYSTEM ? "system" : "user";
		if (a.json) {
			printf("%s\n  {\"key_id\": ", i ? "," : "");
			cli__json_string(stdout, e->keyid);
			printf(", \"scope\": \"%s\", \"path\": ", scope);
			cli__json_string(stdout, e->path);
			printf(", \"comment\": ");
			cli__json_string(stdout, e->comment);
			if (e->error[0]) {
				printf(", \"error\": ");
				cli__json_string(stdout, e->error);
			}
			printf("}");
			continue;
		}
		if (e->error[0]) {
			/* Listed, so the admin sees it, but never used. */
			printf("%-16s  %-6s  %s  (unusable: ", "?", scope,
			       e->path);
			cli__print_untrusted(stdout, e->error);
			printf(")\n");
			continue;
		}
		printf("%-16s  %-6s  %s  ", e->keyid, scope, e->path);
		cli__print_untrusted(stdout, e->comment);
		putchar('\n');
	}
	if (a.json)
		printf("%s]\n", n ? "\n" : "");
	free(list);
	return EXIT_OK;
}

static int trust_remove(int argc, char **argv)
{
	struct trust_args a;
	int rc = parse(argc, argv, &a);

	if (rc)
		return rc < 0 ? EXIT_OK : rc;
	if (argc - optind != 1)
		return cli__usage("trust", "trust remove: expected a key id or "
				  "a public key file");
	rc = trust__remove(a.system ? TRUST_SYSTEM : TRUST_USER, argv[optind]);
	if (rc < 0) {
		cli__error("%s", trust__error());
		return EXIT_FAIL;
	}
	printf("removed %d key file%s\n", rc, rc == 1 ? "" : "s");
	return EXIT_OK;
}

int cmd_trust(int argc, char **argv)
{
	if (argc < 2)
		return cli__usage("trust", "trust: missing subcommand");
	if (strcmp(argv[1], "add") == 0)
		return trust_add(argc - 1, argv + 1);
	if (strcmp(argv[1], "list") == 0)
		return trust_list(argc - 1, argv + 1);
	if (strcmp(argv[1], "remove") == 0)
		return trust_remove(argc - 1, argv + 1);
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		fputs(cmd_trust_help, stdout);
		return EXIT_OK;
	}
	return cli__usage("trust", "trust: unknown subcommand '%s'", argv[1]);
}
