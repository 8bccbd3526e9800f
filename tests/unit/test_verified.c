/*
 * test_verified.c - the verified view (imgfmt__open_verified) and
 * attaching a backing image by handle.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "imgfmt.h"
#include "fixture-run.h"

#define CL 65536
#define NCL 8
#define TAIL 1000        /* the disk ends with a short cluster NCL */
#define ZCL 6            /* cluster 6 is genuinely all zeros */
#define SIZE ((size_t)CL * NCL + TAIL)

static char path[64];
static uint8_t leaves[NCL + 1][32];
static uint8_t zero_leaf[32], zero_tail_leaf[32];
static int calls;                 /* verify calls, all clusters */
static int worker_calls;          /* ... made by the view's worker */
static __thread int test_reader;  /* this thread reads for the test */
static int calls_for[NCL + 1];    /* ... per cluster */
static uint8_t genuine[SIZE];

#define PART 4096
#define NPART (CL / PART)
static uint8_t part_leaves[NCL][NPART][32];  /* SHA-256 of each part */
static int part_calls;
static int unsplittable = -1;   /* verify_part says 1 for this cluster */

static int verify_sha(void *opaque, uint64_t cluster, const void *data,
		      size_t len)
{
	uint8_t h[32];

	(void)opaque;
	__atomic_fetch_add(&calls, 1, __ATOMIC_RELAXED);
	if (!test_reader)
		__atomic_fetch_add(&worker_calls, 1, __ATOMIC_RELAXED);
	if (cluster > NCL)
		return -1;
	__atomic_fetch_add(&calls_for[cluster], 1, __ATOMIC_RELAXED);
	SHA256(data, len, h);
	return memcmp(h, leaves[cluster], 32) == 0 ? 0 : -1;
}

/* As package.c does it: the leaf says whether the cluster is zeros. */
static int zero_sha(void *opaque, uint64_t cluster, size_t len)
{
	(void)opaque;
	if (cluster > NCL)
		return 0;
	return memcmp(leaves[cluster], len == CL ? zero_leaf : zero_tail_leaf,
		      32) == 0 && len == (cluster == NCL ? TAIL : CL);
}

/* A test-side part checker (a package checks BLAKE3 subtree CVs; any
 * per-part hash serves the view's logic). */
static int verify_part_sha(void *opaque, uint64_t cluster, size_t off,
			   const void *data, size_t len)
{
	const uint8_t *p = data;
	uint8_t h[32];

	(void)opaque;
	__atomic_fetch_add(&part_calls, 1, __ATOMIC_RELAXED);
	if (cluster >= NCL || off % PART || off + len > CL || len % PART)
		return -1;
	if ((int)cluster == unsplittable)
		return 1;
	for (size_t j = off / PART; len; j++, p += PART, len -= PART) {
		SHA256(p, PART, h);
		if (memcmp(h, part_leaves[cluster][j], 32) != 0)
			return -1;
	}
	return 0;
}

static void setup(void)
{
	static uint8_t zeros[CL];

	strcpy(path, "/tmp/test_verified.XXXXXX");
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	for (size_t i = 0; i < SIZE; i++)
		genuine[i] = (uint8_t)(i * 31 + i / 4096);
	memset(genuine + (size_t)ZCL * CL, 0, CL);
	ck_assert_int_eq(write(fd, genuine, SIZE), SIZE);
	close(fd);
	for (int c = 0; c <= NCL; c++)
		SHA256(genuine + (size_t)c * CL, c == NCL ? TAIL : CL,
		       leaves[c]);
	for (int c = 0; c < NCL; c++)
		for (int j = 0; j < NPART; j++)
			SHA256(genuine + (size_t)c * CL + (size_t)j * PART, PART,
			       part_leaves[c][j]);
	part_calls = 0;
	unsplittable = -1;
	SHA256(zeros, CL, zero_leaf);
	SHA256(zeros, TAIL, zero_tail_leaf);
	calls = 0;
	worker_calls = 0;
	test_reader = 1;
	memset(calls_for, 0, sizeof(calls_for));
}

