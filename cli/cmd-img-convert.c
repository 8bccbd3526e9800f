/*
 * cmd-img-convert.c - `appliance img convert` and `appliance img compare`,
 * shaped like their qemu-img namesakes.
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "convert.h"
#include "imgfmt.h"

enum { OPT_LEVEL = 2000, OPT_FORCE };

static const struct option convert_opts[] = {
	{ "format", required_argument, NULL, 'f' },
	{ "output-format", required_argument, NULL, 'O' },
	{ "compress", no_argument, NULL, 'c' },
	{ "level", required_argument, NULL, OPT_LEVEL },
	{ "option", required_argument, NULL, 'o' },
	{ "progress", no_argument, NULL, 'p' },
	{ "threads", required_argument, NULL, 'j' },
	{ "force", no_argument, NULL, OPT_FORCE },
	CLI_PKG_TRUST_OPTIONS,
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

#define MAX_O_OPTIONS 16

/* Strings the writer options point into live as long as this. */
struct convert_args {
	char *optcopy[MAX_O_OPTIONS];
	int nopt;
	struct imgfmt_writer_opts wo;
};

/* -o compression_type=zstd,cluster_size=N,subformat=... */
static int parse_o(const char *s, struct convert_args *a)
{
	char *save = NULL;
	char *copy;

	/* Later -o options add to earlier ones, and the writer options
	 * point into every copy, so all of them stay alive. */
	if (a->nopt >= MAX_O_OPTIONS)
		return cli__usage("img", "img convert: too many -o options");
	copy = strdup(s);
	if (!copy) {
		cli__error("out of memory");
		return EXIT_FAIL;
	}
	a->optcopy[a->nopt++] = copy;
	for (char *kv = strtok_r(copy, ",", &save); kv;
	     kv = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(kv, '=');
		uint64_t v;
		if (!eq)
			return cli__usage("img", "img convert: option '%s' needs "
					  "a value", kv);
		*eq++ = '\0';
		if (strcmp(kv, "compression_type") == 0) {
			if (strcmp(eq, "zlib") && strcmp(eq, "zstd"))
				return cli__usage("img", "img convert: "
						  "compression_type must be "
						  "zlib or zstd");
			a->wo.compression_type = eq;
		} else if (strcmp(kv, "cluster_size") == 0) {
			if (cli__parse_size(eq, &v) < 0 || v > UINT32_MAX)
				return cli__usage("img", "img convert: bad "
						  "cluster_size '%s'", eq);
			a->wo.cluster_size = (uint32_t)v;
		} else if (strcmp(kv, "subformat") == 0) {
			a->wo.subformat = eq;
		} else {
			return cli__usage("img", "img convert: unknown option "
					  "'%s'", kv);
		}
	}
	return 0;
}

static void progress_bar(uint64_t done, uint64_t total, void *arg)
{
	int *last = arg;
	int pct = total ? (int)(done * 1000 / total) : 1000;

	if (pct == *last)
		return;
	*last = pct;
	fprintf(stderr, "\r    (%3d.%d/100%%)", pct / 10, pct % 10);
	if (done >= total)
		fputc('\n', stderr);
	fflush(stderr);
}

int cmd_img_convert(int argc, char **argv)
{
	struct convert_args a = { 0 };
	const char *in_fmt = NULL;
	int progress = 0, force = 0, threads = 0, c, rc = EXIT_OK;
	uint64_t v;

	optind = 1;
	while ((c = getopt_long(argc, argv, "f:O:co:pj:h", convert_opts,
				NULL)) != -1) {
		switch (c) {
		case 'f': in_fmt = optarg; break;
		case 'O': a.wo.format = optarg; break;
		case 'c': a.wo.compress = 1; break;
		case OPT_LEVEL:
			if (cli__parse_u64(optarg, &v) < 0 || v > 22) {
				rc = cli__usage("img", "img convert: bad level "
						"'%s'", optarg);
				goto out;
			}
			a.wo.compress_level = (int)v;
			break;
		case 'o':
			rc = parse_o(optarg, &a);
			if (rc)
				goto out;
			break;
		case 'p': progress = 1; break;
		case 'j':
			if (cli__parse_u64(optarg, &v) < 0 || v < 1 || v > 64) {
				rc = cli__usage("img", "img convert: -j wants "
						"1..64");
				goto out;
			}
			threads = (int)v;
			break;
		case OPT_FORCE: force = 1; break;
		case 'h': fputs(cmd_img_help, stdout); goto out;
		default:
			if (cli__img_trust_option(c, optarg))
				break;
			rc = cli__usage("img", "bad option for 'img convert'");
			goto out;
		}
	}
	if (argc - optind != 2) {
		rc = cli__usage("img", "img convert: expected SRC DST");
		goto out;
	}
	if (!a.wo.format) {
		rc = cli__usage("img", "img convert: -O FORMAT is required");
		goto out;
	}
	const char *src = argv[optind], *dst = argv[optind + 1];
	if (!force && access(dst, F_OK) == 0) {
		cli__error("%s exists; use --force to overwrite it", dst);
		rc = EXIT_FAIL;
		goto out;
	}

	imgfmt_image *img;
	struct imgfmt_open_opts oo = { .format = in_fmt };
	if (cli__img_open(src, &oo, &img) < 0) {
		rc = EXIT_FAIL;
		goto out;
	}
	int last = -1;
	struct imgfmt_convert_opts co = {
		.threads = threads,
		.overwrite = force,
		.progress = progress && isatty(STDERR_FILENO) ? progress_bar
							       : NULL,
		.progress_arg = &last,
	};
	if (imgfmt__convert(img, dst, &a.wo, &co, NULL) < 0) {
		if (co.progress && last >= 0)
			fputc('\n', stderr);
		cli__error("%s", imgfmt__error());
		rc = EXIT_FAIL;
	} else if (co.progress) {
		/* Trailing zero ranges are skipped without a callback. */
		struct imgfmt_info info;
		imgfmt__info(img, &info);
		if (last != 1000)
			progress_bar(info.virtual_size, info.virtual_size,
				     &last);
	}
	imgfmt__close(img);
out:
	for (int i = 0; i < a.nopt; i++)
		free(a.optcopy[i]);
	return rc;
}

