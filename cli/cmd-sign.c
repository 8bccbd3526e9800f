/*
 * cmd-sign.c - `appliance sign` and `appliance verify`: minisign
 * signatures over any file.
 *
 * The signatures are minisign's prehashed ("ED") ones, so
 * `minisign -Vm FILE -p K.pub` checks what `appliance sign` wrote and the
 * other way round.  Without --key, verify takes the key from the trust
 * store by the key id the signature names.
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "appliances/minisign.h"
#include "appliances/package.h"
#include "appliances/trust.h"
#include "cli.h"

const char cmd_sign_help[] =
	"usage: appliance sign --key K.key [--trusted-comment C] [--comment C]\n"
	"                      [--sig S] [--passphrase-file F] FILE...\n"
	"\n"
	"Sign each FILE with the secret key K.key and write FILE.minisig (or\n"
	"S, with one FILE).  The file is read in one streaming pass (BLAKE2b-\n"
	"512, minisign's prehashed signature), so any size works.\n"
	"\n"
	"  --trusted-comment C  signed one-line comment (default:\n"
	"                       \"timestamp:<unix time>\\tfile:<name>\\thashed\")\n"
	"  --comment C          unsigned one-line comment (first line)\n"
	"  --passphrase-file F  passphrase of an encrypted key (first line of\n"
	"                       F); else $APPLIANCE_PASSPHRASE, else asked\n"
	"\n"
	"Exit status: 0 ok, 1 failure, 2 usage error.\n";

const char cmd_verify_help[] =
	"usage: appliance verify [--key K.pub] [--sig S] [--quiet] [--json] FILE\n"
	"\n"
	"Check FILE against its signature FILE.minisig (or S) and print the\n"
	"signed trusted comment.  With --key the signature must be by K.pub;\n"
	"without it, the key is looked up by the signature's key id in the\n"
	"trust store (see 'appliance help trust').  Takes minisign's prehashed\n"
	"and legacy signatures.\n"
	"\n"
	"  --quiet  print nothing on success\n"
	"  --json   print {\"file\", \"valid\", \"key_id\", \"trusted_comment\",\n"
	"           \"error\"} on stdout\n"
	"\n"
	"An appliance package (PKG.appliance) carries its signature inside:\n"
	"verify checks it, the manifest's structure and the SHA-256 of the\n"
	"kernel, initramfs and disk hashes; --full also hashes the whole disk,\n"
	"every cluster and the disk's part chaining values.\n"
	"`sign --key K.key PKG` (re)signs a package.\n"
	"\n"
	"Exit status: 0 valid, 1 invalid or unreadable, 2 usage error.\n";

enum { OPT_KEY = 1000, OPT_TC, OPT_COMMENT, OPT_SIG, OPT_PASSFILE,
       OPT_QUIET, OPT_JSON, OPT_FULL };

static const struct option sign_opts[] = {
	{ "key", required_argument, NULL, OPT_KEY },
	{ "trusted-comment", required_argument, NULL, OPT_TC },
	{ "comment", required_argument, NULL, OPT_COMMENT },
	{ "sig", required_argument, NULL, OPT_SIG },
	{ "passphrase-file", required_argument, NULL, OPT_PASSFILE },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static const char *base_name(const char *p)
{
	const char *s = strrchr(p, '/');

	return s ? s + 1 : p;
}

int cmd_sign(int argc, char **argv)
{
	const char *key = NULL, *tc = NULL, *comment = NULL, *sigpath = NULL;
	const char *pfile = NULL;
	struct minisign_seckey sk;
	char id[MINISIGN_KEYID_HEX];
	int c, status = EXIT_OK;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", sign_opts, NULL)) != -1) {
		switch (c) {
		case OPT_KEY: key = optarg; break;
		case OPT_TC: tc = optarg; break;
		case OPT_COMMENT: comment = optarg; break;
		case OPT_SIG: sigpath = optarg; break;
		case OPT_PASSFILE: pfile = optarg; break;
		case 'h': fputs(cmd_sign_help, stdout); return EXIT_OK;
		default: return cli__usage("sign", "bad option for 'sign'");
		}
	}
	if (!key)
		return cli__usage("sign", "sign: --key K.key is required");
	if (optind >= argc)
		return cli__usage("sign", "sign: no FILE to sign");
	if (sigpath && argc - optind > 1)
		return cli__usage("sign", "sign: --sig needs exactly one FILE");
	if (cli__load_secret_key(key, pfile, &sk) < 0)
		return EXIT_FAIL;
	minisign__keyid_hex(sk.keyid, id);
	for (int i = optind; i < argc; i++) {
		struct minisign_signature sig;
		char *out = NULL, *dflt = NULL;
		const char *file = argv[i], *this_tc = tc;
		int rc;

		if (!this_tc) {
			if (asprintf(&dflt, "timestamp:%lld\tfile:%s\thashed",
				     (long long)time(NULL), base_name(file)) < 0) {
				cli__error("out of memory");
				status = EXIT_FAIL;
				break;
			}
			this_tc = dflt;
		}
		if (!sigpath && asprintf(&out, "%s.minisig", file) < 0) {
			free(dflt);
			cli__error("out of memory");
			status = EXIT_FAIL;
			break;
		}
		if (cli__is_package(file) && !sigpath) {
			/* A package carries its signature inside. */
			if (package__sign(file, &sk, tc) < 0) {
				cli__error("%s", package__error());
				status = EXIT_FAIL;
			} else {
				printf("signed package %s with key %s\n", file,
				       id);
			}
			free(out);
			free(dflt);
			continue;
		}
		rc = minisign__sign_file(&sk, file, this_tc, &sig);
		if (rc == 0)
			rc = minisign__sig_save(sigpath ? sigpath : out, &sig,
						comment);
		if (rc < 0) {
			cli__error("%s", minisign__error());
			status = EXIT_FAIL;
		} else {
			printf("signed %s with key %s: %s\n", file, id,
			       sigpath ? sigpath : out);
		}
		free(out);
		free(dflt);
	}
	minisign__seckey_wipe(&sk);
	return status;
}

