/*
 * util.c - what every build step needs: the error message, the build log,
 * running commands with their output in the log, and file helpers.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "builder/steps.h"

static __thread char err_msg[8192];

const char *builder__error(void)
{
	return err_msg;
}

int build__err(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err_msg, sizeof(err_msg), fmt, ap);
	va_end(ap);
	return -(err ? err : EIO);
}

void build__err_prefix(const char *fmt, ...)
{
	char prefix[512];
	va_list ap;
	size_t plen, mlen;

	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix) - 2, fmt, ap);
	va_end(ap);
	strcat(prefix, ": ");
	plen = strlen(prefix);
	mlen = strlen(err_msg);
	if (plen + mlen >= sizeof(err_msg))
		mlen = sizeof(err_msg) - 1 - plen;
	memmove(err_msg + plen, err_msg, mlen);
	memcpy(err_msg, prefix, plen);
	err_msg[plen + mlen] = '\0';
}

void build__log(struct build_ctx *c, const char *fmt, ...)
{
	char buf[4096];
	va_list ap;
	int n;

	if (!c || c->log_fd < 0)
		return;
	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(buf))
		n = sizeof(buf) - 1;
	if (write(c->log_fd, buf, (size_t)n) < 0) {
		/* The log is best effort; the build result does not depend
		 * on it. */
	}
}

/* "cmd arg 'arg with space'" for messages, truncated. */
static void format_argv(const char *const *argv, char *buf, size_t size)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; argv[i] && used + 4 < size; i++) {
		int quote = strpbrk(argv[i], " \t\"'$") != NULL ||
			    !argv[i][0];
		int n = snprintf(buf + used, size - used, "%s%s%s%s",
				 i ? " " : "", quote ? "'" : "", argv[i],
				 quote ? "'" : "");
		if (n < 0)
			break;
		used += (size_t)n;
		if (used >= size) {
			used = size - 1;
			if (size > 4)
				strcpy(buf + size - 4, "...");
		}
	}
}

/* The last `lines` lines of the log from `from` on, for error messages. */
static void log_tail(struct build_ctx *c, off_t from, char *out, size_t size,
		     int lines)
{
	off_t end = lseek(c->log_fd, 0, SEEK_END);
	size_t want = size - 1;
	off_t start;
	ssize_t n;

	out[0] = '\0';
	if (end < 0 || end <= from)
		return;
	start = end - from > (off_t)want ? end - (off_t)want : from;
	n = pread(c->log_fd, out, (size_t)(end - start), start);
	if (n <= 0)
		return;
	out[n] = '\0';
	/* Keep the last `lines` lines. */
	char *p = out + n;
	int seen = 0;
	if (p > out && p[-1] == '\n')
		p--;
	while (p > out) {
		if (p[-1] == '\n' && ++seen >= lines)
			break;
		p--;
	}
	memmove(out, p, strlen(p) + 1);
}

