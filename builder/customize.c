/*
 * customize.c - apply the recipe to the root tree: users and groups,
 * files, hostname, timezone, locale, services, first-boot commands, then
 * the build-time commands.
 *
 * The root tree came from a tarball or a package set, so its symlinks are
 * not ours to trust: /etc/resolv.conf -> /run/... or a hostile
 * "etc -> /etc" would make a naive open(root + "/etc/x") write to the
 * HOST.  Every path inside the root is therefore resolved with openat2()
 * and RESOLVE_IN_ROOT, which treats the root tree as "/" while following
 * symlinks, so nothing can leave it.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "builder/steps.h"

#define MAX_ETC_FILE (16u << 20)

static int root_fd(struct build_ctx *c)
{
	int fd = open(c->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return build__err(errno, "%s: %s", c->root, strerror(errno));
	return fd;
}

static int open_in_root(int rfd, const char *path, int flags, mode_t mode)
{
	struct open_how how = {
		.flags = (uint64_t)flags | O_CLOEXEC,
		.mode = (flags & O_CREAT) ? mode : 0,
		.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
	};
	while (path[0] == '/')
		path++;
	if (!path[0])
		path = ".";
	return (int)syscall(SYS_openat2, rfd, path, &how, sizeof(how));
}

/* A path inside the image as the recipe gives it: absolute, no "..",
 * no empty or "." components, no control characters. */
static int check_image_path(const char *what, const char *p)
{
	if (!p || p[0] != '/')
		return build__err(EINVAL, "%s '%s': must be an absolute path",
				  what, p ? p : "(none)");
	for (const char *s = p + 1; *s;) {
		const char *e = strchr(s, '/');
		size_t n = e ? (size_t)(e - s) : strlen(s);
		if (n == 0 || (n == 1 && s[0] == '.') ||
		    (n == 2 && s[0] == '.' && s[1] == '.'))
			return build__err(EINVAL, "%s '%s': empty, '.' or '..' "
					  "component", what, p);
		if (!e)
			break;
		s = e + 1;
	}
	for (const char *s = p; *s; s++)
		if ((unsigned char)*s < 0x20)
			return build__err(EINVAL, "%s: control character in "
					  "path", what);
	return 0;
}

/* Open (creating as needed, mode 0755) the directory `dir` of the image;
 * returns an O_PATH fd. */
static int mkdir_in_root(int rfd, const char *dir)
{
	char buf[4096];
	size_t n = strlen(dir);
	int fd;

	if (n >= sizeof(buf))
		return build__err(ENAMETOOLONG, "path too long: %s", dir);
	memcpy(buf, dir, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		char save = buf[i];
		buf[i] = '\0';
		fd = open_in_root(rfd, buf, O_PATH | O_DIRECTORY, 0);
		if (fd < 0 && errno == ENOENT) {
			char *slash = strrchr(buf, '/');
			*slash = '\0';
			int pfd = open_in_root(rfd, buf[0] ? buf : "/",
					       O_PATH | O_DIRECTORY, 0);
			*slash = '/';
			if (pfd < 0)
				return build__err(errno, "%s: %s", buf,
						  strerror(errno));
			if (mkdirat(pfd, slash + 1, 0755) < 0 &&
			    errno != EEXIST) {
				int e = errno;
				close(pfd);
				return build__err(e, "mkdir %s in the image: "
						  "%s", buf, strerror(e));
			}
			close(pfd);
			fd = open_in_root(rfd, buf, O_PATH | O_DIRECTORY, 0);
		}
		if (fd < 0)
			return build__err(errno, "%s in the image: %s", buf,
					  strerror(errno));
		buf[i] = save;
		if (save)
			close(fd);
		else
			return fd;
	}
	return build__err(EINVAL, "bad directory '%s'", dir);
}

/* Split "/a/b/c" into a directory fd (created) and the name "c". */
static int parent_of(int rfd, const char *path, const char **name)
{
	const char *slash = strrchr(path, '/');
	char dir[4096];
	size_t n = (size_t)(slash - path);

	*name = slash + 1;
	if (n == 0)
		return open_in_root(rfd, "/", O_PATH | O_DIRECTORY, 0);
	if (n >= sizeof(dir))
		return build__err(ENAMETOOLONG, "path too long: %s", path);
	memcpy(dir, path, n);
	dir[n] = '\0';
	return mkdir_in_root(rfd, dir);
}

