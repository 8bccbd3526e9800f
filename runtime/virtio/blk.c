/*
 * blk.c - virtio-blk (virtio 1.2, 5.2) on an imgfmt image.
 *
 * A request is one descriptor chain: a 16-byte header (type, reserved,
 * sector) in device-readable buffers, then data (readable for writes,
 * writable for reads), then one status byte: the last device-writable
 * byte of the chain.  Buffers may split or merge those parts arbitrarily
 * (the spec allows any framing), so the code addresses them as byte ranges
 * of the chain's iovecs, never as "descriptor N".
 *
 * The image format is invisible here: everything goes through
 * imgfmt__pread/pwrite/flush/discard/write_zeroes.
 *
 * Requests are handled with the queue lock held, either synchronously on
 * the thread that rang the doorbell (a vCPU thread: simplest, and the
 * fastest when the image is in the page cache), or, with opts.iothread, on
 * a thread of the device's own that the doorbell wakes through an eventfd,
 * so the vCPU goes back to the guest while the disk works.
 */
#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "imgfmt.h"
#include "runtime/virtio/virtio.h"

#define VIRTIO_BLK_F_SIZE_MAX 1
#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9
#define VIRTIO_BLK_F_MQ 12
#define VIRTIO_BLK_F_DISCARD 13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_T_DISCARD 11
#define VIRTIO_BLK_T_WRITE_ZEROES 13

#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2

#define VIRTIO_BLK_WZ_UNMAP 1u
#define VIRTIO_BLK_ID_BYTES 20
#define SECTOR 512u

/* Config space offsets (virtio 1.2, 5.2.4). */
#define CFG_CAPACITY 0
#define CFG_SIZE_MAX 8
#define CFG_SEG_MAX 12
#define CFG_BLK_SIZE 20
#define CFG_NUM_QUEUES 34
#define CFG_MAX_DISCARD_SECTORS 36
#define CFG_MAX_DISCARD_SEG 40
#define CFG_DISCARD_ALIGN 44
#define CFG_MAX_WZ_SECTORS 48
#define CFG_MAX_WZ_SEG 52
#define CFG_WZ_MAY_UNMAP 56
#define CFG_LEN 60

/* Limits we advertise for discard / write-zeroes.  One segment request
 * may cover up to 2 GiB - 512; a request carries at most 16 segments, so
 * its segment list is bounded too. */
#define MAX_DZ_SECTORS 0x3FFFFFu
#define MAX_DZ_SEG 16u

struct blk {
	struct virtio_dev vdev;          /* first: container of the vdev */
	imgfmt_image *img;
	uint64_t capacity;               /* in sectors */
	int ro;
	char id[VIRTIO_BLK_ID_BYTES];
	uint8_t config[CFG_LEN];
	struct virtio_blk_stats st;      /* updated atomically */
	struct virtq_chain *chains;      /* scratch, one per queue */
	int iothread;
	pthread_t io;
	int io_started;
	int kick_fd, stop_fd;            /* eventfds for the I/O thread */
};

/* Queues run concurrently (one per vCPU with F_MQ): count atomically. */
#define STAT(b, field) __atomic_fetch_add(&(b)->st.field, 1, __ATOMIC_RELAXED)

struct dz_seg {
	uint64_t sector;
	uint32_t num_sectors;
	uint32_t flags;
};

static void put32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
}

static void put64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

/* Is [sector, sector + bytes/512) inside the disk? */
static int in_range(const struct blk *b, uint64_t sector, uint64_t bytes)
{
	uint64_t n = bytes / SECTOR;

	return sector <= b->capacity && n <= b->capacity - sector;
}

/* Move `len` bytes between the image at `off` and the iovecs starting at
 * byte `skip`, one imgfmt call per buffer (no bounce copy). */
static int rw_iov(struct blk *b, const struct iovec *iov, int n, size_t skip,
		  uint64_t len, uint64_t off, int write)
{
	for (int i = 0; i < n && len; i++) {
		size_t l = iov[i].iov_len;

		if (skip >= l) {
			skip -= l;
			continue;
		}
		size_t take = l - skip;
		if (take > len)
			take = (size_t)len;
		uint8_t *p = (uint8_t *)iov[i].iov_base + skip;
		int r = write ? imgfmt__pwrite(b->img, p, take, off)
			      : imgfmt__pread(b->img, p, take, off);
		if (r < 0)
			return r;
		off += take;
		len -= take;
		skip = 0;
	}
	return len ? -EIO : 0;
}

