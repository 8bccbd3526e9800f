/*
 * minisign.c - Ed25519 keys and signatures in minisign's file formats.
 *
 * Layouts (appliances/FORMAT.md, "Keys and signatures"):
 *   public key  "Ed" keyid(8) pk(32)                          42 bytes
 *   secret key  "Ed" kdf(2) "B2" salt(32) ops(8) mem(8)
 *               [keyid(8) sk(64) chk(32)] (XOR scrypt stream) 158 bytes
 *   signature   "ED"|"Ed" keyid(8) sig(64)                    74 bytes
 *               + trusted comment + global sig(64)
 * each base64-encoded on the line after an "untrusted comment: " line.
 *
 * Every parser treats its input as hostile: lengths are checked before any
 * copy, base64 is decoded strictly, algorithm tags are compared exactly and
 * scrypt parameters are capped before any memory is allocated for them.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "common/durable.h"
#include "minisign.h"

#define COMMENT_PREFIX "untrusted comment: "
#define TRUSTED_PREFIX "trusted comment: "
#define PK_BYTES (2 + MINISIGN_KEYID_BYTES + MINISIGN_PK_BYTES)           /* 42 */
#define SIG_BYTES (2 + MINISIGN_KEYID_BYTES + MINISIGN_SIG_BYTES)         /* 74 */
#define KEYNUM_SK_BYTES (MINISIGN_KEYID_BYTES + MINISIGN_SK_BYTES + 32)   /* 104 */
#define SK_BYTES (2 + 2 + 2 + 32 + 8 + 8 + KEYNUM_SK_BYTES)              /* 158 */
#define SALT_BYTES 32
#define CHK_BYTES 32

/* ---- errors ------------------------------------------------------------ */

static __thread char ms_errbuf[1024];

const char *minisign__error(void)
{
	return ms_errbuf;
}

/* Record a message and return -err, so callers can `return ms_err(...)`. */
static int __attribute__((format(printf, 2, 3)))
ms_err(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(ms_errbuf, sizeof(ms_errbuf), fmt, ap);
	va_end(ap);
	return -err;
}

/* ---- BLAKE2b (RFC 7693) ------------------------------------------------ */

/* Needed because the secret key checksum is unkeyed BLAKE2b-256, which is
 * not a truncation of BLAKE2b-512 (the output length is in the parameter
 * block) and OpenSSL 3.0 offers neither a digest-size parameter nor an
 * unkeyed BLAKE2BMAC.  The prehash of data uses OpenSSL's BLAKE2B-512. */

static const uint64_t b2_iv[8] = {
	0x6a09e667f3bcc908ull, 0xbb67ae8584caa73bull, 0x3c6ef372fe94f82bull,
	0xa54ff53a5f1d36f1ull, 0x510e527fade682d1ull, 0x9b05688c2b3e6c1full,
	0x1f83d9abfb41bd6bull, 0x5be0cd19137e2179ull,
};

static const uint8_t b2_sigma[12][16] = {
	{ 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15 },
	{ 14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3 },
	{ 11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4 },
	{ 7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8 },
	{ 9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13 },
	{ 2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9 },
	{ 12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11 },
	{ 13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10 },
	{ 6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5 },
	{ 10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0 },
	{ 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15 },
	{ 14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3 },
};

struct b2_state {
	uint64_t h[8];
	uint64_t t[2];
	uint8_t buf[128];
	size_t buflen;
	size_t outlen;
};

