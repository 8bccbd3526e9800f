/*
 * cmd-build.c - `appliance build RECIPE`: a recipe.toml in, an appliance
 * directory out (disk, kernel, initramfs, manifest, build log).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "appliances/package.h"
#include "builder/builder.h"
#include "cli.h"

const char cmd_build_help[] =
	"usage: appliance build RECIPE [-o OUTPUT] [--sign KEY] [--cache DIR]\n"
	"                       [--source-date-epoch N] [-q|-v]\n"
	"                       [--output-format raw|qcow2|vmdk|vhd]\n"
	"\n"
	"Build the appliance RECIPE (a recipe.toml, or a directory holding\n"
	"one; see docs/recipes.md).  OUTPUT (default NAME-VERSION.appliance)\n"
	"ending in .appliance is one package file (appliances/FORMAT.md),\n"
	"signed with KEY if given; any other OUTPUT is a directory holding\n"
	"disk.avd (or disk.raw), vmlinuz, initrd.img, manifest.toml and\n"
	"build.log, which `appliance pack` can package later.\n"
	"\n"
	"  -o, --output PATH       where the appliance goes (replaced\n"
	"                          atomically; nothing is left there on failure)\n"
	"  --sign KEY              sign the package with this secret key\n"
	"  --passphrase-file F     passphrase of an encrypted KEY\n"
	"  --cache DIR             download/base cache (default\n"
	"                          ~/.cache/appliance/build); also where a\n"
	"                          build works, and where the next build\n"
	"                          removes what a killed one left\n"
	"  --source-date-epoch N   timestamp for every file and the manifest\n"
	"                          (default $SOURCE_DATE_EPOCH, else now): same\n"
	"                          recipe and N give the same disk bytes\n"
	"  --output-format FMT     also export the disk as disk.FMT\n"
	"  -q, --quiet             no progress\n"
	"  -v, --verbose           progress even when stderr is not a terminal\n"
	"\n"
	"Debian bases run mmdebstrap and build-time commands run in the image\n"
	"with chroot: both need root.  `appliance pack OUTPUT` turns the\n"
	"result into one signed package file.\n";

enum { OPT_CACHE = 1000, OPT_SDE, OPT_FORMAT, OPT_SIGN, OPT_PASSFILE };

static const struct option build_opts_long[] = {
	{ "output", required_argument, NULL, 'o' },
	{ "cache", required_argument, NULL, OPT_CACHE },
	{ "source-date-epoch", required_argument, NULL, OPT_SDE },
	{ "output-format", required_argument, NULL, OPT_FORMAT },
	{ "sign", required_argument, NULL, OPT_SIGN },
	{ "passphrase-file", required_argument, NULL, OPT_PASSFILE },
	{ "quiet", no_argument, NULL, 'q' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

struct progress {
	int tty;
	struct timespec start;
};

static double since(const struct timespec *t)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t->tv_sec) +
	       (double)(now.tv_nsec - t->tv_nsec) / 1e9;
}

static void show_progress(void *ctx, unsigned step, unsigned n,
			  const char *name, enum build_step_state st)
{
	struct progress *p = ctx;
	static const char *const word[] = { "...", "done", "cached",
					    "FAILED" };

	if (st == BUILD_STEP_START) {
		clock_gettime(CLOCK_MONOTONIC, &p->start);
		if (p->tty) {
			/* A bar of steps, redrawn in place. */
			fprintf(stderr, "\r\033[K[");
			for (unsigned i = 1; i <= n; i++)
				fputc(i < step ? '#' : i == step ? '>' : '.',
				      stderr);
			fprintf(stderr, "] %u/%u %s ...", step, n, name);
		}
		return;
	}
	if (p->tty)
		fprintf(stderr, "\r\033[K");
	fprintf(stderr, "[%u/%u] %-10s %s (%.1fs)\n", step, n, name, word[st],
		since(&p->start));
}

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	interrupted = sig;
}

