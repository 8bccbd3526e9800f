/*
 * test_avd_corrupt.c - hostile AVD images: every one must be refused (or
 * read with an error) with a message naming what is wrong, never crash,
 * and `check` must count what it finds.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "avd.h"
#include "crc32c.h"
#include "imgfmt.h"
#include "fixture-run.h"

static char dir[64];

static void setup(void)
{
	strcpy(dir, "/tmp/test_avdc.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
}

static const char *P(const char *name)
{
	static char bufs[4][160];
	static int i;
	char *b = bufs[i++ & 3];
	snprintf(b, 160, "%s/%s", dir, name);
	return b;
}

#define OK(x) ck_assert_msg((x) == 0, "%s: %s", #x, imgfmt__error())

/* The image: 1 MiB, 64 KiB clusters, data in clusters 0 and 1, a
 * compressed cluster 2 (written via the writer). */
#define C 65536u
#define SIZE (16 * C)

static void make(const char *name)
{
	struct imgfmt_writer_opts wo = {
		.format = "avd", .size = SIZE, .compress = 1,
		.cluster_size = C, /* compressed output defaults to 128 KiB */
	};
	imgfmt_writer *w;
	uint8_t *buf = malloc(C);

	OK(imgfmt__writer_open(P(name), &wo, &w));
	uint64_t x = 88172645463325252ull;
	for (unsigned c = 0; c < 3; c++) {
		struct imgfmt_chunk ch;
		for (unsigned i = 0; i < C; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17; /* xorshift: incompressible */
			buf[i] = c == 2 ? (uint8_t)('a' + i % 7) : (uint8_t)x;
		}
		OK(imgfmt__writer_encode(w, buf, (uint64_t)c * C, C, &ch));
		OK(imgfmt__writer_put(w, &ch));
		imgfmt__chunk_release(&ch);
	}
	OK(imgfmt__writer_finish(w));
	free(buf);
}

static void rd(const char *name, uint64_t off, void *buf, size_t n)
{
	int fd = open(P(name), O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, buf, n, (off_t)off), (ssize_t)n);
	close(fd);
}

static void wr(const char *name, uint64_t off, const void *buf, size_t n)
{
	int fd = open(P(name), O_WRONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, buf, n, (off_t)off), (ssize_t)n);
	close(fd);
}

static void put64(const char *name, uint64_t off, uint64_t v)
{
	uint8_t b[8];
	avd_put64(b, v);
	wr(name, off, b, 8);
}

static void put32(const char *name, uint64_t off, uint32_t v)
{
	uint8_t b[4];
	avd_put32(b, v);
	wr(name, off, b, 4);
}

static uint64_t get64(const char *name, uint64_t off)
{
	uint8_t b[8];
	rd(name, off, b, 8);
	return avd_get64(b);
}

static uint32_t get32(const char *name, uint64_t off)
{
	uint8_t b[4];
	rd(name, off, b, 4);
	return avd_get32(b);
}

/* Recompute the header checksum after patching a field. */
static void fix_crc(const char *name)
{
	uint8_t h[AVD_HEADER_SIZE];

	rd(name, 0, h, sizeof(h));
	memset(h + AVD_H_CRC, 0, 4);
	avd_put32(h + AVD_H_CRC, crc32c(0, h, sizeof(h)));
	wr(name, 0, h, sizeof(h));
}

static uint64_t l2_offset(const char *name)
{
	return get64(name, get64(name, AVD_H_L1_OFFSET));
}

/* Offset of the L2 entry of virtual cluster `vc` (first table). */
static uint64_t entry(const char *name, unsigned vc)
{
	return l2_offset(name) + (uint64_t)vc * avd_entry_size(C);
}

static int open_err(const char *name, unsigned flags, const char *needle)
{
	struct imgfmt_open_opts o = { .flags = flags };
	imgfmt_image *img = NULL;
	int r = imgfmt__open(P(name), &o, &img);

	ck_assert_msg(r < 0, "%s opened but should not have", name);
	ck_assert_ptr_null(img);
	ck_assert_msg(strstr(imgfmt__error(), needle), "error '%s' does not "
		      "mention '%s'", imgfmt__error(), needle);
	return r;
}

