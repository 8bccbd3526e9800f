/*
 * tmpfile.h - scratch files that cannot outlive the process.
 *
 * A run or a build needs files only while it lives (a kernel copied out
 * of a package for QEMU to load, a member being hashed).  Named temporary
 * files are left behind whenever the process dies without cleaning up
 * (SIGKILL, the OOM killer, a power cut); a file with no name goes away
 * with its last descriptor, however the process ends.
 */
#ifndef COMMON_TMPFILE_H
#define COMMON_TMPFILE_H

/* A new empty file in dir, open read-write and close-on-exec, that has
 * no name: O_TMPFILE where the file system supports it, else a fresh
 * name (mode 0600) unlinked at once.  A descriptor, or -errno. */
int tmpfile__open(const char *dir);

/* dir for scratch files: $TMPDIR if set and not empty, else /tmp. */
const char *tmpfile__dir(void);

#endif /* COMMON_TMPFILE_H */
