/*
 * cmd-key.c - `appliance key ...`: make and inspect signing keys.
 *
 * Keys are minisign's, so `minisign -S -s K.key` can sign with a key made
 * here and `minisign -G` keys work with `appliance sign`.  Also home of
 * the passphrase prompt that `appliance sign` shares.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "appliances/minisign.h"
#include "cli.h"

const char cmd_key_help[] =
	"usage: appliance key SUBCOMMAND [OPTIONS]\n"
	"\n"
	"  generate --public K.pub --secret K.key [--no-passphrase]\n"
	"           [--comment C] [--passphrase-file F] [--kdf LEVEL] [--force]\n"
	"        make a new Ed25519 key pair in minisign's formats.  The\n"
	"        secret key is encrypted with a passphrase (scrypt) unless\n"
	"        --no-passphrase; the passphrase comes from --passphrase-file\n"
	"        (its first line), else $APPLIANCE_PASSPHRASE, else it is asked\n"
	"        twice on the terminal.  --kdf sensitive (default, minisign's:\n"
	"        1 GiB, seconds) or interactive (16 MiB, fast; weaker).\n"
	"        --comment sets the untrusted comment line of both files.\n"
	"        Existing files are kept unless --force.\n"
	"  public --secret K.key --public K.pub [--passphrase-file F] [--force]\n"
	"        write the public key of a secret key again (minisign -R)\n"
	"  id K.pub\n"
	"        print the key id of a public key (as minisign shows it)\n"
	"\n"
	"Exit status: 0 ok, 1 failure, 2 usage error.\n";

/* Longest passphrase accepted from any source. */
#define PASSPHRASE_MAX 4096

static void strip_eol(char *s)
{
	s[strcspn(s, "\r\n")] = '\0';
}

/* The terminal state to put back if a signal ends us mid-prompt:
 * otherwise Ctrl-C would leave the user's shell without echo. */
static int tty_fd = -1;
static struct termios tty_saved;
static const int tty_signals[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };
static struct sigaction tty_old_actions[4];

static void tty_restore_and_die(int sig)
{
	if (tty_fd >= 0)
		tcsetattr(tty_fd, TCSANOW, &tty_saved);   /* signal-safe */
	signal(sig, SIG_DFL);
	raise(sig);
}

static void tty_guard(int fd, const struct termios *saved)
{
	struct sigaction sa;

	tty_fd = fd;
	tty_saved = *saved;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = tty_restore_and_die;
	sigemptyset(&sa.sa_mask);
	for (int i = 0; i < 4; i++)
		sigaction(tty_signals[i], &sa, &tty_old_actions[i]);
}

static void tty_unguard(void)
{
	for (int i = 0; i < 4; i++)
		sigaction(tty_signals[i], &tty_old_actions[i], NULL);
	tty_fd = -1;
}

/* Ask on the controlling terminal with echo off.  Returns 0, or -1 with
 * errno (ENXIO when there is no terminal). */
