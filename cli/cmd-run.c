/*
 * cmd-run.c - `appliance run`: boot a kernel (later: an appliance) in a
 * microVM, with the builtin KVM monitor or QEMU.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "runtime/engine-qemu.h"
#include "runtime/kvmspeed.h"
#include "runtime/launch.h"
#include "runtime/monitor.h"
#include "runtime/passt.h"
#include "runtime/virtio/net.h"
#include "runtime/vm.h"

const char cmd_run_help[] =
	"usage: appliance run [OPTIONS] [APPLIANCE]\n"
	"\n"
	"Boot an appliance, or a Linux kernel, in a microVM.  APPLIANCE is a\n"
	"package file, a URL (REPO_URL/NAME[:VERSION] or URL.appliance: pulled\n"
	"into the cache first) or NAME[:VERSION] of a cached package.  Its\n"
	"signature is checked against the trust store (or --key), its kernel\n"
	"and initramfs by SHA-256, its disk cluster by cluster as the guest\n"
	"reads it; guest writes go to an overlay, never to the package.\n"
	"\n"
	"  --insecure            run unsigned or untrusted packages anyway\n"
	"  --key K.pub           the key the package must be signed with\n"
	"  --persist OVERLAY     keep the guest's disk changes in OVERLAY (an\n"
	"                        AVD file, created or reused); default: thrown\n"
	"                        away when the VM stops\n"
	"  -p HOST:GUEST[/udp]   forward a host port on 127.0.0.1 to the guest\n"
	"                        (added to the package's own forwards; one for\n"
	"                        the same guest port replaces the package's)\n"
	"  --engine builtin|qemu|auto  hypervisor: our KVM monitor, QEMU, or\n"
	"                        pick (default auto: builtin unless /dev/kvm\n"
	"                        is missing or runs guests emulated)\n"
	"  --kernel FILE         kernel to boot: a bzImage (64-bit boot protocol\n"
	"                        >= 2.12) or an ELF vmlinux with a PVH entry\n"
	"                        note (CONFIG_PVH), booted through PVH\n"
	"  --initrd FILE         initramfs\n"
	"  --append CMDLINE      kernel command line (default console=ttyS0)\n"
	"  --disk IMAGE[,ro]     a virtio-blk disk (any image format); repeat\n"
	"  --net user|tap:IFNAME|none  the network: user-mode through passt\n"
	"                        (default when there are port forwards; \"user\"\n"
	"                        adds it without any), the host tap interface\n"
	"                        IFNAME (created if missing and we may; no -p),\n"
	"                        or none (forwards ignored)\n"
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
	OPT_STATS, OPT_CHECK_KVM, OPT_INSECURE, OPT_KEY, OPT_PERSIST,
	OPT_NET,
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
	{ "insecure", no_argument, NULL, OPT_INSECURE },
	{ "key", required_argument, NULL, OPT_KEY },
	{ "persist", required_argument, NULL, OPT_PERSIST },
	{ "net", required_argument, NULL, OPT_NET },
	{ "publish", required_argument, NULL, 'p' },
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
	bool insecure, mem_given, cpus_given;
	const char *key, *persist;
	bool net_none;
	struct qemu_port_forward ports[QEMU_ENGINE_MAX_PORTS];
	int nr_ports;
	imgfmt_image *images[1];   /* a package's overlay */
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
	while ((c = getopt_long(argc, argv, "hp:", run_opts, NULL)) != -1) {
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
			a->mem_given = true;
			break;
		case OPT_CPUS:
			if (cli__parse_u64(optarg, &v) < 0 || v < 1 ||
			    v > VM_MAX_CPUS)
				return cli__usage("run", "bad --cpus '%s' (1 to "
						  "%d)", optarg, VM_MAX_CPUS);
			a->mc.nr_cpus = (int)v;
			a->cpus_given = true;
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
		case OPT_INSECURE: a->insecure = true; break;
		case OPT_KEY: a->key = optarg; break;
		case OPT_PERSIST: a->persist = optarg; break;
		case OPT_NET:
			a->mc.network = false;
			a->mc.tap = NULL;
			a->net_none = false;
			if (strcmp(optarg, "user") == 0)
				a->mc.network = true;
			else if (strcmp(optarg, "none") == 0)
				a->net_none = true;
			else if (strncmp(optarg, "tap:", 4) == 0 &&
				 net_tap__valid_name(optarg + 4))
				a->mc.tap = optarg + 4;
			else
				return cli__usage("run", "bad --net '%s' (user, "
						  "tap:IFNAME or none)", optarg);
			break;
		case 'p': {
			unsigned h, g;
			char proto[8] = "tcp";
			int n = sscanf(optarg, "%u:%u/%7s", &h, &g, proto);
			if (n < 2 || !h || !g || h > 65535 || g > 65535 ||
			    (strcmp(proto, "tcp") && strcmp(proto, "udp")))
				return cli__usage("run", "bad -p '%s' (HOST:GUEST"
						  "[/udp])", optarg);
			if (a->nr_ports == QEMU_ENGINE_MAX_PORTS)
				return cli__usage("run", "too many -p");
			a->ports[a->nr_ports].host_port = (int)h;
			a->ports[a->nr_ports].guest_port = (int)g;
			a->ports[a->nr_ports++].udp = !strcmp(proto, "udp");
			break;
		}
		case 'h': fputs(cmd_run_help, stdout); return -1;
		default: return cli__usage("run", "bad option");
		}
	}
	if (optind < argc)
		a->appliance = argv[optind++];
	if (optind < argc)
		return cli__usage("run", "unexpected argument '%s'",
				  argv[optind]);
	if (a->mc.tap && a->nr_ports > 0)
		return cli__usage("run", "-p needs the user-mode network, not "
				  "--net tap");
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

