/*
 * qcow2.c - the qcow2 reader (versions 2 and 3) and check.
 *
 * Reads everything qemu-img writes for a plain image: header extensions
 * (backing format, feature names), zero clusters, compressed clusters with
 * zlib (raw deflate) or zstd, cluster sizes from 512 B to 2 MiB, extended
 * L2 entries (32 subclusters per cluster) and backing files.  Encrypted
 * images and images with an external data file are refused by name.
 *
 * Lookups read the L2 entries a request needs straight from the file with
 * one pread per L2 table touched, instead of keeping an L2 cache: that
 * keeps pread/map free of shared mutable state (so they are thread-safe
 * without locks) and costs one small read per cluster-sized request,
 * which is noise next to the data itself.
 *
 * Every offset taken from the file is checked before use: the L1 table
 * and each L2 table pointer are validated at open (alignment, inside the
 * file, not on top of the header, L1 or refcount table); data and
 * compressed offsets are checked on every lookup.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "driver.h"
#include "qcow2.h"
#include "zcache.h"


/* What a run of the virtual disk is, as one lookup sees it. */
enum q2_kind { Q2_UNALLOC, Q2_ZERO, Q2_DATA, Q2_COMPRESSED };

struct q2_run {
	enum q2_kind kind;
	uint64_t length;
	uint64_t host;   /* DATA: host offset of the run's first byte;
	                    COMPRESSED: offset of the compressed bytes */
	uint64_t csize;  /* COMPRESSED: bytes to read */
	uint64_t cluster_start; /* COMPRESSED: virtual offset of the cluster */
};

static int qcow2__probe(const uint8_t *head, size_t len, uint64_t file_size)
{
	(void)file_size;
	/* Magic alone: a qcow2 of an unknown version must be refused as
	 * such, not served as a raw disk. */
	if (len >= 4 && q2_be32(head) == QCOW2_MAGIC)
		return 100;
	return 0;
}

