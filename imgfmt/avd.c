/*
 * avd.c - the AVD driver: our sparse, checksummed virtual-disk format.
 *
 * The on-disk format is specified in imgfmt/FORMAT.md; read it first.  In
 * short: a 4 KiB header in cluster 0, an L1 table of L2-table offsets, and
 * L2 tables whose entries hold a cluster descriptor plus one CRC-32C per
 * 4 KiB sub-block of the cluster (or one over a compressed payload).
 *
 * Crash consistency rests on three rules (FORMAT.md, "Crash consistency"):
 *   1. a cluster that a flushed table references is never written in
 *      place: a write to it goes copy-on-write into a new cluster;
 *   2. flush orders the disk: fdatasync data, write L2 tables, fdatasync,
 *      write L1 entries, fdatasync;
 *   3. a cluster freed by a rewrite or a discard is reused only after the
 *      flush that unreferenced it has completed.
 * Clusters allocated since the last flush ("fresh") are referenced by no
 * table on disk, so they may be rewritten in place.
 *
 * Free space lives in memory only: a per-cluster reference count rebuilt
 * from the tables whenever the image is opened read-write.
 *
 * Locking: `lock` is a rwlock; reads and map take it shared, everything
 * that changes the image takes it exclusive.  Shared holders manage the L2
 * cache under `cache_lock`, and never evict a dirty table (a writer does
 * that, flushing first).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "avd.h"
#include "crc32c.h"
#include "zcache.h"

#define RC_PENDING 0xffffu /* freed, reusable after the next flush */
#define RC_MAX 0xfffeu     /* saturated: never freed again */
#define CF_FRESH 1u
#define CF_PUNCH 2u  /* freed this session: punch out at close / check */
#define CF_GAP 4u    /* a hole skipped to align whole clusters: free, kept
			for single-cluster allocations (avd_alloc_whole) */

#define AVD_MAX_ESIZE ((12u + 4u * (IMGFMT_MAX_CLUSTER / AVD_SUB) + 7u) & ~7u)

struct avd_slot {
	int64_t l1i;    /* -1: empty */
	uint64_t tick;
	int dirty;
	unsigned seq;   /* odd while a reader's cache miss refills the slot */
	uint8_t *data;  /* the table: C bytes, then `desc` */
	uint64_t *desc; /* the table's descriptors alone, 8 to a cache line:
			   random reads find them in cache far more often
			   than the 80-byte entries (avd_read_fast) */
};

struct avd {
	struct avd_header h;
	uint32_t C, cbits, nsub, esize, epl;
	uint64_t *l1;
	uint8_t *l1_bad;      /* entries found invalid on open (l1[i] = 0) */
	char l1_bad_msg[512]; /* why the first one was */
	uint32_t l1_clusters;
	uint64_t l1_dirty_lo, l1_dirty_hi;
	int32_t *slot_of;
	struct avd_slot *slots;
	uint8_t *refill;      /* C bytes: a table read aside (avd_refill_slot) */
	uint32_t nslots;
	uint64_t tick;
	pthread_rwlock_t lock;
	pthread_mutex_t cache_lock;
	int was_dirty;
	int hdr_dirty_on_disk;
	int corrupt;
	int flush_failed;
	int data_written;
	char corrupt_msg[512];

	/* Allocation state, read-write handles only. */
	uint16_t *rc;
	uint8_t *cf;
	uint64_t rc_cap;      /* clusters covered by rc/cf */
	uint64_t file_end;    /* allocation end, cluster aligned */
	uint64_t phys_end;    /* bytes the file really has: sparse new
				 clusters (FORMAT.md §4) may leave it short
				 of file_end until the next flush */
	uint64_t alloc_hint;  /* lowest cluster that may be free */
	uint64_t whole_hint;  /* lowest non-gap cluster that may be free */
	uint32_t span;        /* clusters per AVD_ALIGN bytes (1: no aligning) */
	uint64_t *pending;
	size_t npending, cap_pending;
	uint64_t *fresh;
	size_t nfresh, cap_fresh;

	/* Recently decompressed clusters (zcache.h; NULL: none). */
	struct imgfmt_zcache *zc;
};

static inline struct avd *AVD(imgfmt_image *img)
{
	return img->priv;
}

/* ---- header ---------------------------------------------------------- */

void avd_header_encode(const struct avd_header *h, uint8_t *buf)
{
	memset(buf, 0, AVD_HEADER_SIZE);
	memcpy(buf + AVD_H_MAGIC, AVD_MAGIC, AVD_MAGIC_LEN);
	avd_put32(buf + AVD_H_VERSION, AVD_VERSION);
	avd_put32(buf + AVD_H_HEADER_SIZE, AVD_HEADER_SIZE);
	avd_put64(buf + AVD_H_SIZE, h->size);
	avd_put32(buf + AVD_H_CLUSTER_BITS, h->cluster_bits);
	avd_put32(buf + AVD_H_FLAGS, h->flags);
	avd_put64(buf + AVD_H_INCOMPAT, h->incompat);
	avd_put64(buf + AVD_H_COMPAT, h->compat);
	avd_put64(buf + AVD_H_AUTOCLEAR, h->autoclear);
	memcpy(buf + AVD_H_UUID, h->uuid, 16);
	avd_put64(buf + AVD_H_L1_OFFSET, h->l1_offset);
	avd_put32(buf + AVD_H_L1_ENTRIES, h->l1_entries);
	avd_put32(buf + AVD_H_BACKING_LEN, h->backing_len);
	memcpy(buf + AVD_H_BACKING_FMT, h->backing_format,
	       strnlen(h->backing_format, 15));
	avd_put32(buf + AVD_H_DIGEST_PRESENT, h->has_digest ? 1 : 0);
	if (h->has_digest)
		memcpy(buf + AVD_H_DIGEST, h->digest, 32);
	memcpy(buf + AVD_NAME_OFFSET, h->backing_name, h->backing_len);
	avd_put32(buf + AVD_H_CRC, crc32c(0, buf, AVD_HEADER_SIZE));
}

int avd_header_decode(const char *path, const uint8_t *buf, size_t len,
		      struct avd_header *h)
{
	uint8_t tmp[AVD_HEADER_SIZE];
	uint32_t v;

	memset(h, 0, sizeof(*h));
	if (len < AVD_HEADER_SIZE)
		return imgfmt_err(EINVAL, "%s: truncated AVD header: the file "
				  "has %zu bytes, the header needs %u", path,
				  len, AVD_HEADER_SIZE);
	if (memcmp(buf, AVD_MAGIC, AVD_MAGIC_LEN) != 0)
		return imgfmt_err(EINVAL, "%s: bad AVD magic", path);
	v = avd_get32(buf + AVD_H_VERSION);
	if (v != AVD_VERSION)
		return imgfmt_err(ENOTSUP, "%s: AVD version %u is not "
				  "supported (only %u)", path, v, AVD_VERSION);
	v = avd_get32(buf + AVD_H_HEADER_SIZE);
	if (v != AVD_HEADER_SIZE)
		return imgfmt_err(EINVAL, "%s: AVD header_size %u is not %u",
				  path, v, AVD_HEADER_SIZE);
	memcpy(tmp, buf, AVD_HEADER_SIZE);
	memset(tmp + AVD_H_CRC, 0, 4);
	uint32_t want = avd_get32(buf + AVD_H_CRC);
	uint32_t got = crc32c(0, tmp, AVD_HEADER_SIZE);
	if (want != got)
		return imgfmt_err(EIO, "%s: AVD header checksum mismatch "
				  "(header_crc %08x, computed %08x)", path,
				  want, got);
	h->incompat = avd_get64(buf + AVD_H_INCOMPAT);
	h->compat = avd_get64(buf + AVD_H_COMPAT);
	h->autoclear = avd_get64(buf + AVD_H_AUTOCLEAR);
	if (h->incompat & ~AVD_INCOMPAT_KNOWN)
		return imgfmt_err(ENOTSUP, "%s: unknown AVD incompatible "
				  "feature bits %#llx", path,
				  (unsigned long long)(h->incompat &
						       ~AVD_INCOMPAT_KNOWN));
	h->size = avd_get64(buf + AVD_H_SIZE);
	if (h->size > IMGFMT_MAX_VIRTUAL_SIZE)
		return imgfmt_err(EFBIG, "%s: AVD virtual_size %llu is larger "
				  "than the supported maximum (64 TiB)", path,
				  (unsigned long long)h->size);
	h->cluster_bits = avd_get32(buf + AVD_H_CLUSTER_BITS);
	if (h->cluster_bits < 12 || h->cluster_bits > 21)
		return imgfmt_err(EINVAL, "%s: AVD cluster_bits %u is outside "
				  "12..21", path, h->cluster_bits);
	h->flags = avd_get32(buf + AVD_H_FLAGS);
	if (h->flags & ~AVD_FLAG_DIRTY)
		return imgfmt_err(EINVAL, "%s: AVD flags %#x has undefined "
				  "bits", path, h->flags);
	memcpy(h->uuid, buf + AVD_H_UUID, 16);
	h->l1_offset = avd_get64(buf + AVD_H_L1_OFFSET);
	h->l1_entries = avd_get32(buf + AVD_H_L1_ENTRIES);
	h->backing_len = avd_get32(buf + AVD_H_BACKING_LEN);
	if (h->backing_len > AVD_MAX_BACKING_NAME)
		return imgfmt_err(EINVAL, "%s: AVD backing_name_len %u is "
				  "larger than %u", path, h->backing_len,
				  AVD_MAX_BACKING_NAME);
	memcpy(h->backing_name, buf + AVD_NAME_OFFSET, h->backing_len);
	h->backing_name[h->backing_len] = '\0';
	if (strlen(h->backing_name) != h->backing_len)
		return imgfmt_err(EINVAL, "%s: AVD backing file name contains "
				  "a NUL byte", path);
	memcpy(h->backing_format, buf + AVD_H_BACKING_FMT, 16);
	if (h->backing_format[15] != '\0')
		return imgfmt_err(EINVAL, "%s: AVD backing_format is not "
				  "NUL-terminated", path);
	if (h->backing_format[0] && !h->backing_len)
		return imgfmt_err(EINVAL, "%s: AVD backing_format without a "
				  "backing file name", path);
	v = avd_get32(buf + AVD_H_DIGEST_PRESENT);
	if (v > 1)
		return imgfmt_err(EINVAL, "%s: AVD digest_present %u is not "
				  "0 or 1", path, v);
	if (v && !h->backing_len)
		return imgfmt_err(EINVAL, "%s: AVD backing digest without a "
				  "backing file", path);
	h->has_digest = (int)v;
	memcpy(h->digest, buf + AVD_H_DIGEST, 32);
	return 0;
}

int avd_file_digest(const char *path, uint8_t out[32])
{
	struct stat st;
	/* The backing file an image names: a regular file (a FIFO or
	 * /dev/zero would never end). */
	int fd = imgfmt_open_file(path, O_RDONLY, 1, &st);
	EVP_MD_CTX *ctx;
	uint8_t *buf;
	int r = 0;

	if (fd < 0)
		return fd;
	buf = malloc(1u << 20);
	ctx = EVP_MD_CTX_new();
	if (!buf || !ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
		r = imgfmt_err(ENOMEM, "out of memory");
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, buf, 1u << 20);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = imgfmt_err(errno, "%s: %s", path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		EVP_DigestUpdate(ctx, buf, (size_t)n);
	}
	unsigned int len = 32;
	if (EVP_DigestFinal_ex(ctx, out, &len) != 1)
		r = imgfmt_err(EIO, "%s: SHA-256 failed", path);
out:
	EVP_MD_CTX_free(ctx);
	free(buf);
	close(fd);
	return r;
}

