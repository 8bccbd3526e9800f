/*
 * build.c - builder__build(): run the steps of a build in order.
 *
 *   busybox/tarball: kernel, rootfs, customize, commands, initramfs, disk,
 *                    export, manifest
 *   debian:          rootfs, customize, commands, kernel, disk, export,
 *                    manifest
 *
 * Scratch work happens in a private directory under the cache (a Debian
 * root is hundreds of MB, more than a tmpfs /tmp may hold); the appliance
 * directory is assembled as OUTPUT.tmp-PID next to the destination and
 * renamed into place only when every step succeeded, so the output path
 * holds either the previous result or the new one, never half of one.
 */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "builder/steps.h"
#include "common/durable.h"

struct step {
	const char *name;
	int (*run)(struct build_ctx *c, int *cached);
};

static int st_kernel(struct build_ctx *c, int *cached)
{
	if (c->r->base.type == RECIPE_BASE_DEBIAN)
		return rootfs__debian_kernel(c);
	return kernel__prepare(c, cached);
}

static int st_rootfs(struct build_ctx *c, int *cached)
{
	switch (c->r->base.type) {
	case RECIPE_BASE_DEBIAN: return rootfs__debian(c, cached);
	case RECIPE_BASE_BUSYBOX: return rootfs__busybox(c);
	case RECIPE_BASE_TARBALL: return rootfs__tarball(c);
	}
	return build__err(EINVAL, "unknown base type %d", c->r->base.type);
}

static int st_customize(struct build_ctx *c, int *cached)
{
	(void)cached;
	return customize__apply(c);
}

static int st_commands(struct build_ctx *c, int *cached)
{
	(void)cached;
	return customize__run_commands(c);
}

static int st_initramfs(struct build_ctx *c, int *cached)
{
	(void)cached;
	return initramfs__build(c);
}

static int st_disk(struct build_ctx *c, int *cached)
{
	(void)cached;
	return disk__build(c);
}

static int st_export(struct build_ctx *c, int *cached)
{
	(void)cached;
	return disk__export(c);
}

static int st_manifest(struct build_ctx *c, int *cached)
{
	(void)cached;
	return manifest__build(c);
}

static const struct step scratch_steps[] = {
	{ "kernel", st_kernel }, { "rootfs", st_rootfs },
	{ "customize", st_customize }, { "commands", st_commands },
	{ "initramfs", st_initramfs }, { "disk", st_disk },
	{ "export", st_export }, { "manifest", st_manifest },
};

static const struct step debian_steps[] = {
	{ "rootfs", st_rootfs }, { "customize", st_customize },
	{ "commands", st_commands }, { "kernel", st_kernel },
	{ "disk", st_disk }, { "export", st_export },
	{ "manifest", st_manifest },
};

static int valid_ident(const char *s, const char *extra)
{
	if (!s || !s[0] || strlen(s) > 128 || s[0] == '.' || s[0] == '-')
		return 0;
	for (; *s; s++)
		if (!strchr("abcdefghijklmnopqrstuvwxyz0123456789", *s) &&
		    !strchr(extra, *s))
			return 0;
	return 1;
}

char *builder__output_path(const struct recipe *r,
			   const struct build_opts *o)
{
	char *p;

	if (o && o->output)
		return strdup(o->output);
	if (asprintf(&p, "%s-%s.appliance", r->name ? r->name : "appliance",
		     r->version ? r->version : "0") < 0)
		return NULL;
	return p;
}

static char *default_cache(void)
{
	const char *x = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
	char *p;

	if (x && x[0] == '/')
		return asprintf(&p, "%s/appliance/build", x) < 0 ? NULL : p;
	if (home && home[0] == '/')
		return asprintf(&p, "%s/.cache/appliance/build", home) < 0 ?
			NULL : p;
	return strdup("/var/tmp/appliance-build-cache");
}

