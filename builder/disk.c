/*
 * disk.c - the root tree into a disk image, and the disk into the
 * appliance's formats.
 *
 * `mke2fs -t ext4 -d ROOT` builds the filesystem straight from the
 * directory: no loop device, no mount, no root needed for that part.  For
 * the same bytes on every build we fix everything mke2fs would pick at
 * random or from the clock: the UUID (-U) and directory hash seed, both
 * derived from the recipe's name and version, every file time (clamped to
 * SOURCE_DATE_EPOCH before the copy), and mke2fs's own clock
 * (SOURCE_DATE_EPOCH / E2FSPROGS_FAKE_TIME).  With [disk] gpt the
 * filesystem starts at 1 MiB (-E offset=) behind a GPT we write ourselves.
 *
 * The finished raw disk is then streamed through imgfmt's writer into the
 * appliance's disk: AVD compressed when the library has the AVD format,
 * raw until then; --output-format adds a plain export.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "builder/steps.h"
#include "imgfmt.h"
#include "writer.h"

#define MIB (1024ull * 1024)

/* 16 bytes derived from the recipe for `purpose`, shaped as a random
 * (version 4) UUID so tools accept it. */
static void derive_uuid(const struct recipe *r, const char *purpose,
			uint8_t out[16])
{
	char buf[1024], hex[65];

	snprintf(buf, sizeof(buf), "appliance-build\n%s\n%s\n%s", r->name,
		 r->version, purpose);
	build__sha256_hex(buf, strlen(buf), hex);
	for (int i = 0; i < 16; i++) {
		unsigned v;
		sscanf(hex + 2 * i, "%2x", &v);
		out[i] = (uint8_t)v;
	}
	out[6] = (out[6] & 0x0f) | 0x40;
	out[8] = (out[8] & 0x3f) | 0x80;
}

static void uuid_str(const uint8_t u[16], char out[37])
{
	sprintf(out, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
		"%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2], u[3], u[4], u[5],
		u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14],
		u[15]);
}

/* GPT stores the first three UUID fields little-endian. */
static void uuid_to_guid(const uint8_t u[16], uint8_t g[16])
{
	g[0] = u[3]; g[1] = u[2]; g[2] = u[1]; g[3] = u[0];
	g[4] = u[5]; g[5] = u[4];
	g[6] = u[7]; g[7] = u[6];
	memcpy(g + 8, u + 8, 8);
}

/* mke2fs -d copies each file's ctime, which no one can set (it is the
 * time of the last inode change on the host), so after mke2fs we set
 * every inode's ctime to SOURCE_DATE_EPOCH with a debugfs script built
 * from the same tree walk. */
static __thread FILE *ctime_script;
static __thread size_t ctime_root_len;
static __thread int64_t ctime_value;
static __thread size_t ctime_skipped;

static int ctime_cb(const char *path, const struct stat *st, int flag,
		    struct FTW *ftw)
{
	const char *rel = path + ctime_root_len;

	(void)st;
	(void)flag;
	(void)ftw;
	if (!rel[0])
		rel = "/";
	/* debugfs quotes with "..." and knows no escapes (a backslash is
	 * an ordinary character, as in systemd's "system-x\x2dy.slice"). */
	if (strpbrk(rel, "\"\n")) {
		ctime_skipped++;
		return 0;
	}
	fprintf(ctime_script, "sif \"%s\" ctime @%" PRId64 "\n", rel,
		ctime_value);
	return 0;
}

static int fix_ctimes(struct build_ctx *c, const char *fs_spec)
{
	char *script = build__path(c->work, "ctime.debugfs");
	int rc;

	if (!script)
		return build__err(ENOMEM, "out of memory");
	ctime_script = fopen(script, "we");
	if (!ctime_script) {
		rc = build__err(errno, "%s: %s", script, strerror(errno));
		free(script);
		return rc;
	}
	ctime_root_len = strlen(c->root);
	ctime_value = c->sde;
	ctime_skipped = 0;
	rc = nftw(c->root, ctime_cb, 32, FTW_PHYS) < 0 ?
		build__err(errno, "walking %s: %s", c->root, strerror(errno))
		: 0;
	if (fclose(ctime_script) != 0 && rc == 0)
		rc = build__err(errno, "%s: %s", script, strerror(errno));
	ctime_script = NULL;
	if (ctime_skipped)
		build__log(c, "# %zu file names with quotes or newlines keep "
			   "their host ctime\n", ctime_skipped);
	if (rc == 0) {
		const char *argv[] = { "debugfs", "-w", "-f", script, fs_spec,
				       NULL };
		/* debugfs prints every command it runs; the log gets it. */
		char sde[64], fake[64];
		snprintf(sde, sizeof(sde), "SOURCE_DATE_EPOCH=%s", c->sde_str);
		snprintf(fake, sizeof(fake), "E2FSPROGS_FAKE_TIME=%s",
			 c->sde_str);
		const char *env[] = { sde, fake, NULL };
		/* The fake time keeps debugfs's superblock write time
		 * reproducible too. */
		rc = build__run(c, NULL, env, argv);
	}
	unlink(script);
	free(script);
	return rc;
}

