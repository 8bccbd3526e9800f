/*
 * monitor.c - monitor__run(): build one microVM, run it, tear it down.
 *
 * Threads: one per vCPU (cpu.c) running KVM_RUN and the device models
 * synchronously on exits, and the caller's thread, which waits in poll()
 * on the stop eventfd, a signalfd for SIGINT/SIGTERM/SIGHUP and the
 * console, feeding keystrokes to the UART and watching for the console's
 * reader going away.  Every thread locks itself down with seccomp before
 * the guest runs.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <unistd.h>

#include "imgfmt.h"
#include "runtime/acpi.h"
#include "runtime/boot-linux.h"
#include "runtime/bytes.h"
#include "runtime/legacy.h"
#include "runtime/monitor.h"
#include "runtime/passt.h"
#include "runtime/virtio/net.h"
#include "runtime/mptable.h"
#include "runtime/pci.h"
#include "runtime/seccomp.h"
#include "runtime/serial.h"
#include "runtime/virtio/virtio-pci.h"
#include "runtime/virtio/virtio.h"
#include "runtime/vm.h"

#define DEFAULT_CMDLINE "console=ttyS0"
/* PCI INTx lines: IOAPIC pins 16-23 are not shared with any ISA device or
 * the 8259s, so a level-triggered PCI interrupt never meets an edge-
 * triggered ISA one on the same pin. */
#define PCI_FIRST_IRQ 16
#define PCI_LAST_IRQ  23

#define CTRL_A 0x01

int monitor__parse_cpu_list(const char *s, int *out, int max)
{
	int n = 0;
	const char *p = s;

	if (!s || !*s)
		return vm__err(EINVAL, "empty CPU list");
	while (*p) {
		char *end;
		long a = strtol(p, &end, 10), b;
		if (end == p || a < 0 || a >= CPU_SETSIZE)
			return vm__err(EINVAL, "CPU list '%s': bad number at "
				       "'%s'", s, p);
		b = a;
		p = end;
		if (*p == '-') {
			p++;
			b = strtol(p, &end, 10);
			if (end == p || b < a || b >= CPU_SETSIZE)
				return vm__err(EINVAL, "CPU list '%s': bad "
					       "range end at '%s'", s, p);
			p = end;
		}
		for (long c = a; c <= b; c++) {
			if (n == max)
				return vm__err(EINVAL, "CPU list '%s' names "
					       "more than %d CPUs", s, max);
			out[n++] = (int)c;
		}
		if (*p == ',')
			p++;
		else if (*p)
			return vm__err(EINVAL, "CPU list '%s': unexpected "
				       "'%c'", s, *p);
	}
	return n;
}

/* ---- device glue ----------------------------------------------------- */

static void serial_irq(void *opaque, int level)
{
	vm__irq_line(opaque, SERIAL_COM1_IRQ, level);
}

static void pci_irq(void *opaque, int line, int level)
{
	vm__irq_line(opaque, (uint32_t)line, level);
}

/* ---- the run --------------------------------------------------------- */

struct run_state {
	struct vm vm;
	struct serial *serial;
	struct pci_bus *pci;
	int nr_disks;
	imgfmt_image *img[MONITOR_MAX_DISKS];
	bool img_owned[MONITOR_MAX_DISKS];
	struct virtio_pci *rng_vp;
	struct virtio_pci *net_vp;
	struct passt passt;
	struct virtio_pci *vp[MONITOR_MAX_DISKS];
	int status_fd;                 /* /proc/self/status, opened early */
	int sig_fd;
	sigset_t old_mask;
	bool mask_changed;
	struct termios saved_tio;
	bool tio_saved;
	int tty_fd;                    /* the terminal put in raw mode */
	int in_fd;
	int out_fd;                    /* watched for its reader leaving */
	bool escape;                   /* Ctrl-A seen */
};