/* Write a file of the image: a temporary name then rename, so a
 * symlink at `path` is replaced, never followed. */
static int root_write(int rfd, const char *path, const void *data,
		      size_t len, mode_t mode, uid_t uid, gid_t gid)
{
	const char *name;
	char tmp[300];
	int dfd = parent_of(rfd, path, &name), fd, rc = 0;
	const char *p = data;

	if (dfd < 0)
		return dfd;
	if (strlen(name) > 200) {
		close(dfd);
		return build__err(ENAMETOOLONG, "file name too long: %s",
				  path);
	}
	/* O_PATH fds cannot be used by openat for creating: reopen. */
	int wdfd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	close(dfd);
	if (wdfd < 0)
		return build__err(errno, "%s: %s", path, strerror(errno));
	snprintf(tmp, sizeof(tmp), ".%s.appliance-tmp", name);
	unlinkat(wdfd, tmp, 0);
	fd = openat(wdfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC |
		    O_NOFOLLOW, 0600);
	if (fd < 0) {
		rc = build__err(errno, "create %s in the image: %s", path,
				strerror(errno));
		close(wdfd);
		return rc;
	}
	while (len > 0) {
		ssize_t w = write(fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			rc = build__err(errno, "write %s: %s", path,
					strerror(errno));
			break;
		}
		p += w;
		len -= (size_t)w;
	}
	if (rc == 0 && fchown(fd, uid, gid) < 0 && geteuid() == 0)
		rc = build__err(errno, "chown %s: %s", path, strerror(errno));
	if (rc == 0 && fchmod(fd, mode) < 0)
		rc = build__err(errno, "chmod %s: %s", path, strerror(errno));
	close(fd);
	if (rc == 0 && renameat(wdfd, tmp, wdfd, name) < 0)
		rc = build__err(errno, "%s in the image: %s", path,
				strerror(errno));
	if (rc < 0)
		unlinkat(wdfd, tmp, 0);
	close(wdfd);
	return rc;
}

static int root_write_str(int rfd, const char *path, const char *s,
			  mode_t mode)
{
	return root_write(rfd, path, s, strlen(s), mode, 0, 0);
}

