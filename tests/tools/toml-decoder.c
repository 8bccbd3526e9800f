/*
 * toml-decoder - toml-test's decoder interface over builder/toml.c.
 *
 * Reads a TOML document on stdin and prints it on stdout as toml-test's
 * tagged JSON: every scalar becomes {"type": T, "value": "text"}, arrays
 * JSON arrays, tables JSON objects.  Invalid input: the parser's message
 * on stderr and exit status 1.  tests/cli/toml-conformance.sh drives it.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "builder/toml.h"

static void json_string(const char *s, size_t len)
{
	putchar('"');
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		switch (c) {
		case '"': fputs("\\\"", stdout); break;
		case '\\': fputs("\\\\", stdout); break;
		case '\n': fputs("\\n", stdout); break;
		case '\t': fputs("\\t", stdout); break;
		case '\r': fputs("\\r", stdout); break;
		case '\b': fputs("\\b", stdout); break;
		case '\f': fputs("\\f", stdout); break;
		default:
			if (c < 0x20 || c == 0x7f)
				printf("\\u%04x", c);
			else
				putchar(c);
		}
	}
	putchar('"');
}

static void tagged(const char *type, const char *value)
{
	printf("{\"type\": \"%s\", \"value\": ", type);
	json_string(value, strlen(value));
	putchar('}');
}

static void emit(const struct toml_value *v)
{
	char buf[64];

	switch (v->type) {
	case TOML_STRING:
		printf("{\"type\": \"string\", \"value\": ");
		json_string(v->u.s.ptr, v->u.s.len);
		putchar('}');
		break;
	case TOML_INTEGER:
		snprintf(buf, sizeof(buf), "%lld", (long long)v->u.i);
		tagged("integer", buf);
		break;
	case TOML_FLOAT:
		if (isnan(v->u.f))
			snprintf(buf, sizeof(buf), "nan");
		else if (isinf(v->u.f))
			snprintf(buf, sizeof(buf), "%sinf",
				 v->u.f < 0 ? "-" : "");
		else
			snprintf(buf, sizeof(buf), "%.17g", v->u.f);
		tagged("float", buf);
		break;
	case TOML_BOOLEAN:
		tagged("bool", v->u.b ? "true" : "false");
		break;
	case TOML_OFFSET_DATETIME:
		tagged("datetime", toml__datetime_format(v, buf, sizeof(buf)));
		break;
	case TOML_LOCAL_DATETIME:
		tagged("datetime-local",
		       toml__datetime_format(v, buf, sizeof(buf)));
		break;
	case TOML_LOCAL_DATE:
		tagged("date-local", toml__datetime_format(v, buf, sizeof(buf)));
		break;
	case TOML_LOCAL_TIME:
		tagged("time-local", toml__datetime_format(v, buf, sizeof(buf)));
		break;
	case TOML_ARRAY:
		putchar('[');
		for (size_t i = 0; i < toml__array_len(v); i++) {
			if (i)
				fputs(", ", stdout);
			emit(toml__array_at(v, i));
		}
		putchar(']');
		break;
	case TOML_TABLE:
		putchar('{');
		for (size_t i = 0; i < toml__table_len(v); i++) {
			const struct toml_keyval *kv = toml__table_at(v, i);
			if (i)
				fputs(", ", stdout);
			json_string(kv->key, kv->keylen);
			fputs(": ", stdout);
			emit(kv->value);
		}
		putchar('}');
		break;
	}
}

int main(void)
{
	size_t len = 0, cap = 1 << 16;
	char *text = malloc(cap), err[512];
	struct toml_value *root;

	if (!text)
		return 2;
	for (;;) {
		size_t n = fread(text + len, 1, cap - len, stdin);
		len += n;
		if (len < cap)
			break;
		char *t = realloc(text, cap *= 2);
		if (!t)
			return 2;
		text = t;
	}
	if (toml__parse(text, len, "<stdin>", &root, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		free(text);
		return 1;
	}
	emit(root);
	putchar('\n');
	toml__free(root);
	free(text);
	return 0;
}
