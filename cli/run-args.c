/*
 * run-args.c - `appliance run`'s help and option parsing, shared by the
 * front end and the runner program (see run.h).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "run.h"
#include "runtime/virtio/net.h"

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
	"  --disk IMAGE[,ro][,format=FMT][,backing=on]  a virtio-blk disk\n"
	"                        (any image format; detected unless named: a\n"
	"                        detected raw disk refuses guest writes that\n"
	"                        would make it look like another format); an\n"
	"                        image naming a backing file is refused unless\n"
	"                        backing=on lets the guest read that file;\n"
	"                        repeat\n"
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
	"The VM is stopped and its disk images flushed on SIGINT, SIGTERM,\n"
	"SIGHUP, Ctrl-A x, or the console's reader going away (as in\n"
	"`appliance run ... | grep -m1 ready`).  Nothing of a run stays in\n"
	"$TMPDIR, even if it is killed.\n"
	"\n"
	"Exit status: 0 the guest powered off or was stopped as above,\n"
	"1 failure (guest crash, bad kernel), 2 usage.\n";

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


int run_args__parse(int argc, char **argv, struct run_args *a)
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
			/* A copy: the front end passes argv on as it is. */
			char *name = strdup(optarg);
			if (!name) {
				cli__error("out of memory");
				return EXIT_FAIL;
			}
			/* Options from the right, so that a name may hold
			 * commas. */
			char *comma;
			bool ro = false, backing = false;
			const char *fmt = NULL;
			while ((comma = strrchr(name, ','))) {
				if (strcmp(comma, ",ro") == 0)
					ro = true;
				else if (strcmp(comma, ",backing=on") == 0)
					backing = true;
				else if (strncmp(comma, ",format=", 8) == 0)
					fmt = comma + 8;
				else
					break;
				*comma = '\0';
			}
			a->disk_ro[a->mc.nr_disks] = ro;
			a->disk_format[a->mc.nr_disks] = fmt;
			a->disk_backing[a->mc.nr_disks] = backing;
			a->disk_names[a->mc.nr_disks] = name;
			a->disks[a->mc.nr_disks++] = name;
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
	if (optind < argc) {
		a->appliance_index = optind;
		a->appliance = argv[optind++];
	}
	if (optind < argc)
		return cli__usage("run", "unexpected argument '%s'",
				  argv[optind]);
	if (a->mc.tap && a->nr_ports > 0)
		return cli__usage("run", "-p needs the user-mode network, not "
				  "--net tap");
	a->mc.disks = a->disks;
	a->mc.disk_readonly = a->disk_ro;
	a->mc.disk_formats = a->disk_format;
	a->mc.disk_backing = a->disk_backing;
	return 0;
}

void run_args__free(struct run_args *a)
{
	for (int i = 0; i < MONITOR_MAX_DISKS; i++)
		free(a->disk_names[i]);
}
