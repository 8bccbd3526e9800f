/*
 * toml.c - TOML 1.0 parser (see toml.h).
 *
 * A hand-written recursive-descent parser over a byte buffer.  Design
 * points, each because of hostile input:
 *   - The whole input is UTF-8-validated before parsing, so the grammar
 *     code only has to refuse ASCII control characters.
 *   - Positions are byte offsets while parsing; line and column are worked
 *     out lazily from a cache that only moves forward, so recording a
 *     position per value stays linear in the input size.  Every position
 *     is therefore resolved as soon as it is passed (keys in parse_key,
 *     values in new_value); going backwards rescans from the start.
 *   - Nesting (arrays, inline tables, dotted keys, headers) is counted as
 *     depth in the final tree and capped at TOML_MAX_DEPTH, which bounds
 *     both the parser's recursion and every later tree walk (toml__free).
 *   - Tables keep a hash index once they grow, so a document of n keys
 *     costs O(n), not O(n^2), to check for duplicates.
 *
 * The redefinition rules of TOML are enforced with per-table flags:
 *   TF_DEFINED  made by a [header] (may not be made again)
 *   TF_DOTTED   made by a dotted key (a.b = 1); only dotted keys of the
 *               same section may add to it, never a [header] naming it
 *   TF_INLINE   an inline table, or a table inside one: sealed for good
 *   TF_STATIC   an array written as [ ... ]: [[header]] may not append
 *   TF_AOT      an array made by [[header]]
 * A table with none of the first three is "implicit" (created as a parent
 * by a header such as [a.b]) and may be defined once later by [a].
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "builder/toml.h"

enum {
	TF_DEFINED = 1u << 0,
	TF_DOTTED = 1u << 1,
	TF_INLINE = 1u << 2,
	TF_STATIC = 1u << 3,
	TF_AOT = 1u << 4,
};

struct parser {
	const char *s;
	size_t n, p;
	const char *file;
	char *err;
	size_t errlen;
	int rc;
	/* line/column cache for loc() */
	size_t cpos;
	int cline, ccol;
	struct toml_value *root;
	struct toml_value *cur;         /* table the next key = value goes to */
	int cur_depth;
};

/* Growable byte buffer for strings and keys. */
struct buf {
	char *p;
	size_t len, cap;
};

/* One part of a (possibly dotted) key. */
struct keypart {
	char *s;
	size_t len;
	size_t pos;
	int line, col;          /* of pos, worked out while the cache is
	                           still behind it (see loc()) */
};

/* ---- positions and errors -------------------------------------------- */

/* Line and column (1-based; the column counts characters) of byte `pos`. */
static void loc(struct parser *P, size_t pos, int *line, int *col)
{
	if (pos > P->n)
		pos = P->n;
	if (pos < P->cpos) {
		P->cpos = 0;
		P->cline = 1;
		P->ccol = 1;
	}
	while (P->cpos < pos) {
		unsigned char c = (unsigned char)P->s[P->cpos++];
		if (c == '\n') {
			P->cline++;
			P->ccol = 1;
		} else if ((c & 0xC0) != 0x80) {
			P->ccol++;
		}
	}
	*line = P->cline;
	*col = P->ccol;
}

__attribute__((format(printf, 3, 4)))
static int fail(struct parser *P, size_t pos, const char *fmt, ...)
{
	if (P->rc)
		return -1;      /* the first error is the one worth reporting */
	P->rc = -EINVAL;
	if (!P->err || !P->errlen)
		return -1;
	int line, col;
	loc(P, pos, &line, &col);
	int k = snprintf(P->err, P->errlen, "%s:%d:%d: ", P->file, line, col);
	if (k >= 0 && (size_t)k < P->errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(P->err + k, P->errlen - k, fmt, ap);
		va_end(ap);
	}
	return -1;
}

static int oom(struct parser *P)
{
	if (P->rc)
		return -1;
	P->rc = -ENOMEM;
	if (P->err && P->errlen)
		snprintf(P->err, P->errlen, "%s: out of memory", P->file);
	return -1;
}

/* A printable rendering of the byte at pos, for "found X" messages. */
static const char *show(struct parser *P, size_t pos, char *tmp, size_t len)
{
	if (pos >= P->n)
		return "end of input";
	unsigned char c = (unsigned char)P->s[pos];
	if (c == '\n' || c == '\r')
		return "end of line";
	if (c < 0x20 || c == 0x7f)
		snprintf(tmp, len, "control character U+%04X", c);
	else if (c >= 0x80)
		snprintf(tmp, len, "a non-ASCII character");
	else
		snprintf(tmp, len, "'%c'", c);
	return tmp;
}

/* ---- buffers ---------------------------------------------------------- */

static int buf_add(struct parser *P, struct buf *b, const char *s, size_t len)
{
	if (b->len + len + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 32;
		while (cap < b->len + len + 1)
			cap *= 2;
		char *np = realloc(b->p, cap);
		if (!np)
			return oom(P);
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, len);
	b->len += len;
	b->p[b->len] = 0;
	return 0;
}

/* Hand the buffer's string over (never NULL on success: "" for empty). */
static char *buf_take(struct parser *P, struct buf *b)
{
	if (!b->p && buf_add(P, b, "", 0))
		return NULL;
	char *r = b->p;
	b->p = NULL;
	b->len = b->cap = 0;
	return r;
}

/* ---- values and tables ----------------------------------------------- */

/* A value whose position was resolved earlier (keys, headers). */
static struct toml_value *new_value_lc(struct parser *P, enum toml_type t,
				       int line, int col)
{
	struct toml_value *v = calloc(1, sizeof(*v));
	if (!v) {
		oom(P);
		return NULL;
	}
	v->type = t;
	v->line = line;
	v->col = col;
	return v;
}

static struct toml_value *new_value(struct parser *P, enum toml_type t,
				    size_t pos)
{
	int line, col;
	loc(P, pos, &line, &col);
	return new_value_lc(P, t, line, col);
}

void toml__free(struct toml_value *v)
{
	if (!v)
		return;
	switch (v->type) {
	case TOML_STRING:
		free(v->u.s.ptr);
		break;
	case TOML_ARRAY:
		for (size_t i = 0; i < v->u.arr.len; i++)
			toml__free(v->u.arr.items[i]);
		free(v->u.arr.items);
		break;
	case TOML_TABLE:
		for (size_t i = 0; i < v->u.tab.len; i++) {
			free(v->u.tab.items[i].key);
			toml__free(v->u.tab.items[i].value);
		}
		free(v->u.tab.items);
		free(v->u.tab.index);
		break;
	default:
		break;
	}
	free(v);
}

