/*
 * qcow2-rw.c - writing to an open qcow2 image: pwrite, write-zeroes,
 * discard, flush.
 *
 * Scope: images without snapshots, without extended L2 entries, with
 * 16-bit refcounts and not marked dirty or corrupt (what qemu-img create
 * and our writer produce); anything else opens read-only with a message.
 *
 * Allocation is append-only: new clusters (data, L2 tables, refcount
 * blocks, a grown refcount table) are taken from the end of the file and
 * freed clusters are not reused, which keeps the allocator trivial and
 * never hands out a cluster something might still point at.
 *
 * Ordering: every allocation writes its refcount first, then the cluster,
 * then the pointer to it (L2 entry, L1 entry, refcount table entry,
 * header), and frees (refcount decrements) come after the pointer is
 * gone.  So a process killed at any point leaves at worst leaked clusters,
 * never a pointer to a cluster with refcount 0.  Durability comes from
 * flush (fdatasync); writes between flushes may be lost, and after a
 * power failure (which can reorder unsynced writes) `qemu-img check -r
 * leaks` may be needed.
 *
 * One mutex serialises all modifications.  Readers take no lock: they see
 * an L1/L2 entry either before or after it changes, and data is always
 * written before the entry that points at it.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "driver.h"
#include "qcow2.h"

struct qcow2_rw {
	pthread_mutex_t lock;
	uint64_t file_end;      /* next cluster to allocate */
	uint64_t *reftable;     /* host order */
	uint64_t reftable_entries;
	uint8_t *cbuf;          /* one cluster of scratch: data */
	uint8_t *mbuf;          /* one cluster of scratch: new metadata */
};

static int wfile(imgfmt_image *img, const void *buf, size_t len,
		 uint64_t off)
{
	int r = imgfmt_file_write(img, buf, len, off);

	if (r == 0 && off + len > img->file_length)
		__atomic_store_n(&img->file_length, off + len,
				 __ATOMIC_RELEASE);
	return r;
}

static int w64(imgfmt_image *img, uint64_t v, uint64_t off)
{
	uint8_t b[8];

	q2_put64(b, v);
	return wfile(img, b, 8, off);
}

int qcow2__rw_open(imgfmt_image *img)
{
	struct qcow2 *q = img->priv;
	struct qcow2_rw *rw;
	const char *why = NULL;
	uint32_t cs = q->cluster_size;

	if (q->extl2)
		why = "it uses extended L2 entries";
	else if (q->nb_snapshots)
		why = "it has internal snapshots";
	else if (q->refcount_order != 4)
		why = "its refcounts are not 16 bits wide";
	else if (q->incompat & QINCOMPAT_DIRTY)
		why = "it is marked dirty (run 'qemu-img check -r all')";
	else if (img->base)
		why = "it is embedded in a larger file";
	if (why)
		return imgfmt_err(EROFS, "%s: qcow2 image can only be opened "
				  "read-only: %s", img->path, why);
	rw = calloc(1, sizeof(*rw));
	if (!rw)
		return imgfmt_err(ENOMEM, "out of memory");
	rw->reftable_entries = (uint64_t)q->reftable_clusters * cs / 8;
	rw->reftable = malloc(rw->reftable_entries * 8 + 8);
	rw->cbuf = malloc(cs);
	rw->mbuf = malloc(cs);
	if (!rw->reftable || !rw->cbuf || !rw->mbuf)
		goto nomem;
	int r = imgfmt_file_read(img, rw->reftable, rw->reftable_entries * 8,
				 q->reftable_offset, "qcow2 refcount table");
	if (r < 0)
		goto fail_r;
	for (uint64_t i = 0; i < rw->reftable_entries; i++) {
		uint64_t b = q2_be64((uint8_t *)&rw->reftable[i]) &
			     QREFT_OFFSET_MASK;
		rw->reftable[i] = b;
		/* Refcount updates write into these blocks: a bad pointer
		 * would turn them into writes anywhere in the file. */
		if (b && (b & (cs - 1) || b < cs || b > img->file_length ||
			  cs > img->file_length - b)) {
			r = imgfmt_err(EINVAL, "%s: qcow2 refcount table entry "
				       "%llu (block at %llu) is bad; cannot "
				       "write to this image", img->path,
				       (unsigned long long)i,
				       (unsigned long long)b);
			goto fail_r;
		}
	}
	rw->file_end = (img->file_length + cs - 1) & ~(uint64_t)(cs - 1);
	pthread_mutex_init(&rw->lock, NULL);
	q->rw = rw;
	return 0;

nomem:
	r = imgfmt_err(ENOMEM, "out of memory");
fail_r:
	free(rw->reftable);
	free(rw->cbuf);
	free(rw->mbuf);
	free(rw);
	return r;
}

