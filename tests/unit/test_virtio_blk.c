/*
 * test_virtio_blk.c - virtio-blk driven by the test-side driver over a
 * raw image: every request type, framing variations, and hostile
 * requests.  Data written through the device is checked with
 * imgfmt__pread, not only by reading it back through the device.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "imgfmt.h"
#include "test_virtio_driver.h"
#include "fixture-run.h"

#define DISK_SIZE (1u << 20)
#define SECTORS (DISK_SIZE / 512)

#define T_IN 0
#define T_OUT 1
#define T_FLUSH 4
#define T_GET_ID 8
#define T_DISCARD 11
#define T_WRITE_ZEROES 13
#define S_OK 0
#define S_IOERR 1
#define S_UNSUPP 2
#define NO_STATUS 0xEE

static char path[64];
static struct tdrv d;
static imgfmt_image *img;
static struct virtio_dev *vdev;
static int irqs;
static int iothread;     /* run the suite with the device's I/O thread */

static void count_irq(struct virtio_dev *v, unsigned bits, int q)
{
	(void)v;
	(void)q;
	if (bits & VIRTIO_ISR_QUEUE)
		__atomic_fetch_add(&irqs, 1, __ATOMIC_RELAXED);
}

static void setup_common(void);

static int nirqs(void)
{
	return __atomic_load_n(&irqs, __ATOMIC_RELAXED);
}

/* With the I/O thread, completions arrive asynchronously: wait for the
 * next one.  The bound turns a hang into a failure; it is not a timing
 * assertion. */
static int next_used(uint32_t *id, uint32_t *len)
{
	for (int i = 0; i < (iothread ? 20000 : 1); i++) {
		if (td_used(&d, id, len))
			return 1;
		usleep(500);
	}
	return 0;
}

/* Interrupt count once `want` have arrived: the I/O thread publishes the
 * used entry before it raises the interrupt, so a completion can be seen
 * a moment before its interrupt. */
static int irqs_after(int want)
{
	for (int i = 0; i < 20000 && iothread && nirqs() < want; i++)
		usleep(500);
	if (iothread)
		usleep(5000);      /* and no extra ones */
	return nirqs();
}

/* Give an I/O thread the chance to (wrongly) do something before checking
 * that nothing happened. */
static void settle(void)
{
	if (iothread)
		usleep(20000);
}

static void open_disk(int read_only, const char *serial)
{
	struct imgfmt_open_opts o = { .flags = read_only ? 0
						: IMGFMT_OPEN_RDWR };
	struct virtio_blk_opts bo = { .serial = serial, .queue_size = 64,
				      .iothread = iothread };

	ck_assert_msg(imgfmt__open(path, &o, &img) == 0, "%s",
		      imgfmt__error());
	ck_assert_msg(virtio_blk__new(img, &bo, &d.mem, &vdev) == 0, "%s",
		      virtio__error());
	vdev->signal = count_irq;
	irqs = 0;
	td_rings(&d, 64);
	td_attach(&d, vdev, 0, 1ull << VIRTIO_F_INDIRECT_DESC);
}

static void setup(void)
{
	iothread = 0;
	setup_common();
}

static void setup_iothread(void)
{
	iothread = 1;
	setup_common();
}

static void setup_common(void)
{
	struct imgfmt_create_opts c = { .format = "raw", .size = DISK_SIZE };
	int fd;

	strcpy(path, "/tmp/test_vblk.XXXXXX");
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	close(fd);
	unlink(path);
	ck_assert_msg(imgfmt__create(path, &c) == 0, "%s", imgfmt__error());
	td_init(&d);
	open_disk(0, "serial-0123456789abcdef");
}

static void teardown(void)
{
	virtio__dev_free(vdev);
	imgfmt__close(img);
	td_fini(&d);
	unlink(path);
}

static uint64_t put_hdr(uint32_t type, uint64_t sector)
{
	uint64_t g = td_alloc(&d, 16, 8);
	uint8_t *h = td_ptr(&d, g);

	memcpy(h, &type, 4);
	memset(h + 4, 0, 4);
	memcpy(h + 8, &sector, 8);
	return g;
}

/* Ring the doorbell and collect the completion of `head`. */
static uint32_t complete(uint16_t head)
{
	uint32_t id, len;

	virtio__kick(vdev, 0);
	ck_assert_msg(next_used(&id, &len) == 1, "no completion (%s)",
		      virtio__error());
	ck_assert_uint_eq(id, head);
	return len;
}