static int ask_tty(const char *prompt, char *buf, size_t len)
{
	struct termios old, quiet;
	int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
	size_t n = 0;
	int rc = 0, e = 0;

	if (fd < 0)
		return -1;
	if (tcgetattr(fd, &old) < 0) {
		e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	quiet = old;
	quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
	quiet.c_lflag |= ICANON;
	tty_guard(fd, &old);
	if (write(fd, prompt, strlen(prompt)) < 0 ||
	    tcsetattr(fd, TCSANOW, &quiet) < 0) {
		e = errno;
		rc = -1;
		goto out;
	}
	for (;;) {
		char c;
		ssize_t r = read(fd, &c, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0 || c == '\n')
			break;
		if (n + 1 >= len) {
			e = E2BIG;
			rc = -1;
			break;
		}
		buf[n++] = c;
	}
	buf[n] = '\0';
	strip_eol(buf);
	if (write(fd, "\n", 1) < 0) {
		/* Only cosmetic. */
	}
out:
	tcsetattr(fd, TCSANOW, &old);
	tty_unguard();
	close(fd);
	errno = e;
	return rc;
}

static int read_passphrase_file(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");

	if (!f) {
		cli__error("%s: %s", path, strerror(errno));
		return -1;
	}
	if (!fgets(buf, (int)len, f)) {
		buf[0] = '\0';         /* empty file: empty passphrase */
	} else if (!strchr(buf, '\n') && !feof(f)) {
		fclose(f);
		cli__error("%s: passphrase longer than %zu bytes", path,
			   len - 2);
		return -1;
	}
	fclose(f);
	strip_eol(buf);
	return 0;
}

char *cli__passphrase(const char *file, int confirm)
{
	char *pw = calloc(1, PASSPHRASE_MAX), *again = NULL;
	const char *env;

	if (!pw) {
		cli__error("out of memory");
		return NULL;
	}
	if (file) {
		if (read_passphrase_file(file, pw, PASSPHRASE_MAX) < 0)
			goto fail;
		return pw;
	}
	if ((env = getenv("APPLIANCE_PASSPHRASE"))) {
		if (strlen(env) >= PASSPHRASE_MAX) {
			cli__error("APPLIANCE_PASSPHRASE is too long");
			goto fail;
		}
		strcpy(pw, env);
		return pw;
	}
	if (ask_tty("Passphrase: ", pw, PASSPHRASE_MAX) < 0) {
		if (errno == E2BIG)
			cli__error("passphrase too long");
		else
			cli__error("a passphrase is needed: use "
				   "--passphrase-file, APPLIANCE_PASSPHRASE "
				   "or run on a terminal");
		goto fail;
	}
	if (confirm) {
		again = calloc(1, PASSPHRASE_MAX);
		if (!again ||
		    ask_tty("Passphrase (again): ", again, PASSPHRASE_MAX) < 0) {
			cli__error("cannot read the passphrase again");
			goto fail;
		}
		if (strcmp(pw, again) != 0) {
			cli__error("the passphrases do not match");
			goto fail;
		}
		explicit_bzero(again, PASSPHRASE_MAX);
		free(again);
	}
	return pw;
fail:
	explicit_bzero(pw, PASSPHRASE_MAX);
	free(pw);
	if (again) {
		explicit_bzero(again, PASSPHRASE_MAX);
		free(again);
	}
	return NULL;
}

void cli__passphrase_free(char *pw)
{
	if (pw) {
		explicit_bzero(pw, PASSPHRASE_MAX);
		free(pw);
	}
}

enum {
	OPT_PUBLIC = 1000, OPT_SECRET, OPT_NO_PASS, OPT_COMMENT, OPT_PASSFILE,
	OPT_KDF, OPT_FORCE,
};

static const struct option gen_opts[] = {
	{ "public", required_argument, NULL, OPT_PUBLIC },
	{ "secret", required_argument, NULL, OPT_SECRET },
	{ "no-passphrase", no_argument, NULL, OPT_NO_PASS },
	{ "comment", required_argument, NULL, OPT_COMMENT },
	{ "passphrase-file", required_argument, NULL, OPT_PASSFILE },
	{ "kdf", required_argument, NULL, OPT_KDF },
	{ "force", no_argument, NULL, OPT_FORCE },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static int key_generate(int argc, char **argv)
{
	const char *pub = NULL, *sec = NULL, *comment = NULL, *pfile = NULL;
	struct minisign_kdf_limits limits = {
		MINISIGN_OPSLIMIT_SENSITIVE, MINISIGN_MEMLIMIT_SENSITIVE };
	int no_pass = 0, force = 0, c, rc;
	struct minisign_seckey sk;
	struct minisign_pubkey pk;
	char id[MINISIGN_KEYID_HEX], *pw = NULL;
	unsigned flags;
	struct stat st;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", gen_opts, NULL)) != -1) {
		switch (c) {
		case OPT_PUBLIC: pub = optarg; break;
		case OPT_SECRET: sec = optarg; break;
		case OPT_NO_PASS: no_pass = 1; break;
		case OPT_COMMENT: comment = optarg; break;
		case OPT_PASSFILE: pfile = optarg; break;
		case OPT_FORCE: force = 1; break;
		case OPT_KDF:
			if (strcmp(optarg, "sensitive") == 0) {
				limits.opslimit = MINISIGN_OPSLIMIT_SENSITIVE;
				limits.memlimit = MINISIGN_MEMLIMIT_SENSITIVE;
			} else if (strcmp(optarg, "interactive") == 0) {
				limits.opslimit = MINISIGN_OPSLIMIT_INTERACTIVE;
				limits.memlimit = MINISIGN_MEMLIMIT_INTERACTIVE;
			} else {
				return cli__usage("key", "--kdf takes "
						  "'sensitive' or 'interactive'");
			}
			break;
		case 'h': fputs(cmd_key_help, stdout); return EXIT_OK;
		default: return cli__usage("key", "bad option for 'key generate'");
		}
	}
	if (optind != argc)
		return cli__usage("key", "key generate: unexpected argument "
				  "'%s'", argv[optind]);
	if (!pub || !sec)
		return cli__usage("key", "key generate: --public and --secret "
				  "are required");
	if (strcmp(pub, sec) == 0)
		return cli__usage("key", "key generate: the public and secret "
				  "key files must differ");
	if (no_pass && pfile)
		return cli__usage("key", "key generate: --no-passphrase and "
				  "--passphrase-file exclude each other");
	if (!force) {
		const char *files[] = { sec, pub };
		for (int i = 0; i < 2; i++) {
			if (lstat(files[i], &st) == 0) {
				cli__error("%s already exists (use --force to "
					   "replace it)", files[i]);
				return EXIT_FAIL;
			}
		}
	}
	if (!no_pass && !(pw = cli__passphrase(pfile, 1)))
		return EXIT_FAIL;
	if (minisign__generate(&sk, &pk) < 0) {
		cli__error("%s", minisign__error());
		cli__passphrase_free(pw);
		return EXIT_FAIL;
	}
	flags = force ? 0 : MINISIGN_SAVE_NO_OVERWRITE;
	rc = minisign__seckey_save(sec, &sk, comment, pw, &limits, flags);
	minisign__seckey_wipe(&sk);
	cli__passphrase_free(pw);
	if (rc < 0) {
		cli__error("%s", minisign__error());
		return EXIT_FAIL;
	}
	if (minisign__pubkey_save(pub, &pk, comment, flags) < 0) {
		cli__error("%s", minisign__error());
		/* A secret key without its public half is useless and
		 * confusing; take back what we just created. */
		if (!force)
			unlink(sec);
		return EXIT_FAIL;
	}
	minisign__keyid_hex(pk.keyid, id);
	printf("key id %s\npublic key: %s\nsecret key: %s%s\n", id, pub, sec,
	       no_pass ? " (not encrypted)" : "");
	return EXIT_OK;
}

static int key_public(int argc, char **argv)
{
	const char *pub = NULL, *sec = NULL, *pfile = NULL;
	struct minisign_seckey sk;
	struct minisign_pubkey pk;
	char id[MINISIGN_KEYID_HEX], *pw = NULL;
	int force = 0, c, enc, rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", gen_opts, NULL)) != -1) {
		switch (c) {
		case OPT_PUBLIC: pub = optarg; break;
		case OPT_SECRET: sec = optarg; break;
		case OPT_PASSFILE: pfile = optarg; break;
		case OPT_FORCE: force = 1; break;
		case 'h': fputs(cmd_key_help, stdout); return EXIT_OK;
		default: return cli__usage("key", "bad option for 'key public'");
		}
	}
	if (optind != argc || !pub || !sec)
		return cli__usage("key", "key public: expected --secret K.key "
				  "--public K.pub");
	if ((enc = minisign__seckey_is_encrypted(sec)) < 0) {
		cli__error("%s", minisign__error());
		return EXIT_FAIL;
	}
	if (enc && !(pw = cli__passphrase(pfile, 0)))
		return EXIT_FAIL;
	rc = minisign__seckey_load(sec, pw, &sk);
	cli__passphrase_free(pw);
	if (rc < 0) {
		cli__error("%s", minisign__error());
		return EXIT_FAIL;
	}
	minisign__seckey_public(&sk, &pk);
	minisign__seckey_wipe(&sk);
	if (minisign__pubkey_save(pub, &pk, NULL,
				  force ? 0 : MINISIGN_SAVE_NO_OVERWRITE) < 0) {
		cli__error("%s%s", minisign__error(),
			   force ? "" : " (use --force to replace it)");
		return EXIT_FAIL;
	}
	minisign__keyid_hex(pk.keyid, id);
	printf("key id %s\npublic key: %s\n", id, pub);
	return EXIT_OK;
}

static int key_id(int argc, char **argv)
{
	struct minisign_pubkey pk;
	char id[MINISIGN_KEYID_HEX];

	if (argc != 2)
		return cli__usage("key", "key id: expected one public key file");
	if (minisign__pubkey_load(argv[1], &pk) < 0) {
		cli__error("%s", minisign__error());
		return EXIT_FAIL;
	}
	minisign__keyid_hex(pk.keyid, id);
	puts(id);
	return EXIT_OK;
}

int cmd_key(int argc, char **argv)
{
	if (argc < 2)
		return cli__usage("key", "key: missing subcommand");
	if (strcmp(argv[1], "generate") == 0)
		return key_generate(argc - 1, argv + 1);
	if (strcmp(argv[1], "public") == 0)
		return key_public(argc - 1, argv + 1);
	if (strcmp(argv[1], "id") == 0)
		return key_id(argc - 1, argv + 1);
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		fputs(cmd_key_help, stdout);
		return EXIT_OK;
	}
	return cli__usage("key", "key: unknown subcommand '%s'", argv[1]);
}
