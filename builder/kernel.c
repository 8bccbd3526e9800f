/*
 * kernel.c - the kernel for appliances whose root has none (busybox and
 * tarball bases): Debian's linux-image-cloud-amd64, or a recipe's own.
 *
 * `apt-get download` + `dpkg-deb -x` gets the kernel and its modules as
 * plain files, without root, without touching the host's /boot, and
 * without a chroot.  The metapackage only depends on the versioned
 * package (linux-image-6.1.0-NN-cloud-amd64), so we resolve that first and
 * cache the extracted tree by package name and version.  The package ships
 * no modules.dep (its postinst runs depmod), so we run `depmod -b` on the
 * extracted tree ourselves.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "builder/steps.h"

#define KERNEL_META "linux-image-cloud-amd64"

/* First "KEY: value" line's value from apt output, malloc'ed. */
static char *field(const char *text, const char *key)
{
	size_t klen = strlen(key);

	for (const char *l = text; l && *l;) {
		while (*l == ' ')
			l++;
		if (strncmp(l, key, klen) == 0 && l[klen] == ':') {
			const char *v = l + klen + 1;
			while (*v == ' ')
				v++;
			size_t n = strcspn(v, " \n<");
			return n ? strndup(v, n) : NULL;
		}
		l = strchr(l, '\n');
		if (l)
			l++;
	}
	return NULL;
}

/* Asking apt-cache costs seconds (this machine's apt keeps no binary
 * package cache, so every call parses all of /var/lib/apt/lists), and
 * the answer only changes when the lists do: remember it, keyed by the
 * lists directory's mtime, which `apt-get update` bumps. */
#define APT_LISTS "/var/lib/apt/lists"

static char *lists_stamp(void)
{
	struct stat st;
	char *s;

	if (stat(APT_LISTS, &st) < 0)
		return NULL;
	if (asprintf(&s, "%lld.%09ld", (long long)st.st_mtim.tv_sec,
		     st.st_mtim.tv_nsec) < 0)
		return NULL;
	return s;
}

static int remembered(struct build_ctx *c, const char *stamp, char **pkg,
		      char **version)
{
	char *file = build__path(c->cache, "kernel/resolved"), *text = NULL;
	char a[64], b[256], v[256];
	int ok = 0;

	if (file && stamp && build__read_file(file, &text, NULL, 4096) == 0 &&
	    sscanf(text, "%63s %255s %255s", a, b, v) == 3 &&
	    strcmp(a, stamp) == 0 && strncmp(b, "linux-image-", 12) == 0) {
		*pkg = strdup(b);
		*version = strdup(v);
		ok = *pkg && *version;
	}
	free(file);
	free(text);
	return ok;
}

static void remember(struct build_ctx *c, const char *stamp, const char *pkg,
		     const char *version)
{
	char *dir = build__path(c->cache, "kernel"), *file = NULL, *tmp = NULL;
	char line[700];

	if (!stamp || !dir || build__mkdir_p(dir, 0755) < 0)
		goto out;
	file = build__path(dir, "resolved");
	if (!file || asprintf(&tmp, "%s.tmp-%d", file, (int)getpid()) < 0) {
		tmp = NULL;
		goto out;
	}
	snprintf(line, sizeof(line), "%s %s %s\n", stamp, pkg, version);
	if (build__write_file(tmp, line, strlen(line), 0644) == 0 &&
	    rename(tmp, file) < 0)
		unlink(tmp);
out:
	free(dir);
	free(file);
	free(tmp);
}

/* The versioned kernel package the metapackage depends on. */
static int resolve_package_apt(struct build_ctx *c, char **pkg,
			       char **version);

static int resolve_package(struct build_ctx *c, char **pkg, char **version)
{
	char *stamp = lists_stamp();
	int rc = 0;

	if (remembered(c, stamp, pkg, version)) {
		build__log(c, "# kernel package %s %s (remembered for these "
			   "apt lists)\n", *pkg, *version);
	} else {
		rc = resolve_package_apt(c, pkg, version);
		if (rc == 0)
			remember(c, stamp, *pkg, *version);
	}
	free(stamp);
	return rc;
}

static int resolve_package_apt(struct build_ctx *c, char **pkg,
			       char **version)
{
	const char *dep_argv[] = { "apt-cache", "depends", KERNEL_META, NULL };
	char *out = NULL, *show = NULL;
	int rc;

	*pkg = *version = NULL;
	rc = build__run_capture(c, dep_argv, &out, 1 << 20);
	if (rc < 0)
		return rc;
	/* "  Depends: linux-image-6.1.0-56-cloud-amd64" */
	for (char *l = out; l && *l;) {
		char *v = strstr(l, "Depends: linux-image-");
		char *nl = strchr(l, '\n');
		if (v && (!nl || v < nl)) {
			v += strlen("Depends: ");
			*pkg = strndup(v, strcspn(v, " \n<"));
			break;
		}
		l = nl ? nl + 1 : NULL;
	}
	free(out);
	if (!*pkg)
		return build__err(ENOENT, "%s depends on no linux-image "
				  "package (is the apt cache updated?)",
				  KERNEL_META);
	const char *show_argv[] = { "apt-cache", "show", "--no-all-versions",
				    *pkg, NULL };
	rc = build__run_capture(c, show_argv, &show, 1 << 20);
	if (rc < 0)
		return rc;
	*version = field(show, "Version");
	free(show);
	if (!*version)
		return build__err(ENOENT, "apt-cache show %s: no Version",
				  *pkg);
	/* Both go into a path: keep them to package-name characters. */
	for (const char *s = *pkg; *s; s++)
		if (!strchr("abcdefghijklmnopqrstuvwxyz0123456789.+-", *s))
			return build__err(EINVAL, "odd package name '%s'",
					  *pkg);
	for (char *s = *version; *s; s++)
		if (*s == '/' || *s == ':')
			*s = '_';
	return 0;
}

