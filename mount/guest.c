/*
 * guest.c - a libguestfs session on an image, fed by our own NBD server.
 *
 * libguestfs runs a small Linux appliance under QEMU and reaches disks
 * through QEMU's block layer, which knows nothing of AVD.  Instead of
 * handing it the image file, we open the image with imgfmt, start our NBD
 * server (nbd/server.h) on a unix socket in a private 0700 directory, run
 * it in a thread of this process, and add the drive to libguestfs as
 * protocol "nbd", format "raw".  So every format imgfmt reads works, the
 * appliance's writes go through imgfmt (checksums, metadata, flush
 * ordering), and nothing else can connect to the export.
 *
 * Read-only sessions are read-only twice: the server refuses writes and
 * the drive is added readonly, which makes libguestfs put a throw-away
 * overlay under the appliance (so even ext4 journal replay on mount
 * cannot reach the image).
 *
 * Lifetime: guest__open launches and mounts; guest__close unmounts, shuts
 * the appliance down (its disk cache is flushed to our server by QEMU),
 * stops the server, flushes and closes the image, and only then returns:
 * when it returns 0 every change is durable in the image.
 */
#include <errno.h>
#include <fcntl.h>
#include <guestfs.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "imgfmt.h"
#include "mount/mount-int.h"
#include "nbd/server.h"

#define EXPORT_NAME "disk"

struct guest {
	imgfmt_image *img;
	struct nbd_server *srv;
	pthread_t thread;
	int thread_started;
	char dir[128];          /* private directory holding the socket */
	char sock[160];
	guestfs_h *g;
	char *root;             /* device mounted at / */
	int rw;
};

/* libguestfs keeps its last error on the handle; carry it into ours with
 * the errno it captured (EIO when it has none). */
static int guest_err(struct guest *s, const char *what)
{
	const char *msg = s->g ? guestfs_last_error(s->g) : NULL;
	int e = s->g ? guestfs_last_errno(s->g) : 0;

	return mount_err(e > 0 ? e : EIO, "%s: %s", what,
			 msg ? msg : "libguestfs failed without a message");
}

static void *serve_thread(void *arg)
{
	struct guest *s = arg;

	nbd_server__run(s->srv);
	return NULL;
}

static void free_list(char **l)
{
	if (!l)
		return;
	for (char **p = l; *p; p++)
		free(*p);
	free(l);
}

void guest__free_list(char **list)
{
	free_list(list);
}

static int count(char *const *l)
{
	int n = 0;

	while (l && l[n])
		n++;
	return n;
}

static int mount_dev(struct guest *s, const char *dev, const char *where)
{
	int r = s->rw ? guestfs_mount(s->g, dev, where)
		      : guestfs_mount_ro(s->g, dev, where);
	return r < 0 ? -1 : 0;
}

/* Mount what OS inspection finds, shortest mount point first so that
 * /boot lands inside /. */
static int mount_inspected(struct guest *s)
{
	char **roots = guestfs_inspect_os(s->g), **mps = NULL;
	int rc = 0, n;

	if (!roots)
		return guest_err(s, "inspection");
	if (!roots[0]) {
		free_list(roots);
		return mount_err(ENOENT, "inspection found no operating "
				 "system in the image (try --partition N)");
	}
	mps = guestfs_inspect_get_mountpoints(s->g, roots[0]);
	if (!mps) {
		rc = guest_err(s, "inspection");
		goto out;
	}
	n = count(mps) / 2;
	for (int len = 1; len <= PATH_MAX && rc == 0; len++) {
		for (int i = 0; i < n; i++) {
			if ((int)strlen(mps[2 * i]) != len)
				continue;
			if (mount_dev(s, mps[2 * i + 1], mps[2 * i]) < 0) {
				/* A missing /boot must not hide the rest. */
				if (strcmp(mps[2 * i], "/") == 0) {
					rc = guest_err(s, mps[2 * i + 1]);
					break;
				}
			}
		}
	}
	if (rc == 0)
		s->root = strdup(roots[0]);
out:
	free_list(mps);
	free_list(roots);
	return rc;
}

