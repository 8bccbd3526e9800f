/*
 * test_avd.c - the AVD driver through the public API: every descriptor
 * kind, partial-cluster I/O, backing files and copy-on-write, compression,
 * discard / write-zeroes, resize with L1 growth, a tiny metadata cache,
 * concurrent readers, commit / rebase / compact, and reopening.
 */
#include <check.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "avd.h"
#include "crc32c.h"
#include "fixture-dir.h"
#include "imgfmt.h"
#include "writer.h"
#include "fixture-run.h"

static void setup(void)
{
	fx_dir_new("test_avd");
}

static void teardown(void)
{
	fx_dir_remove();
}

static void fill(uint8_t *b, size_t n, uint64_t seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		b[i] = (uint8_t)(seed >> 56);
	}
}

#define OK(x) ck_assert_msg((x) == 0, "%s: %s", #x, imgfmt__error())

static imgfmt_image *mk(const char *name, uint64_t size, uint32_t cluster,
			const char *backing, const char *bfmt)
{
	struct imgfmt_create_opts c = {
		.size = size, .cluster_size = cluster,
		.backing_file = backing, .backing_format = bfmt,
	};
	struct imgfmt_open_opts o = { .flags = IMGFMT_OPEN_RDWR };
	imgfmt_image *img;

	OK(imgfmt__create(fx_path(name), &c));
	OK(imgfmt__open(fx_path(name), &o, &img));
	return img;
}

static imgfmt_image *op(const char *name, unsigned flags, size_t cache)
{
	struct imgfmt_open_opts o = { .flags = flags, .cache_bytes = cache };
	imgfmt_image *img;

	OK(imgfmt__open(fx_path(name), &o, &img));
	return img;
}

static void expect_clean(imgfmt_image *img)
{
	struct imgfmt_check_result r;

	OK(imgfmt__check(img, 0, &r));
	ck_assert_msg(r.corruptions + r.leaks + r.checksum_errors == 0,
		      "check: %llu corruptions %llu leaks %llu checksum: %s",
		      (unsigned long long)r.corruptions,
		      (unsigned long long)r.leaks,
		      (unsigned long long)r.checksum_errors, r.first_problem);
}

static void expect_content(imgfmt_image *img, const uint8_t *want,
			   uint64_t size)
{
	uint8_t *got = malloc(size);

	OK(imgfmt__pread(img, got, size, 0));
	for (uint64_t i = 0; i < size; i++)
		if (got[i] != want[i])
			ck_abort_msg("byte %llu is %02x, want %02x",
				     (unsigned long long)i, got[i], want[i]);
	free(got);
}

START_TEST(crc32c_vectors)
{
	uint8_t b[9000];

	ck_assert_uint_eq(crc32c(0, "123456789", 9), 0xe3069283u);
	ck_assert_uint_eq(crc32c(0, "", 0), 0);
	fill(b, sizeof(b), 7);
	for (size_t off = 0; off < 8; off++)
		for (size_t n = 0; n < 8000; n += n < 300 ? 1 : 97)
			ck_assert_uint_eq(crc32c(n, b + off, n),
					  crc32c__sw(n, b + off, n));
	/* Running checksums compose. */
	ck_assert_uint_eq(crc32c(crc32c(0, b, 1000), b + 1000, 3000),
			  crc32c(0, b, 4000));
}
END_TEST

START_TEST(create_info_probe)
{
	uint8_t uuid[16];
	struct imgfmt_create_opts c = { .size = 5 << 20, .uuid = uuid };
	struct imgfmt_info info;
	imgfmt_image *img;
	char name[16];

	memset(uuid, 0xab, 16);
	OK(imgfmt__create(fx_path("a.avd"), &c));
	ck_assert_int_eq(imgfmt__create(fx_path("a.avd"), &c), -EEXIST);
	OK(imgfmt__probe(fx_path("a.avd"), name, sizeof(name)));
	ck_assert_str_eq(name, "avd");
	img = op("a.avd", 0, 0);
	OK(imgfmt__info(img, &info));
	ck_assert_str_eq(info.format, "avd");
	ck_assert_uint_eq(info.virtual_size, 5 << 20);
	ck_assert_uint_eq(info.cluster_size, IMGFMT_DEFAULT_CLUSTER);
	ck_assert_int_eq(info.has_uuid, 1);
	ck_assert_mem_eq(info.uuid, uuid, 16);
	ck_assert_int_eq(info.dirty, 0);
	ck_assert_int_eq(info.chain_depth, 1);
	expect_clean(img);
	OK(imgfmt__close(img));

	struct imgfmt_create_opts bad = { .size = 1 << 20,
					  .cluster_size = 3000 };
	ck_assert_int_eq(imgfmt__create(fx_path("b.avd"), &bad), -EINVAL);
	bad.cluster_size = 4u << 20;
	ck_assert_int_eq(imgfmt__create(fx_path("b.avd"), &bad), -EINVAL);
	ck_assert_int_ne(access(fx_path("b.avd"), F_OK), 0);
}
END_TEST

