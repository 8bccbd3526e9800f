/*
 * recipe.c - recipe.toml into a struct recipe, with full schema checks.
 *
 * The schema is data: one `struct field` row per key, grouped into one
 * `struct schema` per table (see the tables near the end of this file).
 * A single walker (load_table) applies any schema to any TOML table, so
 * each rule -- unknown keys (with a "did you mean"), wrong types, missing
 * required keys, value ranges -- is written once.  Checks that relate
 * several keys (base type vs. its options, content vs. source, duplicate
 * names) live in a per-schema `post` hook.
 *
 * Every error names the spot: "recipe.toml:LINE:COL: where: what", with
 * the position of the offending key or value (or of the table, for a
 * missing key).  docs/recipes.md documents the same schema for users.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "builder/recipe.h"
#include "builder/toml.h"

/* Larger recipe files are refused rather than read: a recipe is a page
 * of settings, and inline file contents should stay small. */
#define RECIPE_MAX_BYTES (4u << 20)

static __thread char recipe_errbuf[1024];

const char *recipe__error(void)
{
	return recipe_errbuf;
}

struct ctx {
	const char *file;
	const char *dir;        /* absolute directory of the recipe */
	char path[256];         /* "vm.ports[2]" - where we are, for messages */
};

__attribute__((format(printf, 3, 4)))
static int rfail(struct ctx *c, const struct toml_value *at, const char *fmt,
		 ...)
{
	int k = snprintf(recipe_errbuf, sizeof(recipe_errbuf), "%s:%d:%d: ",
			 c->file, at ? at->line : 1, at ? at->col : 1);
	if (k >= 0 && (size_t)k < sizeof(recipe_errbuf)) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(recipe_errbuf + k, sizeof(recipe_errbuf) - k, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* Same, pointing at a key (not at its value). */
__attribute__((format(printf, 3, 4)))
static int rfail_key(struct ctx *c, const struct toml_keyval *kv,
		     const char *fmt, ...)
{
	int k = snprintf(recipe_errbuf, sizeof(recipe_errbuf), "%s:%d:%d: ",
			 c->file, kv->line, kv->col);
	if (k >= 0 && (size_t)k < sizeof(recipe_errbuf)) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(recipe_errbuf + k, sizeof(recipe_errbuf) - k, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

static int nomem(void)
{
	snprintf(recipe_errbuf, sizeof(recipe_errbuf), "out of memory");
	return -ENOMEM;
}

/* ---- the schema language ---------------------------------------------- */

enum kind {
	K_STRING,       /* char *                                          */
	K_STRINGS,      /* char ** + size_t count (off_n)                  */
	K_BOOL,         /* int                                             */
	K_INT,          /* int64_t in [min, max]                           */
	K_UINT,         /* unsigned in [min, max]                          */
	K_U16,          /* uint16_t in [min, max]                          */
	K_SIZE,         /* uint64_t bytes: "512M" or an integer, [min,max] */
	K_MODE,         /* mode_t + has_mode int (off_n): 0o644 or "0644"  */
	K_ENUM,         /* int: index into choices                         */
	K_TABLE,        /* sub-schema applied to (char *)obj + off         */
	K_TABLES,       /* array of tables: element array + count (off_n)  */
};

struct schema;

/* Extra validation of a string value; returns NULL or what is wrong. */
typedef const char *(*str_check)(const char *s, size_t len);

struct field {
	const char *key;
	enum kind kind;
	size_t off;
	size_t off_n;
	bool required;
	int64_t min, max;
	const char *const *choices;     /* K_ENUM, or allowed strings for
	                                   K_STRING (NULL-terminated) */
	str_check check;
	const struct schema *sub;       /* K_TABLE, K_TABLES */
};

struct schema {
	const char *name;       /* "[vm]" etc., for messages */
	size_t elem_size;       /* K_TABLES element size */
	const struct field *fields;
	/* Cross-key checks once every field is loaded; t is the TOML table. */
	int (*post)(struct ctx *c, const struct toml_value *t, void *obj);
	void (*init)(void *obj);        /* defaults before loading */
};

/* ---- helpers ----------------------------------------------------------- */

static const char *kind_name(const struct field *f)
{
	switch (f->kind) {
	case K_STRING: return "a string";
	case K_STRINGS: return "an array of strings";
	case K_BOOL: return "true or false";
	case K_INT:
	case K_UINT:
	case K_U16: return "an integer";
	case K_SIZE: return "a size (\"512M\", \"2G\") or a byte count";
	case K_MODE: return "an octal mode (0o644 or \"0644\")";
	case K_ENUM: return "a string";
	case K_TABLE: return "a table";
	case K_TABLES: return "an array of tables ([[...]])";
	}
	return "?";
}

static const char *a_type(const struct toml_value *v)
{
	switch (v->type) {
	case TOML_STRING: return "a string";
	case TOML_INTEGER: return "an integer";
	case TOML_FLOAT: return "a float";
	case TOML_BOOLEAN: return "a boolean";
	case TOML_ARRAY: return "an array";
	case TOML_TABLE: return "a table";
	default: return "a date/time";
	}
}

/* Edit distance (Levenshtein), small strings only. */
static size_t distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t row[64];

	if (la >= 63 || lb >= 63)
		return SIZE_MAX;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t prev = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t cur = row[j];
			size_t sub = prev + (a[i - 1] != b[j - 1]);
			size_t best = row[j] + 1 < row[j - 1] + 1 ?
				      row[j] + 1 : row[j - 1] + 1;
			row[j] = sub < best ? sub : best;
			prev = cur;
		}
	}
	return row[lb];
}

/* The closest of `names` to `s` if it is close enough to be a typo. */
static const char *suggest(const char *s, const char *const *names,
			   size_t stride)
{
	const char *best = NULL;
	size_t bestd = SIZE_MAX;
	for (const char *const *n = names; *n;
	     n = (const char *const *)((const char *)n + stride)) {
		size_t d = distance(s, *n);
		if (d < bestd) {
			bestd = d;
			best = *n;
		}
	}
	size_t len = strlen(s);
	size_t limit = len <= 3 ? 1 : len <= 6 ? 2 : 3;
	return bestd <= limit ? best : NULL;
}

static char *dupn(const char *s, size_t len)
{
	char *r = malloc(len + 1);
	if (r) {
		memcpy(r, s, len);
		r[len] = 0;
	}
	return r;
}

/*
 * Parse a size: decimal number (fraction allowed) and an optional binary
 * unit K, M, G, T (also KiB/KB/k...).  Returns NULL or what is wrong.
 */
static const char *parse_size(const char *s, uint64_t *out)
{
	const char *p = s;
	uint64_t whole = 0;
	double frac = 0, scale = 0.1;

	if (*p < '0' || *p > '9')
		return "must start with a digit";
	for (; *p >= '0' && *p <= '9'; p++) {
		if (whole > (UINT64_MAX - 9) / 10)
			return "is too large";
		whole = whole * 10 + (uint64_t)(*p - '0');
	}
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return "needs digits after '.'";
		for (; *p >= '0' && *p <= '9'; p++, scale /= 10)
			frac += (*p - '0') * scale;
	}
	while (*p == ' ')
		p++;
	uint64_t mult = 1;
	switch (*p) {
	case 0: break;
	case 'k': case 'K': mult = 1ull << 10; p++; break;
	case 'm': case 'M': mult = 1ull << 20; p++; break;
	case 'g': case 'G': mult = 1ull << 30; p++; break;
	case 't': case 'T': mult = 1ull << 40; p++; break;
	case 'b': case 'B': break;
	default:
		return "has an unknown unit (use K, M, G or T, e.g. \"512M\")";
	}
	if (mult > 1 && (*p == 'i' || *p == 'I'))
		p++;
	if (*p == 'b' || *p == 'B')
		p++;
	if (*p)
		return "has an unknown unit (use K, M, G or T, e.g. \"512M\")";
	if (whole > UINT64_MAX / mult)
		return "is too large";
	double f = frac * (double)mult;
	uint64_t bytes = whole * mult;
	if (f >= 1.0 * (double)(UINT64_MAX - bytes))
		return "is too large";
	*out = bytes + (uint64_t)f;
	if (frac > 0 && (uint64_t)f != f)
		return "is not a whole number of bytes";
	return NULL;
}

