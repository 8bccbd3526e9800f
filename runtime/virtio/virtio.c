/*
 * virtio.c - what every virtio device shares, whatever its transport:
 * the error message, reset, NEEDS_RESET and interrupt decisions.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "runtime/virtio/virtio.h"

static __thread char virtio_errbuf[512];

const char *virtio__error(void)
{
	return virtio_errbuf;
}

int virtio__err(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(virtio_errbuf, sizeof(virtio_errbuf), fmt, ap);
	va_end(ap);
	return -(err > 0 ? err : EIO);
}

void virtio__dev_init(struct virtio_dev *vdev, const char *name,
		      uint16_t device_id, uint64_t device_features,
		      int num_queues, uint16_t num_max,
		      const struct guest_mem *mem)
{
	memset(vdev, 0, sizeof(*vdev));
	vdev->name = name;
	vdev->device_id = device_id;
	/* Every device here is modern-only and walks indirect tables and
	 * event indexes itself, so the transport-level bits are common. */
	vdev->features = device_features | (1ull << VIRTIO_F_VERSION_1) |
			 (1ull << VIRTIO_F_INDIRECT_DESC) |
			 (1ull << VIRTIO_F_EVENT_IDX);
	if (num_queues > VIRTIO_MAX_QUEUES)
		num_queues = VIRTIO_MAX_QUEUES;
	vdev->num_queues = num_queues;
	for (int i = 0; i < num_queues; i++)
		virtq__init(&vdev->vqs[i], num_max);
	vdev->mem = mem;
}

void virtio__dev_free(struct virtio_dev *vdev)
{
	if (!vdev)
		return;
	if (vdev->ops && vdev->ops->stop)
		vdev->ops->stop(vdev);
	for (int i = 0; i < vdev->num_queues; i++)
		virtq__destroy(&vdev->vqs[i]);
	/* Last: the model may own the memory vdev itself lives in. */
	if (vdev->ops && vdev->ops->free)
		vdev->ops->free(vdev);
}

void virtio__reset(struct virtio_dev *vdev)
{
	/* Taking each queue lock waits for a request in progress on another
	 * thread, so no model touches guest memory after the reset returns
	 * (virtio 1.2, 2.4: after reset the device must not use the rings). */
	for (int i = 0; i < vdev->num_queues; i++) {
		pthread_mutex_lock(&vdev->vqs[i].lock);
		virtq__reset(&vdev->vqs[i]);
		pthread_mutex_unlock(&vdev->vqs[i].lock);
	}
	vdev->driver_features = 0;
	__atomic_store_n(&vdev->status, 0, __ATOMIC_RELAXED);
	if (vdev->ops && vdev->ops->reset)
		vdev->ops->reset(vdev);
}

void virtio__needs_reset(struct virtio_dev *vdev)
{
	uint8_t st = __atomic_load_n(&vdev->status, __ATOMIC_RELAXED);

	if (st & VIRTIO_STATUS_NEEDS_RESET)
		return;
	__atomic_fetch_or(&vdev->status, VIRTIO_STATUS_NEEDS_RESET,
			  __ATOMIC_RELAXED);
	/* virtio 1.2, 2.1.2: notify only a driver that is live. */
	if ((st & VIRTIO_STATUS_DRIVER_OK) && vdev->signal)
		vdev->signal(vdev, VIRTIO_ISR_CONFIG, -1);
}

void virtio__notify_used(struct virtio_dev *vdev, int q)
{
	if (virtq__should_notify(&vdev->vqs[q]) && vdev->signal)
		vdev->signal(vdev, VIRTIO_ISR_QUEUE, q);
}

void virtio__config_changed(struct virtio_dev *vdev)
{
	__atomic_fetch_add(&vdev->config_generation, 1, __ATOMIC_RELAXED);
	if ((__atomic_load_n(&vdev->status, __ATOMIC_RELAXED) &
	     VIRTIO_STATUS_DRIVER_OK) && vdev->signal)
		vdev->signal(vdev, VIRTIO_ISR_CONFIG, -1);
}

void virtio__run_queue(struct virtio_dev *vdev, int q,
		       void (*fn)(struct virtio_dev *vdev, int q))
{
	struct virtq *vq;

	if (q < 0 || q >= vdev->num_queues)
		return;
	vq = &vdev->vqs[q];
	pthread_mutex_lock(&vq->lock);
	if (vq->ready && !vq->broken &&
	    (__atomic_load_n(&vdev->status, __ATOMIC_RELAXED) &
	     VIRTIO_STATUS_DRIVER_OK))
		fn(vdev, q);
	if (vq->broken)
		virtio__needs_reset(vdev);
	pthread_mutex_unlock(&vq->lock);
}

void virtio__kick(struct virtio_dev *vdev, int q)
{
	virtio__run_queue(vdev, q, vdev->ops->queue_notify);
}
