/*
 * verified.c - a read-only view of an image whose every byte is checked
 * before the caller sees it.
 *
 * Signed appliance packages commit to their disk cluster by cluster (a
 * hash per cluster; see appliances/FORMAT.md).  This view reads whole
 * clusters from the inner image, hands each to the caller's verify
 * function, and only returns data that passed:
 *
 *   - clusters wholly inside a request are read into the caller's buffer
 *     and verified there; a request of several clusters is split into
 *     chunks that the caller and the view's worker thread read and verify
 *     side by side;
 *   - the partial clusters at the ends of a request go through a small
 *     cache of verified clusters (guests read 4 KiB at a time while
 *     clusters are larger); data is served only from verified memory,
 *     never re-read from the file after its check;
 *   - a reader going forward in small steps has the worker verify the
 *     next clusters into that cache ahead of it (read-ahead
 *     verification), so it mostly hits;
 *   - a small read of a cluster that is not in the cache and that does
 *     not continue a stream (a random read) is checked by the parts it
 *     touches when the caller can check parts (imgfmt__verified_parts;
 *     for a package, BLAKE3 subtree CVs): it reads and hashes 4 KiB, not
 *     the whole cluster, and caches nothing;
 *   - clusters whose genuine content is zeros (the is_zero callback; for
 *     a package, their leaf is the leaf of zeros) are served as zeros
 *     without reading or hashing.
 *
 * On any failure the caller's whole buffer is zeroed before the error
 * returns.
 *
 * Threads: pread may be called from several threads at once (the NBD
 * server, the runtime).  One mutex guards the cache and the worker's
 * work; a cache entry's data is written only by the one thread that
 * loads it (state LOADING, which nobody else reads or evicts) and read
 * only under the mutex once READY.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"

#define VERIFIED_CACHE_ENTRIES 32
#define VERIFIED_READAHEAD 16     /* clusters verified ahead of a reader: half the cache */
#define VERIFIED_CHUNK 2          /* clusters per unit of a shared request */
#define VERIFIED_STREAMS 8        /* sequential readers told apart */

enum entry_state {
	ENTRY_EMPTY,
	ENTRY_QUEUED,   /* read-ahead asked for, nobody loading it yet */
	ENTRY_LOADING,  /* one thread is reading and verifying into data */
	ENTRY_READY,    /* verified: may be copied from (under the lock) */
};

struct verified_entry {
	uint64_t cluster;
	uint64_t last_use;
	uint8_t *data;   /* cluster_size bytes once first used */
	size_t len;
	enum entry_state state;
};

/* A reader going forward in small steps.  The NBD server hands one
 * client's requests to several worker threads, and a guest may read two
 * files at once, so reads of several streams arrive interleaved and a
 * little out of order: a read continues a stream if it starts within a
 * cluster of where the stream has got to. */
struct read_stream {
	uint64_t next;      /* the furthest end of the stream's reads */
	uint64_t ra_last;   /* cluster read-ahead was last run for */
	unsigned run;       /* reads that continued it */
	int used;
};

/*
 * Whole-cluster reads get read-ahead only from a lone reader.  When
 * several threads issue them (the NBD server's workers, a client's queue
 * of 16), each request is already read and hashed on the thread that
 * makes it, as many at once as there are cores; read-ahead would add a
 * copy out of the cache and a wake-up per cluster (fio over NBD, 64 KiB
 * sequential reads of incompressible data: 0.65-0.83x of plain reads
 * with it, 0.78-0.98x without).  A lone reader needs the worker (in
 * process, the same reads: 0.54-0.58x without).  A read from another
 * thread than the last one sets the mark to this; each from the same
 * thread takes one off.
 */
#define VERIFIED_SHARED_WHOLE 64

/* Read-ahead starts once a stream has been continued this often: a
 * random read lands near an earlier one now and then (8 streams of two
 * clusters each in 256 MiB: 1 in 250), and read-ahead for it would
 * verify 16 clusters nobody reads; twice in a row it practically never
 * does. */
#define VERIFIED_STREAM_CONFIRM 2

/* A request of several whole clusters shared between its caller and the
 * worker: both take chunks until none are left. */