int avd_header_init(const char *path, struct avd_header *h, uint64_t size,
		    uint32_t cluster_size, const uint8_t *uuid,
		    const char *backing, const char *backing_format,
		    int digest)
{
	memset(h, 0, sizeof(*h));
	if (cluster_size < IMGFMT_MIN_CLUSTER ||
	    cluster_size > IMGFMT_MAX_CLUSTER ||
	    (cluster_size & (cluster_size - 1)))
		return imgfmt_err(EINVAL, "%s: cluster size %u is not a power "
				  "of two between 4 KiB and 2 MiB", path,
				  cluster_size);
	if (size > IMGFMT_MAX_VIRTUAL_SIZE)
		return imgfmt_err(EFBIG, "%s: size %llu is larger than the "
				  "supported maximum (64 TiB)", path,
				  (unsigned long long)size);
	h->size = size;
	h->cluster_bits = (uint32_t)__builtin_ctz(cluster_size);
	uint64_t l1 = avd_l1_needed(size, cluster_size);
	if (l1 == 0)
		l1 = 1;
	if (l1 * 8 > AVD_MAX_L1_BYTES)
		return imgfmt_err(EFBIG, "%s: a %llu-byte disk needs an L1 "
				  "table of %llu bytes with %u-byte clusters "
				  "(limit %u): use larger clusters", path,
				  (unsigned long long)size,
				  (unsigned long long)l1 * 8, cluster_size,
				  AVD_MAX_L1_BYTES);
	h->l1_entries = (uint32_t)l1;
	h->l1_offset = cluster_size;
	if (uuid) {
		memcpy(h->uuid, uuid, 16);
	} else {
		if (getrandom(h->uuid, 16, 0) != 16)
			return imgfmt_err(errno ? errno : EIO, "%s: getrandom: "
					  "%s", path, strerror(errno));
		h->uuid[6] = (uint8_t)((h->uuid[6] & 0x0f) | 0x40);
		h->uuid[8] = (uint8_t)((h->uuid[8] & 0x3f) | 0x80);
	}
	if (backing) {
		size_t n = strlen(backing);
		if (n == 0 || n > AVD_MAX_BACKING_NAME)
			return imgfmt_err(EINVAL, "%s: backing file name must be "
					  "1 to %u bytes", path,
					  AVD_MAX_BACKING_NAME);
		memcpy(h->backing_name, backing, n + 1);
		h->backing_len = (uint32_t)n;
		if (backing_format) {
			if (strlen(backing_format) > 15)
				return imgfmt_err(EINVAL, "%s: backing format "
						  "name '%s' is too long",
						  path, backing_format);
			strcpy(h->backing_format, backing_format);
		}
		if (digest) {
			char *bp = imgfmt_resolve_path(path, backing);
			if (!bp)
				return imgfmt_err(ENOMEM, "out of memory");
			int r = avd_file_digest(bp, h->digest);
			free(bp);
			if (r < 0)
				return r;
			h->has_digest = 1;
		}
	} else if (digest) {
		return imgfmt_err(EINVAL, "%s: a backing digest needs a "
				  "backing file", path);
	}
	return 0;
}

/* Every write of the driver goes through here, to keep phys_end. */
static int avd_pwrite(imgfmt_image *img, const void *buf, size_t len,
		      uint64_t off)
{
	struct avd *a = AVD(img);
	int r = imgfmt_file_write(img, buf, len, off);

	if (r == 0 && off + len > a->phys_end)
		a->phys_end = off + len;
	return r;
}

/* Give the file every byte of its allocated clusters: sparse new clusters
 * end in a hole the file does not have yet.  Done before a flush syncs, so
 * no table on disk ever points past the end of the file. */
static int avd_extend(imgfmt_image *img)
{
	struct avd *a = AVD(img);

	if (img->read_only || a->phys_end >= a->file_end)
		return 0;
	if (ftruncate(img->fd, (off_t)a->file_end) < 0)
		return imgfmt_err(errno, "%s: extending the file to %llu "
				  "bytes: %s", img->path,
				  (unsigned long long)a->file_end,
				  strerror(errno));
	a->phys_end = a->file_end;
	return 0;
}

static int avd_write_header(imgfmt_image *img)
{
	uint8_t buf[AVD_HEADER_SIZE];

	avd_header_encode(&AVD(img)->h, buf);
	return avd_pwrite(img, buf, sizeof(buf), 0);
}

static int avd_sync(imgfmt_image *img)
{
	if (fdatasync(img->fd) < 0)
		return imgfmt_err(errno, "%s: fdatasync: %s", img->path,
				  strerror(errno));
	return 0;
}

/* ---- probe / create -------------------------------------------------- */

static int avd__probe(const uint8_t *head, size_t len, uint64_t file_size)
{
	(void)file_size;
	if (len >= AVD_MAGIC_LEN && memcmp(head, AVD_MAGIC, AVD_MAGIC_LEN) == 0)
		return 100;
	return 0;
}

static int avd__create(const char *path, const struct imgfmt_create_opts *o)
{
	struct avd_header *h = malloc(sizeof(*h));
	uint8_t *buf = NULL;
	int fd = -1, r;

	if (!h)
		return imgfmt_err(ENOMEM, "out of memory");
	r = avd_header_init(path, h, o->size, o->cluster_size, o->uuid,
			    o->backing_file, o->backing_format,
			    o->backing_digest);
	if (r < 0)
		goto out;
	uint32_t C = 1u << h->cluster_bits;
	uint64_t l1_clusters = ((uint64_t)h->l1_entries * 8 + C - 1) / C;
	buf = malloc(AVD_HEADER_SIZE);
	if (!buf) {
		r = imgfmt_err(ENOMEM, "out of memory");
		goto out;
	}
	avd_header_encode(h, buf);
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		r = imgfmt_err(errno, "%s: %s", path, strerror(errno));
		goto out;
	}
	/* The L1 table and the rest of cluster 0 are the file's zeros. */
	if (pwrite(fd, buf, AVD_HEADER_SIZE, 0) != AVD_HEADER_SIZE ||
	    ftruncate(fd, (off_t)((1 + l1_clusters) * C)) < 0 ||
	    fsync(fd) < 0) {
		r = imgfmt_err(errno ? errno : EIO, "%s: %s", path,
			       strerror(errno ? errno : EIO));
		close(fd);
		unlink(path);
		goto out;
	}
	close(fd);
out:
	free(buf);
	free(h);
	return r;
}

/* ---- allocation (read-write handles) --------------------------------- */

static int avd_rc_grow(struct avd *a, uint64_t clusters)
{
	if (clusters <= a->rc_cap)
		return 0;
	uint64_t cap = a->rc_cap ? a->rc_cap : 64;
	while (cap < clusters)
		cap *= 2;
	uint16_t *rc = realloc(a->rc, cap * sizeof(*rc));
	if (!rc)
		return imgfmt_err(ENOMEM, "out of memory");
	a->rc = rc;
	uint8_t *cf = realloc(a->cf, cap);
	if (!cf)
		return imgfmt_err(ENOMEM, "out of memory");
	a->cf = cf;
	memset(a->rc + a->rc_cap, 0, (cap - a->rc_cap) * sizeof(*rc));
	memset(a->cf + a->rc_cap, 0, cap - a->rc_cap);
	a->rc_cap = cap;
	return 0;
}

static int avd_push(uint64_t **arr, size_t *n, size_t *cap, uint64_t v)
{
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 64;
		uint64_t *p = realloc(*arr, nc * sizeof(*p));
		if (!p)
			return imgfmt_err(ENOMEM, "out of memory");
		*arr = p;
		*cap = nc;
	}
	(*arr)[(*n)++] = v;
	return 0;
}

/* Count a reference to every cluster that [off, off+len) touches. */
static int avd_ref(struct avd *a, uint64_t off, uint64_t len)
{
	uint64_t first = off >> a->cbits, last = (off + len - 1) >> a->cbits;
	int r = avd_rc_grow(a, last + 1);

	if (r < 0)
		return r;
	for (uint64_t c = first; c <= last; c++)
		if (a->rc[c] < RC_MAX)
			a->rc[c]++;
	return 0;
}

/* Cluster c has become free: no hint may skip it. */
static void avd_hint_lower(struct avd *a, uint64_t c)
{
	if (c < a->alloc_hint)
		a->alloc_hint = c;
	if (c < a->whole_hint && !(a->cf[c] & CF_GAP))
		a->whole_hint = c;
}

/* A cluster nothing references any more: give its space back to the
 * filesystem, which is also what tells check it is free space and not a
 * leak.  Best effort: a filesystem without hole punching just keeps it. */
static void avd_punch(imgfmt_image *img, uint64_t c, uint64_t count)
{
	struct avd *a = AVD(img);

	fallocate(img->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		  (off_t)(img->base + (c << a->cbits)),
		  (off_t)(count << a->cbits));
}

/* Return the space of clusters freed this session to the filesystem (in
 * runs: punching is a journalled operation, far too slow to do per
 * cluster as they are freed), and cut a free tail off the file.  Called
 * at close and before check, after a successful flush, when nothing on
 * disk references a free cluster. */
static void avd_punch_freed(imgfmt_image *img)
{
	struct avd *a = AVD(img);
	uint64_t end_c = a->file_end >> a->cbits, run0 = 0, runn = 0;
	uint64_t last_used = 0;

	for (uint64_t c = 0; c < end_c && c < a->rc_cap; c++) {
		int punch = (a->cf[c] & CF_PUNCH) && a->rc[c] == 0;
		a->cf[c] &= (uint8_t)~CF_PUNCH;
		if (a->rc[c] != 0)
			last_used = c;
		if (punch && runn && c == run0 + runn) {
			runn++;
			continue;
		}
		if (runn)
			avd_punch(img, run0, runn);
		runn = 0;
		if (punch) {
			run0 = c;
			runn = 1;
		}
	}
	if (runn)
		avd_punch(img, run0, runn);
	uint64_t new_end = (last_used + 1) << a->cbits;
	if (new_end < a->file_end && img->file_length == a->file_end &&
	    ftruncate(img->fd, (off_t)new_end) == 0) {
		a->file_end = new_end;
		a->phys_end = new_end;
		img->file_length = new_end;
		if (a->alloc_hint > last_used + 1)
			a->alloc_hint = last_used + 1;
		if (a->whole_hint > last_used + 1)
			a->whole_hint = last_used + 1;
		for (uint64_t c = last_used + 1; c < end_c && c < a->rc_cap;
		     c++)
			a->cf[c] &= (uint8_t)~CF_GAP;
	}
}

/* Drop a reference; clusters reaching zero wait for the next flush. */
static void avd_unref(imgfmt_image *img, uint64_t off, uint64_t len)
{
	struct avd *a = AVD(img);
	uint64_t first = off >> a->cbits, last = (off + len - 1) >> a->cbits;

	for (uint64_t c = first; c <= last && c < a->rc_cap; c++) {
		if (a->rc[c] == RC_MAX || a->rc[c] == RC_PENDING ||
		    a->rc[c] == 0)
			continue;
		if (--a->rc[c] == 0) {
			if (a->cf[c] & CF_FRESH) {
				/* Never referenced on disk: free at once. */
				a->cf[c] |= CF_PUNCH;
				avd_hint_lower(a, c);
				continue;
			}
			a->rc[c] = RC_PENDING;
			if (avd_push(&a->pending, &a->npending,
				     &a->cap_pending, c) < 0) {
				/* Out of memory: leak it rather than risk
				 * reusing it too early. */
				a->rc[c] = RC_MAX;
			}
		}
	}
}

/* Allocate `count` contiguous clusters; returns the file offset. */
static int avd_alloc(imgfmt_image *img, uint32_t count, uint64_t *out)
{
	struct avd *a = AVD(img);
	uint64_t end_c = a->file_end >> a->cbits, c;
	int r;

	if (count == 1) {
		for (c = a->alloc_hint; c < end_c; c++)
			if (a->rc[c] == 0)
				break;
		a->alloc_hint = c + 1;
	} else {
		c = end_c;
	}
	if (c + count > end_c) {
		uint64_t new_end = (c + count) << a->cbits;
		r = avd_rc_grow(a, c + count);
		if (r < 0)
			return r;
		a->file_end = new_end;
		if (img->file_length < new_end)
			img->file_length = new_end;
	}
	/* A reused cluster in a short last cluster of the file (a file not
	 * ending on a cluster boundary) extends the file when written. */
	if (img->file_length < (c + count) << a->cbits)
		img->file_length = (c + count) << a->cbits;
	for (uint32_t i = 0; i < count; i++) {
		a->rc[c + i] = 1;
		a->cf[c + i] &= (uint8_t)~CF_GAP;
		if (!(a->cf[c + i] & CF_FRESH)) {
			r = avd_push(&a->fresh, &a->nfresh, &a->cap_fresh,
				     c + i);
			if (r < 0)
				return r;
			a->cf[c + i] |= CF_FRESH;
		}
	}
	*out = c << a->cbits;
	return 0;
}

/*
 * Allocate one cluster for a whole-cluster write of virtual cluster vc
 * (FORMAT.md §4, "Aligned whole clusters"): the lowest free cluster that
 * is not an alignment gap, else the first cluster past the end of the
 * file whose index is congruent to vc modulo span; the clusters skipped
 * become gaps, free for single-cluster allocations (L2 tables, partial
 * writes).  Why: the page cache builds a large folio only at an offset
 * aligned to its size, so a 1 MiB guest write becomes one 1 MiB folio of
 * the file only if it lands at a 1 MiB aligned file offset, and random
 * 4 KiB reads of a file in large folios walk a smaller page-cache tree
 * (measured: a file written 1 MiB at a time at offsets 192 KiB off the
 * alignment reads ~7% slower).
 */
static int avd_alloc_whole(imgfmt_image *img, uint64_t vc, uint64_t *out)
{
	struct avd *a = AVD(img);
	uint64_t end_c = a->file_end >> a->cbits, c;
	int r;

	if (a->span <= 1)
		return avd_alloc(img, 1, out);
	for (c = a->whole_hint; c < end_c; c++)
		if (a->rc[c] == 0 && !(a->cf[c] & CF_GAP))
			break;
	if (c >= end_c) {
		c = avd_align_cluster(end_c, vc, a->span);
		r = avd_rc_grow(a, c + 1);
		if (r < 0)
			return r;
		for (uint64_t g = end_c; g < c; g++) {
			a->cf[g] |= CF_GAP;
			avd_hint_lower(a, g);
		}
		a->file_end = (c + 1) << a->cbits;
	}
	a->whole_hint = c + 1;
	if (img->file_length < (c + 1) << a->cbits)
		img->file_length = (c + 1) << a->cbits;
	a->rc[c] = 1;
	if (!(a->cf[c] & CF_FRESH)) {
		r = avd_push(&a->fresh, &a->nfresh, &a->cap_fresh, c);
		if (r < 0)
			return r;
		a->cf[c] |= CF_FRESH;
	}
	*out = c << a->cbits;
	return 0;
}

