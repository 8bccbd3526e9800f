/*
 * engine-qemu.c - the QEMU engine (see engine-qemu.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "imgfmt.h"
#include "nbd/server.h"
#include "runtime/engine-qemu.h"
#include "runtime/virtio/net.h"

static __thread char engine_errbuf[512];
static volatile pid_t running_qemu;
static volatile sig_atomic_t stop_requested;

const char *qemu_engine__error(void)
{
	return engine_errbuf;
}

static int engine_err(int err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int engine_err(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(engine_errbuf, sizeof(engine_errbuf), fmt, ap);
	va_end(ap);
	return -(err > 0 ? err : EIO);
}

void qemu_engine__stop(void)
{
	stop_requested = 1;
	if (running_qemu > 0)
		kill(running_qemu, SIGTERM);
}

/* A growable NULL-terminated argv. */
struct argv_buf {
	char **v;
	int n, cap;
	int failed;
};

static void arg_add(struct argv_buf *a, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void arg_add(struct argv_buf *a, const char *fmt, ...)
{
	va_list ap;
	char *s;

	if (a->n + 2 > a->cap) {
		int cap = a->cap ? a->cap * 2 : 64;
		char **v = realloc(a->v, (size_t)cap * sizeof(*v));
		if (!v) {
			a->failed = 1;
			return;
		}
		a->v = v;
		a->cap = cap;
	}
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0) {
		a->failed = 1;
		s = NULL;
	}
	va_end(ap);
	if (!s)
		return;
	a->v[a->n++] = s;
	a->v[a->n] = NULL;
}

void qemu_engine__free_argv(char **argv)
{
	if (!argv)
		return;
	for (char **p = argv; *p; p++)
		free(*p);
	free(argv);
}

char **qemu_engine__argv(const struct qemu_engine_config *cfg,
			 const int *disk_fds)
{
	struct argv_buf a = { 0 };
	uint64_t mem_mb = cfg->mem_size ? cfg->mem_size >> 20 : 256;

	arg_add(&a, "%s", cfg->qemu_binary ? cfg->qemu_binary
					   : "qemu-system-x86_64");
	/* microvm: no firmware, no PCI; virtio-mmio devices described in
	 * ACPI, which the stock Debian kernel finds (it has no virtio-mmio
	 * command-line devices).  Without pit=on the kernel hangs
	 * calibrating the TSC under TCG. */
	arg_add(&a, "-M");
	arg_add(&a, "microvm,pit=on,pic=on,rtc=on,acpi=on");
	arg_add(&a, "-accel");
	arg_add(&a, "%s", cfg->use_kvm ? "kvm" : "tcg");
	arg_add(&a, "-cpu");
	arg_add(&a, "%s", cfg->use_kvm ? "host" : "max");
	arg_add(&a, "-m");
	arg_add(&a, "%llu", (unsigned long long)mem_mb);
	arg_add(&a, "-smp");
	arg_add(&a, "%d", cfg->nr_cpus > 0 ? cfg->nr_cpus : 1);
	arg_add(&a, "-nodefaults");
	arg_add(&a, "-no-user-config");
	arg_add(&a, "-display");
	arg_add(&a, "none");
	arg_add(&a, "-no-reboot");
	arg_add(&a, "-chardev");
	/* The mux gives a terminal QEMU's Ctrl-A escapes, Ctrl-A x to
	 * quit among them; piped input goes to the guest untouched. */
	arg_add(&a, "stdio,id=con,signal=off%s",
		cfg->console_escape ? ",mux=on" : "");
	arg_add(&a, "-serial");
	arg_add(&a, "chardev:con");
	arg_add(&a, "-kernel");
	arg_add(&a, "%s", cfg->kernel);
	if (cfg->initrd) {
		arg_add(&a, "-initrd");
		arg_add(&a, "%s", cfg->initrd);
	}
	/* Under TCG the kernel calibrates the TSC against the emulated PIT,
	 * which fails on a busy host (both run on host timers) and then
	 * hangs in the delay-loop calibration.  Telling it the TSC rate
	 * skips that; timekeeping still follows the host clock. */
	arg_add(&a, "-append");
	arg_add(&a, "%s%s", cfg->cmdline ? cfg->cmdline : "console=ttyS0",
		cfg->use_kvm ? "" : " tsc_early_khz=2000000");
	for (int i = 0; i < cfg->nr_disks; i++) {
		int ro = cfg->disk_readonly && cfg->disk_readonly[i];
		arg_add(&a, "-drive");
		arg_add(&a, "id=disk%d,if=none,format=raw,cache=writeback,"
			"file.driver=nbd,file.server.type=fd,"
			"file.server.str=%d%s", i, disk_fds[i],
			ro ? ",readonly=on" : "");
		arg_add(&a, "-device");
		arg_add(&a, "virtio-blk-device,drive=disk%d", i);
	}
	if (cfg->tap && !net_tap__valid_name(cfg->tap)) {
		a.failed = 1;
	} else if (cfg->tap) {
		arg_add(&a, "-netdev");
		arg_add(&a, "tap,id=net0,ifname=%s,script=no,downscript=no",
			cfg->tap);
		arg_add(&a, "-device");
		arg_add(&a, "virtio-net-device,netdev=net0");
	} else if (cfg->nr_ports > 0 || cfg->network) {
		char fwd[2048] = "";
		size_t len = 0;
		for (int i = 0; i < cfg->nr_ports && len < sizeof(fwd) - 64;
		     i++) {
			const struct qemu_port_forward *p = &cfg->ports[i];
			len += (size_t)snprintf(fwd + len, sizeof(fwd) - len,
				",hostfwd=%s:127.0.0.1:%d-:%d",
				p->udp ? "udp" : "tcp", p->host_port,
				p->guest_port);
		}
		arg_add(&a, "-netdev");
		arg_add(&a, "user,id=net0%s", fwd);
		arg_add(&a, "-device");
		arg_add(&a, "virtio-net-device,netdev=net0");
	}
	arg_add(&a, "-device");
	arg_add(&a, "virtio-rng-device");
	if (a.failed) {
		qemu_engine__free_argv(a.v);
		return NULL;
	}
	return a.v;
}

