/*
 * test_blake3.c - common/blake3 against digests computed by b3sum (the
 * Rust implementation, an independent one) for the official test-vector
 * inputs (byte i = i % 251), through the one-shot and the streaming
 * interface, on every code path this CPU runs; unaligned buffers; random
 * lengths and splits where every path must agree with the portable one;
 * and the APPLIANCE_BLAKE3_IMPL override, in a fresh process.
 */
#include <check.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/blake3.h"
#include "fixture-run.h"

/* b3sum --no-names of the first len bytes of 0, 1, ..., 250, 0, 1, ... */
static const struct {
	size_t len;
	const char *hex;
} vectors[] = {
	{ 0, "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262" },
	{ 1, "2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213" },
	{ 63, "e9bc37a594daad83be9470df7f7b3798297c3d834ce80ba85d6e207627b7db7b" },
	{ 64, "4eed7141ea4a5cd4b788606bd23f46e212af9cacebacdc7d1f4c6dc7f2511b98" },
	{ 65, "de1e5fa0be70df6d2be8fffd0e99ceaa8eb6e8c93a63f2d8d1c30ecb6b263dee" },
	{ 1023, "10108970eeda3eb932baac1428c7a2163b0e924c9a9e25b35bba72b28f70bd11" },
	{ 1024, "42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7" },
	{ 1025, "d00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444" },
	{ 2048, "e776b6028c7cd22a4d0ba182a8bf62205d2ef576467e838ed6f2529b85fba24a" },
	{ 2049, "5f4d72f40d7a5f82b15ca2b2e44b1de3c2ef86c426c95c1af0b6879522563030" },
	{ 3072, "b98cb0ff3623be03326b373de6b9095218513e64f1ee2edd2525c7ad1e5cffd2" },
	{ 3073, "7124b49501012f81cc7f11ca069ec9226cecb8a2c850cfe644e327d22d3e1cd3" },
	{ 4096, "015094013f57a5277b59d8475c0501042c0b642e531b0a1c8f58d2163229e969" },
	{ 4097, "9b4052b38f1c5fc8b1f9ff7ac7b27cd242487b3d890d15c96a1c25b8aa0fb995" },
	{ 5120, "9cadc15fed8b5d854562b26a9536d9707cadeda9b143978f319ab34230535833" },
	{ 5121, "628bd2cb2004694adaab7bbd778a25df25c47b9d4155a55f8fbd79f2fe154cff" },
	{ 6144, "3e2e5b74e048f3add6d21faab3f83aa44d3b2278afb83b80b3c35164ebeca205" },
	{ 6145, "f1323a8631446cc50536a9f705ee5cb619424d46887f3c376c695b70e0f0507f" },
	{ 7168, "61da957ec2499a95d6b8023e2b0e604ec7f6b50e80a9678b89d2628e99ada77a" },
	{ 7169, "a003fc7a51754a9b3c7fae0367ab3d782dccf28855a03d435f8cfe74605e7817" },
	{ 8192, "aae792484c8efe4f19e2ca7d371d8c467ffb10748d8a5a1ae579948f718a2a63" },
	{ 8193, "bab6c09cb8ce8cf459261398d2e7aef35700bf488116ceb94a36d0f5f1b7bc3b" },
	{ 16384, "f875d6646de28985646f34ee13be9a576fd515f76b5b0a26bb324735041ddde4" },
	{ 31744, "62b6960e1a44bcc1eb1a611a8d6235b6b4b78f32e7abc4fb4c6cdcce94895c47" },
	{ 102400, "bc3e3d41a1146b069abffad3c0d44860cf664390afce4d9661f7902e7943e085" },
	{ 65536, "68d647e619a930e7b1082f74f334b0c65a315725569bdc123f0ee11881717bfe" },
	{ 65537, "7c99f9840a73dfcb6e5bfe4ff6d1558acab7e015640790c26411818bdbe17eca" },
	{ 131072, "306baba93b1a393cbd35172837c98b0f59a41f64e1b2682ae102d8b2534b9e1c" },
	{ 2097152, "96fbba37478c16b7614c890b26832f67b541cf14e69ab8ebf0c739818588c9f1" },
};
#define NVEC (sizeof(vectors) / sizeof(vectors[0]))