static uint64_t load64_le(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static void store64_le(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t rotr64(uint64_t x, unsigned n)
{
	return (x >> n) | (x << (64 - n));
}

static void b2_compress(struct b2_state *s, const uint8_t block[128], int last)
{
	uint64_t m[16], v[16];

	for (int i = 0; i < 16; i++)
		m[i] = load64_le(block + 8 * i);
	for (int i = 0; i < 8; i++) {
		v[i] = s->h[i];
		v[i + 8] = b2_iv[i];
	}
	v[12] ^= s->t[0];
	v[13] ^= s->t[1];
	if (last)
		v[14] = ~v[14];
#define B2_G(a, b, c, d, x, y)                                \
	do {                                                  \
		v[a] = v[a] + v[b] + (x);                     \
		v[d] = rotr64(v[d] ^ v[a], 32);               \
		v[c] = v[c] + v[d];                           \
		v[b] = rotr64(v[b] ^ v[c], 24);               \
		v[a] = v[a] + v[b] + (y);                     \
		v[d] = rotr64(v[d] ^ v[a], 16);               \
		v[c] = v[c] + v[d];                           \
		v[b] = rotr64(v[b] ^ v[c], 63);               \
	} while (0)
	for (int r = 0; r < 12; r++) {
		const uint8_t *sg = b2_sigma[r];
		B2_G(0, 4, 8, 12, m[sg[0]], m[sg[1]]);
		B2_G(1, 5, 9, 13, m[sg[2]], m[sg[3]]);
		B2_G(2, 6, 10, 14, m[sg[4]], m[sg[5]]);
		B2_G(3, 7, 11, 15, m[sg[6]], m[sg[7]]);
		B2_G(0, 5, 10, 15, m[sg[8]], m[sg[9]]);
		B2_G(1, 6, 11, 12, m[sg[10]], m[sg[11]]);
		B2_G(2, 7, 8, 13, m[sg[12]], m[sg[13]]);
		B2_G(3, 4, 9, 14, m[sg[14]], m[sg[15]]);
	}
#undef B2_G
	for (int i = 0; i < 8; i++)
		s->h[i] ^= v[i] ^ v[i + 8];
}

static void b2_add_counter(struct b2_state *s, uint64_t n)
{
	s->t[0] += n;
	if (s->t[0] < n)
		s->t[1]++;
}

static void b2_init(struct b2_state *s, size_t outlen)
{
	memset(s, 0, sizeof(*s));
	memcpy(s->h, b2_iv, sizeof(s->h));
	/* Parameter block: digest length, key length 0, fanout 1, depth 1. */
	s->h[0] ^= 0x01010000ull ^ (uint64_t)outlen;
	s->outlen = outlen;
}

static void b2_update(struct b2_state *s, const uint8_t *in, size_t len)
{
	while (len > 0) {
		/* Keep the last block buffered: it must be compressed with
		 * the final flag, and we only know it is last at b2_final. */
		if (s->buflen == sizeof(s->buf)) {
			b2_add_counter(s, sizeof(s->buf));
			b2_compress(s, s->buf, 0);
			s->buflen = 0;
		}
		size_t n = sizeof(s->buf) - s->buflen;
		if (n > len)
			n = len;
		memcpy(s->buf + s->buflen, in, n);
		s->buflen += n;
		in += n;
		len -= n;
	}
}

static void b2_final(struct b2_state *s, uint8_t *out)
{
	uint8_t full[64];

	b2_add_counter(s, s->buflen);
	memset(s->buf + s->buflen, 0, sizeof(s->buf) - s->buflen);
	b2_compress(s, s->buf, 1);
	for (int i = 0; i < 8; i++)
		store64_le(full + 8 * i, s->h[i]);
	memcpy(out, full, s->outlen);
	OPENSSL_cleanse(full, sizeof(full));
	OPENSSL_cleanse(s, sizeof(*s));
}

int minisign__blake2b(uint8_t *out, size_t outlen, const void *in, size_t len)
{
	struct b2_state s;

	if (outlen < 1 || outlen > 64)
		return ms_err(EINVAL, "blake2b: output length %zu is not 1..64",
			      outlen);
	b2_init(&s, outlen);
	b2_update(&s, in, len);
	b2_final(&s, out);
	return 0;
}

/* ---- base64 and key ids ------------------------------------------------ */

static const char b64_chars[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

void minisign__base64_encode(const uint8_t *in, size_t len, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < len)
			v |= in[i + 2];
		out[o++] = b64_chars[(v >> 18) & 63];
		out[o++] = b64_chars[(v >> 12) & 63];
		out[o++] = i + 1 < len ? b64_chars[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < len ? b64_chars[v & 63] : '=';
	}
	out[o] = '\0';
}

int minisign__base64_decode(const char *in, size_t inlen, uint8_t *out,
			    size_t outmax, size_t *outlen)
{
	size_t o = 0;

	if (inlen % 4 != 0)
		return ms_err(EINVAL, "base64 length %zu is not a multiple "
			      "of 4", inlen);
	for (size_t i = 0; i < inlen; i += 4) {
		int v[4], pad = 0;
		for (int j = 0; j < 4; j++) {
			char c = in[i + j];
			if (c == '=' && i + 4 == inlen && j >= 2) {
				v[j] = 0;
				pad++;
				continue;
			}
			/* Data after padding ("=A") is malformed. */
			if (pad || (v[j] = b64_value(c)) < 0)
				return ms_err(EINVAL, "bad base64 character "
					      "at position %zu", i + j);
		}
		uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 |
			     (uint32_t)v[2] << 6 | (uint32_t)v[3];
		size_t n = 3 - (size_t)pad;
		/* Non-canonical encodings (stray low bits before '=') would
		 * let two strings decode to one key; refuse them. */
		if ((pad == 1 && (w & 0xff)) || (pad == 2 && (w & 0xffff)))
			return ms_err(EINVAL, "non-canonical base64 padding");
		if (o + n > outmax)
			return ms_err(E2BIG, "base64 data longer than %zu bytes",
				      outmax);
		out[o++] = (uint8_t)(w >> 16);
		if (n > 1)
			out[o++] = (uint8_t)(w >> 8);
		if (n > 2)
			out[o++] = (uint8_t)w;
	}
	*outlen = o;
	return 0;
}

void minisign__keyid_hex(const uint8_t keyid[MINISIGN_KEYID_BYTES],
			 char out[MINISIGN_KEYID_HEX])
{
	snprintf(out, MINISIGN_KEYID_HEX, "%016llX",
		 (unsigned long long)load64_le(keyid));
}

int minisign__keyid_parse(const char *s, uint8_t keyid[MINISIGN_KEYID_BYTES])
{
	uint64_t v = 0;

	if (!s || strlen(s) != 16)
		return ms_err(EINVAL, "key id '%s' is not 16 hex digits",
			      s ? s : "");
	for (int i = 0; i < 16; i++) {
		char c = s[i];
		int d;
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return ms_err(EINVAL, "key id '%s' is not 16 hex digits",
				      s);
		v = (v << 4) | (uint64_t)d;
	}
	store64_le(keyid, v);
	return 0;
}

/* ---- Ed25519 through OpenSSL ------------------------------------------- */

static int ed25519_public(const uint8_t seed[32], uint8_t pk[32])
{
	EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL,
						   seed, 32);
	size_t len = 32;
	int ok = k && EVP_PKEY_get_raw_public_key(k, pk, &len) == 1 &&
		 len == 32;

	EVP_PKEY_free(k);
	return ok ? 0 : ms_err(EIO, "OpenSSL: cannot derive an Ed25519 "
			       "public key");
}

static int ed25519_sign(const uint8_t seed[32], const void *msg, size_t len,
			uint8_t sig[64])
{
	EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL,
						   seed, 32);
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	size_t siglen = 64;
	int ok = k && c && EVP_DigestSignInit(c, NULL, NULL, NULL, k) == 1 &&
		 EVP_DigestSign(c, sig, &siglen, len ? msg : (const void *)"",
				len) == 1 && siglen == 64;

	EVP_MD_CTX_free(c);
	EVP_PKEY_free(k);
	return ok ? 0 : ms_err(EIO, "OpenSSL: Ed25519 signing failed");
}

/* 1 valid, 0 invalid, negative on an internal error. */
static int ed25519_verify(const uint8_t pk[32], const void *msg, size_t len,
			  const uint8_t sig[64])
{
	EVP_PKEY *k = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL,
						  pk, 32);
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	int rc;

	if (!k || !c || EVP_DigestVerifyInit(c, NULL, NULL, NULL, k) != 1) {
		/* A public key OpenSSL refuses to load cannot have made any
		 * signature: report it as not verifying. */
		rc = k ? ms_err(EIO, "OpenSSL: Ed25519 verify setup failed") : 0;
	} else {
		rc = EVP_DigestVerify(c, sig, 64,
				      len ? msg : (const void *)"", len) == 1;
	}
	EVP_MD_CTX_free(c);
	EVP_PKEY_free(k);
	return rc;
}

