/*
 * monitor.h - run one microVM with the builtin KVM monitor.
 *
 * monitor__run() builds the machine (RAM, vCPUs, in-kernel irqchip and
 * PIT, UART, i8042, RTC, MP table, PCI bus with virtio devices), loads a
 * Linux bzImage or a PVH vmlinux (boot-pvh.h), restricts the process
 * with seccomp and runs until the guest powers off, a vCPU fails,
 * SIGINT/SIGTERM/SIGHUP or the console escape arrives, or the console's
 * reader goes away (the caller should ignore SIGPIPE: the UART's writes
 * to such a console then fail instead of killing the process).  It never
 * prints: the guest's console goes to console_out_fd and everything else
 * comes back in struct monitor_result.
 */
#ifndef RUNTIME_MONITOR_H
#define RUNTIME_MONITOR_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/passt.h"
#include "runtime/vm.h"

#define MONITOR_MAX_DISKS 8

struct monitor_config {
	uint64_t mem_size;           /* bytes of guest RAM */
	int nr_cpus;
	/* vCPU i runs on host CPU cpu_affinity[i % nr_affinity]; none if
	 * nr_affinity is 0. */
	const int *cpu_affinity;
	int nr_affinity;
	const char *kernel;          /* bzImage, or ELF vmlinux (PVH) */
	const char *initrd;          /* NULL: none */
	const char *cmdline;         /* NULL: "console=ttyS0" */
	const char *const *disks;    /* imgfmt images, virtio-blk each */
	const bool *disk_readonly;   /* NULL: all writable */
	const char *const *disk_formats; /* NULL, or NULL for a disk: detect */
	/* Disks that may read the files their image names (a backing
	 * file); NULL: none, each opened IMGFMT_OPEN_SELF_CONTAINED. */
	const bool *disk_backing;
	/* Already open images to attach instead of opening disks[] (which
	 * then only name them in messages); they stay the caller's. */
	struct imgfmt_image *const *disk_images;
	/* User-mode networking through passt (runtime/passt.h): a
	 * virtio-net device when `network` or any forward is given. */
	const struct passt_forward *ports;
	int nr_ports;
	bool network;
	/* A tap interface for the virtio-net device instead of passt (no
	 * port forwards then); NULL: none. */
	const char *tap;
	int nr_disks;
	int console_out_fd;          /* UART output */
	int console_in_fd;           /* UART input, -1: none */
	bool console_raw;            /* console_in_fd is a terminal to put in
	                                raw mode; Ctrl-A x then quits */
	bool no_seccomp;             /* skip the syscall filter */
	const char *kvm_path;        /* NULL: /dev/kvm */
};

struct monitor_result {
	enum vm_stop reason;
	char message[512];           /* why it stopped, for the user */
	uint64_t setup_ns;           /* monitor__run start to first KVM_RUN */
	uint64_t run_ns;             /* first KVM_RUN to stop */
	uint64_t rss_bytes;          /* VmRSS at the end */
	uint64_t rss_anon_bytes;     /* RssAnon: private memory (guest RAM
	                                included), without shared libraries */
	uint64_t guest_resident;     /* guest RAM pages resident at the end */
	uint64_t console_bytes;      /* bytes the guest wrote to the UART */
	bool seccomp_active;
};

/* 0 when the guest powered off (or was stopped by a signal), negative
 * errno on failure with vm__error() and res->message explaining. */
int monitor__run(const struct monitor_config *cfg, struct monitor_result *res);

/* Parse "0-3,6,8-9" into CPU numbers (at most max).  Returns the count, or
 * -EINVAL with a message. */
int monitor__parse_cpu_list(const char *s, int *out, int max);

#endif /* RUNTIME_MONITOR_H */