static int spawn(struct build_ctx *c, const char *cwd, const char *root,
		 const char *const *env, const char *const *argv, int out_fd,
		 pid_t *pid_out)
{
	pid_t pid = fork();

	if (pid < 0)
		return build__err(errno, "fork: %s", strerror(errno));
	if (pid == 0) {
		/* Its own process group, so that cancelling stops the
		 * command and everything it started (sh -c forks). */
		setpgid(0, 0);
		int devnull = open("/dev/null", O_RDONLY);
		if (devnull >= 0) {
			dup2(devnull, 0);
			close(devnull);
		}
		dup2(out_fd, 1);
		dup2(c->log_fd, 2);
		if (cwd && chdir(cwd) < 0)
			_exit(126);
		if (root) {
			const char *what;
			int rc = chroot__enter(root, &what);
			if (rc < 0) {
				dprintf(2, "cannot enter %s: %s: %s\n", root,
					what, strerror(-rc));
				_exit(126);
			}
		}
		for (size_t i = 0; env && env[i]; i++)
			putenv((char *)env[i]);
		execvp(argv[0], (char *const *)argv);
		dprintf(2, "cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	/* Also from the parent: no window where a cancel could miss it. */
	setpgid(pid, pid);
	*pid_out = pid;
	return 0;
}

static int wait_result(struct build_ctx *c, pid_t pid,
		       const char *const *argv, off_t log_start)
{
	int status;
	char cmd[512], tail[2048], what[64];

	int sent = 0;

	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return build__err(errno, "waitpid: %s",
					  strerror(errno));
		/* Interrupted by the caller's signal handler: stop the
		 * command's whole process group (it is not in the
		 * terminal's foreground group, so ^C reaches only us). */
		if (c->o && c->o->cancel && *c->o->cancel && !sent) {
			kill(-pid, SIGTERM);
			sent = 1;
		}
	}
	if (sent)
		kill(-pid, SIGKILL); /* whatever the group left behind */
	if (build__cancelled(c))
		return -ECANCELED;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	format_argv(argv, cmd, sizeof(cmd));
	if (WIFEXITED(status))
		snprintf(what, sizeof(what), "exited with status %d",
			 WEXITSTATUS(status));
	else
		snprintf(what, sizeof(what), "was killed by signal %d",
			 WTERMSIG(status));
	log_tail(c, log_start, tail, sizeof(tail), 15);
	build__log(c, "# command %s\n", what);
	return build__err(EIO, "command `%s` %s; output tail:\n%s", cmd, what,
			  tail[0] ? tail : "(no output)\n");
}

static int run(struct build_ctx *c, const char *cwd, const char *root,
	       const char *const *env, const char *const *argv)
{
	char cmd[2048];
	pid_t pid;
	off_t start;
	int rc;

	format_argv(argv, cmd, sizeof(cmd));
	build__log(c, "$ %s\n", cmd);
	start = lseek(c->log_fd, 0, SEEK_END);
	rc = spawn(c, cwd, root, env, argv, c->log_fd, &pid);
	if (rc < 0)
		return rc;
	return wait_result(c, pid, argv, start < 0 ? 0 : start);
}

int build__run(struct build_ctx *c, const char *cwd, const char *const *env,
	       const char *const *argv)
{
	return run(c, cwd, NULL, env, argv);
}

int build__run_in_root(struct build_ctx *c, const char *root,
		       const char *const *env, const char *const *argv)
{
	return run(c, NULL, root, env, argv);
}

int build__run_capture(struct build_ctx *c, const char *const *argv,
		       char **out, size_t max)
{
	char cmd[2048];
	int fds[2];
	pid_t pid;
	off_t start;
	size_t len = 0, cap = 4096;
	char *buf;
	int rc;

	*out = NULL;
	format_argv(argv, cmd, sizeof(cmd));
	build__log(c, "$ %s\n", cmd);
	start = lseek(c->log_fd, 0, SEEK_END);
	if (pipe2(fds, O_CLOEXEC) < 0)
		return build__err(errno, "pipe: %s", strerror(errno));
	rc = spawn(c, NULL, NULL, NULL, argv, fds[1], &pid);
	close(fds[1]);
	if (rc < 0) {
		close(fds[0]);
		return rc;
	}
	buf = malloc(cap);
	for (;;) {
		if (!buf)
			break;
		if (len + 1 >= cap && cap < max + 1) {
			size_t ncap = cap * 2 > max + 1 ? max + 1 : cap * 2;
			char *nb = realloc(buf, ncap);
			if (!nb) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
			cap = ncap;
		}
		if (len + 1 >= cap) {
			/* Over the cap: drain and drop the rest. */
			char junk[4096];
			ssize_t n = read(fds[0], junk, sizeof(junk));
			if (n <= 0 && !(n < 0 && errno == EINTR))
				break;
			continue;
		}
		ssize_t n = read(fds[0], buf + len, cap - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fds[0]);
	rc = wait_result(c, pid, argv, start < 0 ? 0 : start);
	if (rc < 0 || !buf) {
		free(buf);
		return rc < 0 ? rc : build__err(ENOMEM, "out of memory");
	}
	buf[len] = '\0';
	*out = buf;
	return 0;
}

int build__cancelled(struct build_ctx *c)
{
	if (c && c->o && c->o->cancel && *c->o->cancel) {
		build__err(ECANCELED, "interrupted");
		return 1;
	}
	return 0;
}

char *build__path(const char *a, const char *b)
{
	char *p;

	while (b[0] == '/')
		b++;
	if (asprintf(&p, "%s%s%s", a, a[0] && a[strlen(a) - 1] == '/' ?
		     "" : "/", b) < 0)
		return NULL;
	return p;
}

char *build__recipe_path(const struct recipe *r, const char *p)
{
	if (p[0] == '/' || !r->dir)
		return strdup(p);
	return build__path(r->dir, p);
}

int build__mkdir_p(const char *path, mode_t mode)
{
	char tmp[PATH_MAX];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(tmp))
		return build__err(ENAMETOOLONG, "bad directory path '%s'",
				  path);
	memcpy(tmp, path, len + 1);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
			return build__err(errno, "mkdir %s: %s", tmp,
					  strerror(errno));
		*p = '/';
	}
	if (mkdir(tmp, mode) < 0 && errno != EEXIST)
		return build__err(errno, "mkdir %s: %s", tmp, strerror(errno));
	return 0;
}

static int rm_cb(const char *path, const struct stat *st, int flag,
		 struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_DP)
		return rmdir(path) < 0 ? -1 : 0;
	return unlink(path) < 0 && errno != ENOENT ? -1 : 0;
}

static int rm_tree(const char *path, int flags)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : build__err(errno, "%s: %s", path,
							 strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return unlink(path) < 0 ? build__err(errno, "unlink %s: %s",
						     path, strerror(errno)) : 0;
	if (nftw(path, rm_cb, 32, FTW_DEPTH | FTW_PHYS | flags) < 0)
		return build__err(errno, "removing %s: %s", path,
				  strerror(errno));
	return 0;
}