static void teardown(void)
{
	unlink(path);
}

static imgfmt_image *open_view_zero(imgfmt_verify_zero_fn z)
{
	imgfmt_image *inner, *v;

	ck_assert_int_eq(imgfmt__open(path, NULL, &inner), 0);
	ck_assert_int_eq(imgfmt__open_verified(inner, CL, verify_sha, z, NULL,
					       &v), 0);
	return v;
}

static imgfmt_image *open_view(void)
{
	return open_view_zero(NULL);
}

/* Change one byte of the file (an attacker editing the package). */
static void tamper(uint64_t off, uint8_t x)
{
	int fd = open(path, O_WRONLY);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, &x, 1, (off_t)off), 1);
	close(fd);
}

static int all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

START_TEST(genuine_data_reads_and_is_cached)
{
	imgfmt_image *v = open_view();
	uint8_t a[4096], b[100];

	ck_assert_int_eq(imgfmt__pread(v, a, sizeof(a), CL + 4096), 0);
	ck_assert_int_eq(memcmp(a, genuine + CL + 4096, sizeof(a)), 0);
	/* A second read in the same cluster is served from verified memory
	 * (read-ahead may verify other clusters meanwhile, never this one
	 * twice). */
	ck_assert_int_eq(imgfmt__pread(v, b, sizeof(b), CL + 10), 0);
	ck_assert_int_eq(memcmp(b, genuine + CL + 10, sizeof(b)), 0);
	ck_assert_int_eq(__atomic_load_n(&calls_for[1], __ATOMIC_RELAXED), 1);
	/* A read spanning two clusters verifies both. */
	ck_assert_int_eq(imgfmt__pread(v, a, sizeof(a), 3 * CL - 100), 0);
	ck_assert_int_eq(memcmp(a, genuine + 3 * CL - 100, sizeof(a)), 0);
	ck_assert_int_ge(__atomic_load_n(&calls_for[2], __ATOMIC_RELAXED), 1);
	ck_assert_int_ge(__atomic_load_n(&calls_for[3], __ATOMIC_RELAXED), 1);
	ck_assert_int_eq(imgfmt__pwrite(v, a, 1, 0), -EROFS);
	imgfmt__close(v);
}
END_TEST

START_TEST(tampered_cluster_is_refused_others_still_read)
{
	imgfmt_image *v;
	uint8_t buf[512];

	tamper(5 * CL + 777, (uint8_t)~genuine[5 * CL + 777]);
	v = open_view();
	memset(buf, 0xaa, sizeof(buf));
	ck_assert_int_eq(imgfmt__pread(v, buf, sizeof(buf), 5 * CL), -EBADMSG);
	ck_assert_ptr_nonnull(strstr(imgfmt__error(), "cluster 5"));
	ck_assert(all_zero(buf, sizeof(buf)));
	ck_assert_int_eq(imgfmt__pread(v, buf, sizeof(buf), 4 * CL), 0);
	ck_assert_int_eq(memcmp(buf, genuine + 4 * CL, sizeof(buf)), 0);
	imgfmt__close(v);
}
END_TEST

/* Whole clusters are read into the caller's buffer and checked there: a
 * bad one fails the read and leaves no byte of the file in the buffer,
 * not even of the clusters that passed. */
