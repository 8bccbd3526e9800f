/*
 * kmod.c - which kernel modules to put in an initramfs, in load order.
 *
 * The Debian cloud kernel builds its virtio drivers as modules, so the
 * initramfs must insmod them (and what they depend on) before the root disk
 * appears.  modules.dep (written by depmod) lists, per module, every module
 * it needs; we load dependencies first, each module once.
 *
 * modules.dep comes from the kernel package we downloaded; treat it as
 * input: paths must stay relative and inside the modules directory, and
 * the dependency walk is bounded.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "builder/steps.h"

#define KMOD_MAX_LINES 200000
#define KMOD_MAX_RESULT 1024

struct kmod_entry {
	char *path;     /* "kernel/drivers/virtio/virtio.ko" */
	char **deps;
	size_t n_deps;
	int state;      /* 0 new, 1 visiting, 2 done */
};

struct kmod_db {
	struct kmod_entry *e;
	size_t n;
};

/* "virtio_pci" from "kernel/drivers/virtio/virtio-pci.ko.xz", with '-'
 * turned into '_' (modprobe treats them alike). */
static void module_name(const char *path, char *out, size_t size)
{
	const char *base = strrchr(path, '/');
	size_t i = 0;

	base = base ? base + 1 : path;
	for (; base[i] && i + 1 < size; i++) {
		if (strncmp(base + i, ".ko", 3) == 0 &&
		    (base[i + 3] == '\0' || base[i + 3] == '.'))
			break;
		out[i] = base[i] == '-' ? '_' : base[i];
	}
	out[i] = '\0';
}

static int path_ok(const char *p)
{
	if (!p[0] || p[0] == '/')
		return 0;
	for (const char *s = p; *s;) {
		const char *e = strchr(s, '/');
		size_t n = e ? (size_t)(e - s) : strlen(s);
		if ((n == 2 && s[0] == '.' && s[1] == '.') || n == 0)
			return 0;
		if (!e)
			break;
		s = e + 1;
	}
	return 1;
}

static void db_free(struct kmod_db *db)
{
	for (size_t i = 0; i < db->n; i++) {
		free(db->e[i].path);
		kmod__free_list(db->e[i].deps, db->e[i].n_deps);
	}
	free(db->e);
}

static int parse_db(const char *text, struct kmod_db *db)
{
	size_t cap = 0, lineno = 0;
	const char *line = text;

	memset(db, 0, sizeof(*db));
	while (*line) {
		const char *end = strchr(line, '\n');
		size_t len = end ? (size_t)(end - line) : strlen(line);
		char *copy, *colon, *save = NULL;

		if (++lineno > KMOD_MAX_LINES)
			return build__err(E2BIG, "modules.dep: more than %d "
					  "lines", KMOD_MAX_LINES);
		if (len == 0 || line[0] == '#')
			goto next;
		copy = strndup(line, len);
		if (!copy)
			return build__err(ENOMEM, "out of memory");
		colon = strchr(copy, ':');
		if (!colon) {
			free(copy);
			return build__err(EINVAL, "modules.dep line %zu: no "
					  "':' after the module path", lineno);
		}
		*colon = '\0';
		if (!path_ok(copy)) {
			free(copy);
			return build__err(EINVAL, "modules.dep line %zu: "
					  "module path is absolute or has "
					  "'..'", lineno);
		}
		if (db->n == cap) {
			size_t ncap = cap ? cap * 2 : 256;
			struct kmod_entry *ne = realloc(db->e,
							ncap * sizeof(*ne));
			if (!ne) {
				free(copy);
				return build__err(ENOMEM, "out of memory");
			}
			db->e = ne;
			cap = ncap;
		}
		struct kmod_entry *ent = &db->e[db->n++];
		memset(ent, 0, sizeof(*ent));
		ent->path = strdup(copy);
		size_t dcap = 0;
		for (char *tok = strtok_r(colon + 1, " \t", &save); tok;
		     tok = strtok_r(NULL, " \t", &save)) {
			if (!path_ok(tok)) {
				/* Format before freeing: tok points into
				 * copy. */
				int rc = build__err(EINVAL, "modules.dep line "
						    "%zu: dependency '%s' is "
						    "absolute or has '..'",
						    lineno, tok);
				free(copy);
				return rc;
			}
			if (ent->n_deps == dcap) {
				dcap = dcap ? dcap * 2 : 4;
				char **nd = realloc(ent->deps,
						    dcap * sizeof(*nd));
				if (!nd) {
					free(copy);
					return build__err(ENOMEM, "oom");
				}
				ent->deps = nd;
			}
			ent->deps[ent->n_deps++] = strdup(tok);
		}
		free(copy);
next:
		if (!end)
			break;
		line = end + 1;
	}
	return 0;
}