/* ---- keys -------------------------------------------------------------- */

int minisign__generate(struct minisign_seckey *sk, struct minisign_pubkey *pk)
{
	memset(sk, 0, sizeof(*sk));
	if (RAND_bytes(sk->keyid, sizeof(sk->keyid)) != 1 ||
	    RAND_priv_bytes(sk->sk, 32) != 1)
		return ms_err(EIO, "OpenSSL: no random bytes for a new key");
	int rc = ed25519_public(sk->sk, sk->sk + 32);
	if (rc < 0) {
		minisign__seckey_wipe(sk);
		return rc;
	}
	minisign__seckey_public(sk, pk);
	return 0;
}

void minisign__seckey_public(const struct minisign_seckey *sk,
			     struct minisign_pubkey *pk)
{
	memcpy(pk->keyid, sk->keyid, sizeof(pk->keyid));
	memcpy(pk->pk, sk->sk + 32, sizeof(pk->pk));
}

void minisign__seckey_wipe(struct minisign_seckey *sk)
{
	OPENSSL_cleanse(sk, sizeof(*sk));
}

/* A view of the input split in lines.  Each line ends at '\n' (a '\r'
 * before it is dropped); NUL bytes are refused since these are text. */
struct lines {
	const char *p, *end;
	const char *name;
	int lineno;
};

/* 1 and the line, 0 at the end of the text, negative on bad input. */
static int next_line(struct lines *l, const char **line, size_t *len)
{
	if (l->p >= l->end)
		return 0;
	const char *nl = memchr(l->p, '\n', (size_t)(l->end - l->p));
	const char *e = nl ? nl : l->end;
	*line = l->p;
	*len = (size_t)(e - l->p);
	if (*len > 0 && (*line)[*len - 1] == '\r')
		(*len)--;
	l->p = nl ? nl + 1 : l->end;
	l->lineno++;
	if (memchr(*line, '\0', *len))
		return ms_err(EINVAL, "%s: line %d contains a NUL byte",
			      l->name, l->lineno);
	return 1;
}

/* The rest of the text may only hold blank lines. */
static int expect_end(struct lines *l)
{
	const char *line;
	size_t len;
	int rc;

	while ((rc = next_line(l, &line, &len)) > 0) {
		for (size_t i = 0; i < len; i++)
			if (line[i] != ' ' && line[i] != '\t')
				return ms_err(EINVAL, "%s: unexpected data on "
					      "line %d", l->name, l->lineno);
	}
	return rc;
}

static int has_prefix(const char *line, size_t len, const char *prefix)
{
	size_t n = strlen(prefix);

	return len >= n && memcmp(line, prefix, n) == 0;
}

/* Decode one base64 line that must hold exactly want bytes. */
static int decode_line(struct lines *l, const char *what, uint8_t *out,
		       size_t want)
{
	const char *line;
	size_t len, got;
	int rc = next_line(l, &line, &len);

	if (rc < 0)
		return rc;
	if (rc == 0)
		return ms_err(EINVAL, "%s: %s missing (file ends after line "
			      "%d)", l->name, what, l->lineno);
	if (len > 4 * ((want + 2) / 3))
		return ms_err(EINVAL, "%s: line %d: %s is %zu characters, "
			      "expected %zu", l->name, l->lineno, what, len,
			      4 * ((want + 2) / 3));
	rc = minisign__base64_decode(line, len, out, want, &got);
	if (rc < 0) {
		char why[sizeof(ms_errbuf)];
		memcpy(why, ms_errbuf, sizeof(why));
		return ms_err(-rc, "%s: line %d: %s: %s", l->name, l->lineno,
			      what, why);
	}
	if (got != want)
		return ms_err(EINVAL, "%s: line %d: %s is %zu bytes, expected "
			      "%zu", l->name, l->lineno, what, got, want);
	return 0;
}

static void tag_text(const uint8_t tag[2], char out[16])
{
	if (tag[0] >= 0x20 && tag[0] < 0x7f && tag[1] >= 0x20 && tag[1] < 0x7f)
		snprintf(out, 16, "'%c%c'", tag[0], tag[1]);
	else
		snprintf(out, 16, "0x%02x%02x", tag[0], tag[1]);
}

static int decode_pubkey(const uint8_t raw[PK_BYTES], const char *name,
			 struct minisign_pubkey *pk)
{
	char t[16];

	if (memcmp(raw, "Ed", 2) != 0) {
		tag_text(raw, t);
		return ms_err(ENOTSUP, "%s: unsupported public key algorithm "
			      "%s (expected 'Ed')", name, t);
	}
	memcpy(pk->keyid, raw + 2, MINISIGN_KEYID_BYTES);
	memcpy(pk->pk, raw + 2 + MINISIGN_KEYID_BYTES, MINISIGN_PK_BYTES);
	return 0;
}

int minisign__pubkey_parse(const char *text, size_t len, const char *name,
			   struct minisign_pubkey *pk)
{
	struct lines l = { text, text + len, name, 0 };
	uint8_t raw[PK_BYTES];
	const char *line;
	size_t llen;
	int rc;

	if (len > MINISIGN_KEYFILE_MAX)
		return ms_err(E2BIG, "%s: %zu bytes is too large for a public "
			      "key", name, len);
	/* A bare base64 string is what `minisign -P` takes. */
	if (!has_prefix(text, len, COMMENT_PREFIX)) {
		struct lines probe = l;
		rc = next_line(&probe, &line, &llen);
		if (rc < 0)
			return rc;
		if (rc > 0 && llen == 56 && expect_end(&probe) == 0) {
			rc = decode_line(&l, "public key", raw, PK_BYTES);
			return rc < 0 ? rc : decode_pubkey(raw, name, pk);
		}
		return ms_err(EINVAL, "%s: not a minisign public key (first "
			      "line should start with \"" COMMENT_PREFIX "\")",
			      name);
	}
	if ((rc = next_line(&l, &line, &llen)) < 0)
		return rc;
	if ((rc = decode_line(&l, "public key", raw, PK_BYTES)) < 0 ||
	    (rc = expect_end(&l)) < 0)
		return rc;
	return decode_pubkey(raw, name, pk);
}

/* Read a small file whole (key or signature), refusing anything larger
 * than max: these files are tiny and a huge one is not ours. */
