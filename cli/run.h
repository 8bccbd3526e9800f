/*
 * run.h - `appliance run`'s options, shared by the front end (cli/cmd-run.c,
 * which pulls what must be pulled) and the runner (cli/run-helper/, the
 * lean program that boots the VM).
 */
#ifndef CLI_RUN_H
#define CLI_RUN_H

#include <stdbool.h>

#include "imgfmt.h"

#include "runtime/engine-qemu.h"
#include "runtime/monitor.h"
#include "runtime/vm.h"

struct run_args {
	const char *engine;
	const char *appliance;
	int appliance_index;       /* where in argv the APPLIANCE was */
	const char *console;
	bool stats, check_kvm;
	struct monitor_config mc;
	const char *disks[MONITOR_MAX_DISKS];
	char *disk_names[MONITOR_MAX_DISKS];   /* owned copies */
	bool disk_ro[MONITOR_MAX_DISKS];
	const char *disk_format[MONITOR_MAX_DISKS];  /* NULL: detect */
	bool disk_backing[MONITOR_MAX_DISKS];  /* ,backing=on */
	int affinity[VM_MAX_CPUS];
	bool insecure, mem_given, cpus_given;
	const char *key, *persist;
	bool net_none;
	struct qemu_port_forward ports[QEMU_ENGINE_MAX_PORTS];
	int nr_ports;
	imgfmt_image *images[1];   /* a package's overlay */
	int inherit_fds[2];        /* a package's kernel and initramfs
	                              copies, for QEMU (/proc/self/fd/N) */
	int nr_inherit_fds;
};

/* Parse `run` ARGV (argv[0] is "run") into a, which must be zeroed.
 * Returns 0, -1 after printing --help, or EXIT_USAGE after printing the
 * error.  ARGV's strings are left as they were (getopt may reorder
 * them), so a front end can pass the same ARGV on.  run_args__free
 * releases what it allocated. */
int run_args__parse(int argc, char **argv, struct run_args *a);
void run_args__free(struct run_args *a);

#endif /* CLI_RUN_H */