static const struct option verify_opts[] = {
	{ "key", required_argument, NULL, OPT_KEY },
	{ "sig", required_argument, NULL, OPT_SIG },
	{ "quiet", no_argument, NULL, OPT_QUIET },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "full", no_argument, NULL, OPT_FULL },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static void print_json(const char *file, int valid, const char *id,
		       const char *tc, const char *trusted_by,
		       const char *error)
{
	printf("{\n  \"file\": ");
	cli__json_string(stdout, file);
	printf(",\n  \"valid\": %s", valid ? "true" : "false");
	if (id && *id) {
		printf(",\n  \"key_id\": ");
		cli__json_string(stdout, id);
	}
	if (trusted_by) {
		printf(",\n  \"trusted_key_file\": ");
		cli__json_string(stdout, trusted_by);
	}
	if (tc) {
		printf(",\n  \"trusted_comment\": ");
		cli__json_string(stdout, tc);
	}
	if (error) {
		printf(",\n  \"error\": ");
		cli__json_string(stdout, error);
	}
	printf("\n}\n");
}

int cmd_verify(int argc, char **argv)
{
	const char *key = NULL, *sigpath = NULL, *file, *tc = NULL;
	const char *trusted_by = NULL;
	struct minisign_signature *sig = NULL;
	struct minisign_pubkey pk;
	struct trust_entry *te = NULL;
	char *dflt = NULL, id[MINISIGN_KEYID_HEX] = "", err[1200] = "";
	int quiet = 0, json = 0, full = 0, c, ok = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", verify_opts, NULL)) != -1) {
		switch (c) {
		case OPT_KEY: key = optarg; break;
		case OPT_SIG: sigpath = optarg; break;
		case OPT_QUIET: quiet = 1; break;
		case OPT_JSON: json = 1; break;
		case OPT_FULL: full = 1; break;
		case 'h': fputs(cmd_verify_help, stdout); return EXIT_OK;
		default: return cli__usage("verify", "bad option for 'verify'");
		}
	}
	if (argc - optind != 1)
		return cli__usage("verify", "verify: expected one FILE");
	file = argv[optind];
	if (!sigpath && cli__is_package(file))
		return cli__verify_package(file, key, full, quiet);
	if (!sigpath) {
		if (asprintf(&dflt, "%s.minisig", file) < 0) {
			cli__error("out of memory");
			return EXIT_FAIL;
		}
		sigpath = dflt;
	}
	sig = malloc(sizeof(*sig));
	te = malloc(sizeof(*te));
	if (!sig || !te) {
		snprintf(err, sizeof(err), "out of memory");
		goto done;
	}
	if (minisign__sig_load(sigpath, sig) < 0) {
		snprintf(err, sizeof(err), "%s", minisign__error());
		goto done;
	}
	minisign__keyid_hex(sig->keyid, id);
	if (key) {
		if (minisign__pubkey_load(key, &pk) < 0) {
			snprintf(err, sizeof(err), "%s", minisign__error());
			goto done;
		}
	} else {
		int rc = trust__find(sig->keyid, te);
		if (rc == -ENOKEY) {
			snprintf(err, sizeof(err), "%s was made by key %s, "
				 "which is not in the trust store (add it with "
				 "'appliance trust add KEY.pub', or pass --key)",
				 sigpath, id);
			goto done;
		}
		if (rc < 0) {
			snprintf(err, sizeof(err), "%s", trust__error());
			goto done;
		}
		pk = te->pk;
		trusted_by = te->path;
	}
	if (minisign__verify_file(&pk, sig, file, &tc) < 0) {
		snprintf(err, sizeof(err), "%s", minisign__error());
		tc = NULL;
		goto done;
	}
	ok = 1;
done:
	if (json) {
		print_json(file, ok, id, tc, trusted_by, ok ? NULL : err);
	} else if (!ok) {
		cli__error("%s", err);    /* each message names its file */
	} else if (!quiet) {
		printf("good signature on %s by key %s", file, id);
		if (trusted_by)
			printf(" (trusted: %s)", trusted_by);
		printf("\ntrusted comment: ");
		cli__print_untrusted(stdout, tc);
		putchar('\n');
	}
	free(dflt);
	free(sig);
	free(te);
	return ok ? EXIT_OK : EXIT_FAIL;
}
