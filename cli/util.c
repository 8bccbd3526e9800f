/*
 * util.c - small helpers shared by the sub-commands.
 */
#include <ctype.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* The length of the well-formed UTF-8 sequence at s (1-4; no overlong
 * forms, surrogates or code points past U+10FFFF) and its code point, or
 * 0 if the bytes there are not one. */
static int utf8_seq(const unsigned char *s, uint32_t *cp)
{
	int n = s[0] < 0x80 ? 1 : (s[0] & 0xe0) == 0xc0 ? 2 :
		(s[0] & 0xf0) == 0xe0 ? 3 : (s[0] & 0xf8) == 0xf0 ? 4 : 0;
	uint32_t v = n == 1 ? s[0] : n == 2 ? s[0] & 0x1fu :
		     n == 3 ? s[0] & 0x0fu : s[0] & 0x07u;
	static const uint32_t min[5] = { 0, 0, 0x80, 0x800, 0x10000 };

	for (int i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		v = v << 6 | (s[i] & 0x3fu);
	}
	if (n == 0 || v < min[n] || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return 0;
	*cp = v;
	return n;
}

/* C0 controls, DEL and the C1 controls U+0080-U+009F (which some
 * terminals obey as ESC sequences). */
static int is_control(uint32_t cp)
{
	return cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f);
}

/* Control characters and bytes that are not UTF-8 print as \xHH. */
static void print_escaped(FILE *f, const char *str, int keep_newlines)
{
	const unsigned char *s = (const unsigned char *)str;

	while (*s) {
		uint32_t cp;
		int n = utf8_seq(s, &cp);
		if (n > 0 && (!is_control(cp) || cp == '\t' ||
			      (cp == '\n' && keep_newlines))) {
			fwrite(s, 1, (size_t)n, f);
			s += n;
			continue;
		}
		for (int i = 0; i < (n > 0 ? n : 1); i++)
			fprintf(f, "\\x%02x", s[i]);
		s += n > 0 ? n : 1;
	}
}

/* Text from elsewhere (a package's comments, a backing file name an
 * image chose) is attacker-chosen: never send raw control bytes to a
 * terminal, where they can rewrite what was printed before. */
void cli__print_untrusted(FILE *f, const char *s)
{
	print_escaped(f, s, 0);
}

/* "appliance: " and the message, escaped as untrusted: libraries' messages
 * quote names and fields from the images and packages they read.  Line
 * breaks stay (a failed build's message ends with its tool's output). */
static void print_message(const char *fmt, va_list ap)
{
	char small[1024], *msg = small;
	va_list copy;

	va_copy(copy, ap);
	int n = vsnprintf(small, sizeof(small), fmt, copy);
	va_end(copy);
	if (n >= (int)sizeof(small) && (msg = malloc((size_t)n + 1)))
		vsnprintf(msg, (size_t)n + 1, fmt, ap);
	if (!msg)
		msg = small;   /* out of memory: the message cut short */
	fputs("appliance: ", stderr);
	print_escaped(stderr, msg, 1);
	if (msg != small)
		free(msg);
}

void cli__error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	print_message(fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int cli__usage(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	print_message(fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'appliance help %s'.\n", cmd);
	return EXIT_USAGE;
}

int cli__parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || !*s || *s == '-' || isspace((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || *end)
		return -1;
	*out = v;
	return 0;
}

int cli__parse_size(const char *s, uint64_t *out)
{
	char *end;
	double v;
	unsigned shift = 0;

	if (!s || !*s || *s == '-' || isspace((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || !isfinite(v) || v < 0)
		return -1;
	switch (toupper((unsigned char)*end)) {
	case '\0': break;
	case 'B': shift = 0; end++; break;
	case 'K': shift = 10; end++; break;
	case 'M': shift = 20; end++; break;
	case 'G': shift = 30; end++; break;
	case 'T': shift = 40; end++; break;
	case 'P': shift = 50; end++; break;
	default: return -1;
	}
	if (shift && (strcasecmp(end, "iB") == 0 || strcasecmp(end, "B") == 0))
		end += strlen(end);
	if (*end)
		return -1;
	v = ldexp(v, (int)shift);
	if (v >= 18446744073709551615.0 || v != floor(v))
		return -1;
	*out = (uint64_t)v;
	return 0;
}

const char *cli__human_size(uint64_t n, char *buf, size_t len)
{
	static const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	double v = (double)n;
	int u = 0;

	while (v >= 1024 && u < 5) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%llu B", (unsigned long long)n);
	else
		snprintf(buf, len, "%.3g %s", v, units[u]);
	return buf;
}

/* Always valid JSON, whatever the bytes: text an image chose may not be
 * UTF-8, and a parser refusing the output (a script vetting downloaded
 * images) must not be the image's to cause.  A byte that is not part of
 * well-formed UTF-8 becomes U+FFFD. */
void cli__json_string(FILE *f, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;

	fputc('"', f);
	while (*s) {
		uint32_t cp;
		int n = utf8_seq(s, &cp);
		if (n == 0) {
			fputs("\\ufffd", f);
			s++;
			continue;
		}
		if (cp == '"' || cp == '\\')
			fprintf(f, "\\%c", (int)cp);
		else if (is_control(cp))
			fprintf(f, "\\u%04x", (unsigned)cp);
		else
			fwrite(s, 1, (size_t)n, f);
		s += n;
	}
	fputc('"', f);
}

static int remove_entry(const char *path, const struct stat *st, int type,
			struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	return remove(path) < 0 && errno != ENOENT ? -1 : 0;
}

int cli__remove_tree(const char *path)
{
	/* FTW_PHYS: never follow a symlink out of the tree. */
	return nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Where a helper program is: next to /proc/self/exe (the build tree), or
 * in ../libexec/appliance/ relative to it (`make install`'s layout).
 * Returns 0 with the path in buf, -1 if neither exists. */
static int find_helper(const char *helper, char *buf, size_t len)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	if (n <= 0)
		return -1;
	self[n] = '\0';
	char *slash = strrchr(self, '/');
	if (!slash)
		return -1;
	*slash = '\0';
	static const char *const where[] = {
		"%s/%s",
		"%s/../libexec/appliance/%s",
	};
	for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
		if ((size_t)snprintf(buf, len, where[i], self, helper) >= len)
			continue;
		if (access(buf, X_OK) == 0)
			return 0;
	}
	return -1;
}

int cli__exec_helper(const char *helper, const char *prefix, int argc,
		     char **argv)
{
	char path[PATH_MAX + 64];
	char **av = calloc((size_t)argc + 3, sizeof(*av));
	int n = 0;

	if (!av) {
		cli__error("out of memory");
		return EXIT_FAIL;
	}
	if (find_helper(helper, path, sizeof(path)) < 0) {
		cli__error("%s%s%s: the helper program %s is not installed "
			   "next to appliance (or in ../libexec/appliance/)",
			   prefix ? prefix : "", prefix ? " " : "", argv[0],
			   helper);
		free(av);
		return EXIT_FAIL;
	}
	av[n++] = (char *)"appliance";
	if (prefix)
		av[n++] = (char *)prefix;
	for (int i = 0; i < argc; i++)
		av[n++] = argv[i];
	fflush(NULL);
	execv(path, av);
	cli__error("%s%s%s: cannot run %s: %s", prefix ? prefix : "",
		   prefix ? " " : "", argv[0], path, strerror(errno));
	free(av);
	return EXIT_FAIL;
}