START_TEST(whole_cluster_read_with_a_tampered_cluster_zeroes_the_buffer)
{
	static uint8_t buf[4 * CL];
	imgfmt_image *v;

	tamper(5 * CL + 3, (uint8_t)~genuine[5 * CL + 3]);
	v = open_view();
	/* Aligned: clusters 3, 4, 5, 6 straight into buf. */
	memset(buf, 0xaa, sizeof(buf));
	ck_assert_int_eq(imgfmt__pread(v, buf, 4 * CL, 3 * CL), -EBADMSG);
	ck_assert_ptr_nonnull(strstr(imgfmt__error(), "cluster 5"));
	ck_assert(all_zero(buf, sizeof(buf)));
	/* Unaligned: part of 2, whole 3 4 5, part of 6. */
	memset(buf, 0xaa, sizeof(buf));
	ck_assert_int_eq(imgfmt__pread(v, buf, 4 * CL, 2 * CL + 5), -EBADMSG);
	ck_assert(all_zero(buf, sizeof(buf)));
	/* The intact clusters around it still read, directly too. */
	ck_assert_int_eq(imgfmt__pread(v, buf, 2 * CL, 3 * CL), 0);
	ck_assert_int_eq(memcmp(buf, genuine + 3 * CL, 2 * CL), 0);
	ck_assert_int_eq(imgfmt__pread(v, buf, 2 * CL, 6 * CL), 0);
	ck_assert_int_eq(memcmp(buf, genuine + 6 * CL, 2 * CL), 0);
	imgfmt__close(v);
}
END_TEST

/* A cluster whose leaf is the zero leaf is served as zeros without being
 * read or hashed, whatever the file holds there. */
START_TEST(zero_leaf_clusters_are_served_without_hashing)
{
	static uint8_t buf[3 * CL];
	imgfmt_image *v;

	tamper(ZCL * CL + 100, 0x55); /* not read: the leaf says zeros */
	v = open_view_zero(zero_sha);
	memset(buf, 0xaa, sizeof(buf));
	ck_assert_int_eq(imgfmt__pread(v, buf, 3 * CL, 5 * CL), 0);
	ck_assert_int_eq(memcmp(buf, genuine + 5 * CL, 3 * CL), 0);
	ck_assert(all_zero(buf + CL, CL));
	ck_assert_int_eq(imgfmt__pread(v, buf, 4096, ZCL * CL + 8192), 0);
	ck_assert(all_zero(buf, 4096));
	ck_assert_int_eq(__atomic_load_n(&calls_for[ZCL], __ATOMIC_RELAXED), 0);
	imgfmt__close(v);
}
END_TEST

/* An attacker zeroes a data cluster in the file (or marks it unallocated
 * in the image's metadata): its leaf is not the zero leaf, so it is read,
 * hashed, and refused. */
START_TEST(data_cluster_made_zero_fails_verification)
{
	static uint8_t zeros[CL], buf[2 * CL];
	imgfmt_image *v;
	int fd = open(path, O_WRONLY);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, zeros, CL, 2 * CL), CL);
	ck_assert_int_eq(fallocate(fd, FALLOC_FL_PUNCH_HOLE |
				   FALLOC_FL_KEEP_SIZE, 2 * CL, CL) == 0 ||
			 errno == EOPNOTSUPP, 1);
	close(fd);
	v = open_view_zero(zero_sha);
	memset(buf, 0xaa, sizeof(buf));
	ck_assert_int_eq(imgfmt__pread(v, buf, 2 * CL, 2 * CL), -EBADMSG);
	ck_assert_ptr_nonnull(strstr(imgfmt__error(), "cluster 2"));
	ck_assert(all_zero(buf, sizeof(buf)));
	ck_assert_int_eq(imgfmt__pread(v, buf, 4096, 2 * CL + 4096), -EBADMSG);
	imgfmt__close(v);
}
END_TEST

/* The last cluster is TAIL bytes: read whole, in part, tampered, and with
 * the zero check (its zero leaf is that of TAIL zero bytes). */
