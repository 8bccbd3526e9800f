/*
 * test_qcow2_corrupt.c - hostile qcow2 files must fail with a clear
 * message naming the bad field, never crash (run under SANITIZE=1 too);
 * plus the streaming writer's output read back through the reader.
 *
 * Each case starts from a small valid image built here byte by byte
 * (512-byte clusters, so everything fits in a few KiB) and breaks one
 * field.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "imgfmt.h"
#include "writer.h"
#include "../../imgfmt/qcow2.h"
#include "fixture-run.h"

static char path[64];

/* Layout of the base image, in 512-byte clusters:
 *   0 header   1 L1   2 refcount table   3 refcount block
 *   4 L2 (maps the first 64 clusters)    5 data cluster (virtual 0)
 *   6 spare cluster for cases that need one */
#define CS 512u
#define IMG_CLUSTERS 7
#define VSIZE (1u << 20)

static uint8_t img[IMG_CLUSTERS * CS];

static void build_base(void)
{
	memset(img, 0, sizeof(img));
	q2_put32(img + QH_MAGIC, QCOW2_MAGIC);
	q2_put32(img + QH_VERSION, 3);
	q2_put32(img + QH_CLUSTER_BITS, 9);
	q2_put64(img + QH_SIZE, VSIZE);
	q2_put32(img + QH_L1_SIZE, VSIZE / (64 * CS)); /* 32 */
	q2_put64(img + QH_L1_OFFSET, 1 * CS);
	q2_put64(img + QH_REFTABLE_OFFSET, 2 * CS);
	q2_put32(img + QH_REFTABLE_CLUSTERS, 1);
	q2_put32(img + QH_REFCOUNT_ORDER, 4);
	q2_put32(img + QH_HEADER_LENGTH, QH_V3_LENGTH);
	/* L1[0] -> L2 at cluster 4 */
	q2_put64(img + 1 * CS, QENTRY_COPIED | 4 * CS);
	/* refcount table -> block at cluster 3; clusters 0..5 have ref 1 */
	q2_put64(img + 2 * CS, 3 * CS);
	for (int i = 0; i < 6; i++)
		q2_put16(img + 3 * CS + i * 2, 1);
	/* L2[0] -> data at cluster 5 */
	q2_put64(img + 4 * CS, QENTRY_COPIED | 5 * CS);
	memset(img + 5 * CS, 0xab, CS);
}

static void write_img(size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, img, len), (ssize_t)len);
	close(fd);
}

static void setup(void)
{
	strcpy(path, "/tmp/test_qcow2.XXXXXX");
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	close(fd);
	build_base();
}

static void teardown(void)
{
	unlink(path);
}

/* Opening must fail with `err` and a message containing `what`. */
static void expect_open_fails(int err, const char *what)
{
	imgfmt_image *im = NULL;
	int r;

	write_img(sizeof(img));
	r = imgfmt__open(path, NULL, &im);
	ck_assert_msg(r == -err, "open returned %d, wanted %d (%s)", r, -err,
		      imgfmt__error());
	ck_assert_ptr_null(im);
	ck_assert_msg(strstr(imgfmt__error(), what), "message '%s' lacks '%s'",
		      imgfmt__error(), what);
}

/* Opening works but reading virtual offset `off` fails naming `what`. */
static void expect_read_fails(uint64_t off, const char *what)
{
	imgfmt_image *im;
	uint8_t buf[CS];
	int r;

	write_img(sizeof(img));
	r = imgfmt__open(path, NULL, &im);
	ck_assert_msg(r == 0, "%s", imgfmt__error());
	r = imgfmt__pread(im, buf, sizeof(buf), off);
	ck_assert_int_lt(r, 0);
	ck_assert_msg(strstr(imgfmt__error(), what), "message '%s' lacks '%s'",
		      imgfmt__error(), what);
	imgfmt__close(im);
}

