/*
 * img-open.c - how `appliance img` commands open the file they are given.
 *
 * An image opens as itself.  An appliance package (a ustar whose first
 * member is manifest.toml) opens as its disk: read-only, through the
 * verified view, so every cluster is checked against the signed hash
 * tree as it is read, and only after the package's signature (against
 * the trust store) and its small members are checked, as `appliance run`
 * does.  Opened as a plain file, a package would pass for a raw disk:
 * `img info` would describe the tar and `img convert` would convert it.
 * An explicit format (-f raw) still opens the file as that format.
 *
 * The packages behind open disks stay open until exit: the verified view
 * reads its leaves from them.  The CLI opens at most a few.
 */
#include <errno.h>
#include <stdlib.h>

#include "appliances/package.h"
#include "cli/cli.h"

#define IMG_OPEN_MAX_PACKAGES 4

static struct package *open_packages[IMG_OPEN_MAX_PACKAGES];
static int nr_open_packages;

static void close_packages(void)
{
	while (nr_open_packages > 0)
		package__close(open_packages[--nr_open_packages]);
}

static int open_package_disk(const char *path, unsigned flags,
			     imgfmt_image **img)
{
	struct package *p;
	char kid[MINISIGN_KEYID_HEX];

	if (flags & IMGFMT_OPEN_RDWR) {
		cli__error("%s: an appliance package's disk is read-only: "
			   "open it read-only, or convert it to an image to "
			   "change it", path);
		return -1;
	}
	if (nr_open_packages == IMG_OPEN_MAX_PACKAGES) {
		cli__error("%s: too many packages open", path);
		return -1;
	}
	if (package__open(path, &p) < 0) {
		cli__error("%s", package__error());
		return -1;
	}
	if (package__verify_signature(p, NULL, kid, NULL) < 0 ||
	    package__verify_members(p, false) < 0 ||
	    package__open_disk(p, img) < 0) {
		cli__error("%s", package__error());
		package__close(p);
		return -1;
	}
	if (nr_open_packages == 0)
		atexit(close_packages);
	open_packages[nr_open_packages++] = p;
	return 0;
}

int cli__img_open(const char *path, const struct imgfmt_open_opts *o,
		  imgfmt_image **img)
{
	*img = NULL;
	if (!o->format && cli__is_package(path))
		return open_package_disk(path, o->flags, img);
	if (imgfmt__open(path, o, img) < 0) {
		cli__error("%s", imgfmt__error());
		return -1;
	}
	return 0;
}
