/*
 * toml.h - a TOML 1.0 parser: a whole document into a tree.
 *
 * Debian 12 packages no C TOML library, so the builder carries its own.
 * toml__parse() reads a complete document and returns its root table; every
 * value and every key remembers the 1-based line and column where it was
 * written, so that a schema check done later (builder/recipe.c) can report
 * "file:line:col: message" just like a syntax error does.
 *
 * The parser follows TOML 1.0.0 (https://toml.io/en/v1.0.0) exactly: every
 * string kind and escape, integers with overflow detection, floats, all four
 * date-time kinds, arrays of mixed types, inline tables, dotted keys, arrays
 * of tables and every redefinition rule.  Input is treated as hostile: UTF-8
 * is validated, control characters are refused, and nesting is capped at
 * TOML_MAX_DEPTH so that no input can exhaust the stack.
 *
 * The tree is read-only for callers; use the accessors below or read the
 * struct fields directly.  Nothing here prints or exits.
 */
#ifndef BUILDER_TOML_H
#define BUILDER_TOML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Deepest nesting of arrays / inline tables / table headers accepted. */
#define TOML_MAX_DEPTH 128

enum toml_type {
	TOML_STRING,
	TOML_INTEGER,           /* int64_t */
	TOML_FLOAT,             /* double */
	TOML_BOOLEAN,
	TOML_OFFSET_DATETIME,   /* 1979-05-27T07:32:00Z, ...-07:00 */
	TOML_LOCAL_DATETIME,    /* 1979-05-27T07:32:00 */
	TOML_LOCAL_DATE,        /* 1979-05-27 */
	TOML_LOCAL_TIME,        /* 07:32:00.999 */
	TOML_ARRAY,
	TOML_TABLE,
};

/*
 * A date-time as written: only the parts the kind has are meaningful.
 * Nothing is normalised (no time-zone conversion), so a value can be
 * printed back exactly.
 */
struct toml_datetime {
	int year, month, day;           /* has_date */
	int hour, minute, second;       /* has_time */
	uint32_t nanosecond;            /* has_time; fractions beyond 9 digits
	                                   are truncated */
	int frac_digits;                /* digits written after '.', 0 if none */
	int offset_minutes;             /* has_offset; east of UTC, Z is 0 */
	bool has_date, has_time, has_offset;
	bool offset_z;                  /* written as 'Z' (or 'z') */
};

struct toml_value;

/* One key of a table, in document order. */
struct toml_keyval {
	char *key;                      /* UTF-8, NUL-terminated; may hold an
	                                   escaped NUL, so keylen is exact */
	size_t keylen;
	int line, col;                  /* where the key was first written */
	struct toml_value *value;
};

struct toml_value {
	enum toml_type type;
	int line, col;                  /* where the value starts (for a table
	                                   made by a header: the header) */
	union {
		struct {
			char *ptr;      /* NUL-terminated UTF-8 */
			size_t len;     /* exact length (\u0000 is allowed) */
		} s;
		int64_t i;
		double f;
		bool b;
		struct toml_datetime dt;
		struct {
			struct toml_value **items;
			size_t len, cap;
		} arr;
		struct {
			struct toml_keyval *items;
			size_t len, cap;
			uint32_t *index;        /* private: hash index */
			size_t index_cap;
		} tab;
	} u;
	int int_base;                   /* TOML_INTEGER: 10, 16, 8 or 2, as
	                                   written (file modes want 0o644) */
	unsigned flags;                 /* private: parser bookkeeping */
};

/*
 * Parse `len` bytes of `text` (need not be NUL-terminated).  `filename`
 * only prefixes error messages (NULL: "<input>").  On success *root is a
 * TOML_TABLE the caller frees with toml__free() and 0 is returned.  On
 * failure *root is NULL, a negative errno (-EINVAL for bad TOML, -ENOMEM)
 * is returned, and err receives "file:line:col: message".
 */
int toml__parse(const char *text, size_t len, const char *filename,
		struct toml_value **root, char *err, size_t errlen);

/* Free a tree returned by toml__parse (NULL is fine). */
void toml__free(struct toml_value *v);

/* "string", "integer", "float", "boolean", "offset datetime", ... */
const char *toml__type_name(enum toml_type t);

/* ---- tables ---------------------------------------------------------- */

/* Value of `key` in table `t`; NULL if absent or `t` is not a table. */
const struct toml_value *toml__get(const struct toml_value *t, const char *key);
/* Same, returning the key entry (for the key's own line/col). */
const struct toml_keyval *toml__get_kv(const struct toml_value *t,
				       const char *key);
/* Number of keys, and the i-th key in document order (NULL past the end). */
size_t toml__table_len(const struct toml_value *t);
const struct toml_keyval *toml__table_at(const struct toml_value *t, size_t i);

/* ---- arrays ---------------------------------------------------------- */

size_t toml__array_len(const struct toml_value *a);
const struct toml_value *toml__array_at(const struct toml_value *a, size_t i);

/* ---- typed access (NULL / false when the type differs) ---------------- */

/* The string, or NULL if `v` is not a string. */
const char *toml__string(const struct toml_value *v);
/* Store the value and return true if `v` has that type. */
bool toml__int(const struct toml_value *v, int64_t *out);
bool toml__bool(const struct toml_value *v, bool *out);
/* Accepts integers too (converted), since "2" for a float field is fine. */
bool toml__double(const struct toml_value *v, double *out);

/*
 * Format a date-time value in RFC 3339 / TOML form (what was written, with
 * 'T' and 'Z' upper-case) into buf; returns buf.
 */
const char *toml__datetime_format(const struct toml_value *v, char *buf,
				  size_t len);

#ifdef __cplusplus
}
#endif

#endif /* BUILDER_TOML_H */