static const char *human(uint64_t n, char *buf, size_t len)
{
	static const char units[] = "KMGT";
	int u = -1;
	while (n >= 1024 && n % 1024 == 0 && u < 3) {
		n /= 1024;
		u++;
	}
	if (u < 0)
		snprintf(buf, len, "%llu bytes", (unsigned long long)n);
	else
		snprintf(buf, len, "%llu%c", (unsigned long long)n, units[u]);
	return buf;
}

/* ---- the walker -------------------------------------------------------- */

static int load_table(struct ctx *c, const struct schema *s,
		      const struct toml_value *t, void *obj);

/* Append ".key" or "[i]" to the context path; return the old length
 * (the caller cuts the path back to it). */
static size_t path_key(struct ctx *c, const char *key)
{
	size_t old = strlen(c->path);
	snprintf(c->path + old, sizeof(c->path) - old, "%s%s", old ? "." : "",
		 key);
	return old;
}

static size_t path_index(struct ctx *c, size_t i)
{
	size_t old = strlen(c->path);
	snprintf(c->path + old, sizeof(c->path) - old, "[%zu]", i);
	return old;
}

static int load_string_value(struct ctx *c, const struct field *f,
			     const struct toml_value *v, char **out,
			     size_t *outlen)
{
	if (v->type != TOML_STRING)
		return rfail(c, v, "%s: expected a string, got %s", c->path,
			     a_type(v));
	/* Empty is only meaningful for free text (content, commands). */
	if (v->u.s.len == 0 && (f->required || f->check || f->choices))
		return rfail(c, v, "%s: must not be empty", c->path);
	/* Only inline file content may carry NUL bytes (it has a length);
	 * everything else becomes a C string. */
	if (!outlen && memchr(v->u.s.ptr, 0, v->u.s.len))
		return rfail(c, v, "%s: must not contain a NUL character",
			     c->path);
	if (f->choices && f->kind == K_STRING) {
		const char *const *ch;
		for (ch = f->choices; *ch; ch++)
			if (strcmp(*ch, v->u.s.ptr) == 0)
				break;
		if (!*ch) {
			char list[200] = "";
			for (ch = f->choices; *ch; ch++)
				snprintf(list + strlen(list),
					 sizeof(list) - strlen(list),
					 "%s\"%s\"", ch == f->choices ? "" :
					 ", ", *ch);
			return rfail(c, v, "%s: \"%s\" is not one of %s",
				     c->path, v->u.s.ptr, list);
		}
	}
	const char *why = f->check ? f->check(v->u.s.ptr, v->u.s.len) : NULL;
	if (why)
		return rfail(c, v, "%s: \"%s\" %s", c->path, v->u.s.ptr, why);
	*out = dupn(v->u.s.ptr, v->u.s.len);
	if (!*out)
		return nomem();
	if (outlen)
		*outlen = v->u.s.len;
	return 0;
}

