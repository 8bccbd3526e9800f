/*
 * test_vmdk_vhd.c - the VMDK and VHD drivers: round trips through the
 * streaming writer, and hostile images (every table, pointer, size and
 * descriptor field lying) that must fail with a message naming the field,
 * never crash.  Run under SANITIZE=1 to catch the crashes.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "imgfmt.h"
#include "writer.h"
#include "fixture-run.h"

static char dir[64];
static char path[128];

static void setup(void)
{
	strcpy(dir, "/tmp/test_vmdk_vhd.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/img", dir);
}

static void teardown(void)
{
	char cmd[160];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
}

/* ---- helpers --------------------------------------------------------- */

/* Deterministic, incompressible-enough test data with zero grains. */
static uint8_t *pattern(size_t size)
{
	uint8_t *b = calloc(1, size);
	uint32_t x = 12345;

	ck_assert_ptr_nonnull(b);
	for (size_t i = 0; i < size; i++) {
		/* Leave the second 64 KiB and [2 MiB, 4 MiB) zero. */
		if ((i >= 65536 && i < 131072) ||
		    (i >= (2u << 20) && i < (4u << 20)))
			continue;
		x = x * 1103515245 + 12345;
		b[i] = (uint8_t)(x >> 16);
	}
	return b;
}

static void write_image(const char *p, const char *fmt, const char *sub,
			const uint8_t *data, uint64_t size, uint32_t cluster)
{
	struct imgfmt_writer_opts o = {
		.format = fmt, .subformat = sub, .size = size,
		.cluster_size = cluster,
	};
	imgfmt_writer *w;

	ck_assert_msg(imgfmt__writer_open(p, &o, &w) == 0, "%s",
		      imgfmt__error());
	uint32_t cs = imgfmt__writer_chunk_size(w);
	for (uint64_t off = 0; off < size; off += cs) {
		struct imgfmt_chunk c;
		uint32_t n = size - off < cs ? (uint32_t)(size - off) : cs;
		ck_assert_msg(imgfmt__writer_encode(w, data + off, off, n, &c)
			      == 0, "%s", imgfmt__error());
		ck_assert_msg(imgfmt__writer_put(w, &c) == 0, "%s",
			      imgfmt__error());
		imgfmt__chunk_release(&c);
	}
	ck_assert_msg(imgfmt__writer_finish(w) == 0, "%s", imgfmt__error());
}

static imgfmt_image *open_fmt(const char *p, const char *fmt)
{
	struct imgfmt_open_opts o = { .format = fmt };
	imgfmt_image *img;

	ck_assert_msg(imgfmt__open(p, &o, &img) == 0, "%s", imgfmt__error());
	return img;
}

/* Open must fail with `err` and a message containing `needle`. */
static void open_fails(const char *p, const char *fmt, int err,
		       const char *needle)
{
	struct imgfmt_open_opts o = { .format = fmt };
	imgfmt_image *img = NULL;
	int r = imgfmt__open(p, &o, &img);

	ck_assert_msg(r == -err, "open returned %d (wanted %d): %s", r, -err,
		      imgfmt__error());
	ck_assert_ptr_null(img);
	ck_assert_msg(strstr(imgfmt__error(), needle), "message '%s' lacks "
		      "'%s'", imgfmt__error(), needle);
}

/* Open succeeds but reading the whole disk fails with `needle`. */
static void read_fails(const char *p, const char *fmt, const char *needle)
{
	imgfmt_image *img = open_fmt(p, fmt);
	struct imgfmt_info info;
	ck_assert_int_eq(imgfmt__info(img, &info), 0);
	uint8_t *buf = malloc(info.virtual_size);
	int r = imgfmt__pread(img, buf, info.virtual_size, 0);

	ck_assert_msg(r < 0, "read of a corrupt image succeeded");
	ck_assert_msg(strstr(imgfmt__error(), needle), "message '%s' lacks "
		      "'%s'", imgfmt__error(), needle);
	free(buf);
	imgfmt__close(img);
}

static void patch(const char *p, uint64_t off, const void *b, size_t n)
{
	int fd = open(p, O_WRONLY);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, b, n, (off_t)off), (ssize_t)n);
	close(fd);
}

static void peek(const char *p, uint64_t off, void *b, size_t n)
{
	int fd = open(p, O_RDONLY);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, b, n, (off_t)off), (ssize_t)n);
	close(fd);
}

static void patch_le32(const char *p, uint64_t off, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16),
			 (uint8_t)(v >> 24) };
	patch(p, off, b, 4);
}

static void patch_le64(const char *p, uint64_t off, uint64_t v)
{
	patch_le32(p, off, (uint32_t)v);
	patch_le32(p, off + 4, (uint32_t)(v >> 32));
}

static void put_be32(uint8_t *b, uint32_t v)
{
	b[0] = (uint8_t)(v >> 24);
	b[1] = (uint8_t)(v >> 16);
	b[2] = (uint8_t)(v >> 8);
	b[3] = (uint8_t)v;
}

/* Change a big-endian field of a VHD footer/header and fix its checksum,
 * so that only the field is wrong. */
static void vhd_patch(const char *p, uint64_t struct_off, size_t struct_len,
		      size_t csum_off, size_t field, const uint8_t *v,
		      size_t n)
{
	uint8_t b[1024];
	uint32_t sum = 0;

	peek(p, struct_off, b, struct_len);
	memcpy(b + field, v, n);
	memset(b + csum_off, 0, 4);
	for (size_t i = 0; i < struct_len; i++)
		sum += b[i];
	put_be32(b + csum_off, ~sum);
	patch(p, struct_off, b, struct_len);
}

static void vhd_patch32(const char *p, uint64_t so, size_t sl, size_t co,
			size_t field, uint32_t v)
{
	uint8_t b[4];
	put_be32(b, v);
	vhd_patch(p, so, sl, co, field, b, 4);
}

static uint64_t file_size(const char *p)
{
	struct stat st;
	ck_assert_int_eq(stat(p, &st), 0);
	return (uint64_t)st.st_size;
}

