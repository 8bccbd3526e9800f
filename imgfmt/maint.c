/*
 * maint.c - image maintenance: commit, rebase, compact.
 *
 * Written over the public API (map + pread + pwrite), so commit and the
 * data part of rebase work for every writable format; only rewriting the
 * backing reference in a header is format-specific (AVD: avd__set_backing).
 * Compact streams a new AVD through the writer, which names it only when
 * it is complete and durable.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "avd.h"

#define MAINT_BUF (1u << 20)

/* Re-open `img`'s backing chain (after commit wrote to it through another
 * handle, the old read-only handle's caches are stale). */
static int maint_reopen_backing(imgfmt_image *img, const char *path,
				const char *format)
{
	struct imgfmt_open_opts o = {
		.format = format,
		.cache_bytes = img->cache_bytes,
		.flags = img->flags & ~(unsigned)IMGFMT_OPEN_RDWR,
	};
	imgfmt_image *nb = NULL;
	int r = imgfmt__open(path, &o, &nb);

	if (r < 0)
		return r;
	if (img->backing)
		imgfmt__close(img->backing);
	img->backing = nb;
	img->depth = 1 + nb->depth;
	return 0;
}

int imgfmt__commit(imgfmt_image *img)
{
	imgfmt_image *b = NULL;
	uint8_t *buf = NULL;
	char *bpath = NULL, *bfmt = NULL;
	struct imgfmt_extent e;
	int r;

	if (!img->backing)
		return imgfmt_err(EINVAL, "%s: commit: the image has no backing "
				  "file open", img->path);
	if (img->read_only)
		return imgfmt_err(EROFS, "%s: commit: the image must be open "
				  "read-write (it is emptied afterwards)",
				  img->path);
	bpath = strdup(img->backing->path);
	bfmt = strdup(img->backing->drv->name);
	buf = malloc(MAINT_BUF);
	if (!bpath || !bfmt || !buf) {
		r = imgfmt_err(ENOMEM, "out of memory");
		goto out;
	}
	struct imgfmt_open_opts o = {
		.flags = IMGFMT_OPEN_RDWR, .format = bfmt,
		.cache_bytes = img->cache_bytes,
	};
	r = imgfmt__open(bpath, &o, &b);
	if (r < 0)
		goto out;
	if (b->virtual_size < img->virtual_size) {
		r = imgfmt__resize(b, img->virtual_size);
		if (r < 0)
			goto out;
	}
	for (uint64_t off = 0; off < img->virtual_size; off += e.length) {
		r = imgfmt__map(img, off, img->virtual_size - off, &e);
		if (r < 0)
			goto out;
		if (e.kind == IMGFMT_EXTENT_BACKING)
			continue;
		if (e.kind == IMGFMT_EXTENT_ZERO) {
			r = imgfmt__write_zeroes(b, off, e.length, 0);
			if (r < 0)
				goto out;
			continue;
		}
		for (uint64_t p = 0; p < e.length; p += MAINT_BUF) {
			size_t n = e.length - p < MAINT_BUF
					   ? (size_t)(e.length - p) : MAINT_BUF;
			r = imgfmt__pread(img, buf, n, off + p);
			if (r == 0)
				r = imgfmt__pwrite(b, buf, n, off + p);
			if (r < 0)
				goto out;
		}
	}
	/* The backing file holds everything before the overlay forgets it. */
	r = imgfmt__flush(b);
	if (r == 0) {
		r = imgfmt__close(b);
		b = NULL;
	}
	if (r < 0)
		goto out;
	r = maint_reopen_backing(img, bpath, bfmt);
	if (r == 0 && img->drv == &imgfmt_avd_driver)
		r = avd__refresh_digest(img);
	if (r == 0)
		r = imgfmt__discard(img, 0, img->virtual_size);
	if (r == 0)
		r = imgfmt__flush(img);
out:
	if (b)
		imgfmt__close(b);
	free(buf);
	free(bpath);
	free(bfmt);
	return r;
}

/* Is `nb` or anything below it the file `img` is? */
static int maint_chain_contains(imgfmt_image *nb, imgfmt_image *img)
{
	struct stat a, s;

	if (fstat(img->fd, &a) < 0)
		return 0;
	for (imgfmt_image *p = nb; p; p = p->backing)
		if (fstat(p->fd, &s) == 0 && s.st_dev == a.st_dev &&
		    s.st_ino == a.st_ino)
			return 1;
	return 0;
}

