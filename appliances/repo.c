/*
 * repo.c - repositories, downloads and the cache (see repo.h).
 *
 * Downloads go through libcurl.  The package's SHA-256 is computed while
 * it arrives (resumed downloads hash the partial file first), so checking
 * a multi-gigabyte package costs no second pass; nothing is renamed into
 * the cache before its size, digest and signature have been checked.
 */
#include <ctype.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "appliances/download-sink.h"
#include "appliances/package.h"
#include "appliances/repo.h"
#include "appliances/trust.h"
#include "builder/toml.h"
#include "common/durable.h"

static __thread char repo_errbuf[1024];

const char *repo__error(void)
{
	return repo_errbuf;
}

static int repo_err(int err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int repo_err(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(repo_errbuf, sizeof(repo_errbuf), fmt, ap);
	va_end(ap);
	return -(err > 0 ? err : EIO);
}

static void hex(const uint8_t *in, size_t n, char *out)
{
	static const char d[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = d[in[i] >> 4];
		out[2 * i + 1] = d[in[i] & 15];
	}
	out[2 * n] = 0;
}

static int unhex(const char *s, uint8_t *out, size_t n)
{
	if (strlen(s) != 2 * n)
		return -1;
	for (size_t i = 0; i < 2 * n; i++)
		if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i]))
			return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		sscanf(s + 2 * i, "%2x", &v);
		out[i] = (uint8_t)v;
	}
	return 0;
}

static int mkdir_p(const char *path)
{
	char buf[4096];

	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return repo_err(ENAMETOOLONG, "%s: path too long", path);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return repo_err(errno, "%s: %s", buf, strerror(errno));
		*p = '/';
	}
	if (mkdir(buf, 0755) < 0 && errno != EEXIST)
		return repo_err(errno, "%s: %s", buf, strerror(errno));
	return 0;
}

/* Write a whole file atomically: temp name, fsync, rename. */
static int write_atomic(const char *path, const void *buf, size_t len)
{
	int r = durable__write_file(path, buf, len, 0644, 0);

	return r < 0 ? repo_err(-r, "%s: %s", path, strerror(-r)) : 0;
}

/* Copy the file src into out, the new file dst: copy_file_range (which
 * a file system may make a shared extent), else read and write.  0, or an
 * error naming the side that failed. */
static int copy_file(const char *src, int out, const char *dst)
{
	int in = open(src, O_RDONLY | O_CLOEXEC), rc = 0;
	char *buf = NULL;
	ssize_t k;

	if (in < 0)
		return repo_err(errno, "%s: %s", src, strerror(errno));
	while ((k = copy_file_range(in, NULL, out, NULL, 1u << 30, 0)) > 0)
		;
	if (k < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
		      errno == EOPNOTSUPP)) {
		/* Not between these files: plain copying, from where
		 * copy_file_range stopped (it moved both offsets). */
		if (!(buf = malloc(1 << 20))) {
			close(in);
			return repo_err(ENOMEM, "out of memory");
		}
		while ((k = read(in, buf, 1 << 20)) > 0) {
			ssize_t w = write(out, buf, (size_t)k);
			if (w != k) {
				int e = w < 0 ? errno : EIO;
				rc = repo_err(e, "%s: %s", dst, strerror(e));
				break;
			}
		}
	}
	if (k < 0 && rc == 0)
		rc = repo_err(errno, "copying %s to %s: %s", src, dst,
			      strerror(errno));
	free(buf);
	close(in);
	return rc;
}

static int sha256_file(const char *path, uint8_t out[32], uint64_t *size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	uint8_t *buf = malloc(1 << 20);
	ssize_t n;
	int rc = 0;

	*size = 0;
	if (fd < 0 || !ctx || !buf) {
		rc = repo_err(fd < 0 ? errno : ENOMEM, "%s: %s", path,
			      fd < 0 ? strerror(errno) : "out of memory");
		goto out;
	}
	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	while ((n = read(fd, buf, 1 << 20)) > 0) {
		EVP_DigestUpdate(ctx, buf, (size_t)n);
		*size += (uint64_t)n;
	}
	if (n < 0) {
		rc = repo_err(errno, "%s: %s", path, strerror(errno));
		goto out;
	}
	EVP_DigestFinal_ex(ctx, out, NULL);
out:
	if (fd >= 0)
		close(fd);
	EVP_MD_CTX_free(ctx);
	free(buf);
	return rc;
}

static int read_small_file(const char *path, size_t max, char **out,
			   size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;

	*out = NULL;
	if (fd < 0)
		return repo_err(errno, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || (uint64_t)st.st_size > max) {
		close(fd);
		return repo_err(EFBIG, "%s: larger than %zu bytes", path, max);
	}
	*out = malloc((size_t)st.st_size + 1);
	ssize_t n = *out ? read(fd, *out, (size_t)st.st_size) : -1;
	close(fd);
	if (n != st.st_size) {
		free(*out);
		*out = NULL;
		return repo_err(EIO, "%s: read error", path);
	}
	(*out)[n] = 0;
	*len = (size_t)n;
	return 0;
}