static int read_small_file(const char *path, size_t max, char **out,
			   size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char *buf;
	size_t got = 0;

	if (fd < 0)
		return ms_err(errno, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0) {
		int e = errno;
		close(fd);
		return ms_err(e, "%s: %s", path, strerror(e));
	}
	/* Pipes are fine (--sig <(curl ...)): the read below is bounded
	 * whatever st_size says. */
	if (S_ISDIR(st.st_mode)) {
		close(fd);
		return ms_err(EISDIR, "%s: is a directory", path);
	}
	if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > max) {
		close(fd);
		return ms_err(E2BIG, "%s: %llu bytes is too large (at most "
			      "%zu)", path, (unsigned long long)st.st_size,
			      max);
	}
	buf = malloc(max + 1);
	if (!buf) {
		close(fd);
		return ms_err(ENOMEM, "%s: out of memory", path);
	}
	/* Read up to max+1 so a file that grew after fstat is caught. */
	for (;;) {
		ssize_t n = read(fd, buf + got, max + 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			free(buf);
			close(fd);
			return ms_err(e, "%s: %s", path, strerror(e));
		}
		if (n == 0)
			break;
		got += (size_t)n;
		if (got > max) {
			free(buf);
			close(fd);
			return ms_err(E2BIG, "%s: too large (at most %zu "
				      "bytes)", path, max);
		}
	}
	close(fd);
	buf[got] = '\0';
	*out = buf;
	*len = got;
	return 0;
}

int minisign__pubkey_load(const char *path, struct minisign_pubkey *pk)
{
	char *text;
	size_t len;
	int rc = read_small_file(path, MINISIGN_KEYFILE_MAX, &text, &len);

	if (rc < 0)
		return rc;
	rc = minisign__pubkey_parse(text, len, path, pk);
	free(text);
	return rc;
}

void minisign__pubkey_base64(const struct minisign_pubkey *pk, char out[64])
{
	uint8_t raw[PK_BYTES];

	memcpy(raw, "Ed", 2);
	memcpy(raw + 2, pk->keyid, MINISIGN_KEYID_BYTES);
	memcpy(raw + 2 + MINISIGN_KEYID_BYTES, pk->pk, MINISIGN_PK_BYTES);
	minisign__base64_encode(raw, sizeof(raw), out);
}

static int check_comment(const char *c, size_t max, const char *what)
{
	size_t n = strlen(c);

	if (n > max)
		return ms_err(E2BIG, "%s is %zu bytes, at most %zu", what, n,
			      max);
	if (strpbrk(c, "\r\n"))
		return ms_err(EINVAL, "%s must be one line", what);
	return 0;
}

int minisign__pubkey_format(const struct minisign_pubkey *pk,
			    const char *comment, char **out)
{
	char b64[64], id[MINISIGN_KEYID_HEX], dflt[64];
	int rc;

	minisign__keyid_hex(pk->keyid, id);
	if (!comment) {
		snprintf(dflt, sizeof(dflt), "minisign public key %s", id);
		comment = dflt;
	}
	if ((rc = check_comment(comment, MINISIGN_COMMENT_MAX,
				"untrusted comment")) < 0)
		return rc;
	minisign__pubkey_base64(pk, b64);
	if (asprintf(out, COMMENT_PREFIX "%s\n%s\n", comment, b64) < 0)
		return ms_err(ENOMEM, "out of memory");
	return 0;
}

/* libsodium's crypto_pwhash_scryptsalsa208sha256 turns (opslimit,
 * memlimit) into scrypt's N, r, p this way; minisign stores only the
 * limits, so we must derive the very same parameters. */
static void scrypt_pickparams(uint64_t opslimit, uint64_t memlimit,
			      uint64_t *N, uint32_t *r, uint32_t *p)
{
	uint64_t maxN, maxrp;
	unsigned n_log2;

	if (opslimit < 32768)
		opslimit = 32768;
	*r = 8;
	if (opslimit < memlimit / 32) {
		*p = 1;
		maxN = opslimit / (*r * 4);
	} else {
		maxN = memlimit / ((uint64_t)*r * 128);
	}
	for (n_log2 = 1; n_log2 < 63; n_log2++)
		if ((1ull << n_log2) > maxN / 2)
			break;
	if (!(opslimit < memlimit / 32)) {
		maxrp = (opslimit / 4) / (1ull << n_log2);
		if (maxrp > 0x3fffffff)
			maxrp = 0x3fffffff;
		*p = (uint32_t)maxrp / *r;
	}
	*N = 1ull << n_log2;
}

/* The keystream that encrypts keynum_sk: scrypt(passphrase, salt) with
 * the file's limits, refused before allocating if they are absurd. */
static int scrypt_stream(const char *name, const char *passphrase,
			 const uint8_t salt[SALT_BYTES], uint64_t opslimit,
			 uint64_t memlimit, uint8_t *out, size_t outlen)
{
	uint64_t N, mem, work;
	uint32_t r, p;

	scrypt_pickparams(opslimit, memlimit, &N, &r, &p);
	if (p == 0 || (uint64_t)r * p >= (1ull << 30))
		return ms_err(EINVAL, "%s: scrypt limits (opslimit %llu, "
			      "memlimit %llu) give invalid parameters", name,
			      (unsigned long long)opslimit,
			      (unsigned long long)memlimit);
	/* Once N is within the memory cap (N*r <= 2^24) and r*p < 2^30,
	 * the products below cannot overflow 64 bits. */
	if (N > MINISIGN_SCRYPT_MAX_MEM / 128 / r)
		goto too_big;
	mem = 128ull * r * (N + 2) + 128ull * r * p;
	work = N * r * p;
	if (mem > MINISIGN_SCRYPT_MAX_MEM + (1u << 20) ||
	    work > MINISIGN_SCRYPT_MAX_WORK)
		goto too_big;
	if (EVP_PBE_scrypt(passphrase, strlen(passphrase), salt, SALT_BYTES,
			   N, r, p, mem + (1u << 20), out, outlen) != 1)
		return ms_err(ENOMEM, "%s: scrypt (N=%llu r=%u p=%u) failed; "
			      "out of memory?", name, (unsigned long long)N,
			      r, p);
	return 0;
too_big:
	return ms_err(E2BIG, "%s: scrypt limits too large (opslimit %llu, "
		      "memlimit %llu: N=%llu r=%u p=%u); at most %llu MiB and "
		      "%llu block mixes are allowed", name,
		      (unsigned long long)opslimit,
		      (unsigned long long)memlimit, (unsigned long long)N, r, p,
		      MINISIGN_SCRYPT_MAX_MEM >> 20,
		      (unsigned long long)MINISIGN_SCRYPT_MAX_WORK);
}

