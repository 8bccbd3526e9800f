/*
 * avd.h - private definitions of the AVD format (spec: imgfmt/FORMAT.md).
 *
 * Shared by avd.c (the driver), avd-writer.c (the streaming writer) and
 * maint.c (which needs to change an AVD header's backing reference).
 */
#ifndef IMGFMT_AVD_H
#define IMGFMT_AVD_H

#include <endian.h>
#include <stdint.h>
#include <string.h>

#include "driver.h"

#define AVD_MAGIC "AVD1\r\n\x1a\n"
#define AVD_MAGIC_LEN 8
#define AVD_VERSION 1
#define AVD_HEADER_SIZE 4096u
#define AVD_NAME_OFFSET 512u
#define AVD_MAX_BACKING_NAME (AVD_HEADER_SIZE - AVD_NAME_OFFSET)
#define AVD_SUB 4096u          /* checksum granularity of data clusters */
#define AVD_MAX_L1_BYTES (32u << 20)

/* Header field offsets. */
#define AVD_H_MAGIC 0
#define AVD_H_VERSION 8
#define AVD_H_HEADER_SIZE 12
#define AVD_H_SIZE 16
#define AVD_H_CLUSTER_BITS 24
#define AVD_H_FLAGS 28
#define AVD_H_INCOMPAT 32
#define AVD_H_COMPAT 40
#define AVD_H_AUTOCLEAR 48
#define AVD_H_UUID 56
#define AVD_H_L1_OFFSET 72
#define AVD_H_L1_ENTRIES 80
#define AVD_H_BACKING_LEN 84
#define AVD_H_BACKING_FMT 88
#define AVD_H_DIGEST_PRESENT 104
#define AVD_H_CRC 108
#define AVD_H_DIGEST 112

#define AVD_FLAG_DIRTY 1u

/* Feature bits this implementation understands (none defined yet). */
#define AVD_INCOMPAT_KNOWN 0ull
#define AVD_COMPAT_KNOWN 0ull
#define AVD_AUTOCLEAR_KNOWN 0ull

/* Cluster descriptor (first 8 bytes of an L2 entry). */
#define AVD_T_UNALLOC 0u
#define AVD_T_ZERO 1u
#define AVD_T_DATA 2u
#define AVD_T_COMP 3u
#define AVD_DESC_TYPE(d) ((unsigned)((d) >> 62))
#define AVD_DESC_OFF(d) ((d) & ((1ull << 56) - 1))
#define AVD_DESC_RESERVED (0x3full << 56)
#define AVD_DESC(type, off) (((uint64_t)(type) << 62) | (off))
#define AVD_L1_RESERVED (0xffull << 56)

struct avd_header {
	uint64_t size;
	uint32_t cluster_bits;
	uint32_t flags;
	uint64_t incompat, compat, autoclear;
	uint8_t uuid[16];
	uint64_t l1_offset;
	uint32_t l1_entries;
	uint32_t backing_len;
	char backing_name[AVD_MAX_BACKING_NAME + 1];
	char backing_format[16];
	int has_digest;
	uint8_t digest[32];
};

static inline uint64_t avd_get64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return le64toh(v);
}

static inline uint32_t avd_get32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return le32toh(v);
}

static inline void avd_put64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

static inline void avd_put32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
}

/* L2 entry: u64 descriptor, u32 aux (compressed length), u32 crc[n]
 * where n = cluster_size / 4096, padded to a multiple of 8 bytes. */
static inline uint32_t avd_entry_size(uint32_t cluster_size)
{
	return (12u + 4u * (cluster_size / AVD_SUB) + 7u) & ~7u;
}

static inline uint64_t avd_l1_needed(uint64_t size, uint32_t cluster_size)
{
	uint64_t clusters = (size + cluster_size - 1) / cluster_size;
	uint64_t epl = cluster_size / avd_entry_size(cluster_size);
	return (clusters + epl - 1) / epl;
}

/* Whole data clusters are placed so that file offset and virtual offset
 * agree modulo AVD_ALIGN (FORMAT.md §4, "Aligned whole clusters"; the
 * driver's avd_alloc_whole() and the streaming writer): the page cache
 * builds large folios only at offsets aligned to their size.  Not for
 * clusters of AVD_ALIGN or more, nor on disks under AVD_ALIGN_MIN_DISK,
 * where a gap of up to 1 MiB would be a large share of the file. */
#define AVD_ALIGN (1u << 20)
#define AVD_ALIGN_MIN_DISK (64ull << 20)

/* Clusters per AVD_ALIGN bytes for a disk of `size` bytes with clusters
 * of 2^cbits bytes; 1: no aligning. */
static inline uint32_t avd_align_span(uint64_t size, uint32_t cbits)
{
	uint32_t span = AVD_ALIGN >> cbits;
	return span < 1 || size < AVD_ALIGN_MIN_DISK ? 1 : span;
}

/* The first cluster index at or after `c` congruent to virtual cluster
 * `vc` modulo `span`; the ones before it are the gaps. */
static inline uint64_t avd_align_cluster(uint64_t c, uint64_t vc,
					 uint32_t span)
{
	return c + (vc % span + span - c % span) % span;
}

void avd_header_encode(const struct avd_header *h, uint8_t *buf);
/* Parse and validate the fields that need nothing but the header. */
int avd_header_decode(const char *path, const uint8_t *buf, size_t len,
		      struct avd_header *h);
/* Fill a header for a new image (uuid, backing reference, digest). */
int avd_header_init(const char *path, struct avd_header *h, uint64_t size,
		    uint32_t cluster_size, const uint8_t *uuid,
		    const char *backing, const char *backing_format,
		    int digest);
/* SHA-256 of a whole file. */
int avd_file_digest(const char *path, uint8_t out[32]);
/* Maintenance hooks used by maint.c (AVD images only). */
int avd__set_backing(imgfmt_image *img, const char *name, const char *fmt,
		     int digest);
int avd__refresh_digest(imgfmt_image *img);

extern const struct imgfmt_driver imgfmt_avd_driver;

/* Streaming writer (avd-writer.c). */
int avd__writer_open(struct imgfmt_writer *w);
int avd__writer_encode(struct imgfmt_writer *w, const void *data,
		       uint64_t off, uint32_t len, struct imgfmt_chunk *chunk);
int avd__writer_put(struct imgfmt_writer *w, struct imgfmt_chunk *chunk);
int avd__writer_finish(struct imgfmt_writer *w);
void avd__writer_abort(struct imgfmt_writer *w);

#endif /* IMGFMT_AVD_H */
