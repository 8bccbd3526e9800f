/*
 * test_toml.c - builder/toml.c: the API, error positions, hostile input.
 *
 * Grammar conformance is covered by tests/cli/toml-conformance.sh (the
 * official toml-test vectors); this file checks what those cannot: the C
 * API, the line:col of typical mistakes, and inputs built to hurt.
 */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "builder/toml.h"
#include "fixture-run.h"

static char err[512];

static struct toml_value *ok(const char *text)
{
	struct toml_value *root;
	int r = toml__parse(text, strlen(text), "t.toml", &root, err,
			    sizeof(err));
	ck_assert_msg(r == 0, "parse failed: %s", err);
	ck_assert_ptr_nonnull(root);
	return root;
}

/* Parse must fail; the message must start with want_pos ("t.toml:L:C: ")
 * and contain `want` somewhere. */
static void bad_len(const char *text, size_t len, const char *want_pos,
		    const char *want)
{
	struct toml_value *root = (void *)1;
	int r = toml__parse(text, len, "t.toml", &root, err, sizeof(err));
	ck_assert_msg(r == -EINVAL, "want -EINVAL for %s, got %d", want_pos, r);
	ck_assert_ptr_null(root);
	ck_assert_msg(strncmp(err, want_pos, strlen(want_pos)) == 0,
		      "want position %s, got \"%s\"", want_pos, err);
	if (want)
		ck_assert_msg(strstr(err, want), "want \"%s\" in \"%s\"", want,
			      err);
}

static void bad(const char *text, const char *want_pos, const char *want)
{
	bad_len(text, strlen(text), want_pos, want);
}

START_TEST(api_tree_and_positions)
{
	struct toml_value *root = ok(
		"# a recipe-like document\n"
		"name = \"demo\"\n"
		"size = 0x10\n"
		"ratio = 2.5\n"
		"on = true\n"
		"\n"
		"[vm]\n"
		"ports = [ 22, 80 ]\n"
		"  mem.max = 512\n"
		"[[user]]\n"
		"name = 'root'\n"
		"[[user]]\n"
		"name = \"\"\"\nbob\"\"\"\n");
	const struct toml_value *v;
	const struct toml_keyval *kv;
	int64_t i;
	double d;
	bool b;

	ck_assert_int_eq(root->type, TOML_TABLE);
	ck_assert_uint_eq(toml__table_len(root), 6);
	/* document order */
	ck_assert_str_eq(toml__table_at(root, 0)->key, "name");
	ck_assert_str_eq(toml__table_at(root, 4)->key, "vm");
	ck_assert_str_eq(toml__table_at(root, 5)->key, "user");
	ck_assert_ptr_null(toml__table_at(root, 6));

	v = toml__get(root, "name");
	ck_assert_str_eq(toml__string(v), "demo");
	ck_assert_int_eq(v->line, 2);
	ck_assert_int_eq(v->col, 8);
	kv = toml__get_kv(root, "name");
	ck_assert_int_eq(kv->line, 2);
	ck_assert_int_eq(kv->col, 1);

	ck_assert(toml__int(toml__get(root, "size"), &i));
	ck_assert_int_eq(i, 16);
	ck_assert(!toml__int(toml__get(root, "ratio"), &i));
	ck_assert(toml__double(toml__get(root, "ratio"), &d));
	ck_assert(d == 2.5);
	ck_assert(toml__double(toml__get(root, "size"), &d));
	ck_assert(d == 16.0);
	ck_assert(toml__bool(toml__get(root, "on"), &b) && b);
	ck_assert_ptr_null(toml__string(toml__get(root, "on")));
	ck_assert_ptr_null(toml__get(root, "missing"));
	ck_assert_ptr_null(toml__get(toml__get(root, "name"), "x"));

	const struct toml_value *vm = toml__get(root, "vm");
	ck_assert_int_eq(vm->type, TOML_TABLE);
	ck_assert_int_eq(vm->line, 7);
	ck_assert_int_eq(vm->col, 1);
	const struct toml_value *ports = toml__get(vm, "ports");
	ck_assert_uint_eq(toml__array_len(ports), 2);
	ck_assert(toml__int(toml__array_at(ports, 1), &i));
	ck_assert_int_eq(i, 80);
	ck_assert_int_eq(toml__array_at(ports, 1)->col, 15);
	ck_assert_ptr_null(toml__array_at(ports, 2));
	ck_assert_uint_eq(toml__array_len(vm), 0);
	kv = toml__get_kv(toml__get(vm, "mem"), "max");
	ck_assert_int_eq(kv->line, 9);
	ck_assert_int_eq(kv->col, 7);

	const struct toml_value *users = toml__get(root, "user");
	ck_assert_int_eq(users->type, TOML_ARRAY);
	ck_assert_uint_eq(toml__array_len(users), 2);
	ck_assert_str_eq(toml__string(toml__get(toml__array_at(users, 0),
						"name")), "root");
	ck_assert_str_eq(toml__string(toml__get(toml__array_at(users, 1),
						"name")), "bob");
	ck_assert_int_eq(toml__array_at(users, 1)->line, 12);
	toml__free(root);
}
END_TEST

