/*
 * package.c - signed appliance packages (see package.h, FORMAT.md).
 *
 * Reading (this file) uses a strict parser of our own:
 * the runtime needs the exact offset of the disk's data to use it in
 * place, and a parser that accepts only regular files with plain names
 * leaves no room for links, traversal or extension-header tricks.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "appliances/package-internal.h"
#include "appliances/package.h"
#include "appliances/trust.h"
#include "builder/toml.h"
#include "common/blake3.h"
#include "common/lease.h"

static __thread char package_errbuf[1024];

const char *package__error(void)
{
	return package_errbuf;
}

/* For a message that wraps the current one: formatting the buffer into
 * itself would be undefined. */
const char *package__error_copy(char *buf, size_t len)
{
	snprintf(buf, len, "%s", package_errbuf);
	return buf;
}

int package__err(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(package_errbuf, sizeof(package_errbuf), fmt, ap);
	va_end(ap);
	return -(err > 0 ? err : EIO);
}

static const char *role_name(enum package_role r)
{
	switch (r) {
	case PACKAGE_ROLE_KERNEL: return "kernel";
	case PACKAGE_ROLE_INITRD: return "initrd";
	case PACKAGE_ROLE_DISK: return "disk";
	case PACKAGE_ROLE_DISK_HASHES: return "disk-hashes";
	case PACKAGE_ROLE_DISK_SUBTREES: return "disk-subtrees";
	}
	return "?";
}

void package__hex_encode(const uint8_t *in, size_t n, char *out)
{
	static const char d[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = d[in[i] >> 4];
		out[2 * i + 1] = d[in[i] & 15];
	}
	out[2 * n] = 0;
}

static int hex_decode(const char *s, uint8_t *out, size_t n)
{
	if (strlen(s) != 2 * n)
		return -1;
	for (size_t i = 0; i < n; i++) {
		int v = 0;
		for (int k = 0; k < 2; k++) {
			char c = s[2 * i + k];
			v <<= 4;
			if (c >= '0' && c <= '9')
				v |= c - '0';
			else if (c >= 'a' && c <= 'f')
				v |= c - 'a' + 10;
			else
				return -1;
		}
		out[i] = (uint8_t)v;
	}
	return 0;
}

int package__read_at(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = pread(fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

/* SHA-256 of `len` bytes of fd at `off`; with `copy_fd` >= 0 the bytes are
 * also written there (extraction checks what it copies). */
int package__sha256_range(int fd, uint64_t off, uint64_t len, uint8_t out[32],
			int copy_fd)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	size_t bufsize = 1u << 20;
	uint8_t *buf = malloc(bufsize);
	int rc = 0;

	if (!ctx || !buf || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
		rc = package__err(ENOMEM, "out of memory");
		goto out;
	}
	while (len > 0) {
		size_t n = len < bufsize ? (size_t)len : bufsize;
		if (package__read_at(fd, buf, n, off) < 0) {
			rc = package__err(EIO, "read error at offset %" PRIu64, off);
			goto out;
		}
		EVP_DigestUpdate(ctx, buf, n);
		if (copy_fd >= 0) {
			size_t done = 0;
			while (done < n) {
				ssize_t w = write(copy_fd, buf + done, n - done);
				if (w < 0 && errno == EINTR)
					continue;
				if (w <= 0) {
					rc = package__err(errno, "write: %s",
						     strerror(errno));
					goto out;
				}
				done += (size_t)w;
			}
		}
		off += n;
		len -= n;
	}
	EVP_DigestFinal_ex(ctx, out, NULL);
out:
	EVP_MD_CTX_free(ctx);
	free(buf);
	return rc;
}

/* ---- reading the container ------------------------------------------- */

int package__valid_member_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 100 || s[0] == '.')
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("._-", s[i]))
			return 0;
	return 1;
}

static int parse_octal(const uint8_t *f, size_t len, uint64_t *out)
{
	uint64_t v = 0;
	size_t i = 0;

	while (i < len && f[i] == ' ')
		i++;
	if (i == len || f[i] < '0' || f[i] > '7')
		return -1;
	for (; i < len && f[i] >= '0' && f[i] <= '7'; i++) {
		if (v >> 60)
			return -1;
		v = v * 8 + (uint64_t)(f[i] - '0');
	}
	for (; i < len; i++)
		if (f[i] != ' ' && f[i] != 0)
			return -1;
	*out = v;
	return 0;
}

struct raw_member {
	char name[101];
	uint64_t offset, size;
};

/* Walk the ustar headers.  Returns the member count or <0. */
static int scan_tar(const char *path, int fd, uint64_t file_size,
		    struct raw_member *m, int max)
{
	uint64_t pos = 0;
	int n = 0;
	uint8_t h[512];

	for (;;) {
		if (file_size - pos < 512)
			return package__err(EINVAL, "%s: truncated: no end-of-archive "
				       "marker", path);
		if (package__read_at(fd, h, 512, pos) < 0)
			return package__err(EIO, "%s: read error", path);
		int zero = 1;
		for (int i = 0; i < 512; i++)
			if (h[i]) {
				zero = 0;
				break;
			}
		if (zero)
			break;
		/* Header checksum: the sum of all bytes with the checksum
		 * field taken as spaces. */
		uint64_t want, sum = 0;
		if (parse_octal(h + 148, 8, &want) < 0)
			return package__err(EINVAL, "%s: member %d: malformed header "
				       "checksum", path, n + 1);
		for (int i = 0; i < 512; i++)
			sum += (i >= 148 && i < 156) ? ' ' : h[i];
		if (sum != want)
			return package__err(EINVAL, "%s: member %d: header checksum "
				       "mismatch (not a tar file, or damaged)",
				       path, n + 1);
		if (memcmp(h + 257, "ustar\0" "00", 8) != 0 &&
		    memcmp(h + 257, "ustar  \0", 8) != 0)
			return package__err(EINVAL, "%s: member %d: not a ustar "
				       "header", path, n + 1);
		char name[101];
		memcpy(name, h, 100);
		name[100] = 0;
		if (h[345] != 0) /* ustar prefix: a path with directories */
			return package__err(EINVAL, "%s: member '%s': names with a "
				       "directory prefix are not allowed",
				       path, name);
		if (h[156] != '0' && h[156] != 0)
			return package__err(EINVAL, "%s: member '%s': type '%c' is "
				       "not allowed (only regular files: no "
				       "links, devices, directories or "
				       "extension headers)", path, name,
				       isprint(h[156]) ? h[156] : '?');
		if (!package__valid_member_name(name))
			return package__err(EINVAL, "%s: member name '%.100s' is not "
				       "allowed (plain names of [A-Za-z0-9._-] "
				       "only)", path, name);
		uint64_t size;
		if (parse_octal(h + 124, 12, &size) < 0 ||
		    size > PACKAGE_MAX_MEMBER_SIZE)
			return package__err(EINVAL, "%s: member '%s': bad size "
				       "field", path, name);
		pos += 512;
		if (size > file_size - pos)
			return package__err(EINVAL, "%s: member '%s' (%" PRIu64
				       " bytes) runs past the end of the "
				       "file", path, name, size);
		for (int i = 0; i < n; i++)
			if (strcmp(m[i].name, name) == 0)
				return package__err(EINVAL, "%s: member '%s' appears "
					       "twice", path, name);
		if (n == max)
			return package__err(EINVAL, "%s: more than %d members", path,
				       max);
		snprintf(m[n].name, sizeof(m[n].name), "%s", name);
		m[n].offset = pos;
		m[n].size = size;
		n++;
		pos += (size + 511) / 512 * 512;
	}
	/* Two zero blocks, then only zeros (libarchive pads to a record). */
	uint8_t buf[4096];
	for (uint64_t p2 = pos; p2 < file_size;) {
		size_t k = file_size - p2 < sizeof(buf) ? (size_t)(file_size - p2)
						       : sizeof(buf);
		if (package__read_at(fd, buf, k, p2) < 0)
			return package__err(EIO, "%s: read error", path);
		for (size_t i = 0; i < k; i++)
			if (buf[i])
				return package__err(EINVAL, "%s: data after the end "
					       "of the archive at offset %"
					       PRIu64, path, p2 + i);
		p2 += k;
	}
	if (file_size - pos < 1024)
		return package__err(EINVAL, "%s: truncated end-of-archive marker",
			       path);
	return n;
}

