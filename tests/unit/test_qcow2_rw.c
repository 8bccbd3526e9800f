/*
 * test_qcow2_rw.c - qcow2 read-write: random writes, write-zeroes and
 * discards checked byte for byte against an in-memory model, with and
 * without a backing file, at cluster sizes that force refcount blocks and
 * refcount table growth (512 B) and the default (64 KiB).  After the run
 * the image is reopened, read back, and must check clean (no leaks, no
 * corruptions).  TEST_MODEL_SEED replays a run.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "imgfmt.h"
#include "writer.h"
#include "fixture-run.h"

#define DISK (3u << 20)

static char dir[64], path[128], bpath[128];
static uint8_t model[DISK], got[DISK];

static void setup(void)
{
	strcpy(dir, "/tmp/test_qcow2_rw.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/disk.qcow2", dir);
	snprintf(bpath, sizeof(bpath), "%s/base.raw", dir);
}

static void teardown(void)
{
	unlink(path);
	unlink(bpath);
	rmdir(dir);
}

static uint64_t rnd(uint64_t *s)
{
	uint64_t x = (*s += 0x9e3779b97f4a7c15ull);
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static uint64_t seed_from_env(void)
{
	const char *s = getenv("TEST_MODEL_SEED");
	return s ? strtoull(s, NULL, 0)
		 : (uint64_t)getpid() * 7919u ^ (uint64_t)time(NULL);
}

static void verify(imgfmt_image *img, uint64_t seed, const char *when)
{
	ck_assert_msg(imgfmt__pread(img, got, DISK, 0) == 0, "%s",
		      imgfmt__error());
	if (memcmp(got, model, DISK) != 0) {
		size_t i = 0;
		while (got[i] == model[i])
			i++;
		ck_abort_msg("seed %llu (%s): byte %zu is 0x%02x, model 0x%02x",
			     (unsigned long long)seed, when, i, got[i],
			     model[i]);
	}
}

static void run(uint32_t cluster, int with_backing)
{
	uint64_t seed = seed_from_env(), s = seed;
	static uint8_t base[DISK], wbuf[200000];
	struct imgfmt_create_opts c = {
		.format = "qcow2", .size = DISK, .cluster_size = cluster,
	};
	struct imgfmt_open_opts o = { .flags = IMGFMT_OPEN_RDWR };
	struct imgfmt_check_result res;
	imgfmt_image *img;

	memset(model, 0, sizeof(model));
	if (with_backing) {
		FILE *f = fopen(bpath, "wb");
		for (size_t i = 0; i < DISK; i++)
			base[i] = (uint8_t)rnd(&s);
		ck_assert_int_eq(fwrite(base, 1, DISK, f), DISK);
		fclose(f);
		memcpy(model, base, DISK);
		c.backing_file = "base.raw";
		c.backing_format = "raw";
	}
	ck_assert_msg(imgfmt__create(path, &c) == 0, "%s", imgfmt__error());
	ck_assert_msg(imgfmt__open(path, &o, &img) == 0, "%s",
		      imgfmt__error());
	for (int step = 0; step < 300; step++) {
		uint64_t kind = rnd(&s) % 10;
		uint64_t len = 1 + rnd(&s) % (kind < 7 ? sizeof(wbuf) : 300000);
		uint64_t off = rnd(&s) % DISK;
		if (rnd(&s) % 3 == 0) /* often cluster-aligned */
			off -= off % cluster;
		if (len > DISK - off)
			len = DISK - off;
		if (kind < 7) {
			for (uint64_t i = 0; i < len; i++)
				wbuf[i] = (uint8_t)rnd(&s);
			ck_assert_msg(imgfmt__pwrite(img, wbuf, len, off) == 0,
				      "seed %llu: %s", (unsigned long long)seed,
				      imgfmt__error());
			memcpy(model + off, wbuf, len);
		} else if (kind < 9) {
			unsigned fl = kind == 8 ? IMGFMT_ZERO_MAY_UNMAP : 0;
			ck_assert_msg(imgfmt__write_zeroes(img, off, len, fl) ==
				      0, "%s", imgfmt__error());
			memset(model + off, 0, len);
		} else {
			/* Discard: whole clusters become unallocated (the
			 * backing file shows), partial ones are zeroed. */
			ck_assert_msg(imgfmt__discard(img, off, len) == 0, "%s",
				      imgfmt__error());
			for (uint64_t p = off; p < off + len;) {
				uint64_t cs = p - p % cluster;
				uint64_t ce = cs + cluster;
				uint64_t e = ce < off + len ? ce : off + len;
				int whole = p == cs && (e == ce || e == DISK);
				if (whole && with_backing)
					memcpy(model + p, base + p, e - p);
				else
					memset(model + p, 0, e - p);
				p = e;
			}
		}
		if (step % 50 == 49) {
			verify(img, seed, "during");
			ck_assert_int_eq(imgfmt__flush(img), 0);
		}
	}
	verify(img, seed, "before close");
	ck_assert_int_eq(imgfmt__close(img), 0);

	ck_assert_int_eq(imgfmt__open(path, NULL, &img), 0);
	verify(img, seed, "after reopen");
	ck_assert_int_eq(imgfmt__check(img, 0, &res), 0);
	ck_assert_msg(res.corruptions == 0 && res.leaks == 0,
		      "seed %llu: %llu corruptions, %llu leaks: %s",
		      (unsigned long long)seed,
		      (unsigned long long)res.corruptions,
		      (unsigned long long)res.leaks, res.first_problem);
	imgfmt__close(img);
}