START_TEST(columns_count_characters)
{
	/* "é" is two bytes but one column. */
	struct toml_value *root = ok("\"é\" = 1\n  x = \"ü\" \n");
	ck_assert_int_eq(toml__get(root, "é")->col, 7);
	ck_assert_int_eq(toml__get(root, "x")->col, 7);
	toml__free(root);
	bad("k = \"é\" x", "t.toml:1:9: ", "expected end of line");
}
END_TEST

START_TEST(strings_escapes_and_nul)
{
	struct toml_value *root = ok(
		"a = \"tab\\there \\u00e9 \\U0001F600\"\n"
		"b = \"nul\\u0000inside\"\n"
		"c = '''\r\nline1\r\nline2'''\n"
		"d = \"\"\"one \\\n    two\"\"\"\n");
	const struct toml_value *b = toml__get(root, "b");
	ck_assert_str_eq(toml__string(toml__get(root, "a")),
			 "tab\there \xc3\xa9 \xf0\x9f\x98\x80");
	ck_assert_uint_eq(b->u.s.len, 10);
	ck_assert_mem_eq(b->u.s.ptr, "nul\0inside", 11);
	ck_assert_str_eq(toml__string(toml__get(root, "c")), "line1\nline2");
	ck_assert_str_eq(toml__string(toml__get(root, "d")), "one two");
	toml__free(root);
}
END_TEST

START_TEST(numbers_and_limits)
{
	struct toml_value *root = ok(
		"max = 9223372036854775807\n"
		"min = -9223372036854775808\n"
		"hex = 0x7FFF_FFFF_FFFF_FFFF\n"
		"bin = 0b1010\n"
		"oct = 0o755\n"
		"f = -1_000.5e-3\n"
		"ninf = -inf\n"
		"nan = nan\n");
	int64_t i;
	double d;
	ck_assert(toml__int(toml__get(root, "max"), &i) && i == INT64_MAX);
	ck_assert(toml__int(toml__get(root, "min"), &i) && i == INT64_MIN);
	ck_assert(toml__int(toml__get(root, "hex"), &i) && i == INT64_MAX);
	ck_assert(toml__int(toml__get(root, "bin"), &i) && i == 10);
	ck_assert(toml__int(toml__get(root, "oct"), &i) && i == 0755);
	ck_assert_int_eq(toml__get(root, "oct")->int_base, 8);
	ck_assert_int_eq(toml__get(root, "hex")->int_base, 16);
	ck_assert_int_eq(toml__get(root, "bin")->int_base, 2);
	ck_assert_int_eq(toml__get(root, "max")->int_base, 10);
	ck_assert(toml__double(toml__get(root, "f"), &d) && d == -1.0005);
	ck_assert(toml__double(toml__get(root, "ninf"), &d) && isinf(d) &&
		  d < 0);
	ck_assert(toml__double(toml__get(root, "nan"), &d) && isnan(d));
	toml__free(root);

	bad("n = 9223372036854775808\n", "t.toml:1:5: ", "64 bits");
	bad("n = -9223372036854775809\n", "t.toml:1:5: ", "64 bits");
	bad("n = 0x8000000000000000\n", "t.toml:1:5: ", "64 bits");
	bad("n = 99999999999999999999999999999999999999\n", "t.toml:1:5: ",
	    "64 bits");
	bad("n = 1e999\n", "t.toml:1:5: ", "out of range");
	bad("n = 012\n", "t.toml:1:5: ", "leading zeros");
	bad("n = 1__0\n", "t.toml:1:5: ", "underscore");
	bad("n = +0x10\n", "t.toml:1:5: ", "sign");
}
END_TEST

