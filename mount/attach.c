/*
 * attach.c - an image's raw block view as one regular file, via FUSE.
 *
 * The FUSE filesystem has a single node, its root, and the root is a
 * regular file: mounted over a regular file FILE, FILE then reads and
 * writes the image's virtual disk (nbdfuse does the same for NBD).
 * libfuse passes the mount point's file type as the kernel's rootmode, so
 * nothing special is needed beyond getattr("/") answering S_IFREG.
 *
 * All I/O goes through imgfmt, whose handle allows concurrent preads and
 * serialises writes internally, so the multi-threaded loop serves several
 * readers at once.  fsync(2) becomes imgfmt__flush(); the image is
 * flushed and closed again when the mount goes away.
 */
#define FUSE_USE_VERSION 312

#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "imgfmt.h"
#include "mount/mount-int.h"

struct attach_ctx {
	imgfmt_image *img;
	uint64_t size;
	int rw;
	uid_t uid;
	gid_t gid;
	struct timespec mtime;
	int io_error;            /* first failed write or flush, as -errno;
	                            set from any loop thread (atomically) */
};

static void note_io_error(struct attach_ctx *c, int err)
{
	int none = 0;

	__atomic_compare_exchange_n(&c->io_error, &none, err, 0,
				    __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}

static struct attach_ctx *ctx_of(void)
{
	return fuse_get_context()->private_data;
}

static void *attach_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	(void)conn;
	/* Only this process changes the image, so the kernel may keep what
	 * it read across opens; timeouts are long for the same reason. */
	cfg->kernel_cache = 1;
	cfg->attr_timeout = 3600;
	cfg->entry_timeout = 3600;
	cfg->use_ino = 1;
	return ctx_of();
}

static int attach_getattr(const char *path, struct stat *st,
			  struct fuse_file_info *fi)
{
	struct attach_ctx *c = ctx_of();

	(void)fi;
	if (strcmp(path, "/") != 0)
		return -ENOENT;
	memset(st, 0, sizeof(*st));
	st->st_ino = 1;
	st->st_mode = S_IFREG | (c->rw ? 0644 : 0444);
	st->st_nlink = 1;
	st->st_uid = c->uid;
	st->st_gid = c->gid;
	st->st_size = (off_t)c->size;
	st->st_blksize = 4096;
	st->st_blocks = (blkcnt_t)((c->size + 511) / 512);
	st->st_mtim = st->st_ctim = st->st_atim = c->mtime;
	return 0;
}

static int attach_open(const char *path, struct fuse_file_info *fi)
{
	struct attach_ctx *c = ctx_of();

	if (strcmp(path, "/") != 0)
		return -ENOENT;
	if ((fi->flags & O_ACCMODE) != O_RDONLY && !c->rw)
		return -EROFS;
	if ((fi->flags & O_TRUNC) && c->size)
		return -EPERM;  /* a disk's size is fixed (use img resize) */
	/* No direct_io: the page cache keeps mmap and small reads cheap. */
	return 0;
}

static int attach_read(const char *path, char *buf, size_t len, off_t off,
		       struct fuse_file_info *fi)
{
	struct attach_ctx *c = ctx_of();
	int rc;

	(void)path; (void)fi;
	if (off < 0)
		return -EINVAL;
	if ((uint64_t)off >= c->size)
		return 0;
	if (len > c->size - (uint64_t)off)
		len = (size_t)(c->size - (uint64_t)off);
	rc = imgfmt__pread(c->img, buf, len, (uint64_t)off);
	return rc < 0 ? rc : (int)len;
}

static int attach_write(const char *path, const char *buf, size_t len,
			off_t off, struct fuse_file_info *fi)
{
	struct attach_ctx *c = ctx_of();
	int rc;

	(void)path; (void)fi;
	if (!c->rw)
		return -EROFS;
	if (off < 0)
		return -EINVAL;
	/* Like a block device: nothing past the end, short writes at it. */
	if ((uint64_t)off >= c->size)
		return len ? -ENOSPC : 0;
	if (len > c->size - (uint64_t)off)
		len = (size_t)(c->size - (uint64_t)off);
	rc = imgfmt__pwrite(c->img, buf, len, (uint64_t)off);
	if (rc < 0) {
		note_io_error(c, rc);
		return rc;
	}
	return (int)len;
}