struct shared_read {
	uint8_t *out;          /* the caller's buffer, cluster `first` */
	uint64_t first, end;   /* clusters [first, end) */
	uint64_t next;         /* first cluster not yet taken */
	int busy;              /* chunks being worked on */
	int rc;                /* first error, and its message */
	char msg[256];
};

struct verified {
	imgfmt_image *img;
	imgfmt_image *inner;
	uint32_t cluster_size;
	imgfmt_verify_fn verify;
	imgfmt_verify_zero_fn is_zero;
	void *opaque;
	uint32_t part_size;               /* 0: clusters are checked whole */
	imgfmt_verify_part_fn verify_part;

	pthread_mutex_t lock;
	pthread_cond_t work;   /* to the worker: something to do, or stop */
	pthread_cond_t done;   /* to readers: an entry or a chunk finished */
	uint64_t clock;
	struct verified_entry cache[VERIFIED_CACHE_ENTRIES];
	struct shared_read *shared;  /* a request the worker may help with */
	struct read_stream streams[VERIFIED_STREAMS];
	unsigned next_stream;        /* the slot a new stream takes */
	pthread_t whole_reader;      /* the thread of the last whole-cluster read */
	int whole_readers_seen;      /* whole_reader is set */
	unsigned shared_whole;       /* > 0: several threads read whole clusters */
	int stop;
	int has_worker;
	pthread_t worker;
};

/* Bytes in cluster `c` (the last one may be short). */
static size_t cluster_len(struct verified *v, uint64_t c)
{
	uint64_t start = c * v->cluster_size;

	if (v->img->virtual_size - start < v->cluster_size)
		return (size_t)(v->img->virtual_size - start);
	return v->cluster_size;
}

static uint64_t nr_clusters(struct verified *v)
{
	return (v->img->virtual_size + v->cluster_size - 1) / v->cluster_size;
}

static int is_zero_cluster(struct verified *v, uint64_t c, size_t len)
{
	return v->is_zero && v->is_zero(v->opaque, c, len) == 1;
}

static int fail_cluster(struct verified *v, uint64_t c)
{
	return imgfmt_err(EBADMSG, "%s: cluster %llu (bytes %llu+%zu) fails "
			  "verification: the image was modified or damaged "
			  "after it was signed", v->img->path,
			  (unsigned long long)c,
			  (unsigned long long)c * v->cluster_size,
			  cluster_len(v, c));
}

/*
 * Fill `out` with the whole clusters [c0, c0 + n) straight from the inner
 * image, verifying them in place: runs of clusters that hold data are
 * read with one call each; clusters whose genuine content is zeros are
 * zeroed without reading.  On failure what was filled is zeroed again:
 * bytes that did not pass never stay in the buffer.  Any thread.
 */
static int fill_clusters(struct verified *v, uint8_t *out, uint64_t c0,
			 uint64_t n)
{
	uint64_t run = c0;       /* first cluster of the pending data run */
	size_t run_bytes = 0;
	int r = 0;

	for (uint64_t c = c0; c <= c0 + n && r == 0; c++) {
		size_t clen = c < c0 + n ? cluster_len(v, c) : 0;
		int zero = c < c0 + n && is_zero_cluster(v, c, clen);

		if (c < c0 + n && !zero) {
			run_bytes += clen;
			continue;
		}
		/* The run ends here: read it, then check each cluster. */
		if (run_bytes) {
			uint8_t *p = out + (run - c0) * v->cluster_size;
			r = imgfmt__pread(v->inner, p, run_bytes,
					  run * v->cluster_size);
			for (uint64_t k = run; r == 0 && k < c; k++) {
				p = out + (k - c0) * v->cluster_size;
				if (v->verify(v->opaque, k, p,
					      cluster_len(v, k)) < 0)
					r = fail_cluster(v, k);
			}
		}
		if (zero)
			memset(out + (c - c0) * v->cluster_size, 0, clen);
		run = c + 1;
		run_bytes = 0;
	}
	if (r < 0)
		memset(out, 0, (size_t)(n - 1) * v->cluster_size +
		       cluster_len(v, c0 + n - 1));
	return r;
}