static void seckey_checksum(const uint8_t keyid[8], const uint8_t sk[64],
			    uint8_t chk[CHK_BYTES])
{
	uint8_t in[2 + 8 + 64];

	memcpy(in, "Ed", 2);
	memcpy(in + 2, keyid, 8);
	memcpy(in + 10, sk, 64);
	minisign__blake2b(chk, CHK_BYTES, in, sizeof(in));
	OPENSSL_cleanse(in, sizeof(in));
}

/* Parse the decoded 158 bytes; raw is modified (decrypted) in place. */
static int decode_seckey(uint8_t raw[SK_BYTES], const char *name,
			 const char *passphrase, struct minisign_seckey *sk)
{
	static const uint8_t zero[CHK_BYTES];
	uint8_t *keynum = raw + 6 + SALT_BYTES + 16;
	uint8_t stream[KEYNUM_SK_BYTES], chk[CHK_BYTES], pk[32];
	char t[16];
	int encrypted, rc;

	if (memcmp(raw, "Ed", 2) != 0) {
		tag_text(raw, t);
		return ms_err(ENOTSUP, "%s: unsupported signature algorithm %s "
			      "(expected 'Ed')", name, t);
	}
	if (memcmp(raw + 4, "B2", 2) != 0) {
		tag_text(raw + 4, t);
		return ms_err(ENOTSUP, "%s: unsupported checksum algorithm %s "
			      "(expected 'B2')", name, t);
	}
	if (memcmp(raw + 2, "Sc", 2) == 0) {
		encrypted = 1;
	} else if (raw[2] == 0 && raw[3] == 0) {
		encrypted = 0;
	} else {
		tag_text(raw + 2, t);
		return ms_err(ENOTSUP, "%s: unsupported key derivation %s "
			      "(expected 'Sc' or none)", name, t);
	}
	if (encrypted) {
		if (!passphrase)
			return ms_err(ENOKEY, "%s: the secret key is encrypted; "
				      "a passphrase is needed", name);
		rc = scrypt_stream(name, passphrase, raw + 6,
				   load64_le(raw + 6 + SALT_BYTES),
				   load64_le(raw + 6 + SALT_BYTES + 8),
				   stream, sizeof(stream));
		if (rc < 0)
			return rc;
		for (size_t i = 0; i < sizeof(stream); i++)
			keynum[i] ^= stream[i];
		OPENSSL_cleanse(stream, sizeof(stream));
	}
	seckey_checksum(keynum, keynum + 8, chk);
	if (CRYPTO_memcmp(chk, keynum + 72, CHK_BYTES) != 0) {
		/* minisign -W writes an all-zero checksum (and never checks
		 * it) for unencrypted keys; anything else is damage. */
		if (encrypted)
			return ms_err(EACCES, "%s: wrong passphrase for this "
				      "secret key", name);
		if (memcmp(keynum + 72, zero, CHK_BYTES) != 0)
			return ms_err(EINVAL, "%s: secret key checksum "
				      "mismatch (file damaged)", name);
	}
	/* libsodium signs with the public half stored in sk; OpenSSL
	 * derives it from the seed.  Refuse a file where they differ rather
	 * than make signatures that verify with neither. */
	if ((rc = ed25519_public(keynum + 8, pk)) < 0)
		return rc;
	if (CRYPTO_memcmp(pk, keynum + 8 + 32, 32) != 0)
		return ms_err(EINVAL, "%s: the secret key's public half does "
			      "not match its seed (file damaged)", name);
	memcpy(sk->keyid, keynum, 8);
	memcpy(sk->sk, keynum + 8, 64);
	return 0;
}

int minisign__seckey_parse(const char *text, size_t len, const char *name,
			   const char *passphrase, struct minisign_seckey *sk)
{
	struct lines l = { text, text + len, name, 0 };
	uint8_t raw[SK_BYTES];
	const char *line;
	size_t llen;
	int rc;

	if (len > MINISIGN_KEYFILE_MAX)
		return ms_err(E2BIG, "%s: %zu bytes is too large for a secret "
			      "key", name, len);
	if ((rc = next_line(&l, &line, &llen)) < 0)
		return rc;
	if (rc == 0 || !has_prefix(line, llen, COMMENT_PREFIX))
		return ms_err(EINVAL, "%s: not a minisign secret key (first "
			      "line should start with \"" COMMENT_PREFIX "\")",
			      name);
	if ((rc = decode_line(&l, "secret key", raw, SK_BYTES)) == 0 &&
	    (rc = expect_end(&l)) == 0)
		rc = decode_seckey(raw, name, passphrase, sk);
	OPENSSL_cleanse(raw, sizeof(raw));
	return rc;
}

int minisign__seckey_load(const char *path, const char *passphrase,
			  struct minisign_seckey *sk)
{
	char *text;
	size_t len;
	int rc = read_small_file(path, MINISIGN_KEYFILE_MAX, &text, &len);

	if (rc < 0)
		return rc;
	rc = minisign__seckey_parse(text, len, path, passphrase, sk);
	OPENSSL_cleanse(text, len);
	free(text);
	return rc;
}

int minisign__seckey_is_encrypted(const char *path)
{
	struct minisign_seckey sk;
	int rc = minisign__seckey_load(path, NULL, &sk);

	minisign__seckey_wipe(&sk);
	if (rc == -ENOKEY)
		return 1;
	return rc < 0 ? rc : 0;
}