static uint8_t do_discard_zeroes(struct blk *b, const struct virtq_chain *c,
				 uint32_t type)
{
	uint64_t bytes = c->out_len - 16;
	struct dz_seg segs[MAX_DZ_SEG];
	uint32_t n;

	if (b->ro)
		return VIRTIO_BLK_S_IOERR;
	if (bytes == 0 || bytes % sizeof(struct dz_seg) ||
	    bytes / sizeof(struct dz_seg) > MAX_DZ_SEG)
		return VIRTIO_BLK_S_UNSUPP;
	n = (uint32_t)(bytes / sizeof(struct dz_seg));
	iov__to_buf(c->iov, c->nr_out, 16, segs, (size_t)bytes);
	/* Check every segment before touching the disk, so a bad segment
	 * leaves nothing half done. */
	for (uint32_t i = 0; i < n; i++) {
		segs[i].sector = le64toh(segs[i].sector);
		segs[i].num_sectors = le32toh(segs[i].num_sectors);
		segs[i].flags = le32toh(segs[i].flags);
		/* Discard has no flags; write-zeroes knows only UNMAP. */
		if (segs[i].flags & ~(type == VIRTIO_BLK_T_WRITE_ZEROES ?
				      VIRTIO_BLK_WZ_UNMAP : 0))
			return VIRTIO_BLK_S_UNSUPP;
		if (segs[i].num_sectors > MAX_DZ_SECTORS ||
		    !in_range(b, segs[i].sector,
			      (uint64_t)segs[i].num_sectors * SECTOR))
			return VIRTIO_BLK_S_IOERR;
	}
	for (uint32_t i = 0; i < n; i++) {
		uint64_t off = segs[i].sector * SECTOR,
			 len = (uint64_t)segs[i].num_sectors * SECTOR;
		int r;

		if (!len)
			continue;
		if (type == VIRTIO_BLK_T_DISCARD)
			r = imgfmt__discard(b->img, off, len);
		else
			r = imgfmt__write_zeroes(b->img, off, len,
						 segs[i].flags &
						 VIRTIO_BLK_WZ_UNMAP ?
						 IMGFMT_ZERO_MAY_UNMAP : 0);
		if (r < 0)
			return VIRTIO_BLK_S_IOERR;
	}
	return VIRTIO_BLK_S_OK;
}

/* Handle one chain; returns the number of bytes written for the used
 * ring. */
static uint32_t blk_request(struct blk *b, struct virtq_chain *c)
{
	const struct iovec *in = c->iov + c->nr_out;
	struct { uint32_t type, reserved; uint64_t sector; } hdr;
	uint64_t data_in, data_out;
	uint32_t used = 1;
	uint8_t status;
	int r;

	if (c->in_len == 0) {
		/* Nowhere to put a status byte (a status "byte" in a
		 * read-only buffer included): the driver gets the chain back
		 * with nothing written and will see an unchanged status. */
		STAT(b, malformed);
		return 0;
	}
	data_in = c->in_len - 1;
	/* The used ring counts bytes in 32 bits; a larger chain (possible
	 * with 256 buffers of 4 GiB) cannot be a sane request. */
	if (c->out_len < sizeof(hdr) || c->in_len > UINT32_MAX ||
	    c->out_len > UINT32_MAX) {
		STAT(b, malformed);
		status = VIRTIO_BLK_S_IOERR;
		goto out;
	}
	iov__to_buf(c->iov, c->nr_out, 0, &hdr, sizeof(hdr));
	hdr.type = le32toh(hdr.type);
	hdr.sector = le64toh(hdr.sector);
	data_out = c->out_len - sizeof(hdr);

	switch (hdr.type) {
	case VIRTIO_BLK_T_IN:
		STAT(b, reads);
		if (data_in % SECTOR || !in_range(b, hdr.sector, data_in)) {
			status = VIRTIO_BLK_S_IOERR;
			break;
		}
		r = rw_iov(b, in, c->nr_in, 0, data_in, hdr.sector * SECTOR, 0);
		status = r < 0 ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
		if (r == 0)
			used += (uint32_t)data_in;
		break;
	case VIRTIO_BLK_T_OUT:
		STAT(b, writes);
		if (b->ro || data_out % SECTOR ||
		    !in_range(b, hdr.sector, data_out)) {
			status = VIRTIO_BLK_S_IOERR;
			break;
		}
		r = rw_iov(b, c->iov, c->nr_out, sizeof(hdr), data_out,
			   hdr.sector * SECTOR, 1);
		status = r < 0 ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
		break;
	case VIRTIO_BLK_T_FLUSH:
		STAT(b, flushes);
		status = imgfmt__flush(b->img) < 0 ? VIRTIO_BLK_S_IOERR
						   : VIRTIO_BLK_S_OK;
		break;
	case VIRTIO_BLK_T_GET_ID: {
		size_t n = data_in < VIRTIO_BLK_ID_BYTES ? (size_t)data_in
							 : VIRTIO_BLK_ID_BYTES;
		STAT(b, get_ids);
		iov__from_buf(in, c->nr_in, 0, b->id, n);
		used += (uint32_t)n;
		status = VIRTIO_BLK_S_OK;
		break;
	}
	case VIRTIO_BLK_T_DISCARD:
		STAT(b, discards);
		status = do_discard_zeroes(b, c, hdr.type);
		break;
	case VIRTIO_BLK_T_WRITE_ZEROES:
		STAT(b, write_zeroes);
		status = do_discard_zeroes(b, c, hdr.type);
		break;
	default:
		status = VIRTIO_BLK_S_UNSUPP;
		break;
	}
out:
	if (status == VIRTIO_BLK_S_IOERR)
		STAT(b, ioerr);
	else if (status == VIRTIO_BLK_S_UNSUPP)
		STAT(b, unsupp);
	iov__from_buf(in, c->nr_in, (size_t)data_in, &status, 1);
	return used;
}

