/*
 * package-internal.h - helpers shared by package.c (reading, verifying)
 * and package-write.c (making, signing); not part of the library's API.
 */
#ifndef APPLIANCES_PACKAGE_INTERNAL_H
#define APPLIANCES_PACKAGE_INTERNAL_H

#include <stdint.h>
#include <stddef.h>

#include "builder/toml.h"

/* Set package__error()'s message; returns -err (EIO if err <= 0). */
int package__err(int err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Copy package__error()'s message into buf (returned), for a message
 * that wraps it. */
const char *package__error_copy(char *buf, size_t len);
/* Lower-case hex of n bytes into out (2n + 1 bytes). */
void package__hex_encode(const uint8_t *in, size_t n, char *out);
/* pread exactly len bytes; -1 on error or end of file. */
int package__read_at(int fd, void *buf, size_t len, uint64_t off);
/* SHA-256 of len bytes of fd at off; with copy_fd >= 0 the bytes are also
 * written there. */
int package__sha256_range(int fd, uint64_t off, uint64_t len,
			  uint8_t out[32], int copy_fd);
/* A disk cluster of len bytes (at most cluster_size) as the
 * disk-subtrees member holds it (appliances/FORMAT.md): its parts' CVs
 * into entries (cluster_size / subtree_size entries of 32 bytes, zeros
 * past its parts, all zeros if it has only one) and its BLAKE3 leaf,
 * merged from those CVs when there are several: hashed once. */
void package__cluster_parts(const void *data, size_t len,
			    uint32_t cluster_size, uint32_t subtree_size,
			    uint8_t *entries, uint8_t leaf[32]);
/* A member name we accept: a plain file name, no directories. */
int package__valid_member_name(const char *s);
/* appliance.name and appliance.version as the manifest allows them
 * (appliances/FORMAT.md); a package's file is named NAME-VERSION. */
int package__valid_name(const char *s);
int package__valid_version(const char *s);
/* Manifest fields: t.key as a string (required or not) or an integer in
 * [min, max]; errors name the key as where.key. */
int package__toml_str(const struct toml_value *t, const char *key,
		      const char *where, int required, const char **out);
int package__toml_int(const struct toml_value *t, const char *key,
		      const char *where, int64_t min, int64_t max,
		      int64_t *out);

#endif