START_TEST(base_image_is_valid)
{
	imgfmt_image *im;
	struct imgfmt_check_result res;
	uint8_t buf[2 * CS];

	write_img(sizeof(img) - CS);
	ck_assert_msg(imgfmt__open(path, NULL, &im) == 0, "%s",
		      imgfmt__error());
	ck_assert_int_eq(imgfmt__pread(im, buf, sizeof(buf), 0), 0);
	for (unsigned i = 0; i < CS; i++) {
		ck_assert_int_eq(buf[i], 0xab);
		ck_assert_int_eq(buf[CS + i], 0);
	}
	ck_assert_int_eq(imgfmt__check(im, 0, &res), 0);
	ck_assert_msg(res.corruptions == 0 && res.leaks == 0, "%s",
		      res.first_problem);
	imgfmt__close(im);
}
END_TEST

START_TEST(check_finds_leaks_and_corruption)
{
	imgfmt_image *im;
	struct imgfmt_check_result res;

	q2_put16(img + 3 * CS + 6 * 2, 1);  /* cluster 6: leaked */
	q2_put16(img + 3 * CS + 5 * 2, 0);  /* data cluster: refcount 0 */
	write_img(sizeof(img));
	ck_assert_int_eq(imgfmt__open(path, NULL, &im), 0);
	ck_assert_int_eq(imgfmt__check(im, 0, &res), 0);
	ck_assert_uint_eq(res.leaks, 1);
	ck_assert_uint_eq(res.corruptions, 1);
	ck_assert_ptr_nonnull(strstr(res.first_problem, "cluster 5"));
	imgfmt__close(im);
}
END_TEST

START_TEST(truncated_header)
{
	imgfmt_image *im;
	struct imgfmt_open_opts o = { .format = "qcow2" };

	write_img(40);
	ck_assert_int_eq(imgfmt__open(path, &o, &im), -EINVAL);
	ck_assert_ptr_nonnull(strstr(imgfmt__error(), "too short"));
}
END_TEST

START_TEST(l1_past_eof)
{
	q2_put64(img + QH_L1_OFFSET, 1ull << 40);
	expect_open_fails(EINVAL, "L1 table");
}
END_TEST

START_TEST(l1_misaligned)
{
	q2_put64(img + QH_L1_OFFSET, CS + 8);
	expect_open_fails(EINVAL, "L1 table");
}
END_TEST

START_TEST(l2_overlaps_refcount_table)
{
	q2_put64(img + 1 * CS, 2 * CS);
	expect_open_fails(EINVAL, "L1 entry 0");
}
END_TEST

START_TEST(l2_overlaps_l1)
{
	q2_put64(img + 1 * CS + 8, 1 * CS);
	expect_open_fails(EINVAL, "overlaps the header, L1 or refcount");
}
END_TEST

START_TEST(l2_past_eof)
{
	q2_put64(img + 1 * CS, 1000 * CS);
	expect_open_fails(EINVAL, "past the end");
}
END_TEST

START_TEST(absurd_size)
{
	q2_put64(img + QH_SIZE, 1ull << 62);
	expect_open_fails(EFBIG, "size");
}
END_TEST

START_TEST(absurd_l1_size)
{
	q2_put32(img + QH_L1_SIZE, 0xffffffffu);
	expect_open_fails(EINVAL, "l1_size");
}
END_TEST

START_TEST(l1_too_small_for_size)
{
	q2_put32(img + QH_L1_SIZE, 1);
	expect_open_fails(EINVAL, "l1_size 1 is too small");
}
END_TEST

START_TEST(absurd_refcount_table_clusters)
{
	q2_put32(img + QH_REFTABLE_CLUSTERS, 0xffffffffu);
	expect_open_fails(EINVAL, "refcount table");
}
END_TEST

START_TEST(cluster_bits_too_large)
{
	q2_put32(img + QH_CLUSTER_BITS, 30);
	expect_open_fails(EINVAL, "cluster_bits 30");
}
END_TEST

