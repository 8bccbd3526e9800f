/*
 * unmount.c - take one of our FUSE mounts down and wait for its server.
 *
 * fusermount3 -u returns as soon as the kernel has detached the mount;
 * the process behind it still has to flush the image (and, for a
 * libguestfs mount, shut its appliance down first).  A script that runs
 * `img unmount` and then opens the image must not race with that, so we
 * read the serving process's pid from the mount's source ("appliance:PID",
 * see mount__fsname) and wait until it has exited.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mount/mount-int.h"

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void unescape(char *s)
{
	char *d = s;

	while (*s) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' &&
		    s[2] >= '0' && s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
			*d++ = (char)(((s[1] - '0') << 6) | ((s[2] - '0') << 3) |
				      (s[3] - '0'));
			s += 4;
		} else {
			*d++ = *s++;
		}
	}
	*d = '\0';
}

/* Find `mnt` in mountinfo; return its serving pid (>0), 0 if it is a
 * mount but not one of ours, -ENOENT if it is not a mount point. */
static long find_server(const char *mnt, char *fstype, size_t fstype_len)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL;
	size_t cap = 0;
	long pid = -ENOENT;

	if (!f)
		return -errno;
	while (getline(&line, &cap, f) > 0) {
		/* id parent maj:min root mountpoint opts [optional...] -
		 * fstype source superopts */
		char *save = NULL, *fields[5] = { 0 };
		char *tok = strtok_r(line, " \n", &save);
		int i = 0;
		for (; tok && i < 5; i++, tok = strtok_r(NULL, " \n", &save))
			fields[i] = tok;
		if (i < 5)
			continue;
		unescape(fields[4]);
		if (strcmp(fields[4], mnt) != 0)
			continue;
		while (tok && strcmp(tok, "-") != 0)
			tok = strtok_r(NULL, " \n", &save);
		char *type = tok ? strtok_r(NULL, " \n", &save) : NULL;
		char *src = type ? strtok_r(NULL, " \n", &save) : NULL;
		if (!type || !src)
			continue;
		/* The last entry for a mount point is the visible one. */
		snprintf(fstype, fstype_len, "%s", type);
		unescape(src);
		pid = 0;
		if (strncmp(type, "fuse", 4) == 0 &&
		    strncmp(src, "appliance:", 10) == 0) {
			char *end;
			long v = strtol(src + 10, &end, 10);
			if (*end == '\0' && v > 0 && v <= INT_MAX)
				pid = v;
		}
	}
	free(line);
	fclose(f);
	return pid;
}

/* A zombie has finished everything it will ever do (the shell that
 * started a foreground attach with & may not have reaped it yet). */
static int gone(long pid)
{
	char path[64], buf[512];
	FILE *f;

	if (kill((pid_t)pid, 0) < 0 && errno == ESRCH)
		return 1;
	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	f = fopen(path, "re");
	if (!f)
		return 1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *rp = strrchr(buf, ')');
	return rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X');
}

static int run_fusermount(const char *mnt)
{
	pid_t child = fork();
	int status;

	if (child < 0)
		return mount_err(errno, "fork: %s", strerror(errno));
	if (child == 0) {
		execlp("fusermount3", "fusermount3", "-u", "-q", "--", mnt,
		       (char *)NULL);
		_exit(127);
	}
	while (waitpid(child, &status, 0) < 0)
		if (errno != EINTR)
			return mount_err(errno, "waitpid: %s", strerror(errno));
	if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
		return mount_err(ENOENT, "fusermount3 not found (install "
				 "the fuse3 package)");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return mount_err(EBUSY, "%s: fusermount3 -u failed (is it "
				 "busy? a process may have its working "
				 "directory or a file open there)", mnt);
	return 0;
}

int mount__unmount(const char *path, unsigned timeout_s)
{
	char real[PATH_MAX], fstype[64] = "";
	long pid;
	int rc;

	if (!realpath(path, real)) {
		/* A mount whose server died answers ENOTCONN to everything,
		 * realpath's lstat included; it must still be removable.
		 * Resolve the parent instead and append the last name. */
		if (errno != ENOTCONN)
			return mount_err(errno, "%s: %s", path,
					 strerror(errno));
		char *copy = strdup(path);
		if (!copy)
			return mount_err(ENOMEM, "out of memory");
		char *slash = strrchr(copy, '/');
		const char *base = slash ? slash + 1 : copy;
		const char *parent = slash ? (slash == copy ? "/" : copy) : ".";
		if (slash)
			*slash = '\0';
		char pr[PATH_MAX];
		int ok = realpath(parent, pr) != NULL &&
			 strlen(pr) + 1 + strlen(base) < sizeof(real);
		if (ok) {
			size_t pl = strcmp(pr, "/") == 0 ? 0 : strlen(pr);
			memcpy(real, pr, pl);
			real[pl] = '/';
			memcpy(real + pl + 1, base, strlen(base) + 1);
		}
		free(copy);
		if (!ok)
			return mount_err(ENOTCONN, "%s: %s", path,
					 strerror(ENOTCONN));
	}
	pid = find_server(real, fstype, sizeof(fstype));
	if (pid == -ENOENT)
		return mount_err(EINVAL, "%s: not a mount point", path);
	if (pid < 0)
		return mount_err((int)-pid, "/proc/self/mountinfo: %s",
				 strerror((int)-pid));
	if (pid == 0)
		return mount_err(EINVAL, "%s: a %s mount that appliance did "
				 "not make; not touching it", path, fstype);
	rc = run_fusermount(real);
	if (rc < 0)
		return rc;
	struct timespec start, now, tick = { 0, 20 * 1000 * 1000 };
	clock_gettime(CLOCK_MONOTONIC, &start);
	while (!gone(pid)) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((unsigned long)(now.tv_sec - start.tv_sec) >= timeout_s)
			return mount_err(ETIMEDOUT, "%s: unmounted, but its "
					 "server (pid %ld) is still flushing "
					 "after %u s", path, pid, timeout_s);
		nanosleep(&tick, NULL);
	}
	return 0;
}
