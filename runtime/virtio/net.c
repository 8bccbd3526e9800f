/*
 * net.c - virtio-net device model (see net.h for what it offers).
 *
 * Threads: transmit is handled in queue_notify on the vCPU thread that
 * kicked queue 1, without ever blocking there: when the backend is full
 * the device keeps the chain it could not send (tx_held) and stops, and
 * the device's own thread, "rx", waits for the backend to drain and runs
 * transmit again (tx_wait tells it to).  A vCPU waiting on the peer
 * could not be stopped: the signal that interrupts KVM_RUN only makes a
 * wait retry.  Besides that, the rx thread alternates between waiting
 * for a frame from the backend and waiting for the guest to post a
 * receive buffer (a kick of queue 0 wakes it through an eventfd).
 * Holding a frame while no buffer is posted keeps back-pressure on the
 * peer instead of dropping traffic during a guest burst.
 */
#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <unistd.h>

#include "runtime/virtio/net.h"

#define VIRTIO_NET_F_MTU 3
#define VIRTIO_NET_F_MAC 5
#define VIRTIO_NET_F_STATUS 16
#define VIRTIO_NET_S_LINK_UP 1

#define RXQ 0
#define TXQ 1

struct net {
	struct virtio_dev vdev;          /* first: container of the vdev */
	struct net_backend *be;
	uint8_t config[12];              /* mac[6], status, max pairs, mtu
					    (le16 each) */
	pthread_t rx;
	int rx_started;
	int stop_fd;                     /* eventfd: stop the rx thread */
	int kick_fd;                     /* eventfd: rx buffers posted */
	int wake_fd;                     /* eventfd: tx_wait was set */
	struct virtio_net_stats st;      /* under stats_lock */
	pthread_mutex_t stats_lock;
	struct virtq_chain tx_chain;     /* under the tx queue lock */
	struct iovec tx_iov[VIRTQ_MAX_SEGS];
	int tx_k;                        /* entries of tx_iov in use */
	int tx_held;                     /* tx_chain popped, not yet sent:
					    the backend was full */
	int tx_queued;                   /* the backend holds part of a
					    frame (its send returned 1) */
	int tx_wait;                     /* atomic: transmit waits for the
					    backend to poll writable */
	struct virtq_chain rx_chain;     /* under the rx queue lock */
	uint8_t rx_frame[NET_MAX_FRAME]; /* rx thread only */
};

static void stat_add(struct net *n, uint64_t *field)
{
	pthread_mutex_lock(&n->stats_lock);
	(*field)++;
	pthread_mutex_unlock(&n->stats_lock);
}

/* ---- transmit -------------------------------------------------------- */

/* Take the next chain off the transmit queue into tx_chain/tx_iov.  1: a
 * frame to send; 0: none left; -1: the chain was malformed and went back
 * empty (go on). */
static int tx_next(struct net *n)
{
	struct virtq *vq = &n->vdev.vqs[TXQ];
	struct virtq_chain *c = &n->tx_chain;
	size_t skip = VIRTIO_NET_HDR_LEN;

	if (virtq__pop(vq, c) <= 0)
		return 0;
	/* The frame is the readable part after the header; any writable
	 * buffers are meaningless for transmit. */
	if (c->out_len <= VIRTIO_NET_HDR_LEN ||
	    c->out_len - VIRTIO_NET_HDR_LEN > NET_MAX_FRAME) {
		stat_add(n, &n->st.tx_dropped);
		virtq__push(vq, c->head, 0);
		return -1;
	}
	n->tx_k = 0;
	for (int i = 0; i < c->nr_out; i++) {
		size_t l = c->iov[i].iov_len;

		if (skip >= l) {
			skip -= l;
			continue;
		}
		n->tx_iov[n->tx_k].iov_base = (uint8_t *)c->iov[i].iov_base +
					      skip;
		n->tx_iov[n->tx_k].iov_len = l - skip;
		skip = 0;
		n->tx_k++;
	}
	return 1;
}

/* Write the rest of a part-sent frame, if the backend holds one; 1 if
 * some of it is still queued.  Under the transmit queue's lock. */
static int tx_flush(struct net *n)
{
	if (n->tx_queued)
		n->tx_queued = n->be->ops->flush(n->be) == 1;
	return n->tx_queued;
}