static int load_int(struct ctx *c, const struct field *f,
		    const struct toml_value *v, int64_t *out)
{
	if (v->type != TOML_INTEGER)
		return rfail(c, v, "%s: expected an integer, got %s", c->path,
			     a_type(v));
	if (v->u.i < f->min || v->u.i > f->max)
		return rfail(c, v, "%s: %lld is out of range (%lld to %lld)",
			     c->path, (long long)v->u.i, (long long)f->min,
			     (long long)f->max);
	*out = v->u.i;
	return 0;
}

static int load_field(struct ctx *c, const struct field *f,
		      const struct toml_value *v, void *obj)
{
	char *base = obj;
	int64_t i;
	int r;

	switch (f->kind) {
	case K_STRING: {
		/* The file schema's "content" keeps its exact length in
		 * off_n (NUL bytes allowed); other strings do not. */
		size_t *lenp = f->off_n ? (size_t *)(base + f->off_n) : NULL;
		return load_string_value(c, f, v, (char **)(base + f->off),
					 lenp);
	}
	case K_STRINGS: {
		if (v->type != TOML_ARRAY)
			return rfail(c, v, "%s: expected an array of strings, "
				     "got %s", c->path, a_type(v));
		if (*(char ***)(base + f->off))
			return rfail(c, v, "%s: given twice (packages go "
				     "either at the top or in [base], not "
				     "both)", c->path);
		size_t n = toml__array_len(v);
		char **arr = calloc(n ? n : 1, sizeof(*arr));
		if (!arr)
			return nomem();
		*(char ***)(base + f->off) = arr;
		size_t *count = (size_t *)(base + f->off_n);
		for (size_t k = 0; k < n; k++) {
			size_t old = path_index(c, k + 1);
			r = load_string_value(c, f, toml__array_at(v, k),
					      &arr[k], NULL);
			c->path[old] = 0;
			if (r)
				return r;
			*count = k + 1;
		}
		return 0;
	}
	case K_BOOL:
		if (v->type != TOML_BOOLEAN)
			return rfail(c, v, "%s: expected true or false, got %s",
				     c->path, a_type(v));
		*(int *)(base + f->off) = v->u.b;
		return 0;
	case K_INT:
		if ((r = load_int(c, f, v, &i)))
			return r;
		*(int64_t *)(base + f->off) = i;
		return 0;
	case K_UINT:
		if ((r = load_int(c, f, v, &i)))
			return r;
		*(unsigned *)(base + f->off) = (unsigned)i;
		return 0;
	case K_U16:
		if ((r = load_int(c, f, v, &i)))
			return r;
		*(uint16_t *)(base + f->off) = (uint16_t)i;
		return 0;
	case K_SIZE: {
		uint64_t bytes;
		char b1[32], b2[32];
		if (v->type == TOML_INTEGER) {
			if (v->u.i < 0)
				return rfail(c, v, "%s: a size cannot be "
					     "negative", c->path);
			bytes = (uint64_t)v->u.i;
		} else if (v->type == TOML_STRING) {
			const char *why = parse_size(v->u.s.ptr, &bytes);
			if (why)
				return rfail(c, v, "%s: size \"%s\" %s",
					     c->path, v->u.s.ptr, why);
		} else {
			return rfail(c, v, "%s: expected %s, got %s", c->path,
				     kind_name(f), a_type(v));
		}
		if (bytes < (uint64_t)f->min || bytes > (uint64_t)f->max)
			return rfail(c, v, "%s: size must be between %s and %s",
				     c->path, human((uint64_t)f->min, b1,
						    sizeof(b1)),
				     human((uint64_t)f->max, b2, sizeof(b2)));
		*(uint64_t *)(base + f->off) = bytes;
		return 0;
	}
	case K_MODE: {
		int64_t m = -1;
		if (v->type == TOML_INTEGER) {
			if (v->int_base != 8 && v->u.i > 7)
				return rfail(c, v, "%s: write modes in octal: "
					     "0o%llo or \"%llo\" (this is "
					     "decimal %lld)", c->path,
					     (long long)v->u.i,
					     (long long)v->u.i,
					     (long long)v->u.i);
			m = v->u.i;
		} else if (v->type == TOML_STRING) {
			const char *s = v->u.s.ptr;
			size_t len = v->u.s.len;
			if (len >= 2 && s[0] == '0' && (s[1] == 'o' ||
							 s[1] == 'O'))
				s += 2, len -= 2;
			m = len ? 0 : -1;
			for (size_t k = 0; k < len && m >= 0; k++) {
				if (s[k] < '0' || s[k] > '7' || k >= 6)
					m = -1;
				else
					m = m * 8 + (s[k] - '0');
			}
			if (m < 0)
				return rfail(c, v, "%s: \"%s\" is not an octal "
					     "mode like \"0644\"", c->path,
					     v->u.s.ptr);
		} else {
			return rfail(c, v, "%s: expected %s, got %s", c->path,
				     kind_name(f), a_type(v));
		}
		if (m < 0 || m > 07777)
			return rfail(c, v, "%s: mode must be between 0 and "
				     "07777", c->path);
		*(mode_t *)(base + f->off) = (mode_t)m;
		*(int *)(base + f->off_n) = 1;
		return 0;
	}
	case K_ENUM: {
		if (v->type != TOML_STRING)
			return rfail(c, v, "%s: expected a string, got %s",
				     c->path, a_type(v));
		for (int k = 0; f->choices[k]; k++)
			if (strcmp(f->choices[k], v->u.s.ptr) == 0) {
				*(int *)(base + f->off) = k;
				return 0;
			}
		char list[200] = "";
		for (int k = 0; f->choices[k]; k++)
			snprintf(list + strlen(list), sizeof(list) - strlen(list),
				 "%s\"%s\"", k ? ", " : "", f->choices[k]);
		const char *near = suggest(v->u.s.ptr, f->choices,
					   sizeof(char *));
		char hint[96] = "";
		if (near)
			snprintf(hint, sizeof(hint), " (did you mean \"%s\"?)",
				 near);
		return rfail(c, v, "%s: \"%s\" is not one of %s%s", c->path,
			     v->u.s.ptr, list, hint);
	}
	case K_TABLE:
		if (v->type != TOML_TABLE)
			return rfail(c, v, "%s: expected a table, got %s",
				     c->path, a_type(v));
		return load_table(c, f->sub, v, base + f->off);
	case K_TABLES: {
		if (v->type != TOML_ARRAY)
			return rfail(c, v, "%s: expected an array of tables "
				     "([[%s]]), got %s", c->path, c->path,
				     a_type(v));
		size_t n = toml__array_len(v);
		size_t es = f->sub->elem_size;
		char *arr = calloc(n ? n : 1, es);
		if (!arr)
			return nomem();
		*(char **)(base + f->off) = arr;
		size_t *count = (size_t *)(base + f->off_n);
		for (size_t k = 0; k < n; k++) {
			const struct toml_value *e = toml__array_at(v, k);
			size_t old = path_index(c, k + 1);
			if (e->type != TOML_TABLE) {
				r = rfail(c, e, "%s: expected a table, got %s",
					  c->path, a_type(e));
			} else {
				/* Count first: a half-filled element still
				 * gets freed by recipe__free(). */
				*count = k + 1;
				r = load_table(c, f->sub, e, arr + k * es);
			}
			c->path[old] = 0;
			if (r)
				return r;
		}
		return 0;
	}
	}
	return -EINVAL;
}