void qcow2__rw_close(imgfmt_image *img)
{
	struct qcow2 *q = img->priv;

	if (!q || !q->rw)
		return;
	pthread_mutex_destroy(&q->rw->lock);
	free(q->rw->reftable);
	free(q->rw->cbuf);
	free(q->rw->mbuf);
	free(q->rw);
	q->rw = NULL;
}

/* ---- refcounts ---------------------------------------------------------- */

static int refcount_set(imgfmt_image *img, uint64_t cl, uint16_t v);

/* Move the refcount table to a larger place at the end of the file so
 * that it has at least `need` entries. */
static int grow_reftable(imgfmt_image *img, uint64_t need)
{
	struct qcow2 *q = img->priv;
	struct qcow2_rw *rw = q->rw;
	uint32_t cs = q->cluster_size;
	uint64_t old_off = q->reftable_offset;
	uint32_t old_clusters = q->reftable_clusters;
	uint64_t nclusters = (need * 8 + cs - 1) / cs;
	int r;

	if (nclusters < (uint64_t)old_clusters * 2)
		nclusters = (uint64_t)old_clusters * 2;
	if (nclusters * cs > QCOW2_MAX_REFTABLE_BYTES)
		return imgfmt_err(EFBIG, "%s: qcow2 refcount table would grow "
				  "past %u bytes", img->path,
				  QCOW2_MAX_REFTABLE_BYTES);
	uint64_t nent = nclusters * cs / 8;
	uint64_t *t = calloc(nent + 1, 8);
	if (!t)
		return imgfmt_err(ENOMEM, "out of memory");
	memcpy(t, rw->reftable, rw->reftable_entries * 8);
	uint64_t new_off = rw->file_end;
	rw->file_end += nclusters * cs;
	free(rw->reftable);
	rw->reftable = t;
	rw->reftable_entries = nent;
	/* Entries refcount_set adds now go to the new table's place. */
	q->reftable_offset = new_off;
	q->reftable_clusters = (uint32_t)nclusters;
	for (uint64_t i = 0; i < nclusters; i++) {
		r = refcount_set(img, (new_off >> q->cluster_bits) + i, 1);
		if (r < 0)
			return r;
	}
	uint8_t *disk = calloc(1, nclusters * cs);
	if (!disk)
		return imgfmt_err(ENOMEM, "out of memory");
	for (uint64_t i = 0; i < rw->reftable_entries; i++)
		q2_put64(disk + i * 8, rw->reftable[i]);
	r = wfile(img, disk, nclusters * cs, new_off);
	free(disk);
	if (r < 0)
		return r;
	/* Switch the header to the new table (offset and size are
	 * adjacent fields: one write), then free the old one. */
	uint8_t h[12];
	q2_put64(h, new_off);
	q2_put32(h + 8, (uint32_t)nclusters);
	r = wfile(img, h, sizeof(h), QH_REFTABLE_OFFSET);
	for (uint32_t i = 0; r == 0 && i < old_clusters; i++)
		r = refcount_set(img, (old_off >> q->cluster_bits) + i, 0);
	return r;
}

static int refcount_set(imgfmt_image *img, uint64_t cl, uint16_t v)
{
	struct qcow2 *q = img->priv;
	struct qcow2_rw *rw = q->rw;
	uint32_t cs = q->cluster_size;
	uint64_t per_blk = cs / 2;
	uint64_t bi = cl / per_blk;
	uint8_t b[2];
	int r;

	if (bi >= rw->reftable_entries) {
		r = grow_reftable(img, bi + 1);
		if (r < 0)
			return r;
	}
	if (!rw->reftable[bi]) {
		/* A new refcount block at the end of the file; it counts
		 * itself if it covers its own cluster. */
		uint64_t boff = rw->file_end;
		uint64_t bcl = boff >> q->cluster_bits;
		rw->file_end += cs;
		memset(rw->mbuf, 0, cs);
		if (bcl / per_blk == bi)
			q2_put16(rw->mbuf + (bcl % per_blk) * 2, 1);
		r = wfile(img, rw->mbuf, cs, boff);
		if (r < 0)
			return r;
		if (bcl / per_blk != bi) {
			r = refcount_set(img, bcl, 1);
			if (r < 0)
				return r;
		}
		rw->reftable[bi] = boff;
		r = w64(img, boff, q->reftable_offset + bi * 8);
		if (r < 0)
			return r;
	}
	q2_put16(b, v);
	return wfile(img, b, 2, rw->reftable[bi] + (cl % per_blk) * 2);
}

