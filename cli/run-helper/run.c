/*
 * run.c - appliance-run, the program that boots a VM for `appliance run`:
 * a kernel, or a local appliance package, in the builtin KVM monitor or
 * under QEMU.
 *
 * `appliance run` (cli/cmd-run.c) parses the same options, pulls a URL or
 * NAME into the cache, then execs this program with a local file.  It is
 * a separate program so that the process that lives as long as the VM
 * maps only what booting needs: not libcurl's TLS stack (~3.5 MiB
 * resident), not libarchive with libxml2, ICU and libstdc++ (~2 MiB),
 * which the front end loads for downloads and builds.  Package reading
 * here is our own strict ustar walk (appliances/package.c), so the runner
 * links neither.  Firecracker's published per-VM overhead is < 5 MiB;
 * docs/PERFORMANCE.md has ours.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/run.h"
#include "runtime/engine-qemu.h"
#include "runtime/kvmspeed.h"
#include "runtime/launch.h"
#include "runtime/monitor.h"
#include "runtime/passt.h"
#include "runtime/virtio/net.h"
#include "runtime/vm.h"

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
	struct sigaction sa, old_int, old_term, old_hup;
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
	qc.disk_formats = a->mc.disk_formats;
	qc.disk_backing = a->mc.disk_backing;
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
	qc.inherit_fds = a->inherit_fds;
	qc.nr_inherit_fds = a->nr_inherit_fds;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = qemu_stop_handler;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	sigaction(SIGHUP, &sa, &old_hup);
	rc = qemu_engine__run(&qc, &res);
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	sigaction(SIGHUP, &old_hup, NULL);
	if (file_fd >= 0)
		close(file_fd);
	if (res.stopped_by_signal) {
		fprintf(stderr, "appliance: run: stopped by a signal\n");
		return EXIT_OK;
	}
	if (res.console_closed) {
		fprintf(stderr, "appliance: run: the console was closed; "
			"the VM was stopped\n");
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
	char *cmdline = NULL;
	int rc;

	if (a->mc.kernel || a->mc.nr_disks)
		return cli__usage("run", "--kernel/--disk and an APPLIANCE "
				  "exclude each other");
	/* The front end pulled anything that was not a local file. */
	if (stat(a->appliance, &st) < 0 || !S_ISREG(st.st_mode)) {
		cli__error("run: %s: not a package file", a->appliance);
		return EXIT_FAIL;
	}
	if (a->key) {
		if (minisign__pubkey_load(a->key, &pk) < 0) {
			cli__error("%s", minisign__error());
			return EXIT_FAIL;
		}
		lo.key = &pk;
	}
	rc = launch__prepare(a->appliance, &lo, &l);
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
	a->inherit_fds[a->nr_inherit_fds++] = l->kernel_fd;
	if (l->initrd_fd >= 0)
		a->inherit_fds[a->nr_inherit_fds++] = l->initrd_fd;
	a->mc.cmdline = cmdline;
	if (!a->mem_given)
		a->mc.mem_size = l->pkg->memory;
	if (!a->cpus_given)
		a->mc.nr_cpus = l->pkg->cpus;
	a->images[0] = l->overlay;
	a->disks[0] = l->overlay_path;
	a->disk_ro[0] = false;
	a->disk_format[0] = NULL;
	a->disk_backing[0] = false;
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

static int run_main(int argc, char **argv)
{
	struct run_args a;
	int rc;

	memset(&a, 0, sizeof(a));
	if ((rc = run_args__parse(argc, argv, &a)) != 0)
		rc = rc < 0 ? EXIT_OK : rc;
	else if (a.check_kvm)
		rc = check_kvm();
	else if (a.appliance)
		rc = run_appliance(&a);
	else
		rc = run_engine(&a);
	run_args__free(&a);
	return rc;
}

/* Run as `appliance-run run ARGS...`, the way cli__exec_helper calls it. */
int main(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "run") != 0) {
		cli__error("appliance-run is started by `appliance run`, not "
			   "by hand");
		return EXIT_USAGE;
	}
	/* A console or stderr whose reader went away (`appliance run ... |
	 * head`) must not kill us outright, leaving the VM's disks
	 * unflushed: writes to it fail instead, and the engines notice the
	 * closed console and stop the VM cleanly. */
	signal(SIGPIPE, SIG_IGN);
	return run_main(argc - 1, argv + 1);
}
