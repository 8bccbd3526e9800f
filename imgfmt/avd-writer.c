/*
 * avd-writer.c - the streaming AVD writer (writer.h): the fast path of
 * `convert -O avd` and of `compact`.
 *
 * Layout it produces: header cluster, then data in ascending virtual
 * order (compressed payloads packed byte to byte; raw clusters cluster
 * aligned and, in uncompressed output, placed by the driver's alignment
 * rule, avd.h's avd_align_cluster(): FORMAT.md §8), each L2 table written
 * as soon as the chunks it covers are past, into a cluster skipped for
 * alignment if there is one, else at the end, and the L1 table last.  Only one L2 table is in memory at a
 * time, so memory does not grow with the disk.  Payloads go through the
 * writer's append queue (writer.c: one pwritev per ~1 MiB, buffers
 * recycled to encode, writeback started early).  The file is written under
 * a temporary name by the caller and renamed when complete, so no ordering
 * inside it matters for crash safety; finish() writes the header last.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include "avd.h"
#include "crc32c.h"

#define CHUNK_ZERO 1u
#define CHUNK_COMP 2u

/* Default cluster size of compressed output (FORMAT.md §8: the smallest
 * whose output is no larger than qemu-img's zstd qcow2, at 1.5x the
 * random 4 KiB read cost of 64 KiB clusters). */
#define AVD_COMPRESSED_CLUSTER (128u << 10)

struct avd_writer {
	struct avd_header h;
	uint32_t C, nsub, esize, epl;
	uint64_t pos;       /* next free byte of the file */
	uint8_t *l2;        /* table being filled */
	int64_t cur;        /* its L1 index, -1: none */
	uint64_t *l1;
	int level;
	uint32_t span;      /* clusters per alignment period, 1: no aligning */
	/* Runs of clusters skipped to align raw clusters (ascending, from
	 * gap0 on): holes that L2 tables fill.  Bounded: past MAX_GAPS runs
	 * a skipped run just stays a hole. */
	struct wr_gap { uint64_t c, n; } *gaps;
	size_t gap0, ngaps;
};

#define MAX_GAPS 4096

static uint64_t wr_align(struct avd_writer *aw, uint64_t v)
{
	return (v + aw->C - 1) & ~(uint64_t)(aw->C - 1);
}

int avd__writer_open(struct imgfmt_writer *w)
{
	struct avd_writer *aw = calloc(1, sizeof(*aw));
	uint32_t C = w->opts.cluster_size ? w->opts.cluster_size
		   : w->opts.compress ? AVD_COMPRESSED_CLUSTER
				      : IMGFMT_DEFAULT_CLUSTER;
	int r;

	if (!aw)
		return imgfmt_err(ENOMEM, "out of memory");
	w->priv = aw;
	r = avd_header_init(w->path, &aw->h, w->opts.size, C, w->opts.uuid,
			    w->opts.backing_file, w->opts.backing_format, 0);
	if (r < 0)
		return r;
	aw->C = C;
	aw->nsub = C / AVD_SUB;
	aw->esize = avd_entry_size(C);
	aw->epl = C / aw->esize;
	aw->cur = -1;
	aw->pos = C;
	aw->level = w->opts.compress_level ? w->opts.compress_level : 3;
	/* Compressed output stays packed (FORMAT.md §8). */
	aw->span = w->opts.compress ? 1
		 : avd_align_span(aw->h.size, aw->h.cluster_bits);
	aw->l2 = calloc(1, C);
	aw->l1 = calloc(aw->h.l1_entries, 8);
	aw->gaps = aw->span > 1 ? calloc(MAX_GAPS, sizeof(*aw->gaps)) : NULL;
	if (!aw->l2 || !aw->l1 || (aw->span > 1 && !aw->gaps))
		return imgfmt_err(ENOMEM, "out of memory");
	w->chunk_size = C;
	w->buf_size = (size_t)C + 4u * aw->nsub;
	return 0;
}

