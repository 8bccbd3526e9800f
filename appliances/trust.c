/*
 * trust.c - the trust store: directories of minisign public key files.
 *
 * The store is deliberately plain files in minisign's own format, so an
 * administrator can inspect it with cat, provision it with any config
 * management tool, and check a download by hand with
 * `minisign -Vm FILE -p /etc/appliance/trusted/KEYID.pub`.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "appliances/trust.h"
#include "common/durable.h"

/* A store is a handful of keys; refuse to walk a directory that has
 * become something else entirely. */
#define TRUST_MAX_ENTRIES 4096

static __thread char trust_errbuf[1024];

const char *trust__error(void)
{
	return trust_errbuf;
}

static int __attribute__((format(printf, 2, 3)))
trust_err(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(trust_errbuf, sizeof(trust_errbuf), fmt, ap);
	va_end(ap);
	return -err;
}

/* Pass a minisign failure on with its message. */
static int from_minisign(int rc)
{
	snprintf(trust_errbuf, sizeof(trust_errbuf), "%s", minisign__error());
	return rc;
}

static const char *scope_name(enum trust_scope s)
{
	return s == TRUST_SYSTEM ? "system" : "user";
}

static const char *env_nonempty(const char *name)
{
	const char *v = getenv(name);

	return v && *v ? v : NULL;
}

int trust__dir(enum trust_scope scope, char *buf, size_t len)
{
	const char *v;
	int n;

	if (scope == TRUST_SYSTEM) {
		v = env_nonempty("APPLIANCE_SYSTEM_TRUST_DIR");
		n = snprintf(buf, len, "%s", v ? v : "/etc/appliance/trusted");
	} else if ((v = env_nonempty("APPLIANCE_TRUST_DIR"))) {
		n = snprintf(buf, len, "%s", v);
	} else if ((v = env_nonempty("XDG_CONFIG_HOME")) && v[0] == '/') {
		/* The XDG spec says relative values are to be ignored. */
		n = snprintf(buf, len, "%s/appliance/trusted", v);
	} else if ((v = env_nonempty("HOME"))) {
		n = snprintf(buf, len, "%s/.config/appliance/trusted", v);
	} else {
		return trust_err(ENOENT, "no user trust store: neither "
				 "APPLIANCE_TRUST_DIR, XDG_CONFIG_HOME nor "
				 "HOME is set");
	}
	if (n < 0 || (size_t)n >= len)
		return trust_err(ENAMETOOLONG, "%s trust store path is too "
				 "long", scope_name(scope));
	return 0;
}

static int mkdir_p(const char *dir)
{
	char path[PATH_MAX];
	size_t n = strlen(dir);

	if (n >= sizeof(path))
		return trust_err(ENAMETOOLONG, "%s: path too long", dir);
	memcpy(path, dir, n + 1);
	for (char *p = path + 1; ; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;
		*p = '\0';
		if (mkdir(path, 0755) < 0 && errno != EEXIST)
			return trust_err(errno, "%s: cannot create: %s", path,
					 strerror(errno));
		*p = c;
		if (c == '\0')
			break;
	}
	return 0;
}

/* Fill an entry from a key file; problems go to entry->error, since a
 * listing should show a broken file rather than stop at it. */
static void load_entry(enum trust_scope scope, const char *path,
		       struct trust_entry *e)
{
	char line[MINISIGN_COMMENT_MAX + 64];
	FILE *f;
	int rc;

