/*
 * driver.h - what a format module implements, and what the core gives it.
 *
 * Internal to imgfmt/.  Each format lives in its own file (avd.c, raw.c,
 * qcow2.c, vmdk.c, vhd.c) and exports one `const struct imgfmt_driver`.
 * The core (imgfmt.c) detects the format by asking every driver to bid on
 * the first bytes of the file (libarchive's scheme), opens the backing
 * chain, checks every caller-supplied range against the virtual size, and
 * only then calls the driver, so drivers see in-range requests only.
 *
 * Drivers must treat every byte they read from a file as hostile: bounds-
 * check offsets and lengths against the file size before use, cap every
 * allocation whose size comes from the file, and report corruption with
 * imgfmt_err() naming the field.
 */
#ifndef IMGFMT_DRIVER_H
#define IMGFMT_DRIVER_H

#include <pthread.h>
#include <stdarg.h>
#include <sys/types.h>

#include "common/durable.h"
#include "imgfmt.h"
#include "writer.h"

struct imgfmt_driver {
	const char *name;

	/* How sure the driver is that `head` (the first `len` bytes of a
	 * file of `file_size` bytes) is its format: 0 not at all, 100 magic
	 * matched.  raw bids 1 on anything. */
	int (*probe)(const uint8_t *head, size_t len, uint64_t file_size);

	/* Parse the image.  On entry img->fd, img->path, img->base,
	 * img->file_length and img->read_only are set.  The driver sets
	 * img->virtual_size, img->priv, and, if the image has a backing
	 * file, img->backing_name / img->backing_format (the core opens it
	 * after open returns).  On failure the driver frees what it
	 * allocated and returns imgfmt_err(...). */
	int (*open)(imgfmt_image *img);
	void (*close)(imgfmt_image *img);

	/* Ranges are within [0, virtual_size) and len > 0. */
	int (*pread)(imgfmt_image *img, void *buf, size_t len, uint64_t off);
	int (*pwrite)(imgfmt_image *img, const void *buf, size_t len,
		      uint64_t off);                       /* NULL: read-only */
	int (*flush)(imgfmt_image *img);                   /* NULL: no-op */
	int (*discard)(imgfmt_image *img, uint64_t off, uint64_t len);
	int (*write_zeroes)(imgfmt_image *img, uint64_t off, uint64_t len,
			    unsigned flags);
	int (*map)(imgfmt_image *img, uint64_t off, uint64_t len,
		   struct imgfmt_extent *ext);
	int (*resize)(imgfmt_image *img, uint64_t new_size);
	/* Fill format-specific fields; the core has filled the generic ones
	 * (format, virtual_size, file_size, read_only, backing, chain). */
	int (*info)(imgfmt_image *img, struct imgfmt_info *info);
	int (*check)(imgfmt_image *img, int repair,
		     struct imgfmt_check_result *res);

	/* Create an empty image at `path` (the file does not exist yet and
	 * must be created with O_EXCL). */
	int (*create)(const char *path, const struct imgfmt_create_opts *opts);

	/* Streaming writer (writer.h).  All NULL: imgfmt/writer.c writes the
	 * format through create + open read-write + pwrite instead.
	 * writer_open is called with w->fd open on the new file and
	 * w->chunk_size set to the default; it may change chunk_size.
	 * writer_finish and writer_abort free w->priv (finish even when it
	 * fails); the core closes w->fd and unlinks nothing.  Without
	 * writer_encode, chunks borrow the caller's data (writer.h), which
	 * is valid only until writer_put returns: such a put must write it
	 * before returning, not queue it. */
	int (*writer_open)(struct imgfmt_writer *w);
	int (*writer_encode)(struct imgfmt_writer *w, const void *data,
			     uint64_t off, uint32_t len,
			     struct imgfmt_chunk *chunk);
	int (*writer_put)(struct imgfmt_writer *w, struct imgfmt_chunk *chunk);
	int (*writer_finish)(struct imgfmt_writer *w);
	void (*writer_abort)(struct imgfmt_writer *w);
};

struct imgfmt_writer {
	const struct imgfmt_driver *drv;
	struct imgfmt_writer_opts opts; /* strings owned by the caller */
	char *path;
	int fd;
	uint32_t chunk_size;
	uint64_t next_offset;  /* put() must not go below this */
	void *priv;            /* the driver's state */
	imgfmt_image *img;     /* the create+pwrite fallback's image */
	size_t buf_size;       /* imgfmt_writer_buf_get's size (writer_open
	                          sets it; 0: the chunk size) */
	struct imgfmt_writer_io *io; /* writer.c: gathered appends, buffer
	                                pool, early writeback */
	struct durable_new file; /* fd's file, named path by finish
	                            (file.fd -1: the create fallback's) */
};