#define MAX_LEN (2u << 20)
#define PAD 8 /* room to start the data at an odd address */

static const char *paths[] = { "portable", "sse41", "avx2", "avx512" };
#define NPATHS (sizeof(paths) / sizeof(paths[0]))

static uint8_t *buf; /* MAX_LEN + PAD */

static void setup(void)
{
	buf = malloc(MAX_LEN + PAD);
	ck_assert_ptr_nonnull(buf);
}

static void teardown(void)
{
	free(buf);
	blake3__force_impl(NULL);
}

/* The test input at p: byte i is i % 251. */
static const uint8_t *pattern_at(size_t offset, size_t len)
{
	for (size_t i = 0; i < len; i++)
		buf[offset + i] = (uint8_t)(i % 251);
	return buf + offset;
}

static void hex(const uint8_t d[BLAKE3__OUT_LEN], char out[65])
{
	for (int i = 0; i < BLAKE3__OUT_LEN; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void stream(const uint8_t *p, size_t len, size_t piece,
		   uint8_t out[BLAKE3__OUT_LEN])
{
	struct blake3__hasher h;

	blake3__init(&h);
	for (size_t off = 0; off < len; off += piece)
		blake3__update(&h, p + off, len - off < piece ? len - off : piece);
	blake3__final(&h, out);
}

/* Every vector, one-shot at alignments 0, 1 and 3 and streamed in pieces
 * of several sizes, on the path in force.  */
static void check_vectors(const char *path)
{
	static const size_t pieces[] = { 1, 7, 63, 64, 65, 1000, 1024, 1025,
					 4096, 65537 };

	for (size_t v = 0; v < NVEC; v++) {
		size_t len = vectors[v].len;
		uint8_t d[BLAKE3__OUT_LEN];
		char got[65];

		for (size_t al = 0; al < 4; al += al ? 2 : 1) {
			blake3__hash(pattern_at(al, len), len, d);
			hex(d, got);
			ck_assert_msg(strcmp(got, vectors[v].hex) == 0,
				      "%s: hash of %zu bytes at offset %zu: %s, "
				      "b3sum %s", path, len, al, got,
				      vectors[v].hex);
		}
		for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
			/* bytewise over 2 MiB is slow and adds nothing */
			if (pieces[i] == 1 && len > 200000)
				continue;
			stream(pattern_at(1, len), len, pieces[i], d);
			hex(d, got);
			ck_assert_msg(strcmp(got, vectors[v].hex) == 0,
				      "%s: %zu bytes in pieces of %zu: %s, "
				      "b3sum %s", path, len, pieces[i], got,
				      vectors[v].hex);
		}
	}
}

START_TEST(vectors_on_every_path)
{
	int tested = 0;

	for (size_t p = 0; p < NPATHS; p++) {
		if (blake3__force_impl(paths[p]) < 0)
			continue; /* this CPU cannot run it */
		ck_assert_str_eq(blake3__impl(), paths[p]);
		check_vectors(paths[p]);
		tested++;
	}
	ck_assert_int_ge(tested, 1); /* portable runs everywhere */
	ck_assert_int_eq(blake3__force_impl("portable"), 0);
}
END_TEST

START_TEST(vectors_on_the_automatic_path)
{
	ck_assert_int_eq(blake3__force_impl(NULL), 0);
	check_vectors(blake3__impl());
}
END_TEST

/*
 * Subtrees: for every vector input longer than a part, on every path,
 * the parts' CVs merge back to b3sum's digest (an independent check of
 * the tree arithmetic); each part's CV computed alone, from its bytes and
 * first chunk number, is the one computed with the rest; a changed byte
 * changes only its own part's CV; and the same bytes at another position
 * (chunk counter) give another CV.
 */
START_TEST(subtrees_merge_to_the_digest_on_every_path)
{
	static const size_t parts[] = { 1024, 2048, 4096, 16384, 65536 };
	static uint8_t cvs[2048][32], work[2048][32];
	int tested = 0;

	for (size_t p = 0; p < NPATHS; p++) {
		if (blake3__force_impl(paths[p]) < 0)
			continue;
		tested++;
		for (size_t v = 0; v < NVEC; v++) {
			size_t len = vectors[v].len;
			for (size_t k = 0; k < sizeof(parts) / sizeof(parts[0]);
			     k++) {
				size_t S = parts[k], n = (len + S - 1) / S;
				uint8_t d[BLAKE3__OUT_LEN], one[32];
				char got[65];
				const uint8_t *in;

				if (len <= S || n > 2048)
					continue;
				in = pattern_at(1, len);
				blake3__subtree_cvs(in, len, S, cvs[0]);
				memcpy(work, cvs, n * 32);
				blake3__root_from_cvs(work[0], n, d);
				hex(d, got);
				ck_assert_msg(strcmp(got, vectors[v].hex) == 0,
					      "%s: %zu bytes in %zu-byte parts "
					      "merge to %s, b3sum %s", paths[p],
					      len, S, got, vectors[v].hex);
				for (size_t j = 0; j < n; j++) {
					size_t l = len - j * S < S ? len - j * S : S;
					blake3__subtree_cv(in + j * S, l,
							   j * S / 1024, one);
					ck_assert_msg(memcmp(one, cvs[j], 32) == 0,
						      "%s: part %zu of %zu bytes",
						      paths[p], j, len);
				}
			}
		}
		/* One byte changed: only its part's CV changes. */
		size_t len = 65536, S = 4096, n = len / S;
		uint8_t *in = (uint8_t *)pattern_at(0, len), again[16][32];
		blake3__subtree_cvs(in, len, S, cvs[0]);
		in[5 * S + 17] ^= 1;
		blake3__subtree_cvs(in, len, S, again[0]);
		for (size_t j = 0; j < n; j++)
			ck_assert_int_eq(memcmp(again[j], cvs[j], 32) != 0, j == 5);
		/* Same bytes, other position: another CV. */
		uint8_t at4[32], at8[32];
		blake3__subtree_cv(in, S, 4, at4);
		blake3__subtree_cv(in, S, 8, at8);
		ck_assert(memcmp(at4, at8, 32) != 0);
	}
	ck_assert_int_ge(tested, 1);
}
END_TEST

/* Chunk counters are 64-bit and the SIMD kernels keep them as two 32-bit
 * halves: parts whose chunks straddle 2^32 (a disk past 4 TiB) give the
 * portable path's CVs on every path, for batches of every kernel width. */
START_TEST(chunk_counters_carry_past_32_bits_on_every_path)
{
	static const uint64_t firsts[] = { 0xfffffffeull, 0xfffffff9ull,
					   0x1fffffffdull, 0xfffffffffffffff0ull };
	static const size_t lens[] = { 2048, 3072, 4096, 8192, 16384, 20000 };
	const uint8_t *in = pattern_at(3, 20000);
	int tested = 0;

	for (size_t p = 0; p < NPATHS; p++) {
		if (blake3__force_impl(paths[p]) < 0)
			continue;
		tested++;
		for (size_t f = 0; f < sizeof(firsts) / sizeof(firsts[0]); f++)
			for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]);
			     l++) {
				uint8_t want[32], got[32];

				ck_assert_int_eq(blake3__force_impl("portable"),
						 0);
				blake3__subtree_cv(in, lens[l], firsts[f], want);
				ck_assert_int_eq(blake3__force_impl(paths[p]), 0);
				blake3__subtree_cv(in, lens[l], firsts[f], got);
				ck_assert_msg(memcmp(want, got, 32) == 0,
					      "%s: %zu bytes from chunk %llx",
					      paths[p], lens[l],
					      (unsigned long long)firsts[f]);
			}
	}
	blake3__force_impl(NULL);
	ck_assert_int_ge(tested, 1);
}
END_TEST

