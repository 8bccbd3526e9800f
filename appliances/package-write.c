/*
 * package-write.c - making and signing appliance packages (see package.h,
 * FORMAT.md): the manifest from a build directory, the ustar container.
 *
 * Writing goes through libarchive (ustar, fixed metadata, so the same
 * inputs give the same bytes).  It is a file of its own so that programs
 * that only read packages (the runner, appliance-run) do not link
 * libarchive and the libraries it brings (libxml2, ICU, libstdc++).
 */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
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
#include "common/durable.h"
#include "common/tmpfile.h"

struct tar_source {
	const char *name;
	const void *buf;       /* in memory, or ... */
	int fd;                /* ... this many bytes of fd at offset */
	uint64_t offset, size;
};

static int write_tar(const char *out_path, const struct tar_source *src,
		     int n, int64_t mtime)
{
	struct archive *a = archive_write_new();
	struct archive_entry *e = archive_entry_new();
	uint8_t *buf = malloc(1u << 20);
	struct durable_new nf = { .fd = -1 };
	int rc = 0;

	if (!a || !e || !buf) {
		rc = package__err(ENOMEM, "out of memory");
		goto out;
	}
	/* Named only once complete (durable.h): a build or pack that fails
	 * or is killed leaves no half-written package. */
	/* 0644 whatever the umask: packages are for others to download. */
	if ((rc = durable__new_open_exact(out_path, 0644, &nf)) < 0) {
		rc = package__err(-rc, "%s: %s", out_path, strerror(-rc));
		goto out;
	}
	archive_write_set_format_ustar(a);
	archive_write_add_filter_none(a);
	if (archive_write_open_fd(a, nf.fd) != ARCHIVE_OK) {
		rc = package__err(EIO, "%s: %s", out_path,
				  archive_error_string(a));
		goto fail;
	}
	for (int i = 0; i < n; i++) {
		archive_entry_clear(e);
		archive_entry_set_pathname(e, src[i].name);
		archive_entry_set_size(e, (la_int64_t)src[i].size);
		archive_entry_set_filetype(e, AE_IFREG);
		archive_entry_set_perm(e, 0644);
		archive_entry_set_uid(e, 0);
		archive_entry_set_gid(e, 0);
		archive_entry_set_mtime(e, mtime, 0);
		if (archive_write_header(a, e) != ARCHIVE_OK) {
			rc = package__err(EIO, "%s: %s", out_path,
				  archive_error_string(a));
			goto fail;
		}
		for (uint64_t done = 0; done < src[i].size;) {
			size_t k = src[i].size - done < (1u << 20)
				? (size_t)(src[i].size - done) : (1u << 20);
			const void *p = buf;
			if (src[i].buf)
				p = (const uint8_t *)src[i].buf + done;
			else if (package__read_at(src[i].fd, buf, k,
					 src[i].offset + done) < 0) {
				rc = package__err(EIO, "reading %s", src[i].name);
				goto fail;
			}
			if (archive_write_data(a, p, k) != (la_ssize_t)k) {
				rc = package__err(EIO, "%s: %s", out_path,
					     archive_error_string(a));
				goto fail;
			}
			done += k;
		}
	}
	if (archive_write_close(a) != ARCHIVE_OK) {
		rc = package__err(EIO, "%s: %s", out_path,
				  archive_error_string(a));
		goto fail;
	}
	if ((rc = durable__new_commit(&nf, out_path, 0)) < 0) {
		rc = package__err(-rc, "%s: %s", out_path, strerror(-rc));
		goto out;
	}
	goto out;
fail:
	/* The archive first: freeing it may still write to the file. */
	archive_write_free(a);
	a = NULL;
	durable__new_discard(&nf);
out:
	if (a)
		archive_write_free(a);
	if (e)
		archive_entry_free(e);
	free(buf);
	return rc;
}

/* Append printf-style text to a growing buffer. */
struct text {
	char *s;
	size_t len, cap;
	int failed;
};

