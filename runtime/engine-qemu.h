/*
 * engine-qemu.h - run an appliance under qemu-system-x86_64.
 *
 * For hosts where the builtin monitor cannot run guests at hardware speed
 * (no /dev/kvm, or a nested KVM that emulates): the same kernel, initrd,
 * command line and disks under QEMU's microvm machine, with KVM when it is
 * usable and TCG otherwise.  QEMU cannot read AVD, so every disk is
 * exported to it over NBD by our own server (nbd/server.h) through a
 * socketpair QEMU inherits, running in this process: nothing is converted or copied,
 * and writes land in the image exactly as the builtin monitor's would.
 */
#ifndef RUNTIME_ENGINE_QEMU_H
#define RUNTIME_ENGINE_QEMU_H

#include <stdbool.h>
#include <stdint.h>

#define QEMU_ENGINE_MAX_DISKS 8
#define QEMU_ENGINE_MAX_PORTS 16

struct qemu_port_forward {
	int host_port;
	int guest_port;
	bool udp;
};

struct qemu_engine_config {
	uint64_t mem_size;
	int nr_cpus;
	const char *kernel;
	const char *initrd;          /* NULL: none */
	const char *cmdline;         /* NULL: "console=ttyS0" */
	const char *const *disks;    /* image paths, any format imgfmt reads */
	const bool *disk_readonly;   /* NULL: all writable */
	const char *const *disk_formats; /* NULL, or NULL for a disk: detect */
	/* Disks that may read the files their image names (a backing
	 * file); NULL: none, each opened IMGFMT_OPEN_SELF_CONTAINED. */
	const bool *disk_backing;
	/* Already open images to serve instead of opening disks[] (which
	 * then only describe them); they stay the caller's to close.  An
	 * appliance's overlay, stacked on its verified disk, comes this
	 * way. */
	struct imgfmt_image *const *disk_images;
	int nr_disks;
	const struct qemu_port_forward *ports;
	int nr_ports;                /* > 0 adds a user-mode network device */
	bool network;                /* network even without forwards */
	const char *tap;             /* a tap interface instead of the
	                                user-mode network (no forwards) */
	bool use_kvm;                /* -accel kvm, else TCG */
	int console_out_fd;          /* guest serial output */
	int console_in_fd;           /* guest serial input, -1: none */
	bool console_escape;         /* console_in_fd is a terminal: Ctrl-A x
	                                quits, as in the builtin monitor
	                                (QEMU's character-device mux) */
	const char *qemu_binary;     /* NULL: qemu-system-x86_64 from PATH */
	const int *inherit_fds;      /* descriptors QEMU keeps across exec,
	                                for kernel or initrd paths of the
	                                form /proc/self/fd/N */
	int nr_inherit_fds;
};

struct qemu_engine_result {
	int qemu_status;             /* QEMU's exit status, -1 if signalled */
	bool stopped_by_signal;      /* we stopped it on SIGINT/SIGTERM/SIGHUP */
	bool console_closed;         /* we stopped it: the console's reader
	                                went away */
	char message[512];
};

/* Message of the most recent failure in this thread. */
const char *qemu_engine__error(void);

/* The argument vector QEMU would be started with (for tests);
 * NULL-terminated, free with qemu_engine__free_argv().  disk_fds[i] is
 * the connected NBD socket QEMU will have for disks[i]. */
char **qemu_engine__argv(const struct qemu_engine_config *cfg,
			 const int *disk_fds);
void qemu_engine__free_argv(char **argv);

/* Run until QEMU exits (guest poweroff), SIGINT/SIGTERM/SIGHUP arrives
 * (the caller's handler calls qemu_engine__stop()) or the console's
 * reader goes away (res->console_closed).  0 on a clean guest
 * poweroff, negative errno otherwise with the reason in res->message. */
int qemu_engine__run(const struct qemu_engine_config *cfg,
		     struct qemu_engine_result *res);

/* Async-signal-safe: ask the running engine to stop QEMU. */
void qemu_engine__stop(void);

#endif /* RUNTIME_ENGINE_QEMU_H */
