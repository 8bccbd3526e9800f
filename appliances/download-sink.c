/*
 * download-sink.c - a download's file side: staging buffers handed to a
 * thread that writes, hashes and starts writeback (see download-sink.h).
 *
 * The buffers form a ring of SINK_BUFFERS: [tail, head) are full and
 * queued for the thread (the one at tail may be in its hands), head is
 * the one the receiver fills.  The receiver waits only when every other
 * buffer is queued, that is when the disk or the hash is slower than the
 * network; the pause then reaches the server through TCP's window.
 *
 * Why a second thread at all: receiving over loopback, writing into the
 * page cache and SHA-256 each cost about as much CPU as the other per
 * byte (measured on the 2-core benchmark machine: 16 KiB writes 0.65 s
 * per GiB of system time, SHA-NI 0.6 s per GiB), and the receiver's
 * pace is what the server sees.
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "appliances/download-sink.h"

#define SINK_BUFFER_BYTES (1u << 20)
#define SINK_BUFFERS 4
/* Writeback is started every this many bytes, so the fsync before the
 * rename into the cache has little left to do. */
#define SINK_WRITEBACK_BYTES (8u << 20)

struct download_sink {
	int fd;
	EVP_MD_CTX *ctx;
	uint64_t prefix;     /* bytes already in the file: hashed first */
	uint64_t off;        /* file offset of the next queued buffer */
	uint64_t synced;     /* file bytes handed to writeback */

	uint8_t *buf[SINK_BUFFERS];
	size_t len[SINK_BUFFERS];
	unsigned head, tail;  /* counters; buffer i is buf[i % SINK_BUFFERS] */

	pthread_mutex_t lock;
	pthread_cond_t cond;  /* both ways: a buffer queued, a buffer freed */
	int done;             /* the receiver queued its last buffer */
	int error;            /* first errno; later buffers are dropped */
	pthread_t thread;
};

static int write_all(int fd, const uint8_t *p, size_t n, uint64_t off)
{
	while (n > 0) {
		ssize_t w = pwrite(fd, p, n, (off_t)off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? errno : EIO;
		p += w;
		n -= (size_t)w;
		off += (uint64_t)w;
	}
	return 0;
}

/* Hash the bytes an earlier attempt left: read back from the file. */
static int hash_prefix(struct download_sink *s)
{
	uint8_t *b;
	uint64_t pos = 0;
	int err = 0;

	if (!s->prefix)
		return 0;
	if (!(b = malloc(SINK_BUFFER_BYTES)))
		return ENOMEM;
	while (pos < s->prefix && !err) {
		size_t n = s->prefix - pos < SINK_BUFFER_BYTES
				   ? (size_t)(s->prefix - pos)
				   : SINK_BUFFER_BYTES;
		ssize_t r = pread(s->fd, b, n, (off_t)pos);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			err = r < 0 ? errno : EIO;   /* shrank under us */
		else if (EVP_DigestUpdate(s->ctx, b, (size_t)r) != 1)
			err = EIO;
		pos += r > 0 ? (uint64_t)r : 0;
	}
	free(b);
	return err;
}

static void *sink_run(void *arg)
{
	struct download_sink *s = arg;
	int err = hash_prefix(s);

	pthread_mutex_lock(&s->lock);
	if (err)
		s->error = err;
	for (;;) {
		while (s->tail == s->head && !s->done)
			pthread_cond_wait(&s->cond, &s->lock);
		if (s->tail == s->head)
			break;
		unsigned i = s->tail % SINK_BUFFERS;
		int failed = s->error;
		pthread_mutex_unlock(&s->lock);

		err = 0;
		if (!failed) {
			err = write_all(s->fd, s->buf[i], s->len[i], s->off);
			if (!err && EVP_DigestUpdate(s->ctx, s->buf[i],
						     s->len[i]) != 1)
				err = EIO;
			s->off += s->len[i];
			if (!err && s->off - s->synced >= SINK_WRITEBACK_BYTES) {
				sync_file_range(s->fd, (off_t)s->synced,
						(off_t)(s->off - s->synced),
						SYNC_FILE_RANGE_WRITE);
				s->synced = s->off;
			}
		}
		pthread_mutex_lock(&s->lock);
		if (err && !s->error)
			s->error = err;
		s->len[i] = 0;
		s->tail++;
		pthread_cond_broadcast(&s->cond);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

static void sink_free(struct download_sink *s)
{
	for (int i = 0; i < SINK_BUFFERS; i++)
		free(s->buf[i]);
	EVP_MD_CTX_free(s->ctx);
	free(s);
}

int download_sink__start(int fd, uint64_t have, struct download_sink **out)
{
	struct download_sink *s = calloc(1, sizeof(*s));
	sigset_t all, old;
	int err;

	*out = NULL;
	if (!s)
		return ENOMEM;
	s->fd = fd;
	s->prefix = s->off = s->synced = have;
	int ok = (s->ctx = EVP_MD_CTX_new()) != NULL;
	for (int i = 0; i < SINK_BUFFERS; i++)
		ok &= (s->buf[i] = malloc(SINK_BUFFER_BYTES)) != NULL;
	if (!ok || EVP_DigestInit_ex(s->ctx, EVP_sha256(), NULL) != 1) {
		sink_free(s);
		return ENOMEM;
	}
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	/* Signals stay with the threads that expect them. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(&s->thread, NULL, sink_run, s);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err) {
		pthread_cond_destroy(&s->cond);
		pthread_mutex_destroy(&s->lock);
		sink_free(s);
		return err;
	}
	*out = s;
	return 0;
}

/* Queue the buffer being filled and wait for a free one.  Lock held. */
static void queue_head(struct download_sink *s)
{
	s->head++;
	pthread_cond_broadcast(&s->cond);
	while (s->head - s->tail >= SINK_BUFFERS)
		pthread_cond_wait(&s->cond, &s->lock);
}

int download_sink__put(struct download_sink *s, const void *p, size_t n)
{
	const uint8_t *src = p;

	while (n > 0) {
		/* The head buffer is the receiver's alone: no lock to fill. */
		unsigned i = s->head % SINK_BUFFERS;
		size_t room = SINK_BUFFER_BYTES - s->len[i];
		size_t k = n < room ? n : room;

		memcpy(s->buf[i] + s->len[i], src, k);
		s->len[i] += k;
		src += k;
		n -= k;
		if (s->len[i] == SINK_BUFFER_BYTES) {
			pthread_mutex_lock(&s->lock);
			queue_head(s);
			int err = s->error;
			pthread_mutex_unlock(&s->lock);
			if (err)
				return err;
		}
	}
	return 0;
}

int download_sink__finish(struct download_sink *s, uint8_t sha[32])
{
	int err;

	pthread_mutex_lock(&s->lock);
	if (s->len[s->head % SINK_BUFFERS])
		queue_head(s);
	s->done = 1;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	pthread_join(s->thread, NULL);
	err = s->error;
	if (!err && EVP_DigestFinal_ex(s->ctx, sha, NULL) != 1)
		err = EIO;
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	sink_free(s);
	return err;
}