/* Whether /dev/kvm runs guests at hardware speed; `why` says what was
 * found, for the user. */
static bool kvm_is_fast(char *why, size_t len)
{
	struct kvmspeed_result r;

	if (access("/dev/kvm", R_OK | W_OK) != 0) {
		snprintf(why, len, "/dev/kvm is not usable (%s)",
			 strerror(errno));
		return false;
	}
	if (kvmspeed__measure(NULL, &r) < 0) {
		snprintf(why, len, "KVM does not work here (%s)", vm__error());
		return false;
	}
	if (r.emulated) {
		snprintf(why, len, "KVM runs guests emulated here (loop %.0fx "
			 "slower than the host)", r.ratio);
		return false;
	}
	snprintf(why, len, "KVM runs guests at hardware speed (loop %.1fx "
		 "the host's time)", r.ratio);
	return true;
}

/* Console: where the guest's UART goes, for either engine. */
static int open_console(struct run_args *a, int *out, int *in, bool *raw,
			int *file_fd)
{
	*file_fd = -1;
	*raw = false;
	if (strcmp(a->console, "stdio") == 0) {
		*out = STDOUT_FILENO;
		*in = STDIN_FILENO;
		*raw = isatty(STDIN_FILENO);
	} else if (strcmp(a->console, "none") == 0) {
		*out = -1;
		*in = -1;
	} else {
		*file_fd = open(a->console, O_WRONLY | O_CREAT | O_TRUNC |
				O_CLOEXEC, 0644);
		if (*file_fd < 0) {
			cli__error("run: console file %s: %s", a->console,
				   strerror(errno));
			return -1;
		}
		*out = *file_fd;
		*in = -1;
	}
	return 0;
}

static void qemu_stop_handler(int sig)
{
	(void)sig;
	qemu_engine__stop();
}

