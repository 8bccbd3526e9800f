/*
 * virtqueue.h - the device side of a virtio 1.x split virtqueue.
 *
 * Layout (virtio 1.2, 2.7): a descriptor table of `num` 16-byte entries, a
 * driver ("available") ring and a device ("used") ring, all in guest RAM at
 * addresses the driver picks.  The transport fills desc_gpa/avail_gpa/
 * used_gpa/num and calls virtq__enable(); the device model then loops
 *
 *     while ((r = virtq__pop(vq, chain)) > 0) {
 *             ... read chain->iov[0 .. nr_out), fill the nr_in after ...
 *             virtq__push(vq, chain->head, bytes_written);
 *     }
 *     if (r < 0) -> the driver is broken: mark the device NEEDS_RESET
 *     if (virtq__should_notify(vq)) -> interrupt the driver
 *
 * Every guest address goes through guest_mem__ptr().  The ring pointers are
 * checked once at enable time (guest RAM mappings never move while the VM
 * exists); every buffer is checked when its chain is popped.  Each
 * descriptor is copied out of guest memory once and only the copy is used,
 * so a guest rewriting a descriptor under our feet cannot make us use a
 * value we did not check.
 *
 * What counts as a broken driver (virtq__pop returns -EIO, the queue stops,
 * virtio__error() says what): avail->idx more than `num` entries ahead, a
 * head or next index >= the table size, a chain that visits more
 * descriptors than its table holds (a loop), an indirect descriptor when
 * VIRTIO_F_INDIRECT_DESC was not negotiated, an indirect table inside an
 * indirect table, an indirect descriptor with NEXT, an indirect table
 * whose length is 0, not a multiple of 16 or above VIRTQ_MAX_INDIRECT
 * entries, a device-readable buffer after a device-writable one, or any
 * buffer outside guest RAM.
 *
 * Locking: one thread at a time per queue: callers hold vq->lock around
 * pop/push/should_notify (the transport's reset takes it too).
 */
#ifndef RUNTIME_VIRTIO_VIRTQUEUE_H
#define RUNTIME_VIRTIO_VIRTQUEUE_H

#include <pthread.h>
#include <stdint.h>
#include <sys/uio.h>

#include "runtime/guestmem.h"

#define VIRTQ_MAX_SIZE 256        /* largest queue size we offer */
#define VIRTQ_MAX_INDIRECT 256    /* entries in one indirect table */
#define VIRTQ_MAX_SEGS (VIRTQ_MAX_SIZE + VIRTQ_MAX_INDIRECT)

/* Ring layout, little-endian in guest memory. */
#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_DESC_F_INDIRECT 4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY 1

struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct virtq_used_elem {
	uint32_t id;
	uint32_t len;
};

/* Feature bits the ring honours (virtio 1.2, 6). */
#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX 29

/* One popped descriptor chain: nr_out device-readable buffers, then nr_in
 * device-writable ones. */
struct virtq_chain {
	uint16_t head;
	uint16_t nr_out, nr_in;
	uint64_t out_len, in_len;    /* byte totals */
	struct iovec iov[VIRTQ_MAX_SEGS];
};

struct virtq {
	/* Written by the transport while the queue is not ready. */
	uint16_t num_max;            /* what the device offers (power of 2) */
	uint16_t num;                /* what the driver chose */
	uint64_t desc_gpa, avail_gpa, used_gpa;

	/* Set by virtq__enable. */
	int ready;
	int broken;
	int event_idx, indirect;     /* negotiated ring features */
	const struct guest_mem *mem;
	uint8_t *desc, *avail, *used; /* host views of the three areas */

	uint16_t last_avail;         /* next avail ring slot to consume */
	uint16_t used_idx;           /* our copy of used->idx */
	uint16_t signalled_used;     /* used_idx at the last interrupt */
	int signalled_valid;

	pthread_mutex_t lock;
};

void virtq__init(struct virtq *vq, uint16_t num_max);
void virtq__destroy(struct virtq *vq);

/* Back to the post-reset state (not ready, num = num_max, addresses 0). */
void virtq__reset(struct virtq *vq);

/* Validate the driver's layout and start using it.  `features` are the
 * negotiated feature bits.  Returns 0 or -EINVAL (message in
 * virtio__error(): queue size not a power of two in 1..num_max, an area
 * misaligned or outside guest RAM). */
int virtq__enable(struct virtq *vq, const struct guest_mem *mem,
		  uint64_t features);

/* Take the next available chain.  1: *c filled; 0: ring empty; -EIO: the
 * driver broke the ring rules (see above; the queue is now broken). */
int virtq__pop(struct virtq *vq, struct virtq_chain *c);

/* Return chain `head` to the driver with `len` bytes written into its
 * device-writable buffers. */
void virtq__push(struct virtq *vq, uint16_t head, uint32_t len);

/* After one or more pushes: does the driver want an interrupt now?
 * (VIRTQ_AVAIL_F_NO_INTERRUPT, or used_event with VIRTIO_F_EVENT_IDX.) */
int virtq__should_notify(struct virtq *vq);

/* iovec helpers: copy between a flat buffer and the byte range
 * [off, off+len) of an iovec array.  They return the number of bytes
 * copied (less than len if the iovecs are shorter). */
size_t iov__to_buf(const struct iovec *iov, int n, size_t off, void *buf,
		   size_t len);
size_t iov__from_buf(const struct iovec *iov, int n, size_t off,
		     const void *buf, size_t len);

#endif /* RUNTIME_VIRTIO_VIRTQUEUE_H */