static int mount_partition(struct guest *s, int part)
{
	char **devs = part == 0 ? guestfs_list_devices(s->g)
				: guestfs_list_partitions(s->g);
	int rc = 0, n;

	if (!devs)
		return guest_err(s, "listing devices");
	n = count(devs);
	if (part == 0 && n < 1)
		rc = mount_err(ENOENT, "the appliance sees no disk");
	else if (part > 0 && part > n)
		rc = mount_err(ENOENT, "partition %d asked for, but the disk "
			       "has %d partition%s", part, n, n == 1 ? "" : "s");
	if (rc == 0) {
		const char *dev = devs[part == 0 ? 0 : part - 1];
		if (mount_dev(s, dev, "/") < 0)
			rc = guest_err(s, dev);
		else
			s->root = strdup(dev);
	}
	free_list(devs);
	return rc;
}

/* The first filesystem that mounts, in the order libguestfs lists them
 * (whole devices, then partitions, then LVs). */
static int mount_first(struct guest *s)
{
	char **fs = guestfs_list_filesystems(s->g);
	int n, tried = 0;

	if (!fs)
		return guest_err(s, "listing filesystems");
	n = count(fs) / 2;
	for (int i = 0; i < n; i++) {
		const char *dev = fs[2 * i], *type = fs[2 * i + 1];
		if (strcmp(type, "swap") == 0 || strcmp(type, "unknown") == 0 ||
		    type[0] == '\0')
			continue;
		tried++;
		if (mount_dev(s, dev, "/") == 0) {
			s->root = strdup(dev);
			free_list(fs);
			return 0;
		}
	}
	free_list(fs);
	if (tried)
		return guest_err(s, "no filesystem in the image would mount; "
				 "last error");
	return mount_err(ENOENT, "no filesystem found in the image");
}

int guest__open(const struct guest_opts *o, struct guest **out)
{
	struct imgfmt_open_opts oo = { .format = o->format };
	struct nbd_server_opts so = { .export_name = EXPORT_NAME,
				      .read_only = !o->rw };
	struct guest *s = calloc(1, sizeof(*s));
	const char *tmp = getenv("TMPDIR");
	int rc;

	*out = NULL;
	if (!s)
		return mount_err(ENOMEM, "out of memory");
	s->rw = o->rw;
	if (o->rw)
		oo.flags |= IMGFMT_OPEN_RDWR;
	rc = o->img ? 0 : imgfmt__open(o->image, &oo, &s->img);
	if (o->img)
		s->img = o->img;
	if (rc < 0) {
		rc = mount_err(-rc, "%s", imgfmt__error());
		s->img = NULL;
		goto fail;
	}

	/* A unix socket path must fit in sun_path (108 bytes). */
	if (!tmp || !*tmp || strlen(tmp) > 60)
		tmp = "/tmp";
	snprintf(s->dir, sizeof(s->dir), "%s/appliance-guest.XXXXXX", tmp);
	if (!mkdtemp(s->dir)) {
		rc = mount_err(errno, "%s: %s", s->dir, strerror(errno));
		s->dir[0] = '\0';
		goto fail;
	}
	snprintf(s->sock, sizeof(s->sock), "%s/nbd.sock", s->dir);
	so.socket_path = s->sock;
	so.description = o->image;
	if (nbd_server__create(s->img, &so, &s->srv) < 0) {
		rc = mount_err(EIO, "%s", nbd__error());
		s->srv = NULL;
		goto fail;
	}
	if (pthread_create(&s->thread, NULL, serve_thread, s) != 0) {
		rc = mount_err(EAGAIN, "cannot start the NBD server thread");
		goto fail;
	}
	s->thread_started = 1;

	s->g = guestfs_create();
	if (!s->g) {
		rc = mount_err(ENOMEM, "cannot create a libguestfs handle");
		goto fail;
	}
	/* We report errors ourselves (libguestfs would print them). */
	guestfs_set_error_handler(s->g, NULL, NULL);
	/* Only the direct backend runs QEMU as us, able to reach our
	 * private socket; libvirt's QEMU runs as another user. */
	if (!getenv("LIBGUESTFS_BACKEND") &&
	    guestfs_set_backend(s->g, "direct") < 0) {
		rc = guest_err(s, "libguestfs backend");
		goto fail;
	}
	if (o->verbose) {
		guestfs_set_verbose(s->g, 1);
		guestfs_set_trace(s->g, 1);
	}
	char server[PATH_MAX + 8];
	snprintf(server, sizeof(server), "unix:%s", s->sock);
	char *servers[] = { server, NULL };
	if (guestfs_add_drive_opts(s->g, EXPORT_NAME,
				   GUESTFS_ADD_DRIVE_OPTS_FORMAT, "raw",
				   GUESTFS_ADD_DRIVE_OPTS_PROTOCOL, "nbd",
				   GUESTFS_ADD_DRIVE_OPTS_SERVER, servers,
				   GUESTFS_ADD_DRIVE_OPTS_READONLY, !o->rw,
				   -1) < 0) {
		rc = guest_err(s, "adding the image to libguestfs");
		goto fail;
	}
	if (guestfs_launch(s->g) < 0) {
		rc = guest_err(s, "launching the libguestfs appliance (set "
			       "LIBGUESTFS_BACKEND_SETTINGS=force_tcg where "
			       "KVM is unusable; -v shows its log)");
		goto fail;
	}
	if (o->inspect)
		rc = mount_inspected(s);
	else if (o->partition >= 0)
		rc = mount_partition(s, o->partition);
	else
		rc = mount_first(s);
	if (rc < 0)
		goto fail;
	if (!s->root) {
		rc = mount_err(ENOMEM, "out of memory");
		goto fail;
	}
	*out = s;
	return 0;
fail:
	{
		/* Keep the first error's message, not the cleanup's. */
		char keep[1024];
		snprintf(keep, sizeof(keep), "%s", mount__error());
		guest__close(s);
		mount_err(-rc, "%s", keep);
	}
	return rc;
}