START_TEST(cluster_bits_too_small)
{
	q2_put32(img + QH_CLUSTER_BITS, 8);
	expect_open_fails(EINVAL, "cluster_bits 8");
}
END_TEST

START_TEST(backing_name_overruns)
{
	q2_put64(img + QH_BACKING_OFFSET, 200);
	q2_put32(img + QH_BACKING_SIZE, 5000);
	expect_open_fails(EINVAL, "backing file name");
}
END_TEST

START_TEST(backing_name_offset_outside)
{
	q2_put64(img + QH_BACKING_OFFSET, 1ull << 40);
	q2_put32(img + QH_BACKING_SIZE, 4);
	expect_open_fails(EINVAL, "backing file name");
}
END_TEST

START_TEST(header_extension_overruns)
{
	q2_put32(img + QH_V3_LENGTH, QEXT_BACKING_FORMAT);
	q2_put32(img + QH_V3_LENGTH + 4, 100000);
	expect_open_fails(EINVAL, "header extension");
}
END_TEST

START_TEST(header_length_absurd)
{
	q2_put32(img + QH_HEADER_LENGTH, 1u << 30);
	expect_open_fails(EINVAL, "header_length");
}
END_TEST

START_TEST(encrypted_refused)
{
	q2_put32(img + QH_CRYPT_METHOD, 2);
	expect_open_fails(ENOTSUP, "encrypted");
}
END_TEST

START_TEST(external_data_file_refused)
{
	q2_put64(img + QH_INCOMPAT, QINCOMPAT_DATA_FILE);
	expect_open_fails(ENOTSUP, "external data file");
}
END_TEST

START_TEST(unknown_incompatible_feature_named)
{
	/* A feature-name table names bit 7 "frobnicate". */
	uint8_t *e = img + QH_V3_LENGTH;
	q2_put64(img + QH_INCOMPAT, 1ull << 7);
	q2_put32(e, QEXT_FEATURE_TABLE);
	q2_put32(e + 4, 48);
	e[8] = 0;
	e[9] = 7;
	memcpy(e + 10, "frobnicate", 10);
	expect_open_fails(ENOTSUP, "frobnicate");
}
END_TEST

START_TEST(bad_version)
{
	q2_put32(img + QH_VERSION, 4);
	expect_open_fails(ENOTSUP, "version 4");
}
END_TEST

START_TEST(unknown_compression_type)
{
	q2_put64(img + QH_INCOMPAT, QINCOMPAT_COMPRESSION);
	img[QH_COMPRESSION_TYPE] = 9;
	expect_open_fails(ENOTSUP, "compression_type");
}
END_TEST

START_TEST(data_cluster_misaligned)
{
	/* With 512-byte clusters every sector offset is aligned, so this
	 * case uses 1 KiB clusters: header, L1, refcount table, L2, data. */
	static uint8_t k[5 * 1024];
	imgfmt_image *im;
	uint8_t buf[16];
	int fd;

	memset(k, 0, sizeof(k));
	memcpy(k, img, QH_V3_LENGTH);
	q2_put32(k + QH_CLUSTER_BITS, 10);
	q2_put32(k + QH_L1_SIZE, VSIZE / (128 * 1024));
	q2_put64(k + QH_L1_OFFSET, 1024);
	q2_put64(k + QH_REFTABLE_OFFSET, 2048);
	q2_put64(k + 1024, 3072);             /* L1[0] -> L2 */
	q2_put64(k + 3072, 4096 + 512);       /* half way into a cluster */
	fd = open(path, O_WRONLY | O_TRUNC);
	ck_assert_int_eq(write(fd, k, sizeof(k)), (ssize_t)sizeof(k));
	close(fd);
	ck_assert_msg(imgfmt__open(path, NULL, &im) == 0, "%s",
		      imgfmt__error());
	ck_assert_int_lt(imgfmt__pread(im, buf, sizeof(buf), 0), 0);
	ck_assert_ptr_nonnull(strstr(imgfmt__error(), "not cluster aligned"));
	imgfmt__close(im);
}
END_TEST

