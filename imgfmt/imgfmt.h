/*
 * imgfmt.h - the public API of the disk-image library.
 *
 * One handle type, `imgfmt_image`, stands for an open virtual disk of any
 * format the library knows (AVD, raw, qcow2, VMDK, VHD).  The format is
 * detected by magic unless the caller names it.  Everything a disk does is
 * here: byte-granular reads and writes, flush, discard, write-zeroes,
 * allocation map, resize, and backing chains.
 *
 * Errors: every function returns 0 (or a non-negative count) on success and
 * a negative errno value on failure.  The failing call also records a
 * human-readable message naming the file and what was wrong; fetch it with
 * imgfmt__error().  The message lives in thread-local storage (like
 * dlerror()), so concurrent threads never see each other's messages.  The
 * library never prints, never exits and never aborts on bad input.
 *
 * Threading rules:
 *   - imgfmt__pread() and imgfmt__map() may be called concurrently from any
 *     number of threads on one handle.
 *   - Calls that modify the image (pwrite, discard, write_zeroes, flush,
 *     resize) may also be made from several threads; the handle serialises
 *     metadata updates internally.  Concurrent writes to overlapping byte
 *     ranges have no defined order (as with pwrite(2) on a file).
 *   - imgfmt__close() must not race with any other call on the handle.
 */
#ifndef IMGFMT_H
#define IMGFMT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct imgfmt_image imgfmt_image;

/* Longest backing chain the library follows (the image itself included). */
#define IMGFMT_MAX_CHAIN 16

/* Cluster sizes AVD accepts; other formats have their own limits. */
#define IMGFMT_MIN_CLUSTER (4u * 1024)
#define IMGFMT_MAX_CLUSTER (2u * 1024 * 1024)
#define IMGFMT_DEFAULT_CLUSTER (64u * 1024)

/* The largest virtual size any image may claim: 64 TiB.  Larger claims in
 * a header are treated as corruption rather than believed. */
#define IMGFMT_MAX_VIRTUAL_SIZE (64ull << 40)

/* ---- errors ---------------------------------------------------------- */

/* Message of the most recent failing call in this thread ("" if none). */
const char *imgfmt__error(void);

/* ---- open / create / close ------------------------------------------- */

enum imgfmt_open_flags {
	IMGFMT_OPEN_RDWR = 1u << 0,       /* default is read-only */
	IMGFMT_OPEN_NO_BACKING = 1u << 1, /* do not open the backing file; reads
	                                     of unallocated ranges return zeros
	                                     (implied for backing format
	                                     "appliance": a package's disk,
	                                     which the runtime attaches) */
	IMGFMT_OPEN_DIRECT = 1u << 2,     /* O_DIRECT where the format allows */
	IMGFMT_OPEN_NO_DATA_CHECKSUMS = 1u << 3,
	                                  /* read-only use by a caller that checks
	                                     every cluster's content against
	                                     something stronger (a package's
	                                     signed hash tree): skip AVD's CRC32C
	                                     of data clusters, which would only
	                                     repeat the check.  Metadata is
	                                     checked as always; a backing file
	                                     keeps its checksums. */
	IMGFMT_OPEN_FD = 1u << 4,         /* read-only: read the file already
	                                     open as `fd` (a duplicate of it;
	                                     the caller keeps its own) instead
	                                     of opening `path`, which then only
	                                     names the image in messages.  For
	                                     a caller that holds something on
	                                     that very file (a package's read
	                                     lease), which opening the path
	                                     again might not reach. */
	IMGFMT_OPEN_SELF_CONTAINED = 1u << 5,
	                                  /* refuse an image that names other
	                                     files to read: a backing file by
	                                     name, a VMDK descriptor's extent
	                                     files.  For a reader that is to
	                                     see the image's own bytes and
	                                     nothing else: a guest given a
	                                     downloaded image would otherwise
	                                     read whatever file of its user's
	                                     the image names. */
};

struct imgfmt_open_opts {
	unsigned flags;         /* enum imgfmt_open_flags */
	const char *format;     /* NULL: detect by magic ("avd", "raw", ...) */
	size_t cache_bytes;     /* metadata cache bound; 0: library default */
	/* An image embedded inside a larger file (an appliance package):
	 * the image's byte 0 is at `offset`, and it is `length` bytes long.
	 * Both 0: the whole file. */
	uint64_t offset;
	uint64_t length;
	int fd;                 /* with IMGFMT_OPEN_FD */
};

int imgfmt__open(const char *path, const struct imgfmt_open_opts *opts,
		 imgfmt_image **out);