/* Calls outside the subtree functions' contract (parts smaller than a
 * chunk or larger than 256 KiB, fewer than two CVs) give zeros, without
 * dividing by zero or reading past the input. */
START_TEST(subtree_calls_outside_the_contract_give_zeros)
{
	static const size_t bad[] = { 0, 512, 1000, 512u << 10 };
	const uint8_t *in = pattern_at(0, 8192);
	uint8_t cvs[16 * 32], zeros[16 * 32] = { 0 }, d[32];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(cvs, 0xaa, sizeof(cvs));
		blake3__subtree_cvs(in, 8192, bad[i], cvs);
		if (bad[i])
			ck_assert_int_eq(memcmp(cvs, zeros,
						32 * ((8192 + bad[i] - 1) /
						      bad[i])), 0);
	}
	memset(d, 0xaa, sizeof(d));
	blake3__root_from_cvs(cvs, 1, d);
	ck_assert_int_eq(memcmp(d, zeros, 32), 0);
}
END_TEST

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* Random data, random lengths up to 300 KiB, random alignment and random
 * splits: every path gives the portable path's digest, one-shot and
 * streamed. */
START_TEST(random_lengths_agree_with_portable)
{
	for (size_t i = 0; i < MAX_LEN + PAD; i++)
		buf[i] = (uint8_t)(next_rand() >> 32);
	for (int round = 0; round < 60; round++) {
		size_t len = next_rand() % (300 * 1024 + 1);
		size_t al = next_rand() % PAD;
		uint8_t want[BLAKE3__OUT_LEN], got[BLAKE3__OUT_LEN];
		struct blake3__hasher h;

		if (round < 8) /* the edges: whole chunks, one byte over */
			len = (next_rand() % 300 + 1) * 1024 + (round & 1);
		ck_assert_int_eq(blake3__force_impl("portable"), 0);
		blake3__hash(buf + al, len, want);
		for (size_t p = 0; p < NPATHS; p++) {
			if (blake3__force_impl(paths[p]) < 0)
				continue;
			blake3__hash(buf + al, len, got);
			ck_assert_msg(memcmp(got, want, sizeof(got)) == 0,
				      "%s: %zu bytes at offset %zu differ from "
				      "portable", paths[p], len, al);
			/* streamed in random pieces, mostly small, some
			 * spanning many chunks */
			blake3__init(&h);
			for (size_t off = 0; off < len;) {
				size_t n = next_rand() % 4 == 0
						   ? next_rand() % 70000
						   : next_rand() % 2100;
				if (n > len - off)
					n = len - off;
				blake3__update(&h, buf + al + off, n);
				off += n;
			}
			blake3__final(&h, got);
			ck_assert_msg(memcmp(got, want, sizeof(got)) == 0,
				      "%s: %zu bytes streamed in random pieces "
				      "differ from one-shot", paths[p], len);
		}
	}
}
END_TEST

