/*
 * lease.c - a read lease, and a thread that lets go of it the moment
 * somebody wants to write (see lease.h for why, and what it promises).
 *
 * The order of things at a lease break, which is the whole argument:
 *
 *   writer: open(O_WRONLY) -> the kernel sends SIGURG to our thread and
 *           holds the open
 *   thread: broken = 1 (seq_cst), then fcntl(F_SETLEASE, F_UNLCK)
 *   writer: open returns, write()
 *   reader: pread() ... file_lease__unbroken(): loads `broken`
 *
 * A pread that saw any written byte ran after the write, so after the
 * store of `broken`, and the load that follows the pread sees it.  If the
 * thread never runs, the kernel gives up waiting for it lease-break-time
 * after the break began, which was after the last F_GETLEASE that found
 * the lease standing: hence `trusted_until`.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include "lease.h"

#ifndef F2FS_SUPER_MAGIC
#define F2FS_SUPER_MAGIC 0xF2F52010
#endif

/* Default-ignored, so a notice that reaches the process before the lease
 * is pointed at our thread (F_SETLEASE points it at the process) does no
 * harm; blocked in our thread, so it queues there however the process
 * handles it. */
#define LEASE_SIGNAL SIGURG

struct file_lease {
	int fd;                   /* the caller's */
	int broken;               /* atomic; 1 for good */
	uint64_t trusted_until;   /* atomic; CLOCK_BOOTTIME ns */
	uint64_t window;          /* ns */
	pthread_mutex_t lock;     /* the slow path of file_lease__unbroken */

	/* The thread, and what take() and it tell each other. */
	pthread_t thread;
	int has_thread;
	pid_t owner;              /* the process the thread lives in */
	pthread_mutex_t start_lock;
	pthread_cond_t started;
	int start_state;          /* 0: starting, 1: lease taken, <0: -errno */
	int stop;                 /* atomic */
};

/* CLOCK_BOOTTIME counts a suspend too, so it never runs slower than the
 * jiffies the kernel times a lease break with. */
static uint64_t boottime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* File systems whose files change only through this kernel's opens: not
 * NFS, CIFS, FUSE or 9p (the server changes them), nor overlayfs (its
 * layers change under it). */
static int local_fs(int fd)
{
	struct statfs sf;

	if (fstatfs(fd, &sf) < 0)
		return 0;
	switch ((unsigned long)sf.f_type) {
	case EXT4_SUPER_MAGIC:   /* also ext2 and ext3 */
	case XFS_SUPER_MAGIC:
	case BTRFS_SUPER_MAGIC:
	case TMPFS_MAGIC:
	case F2FS_SUPER_MAGIC:
		return 1;
	}
	return 0;
}

/* Seconds the kernel holds a writer before taking a lease away; -1 if
 * unknown. */
static int lease_break_time(void)
{
	FILE *f = fopen("/proc/sys/fs/lease-break-time", "re");
	int s = -1;

	if (f) {
		if (fscanf(f, "%d", &s) != 1)
			s = -1;
		fclose(f);
	}
	return s;
}

static void mark_broken(struct file_lease *l)
{
	__atomic_store_n(&l->broken, 1, __ATOMIC_SEQ_CST);
	fcntl(l->fd, F_SETLEASE, F_UNLCK);
}

static void start_done(struct file_lease *l, int state)
{
	pthread_mutex_lock(&l->start_lock);
	l->start_state = state;
	pthread_cond_signal(&l->started);
	pthread_mutex_unlock(&l->start_lock);
}

/* Take the lease, its notice to come as LEASE_SIGNAL, and start the
 * window; 0 or -errno. */
static int set_lease(struct file_lease *l)
{
	uint64_t t = boottime_ns();   /* no later than the lease */

	if (fcntl(l->fd, F_SETSIG, LEASE_SIGNAL) < 0 ||
	    fcntl(l->fd, F_SETLEASE, F_RDLCK) < 0)
		return -errno;
	__atomic_store_n(&l->trusted_until, t + l->window, __ATOMIC_RELEASE);
	return 0;
}

/* Takes the lease itself, so the notice can be pointed at this thread,
 * then waits for a notice (or file_lease__release's nudge). */
