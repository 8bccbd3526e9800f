/*
 * test_minisign.c - minisign-format keys and signatures: round trips,
 * byte-exact interop with files made by the real minisign 0.11, and the
 * hostile inputs a key or signature file can carry.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "appliances/minisign.h"
#include "fixture-run.h"

/* Made with `minisign -G -W` (unencrypted) and `minisign -Sm f -t "tc
 * here"` / `minisign -S -l` (legacy) over the 3 bytes "hi\n". */
static const char u_pub[] =
	"untrusted comment: minisign public key F90420029AA5BBAC\n"
	"RWSsu6WaAiAE+bz1+DyVSvsDt2+4aXCVROjaDe/sqUtAhzfssqiqECip\n";
static const char u_key[] =
	"untrusted comment: minisign encrypted secret key\n"
	"RWQAAEIyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	"AArLulmgIgBPlRs1IheFNopkG92UKDjabCE5+TYEhguP54iAIWDIFKPLz1+DyVSvsDt2+4"
	"aXCVROjaDe/sqUtAhzfssqiqECipAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	"=\n";
static const char u_sig[] =
	"untrusted comment: signature from minisign secret key\n"
	"RUSsu6WaAiAE+Uwoe5aSSBM4jgEmAWVCBF5r648JNJg3dMmRb9X6AN7m6rUy5DoMwv2XDnc"
	"N81Xdbk/X12vcCEWujR7l0QRPhQ4=\n"
	"trusted comment: tc here\n"
	"FeREWI7tunqMto5+GuzCj3RY23dL0qqbNYOX/pVvS9jMR0M0hyvEE9d7KLFpMaE4Xa+8dsn"
	"/baeZWLtJygqeDQ==\n";
static const char u_sig_legacy[] =
	"untrusted comment: signature from minisign secret key\n"
	"RWSsu6WaAiAE+eZhVW3UVZVd2a59oQUv67pCUmLwOkqnbAcDgC1nYpNI0y8Nu4GMM8ZFOt2"
	"+KbzT9TjeiIQaiE1b2dh8M7mMCw8=\n"
	"trusted comment: legacy tc\n"
	"tu29VTlUfwZAW1KI6irjNCXfzYXy09EHCATQhMrzc98ZwSinTwEcKCiwRiw8cT7UM9XNy1L"
	"Oc2i6UgyDJUS+Aw==\n";
/* `minisign -G` with password "secret" (scrypt SENSITIVE: N=2^20, r=8)
 * and a signature it made with that key over "hi\n". */
static const char e_pub[] =
	"untrusted comment: minisign public key 61F90A441E1C2BD8\n"
	"RWTYKxweRAr5YXVjPkth+4iDVXvPRrZRX1oJFzozuRU23JdD4CiGzfmq\n";
static const char e_key[] =
	"untrusted comment: my comment\n"
	"RWRTY0IybX0T/SAoiPkxT/KZg43uSDLAxGNlc6Ow1mnX1JPmSNwAAAACAAAAAAAAAEAAAAA"
	"ALzrjEa6v1aWxpjHGbg/q/mMxF1vF2LxOkIkY6UKDoO8N9Un9vearzO5B9TuxGRJ8CneFA0"
	"5TOXFJlw/m9cRRRh6+sfEIAp2FrphfPwUPHXXV/aZBIcMFznfckeza32iGK1HxClKXNeE="
	"\n";
static const char e_sig[] =
	"untrusted comment: signature from minisign secret key\n"
	"RUTYKxweRAr5YfGE3ykIKdYvfqNnE+5eNmg08NauNKtceUBmyJRQW9CTsxc7mDdZvM267HP"
	"+K0r9MH4xOnvaMjr29vu2bO05NAk=\n"
	"trusted comment: timestamp:1795578771\tfile:f\thashed\n"
	"LnK5oNUnkhWXwKKDykvbME0mEv/zHx1rLE7Wht/jOQKgaMFPlV7usI5QAD7/tB6e7dIeOAW"
	"39iOLQNI5pwMUCw==\n";

static const struct minisign_kdf_limits fast = {
	MINISIGN_OPSLIMIT_INTERACTIVE, MINISIGN_MEMLIMIT_INTERACTIVE };

static char dir[64];

