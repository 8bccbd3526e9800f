/*
 * rootfs-tarball.c - a root filesystem from a tarball: a local file next
 * to the recipe, or a URL (downloaded once into the cache).  The bytes are
 * hostile either way; tarball.c extracts them safely.  A URL must come
 * with the tarball's SHA-256 (recipe.c insists), checked before anything
 * is unpacked: otherwise whoever serves the URL would choose the root
 * filesystem the build then signs.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "builder/steps.h"

/* The file's SHA-256 must be `want` (if given). */
static int check_sha256(const char *path, const char *what, const char *want)
{
	char got[65];
	int rc;

	if (!want)
		return 0;
	if ((rc = build__sha256_file(path, got)) < 0)
		return rc;
	if (strcmp(got, want) != 0)
		return build__err(EBADMSG, "base.source: %s has SHA-256 %s, "
				  "the recipe says %s", what, got, want);
	return 0;
}

/* Download url into the cache as `path`: a temporary name, checked, then
 * renamed, so the cache never holds a tarball that failed its check. */
static int download(struct build_ctx *c, const char *url, const char *path,
		    const char *want)
{
	char *dir = build__path(c->cache, "tarballs"), *tmp = NULL;
	int rc = dir ? build__mkdir_p(dir, 0755) : -ENOMEM;

	free(dir);
	if (rc == 0 && asprintf(&tmp, "%s.tmp-%d", path, (int)getpid()) < 0)
		rc = build__err(ENOMEM, "out of memory");
	if (rc == 0) {
		const char *argv[] = { "curl", "-fsSL", "--proto",
				       "=http,https", "-o", tmp, "--", url,
				       NULL };
		rc = build__run(c, NULL, NULL, argv);
	}
	if (rc == 0)
		rc = check_sha256(tmp, url, want);
	if (rc == 0 && rename(tmp, path) < 0)
		rc = build__err(errno, "rename %s: %s", tmp, strerror(errno));
	if (tmp)
		unlink(tmp);
	free(tmp);
	return rc;
}

int rootfs__tarball(struct build_ctx *c)
{
	const char *src = c->r->base.source;
	const char *want = c->r->base.sha256;
	char *path;
	int rc;

	if (!src)
		return build__err(EINVAL, "base.source: a tarball base needs "
				  "a path or URL");
	if (strncmp(src, "http://", 7) == 0 || strncmp(src, "https://", 8) == 0) {
		/* Cached by content: the URL's bytes may change, the pinned
		 * digest does not.  A cached copy is checked again, like
		 * anything read back from disk. */
		char name[128];
		if (!want)
			return build__err(EINVAL, "base.source: a URL needs "
					  "base.sha256");
		snprintf(name, sizeof(name), "tarballs/%s", want);
		path = build__path(c->cache, name);
		if (!path)
			return build__err(ENOMEM, "out of memory");
		rc = access(path, R_OK) == 0 ? check_sha256(path, path, want)
					     : -ENOENT;
		if (rc < 0) {
			unlink(path);   /* missing, or damaged: fetch again */
			rc = download(c, src, path, want);
		}
	} else {
		path = build__recipe_path(c->r, src);
		if (!path)
			return build__err(ENOMEM, "out of memory");
		rc = check_sha256(path, src, want);
	}
	if (rc == 0)
		rc = tarball__extract(path, c->root, 0);
	free(path);
	return rc;
}