static int refcount_get(imgfmt_image *img, uint64_t cl, uint16_t *v)
{
	struct qcow2 *q = img->priv;
	struct qcow2_rw *rw = q->rw;
	uint64_t per_blk = q->cluster_size / 2;
	uint64_t bi = cl / per_blk;
	uint8_t b[2];

	*v = 0;
	if (bi >= rw->reftable_entries || !rw->reftable[bi])
		return 0;
	int r = imgfmt_file_read(img, b, 2,
				 rw->reftable[bi] + (cl % per_blk) * 2,
				 "qcow2 refcount block");
	if (r == 0)
		*v = q2_be16(b);
	return r;
}

/* Drop one reference from every cluster in [off, off+len). */
static int unref_range(imgfmt_image *img, uint64_t off, uint64_t len)
{
	struct qcow2 *q = img->priv;

	for (uint64_t c = off >> q->cluster_bits;
	     c <= (off + len - 1) >> q->cluster_bits; c++) {
		uint16_t v;
		int r = refcount_get(img, c, &v);
		if (r < 0)
			return r;
		if (v == 0)
			return imgfmt_err(EIO, "%s: qcow2 cluster %llu is "
					  "referenced but has refcount 0",
					  img->path, (unsigned long long)c);
		r = refcount_set(img, c, (uint16_t)(v - 1));
		if (r < 0)
			return r;
	}
	return 0;
}

/* A fresh cluster at the end of the file, refcount 1 already stored. */
static int alloc_cluster(imgfmt_image *img, uint64_t *at)
{
	struct qcow2 *q = img->priv;
	uint64_t off = q->rw->file_end;

	q->rw->file_end += q->cluster_size;
	*at = off;
	return refcount_set(img, off >> q->cluster_bits, 1);
}

/* ---- L2 entries --------------------------------------------------------- */

/* Where the L2 entry of virtual cluster vcl lives, allocating the L2
 * table if `create`.  *eoff = 0 when there is no table (and !create). */
static int l2_entry_offset(imgfmt_image *img, uint64_t vcl, int create,
			   uint64_t *eoff)
{
	struct qcow2 *q = img->priv;
	uint64_t l1i = vcl / q->l2_entries;
	uint64_t l2 = q->l1[l1i];
	int r;

	*eoff = 0;
	if (!l2) {
		if (!create)
			return 0;
		r = alloc_cluster(img, &l2);
		if (r < 0)
			return r;
		memset(q->rw->mbuf, 0, q->cluster_size);
		r = wfile(img, q->rw->mbuf, q->cluster_size, l2);
		if (r < 0)
			return r;
		r = w64(img, l2 | QENTRY_COPIED, q->l1_offset + l1i * 8);
		if (r < 0)
			return r;
		__atomic_store_n(&q->l1[l1i], l2, __ATOMIC_RELEASE);
	}
	*eoff = l2 + (vcl % q->l2_entries) * 8;
	return 0;
}

static int read_entry(imgfmt_image *img, uint64_t eoff, uint64_t *e)
{
	uint8_t b[8];
	int r = imgfmt_file_read(img, b, 8, eoff, "qcow2 L2 table");

	if (r == 0)
		*e = q2_be64(b);
	return r;
}

/* Release what an old L2 entry pointed at, after it was overwritten. */
static int release_entry(imgfmt_image *img, uint64_t e)
{
	struct qcow2 *q = img->priv;

	if (e & QL2_COMPRESSED) {
		uint64_t off = e & q->coffset_mask;
		uint64_t nsec = ((e & ~(QENTRY_COPIED | QL2_COMPRESSED)) >>
				 q->csize_shift) + 1;
		return unref_range(img, off & ~511ull, nsec * 512);
	}
	if (e & QL2_OFFSET_MASK)
		return unref_range(img, e & QL2_OFFSET_MASK, q->cluster_size);
	return 0;
}

/* Can this entry's cluster be written in place? */
static int in_place(imgfmt_image *img, uint64_t e, uint64_t *host)
{
	struct qcow2 *q = img->priv;

	*host = e & QL2_OFFSET_MASK;
	return !(e & QL2_COMPRESSED) && (e & QENTRY_COPIED) && *host &&
	       !(*host & (q->cluster_size - 1)) && *host >= q->cluster_size &&
	       *host + q->cluster_size <= img->file_length;
}