START_TEST(datetimes_keep_their_parts)
{
	struct toml_value *root = ok(
		"odt = 1979-05-27t07:32:00.123456789123-07:30\n"
		"ldt = 1979-05-27 07:32:00\n"
		"ld = 2024-02-29\n"
		"lt = 00:32:00.5\n"
		"z = 1979-05-27T07:32:00z\n");
	char buf[64];
	const struct toml_value *odt = toml__get(root, "odt");
	ck_assert_int_eq(odt->type, TOML_OFFSET_DATETIME);
	ck_assert_int_eq(odt->u.dt.year, 1979);
	ck_assert_int_eq(odt->u.dt.nanosecond, 123456789);
	ck_assert_int_eq(odt->u.dt.frac_digits, 9);
	ck_assert_int_eq(odt->u.dt.offset_minutes, -450);
	ck_assert_str_eq(toml__datetime_format(odt, buf, sizeof(buf)),
			 "1979-05-27T07:32:00.123456789-07:30");
	ck_assert_int_eq(toml__get(root, "ldt")->type, TOML_LOCAL_DATETIME);
	ck_assert_str_eq(toml__datetime_format(toml__get(root, "ldt"), buf,
					       sizeof(buf)),
			 "1979-05-27T07:32:00");
	ck_assert_int_eq(toml__get(root, "ld")->type, TOML_LOCAL_DATE);
	ck_assert_int_eq(toml__get(root, "lt")->type, TOML_LOCAL_TIME);
	ck_assert_str_eq(toml__datetime_format(toml__get(root, "lt"), buf,
					       sizeof(buf)), "00:32:00.5");
	ck_assert_str_eq(toml__datetime_format(toml__get(root, "z"), buf,
					       sizeof(buf)),
			 "1979-05-27T07:32:00Z");
	/* a too-small buffer is cut, never overrun */
	ck_assert_str_eq(toml__datetime_format(odt, buf, 5), "");
	toml__free(root);
	bad("d = 2023-02-29\n", "t.toml:1:5: ", "out of range");
	bad("d = 07:32\n", "t.toml:1:5: ", "seconds");
}
END_TEST

START_TEST(error_positions)
{
	bad("a = 1\nb = \n", "t.toml:2:5: ", "expected a value");
	bad("a = 1\nname = \"abc\n", "t.toml:2:12: ", "newline");
	bad("a = 1\n\na = 2\n", "t.toml:3:1: ", "duplicate key 'a'");
	bad("[x]\n[y]\n[x]\n", "t.toml:3:1: ", "defined twice");
	bad("k = \"bad \\q escape\"\n", "t.toml:1:10: ", "'\\q'");
	bad("k = bare\n", "t.toml:1:5: ", "quotes");
	bad("k = 1 2\n", "t.toml:1:7: ", "expected end of line");
	bad("key value\n", "t.toml:1:5: ", "expected '='");
	bad("t = {a = 1,\n b = 2}\n", "t.toml:1:12: ", "newline");
	bad("t = {a = 1}\nt.b = 2\n", "t.toml:2:1: ", "inline table");
	bad("arr = [1, 2\n", "t.toml:1:7: ", "unterminated array");
	bad("[a]\nb.c = 1\n[a.b]\n", "t.toml:3:1: ", "dotted key");
	bad("a = []\n[[a]]\n", "t.toml:2:1: ", "already an array");
	bad("s = \"\"\"abc\n", "t.toml:1:5: ", "unterminated");
	bad("a = 1\r\nb = 2\rc = 3\n", "t.toml:2:6: ", "expected end of line");
}
END_TEST

START_TEST(hostile_nesting)
{
	/* Far deeper than TOML_MAX_DEPTH: must fail cleanly, not recurse. */
	size_t n = 100000;
	char *s = malloc(n * 2 + 16);
	ck_assert_ptr_nonnull(s);
	strcpy(s, "a = ");
	memset(s + 4, '[', n);
	s[4 + n] = 0;
	bad(s, "t.toml:1:", "deeper than");

	strcpy(s, "a = ");
	for (size_t i = 0; i < n; i++)
		memcpy(s + 4 + i * 2, "{b", 2);
	s[4 + n * 2] = 0;
	bad(s, "t.toml:1:", NULL);

	/* A dotted key of many parts, and a header of many parts. */
	s[0] = 0;
	for (int i = 0; i < 300; i++)
		strcat(s, "k.");
	strcat(s, "k = 1\n");
	bad(s, "t.toml:1:", "parts");
	strcpy(s, "[");
	for (int i = 0; i < 200; i++)
		strcat(s, "k.");
	strcat(s, "k]\n");
	bad(s, "t.toml:1:", NULL);

	/* Exactly at the limit is fine: 127 nested arrays under a key. */
	strcpy(s, "a = ");
	memset(s + 4, '[', TOML_MAX_DEPTH - 1);
	memset(s + 4 + TOML_MAX_DEPTH - 1, ']', TOML_MAX_DEPTH - 1);
	s[4 + 2 * (TOML_MAX_DEPTH - 1)] = 0;
	toml__free(ok(s));
	free(s);
}
END_TEST

