/*
 * rng.c - virtio-rng (virtio 1.2, 5.4): one queue of device-writable
 * buffers, each filled from the host's getrandom().
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/random.h>

#include "runtime/virtio/virtio.h"

/* Bytes handed out per request at most: a guest asking for megabytes
 * gets them in instalments instead of stalling its vCPU thread. */
#define RNG_MAX_PER_REQUEST 65536u

struct rng {
	struct virtio_dev vdev;          /* first: container of the vdev */
	struct virtq_chain chain;
};

/* Fill up to `len` bytes; returns how many were filled. */
static size_t fill(void *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = getrandom((char *)buf + done, len - done, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		done += (size_t)n;
	}
	return done;
}

static void rng_queue_notify(struct virtio_dev *vdev, int q)
{
	struct rng *r = (struct rng *)vdev;
	struct virtq *vq = &vdev->vqs[q];
	int n = 0;

	while (virtq__pop(vq, &r->chain) > 0) {
		const struct virtq_chain *c = &r->chain;
		size_t budget = RNG_MAX_PER_REQUEST, total = 0;

		/* Readable buffers carry nothing for this device: skip. */
		for (int i = c->nr_out; i < c->nr_out + c->nr_in && budget;
		     i++) {
			size_t want = c->iov[i].iov_len < budget ?
				      c->iov[i].iov_len : budget;
			size_t got = fill(c->iov[i].iov_base, want);

			total += got;
			budget -= got;
			if (got < want)
				break;
		}
		virtq__push(vq, c->head, (uint32_t)total);
		n++;
	}
	if (n)
		virtio__notify_used(vdev, q);
}

static void rng_free(struct virtio_dev *vdev)
{
	free(vdev);
}

static const struct virtio_dev_ops rng_ops = {
	.queue_notify = rng_queue_notify,
	.free = rng_free,
};

int virtio_rng__new(const struct guest_mem *mem, struct virtio_dev **out)
{
	struct rng *r = calloc(1, sizeof(*r));

	*out = NULL;
	if (!r)
		return virtio__err(ENOMEM, "virtio-rng: out of memory");
	virtio__dev_init(&r->vdev, "virtio-rng", VIRTIO_ID_RNG, 0, 1,
			 VIRTQ_MAX_SIZE, mem);
	r->vdev.ops = &rng_ops;
	r->vdev.priv = r;
	*out = &r->vdev;
	return 0;
}