int repo__cache_dir(char *buf, size_t len)
{
	const char *c = getenv("APPLIANCE_CACHE");
	const char *x = getenv("XDG_CACHE_HOME");
	const char *h = getenv("HOME");

	if (c && *c)
		snprintf(buf, len, "%s", c);
	else if (x && *x)
		snprintf(buf, len, "%s/appliance", x);
	else if (h && *h)
		snprintf(buf, len, "%s/.cache/appliance", h);
	else
		return repo_err(ENOENT, "no cache directory: set HOME or "
				"APPLIANCE_CACHE");
	return 0;
}

/* ---- the index ------------------------------------------------------- */

void repo__index_free(struct repo_index *idx)
{
	free(idx->entries);
	memset(idx, 0, sizeof(*idx));
}

static int valid_rel_path(const char *s)
{
	/* packages/NAME-VERSION.appliance, no way out of the repository */
	if (!*s || s[0] == '/' || strstr(s, "..") || strlen(s) > 255)
		return 0;
	for (const char *p = s; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("/._+~-", *p))
			return 0;
	return 1;
}

int repo__index_parse(const char *text, size_t len, struct repo_index *idx)
{
	struct toml_value *root;
	char err[512];
	int64_t v;
	int rc = 0;

	memset(idx, 0, sizeof(*idx));
	if (toml__parse(text, len, REPO_INDEX, &root, err, sizeof(err)) < 0)
		return repo_err(EINVAL, "%s", err);
	const struct toml_value *iv = toml__get(root, "index_version");
	const struct toml_value *ver = toml__get(root, "version");
	const struct toml_value *gen = toml__get(root, "generated");
	const struct toml_value *exp = toml__get(root, "expires");
	const struct toml_value *apps = toml__get(root, "appliance");
	if (!iv || !toml__int(iv, &v) || v != 1) {
		rc = repo_err(EINVAL, "%s: index_version must be 1", REPO_INDEX);
		goto out;
	}
	if (!ver || !toml__int(ver, &v) || v < 1) {
		rc = repo_err(EINVAL, "%s: version must be a positive integer",
			      REPO_INDEX);
		goto out;
	}
	idx->version = (uint64_t)v;
	if (!gen || !toml__int(gen, &idx->generated) || !exp ||
	    !toml__int(exp, &idx->expires)) {
		rc = repo_err(EINVAL, "%s: generated and expires must be "
			      "integers (seconds since the epoch)", REPO_INDEX);
		goto out;
	}
	size_t n = apps ? toml__array_len(apps) : 0;
	if (apps && apps->type != TOML_ARRAY) {
		rc = repo_err(EINVAL, "%s: appliance must be an array of "
			      "tables", REPO_INDEX);
		goto out;
	}
	if (n > REPO_MAX_ENTRIES) {
		rc = repo_err(EINVAL, "%s: more than %d entries", REPO_INDEX,
			      REPO_MAX_ENTRIES);
		goto out;
	}
	idx->entries = calloc(n ? n : 1, sizeof(*idx->entries));
	if (!idx->entries) {
		rc = repo_err(ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		const struct toml_value *a = toml__array_at(apps, i);
		struct repo_entry *e = &idx->entries[i];
		const char *name = toml__string(toml__get(a, "name"));
		const char *version = toml__string(toml__get(a, "version"));
		const char *sha = toml__string(toml__get(a, "sha256"));
		const char *path = toml__string(toml__get(a, "path"));
		const struct toml_value *sz = toml__get(a, "size");
		if (!name || !version || !sha || !path || !sz ||
		    !toml__int(sz, &v) || v < 1024 || strlen(name) > 64 ||
		    strlen(version) > 64 || unhex(sha, e->sha256, 32) < 0 ||
		    !valid_rel_path(path)) {
			rc = repo_err(EINVAL, "%s:%d: entry %zu needs name, "
				      "version, size, sha256 (64 hex digits) "
				      "and a relative path inside the "
				      "repository", REPO_INDEX, a->line, i + 1);
			goto out;
		}
		snprintf(e->name, sizeof(e->name), "%s", name);
		snprintf(e->version, sizeof(e->version), "%s", version);
		snprintf(e->path, sizeof(e->path), "%s", path);
		e->size = (uint64_t)v;
		idx->nr_entries++;
	}
out:
	toml__free(root);
	if (rc < 0)
		repo__index_free(idx);
	return rc;
}

static char *index_format(const struct repo_index *idx)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	char h[65];

	if (!f)
		return NULL;
	fprintf(f, "# An appliance repository index (appliances/FORMAT.md).\n"
		"index_version = 1\nversion = %" PRIu64 "\ngenerated = %" PRId64
		"\nexpires = %" PRId64 "\n", idx->version, idx->generated,
		idx->expires);
	for (int i = 0; i < idx->nr_entries; i++) {
		const struct repo_entry *e = &idx->entries[i];
		hex(e->sha256, 32, h);
		/* Names, versions and paths were validated: no quoting
		 * needed beyond the plain string. */
		fprintf(f, "\n[[appliance]]\nname = \"%s\"\nversion = \"%s\"\n"
			"size = %" PRIu64 "\nsha256 = \"%s\"\npath = \"%s\"\n",
			e->name, e->version, e->size, h, e->path);
	}
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* Take an exclusive flock on fd, waiting for its holder as long as it
 * takes (a signal does not end the wait).  0, or -1 with errno. */
static int lock_wait(int fd)
{
	int r;

	while ((r = flock(fd, LOCK_EX)) < 0 && errno == EINTR)
		;
	return r;
}

int repo__publish(const char *dir, const char *const *packages, int n,
		  const struct minisign_seckey *key, int64_t valid_seconds)
{
	struct repo_index idx = { 0 };
	char path[4096], *text = NULL, *sigtext = NULL;
	size_t len;
	int rc, lock;

	snprintf(path, sizeof(path), "%s/packages", dir);
	if ((rc = mkdir_p(path)) < 0)
		return rc;
	/* Read the index, add to it, write it: two publishes at once would
	 * both add to the same version and the second would drop the
	 * first's entries.  The repository directory itself is the lock
	 * (no lock file for the web server to serve). */
	lock = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (lock < 0)
		return repo_err(errno, "%s: %s", dir, strerror(errno));
	if ((rc = lock_wait(lock)) < 0) {
		rc = repo_err(errno, "%s: cannot lock the repository against "
			      "another publish: %s", dir, strerror(errno));
		close(lock);
		return rc;
	}
	snprintf(path, sizeof(path), "%s/%s", dir, REPO_INDEX);
	if (access(path, F_OK) == 0) {
		if ((rc = read_small_file(path, REPO_MAX_INDEX, &text, &len)) ||
		    (rc = repo__index_parse(text, len, &idx))) {
			free(text);
			close(lock);
			return rc;
		}
		free(text);
		text = NULL;
	}
	struct repo_entry *ents = realloc(idx.entries, sizeof(*ents) *
					  (size_t)(idx.nr_entries + n + 1));
	if (!ents) {
		repo__index_free(&idx);
		close(lock);
		return repo_err(ENOMEM, "out of memory");
	}
	idx.entries = ents;

	for (int i = 0; i < n; i++) {
		struct package *p;
		struct repo_entry e = { 0 };
		char dst[4096];
		if ((rc = package__open(packages[i], &p)) < 0) {
			rc = repo_err(EINVAL, "%s", package__error());
			goto out;
		}
		snprintf(e.name, sizeof(e.name), "%s", p->name);
		snprintf(e.version, sizeof(e.version), "%s", p->version);
		package__close(p);
		snprintf(e.path, sizeof(e.path), "packages/%s-%s.appliance",
			 e.name, e.version);
		snprintf(dst, sizeof(dst), "%s/%s", dir, e.path);
		if ((rc = sha256_file(packages[i], e.sha256, &e.size)) < 0)
			goto out;
		/* Copy (packages may be large: stream), named only once
		 * complete (durable.h): the web server never serves half a
		 * package, and a killed publish leaves none.  0644 whatever
		 * the umask: the web server serves it. */
		struct durable_new nf;
		if ((rc = durable__new_open_exact(dst, 0644, &nf)) < 0) {
			rc = repo_err(-rc, "%s: %s", dst, strerror(-rc));
			goto out;
		}
		if ((rc = copy_file(packages[i], nf.fd, dst)) < 0) {
			durable__new_discard(&nf);
			goto out;
		}
		if ((rc = durable__new_commit(&nf, dst, 0)) < 0) {
			rc = repo_err(-rc, "%s: %s", dst, strerror(-rc));
			goto out;
		}
		int j;
		for (j = 0; j < idx.nr_entries; j++)
			if (!strcmp(idx.entries[j].name, e.name) &&
			    !strcmp(idx.entries[j].version, e.version))
				break;
		idx.entries[j] = e;
		if (j == idx.nr_entries)
			idx.nr_entries++;
	}
	idx.version++;
	idx.generated = (int64_t)time(NULL);
	idx.expires = idx.generated + valid_seconds;
	text = index_format(&idx);
	if (!text) {
		rc = repo_err(ENOMEM, "out of memory");
		goto out;
	}
	struct minisign_signature sig;
	char tc[128];
	snprintf(tc, sizeof(tc), "appliance repository index version %" PRIu64,
		 idx.version);
	if (minisign__sign_buffer(key, text, strlen(text), tc, &sig) < 0 ||
	    minisign__sig_format(&sig, "signature of an appliance repository "
				 "index", &sigtext) < 0) {
		rc = repo_err(EIO, "signing the index: %s", minisign__error());
		goto out;
	}
	snprintf(path, sizeof(path), "%s/%s", dir, REPO_INDEX_SIG);
	if ((rc = write_atomic(path, sigtext, strlen(sigtext))) < 0)
		goto out;
	snprintf(path, sizeof(path), "%s/%s", dir, REPO_INDEX);
	rc = write_atomic(path, text, strlen(text));
out:
	close(lock);
	free(text);
	free(sigtext);
	repo__index_free(&idx);
	return rc;
}

/* ---- downloads ------------------------------------------------------- */

struct dl {
	/* to memory */
	char *mem;
	size_t mem_len, mem_max;
	/* to a file */
	struct download_sink *sink;
	const char *path;          /* the sink's file, for messages */
	uint64_t written, limit;   /* limit 0: none */
	int too_large;
	int write_error;
	int range_ignored;   /* asked to resume, the server sent it all */
	const struct repo_pull_opts *o;
	uint64_t base, total;      /* resumed bytes, expected total */
};

static size_t dl_write(char *ptr, size_t size, size_t nmemb, void *opaque)
{
	struct dl *d = opaque;
	size_t n = size * nmemb;

	if (d->limit && d->written + n > d->limit) {
		d->too_large = 1;
		return 0; /* abort: more than announced */
	}
	if (d->sink) {
		int err = download_sink__put(d->sink, ptr, n);
		if (err) {
			d->write_error = err;
			return 0;
		}
	} else {
		if (d->mem_len + n > d->mem_max) {
			d->too_large = 1;
			return 0;
		}
		memcpy(d->mem + d->mem_len, ptr, n);
		d->mem_len += n;
	}
	d->written += n;
	return n;
}

static int dl_progress(void *opaque, curl_off_t dltotal, curl_off_t dlnow,
		       curl_off_t ultotal, curl_off_t ulnow)
{
	struct dl *d = opaque;

	(void)ultotal;
	(void)ulnow;
	if (d->o && d->o->progress)
		d->o->progress(d->o->opaque, d->base + (uint64_t)dlnow,
			       d->total ? d->total
					: d->base + (uint64_t)dltotal);
	return 0;
}

#define REPO_MIN_RATE 1024L         /* bytes/s, averaged over ... */
#define REPO_MIN_RATE_TIME 60L      /* ... this many seconds */
#define REPO_METADATA_TIMEOUT 300L  /* seconds for a whole index or sig */

/* GET url (from byte `from`), into d.  Returns 0, or <0 with a message;
 * *http_code receives the status. */
static int fetch(const char *url, struct dl *d, uint64_t from, long *http_code)
{
	static int curl_ready;
	CURL *c;
	CURLcode cr;
	char errbuf[CURL_ERROR_SIZE] = "";

	if (!curl_ready) {
		curl_global_init(CURL_GLOBAL_DEFAULT);
		curl_ready = 1;
	}
	c = curl_easy_init();
	if (!c)
		return repo_err(ENOMEM, "cannot start libcurl");
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https,file");
	curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
	curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
	/* A server that stops sending, or trickles (a slow-retrieval
	 * attack: a byte now and then keeps a 1 byte/s limit happy for
	 * weeks), is a failure, not a hang.  A package download cut this
	 * way is resumed by the next pull; metadata (the index and its
	 * signature, a few MiB at most) also has a deadline. */
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, REPO_MIN_RATE);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, REPO_MIN_RATE_TIME);
	if (!d->sink)
		curl_easy_setopt(c, CURLOPT_TIMEOUT, REPO_METADATA_TIMEOUT);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, dl_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, d);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "appliance/0.1");
	/* https is always checked against a CA; a private repository's CA
	 * can be named the way curl's users name it. */
	const char *ca = getenv("APPLIANCE_CA_BUNDLE");
	if (!ca || !*ca)
		ca = getenv("CURL_CA_BUNDLE");
	if (ca && *ca)
		curl_easy_setopt(c, CURLOPT_CAINFO, ca);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	/* Fewer, larger socket reads for a package (the default buffer
	 * is 16 KiB); the write callback still gets at most 16 KiB. */
	if (d->sink)
		curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 512L * 1024);
	if (d->o && d->o->progress) {
		curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, dl_progress);
		curl_easy_setopt(c, CURLOPT_XFERINFODATA, d);
		curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	}
	if (from)
		curl_easy_setopt(c, CURLOPT_RESUME_FROM_LARGE,
				 (curl_off_t)from);
	cr = curl_easy_perform(c);
	*http_code = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, http_code);
	curl_easy_cleanup(c);
	if (d->too_large)
		return repo_err(EFBIG, "%s: the server sent more data than "
				"announced (%" PRIu64 " bytes); refused",
				url, d->limit ? d->limit : (uint64_t)d->mem_max);
	if (d->write_error)
		return repo_err(d->write_error, "%s: writing the download: %s",
				d->path, strerror(d->write_error));
	/* libcurl refuses a 200 reply to a resume before any body. */
	d->range_ignored = cr == CURLE_RANGE_ERROR;
	if (cr != CURLE_OK)
		return repo_err(EIO, "%s: %s", url,
				errbuf[0] ? errbuf : curl_easy_strerror(cr));
	return 0;
}

