/*
 * manifest.c - manifest.toml: what the appliance is and how to run it.
 *
 * The runtime reads this file to start the VM (memory, cpus, kernel
 * command line, port forwards) and to verify the other files (SHA-256).
 * build_time is SOURCE_DATE_EPOCH so that rebuilding gives the same bytes.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "builder/steps.h"

static int grow(char **buf, size_t *cap, size_t need)
{
	if (need <= *cap)
		return 0;
	size_t ncap = *cap ? *cap : 1024;
	while (ncap < need)
		ncap *= 2;
	char *nb = realloc(*buf, ncap);
	if (!nb)
		return build__err(ENOMEM, "out of memory");
	*buf = nb;
	*cap = ncap;
	return 0;
}

static int append(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int append(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || grow(buf, cap, *len + (size_t)n + 1) < 0)
		return -ENOMEM;
	va_start(ap, fmt);
	vsnprintf(*buf + *len, *cap - *len, fmt, ap);
	va_end(ap);
	*len += (size_t)n;
	return 0;
}

int manifest__toml_string(char **buf, size_t *len, size_t *cap,
			  const char *s)
{
	if (append(buf, len, cap, "\"") < 0)
		return -ENOMEM;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		int rc;
		switch (*p) {
		case '"': rc = append(buf, len, cap, "\\\""); break;
		case '\\': rc = append(buf, len, cap, "\\\\"); break;
		case '\n': rc = append(buf, len, cap, "\\n"); break;
		case '\t': rc = append(buf, len, cap, "\\t"); break;
		case '\r': rc = append(buf, len, cap, "\\r"); break;
		default:
			/* TOML forbids raw control characters in basic
			 * strings; UTF-8 bytes >= 0x80 pass through. */
			if (*p < 0x20 || *p == 0x7f)
				rc = append(buf, len, cap, "\\u%04x", *p);
			else
				rc = append(buf, len, cap, "%c", *p);
		}
		if (rc < 0)
			return rc;
	}
	return append(buf, len, cap, "\"");
}

#define S(str) do { if (manifest__toml_string(&buf, &len, &cap, (str)) < 0) \
		goto oom; } while (0)
#define A(...) do { if (append(&buf, &len, &cap, __VA_ARGS__) < 0) \
		goto oom; } while (0)

int manifest__format(const struct recipe *r, int64_t build_time,
		     const char *cmdline, const struct manifest_file *files,
		     size_t n_files, char **out)
{
	char *buf = NULL;
	size_t len = 0, cap = 0;
	const struct recipe_vm *vm = &r->vm;

	*out = NULL;
	A("# Written by `appliance build`; the runtime reads it.\n");
	A("manifest_version = 1\n\n[appliance]\nname = ");
	S(r->name);
	A("\nversion = ");
	S(r->version);
	if (r->description) {
		A("\ndescription = ");
		S(r->description);
	}
	A("\narchitecture = \"x86_64\"\nbuild_time = %" PRId64 "\n",
	  build_time);

	A("\n[vm]\nmemory = %" PRIu64 "\ncpus = %u\ncmdline = ",
	  vm->memory ? vm->memory : (uint64_t)512 << 20, vm->cpus ? vm->cpus : 1);
	S(cmdline);
	A("\nconsole = ");
	S(vm->console ? vm->console : "serial");
	A("\n");
	for (size_t i = 0; i < vm->n_ports; i++) {
		A("\n[[vm.ports]]\nhost = %u\nguest = %u\nproto = ",
		  vm->ports[i].host, vm->ports[i].guest);
		S(vm->ports[i].proto ? vm->ports[i].proto : "tcp");
		A("\n");
	}
	for (size_t i = 0; i < n_files; i++) {
		A("\n[[files]]\nrole = ");
		S(files[i].role);
		A("\nname = ");
		S(files[i].name);
		if (files[i].format) {
			A("\nformat = ");
			S(files[i].format);
		}
		A("\nsize = %" PRIu64 "\nsha256 = ", files[i].size);
		S(files[i].sha256);
		A("\n");
	}
	*out = buf;
	return 0;
oom:
	free(buf);
	return build__err(ENOMEM, "out of memory writing the manifest");
}