static void setup(void)
{
	strcpy(dir, "/tmp/test_minisign.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
}

static void path_in(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", dir, name);
}

static void load_u(struct minisign_seckey *sk, struct minisign_pubkey *pk)
{
	ck_assert_msg(minisign__seckey_parse(u_key, strlen(u_key), "u.key",
					     NULL, sk) == 0,
		      "%s", minisign__error());
	ck_assert_msg(minisign__pubkey_parse(u_pub, strlen(u_pub), "u.pub",
					     pk) == 0,
		      "%s", minisign__error());
}

static int has(const char *needle)
{
	return strstr(minisign__error(), needle) != NULL;
}

/* ---- primitives -------------------------------------------------------- */

static void hex(const uint8_t *b, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
}

START_TEST(blake2b_known_answers)
{
	uint8_t out[64];
	char h[129];

	ck_assert_int_eq(minisign__blake2b(out, 64, "abc", 3), 0);
	hex(out, 64, h);
	ck_assert_str_eq(h, "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b7"
			 "4b12bb6fdbffa2d17d87c5392aab792dc252d5de4533cc95"
			 "18d38aa8dbf1925ab92386edd4009923");
	ck_assert_int_eq(minisign__blake2b(out, 32, "abc", 3), 0);
	hex(out, 32, h);
	ck_assert_str_eq(h, "bddd813c634239723171ef3fee98579b94964e3bb1cb3e42"
			 "7262c8c068d52319");
	ck_assert_int_eq(minisign__blake2b(out, 32, "", 0), 0);
	hex(out, 32, h);
	ck_assert_str_eq(h, "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787"
			 "faab45cdf12fe3a8");
	ck_assert_int_eq(minisign__blake2b(out, 65, "", 0), -EINVAL);
	ck_assert_int_eq(minisign__blake2b(out, 0, "", 0), -EINVAL);
}
END_TEST

/* Our BLAKE2b against OpenSSL's at every length around block borders. */
START_TEST(blake2b_matches_openssl)
{
	uint8_t in[600], a[64], b[64];
	unsigned n;

	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)(i * 7 + 1);
	for (size_t len = 0; len <= sizeof(in); len++) {
		ck_assert_int_eq(minisign__blake2b(a, 64, in, len), 0);
		ck_assert_int_eq(EVP_Digest(in, len, b, &n, EVP_blake2b512(),
					    NULL), 1);
		ck_assert_mem_eq(a, b, 64);
	}
}
END_TEST

START_TEST(base64_strict)
{
	uint8_t in[10] = { 0, 1, 2, 0xfd, 0xfe, 0xff, 9, 8, 7, 6 }, out[16];
	char enc[32];
	size_t n;

	for (size_t len = 0; len <= sizeof(in); len++) {
		minisign__base64_encode(in, len, enc);
		ck_assert_int_eq(minisign__base64_decode(enc, strlen(enc), out,
							 sizeof(out), &n), 0);
		ck_assert_uint_eq(n, len);
		ck_assert_mem_eq(in, out, len);
	}
	ck_assert_int_eq(minisign__base64_decode("QUJD", 3, out, 16, &n),
			 -EINVAL);
	ck_assert_int_eq(minisign__base64_decode("QU JD", 5, out, 16, &n),
			 -EINVAL);
	ck_assert_int_eq(minisign__base64_decode("QU=D", 4, out, 16, &n),
			 -EINVAL);
	ck_assert_int_eq(minisign__base64_decode("QQ==QUJD", 8, out, 16, &n),
			 -EINVAL);
	ck_assert_int_eq(minisign__base64_decode("QR==", 4, out, 16, &n),
			 -EINVAL);                 /* non-canonical */
	ck_assert_int_eq(minisign__base64_decode("QUJDRA==", 8, out, 3, &n),
			 -E2BIG);
	ck_assert_int_eq(minisign__base64_decode("QUJD", 4, out, 16, &n), 0);
	ck_assert_mem_eq(out, "ABC", 3);
}
END_TEST

START_TEST(keyid_hex_round_trip)
{
	struct minisign_pubkey pk;
	uint8_t id[8];
	char h[MINISIGN_KEYID_HEX];

	ck_assert_int_eq(minisign__pubkey_parse(u_pub, strlen(u_pub), "u",
						&pk), 0);
	minisign__keyid_hex(pk.keyid, h);
	ck_assert_str_eq(h, "F90420029AA5BBAC");   /* what minisign printed */
	ck_assert_int_eq(minisign__keyid_parse("f90420029aa5bbac", id), 0);
	ck_assert_mem_eq(id, pk.keyid, 8);
	ck_assert_int_eq(minisign__keyid_parse("F90420029AA5BBA", id), -EINVAL);
	ck_assert_int_eq(minisign__keyid_parse("F90420029AA5BBAG", id),
			 -EINVAL);
	ck_assert_int_eq(minisign__keyid_parse("F90420029AA5BBAC0", id),
			 -EINVAL);
}
END_TEST

/* ---- interop with minisign's own files --------------------------------- */