int guest__close(struct guest *s)
{
	int rc = 0, r;

	if (!s)
		return 0;
	if (s->g) {
		/* umount_all syncs the guest filesystems; shutdown waits for
		 * QEMU to flush its cache to our server and exit. */
		if (s->root && guestfs_umount_all(s->g) < 0 && !rc)
			rc = guest_err(s, "unmounting in the appliance");
		if (guestfs_shutdown(s->g) < 0 && !rc)
			rc = guest_err(s, "shutting the appliance down");
		guestfs_close(s->g);
	}
	if (s->srv) {
		nbd_server__stop(s->srv);
		if (s->thread_started)
			pthread_join(s->thread, NULL);
		if (nbd_server__destroy(s->srv) < 0 && !rc)
			rc = mount_err(EIO, "%s", nbd__error());
	}
	if (s->img) {
		r = imgfmt__close(s->img);
		if (r < 0 && !rc)
			rc = mount_err(-r, "%s", imgfmt__error());
	}
	if (s->sock[0])
		unlink(s->sock);
	if (s->dir[0])
		rmdir(s->dir);
	free(s->root);
	free(s);
	return rc;
}

const char *guest__root_device(struct guest *s)
{
	return s->root;
}

int guest__ls(struct guest *s, const char *dir, char ***names)
{
	*names = guestfs_ls(s->g, dir);
	return *names ? 0 : guest_err(s, dir);
}

int guest__cat(struct guest *s, const char *path, int fd)
{
	char tmp[sizeof(s->dir) + 16], buf[65536];
	int rc = 0, in;
	ssize_t n;

	/* Not straight to /dev/fd/N: libguestfs opens that name with
	 * O_TRUNC, which reopens and truncates a regular file on stdout
	 * (losing earlier output).  A private temporary file avoids it. */
	if (guestfs_is_dir(s->g, path) > 0)
		return mount_err(EISDIR, "%s: is a directory", path);
	snprintf(tmp, sizeof(tmp), "%s/cat", s->dir);
	if (guestfs_download(s->g, path, tmp) < 0)
		return guest_err(s, path);
	in = open(tmp, O_RDONLY | O_CLOEXEC);
	if (in < 0) {
		rc = mount_err(errno, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	while ((n = read(in, buf, sizeof(buf))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = mount_err(errno, "%s: %s", tmp, strerror(errno));
			break;
		}
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(fd, buf + off, (size_t)(n - off));
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				rc = mount_err(errno, "writing %s out: %s",
					       path, strerror(errno));
				goto out;
			}
			off += w;
		}
	}
out:
	if (in >= 0)
		close(in);
	unlink(tmp);
	return rc;
}

int guest__download(struct guest *s, const char *path, const char *local)
{
	return guestfs_download(s->g, path, local) < 0 ? guest_err(s, path)
						       : 0;
}