static int attach_fsync(const char *path, int datasync,
			struct fuse_file_info *fi)
{
	struct attach_ctx *c = ctx_of();
	int rc;

	(void)path; (void)datasync; (void)fi;
	if (!c->rw)
		return 0;
	rc = imgfmt__flush(c->img);
	if (rc < 0)
		note_io_error(c, rc);
	return rc;
}

static int attach_truncate(const char *path, off_t size,
			   struct fuse_file_info *fi)
{
	struct attach_ctx *c = ctx_of();

	(void)path; (void)fi;
	if (!c->rw)
		return -EROFS;
	return (uint64_t)size == c->size ? 0 : -EPERM;
}

/* mke2fs and fstrim-like tools discard through fallocate on a file.
 * A punched hole must read as zeros afterwards even over a backing file,
 * which is write_zeroes with unmapping allowed, not imgfmt__discard. */
static int attach_fallocate(const char *path, int mode, off_t off,
			    off_t len, struct fuse_file_info *fi)
{
	struct attach_ctx *c = ctx_of();
	int rc;

	(void)path; (void)fi;
	if (!c->rw)
		return -EROFS;
	if (off < 0 || len <= 0)
		return -EINVAL;
	if ((uint64_t)off >= c->size || (uint64_t)len > c->size - (uint64_t)off)
		return (mode & FALLOC_FL_KEEP_SIZE) ? 0 : -EFBIG;
	if (mode & FALLOC_FL_PUNCH_HOLE) {
		if (!(mode & FALLOC_FL_KEEP_SIZE))
			return -EINVAL;
		rc = imgfmt__write_zeroes(c->img, (uint64_t)off,
					  (uint64_t)len, IMGFMT_ZERO_MAY_UNMAP);
	} else if (mode & FALLOC_FL_ZERO_RANGE) {
		rc = imgfmt__write_zeroes(c->img, (uint64_t)off,
					  (uint64_t)len, 0);
	} else if (mode & ~FALLOC_FL_KEEP_SIZE) {
		return -EOPNOTSUPP;
	} else {
		return 0;  /* within the disk every byte already exists */
	}
	if (rc == -ENOTSUP)
		return -EOPNOTSUPP;
	return rc;
}

static int attach_statfs(const char *path, struct statvfs *sv)
{
	struct attach_ctx *c = ctx_of();

	(void)path;
	memset(sv, 0, sizeof(*sv));
	sv->f_bsize = sv->f_frsize = 4096;
	sv->f_blocks = c->size / 4096;
	sv->f_files = 1;
	sv->f_namemax = 255;
	return 0;
}

static const struct fuse_operations attach_ops = {
	.init = attach_init,
	.getattr = attach_getattr,
	.open = attach_open,
	.read = attach_read,
	.write = attach_write,
	.fsync = attach_fsync,
	.truncate = attach_truncate,
	.fallocate = attach_fallocate,
	.statfs = attach_statfs,
};

/* libfuse reports mount failures through its log function; keep the last
 * message so that the caller gets it through mount__error(). */
static __thread char fuse_last_log[512];

static void attach_log(enum fuse_log_level level, const char *fmt, va_list ap)
{
	if (level > FUSE_LOG_ERR)
		return;
	vsnprintf(fuse_last_log, sizeof(fuse_last_log), fmt, ap);
	size_t n = strlen(fuse_last_log);
	while (n && fuse_last_log[n - 1] == '\n')
		fuse_last_log[--n] = '\0';
}