/* Serve every available request of queue q (queue lock held). */
static void blk_process(struct virtio_dev *vdev, int q)
{
	struct blk *b = (struct blk *)vdev;
	struct virtq *vq = &vdev->vqs[q];
	int r, n = 0;

	while ((r = virtq__pop(vq, &b->chains[q])) > 0) {
		virtq__push(vq, b->chains[q].head,
			    blk_request(b, &b->chains[q]));
		n++;
	}
	if (n)
		virtio__notify_used(vdev, q);
}

static void blk_queue_notify(struct virtio_dev *vdev, int q)
{
	struct blk *b = (struct blk *)vdev;
	uint64_t one = 1;

	if (!b->iothread) {
		blk_process(vdev, q);
		return;
	}
	/* A full eventfd counter means the thread is already woken. */
	if (write(b->kick_fd, &one, sizeof(one)) < 0) {
		/* EAGAIN: counter saturated, the thread will run anyway */
	}
}

static void *blk_io_thread(void *arg)
{
	struct blk *b = arg;
	uint64_t v;

	for (;;) {
		struct pollfd p[2] = { { b->stop_fd, POLLIN, 0 },
				       { b->kick_fd, POLLIN, 0 } };

		if (poll(p, 2, -1) < 0)
			continue;          /* EINTR */
		if (p[0].revents)
			break;
		/* Drain first: a kick arriving while we work sets it
		 * again, so no notification is lost. */
		while (read(b->kick_fd, &v, sizeof(v)) == sizeof(v))
			;
		for (int q = 0; q < b->vdev.num_queues; q++)
			virtio__run_queue(&b->vdev, q, blk_process);
	}
	return NULL;
}

static void blk_stop(struct virtio_dev *vdev)
{
	struct blk *b = (struct blk *)vdev;
	uint64_t one = 1;

	if (!b->io_started)
		return;
	if (write(b->stop_fd, &one, sizeof(one)) < 0) {
		/* a fresh eventfd cannot be full; join regardless */
	}
	pthread_join(b->io, NULL);
	b->io_started = 0;
}

static void blk_free(struct virtio_dev *vdev)
{
	struct blk *b = (struct blk *)vdev;

	if (b->kick_fd >= 0)
		close(b->kick_fd);
	if (b->stop_fd >= 0)
		close(b->stop_fd);
	free(b->chains);
	free(vdev);
}

static const struct virtio_dev_ops blk_ops = {
	.queue_notify = blk_queue_notify,
	.stop = blk_stop,
	.free = blk_free,
};