static int load_table(struct ctx *c, const struct schema *s,
		      const struct toml_value *t, void *obj)
{
	const struct field *f;
	int r;

	if (s->init)
		s->init(obj);
	/* Unknown keys first: a typo is the likeliest cause of a missing
	 * required key, and this message says which. */
	for (size_t i = 0; i < toml__table_len(t); i++) {
		const struct toml_keyval *kv = toml__table_at(t, i);
		for (f = s->fields; f->key; f++)
			if (strcmp(f->key, kv->key) == 0 &&
			    strlen(kv->key) == kv->keylen)
				break;
		if (f->key)
			continue;
		const char *near = suggest(kv->key, &s->fields[0].key,
					   sizeof(struct field));
		char hint[96] = "";
		if (near)
			snprintf(hint, sizeof(hint), " (did you mean '%s'?)",
				 near);
		return rfail_key(c, kv, "unknown key '%s' in %s%s", kv->key,
				 c->path[0] ? c->path : "the top level", hint);
	}
	for (f = s->fields; f->key; f++) {
		const struct toml_value *v = toml__get(t, f->key);
		if (!v) {
			if (f->required && f->kind == K_TABLE)
				return rfail(c, t, "missing required table "
					     "[%s]", f->key);
			if (f->required)
				return rfail(c, t, "%s: missing required key "
					     "'%s'", c->path[0] ? c->path :
					     "the top level", f->key);
			continue;
		}
		size_t old = path_key(c, f->key);
		r = load_field(c, f, v, obj);
		c->path[old] = 0;
		if (r)
			return r;
	}
	return s->post ? s->post(c, t, obj) : 0;
}

/* ---- value checks ----------------------------------------------------- */

static const char *check_name(const char *s, size_t len)
{
	if (len > 64)
		return "is longer than 64 characters";
	if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9')))
		return "must start with a lower-case letter or digit";
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' &&
		      s[i] <= '9') || s[i] == '.' || s[i] == '_' ||
		      s[i] == '-'))
			return "may only hold a-z, 0-9, '.', '_' and '-'";
	return NULL;
}

static const char *check_version(const char *s, size_t len)
{
	if (len > 64)
		return "is longer than 64 characters";
	if (!((s[0] >= '0' && s[0] <= '9') || (s[0] >= 'a' && s[0] <= 'z') ||
	      (s[0] >= 'A' && s[0] <= 'Z')))
		return "must start with a letter or digit";
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' &&
		      s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
		      strchr(".+~_-", s[i])))
			return "may only hold letters, digits and . + ~ _ -";
	return NULL;
}

/* No line breaks: the value goes into one line of a config file. */
static const char *check_line(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] == '\n' || s[i] == '\r')
			return "must be a single line";
	return NULL;
}

static const char *check_abs_path(const char *s, size_t len)
{
	if (s[0] != '/')
		return "must be an absolute path inside the image";
	if (len == 1)
		return "cannot be the root directory itself";
	if (s[len - 1] == '/')
		return "must name a file, not end in '/'";
	if (check_line(s, len))
		return "must not contain line breaks";
	for (const char *p = s; (p = strstr(p, "/..")); p += 3)
		if (p[3] == '/' || p[3] == 0)
			return "must not contain '..'";
	return NULL;
}

/* A file next to the recipe: relative, and never climbing out. */
static const char *check_rel_path(const char *s, size_t len)
{
	if (s[0] == '/')
		return "must be relative to the recipe's directory";
	if (check_line(s, len))
		return "must not contain line breaks";
	for (const char *p = s; *p;) {
		size_t n = strcspn(p, "/");
		if (n == 2 && p[0] == '.' && p[1] == '.')
			return "must not contain '..' (it must stay inside the "
			       "recipe's directory)";
		p += n;
		p += *p == '/';
	}
	return NULL;
}

/* A tarball: an http(s) URL or a relative path. */
static const char *check_tarball(const char *s, size_t len)
{
	if (strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0)
		return check_line(s, len) ? "must be a single line" : NULL;
	if (strstr(s, "://"))
		return "must be a path or an http(s) URL";
	return check_rel_path(s, len);
}