static imgfmt_image *op(const char *name, unsigned flags)
{
	struct imgfmt_open_opts o = { .flags = flags };
	imgfmt_image *img;

	OK(imgfmt__open(P(name), &o, &img));
	return img;
}

static void check_counts(const char *name, uint64_t *corrupt,
			 uint64_t *cksum, char *first)
{
	imgfmt_image *img = op(name, 0);
	struct imgfmt_check_result r;

	OK(imgfmt__check(img, 0, &r));
	*corrupt = r.corruptions;
	*cksum = r.checksum_errors;
	if (first)
		strcpy(first, r.first_problem);
	imgfmt__close(img);
}

START_TEST(sane_image_is_clean)
{
	uint64_t c, k;

	make("a");
	check_counts("a", &c, &k, NULL);
	ck_assert_uint_eq(c + k, 0);
}
END_TEST

START_TEST(truncated_header)
{
	make("a");
	ck_assert_int_eq(truncate(P("a"), 100), 0);
	struct imgfmt_open_opts o = { .format = "avd" };
	imgfmt_image *img;
	ck_assert_int_eq(imgfmt__open(P("a"), &o, &img), -EINVAL);
	ck_assert_ptr_nonnull(strstr(imgfmt__error(), "truncated"));
	/* Detected by magic even when short. */
	char name[16];
	OK(imgfmt__probe(P("a"), name, sizeof(name)));
	ck_assert_str_eq(name, "avd");
	open_err("a", 0, "truncated");
}
END_TEST

START_TEST(bad_magic_version_crc)
{
	struct imgfmt_open_opts o = { .format = "avd" };
	imgfmt_image *img;

	make("a");
	wr("a", 0, "XVD1", 4);
	ck_assert_int_eq(imgfmt__open(P("a"), &o, &img), -EINVAL);
	ck_assert_ptr_nonnull(strstr(imgfmt__error(), "magic"));

	make("b");
	put32("b", AVD_H_VERSION, 2);
	fix_crc("b");
	ck_assert_int_eq(open_err("b", 0, "version"), -ENOTSUP);

	make("c");
	put32("c", AVD_H_CLUSTER_BITS, 40);
	ck_assert_int_eq(open_err("c", 0, "checksum"), -EIO);
	fix_crc("c");
	open_err("c", 0, "cluster_bits");
}
END_TEST

START_TEST(feature_bits)
{
	make("a");
	put64("a", AVD_H_INCOMPAT, 1ull << 17);
	fix_crc("a");
	ck_assert_int_eq(open_err("a", 0, "incompatible"), -ENOTSUP);

	/* Unknown compatible bits are fine; unknown autoclear bits are
	 * cleared by a read-write open. */
	make("b");
	put64("b", AVD_H_COMPAT, 1ull << 5);
	put64("b", AVD_H_AUTOCLEAR, 1ull << 9);
	fix_crc("b");
	imgfmt_image *img = op("b", 0);
	imgfmt__close(img);
	ck_assert_uint_eq(get64("b", AVD_H_AUTOCLEAR), 1ull << 9);
	img = op("b", IMGFMT_OPEN_RDWR);
	imgfmt__close(img);
	ck_assert_uint_eq(get64("b", AVD_H_AUTOCLEAR), 0);
	ck_assert_uint_eq(get64("b", AVD_H_COMPAT), 1ull << 5);
}
END_TEST

START_TEST(huge_sizes)
{
	make("a");
	put64("a", AVD_H_SIZE, IMGFMT_MAX_VIRTUAL_SIZE + 1);
	fix_crc("a");
	ck_assert_int_eq(open_err("a", 0, "virtual_size"), -EFBIG);

	/* A size the L1 table is too small for. */
	make("b");
	put64("b", AVD_H_SIZE, 1ull << 40);
	fix_crc("b");
	open_err("b", 0, "l1_entries");

	/* An L1 table claiming more entries than the file holds. */
	make("c");
	put32("c", AVD_H_L1_ENTRIES, 1000000);
	fix_crc("c");
	open_err("c", 0, "l1_entries");
	/* ... and one the file cannot hold. */
	make("f");
	put64("f", AVD_H_SIZE, 819ull * C * 1000000);
	put32("f", AVD_H_L1_ENTRIES, 1000000);
	fix_crc("f");
	open_err("f", 0, "L1 table");

	make("d");
	put32("d", AVD_H_L1_ENTRIES, 0xffffffffu);
	fix_crc("d");
	open_err("d", 0, "l1_entries");

	make("e");
	put32("e", AVD_H_BACKING_LEN, 100000);
	fix_crc("e");
	open_err("e", 0, "backing_name_len");
}
END_TEST