static int avd_is_fresh(struct avd *a, uint64_t off)
{
	uint64_t c = off >> a->cbits;
	return c < a->rc_cap && (a->cf[c] & CF_FRESH);
}

/* ---- descriptor validation ------------------------------------------- */

static uint64_t avd_file_end(imgfmt_image *img)
{
	struct avd *a = AVD(img);
	return img->read_only ? img->file_length : a->file_end;
}

/* Is [off, off+len) inside the header or the L1 table? */
static int avd_hits_meta(struct avd *a, uint64_t off, uint64_t len)
{
	uint64_t l1_end = a->h.l1_offset + (uint64_t)a->l1_clusters * a->C;

	if (off < a->C)
		return 1;
	return off < l1_end && off + len > a->h.l1_offset;
}

static int avd_check_desc(imgfmt_image *img, uint64_t vc, const uint8_t *e)
{
	struct avd *a = AVD(img);
	uint64_t d = avd_get64(e), off = AVD_DESC_OFF(d);
	uint64_t vo = vc << a->cbits, end = avd_file_end(img);
	unsigned t = AVD_DESC_TYPE(d);

	if (t == AVD_T_UNALLOC || t == AVD_T_ZERO)
		return 0;
	if (d & AVD_DESC_RESERVED)
		return imgfmt_err(EIO, "%s: L2 entry for virtual offset %llu: "
				  "reserved descriptor bits set (%#llx)",
				  img->path, (unsigned long long)vo,
				  (unsigned long long)d);
	if (t == AVD_T_DATA) {
		if (off & (a->C - 1))
			return imgfmt_err(EIO, "%s: L2 entry for virtual offset "
					  "%llu: data offset %llu is not "
					  "cluster aligned", img->path,
					  (unsigned long long)vo,
					  (unsigned long long)off);
		if (off > end || end - off < a->C)
			return imgfmt_err(EIO, "%s: L2 entry for virtual offset "
					  "%llu: data offset %llu is past the "
					  "end of the file", img->path,
					  (unsigned long long)vo,
					  (unsigned long long)off);
		if (avd_hits_meta(a, off, a->C))
			return imgfmt_err(EIO, "%s: L2 entry for virtual offset "
					  "%llu: data offset %llu overlaps the "
					  "header or L1 table", img->path,
					  (unsigned long long)vo,
					  (unsigned long long)off);
		return 0;
	}
	uint32_t len = avd_get32(e + 8);
	if (len == 0 || len > a->C)
		return imgfmt_err(EIO, "%s: L2 entry for virtual offset %llu: "
				  "compressed length %u is not in 1..%u",
				  img->path, (unsigned long long)vo, len, a->C);
	if (off > end || end - off < len)
		return imgfmt_err(EIO, "%s: L2 entry for virtual offset %llu: "
				  "compressed data at %llu+%u overruns the "
				  "file", img->path, (unsigned long long)vo,
				  (unsigned long long)off, len);
	if (avd_hits_meta(a, off, len))
		return imgfmt_err(EIO, "%s: L2 entry for virtual offset %llu: "
				  "compressed data at %llu overlaps the header "
				  "or L1 table", img->path,
				  (unsigned long long)vo,
				  (unsigned long long)off);
	return 0;
}

/* ---- L2 cache -------------------------------------------------------- */

/* Rebuild a slot's descriptor mirror from its table. */
static void avd_slot_mirror(struct avd *a, struct avd_slot *s)
{
	for (uint32_t i = 0; i < a->epl; i++)
		__atomic_store_n(&s->desc[i], avd_get64(s->data + i * a->esize),
				 __ATOMIC_RELAXED);
}

static int avd_load_table(imgfmt_image *img, uint64_t l1i, uint8_t *buf)
{
	return imgfmt_file_read(img, buf, AVD(img)->C, AVD(img)->l1[l1i],
				"L2 table");
}

/*
 * A reader's cache miss refills slot s with table l1i while lock-free
 * readers may still be copying from it (they then see the sequence count
 * move and discard what they copied).  Both sides of that overlap must
 * be atomic for it not to be a data race (C11; ThreadSanitizer reports
 * it otherwise): so the table is read aside (a pread cannot store
 * atomically) and put into the slot a 32-bit word at a time with
 * relaxed atomic stores, the width the readers load.  A refill happens
 * once per table brought in; the extra copy is C bytes.
 */
static int avd_refill_slot(imgfmt_image *img, uint64_t l1i,
			   struct avd_slot *s)
{
	struct avd *a = AVD(img);
	uint32_t *dst = (uint32_t *)(void *)s->data;
	int r = avd_load_table(img, l1i, a->refill);

	if (r < 0)
		return r;
	for (uint32_t i = 0; i < a->C / 4; i++) {
		uint32_t w;
		memcpy(&w, a->refill + 4 * (size_t)i, 4);
		__atomic_store_n(&dst[i], w, __ATOMIC_RELAXED);
	}
	return 0;
}

static int avd_write_slot(imgfmt_image *img, struct avd_slot *s)
{
	struct avd *a = AVD(img);
	int r = avd_pwrite(img, s->data, a->C, a->l1[s->l1i]);

	if (r == 0)
		s->dirty = 0;
	return r;
}

static void avd_l1_mark(struct avd *a, uint64_t i)
{
	if (a->l1_dirty_lo >= a->l1_dirty_hi) {
		a->l1_dirty_lo = i;
		a->l1_dirty_hi = i + 1;
		return;
	}
	if (i < a->l1_dirty_lo)
		a->l1_dirty_lo = i;
	if (i + 1 > a->l1_dirty_hi)
		a->l1_dirty_hi = i + 1;
}

static int avd_flush_locked(imgfmt_image *img);

/* Reader side: copy entry `vc` into `ent` (zeros if no table).  Called
 * with the lock shared; never evicts a dirty table. */
/* Copy what a read of sub-blocks [s0, s1] needs from an entry: the
 * descriptor, aux, crc[0] (compressed clusters) and crc[s0..s1].  Copying
 * only that keeps a random 4 KiB read to the one or two cache lines of
 * the entry it uses. */
static inline void avd_entry_copy(struct avd *a, uint8_t *ent,
				  const uint8_t *src, uint32_t s0,
				  uint32_t s1)
{
	memcpy(ent, src, 16);
	if (s1 > 0)
		memcpy(ent + 12 + 4 * s0, src + 12 + 4 * s0,
		       4 * (size_t)(s1 - s0 + 1));
	(void)a;
}

/* avd_entry_copy for the lock-free hit: the words are read atomically
 * because a reader's cache miss may be refilling the slot meanwhile (the
 * sequence count then makes the caller discard what it read). */
static inline void avd_entry_load(struct avd *a, uint8_t *ent,
				  const uint8_t *src, uint32_t s0, uint32_t s1)
{
	const uint32_t *w = (const uint32_t *)(const void *)src;
	uint32_t v[4];

	for (int i = 0; i < 4; i++)
		v[i] = __atomic_load_n(&w[i], __ATOMIC_RELAXED);
	memcpy(ent, v, 16);
	for (uint32_t sb = s0; s1 > 0 && sb <= s1; sb++) {
		uint32_t c = __atomic_load_n(&w[3 + sb], __ATOMIC_RELAXED);
		memcpy(ent + 12 + 4 * sb, &c, 4);
	}
	(void)a;
}

static int avd_entry_read(imgfmt_image *img, uint64_t vc, uint8_t *ent,
			  uint32_t s0, uint32_t s1)
{
	struct avd *a = AVD(img);
	uint64_t l1i = vc / a->epl, l2i = vc % a->epl;
	int r = 0;

	/* A hit needs no lock but the shared one: readers change the cache
	 * only to refill a slot on a miss (under cache_lock), and they mark
	 * that with the slot's sequence count, which a hit checks around its
	 * copy, falling back to the locked path if the slot moved. */
	if (l1i < a->h.l1_entries && !a->l1_bad[l1i] && a->l1[l1i] != 0) {
		int32_t si = __atomic_load_n(&a->slot_of[l1i], __ATOMIC_ACQUIRE);
		if (si >= 0) {
			struct avd_slot *s = &a->slots[si];
			unsigned q = __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE);
			if (!(q & 1) && __atomic_load_n(&s->l1i,
							__ATOMIC_RELAXED) ==
						(int64_t)l1i) {
				avd_entry_load(a, ent,
					       s->data + l2i * a->esize, s0,
					       s1);
				__atomic_thread_fence(__ATOMIC_ACQUIRE);
				if (__atomic_load_n(&s->seq, __ATOMIC_RELAXED) ==
				    q) {
					__atomic_store_n(
						&s->tick,
						__atomic_load_n(&a->tick,
								__ATOMIC_RELAXED),
						__ATOMIC_RELAXED);
					return 0;
				}
			}
		}
	}

	pthread_mutex_lock(&a->cache_lock);
	if (l1i < a->h.l1_entries && a->l1_bad[l1i]) {
		r = imgfmt_err(EIO, "%s: virtual offset %llu: L1 entry %llu "
			       "is invalid (%s); run 'img check --repair'",
			       img->path,
			       (unsigned long long)(vc << a->cbits),
			       (unsigned long long)l1i, a->l1_bad_msg);
		goto out;
	}
	if (l1i >= a->h.l1_entries || a->l1[l1i] == 0) {
		memset(ent, 0, a->esize);
		goto out;
	}
	int32_t si = a->slot_of[l1i];
	if (si >= 0) {
		struct avd_slot *s = &a->slots[si];
		__atomic_store_n(&s->tick, __atomic_add_fetch(&a->tick, 1,
							     __ATOMIC_RELAXED),
				 __ATOMIC_RELAXED);
		avd_entry_copy(a, ent, s->data + l2i * a->esize, s0, s1);
		goto out;
	}
	struct avd_slot *victim = NULL;
	uint64_t vtick = 0;
	for (uint32_t i = 0; i < a->nslots; i++) {
		struct avd_slot *s = &a->slots[i];
		uint64_t t = __atomic_load_n(&s->tick, __ATOMIC_RELAXED);
		if (s->dirty)
			continue;
		if (!victim || s->l1i < 0 ||
		    (victim->l1i >= 0 && t < vtick)) {
			victim = s;
			vtick = t;
		}
		if (s->l1i < 0)
			break;
	}
	if (!victim) {
		/* Everything cached is dirty: read the one entry; the table
		 * on disk is current because it is not in the cache. */
		r = imgfmt_file_read(img, ent, a->esize,
				     a->l1[l1i] + l2i * a->esize, "L2 entry");
		goto out;
	}
	/* Refill the slot inside an odd sequence count (see above). */
	__atomic_store_n(&victim->seq, victim->seq + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	if (victim->l1i >= 0)
		__atomic_store_n(&a->slot_of[victim->l1i], -1,
				 __ATOMIC_RELAXED);
	__atomic_store_n(&victim->l1i, -1, __ATOMIC_RELAXED);
	r = avd_refill_slot(img, l1i, victim);
	if (r == 0) {
		avd_slot_mirror(a, victim);
		__atomic_store_n(&victim->l1i, (int64_t)l1i, __ATOMIC_RELAXED);
		__atomic_store_n(&victim->tick,
				 __atomic_add_fetch(&a->tick, 1,
						    __ATOMIC_RELAXED),
				 __ATOMIC_RELAXED);
		__atomic_store_n(&a->slot_of[l1i],
				 (int32_t)(victim - a->slots),
				 __ATOMIC_RELEASE);
		avd_entry_copy(a, ent, victim->data + l2i * a->esize, s0,
			       s1);
	}
	__atomic_store_n(&victim->seq, victim->seq + 1, __ATOMIC_RELEASE);
out:
	pthread_mutex_unlock(&a->cache_lock);
	return r;
}

/* Writer side (lock held exclusively): a pointer to entry `vc` in the
 * cache, creating the L2 table if `create`.  *ent is NULL when there is no
 * table and create is 0.  The slot is marked dirty by the caller. */
static int avd_entry_ptr(imgfmt_image *img, uint64_t vc, int create,
			 uint8_t **ent, struct avd_slot **slot)
{
	struct avd *a = AVD(img);
	uint64_t l1i = vc / a->epl, l2i = vc % a->epl;
	int r, fresh_table = 0;

	*ent = NULL;
	*slot = NULL;
	if (a->l1[l1i] == 0 && !create)
		return 0;
	int32_t si = a->slot_of[l1i];
	struct avd_slot *s;
	if (si >= 0) {
		s = &a->slots[si];
		goto found;
	}
	s = NULL;
	for (uint32_t i = 0; i < a->nslots; i++) {
		struct avd_slot *t = &a->slots[i];
		if (!s || t->l1i < 0 || (s->l1i >= 0 && t->tick < s->tick))
			s = t;
		if (t->l1i < 0)
			break;
	}
	if (s->dirty) {
		r = avd_flush_locked(img);
		if (r < 0)
			return r;
	}
	if (s->l1i >= 0)
		a->slot_of[s->l1i] = -1;
	s->l1i = -1;
	if (a->l1[l1i] == 0) {
		uint64_t off;
		r = avd_alloc(img, 1, &off);
		if (r < 0)
			return r;
		memset(s->data, 0, a->C);
		memset(s->desc, 0, (size_t)a->epl * 8);
		a->l1[l1i] = off;
		avd_l1_mark(a, l1i);
		fresh_table = 1;
	} else {
		r = avd_load_table(img, l1i, s->data);
		if (r < 0)
			return r;
		avd_slot_mirror(a, s);
	}
	s->l1i = (int64_t)l1i;
	s->dirty = fresh_table;
	a->slot_of[l1i] = (int32_t)(s - a->slots);
found:
	s->tick = ++a->tick;
	*ent = s->data + l2i * a->esize;
	*slot = s;
	return 0;
}