static void text_add(struct text *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void text_add(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || t->failed)
		goto fail;
	if (t->len + (size_t)n + 1 > t->cap) {
		size_t cap = (t->len + (size_t)n + 1) * 2;
		char *s = realloc(t->s, cap);
		if (!s)
			goto fail;
		t->s = s;
		t->cap = cap;
	}
	va_start(ap, fmt);
	vsnprintf(t->s + t->len, t->cap - t->len, fmt, ap);
	va_end(ap);
	t->len += (size_t)n;
	return;
fail:
	t->failed = 1;
}

static void text_str(struct text *t, const char *s)
{
	text_add(t, "\"");
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			text_add(t, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			text_add(t, "\\u%04x", c);
		else
			text_add(t, "%c", c);
	}
	text_add(t, "\"");
}

struct build_file {
	const char *role, *name, *format;
	char *path;
	int fd;
	uint64_t size;
	uint8_t sha256[32];
};

/* The disk's verification data (appliances/FORMAT.md): the leaves, in
 * memory, and with BLAKE3 leaves the CVs of every cluster's parts, in an
 * unlinked temporary file (0.8% of the disk: too much to hold for large
 * disks). */
struct disk_hashes {
	uint8_t *leaves;
	uint64_t nleaves;
	uint8_t leaves_sha[32];
	int sub_fd;             /* -1: no disk-subtrees member */
	uint64_t sub_size;
	uint8_t sub_sha[32];
};

/* Hash one cluster: its leaf and, when entries is not NULL, its part
 * CVs in the member's layout (zeros past the cluster's parts). */
static void hash_cluster(enum package_leaf_hash lh, const uint8_t *data,
			 size_t len, uint8_t leaf[32], uint8_t *entries)
{
	if (entries)
		package__cluster_parts(data, len, PACKAGE_HASH_CLUSTER,
				       PACKAGE_SUBTREE_SIZE, entries, leaf);
	else
		package__leaf(lh, data, len, leaf);
}

static int hash_disk(imgfmt_image *disk, uint64_t vsize,
		     enum package_leaf_hash lh, const char *tmp_dir,
		     struct disk_hashes *dh)
{
	size_t per = PACKAGE_HASH_CLUSTER / PACKAGE_SUBTREE_SIZE;
	size_t ebytes = per * 32, batch = 2048;   /* clusters per write */
	uint8_t zero_leaf[32], *zero_entries = NULL, *entries = NULL;
	uint8_t *cbuf = NULL;
	EVP_MD_CTX *sub_md = NULL;
	unsigned int hl = 32;
	int rc = 0;

