/*
 * imgfmt.c - the format-independent core: detection, open/close, the
 * backing chain, range checks and dispatch to the format drivers.
 *
 * The core is deliberately thin.  It owns only what is the same for every
 * format: it validates caller arguments once so that no driver has to, it
 * opens backing files (so loop detection and the depth cap live in one
 * place), and it keeps the thread-local error message.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "driver.h"

/* Detection looks at this many bytes at the start of an image. */
#define IMGFMT_PROBE_BYTES 4096

/* ---- errors ---------------------------------------------------------- */

static __thread char imgfmt_errbuf[1024];

const char *imgfmt__error(void)
{
	return imgfmt_errbuf;
}

int imgfmt_err(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(imgfmt_errbuf, sizeof(imgfmt_errbuf), fmt, ap);
	va_end(ap);
	if (err <= 0)
		err = EIO;
	return -err;
}

/* ---- file helpers ---------------------------------------------------- */

int imgfmt_file_read(imgfmt_image *img, void *buf, size_t len, uint64_t off,
		     const char *what)
{
	uint8_t *p = buf;

	if (off > img->file_length || len > img->file_length - off)
		return imgfmt_err(EIO, "%s: %s at offset %llu (+%zu) is past "
				  "the end of the image (%llu bytes)",
				  img->path, what, (unsigned long long)off, len,
				  (unsigned long long)img->file_length);
	while (len > 0) {
		ssize_t n = pread(img->fd, p, len, (off_t)(img->base + off));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return imgfmt_err(errno, "%s: reading %s: %s",
					  img->path, what, strerror(errno));
		if (n == 0)
			return imgfmt_err(EIO, "%s: reading %s: unexpected end "
					  "of file", img->path, what);
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

int imgfmt_file_write(imgfmt_image *img, const void *buf, size_t len,
		      uint64_t off)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = pwrite(img->fd, p, len, (off_t)(img->base + off));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return imgfmt_err(errno, "%s: write at %llu: %s",
					  img->path,
					  (unsigned long long)off,
					  strerror(errno));
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

int imgfmt_is_zero(const void *buf, size_t len)
{
	const uint8_t *p = buf;

	/* Check a 16-byte head by hand, then compare the buffer with itself
	 * shifted by 16: memcmp is vectorised and this needs no zero page. */
	if (len <= 16) {
		for (size_t i = 0; i < len; i++)
			if (p[i])
				return 0;
		return 1;
	}
	for (size_t i = 0; i < 16; i++)
		if (p[i])
			return 0;
	return memcmp(p, p + 16, len - 16) == 0;
}

int imgfmt_backing_read(imgfmt_image *img, void *buf, size_t len,
			uint64_t off)
{
	imgfmt_image *b = img->backing;
	size_t from_backing = 0;

	if (b && off < b->virtual_size) {
		from_backing = len;
		if (b->virtual_size - off < from_backing)
			from_backing = (size_t)(b->virtual_size - off);
		int r = imgfmt__pread(b, buf, from_backing, off);
		if (r < 0)
			return r;
	}
	memset((uint8_t *)buf + from_backing, 0, len - from_backing);
	return 0;
}

/* ---- driver registry ------------------------------------------------- */

const struct imgfmt_driver *imgfmt_driver_find(const char *name)
{
	/* qemu-img calls VHD "vpc"; accept its name too. */
	if (strcmp(name, "vpc") == 0)
		name = "vhd";
	for (size_t i = 0; imgfmt_drivers[i]; i++)
		if (strcmp(imgfmt_drivers[i]->name, name) == 0)
			return imgfmt_drivers[i];
	return NULL;
}

const char *const *imgfmt__formats(void)
{
	static const char *names[16];

	if (!names[0]) {
		size_t i;
		for (i = 0; imgfmt_drivers[i] && i < 15; i++)
			names[i] = imgfmt_drivers[i]->name;
		names[i] = NULL;
	}
	return names;
}

/* Ask every driver to bid on an image's first bytes; highest bid wins. */
static const struct imgfmt_driver *probe_head(const uint8_t *head, size_t n,
					      uint64_t length)
{
	const struct imgfmt_driver *best = &imgfmt_raw_driver;
	int best_bid = 0;

	for (size_t i = 0; imgfmt_drivers[i]; i++) {
		int bid = imgfmt_drivers[i]->probe
			? imgfmt_drivers[i]->probe(head, n, length) : 0;
		if (bid > best_bid) {
			best_bid = bid;
			best = imgfmt_drivers[i];
		}
	}
	return best;
}

static const struct imgfmt_driver *probe_fd(int fd, uint64_t base,
					    uint64_t length)
{
	uint8_t head[IMGFMT_PROBE_BYTES];
	ssize_t n;

	do
		n = pread(fd, head, sizeof(head), (off_t)base);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		n = 0;
	if ((uint64_t)n > length)
		n = (ssize_t)length;
	return probe_head(head, (size_t)n, length);
}

static const char *file_type_name(mode_t m)
{
	return S_ISDIR(m) ? "a directory" : S_ISCHR(m) ? "a character device" :
	       S_ISBLK(m) ? "a block device" : S_ISFIFO(m) ? "a FIFO" :
	       S_ISSOCK(m) ? "a socket" : "not a regular file";
}

/* fd, just opened (or -1, errno set) for the image at `path`, if it is
 * a regular file or (unless an image names it) a block device; else
 * closed and an error. */
static int check_file(int fd, const char *path, int named_by_image,
		      struct stat *st)
{
	int e;

	if (fd < 0)
		return imgfmt_err(errno, "%s: %s", path, strerror(errno));
	if (fstat(fd, st) < 0) {
		e = imgfmt_err(errno, "%s: %s", path, strerror(errno));
		close(fd);
		return e;
	}
	if (!S_ISREG(st->st_mode) && (named_by_image || !S_ISBLK(st->st_mode))) {
		e = imgfmt_err(EINVAL, named_by_image ?
			       "%s is %s; a file an image names (backing file, "
			       "extent) must be a regular file" :
			       "%s is %s, not a regular file or a block device",
			       path, file_type_name(st->st_mode));
		close(fd);
		return e;
	}
	return fd;
}

int imgfmt_open_file(const char *path, int flags, int named_by_image,
		     struct stat *st)
{
	int fd = check_file(open(path, flags | O_CLOEXEC | O_NONBLOCK |
				 O_NOCTTY), path, named_by_image, st);
	int e;

	if (fd < 0)
		return fd;
	/* Regular files ignore O_NONBLOCK; a block device should not. */
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
		e = imgfmt_err(errno, "%s: %s", path, strerror(errno));
		close(fd);
		return e;
	}
	return fd;
}

/* A close-on-exec duplicate of fd (IMGFMT_OPEN_FD) for the image named
 * `path`. */
static int dup_file(const char *path, int fd, struct stat *st)
{
	return check_file(fcntl(fd, F_DUPFD_CLOEXEC, 3), path, 0, st);
}

int imgfmt__probe(const char *path, char *name, size_t name_size)
{
	struct stat st;
	int fd = imgfmt_open_file(path, O_RDONLY, 0, &st);

	if (fd < 0)
		return fd;
	const struct imgfmt_driver *d = probe_fd(fd, 0, (uint64_t)st.st_size);
	close(fd);
	snprintf(name, name_size, "%s", d->name);
	return 0;
}

/* ---- open / close ---------------------------------------------------- */

/* Where a relative backing name points: next to the overlay, as qemu-img
 * does, so an image and its backing file can move together. */
char *imgfmt_resolve_path(const char *image_path, const char *name)
{
	if (name[0] == '/')
		return strdup(name);
	const char *slash = strrchr(image_path, '/');
	if (!slash)
		return strdup(name);
	size_t dirlen = (size_t)(slash - image_path) + 1;
	char *p = malloc(dirlen + strlen(name) + 1);
	if (!p)
		return NULL;
	memcpy(p, image_path, dirlen);
	strcpy(p + dirlen, name);
	return p;
}

struct chain_seen {
	dev_t dev[IMGFMT_MAX_CHAIN];
	ino_t ino[IMGFMT_MAX_CHAIN];
	int n;
};

static int open_chain(const char *path, const struct imgfmt_open_opts *opts,
		      struct chain_seen *seen, imgfmt_image **out);

static int open_backing(imgfmt_image *img, const struct imgfmt_open_opts *o,
			struct chain_seen *seen)
{
	struct imgfmt_open_opts bo = { 0 };
	char *bpath;
	int r;

	if (seen->n >= IMGFMT_MAX_CHAIN)
		return imgfmt_err(ELOOP, "%s: backing chain is deeper than %d "
				  "images", img->path, IMGFMT_MAX_CHAIN);
	bpath = imgfmt_resolve_path(img->path, img->backing_name);
	if (!bpath)
		return imgfmt_err(ENOMEM, "out of memory");
	bo.format = img->backing_format;
	bo.cache_bytes = o->cache_bytes;
	/* The caller's own content check covers this image, not its
	 * backing file: that one keeps its checksums. */
	bo.flags = o->flags & ~(unsigned)(IMGFMT_OPEN_RDWR |
					  IMGFMT_OPEN_NO_DATA_CHECKSUMS);
	r = open_chain(bpath, &bo, seen, &img->backing);
	if (r < 0) {
		/* Keep the inner message but say whose backing file it was. */
		char inner[sizeof(imgfmt_errbuf)];
		snprintf(inner, sizeof(inner), "%s", imgfmt_errbuf);
		imgfmt_err(-r, "%s: backing file %s: %s", img->path, bpath,
			   inner);
		free(bpath);
		return r;
	}
	free(bpath);
	img->depth = 1 + img->backing->depth;
	return 0;
}

static int open_chain(const char *path, const struct imgfmt_open_opts *opts,
		      struct chain_seen *seen, imgfmt_image **out)
{
	struct imgfmt_open_opts defaults = { 0 };
	const struct imgfmt_open_opts *o = opts ? opts : &defaults;
	int rw = (o->flags & IMGFMT_OPEN_RDWR) != 0;
	struct stat st;
	imgfmt_image *img;
	int r;

	*out = NULL;
	if (rw && (o->flags & IMGFMT_OPEN_NO_DATA_CHECKSUMS))
		return imgfmt_err(EINVAL, "%s: IMGFMT_OPEN_NO_DATA_CHECKSUMS "
				  "is for read-only opens", path);
	img = calloc(1, sizeof(*img));
	if (!img)
		return imgfmt_err(ENOMEM, "out of memory");
	img->fd = -1;
	img->path = strdup(path);
	if (!img->path) {
		free(img);
		return imgfmt_err(ENOMEM, "out of memory");
	}
	pthread_mutex_init(&img->head_lock, NULL);
	img->read_only = !rw;
	img->flags = o->flags;
	img->cache_bytes = o->cache_bytes ? o->cache_bytes : 32u << 20;
	img->depth = 1;

	/* seen->n: the images opened before this one, whose backing file
	 * this is. */
	if ((o->flags & IMGFMT_OPEN_FD) && seen->n == 0)
		img->fd = rw ? imgfmt_err(EINVAL, "%s: IMGFMT_OPEN_FD is for "
					  "read-only opens", path)
			     : dup_file(path, o->fd, &st);
	else
		img->fd = imgfmt_open_file(path, rw ? O_RDWR : O_RDONLY,
					   seen->n > 0, &st);
	if (img->fd < 0) {
		r = img->fd;
		img->fd = -1;
		goto fail;
	}
	for (int i = 0; i < seen->n; i++) {
		if (seen->dev[i] == st.st_dev && seen->ino[i] == st.st_ino) {
			r = imgfmt_err(ELOOP, "%s: backing chain loops back to "
				       "this image", path);
			goto fail;
		}
	}
	seen->dev[seen->n] = st.st_dev;
	seen->ino[seen->n] = st.st_ino;
	seen->n++;

	img->base = o->offset;
	if (o->offset || o->length) {
		if (!S_ISREG(st.st_mode) || o->offset > (uint64_t)st.st_size ||
		    o->length > (uint64_t)st.st_size - o->offset) {
			r = imgfmt_err(EINVAL, "%s: embedded image at %llu+%llu "
				       "lies outside the file", path,
				       (unsigned long long)o->offset,
				       (unsigned long long)o->length);
			goto fail;
		}
		img->file_length = o->length;
	} else if (S_ISBLK(st.st_mode)) {
		off_t end = lseek(img->fd, 0, SEEK_END);
		img->file_length = end > 0 ? (uint64_t)end : 0;
	} else {
		img->file_length = (uint64_t)st.st_size;
	}

	if (o->format) {
		img->drv = imgfmt_driver_find(o->format);
		if (!img->drv) {
			r = imgfmt_err(EINVAL, "%s: unknown image format '%s'",
				       path, o->format);
			goto fail;
		}
	} else {
		img->drv = probe_fd(img->fd, img->base, img->file_length);
		img->raw_probed = img->drv == &imgfmt_raw_driver;
	}
	if (rw && !img->drv->pwrite) {
		r = imgfmt_err(EROFS, "%s: the %s driver cannot write images",
			       path, img->drv->name);
		goto fail;
	}

	r = img->drv->open(img);
	if (r < 0) {
		img->drv = NULL;
		goto fail;
	}
	if (img->virtual_size > IMGFMT_MAX_VIRTUAL_SIZE) {
		r = imgfmt_err(EFBIG, "%s: virtual size %llu is larger than "
			       "the supported maximum", path,
			       (unsigned long long)img->virtual_size);
		goto fail;
	}
	/* An overlay over an appliance package's disk names the package,
	 * which only the runtime can open (verified, in place); elsewhere
	 * such an image opens as if IMGFMT_OPEN_NO_BACKING were given. */
	int by_name = !(img->backing_format &&
			strcmp(img->backing_format, "appliance") == 0);
	if (img->backing_name && by_name &&
	    (o->flags & IMGFMT_OPEN_SELF_CONTAINED)) {
		r = imgfmt_err(EPERM, "%s: the image names a backing file, "
			       "%s, and was to be opened self-contained "
			       "(reading nothing but itself)", path,
			       img->backing_name);
		goto fail;
	}
	if (img->backing_name && by_name &&
	    !(o->flags & IMGFMT_OPEN_NO_BACKING)) {
		r = open_backing(img, o, seen);
		if (r < 0)
			goto fail;
	}
	*out = img;
	return 0;

fail:
	imgfmt__close(img);
	return r;
}

int imgfmt__open(const char *path, const struct imgfmt_open_opts *opts,
		 imgfmt_image **out)
{
	struct chain_seen seen = { .n = 0 };

	return open_chain(path, opts, &seen, out);
}

int imgfmt__close(imgfmt_image *img)
{
	int r = 0;

	if (!img)
		return 0;
	if (img->drv) {
		if (!img->read_only && img->drv->flush)
			r = img->drv->flush(img);
		if (img->drv->close)
			img->drv->close(img);
	}
	if (img->backing)
		imgfmt__close(img->backing);
	if (img->fd >= 0)
		close(img->fd);
	free(img->backing_name);
	free(img->backing_format);
	free(img->path);
	pthread_mutex_destroy(&img->head_lock);
	free(img);
	return r;
}

int imgfmt__create(const char *path, const struct imgfmt_create_opts *opts)
{
	const char *fmt = opts && opts->format ? opts->format : "avd";
	const struct imgfmt_driver *d = imgfmt_driver_find(fmt);
	struct imgfmt_create_opts o = { 0 };

	if (!d)
		return imgfmt_err(EINVAL, "unknown image format '%s'", fmt);
	if (!d->create)
		return imgfmt_err(ENOTSUP, "cannot create %s images", fmt);
	if (opts)
		o = *opts;
	if (!o.cluster_size)
		o.cluster_size = IMGFMT_DEFAULT_CLUSTER;
	if (o.size == 0 && o.backing_file) {
		/* Take the size from the backing image, resolved relative to
		 * the new image as it will be on open. */
		struct imgfmt_open_opts bo = { .format = o.backing_format };
		imgfmt_image *b;
		char *bpath = imgfmt_resolve_path(path, o.backing_file);
		if (!bpath)
			return imgfmt_err(ENOMEM, "out of memory");
		int r = imgfmt__open(bpath, &bo, &b);
		free(bpath);
		if (r < 0)
			return r;
		o.size = b->virtual_size;
		imgfmt__close(b);
	}
	if (o.size > IMGFMT_MAX_VIRTUAL_SIZE)
		return imgfmt_err(EFBIG, "%s: size %llu is larger than the "
				  "supported maximum (64 TiB)", path,
				  (unsigned long long)o.size);
	return d->create(path, &o);
}

/* ---- dispatch -------------------------------------------------------- */

static int check_range(imgfmt_image *img, uint64_t off, uint64_t len,
		       const char *op)
{
	if (off > img->virtual_size || len > img->virtual_size - off)
		return imgfmt_err(EINVAL, "%s: %s of %llu bytes at offset %llu "
				  "is past the end of the disk (%llu bytes)",
				  img->path, op, (unsigned long long)len,
				  (unsigned long long)off,
				  (unsigned long long)img->virtual_size);
	return 0;
}

static int check_writable(imgfmt_image *img, const char *op)
{
	if (img->read_only)
		return imgfmt_err(EROFS, "%s: %s: image is open read-only",
				  img->path, op);
	return 0;
}

/*
 * A raw image whose format was detected, not named, is raw only because
 * its first bytes match no other format, and those bytes are the guest's.
 * A guest that wrote a qcow2 header naming /etc/shadow as its backing file
 * would, at the next open that detects the format, be given the host file
 * to read (qemu's CVE-2008-2004; a VMDK descriptor naming extents does the
 * same).  So, as qemu does, such a write is refused; naming the format
 * (-f raw) allows it.  The check looks at the first bytes as they will be
 * after the write, not at the write alone, since a few bytes can complete
 * a magic number; head_lock keeps two such writes from passing the check
 * each on its own and landing together.
 *
 * head_write_begin() is called before a write of [off, off + len) (buf
 * NULL: zeros).  It returns 1 with head_lock held (head_write_end()
 * releases it), 0 when the write cannot change the format, or the error
 * refusing the write.
 */
static int guard_raw_head(imgfmt_image *img, const void *buf, uint64_t off,
			  uint64_t len)
{
	uint8_t head[IMGFMT_PROBE_BYTES];
	size_t n = img->virtual_size < sizeof(head) ? (size_t)img->virtual_size
						    : sizeof(head);
	size_t end = off + len < n ? (size_t)(off + len) : n;
	int r = imgfmt_file_read(img, head, n, 0, "the first bytes");

	if (r < 0)
		return r;
	if (buf)
		memcpy(head + off, buf, end - off);
	else
		memset(head + off, 0, end - off);
	const struct imgfmt_driver *d = probe_head(head, n, img->file_length);
	if (d == &imgfmt_raw_driver)
		return 0;
	return imgfmt_err(EPERM, "%s: refusing a write that would make this "
			  "raw image look like a %s image (its format was "
			  "detected, not named; name it, as with -f raw, to "
			  "write such bytes)", img->path, d->name);
}

static int head_write_begin(imgfmt_image *img, const void *buf, uint64_t off,
			    uint64_t len)
{
	if (!img->raw_probed || off >= IMGFMT_PROBE_BYTES ||
	    off >= img->virtual_size)
		return 0;
	pthread_mutex_lock(&img->head_lock);
	int r = guard_raw_head(img, buf, off, len);
	if (r < 0) {
		pthread_mutex_unlock(&img->head_lock);
		return r;
	}
	return 1;
}

static void head_write_end(imgfmt_image *img, int held)
{
	if (held > 0)
		pthread_mutex_unlock(&img->head_lock);
}

int imgfmt__pread(imgfmt_image *img, void *buf, size_t len, uint64_t off)
{
	int r = check_range(img, off, len, "read");

	if (r < 0 || len == 0)
		return r;
	return img->drv->pread(img, buf, len, off);
}

int imgfmt__pwrite(imgfmt_image *img, const void *buf, size_t len,
		   uint64_t off)
{
	int r = check_writable(img, "write");

	if (r == 0)
		r = check_range(img, off, len, "write");
	if (r < 0 || len == 0)
		return r;
	int held = head_write_begin(img, buf, off, len);
	if (held < 0)
		return held;
	r = img->drv->pwrite(img, buf, len, off);
	head_write_end(img, held);
	return r;
}

int imgfmt__flush(imgfmt_image *img)
{
	if (img->read_only || !img->drv->flush)
		return 0;
	return img->drv->flush(img);
}

int imgfmt__discard(imgfmt_image *img, uint64_t off, uint64_t len)
{
	int r = check_writable(img, "discard");

	if (r == 0)
		r = check_range(img, off, len, "discard");
	if (r < 0 || len == 0)
		return r;
	if (!img->drv->discard)
		return imgfmt_err(ENOTSUP, "%s: %s images cannot discard",
				  img->path, img->drv->name);
	int held = head_write_begin(img, NULL, off, len);
	if (held < 0)
		return held;
	r = img->drv->discard(img, off, len);
	head_write_end(img, held);
	return r;
}

int imgfmt__write_zeroes(imgfmt_image *img, uint64_t off, uint64_t len,
			 unsigned flags)
{
	int r = check_writable(img, "write-zeroes");

	if (r == 0)
		r = check_range(img, off, len, "write-zeroes");
	if (r < 0 || len == 0)
		return r;
	int held = head_write_begin(img, NULL, off, len);
	if (held < 0)
		return held;
	if (img->drv->write_zeroes) {
		r = img->drv->write_zeroes(img, off, len, flags);
	} else {
		/* Fallback: write a zero buffer. */
		static const uint8_t zeros[65536];
		while (r == 0 && len > 0) {
			size_t n = len < sizeof(zeros) ? (size_t)len
						       : sizeof(zeros);
			r = img->drv->pwrite(img, zeros, n, off);
			off += n;
			len -= n;
		}
	}
	head_write_end(img, held);
	return r;
}

int imgfmt__resize(imgfmt_image *img, uint64_t new_size)
{
	int r = check_writable(img, "resize");

	if (r < 0)
		return r;
	if (new_size < img->virtual_size)
		return imgfmt_err(ENOTSUP, "%s: shrinking is not supported "
				  "(%llu < %llu)", img->path,
				  (unsigned long long)new_size,
				  (unsigned long long)img->virtual_size);
	if (new_size > IMGFMT_MAX_VIRTUAL_SIZE)
		return imgfmt_err(EFBIG, "%s: size %llu is larger than the "
				  "supported maximum", img->path,
				  (unsigned long long)new_size);
	if (new_size == img->virtual_size)
		return 0;
	if (!img->drv->resize)
		return imgfmt_err(ENOTSUP, "%s: %s images cannot be resized",
				  img->path, img->drv->name);
	return img->drv->resize(img, new_size);
}

int imgfmt__map(imgfmt_image *img, uint64_t off, uint64_t len,
		struct imgfmt_extent *ext)
{
	int r = check_range(img, off, len, "map");

	if (r < 0)
		return r;
	if (len == 0)
		return imgfmt_err(EINVAL, "%s: map of an empty range",
				  img->path);
	memset(ext, 0, sizeof(*ext));
	ext->offset = off;
	ext->file_offset = -1;
	if (img->drv->map) {
		r = img->drv->map(img, off, len, ext);
		if (r < 0)
			return r;
		if (ext->length == 0 || ext->length > len)
			return imgfmt_err(EIO, "%s: %s driver returned a bad "
					  "extent", img->path, img->drv->name);
		/* A hole with nothing underneath is simply zeros; one over a
		 * backing image that is named but not open stays "backing". */
		if (ext->kind == IMGFMT_EXTENT_BACKING &&
		    (img->backing ? off >= img->backing->virtual_size
				  : !img->backing_name))
			ext->kind = IMGFMT_EXTENT_ZERO;
		return 0;
	}
	ext->kind = IMGFMT_EXTENT_DATA;
	ext->length = len;
	return 0;
}

int imgfmt__info(imgfmt_image *img, struct imgfmt_info *info)
{
	struct stat st;

	memset(info, 0, sizeof(*info));
	snprintf(info->format, sizeof(info->format), "%s", img->drv->name);
	info->virtual_size = img->virtual_size;
	info->file_size = img->file_length;
	info->allocated_bytes = img->file_length;
	if (img->base == 0 && fstat(img->fd, &st) == 0 && S_ISREG(st.st_mode))
		info->allocated_bytes = (uint64_t)st.st_blocks * 512;
	info->read_only = img->read_only;
	if (img->backing_name)
		snprintf(info->backing_file, sizeof(info->backing_file), "%s",
			 img->backing_name);
	if (img->backing_format)
		snprintf(info->backing_format, sizeof(info->backing_format),
			 "%s", img->backing_format);
	else if (img->backing)
		snprintf(info->backing_format, sizeof(info->backing_format),
			 "%s", img->backing->drv->name);
	info->chain_depth = img->depth;
	return img->drv->info ? img->drv->info(img, info) : 0;
}

imgfmt_image *imgfmt__backing(imgfmt_image *img)
{
	return img->backing;
}

int imgfmt__attach_backing(imgfmt_image *img, imgfmt_image *backing)
{
	if (img->backing)
		return imgfmt_err(EBUSY, "%s: already has a backing image",
				  img->path);
	if (backing->depth >= IMGFMT_MAX_CHAIN)
		return imgfmt_err(ELOOP, "%s: backing chain is deeper than %d "
				  "images", img->path, IMGFMT_MAX_CHAIN);
	img->backing = backing;
	img->depth = 1 + backing->depth;
	return 0;
}

int imgfmt__check(imgfmt_image *img, int repair,
		  struct imgfmt_check_result *res)
{
	memset(res, 0, sizeof(*res));
	if (repair && img->read_only)
		return imgfmt_err(EROFS, "%s: repair needs the image open "
				  "read-write", img->path);
	if (!img->drv->check)
		return 0;
	return img->drv->check(img, repair, res);
}
