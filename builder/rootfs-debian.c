/*
 * rootfs-debian.c - a Debian root filesystem with mmdebstrap, cached.
 *
 * mmdebstrap writes a tarball of SUITE/VARIANT plus the recipe's packages,
 * the cloud kernel and initramfs-tools (so the image carries its own
 * kernel and an initramfs that initramfs-tools built for it) and
 * systemd-sysv (an init).  That tarball is the slow part of a build, so it
 * is cached under a key over everything that changes it (suite, variant,
 * mirror, sorted packages): a rebuild that only changed files or commands
 * reuses it.  The cached tarball is our own output, so its device nodes
 * are allowed when extracting.
 *
 * The initramfs must carry the virtio drivers (the cloud kernel builds
 * them as modules): an essential hook lists them in
 * /etc/initramfs-tools/modules before the kernel package is configured.
 */
#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "builder/steps.h"

#define CACHE_FORMAT "appliance-debian-v1"

static const char *const always_packages[] = {
	"linux-image-cloud-amd64", "initramfs-tools", "systemd-sysv",
};

static const char modules_hook[] =
	"mkdir -p \"$1/etc/initramfs-tools\" && "
	"printf '%s\\n' virtio_pci virtio_mmio virtio_blk virtio_net "
	"virtio_console >> \"$1/etc/initramfs-tools/modules\"";

/* "URIs: http://..." / "deb http://... suite main" of the host's apt
 * configuration: the first archive that is not a security mirror. */
static char *mirror_from_text(const char *text, int deb822)
{
	for (const char *l = text; l && *l;) {
		const char *nl = strchr(l, '\n');
		size_t n = nl ? (size_t)(nl - l) : strlen(l);
		char line[1024];
		if (n < sizeof(line)) {
			memcpy(line, l, n);
			line[n] = '\0';
			char *uri = NULL;
			if (deb822 && strncmp(line, "URIs:", 5) == 0)
				uri = line + 5;
			else if (!deb822 && strncmp(line, "deb ", 4) == 0)
				uri = line + 4;
			if (uri) {
				while (*uri == ' ' || *uri == '\t')
					uri++;
				if (*uri == '[') { /* deb [opts] uri */
					char *e = strchr(uri, ']');
					uri = e ? e + 1 : uri;
					while (*uri == ' ')
						uri++;
				}
				uri[strcspn(uri, " \t")] = '\0';
				if ((!strncmp(uri, "http://", 7) ||
				     !strncmp(uri, "https://", 8)) &&
				    !strstr(uri, "security") &&
				    strstr(uri, "debian"))
					return strdup(uri);
			}
		}
		l = nl ? nl + 1 : NULL;
	}
	return NULL;
}

