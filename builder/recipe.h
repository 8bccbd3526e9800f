/*
 * recipe.h - a build recipe in memory: everything `recipe.toml` says.
 *
 * Plain C data so that the TOML loader (recipe.c) fills it and the build
 * pipeline (build.c and its steps) reads it without knowing TOML.  Every
 * string is owned by the struct (malloc'ed, freed by recipe__free());
 * every list is an array plus a count.  A NULL string means "not given":
 * the pipeline applies the documented default (see docs/recipes.md).
 *
 * Recipe layout (TOML):
 *   [appliance]  name, version, description
 *   [base]       type = "debian" | "busybox" | "tarball"; suite, variant,
 *                mirror (debian); source (tarball: path or URL)
 *   packages     = ["nginx", ...]   (in [base], or top level before any table)
 *   [[files]]    path, content | source, mode, owner, group
 *   [[users]]    name, uid, groups, password (hashed), shell, home,
 *                ssh_keys
 *   [[groups]]   name, gid
 *   [system]     hostname, timezone, locale, services
 *   [commands]   build = [...], first_boot = [...]
 *   [kernel]     source = "debian" | PATH, modules (dir), cmdline
 *   [disk]       size, filesystem, gpt
 *   [vm]         memory, cpus, cmdline, console, [[vm.ports]] host,
 *                guest, proto
 */
#ifndef BUILDER_RECIPE_H
#define BUILDER_RECIPE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum recipe_base_type {
	RECIPE_BASE_DEBIAN = 0,
	RECIPE_BASE_BUSYBOX,
	RECIPE_BASE_TARBALL,
};

struct recipe_base {
	enum recipe_base_type type;
	char *suite;      /* debian: NULL -> "bookworm" */
	char *variant;    /* debian: NULL -> "minbase" */
	char *mirror;     /* debian: NULL -> first deb.debian.org-style URI
	                     from the host's apt sources */
	char *source;     /* tarball: local path (relative to the recipe
	                     directory) or http(s) URL */
	char *sha256;     /* tarball: its SHA-256 (64 lower-case hex digits);
	                     required for a URL, optional for a path */
};

struct recipe_file {
	char *path;       /* absolute path inside the image */
	char *content;    /* inline content, or NULL */
	size_t content_len;
	char *source;     /* file next to the recipe (relative to dir), or
	                     NULL; exactly one of content/source is set */
	mode_t mode;      /* permission bits; 0 -> 0644 */
	int has_mode;     /* mode was given (0000 is a legal mode) */
	char *owner;      /* user name or numeric; NULL -> root */
	char *group;      /* group name or numeric; NULL -> root */
};

struct recipe_user {
	char *name;
	int64_t uid;      /* -1: first free uid >= 1000 */
	char **groups;    /* supplementary groups (must exist in the base
	                     or in recipe.groups) */
	size_t n_groups;
	char *password;   /* crypt(3) hash as it goes into /etc/shadow
	                     ("$6$...", "$y$..."); NULL -> locked ("!") */
	char *shell;      /* NULL -> /bin/sh */
	char *home;       /* NULL -> /home/NAME (/root for uid 0) */
	char **ssh_keys;  /* authorized_keys lines */
	size_t n_ssh_keys;
};

struct recipe_group {
	char *name;
	int64_t gid;      /* -1: first free gid >= 1000 */
};

struct recipe_port {
	uint16_t host;
	uint16_t guest;
	char *proto;      /* "tcp" (NULL) or "udp" */
};

struct recipe_kernel {
	char *source;     /* NULL or "debian": linux-image-cloud-amd64;
	                     else a path to a kernel image (bzImage) */
	char *modules;    /* with a path kernel: the lib/modules/VERSION
	                     directory to use, or NULL for none */
	char *cmdline;    /* kernel command line for the root disk (added
	                     to the builder's root=/console= defaults) */
};

struct recipe_disk {
	uint64_t size;    /* bytes; 0 -> 1 GiB for debian, 64 MiB otherwise */
	char *filesystem; /* NULL -> "ext4" (the only one supported) */
	int gpt;          /* 1: GPT with one Linux partition; 0: bare fs */
};

struct recipe_vm {
	uint64_t memory;  /* bytes; 0 -> 512 MiB */
	unsigned cpus;    /* 0 -> 1 */
	char *cmdline;    /* additions to the kernel command line at run */
	char *console;    /* NULL -> "serial" */
	struct recipe_port *ports;
	size_t n_ports;
};

struct recipe {
	/* [appliance] */
	char *name;       /* required: [a-z0-9][a-z0-9._-]* */
	char *version;    /* required */
	char *description;

	struct recipe_base base;

	char **packages;
	size_t n_packages;

	struct recipe_file *files;
	size_t n_files;
	struct recipe_user *users;
	size_t n_users;
	struct recipe_group *groups;
	size_t n_groups;

	/* [system] */
	char *hostname;   /* NULL -> the appliance name */
	char *timezone;   /* NULL -> "UTC" */
	char *locale;     /* NULL -> "C.UTF-8" */
	char **services;  /* systemd units (debian) or init scripts to run
	                     (busybox) */
	size_t n_services;

	/* [commands]: each a shell command line run with /bin/sh -c */
	char **build_commands;     /* in the root at build time (chroot) */
	size_t n_build_commands;
	char **first_boot_commands; /* once, at the first boot */
	size_t n_first_boot_commands;

	struct recipe_kernel kernel;
	struct recipe_disk disk;
	struct recipe_vm vm;

	/* Directory holding recipe.toml: relative paths (files' sources,
	 * tarball, kernel) resolve against it.  Absolute. */
	char *dir;
};

/* Free every owned string and array, then zero the struct (so a second
 * call is harmless).  Does not free `r` itself.  Implemented in
 * builder/recipe-free.c (owned by the builder, not by recipe.c). */
void recipe__free(struct recipe *r);

/* Load and validate recipe.toml (builder/recipe.c).  On failure returns
 * a negative errno; recipe__error() names the file, key and problem. */
int recipe__load(const char *path, struct recipe *out);
const char *recipe__error(void);

#endif /* BUILDER_RECIPE_H */
