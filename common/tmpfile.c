/*
 * tmpfile.c - scratch files that cannot outlive the process (tmpfile.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/tmpfile.h"

int tmpfile__open(const char *dir)
{
	char *path;
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd >= 0)
		return fd;
	/* EOPNOTSUPP/EISDIR: a file system (or kernel) without O_TMPFILE;
	 * anything else (ENOENT, EACCES) the fallback reports as well. */
	if (asprintf(&path, "%s/.appliance-tmp.XXXXXX", dir) < 0)
		return -ENOMEM;
	fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0)
		fd = -errno;
	else
		unlink(path);
	free(path);
	return fd;
}

const char *tmpfile__dir(void)
{
	const char *t = getenv("TMPDIR");

	return t && *t ? t : "/tmp";
}