static int fetch_small(const char *url, size_t max, char **out, size_t *len)
{
	struct dl d = { .mem_max = max };
	long code;
	int rc;

	d.mem = malloc(max + 1);
	if (!d.mem)
		return repo_err(ENOMEM, "out of memory");
	rc = fetch(url, &d, 0, &code);
	if (rc < 0) {
		free(d.mem);
		return rc;
	}
	d.mem[d.mem_len] = 0;
	*out = d.mem;
	*len = d.mem_len;
	return 0;
}

/* Download url into `part` (resuming what is there), hashing as it goes;
 * `size` 0: unknown (then `max` caps it).  Fills sha.  The file is
 * fsynced before this returns 0. */
static int fetch_to_file(const char *url, const char *part, uint64_t size,
			 uint64_t max, const struct repo_pull_opts *o,
			 uint8_t sha[32], uint64_t *got)
{
	struct dl d = { .o = o, .total = size, .path = part };
	uint64_t have = 0;
	long code;
	int rc = 0, err;
	int fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC, 0644);

	if (fd < 0)
		return repo_err(errno, "%s: %s", part, strerror(errno));
	/* Resume what an earlier attempt left (only when the size is
	 * known: else restart); the digest covers the file from byte 0
	 * either way. */
	struct stat st;
	if (fstat(fd, &st) < 0) {
		rc = repo_err(errno, "%s: %s", part, strerror(errno));
		goto out;
	}
	/* Truncate only what there is to drop: on ext4, truncating even
	 * an empty file to 0 makes close() start writeback of everything
	 * written since (auto_da_alloc), a second flush besides ours. */
	if (size && st.st_size > 0 && (uint64_t)st.st_size <= size) {
		have = (uint64_t)st.st_size;
	} else if (st.st_size > 0 && ftruncate(fd, 0) < 0) {
		rc = repo_err(errno, "%s: %s", part, strerror(errno));
		goto out;
	}
	if ((err = download_sink__start(fd, have, &d.sink))) {
		rc = repo_err(err, "%s: %s", part, strerror(err));
		goto out;
	}
	d.base = have;
	d.limit = size ? size - have : max;
	if (!(have == size && size)) {
		rc = fetch(url, &d, have, &code);
		if (have && (d.range_ignored || (rc == 0 && code == 200))) {
			/* The server ignored the range and sent everything:
			 * start over, once, from scratch. */
			download_sink__finish(d.sink, sha);
			d.sink = NULL;
			if (ftruncate(fd, 0) < 0) {
				rc = repo_err(errno, "%s: %s", part,
					      strerror(errno));
				goto out;
			}
			if ((err = download_sink__start(fd, 0, &d.sink))) {
				rc = repo_err(err, "%s: %s", part,
					      strerror(err));
				goto out;
			}
			d.written = 0;
			d.base = have = 0;
			d.limit = size ? size : max;
			rc = fetch(url, &d, 0, &code);
		}
	}
	/* Whatever arrived goes to the file, also after a cut connection:
	 * the next attempt resumes from it. */
	err = download_sink__finish(d.sink, sha);
	if (rc == 0 && err)
		rc = repo_err(err, "%s: writing the download: %s", part,
			      strerror(err));
	if (rc == 0) {
		*got = have + d.written;
		if (size && *got != size)
			rc = repo_err(EIO, "%s: got %" PRIu64 " bytes, the index "
				      "announced %" PRIu64, url, *got, size);
	}
	if (rc == 0 && fsync(fd) < 0)
		rc = repo_err(errno, "%s: %s", part, strerror(errno));