/* The queue is gone (reset, or no longer live): a chain held for a full
 * backend is void; transmit still waits for the backend only to finish
 * a part-sent frame (the stream must stay in step).  Under the transmit
 * queue's lock. */
static void tx_drop_held(struct net *n)
{
	n->tx_held = 0;
	__atomic_store_n(&n->tx_wait, n->tx_queued, __ATOMIC_RELAXED);
}

/* Send what the guest posted until the queue is empty or the backend is
 * full.  Called with the transmit queue's lock held. */
static void net_tx(struct net *n)
{
	struct virtq *vq = &n->vdev.vqs[TXQ];
	struct virtq_chain *c = &n->tx_chain;
	int done = 0, r, wait = tx_flush(n);

	while (!wait) {
		if (!n->tx_held) {
			r = tx_next(n);
			if (r == 0)
				break;
			if (r < 0) {
				done++;
				continue;
			}
		}
		r = n->be->ops->send(n->be, n->tx_iov, n->tx_k,
				     (size_t)(c->out_len - VIRTIO_NET_HDR_LEN));
		n->tx_held = r == -EAGAIN;
		if (n->tx_held) {
			wait = 1;
			break;
		}
		stat_add(n, r < 0 ? &n->st.tx_dropped : &n->st.tx_frames);
		n->tx_queued = r == 1;
		wait = n->tx_queued;
		virtq__push(vq, c->head, 0);
		done++;
	}
	if (wait && !__atomic_load_n(&n->tx_wait, __ATOMIC_RELAXED)) {
		uint64_t one = 1;

		__atomic_store_n(&n->tx_wait, 1, __ATOMIC_RELAXED);
		if (write(n->wake_fd, &one, sizeof(one)) < 0) {
			/* counter saturated: the rx thread is awake anyway */
		}
	} else if (!wait) {
		__atomic_store_n(&n->tx_wait, 0, __ATOMIC_RELAXED);
	}
	if (done)
		virtio__notify_used(&n->vdev, TXQ);
}

/* The backend polled writable while transmit waited for it (rx thread).
 * A queue that is no longer live (reset, broken) only finishes the frame
 * the backend holds in part. */
static void tx_resume(struct net *n)
{
	struct virtq *vq = &n->vdev.vqs[TXQ];

	pthread_mutex_lock(&vq->lock);
	if (vq->ready && !vq->broken &&
	    (__atomic_load_n(&n->vdev.status, __ATOMIC_RELAXED) &
	     VIRTIO_STATUS_DRIVER_OK)) {
		net_tx(n);
		if (vq->broken)
			virtio__needs_reset(&n->vdev);
	} else {
		tx_flush(n);
		tx_drop_held(n);
	}
	pthread_mutex_unlock(&vq->lock);
}

/* ---- receive --------------------------------------------------------- */

static int rx_live(struct net *n)
{
	struct virtq *vq = &n->vdev.vqs[RXQ];

	return vq->ready && !vq->broken &&
	       (__atomic_load_n(&n->vdev.status, __ATOMIC_RELAXED) &
		VIRTIO_STATUS_DRIVER_OK);
}

/* Try to hand `len` bytes of rx_frame to the guest.  1: done (delivered
 * or dropped), 0: no buffer posted, keep the frame. */
static int rx_deliver(struct net *n, size_t len)
{
	struct virtq *vq = &n->vdev.vqs[RXQ];
	struct virtq_chain *c = &n->rx_chain;
	uint8_t hdr[VIRTIO_NET_HDR_LEN] = { 0 };
	int r, result = 1;

	pthread_mutex_lock(&vq->lock);
	if (!rx_live(n)) {
		stat_add(n, &n->st.rx_dropped);
		goto out;
	}
	r = virtq__pop(vq, c);
	if (r == 0) {
		result = 0;
		goto out;
	}
	if (r < 0) {
		virtio__needs_reset(&n->vdev);
		stat_add(n, &n->st.rx_dropped);
		goto out;
	}
	if (c->in_len < VIRTIO_NET_HDR_LEN + len) {
		/* Without mergeable buffers a frame must fit one chain; the
		 * driver sized its buffers too small.  It gets the buffer
		 * back empty. */
		virtq__push(vq, c->head, 0);
		stat_add(n, &n->st.rx_dropped);
	} else {
		const struct iovec *in = c->iov + c->nr_out;

		hdr[10] = 1;     /* num_buffers = 1 (le16) */
		iov__from_buf(in, c->nr_in, 0, hdr, sizeof(hdr));
		iov__from_buf(in, c->nr_in, sizeof(hdr), n->rx_frame, len);
		virtq__push(vq, c->head,
			    (uint32_t)(VIRTIO_NET_HDR_LEN + len));
		stat_add(n, &n->st.rx_frames);
	}
	virtio__notify_used(&n->vdev, RXQ);
out:
	pthread_mutex_unlock(&vq->lock);
	return result;
}

