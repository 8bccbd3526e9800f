/*
 * test_model.c - model-based randomized test of every writable format.
 *
 * Thousands of random operations (writes of random length and alignment,
 * zero writes, discards, flushes, reopens, resizes) are applied both to an
 * image and to a plain in-memory buffer that is the model of what the disk
 * must read back.  After every step the touched range and a random range
 * are compared, and the whole disk is compared every so often.  The same
 * runs with an overlay on a backing file, where the model starts as the
 * backing file's content.
 *
 * The seed is printed on failure and can be fixed with TEST_MODEL_SEED to
 * replay a run; TEST_MODEL_OPS changes the number of operations.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "imgfmt.h"
#include "fixture-run.h"

static char dir[64];
static char img_path[128], backing_path[128];

static void setup(void)
{
	strcpy(dir, "/tmp/test_model.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(img_path, sizeof(img_path), "%s/disk", dir);
	snprintf(backing_path, sizeof(backing_path), "%s/base.raw", dir);
}

static void teardown(void)
{
	unlink(img_path);
	unlink(backing_path);
	rmdir(dir);
}

/* xorshift64*: reproducible from the printed seed. */
static uint64_t rng_state;
static uint64_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ull;
}
static uint64_t rnd_below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

static uint64_t seed_from_env(void)
{
	const char *s = getenv("TEST_MODEL_SEED");
	if (s)
		return strtoull(s, NULL, 0);
	return (uint64_t)getpid() * 0x9e3779b97f4a7c15ull ^ (uint64_t)time(NULL);
}

static int ops_from_env(int dflt)
{
	const char *s = getenv("TEST_MODEL_OPS");
	return s ? atoi(s) : dflt;
}

/* Can this build create and write images of `fmt`? (avd arrives as its
 * own module; the test covers whatever formats exist.) */
static int format_writable(const char *fmt)
{
	for (const char *const *f = imgfmt__formats(); *f; f++)
		if (strcmp(*f, fmt) == 0)
			return 1;
	return 0;
}

struct model {
	uint8_t *buf;
	uint64_t size;
	uint32_t cluster;      /* for discard semantics */
	int has_backing;
	const uint8_t *backing; /* backing content (size backing_size) */
	uint64_t backing_size;
};

static void compare_range(imgfmt_image *img, struct model *m, uint64_t off,
			  uint64_t len, uint64_t seed, int step,
			  const char *what)
{
	static uint8_t got[4 << 20];

	while (len > 0) {
		uint64_t n = len < sizeof(got) ? len : sizeof(got);
		int r = imgfmt__pread(img, got, n, off);
		ck_assert_msg(r == 0, "seed %llu step %d (%s): read %llu+%llu "
			      "failed: %s", (unsigned long long)seed, step,
			      what, (unsigned long long)off,
			      (unsigned long long)n, imgfmt__error());
		if (memcmp(got, m->buf + off, n) != 0) {
			uint64_t i = 0;
			while (got[i] == m->buf[off + i])
				i++;
			ck_abort_msg("seed %llu step %d (%s): byte %llu is "
				     "0x%02x, model says 0x%02x",
				     (unsigned long long)seed, step, what,
				     (unsigned long long)(off + i), got[i],
				     m->buf[off + i]);
		}
		off += n;
		len -= n;
	}
}

/* What a discard leaves: whole clusters become unallocated (the backing
 * file shows through, zeros without one); partial clusters read zeros. */
static void model_discard(struct model *m, uint64_t off, uint64_t len)
{
	uint64_t c = m->cluster ? m->cluster : 1;
	uint64_t first_full = (off + c - 1) / c * c;
	uint64_t end = off + len;
	uint64_t last_full = end / c * c;

	memset(m->buf + off, 0, len);
	if (!m->has_backing || first_full >= last_full)
		return;
	for (uint64_t o = first_full; o < last_full && o < m->backing_size;
	     o++)
		m->buf[o] = m->backing[o];
}

static imgfmt_image *reopen(imgfmt_image *img, const char *path)
{
	struct imgfmt_open_opts o = { .flags = IMGFMT_OPEN_RDWR,
				      .cache_bytes = 256 * 1024 };
	if (img)
		ck_assert_msg(imgfmt__close(img) == 0, "%s", imgfmt__error());
	ck_assert_msg(imgfmt__open(path, &o, &img) == 0, "%s",
		      imgfmt__error());
	return img;
}

