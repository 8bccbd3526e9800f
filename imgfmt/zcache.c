/*
 * zcache.c - per-thread decompression state and the decompressed-cluster
 * cache (zcache.h).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"
#include "zcache.h"

/* ---- per-thread state ------------------------------------------------- */

#define ZT_STREAMS 2 /* qcow2 (raw deflate) and VMDK (zlib) on one thread */
#define ZT_BUFS 3    /* imgfmt_zscratch 0 and 1; 2: uncached fills */

struct ztls {
	ZSTD_DCtx *zd;
	z_stream zs[ZT_STREAMS];
	int zs_bits[ZT_STREAMS];
	int zs_live[ZT_STREAMS];
	void *buf[ZT_BUFS];
	size_t buf_len[ZT_BUFS];
};

static pthread_key_t ztls_key;
static pthread_once_t ztls_once = PTHREAD_ONCE_INIT;

static void ztls_free(void *p)
{
	struct ztls *t = p;

	ZSTD_freeDCtx(t->zd);
	for (int i = 0; i < ZT_STREAMS; i++)
		if (t->zs_live[i])
			inflateEnd(&t->zs[i]);
	for (int i = 0; i < ZT_BUFS; i++)
		free(t->buf[i]);
	free(t);
}

static void ztls_key_init(void)
{
	(void)pthread_key_create(&ztls_key, ztls_free);
}

static struct ztls *ztls_get(void)
{
	struct ztls *t;

	pthread_once(&ztls_once, ztls_key_init);
	t = pthread_getspecific(ztls_key);
	if (!t) {
		t = calloc(1, sizeof(*t));
		if (t && pthread_setspecific(ztls_key, t) != 0) {
			free(t);
			t = NULL;
		}
	}
	return t;
}

ZSTD_DCtx *imgfmt_zstd_dctx(void)
{
	struct ztls *t = ztls_get();

	if (!t)
		return NULL;
	if (!t->zd)
		t->zd = ZSTD_createDCtx();
	else
		ZSTD_DCtx_reset(t->zd, ZSTD_reset_session_only);
	return t->zd;
}

z_stream *imgfmt_zlib_inflater(int window_bits)
{
	struct ztls *t = ztls_get();
	int i;

	if (!t)
		return NULL;
	for (i = 0; i < ZT_STREAMS; i++)
		if (t->zs_live[i] && t->zs_bits[i] == window_bits)
			return inflateReset(&t->zs[i]) == Z_OK ? &t->zs[i]
							       : NULL;
	for (i = 0; i < ZT_STREAMS && t->zs_live[i]; i++)
		;
	if (i == ZT_STREAMS) {
		/* Both in use for other window sizes: retarget the first. */
		if (inflateReset2(&t->zs[0], window_bits) != Z_OK)
			return NULL;
		t->zs_bits[0] = window_bits;
		return &t->zs[0];
	}
	memset(&t->zs[i], 0, sizeof(t->zs[i]));
	if (inflateInit2(&t->zs[i], window_bits) != Z_OK)
		return NULL;
	t->zs_live[i] = 1;
	t->zs_bits[i] = window_bits;
	return &t->zs[i];
}

static void *ztls_buf(int which, size_t n)
{
	struct ztls *t = ztls_get();

	if (!t || which < 0 || which >= ZT_BUFS)
		return NULL;
	if (t->buf_len[which] < n) {
		void *p = malloc(n);
		if (!p)
			return NULL;
		free(t->buf[which]);
		t->buf[which] = p;
		t->buf_len[which] = n;
	}
	return t->buf[which];
}

void *imgfmt_zscratch(int which, size_t n)
{
	return which == 0 || which == 1 ? ztls_buf(which, n) : NULL;
}

/* ---- the cache -------------------------------------------------------- */

enum { ZE_EMPTY, ZE_FILLING, ZE_VALID };

struct zent {
	struct imgfmt_zkey key;
	int state;
	uint64_t tick;
	uint8_t *buf; /* allocated on first use */
};

struct imgfmt_zcache {
	pthread_mutex_t lock;
	pthread_cond_t filled;
	size_t C;
	unsigned n;
	uint64_t tick;
	struct zent e[];
};

struct imgfmt_zcache *imgfmt_zcache_new(unsigned entries, size_t cluster_size)
{
	struct imgfmt_zcache *zc;

	if (entries == 0)
		return NULL;
	zc = calloc(1, sizeof(*zc) + entries * sizeof(zc->e[0]));
	if (!zc)
		return NULL;
	pthread_mutex_init(&zc->lock, NULL);
	pthread_cond_init(&zc->filled, NULL);
	zc->C = cluster_size;
	zc->n = entries;
	return zc;
}