	memset(e, 0, sizeof(*e));
	e->scope = scope;
	snprintf(e->path, sizeof(e->path), "%s", path);
	rc = minisign__pubkey_load(path, &e->pk);
	if (rc < 0) {
		snprintf(e->error, sizeof(e->error), "%s", minisign__error());
		return;
	}
	minisign__keyid_hex(e->pk.keyid, e->keyid);
	/* The untrusted comment, as a label for listings only. */
	f = fopen(path, "r");
	if (f && fgets(line, sizeof(line), f) &&
	    strncmp(line, "untrusted comment: ", 19) == 0) {
		size_t n = strcspn(line + 19, "\r\n");
		/* A longer comment is cut: it is only a label. */
		if (n >= sizeof(e->comment))
			n = sizeof(e->comment) - 1;
		memcpy(e->comment, line + 19, n);
		e->comment[n] = '\0';
	}
	if (f)
		fclose(f);
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Append the *.pub files of one store to a growing array. */
static int scan_store(enum trust_scope scope, struct trust_entry **arr,
		      size_t *count, size_t *cap)
{
	char dir[PATH_MAX], path[PATH_MAX];
	char **names = NULL;
	size_t nnames = 0;
	struct dirent *d;
	DIR *dp;
	int rc = trust__dir(scope, dir, sizeof(dir));

	if (rc < 0)
		return rc;
	dp = opendir(dir);
	if (!dp) {
		if (errno == ENOENT)
			return 0;          /* no store yet: no keys */
		return trust_err(errno, "%s: %s", dir, strerror(errno));
	}
	while ((d = readdir(dp))) {
		size_t n = strlen(d->d_name);
		if (d->d_name[0] == '.' || n < 5 ||
		    strcmp(d->d_name + n - 4, ".pub") != 0)
			continue;
		if (*count + nnames >= TRUST_MAX_ENTRIES) {
			rc = trust_err(E2BIG, "%s: more than %d key files",
				       dir, TRUST_MAX_ENTRIES);
			goto out;
		}
		char **nn = realloc(names, (nnames + 1) * sizeof(*names));
		if (!nn || !(nn[nnames] = strdup(d->d_name))) {
			if (nn)
				names = nn;
			rc = trust_err(ENOMEM, "out of memory");
			goto out;
		}
		names = nn;
		nnames++;
	}
	if (nnames)
		qsort(names, nnames, sizeof(*names), cmp_names);
	for (size_t i = 0; i < nnames; i++) {
		if (*count == *cap) {
			size_t ncap = *cap ? *cap * 2 : 8;
			struct trust_entry *na = realloc(*arr,
							 ncap * sizeof(**arr));
			if (!na) {
				rc = trust_err(ENOMEM, "out of memory");
				goto out;
			}
			*arr = na;
			*cap = ncap;
		}
		if (snprintf(path, sizeof(path), "%s/%s", dir, names[i]) >=
		    (int)sizeof(path))
			continue;
		load_entry(scope, path, &(*arr)[(*count)++]);
	}
out:
	for (size_t i = 0; i < nnames; i++)
		free(names[i]);
	free(names);
	closedir(dp);
	return rc;
}

int trust__list(struct trust_entry **entries, size_t *count)
{
	size_t cap = 0;
	int rc;

	*entries = NULL;
	*count = 0;
	if ((rc = scan_store(TRUST_USER, entries, count, &cap)) < 0 ||
	    (rc = scan_store(TRUST_SYSTEM, entries, count, &cap)) < 0) {
		free(*entries);
		*entries = NULL;
		*count = 0;
	}
	return rc;
}

static int scan_one(enum trust_scope scope, struct trust_entry **arr,
		    size_t *count)
{
	size_t cap = 0;
	int rc;

	*arr = NULL;
	*count = 0;
	rc = scan_store(scope, arr, count, &cap);
	if (rc < 0) {
		free(*arr);
		*arr = NULL;
		*count = 0;
	}
	return rc;
}

int trust__find(const uint8_t keyid[MINISIGN_KEYID_BYTES],
		struct trust_entry *entry)
{
	char id[MINISIGN_KEYID_HEX];

	for (int s = TRUST_USER; s <= TRUST_SYSTEM; s++) {
		struct trust_entry *arr;
		size_t n;
		int rc = scan_one((enum trust_scope)s, &arr, &n);
		if (rc < 0)
			return rc;
		for (size_t i = 0; i < n; i++) {
			if (arr[i].error[0] ||
			    memcmp(arr[i].pk.keyid, keyid,
				   MINISIGN_KEYID_BYTES) != 0)
				continue;
			*entry = arr[i];
			free(arr);
			return 0;
		}
		free(arr);
	}
	minisign__keyid_hex(keyid, id);
	return trust_err(ENOKEY, "key %s is not in the trust store", id);
}

static int fsync_dir(const char *dir)
{
	int r = durable__fsync_dir(dir);

	return r < 0 ? trust_err(-r, "%s: syncing: %s", dir, strerror(-r)) : 0;
}

int trust__add(enum trust_scope scope, const char *pubkey_path,
	       struct trust_entry *entry)
{
	char dir[PATH_MAX], dest[PATH_MAX], *text;
	struct trust_entry src, *arr;
	size_t n;
	int rc;