/* ---- flush ----------------------------------------------------------- */

static int avd_flush_locked(imgfmt_image *img)
{
	struct avd *a = AVD(img);
	int meta = a->l1_dirty_lo < a->l1_dirty_hi, r;

	for (uint32_t i = 0; i < a->nslots && !meta; i++)
		meta = a->slots[i].dirty;
	if (!meta && !a->data_written && a->npending == 0 && a->nfresh == 0)
		return 0;
	a->flush_failed = 1;
	if (meta && !a->hdr_dirty_on_disk) {
		a->h.flags |= AVD_FLAG_DIRTY;
		r = avd_write_header(img);
		if (r < 0)
			return r;
		a->hdr_dirty_on_disk = 1;
	}
	/* 1. New L2 tables go out with the data: nothing on disk points at
	 * a fresh cluster yet, so writing them early is safe, and it saves
	 * a sync.  Then data and new tables become durable before anything
	 * refers to them. */
	for (uint32_t i = 0; meta && i < a->nslots; i++) {
		struct avd_slot *sl = &a->slots[i];
		if (sl->dirty && avd_is_fresh(a, a->l1[sl->l1i]) &&
		    (r = avd_write_slot(img, sl)) < 0)
			return r;
	}
	r = avd_extend(img);
	if (r == 0)
		r = avd_sync(img);
	if (r < 0)
		return r;
	if (meta) {
		/* 2. Tables already referenced on disk (in place) and the L1
		 * entries: everything they point at is durable now. */
		for (uint32_t i = 0; i < a->nslots; i++) {
			if (!a->slots[i].dirty)
				continue;
			r = avd_write_slot(img, &a->slots[i]);
			if (r < 0)
				return r;
		}
		if (a->l1_dirty_lo < a->l1_dirty_hi) {
			uint64_t n = a->l1_dirty_hi - a->l1_dirty_lo;
			uint8_t *buf = malloc(n * 8);
			if (!buf)
				return imgfmt_err(ENOMEM, "out of memory");
			for (uint64_t i = 0; i < n; i++)
				avd_put64(buf + i * 8, a->l1[a->l1_dirty_lo + i]);
			r = avd_pwrite(img, buf, n * 8, a->h.l1_offset +
					      a->l1_dirty_lo * 8);
			free(buf);
			if (r < 0)
				return r;
			a->l1_dirty_lo = a->l1_dirty_hi = 0;
		}
		r = avd_sync(img);
		if (r < 0)
			return r;
	}
	/* 3. Now nothing on disk points at the clusters freed since the last
	 * flush, and everything allocated since is referenced durably. */
	for (size_t i = 0; i < a->npending; i++) {
		uint64_t c = a->pending[i];
		if (a->rc[c] != RC_PENDING)
			continue;
		a->rc[c] = 0;
		a->cf[c] |= CF_PUNCH;
		avd_hint_lower(a, c);
	}
	a->npending = 0;
	for (size_t i = 0; i < a->nfresh; i++)
		a->cf[a->fresh[i]] &= (uint8_t)~CF_FRESH;
	a->nfresh = 0;
	a->data_written = 0;
	a->flush_failed = 0;
	return 0;
}

static int avd__flush(imgfmt_image *img)
{
	struct avd *a = AVD(img);

	pthread_rwlock_wrlock(&a->lock);
	int r = avd_flush_locked(img);
	pthread_rwlock_unlock(&a->lock);
	return r;
}

/* ---- reading --------------------------------------------------------- */

/* Whether reads check data clusters' CRC32C (see
 * IMGFMT_OPEN_NO_DATA_CHECKSUMS). */
static int avd_check_data(const imgfmt_image *img)
{
	return !(img->flags & IMGFMT_OPEN_NO_DATA_CHECKSUMS);
}

static int avd_crc_error(imgfmt_image *img, uint64_t vc, uint64_t foff,
			 uint32_t sub)
{
	struct avd *a = AVD(img);
	return imgfmt_err(EIO, "%s: checksum mismatch in cluster at virtual "
			  "offset %llu (file offset %llu, 4 KiB block %u)",
			  img->path, (unsigned long long)(vc << a->cbits),
			  (unsigned long long)foff, sub);
}

/* Read and verify sub-blocks [s0, s1] of a data cluster into buf. */
static int avd_read_subs(imgfmt_image *img, uint64_t vc, const uint8_t *e,
			 uint32_t s0, uint32_t s1, uint8_t *buf)
{
	struct avd *a = AVD(img);
	uint64_t foff = AVD_DESC_OFF(avd_get64(e));
	uint64_t start = foff + (uint64_t)s0 * AVD_SUB;
	size_t span = (size_t)(s1 - s0 + 1) * AVD_SUB, have = span;
	int r = 0;

	/* A sparse new cluster's tail past the end of the file is a hole
	 * the next flush gives the file (FORMAT.md §4): zeros. */
	if (!img->read_only && start + span > a->phys_end) {
		have = start < a->phys_end ? (size_t)(a->phys_end - start) : 0;
		memset(buf + have, 0, span - have);
	}
	if (have)
		r = imgfmt_file_read(img, buf, have, start, "data cluster");
	if (r < 0)
		return r;
	for (uint32_t s = s0; s <= s1 && avd_check_data(img); s++)
		if (crc32c(0, buf + (size_t)(s - s0) * AVD_SUB, AVD_SUB) !=
		    avd_get32(e + 12 + 4 * s))
			return avd_crc_error(img, vc, foff, s);
	return 0;
}

/* Decompress a compressed cluster into out (C bytes), its payload's
 * checksum verified first.  The compressed bytes go to this thread's
 * scratch buffer and through this thread's zstd context (zcache.h):
 * neither is allocated per cluster. */
static int avd_read_comp(imgfmt_image *img, uint64_t vc, const uint8_t *e,
			 uint8_t *out)
{
	struct avd *a = AVD(img);
	uint64_t foff = AVD_DESC_OFF(avd_get64(e));
	uint32_t len = avd_get32(e + 8);
	uint8_t *src = imgfmt_zscratch(0, len);
	ZSTD_DCtx *dctx = imgfmt_zstd_dctx();
	int r;

	if (!src || !dctx)
		return imgfmt_err(ENOMEM, "out of memory");
	r = imgfmt_file_read(img, src, len, foff, "compressed cluster");
	if (r < 0)
		return r;
	/* Unchecked (avd_check_data), hostile bytes reach zstd, whose
	 * decoder is built to take them; a wrong result is then the
	 * caller's hash mismatch. */
	if (avd_check_data(img) && crc32c(0, src, len) != avd_get32(e + 12))
		return imgfmt_err(EIO, "%s: checksum mismatch in compressed "
				  "cluster at virtual offset %llu (file offset "
				  "%llu)", img->path,
				  (unsigned long long)(vc << a->cbits),
				  (unsigned long long)foff);
	size_t n = ZSTD_decompressDCtx(dctx, out, a->C, src, len);
	if (ZSTD_isError(n) || n != a->C)
		return imgfmt_err(EIO, "%s: compressed cluster at virtual "
				  "offset %llu (file offset %llu) does not "
				  "decompress to %u bytes: %s", img->path,
				  (unsigned long long)(vc << a->cbits),
				  (unsigned long long)foff, a->C,
				  ZSTD_isError(n) ? ZSTD_getErrorName(n)
						  : "wrong length");
	return 0;
}

struct avd_zfill {
	imgfmt_image *img;
	uint64_t vc;
	const uint8_t *e;
};

static int avd_zfill(void *arg, uint8_t *out)
{
	struct avd_zfill *f = arg;

	return avd_read_comp(f->img, f->vc, f->e, out);
}

/* Read part of one cluster, given its entry. */
static int avd_read_piece(imgfmt_image *img, uint64_t vc, const uint8_t *e,
			  uint32_t o, uint32_t len, uint8_t *dst)
{
	struct avd *a = AVD(img);
	uint64_t d = avd_get64(e);
	int r = avd_check_desc(img, vc, e);

	if (r < 0)
		return r;
	switch (AVD_DESC_TYPE(d)) {
	case AVD_T_UNALLOC:
		return imgfmt_backing_read(img, dst, len,
					   (vc << a->cbits) + o);
	case AVD_T_ZERO:
		memset(dst, 0, len);
		return 0;
	case AVD_T_DATA: {
		uint32_t s0 = o / AVD_SUB, s1 = (o + len - 1) / AVD_SUB;
		if (o % AVD_SUB == 0 && len % AVD_SUB == 0)
			return avd_read_subs(img, vc, e, s0, s1, dst);
		uint8_t *b = malloc((size_t)(s1 - s0 + 1) * AVD_SUB);
		if (!b)
			return imgfmt_err(ENOMEM, "out of memory");
		r = avd_read_subs(img, vc, e, s0, s1, b);
		if (r == 0)
			memcpy(dst, b + (o - s0 * AVD_SUB), len);
		free(b);
		return r;
	}
	default: {
		/* Through the cache, keyed on the whole descriptor: offset,
		 * length and CRC-32C of the payload (why that is enough:
		 * imgfmt_zcache_read).  A cached cluster had its CRC checked
		 * and decompressed to exactly C bytes when it was filled; a
		 * cluster that fails either is never cached. */
		struct avd_zfill f = { img, vc, e };
		struct imgfmt_zkey k = { AVD_DESC_OFF(d), avd_get32(e + 8),
					 avd_get32(e + 12) };
		return imgfmt_zcache_read(a->zc, a->C, &k, o, len, dst,
					  avd_zfill, &f);
	}
	}
}

/*
 * A read that spans clusters lying back to back in the file (what 1 MiB
 * sequential writes leave, see avd_alloc_whole) is done with one pread
 * for the whole run, then every cluster's sub-blocks are verified: one
 * system call per run instead of one per cluster.  Only whole, aligned
 * 4 KiB blocks of data clusters join a run.
 */
#define AVD_RRUN_BYTES 8192 /* room for entries: >= 3 even at 2 MiB */
#define AVD_RRUN_FAST_SUBS 16 /* avd_read_fast: reads up to 64 KiB */

struct avd_rrun {
	uint64_t vc0, foff;
	uint8_t *dst;
	size_t len;
	uint32_t n, o0;
	uint8_t ents[AVD_RRUN_BYTES];
};

static int avd_rrun_flush(imgfmt_image *img, struct avd_rrun *rr)
{
	struct avd *a = AVD(img);
	size_t left = rr->len;
	uint8_t *p = rr->dst;
	int r = 0, direct;

	if (rr->n == 0)
		return 0;
	/* A sparse cluster's hole past the end of the file takes the
	 * careful path (avd_read_subs zero-fills it). */
	direct = img->read_only || rr->foff + rr->len <= a->phys_end;
	if (direct)
		r = imgfmt_file_read(img, rr->dst, rr->len, rr->foff,
				     "data cluster");
	for (uint32_t i = 0; r == 0 && i < rr->n; i++) {
		const uint8_t *e = rr->ents + (size_t)i * a->esize;
		uint32_t o = i == 0 ? rr->o0 : 0;
		uint32_t n = a->C - o;
		if (n > left)
			n = (uint32_t)left;
		uint32_t s0 = o / AVD_SUB, s1 = (o + n - 1) / AVD_SUB;
		if (!direct) {
			r = avd_read_subs(img, rr->vc0 + i, e, s0, s1, p);
		} else if (avd_check_data(img)) {
			for (uint32_t sb = s0; sb <= s1; sb++)
				if (crc32c(0, p + (size_t)(sb - s0) * AVD_SUB,
					   AVD_SUB) !=
				    avd_get32(e + 12 + 4 * sb)) {
					r = avd_crc_error(img, rr->vc0 + i,
							  AVD_DESC_OFF(
								  avd_get64(e)),
							  sb);
					break;
				}
		}
		p += n;
		left -= n;
	}
	rr->n = 0;
	rr->len = 0;
	return r;
}

/*
 * The common read on a path of its own: whole 4 KiB blocks inside one
 * data cluster whose table is cached.  The descriptor comes from the
 * slot's mirror (likely in the CPU cache where the 80-byte entry is not),
 * the entry's checksums are prefetched, and only read after the data's
 * pread, so their cache miss overlaps the system call.  The entry itself
 * cannot change while the caller holds the lock shared (only writers
 * change entries); a reader's cache miss may move the table out of the
 * slot meanwhile, which the sequence count tells, and then the checksums
 * come from the locked path.  Returns 1 where the general path must do
 * the read.
 */
