/*
 * lease.h - knowing that nobody has written a file since a point in time.
 *
 * A verified read checks what it read against a signed hash.  Checking
 * the same bytes again on every later read is only needed if they may
 * have changed in between, and on a local file system they can change
 * only through a descriptor opened for writing (or a truncate).  The
 * kernel's read lease (fcntl F_SETLEASE, F_RDLCK) is exactly a promise
 * to be told of those: whoever opens the file for writing is held until
 * the lease holder lets go, or the kernel takes the lease away after
 * /proc/sys/fs/lease-break-time seconds.
 *
 * A file_lease holds such a lease on a descriptor open read-only and
 * answers one question cheaply, from any thread: "can the file have been
 * changed since the lease was taken, by a write that finished before
 * this call?"  Two ways it learns that it can:
 *
 *   - a thread of its own waits for the kernel's notice of a lease break
 *     (SIGURG, directed at that thread only and blocked there, so the
 *     process's own handling of SIGURG does not matter), marks the lease
 *     broken and only then lets go, so the writer's open returns after
 *     the mark: a read whose check comes after it sees the mark;
 *   - if that thread does not get to run (the whole process stopped, the
 *     notice lost), the kernel takes the lease away no sooner than
 *     lease-break-time after the break began.  So a check trusts the
 *     lease only within a window shorter than that since the kernel last
 *     said the lease stood (F_GETLEASE); past it, the check asks again.
 *
 * Once broken, a lease stays broken: the caller goes back to checking
 * every read.  Writers are held only for as long as the thread takes to
 * wake (microseconds), not for lease-break-time.
 */
#ifndef COMMON_LEASE_H
#define COMMON_LEASE_H

#include <stdbool.h>

struct file_lease;

/* Take a read lease on fd (open read-only, a regular file on a local
 * file system).  0 and *out, or -errno when the file cannot be leased:
 * EAGAIN (someone has it open for writing), EACCES (not the file's
 * owner, without CAP_LEASE), EOPNOTSUPP (a file system whose content can
 * change without a local open: network, FUSE, overlay), ENOLCK (leases
 * are disabled, or lease-break-time is too short to trust a window). */
int file_lease__take(int fd, struct file_lease **out);

/* For tests: as above with the window `window_ms` long and, if
 * `no_watcher`, without the thread (as if it never got to run). */
int file_lease__take_opts(int fd, unsigned window_ms, bool no_watcher,
			  struct file_lease **out);

/* true while nothing can have written the file since the lease was taken
 * (for any bytes read before this call); false from the first time that
 * is no longer certain, ever after.  Any thread. */
bool file_lease__unbroken(struct file_lease *l);

/* Let go of the lease and stop the thread.  NULL is fine. */
void file_lease__release(struct file_lease *l);

#endif /* COMMON_LEASE_H */