/* The deepest documents the parser accepts, parsed on a small stack:
 * recursion is bounded by TOML_MAX_DEPTH, so 1 MiB is plenty. */
static void *parse_deep(void *arg)
{
	(void)arg;
	size_t d = TOML_MAX_DEPTH - 1, k = 0;
	char *s = malloc(d * 16 + 64);
	struct toml_value *root;
	int r1, r2;

	k += (size_t)sprintf(s, "a = ");
	for (size_t i = 0; i < d; i++)
		k += (size_t)sprintf(s + k, "{ b = [");
	for (size_t i = 0; i < d; i++)
		k += (size_t)sprintf(s + k, "] }");
	/* 2 levels per round: d rounds is too deep, d / 2 fits. */
	r1 = toml__parse(s, k, NULL, &root, err, sizeof(err));
	k = (size_t)sprintf(s, "a = ");
	for (size_t i = 0; i < d / 2; i++)
		k += (size_t)sprintf(s + k, "{ b = [");
	for (size_t i = 0; i < d / 2; i++)
		k += (size_t)sprintf(s + k, "] }");
	r2 = toml__parse(s, k, NULL, &root, err, sizeof(err));
	if (r2 == 0)
		toml__free(root);
	free(s);
	return (void *)(intptr_t)(r1 == -EINVAL && r2 == 0);
}

START_TEST(deep_nesting_on_small_stack)
{
	pthread_attr_t a;
	pthread_t t;
	void *ret;
	ck_assert_int_eq(pthread_attr_init(&a), 0);
	ck_assert_int_eq(pthread_attr_setstacksize(&a, 1 << 20), 0);
	ck_assert_int_eq(pthread_create(&t, &a, parse_deep, NULL), 0);
	ck_assert_int_eq(pthread_join(t, &ret), 0);
	ck_assert_msg(ret == (void *)1, "deep parse: %s", err);
	pthread_attr_destroy(&a);
}
END_TEST

START_TEST(hostile_bytes)
{
	/* Invalid UTF-8: overlong, surrogate, truncated, stray continuation */
	bad("a = \"\xC0\xAF\"\n", "t.toml:1:6: ", "UTF-8");
	bad("a = \"\xED\xA0\x80\"\n", "t.toml:1:6: ", "UTF-8");
	bad("# comment\nb = 1 # \xE2\x82\n", "t.toml:2:9: ", "UTF-8");
	bad("\x80", "t.toml:1:1: ", "UTF-8");
	bad("a = \"\xF4\x90\x80\x80\"\n", "t.toml:1:6: ", "UTF-8");
	/* NUL bytes: in a string, in a comment, as a key */
	bad_len("a = \"x\0y\"\n", 10, "t.toml:1:7: ", "U+0000");
	bad_len("a = 1 # \0\n", 10, "t.toml:1:9: ", "U+0000");
	bad_len("\0 = 1\n", 6, "t.toml:1:1: ", NULL);
	/* Escapes that are not scalar values */
	bad("a = \"\\uD800\"\n", "t.toml:1:6: ", "scalar");
	bad("a = \"\\U00110000\"\n", "t.toml:1:6: ", "scalar");
	bad("a = \"\\u12\"\n", "t.toml:1:6: ", "hex digits");
	/* Empty and whitespace-only input are valid, empty tables */
	struct toml_value *root;
	ck_assert_int_eq(toml__parse("", 0, NULL, &root, err, sizeof(err)), 0);
	ck_assert_uint_eq(toml__table_len(root), 0);
	toml__free(root);
	ck_assert_int_eq(toml__parse(NULL, 0, NULL, &root, err, sizeof(err)),
			 0);
	toml__free(root);
	/* No error buffer at all is allowed */
	ck_assert_int_eq(toml__parse("x", 1, NULL, &root, NULL, 0), -EINVAL);
	/* A tiny error buffer is cut, not overrun */
	char small[8];
	ck_assert_int_eq(toml__parse("x", 1, NULL, &root, small, sizeof(small)),
			 -EINVAL);
	ck_assert_uint_eq(strlen(small), sizeof(small) - 1);
}
END_TEST