START_TEST(data_cluster_past_eof)
{
	q2_put64(img + 4 * CS + 8, 5000 * CS);
	expect_read_fails(CS, "past the end");
}
END_TEST

START_TEST(compressed_length_overrun)
{
	/* Compressed cluster at cluster 6 claiming 2 sectors of garbage
	 * that runs past the end of the file. */
	unsigned shift = 62 - (9 - 8);
	q2_put64(img + 4 * CS + 8, QL2_COMPRESSED | (1ull << shift) |
		 (6 * CS + 100));
	memset(img + 6 * CS, 0x5c, CS);
	expect_read_fails(CS, "does not decompress");
}
END_TEST

START_TEST(compressed_offset_past_eof)
{
	q2_put64(img + 4 * CS + 8, QL2_COMPRESSED | (1ull << 40));
	expect_read_fails(CS, "compressed cluster");
}
END_TEST

START_TEST(zstd_garbage_refused)
{
	unsigned shift = 62 - (9 - 8);
	q2_put64(img + QH_INCOMPAT, QINCOMPAT_COMPRESSION);
	img[QH_COMPRESSION_TYPE] = QCOMP_ZSTD;
	q2_put64(img + 4 * CS + 8, QL2_COMPRESSED | (0ull << shift) |
		 (6 * CS));
	memcpy(img + 6 * CS, "\x28\xb5\x2f\xfd garbage", 12);
	expect_read_fails(CS, "does not decompress");
}
END_TEST

START_TEST(extended_l2_alloc_and_zero)
{
	/* 16 KiB clusters are the minimum for extended L2; build a 4-cluster
	 * image in a bigger buffer. */
	static uint8_t big[5 * 16384];
	uint32_t cs = 16384;
	imgfmt_image *im;
	uint8_t buf[512];
	int fd;

	memset(big, 0, sizeof(big));
	memcpy(big, img, QH_V3_LENGTH);
	q2_put32(big + QH_CLUSTER_BITS, 14);
	q2_put64(big + QH_INCOMPAT, QINCOMPAT_EXTL2);
	q2_put32(big + QH_L1_SIZE, 1);
	q2_put64(big + QH_L1_OFFSET, cs);
	q2_put64(big + QH_REFTABLE_OFFSET, 2 * cs);
	q2_put64(big + cs, 3 * cs);                    /* L2 */
	q2_put64(big + 3 * cs, 4 * cs);                /* cluster 0 data */
	q2_put64(big + 3 * cs + 8, 1ull | (1ull << 32)); /* sc 0 alloc+zero */
	fd = open(path, O_WRONLY | O_TRUNC);
	ck_assert_int_eq(write(fd, big, sizeof(big)), (ssize_t)sizeof(big));
	close(fd);
	ck_assert_msg(imgfmt__open(path, NULL, &im) == 0, "%s",
		      imgfmt__error());
	ck_assert_int_lt(imgfmt__pread(im, buf, sizeof(buf), 0), 0);
	ck_assert_ptr_nonnull(strstr(imgfmt__error(), "both"));
	/* subcluster 1 allocated in a cluster that has no offset */
	q2_put64(big + 3 * cs + 16, 0);
	q2_put64(big + 3 * cs + 24, 1ull << 1);
	imgfmt__close(im);
	fd = open(path, O_WRONLY | O_TRUNC);
	ck_assert_int_eq(write(fd, big, sizeof(big)), (ssize_t)sizeof(big));
	close(fd);
	ck_assert_int_eq(imgfmt__open(path, NULL, &im), 0);
	ck_assert_int_lt(imgfmt__pread(im, buf, sizeof(buf), cs + 512), 0);
	ck_assert_ptr_nonnull(strstr(imgfmt__error(), "no offset"));
	imgfmt__close(im);
}
END_TEST

