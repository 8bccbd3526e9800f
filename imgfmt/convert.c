/*
 * convert.c - the conversion engine (convert.h).
 *
 * A small pipeline over a ring of `window` work-item slots:
 *
 *   workers (N threads)  take the next run of up to 1 MiB that the
 *                        source's allocation map says is not zero, read
 *                        it with one pread (imgfmt__pread is thread-safe)
 *                        into the item's slot, drop the chunks that read
 *                        as all zeros and encode (compress) the others;
 *                        a format that stores data as it is (raw) keeps
 *                        pointing into the slot's buffer, so the data is
 *                        never copied;
 *   the calling thread   puts finished slots in ascending order, the only
 *                        order the streaming writers accept.
 *
 * Workers never run more than `window` items ahead of the writer, which
 * bounds memory to window x max(1 MiB, chunk size) (the slots' read
 * buffers, allocated once) plus the encoded chunks, whatever the image
 * size.  Errors
 * raised on a worker are carried to the calling thread with their message
 * (imgfmt's messages are thread-local).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "convert.h"
#include "driver.h"

#define BATCH_BYTES (1u << 20) /* source bytes per work item */

enum slot_state { SLOT_FREE, SLOT_BUSY, SLOT_READY };

/* One work item: up to `batch` consecutive chunks read with one pread,
 * so the per-item locking and syscalls are paid per ~1 MiB, not per
 * cluster. */
struct slot {
	enum slot_state state;
	uint32_t n;                /* chunks in this item */
	uint8_t *buf;              /* the item's source bytes (encoded chunks
	                              may point into it until put) */
	struct imgfmt_chunk *chunks;
	uint8_t *skip;             /* per chunk: all zero, nothing to put */
};

struct pipeline {
	imgfmt_image *src;
	imgfmt_writer *w;
	uint64_t size;
	uint32_t cs;
	uint32_t batch;            /* chunks per work item */
	pthread_mutex_t lock;
	pthread_cond_t cond;       /* any state change */
	struct slot *slots;
	uint64_t window;
	uint64_t seq_next;         /* next sequence number to hand out */
	uint64_t seq_put;          /* next sequence number to put */
	uint64_t cursor;           /* next virtual offset to consider */
	struct imgfmt_extent ext;  /* the last extent map gave (ext.length 0:
	                              none): a data extent spans many items,
	                              and each map of a raw file costs two
	                              lseeks */
	int workers_left;
	int err;                   /* first error (negative errno) */
	char errmsg[1024];
	struct imgfmt_convert_stats st;
};

static void fail_locked(struct pipeline *p, int r)
{
	if (!p->err) {
		p->err = r;
		snprintf(p->errmsg, sizeof(p->errmsg), "%s", imgfmt__error());
	}
	pthread_cond_broadcast(&p->cond);
}

/* Move the cursor past whole chunks the source maps as zero, and return
 * in *len how much to read next: up to `batch` chunks, but not far into
 * the next zero run.  Called with the lock held; map reads metadata
 * only. */
static int next_item(struct pipeline *p, uint64_t *len)
{
	struct imgfmt_extent e;

	*len = 0;
	while (p->cursor < p->size) {
		if (p->cursor >= p->ext.offset &&
		    p->cursor < p->ext.offset + p->ext.length) {
			e = p->ext;
			e.length = e.offset + e.length - p->cursor;
		} else {
			int r = imgfmt__map(p->src, p->cursor,
					    p->size - p->cursor, &e);
			if (r < 0)
				return r;
			p->ext = e;
		}
		uint64_t end = p->cursor + e.length;
		if (e.kind != IMGFMT_EXTENT_ZERO) {
			/* Data: read to the end of the extent (rounded up
			 * to whole chunks), at most one batch. */
			uint64_t want = end - p->cursor;
			uint64_t max = (uint64_t)p->batch * p->cs;
			want = (want + p->cs - 1) / p->cs * p->cs;
			if (want > max)
				want = max;
			if (want > p->size - p->cursor)
				want = p->size - p->cursor;
			*len = want;
			return 0;
		}
		uint64_t next = end >= p->size ? p->size
					       : end - end % p->cs;
		if (next <= p->cursor) {
			/* Zero run ends inside this chunk: read the chunk. */
			*len = p->size - p->cursor < p->cs
				       ? p->size - p->cursor : p->cs;
			return 0;
		}
		p->st.chunks_skipped += (next - p->cursor + p->cs - 1) / p->cs;
		p->cursor = next;
	}
	return 0;
}