	dh->nleaves = (vsize + PACKAGE_HASH_CLUSTER - 1) / PACKAGE_HASH_CLUSTER;
	dh->leaves = malloc(dh->nleaves * 32 + 1);
	cbuf = calloc(1, PACKAGE_HASH_CLUSTER);
	if (lh == PACKAGE_LEAF_BLAKE3) {
		zero_entries = malloc(ebytes);
		entries = malloc(ebytes * batch);
		sub_md = EVP_MD_CTX_new();
		/* Next to the package, which is written there anyway. */
		if ((dh->sub_fd = tmpfile__open(tmp_dir)) < 0) {
			rc = package__err(-dh->sub_fd, "%s: temporary file: %s",
					  tmp_dir, strerror(-dh->sub_fd));
			dh->sub_fd = -1;
			goto out;
		}
	}
	if (!dh->leaves || !cbuf ||
	    (lh == PACKAGE_LEAF_BLAKE3 && (!zero_entries || !entries ||
		!sub_md || !EVP_DigestInit_ex(sub_md, EVP_sha256(), NULL)))) {
		rc = package__err(ENOMEM, "out of memory");
		goto out;
	}
	hash_cluster(lh, cbuf, PACKAGE_HASH_CLUSTER, zero_leaf, zero_entries);
	for (uint64_t c = 0; c < dh->nleaves; c++) {
		uint64_t off = c * PACKAGE_HASH_CLUSTER;
		size_t len = PACKAGE_HASH_CLUSTER;
		uint8_t *e = entries ? entries + (c % batch) * ebytes : NULL;
		struct imgfmt_extent ext;

		if (vsize - off < len)
			len = (size_t)(vsize - off);
		/* Zero clusters (most of a fresh disk) need no read. */
		if (len == PACKAGE_HASH_CLUSTER &&
		    imgfmt__map(disk, off, len, &ext) == 0 &&
		    ext.kind == IMGFMT_EXTENT_ZERO && ext.length == len) {
			memcpy(dh->leaves + c * 32, zero_leaf, 32);
			if (e)
				memcpy(e, zero_entries, ebytes);
		} else if (imgfmt__pread(disk, cbuf, len, off) < 0) {
			rc = package__err(EIO, "%s", imgfmt__error());
			goto out;
		} else {
			hash_cluster(lh, cbuf, len, dh->leaves + c * 32, e);
		}
		if (e && (c % batch == batch - 1 || c + 1 == dh->nleaves)) {
			size_t bytes = (size_t)(c % batch + 1) * ebytes;
			if (write(dh->sub_fd, entries, bytes) != (ssize_t)bytes) {
				rc = package__err(errno ? errno : ENOSPC,
					     "%s: temporary file: %s", tmp_dir,
					     strerror(errno ? errno : ENOSPC));
				goto out;
			}
			EVP_DigestUpdate(sub_md, entries, bytes);
			dh->sub_size += bytes;
		}
	}
	EVP_Digest(dh->leaves, dh->nleaves * 32, dh->leaves_sha, &hl,
		   EVP_sha256(), NULL);
	if (sub_md)
		EVP_DigestFinal_ex(sub_md, dh->sub_sha, &hl);
out:
	free(cbuf);
	free(zero_entries);
	free(entries);
	EVP_MD_CTX_free(sub_md);
	return rc;
}

int package__create(const char *build_dir, const char *out_path,
		    const struct minisign_seckey *key,
		    const char *trusted_comment,
		    enum package_leaf_hash leaf_hash, char **written)
{
	char *path = NULL;
	struct toml_value *root = NULL;
	struct build_file bf[4] = { { 0 } };
	struct text t = { 0 };
	char err[512], why[1024], *mtext = NULL, *sigtext = NULL;
	char *mpath = NULL;
	struct disk_hashes dh = { .sub_fd = -1 };
	imgfmt_image *disk = NULL;
	int nbf = 0, rc = 0;
	size_t mlen;