/* Partial writes at cluster edges against a byte model, then reopen. */
START_TEST(partial_cluster_io)
{
	const uint32_t C = 4096 * 4; /* 16 KiB: 4 checksum blocks */
	const uint64_t size = 40 * C + 123;
	uint8_t *model = calloc(1, size), *buf = malloc(4 * C);
	imgfmt_image *img = mk("p.avd", size, C, NULL, NULL);
	struct { uint64_t off, len; } cases[] = {
		{ 0, 1 }, { C - 1, 2 }, { C - 1, 1 }, { 2 * C, C },
		{ 3 * C + 5, 3 * C - 7 }, { 7 * C - 4096, 4096 * 2 },
		{ 9 * C + 100, 3 * C }, { size - 10, 10 }, { 4095, 4098 },
		{ 12 * C + 4096, 1 }, { 12 * C + 4096, 4096 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		fill(buf, cases[i].len, i + 1);
		OK(imgfmt__pwrite(img, buf, cases[i].len, cases[i].off));
		memcpy(model + cases[i].off, buf, cases[i].len);
		expect_content(img, model, size);
		if (i == 4)
			OK(imgfmt__flush(img)); /* later writes are COW */
	}
	/* Random small I/O, flushing now and then. */
	for (int i = 0; i < 300; i++) {
		uint64_t off = ((uint64_t)i * 2654435761u) % size;
		uint64_t len = 1 + ((uint64_t)i * 40503u) % (3 * C);
		if (len > size - off)
			len = size - off;
		fill(buf, len, 1000 + i);
		OK(imgfmt__pwrite(img, buf, len, off));
		memcpy(model + off, buf, len);
		if (i % 37 == 0)
			OK(imgfmt__flush(img));
		uint64_t roff = ((uint64_t)i * 7919u) % size;
		uint64_t rlen = len < size - roff ? len : size - roff;
		OK(imgfmt__pread(img, buf, rlen, roff));
		ck_assert_mem_eq(buf, model + roff, rlen);
	}
	expect_content(img, model, size);
	expect_clean(img);
	OK(imgfmt__close(img));
	img = op("p.avd", 0, 0);
	expect_content(img, model, size);
	expect_clean(img);
	OK(imgfmt__close(img));
	free(model);
	free(buf);
}
END_TEST

static void expect_kind(imgfmt_image *img, uint64_t off, uint64_t len,
			enum imgfmt_extent_kind kind, unsigned flags)
{
	struct imgfmt_extent e;

	OK(imgfmt__map(img, off, len, &e));
	ck_assert_msg(e.kind == kind && e.flags == flags,
		      "map at %llu: kind %d flags %u, want %d %u",
		      (unsigned long long)off, e.kind, e.flags, kind, flags);
	ck_assert_uint_eq(e.length, len);
	if (kind == IMGFMT_EXTENT_DATA && !flags)
		ck_assert_int_ge(e.file_offset, 0);
	else
		ck_assert_int_eq(e.file_offset, -1);
}

/* A raw base with a pattern, an AVD overlay on top. */
static uint8_t *make_base(uint64_t size)
{
	struct imgfmt_create_opts c = { .format = "raw", .size = size };
	struct imgfmt_open_opts o = { .flags = IMGFMT_OPEN_RDWR };
	uint8_t *pat = malloc(size);
	imgfmt_image *b;

	fill(pat, size, 99);
	OK(imgfmt__create(fx_path("base.raw"), &c));
	OK(imgfmt__open(fx_path("base.raw"), &o, &b));
	OK(imgfmt__pwrite(b, pat, size, 0));
	OK(imgfmt__close(b));
	return pat;
}

START_TEST(descriptors_backing_cow)
{
	const uint32_t C = 65536;
	const uint64_t size = 16 * C;
	uint8_t *model = make_base(size), buf[300];
	uint8_t *base = malloc(size);
	imgfmt_image *img = mk("o.avd", size, C, "base.raw", "raw");

	memcpy(base, model, size);
	struct imgfmt_info info;

	OK(imgfmt__info(img, &info));
	ck_assert_int_eq(info.chain_depth, 2);
	ck_assert_str_eq(info.backing_file, "base.raw");
	expect_content(img, model, size);
	expect_kind(img, 0, size, IMGFMT_EXTENT_BACKING, 0);

	/* COW of a partial cluster keeps the backing bytes around it. */
	fill(buf, sizeof(buf), 5);
	OK(imgfmt__pwrite(img, buf, sizeof(buf), 3 * C + 1000));
	memcpy(model + 3 * C + 1000, buf, sizeof(buf));
	expect_kind(img, 3 * C, C, IMGFMT_EXTENT_DATA, 0);
	expect_kind(img, 4 * C, C, IMGFMT_EXTENT_BACKING, 0);

	/* Explicit zeros hide the backing file; discard shows it again. */
	OK(imgfmt__write_zeroes(img, 5 * C, 2 * C, 0));
	memset(model + 5 * C, 0, 2 * C);
	expect_kind(img, 5 * C, 2 * C, IMGFMT_EXTENT_ZERO, 0);
	OK(imgfmt__discard(img, 6 * C, C));
	memcpy(model + 6 * C, base + 6 * C, C);
	expect_kind(img, 6 * C, C, IMGFMT_EXTENT_BACKING, 0);
	/* A partial discard is zeroed in place. */
	OK(imgfmt__discard(img, 3 * C + 1100, 50));
	memset(model + 3 * C + 1100, 0, 50);
	/* A partial write-zeroes over a backing cluster. */
	OK(imgfmt__write_zeroes(img, 8 * C + 10, 20, 0));
	memset(model + 8 * C + 10, 0, 20);
	expect_kind(img, 8 * C, C, IMGFMT_EXTENT_DATA, 0);
	OK(imgfmt__flush(img));
	/* A whole-cluster write of zeros is stored as a zero descriptor. */
	uint8_t *z = calloc(1, C);
	OK(imgfmt__pwrite(img, z, C, 9 * C));
	memset(model + 9 * C, 0, C);
	expect_kind(img, 9 * C, C, IMGFMT_EXTENT_ZERO, 0);
	free(z);
	expect_content(img, model, size);
	expect_clean(img);
	OK(imgfmt__close(img));

	/* Reopen, and without the backing file. */
	img = op("o.avd", 0, 0);
	expect_content(img, model, size);
	OK(imgfmt__close(img));
	img = op("o.avd", IMGFMT_OPEN_NO_BACKING, 0);
	OK(imgfmt__pread(img, buf, 100, 0));
	for (int i = 0; i < 100; i++)
		ck_assert_int_eq(buf[i], 0);
	OK(imgfmt__close(img));
	free(model);
	free(base);
}
END_TEST

static int write_through_writer(const char *path, const uint8_t *data,
				uint64_t size, uint32_t cluster, int compress)
{
	struct imgfmt_writer_opts wo = {
		.format = "avd", .size = size, .cluster_size = cluster,
		.compress = compress, .compress_level = 3,
	};
	imgfmt_writer *w;
	int r = imgfmt__writer_open(path, &wo, &w);

	if (r < 0)
		return r;
	uint32_t cs = imgfmt__writer_chunk_size(w);
	for (uint64_t off = 0; off < size; off += cs) {
		uint32_t n = size - off < cs ? (uint32_t)(size - off) : cs;
		struct imgfmt_chunk ch;
		int zero = 1;
		for (uint32_t i = 0; i < n && zero; i++)
			zero = data[off + i] == 0;
		if (zero && (off / cs) % 5 == 4)
			continue; /* never put: must read as zeros */
		r = imgfmt__writer_encode(w, data + off, off, n, &ch);
		if (r == 0)
			r = imgfmt__writer_put(w, &ch);
		imgfmt__chunk_release(&ch);
		if (r < 0) {
			imgfmt__writer_abort(w);
			return r;
		}
	}
	return imgfmt__writer_finish(w);
}

START_TEST(compressed_clusters)
{
	const uint32_t C = 65536;
	const uint64_t size = 20 * C + 1000;
	uint8_t *model = malloc(size), buf[64];
	imgfmt_image *img;

	/* Compressible text with random clusters in between. */
	for (uint64_t i = 0; i < size; i++)
		model[i] = (uint8_t)("abcdefgh"[i % 8] + (i / 5000) % 3);
	fill(model + 2 * C, C, 3);
	memset(model + 7 * C, 0, C);
	for (uint64_t c = 0; c * C < size; c++)
		if (c % 5 == 4)
			memset(model + c * C, 0, C < size - c * C ? C
							    : size - c * C);
	OK(write_through_writer(fx_path("c.avd"), model, size, C, 1));
	img = op("c.avd", IMGFMT_OPEN_RDWR, 0);
	expect_content(img, model, size);
	expect_kind(img, 0, C, IMGFMT_EXTENT_DATA, IMGFMT_EXTENT_COMPRESSED);
	expect_kind(img, 2 * C, C, IMGFMT_EXTENT_DATA, 0); /* incompressible */
	expect_kind(img, 7 * C, C, IMGFMT_EXTENT_ZERO, 0);
	expect_kind(img, 4 * C, C, IMGFMT_EXTENT_ZERO, 0); /* never put */
	expect_kind(img, 20 * C, 1000, IMGFMT_EXTENT_DATA,
		    IMGFMT_EXTENT_COMPRESSED);
	expect_clean(img);

	/* Writing into a compressed cluster rewrites it uncompressed. */
	fill(buf, sizeof(buf), 11);
	OK(imgfmt__pwrite(img, buf, sizeof(buf), C + 777));
	memcpy(model + C + 777, buf, sizeof(buf));
	expect_kind(img, C, C, IMGFMT_EXTENT_DATA, 0);
	expect_kind(img, 0, C, IMGFMT_EXTENT_DATA, IMGFMT_EXTENT_COMPRESSED);
	expect_content(img, model, size);
	OK(imgfmt__flush(img));
	expect_clean(img);
	OK(imgfmt__close(img));
	img = op("c.avd", 0, 0);
	expect_content(img, model, size);
	OK(imgfmt__close(img));

	/* Uncompressed writer output, 4 KiB clusters, reads the same. */
	OK(write_through_writer(fx_path("u.avd"), model, size, 4096, 0));
	img = op("u.avd", 0, 0);
	expect_content(img, model, size);
	expect_clean(img);
	OK(imgfmt__close(img));
	free(model);
}
END_TEST

/* An image being written and the bytes it should hold: the fixture of
 * the allocation tests below. */
struct model {
	const char *name;
	imgfmt_image *img;
	uint8_t *want;
	uint64_t size;
};

static void model_new(struct model *m, const char *name, uint64_t size,
		      uint32_t cluster)
{
	m->name = name;
	m->size = size;
	m->img = mk(name, size, cluster, NULL, NULL);
	m->want = calloc(1, size);
	ck_assert_ptr_nonnull(m->want);
}

/* `len` bytes of pattern `seed` at `off`, into the image and the model. */
static void model_write(struct model *m, uint64_t off, size_t len,
			uint64_t seed)
{
	fill(m->want + off, len, seed);
	OK(imgfmt__pwrite(m->img, m->want + off, len, off));
}

static void model_expect(struct model *m)
{
	expect_content(m->img, m->want, m->size);
}

/* Flush; the content and a clean check before and after a reopen with
 * `flags`. */
static void model_reopen(struct model *m, unsigned flags)
{
	OK(imgfmt__flush(m->img));
	model_expect(m);
	expect_clean(m->img);
	OK(imgfmt__close(m->img));
	m->img = op(m->name, flags, 0);
	model_expect(m);
	expect_clean(m->img);
}

static void model_free(struct model *m)
{
	OK(imgfmt__close(m->img));
	free(m->want);
}

/* A partial write into a new cluster at the end of the file writes only
 * the 4 KiB blocks it touches; the rest stays a hole that reads as zeros
 * before and after the flush that gives the file its full length, and
 * check finds the zero checksums right.  A reused cluster may hold old
 * bytes, so it must not be left sparse. */
START_TEST(sparse_new_clusters)
{
	const uint32_t C = 65536;
	struct model m;
	struct imgfmt_extent ext;
	struct stat st0, st1;

	model_new(&m, "s.avd", 64ull * C, C);
	ck_assert_int_eq(stat(fx_path("s.avd"), &st0), 0);
	for (uint64_t i = 0; i < 8; i++)
		model_write(&m, i * 2 * C, 4096, i + 1);
	/* Unaligned pieces: one inside a cluster, one at its very end. */
	model_write(&m, 20 * C + 5000, 100, 99);
	model_write(&m, 22 * C - 10, 10, 98);
	/* Before any flush the file ends inside the last new clusters. */
	model_expect(&m);
	ck_assert_int_eq(stat(fx_path("s.avd"), &st1), 0);
	ck_assert_msg((st1.st_blocks - st0.st_blocks) * 512 < 4 * C,
		      "10 small writes took %lld bytes of disk",
		      (long long)(st1.st_blocks - st0.st_blocks) * 512);
	/* Another block of a sparse fresh cluster, in its hole. */
	model_write(&m, 2 * C + 3 * 4096, 4096, 77);
	model_reopen(&m, IMGFMT_OPEN_RDWR);

	/* Free a cluster full of data, then allocate again: the freed
	 * cluster comes back and its old bytes must not show.  (A partial
	 * write: whole clusters are placed apart, to keep alignment.) */
	model_write(&m, 30 * C, C - 4096, 55);
	OK(imgfmt__flush(m.img));
	OK(imgfmt__map(m.img, 30 * C, C, &ext));
	int64_t old_off = ext.file_offset;
	ck_assert_int_gt(old_off, 0);
	OK(imgfmt__discard(m.img, 30 * C, C));
	memset(m.want + 30 * C, 0, C);
	OK(imgfmt__flush(m.img));
	model_write(&m, 40 * C + 8192, 4096, 56);
	OK(imgfmt__map(m.img, 40 * C, C, &ext));
	ck_assert_int_eq(ext.file_offset, old_off);
	model_expect(&m);
	model_reopen(&m, 0);
	model_free(&m);
}
END_TEST

/* Whole clusters written 1 MiB at a time land at file offsets congruent to
 * their virtual offsets modulo 1 MiB (large page-cache folios) on disks of
 * 64 MiB and more; the clusters skipped for that are free holes that later
 * single-cluster allocations use, and check calls none of them a leak. */
START_TEST(whole_clusters_aligned)
{
	struct model m;
	struct imgfmt_extent ext;
	struct stat st;

	model_new(&m, "w.avd", 64ull << 20, 65536);
	for (uint64_t off = 0; off < (4u << 20); off += 1 << 20)
		model_write(&m, off, 1 << 20, off + 1);
	for (uint64_t off = 0; off < (4u << 20); off += ext.length) {
		OK(imgfmt__map(m.img, off, (4u << 20) - off, &ext));
		ck_assert_int_eq(ext.kind, IMGFMT_EXTENT_DATA);
		ck_assert_msg((uint64_t)ext.file_offset % (1 << 20) ==
			      off % (1 << 20),
			      "virtual %llu at file offset %lld",
			      (unsigned long long)off,
			      (long long)ext.file_offset);
	}
	OK(imgfmt__flush(m.img));
	ck_assert_int_eq(stat(fx_path("w.avd"), &st), 0);
	off_t len0 = st.st_size;
	/* A partial write takes a gap below the end of the file. */
	model_write(&m, 6u << 20, 4096, 9);
	OK(imgfmt__map(m.img, 6u << 20, 4096, &ext));
	ck_assert_int_lt(ext.file_offset, len0);
	model_reopen(&m, IMGFMT_OPEN_RDWR);
	model_free(&m);
}
END_TEST

/* The L1 table's first entry (the L2 table of the first 51 MiB). */
static uint64_t first_l2_offset(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t b[8];
	uint64_t l1, l2;

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fseek(f, 72, SEEK_SET), 0);     /* l1_offset */
	ck_assert_uint_eq(fread(b, 1, 8, f), 8);
	memcpy(&l1, b, 8);
	ck_assert_int_eq(fseek(f, (long)le64toh(l1), SEEK_SET), 0);
	ck_assert_uint_eq(fread(b, 1, 8, f), 8);
	memcpy(&l2, b, 8);
	fclose(f);
	return le64toh(l2);
}