static void *worker(void *arg)
{
	struct pipeline *p = arg;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		uint64_t len;
		while (!p->err && p->cursor < p->size &&
		       p->seq_next - p->seq_put >= p->window)
			pthread_cond_wait(&p->cond, &p->lock);
		if (p->err)
			break;
		int r = next_item(p, &len);
		if (r < 0) {
			fail_locked(p, r);
			break;
		}
		if (p->cursor >= p->size)
			break;
		uint64_t seq = p->seq_next++;
		uint64_t off = p->cursor;
		struct slot *s = &p->slots[seq % p->window];
		p->cursor += len;
		s->state = SLOT_BUSY;
		s->n = (uint32_t)((len + p->cs - 1) / p->cs);
		uint8_t *buf = s->buf;
		pthread_mutex_unlock(&p->lock);

		r = imgfmt__pread(p->src, buf, (size_t)len, off);
		for (uint32_t i = 0; r == 0 && i < s->n; i++) {
			uint64_t coff = off + (uint64_t)i * p->cs;
			uint32_t clen = off + len - coff < p->cs
						? (uint32_t)(off + len - coff)
						: p->cs;
			const uint8_t *d = buf + (size_t)i * p->cs;
			memset(&s->chunks[i], 0, sizeof(s->chunks[i]));
			s->chunks[i].offset = coff;
			s->chunks[i].length = clen;
			s->skip[i] = imgfmt_is_zero(d, clen);
			if (!s->skip[i])
				r = imgfmt__writer_encode(p->w, d, coff, clen,
							  &s->chunks[i]);
		}

		pthread_mutex_lock(&p->lock);
		p->st.bytes_read += len;
		if (r < 0) {
			for (uint32_t i = 0; i < s->n; i++)
				imgfmt__chunk_release(&s->chunks[i]);
			fail_locked(p, r);
			break;
		}
		s->state = SLOT_READY;
		pthread_cond_broadcast(&p->cond);
	}
	p->workers_left--;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* The calling thread: put READY items in sequence order. */
static void writer_loop(struct pipeline *p, const struct imgfmt_convert_opts *co)
{
	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct slot *s = &p->slots[p->seq_put % p->window];
		while (!p->err && !(p->seq_put < p->seq_next &&
				    s->state == SLOT_READY) &&
		       !(p->workers_left == 0 && p->seq_put == p->seq_next))
			pthread_cond_wait(&p->cond, &p->lock);
		if (p->err || (p->workers_left == 0 &&
			       p->seq_put == p->seq_next))
			break;
		pthread_mutex_unlock(&p->lock);

		/* The writer's state is ours alone: put without the lock. */
		int r = 0;
		uint64_t written = 0, skipped = 0, done = 0;
		for (uint32_t i = 0; i < s->n; i++) {
			if (r == 0 && !s->skip[i]) {
				r = imgfmt__writer_put(p->w, &s->chunks[i]);
				written++;
			} else if (r == 0) {
				skipped++;
			}
			done = s->chunks[i].offset + s->chunks[i].length;
			imgfmt__chunk_release(&s->chunks[i]);
		}

		pthread_mutex_lock(&p->lock);
		if (r < 0) {
			fail_locked(p, r);
			break;
		}
		p->st.chunks_written += written;
		p->st.chunks_skipped += skipped;
		s->state = SLOT_FREE;
		p->seq_put++;
		pthread_cond_broadcast(&p->cond);
		if (co->progress) {
			pthread_mutex_unlock(&p->lock);
			co->progress(done, p->size, co->progress_arg);
			pthread_mutex_lock(&p->lock);
		}
	}
	pthread_mutex_unlock(&p->lock);
}

static void free_slots(struct pipeline *p)
{
	for (uint64_t i = 0; i < p->window; i++) {
		for (uint32_t k = 0; p->slots[i].chunks && k < p->batch; k++)
			imgfmt__chunk_release(&p->slots[i].chunks[k]);
		free(p->slots[i].chunks);
		free(p->slots[i].skip);
		free(p->slots[i].buf);
	}
	free(p->slots);
	p->slots = NULL;
}

