/*
 * package.h - signed appliance packages (appliances/FORMAT.md).
 *
 * A package is a ustar file: manifest.toml, its minisign signature, then
 * the kernel, initramfs, AVD disk, the disk's per-cluster hashes and
 * (optionally) the CVs of each cluster's 4 KiB parts.
 * package__open() checks the container's structure and parses the
 * manifest but trusts nothing yet; the caller then checks the signature
 * (package__verify_signature), the members (package__verify_members), and
 * reads the disk through package__open_disk(), which verifies every
 * cluster as it is read.
 *
 * Errors: negative errno, message from package__error() (thread-local).
 */
#ifndef APPLIANCES_PACKAGE_H
#define APPLIANCES_PACKAGE_H

#include <stdbool.h>
#include <stdint.h>

#include "appliances/minisign.h"
#include "imgfmt.h"

#define PACKAGE_MANIFEST "manifest.toml"
#define PACKAGE_SIGNATURE "manifest.toml.minisig"
#define PACKAGE_MAX_MANIFEST (1u << 20)
#define PACKAGE_MAX_MEMBERS 16
#define PACKAGE_MAX_PORTS 32
#define PACKAGE_MAX_MEMBER_SIZE (1ull << 40)
#define PACKAGE_HASH_CLUSTER 65536
#define PACKAGE_SUBTREE_SIZE 4096   /* disk-subtrees parts, when written */

enum package_role {
	PACKAGE_ROLE_KERNEL,
	PACKAGE_ROLE_INITRD,
	PACKAGE_ROLE_DISK,
	PACKAGE_ROLE_DISK_HASHES,
	PACKAGE_ROLE_DISK_SUBTREES,   /* optional: CVs of 4 KiB parts */
};

/* The hash of each disk cluster (a leaf; appliances/FORMAT.md). */
enum package_leaf_hash {
	PACKAGE_LEAF_BLAKE3,   /* what new packages use */
	PACKAGE_LEAF_SHA256,   /* packages from before BLAKE3 */
};

struct package_member {
	char name[101];
	enum package_role role;
	char format[16];          /* disk: image format */
	uint64_t offset;          /* of the data in the package file */
	uint64_t size;
	uint8_t sha256[32];
};

struct package_port {
	int host, guest;
	bool udp;
};

struct package {
	char *path;
	int fd;
	uint64_t file_size;

	char *manifest_text;      /* NUL-terminated */
	size_t manifest_len;
	bool has_signature;
	struct minisign_signature sig;

	/* From the manifest. */
	char name[65], version[65], architecture[17];
	char *description;
	int64_t build_time;
	uint64_t memory;
	int cpus;
	char *cmdline;
	struct package_port ports[PACKAGE_MAX_PORTS];
	int nr_ports;

	struct package_member members[PACKAGE_MAX_MEMBERS];
	int nr_members;
	int kernel, initrd, disk, hashes;   /* member indexes, -1: none */
	int subtrees;                       /* -1: none */
	enum package_leaf_hash leaf_hash;   /* disk_verity.algorithm */
	uint32_t hash_cluster;
	uint32_t subtree_size;              /* with subtrees */
	uint64_t disk_virtual_size;

	/* Set by package__verify_members(). */
	uint8_t *leaves;
	uint64_t nr_leaves;
	uint64_t *zero_clusters;   /* bit c: cluster c's leaf is that of zeros */
	bool members_verified;

	/* Set by package__open_disk() with disk subtrees: the CVs of the
	 * clusters read most recently, already merged to their leaves. */
	struct package_cv_cache *cv_cache;

	/* Set by package__open_disk() when the file can be leased: which
	 * parts of the disk were checked since (see "Checked once" in
	 * FORMAT.md). */
	struct package_checked *checked;
};

const char *package__error(void);
const char *package__role_name(enum package_role r);

/* Write a package from a build directory (manifest.toml + the files it
 * lists, as `appliance build` leaves them): computes the disk hashes
 * with `leaf_hash`, writes the final manifest, signs it when `key` is
 * given, and writes `out_path` (NULL: NAME-VERSION.appliance, from the
 * manifest, in the current directory), named only once complete
 * (common/durable.h).  *written, unless NULL, gets the path written
 * (malloc'ed). */
int package__create(const char *build_dir, const char *out_path,
		    const struct minisign_seckey *key,
		    const char *trusted_comment,
		    enum package_leaf_hash leaf_hash, char **written);

/* The leaf of `len` bytes (one disk cluster) under `alg`. */
void package__leaf(enum package_leaf_hash alg, const void *data, size_t len,
		   uint8_t out[32]);
/* "blake3" / "sha256", as the manifest spells it; 0 and *alg set if
 * `name` is one of them, -1 if not. */
const char *package__leaf_hash_name(enum package_leaf_hash alg);
int package__leaf_hash_parse(const char *name, enum package_leaf_hash *alg);

/* Replace the signature of an existing package (or add one). */
int package__sign(const char *path, const struct minisign_seckey *key,
		  const char *trusted_comment);

int package__open(const char *path, struct package **out);
void package__close(struct package *p);

/* Check the manifest's signature with `pk`, or (pk NULL) with the trust
 * store key of the signing key id.  keyid_hex (may be NULL) receives the
 * signer's key id either way, so a refusal can name it. */
int package__verify_signature(struct package *p,
			      const struct minisign_pubkey *pk,
			      char keyid_hex[MINISIGN_KEYID_HEX],
			      const char **trusted_comment);

/* SHA-256 of the kernel, initramfs and disk-hashes members against the
 * manifest, and load the leaves.  full: also the whole disk member and
 * every leaf against the disk's content. */
int package__verify_members(struct package *p, bool full);

/* The disk, read-only, every cluster verified against its leaf.
 * package__verify_members() must have succeeded.  The first call takes
 * a read lease on the package file when it can (common/lease.h): while
 * it stands, bytes checked once are not hashed again (FORMAT.md,
 * "Checked once"). */
int package__open_disk(struct package *p, imgfmt_image **out);

/* For tests and benchmarks: reads of the disk that were served without
 * hashing because their parts had been checked before in this run (the
 * package file leased since, nobody writing it); 0 when the file could
 * not be leased. */
uint64_t package__disk_checks_skipped(const struct package *p);

/* Copy a member to fd (from its current offset), checking its SHA-256 on
 * the way: the copy is what gets used, so a file changed after the check
 * cannot be.  On failure what was written must not be used. */
int package__extract(struct package *p, int member, int fd);

#endif /* APPLIANCES_PACKAGE_H */
