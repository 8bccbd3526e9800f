/*
 * rootfs-tarball.c - a root filesystem from a tarball: a local file next
 * to the recipe, or a URL (downloaded once into the cache).  The bytes are
 * hostile either way; tarball.c extracts them safely.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "builder/steps.h"

int rootfs__tarball(struct build_ctx *c)
{
	const char *src = c->r->base.source;
	char *path;
	int rc;

	if (!src)
		return build__err(EINVAL, "base.source: a tarball base needs "
				  "a path or URL");
	if (strncmp(src, "http://", 7) == 0 || strncmp(src, "https://", 8) == 0) {
		/* Downloads are cached by URL; the extraction below treats
		 * the bytes as hostile either way. */
		char hex[65], name[128], *tmp = NULL;
		build__sha256_hex(src, strlen(src), hex);
		snprintf(name, sizeof(name), "tarballs/%.32s", hex);
		path = build__path(c->cache, name);
		if (!path)
			return build__err(ENOMEM, "out of memory");
		if (access(path, R_OK) < 0) {
			char *dir = build__path(c->cache, "tarballs");
			rc = dir ? build__mkdir_p(dir, 0755) : -ENOMEM;
			free(dir);
			if (rc == 0 && asprintf(&tmp, "%s.tmp-%d", path,
						(int)getpid()) < 0)
				rc = build__err(ENOMEM, "out of memory");
			if (rc == 0) {
				const char *argv[] = {
					"curl", "-fsSL", "--proto",
					"=http,https", "-o", tmp, "--", src,
					NULL };
				rc = build__run(c, NULL, NULL, argv);
			}
			if (rc == 0 && rename(tmp, path) < 0)
				rc = build__err(errno, "rename %s: %s", tmp,
						strerror(errno));
			if (tmp)
				unlink(tmp);
			free(tmp);
			if (rc < 0) {
				free(path);
				return rc;
			}
		}
	} else {
		path = build__recipe_path(c->r, src);
		if (!path)
			return build__err(ENOMEM, "out of memory");
	}
	rc = tarball__extract(path, c->root, 0);
	free(path);
	return rc;
}