static struct kmod_entry *find_by_name(struct kmod_db *db, const char *want)
{
	char name[256], w[256];

	module_name(want, w, sizeof(w));
	for (size_t i = 0; i < db->n; i++) {
		module_name(db->e[i].path, name, sizeof(name));
		if (strcmp(name, w) == 0)
			return &db->e[i];
	}
	return NULL;
}

static struct kmod_entry *find_by_path(struct kmod_db *db, const char *p)
{
	for (size_t i = 0; i < db->n; i++)
		if (strcmp(db->e[i].path, p) == 0)
			return &db->e[i];
	return NULL;
}

struct kmod_out {
	char **v;
	size_t n;
};

static int visit(struct kmod_db *db, struct kmod_entry *e,
		 struct kmod_out *out, int depth)
{
	if (e->state == 2)
		return 0;
	if (e->state == 1 || depth > 64)
		return build__err(ELOOP, "modules.dep: dependency cycle "
				  "through %s", e->path);
	e->state = 1;
	/* depmod lists dependencies with the deepest last; loading them
	 * last-to-first satisfies each one's own needs, and the recursive
	 * visit makes the order right even when the list is not sorted. */
	for (size_t i = e->n_deps; i-- > 0;) {
		struct kmod_entry *d = find_by_path(db, e->deps[i]);
		if (!d)
			return build__err(ENOENT, "modules.dep: %s needs %s, "
					  "which has no line of its own",
					  e->path, e->deps[i]);
		int rc = visit(db, d, out, depth + 1);
		if (rc < 0)
			return rc;
	}
	if (out->n >= KMOD_MAX_RESULT)
		return build__err(E2BIG, "more than %d modules needed",
				  KMOD_MAX_RESULT);
	out->v[out->n] = strdup(e->path);
	if (!out->v[out->n])
		return build__err(ENOMEM, "out of memory");
	out->n++;
	e->state = 2;
	return 0;
}

int kmod__resolve(const char *modules_dep, const char *const *want,
		  size_t n_want, char ***out, size_t *n_out)
{
	struct kmod_db db;
	struct kmod_out res = { 0 };
	int rc;

	*out = NULL;
	*n_out = 0;
	rc = parse_db(modules_dep, &db);
	if (rc < 0)
		goto fail;
	res.v = calloc(KMOD_MAX_RESULT, sizeof(char *));
	if (!res.v) {
		rc = build__err(ENOMEM, "out of memory");
		goto fail;
	}
	for (size_t i = 0; i < n_want; i++) {
		struct kmod_entry *e = find_by_name(&db, want[i]);
		if (!e) {
			rc = build__err(ENOENT, "module %s is not in "
					"modules.dep (built in, or missing "
					"from this kernel?)", want[i]);
			goto fail;
		}
		rc = visit(&db, e, &res, 0);
		if (rc < 0)
			goto fail;
	}
	db_free(&db);
	*out = res.v;
	*n_out = res.n;
	return 0;
fail:
	db_free(&db);
	kmod__free_list(res.v, res.n);
	return rc;
}

void kmod__free_list(char **list, size_t n)
{
	if (!list)
		return;
	for (size_t i = 0; i < n; i++)
		free(list[i]);
	free(list);
}