out:
	close(fd);
	return rc;
}

/* ---- pull ------------------------------------------------------------ */

static int verify_index_sig(const char *text, size_t len, const char *sigtext,
			    size_t siglen, const struct repo_pull_opts *o,
			    const char *url)
{
	struct minisign_signature sig;
	struct trust_entry te;
	const struct minisign_pubkey *pk = o->key;
	char kid[MINISIGN_KEYID_HEX];

	if (minisign__sig_parse(sigtext, siglen, REPO_INDEX_SIG, &sig) < 0)
		return repo_err(EBADMSG, "%s: %s", url, minisign__error());
	minisign__keyid_hex(sig.keyid, kid);
	if (!pk) {
		if (trust__find(sig.keyid, &te) < 0)
			return repo_err(ENOKEY, "%s: the index is signed by key "
					"%s, which is not trusted (see "
					"'appliance trust add')", url, kid);
		pk = &te.pk;
	}
	if (minisign__verify_buffer(pk, &sig, text, len, NULL) < 0)
		return repo_err(EBADMSG, "%s: bad index signature: %s", url,
				minisign__error());
	return 0;
}

/* The highest index version seen from a repository URL is kept in
 * state/H.version for repository URL base; id gets "state-H", the name
 * of its lock in locks/. */
static void state_path(const char *cache, const char *base, char *out,
		       size_t len, char id[64])
{
	uint8_t h[32];
	char hx[33];
	unsigned int hl = 32;

	EVP_Digest(base, strlen(base), h, &hl, EVP_sha256(), NULL);
	hex(h, 16, hx);
	snprintf(out, len, "%s/state/%s.version", cache, hx);
	snprintf(id, 64, "state-%s", hx);
}