/* Read a file of the image; a missing file reads as "" (and *exists 0). */
static int root_read(int rfd, const char *path, char **out, int *exists)
{
	int fd = open_in_root(rfd, path, O_RDONLY, 0);
	size_t len = 0, cap = 4096;
	char *buf;

	*out = NULL;
	if (exists)
		*exists = fd >= 0;
	if (fd < 0 && errno != ENOENT)
		return build__err(errno, "%s in the image: %s", path,
				  strerror(errno));
	buf = malloc(cap);
	if (!buf) {
		if (fd >= 0)
			close(fd);
		return build__err(ENOMEM, "out of memory");
	}
	while (fd >= 0) {
		if (len + 1 == cap) {
			if (cap >= MAX_ETC_FILE) {
				close(fd);
				free(buf);
				return build__err(EFBIG, "%s in the image is "
						  "too large", path);
			}
			char *nb = realloc(buf, cap * 2);
			if (!nb) {
				close(fd);
				free(buf);
				return build__err(ENOMEM, "out of memory");
			}
			buf = nb;
			cap *= 2;
		}
		ssize_t n = read(fd, buf + len, cap - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	if (fd >= 0)
		close(fd);
	buf[len] = '\0';
	*out = buf;
	return 0;
}

static int root_exists(int rfd, const char *path)
{
	int fd = open_in_root(rfd, path, O_PATH, 0);
	if (fd < 0)
		return 0;
	close(fd);
	return 1;
}

static int root_symlink(int rfd, const char *path, const char *target)
{
	const char *name;
	int dfd = parent_of(rfd, path, &name), rc = 0;

	if (dfd < 0)
		return dfd;
	int wdfd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	close(dfd);
	if (wdfd < 0)
		return build__err(errno, "%s: %s", path, strerror(errno));
	unlinkat(wdfd, name, 0);
	if (symlinkat(target, wdfd, name) < 0)
		rc = build__err(errno, "symlink %s -> %s: %s", path, target,
				strerror(errno));
	close(wdfd);
	return rc;
}

/* ---- /etc/passwd, /etc/group, /etc/shadow ----------------------------- */

/* Does a colon-separated database have an entry `name`, and which ids
 * (field 3) are taken? */
static int db_has(const char *db, const char *name)
{
	size_t n = strlen(name);
	for (const char *l = db; l && *l;) {
		if (strncmp(l, name, n) == 0 && l[n] == ':')
			return 1;
		l = strchr(l, '\n');
		if (l)
			l++;
	}
	return 0;
}

static long db_id_of(const char *db, const char *name)
{
	size_t n = strlen(name);
	for (const char *l = db; l && *l;) {
		if (strncmp(l, name, n) == 0 && l[n] == ':') {
			const char *f = strchr(l + n + 1, ':');
			return f ? strtol(f + 1, NULL, 10) : -1;
		}
		l = strchr(l, '\n');
		if (l)
			l++;
	}
	return -1;
}

static int db_id_taken(const char *db, long id)
{
	for (const char *l = db; l && *l;) {
		const char *f = strchr(l, ':');
		if (f && (f = strchr(f + 1, ':')) && strtol(f + 1, NULL, 10) == id)
			return 1;
		l = strchr(l, '\n');
		if (l)
			l++;
	}
	return 0;
}

static long free_id(const char *db, long want)
{
	if (want >= 0)
		return want;
	for (long id = 1000; id < 60000; id++)
		if (!db_id_taken(db, id))
			return id;
	return -1;
}

static int append_line(char **db, const char *line)
{
	size_t a = strlen(*db), b = strlen(line);
	char *n = realloc(*db, a + b + 2);
	if (!n)
		return build__err(ENOMEM, "out of memory");
	if (a && n[a - 1] != '\n')
		n[a++] = '\n';
	memcpy(n + a, line, b + 1);
	*db = n;
	return 0;
}

/* Add `user` to the member list of `group` in a group file. */
static int group_add_member(char **db, const char *group, const char *user)
{
	size_t gl = strlen(group);
	char *l = *db;

	while (l && *l) {
		char *nl = strchr(l, '\n');
		if (strncmp(l, group, gl) == 0 && l[gl] == ':') {
			size_t end = nl ? (size_t)(nl - *db) : strlen(*db);
			int empty = end > 0 && (*db)[end - 1] == ':';
			size_t ul = strlen(user) + (empty ? 0 : 1);
			size_t total = strlen(*db);
			char *n = realloc(*db, total + ul + 1);
			if (!n)
				return build__err(ENOMEM, "out of memory");
			memmove(n + end + ul, n + end, total - end + 1);
			if (!empty)
				n[end] = ',';
			memcpy(n + end + (empty ? 0 : 1), user, strlen(user));
			*db = n;
			return 0;
		}
		l = nl ? nl + 1 : NULL;
	}
	return build__err(ENOENT, "user %s: group '%s' does not exist in the "
			  "image or the recipe", user, group);
}

static int valid_name(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > 32 || !strchr("abcdefghijklmnopqrstuvwxyz_", s[0]))
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!strchr("abcdefghijklmnopqrstuvwxyz0123456789_-", s[i]))
			return 0;
	return 1;
}

static int valid_field(const char *s)
{
	return !s || (!strchr(s, ':') && !strchr(s, '\n'));
}