/* A request as Linux frames it: header, data buffers, status byte, each
 * in its own descriptor.  Returns the status; *used gets the used len. */
static uint8_t request(uint32_t type, uint64_t sector, const struct tbuf *data,
		       int ndata, int indirect, uint32_t *used)
{
	struct tbuf b[20];
	uint64_t st = td_alloc(&d, 1, 1);
	uint32_t len;
	int n = 0;

	*(uint8_t *)td_ptr(&d, st) = NO_STATUS;
	b[n++] = (struct tbuf){ put_hdr(type, sector), 16, 0 };
	for (int i = 0; i < ndata; i++)
		b[n++] = data[i];
	b[n++] = (struct tbuf){ st, 1, 1 };
	len = complete(td_post(&d, b, n, indirect));
	if (used)
		*used = len;
	return *(uint8_t *)td_ptr(&d, st);
}

static uint64_t pattern(uint32_t len, uint8_t seed)
{
	uint64_t g = td_alloc(&d, len, 512);
	uint8_t *p = td_ptr(&d, g);

	for (uint32_t i = 0; i < len; i++)
		p[i] = (uint8_t)(seed + i * 7 + i / 512);
	return g;
}

static void disk_equals(uint64_t off, const void *want, size_t len)
{
	uint8_t *got = malloc(len);

	ck_assert_int_eq(imgfmt__pread(img, got, len, off), 0);
	ck_assert_mem_eq(got, want, len);
	free(got);
}

static void disk_is_zero(uint64_t off, size_t len)
{
	uint8_t *z = calloc(1, len);

	disk_equals(off, z, len);
	free(z);
}

START_TEST(write_then_read)
{
	uint64_t w = pattern(4096, 1), r = td_alloc(&d, 4096, 512);
	struct tbuf wb = { w, 4096, 0 }, rb = { r, 4096, 1 };
	uint32_t used;

	ck_assert_int_eq(request(T_OUT, 8, &wb, 1, 0, &used), S_OK);
	ck_assert_uint_eq(used, 1);
	disk_equals(8 * 512, td_ptr(&d, w), 4096);
	ck_assert_int_eq(request(T_IN, 8, &rb, 1, 0, &used), S_OK);
	ck_assert_uint_eq(used, 4097);
	ck_assert_mem_eq(td_ptr(&d, r), td_ptr(&d, w), 4096);
	ck_assert_int_eq(irqs_after(2), 2);
	struct virtio_blk_stats st;
	virtio_blk__stats(vdev, &st);
	ck_assert_uint_eq(st.reads, 1);
	ck_assert_uint_eq(st.writes, 1);
	ck_assert_uint_eq(st.ioerr + st.malformed + st.unsupp, 0);
}
END_TEST

START_TEST(multi_segment_direct_and_indirect)
{
	uint64_t a = pattern(512, 10), b = pattern(1024, 20),
		 c = pattern(512, 30);
	struct tbuf w[3] = { { a, 512, 0 }, { b, 1024, 0 }, { c, 512, 0 } };
	uint64_t r[4];
	struct tbuf rb[4];

	ck_assert_int_eq(request(T_OUT, 100, w, 3, 0, NULL), S_OK);
	disk_equals(100 * 512, td_ptr(&d, a), 512);
	disk_equals(101 * 512, td_ptr(&d, b), 1024);
	disk_equals(103 * 512, td_ptr(&d, c), 512);
	/* Read it back in four 512-byte pieces through an indirect table. */
	for (int i = 0; i < 4; i++) {
		r[i] = td_alloc(&d, 512, 512);
		rb[i] = (struct tbuf){ r[i], 512, 1 };
	}
	ck_assert_int_eq(request(T_IN, 100, rb, 4, 1, NULL), S_OK);
	ck_assert_mem_eq(td_ptr(&d, r[0]), td_ptr(&d, a), 512);
	ck_assert_mem_eq(td_ptr(&d, r[1]), td_ptr(&d, b), 512);
	ck_assert_mem_eq(td_ptr(&d, r[2]), (uint8_t *)td_ptr(&d, b) + 512,
			 512);
	ck_assert_mem_eq(td_ptr(&d, r[3]), td_ptr(&d, c), 512);
}
END_TEST