static int avd_read_fast(imgfmt_image *img, uint8_t *dst, uint32_t len,
			 uint64_t off)
{
	struct avd *a = AVD(img);
	uint64_t vc = off >> a->cbits;
	uint32_t o = (uint32_t)(off & (a->C - 1));
	uint64_t l1i = vc / a->epl, l2i = vc % a->epl;
	uint8_t ent[AVD_MAX_ESIZE];
	uint32_t crc[AVD_RRUN_FAST_SUBS];
	int r;

	if (o % AVD_SUB || len % AVD_SUB || len > AVD_RRUN_FAST_SUBS * AVD_SUB ||
	    o + len > a->C || l1i >= a->h.l1_entries || a->l1_bad[l1i] ||
	    a->l1[l1i] == 0)
		return 1;
	int32_t si = __atomic_load_n(&a->slot_of[l1i], __ATOMIC_ACQUIRE);
	if (si < 0)
		return 1;
	struct avd_slot *s = &a->slots[si];
	unsigned q = __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE);
	if ((q & 1) ||
	    __atomic_load_n(&s->l1i, __ATOMIC_RELAXED) != (int64_t)l1i)
		return 1;
	uint64_t d = __atomic_load_n(&s->desc[l2i], __ATOMIC_RELAXED);
	const uint8_t *e = s->data + l2i * a->esize;
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	if (__atomic_load_n(&s->seq, __ATOMIC_RELAXED) != q ||
	    AVD_DESC_TYPE(d) != AVD_T_DATA)
		return 1;
	uint32_t s0 = o / AVD_SUB, s1 = (o + len - 1) / AVD_SUB;
	__builtin_prefetch(e + 12 + 4 * s0);
	__builtin_prefetch(e + 12 + 4 * s1);
	memset(ent, 0, 16);
	avd_put64(ent, d);
	r = avd_check_desc(img, vc, ent);
	if (r < 0)
		return r;
	uint64_t foff = AVD_DESC_OFF(d) + (uint64_t)s0 * AVD_SUB;
	if (!img->read_only && foff + len > a->phys_end)
		return 1; /* a sparse cluster's hole: avd_read_subs */
	r = imgfmt_file_read(img, dst, len, foff, "data cluster");
	if (r < 0 || !avd_check_data(img))
		return r;
	/* The checksums, from the same slot if the table is still there. */
	q = __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE);
	int moved = (q & 1) || __atomic_load_n(&s->l1i, __ATOMIC_RELAXED) !=
				       (int64_t)l1i;
	if (!moved) {
		const uint32_t *w = (const uint32_t *)(const void *)(e + 12);
		for (uint32_t sb = s0; sb <= s1; sb++)
			crc[sb - s0] = le32toh(__atomic_load_n(&w[sb],
							      __ATOMIC_RELAXED));
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		moved = __atomic_load_n(&s->seq, __ATOMIC_RELAXED) != q;
	}
	if (moved) {
		r = avd_entry_read(img, vc, ent, s0, s1);
		if (r < 0)
			return r;
		for (uint32_t sb = s0; sb <= s1; sb++)
			crc[sb - s0] = avd_get32(ent + 12 + 4 * sb);
	} else {
		__atomic_store_n(&s->tick, __atomic_load_n(&a->tick,
							   __ATOMIC_RELAXED),
				 __ATOMIC_RELAXED);
	}
	for (uint32_t sb = s0; sb <= s1; sb++)
		if (crc32c(0, dst + (size_t)(sb - s0) * AVD_SUB, AVD_SUB) !=
		    crc[sb - s0])
			return avd_crc_error(img, vc, AVD_DESC_OFF(d), sb);
	return 0;
}

static int avd__pread(imgfmt_image *img, void *buf, size_t len, uint64_t off)
{
	struct avd *a = AVD(img);
	uint8_t ent[AVD_MAX_ESIZE];
	struct avd_rrun *rr = NULL;
	uint8_t *p = buf;
	int r = 0;

	pthread_rwlock_rdlock(&a->lock);
	if (len <= AVD_RRUN_FAST_SUBS * AVD_SUB) {
		r = avd_read_fast(img, p, (uint32_t)len, off);
		if (r <= 0) {
			pthread_rwlock_unlock(&a->lock);
			return r;
		}
		r = 0;
	}
	while (len > 0) {
		uint64_t vc = off >> a->cbits;
		uint32_t o = (uint32_t)(off & (a->C - 1));
		uint32_t n = a->C - o;
		if (n > len)
			n = (uint32_t)len;
		r = avd_entry_read(img, vc, ent, o / AVD_SUB,
				   (o + n - 1) / AVD_SUB);
		if (r < 0)
			break;
		uint64_t d = avd_get64(ent);
		if (n < len && !rr && AVD_DESC_TYPE(d) == AVD_T_DATA &&
		    (rr = malloc(sizeof(*rr))) != NULL) {
			rr->n = 0; /* (no memory: read cluster by cluster) */
			rr->len = 0;
		}
		if (rr && AVD_DESC_TYPE(d) == AVD_T_DATA &&
		    o % AVD_SUB == 0 && n % AVD_SUB == 0 &&
		    (r = avd_check_desc(img, vc, ent)) == 0) {
			uint64_t foff = AVD_DESC_OFF(d) + o;
			if (rr->n && (rr->foff + rr->len != foff ||
				      (rr->n + 1) * a->esize >
					      AVD_RRUN_BYTES))
				r = avd_rrun_flush(img, rr);
			if (r < 0)
				break;
			if (rr->n == 0) {
				rr->vc0 = vc;
				rr->foff = foff;
				rr->dst = p;
				rr->o0 = o;
			}
			memcpy(rr->ents + (size_t)rr->n * a->esize, ent,
			       a->esize);
			rr->n++;
			rr->len += n;
		} else if (r == 0) {
			if (rr)
				r = avd_rrun_flush(img, rr);
			if (r == 0)
				r = avd_read_piece(img, vc, ent, o, n, p);
		}
		if (r < 0)
			break;
		p += n;
		off += n;
		len -= n;
	}
	if (rr) {
		int fr = avd_rrun_flush(img, rr);
		if (r == 0)
			r = fr;
		free(rr);
	}
	pthread_rwlock_unlock(&a->lock);
	return r;
}

/* ---- writing --------------------------------------------------------- */

static int avd_writable(imgfmt_image *img)
{
	struct avd *a = AVD(img);

	if (a->corrupt)
		return imgfmt_err(EIO, "%s: refusing to write: %s (run 'img "
				  "check --repair')", img->path,
				  a->corrupt_msg);
	return 0;
}

static void avd_set_crcs(struct avd *a, uint8_t *e, const uint8_t *data,
			 uint32_t s0, uint32_t s1)
{
	for (uint32_t s = s0; s <= s1; s++)
		avd_put32(e + 12 + 4 * s,
			  crc32c(0, data + (size_t)(s - s0) * AVD_SUB,
				 AVD_SUB));
	(void)a;
}

/* Replace the cluster's descriptor, releasing what the old one held.
 * `e` is an entry of `slot`'s table (whose mirror follows). */
static void avd_set_entry(imgfmt_image *img, struct avd_slot *slot,
			  uint8_t *e, uint64_t desc, uint32_t aux)
{
	struct avd *a = AVD(img);
	uint64_t old = avd_get64(e);

	switch (AVD_DESC_TYPE(old)) {
	case AVD_T_DATA:
		avd_unref(img, AVD_DESC_OFF(old), a->C);
		break;
	case AVD_T_COMP:
		avd_unref(img, AVD_DESC_OFF(old), avd_get32(e + 8));
		break;
	}
	memset(e, 0, a->esize);
	avd_put64(e, desc);
	avd_put32(e + 8, aux);
	slot->desc[(size_t)(e - slot->data) / a->esize] = desc;
}

/*
 * A run of whole clusters of one pwrite that land in consecutive new
 * clusters of the file, written with one pwrite.  Besides saving system
 * calls this matters for reads: the page cache keeps large writes in
 * large folios, and random 4 KiB reads of a file written 64 KiB at a time
 * were measured ~35% slower than of the same file written 1 MiB at a
 * time.  The entries are only pointed at the new clusters once the data
 * is written; all of them are in one L2 table (the run is written before
 * another table is looked up, so the slot cannot be evicted under it).
 */
#define AVD_RUN_MAX 128

struct avd_run {
	uint64_t foff, l1i;
	const uint8_t *src;
	size_t len;
	uint32_t n;
	struct avd_slot *slot;
	uint8_t *ents[AVD_RUN_MAX];
};

static int avd_run_flush(imgfmt_image *img, struct avd_run *run)
{
	struct avd *a = AVD(img);
	int r;

	if (!run || run->n == 0)
		return 0;
	r = avd_pwrite(img, run->src, run->len, run->foff);
	for (uint32_t i = 0; i < run->n; i++) {
		uint64_t noff = run->foff + ((uint64_t)i << a->cbits);
		if (r < 0) {
			avd_unref(img, noff, a->C);
			continue;
		}
		avd_set_entry(img, run->slot, run->ents[i],
			      AVD_DESC(AVD_T_DATA, noff), 0);
		avd_set_crcs(a, run->ents[i],
			     run->src + ((size_t)i << a->cbits), 0,
			     a->nsub - 1);
	}
	run->slot->dirty = 1;
	run->n = 0;
	run->len = 0;
	return r;
}

/* CRC-32C of a 4 KiB block of zeros: what a sparse new cluster's entry
 * stores for the sub-blocks it leaves as a hole. */
#define AVD_ZERO_SUB_CRC 0x98f94189u

/* Does a partial write into a cluster of type `t` have nothing to copy
 * into the rest of the new cluster (it reads as zeros)? */
static int avd_nothing_to_copy(imgfmt_image *img, uint64_t vc, unsigned t)
{
	if (t == AVD_T_ZERO)
		return 1;
	return t == AVD_T_UNALLOC &&
	       (!img->backing ||
		(vc << AVD(img)->cbits) >= img->backing->virtual_size);
}

/* Store a partial write into the new cluster `noff`, which lies past the
 * end of the file: write only the sub-blocks it touches and leave the rest
 * a hole (FORMAT.md §4, "Sparse new clusters"). */
static int avd_write_sparse(imgfmt_image *img, struct avd_slot *slot,
			    uint8_t *e, uint64_t noff,
			    uint32_t o, uint32_t len, const uint8_t *src)
{
	struct avd *a = AVD(img);
	uint32_t s0 = o / AVD_SUB, s1 = (o + len - 1) / AVD_SUB;
	size_t span = (size_t)(s1 - s0 + 1) * AVD_SUB;
	const uint8_t *data = src;
	uint8_t *b = NULL;
	int r;

	if (o % AVD_SUB || len % AVD_SUB) {
		b = calloc(1, span);
		if (!b) {
			avd_unref(img, noff, a->C);
			return imgfmt_err(ENOMEM, "out of memory");
		}
		memcpy(b + (o - s0 * AVD_SUB), src, len);
		data = b;
	}
	r = avd_pwrite(img, data, span, noff + (uint64_t)s0 * AVD_SUB);
	if (r < 0) {
		avd_unref(img, noff, a->C);
		free(b);
		return r;
	}
	avd_set_entry(img, slot, e, AVD_DESC(AVD_T_DATA, noff), 0);
	for (uint32_t s = 0; s < a->nsub; s++)
		avd_put32(e + 12 + 4 * s, AVD_ZERO_SUB_CRC);
	avd_set_crcs(a, e, data, s0, s1);
	free(b);
	return 0;
}

/* Write `len` bytes at offset `o` of cluster `vc` (lock held exclusive).
 * With `run`, a whole-cluster write may be queued in it (see above). */
static int avd_write_piece(imgfmt_image *img, uint64_t vc, uint32_t o,
			   uint32_t len, const uint8_t *src,
			   struct avd_run *run)
{
	struct avd *a = AVD(img);
	struct avd_slot *slot;
	uint8_t *e, *cbuf = NULL;
	const uint8_t *content;
	int r;

	if (run && run->n && vc / a->epl != run->l1i &&
	    (r = avd_run_flush(img, run)) < 0)
		return r;
	r = avd_entry_ptr(img, vc, 1, &e, &slot);
	if (r < 0)
		return r;
	r = avd_check_desc(img, vc, e);
	if (r < 0)
		return r;
	uint64_t d = avd_get64(e);
	unsigned t = AVD_DESC_TYPE(d);
	a->data_written = 1;
	int queue = run && len == a->C &&
		    !(t == AVD_T_DATA && avd_is_fresh(a, AVD_DESC_OFF(d)));
	if (!queue && (r = avd_run_flush(img, run)) < 0)
		return r;

