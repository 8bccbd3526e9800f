/*
 * cmd-run.c - `appliance run`: boot a kernel (later: an appliance) in a
 * microVM, with the builtin KVM monitor or QEMU.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "runtime/kvmspeed.h"
#include "runtime/monitor.h"
#include "runtime/vm.h"

const char cmd_run_help[] =
	"usage: appliance run [OPTIONS] [APPLIANCE]\n"
	"\n"
	"Boot a Linux kernel in a microVM.\n"
	"\n"
	"  --engine builtin|qemu|auto  hypervisor: our KVM monitor, QEMU, or\n"
	"                        pick (default auto: builtin unless /dev/kvm\n"
	"                        is missing or runs guests emulated)\n"
	"  --kernel FILE         bzImage to boot (64-bit boot protocol >= 2.12)\n"
	"  --initrd FILE         initramfs\n"
	"  --append CMDLINE      kernel command line (default console=ttyS0)\n"
	"  --disk IMAGE[,ro]     a virtio-blk disk (any image format); repeat\n"
	"  --memory SIZE         guest RAM (default 512M)\n"
	"  --cpus N              vCPUs (default 1)\n"
	"  --cpu-affinity LIST   host CPUs for the vCPUs, e.g. 0-3,6\n"
	"  --console stdio|none|FILE  where the serial console goes (default\n"
	"                        stdio; on a terminal Ctrl-A x quits)\n"
	"  --no-seccomp          do not restrict the monitor's syscalls\n"
	"  --stats               print monitor figures to stderr at the end\n"
	"  --check-kvm           only measure whether /dev/kvm runs guests at\n"
	"                        hardware speed, print the verdict, exit\n"
	"\n"
	"Exit status: 0 the guest powered off (or was stopped by SIGINT,\n"
	"SIGTERM or Ctrl-A x), 1 failure (guest crash, bad kernel), 2 usage.\n";

enum {
	OPT_ENGINE = 1000, OPT_KERNEL, OPT_INITRD, OPT_APPEND, OPT_DISK,
	OPT_MEMORY, OPT_CPUS, OPT_AFFINITY, OPT_CONSOLE, OPT_NO_SECCOMP,
	OPT_STATS, OPT_CHECK_KVM,
};

static const struct option run_opts[] = {
	{ "engine", required_argument, NULL, OPT_ENGINE },
	{ "kernel", required_argument, NULL, OPT_KERNEL },
	{ "initrd", required_argument, NULL, OPT_INITRD },
	{ "append", required_argument, NULL, OPT_APPEND },
	{ "disk", required_argument, NULL, OPT_DISK },
	{ "memory", required_argument, NULL, OPT_MEMORY },
	{ "cpus", required_argument, NULL, OPT_CPUS },
	{ "cpu-affinity", required_argument, NULL, OPT_AFFINITY },
	{ "console", required_argument, NULL, OPT_CONSOLE },
	{ "no-seccomp", no_argument, NULL, OPT_NO_SECCOMP },
	{ "stats", no_argument, NULL, OPT_STATS },
	{ "check-kvm", no_argument, NULL, OPT_CHECK_KVM },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

struct run_args {
	const char *engine;
	const char *appliance;
	const char *console;
	bool stats, check_kvm;
	struct monitor_config mc;
	const char *disks[MONITOR_MAX_DISKS];
	bool disk_ro[MONITOR_MAX_DISKS];
	int affinity[VM_MAX_CPUS];
};

static int parse_run_args(int argc, char **argv, struct run_args *a)
{
	int c;
	uint64_t v;

	a->engine = "auto";
	a->console = "stdio";
	a->mc.mem_size = 512ull << 20;
	a->mc.nr_cpus = 1;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", run_opts, NULL)) != -1) {
		switch (c) {
		case OPT_ENGINE:
			if (strcmp(optarg, "builtin") && strcmp(optarg, "qemu") &&
			    strcmp(optarg, "auto"))
				return cli__usage("run", "unknown engine '%s'",
						  optarg);
			a->engine = optarg;
			break;
		case OPT_KERNEL: a->mc.kernel = optarg; break;
		case OPT_INITRD: a->mc.initrd = optarg; break;
		case OPT_APPEND: a->mc.cmdline = optarg; break;
		case OPT_DISK: {
			if (a->mc.nr_disks == MONITOR_MAX_DISKS)
				return cli__usage("run", "at most %d disks",
						  MONITOR_MAX_DISKS);
			char *comma = strrchr(optarg, ',');
			bool ro = false;
			if (comma && strcmp(comma, ",ro") == 0) {
				*comma = '\0';
				ro = true;
			}
			a->disk_ro[a->mc.nr_disks] = ro;
			a->disks[a->mc.nr_disks++] = optarg;
			break;
		}
		case OPT_MEMORY:
			if (cli__parse_size(optarg, &v) < 0 || v < VM_MIN_RAM ||
			    v > VM_MAX_RAM)
				return cli__usage("run", "bad --memory '%s' "
						  "(2M to 1T)", optarg);
			a->mc.mem_size = v;
			break;
		case OPT_CPUS:
			if (cli__parse_u64(optarg, &v) < 0 || v < 1 ||
			    v > VM_MAX_CPUS)
				return cli__usage("run", "bad --cpus '%s' (1 to "
						  "%d)", optarg, VM_MAX_CPUS);
			a->mc.nr_cpus = (int)v;
			break;
		case OPT_AFFINITY: {
			int n = monitor__parse_cpu_list(optarg, a->affinity,
							VM_MAX_CPUS);
			if (n < 0)
				return cli__usage("run", "%s", vm__error());
			a->mc.cpu_affinity = a->affinity;
			a->mc.nr_affinity = n;
			break;
		}
		case OPT_CONSOLE: a->console = optarg; break;
		case OPT_NO_SECCOMP: a->mc.no_seccomp = true; break;
		case OPT_STATS: a->stats = true; break;
		case OPT_CHECK_KVM: a->check_kvm = true; break;
		case 'h': fputs(cmd_run_help, stdout); return -1;
		default: return cli__usage("run", "bad option");
		}
	}
	if (optind < argc)
		a->appliance = argv[optind++];
	if (optind < argc)
		return cli__usage("run", "unexpected argument '%s'",
				  argv[optind]);
	a->mc.disks = a->disks;
	a->mc.disk_readonly = a->disk_ro;
	return 0;
}

static int check_kvm(void)
{
	struct kvmspeed_result r;

	if (kvmspeed__measure(NULL, &r) < 0) {
		cli__error("run: cannot measure /dev/kvm: %s", vm__error());
		return EXIT_FAIL;
	}
	printf("%s: guest loop %.1f ns/iteration, host %.3f ns/iteration, "
	       "ratio %.0fx\n", kvmspeed__verdict(&r), r.guest_ns_per_iter,
	       r.host_ns_per_iter, r.ratio);
	return EXIT_OK;
}

/* --engine auto: builtin where KVM runs at hardware speed. */
static const char *choose_engine(void)
{
	struct kvmspeed_result r;

	if (access("/dev/kvm", R_OK | W_OK) != 0) {
		fprintf(stderr, "appliance: run: /dev/kvm is not usable (%s); "
			"using the QEMU engine\n", strerror(errno));
		return "qemu";
	}
	if (kvmspeed__measure(NULL, &r) < 0) {
		fprintf(stderr, "appliance: run: KVM does not work here (%s); "
			"using the QEMU engine\n", vm__error());
		return "qemu";
	}
	if (r.emulated) {
		fprintf(stderr, "appliance: run: KVM runs guests emulated here "
			"(loop %.0fx slower than the host); using the QEMU "
			"engine\n", r.ratio);
		return "qemu";
	}
	fprintf(stderr, "appliance: run: KVM runs guests at hardware speed "
		"(loop %.1fx the host's time); using the builtin engine\n",
		r.ratio);
	return "builtin";
}