/* Thread-safe: touches only the chunk, read-only writer fields, the
 * writer's buffer pool and this thread's zstd context. */
int avd__writer_encode(struct imgfmt_writer *w, const void *data,
		       uint64_t off, uint32_t len, struct imgfmt_chunk *chunk)
{
	struct avd_writer *aw = w->priv;
	uint32_t C = aw->C;
	const uint8_t *src = data;
	uint8_t *raw = NULL;

	(void)off;
	if (imgfmt_is_zero(data, len)) {
		chunk->flags = CHUNK_ZERO;
		return 0;
	}
	/* Stored form of an uncompressed cluster: C bytes (the disk's last
	 * chunk zero-padded), followed by its sub-block checksums; buffers
	 * come from the pool (w->buf_size = C + 4n). */
	if (len < C) {
		raw = imgfmt_writer_buf_get(w);
		if (!raw)
			return imgfmt_err(ENOMEM, "out of memory");
		memcpy(raw, data, len);
		memset(raw + len, 0, C - len);
		src = raw;
	}
	if (w->opts.compress) {
		uint8_t *z = imgfmt_writer_buf_get(w);
		ZSTD_CCtx *cc = imgfmt_writer_zstd_cctx();
		if (!z || !cc) {
			imgfmt_writer_buf_put(w, z);
			imgfmt_writer_buf_put(w, raw);
			return imgfmt_err(ENOMEM, "zstd: out of memory");
		}
		/* Keep it only if it saves at least one 4 KiB block: a
		 * barely smaller payload costs a decompression per read for
		 * nothing.  Capacity C - 4 KiB makes zstd give up on the
		 * others (dstSize_tooSmall). */
		size_t n = ZSTD_compressCCtx(cc, z, C - AVD_SUB, src, C,
					     aw->level);
		if (!ZSTD_isError(n)) {
			imgfmt_writer_buf_put(w, raw);
			chunk->data = z;
			chunk->data_len = n;
			chunk->flags = CHUNK_COMP;
			chunk->checksum = crc32c(0, z, n);
			return 0;
		}
		imgfmt_writer_buf_put(w, z);
	}
	if (!raw) {
		raw = imgfmt_writer_buf_get(w);
		if (!raw)
			return imgfmt_err(ENOMEM, "out of memory");
		memcpy(raw, data, C);
	}
	for (uint32_t s = 0; s < aw->nsub; s++)
		avd_put32(raw + C + 4 * s,
			  crc32c(0, raw + (size_t)s * AVD_SUB, AVD_SUB));
	chunk->data = raw;
	chunk->data_len = C;
	chunk->flags = 0;
	return 0;
}

/* The file offset of the raw cluster for virtual cluster vc: the first
 * cluster past the end that the alignment rule allows; the ones skipped
 * are remembered for L2 tables. */
static uint64_t wr_place_data(struct avd_writer *aw, uint64_t vc)
{
	uint64_t c = wr_align(aw, aw->pos) / aw->C;
	uint64_t at = avd_align_cluster(c, vc, aw->span);

	if (at > c) {
		if (aw->gap0 == aw->ngaps)
			aw->gap0 = aw->ngaps = 0;
		if (aw->ngaps < MAX_GAPS)
			aw->gaps[aw->ngaps++] = (struct wr_gap){ c, at - c };
	}
	aw->pos = (at + 1) * aw->C;
	return at * aw->C;
}

/* The file offset for an L2 table: the lowest skipped cluster, else the
 * end of the file. */
static uint64_t wr_place_table(struct avd_writer *aw)
{
	if (aw->gap0 < aw->ngaps) {
		struct wr_gap *g = &aw->gaps[aw->gap0];
		uint64_t c = g->c++;
		if (--g->n == 0)
			aw->gap0++;
		return c * aw->C;
	}
	aw->pos = wr_align(aw, aw->pos) + aw->C;
	return aw->pos - aw->C;
}