/* A bad L1 entry does not stop the open (check --repair must reach it):
 * its range fails to read with the reason, writes are refused, check
 * counts it and repair clears it. */
static void bad_l1(const char *n, uint64_t value, const char *why)
{
	make(n);
	uint64_t l1 = get64(n, AVD_H_L1_OFFSET);
	put64(n, l1, value == UINT64_MAX ? l1 : value);
	imgfmt_image *img = op(n, 0);
	uint8_t b[16];
	ck_assert_int_eq(imgfmt__pread(img, b, 16, 0), -EIO);
	ck_assert_msg(strstr(imgfmt__error(), why), "%s: %s", n,
		      imgfmt__error());
	struct imgfmt_extent e;
	ck_assert_int_eq(imgfmt__map(img, 0, C, &e), -EIO);
	imgfmt__close(img);

	uint64_t c, k;
	char first[512];
	check_counts(n, &c, &k, first);
	ck_assert_uint_eq(c, 1);
	ck_assert_msg(strstr(first, why), "%s", first);

	img = op(n, IMGFMT_OPEN_RDWR);
	ck_assert_int_eq(imgfmt__pwrite(img, b, 16, 0), -EIO);
	struct imgfmt_check_result res;
	OK(imgfmt__check(img, 1, &res));
	ck_assert_uint_ge(res.repaired, 1);
	OK(imgfmt__pread(img, b, 16, 0)); /* the table is gone: zeros */
	ck_assert_int_eq(b[0] | b[15], 0);
	OK(imgfmt__pwrite(img, "hello", 5, 0));
	OK(imgfmt__close(img));
	check_counts(n, &c, &k, first);
	ck_assert_msg(c + k == 0, "%s after repair: %s", n, first);
	ck_assert_uint_eq(get64(n, l1) != 0, 1); /* a new table */
}

START_TEST(l1_pointing_badly)
{
	bad_l1("a", 1ull << 40, "past the end");
	bad_l1("b", C + 512, "not cluster aligned");
	bad_l1("d", UINT64_MAX, "overlaps"); /* the L2 table is the L1 */

	/* 0 means "no table": the disk simply reads as zeros. */
	make("c");
	put64("c", get64("c", AVD_H_L1_OFFSET), 0);
	imgfmt_image *img = op("c", 0);
	uint8_t b[16];
	OK(imgfmt__pread(img, b, 16, 0));
	ck_assert_int_eq(b[0] | b[15], 0);
	imgfmt__close(img);

	make("e");
	put32("e", AVD_H_L1_OFFSET, 100);
	fix_crc("e");
	open_err("e", 0, "l1_offset");
}
END_TEST

START_TEST(l2_entries_overlapping_metadata)
{
	static const char *names[] = { "hdr", "l1", "l2", "dup" };
	char first[512];
	uint64_t c, k;

	for (int i = 0; i < 4; i++) {
		const char *n = names[i];
		make(n);
		uint64_t target;
		switch (i) {
		case 0: target = 0; break;
		case 1: target = get64(n, AVD_H_L1_OFFSET); break;
		case 2: target = l2_offset(n); break;
		default: target = get64(n, entry(n, 0)) & ((1ull << 56) - 1);
		}
		/* Point cluster 1's data at it. */
		put64(n, entry(n, 1), AVD_DESC(AVD_T_DATA, target));
		check_counts(n, &c, &k, first);
		ck_assert_msg(c >= 1, "%s: corruption not found", n);
		ck_assert_msg(strstr(first, "overlaps"), "%s: %s", n, first);
		/* Reading it fails or at least does not crash; for the
		 * header and L1 the read path refuses by itself. */
		imgfmt_image *img = op(n, 0);
		uint8_t b[100];
		int r = imgfmt__pread(img, b, sizeof(b), C);
		if (i < 2) {
			ck_assert_int_eq(r, -EIO);
			ck_assert_ptr_nonnull(strstr(imgfmt__error(),
						     "overlaps"));
		}
		imgfmt__close(img);
		/* A read-write open refuses writes until repaired. */
		img = op(n, IMGFMT_OPEN_RDWR);
		ck_assert_int_eq(imgfmt__pwrite(img, b, 10, 5 * C), -EIO);
		struct imgfmt_check_result res;
		OK(imgfmt__check(img, 1, &res));
		ck_assert_uint_ge(res.repaired, 1);
		OK(imgfmt__pwrite(img, b, 10, 5 * C));
		OK(imgfmt__close(img));
		check_counts(n, &c, &k, first);
		ck_assert_msg(c == 0, "%s after repair: %s", n, first);
	}
}
END_TEST