/* ---- the manifest ---------------------------------------------------- */

/* Refuse keys a signed manifest does not define: it must say exactly what
 * it means. */
static int only_keys(const struct toml_value *t, const char *where,
		     const char *const *allowed)
{
	for (size_t i = 0; i < toml__table_len(t); i++) {
		const struct toml_keyval *kv = toml__table_at(t, i);
		int ok = 0;
		for (const char *const *a = allowed; *a; a++)
			if (strcmp(kv->key, *a) == 0)
				ok = 1;
		if (!ok)
			return package__err(EINVAL, "manifest.toml:%d:%d: unknown key "
				       "'%s' in %s", kv->line, kv->col,
				       kv->key, where);
	}
	return 0;
}

int package__toml_str(const struct toml_value *t, const char *key,
		   const char *where, int required, const char **out)
{
	const struct toml_keyval *kv = toml__get_kv(t, key);

	*out = NULL;
	if (!kv)
		return required ? package__err(EINVAL, "manifest.toml: %s.%s is "
					  "missing", where, key) : 0;
	if (kv->value->type != TOML_STRING)
		return package__err(EINVAL, "manifest.toml:%d:%d: %s.%s must be a "
			       "string", kv->line, kv->col, where, key);
	*out = toml__string(kv->value);
	return 0;
}

int package__toml_int(const struct toml_value *t, const char *key,
		   const char *where, int64_t min, int64_t max, int64_t *out)
{
	const struct toml_keyval *kv = toml__get_kv(t, key);

	if (!kv)
		return package__err(EINVAL, "manifest.toml: %s.%s is missing",
			       where, key);
	if (!toml__int(kv->value, out) || *out < min || *out > max)
		return package__err(EINVAL, "manifest.toml:%d:%d: %s.%s must be an "
			       "integer from %" PRId64 " to %" PRId64,
			       kv->line, kv->col, where, key, min, max);
	return 0;
}

static int valid_ident(const char *s, const char *extra, int first_upper)
{
	size_t n = strlen(s);

	if (n == 0 || n > 64 || !(isdigit((unsigned char)s[0]) ||
				  islower((unsigned char)s[0]) ||
				  (first_upper && isupper((unsigned char)s[0]))))
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr(extra, s[i]))
			return 0;
	if (!first_upper)
		for (size_t i = 0; i < n; i++)
			if (isupper((unsigned char)s[i]))
				return 0;
	return 1;
}

int package__valid_name(const char *s)
{
	return valid_ident(s, "._-", 0);
}

int package__valid_version(const char *s)
{
	return valid_ident(s, "._+~-", 1);
}

/* [disk_verity] subtrees and subtree_size: both or neither, and they
 * must agree with the disk-subtrees member (appliances/FORMAT.md). */
static int parse_subtrees(struct package *p, const struct toml_value *ver)
{
	const char *s;
	int64_t v;
	int rc;

	if ((rc = package__toml_str(ver, "subtrees", "disk_verity", 0, &s)))
		return rc;
	if (!s != (toml__get(ver, "subtree_size") == NULL) ||
	    !s != (p->subtrees < 0))
		return package__err(EINVAL, "manifest.toml: a disk-subtrees file, "
			       "disk_verity.subtrees and disk_verity."
			       "subtree_size go together");
	if (!s)
		return 0;
	if (strcmp(s, p->members[p->subtrees].name) != 0)
		return package__err(EINVAL, "manifest.toml: disk_verity.subtrees "
			       "names '%s', not the disk-subtrees file", s);
	if (p->leaf_hash != PACKAGE_LEAF_BLAKE3)
		return package__err(EINVAL, "manifest.toml: disk subtrees need "
			       "disk_verity.algorithm \"blake3\"");
	if ((rc = package__toml_int(ver, "subtree_size", "disk_verity", 1024,
				    p->hash_cluster / 2, &v)))
		return rc;
	if ((v & (v - 1)) || p->hash_cluster / v > 256)
		return package__err(EINVAL, "manifest.toml: disk_verity."
			       "subtree_size %" PRId64 " is not a power of two "
			       "with at most 256 per cluster", v);
	p->subtree_size = (uint32_t)v;
	uint64_t want = p->nr_leaves * (p->hash_cluster / p->subtree_size) * 32;
	if (p->members[p->subtrees].size != want)
		return package__err(EINVAL, "%s: disk-subtrees member is %" PRIu64
			       " bytes; %" PRIu64 " clusters of %u-byte parts "
			       "need %" PRIu64, p->path,
			       p->members[p->subtrees].size, p->nr_leaves,
			       p->subtree_size, want);
	return 0;
}

