/*
 * mount.h - looking inside disk images without booting them.
 *
 * Three pieces, one per file:
 *
 *   attach.c   expose an image's raw block view as one regular file through
 *              FUSE (libfuse3), so that tools that want a raw disk (mke2fs,
 *              fsck, debugfs, qemu-img) can use any format imgfmt reads.
 *   guest.c    a libguestfs session on an image: the image is served to
 *              libguestfs by our own NBD server (nbd/server.h) on a private
 *              unix socket inside this process, so every format imgfmt
 *              knows (AVD included) works, and writes go through imgfmt.
 *              Used for ls/cat/cp-in/cp-out/edit and for mount-local.
 *   unmount.c  find one of our FUSE mounts, unmount it, and wait for the
 *              process that served it to finish flushing.
 *
 * Every mount we make names its serving process in the mount's source
 * ("appliance:PID" in /proc/self/mountinfo); that is how `unmount` knows
 * whom to wait for, so "unmount returned" means "the image is flushed and
 * closed" and the next command can open the image safely.
 *
 * Errors: functions return 0 (or a count) on success and a negative errno
 * on failure, with a message for this thread from mount__error().  Nothing
 * here prints or exits.
 */
#ifndef MOUNT_H
#define MOUNT_H

#include <stddef.h>
#include <stdint.h>

#include "imgfmt.h"

/* Message of the most recent failing call in this thread ("" if none). */
const char *mount__error(void);

/* ---- attach: the raw view of an image as one file --------------------- */

struct attach_opts {
	const char *image;       /* image path */
	const char *format;      /* NULL: detect */
	const char *file;        /* where the raw view appears; created
	                            (and removed again afterwards) if missing */
	int rw;                  /* writable; default read-only */
	imgfmt_image *img;       /* already open (an appliance package's
	                            verified disk, say), owned from here on;
	                            NULL: open `image` */
	/* Called once the mount is in place and about to serve (the CLI
	 * uses it to let a --background parent exit).  May be NULL. */
	void (*ready)(void *opaque);
	void *opaque;
};

/* Mount, serve until unmounted or SIGTERM/SIGINT/SIGHUP, then unmount,
 * flush and close the image.  Returns the first error (a failed flush on
 * the way out included). */
int attach__run(const struct attach_opts *o);

/* ---- unmount ------------------------------------------------------------ */

/* Unmount `path` (a FILE from attach or a DIR from mount) if it is one of
 * our FUSE mounts and wait, up to `timeout_s` seconds, for its serving
 * process to exit.  -EINVAL if `path` is not one of our mounts. */
int mount__unmount(const char *path, unsigned timeout_s);

/* The "appliance:PID" source string a serving process gives its mount. */
void mount__fsname(char *buf, size_t len);

/* ---- guest: a libguestfs session on an image ---------------------------- */

struct guest_opts {
	const char *image;
	const char *format;      /* NULL: detect */
	int rw;                  /* default read-only */
	int partition;           /* -1: automatic; 0: the whole disk; N: the
	                            Nth partition (1-based) */
	int inspect;             /* mount what OS inspection finds, at the
	                            guest's own mount points */
	int verbose;             /* libguestfs debug messages to stderr */
	imgfmt_image *img;       /* already open, owned from here on (closed
	                            by guest__close, or by guest__open if it
	                            fails); NULL: open `image` */
};

struct guest;

/* Open the image, serve it over NBD to a fresh libguestfs appliance,
 * launch it (the slow part: tens of seconds under TCG) and mount the
 * chosen filesystem at /. */
int guest__open(const struct guest_opts *o, struct guest **out);

/* Unmount everything, stop the appliance (which flushes its disk to our
 * server), stop the server, flush and close the image.  Returns the first
 * error met on the way; the session is freed in any case. */
int guest__close(struct guest *g);

/* Which device was mounted at / ("/dev/sda1", ...). */
const char *guest__root_device(struct guest *g);

/* Names in a directory, sorted, without "." and "..": a NULL-terminated
 * array; free with guest__free_list(). */
int guest__ls(struct guest *g, const char *dir, char ***names);
void guest__free_list(char **list);

/* Copy the guest file `path` into the local file descriptor `fd`. */
int guest__cat(struct guest *g, const char *path, int fd);
/* Local file -> guest file (replaced), and guest file -> local file. */
int guest__upload(struct guest *g, const char *local, const char *path);
int guest__download(struct guest *g, const char *path, const char *local);
/* Recursive copies, like cp -a: a local file or directory into the guest
 * directory `dir`, and a guest file or directory into the local
 * directory `localdir`. */
int guest__copy_in(struct guest *g, const char *local, const char *dir);
int guest__copy_out(struct guest *g, const char *path, const char *localdir);

/* Mount the guest's filesystem on the local directory `dir` (FUSE, named
 * "appliance:PID"), call ready(opaque), and serve until it is unmounted or
 * the process gets SIGTERM/SIGINT.  Call guest__close() afterwards. */
int guest__mount_local(struct guest *g, const char *dir,
		       void (*ready)(void *opaque), void *opaque);

#endif /* MOUNT_H */
