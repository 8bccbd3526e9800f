/*
 * error.c - the thread-local error message of the mount library.
 */
#include <stdarg.h>
#include <stdio.h>

#include "mount/mount-int.h"

static __thread char mount_errbuf[1024];

const char *mount__error(void)
{
	return mount_errbuf;
}

int mount_err(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(mount_errbuf, sizeof(mount_errbuf), fmt, ap);
	va_end(ap);
	return -err;
}

void mount__fsname(char *buf, size_t len)
{
	snprintf(buf, len, "appliance:%ld", (long)getpid());
}