/* The streaming writer (convert) places raw clusters by the driver's
 * alignment rule (FORMAT.md §4, §8): file offset = virtual offset modulo
 * 1 MiB on a disk of 64 MiB and more, the first data cluster included,
 * with the L2 table in a skipped cluster; under 64 MiB no gaps at all;
 * compressed output stays packed. */
START_TEST(writer_aligns_whole_clusters)
{
	const uint32_t C = 65536;
	const uint64_t size = 64ull << 20;
	uint8_t *model = calloc(1, size);
	struct imgfmt_extent ext;
	imgfmt_image *img;

	fill(model, 3 * C, 1);                  /* from virtual 0 */
	fill(model + (5u << 20) + 3 * C, 2 * C, 2);   /* mid-MiB run */
	fill(model + (40u << 20), 1 << 20, 3);  /* a whole MiB */
	OK(write_through_writer(fx_path("a.avd"), model, size, C, 0));
	img = op("a.avd", 0, 0);
	OK(imgfmt__map(img, 0, C, &ext));
	ck_assert_int_eq(ext.kind, IMGFMT_EXTENT_DATA);
	ck_assert_int_eq(ext.file_offset, 1 << 20);     /* not C: aligned */
	for (uint64_t off = 0; off < size; off += ext.length) {
		OK(imgfmt__map(img, off, size - off, &ext));
		if (ext.kind != IMGFMT_EXTENT_DATA)
			continue;
		ck_assert_msg((uint64_t)ext.file_offset % (1 << 20) ==
			      off % (1 << 20), "virtual %llu at file offset "
			      "%lld", (unsigned long long)off,
			      (long long)ext.file_offset);
	}
	/* The first L2 table took the first cluster skipped. */
	ck_assert_uint_eq(first_l2_offset(fx_path("a.avd")), C);
	expect_content(img, model, size);
	expect_clean(img);
	OK(imgfmt__close(img));

	/* 63 MiB: no gaps, the first data cluster right after the header. */
	OK(write_through_writer(fx_path("s.avd"), model, size - (1 << 20),
				C, 0));
	img = op("s.avd", 0, 0);
	OK(imgfmt__map(img, 0, C, &ext));
	ck_assert_int_eq(ext.file_offset, C);
	expect_content(img, model, size - (1 << 20));
	expect_clean(img);
	OK(imgfmt__close(img));

	/* Compressed: packed, the incompressible first cluster at C. */
	OK(write_through_writer(fx_path("c.avd"), model, size, C, 1));
	img = op("c.avd", 0, 0);
	OK(imgfmt__map(img, 0, C, &ext));
	ck_assert_int_eq(ext.file_offset, C);
	expect_content(img, model, size);
	expect_clean(img);
	OK(imgfmt__close(img));
	free(model);
}
END_TEST

