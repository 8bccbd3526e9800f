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

/* The first bytes of every other format's image, as detection knows them:
 * written into a raw image that was detected as raw, each would make the
 * next detecting open read it as that format (a qcow2 or VMDK naming host
 * files as its backing file or extents). */
static const struct { const char *bytes; size_t len; const char *format; }
foreign_heads[] = {
	{ "QFI\xfb\0\0\0\3", 8, "qcow2" },
	{ "AVD1\r\n\x1a\n", 8, "avd" },
	{ "KDMV\1\0\0\0", 8, "vmdk" },
	{ "# Disk DescriptorFile\n", 22, "vmdk" },
	{ "conectix", 8, "vhd" },
};

static void assert_detected_as(const char *want)
{
	char name[16];

	ck_assert_int_eq(imgfmt__probe(path, name, sizeof(name)), 0);
	ck_assert_str_eq(name, want);
}

START_TEST(a_detected_raw_image_refuses_another_formats_header)
{
	imgfmt_image *img = create_open(1 << 20);
	char head[64];

	for (size_t i = 0; i < sizeof(foreign_heads) / sizeof(foreign_heads[0]);
	     i++) {
		ck_assert_int_eq(imgfmt__pwrite(img, foreign_heads[i].bytes,
						foreign_heads[i].len, 0),
				 -EPERM);
		ck_assert_msg(strstr(imgfmt__error(), foreign_heads[i].format) &&
			      strstr(imgfmt__error(), "detected, not named"),
			      "%s", imgfmt__error());
		/* Anywhere past the bytes detection reads, it is just data. */
		ck_assert_int_eq(imgfmt__pwrite(img, foreign_heads[i].bytes,
						foreign_heads[i].len, 4096), 0);
	}
	ck_assert_int_eq(imgfmt__pread(img, head, sizeof(head), 0), 0);
	for (size_t i = 0; i < sizeof(head); i++)
		ck_assert_int_eq(head[i], 0);
	/* A boot sector is what belongs there. */
	ck_assert_int_eq(imgfmt__pwrite(img, "\xeb\x63\x90", 3, 0), 0);
	ck_assert_int_eq(imgfmt__close(img), 0);
	assert_detected_as("raw");
}
END_TEST

/* The check is of the bytes as they will be, not of the write alone. */
START_TEST(a_magic_completed_a_byte_at_a_time_is_refused)
{
	imgfmt_image *img = create_open(1 << 20);

	ck_assert_int_eq(imgfmt__pwrite(img, "QFI", 3, 0), 0);
	ck_assert_int_eq(imgfmt__pwrite(img, "\xfb", 1, 3), -EPERM);
	ck_assert_ptr_nonnull(strstr(imgfmt__error(), "qcow2"));
	ck_assert_int_eq(imgfmt__close(img), 0);
	assert_detected_as("raw");
}
END_TEST

/* Zeros can complete a format too: an OVA is a tar whose first member's
 * name ends in .ovf, and the name ends at its first NUL. */
START_TEST(zeroing_or_discarding_cannot_make_another_format)
{
	imgfmt_image *img = create_open(1 << 20);

	ck_assert_int_eq(imgfmt__pwrite(img, "disk.ovfXY", 10, 0), 0);
	ck_assert_int_eq(imgfmt__pwrite(img, "ustar", 5, 257), 0);
	ck_assert_int_eq(imgfmt__write_zeroes(img, 8, 2, 0), -EPERM);
	ck_assert_ptr_nonnull(strstr(imgfmt__error(), "vmdk"));
	ck_assert_int_eq(imgfmt__discard(img, 0, 65536), 0);  /* all zeros */
	ck_assert_int_eq(imgfmt__pwrite(img, "disk.ovfXY", 10, 0), 0);
	ck_assert_int_eq(imgfmt__pwrite(img, "ustar", 5, 257), 0);
	ck_assert_int_eq(imgfmt__discard(img, 8, 4), -EPERM);
	ck_assert_int_eq(imgfmt__close(img), 0);
	assert_detected_as("raw");
}
END_TEST

/* Naming the format is the user saying the bytes are data. */
START_TEST(a_raw_image_opened_as_raw_writes_any_bytes)
{
	imgfmt_image *img = create_open(1 << 20);
	struct imgfmt_open_opts o = { .flags = IMGFMT_OPEN_RDWR,
				      .format = "raw" };

	ck_assert_int_eq(imgfmt__close(img), 0);
	ck_assert_msg(imgfmt__open(path, &o, &img) == 0, "%s", imgfmt__error());
	ck_assert_int_eq(imgfmt__pwrite(img, "QFI\xfb", 4, 0), 0);
	ck_assert_int_eq(imgfmt__close(img), 0);
	assert_detected_as("qcow2");
	/* Detected as qcow2 now, and refused as a broken one, not read raw. */
	ck_assert_int_lt(imgfmt__open(path, NULL, &img), 0);
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
	tcase_add_test(tc, a_detected_raw_image_refuses_another_formats_header);
	tcase_add_test(tc, a_magic_completed_a_byte_at_a_time_is_refused);
	tcase_add_test(tc, zeroing_or_discarding_cannot_make_another_format);
	tcase_add_test(tc, a_raw_image_opened_as_raw_writes_any_bytes);
	suite_add_tcase(s, tc);
	return fx_run_suite(s);
}