START_TEST(short_last_cluster)
{
	static uint8_t buf[SIZE];
	imgfmt_image *v = open_view_zero(zero_sha);

	ck_assert_int_eq(imgfmt__pread(v, buf, SIZE, 0), 0);
	ck_assert_int_eq(memcmp(buf, genuine, SIZE), 0);
	ck_assert_int_eq(imgfmt__pread(v, buf, 10, SIZE - 10), 0);
	ck_assert_int_eq(memcmp(buf, genuine + SIZE - 10, 10), 0);
	ck_assert_int_eq(imgfmt__pread(v, buf, TAIL, (uint64_t)NCL * CL), 0);
	ck_assert_int_eq(memcmp(buf, genuine + (size_t)NCL * CL, TAIL), 0);
	imgfmt__close(v);

	tamper(SIZE - 1, (uint8_t)~genuine[SIZE - 1]);
	v = open_view_zero(zero_sha);
	ck_assert_int_eq(imgfmt__pread(v, buf, 10, SIZE - 10), -EBADMSG);
	ck_assert_ptr_nonnull(strstr(imgfmt__error(), "cluster 8"));
	memset(buf, 0xaa, sizeof(buf));
	ck_assert_int_eq(imgfmt__pread(v, buf, 2 * CL + TAIL,
				       (uint64_t)(NCL - 2) * CL), -EBADMSG);
	ck_assert(all_zero(buf, 2 * CL + TAIL));
	imgfmt__close(v);

	/* A genuinely zero tail: its leaf is the TAIL-byte zero leaf. */
	memcpy(leaves[NCL], zero_tail_leaf, 32);
	v = open_view_zero(zero_sha);
	ck_assert_int_eq(imgfmt__pread(v, buf, TAIL, (uint64_t)NCL * CL), 0);
	ck_assert(all_zero(buf, TAIL));
	imgfmt__close(v);
}
END_TEST

/* A reader going forward 4 KiB at a time has the next clusters verified
 * ahead of it; a tampered one among them is never served, the clusters
 * before it are, and so are those after it. */
START_TEST(read_ahead_does_not_serve_a_tampered_cluster)
{
	uint8_t buf[4096];
	imgfmt_image *v;

	tamper(3 * CL + 5000, (uint8_t)~genuine[3 * CL + 5000]);
	v = open_view_zero(zero_sha);
	for (int pass = 0; pass < 2; pass++) {
		for (uint64_t off = 0; off + sizeof(buf) <= SIZE;
		     off += sizeof(buf)) {
			int bad = off / CL == 3;
			memset(buf, 0xaa, sizeof(buf));
			ck_assert_int_eq(imgfmt__pread(v, buf, sizeof(buf), off),
					 bad ? -EBADMSG : 0);
			if (bad)
				ck_assert(all_zero(buf, sizeof(buf)));
			else
				ck_assert_int_eq(memcmp(buf, genuine + off,
							sizeof(buf)), 0);
		}
	}
	/* Each intact data cluster was verified once: hits afterwards. */
	for (int c = 0; c < NCL; c++)
		if (c != 3 && c != ZCL)
			ck_assert_int_eq(__atomic_load_n(&calls_for[c],
						__ATOMIC_RELAXED), 1);
	imgfmt__close(v);
}
END_TEST

/* Two readers going forward at once, their 4 KiB reads interleaved (an
 * NBD client's requests spread over the server's threads look like this):
 * read-ahead still follows each, so the worker verifies clusters ahead of
 * them; with only the last read remembered it never would. */
START_TEST(read_ahead_follows_interleaved_streams)
{
	uint8_t buf[4096];
	imgfmt_image *v = open_view_zero(zero_sha);
	/* Neither starts at 0, where a view's first read looks sequential. */
	uint64_t a = CL, b = 5 * (uint64_t)CL;

	while (a < 4 * (uint64_t)CL) {
		ck_assert_int_eq(imgfmt__pread(v, buf, sizeof(buf), a), 0);
		ck_assert_int_eq(memcmp(buf, genuine + a, sizeof(buf)), 0);
		ck_assert_int_eq(imgfmt__pread(v, buf, sizeof(buf), b), 0);
		ck_assert_int_eq(memcmp(buf, genuine + b, sizeof(buf)), 0);
		a += sizeof(buf);
		b += sizeof(buf);
		/* A client's requests are tens of microseconds apart; in a
		 * tight loop of cache hits the reader would reach the next
		 * cluster before the worker is even scheduled. */
		usleep(100);
	}
	imgfmt__close(v);   /* joins the worker: its counts are final */
	ck_assert_int_gt(__atomic_load_n(&worker_calls, __ATOMIC_RELAXED), 0);
	/* Still each cluster verified once. */
	for (int c = 0; c < NCL; c++)
		ck_assert_int_le(__atomic_load_n(&calls_for[c],
						 __ATOMIC_RELAXED), 1);
}
END_TEST