static int apply_users(struct build_ctx *c, int rfd)
{
	const struct recipe *r = c->r;
	char *passwd = NULL, *group = NULL, *shadow = NULL, line[1024];
	long days = (long)(c->sde / 86400);
	int rc;

	if (r->n_users == 0 && r->n_groups == 0)
		return 0;
	if ((rc = root_read(rfd, "/etc/passwd", &passwd, NULL)) < 0 ||
	    (rc = root_read(rfd, "/etc/group", &group, NULL)) < 0 ||
	    (rc = root_read(rfd, "/etc/shadow", &shadow, NULL)) < 0)
		goto out;
	for (size_t i = 0; i < r->n_groups; i++) {
		const struct recipe_group *g = &r->groups[i];
		if (!valid_name(g->name)) {
			rc = build__err(EINVAL, "groups[%zu]: bad name '%s'",
					i, g->name ? g->name : "");
			goto out;
		}
		if (db_has(group, g->name))
			continue;
		if (g->gid >= 0 && db_id_taken(group, g->gid)) {
			rc = build__err(EEXIST, "group %s: gid %lld is already "
					"used in the image", g->name,
					(long long)g->gid);
			goto out;
		}
		long gid = free_id(group, g->gid);
		snprintf(line, sizeof(line), "%s:x:%ld:", g->name, gid);
		if ((rc = append_line(&group, line)) < 0)
			goto out;
	}
	for (size_t i = 0; i < r->n_users; i++) {
		const struct recipe_user *u = &r->users[i];
		char home[512];
		if (!valid_name(u->name)) {
			rc = build__err(EINVAL, "users[%zu]: bad name '%s' "
					"(lower case letters, digits, '_', "
					"'-')", i, u->name ? u->name : "");
			goto out;
		}
		if (!valid_field(u->password) || !valid_field(u->shell) ||
		    !valid_field(u->home)) {
			rc = build__err(EINVAL, "user %s: password, shell or "
					"home contains ':' or a newline",
					u->name);
			goto out;
		}
		if (db_has(passwd, u->name)) {
			rc = build__err(EEXIST, "user %s already exists in "
					"the base image", u->name);
			goto out;
		}
		if (u->uid >= 0 && db_id_taken(passwd, u->uid)) {
			rc = build__err(EEXIST, "user %s: uid %lld is already "
					"used in the image", u->name,
					(long long)u->uid);
			goto out;
		}
		long uid = free_id(passwd, u->uid);
		if (uid < 0) {
			rc = build__err(ENOSPC, "user %s: no free uid",
					u->name);
			goto out;
		}
		long gid = db_id_of(group, u->name);
		if (gid < 0) {
			gid = db_id_taken(group, uid) ? free_id(group, -1) : uid;
			snprintf(line, sizeof(line), "%s:x:%ld:", u->name, gid);
			if ((rc = append_line(&group, line)) < 0)
				goto out;
		}
		snprintf(home, sizeof(home), "%s", u->home ? u->home :
			 uid == 0 ? "/root" : "/home/");
		if (!u->home && uid != 0)
			snprintf(home, sizeof(home), "/home/%s", u->name);
		if ((rc = check_image_path("user home", home)) < 0)
			goto out;
		snprintf(line, sizeof(line), "%s:x:%ld:%ld::%s:%s", u->name,
			 uid, gid, home, u->shell ? u->shell : "/bin/sh");
		if ((rc = append_line(&passwd, line)) < 0)
			goto out;
		snprintf(line, sizeof(line), "%s:%s:%ld:0:99999:7:::", u->name,
			 u->password ? u->password : "!", days);
		if ((rc = append_line(&shadow, line)) < 0)
			goto out;
		for (size_t j = 0; j < u->n_groups; j++)
			if ((rc = group_add_member(&group, u->groups[j],
						   u->name)) < 0)
				goto out;
		/* Home directory, owned by the user. */
		int hfd = mkdir_in_root(rfd, home);
		if (hfd < 0) {
			rc = hfd;
			goto out;
		}
		char procp[64];
		snprintf(procp, sizeof(procp), "/proc/self/fd/%d", hfd);
		if (chown(procp, (uid_t)uid, (gid_t)gid) < 0 ||
		    chmod(procp, 0700) < 0) {
			rc = build__err(errno, "home %s: %s", home,
					strerror(errno));
			close(hfd);
			goto out;
		}
		close(hfd);
		if (u->n_ssh_keys) {
			char p[600], *keys = NULL;
			size_t klen = 0;
			snprintf(p, sizeof(p), "%s/.ssh", home);
			int sfd = mkdir_in_root(rfd, p);
			if (sfd < 0) {
				rc = sfd;
				goto out;
			}
			snprintf(procp, sizeof(procp), "/proc/self/fd/%d", sfd);
			if (chown(procp, (uid_t)uid, (gid_t)gid) < 0 ||
			    chmod(procp, 0700) < 0)
				rc = build__err(errno, "%s: %s", p,
						strerror(errno));
			close(sfd);
			for (size_t k = 0; rc == 0 && k < u->n_ssh_keys; k++) {
				const char *key = u->ssh_keys[k];
				if (strchr(key, '\n')) {
					rc = build__err(EINVAL, "user %s: ssh "
						"key %zu has a newline",
						u->name, k);
					break;
				}
				char *nk = realloc(keys, klen + strlen(key) + 2);
				if (!nk) {
					rc = build__err(ENOMEM, "oom");
					break;
				}
				keys = nk;
				klen += (size_t)sprintf(keys + klen, "%s\n", key);
			}
			snprintf(p, sizeof(p), "%s/.ssh/authorized_keys", home);
			if (rc == 0)
				rc = root_write(rfd, p, keys, klen, 0600,
						(uid_t)uid, (gid_t)gid);
			free(keys);
			if (rc < 0)
				goto out;
		}
	}
	if ((rc = root_write_str(rfd, "/etc/passwd", passwd, 0644)) < 0 ||
	    (rc = root_write_str(rfd, "/etc/group", group, 0644)) < 0 ||
	    (rc = root_write(rfd, "/etc/shadow", shadow, strlen(shadow), 0640,
			     0, (gid_t)(db_id_of(group, "shadow") > 0 ?
					db_id_of(group, "shadow") : 0))) < 0)
		goto out;
out:
	free(passwd);
	free(group);
	free(shadow);
	return rc;
}

