/*
 * initramfs.c - the initramfs for busybox and tarball bases: just enough
 * to load the virtio drivers and switch to the root disk.
 *
 * The Debian cloud kernel has ext4 built in but virtio_blk/virtio_pci/
 * virtio_mmio as modules, so something must insmod them before /dev/vda
 * exists.  We write a newc cpio (the format the kernel unpacks) with
 * libarchive: busybox, an /init script, /dev/console, and the modules in
 * dependency order (kmod.c).  Entries are sorted, with fixed owners,
 * inode numbers and mtimes (SOURCE_DATE_EPOCH), so the same inputs give
 * the same bytes.
 */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "builder/steps.h"

/* virtio_pci for -M pc / q35, virtio_mmio for -M microvm (ACPI-described
 * virtio-mmio devices), block and net drivers. */
static const char *const initramfs_modules[] = {
	"virtio_pci", "virtio_mmio", "virtio_blk", "virtio_net",
};

static const char init_script[] =
"#!/bin/busybox sh\n"
"# /init of an appliance initramfs (written by `appliance build`): load\n"
"# the virtio drivers, mount the root disk, switch to its init.\n"
"export PATH=/bin\n"
"/bin/busybox mkdir -p /proc /sys /dev /newroot\n"
"/bin/busybox mount -t proc proc /proc\n"
"/bin/busybox mount -t sysfs sysfs /sys\n"
"/bin/busybox mount -t devtmpfs devtmpfs /dev\n"
"while read -r m; do\n"
"\t/bin/busybox insmod \"/lib/modules/$m\" || echo \"initramfs: insmod $m failed\"\n"
"done < /etc/modules.order\n"
"root=/dev/vda; rootfstype=ext4; init=/sbin/init; mode=rw; debug=\n"
"for arg in $(/bin/busybox cat /proc/cmdline); do\n"
"\tcase \"$arg\" in\n"
"\troot=*) root=${arg#root=} ;;\n"
"\trootfstype=*) rootfstype=${arg#rootfstype=} ;;\n"
"\tinit=*) init=${arg#init=} ;;\n"
"\tro) mode=ro ;;\n"
"\tappliance.debug) debug=1 ;;\n"
"\tesac\n"
"done\n"
"fail() {\n"
"\techo \"initramfs: $*\"\n"
"\t[ -n \"$debug\" ] && exec /bin/busybox sh\n"
"\t/bin/busybox poweroff -f\n"
"}\n"
"i=0\n"
"while [ ! -b \"$root\" ] && [ $i -lt 200 ]; do\n"
"\t/bin/busybox usleep 50000; i=$((i + 1))\n"
"done\n"
"[ -b \"$root\" ] || fail \"root device $root did not appear\"\n"
"/bin/busybox mount -t \"$rootfstype\" -o \"$mode\" \"$root\" /newroot ||\n"
"\tfail \"cannot mount $root\"\n"
"/bin/busybox umount /proc /sys\n"
"/bin/busybox mount --move /dev /newroot/dev 2>/dev/null ||\n"
"\t/bin/busybox umount /dev\n"
"exec /bin/busybox switch_root /newroot \"$init\"\n"
"fail \"switch_root to $init failed\"\n";

struct ient {
	char *path;       /* in the archive, no leading '/' */
	mode_t mode;      /* with type bits */
	char *src;        /* regular file: host path to copy, or NULL */
	char *data;       /* regular file: inline content */
	size_t len;
	char *target;     /* symlink target */
	dev_t rdev;
};

struct ilist {
	struct ient *v;
	size_t n, cap;
};

static int add(struct ilist *l, const char *path, mode_t mode,
	       const char *src, const char *data, size_t len,
	       const char *target, dev_t rdev)
{
	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 64;
		struct ient *nv = realloc(l->v, ncap * sizeof(*nv));
		if (!nv)
			return build__err(ENOMEM, "out of memory");
		l->v = nv;
		l->cap = ncap;
	}
	struct ient *e = &l->v[l->n++];
	memset(e, 0, sizeof(*e));
	e->path = strdup(path);
	e->mode = mode;
	e->src = src ? strdup(src) : NULL;
	if (data) {
		e->data = malloc(len + 1);
		if (e->data)
			memcpy(e->data, data, len);
		e->len = len;
	}
	e->target = target ? strdup(target) : NULL;
	e->rdev = rdev;
	if (!e->path || (src && !e->src) || (data && !e->data) ||
	    (target && !e->target))
		return build__err(ENOMEM, "out of memory");
	return 0;
}

/* Add dir and all its parents (once each). */
static int add_dirs(struct ilist *l, const char *path)
{
	char buf[1024];
	size_t n = strlen(path);

	if (n >= sizeof(buf))
		return build__err(ENAMETOOLONG, "initramfs path too long");
	memcpy(buf, path, n + 1);
	for (size_t i = 0; i <= n; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		char save = buf[i];
		buf[i] = '\0';
		int seen = 0;
		for (size_t j = 0; j < l->n; j++)
			if (strcmp(l->v[j].path, buf) == 0)
				seen = 1;
		if (!seen && add(l, buf, S_IFDIR | 0755, NULL, NULL, 0, NULL,
				 0) < 0)
			return -ENOMEM;
		buf[i] = save;
	}
	return 0;
}

static int cmp_ient(const void *a, const void *b)
{
	return strcmp(((const struct ient *)a)->path,
		      ((const struct ient *)b)->path);
}

static void free_list(struct ilist *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].path);
		free(l->v[i].src);
		free(l->v[i].data);
		free(l->v[i].target);
	}
	free(l->v);
}