static char *host_mirror(void)
{
	char *text = NULL, *m = NULL;
	glob_t g;

	if (build__read_file("/etc/apt/sources.list", &text, NULL, 1 << 20)
	    == 0) {
		m = mirror_from_text(text, 0);
		free(text);
		if (m)
			return m;
	}
	if (glob("/etc/apt/sources.list.d/*.sources", 0, NULL, &g) == 0) {
		for (size_t i = 0; i < g.gl_pathc && !m; i++) {
			if (build__read_file(g.gl_pathv[i], &text, NULL,
					     1 << 20) < 0)
				continue;
			m = mirror_from_text(text, 1);
			free(text);
		}
		globfree(&g);
	}
	if (glob("/etc/apt/sources.list.d/*.list", 0, NULL, &g) == 0) {
		for (size_t i = 0; i < g.gl_pathc && !m; i++) {
			if (build__read_file(g.gl_pathv[i], &text, NULL,
					     1 << 20) < 0)
				continue;
			m = mirror_from_text(text, 0);
			free(text);
		}
		globfree(&g);
	}
	return m ? m : strdup("http://deb.debian.org/debian");
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int valid_pkg(const char *p)
{
	if (!p[0])
		return 0;
	for (; *p; p++)
		if (!strchr("abcdefghijklmnopqrstuvwxyz0123456789.+-:=~", *p))
			return 0;
	return 1;
}

/* Locate the kernel and initramfs initramfs-tools made inside the root. */
static int find_boot_files(struct build_ctx *c)
{
	char *pat = build__path(c->root, "boot/vmlinuz-*");
	glob_t g;
	int rc = 0;

	if (!pat)
		return build__err(ENOMEM, "out of memory");
	if (glob(pat, 0, NULL, &g) != 0 || g.gl_pathc == 0) {
		free(pat);
		return build__err(ENOENT, "no /boot/vmlinuz-* in the Debian "
				  "root (did linux-image-cloud-amd64 "
				  "install?)");
	}
	free(pat);
	/* glob sorts; the last is the newest version. */
	const char *k = g.gl_pathv[g.gl_pathc - 1];
	const char *rel = strstr(k, "/boot/vmlinuz-") + strlen("/boot/vmlinuz-");
	char name[512];
	free(c->kernel_image);
	c->kernel_image = strdup(k);
	free(c->kernel_release);
	c->kernel_release = strdup(rel);
	snprintf(name, sizeof(name), "boot/initrd.img-%s", rel);
	free(c->initrd);
	c->initrd = build__path(c->root, name);
	globfree(&g);
	if (access(c->initrd, R_OK) < 0)
		rc = build__err(ENOENT, "no /%s in the Debian root "
				"(initramfs-tools did not run?)", name);
	return rc;
}

int rootfs__debian_kernel(struct build_ctx *c)
{
	return find_boot_files(c);
}

int rootfs__debian(struct build_ctx *c, int *cached)
{
	const struct recipe *r = c->r;
	const char *suite = r->base.suite ? r->base.suite : "bookworm";
	const char *variant = r->base.variant ? r->base.variant : "minbase";
	char *mirror = r->base.mirror ? strdup(r->base.mirror) : host_mirror();
	size_t n = r->n_packages + 3;
	const char **pk = calloc(n, sizeof(char *));
	char *key = NULL, *include = NULL, *tar = NULL, *tmp = NULL;
	char hex[65], name[128];
	size_t klen = 0, ilen = 0;
	int rc = 0;

	*cached = 0;
	if (!mirror || !pk) {
		rc = build__err(ENOMEM, "out of memory");
		goto out;
	}
	for (const char *s = suite; *s; s++)
		if (!strchr("abcdefghijklmnopqrstuvwxyz-", *s)) {
			rc = build__err(EINVAL, "base.suite '%s'", suite);
			goto out;
		}
	if (strcmp(variant, "minbase") && strcmp(variant, "essential") &&
	    strcmp(variant, "required") && strcmp(variant, "important") &&
	    strcmp(variant, "standard") && strcmp(variant, "apt")) {
		rc = build__err(EINVAL, "base.variant '%s': expected minbase, "
				"essential, required, important, standard or "
				"apt", variant);
		goto out;
	}
	for (size_t i = 0; i < r->n_packages; i++) {
		if (!valid_pkg(r->packages[i])) {
			rc = build__err(EINVAL, "packages[%zu]: '%s' is not a "
					"Debian package name", i,
					r->packages[i]);
			goto out;
		}
		pk[i] = r->packages[i];
	}
	for (size_t i = 0; i < 3; i++)
		pk[r->n_packages + i] = always_packages[i];
	qsort(pk, n, sizeof(*pk), cmp_str);

	/* Cache key: everything that changes the tarball. */
	if (asprintf(&key, "%s\n%s\n%s\n%s\n%s\n", CACHE_FORMAT, suite, variant,
		     mirror, modules_hook) < 0) {
		key = NULL;
		rc = build__err(ENOMEM, "out of memory");
		goto out;
	}
	klen = strlen(key);
	for (size_t i = 0; i < n; i++) {
		if (i && strcmp(pk[i], pk[i - 1]) == 0)
			continue;
		size_t pl = strlen(pk[i]);
		char *nk = realloc(key, klen + pl + 2);
		char *ni = realloc(include, ilen + pl + 2);
		if (!nk || !ni) {
			free(nk ? nk : key);
			free(ni ? ni : include);
			key = include = NULL;
			rc = build__err(ENOMEM, "out of memory");
			goto out;
		}
		key = nk;
		include = ni;
		klen += (size_t)sprintf(key + klen, "%s\n", pk[i]);
		ilen += (size_t)sprintf(include + ilen, "%s%s", ilen ? "," : "",
					pk[i]);
	}
	build__sha256_hex(key, klen, hex);
	snprintf(name, sizeof(name), "debian/%.40s.tar", hex);
	tar = build__path(c->cache, name);
	if (!tar) {
		rc = build__err(ENOMEM, "out of memory");
		goto out;
	}
	build__log(c, "# debian base: suite %s, variant %s, mirror %s, "
		   "packages %s, cache %s\n", suite, variant, mirror, include,
		   tar);
	if (access(tar, R_OK) == 0) {
		*cached = 1;
	} else {
		char *dir = build__path(c->cache, "debian");
		rc = dir ? build__mkdir_p(dir, 0755) : -ENOMEM;
		free(dir);
		if (rc < 0)
			goto out;
		if (asprintf(&tmp, "%s.tmp-%d.tar", tar, (int)getpid()) < 0) {
			tmp = NULL;
			rc = build__err(ENOMEM, "out of memory");
			goto out;
		}
		char variant_opt[64], include_opt[8192], hook[512], sde[64];
		snprintf(variant_opt, sizeof(variant_opt), "--variant=%s",
			 variant);
		if ((size_t)snprintf(include_opt, sizeof(include_opt),
				     "--include=%s", include) >=
		    sizeof(include_opt)) {
			rc = build__err(E2BIG, "too many packages");
			goto out;
		}
		snprintf(hook, sizeof(hook), "--essential-hook=%s",
			 modules_hook);
		snprintf(sde, sizeof(sde), "SOURCE_DATE_EPOCH=%s", c->sde_str);
		const char *env[] = { sde, NULL };
		const char *argv[] = {
			"mmdebstrap", "-q", variant_opt, include_opt, hook,
			"--aptopt=Acquire::Languages \"none\"",
			"--dpkgopt=path-exclude=/usr/share/man/*",
			"--dpkgopt=path-exclude=/usr/share/locale/*",
			"--dpkgopt=path-exclude=/usr/share/doc/*",
			"--dpkgopt=path-include=/usr/share/doc/*/copyright",
			suite, tmp, mirror, NULL,
		};
		rc = build__run(c, NULL, env, argv);
		if (rc == 0 && rename(tmp, tar) < 0)
			rc = build__err(errno, "rename %s: %s", tmp,
					strerror(errno));
		if (rc < 0) {
			unlink(tmp);
			goto out;
		}
	}
	rc = tarball__extract(tar, c->root, TARBALL_ALLOW_DEVICES);
	if (rc < 0)
		goto out;
	/* Mount the root read-write by label, whether or not it sits in a
	 * GPT partition. */
	char *fstab = build__path(c->root, "etc/fstab");
	rc = fstab ? build__write_file(fstab, "LABEL=root / ext4 "
				       "defaults,errors=remount-ro 0 1\n",
				       strlen("LABEL=root / ext4 "
					      "defaults,errors=remount-ro "
					      "0 1\n"), 0644)
		   : build__err(ENOMEM, "out of memory");
	free(fstab);
out:
	free(mirror);
	free(pk);
	free(key);
	free(include);
	free(tar);
	free(tmp);
	return rc;
}