int minisign__seckey_format(const struct minisign_seckey *sk,
			    const char *comment, const char *passphrase,
			    const struct minisign_kdf_limits *limits,
			    char **out)
{
	static const struct minisign_kdf_limits sensitive = {
		MINISIGN_OPSLIMIT_SENSITIVE, MINISIGN_MEMLIMIT_SENSITIVE };
	uint8_t raw[SK_BYTES], stream[KEYNUM_SK_BYTES];
	uint8_t *keynum = raw + 6 + SALT_BYTES + 16;
	char b64[4 * ((SK_BYTES + 2) / 3) + 1];
	int rc;

	if (!comment)
		comment = passphrase ? "minisign encrypted secret key"
				     : "minisign unencrypted secret key";
	if ((rc = check_comment(comment, MINISIGN_COMMENT_MAX,
				"untrusted comment")) < 0)
		return rc;
	if (!limits)
		limits = &sensitive;
	memset(raw, 0, sizeof(raw));
	memcpy(raw, "Ed", 2);
	memcpy(raw + 4, "B2", 2);
	memcpy(keynum, sk->keyid, 8);
	memcpy(keynum + 8, sk->sk, 64);
	seckey_checksum(sk->keyid, sk->sk, keynum + 72);
	if (passphrase) {
		memcpy(raw + 2, "Sc", 2);
		if (RAND_bytes(raw + 6, SALT_BYTES) != 1) {
			rc = ms_err(EIO, "OpenSSL: no random bytes for a salt");
			goto out;
		}
		store64_le(raw + 6 + SALT_BYTES, limits->opslimit);
		store64_le(raw + 6 + SALT_BYTES + 8, limits->memlimit);
		rc = scrypt_stream("new secret key", passphrase, raw + 6,
				   limits->opslimit, limits->memlimit, stream,
				   sizeof(stream));
		if (rc < 0)
			goto out;
		for (size_t i = 0; i < sizeof(stream); i++)
			keynum[i] ^= stream[i];
	}
	minisign__base64_encode(raw, sizeof(raw), b64);
	if (asprintf(out, COMMENT_PREFIX "%s\n%s\n", comment, b64) < 0)
		rc = ms_err(ENOMEM, "out of memory");
out:
	OPENSSL_cleanse(raw, sizeof(raw));
	OPENSSL_cleanse(stream, sizeof(stream));
	OPENSSL_cleanse(b64, sizeof(b64));
	return rc;
}

/* ---- atomic file writes ------------------------------------------------ */

int minisign__write_file(const char *path, const void *buf, size_t len,
			 unsigned mode, unsigned flags)
{
	int r = durable__write_file(path, buf, len, mode,
				    flags & MINISIGN_SAVE_NO_OVERWRITE);

	if (r == -EEXIST)
		return ms_err(EEXIST, "%s: already exists", path);
	if (r < 0)
		return ms_err(-r, "%s: %s", path, strerror(-r));
	return 0;
}

int minisign__pubkey_save(const char *path, const struct minisign_pubkey *pk,
			  const char *comment, unsigned flags)
{
	char *text;
	int rc = minisign__pubkey_format(pk, comment, &text);

	if (rc < 0)
		return rc;
	rc = minisign__write_file(path, text, strlen(text), 0644, flags);
	free(text);
	return rc;
}

int minisign__seckey_save(const char *path, const struct minisign_seckey *sk,
			  const char *comment, const char *passphrase,
			  const struct minisign_kdf_limits *limits,
			  unsigned flags)
{
	char *text;
	int rc = minisign__seckey_format(sk, comment, passphrase, limits,
					 &text);

	if (rc < 0)
		return rc;
	rc = minisign__write_file(path, text, strlen(text), 0600, flags);
	OPENSSL_cleanse(text, strlen(text));
	free(text);
	return rc;
}

/* ---- hashing ----------------------------------------------------------- */

struct minisign_hash {
	EVP_MD_CTX *ctx;
};

int minisign__hash_new(minisign_hash **out)
{
	minisign_hash *h = calloc(1, sizeof(*h));

	if (!h)
		return ms_err(ENOMEM, "out of memory");
	h->ctx = EVP_MD_CTX_new();
	if (!h->ctx || EVP_DigestInit_ex(h->ctx, EVP_blake2b512(), NULL) != 1) {
		minisign__hash_free(h);
		return ms_err(EIO, "OpenSSL: BLAKE2b-512 unavailable");
	}
	*out = h;
	return 0;
}

int minisign__hash_update(minisign_hash *h, const void *buf, size_t len)
{
	if (len && EVP_DigestUpdate(h->ctx, buf, len) != 1)
		return ms_err(EIO, "OpenSSL: BLAKE2b-512 update failed");
	return 0;
}

int minisign__hash_final(minisign_hash *h, uint8_t out[MINISIGN_HASH_BYTES])
{
	unsigned n = 0;

	if (EVP_DigestFinal_ex(h->ctx, out, &n) != 1 ||
	    n != MINISIGN_HASH_BYTES)
		return ms_err(EIO, "OpenSSL: BLAKE2b-512 final failed");
	return 0;
}

void minisign__hash_free(minisign_hash *h)
{
	if (!h)
		return;
	EVP_MD_CTX_free(h->ctx);
	free(h);
}

