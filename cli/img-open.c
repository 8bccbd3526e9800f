/*
 * img-open.c - how `appliance img` commands open the file they are given.
 *
 * An image opens as itself.  An appliance package (a ustar whose first
 * member is manifest.toml) opens as its disk: read-only, through the
 * verified view, so every cluster is checked against the signed hash
 * tree as it is read, and only after the package's signature (against
 * the trust store) and its small members are checked, as `appliance run`
 * does: by a key in the trust store, or by the one --key names; with
 * --insecure an unsigned or untrusted package opens too, with a warning
 * (its members and clusters are still checked against its manifest,
 * which then proves only that the file is intact, not who made it).
 * Opened as a plain file, a package would pass for a raw disk:
 * `img info` would describe the tar and `img convert` would convert it.
 * An explicit format (-f raw) still opens the file as that format.
 *
 * The packages behind open disks stay open until exit: the verified view
 * reads its leaves from them.  The CLI opens at most a few.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "appliances/package.h"
#include "cli/cli.h"

#define IMG_OPEN_MAX_PACKAGES 4

static struct package *open_packages[IMG_OPEN_MAX_PACKAGES];
static int nr_open_packages;

static const char *trust_key_path;   /* --key */
static int trust_insecure;           /* --insecure */

int cli__img_trust_option(int c, const char *arg)
{
	if (c == CLI_OPT_PKG_KEY)
		trust_key_path = arg;
	else if (c == CLI_OPT_PKG_INSECURE)
		trust_insecure = 1;
	else
		return 0;
	return 1;
}

/* The package's signature, by --key's key or a trusted one; with
 * --insecure a bad or untrusted one is only a warning.  0 or -1. */
static int check_signature(struct package *p)
{
	struct minisign_pubkey pk;
	char kid[MINISIGN_KEYID_HEX];

	if (trust_key_path && minisign__pubkey_load(trust_key_path, &pk) < 0) {
		cli__error("%s", minisign__error());
		return -1;
	}
	if (package__verify_signature(p, trust_key_path ? &pk : NULL, kid,
				      NULL) == 0)
		return 0;
	if (trust_insecure) {
		fprintf(stderr, "appliance: warning: %s; opened anyway "
			"(--insecure)\n", package__error());
		return 0;
	}
	cli__error("%s; --insecure opens it anyway", package__error());
	return -1;
}

static void close_packages(void)
{
	while (nr_open_packages > 0)
		package__close(open_packages[--nr_open_packages]);
}

static int open_package_disk(const char *path, unsigned flags,
			     imgfmt_image **img)
{
	struct package *p;

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
	if (check_signature(p) < 0) {
		package__close(p);
		return -1;
	}
	if (package__verify_members(p, false) < 0 ||
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