static int run_builtin(struct run_args *a)
{
	struct monitor_result res;
	int out_fd = -1, rc;

	if (!a->mc.kernel)
		return cli__usage("run", "--kernel is required (running an "
				  "appliance package is not supported yet)");
	if (strcmp(a->console, "stdio") == 0) {
		a->mc.console_out_fd = STDOUT_FILENO;
		a->mc.console_in_fd = STDIN_FILENO;
		a->mc.console_raw = isatty(STDIN_FILENO);
	} else if (strcmp(a->console, "none") == 0) {
		a->mc.console_out_fd = -1;
		a->mc.console_in_fd = -1;
	} else {
		out_fd = open(a->console, O_WRONLY | O_CREAT | O_TRUNC |
			      O_CLOEXEC, 0644);
		if (out_fd < 0) {
			cli__error("run: console file %s: %s", a->console,
				   strerror(errno));
			return EXIT_FAIL;
		}
		a->mc.console_out_fd = out_fd;
		a->mc.console_in_fd = -1;
	}
	rc = monitor__run(&a->mc, &res);
	if (out_fd >= 0)
		close(out_fd);
	if (a->stats && res.rss_bytes) {
		uint64_t over = res.rss_bytes > res.guest_resident
			? res.rss_bytes - res.guest_resident : 0;
		fprintf(stderr, "monitor: setup to first KVM_RUN %.2f ms, run "
			"%.2f ms, RSS %llu KiB, guest RAM resident %llu KiB, "
			"monitor overhead %llu KiB, console %llu bytes, "
			"seccomp %s\n", (double)res.setup_ns / 1e6,
			(double)res.run_ns / 1e6,
			(unsigned long long)(res.rss_bytes >> 10),
			(unsigned long long)(res.guest_resident >> 10),
			(unsigned long long)(over >> 10),
			(unsigned long long)res.console_bytes,
			res.seccomp_active ? "on" : "off");
	}
	if (rc < 0) {
		cli__error("run: %s", res.message[0] ? res.message
						      : vm__error());
		return EXIT_FAIL;
	}
	if (res.reason == VM_STOP_SIGNAL)
		fprintf(stderr, "appliance: run: %s\n", res.message);
	return EXIT_OK;
}

int cmd_run(int argc, char **argv)
{
	struct run_args a;
	int rc;

	memset(&a, 0, sizeof(a));
	if ((rc = parse_run_args(argc, argv, &a)) != 0)
		return rc < 0 ? EXIT_OK : rc;
	if (a.check_kvm)
		return check_kvm();
	if (a.appliance) {
		cli__error("run: running an appliance package ('%s') is not "
			   "supported yet; use --kernel/--initrd/--disk",
			   a.appliance);
		return EXIT_FAIL;
	}
	const char *engine = a.engine;
	if (strcmp(engine, "auto") == 0) {
		engine = choose_engine();
		if (strcmp(engine, "qemu") == 0) {
			fprintf(stderr, "appliance: run: this build has no QEMU "
				"engine yet; using the builtin engine anyway\n");
			engine = "builtin";
		}
	}
	if (strcmp(engine, "qemu") == 0) {
		cli__error("run: the QEMU engine is not available in this "
			   "build yet; use --engine builtin");
		return EXIT_FAIL;
	}
	return run_builtin(&a);
}
