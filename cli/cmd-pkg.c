/*
 * cmd-pkg.c - appliance packages and repositories: `pack`, `inspect`,
 * `publish`, `pull`, `list`, `rm`.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "appliances/package.h"
#include "appliances/repo.h"
#include "cli.h"

const char cmd_pack_help[] =
	"usage: appliance pack BUILD_DIR [-o PKG] [--sign KEY]\n"
	"                      [--passphrase-file F] [--leaf-hash blake3|sha256]\n"
	"\n"
	"Assemble the output directory of a build (manifest.toml, kernel,\n"
	"initrd, AVD disk) into one package file (default NAME-VERSION.appliance)\n"
	"with per-cluster disk hashes, signed with KEY if given.  The disk\n"
	"hashes are BLAKE3, with the chaining values of each cluster's 4 KiB\n"
	"parts (so that a small random read is checked by hashing what it\n"
	"reads), unless --leaf-hash sha256 asks for SHA-256 (slower to verify,\n"
	"no parts; for runtimes that predate BLAKE3).\n";

const char cmd_inspect_help[] =
	"usage: appliance inspect [--json] PKG\n"
	"\n"
	"Show a package's manifest, members and signature (key id and trusted\n"
	"comment; whether the key is trusted).  Checks the structure but not\n"
	"the member digests (see 'appliance verify --full').\n";

const char cmd_publish_help[] =
	"usage: appliance publish PKG... --repo DIR --key KEY [--valid DAYS]\n"
	"                         [--passphrase-file F]\n"
	"\n"
	"Copy packages into the static repository DIR (packages/) and write its\n"
	"signed index (index.toml + index.toml.minisig): a version one higher\n"
	"than before and an expiry DAYS (default 30) from now.  Serve DIR with\n"
	"any static HTTP server.\n";

const char cmd_pull_help[] =
	"usage: appliance pull [--key K.pub] [--insecure] URL|NAME[:VERSION]\n"
	"\n"
	"Download into the cache (~/.cache/appliance, or $APPLIANCE_CACHE):\n"
	"  URL/NAME[:VERSION]   from the repository at URL (http, https, file)\n"
	"  URL.appliance        one package by URL\n"
	"  NAME[:VERSION]       already cached: print its path\n"
	"The index's signature, expiry and version (no rollback), the package's\n"
	"size, SHA-256 and signature are checked before anything enters the\n"
	"cache; interrupted downloads resume.  Keys come from the trust store\n"
	"unless --key is given; --insecure accepts unsigned or untrusted ones.\n"
	"https certificates are always checked, against the system's CAs or\n"
	"the bundle in $APPLIANCE_CA_BUNDLE (else $CURL_CA_BUNDLE).\n"
	"Prints the cached package's path.\n";

const char cmd_list_help[] =
	"usage: appliance list\n\nList the cached appliance packages, and how\n"
	"much unfinished downloads hold (the next pull of the same package\n"
	"resumes one).\n";

const char cmd_rm_help[] =
	"usage: appliance rm NAME[:VERSION] | --partial\n\n"
	"Remove cached packages; --partial removes the unfinished downloads\n"
	"instead, except any a pull is writing now.\n";

/* Load a secret key, asking for the passphrase only if it is encrypted. */
int cli__load_secret_key(const char *path, const char *pfile,
			 struct minisign_seckey *sk)
{
	char *pw = NULL;
	int enc = minisign__seckey_is_encrypted(path), rc;

	if (enc < 0) {
		cli__error("%s", minisign__error());
		return -1;
	}
	if (enc && !(pw = cli__passphrase(pfile, 0)))
		return -1;
	rc = minisign__seckey_load(path, pw, sk);
	cli__passphrase_free(pw);
	if (rc < 0) {
		cli__error("%s", minisign__error());
		return -1;
	}
	return 0;
}