	if (t == AVD_T_DATA && avd_is_fresh(a, AVD_DESC_OFF(d))) {
		/* Referenced by nothing on disk yet: rewrite in place, whole
		 * 4 KiB blocks so the checksums stay exact. */
		uint32_t s0 = o / AVD_SUB, s1 = (o + len - 1) / AVD_SUB;
		uint64_t foff = AVD_DESC_OFF(d) + (uint64_t)s0 * AVD_SUB;
		size_t span = (size_t)(s1 - s0 + 1) * AVD_SUB;
		/* (Already dirty: a fresh cluster's entry was set since the
		 * last flush.  Said again so the invariant is local.) */
		slot->dirty = 1;
		if (o % AVD_SUB == 0 && len % AVD_SUB == 0) {
			r = avd_pwrite(img, src, len, foff);
			if (r == 0)
				avd_set_crcs(a, e, src, s0, s1);
			return r;
		}
		uint8_t *b = malloc(span);
		if (!b)
			return imgfmt_err(ENOMEM, "out of memory");
		r = avd_read_subs(img, vc, e, s0, s0, b);
		if (r == 0 && s1 != s0)
			r = avd_read_subs(img, vc, e, s1, s1,
					  b + span - AVD_SUB);
		if (r == 0) {
			memcpy(b + (o - s0 * AVD_SUB), src, len);
			r = avd_pwrite(img, b, span, foff);
		}
		if (r == 0)
			avd_set_crcs(a, e, b, s0, s1);
		free(b);
		return r;
	}

	/* A partial write with nothing to copy, into a cluster that is a
	 * hole of the file: write just the touched sub-blocks. */
	uint64_t noff = 0;
	int have_noff = 0;
	if (len < a->C && avd_nothing_to_copy(img, vc, t) &&
	    !imgfmt_is_zero(src, len)) {
		r = avd_alloc(img, 1, &noff);
		if (r < 0)
			return r;
		slot->dirty = 1;
		if (noff >= a->phys_end)
			return avd_write_sparse(img, slot, e, noff, o, len,
						src);
		have_noff = 1; /* a reused cluster: it may hold old bytes */
	}

	/* Copy-on-write: build the whole new cluster, store it elsewhere. */
	if (len == a->C) {
		content = src;
	} else {
		cbuf = malloc(a->C);
		if (!cbuf) {
			if (have_noff)
				avd_unref(img, noff, a->C);
			return imgfmt_err(ENOMEM, "out of memory");
		}
		switch (t) {
		case AVD_T_UNALLOC:
			r = imgfmt_backing_read(img, cbuf, a->C,
						vc << a->cbits);
			break;
		case AVD_T_ZERO:
			memset(cbuf, 0, a->C);
			break;
		case AVD_T_DATA:
			r = avd_read_subs(img, vc, e, 0, a->nsub - 1, cbuf);
			break;
		default:
			r = avd_read_comp(img, vc, e, cbuf);
			break;
		}
		if (r < 0) {
			if (have_noff)
				avd_unref(img, noff, a->C);
			goto out;
		}
		memcpy(cbuf + o, src, len);
		content = cbuf;
	}
	slot->dirty = 1;
	if (imgfmt_is_zero(content, a->C)) {
		if (have_noff)
			avd_unref(img, noff, a->C);
		avd_set_entry(img, slot, e, AVD_DESC(AVD_T_ZERO, 0), 0);
		goto out;
	}
	if (!have_noff &&
	    (r = len == a->C ? avd_alloc_whole(img, vc, &noff)
			     : avd_alloc(img, 1, &noff)) < 0)
		goto out;
	if (queue) {
		if (run->n && (noff != run->foff + run->len ||
			       src != run->src + run->len ||
			       run->n == AVD_RUN_MAX) &&
		    (r = avd_run_flush(img, run)) < 0) {
			avd_unref(img, noff, a->C);
			goto out;
		}
		if (run->n == 0) {
			run->foff = noff;
			run->src = src;
			run->l1i = vc / a->epl;
			run->slot = slot;
		}
		run->ents[run->n++] = e;
		run->len += a->C;
		goto out;
	}
	r = avd_pwrite(img, content, a->C, noff);
	if (r < 0) {
		avd_unref(img, noff, a->C);
		goto out;
	}
	avd_set_entry(img, slot, e, AVD_DESC(AVD_T_DATA, noff), 0);
	avd_set_crcs(a, e, content, 0, a->nsub - 1);
out:
	free(cbuf);
	return r;
}

static int avd__pwrite(imgfmt_image *img, const void *buf, size_t len,
		       uint64_t off)
{
	struct avd *a = AVD(img);
	const uint8_t *p = buf;
	struct avd_run run;
	int r;

	run.n = 0;
	run.len = 0;
	pthread_rwlock_wrlock(&a->lock);
	r = avd_writable(img);
	while (r == 0 && len > 0) {
		uint32_t o = (uint32_t)(off & (a->C - 1));
		uint32_t n = a->C - o;
		if (n > len)
			n = (uint32_t)len;
		r = avd_write_piece(img, off >> a->cbits, o, n, p, &run);
		p += n;
		off += n;
		len -= n;
	}
	int fr = avd_run_flush(img, &run);
	if (r == 0)
		r = fr;
	pthread_rwlock_unlock(&a->lock);
	return r;
}

/* Make [off, off+len) zeros (type ZERO) or unallocated (type UNALLOC):
 * whole clusters by descriptor, partial ones by writing zeros. */
static int avd_clear(imgfmt_image *img, uint64_t off, uint64_t len,
		     unsigned type)
{
	struct avd *a = AVD(img);
	uint8_t *zeros = NULL;
	int r;

	pthread_rwlock_wrlock(&a->lock);
	r = avd_writable(img);
	while (r == 0 && len > 0) {
		uint64_t vc = off >> a->cbits;
		uint32_t o = (uint32_t)(off & (a->C - 1));
		uint32_t n = a->C - o;
		if (n > len)
			n = (uint32_t)len;
		/* The disk's last cluster counts as whole if the range runs
		 * to the end of the disk. */
		if (n < a->C && !(o == 0 && off + n == img->virtual_size)) {
			/* Already zeros (explicit, or a hole with no backing
			 * file)?  Then there is nothing to write. */
			struct avd_slot *slot;
			uint8_t *e;
			r = avd_entry_ptr(img, vc, 0, &e, &slot);
			if (r < 0)
				break;
			unsigned t = e ? AVD_DESC_TYPE(avd_get64(e))
				       : AVD_T_UNALLOC;
			if (t == AVD_T_ZERO ||
			    (t == AVD_T_UNALLOC && !img->backing_name)) {
				off += n;
				len -= n;
				continue;
			}
			if (!zeros)
				zeros = calloc(1, a->C);
			if (!zeros) {
				r = imgfmt_err(ENOMEM, "out of memory");
				break;
			}
			r = avd_write_piece(img, vc, o, n, zeros, NULL);
		} else {
			/* Without a backing file an unallocated cluster already
			 * reads as zeros, so no table needs creating. */
			int need = type == AVD_T_ZERO && img->backing_name;
			struct avd_slot *slot;
			uint8_t *e;
			r = avd_entry_ptr(img, vc, need, &e, &slot);
			if (r == 0 && e &&
			    AVD_DESC_TYPE(avd_get64(e)) != type) {
				r = avd_check_desc(img, vc, e);
				if (r == 0) {
					avd_set_entry(img, slot, e,
						      AVD_DESC(type, 0), 0);
					slot->dirty = 1;
					a->data_written = 1;
				}
			}
		}
		off += n;
		len -= n;
	}
	pthread_rwlock_unlock(&a->lock);
	free(zeros);
	return r;
}

static int avd__discard(imgfmt_image *img, uint64_t off, uint64_t len)
{
	return avd_clear(img, off, len, AVD_T_UNALLOC);
}

static int avd__write_zeroes(imgfmt_image *img, uint64_t off, uint64_t len,
			     unsigned flags)
{
	(void)flags; /* a ZERO descriptor always frees the cluster */
	return avd_clear(img, off, len, AVD_T_ZERO);
}

/* ---- map ------------------------------------------------------------- */

static void avd_classify(struct avd *a, const uint8_t *e,
			 enum imgfmt_extent_kind *kind, unsigned *flags,
			 int64_t *foff)
{
	uint64_t d = avd_get64(e);

	*flags = 0;
	*foff = -1;
	switch (AVD_DESC_TYPE(d)) {
	case AVD_T_UNALLOC: *kind = IMGFMT_EXTENT_BACKING; break;
	case AVD_T_ZERO: *kind = IMGFMT_EXTENT_ZERO; break;
	case AVD_T_DATA:
		*kind = IMGFMT_EXTENT_DATA;
		*foff = (int64_t)AVD_DESC_OFF(d);
		break;
	default:
		*kind = IMGFMT_EXTENT_DATA;
		*flags = IMGFMT_EXTENT_COMPRESSED;
		break;
	}
	(void)a;
}

static int avd__map(imgfmt_image *img, uint64_t off, uint64_t len,
		    struct imgfmt_extent *ext)
{
	struct avd *a = AVD(img);
	uint8_t ent[AVD_MAX_ESIZE];
	uint64_t pos = off, end = off + len;
	int r = 0, first = 1;

	pthread_rwlock_rdlock(&a->lock);
	while (pos < end) {
		uint64_t vc = pos >> a->cbits;
		uint64_t cend = (vc + 1) << a->cbits;
		enum imgfmt_extent_kind kind;
		unsigned flags;
		int64_t foff;

		if (cend > end)
			cend = end;
		r = avd_entry_read(img, vc, ent, 0, 0);
		if (r == 0)
			r = avd_check_desc(img, vc, ent);
		if (r < 0)
			break;
		avd_classify(a, ent, &kind, &flags, &foff);
		if (foff >= 0)
			foff += (int64_t)(pos & (a->C - 1));
		if (first) {
			ext->kind = kind;
			ext->flags = flags;
			ext->file_offset = foff;
			first = 0;
		} else if (kind != ext->kind || flags != ext->flags ||
			   (foff >= 0 && foff != ext->file_offset +
			    (int64_t)(pos - off))) {
			break;
		}
		pos = cend;
	}
	ext->length = pos - off;
	pthread_rwlock_unlock(&a->lock);
	return r;
}

/* ---- open / close ---------------------------------------------------- */

struct avd_scan {
	uint64_t corruptions, leaks, checksum_errors, repaired;
	char first[512];
	uint8_t *kind;   /* per file cluster: 0 free, 1 meta, 2 data, 3 comp */
	uint64_t nclusters;
};