/* Check a downloaded package file and move it into the cache. */
static int admit(const char *part, const char *cache, const char *want_name,
		 const char *want_version, const struct repo_pull_opts *o,
		 bool full, char **path)
{
	struct package *p;
	char dst[4096], kid[MINISIGN_KEYID_HEX];
	int rc = package__open(part, &p);

	if (rc < 0)
		return repo_err(EINVAL, "%s", package__error());
	if ((want_name && strcmp(p->name, want_name)) ||
	    (want_version && strcmp(p->version, want_version))) {
		rc = repo_err(EINVAL, "the package is %s %s, not %s %s as the "
			      "index says", p->name, p->version, want_name,
			      want_version ? want_version : "");
		goto out;
	}
	rc = package__verify_signature(p, o->key, kid, NULL);
	if (rc < 0 && !o->insecure) {
		rc = repo_err(-rc, "%s", package__error());
		goto out;
	}
	rc = package__verify_members(p, full);
	if (rc < 0) {
		rc = repo_err(-rc, "%s", package__error());
		goto out;
	}
	snprintf(dst, sizeof(dst), "%s/packages", cache);
	if ((rc = mkdir_p(dst)) < 0)
		goto out;
	snprintf(dst, sizeof(dst), "%s/packages/%s-%s.appliance", cache,
		 p->name, p->version);
	if (rename(part, dst) < 0) {
		rc = repo_err(errno, "%s: %s", dst, strerror(errno));
		goto out;
	}
	if ((rc = durable__fsync_dir_of(dst)) < 0) {
		rc = repo_err(-rc, "%s: syncing its directory: %s", dst,
			      strerror(-rc));
		goto out;
	}
	*path = strdup(dst);
out:
	package__close(p);
	return rc;
}