/* ---- the cache of verified clusters (callers hold v->lock) ---------- */

static struct verified_entry *cache_find(struct verified *v, uint64_t c)
{
	for (int i = 0; i < VERIFIED_CACHE_ENTRIES; i++) {
		struct verified_entry *e = &v->cache[i];
		if (e->state != ENTRY_EMPTY && e->cluster == c)
			return e;
	}
	return NULL;
}

/* An entry to reuse: empty, else the least recently used verified one;
 * NULL if every entry is being loaded or queued.  Allocates its buffer
 * on first use (NULL if that fails). */
static struct verified_entry *cache_victim(struct verified *v)
{
	struct verified_entry *victim = NULL;

	for (int i = 0; i < VERIFIED_CACHE_ENTRIES; i++) {
		struct verified_entry *e = &v->cache[i];
		if (e->state == ENTRY_EMPTY) {
			victim = e;
			break;
		}
		if (e->state == ENTRY_READY &&
		    (!victim || e->last_use < victim->last_use))
			victim = e;
	}
	if (victim && !victim->data) {
		victim->data = malloc(v->cluster_size);
		if (!victim->data)
			return NULL;
	}
	if (victim)
		victim->state = ENTRY_EMPTY;
	return victim;
}

/* Read and verify entry e's cluster into e->data (state LOADING, owned by
 * the caller, lock not held), then publish it or drop it. */
static int cache_load(struct verified *v, struct verified_entry *e)
{
	uint64_t c = e->cluster;
	size_t clen = cluster_len(v, c);
	int r = imgfmt__pread(v->inner, e->data, clen, c * v->cluster_size);

	if (r == 0 && v->verify(v->opaque, c, e->data, clen) < 0)
		r = fail_cluster(v, c);
	pthread_mutex_lock(&v->lock);
	if (r == 0) {
		e->len = clen;
		e->last_use = ++v->clock;
		e->state = ENTRY_READY;
	} else {
		e->state = ENTRY_EMPTY;
	}
	pthread_cond_broadcast(&v->done);
	return r;   /* with the lock held */
}

/* ---- the worker --------------------------------------------------------- */

/* Take a chunk of a shared request and do it (lock held on entry and on
 * return); 0 if there was none left. */
static int shared_step(struct verified *v, struct shared_read *s)
{
	if (s->next >= s->end)
		return 0;
	uint64_t c = s->next;
	uint64_t n = VERIFIED_CHUNK - c % VERIFIED_CHUNK;  /* aligned chunks */
	if (n > s->end - c)
		n = s->end - c;
	s->next = c + n;
	s->busy++;
	pthread_mutex_unlock(&v->lock);
	int r = fill_clusters(v, s->out + (c - s->first) * v->cluster_size,
			      c, n);
	pthread_mutex_lock(&v->lock);
	if (r < 0 && s->rc == 0) {
		s->rc = r;
		snprintf(s->msg, sizeof(s->msg), "%s", imgfmt__error());
	}
	s->busy--;
	pthread_cond_broadcast(&v->done);
	return 1;
}

/* The queued read-ahead entry nearest the reader (lowest cluster), or
 * the farthest (`last`: what a waiting reader takes, so that it does not
 * race the worker for the same next cluster). */
static struct verified_entry *queued_entry(struct verified *v, int last)
{
	struct verified_entry *best = NULL;

	for (int i = 0; i < VERIFIED_CACHE_ENTRIES; i++) {
		struct verified_entry *e = &v->cache[i];
		if (e->state == ENTRY_QUEUED &&
		    (!best || (last ? e->cluster > best->cluster
				    : e->cluster < best->cluster)))
			best = e;
	}
	return best;
}

static void *worker_main(void *arg)
{
	struct verified *v = arg;
	struct verified_entry *e;

	pthread_mutex_lock(&v->lock);
	while (!v->stop) {
		/* A waiting caller first, then read-ahead. */
		if (v->shared && shared_step(v, v->shared))
			continue;
		if ((e = queued_entry(v, 0))) {
			e->state = ENTRY_LOADING;
			pthread_mutex_unlock(&v->lock);
			cache_load(v, e);   /* a failure: the reader sees it */
			continue;
		}
		pthread_cond_wait(&v->work, &v->lock);
	}
	pthread_mutex_unlock(&v->lock);
	return NULL;
}