START_TEST(resize_grows_l1)
{
	const uint32_t C = 4096; /* 256 entries per L2: 1 MiB per table */
	uint64_t size = 3 << 20;
	uint8_t *model = calloc(1, 64 << 20), buf[5000];
	imgfmt_image *img = mk("r.avd", size, C, NULL, NULL);

	fill(buf, sizeof(buf), 1);
	OK(imgfmt__pwrite(img, buf, sizeof(buf), size - 2000 - 3000));
	memcpy(model + size - 5000, buf, sizeof(buf));
	/* 3 MiB -> 2 GiB: 2048 L1 entries = 16 KiB, L1 must move. */
	OK(imgfmt__resize(img, 2ull << 30));
	ck_assert_int_eq(imgfmt__resize(img, 1 << 20), -ENOTSUP);
	expect_content(img, model, size);
	OK(imgfmt__pwrite(img, buf, sizeof(buf), (2ull << 30) - 5000));
	OK(imgfmt__pread(img, buf + 0, 10, 40 << 20));
	for (int i = 0; i < 10; i++)
		ck_assert_int_eq(buf[i], 0);
	expect_clean(img);
	OK(imgfmt__close(img));
	img = op("r.avd", IMGFMT_OPEN_RDWR, 0);
	struct imgfmt_info info;
	OK(imgfmt__info(img, &info));
	ck_assert_uint_eq(info.virtual_size, 2ull << 30);
	expect_content(img, model, size);
	fill(buf, sizeof(buf), 1);
	uint8_t got[5000];
	OK(imgfmt__pread(img, got, sizeof(got), (2ull << 30) - 5000));
	ck_assert_mem_eq(got, buf, sizeof(got));
	expect_clean(img);
	OK(imgfmt__close(img));
	free(model);
}
END_TEST