int imgfmt__convert(imgfmt_image *src, const char *dst_path,
		    const struct imgfmt_writer_opts *wo_in,
		    const struct imgfmt_convert_opts *co_in,
		    struct imgfmt_convert_stats *stats)
{
	struct imgfmt_convert_opts co = { 0 };
	struct imgfmt_writer_opts wo = *wo_in;
	struct pipeline p;
	pthread_t tids[64];
	int nthreads, started = 0, r;

	if (co_in)
		co = *co_in;
	if (!wo.size)
		wo.size = src->virtual_size;
	if (wo.size < src->virtual_size)
		return imgfmt_err(EINVAL, "%s: destination size %llu is smaller "
				  "than the source (%llu bytes)", dst_path,
				  (unsigned long long)wo.size,
				  (unsigned long long)src->virtual_size);
	if (wo.backing_file)
		/* Sparse chunks would show the backing file instead of the
		 * source's zeros; copying only differences needs a compare
		 * pass this engine does not have. */
		return imgfmt_err(ENOTSUP, "%s: converting to an image with a "
				  "backing file is not supported", dst_path);
	if (strlen(dst_path) > 4096)
		return imgfmt_err(ENAMETOOLONG, "%s: name too long", dst_path);
	if (!co.overwrite && access(dst_path, F_OK) == 0)
		return imgfmt_err(EEXIST, "%s: destination exists (use "
				  "overwrite to replace it)", dst_path);
	nthreads = co.threads;
	if (nthreads <= 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		nthreads = n > 0 ? (int)n : 1;
	}
	if (nthreads > 64)
		nthreads = 64;

	memset(&p, 0, sizeof(p));
	/* The writer names dst_path only once the image is complete: a
	 * convert that fails or is killed leaves no half-written one. */
	wo.replace = co.overwrite;
	r = imgfmt__writer_open(dst_path, &wo, &p.w);
	if (r < 0)
		return r;
	p.src = src;
	p.size = src->virtual_size;
	p.cs = imgfmt__writer_chunk_size(p.w);
	p.batch = p.cs >= BATCH_BYTES ? 1 : BATCH_BYTES / p.cs;
	p.window = (uint64_t)nthreads * 2 + 2;
	p.slots = calloc(p.window, sizeof(*p.slots));
	if (!p.slots) {
		r = imgfmt_err(ENOMEM, "out of memory");
		goto fail;
	}
	for (uint64_t i = 0; i < p.window; i++) {
		p.slots[i].chunks = calloc(p.batch, sizeof(struct imgfmt_chunk));
		p.slots[i].skip = calloc(p.batch, 1);
		p.slots[i].buf = malloc((size_t)p.batch * p.cs);
		if (!p.slots[i].chunks || !p.slots[i].skip ||
		    !p.slots[i].buf) {
			free_slots(&p);
			r = imgfmt_err(ENOMEM, "out of memory");
			goto fail;
		}
	}
	pthread_mutex_init(&p.lock, NULL);
	pthread_cond_init(&p.cond, NULL);
	p.workers_left = nthreads;
	for (; started < nthreads; started++) {
		if (pthread_create(&tids[started], NULL, worker, &p) != 0)
			break;
	}
	pthread_mutex_lock(&p.lock);
	p.workers_left -= nthreads - started;
	if (started == 0)
		fail_locked(&p, imgfmt_err(EAGAIN, "cannot start threads"));
	pthread_mutex_unlock(&p.lock);

	writer_loop(&p, &co);
	for (int i = 0; i < started; i++)
		pthread_join(tids[i], NULL);
	free_slots(&p);
	pthread_mutex_destroy(&p.lock);
	pthread_cond_destroy(&p.cond);
	if (p.err) {
		r = imgfmt_err(-p.err, "%s", p.errmsg);
		goto fail;
	}

	r = imgfmt__writer_finish(p.w);
	if (r == 0 && stats)
		*stats = p.st;
	return r;

fail:
	imgfmt__writer_abort(p.w);
	return r;
}