int attach__run(const struct attach_opts *o)
{
	struct imgfmt_open_opts oo = { .format = o->format };
	struct attach_ctx c = { .rw = o->rw, .uid = getuid(),
				.gid = getgid() };
	struct imgfmt_info info;
	struct stat st;
	struct fuse *fuse = NULL;
	struct fuse_loop_config *loop = NULL;
	char fsname[64], optstr[256];
	int created = 0, mounted = 0, handlers = 0, rc = 0, fd;

	if (o->rw)
		oo.flags |= IMGFMT_OPEN_RDWR;
	rc = o->img ? 0 : imgfmt__open(o->image, &oo, &c.img);
	if (o->img)
		c.img = o->img;
	if (rc < 0)
		return mount_err(-rc, "%s", imgfmt__error());
	if (imgfmt__info(c.img, &info) < 0) {
		rc = mount_err(EIO, "%s", imgfmt__error());
		goto out;
	}
	c.size = info.virtual_size;
	if (stat(o->image, &st) == 0)
		c.mtime = st.st_mtim;

	mount__fsname(fsname, sizeof(fsname));
	snprintf(optstr, sizeof(optstr), "fsname=%s,subtype=appliance%s",
		 fsname, o->rw ? "" : ",ro");
	char *argv[] = { "appliance", "-o", optstr, NULL };
	struct fuse_args args = FUSE_ARGS_INIT(3, argv);

	fuse_set_log_func(attach_log);
	fuse_last_log[0] = '\0';
	fuse = fuse_new(&args, &attach_ops, sizeof(attach_ops), &c);
	fuse_opt_free_args(&args);  /* fuse_new may have copied them */
	if (!fuse) {
		rc = mount_err(EINVAL, "FUSE setup failed: %s", fuse_last_log);
		goto out;
	}
	/* Handlers before the mount: a SIGTERM that arrives as soon as the
	 * mount is visible must end the loop (which then returns at once),
	 * not kill us and leave a dead mount behind. */
	if (fuse_set_signal_handlers(fuse_get_session(fuse)) != 0) {
		rc = mount_err(EIO, "cannot install signal handlers");
		goto out;
	}
	handlers = 1;

	/* The mount point must exist and be a regular file (a directory
	 * would make the root a directory). */
	if (stat(o->file, &st) < 0) {
		if (errno != ENOENT) {
			rc = mount_err(errno, "%s: %s", o->file,
				       strerror(errno));
			goto out;
		}
		fd = open(o->file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
			  0644);
		if (fd < 0) {
			rc = mount_err(errno, "%s: cannot create: %s",
				       o->file, strerror(errno));
			goto out;
		}
		close(fd);
		created = 1;
	} else if (!S_ISREG(st.st_mode)) {
		rc = mount_err(EINVAL, "%s: not a regular file (attach "
			       "exposes the disk as one file)", o->file);
		goto out;
	}
	if (fuse_mount(fuse, o->file) != 0) {
		rc = mount_err(EIO, "%s: FUSE mount failed: %s", o->file,
			       fuse_last_log[0] ? fuse_last_log
			       : "(no reason given)");
		goto out;
	}
	mounted = 1;
	if (o->ready)
		o->ready(o->opaque);
	loop = fuse_loop_cfg_create();
	if (!loop) {
		rc = mount_err(ENOMEM, "out of memory");
		goto out;
	}
	fuse_loop_cfg_set_max_threads(loop, 8);
	if (fuse_loop_mt(fuse, loop) < 0 && !rc)
		rc = mount_err(EIO, "%s: FUSE loop failed: %s", o->file,
			       fuse_last_log);
	fuse_loop_cfg_destroy(loop);
out:
	if (handlers)
		fuse_remove_signal_handlers(fuse_get_session(fuse));
	if (mounted)
		fuse_unmount(fuse);
	if (fuse)
		fuse_destroy(fuse);
	if (created)
		unlink(o->file);
	if (c.io_error && !rc)
		rc = mount_err(-c.io_error, "%s: a write or flush failed "
			       "while attached: %s", o->image,
			       strerror(-c.io_error));
	{
		int crc = imgfmt__close(c.img);
		if (crc < 0 && !rc)
			rc = mount_err(-crc, "%s", imgfmt__error());
	}
	return rc;
}