static void write_file(const char *p, const char *text)
{
	FILE *f = fopen(p, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
}

static void small_dynamic_for_rw(const char *p)
{
	uint8_t *data = pattern(4u << 20);
	write_image(p, "vhd", NULL, data, 4u << 20, 0);
	free(data);
}

/* ---- round trips ----------------------------------------------------- */

static void roundtrip(const char *fmt, const char *sub, uint64_t size,
		      uint32_t cluster, const char *want_sub)
{
	uint8_t *data = pattern(size);
	uint8_t *back = malloc(size);
	struct imgfmt_info info;
	struct imgfmt_extent e;
	struct imgfmt_check_result res;

	write_image(path, fmt, sub, data, size, cluster);
	imgfmt_image *img = open_fmt(path, NULL);
	ck_assert_int_eq(imgfmt__info(img, &info), 0);
	ck_assert_str_eq(info.format, fmt);
	ck_assert_str_eq(info.subformat, want_sub);
	ck_assert_uint_eq(info.virtual_size, size);
	ck_assert_int_eq(imgfmt__pread(img, back, size, 0), 0);
	ck_assert(memcmp(data, back, size) == 0);
	/* Unaligned read across a grain/block boundary. */
	ck_assert_int_eq(imgfmt__pread(img, back, 70001, 65530), 0);
	ck_assert(memcmp(data + 65530, back, 70001) == 0);
	/* The zero range at 2 MiB was not stored. */
	ck_assert_int_eq(imgfmt__map(img, 2u << 20, 2u << 20, &e), 0);
	ck_assert_int_eq(e.kind, IMGFMT_EXTENT_ZERO);
	ck_assert_uint_eq(e.length, 2u << 20);
	ck_assert_int_eq(imgfmt__map(img, 0, 4096, &e), 0);
	ck_assert_int_eq(e.kind, IMGFMT_EXTENT_DATA);
	ck_assert_int_eq(imgfmt__check(img, 0, &res), 0);
	ck_assert_msg(res.corruptions == 0, "%s", res.first_problem);
	imgfmt__close(img);
	free(data);
	free(back);
}

START_TEST(vmdk_sparse_roundtrip)
{
	/* Not a multiple of the grain: the last grain is partial. */
	roundtrip("vmdk", NULL, (5u << 20) + 512 * 3, 0, "monolithicSparse");
}
END_TEST

START_TEST(vmdk_stream_roundtrip)
{
	roundtrip("vmdk", "streamOptimized", (5u << 20) + 512 * 3, 0,
		  "streamOptimized");
}
END_TEST

START_TEST(vmdk_stream_many_grain_tables)
{
	/* 4 KiB grains: 2 MiB per grain table, so 3 tables with markers. */
	roundtrip("vmdk", "streamOptimized", 5u << 20, 4096,
		  "streamOptimized");
}
END_TEST

START_TEST(vhd_dynamic_roundtrip)
{
	/* A size no CHS geometry expresses: stays exact ("win " creator). */
	roundtrip("vhd", NULL, (5u << 20) + 512, 0, "dynamic");
}
END_TEST

START_TEST(vhd_dynamic_small_blocks)
{
	roundtrip("vhd", "dynamic", 5u << 20, 65536, "dynamic");
}
END_TEST

START_TEST(vhd_fixed_roundtrip)
{
	uint8_t *data = pattern(4u << 20);
	uint8_t *back = malloc(4u << 20);

	write_image(path, "vhd", "fixed", data, 4u << 20, 0);
	ck_assert_uint_eq(file_size(path), (4u << 20) + 512);
	/* A fixed VHD starts with guest data: found only when named. */
	imgfmt_image *img = open_fmt(path, "vhd");
	ck_assert_int_eq(imgfmt__pread(img, back, 4u << 20, 0), 0);
	ck_assert(memcmp(data, back, 4u << 20) == 0);
	imgfmt__close(img);
	free(data);
	free(back);
}
END_TEST

START_TEST(writer_refuses_bad_options)
{
	struct imgfmt_writer_opts o = { .format = "vmdk", .size = 1000 };
	imgfmt_writer *w;

	ck_assert_int_eq(imgfmt__writer_open(path, &o, &w), -EINVAL);
	ck_assert_ptr_nonnull(strstr(imgfmt__error(), "multiple of 512"));
	ck_assert_msg(access(path, F_OK) != 0, "a refused image was left");
	o.size = 1 << 20;
	o.subformat = "twoGbMaxExtentSparse";
	ck_assert_int_eq(imgfmt__writer_open(path, &o, &w), -EINVAL);
	ck_assert_msg(access(path, F_OK) != 0, "a refused image was left");
	o.subformat = NULL;
	o.backing_file = "base.vmdk";
	ck_assert_int_eq(imgfmt__writer_open(path, &o, &w), -ENOTSUP);
	ck_assert_msg(access(path, F_OK) != 0, "a refused image was left");
	o.backing_file = NULL;
	o.format = "vhd";
	o.subformat = "differencing";
	ck_assert_int_eq(imgfmt__writer_open(path, &o, &w), -EINVAL);
	ck_assert_msg(access(path, F_OK) != 0, "a refused image was left");
	o.subformat = NULL;
	o.size = 3ull << 40;
	ck_assert_int_eq(imgfmt__writer_open(path, &o, &w), -EFBIG);
	ck_assert_msg(access(path, F_OK) != 0, "a refused image was left");
	/* Nor does a refused create; and an existing file stays as it was. */
	struct imgfmt_create_opts c = { .format = "vhd", .size = 1000 };
	ck_assert_int_eq(imgfmt__create(path, &c), -EINVAL);
	ck_assert_int_ne(access(path, F_OK), 0);
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs("keep", f);
	fclose(f);
	ck_assert_int_eq(imgfmt__create(path, &c), -EEXIST);
	struct stat st;
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_size, 4);
	unlink(path);
}
END_TEST

START_TEST(create_gives_empty_images)
{
	struct imgfmt_create_opts c = { .format = "vmdk", .size = 8u << 20 };
	uint8_t buf[4096];

	ck_assert_int_eq(imgfmt__create(path, &c), 0);
	imgfmt_image *img = open_fmt(path, NULL);
	ck_assert_int_eq(imgfmt__pread(img, buf, sizeof(buf), 5u << 20), 0);
	ck_assert(buf[0] == 0 && buf[4095] == 0);
	imgfmt__close(img);
	unlink(path);
	c.format = "vhd";
	ck_assert_int_eq(imgfmt__create(path, &c), 0);
	img = open_fmt(path, NULL);
	ck_assert_int_eq(imgfmt__pread(img, buf, sizeof(buf), 5u << 20), 0);
	imgfmt__close(img);
}
END_TEST

START_TEST(large_empty_disks_map_in_one_extent)
{
	static const char *const fmts[] = { "vmdk", "vhd" };
	struct imgfmt_extent e;

	for (int i = 0; i < 2; i++) {
		struct imgfmt_create_opts c = { .format = fmts[i],
						.size = 1ull << 40 };
		unlink(path);
		ck_assert_msg(imgfmt__create(path, &c) == 0, "%s",
			      imgfmt__error());
		/* Metadata only: the file stays small on disk. */
		struct stat st;
		ck_assert_int_eq(stat(path, &st), 0);
		ck_assert_int_lt(st.st_blocks * 512, 16 << 20);
		imgfmt_image *img = open_fmt(path, NULL);
		ck_assert_int_eq(imgfmt__map(img, 0, 1ull << 40, &e), 0);
		ck_assert_int_eq(e.kind, IMGFMT_EXTENT_ZERO);
		ck_assert_uint_eq(e.length, 1ull << 40);
		imgfmt__close(img);
	}
}
END_TEST