START_TEST(merged_framing)
{
	/* Header and data in one readable buffer; data and status in one
	 * writable buffer: the spec allows any split. */
	uint64_t w = td_alloc(&d, 16 + 1024, 8), r = td_alloc(&d, 1025, 8);
	uint8_t *p = td_ptr(&d, w);
	uint32_t type = T_OUT, in = T_IN;
	uint64_t sector = 3;
	struct tbuf one = { w, 16 + 1024, 0 };
	uint64_t st = td_alloc(&d, 1, 1);
	struct tbuf wr[2] = { one, { st, 1, 1 } };

	memcpy(p, &type, 4);
	memcpy(p + 8, &sector, 8);
	memset(p + 16, 0x5A, 1024);
	ck_assert_uint_eq(complete(td_post(&d, wr, 2, 0)), 1);
	ck_assert_uint_eq(*(uint8_t *)td_ptr(&d, st), S_OK);
	disk_equals(3 * 512, p + 16, 1024);

	uint64_t h = td_alloc(&d, 16, 8);
	memcpy(td_ptr(&d, h), &in, 4);
	memcpy((uint8_t *)td_ptr(&d, h) + 8, &sector, 8);
	struct tbuf rd[2] = { { h, 16, 0 }, { r, 1025, 1 } };
	memset(td_ptr(&d, r), 0xEE, 1025);
	ck_assert_uint_eq(complete(td_post(&d, rd, 2, 0)), 1025);
	ck_assert_mem_eq(td_ptr(&d, r), p + 16, 1024);
	ck_assert_uint_eq(((uint8_t *)td_ptr(&d, r))[1024], S_OK);
}
END_TEST

START_TEST(flush_and_get_id)
{
	uint64_t id = td_alloc(&d, 20, 1);
	struct tbuf ib = { id, 20, 1 };
	uint32_t used;

	ck_assert_int_eq(request(T_FLUSH, 0, NULL, 0, 0, &used), S_OK);
	ck_assert_uint_eq(used, 1);
	ck_assert_int_eq(request(T_GET_ID, 0, &ib, 1, 0, &used), S_OK);
	ck_assert_uint_eq(used, 21);
	/* 20 bytes, not NUL-terminated when the serial is longer. */
	ck_assert_mem_eq(td_ptr(&d, id), "serial-0123456789abc", 20);
}
END_TEST

static uint64_t seg(uint64_t sector, uint32_t num, uint32_t flags)
{
	uint64_t g = td_alloc(&d, 16, 8);
	uint8_t *p = td_ptr(&d, g);

	memcpy(p, &sector, 8);
	memcpy(p + 8, &num, 4);
	memcpy(p + 12, &flags, 4);
	return g;
}

START_TEST(discard_and_write_zeroes)
{
	uint64_t w = pattern(64 * 512, 3);
	struct tbuf wb = { w, 64 * 512, 0 };

	ck_assert_int_eq(request(T_OUT, 0, &wb, 1, 0, NULL), S_OK);
	/* Two discard segments in one request. */
	struct tbuf ds[2] = { { seg(2, 4, 0), 16, 0 },
			      { seg(20, 2, 0), 16, 0 } };
	ck_assert_int_eq(request(T_DISCARD, 0, ds, 2, 0, NULL), S_OK);
	disk_is_zero(2 * 512, 4 * 512);
	disk_is_zero(20 * 512, 2 * 512);
	disk_equals(6 * 512, (uint8_t *)td_ptr(&d, w) + 6 * 512, 14 * 512);
	/* Write zeroes with and without the unmap flag. */
	struct tbuf z1 = { seg(30, 3, 1), 16, 0 }, z2 = { seg(40, 1, 0), 16, 0 };
	ck_assert_int_eq(request(T_WRITE_ZEROES, 0, &z1, 1, 0, NULL), S_OK);
	ck_assert_int_eq(request(T_WRITE_ZEROES, 0, &z2, 1, 0, NULL), S_OK);
	disk_is_zero(30 * 512, 3 * 512);
	disk_is_zero(40 * 512, 512);
	disk_equals(41 * 512, (uint8_t *)td_ptr(&d, w) + 41 * 512, 512);
}
END_TEST

