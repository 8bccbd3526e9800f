/*
 * minisign.h - Ed25519 keys and signatures in minisign's file formats.
 *
 * Appliance packages are signed with minisign-compatible keys so that
 * publishers can use the stock `minisign` tool and users can check a
 * download with it; the byte layouts are specified in appliances/FORMAT.md
 * ("Keys and signatures").  The crypto is OpenSSL's Ed25519, scrypt and
 * BLAKE2b-512; BLAKE2b-256 (the secret key checksum), which OpenSSL 3.0
 * cannot produce unkeyed, is implemented here (RFC 7693).
 *
 * Errors: every function returns 0 on success and a negative errno value on
 * failure, and records a message naming the file (or "<name>" the caller
 * gave) and what was wrong; fetch it with minisign__error().  The message
 * is thread-local.  The library never prints and never exits.
 *
 *   -EINVAL     malformed input (bad base64, wrong length, bad line)
 *   -ENOTSUP    unknown algorithm tag (signature, KDF or checksum)
 *   -E2BIG      an input or a parameter beyond the caps below
 *   -EKEYREJECTED  signature made by another key (key id mismatch)
 *   -EBADMSG    signature does not verify (tampered data or comment)
 *   -EACCES     wrong passphrase for an encrypted secret key
 *   -ENOKEY     the secret key is encrypted and no passphrase was given
 *   -EEXIST     refusing to overwrite (MINISIGN_SAVE_NO_OVERWRITE)
 *   others      I/O errors from the system
 *
 * Key material in struct minisign_seckey is wiped by
 * minisign__seckey_wipe(); callers keep it off long-lived storage.
 */
#ifndef APPLIANCES_MINISIGN_H
#define APPLIANCES_MINISIGN_H

#include <stddef.h>
#include <stdint.h>

#define MINISIGN_KEYID_BYTES 8
#define MINISIGN_PK_BYTES 32
#define MINISIGN_SK_BYTES 64       /* seed(32) || public key(32), libsodium's */
#define MINISIGN_SIG_BYTES 64
#define MINISIGN_HASH_BYTES 64     /* BLAKE2b-512 prehash */
#define MINISIGN_KEYID_HEX 17      /* 16 hex digits + NUL */

/* Longest comment texts (without the "untrusted comment: " / "trusted
 * comment: " prefixes) that minisign itself can read back: its line
 * buffers are 1024 and 8192 bytes including prefix, newline and NUL. */
#define MINISIGN_COMMENT_MAX 1003
#define MINISIGN_TRUSTED_COMMENT_MAX 8173

/* scrypt limits as libsodium names them; minisign encrypts with SENSITIVE
 * (N=2^20, r=8, p=1: 1 GiB, a few seconds). */
#define MINISIGN_OPSLIMIT_INTERACTIVE 524288ull
#define MINISIGN_MEMLIMIT_INTERACTIVE 16777216ull
#define MINISIGN_OPSLIMIT_SENSITIVE 33554432ull
#define MINISIGN_MEMLIMIT_SENSITIVE 1073741824ull
/* A secret key file may ask for at most this much scrypt work: memory
 * 128*r*N bytes and N*r*p block mixes.  Twice / four times minisign's own
 * default, so real keys load and a hostile file cannot make us allocate
 * tens of GiB or spin for hours. */
#define MINISIGN_SCRYPT_MAX_MEM (2ull << 30)
#define MINISIGN_SCRYPT_MAX_WORK (4ull << 23)

/* Largest key and signature files read (they are a few hundred bytes, a
 * signature at most ~8.4 KiB with the longest trusted comment). */
#define MINISIGN_KEYFILE_MAX 4096
#define MINISIGN_SIGFILE_MAX 12288
/* Legacy (non-prehashed "Ed") signatures need the whole message in
 * memory; files larger than this are refused (minisign's own limit). */
#define MINISIGN_LEGACY_MAX (1ull << 30)

struct minisign_pubkey {
	uint8_t keyid[MINISIGN_KEYID_BYTES];
	uint8_t pk[MINISIGN_PK_BYTES];
};

struct minisign_seckey {
	uint8_t keyid[MINISIGN_KEYID_BYTES];
	uint8_t sk[MINISIGN_SK_BYTES];
};

struct minisign_kdf_limits {
	uint64_t opslimit;
	uint64_t memlimit;
};

struct minisign_signature {
	int prehashed;                           /* "ED" (1) or legacy "Ed" (0) */
	uint8_t keyid[MINISIGN_KEYID_BYTES];
	uint8_t sig[MINISIGN_SIG_BYTES];         /* over BLAKE2b-512(data) */
	uint8_t global_sig[MINISIGN_SIG_BYTES];  /* over sig || trusted comment */
	char trusted_comment[MINISIGN_TRUSTED_COMMENT_MAX + 1];
	char untrusted_comment[MINISIGN_COMMENT_MAX + 20];
};

/* ---- errors and helpers ------------------------------------------------ */

const char *minisign__error(void);

/* Key id as minisign prints it: the 8 bytes read as a little-endian
 * integer, 16 upper-case hex digits ("F90420029AA5BBAC"). */
void minisign__keyid_hex(const uint8_t keyid[MINISIGN_KEYID_BYTES],
			 char out[MINISIGN_KEYID_HEX]);
/* Parse 16 hex digits (either case) back; -EINVAL otherwise. */
int minisign__keyid_parse(const char *s, uint8_t keyid[MINISIGN_KEYID_BYTES]);

/* Unkeyed BLAKE2b with any output length 1..64 (RFC 7693). */
int minisign__blake2b(uint8_t *out, size_t outlen, const void *in, size_t len);