/* A "Field:  N kB" line of /proc/self/status, in bytes (0 if absent). */
static uint64_t status_field(int fd, const char *field)
{
	char buf[4096];
	ssize_t n = fd >= 0 ? pread(fd, buf, sizeof(buf) - 1, 0) : -1;

	if (n <= 0)
		return 0;
	buf[n] = '\0';
	const char *p = strstr(buf, field);
	if (!p)
		return 0;
	return strtoull(p + strlen(field), NULL, 10) * 1024;
}

static uint64_t guest_resident(const struct vm *vm)
{
	uint64_t total = 0;
	long pg = sysconf(_SC_PAGESIZE);
	unsigned char vec[4096];

	for (int i = 0; i < vm->mem.nr; i++) {
		const struct guest_mem_region *r = &vm->mem.r[i];
		for (uint64_t off = 0; off < r->size;
		     off += (uint64_t)pg * sizeof(vec)) {
			uint64_t len = r->size - off;
			if (len > (uint64_t)pg * sizeof(vec))
				len = (uint64_t)pg * sizeof(vec);
			if (mincore(r->host + off, len, vec) < 0)
				break;
			for (uint64_t j = 0; j < (len + (uint64_t)pg - 1) /
			     (uint64_t)pg; j++)
				total += (vec[j] & 1) ? (uint64_t)pg : 0;
		}
	}
	return total;
}

/* Bytes from the console: Ctrl-A x quits, Ctrl-A Ctrl-A sends one
 * Ctrl-A, anything else goes to the UART as typed. */
static void console_bytes(struct run_state *st, const uint8_t *buf, size_t n)
{
	uint8_t out[256];
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		uint8_t b = buf[i];
		if (st->escape) {
			st->escape = false;
			if (b == 'x' || b == 'X') {
				vm__stop(&st->vm, VM_STOP_SIGNAL,
					 "console escape (Ctrl-A x)");
				return;
			}
			if (b != CTRL_A && k < sizeof(out))
				out[k++] = CTRL_A;
		} else if (b == CTRL_A && st->tio_saved) {
			st->escape = true;
			continue;
		}
		if (k < sizeof(out))
			out[k++] = b;
	}
	/* The caller reads no more than the FIFO has room for; a byte over
	 * (the Ctrl-A expansion) is dropped like an overrun. */
	serial__input(st->serial, out, k);
}

static void main_loop(struct run_state *st)
{
	struct vm *vm = &st->vm;

	while (vm__stopped(vm) == VM_RUNNING) {
		struct pollfd p[4] = {
			{ .fd = vm->stop_efd, .events = POLLIN },
			{ .fd = st->sig_fd, .events = POLLIN },
			{ .fd = -1, .events = POLLIN },
			/* Only POLLERR/POLLHUP: a pipe whose reader
			 * exited, a hung-up terminal.  A console nobody
			 * reads any more ends the run, as it ends any
			 * program in a pipeline (`appliance run | head`);
			 * the UART itself just drops what it cannot
			 * write. */
			{ .fd = st->out_fd, .events = 0 },
		};
		size_t room = 0;
		if (st->in_fd >= 0) {
			room = serial__rx_room(st->serial);
			if (room)
				p[2].fd = st->in_fd;
		}
		/* With a full FIFO, look again shortly for the guest having
		 * drained it. */
		int rc = poll(p, 4, st->in_fd >= 0 && !room ? 10 : -1);
		if (rc < 0 && errno != EINTR)
			break;
		if (p[1].revents & POLLIN) {
			struct signalfd_siginfo si;
			if (read(st->sig_fd, &si, sizeof(si)) == sizeof(si))
				vm__stop(vm, VM_STOP_SIGNAL, "stopped by SIG%s",
					 sigabbrev_np((int)si.ssi_signo));
		}
		if (p[3].revents & (POLLERR | POLLHUP)) {
			vm__stop(vm, VM_STOP_SIGNAL, "the console was closed; "
				 "the VM was stopped");
			st->out_fd = -1;
		}
		if (p[2].revents & (POLLIN | POLLHUP | POLLERR)) {
			uint8_t buf[SERIAL_FIFO];
			ssize_t n = read(st->in_fd, buf,
					 room < sizeof(buf) ? room : sizeof(buf));
			if (n > 0)
				console_bytes(st, buf, (size_t)n);
			else if (n == 0 || (errno != EINTR && errno != EAGAIN))
				st->in_fd = -1;   /* EOF: no more input */
		}
	}
}