/* ---- reads ---------------------------------------------------------- */

/* Whole clusters [c0, c0 + n) into out: shared with the worker when there
 * are several and it is not helping another request already. */
static int read_whole(struct verified *v, uint8_t *out, uint64_t c0,
		      uint64_t n)
{
	struct shared_read s = { .out = out, .first = c0, .end = c0 + n,
				 .next = c0 };

	if (n < 2 || !v->has_worker)
		return fill_clusters(v, out, c0, n);
	pthread_mutex_lock(&v->lock);
	if (v->shared) {
		pthread_mutex_unlock(&v->lock);
		return fill_clusters(v, out, c0, n);
	}
	v->shared = &s;
	pthread_cond_signal(&v->work);
	while (shared_step(v, &s))
		;
	while (s.busy)
		pthread_cond_wait(&v->done, &v->lock);
	v->shared = NULL;
	pthread_mutex_unlock(&v->lock);
	if (s.rc < 0)
		return imgfmt_err(-s.rc, "%s", s.msg);
	return 0;
}

/* 1 if a read at `off` continues one of the sequential streams (it is
 * within a cluster of where the stream has got to).  Under v->lock. */
static int stream_near(struct verified *v, const struct read_stream *st,
		       uint64_t off)
{
	return st->used && off + v->cluster_size >= st->next &&
	       off <= st->next + v->cluster_size;
}

static int any_stream_near(struct verified *v, uint64_t off)
{
	for (int i = 0; i < VERIFIED_STREAMS; i++)
		if (stream_near(v, &v->streams[i], off))
			return 1;
	return 0;
}

/* The part-aligned range [*a, *b) around bytes [in, in + n) of a cluster
 * of clen bytes. */
static void parts_around(struct verified *v, size_t in, size_t n,
			 size_t clen, size_t *a, size_t *b)
{
	size_t ps = v->part_size;

	*a = in & ~(ps - 1);
	*b = (in + n + ps - 1) & ~(ps - 1);
	if (*b > clen)
		*b = clen;
}

/*
 * Bytes [in, in + n) of cluster c (clen bytes long) into out, checked by
 * the parts they touch; no lock held.  The parts are read straight into
 * out when the read is aligned to them (guests read whole 4 KiB blocks),
 * else into a bounce buffer.  0, <0 (out zeroed), or 1 if the caller
 * must check the whole cluster instead (out zeroed).
 */
static int read_parts(struct verified *v, uint8_t *out, uint64_t c,
		      size_t in, size_t n, size_t clen)
{
	size_t a, b;
	uint8_t *buf = out, *bounce = NULL;
	int r;

	parts_around(v, in, n, clen, &a, &b);
	if (a != in || b != in + n) {
		if (!(bounce = malloc(b - a)))
			return imgfmt_err(ENOMEM, "out of memory");
		buf = bounce;
	}
	r = imgfmt__pread(v->inner, buf, b - a, c * v->cluster_size + a);
	if (r == 0) {
		int vr = v->verify_part(v->opaque, c, a, buf, b - a);
		r = vr < 0 ? fail_cluster(v, c) : vr > 0;
	}
	if (r == 0 && bounce)
		memcpy(out, bounce + (in - a), n);
	if (r != 0)
		memset(buf, 0, b - a);   /* never leave unchecked bytes */
	free(bounce);
	return r;
}

#define READ_WHOLE 1     /* [in, in + n) is the whole cluster */
#define READ_NO_PARTS 2  /* check the whole cluster even for a small read */

/*
 * Bytes [in, in + n) of cluster c into out.  READ_WHOLE: that is the
 * whole cluster, which is then read straight into out on a miss.
 * Otherwise through the cache: a hit copies; a cluster queued for
 * read-ahead is taken over; one that another thread is loading is waited
 * for, doing a queued read-ahead meanwhile; a miss of a random read is
 * checked by parts when the caller can; any other miss loads the cluster
 * into a cache entry.
 */