static void avd_problem(struct avd_scan *s, uint64_t *counter,
			const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void avd_problem(struct avd_scan *s, uint64_t *counter,
			const char *fmt, ...)
{
	va_list ap;

	(*counter)++;
	if (s->first[0])
		return;
	va_start(ap, fmt);
	vsnprintf(s->first, sizeof(s->first), fmt, ap);
	va_end(ap);
}

static const char *avd_kind_name(uint8_t k)
{
	switch (k) {
	case 1: return "metadata";
	case 2: return "a data cluster";
	default: return "compressed data";
	}
}

/* Does [off, off+len) of the file hold no data?  An unreferenced cluster
 * that is a hole (punched by a repair) costs nothing and is no leak. */
static int avd_is_hole(imgfmt_image *img, uint64_t off, uint64_t len)
{
	off_t d = lseek(img->fd, (off_t)(img->base + off), SEEK_DATA);

	if (d < 0)
		return errno == ENXIO;
	return (uint64_t)d >= img->base + off + len;
}

/*
 * Walk every table on disk: mark which file cluster holds what, count
 * corruptions (bad pointers, overlaps), optionally verify data checksums,
 * and with `repair` drop the references that are wrong.  With `rc` the
 * walk also fills the allocator's reference counts.  The lock is held
 * exclusively and the cache is clean (flushed) or empty.
 */
static int avd_scan(imgfmt_image *img, int verify, int repair,
		    struct avd_scan *s, int fill_rc)
{
	struct avd *a = AVD(img);
	uint64_t flen = img->file_length;
	uint8_t *tbl = NULL, *data = NULL, *badl1 = NULL;
	int r = 0;

	s->nclusters = (flen + a->C - 1) >> a->cbits;
	if (s->nclusters < 1 + (uint64_t)a->l1_clusters)
		s->nclusters = 1 + (uint64_t)a->l1_clusters;
	s->kind = calloc(s->nclusters, 1);
	tbl = malloc(a->C);
	data = malloc(a->C);
	if (!s->kind || !tbl || !data) {
		r = imgfmt_err(ENOMEM, "out of memory");
		goto out;
	}
	s->kind[0] = 1;
	for (uint64_t c = 0; c < a->l1_clusters; c++)
		s->kind[(a->h.l1_offset >> a->cbits) + c] = 1;

	/* Pass 1: L2 tables. */
	badl1 = calloc(a->h.l1_entries + 1, 1);
	if (!badl1) {
		r = imgfmt_err(ENOMEM, "out of memory");
		goto out;
	}
	for (uint64_t i = 0; i < a->h.l1_entries; i++) {
		uint64_t t = a->l1[i];
		if (a->l1_bad[i]) {
			avd_problem(s, &s->corruptions, "%s", a->l1_bad_msg);
			if (repair) {
				/* l1[i] is already 0 in memory; write it. */
				a->l1_bad[i] = 0;
				avd_l1_mark(a, i);
				s->repaired++;
			}
			continue;
		}
		if (!t)
			continue;
		uint64_t c = t >> a->cbits;
		const char *bad = NULL;
		if ((t & AVD_L1_RESERVED) || (t & (a->C - 1)))
			bad = "is not cluster aligned";
		else if (t > flen || flen - t < a->C)
			bad = "is past the end of the file";
		else if (s->kind[c])
			bad = s->kind[c] == 1 && c == 0 ? "overlaps the header"
							: "overlaps other "
							  "metadata";
		if (bad) {
			avd_problem(s, &s->corruptions, "L1 entry %llu: L2 "
				    "table offset %llu %s",
				    (unsigned long long)i,
				    (unsigned long long)t, bad);
			if (repair) {
				a->l1[i] = 0;
				avd_l1_mark(a, i);
				s->repaired++;
			}
			badl1[i] = 1;
			continue;
		}
		s->kind[c] = 1;
	}
	if (fill_rc) {
		for (uint64_t c = 0; c < s->nclusters; c++)
			if (s->kind[c] == 1 && (r = avd_ref(a, c << a->cbits,
							    1)) < 0)
				goto out;
	}

	/* Pass 2: entries. */
	for (uint64_t i = 0; i < a->h.l1_entries; i++) {
		if (!a->l1[i] || badl1[i])
			continue;
		r = imgfmt_file_read(img, tbl, a->C, a->l1[i], "L2 table");
		if (r < 0)
			goto out;
		int changed = 0;
		for (uint64_t j = 0; j < a->epl; j++) {
			uint64_t vc = i * a->epl + j;
			uint8_t *e = tbl + j * a->esize;
			uint64_t d = avd_get64(e);
			unsigned t = AVD_DESC_TYPE(d);
			if (t == AVD_T_UNALLOC || t == AVD_T_ZERO)
				continue;
			if ((vc << a->cbits) >= a->h.size) {
				avd_problem(s, &s->corruptions, "L2 entry for "
					    "virtual offset %llu is past the "
					    "end of the disk",
					    (unsigned long long)
						    (vc << a->cbits));
				goto drop;
			}
			int cr = avd_check_desc(img, vc, e);
			if (cr < 0) {
				avd_problem(s, &s->corruptions, "%s",
					    imgfmt__error());
				goto drop;
			}
			uint64_t off = AVD_DESC_OFF(d);
			uint64_t n = t == AVD_T_DATA ? a->C : avd_get32(e + 8);
			uint64_t c0 = off >> a->cbits;
			uint64_t c1 = (off + n - 1) >> a->cbits;
			uint8_t want = t == AVD_T_DATA ? 2 : 3;
			int clash = 0;
			for (uint64_t c = c0; c <= c1 && !clash; c++)
				if (s->kind[c] && !(s->kind[c] == 3 &&
						    want == 3)) {
					avd_problem(s, &s->corruptions,
						    "L2 entry for virtual "
						    "offset %llu: %s at %llu "
						    "overlaps %s",
						    (unsigned long long)
							    (vc << a->cbits),
						    t == AVD_T_DATA ? "data"
								    : "compressed "
								      "data",
						    (unsigned long long)off,
						    avd_kind_name(s->kind[c]));
					clash = 1;
				}
			if (clash)
				goto drop;
			for (uint64_t c = c0; c <= c1; c++)
				s->kind[c] = want;
			if (fill_rc && (r = avd_ref(a, off, n)) < 0)
				goto out;
			if (verify) {
				int vr = t == AVD_T_DATA
					? avd_read_subs(img, vc, e, 0,
							a->nsub - 1, data)
					: avd_read_comp(img, vc, e, data);
				if (vr == -EIO &&
				    strstr(imgfmt__error(), "checksum"))
					avd_problem(s, &s->checksum_errors,
						    "%s", imgfmt__error());
				else if (vr < 0)
					avd_problem(s, &s->corruptions, "%s",
						    imgfmt__error());
			}
			continue;
drop:
			if (repair) {
				memset(e, 0, a->esize);
				changed = 1;
				s->repaired++;
			}
		}
		if (changed) {
			r = avd_pwrite(img, tbl, a->C, a->l1[i]);
			if (r < 0)
				goto out;
		}
	}
	for (uint64_t c = 0; c < s->nclusters; c++)
		if (!s->kind[c] && (c << a->cbits) < flen &&
		    !avd_is_hole(img, c << a->cbits, a->C))
			s->leaks++;
out:
	free(tbl);
	free(data);
	free(badl1);
	return r;
}

/* (Re)build the allocator from the tables on disk. */
static int avd_build_alloc(imgfmt_image *img)
{
	struct avd *a = AVD(img);
	struct avd_scan s = { 0 };
	int r;

	free(a->rc);
	free(a->cf);
	a->rc = NULL;
	a->cf = NULL;
	a->rc_cap = 0;
	a->npending = a->nfresh = 0;
	a->alloc_hint = 1;
	a->whole_hint = 1;
	a->span = avd_align_span(a->h.size, a->cbits);
	a->file_end = (img->file_length + a->C - 1) & ~(uint64_t)(a->C - 1);
	a->phys_end = img->file_length;
	r = avd_rc_grow(a, a->file_end >> a->cbits);
	if (r == 0)
		r = avd_scan(img, 0, 0, &s, 1);
	free(s.kind);
	a->corrupt = 0;
	a->corrupt_msg[0] = '\0';
	if (r == 0 && s.corruptions) {
		a->corrupt = 1;
		snprintf(a->corrupt_msg, sizeof(a->corrupt_msg), "%s",
			 s.first);
	}
	return r;
}

static void avd_free(struct avd *a)
{
	if (!a)
		return;
	if (a->slots)
		for (uint32_t i = 0; i < a->nslots; i++)
			free(a->slots[i].data);
	free(a->slots);
	free(a->refill);
	free(a->slot_of);
	free(a->l1);
	free(a->l1_bad);
	free(a->rc);
	free(a->cf);
	free(a->pending);
	free(a->fresh);
	imgfmt_zcache_free(a->zc);
	pthread_rwlock_destroy(&a->lock);
	pthread_mutex_destroy(&a->cache_lock);
	free(a);
}

/* Read and validate the L1 table. */
/* Read and validate the L1 table.  An invalid entry (past the end of the
 * file, unaligned, onto the header or the L1 table: what a crash on a
 * less careful writer or a damaged file leaves) does not stop the open,
 * so that check --repair can reach it: the entry reads as "no table",
 * reads of its range fail with the reason, and writes are refused until
 * a repair clears it. */
static int avd_load_l1(imgfmt_image *img)
{
	struct avd *a = AVD(img);
	uint64_t n = a->h.l1_entries;
	uint8_t *buf = malloc(n * 8 + 1);
	int r;

	free(a->l1);
	free(a->slot_of);
	free(a->l1_bad);
	a->l1 = calloc(n + 1, 8);
	a->slot_of = malloc((n + 1) * sizeof(int32_t));
	a->l1_bad = calloc(n + 1, 1);
	a->l1_bad_msg[0] = '\0';
	if (!buf || !a->l1 || !a->slot_of || !a->l1_bad) {
		free(buf);
		return imgfmt_err(ENOMEM, "out of memory");
	}
	r = imgfmt_file_read(img, buf, n * 8, a->h.l1_offset, "L1 table");
	for (uint64_t i = 0; r == 0 && i < n; i++) {
		uint64_t t = avd_get64(buf + i * 8);
		const char *bad = NULL;
		a->slot_of[i] = -1;
		a->l1[i] = t;
		if (!t)
			continue;
		if ((t & AVD_L1_RESERVED) || (t & (a->C - 1)))
			bad = "is not cluster aligned";
		else if (t > img->file_length || img->file_length - t < a->C)
			bad = "is past the end of the file";
		else if (avd_hits_meta(a, t, a->C))
			bad = "overlaps the header or the L1 table";
		if (!bad)
			continue;
		a->l1[i] = 0;
		a->l1_bad[i] = 1;
		if (!a->l1_bad_msg[0])
			snprintf(a->l1_bad_msg, sizeof(a->l1_bad_msg),
				 "L1 entry %llu: L2 table offset %#llx %s",
				 (unsigned long long)i, (unsigned long long)t,
				 bad);
		a->corrupt = 1;
		snprintf(a->corrupt_msg, sizeof(a->corrupt_msg), "%s",
			 a->l1_bad_msg);
	}
	free(buf);
	return r;
}

static void avd_cache_reset(struct avd *a)
{
	for (uint32_t i = 0; i < a->nslots; i++) {
		a->slots[i].l1i = -1;
		a->slots[i].dirty = 0;
	}
	for (uint64_t i = 0; i < a->h.l1_entries; i++)
		a->slot_of[i] = -1;
}

static int avd__open(imgfmt_image *img)
{
	uint8_t hbuf[AVD_HEADER_SIZE];
	struct avd *a;
	int r;

	if (img->file_length < AVD_HEADER_SIZE)
		return imgfmt_err(EINVAL, "%s: truncated AVD header: the image "
				  "has %llu bytes, the header needs %u",
				  img->path,
				  (unsigned long long)img->file_length,
				  AVD_HEADER_SIZE);
	a = calloc(1, sizeof(*a));
	if (!a)
		return imgfmt_err(ENOMEM, "out of memory");
	pthread_rwlock_init(&a->lock, NULL);
	pthread_mutex_init(&a->cache_lock, NULL);
	img->priv = a;
	r = imgfmt_file_read(img, hbuf, sizeof(hbuf), 0, "header");
	if (r == 0)
		r = avd_header_decode(img->path, hbuf, sizeof(hbuf), &a->h);
	if (r < 0)
		goto fail;
	a->cbits = a->h.cluster_bits;
	a->C = 1u << a->cbits;
	a->nsub = a->C / AVD_SUB;
	a->esize = avd_entry_size(a->C);
	a->epl = a->C / a->esize;
	uint64_t need = avd_l1_needed(a->h.size, a->C);
	if (a->h.l1_entries < need) {
		r = imgfmt_err(EINVAL, "%s: AVD l1_entries %u is too small for "
			       "virtual_size %llu (needs %llu)", img->path,
			       a->h.l1_entries, (unsigned long long)a->h.size,
			       (unsigned long long)need);
		goto fail;
	}
	/* Exactly what the size needs: nothing in the file may make us
	 * allocate or trust more L1 than the disk can use. */
	if (a->h.l1_entries > (need ? need : 1)) {
		r = imgfmt_err(EINVAL, "%s: AVD l1_entries %u is more than "
			       "virtual_size %llu needs (%llu)", img->path,
			       a->h.l1_entries, (unsigned long long)a->h.size,
			       (unsigned long long)(need ? need : 1));
		goto fail;
	}
	if ((uint64_t)a->h.l1_entries * 8 > AVD_MAX_L1_BYTES) {
		r = imgfmt_err(EINVAL, "%s: AVD l1_entries %u is larger than "
			       "the limit (%u)", img->path, a->h.l1_entries,
			       AVD_MAX_L1_BYTES / 8);
		goto fail;
	}
	a->l1_clusters = (uint32_t)(((uint64_t)a->h.l1_entries * 8 + a->C - 1)
				    >> a->cbits);
	if ((a->h.l1_offset & (a->C - 1)) || a->h.l1_offset < a->C ||
	    (a->h.l1_offset & AVD_L1_RESERVED)) {
		r = imgfmt_err(EINVAL, "%s: AVD l1_offset %llu is not a "
			       "cluster-aligned offset after the header",
			       img->path,
			       (unsigned long long)a->h.l1_offset);
		goto fail;
	}
	if (a->h.l1_offset > img->file_length ||
	    img->file_length - a->h.l1_offset <
		    (uint64_t)a->h.l1_entries * 8) {
		r = imgfmt_err(EINVAL, "%s: AVD L1 table at %llu (%u entries) "
			       "is past the end of the file (%llu bytes)",
			       img->path, (unsigned long long)a->h.l1_offset,
			       a->h.l1_entries,
			       (unsigned long long)img->file_length);
		goto fail;
	}
	r = avd_load_l1(img);
	if (r < 0)
		goto fail;

	uint64_t nslots = img->cache_bytes / a->C;
	if (nslots < 2)
		nslots = 2;
	if (nslots > 65536)
		nslots = 65536;
	a->nslots = (uint32_t)nslots;
	a->slots = calloc(nslots, sizeof(*a->slots));
	a->refill = malloc(a->C);
	if (!a->slots || !a->refill) {
		r = imgfmt_err(ENOMEM, "out of memory");
		goto fail;
	}
	for (uint32_t i = 0; i < a->nslots; i++) {
		a->slots[i].l1i = -1;
		a->slots[i].data = malloc(a->C + (size_t)a->epl * 8);
		a->slots[i].desc = (uint64_t *)(void *)(a->slots[i].data +
							 a->C);
		if (!a->slots[i].data) {
			r = imgfmt_err(ENOMEM, "out of memory");
			goto fail;
		}
	}

	/* Decompressed clusters: on top of the L2 tables' budget above, a
	 * quarter of cache_bytes more, 2 to 16 clusters (1 MiB at 64 KiB
	 * clusters and the default budget), allocated only when compressed
	 * clusters are read.  Without it (no memory) reads go uncached. */
	a->zc = imgfmt_zcache_new(imgfmt_zcache_entries(img->cache_bytes, a->C),
				  a->C);

	a->was_dirty = (a->h.flags & AVD_FLAG_DIRTY) != 0;
	a->hdr_dirty_on_disk = a->was_dirty;
	if (a->h.backing_len) {
		img->backing_name = strdup(a->h.backing_name);
		if (a->h.backing_format[0])
			img->backing_format = strdup(a->h.backing_format);
		if (!img->backing_name ||
		    (a->h.backing_format[0] && !img->backing_format)) {
			r = imgfmt_err(ENOMEM, "out of memory");
			goto fail;
		}
		if (a->h.has_digest && !(img->flags & IMGFMT_OPEN_NO_BACKING)) {
			uint8_t dg[32];
			char *bp = imgfmt_resolve_path(img->path, a->h.backing_name);
			if (!bp) {
				r = imgfmt_err(ENOMEM, "out of memory");
				goto fail;
			}
			r = avd_file_digest(bp, dg);
			if (r == 0 && memcmp(dg, a->h.digest, 32) != 0)
				r = imgfmt_err(EIO, "%s: backing file %s does "
					       "not match the SHA-256 digest "
					       "recorded in the image",
					       img->path, bp);
			free(bp);
			if (r < 0)
				goto fail;
		}
	}
	img->virtual_size = a->h.size;

	if (!img->read_only) {
		struct stat st;
		if (img->base != 0 || fstat(img->fd, &st) < 0 ||
		    (uint64_t)st.st_size != img->file_length) {
			r = imgfmt_err(EROFS, "%s: an AVD image embedded in a "
				       "larger file can only be opened "
				       "read-only", img->path);
			goto fail;
		}
		r = avd_build_alloc(img);
		if (r < 0)
			goto fail;
		if (a->was_dirty && !a->corrupt) {
			/* Clusters a crash left allocated but unreferenced
			 * are free now; give their space back at close, as
			 * check --repair would. */
			for (uint64_t c = 0; c < (a->file_end >> a->cbits); c++)
				if (a->rc[c] == 0)
					a->cf[c] |= CF_PUNCH;
		}
		if (a->h.autoclear & ~AVD_AUTOCLEAR_KNOWN) {
			/* Whatever those bits promised about the image, our
			 * writes may break it: clear them. */
			a->h.autoclear &= AVD_AUTOCLEAR_KNOWN;
			r = avd_write_header(img);
			if (r == 0)
				r = avd_sync(img);
			if (r < 0)
				goto fail;
		}
	}
	return 0;

fail:
	avd_free(a);
	img->priv = NULL;
	return r;
}

static void avd__close(imgfmt_image *img)
{
	struct avd *a = AVD(img);

	if (!a)
		return;
	if (!img->read_only && !a->flush_failed && !a->corrupt &&
	    avd_flush_locked(img) == 0)
		avd_punch_freed(img);
	/* A corrupt image keeps its dirty flag until check --repair. */
	if (!img->read_only && !a->flush_failed && !a->corrupt &&
	    a->hdr_dirty_on_disk) {
		/* No sync of its own: should the clean flag be lost, the
		 * image merely looks dirty, which costs a check. */
		a->h.flags &= ~AVD_FLAG_DIRTY;
		avd_write_header(img);
	}
	avd_free(a);
	img->priv = NULL;
}

/* ---- resize ---------------------------------------------------------- */

static int avd__resize(imgfmt_image *img, uint64_t new_size)
{
	struct avd *a = AVD(img);
	int r;

	pthread_rwlock_wrlock(&a->lock);
	r = avd_writable(img);
	if (r == 0)
		r = avd_flush_locked(img);
	if (r < 0)
		goto out;
	uint64_t need = avd_l1_needed(new_size, a->C);
	if (need * 8 > AVD_MAX_L1_BYTES) {
		r = imgfmt_err(EFBIG, "%s: %llu bytes need an L1 table larger "
			       "than %u bytes with %u-byte clusters",
			       img->path, (unsigned long long)new_size,
			       AVD_MAX_L1_BYTES, a->C);
		goto out;
	}
	uint64_t old_n = a->h.l1_entries;
	if (need > old_n) {
		uint64_t *l1 = realloc(a->l1, (need + 1) * 8);
		if (!l1) {
			r = imgfmt_err(ENOMEM, "out of memory");
			goto out;
		}
		a->l1 = l1;
		memset(a->l1 + old_n, 0, (need + 1 - old_n) * 8);
		int32_t *so = realloc(a->slot_of, (need + 1) * sizeof(*so));
		if (!so) {
			r = imgfmt_err(ENOMEM, "out of memory");
			goto out;
		}
		a->slot_of = so;
		for (uint64_t i = old_n; i <= need; i++)
			so[i] = -1;
		uint8_t *lb = realloc(a->l1_bad, need + 1);
		if (!lb) {
			r = imgfmt_err(ENOMEM, "out of memory");
			goto out;
		}
		a->l1_bad = lb;
		memset(lb + old_n, 0, need + 1 - old_n);
	}
	uint64_t cap = ((uint64_t)a->l1_clusters << a->cbits) / 8;
	uint64_t n = need > old_n ? need : old_n;
	if (n > cap) {
		/* Relocate: write the bigger table elsewhere, make it
		 * durable, then switch the header to it. */
		uint32_t nc = (uint32_t)((n * 8 + a->C - 1) >> a->cbits);
		uint64_t noff;
		uint8_t *buf = calloc(nc, a->C);
		if (!buf) {
			r = imgfmt_err(ENOMEM, "out of memory");
			goto out;
		}
		for (uint64_t i = 0; i < n; i++)
			avd_put64(buf + i * 8, a->l1[i]);
		r = avd_alloc(img, nc, &noff);
		if (r == 0)
			r = avd_pwrite(img, buf, (size_t)nc << a->cbits,
					      noff);
		free(buf);
		if (r == 0)
			r = avd_sync(img);
		if (r < 0)
			goto out;
		uint64_t old_off = a->h.l1_offset;
		uint32_t old_nc = a->l1_clusters;
		a->h.l1_offset = noff;
		a->h.l1_entries = (uint32_t)n;
		a->h.size = new_size;
		a->l1_clusters = nc;
		r = avd_write_header(img);
		if (r == 0)
			r = avd_sync(img);
		if (r < 0)
			goto out;
		/* The header no longer points at the old table. */
		for (uint32_t i = 0; i < old_nc; i++) {
			uint64_t c = (old_off >> a->cbits) + i;
			if (c < a->rc_cap) {
				a->rc[c] = 0;
				a->cf[c] |= CF_PUNCH;
				avd_hint_lower(a, c);
			}
		}
		/* And the new one is durably referenced. */
		for (uint32_t i = 0; i < nc; i++)
			a->cf[(noff >> a->cbits) + i] &= (uint8_t)~CF_FRESH;
	} else {
		/* The table has room.  Whatever the file holds past the old
		 * entries is not ours to trust: zero it durably before the
		 * header makes those entries count. */
		if (n > old_n) {
			uint8_t *z = calloc(n - old_n, 8);
			if (!z) {
				r = imgfmt_err(ENOMEM, "out of memory");
				goto out;
			}
			r = avd_pwrite(img, z, (n - old_n) * 8,
					      a->h.l1_offset + old_n * 8);
			free(z);
			if (r == 0)
				r = avd_sync(img);
			if (r < 0)
				goto out;
		}
		a->h.l1_entries = (uint32_t)n;
		a->h.size = new_size;
		r = avd_write_header(img);
		if (r == 0)
			r = avd_sync(img);
		if (r < 0)
			goto out;
	}
	img->virtual_size = new_size;
out:
	pthread_rwlock_unlock(&a->lock);
	return r;
}

/* ---- info / check ---------------------------------------------------- */

static int avd__info(imgfmt_image *img, struct imgfmt_info *info)
{
	struct avd *a = AVD(img);

	info->cluster_size = a->C;
	info->dirty = a->was_dirty;
	memcpy(info->uuid, a->h.uuid, 16);
	info->has_uuid = 1;
	info->incompatible_features = a->h.incompat;
	info->compatible_features = a->h.compat;
	info->autoclear_features = a->h.autoclear;
	return 0;
}

static int avd__check(imgfmt_image *img, int repair,
		      struct imgfmt_check_result *res)
{
	struct avd *a = AVD(img);
	struct avd_scan s = { 0 };
	int r = 0;

	pthread_rwlock_wrlock(&a->lock);
	res->was_dirty = a->was_dirty;
	if (!img->read_only) {
		r = avd_flush_locked(img);
		if (r < 0)
			goto out;
		avd_punch_freed(img);
	}
	r = avd_scan(img, 1, repair, &s, 0);
	if (r < 0)
		goto out;
	if (repair && s.leaks) {
		/* Give leaked space back to the filesystem; a leaked tail is
		 * cut off. */
		uint64_t last_used = 0;
		for (uint64_t c = 0; c < s.nclusters; c++)
			if (s.kind[c])
				last_used = c;
		for (uint64_t c = 0; c < s.nclusters; c++) {
			if (s.kind[c] || c > last_used)
				continue;
			fallocate(img->fd, FALLOC_FL_PUNCH_HOLE |
				  FALLOC_FL_KEEP_SIZE, (off_t)(c << a->cbits),
				  (off_t)a->C);
		}
		uint64_t new_len = (last_used + 1) << a->cbits;
		if (new_len < img->file_length) {
			if (ftruncate(img->fd, (off_t)new_len) < 0) {
				r = imgfmt_err(errno, "%s: truncate: %s",
					       img->path, strerror(errno));
				goto out;
			}
			img->file_length = new_len;
		}
		s.repaired += s.leaks;
	}
	if (repair) {
		/* Tables may have been rewritten on disk: drop the cache and
		 * rebuild the allocator from what is there now. */
		avd_cache_reset(a);
		r = avd_flush_locked(img); /* repaired L1 entries */
		if (r == 0 && a->l1_dirty_lo < a->l1_dirty_hi)
			r = imgfmt_err(EIO, "%s: L1 repair not written",
				       img->path);
		if (r == 0)
			r = avd_sync(img);
		if (r == 0)
			r = avd_build_alloc(img);
		if (r == 0 && (a->was_dirty || a->hdr_dirty_on_disk)) {
			a->h.flags &= ~AVD_FLAG_DIRTY;
			r = avd_write_header(img);
			if (r == 0)
				r = avd_sync(img);
			if (r == 0)
				a->hdr_dirty_on_disk = a->was_dirty = 0;
		}
		if (r < 0)
			goto out;
	}
	res->corruptions = s.corruptions;
	res->leaks = s.leaks;
	res->checksum_errors = s.checksum_errors;
	res->repaired = s.repaired;
	snprintf(res->first_problem, sizeof(res->first_problem), "%s",
		 s.first);
out:
	free(s.kind);
	pthread_rwlock_unlock(&a->lock);
	return r;
}

/* ---- maintenance hooks ----------------------------------------------- */

int avd__set_backing(imgfmt_image *img, const char *name, const char *fmt,
		     int digest)
{
	struct avd *a = AVD(img);
	struct avd_header h;
	int r;

	if (img->drv != &imgfmt_avd_driver)
		return imgfmt_err(ENOTSUP, "%s: changing the backing file of "
				  "%s images is not supported", img->path,
				  img->drv->name);
	if (img->read_only)
		return imgfmt_err(EROFS, "%s: image is open read-only",
				  img->path);
	pthread_rwlock_wrlock(&a->lock);
	r = avd_flush_locked(img);
	if (r < 0)
		goto out;
	r = avd_header_init(img->path, &h, a->h.size, a->C, a->h.uuid, name,
			    fmt, digest);
	if (r < 0)
		goto out;
	memcpy(a->h.backing_name, h.backing_name, sizeof(h.backing_name));
	a->h.backing_len = h.backing_len;
	memcpy(a->h.backing_format, h.backing_format, 16);
	a->h.has_digest = h.has_digest;
	memcpy(a->h.digest, h.digest, 32);
	r = avd_write_header(img);
	if (r == 0)
		r = avd_sync(img);
	if (r < 0)
		goto out;
	free(img->backing_name);
	free(img->backing_format);
	img->backing_name = name ? strdup(name) : NULL;
	img->backing_format = fmt && *fmt ? strdup(fmt) : NULL;
out:
	pthread_rwlock_unlock(&a->lock);
	return r;
}

int avd__refresh_digest(imgfmt_image *img)
{
	struct avd *a = AVD(img);

	if (img->drv != &imgfmt_avd_driver || !a->h.has_digest)
		return 0;
	return avd__set_backing(img, a->h.backing_name,
				a->h.backing_format[0] ? a->h.backing_format
						       : NULL, 1);
}

const struct imgfmt_driver imgfmt_avd_driver = {
	.name = "avd",
	.probe = avd__probe,
	.open = avd__open,
	.close = avd__close,
	.pread = avd__pread,
	.pwrite = avd__pwrite,
	.flush = avd__flush,
	.discard = avd__discard,
	.write_zeroes = avd__write_zeroes,
	.map = avd__map,
	.resize = avd__resize,
	.info = avd__info,
	.check = avd__check,
	.create = avd__create,
	.writer_open = avd__writer_open,
	.writer_encode = avd__writer_encode,
	.writer_put = avd__writer_put,
	.writer_finish = avd__writer_finish,
	.writer_abort = avd__writer_abort,
};