	for (int i = 0; i < 4; i++)
		bf[i].fd = -1;
	if (asprintf(&mpath, "%s/manifest.toml", build_dir) < 0) {
		mpath = NULL;
		return package__err(ENOMEM, "out of memory");
	}
	{
		int fd = open(mpath, O_RDONLY | O_CLOEXEC);
		struct stat st;
		if (fd < 0 || fstat(fd, &st) < 0 ||
		    st.st_size > PACKAGE_MAX_MANIFEST) {
			rc = package__err(errno ? errno : EFBIG, "%s: %s", mpath,
				     fd < 0 ? strerror(errno) : "too large");
			if (fd >= 0)
				close(fd);
			goto out;
		}
		mlen = (size_t)st.st_size;
		mtext = malloc(mlen + 1);
		if (!mtext || package__read_at(fd, mtext, mlen, 0) < 0) {
			close(fd);
			rc = package__err(EIO, "%s: read error", mpath);
			goto out;
		}
		close(fd);
		mtext[mlen] = 0;
	}
	if (toml__parse(mtext, mlen, mpath, &root, err, sizeof(err)) < 0) {
		rc = package__err(EINVAL, "%s", err);
		goto out;
	}
	const struct toml_value *app = toml__get(root, "appliance");
	const struct toml_value *vm = toml__get(root, "vm");
	const struct toml_value *files = toml__get(root, "files");
	int64_t build_time = 0;
	const char *name, *version, *desc, *cmdline, *console;
	if (!app || !vm || !files || files->type != TOML_ARRAY ||
	    package__toml_str(app, "name", "appliance", 1, &name) < 0 ||
	    package__toml_str(app, "version", "appliance", 1, &version) < 0 ||
	    package__toml_str(app, "description", "appliance", 0, &desc) < 0 ||
	    package__toml_int(app, "build_time", "appliance", 0, INT64_MAX,
		    &build_time) < 0 ||
	    package__toml_str(vm, "cmdline", "vm", 1, &cmdline) < 0 ||
	    package__toml_str(vm, "console", "vm", 0, &console) < 0) {
		rc = package__err(EINVAL, "%s: not a build manifest: %s", mpath,
				  package__error_copy(why, sizeof(why)));
		goto out;
	}
	/* As package__open will judge them; and they may name the file. */
	if (!package__valid_name(name) || !package__valid_version(version)) {
		rc = package__err(EINVAL, "%s: appliance name '%s' or version "
				  "'%s' is not valid (appliances/FORMAT.md)",
				  mpath, name, version);
		goto out;
	}
	if (!out_path && asprintf(&path, "%s-%s.appliance", name, version) < 0)
		path = NULL;
	else if (out_path)
		path = strdup(out_path);
	if (!path) {
		rc = package__err(ENOMEM, "out of memory");
		goto out;
	}
	int64_t memory, cpus;
	if (package__toml_int(vm, "memory", "vm", 16 << 20, 1ll << 40, &memory) < 0 ||
	    package__toml_int(vm, "cpus", "vm", 1, 256, &cpus) < 0) {
		rc = package__err(EINVAL, "%s: %s", mpath,
				  package__error_copy(why, sizeof(why)));
		goto out;
	}

	/* The files that go into the package, in package order. */
	static const char *const order[] = { "kernel", "initrd", "disk" };
	for (int k = 0; k < 3; k++) {
		for (size_t i = 0; i < toml__array_len(files); i++) {
			const struct toml_value *f = toml__array_at(files, i);
			const char *role, *fname, *fmt;
			if (package__toml_str(f, "role", "files", 1, &role) < 0 ||
			    strcmp(role, order[k]) != 0)
				continue;
			if (package__toml_str(f, "name", "files", 1, &fname) < 0 ||
			    package__toml_str(f, "format", "files", 0, &fmt) < 0 ||
			    !package__valid_member_name(fname)) {
				rc = package__err(EINVAL, "%s: bad [[files]] entry",
					     mpath);
				goto out;
			}
			struct build_file *b = &bf[nbf++];
			b->role = order[k];
			b->name = fname;
			b->format = fmt;
			if (asprintf(&b->path, "%s/%s", build_dir, fname) < 0) {
				b->path = NULL;
				rc = package__err(ENOMEM, "out of memory");
				goto out;
			}
			struct stat st;
			b->fd = open(b->path, O_RDONLY | O_CLOEXEC);
			if (b->fd < 0 || fstat(b->fd, &st) < 0) {
				rc = package__err(errno, "%s: %s", b->path,
					     strerror(errno));
				goto out;
			}
			b->size = (uint64_t)st.st_size;
			rc = package__sha256_range(b->fd, 0, b->size, b->sha256, -1);
			if (rc < 0)
				goto out;
			break;
		}
	}
	struct build_file *kern = NULL, *dsk = NULL;
	for (int i = 0; i < nbf; i++) {
		if (strcmp(bf[i].role, "kernel") == 0)
			kern = &bf[i];
		if (strcmp(bf[i].role, "disk") == 0)
			dsk = &bf[i];
	}
	if (!kern || !dsk) {
		rc = package__err(EINVAL, "%s: the build has no kernel or no disk",
			     mpath);
		goto out;
	}