struct reader {
	imgfmt_image *v;
	unsigned seed;
	int bad_ok, bad_fail, good_ok, good_fail, mismatch, not_zeroed;
};

/* Random reads of random sizes (small ones going forward, some of
 * several clusters), checked against the genuine bytes: a read touching
 * cluster 5 must fail with a zeroed buffer, any other must succeed. */
static void *reader_main(void *arg)
{
	struct reader *r = arg;
	static const size_t sizes[] = { 512, 4096, 4096, 4096, 65536,
					3 * 65536, 100000 };
	uint8_t *buf = malloc(3 * CL + 100000);
	uint64_t off = 0;

	for (int i = 0; i < 400; i++) {
		size_t len = sizes[rand_r(&r->seed) % 7];
		if (rand_r(&r->seed) % 4 == 0)
			off = (uint64_t)rand_r(&r->seed) % SIZE;
		if (rand_r(&r->seed) % 2)
			off -= off % 4096;
		if (off >= SIZE)
			off = 0;
		if (len > SIZE - off)
			len = SIZE - off;
		int bad = off < 6 * (uint64_t)CL && off + len > 5 * (uint64_t)CL;
		memset(buf, 0xaa, len);
		int rc = imgfmt__pread(r->v, buf, len, off);
		if (bad) {
			rc == -EBADMSG ? r->bad_fail++ : r->bad_ok++;
			if (!all_zero(buf, len))
				r->not_zeroed++;
		} else {
			rc == 0 ? r->good_ok++ : r->good_fail++;
			if (rc == 0 && memcmp(buf, genuine + off, len))
				r->mismatch++;
		}
		off += len;
	}
	free(buf);
	return NULL;
}

/* Several threads reading at once (as the NBD server does) over intact
 * clusters and a tampered one, with read-ahead and shared requests
 * racing: every read gets exactly the genuine bytes or fails. */
START_TEST(concurrent_readers_over_tampered_and_intact_clusters)
{
	enum { N = 4 };
	struct reader r[N];
	pthread_t t[N];
	imgfmt_image *v;

	tamper(5 * CL + 1, (uint8_t)~genuine[5 * CL + 1]);
	v = open_view_zero(zero_sha);
	for (int i = 0; i < N; i++) {
		memset(&r[i], 0, sizeof(r[i]));
		r[i].v = v;
		r[i].seed = 1234 + i;
		ck_assert_int_eq(pthread_create(&t[i], NULL, reader_main,
						&r[i]), 0);
	}
	int good = 0, bad = 0;
	for (int i = 0; i < N; i++) {
		pthread_join(t[i], NULL);
		ck_assert_int_eq(r[i].bad_ok, 0);
		ck_assert_int_eq(r[i].good_fail, 0);
		ck_assert_int_eq(r[i].mismatch, 0);
		ck_assert_int_eq(r[i].not_zeroed, 0);
		good += r[i].good_ok;
		bad += r[i].bad_fail;
	}
	/* Both kinds of read happened. */
	ck_assert_int_gt(good, 0);
	ck_assert_int_gt(bad, 0);
	imgfmt__close(v);
}
END_TEST

START_TEST(bad_cluster_size_is_refused)
{
	imgfmt_image *inner, *v;

	ck_assert_int_eq(imgfmt__open(path, NULL, &inner), 0);
	ck_assert_int_eq(imgfmt__open_verified(inner, 3000, verify_sha, NULL, NULL,
					       &v), -EINVAL);
	imgfmt__close(inner);
}
END_TEST