/* Flushes a writable image, releases everything, and returns the flush's
 * result.  The handle is freed even when the result is an error. */
int imgfmt__close(imgfmt_image *img);

struct imgfmt_create_opts {
	const char *format;          /* NULL or "avd" (default), "raw", ... */
	uint64_t size;               /* virtual size in bytes; 0 with a backing
	                                file means "the backing file's size" */
	uint32_t cluster_size;       /* 0: IMGFMT_DEFAULT_CLUSTER */
	const char *backing_file;    /* NULL: no backing file */
	const char *backing_format;  /* NULL: detect */
	int backing_digest;          /* record SHA-256 of the backing image and
	                                verify it on open */
	const uint8_t *uuid;         /* 16 bytes, or NULL for a random one */
	int compress_level;          /* zstd level for compressed output, 0:
	                                default */
};

int imgfmt__create(const char *path, const struct imgfmt_create_opts *opts);

/* ---- I/O ------------------------------------------------------------- */

/* Any offset and length; reading past the virtual size is an error. */
int imgfmt__pread(imgfmt_image *img, void *buf, size_t len, uint64_t off);
int imgfmt__pwrite(imgfmt_image *img, const void *buf, size_t len,
		   uint64_t off);

/* Durable: when this returns 0, every write acknowledged before the call
 * survives a crash of the process or the machine. */
int imgfmt__flush(imgfmt_image *img);

/* The range reads as zeros afterwards (unless a backing file shows
 * through: discard makes the range "unallocated", so with a backing file it
 * reads the backing file's data).  Partial clusters are zeroed in place. */
int imgfmt__discard(imgfmt_image *img, uint64_t off, uint64_t len);

enum imgfmt_zero_flags {
	IMGFMT_ZERO_MAY_UNMAP = 1u << 0, /* free the clusters if possible */
};
/* The range reads as zeros afterwards, whatever the backing file holds. */
int imgfmt__write_zeroes(imgfmt_image *img, uint64_t off, uint64_t len,
			 unsigned flags);

/* Grow the virtual size (shrinking is refused with -ENOTSUP). */
int imgfmt__resize(imgfmt_image *img, uint64_t new_size);

/* ---- allocation map -------------------------------------------------- */

enum imgfmt_extent_kind {
	IMGFMT_EXTENT_DATA = 0,    /* stored in this image */
	IMGFMT_EXTENT_ZERO = 1,    /* reads as zeros (explicit zero, or a hole
	                              with nothing underneath) */
	IMGFMT_EXTENT_BACKING = 2, /* not allocated here: comes from the
	                              backing file */
};

enum imgfmt_extent_flags {
	IMGFMT_EXTENT_COMPRESSED = 1u << 0,
};

struct imgfmt_extent {
	uint64_t offset;  /* virtual offset (== the `off` asked for) */
	uint64_t length;  /* > 0, never past the requested range */
	enum imgfmt_extent_kind kind;
	unsigned flags;   /* enum imgfmt_extent_flags */
	int64_t file_offset; /* where DATA lives in this image's file, -1 if
	                        not meaningful (compressed, zero, backing) */
};

/* Describe the run of same-kind bytes starting at `off` (at most `len`
 * bytes).  Call repeatedly, advancing by ext->length, to walk a range. */
int imgfmt__map(imgfmt_image *img, uint64_t off, uint64_t len,
		struct imgfmt_extent *ext);

/* ---- information ----------------------------------------------------- */

struct imgfmt_info {
	char format[16];           /* "avd", "qcow2", ... */
	char subformat[32];        /* e.g. "streamOptimized", "dynamic", "" */
	uint64_t virtual_size;
	uint64_t file_size;        /* bytes the image occupies in its file */
	uint64_t allocated_bytes;  /* host bytes actually allocated */
	uint32_t cluster_size;     /* 0 when the format has none (raw) */
	int read_only;
	int dirty;                 /* image was not closed cleanly */
	uint8_t uuid[16];
	int has_uuid;
	char backing_file[4096];   /* "" if none */
	char backing_format[16];
	int chain_depth;           /* 1 for an image without backing file */
	uint64_t incompatible_features, compatible_features, autoclear_features;
};

int imgfmt__info(imgfmt_image *img, struct imgfmt_info *info);

/* The backing image of `img`, or NULL. */
imgfmt_image *imgfmt__backing(imgfmt_image *img);

/* ---- maintenance ----------------------------------------------------- */

