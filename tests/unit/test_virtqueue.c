/*
 * test_virtqueue.c - the split-ring walker against well-formed and hostile
 * drivers (the test plays the driver; see test_virtio_driver.h).
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "test_virtio_driver.h"
#include "fixture-run.h"

static struct tdrv d;
static struct virtq vq;
static struct virtq_chain ch;

static void setup(void)
{
	td_init(&d);
	virtq__init(&vq, VIRTQ_MAX_SIZE);
}

static void teardown(void)
{
	virtq__destroy(&vq);
	td_fini(&d);
}

static int enable(uint16_t num, uint64_t features)
{
	vq.num = num;
	vq.desc_gpa = d.desc;
	vq.avail_gpa = d.avail;
	vq.used_gpa = d.used;
	return virtq__enable(&vq, &d.mem, features);
}

static void up(uint16_t num, uint64_t features)
{
	td_rings(&d, num);
	ck_assert_msg(enable(num, features) == 0, "%s", virtio__error());
}

#define F_INDIRECT (1ull << VIRTIO_F_INDIRECT_DESC)
#define F_EVENT (1ull << VIRTIO_F_EVENT_IDX)

static void expect_broken(const char *why)
{
	ck_assert_int_eq(virtq__pop(&vq, &ch), -EIO);
	ck_assert_msg(strstr(virtio__error(), why), "message '%s' lacks '%s'",
		      virtio__error(), why);
	ck_assert(vq.broken);
	/* Stays broken: no further chains are taken. */
	ck_assert_int_eq(virtq__pop(&vq, &ch), -EIO);
}

START_TEST(chain_splits_readable_and_writable)
{
	uint64_t a = td_alloc(&d, 100, 8), b = td_alloc(&d, 200, 8),
		 c = td_alloc(&d, 50, 8);
	struct tbuf bufs[3] = { { a, 100, 0 }, { b, 200, 0 }, { c, 50, 1 } };
	uint32_t id, len;

	up(8, 0);
	ck_assert_int_eq(virtq__pop(&vq, &ch), 0);
	uint16_t head = td_post(&d, bufs, 3, 0);
	ck_assert_int_eq(virtq__pop(&vq, &ch), 1);
	ck_assert_uint_eq(ch.head, head);
	ck_assert_uint_eq(ch.nr_out, 2);
	ck_assert_uint_eq(ch.nr_in, 1);
	ck_assert_uint_eq(ch.out_len, 300);
	ck_assert_uint_eq(ch.in_len, 50);
	ck_assert_ptr_eq(ch.iov[0].iov_base, td_ptr(&d, a));
	ck_assert_ptr_eq(ch.iov[1].iov_base, td_ptr(&d, b));
	ck_assert_ptr_eq(ch.iov[2].iov_base, td_ptr(&d, c));
	ck_assert_int_eq(virtq__pop(&vq, &ch), 0);
	ck_assert_int_eq(td_used(&d, &id, &len), 0);
	virtq__push(&vq, head, 7);
	ck_assert_int_eq(td_used(&d, &id, &len), 1);
	ck_assert_uint_eq(id, head);
	ck_assert_uint_eq(len, 7);
}
END_TEST

START_TEST(indirect_chain_is_walked)
{
	uint64_t a = td_alloc(&d, 16, 8), b = td_alloc(&d, 4096, 8),
		 c = td_alloc(&d, 1, 1);
	struct tbuf bufs[3] = { { a, 16, 0 }, { b, 4096, 1 }, { c, 1, 1 } };

	up(4, F_INDIRECT);
	td_post(&d, bufs, 3, 1);
	ck_assert_int_eq(virtq__pop(&vq, &ch), 1);
	ck_assert_uint_eq(ch.nr_out, 1);
	ck_assert_uint_eq(ch.nr_in, 2);
	ck_assert_uint_eq(ch.in_len, 4097);
	ck_assert_ptr_eq(ch.iov[2].iov_base, td_ptr(&d, c));
}
END_TEST

START_TEST(indirect_without_feature_is_refused)
{
	uint64_t a = td_alloc(&d, 16, 8);
	struct tbuf bufs[1] = { { a, 16, 0 } };

	up(4, 0);
	td_post(&d, bufs, 1, 1);
	expect_broken("without VIRTIO_F_INDIRECT_DESC");
}
END_TEST

START_TEST(nested_indirect_is_refused)
{
	uint64_t inner = td_alloc(&d, 16, 16), outer = td_alloc(&d, 16, 16);

	up(4, F_INDIRECT);
	td_set_desc(&d, inner, 0, td_alloc(&d, 8, 8), 8, 0, 0);
	td_set_desc(&d, outer, 0, inner, 16, VIRTQ_DESC_F_INDIRECT, 0);
	td_set_desc(&d, d.desc, 0, outer, 16, VIRTQ_DESC_F_INDIRECT, 0);
	td_publish(&d, 0);
	expect_broken("nested indirect");
}
END_TEST

