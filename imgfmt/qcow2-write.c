/*
 * qcow2-write.c - the streaming qcow2 writer (writer.h): qcow2 version 3,
 * 16-bit refcounts, optionally compressed with zlib or zstd.
 *
 * Layout, front to back, in the order put() sees the data:
 *
 *   cluster 0        header, header extensions, backing file name
 *   data clusters    in ascending virtual order; compressed clusters are
 *                    packed byte by byte (several per host cluster)
 *   L2 tables        each written as soon as put() moves past the part of
 *                    the disk it maps, so only one L2 table is in memory
 *   L1 table, refcount table, refcount blocks    written by finish()
 *
 * Refcounts are kept in memory (two bytes per host cluster written) and
 * stored last, once the file's final cluster count is known; the refcount
 * blocks must cover themselves, so their count is found by iterating to a
 * fixed point.  The header is written last of all, so a file interrupted
 * half way is never a valid-looking image (and convert writes to a
 * temporary name anyway).  Data goes through the writer's append queue
 * (writer.c: one pwritev per ~1 MiB, encode buffers recycled, writeback
 * started early).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "driver.h"
#include "qcow2.h"

#define CHUNK_COMPRESSED 1u

struct q2w {
	uint32_t cs;
	unsigned cb;
	uint32_t l2_entries;
	uint64_t l1_size;
	uint64_t *l1;           /* entries as stored (host order) */
	uint64_t *l2;           /* the current L2 table (host order) */
	uint64_t l2_index;      /* which L1 slot l2 belongs to */
	int l2_used;
	uint64_t host_end;      /* next free byte of the file */
	uint16_t *rc;           /* refcount per host cluster */
	uint64_t rc_len;
	int compress, ctype, level;
	unsigned csize_shift;
};

/* Make the refcount array cover cluster `cl`. */
static int rc_reserve(imgfmt_writer *w, struct q2w *s, uint64_t cl)
{
	if (cl < s->rc_len)
		return 0;
	uint64_t n = s->rc_len ? s->rc_len : 1024;
	while (n <= cl)
		n *= 2;
	uint16_t *p = realloc(s->rc, n * sizeof(*p));
	if (!p)
		return imgfmt_err(ENOMEM, "%s: out of memory for refcounts",
				  w->path);
	memset(p + s->rc_len, 0, (n - s->rc_len) * sizeof(*p));
	s->rc = p;
	s->rc_len = n;
	return 0;
}

static uint64_t align_up(uint64_t v, uint32_t a)
{
	return (v + a - 1) & ~(uint64_t)(a - 1);
}

/* Place one whole cluster at the next cluster boundary; returns its
 * offset in *at.  owned: buf is a chunk's buffer we now own (queued and
 * freed once written); else metadata written at once, after the queue. */
static int put_cluster(imgfmt_writer *w, struct q2w *s, void *buf,
		       int owned, uint64_t *at)
{
	uint64_t off = align_up(s->host_end, s->cs);
	int r = rc_reserve(w, s, off >> s->cb);

	if (r < 0) {
		if (owned)
			imgfmt_writer_buf_put(w, buf);
		return r;
	}
	if (owned)
		r = imgfmt_writer_append(w, buf, s->cs, off);
	else
		r = imgfmt_writer_write(w, buf, s->cs, off);
	if (r < 0)
		return r;
	s->rc[off >> s->cb] = 1;
	s->host_end = off + s->cs;
	*at = off;
	return 0;
}

static int flush_l2(imgfmt_writer *w, struct q2w *s)
{
	uint64_t at;
	int r;

	if (!s->l2_used)
		return 0;
	for (uint32_t i = 0; i < s->l2_entries; i++)
		q2_put64((uint8_t *)&s->l2[i], s->l2[i]);
	r = put_cluster(w, s, s->l2, 0, &at);
	if (r < 0)
		return r;
	s->l1[s->l2_index] = at | QENTRY_COPIED;
	memset(s->l2, 0, s->cs);
	s->l2_used = 0;
	return 0;
}