START_TEST(discard_refusals_leave_disk_alone)
{
	uint64_t w = pattern(8 * 512, 9);
	struct tbuf wb = { w, 8 * 512, 0 };

	ck_assert_int_eq(request(T_OUT, 0, &wb, 1, 0, NULL), S_OK);
	/* Discard knows no flags; write-zeroes knows only UNMAP. */
	struct tbuf f1 = { seg(0, 1, 1), 16, 0 }, f2 = { seg(0, 1, 2), 16, 0 };
	ck_assert_int_eq(request(T_DISCARD, 0, &f1, 1, 0, NULL), S_UNSUPP);
	ck_assert_int_eq(request(T_WRITE_ZEROES, 0, &f2, 1, 0, NULL),
			 S_UNSUPP);
	/* A bad second segment: nothing at all is done. */
	struct tbuf two[2] = { { seg(0, 2, 0), 16, 0 },
			       { seg(SECTORS - 1, 2, 0), 16, 0 } };
	ck_assert_int_eq(request(T_DISCARD, 0, two, 2, 0, NULL), S_IOERR);
	/* Segment list not a multiple of 16 bytes; empty list. */
	struct tbuf odd = { seg(0, 1, 0), 12, 0 };
	ck_assert_int_eq(request(T_DISCARD, 0, &odd, 1, 0, NULL), S_UNSUPP);
	ck_assert_int_eq(request(T_DISCARD, 0, NULL, 0, 0, NULL), S_UNSUPP);
	/* Sector numbers that would overflow when multiplied by 512. */
	struct tbuf huge = { seg(UINT64_MAX / 256, 1, 0), 16, 0 };
	ck_assert_int_eq(request(T_WRITE_ZEROES, 0, &huge, 1, 0, NULL),
			 S_IOERR);
	disk_equals(0, td_ptr(&d, w), 8 * 512);
}
END_TEST

START_TEST(out_of_range_sectors)
{
	uint64_t r = td_alloc(&d, 1024, 512);
	struct tbuf rb = { r, 1024, 1 }, wb = { r, 1024, 0 };
	uint32_t used;

	ck_assert_int_eq(request(T_IN, SECTORS - 2, &rb, 1, 0, NULL), S_OK);
	ck_assert_int_eq(request(T_IN, SECTORS - 1, &rb, 1, 0, &used),
			 S_IOERR);
	ck_assert_uint_eq(used, 1);
	ck_assert_int_eq(request(T_IN, SECTORS, &rb, 1, 0, NULL), S_IOERR);
	ck_assert_int_eq(request(T_OUT, UINT64_MAX, &wb, 1, 0, NULL),
			 S_IOERR);
	ck_assert_int_eq(request(T_OUT, UINT64_MAX / 512 + 1, &wb, 1, 0,
				 NULL), S_IOERR);
	/* Lengths that are not whole sectors. */
	struct tbuf part = { r, 100, 0 };
	ck_assert_int_eq(request(T_OUT, 0, &part, 1, 0, NULL), S_IOERR);
	disk_is_zero(0, 512);
}
END_TEST

START_TEST(malformed_requests)
{
	uint64_t h = td_alloc(&d, 16, 8), st = td_alloc(&d, 1, 1);
	struct virtio_blk_stats s;

	/* Header too short: IOERR in the status byte. */
	struct tbuf shorth[2] = { { h, 8, 0 }, { st, 1, 1 } };
	*(uint8_t *)td_ptr(&d, st) = NO_STATUS;
	ck_assert_uint_eq(complete(td_post(&d, shorth, 2, 0)), 1);
	ck_assert_uint_eq(*(uint8_t *)td_ptr(&d, st), S_IOERR);

	/* No writable byte at all (status in a read-only buffer): returned
	 * with nothing written. */
	struct tbuf ro[2] = { { put_hdr(T_IN, 0), 16, 0 }, { st, 1, 0 } };
	*(uint8_t *)td_ptr(&d, st) = NO_STATUS;
	ck_assert_uint_eq(complete(td_post(&d, ro, 2, 0)), 0);
	ck_assert_uint_eq(*(uint8_t *)td_ptr(&d, st), NO_STATUS);

	/* Only a header: same. */
	struct tbuf only = { put_hdr(T_FLUSH, 0), 16, 0 };
	ck_assert_uint_eq(complete(td_post(&d, &only, 1, 0)), 0);

	/* Unknown request type. */
	ck_assert_int_eq(request(77, 0, NULL, 0, 0, NULL), S_UNSUPP);

	virtio_blk__stats(vdev, &s);
	ck_assert_uint_eq(s.malformed, 3);
	ck_assert_uint_eq(s.unsupp, 1);
	/* The device is still fine. */
	ck_assert_int_eq(request(T_FLUSH, 0, NULL, 0, 0, NULL), S_OK);
	ck_assert(!(vdev->status & VIRTIO_STATUS_NEEDS_RESET));
}
END_TEST

