/* fuzz/fuzz-virtio.c - a hostile guest driver of the virtio devices.
 *
 * The guest owns every byte of its RAM, rings and descriptors included;
 * this is the surface a guest would escape the monitor through.  Input:
 *
 *   byte 0   device (bits 0-1 mod 3: 0 virtio-blk, 1 virtio-rng, 2 virtio-net
 *            over a socket pair) and, in bits 2-4, the negotiated
 *            indirect-descriptor and event-index features and, for blk,
 *            a read-only disk
 *   byte 1   the queue size the driver picks, 2^(byte % 9) entries (the
 *            devices offer 256, as the monitor sets them up)
 *   rest     guest RAM from its first byte: the descriptor table at
 *            GPA_BASE, the available ring at +4 KiB, the used ring at
 *            +8 KiB, then buffers
 *
 * Guest RAM is two regions adjacent in guest physical addresses but
 * separate host allocations, as the monitor lays out RAM below and above
 * a hole: a buffer crossing from one to the other must be refused or
 * split, never used as one host range (ASan sees the overrun).  Every
 * queue is kicked twice.  The oracle: no crash, no sanitizer report, no
 * leak, no hang, and a device never holds more chains than its ring has
 * entries (it completes only chains it took).  FUZZ_VERBOSE=1 prints
 * what the device did (for triage). */
#include "fuzz/fuzz.h"
#include "imgfmt.h"
#include "runtime/virtio/net.h"
#include "runtime/virtio/virtio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define GPA_BASE 0x100000ull
#define LOW_SIZE (192u * 1024)   /* the first region */
#define HIGH_SIZE (64u * 1024)   /* right after it in GPA */

static void no_signal(struct virtio_dev *v, unsigned bits, int q)
{
	(void)v;
	(void)bits;
	(void)q;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	unsigned kind = (data[0] & 3) % 3;
	uint64_t features = 1ull << VIRTIO_F_VERSION_1;
	if (data[0] & 4)
		features |= 1ull << VIRTIO_F_INDIRECT_DESC;
	if (data[0] & 8)
		features |= 1ull << VIRTIO_F_EVENT_IDX;
	uint16_t qsize = (uint16_t)(1u << (data[1] % 9));

	uint8_t *low = calloc(1, LOW_SIZE), *high = calloc(1, HIGH_SIZE);
	if (!low || !high)
		abort();
	size_t n = size - 2;
	memcpy(low, data + 2, n < LOW_SIZE ? n : LOW_SIZE);
	if (n > LOW_SIZE)
		memcpy(high, data + 2 + LOW_SIZE,
		       n - LOW_SIZE < HIGH_SIZE ? n - LOW_SIZE : HIGH_SIZE);
	struct guest_mem mem = {
		.nr = 2,
		.r = {
			{ .gpa = GPA_BASE, .size = LOW_SIZE, .host = low },
			{ .gpa = GPA_BASE + LOW_SIZE, .size = HIGH_SIZE,
			  .host = high },
		},
	};

	imgfmt_image *img = NULL;
	int peer = -1;
	struct virtio_dev *vdev = fuzz__virtio_device(kind,
						      (data[0] & 16) != 0,
						      &mem, &img, &peer);
	if (!vdev)
		abort(); /* setup, not the input, failed */
	vdev->signal = no_signal;
	vdev->driver_features = features & vdev->features;
	vdev->status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
		       VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK;
	for (int q = 0; q < vdev->num_queues; q++) {
		struct virtq *vq = &vdev->vqs[q];
		if (qsize > vq->num_max)
			continue;
		vq->num = qsize;
		/* Every queue shares the rings: what one queue's device
		 * writes, the next one reads. */
		vq->desc_gpa = GPA_BASE;
		vq->avail_gpa = GPA_BASE + 4096;
		vq->used_gpa = GPA_BASE + 8192;
		if (virtq__enable(vq, &mem, vdev->driver_features) < 0)
			continue;
		virtio__kick(vdev, q);
		virtio__kick(vdev, q);
		/* A device completes only chains it took, and holds at most
		 * a ring's worth. */
		pthread_mutex_lock(&vq->lock);
		uint16_t held = (uint16_t)(vq->last_avail - vq->used_idx);
		pthread_mutex_unlock(&vq->lock);
		if (held > vq->num)
			abort();
	}
	if (getenv("FUZZ_VERBOSE") && kind == 0) {
		struct virtio_blk_stats st;
		virtio_blk__stats(vdev, &st);
		fprintf(stderr, "blk: %llu reads %llu writes %llu flushes "
			"%llu discards %llu zeroes %llu ids %llu malformed\n",
			(unsigned long long)st.reads,
			(unsigned long long)st.writes,
			(unsigned long long)st.flushes,
			(unsigned long long)st.discards,
			(unsigned long long)st.write_zeroes,
			(unsigned long long)st.get_ids,
			(unsigned long long)st.malformed);
	} else if (getenv("FUZZ_VERBOSE") && kind == 2) {
		struct virtio_net_stats st;
		virtio_net__stats(vdev, &st);
		fprintf(stderr, "net: %llu tx %llu tx dropped\n",
			(unsigned long long)st.tx_frames,
			(unsigned long long)st.tx_dropped);
	}
	virtio__dev_free(vdev);
	if (img)
		imgfmt__close(img);
	if (peer >= 0)
		close(peer);
	free(low);
	free(high);
	return 0;
}