int qcow2__writer_open(imgfmt_writer *w)
{
	struct q2w *s;
	uint32_t cs = w->opts.cluster_size ? w->opts.cluster_size : 65536;
	const char *ct = w->opts.compression_type;
	unsigned cb = 0;

	while ((1u << cb) < cs && cb < 31)
		cb++;
	if ((1u << cb) != cs || cb < QCOW2_MIN_CLUSTER_BITS ||
	    cb > QCOW2_MAX_CLUSTER_BITS)
		return imgfmt_err(EINVAL, "%s: qcow2 cluster size %u must be a "
				  "power of two from 512 to 2M", w->path, cs);
	if (ct && strcmp(ct, "zlib") != 0 && strcmp(ct, "zstd") != 0)
		return imgfmt_err(EINVAL, "%s: unknown qcow2 compression_type "
				  "'%s' (zlib or zstd)", w->path, ct);
	if (w->opts.backing_file &&
	    (strlen(w->opts.backing_file) > QCOW2_MAX_BACKING_NAME ||
	     !w->opts.backing_file[0]))
		return imgfmt_err(EINVAL, "%s: qcow2 backing file name must be "
				  "1..%d bytes", w->path,
				  QCOW2_MAX_BACKING_NAME);
	if (w->opts.backing_format &&
	    (strlen(w->opts.backing_format) > 15 ||
	     strpbrk(w->opts.backing_format, "\n\"'/\\")))
		return imgfmt_err(EINVAL, "%s: bad backing format name",
				  w->path);
	s = calloc(1, sizeof(*s));
	if (!s)
		return imgfmt_err(ENOMEM, "out of memory");
	w->priv = s;
	s->cs = cs;
	s->cb = cb;
	s->l2_entries = cs / 8;
	uint64_t per_l1 = (uint64_t)s->l2_entries << cb;
	s->l1_size = (w->opts.size + per_l1 - 1) / per_l1;
	if (s->l1_size * 8 > QCOW2_MAX_L1_BYTES)
		return imgfmt_err(EFBIG, "%s: a %llu-byte disk needs an L1 table "
				  "over 32 MiB with %u-byte clusters; use a "
				  "larger cluster_size", w->path,
				  (unsigned long long)w->opts.size, cs);
	s->l1 = calloc(s->l1_size ? s->l1_size : 1, sizeof(*s->l1));
	s->l2 = calloc(1, cs);
	if (!s->l1 || !s->l2)
		return imgfmt_err(ENOMEM, "out of memory");
	s->compress = w->opts.compress;
	s->ctype = ct && strcmp(ct, "zstd") == 0 ? QCOMP_ZSTD : QCOMP_ZLIB;
	s->level = w->opts.compress_level;
	if (s->ctype == QCOMP_ZLIB && (s->level < 0 || s->level > 9))
		return imgfmt_err(EINVAL, "%s: zlib level %d is out of range "
				  "(1..9)", w->path, s->level);
	if (s->ctype == QCOMP_ZSTD && s->level > ZSTD_maxCLevel())
		return imgfmt_err(EINVAL, "%s: zstd level %d is out of range",
				  w->path, s->level);
	s->csize_shift = 62 - (cb - 8);
	int r = rc_reserve(w, s, 0);
	if (r < 0)
		return r;
	s->rc[0] = 1;          /* the header cluster */
	s->host_end = cs;
	w->chunk_size = cs;
	return 0;
}

/* Compress a full cluster into out (cs bytes).  Returns the compressed
 * length, 0 if it does not shrink enough to be worth it, <0 on error. */