	/* Leaves: the hash of every cluster of the disk's content. */
	struct imgfmt_open_opts oo = { .format = dsk->format };
	if (imgfmt__open(dsk->path, &oo, &disk) < 0) {
		rc = package__err(EINVAL, "%s", imgfmt__error());
		goto out;
	}
	struct imgfmt_info info;
	imgfmt__info(disk, &info);
	if (strcmp(info.format, "avd") != 0) {
		rc = package__err(EINVAL, "%s: the disk must be AVD (it is %s)",
			     dsk->path, info.format);
		goto out;
	}
	uint64_t vsize = info.virtual_size;
	if ((rc = hash_disk(disk, vsize, leaf_hash, build_dir, &dh)) < 0)
		goto out;

	/* The package manifest. */
	char hex[65];
	text_add(&t, "# An appliance package manifest (appliances/FORMAT.md).\n"
		 "manifest_version = 1\n\n[appliance]\nname = ");
	text_str(&t, name);
	text_add(&t, "\nversion = ");
	text_str(&t, version);
	if (desc) {
		text_add(&t, "\ndescription = ");
		text_str(&t, desc);
	}
	text_add(&t, "\narchitecture = \"x86_64\"\nbuild_time = %" PRId64
		 "\n\n[vm]\nmemory = %" PRId64 "\ncpus = %" PRId64
		 "\ncmdline = ", build_time, memory, cpus);
	text_str(&t, cmdline);
	text_add(&t, "\nconsole = ");
	text_str(&t, console ? console : "serial");
	text_add(&t, "\n");
	const struct toml_value *ports = toml__get(vm, "ports");
	for (size_t i = 0; ports && i < toml__array_len(ports); i++) {
		const struct toml_value *pt = toml__array_at(ports, i);
		int64_t hp, gp;
		const char *proto;
		if (package__toml_int(pt, "host", "vm.ports", 1, 65535, &hp) < 0 ||
		    package__toml_int(pt, "guest", "vm.ports", 1, 65535, &gp) < 0 ||
		    package__toml_str(pt, "proto", "vm.ports", 0, &proto) < 0) {
			rc = package__err(EINVAL, "%s: %s", mpath,
				  package__error_copy(why, sizeof(why)));
			goto out;
		}
		text_add(&t, "\n[[vm.ports]]\nhost = %" PRId64 "\nguest = %"
			 PRId64 "\nproto = ", hp, gp);
		text_str(&t, proto ? proto : "tcp");
		text_add(&t, "\n");
	}
	for (int i = 0; i < nbf; i++) {
		package__hex_encode(bf[i].sha256, 32, hex);
		text_add(&t, "\n[[files]]\nrole = \"%s\"\nname = ", bf[i].role);
		text_str(&t, bf[i].name);
		if (strcmp(bf[i].role, "disk") == 0)
			text_add(&t, "\nformat = \"avd\"");
		text_add(&t, "\nsize = %" PRIu64 "\nsha256 = \"%s\"\n",
			 bf[i].size, hex);
	}
	package__hex_encode(dh.leaves_sha, 32, hex);
	text_add(&t, "\n[[files]]\nrole = \"disk-hashes\"\nname = "
		 "\"disk.hashes\"\nsize = %" PRIu64 "\nsha256 = \"%s\"\n",
		 dh.nleaves * 32, hex);
	if (dh.sub_fd >= 0) {
		package__hex_encode(dh.sub_sha, 32, hex);
		text_add(&t, "\n[[files]]\nrole = \"disk-subtrees\"\nname = "
			 "\"disk.subtrees\"\nsize = %" PRIu64 "\nsha256 = "
			 "\"%s\"\n", dh.sub_size, hex);
	}
	text_add(&t, "\n[disk_verity]\ndisk = ");
	text_str(&t, dsk->name);
	text_add(&t, "\nhashes = \"disk.hashes\"\ncluster_size = %u\n"
		 "virtual_size = %" PRIu64 "\nalgorithm = \"%s\"\n",
		 PACKAGE_HASH_CLUSTER, vsize, package__leaf_hash_name(leaf_hash));
	if (dh.sub_fd >= 0)
		text_add(&t, "subtrees = \"disk.subtrees\"\nsubtree_size = %u\n",
			 PACKAGE_SUBTREE_SIZE);
	if (t.failed) {
		rc = package__err(ENOMEM, "out of memory");
		goto out;
	}