/* Write the current L2 table and point its L1 entry at it. */
static int wr_flush_table(struct imgfmt_writer *w)
{
	struct avd_writer *aw = w->priv;
	int r;

	if (aw->cur < 0)
		return 0;
	uint64_t at = wr_place_table(aw);
	r = imgfmt_writer_write(w, aw->l2, aw->C, at);
	if (r < 0)
		return r;
	aw->l1[aw->cur] = at;
	aw->cur = -1;
	memset(aw->l2, 0, aw->C);
	return 0;
}

int avd__writer_put(struct imgfmt_writer *w, struct imgfmt_chunk *chunk)
{
	struct avd_writer *aw = w->priv;
	uint64_t vc = chunk->offset / aw->C;
	uint64_t l1i = vc / aw->epl;
	uint8_t *e;
	int r;

	if (chunk->offset % aw->C || l1i >= aw->h.l1_entries)
		return imgfmt_err(EINVAL, "%s: chunk at %llu is not a cluster "
				  "of the disk", w->path,
				  (unsigned long long)chunk->offset);
	if ((int64_t)l1i != aw->cur) {
		r = wr_flush_table(w);
		if (r < 0)
			return r;
		aw->cur = (int64_t)l1i;
	}
	e = aw->l2 + (vc % aw->epl) * aw->esize;
	memset(e, 0, aw->esize);
	if (chunk->flags & CHUNK_ZERO) {
		avd_put64(e, AVD_DESC(AVD_T_ZERO, 0));
		return 0;
	}
	/* The payload goes to the writer's append queue, which owns it from
	 * here on (written with its neighbours, then back to the pool). */
	void *data = chunk->data;
	chunk->data = NULL;
	if (chunk->flags & CHUNK_COMP) {
		avd_put64(e, AVD_DESC(AVD_T_COMP, aw->pos));
		avd_put32(e + 8, (uint32_t)chunk->data_len);
		avd_put32(e + 12, chunk->checksum);
		r = imgfmt_writer_append(w, data, chunk->data_len, aw->pos);
		aw->pos += chunk->data_len;
		return r;
	}
	uint64_t at = wr_place_data(aw, vc);
	avd_put64(e, AVD_DESC(AVD_T_DATA, at));
	memcpy(e + 12, (uint8_t *)data + aw->C, 4u * aw->nsub);
	return imgfmt_writer_append(w, data, aw->C, at);
}

static void wr_free(struct imgfmt_writer *w)
{
	struct avd_writer *aw = w->priv;

	if (!aw)
		return;
	free(aw->l2);
	free(aw->l1);
	free(aw->gaps);
	free(aw);
	w->priv = NULL;
}

int avd__writer_finish(struct imgfmt_writer *w)
{
	struct avd_writer *aw = w->priv;
	uint8_t hdr[AVD_HEADER_SIZE];
	int r = wr_flush_table(w);

	if (r == 0) {
		uint64_t bytes = (uint64_t)aw->h.l1_entries * 8;
		uint64_t clusters = (bytes + aw->C - 1) / aw->C;
		uint8_t *buf = calloc(clusters, aw->C);
		if (!buf) {
			r = imgfmt_err(ENOMEM, "out of memory");
			goto out;
		}
		for (uint64_t i = 0; i < aw->h.l1_entries; i++)
			avd_put64(buf + i * 8, aw->l1[i]);
		aw->pos = wr_align(aw, aw->pos);
		aw->h.l1_offset = aw->pos;
		r = imgfmt_writer_write(w, buf, clusters * aw->C, aw->pos);
		free(buf);
		aw->pos += clusters * aw->C;
	}
	if (r == 0) {
		avd_header_encode(&aw->h, hdr);
		r = imgfmt_writer_write(w, hdr, sizeof(hdr), 0);
	}
	if (r == 0 && ftruncate(w->fd, (off_t)aw->pos) < 0)
		r = imgfmt_err(errno, "%s: %s", w->path, strerror(errno));
out:
	wr_free(w);
	return r;
}

void avd__writer_abort(struct imgfmt_writer *w)
{
	wr_free(w);
}