int cmd_build(int argc, char **argv)
{
	struct build_opts o = { 0 };
	struct progress prog = { 0 };
	struct recipe r;
	const char *recipe_path;
	char *path = NULL, *out, *workdir = NULL;
	const char *sign_key = NULL, *pfile = NULL;
	struct minisign_seckey sk;
	int c, quiet = 0, verbose = 0, rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, "o:qvh", build_opts_long, NULL))
	       != -1) {
		switch (c) {
		case 'o': o.output = optarg; break;
		case OPT_CACHE: o.cache_dir = optarg; break;
		case OPT_SDE: {
			uint64_t v;
			if (cli__parse_u64(optarg, &v) < 0 ||
			    v > 253402300799ull)
				return cli__usage("build", "bad "
						  "--source-date-epoch '%s'",
						  optarg);
			o.source_date_epoch = (int64_t)v;
			o.have_source_date_epoch = 1;
			break;
		}
		case OPT_FORMAT:
			if (strcmp(optarg, "raw") && strcmp(optarg, "qcow2") &&
			    strcmp(optarg, "vmdk") && strcmp(optarg, "vhd"))
				return cli__usage("build", "--output-format "
						  "'%s': expected raw, qcow2, "
						  "vmdk or vhd", optarg);
			o.output_format = optarg;
			break;
		case OPT_SIGN: sign_key = optarg; break;
		case OPT_PASSFILE: pfile = optarg; break;
		case 'q': quiet = 1; break;
		case 'v': verbose = 1; break;
		case 'h': fputs(cmd_build_help, stdout); return EXIT_OK;
		default: return cli__usage("build", "bad option");
		}
	}
	if (argc - optind != 1)
		return cli__usage("build", "expected one RECIPE");
	recipe_path = argv[optind];
	/* A directory means its recipe.toml (recipes/NAME/). */
	size_t len = strlen(recipe_path);
	if (len && access(recipe_path, F_OK) == 0 &&
	    (recipe_path[len - 1] == '/' ||
	     (len > 5 && strcmp(recipe_path + len - 5, ".toml") != 0))) {
		if (asprintf(&path, "%s/recipe.toml", recipe_path) < 0)
			return EXIT_FAIL;
		recipe_path = path;
	}
	if (recipe__load(recipe_path, &r) < 0) {
		cli__error("%s", recipe__error());
		free(path);
		return EXIT_FAIL;
	}
	free(path);
	if (!quiet && (verbose || isatty(2))) {
		prog.tty = isatty(2);
		o.progress = show_progress;
		o.progress_ctx = &prog;
	}
	/* ^C or SIGTERM: let the builder stop and clean up (no SA_RESTART,
	 * so its waits wake up) instead of dying with a half-built
	 * temporary directory and scratch tree left behind. */
	struct sigaction sa = { .sa_handler = on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	o.cancel = &interrupted;
	out = builder__output_path(&r, &o);
	/* A package: build into a directory beside it, then pack that
	 * (atomically, so the package appears only when complete). */
	size_t ol = out ? strlen(out) : 0;
	int package = ol > 10 && strcmp(out + ol - 10, ".appliance") == 0;
	if (sign_key && !package) {
		recipe__free(&r);
		free(out);
		return cli__usage("build", "--sign needs a package OUTPUT "
				  "(*.appliance)");
	}
	if (sign_key && cli__load_secret_key(sign_key, pfile, &sk) < 0) {
		recipe__free(&r);
		free(out);
		return EXIT_FAIL;
	}
	if (package) {
		if (asprintf(&workdir, "%s.build-%d", out, (int)getpid()) < 0) {
			workdir = NULL;
			rc = EXIT_FAIL;
			goto done;
		}
		o.output = workdir;
	}
	rc = builder__build(&r, &o);
	if (rc < 0) {
		cli__error("%s", builder__error());
		rc = EXIT_FAIL;
		goto done;
	}
	if (package && package__create(workdir, out, sign_key ? &sk : NULL,
				       NULL, PACKAGE_LEAF_BLAKE3, NULL) < 0) {
		cli__error("%s", package__error());
		rc = EXIT_FAIL;
		goto done;
	}
	if (!quiet)
		printf("built %s %s: %s%s\n", r.name, r.version, out,
		       sign_key ? " (signed)" : "");
	rc = EXIT_OK;
done:
	if (workdir)
		cli__remove_tree(workdir);
	if (sign_key)
		minisign__seckey_wipe(&sk);
	free(workdir);
	free(out);
	recipe__free(&r);
	return rc;
}