static imgfmt_image *open_view_parts(void)
{
	imgfmt_image *v = open_view_zero(zero_sha);

	ck_assert_int_eq(imgfmt__verified_parts(v, PART, verify_part_sha), 0);
	return v;
}

/* A random small read checks only the parts it touches: aligned, inside
 * one part, across parts; the short last cluster (one part) whole. */
START_TEST(random_small_reads_are_checked_by_parts)
{
	static const struct { uint64_t off; size_t len; } reads[] = {
		/* none within a cluster of another: that would look like a
		 * stream going forward */
		{ 7 * (uint64_t)CL + 2 * PART, PART },
		{ 1 * (uint64_t)CL + 5000, 100 },
		{ 4 * (uint64_t)CL + 2048, 2 * PART },
		{ 2 * (uint64_t)CL + CL - PART, PART },
	};
	uint8_t buf[2 * PART];
	imgfmt_image *v = open_view_parts();

	for (size_t i = 0; i < sizeof(reads) / sizeof(reads[0]); i++) {
		ck_assert_int_eq(imgfmt__pread(v, buf, reads[i].len,
					       reads[i].off), 0);
		ck_assert_int_eq(memcmp(buf, genuine + reads[i].off,
					reads[i].len), 0);
	}
	ck_assert_int_eq(part_calls, 4);
	ck_assert_int_eq(calls, 0);   /* no cluster hashed whole */
	ck_assert_int_eq(imgfmt__pread(v, buf, 100, (uint64_t)CL * NCL + 10), 0);
	ck_assert_int_eq(memcmp(buf, genuine + (size_t)CL * NCL + 10, 100), 0);
	ck_assert_int_eq(calls_for[NCL], 1);
	imgfmt__close(v);
}
END_TEST

/* A changed byte fails the read of its part (buffer zeroed, the cluster
 * named), while the other parts of that cluster still read. */
START_TEST(tampered_part_is_refused_other_parts_still_read)
{
	uint8_t buf[PART];
	uint64_t c3 = 3 * (uint64_t)CL;
	imgfmt_image *v = open_view_parts();

	tamper(c3 + 5 * PART + 7, (uint8_t)(genuine[c3 + 5 * PART + 7] ^ 0x40));
	ck_assert_int_eq(imgfmt__pread(v, buf, PART, c3 + 2 * PART), 0);
	ck_assert_int_eq(memcmp(buf, genuine + c3 + 2 * PART, PART), 0);
	memset(buf, 0xaa, sizeof(buf));
	ck_assert_int_eq(imgfmt__pread(v, buf, PART, c3 + 5 * PART), -EBADMSG);
	ck_assert(all_zero(buf, PART));
	ck_assert_ptr_nonnull(strstr(imgfmt__error(), "cluster 3 "));
	/* Unaligned, through the bounce buffer: refused too. */
	memset(buf, 0xaa, sizeof(buf));
	ck_assert_int_eq(imgfmt__pread(v, buf, 10, c3 + 5 * PART + 1),
			 -EBADMSG);
	ck_assert(all_zero(buf, 10));
	imgfmt__close(v);
}
END_TEST

/* A cluster whose parts cannot be checked alone (for a package: CVs that
 * do not merge to the leaf) is checked whole: genuine data still reads,
 * changed data still fails. */
START_TEST(unsplittable_cluster_is_checked_whole)
{
	uint8_t buf[PART];
	imgfmt_image *v = open_view_parts();

	unsplittable = 2;
	ck_assert_int_eq(imgfmt__pread(v, buf, PART, 2 * (uint64_t)CL + PART),
			 0);
	ck_assert_int_eq(memcmp(buf, genuine + 2 * CL + PART, PART), 0);
	ck_assert_int_eq(calls_for[2], 1);
	imgfmt__close(v);

	unsplittable = 4;
	tamper(4 * (uint64_t)CL + 9 * PART, (uint8_t)~genuine[4 * CL + 9 * PART]);
	v = open_view_parts();
	memset(buf, 0xaa, sizeof(buf));
	ck_assert_int_eq(imgfmt__pread(v, buf, PART, 4 * (uint64_t)CL),
			 -EBADMSG);
	ck_assert(all_zero(buf, PART));
	imgfmt__close(v);
}
END_TEST

