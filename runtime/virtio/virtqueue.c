/*
 * virtqueue.c - split virtqueue, device side (see virtqueue.h for the
 * rules a driver must follow and what happens when it does not).
 *
 * Memory ordering follows virtio 1.2, 2.7.13: the driver publishes
 * avail->idx after the ring entry and descriptors (we load it with acquire
 * semantics before reading them); we publish used->idx after the used
 * element (release).  Before deciding whether to interrupt, a full fence
 * orders our used->idx store against the load of the driver's suppression
 * fields, and before going idle a full fence orders our avail_event store
 * against the re-read of avail->idx; without them either side could miss
 * the other's update and the queue would stall.
 */
#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "runtime/virtio/virtio.h"

/* Offsets inside the rings. */
#define AVAIL_FLAGS 0
#define AVAIL_IDX 2
#define AVAIL_RING 4
#define USED_FLAGS 0
#define USED_IDX 2
#define USED_RING 4

static uint16_t ld16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, 2);
	return le16toh(v);
}

static void st16(uint8_t *p, uint16_t v)
{
	v = htole16(v);
	memcpy(p, &v, 2);
}

/* Atomic 16-bit accesses for the index fields the other side polls; the
 * rings are 2-byte aligned (checked at enable), so these are single
 * aligned accesses. */
static uint16_t ld16_acquire(const uint8_t *p)
{
	return le16toh(__atomic_load_n((const uint16_t *)(const void *)p,
				       __ATOMIC_ACQUIRE));
}

static void st16_release(uint8_t *p, uint16_t v)
{
	__atomic_store_n((uint16_t *)(void *)p, htole16(v), __ATOMIC_RELEASE);
}

void virtq__init(struct virtq *vq, uint16_t num_max)
{
	memset(vq, 0, sizeof(*vq));
	pthread_mutex_init(&vq->lock, NULL);
	vq->num_max = num_max;
	vq->num = num_max;
}

void virtq__destroy(struct virtq *vq)
{
	pthread_mutex_destroy(&vq->lock);
}

void virtq__reset(struct virtq *vq)
{
	vq->num = vq->num_max;
	vq->desc_gpa = vq->avail_gpa = vq->used_gpa = 0;
	vq->ready = vq->broken = 0;
	vq->event_idx = vq->indirect = 0;
	vq->desc = vq->avail = vq->used = NULL;
	vq->last_avail = vq->used_idx = vq->signalled_used = 0;
	vq->signalled_valid = 0;
}

int virtq__enable(struct virtq *vq, const struct guest_mem *mem,
		  uint64_t features)
{
	uint64_t n = vq->num;
	uint64_t desc_len = 16 * n, avail_len = 6 + 2 * n,
		 used_len = 6 + 8 * n;

	if (n == 0 || n > vq->num_max || (n & (n - 1)))
		return virtio__err(EINVAL, "queue size %llu is not a power "
				   "of two in 1..%u", (unsigned long long)n,
				   vq->num_max);
	/* Alignment from virtio 1.2, 2.7: 16, 2 and 4 bytes. */
	if (vq->desc_gpa & 15 || vq->avail_gpa & 1 || vq->used_gpa & 3)
		return virtio__err(EINVAL, "misaligned ring: descriptors at "
				   "0x%llx, driver area at 0x%llx, device area "
				   "at 0x%llx",
				   (unsigned long long)vq->desc_gpa,
				   (unsigned long long)vq->avail_gpa,
				   (unsigned long long)vq->used_gpa);
	vq->desc = guest_mem__ptr(mem, vq->desc_gpa, desc_len);
	vq->avail = guest_mem__ptr(mem, vq->avail_gpa, avail_len);
	vq->used = guest_mem__ptr(mem, vq->used_gpa, used_len);
	if (!vq->desc || !vq->avail || !vq->used) {
		const char *what = !vq->desc ? "descriptor table" :
				   !vq->avail ? "driver area" : "device area";
		uint64_t gpa = !vq->desc ? vq->desc_gpa : !vq->avail ?
			       vq->avail_gpa : vq->used_gpa;
		uint64_t len = !vq->desc ? desc_len : !vq->avail ? avail_len
								  : used_len;

		vq->desc = vq->avail = vq->used = NULL;
		return virtio__err(EINVAL, "%s at 0x%llx (+%llu) is outside "
				   "guest RAM", what, (unsigned long long)gpa,
				   (unsigned long long)len);
	}
	vq->mem = mem;
	vq->event_idx = !!(features & (1ull << VIRTIO_F_EVENT_IDX));
	vq->indirect = !!(features & (1ull << VIRTIO_F_INDIRECT_DESC));
	vq->last_avail = vq->used_idx = vq->signalled_used = 0;
	vq->signalled_valid = 0;
	vq->broken = 0;
	vq->ready = 1;
	return 0;
}