int disk__build(struct build_ctx *c)
{
	const struct recipe *r = c->r;
	uint64_t size = r->disk.size;
	uint64_t first = 0, last = 0, fs_bytes;
	char uuid[37], seed[37], ext[256], blocks[32], sde_env[64], fake[64];
	int fd, rc;

	if (r->disk.filesystem && strcmp(r->disk.filesystem, "ext4") != 0)
		return build__err(ENOTSUP, "disk.filesystem '%s': only ext4 "
				  "is supported", r->disk.filesystem);
	if (size == 0)
		size = r->base.type == RECIPE_BASE_DEBIAN ? 2048 * MIB
							  : 64 * MIB;
	size = (size + MIB - 1) / MIB * MIB;
	if (size < 8 * MIB || size > (4ull << 40))
		return build__err(EINVAL, "disk.size %" PRIu64 " is outside "
				  "8 MiB .. 4 TiB", size);
	c->disk_size = size;
	derive_uuid(r, "ext4-uuid", c->fs_uuid);
	derive_uuid(r, "ext4-hash-seed", c->hash_seed);
	derive_uuid(r, "gpt-disk", c->disk_guid);
	derive_uuid(r, "gpt-partition", c->part_guid);

	free(c->disk_raw);
	c->disk_raw = build__path(c->work, "disk.raw");
	unlink(c->disk_raw);
	fd = open(c->disk_raw, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		return build__err(errno, "%s: %s", c->disk_raw,
				  strerror(errno));
	if (ftruncate(fd, (off_t)size) < 0) {
		rc = build__err(errno, "%s: %s", c->disk_raw, strerror(errno));
		close(fd);
		return rc;
	}
	if (r->disk.gpt) {
		gpt__default_span(size, &first, &last);
		c->part_offset = first * 512;
		fs_bytes = (last - first + 1) * 512;
		snprintf(c->root_dev, sizeof(c->root_dev), "/dev/vda1");
	} else {
		c->part_offset = 0;
		fs_bytes = size;
		snprintf(c->root_dev, sizeof(c->root_dev), "/dev/vda");
	}

	/* Every file time in the tree becomes SOURCE_DATE_EPOCH: mke2fs -d
	 * copies them. */
	if ((rc = build__clamp_mtimes(c->root, c->sde)) < 0)
		goto out;
	uuid_str(c->fs_uuid, uuid);
	uuid_str(c->hash_seed, seed);
	snprintf(ext, sizeof(ext), "hash_seed=%s,root_owner=0:0,nodiscard%s%"
		 PRIu64, seed, r->disk.gpt ? ",offset=" : "",
		 r->disk.gpt ? c->part_offset : (uint64_t)0);
	if (!r->disk.gpt)
		ext[strlen(ext) - 1] = '\0'; /* drop the "0" */
	snprintf(blocks, sizeof(blocks), "%" PRIu64, fs_bytes / 4096);
	snprintf(sde_env, sizeof(sde_env), "SOURCE_DATE_EPOCH=%s", c->sde_str);
	snprintf(fake, sizeof(fake), "E2FSPROGS_FAKE_TIME=%s", c->sde_str);
	const char *env[] = { sde_env, fake, "MKE2FS_CONFIG=/dev/null",
			      NULL };
	/* MKE2FS_CONFIG=/dev/null: the host's mke2fs.conf must not change
	 * our image; the features we rely on are spelled out instead. */
	const char *argv[] = {
		"mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-I", "256",
		"-O", "^has_journal,extent,huge_file,flex_bg,metadata_csum,"
		      "64bit,dir_nlink,extra_isize,dir_index,filetype,"
		      "sparse_super,large_file",
		"-L", "root", "-U", uuid, "-E", ext, "-d", c->root,
		c->disk_raw, blocks, NULL,
	};
	/* No journal: the appliance disk is rebuilt, not repaired, and a
	 * journal costs 16+ MiB of zeros in every image. */
	if ((rc = build__run(c, NULL, env, argv)) < 0)
		goto out;
	char spec[4200];
	snprintf(spec, sizeof(spec), "%s?offset=%" PRIu64, c->disk_raw,
		 c->part_offset);
	if ((rc = fix_ctimes(c, r->disk.gpt ? spec : c->disk_raw)) < 0)
		goto out;
	if (r->disk.gpt) {
		struct gpt_layout g = {
			.disk_size = size, .first_lba = first,
			.last_lba = last, .part_name = "root",
		};
		uuid_to_guid(c->disk_guid, g.disk_guid);
		uuid_to_guid(c->part_guid, g.part_guid);
		if ((rc = gpt__write(fd, &g)) < 0)
			goto out;
	}
	if (fsync(fd) < 0)
		rc = build__err(errno, "fsync %s: %s", c->disk_raw,
				strerror(errno));
out:
	close(fd);
	return rc;
}

static int all_zero(const uint8_t *p, size_t len)
{
	return len == 0 || (p[0] == 0 && memcmp(p, p + 1, len - 1) == 0);
}

static int format_known(const char *fmt)
{
	for (const char *const *f = imgfmt__formats(); f && *f; f++)
		if (strcmp(*f, fmt) == 0)
			return 1;
	return 0;
}

/* Stream the raw disk into `dst` (which must not exist) in `fmt`, skipping
 * all-zero chunks: the writer leaves them unallocated. */
static int write_image(struct build_ctx *c, const char *dst, const char *fmt,
		       int compress)
{
	struct imgfmt_writer_opts o = {
		.format = fmt, .size = c->disk_size, .compress = compress,
		.uuid = c->fs_uuid,
	};
	imgfmt_writer *w = NULL;
	uint8_t *buf = NULL;
	int in, rc;

	in = open(c->disk_raw, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return build__err(errno, "%s: %s", c->disk_raw,
				  strerror(errno));
	if (imgfmt__writer_open(dst, &o, &w) < 0) {
		rc = build__err(EIO, "%s", imgfmt__error());
		close(in);
		return rc;
	}
	uint32_t cs = imgfmt__writer_chunk_size(w);
	buf = malloc(cs);
	if (!buf) {
		rc = build__err(ENOMEM, "out of memory");
		goto fail;
	}
	for (uint64_t off = 0; off < c->disk_size; off += cs) {
		if (build__cancelled(c)) {
			rc = -ECANCELED;
			goto fail;
		}
		uint32_t len = c->disk_size - off < cs ?
			(uint32_t)(c->disk_size - off) : cs;
		size_t got = 0;
		while (got < len) {
			ssize_t n = pread(in, buf + got, len - got,
					  (off_t)(off + got));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				rc = build__err(n < 0 ? errno : EIO,
						"reading %s", c->disk_raw);
				goto fail;
			}
			got += (size_t)n;
		}
		if (all_zero(buf, len))
			continue;
		struct imgfmt_chunk ch = { 0 };
		if (imgfmt__writer_encode(w, buf, off, len, &ch) < 0 ||
		    imgfmt__writer_put(w, &ch) < 0) {
			imgfmt__chunk_release(&ch);
			rc = build__err(EIO, "%s", imgfmt__error());
			goto fail;
		}
		imgfmt__chunk_release(&ch);
	}
	free(buf);
	close(in);
	/* The writer names dst only once complete: a failure, here or in
	 * finish, leaves nothing to remove. */
	if (imgfmt__writer_finish(w) < 0)
		return build__err(EIO, "%s", imgfmt__error());
	return 0;
fail:
	free(buf);
	close(in);
	imgfmt__writer_abort(w);
	return rc;
}

int disk__export(struct build_ctx *c)
{
	const char *fmt = format_known("avd") ? "avd" : "raw";
	char name[32], *dst;
	int rc;

	snprintf(name, sizeof(name), "disk.%s", fmt);
	dst = build__path(c->outtmp, name);
	if (!dst)
		return build__err(ENOMEM, "out of memory");
	rc = write_image(c, dst, fmt, strcmp(fmt, "avd") == 0);
	free(dst);
	if (rc < 0)
		return rc;
	c->disk_name = strdup(name);
	c->disk_format = strdup(fmt);

	const char *ofmt = c->o->output_format;
	if (!ofmt || strcmp(ofmt, fmt) == 0)
		return 0;
	if (strcmp(ofmt, "raw") && strcmp(ofmt, "qcow2") &&
	    strcmp(ofmt, "vmdk") && strcmp(ofmt, "vhd"))
		return build__err(EINVAL, "output format '%s': expected raw, "
				  "qcow2, vmdk or vhd", ofmt);
	snprintf(name, sizeof(name), "disk.%s", ofmt);
	dst = build__path(c->outtmp, name);
	if (!dst)
		return build__err(ENOMEM, "out of memory");
	if (format_known(ofmt)) {
		rc = write_image(c, dst, ofmt, 0);
	} else {
		/* Stopgap until imgfmt writes this format itself. */
		const char *qfmt = strcmp(ofmt, "vhd") == 0 ? "vpc" : ofmt;
		const char *argv[] = { "qemu-img", "convert", "-f", "raw",
				       "-O", qfmt, c->disk_raw, dst, NULL };
		rc = build__run(c, NULL, NULL, argv);
	}
	free(dst);
	if (rc == 0)
		c->export_name = strdup(name);
	return rc;
}