/* A SHA-256 as sha256sum prints it. */
static const char *check_sha256(const char *s, size_t len)
{
	if (len != 64 || strspn(s, "0123456789abcdef") != 64)
		return "must be 64 lower-case hex digits (as sha256sum prints)";
	return NULL;
}

/* Kernel: "debian" or a relative path. */
static const char *check_kernel(const char *s, size_t len)
{
	if (strcmp(s, "debian") == 0)
		return NULL;
	return check_rel_path(s, len);
}

static const char *check_user_name(const char *s, size_t len)
{
	if (len > 32)
		return "is longer than 32 characters";
	if (!((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
		return "must start with a lower-case letter or '_'";
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' &&
		      s[i] <= '9') || s[i] == '_' || s[i] == '-'))
			return "may only hold a-z, 0-9, '_' and '-'";
	return NULL;
}

/* An owner/group: a user name or a number. */
static const char *check_owner(const char *s, size_t len)
{
	size_t i = 0;
	while (i < len && s[i] >= '0' && s[i] <= '9')
		i++;
	if (i == len && len <= 10)
		return NULL;
	return check_user_name(s, len);
}

static const char *check_password(const char *s, size_t len)
{
	if (strcmp(s, "!") == 0 || strcmp(s, "*") == 0)
		return NULL;
	if (len < 4 || s[0] != '$' || !strchr(s + 1, '$'))
		return "is not a crypt(3) hash (\"$6$...\" or \"$y$...\"; "
		       "make one with mkpasswd) - plain-text passwords are "
		       "refused";
	for (size_t i = 0; i < len; i++)
		if (s[i] == ':' || s[i] == '\n' || s[i] == ' ')
			return "is not a crypt(3) hash (it holds ':', spaces "
			       "or line breaks)";
	return NULL;
}

static const char *check_ssh_key(const char *s, size_t len)
{
	if (check_line(s, len))
		return "must be one authorized_keys line";
	/* Options may come first ("from=..."), so look for a key type. */
	static const char *const types[] = { "ssh-", "ecdsa-", "sk-ssh-",
					     "sk-ecdsa-", NULL };
	for (const char *const *t = types; *t; t++)
		if (strstr(s, *t))
			return NULL;
	return "does not look like an SSH public key (\"ssh-ed25519 AAAA...\")";
}

static const char *check_hostname(const char *s, size_t len)
{
	if (len > 253)
		return "is longer than 253 characters";
	size_t label = 0;
	for (size_t i = 0; i <= len; i++) {
		char ch = i < len ? s[i] : '.';
		if (ch == '.') {
			if (label == 0 || label > 63)
				return "has an empty or over-long label";
			if (s[i - 1] == '-')
				return "has a label ending in '-'";
			label = 0;
			continue;
		}
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '-'))
			return "may only hold letters, digits, '-' and '.'";
		if (label == 0 && ch == '-')
			return "has a label starting with '-'";
		label++;
	}
	return NULL;
}

static const char *check_timezone(const char *s, size_t len)
{
	if (len > 64)
		return "is too long";
	if (s[0] == '/' || strstr(s, ".."))
		return "must be a zoneinfo name like \"Europe/Paris\"";
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' &&
		      s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
		      strchr("/_+-", s[i])))
			return "must be a zoneinfo name like \"Europe/Paris\"";
	return NULL;
}

static const char *check_locale(const char *s, size_t len)
{
	if (len > 64)
		return "is too long";
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' &&
		      s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
		      strchr("._@-", s[i])))
			return "must be a locale name like \"en_US.UTF-8\"";
	return NULL;
}

static const char *check_package(const char *s, size_t len)
{
	/* Debian package names, optionally "=version" or "/suite". */
	if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9')))
		return "is not a Debian package name";
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' &&
		      s[i] <= '9') || strchr("+-.=/:~", s[i])))
			return "is not a Debian package name";
	return NULL;
}

static const char *check_service(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' &&
		      s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
		      strchr("@._:-", s[i])))
			return "is not a service name";
	return NULL;
}

/* ---- cross-key checks ------------------------------------------------- */

static const struct toml_value *key_value(const struct toml_value *t,
					  const char *k)
{
	return toml__get(t, k);
}

static int check_local(struct ctx *c, const struct toml_value *v,
		       const char *where, const char *rel, bool want_dir);

static int base_post(struct ctx *c, const struct toml_value *t, void *obj)
{
	struct recipe_base *b = &((struct recipe *)obj)->base;
	static const char *const debian_only[] = { "suite", "variant",
						   "mirror", NULL };
	if (b->type != RECIPE_BASE_DEBIAN)
		for (const char *const *k = debian_only; *k; k++)
			if (toml__get(t, *k))
				return rfail_key(c, toml__get_kv(t, *k),
					"base.%s: only applies to type = "
					"\"debian\"", *k);
	if (b->type == RECIPE_BASE_TARBALL && !b->source)
		return rfail(c, t, "base: type \"tarball\" needs source = "
			     "\"PATH or URL\"");
	if (b->type != RECIPE_BASE_TARBALL && b->source)
		return rfail_key(c, toml__get_kv(t, "source"), "base.source: "
				 "only applies to type = \"tarball\"");
	if (b->type != RECIPE_BASE_TARBALL && b->sha256)
		return rfail_key(c, toml__get_kv(t, "sha256"), "base.sha256: "
				 "only applies to type = \"tarball\"");
	/* A download is pinned: whoever serves the URL (or sits between)
	 * must not choose the root filesystem the build then signs. */
	if (b->source && strstr(b->source, "://") && !b->sha256)
		return rfail_key(c, toml__get_kv(t, "source"), "base.source: "
				 "a URL needs sha256 = \"...\" (the tarball's "
				 "SHA-256, as sha256sum prints it)");
	if (b->source && !strstr(b->source, "://"))
		return check_local(c, toml__get(t, "source"), "base.source",
				   b->source, false);
	return 0;
}