static int broken(struct virtq *vq, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Mark the queue broken and record why; returns -EIO. */
static int broken(struct virtq *vq, const char *fmt, ...)
{
	char msg[200];
	va_list ap;

	vq->broken = 1;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return virtio__err(EIO, "virtqueue: %s", msg);
}

/* Read descriptor `i` of a table at `table` (host pointer, alignment not
 * assumed for indirect tables) into *d, converting from little-endian. */
static void read_desc(const uint8_t *table, unsigned i, struct virtq_desc *d)
{
	struct virtq_desc raw;

	memcpy(&raw, table + 16 * (size_t)i, 16);
	d->addr = le64toh(raw.addr);
	d->len = le32toh(raw.len);
	d->flags = le16toh(raw.flags);
	d->next = le16toh(raw.next);
}

int virtq__pop(struct virtq *vq, struct virtq_chain *c)
{
	uint16_t avail_idx, pending;
	const uint8_t *table;
	unsigned table_n, idx, steps = 0, nseg = 0;
	int in_indirect = 0;

	if (!vq->ready)
		return 0;
	if (vq->broken)
		return virtio__err(EIO, "virtqueue: broken, needs reset");
	avail_idx = ld16_acquire(vq->avail + AVAIL_IDX);
	if (avail_idx == vq->last_avail && vq->event_idx) {
		/* Going idle: ask for a notification at the next buffer,
		 * then look again in case one arrived meanwhile. */
		st16(vq->used + USED_RING + 8 * (size_t)vq->num,
		     vq->last_avail);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		avail_idx = ld16_acquire(vq->avail + AVAIL_IDX);
	}
	if (avail_idx == vq->last_avail)
		return 0;
	pending = (uint16_t)(avail_idx - vq->last_avail);
	if (pending > vq->num)
		return broken(vq, "avail idx %u is more than the queue size "
			      "ahead of the device (at %u)", avail_idx,
			      vq->last_avail);

	c->head = ld16(vq->avail + AVAIL_RING +
		       2 * (size_t)(vq->last_avail & (vq->num - 1)));
	if (c->head >= vq->num)
		return broken(vq, "head index %u out of range (queue size "
			      "%u)", c->head, vq->num);
	c->nr_out = c->nr_in = 0;
	c->out_len = c->in_len = 0;

	table = vq->desc;
	table_n = vq->num;
	idx = c->head;
	for (;;) {
		struct virtq_desc d;

		/* A chain can visit each entry of its table at most once;
		 * one more step means it loops. */
		if (++steps > table_n)
			return broken(vq, "descriptor chain at head %u is "
				      "longer than its table (%u entries): "
				      "loop", c->head, table_n);
		read_desc(table, idx, &d);
		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			if (!vq->indirect)
				return broken(vq, "indirect descriptor %u "
					      "without VIRTIO_F_INDIRECT_DESC",
					      idx);
			if (in_indirect)
				return broken(vq, "nested indirect table at "
					      "descriptor %u (head %u)", idx,
					      c->head);
			if (d.flags & VIRTQ_DESC_F_NEXT)
				return broken(vq, "indirect descriptor %u "
					      "has NEXT set (head %u)", idx,
					      c->head);
			if (d.len == 0 || d.len % 16 ||
			    d.len / 16 > VIRTQ_MAX_INDIRECT)
				return broken(vq, "indirect table length %u "
					      "is not a multiple of 16 in "
					      "16..%u", d.len,
					      16 * VIRTQ_MAX_INDIRECT);
			table = guest_mem__ptr(vq->mem, d.addr, d.len);
			if (!table)
				return broken(vq, "indirect table of %u bytes "
					      "(head %u) is outside guest RAM",
					      d.len, c->head);
			table_n = d.len / 16;
			idx = 0;
			steps = 0;
			in_indirect = 1;
			continue;
		}
		if (d.len) {
			void *p = guest_mem__ptr(vq->mem, d.addr, d.len);

			if (!p)
				return broken(vq, "buffer of %u bytes in "
					      "chain %u is outside guest RAM",
					      d.len, c->head);
			if (nseg == VIRTQ_MAX_SEGS)
				return broken(vq, "chain %u has more than %u "
					      "buffers", c->head,
					      VIRTQ_MAX_SEGS);
			if (d.flags & VIRTQ_DESC_F_WRITE) {
				c->nr_in++;
				c->in_len += d.len;
			} else {
				if (c->nr_in)
					return broken(vq, "chain %u: device-"
						      "readable buffer after a "
						      "writable one (entry %u)",
						      c->head, idx);
				c->nr_out++;
				c->out_len += d.len;
			}
			c->iov[nseg].iov_base = p;
			c->iov[nseg].iov_len = d.len;
			nseg++;
		}
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			break;
		idx = d.next;
		if (idx >= table_n)
			return broken(vq, "next index %u out of range (table "
				      "of %u entries)", idx, table_n);
	}
	vq->last_avail++;
	return 1;
}