static int pull_local(const char *cache, const char *ref, char **path)
{
	char name[128], *colon;
	char **paths;
	int n, rc;

	snprintf(name, sizeof(name), "%s", ref);
	colon = strchr(name, ':');
	if (colon)
		*colon++ = 0;
	(void)cache;
	if ((rc = repo__list(&paths, &n)) < 0)
		return rc;
	const char *best = NULL;
	char bestver[65] = "";
	for (int i = 0; i < n; i++) {
		struct package *p;
		if (package__open(paths[i], &p) < 0)
			continue;
		if (!strcmp(p->name, name) &&
		    (!colon || !strcmp(p->version, colon)) &&
		    (!best || strverscmp(p->version, bestver) > 0)) {
			best = paths[i];
			snprintf(bestver, sizeof(bestver), "%s", p->version);
		}
		package__close(p);
	}
	rc = best ? 0 : repo_err(ENOENT, "%s is not in the cache (pull it "
				 "from a repository URL first)", ref);
	if (best)
		*path = strdup(best);
	for (int i = 0; i < n; i++)
		free(paths[i]);
	free(paths);
	return rc;
}

/* Two pulls of the same package at once (two `appliance run URL` in a
 * script) would both resume into one partial file, interleaving their
 * bytes.  Each holds an exclusive lock on locks/HASH (an empty file of
 * its own) from before it looks at the cache until the package is
 * admitted; the second then finds it cached, or resumes what the first
 * left.  The lock goes with the process however it ends.
 *
 * The holder removes the file as it lets go (unlock_pull), so locks/
 * keeps only the locks of pulls running or killed.  A waiter may then
 * hold the lock of a file no longer in locks/, while a third pull locks
 * a new one under the name: so a lock counts only if, once taken, the
 * name still leads to the locked file; else the pull tries again.
 * o NULL: do not wait; -EWOULDBLOCK if another holds it (no message). */
struct pull_lock {
	int fd;          /* -1: not held */
	char path[4400];
};

static int lock_pull(const char *cache, const char *id,
		     const struct repo_pull_opts *o, const char *what,
		     struct pull_lock *l)
{
	struct stat held, named;
	int rc, told = 0;

	l->fd = -1;
	snprintf(l->path, sizeof(l->path), "%s/locks", cache);
	if ((rc = mkdir_p(l->path)) < 0)
		return rc;
	snprintf(l->path, sizeof(l->path), "%s/locks/%s", cache, id);
	for (;;) {
		int fd = open(l->path, O_RDWR | O_CREAT | O_CLOEXEC |
			      O_NOFOLLOW, 0644);
		if (fd < 0)
			return repo_err(errno, "%s: %s", l->path,
					strerror(errno));
		if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
			if (errno == EWOULDBLOCK && !o) {
				close(fd);
				return -EWOULDBLOCK;
			}
			if (errno == EWOULDBLOCK && o->waiting && !told++)
				o->waiting(o->opaque, what);
			if (lock_wait(fd) < 0) {
				int e = errno;
				close(fd);
				return repo_err(e, "%s: %s", l->path,
						strerror(e));
			}
		}
		int gone = 0;
		if (fstat(fd, &held) < 0 ||
		    (lstat(l->path, &named) < 0 && !(gone = errno == ENOENT))) {
			int e = errno;
			close(fd);
			return repo_err(e, "%s: %s", l->path, strerror(e));
		}
		if (!gone && held.st_dev == named.st_dev &&
		    held.st_ino == named.st_ino) {
			l->fd = fd;
			return 0;
		}
		close(fd);   /* removed by the holder we waited for */
	}
}

static void unlock_pull(struct pull_lock *l)
{
	if (l->fd < 0)
		return;
	unlink(l->path);
	close(l->fd);
	l->fd = -1;
}

