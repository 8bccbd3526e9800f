/*
 * repo.h - static appliance repositories, downloads and the local cache.
 *
 * A repository is a directory any static HTTP server can serve:
 *   index.toml          what it offers (appliances/FORMAT.md)
 *   index.toml.minisig  the index's signature
 *   packages/NAME-VERSION.appliance
 * The index carries a version that only grows and an expiry time, so a
 * client that remembers the highest version it saw refuses replayed
 * (rolled back) and stale indexes.
 *
 * The cache (${APPLIANCE_CACHE:-${XDG_CACHE_HOME:-~/.cache}/appliance})
 * holds packages/ (verified packages only), partial/ (downloads in
 * progress, resumed on the next attempt) and state/ (per repository: the
 * highest index version seen).
 */
#ifndef APPLIANCES_REPO_H
#define APPLIANCES_REPO_H

#include <stdbool.h>
#include <stdint.h>

#include "appliances/minisign.h"

#define REPO_INDEX "index.toml"
#define REPO_INDEX_SIG "index.toml.minisig"
#define REPO_MAX_INDEX (4u << 20)
#define REPO_MAX_ENTRIES 4096

struct repo_entry {
	char name[65], version[65];
	uint64_t size;
	uint8_t sha256[32];
	char path[256];           /* relative to the repository */
};

struct repo_index {
	uint64_t version;
	int64_t generated, expires;
	struct repo_entry *entries;
	int nr_entries;
};

const char *repo__error(void);

/* The cache directory (created on demand by the functions below). */
int repo__cache_dir(char *buf, size_t len);

/* Add packages to the repository in `dir` (created if needed): copies
 * them to packages/, merges them into the index (same name and version
 * replaced), bumps its version, sets its expiry `valid_seconds` from now
 * and signs it.  Everything is written atomically. */
int repo__publish(const char *dir, const char *const *packages, int n,
		  const struct minisign_seckey *key, int64_t valid_seconds);

/* Parse index text (no signature check). */
int repo__index_parse(const char *text, size_t len, struct repo_index *idx);
void repo__index_free(struct repo_index *idx);

struct repo_pull_opts {
	bool insecure;                 /* accept unsigned/untrusted */
	const struct minisign_pubkey *key; /* NULL: the trust store */
	/* Progress: called with bytes done / total (total 0: unknown). */
	void (*progress)(void *opaque, uint64_t done, uint64_t total);
	/* Called (if set) before waiting for another pull of the same
	 * package, or from the same repository, to finish; what says
	 * which ("the package" or "the repository's index"). */
	void (*waiting)(void *opaque, const char *what);
	void *opaque;
	int64_t now;                   /* 0: time(NULL); for tests */
};

/* Fetch what `ref` names into the cache and return the cached package's
 * path (malloc'ed).  ref is one of:
 *   URL ending in ".appliance"     one package, checked by its signature
 *   URL/NAME or URL/NAME:VERSION   the repository at URL, its index
 *                                  checked, the package checked against it
 *   NAME or NAME:VERSION           a package already in the cache
 * URLs may be http://, https:// or file://.  Nothing enters packages/
 * unless every check passed. */
int repo__pull(const char *ref, const struct repo_pull_opts *o, char **path);

/* The cached packages (paths, malloc'ed, sorted); free each and the array. */
int repo__list(char ***paths, int *n);

/* Remove NAME (every version) or NAME:VERSION from the cache; returns the
 * number removed, -ENOENT if none. */
int repo__remove(const char *ref);

/* Downloads that did not finish stay in the cache's partial/ for the next
 * pull of the same package to resume; one never pulled again stays for
 * good.  How many there are and their bytes: */
int repo__partials(int *count, uint64_t *bytes);
/* Remove them, but for any a pull is writing now (*busy counts those);
 * returns how many were removed, *bytes what they held. */
int repo__remove_partials(uint64_t *bytes, int *busy);

#endif /* APPLIANCES_REPO_H */