START_TEST(compressed_overruns)
{
	char first[512];
	uint64_t c, k, e;

	make("a");
	e = entry("a", 2);
	ck_assert_uint_eq(AVD_DESC_TYPE(get64("a", e)), AVD_T_COMP);
	put32("a", e + 8, C + 1);
	imgfmt_image *img = op("a", 0);
	uint8_t b[64];
	ck_assert_int_eq(imgfmt__pread(img, b, sizeof(b), 2 * C), -EIO);
	ck_assert_ptr_nonnull(strstr(imgfmt__error(), "compressed length"));
	imgfmt__close(img);
	check_counts("a", &c, &k, first);
	ck_assert_uint_ge(c, 1);

	make("b");
	e = entry("b", 2);
	put64("b", e, AVD_DESC(AVD_T_COMP, (1ull << 30)));
	img = op("b", 0);
	ck_assert_int_eq(imgfmt__pread(img, b, sizeof(b), 2 * C), -EIO);
	ck_assert_ptr_nonnull(strstr(imgfmt__error(), "overruns"));
	imgfmt__close(img);

	/* A payload whose checksum matches but which is not zstd (or
	 * decompresses to the wrong size) is an error, not a crash. */
	make("c");
	e = entry("c", 2);
	uint64_t at = get64("c", e) & ((1ull << 56) - 1);
	uint32_t len = get32("c", e + 8);
	uint8_t *junk = malloc(len);
	memset(junk, 0x5a, len);
	wr("c", at, junk, len);
	put32("c", e + 12, crc32c(0, junk, len));
	free(junk);
	img = op("c", 0);
	ck_assert_int_eq(imgfmt__pread(img, b, sizeof(b), 2 * C), -EIO);
	ck_assert_ptr_nonnull(strstr(imgfmt__error(), "decompress"));
	imgfmt__close(img);
}
END_TEST

START_TEST(checksum_mismatch)
{
	uint64_t c, k;
	uint8_t b[4096], x;
	char first[512];

	make("a");
	ck_assert_uint_eq(AVD_DESC_TYPE(get64("a", entry("a", 1))), AVD_T_DATA);
	uint64_t data = get64("a", entry("a", 1)) & ((1ull << 56) - 1);
	/* Flip one byte in the third 4 KiB block of cluster 1. */
	rd("a", data + 2 * 4096 + 17, &x, 1);
	x ^= 0x40;
	wr("a", data + 2 * 4096 + 17, &x, 1);
	imgfmt_image *img = op("a", 0);
	/* Other blocks of the cluster still read fine. */
	OK(imgfmt__pread(img, b, sizeof(b), C));
	OK(imgfmt__pread(img, b, sizeof(b), C + 3 * 4096));
	ck_assert_int_eq(imgfmt__pread(img, b, 10, C + 2 * 4096 + 5), -EIO);
	ck_assert_ptr_nonnull(strstr(imgfmt__error(), "checksum mismatch"));
	char want[64];
	snprintf(want, sizeof(want), "virtual offset %u", C);
	ck_assert_ptr_nonnull(strstr(imgfmt__error(), want));
	/* Reads across clusters (one pread for clusters that are back to
	 * back in the file) verify each cluster's blocks, and only those
	 * they return. */
	uint8_t *big = malloc(3 * C);
	ck_assert_int_eq(imgfmt__pread(img, big, 3 * C, 0), -EIO);
	ck_assert_ptr_nonnull(strstr(imgfmt__error(), want));
	ck_assert_int_eq(imgfmt__pread(img, big, 2 * C, 4096), -EIO);
	ck_assert_ptr_nonnull(strstr(imgfmt__error(), "4 KiB block 2"));
	OK(imgfmt__pread(img, big, C + 8192, 0));
	OK(imgfmt__pread(img, big, C, C + 3 * 4096));
	free(big);
	imgfmt__close(img);
	check_counts("a", &c, &k, first);
	ck_assert_uint_eq(c, 0);
	ck_assert_uint_eq(k, 1);
	ck_assert_ptr_nonnull(strstr(first, "checksum"));

	/* The compressed payload has its own checksum. */
	make("b");
	uint64_t e = entry("b", 2);
	data = get64("b", e) & ((1ull << 56) - 1);
	rd("b", data + 3, &x, 1);
	x ^= 1;
	wr("b", data + 3, &x, 1);
	check_counts("b", &c, &k, first);
	ck_assert_uint_eq(k, 1);
}
END_TEST

