/*
 * durable.c - temp name, fsync, rename, fsync the directory (durable.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/durable.h"

int durable__fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), r = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0 && errno != EINVAL)
		r = -errno;
	close(fd);
	return r;
}

/* The directory that holds path ("." for a bare name), malloc'ed. */
static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');

	return !slash ? strdup(".") : slash == path ? strdup("/")
	       : strndup(path, (size_t)(slash - path));
}

int durable__fsync_dir_of(const char *path)
{
	char *dir = dir_of(path);
	int r;

	if (!dir)
		return -ENOMEM;
	r = durable__fsync_dir(dir);
	free(dir);
	return r;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* PATH.tmp-XXXXXX, created with mode (less the umask); its fd or -errno,
 * *tmp its malloc'ed name. */
static int open_named_temp(const char *path, unsigned mode, char **tmp)
{
	static const char al[] = "abcdefghijklmnopqrstuvwxyz0123456789";
	uint8_t rnd[6];
	int fd = -EEXIST;

	*tmp = malloc(strlen(path) + 12);
	if (!*tmp)
		return -ENOMEM;
	for (int tries = 0; tries < 64 && fd == -EEXIST; tries++) {
		if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
			for (size_t i = 0; i < sizeof(rnd); i++)
				rnd[i] = (uint8_t)(rand() ^ getpid());
		char *p = *tmp + sprintf(*tmp, "%s.tmp-", path);
		for (size_t i = 0; i < sizeof(rnd); i++)
			*p++ = al[rnd[i] % (sizeof(al) - 1)];
		*p = '\0';
		fd = open(*tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
		if (fd < 0)
			fd = -errno;
	}
	if (fd < 0) {
		free(*tmp);
		*tmp = NULL;
	}
	return fd;
}

int durable__named_only;

int durable__new_open(const char *path, unsigned mode, struct durable_new *n)
{
	char *dir = dir_of(path);

	n->tmp = NULL;
	if (!dir)
		return -ENOMEM;
	/* Unnamed needs /proc/self/fd to be named later (linkat of the
	 * descriptor itself takes CAP_DAC_READ_SEARCH). */
	n->fd = !durable__named_only && access("/proc/self/fd", X_OK) == 0
		? open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, mode) : -1;
	free(dir);
	if (n->fd < 0)
		/* EOPNOTSUPP, EISDIR: a file system (or kernel) without
		 * O_TMPFILE; anything else (ENOENT, EACCES) the named
		 * one reports as well. */
		n->fd = open_named_temp(path, mode, &n->tmp);
	return n->fd < 0 ? n->fd : 0;
}

int durable__new_open_exact(const char *path, unsigned mode,
			    struct durable_new *n)
{
	int r = durable__new_open(path, mode, n);

	if (r == 0 && fchmod(n->fd, mode) < 0) {
		r = -errno;
		durable__new_discard(n);
	}
	return r;
}

/* Give the unnamed file n->fd the name `to`; -EEXIST if it is taken. */
static int link_unnamed(const struct durable_new *n, const char *to)
{
	char proc[64];

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", n->fd);
	return linkat(AT_FDCWD, proc, AT_FDCWD, to, AT_SYMLINK_FOLLOW) < 0
	       ? -errno : 0;
}

int durable__new_commit(struct durable_new *n, const char *path,
			int no_overwrite)
{
	int r = fsync(n->fd) < 0 ? -errno : 0;

	if (r == 0 && !n->tmp && no_overwrite) {
		r = link_unnamed(n, path);
	} else if (r == 0 && !n->tmp) {
		/* No rename for a file without a name: link it under a
		 * temporary one, then rename that over path. */
		char *tmp = NULL;
		for (int tries = 0; tries < 16; tries++) {
			int fd = open_named_temp(path, 0600, &tmp);
			if (fd < 0) {
				r = fd;
				break;
			}
			close(fd);
			unlink(tmp);   /* only the name was wanted */
			r = link_unnamed(n, tmp);
			if (r != -EEXIST)
				break;
			free(tmp);
			tmp = NULL;
		}
		n->tmp = r == 0 ? tmp : NULL;
		if (r < 0)
			free(tmp);
	}
	if (r == 0 && n->tmp && no_overwrite) {
		/* link() fails if the name exists: no window in which another
		 * writer's file could be replaced. */
		r = link(n->tmp, path) < 0 ? -errno : 0;
	} else if (r == 0 && n->tmp) {
		r = rename(n->tmp, path) < 0 ? -errno : 0;
		if (r == 0) {
			free(n->tmp);
			n->tmp = NULL;
		}
	}
	if (close(n->fd) < 0 && r == 0)
		r = -errno;
	n->fd = -1;
	durable__new_discard(n);
	return r < 0 ? r : durable__fsync_dir_of(path);
}

void durable__new_discard(struct durable_new *n)
{
	if (n->fd >= 0)
		close(n->fd);
	n->fd = -1;
	if (n->tmp)
		unlink(n->tmp);
	free(n->tmp);
	n->tmp = NULL;
}

int durable__write_file(const char *path, const void *buf, size_t len,
			unsigned mode, int no_overwrite)
{
	struct durable_new n;
	/* Exactly mode, whatever the umask: a key in the system-wide trust
	 * store must be readable by everyone even if root's umask is 077. */
	int r = durable__new_open_exact(path, mode, &n);

	if (r < 0)
		return r;
	r = write_all(n.fd, buf, len);
	if (r < 0) {
		durable__new_discard(&n);
		return r;
	}
	return durable__new_commit(&n, path, no_overwrite);
}