static int setup_devices(struct run_state *st, const struct monitor_config *c)
{
	struct vm *vm = &st->vm;
	int rc;

	st->serial = serial__new(c->console_out_fd, serial_irq, vm);
	if (!st->serial)
		return vm__err(ENOMEM, "out of memory for the UART");
	serial__bind_vm(st->serial, vm);
	if ((rc = vm__add_cleanup(vm, (void (*)(void *))serial__free,
				  st->serial)) < 0) {
		serial__free(st->serial);
		return rc;
	}
	if ((rc = serial__attach(st->serial, &vm->pio, SERIAL_COM1_BASE)) < 0 ||
	    (rc = i8042__attach(vm)) < 0 || (rc = rtc__attach(vm)) < 0 ||
	    (rc = acpi__attach_pm(vm)) < 0)
		return rc;

	struct pci_bus_config pc = {
		.mmio_base = PCI_MMIO_BASE, .mmio_size = PCI_MMIO_SIZE,
		.set_irq = pci_irq, .irq_opaque = vm,
	};
	if ((rc = pci__bus_new(&pc, &st->pci)) < 0)
		return vm__err(-rc, "PCI bus: %s", pci__error());
	if ((rc = bus__register(&vm->pio, PCI_CONF1_ADDR_PORT,
				PCI_CONF1_PORT_COUNT, pci__conf1_access,
				st->pci, "pci-conf1")) < 0 ||
	    (rc = bus__register(&vm->mmio, PCI_MMIO_BASE, PCI_MMIO_SIZE,
				pci__window_access, st->pci,
				"pci-mmio")) < 0)
		return rc;
	/* One slot (and IOAPIC pin) per disk, then virtio-rng, then
	 * virtio-net if there is a network. */
	bool net = c->network || c->nr_ports > 0 || c->tap;
	if (c->nr_disks > MONITOR_MAX_DISKS ||
	    c->nr_disks + 1 + net > PCI_LAST_IRQ - PCI_FIRST_IRQ + 1)
		return vm__err(EINVAL, "%d disks; at most %d", c->nr_disks,
			       MONITOR_MAX_DISKS);
	for (int i = 0; i < c->nr_disks; i++) {
		bool ro = c->disk_readonly && c->disk_readonly[i];
		bool named = c->disk_backing && c->disk_backing[i];
		struct imgfmt_open_opts oo = {
			.flags = (ro ? 0 : IMGFMT_OPEN_RDWR) |
				 (named ? 0 : IMGFMT_OPEN_SELF_CONTAINED),
			.format = c->disk_formats ? c->disk_formats[i] : NULL,
		};
		struct virtio_blk_opts bo = { .read_only = ro };
		struct virtio_dev *vdev;
		if (c->disk_images)
			st->img[i] = c->disk_images[i];
		else if ((rc = imgfmt__open(c->disks[i], &oo,
					    &st->img[i])) < 0)
			return vm__err(-rc, "disk %s: %s", c->disks[i],
				       imgfmt__error());
		st->img_owned[i] = !c->disk_images;
		st->nr_disks = i + 1;
		if ((rc = virtio_blk__new(st->img[i], &bo, &vm->mem,
					  &vdev)) < 0)
			return vm__err(-rc, "disk %s: %s", c->disks[i],
				       virtio__error());
		if ((rc = virtio_pci__new(st->pci, vdev, PCI_FIRST_IRQ + i,
					  &st->vp[i])) < 0) {
			virtio__dev_free(vdev);
			return vm__err(-rc, "disk %s: %s", c->disks[i],
				       virtio__error());
		}
	}
	/* Entropy from the host, so a fresh guest does not stall early in
	 * boot waiting for its pool (systemd, sshd key generation). */
	struct virtio_dev *rng;
	if ((rc = virtio_rng__new(&vm->mem, &rng)) < 0)
		return vm__err(-rc, "virtio-rng: %s", virtio__error());
	if ((rc = virtio_pci__new(st->pci, rng, PCI_FIRST_IRQ + c->nr_disks,
				  &st->rng_vp)) < 0) {
		virtio__dev_free(rng);
		return vm__err(-rc, "virtio-rng: %s", virtio__error());
	}
	if (net) {
		struct net_backend *be;
		struct virtio_net_opts no = { .mtu = 0 };
		struct virtio_dev *nd;
		if (c->tap && c->nr_ports > 0)
			return vm__err(EINVAL, "port forwards need the "
				       "user-mode network, not tap %s",
				       c->tap);
		if (c->tap) {
			if ((rc = net_tap__open(c->tap, &be)) < 0)
				return vm__err(-rc, "virtio-net: %s",
					       virtio__error());
		} else {
			if ((rc = passt__start(c->ports, c->nr_ports,
					       &st->passt)) < 0)
				return rc;
			/* The stream backend owns our end of the socket
			 * now. */
			rc = net_stream__new(st->passt.fd, &be);
			st->passt.fd = -1;
			if (rc < 0)
				return vm__err(-rc, "virtio-net: %s",
					       virtio__error());
		}
		if ((rc = virtio_net__new(be, &no, &vm->mem, &nd)) < 0)
			return vm__err(-rc, "virtio-net: %s", virtio__error());
		if ((rc = virtio_pci__new(st->pci, nd,
					  PCI_FIRST_IRQ + c->nr_disks + 1,
					  &st->net_vp)) < 0) {
			virtio__dev_free(nd);
			return vm__err(-rc, "virtio-net: %s", virtio__error());
		}
	}
	return 0;
}