/* "root", "1000" or a name from the image's database. */
static long resolve_owner(int rfd, const char *db_path, const char *who)
{
	char *db = NULL, *end;
	long id;

	if (!who)
		return 0;
	id = strtol(who, &end, 10);
	if (*who && !*end && id >= 0)
		return id;
	if (root_read(rfd, db_path, &db, NULL) < 0)
		return -1;
	id = db_id_of(db, who);
	free(db);
	return id;
}

static int apply_files(struct build_ctx *c, int rfd)
{
	const struct recipe *r = c->r;

	for (size_t i = 0; i < r->n_files; i++) {
		const struct recipe_file *f = &r->files[i];
		char *data = NULL, *src = NULL;
		size_t len = 0;
		int rc;

		if ((rc = check_image_path("files.path", f->path)) < 0)
			return rc;
		if (!!f->content == !!f->source)
			return build__err(EINVAL, "file %s: give exactly one of "
					  "content and source", f->path);
		long uid = resolve_owner(rfd, "/etc/passwd", f->owner);
		long gid = resolve_owner(rfd, "/etc/group", f->group);
		if (uid < 0 || gid < 0)
			return build__err(ENOENT, "file %s: owner '%s' or group "
					  "'%s' not in the image", f->path,
					  f->owner ? f->owner : "root",
					  f->group ? f->group : "root");
		if (f->source) {
			src = build__recipe_path(r, f->source);
			rc = src ? build__read_file(src, &data, &len, 1u << 30)
				 : build__err(ENOMEM, "out of memory");
			free(src);
			if (rc < 0)
				return rc;
		}
		rc = root_write(rfd, f->path, f->content ? f->content : data,
				f->content ? (f->content_len ? f->content_len :
					      strlen(f->content)) : len,
				f->has_mode ? (f->mode & 07777) : 0644,
				(uid_t)uid, (gid_t)gid);
		free(data);
		if (rc < 0)
			return rc;
		build__log(c, "# file %s\n", f->path);
	}
	return 0;
}

