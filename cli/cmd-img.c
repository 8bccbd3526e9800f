/*
 * cmd-img.c - `appliance img ...`: disk image commands, shaped like
 * qemu-img's so that its users feel at home.
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "imgfmt.h"

const char cmd_img_help[] =
	"usage: appliance img SUBCOMMAND [OPTIONS] ...\n"
	"\n"
	"  create [-f FMT] [-b BACKING [-F BFMT]] [-o cluster_size=N] FILE [SIZE]\n"
	"        create an image (default format avd; SIZE like 10G; with a\n"
	"        backing file SIZE defaults to the backing file's size)\n"
	"  info [-f FMT] [--json] FILE\n"
	"        show format, sizes, cluster size, backing chain\n"
	"  map [-f FMT] [--json] FILE\n"
	"        list extents: data, zero, or from the backing file\n"
	"  check [-f FMT] [--repair] FILE\n"
	"        check metadata and checksums (exit 1 if problems remain)\n"
	"  resize [-f FMT] FILE SIZE\n"
	"        grow the virtual disk (SIZE absolute, or +SIZE)\n"
	"  read [-f FMT] FILE OFFSET LENGTH\n"
	"        copy LENGTH bytes at OFFSET of the virtual disk to stdout\n"
	"  write [-f FMT] FILE OFFSET LENGTH\n"
	"        copy LENGTH bytes from stdin to OFFSET of the virtual disk,\n"
	"        then flush\n"
	"  serve [-f FMT] (--socket PATH | --port N [--bind ADDR]) [--read-only]\n"
	"        [--export-name NAME] FILE\n"
	"        export the image over NBD until SIGTERM/SIGINT/SIGHUP (then\n"
	"        flush)\n"
	"  attach [-f FMT] [--rw] [--background [--log FILE]] IMAGE FILE\n"
	"        expose the virtual disk as the regular file FILE (FUSE) for\n"
	"        tools that want a raw disk; read-only unless --rw\n"
	"  unmount DIR|FILE\n"
	"        undo attach or mount; returns once the image is flushed\n"
	"  mount [-f FMT] [--partition N | --inspect] [--rw]\n"
	"        [--background [--log FILE]] IMAGE DIR\n"
	"        mount the filesystem inside IMAGE on DIR (libguestfs + FUSE);\n"
	"        default: the first filesystem that mounts; --partition 0 is\n"
	"        the whole disk; --inspect mounts what OS inspection finds;\n"
	"        --background returns once the mount is ready, --log keeps the\n"
	"        daemon's later messages (default: discarded)\n"
	"  ls IMAGE [DIR] | cat IMAGE PATH... | cp-in IMAGE LOCAL... DIR |\n"
	"  cp-out IMAGE PATH... LOCALDIR | edit IMAGE PATH\n"
	"        (same filesystem options) look at or change files inside an\n"
	"        image without mounting it; edit runs $VISUAL/$EDITOR on a copy\n"
	"        and writes it back if changed.  Each starts one libguestfs\n"
	"        appliance (slow: tens of seconds without KVM).\n"
	"  convert [-f FMT] -O FMT [-c] [--level N] [-o compression_type=zstd,\n"
	"        cluster_size=N,subformat=S] [-p] [-j N] [--force] SRC DST\n"
	"        copy SRC (backing chain flattened) into a new image; zero\n"
	"        ranges stay sparse; DST appears only when complete\n"
	"  compare [-f FMT] [-F FMT] A B\n"
	"        compare contents (exit 0 identical, 1 different, 2 error)\n"
	"  commit [-f FMT] FILE\n"
	"        copy FILE's own data into its backing file, then empty FILE\n"
	"  rebase [-f FMT] [-u] -b NEW [-F FMT] FILE\n"
	"        point FILE at backing file NEW (\"\" for none); without -u,\n"
	"        first copy in whatever differs so the content is unchanged\n"
	"  compact [-f FMT] [-c] [--level N] SRC DST\n"
	"        write SRC's content to a new AVD image DST without the holes\n"
	"        left by rewrites and discards (-c: zstd-compressed)\n"
	"\n"
	"Formats: avd (ours), raw, qcow2, vmdk, vhd; detected by magic unless\n"
	"-f names one; a detected raw image refuses writes that would make it\n"
	"look like another format (-f raw allows them).  An appliance package\n"
	"(NAME-VERSION.appliance) opens as its disk: read-only, once its\n"
	"signature is by a trusted key (or by the one --key K.pub names),\n"
	"every cluster checked against the signed hashes as it is read;\n"
	"--insecure opens an unsigned or untrusted one too, with a warning.\n"
	"Exit status: 0 ok, 1 failure or problems found,\n"
	"2 usage error.\n";

/* Options every image sub-command shares. */
struct img_args {
	const char *format;
	int json;
	int repair;
	const char *backing, *backing_format;
	uint32_t cluster_size;
};