/* Put outtmp at `out`: a previous build there is replaced. */
static int publish(struct build_ctx *c, const char *out)
{
	struct stat st;
	char *old = NULL;
	int rc = 0;

	/* The build's files are synced as they are written; their names in
	 * outtmp and the renames below are directory metadata. */
	if ((rc = durable__fsync_dir(c->outtmp)) < 0)
		return build__err(-rc, "%s: syncing: %s", c->outtmp,
				  strerror(-rc));
	if (lstat(out, &st) == 0) {
		if (!S_ISDIR(st.st_mode))
			return build__err(EEXIST, "%s exists and is not an "
					  "appliance directory", out);
		if (asprintf(&old, "%s.old-%d", out, (int)getpid()) < 0)
			return build__err(ENOMEM, "out of memory");
		build__rm_rf(old);
		if (rename(out, old) < 0) {
			rc = build__err(errno, "rename %s: %s", out,
					strerror(errno));
			free(old);
			return rc;
		}
	}
	if (rename(c->outtmp, out) < 0) {
		rc = build__err(errno, "rename %s -> %s: %s", c->outtmp, out,
				strerror(errno));
		if (old && rename(old, out) < 0) {
			/* The old build stays at OUTPUT.old-PID. */
		}
	}
	if (rc == 0 && (rc = durable__fsync_dir_of(out)) < 0)
		rc = build__err(-rc, "%s: syncing its directory: %s", out,
				strerror(-rc));
	if (old) {
		if (rc == 0)
			build__rm_rf(old);
		free(old);
	}
	return rc;
}

/* ---- work left by killed builds --------------------------------------
 *
 * A build works in CACHE/work/build-XXXXXX and writes its output to
 * OUTPUT.tmp-PID, and removes both when it ends, however it fails.  A
 * build killed outright (SIGKILL, the OOM killer, a power cut) cannot:
 * it would leave a whole root filesystem behind at every kill.  So each
 * build holds an exclusive flock on WORK/lock while it lives (the
 * descriptor is close-on-exec: a build command left running does not
 * keep a dead build's lock) and records its OUTPUT.tmp-PID in
 * WORK/outtmp; the next build that uses the cache removes every work
 * directory whose lock it can take, and the output directory named in
 * it. */

#define STALE_UNLOCKED_AGE 600   /* seconds: no lock file yet (a build
                                    between mkdtemp and flock), or one
                                    from before locks */

static int work_lock(struct build_ctx *c)
{
	char *lock = build__path(c->work, "lock");
	char *rec = build__path(c->work, "outtmp");
	char *cwd = c->outtmp[0] == '/' ? NULL : getcwd(NULL, 0);
	/* Absolute: the build that finds it may run elsewhere. */
	char *abs = cwd ? build__path(cwd, c->outtmp) : strdup(c->outtmp);
	int rc = 0;

	if (!lock || !rec || !abs) {
		rc = build__err(ENOMEM, "out of memory");
		goto out;
	}
	c->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
			  0600);
	if (c->lock_fd < 0 || flock(c->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		rc = build__err(errno, "%s: %s", lock, strerror(errno));
		goto out;
	}
	rc = build__write_file(rec, abs, strlen(abs), 0600);
out:
	free(lock);
	free(rec);
	free(cwd);
	free(abs);
	return rc;
}

/* Whether work directory dir (a build-* entry of the work folder) was
 * left by a build that is no longer running. */
static bool work_is_stale(const char *dir)
{
	char *lock = build__path(dir, "lock");
	struct stat st;
	bool stale = false;
	int fd;

	if (!lock)
		return false;
	fd = open(lock, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd >= 0) {
		stale = flock(fd, LOCK_EX | LOCK_NB) == 0;
		close(fd);   /* drops the lock we may have taken */
	} else if (errno == ENOENT && lstat(dir, &st) == 0) {
		stale = time(NULL) - st.st_mtime > STALE_UNLOCKED_AGE;
	}
	free(lock);
	return stale;
}

/* The OUTPUT.tmp-PID a stale work directory recorded, if it still looks
 * like one (the file is ours, but it is read back, so checked). */
static void remove_stale_output(const char *dir)
{
	char *rec = build__path(dir, "outtmp");
	char path[PATH_MAX];
	const char *tmp;
	ssize_t n = -1;
	int fd;

	if (rec && (fd = open(rec, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) >= 0) {
		n = read(fd, path, sizeof(path) - 1);
		close(fd);
	}
	free(rec);
	if (n <= 0)
		return;
	path[n] = 0;
	tmp = strstr(path, ".tmp-");
	if (!tmp || path[0] != '/' || strspn(tmp + 5, "0123456789") !=
	    strlen(tmp + 5) || !tmp[5])
		return;
	build__rm_rf_one_fs(path);
}

/* Remove what killed builds left under workparent; best effort, and
 * silent: it is not this build's failure if some of it stays. */
static void sweep_stale_work(const char *workparent)
{
	DIR *d = opendir(workparent);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, "build-", 6) != 0)
			continue;
		char *dir = build__path(workparent, e->d_name);
		if (dir && work_is_stale(dir)) {
			remove_stale_output(dir);
			build__rm_rf_one_fs(dir);
		}
		free(dir);
	}
	closedir(d);
}