/* Write [off, off+len) which lies inside one cluster. */
static int write_in_cluster(imgfmt_image *img, const uint8_t *buf,
			    size_t len, uint64_t off)
{
	struct qcow2 *q = img->priv;
	uint32_t cs = q->cluster_size;
	uint64_t vcl = off >> q->cluster_bits;
	uint64_t cstart = vcl << q->cluster_bits;
	uint64_t eoff, e = 0, host, newc;
	int r;

	r = l2_entry_offset(img, vcl, 1, &eoff);
	if (r < 0)
		return r;
	r = read_entry(img, eoff, &e);
	if (r < 0)
		return r;
	if (in_place(img, e, &host) && !(e & QL2_ZERO))
		return wfile(img, buf, len, host + (off - cstart));

	/* Build the whole new cluster: what the disk shows now (backing
	 * file, zeros, or the decompressed cluster) with buf on top. */
	uint64_t vlen = img->virtual_size - cstart < cs
				? img->virtual_size - cstart : cs;
	if (len < vlen) {
		r = qcow2__pread(img, q->rw->cbuf, (size_t)vlen, cstart);
		if (r < 0)
			return r;
	}
	memset(q->rw->cbuf + vlen, 0, cs - vlen);
	memcpy(q->rw->cbuf + (off - cstart), buf, len);
	if (in_place(img, e, &host)) {
		/* Preallocated zero cluster: fill it and drop the flag. */
		r = wfile(img, q->rw->cbuf, cs, host);
		if (r == 0)
			r = w64(img, host | QENTRY_COPIED, eoff);
		return r;
	}
	r = alloc_cluster(img, &newc);
	if (r == 0)
		r = wfile(img, q->rw->cbuf, cs, newc);
	if (r == 0)
		r = w64(img, newc | QENTRY_COPIED, eoff);
	if (r == 0)
		r = release_entry(img, e);
	return r;
}

int qcow2__pwrite(imgfmt_image *img, const void *buf, size_t len,
		  uint64_t off)
{
	struct qcow2 *q = img->priv;
	const uint8_t *p = buf;
	int r = 0;

	pthread_mutex_lock(&q->rw->lock);
	while (len > 0 && r == 0) {
		uint64_t cend = ((off >> q->cluster_bits) + 1)
				<< q->cluster_bits;
		size_t n = cend - off < len ? (size_t)(cend - off) : len;
		r = write_in_cluster(img, p, n, off);
		p += n;
		off += n;
		len -= n;
	}
	pthread_mutex_unlock(&q->rw->lock);
	return r;
}

int qcow2__flush(imgfmt_image *img)
{
	if (fdatasync(img->fd) < 0 && errno != EINVAL)
		return imgfmt_err(errno, "%s: fdatasync: %s", img->path,
				  strerror(errno));
	return 0;
}

/* Whole clusters: set the entry to `zero` semantics or unallocated;
 * partial clusters at either end are zeroed by writing. */
static int zero_or_discard(imgfmt_image *img, uint64_t off, uint64_t len,
			   int discard, int may_unmap)
{
	struct qcow2 *q = img->priv;
	uint32_t cs = q->cluster_size;
	static const uint8_t zeros[4096];
	int r = 0;

	pthread_mutex_lock(&q->rw->lock);
	while (len > 0 && r == 0) {
		uint64_t cstart = off & ~(uint64_t)(cs - 1);
		uint64_t cend = cstart + cs;
		int whole = off == cstart &&
			    (len >= cs || off + len == img->virtual_size);
		uint64_t n = cend - off < len ? cend - off : len;
		if (!whole || (!discard && q->version < 3)) {
			/* Write zeros (v2 has no zero flag). */
			for (uint64_t done = 0; r == 0 && done < n;) {
				size_t k = n - done < sizeof(zeros)
						   ? (size_t)(n - done)
						   : sizeof(zeros);
				r = write_in_cluster(img, zeros, k,
						     off + done);
				done += k;
			}
		} else {
			uint64_t eoff, e = 0, host, ne;
			/* No L2 table is already "unallocated". */
			int create = !discard;
			r = l2_entry_offset(img, off >> q->cluster_bits,
					    create, &eoff);
			if (r == 0 && eoff)
				r = read_entry(img, eoff, &e);
			if (r == 0 && eoff) {
				int keep = !discard && !may_unmap &&
					   in_place(img, e, &host);
				if (discard)
					ne = 0;
				else if (keep)
					ne = host | QENTRY_COPIED | QL2_ZERO;
				else
					ne = QL2_ZERO;
				if (ne != e)
					r = w64(img, ne, eoff);
				if (r == 0 && !keep && ne != e)
					r = release_entry(img, e);
			}
		}
		off += n;
		len -= n;
	}
	pthread_mutex_unlock(&q->rw->lock);
	return r;
}

int qcow2__discard(imgfmt_image *img, uint64_t off, uint64_t len)
{
	return zero_or_discard(img, off, len, 1, 1);
}

int qcow2__write_zeroes(imgfmt_image *img, uint64_t off, uint64_t len,
			unsigned flags)
{
	return zero_or_discard(img, off, len, 0,
			       (flags & IMGFMT_ZERO_MAY_UNMAP) != 0);
}