START_TEST(indirect_bad_lengths_are_refused)
{
	static const uint32_t lens[] = { 0, 15, 24, 16 * (VIRTQ_MAX_INDIRECT
							    + 1) };

	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		uint64_t tbl = td_alloc(&d, 16 * (VIRTQ_MAX_INDIRECT + 1), 16);

		virtq__reset(&vq);
		up(4, F_INDIRECT);
		td_set_desc(&d, d.desc, 0, tbl, lens[i], VIRTQ_DESC_F_INDIRECT,
			    0);
		td_publish(&d, 0);
		expect_broken("indirect table length");
	}
}
END_TEST

START_TEST(indirect_with_next_is_refused)
{
	uint64_t tbl = td_alloc(&d, 16, 16);

	up(4, F_INDIRECT);
	td_set_desc(&d, tbl, 0, td_alloc(&d, 8, 8), 8, 0, 0);
	td_set_desc(&d, d.desc, 0, tbl, 16,
		    VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1);
	td_publish(&d, 0);
	expect_broken("has NEXT");
}
END_TEST

START_TEST(looping_chain_is_refused)
{
	uint64_t buf = td_alloc(&d, 8, 8);

	up(4, 0);
	td_set_desc(&d, d.desc, 0, buf, 8, VIRTQ_DESC_F_NEXT, 1);
	td_set_desc(&d, d.desc, 1, buf, 8, VIRTQ_DESC_F_NEXT, 0);
	td_publish(&d, 0);
	expect_broken("loop");
}
END_TEST

START_TEST(looping_indirect_chain_is_refused)
{
	uint64_t tbl = td_alloc(&d, 32, 16), buf = td_alloc(&d, 8, 8);

	up(4, F_INDIRECT);
	td_set_desc(&d, tbl, 0, buf, 8, VIRTQ_DESC_F_NEXT, 1);
	td_set_desc(&d, tbl, 1, buf, 8, VIRTQ_DESC_F_NEXT, 1);
	td_set_desc(&d, d.desc, 0, tbl, 32, VIRTQ_DESC_F_INDIRECT, 0);
	td_publish(&d, 0);
	expect_broken("loop");
}
END_TEST

START_TEST(chain_as_long_as_the_queue_is_fine)
{
	struct tbuf bufs[16];

	up(16, 0);
	for (int i = 0; i < 16; i++)
		bufs[i] = (struct tbuf){ td_alloc(&d, 8, 8), 8, i >= 8 };
	td_post(&d, bufs, 16, 0);
	ck_assert_int_eq(virtq__pop(&vq, &ch), 1);
	ck_assert_uint_eq(ch.nr_out + ch.nr_in, 16);
}
END_TEST

START_TEST(indices_out_of_range_are_refused)
{
	uint64_t buf = td_alloc(&d, 8, 8);

	up(4, 0);
	td_publish(&d, 4);        /* head == queue size */
	expect_broken("head index 4");

	virtq__reset(&vq);
	up(4, 0);
	td_set_desc(&d, d.desc, 0, buf, 8, VIRTQ_DESC_F_NEXT, 9);
	td_publish(&d, 0);
	expect_broken("next index 9");
}
END_TEST

START_TEST(buffers_outside_guest_ram_are_refused)
{
	static const uint64_t bad[][2] = {
		{ 0, 8 },                                     /* below RAM */
		{ TD_GPA_BASE + TD_RAM_SIZE - 4, 8 },          /* crosses end */
		{ TD_GPA_BASE + TD_RAM_SIZE, 1 },              /* just past */
		{ UINT64_MAX - 2, 8 },                         /* wraps */
		{ TD_GPA_BASE, 0xFFFFFFFFu },                  /* too long */
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct tbuf b = { bad[i][0], (uint32_t)bad[i][1], 1 };

		virtq__reset(&vq);
		up(4, 0);
		td_post(&d, &b, 1, 0);
		expect_broken("outside guest RAM");
	}
	/* An indirect table outside RAM too. */
	virtq__reset(&vq);
	up(4, F_INDIRECT);
	td_set_desc(&d, d.desc, 0, TD_GPA_BASE + TD_RAM_SIZE - 8, 16,
		    VIRTQ_DESC_F_INDIRECT, 0);
	td_publish(&d, 0);
	expect_broken("outside guest RAM");
}
END_TEST