int guest__upload(struct guest *s, const char *local, const char *path)
{
	if (!s->rw)
		return mount_err(EROFS, "%s: the image is open read-only",
				 path);
	return guestfs_upload(s->g, local, path) < 0 ? guest_err(s, path) : 0;
}

int guest__copy_in(struct guest *s, const char *local, const char *dir)
{
	if (!s->rw)
		return mount_err(EROFS, "%s: the image is open read-only", dir);
	return guestfs_copy_in(s->g, local, dir) < 0 ? guest_err(s, dir) : 0;
}

int guest__copy_out(struct guest *s, const char *path, const char *localdir)
{
	return guestfs_copy_out(s->g, path, localdir) < 0 ? guest_err(s, path)
							  : 0;
}

/* ---- mount-local --------------------------------------------------------- */

/* SIGTERM/SIGINT/SIGHUP must end the FUSE loop the orderly way (unmount,
 * then guest__close flushes), never kill us with the image half
 * written.  libguestfs's loop installs no handlers, so ours writes to a
 * pipe and a watcher thread unmounts, which makes the loop return. */
static int sig_pipe[2] = { -1, -1 };

static void on_signal(int sig)
{
	char c = (char)sig;
	ssize_t w = write(sig_pipe[1], &c, 1);
	(void)w;
}

struct watcher {
	const char *dir;
};

static void *watch_signals(void *arg)
{
	struct watcher *w = arg;
	char c;
	ssize_t n;

	do
		n = read(sig_pipe[0], &c, 1);
	while (n < 0 && errno == EINTR);
	if (n != 1 || c == 0)
		return NULL;        /* the loop ended by itself */
	pid_t pid = fork();
	if (pid == 0) {
		execlp("fusermount", "fusermount", "-u", "-z", "-q", "--",
		       w->dir, (char *)NULL);
		execlp("fusermount3", "fusermount3", "-u", "-z", "-q", "--",
		       w->dir, (char *)NULL);
		_exit(127);
	}
	if (pid > 0)
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
	return NULL;
}

int guest__mount_local(struct guest *s, const char *dir,
		       void (*ready)(void *opaque), void *opaque)
{
	char fsname[64], opts[128], real[PATH_MAX];
	struct sigaction sa = { .sa_handler = on_signal }, old[3];
	struct watcher w;
	pthread_t thr;
	int rc = 0, have_thr = 0;

	if (!realpath(dir, real))
		return mount_err(errno, "%s: %s", dir, strerror(errno));
	mount__fsname(fsname, sizeof(fsname));
	snprintf(opts, sizeof(opts), "fsname=%s,subtype=appliance", fsname);
	if (pipe2(sig_pipe, O_CLOEXEC) < 0)
		return mount_err(errno, "pipe: %s", strerror(errno));

	/* Handlers before the mount, the watcher after it: a signal that
	 * comes as soon as the mount is visible waits in the pipe until
	 * there is a mount to take down, instead of killing us and leaving
	 * a dead mount (and unflushed changes) behind. */
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGTERM, &sa, &old[0]);
	sigaction(SIGINT, &sa, &old[1]);
	sigaction(SIGHUP, &sa, &old[2]);
	if (guestfs_mount_local(s->g, real,
				GUESTFS_MOUNT_LOCAL_OPTIONS, opts,
				GUESTFS_MOUNT_LOCAL_READONLY, !s->rw,
				-1) < 0) {
		rc = guest_err(s, real);
		goto out;
	}
	w.dir = real;
	have_thr = pthread_create(&thr, NULL, watch_signals, &w) == 0;
	if (ready)
		ready(opaque);
	if (guestfs_mount_local_run(s->g) < 0)
		rc = guest_err(s, real);
out:
	sigaction(SIGTERM, &old[0], NULL);
	sigaction(SIGINT, &old[1], NULL);
	sigaction(SIGHUP, &old[2], NULL);
	if (have_thr) {
		char zero = 0;
		ssize_t wr = write(sig_pipe[1], &zero, 1);
		(void)wr;
		pthread_join(thr, NULL);
	}
	close(sig_pipe[0]);
	close(sig_pipe[1]);
	sig_pipe[0] = sig_pipe[1] = -1;
	return rc;
}