START_TEST(rw_512_no_backing) { run(512, 0); }
END_TEST
START_TEST(rw_512_backing) { run(512, 1); }
END_TEST
START_TEST(rw_64k_no_backing) { run(65536, 0); }
END_TEST
START_TEST(rw_64k_backing) { run(65536, 1); }
END_TEST
START_TEST(rw_4k_backing) { run(4096, 1); }
END_TEST

START_TEST(rw_refused_for_unsupported_images)
{
	/* Our own check: an image opened read-write that we cannot write
	 * safely must say why.  Fake "dirty" by setting the bit. */
	struct imgfmt_create_opts c = { .format = "qcow2", .size = 1 << 20 };
	struct imgfmt_open_opts o = { .flags = IMGFMT_OPEN_RDWR };
	imgfmt_image *img;
	uint8_t bit = 1;
	FILE *f;

	ck_assert_int_eq(imgfmt__create(path, &c), 0);
	f = fopen(path, "r+b");
	fseek(f, 72 + 7, SEEK_SET); /* incompatible_features, low byte */
	fwrite(&bit, 1, 1, f);
	fclose(f);
	ck_assert_int_eq(imgfmt__open(path, &o, &img), -EROFS);
	ck_assert_ptr_nonnull(strstr(imgfmt__error(), "dirty"));
	ck_assert_int_eq(imgfmt__open(path, NULL, &img), 0);
	imgfmt__close(img);
}
END_TEST

/* ---- compressed clusters read piecemeal (the decompressed cache) ---- */

#define ZC 65536u

/* A compressed image of DISK bytes (64 KiB clusters) through our writer:
 * text that differs in every 4 KiB block and every cluster, one cluster of
 * random bytes (stored uncompressed) and one of zeros. */
static void make_compressed(const char *ctype)
{
	struct imgfmt_writer_opts wo = {
		.format = "qcow2", .size = DISK, .cluster_size = ZC,
		.compress = 1, .compression_type = ctype,
	};
	uint64_t s = 5;
	imgfmt_writer *w;

	for (size_t i = 0; i < DISK; i++)
		model[i] = (uint8_t)('a' + (i % 13 + (i >> 12) * 5 +
					    (i >> 16) * 3) % 26);
	for (size_t i = 3 * ZC; i < 4 * ZC; i++)
		model[i] = (uint8_t)rnd(&s);
	memset(model + 6 * ZC, 0, ZC);
	unlink(path);
	ck_assert_msg(imgfmt__writer_open(path, &wo, &w) == 0, "%s",
		      imgfmt__error());
	for (uint64_t off = 0; off < DISK; off += ZC) {
		struct imgfmt_chunk ch;
		ck_assert_int_eq(imgfmt__writer_encode(w, model + off, off, ZC,
						       &ch), 0);
		ck_assert_int_eq(imgfmt__writer_put(w, &ch), 0);
		imgfmt__chunk_release(&ch);
	}
	ck_assert_msg(imgfmt__writer_finish(w) == 0, "%s", imgfmt__error());
}