START_TEST(verifies_minisign_signatures)
{
	struct minisign_pubkey pk;
	struct minisign_signature sig;
	const char *tc = NULL;

	ck_assert_int_eq(minisign__pubkey_parse(u_pub, strlen(u_pub), "u",
						&pk), 0);
	ck_assert_int_eq(minisign__sig_parse(u_sig, strlen(u_sig), "s", &sig),
			 0);
	ck_assert_int_eq(sig.prehashed, 1);
	ck_assert_msg(minisign__verify_buffer(&pk, &sig, "hi\n", 3, &tc) == 0,
		      "%s", minisign__error());
	ck_assert_str_eq(tc, "tc here");
	ck_assert_int_eq(minisign__verify_buffer(&pk, &sig, "hi!", 3, NULL),
			 -EBADMSG);

	ck_assert_int_eq(minisign__sig_parse(u_sig_legacy,
					     strlen(u_sig_legacy), "l", &sig),
			 0);
	ck_assert_int_eq(sig.prehashed, 0);
	ck_assert_msg(minisign__verify_buffer(&pk, &sig, "hi\n", 3, &tc) == 0,
		      "%s", minisign__error());
	ck_assert_str_eq(tc, "legacy tc");
	ck_assert_int_eq(minisign__verify_buffer(&pk, &sig, "hi\n\n", 4, NULL),
			 -EBADMSG);
	/* A legacy signature covers the data, not its hash. */
	uint8_t hash[64] = { 0 };
	ck_assert_int_eq(minisign__verify_prehashed(&pk, &sig, hash, NULL),
			 -EINVAL);
}
END_TEST

/* Ed25519 is deterministic: signing what minisign signed, with its key
 * and its trusted comment, must give minisign's file byte for byte. */
START_TEST(signs_exactly_like_minisign)
{
	struct minisign_seckey sk;
	struct minisign_pubkey pk, pk2;
	struct minisign_signature sig;
	char *text;

	load_u(&sk, &pk);
	minisign__seckey_public(&sk, &pk2);
	ck_assert_mem_eq(&pk, &pk2, sizeof(pk));
	ck_assert_int_eq(minisign__sign_buffer(&sk, "hi\n", 3, "tc here",
					       &sig), 0);
	ck_assert_int_eq(minisign__sig_format(&sig, NULL, &text), 0);
	ck_assert_str_eq(text, u_sig);
	free(text);
	/* And the public key file we would write is minisign's. */
	ck_assert_int_eq(minisign__pubkey_format(&pk, NULL, &text), 0);
	ck_assert_str_eq(text, u_pub);
	free(text);
	minisign__seckey_wipe(&sk);
}
END_TEST

/* minisign's encrypted key: proves the scrypt parameters are derived from
 * opslimit/memlimit exactly as libsodium does (N=2^20, r=8, p=1 here). */
START_TEST(loads_minisign_encrypted_key)
{
	struct minisign_seckey sk;
	struct minisign_pubkey pk, pk2;
	struct minisign_signature sig, theirs;
	char *text;

	ck_assert_int_eq(minisign__seckey_parse(e_key, strlen(e_key), "e.key",
						NULL, &sk), -ENOKEY);
	ck_assert_int_eq(minisign__seckey_parse(e_key, strlen(e_key), "e.key",
						"wrong", &sk), -EACCES);
	ck_assert(has("wrong passphrase"));
	ck_assert_msg(minisign__seckey_parse(e_key, strlen(e_key), "e.key",
					     "secret", &sk) == 0,
		      "%s", minisign__error());
	ck_assert_int_eq(minisign__pubkey_parse(e_pub, strlen(e_pub), "e",
						&pk), 0);
	minisign__seckey_public(&sk, &pk2);
	ck_assert_mem_eq(&pk, &pk2, sizeof(pk));
	ck_assert_int_eq(minisign__sig_parse(e_sig, strlen(e_sig), "s",
					     &theirs), 0);
	ck_assert_int_eq(minisign__sign_buffer(&sk, "hi\n", 3,
					       theirs.trusted_comment, &sig),
			 0);
	ck_assert_int_eq(minisign__sig_format(&sig, NULL, &text), 0);
	ck_assert_str_eq(text, e_sig);
	free(text);
	minisign__seckey_wipe(&sk);
}
END_TEST

/* ---- our own round trips ----------------------------------------------- */