static int read_cluster(struct verified *v, uint8_t *out, uint64_t c,
			size_t in, size_t n, int how)
{
	int whole = how & READ_WHOLE;
	size_t clen = cluster_len(v, c);
	struct verified_entry *e;
	int r;

	if (is_zero_cluster(v, c, clen)) {
		memset(out, 0, n);
		return 0;
	}
	pthread_mutex_lock(&v->lock);
	for (;;) {
		e = cache_find(v, c);
		if (e && e->state == ENTRY_READY) {
			memcpy(out, e->data + in, n);
			e->last_use = ++v->clock;
			pthread_mutex_unlock(&v->lock);
			return 0;
		}
		if (e && e->state == ENTRY_LOADING) {
			struct verified_entry *q = queued_entry(v, 1);
			if (q) {
				q->state = ENTRY_LOADING;
				pthread_mutex_unlock(&v->lock);
				cache_load(v, q);
			} else {
				pthread_cond_wait(&v->done, &v->lock);
			}
			continue;
		}
		break;
	}
	/* Not there, or queued and not started: ours to load.  By parts
	 * if that hashes at most half the cluster (parts hash on fewer
	 * SIMD lanes than a whole cluster) and the read is not part of a
	 * stream (which the cache and read-ahead serve). */
	size_t pa = 0, pb = clen;
	if (v->verify_part)
		parts_around(v, in, n, clen, &pa, &pb);
	if (v->verify_part && !whole && !e && !(how & READ_NO_PARTS) &&
	    pb - pa <= clen / 2 &&
	    !any_stream_near(v, c * v->cluster_size + in)) {
		pthread_mutex_unlock(&v->lock);
		r = read_parts(v, out, c, in, n, clen);
		if (r <= 0)
			return r;
		return read_cluster(v, out, c, in, n, how | READ_NO_PARTS);
	}
	if (whole) {
		if (e)
			e->state = ENTRY_EMPTY;
		pthread_mutex_unlock(&v->lock);
		return fill_clusters(v, out, c, 1);
	}
	if (!e)
		e = cache_victim(v);
	if (!e) {       /* every entry busy: read it just for this call */
		pthread_mutex_unlock(&v->lock);
		uint8_t *data = malloc(clen);
		if (!data)
			return imgfmt_err(ENOMEM, "out of memory");
		r = fill_clusters(v, data, c, 1);
		if (r == 0)
			memcpy(out, data + in, n);
		free(data);
		return r;
	}
	e->cluster = c;
	e->state = ENTRY_LOADING;
	pthread_mutex_unlock(&v->lock);
	r = cache_load(v, e);
	if (r == 0) {
		memcpy(out, e->data + in, n);
		e->last_use = ++v->clock;
	}
	pthread_mutex_unlock(&v->lock);
	return r;
}

/* The stream a small read continues, or NULL: then it starts a new one
 * (in the next slot, round robin).  Under v->lock. */
static struct read_stream *continued_stream(struct verified *v, uint64_t off,
					    size_t len)
{
	for (int i = 0; i < VERIFIED_STREAMS; i++) {
		struct read_stream *st = &v->streams[i];
		if (stream_near(v, st, off)) {
			if (off + len > st->next)
				st->next = off + len;
			st->run++;
			return st;
		}
	}
	struct read_stream *st = &v->streams[v->next_stream++ %
					     VERIFIED_STREAMS];
	st->used = 1;
	st->next = off + len;
	st->ra_last = UINT64_MAX;
	st->run = 0;
	return NULL;
}

/* 1 if whole-cluster reads come from several threads (see
 * VERIFIED_SHARED_WHOLE); counts this one.  Under v->lock. */
static int several_whole_readers(struct verified *v)
{
	pthread_t self = pthread_self();

	if (v->whole_readers_seen && !pthread_equal(self, v->whole_reader))
		v->shared_whole = VERIFIED_SHARED_WHOLE;
	else if (v->shared_whole)
		v->shared_whole--;
	v->whole_reader = self;
	v->whole_readers_seen = 1;
	return v->shared_whole > 0;
}