static void expect_range(imgfmt_image *img, uint64_t off, size_t len)
{
	ck_assert_msg(imgfmt__pread(img, got, len, off) == 0, "%s",
		      imgfmt__error());
	for (size_t i = 0; i < len; i++)
		if (got[i] != model[off + i])
			ck_abort_msg("byte %llu is %02x, want %02x",
				     (unsigned long long)(off + i), got[i],
				     model[off + i]);
}

static imgfmt_image *open_q(unsigned flags, size_t cache)
{
	struct imgfmt_open_opts o = { .flags = flags, .cache_bytes = cache };
	imgfmt_image *img;

	ck_assert_msg(imgfmt__open(path, &o, &img) == 0, "%s",
		      imgfmt__error());
	return img;
}

/* 4 KiB at a time in random order, unaligned pieces, then a write into
 * each of a few clusters just read (so cached): the rest of the cluster
 * and the written bytes must read back, never the old bytes. */
static void compressed_rw(const char *ctype)
{
	const uint64_t nblk = DISK / 4096;
	static uint64_t perm[DISK / 4096];
	uint64_t s = 99;
	struct imgfmt_extent ext;
	uint8_t wbuf[3000];

	make_compressed(ctype);
	for (int pass = 0; pass < 2; pass++) {
		imgfmt_image *img = open_q(IMGFMT_OPEN_RDWR,
					   pass ? 4 * ZC : 0);
		ck_assert_int_eq(imgfmt__map(img, 20 * ZC, ZC, &ext), 0);
		ck_assert_uint_eq(ext.flags & IMGFMT_EXTENT_COMPRESSED,
				  IMGFMT_EXTENT_COMPRESSED);
		for (uint64_t i = 0; i < nblk; i++)
			perm[i] = i;
		for (uint64_t i = nblk - 1; i > 0; i--) {
			uint64_t j = rnd(&s) % (i + 1), t = perm[i];
			perm[i] = perm[j];
			perm[j] = t;
		}
		for (uint64_t i = 0; i < nblk; i++)
			expect_range(img, perm[i] * 4096, 4096);
		for (int i = 0; i < 200; i++) {
			uint64_t off = rnd(&s) % DISK;
			size_t len = 1 + rnd(&s) % (3 * ZC);
			expect_range(img, off, len > DISK - off ? DISK - off
								: len);
		}
		for (unsigned c = 8u * pass; c < 8u * pass + 5; c++) {
			uint64_t base = (uint64_t)c * ZC;
			expect_range(img, base + 4096, 4096);
			for (size_t i = 0; i < sizeof(wbuf); i++)
				wbuf[i] = (uint8_t)rnd(&s);
			ck_assert_int_eq(imgfmt__pwrite(img, wbuf, sizeof(wbuf),
							base + 5000 + c), 0);
			memcpy(model + base + 5000 + c, wbuf, sizeof(wbuf));
			for (uint64_t o = 0; o < ZC; o += 4096)
				expect_range(img, base + o, 4096);
		}
		expect_range(img, 12 * ZC + 100, 4096);
		ck_assert_int_eq(imgfmt__write_zeroes(img, 12 * ZC, ZC, 0), 0);
		memset(model + 12 * ZC, 0, ZC);
		expect_range(img, 12 * ZC + 100, 4096);
		ck_assert_int_eq(imgfmt__close(img), 0);
	}
	imgfmt_image *img = open_q(0, 0);
	expect_range(img, 0, DISK);
	imgfmt__close(img);
}

START_TEST(compressed_zstd_random_4k_and_writes) { compressed_rw("zstd"); }
END_TEST
START_TEST(compressed_zlib_random_4k_and_writes) { compressed_rw("zlib"); }
END_TEST

struct zreader {
	imgfmt_image *img;
	uint64_t seed;
	int bad;
};