/* IMGFMT_OPEN_NO_DATA_CHECKSUMS: the caller checks content itself (a
 * package's hash tree), so a flipped data byte reads back flipped, in
 * every read path (one cluster, a run of clusters, the partial one);
 * a corrupt compressed payload is still an error from zstd, not a
 * crash; metadata stays checked; and the flag is refused read-write. */
START_TEST(no_data_checksums_flag)
{
	uint8_t b[4096], x, want;
	uint8_t *big = malloc(3 * C);

	make("a");
	uint64_t data = get64("a", entry("a", 1)) & ((1ull << 56) - 1);
	rd("a", data + 2 * 4096 + 17, &x, 1);
	want = x ^ 0x40;
	wr("a", data + 2 * 4096 + 17, &want, 1);
	imgfmt_image *img = op("a", IMGFMT_OPEN_NO_DATA_CHECKSUMS);
	OK(imgfmt__pread(img, b, sizeof(b), C + 2 * 4096));
	ck_assert_uint_eq(b[17], want);
	OK(imgfmt__pread(img, b, 10, C + 2 * 4096 + 17));
	ck_assert_uint_eq(b[0], want);
	OK(imgfmt__pread(img, big, 3 * C, 0));
	ck_assert_uint_eq(big[C + 2 * 4096 + 17], want);
	OK(imgfmt__pread(img, big, 2 * C, 4096));
	ck_assert_uint_eq(big[C - 4096 + 2 * 4096 + 17], want);
	imgfmt__close(img);
	/* Without the flag the same image still fails its checksum. */
	img = op("a", 0);
	ck_assert_int_eq(imgfmt__pread(img, b, sizeof(b), C + 2 * 4096), -EIO);
	ck_assert_ptr_nonnull(strstr(imgfmt__error(), "checksum mismatch"));
	imgfmt__close(img);

	make("b");
	uint64_t e = entry("b", 2);
	data = get64("b", e) & ((1ull << 56) - 1);
	uint32_t len = get32("b", e + 8);
	uint8_t *junk = malloc(len);
	memset(junk, 0x5a, len);
	wr("b", data, junk, len);
	free(junk);
	img = op("b", IMGFMT_OPEN_NO_DATA_CHECKSUMS);
	ck_assert_int_eq(imgfmt__pread(img, b, sizeof(b), 2 * C), -EIO);
	ck_assert_ptr_nonnull(strstr(imgfmt__error(), "decompress"));
	imgfmt__close(img);

	make("c");
	put64("c", entry("c", 2), AVD_DESC(AVD_T_COMP, (1ull << 30)));
	img = op("c", IMGFMT_OPEN_NO_DATA_CHECKSUMS);
	ck_assert_int_eq(imgfmt__pread(img, b, sizeof(b), 2 * C), -EIO);
	ck_assert_ptr_nonnull(strstr(imgfmt__error(), "overruns"));
	imgfmt__close(img);

	open_err("a", IMGFMT_OPEN_RDWR | IMGFMT_OPEN_NO_DATA_CHECKSUMS,
		 "read-only");
	free(big);
}
END_TEST