static void *watch(void *arg)
{
	struct file_lease *l = arg;
	struct f_owner_ex me = { .type = F_OWNER_TID, .pid = gettid() };
	sigset_t set;
	siginfo_t si;
	int r = set_lease(l);

	if (r == 0 && fcntl(l->fd, F_SETOWN_EX, &me) < 0) {
		r = -errno;
		fcntl(l->fd, F_SETLEASE, F_UNLCK);
	}
	start_done(l, r < 0 ? r : 1);
	if (r < 0)
		return NULL;
	sigemptyset(&set);
	sigaddset(&set, LEASE_SIGNAL);
	while (sigwaitinfo(&set, &si) < 0)
		;   /* EINTR */
	/* Only the kernel and release() send it here: unless told to stop,
	 * a break. */
	if (!__atomic_load_n(&l->stop, __ATOMIC_ACQUIRE))
		mark_broken(l);
	return NULL;
}

int file_lease__take_opts(int fd, unsigned window_ms, bool no_watcher,
			  struct file_lease **out)
{
	struct file_lease *l;
	struct stat st;
	int r;

	*out = NULL;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	if (!local_fs(fd))
		return -EOPNOTSUPP;
	if (!(l = calloc(1, sizeof(*l))))
		return -ENOMEM;
	l->fd = fd;
	l->window = (uint64_t)window_ms * 1000000u;
	l->owner = getpid();
	pthread_mutex_init(&l->lock, NULL);
	pthread_mutex_init(&l->start_lock, NULL);
	pthread_cond_init(&l->started, NULL);

	if (no_watcher) {
		if ((r = set_lease(l)) < 0)
			goto fail;
		*out = l;
		return 0;
	}
	/* The thread takes no signal but its own (the runtime waits for
	 * some on other threads). */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = pthread_create(&l->thread, NULL, watch, l);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0) {
		r = -r;
		goto fail;
	}
	l->has_thread = 1;
	pthread_mutex_lock(&l->start_lock);
	while (l->start_state == 0)
		pthread_cond_wait(&l->started, &l->start_lock);
	r = l->start_state;
	pthread_mutex_unlock(&l->start_lock);
	if (r < 0)
		goto fail;
	*out = l;
	return 0;
fail:
	if (r == -EINVAL)   /* leases-enable is 0 */
		r = -ENOLCK;
	file_lease__release(l);
	return r;
}

int file_lease__take(int fd, struct file_lease **out)
{
	int s = lease_break_time();

	*out = NULL;
	/* Trust half the time the kernel would hold a writer: room for
	 * the clocks' ticks, never a window that is already over. */
	if (s < 2)
		return -ENOLCK;
	return file_lease__take_opts(fd, (unsigned)s * 500u, false, out);
}

/* Past the window: ask the kernel whether the lease still stands (not
 * broken, no break in progress). */
static bool confirm(struct file_lease *l)
{
	bool ok = false;

	pthread_mutex_lock(&l->lock);
	if (!__atomic_load_n(&l->broken, __ATOMIC_ACQUIRE)) {
		uint64_t t = boottime_ns();
		if (fcntl(l->fd, F_GETLEASE) == F_RDLCK) {
			__atomic_store_n(&l->trusted_until, t + l->window,
					 __ATOMIC_RELEASE);
			ok = true;
		} else {
			mark_broken(l);
		}
	}
	pthread_mutex_unlock(&l->lock);
	return ok;
}

bool file_lease__unbroken(struct file_lease *l)
{
	/* After the caller's read, whatever the compiler and CPU would
	 * make of it. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (__atomic_load_n(&l->broken, __ATOMIC_ACQUIRE))
		return false;
	if (boottime_ns() < __atomic_load_n(&l->trusted_until,
					    __ATOMIC_ACQUIRE))
		return true;
	return confirm(l);
}

void file_lease__release(struct file_lease *l)
{
	if (!l)
		return;
	/* A child after fork() has no thread to stop, and its lease is
	 * the parent's. */
	if (l->has_thread && l->owner == getpid()) {
		__atomic_store_n(&l->stop, 1, __ATOMIC_RELEASE);
		pthread_kill(l->thread, LEASE_SIGNAL);
		pthread_join(l->thread, NULL);
	}
	if (l->owner == getpid() && !l->broken)
		fcntl(l->fd, F_SETLEASE, F_UNLCK);
	pthread_cond_destroy(&l->started);
	pthread_mutex_destroy(&l->start_lock);
	pthread_mutex_destroy(&l->lock);
	free(l);
}
