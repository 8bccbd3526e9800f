/*
 * test_virtio_driver.h - a tiny virtio driver living in the tests: it owns
 * a buffer that plays guest RAM, lays out split rings in it and posts
 * descriptor chains, so device models run at native speed in-process.
 *
 * Guest RAM starts at TD_GPA_BASE (not 0) so a device that used guest
 * addresses as offsets, or host pointers, would fail loudly.
 */
#ifndef TEST_VIRTIO_DRIVER_H
#define TEST_VIRTIO_DRIVER_H

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/virtio/virtio.h"

#define TD_GPA_BASE 0x100000ull
#define TD_RAM_SIZE (4u << 20)

struct tbuf {
	uint64_t gpa;
	uint32_t len;
	int write;               /* device-writable */
};

struct tdrv {
	uint8_t *ram;
	struct guest_mem mem;
	uint64_t next;           /* bump allocator (gpa) */
	uint16_t num;
	uint64_t desc, avail, used;
	uint16_t next_desc;      /* descriptors are handed out round robin */
	uint16_t avail_idx;      /* driver's copy */
	uint16_t last_used;
};

static inline void td_init(struct tdrv *d)
{
	memset(d, 0, sizeof(*d));
	d->ram = aligned_alloc(4096, TD_RAM_SIZE);
	ck_assert_ptr_nonnull(d->ram);
	memset(d->ram, 0, TD_RAM_SIZE);
	d->mem.nr = 1;
	d->mem.r[0].gpa = TD_GPA_BASE;
	d->mem.r[0].size = TD_RAM_SIZE;
	d->mem.r[0].host = d->ram;
	d->next = TD_GPA_BASE;
}

static inline void td_fini(struct tdrv *d)
{
	free(d->ram);
}

static inline void *td_ptr(struct tdrv *d, uint64_t gpa)
{
	ck_assert_uint_ge(gpa, TD_GPA_BASE);
	ck_assert_uint_lt(gpa, TD_GPA_BASE + TD_RAM_SIZE);
	return d->ram + (gpa - TD_GPA_BASE);
}

static inline uint64_t td_alloc(struct tdrv *d, uint64_t size,
				uint64_t align)
{
	uint64_t at = (d->next + align - 1) & ~(align - 1);

	ck_assert_uint_le(at + size, TD_GPA_BASE + TD_RAM_SIZE);
	d->next = at + size;
	memset(td_ptr(d, at), 0, size);
	return at;
}

/* Lay out rings for a queue of `num` entries. */
static inline void td_rings(struct tdrv *d, uint16_t num)
{
	d->num = num;
	d->desc = td_alloc(d, 16ull * num, 16);
	d->avail = td_alloc(d, 6 + 2ull * num, 2);
	d->used = td_alloc(d, 6 + 8ull * num, 4);
	d->next_desc = d->avail_idx = d->last_used = 0;
}

static inline void td_set_desc(struct tdrv *d, uint64_t table, uint16_t i,
			       uint64_t addr, uint32_t len, uint16_t flags,
			       uint16_t next)
{
	struct virtq_desc *t = td_ptr(d, table + 16ull * i);

	t->addr = addr;
	t->len = len;
	t->flags = flags;
	t->next = next;
}

static inline uint16_t *td_avail_idx(struct tdrv *d)
{
	return td_ptr(d, d->avail + 2);
}

static inline uint16_t *td_avail_flags(struct tdrv *d)
{
	return td_ptr(d, d->avail);
}

static inline uint16_t *td_used_event(struct tdrv *d)
{
	return td_ptr(d, d->avail + 4 + 2ull * d->num);
}

static inline uint16_t *td_avail_event(struct tdrv *d)
{
	return td_ptr(d, d->used + 4 + 8ull * d->num);
}

/* Publish `head` in the available ring. */
static inline void td_publish(struct tdrv *d, uint16_t head)
{
	uint16_t *ring = td_ptr(d, d->avail + 4);

	ring[d->avail_idx & (d->num - 1)] = head;
	d->avail_idx++;
	__atomic_store_n(td_avail_idx(d), d->avail_idx, __ATOMIC_RELEASE);
}

/* Post a chain of `n` buffers, directly in the table or (indirect) through
 * one indirect table.  Returns the head index. */
static inline uint16_t td_post(struct tdrv *d, const struct tbuf *b, int n,
			       int indirect)
{
	uint16_t head = d->next_desc;

	if (indirect) {
		uint64_t tbl = td_alloc(d, 16ull * n, 16);

		for (int i = 0; i < n; i++)
			td_set_desc(d, tbl, (uint16_t)i, b[i].gpa, b[i].len,
				    (uint16_t)((b[i].write ? VIRTQ_DESC_F_WRITE
					       : 0) |
				    (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0)),
				    (uint16_t)(i + 1));
		td_set_desc(d, d->desc, head, tbl, 16u * n,
			    VIRTQ_DESC_F_INDIRECT, 0);
		d->next_desc = (uint16_t)((head + 1) & (d->num - 1));
	} else {
		for (int i = 0; i < n; i++) {
			uint16_t at = d->next_desc;
			uint16_t nx = (uint16_t)((at + 1) & (d->num - 1));

			td_set_desc(d, d->desc, at, b[i].gpa, b[i].len,
				    (uint16_t)((b[i].write ? VIRTQ_DESC_F_WRITE
					       : 0) |
				    (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0)), nx);
			d->next_desc = nx;
		}
	}
	td_publish(d, head);
	return head;
}

/* Next used element, if any. */
static inline int td_used(struct tdrv *d, uint32_t *id, uint32_t *len)
{
	uint16_t idx = __atomic_load_n((uint16_t *)td_ptr(d, d->used + 2),
				       __ATOMIC_ACQUIRE);
	struct virtq_used_elem *e;

	if (idx == d->last_used)
		return 0;
	e = td_ptr(d, d->used + 4 + 8ull * (d->last_used & (d->num - 1)));
	*id = e->id;
	*len = e->len;
	d->last_used++;
	return 1;
}

/* Bring queue `q` of `vdev` up without a transport (the PCI tests do it
 * through registers). */
static inline void td_attach(struct tdrv *d, struct virtio_dev *vdev, int q,
			     uint64_t features)
{
	struct virtq *vq = &vdev->vqs[q];

	vdev->driver_features = features | (1ull << VIRTIO_F_VERSION_1);
	vdev->status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
		       VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK;
	vq->num = d->num;
	vq->desc_gpa = d->desc;
	vq->avail_gpa = d->avail;
	vq->used_gpa = d->used;
	ck_assert_msg(virtq__enable(vq, &d->mem, vdev->driver_features) == 0,
		      "%s", virtio__error());
}

#endif /* TEST_VIRTIO_DRIVER_H */