/* After a read that continues a stream (one cluster at most, or part of
 * one: `whole` if it was one whole cluster), queue the clusters after it
 * for the worker to verify into the cache. */
static void read_ahead(struct verified *v, uint64_t off, size_t len,
		       int whole)
{
	uint64_t last = (off + len - 1) / v->cluster_size;
	uint64_t nr = nr_clusters(v);
	int queued = 0;

	pthread_mutex_lock(&v->lock);
	struct read_stream *st = continued_stream(v, off, len);
	if (whole && several_whole_readers(v))
		st = NULL;   /* still tracked: not read by parts */
	if (st && st->run >= VERIFIED_STREAM_CONFIRM && last != st->ra_last) {
		st->ra_last = last;
		for (uint64_t c = last + 1;
		     c <= last + VERIFIED_READAHEAD && c < nr; c++) {
			struct verified_entry *e;
			if (cache_find(v, c) ||
			    is_zero_cluster(v, c, cluster_len(v, c)))
				continue;
			if (!(e = cache_victim(v)))
				break;
			e->cluster = c;
			e->state = ENTRY_QUEUED;
			queued = 1;
		}
	}
	if (queued)
		pthread_cond_signal(&v->work);
	pthread_mutex_unlock(&v->lock);
}

static int verified__pread(imgfmt_image *img, void *buf, size_t len,
			   uint64_t off)
{
	struct verified *v = img->priv;
	uint8_t *out = buf;
	size_t total = len;
	uint64_t start = off;
	int many = 0;   /* several whole clusters: no read-ahead */
	int whole = 1;  /* whole clusters only */
	int r = 0;

	while (len > 0 && r == 0) {
		uint64_t cluster = off / v->cluster_size;
		size_t in = (size_t)(off % v->cluster_size);
		size_t clen = cluster_len(v, cluster);
		size_t n = clen - in;

		if (in == 0 && len >= clen) {
			/* Whole clusters from here on. */
			uint64_t nc = 1;
			size_t bytes = clen;
			while (bytes < len) {
				size_t l = cluster_len(v, cluster + nc);
				if (bytes + l > len)
					break;
				bytes += l;
				nc++;
			}
			if (nc == 1)
				r = read_cluster(v, out, cluster, 0, clen,
						 READ_WHOLE);
			else
				r = read_whole(v, out, cluster, nc);
			many |= nc > 1;
			n = bytes;
		} else {
			if (n > len)
				n = len;
			whole = 0;
			r = read_cluster(v, out, cluster, in, n, 0);
		}
		out += n;
		off += n;
		len -= n;
	}
	if (r < 0) {
		memset(buf, 0, total);
		return r;
	}
	if (v->has_worker && !many)
		read_ahead(v, start, total, whole);
	return 0;
}

static int verified__map(imgfmt_image *img, uint64_t off, uint64_t len,
			 struct imgfmt_extent *ext)
{
	struct verified *v = img->priv;
	int r = imgfmt__map(v->inner, off, len, ext);

	ext->file_offset = -1;
	return r;
}

static int verified__info(imgfmt_image *img, struct imgfmt_info *info)
{
	struct verified *v = img->priv;
	struct imgfmt_info in;
	int r = imgfmt__info(v->inner, &in);

	if (r < 0)
		return r;
	snprintf(info->format, sizeof(info->format), "%s", in.format);
	snprintf(info->subformat, sizeof(info->subformat), "verified");
	info->file_size = in.file_size;
	info->allocated_bytes = in.allocated_bytes;
	info->cluster_size = in.cluster_size;
	info->has_uuid = in.has_uuid;
	memcpy(info->uuid, in.uuid, sizeof(in.uuid));
	return 0;
}

/* Check: the inner image's own check (its metadata), then every cluster
 * read and verified, each that fails counted as a checksum error. */
static int verified__check(imgfmt_image *img, int repair,
			   struct imgfmt_check_result *res)
{
	struct verified *v = img->priv;
	uint8_t *buf;
	int r;