/* ---- compare ---------------------------------------------------------- */

static const struct option compare_opts[] = {
	{ "a-format", required_argument, NULL, 'f' },
	{ "b-format", required_argument, NULL, 'F' },
	CLI_PKG_TRUST_OPTIONS,
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

#define CMP_BUF (1u << 20)

/* First offset in [off, off+len) where a and b differ, or -1. */
static int64_t first_difference(const uint8_t *a, const uint8_t *b,
				size_t len, uint64_t off)
{
	if (memcmp(a, b, len) == 0)
		return -1;
	for (size_t i = 0; i < len; i++)
		if (a[i] != b[i])
			return (int64_t)(off + i);
	return -1;
}

/* Status 2 for errors, as qemu-img compare: 1 means "different". */
static int compare_error(void)
{
	cli__error("%s", imgfmt__error());
	return 2;
}

int cmd_img_compare(int argc, char **argv)
{
	const char *fa = NULL, *fb = NULL;
	imgfmt_image *ia = NULL, *ib = NULL;
	uint8_t *ba = NULL, *bb = NULL;
	int c, rc = EXIT_OK;

	optind = 1;
	while ((c = getopt_long(argc, argv, "f:F:h", compare_opts, NULL)) !=
	       -1) {
		switch (c) {
		case 'f': fa = optarg; break;
		case 'F': fb = optarg; break;
		case 'h': fputs(cmd_img_help, stdout); return EXIT_OK;
		default:
			if (cli__img_trust_option(c, optarg))
				break;
			return cli__usage("img", "bad option for "
					  "'img compare'");
		}
	}
	if (argc - optind != 2)
		return cli__usage("img", "img compare: expected A B");
	struct imgfmt_open_opts oa = { .format = fa }, ob = { .format = fb };
	if (cli__img_open(argv[optind], &oa, &ia) < 0)
		return 2;
	if (cli__img_open(argv[optind + 1], &ob, &ib) < 0) {
		rc = 2;
		goto out;
	}
	ba = malloc(CMP_BUF);
	bb = malloc(CMP_BUF);
	if (!ba || !bb) {
		cli__error("out of memory");
		rc = 2;
		goto out;
	}
	struct imgfmt_info ifa, ifb;
	imgfmt__info(ia, &ifa);
	imgfmt__info(ib, &ifb);
	uint64_t sa = ifa.virtual_size, sb = ifb.virtual_size;
	uint64_t common = sa < sb ? sa : sb, longer = sa > sb ? sa : sb;
	imgfmt_image *big = sa > sb ? ia : ib;

	/* Walk the common part; ranges both images map as zero need no
	 * reads, which keeps comparing sparse disks fast. */
	for (uint64_t off = 0; off < longer;) {
		struct imgfmt_extent ea, eb;
		uint64_t n = longer - off;
		int in_common = off < common;
		if (in_common && n > common - off)
			n = common - off;
		if (in_common) {
			if (imgfmt__map(ia, off, n, &ea) < 0 ||
			    imgfmt__map(ib, off, n, &eb) < 0) {
				rc = compare_error();
				goto out;
			}
			if (ea.kind == IMGFMT_EXTENT_ZERO &&
			    eb.kind == IMGFMT_EXTENT_ZERO) {
				off += ea.length < eb.length ? ea.length
							     : eb.length;
				continue;
			}
		} else {
			if (imgfmt__map(big, off, n, &ea) < 0) {
				rc = compare_error();
				goto out;
			}
			if (ea.kind == IMGFMT_EXTENT_ZERO) {
				off += ea.length;
				continue;
			}
		}
		size_t len = n < CMP_BUF ? (size_t)n : CMP_BUF;
		int64_t d;
		if (in_common) {
			if (imgfmt__pread(ia, ba, len, off) < 0 ||
			    imgfmt__pread(ib, bb, len, off) < 0) {
				rc = compare_error();
				goto out;
			}
			d = first_difference(ba, bb, len, off);
		} else {
			/* Past the shorter image: the rest must be zero. */
			if (imgfmt__pread(big, ba, len, off) < 0) {
				rc = compare_error();
				goto out;
			}
			memset(bb, 0, len);
			d = first_difference(ba, bb, len, off);
		}
		if (d >= 0) {
			printf("Content mismatch at offset %lld!\n",
			       (long long)d);
			rc = EXIT_FAIL;
			goto out;
		}
		off += len;
	}
	if (sa != sb)
		printf("Warning: image size mismatch!\n");
	printf("Images are identical.\n");
out:
	free(ba);
	free(bb);
	imgfmt__close(ia);
	imgfmt__close(ib);
	return rc;
}