	load_entry(scope, pubkey_path, &src);
	if (src.error[0])
		return trust_err(EINVAL, "%s", src.error);
	if ((rc = trust__dir(scope, dir, sizeof(dir))) < 0)
		return rc;
	if ((rc = scan_one(scope, &arr, &n)) < 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		if (arr[i].error[0] || strcmp(arr[i].keyid, src.keyid) != 0)
			continue;
		if (memcmp(&arr[i].pk, &src.pk, sizeof(src.pk)) != 0) {
			rc = trust_err(EEXIST, "%s: a different key with the "
				       "same id %s is already trusted (%s)",
				       pubkey_path, src.keyid, arr[i].path);
			free(arr);
			return rc;
		}
		if (entry)
			*entry = arr[i];
		free(arr);
		return 0;                  /* already trusted */
	}
	free(arr);
	if ((rc = mkdir_p(dir)) < 0)
		return rc;
	if (snprintf(dest, sizeof(dest), "%s/%s.pub", dir, src.keyid) >=
	    (int)sizeof(dest))
		return trust_err(ENAMETOOLONG, "%s: path too long", dir);
	/* Re-encode rather than copy: the stored file is exactly two
	 * well-formed lines whatever the source looked like. */
	rc = minisign__pubkey_format(&src.pk,
				     src.comment[0] ? src.comment : NULL,
				     &text);
	if (rc < 0)
		return from_minisign(rc);
	rc = minisign__write_file(dest, text, strlen(text), 0644,
				  MINISIGN_SAVE_NO_OVERWRITE);
	free(text);
	if (rc == -EEXIST)
		return trust_err(EEXIST, "%s exists but is not a valid key "
				 "file; remove it first", dest);
	if (rc < 0)
		return from_minisign(rc);
	if (entry)
		load_entry(scope, dest, entry);
	return 0;
}

static int is_keyid(const char *s)
{
	uint8_t id[MINISIGN_KEYID_BYTES];

	return strlen(s) == 16 && minisign__keyid_parse(s, id) == 0;
}

int trust__remove(enum trust_scope scope, const char *keyid_or_file)
{
	struct minisign_pubkey want;
	struct trust_entry *arr;
	char dir[PATH_MAX], id[MINISIGN_KEYID_HEX];
	int by_file = !is_keyid(keyid_or_file), removed = 0, rc;
	size_t n;

	if (by_file) {
		rc = minisign__pubkey_load(keyid_or_file, &want);
		if (rc < 0)
			return trust_err(-rc, "'%s' is neither a key id (16 "
					 "hex digits) nor a public key file: "
					 "%s", keyid_or_file,
					 minisign__error());
	} else {
		minisign__keyid_parse(keyid_or_file, want.keyid);
	}
	minisign__keyid_hex(want.keyid, id);
	if ((rc = trust__dir(scope, dir, sizeof(dir))) < 0)
		return rc;
	if ((rc = scan_one(scope, &arr, &n)) < 0)
		return rc;
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (arr[i].error[0] || strcmp(arr[i].keyid, id) != 0)
			continue;
		/* Given a file, remove that key, not another one that
		 * happens to share its 64-bit id. */
		if (by_file && memcmp(&arr[i].pk, &want, sizeof(want)) != 0)
			continue;
		if (unlink(arr[i].path) < 0)
			rc = trust_err(errno, "%s: %s", arr[i].path,
				       strerror(errno));
		else
			removed++;
	}
	free(arr);
	if (rc < 0)
		return rc;
	if (removed)
		return (rc = fsync_dir(dir)) < 0 ? rc : removed;
	/* Say where the key is if it is in the other store. */
	enum trust_scope other = scope == TRUST_USER ? TRUST_SYSTEM
						     : TRUST_USER;
	if (scan_one(other, &arr, &n) == 0) {
		for (size_t i = 0; i < n; i++) {
			if (arr[i].error[0] || strcmp(arr[i].keyid, id) != 0)
				continue;
			rc = trust_err(ENOENT, "key %s is not in the %s trust "
				       "store but in the %s one (%s)", id,
				       scope_name(scope), scope_name(other),
				       arr[i].path);
			free(arr);
			return rc;
		}
		free(arr);
	}
	return trust_err(ENOENT, "key %s is not in the %s trust store", id,
			 scope_name(scope));
}