START_TEST(generate_sign_verify)
{
	struct minisign_seckey sk;
	struct minisign_pubkey pk;
	struct minisign_signature sig, back;
	const char *tc;
	char *text, *text2;

	ck_assert_int_eq(minisign__generate(&sk, &pk), 0);
	ck_assert_int_eq(minisign__sign_buffer(&sk, "payload", 7,
					       "trusted: yes\tmore", &sig), 0);
	ck_assert_int_eq(minisign__sig_format(&sig, "made here", &text), 0);
	ck_assert_int_eq(minisign__sig_parse(text, strlen(text), "t", &back),
			 0);
	ck_assert_str_eq(back.untrusted_comment, "made here");
	ck_assert_msg(minisign__verify_buffer(&pk, &back, "payload", 7, &tc)
		      == 0, "%s", minisign__error());
	ck_assert_str_eq(tc, "trusted: yes\tmore");
	/* Same input, same key: the same bytes, run after run. */
	ck_assert_int_eq(minisign__sign_buffer(&sk, "payload", 7,
					       "trusted: yes\tmore", &sig), 0);
	ck_assert_int_eq(minisign__sig_format(&sig, "made here", &text2), 0);
	ck_assert_str_eq(text, text2);
	free(text);
	free(text2);
	/* Empty data and an empty trusted comment are fine. */
	ck_assert_int_eq(minisign__sign_buffer(&sk, "", 0, "", &sig), 0);
	ck_assert_int_eq(minisign__verify_buffer(&pk, &sig, "", 0, &tc), 0);
	ck_assert_str_eq(tc, "");
	minisign__seckey_wipe(&sk);
}
END_TEST

START_TEST(tampering_is_detected)
{
	struct minisign_seckey sk;
	struct minisign_pubkey pk, other;
	struct minisign_seckey osk;
	struct minisign_signature sig, t;
	char a[MINISIGN_KEYID_HEX], b[MINISIGN_KEYID_HEX];

	ck_assert_int_eq(minisign__generate(&sk, &pk), 0);
	ck_assert_int_eq(minisign__generate(&osk, &other), 0);
	ck_assert_int_eq(minisign__sign_buffer(&sk, "data", 4, "v1", &sig), 0);

	ck_assert_int_eq(minisign__verify_buffer(&pk, &sig, "dat4", 4, NULL),
			 -EBADMSG);
	ck_assert(has("modified"));

	t = sig;
	strcpy(t.trusted_comment, "v2");
	ck_assert_int_eq(minisign__verify_buffer(&pk, &t, "data", 4, NULL),
			 -EBADMSG);
	ck_assert(has("trusted comment"));

	t = sig;
	t.global_sig[5] ^= 1;
	ck_assert_int_eq(minisign__verify_buffer(&pk, &t, "data", 4, NULL),
			 -EBADMSG);

	/* Another key: the message names both key ids. */
	ck_assert_int_eq(minisign__verify_buffer(&other, &sig, "data", 4,
						 NULL), -EKEYREJECTED);
	minisign__keyid_hex(sig.keyid, a);
	minisign__keyid_hex(other.keyid, b);
	ck_assert_msg(has(a) && has(b) && has("made by key"), "%s",
		      minisign__error());

	/* Another key that claims our key id: still refused. */
	memcpy(other.keyid, pk.keyid, 8);
	ck_assert_int_eq(minisign__verify_buffer(&other, &sig, "data", 4,
						 NULL), -EBADMSG);
	minisign__seckey_wipe(&sk);
	minisign__seckey_wipe(&osk);
}
END_TEST

START_TEST(comments_must_be_one_bounded_line)
{
	struct minisign_seckey sk;
	struct minisign_pubkey pk;
	struct minisign_signature sig;
	char *big = malloc(MINISIGN_TRUSTED_COMMENT_MAX + 2), *text;

	ck_assert_int_eq(minisign__generate(&sk, &pk), 0);
	ck_assert_int_eq(minisign__sign_buffer(&sk, "x", 1, "a\nb", &sig),
			 -EINVAL);
	ck_assert_int_eq(minisign__sign_buffer(&sk, "x", 1, "a\rb", &sig),
			 -EINVAL);
	memset(big, 'c', MINISIGN_TRUSTED_COMMENT_MAX + 1);
	big[MINISIGN_TRUSTED_COMMENT_MAX + 1] = '\0';
	ck_assert_int_eq(minisign__sign_buffer(&sk, "x", 1, big, &sig),
			 -E2BIG);
	/* The longest allowed one round-trips through a file's text. */
	big[MINISIGN_TRUSTED_COMMENT_MAX] = '\0';
	ck_assert_int_eq(minisign__sign_buffer(&sk, "x", 1, big, &sig), 0);
	ck_assert_int_eq(minisign__sig_format(&sig, "u\nv", &text), -EINVAL);
	ck_assert_int_eq(minisign__sig_format(&sig, NULL, &text), 0);
	ck_assert_int_eq(minisign__sig_parse(text, strlen(text), "t", &sig), 0);
	ck_assert_int_eq(minisign__verify_buffer(&pk, &sig, "x", 1, NULL), 0);
	free(text);
	free(big);
	minisign__seckey_wipe(&sk);
}
END_TEST