	if (repair)
		return imgfmt_err(EROFS, "%s: a verified image cannot be "
				  "repaired", img->path);
	if ((r = imgfmt__check(v->inner, 0, res)) < 0)
		return r;
	if (!(buf = malloc(v->cluster_size)))
		return imgfmt_err(ENOMEM, "out of memory");
	for (uint64_t c = 0; c < nr_clusters(v); c++) {
		size_t len = cluster_len(v, c);
		if (is_zero_cluster(v, c, len))
			continue;
		if (fill_clusters(v, buf, c, 1) == 0)
			continue;
		if (!res->checksum_errors++ && !res->first_problem[0])
			snprintf(res->first_problem,
				 sizeof(res->first_problem), "%s",
				 imgfmt__error());
	}
	free(buf);
	return 0;
}

static void verified__close(imgfmt_image *img)
{
	struct verified *v = img->priv;

	if (!v)
		return;
	if (v->has_worker) {
		pthread_mutex_lock(&v->lock);
		v->stop = 1;
		pthread_cond_signal(&v->work);
		pthread_mutex_unlock(&v->lock);
		pthread_join(v->worker, NULL);
	}
	for (int i = 0; i < VERIFIED_CACHE_ENTRIES; i++)
		free(v->cache[i].data);
	imgfmt__close(v->inner);
	pthread_cond_destroy(&v->work);
	pthread_cond_destroy(&v->done);
	pthread_mutex_destroy(&v->lock);
	free(v);
}

static const struct imgfmt_driver verified_driver = {
	.name = "verified",
	.pread = verified__pread,
	.map = verified__map,
	.info = verified__info,
	.check = verified__check,
	.close = verified__close,
};

/* The worker takes no signals: they stay with the threads that expect
 * them (the runtime waits for some). */
static void start_worker(struct verified *v)
{
	sigset_t all, old;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	v->has_worker = pthread_create(&v->worker, NULL, worker_main, v) == 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

int imgfmt__verified_parts(imgfmt_image *view, uint32_t part_size,
			   imgfmt_verify_part_fn verify_part)
{
	struct verified *v = view->priv;

	if (view->drv != &verified_driver)
		return imgfmt_err(EINVAL, "%s: not a verified view", view->path);
	if (part_size < 512 || part_size > v->cluster_size / 2 ||
	    (part_size & (part_size - 1)) || !verify_part)
		return imgfmt_err(EINVAL, "%s: bad verification part size %u "
				  "(clusters of %u bytes)", view->path,
				  part_size, v->cluster_size);
	pthread_mutex_lock(&v->lock);
	v->part_size = part_size;
	v->verify_part = verify_part;
	pthread_mutex_unlock(&v->lock);
	return 0;
}

int imgfmt__open_verified(imgfmt_image *inner, uint32_t cluster_size,
			  imgfmt_verify_fn verify, imgfmt_verify_zero_fn is_zero,
			  void *opaque, imgfmt_image **out)
{
	imgfmt_image *img;
	struct verified *v;

	*out = NULL;
	if (cluster_size < 512 || cluster_size > IMGFMT_MAX_CLUSTER ||
	    (cluster_size & (cluster_size - 1)))
		return imgfmt_err(EINVAL, "%s: bad verification cluster size "
				  "%u", inner->path, cluster_size);
	img = calloc(1, sizeof(*img));
	v = calloc(1, sizeof(*v));
	if (!img || !v || asprintf(&img->path, "%s", inner->path) < 0) {
		free(img);
		free(v);
		return imgfmt_err(ENOMEM, "out of memory");
	}
	pthread_mutex_init(&v->lock, NULL);
	pthread_cond_init(&v->work, NULL);
	pthread_cond_init(&v->done, NULL);
	v->img = img;
	v->inner = inner;
	v->cluster_size = cluster_size;
	v->verify = verify;
	v->is_zero = is_zero;
	v->opaque = opaque;
	img->drv = &verified_driver;
	img->fd = -1;
	img->read_only = 1;
	img->depth = inner->depth;
	img->virtual_size = inner->virtual_size;
	img->file_length = inner->file_length;
	img->cache_bytes = inner->cache_bytes;
	img->priv = v;
	start_worker(v);
	*out = img;
	return 0;
}
