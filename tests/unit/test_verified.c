/*
 * test_verified.c - the verified view (imgfmt__open_verified) and
 * attaching a backing image by handle.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "imgfmt.h"

#define CL 65536
#define NCL 8

static char path[64];
static uint8_t leaves[NCL][32];
static int calls;

static int verify_sha(void *opaque, uint64_t cluster, const void *data,
		      size_t len)
{
	uint8_t h[32];

	(void)opaque;
	calls++;
	if (cluster >= NCL)
		return -1;
	SHA256(data, len, h);
	return memcmp(h, leaves[cluster], 32) == 0 ? 0 : -1;
}

static void setup(void)
{
	static uint8_t buf[CL * NCL];

	strcpy(path, "/tmp/test_verified.XXXXXX");
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 31 + i / 4096);
	ck_assert_int_eq(write(fd, buf, sizeof(buf)), sizeof(buf));
	close(fd);
	for (int c = 0; c < NCL; c++)
		SHA256(buf + (size_t)c * CL, CL, leaves[c]);
	calls = 0;
}

static void teardown(void)
{
	unlink(path);
}

static imgfmt_image *open_view(void)
{
	imgfmt_image *inner, *v;

	ck_assert_int_eq(imgfmt__open(path, NULL, &inner), 0);
	ck_assert_int_eq(imgfmt__open_verified(inner, CL, verify_sha, NULL,
					       &v), 0);
	return v;
}

START_TEST(genuine_data_reads_and_is_cached)
{
	imgfmt_image *v = open_view();
	uint8_t a[4096], b[100];

	ck_assert_int_eq(imgfmt__pread(v, a, sizeof(a), CL + 4096), 0);
	ck_assert_uint_eq(a[0], (uint8_t)((CL + 4096) * 31 + (CL + 4096) / 4096));
	/* A second read in the same cluster is served from verified memory. */
	ck_assert_int_eq(imgfmt__pread(v, b, sizeof(b), CL + 10), 0);
	ck_assert_int_eq(calls, 1);
	/* A read spanning two clusters verifies both. */
	ck_assert_int_eq(imgfmt__pread(v, a, sizeof(a), 3 * CL - 100), 0);
	ck_assert_int_eq(calls, 3);
	ck_assert_int_eq(imgfmt__pwrite(v, a, 1, 0), -EROFS);
	imgfmt__close(v);
}
END_TEST

START_TEST(tampered_cluster_is_refused_others_still_read)
{
	int fd = open(path, O_WRONLY);
	imgfmt_image *v;
	uint8_t x = 0xff, buf[512];

	ck_assert_int_eq(pwrite(fd, &x, 1, 5 * CL + 777), 1);
	close(fd);
	v = open_view();
	ck_assert_int_eq(imgfmt__pread(v, buf, sizeof(buf), 5 * CL), -EBADMSG);
	ck_assert_ptr_nonnull(strstr(imgfmt__error(), "cluster 5"));
	ck_assert_int_eq(imgfmt__pread(v, buf, sizeof(buf), 4 * CL), 0);
	imgfmt__close(v);
}
END_TEST

START_TEST(bad_cluster_size_is_refused)
{
	imgfmt_image *inner, *v;

	ck_assert_int_eq(imgfmt__open(path, NULL, &inner), 0);
	ck_assert_int_eq(imgfmt__open_verified(inner, 3000, verify_sha, NULL,
					       &v), -EINVAL);
	imgfmt__close(inner);
}
END_TEST

START_TEST(attach_backing_refuses_a_second_one)
{
	imgfmt_image *a, *b, *c;

	ck_assert_int_eq(imgfmt__open(path, NULL, &a), 0);
	ck_assert_int_eq(imgfmt__open(path, NULL, &b), 0);
	ck_assert_int_eq(imgfmt__open(path, NULL, &c), 0);
	ck_assert_int_eq(imgfmt__attach_backing(a, b), 0);
	ck_assert_ptr_eq(imgfmt__backing(a), b);
	ck_assert_int_eq(imgfmt__attach_backing(a, c), -EBUSY);
	imgfmt__close(c);
	imgfmt__close(a); /* closes b too */
}
END_TEST

int main(void)
{
	Suite *s = suite_create("verified");
	TCase *tc = tcase_create("verified");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, genuine_data_reads_and_is_cached);
	tcase_add_test(tc, tampered_cluster_is_refused_others_still_read);
	tcase_add_test(tc, bad_cluster_size_is_refused);
	tcase_add_test(tc, attach_backing_refuses_a_second_one);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