struct imgfmt_image {
	const struct imgfmt_driver *drv;
	char *path;            /* as given to imgfmt__open */
	int fd;
	int read_only;
	unsigned flags;        /* enum imgfmt_open_flags */
	size_t cache_bytes;    /* metadata cache bound (never 0) */
	uint64_t base;         /* image byte 0 is at this file offset */
	uint64_t file_length;  /* bytes of the file that belong to the image */
	uint64_t virtual_size;
	void *priv;            /* the driver's state */

	/* Backing chain.  The driver names the file; the core opens it. */
	char *backing_name;    /* as recorded in the image, or NULL */
	char *backing_format;  /* NULL: detect */
	imgfmt_image *backing; /* opened read-only, or NULL */
	int depth;             /* 1 + depth of the backing chain below */

	/* Raw by detection, not by name: writes that would make the first
	 * bytes look like another format are refused (imgfmt.c,
	 * guard_raw_head), and head_lock orders those writes. */
	int raw_probed;
	pthread_mutex_t head_lock;
};

/* Record an error message (printf-style) for this thread and return -err.
 * `err` is a positive errno value. */
int imgfmt_err(int err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* pread/pwrite the image's file at image-relative offset `off`, looping
 * over short transfers.  Reading past the image's end in the file is an
 * error (-EIO with a message naming `what`). */
int imgfmt_file_read(imgfmt_image *img, void *buf, size_t len, uint64_t off,
		     const char *what);
int imgfmt_file_write(imgfmt_image *img, const void *buf, size_t len,
		      uint64_t off);

/* Read from the backing chain for a range this image does not hold:
 * zeros where there is no backing image or it is shorter. */
int imgfmt_backing_read(imgfmt_image *img, void *buf, size_t len,
			uint64_t off);

/* pwrite a writer's file at `off`, looping over short writes; the
 * message names the file.  Every streaming writer appends through it. */
int imgfmt_writer_write(struct imgfmt_writer *w, const void *buf, size_t len,
			uint64_t off);

/* A driver's create for a format with a streaming writer: the writer
 * given no data, which writes an empty image. */
int imgfmt_writer_create_empty(const char *path,
			       const struct imgfmt_writer_opts *wo);

/* Queue `len` bytes of `buf` for file offset `off`, taking ownership of
 * buf (a malloc'ed block, normally from imgfmt_writer_buf_get): appends
 * that follow one another in the file are written together with one
 * pwritev per ~1 MiB, and the buffers go back to the pool once written.
 * imgfmt_writer_write and finish write what is queued first. */
int imgfmt_writer_append(struct imgfmt_writer *w, void *buf, size_t len,
			 uint64_t off);
int imgfmt_writer_flush_appends(struct imgfmt_writer *w);

/* Recycled buffers of w->buf_size bytes for encode (thread-safe): a fresh
 * allocation costs a page fault per 4 KiB, more than filling it.  NULL:
 * out of memory (the caller reports it). */
void *imgfmt_writer_buf_get(struct imgfmt_writer *w);
void imgfmt_writer_buf_put(struct imgfmt_writer *w, void *buf);

/* This thread's zstd compression context (parameters are the caller's to
 * reset), freed when the thread exits; NULL: out of memory. */
struct ZSTD_CCtx_s;
struct ZSTD_CCtx_s *imgfmt_writer_zstd_cctx(void);

/* Open a file to read an image from (flags: O_RDONLY or O_RDWR), and
 * fstat it into *st.  Returns the fd, or a negative errno with the
 * message set.  Opened O_NONBLOCK first, so a FIFO cannot hang the open.
 * A path the user named may be a regular file or a block device (a disk
 * read as raw); a path an image names (named_by_image: a backing file, a
 * VMDK extent) must be a regular file, or a downloaded image could make
 * us read a FIFO forever, /dev/zero without end, or a host disk into a
 * guest or a converted copy. */
struct stat;
int imgfmt_open_file(const char *path, int flags, int named_by_image,
		     struct stat *st);

/* Where a backing name recorded in an image points: absolute names as
 * they are, relative ones next to the image (as qemu-img does), so an
 * image and its backing file can move together.  malloc'ed, or NULL. */
char *imgfmt_resolve_path(const char *image_path, const char *name);

/* Does the buffer hold only zero bytes? (fast, word at a time) */
int imgfmt_is_zero(const void *buf, size_t len);

/* Every driver the library knows, NULL-terminated, in probe order. */
extern const struct imgfmt_driver *const imgfmt_drivers[];
const struct imgfmt_driver *imgfmt_driver_find(const char *name);

extern const struct imgfmt_driver imgfmt_raw_driver;

#endif /* IMGFMT_DRIVER_H */