static void drain(int fd)
{
	uint64_t v;

	while (read(fd, &v, sizeof(v)) == sizeof(v))
		;
}

static void *rx_thread(void *arg)
{
	struct net *n = arg;
	size_t len = 0;           /* frame held, 0: none */
	int dead = 0;

	for (;;) {
		struct pollfd p[4] = { { n->stop_fd, POLLIN, 0 },
				       { n->wake_fd, POLLIN, 0 } };
		int np = 2, kick = -1, be = -1;
		short want = 0;

		if (len) {
			/* Wait for the guest to post buffers. */
			kick = np;
			p[np++] = (struct pollfd){ n->kick_fd, POLLIN, 0 };
		} else if (!dead) {
			want = POLLIN;
		}
		if (__atomic_load_n(&n->tx_wait, __ATOMIC_RELAXED))
			want |= POLLOUT;
		if (want) {
			be = np;
			p[np++] = (struct pollfd){ n->be->ops->poll_fd(n->be),
						   want, 0 };
		}
		if (poll(p, (nfds_t)np, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[0].revents)
			break;
		if (p[1].revents)
			drain(n->wake_fd);   /* re-read tx_wait above */
		/* Writable, or an error that send will report. */
		if (be >= 0 && (want & POLLOUT) &&
		    (p[be].revents & (POLLOUT | POLLERR | POLLHUP)))
			tx_resume(n);
		if (len) {
			if (!p[kick].revents)
				continue;
			drain(n->kick_fd);
			if (rx_deliver(n, len))
				len = 0;
			continue;
		}
		if (be < 0 || !(want & POLLIN) ||
		    !(p[be].revents & (POLLIN | POLLERR | POLLHUP)))
			continue;
		ssize_t r = n->be->ops->recv(n->be, n->rx_frame);
		if (r < 0) {
			/* Peer gone or framing broken: stop reading, keep
			 * the device (transmit still fails cleanly). */
			dead = 1;
			pthread_mutex_lock(&n->stats_lock);
			n->st.backend_dead = 1;
			pthread_mutex_unlock(&n->stats_lock);
			continue;
		}
		if (r == 0)
			continue;
		len = (size_t)r;
		if (rx_deliver(n, len))
			len = 0;
	}
	return NULL;
}

/* ---- device ---------------------------------------------------------- */

static void net_queue_notify(struct virtio_dev *vdev, int q)
{
	struct net *n = (struct net *)vdev;
	uint64_t one = 1;

	if (q == TXQ) {
		net_tx(n);
	} else {
		/* The rx thread may be waiting for exactly these buffers. */
		if (write(n->kick_fd, &one, sizeof(one)) < 0) {
			/* eventfd counter saturated: already signalled */
		}
	}
}

/* The queues are reset: drop a held chain (the rx thread still
 * finishes a part-sent frame). */
static void net_reset(struct virtio_dev *vdev)
{
	struct net *n = (struct net *)vdev;
	struct virtq *vq = &n->vdev.vqs[TXQ];

	pthread_mutex_lock(&vq->lock);
	tx_drop_held(n);
	pthread_mutex_unlock(&vq->lock);
}

static void net_stop(struct virtio_dev *vdev)
{
	struct net *n = (struct net *)vdev;
	uint64_t one = 1;

	if (n->rx_started) {
		if (write(n->stop_fd, &one, sizeof(one)) < 0) {
			/* cannot fail for a fresh eventfd; join anyway */
		}
		pthread_join(n->rx, NULL);
		n->rx_started = 0;
	}
}

static void net_free(struct virtio_dev *vdev)
{
	struct net *n = (struct net *)vdev;

	if (n->be)
		n->be->ops->free(n->be);
	if (n->stop_fd >= 0)
		close(n->stop_fd);
	if (n->kick_fd >= 0)
		close(n->kick_fd);
	if (n->wake_fd >= 0)
		close(n->wake_fd);
	pthread_mutex_destroy(&n->stats_lock);
	free(n);
}

static const struct virtio_dev_ops net_ops = {
	.queue_notify = net_queue_notify,
	.reset = net_reset,
	.stop = net_stop,
	.free = net_free,
};

int virtio_net__new(struct net_backend *be, const struct virtio_net_opts *o,
		    const struct guest_mem *mem, struct virtio_dev **out)
{
	static const uint8_t zero[6];
	struct virtio_net_opts def = { { 0 } };
	uint16_t qsize;
	struct net *n;
	int r;

	*out = NULL;
	if (!o)
		o = &def;
	qsize = o->queue_size ? o->queue_size : VIRTQ_MAX_SIZE;
	uint16_t mtu = o->mtu ? o->mtu : 1500;
	/* 68: the IPv4 minimum, which Linux also insists on. */
	if (mtu < 68 || mtu > NET_MAX_FRAME - 14) {
		be->ops->free(be);
		return virtio__err(EINVAL, "virtio-net: MTU %u is not in "
				   "68..%u", mtu, NET_MAX_FRAME - 14);
	}
	if (qsize < 2 || qsize > VIRTQ_MAX_SIZE || (qsize & (qsize - 1))) {
		be->ops->free(be);
		return virtio__err(EINVAL, "virtio-net: queue size %u is not "
				   "a power of two in 2..%u", qsize,
				   VIRTQ_MAX_SIZE);
	}
	n = calloc(1, sizeof(*n));
	if (!n) {
		be->ops->free(be);
		return virtio__err(ENOMEM, "virtio-net: out of memory");
	}
	n->be = be;
	n->stop_fd = eventfd(0, EFD_CLOEXEC);
	n->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	n->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	pthread_mutex_init(&n->stats_lock, NULL);
	virtio__dev_init(&n->vdev, "virtio-net", VIRTIO_ID_NET,
			 (1ull << VIRTIO_NET_F_MAC) |
			 (1ull << VIRTIO_NET_F_STATUS) |
			 (1ull << VIRTIO_NET_F_MTU), 2, qsize, mem);
	n->vdev.ops = &net_ops;
	n->vdev.priv = n;
	if (n->stop_fd < 0 || n->kick_fd < 0 || n->wake_fd < 0) {
		r = virtio__err(errno, "virtio-net: eventfd: %s",
				strerror(errno));
		virtio__dev_free(&n->vdev);
		return r;
	}

	memcpy(n->config, o->mac, 6);
	if (memcmp(o->mac, zero, 6) == 0) {
		if (getrandom(n->config, 6, 0) != 6)
			memcpy(n->config, "\x52\x54\x00\x12\x34\x56", 6);
		/* Locally administered, unicast. */
		n->config[0] = (uint8_t)((n->config[0] & 0xFE) | 0x02);
	}
	n->config[6] = VIRTIO_NET_S_LINK_UP;
	n->config[8] = 1;                       /* max_virtqueue_pairs */
	n->config[10] = (uint8_t)mtu;
	n->config[11] = (uint8_t)(mtu >> 8);
	n->vdev.config = n->config;
	n->vdev.config_len = sizeof(n->config);

	r = pthread_create(&n->rx, NULL, rx_thread, n);
	if (r) {
		r = virtio__err(r, "virtio-net: rx thread: %s", strerror(r));
		virtio__dev_free(&n->vdev);
		return r;
	}
	n->rx_started = 1;
	*out = &n->vdev;
	return 0;
}

void virtio_net__stats(struct virtio_dev *vdev, struct virtio_net_stats *st)
{
	struct net *n = (struct net *)vdev;

	pthread_mutex_lock(&n->stats_lock);
	*st = n->st;
	pthread_mutex_unlock(&n->stats_lock);
}