static int parse_manifest(struct package *p, const struct raw_member *raw,
			  int nraw, int first_file)
{
	static const char *const top_keys[] = { "manifest_version",
		"appliance", "vm", "files", "disk_verity", NULL };
	static const char *const app_keys[] = { "name", "version",
		"description", "architecture", "build_time", NULL };
	static const char *const vm_keys[] = { "memory", "cpus", "cmdline",
		"console", "ports", NULL };
	static const char *const port_keys[] = { "host", "guest", "proto",
		NULL };
	static const char *const file_keys[] = { "role", "name", "size",
		"sha256", "format", NULL };
	static const char *const verity_keys[] = { "disk", "hashes",
		"cluster_size", "virtual_size", "algorithm", "subtrees",
		"subtree_size", NULL };
	struct toml_value *root = NULL;
	char err[512];
	const char *s;
	int64_t v;
	int rc;

	if (toml__parse(p->manifest_text, p->manifest_len, "manifest.toml",
			&root, err, sizeof(err)) < 0)
		return package__err(EINVAL, "%s: %s", p->path, err);
	rc = only_keys(root, "the manifest", top_keys);
	if (rc == 0)
		rc = package__toml_int(root, "manifest_version", "manifest", 1, 1, &v);
	const struct toml_value *app = toml__get(root, "appliance");
	const struct toml_value *vm = toml__get(root, "vm");
	const struct toml_value *files = toml__get(root, "files");
	const struct toml_value *ver = toml__get(root, "disk_verity");
	if (rc == 0 && (!app || app->type != TOML_TABLE || !vm ||
			vm->type != TOML_TABLE || !files ||
			files->type != TOML_ARRAY || !ver ||
			ver->type != TOML_TABLE))
		rc = package__err(EINVAL, "manifest.toml: [appliance], [vm], "
			     "[[files]] and [disk_verity] are required");
	if (rc)
		goto out;

	if ((rc = only_keys(app, "[appliance]", app_keys)) ||
	    (rc = package__toml_str(app, "name", "appliance", 1, &s)))
		goto out;
	if (!package__valid_name(s)) {
		rc = package__err(EINVAL, "manifest.toml: appliance.name '%s' is "
			     "not a valid name", s);
		goto out;
	}
	snprintf(p->name, sizeof(p->name), "%s", s);
	if ((rc = package__toml_str(app, "version", "appliance", 1, &s)))
		goto out;
	if (!package__valid_version(s)) {
		rc = package__err(EINVAL, "manifest.toml: appliance.version '%s' "
			     "is not a valid version", s);
		goto out;
	}
	snprintf(p->version, sizeof(p->version), "%s", s);
	if ((rc = package__toml_str(app, "architecture", "appliance", 1, &s)))
		goto out;
	if (strcmp(s, "x86_64") != 0) {
		rc = package__err(EINVAL, "manifest.toml: architecture '%s' is not "
			     "supported (x86_64 only)", s);
		goto out;
	}
	snprintf(p->architecture, sizeof(p->architecture), "%s", s);
	if ((rc = package__toml_str(app, "description", "appliance", 0, &s)))
		goto out;
	p->description = s ? strdup(s) : NULL;
	if ((rc = package__toml_int(app, "build_time", "appliance", 0, INT64_MAX,
			  &p->build_time)))
		goto out;

	if ((rc = only_keys(vm, "[vm]", vm_keys)) ||
	    (rc = package__toml_int(vm, "memory", "vm", 16 << 20, 1ll << 40, &v)))
		goto out;
	p->memory = (uint64_t)v;
	if ((rc = package__toml_int(vm, "cpus", "vm", 1, 256, &v)))
		goto out;
	p->cpus = (int)v;
	if ((rc = package__toml_str(vm, "cmdline", "vm", 1, &s)))
		goto out;
	if (strlen(s) > 4096) {
		rc = package__err(EINVAL, "manifest.toml: vm.cmdline is longer than "
			     "4096 bytes");
		goto out;
	}
	p->cmdline = strdup(s);
	if ((rc = package__toml_str(vm, "console", "vm", 0, &s)))
		goto out;
	const struct toml_value *ports = toml__get(vm, "ports");
	if (ports && ports->type != TOML_ARRAY) {
		rc = package__err(EINVAL, "manifest.toml: vm.ports must be an "
			     "array of tables");
		goto out;
	}
	for (size_t i = 0; ports && i < toml__array_len(ports); i++) {
		const struct toml_value *pt = toml__array_at(ports, i);
		if (p->nr_ports == PACKAGE_MAX_PORTS) {
			rc = package__err(EINVAL, "manifest.toml: more than %d "
				     "ports", PACKAGE_MAX_PORTS);
			goto out;
		}
		if (pt->type != TOML_TABLE) {
			rc = package__err(EINVAL, "manifest.toml: vm.ports must be "
				     "an array of tables");
			goto out;
		}
		struct package_port *pp = &p->ports[p->nr_ports++];
		if ((rc = only_keys(pt, "[[vm.ports]]", port_keys)) ||
		    (rc = package__toml_int(pt, "host", "vm.ports", 1, 65535, &v)))
			goto out;
		pp->host = (int)v;
		if ((rc = package__toml_int(pt, "guest", "vm.ports", 1, 65535, &v)))
			goto out;
		pp->guest = (int)v;
		if ((rc = package__toml_str(pt, "proto", "vm.ports", 0, &s)))
			goto out;
		if (s && strcmp(s, "tcp") && strcmp(s, "udp")) {
			rc = package__err(EINVAL, "manifest.toml: port protocol "
				     "'%s' is not tcp or udp", s);
			goto out;
		}
		pp->udp = s && strcmp(s, "udp") == 0;
	}

	/* [[files]]: exactly the members after the signature, in order. */
	p->kernel = p->initrd = p->disk = p->hashes = p->subtrees = -1;
	if (toml__array_len(files) != (size_t)(nraw - first_file)) {
		rc = package__err(EINVAL, "%s: the manifest lists %zu files but the "
			     "package holds %d members after the manifest%s",
			     p->path, toml__array_len(files), nraw - first_file,
			     first_file == 2 ? " and its signature" : "");
		goto out;
	}
	for (size_t i = 0; i < toml__array_len(files); i++) {
		const struct toml_value *f = toml__array_at(files, i);
		const struct raw_member *rm = &raw[first_file + (int)i];
		struct package_member *m = &p->members[p->nr_members];
		int *slot;

		if (f->type != TOML_TABLE) {
			rc = package__err(EINVAL, "manifest.toml: files must be an "
				     "array of tables");
			goto out;
		}
		if ((rc = only_keys(f, "[[files]]", file_keys)) ||
		    (rc = package__toml_str(f, "name", "files", 1, &s)))
			goto out;
		if (strcmp(s, rm->name) != 0) {
			rc = package__err(EINVAL, "%s: member %d is '%s' but the "
				     "manifest says '%s' comes next (members "
				     "reordered, added or removed)", p->path,
				     first_file + (int)i + 1, rm->name, s);
			goto out;
		}
		snprintf(m->name, sizeof(m->name), "%s", s);
		m->offset = rm->offset;
		m->size = rm->size;
		if ((rc = package__toml_int(f, "size", "files", 0,
				  (int64_t)PACKAGE_MAX_MEMBER_SIZE, &v)))
			goto out;
		if ((uint64_t)v != rm->size) {
			rc = package__err(EINVAL, "%s: member '%s' is %" PRIu64
				     " bytes but the manifest says %" PRId64,
				     p->path, rm->name, rm->size, v);
			goto out;
		}
		if ((rc = package__toml_str(f, "sha256", "files", 1, &s)))
			goto out;
		if (hex_decode(s, m->sha256, 32) < 0) {
			rc = package__err(EINVAL, "manifest.toml: files.sha256 of "
				     "'%s' is not 64 lower-case hex digits",
				     m->name);
			goto out;
		}
		if ((rc = package__toml_str(f, "role", "files", 1, &s)))
			goto out;
		if (strcmp(s, "kernel") == 0) {
			m->role = PACKAGE_ROLE_KERNEL;
			slot = &p->kernel;
		} else if (strcmp(s, "initrd") == 0) {
			m->role = PACKAGE_ROLE_INITRD;
			slot = &p->initrd;
		} else if (strcmp(s, "disk") == 0) {
			m->role = PACKAGE_ROLE_DISK;
			slot = &p->disk;
		} else if (strcmp(s, "disk-hashes") == 0) {
			m->role = PACKAGE_ROLE_DISK_HASHES;
			slot = &p->hashes;
		} else if (strcmp(s, "disk-subtrees") == 0) {
			m->role = PACKAGE_ROLE_DISK_SUBTREES;
			slot = &p->subtrees;
		} else {
			rc = package__err(EINVAL, "manifest.toml: unknown file role "
				     "'%s'", s);
			goto out;
		}
		if (*slot >= 0) {
			rc = package__err(EINVAL, "manifest.toml: more than one "
				     "'%s' file", s);
			goto out;
		}
		*slot = p->nr_members;
		if ((rc = package__toml_str(f, "format", "files", 0, &s)))
			goto out;
		snprintf(m->format, sizeof(m->format), "%s",
			 s ? s : (m->role == PACKAGE_ROLE_DISK ? "avd" : ""));
		if (m->role == PACKAGE_ROLE_DISK && strcmp(m->format, "avd")) {
			rc = package__err(EINVAL, "manifest.toml: the disk must be "
				     "AVD, not '%s'", m->format);
			goto out;
		}
		p->nr_members++;
	}
	if (p->kernel < 0 || p->disk < 0 || p->hashes < 0) {
		rc = package__err(EINVAL, "manifest.toml: a kernel, a disk and "
			     "disk-hashes file are required");
		goto out;
	}

	if ((rc = only_keys(ver, "[disk_verity]", verity_keys)) ||
	    (rc = package__toml_str(ver, "disk", "disk_verity", 1, &s)))
		goto out;
	if (strcmp(s, p->members[p->disk].name) != 0) {
		rc = package__err(EINVAL, "manifest.toml: disk_verity.disk names "
			     "'%s', not the disk", s);
		goto out;
	}
	if ((rc = package__toml_str(ver, "hashes", "disk_verity", 1, &s)))
		goto out;
	if (strcmp(s, p->members[p->hashes].name) != 0) {
		rc = package__err(EINVAL, "manifest.toml: disk_verity.hashes names "
			     "'%s', not the disk-hashes file", s);
		goto out;
	}
	if ((rc = package__toml_str(ver, "algorithm", "disk_verity", 1, &s)))
		goto out;
	if (package__leaf_hash_parse(s, &p->leaf_hash) < 0) {
		rc = package__err(EINVAL, "manifest.toml: disk_verity.algorithm "
			     "'%s' is not supported", s);
		goto out;
	}
	if ((rc = package__toml_int(ver, "cluster_size", "disk_verity", 4096,
			  IMGFMT_MAX_CLUSTER, &v)))
		goto out;
	if (v & (v - 1)) {
		rc = package__err(EINVAL, "manifest.toml: disk_verity.cluster_size "
			     "%" PRId64 " is not a power of two", v);
		goto out;
	}
	p->hash_cluster = (uint32_t)v;
	if ((rc = package__toml_int(ver, "virtual_size", "disk_verity", 1,
			  (int64_t)IMGFMT_MAX_VIRTUAL_SIZE, &v)))
		goto out;
	p->disk_virtual_size = (uint64_t)v;
	uint64_t leaves = (p->disk_virtual_size + p->hash_cluster - 1) /
			  p->hash_cluster;
	if (p->members[p->hashes].size != leaves * 32) {
		rc = package__err(EINVAL, "%s: disk-hashes member is %" PRIu64
			     " bytes; a %" PRIu64 "-byte disk in %u-byte "
			     "clusters needs %" PRIu64, p->path,
			     p->members[p->hashes].size, p->disk_virtual_size,
			     p->hash_cluster, leaves * 32);
		goto out;
	}
	p->nr_leaves = leaves;
	rc = parse_subtrees(p, ver);
out:
	toml__free(root);
	return rc;
}