/* Small reads going forward still verify whole clusters (into the cache,
 * and ahead): only a stream's first read is checked by parts. */
START_TEST(sequential_small_reads_verify_whole_clusters)
{
	uint8_t buf[PART];
	imgfmt_image *v = open_view_parts();

	for (uint64_t off = CL; off < 4 * (uint64_t)CL; off += PART) {
		ck_assert_int_eq(imgfmt__pread(v, buf, PART, off), 0);
		ck_assert_int_eq(memcmp(buf, genuine + off, PART), 0);
	}
	imgfmt__close(v);
	ck_assert_int_eq(part_calls, 1);
	for (int c = 1; c < 4; c++)
		ck_assert_int_eq(calls_for[c], 1);
}
END_TEST

/* Two random reads that happen to land near each other are not a
 * stream yet: no read-ahead (it would verify 16 clusters nobody reads).
 * A third read going forward confirms it. */
START_TEST(read_ahead_waits_for_a_confirmed_stream)
{
	uint8_t buf[PART];
	imgfmt_image *v = open_view_zero(zero_sha);

	ck_assert_int_eq(imgfmt__pread(v, buf, PART, CL), 0);
	ck_assert_int_eq(imgfmt__pread(v, buf, PART, CL + 2 * PART), 0);
	usleep(20000);
	ck_assert_int_eq(__atomic_load_n(&worker_calls, __ATOMIC_RELAXED), 0);
	ck_assert_int_eq(imgfmt__pread(v, buf, PART, CL + 3 * PART), 0);
	/* The worker picks the queue up when it is scheduled (closing
	 * first would stop it before it starts). */
	for (int i = 0; i < 500 &&
	     !__atomic_load_n(&worker_calls, __ATOMIC_RELAXED); i++)
		usleep(10000);
	ck_assert_int_gt(__atomic_load_n(&worker_calls, __ATOMIC_RELAXED), 0);
	imgfmt__close(v);
}
END_TEST

/* Two threads reading whole clusters 0-5 in turn (thread i the
 * clusters c with c % 2 == i), as the NBD server's workers take a
 * client's requests. */
struct turns {
	imgfmt_image *v;
	pthread_mutex_t lock;
	pthread_cond_t next;
	int turn;      /* the cluster to read next */
	int wrong;     /* reads that failed or returned other bytes */
};

struct turn_reader {
	struct turns *t;
	int parity;
};

static void *whole_reader_main(void *arg)
{
	struct turn_reader *me = arg;
	struct turns *t = me->t;
	uint8_t *buf = malloc(CL);

	test_reader = 1;
	pthread_mutex_lock(&t->lock);
	for (;;) {
		while (t->turn < 6 && t->turn % 2 != me->parity)
			pthread_cond_wait(&t->next, &t->lock);
		if (t->turn >= 6)
			break;
		int c = t->turn;
		pthread_mutex_unlock(&t->lock);
		int rc = imgfmt__pread(t->v, buf, CL, (uint64_t)c * CL);
		pthread_mutex_lock(&t->lock);
		if (rc != 0 || memcmp(buf, genuine + (size_t)c * CL, CL))
			t->wrong++;
		t->turn++;
		pthread_cond_broadcast(&t->next);
	}
	pthread_mutex_unlock(&t->lock);
	free(buf);
	return NULL;
}

/* Whole-cluster reads from several threads are each verified by the
 * thread that makes them, with no read-ahead (which would only add a
 * copy out of the cache); the same reads from one thread get it. */