struct served_disk {
	imgfmt_image *img;
	int owned;             /* opened here, so closed here */
	struct nbd_server *srv;
	pthread_t thread;
	int running;
	int qemu_fd;           /* QEMU's end of the socketpair, until fork */
};

static void *serve_thread(void *arg)
{
	struct served_disk *d = arg;

	nbd_server__run(d->srv);
	return NULL;
}

/* Stop the servers, flush and close the images; the first error wins. */
static int stop_disks(struct served_disk *disks, int n, char *msg,
		      size_t msglen)
{
	int rc = 0;

	for (int i = 0; i < n; i++) {
		struct served_disk *d = &disks[i];
		if (d->running) {
			nbd_server__stop(d->srv);
			pthread_join(d->thread, NULL);
		}
		if (d->srv && nbd_server__destroy(d->srv) < 0 && rc == 0) {
			snprintf(msg, msglen, "%s", nbd__error());
			rc = -EIO;
		}
		if (d->img && d->owned && imgfmt__close(d->img) < 0 &&
		    rc == 0) {
			snprintf(msg, msglen, "%s", imgfmt__error());
			rc = -EIO;
		}
	}
	return rc;
}

/* Whether the console's reader is gone: a pipe whose reader exited
 * (POLLERR), a hung-up terminal or a closed socket (POLLHUP).  Files and
 * /dev/null never report either. */
static bool console_gone(short revents)
{
	return revents & (POLLERR | POLLHUP);
}

/* Wait for QEMU to exit.  QEMU writes the console itself and carries on
 * when its reader goes away (`appliance run ... | head`), so we watch the
 * console for that and stop QEMU, as the builtin monitor does: a run
 * ends with its console, like any program in a pipeline, rather than
 * leaving the pipeline waiting on a guest nobody sees. */
static int wait_qemu(pid_t pid, int console_fd, int *status,
		     bool *console_closed)
{
	int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
	struct pollfd p[2] = {
		{ .fd = pfd, .events = POLLIN },
		{ .fd = console_fd, .events = 0 },
	};

	/* Without pidfds (kernels before 5.3) only the plain wait. */
	while (pfd >= 0) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[0].revents)
			break;
		if (console_gone(p[1].revents)) {
			*console_closed = true;
			p[1].fd = -1;
			kill(pid, SIGTERM);
		}
	}
	if (pfd >= 0)
		close(pfd);
	while (waitpid(pid, status, 0) < 0)
		if (errno != EINTR)
			return engine_err(errno, "waitpid: %s",
					  strerror(errno));
	return 0;
}

int qemu_engine__run(const struct qemu_engine_config *cfg,
		     struct qemu_engine_result *res)
{
	struct served_disk disks[QEMU_ENGINE_MAX_DISKS];
	int disk_fds[QEMU_ENGINE_MAX_DISKS];
	int rc = 0, status = 0;
	char **argv = NULL;
	pid_t pid;

	memset(res, 0, sizeof(*res));
	memset(disks, 0, sizeof(disks));
	for (int i = 0; i < QEMU_ENGINE_MAX_DISKS; i++)
		disks[i].qemu_fd = -1;
	res->qemu_status = -1;
	stop_requested = 0;
	if (cfg->nr_disks > QEMU_ENGINE_MAX_DISKS || cfg->nr_disks < 0)
		return engine_err(EINVAL, "at most %d disks",
				  QEMU_ENGINE_MAX_DISKS);

