/*
 * launch.c - prepare a package for an engine (see launch.h).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/tmpfile.h"
#include "runtime/launch.h"

static __thread char launch_errbuf[1024];

const char *launch__error(void)
{
	return launch_errbuf;
}

static int launch_err(int err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int launch_err(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(launch_errbuf, sizeof(launch_errbuf), fmt, ap);
	va_end(ap);
	return -(err > 0 ? err : EIO);
}

/* What a persistent overlay records as its backing file: the package's
 * identity, so an overlay is never stacked on a different package. */
static void backing_id(const struct package *p, char *buf, size_t len)
{
	char hx[17];

	for (int i = 0; i < 8; i++)
		sprintf(hx + 2 * i, "%02x", p->members[p->disk].sha256[i]);
	snprintf(buf, len, "appliance:%s-%s:%s", p->name, p->version, hx);
}

static int open_overlay(struct launch *l, const struct launch_opts *o)
{
	struct package *p = l->pkg;
	char id[256];
	imgfmt_image *disk = NULL;
	struct imgfmt_open_opts oo = {
		.flags = IMGFMT_OPEN_RDWR | IMGFMT_OPEN_NO_BACKING,
		.format = "avd" };
	int rc;

	backing_id(p, id, sizeof(id));
	if (o->persist) {
		snprintf(l->overlay_path, sizeof(l->overlay_path), "%s",
			 o->persist);
	} else {
		snprintf(l->overlay_path, sizeof(l->overlay_path),
			 "%s/overlay.avd", l->dir);
		l->overlay_temp = true;
	}
	if (!o->persist || access(o->persist, F_OK) != 0) {
		struct imgfmt_create_opts c = {
			.format = "avd",
			.size = p->disk_virtual_size,
			.backing_file = id,
			.backing_format = "appliance",
		};
		if (imgfmt__create(l->overlay_path, &c) < 0)
			return launch_err(EIO, "overlay: %s", imgfmt__error());
	}
	rc = imgfmt__open(l->overlay_path, &oo, &l->overlay);
	if (l->overlay_temp) {
		/* The open image is all the run needs: with no name left
		 * the overlay goes with the process, however it ends. */
		unlink(l->overlay_path);
		rmdir(l->dir);
		l->overlay_temp = false;
		l->dir[0] = 0;
	}
	if (rc < 0)
		return launch_err(EIO, "overlay: %s", imgfmt__error());
	struct imgfmt_info info;
	if (imgfmt__info(l->overlay, &info) < 0 ||
	    strcmp(info.backing_file, id) != 0 ||
	    info.virtual_size < p->disk_virtual_size)
		return launch_err(EINVAL, "%s: this overlay belongs to %s, not "
				  "to %s %s", l->overlay_path,
				  info.backing_file[0] ? info.backing_file
						       : "no package",
				  p->name, p->version);
	rc = package__open_disk(p, &disk);
	if (rc < 0)
		return launch_err(-rc, "%s", package__error());
	if (imgfmt__attach_backing(l->overlay, disk) < 0) {
		imgfmt__close(disk);
		return launch_err(EIO, "%s", imgfmt__error());
	}
	return 0;
}

/* Copy a member out of the package into a file with no name (see
 * common/tmpfile.h) that the engines open as /proc/self/fd/N: nothing
 * of the run stays in $TMPDIR if it is killed. */
static int extract(struct launch *l, int member, int *fd, char *path,
		   size_t len)
{
	const char *dir = tmpfile__dir();
	int rc;

	*fd = tmpfile__open(dir);
	if (*fd < 0)
		return launch_err(-*fd, "%s: temporary file: %s", dir,
				  strerror(-*fd));
	rc = package__extract(l->pkg, member, *fd);
	if (rc < 0)
		return launch_err(-rc, "%s", package__error());
	snprintf(path, len, "/proc/self/fd/%d", *fd);
	return 0;
}

int launch__prepare(const char *package_path, const struct launch_opts *o,
		    struct launch **out)
{
	struct launch *l = calloc(1, sizeof(*l));
	int rc;

	*out = NULL;
	if (!l)
		return launch_err(ENOMEM, "out of memory");
	l->kernel_fd = l->initrd_fd = -1;
	rc = package__open(package_path, &l->pkg);
	if (rc < 0) {
		rc = launch_err(-rc, "%s", package__error());
		goto fail;
	}
	rc = package__verify_signature(l->pkg, o->key, l->keyid, NULL);
	if (rc == 0) {
		l->signature_ok = true;
	} else if (o->insecure) {
		snprintf(l->warning, sizeof(l->warning), "%s",
			 package__error());
	} else {
		rc = launch_err(-rc, "%s (run it anyway only with --insecure)",
				package__error());
		goto fail;
	}
	rc = package__verify_members(l->pkg, false);
	if (rc < 0) {
		rc = launch_err(-rc, "%s", package__error());
		goto fail;
	}
	rc = extract(l, l->pkg->kernel, &l->kernel_fd, l->kernel,
		     sizeof(l->kernel));
	if (rc < 0)
		goto fail;
	if (l->pkg->initrd >= 0) {
		rc = extract(l, l->pkg->initrd, &l->initrd_fd, l->initrd,
			     sizeof(l->initrd));
		if (rc < 0)
			goto fail;
	}
	if (!o->persist) {
		/* The throwaway overlay needs a name only until it is open. */
		snprintf(l->dir, sizeof(l->dir), "%s/appliance-run.XXXXXX",
			 tmpfile__dir());
		if (!mkdtemp(l->dir)) {
			rc = launch_err(errno, "%s: %s", l->dir,
					strerror(errno));
			l->dir[0] = 0;
			goto fail;
		}
	}
	rc = open_overlay(l, o);
	if (rc < 0)
		goto fail;
	*out = l;
	return 0;
fail:
	launch__finish(l);
	return rc;
}

int launch__finish(struct launch *l)
{
	int rc = 0;

	if (!l)
		return 0;
	if (l->overlay && imgfmt__close(l->overlay) < 0)
		rc = launch_err(EIO, "%s", imgfmt__error());
	if (l->overlay_temp && l->overlay_path[0])
		unlink(l->overlay_path);
	if (l->kernel_fd >= 0)
		close(l->kernel_fd);
	if (l->initrd_fd >= 0)
		close(l->initrd_fd);
	if (l->dir[0])
		rmdir(l->dir);
	package__close(l->pkg);
	free(l);
	return rc;
}
