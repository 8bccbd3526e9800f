/*
 * verified.c - a read-only view of an image whose every byte is checked
 * before the caller sees it.
 *
 * Signed appliance packages commit to their disk cluster by cluster (a
 * hash per cluster; see appliances/FORMAT.md).  This view reads whole
 * clusters from the inner image, hands each to the caller's verify
 * function, and only returns data that passed.  Guests read 4 KiB at a
 * time while clusters are larger, so a small cache keeps recently verified
 * clusters in memory: data is served only from verified memory, never
 * re-read from the file after its check.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"

#define VERIFIED_CACHE_ENTRIES 32

struct verified_entry {
	uint64_t cluster;
	uint64_t last_use;
	uint8_t *data;   /* NULL: slot empty */
	size_t len;
};

struct verified {
	imgfmt_image *inner;
	uint32_t cluster_size;
	imgfmt_verify_fn verify;
	imgfmt_verify_zero_fn is_zero;
	void *opaque;
	pthread_mutex_t lock;
	uint64_t clock;
	struct verified_entry cache[VERIFIED_CACHE_ENTRIES];
};

/* Copy from a cached cluster if present; 1 on a hit. */
static int cache_copy(struct verified *v, uint64_t cluster, void *dst,
		      size_t off, size_t len)
{
	int hit = 0;

	pthread_mutex_lock(&v->lock);
	for (int i = 0; i < VERIFIED_CACHE_ENTRIES; i++) {
		struct verified_entry *e = &v->cache[i];
		if (e->data && e->cluster == cluster) {
			memcpy(dst, e->data + off, len);
			e->last_use = ++v->clock;
			hit = 1;
			break;
		}
	}
	pthread_mutex_unlock(&v->lock);
	return hit;
}

/* Keep a verified cluster (takes ownership of data). */
static void cache_insert(struct verified *v, uint64_t cluster, uint8_t *data,
			 size_t len)
{
	struct verified_entry *victim = &v->cache[0];

	pthread_mutex_lock(&v->lock);
	for (int i = 0; i < VERIFIED_CACHE_ENTRIES; i++) {
		struct verified_entry *e = &v->cache[i];
		if (e->data && e->cluster == cluster) { /* raced: keep one */
			victim = NULL;
			break;
		}
		if (!e->data) {
			victim = e;
			break;
		}
		if (e->last_use < victim->last_use)
			victim = e;
	}
	if (victim) {
		free(victim->data);
		victim->data = data;
		victim->len = len;
		victim->cluster = cluster;
		victim->last_use = ++v->clock;
		data = NULL;
	}
	pthread_mutex_unlock(&v->lock);
	free(data);
}

/* Bytes in cluster `c` (the last one may be short). */
static size_t cluster_len(imgfmt_image *img, struct verified *v, uint64_t c)
{
	uint64_t start = c * v->cluster_size;

	if (img->virtual_size - start < v->cluster_size)
		return (size_t)(img->virtual_size - start);
	return v->cluster_size;
}

static int is_zero_cluster(struct verified *v, uint64_t c, size_t len)
{
	return v->is_zero && v->is_zero(v->opaque, c, len) == 1;
}

static int fail_cluster(imgfmt_image *img, uint64_t c, uint64_t start,
			size_t len)
{
	return imgfmt_err(EBADMSG, "%s: cluster %llu (bytes %llu+%zu) fails "
			  "verification: the image was modified after it was "
			  "signed", img->path, (unsigned long long)c,
			  (unsigned long long)start, len);
}

/*
 * Fill `out` with the whole clusters [c0, c0 + n) straight from the inner
 * image, verifying them in place: runs of clusters that hold data are
 * read with one call each; clusters whose genuine content is zeros are
 * zeroed without reading.  On failure what was filled is zeroed again:
 * bytes that did not pass never stay in the caller's buffer.
 */
static int fill_clusters(imgfmt_image *img, struct verified *v, uint8_t *out,
			 uint64_t c0, uint64_t n)
{
	uint64_t run = c0;       /* first cluster of the pending data run */
	size_t run_bytes = 0;
	uint8_t *run_out = out;
	int r = 0;

	for (uint64_t c = c0; c <= c0 + n && r == 0; c++) {
		size_t clen = c < c0 + n ? cluster_len(img, v, c) : 0;
		int zero = c < c0 + n && is_zero_cluster(v, c, clen);

		if (c < c0 + n && !zero) {
			run_bytes += clen;
			continue;
		}
		/* The run ends here: read it, then check each cluster. */
		if (run_bytes) {
			r = imgfmt__pread(v->inner, run_out, run_bytes,
					  run * v->cluster_size);
			for (uint64_t k = run; r == 0 && k < c; k++) {
				uint8_t *p = out + (k - c0) * v->cluster_size;
				size_t kl = cluster_len(img, v, k);
				if (v->verify(v->opaque, k, p, kl) < 0)
					r = fail_cluster(img, k,
						k * v->cluster_size, kl);
			}
		}
		if (zero)
			memset(out + (c - c0) * v->cluster_size, 0, clen);
		run = c + 1;
		run_out = out + (run - c0) * v->cluster_size;
		run_bytes = 0;
	}
	if (r < 0)
		memset(out, 0, (size_t)(n - 1) * v->cluster_size +
		       cluster_len(img, v, c0 + n - 1));
	return r;
}

