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

/* Write len bytes as the whole of path, created with mode (the temporary
 * file is 0600 until then, so a secret is never readable by others).
 * With no_overwrite an existing path is left alone and -EEXIST returned.
 * On failure path is as it was and no temporary file is left. */
int durable__write_file(const char *path, const void *buf, size_t len,
			unsigned mode, int no_overwrite);

#endif /* COMMON_DURABLE_H */