static void run_model(const char *fmt, uint32_t cluster, int with_backing,
		      int nops)
{
	uint64_t seed = seed_from_env();
	uint64_t size = 8u << 20;
	struct model m = { 0 };
	uint8_t *wbuf;
	imgfmt_image *img;
	struct imgfmt_info info;

	rng_state = seed | 1;
	m.size = size;
	m.buf = calloc(1, 64u << 20);
	wbuf = malloc(1u << 20);
	ck_assert_ptr_nonnull(m.buf);

	struct imgfmt_create_opts c = { .format = fmt, .size = size,
					.cluster_size = cluster };
	if (with_backing) {
		/* A backing file shorter than the overlay, so reads past its
		 * end must come back as zeros. */
		uint8_t *b = malloc(size);
		m.backing_size = size - 3 * 65536 - 512;
		for (uint64_t i = 0; i < m.backing_size; i++)
			b[i] = (uint8_t)(rnd() >> 56) | 1;
		FILE *f = fopen(backing_path, "w");
		ck_assert_ptr_nonnull(f);
		ck_assert_uint_eq(fwrite(b, 1, m.backing_size, f),
				  m.backing_size);
		fclose(f);
		memcpy(m.buf, b, m.backing_size);
		m.backing = b;
		m.has_backing = 1;
		c.backing_file = "base.raw";
		c.backing_format = "raw";
	}
	ck_assert_msg(imgfmt__create(img_path, &c) == 0, "%s: %s", fmt,
		      imgfmt__error());
	img = reopen(NULL, img_path);
	ck_assert_int_eq(imgfmt__info(img, &info), 0);
	m.cluster = info.cluster_size;
	ck_assert_uint_eq(info.virtual_size, size);

	for (int step = 0; step < nops; step++) {
		uint64_t op = rnd_below(100);
		uint64_t len, off;

		/* Lengths: mostly small and unaligned, sometimes spanning
		 * several clusters, sometimes exactly one cluster. */
		switch (rnd_below(4)) {
		case 0: len = 1 + rnd_below(512); break;
		case 1: len = 1 + rnd_below(8192); break;
		case 2: len = m.cluster ? m.cluster : 65536; break;
		default: len = 1 + rnd_below(300000); break;
		}
		if (len > m.size)
			len = m.size;
		off = rnd_below(m.size - len + 1);
		if (rnd_below(3) == 0 && m.cluster)
			off = off / m.cluster * m.cluster;

		if (op < 45) {
			int zeros = rnd_below(8) == 0;
			for (uint64_t i = 0; i < len; i++)
				wbuf[i] = zeros ? 0 : (uint8_t)(rnd() >> 32);
			ck_assert_msg(imgfmt__pwrite(img, wbuf, len, off) == 0,
				      "seed %llu step %d: write: %s",
				      (unsigned long long)seed, step,
				      imgfmt__error());
			memcpy(m.buf + off, wbuf, len);
		} else if (op < 55) {
			ck_assert_msg(imgfmt__write_zeroes(img, off, len,
				rnd_below(2) ? IMGFMT_ZERO_MAY_UNMAP : 0) == 0,
				"seed %llu step %d: write_zeroes: %s",
				(unsigned long long)seed, step,
				imgfmt__error());
			memset(m.buf + off, 0, len);
		} else if (op < 63) {
			int r = imgfmt__discard(img, off, len);
			ck_assert_msg(r == 0, "seed %llu step %d: discard: %s",
				      (unsigned long long)seed, step,
				      imgfmt__error());
			model_discard(&m, off, len);
		} else if (op < 68) {
			ck_assert_msg(imgfmt__flush(img) == 0, "%s",
				      imgfmt__error());
		} else if (op < 70) {
			img = reopen(img, img_path);
		} else if (op < 71 && m.size < (48u << 20)) {
			uint64_t grow = rnd_below(3 << 20) + 1;
			int r = imgfmt__resize(img, m.size + grow);
			if (r == -ENOTSUP)
				continue;
			ck_assert_msg(r == 0, "seed %llu step %d: resize: %s",
				      (unsigned long long)seed, step,
				      imgfmt__error());
			/* New space reads as zeros, even over a backing file
			 * that is longer than the old size (ours is not). */
			m.size += grow;
		} else {
			/* A read of a random range. */
			compare_range(img, &m, off, len, seed, step, "read");
			continue;
		}
		compare_range(img, &m, off, len, seed, step, "after op");
		uint64_t ro = rnd_below(m.size);
		compare_range(img, &m, ro, rnd_below(m.size - ro) % 70000 + 0,
			      seed, step, "random range");
		if (step % 500 == 499)
			compare_range(img, &m, 0, m.size, seed, step, "full");
	}
	img = reopen(img, img_path);
	compare_range(img, &m, 0, m.size, seed, nops, "after final reopen");

	struct imgfmt_check_result res;
	ck_assert_int_eq(imgfmt__check(img, 0, &res), 0);
	ck_assert_msg(res.corruptions == 0 && res.checksum_errors == 0,
		      "seed %llu: check found %llu corruptions, %llu checksum "
		      "errors: %s", (unsigned long long)seed,
		      (unsigned long long)res.corruptions,
		      (unsigned long long)res.checksum_errors,
		      res.first_problem);
	ck_assert_int_eq(imgfmt__close(img), 0);
	free(m.buf);
	free((void *)m.backing);
	free(wbuf);
}

START_TEST(model_raw)
{
	run_model("raw", 0, 0, ops_from_env(2000));
}
END_TEST

static const uint32_t avd_clusters[] = { 4096, 65536, 1u << 20 };

START_TEST(model_avd)
{
	if (!format_writable("avd"))
		return;
	run_model("avd", avd_clusters[_i], 0, ops_from_env(3000));
}
END_TEST

START_TEST(model_avd_backing)
{
	if (!format_writable("avd"))
		return;
	run_model("avd", avd_clusters[_i], 1, ops_from_env(3000));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("model");
	TCase *tc = tcase_create("model");

	tcase_set_timeout(tc, 600);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, model_raw);
	tcase_add_loop_test(tc, model_avd, 0, 3);
	tcase_add_loop_test(tc, model_avd_backing, 0, 3);
	suite_add_tcase(s, tc);
	return fx_run_suite(s);
}