static long compress_cluster(struct q2w *s, const uint8_t *in, uint8_t *out)
{
	/* Keep the result under the cluster size minus a sector: the
	 * compressed size field counts sectors, and a cluster that barely
	 * shrinks is faster to read raw. */
	size_t limit = s->cs - 512 > 0 ? s->cs - 512 : s->cs;

	if (s->ctype == QCOMP_ZSTD) {
		ZSTD_CCtx *c = imgfmt_writer_zstd_cctx();
		if (!c)
			return imgfmt_err(ENOMEM, "zstd: out of memory");
		ZSTD_CCtx_reset(c, ZSTD_reset_session_and_parameters);
		ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel,
				       s->level ? s->level : 3);
		size_t n = ZSTD_compress2(c, out, limit, in, s->cs);
		if (ZSTD_isError(n))
			return 0; /* does not fit: store raw */
		return (long)n;
	}
	z_stream z;
	memset(&z, 0, sizeof(z));
	if (deflateInit2(&z, s->level ? s->level : Z_DEFAULT_COMPRESSION,
			 Z_DEFLATED, -12, 9, Z_DEFAULT_STRATEGY) != Z_OK)
		return imgfmt_err(ENOMEM, "zlib: out of memory");
	z.next_in = (uint8_t *)in;
	z.avail_in = s->cs;
	z.next_out = out;
	z.avail_out = (uInt)limit;
	int zr = deflate(&z, Z_FINISH);
	long n = zr == Z_STREAM_END ? (long)(limit - z.avail_out) : 0;
	deflateEnd(&z);
	return n;
}

int qcow2__writer_encode(imgfmt_writer *w, const void *data, uint64_t off,
			 uint32_t len, struct imgfmt_chunk *chunk)
{
	struct q2w *s = w->priv;
	uint8_t *raw = imgfmt_writer_buf_get(w);

	(void)off;
	if (!raw)
		return imgfmt_err(ENOMEM, "out of memory");
	/* The last chunk may be short; the cluster is stored whole. */
	memcpy(raw, data, len);
	memset(raw + len, 0, s->cs - len);
	if (s->compress) {
		uint8_t *c = imgfmt_writer_buf_get(w);
		long n;
		if (!c) {
			imgfmt_writer_buf_put(w, raw);
			return imgfmt_err(ENOMEM, "out of memory");
		}
		n = compress_cluster(s, raw, c);
		if (n < 0) {
			imgfmt_writer_buf_put(w, raw);
			imgfmt_writer_buf_put(w, c);
			return (int)n;
		}
		if (n > 0) {
			imgfmt_writer_buf_put(w, raw);
			chunk->data = c;
			chunk->data_len = (size_t)n;
			chunk->flags = CHUNK_COMPRESSED;
			return 0;
		}
		imgfmt_writer_buf_put(w, c);
	}
	chunk->data = raw;
	chunk->data_len = s->cs;
	return 0;
}

int qcow2__writer_put(imgfmt_writer *w, struct imgfmt_chunk *chunk)
{
	struct q2w *s = w->priv;
	uint64_t vcl = chunk->offset >> s->cb;
	uint64_t l1i = vcl / s->l2_entries;
	uint64_t entry;
	int r;

	if (l1i >= s->l1_size)
		return imgfmt_err(EINVAL, "%s: chunk at %llu is past the disk",
				  w->path, (unsigned long long)chunk->offset);
	if (s->l2_used && l1i != s->l2_index) {
		r = flush_l2(w, s);
		if (r < 0)
			return r;
	}
	s->l2_index = l1i;
	if (chunk->flags & CHUNK_COMPRESSED) {
		uint64_t at = s->host_end, len = chunk->data_len;
		uint64_t first = at >> s->cb, last = (at + len - 1) >> s->cb;
		/* 16-bit refcounts: start a fresh cluster before one of them
		 * could overflow (many tiny blobs in one big cluster). */
		r = rc_reserve(w, s, last + 1);
		if (r < 0)
			return r;
		if (s->rc[first] >= UINT16_MAX - 1 ||
		    s->rc[last] >= UINT16_MAX - 1) {
			at = align_up(at + 1, s->cs);
			first = at >> s->cb;
			last = (at + len - 1) >> s->cb;
			r = rc_reserve(w, s, last + 1);
			if (r < 0)
				return r;
		}
		void *data = chunk->data;
		chunk->data = NULL; /* ours now: freed once written */
		r = imgfmt_writer_append(w, data, len, at);
		if (r < 0)
			return r;
		for (uint64_t c = first; c <= last; c++)
			s->rc[c]++;
		uint64_t nsec = ((at + len - 1) >> 9) - (at >> 9);
		entry = QL2_COMPRESSED | (nsec << s->csize_shift) | at;
		s->host_end = at + len;
	} else {
		uint64_t at;
		void *data = chunk->data;
		chunk->data = NULL;
		r = put_cluster(w, s, data, 1, &at);
		if (r < 0)
			return r;
		entry = at | QENTRY_COPIED;
	}
	s->l2[vcl % s->l2_entries] = entry;
	s->l2_used = 1;
	return 0;
}