static int ranges_overlap(uint64_t a, uint64_t alen, uint64_t b,
			  uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

/* Names of incompatible features, from the feature table extension when
 * present, so refusals can say what the image needs. */
static void feature_names(const uint8_t *tbl, uint32_t len, uint64_t bits,
			  char *out, size_t outlen)
{
	size_t used = 0;

	out[0] = '\0';
	for (int b = 0; b < 64; b++) {
		char name[48];
		if (!(bits & (1ull << b)))
			continue;
		snprintf(name, sizeof(name), "bit %d", b);
		for (uint32_t i = 0; tbl && i + 48 <= len; i += 48) {
			if (tbl[i] == 0 && tbl[i + 1] == b) {
				snprintf(name, sizeof(name), "%.46s",
					 (const char *)tbl + i + 2);
				for (char *c = name; *c; c++)
					if (*c < 0x20 || *c > 0x7e)
						*c = '?';
			}
		}
		used += (size_t)snprintf(out + used, used < outlen ?
					 outlen - used : 0, "%s%s",
					 used ? ", " : "", name);
		if (used >= outlen)
			break;
	}
}

/* Walk the header extensions in [start, end) of cluster 0. */
static int parse_extensions(imgfmt_image *img, struct qcow2 *q,
			    const uint8_t *hdr, uint32_t start, uint32_t end,
			    const uint8_t **ftable, uint32_t *ftable_len)
{
	uint32_t pos = start;

	while (pos + 8 <= end) {
		uint32_t type = q2_be32(hdr + pos);
		uint32_t len = q2_be32(hdr + pos + 4);
		pos += 8;
		if (type == QEXT_END)
			return 0;
		if (len > end - pos)
			return imgfmt_err(EINVAL, "%s: qcow2 header extension "
					  "0x%08x (length %u) runs past the "
					  "header cluster", img->path, type,
					  len);
		switch (type) {
		case QEXT_BACKING_FORMAT: {
			char fmt[32];
			if (len == 0 || len >= sizeof(fmt))
				return imgfmt_err(EINVAL, "%s: qcow2 backing "
						  "format extension has bad "
						  "length %u", img->path, len);
			memcpy(fmt, hdr + pos, len);
			fmt[len] = '\0';
			for (uint32_t i = 0; i < len; i++)
				if (!((fmt[i] >= 'a' && fmt[i] <= 'z') ||
				      (fmt[i] >= '0' && fmt[i] <= '9') ||
				      fmt[i] == '-' || fmt[i] == '_'))
					return imgfmt_err(EINVAL, "%s: qcow2 "
							  "backing format name "
							  "has bad characters",
							  img->path);
			free(img->backing_format);
			img->backing_format = strdup(fmt);
			if (!img->backing_format)
				return imgfmt_err(ENOMEM, "out of memory");
			break;
		}
		case QEXT_FEATURE_TABLE:
			*ftable = hdr + pos;
			*ftable_len = len;
			break;
		case QEXT_CRYPTO:
			return imgfmt_err(ENOTSUP, "%s: qcow2 image is "
					  "encrypted (LUKS); encrypted images "
					  "are not supported", img->path);
		case QEXT_DATA_FILE:
			return imgfmt_err(ENOTSUP, "%s: qcow2 image keeps its "
					  "data in an external data file; not "
					  "supported", img->path);
		default:
			break; /* bitmaps and unknown: safe to ignore */
		}
		pos += (len + 7u) & ~7u;
	}
	(void)q;
	return 0;
}

static int qcow2__open(imgfmt_image *img)
{
	struct qcow2 *q;
	uint8_t *hdr = NULL;
	uint64_t size, l1_needed, backing_off;
	uint32_t backing_len, hdr_len, cs;
	const uint8_t *ftable = NULL;
	uint32_t ftable_len = 0;
	uint8_t first[QH_V3_LENGTH];
	int r;

	if (img->file_length < QH_V2_LENGTH)
		return imgfmt_err(EINVAL, "%s: file is too short for a qcow2 "
				  "header", img->path);
	r = imgfmt_file_read(img, first, img->file_length < sizeof(first) ?
			     (size_t)img->file_length : sizeof(first), 0,
			     "qcow2 header");
	if (r < 0)
		return r;
	if (q2_be32(first + QH_MAGIC) != QCOW2_MAGIC)
		return imgfmt_err(EINVAL, "%s: not a qcow2 image (bad magic)",
				  img->path);
	q = calloc(1, sizeof(*q));
	if (!q)
		return imgfmt_err(ENOMEM, "out of memory");
	q->version = (int)q2_be32(first + QH_VERSION);
	if (q->version != 2 && q->version != 3) {
		r = imgfmt_err(ENOTSUP, "%s: qcow2 version %d is not "
			       "supported (only 2 and 3)", img->path,
			       q->version);
		goto fail;
	}
	q->cluster_bits = q2_be32(first + QH_CLUSTER_BITS);
	if (q->cluster_bits < QCOW2_MIN_CLUSTER_BITS ||
	    q->cluster_bits > QCOW2_MAX_CLUSTER_BITS) {
		r = imgfmt_err(EINVAL, "%s: qcow2 cluster_bits %u is out of "
			       "range (9..21)", img->path, q->cluster_bits);
		goto fail;
	}
	cs = q->cluster_size = 1u << q->cluster_bits;
	if (q2_be32(first + QH_CRYPT_METHOD) != 0) {
		r = imgfmt_err(ENOTSUP, "%s: qcow2 image is encrypted "
			       "(crypt_method %u); encrypted images are not "
			       "supported", img->path,
			       q2_be32(first + QH_CRYPT_METHOD));
		goto fail;
	}
	hdr_len = QH_V2_LENGTH;
	q->refcount_order = 4;
	if (q->version == 3) {
		if (img->file_length < QH_V3_MIN_LENGTH) {
			r = imgfmt_err(EINVAL, "%s: file is too short for a "
				       "qcow2 v3 header", img->path);
			goto fail;
		}
		q->incompat = q2_be64(first + QH_INCOMPAT);
		q->compat = q2_be64(first + QH_COMPAT);
		q->autoclear = q2_be64(first + QH_AUTOCLEAR);
		q->refcount_order = q2_be32(first + QH_REFCOUNT_ORDER);
		hdr_len = q2_be32(first + QH_HEADER_LENGTH);
		if (hdr_len < QH_V3_MIN_LENGTH || hdr_len > cs ||
		    hdr_len > img->file_length) {
			r = imgfmt_err(EINVAL, "%s: qcow2 header_length %u is "
				       "out of range", img->path, hdr_len);
			goto fail;
		}
		if (q->refcount_order > 6) {
			r = imgfmt_err(EINVAL, "%s: qcow2 refcount_order %u is "
				       "out of range (0..6)", img->path,
				       q->refcount_order);
			goto fail;
		}
	}

	/* The header, its extensions and the backing name live in cluster
	 * 0; read all of it (or the whole file if shorter). */
	size_t h0 = img->file_length < cs ? (size_t)img->file_length : cs;
	hdr = malloc(h0);
	if (!hdr) {
		r = imgfmt_err(ENOMEM, "out of memory");
		goto fail;
	}
	r = imgfmt_file_read(img, hdr, h0, 0, "qcow2 header cluster");
	if (r < 0)
		goto fail;
	if (q->version == 3 && hdr_len > QH_COMPRESSION_TYPE)
		q->compression_type = hdr[QH_COMPRESSION_TYPE];

	backing_off = q2_be64(hdr + QH_BACKING_OFFSET);
	backing_len = q2_be32(hdr + QH_BACKING_SIZE);
	r = parse_extensions(img, q, hdr, hdr_len,
			     backing_off && backing_off < h0 ?
			     (uint32_t)backing_off : (uint32_t)h0,
			     &ftable, &ftable_len);
	if (r < 0)
		goto fail;

	if (q->incompat & ~QINCOMPAT_KNOWN) {
		char names[256];
		feature_names(ftable, ftable_len, q->incompat & ~QINCOMPAT_KNOWN,
			      names, sizeof(names));
		r = imgfmt_err(ENOTSUP, "%s: qcow2 image needs unknown "
			       "incompatible features: %s", img->path, names);
		goto fail;
	}
	if (q->incompat & QINCOMPAT_DATA_FILE) {
		r = imgfmt_err(ENOTSUP, "%s: qcow2 image keeps its data in an "
			       "external data file; not supported", img->path);
		goto fail;
	}
	if ((q->incompat & QINCOMPAT_CORRUPT) && !img->read_only) {
		r = imgfmt_err(EROFS, "%s: qcow2 image is marked corrupt; it "
			       "can only be opened read-only", img->path);
		goto fail;
	}
	if (q->compression_type != QCOMP_ZLIB &&
	    q->compression_type != QCOMP_ZSTD) {
		r = imgfmt_err(ENOTSUP, "%s: qcow2 compression_type %d is "
			       "unknown", img->path, q->compression_type);
		goto fail;
	}
	if (q->compression_type != QCOMP_ZLIB &&
	    !(q->incompat & QINCOMPAT_COMPRESSION)) {
		r = imgfmt_err(EINVAL, "%s: qcow2 compression_type is set but "
			       "the compression incompatible bit is not",
			       img->path);
		goto fail;
	}
	q->extl2 = (q->incompat & QINCOMPAT_EXTL2) != 0;
	if (q->extl2 && q->cluster_bits < 14) {
		r = imgfmt_err(EINVAL, "%s: qcow2 extended L2 entries need "
			       "clusters of at least 16 KiB (cluster_bits %u)",
			       img->path, q->cluster_bits);
		goto fail;
	}
	q->l2_entry_bytes = q->extl2 ? 16 : 8;
	q->l2_entries = cs / q->l2_entry_bytes;
	q->sc_bits = q->extl2 ? q->cluster_bits - 5 : q->cluster_bits;
	q->csize_shift = 62 - (q->cluster_bits - 8);
	q->coffset_mask = (1ull << q->csize_shift) - 1;

	size = q2_be64(hdr + QH_SIZE);
	if (size > IMGFMT_MAX_VIRTUAL_SIZE) {
		r = imgfmt_err(EFBIG, "%s: qcow2 size %llu is larger than the "
			       "supported maximum (64 TiB)", img->path,
			       (unsigned long long)size);
		goto fail;
	}
	img->virtual_size = size;

	/* The backing file name. */
	if (backing_off) {
		if (backing_len == 0 || backing_len > QCOW2_MAX_BACKING_NAME ||
		    backing_off >= h0 || backing_len > h0 - backing_off) {
			r = imgfmt_err(EINVAL, "%s: qcow2 backing file name "
				       "(offset %llu, length %u) lies outside "
				       "the header cluster", img->path,
				       (unsigned long long)backing_off,
				       backing_len);
			goto fail;
		}
		if (memchr(hdr + backing_off, '\0', backing_len)) {
			r = imgfmt_err(EINVAL, "%s: qcow2 backing file name "
				       "contains a NUL byte", img->path);
			goto fail;
		}
		img->backing_name = strndup((const char *)hdr + backing_off,
					    backing_len);
		if (!img->backing_name) {
			r = imgfmt_err(ENOMEM, "out of memory");
			goto fail;
		}
	}

	/* Refcount table: only check uses it, but a bad one is still a
	 * corrupt image, and L2 tables must not sit on top of it. */
	q->reftable_offset = q2_be64(hdr + QH_REFTABLE_OFFSET);
	q->reftable_clusters = q2_be32(hdr + QH_REFTABLE_CLUSTERS);
	if (q->reftable_offset & (cs - 1) ||
	    (uint64_t)q->reftable_clusters * cs > QCOW2_MAX_REFTABLE_BYTES ||
	    q->reftable_offset > img->file_length ||
	    (uint64_t)q->reftable_clusters * cs >
		    img->file_length - q->reftable_offset) {
		r = imgfmt_err(EINVAL, "%s: qcow2 refcount table (offset %llu, "
			       "%u clusters) is misaligned, too large or past "
			       "the end of the file", img->path,
			       (unsigned long long)q->reftable_offset,
			       q->reftable_clusters);
		goto fail;
	}
	q->nb_snapshots = q2_be32(hdr + QH_NB_SNAPSHOTS);

	/* L1 table. */
	q->l1_size = q2_be32(hdr + QH_L1_SIZE);
	q->l1_offset = q2_be64(hdr + QH_L1_OFFSET);
	{
		uint64_t per_l1 = (uint64_t)q->l2_entries << q->cluster_bits;
		l1_needed = (size + per_l1 - 1) / per_l1;
	}
	if ((uint64_t)q->l1_size * 8 > QCOW2_MAX_L1_BYTES) {
		r = imgfmt_err(EINVAL, "%s: qcow2 l1_size %u is larger than "
			       "the 32 MiB limit", img->path, q->l1_size);
		goto fail;
	}
	if (q->l1_size < l1_needed) {
		r = imgfmt_err(EINVAL, "%s: qcow2 l1_size %u is too small for "
			       "the disk size (%llu entries needed)",
			       img->path, q->l1_size,
			       (unsigned long long)l1_needed);
		goto fail;
	}
	if (q->l1_size) {
		uint64_t l1_bytes = (uint64_t)q->l1_size * 8;
		if (q->l1_offset & (cs - 1) || q->l1_offset == 0 ||
		    q->l1_offset > img->file_length ||
		    l1_bytes > img->file_length - q->l1_offset) {
			r = imgfmt_err(EINVAL, "%s: qcow2 L1 table (offset %llu, "
				       "%u entries) is misaligned or past the "
				       "end of the file", img->path,
				       (unsigned long long)q->l1_offset,
				       q->l1_size);
			goto fail;
		}
		if (q->reftable_clusters &&
		    ranges_overlap(q->l1_offset, l1_bytes, q->reftable_offset,
				   (uint64_t)q->reftable_clusters * cs)) {
			r = imgfmt_err(EINVAL, "%s: qcow2 L1 table overlaps the "
				       "refcount table", img->path);
			goto fail;
		}
		q->l1 = malloc(l1_bytes);
		if (!q->l1) {
			r = imgfmt_err(ENOMEM, "out of memory");
			goto fail;
		}
		r = imgfmt_file_read(img, q->l1, l1_bytes, q->l1_offset,
				     "qcow2 L1 table");
		if (r < 0)
			goto fail;
		for (uint32_t i = 0; i < q->l1_size; i++) {
			uint64_t e = q2_be64((uint8_t *)&q->l1[i]);
			uint64_t l2 = e & QL1_OFFSET_MASK;
			q->l1[i] = l2;
			if (!l2)
				continue;
			if (l2 & (cs - 1) || l2 > img->file_length ||
			    cs > img->file_length - l2) {
				r = imgfmt_err(EINVAL, "%s: qcow2 L1 entry %u: L2 "
					       "table offset %llu is misaligned "
					       "or past the end of the file",
					       img->path, i,
					       (unsigned long long)l2);
				goto fail;
			}
			if (l2 < cs ||
			    ranges_overlap(l2, cs, q->l1_offset, l1_bytes) ||
			    ranges_overlap(l2, cs, q->reftable_offset,
					   (uint64_t)q->reftable_clusters *
						   cs)) {
				r = imgfmt_err(EINVAL, "%s: qcow2 L1 entry %u: L2 "
					       "table at %llu overlaps the "
					       "header, L1 or refcount table",
					       img->path, i,
					       (unsigned long long)l2);
				goto fail;
			}
		}
	}
	free(hdr);
	img->priv = q;
	if (!img->read_only) {
		r = qcow2__rw_open(img);
		if (r < 0) {
			img->priv = NULL;
			hdr = NULL;
			goto fail;
		}
	}
	/* Decompressed clusters: a quarter of cache_bytes, 2 to 16
	 * clusters, allocated only if compressed clusters are read; NULL
	 * (no memory) reads uncached. */
	q->zc = imgfmt_zcache_new(imgfmt_zcache_entries(img->cache_bytes,
							q->cluster_size),
				  q->cluster_size);
	return 0;

fail:
	free(hdr);
	free(q->l1);
	free(q);
	free(img->backing_name);
	img->backing_name = NULL;
	free(img->backing_format);
	img->backing_format = NULL;
	return r;
}

static void qcow2__close(imgfmt_image *img)
{
	struct qcow2 *q = img->priv;

	if (q) {
		qcow2__rw_close(img);
		imgfmt_zcache_free(q->zc);
		free(q->l1);
		free(q);
		img->priv = NULL;
	}
}

/* Classify one unit (cluster, or subcluster with extended L2) from its
 * L2 entry.  sc: the subcluster index within the cluster. */
static int classify(imgfmt_image *img, struct qcow2 *q, const uint8_t *ent,
		    unsigned sc, uint64_t vcluster, struct q2_run *u)
{
	uint64_t e = q2_be64(ent);
	uint64_t host;

	if (e & QL2_COMPRESSED) {
		uint64_t nsec = ((e & ~(QENTRY_COPIED | QL2_COMPRESSED)) >>
				 q->csize_shift) + 1;
		u->kind = Q2_COMPRESSED;
		u->host = e & q->coffset_mask;
		u->csize = nsec * 512 - (u->host & 511);
		if (u->host < q->cluster_size || u->host >= img->file_length)
			return imgfmt_err(EINVAL, "%s: qcow2 compressed cluster "
					  "for virtual cluster %llu has bad "
					  "offset %llu", img->path,
					  (unsigned long long)vcluster,
					  (unsigned long long)u->host);
		return 0;
	}
	host = e & QL2_OFFSET_MASK;
	if (host & (q->cluster_size - 1))
		return imgfmt_err(EINVAL, "%s: qcow2 L2 entry for virtual "
				  "cluster %llu: data offset %llu is not "
				  "cluster aligned", img->path,
				  (unsigned long long)vcluster,
				  (unsigned long long)host);
	if (q->extl2) {
		uint64_t bm = q2_be64(ent + 8);
		int alloc = (bm >> sc) & 1, zero = (bm >> (32 + sc)) & 1;
		if (alloc && zero)
			return imgfmt_err(EINVAL, "%s: qcow2 subcluster %u of "
					  "virtual cluster %llu is marked both "
					  "allocated and zero", img->path, sc,
					  (unsigned long long)vcluster);
		if (alloc && !host)
			return imgfmt_err(EINVAL, "%s: qcow2 subcluster %u of "
					  "virtual cluster %llu is allocated "
					  "but the cluster has no offset",
					  img->path, sc,
					  (unsigned long long)vcluster);
		u->kind = alloc ? Q2_DATA : zero ? Q2_ZERO : Q2_UNALLOC;
		u->host = host + ((uint64_t)sc << q->sc_bits);
	} else if (e & QL2_ZERO) {
		u->kind = Q2_ZERO;
		host = 0;
	} else {
		u->kind = host ? Q2_DATA : Q2_UNALLOC;
		u->host = host;
	}
	if (u->kind == Q2_DATA && host < q->cluster_size)
		return imgfmt_err(EINVAL, "%s: qcow2 data cluster for virtual "
				  "cluster %llu points into the header",
				  img->path, (unsigned long long)vcluster);
	return 0;
}

#define LOOKUP_BATCH 256 /* L2 entries read per lookup */

/* The run of same-kind bytes at `off` (at most `len`, and never past the
 * L2 table the lookup read).  Data runs are host-contiguous. */
static int q2_lookup(imgfmt_image *img, uint64_t off, uint64_t len,
		     struct q2_run *run)
{
	struct qcow2 *q = img->priv;
	uint8_t ents[LOOKUP_BATCH * 16];
	uint64_t vcl = off >> q->cluster_bits;
	uint64_t l1i = vcl / q->l2_entries;
	uint32_t l2i = (uint32_t)(vcl % q->l2_entries);
	uint64_t last_vcl = (off + len - 1) >> q->cluster_bits;
	uint64_t n = last_vcl - vcl + 1;
	uint64_t unit = 1ull << q->sc_bits;
	int r;

	if (n > q->l2_entries - l2i)
		n = q->l2_entries - l2i;
	if (n > LOOKUP_BATCH)
		n = LOOKUP_BATCH;
	/* Writers (qcow2-rw.c) fill L1 entries while readers run. */
	uint64_t l2off = l1i < q->l1_size
		? __atomic_load_n(&q->l1[l1i], __ATOMIC_ACQUIRE) : 0;
	if (!l2off) {
		/* No L2 table: every cluster it would cover is unallocated. */
		uint64_t end = (l1i + 1) * ((uint64_t)q->l2_entries
					   << q->cluster_bits);
		run->kind = Q2_UNALLOC;
		run->length = (end - off < len) ? end - off : len;
		return 0;
	}
	r = imgfmt_file_read(img, ents, (size_t)n * q->l2_entry_bytes,
			     l2off + (uint64_t)l2i * q->l2_entry_bytes,
			     "qcow2 L2 table");
	if (r < 0)
		return r;

	uint64_t pos = off, end = off + len;
	memset(run, 0, sizeof(*run));
	for (uint64_t i = 0; i < n && pos < end; i++) {
		uint64_t cl_start = (vcl + i) << q->cluster_bits;
		unsigned sc = (unsigned)((pos - cl_start) >> q->sc_bits);
		unsigned nsc = q->extl2 ? QCOW2_SUBCLUSTERS : 1;
		for (; sc < nsc && pos < end; sc++) {
			struct q2_run u = { 0 };
			uint64_t ustart = cl_start + ((uint64_t)sc << q->sc_bits);
			uint64_t uend = ustart + unit;
			r = classify(img, q, ents + i * q->l2_entry_bytes, sc,
				     vcl + i, &u);
			if (r < 0)
				return r;
			if (u.kind == Q2_COMPRESSED) {
				if (pos != off)
					return 0; /* end the run before it */
				u.cluster_start = cl_start;
				uend = cl_start + q->cluster_size;
				*run = u;
				run->length = (uend < end ? uend : end) - pos;
				return 0;
			}
			if (pos == off) {
				*run = u;
				if (u.kind == Q2_DATA)
					run->host += pos - ustart;
			} else if (u.kind != run->kind ||
				   (u.kind == Q2_DATA &&
				    u.host != run->host + run->length)) {
				return 0;
			}
			run->length += (uend < end ? uend : end) - pos;
			pos = uend < end ? uend : end;
		}
	}
	return 0;
}

/* Decompress one compressed cluster into out (cluster_size bytes).  The
 * compressed bytes go to this thread's scratch buffer, through this
 * thread's inflate stream or zstd context (zcache.h): nothing is
 * allocated per cluster. */
static int q2_decompress(imgfmt_image *img, struct qcow2 *q,
			 const struct q2_run *run, uint8_t *out)
{
	uint64_t avail = img->file_length - run->host;
	size_t clen = (size_t)(run->csize < avail ? run->csize : avail);
	uint8_t *in = imgfmt_zscratch(0, clen);
	int r, ok = 0;

	/* The last sector of the last compressed cluster may stop short of
	 * the end of the file; QEMU reads the missing bytes as zeros, so
	 * read what is there and let the decompressor decide. */
	if (!in)
		return imgfmt_err(ENOMEM, "out of memory");
	r = imgfmt_file_read(img, in, clen, run->host,
			     "qcow2 compressed cluster");
	if (r < 0)
		return r;
	if (q->compression_type == QCOMP_ZLIB) {
		z_stream *s = imgfmt_zlib_inflater(-12);
		if (!s)
			return imgfmt_err(ENOMEM, "zlib: out of memory");
		s->next_in = in;
		s->avail_in = (uInt)clen;
		s->next_out = out;
		s->avail_out = q->cluster_size;
		int zr = inflate(s, Z_FINISH);
		ok = (zr == Z_STREAM_END || zr == Z_BUF_ERROR) &&
		     s->avail_out == 0;
	} else {
		ZSTD_DCtx *d = imgfmt_zstd_dctx();
		ZSTD_inBuffer ib = { in, clen, 0 };
		ZSTD_outBuffer ob = { out, q->cluster_size, 0 };
		if (!d)
			return imgfmt_err(ENOMEM, "zstd: out of memory");
		/* Stop as soon as the cluster is full: what follows in the
		 * last sector is padding, not another frame. */
		while (ob.pos < ob.size) {
			size_t zr = ZSTD_decompressStream(d, &ob, &ib);
			if (ZSTD_isError(zr))
				break;
			if (zr == 0 && ob.pos < ob.size &&
			    ib.pos >= ib.size)
				break;
			if (ib.pos >= ib.size && ob.pos < ob.size && zr != 0)
				break; /* input exhausted mid-frame */
		}
		ok = ob.pos == ob.size;
	}
	if (!ok)
		return imgfmt_err(EIO, "%s: qcow2 compressed cluster at virtual "
				  "offset %llu (host %llu, %zu bytes) does not "
				  "decompress to a full cluster", img->path,
				  (unsigned long long)run->cluster_start,
				  (unsigned long long)run->host, clen);
	return 0;
}

struct q2_zfill {
	imgfmt_image *img;
	struct qcow2 *q;
	const struct q2_run *run;
};

static int q2_zfill(void *arg, uint8_t *out)
{
	struct q2_zfill *f = arg;

	return q2_decompress(f->img, f->q, f->run, out);
}

int qcow2__pread(imgfmt_image *img, void *buf, size_t len, uint64_t off)
{
	struct qcow2 *q = img->priv;
	uint8_t *p = buf;
	int r = 0;

	while (len > 0) {
		struct q2_run run;
		r = q2_lookup(img, off, len, &run);
		if (r < 0)
			break;
		size_t n = (size_t)run.length;
		switch (run.kind) {
		case Q2_UNALLOC:
			r = imgfmt_backing_read(img, p, n, off);
			break;
		case Q2_ZERO:
			memset(p, 0, n);
			break;
		case Q2_DATA:
			r = imgfmt_file_read(img, p, n, run.host,
					     "qcow2 data cluster");
			break;
		case Q2_COMPRESSED: {
			/* Through the cache, keyed on the L2 entry's host
			 * offset and compressed length (qcow2 has no
			 * checksum); why that cannot go stale:
			 * imgfmt_zcache_read (qcow2-rw.c writes compressed
			 * clusters out uncompressed, never in). */
			struct q2_zfill f = { img, q, &run };
			struct imgfmt_zkey k = { run.host, run.csize, 0 };
			r = imgfmt_zcache_read(q->zc, q->cluster_size, &k,
					       (uint32_t)(off -
							  run.cluster_start),
					       (uint32_t)n, p, q2_zfill, &f);
			break;
		}
		}
		if (r < 0)
			break;
		p += n;
		off += n;
		len -= n;
	}
	return r;
}

static int qcow2__map(imgfmt_image *img, uint64_t off, uint64_t len,
		      struct imgfmt_extent *ext)
{
	struct q2_run run;
	int r = q2_lookup(img, off, len, &run);

	if (r < 0)
		return r;
	ext->length = run.length;
	ext->file_offset = -1;
	switch (run.kind) {
	case Q2_UNALLOC:
		ext->kind = IMGFMT_EXTENT_BACKING;
		break;
	case Q2_ZERO:
		ext->kind = IMGFMT_EXTENT_ZERO;
		break;
	case Q2_DATA:
		ext->kind = IMGFMT_EXTENT_DATA;
		ext->file_offset = (int64_t)run.host;
		break;
	case Q2_COMPRESSED:
		ext->kind = IMGFMT_EXTENT_DATA;
		ext->flags = IMGFMT_EXTENT_COMPRESSED;
		break;
	}
	return 0;
}

static int qcow2__info(imgfmt_image *img, struct imgfmt_info *info)
{
	struct qcow2 *q = img->priv;

	info->cluster_size = q->cluster_size;
	snprintf(info->subformat, sizeof(info->subformat), "v%d%s%s",
		 q->version, q->compression_type == QCOMP_ZSTD ? ", zstd" : "",
		 q->extl2 ? ", extended_l2" : "");
	info->dirty = (q->incompat & QINCOMPAT_DIRTY) != 0;
	info->incompatible_features = q->incompat;
	info->compatible_features = q->compat;
	info->autoclear_features = q->autoclear;
	return 0;
}

/* ---- check ------------------------------------------------------------ */

#define CHECK_MAX_CLUSTERS (64u << 20) /* 128 MiB of counters */

struct q2_check {
	imgfmt_image *img;
	struct qcow2 *q;
	uint16_t *refs;          /* references counted, per host cluster */
	uint64_t nclusters;
	struct imgfmt_check_result *res;
};

static void problem(struct q2_check *c, int corruption, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void problem(struct q2_check *c, int corruption, const char *fmt, ...)
{
	if (corruption)
		c->res->corruptions++;
	else
		c->res->leaks++;
	if (!c->res->first_problem[0]) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(c->res->first_problem,
			  sizeof(c->res->first_problem), fmt, ap);
		va_end(ap);
	}
}

/* Count one reference to every host cluster in [off, off+len). */
static void add_refs(struct q2_check *c, uint64_t off, uint64_t len,
		     const char *what)
{
	uint64_t first = off >> c->q->cluster_bits;
	uint64_t last = (off + len - 1) >> c->q->cluster_bits;

	if (len == 0)
		return;
	for (uint64_t i = first; i <= last; i++) {
		if (i >= c->nclusters) {
			problem(c, 1, "%s at %llu lies past the end of the "
				"file", what, (unsigned long long)off);
			return;
		}
		if (c->refs[i] < UINT16_MAX)
			c->refs[i]++;
	}
}

static uint64_t refcount_get(const uint8_t *blk, unsigned order, uint64_t i)
{
	unsigned bits = 1u << order;

	switch (bits) {
	case 64: return q2_be64(blk + i * 8);
	case 32: return q2_be32(blk + i * 4);
	case 16: return q2_be16(blk + i * 2);
	case 8: return blk[i];
	default: {
		unsigned per = 8 / bits;
		unsigned shift = (unsigned)(i % per) * bits;
		return (blk[i / per] >> shift) & ((1u << bits) - 1);
	}
	}
}

static int qcow2__check(imgfmt_image *img, int repair,
			struct imgfmt_check_result *res)
{
	struct qcow2 *q = img->priv;
	struct q2_check c = { .img = img, .q = q, .res = res };
	uint32_t cs = q->cluster_size;
	uint8_t *l2 = NULL, *rt = NULL, *blk = NULL;
	int r = 0;

	if (repair)
		return imgfmt_err(ENOTSUP, "%s: qcow2 repair is not supported "
				  "(the qcow2 driver is read-only)", img->path);
	res->was_dirty = (q->incompat & QINCOMPAT_DIRTY) != 0;
	c.nclusters = (img->file_length + cs - 1) >> q->cluster_bits;
	if (c.nclusters > CHECK_MAX_CLUSTERS)
		return imgfmt_err(EFBIG, "%s: qcow2 file has %llu clusters; "
				  "check handles at most %u", img->path,
				  (unsigned long long)c.nclusters,
				  CHECK_MAX_CLUSTERS);
	c.refs = calloc(c.nclusters ? c.nclusters : 1, sizeof(*c.refs));
	l2 = malloc(cs);
	blk = malloc(cs);
	rt = malloc((size_t)q->reftable_clusters * cs + 1);
	if (!c.refs || !l2 || !blk || !rt) {
		r = imgfmt_err(ENOMEM, "out of memory");
		goto out;
	}

	/* References from the metadata itself. */
	add_refs(&c, 0, cs, "header");
	add_refs(&c, q->l1_offset, (uint64_t)q->l1_size * 8, "L1 table");
	add_refs(&c, q->reftable_offset, (uint64_t)q->reftable_clusters * cs,
		 "refcount table");
	for (uint32_t i = 0; i < q->l1_size; i++) {
		if (!q->l1[i])
			continue;
		add_refs(&c, q->l1[i], cs, "L2 table");
		r = imgfmt_file_read(img, l2, cs, q->l1[i], "qcow2 L2 table");
		if (r < 0)
			goto out;
		for (uint32_t j = 0; j < q->l2_entries; j++) {
			const uint8_t *ent = l2 + (size_t)j * q->l2_entry_bytes;
			uint64_t e = q2_be64(ent);
			uint64_t vcl = (uint64_t)i * q->l2_entries + j;
			if (e & QL2_COMPRESSED) {
				struct q2_run u = { 0 };
				if (classify(img, q, ent, 0, vcl, &u) < 0) {
					problem(&c, 1, "%s", imgfmt__error());
					continue;
				}
				add_refs(&c, u.host & ~511ull,
					 u.csize + (u.host & 511),
					 "compressed cluster");
				continue;
			}
			uint64_t host = e & QL2_OFFSET_MASK;
			if (!host)
				continue;
			if (host & (cs - 1)) {
				problem(&c, 1, "L2 entry for virtual cluster "
					"%llu: offset %llu is not aligned",
					(unsigned long long)vcl,
					(unsigned long long)host);
				continue;
			}
			add_refs(&c, host, cs, "data cluster");
		}
	}

	/* Compare with the stored refcounts; the refcount blocks count
	 * themselves too. */
	r = imgfmt_file_read(img, rt, (size_t)q->reftable_clusters * cs,
			     q->reftable_offset, "qcow2 refcount table");
	if (r < 0)
		goto out;
	uint64_t per_blk = ((uint64_t)cs * 8) >> q->refcount_order;
	uint64_t nent = (uint64_t)q->reftable_clusters * cs / 8;
	for (uint64_t i = 0; i < nent; i++) {
		uint64_t b = q2_be64(rt + i * 8) & QREFT_OFFSET_MASK;
		if (!b)
			continue;
		if (b & (cs - 1) || b >= img->file_length ||
		    cs > img->file_length - b) {
			problem(&c, 1, "refcount table entry %llu: block "
				"offset %llu is misaligned or past the end",
				(unsigned long long)i, (unsigned long long)b);
			continue;
		}
		add_refs(&c, b, cs, "refcount block");
	}
	for (uint64_t i = 0; i < nent && i * per_blk < c.nclusters; i++) {
		uint64_t b = q2_be64(rt + i * 8) & QREFT_OFFSET_MASK;
		int have = b && !(b & (cs - 1)) && b < img->file_length &&
			   cs <= img->file_length - b;
		if (have) {
			r = imgfmt_file_read(img, blk, cs, b,
					     "qcow2 refcount block");
			if (r < 0)
				goto out;
		}
		for (uint64_t k = 0; k < per_blk; k++) {
			uint64_t cl = i * per_blk + k;
			if (cl >= c.nclusters)
				break;
			uint64_t stored = have ? refcount_get(blk,
						q->refcount_order, k) : 0;
			if (stored < c.refs[cl])
				problem(&c, 1, "cluster %llu: refcount %llu "
					"but %u references",
					(unsigned long long)cl,
					(unsigned long long)stored,
					c.refs[cl]);
			else if (stored > c.refs[cl] && !q->nb_snapshots)
				problem(&c, 0, "cluster %llu: refcount %llu "
					"but %u references (leaked)",
					(unsigned long long)cl,
					(unsigned long long)stored,
					c.refs[cl]);
		}
	}
	for (uint64_t cl = nent * per_blk; cl < c.nclusters; cl++)
		if (c.refs[cl])
			problem(&c, 1, "cluster %llu is referenced but the "
				"refcount table does not cover it",
				(unsigned long long)cl);
	r = 0;
out:
	free(c.refs);
	free(l2);
	free(rt);
	free(blk);
	return r;
}

const struct imgfmt_driver imgfmt_qcow2_driver = {
	.name = "qcow2",
	.probe = qcow2__probe,
	.open = qcow2__open,
	.close = qcow2__close,
	.pread = qcow2__pread,
	.pwrite = qcow2__pwrite,
	.flush = qcow2__flush,
	.discard = qcow2__discard,
	.write_zeroes = qcow2__write_zeroes,
	.map = qcow2__map,
	.info = qcow2__info,
	.check = qcow2__check,
	.create = qcow2__create,
	.writer_open = qcow2__writer_open,
	.writer_encode = qcow2__writer_encode,
	.writer_put = qcow2__writer_put,
	.writer_finish = qcow2__writer_finish,
	.writer_abort = qcow2__writer_abort,
};