START_TEST(readable_after_writable_is_refused)
{
	uint64_t a = td_alloc(&d, 8, 8);
	struct tbuf bufs[2] = { { a, 8, 1 }, { a, 8, 0 } };

	up(4, 0);
	td_post(&d, bufs, 2, 0);
	expect_broken("readable buffer after a writable");
}
END_TEST

START_TEST(avail_idx_far_ahead_is_refused)
{
	uint64_t a = td_alloc(&d, 8, 8);

	up(8, 0);
	for (int i = 0; i < 8; i++)
		td_set_desc(&d, d.desc, (uint16_t)i, a, 8, 0, 0);
	/* Exactly a queue's worth pending is legal... */
	__atomic_store_n(td_avail_idx(&d), 8, __ATOMIC_RELEASE);
	for (int i = 0; i < 8; i++)
		ck_assert_int_eq(virtq__pop(&vq, &ch), 1);
	ck_assert_int_eq(virtq__pop(&vq, &ch), 0);
	/* ...one more than that is not. */
	__atomic_store_n(td_avail_idx(&d), 8 + 9, __ATOMIC_RELEASE);
	expect_broken("more than the queue size ahead");
}
END_TEST

START_TEST(enable_checks_layout)
{
	td_rings(&d, 8);
	ck_assert_int_eq(enable(6, 0), -EINVAL);
	ck_assert_ptr_nonnull(strstr(virtio__error(), "power of two"));
	ck_assert_int_eq(enable(0, 0), -EINVAL);
	vq.num_max = 8;
	ck_assert_int_eq(enable(16, 0), -EINVAL);
	vq.num_max = VIRTQ_MAX_SIZE;
	d.desc += 8;
	ck_assert_int_eq(enable(8, 0), -EINVAL);
	ck_assert_ptr_nonnull(strstr(virtio__error(), "misaligned"));
	d.desc -= 8;
	d.used = TD_GPA_BASE + TD_RAM_SIZE - 16;
	ck_assert_int_eq(enable(8, 0), -EINVAL);
	ck_assert_ptr_nonnull(strstr(virtio__error(), "device area"));
	ck_assert(!vq.ready);
	/* Not ready: pop takes nothing. */
	ck_assert_int_eq(virtq__pop(&vq, &ch), 0);
}
END_TEST

START_TEST(no_interrupt_flag_suppresses)
{
	uint64_t a = td_alloc(&d, 8, 8);
	struct tbuf b = { a, 8, 1 };

	up(4, 0);
	td_post(&d, &b, 1, 0);
	ck_assert_int_eq(virtq__pop(&vq, &ch), 1);
	virtq__push(&vq, ch.head, 0);
	ck_assert(virtq__should_notify(&vq));
	/* Nothing new: no second interrupt. */
	ck_assert(!virtq__should_notify(&vq));
	*td_avail_flags(&d) = VIRTQ_AVAIL_F_NO_INTERRUPT;
	td_post(&d, &b, 1, 0);
	ck_assert_int_eq(virtq__pop(&vq, &ch), 1);
	virtq__push(&vq, ch.head, 0);
	ck_assert(!virtq__should_notify(&vq));
}
END_TEST

START_TEST(event_idx_suppresses_and_requests)
{
	uint64_t a = td_alloc(&d, 8, 8);
	struct tbuf b = { a, 8, 1 };

	up(8, F_EVENT);
	/* The device asks to be notified at the next buffer when idle. */
	*td_avail_event(&d) = 0xBEEF;
	ck_assert_int_eq(virtq__pop(&vq, &ch), 0);
	ck_assert_uint_eq(*td_avail_event(&d), 0);

	/* First completion always interrupts (no previous signal). */
	td_post(&d, &b, 1, 0);
	ck_assert_int_eq(virtq__pop(&vq, &ch), 1);
	virtq__push(&vq, ch.head, 0);
	ck_assert(virtq__should_notify(&vq));
	ck_assert_int_eq(virtq__pop(&vq, &ch), 0);
	ck_assert_uint_eq(*td_avail_event(&d), 1);

	/* Driver wants an interrupt only once used idx passes 3 (used_event
	 * = 3 means "after the entry with index 3 is used"). */
	*td_used_event(&d) = 3;
	for (int i = 0; i < 3; i++) {
		td_post(&d, &b, 1, 0);
		ck_assert_int_eq(virtq__pop(&vq, &ch), 1);
		virtq__push(&vq, ch.head, 0);
		/* used idx becomes 2, 3, 4 */
		ck_assert_int_eq(virtq__should_notify(&vq), i == 2);
	}
	/* Several completions at once crossing the event: one interrupt. */
	*td_used_event(&d) = 5;
	for (int i = 0; i < 3; i++) {
		td_post(&d, &b, 1, 0);
		ck_assert_int_eq(virtq__pop(&vq, &ch), 1);
		virtq__push(&vq, ch.head, 0);
	}
	ck_assert(virtq__should_notify(&vq));
}
END_TEST

