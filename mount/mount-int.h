/*
 * mount-int.h - internal to mount/.
 */
#ifndef MOUNT_INT_H
#define MOUNT_INT_H

#include <sys/types.h>
#include <unistd.h>

#include "mount/mount.h"

/* Record a message for this thread and return -err (err > 0). */
int mount_err(int err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif /* MOUNT_INT_H */