int cmd_pack(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "sign", required_argument, NULL, 's' },
		{ "passphrase-file", required_argument, NULL, 'p' },
		{ "leaf-hash", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *out = NULL, *key = NULL, *pfile = NULL;
	enum package_leaf_hash leaf = PACKAGE_LEAF_BLAKE3;
	struct minisign_seckey sk;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'o': out = optarg; break;
		case 's': key = optarg; break;
		case 'p': pfile = optarg; break;
		case 'l':
			if (package__leaf_hash_parse(optarg, &leaf) < 0)
				return cli__usage("pack", "--leaf-hash is "
						  "blake3 or sha256");
			break;
		case 'h': fputs(cmd_pack_help, stdout); return EXIT_OK;
		default: return cli__usage("pack", "bad option");
		}
	}
	if (argc - optind != 1)
		return cli__usage("pack", "expected BUILD_DIR");
	if (key && cli__load_secret_key(key, pfile, &sk) < 0)
		return EXIT_FAIL;
	char *written = NULL;
	if (package__create(argv[optind], out, key ? &sk : NULL, NULL, leaf,
			    &written) < 0) {
		cli__error("%s", package__error());
		minisign__seckey_wipe(&sk);
		return EXIT_FAIL;
	}
	minisign__seckey_wipe(&sk);
	printf("%s\n", written);
	free(written);
	return EXIT_OK;
}

int cmd_inspect(int argc, char **argv)
{
	struct package *p;
	int json = 0;
	char kid[MINISIGN_KEYID_HEX] = "", hx[65];
	const char *tc = NULL;

	if (argc == 3 && strcmp(argv[1], "--json") == 0) {
		json = 1;
		argv++;
		argc--;
	}
	if (argc != 2 || argv[1][0] == '-') {
		if (argc == 2 && strcmp(argv[1], "--help") == 0) {
			fputs(cmd_inspect_help, stdout);
			return EXIT_OK;
		}
		return cli__usage("inspect", "expected PKG");
	}
	if (package__open(argv[1], &p) < 0) {
		cli__error("%s", package__error());
		return EXIT_FAIL;
	}
	int trusted = p->has_signature &&
		      package__verify_signature(p, NULL, kid, &tc) == 0;
	const char *why = trusted ? "" : package__error();
	if (json) {
		printf("{\n  \"name\": ");
		cli__json_string(stdout, p->name);
		printf(",\n  \"version\": ");
		cli__json_string(stdout, p->version);
		printf(",\n  \"architecture\": ");
		cli__json_string(stdout, p->architecture);
		printf(",\n  \"build_time\": %" PRId64 ",\n  \"memory\": %" PRIu64
		       ",\n  \"cpus\": %d,\n  \"cmdline\": ", p->build_time,
		       p->memory, p->cpus);
		cli__json_string(stdout, p->cmdline);
		printf(",\n  \"signed\": %s,\n  \"key_id\": ",
		       p->has_signature ? "true" : "false");
		cli__json_string(stdout, kid);
		printf(",\n  \"trusted\": %s,\n  \"disk_verity\": "
		       "{\"cluster_size\": %u, \"virtual_size\": %" PRIu64
		       ", \"algorithm\": \"%s\", \"subtree_size\": %u},\n"
		       "  \"members\": [",
		       trusted ? "true" : "false", p->hash_cluster,
		       p->disk_virtual_size,
		       package__leaf_hash_name(p->leaf_hash),
		       p->subtrees >= 0 ? p->subtree_size : 0);
		for (int i = 0; i < p->nr_members; i++) {
			const struct package_member *m = &p->members[i];
			for (int k = 0; k < 32; k++)
				sprintf(hx + 2 * k, "%02x", m->sha256[k]);
			printf("%s\n    {\"name\": ", i ? "," : "");
			cli__json_string(stdout, m->name);
			printf(", \"role\": \"%s\", \"size\": %" PRIu64
			       ", \"offset\": %" PRIu64 ", \"sha256\": \"%s\"}",
			       package__role_name(m->role), m->size,
			       m->offset, hx);
		}
		printf("\n  ]\n}\n");
	} else {
		char h[32];
		time_t bt = (time_t)p->build_time;
		struct tm tm;
		char tbuf[64];
		gmtime_r(&bt, &tm);
		strftime(tbuf, sizeof(tbuf), "%Y-%m-%d %H:%M:%S UTC", &tm);
		printf("appliance:    %s %s (%s)\n", p->name, p->version,
		       p->architecture);
		if (p->description) {
			printf("description:  ");
			cli__print_untrusted(stdout, p->description);
			printf("\n");
		}
		printf("built:        %s\n", tbuf);
		printf("vm:           %s memory, %d vCPU%s\n",
		       cli__human_size(p->memory, h, sizeof(h)), p->cpus,
		       p->cpus == 1 ? "" : "s");
		printf("cmdline:      ");
		cli__print_untrusted(stdout, p->cmdline);
		printf("\n");
		for (int i = 0; i < p->nr_ports; i++)
			printf("port:         host %d -> guest %d/%s\n",
			       p->ports[i].host, p->ports[i].guest,
			       p->ports[i].udp ? "udp" : "tcp");
		printf("disk:         %s virtual, verified in %u-byte "
		       "clusters (%s)",
		       cli__human_size(p->disk_virtual_size, h, sizeof(h)),
		       p->hash_cluster, package__leaf_hash_name(p->leaf_hash));
		if (p->subtrees >= 0)
			printf(", small reads in %u-byte parts",
			       p->subtree_size);
		printf("\n");
		for (int i = 0; i < p->nr_members; i++)
			printf("member:       %-13s %-13s %12" PRIu64 " bytes\n",
			       p->members[i].name,
			       package__role_name(p->members[i].role),
			       p->members[i].size);
		if (!p->has_signature) {
			printf("signature:    none (unsigned package)\n");
		} else {
			printf("signature:    key %s, %s\n", kid,
			       trusted ? "trusted" : "NOT trusted");
			if (tc) {
				printf("trusted comment: ");
				cli__print_untrusted(stdout, tc);
				printf("\n");
			} else {
				printf("              (");
				cli__print_untrusted(stdout, why);
				printf(")\n");
			}
		}
	}
	package__close(p);
	return EXIT_OK;
}

