/*
 * test_crc32c.c - every CRC-32C implementation this CPU has against the
 * portable table one: lengths around each path's block sizes and edges,
 * every alignment of the start, running checksums, and the zero-block
 * constant that sparse AVD clusters store.
 */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"
#include "fixture-run.h"

static uint8_t *buf;
#define BUF_LEN (140 * 1024)

static void setup(void)
{
	uint64_t x = 88172645463325252ull;

	buf = malloc(BUF_LEN + 64);
	ck_assert_ptr_nonnull(buf);
	for (size_t i = 0; i < BUF_LEN + 64; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		buf[i] = (uint8_t)x;
	}
}

static void teardown(void)
{
	free(buf);
}

static const char *path_name(int p)
{
	static const char *n[] = { "sw", "sse4.2", "pclmul", "vpclmul" };
	return n[p];
}

/* Lengths worth testing: all up to 1100 (the 3-stream, 64/256-byte fold
 * and tail boundaries), then around multiples of 4 KiB and larger. */
static size_t next_len(size_t n)
{
	if (n < 1100)
		return n + 1;
	if (n < 70000)
		return n + 1021;
	return n * 2 - 3;
}

START_TEST(every_path_matches_the_table)
{
	int tested = 0;

	for (int p = CRC32C_PATH_SW + 1; p < CRC32C_NPATHS; p++) {
		uint32_t got, want;
		if (crc32c__path(p, 0, buf, 4096, &got) == -1)
			continue; /* this CPU lacks it */
		tested++;
		for (size_t len = 0; len <= BUF_LEN; len = next_len(len))
			for (size_t al = 0; al < 64; al += len < 5000 ? 7 : 13) {
				uint32_t init = (uint32_t)(len * 2654435761u);
				int r = crc32c__path(p, init, buf + al, len, &got);
				if (r == -2)
					continue; /* below the path's minimum */
				ck_assert_int_eq(r, 0);
				ck_assert_int_eq(crc32c__path(CRC32C_PATH_SW, init,
							      buf + al, len,
							      &want), 0);
				ck_assert_msg(got == want,
					      "%s: len %zu align %zu: %08x, "
					      "table %08x", path_name(p), len,
					      al, got, want);
			}
	}
	/* The dispatcher, whatever it picks. */
	for (size_t len = 0; len <= BUF_LEN; len = next_len(len)) {
		uint32_t want;
		crc32c__path(CRC32C_PATH_SW, 0, buf + 3, len, &want);
		ck_assert_uint_eq(crc32c(0, buf + 3, len), want);
	}
	(void)tested;
}
END_TEST

START_TEST(vectors_and_running_checksums)
{
	static const uint8_t zeros[4096];

	ck_assert_uint_eq(crc32c(0, "123456789", 9), 0xe3069283u);
	ck_assert_uint_eq(crc32c__sw(0, "123456789", 9), 0xe3069283u);
	ck_assert_uint_eq(crc32c(0, "", 0), 0);
	/* What FORMAT.md gives for an untouched sub-block of a sparse
	 * cluster. */
	ck_assert_uint_eq(crc32c(0, zeros, sizeof(zeros)), 0x98f94189u);
	ck_assert_uint_eq(crc32c__sw(0, zeros, sizeof(zeros)), 0x98f94189u);
	for (size_t cut = 0; cut <= 9000; cut += 1 + cut / 3)
		ck_assert_uint_eq(crc32c(crc32c(0, buf, cut), buf + cut,
					 9000 - cut),
				  crc32c(0, buf, 9000));
}
END_TEST

START_TEST(unknown_path_is_refused)
{
	uint32_t out;

	ck_assert_int_eq(crc32c__path(CRC32C_NPATHS, 0, buf, 4096, &out), -1);
	ck_assert_int_eq(crc32c__path(-1, 0, buf, 4096, &out), -1);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("crc32c");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, every_path_matches_the_table);
	tcase_add_test(tc, vectors_and_running_checksums);
	tcase_add_test(tc, unknown_path_is_refused);
	suite_add_tcase(s, tc);
	return fx_run_suite(s);
}
