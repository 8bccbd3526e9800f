/*
 * launch.h - turn an appliance package into something an engine can boot.
 *
 * Both engines boot a kernel file, an initramfs file and open disk images.
 * launch__prepare() gets them from a package without trusting it: the
 * signature is checked (trust store, or a given key), the kernel and
 * initramfs are copied out with their SHA-256 checked on the way (the
 * copies are what boots; files with no name, see common/tmpfile.h, named
 * /proc/self/fd/N for the engines), and the disk is the package's own AVD member,
 * used in place and verified cluster by cluster as the guest reads it,
 * under a writable AVD overlay that takes every guest write.  The package
 * itself is never written.
 */
#ifndef RUNTIME_LAUNCH_H
#define RUNTIME_LAUNCH_H

#include <stdbool.h>

#include "appliances/package.h"
#include "imgfmt.h"

struct launch_opts {
	bool insecure;                      /* run unsigned/untrusted */
	const struct minisign_pubkey *key;  /* NULL: the trust store */
	const char *persist;                /* keep the overlay at this path
	                                       (reused if it exists); NULL:
	                                       a throwaway overlay */
};

struct launch {
	struct package *pkg;
	char dir[4096];          /* private directory, only while the
	                            throwaway overlay is being made */
	char kernel[64];         /* /proc/self/fd/N of kernel_fd */
	char initrd[64];         /* "" if the package has none */
	int kernel_fd, initrd_fd;
	char overlay_path[4200];
	bool overlay_temp;       /* overlay_path is ours to remove */
	imgfmt_image *overlay;   /* read-write; backing = verified disk */
	char keyid[MINISIGN_KEYID_HEX];
	bool signature_ok;       /* false only with insecure */
	char warning[1024];      /* why an insecure run is insecure */
};

const char *launch__error(void);

int launch__prepare(const char *package_path, const struct launch_opts *o,
		    struct launch **out);

/* Flush and close the overlay, close the kernel and initramfs copies
 * (which vanish with them).  Returns the flush's result.  A throwaway
 * overlay has no name from the moment it is open, so a run killed
 * outright leaves nothing behind either. */
int launch__finish(struct launch *l);

#endif /* RUNTIME_LAUNCH_H */
