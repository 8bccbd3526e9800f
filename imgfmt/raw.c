/*
 * raw.c - the raw format: the file is the disk, byte for byte.
 *
 * Sparseness comes from the host filesystem: holes are found with
 * SEEK_DATA/SEEK_HOLE, discard punches holes, write-zeroes uses
 * FALLOC_FL_ZERO_RANGE where the filesystem has it.  An image embedded in a
 * larger file (base/file_length) is served too, but its size is fixed.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "driver.h"

static int raw__probe(const uint8_t *head, size_t len, uint64_t file_size)
{
	(void)head;
	(void)len;
	(void)file_size;
	return 1;
}

static int raw__open(imgfmt_image *img)
{
	img->virtual_size = img->file_length;
	return 0;
}

static int raw__pread(imgfmt_image *img, void *buf, size_t len, uint64_t off)
{
	return imgfmt_file_read(img, buf, len, off, "data");
}

static int raw__pwrite(imgfmt_image *img, const void *buf, size_t len,
		       uint64_t off)
{
	return imgfmt_file_write(img, buf, len, off);
}

static int raw__flush(imgfmt_image *img)
{
	if (fdatasync(img->fd) < 0 && errno != EINVAL)
		return imgfmt_err(errno, "%s: fdatasync: %s", img->path,
				  strerror(errno));
	return 0;
}

/* Zero a range by writing zeros (the portable fallback). */
static int raw__zero_by_writing(imgfmt_image *img, uint64_t off, uint64_t len)
{
	static const uint8_t zeros[65536];

	while (len > 0) {
		size_t n = len < sizeof(zeros) ? (size_t)len : sizeof(zeros);
		int r = imgfmt_file_write(img, zeros, n, off);
		if (r < 0)
			return r;
		off += n;
		len -= n;
	}
	return 0;
}

static int raw__discard(imgfmt_image *img, uint64_t off, uint64_t len)
{
	if (fallocate(img->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)(img->base + off), (off_t)len) == 0)
		return 0;
	return raw__zero_by_writing(img, off, len);
}

static int raw__write_zeroes(imgfmt_image *img, uint64_t off, uint64_t len,
			     unsigned flags)
{
	if ((flags & IMGFMT_ZERO_MAY_UNMAP) &&
	    fallocate(img->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)(img->base + off), (off_t)len) == 0)
		return 0;
	if (fallocate(img->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
		      (off_t)(img->base + off), (off_t)len) == 0)
		return 0;
	return raw__zero_by_writing(img, off, len);
}

/* Holes are runs the filesystem has not allocated; they read as zeros. */
static int raw__map(imgfmt_image *img, uint64_t off, uint64_t len,
		    struct imgfmt_extent *ext)
{
	off_t start = (off_t)(img->base + off);
	off_t end = (off_t)(img->base + off + len);
	off_t data = lseek(img->fd, start, SEEK_DATA);

	ext->length = len;
	ext->kind = IMGFMT_EXTENT_DATA;
	if (data < 0) {
		if (errno == ENXIO) { /* no data after start: all hole */
			ext->kind = IMGFMT_EXTENT_ZERO;
			return 0;
		}
		/* SEEK_DATA unsupported: call everything data. */
		ext->file_offset = (int64_t)off;
		return 0;
	}
	if (data > start) {
		ext->kind = IMGFMT_EXTENT_ZERO;
		ext->length = (uint64_t)((data < end ? data : end) - start);
		return 0;
	}
	off_t hole = lseek(img->fd, start, SEEK_HOLE);
	if (hole < 0 || hole > end)
		hole = end;
	ext->length = (uint64_t)(hole - start);
	ext->file_offset = (int64_t)off;
	if (ext->length == 0)
		ext->length = len;
	return 0;
}

static int raw__resize(imgfmt_image *img, uint64_t new_size)
{
	if (img->base != 0)
		return imgfmt_err(ENOTSUP, "%s: an embedded raw image cannot "
				  "be resized", img->path);
	if (ftruncate(img->fd, (off_t)new_size) < 0)
		return imgfmt_err(errno, "%s: resize: %s", img->path,
				  strerror(errno));
	img->virtual_size = img->file_length = new_size;
	return 0;
}

static int raw__create(const char *path, const struct imgfmt_create_opts *o)
{
	int fd;

	if (o->backing_file)
		return imgfmt_err(EINVAL, "%s: raw images cannot have a "
				  "backing file", path);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		return imgfmt_err(errno, "%s: %s", path, strerror(errno));
	if (ftruncate(fd, (off_t)o->size) < 0 || fsync(fd) < 0) {
		int e = errno;
		close(fd);
		unlink(path);
		return imgfmt_err(e, "%s: %s", path, strerror(e));
	}
	close(fd);
	return 0;
}

/* The streaming writer (writer.h): raw has no clusters, so it takes
 * large chunks, and a copy is a few big pwrites with the all-zero chunks
 * (which convert skips) and all-zero blocks inside chunks left as
 * holes. */
static int raw__writer_open(struct imgfmt_writer *w)
{
	if (w->opts.compress)
		return imgfmt_err(ENOTSUP, "%s: raw images cannot be written "
				  "compressed", w->path);
	if (w->opts.backing_file)
		return imgfmt_err(EINVAL, "%s: raw images cannot have a "
				  "backing file", w->path);
	w->chunk_size = 1u << 20;
	if (ftruncate(w->fd, (off_t)w->opts.size) < 0)
		return imgfmt_err(errno, "%s: %s", w->path, strerror(errno));
	return 0;
}

/* Write the chunk's 4 KiB blocks that are not all zeros, in runs: the
 * file was sized at open, so the others stay holes, as fine-grained as
 * qemu-img's (a 1 MiB chunk of an ext4 disk is often part zeros).  A
 * zero block costs a 4 KiB compare; a data block's compare stops at its
 * first non-zero byte. */
#define RAW_SPARSE_BLOCK 4096u

static int raw__writer_put(struct imgfmt_writer *w, struct imgfmt_chunk *c)
{
	const uint8_t *d = c->data;
	size_t len = c->data_len, run = 0, pos = 0;

	while (pos < len) {
		size_t n = len - pos < RAW_SPARSE_BLOCK ? len - pos
							: RAW_SPARSE_BLOCK;
		if (!imgfmt_is_zero(d + pos, n)) {
			pos += n;
			continue;
		}
		if (pos > run) {
			int r = imgfmt_writer_write(w, d + run, pos - run,
						    c->offset + run);
			if (r < 0)
				return r;
		}
		pos += n;
		run = pos;
	}
	if (pos > run)
		return imgfmt_writer_write(w, d + run, pos - run,
					   c->offset + run);
	return 0;
}

static int raw__writer_finish(struct imgfmt_writer *w)
{
	(void)w; /* the size was set at open; the core fsyncs */
	return 0;
}

const struct imgfmt_driver imgfmt_raw_driver = {
	.name = "raw",
	.probe = raw__probe,
	.open = raw__open,
	.pread = raw__pread,
	.pwrite = raw__pwrite,
	.flush = raw__flush,
	.discard = raw__discard,
	.write_zeroes = raw__write_zeroes,
	.map = raw__map,
	.resize = raw__resize,
	.create = raw__create,
	.writer_open = raw__writer_open,
	.writer_put = raw__writer_put,
	.writer_finish = raw__writer_finish,
};