/* The bus first (it only points at the devices), then the transports with their models, then the images,
 * whose close flushes.  Returns the first close error. */
static int free_devices(struct run_state *st)
{
	int rc = 0;

	if (st->pci)
		pci__bus_free(st->pci);
	st->pci = NULL;
	if (st->rng_vp)
		virtio_pci__free(st->rng_vp);
	st->rng_vp = NULL;
	if (st->net_vp)
		virtio_pci__free(st->net_vp);
	st->net_vp = NULL;
	passt__stop(&st->passt);
	for (int i = 0; i < st->nr_disks; i++) {
		if (st->vp[i])
			virtio_pci__free(st->vp[i]);
		st->vp[i] = NULL;
		if (st->img[i] && !st->img_owned[i]) {
			/* The caller's image: flush what the guest wrote. */
			int r = imgfmt__flush(st->img[i]);
			if (r < 0 && rc == 0)
				rc = vm__err(-r, "flushing disk: %s",
					     imgfmt__error());
		} else if (st->img[i]) {
			int r = imgfmt__close(st->img[i]);
			if (r < 0 && rc == 0)
				rc = vm__err(-r, "closing disk: %s",
					     imgfmt__error());
		}
		st->img[i] = NULL;
	}
	return rc;
}

/* The MP table and the ACPI tables describe the same machine: every
 * vCPU, the IOAPIC, and each populated PCI slot's INTA# pin (read back
 * from the devices' Interrupt Line registers). */
