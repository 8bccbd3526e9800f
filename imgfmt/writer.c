/*
 * writer.c - streaming writers (writer.h): dispatch to the format's own
 * writer, or write through create + pwrite for formats that have none.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "driver.h"

int imgfmt__writer_open(const char *path, const struct imgfmt_writer_opts *o,
			imgfmt_writer **out)
{
	const char *fmt = o->format ? o->format : "avd";
	const struct imgfmt_driver *d = imgfmt_driver_find(fmt);
	imgfmt_writer *w;
	int r;

	*out = NULL;
	if (!d)
		return imgfmt_err(EINVAL, "unknown image format '%s'", fmt);
	if (o->size > IMGFMT_MAX_VIRTUAL_SIZE)
		return imgfmt_err(EFBIG, "%s: size %llu is larger than the "
				  "supported maximum (64 TiB)", path,
				  (unsigned long long)o->size);
	if (!d->writer_open && !d->create)
		return imgfmt_err(ENOTSUP, "cannot write %s images", fmt);
	w = calloc(1, sizeof(*w));
	if (!w)
		return imgfmt_err(ENOMEM, "out of memory");
	w->drv = d;
	w->opts = *o;
	w->opts.format = d->name;
	w->fd = -1;
	w->chunk_size = o->cluster_size ? o->cluster_size
					: IMGFMT_DEFAULT_CLUSTER;
	w->path = strdup(path);
	if (!w->path) {
		free(w);
		return imgfmt_err(ENOMEM, "out of memory");
	}

	if (d->writer_open) {
		w->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (w->fd < 0) {
			r = imgfmt_err(errno, "%s: %s", path, strerror(errno));
			goto fail;
		}
		r = d->writer_open(w);
		if (r < 0)
			goto fail;
	} else {
		struct imgfmt_create_opts c = {
			.format = d->name,
			.size = o->size,
			.cluster_size = o->cluster_size,
			.backing_file = o->backing_file,
			.backing_format = o->backing_format,
			.uuid = o->uuid,
			.compress_level = o->compress_level,
		};
		struct imgfmt_open_opts oo = {
			.flags = IMGFMT_OPEN_RDWR | IMGFMT_OPEN_NO_BACKING,
			.format = d->name,
		};
		if (o->compress)
			goto not_compressible;
		r = imgfmt__create(path, &c);
		if (r < 0)
			goto fail;
		r = imgfmt__open(path, &oo, &w->img);
		if (r < 0)
			goto fail;
	}
	if (w->chunk_size == 0 || (w->chunk_size & (w->chunk_size - 1))) {
		r = imgfmt_err(EINVAL, "%s: bad chunk size %u", path,
			       w->chunk_size);
		goto fail;
	}
	*out = w;
	return 0;

not_compressible:
	r = imgfmt_err(ENOTSUP, "%s images cannot be written compressed", fmt);
fail:
	imgfmt__writer_abort(w);
	return r;
}

int imgfmt_writer_write(struct imgfmt_writer *w, const void *buf, size_t len,
			uint64_t off)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = pwrite(w->fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return imgfmt_err(errno, "%s: write at %llu: %s",
					  w->path, (unsigned long long)off,
					  strerror(errno));
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

uint32_t imgfmt__writer_chunk_size(const imgfmt_writer *w)
{
	return w->chunk_size;
}

int imgfmt__writer_encode(imgfmt_writer *w, const void *guest_data,
			  uint64_t offset, uint32_t length,
			  struct imgfmt_chunk *chunk)
{
	memset(chunk, 0, sizeof(*chunk));
	chunk->offset = offset;
	chunk->length = length;
	if (offset % w->chunk_size || length > w->chunk_size ||
	    offset > w->opts.size || length > w->opts.size - offset ||
	    (length < w->chunk_size && offset + length != w->opts.size))
		return imgfmt_err(EINVAL, "%s: chunk %llu+%u is not aligned "
				  "to the %u-byte chunk size", w->path,
				  (unsigned long long)offset, length,
				  w->chunk_size);
	if (w->drv->writer_encode)
		return w->drv->writer_encode(w, guest_data, offset, length,
					     chunk);
	chunk->data = malloc(length);
	if (!chunk->data)
		return imgfmt_err(ENOMEM, "out of memory");
	memcpy(chunk->data, guest_data, length);
	chunk->data_len = length;
	return 0;
}

int imgfmt__writer_put(imgfmt_writer *w, struct imgfmt_chunk *chunk)
{
	int r;

	if (chunk->offset < w->next_offset)
		return imgfmt_err(EINVAL, "%s: chunks must be written in "
				  "ascending order (%llu after %llu)", w->path,
				  (unsigned long long)chunk->offset,
				  (unsigned long long)w->next_offset);
	if (w->drv->writer_put)
		r = w->drv->writer_put(w, chunk);
	else
		r = imgfmt__pwrite(w->img, chunk->data, chunk->length,
				   chunk->offset);
	if (r == 0)
		w->next_offset = chunk->offset + chunk->length;
	return r;
}

void imgfmt__chunk_release(struct imgfmt_chunk *chunk)
{
	free(chunk->data);
	chunk->data = NULL;
	chunk->data_len = 0;
}

static void writer_free(imgfmt_writer *w)
{
	if (w->fd >= 0)
		close(w->fd);
	free(w->path);
	free(w);
}

int imgfmt__writer_finish(imgfmt_writer *w)
{
	int r;

	if (w->drv->writer_finish) {
		r = w->drv->writer_finish(w);
		if (r == 0 && fsync(w->fd) < 0)
			r = imgfmt_err(errno, "%s: fsync: %s", w->path,
				       strerror(errno));
	} else {
		r = imgfmt__flush(w->img);
		int c = imgfmt__close(w->img);
		w->img = NULL;
		if (r == 0)
			r = c;
	}
	writer_free(w);
	return r;
}

void imgfmt__writer_abort(imgfmt_writer *w)
{
	if (!w)
		return;
	if (w->drv->writer_abort && w->priv)
		w->drv->writer_abort(w);
	if (w->img)
		imgfmt__close(w->img);
	writer_free(w);
}
