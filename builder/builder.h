/*
 * builder.h - turn a recipe into an appliance: a bootable disk, its kernel
 * and initramfs, and a manifest saying how to run it.
 *
 *   struct recipe r;  (recipe__load() or filled in C)
 *   struct build_opts o = { .output = "hello.appliance" };
 *   if (builder__build(&r, &o) < 0) fprintf(stderr, "%s", builder__error());
 *
 * The build runs as a list of named steps (kernel, rootfs, customize,
 * commands, initramfs, disk, export, manifest).  Every external command's
 * output goes to the build log; a failing step's error message names the
 * step, the command, its exit status and the tail of its output.  The
 * output directory is assembled under a temporary name next to the
 * destination and renamed into place only when everything succeeded.
 *
 * Like every library here, this one never prints and never exits.
 */
#ifndef BUILDER_BUILDER_H
#define BUILDER_BUILDER_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "builder/recipe.h"

enum build_step_state {
	BUILD_STEP_START = 0,
	BUILD_STEP_DONE,
	BUILD_STEP_CACHED, /* done, from the cache */
	BUILD_STEP_FAILED,
};

/* Called at the start and end of every step; `step` counts from 1. */
typedef void (*build_progress_fn)(void *ctx, unsigned step, unsigned n_steps,
				  const char *name,
				  enum build_step_state state);

struct build_opts {
	const char *output;        /* output directory; NULL:
	                              "NAME-VERSION.appliance" in the cwd */
	const char *cache_dir;     /* NULL: $XDG_CACHE_HOME/appliance/build or
	                              ~/.cache/appliance/build */
	int64_t source_date_epoch; /* < 0: $SOURCE_DATE_EPOCH, else 0 */
	int have_source_date_epoch;/* source_date_epoch was given */
	const char *output_format; /* NULL, or "raw", "qcow2", "vmdk": also
	                              export the disk as disk.FMT */
	build_progress_fn progress;
	void *progress_ctx;
	/* If set, a signal handler may set *cancel to nonzero: the build
	 * stops at the next check (between steps, while waiting for a
	 * command, which is sent SIGTERM, and during the disk export),
	 * cleans up like any failure and returns -ECANCELED. */
	volatile sig_atomic_t *cancel;
};

/* Build the appliance.  Returns 0, or a negative errno with
 * builder__error() describing what failed.  On failure nothing is left at
 * the output path; the build log is kept as OUTPUT.failed.log. */
int builder__build(const struct recipe *r, const struct build_opts *o);

/* Message of the most recent failure in this thread ("" if none). */
const char *builder__error(void);

/* Where the build would write with these options (for messages):
 * malloc'ed path of the output directory. */
char *builder__output_path(const struct recipe *r,
			   const struct build_opts *o);

#endif /* BUILDER_BUILDER_H */