void virtq__push(struct virtq *vq, uint16_t head, uint32_t len)
{
	uint8_t *e = vq->used + USED_RING +
		     8 * (size_t)(vq->used_idx & (vq->num - 1));
	struct virtq_used_elem el = { htole32(head), htole32(len) };

	memcpy(e, &el, sizeof(el));
	vq->used_idx++;
	st16_release(vq->used + USED_IDX, vq->used_idx);
}

int virtq__should_notify(struct virtq *vq)
{
	uint16_t old = vq->signalled_used, cur = vq->used_idx;
	int valid = vq->signalled_valid;

	if (!vq->ready)
		return 0;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	vq->signalled_used = cur;
	vq->signalled_valid = 1;
	if (valid && old == cur)
		return 0;       /* nothing new since the last interrupt */
	if (!vq->event_idx)
		return !(ld16_acquire(vq->avail + AVAIL_FLAGS) &
			 VIRTQ_AVAIL_F_NO_INTERRUPT);
	if (!valid)
		return 1;
	/* vring_need_event(): interrupt if used_event lies in (old, cur]. */
	uint16_t ev = ld16_acquire(vq->avail + AVAIL_RING +
				   2 * (size_t)vq->num);
	return (uint16_t)(cur - ev - 1) < (uint16_t)(cur - old);
}

size_t iov__to_buf(const struct iovec *iov, int n, size_t off, void *buf,
		   size_t len)
{
	uint8_t *out = buf;
	size_t done = 0;

	for (int i = 0; i < n && done < len; i++) {
		size_t l = iov[i].iov_len;

		if (off >= l) {
			off -= l;
			continue;
		}
		size_t take = l - off;
		if (take > len - done)
			take = len - done;
		memcpy(out + done, (uint8_t *)iov[i].iov_base + off, take);
		done += take;
		off = 0;
	}
	return done;
}

size_t iov__from_buf(const struct iovec *iov, int n, size_t off,
		     const void *buf, size_t len)
{
	const uint8_t *in = buf;
	size_t done = 0;

	for (int i = 0; i < n && done < len; i++) {
		size_t l = iov[i].iov_len;

		if (off >= l) {
			off -= l;
			continue;
		}
		size_t take = l - off;
		if (take > len - done)
			take = len - done;
		memcpy((uint8_t *)iov[i].iov_base + off, in + done, take);
		done += take;
		off = 0;
	}
	return done;
}