int minisign__hash_file(const char *path, uint8_t out[MINISIGN_HASH_BYTES])
{
	enum { CHUNK = 1 << 20 };
	minisign_hash *h = NULL;
	uint8_t *buf = NULL;
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return ms_err(errno, "%s: %s", path, strerror(errno));
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	buf = malloc(CHUNK);
	if (!buf) {
		rc = ms_err(ENOMEM, "out of memory");
		goto out;
	}
	if ((rc = minisign__hash_new(&h)) < 0)
		goto out;
	for (;;) {
		ssize_t n = read(fd, buf, CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = ms_err(errno, "%s: reading: %s", path,
				    strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		if ((rc = minisign__hash_update(h, buf, (size_t)n)) < 0)
			goto out;
	}
	rc = minisign__hash_final(h, out);
out:
	minisign__hash_free(h);
	free(buf);
	close(fd);
	return rc;
}

/* ---- signing ----------------------------------------------------------- */

/* The global signature covers sig || trusted comment bytes. */
static int global_message(const struct minisign_signature *sig,
			  uint8_t **msg, size_t *len)
{
	size_t tl = strlen(sig->trusted_comment);

	*msg = malloc(MINISIGN_SIG_BYTES + tl);
	if (!*msg)
		return ms_err(ENOMEM, "out of memory");
	memcpy(*msg, sig->sig, MINISIGN_SIG_BYTES);
	memcpy(*msg + MINISIGN_SIG_BYTES, sig->trusted_comment, tl);
	*len = MINISIGN_SIG_BYTES + tl;
	return 0;
}

int minisign__sign_prehashed(const struct minisign_seckey *sk,
			     const uint8_t hash[MINISIGN_HASH_BYTES],
			     const char *trusted_comment,
			     struct minisign_signature *sig)
{
	uint8_t *msg;
	size_t len;
	int rc;

	if (!trusted_comment)
		trusted_comment = "";
	if ((rc = check_comment(trusted_comment, MINISIGN_TRUSTED_COMMENT_MAX,
				"trusted comment")) < 0)
		return rc;
	memset(sig, 0, sizeof(*sig));
	sig->prehashed = 1;
	memcpy(sig->keyid, sk->keyid, MINISIGN_KEYID_BYTES);
	strcpy(sig->trusted_comment, trusted_comment);
	if ((rc = ed25519_sign(sk->sk, hash, MINISIGN_HASH_BYTES,
			       sig->sig)) < 0)
		return rc;
	if ((rc = global_message(sig, &msg, &len)) < 0)
		return rc;
	rc = ed25519_sign(sk->sk, msg, len, sig->global_sig);
	free(msg);
	return rc;
}

int minisign__sign_buffer(const struct minisign_seckey *sk, const void *buf,
			  size_t len, const char *trusted_comment,
			  struct minisign_signature *sig)
{
	uint8_t hash[MINISIGN_HASH_BYTES];
	minisign_hash *h;
	int rc = minisign__hash_new(&h);

	if (rc < 0)
		return rc;
	if ((rc = minisign__hash_update(h, buf, len)) == 0)
		rc = minisign__hash_final(h, hash);
	minisign__hash_free(h);
	if (rc < 0)
		return rc;
	return minisign__sign_prehashed(sk, hash, trusted_comment, sig);
}

int minisign__sign_file(const struct minisign_seckey *sk, const char *path,
			const char *trusted_comment,
			struct minisign_signature *sig)
{
	uint8_t hash[MINISIGN_HASH_BYTES];
	int rc;

	/* Check the comment before reading a possibly huge file. */
	if (trusted_comment &&
	    (rc = check_comment(trusted_comment, MINISIGN_TRUSTED_COMMENT_MAX,
				"trusted comment")) < 0)
		return rc;
	if ((rc = minisign__hash_file(path, hash)) < 0)
		return rc;
	return minisign__sign_prehashed(sk, hash, trusted_comment, sig);
}

/* ---- signature files --------------------------------------------------- */

int minisign__sig_format(const struct minisign_signature *sig,
			 const char *untrusted_comment, char **out)
{
	uint8_t raw[SIG_BYTES];
	char b1[4 * ((SIG_BYTES + 2) / 3) + 1], b2[4 * ((64 + 2) / 3) + 1];
	int rc;

	if (!untrusted_comment)
		untrusted_comment = sig->untrusted_comment[0]
			? sig->untrusted_comment
			: "signature from minisign secret key";
	if ((rc = check_comment(untrusted_comment, MINISIGN_COMMENT_MAX,
				"untrusted comment")) < 0 ||
	    (rc = check_comment(sig->trusted_comment,
				MINISIGN_TRUSTED_COMMENT_MAX,
				"trusted comment")) < 0)
		return rc;
	memcpy(raw, sig->prehashed ? "ED" : "Ed", 2);
	memcpy(raw + 2, sig->keyid, MINISIGN_KEYID_BYTES);
	memcpy(raw + 2 + MINISIGN_KEYID_BYTES, sig->sig, MINISIGN_SIG_BYTES);
	minisign__base64_encode(raw, sizeof(raw), b1);
	minisign__base64_encode(sig->global_sig, MINISIGN_SIG_BYTES, b2);
	if (asprintf(out, COMMENT_PREFIX "%s\n%s\n" TRUSTED_PREFIX "%s\n%s\n",
		     untrusted_comment, b1, sig->trusted_comment, b2) < 0)
		return ms_err(ENOMEM, "out of memory");
	return 0;
}

int minisign__sig_parse(const char *text, size_t len, const char *name,
			struct minisign_signature *sig)
{
	struct lines l = { text, text + len, name, 0 };
	const size_t cp = strlen(COMMENT_PREFIX), tp = strlen(TRUSTED_PREFIX);
	uint8_t raw[SIG_BYTES];
	const char *line;
	size_t llen;
	char t[16];
	int rc;

	memset(sig, 0, sizeof(*sig));
	if (len > MINISIGN_SIGFILE_MAX)
		return ms_err(E2BIG, "%s: %zu bytes is too large for a "
			      "signature", name, len);
	if ((rc = next_line(&l, &line, &llen)) < 0)
		return rc;
	if (rc == 0 || !has_prefix(line, llen, COMMENT_PREFIX))
		return ms_err(EINVAL, "%s: not a minisign signature (first "
			      "line should start with \"" COMMENT_PREFIX "\")",
			      name);
	if (llen - cp >= sizeof(sig->untrusted_comment))
		return ms_err(E2BIG, "%s: untrusted comment is %zu bytes, at "
			      "most %zu", name, llen - cp,
			      sizeof(sig->untrusted_comment) - 1);
	memcpy(sig->untrusted_comment, line + cp, llen - cp);
	if ((rc = decode_line(&l, "signature", raw, SIG_BYTES)) < 0)
		return rc;
	if (memcmp(raw, "ED", 2) == 0) {
		sig->prehashed = 1;
	} else if (memcmp(raw, "Ed", 2) == 0) {
		sig->prehashed = 0;
	} else {
		tag_text(raw, t);
		return ms_err(ENOTSUP, "%s: unsupported signature algorithm %s "
			      "(expected 'ED' or 'Ed')", name, t);
	}
	memcpy(sig->keyid, raw + 2, MINISIGN_KEYID_BYTES);
	memcpy(sig->sig, raw + 2 + MINISIGN_KEYID_BYTES, MINISIGN_SIG_BYTES);
	if ((rc = next_line(&l, &line, &llen)) < 0)
		return rc;
	if (rc == 0 || !has_prefix(line, llen, TRUSTED_PREFIX))
		return ms_err(EINVAL, "%s: line 3 should start with \""
			      TRUSTED_PREFIX "\"", name);
	if (llen - tp > MINISIGN_TRUSTED_COMMENT_MAX)
		return ms_err(E2BIG, "%s: trusted comment is %zu bytes, at "
			      "most %d", name, llen - tp,
			      MINISIGN_TRUSTED_COMMENT_MAX);
	memcpy(sig->trusted_comment, line + tp, llen - tp);
	if ((rc = decode_line(&l, "global signature", sig->global_sig,
			      MINISIGN_SIG_BYTES)) < 0)
		return rc;
	return expect_end(&l);
}

int minisign__sig_load(const char *path, struct minisign_signature *sig)
{
	char *text;
	size_t len;
	int rc = read_small_file(path, MINISIGN_SIGFILE_MAX, &text, &len);

	if (rc < 0)
		return rc;
	rc = minisign__sig_parse(text, len, path, sig);
	free(text);
	return rc;
}

int minisign__sig_save(const char *path, const struct minisign_signature *sig,
		       const char *untrusted_comment)
{
	char *text;
	int rc = minisign__sig_format(sig, untrusted_comment, &text);

	if (rc < 0)
		return rc;
	rc = minisign__write_file(path, text, strlen(text), 0644, 0);
	free(text);
	return rc;
}

/* ---- verification ------------------------------------------------------ */

static int check_keyid(const struct minisign_pubkey *pk,
		       const struct minisign_signature *sig)
{
	char a[MINISIGN_KEYID_HEX], b[MINISIGN_KEYID_HEX];

	if (memcmp(pk->keyid, sig->keyid, MINISIGN_KEYID_BYTES) == 0)
		return 0;
	minisign__keyid_hex(sig->keyid, a);
	minisign__keyid_hex(pk->keyid, b);
	return ms_err(EKEYREJECTED, "the signature was made by key %s, not by "
		      "the given key %s", a, b);
}

/* Both signatures, once the signed message (data or its hash) is known. */
static int verify_message(const struct minisign_pubkey *pk,
			  const struct minisign_signature *sig,
			  const void *msg, size_t len, const char *what,
			  const char **trusted_comment)
{
	uint8_t *gm;
	size_t gl;
	int rc = ed25519_verify(pk->pk, msg, len, sig->sig);

	if (rc < 0)
		return rc;
	if (rc == 0)
		return ms_err(EBADMSG, "%s: signature verification failed: "
			      "the data was modified or not signed by this "
			      "key", what);
	if ((rc = global_message(sig, &gm, &gl)) < 0)
		return rc;
	rc = ed25519_verify(pk->pk, gm, gl, sig->global_sig);
	free(gm);
	if (rc < 0)
		return rc;
	if (rc == 0)
		return ms_err(EBADMSG, "%s: the trusted comment's signature is "
			      "invalid: the trusted comment was tampered with",
			      what);
	if (trusted_comment)
		*trusted_comment = sig->trusted_comment;
	return 0;
}

int minisign__verify_prehashed(const struct minisign_pubkey *pk,
			       const struct minisign_signature *sig,
			       const uint8_t hash[MINISIGN_HASH_BYTES],
			       const char **trusted_comment)
{
	int rc = check_keyid(pk, sig);

	if (rc < 0)
		return rc;
	if (!sig->prehashed)
		return ms_err(EINVAL, "legacy (non-prehashed) signature: it "
			      "covers the data itself, not a hash");
	return verify_message(pk, sig, hash, MINISIGN_HASH_BYTES, "data",
			      trusted_comment);
}

int minisign__verify_buffer(const struct minisign_pubkey *pk,
			    const struct minisign_signature *sig,
			    const void *buf, size_t len,
			    const char **trusted_comment)
{
	uint8_t hash[MINISIGN_HASH_BYTES];
	minisign_hash *h;
	int rc = check_keyid(pk, sig);

	if (rc < 0)
		return rc;
	if (!sig->prehashed)
		return verify_message(pk, sig, buf, len, "data",
				      trusted_comment);
	if ((rc = minisign__hash_new(&h)) < 0)
		return rc;
	if ((rc = minisign__hash_update(h, buf, len)) == 0)
		rc = minisign__hash_final(h, hash);
	minisign__hash_free(h);
	if (rc < 0)
		return rc;
	return verify_message(pk, sig, hash, sizeof(hash), "data",
			      trusted_comment);
}

/* A legacy signature covers the raw bytes, so the file must be mapped
 * whole; refuse sizes minisign itself would not sign that way. */
static int verify_legacy_file(const struct minisign_pubkey *pk,
			      const struct minisign_signature *sig,
			      const char *path, const char **trusted_comment)
{
	struct stat st;
	void *map = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc;

	if (fd < 0)
		return ms_err(errno, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return ms_err(EINVAL, "%s: not a regular file", path);
	}
	if ((uint64_t)st.st_size > MINISIGN_LEGACY_MAX) {
		close(fd);
		return ms_err(E2BIG, "%s: %llu bytes is too large for a legacy "
			      "(non-prehashed) signature", path,
			      (unsigned long long)st.st_size);
	}
	if (st.st_size > 0) {
		map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE,
			   fd, 0);
		if (map == MAP_FAILED) {
			rc = ms_err(errno, "%s: mmap: %s", path,
				    strerror(errno));
			close(fd);
			return rc;
		}
	}
	close(fd);
	rc = verify_message(pk, sig, map, (size_t)st.st_size, path,
			    trusted_comment);
	if (map)
		munmap(map, (size_t)st.st_size);
	return rc;
}

int minisign__verify_file(const struct minisign_pubkey *pk,
			  const struct minisign_signature *sig,
			  const char *path, const char **trusted_comment)
{
	uint8_t hash[MINISIGN_HASH_BYTES];
	int rc = check_keyid(pk, sig);

	if (rc < 0)
		return rc;
	if (!sig->prehashed)
		return verify_legacy_file(pk, sig, path, trusted_comment);
	if ((rc = minisign__hash_file(path, hash)) < 0)
		return rc;
	return verify_message(pk, sig, hash, sizeof(hash), path,
			      trusted_comment);
}