/* final leaves the hasher as it was: more input may follow. */
START_TEST(final_then_more_input)
{
	const uint8_t *p = pattern_at(0, 8193);
	struct blake3__hasher h;
	uint8_t d[BLAKE3__OUT_LEN], again[BLAKE3__OUT_LEN];
	char got[65];

	blake3__init(&h);
	blake3__update(&h, p, 0);
	blake3__final(&h, d);
	hex(d, got);
	ck_assert_str_eq(got, vectors[0].hex);
	blake3__update(&h, p, 4096);
	blake3__final(&h, d);
	blake3__final(&h, again);
	ck_assert_mem_eq(d, again, sizeof(d));
	blake3__update(&h, p + 4096, 4097);
	blake3__final(&h, d);
	hex(d, got);
	ck_assert_str_eq(got, "bab6c09cb8ce8cf459261398d2e7aef3"
			      "5700bf488116ceb94a36d0f5f1b7bc3b");
}
END_TEST

START_TEST(unknown_or_unsupported_path_is_refused)
{
	const char *before;

	blake3__force_impl(NULL);
	before = blake3__impl();
	ck_assert_int_eq(blake3__force_impl("sha256"), -1);
	ck_assert_int_eq(blake3__force_impl(""), -1);
	ck_assert_str_eq(blake3__impl(), before);
	ck_assert_int_eq(blake3__force_impl("portable"), 0);
	ck_assert_str_eq(blake3__impl(), "portable");
}
END_TEST