START_TEST(secret_key_round_trips)
{
	struct minisign_seckey sk, back;
	struct minisign_pubkey pk;
	char *text;

	ck_assert_int_eq(minisign__generate(&sk, &pk), 0);
	ck_assert_int_eq(minisign__seckey_format(&sk, NULL, NULL, NULL, &text),
			 0);
	ck_assert_int_eq(minisign__seckey_parse(text, strlen(text), "t", NULL,
						&back), 0);
	ck_assert_mem_eq(&sk, &back, sizeof(sk));
	free(text);

	ck_assert_int_eq(minisign__seckey_format(&sk, "c", "pass phrase", &fast,
						 &text), 0);
	ck_assert_int_eq(minisign__seckey_parse(text, strlen(text), "t", NULL,
						&back), -ENOKEY);
	ck_assert_int_eq(minisign__seckey_parse(text, strlen(text), "t",
						"pass phrasE", &back),
			 -EACCES);
	ck_assert_int_eq(minisign__seckey_parse(text, strlen(text), "t", "",
						&back), -EACCES);
	ck_assert_msg(minisign__seckey_parse(text, strlen(text), "t",
					     "pass phrase", &back) == 0,
		      "%s", minisign__error());
	ck_assert_mem_eq(&sk, &back, sizeof(sk));
	free(text);
	minisign__seckey_wipe(&sk);
	minisign__seckey_wipe(&back);
}
END_TEST