START_TEST(indices_wrap_around)
{
	uint64_t a = td_alloc(&d, 8, 8);
	struct tbuf b = { a, 8, 1 };
	uint32_t id, len;
	const uint16_t start = 65530;

	/* Both sides start just below the 16-bit wrap, as after 65530
	 * requests, so the wrap is crossed in a few steps. */
	up(4, F_EVENT);
	vq.last_avail = vq.used_idx = start;
	d.avail_idx = d.last_used = start;
	*td_avail_idx(&d) = start;
	*(uint16_t *)td_ptr(&d, d.used + 2) = start;
	for (int i = 0; i < 20; i++) {
		uint16_t head = td_post(&d, &b, 1, 0);

		ck_assert_int_eq(virtq__pop(&vq, &ch), 1);
		ck_assert_uint_eq(ch.head, head);
		virtq__push(&vq, ch.head, (uint32_t)i);
		ck_assert_int_eq(td_used(&d, &id, &len), 1);
		ck_assert_uint_eq(len, (uint32_t)i);
		ck_assert_int_eq(virtq__pop(&vq, &ch), 0);
		/* avail_event follows across the wrap too. */
		ck_assert_uint_eq(*td_avail_event(&d), (uint16_t)(start + i + 1));
	}
	ck_assert_uint_eq(vq.last_avail, (uint16_t)(start + 20));
	/* The "too far ahead" check is modular as well. */
	__atomic_store_n(td_avail_idx(&d), (uint16_t)(start + 20 + 5),
			 __ATOMIC_RELEASE);
	expect_broken("more than the queue size ahead");
}
END_TEST

START_TEST(descriptor_is_read_once)
{
	/* The chain is copied: rewriting a descriptor after the pop cannot
	 * change what the device uses. */
	uint64_t a = td_alloc(&d, 64, 8);
	struct tbuf b = { a, 64, 1 };

	up(4, 0);
	td_post(&d, &b, 1, 0);
	ck_assert_int_eq(virtq__pop(&vq, &ch), 1);
	td_set_desc(&d, d.desc, 0, 0, 0xFFFFFFFFu, VIRTQ_DESC_F_WRITE, 0);
	ck_assert_ptr_eq(ch.iov[0].iov_base, td_ptr(&d, a));
	ck_assert_uint_eq(ch.iov[0].iov_len, 64);
}
END_TEST

START_TEST(iov_helpers_respect_offsets)
{
	char x[3] = "ab", y[4] = "cde", out[8] = { 0 };
	struct iovec iov[2] = { { x, 2 }, { y, 3 } };

	ck_assert_uint_eq(iov__to_buf(iov, 2, 1, out, 8), 4);
	ck_assert_str_eq(out, "bcde");
	ck_assert_uint_eq(iov__from_buf(iov, 2, 3, "XY", 2), 2);
	ck_assert_mem_eq(y, "cXY", 3);
	ck_assert_uint_eq(iov__from_buf(iov, 2, 9, "Z", 1), 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("virtqueue");
	TCase *tc = tcase_create("virtqueue");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, chain_splits_readable_and_writable);
	tcase_add_test(tc, indirect_chain_is_walked);
	tcase_add_test(tc, indirect_without_feature_is_refused);
	tcase_add_test(tc, nested_indirect_is_refused);
	tcase_add_test(tc, indirect_bad_lengths_are_refused);
	tcase_add_test(tc, indirect_with_next_is_refused);
	tcase_add_test(tc, looping_chain_is_refused);
	tcase_add_test(tc, looping_indirect_chain_is_refused);
	tcase_add_test(tc, chain_as_long_as_the_queue_is_fine);
	tcase_add_test(tc, indices_out_of_range_are_refused);
	tcase_add_test(tc, buffers_outside_guest_ram_are_refused);
	tcase_add_test(tc, readable_after_writable_is_refused);
	tcase_add_test(tc, avail_idx_far_ahead_is_refused);
	tcase_add_test(tc, enable_checks_layout);
	tcase_add_test(tc, no_interrupt_flag_suppresses);
	tcase_add_test(tc, event_idx_suppresses_and_requests);
	tcase_add_test(tc, indices_wrap_around);
	tcase_add_test(tc, descriptor_is_read_once);
	tcase_add_test(tc, iov_helpers_respect_offsets);
	suite_add_tcase(s, tc);
	return fx_run_suite(s);
}
