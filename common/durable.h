/*
 * durable.h - replacing files so that a crash leaves the old file or the
 * new one, never a mix, and a reported success survives power loss.
 *
 * The sequence is the classic one: write the new content to a temporary
 * name in the target's directory (so the rename stays on one file
 * system), fsync it, rename it over the target, fsync the directory (the
 * rename itself is directory metadata).  Every library uses these rather
 * than its own copy; they return 0 or -errno and leave messages to the
 * caller, which knows what the file is.
 */
#ifndef COMMON_DURABLE_H
#define COMMON_DURABLE_H

#include <stddef.h>

/* fsync a directory, after creating, renaming or removing entries in it;
 * or the directory that holds path ("." for a bare name).  0 or -errno;
 * file systems that cannot sync a directory (EINVAL) count as success. */
int durable__fsync_dir(const char *dir);
int durable__fsync_dir_of(const char *path);

/*
 * A new file that gets its name only once it is complete, for content
 * written bit by bit (an image being converted, a package being packed):
 * durable__new_open() creates it in the directory of the path it is to
 * become, unnamed (O_TMPFILE) where the file system allows, so that a
 * process killed midway leaves nothing; elsewhere under a temporary name
 * PATH.tmp-XXXXXX.  Its mode is `mode` less the umask, as open(2) makes
 * it.  The caller writes to fd, then durable__new_commit() fsyncs it,
 * names it path and fsyncs the directory; or durable__new_discard() drops
 * it.
 */
struct durable_new {
	int fd;        /* -1 when closed */
	char *tmp;     /* its temporary name, or NULL: it has none */
};

/* 0 or -errno (then nothing was created). */
int durable__new_open(const char *path, unsigned mode, struct durable_new *n);

/* The same with exactly `mode`, the umask not applied: for files others
 * must read whatever the writer's umask (a package a web server serves,
 * a key in the system-wide trust store). */
int durable__new_open_exact(const char *path, unsigned mode,
			    struct durable_new *n);

/* Tests set this to take the temporary-name way, as on file systems
 * without O_TMPFILE. */
extern int durable__named_only;

/* With no_overwrite an existing path is left alone and -EEXIST returned.
 * fd is closed either way; on failure the file is dropped, path is as it
 * was and no temporary name is left.  0 or -errno. */
int durable__new_commit(struct durable_new *n, const char *path,
			int no_overwrite);

void durable__new_discard(struct durable_new *n);

/* Write len bytes as the whole of path, created with exactly mode (the
 * umask not applied: files such as the system-wide trust store's keys
 * must be readable whatever the writer's umask).
 * With no_overwrite an existing path is left alone and -EEXIST returned.
 * On failure path is as it was and no temporary file is left. */
int durable__write_file(const char *path, const void *buf, size_t len,
			unsigned mode, int no_overwrite);

#endif /* COMMON_DURABLE_H */