START_TEST(whole_cluster_reads_from_several_threads_get_no_read_ahead)
{
	struct turns t = { .lock = PTHREAD_MUTEX_INITIALIZER,
			   .next = PTHREAD_COND_INITIALIZER };
	struct turn_reader r[2] = { { &t, 0 }, { &t, 1 } };
	pthread_t th[2];
	uint8_t *buf = malloc(CL);

	t.v = open_view_zero(zero_sha);
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL,
						whole_reader_main, &r[i]), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	ck_assert_int_eq(t.wrong, 0);
	ck_assert_int_eq(t.turn, 6);
	usleep(50000);   /* time for a wrongly woken worker to show */
	ck_assert_int_eq(__atomic_load_n(&worker_calls, __ATOMIC_RELAXED), 0);
	for (int c = 0; c < 6; c++)
		ck_assert_int_eq(calls_for[c], 1);
	imgfmt__close(t.v);

	/* One thread: read-ahead once the stream is confirmed. */
	t.v = open_view_zero(zero_sha);
	for (int c = 0; c < 3; c++) {
		ck_assert_int_eq(imgfmt__pread(t.v, buf, CL, (uint64_t)c * CL),
				 0);
		ck_assert_int_eq(memcmp(buf, genuine + (size_t)c * CL, CL), 0);
	}
	for (int i = 0; i < 500 &&
	     !__atomic_load_n(&worker_calls, __ATOMIC_RELAXED); i++)
		usleep(10000);
	ck_assert_int_gt(__atomic_load_n(&worker_calls, __ATOMIC_RELAXED), 0);
	imgfmt__close(t.v);
	free(buf);
}
END_TEST

START_TEST(bad_part_size_is_refused)
{
	imgfmt_image *v = open_view(), *raw;

	ck_assert_int_eq(imgfmt__verified_parts(v, 3000, verify_part_sha),
			 -EINVAL);
	ck_assert_int_eq(imgfmt__verified_parts(v, CL, verify_part_sha),
			 -EINVAL);
	ck_assert_int_eq(imgfmt__verified_parts(v, 256, verify_part_sha),
			 -EINVAL);
	ck_assert_int_eq(imgfmt__verified_parts(v, PART, NULL), -EINVAL);
	imgfmt__close(v);
	ck_assert_int_eq(imgfmt__open(path, NULL, &raw), 0);
	ck_assert_int_eq(imgfmt__verified_parts(raw, PART, verify_part_sha),
			 -EINVAL);
	imgfmt__close(raw);
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

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, genuine_data_reads_and_is_cached);
	tcase_add_test(tc, tampered_cluster_is_refused_others_still_read);
	tcase_add_test(tc, whole_cluster_read_with_a_tampered_cluster_zeroes_the_buffer);
	tcase_add_test(tc, zero_leaf_clusters_are_served_without_hashing);
	tcase_add_test(tc, data_cluster_made_zero_fails_verification);
	tcase_add_test(tc, short_last_cluster);
	tcase_add_test(tc, read_ahead_does_not_serve_a_tampered_cluster);
	tcase_add_test(tc, read_ahead_follows_interleaved_streams);
	tcase_add_test(tc, concurrent_readers_over_tampered_and_intact_clusters);
	tcase_add_test(tc, bad_cluster_size_is_refused);
	tcase_add_test(tc, random_small_reads_are_checked_by_parts);
	tcase_add_test(tc, tampered_part_is_refused_other_parts_still_read);
	tcase_add_test(tc, unsplittable_cluster_is_checked_whole);
	tcase_add_test(tc, sequential_small_reads_verify_whole_clusters);
	tcase_add_test(tc, read_ahead_waits_for_a_confirmed_stream);
	tcase_add_test(tc, whole_cluster_reads_from_several_threads_get_no_read_ahead);
	tcase_add_test(tc, bad_part_size_is_refused);
	tcase_add_test(tc, attach_backing_refuses_a_second_one);
	suite_add_tcase(s, tc);
	return fx_run_suite(s);
}