START_TEST(many_keys_stay_fast_and_exact)
{
	/* 200k keys: duplicate detection must use the index (a quadratic
	 * scan would take minutes); the last key duplicates the first. */
	size_t n = 200000;
	char *s = malloc(n * 24 + 64), *p = s;
	ck_assert_ptr_nonnull(s);
	for (size_t i = 0; i < n; i++)
		p += sprintf(p, "k%zu = %zu\n", i, i);
	struct toml_value *root = ok(s);
	ck_assert_uint_eq(toml__table_len(root), n);
	int64_t v;
	ck_assert(toml__int(toml__get(root, "k123457"), &v) && v == 123457);
	ck_assert_str_eq(toml__table_at(root, n - 1)->key, "k199999");
	toml__free(root);
	sprintf(p, "k0 = 1\n");
	bad(s, "t.toml:200001:1: ", "duplicate key 'k0'");

	/* Dotted keys and headers resolve positions without rescanning. */
	p = s;
	for (size_t i = 0; i < n / 2; i++)
		p += sprintf(p, "t.u.k%zu = 1\n", i);
	for (size_t i = 0; i < n / 4; i++)
		p += sprintf(p, "[h%zu.x]\n", i);
	root = ok(s);
	const struct toml_value *u = toml__get(toml__get(root, "t"), "u");
	ck_assert_uint_eq(toml__table_len(u), n / 2);
	ck_assert_int_eq(toml__get_kv(u, "k99999")->line, 100000);
	ck_assert_int_eq(toml__get_kv(u, "k99999")->col, 5);
	ck_assert_int_eq(toml__get(root, "h49999")->line, n / 2 + 50000);
	toml__free(root);
	free(s);
}
END_TEST

/* Tiny deterministic PRNG so failures reproduce. */
static uint32_t rng_state = 12345;
static uint32_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 17;
	rng_state ^= rng_state << 5;
	return rng_state;
}

START_TEST(mutations_never_crash)
{
	static const char seed[] =
		"title = \"TOML \\u00e9\"\n[owner]\nname = 'Tom'\n"
		"dob = 1979-05-27T07:32:00-08:00\n"
		"[db]\nports = [ 8000, 8001, 0x10 ]\nen = true\n"
		"t = { a.b = 1, c = [1.5e3, -inf] }\n"
		"[[p]]\ns = \"\"\"x\\\n y\"\"\"\n[[p]]\nl = '''z'''\n";
	static const char alphabet[] = "[]{}=\"'.,#\\\n\r\t 0x_e+-:Tz\x80\xC3";
	size_t n = sizeof(seed) - 1;
	char buf[sizeof(seed) + 8];

	/* Every prefix. */
	for (size_t i = 0; i <= n; i++) {
		struct toml_value *root;
		if (toml__parse(seed, i, "t", &root, err, sizeof(err)) == 0)
			toml__free(root);
		else
			ck_assert_ptr_nonnull(strstr(err, "t:"));
	}
	/* Random single- and multi-byte mutations. */
	for (int it = 0; it < 20000; it++) {
		memcpy(buf, seed, n);
		int muts = 1 + rng() % 3;
		for (int m = 0; m < muts; m++) {
			size_t at = rng() % n;
			buf[at] = rng() % 4 ? alphabet[rng() % (sizeof(alphabet) - 1)]
					    : (char)rng();
		}
		struct toml_value *root;
		int r = toml__parse(buf, n, "t", &root, err, sizeof(err));
		if (r == 0)
			toml__free(root);
		else
			ck_assert_int_eq(r, -EINVAL);
	}
}
END_TEST

static Suite *toml_suite(void)
{
	Suite *s = suite_create("toml");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, api_tree_and_positions);
	tcase_add_test(tc, columns_count_characters);
	tcase_add_test(tc, strings_escapes_and_nul);
	tcase_add_test(tc, numbers_and_limits);
	tcase_add_test(tc, datetimes_keep_their_parts);
	tcase_add_test(tc, error_positions);
	tcase_add_test(tc, hostile_nesting);
	tcase_add_test(tc, deep_nesting_on_small_stack);
	tcase_add_test(tc, hostile_bytes);
	tcase_add_test(tc, many_keys_stay_fast_and_exact);
	tcase_add_test(tc, mutations_never_crash);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return fx_run_suite(toml_suite());
}
