/*
 * chroot.c - the root a build command runs in.
 *
 * A recipe's build commands are shell lines run inside the image's root,
 * and what they run (apt, update-alternatives, locale-gen, anything a
 * maintainer script calls) expects a system with /proc, /sys and /dev, as
 * on the booted appliance.  A bare chroot has empty directories there, and
 * those commands then fail in confusing ways ("/proc is not mounted",
 * "/dev/null: Permission denied").
 *
 * So the command's process enters a private mount namespace first, and the
 * mounts are made there: proc, a read-only sysfs, and a small tmpfs /dev
 * holding only null, zero, full, random, urandom and tty (bound from the
 * host), a private devpts instance and /dev/shm.  Nothing is mounted in the
 * builder's own namespace, so however the command ends (exit, crash,
 * SIGKILL of the build) no mount is left behind on the host and none of it
 * is written into the image: the directories under the root are untouched.
 *
 * The root's contents may come from a tarball off the internet, so each
 * mount point must be a real directory (lstat, no symlink: a /proc that
 * points at "/" must not mount over the host's root); a missing or odd
 * mount point is skipped, not created, so the image is not changed.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "builder/steps.h"

static int sub(char *out, const char *root, const char *rel)
{
	int n = snprintf(out, PATH_MAX, "%s/%s", root, rel);
	return n > 0 && n < PATH_MAX ? 0 : -ENAMETOOLONG;
}

/* 1 when root/rel is a directory and not a symlink to one. */
static int real_dir(const char *root, const char *rel, char *path)
{
	struct stat st;

	return sub(path, root, rel) == 0 && lstat(path, &st) == 0 &&
	       S_ISDIR(st.st_mode);
}

static int mount_dev(const char *root, char *path)
{
	static const char *const nodes[] = {
		"null", "zero", "full", "random", "urandom", "tty",
	};
	static const char *const links[][2] = {
		{ "fd", "/proc/self/fd" }, { "stdin", "/proc/self/fd/0" },
		{ "stdout", "/proc/self/fd/1" }, { "stderr", "/proc/self/fd/2" },
		{ "ptmx", "pts/ptmx" },
	};
	char p[PATH_MAX], host[64];

	if (mount("appliance-dev", path, "tmpfs", MS_NOSUID | MS_NOEXEC,
		  "mode=0755,size=1m") < 0)
		return -errno;
	for (size_t i = 0; i < sizeof(nodes) / sizeof(nodes[0]); i++) {
		snprintf(host, sizeof(host), "/dev/%s", nodes[i]);
		if (sub(p, path, nodes[i]) < 0)
			return -ENAMETOOLONG;
		int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
		if (fd < 0)
			return -errno;
		close(fd);
		if (mount(host, p, NULL, MS_BIND, NULL) < 0)
			return -errno;
	}
	for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++) {
		if (sub(p, path, links[i][0]) < 0 || symlink(links[i][1], p) < 0)
			return -errno;
	}
	if (sub(p, path, "pts") < 0 || mkdir(p, 0755) < 0 ||
	    mount("devpts", p, "devpts", MS_NOSUID | MS_NOEXEC,
		  "newinstance,ptmxmode=0666,mode=0620") < 0)
		return -errno;
	if (sub(p, path, "shm") < 0 || mkdir(p, 01777) < 0 ||
	    mount("shm", p, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") < 0)
		return -errno;
	(void)root;
	return 0;
}

int chroot__enter(const char *root, const char **what)
{
	char path[PATH_MAX];

	*what = "unshare(CLONE_NEWNS)";
	if (unshare(CLONE_NEWNS) < 0)
		return -errno;
	/* Private, so nothing mounted below propagates back to the host
	 * (systemd makes / shared by default). */
	*what = "making mounts private";
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return -errno;
	*what = "mounting /proc";
	if (real_dir(root, "proc", path) &&
	    mount("proc", path, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC,
		  NULL) < 0)
		return -errno;
	*what = "mounting /sys";
	if (real_dir(root, "sys", path) &&
	    mount("sysfs", path, "sysfs",
		  MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		return -errno;
	*what = "mounting /dev";
	if (real_dir(root, "dev", path)) {
		int rc = mount_dev(root, path);
		if (rc < 0)
			return rc;
	}
	*what = "chroot";
	if (chroot(root) < 0 || chdir("/") < 0)
		return -errno;
	return 0;
}