START_TEST(files_save_load_and_modes)
{
	struct minisign_seckey sk, back;
	struct minisign_pubkey pk, pback;
	struct minisign_signature sig, sback;
	char kp[128], pp[128], dp[128], sp[128];
	const char *tc;
	struct stat st;
	FILE *f;

	path_in(kp, sizeof(kp), "k.key");
	path_in(pp, sizeof(pp), "k.pub");
	path_in(dp, sizeof(dp), "data.bin");
	path_in(sp, sizeof(sp), "data.bin.minisig");
	ck_assert_int_eq(minisign__generate(&sk, &pk), 0);
	ck_assert_int_eq(minisign__seckey_save(kp, &sk, NULL, "pw", &fast,
					       MINISIGN_SAVE_NO_OVERWRITE), 0);
	ck_assert_int_eq(stat(kp, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0600);
	ck_assert_int_eq(minisign__seckey_save(kp, &sk, NULL, NULL, NULL,
					       MINISIGN_SAVE_NO_OVERWRITE),
			 -EEXIST);
	ck_assert_int_eq(minisign__pubkey_save(pp, &pk, NULL, 0), 0);
	ck_assert_int_eq(stat(pp, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0644);
	ck_assert_int_eq(minisign__seckey_is_encrypted(kp), 1);
	ck_assert_int_eq(minisign__seckey_load(kp, "pw", &back), 0);
	ck_assert_mem_eq(&sk, &back, sizeof(sk));
	ck_assert_int_eq(minisign__pubkey_load(pp, &pback), 0);
	ck_assert_mem_eq(&pk, &pback, sizeof(pk));

	/* A file over several read chunks, signed and verified streamed. */
	f = fopen(dp, "w");
	ck_assert_ptr_nonnull(f);
	for (int i = 0; i < (3 << 20) + 77; i++)
		fputc((i * 31) & 0xff, f);
	fclose(f);
	ck_assert_int_eq(minisign__sign_file(&sk, dp, "file tc", &sig), 0);
	ck_assert_int_eq(minisign__sig_save(sp, &sig, NULL), 0);
	ck_assert_int_eq(minisign__sig_load(sp, &sback), 0);
	ck_assert_msg(minisign__verify_file(&pk, &sback, dp, &tc) == 0, "%s",
		      minisign__error());
	ck_assert_str_eq(tc, "file tc");
	f = fopen(dp, "r+");
	fseek(f, 2 << 20, SEEK_SET);
	fputc('!', f);
	fclose(f);
	ck_assert_int_eq(minisign__verify_file(&pk, &sback, dp, NULL),
			 -EBADMSG);
	ck_assert_int_eq(minisign__pubkey_load(dp, &pback), -E2BIG);
	ck_assert_int_eq(minisign__sig_load("/nonexistent/x.minisig", &sback),
			 -ENOENT);
	ck_assert(has("/nonexistent/x.minisig"));
	minisign__seckey_wipe(&sk);
	minisign__seckey_wipe(&back);
}
END_TEST

/* ---- hostile input ----------------------------------------------------- */

/* Decode u_key's 158 bytes so tests can corrupt single fields. */
static void u_key_raw(uint8_t raw[158])
{
	const char *b = strchr(u_key, '\n') + 1;
	size_t n;

	ck_assert_int_eq(minisign__base64_decode(b, strlen(b) - 1, raw, 158,
						 &n), 0);
	ck_assert_uint_eq(n, 158);
}

static int parse_raw_key(const uint8_t raw[158], const char *pass)
{
	char text[300] = "untrusted comment: x\n";
	struct minisign_seckey sk;

	minisign__base64_encode(raw, 158, text + strlen(text));
	strcat(text, "\n");
	return minisign__seckey_parse(text, strlen(text), "k.key", pass, &sk);
}

START_TEST(hostile_secret_keys)
{
	uint8_t raw[158], r2[158];

	u_key_raw(raw);
	ck_assert_int_eq(parse_raw_key(raw, NULL), 0);

	memcpy(r2, raw, 158);
	memcpy(r2, "Ex", 2);
	ck_assert_int_eq(parse_raw_key(r2, NULL), -ENOTSUP);
	ck_assert(has("'Ex'"));
	memcpy(r2, raw, 158);
	memcpy(r2 + 2, "Xy", 2);
	ck_assert_int_eq(parse_raw_key(r2, NULL), -ENOTSUP);
	ck_assert(has("key derivation"));
	memcpy(r2, raw, 158);
	memcpy(r2 + 4, "B3", 2);
	ck_assert_int_eq(parse_raw_key(r2, NULL), -ENOTSUP);
	ck_assert(has("checksum"));

	/* Unencrypted: minisign writes a zero checksum; a wrong non-zero
	 * one means damage, as does a public half that is not the seed's. */
	memcpy(r2, raw, 158);
	r2[158 - 1] = 1;
	ck_assert_int_eq(parse_raw_key(r2, NULL), -EINVAL);
	ck_assert(has("checksum"));
	memcpy(r2, raw, 158);
	r2[54 + 8 + 40] ^= 0x10;
	ck_assert_int_eq(parse_raw_key(r2, NULL), -EINVAL);
	ck_assert(has("public half"));

	/* Absurd scrypt limits are refused before any allocation: this
	 * returns at once instead of asking for 2^63 bytes. */
	memcpy(r2, raw, 158);
	memcpy(r2 + 2, "Sc", 2);
	memset(r2 + 38, 0xff, 16);
	ck_assert_int_eq(parse_raw_key(r2, "pw"), -E2BIG);
	ck_assert(has("scrypt limits too large"));
	memset(r2 + 38, 0, 16);
	r2[38 + 7] = 0x40;                       /* opslimit 2^62, memlimit 0 */
	ck_assert_int_eq(parse_raw_key(r2, "pw"), -E2BIG);
	memset(r2 + 38, 0, 16);
	r2[46 + 4] = 0x10;                       /* memlimit 64 GiB */
	r2[38 + 4] = 0x10;
	ck_assert_int_eq(parse_raw_key(r2, "pw"), -E2BIG);
	/* Tiny limits are valid parameters, just the wrong passphrase. */
	memset(r2 + 38, 0, 16);
	ck_assert_int_eq(parse_raw_key(r2, "pw"), -EACCES);
}
END_TEST

static int pub(const char *text)
{
	struct minisign_pubkey pk;

	return minisign__pubkey_parse(text, strlen(text), "k.pub", &pk);
}

START_TEST(hostile_public_keys)
{
	struct minisign_pubkey pk;
	char buf[8192];

	/* A bare base64 key (minisign -P) is accepted. */
	ck_assert_int_eq(pub("RWSsu6WaAiAE+bz1+DyVSvsDt2+4aXCVROjaDe/sqUtAhzfs"
			     "sqiqECip"), 0);
	ck_assert_int_eq(pub("untrusted comment: k\n"
			     "RWSsu6WaAiAE+bz1+DyVSvsDt2+4aXCVROjaDe/sqUtAhzfs"
			     "sqiqECip\r\n\n"), 0);
	ck_assert_int_eq(pub("untrusted comment: k\n"
			     "RWSsu6WaAiAE+bz1+DyVSvsDt2+4aXCVROjaDe/sqUtAhzfs"
			     "sqiqECi\n"), -EINVAL);           /* 55 chars */
	ck_assert_int_eq(pub("untrusted comment: k\n"
			     "RWSsu6WaAiAE+bz1+DyVSvsDt2+4aXCVROjaDe/sqUtAhzfs"
			     "sqiqECipAAAA\n"), -EINVAL);     /* 45 bytes */
	ck_assert(has("k.pub") && has("line 2"));
	ck_assert_int_eq(pub("untrusted comment: k\n"
			     "RWSsu6WaAiAE+bz1+DyVSvsDt2+4aXCVROjaDe/sqUtAhzfs"
			     "sqiqEC!p\n"), -EINVAL);
	ck_assert(has("base64"));
	ck_assert_int_eq(pub("untrusted comment: k\n"
			     "UlNzu6WaAiAE+bz1+DyVSvsDt2+4aXCVROjaDe/sqUtAhzfs"
			     "sqiqECip\n"), -ENOTSUP);         /* "RS" */
	ck_assert_int_eq(pub("untrusted comment: k\n"), -EINVAL);
	ck_assert(has("missing"));
	ck_assert_int_eq(pub("untrusted comment: k\n"
			     "RWSsu6WaAiAE+bz1+DyVSvsDt2+4aXCVROjaDe/sqUtAhzfs"
			     "sqiqECip\ngarbage\n"), -EINVAL);
	ck_assert_int_eq(pub("hello\nworld\n"), -EINVAL);
	ck_assert_int_eq(pub(""), -EINVAL);
	ck_assert_int_eq(minisign__pubkey_parse("untrusted comment: \0\nx", 23,
						"k", &pk), -EINVAL);
	memset(buf, 'A', sizeof(buf));
	ck_assert_int_eq(minisign__pubkey_parse(buf, sizeof(buf), "k", &pk),
			 -E2BIG);
}
END_TEST

static int sig_text(const char *text, struct minisign_signature *sig)
{
	return minisign__sig_parse(text, strlen(text), "f.minisig", sig);
}

START_TEST(hostile_signatures)
{
	struct minisign_signature sig;
	char buf[16384];
	const char *l2 = strchr(u_sig, '\n') + 1;
	const char *l3 = strchr(l2, '\n') + 1;
	const char *l4 = strchr(l3, '\n') + 1;

	ck_assert_int_eq(sig_text(u_sig, &sig), 0);
	/* Wrong tag on the signature line ("RUT" -> "RVT": "ET..."). */
	snprintf(buf, sizeof(buf), "untrusted comment: x\nRX%s", l2 + 2);
	ck_assert_int_eq(sig_text(buf, &sig), -ENOTSUP);
	ck_assert(has("signature algorithm"));
	/* Truncated signature line. */
	snprintf(buf, sizeof(buf), "untrusted comment: x\n%.96s\n%s", l2, l3);
	ck_assert_int_eq(sig_text(buf, &sig), -EINVAL);
	/* No trusted comment prefix. */
	snprintf(buf, sizeof(buf), "untrusted comment: x\n%.101sno prefix\n%s",
		 l2, l4);
	ck_assert_int_eq(sig_text(buf, &sig), -EINVAL);
	ck_assert(has("trusted comment"));
	/* Global signature missing, or short. */
	snprintf(buf, sizeof(buf), "%.*s", (int)(l4 - u_sig), u_sig);
	ck_assert_int_eq(sig_text(buf, &sig), -EINVAL);
	ck_assert(has("global signature missing"));
	snprintf(buf, sizeof(buf), "%.*sAAAA\n", (int)(l4 - u_sig), u_sig);
	ck_assert_int_eq(sig_text(buf, &sig), -EINVAL);
	/* Untrusted first line missing. */
	ck_assert_int_eq(sig_text(l2, &sig), -EINVAL);
	/* Oversized trusted comment: bounded, not copied. */
	memcpy(buf, u_sig, (size_t)(l3 - u_sig));
	size_t o = (size_t)(l3 - u_sig);
	o += (size_t)sprintf(buf + o, "trusted comment: ");
	memset(buf + o, 'z', MINISIGN_TRUSTED_COMMENT_MAX + 1);
	o += MINISIGN_TRUSTED_COMMENT_MAX + 1;
	sprintf(buf + o, "\n%s", l4);
	ck_assert_int_eq(sig_text(buf, &sig), -E2BIG);
	/* Oversized untrusted comment. */
	o = (size_t)sprintf(buf, "untrusted comment: ");
	memset(buf + o, 'u', 2000);
	sprintf(buf + o + 2000, "\n%s", l2);
	ck_assert_int_eq(sig_text(buf, &sig), -E2BIG);
	/* Data after the four lines. */
	snprintf(buf, sizeof(buf), "%sextra\n", u_sig);
	ck_assert_int_eq(sig_text(buf, &sig), -EINVAL);
	/* CRLF line ends (a file edited on Windows) still parse. */
	o = 0;
	for (const char *p = u_sig; *p; p++) {
		if (*p == '\n')
			buf[o++] = '\r';
		buf[o++] = *p;
	}
	buf[o] = '\0';
	ck_assert_int_eq(sig_text(buf, &sig), 0);
	ck_assert_str_eq(sig.trusted_comment, "tc here");
}
END_TEST

/* Every single-byte change to a signature file must make it fail, except
 * in the untrusted comment (line 1), which is unauthenticated by design,
 * and the final newline; no change may crash the parser (the sanitizer
 * build checks that). */
START_TEST(mutated_signatures_never_verify)
{
	static const uint8_t repl[] = { 0x01, 0x20, 0x80 };
	static const char subst[] = { '\n', '\r', 'A', '=', '\0', '+' };
	struct minisign_pubkey pk;
	struct minisign_signature sig;
	size_t len = strlen(u_sig), line1 = strchr(u_sig, '\n') - u_sig;
	char *buf = malloc(len + 1);
	int accepted_in_comment = 0;

	ck_assert_int_eq(minisign__pubkey_parse(u_pub, strlen(u_pub), "u",
						&pk), 0);
	for (size_t pos = 0; pos < len; pos++) {
		for (size_t k = 0; k < sizeof(repl) + sizeof(subst); k++) {
			memcpy(buf, u_sig, len + 1);
			if (k < sizeof(repl))
				buf[pos] ^= (char)repl[k];
			else
				buf[pos] = subst[k - sizeof(repl)];
			if (buf[pos] == u_sig[pos])
				continue;
			if (minisign__sig_parse(buf, len, "m", &sig) != 0 ||
			    minisign__verify_buffer(&pk, &sig, "hi\n", 3,
						    NULL) != 0)
				continue;
			/* The final newline only ends the text: "\r" or
			 * another blank there changes no signed byte. */
			if (pos == len - 1)
				continue;
			ck_assert_msg(pos < line1 && pos >= 19,
				      "mutation at byte %zu (kind %zu) still "
				      "verifies", pos, k);
			accepted_in_comment++;
		}
	}
	/* The comment really is free text: most changes there pass. */
	ck_assert_int_gt(accepted_in_comment, 0);
	free(buf);
}
END_TEST

/* Same for the public key: any change either fails to parse or yields a
 * key under which the signature no longer verifies. */
START_TEST(mutated_public_keys_never_verify)
{
	struct minisign_pubkey pk;
	struct minisign_signature sig;
	size_t len = strlen(u_pub), line1 = strchr(u_pub, '\n') - u_pub;
	char *buf = malloc(len + 1);

	ck_assert_int_eq(minisign__sig_parse(u_sig, strlen(u_sig), "s", &sig),
			 0);
	for (size_t pos = line1 + 1; pos < len - 1; pos++) {
		for (int bit = 0; bit < 8; bit++) {
			memcpy(buf, u_pub, len + 1);
			buf[pos] ^= (char)(1 << bit);
			if (minisign__pubkey_parse(buf, len, "m", &pk) != 0)
				continue;
			ck_assert_msg(minisign__verify_buffer(&pk, &sig, "hi\n",
							      3, NULL) != 0,
				      "key mutated at %zu bit %d verifies",
				      pos, bit);
		}
	}
	free(buf);
}
END_TEST

Suite *minisign_suite(void)
{
	Suite *s = suite_create("minisign");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	/* One test runs minisign's real scrypt (1 GiB, a few seconds; more
	 * under sanitizers, which slow OpenSSL's callers too). */
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, blake2b_known_answers);
	tcase_add_test(tc, blake2b_matches_openssl);
	tcase_add_test(tc, base64_strict);
	tcase_add_test(tc, keyid_hex_round_trip);
	tcase_add_test(tc, verifies_minisign_signatures);
	tcase_add_test(tc, signs_exactly_like_minisign);
	tcase_add_test(tc, loads_minisign_encrypted_key);
	tcase_add_test(tc, generate_sign_verify);
	tcase_add_test(tc, tampering_is_detected);
	tcase_add_test(tc, comments_must_be_one_bounded_line);
	tcase_add_test(tc, secret_key_round_trips);
	tcase_add_test(tc, files_save_load_and_modes);
	tcase_add_test(tc, hostile_secret_keys);
	tcase_add_test(tc, hostile_public_keys);
	tcase_add_test(tc, hostile_signatures);
	tcase_add_test(tc, mutated_signatures_never_verify);
	tcase_add_test(tc, mutated_public_keys_never_verify);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return fx_run_suite(minisign_suite());
}