enum { OPT_JSON = 1000, OPT_REPAIR };

static const struct option img_long_opts[] = {
	{ "format", required_argument, NULL, 'f' },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "repair", no_argument, NULL, OPT_REPAIR },
	{ "backing", required_argument, NULL, 'b' },
	{ "backing-format", required_argument, NULL, 'F' },
	{ "option", required_argument, NULL, 'o' },
	CLI_PKG_TRUST_OPTIONS,
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* -o key=value[,key=value...] */
static int parse_create_options(const char *s, struct img_args *a)
{
	char *copy = strdup(s), *save = NULL;
	int rc = 0;

	for (char *kv = strtok_r(copy, ",", &save); kv && rc == 0;
	     kv = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(kv, '=');
		uint64_t v;
		if (!eq) {
			rc = cli__usage("img", "option '%s' needs a value", kv);
			break;
		}
		*eq = '\0';
		if (strcmp(kv, "cluster_size") == 0) {
			if (cli__parse_size(eq + 1, &v) < 0 || v > UINT32_MAX)
				rc = cli__usage("img", "bad cluster_size '%s'",
						eq + 1);
			else
				a->cluster_size = (uint32_t)v;
		} else {
			rc = cli__usage("img", "unknown option '%s'", kv);
		}
	}
	free(copy);
	return rc;
}

/* Parse options; returns 0, or an exit status to return (usage/help). */
static int parse_img_args(int argc, char **argv, struct img_args *a)
{
	int c;

	memset(a, 0, sizeof(*a));
	optind = 1;
	while ((c = getopt_long(argc, argv, "f:b:F:o:h", img_long_opts,
				NULL)) != -1) {
		switch (c) {
		case 'f': a->format = optarg; break;
		case 'b': a->backing = optarg; break;
		case 'F': a->backing_format = optarg; break;
		case 'o': {
			int rc = parse_create_options(optarg, a);
			if (rc)
				return rc;
			break;
		}
		case OPT_JSON: a->json = 1; break;
		case OPT_REPAIR: a->repair = 1; break;
		case 'h': fputs(cmd_img_help, stdout); return -1;
		default:
			if (cli__img_trust_option(c, optarg))
				break;
			return cli__usage("img", "bad option for 'img %s'",
					  argv[0]);
		}
	}
	return 0;
}

static int open_image(const char *path, const char *format, int rw,
		      imgfmt_image **img)
{
	struct imgfmt_open_opts o = { .format = format };

	if (rw)
		o.flags |= IMGFMT_OPEN_RDWR;
	return cli__img_open(path, &o, img);
}