START_TEST(tiny_cache_evicts)
{
	const uint32_t C = 4096;
	const uint64_t size = 24 << 20;
	uint8_t buf[6000];
	imgfmt_image *img;

	/* Reopen with room for two tables only (the minimum). */
	OK(imgfmt__close(mk("t.avd", size, C, NULL, NULL)));
	img = op("t.avd", IMGFMT_OPEN_RDWR, 1);
	for (int round = 0; round < 3; round++)
		for (int m = 0; m < 20; m++) {
			fill(buf, sizeof(buf), (uint64_t)m * 7 + round);
			OK(imgfmt__pwrite(img, buf, sizeof(buf),
					  ((uint64_t)m << 20) + 100 + m));
		}
	for (int m = 19; m >= 0; m--) {
		uint8_t want[6000];
		fill(want, sizeof(want), (uint64_t)m * 7 + 2);
		OK(imgfmt__pread(img, buf, sizeof(buf),
				 ((uint64_t)m << 20) + 100 + m));
		ck_assert_mem_eq(buf, want, sizeof(buf));
	}
	expect_clean(img);
	OK(imgfmt__close(img));
	img = op("t.avd", 0, 1);
	for (int m = 0; m < 20; m++) {
		uint8_t want[6000];
		fill(want, sizeof(want), (uint64_t)m * 7 + 2);
		OK(imgfmt__pread(img, buf, sizeof(buf),
				 ((uint64_t)m << 20) + 100 + m));
		ck_assert_mem_eq(buf, want, sizeof(buf));
	}
	OK(imgfmt__close(img));
}
END_TEST

struct reader_arg {
	imgfmt_image *img;
	const uint8_t *model;
	uint64_t size;
	int seed, bad;
};

static void *reader(void *p)
{
	struct reader_arg *a = p;
	uint8_t *buf = malloc(200000);
	uint64_t s = (uint64_t)a->seed;

	for (int i = 0; i < 2000; i++) {
		s = s * 6364136223846793005ull + 1;
		uint64_t off = (s >> 20) % a->size;
		uint64_t len = 1 + (s >> 40) % 150000;
		if (i % 2) {
			/* Aligned blocks inside one cluster: the fast path. */
			off &= ~(uint64_t)4095;
			len = 4096;
		}
		if (len > a->size - off)
			len = a->size - off;
		if (imgfmt__pread(a->img, buf, len, off) < 0 ||
		    memcmp(buf, a->model + off, len) != 0)
			a->bad++;
	}
	free(buf);
	return NULL;
}

/* n (up to 4) threads running fn over img at once, thread i with seed
 * first_seed + seed_step * i; none may find a bad read. */
static void run_readers(imgfmt_image *img, const uint8_t *model,
			uint64_t size, void *(*fn)(void *), int n,
			int first_seed, int seed_step)
{
	pthread_t t[4];
	struct reader_arg a[4];

	ck_assert_int_le(n, 4);
	for (int i = 0; i < n; i++) {
		a[i] = (struct reader_arg){ img, model, size,
					    first_seed + seed_step * i, 0 };
		ck_assert_int_eq(pthread_create(&t[i], NULL, fn, &a[i]), 0);
	}
	for (int i = 0; i < n; i++) {
		pthread_join(t[i], NULL);
		ck_assert_int_eq(a[i].bad, 0);
	}
}

START_TEST(concurrent_readers)
{
	const uint64_t size = 8 << 20;
	uint8_t *model = malloc(size);
	imgfmt_image *img = mk("m.avd", size, 4096, NULL, NULL);

	fill(model, size, 42);
	memset(model + (1 << 20), 0, 1 << 20);
	OK(imgfmt__pwrite(img, model, size, 0));
	OK(imgfmt__close(img));
	/* A small cache so that readers race on loading tables too. */
	img = op("m.avd", 0, 3 * 4096);
	run_readers(img, model, size, reader, 4, 1, 1);
	OK(imgfmt__close(img));
	free(model);
}
END_TEST

/* ---- compressed clusters read piecemeal (the decompressed cache) ---- */

/* A compressed image of `n` 64 KiB clusters (and a 5000-byte tail): text
 * that differs in every 4 KiB block and every cluster, so that a block
 * served from the wrong cluster or an old version shows, with one
 * incompressible cluster (3) and one of zeros (6) among them. */
#define ZC 65536u
static uint8_t *make_compressed(const char *name, unsigned n, uint64_t *size)
{
	uint64_t sz = (uint64_t)n * ZC + 5000;
	uint8_t *m = malloc(sz);

	for (uint64_t i = 0; i < sz; i++)
		m[i] = (uint8_t)('a' + (i % 13 + (i >> 12) * 5 + (i >> 16) * 3) %
					       26);
	fill(m + 3 * ZC, ZC, 9);
	memset(m + 6 * ZC, 0, ZC);
	OK(write_through_writer(fx_path(name), m, sz, ZC, 1));
	*size = sz;
	return m;
}

static void expect_range(imgfmt_image *img, const uint8_t *model,
			 uint64_t off, size_t len)
{
	uint8_t *got = malloc(len);

	OK(imgfmt__pread(img, got, len, off));
	for (size_t i = 0; i < len; i++)
		if (got[i] != model[off + i])
			ck_abort_msg("byte %llu is %02x, want %02x",
				     (unsigned long long)(off + i), got[i],
				     model[off + i]);
	free(got);
}