static int write_firmware_tables(struct run_state *st)
{
	struct mptable_config mc = { .nr_cpus = st->vm.nr_cpus };
	const uint64_t mp_size = 0xA0000 - BOOT_EBDA_START;
	uint8_t *mp = guest_mem__ptr(&st->vm.mem, BOOT_EBDA_START, mp_size);
	uint8_t *acpi = guest_mem__ptr(&st->vm.mem, ACPI_TABLES_ADDR,
				       ACPI_TABLES_SIZE);
	uint8_t *rsdp_at = st->vm.rsdp_slot ?
		guest_mem__ptr(&st->vm.mem, st->vm.rsdp_slot, 8) : NULL;

	if (!mp || !acpi || (st->vm.rsdp_slot && !rsdp_at))
		return vm__err(ENOSPC, "guest RAM too small for the firmware "
			       "tables (need 1 MiB)");
	for (int slot = 1; slot < PCI_MAX_SLOTS && mc.nr_pci < MPTABLE_MAX_PCI;
	     slot++) {
		uint32_t addr = 0x80000000u | ((uint32_t)slot << 11);
		if (pci__config_read(st->pci, addr, 2) == 0xffff)
			continue;
		uint32_t line = pci__config_read(st->pci,
						 addr | PCI_INTERRUPT_LINE, 1);
		mc.pci[mc.nr_pci].slot = (uint8_t)slot;
		mc.pci[mc.nr_pci].line = (uint8_t)line;
		mc.nr_pci++;
	}
	int rc = mptable__build(&mc, mp, mp_size, BOOT_EBDA_START);
	if (rc < 0)
		return rc;
	int64_t rsdp = acpi__build(&mc, acpi, ACPI_TABLES_SIZE,
				   ACPI_TABLES_ADDR);
	if (rsdp < 0)
		return (int)rsdp;
	/* boot_params.acpi_rsdp_addr or hvm_start_info.rsdp_paddr: the
	 * kernel need not scan for it. */
	if (rsdp_at)
		le64_put(rsdp_at, (uint64_t)rsdp);
	return 0;
}

static int setup_console(struct run_state *st, const struct monitor_config *c)
{
	st->in_fd = c->console_in_fd;
	st->out_fd = c->console_out_fd;
	if (st->in_fd >= 0 && c->console_raw) {
		struct termios t;
		if (tcgetattr(st->in_fd, &st->saved_tio) < 0)
			return vm__err(errno, "console: tcgetattr: %s",
				       strerror(errno));
		st->tio_saved = true;
		st->tty_fd = st->in_fd;
		t = st->saved_tio;
		cfmakeraw(&t);
		/* Keep output processing so host-side messages stay tidy;
		 * the guest sends its own CR LF. */
		t.c_oflag |= OPOST;
		if (tcsetattr(st->in_fd, TCSANOW, &t) < 0)
			return vm__err(errno, "console: tcsetattr: %s",
				       strerror(errno));
	}
	return 0;
}
/* The signals that stop the VM cleanly: ^C, kill, and the terminal
 * going away (a closed ssh session). */
static void stop_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGHUP);
}

static int setup_signals(struct run_state *st)
{
	sigset_t set;

	/* Block before the vCPU threads exist so they inherit the mask and
	 * the signals queue for the signalfd. */
	stop_signals(&set);
	if (pthread_sigmask(SIG_BLOCK, &set, &st->old_mask) != 0)
		return vm__err(EINVAL, "cannot block SIGINT/SIGTERM/SIGHUP");
	st->mask_changed = true;
	st->sig_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (st->sig_fd < 0)
		return vm__err(errno, "signalfd: %s", strerror(errno));
	return 0;
}

static int teardown(struct run_state *st)
{
	if (st->tio_saved)
		tcsetattr(st->tty_fd, TCSANOW, &st->saved_tio);
	cpu__destroy_all(&st->vm);
	int rc = free_devices(st);
	vm__destroy(&st->vm);
	if (st->sig_fd >= 0)
		close(st->sig_fd);
	if (st->status_fd >= 0)
		close(st->status_fd);
	if (st->mask_changed) {
		/* Drop signals that arrived during the run before
		 * unblocking, so they do not kill us after a clean stop. */
		struct timespec zero = { 0, 0 };
		sigset_t set;
		stop_signals(&set);
		while (sigtimedwait(&set, NULL, &zero) > 0)
			;
		pthread_sigmask(SIG_SETMASK, &st->old_mask, NULL);
	}
	return rc;
}

