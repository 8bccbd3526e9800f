/*
 * tarball.c - extract a root filesystem tarball without trusting it.
 *
 * A tarball from a URL or a user's disk may try to write outside the
 * destination: absolute names ("/etc/cron.d/x"), ".." components, or a
 * symlink entry ("evil -> /etc") followed by a file entry through it
 * ("evil/passwd").  libarchive refuses all three when asked
 * (ARCHIVE_EXTRACT_SECURE_*); we also check names ourselves first so the
 * message names the entry, and refuse device nodes unless the caller
 * built the tarball itself (mmdebstrap's /dev entries).
 */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "builder/steps.h"

#define TARBALL_MAX_ENTRIES 2000000

/* Absolute, or a ".." component anywhere. */
static const char *bad_name(const char *p)
{
	if (p[0] == '/')
		return "is an absolute path";
	for (const char *s = p; *s;) {
		const char *e = strchr(s, '/');
		size_t n = e ? (size_t)(e - s) : strlen(s);
		if (n == 2 && s[0] == '.' && s[1] == '.')
			return "has a '..' component";
		if (!e)
			break;
		s = e + 1;
	}
	return NULL;
}

static int extract(struct archive *in, struct archive *out,
		   const char *archive_path, unsigned flags)
{
	struct archive_entry *e;
	size_t count = 0;
	int r;

	while ((r = archive_read_next_header(in, &e)) == ARCHIVE_OK ||
	       r == ARCHIVE_WARN) {
		const char *name = archive_entry_pathname(e);
		const char *hl = archive_entry_hardlink(e);
		const char *why;
		mode_t type = archive_entry_filetype(e);

		if (++count > TARBALL_MAX_ENTRIES)
			return build__err(E2BIG, "%s: more than %d entries",
					  archive_path, TARBALL_MAX_ENTRIES);
		if (!name || !name[0])
			return build__err(EINVAL, "%s: entry %zu has no name",
					  archive_path, count);
		if ((why = bad_name(name)))
			return build__err(EPERM, "%s: entry '%s' %s",
					  archive_path, name, why);
		if (hl && (why = bad_name(hl)))
			return build__err(EPERM, "%s: hard link '%s' -> '%s' "
					  "%s", archive_path, name, hl, why);
		if ((type == AE_IFCHR || type == AE_IFBLK) &&
		    !(flags & TARBALL_ALLOW_DEVICES))
			return build__err(EPERM, "%s: entry '%s' is a device "
					  "node (not allowed in this "
					  "tarball)", archive_path, name);
		r = archive_write_header(out, e);
		if (r < ARCHIVE_WARN)
			return build__err(EPERM, "%s: entry '%s': %s",
					  archive_path, name,
					  archive_error_string(out));
		if (archive_entry_size(e) > 0 && r >= ARCHIVE_WARN) {
			const void *buf;
			size_t size;
			la_int64_t off;
			while ((r = archive_read_data_block(in, &buf, &size,
							    &off)) ==
			       ARCHIVE_OK) {
				if (archive_write_data_block(out, buf, size,
							     off) <
				    ARCHIVE_WARN)
					return build__err(EIO, "%s: writing "
						"'%s': %s", archive_path, name,
						archive_error_string(out));
			}
			if (r != ARCHIVE_EOF)
				return build__err(EIO, "%s: reading '%s': %s",
						  archive_path, name,
						  archive_error_string(in));
		}
		if (archive_write_finish_entry(out) < ARCHIVE_WARN)
			return build__err(EIO, "%s: finishing '%s': %s",
					  archive_path, name,
					  archive_error_string(out));
	}
	if (r != ARCHIVE_EOF)
		return build__err(EINVAL, "%s: %s", archive_path,
				  archive_error_string(in));
	if (count == 0)
		return build__err(EINVAL, "%s: no entries (not a tarball?)",
				  archive_path);
	return 0;
}

int tarball__extract(const char *archive_path, const char *dest,
		     unsigned flags)
{
	struct archive *in = archive_read_new(), *out = archive_write_disk_new();
	int cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc;
	int xflags = ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME |
		     ARCHIVE_EXTRACT_ACL | ARCHIVE_EXTRACT_FFLAGS |
		     ARCHIVE_EXTRACT_XATTR |
		     ARCHIVE_EXTRACT_SECURE_SYMLINKS |
		     ARCHIVE_EXTRACT_SECURE_NODOTDOT |
		     ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS;

	if (geteuid() == 0)
		xflags |= ARCHIVE_EXTRACT_OWNER;
	if (!in || !out || cwd < 0) {
		rc = build__err(ENOMEM, "cannot set up extraction of %s",
				archive_path);
		goto done;
	}
	archive_read_support_format_tar(in);
	archive_read_support_format_gnutar(in);
	archive_read_support_filter_gzip(in);
	archive_read_support_filter_xz(in);
	archive_read_support_filter_zstd(in);
	archive_read_support_filter_bzip2(in);
	archive_write_disk_set_options(out, xflags);
	/* Owners by number: the host's /etc/passwd means nothing for the
	 * image's files. */
	if (archive_read_open_filename(in, archive_path, 1 << 16) !=
	    ARCHIVE_OK) {
		rc = build__err(ENOENT, "%s: %s", archive_path,
				archive_error_string(in));
		goto done;
	}
	/* libarchive's secure checks work on names relative to the current
	 * directory, so extract from inside dest. */
	if (chdir(dest) < 0) {
		rc = build__err(errno, "%s: %s", dest, strerror(errno));
		goto done;
	}
	rc = extract(in, out, archive_path, flags);
	if (archive_write_close(out) < ARCHIVE_WARN && rc == 0)
		rc = build__err(EIO, "%s: %s", archive_path,
				archive_error_string(out));
done:
	if (cwd >= 0) {
		if (fchdir(cwd) < 0 && rc == 0)
			rc = build__err(errno, "restoring the working "
					"directory: %s", strerror(errno));
		close(cwd);
	}
	if (in)
		archive_read_free(in);
	if (out)
		archive_write_free(out);
	return rc;
}