/*
 * A local path the build will read must exist now: reporting it here, at
 * its line, beats failing halfway through a build.  `where` names the key.
 */
static int check_local(struct ctx *c, const struct toml_value *v,
		       const char *where, const char *rel, bool want_dir)
{
	char full[PATH_MAX];
	struct stat st;

	if ((size_t)snprintf(full, sizeof(full), "%s/%s", c->dir, rel) >=
	    sizeof(full))
		return rfail(c, v, "%s: path is too long", where);
	if (stat(full, &st) < 0)
		return rfail(c, v, "%s: %s: %s (paths are relative to %s)",
			     where, rel, strerror(errno), c->dir);
	if (want_dir && !S_ISDIR(st.st_mode))
		return rfail(c, v, "%s: %s is not a directory", where, rel);
	if (!want_dir && !S_ISREG(st.st_mode))
		return rfail(c, v, "%s: %s is not a regular file", where, rel);
	return 0;
}

static int file_post(struct ctx *c, const struct toml_value *t, void *obj)
{
	struct recipe_file *f = obj;
	char where[300];
	if (!f->content == !f->source)
		return rfail(c, f->content ? key_value(t, "source") : t,
			     "%s: give exactly one of content = \"...\" or "
			     "source = \"file next to the recipe\"", c->path);
	snprintf(where, sizeof(where), "%s.source", c->path);
	if (f->source)
		return check_local(c, toml__get(t, "source"), where, f->source,
				   false);
	return 0;
}

static int kernel_post(struct ctx *c, const struct toml_value *t, void *obj)
{
	struct recipe_kernel *k = obj;
	int r;
	if (k->source && strcmp(k->source, "debian") != 0 &&
	    (r = check_local(c, toml__get(t, "source"), "kernel.source",
			     k->source, false)))
		return r;
	if (k->modules && (!k->source || strcmp(k->source, "debian") == 0))
		return rfail_key(c, toml__get_kv(t, "modules"), "kernel.modules: "
				 "only applies with a kernel image path in "
				 "kernel.source (Debian's kernel brings its "
				 "own modules)");
	if (k->modules)
		return check_local(c, toml__get(t, "modules"), "kernel.modules",
				   k->modules, true);
	return 0;
}

static void user_init(void *obj)
{
	((struct recipe_user *)obj)->uid = -1;
}

static void group_init(void *obj)
{
	((struct recipe_group *)obj)->gid = -1;
}

static int vm_post(struct ctx *c, const struct toml_value *t, void *obj)
{
	struct recipe_vm *vm = obj;
	const struct toml_value *ports = toml__get(t, "ports");
	for (size_t i = 0; i < vm->n_ports; i++)
		for (size_t j = 0; j < i; j++) {
			const char *pi = vm->ports[i].proto ?
					 vm->ports[i].proto : "tcp";
			const char *pj = vm->ports[j].proto ?
					 vm->ports[j].proto : "tcp";
			if (vm->ports[i].host == vm->ports[j].host &&
			    strcmp(pi, pj) == 0)
				return rfail(c, toml__array_at(ports, i),
					     "vm.ports[%zu]: host port %u/%s is "
					     "already forwarded by vm.ports"
					     "[%zu]", i + 1, vm->ports[i].host,
					     pi, j + 1);
		}
	return 0;
}

/* The `key` strings of the n elements of array `name` (in the recipe
 * table t; parsed into base[0..n) with this stride, the string at offset
 * off) must differ.  `noun` names one ("user '%s'"), `verb` says what
 * the first one did. */
static int check_unique(struct ctx *c, const struct toml_value *t,
			const char *name, const char *key, const void *base,
			size_t n, size_t stride, size_t off, const char *noun,
			const char *verb)
{
	const struct toml_value *a = toml__get(t, name);
	const char *p = base;

	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < i; j++) {
			const char *si = *(char *const *)(p + i * stride + off);
			const char *sj = *(char *const *)(p + j * stride + off);
			if (strcmp(si, sj) != 0)
				continue;
			char what[512];
			snprintf(what, sizeof(what), noun, si);
			return rfail(c, toml__get(toml__array_at(a, i), key),
				     "%s[%zu].%s: %s is already %s by %s[%zu]",
				     name, i + 1, key, what, verb, name,
				     j + 1);
		}
	return 0;
}

/* Names of users/groups and paths of files must be unique. */
static int root_post(struct ctx *c, const struct toml_value *t, void *obj)
{
	struct recipe *r = obj;
	int rc;

	if ((rc = check_unique(c, t, "users", "name", r->users, r->n_users,
			       sizeof(*r->users),
			       offsetof(struct recipe_user, name),
			       "user '%s'", "defined")) < 0 ||
	    (rc = check_unique(c, t, "groups", "name", r->groups,
			       r->n_groups, sizeof(*r->groups),
			       offsetof(struct recipe_group, name),
			       "group '%s'", "defined")) < 0 ||
	    (rc = check_unique(c, t, "files", "path", r->files, r->n_files,
			       sizeof(*r->files),
			       offsetof(struct recipe_file, path), "%s",
			       "written")) < 0)
		return rc;
	return 0;
}

/* ---- the schema ------------------------------------------------------- */

#define MiB (1ll << 20)
#define GiB (1ll << 30)
#define TiB (1ll << 40)

static const char *const base_types[] = { "debian", "busybox", "tarball",
					  NULL };
static const char *const variants[] = { "extract", "custom", "essential",
					"apt", "required", "minbase",
					"buildd", "important", "debootstrap",
					"standard", NULL };