	if (key) {
		struct minisign_signature sig;
		char tc[MINISIGN_TRUSTED_COMMENT_MAX + 1];
		if (!trusted_comment) {
			snprintf(tc, sizeof(tc), "appliance %s %s "
				 "build_time:%" PRId64, name, version,
				 build_time);
			trusted_comment = tc;
		}
		if (minisign__sign_buffer(key, t.s, t.len, trusted_comment,
					  &sig) < 0 ||
		    minisign__sig_format(&sig, "signature of an appliance "
					 "manifest", &sigtext) < 0) {
			rc = package__err(EIO, "signing: %s", minisign__error());
			goto out;
		}
	}

	struct tar_source src[8];
	int ns = 0;
	src[ns++] = (struct tar_source){ .name = PACKAGE_MANIFEST,
		.buf = t.s, .size = t.len, .fd = -1 };
	if (sigtext)
		src[ns++] = (struct tar_source){ .name = PACKAGE_SIGNATURE,
			.buf = sigtext, .size = strlen(sigtext), .fd = -1 };
	for (int i = 0; i < nbf; i++)
		src[ns++] = (struct tar_source){ .name = bf[i].name,
			.fd = bf[i].fd, .size = bf[i].size };
	src[ns++] = (struct tar_source){ .name = "disk.hashes",
		.buf = dh.leaves, .size = dh.nleaves * 32, .fd = -1 };
	if (dh.sub_fd >= 0)
		src[ns++] = (struct tar_source){ .name = "disk.subtrees",
			.fd = dh.sub_fd, .size = dh.sub_size };
	rc = write_tar(path, src, ns, build_time);
	if (rc == 0 && written) {
		*written = path;
		path = NULL;
	}
out:
	free(path);
	if (disk)
		imgfmt__close(disk);
	for (int i = 0; i < 4; i++) {
		if (bf[i].fd >= 0)
			close(bf[i].fd);
		free(bf[i].path);
	}
	toml__free(root);
	free(mpath);
	free(mtext);
	free(sigtext);
	free(dh.leaves);
	if (dh.sub_fd >= 0)
		close(dh.sub_fd);
	free(t.s);
	return rc;
}

int package__sign(const char *path, const struct minisign_seckey *key,
		  const char *trusted_comment)
{
	struct package *p;
	struct minisign_signature sig;
	struct tar_source src[PACKAGE_MAX_MEMBERS + 2];
	char tc[MINISIGN_TRUSTED_COMMENT_MAX + 1], *sigtext = NULL;
	int rc = package__open(path, &p), ns = 0;

	if (rc < 0)
		return rc;
	if (!trusted_comment) {
		snprintf(tc, sizeof(tc), "appliance %s %s build_time:%" PRId64,
			 p->name, p->version, p->build_time);
		trusted_comment = tc;
	}
	if (minisign__sign_buffer(key, p->manifest_text, p->manifest_len,
				  trusted_comment, &sig) < 0 ||
	    minisign__sig_format(&sig, "signature of an appliance manifest",
				 &sigtext) < 0) {
		rc = package__err(EIO, "signing: %s", minisign__error());
		goto out;
	}
	src[ns++] = (struct tar_source){ .name = PACKAGE_MANIFEST,
		.buf = p->manifest_text, .size = p->manifest_len, .fd = -1 };
	src[ns++] = (struct tar_source){ .name = PACKAGE_SIGNATURE,
		.buf = sigtext, .size = strlen(sigtext), .fd = -1 };
	for (int i = 0; i < p->nr_members; i++)
		src[ns++] = (struct tar_source){ .name = p->members[i].name,
			.fd = p->fd, .offset = p->members[i].offset,
			.size = p->members[i].size };
	rc = write_tar(path, src, ns, p->build_time);
out:
	free(sigtext);
	package__close(p);
	return rc;
}