int package__open(const char *path, struct package **out)
{
	struct raw_member raw[PACKAGE_MAX_MEMBERS + 2];
	struct package *p;
	struct stat st;
	int n, first = 1, rc;

	*out = NULL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return package__err(ENOMEM, "out of memory");
	p->kernel = p->initrd = p->disk = p->hashes = p->subtrees = -1;
	p->path = strdup(path);
	/* O_NONBLOCK: a FIFO must fail the check below, not hang the open
	 * (regular files ignore the flag). */
	p->fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (!p->path || p->fd < 0) {
		rc = package__err(errno, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if (fstat(p->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		rc = package__err(EINVAL, "%s: not a regular file", path);
		goto fail;
	}
	p->file_size = (uint64_t)st.st_size;
	n = scan_tar(path, p->fd, p->file_size, raw, PACKAGE_MAX_MEMBERS + 2);
	if (n < 0) {
		rc = n;
		goto fail;
	}
	if (n == 0 || strcmp(raw[0].name, PACKAGE_MANIFEST) != 0) {
		rc = package__err(EINVAL, "%s: the first member must be %s",
			     path, PACKAGE_MANIFEST);
		goto fail;
	}
	if (raw[0].size > PACKAGE_MAX_MANIFEST) {
		rc = package__err(EINVAL, "%s: manifest is larger than %u bytes",
			     path, PACKAGE_MAX_MANIFEST);
		goto fail;
	}
	p->manifest_len = (size_t)raw[0].size;
	p->manifest_text = malloc(p->manifest_len + 1);
	if (!p->manifest_text ||
	    package__read_at(p->fd, p->manifest_text, p->manifest_len,
		    raw[0].offset) < 0) {
		rc = package__err(EIO, "%s: cannot read the manifest", path);
		goto fail;
	}
	p->manifest_text[p->manifest_len] = 0;
	if (n > 1 && strcmp(raw[1].name, PACKAGE_SIGNATURE) == 0) {
		char *text;
		if (raw[1].size > MINISIGN_SIGFILE_MAX) {
			rc = package__err(EINVAL, "%s: signature member too large",
				     path);
			goto fail;
		}
		text = malloc((size_t)raw[1].size + 1);
		if (!text || package__read_at(p->fd, text, (size_t)raw[1].size,
				     raw[1].offset) < 0) {
			free(text);
			rc = package__err(EIO, "%s: cannot read the signature", path);
			goto fail;
		}
		rc = minisign__sig_parse(text, (size_t)raw[1].size,
					 PACKAGE_SIGNATURE, &p->sig);
		free(text);
		if (rc < 0) {
			rc = package__err(EINVAL, "%s: %s", path, minisign__error());
			goto fail;
		}
		p->has_signature = true;
		first = 2;
	}
	rc = parse_manifest(p, raw, n, first);
	if (rc < 0)
		goto fail;
	*out = p;
	return 0;
fail:
	package__close(p);
	return rc;
}

static void cv_cache_free(struct package_cv_cache *cc);
static void checked_free(struct package_checked *ck);

void package__close(struct package *p)
{
	if (!p)
		return;
	if (p->fd >= 0)
		close(p->fd);
	free(p->path);
	free(p->manifest_text);
	free(p->description);
	free(p->cmdline);
	free(p->leaves);
	free(p->zero_clusters);
	cv_cache_free(p->cv_cache);
	checked_free(p->checked);
	free(p);
}

/* ---- verification ---------------------------------------------------- */

int package__verify_signature(struct package *p,
			      const struct minisign_pubkey *pk,
			      char keyid_hex[MINISIGN_KEYID_HEX],
			      const char **trusted_comment)
{
	struct trust_entry te;
	char kid[MINISIGN_KEYID_HEX];

	if (!p->has_signature)
		return package__err(ENOKEY, "%s: the package is not signed",
			       p->path);
	minisign__keyid_hex(p->sig.keyid, kid);
	if (keyid_hex)
		snprintf(keyid_hex, MINISIGN_KEYID_HEX, "%s", kid);
	if (!pk) {
		if (trust__find(p->sig.keyid, &te) < 0)
			return package__err(ENOKEY, "%s: signed by key %s, which is "
				       "not in the trust store (add it with "
				       "'appliance trust add KEY.pub')",
				       p->path, kid);
		pk = &te.pk;
	}
	if (minisign__verify_buffer(pk, &p->sig, p->manifest_text,
				    p->manifest_len, trusted_comment) < 0)
		return package__err(EBADMSG, "%s: bad signature: %s", p->path,
			       minisign__error());
	return 0;
}

static int check_member(struct package *p, int i)
{
	struct package_member *m = &p->members[i];
	uint8_t h[32];
	int rc = package__sha256_range(p->fd, m->offset, m->size, h, -1);

	if (rc < 0) {
		char why[sizeof(package_errbuf)];
		return package__err(EIO, "%s: member '%s': %s", p->path,
				    m->name, package__error_copy(why,
								 sizeof(why)));
	}
	if (memcmp(h, m->sha256, 32) != 0)
		return package__err(EBADMSG, "%s: member '%s' does not match the "
			       "SHA-256 in the manifest (tampered or "
			       "damaged)", p->path, m->name);
	return 0;
}

const char *package__leaf_hash_name(enum package_leaf_hash alg)
{
	return alg == PACKAGE_LEAF_SHA256 ? "sha256" : "blake3";
}

int package__leaf_hash_parse(const char *name, enum package_leaf_hash *alg)
{
	if (strcmp(name, "blake3") == 0)
		*alg = PACKAGE_LEAF_BLAKE3;
	else if (strcmp(name, "sha256") == 0)
		*alg = PACKAGE_LEAF_SHA256;
	else
		return -1;
	return 0;
}

void package__leaf(enum package_leaf_hash alg, const void *data, size_t len,
		   uint8_t out[32])
{
	unsigned int hl = 32;

	if (alg == PACKAGE_LEAF_BLAKE3)
		blake3__hash(data, len, out);
	else if (!EVP_Digest(data, len, out, &hl, EVP_sha256(), NULL))
		memset(out, 0, 32);   /* matches no real leaf: refused */
}

static int verify_leaf(const struct package *p, uint64_t cluster,
		       const void *data, size_t len)
{
	uint8_t h[32];

	if (cluster >= p->nr_leaves)
		return -1;
	package__leaf(p->leaf_hash, data, len, h);
	return memcmp(h, p->leaves + cluster * 32, 32) == 0 ? 0 : -1;
}

/* Size of the last cluster of the disk (the full size if it is whole). */
static size_t tail_cluster_len(const struct package *p)
{
	uint64_t t = p->disk_virtual_size % p->hash_cluster;

	return t ? (size_t)t : p->hash_cluster;
}

/* Parts per cluster in the disk-subtrees member (entries it holds), and
 * how many of them cluster c has (0: c is checked whole). */
static size_t subtree_entries(const struct package *p)
{
	return p->hash_cluster / p->subtree_size;
}

static size_t subtree_parts(const struct package *p, uint64_t c)
{
	size_t len = c + 1 == p->nr_leaves ? tail_cluster_len(p)
					   : p->hash_cluster;
	size_t n = (len + p->subtree_size - 1) / p->subtree_size;

	return n >= 2 ? n : 0;
}

/* Cluster c's entries of the disk-subtrees member into cvs (entries * 32
 * bytes).  Not authenticated: the caller merges them to the leaf. */
static int read_subtree_cvs(const struct package *p, uint64_t c, uint8_t *cvs)
{
	size_t bytes = subtree_entries(p) * 32;

	return package__read_at(p->fd, cvs, bytes,
				p->members[p->subtrees].offset + c * bytes);
}

/* 1 if the n CVs at cvs merge to cluster c's leaf. */
static int cvs_match_leaf(const struct package *p, uint64_t c,
			  const uint8_t *cvs, size_t n)
{
	uint8_t work[256 * 32], root[32];

	memcpy(work, cvs, n * 32);
	blake3__root_from_cvs(work, n, root);
	return memcmp(root, p->leaves + c * 32, 32) == 0;
}

/*
 * A cache of clusters' CVs that merged to their leaves, so that random
 * reads of the same region do not read and merge them again (a pread
 * and four SIMD parent levels per read: a third of the cost of checking
 * a 4 KiB read).  Direct-mapped, at most 8 MiB of CVs (16384 clusters
 * with 4 KiB parts: 1 GiB of disk), resident only as clusters are read.
 * Sized by bytes because random reads over a disk larger than the cache
 * miss in proportion: with 2048 slots, half the random 4 KiB reads of a
 * 256 MiB disk read and merged CVs again (0.41x of unverified reads
 * against 0.49x with the whole disk cached).  Slots are guarded by
 * striped locks: the view calls from several threads.  Entries are
 * copied in and out, never pointed to.
 */
#define CV_CACHE_BYTES (8u << 20)
#define CV_CACHE_LOCKS 16

struct package_cv_cache {
	pthread_mutex_t lock[CV_CACHE_LOCKS];
	size_t slots, entries;   /* entries (CVs) per slot */
	uint64_t *tag;           /* cluster + 1; 0: empty */
	uint8_t *cvs;            /* slots * entries * 32 */
};

static struct package_cv_cache *cv_cache_new(const struct package *p)
{
	struct package_cv_cache *cc = calloc(1, sizeof(*cc));

	if (!cc)
		return NULL;
	cc->entries = subtree_entries(p);
	cc->slots = CV_CACHE_BYTES / (cc->entries * 32);
	if (p->nr_leaves < cc->slots)
		cc->slots = p->nr_leaves;
	cc->tag = calloc(cc->slots, sizeof(*cc->tag));
	cc->cvs = malloc(cc->slots * cc->entries * 32);
	if (!cc->tag || !cc->cvs) {
		free(cc->tag);
		free(cc->cvs);
		free(cc);
		return NULL;
	}
	for (int i = 0; i < CV_CACHE_LOCKS; i++)
		pthread_mutex_init(&cc->lock[i], NULL);
	return cc;
}

static void cv_cache_free(struct package_cv_cache *cc)
{
	if (!cc)
		return;
	for (int i = 0; i < CV_CACHE_LOCKS; i++)
		pthread_mutex_destroy(&cc->lock[i]);
	free(cc->tag);
	free(cc->cvs);
	free(cc);
}

/* CVs [j, j + k) of cluster c into out if the cache has c; 1 if so. */
static int cv_cache_get(struct package_cv_cache *cc, uint64_t c, size_t j,
			size_t k, uint8_t *out)
{
	size_t s = c % cc->slots;
	pthread_mutex_t *l = &cc->lock[s % CV_CACHE_LOCKS];
	int hit;

	pthread_mutex_lock(l);
	hit = cc->tag[s] == c + 1;
	if (hit)
		memcpy(out, cc->cvs + (s * cc->entries + j) * 32, k * 32);
	pthread_mutex_unlock(l);
	return hit;
}

static void cv_cache_put(struct package_cv_cache *cc, uint64_t c,
			 const uint8_t *cvs, size_t n)
{
	size_t s = c % cc->slots;
	pthread_mutex_t *l = &cc->lock[s % CV_CACHE_LOCKS];

	pthread_mutex_lock(l);
	memcpy(cc->cvs + s * cc->entries * 32, cvs, n * 32);
	cc->tag[s] = c + 1;
	pthread_mutex_unlock(l);
}

/*
 * Parts of the disk checked once (FORMAT.md, "Checked once").  A read
 * that hashed a part and found it genuine sets the part's bit; a later
 * read of the part skips the hash if the package file has stood leased
 * all along, so its bytes are the ones that were checked.  The bit is
 * looked at after the bytes are read (the callbacks get them read):
 * file_lease__unbroken() vouches only for reads already done.  Units are
 * the parts of disk-subtrees, or whole clusters without that member.
 * One bit per 4 KiB of disk: 32 MiB of bitmap per TiB, calloc'd, so
 * resident only where the guest reads.
 */
struct package_checked {
	struct file_lease *lease;
	uint64_t *bits;
	size_t units;          /* per cluster */
	uint64_t skipped;      /* atomic: reads served without hashing */
};

static struct package_checked *checked_new(struct package *p)
{
	struct package_checked *ck = calloc(1, sizeof(*ck));

	if (!ck)
		return NULL;
	ck->units = p->subtrees >= 0 ? subtree_entries(p) : 1;
	ck->bits = calloc((p->nr_leaves * ck->units + 63) / 64, 8);
	if (!ck->bits || file_lease__take(p->fd, &ck->lease) < 0) {
		free(ck->bits);
		free(ck);
		return NULL;   /* every read is hashed, as without */
	}
	return ck;
}

static void checked_free(struct package_checked *ck)
{
	if (!ck)
		return;
	file_lease__release(ck->lease);
	free(ck->bits);
	free(ck);
}

/* 1 if units [j, j + k) of cluster c were all checked and the file is
 * unchanged since: the bytes just read are those. */
static int checked_before(struct package_checked *ck, uint64_t c, size_t j,
			  size_t k)
{
	if (!ck)
		return 0;
	for (uint64_t u = c * ck->units + j; u < c * ck->units + j + k; u++)
		if (!(__atomic_load_n(&ck->bits[u / 64], __ATOMIC_RELAXED) &
		      (1ull << (u % 64))))
			return 0;
	if (!file_lease__unbroken(ck->lease))
		return 0;
	__atomic_fetch_add(&ck->skipped, 1, __ATOMIC_RELAXED);
	return 1;
}

static void checked_mark(struct package_checked *ck, uint64_t c, size_t j,
			 size_t k)
{
	if (!ck)
		return;
	for (uint64_t u = c * ck->units + j; u < c * ck->units + j + k; u++)
		__atomic_fetch_or(&ck->bits[u / 64], 1ull << (u % 64),
				  __ATOMIC_RELAXED);
}

/* The part checker of a package without disk-subtrees, whose clusters
 * can only be checked whole: a small read of a cluster checked before
 * (the file unchanged since) needs no check, nor the rest of the
 * cluster read for one; 1 sends the view to check the whole cluster. */
static int checked_part_cb(void *opaque, uint64_t c, size_t off,
			   const void *data, size_t len)
{
	const struct package *p = opaque;

	(void)off;
	(void)data;
	(void)len;
	return c < p->nr_leaves && checked_before(p->checked, c, 0, 1) ? 0 : 1;
}

uint64_t package__disk_checks_skipped(const struct package *p)
{
	return p->checked ? __atomic_load_n(&p->checked->skipped,
					     __ATOMIC_RELAXED) : 0;
}

/*
 * The verified view's part checker: bytes [off, off + len) of cluster c
 * are genuine if each part's CV is the entry the disk-subtrees member
 * has for it, once those entries are shown to merge to the signed leaf.
 * Entries that do not (or cannot be read) make the view check the whole
 * cluster instead: a damaged optional member costs speed, not the data.
 */
static int subtree_verify_cb(void *opaque, uint64_t c, size_t off,
			     const void *data, size_t len)
{
	const struct package *p = opaque;
	const uint8_t *d = data;
	uint8_t cvs[256 * 32], cv[32];
	size_t n, ps = p->subtree_size, j = off / ps;
	size_t k = (len + ps - 1) / ps;   /* parts to check */

	if (c >= p->nr_leaves || !(n = subtree_parts(p, c)))
		return 1;
	if (j + k > n)
		return -1;
	if (checked_before(p->checked, c, j, k))
		return 0;
	if (!cv_cache_get(p->cv_cache, c, j, k, cvs + 32 * j)) {
		if (read_subtree_cvs(p, c, cvs) < 0 ||
		    !cvs_match_leaf(p, c, cvs, n))
			return 1;
		cv_cache_put(p->cv_cache, c, cvs, n);
	}
	for (; len; j++) {
		size_t l = len < ps ? len : ps;
		blake3__subtree_cv(d, l, j * (ps / BLAKE3__CHUNK_LEN), cv);
		if (memcmp(cv, cvs + 32 * j, 32) != 0)
			return -1;
		d += l;
		len -= l;
	}
	checked_mark(p->checked, c, off / ps, k);
	return 0;
}

void package__cluster_parts(const void *data, size_t len,
			    uint32_t cluster_size, uint32_t subtree_size,
			    uint8_t *entries, uint8_t leaf[32])
{
	size_t n = (len + subtree_size - 1) / subtree_size;
	uint8_t work[256 * 32];

	memset(entries, 0, (size_t)(cluster_size / subtree_size) * 32);
	if (n < 2) {
		blake3__hash(data, len, leaf);
		return;
	}
	blake3__subtree_cvs(data, len, subtree_size, entries);
	memcpy(work, entries, n * 32);
	blake3__root_from_cvs(work, n, leaf);
}

/* verify --full with disk subtrees: cluster c matches its leaf (checked
 * through its parts' CVs, so it is hashed once) and its entries in
 * disk-subtrees are exactly those CVs (zeros past them), so lazy reads
 * will accept them. */
static int check_cluster_and_subtrees(const struct package *p, uint64_t c,
				      const void *data, size_t len)
{
	uint8_t mine[256 * 32], stored[256 * 32], leaf[32];
	size_t bytes = subtree_entries(p) * 32;

	package__cluster_parts(data, len, p->hash_cluster, p->subtree_size,
			       mine, leaf);
	if (memcmp(leaf, p->leaves + c * 32, 32) != 0)
		return package__err(EBADMSG, "%s: disk cluster %" PRIu64
				    " does not match its hash", p->path, c);
	if (read_subtree_cvs(p, c, stored) < 0)
		return package__err(EIO, "%s: cannot read the disk subtrees",
				    p->path);
	if (memcmp(mine, stored, bytes) != 0)
		return package__err(EBADMSG, "%s: member '%s': the entries for "
				    "disk cluster %" PRIu64 " are not the CVs "
				    "of its parts", p->path,
				    p->members[p->subtrees].name, c);
	return 0;
}

/* out[0..31]: the leaf of an all-zero cluster, out[32..63]: that of an
 * all-zero last cluster. */
static int zero_leaves(const struct package *p, uint8_t *out)
{
	uint8_t *z = calloc(1, p->hash_cluster);

	if (!z)
		return -1;
	package__leaf(p->leaf_hash, z, p->hash_cluster, out);
	package__leaf(p->leaf_hash, z, tail_cluster_len(p), out + 32);
	free(z);
	return 0;
}

static int open_disk_raw(struct package *p, imgfmt_image **out)
{
	struct package_member *d = &p->members[p->disk];
	struct imgfmt_open_opts o = { .format = d->format,
				      .offset = d->offset,
				      .length = d->size,
				      /* The very file the checks and the
				       * lease are about, not whatever the
				       * path names by now. */
				      .fd = p->fd,
				      /* Every use checks each cluster against
				       * its leaf, which AVD's CRC32C would
				       * only repeat. */
				      .flags = IMGFMT_OPEN_FD |
					       IMGFMT_OPEN_NO_BACKING |
					       IMGFMT_OPEN_NO_DATA_CHECKSUMS };

	if (imgfmt__open(p->path, &o, out) < 0)
		return package__err(EINVAL, "%s: disk member '%s': %s", p->path,
			       d->name, imgfmt__error());
	struct imgfmt_info info;
	if (imgfmt__info(*out, &info) < 0 ||
	    info.virtual_size != p->disk_virtual_size || info.backing_file[0]) {
		imgfmt__close(*out);
		*out = NULL;
		return package__err(EINVAL, "%s: disk member '%s' does not match "
			       "the manifest (virtual size or backing file)",
			       p->path, d->name);
	}
	return 0;
}

/* The SHA-256 of the whole disk member, on its own thread while
 * verify --full checks every leaf on the caller's: the two passes read
 * the same bytes and each is bound by its own hash, so on two cores the
 * slower one is the whole cost. */
struct disk_digest {
	struct package *p;
	pthread_t thread;
	int started, rc;
	char why[sizeof(package_errbuf)];
};

static void *disk_digest_run(void *arg)
{
	struct disk_digest *dd = arg;

	dd->rc = check_member(dd->p, dd->p->disk);
	if (dd->rc < 0)   /* package_errbuf is per thread: carry it over */
		package__error_copy(dd->why, sizeof(dd->why));
	return NULL;
}

/* Wait for the disk digest; its failure, if any, is the error to report
 * (it names the member; a bad cluster is a consequence).  Otherwise rc. */
static int disk_digest_join(struct disk_digest *dd, int rc)
{
	if (!dd->started)
		return rc;
	pthread_join(dd->thread, NULL);
	dd->started = 0;
	if (dd->rc < 0)
		return package__err(-dd->rc, "%s", dd->why);
	return rc;
}

static int verify_leaves_and_clusters(struct package *p, bool full);

int package__verify_members(struct package *p, bool full)
{
	struct disk_digest dd = { .p = p };
	int rc = 0;

	if (full) {
		dd.started = pthread_create(&dd.thread, NULL, disk_digest_run,
					    &dd) == 0;
		if (!dd.started && (rc = check_member(p, p->disk)) < 0)
			return rc;
	}
	/* The subtree CVs are checked per cluster as they are used (against
	 * the leaves, FORMAT.md), so only --full hashes their member. */
	for (int i = 0; i < p->nr_members && rc == 0; i++)
		if (i != p->disk && (full || i != p->subtrees))
			rc = check_member(p, i);
	if (rc == 0)
		rc = verify_leaves_and_clusters(p, full);
	rc = disk_digest_join(&dd, rc);
	if (rc == 0)
		p->members_verified = true;
	return rc;
}

/* Read the leaves (their member is checked already) and, when full,
 * check every cluster of the disk against its leaf. */
static int verify_leaves_and_clusters(struct package *p, bool full)
{
	uint8_t zl[64];   /* the leaves of zeros: a whole cluster, the last */
	int rc;

	free(p->leaves);
	free(p->zero_clusters);
	p->leaves = malloc(p->nr_leaves * 32 + 1);   /* never malloc(0) */
	p->zero_clusters = calloc(p->nr_leaves / 64 + 1, 8);
	if (!p->leaves || !p->zero_clusters || zero_leaves(p, zl) < 0)
		return package__err(ENOMEM, "out of memory");
	if (package__read_at(p->fd, p->leaves, p->nr_leaves * 32,
		    p->members[p->hashes].offset) < 0)
		return package__err(EIO, "%s: cannot read the disk hashes", p->path);
	/* The member was checked above, but re-read: compare again so the
	 * leaves in memory are exactly the ones the manifest names. */
	uint8_t h[32];
	unsigned int hl = 32;
	EVP_Digest(p->leaves, p->nr_leaves * 32, h, &hl, EVP_sha256(), NULL);
	if (memcmp(h, p->members[p->hashes].sha256, 32) != 0)
		return package__err(EBADMSG, "%s: disk hashes changed while being "
			       "read", p->path);
	/* A bit per cluster for leaf_zero_cb, which every read asks: a
	 * 32-byte compare per read cost 1% of random 4 KiB reads in cache
	 * misses on the leaves. */
	for (uint64_t c = 0; c < p->nr_leaves; c++) {
		const uint8_t *z = c + 1 == p->nr_leaves ? zl + 32 : zl;
		if (memcmp(p->leaves + c * 32, z, 32) == 0)
			p->zero_clusters[c / 64] |= 1ull << (c % 64);
	}
	if (full) {
		imgfmt_image *img = NULL;
		uint8_t *buf = malloc(p->hash_cluster);
		rc = buf ? open_disk_raw(p, &img) : package__err(ENOMEM, "no memory");
		for (uint64_t c = 0; rc == 0 && c < p->nr_leaves; c++) {
			uint64_t off = c * p->hash_cluster;
			size_t len = p->hash_cluster;
			if (p->disk_virtual_size - off < len)
				len = (size_t)(p->disk_virtual_size - off);
			if (imgfmt__pread(img, buf, len, off) < 0)
				rc = package__err(EIO, "%s", imgfmt__error());
			else if (p->subtrees >= 0)
				rc = check_cluster_and_subtrees(p, c, buf, len);
			else if (verify_leaf(p, c, buf, len) < 0)
				rc = package__err(EBADMSG, "%s: disk cluster %" PRIu64
					     " does not match its hash",
					     p->path, c);
		}
		if (img)
			imgfmt__close(img);
		free(buf);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int leaf_verify_cb(void *opaque, uint64_t cluster, const void *data,
			  size_t len)
{
	const struct package *p = opaque;
	struct package_checked *ck = p->checked;
	size_t all = ck ? ck->units : 0;   /* the cluster's units */

	if (cluster < p->nr_leaves && checked_before(ck, cluster, 0, all))
		return 0;
	if (verify_leaf(p, cluster, data, len) < 0)
		return -1;
	checked_mark(ck, cluster, 0, all);
	return 0;
}

/* A cluster whose leaf is the leaf of zeros holds zeros: the verified
 * view serves it without reading or hashing it.  That is exactly as safe
 * as hashing what the file holds, and whatever the file holds there. */
static int leaf_zero_cb(void *opaque, uint64_t cluster, size_t len)
{
	const struct package *p = opaque;

	if (cluster >= p->nr_leaves ||
	    len != (cluster + 1 == p->nr_leaves ? tail_cluster_len(p)
						: p->hash_cluster))
		return 0;
	return (p->zero_clusters[cluster / 64] >> (cluster % 64)) & 1;
}

int package__open_disk(struct package *p, imgfmt_image **out)
{
	imgfmt_image *raw;
	int rc;

	*out = NULL;
	if (!p->members_verified)
		return package__err(EINVAL, "%s: members not verified yet", p->path);
	rc = open_disk_raw(p, &raw);
	if (rc < 0)
		return rc;
	/* Before the view reads anything: bits are set only for reads made
	 * under the lease. */
	if (!p->checked)
		p->checked = checked_new(p);
	if (imgfmt__open_verified(raw, p->hash_cluster, leaf_verify_cb,
				  leaf_zero_cb, p, out) < 0) {
		imgfmt__close(raw);
		return package__err(EINVAL, "%s", imgfmt__error());
	}
	if (p->subtrees < 0) {
		/* Small reads of clusters checked before need not read the
		 * rest of the cluster.  Without it, clusters are read whole. */
		uint32_t ps = p->hash_cluster / 2 < 4096 ? p->hash_cluster / 2
							 : 4096;
		if (p->checked)
			imgfmt__verified_parts(*out, ps, checked_part_cb);
		return 0;
	}
	/* Without the cache (out of memory) clusters are checked whole. */
	if (!p->cv_cache)
		p->cv_cache = cv_cache_new(p);
	if (p->cv_cache &&
	    imgfmt__verified_parts(*out, p->subtree_size, subtree_verify_cb) < 0) {
		imgfmt__close(*out);
		*out = NULL;
		return package__err(EINVAL, "%s", imgfmt__error());
	}
	return 0;
}

int package__extract(struct package *p, int member, int fd)
{
	struct package_member *m;
	uint8_t h[32];
	int rc;

	if (member < 0 || member >= p->nr_members)
		return package__err(EINVAL, "no such member");
	m = &p->members[member];
	rc = package__sha256_range(p->fd, m->offset, m->size, h, fd);
	if (rc == 0 && memcmp(h, m->sha256, 32) != 0)
		rc = package__err(EBADMSG, "%s: member '%s' does not match the "
			     "SHA-256 in the manifest (tampered or damaged)",
			     p->path, m->name);
	return rc;
}

const char *package__role_name(enum package_role r)
{
	return role_name(r);
}