static int write_cpio(struct build_ctx *c, struct ilist *l, const char *out)
{
	struct archive *a = archive_write_new();
	struct archive_entry *e = archive_entry_new();
	int rc = 0;

	if (!a || !e) {
		rc = build__err(ENOMEM, "out of memory");
		goto done;
	}
	qsort(l->v, l->n, sizeof(*l->v), cmp_ient);
	archive_write_set_format_cpio_newc(a);
	archive_write_add_filter_none(a);
	if (archive_write_open_filename(a, out) != ARCHIVE_OK) {
		rc = build__err(EIO, "%s: %s", out, archive_error_string(a));
		goto done;
	}
	for (size_t i = 0; i < l->n; i++) {
		struct ient *it = &l->v[i];
		char *content = it->data;
		size_t len = it->len;

		if (it->src) {
			rc = build__read_file(it->src, &content, &len,
					      256u << 20);
			if (rc < 0)
				goto done;
		}
		archive_entry_clear(e);
		archive_entry_set_pathname(e, it->path);
		archive_entry_set_mode(e, it->mode);
		archive_entry_set_uid(e, 0);
		archive_entry_set_gid(e, 0);
		archive_entry_set_mtime(e, c->sde, 0);
		archive_entry_set_ino(e, (la_int64_t)i + 1);
		archive_entry_set_nlink(e, S_ISDIR(it->mode) ? 2 : 1);
		if (S_ISLNK(it->mode))
			archive_entry_set_symlink(e, it->target);
		if (S_ISCHR(it->mode))
			archive_entry_set_rdev(e, it->rdev);
		archive_entry_set_size(e, S_ISREG(it->mode) ? (la_int64_t)len
				       : 0);
		if (archive_write_header(a, e) != ARCHIVE_OK ||
		    (S_ISREG(it->mode) && len &&
		     archive_write_data(a, content, len) != (la_ssize_t)len)) {
			rc = build__err(EIO, "%s: writing %s: %s", out,
					it->path, archive_error_string(a));
			if (it->src)
				free(content);
			goto done;
		}
		if (it->src)
			free(content);
	}
	if (archive_write_close(a) != ARCHIVE_OK)
		rc = build__err(EIO, "%s: %s", out, archive_error_string(a));
done:
	if (e)
		archive_entry_free(e);
	if (a)
		archive_write_free(a);
	return rc;
}

int initramfs__build(struct build_ctx *c)
{
	struct ilist l = { 0 };
	char **mods = NULL, *dep = NULL, *order = NULL, *dep_path = NULL;
	size_t n_mods = 0, olen = 0;
	int rc;

	if ((rc = add_dirs(&l, "bin")) < 0 || (rc = add_dirs(&l, "dev")) < 0 ||
	    (rc = add_dirs(&l, "etc")) < 0 || (rc = add_dirs(&l, "proc")) < 0 ||
	    (rc = add_dirs(&l, "sys")) < 0 ||
	    (rc = add_dirs(&l, "newroot")) < 0)
		goto out;
	if ((rc = add(&l, "bin/busybox", S_IFREG | 0755, "/bin/busybox", NULL,
		      0, NULL, 0)) < 0 ||
	    (rc = add(&l, "bin/sh", S_IFLNK | 0777, NULL, NULL, 0, "busybox",
		      0)) < 0 ||
	    (rc = add(&l, "init", S_IFREG | 0755, NULL, init_script,
		      strlen(init_script), NULL, 0)) < 0 ||
	    /* The kernel opens /dev/console for init before anything is
	     * mounted; without it init's output is lost. */
	    (rc = add(&l, "dev/console", S_IFCHR | 0600, NULL, NULL, 0, NULL,
		      makedev(5, 1))) < 0)
		goto out;

	if (c->modules_dir) {
		dep_path = build__path(c->modules_dir, "modules.dep");
		if ((rc = build__read_file(dep_path, &dep, NULL, 64u << 20)) < 0)
			goto out;
		rc = kmod__resolve(dep, initramfs_modules,
				   sizeof(initramfs_modules) /
				   sizeof(initramfs_modules[0]),
				   &mods, &n_mods);
		if (rc < 0)
			goto out;
		for (size_t i = 0; i < n_mods; i++) {
			char *src = build__path(c->modules_dir, mods[i]);
			char in[1024];
			snprintf(in, sizeof(in), "lib/modules/%s", mods[i]);
			char *slash = strrchr(in, '/');
			*slash = '\0';
			rc = add_dirs(&l, in);
			*slash = '/';
			if (rc == 0)
				rc = add(&l, in, S_IFREG | 0644, src, NULL, 0,
					 NULL, 0);
			free(src);
			if (rc < 0)
				goto out;
			size_t need = olen + strlen(mods[i]) + 2;
			char *no = realloc(order, need);
			if (!no) {
				rc = build__err(ENOMEM, "out of memory");
				goto out;
			}
			order = no;
			olen += (size_t)sprintf(order + olen, "%s\n", mods[i]);
			build__log(c, "# initramfs module %s\n", mods[i]);
		}
	}
	if ((rc = add(&l, "etc/modules.order", S_IFREG | 0644, NULL,
		      order ? order : "", olen, NULL, 0)) < 0)
		goto out;
	free(c->initrd);
	c->initrd = build__path(c->work, "initrd.img");
	rc = write_cpio(c, &l, c->initrd);
out:
	free_list(&l);
	kmod__free_list(mods, n_mods);
	free(dep);
	free(dep_path);
	free(order);
	return rc;
}