int repo__pull(const char *ref, const struct repo_pull_opts *opts,
	       char **path)
{
	struct repo_pull_opts defaults = { 0 };
	const struct repo_pull_opts *o = opts ? opts : &defaults;
	char cache[4096], part[4400], url[8192], base[4096], want[200];
	char *text = NULL, *sigtext = NULL;
	size_t len, siglen;
	struct repo_index idx = { 0 };
	int64_t now = o->now ? o->now : (int64_t)time(NULL);
	uint8_t sha[32];
	uint64_t got;
	struct pull_lock lock = { .fd = -1 };
	int rc;

	*path = NULL;
	if ((rc = repo__cache_dir(cache, sizeof(cache))) < 0)
		return rc;
	if (!strstr(ref, "://"))
		return pull_local(cache, ref, path);
	snprintf(part, sizeof(part), "%s/partial", cache);
	if ((rc = mkdir_p(part)) < 0)
		return rc;
	size_t rl = strlen(ref);
	if (rl > 4000)
		return repo_err(EINVAL, "URL too long");

	if (rl > 10 && strcmp(ref + rl - 10, ".appliance") == 0) {
		/* One package by URL: its own signature is the check. */
		uint8_t h[32];
		unsigned int hl = 32;
		char hx[65];
		EVP_Digest(ref, rl, h, &hl, EVP_sha256(), NULL);
		hex(h, 16, hx);
		snprintf(part, sizeof(part), "%s/partial/%s.part", cache, hx);
		if ((rc = lock_pull(cache, hx, o, "the package", &lock)) < 0)
			return rc;
		rc = fetch_to_file(ref, part, 0, 64ull << 30, o, sha, &got);
		if (rc == 0)
			rc = admit(part, cache, NULL, NULL, o, true, path);
		if (rc < 0)
			unlink(part);
		unlock_pull(&lock);
		return rc;
	}

	/* URL/NAME[:VERSION]: the repository at URL. */
	const char *slash = strrchr(ref, '/');
	snprintf(base, sizeof(base), "%.*s", (int)(slash - ref), ref);
	snprintf(want, sizeof(want), "%s", slash + 1);
	char *wver = strchr(want, ':');
	if (wver)
		*wver++ = 0;
	if (!want[0])
		return repo_err(EINVAL, "%s: name the appliance after the "
				"repository URL (URL/NAME[:VERSION])", ref);
	/* The index and its signature are two requests: a publish between
	 * them pairs one version's index with another's signature.  Fetch
	 * the pair once more before calling it bad; a forged or damaged
	 * index fails again. */
	for (int attempt = 0;; attempt++) {
		snprintf(url, sizeof(url), "%s/%s", base, REPO_INDEX);
		if ((rc = fetch_small(url, REPO_MAX_INDEX, &text, &len)) < 0)
			return rc;
		snprintf(url, sizeof(url), "%s/%s", base, REPO_INDEX_SIG);
		rc = fetch_small(url, MINISIGN_SIGFILE_MAX, &sigtext, &siglen);
		if (rc == 0)
			rc = verify_index_sig(text, len, sigtext, siglen, o,
					      base);
		if (rc != -EBADMSG || attempt == 1 || o->insecure)
			break;
		free(text);
		free(sigtext);
		text = sigtext = NULL;
	}
	if (rc < 0 && !o->insecure)
		goto out;
	if ((rc = repo__index_parse(text, len, &idx)) < 0)
		goto out;
	if (now > idx.expires) {
		rc = repo_err(ESTALE, "%s: the index expired %" PRId64
			      " seconds ago (version %" PRIu64 "); refusing "
			      "stale metadata", base, now - idx.expires,
			      idx.version);
		goto out;
	}
	char sp[4300], sid[64], *st = NULL;
	size_t stlen;
	state_path(cache, base, sp, sizeof(sp), sid);
	/* From reading the version seen to recording this one: pulls from
	 * one repository at once must not record a lower version over a
	 * higher one (that would re-admit the rollback between them). */
	if ((rc = lock_pull(cache, sid, o, "the repository's index",
			    &lock)) < 0)
		goto out;
	if (read_small_file(sp, 64, &st, &stlen) == 0) {
		uint64_t seen = strtoull(st, NULL, 10);
		free(st);
		if (idx.version < seen) {
			rc = repo_err(ESTALE, "%s: index version %" PRIu64 " is "
				      "older than version %" PRIu64 " already "
				      "seen: refusing a rolled-back index",
				      base, idx.version, seen);
			goto out;
		}
	}
	const struct repo_entry *e = NULL;
	for (int i = 0; i < idx.nr_entries; i++) {
		const struct repo_entry *c = &idx.entries[i];
		if (strcmp(c->name, want) || (wver && strcmp(c->version, wver)))
			continue;
		if (!e || strverscmp(c->version, e->version) > 0)
			e = c;
	}
	if (!e) {
		rc = repo_err(ENOENT, "%s: no appliance %s%s%s in the index",
			      base, want, wver ? ":" : "", wver ? wver : "");
		goto out;
	}
	/* Remember the version before downloading: a later rollback is
	 * refused even if this download fails.  Not recording it would
	 * silently drop that protection, so it is an error. */
	{
		char d[4200], num[32];
		snprintf(d, sizeof(d), "%s/state", cache);
		snprintf(num, sizeof(num), "%" PRIu64 "\n", idx.version);
		if ((rc = mkdir_p(d)) < 0 ||
		    (rc = write_atomic(sp, num, strlen(num))) < 0)
			goto out;
	}
	unlock_pull(&lock);
	char hx[65];
	hex(e->sha256, 32, hx);
	snprintf(part, sizeof(part), "%s/partial/%s.part", cache, hx);
	if ((rc = lock_pull(cache, hx, o, "the package", &lock)) < 0)
		goto out;
	/* Already cached with exactly these bytes: nothing to download. */
	{
		char have[4400];
		uint8_t hsha[32];
		uint64_t hsize;
		snprintf(have, sizeof(have), "%s/packages/%s-%s.appliance",
			 cache, e->name, e->version);
		if (access(have, F_OK) == 0 &&
		    sha256_file(have, hsha, &hsize) == 0 &&
		    hsize == e->size && memcmp(hsha, e->sha256, 32) == 0) {
			*path = strdup(have);
			rc = *path ? 0 : repo_err(ENOMEM, "out of memory");
			goto out;
		}
	}
	snprintf(url, sizeof(url), "%s/%s", base, e->path);
	rc = fetch_to_file(url, part, e->size, e->size, o, sha, &got);
	if (rc < 0) {
		/* Keep a partial download to resume, unless it is bad or
		 * there is nothing in it. */
		struct stat pst;
		if (rc == -EFBIG || stat(part, &pst) < 0 || pst.st_size == 0)
			unlink(part);
		goto out;
	}
	if (memcmp(sha, e->sha256, 32) != 0) {
		unlink(part);
		rc = repo_err(EBADMSG, "%s: SHA-256 does not match the index "
			      "(tampered or damaged download); removed", url);
		goto out;
	}
	rc = admit(part, cache, e->name, e->version, o, false, path);
	if (rc < 0)
		unlink(part);
out:
	unlock_pull(&lock);
	free(text);
	free(sigtext);
	repo__index_free(&idx);
	return rc;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int repo__list(char ***paths, int *n)
{
	char cache[4096], dir[4200];
	DIR *d;
	struct dirent *de;
	int cap = 16;

	*paths = NULL;
	*n = 0;
	if (repo__cache_dir(cache, sizeof(cache)) < 0)
		return -ENOENT;
	snprintf(dir, sizeof(dir), "%s/packages", cache);
	d = opendir(dir);
	if (!d)
		return 0;
	*paths = malloc(sizeof(char *) * (size_t)cap);
	while (*paths && (de = readdir(d))) {
		size_t l = strlen(de->d_name);
		if (l < 11 || strcmp(de->d_name + l - 10, ".appliance"))
			continue;
		if (*n == cap) {
			char **np = realloc(*paths, sizeof(char *) *
					    (size_t)(cap *= 2));
			if (!np)
				break;
			*paths = np;
		}
		if (asprintf(&(*paths)[*n], "%s/%s", dir, de->d_name) >= 0)
			(*n)++;
	}
	closedir(d);
	if (*n > 1)
		qsort(*paths, (size_t)*n, sizeof(char *), cmp_str);
	return 0;
}

int repo__remove(const char *ref)
{
	char name[128], *ver;
	char **paths;
	int n, removed = 0;

	snprintf(name, sizeof(name), "%s", ref);
	ver = strchr(name, ':');
	if (ver)
		*ver++ = 0;
	if (repo__list(&paths, &n) < 0)
		return repo_err(ENOENT, "no cache");
	for (int i = 0; i < n; i++) {
		struct package *p;
		int match = 0;
		if (package__open(paths[i], &p) == 0) {
			match = !strcmp(p->name, name) &&
				(!ver || !strcmp(p->version, ver));
			package__close(p);
		}
		if (match && unlink(paths[i]) == 0)
			removed++;
		free(paths[i]);
	}
	free(paths);
	return removed ? removed : repo_err(ENOENT, "%s is not in the cache",
					    ref);
}

/* Each partial/ID.part of the cache, and its size. */
static int for_each_partial(int (*fn)(const char *cache, const char *id,
				      const char *path, uint64_t size,
				      void *arg),
			    void *arg)
{
	char cache[4096], dir[4200], path[4500];
	DIR *d;
	struct dirent *de;
	struct stat st;
	int rc = 0;

	if (repo__cache_dir(cache, sizeof(cache)) < 0)
		return 0;
	snprintf(dir, sizeof(dir), "%s/partial", cache);
	if (!(d = opendir(dir)))
		return 0;
	while (rc == 0 && (de = readdir(d))) {
		size_t l = strlen(de->d_name);
		if (l < 6 || l > 200 || strcmp(de->d_name + l - 5, ".part"))
			continue;
		char id[200];
		snprintf(id, sizeof(id), "%.*s", (int)(l - 5), de->d_name);
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (lstat(path, &st) == 0 && S_ISREG(st.st_mode))
			rc = fn(cache, id, path, (uint64_t)st.st_size, arg);
	}
	closedir(d);
	return rc;
}

struct partials {
	int count, busy;
	uint64_t bytes;
};

static int count_partial(const char *cache, const char *id, const char *path,
			 uint64_t size, void *arg)
{
	struct partials *t = arg;

	(void)cache;
	(void)id;
	(void)path;
	t->count++;
	t->bytes += size;
	return 0;
}

int repo__partials(int *count, uint64_t *bytes)
{
	struct partials t = { 0 };
	int rc = for_each_partial(count_partial, &t);

	*count = t.count;
	*bytes = t.bytes;
	return rc;
}

/* Under the package's lock, so never the file a pull is writing. */
static int remove_partial(const char *cache, const char *id, const char *path,
			  uint64_t size, void *arg)
{
	struct partials *t = arg;
	struct pull_lock lock;
	int rc = lock_pull(cache, id, NULL, NULL, &lock);

	if (rc == -EWOULDBLOCK) {
		t->busy++;
		return 0;
	}
	if (rc < 0)
		return rc;
	if (unlink(path) == 0) {
		t->count++;
		t->bytes += size;
	} else if (errno != ENOENT) {
		rc = repo_err(errno, "%s: %s", path, strerror(errno));
	}
	unlock_pull(&lock);
	return rc;
}

int repo__remove_partials(uint64_t *bytes, int *busy)
{
	struct partials t = { 0 };
	int rc = for_each_partial(remove_partial, &t);

	*bytes = t.bytes;
	*busy = t.busy;
	return rc < 0 ? rc : t.count;
}