static int apply_system(struct build_ctx *c, int rfd)
{
	const struct recipe *r = c->r;
	const char *host = r->hostname ? r->hostname : r->name;
	const char *tz = r->timezone ? r->timezone : "UTC";
	const char *loc = r->locale ? r->locale : "C.UTF-8";
	char buf[512], *hosts = NULL;
	int rc;

	for (const char *s = host; *s; s++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			    "0123456789-.", *s) || strlen(host) > 63)
			return build__err(EINVAL, "hostname '%s': letters, "
					  "digits, '-' and '.', at most 63",
					  host);
	for (const char *s = tz; *s; s++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			    "0123456789-+_/", *s) || strstr(tz, "..") ||
		    tz[0] == '/')
			return build__err(EINVAL, "timezone '%s' is not a zone "
					  "name like Europe/Paris", tz);
	for (const char *s = loc; *s; s++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			    "0123456789-_.@", *s))
			return build__err(EINVAL, "locale '%s' is not a locale "
					  "name like en_US.UTF-8", loc);
	snprintf(buf, sizeof(buf), "%s\n", host);
	if ((rc = root_write_str(rfd, "/etc/hostname", buf, 0644)) < 0)
		return rc;
	if ((rc = root_read(rfd, "/etc/hosts", &hosts, NULL)) < 0)
		return rc;
	if (!strstr(hosts, "127.0.1.1")) {
		snprintf(buf, sizeof(buf), "127.0.1.1\t%s\n", host);
		rc = append_line(&hosts, buf);
		if (rc == 0)
			rc = root_write_str(rfd, "/etc/hosts", hosts, 0644);
	}
	free(hosts);
	if (rc < 0)
		return rc;
	snprintf(buf, sizeof(buf), "%s\n", tz);
	if ((rc = root_write_str(rfd, "/etc/timezone", buf, 0644)) < 0)
		return rc;
	snprintf(buf, sizeof(buf), "/usr/share/zoneinfo/%s", tz);
	if (root_exists(rfd, buf) &&
	    (rc = root_symlink(rfd, "/etc/localtime", buf)) < 0)
		return rc;
	snprintf(buf, sizeof(buf), "LANG=%s\n", loc);
	return root_write_str(rfd, "/etc/default/locale", buf, 0644);
}

static int has_systemd(int rfd)
{
	return root_exists(rfd, "/lib/systemd/systemd") ||
	       root_exists(rfd, "/usr/lib/systemd/systemd");
}

/* Enable a systemd unit the way `systemctl enable` does: a symlink in
 * TARGET.wants/ for every WantedBy= of its [Install] section. */
static int enable_unit(int rfd, const char *svc)
{
	static const char *const dirs[] = {
		"/etc/systemd/system", "/usr/lib/systemd/system",
		"/lib/systemd/system",
	};
	char unit[256], path[512], *text = NULL;
	int exists = 0, rc, n = 0;

	snprintf(unit, sizeof(unit), "%s%s", svc,
		 strchr(svc, '.') ? "" : ".service");
	if (strchr(unit, '/') || unit[0] == '.')
		return build__err(EINVAL, "service '%s': not a unit name", svc);
	for (size_t i = 0; i < 3 && !exists; i++) {
		free(text);
		snprintf(path, sizeof(path), "%s/%s", dirs[i], unit);
		if ((rc = root_read(rfd, path, &text, &exists)) < 0)
			return rc;
	}
	if (!exists) {
		free(text);
		return build__err(ENOENT, "service %s: no unit file %s in the "
				  "image (is its package installed?)", svc,
				  unit);
	}
	int in_install = 0;
	for (char *save = NULL, *l = strtok_r(text, "\n", &save); l;
	     l = strtok_r(NULL, "\n", &save)) {
		while (*l == ' ' || *l == '\t')
			l++;
		if (l[0] == '[') {
			in_install = strncmp(l, "[Install]", 9) == 0;
			continue;
		}
		if (!in_install || (strncmp(l, "WantedBy=", 9) &&
				    strncmp(l, "RequiredBy=", 11)))
			continue;
		const char *kind = l[0] == 'W' ? ".wants" : ".requires";
		char *targets = strchr(l, '=') + 1;
		for (char *s2 = NULL, *t = strtok_r(targets, " \t", &s2); t;
		     t = strtok_r(NULL, " \t", &s2)) {
			char link[700];
			if (strchr(t, '/'))
				continue;
			snprintf(link, sizeof(link), "/etc/systemd/system/%s%s/%s",
				 t, kind, unit);
			if ((rc = root_symlink(rfd, link, path)) < 0) {
				free(text);
				return rc;
			}
			n++;
		}
	}
	free(text);
	if (n == 0)
		return build__err(EINVAL, "service %s: unit %s has no "
				  "WantedBy= in [Install], so it cannot be "
				  "enabled", svc, path);
	return 0;
}

