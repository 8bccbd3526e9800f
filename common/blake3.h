/*
 * blake3.h - the BLAKE3 hash (default 32-byte hash mode only), written
 * from the BLAKE3 specification for per-cluster verification of
 * appliance disks (manifest algorithm "blake3").
 *
 * blake3__hash() is the fast path for whole buffers: it hashes 4, 8 or 16
 * chunks at a time with SIMD (AVX-512, AVX2 or SSE4.1, chosen once at
 * run time) and reduces the tree level by level.  The streaming hasher
 * gives the same digest for any way of splitting the input.  Everything
 * here is a pure function of its arguments: safe from any thread.
 *
 * APPLIANCE_BLAKE3_IMPL=portable|sse41|avx2|avx512 in the environment
 * (read once, on first use) forces a code path; one this CPU lacks is
 * ignored and the best supported one is used.
 */
#ifndef COMMON_BLAKE3_H
#define COMMON_BLAKE3_H

#include <stddef.h>
#include <stdint.h>

#define BLAKE3__OUT_LEN 32
#define BLAKE3__BLOCK_LEN 64
#define BLAKE3__CHUNK_LEN 1024
/* Enough for 2^54 chunks (2^64 bytes): one entry per set bit of the
 * chunk count. */
#define BLAKE3__MAX_DEPTH 54

/* Caller-allocated (about 2.8 KiB); no allocation anywhere. */
struct blake3__hasher {
	uint64_t chunk_counter;   /* index of the current chunk */
	uint16_t chunk_len;       /* bytes of it in chunk[] */
	uint8_t stack_len;
	/* Chaining values of completed subtrees, largest first (merged
	 * eagerly: one per set bit of chunk_counter). */
	uint8_t cv_stack[BLAKE3__MAX_DEPTH][BLAKE3__OUT_LEN];
	/* The current chunk, not hashed until more input follows it. */
	uint8_t chunk[BLAKE3__CHUNK_LEN];
};

void blake3__init(struct blake3__hasher *h);
void blake3__update(struct blake3__hasher *h, const void *data, size_t len);
/* The digest of everything given so far; h is unchanged (more updates
 * and finals may follow). */
void blake3__final(const struct blake3__hasher *h, uint8_t out[BLAKE3__OUT_LEN]);

/* One-shot hash of a whole buffer: the fast path, used per cluster
 * (4 KiB .. 2 MiB). */
void blake3__hash(const void *data, size_t len, uint8_t out[BLAKE3__OUT_LEN]);

/*
 * Subtrees (BLAKE3's verified streaming, used for the optional per-part
 * CVs of appliance disk clusters; appliances/FORMAT.md).  A part is
 * `subtree_len` bytes of a larger input (a power-of-two multiple of
 * 1024, so that every full part is a complete subtree of the input's
 * tree); only the input's last part may be shorter.
 *
 * blake3__subtree_cv: the chaining value of one part, `len` bytes
 * (1 .. subtree_len, at most 256 KiB) whose first chunk is chunk number
 * `first_chunk` of the input.  Never the root: the input must have more
 * than one part.
 *
 * blake3__subtree_cvs: the CVs of all n = ceil(len / subtree_len) >= 2
 * parts of a whole input of `len` bytes, to cvs (n * 32 bytes).
 *
 * blake3__root_from_cvs: the digest of an input from the CVs of its
 * n >= 2 parts, left to right (equal to blake3__hash of the input).
 * Overwrites cvs.
 */
void blake3__subtree_cv(const void *data, size_t len, uint64_t first_chunk,
			uint8_t out[BLAKE3__OUT_LEN]);
void blake3__subtree_cvs(const void *data, size_t len, size_t subtree_len,
			 uint8_t *cvs);
void blake3__root_from_cvs(uint8_t *cvs, size_t n,
			   uint8_t out[BLAKE3__OUT_LEN]);

/* Which code path runs: "avx512", "avx2", "sse41" or "portable". */
const char *blake3__impl(void);

/* For tests and benchmarks only: make name ("portable", "sse41", "avx2",
 * "avx512") the code path used by every later call, or with NULL go back
 * to the automatic choice.  0, or -1 (nothing changed) if name is unknown
 * or this CPU cannot run it.  Not to be called while other threads hash. */
int blake3__force_impl(const char *name);

#endif /* COMMON_BLAKE3_H */
