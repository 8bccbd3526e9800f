/*
 * test_download_sink.c - appliances/download-sink.c: what reaches the
 * file and the digest, across staging buffers, after a resumed prefix,
 * and when the file cannot be written or has shrunk.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "appliances/download-sink.h"
#include "fixture-dir.h"
#include "fixture-run.h"

#define MiB (1u << 20)

static char path[160];
static uint8_t *data;   /* DATA_BYTES of a repeatable pattern */
#define DATA_BYTES (6 * MiB + 12345)

static void setup(void)
{
	fx_dir_new("test_download_sink");
	snprintf(path, sizeof(path), "%s", fx_path("part"));
	data = malloc(DATA_BYTES);
	ck_assert_ptr_nonnull(data);
	uint32_t x = 12345;
	for (size_t i = 0; i < DATA_BYTES; i++) {
		x = x * 1103515245 + 12345;
		data[i] = (uint8_t)(x >> 16);
	}
}

static void teardown(void)
{
	free(data);
	fx_dir_remove();
}

static void sha256(const void *p, size_t n, uint8_t out[32])
{
	ck_assert_int_eq(EVP_Digest(p, n, out, NULL, EVP_sha256(), NULL), 1);
}

/* Feed data[from, to) in chunks of uneven sizes, as curl does. */
static int put_range(struct download_sink *s, size_t from, size_t to)
{
	static const size_t sizes[] = { 16384, 1, 7, 65536, 16383, 300000,
					MiB, 2 * MiB + 3 };
	size_t at = from;

	for (int k = 0; at < to; k++) {
		size_t n = sizes[k % 8];
		if (n > to - at)
			n = to - at;
		int err = download_sink__put(s, data + at, n);
		if (err)
			return err;
		at += n;
	}
	return 0;
}

static void assert_file(size_t len)
{
	uint8_t *got = malloc(len + 1);
	int fd = open(path, O_RDONLY);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(read(fd, got, len + 1), (ssize_t)len);
	close(fd);
	ck_assert_int_eq(memcmp(got, data, len), 0);
	free(got);
}

/* A download of data[0, total) whose first `have` bytes an earlier
 * attempt left in the file: the sink hashes those first and appends the
 * rest after them, whatever the staging boundaries; the file and the
 * digest must come out as the whole. */
static void download(size_t have, size_t total)
{
	struct download_sink *s;
	uint8_t got[32], want[32];
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);

	ck_assert_int_eq(write(fd, data, have), (ssize_t)have);
	ck_assert_int_eq(download_sink__start(fd, have, &s), 0);
	ck_assert_int_eq(put_range(s, have, total), 0);
	ck_assert_int_eq(download_sink__finish(s, got), 0);
	close(fd);
	sha256(data, total, want);
	ck_assert_mem_eq(got, want, 32);
	assert_file(total);
}

START_TEST(whole_download_in_order)
{
	download(0, DATA_BYTES);
}
END_TEST

START_TEST(nothing_received)
{
	download(0, 0);
}
END_TEST

START_TEST(resumed_prefix_is_hashed_first)
{
	static const size_t prefixes[] = { 1, MiB, 3 * MiB + 17 };

	for (int k = 0; k < 3; k++)
		download(prefixes[k], DATA_BYTES);
}
END_TEST

/* A file that cannot be written: the receiver hears of it (and stops
 * the transfer) by the time the staging buffers are full, and finish
 * reports it. */
START_TEST(write_failure_stops_the_receiver)
{
	struct download_sink *s;
	uint8_t got[32];
	int fd;

	close(open(path, O_RDWR | O_CREAT, 0644));
	fd = open(path, O_RDONLY);
	ck_assert_int_eq(download_sink__start(fd, 0, &s), 0);
	ck_assert_int_eq(put_range(s, 0, DATA_BYTES), EBADF);
	ck_assert_int_eq(download_sink__finish(s, got), EBADF);
	close(fd);
}
END_TEST

/* The partial file shrank between the resume decision and the hashing:
 * the digest cannot be right, so the sink fails instead of hashing less. */
START_TEST(shrunk_prefix_fails)
{
	struct download_sink *s;
	uint8_t got[32];
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);

	ck_assert_int_eq(write(fd, data, 1000), 1000);
	ck_assert_int_eq(download_sink__start(fd, 5000, &s), 0);
	ck_assert_int_eq(download_sink__finish(s, got), EIO);
	close(fd);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("download_sink");
	TCase *tc = tcase_create("download_sink");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, whole_download_in_order);
	tcase_add_test(tc, nothing_received);
	tcase_add_test(tc, resumed_prefix_is_hashed_first);
	tcase_add_test(tc, write_failure_stops_the_receiver);
	tcase_add_test(tc, shrunk_prefix_fails);
	suite_add_tcase(s, tc);
	return fx_run_suite(s);
}
