/*
 * test_raw.c - the raw driver and the core's argument checks.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "imgfmt.h"
#include "fixture-run.h"

static char path[64];

static void setup(void)
{
	strcpy(path, "/tmp/test_raw.XXXXXX");
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	close(fd);
	unlink(path);
}

static void teardown(void)
{
	unlink(path);
}

static imgfmt_image *create_open(uint64_t size)
{
	struct imgfmt_create_opts c = { .format = "raw", .size = size };
	struct imgfmt_open_opts o = { .flags = IMGFMT_OPEN_RDWR };
	imgfmt_image *img;

	ck_assert_msg(imgfmt__create(path, &c) == 0, "%s", imgfmt__error());
	ck_assert_msg(imgfmt__open(path, &o, &img) == 0, "%s", imgfmt__error());
	return img;
}

START_TEST(raw_roundtrip_and_map)
{
	imgfmt_image *img = create_open(1 << 20);
	char buf[100], out[100];
	struct imgfmt_extent e;

	memset(buf, 'x', sizeof(buf));
	ck_assert_int_eq(imgfmt__pwrite(img, buf, sizeof(buf), 70000), 0);
	ck_assert_int_eq(imgfmt__pread(img, out, sizeof(out), 70000), 0);
	ck_assert_mem_eq(buf, out, sizeof(buf));
	ck_assert_int_eq(imgfmt__map(img, 0, 1 << 20, &e), 0);
	ck_assert_int_eq(e.kind, IMGFMT_EXTENT_ZERO);
	ck_assert_uint_gt(e.length, 0);
	ck_assert_uint_le(e.length, 70000);
	ck_assert_int_eq(imgfmt__map(img, 70000, 100, &e), 0);
	ck_assert_int_eq(e.kind, IMGFMT_EXTENT_DATA);
	ck_assert_int_eq(imgfmt__flush(img), 0);
	ck_assert_int_eq(imgfmt__close(img), 0);
}
END_TEST

START_TEST(out_of_range_is_refused_with_message)
{
	imgfmt_image *img = create_open(4096);
	char buf[16];

	ck_assert_int_eq(imgfmt__pread(img, buf, 16, 4090), -EINVAL);
	ck_assert_ptr_nonnull(strstr(imgfmt__error(), "past the end"));
	ck_assert_int_eq(imgfmt__pwrite(img, buf, 16, UINT64_MAX - 4), -EINVAL);
	ck_assert_int_eq(imgfmt__resize(img, 1024), -ENOTSUP);
	imgfmt__close(img);
}
END_TEST

START_TEST(read_only_refuses_writes)
{
	imgfmt_image *img = create_open(4096);
	imgfmt__close(img);
	ck_assert_int_eq(imgfmt__open(path, NULL, &img), 0);
	ck_assert_int_eq(imgfmt__pwrite(img, "a", 1, 0), -EROFS);
	ck_assert_int_eq(imgfmt__discard(img, 0, 1), -EROFS);
	imgfmt__close(img);
}
END_TEST

START_TEST(discard_and_zeroes_read_back_zero)
{
	imgfmt_image *img = create_open(1 << 20);
	static char buf[200000], out[200000];

	memset(buf, 0xa5, sizeof(buf));
	ck_assert_int_eq(imgfmt__pwrite(img, buf, sizeof(buf), 1000), 0);
	ck_assert_int_eq(imgfmt__discard(img, 5000, 70000), 0);
	ck_assert_int_eq(imgfmt__write_zeroes(img, 100000, 3, 0), 0);
	ck_assert_int_eq(imgfmt__pread(img, out, sizeof(out), 1000), 0);
	for (size_t i = 0; i < sizeof(out); i++) {
		uint64_t off = 1000 + i;
		int zero = (off >= 5000 && off < 75000) ||
			   (off >= 100000 && off < 100003);
		ck_assert_int_eq((unsigned char)out[i], zero ? 0 : 0xa5);
	}
	imgfmt__close(img);
}
END_TEST

/* IMGFMT_OPEN_FD reads the file open as fd, whatever its name names by
 * now, keeps the caller's descriptor open, and is read-only. */
START_TEST(open_fd_reads_that_file_not_the_name)
{
	imgfmt_image *img = create_open(8192), *byfd;
	struct imgfmt_open_opts o = { .flags = IMGFMT_OPEN_FD, .format = "raw" };
	char buf[6] = { 0 };

	ck_assert_int_eq(imgfmt__pwrite(img, "first", 5, 100), 0);
	ck_assert_int_eq(imgfmt__close(img), 0);
	o.fd = open(path, O_RDONLY);
	ck_assert_int_ge(o.fd, 0);
	unlink(path);
	img = create_open(8192);   /* another file under the name */
	ck_assert_int_eq(imgfmt__pwrite(img, "other", 5, 100), 0);
	ck_assert_int_eq(imgfmt__close(img), 0);
	ck_assert_msg(imgfmt__open(path, &o, &byfd) == 0, "%s", imgfmt__error());
	ck_assert_int_eq(imgfmt__pread(byfd, buf, 5, 100), 0);
	ck_assert_str_eq(buf, "first");
	ck_assert_int_eq(imgfmt__close(byfd), 0);
	ck_assert_int_ge(fcntl(o.fd, F_GETFD), 0);   /* still the caller's */
	o.flags |= IMGFMT_OPEN_RDWR;
	ck_assert_int_eq(imgfmt__open(path, &o, &byfd), -EINVAL);
	ck_assert_ptr_nonnull(strstr(imgfmt__error(), "read-only"));
	close(o.fd);
	/* A descriptor that is not a file is named by the path given. */
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	o = (struct imgfmt_open_opts){ .flags = IMGFMT_OPEN_FD, .fd = p[0] };
	ck_assert_int_eq(imgfmt__open("the-pipe", &o, &byfd), -EINVAL);
	ck_assert_ptr_nonnull(strstr(imgfmt__error(), "the-pipe is a FIFO"));
	close(p[0]);
	close(p[1]);
}
END_TEST

START_TEST(missing_file_names_the_path)
{
	imgfmt_image *img;

	ck_assert_int_eq(imgfmt__open("/nonexistent/x.img", NULL, &img),
			 -ENOENT);
	ck_assert_ptr_nonnull(strstr(imgfmt__error(), "/nonexistent/x.img"));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("raw");
	TCase *tc = tcase_create("raw");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, raw_roundtrip_and_map);
	tcase_add_test(tc, out_of_range_is_refused_with_message);
	tcase_add_test(tc, read_only_refuses_writes);
	tcase_add_test(tc, discard_and_zeroes_read_back_zero);
	tcase_add_test(tc, missing_file_names_the_path);
	tcase_add_test(tc, open_fd_reads_that_file_not_the_name);
	suite_add_tcase(s, tc);
	return fx_run_suite(s);
}