static void ctx_free(struct build_ctx *c)
{
	if (c->log_fd >= 0)
		close(c->log_fd);
	if (c->work)
		build__rm_rf(c->work);
	if (c->lock_fd >= 0)
		close(c->lock_fd);
	free(c->cache);
	free(c->work);
	free(c->root);
	free(c->outtmp);
	free(c->log_path);
	free(c->kernel_image);
	free(c->kernel_release);
	free(c->modules_dir);
	free(c->initrd);
	free(c->disk_raw);
	free(c->cmdline);
	free(c->disk_name);
	free(c->disk_format);
	free(c->export_name);
}

int builder__build(const struct recipe *r, const struct build_opts *o)
{
	static const struct build_opts no_opts = { 0 };
	struct build_ctx c = { .r = r, .o = o ? o : &no_opts, .log_fd = -1,
			       .lock_fd = -1 };
	const struct step *steps;
	size_t n_steps;
	char *out = NULL, *failed_log = NULL;
	int rc;

	o = c.o;
	if (!valid_ident(r->name, "._-"))
		return build__err(EINVAL, "appliance.name '%s': lower-case "
				  "letters, digits, '.', '_', '-'",
				  r->name ? r->name : "(missing)");
	if (!valid_ident(r->version, "._-+~ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
		return build__err(EINVAL, "appliance.version '%s': letters, "
				  "digits, '.', '_', '-', '+', '~'",
				  r->version ? r->version : "(missing)");
	if (o->have_source_date_epoch) {
		c.sde = o->source_date_epoch;
	} else {
		/* Without an epoch the build says when it was made, as
		 * every build tool does; reproducing bytes is asked for by
		 * giving one (the tests and release builds do). */
		const char *e = getenv("SOURCE_DATE_EPOCH");
		char *end;
		c.sde = e ? strtoll(e, &end, 10) : (int64_t)time(NULL);
		if (e && (*end || !*e))
			return build__err(EINVAL, "SOURCE_DATE_EPOCH '%s' is "
					  "not a number", e);
	}
	if (c.sde < 0 || c.sde > 253402300799LL)
		return build__err(EINVAL, "source date epoch %" PRId64 " is "
				  "out of range", c.sde);
	snprintf(c.sde_str, sizeof(c.sde_str), "%" PRId64, c.sde);

	out = builder__output_path(r, o);
	c.cache = o->cache_dir ? strdup(o->cache_dir) : default_cache();
	if (!out || !c.cache) {
		rc = build__err(ENOMEM, "out of memory");
		goto done;
	}
	if ((rc = build__mkdir_p(c.cache, 0755)) < 0)
		goto done;
	char *workparent = build__path(c.cache, "work");
	rc = workparent ? build__mkdir_p(workparent, 0755) : -ENOMEM;
	if (rc == 0)
		sweep_stale_work(workparent);
	if (rc == 0 && asprintf(&c.work, "%s/build-XXXXXX", workparent) < 0)
		c.work = NULL;
	free(workparent);
	if (rc < 0 || !c.work || !mkdtemp(c.work)) {
		rc = build__err(errno ? errno : ENOMEM, "cannot make a work "
				"directory under %s: %s", c.cache,
				strerror(errno));
		free(c.work);
		c.work = NULL;
		goto done;
	}
	c.root = build__path(c.work, "root");
	c.log_path = build__path(c.work, "build.log");
	if (asprintf(&c.outtmp, "%s.tmp-%d", out, (int)getpid()) < 0)
		c.outtmp = NULL;
	if (!c.root || !c.log_path || !c.outtmp) {
		rc = build__err(ENOMEM, "out of memory");
		goto done;
	}
	if ((rc = work_lock(&c)) < 0)
		goto done;
	if (mkdir(c.root, 0755) < 0 || chmod(c.root, 0755) < 0) {
		rc = build__err(errno, "%s: %s", c.root, strerror(errno));
		goto done;
	}
	build__rm_rf(c.outtmp);
	if (mkdir(c.outtmp, 0755) < 0) {
		rc = build__err(errno, "cannot create %s: %s", c.outtmp,
				strerror(errno));
		goto done;
	}
	c.log_fd = open(c.log_path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC,
			0644);
	if (c.log_fd < 0) {
		rc = build__err(errno, "%s: %s", c.log_path, strerror(errno));
		goto fail;
	}
	build__log(&c, "# appliance build %s %s, SOURCE_DATE_EPOCH=%s\n",
		   r->name, r->version, c.sde_str);

	if (r->base.type == RECIPE_BASE_DEBIAN) {
		steps = debian_steps;
		n_steps = sizeof(debian_steps) / sizeof(debian_steps[0]);
	} else {
		steps = scratch_steps;
		n_steps = sizeof(scratch_steps) / sizeof(scratch_steps[0]);
	}
	for (size_t i = 0; i < n_steps; i++) {
		int cached = 0;
		if (build__cancelled(&c)) {
			rc = -ECANCELED;
			goto fail;
		}
		if (o->progress)
			o->progress(o->progress_ctx, (unsigned)i + 1,
				    (unsigned)n_steps, steps[i].name,
				    BUILD_STEP_START);
		build__log(&c, "# step %zu/%zu: %s\n", i + 1, n_steps,
			   steps[i].name);
		rc = steps[i].run(&c, &cached);
		if (rc < 0) {
			build__log(&c, "# step %s failed: %s\n", steps[i].name,
				   builder__error());
			build__err_prefix("step '%s' failed", steps[i].name);
			if (o->progress)
				o->progress(o->progress_ctx, (unsigned)i + 1,
					    (unsigned)n_steps, steps[i].name,
					    BUILD_STEP_FAILED);
			goto fail;
		}
		if (o->progress)
			o->progress(o->progress_ctx, (unsigned)i + 1,
				    (unsigned)n_steps, steps[i].name,
				    cached ? BUILD_STEP_CACHED :
				    BUILD_STEP_DONE);
	}
	char *log_dst = build__path(c.outtmp, "build.log");
	rc = log_dst ? build__copy_file(c.log_path, log_dst, 0644) : -ENOMEM;
	free(log_dst);
	if (rc < 0)
		goto fail;
	rc = publish(&c, out);
	if (rc < 0)
		goto fail;
	/* A log of an earlier failure no longer describes OUTPUT. */
	if (asprintf(&failed_log, "%s.failed.log", out) >= 0) {
		unlink(failed_log);
		free(failed_log);
		failed_log = NULL;
	}
	goto done;
fail:
	build__rm_rf(c.outtmp);
	if (c.log_fd >= 0 && asprintf(&failed_log, "%s.failed.log", out) >= 0) {
		char saved[8192];
		snprintf(saved, sizeof(saved), "%s", builder__error());
		if (build__copy_file(c.log_path, failed_log, 0644) == 0)
			build__err(-rc, "%s\n(build log: %s)", saved,
				   failed_log);
		else
			build__err(-rc, "%s", saved);
		free(failed_log);
	}
done:
	ctx_free(&c);
	free(out);
	return rc;
}

int manifest__build(struct build_ctx *c)
{
	const struct recipe *r = c->r;
	struct manifest_file files[4];
	size_t n = 0;
	char *text = NULL, *p;
	int rc;

	/* Kernel command line: how to find the root disk, then the
	 * recipe's additions. */
	if (asprintf(&c->cmdline, "console=ttyS0 root=%s rw%s%s%s%s",
		     c->root_dev, r->kernel.cmdline ? " " : "",
		     r->kernel.cmdline ? r->kernel.cmdline : "",
		     r->vm.cmdline ? " " : "",
		     r->vm.cmdline ? r->vm.cmdline : "") < 0) {
		c->cmdline = NULL;
		return build__err(ENOMEM, "out of memory");
	}
	struct { const char *role, *name, *src, *format; } want[] = {
		{ "disk", c->disk_name, NULL, c->disk_format },
		{ "kernel", "vmlinuz", c->kernel_image, NULL },
		{ "initrd", "initrd.img", c->initrd, NULL },
		{ "export", c->export_name, NULL, c->o->output_format },
	};
	for (size_t i = 0; i < 4; i++) {
		struct stat st;
		if (!want[i].name)
			continue;
		p = build__path(c->outtmp, want[i].name);
		if (!p)
			return build__err(ENOMEM, "out of memory");
		rc = 0;
		if (want[i].src)
			rc = build__copy_file(want[i].src, p, 0644);
		if (rc == 0)
			rc = build__sha256_file(p, files[n].sha256);
		if (rc == 0 && stat(p, &st) < 0)
			rc = build__err(errno, "%s: %s", p, strerror(errno));
		free(p);
		if (rc < 0)
			return rc;
		files[n].role = want[i].role;
		files[n].name = want[i].name;
		files[n].format = want[i].format;
		files[n].size = (uint64_t)st.st_size;
		n++;
	}
	rc = manifest__format(r, c->sde, c->cmdline, files, n, &text);
	if (rc < 0)
		return rc;
	p = build__path(c->outtmp, "manifest.toml");
	rc = p ? build__write_file(p, text, strlen(text), 0644)
	       : build__err(ENOMEM, "out of memory");
	free(p);
	free(text);
	return rc;
}