/* Part of one cluster, through the cache of verified clusters. */
static int read_partial(imgfmt_image *img, struct verified *v, uint8_t *out,
			uint64_t cluster, size_t in, size_t n)
{
	uint64_t start = cluster * v->cluster_size;
	size_t clen = cluster_len(img, v, cluster);

	if (cache_copy(v, cluster, out, in, n))
		return 0;
	if (is_zero_cluster(v, cluster, clen)) {
		memset(out, 0, n);
		return 0;
	}
	uint8_t *data = malloc(clen);
	if (!data)
		return imgfmt_err(ENOMEM, "out of memory");
	int r = imgfmt__pread(v->inner, data, clen, start);
	if (r == 0 && v->verify(v->opaque, cluster, data, clen) < 0)
		r = fail_cluster(img, cluster, start, clen);
	if (r < 0) {
		free(data);
		return r;
	}
	memcpy(out, data + in, n);
	cache_insert(v, cluster, data, clen);
	return 0;
}

/*
 * Whole clusters inside the request are read into the caller's buffer and
 * verified there; only the partial clusters at either end go through the
 * cache (a guest reading 4 KiB at a time reads the rest soon).
 */
static int verified__pread(imgfmt_image *img, void *buf, size_t len,
			   uint64_t off)
{
	struct verified *v = img->priv;
	uint8_t *out = buf;
	size_t total = len;
	int r = 0;

	while (len > 0 && r == 0) {
		uint64_t cluster = off / v->cluster_size;
		size_t in = (size_t)(off % v->cluster_size);
		size_t clen = cluster_len(img, v, cluster);
		size_t n = clen - in;

		if (in == 0 && len >= clen) {
			/* Whole clusters from here on. */
			uint64_t nc = 1;
			size_t bytes = clen;
			while (bytes < len) {
				size_t l = cluster_len(img, v, cluster + nc);
				if (bytes + l > len)
					break;
				bytes += l;
				nc++;
			}
			r = fill_clusters(img, v, out, cluster, nc);
			n = bytes;
		} else {
			if (n > len)
				n = len;
			r = read_partial(img, v, out, cluster, in, n);
		}
		out += n;
		off += n;
		len -= n;
	}
	if (r < 0)
		memset(buf, 0, total);
	return r;
}

static int verified__map(imgfmt_image *img, uint64_t off, uint64_t len,
			 struct imgfmt_extent *ext)
{
	struct verified *v = img->priv;
	int r = imgfmt__map(v->inner, off, len, ext);

	ext->file_offset = -1;
	return r;
}

static int verified__info(imgfmt_image *img, struct imgfmt_info *info)
{
	struct verified *v = img->priv;
	struct imgfmt_info in;
	int r = imgfmt__info(v->inner, &in);

	if (r < 0)
		return r;
	snprintf(info->format, sizeof(info->format), "%s", in.format);
	snprintf(info->subformat, sizeof(info->subformat), "verified");
	info->file_size = in.file_size;
	info->allocated_bytes = in.allocated_bytes;
	info->cluster_size = in.cluster_size;
	info->has_uuid = in.has_uuid;
	memcpy(info->uuid, in.uuid, sizeof(in.uuid));
	return 0;
}

static void verified__close(imgfmt_image *img)
{
	struct verified *v = img->priv;

	if (!v)
		return;
	for (int i = 0; i < VERIFIED_CACHE_ENTRIES; i++)
		free(v->cache[i].data);
	imgfmt__close(v->inner);
	pthread_mutex_destroy(&v->lock);
	free(v);
}

static const struct imgfmt_driver verified_driver = {
	.name = "verified",
	.pread = verified__pread,
	.map = verified__map,
	.info = verified__info,
	.close = verified__close,
};

int imgfmt__open_verified(imgfmt_image *inner, uint32_t cluster_size,
			  imgfmt_verify_fn verify, imgfmt_verify_zero_fn is_zero,
			  void *opaque, imgfmt_image **out)
{
	imgfmt_image *img;
	struct verified *v;

	*out = NULL;
	if (cluster_size < 512 || cluster_size > IMGFMT_MAX_CLUSTER ||
	    (cluster_size & (cluster_size - 1)))
		return imgfmt_err(EINVAL, "%s: bad verification cluster size "
				  "%u", inner->path, cluster_size);
	img = calloc(1, sizeof(*img));
	v = calloc(1, sizeof(*v));
	if (!img || !v || asprintf(&img->path, "%s", inner->path) < 0) {
		free(img);
		free(v);
		return imgfmt_err(ENOMEM, "out of memory");
	}
	pthread_mutex_init(&v->lock, NULL);
	v->inner = inner;
	v->cluster_size = cluster_size;
	v->verify = verify;
	v->is_zero = is_zero;
	v->opaque = opaque;
	img->drv = &verified_driver;
	img->fd = -1;
	img->read_only = 1;
	img->depth = inner->depth;
	img->virtual_size = inner->virtual_size;
	img->file_length = inner->file_length;
	img->cache_bytes = inner->cache_bytes;
	img->priv = v;
	*out = img;
	return 0;
}