int cmd_publish(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "repo", required_argument, NULL, 'r' },
		{ "key", required_argument, NULL, 'k' },
		{ "valid", required_argument, NULL, 'v' },
		{ "passphrase-file", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *repo = NULL, *key = NULL, *pfile = NULL;
	uint64_t days = 30;
	struct minisign_seckey sk;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'r': repo = optarg; break;
		case 'k': key = optarg; break;
		case 'p': pfile = optarg; break;
		case 'v':
			if (cli__parse_u64(optarg, &days) < 0 || days > 3650)
				return cli__usage("publish", "bad --valid");
			break;
		case 'h': fputs(cmd_publish_help, stdout); return EXIT_OK;
		default: return cli__usage("publish", "bad option");
		}
	}
	if (!repo || !key || optind >= argc)
		return cli__usage("publish", "expected PKG... --repo DIR --key "
				  "KEY");
	if (cli__load_secret_key(key, pfile, &sk) < 0)
		return EXIT_FAIL;
	int rc = repo__publish(repo, (const char *const *)argv + optind,
			       argc - optind, &sk, (int64_t)days * 86400);
	minisign__seckey_wipe(&sk);
	if (rc < 0) {
		cli__error("%s", repo__error());
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

int cli__is_package(const char *path)
{
	/* Only a regular file can be a package; O_NONBLOCK so that a FIFO
	 * is not waited on here (the open that follows says what it is). */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	struct stat st;
	char h[512];
	int yes = 0;

	if (fd < 0)
		return 0;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
	    pread(fd, h, sizeof(h), 0) == (ssize_t)sizeof(h))
		yes = memcmp(h, PACKAGE_MANIFEST, sizeof(PACKAGE_MANIFEST)) == 0
		      && memcmp(h + 257, "ustar", 5) == 0;
	close(fd);
	return yes;
}

int cli__verify_package(const char *path, const char *keyfile, int full,
			int quiet)
{
	struct minisign_pubkey pk;
	struct package *p;
	char kid[MINISIGN_KEYID_HEX] = "";
	const char *tc = NULL;
	int rc = EXIT_FAIL;

	if (keyfile && minisign__pubkey_load(keyfile, &pk) < 0) {
		cli__error("%s", minisign__error());
		return EXIT_FAIL;
	}
	if (package__open(path, &p) < 0) {
		cli__error("%s", package__error());
		return EXIT_FAIL;
	}
	if (package__verify_signature(p, keyfile ? &pk : NULL, kid, &tc) < 0 ||
	    package__verify_members(p, full) < 0) {
		cli__error("%s", package__error());
		goto out;
	}
	if (!quiet) {
		printf("good package %s %s (%s) signed by key %s%s\n", p->name,
		       p->version, path, kid,
		       full ? "; every member and disk cluster checked"
			    : "; disk clusters are checked as they are read");
		printf("trusted comment: ");
		cli__print_untrusted(stdout, tc);
		putchar('\n');
	}
	rc = EXIT_OK;
out:
	package__close(p);
	return rc;
}