START_TEST(buffer_outside_memory_needs_reset)
{
	struct tbuf b[3] = { { put_hdr(T_IN, 0), 16, 0 },
			     { TD_GPA_BASE + TD_RAM_SIZE - 100, 512, 1 },
			     { td_alloc(&d, 1, 1), 1, 1 } };
	uint32_t id, len;
	int before = nirqs();

	td_post(&d, b, 3, 0);
	virtio__kick(vdev, 0);
	for (int i = 0; i < 20000 && iothread &&
	     !(__atomic_load_n(&vdev->status, __ATOMIC_RELAXED) &
	       VIRTIO_STATUS_NEEDS_RESET); i++)
		usleep(500);
	ck_assert_int_eq(td_used(&d, &id, &len), 0);
	ck_assert(__atomic_load_n(&vdev->status, __ATOMIC_RELAXED) &
		  VIRTIO_STATUS_NEEDS_RESET);
	/* The message is per thread: only the synchronous path can see it. */
	if (!iothread)
		ck_assert_ptr_nonnull(strstr(virtio__error(),
					     "outside guest RAM"));
	/* Later kicks do nothing until the driver resets. */
	struct tbuf fl[2] = { { put_hdr(T_FLUSH, 0), 16, 0 },
			      { td_alloc(&d, 1, 1), 1, 1 } };
	td_post(&d, fl, 2, 0);
	virtio__kick(vdev, 0);
	settle();
	ck_assert_int_eq(td_used(&d, &id, &len), 0);
	ck_assert_int_eq(nirqs(), before);
	virtio__reset(vdev);
	ck_assert_uint_eq(vdev->status, 0);
	td_rings(&d, 64);
	td_attach(&d, vdev, 0, 0);
	ck_assert_int_eq(request(T_FLUSH, 0, NULL, 0, 0, NULL), S_OK);
}
END_TEST

START_TEST(read_only_disk_refuses_writes)
{
	uint64_t w = pattern(512, 77), r = td_alloc(&d, 512, 512);
	struct tbuf wb = { w, 512, 0 }, rb = { r, 512, 1 };

	ck_assert_int_eq(request(T_OUT, 0, &wb, 1, 0, NULL), S_OK);
	virtio__dev_free(vdev);
	imgfmt__close(img);
	open_disk(1, NULL);
	ck_assert(vdev->features & (1ull << 5));          /* F_RO */
	ck_assert(!(vdev->features & (1ull << 13)));      /* no DISCARD */
	struct tbuf other = { pattern(512, 1), 512, 0 };
	ck_assert_int_eq(request(T_OUT, 0, &other, 1, 0, NULL), S_IOERR);
	struct tbuf ds = { seg(0, 1, 0), 16, 0 };
	ck_assert_int_eq(request(T_DISCARD, 0, &ds, 1, 0, NULL), S_IOERR);
	ck_assert_int_eq(request(T_WRITE_ZEROES, 0, &ds, 1, 0, NULL), S_IOERR);
	ck_assert_int_eq(request(T_IN, 0, &rb, 1, 0, NULL), S_OK);
	ck_assert_mem_eq(td_ptr(&d, r), td_ptr(&d, w), 512);
	disk_equals(0, td_ptr(&d, w), 512);
	/* GET_ID with no serial: zeros. */
	uint64_t id = td_alloc(&d, 20, 1);
	struct tbuf ib = { id, 20, 1 };
	memset(td_ptr(&d, id), 0xFF, 20);
	ck_assert_int_eq(request(T_GET_ID, 0, &ib, 1, 0, NULL), S_OK);
	uint8_t z[20] = { 0 };
	ck_assert_mem_eq(td_ptr(&d, id), z, 20);
}
END_TEST

START_TEST(config_space)
{
	uint64_t cap;
	uint32_t seg_max, blk_size;

	ck_assert_uint_ge(vdev->config_len, 60);
	memcpy(&cap, vdev->config, 8);
	memcpy(&seg_max, vdev->config + 12, 4);
	memcpy(&blk_size, vdev->config + 20, 4);
	ck_assert_uint_eq(cap, SECTORS);
	ck_assert_uint_eq(seg_max, 62);
	ck_assert_uint_eq(blk_size, 512);
	ck_assert(vdev->features & (1ull << 9));   /* FLUSH */
	ck_assert(vdev->features & (1ull << 14));  /* WRITE_ZEROES */
	ck_assert(vdev->features & (1ull << VIRTIO_F_VERSION_1));
}
END_TEST

