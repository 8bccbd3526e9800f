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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "imgfmt.h"

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

int main(void)
{
	Suite *s = suite_create("qcow2_rw");
	TCase *tc = tcase_create("qcow2_rw");
	SRunner *sr;
	int failed;

	tcase_set_timeout(tc, 120);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, rw_512_no_backing);
	tcase_add_test(tc, rw_512_backing);
	tcase_add_test(tc, rw_64k_no_backing);
	tcase_add_test(tc, rw_64k_backing);
	tcase_add_test(tc, rw_4k_backing);
	tcase_add_test(tc, rw_refused_for_unsupported_images);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
