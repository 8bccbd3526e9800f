/*
 * steps.h - internal to builder/: the build context shared by the steps,
 * the helpers they use, and the pure functions the unit tests reach.
 *
 * Errors: every function returns 0 or a negative errno and records a
 * message with build__err() (thread-local, read by builder__error()).
 * build.c prefixes the failing step's name.
 */
#ifndef BUILDER_STEPS_H
#define BUILDER_STEPS_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "builder/builder.h"

struct build_ctx {
	const struct recipe *r;
	const struct build_opts *o;
	int64_t sde;          /* SOURCE_DATE_EPOCH used for the build */
	char sde_str[24];
	char *cache;          /* cache directory (created) */
	char *work;           /* scratch directory, removed at the end */
	char *root;           /* work/root: the root filesystem tree */
	char *outtmp;         /* temporary output directory */
	int log_fd;           /* build log (append) */
	int lock_fd;          /* flock on work/lock: this build is alive */
	char *log_path;

	/* kernel */
	char *kernel_image;   /* bzImage to ship as vmlinuz */
	char *kernel_release; /* "6.1.0-56-cloud-amd64" */
	char *modules_dir;    /* .../lib/modules/RELEASE, or NULL: none */
	char *initrd;         /* initramfs to ship as initrd.img */

	/* disk */
	uint64_t disk_size;
	uint64_t part_offset; /* byte offset of the filesystem in the disk */
	uint8_t fs_uuid[16], hash_seed[16], disk_guid[16], part_guid[16];
	char *disk_raw;       /* work/disk.raw */
	char root_dev[32];    /* "/dev/vda" or "/dev/vda1" */
	char *cmdline;        /* kernel command line for running it */
	char *disk_name;      /* "disk.avd" or "disk.raw" (in outtmp) */
	char *disk_format;
	char *export_name;    /* "disk.qcow2" etc., or NULL */
};

/* ---- errors and logging --------------------------------------------- */
int build__err(int err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Prefix the current message with "prefix: ". */
void build__err_prefix(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
void build__log(struct build_ctx *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Run argv (PATH lookup) with stdout+stderr into the build log, stdin from
 * /dev/null, in `cwd` (NULL: unchanged), with `env` ("K=V" strings,
 * NULL-terminated, may be NULL) added to the environment.  Nonzero exit:
 * error naming the command, its status and the tail of its output. */
int build__run(struct build_ctx *c, const char *cwd, const char *const *env,
	       const char *const *argv);
/* build__run inside `root`: chrooted, in a private mount namespace with
 * /proc, /sys and a minimal /dev (chroot.c); argv is looked up in the
 * root's PATH. */
int build__run_in_root(struct build_ctx *c, const char *root,
		       const char *const *env, const char *const *argv);
/* chroot.c, in the child: enter that namespace and root.  On failure
 * returns -errno and points *what at the step that failed. */
int chroot__enter(const char *root, const char **what);
/* Same as build__run, but stdout is captured into *out (NUL-terminated,
 * malloc'ed, * capped at `max` bytes); stderr still goes to the log. */
int build__run_capture(struct build_ctx *c, const char *const *argv,
		       char **out, size_t max);

/* Nonzero (and the error set) when the caller asked to stop. */
int build__cancelled(struct build_ctx *c);

/* ---- files ---------------------------------------------------------- */
char *build__path(const char *a, const char *b); /* a/b, malloc'ed */
int build__mkdir_p(const char *path, mode_t mode);
int build__rm_rf(const char *path);
/* The same, never crossing into another file system: for trees a process
 * we do not control may have mounted something in (what is on another
 * file system, and the directories above it, stay). */
int build__rm_rf_one_fs(const char *path);
int build__copy_file(const char *src, const char *dst, mode_t mode);
int build__write_file(const char *path, const void *data, size_t len,
		      mode_t mode);
int build__read_file(const char *path, char **out, size_t *len, size_t max);
/* SHA-256 of a file as 64 hex chars + NUL. */
int build__sha256_file(const char *path, char hex[65]);
void build__sha256_hex(const void *data, size_t len, char hex[65]);
/* Set every mtime/atime in the tree to `t` (not following symlinks). */
int build__clamp_mtimes(const char *root, int64_t t);
/* Resolve `p` against the recipe directory unless absolute. */
char *build__recipe_path(const struct recipe *r, const char *p);

/* ---- steps ---------------------------------------------------------- */
int kernel__prepare(struct build_ctx *c, int *cached);
int rootfs__busybox(struct build_ctx *c);
int rootfs__tarball(struct build_ctx *c);
int rootfs__debian(struct build_ctx *c, int *cached);
/* Debian bases: the kernel and initramfs installed inside the root. */
int rootfs__debian_kernel(struct build_ctx *c);
int customize__apply(struct build_ctx *c);
int customize__run_commands(struct build_ctx *c);
int initramfs__build(struct build_ctx *c);
int disk__build(struct build_ctx *c);
int disk__export(struct build_ctx *c);
int manifest__build(struct build_ctx *c);

/* ---- pure pieces (unit-tested) --------------------------------------- */

/* tarball.c: extract `archive` (tar, optionally gz/xz/zst/bz2) into the
 * existing directory `dest`, refusing absolute paths, ".." components,
 * writes through symlinks, and (unless allowed) device nodes.  Keeps
 * owners when running as root.  Changes the working directory during the
 * call (restored), so it is not thread-safe. */
enum { TARBALL_ALLOW_DEVICES = 1u << 0 };
int tarball__extract(const char *archive, const char *dest, unsigned flags);

/* kmod.c: from the text of a modules.dep, the load order (dependencies
 * first, each once) of the modules named in `want` (names as modprobe
 * takes them: "virtio_pci", "-" and "_" equal).  *out: malloc'ed array of
 * malloc'ed paths relative to the modules directory. */
int kmod__resolve(const char *modules_dep, const char *const *want,
		  size_t n_want, char ***out, size_t *n_out);
void kmod__free_list(char **list, size_t n);

/* gpt.c: write a protective MBR, primary and backup GPT for a disk of
 * `disk_size` bytes (a multiple of 512) with one partition spanning
 * [first_lba, last_lba], type Linux filesystem.  Deterministic: GUIDs are
 * given. */
struct gpt_layout {
	uint64_t disk_size;
	uint64_t first_lba, last_lba;
	uint8_t disk_guid[16];
	uint8_t part_guid[16];
	const char *part_name; /* ASCII, <= 36 chars */
};
int gpt__write(int fd, const struct gpt_layout *g);
/* The partition span gpt__write would use for this disk size: 1 MiB
 * aligned start, end before the backup GPT. */
void gpt__default_span(uint64_t disk_size, uint64_t *first_lba,
		       uint64_t *last_lba);

/* manifest.c: the manifest as TOML text. */
struct manifest_file {
	const char *role;   /* "disk", "kernel", "initrd", "export" */
	const char *name;   /* file name in the appliance directory */
	const char *format; /* disk formats; NULL otherwise */
	char sha256[65];
	uint64_t size;
};
int manifest__format(const struct recipe *r, int64_t build_time,
		     const char *cmdline, const struct manifest_file *files,
		     size_t n_files, char **out);
/* Append s as a TOML basic string (quoted, escaped). */
int manifest__toml_string(char **buf, size_t *len, size_t *cap,
			  const char *s);

#endif /* BUILDER_STEPS_H */