START_TEST(compressed_random_4k)
{
	uint64_t size;
	uint8_t *model = make_compressed("z.avd", 24, &size);
	uint64_t nblk = (size + 4095) / 4096, s = 77;
	uint64_t *perm = malloc(nblk * sizeof(*perm));

	/* The default budget (16 cached clusters) and a tiny one (2). */
	for (int pass = 0; pass < 2; pass++) {
		imgfmt_image *img = op("z.avd", 0, pass ? 4 * ZC : 0);
		expect_kind(img, 0, ZC, IMGFMT_EXTENT_DATA,
			    IMGFMT_EXTENT_COMPRESSED);
		for (uint64_t i = 0; i < nblk; i++)
			perm[i] = i;
		for (uint64_t i = nblk - 1; i > 0; i--) {
			s = s * 6364136223846793005ull + 1442695040888963407ull;
			uint64_t j = (s >> 33) % (i + 1), t = perm[i];
			perm[i] = perm[j];
			perm[j] = t;
		}
		for (uint64_t i = 0; i < nblk; i++) {
			uint64_t off = perm[i] * 4096;
			expect_range(img, model, off,
				     size - off < 4096 ? size - off : 4096);
		}
		/* Unaligned pieces, some spanning clusters. */
		for (int i = 0; i < 300; i++) {
			s = s * 6364136223846793005ull + 1442695040888963407ull;
			uint64_t off = (s >> 20) % size;
			size_t len = 1 + (size_t)((s >> 44) % (3 * ZC));
			if (len > size - off)
				len = size - off;
			expect_range(img, model, off, len);
		}
		OK(imgfmt__close(img));
	}
	free(perm);
	free(model);
}
END_TEST

/* A cluster read (so cached), then written, discarded or zeroed, must
 * read back what was written, never the bytes decompressed before. */
START_TEST(compressed_write_after_cached_read)
{
	uint64_t size;
	uint8_t *model = make_compressed("w.avd", 16, &size), buf[3000];
	imgfmt_image *img = op("w.avd", IMGFMT_OPEN_RDWR, 0);

	for (unsigned c = 0; c < 5; c++) {
		uint64_t base = (uint64_t)c * ZC;
		expect_range(img, model, base + 4096, 4096);
		fill(buf, sizeof(buf), 100 + c);
		OK(imgfmt__pwrite(img, buf, sizeof(buf), base + 5000 + c));
		memcpy(model + base + 5000 + c, buf, sizeof(buf));
		for (uint64_t o = 0; o < ZC; o += 4096)
			expect_range(img, model, base + o, 4096);
	}
	/* Discard (no backing file: reads as zeros) and write-zeroes. */
	expect_range(img, model, 8 * ZC + 8192, 100);
	OK(imgfmt__discard(img, 8 * ZC, ZC));
	memset(model + 8 * ZC, 0, ZC);
	expect_range(img, model, 8 * ZC + 8192, 100);
	expect_range(img, model, 9 * ZC + 12288, 4096);
	OK(imgfmt__write_zeroes(img, 9 * ZC, ZC, 0));
	memset(model + 9 * ZC, 0, ZC);
	for (uint64_t o = 0; o < ZC; o += 4096)
		expect_range(img, model, 9 * ZC + o, 4096);
	expect_content(img, model, size);
	OK(imgfmt__flush(img));
	expect_clean(img);
	OK(imgfmt__close(img));
	img = op("w.avd", 0, 0);
	expect_content(img, model, size);
	OK(imgfmt__close(img));
	free(model);
}
END_TEST

/* Readers on compressed clusters from several threads, with a cache of
 * two clusters so that they evict each other's and wait on each other's
 * decompression of the same cluster. */
START_TEST(compressed_concurrent_readers)
{
	uint64_t size;
	uint8_t *model = make_compressed("t.avd", 20, &size);

	for (int pass = 0; pass < 2; pass++) {
		imgfmt_image *img = op("t.avd", 0, pass ? 0 : 4 * ZC);
		run_readers(img, model, size, reader, 4, 10 * pass + 1, 1);
		OK(imgfmt__close(img));
	}
	free(model);
}
END_TEST

static void *corrupt_reader(void *p)
{
	struct reader_arg *a = p;
	uint8_t buf[4096];

	/* Every 4 KiB block of cluster 1, twice: each must fail. */
	for (int i = 0; i < 32; i++)
		if (imgfmt__pread(a->img, buf, sizeof(buf),
				  ZC + (uint64_t)((i + a->seed) % 16) * 4096) !=
		    -EIO)
			a->bad++;
	return NULL;
}

/* A compressed cluster whose payload fails its checksum fails every
 * read, from one thread or several, and is never served from the cache;
 * its neighbours still read. */
START_TEST(compressed_corrupt_never_cached)
{
	uint64_t size;
	uint8_t *model = make_compressed("k.avd", 8, &size), h[AVD_HEADER_SIZE];
	uint8_t ent[16], x;
	int fd = open(fx_path("k.avd"), O_RDWR);

	/* Cluster 1's entry in the first L2 table; flip a payload byte. */
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, h, sizeof(h), 0), (ssize_t)sizeof(h));
	uint64_t l1 = avd_get64(h + AVD_H_L1_OFFSET), l2;
	ck_assert_int_eq(pread(fd, ent, 8, (off_t)l1), 8);
	l2 = avd_get64(ent);
	ck_assert_int_eq(pread(fd, ent, 16,
			       (off_t)(l2 + avd_entry_size(ZC))), 16);
	uint64_t d = avd_get64(ent);
	ck_assert_uint_eq(AVD_DESC_TYPE(d), AVD_T_COMP);
	uint64_t poff = AVD_DESC_OFF(d) + avd_get32(ent + 8) / 2;
	ck_assert_int_eq(pread(fd, &x, 1, (off_t)poff), 1);
	x ^= 0x40;
	ck_assert_int_eq(pwrite(fd, &x, 1, (off_t)poff), 1);
	close(fd);

	imgfmt_image *img = op("k.avd", 0, 4 * ZC);
	uint8_t buf[4096];
	for (int round = 0; round < 3; round++)
		for (uint64_t o = 0; o < ZC; o += 4096) {
			expect_range(img, model, o, 4096);
			for (int again = 0; again < 2; again++) {
				ck_assert_int_eq(imgfmt__pread(img, buf, 4096,
							       ZC + o),
						 -EIO);
				ck_assert_ptr_nonnull(strstr(imgfmt__error(),
							     "checksum"));
			}
			expect_range(img, model, 2 * ZC + o, 4096);
		}
	run_readers(img, model, size, corrupt_reader, 3, 0, 5);
	OK(imgfmt__close(img));
	free(model);
}
END_TEST