static uint32_t hash_key(const char *k, size_t len)
{
	uint32_t h = 2166136261u;       /* FNV-1a */
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)k[i];
		h *= 16777619u;
	}
	return h;
}

/* Tables smaller than this are searched linearly. */
#define INDEX_MIN 16

static int index_rebuild(struct toml_value *t, size_t cap)
{
	uint32_t *idx = calloc(cap, sizeof(*idx));
	if (!idx)
		return -1;
	for (size_t i = 0; i < t->u.tab.len; i++) {
		struct toml_keyval *kv = &t->u.tab.items[i];
		size_t h = hash_key(kv->key, kv->keylen) & (cap - 1);
		while (idx[h])
			h = (h + 1) & (cap - 1);
		idx[h] = (uint32_t)(i + 1);
	}
	free(t->u.tab.index);
	t->u.tab.index = idx;
	t->u.tab.index_cap = cap;
	return 0;
}

static struct toml_keyval *tab_find(const struct toml_value *t, const char *k,
				    size_t len)
{
	if (!t || t->type != TOML_TABLE)
		return NULL;
	if (t->u.tab.index) {
		size_t cap = t->u.tab.index_cap;
		size_t h = hash_key(k, len) & (cap - 1);
		while (t->u.tab.index[h]) {
			struct toml_keyval *kv =
				&t->u.tab.items[t->u.tab.index[h] - 1];
			if (kv->keylen == len && memcmp(kv->key, k, len) == 0)
				return kv;
			h = (h + 1) & (cap - 1);
		}
		return NULL;
	}
	for (size_t i = 0; i < t->u.tab.len; i++) {
		struct toml_keyval *kv = &t->u.tab.items[i];
		if (kv->keylen == len && memcmp(kv->key, k, len) == 0)
			return kv;
	}
	return NULL;
}

/*
 * Append key -> v to table t.  Takes ownership of `key` (the keypart's
 * string) and of `v` in every case, so callers never leak on failure.
 * The caller has already checked the key is new.
 */
static int tab_insert(struct parser *P, struct toml_value *t,
		      struct keypart *kp, struct toml_value *v)
{
	struct toml_keyval *kv;

	if (t->u.tab.len == t->u.tab.cap) {
		size_t cap = t->u.tab.cap ? t->u.tab.cap * 2 : 4;
		if (cap > UINT32_MAX / 4)
			goto nomem;
		kv = realloc(t->u.tab.items, cap * sizeof(*kv));
		if (!kv)
			goto nomem;
		t->u.tab.items = kv;
		t->u.tab.cap = cap;
	}
	kv = &t->u.tab.items[t->u.tab.len++];
	kv->key = kp->s;
	kv->keylen = kp->len;
	kv->value = v;
	kv->line = kp->line;
	kv->col = kp->col;
	kp->s = NULL;

	size_t len = t->u.tab.len;
	if (len >= INDEX_MIN && len * 2 > t->u.tab.index_cap) {
		size_t cap = 64;
		while (cap < len * 4)
			cap *= 2;
		if (index_rebuild(t, cap))
			return oom(P);  /* the table still owns kv: freed later */
	} else if (t->u.tab.index) {
		size_t cap = t->u.tab.index_cap;
		size_t h = hash_key(kv->key, kv->keylen) & (cap - 1);
		while (t->u.tab.index[h])
			h = (h + 1) & (cap - 1);
		t->u.tab.index[h] = (uint32_t)len;
	}
	return 0;
nomem:
	free(kp->s);
	kp->s = NULL;
	toml__free(v);
	return oom(P);
}

static int arr_push(struct parser *P, struct toml_value *a,
		    struct toml_value *v)
{
	if (a->u.arr.len == a->u.arr.cap) {
		size_t cap = a->u.arr.cap ? a->u.arr.cap * 2 : 4;
		struct toml_value **items =
			realloc(a->u.arr.items, cap * sizeof(*items));
		if (!items) {
			toml__free(v);
			return oom(P);
		}
		a->u.arr.items = items;
		a->u.arr.cap = cap;
	}
	a->u.arr.items[a->u.arr.len++] = v;
	return 0;
}

/* ---- lexical helpers -------------------------------------------------- */

static int peek(struct parser *P, size_t off)
{
	return P->p + off < P->n ? (unsigned char)P->s[P->p + off] : -1;
}

static void skip_ws(struct parser *P)
{
	while (P->p < P->n && (P->s[P->p] == ' ' || P->s[P->p] == '\t'))
		P->p++;
}

static int is_ctrl(int c)
{
	return (c >= 0 && c < 0x20 && c != '\t') || c == 0x7f;
}

/* Consume a comment starting at '#', up to (not including) the newline. */
static int skip_comment(struct parser *P)
{
	while (P->p < P->n && P->s[P->p] != '\n') {
		int c = (unsigned char)P->s[P->p];
		if (c == '\r' && peek(P, 1) == '\n')
			break;
		if (is_ctrl(c))
			return fail(P, P->p, "control character U+%04X is "
				    "not allowed in a comment", c);
		P->p++;
	}
	return 0;
}

/* Consume a newline (LF or CRLF) if one is here; 1 if consumed. */
static int newline(struct parser *P)
{
	if (peek(P, 0) == '\n') {
		P->p++;
		return 1;
	}
	if (peek(P, 0) == '\r' && peek(P, 1) == '\n') {
		P->p += 2;
		return 1;
	}
	return 0;
}

/* After a key/value pair or header: whitespace, comment, end of line. */
static int end_of_line(struct parser *P, const char *after)
{
	char tmp[48];

	skip_ws(P);
	if (peek(P, 0) == '#' && skip_comment(P))
		return -1;
	if (P->p >= P->n || newline(P))
		return 0;
	return fail(P, P->p, "expected end of line after %s, found %s", after,
		    show(P, P->p, tmp, sizeof(tmp)));
}

/* Whitespace, newlines and comments (inside arrays). */
static int skip_ws_nl(struct parser *P)
{
	for (;;) {
		skip_ws(P);
		if (peek(P, 0) == '#') {
			if (skip_comment(P))
				return -1;
			continue;
		}
		if (!newline(P))
			return 0;
	}
}

/* Check the whole input is UTF-8 (RFC 3629: no overlongs, surrogates,
 * or code points past U+10FFFF). */