START_TEST(writer_roundtrip)
{
	static uint8_t data[65536], out[65536 * 3];
	struct imgfmt_writer_opts wo = {
		.format = "qcow2", .size = 3 * 65536 - 1000,
		.compress = 1, .compression_type = "zstd",
	};
	struct imgfmt_chunk ch;
	struct imgfmt_check_result res;
	imgfmt_writer *w;
	imgfmt_image *im;

	unlink(path);
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7 + (i >> 9));
	ck_assert_msg(imgfmt__writer_open(path, &wo, &w) == 0, "%s",
		      imgfmt__error());
	ck_assert_int_eq(imgfmt__writer_chunk_size(w), 65536);
	ck_assert_int_eq(imgfmt__writer_encode(w, data, 0, 65536, &ch), 0);
	ck_assert_int_eq(imgfmt__writer_put(w, &ch), 0);
	imgfmt__chunk_release(&ch);
	/* skip chunk 1: stays a hole; last chunk is short */
	ck_assert_int_eq(imgfmt__writer_encode(w, data, 2 * 65536,
					       65536 - 1000, &ch), 0);
	ck_assert_int_eq(imgfmt__writer_put(w, &ch), 0);
	imgfmt__chunk_release(&ch);
	ck_assert_int_eq(imgfmt__writer_finish(w), 0);

	ck_assert_int_eq(imgfmt__open(path, NULL, &im), 0);
	ck_assert_int_eq(imgfmt__pread(im, out, wo.size, 0), 0);
	ck_assert_mem_eq(out, data, 65536);
	for (size_t i = 65536; i < 2 * 65536; i++)
		ck_assert_int_eq(out[i], 0);
	ck_assert_mem_eq(out + 2 * 65536, data, 65536 - 1000);
	ck_assert_int_eq(imgfmt__check(im, 0, &res), 0);
	ck_assert_msg(res.corruptions == 0 && res.leaks == 0, "%s",
		      res.first_problem);
	imgfmt__close(im);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("qcow2_corrupt");
	TCase *tc = tcase_create("qcow2_corrupt");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, base_image_is_valid);
	tcase_add_test(tc, check_finds_leaks_and_corruption);
	tcase_add_test(tc, truncated_header);
	tcase_add_test(tc, l1_past_eof);
	tcase_add_test(tc, l1_misaligned);
	tcase_add_test(tc, l2_overlaps_refcount_table);
	tcase_add_test(tc, l2_overlaps_l1);
	tcase_add_test(tc, l2_past_eof);
	tcase_add_test(tc, absurd_size);
	tcase_add_test(tc, absurd_l1_size);
	tcase_add_test(tc, l1_too_small_for_size);
	tcase_add_test(tc, absurd_refcount_table_clusters);
	tcase_add_test(tc, cluster_bits_too_large);
	tcase_add_test(tc, cluster_bits_too_small);
	tcase_add_test(tc, backing_name_overruns);
	tcase_add_test(tc, backing_name_offset_outside);
	tcase_add_test(tc, header_extension_overruns);
	tcase_add_test(tc, header_length_absurd);
	tcase_add_test(tc, encrypted_refused);
	tcase_add_test(tc, external_data_file_refused);
	tcase_add_test(tc, unknown_incompatible_feature_named);
	tcase_add_test(tc, bad_version);
	tcase_add_test(tc, unknown_compression_type);
	tcase_add_test(tc, data_cluster_misaligned);
	tcase_add_test(tc, data_cluster_past_eof);
	tcase_add_test(tc, compressed_length_overrun);
	tcase_add_test(tc, compressed_offset_past_eof);
	tcase_add_test(tc, zstd_garbage_refused);
	tcase_add_test(tc, extended_l2_alloc_and_zero);
	tcase_add_test(tc, writer_roundtrip);
	suite_add_tcase(s, tc);
	return fx_run_suite(s);
}