START_TEST(many_requests_in_one_kick)
{
	/* Fill the whole ring before ringing once: all complete, one
	 * interrupt (used_event/flags say so). */
	uint16_t heads[32];
	uint64_t st[32];

	for (int i = 0; i < 32; i++) {
		uint64_t w = pattern(512, (uint8_t)i);
		st[i] = td_alloc(&d, 1, 1);
		struct tbuf b[3] = { { put_hdr(T_OUT, (uint64_t)i), 16, 0 },
				     { w, 512, 0 }, { st[i], 1, 1 } };
		heads[i] = td_post(&d, b, 3, 0);
	}
	virtio__kick(vdev, 0);
	for (int i = 0; i < 32; i++) {
		uint32_t id, len;

		ck_assert_int_eq(next_used(&id, &len), 1);
		ck_assert_uint_eq(id, heads[i]);
		ck_assert_uint_eq(*(uint8_t *)td_ptr(&d, st[i]), S_OK);
	}
	ck_assert_int_eq(irqs_after(1), 1);
}
END_TEST

START_TEST(every_writable_format_behaves_the_same)
{
	/* The device must not care what is behind imgfmt: the same
	 * requests against every format that can be created here. */
	const char *const *fmts = imgfmt__formats();
	int tried = 0;

	for (int f = 0; fmts[f]; f++) {
		struct imgfmt_create_opts c = { .format = fmts[f],
						.size = DISK_SIZE };
		char p2[128];

		snprintf(p2, sizeof(p2), "%s.%s", path, fmts[f]);
		unlink(p2);
		struct imgfmt_open_opts o = { .flags = IMGFMT_OPEN_RDWR };
		struct virtio_blk_opts bo = { .queue_size = 64,
					      .iothread = iothread };
		imgfmt_image *nimg;

		/* Formats that cannot be created or written here yet. */
		if (imgfmt__create(p2, &c) < 0)
			continue;
		if (imgfmt__open(p2, &o, &nimg) < 0) {
			unlink(p2);
			continue;
		}
		virtio__dev_free(vdev);
		imgfmt__close(img);
		img = nimg;
		ck_assert_int_eq(virtio_blk__new(img, &bo, &d.mem, &vdev), 0);
		vdev->signal = count_irq;
		td_rings(&d, 64);
		td_attach(&d, vdev, 0, 0);
		uint64_t w = pattern(8192, (uint8_t)f), r = td_alloc(&d, 8192,
								     512);
		struct tbuf wb = { w, 8192, 0 }, rb = { r, 8192, 1 };
		struct tbuf z = { seg(1002, 2, 1), 16, 0 };
		uint8_t want[8192];

		ck_assert_int_eq(request(T_OUT, 1000, &wb, 1, 0, NULL), S_OK);
		ck_assert_int_eq(request(T_WRITE_ZEROES, 0, &z, 1, 0, NULL),
				 S_OK);
		ck_assert_int_eq(request(T_FLUSH, 0, NULL, 0, 0, NULL), S_OK);
		ck_assert_int_eq(request(T_IN, 1000, &rb, 1, 0, NULL), S_OK);
		memcpy(want, td_ptr(&d, w), sizeof(want));
		memset(want + 1024, 0, 1024);
		ck_assert_mem_eq(td_ptr(&d, r), want, sizeof(want));
		disk_equals(1000 * 512, want, sizeof(want));
		ck_assert_int_eq(request(T_IN, SECTORS, &rb, 1, 0, NULL),
				 S_IOERR);
		/* No serial given: GET_ID is the image UUID in hex if the
		 * format has one, else zeros. */
		{
			struct imgfmt_info *inf = malloc(sizeof(*inf));
			char want_id[21] = { 0 };
			uint64_t idg = td_alloc(&d, 20, 1);
			struct tbuf ib = { idg, 20, 1 };

			ck_assert_int_eq(imgfmt__info(img, inf), 0);
			if (inf->has_uuid)
				for (int k = 0; k < 10; k++)
					snprintf(want_id + 2 * k, 3, "%02x",
						 inf->uuid[k]);
			free(inf);
			ck_assert_int_eq(request(T_GET_ID, 0, &ib, 1, 0, NULL),
					 S_OK);
			ck_assert_mem_eq(td_ptr(&d, idg), want_id, 20);
		}
		ck_assert_int_eq(imgfmt__close(img), 0);
		img = NULL;
		/* Reopen: the data is in the file, not only in a cache. */
		ck_assert_int_eq(imgfmt__open(p2, NULL, &img), 0);
		disk_equals(1000 * 512, want, sizeof(want));
		unlink(p2);
		tried++;
	}
	ck_assert_int_ge(tried, 1);
}
END_TEST