static const char first_boot_unit[] =
	"[Unit]\n"
	"Description=Appliance first-boot commands\n"
	"ConditionPathExists=/etc/appliance/first-boot.pending\n"
	"After=network.target\n"
	"\n"
	"[Service]\n"
	"Type=oneshot\n"
	"ExecStart=/bin/sh /etc/appliance/first-boot.sh\n"
	"ExecStartPost=/bin/rm -f /etc/appliance/first-boot.pending\n"
	"StandardOutput=journal+console\n"
	"\n"
	"[Install]\n"
	"WantedBy=multi-user.target\n";

static int apply_services(struct build_ctx *c, int rfd)
{
	const struct recipe *r = c->r;
	int systemd = has_systemd(rfd), rc;
	char *list = NULL;
	size_t len = 0;

	if (r->n_first_boot_commands) {
		char *script = strdup("#!/bin/sh\n# First-boot commands of "
				      "the recipe; run once.\nset -e\n");
		for (size_t i = 0; script && i < r->n_first_boot_commands;
		     i++) {
			char *ns;
			if (asprintf(&ns, "%s%s\n", script,
				     r->first_boot_commands[i]) < 0)
				ns = NULL;
			free(script);
			script = ns;
		}
		if (!script)
			return build__err(ENOMEM, "out of memory");
		rc = root_write_str(rfd, "/etc/appliance/first-boot.sh",
				    script, 0755);
		free(script);
		if (rc == 0)
			rc = root_write_str(rfd,
					    "/etc/appliance/first-boot.pending",
					    "", 0644);
		if (rc == 0 && systemd) {
			rc = root_write_str(rfd, "/etc/systemd/system/"
					    "appliance-first-boot.service",
					    first_boot_unit, 0644);
			if (rc == 0)
				rc = enable_unit(rfd, "appliance-first-boot");
		}
		if (rc < 0)
			return rc;
	}
	for (size_t i = 0; i < r->n_services; i++) {
		const char *s = r->services[i];
		if (!s[0] || strchr(s, '/') || strchr(s, '\n'))
			return build__err(EINVAL, "service '%s': bad name", s);
		if (systemd) {
			if ((rc = enable_unit(rfd, s)) < 0)
				return rc;
			continue;
		}
		char p[300];
		snprintf(p, sizeof(p), "/etc/init.d/%s", s);
		if (!root_exists(rfd, p)) {
			free(list);
			return build__err(ENOENT, "service %s: no script %s "
					  "in the image (add it under "
					  "[[files]])", s, p);
		}
		char *nl = realloc(list, len + strlen(s) + 2);
		if (!nl) {
			free(list);
			return build__err(ENOMEM, "out of memory");
		}
		list = nl;
		len += (size_t)sprintf(list + len, "%s\n", s);
	}
	if (!systemd) {
		rc = root_write(rfd, "/etc/appliance/services", list ? list : "",
				len, 0644, 0, 0);
		free(list);
		return rc;
	}
	return 0;
}

int customize__apply(struct build_ctx *c)
{
	int rfd = root_fd(c), rc;

	if (rfd < 0)
		return rfd;
	if ((rc = apply_users(c, rfd)) == 0 &&
	    (rc = apply_files(c, rfd)) == 0 &&
	    (rc = apply_system(c, rfd)) == 0)
		rc = apply_services(c, rfd);
	close(rfd);
	return rc;
}

int customize__run_commands(struct build_ctx *c)
{
	const struct recipe *r = c->r;
	char sde[64];
	const char *env[] = {
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
		"/sbin:/bin",
		"HOME=/root", "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive",
		sde, NULL,
	};

	if (r->n_build_commands == 0)
		return 0;
	if (geteuid() != 0)
		return build__err(EPERM, "build commands run in the image with "
				  "chroot, which needs root");
	snprintf(sde, sizeof(sde), "SOURCE_DATE_EPOCH=%s", c->sde_str);
	for (size_t i = 0; i < r->n_build_commands; i++) {
		const char *argv[] = { "/bin/sh", "-c",
				       r->build_commands[i], NULL };
		int rc = build__run_in_root(c, c->root, env, argv);
		if (rc < 0) {
			build__err_prefix("commands.build[%zu]", i);
			return rc;
		}
	}
	return 0;
}
