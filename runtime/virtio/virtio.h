/*
 * virtio.h - transport-independent virtio 1.x devices.
 *
 * A device model (blk.c, rng.c, net.c) fills a struct virtio_dev: its
 * device id, feature bits, queues, config space bytes and callbacks.  A
 * transport (virtio-pci.c) exposes it to the guest: feature negotiation,
 * the status register, queue setup, notifications and interrupts.  The
 * model never knows which transport it is on, and the transport never
 * looks inside a request.
 *
 * Errors: negative errno, message in virtio__error() (thread-local).  The
 * library never prints and never exits; a misbehaving driver makes the
 * device set NEEDS_RESET (virtio 1.2, 2.1.1) instead.
 *
 * Threads and system calls after setup (for the monitor's seccomp filter):
 * blk runs on the notifying vCPU thread and uses what imgfmt uses (pread,
 * pwrite, fdatasync/fsync, fallocate for discard/write-zeroes); rng calls
 * getrandom; net transmits with sendmsg/poll on the vCPU thread and
 * receives on its own thread with poll, read and eventfd read/write
 * (plus futex for locks everywhere).
 */
#ifndef RUNTIME_VIRTIO_VIRTIO_H
#define RUNTIME_VIRTIO_VIRTIO_H

#include <pthread.h>
#include <stdint.h>

#include "runtime/guestmem.h"
#include "runtime/virtio/virtqueue.h"

/* Device status bits (virtio 1.2, 2.1). */
#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER 2
#define VIRTIO_STATUS_DRIVER_OK 4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED 0x80

/* Reserved feature bits (virtio 1.2, 6). */
#define VIRTIO_F_VERSION_1 32

/* Device ids (virtio 1.2, 5). */
#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLOCK 2
#define VIRTIO_ID_RNG 4

/* Interrupt reasons (the ISR status bits of virtio-pci). */
#define VIRTIO_ISR_QUEUE 1
#define VIRTIO_ISR_CONFIG 2

#define VIRTIO_MAX_QUEUES 8

struct virtio_dev;

struct virtio_dev_ops {
	/* The driver notified queue `q` (or the transport wants it polled).
	 * Called with vdev->vqs[q].lock held, only while the queue is ready
	 * and not broken, from a vCPU thread. */
	void (*queue_notify)(struct virtio_dev *vdev, int q);
	/* The driver reset the device (status 0): drop in-flight state.
	 * Queues are already reset.  Optional. */
	void (*reset)(struct virtio_dev *vdev);
	/* Driver wrote config bytes [off, off+len) (already stored in
	 * vdev->config if the range is writable).  Optional. */
	void (*config_write)(struct virtio_dev *vdev, uint32_t off,
			     uint32_t len);
	/* Stop the model's background threads; called first by
	 * virtio__dev_free, while the queues still exist.  Optional. */
	void (*stop)(struct virtio_dev *vdev);
	/* Release the model's state (vdev->priv).  Optional. */
	void (*free)(struct virtio_dev *vdev);
};

struct virtio_dev {
	const char *name;            /* "virtio-blk", for messages */
	uint16_t device_id;          /* VIRTIO_ID_* */
	uint64_t features;           /* offered, incl. VERSION_1 and ring bits */
	uint64_t driver_features;    /* accepted by the driver */
	uint8_t status;
	uint8_t config_generation;
	int num_queues;
	struct virtq vqs[VIRTIO_MAX_QUEUES];
	uint8_t *config;             /* device config space, little-endian */
	uint32_t config_len;
	uint32_t config_wr_off, config_wr_len; /* guest-writable bytes */
	const struct virtio_dev_ops *ops;
	void *priv;                  /* the model's state */
	const struct guest_mem *mem;

	/* Filled in by the transport. */
	/* Interrupt the driver: VIRTIO_ISR_QUEUE for queue `q`, or
	 * VIRTIO_ISR_CONFIG (q = -1). */
	void (*signal)(struct virtio_dev *vdev, unsigned isr_bits, int q);
	void *transport;
};

const char *virtio__error(void);
int virtio__err(int err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Set the common fields; queues get `num_max` entries. */
void virtio__dev_init(struct virtio_dev *vdev, const char *name,
		      uint16_t device_id, uint64_t device_features,
		      int num_queues, uint16_t num_max,
		      const struct guest_mem *mem);
/* Free queues and the model (ops->free). */
void virtio__dev_free(struct virtio_dev *vdev);

/* Back to the state after power-on (status 0, no features, queues idle). */
void virtio__reset(struct virtio_dev *vdev);

/* The driver broke the rules: set NEEDS_RESET (once DRIVER_OK) and raise
 * a configuration-change interrupt so it notices. */
void virtio__needs_reset(struct virtio_dev *vdev);

/* Model helper: raise a used-buffer interrupt for queue `q` if the driver
 * wants one (call with the queue lock held after pushing). */
void virtio__notify_used(struct virtio_dev *vdev, int q);

/* Model helper: the config space changed (bump generation, interrupt). */
void virtio__config_changed(struct virtio_dev *vdev);

/* Transport helper: run the model on queue `q` if it is live, with the
 * queue lock taken; a queue the ring walker found broken makes the device
 * NEEDS_RESET. */
void virtio__kick(struct virtio_dev *vdev, int q);

/* The same with any function: for models that process a queue on a
 * thread of their own (fn runs with the queue lock held, only while the
 * queue is live). */
void virtio__run_queue(struct virtio_dev *vdev, int q,
		       void (*fn)(struct virtio_dev *vdev, int q));

/* ---- device models ---------------------------------------------------- */

struct imgfmt_image;

struct virtio_blk_opts {
	int read_only;          /* expose VIRTIO_BLK_F_RO, refuse writes */
	const char *serial;     /* GET_ID string (<= 20 bytes used); NULL:
				   the image UUID in hex, if it has one */
	uint16_t queue_size;    /* 0: VIRTQ_MAX_SIZE */
	int iothread;           /* process requests on a thread of the
				   device's own instead of the vCPU thread
				   that rang the doorbell */
	int num_queues;         /* 0: 1; more offers VIRTIO_BLK_F_MQ (one
				   per vCPU lets each vCPU serve its own
				   requests in parallel) */
};

/* A virtio-blk device on `img` (any imgfmt format).  The image stays the
 * caller's: close it after virtio__dev_free().  An image opened read-only
 * makes the device read-only whatever opts says. */
int virtio_blk__new(struct imgfmt_image *img, const struct virtio_blk_opts *opts,
		    const struct guest_mem *mem, struct virtio_dev **out);

/* Request counters, for tests and benchmarks. */
struct virtio_blk_stats {
	uint64_t reads, writes, flushes, discards, write_zeroes, get_ids;
	uint64_t ioerr, unsupp, malformed;
};
void virtio_blk__stats(struct virtio_dev *vdev, struct virtio_blk_stats *st);

/* A virtio-rng device fed by getrandom(). */
int virtio_rng__new(const struct guest_mem *mem, struct virtio_dev **out);

#endif /* RUNTIME_VIRTIO_VIRTIO_H */
