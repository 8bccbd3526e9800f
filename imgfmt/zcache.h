/*
 * zcache.h - reading compressed clusters without redoing work (internal
 * to imgfmt/).
 *
 * Two things shared by the drivers that read compressed clusters (AVD,
 * qcow2, VMDK stream-optimized):
 *
 *  - per-thread decompression state: a ZSTD_DCtx, zlib inflate streams
 *    and scratch buffers, created on a thread's first compressed read and
 *    freed when the thread exits (as imgfmt_writer_zstd_cctx does for
 *    compression).  Creating a context per cluster costs as much as
 *    decompressing it.
 *
 *  - a small per-image cache of decompressed clusters, so that a client
 *    reading a compressed cluster 4 KiB at a time decompresses it once,
 *    not once per 4 KiB.  Entries are keyed on the cluster's descriptor
 *    (where its compressed bytes are, how many, and their checksum when
 *    the format has one), never on the virtual cluster number alone: see
 *    imgfmt_zcache_read for why a stale entry can then never be served.
 */
#ifndef IMGFMT_ZCACHE_H
#define IMGFMT_ZCACHE_H

#include <stddef.h>
#include <stdint.h>
#include <zlib.h>
#include <zstd.h>

/* This thread's zstd decompression context (session reset, ready for a
 * new frame), or NULL if out of memory. */
ZSTD_DCtx *imgfmt_zstd_dctx(void);

/* This thread's inflate stream for `window_bits` (as for inflateInit2:
 * 15 zlib format, -12 raw deflate with a 4 KiB window, ...), reset and
 * ready for a new stream; NULL if out of memory.  The caller sets
 * next_in/avail_in/next_out/avail_out and must not call inflateEnd. */
z_stream *imgfmt_zlib_inflater(int window_bits);

/* A buffer of at least n bytes owned by this thread, valid until its next
 * call on the same thread (one per `which`: 0 and 1 may be live at
 * once); NULL if out of memory.  For compressed input read from a file:
 * the caller must not hold it across a call that may use it again. */
void *imgfmt_zscratch(int which, size_t n);

/* The decompressed-cluster cache of one image handle. */
struct imgfmt_zcache;

struct imgfmt_zkey {
	uint64_t off;   /* file offset of the compressed bytes */
	uint64_t len;   /* their length */
	uint64_t check; /* their checksum, 0 where the format has none;
			 * VMDK: the grain's index + 1, so that a grain
			 * shared by two table entries is checked for each */
};

/* Fill `out` (the cluster size given at creation) with the decompressed
 * cluster the key names, after verifying what the format lets us
 * verify; 0 or an imgfmt_err() code. */
typedef int (*imgfmt_zfill_fn)(void *arg, uint8_t *out);

/* A cache of up to `entries` clusters of `cluster_size` bytes, whose
 * buffers are allocated only when first used; NULL on ENOMEM (callers
 * then read uncached).  `entries` 0 also gives NULL. */
struct imgfmt_zcache *imgfmt_zcache_new(unsigned entries,
					size_t cluster_size);
void imgfmt_zcache_free(struct imgfmt_zcache *zc);

/* How many entries for a handle whose metadata budget is cache_bytes:
 * a quarter of the budget, between 2 and 16 clusters. */
unsigned imgfmt_zcache_entries(size_t cache_bytes, size_t cluster_size);

/* Copy bytes [o, o + len) of the cluster `key` names into dst, from the
 * cache or by calling fill (at most one thread fills a given key at a
 * time; the others wait for it).  A failed fill is not cached: the next
 * read of the key calls fill again and fails again.  zc may be NULL
 * (no cache: fill into a per-thread buffer of cluster_size bytes). */
int imgfmt_zcache_read(struct imgfmt_zcache *zc, size_t cluster_size,
		       const struct imgfmt_zkey *key, uint32_t o, uint32_t len,
		       uint8_t *dst, imgfmt_zfill_fn fill, void *arg);

#endif
