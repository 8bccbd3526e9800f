/*
 * qcow2.h - on-disk constants of the qcow2 format shared by the reader
 * (qcow2.c) and the streaming writer (qcow2-write.c).  Internal to imgfmt/.
 *
 * The layout follows QEMU's docs/interop/qcow2.txt: every integer is big
 * endian; the header is 72 bytes in version 2 and header_length bytes
 * (at least 104) in version 3, followed by header extensions and the
 * backing file name, all inside cluster 0.
 */
#ifndef IMGFMT_QCOW2_H
#define IMGFMT_QCOW2_H

#include <stddef.h>
#include <stdint.h>

#define QCOW2_MAGIC 0x514649fbu /* "QFI\xfb" */

/* Header field offsets. */
#define QH_MAGIC 0
#define QH_VERSION 4
#define QH_BACKING_OFFSET 8
#define QH_BACKING_SIZE 16
#define QH_CLUSTER_BITS 20
#define QH_SIZE 24
#define QH_CRYPT_METHOD 32
#define QH_L1_SIZE 36
#define QH_L1_OFFSET 40
#define QH_REFTABLE_OFFSET 48
#define QH_REFTABLE_CLUSTERS 56
#define QH_NB_SNAPSHOTS 60
#define QH_SNAPSHOTS_OFFSET 64
#define QH_V2_LENGTH 72
#define QH_INCOMPAT 72
#define QH_COMPAT 80
#define QH_AUTOCLEAR 88
#define QH_REFCOUNT_ORDER 96
#define QH_HEADER_LENGTH 100
#define QH_COMPRESSION_TYPE 104
#define QH_V3_MIN_LENGTH 104
#define QH_V3_LENGTH 112 /* with compression_type, padded to 8 */

/* Incompatible feature bits. */
#define QINCOMPAT_DIRTY (1ull << 0)
#define QINCOMPAT_CORRUPT (1ull << 1)
#define QINCOMPAT_DATA_FILE (1ull << 2)
#define QINCOMPAT_COMPRESSION (1ull << 3)
#define QINCOMPAT_EXTL2 (1ull << 4)
#define QINCOMPAT_KNOWN 0x1full

/* Header extension types. */
#define QEXT_END 0x00000000u
#define QEXT_BACKING_FORMAT 0xe2792acau
#define QEXT_FEATURE_TABLE 0x6803f857u
#define QEXT_BITMAPS 0x23852875u
#define QEXT_CRYPTO 0x0537be77u
#define QEXT_DATA_FILE 0x44415441u

#define QCOMP_ZLIB 0
#define QCOMP_ZSTD 1

/* L1/L2 entry bits. */
#define QL1_OFFSET_MASK 0x00fffffffffffe00ull
#define QL2_OFFSET_MASK 0x00fffffffffffe00ull
#define QENTRY_COPIED (1ull << 63)
#define QL2_COMPRESSED (1ull << 62)
#define QL2_ZERO (1ull << 0)
#define QREFT_OFFSET_MASK 0xfffffffffffffe00ull

#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21
#define QCOW2_SUBCLUSTERS 32      /* per cluster with extended L2 */
#define QCOW2_MAX_L1_BYTES (32u << 20) /* QEMU's cap on the L1 table */
#define QCOW2_MAX_BACKING_NAME 1023
#define QCOW2_MAX_REFTABLE_BYTES (8u << 20)

static inline uint16_t q2_be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t q2_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t q2_be64(const uint8_t *p)
{
	return (uint64_t)q2_be32(p) << 32 | q2_be32(p + 4);
}

static inline void q2_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void q2_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline void q2_put64(uint8_t *p, uint64_t v)
{
	q2_put32(p, (uint32_t)(v >> 32));
	q2_put32(p + 4, (uint32_t)v);
}

/* An open image's parsed header (img->priv). */
struct qcow2 {
	int version;
	unsigned cluster_bits;
	uint32_t cluster_size;
	int extl2;                 /* extended L2 entries (subclusters) */
	unsigned l2_entry_bytes;   /* 8, or 16 with extended L2 */
	uint32_t l2_entries;       /* entries per L2 table */
	unsigned sc_bits;          /* log2 of the subcluster (or cluster) size */
	uint64_t *l1;              /* host byte order */
	uint32_t l1_size;
	uint64_t l1_offset;
	uint64_t reftable_offset;
	uint32_t reftable_clusters;
	unsigned refcount_order;
	uint32_t nb_snapshots;
	uint64_t incompat, compat, autoclear;
	int compression_type;
	unsigned csize_shift;      /* compressed entries: size field start */
	uint64_t coffset_mask;
	struct qcow2_rw *rw;       /* read-write state (qcow2-rw.c), or NULL */
	struct imgfmt_zcache *zc;  /* decompressed clusters (zcache.h), or NULL */
};

/* Writer entry points (qcow2-write.c), wired into the driver in qcow2.c. */
struct imgfmt_writer;
struct imgfmt_chunk;
struct imgfmt_create_opts;
int qcow2__writer_open(struct imgfmt_writer *w);
int qcow2__writer_encode(struct imgfmt_writer *w, const void *data,
			 uint64_t off, uint32_t len,
			 struct imgfmt_chunk *chunk);
int qcow2__writer_put(struct imgfmt_writer *w, struct imgfmt_chunk *chunk);
int qcow2__writer_finish(struct imgfmt_writer *w);
void qcow2__writer_abort(struct imgfmt_writer *w);
int qcow2__create(const char *path, const struct imgfmt_create_opts *o);

/* Read-write support (qcow2-rw.c). */
struct imgfmt_image;
int qcow2__pread(struct imgfmt_image *img, void *buf, size_t len,
		 uint64_t off);
int qcow2__rw_open(struct imgfmt_image *img);
void qcow2__rw_close(struct imgfmt_image *img);
int qcow2__pwrite(struct imgfmt_image *img, const void *buf, size_t len,
		  uint64_t off);
int qcow2__flush(struct imgfmt_image *img);
int qcow2__discard(struct imgfmt_image *img, uint64_t off, uint64_t len);
int qcow2__write_zeroes(struct imgfmt_image *img, uint64_t off, uint64_t len,
			unsigned flags);

#endif /* IMGFMT_QCOW2_H */