static int run_qemu(struct run_args *a, bool use_kvm)
{
	struct qemu_engine_config qc;
	struct qemu_engine_result res;
	struct sigaction sa, old_int, old_term;
	int file_fd, in_fd, out_fd, rc;
	bool raw;

	if (!a->mc.kernel)
		return cli__usage("run", "give an APPLIANCE or --kernel");
	if (a->mc.nr_affinity > 0)
		fprintf(stderr, "appliance: run: --cpu-affinity applies to the "
			"builtin engine only; ignored\n");
	if (open_console(a, &out_fd, &in_fd, &raw, &file_fd) < 0)
		return EXIT_FAIL;
	memset(&qc, 0, sizeof(qc));
	qc.mem_size = a->mc.mem_size;
	qc.nr_cpus = a->mc.nr_cpus;
	qc.kernel = a->mc.kernel;
	qc.initrd = a->mc.initrd;
	qc.cmdline = a->mc.cmdline;
	qc.disks = a->mc.disks;
	qc.disk_readonly = a->mc.disk_readonly;
	qc.nr_disks = a->mc.nr_disks;
	qc.disk_images = a->mc.disk_images;
	qc.ports = a->ports;
	qc.nr_ports = a->nr_ports;
	qc.network = a->mc.network;
	qc.tap = a->mc.tap;
	qc.use_kvm = use_kvm;
	qc.console_out_fd = out_fd;
	qc.console_in_fd = in_fd;
	qc.console_escape = raw;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = qemu_stop_handler;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	rc = qemu_engine__run(&qc, &res);
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	if (file_fd >= 0)
		close(file_fd);
	if (res.stopped_by_signal) {
		fprintf(stderr, "appliance: run: stopped by a signal\n");
		return EXIT_OK;
	}
	if (rc < 0) {
		cli__error("run: %s", res.message[0] ? res.message
						      : qemu_engine__error());
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

static int run_builtin(struct run_args *a)
{
	struct monitor_result res;
	int out_fd = -1, rc;

	if (!a->mc.kernel)
		return cli__usage("run", "give an APPLIANCE or --kernel");
	if (open_console(a, &a->mc.console_out_fd, &a->mc.console_in_fd,
			 &a->mc.console_raw, &out_fd) < 0)
		return EXIT_FAIL;
	/* Port forwards (-p and the package's) through passt. */
	struct passt_forward fw[QEMU_ENGINE_MAX_PORTS];
	for (int i = 0; i < a->nr_ports; i++) {
		fw[i].host_port = a->ports[i].host_port;
		fw[i].guest_port = a->ports[i].guest_port;
		fw[i].udp = a->ports[i].udp;
	}
	a->mc.ports = fw;
	a->mc.nr_ports = a->nr_ports;
	rc = monitor__run(&a->mc, &res);
	if (out_fd >= 0)
		close(out_fd);
	if (a->stats && res.rss_bytes) {
		/* Overhead = what the monitor holds beyond the guest's own
		 * RAM; "private" leaves out shared-library pages. */
		uint64_t over = res.rss_bytes > res.guest_resident
			? res.rss_bytes - res.guest_resident : 0;
		uint64_t priv = res.rss_anon_bytes > res.guest_resident
			? res.rss_anon_bytes - res.guest_resident : 0;
		fprintf(stderr, "monitor: setup to first KVM_RUN %.2f ms, run "
			"%.2f ms, RSS %llu KiB, guest RAM resident %llu KiB, "
			"monitor overhead %llu KiB (%llu KiB private), console "
			"%llu bytes, seccomp %s\n", (double)res.setup_ns / 1e6,
			(double)res.run_ns / 1e6,
			(unsigned long long)(res.rss_bytes >> 10),
			(unsigned long long)(res.guest_resident >> 10),
			(unsigned long long)(over >> 10),
			(unsigned long long)(priv >> 10),
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

static int run_engine(struct run_args *a)
{
	char why[256];

	/* Only the package's forwards can be left here with tap (-p with
	 * tap is a usage error): a tap has no port forwarding. */
	if ((a->net_none || a->mc.tap) && a->nr_ports > 0) {
		fprintf(stderr, "appliance: run: %d port forward%s not set up "
			"(--net %s)\n", a->nr_ports, a->nr_ports > 1 ? "s" : "",
			a->net_none ? "none" : "tap");
		a->nr_ports = 0;
	}
	if (strcmp(a->engine, "builtin") == 0)
		return run_builtin(a);
	bool fast = kvm_is_fast(why, sizeof(why));
	if (strcmp(a->engine, "auto") == 0) {
		fprintf(stderr, "appliance: run: %s; using the %s engine\n",
			why, fast ? "builtin" : "QEMU (TCG)");
		if (fast)
			return run_builtin(a);
	}
	/* QEMU with KVM only where KVM is fast: a nested KVM that emulates
	 * is slower than QEMU's own TCG, and QEMU+KVM aborts on some. */
	return run_qemu(a, fast);
}

/* A package: find or pull it, check it, boot it over an overlay. */
static int run_appliance(struct run_args *a)
{
	struct minisign_pubkey pk;
	struct launch_opts lo = { .insecure = a->insecure,
				  .persist = a->persist };
	struct launch *l;
	struct stat st;
	char *path = NULL, *cmdline = NULL;
	int rc;

	if (a->mc.kernel || a->mc.nr_disks)
		return cli__usage("run", "--kernel/--disk and an APPLIANCE "
				  "exclude each other");
	if (stat(a->appliance, &st) == 0 && S_ISREG(st.st_mode)) {
		path = strdup(a->appliance);
	} else if (cli__pull(a->appliance, a->key, a->insecure, &path) < 0) {
		return EXIT_FAIL;
	}
	if (a->key) {
		if (minisign__pubkey_load(a->key, &pk) < 0) {
			cli__error("%s", minisign__error());
			free(path);
			return EXIT_FAIL;
		}
		lo.key = &pk;
	}
	rc = launch__prepare(path, &lo, &l);
	free(path);
	if (rc < 0) {
		cli__error("run: %s", launch__error());
		return EXIT_FAIL;
	}
	if (!l->signature_ok)
		fprintf(stderr, "appliance: run: WARNING: running an "
			"unverified appliance (--insecure): %s\n", l->warning);
	else
		fprintf(stderr, "appliance: run: %s %s, signed by trusted key "
			"%s\n", l->pkg->name, l->pkg->version, l->keyid);
	if (asprintf(&cmdline, "%s%s%s", l->pkg->cmdline,
		     a->mc.cmdline ? " " : "",
		     a->mc.cmdline ? a->mc.cmdline : "") < 0) {
		launch__finish(l);
		return EXIT_FAIL;
	}
	a->mc.kernel = l->kernel;
	a->mc.initrd = l->initrd[0] ? l->initrd : NULL;
	a->mc.cmdline = cmdline;
	if (!a->mem_given)
		a->mc.mem_size = l->pkg->memory;
	if (!a->cpus_given)
		a->mc.nr_cpus = l->pkg->cpus;
	a->images[0] = l->overlay;
	a->disks[0] = l->overlay_path;
	a->disk_ro[0] = false;
	a->mc.nr_disks = 1;
	a->mc.disk_images = a->images;
	/* The package's forwards, except where -p already maps that guest
	 * port (the user moving a forward off a busy host port). */
	int given = a->nr_ports;
	for (int i = 0; i < l->pkg->nr_ports &&
			a->nr_ports < QEMU_ENGINE_MAX_PORTS; i++) {
		int mapped = 0;
		for (int k = 0; k < given; k++)
			if (a->ports[k].guest_port == l->pkg->ports[i].guest &&
			    a->ports[k].udp == l->pkg->ports[i].udp)
				mapped = 1;
		if (mapped)
			continue;
		a->ports[a->nr_ports].host_port = l->pkg->ports[i].host;
		a->ports[a->nr_ports].guest_port = l->pkg->ports[i].guest;
		a->ports[a->nr_ports++].udp = l->pkg->ports[i].udp;
	}
	rc = run_engine(a);
	if (launch__finish(l) < 0 && rc == EXIT_OK) {
		cli__error("run: %s", launch__error());
		rc = EXIT_FAIL;
	}
	free(cmdline);
	return rc;
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
	if (a.appliance)
		return run_appliance(&a);
	return run_engine(&a);
}