START_TEST(commit_rebase_compact)
{
	const uint32_t C = 65536;
	const uint64_t size = 12 * C;
	uint8_t *model = make_base(size), buf[1000];
	imgfmt_image *img = mk("top.avd", size, C, "base.raw", "raw");

	fill(buf, sizeof(buf), 8);
	OK(imgfmt__pwrite(img, buf, sizeof(buf), 2 * C - 500));
	memcpy(model + 2 * C - 500, buf, sizeof(buf));
	OK(imgfmt__write_zeroes(img, 5 * C, C, 0));
	memset(model + 5 * C, 0, C);

	/* compact keeps the content and the backing reference. */
	OK(imgfmt__compact(img, fx_path("small.avd"), 0));
	imgfmt_image *s = op("small.avd", 0, 0);
	expect_content(s, model, size);
	expect_kind(s, 0, C, IMGFMT_EXTENT_BACKING, 0);
	expect_kind(s, 5 * C, C, IMGFMT_EXTENT_ZERO, 0);
	expect_clean(s);
	OK(imgfmt__close(s));
	OK(imgfmt__compact(img, fx_path("smallc.avd"), 5));
	s = op("smallc.avd", 0, 0);
	expect_content(s, model, size);
	OK(imgfmt__close(s));

	/* commit: the base gets the data, the overlay is emptied. */
	OK(imgfmt__commit(img));
	expect_kind(img, 0, size, IMGFMT_EXTENT_BACKING, 0);
	expect_content(img, model, size);
	OK(imgfmt__close(img));
	s = op("base.raw", 0, 0);
	expect_content(s, model, size);
	OK(imgfmt__close(s));

	/* rebase onto a different base: content unchanged. */
	struct imgfmt_create_opts c = { .size = size };
	OK(imgfmt__create(fx_path("other.avd"), &c));
	img = op("top.avd", IMGFMT_OPEN_RDWR, 0);
	fill(buf, sizeof(buf), 9);
	OK(imgfmt__pwrite(img, buf, sizeof(buf), 7 * C));
	memcpy(model + 7 * C, buf, sizeof(buf));
	OK(imgfmt__rebase(img, "other.avd", "avd", 0));
	expect_content(img, model, size);
	OK(imgfmt__close(img));
	img = op("top.avd", 0, 0);
	struct imgfmt_info info;
	OK(imgfmt__info(img, &info));
	ck_assert_str_eq(info.backing_file, "other.avd");
	expect_content(img, model, size);
	OK(imgfmt__close(img));

	/* rebase onto itself is a loop; -u to nothing drops the base. */
	img = op("top.avd", IMGFMT_OPEN_RDWR, 0);
	ck_assert_int_eq(imgfmt__rebase(img, "top.avd", NULL, 0), -ELOOP);
	OK(imgfmt__rebase(img, NULL, NULL, 1));
	OK(imgfmt__close(img));
	img = op("top.avd", 0, 0);
	OK(imgfmt__info(img, &info));
	ck_assert_str_eq(info.backing_file, "");
	expect_content(img, model, size); /* other.avd was all zeros */
	OK(imgfmt__close(img));
	free(model);
}
END_TEST

START_TEST(dirty_after_unclean_exit)
{
	imgfmt_image *img = mk("d.avd", 1 << 20, 0, NULL, NULL);
	struct imgfmt_check_result r;
	struct imgfmt_info info;
	uint8_t buf[5000];

	OK(imgfmt__close(img));
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct imgfmt_open_opts o = { .flags = IMGFMT_OPEN_RDWR };
		imgfmt_image *c;
		memset(buf, 7, sizeof(buf));
		if (imgfmt__open(fx_path("d.avd"), &o, &c) < 0 ||
		    imgfmt__pwrite(c, buf, sizeof(buf), 1000) < 0 ||
		    imgfmt__flush(c) < 0 ||
		    imgfmt__pwrite(c, buf, sizeof(buf), 300000) < 0)
			_exit(1);
		_exit(0); /* no close: the image stays dirty */
	}
	int st;
	waitpid(pid, &st, 0);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	img = op("d.avd", 0, 0);
	OK(imgfmt__info(img, &info));
	ck_assert_int_eq(info.dirty, 1);
	OK(imgfmt__pread(img, buf, sizeof(buf), 1000));
	for (size_t i = 0; i < sizeof(buf); i++)
		ck_assert_int_eq(buf[i], 7);
	OK(imgfmt__check(img, 0, &r));
	ck_assert_int_eq(r.was_dirty, 1);
	ck_assert_uint_eq(r.corruptions + r.checksum_errors, 0);
	OK(imgfmt__close(img));
	img = op("d.avd", IMGFMT_OPEN_RDWR, 0);
	OK(imgfmt__check(img, 1, &r));
	ck_assert_uint_eq(r.corruptions + r.checksum_errors, 0);
	ck_assert_uint_ge(r.repaired, r.leaks);
	expect_clean(img);
	OK(imgfmt__close(img));
	img = op("d.avd", 0, 0);
	OK(imgfmt__info(img, &info));
	ck_assert_int_eq(info.dirty, 0);
	OK(imgfmt__close(img));

	/* Again, but this time a plain read-write open and close cleans
	 * up: the dirty flag goes and the crash's leaks are given back. */
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct imgfmt_open_opts o = { .flags = IMGFMT_OPEN_RDWR };
		imgfmt_image *c;
		memset(buf, 9, sizeof(buf));
		if (imgfmt__open(fx_path("d.avd"), &o, &c) < 0)
			_exit(1);
		for (int i = 0; i < 8; i++)
			if (imgfmt__pwrite(c, buf, sizeof(buf),
					   (uint64_t)i * 100000) < 0 ||
			    (i == 3 && imgfmt__flush(c) < 0))
				_exit(1);
		_exit(0);
	}
	waitpid(pid, &st, 0);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	img = op("d.avd", IMGFMT_OPEN_RDWR, 0);
	OK(imgfmt__close(img));
	img = op("d.avd", 0, 0);
	OK(imgfmt__check(img, 0, &r));
	ck_assert_int_eq(r.was_dirty, 0);
	ck_assert_uint_eq(r.corruptions + r.checksum_errors + r.leaks, 0);
	OK(imgfmt__pread(img, buf, sizeof(buf), 300000));
	for (size_t i = 0; i < sizeof(buf); i++)
		ck_assert_int_eq(buf[i], 9); /* flushed before the exit */
	OK(imgfmt__close(img));
}
END_TEST