int monitor__run(const struct monitor_config *c, struct monitor_result *res)
{
	uint64_t t0 = vm__now_ns();
	struct run_state *st = calloc(1, sizeof(*st));
	int rc;

	memset(res, 0, sizeof(*res));
	if (!st)
		return vm__err(ENOMEM, "out of memory");
	st->status_fd = st->sig_fd = st->in_fd = -1;
	st->vm.kvm_fd = st->vm.vm_fd = st->vm.stop_efd = -1;
	st->passt.pid = st->passt.fd = -1;
	if (!c->kernel) {
		rc = vm__err(EINVAL, "no kernel given");
		goto out_nostate;
	}
	if ((rc = vm__create(&st->vm, c->kvm_path, c->mem_size,
			     c->nr_cpus)) < 0)
		goto out_nostate;
	if ((rc = setup_devices(st, c)) < 0)
		goto out;
	struct boot_linux_args ba = {
		.kernel_path = c->kernel, .initrd_path = c->initrd,
		.cmdline = c->cmdline ? c->cmdline : DEFAULT_CMDLINE,
	};
	/* Where KVM shadow-pages, the guest's XSAVE/XRSTOR on pages KVM
	 * write-protects reach KVM's emulator, which cannot run them; some
	 * such hosts (kvm_pvm) also pass the host's XSAVE bit through
	 * whatever CPUID we set.  Linux's "noxsave" keeps it on FXSAVE. */
	char cmdline[4096];
	if (st->vm.shadow_compat && !strstr(ba.cmdline, "noxsave")) {
		if ((size_t)snprintf(cmdline, sizeof(cmdline), "%s noxsave",
				     ba.cmdline) < sizeof(cmdline))
			ba.cmdline = cmdline;
	}
	if ((rc = boot_linux__load(&st->vm, &ba)) < 0 ||
	    (rc = write_firmware_tables(st)) < 0 ||
	    (rc = cpu__init_all(&st->vm)) < 0)
		goto out;
	for (int i = 0; i < st->vm.nr_cpus && c->nr_affinity > 0; i++)
		st->vm.cpus[i].host_cpu = c->cpu_affinity[i % c->nr_affinity];
	st->status_fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	if ((rc = setup_signals(st)) < 0 || (rc = setup_console(st, c)) < 0)
		goto out;
	res->seccomp_active = !c->no_seccomp && seccomp__supported();
	st->vm.seccomp = res->seccomp_active;
	if ((rc = cpu__start_all(&st->vm)) < 0)
		goto out_join;
	if (res->seccomp_active && (rc = seccomp__install(SECCOMP_MAIN)) < 0) {
		vm__stop(&st->vm, VM_STOP_ERROR, "%s", vm__error());
		goto out_join;
	}
	main_loop(st);
out_join:
	vm__stop(&st->vm, VM_STOP_ERROR, "monitor stopped");
	cpu__join_all(&st->vm);
	res->reason = st->vm.stop_reason;
	snprintf(res->message, sizeof(res->message), "%s", st->vm.stop_msg);
	if (st->vm.first_run_ns) {
		res->setup_ns = st->vm.first_run_ns - t0;
		res->run_ns = vm__now_ns() - st->vm.first_run_ns;
	}
	res->rss_bytes = status_field(st->status_fd, "VmRSS:");
	res->rss_anon_bytes = status_field(st->status_fd, "RssAnon:");
	res->guest_resident = guest_resident(&st->vm);
	res->console_bytes = st->serial ? serial__tx_bytes(st->serial) : 0;
	if (rc == 0 && res->reason == VM_STOP_ERROR)
		rc = vm__err(EIO, "%s", res->message);
out:
	if (rc < 0 && !res->message[0])
		snprintf(res->message, sizeof(res->message), "%s", vm__error());
	int trc = teardown(st);
	if (rc == 0 && trc < 0) {
		/* The guest is gone but its last writes may not be durable. */
		rc = trc;
		res->reason = VM_STOP_ERROR;
		snprintf(res->message, sizeof(res->message), "%s", vm__error());
	}
	free(st);
	return rc;
out_nostate:
	snprintf(res->message, sizeof(res->message), "%s", vm__error());
	free(st);
	return rc;
}