static int img_create(int argc, char **argv)
{
	struct img_args a;
	int rc = parse_img_args(argc, argv, &a);
	uint64_t size = 0;

	if (rc)
		return rc < 0 ? EXIT_OK : rc;
	if (optind >= argc || argc - optind > 2)
		return cli__usage("img", "img create: expected FILE [SIZE]");
	if (argc - optind == 2 && cli__parse_size(argv[optind + 1], &size) < 0)
		return cli__usage("img", "img create: bad size '%s'",
				  argv[optind + 1]);
	if (argc - optind == 1 && !a.backing)
		return cli__usage("img", "img create: SIZE is required "
				  "without a backing file");
	struct imgfmt_create_opts o = {
		.format = a.format,
		.size = size,
		.cluster_size = a.cluster_size,
		.backing_file = a.backing,
		.backing_format = a.backing_format,
	};
	if (imgfmt__create(argv[optind], &o) < 0) {
		cli__error("%s", imgfmt__error());
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

static void print_hex_uuid(FILE *f, const uint8_t *u)
{
	for (int i = 0; i < 16; i++) {
		fprintf(f, "%02x", u[i]);
		if (i == 3 || i == 5 || i == 7 || i == 9)
			fputc('-', f);
	}
}

static int img_info(int argc, char **argv)
{
	struct img_args a;
	int rc = parse_img_args(argc, argv, &a);
	imgfmt_image *img;
	struct imgfmt_info info;
	char h1[32], h2[32];

	if (rc)
		return rc < 0 ? EXIT_OK : rc;
	if (argc - optind != 1)
		return cli__usage("img", "img info: expected FILE");
	if (open_image(argv[optind], a.format, 0, &img) < 0)
		return EXIT_FAIL;
	if (imgfmt__info(img, &info) < 0) {
		cli__error("%s", imgfmt__error());
		imgfmt__close(img);
		return EXIT_FAIL;
	}
	if (a.json) {
		printf("{\n  \"filename\": ");
		cli__json_string(stdout, argv[optind]);
		printf(",\n  \"format\": ");
		cli__json_string(stdout, info.format);
		if (info.subformat[0]) {
			printf(",\n  \"subformat\": ");
			cli__json_string(stdout, info.subformat);
		}
		printf(",\n  \"virtual-size\": %llu,\n  \"file-size\": %llu,\n"
		       "  \"actual-size\": %llu,\n  \"cluster-size\": %u,\n"
		       "  \"dirty\": %s",
		       (unsigned long long)info.virtual_size,
		       (unsigned long long)info.file_size,
		       (unsigned long long)info.allocated_bytes,
		       info.cluster_size, info.dirty ? "true" : "false");
		if (info.has_uuid) {
			printf(",\n  \"uuid\": \"");
			print_hex_uuid(stdout, info.uuid);
			printf("\"");
		}
		if (info.backing_file[0]) {
			printf(",\n  \"backing-filename\": ");
			cli__json_string(stdout, info.backing_file);
			printf(",\n  \"backing-format\": ");
			cli__json_string(stdout, info.backing_format);
		}
		printf(",\n  \"chain-depth\": %d\n}\n", info.chain_depth);
	} else {
		/* The subformat (a VMDK's createType) and the backing file's
		 * name and format are the image's own words. */
		printf("image: %s\nfile format: %s", argv[optind], info.format);
		if (info.subformat[0]) {
			printf(" (");
			cli__print_untrusted(stdout, info.subformat);
			printf(")");
		}
		printf("\n");
		printf("virtual size: %s (%llu bytes)\n",
		       cli__human_size(info.virtual_size, h1, sizeof(h1)),
		       (unsigned long long)info.virtual_size);
		printf("disk size: %s\n",
		       cli__human_size(info.allocated_bytes, h2, sizeof(h2)));
		if (info.cluster_size)
			printf("cluster size: %u\n", info.cluster_size);
		if (info.has_uuid) {
			printf("uuid: ");
			print_hex_uuid(stdout, info.uuid);
			printf("\n");
		}
		if (info.backing_file[0]) {
			printf("backing file: ");
			cli__print_untrusted(stdout, info.backing_file);
			printf(" (format ");
			cli__print_untrusted(stdout, info.backing_format);
			printf(")\n");
		}
		if (info.chain_depth > 1)
			printf("backing chain depth: %d\n", info.chain_depth);
		if (info.dirty)
			printf("dirty: yes (not closed cleanly; run 'appliance "
			       "img check --repair')\n");
	}
	imgfmt__close(img);
	return EXIT_OK;
}

static const char *extent_kind_name(enum imgfmt_extent_kind k)
{
	switch (k) {
	case IMGFMT_EXTENT_DATA: return "data";
	case IMGFMT_EXTENT_ZERO: return "zero";
	case IMGFMT_EXTENT_BACKING: return "backing";
	}
	return "?";
}

static int img_map(int argc, char **argv)
{
	struct img_args a;
	int rc = parse_img_args(argc, argv, &a);
	imgfmt_image *img;
	struct imgfmt_info info;
	struct imgfmt_extent prev = { 0 }, e;
	int have_prev = 0, first = 1;

	if (rc)
		return rc < 0 ? EXIT_OK : rc;
	if (argc - optind != 1)
		return cli__usage("img", "img map: expected FILE");
	if (open_image(argv[optind], a.format, 0, &img) < 0)
		return EXIT_FAIL;
	imgfmt__info(img, &info);
	if (a.json)
		printf("[");
	else
		printf("%-20s %-20s %-8s %s\n", "offset", "length", "kind",
		       "file-offset");
	/* Merge adjacent extents of the same kind (and contiguous file
	 * offsets) so the listing is as short as the layout allows. */
	for (uint64_t off = 0;; off += e.length) {
		int end = off >= info.virtual_size;
		if (!end && imgfmt__map(img, off, info.virtual_size - off,
					&e) < 0) {
			cli__error("%s", imgfmt__error());
			imgfmt__close(img);
			return EXIT_FAIL;
		}
		if (!end && have_prev && e.kind == prev.kind &&
		    e.flags == prev.flags &&
		    ((prev.file_offset < 0 && e.file_offset < 0) ||
		     (prev.file_offset >= 0 &&
		      e.file_offset == prev.file_offset +
				       (int64_t)prev.length))) {
			prev.length += e.length;
			continue;
		}
		if (have_prev) {
			if (a.json) {
				printf("%s\n  {\"start\": %llu, \"length\": %llu, "
				       "\"kind\": \"%s\", \"compressed\": %s",
				       first ? "" : ",",
				       (unsigned long long)prev.offset,
				       (unsigned long long)prev.length,
				       extent_kind_name(prev.kind),
				       prev.flags & IMGFMT_EXTENT_COMPRESSED
					       ? "true" : "false");
				if (prev.file_offset >= 0)
					printf(", \"offset\": %lld",
					       (long long)prev.file_offset);
				printf("}");
			} else {
				printf("%-20llu %-20llu %-8s",
				       (unsigned long long)prev.offset,
				       (unsigned long long)prev.length,
				       extent_kind_name(prev.kind));
				if (prev.file_offset >= 0)
					printf(" %lld",
					       (long long)prev.file_offset);
				if (prev.flags & IMGFMT_EXTENT_COMPRESSED)
					printf(" compressed");
				printf("\n");
			}
			first = 0;
		}
		if (end)
			break;
		prev = e;
		have_prev = 1;
	}
	if (a.json)
		printf("\n]\n");
	imgfmt__close(img);
	return EXIT_OK;
}

static int img_check(int argc, char **argv)
{
	struct img_args a;
	int rc = parse_img_args(argc, argv, &a);
	imgfmt_image *img;
	struct imgfmt_check_result res;

	if (rc)
		return rc < 0 ? EXIT_OK : rc;
	if (argc - optind != 1)
		return cli__usage("img", "img check: expected FILE");
	if (open_image(argv[optind], a.format, a.repair, &img) < 0)
		return EXIT_FAIL;
	if (imgfmt__check(img, a.repair, &res) < 0) {
		cli__error("%s", imgfmt__error());
		imgfmt__close(img);
		return EXIT_FAIL;
	}
	if (imgfmt__close(img) < 0) {
		cli__error("%s", imgfmt__error());
		return EXIT_FAIL;
	}
	uint64_t problems = res.corruptions + res.leaks + res.checksum_errors;
	if (res.was_dirty)
		printf("image was not closed cleanly%s\n",
		       a.repair ? "; repaired" : "");
	if (problems == 0) {
		printf("No errors were found on the image.\n");
		return (res.was_dirty && !a.repair) ? EXIT_FAIL : EXIT_OK;
	}
	printf("%llu corruptions, %llu leaked clusters, %llu checksum errors"
	       " found\n", (unsigned long long)res.corruptions,
	       (unsigned long long)res.leaks,
	       (unsigned long long)res.checksum_errors);
	if (res.first_problem[0])
		printf("first problem: %s\n", res.first_problem);
	if (a.repair)
		printf("%llu repaired\n", (unsigned long long)res.repaired);
	return (a.repair && res.repaired >= problems) ? EXIT_OK : EXIT_FAIL;
}

static int img_resize(int argc, char **argv)
{
	struct img_args a;
	int rc = parse_img_args(argc, argv, &a);
	imgfmt_image *img;
	uint64_t size;
	const char *s;

	if (rc)
		return rc < 0 ? EXIT_OK : rc;
	if (argc - optind != 2)
		return cli__usage("img", "img resize: expected FILE SIZE");
	s = argv[optind + 1];
	if (cli__parse_size(s[0] == '+' ? s + 1 : s, &size) < 0)
		return cli__usage("img", "img resize: bad size '%s'", s);
	if (open_image(argv[optind], a.format, 1, &img) < 0)
		return EXIT_FAIL;
	struct imgfmt_info info;
	imgfmt__info(img, &info);
	if (s[0] == '+')
		size += info.virtual_size;
	if (imgfmt__resize(img, size) < 0 || imgfmt__close(img) < 0) {
		cli__error("%s", imgfmt__error());
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

/* Move bytes between the virtual disk and stdin/stdout, so scripts and
 * tests can drive any image without a mount. */
static int img_readwrite(int argc, char **argv, int writing)
{
	struct img_args a;
	int rc = parse_img_args(argc, argv, &a);
	imgfmt_image *img;
	uint64_t off, len;
	size_t bufsize = 1u << 20;
	char *buf;

	if (rc)
		return rc < 0 ? EXIT_OK : rc;
	if (argc - optind != 3)
		return cli__usage("img", "img %s: expected FILE OFFSET LENGTH",
				  argv[0]);
	if (cli__parse_size(argv[optind + 1], &off) < 0 ||
	    cli__parse_size(argv[optind + 2], &len) < 0)
		return cli__usage("img", "img %s: bad offset or length",
				  argv[0]);
	if (open_image(argv[optind], a.format, writing, &img) < 0)
		return EXIT_FAIL;
	buf = malloc(bufsize);
	if (!buf) {
		cli__error("out of memory");
		imgfmt__close(img);
		return EXIT_FAIL;
	}
	rc = EXIT_OK;
	while (len > 0) {
		size_t n = len < bufsize ? (size_t)len : bufsize;
		if (writing) {
			size_t got = fread(buf, 1, n, stdin);
			if (got < n) {
				cli__error("img write: stdin ended %llu bytes "
					   "early", (unsigned long long)
					   (len - got));
				rc = EXIT_FAIL;
				n = got;
			}
			if (n && imgfmt__pwrite(img, buf, n, off) < 0) {
				cli__error("%s", imgfmt__error());
				rc = EXIT_FAIL;
				break;
			}
			if (rc)
				break;
		} else {
			if (imgfmt__pread(img, buf, n, off) < 0) {
				cli__error("%s", imgfmt__error());
				rc = EXIT_FAIL;
				break;
			}
			if (fwrite(buf, 1, n, stdout) != n) {
				cli__error("writing stdout: %s",
					   strerror(errno));
				rc = EXIT_FAIL;
				break;
			}
		}
		off += n;
		len -= n;
	}
	free(buf);
	if (writing && rc == EXIT_OK && imgfmt__flush(img) < 0) {
		cli__error("%s", imgfmt__error());
		rc = EXIT_FAIL;
	}
	if (imgfmt__close(img) < 0 && rc == EXIT_OK) {
		cli__error("%s", imgfmt__error());
		rc = EXIT_FAIL;
	}
	if (!writing && fflush(stdout) != 0)
		rc = EXIT_FAIL;
	return rc;
}

static int img_read(int argc, char **argv)
{
	return img_readwrite(argc, argv, 0);
}

static int img_write(int argc, char **argv)
{
	return img_readwrite(argc, argv, 1);
}

/* commit / rebase / compact share a small parser of their own. */
struct maint_args {
	const char *format, *backing, *backing_format;
	int unsafe, compress, level, have_backing;
};

static int parse_maint_args(int argc, char **argv, struct maint_args *a)
{
	static const struct option opts[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "backing", required_argument, NULL, 'b' },
		{ "backing-format", required_argument, NULL, 'F' },
		{ "unsafe", no_argument, NULL, 'u' },
		{ "compress", no_argument, NULL, 'c' },
		{ "level", required_argument, NULL, 'l' },
		CLI_PKG_TRUST_OPTIONS,
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t v;
	int c;

	memset(a, 0, sizeof(*a));
	optind = 1;
	while ((c = getopt_long(argc, argv, "f:b:F:uchl:", opts, NULL)) != -1) {
		switch (c) {
		case 'f': a->format = optarg; break;
		case 'b': a->backing = optarg; a->have_backing = 1; break;
		case 'F': a->backing_format = optarg; break;
		case 'u': a->unsafe = 1; break;
		case 'c': a->compress = 1; break;
		case 'l':
			if (cli__parse_u64(optarg, &v) < 0 || v < 1 || v > 22)
				return cli__usage("img", "bad --level '%s' "
						  "(1..22)", optarg);
			a->level = (int)v;
			a->compress = 1;
			break;
		case 'h': fputs(cmd_img_help, stdout); return -1;
		default:
			if (cli__img_trust_option(c, optarg))
				break;
			return cli__usage("img", "bad option for 'img %s'",
					  argv[0]);
		}
	}
	return 0;
}

/* Report the failing call's message, close, and pick the exit status. */
static int maint_finish(imgfmt_image *img, int r)
{
	if (r < 0)
		cli__error("%s", imgfmt__error());
	if (imgfmt__close(img) < 0 && r == 0) {
		cli__error("%s", imgfmt__error());
		r = -1;
	}
	return r < 0 ? EXIT_FAIL : EXIT_OK;
}

static int img_commit(int argc, char **argv)
{
	struct maint_args a;
	imgfmt_image *img;
	int rc = parse_maint_args(argc, argv, &a);

	if (rc)
		return rc < 0 ? EXIT_OK : rc;
	if (argc - optind != 1)
		return cli__usage("img", "img commit: expected FILE");
	if (open_image(argv[optind], a.format, 1, &img) < 0)
		return EXIT_FAIL;
	return maint_finish(img, imgfmt__commit(img));
}

static int img_rebase(int argc, char **argv)
{
	struct maint_args a;
	imgfmt_image *img;
	int rc = parse_maint_args(argc, argv, &a);

	if (rc)
		return rc < 0 ? EXIT_OK : rc;
	if (argc - optind != 1 || !a.have_backing)
		return cli__usage("img", "img rebase: expected -b NEW FILE");
	if (open_image(argv[optind], a.format, 1, &img) < 0)
		return EXIT_FAIL;
	return maint_finish(img, imgfmt__rebase(img, a.backing,
						a.backing_format, a.unsafe));
}

static int img_compact(int argc, char **argv)
{
	struct maint_args a;
	imgfmt_image *img;
	int rc = parse_maint_args(argc, argv, &a);

	if (rc)
		return rc < 0 ? EXIT_OK : rc;
	if (argc - optind != 2)
		return cli__usage("img", "img compact: expected SRC DST");
	if (access(argv[optind + 1], F_OK) == 0) {
		cli__error("%s already exists", argv[optind + 1]);
		return EXIT_FAIL;
	}
	if (open_image(argv[optind], a.format, 0, &img) < 0)
		return EXIT_FAIL;
	int level = a.compress ? (a.level ? a.level : 3) : 0;
	return maint_finish(img, imgfmt__compact(img, argv[optind + 1],
						 level));
}

static const struct cli_command img_commands[] = {
	{ "create", img_create, "create an image", NULL },
	{ "info", img_info, "show image information", NULL },
	{ "map", img_map, "show the allocation map", NULL },
	{ "check", img_check, "check (and repair) an image", NULL },
	{ "resize", img_resize, "grow an image", NULL },
	{ "read", img_read, "copy bytes out of an image", NULL },
	{ "write", img_write, "copy bytes into an image", NULL },
	{ "convert", cmd_img_convert, "convert between formats", NULL },
	{ "compare", cmd_img_compare, "compare two images' contents", NULL },
	{ "serve", img_serve, "export an image over NBD", NULL },
	{ "attach", img_attach, "expose an image as a raw file (FUSE)", NULL },
	{ "unmount", img_unmount, "undo attach or mount", NULL },
	{ "mount", img_mount, "mount a filesystem in an image (FUSE)", NULL },
	{ "ls", img_ls, "list a directory inside an image", NULL },
	{ "cat", img_cat, "print files from inside an image", NULL },
	{ "cp-in", img_cp_in, "copy files into an image", NULL },
	{ "cp-out", img_cp_out, "copy files out of an image", NULL },
	{ "edit", img_edit, "edit a file inside an image", NULL },
	{ "commit", img_commit, "merge an overlay into its backing file",
	  NULL },
	{ "rebase", img_rebase, "change an image's backing file", NULL },
	{ "compact", img_compact, "rewrite an image without holes", NULL },
	{ NULL, NULL, NULL, NULL },
};

int cmd_img(int argc, char **argv)
{
	if (argc < 2)
		return cli__usage("img", "img: missing subcommand");
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		fputs(cmd_img_help, stdout);
		return EXIT_OK;
	}
	for (const struct cli_command *c = img_commands; c->name; c++)
		if (strcmp(c->name, argv[1]) == 0)
			return c->run(argc - 1, argv + 1);
	return cli__usage("img", "img: unknown subcommand '%s'", argv[1]);
}