int virtio_blk__new(struct imgfmt_image *img, const struct virtio_blk_opts *opts,
		    const struct guest_mem *mem, struct virtio_dev **out)
{
	struct virtio_blk_opts def = { 0 };
	struct imgfmt_info *info;
	uint16_t qsize;
	uint64_t features;
	struct blk *b;
	int nq;

	*out = NULL;
	if (!opts)
		opts = &def;
	qsize = opts->queue_size ? opts->queue_size : VIRTQ_MAX_SIZE;
	if (qsize < 4 || qsize > VIRTQ_MAX_SIZE || (qsize & (qsize - 1)))
		return virtio__err(EINVAL, "virtio-blk: queue size %u is not "
				   "a power of two in 4..%u", qsize,
				   VIRTQ_MAX_SIZE);
	nq = opts->num_queues ? opts->num_queues : 1;
	if (nq < 1 || nq > VIRTIO_MAX_QUEUES)
		return virtio__err(EINVAL, "virtio-blk: %d queues; 1..%d "
				   "supported", nq, VIRTIO_MAX_QUEUES);
	info = malloc(sizeof(*info));
	b = calloc(1, sizeof(*b));
	if (b)
		b->chains = calloc((size_t)nq, sizeof(*b->chains));
	if (!info || !b || !b->chains) {
		free(info);
		if (b)
			free(b->chains);
		free(b);
		return virtio__err(ENOMEM, "virtio-blk: out of memory");
	}
	if (imgfmt__info(img, info) < 0) {
		int e = virtio__err(EIO, "virtio-blk: %s", imgfmt__error());
		free(info);
		free(b->chains);
		free(b);
		return e;
	}
	b->img = img;
	b->capacity = info->virtual_size / SECTOR;
	b->ro = opts->read_only || info->read_only;
	/* The id is 20 bytes, NUL-padded, not NUL-terminated when full.
	 * Without a serial, the image's UUID (its first 80 bits in hex)
	 * still gives the guest a stable /dev/disk/by-id name. */
	if (opts->serial) {
		memcpy(b->id, opts->serial, strnlen(opts->serial,
						    sizeof(b->id)));
	} else if (info->has_uuid) {
		static const char hex[] = "0123456789abcdef";

		for (int i = 0; i < 10; i++) {
			b->id[2 * i] = hex[info->uuid[i] >> 4];
			b->id[2 * i + 1] = hex[info->uuid[i] & 15];
		}
	}
	free(info);

	features = (1ull << VIRTIO_BLK_F_SEG_MAX) |
		   (1ull << VIRTIO_BLK_F_BLK_SIZE) |
		   (1ull << VIRTIO_BLK_F_FLUSH);
	if (b->ro)
		features |= 1ull << VIRTIO_BLK_F_RO;
	else
		features |= (1ull << VIRTIO_BLK_F_DISCARD) |
			    (1ull << VIRTIO_BLK_F_WRITE_ZEROES);
	if (nq > 1)
		features |= 1ull << VIRTIO_BLK_F_MQ;
	virtio__dev_init(&b->vdev, "virtio-blk", VIRTIO_ID_BLOCK, features, nq,
			 qsize, mem);

	put64(b->config + CFG_CAPACITY, b->capacity);
	/* Header and status take two descriptors of a chain. */
	put32(b->config + CFG_SEG_MAX, qsize - 2);
	put32(b->config + CFG_BLK_SIZE, SECTOR);
	b->config[CFG_NUM_QUEUES] = (uint8_t)nq;
	put32(b->config + CFG_MAX_DISCARD_SECTORS, MAX_DZ_SECTORS);
	put32(b->config + CFG_MAX_DISCARD_SEG, MAX_DZ_SEG);
	put32(b->config + CFG_DISCARD_ALIGN, 1);
	put32(b->config + CFG_MAX_WZ_SECTORS, MAX_DZ_SECTORS);
	put32(b->config + CFG_MAX_WZ_SEG, MAX_DZ_SEG);
	b->config[CFG_WZ_MAY_UNMAP] = 1;
	b->vdev.config = b->config;
	b->vdev.config_len = CFG_LEN;
	b->vdev.ops = &blk_ops;
	b->vdev.priv = b;
	b->kick_fd = b->stop_fd = -1;
	if (opts->iothread) {
		int r;

		b->iothread = 1;
		b->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		b->stop_fd = eventfd(0, EFD_CLOEXEC);
		if (b->kick_fd < 0 || b->stop_fd < 0) {
			r = virtio__err(errno, "virtio-blk: eventfd: %s",
					strerror(errno));
			virtio__dev_free(&b->vdev);
			return r;
		}
		r = pthread_create(&b->io, NULL, blk_io_thread, b);
		if (r) {
			r = virtio__err(r, "virtio-blk: I/O thread: %s",
					strerror(r));
			virtio__dev_free(&b->vdev);
			return r;
		}
		b->io_started = 1;
	}
	*out = &b->vdev;
	return 0;
}

void virtio_blk__stats(struct virtio_dev *vdev, struct virtio_blk_stats *st)
{
	struct blk *b = (struct blk *)vdev;

	uint64_t *dst = (uint64_t *)st;
	const uint64_t *src = (const uint64_t *)&b->st;

	for (size_t i = 0; i < sizeof(*st) / sizeof(uint64_t); i++)
		dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}