/* Hostile drivers at random: descriptor tables, rings and request
 * headers full of random (but mostly plausible) values, with buffers that
 * may overlap the rings themselves.  The device must never touch memory
 * outside guest RAM (the sanitizer build checks that), every completion
 * must name a valid head, and a reset must always bring it back. */
START_TEST(random_rings_never_crash)
{
	unsigned seed = 12345;
	uint64_t area = td_alloc(&d, 64 * 1024, 16);
	int completions = 0, resets = 0;

	for (int round = 0; round < 400; round++) {
		struct virtq_desc *t = td_ptr(&d, d.desc);
		uint16_t *ring = td_ptr(&d, d.avail + 4);

		for (int i = 0; i < d.num; i++) {
			unsigned r = (unsigned)rand_r(&seed);
			uint64_t addr = area + (uint64_t)(rand_r(&seed) %
							  (64 * 1024));
			uint32_t len = (uint32_t)(rand_r(&seed) % 9000);

			if (r % 50 == 0)
				addr = (uint64_t)rand_r(&seed) << 20;
			if (r % 10 == 1) {
				/* a plausible request header */
				uint8_t *h = td_ptr(&d, area + 16 * (r % 64));
				uint32_t type = (uint32_t)(rand_r(&seed) % 15);
				uint64_t sec = (uint64_t)(rand_r(&seed) %
							  (SECTORS + 8));
				memcpy(h, &type, 4);
				memcpy(h + 8, &sec, 8);
				addr = area + 16 * (r % 64);
				len = 16;
			}
			t[i].addr = addr;
			t[i].len = len;
			t[i].flags = (uint16_t)(rand_r(&seed) % 8);
			t[i].next = (uint16_t)(rand_r(&seed) % (d.num + 2));
			ring[i] = (uint16_t)(rand_r(&seed) % (d.num + 1));
		}
		/* Mostly sane amounts of new work, sometimes absurd. */
		uint16_t add = (uint16_t)(rand_r(&seed) % 8 == 0 ?
					  rand_r(&seed) : rand_r(&seed) % 6);
		d.avail_idx = (uint16_t)(d.avail_idx + add);
		__atomic_store_n(td_avail_idx(&d), d.avail_idx,
				 __ATOMIC_RELEASE);
		virtio__kick(vdev, 0);

		uint32_t id, len;
		while (td_used(&d, &id, &len)) {
			ck_assert_uint_lt(id, d.num);
			completions++;
		}
		if (__atomic_load_n(&vdev->status, __ATOMIC_RELAXED) &
		    VIRTIO_STATUS_NEEDS_RESET) {
			virtio__reset(vdev);
			td_rings(&d, 64);
			td_attach(&d, vdev, 0, 1ull << VIRTIO_F_INDIRECT_DESC);
			resets++;
		}
		/* Keep the bump allocator from running out. */
		if (d.next > TD_GPA_BASE + TD_RAM_SIZE - 64 * 1024)
			break;
	}
	ck_assert_int_gt(completions, 0);
	ck_assert_int_gt(resets, 0);
	virtio__reset(vdev);
	td_rings(&d, 64);
	td_attach(&d, vdev, 0, 0);
	ck_assert_int_eq(request(T_FLUSH, 0, NULL, 0, 0, NULL), S_OK);
}
END_TEST

/* Multi-queue: two "vCPUs" (threads) each drive their own queue at the
 * same time, writing and reading back their own sectors. */
struct mq_worker {
	struct tdrv q;           /* view of the shared RAM with its rings */
	int qi;
	uint64_t hdr, data, st;  /* pre-allocated: no allocation in threads */
	int failures;
};

static void *mq_run(void *arg)
{
	struct mq_worker *w = arg;
	uint8_t *data = td_ptr(&w->q, w->data);

	for (int i = 0; i < 200; i++) {
		uint64_t sector = (uint64_t)(w->qi * 1000 + (i % 50) * 8);

		for (int rw = 0; rw < 2; rw++) {
			uint32_t type = rw ? T_IN : T_OUT, id, len;
			uint8_t *h = td_ptr(&w->q, w->hdr);
			struct tbuf b[3] = { { w->hdr, 16, 0 },
					     { w->data, 4096, rw },
					     { w->st, 1, 1 } };

			memcpy(h, &type, 4);
			memcpy(h + 8, &sector, 8);
			if (!rw)
				memset(data, (uint8_t)(w->qi * 100 + i), 4096);
			else
				memset(data, 0, 4096);
			*(uint8_t *)td_ptr(&w->q, w->st) = NO_STATUS;
			td_post(&w->q, b, 3, 0);
			virtio__kick(vdev, w->qi);
			int got = 0;
			for (int k = 0; k < 20000 && !got; k++) {
				got = td_used(&w->q, &id, &len);
				if (!got && iothread)
					usleep(200);
			}
			if (!got || *(uint8_t *)td_ptr(&w->q, w->st) != S_OK)
				w->failures++;
		}
		for (int j = 0; j < 4096; j++)
			if (data[j] != (uint8_t)(w->qi * 100 + i)) {
				w->failures++;
				break;
			}
	}
	return NULL;
}