static int write_header(imgfmt_writer *w, struct q2w *s, uint64_t l1_off,
			uint64_t rt_off, uint32_t rt_clusters)
{
	uint8_t *h = calloc(1, s->cs);
	uint32_t pos = QH_V3_LENGTH;
	const char *bf = w->opts.backing_format;
	const char *bn = w->opts.backing_file;
	int r;

	if (!h)
		return imgfmt_err(ENOMEM, "out of memory");
	q2_put32(h + QH_MAGIC, QCOW2_MAGIC);
	q2_put32(h + QH_VERSION, 3);
	q2_put32(h + QH_CLUSTER_BITS, s->cb);
	/* QEMU counts qcow2 disks in 512-byte sectors and drops a partial
	 * last sector, so round up as qemu-img create does (the extra bytes
	 * read as zeros). */
	q2_put64(h + QH_SIZE, align_up(w->opts.size, 512));
	q2_put32(h + QH_L1_SIZE, (uint32_t)s->l1_size);
	q2_put64(h + QH_L1_OFFSET, l1_off);
	q2_put64(h + QH_REFTABLE_OFFSET, rt_off);
	q2_put32(h + QH_REFTABLE_CLUSTERS, rt_clusters);
	q2_put64(h + QH_INCOMPAT,
		 s->ctype == QCOMP_ZSTD ? QINCOMPAT_COMPRESSION : 0);
	q2_put32(h + QH_REFCOUNT_ORDER, 4);
	q2_put32(h + QH_HEADER_LENGTH, QH_V3_LENGTH);
	h[QH_COMPRESSION_TYPE] = (uint8_t)s->ctype;
	if (bn && bf) {
		size_t n = strlen(bf);
		q2_put32(h + pos, QEXT_BACKING_FORMAT);
		q2_put32(h + pos + 4, (uint32_t)n);
		memcpy(h + pos + 8, bf, n);
		pos += 8 + (uint32_t)((n + 7) & ~7u);
	}
	pos += 8; /* end-of-extensions marker: 8 zero bytes */
	if (bn) {
		size_t n = strlen(bn);
		if (pos + n > s->cs) {
			free(h);
			return imgfmt_err(EINVAL, "%s: backing file name does "
					  "not fit in a %u-byte header "
					  "cluster", w->path, s->cs);
		}
		q2_put64(h + QH_BACKING_OFFSET, pos);
		q2_put32(h + QH_BACKING_SIZE, (uint32_t)n);
		memcpy(h + pos, bn, n);
	}
	r = imgfmt_writer_write(w, h, s->cs, 0);
	free(h);
	return r;
}

