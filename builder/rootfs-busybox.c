/*
 * rootfs-busybox.c - a root filesystem from scratch around busybox-static:
 * one static binary, its applet symlinks, and the few files init needs.
 *
 * /sbin/init is busybox init reading /etc/inittab; its sysinit script
 * /etc/init.d/rcS mounts the pseudo filesystems, sets the hostname, runs
 * first-boot commands once, then starts the recipe's services (scripts in
 * /etc/init.d listed in /etc/appliance/services, written by customize.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "builder/steps.h"

#define BUSYBOX "/bin/busybox"

static const char inittab[] =
	"# busybox init (written by `appliance build`)\n"
	"::sysinit:/etc/init.d/rcS\n"
	"::askfirst:-/bin/sh\n"
	"::ctrlaltdel:/sbin/reboot\n"
	"::shutdown:/etc/init.d/rcK\n"
	"::shutdown:/bin/umount -a -r\n";

static const char rcS[] =
	"#!/bin/sh\n"
	"# Boot script of a busybox appliance (written by `appliance build`).\n"
	"export PATH=/sbin:/bin:/usr/sbin:/usr/bin\n"
	"mount -t proc proc /proc\n"
	"mount -t sysfs sysfs /sys\n"
	"grep -q ' /dev ' /proc/mounts || mount -t devtmpfs devtmpfs /dev\n"
	"mkdir -p /dev/pts /dev/shm\n"
	"mount -t devpts devpts /dev/pts\n"
	"mount -t tmpfs -o mode=0755 tmpfs /run\n"
	"mount -t tmpfs -o mode=1777 tmpfs /tmp\n"
	"mount -o remount,rw / 2>/dev/null\n"
	"[ -s /etc/hostname ] && hostname -F /etc/hostname\n"
	"ip link set lo up 2>/dev/null\n"
	"if [ -e /etc/appliance/first-boot.pending ]; then\n"
	"\t/bin/sh /etc/appliance/first-boot.sh &&\n"
	"\t\trm -f /etc/appliance/first-boot.pending\n"
	"fi\n"
	"if [ -f /etc/appliance/services ]; then\n"
	"\twhile read -r s; do\n"
	"\t\t[ -n \"$s\" ] && /etc/init.d/\"$s\" start\n"
	"\tdone < /etc/appliance/services\n"
	"fi\n";

static const char rcK[] =
	"#!/bin/sh\n"
	"# Stop the services in reverse order.\n"
	"[ -f /etc/appliance/services ] || exit 0\n"
	"for s in $(sed -n '1!G;h;$p' /etc/appliance/services); do\n"
	"\t/etc/init.d/\"$s\" stop\n"
	"done\n";

static int mkfile(struct build_ctx *c, const char *rel, const char *data,
		  mode_t mode)
{
	char *p = build__path(c->root, rel);
	int rc = p ? build__write_file(p, data, strlen(data), mode)
		   : build__err(ENOMEM, "out of memory");
	free(p);
	return rc;
}

static int mkdirs(struct build_ctx *c, const char *rel, mode_t mode)
{
	char *p = build__path(c->root, rel);
	int rc = p ? build__mkdir_p(p, mode) : -ENOMEM;
	if (rc == 0 && chmod(p, mode) < 0)
		rc = build__err(errno, "chmod %s: %s", p, strerror(errno));
	free(p);
	return rc;
}

int rootfs__busybox(struct build_ctx *c)
{
	static const struct { const char *path; mode_t mode; } dirs[] = {
		{ "bin", 0755 }, { "sbin", 0755 }, { "usr/bin", 0755 },
		{ "usr/sbin", 0755 }, { "etc/init.d", 0755 },
		{ "etc/appliance", 0755 }, { "dev", 0755 }, { "proc", 0555 },
		{ "sys", 0555 }, { "tmp", 01777 }, { "run", 0755 },
		{ "root", 0700 }, { "home", 0755 }, { "var/log", 0755 },
		{ "mnt", 0755 },
	};
	char *list = NULL, *bb = NULL;
	int rc;

	if (access(BUSYBOX, X_OK) < 0)
		return build__err(ENOENT, "%s not found: install the "
				  "busybox-static package", BUSYBOX);
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
		if ((rc = mkdirs(c, dirs[i].path, dirs[i].mode)) < 0)
			return rc;
	bb = build__path(c->root, "bin/busybox");
	rc = build__copy_file(BUSYBOX, bb, 0755);
	free(bb);
	if (rc < 0)
		return rc;

	/* One symlink per applet, where busybox itself says it belongs. */
	const char *argv[] = { BUSYBOX, "--list-full", NULL };
	if ((rc = build__run_capture(c, argv, &list, 1 << 20)) < 0)
		return rc;
	for (char *save = NULL, *a = strtok_r(list, "\n", &save); a;
	     a = strtok_r(NULL, "\n", &save)) {
		if (!a[0] || a[0] == '/' || strstr(a, ".."))
			continue;
		if (strcmp(a, "bin/busybox") == 0)
			continue;
		char *p = build__path(c->root, a);
		if (!p) {
			rc = build__err(ENOMEM, "out of memory");
			break;
		}
		if (symlink("/bin/busybox", p) < 0 && errno != EEXIST) {
			rc = build__err(errno, "symlink %s: %s", p,
					strerror(errno));
			free(p);
			break;
		}
		free(p);
	}
	free(list);
	if (rc < 0)
		return rc;

	if ((rc = mkfile(c, "etc/inittab", inittab, 0644)) < 0 ||
	    (rc = mkfile(c, "etc/init.d/rcS", rcS, 0755)) < 0 ||
	    (rc = mkfile(c, "etc/init.d/rcK", rcK, 0755)) < 0 ||
	    (rc = mkfile(c, "etc/passwd",
			 "root:x:0:0:root:/root:/bin/sh\n", 0644)) < 0 ||
	    (rc = mkfile(c, "etc/shadow", "root:*:0:0:99999:7:::\n",
			 0600)) < 0 ||
	    (rc = mkfile(c, "etc/group", "root:x:0:\n", 0644)) < 0 ||
	    (rc = mkfile(c, "etc/fstab", "", 0644)) < 0 ||
	    (rc = mkfile(c, "etc/hosts", "127.0.0.1\tlocalhost\n", 0644)) < 0)
		return rc;
	return 0;
}