/* A grain-table cache of one table, shared by threads reading at random:
 * every lookup evicts, and the data must still come back right. */
struct reader_arg {
	imgfmt_image *img;
	const uint8_t *data;
	uint64_t size;
	unsigned seed;
	int bad;
};

static void *reader(void *p)
{
	struct reader_arg *a = p;
	uint8_t buf[20000];

	for (int i = 0; i < 300; i++) {
		a->seed = a->seed * 1103515245 + 12345;
		uint64_t off = (a->seed >> 4) % (a->size - sizeof(buf));
		if (imgfmt__pread(a->img, buf, sizeof(buf), off) < 0 ||
		    memcmp(buf, a->data + off, sizeof(buf)) != 0)
			a->bad++;
	}
	return NULL;
}

/* Four threads running fn over img at once (seeds seed_step * i + 1);
 * every read they make must come back right. */
static void run_readers(imgfmt_image *img, const uint8_t *data,
			uint64_t size, void *(*fn)(void *), unsigned seed_step)
{
	pthread_t t[4];
	struct reader_arg a[4];

	for (int i = 0; i < 4; i++) {
		a[i] = (struct reader_arg){ img, data, size,
					    seed_step * i + 1, 0 };
		ck_assert_int_eq(pthread_create(&t[i], NULL, fn, &a[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		ck_assert_int_eq(a[i].bad, 0);
	}
}

START_TEST(tiny_cache_concurrent_reads)
{
	uint64_t size = 5u << 20;
	uint8_t *data = pattern(size);
	struct imgfmt_open_opts o = { .cache_bytes = 2048 };
	imgfmt_image *img;

	/* 4 KiB grains: a 512-entry table covers 2 MiB, so 3 tables. */
	write_image(path, "vmdk", NULL, data, size, 4096);
	ck_assert_int_eq(imgfmt__open(path, &o, &img), 0);
	run_readers(img, data, size, reader, 17u);
	imgfmt__close(img);
	free(data);
}
END_TEST

/* Random writes (some all-zero, some crossing blocks) against a model,
 * then a reopen: what was written is what reads back. */
static void rw_model(const char *fmt, const char *sub)
{
	uint64_t size = (9u << 20) + 512;
	uint8_t *model = calloc(1, size), *back = malloc(size);
	uint8_t *buf = malloc(300000);
	struct imgfmt_open_opts o = { .flags = IMGFMT_OPEN_RDWR,
				      .format = fmt };
	struct imgfmt_check_result res;
	imgfmt_image *img;
	uint32_t x = 99;

	write_image(path, fmt, sub, model, size, 0);
	ck_assert_msg(imgfmt__open(path, &o, &img) == 0, "%s",
		      imgfmt__error());
	for (int i = 0; i < 200; i++) {
		x = x * 1103515245 + 12345;
		uint64_t off = (x >> 3) % size;
		x = x * 1103515245 + 12345;
		size_t len = 1 + (x >> 8) % 300000;
		if (len > size - off)
			len = size - off;
		int zero = (x & 7) == 0;
		for (size_t j = 0; j < len; j++)
			buf[j] = zero ? 0 : (uint8_t)(x + j * 7 + i);
		ck_assert_msg(imgfmt__pwrite(img, buf, len, off) == 0, "%s",
			      imgfmt__error());
		memcpy(model + off, buf, len);
		if (i % 50 == 0) {
			ck_assert_int_eq(imgfmt__pread(img, back, size, 0), 0);
			ck_assert(memcmp(back, model, size) == 0);
		}
	}
	ck_assert_int_eq(imgfmt__close(img), 0);
	o.flags = 0;
	ck_assert_int_eq(imgfmt__open(path, &o, &img), 0);
	ck_assert_int_eq(imgfmt__pread(img, back, size, 0), 0);
	ck_assert(memcmp(back, model, size) == 0);
	ck_assert_int_eq(imgfmt__check(img, 0, &res), 0);
	ck_assert_msg(res.corruptions == 0, "%s", res.first_problem);
	imgfmt__close(img);
	free(model);
	free(back);
	free(buf);
}

START_TEST(vhd_dynamic_read_write)
{
	rw_model("vhd", "dynamic");
}
END_TEST

START_TEST(vhd_fixed_read_write)
{
	rw_model("vhd", "fixed");
}
END_TEST

START_TEST(vmdk_sparse_read_write)
{
	rw_model("vmdk", NULL);
}
END_TEST

START_TEST(vmdk_rw_refused_for_other_layouts)
{
	struct imgfmt_open_opts o = { .flags = IMGFMT_OPEN_RDWR };
	imgfmt_image *img;
	uint8_t *data = pattern(1u << 20);

	write_image(path, "vmdk", "streamOptimized", data, 1u << 20, 0);
	free(data);
	ck_assert_int_eq(imgfmt__open(path, &o, &img), -EROFS);
	ck_assert_ptr_nonnull(strstr(imgfmt__error(), "streamOptimized"));
}
END_TEST

/* A write into an unallocated grain of a child keeps the parent's bytes
 * around it (copy-on-write at grain granularity). */
START_TEST(vmdk_rw_child_copies_parent_grain)
{
	char base[160], child[200];
	uint8_t *data = pattern(1u << 20), back[65536];
	struct imgfmt_open_opts o = { .flags = IMGFMT_OPEN_RDWR };
	imgfmt_image *img;

	snprintf(base, sizeof(base), "%s/base.vmdk", dir);
	write_image(base, "vmdk", NULL, data, 1u << 20, 0);
	/* A child: our empty monolithicSparse with a parent link in its
	 * embedded descriptor (parentCID and parentFileNameHint). */
	struct imgfmt_create_opts c = { .format = "vmdk", .size = 1u << 20 };
	snprintf(child, sizeof(child), "%s/child.vmdk", dir);
	ck_assert_int_eq(imgfmt__create(child, &c), 0);
	static const char link[] = "parentCID=12345678\n"
				   "parentFileNameHint=\"base.vmdk\"\n";
	uint8_t desc[10240];
	peek(child, 512, desc, sizeof(desc));
	char *at = strstr((char *)desc, "parentCID=ffffffff\n");
	ck_assert_ptr_nonnull(at);
	size_t tail = strlen(at + 19);
	memmove(at + strlen(link), at + 19, tail + 1);
	memcpy(at, link, strlen(link));
	patch(child, 512, desc, strlen((char *)desc));
	ck_assert_int_eq(imgfmt__open(child, &o, &img), 0);
	ck_assert_int_eq(imgfmt__pwrite(img, "XYZ", 3, 200000), 0);
	ck_assert_int_eq(imgfmt__close(img), 0);
	ck_assert_int_eq(imgfmt__open(child, NULL, &img), 0);
	/* Grain 3 (196608..262143) now lives in the child. */
	ck_assert_int_eq(imgfmt__pread(img, back, 65536, 196608), 0);
	ck_assert(memcmp(back, data + 196608, 200000 - 196608) == 0);
	ck_assert(memcmp(back + 200000 - 196608, "XYZ", 3) == 0);
	ck_assert(memcmp(back + 200003 - 196608, data + 200003,
			 262144 - 200003) == 0);
	struct imgfmt_extent e;
	ck_assert_int_eq(imgfmt__map(img, 196608, 65536, &e), 0);
	ck_assert_int_eq(e.kind, IMGFMT_EXTENT_DATA);
	ck_assert_int_eq(imgfmt__map(img, 0, 65536, &e), 0);
	ck_assert_int_eq(e.kind, IMGFMT_EXTENT_BACKING);
	imgfmt__close(img);
	free(data);
}
END_TEST

struct writer_arg {
	imgfmt_image *img;
	int id;
	int bad;
};

/* Each thread fills its own interleaved 1 MiB stripes, so threads race
 * to allocate neighbouring blocks. */
static const char *conc_fmt;

static void *vhd_writer_thread(void *p)
{
	struct writer_arg *a = p;
	uint8_t *buf = malloc(1u << 20);

	for (int s = a->id; s < 16; s += 4) {
		memset(buf, 0x10 + s, 1u << 20);
		if (imgfmt__pwrite(a->img, buf, 1u << 20,
				   (uint64_t)s << 20) < 0)
			a->bad++;
	}
	free(buf);
	return NULL;
}

START_TEST(concurrent_allocation)
{
	static const char *const fmts[] = { "vhd", "vmdk" };
	conc_fmt = fmts[_i];
	struct imgfmt_create_opts c = { .format = conc_fmt,
					.size = 16u << 20 };
	struct imgfmt_open_opts o = { .flags = IMGFMT_OPEN_RDWR };
	imgfmt_image *img;
	pthread_t t[4];
	struct writer_arg a[4];
	uint8_t *back = malloc(16u << 20);

	ck_assert_int_eq(imgfmt__create(path, &c), 0);
	ck_assert_int_eq(imgfmt__open(path, &o, &img), 0);
	for (int i = 0; i < 4; i++) {
		a[i] = (struct writer_arg){ img, i, 0 };
		ck_assert_int_eq(pthread_create(&t[i], NULL, vhd_writer_thread,
						&a[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		ck_assert_int_eq(a[i].bad, 0);
	}
	ck_assert_int_eq(imgfmt__close(img), 0);
	ck_assert_int_eq(imgfmt__open(path, NULL, &img), 0);
	ck_assert_int_eq(imgfmt__pread(img, back, 16u << 20, 0), 0);
	for (int s = 0; s < 16; s++)
		ck_assert_int_eq(back[((size_t)s << 20) + 12345], 0x10 + s);
	imgfmt__close(img);
	free(back);
}
END_TEST

START_TEST(vhd_rw_refuses_untrusted_end)
{
	struct imgfmt_open_opts o = { .flags = IMGFMT_OPEN_RDWR };
	imgfmt_image *img;
	uint8_t b = 0x55;

	small_dynamic_for_rw(path);
	patch(path, file_size(path) - 512 + 100, &b, 1);
	ck_assert_int_eq(imgfmt__open(path, &o, &img), -EINVAL);
	ck_assert_ptr_nonnull(strstr(imgfmt__error(), "checksum"));
}
END_TEST

/* ---- hostile VMDK ---------------------------------------------------- */

/* Our monolithicSparse of 1 MiB: GD at sector 26 (one entry), its GT at
 * sector 27, grains from 64 KiB. */
static void small_sparse(void)
{
	uint8_t *data = pattern(1u << 20);
	write_image(path, "vmdk", NULL, data, 1u << 20, 0);
	free(data);
}

/* Our streamOptimized of 1 MiB: the first grain's marker at 64 KiB. */
static void small_stream(void)
{
	uint8_t *data = pattern(1u << 20);
	write_image(path, "vmdk", "streamOptimized", data, 1u << 20, 0);
	free(data);
}

/* streamOptimized read a little at a time, as an NBD client or a guest
 * does: every grain inflates once into the cache, the bytes are the
 * same in any order and from several threads, a partial last grain
 * reads right. */
static void *stream_reader_main(void *arg)
{
	struct reader_arg *sr = arg;
	uint8_t buf[4096];

	for (int i = 0; i < 600; i++) {
		uint64_t off = (uint64_t)rand_r(&sr->seed) % sr->size;
		size_t n = rand_r(&sr->seed) % 2 ? 4096 : 512 + i % 3000;
		if (n > sr->size - off)
			n = (size_t)(sr->size - off);
		if (imgfmt__pread(sr->img, buf, n, off) < 0 ||
		    memcmp(buf, sr->data + off, n) != 0)
			sr->bad++;
	}
	return NULL;
}

START_TEST(vmdk_stream_small_reads)
{
	uint64_t size = (5u << 20) + 512 * 3;
	uint8_t *data = pattern(size);

	write_image(path, "vmdk", "streamOptimized", data, size, 0);
	imgfmt_image *img = open_fmt(path, NULL);
	/* Front to back in 4 KiB steps, then backwards. */
	for (int pass = 0; pass < 2; pass++)
		for (uint64_t k = 0; k < (size + 4095) / 4096; k++) {
			uint64_t off = (pass ? (size + 4095) / 4096 - 1 - k
					     : k) * 4096;
			uint8_t buf[4096];
			size_t n = size - off < 4096 ? (size_t)(size - off)
						     : 4096;
			ck_assert_int_eq(imgfmt__pread(img, buf, n, off), 0);
			ck_assert(memcmp(buf, data + off, n) == 0);
		}
	run_readers(img, data, size, stream_reader_main, 7u);
	imgfmt__close(img);
	free(data);
}
END_TEST

/* A grain that does not inflate fails every read of it (a failure is
 * never cached), and the grains around it still read. */
START_TEST(vmdk_stream_bad_grain_fails_every_time)
{
	static const uint8_t junk[64] = { 0x78, 0x9c, 0xff, 0xff, 0x13, 0x37 };
	uint8_t *data = pattern(1u << 20);
	uint8_t buf[4096];

	small_stream();
	patch(path, 65536 + 12, junk, sizeof(junk));
	imgfmt_image *img = open_fmt(path, NULL);
	int failed = 0;
	for (uint64_t off = 0; off < (1u << 20); off += 4096)
		if (imgfmt__pread(img, buf, sizeof(buf), off) < 0)
			failed++;
		else
			ck_assert(memcmp(buf, data + off, sizeof(buf)) == 0);
	/* Exactly one grain (16 reads of 4 KiB at the default 64 KiB) is
	 * the damaged one, and each of its reads failed. */
	ck_assert_int_eq(failed, 16);
	imgfmt__close(img);
	free(data);
}
END_TEST

START_TEST(vmdk_gd_past_eof)
{
	small_sparse();
	patch_le64(path, 56, 1u << 30);
	open_fails(path, NULL, EINVAL, "grain directory");
}
END_TEST

START_TEST(vmdk_gd_entry_past_eof)
{
	small_sparse();
	patch_le32(path, 26 * 512, 0x7fffffff);
	open_fails(path, NULL, EINVAL, "grain directory entry 0");
}
END_TEST

START_TEST(vmdk_gt_entry_past_eof)
{
	small_sparse();
	patch_le32(path, 27 * 512, 0x7fffff00);
	read_fails(path, NULL, "grain table entry for grain 0");
}
END_TEST

START_TEST(vmdk_absurd_capacity)
{
	small_sparse();
	patch_le64(path, 12, 1ull << 60);
	open_fails(path, NULL, EFBIG, "capacity");
}
END_TEST

START_TEST(vmdk_huge_gd_from_tiny_grains)
{
	/* 64 TiB of 1-sector grains, one entry per table: 2^37 GD entries. */
	small_sparse();
	patch_le64(path, 12, (64ull << 40) / 512);
	patch_le64(path, 20, 1);
	patch_le32(path, 44, 1);
	open_fails(path, NULL, EFBIG, "grain directory");
}
END_TEST

START_TEST(vmdk_bad_grain_size)
{
	small_sparse();
	patch_le64(path, 20, 100);
	open_fails(path, NULL, EINVAL, "grainSize");
	patch_le64(path, 20, 0);
	open_fails(path, NULL, EINVAL, "grainSize");
	patch_le64(path, 20, 1ull << 40);
	open_fails(path, NULL, EINVAL, "grainSize");
	patch_le64(path, 20, 128);
	patch_le32(path, 44, 0);
	open_fails(path, NULL, EINVAL, "numGTEsPerGT");
}
END_TEST

START_TEST(vmdk_embedded_descriptor_past_eof)
{
	small_sparse();
	patch_le64(path, 28, 1u << 20);
	open_fails(path, NULL, EINVAL, "descriptor");
	patch_le64(path, 28, 1);
	patch_le64(path, 36, 1u << 30);
	open_fails(path, NULL, EINVAL, "1 MiB");
}
END_TEST

START_TEST(vmdk_embedded_descriptor_injection)
{
	static const char bad[] = "createType=\"monolithicSparse\" \"x\"\n";
	small_sparse();
	patch(path, 512, bad, sizeof(bad));
	open_fails(path, NULL, EINVAL, "descriptor line 1");
}
END_TEST

START_TEST(vmdk_compressed_size_overrun)
{
	small_stream();
	patch_le32(path, 65536 + 8, 0x7ffffff0);
	read_fails(path, NULL, "overruns");
}
END_TEST

START_TEST(vmdk_compressed_garbage)
{
	static const uint8_t junk[64] = { 0x78, 0x9c, 0xff, 0xff, 0x13, 0x37 };
	small_stream();
	patch(path, 65536 + 12, junk, sizeof(junk));
	read_fails(path, NULL, "does not inflate");
}
END_TEST

START_TEST(vmdk_marker_lba_mismatch)
{
	small_stream();
	patch_le64(path, 65536, 999);
	read_fails(path, NULL, "grain marker");
}
END_TEST

START_TEST(vmdk_truncated_stream)
{
	small_stream();
	ck_assert_int_eq(truncate(path, (off_t)file_size(path) - 512), 0);
	open_fails(path, NULL, EINVAL, "footer");
}
END_TEST

START_TEST(vmdk_footer_gd_past_eof)
{
	uint64_t end;

	small_stream();
	end = file_size(path);
	patch_le64(path, end - 1024 + 56, 1ull << 40);
	open_fails(path, NULL, EINVAL, "grain directory");
	/* A footer that says "the GD is at the end" again must not loop. */
	patch_le64(path, end - 1024 + 56, ~0ull);
	open_fails(path, NULL, EINVAL, "GD_AT_END");
}
END_TEST

START_TEST(vmdk_check_finds_shared_and_metadata_grains)
{
	struct imgfmt_check_result res;

	small_sparse();
	/* Grain 2 points at grain 0's sector, grain 3 into the header. */
	uint8_t e0[4];
	peek(path, 27 * 512, e0, 4);
	patch(path, 27 * 512 + 8, e0, 4);
	patch_le32(path, 27 * 512 + 12, 2);
	imgfmt_image *img = open_fmt(path, NULL);
	ck_assert_int_eq(imgfmt__check(img, 0, &res), 0);
	/* ...and the primary table no longer matches the redundant one. */
	ck_assert_uint_eq(res.corruptions, 3);
	ck_assert_ptr_nonnull(strstr(res.first_problem, "metadata"));
	imgfmt__close(img);
}
END_TEST

START_TEST(vmdk_check_compares_redundant_tables)
{
	struct imgfmt_check_result res;

	small_sparse();
	/* Redundant GT (sector 22) entry 5 no longer matches the primary. */
	patch_le32(path, 22 * 512 + 20, 4242);
	imgfmt_image *img = open_fmt(path, NULL);
	ck_assert_int_eq(imgfmt__check(img, 0, &res), 0);
	ck_assert_uint_eq(res.corruptions, 1);
	ck_assert_ptr_nonnull(strstr(res.first_problem, "redundant copy"));
	imgfmt__close(img);
	/* A redundant GD that lost its table. */
	patch_le32(path, 21 * 512, 0);
	img = open_fmt(path, NULL);
	ck_assert_int_eq(imgfmt__check(img, 0, &res), 0);
	ck_assert_uint_eq(res.corruptions, 1);
	ck_assert_ptr_nonnull(strstr(res.first_problem, "only one"));
	imgfmt__close(img);
}
END_TEST

/* ---- descriptors ----------------------------------------------------- */

static void desc_with(const char *extent_line, const char *extra)
{
	char text[2048];

	snprintf(text, sizeof(text),
		 "# Disk DescriptorFile\nversion=1\nCID=fffffffe\n"
		 "parentCID=ffffffff\ncreateType=\"monolithicFlat\"\n%s\n"
		 "# Extent description\n%s\n\nddb.adapterType = \"ide\"\n",
		 extra, extent_line);
	write_file(path, text);
}

START_TEST(desc_flat_extent_reads)
{
	char flat[160];
	uint8_t *data = pattern(1u << 20), back[4096];

	snprintf(flat, sizeof(flat), "%s/disk-flat.vmdk", dir);
	FILE *f = fopen(flat, "w");
	fwrite(data, 1, 1u << 20, f);
	fclose(f);
	/* 1024 sectors from sector 8 of the flat file, then 8 ZERO ones. */
	desc_with("RW 1024 FLAT \"disk-flat.vmdk\" 8\r\nRW 8 ZERO", "");
	imgfmt_image *img = open_fmt(path, NULL);
	struct imgfmt_info info;
	ck_assert_int_eq(imgfmt__info(img, &info), 0);
	ck_assert_uint_eq(info.virtual_size, (1024 + 8) * 512);
	ck_assert_str_eq(info.subformat, "monolithicFlat");
	ck_assert_int_eq(imgfmt__pread(img, back, 4096, 4096), 0);
	ck_assert(memcmp(back, data + 4096 + 4096, 4096) == 0);
	imgfmt__close(img);
	free(data);
	/* Self-contained, a descriptor (all extents are other files) is
	 * refused, naming the extent. */
	struct imgfmt_open_opts o = { .flags = IMGFMT_OPEN_SELF_CONTAINED };
	img = NULL;
	ck_assert_int_eq(imgfmt__open(path, &o, &img), -EPERM);
	ck_assert_ptr_null(img);
	ck_assert_msg(strstr(imgfmt__error(), "extent file, disk-flat.vmdk"),
		      "%s", imgfmt__error());
}
END_TEST

START_TEST(desc_flat_extent_shorter_than_claimed)
{
	char flat[160];
	snprintf(flat, sizeof(flat), "%s/disk-flat.vmdk", dir);
	write_file(flat, "short");
	desc_with("RW 1024 FLAT \"disk-flat.vmdk\" 0", "");
	open_fails(path, NULL, EINVAL, "shorter");
}
END_TEST

START_TEST(desc_refuses_escaping_paths)
{
	desc_with("RW 8 FLAT \"../secret\" 0", "");
	open_fails(path, NULL, EPERM, "refused");
	desc_with("RW 8 FLAT \"/etc/passwd\" 0", "");
	open_fails(path, NULL, EPERM, "refused");
	desc_with("RW 8 FLAT \"a/../../secret\" 0", "");
	open_fails(path, NULL, EPERM, "refused");
	desc_with("RW 8 SPARSE \"sub/..\"", "");
	open_fails(path, NULL, EPERM, "refused");
}
END_TEST

START_TEST(desc_injection_is_refused)
{
	/* Text glued after a quoted value, an unclosed quote, a quote in
	 * the middle of a token, a stray line, control characters. */
	desc_with("RW 8 FLAT \"x.vmdk\"\"y\" 0", "");
	open_fails(path, NULL, EINVAL, "quote");
	desc_with("RW 8 FLAT \"x.vmdk 0", "");
	open_fails(path, NULL, EINVAL, "quote");
	desc_with("RW 8 FLAT x\".vmdk\" 0", "");
	open_fails(path, NULL, EINVAL, "quote");
	desc_with("RW 8 ZERO", "createType=\"a\" junk");
	open_fails(path, NULL, EINVAL, "closing quote");
	desc_with("RW 8 ZERO", "this is not a descriptor line");
	open_fails(path, NULL, EINVAL, "cannot parse");
	desc_with("RW 8 ZERO", "parentFileNameHint=\"a\tb\"");
	open_fails(path, NULL, EINVAL, "parentFileNameHint");
	desc_with("RW 8 FLAT \"x.vmdk\" 0 extra", "");
	open_fails(path, NULL, EINVAL, "junk");
	desc_with("RW 8 ZERO \"x.vmdk\"", "");
	open_fails(path, NULL, EINVAL, "ZERO");
}
END_TEST

START_TEST(desc_bad_sizes)
{
	desc_with("RW 99999999999999999999 ZERO", "");
	open_fails(path, NULL, EINVAL, "sector count");
	desc_with("RW 0 ZERO", "");
	open_fails(path, NULL, EINVAL, "sector count");
	desc_with("RW 9000000000000000000 ZERO\nRW 9000000000000000000 ZERO",
		  "");
	open_fails(path, NULL, EFBIG, "maximum");
	desc_with("RW 8 VMFSSPARSE \"x.vmdk\"", "");
	open_fails(path, NULL, ENOTSUP, "VMFSSPARSE");
	desc_with("", "");
	open_fails(path, NULL, EINVAL, "no extents");
}
END_TEST

START_TEST(desc_too_large)
{
	char *big = malloc((1u << 20) + 100);
	memset(big, '#', (1u << 20) + 99);
	memcpy(big, "# Disk DescriptorFile\n", 22);
	big[(1u << 20) + 99] = '\0';
	write_file(path, big);
	free(big);
	open_fails(path, NULL, EFBIG, "1 MiB");
}
END_TEST

START_TEST(desc_sparse_extent_checked)
{
	char sp[160];

	snprintf(sp, sizeof(sp), "%s/piece.vmdk", dir);
	uint8_t *data = pattern(1u << 20);
	write_image(sp, "vmdk", NULL, data, 1u << 20, 0);
	/* Claiming more sectors than the sparse file holds is an error. */
	desc_with("RW 4096 SPARSE \"piece.vmdk\"", "");
	open_fails(path, NULL, EINVAL, "less than");
	/* Two pieces of it end to end read back. */
	desc_with("RW 2048 SPARSE \"piece.vmdk\"\nRW 2048 SPARSE "
		  "\"piece.vmdk\"", "");
	imgfmt_image *img = open_fmt(path, NULL);
	uint8_t *back = malloc(2u << 20);
	ck_assert_int_eq(imgfmt__pread(img, back, 2u << 20, 0), 0);
	ck_assert(memcmp(back, data, 1u << 20) == 0);
	ck_assert(memcmp(back + (1u << 20), data, 1u << 20) == 0);
	imgfmt__close(img);
	free(back);
	free(data);
}
END_TEST

/* ---- OVA ------------------------------------------------------------ */

/* A ustar header (checksum not filled: we do not rely on it). */
static void tar_header(uint8_t *h, const char *name, uint64_t size,
		       char type)
{
	memset(h, 0, 512);
	snprintf((char *)h, 100, "%s", name);
	snprintf((char *)h + 124, 12, "%011llo", (unsigned long long)size);
	h[156] = (uint8_t)type;
	memcpy(h + 257, "ustar", 6);
	memcpy(h + 263, "00", 2);
}

/* vm.ovf (100 bytes), then an optional extra member, then the vmdk
 * member holding the file at `member`, then the end-of-archive blocks. */
static void make_ova(const char *ova, const char *member, uint64_t claim)
{
	uint8_t h[512], pad[512] = { 0 };
	FILE *out = fopen(ova, "w"), *in = fopen(member, "r");
	uint64_t n = file_size(member);
	char buf[65536];
	size_t got;

	ck_assert_ptr_nonnull(out);
	ck_assert_ptr_nonnull(in);
	tar_header(h, "vm.ovf", 100, '0');
	fwrite(h, 1, 512, out);
	memset(buf, 'o', 100);
	fwrite(buf, 1, 100, out);
	fwrite(pad, 1, 412, out);
	tar_header(h, "disk1.vmdk", claim ? claim : n, '0');
	fwrite(h, 1, 512, out);
	while ((got = fread(buf, 1, sizeof(buf), in)) > 0)
		fwrite(buf, 1, got, out);
	fwrite(pad, 1, (512 - n % 512) % 512, out);
	fwrite(pad, 1, 512, out);
	fwrite(pad, 1, 512, out);
	fclose(in);
	fclose(out);
}

START_TEST(ova_reads_first_vmdk)
{
	char ova[160];
	uint8_t *data = pattern(1u << 20), *back = malloc(1u << 20);
	struct imgfmt_info info;

	write_image(path, "vmdk", "streamOptimized", data, 1u << 20, 0);
	snprintf(ova, sizeof(ova), "%s/vm.ova", dir);
	make_ova(ova, path, 0);
	imgfmt_image *img = open_fmt(ova, NULL);
	ck_assert_int_eq(imgfmt__info(img, &info), 0);
	ck_assert_str_eq(info.format, "vmdk");
	ck_assert_str_eq(info.subformat, "ova/streamOptimized");
	ck_assert_int_eq(imgfmt__pread(img, back, 1u << 20, 0), 0);
	ck_assert(memcmp(back, data, 1u << 20) == 0);
	imgfmt__close(img);
	free(data);
	free(back);
}
END_TEST

START_TEST(ova_hostile_members)
{
	char ova[160];
	uint8_t h[512];
	uint8_t *data = pattern(1u << 20);

	write_image(path, "vmdk", "streamOptimized", data, 1u << 20, 0);
	free(data);
	snprintf(ova, sizeof(ova), "%s/vm.ova", dir);
	/* The member claims more bytes than the archive holds. */
	make_ova(ova, path, 1ull << 32);
	open_fails(ova, NULL, EINVAL, "past the end");
	/* A size field that is not octal. */
	make_ova(ova, path, 0);
	patch(ova, 1024 + 124, "12x4", 4);
	open_fails(ova, NULL, EINVAL, "ustar");
	/* The vmdk member is not a vmdk: refused, not misread. */
	make_ova(ova, path, 0);
	patch(ova, 1024 + 512, "JUNK", 4);
	open_fails(ova, NULL, ENOTSUP, "not a sparse extent");
	/* No .vmdk member at all. */
	make_ova(ova, path, 0);
	tar_header(h, "disk1.txt", file_size(path), '0');
	patch(ova, 1024, h, 512);
	open_fails(ova, NULL, ENOENT, "no .vmdk");
	/* A malformed pax header before the disk. */
	make_ova(ova, path, 0);
	tar_header(h, "PaxHeaders/vm.ovf", 100, 'x');
	patch(ova, 0, h, 512);
	patch(ova, 512, "99 size=1\n", 10);
	open_fails(ova, NULL, EINVAL, "pax");
}
END_TEST

/* ---- hostile VHD ----------------------------------------------------- */

/* Our dynamic VHD of 4 MiB with 2 MiB blocks: footer copy at 0, dynamic
 * header at 512, BAT at 1536. */
static void small_dynamic(void)
{
	uint8_t *data = pattern(4u << 20);
	write_image(path, "vhd", NULL, data, 4u << 20, 0);
	free(data);
}

START_TEST(vhd_bad_footer_checksum)
{
	uint64_t end;
	uint8_t b = 0x55;

	small_dynamic();
	end = file_size(path);
	patch(path, end - 512 + 100, &b, 1);
	/* The copy at byte 0 still serves a dynamic disk. */
	imgfmt_image *img = open_fmt(path, NULL);
	imgfmt__close(img);
	patch(path, 100, &b, 1);
	open_fails(path, NULL, EINVAL, "checksum");
}
END_TEST

START_TEST(vhd_bad_header_checksum)
{
	uint8_t b = 0x55;

	small_dynamic();
	patch(path, 512 + 200, &b, 1);
	open_fails(path, NULL, EINVAL, "dynamic header checksum");
}
END_TEST

START_TEST(vhd_bat_past_eof)
{
	small_dynamic();
	uint8_t off[8] = { 0, 0, 0, 0x10, 0, 0, 0, 0 };
	vhd_patch(path, 512, 1024, 36, 16, off, 8);
	open_fails(path, NULL, EINVAL, "BAT");
}
END_TEST

START_TEST(vhd_huge_bat)
{
	small_dynamic();
	vhd_patch32(path, 512, 1024, 36, 28, 0xfffffff0);
	open_fails(path, NULL, EINVAL, "BAT");
}
END_TEST

START_TEST(vhd_absurd_block_size)
{
	small_dynamic();
	vhd_patch32(path, 512, 1024, 36, 32, 3);
	open_fails(path, NULL, EINVAL, "block_size");
	vhd_patch32(path, 512, 1024, 36, 32, 1u << 31);
	open_fails(path, NULL, EINVAL, "block_size");
	vhd_patch32(path, 512, 1024, 36, 32, 512);
	open_fails(path, NULL, EINVAL, "max_table_entries");
}
END_TEST

START_TEST(vhd_bat_entry_past_eof)
{
	uint8_t e[4];

	small_dynamic();
	put_be32(e, 0x7fffff00);
	patch(path, 1536, e, 4);
	read_fails(path, NULL, "BAT entry 0");
}
END_TEST

START_TEST(vhd_absurd_size)
{
	uint8_t sz[8] = { 0x40, 0, 0, 0, 0, 0, 0, 0 };
	uint64_t end;

	small_dynamic();
	end = file_size(path);
	vhd_patch(path, end - 512, 512, 64, 48, sz, 8);
	open_fails(path, NULL, EFBIG, "current_size");
}
END_TEST

START_TEST(vhd_differencing_refused)
{
	uint64_t end;

	small_dynamic();
	end = file_size(path);
	vhd_patch32(path, end - 512, 512, 64, 60, 4);
	open_fails(path, NULL, ENOTSUP, "differencing");
}
END_TEST

START_TEST(vhd_fixed_size_past_file)
{
	uint8_t *data = pattern(1u << 20);
	uint8_t sz[8] = { 0, 0, 0, 0, 0, 0x20, 0, 0 };

	write_image(path, "vhd", "fixed", data, 1u << 20, 0);
	free(data);
	vhd_patch(path, 1u << 20, 512, 64, 48, sz, 8);
	open_fails(path, "vhd", EINVAL, "data area");
}
END_TEST

START_TEST(vhd_too_short)
{
	write_file(path, "conectix");
	open_fails(path, NULL, EINVAL, "too short");
}
END_TEST

START_TEST(vhd_check_finds_overlap)
{
	struct imgfmt_check_result res;
	uint8_t e[4];

	small_dynamic();
	peek(path, 1536, e, 4);
	patch(path, 1536 + 4, e, 4);
	imgfmt_image *img = open_fmt(path, NULL);
	ck_assert_int_eq(imgfmt__check(img, 0, &res), 0);
	ck_assert_uint_eq(res.corruptions, 1);
	ck_assert_ptr_nonnull(strstr(res.first_problem, "overlap"));
	imgfmt__close(img);
}
END_TEST

/* Random byte corruption of every header must never crash (ASan/UBSan
 * make "crash" visible); whatever opens must read without crashing. */
START_TEST(fuzz_headers_never_crash)
{
	uint32_t x = 777;

	for (int k = 0; k < 3; k++) {
		/* Write each kind once (the writer fsyncs), then restore the
		 * pristine bytes before every corruption round. */
		uint8_t *data = pattern(1u << 20);
		unlink(path);
		if (k == 0)
			write_image(path, "vmdk", NULL, data, 1u << 20, 0);
		else if (k == 1)
			write_image(path, "vmdk", "streamOptimized", data,
				    1u << 20, 0);
		else
			write_image(path, "vhd", NULL, data, 1u << 20, 0);
		free(data);
		uint64_t end = file_size(path);
		uint8_t *pristine = malloc(end);
		peek(path, 0, pristine, end);
		for (int round = 0; round < 150; round++) {
			patch(path, 0, pristine, end);
			for (int i = 0; i < 8; i++) {
				x = x * 1103515245 + 12345;
				uint64_t at;
				/* Headers, tables, and the tail. */
				switch ((x >> 8) % 3) {
				case 0: at = (x >> 12) % 2048; break;
				case 1: at = (k == 2 ? 1536 : 13312) +
					     (x >> 12) % 4096; break;
				default: at = end - 1 - (x >> 12) % 1536;
				}
				uint8_t b = (uint8_t)(x >> 24);
				if (at < end)
					patch(path, at, &b, 1);
			}
			struct imgfmt_open_opts o = { 0 };
			imgfmt_image *img;
			if (imgfmt__open(path, &o, &img) < 0)
				continue;
			struct imgfmt_info info;
			struct imgfmt_extent e;
			struct imgfmt_check_result res;
			imgfmt__info(img, &info);
			uint64_t n = info.virtual_size < (4u << 20)
				? info.virtual_size : (4u << 20);
			uint8_t *buf = malloc(n + 1);
			if (n)
				imgfmt__pread(img, buf, n, 0);
			if (n)
				imgfmt__map(img, 0, n, &e);
			imgfmt__check(img, 0, &res);
			free(buf);
			imgfmt__close(img);
		}
		free(pristine);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("vmdk_vhd");
	TCase *rt = tcase_create("roundtrip");
	TCase *hv = tcase_create("hostile_vmdk");
	TCase *ds = tcase_create("descriptor");
	TCase *hh = tcase_create("hostile_vhd");

	tcase_add_checked_fixture(rt, setup, teardown);
	tcase_add_checked_fixture(hv, setup, teardown);
	tcase_add_checked_fixture(ds, setup, teardown);
	tcase_add_checked_fixture(hh, setup, teardown);
	tcase_set_timeout(hh, 120);
	tcase_add_test(rt, vmdk_sparse_roundtrip);
	tcase_add_test(rt, vmdk_stream_roundtrip);
	tcase_add_test(rt, vmdk_stream_many_grain_tables);
	tcase_add_test(rt, vmdk_stream_small_reads);
	tcase_add_test(rt, vmdk_stream_bad_grain_fails_every_time);
	tcase_add_test(rt, vhd_dynamic_roundtrip);
	tcase_add_test(rt, vhd_dynamic_small_blocks);
	tcase_add_test(rt, vhd_fixed_roundtrip);
	tcase_add_test(rt, writer_refuses_bad_options);
	tcase_add_test(rt, create_gives_empty_images);
	tcase_add_test(rt, large_empty_disks_map_in_one_extent);
	tcase_add_test(rt, tiny_cache_concurrent_reads);
	tcase_add_test(rt, vhd_dynamic_read_write);
	tcase_add_test(rt, vhd_fixed_read_write);
	tcase_add_loop_test(rt, concurrent_allocation, 0, 2);
	tcase_add_test(rt, vmdk_sparse_read_write);
	tcase_add_test(rt, vmdk_rw_refused_for_other_layouts);
	tcase_add_test(rt, vmdk_rw_child_copies_parent_grain);
	tcase_add_test(rt, vhd_rw_refuses_untrusted_end);
	tcase_set_timeout(rt, 60);
	tcase_add_test(hv, vmdk_gd_past_eof);
	tcase_add_test(hv, vmdk_gd_entry_past_eof);
	tcase_add_test(hv, vmdk_gt_entry_past_eof);
	tcase_add_test(hv, vmdk_absurd_capacity);
	tcase_add_test(hv, vmdk_huge_gd_from_tiny_grains);
	tcase_add_test(hv, vmdk_bad_grain_size);
	tcase_add_test(hv, vmdk_embedded_descriptor_past_eof);
	tcase_add_test(hv, vmdk_embedded_descriptor_injection);
	tcase_add_test(hv, vmdk_compressed_size_overrun);
	tcase_add_test(hv, vmdk_compressed_garbage);
	tcase_add_test(hv, vmdk_marker_lba_mismatch);
	tcase_add_test(hv, vmdk_truncated_stream);
	tcase_add_test(hv, vmdk_footer_gd_past_eof);
	tcase_add_test(hv, vmdk_check_finds_shared_and_metadata_grains);
	tcase_add_test(hv, vmdk_check_compares_redundant_tables);
	tcase_add_test(ds, desc_flat_extent_reads);
	tcase_add_test(ds, desc_flat_extent_shorter_than_claimed);
	tcase_add_test(ds, desc_refuses_escaping_paths);
	tcase_add_test(ds, desc_injection_is_refused);
	tcase_add_test(ds, desc_bad_sizes);
	tcase_add_test(ds, desc_too_large);
	tcase_add_test(ds, desc_sparse_extent_checked);
	tcase_add_test(ds, ova_reads_first_vmdk);
	tcase_add_test(ds, ova_hostile_members);
	tcase_add_test(hh, vhd_bad_footer_checksum);
	tcase_add_test(hh, vhd_bad_header_checksum);
	tcase_add_test(hh, vhd_bat_past_eof);
	tcase_add_test(hh, vhd_huge_bat);
	tcase_add_test(hh, vhd_absurd_block_size);
	tcase_add_test(hh, vhd_bat_entry_past_eof);
	tcase_add_test(hh, vhd_absurd_size);
	tcase_add_test(hh, vhd_differencing_refused);
	tcase_add_test(hh, vhd_fixed_size_past_file);
	tcase_add_test(hh, vhd_too_short);
	tcase_add_test(hh, vhd_check_finds_overlap);
	tcase_add_test(hh, fuzz_headers_never_crash);
	suite_add_tcase(s, rt);
	suite_add_tcase(s, hv);
	suite_add_tcase(s, ds);
	suite_add_tcase(s, hh);
	return fx_run_suite(s);
}