static void *zreader(void *p)
{
	struct zreader *a = p;
	uint8_t *buf = malloc(3 * ZC);

	for (int i = 0; i < 1500; i++) {
		uint64_t off = rnd(&a->seed) % DISK, len = 4096;
		if (i % 3 == 0)
			len = 1 + rnd(&a->seed) % (3 * ZC);
		else
			off &= ~4095ull;
		if (len > DISK - off)
			len = DISK - off;
		if (imgfmt__pread(a->img, buf, len, off) < 0 ||
		    memcmp(buf, model + off, len) != 0)
			a->bad++;
	}
	free(buf);
	return NULL;
}

/* Several threads on compressed clusters, a cache of two clusters: they
 * evict each other's entries and wait on each other's fills. */
START_TEST(compressed_concurrent_readers)
{
	pthread_t t[4];
	struct zreader a[4];

	make_compressed("zstd");
	for (int pass = 0; pass < 2; pass++) {
		imgfmt_image *img = open_q(0, pass ? 0 : 4 * ZC);
		for (int i = 0; i < 4; i++) {
			a[i] = (struct zreader){ img, 17u * (i + 1) + pass, 0 };
			ck_assert_int_eq(pthread_create(&t[i], NULL, zreader,
							&a[i]), 0);
		}
		for (int i = 0; i < 4; i++) {
			pthread_join(t[i], NULL);
			ck_assert_int_eq(a[i].bad, 0);
		}
		imgfmt__close(img);
	}
}
END_TEST

static uint64_t be64_at(int fd, uint64_t off)
{
	uint8_t b[8];
	uint64_t v = 0;

	ck_assert_int_eq(pread(fd, b, 8, (off_t)off), 8);
	for (int i = 0; i < 8; i++)
		v = v << 8 | b[i];
	return v;
}

/* A compressed cluster that does not decompress fails every read and is
 * never cached; its neighbours still read. */
START_TEST(compressed_corrupt_never_cached)
{
	uint8_t bad = 0xff, buf[4096];

	make_compressed("zstd");
	int fd = open(path, O_RDWR);
	ck_assert_int_ge(fd, 0);
	/* Cluster 1's L2 entry (64 KiB clusters: size field from bit 54);
	 * 0xff over the first byte of its zstd frame's magic. */
	uint64_t l1 = be64_at(fd, be64_at(fd, 40)) & 0x00fffffffffffe00ull;
	uint64_t e = be64_at(fd, l1 + 8);
	ck_assert_msg(e & (1ull << 62), "cluster 1 is not compressed");
	ck_assert_int_eq(pwrite(fd, &bad, 1,
				(off_t)(e & ((1ull << 54) - 1))), 1);
	close(fd);

	imgfmt_image *img = open_q(0, 4 * ZC);
	for (int round = 0; round < 2; round++)
		for (uint64_t o = 0; o < ZC; o += 4096) {
			expect_range(img, o, 4096);
			for (int again = 0; again < 2; again++) {
				ck_assert_int_lt(imgfmt__pread(img, buf, 4096,
							       ZC + o), 0);
				ck_assert_ptr_nonnull(strstr(imgfmt__error(),
							     "decompress"));
			}
			expect_range(img, 2 * ZC + o, 4096);
		}
	imgfmt__close(img);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("qcow2_rw");
	TCase *tc = tcase_create("qcow2_rw");

	tcase_set_timeout(tc, 120);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, rw_512_no_backing);
	tcase_add_test(tc, rw_512_backing);
	tcase_add_test(tc, rw_64k_no_backing);
	tcase_add_test(tc, rw_64k_backing);
	tcase_add_test(tc, rw_4k_backing);
	tcase_add_test(tc, rw_refused_for_unsupported_images);
	tcase_add_test(tc, compressed_zstd_random_4k_and_writes);
	tcase_add_test(tc, compressed_zlib_random_4k_and_writes);
	tcase_add_test(tc, compressed_concurrent_readers);
	tcase_add_test(tc, compressed_corrupt_never_cached);
	suite_add_tcase(s, tc);
	return fx_run_suite(s);
}