/* A progress bar on stderr, only when stderr is a terminal. */
static void pull_progress(void *opaque, uint64_t done, uint64_t total)
{
	static time_t last;
	time_t now = time(NULL);
	char a[32], b[32];

	(void)opaque;
	if (now == last && done != total)
		return;
	last = now;
	if (total) {
		int w = (int)(done * 30 / total);
		fprintf(stderr, "\r[%-30.*s] %3d%% %s / %s", w,
			"##############################",
			(int)(done * 100 / total),
			cli__human_size(done, a, sizeof(a)),
			cli__human_size(total, b, sizeof(b)));
	} else {
		fprintf(stderr, "\r%s", cli__human_size(done, a, sizeof(a)));
	}
}

/* Another pull of the same thing holds the lock: say why we sit still. */
static void pull_waiting(void *opaque, const char *what)
{
	(void)opaque;
	fprintf(stderr, "appliance: waiting for another pull of %s to "
		"finish\n", what);
}

int cli__pull(const char *ref, const char *keyfile, int insecure,
	      char **path)
{
	struct minisign_pubkey pk;
	struct repo_pull_opts o = { .insecure = insecure,
				    .waiting = pull_waiting };
	int rc;

	if (keyfile) {
		if (minisign__pubkey_load(keyfile, &pk) < 0) {
			cli__error("%s", minisign__error());
			return -1;
		}
		o.key = &pk;
	}
	if (isatty(2))
		o.progress = pull_progress;
	rc = repo__pull(ref, &o, path);
	if (o.progress)
		fputc('\n', stderr);
	if (rc < 0) {
		cli__error("%s", repo__error());
		return -1;
	}
	return 0;
}

int cmd_pull(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, 'k' },
		{ "insecure", no_argument, NULL, 'i' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *key = NULL;
	int insecure = 0, c;
	char *path;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'k': key = optarg; break;
		case 'i': insecure = 1; break;
		case 'h': fputs(cmd_pull_help, stdout); return EXIT_OK;
		default: return cli__usage("pull", "bad option");
		}
	}
	if (argc - optind != 1)
		return cli__usage("pull", "expected URL or NAME");
	if (cli__pull(argv[optind], key, insecure, &path) < 0)
		return EXIT_FAIL;
	printf("%s\n", path);
	free(path);
	return EXIT_OK;
}

int cmd_list(int argc, char **argv)
{
	char **paths;
	int n;

	(void)argv;
	if (argc != 1)
		return cli__usage("list", "no arguments expected");
	if (repo__list(&paths, &n) < 0) {
		cli__error("%s", repo__error());
		return EXIT_FAIL;
	}
	for (int i = 0; i < n; i++) {
		struct package *p;
		char h[32];
		if (package__open(paths[i], &p) == 0) {
			printf("%-24s %-12s %10s  %s\n", p->name, p->version,
			       cli__human_size(p->disk_virtual_size, h,
					       sizeof(h)), paths[i]);
			package__close(p);
		}
		free(paths[i]);
	}
	free(paths);
	int partials;
	uint64_t bytes;
	if (repo__partials(&partials, &bytes) == 0 && partials > 0) {
		char h[32];
		printf("(%d unfinished download%s, %s: 'appliance rm "
		       "--partial' removes them)\n", partials,
		       partials == 1 ? "" : "s",
		       cli__human_size(bytes, h, sizeof(h)));
	}
	return EXIT_OK;
}

int cmd_rm(int argc, char **argv)
{
	if (argc != 2)
		return cli__usage("rm", "expected NAME[:VERSION] or --partial");
	if (strcmp(argv[1], "--partial") == 0) {
		uint64_t bytes;
		int busy, n = repo__remove_partials(&bytes, &busy);
		char h[32];
		if (n < 0) {
			cli__error("%s", repo__error());
			return EXIT_FAIL;
		}
		printf("removed %d unfinished download%s (%s)", n,
		       n == 1 ? "" : "s", cli__human_size(bytes, h, sizeof(h)));
		if (busy)
			printf("; left %d a pull is writing", busy);
		printf("\n");
		return EXIT_OK;
	}
	int n = repo__remove(argv[1]);
	if (n < 0) {
		cli__error("%s", repo__error());
		return EXIT_FAIL;
	}
	printf("removed %d package%s\n", n, n == 1 ? "" : "s");
	return EXIT_OK;
}