/* Whatever path the automatic choice is, a fresh process given
 * APPLIANCE_BLAKE3_IMPL runs that path when the CPU can, and the best one
 * (never a crash) when it cannot or the name is unknown. */
static void impl_in_child(const char *env, char *out, size_t size)
{
	char cmd[256];
	FILE *f;

	snprintf(cmd, sizeof(cmd),
		 "APPLIANCE_BLAKE3_IMPL='%s' /proc/%d/exe --print-impl",
		 env, (int)getpid());
	f = popen(cmd, "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_ptr_nonnull(fgets(out, (int)size, f));
	out[strcspn(out, "\n")] = 0;
	ck_assert_int_eq(pclose(f), 0);
}

START_TEST(environment_forces_a_path)
{
	char best[32], got[32];

	impl_in_child("", best, sizeof(best));
	for (size_t p = 0; p < NPATHS; p++) {
		int ok = blake3__force_impl(paths[p]) == 0;

		impl_in_child(paths[p], got, sizeof(got));
		ck_assert_str_eq(got, ok ? paths[p] : best);
	}
	impl_in_child("no-such-path", got, sizeof(got));
	ck_assert_str_eq(got, best);
}
END_TEST

/* Several threads hashing at once, the first calls of the process
 * included (the automatic choice is made under pthread_once). */
static void *hash_thread(void *arg)
{
	uint8_t *d = arg;

	for (int i = 0; i < 20; i++)
		blake3__hash(buf, 100000, d);
	return NULL;
}

START_TEST(threads_agree)
{
	pthread_t t[4];
	uint8_t d[4][BLAKE3__OUT_LEN], want[BLAKE3__OUT_LEN];

	pattern_at(0, 100000);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, hash_thread, d[i]),
				 0);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	ck_assert_int_eq(blake3__force_impl("portable"), 0);
	blake3__hash(buf, 100000, want);
	for (int i = 0; i < 4; i++)
		ck_assert_mem_eq(d[i], want, sizeof(want));
}
END_TEST

int main(int argc, char **argv)
{
	Suite *s;
	TCase *tc;

	/* the child of environment_forces_a_path */
	if (argc > 1 && strcmp(argv[1], "--print-impl") == 0) {
		printf("%s\n", blake3__impl());
		return 0;
	}
	s = suite_create("blake3");
	tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, threads_agree);
	tcase_add_test(tc, vectors_on_every_path);
	tcase_add_test(tc, vectors_on_the_automatic_path);
	tcase_add_test(tc, subtrees_merge_to_the_digest_on_every_path);
	tcase_add_test(tc, chunk_counters_carry_past_32_bits_on_every_path);
	tcase_add_test(tc, subtree_calls_outside_the_contract_give_zeros);
	tcase_add_test(tc, random_lengths_agree_with_portable);
	tcase_add_test(tc, final_then_more_input);
	tcase_add_test(tc, unknown_or_unsupported_path_is_refused);
	tcase_add_test(tc, environment_forces_a_path);
	suite_add_tcase(s, tc);
	return fx_run_suite(s);
}