static const char *const filesystems[] = { "ext4", NULL };
static const char *const consoles[] = { "serial", "virtio", "none", NULL };
static const char *const protos[] = { "tcp", "udp", NULL };

#define R(t, m) offsetof(t, m)

static const struct field appliance_fields[] = {
	{ "name", K_STRING, R(struct recipe, name), .required = true,
	  .check = check_name },
	{ "version", K_STRING, R(struct recipe, version), .required = true,
	  .check = check_version },
	{ "description", K_STRING, R(struct recipe, description) },
	{ NULL },
};
static const struct schema appliance_schema = { "appliance", 0,
						appliance_fields };

/* [base] fills struct recipe (not just .base) because it also takes
 * the package list: in TOML, a top-level key cannot follow a [table], so
 * base.packages is where recipes naturally list them. */
static const struct field base_fields[] = {
	{ "type", K_ENUM, R(struct recipe, base.type), .required = true,
	  .choices = base_types },
	{ "suite", K_STRING, R(struct recipe, base.suite),
	  .check = check_service },
	{ "variant", K_STRING, R(struct recipe, base.variant),
	  .choices = variants },
	{ "mirror", K_STRING, R(struct recipe, base.mirror),
	  .check = check_line },
	{ "source", K_STRING, R(struct recipe, base.source),
	  .check = check_tarball },
	{ "sha256", K_STRING, R(struct recipe, base.sha256),
	  .check = check_sha256 },
	{ "packages", K_STRINGS, R(struct recipe, packages),
	  R(struct recipe, n_packages), .check = check_package },
	{ NULL },
};
static const struct schema base_schema = { "base", 0, base_fields,
					   base_post };

static const struct field file_fields[] = {
	{ "path", K_STRING, R(struct recipe_file, path), .required = true,
	  .check = check_abs_path },
	{ "content", K_STRING, R(struct recipe_file, content),
	  R(struct recipe_file, content_len) },
	{ "source", K_STRING, R(struct recipe_file, source),
	  .check = check_rel_path },
	{ "mode", K_MODE, R(struct recipe_file, mode),
	  R(struct recipe_file, has_mode) },
	{ "owner", K_STRING, R(struct recipe_file, owner),
	  .check = check_owner },
	{ "group", K_STRING, R(struct recipe_file, group),
	  .check = check_owner },
	{ NULL },
};
static const struct schema file_schema = { "files",
					   sizeof(struct recipe_file),
					   file_fields, file_post };

static const struct field user_fields[] = {
	{ "name", K_STRING, R(struct recipe_user, name), .required = true,
	  .check = check_user_name },
	{ "uid", K_INT, R(struct recipe_user, uid), .min = 0,
	  .max = 2147483646 },
	{ "groups", K_STRINGS, R(struct recipe_user, groups),
	  R(struct recipe_user, n_groups), .check = check_user_name },
	{ "password", K_STRING, R(struct recipe_user, password),
	  .check = check_password },
	{ "shell", K_STRING, R(struct recipe_user, shell),
	  .check = check_abs_path },
	{ "home", K_STRING, R(struct recipe_user, home),
	  .check = check_abs_path },
	{ "ssh_keys", K_STRINGS, R(struct recipe_user, ssh_keys),
	  R(struct recipe_user, n_ssh_keys), .check = check_ssh_key },
	{ NULL },
};
static const struct schema user_schema = { "users",
					   sizeof(struct recipe_user),
					   user_fields, NULL, user_init };

static const struct field group_fields[] = {
	{ "name", K_STRING, R(struct recipe_group, name), .required = true,
	  .check = check_user_name },
	{ "gid", K_INT, R(struct recipe_group, gid), .min = 0,
	  .max = 2147483646 },
	{ NULL },
};
static const struct schema group_schema = { "groups",
					    sizeof(struct recipe_group),
					    group_fields, NULL, group_init };

static const struct field system_fields[] = {
	{ "hostname", K_STRING, R(struct recipe, hostname),
	  .check = check_hostname },
	{ "timezone", K_STRING, R(struct recipe, timezone),
	  .check = check_timezone },
	{ "locale", K_STRING, R(struct recipe, locale),
	  .check = check_locale },
	{ "services", K_STRINGS, R(struct recipe, services),
	  R(struct recipe, n_services), .check = check_service },
	{ NULL },
};
static const struct schema system_schema = { "system", 0, system_fields };

static const struct field commands_fields[] = {
	{ "build", K_STRINGS, R(struct recipe, build_commands),
	  R(struct recipe, n_build_commands) },
	{ "first_boot", K_STRINGS, R(struct recipe, first_boot_commands),
	  R(struct recipe, n_first_boot_commands) },
	{ NULL },
};
static const struct schema commands_schema = { "commands", 0,
					       commands_fields };

static const struct field kernel_fields[] = {
	{ "source", K_STRING, R(struct recipe_kernel, source),
	  .check = check_kernel },
	{ "modules", K_STRING, R(struct recipe_kernel, modules),
	  .check = check_rel_path },
	{ "cmdline", K_STRING, R(struct recipe_kernel, cmdline),
	  .check = check_line },
	{ NULL },
};
static const struct schema kernel_schema = { "kernel", 0, kernel_fields,
					     kernel_post };

static const struct field disk_fields[] = {
	{ "size", K_SIZE, R(struct recipe_disk, size), .min = 1 * MiB,
	  .max = 64 * TiB },
	{ "filesystem", K_STRING, R(struct recipe_disk, filesystem),
	  .choices = filesystems },
	{ "gpt", K_BOOL, R(struct recipe_disk, gpt) },
	{ NULL },
};
static const struct schema disk_schema = { "disk", 0, disk_fields };