struct imgfmt_check_result {
	uint64_t corruptions;     /* metadata errors (e.g. overlaps, bad ptrs) */
	uint64_t leaks;           /* clusters allocated but unreferenced */
	uint64_t checksum_errors; /* clusters whose data fails its checksum */
	uint64_t repaired;        /* problems fixed (with repair) */
	int was_dirty;
	char first_problem[512];  /* description of the first problem found */
};

/* Examine an image's metadata (and, for formats with checksums, data).
 * Returns 0 if the check ran (look at *res for problems), <0 if it could
 * not run.  With `repair`, the image must be open read-write and fixable
 * problems are fixed. */
int imgfmt__check(imgfmt_image *img, int repair,
		  struct imgfmt_check_result *res);

/* Copy every allocated range of the overlay `img` into its backing image
 * (which is reopened read-write), then make the overlay empty. */
int imgfmt__commit(imgfmt_image *img);

/* Point `img` at a different backing file.  Unless `unsafe`, data that
 * differs between the old and the new chain is first copied into `img` so
 * that the guest-visible content is unchanged.  new_backing NULL: no
 * backing file at all (everything is copied in). */
int imgfmt__rebase(imgfmt_image *img, const char *new_backing,
		   const char *new_backing_format, int unsafe);

/* Write a new image at `dst_path` holding the same content as `src` but
 * without holes left by discards and rewrites, compressed with zstd when
 * compress_level > 0.  The destination appears only when complete. */
int imgfmt__compact(imgfmt_image *src, const char *dst_path,
		    int compress_level);

/* ---- composition ------------------------------------------------------ */

/* Checks one cluster of an image's content; 0 if it is genuine, <0 if not.
 * `len` is the cluster size except for a short last cluster. */
typedef int (*imgfmt_verify_fn)(void *opaque, uint64_t cluster,
				const void *data, size_t len);

/* 1 if the genuine content of `cluster` (of `len` bytes) is all zero
 * bytes, 0 if not or unknown.  Called often: it must be cheap (for a hash
 * tree, compare the leaf with the precomputed leaf of a zero cluster). */
typedef int (*imgfmt_verify_zero_fn)(void *opaque, uint64_t cluster,
				     size_t len);

/* A read-only view of `inner` (which it takes over and closes) that reads
 * whole clusters of `cluster_size` and returns only data that `verify`
 * accepted; a cluster that fails is an -EBADMSG read error naming it, and
 * the caller's buffer is then all zeros.  Clusters for which `is_zero`
 * (may be NULL) says 1 are served as zeros without reading or verifying.
 * `verify` and `is_zero` are called from several threads at once (the
 * view verifies on a worker thread of its own as well). */
int imgfmt__open_verified(imgfmt_image *inner, uint32_t cluster_size,
			  imgfmt_verify_fn verify, imgfmt_verify_zero_fn is_zero,
			  void *opaque, imgfmt_image **out);

/* Checks part of a cluster: bytes [off, off + len) of `cluster` at data,
 * off a multiple of the part size and len whole parts (the last may end
 * at the cluster's end).  0: genuine; <0: not genuine; 1: this cluster
 * cannot be checked by parts (the view then checks it whole). */
typedef int (*imgfmt_verify_part_fn)(void *opaque, uint64_t cluster,
				     size_t off, const void *data, size_t len);

/* Let a verified view check a small read of a cluster that it has not
 * verified yet by the parts of `part_size` bytes the read touches (a
 * power of two, 512 .. cluster size / 2), instead of reading and hashing
 * the whole cluster: random small reads then cost what they read.  Reads
 * that continue a sequential stream still verify whole clusters (and
 * ahead).  Call before the first read; `verify_part` is called from
 * several threads at once. */
int imgfmt__verified_parts(imgfmt_image *view, uint32_t part_size,
			   imgfmt_verify_part_fn verify_part);

/* Give an image opened with IMGFMT_OPEN_NO_BACKING the backing image it
 * should read through (for backing images the core cannot open by name,
 * such as the verified disk inside an appliance package).  Takes over
 * `backing`; fails with -EBUSY if the image already has one. */
int imgfmt__attach_backing(imgfmt_image *img, imgfmt_image *backing);

/* ---- formats --------------------------------------------------------- */

/* Name of the format that would open `path` ("avd", "qcow2", ... or
 * "raw"), written to `name` (at least 16 bytes). */
int imgfmt__probe(const char *path, char *name, size_t name_size);

/* NULL-terminated list of known format names. */
const char *const *imgfmt__formats(void);

#ifdef __cplusplus
}
#endif

#endif /* IMGFMT_H */