int imgfmt__rebase(imgfmt_image *img, const char *new_backing,
		   const char *new_backing_format, int unsafe)
{
	imgfmt_image *nb = NULL;
	uint8_t *cur = NULL, *nbuf = NULL;
	struct imgfmt_extent e;
	int r;

	if (img->drv != &imgfmt_avd_driver)
		return imgfmt_err(ENOTSUP, "%s: rebase: changing the backing "
				  "file of %s images is not supported",
				  img->path, img->drv->name);
	if (img->read_only)
		return imgfmt_err(EROFS, "%s: rebase: the image must be open "
				  "read-write", img->path);
	if (new_backing && !*new_backing)
		new_backing = NULL;
	if (new_backing) {
		char *p = imgfmt_resolve_path(img->path, new_backing);
		struct imgfmt_open_opts o = {
			.format = new_backing_format,
			.cache_bytes = img->cache_bytes,
		};
		if (!p)
			return imgfmt_err(ENOMEM, "out of memory");
		r = imgfmt__open(p, &o, &nb);
		free(p);
		if (r < 0 && !unsafe)
			return r;
		if (r < 0)
			nb = NULL; /* -u: the new backing may not exist yet */
		if (nb && maint_chain_contains(nb, img)) {
			imgfmt__close(nb);
			return imgfmt_err(ELOOP, "%s: rebase: %s would make the "
					  "backing chain loop", img->path,
					  new_backing);
		}
		if (nb && nb->depth + 1 > IMGFMT_MAX_CHAIN) {
			imgfmt__close(nb);
			return imgfmt_err(ELOOP, "%s: rebase: the chain would be "
					  "deeper than %d images", img->path,
					  IMGFMT_MAX_CHAIN);
		}
	}
	if (!unsafe) {
		/* Wherever the guest sees the backing file (or could, after
		 * the switch), copy in what differs from the new chain. */
		uint32_t step = 65536;
		cur = malloc(step);
		nbuf = malloc(step);
		if (!cur || !nbuf) {
			r = imgfmt_err(ENOMEM, "out of memory");
			goto fail;
		}
		for (uint64_t off = 0; off < img->virtual_size;
		     off += e.length) {
			r = imgfmt__map(img, off, img->virtual_size - off, &e);
			if (r < 0)
				goto fail;
			if (e.kind == IMGFMT_EXTENT_DATA)
				continue;
			for (uint64_t p = 0; p < e.length; p += step) {
				size_t n = e.length - p < step
						   ? (size_t)(e.length - p)
						   : step;
				uint64_t at = off + p;
				r = imgfmt__pread(img, cur, n, at);
				if (r < 0)
					goto fail;
				memset(nbuf, 0, n);
				if (nb && at < nb->virtual_size) {
					size_t m = nb->virtual_size - at < n
						? (size_t)(nb->virtual_size - at)
						: n;
					r = imgfmt__pread(nb, nbuf, m, at);
					if (r < 0)
						goto fail;
				}
				if (memcmp(cur, nbuf, n) == 0)
					continue;
				r = imgfmt__pwrite(img, cur, n, at);
				if (r < 0)
					goto fail;
			}
		}
		r = imgfmt__flush(img);
		if (r < 0)
			goto fail;
	}
	r = avd__set_backing(img, new_backing,
			     new_backing ? new_backing_format : NULL, 0);
	if (r < 0)
		goto fail;
	if (img->backing)
		imgfmt__close(img->backing);
	img->backing = nb;
	img->depth = nb ? 1 + nb->depth : 1;
	free(cur);
	free(nbuf);
	return 0;
fail:
	if (nb)
		imgfmt__close(nb);
	free(cur);
	free(nbuf);
	return r;
}

/* Does the chunk at [off, off+len) hold anything of `src`'s own?  Chunks
 * that are entirely backing (or holes) are left unallocated. */
static int maint_chunk_needed(imgfmt_image *src, uint64_t off, uint64_t len,
			      int *needed)
{
	struct imgfmt_extent e;

	*needed = 0;
	for (uint64_t p = off; p < off + len; p += e.length) {
		int r = imgfmt__map(src, p, off + len - p, &e);
		if (r < 0)
			return r;
		if (e.kind == IMGFMT_EXTENT_DATA ||
		    (e.kind == IMGFMT_EXTENT_ZERO && src->backing_name)) {
			*needed = 1;
			return 0;
		}
	}
	return 0;
}

int imgfmt__compact(imgfmt_image *src, const char *dst_path,
		    int compress_level)
{
	struct imgfmt_info info;
	struct imgfmt_writer_opts wo = { 0 };
	imgfmt_writer *w = NULL;
	uint8_t *buf = NULL;
	int r;

	r = imgfmt__info(src, &info);
	if (r < 0)
		return r;
	wo.format = "avd";
	wo.size = src->virtual_size;
	wo.cluster_size = info.cluster_size >= IMGFMT_MIN_CLUSTER &&
			  info.cluster_size <= IMGFMT_MAX_CLUSTER &&
			  !(info.cluster_size & (info.cluster_size - 1))
			  ? info.cluster_size : 0;
	wo.compress = compress_level > 0;
	wo.compress_level = compress_level;
	wo.backing_file = src->backing_name;
	wo.backing_format = src->backing_format;
	wo.uuid = info.has_uuid ? info.uuid : NULL;
	/* The writer names dst_path only once the image is complete: a
	 * compact that fails or is killed leaves it as it was. */
	wo.replace = 1;
	r = imgfmt__writer_open(dst_path, &wo, &w);
	if (r < 0)
		return r;
	uint32_t cs = imgfmt__writer_chunk_size(w);
	buf = malloc(cs);
	if (!buf) {
		r = imgfmt_err(ENOMEM, "out of memory");
		goto fail;
	}
	for (uint64_t off = 0; off < src->virtual_size; off += cs) {
		uint32_t n = src->virtual_size - off < cs
				     ? (uint32_t)(src->virtual_size - off) : cs;
		int needed;
		struct imgfmt_chunk ch;
		r = maint_chunk_needed(src, off, n, &needed);
		if (r < 0)
			goto fail;
		if (!needed)
			continue;
		r = imgfmt__pread(src, buf, n, off);
		if (r < 0)
			goto fail;
		/* Without a backing file, zeros need not be stored at all. */
		if (!src->backing_name && imgfmt_is_zero(buf, n))
			continue;
		r = imgfmt__writer_encode(w, buf, off, n, &ch);
		if (r == 0)
			r = imgfmt__writer_put(w, &ch);
		imgfmt__chunk_release(&ch);
		if (r < 0)
			goto fail;
	}
	r = imgfmt__writer_finish(w);
	free(buf);
	return r;
fail:
	imgfmt__writer_abort(w);
	free(buf);
	return r;
}
