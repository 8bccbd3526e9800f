/*
 * trust.h - the trust store: which minisign public keys may sign what we
 * install.
 *
 * A trust store is a directory of minisign public key files, one per key,
 * named KEYID.pub (KEYID as minisign prints it, 16 upper-case hex digits).
 * There are two:
 *   user    ${XDG_CONFIG_HOME:-$HOME/.config}/appliance/trusted/
 *   system  /etc/appliance/trusted/
 * overridden by $APPLIANCE_TRUST_DIR and $APPLIANCE_SYSTEM_TRUST_DIR (for
 * tests and unusual installs).  Lookups search the user store first.
 *
 * A key file dropped in by hand under another name still counts: lookups
 * fall back to reading every *.pub file and matching the key id inside.
 *
 * Errors: negative errno and a message from trust__error() (thread-local);
 * the library never prints.
 */
#ifndef APPLIANCES_TRUST_H
#define APPLIANCES_TRUST_H

#include <limits.h>

#include "appliances/minisign.h"

enum trust_scope {
	TRUST_USER = 0,
	TRUST_SYSTEM = 1,
};

struct trust_entry {
	enum trust_scope scope;
	char keyid[MINISIGN_KEYID_HEX];   /* "" if the file is unreadable */
	char path[PATH_MAX];
	struct minisign_pubkey pk;
	char comment[MINISIGN_COMMENT_MAX + 1];   /* its untrusted comment */
	char error[256];                  /* why the file is unusable, or "" */
};

const char *trust__error(void);

/* The directory of a store (not created). */
int trust__dir(enum trust_scope scope, char *buf, size_t len);

/* Copy a validated public key into a store as KEYID.pub (creating the
 * directory), atomically.  Adding a key already present is not an error;
 * a different key under the same id is (-EEXIST).  entry (may be NULL)
 * describes the stored key. */
int trust__add(enum trust_scope scope, const char *pubkey_path,
	       struct trust_entry *entry);

/* Every *.pub file of both stores, user first, each sorted by name.
 * Unreadable or malformed files are listed with entry->error set.
 * Free *entries with free(). */
int trust__list(struct trust_entry **entries, size_t *count);

/* Remove a key from one store, by key id or by a public key file naming
 * it.  Returns the number of files removed (>= 1), -ENOENT if the key is
 * not in that store (the message says if it is in the other one). */
int trust__remove(enum trust_scope scope, const char *keyid_or_file);

/* Look a key id up in the user store, then the system store.  -ENOKEY if
 * no trusted key has that id. */
int trust__find(const uint8_t keyid[MINISIGN_KEYID_BYTES],
		struct trust_entry *entry);

#endif /* APPLIANCES_TRUST_H */