struct writer_arg {
	imgfmt_image *img;
	uint64_t base;
	int bad;
};

static void *writer_thread(void *p)
{
	struct writer_arg *a = p;
	uint8_t buf[10000], got[10000];

	for (int i = 0; i < 60; i++) {
		uint64_t off = a->base + (uint64_t)(i % 7) * 70000;
		fill(buf, sizeof(buf), a->base + (uint64_t)i);
		if (imgfmt__pwrite(a->img, buf, sizeof(buf), off) < 0 ||
		    imgfmt__pread(a->img, got, sizeof(got), off) < 0 ||
		    memcmp(buf, got, sizeof(buf)) != 0)
			a->bad++;
		if (i % 10 == 9 && imgfmt__flush(a->img) < 0)
			a->bad++;
	}
	return NULL;
}

/* Writers on disjoint ranges while readers check a range nobody writes. */
START_TEST(concurrent_writers_and_readers)
{
	const uint64_t size = 8 << 20;
	uint8_t *model = malloc(size);
	imgfmt_image *img = mk("w.avd", size, 16384, NULL, NULL);
	pthread_t t[4];
	struct writer_arg w[2];
	struct reader_arg r[2];

	fill(model, 4 << 20, 77);
	OK(imgfmt__pwrite(img, model, 4 << 20, 0));
	OK(imgfmt__flush(img));
	for (int i = 0; i < 2; i++) {
		w[i] = (struct writer_arg){ img, (4u << 20) + i * (2u << 20),
					    0 };
		r[i] = (struct reader_arg){ img, model, 4 << 20, i + 5, 0 };
		ck_assert_int_eq(pthread_create(&t[i], NULL, writer_thread,
						&w[i]), 0);
		ck_assert_int_eq(pthread_create(&t[2 + i], NULL, reader,
						&r[i]), 0);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(w[i].bad, 0);
		ck_assert_int_eq(r[i].bad, 0);
	}
	expect_clean(img);
	OK(imgfmt__close(img));
	free(model);
}
END_TEST

START_TEST(backing_digest_is_verified)
{
	uint8_t *model = make_base(1 << 20);
	struct imgfmt_create_opts c = {
		.backing_file = "base.raw", .backing_format = "raw",
		.backing_digest = 1,
	};
	imgfmt_image *img;

	OK(imgfmt__create(fx_path("g.avd"), &c));
	img = op("g.avd", 0, 0);
	expect_content(img, model, 1 << 20);
	OK(imgfmt__close(img));
	/* Change one byte of the backing file. */
	img = op("base.raw", IMGFMT_OPEN_RDWR, 0);
	OK(imgfmt__pwrite(img, "x", 1, 12345));
	OK(imgfmt__close(img));
	struct imgfmt_open_opts o = { 0 };
	ck_assert_int_eq(imgfmt__open(fx_path("g.avd"), &o, &img), -EIO);
	ck_assert_ptr_nonnull(strstr(imgfmt__error(), "digest"));
	o.flags = IMGFMT_OPEN_NO_BACKING;
	OK(imgfmt__open(fx_path("g.avd"), &o, &img));
	OK(imgfmt__close(img));
	free(model);
}
END_TEST

/* Self-contained, an image may read nothing but itself: one naming a
 * backing file is refused, naming it; one without opens. */
START_TEST(self_contained_refuses_a_backing_file)
{
	uint8_t *model = make_base(1 << 20);
	struct imgfmt_create_opts c = {
		.backing_file = "base.raw", .backing_format = "raw",
	};
	struct imgfmt_open_opts o = { .flags = IMGFMT_OPEN_SELF_CONTAINED };
	imgfmt_image *img = NULL;

	OK(imgfmt__create(fx_path("over.avd"), &c));
	ck_assert_int_eq(imgfmt__open(fx_path("over.avd"), &o, &img), -EPERM);
	ck_assert_ptr_null(img);
	ck_assert_msg(strstr(imgfmt__error(), "names a backing file, base.raw") &&
		      strstr(imgfmt__error(), "self-contained"), "%s",
		      imgfmt__error());
	o.flags |= IMGFMT_OPEN_RDWR;
	ck_assert_int_eq(imgfmt__open(fx_path("over.avd"), &o, &img), -EPERM);
	img = op("over.avd", 0, 0);   /* not asked to: the chain opens */
	expect_content(img, model, 1 << 20);
	OK(imgfmt__close(img));
	c = (struct imgfmt_create_opts){ .size = 1 << 20 };
	OK(imgfmt__create(fx_path("alone.avd"), &c));
	o.flags = IMGFMT_OPEN_SELF_CONTAINED;
	OK(imgfmt__open(fx_path("alone.avd"), &o, &img));
	OK(imgfmt__close(img));
	free(model);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("avd");
	TCase *tc = tcase_create("avd");

	tcase_set_timeout(tc, 120);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, crc32c_vectors);
	tcase_add_test(tc, self_contained_refuses_a_backing_file);
	tcase_add_test(tc, create_info_probe);
	tcase_add_test(tc, partial_cluster_io);
	tcase_add_test(tc, descriptors_backing_cow);
	tcase_add_test(tc, compressed_clusters);
	tcase_add_test(tc, sparse_new_clusters);
	tcase_add_test(tc, whole_clusters_aligned);
	tcase_add_test(tc, writer_aligns_whole_clusters);
	tcase_add_test(tc, resize_grows_l1);
	tcase_add_test(tc, tiny_cache_evicts);
	tcase_add_test(tc, concurrent_readers);
	tcase_add_test(tc, compressed_random_4k);
	tcase_add_test(tc, compressed_write_after_cached_read);
	tcase_add_test(tc, compressed_concurrent_readers);
	tcase_add_test(tc, compressed_corrupt_never_cached);
	tcase_add_test(tc, commit_rebase_compact);
	tcase_add_test(tc, dirty_after_unclean_exit);
	tcase_add_test(tc, concurrent_writers_and_readers);
	tcase_add_test(tc, backing_digest_is_verified);
	suite_add_tcase(s, tc);
	return fx_run_suite(s);
}