static int check_utf8(struct parser *P)
{
	const unsigned char *s = (const unsigned char *)P->s;
	size_t n = P->n, i = 0;

	while (i < n) {
		unsigned c = s[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t k;
		unsigned cp, min;
		if (c >= 0xC2 && c <= 0xDF) {
			k = 1; cp = c & 0x1F; min = 0x80;
		} else if (c >= 0xE0 && c <= 0xEF) {
			k = 2; cp = c & 0x0F; min = 0x800;
		} else if (c >= 0xF0 && c <= 0xF4) {
			k = 3; cp = c & 0x07; min = 0x10000;
		} else {
			return fail(P, i, "invalid UTF-8 byte 0x%02X", c);
		}
		if (n - i <= k)
			return fail(P, i, "truncated UTF-8 sequence");
		for (size_t j = 1; j <= k; j++) {
			if ((s[i + j] & 0xC0) != 0x80)
				return fail(P, i, "invalid UTF-8 sequence");
			cp = (cp << 6) | (s[i + j] & 0x3F);
		}
		if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return fail(P, i, "invalid UTF-8 sequence (code point "
				    "U+%04X)", cp);
		i += k + 1;
	}
	return 0;
}

static int utf8_encode(struct parser *P, struct buf *b, uint32_t cp)
{
	char u[4];
	size_t k;

	if (cp < 0x80) {
		u[0] = (char)cp; k = 1;
	} else if (cp < 0x800) {
		u[0] = (char)(0xC0 | (cp >> 6));
		u[1] = (char)(0x80 | (cp & 0x3F)); k = 2;
	} else if (cp < 0x10000) {
		u[0] = (char)(0xE0 | (cp >> 12));
		u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		u[2] = (char)(0x80 | (cp & 0x3F)); k = 3;
	} else {
		u[0] = (char)(0xF0 | (cp >> 18));
		u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
		u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
		u[3] = (char)(0x80 | (cp & 0x3F)); k = 4;
	}
	return buf_add(P, b, u, k);
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* ---- strings ---------------------------------------------------------- */

/* An escape sequence; P->p is at the backslash. */
static int parse_escape(struct parser *P, struct buf *b, int multiline)
{
	size_t at = P->p;
	int c = peek(P, 1);
	const char *r = NULL;

	switch (c) {
	case 'b': r = "\b"; break;
	case 't': r = "\t"; break;
	case 'n': r = "\n"; break;
	case 'f': r = "\f"; break;
	case 'r': r = "\r"; break;
	case '"': r = "\""; break;
	case '\\': r = "\\"; break;
	case 'u':
	case 'U': {
		int k = c == 'u' ? 4 : 8;
		uint32_t cp = 0;
		for (int i = 0; i < k; i++) {
			int h = hexval(peek(P, 2 + i));
			if (h < 0)
				return fail(P, at, "\\%c escape needs %d hex "
					    "digits", c, k);
			cp = cp << 4 | (uint32_t)h;
		}
		if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return fail(P, at, "\\%c%0*" PRIX32 " is not a Unicode "
				    "scalar value", c, k, cp);
		P->p += 2 + k;
		return utf8_encode(P, b, cp);
	}
	default:
		break;
	}
	if (r) {
		P->p += 2;
		return buf_add(P, b, r, 1);
	}
	if (multiline && (c == ' ' || c == '\t' || c == '\n' || c == '\r')) {
		/* Line-ending backslash: trims all whitespace and newlines
		 * up to the next non-blank character. */
		P->p++;
		skip_ws(P);
		if (!newline(P))
			return fail(P, at, "a backslash followed by spaces "
				    "must end the line");
		for (;;) {
			skip_ws(P);
			if (!newline(P))
				return 0;
		}
	}
	if (c < 0)
		return fail(P, at, "unterminated string");
	if (c < 0x20 || c == 0x7f || c >= 0x80)
		return fail(P, at, "invalid escape sequence");
	return fail(P, at, "invalid escape sequence '\\%c'", c);
}

/*
 * A string of any of the four kinds; P->p is at the opening quote.  With
 * !allow_multi (keys) a triple quote is refused.
 */
static int parse_string(struct parser *P, struct buf *b, int allow_multi)
{
	size_t start = P->p;
	char q = P->s[P->p];
	int literal = q == '\'';
	int multi = peek(P, 1) == q && peek(P, 2) == q;

	if (multi && !allow_multi)
		return fail(P, start, "a multi-line string cannot be a key");
	if (!b->p && buf_add(P, b, "", 0))
		return -1;
	if (multi) {
		P->p += 3;
		newline(P);     /* a newline right after the opener is trimmed */
	} else {
		P->p++;
	}
	for (;;) {
		if (P->p >= P->n)
			return fail(P, start, "unterminated string");
		size_t run = P->p;
		/* Copy plain bytes in one go. */
		while (P->p < P->n) {
			unsigned char c = (unsigned char)P->s[P->p];
			if (c == (unsigned char)q || (c == '\\' && !literal) ||
			    c < 0x20 || c == 0x7f)
				break;
			P->p++;
		}
		if (P->p > run && buf_add(P, b, P->s + run, P->p - run))
			return -1;
		if (P->p >= P->n)
			return fail(P, start, "unterminated string");
		int c = (unsigned char)P->s[P->p];
		if (c == q) {
			if (!multi) {
				P->p++;
				return 0;
			}
			size_t k = 0;
			while (peek(P, k) == q)
				k++;
			if (k < 3) {
				if (buf_add(P, b, P->s + P->p, k))
					return -1;
				P->p += k;
				continue;
			}
			if (k > 5)
				return fail(P, P->p + 5, "too many quotes at the "
					    "end of a multi-line string");
			if (buf_add(P, b, P->s + P->p, k - 3))
				return -1;
			P->p += k;
			return 0;
		}
		if (c == '\\') {
			if (parse_escape(P, b, multi))
				return -1;
			continue;
		}
		if (c == '\t') {
			if (buf_add(P, b, "\t", 1))
				return -1;
			P->p++;
			continue;
		}
		if (multi && newline(P)) {
			/* CRLF is stored as LF: the value should not depend
			 * on the file's line endings. */
			if (buf_add(P, b, "\n", 1))
				return -1;
			continue;
		}
		if (c == '\n' || (c == '\r' && peek(P, 1) == '\n'))
			return fail(P, P->p, "newline in a single-line string "
				    "(use \"\"\" for multi-line strings)");
		return fail(P, P->p, "control character U+%04X is not allowed "
			    "in a string (escape it)", c);
	}
}

/* ---- keys ------------------------------------------------------------- */

static int is_bare(int c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/* Free the parts' strings (those not handed to a table) and the array. */
static void free_parts(struct keypart *parts, int n)
{
	for (int i = 0; i < n; i++)
		free(parts[i].s);
	free(parts);
}

/*
 * A dotted key into a new array *partsp of *nparts parts (at most
 * TOML_MAX_DEPTH).  The array is on the heap, not the stack, because
 * key/value parsing recurses through inline tables.
 */
static int parse_key(struct parser *P, struct keypart **partsp, int *nparts)
{
	char tmp[48];
	int n = 0, cap = 4;
	struct keypart *parts = malloc(cap * sizeof(*parts));

	*nparts = 0;
	*partsp = NULL;
	if (!parts)
		return oom(P);
	for (;;) {
		struct buf b = { 0 };
		size_t pos = P->p;
		int c = peek(P, 0);

		if (n == cap && n < TOML_MAX_DEPTH) {
			cap *= 2;
			struct keypart *np = realloc(parts, cap * sizeof(*np));
			if (!np) {
				free_parts(parts, n);
				return oom(P);
			}
			parts = np;
		}
		if (n == TOML_MAX_DEPTH) {
			free_parts(parts, n);
			return fail(P, pos, "key has more than %d parts",
				    TOML_MAX_DEPTH);
		}
		if (c == '"' || c == '\'') {
			if (parse_string(P, &b, 0)) {
				free(b.p);
				free_parts(parts, n);
				return -1;
			}
		} else if (is_bare(c)) {
			while (is_bare(peek(P, 0)))
				P->p++;
			if (buf_add(P, &b, P->s + pos, P->p - pos)) {
				free_parts(parts, n);
				return -1;
			}
		} else {
			free_parts(parts, n);
			if (c == '=')
				return fail(P, pos, "expected a key before '='");
			return fail(P, pos, "expected a key, found %s",
				    show(P, pos, tmp, sizeof(tmp)));
		}
		parts[n].len = b.len;
		parts[n].s = buf_take(P, &b);
		parts[n].pos = pos;
		loc(P, pos, &parts[n].line, &parts[n].col);
		if (!parts[n].s) {
			free_parts(parts, n);
			return -1;
		}
		n++;
		skip_ws(P);
		if (peek(P, 0) != '.')
			break;
		P->p++;
		skip_ws(P);
	}
	*partsp = parts;
	*nparts = n;
	return 0;
}

/* ---- numbers, booleans, date-times ------------------------------------ */

static int is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static int digit_in_base(int c, int base)
{
	int v = hexval(c);
	return v >= 0 && v < base ? v : -1;
}

/*
 * Check digits-with-underscores d[0..len) in `base`: non-empty, each '_'
 * between two digits.  Returns NULL or what is wrong.
 */
static const char *check_digits(const char *d, size_t len, int base)
{
	if (len == 0)
		return "missing digits";
	for (size_t i = 0; i < len; i++) {
		if (d[i] == '_') {
			if (i == 0 || i + 1 == len || d[i + 1] == '_' ||
			    d[i - 1] == '_')
				return "an underscore must be between two digits";
			continue;
		}
		if (digit_in_base((unsigned char)d[i], base) < 0)
			return "invalid digit";
	}
	return NULL;
}

/* A character that may follow a scalar value. */
static int is_delim(int c)
{
	return c < 0 || c == ' ' || c == '\t' || c == '\n' || c == '\r' ||
	       c == '#' || c == ',' || c == ']' || c == '}';
}

static int parse_number(struct parser *P, struct toml_value **out)
{
	size_t start = P->p, end = P->p;
	while (end < P->n) {
		int c = (unsigned char)P->s[end];
		if (!(is_bare(c) || c == '+' || c == '.'))
			break;
		end++;
	}
	const char *t = P->s + start;
	size_t len = end - start;
	int neg = 0, sign = 0;
	const char *why;

	if (len && (t[0] == '+' || t[0] == '-')) {
		neg = t[0] == '-';
		sign = 1;
	}
	const char *r = t + sign;
	size_t rlen = len - sign;

	if (rlen && !is_digit((unsigned char)r[0]) &&
	    !(rlen == 3 && (memcmp(r, "inf", 3) == 0 ||
			    memcmp(r, "nan", 3) == 0)))
		return fail(P, start, "invalid value '%.*s' (strings need "
			    "quotes)", (int)(len > 40 ? 40 : len), t);

	if (rlen == 3 && (memcmp(r, "inf", 3) == 0 || memcmp(r, "nan", 3) == 0)) {
		struct toml_value *v = new_value(P, TOML_FLOAT, start);
		if (!v)
			return -1;
		if (r[0] == 'i')
			v->u.f = neg ? -INFINITY : INFINITY;
		else
			v->u.f = neg ? -NAN : NAN;
		P->p = end;
		*out = v;
		return 0;
	}
	if (rlen >= 2 && r[0] == '0' && (r[1] == 'x' || r[1] == 'o' ||
					   r[1] == 'b')) {
		int base = r[1] == 'x' ? 16 : r[1] == 'o' ? 8 : 2;
		if (sign)
			return fail(P, start, "a sign is not allowed on a "
				    "hexadecimal, octal or binary integer");
		if ((why = check_digits(r + 2, rlen - 2, base)))
			return fail(P, start, "invalid integer: %s", why);
		uint64_t u = 0;
		for (size_t i = 2; i < rlen; i++) {
			if (r[i] == '_')
				continue;
			uint64_t d = (uint64_t)digit_in_base(r[i], base);
			if (u > ((uint64_t)INT64_MAX - d) / (uint64_t)base)
				return fail(P, start, "integer does not fit in "
					    "64 bits");
			u = u * (uint64_t)base + d;
		}
		struct toml_value *v = new_value(P, TOML_INTEGER, start);
		if (!v)
			return -1;
		v->u.i = (int64_t)u;
		v->int_base = base;
		P->p = end;
		*out = v;
		return 0;
	}

	/* Decimal: integer part, then an optional fraction and exponent. */
	size_t ip = 0;
	while (ip < rlen && r[ip] != '.' && r[ip] != 'e' && r[ip] != 'E')
		ip++;
	if ((why = check_digits(r, ip, 10)))
		return fail(P, start, "invalid number '%.*s': %s%s",
			    (int)(len > 40 ? 40 : len), t, why,
			    strcmp(why, "invalid digit") ? "" :
			    " (strings need quotes)");
	if (ip > 1 && r[0] == '0')
		return fail(P, start, "leading zeros are not allowed");
	if (ip == rlen) {
		uint64_t lim = neg ? (uint64_t)INT64_MAX + 1 : INT64_MAX;
		uint64_t u = 0;
		for (size_t i = 0; i < ip; i++) {
			if (r[i] == '_')
				continue;
			uint64_t d = (uint64_t)(r[i] - '0');
			if (u > (lim - d) / 10)
				return fail(P, start, "integer does not fit in "
					    "64 bits");
			u = u * 10 + d;
		}
		struct toml_value *v = new_value(P, TOML_INTEGER, start);
		if (!v)
			return -1;
		v->u.i = neg ? (int64_t)(0 - u) : (int64_t)u;
		v->int_base = 10;
		P->p = end;
		*out = v;
		return 0;
	}
	size_t q = ip;
	if (r[q] == '.') {
		size_t f = ++q;
		while (q < rlen && r[q] != 'e' && r[q] != 'E')
			q++;
		if ((why = check_digits(r + f, q - f, 10)))
			return fail(P, start, "invalid float fraction: %s", why);
	}
	if (q < rlen) {         /* at 'e' or 'E' */
		size_t e = ++q;
		if (e < rlen && (r[e] == '+' || r[e] == '-'))
			e++;
		if ((why = check_digits(r + e, rlen - e, 10)))
			return fail(P, start, "invalid float exponent: %s", why);
	}
	/* strtod on a copy without underscores; it is the exact grammar
	 * checked above, so strtod consumes all of it. */
	char stack[64], *copy = len < sizeof(stack) ? stack : malloc(len + 1);
	if (!copy)
		return oom(P);
	size_t k = 0;
	for (size_t i = 0; i < len; i++)
		if (t[i] != '_')
			copy[k++] = t[i];
	copy[k] = 0;
	double d = strtod(copy, NULL);
	if (copy != stack)
		free(copy);
	if (isinf(d))
		return fail(P, start, "float is out of range");
	struct toml_value *v = new_value(P, TOML_FLOAT, start);
	if (!v)
		return -1;
	v->u.f = d;
	P->p = end;
	*out = v;
	return 0;
}

/* Exactly k digits at offset off from P->p; -1 if not. */
static int fixed_digits(struct parser *P, size_t off, int k)
{
	int v = 0;
	for (int i = 0; i < k; i++) {
		int c = peek(P, off + i);
		if (!is_digit(c))
			return -1;
		v = v * 10 + (c - '0');
	}
	return v;
}

static int days_in_month(int y, int m)
{
	static const int dim[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30,
				   31 };
	if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		return 29;
	return dim[m - 1];
}

/* HH:MM:SS[.frac] at P->p. */
static int parse_time(struct parser *P, struct toml_datetime *dt)
{
	size_t at = P->p;
	int h = fixed_digits(P, 0, 2), m = fixed_digits(P, 3, 2);
	int s = fixed_digits(P, 6, 2);

	if (h < 0 || peek(P, 2) != ':' || m < 0)
		return fail(P, at, "invalid time (expected HH:MM:SS)");
	if (peek(P, 5) != ':' || s < 0)
		return fail(P, at, "invalid time: seconds are required "
			    "(HH:MM:SS)");
	if (h > 23 || m > 59 || s > 60)
		return fail(P, at, "time %02d:%02d:%02d is out of range",
			    h, m, s);
	P->p += 8;
	dt->hour = h;
	dt->minute = m;
	dt->second = s;
	dt->has_time = true;
	if (peek(P, 0) == '.') {
		P->p++;
		if (!is_digit(peek(P, 0)))
			return fail(P, P->p, "expected digits after '.' in a "
				    "time");
		uint32_t ns = 0;
		int nd = 0;
		while (is_digit(peek(P, 0))) {
			if (nd < 9) {
				ns = ns * 10 + (uint32_t)(peek(P, 0) - '0');
				nd++;
			}
			P->p++;
		}
		dt->frac_digits = nd;
		for (int i = nd; i < 9; i++)
			ns *= 10;
		dt->nanosecond = ns;
	}
	return 0;
}

static int parse_datetime(struct parser *P, struct toml_value **out)
{
	struct toml_datetime dt = { 0 };
	size_t start = P->p;
	char tmp[48];

	if (peek(P, 2) == ':') {
		if (parse_time(P, &dt))
			return -1;
	} else {
		int y = fixed_digits(P, 0, 4), mo = fixed_digits(P, 5, 2);
		int d = fixed_digits(P, 8, 2);
		if (y < 0 || peek(P, 4) != '-' || mo < 0 || peek(P, 7) != '-' ||
		    d < 0)
			return fail(P, start, "invalid date (expected "
				    "YYYY-MM-DD)");
		if (mo < 1 || mo > 12)
			return fail(P, start, "month %02d is out of range", mo);
		if (d < 1 || d > days_in_month(y, mo))
			return fail(P, start, "day %02d is out of range for "
				    "%04d-%02d", d, y, mo);
		dt.year = y;
		dt.month = mo;
		dt.day = d;
		dt.has_date = true;
		P->p += 10;
		int c = peek(P, 0);
		if (((c == 'T' || c == 't') && is_digit(peek(P, 1))) ||
		    (c == ' ' && is_digit(peek(P, 1)) && is_digit(peek(P, 2)) &&
		     peek(P, 3) == ':')) {
			P->p++;
			if (parse_time(P, &dt))
				return -1;
			c = peek(P, 0);
			if (c == 'Z' || c == 'z') {
				dt.has_offset = dt.offset_z = true;
				P->p++;
			} else if (c == '+' || c == '-') {
				int oh = fixed_digits(P, 1, 2);
				int om = fixed_digits(P, 4, 2);
				if (oh < 0 || peek(P, 3) != ':' || om < 0)
					return fail(P, P->p, "invalid time "
						    "offset (expected "
						    "+HH:MM or -HH:MM)");
				if (oh > 23 || om > 59)
					return fail(P, P->p, "time offset is "
						    "out of range");
				dt.has_offset = true;
				dt.offset_minutes = (oh * 60 + om) *
						    (c == '-' ? -1 : 1);
				P->p += 6;
			}
		}
	}
	if (!is_delim(peek(P, 0)))
		return fail(P, P->p, "unexpected %s after a date/time",
			    show(P, P->p, tmp, sizeof(tmp)));
	enum toml_type t = !dt.has_date ? TOML_LOCAL_TIME :
			   !dt.has_time ? TOML_LOCAL_DATE :
			   dt.has_offset ? TOML_OFFSET_DATETIME :
			   TOML_LOCAL_DATETIME;
	struct toml_value *v = new_value(P, t, start);
	if (!v)
		return -1;
	v->u.dt = dt;
	*out = v;
	return 0;
}

/* ---- values ----------------------------------------------------------- */

static int parse_value(struct parser *P, int depth, struct toml_value **out);
static int parse_keyval(struct parser *P, struct toml_value *t, int depth);

/* Seal an inline table and the tables dotted keys made inside it. */
static void seal(struct toml_value *t)
{
	t->flags |= TF_INLINE;
	for (size_t i = 0; i < t->u.tab.len; i++) {
		struct toml_value *v = t->u.tab.items[i].value;
		if (v->type == TOML_TABLE && !(v->flags & TF_INLINE))
			seal(v);
	}
}

static int parse_inline_table(struct parser *P, int depth,
			      struct toml_value **out)
{
	char tmp[48];
	struct toml_value *t = new_value(P, TOML_TABLE, P->p);
	if (!t)
		return -1;
	P->p++;
	skip_ws(P);
	if (peek(P, 0) == '}') {
		P->p++;
		goto done;
	}
	for (;;) {
		int c = peek(P, 0);
		if (c == '\n' || c == '\r') {
			fail(P, P->p, "newlines are not allowed inside an "
			     "inline table");
			goto bad;
		}
		if (parse_keyval(P, t, depth))
			goto bad;
		skip_ws(P);
		c = peek(P, 0);
		if (c == ',') {
			P->p++;
			skip_ws(P);
			if (peek(P, 0) == '}') {
				fail(P, P->p, "trailing comma is not allowed "
				     "in an inline table");
				goto bad;
			}
			continue;
		}
		if (c == '}') {
			P->p++;
			break;
		}
		if (c == '\n' || c == '\r' || c == '#')
			fail(P, P->p, "an inline table must be closed with '}' "
			     "on the same line");
		else
			fail(P, P->p, "expected ',' or '}' in inline table, "
			     "found %s", show(P, P->p, tmp, sizeof(tmp)));
		goto bad;
	}
done:
	seal(t);
	*out = t;
	return 0;
bad:
	toml__free(t);
	return -1;
}

static int parse_array(struct parser *P, int depth, struct toml_value **out)
{
	char tmp[48];
	size_t start = P->p;
	struct toml_value *a = new_value(P, TOML_ARRAY, start);
	if (!a)
		return -1;
	a->flags = TF_STATIC;
	P->p++;
	for (;;) {
		if (skip_ws_nl(P))
			goto bad;
		if (peek(P, 0) == ']') {
			P->p++;
			break;
		}
		struct toml_value *v;
		if (parse_value(P, depth + 1, &v) || arr_push(P, a, v))
			goto bad;
		if (skip_ws_nl(P))
			goto bad;
		int c = peek(P, 0);
		if (c == ',') {
			P->p++;
			continue;
		}
		if (c == ']') {
			P->p++;
			break;
		}
		if (c < 0)
			fail(P, start, "unterminated array");
		else
			fail(P, P->p, "expected ',' or ']' in array, found %s",
			     show(P, P->p, tmp, sizeof(tmp)));
		goto bad;
	}
	*out = a;
	return 0;
bad:
	toml__free(a);
	return -1;
}

static int parse_value(struct parser *P, int depth, struct toml_value **out)
{
	char tmp[48];
	size_t start = P->p;
	int c = peek(P, 0);

	*out = NULL;
	if (depth > TOML_MAX_DEPTH)
		return fail(P, start, "nesting is deeper than %d levels",
			    TOML_MAX_DEPTH);
	switch (c) {
	case '"':
	case '\'': {
		struct buf b = { 0 };
		if (parse_string(P, &b, 1)) {
			free(b.p);
			return -1;
		}
		struct toml_value *v = new_value(P, TOML_STRING, start);
		if (!v) {
			free(b.p);
			return -1;
		}
		v->u.s.len = b.len;
		v->u.s.ptr = buf_take(P, &b);
		*out = v;
		return 0;
	}
	case '[':
		return parse_array(P, depth, out);
	case '{':
		return parse_inline_table(P, depth, out);
	case 't':
	case 'f': {
		const char *w = c == 't' ? "true" : "false";
		size_t wl = strlen(w);
		if (P->n - P->p < wl || memcmp(P->s + P->p, w, wl) != 0 ||
		    !is_delim(peek(P, wl)))
			break;
		struct toml_value *v = new_value(P, TOML_BOOLEAN, start);
		if (!v)
			return -1;
		v->u.b = c == 't';
		P->p += wl;
		*out = v;
		return 0;
	}
	default:
		break;
	}
	if (is_digit(c) || c == '+' || c == '-' || c == 'i' || c == 'n') {
		if (is_digit(c) && ((fixed_digits(P, 0, 4) >= 0 &&
				     peek(P, 4) == '-') ||
				    (fixed_digits(P, 0, 2) >= 0 &&
				     peek(P, 2) == ':')))
			return parse_datetime(P, out);
		if (parse_number(P, out))
			return -1;
		if (!is_delim(peek(P, 0))) {
			toml__free(*out);
			*out = NULL;
			return fail(P, P->p, "unexpected %s after a number",
				    show(P, P->p, tmp, sizeof(tmp)));
		}
		return 0;
	}
	if (c < 0 || c == '\n' || c == '\r' || c == '#')
		return fail(P, start, "expected a value");
	if (is_bare(c))
		return fail(P, start, "invalid value (strings need quotes)");
	return fail(P, start, "expected a value, found %s",
		    show(P, start, tmp, sizeof(tmp)));
}

/* "a string", "an integer", ... for messages. */
static const char *a_type(const struct toml_value *v)
{
	switch (v->type) {
	case TOML_STRING: return "a string";
	case TOML_INTEGER: return "an integer";
	case TOML_FLOAT: return "a float";
	case TOML_BOOLEAN: return "a boolean";
	case TOML_OFFSET_DATETIME: return "an offset date-time";
	case TOML_LOCAL_DATETIME: return "a local date-time";
	case TOML_LOCAL_DATE: return "a local date";
	case TOML_LOCAL_TIME: return "a local time";
	case TOML_ARRAY:
		return v->flags & TF_AOT ? "an array of tables" : "an array";
	case TOML_TABLE: return "a table";
	}
	return "a value";
}

/* Human-readable dotted name of parts[0..n) for messages. */
static const char *dotted_name(const struct keypart *parts, int n, char *buf,
			       size_t len)
{
	size_t k = 0;
	buf[0] = 0;
	for (int i = 0; i < n && k + 1 < len; i++) {
		int w = snprintf(buf + k, len - k, "%s%s", i ? "." : "",
				 parts[i].s);
		if (w < 0)
			break;
		k += (size_t)w;
	}
	return buf;
}

/* key = value into table t (whose depth is `depth`). */
static int parse_keyval(struct parser *P, struct toml_value *t, int depth)
{
	struct keypart *parts;
	char name[256], tmp[48];
	int n, i;

	if (parse_key(P, &parts, &n))
		return -1;
	skip_ws(P);
	if (peek(P, 0) != '=') {
		fail(P, P->p, "expected '=' after key '%s', found %s",
		     dotted_name(parts, n, name, sizeof(name)),
		     show(P, P->p, tmp, sizeof(tmp)));
		goto bad;
	}
	P->p++;
	skip_ws(P);
	/* Walk (and make) the tables of a dotted key. */
	for (i = 0; i < n - 1; i++) {
		struct toml_keyval *kv = tab_find(t, parts[i].s, parts[i].len);
		if (!kv) {
			struct toml_value *nt = new_value_lc(P, TOML_TABLE,
							     parts[i].line,
							     parts[i].col);
			if (!nt || tab_insert(P, t, &parts[i], nt))
				goto bad;
			nt->flags = TF_DOTTED;
			t = nt;
			continue;
		}
		struct toml_value *v = kv->value;
		if (v->type != TOML_TABLE) {
			fail(P, parts[i].pos, "cannot add keys to '%s': it is "
			     "already %s (line %d)",
			     dotted_name(parts, i + 1, name, sizeof(name)),
			     a_type(v), kv->line);
			goto bad;
		}
		if (v->flags & TF_INLINE) {
			fail(P, parts[i].pos, "cannot add keys to inline table "
			     "'%s' (line %d)",
			     dotted_name(parts, i + 1, name, sizeof(name)),
			     kv->line);
			goto bad;
		}
		if (!(v->flags & TF_DOTTED)) {
			fail(P, parts[i].pos, "cannot add keys to table '%s' "
			     "with a dotted key: it is defined by a [table] "
			     "header (line %d)",
			     dotted_name(parts, i + 1, name, sizeof(name)),
			     v->line);
			goto bad;
		}
		t = v;
	}
	if (depth + n > TOML_MAX_DEPTH) {
		fail(P, parts[0].pos, "nesting is deeper than %d levels",
		     TOML_MAX_DEPTH);
		goto bad;
	}
	struct toml_keyval *dup = tab_find(t, parts[n - 1].s,
					   parts[n - 1].len);
	if (dup) {
		fail(P, parts[n - 1].pos, "duplicate key '%s' (first defined "
		     "at line %d)", dotted_name(parts, n, name, sizeof(name)),
		     dup->line);
		goto bad;
	}
	struct toml_value *v;
	if (parse_value(P, depth + n, &v))
		goto bad;
	if (tab_insert(P, t, &parts[n - 1], v))
		goto bad;
	free_parts(parts, n);   /* parts naming existing tables */
	return 0;
bad:
	free_parts(parts, n);
	return -1;
}

/* [a.b.c] or [[a.b.c]]; P->p is at the first '['. */
static int parse_header(struct parser *P)
{
	struct keypart *parts;
	char name[256], tmp[48];
	size_t start = P->p;
	int aot = peek(P, 1) == '[';
	int n, i, depth = 0, line, col;
	struct toml_value *t = P->root;

	loc(P, start, &line, &col);     /* before the key moves the cache */

	P->p += aot ? 2 : 1;
	skip_ws(P);
	if (parse_key(P, &parts, &n))
		return -1;
	skip_ws(P);
	if (peek(P, 0) != ']' || (aot && peek(P, 1) != ']')) {
		fail(P, P->p, "expected '%s' to close the table header, found "
		     "%s", aot ? "]]" : "]", show(P, P->p, tmp, sizeof(tmp)));
		goto bad;
	}
	P->p += aot ? 2 : 1;
	dotted_name(parts, n, name, sizeof(name));
	for (i = 0; i < n - 1; i++) {
		struct toml_keyval *kv = tab_find(t, parts[i].s, parts[i].len);
		if (!kv) {
			struct toml_value *nt = new_value_lc(P, TOML_TABLE,
							     parts[i].line,
							     parts[i].col);
			if (!nt || tab_insert(P, t, &parts[i], nt))
				goto bad;
			t = nt;
			depth++;
			continue;
		}
		struct toml_value *v = kv->value;
		if (v->type == TOML_ARRAY && (v->flags & TF_AOT)) {
			t = v->u.arr.items[v->u.arr.len - 1];
			depth += 2;
			continue;
		}
		if (v->type != TOML_TABLE) {
			fail(P, parts[i].pos, "'%s' is already %s (line %d), "
			     "not a table",
			     dotted_name(parts, i + 1, tmp, sizeof(tmp)),
			     a_type(v), kv->line);
			goto bad;
		}
		if (v->flags & TF_INLINE) {
			fail(P, parts[i].pos, "cannot add to inline table "
			     "'%s' (line %d)",
			     dotted_name(parts, i + 1, tmp, sizeof(tmp)),
			     kv->line);
			goto bad;
		}
		t = v;
		depth++;
	}
	struct keypart *last = &parts[n - 1];
	struct toml_keyval *kv = tab_find(t, last->s, last->len);
	if (aot) {
		struct toml_value *a;
		if (!kv) {
			a = new_value_lc(P, TOML_ARRAY, line, col);
			if (!a || tab_insert(P, t, last, a))
				goto bad;
			a->flags = TF_AOT;
		} else {
			a = kv->value;
			if (a->type != TOML_ARRAY || !(a->flags & TF_AOT)) {
				fail(P, start, "cannot define [[%s]]: '%s' is "
				     "already %s (line %d)", name, name,
				     a_type(a), kv->line);
				goto bad;
			}
		}
		struct toml_value *nt = new_value_lc(P, TOML_TABLE, line, col);
		if (!nt || arr_push(P, a, nt))
			goto bad;
		nt->flags = TF_DEFINED;
		P->cur = nt;
		P->cur_depth = depth + 2;
	} else {
		struct toml_value *v;
		if (!kv) {
			v = new_value_lc(P, TOML_TABLE, line, col);
			if (!v || tab_insert(P, t, last, v))
				goto bad;
		} else {
			v = kv->value;
			if (v->type != TOML_TABLE) {
				fail(P, start, "cannot define table [%s]: it is "
				     "already %s (line %d)", name,
				     a_type(v), kv->line);
				goto bad;
			}
			if (v->flags & (TF_DEFINED | TF_DOTTED | TF_INLINE)) {
				fail(P, start, "table [%s] is defined twice "
				     "(first at line %d%s)", name, v->line,
				     v->flags & TF_INLINE ?
				     ", as an inline table" :
				     v->flags & TF_DOTTED ?
				     ", by a dotted key" : "");
				goto bad;
			}
			/* An implicit table made real: point at its header. */
			v->line = line;
			v->col = col;
		}
		v->flags |= TF_DEFINED;
		P->cur = v;
		P->cur_depth = depth + 1;
	}
	if (P->cur_depth > TOML_MAX_DEPTH) {
		fail(P, start, "nesting is deeper than %d levels",
		     TOML_MAX_DEPTH);
		goto bad;
	}
	free_parts(parts, n);
	return 0;
bad:
	free_parts(parts, n);
	return -1;
}

static int parse_document(struct parser *P)
{
	if (check_utf8(P))
		return -1;
	if (P->n >= 3 && memcmp(P->s, "\xEF\xBB\xBF", 3) == 0)
		P->p = 3;       /* a byte-order mark is allowed at the start */
	for (;;) {
		skip_ws(P);
		int c = peek(P, 0);
		if (c < 0)
			return 0;
		if (c == '#' || c == '\n' || c == '\r') {
			if (end_of_line(P, "comment"))
				return -1;
			continue;
		}
		if (c == '[') {
			if (parse_header(P) ||
			    end_of_line(P, "table header"))
				return -1;
			continue;
		}
		if (parse_keyval(P, P->cur, P->cur_depth) ||
		    end_of_line(P, "value"))
			return -1;
	}
}

int toml__parse(const char *text, size_t len, const char *filename,
		struct toml_value **root, char *err, size_t errlen)
{
	struct parser P = {
		.s = text, .n = len, .file = filename ? filename : "<input>",
		.err = err, .errlen = errlen, .cline = 1, .ccol = 1,
	};

	*root = NULL;
	if (err && errlen)
		err[0] = 0;
	if (!text && len)
		return fail(&P, 0, "no input"), P.rc;
	P.root = new_value(&P, TOML_TABLE, 0);
	if (!P.root)
		return P.rc;
	P.root->flags = TF_DEFINED;
	P.cur = P.root;
	if (parse_document(&P)) {
		toml__free(P.root);
		return P.rc ? P.rc : -EINVAL;
	}
	*root = P.root;
	return 0;
}

/* ---- accessors -------------------------------------------------------- */

const char *toml__type_name(enum toml_type t)
{
	switch (t) {
	case TOML_STRING: return "string";
	case TOML_INTEGER: return "integer";
	case TOML_FLOAT: return "float";
	case TOML_BOOLEAN: return "boolean";
	case TOML_OFFSET_DATETIME: return "offset date-time";
	case TOML_LOCAL_DATETIME: return "local date-time";
	case TOML_LOCAL_DATE: return "local date";
	case TOML_LOCAL_TIME: return "local time";
	case TOML_ARRAY: return "array";
	case TOML_TABLE: return "table";
	}
	return "unknown";
}

const struct toml_keyval *toml__get_kv(const struct toml_value *t,
				       const char *key)
{
	if (!key)
		return NULL;
	return tab_find(t, key, strlen(key));
}

const struct toml_value *toml__get(const struct toml_value *t, const char *key)
{
	const struct toml_keyval *kv = toml__get_kv(t, key);
	return kv ? kv->value : NULL;
}

size_t toml__table_len(const struct toml_value *t)
{
	return t && t->type == TOML_TABLE ? t->u.tab.len : 0;
}

const struct toml_keyval *toml__table_at(const struct toml_value *t, size_t i)
{
	if (!t || t->type != TOML_TABLE || i >= t->u.tab.len)
		return NULL;
	return &t->u.tab.items[i];
}

size_t toml__array_len(const struct toml_value *a)
{
	return a && a->type == TOML_ARRAY ? a->u.arr.len : 0;
}

const struct toml_value *toml__array_at(const struct toml_value *a, size_t i)
{
	if (!a || a->type != TOML_ARRAY || i >= a->u.arr.len)
		return NULL;
	return a->u.arr.items[i];
}

const char *toml__string(const struct toml_value *v)
{
	return v && v->type == TOML_STRING ? v->u.s.ptr : NULL;
}

bool toml__int(const struct toml_value *v, int64_t *out)
{
	if (!v || v->type != TOML_INTEGER)
		return false;
	*out = v->u.i;
	return true;
}

bool toml__bool(const struct toml_value *v, bool *out)
{
	if (!v || v->type != TOML_BOOLEAN)
		return false;
	*out = v->u.b;
	return true;
}

bool toml__double(const struct toml_value *v, double *out)
{
	if (v && v->type == TOML_FLOAT) {
		*out = v->u.f;
		return true;
	}
	if (v && v->type == TOML_INTEGER) {
		*out = (double)v->u.i;
		return true;
	}
	return false;
}

const char *toml__datetime_format(const struct toml_value *v, char *buf,
				  size_t len)
{
	if (!buf || !len)
		return buf;
	buf[0] = 0;
	if (!v || v->type < TOML_OFFSET_DATETIME || v->type > TOML_LOCAL_TIME)
		return buf;
	const struct toml_datetime *dt = &v->u.dt;
	size_t k = 0;
	int w;
#define PUT(...) do { \
		w = snprintf(buf + k, len - k, __VA_ARGS__); \
		if (w < 0 || (size_t)w >= len - k) { \
			buf[0] = 0;     /* no misleading half value */ \
			return buf; \
		} \
		k += (size_t)w; \
	} while (0)
	if (dt->has_date)
		PUT("%04d-%02d-%02d", dt->year, dt->month, dt->day);
	if (dt->has_time) {
		PUT("%s%02d:%02d:%02d", dt->has_date ? "T" : "", dt->hour,
		    dt->minute, dt->second);
		if (dt->frac_digits) {
			uint32_t ns = dt->nanosecond;
			for (int i = dt->frac_digits; i < 9; i++)
				ns /= 10;
			PUT(".%0*" PRIu32, dt->frac_digits, ns);
		}
	}
	if (dt->has_offset) {
		if (dt->offset_z) {
			PUT("Z");
		} else {
			int o = dt->offset_minutes;
			PUT("%c%02d:%02d", o < 0 ? '-' : '+', abs(o) / 60,
			    abs(o) % 60);
		}
	}
#undef PUT
	return buf;
}