START_TEST(multi_queue_in_parallel)
{
	struct virtio_blk_opts bo = { .queue_size = 16, .num_queues = 4,
				      .iothread = iothread };
	struct mq_worker w[2];
	pthread_t t[2];
	uint16_t nq;

	virtio__dev_free(vdev);
	ck_assert_int_eq(virtio_blk__new(img, &bo, &d.mem, &vdev), 0);
	vdev->signal = count_irq;
	ck_assert(vdev->features & (1ull << 12));        /* F_MQ */
	memcpy(&nq, vdev->config + 34, 2);
	ck_assert_uint_eq(nq, 4);
	ck_assert_int_eq(vdev->num_queues, 4);
	for (int i = 0; i < 2; i++) {
		td_rings(&d, 16);
		w[i].q = d;
		w[i].qi = i;
		w[i].hdr = td_alloc(&d, 16, 8);
		w[i].data = td_alloc(&d, 4096, 4096);
		w[i].st = td_alloc(&d, 1, 1);
		w[i].failures = 0;
		td_attach(&w[i].q, vdev, i, 0);
	}
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, mq_run, &w[i]), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	ck_assert_int_eq(w[0].failures, 0);
	ck_assert_int_eq(w[1].failures, 0);
	struct virtio_blk_stats st;
	virtio_blk__stats(vdev, &st);
	ck_assert_uint_eq(st.writes, 400);
	ck_assert_uint_eq(st.reads, 400);
	/* A request on a queue the driver never enabled goes nowhere. */
	virtio__kick(vdev, 3);
	virtio__kick(vdev, 7);
	bo.num_queues = 9;
	struct virtio_dev *bad;
	ck_assert_int_eq(virtio_blk__new(img, &bo, &d.mem, &bad), -EINVAL);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("virtio_blk");
	TCase *tc = tcase_create("virtio_blk");
	TCase *tio = tcase_create("virtio_blk_iothread");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, write_then_read);
	tcase_add_test(tc, multi_segment_direct_and_indirect);
	tcase_add_test(tc, merged_framing);
	tcase_add_test(tc, flush_and_get_id);
	tcase_add_test(tc, discard_and_write_zeroes);
	tcase_add_test(tc, discard_refusals_leave_disk_alone);
	tcase_add_test(tc, out_of_range_sectors);
	tcase_add_test(tc, malformed_requests);
	tcase_add_test(tc, buffer_outside_memory_needs_reset);
	tcase_add_test(tc, read_only_disk_refuses_writes);
	tcase_add_test(tc, config_space);
	tcase_add_test(tc, many_requests_in_one_kick);
	tcase_add_test(tc, every_writable_format_behaves_the_same);
	tcase_add_test(tc, random_rings_never_crash);
	tcase_add_test(tc, multi_queue_in_parallel);
	tcase_add_checked_fixture(tio, setup_iothread, teardown);
	tcase_add_test(tio, write_then_read);
	tcase_add_test(tio, multi_segment_direct_and_indirect);
	tcase_add_test(tio, merged_framing);
	tcase_add_test(tio, flush_and_get_id);
	tcase_add_test(tio, discard_and_write_zeroes);
	tcase_add_test(tio, discard_refusals_leave_disk_alone);
	tcase_add_test(tio, out_of_range_sectors);
	tcase_add_test(tio, malformed_requests);
	tcase_add_test(tio, buffer_outside_memory_needs_reset);
	tcase_add_test(tio, read_only_disk_refuses_writes);
	tcase_add_test(tio, config_space);
	tcase_add_test(tio, many_requests_in_one_kick);
	tcase_add_test(tio, every_writable_format_behaves_the_same);
	tcase_add_test(tio, multi_queue_in_parallel);
	suite_add_tcase(s, tio);
	suite_add_tcase(s, tc);
	return fx_run_suite(s);
}