void imgfmt_zcache_free(struct imgfmt_zcache *zc)
{
	if (!zc)
		return;
	for (unsigned i = 0; i < zc->n; i++)
		free(zc->e[i].buf);
	pthread_cond_destroy(&zc->filled);
	pthread_mutex_destroy(&zc->lock);
	free(zc);
}

unsigned imgfmt_zcache_entries(size_t cache_bytes, size_t cluster_size)
{
	size_t n = cluster_size ? cache_bytes / 4 / cluster_size : 0;

	return n < 2 ? 2 : n > 16 ? 16 : (unsigned)n;
}

static int zkey_eq(const struct imgfmt_zkey *a, const struct imgfmt_zkey *b)
{
	return a->off == b->off && a->len == b->len && a->check == b->check;
}

static int zcache_uncached(size_t C, uint32_t o, uint32_t len, uint8_t *dst,
			   imgfmt_zfill_fn fill, void *arg)
{
	uint8_t *b;
	int r;

	if (o == 0 && len == C)
		return fill(arg, dst);
	b = ztls_buf(2, C);
	if (!b)
		return imgfmt_err(ENOMEM, "out of memory");
	r = fill(arg, b);
	if (r == 0)
		memcpy(dst, b + o, len);
	return r;
}

/*
 * Why a hit is never stale: the key is the descriptor's own content, the
 * location, length and (where the format has one) checksum of the
 * compressed bytes.  The drivers never write compressed clusters into an
 * open image (only the converters do, into a new file), so while a handle
 * is open, bytes at a given (offset, length) that a compressed descriptor
 * names never change: a write into the cluster stores it uncompressed
 * elsewhere and changes its descriptor's type and offset, a discard makes
 * it a zero or unallocated descriptor; neither looks the cache up with
 * the old key again.  A freed compressed range that is reused holds data
 * clusters or tables, never a compressed cluster under the old key.
 * AVD fills under its shared lock and writes under its exclusive one, so
 * no fill races a descriptor change.  qcow2 does not order its reads
 * against its writes at all (as before this cache): a fill that raced a
 * rewrite and read reused bytes fails to decompress and is not cached,
 * and even if it did not fail, no descriptor names its key any more.
 */
int imgfmt_zcache_read(struct imgfmt_zcache *zc, size_t cluster_size,
		       const struct imgfmt_zkey *key, uint32_t o, uint32_t len,
		       uint8_t *dst, imgfmt_zfill_fn fill, void *arg)
{
	struct zent *hit, *victim;
	int r;

	if (!zc || zc->C != cluster_size)
		return zcache_uncached(cluster_size, o, len, dst, fill, arg);
	pthread_mutex_lock(&zc->lock);
	for (;;) {
		hit = NULL;
		for (unsigned i = 0; i < zc->n; i++)
			if (zc->e[i].state != ZE_EMPTY &&
			    zkey_eq(&zc->e[i].key, key)) {
				hit = &zc->e[i];
				break;
			}
		if (!hit || hit->state == ZE_VALID)
			break;
		/* Another thread is decompressing this very cluster: a
		 * client reading it 4 KiB at a time at queue depth 16 asks
		 * for all of it at once. */
		pthread_cond_wait(&zc->filled, &zc->lock);
	}
	if (hit) {
		hit->tick = ++zc->tick;
		memcpy(dst, hit->buf + o, len);
		pthread_mutex_unlock(&zc->lock);
		return 0;
	}
	/* A whole-cluster read is not worth caching (a sequential reader
	 * does not come back), and needs no copy. */
	victim = NULL;
	if (!(o == 0 && len == zc->C))
		for (unsigned i = 0; i < zc->n; i++) {
			struct zent *e = &zc->e[i];
			if (e->state == ZE_FILLING)
				continue;
			if (!victim || e->state == ZE_EMPTY ||
			    (victim->state != ZE_EMPTY && e->tick < victim->tick))
				victim = e;
			if (e->state == ZE_EMPTY)
				break;
		}
	if (victim && !victim->buf)
		victim->buf = malloc(zc->C);
	if (!victim || !victim->buf) {
		pthread_mutex_unlock(&zc->lock);
		return zcache_uncached(cluster_size, o, len, dst, fill, arg);
	}
	victim->key = *key;
	victim->state = ZE_FILLING;
	pthread_mutex_unlock(&zc->lock);

	r = fill(arg, victim->buf);

	pthread_mutex_lock(&zc->lock);
	if (r == 0) {
		victim->state = ZE_VALID;
		victim->tick = ++zc->tick;
		memcpy(dst, victim->buf + o, len);
	} else {
		victim->state = ZE_EMPTY; /* not cached: fails every read */
	}
	pthread_cond_broadcast(&zc->filled);
	pthread_mutex_unlock(&zc->lock);
	return r;
}