static void chain(const char *name, const char *backing)
{
	struct imgfmt_create_opts co = {
		.size = SIZE, .backing_file = backing, .backing_format = "avd",
	};
	unlink(P(name));
	OK(imgfmt__create(P(name), &co));
}

START_TEST(backing_loops_and_depth)
{
	struct imgfmt_create_opts co = { .size = SIZE };
	imgfmt_image *img;

	/* A -> B -> A: create B on a placeholder A, then replace A. */
	OK(imgfmt__create(P("A"), &co));
	chain("B", "A");
	chain("A", "B");
	ck_assert_int_eq(open_err("A", 0, "loops"), -ELOOP);
	chain("S", "S");
	ck_assert_int_eq(open_err("S", 0, "loops"), -ELOOP);

	/* A chain of IMGFMT_MAX_CHAIN images opens; one more does not. */
	char prev[16] = "", cur[16];
	for (int i = 0; i <= IMGFMT_MAX_CHAIN; i++) {
		snprintf(cur, sizeof(cur), "c%d", i);
		if (i == 0)
			OK(imgfmt__create(P(cur), &co));
		else
			chain(cur, prev);
		strcpy(prev, cur);
	}
	snprintf(cur, sizeof(cur), "c%d", IMGFMT_MAX_CHAIN - 1);
	img = op(cur, 0);
	struct imgfmt_info info;
	OK(imgfmt__info(img, &info));
	ck_assert_int_eq(info.chain_depth, IMGFMT_MAX_CHAIN);
	imgfmt__close(img);
	snprintf(cur, sizeof(cur), "c%d", IMGFMT_MAX_CHAIN);
	/* (The message nests every level's name, so only the code.) */
	ck_assert_int_eq(open_err(cur, 0, "backing file"), -ELOOP);

	/* A missing backing file names it. */
	chain("M", "missing.avd");
	open_err("M", 0, "missing.avd");
}
END_TEST

START_TEST(reserved_descriptor_bits)
{
	make("a");
	uint64_t e = entry("a", 0);
	put64("a", e, get64("a", e) | (1ull << 60));
	imgfmt_image *img = op("a", 0);
	uint8_t b[8];
	ck_assert_int_eq(imgfmt__pread(img, b, 8, 0), -EIO);
	ck_assert_ptr_nonnull(strstr(imgfmt__error(), "reserved"));
	struct imgfmt_extent ext;
	ck_assert_int_eq(imgfmt__map(img, 0, C, &ext), -EIO);
	imgfmt__close(img);
}
END_TEST

/* Garbage in the unused tail of the L1 cluster must not come to life
 * when a resize makes those entries count. */
START_TEST(resize_ignores_l1_slack)
{
	uint8_t junk[64], b[512];

	make("a");
	memset(junk, 0xee, sizeof(junk));
	wr("a", get64("a", AVD_H_L1_OFFSET) + 8, junk, sizeof(junk));
	imgfmt_image *img = op("a", IMGFMT_OPEN_RDWR);
	OK(imgfmt__resize(img, 200ull << 20));
	OK(imgfmt__pread(img, b, sizeof(b), 100ull << 20));
	for (size_t i = 0; i < sizeof(b); i++)
		ck_assert_int_eq(b[i], 0);
	OK(imgfmt__close(img));
	uint64_t c, k;
	char first[512];
	check_counts("a", &c, &k, first);
	ck_assert_msg(c + k == 0, "%s", first);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("avd_corrupt");
	TCase *tc = tcase_create("avd_corrupt");

	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, sane_image_is_clean);
	tcase_add_test(tc, truncated_header);
	tcase_add_test(tc, bad_magic_version_crc);
	tcase_add_test(tc, feature_bits);
	tcase_add_test(tc, huge_sizes);
	tcase_add_test(tc, l1_pointing_badly);
	tcase_add_test(tc, l2_entries_overlapping_metadata);
	tcase_add_test(tc, compressed_overruns);
	tcase_add_test(tc, checksum_mismatch);
	tcase_add_test(tc, no_data_checksums_flag);
	tcase_add_test(tc, backing_loops_and_depth);
	tcase_add_test(tc, reserved_descriptor_bits);
	tcase_add_test(tc, resize_ignores_l1_slack);
	suite_add_tcase(s, tc);
	return fx_run_suite(s);
}