int build__rm_rf(const char *path)
{
	return rm_tree(path, 0);
}

int build__rm_rf_one_fs(const char *path)
{
	return rm_tree(path, FTW_MOUNT);
}

int build__write_file(const char *path, const void *data, size_t len,
		      mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC |
		      O_NOFOLLOW, mode);
	const char *p = data;

	if (fd < 0)
		return build__err(errno, "create %s: %s", path,
				  strerror(errno));
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			close(fd);
			return build__err(e, "write %s: %s", path, strerror(e));
		}
		p += n;
		len -= (size_t)n;
	}
	/* umask must not change what the recipe asked for; fsync because
	 * these files end up in the output, which must survive a crash
	 * once it has been renamed into place. */
	if (fchmod(fd, mode) < 0 || fsync(fd) < 0 || close(fd) < 0)
		return build__err(errno, "%s: %s", path, strerror(errno));
	return 0;
}

int build__read_file(const char *path, char **out, size_t *len_out,
		     size_t max)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char *buf;
	size_t len = 0;

	*out = NULL;
	if (fd < 0)
		return build__err(errno, "open %s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return build__err(EINVAL, "%s: not a regular file", path);
	}
	if ((uint64_t)st.st_size > max) {
		close(fd);
		return build__err(EFBIG, "%s: %lld bytes, more than the %zu "
				  "allowed", path, (long long)st.st_size, max);
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		return build__err(ENOMEM, "out of memory reading %s", path);
	}
	while (len < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + len, (size_t)st.st_size - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	*out = buf;
	if (len_out)
		*len_out = len;
	return 0;
}

int build__copy_file(const char *src, const char *dst, mode_t mode)
{
	int in = open(src, O_RDONLY | O_CLOEXEC), out;
	char buf[65536];
	int rc = 0;

	if (in < 0)
		return build__err(errno, "open %s: %s", src, strerror(errno));
	out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
		   mode);
	if (out < 0) {
		int e = errno;
		close(in);
		return build__err(e, "create %s: %s", dst, strerror(e));
	}
	for (;;) {
		ssize_t n = read(in, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = build__err(errno, "read %s: %s", src,
					strerror(errno));
			break;
		}
		if (n == 0)
			break;
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(out, buf + off, (size_t)(n - off));
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				rc = build__err(errno, "write %s: %s", dst,
						strerror(errno));
				goto done;
			}
			off += w;
		}
	}
done:
	close(in);
	if (rc == 0 && fsync(out) < 0)
		rc = build__err(errno, "fsync %s: %s", dst, strerror(errno));
	if (fchmod(out, mode) < 0 && rc == 0)
		rc = build__err(errno, "chmod %s: %s", dst, strerror(errno));
	if (close(out) < 0 && rc == 0)
		rc = build__err(errno, "close %s: %s", dst, strerror(errno));
	return rc;
}

void build__sha256_hex(const void *data, size_t len, char hex[65])
{
	unsigned char md[32];
	unsigned int mdlen = 0;

	EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
	for (int i = 0; i < 32; i++)
		sprintf(hex + 2 * i, "%02x", md[i]);
	hex[64] = '\0';
}

int build__sha256_file(const char *path, char hex[65])
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	EVP_MD_CTX *ctx;
	unsigned char md[32];
	unsigned int mdlen = 0;
	static __thread char buf[1 << 16];
	int rc = 0;

	if (fd < 0)
		return build__err(errno, "open %s: %s", path, strerror(errno));
	ctx = EVP_MD_CTX_new();
	if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
		close(fd);
		EVP_MD_CTX_free(ctx);
		return build__err(ENOMEM, "SHA-256 context");
	}
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = build__err(errno, "read %s: %s", path,
					strerror(errno));
			break;
		}
		if (n == 0)
			break;
		EVP_DigestUpdate(ctx, buf, (size_t)n);
	}
	close(fd);
	if (rc == 0) {
		EVP_DigestFinal_ex(ctx, md, &mdlen);
		for (int i = 0; i < 32; i++)
			sprintf(hex + 2 * i, "%02x", md[i]);
		hex[64] = '\0';
	}
	EVP_MD_CTX_free(ctx);
	return rc;
}

static __thread int64_t clamp_time;

static int clamp_cb(const char *path, const struct stat *st, int flag,
		    struct FTW *ftw)
{
	struct timespec ts[2] = {
		{ .tv_sec = clamp_time }, { .tv_sec = clamp_time },
	};

	(void)st;
	(void)flag;
	(void)ftw;
	if (utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW) < 0)
		return -1;
	return 0;
}

int build__clamp_mtimes(const char *root, int64_t t)
{
	clamp_time = t;
	/* FTW_DEPTH: a directory's times are set after its entries were
	 * visited (visiting does not change them, but this is the order
	 * that stays right if it ever did). */
	if (nftw(root, clamp_cb, 32, FTW_PHYS | FTW_DEPTH) < 0)
		return build__err(errno, "setting times under %s: %s", root,
				  strerror(errno));
	return 0;
}