/* Strict standard base64 with padding; *outlen gets the decoded length.
 * Fails with -EINVAL on any other character and -E2BIG if the result would
 * not fit in outmax. */
int minisign__base64_decode(const char *in, size_t inlen, uint8_t *out,
			    size_t outmax, size_t *outlen);
/* Encode into out (4*ceil(len/3)+1 bytes), NUL-terminated. */
void minisign__base64_encode(const uint8_t *in, size_t len, char *out);

/* ---- keys -------------------------------------------------------------- */

/* A fresh key pair with a random key id. */
int minisign__generate(struct minisign_seckey *sk, struct minisign_pubkey *pk);
void minisign__seckey_public(const struct minisign_seckey *sk,
			     struct minisign_pubkey *pk);
void minisign__seckey_wipe(struct minisign_seckey *sk);

/* Public key from the text of a key file ("untrusted comment: ..." then
 * the base64 line) or, if the text has a single line, from the bare base64
 * string (minisign -P).  name is used in messages. */
int minisign__pubkey_parse(const char *text, size_t len, const char *name,
			   struct minisign_pubkey *pk);
int minisign__pubkey_load(const char *path, struct minisign_pubkey *pk);
/* The base64 line alone (57 bytes incl. NUL). */
void minisign__pubkey_base64(const struct minisign_pubkey *pk, char out[64]);

/* Secret key from a key file's text.  passphrase NULL is fine for an
 * unencrypted key; for an encrypted one it fails with -ENOKEY. */
int minisign__seckey_parse(const char *text, size_t len, const char *name,
			   const char *passphrase, struct minisign_seckey *sk);
int minisign__seckey_load(const char *path, const char *passphrase,
			  struct minisign_seckey *sk);
/* 1 if the key file is encrypted, 0 if not, negative on error. */
int minisign__seckey_is_encrypted(const char *path);

/* File text (malloc'ed, NUL-terminated) for a key.  comment NULL picks
 * minisign's default.  For the secret key, passphrase NULL writes it
 * unencrypted; limits NULL means the SENSITIVE ones. */
int minisign__pubkey_format(const struct minisign_pubkey *pk,
			    const char *comment, char **out);
int minisign__seckey_format(const struct minisign_seckey *sk,
			    const char *comment, const char *passphrase,
			    const struct minisign_kdf_limits *limits,
			    char **out);

enum minisign_save_flags {
	MINISIGN_SAVE_NO_OVERWRITE = 1u << 0,
};

/* Write atomically (temp file, fsync, rename, fsync of the directory).
 * The secret key file is mode 0600, the public key 0644. */
int minisign__pubkey_save(const char *path, const struct minisign_pubkey *pk,
			  const char *comment, unsigned flags);
int minisign__seckey_save(const char *path, const struct minisign_seckey *sk,
			  const char *comment, const char *passphrase,
			  const struct minisign_kdf_limits *limits,
			  unsigned flags);

/* Write a buffer to path atomically with the given mode. */
int minisign__write_file(const char *path, const void *buf, size_t len,
			 unsigned mode, unsigned flags);

/* ---- hashing (the prehash of "ED" signatures) -------------------------- */

typedef struct minisign_hash minisign_hash;
int minisign__hash_new(minisign_hash **h);
int minisign__hash_update(minisign_hash *h, const void *buf, size_t len);
/* Writes the digest; the context can then only be freed. */
int minisign__hash_final(minisign_hash *h, uint8_t out[MINISIGN_HASH_BYTES]);
void minisign__hash_free(minisign_hash *h);
/* BLAKE2b-512 of a whole file, read in chunks (any size). */
int minisign__hash_file(const char *path, uint8_t out[MINISIGN_HASH_BYTES]);

/* ---- signatures -------------------------------------------------------- */

/* Sign a BLAKE2b-512 digest ("ED" signature) with a trusted comment (one
 * line, at most MINISIGN_TRUSTED_COMMENT_MAX bytes). */
int minisign__sign_prehashed(const struct minisign_seckey *sk,
			     const uint8_t hash[MINISIGN_HASH_BYTES],
			     const char *trusted_comment,
			     struct minisign_signature *sig);
int minisign__sign_buffer(const struct minisign_seckey *sk, const void *buf,
			  size_t len, const char *trusted_comment,
			  struct minisign_signature *sig);
int minisign__sign_file(const struct minisign_seckey *sk, const char *path,
			const char *trusted_comment,
			struct minisign_signature *sig);

/* Signature file text (malloc'ed).  untrusted_comment NULL uses
 * sig->untrusted_comment, or a default if that is empty. */
int minisign__sig_format(const struct minisign_signature *sig,
			 const char *untrusted_comment, char **out);
int minisign__sig_parse(const char *text, size_t len, const char *name,
			struct minisign_signature *sig);
int minisign__sig_load(const char *path, struct minisign_signature *sig);
int minisign__sig_save(const char *path, const struct minisign_signature *sig,
		       const char *untrusted_comment);

/* Check the key id, the signature over the data and the global signature
 * over the trusted comment.  On success *trusted_comment (if not NULL)
 * points into sig.  The prehashed form takes only "ED" signatures. */
int minisign__verify_prehashed(const struct minisign_pubkey *pk,
			       const struct minisign_signature *sig,
			       const uint8_t hash[MINISIGN_HASH_BYTES],
			       const char **trusted_comment);
int minisign__verify_buffer(const struct minisign_pubkey *pk,
			    const struct minisign_signature *sig,
			    const void *buf, size_t len,
			    const char **trusted_comment);
int minisign__verify_file(const struct minisign_pubkey *pk,
			  const struct minisign_signature *sig,
			  const char *path, const char **trusted_comment);

#endif /* APPLIANCES_MINISIGN_H */