int qcow2__writer_finish(imgfmt_writer *w)
{
	struct q2w *s = w->priv;
	uint8_t *buf = NULL;
	int r;

	r = flush_l2(w, s);
	if (r == 0)
		r = imgfmt_writer_flush_appends(w);
	if (r < 0)
		goto out;

	/* L1 table. */
	uint64_t l1_off = 0, l1_clusters = 0;
	uint64_t end = align_up(s->host_end, s->cs);
	if (s->l1_size) {
		l1_off = end;
		l1_clusters = (s->l1_size * 8 + s->cs - 1) >> s->cb;
		end += l1_clusters << s->cb;
	}

	/* Refcount table and blocks go after everything else and must
	 * count themselves: iterate to the fixed point. */
	uint64_t per_blk = s->cs / 2;
	uint64_t base = end >> s->cb, total = base, nblk, ntab;
	for (;;) {
		nblk = (total + per_blk - 1) / per_blk;
		ntab = (nblk * 8 + s->cs - 1) >> s->cb;
		if (base + ntab + nblk <= total)
			break;
		total = base + ntab + nblk;
	}
	if (ntab > UINT32_MAX) {
		r = imgfmt_err(EFBIG, "%s: refcount table too large", w->path);
		goto out;
	}
	r = rc_reserve(w, s, total);
	if (r < 0)
		goto out;
	for (uint64_t c = l1_off >> s->cb; c < base; c++)
		s->rc[c] = 1;
	for (uint64_t c = base; c < base + ntab + nblk; c++)
		s->rc[c] = 1;

	size_t tabbytes = (size_t)(ntab << s->cb);
	size_t l1bytes = (size_t)(l1_clusters << s->cb);
	buf = calloc(1, tabbytes > l1bytes ? tabbytes : l1bytes);
	if (!buf && (tabbytes || l1bytes)) {
		r = imgfmt_err(ENOMEM, "out of memory");
		goto out;
	}
	if (l1bytes) {
		for (uint64_t i = 0; i < s->l1_size; i++)
			q2_put64(buf + i * 8, s->l1[i]);
		r = imgfmt_writer_write(w, buf, l1bytes, l1_off);
		if (r < 0)
			goto out;
	}
	uint64_t rt_off = base << s->cb;
	memset(buf, 0, tabbytes);
	for (uint64_t i = 0; i < nblk; i++)
		q2_put64(buf + i * 8, (base + ntab + i) << s->cb);
	r = imgfmt_writer_write(w, buf, tabbytes, rt_off);
	if (r < 0)
		goto out;
	uint8_t *blk = calloc(1, s->cs);
	if (!blk) {
		r = imgfmt_err(ENOMEM, "out of memory");
		goto out;
	}
	for (uint64_t i = 0; i < nblk && r == 0; i++) {
		for (uint64_t k = 0; k < per_blk; k++) {
			uint64_t c = i * per_blk + k;
			q2_put16(blk + k * 2, c < s->rc_len ? s->rc[c] : 0);
		}
		r = imgfmt_writer_write(w, blk, s->cs, (base + ntab + i) << s->cb);
	}
	free(blk);
	if (r < 0)
		goto out;
	if (ftruncate(w->fd, (off_t)((base + ntab + nblk) << s->cb)) < 0) {
		r = imgfmt_err(errno, "%s: truncate: %s", w->path,
			       strerror(errno));
		goto out;
	}
	r = write_header(w, s, l1_off, rt_off, (uint32_t)ntab);
out:
	free(buf);
	qcow2__writer_abort(w);
	return r;
}

void qcow2__writer_abort(imgfmt_writer *w)
{
	struct q2w *s = w->priv;

	if (!s)
		return;
	free(s->l1);
	free(s->l2);
	free(s->rc);
	free(s);
	w->priv = NULL;
}

/* An empty image is a streaming write with no chunks. */
int qcow2__create(const char *path, const struct imgfmt_create_opts *o)
{
	struct imgfmt_writer_opts wo = {
		.format = "qcow2",
		.size = o->size,
		.cluster_size = o->cluster_size,
		.backing_file = o->backing_file,
		.backing_format = o->backing_format,
	};

	return imgfmt_writer_create_empty(path, &wo);
}