	/* Every disk is served over its own socketpair: QEMU inherits one
	 * end, our server has the other.  No socket file that another
	 * process could connect to, and none left behind. */
	for (int i = 0; i < cfg->nr_disks; i++) {
		struct served_disk *d = &disks[i];
		int ro = cfg->disk_readonly && cfg->disk_readonly[i];
		int named = cfg->disk_backing && cfg->disk_backing[i];
		struct imgfmt_open_opts oo = {
			.flags = (ro ? 0 : IMGFMT_OPEN_RDWR) |
				 (named ? 0 : IMGFMT_OPEN_SELF_CONTAINED),
			.format = cfg->disk_formats ? cfg->disk_formats[i]
						    : NULL };
		struct nbd_server_opts so = { .read_only = ro,
					      .no_listen = 1 };
		int sv[2];

		so.description = cfg->disks[i];
		if (cfg->disk_images) {
			d->img = cfg->disk_images[i];
		} else if (imgfmt__open(cfg->disks[i], &oo, &d->img) < 0) {
			rc = engine_err(EIO, "%s", imgfmt__error());
			goto out;
		} else {
			d->owned = 1;
		}
		if (nbd_server__create(d->img, &so, &d->srv) < 0) {
			rc = engine_err(EIO, "%s", nbd__error());
			goto out;
		}
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
			rc = engine_err(errno, "socketpair: %s",
					strerror(errno));
			goto out;
		}
		d->qemu_fd = sv[1];
		disk_fds[i] = sv[1];
		if (nbd_server__add_client(d->srv, sv[0]) < 0) {
			rc = engine_err(EIO, "%s", nbd__error());
			goto out;
		}
		if (pthread_create(&d->thread, NULL, serve_thread, d) != 0) {
			rc = engine_err(EAGAIN, "cannot start a server thread");
			goto out;
		}
		d->running = 1;
	}

	argv = qemu_engine__argv(cfg, disk_fds);
	if (!argv) {
		rc = engine_err(ENOMEM, "out of memory");
		goto out;
	}
	pid = fork();
	if (pid < 0) {
		rc = engine_err(errno, "fork: %s", strerror(errno));
		goto out;
	}
	if (pid == 0) {
		int in = cfg->console_in_fd >= 0
			? cfg->console_in_fd
			: open("/dev/null", O_RDONLY | O_CLOEXEC);
		/* QEMU gets its own process group so a terminal's Ctrl-C
		 * reaches us, and we stop QEMU cleanly. */
		setpgid(0, 0);
		/* And dies with us even if we are killed outright. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() == 1)
			_exit(127);
		if (in >= 0 && in != 0)
			dup2(in, 0);
		/* No console (-1): the guest's output goes nowhere, as
		 * with the builtin monitor, not to our stdout. */
		int out = cfg->console_out_fd >= 0
			? cfg->console_out_fd
			: open("/dev/null", O_WRONLY | O_CLOEXEC);
		if (out >= 0 && out != 1)
			dup2(out, 1);
		/* What QEMU is to keep across exec: its disks' sockets and
		 * the files it is given as /proc/self/fd/N. */
		for (int i = 0; i < cfg->nr_disks; i++)
			fcntl(disks[i].qemu_fd, F_SETFD, 0);
		for (int i = 0; i < cfg->nr_inherit_fds; i++)
			fcntl(cfg->inherit_fds[i], F_SETFD, 0);
		execvp(argv[0], argv);
		fprintf(stderr, "appliance: cannot run %s: %s\n", argv[0],
			strerror(errno));
		_exit(127);
	}
	for (int i = 0; i < cfg->nr_disks; i++) {
		close(disks[i].qemu_fd);
		disks[i].qemu_fd = -1;
	}
	running_qemu = pid;
	if (stop_requested)
		kill(pid, SIGTERM);
	rc = wait_qemu(pid, cfg->console_out_fd, &status,
		       &res->console_closed);
	running_qemu = 0;
	if (res->console_closed)
		stop_requested = 1;
	if (rc == 0) {
		res->stopped_by_signal = stop_requested &&
					 !res->console_closed;
		if (WIFEXITED(status)) {
			res->qemu_status = WEXITSTATUS(status);
			if (res->qemu_status == 127)
				rc = engine_err(ENOENT, "%s could not be "
						"started (is qemu-system-x86 "
						"installed?)", argv[0]);
			else if (res->qemu_status != 0 && !stop_requested)
				rc = engine_err(EIO, "QEMU exited with status "
						"%d", res->qemu_status);
		} else if (WIFSIGNALED(status) && !stop_requested) {
			rc = engine_err(EIO, "QEMU was killed by signal %d",
					WTERMSIG(status));
		}
	}
out:
	{
		char msg[512] = "";
		int r = stop_disks(disks, cfg->nr_disks, msg, sizeof(msg));
		if (r < 0 && rc == 0)
			rc = engine_err(EIO, "%s", msg);
	}
	if (rc < 0)
		snprintf(res->message, sizeof(res->message), "%s",
			 engine_errbuf);
	for (int i = 0; i < cfg->nr_disks; i++)
		if (disks[i].qemu_fd >= 0)
			close(disks[i].qemu_fd);
	qemu_engine__free_argv(argv);
	return rc;
}