/* The one *.deb in dir, malloc'ed path. */
static char *find_deb(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char *found = NULL;

	if (!d)
		return NULL;
	while ((e = readdir(d))) {
		size_t n = strlen(e->d_name);
		if (n > 4 && strcmp(e->d_name + n - 4, ".deb") == 0) {
			found = build__path(dir, e->d_name);
			break;
		}
	}
	closedir(d);
	return found;
}

static int fetch_debian(struct build_ctx *c, int *cached)
{
	char *pkg = NULL, *version = NULL, *dir = NULL, *tmp = NULL;
	char *deb = NULL, *marker = NULL, *x = NULL, *kdir = NULL;
	char name[512];
	int rc;

	rc = resolve_package(c, &pkg, &version);
	if (rc < 0)
		goto out;
	snprintf(name, sizeof(name), "kernel/%s_%s", pkg, version);
	dir = build__path(c->cache, name);
	marker = build__path(dir, ".complete");
	free(c->kernel_release);
	c->kernel_release = strdup(pkg + strlen("linux-image-"));
	if (access(marker, F_OK) == 0) {
		*cached = 1;
		build__log(c, "# kernel %s %s from the cache %s\n", pkg,
			   version, dir);
		goto found;
	}
	/* Fetch into a private temporary directory, then rename: a second
	 * build running at the same time never sees a half-extracted tree. */
	if (asprintf(&tmp, "%s.tmp-%d", dir, (int)getpid()) < 0) {
		tmp = NULL;
		rc = build__err(ENOMEM, "out of memory");
		goto out;
	}
	build__rm_rf(tmp);
	if ((rc = build__mkdir_p(tmp, 0755)) < 0)
		goto out;
	const char *dl[] = { "apt-get", "download", "-q", pkg, NULL };
	if ((rc = build__run(c, tmp, NULL, dl)) < 0)
		goto out;
	deb = find_deb(tmp);
	if (!deb) {
		rc = build__err(ENOENT, "apt-get download %s left no .deb in "
				"%s", pkg, tmp);
		goto out;
	}
	x = build__path(tmp, "x");
	const char *ex[] = { "dpkg-deb", "-x", deb, x, NULL };
	if ((rc = build__run(c, NULL, NULL, ex)) < 0)
		goto out;
	const char *dm[] = { "depmod", "-b", x, c->kernel_release, NULL };
	if ((rc = build__run(c, NULL, NULL, dm)) < 0)
		goto out;
	unlink(deb);
	build__rm_rf(dir);
	if (rename(x, dir) < 0) {
		rc = build__err(errno, "rename %s -> %s: %s", x, dir,
				strerror(errno));
		goto out;
	}
	if ((rc = build__write_file(marker, "", 0, 0644)) < 0)
		goto out;
found:
	snprintf(name, sizeof(name), "boot/vmlinuz-%s", c->kernel_release);
	free(c->kernel_image);
	c->kernel_image = build__path(dir, name);
	snprintf(name, sizeof(name), "lib/modules/%s", c->kernel_release);
	kdir = build__path(dir, name);
	free(c->modules_dir);
	c->modules_dir = kdir;
	if (access(c->kernel_image, R_OK) < 0)
		rc = build__err(ENOENT, "kernel package %s has no %s", pkg,
				c->kernel_image);
out:
	if (tmp)
		build__rm_rf(tmp);
	free(pkg);
	free(version);
	free(dir);
	free(tmp);
	free(deb);
	free(marker);
	free(x);
	return rc;
}

int kernel__prepare(struct build_ctx *c, int *cached)
{
	const struct recipe_kernel *k = &c->r->kernel;

	*cached = 0;
	if (!k->source || strcmp(k->source, "debian") == 0)
		return fetch_debian(c, cached);
	/* A kernel of the recipe's own: a bzImage, plus optionally its
	 * lib/modules/RELEASE directory. */
	free(c->kernel_image);
	c->kernel_image = build__recipe_path(c->r, k->source);
	if (!c->kernel_image || access(c->kernel_image, R_OK) < 0)
		return build__err(ENOENT, "kernel.source '%s': %s", k->source,
				  strerror(errno));
	if (k->modules) {
		struct stat st;
		c->modules_dir = build__recipe_path(c->r, k->modules);
		if (!c->modules_dir || stat(c->modules_dir, &st) < 0 ||
		    !S_ISDIR(st.st_mode))
			return build__err(ENOENT, "kernel.modules '%s' is not "
					  "a directory", k->modules);
		const char *b = strrchr(c->modules_dir, '/');
		c->kernel_release = strdup(b ? b + 1 : c->modules_dir);
	}
	return 0;
}