static const struct field port_fields[] = {
	{ "host", K_U16, R(struct recipe_port, host), .required = true,
	  .min = 1, .max = 65535 },
	{ "guest", K_U16, R(struct recipe_port, guest), .required = true,
	  .min = 1, .max = 65535 },
	{ "proto", K_STRING, R(struct recipe_port, proto),
	  .choices = protos },
	{ NULL },
};
static const struct schema port_schema = { "ports",
					   sizeof(struct recipe_port),
					   port_fields };

static const struct field vm_fields[] = {
	{ "memory", K_SIZE, R(struct recipe_vm, memory), .min = 16 * MiB,
	  .max = 1 * TiB },
	{ "cpus", K_UINT, R(struct recipe_vm, cpus), .min = 1, .max = 255 },
	{ "cmdline", K_STRING, R(struct recipe_vm, cmdline),
	  .check = check_line },
	{ "console", K_STRING, R(struct recipe_vm, console),
	  .choices = consoles },
	{ "ports", K_TABLES, R(struct recipe_vm, ports),
	  R(struct recipe_vm, n_ports), .sub = &port_schema },
	{ NULL },
};
static const struct schema vm_schema = { "vm", 0, vm_fields, vm_post };

/* [system] and [commands] fill fields of struct recipe itself: off 0. */
static const struct field root_fields[] = {
	{ "appliance", K_TABLE, 0, .required = true,
	  .sub = &appliance_schema },
	{ "base", K_TABLE, 0, .sub = &base_schema },
	{ "packages", K_STRINGS, R(struct recipe, packages),
	  R(struct recipe, n_packages), .check = check_package },
	{ "files", K_TABLES, R(struct recipe, files),
	  R(struct recipe, n_files), .sub = &file_schema },
	{ "users", K_TABLES, R(struct recipe, users),
	  R(struct recipe, n_users), .sub = &user_schema },
	{ "groups", K_TABLES, R(struct recipe, groups),
	  R(struct recipe, n_groups), .sub = &group_schema },
	{ "system", K_TABLE, 0, .sub = &system_schema },
	{ "commands", K_TABLE, 0, .sub = &commands_schema },
	{ "kernel", K_TABLE, R(struct recipe, kernel), .sub = &kernel_schema },
	{ "disk", K_TABLE, R(struct recipe, disk), .sub = &disk_schema },
	{ "vm", K_TABLE, R(struct recipe, vm), .sub = &vm_schema },
	{ NULL },
};
static const struct schema root_schema = { "recipe", 0, root_fields,
					   root_post };

/* ---- loading ---------------------------------------------------------- */

static int read_file(const char *path, char **out, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		snprintf(recipe_errbuf, sizeof(recipe_errbuf), "%s: %s", path,
			 strerror(e));
		return -e;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		snprintf(recipe_errbuf, sizeof(recipe_errbuf),
			 "%s: not a regular file", path);
		return -EINVAL;
	}
	if (st.st_size > (off_t)RECIPE_MAX_BYTES) {
		close(fd);
		snprintf(recipe_errbuf, sizeof(recipe_errbuf), "%s: recipe is "
			 "larger than %u MiB", path, RECIPE_MAX_BYTES >> 20);
		return -EFBIG;
	}
	/* Read up to the cap plus one byte: the file may grow after fstat. */
	char *buf = malloc(RECIPE_MAX_BYTES + 1);
	if (!buf) {
		close(fd);
		return nomem();
	}
	size_t n = 0;
	while (n <= RECIPE_MAX_BYTES) {
		ssize_t k = read(fd, buf + n, RECIPE_MAX_BYTES + 1 - n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			int e = errno;
			close(fd);
			free(buf);
			snprintf(recipe_errbuf, sizeof(recipe_errbuf), "%s: %s",
				 path, strerror(e));
			return -e;
		}
		if (k == 0)
			break;
		n += (size_t)k;
	}
	close(fd);
	if (n > RECIPE_MAX_BYTES) {
		free(buf);
		snprintf(recipe_errbuf, sizeof(recipe_errbuf), "%s: recipe is "
			 "larger than %u MiB", path, RECIPE_MAX_BYTES >> 20);
		return -EFBIG;
	}
	*out = buf;
	*len = n;
	return 0;
}

/* Absolute directory holding `path`. */
static int recipe_dir(const char *path, char **out)
{
	char *copy = strdup(path);
	if (!copy)
		return nomem();
	char *slash = strrchr(copy, '/');
	const char *dir = ".";
	if (slash == copy)
		dir = "/";
	else if (slash) {
		*slash = 0;
		dir = copy;
	}
	char *abs = realpath(dir, NULL);
	int e = errno;
	free(copy);
	if (!abs) {
		snprintf(recipe_errbuf, sizeof(recipe_errbuf), "%s: cannot "
			 "resolve its directory: %s", path, strerror(e));
		return -e;
	}
	*out = abs;
	return 0;
}

int recipe__load(const char *path, struct recipe *out)
{
	struct ctx c = { .file = path };
	struct toml_value *root;
	char *text = NULL, err[512];
	size_t len = 0;
	int r;

	memset(out, 0, sizeof(*out));
	recipe_errbuf[0] = 0;
	if (!path) {
		snprintf(recipe_errbuf, sizeof(recipe_errbuf), "no recipe path");
		return -EINVAL;
	}
	if ((r = read_file(path, &text, &len)))
		return r;
	r = toml__parse(text, len, path, &root, err, sizeof(err));
	free(text);
	if (r) {
		snprintf(recipe_errbuf, sizeof(recipe_errbuf), "%s", err);
		return r;
	}
	r = recipe_dir(path, &out->dir);
	c.dir = out->dir;
	if (!r)
		r = load_table(&c, &root_schema, root, out);
	toml__free(root);
	if (r)
		recipe__free(out);
	return r;
}
