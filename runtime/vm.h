/*
 * vm.h - the builtin KVM microVM monitor's shared types.
 *
 * One `struct vm` is one virtual machine: the /dev/kvm and VM file
 * descriptors, guest RAM (struct guest_mem, shared with the device models
 * through guestmem.h), the vCPUs and two I/O buses (port I/O and MMIO) on
 * which devices register address ranges.  The layout follows kvmtool's:
 *
 *   kvm.c          /dev/kvm, the VM, memory slots, irqchip, PIT, IRQ lines
 *   bus.c          port-I/O and MMIO dispatch
 *   cpu.c          vCPU threads, CPUID, MSRs, registers, the KVM_RUN loop
 *   boot-linux.c   the x86 Linux boot protocol (bzImage, zero page, e820)
 *   boot-pvh.c     ELF vmlinux through the PVH boot ABI (hvm_start_info)
 *   mptable.c      the MP table (CPUs, IOAPIC, interrupt routing)
 *   serial.c       16550 UART         i8042.c  reset + keyboard stubs
 *   rtc.c          CMOS clock         kvmspeed.c  "is KVM emulated here?"
 *   monitor.c      monitor__run(): puts it all together
 *
 * Errors: functions return 0 (or a count) on success and a negative errno
 * on failure, and record a message naming what failed; vm__error() returns
 * the calling thread's last message (thread-local, like dlerror()).  The
 * library never prints and never exits.
 */
#ifndef RUNTIME_VM_H
#define RUNTIME_VM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/guestmem.h"

/* ---- errors ---------------------------------------------------------- */

const char *vm__error(void);
/* Record a message and return -err (err is a positive errno value). */
int vm__err(int err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* ---- guest physical layout ------------------------------------------- */

/* RAM never overlaps the 32-bit hole where MMIO devices, the IOAPIC and
 * the local APIC live: RAM past 3 GiB continues at 4 GiB. */
#define VM_MMIO_HOLE_START  0xC0000000ull   /* 3 GiB */
#define VM_MMIO_HOLE_END    0x100000000ull  /* 4 GiB */
#define VM_PCI_MMIO_START   0xD0000000ull   /* free for PCI BARs */
#define VM_PCI_MMIO_END     0xFEC00000ull
#define VM_IOAPIC_ADDR      0xFEC00000ull
#define VM_LAPIC_ADDR       0xFEE00000ull
/* KVM needs three pages for the real-mode TSS and one for the EPT
 * identity map on Intel; both sit in the hole, below the IOAPIC's page
 * and clear of the PCI window's end. */
#define VM_IDENTITY_MAP_ADDR 0xFFFBC000ull
#define VM_TSS_ADDR          0xFFFBD000ull

#define VM_MIN_RAM  (2ull << 20)
#define VM_MAX_RAM  (1ull << 40)
#define VM_MAX_CPUS 64

/* Split `ram` bytes into at most two regions (below the hole, above
 * 4 GiB).  Returns the number of regions. */
int vm__ram_layout(uint64_t ram, struct guest_mem_region out[2]);

/* ---- buses ----------------------------------------------------------- */

/* A device's handler: `off` is relative to the start of the range it
 * registered, `data` holds `len` (1, 2, 4 or 8) little-endian bytes:
 * filled in by the handler on reads, supplied by the guest on writes.
 * Handlers run on vCPU threads, possibly several at once: a device with
 * state locks it. */
typedef void (*bus_io_fn)(void *opaque, uint64_t off, uint8_t *data,
			  uint32_t len, bool is_write);

struct bus_range {
	uint64_t base, len;
	bus_io_fn fn;
	void *opaque;
	const char *name;
};

#define BUS_MAX_RANGES 64

struct bus {
	pthread_rwlock_t lock;   /* ranges may move while vCPUs run (BARs) */
	int nr;
	struct bus_range r[BUS_MAX_RANGES];  /* sorted by base, disjoint */
	const char *name;                    /* "pio" / "mmio" */
	uint64_t unclaimed;                  /* accesses nobody claimed */
};

int bus__init(struct bus *b, const char *name);
void bus__destroy(struct bus *b);
/* -EBUSY if the range overlaps one already registered. */
int bus__register(struct bus *b, uint64_t base, uint64_t len, bus_io_fn fn,
		  void *opaque, const char *name);
/* Remove the range that starts at `base` (-ENOENT if none). */
int bus__unregister(struct bus *b, uint64_t base);
/* Dispatch one access.  Returns true if a device claimed it; unclaimed
 * reads return all ones and unclaimed writes are dropped, like a PC bus
 * with nothing there. */
bool bus__access(struct bus *b, uint64_t addr, uint8_t *data, uint32_t len,
		 bool is_write);

/* ---- vCPUs ----------------------------------------------------------- */

struct vm;

struct vcpu {
	struct vm *vm;
	int id;
	int fd;
	struct kvm_run *run;     /* the shared kvm_run page */
	pthread_t thread;
	bool started;
	int host_cpu;            /* pin to this host CPU, -1: anywhere */
	int result;              /* 0, or negative errno (see vm->stop_msg) */
};

/* Why the VM stopped (vm->stop_reason). */
enum vm_stop {
	VM_RUNNING = 0,
	VM_STOP_POWEROFF,   /* guest shut down or rebooted: exit status 0 */
	VM_STOP_SIGNAL,     /* SIGINT/SIGTERM or the console escape */
	VM_STOP_ERROR,      /* triple fault, KVM error: message in stop_msg */
};

struct vm {
	int kvm_fd, vm_fd;
	int vcpu_mmap_size;
	uint64_t ram_size;
	struct guest_mem mem;
	struct bus pio, mmio;

	int nr_cpus;
	struct vcpu *cpus;
	struct kvm_cpuid2 *supported_cpuid;  /* KVM_GET_SUPPORTED_CPUID */

	/* vCPU threads install the seccomp filter before their first run. */
	bool seccomp;
	/* Hide what KVM's instruction emulator cannot run (CMPXCHG16B,
	 * XSAVE and the AVX family, see cpu__hide_unemulated()): the host
	 * KVM shadows the guest's page tables and emulates guest accesses
	 * to pages it write-protects, so a guest using them (Linux's SLUB,
	 * its FPU init) dies with an emulation failure.  vm__create() sets
	 * it from vm__host_shadow_paging(). */
	bool shadow_compat;

	/* Entry state for vCPU 0 (the boot protocol fills it): long mode
	 * with %rsi = the zero page (bzImage), or 32-bit protected mode
	 * with paging off and %ebx = hvm_start_info (PVH, boot-pvh.h). */
	enum { VM_ENTRY_LONG64 = 0, VM_ENTRY_PVH32 } entry_mode;
	uint64_t entry_rip, entry_rsi, entry_rbx;
	/* Guest address of the 8-byte field that receives the ACPI RSDP's
	 * address (boot_params.acpi_rsdp_addr or hvm_start_info.rsdp_paddr);
	 * 0: nowhere. */
	uint64_t rsdp_slot;

	/* Stopping: first writer wins; vm__stop() also kicks every vCPU out
	 * of KVM_RUN and writes to stop_efd so the main thread wakes. */
	pthread_mutex_t stop_lock;
	enum vm_stop stop_reason;
	char stop_msg[512];
	int stop_efd;

	/* Set by the first vCPU to enter KVM_RUN (monitor statistics). */
	uint64_t first_run_ns;

	/* Device state freed by vm__destroy(), last added first. */
	int nr_cleanups;
	struct { void (*fn)(void *); void *p; } cleanups[32];
};

/* ---- kvm.c ----------------------------------------------------------- */

/* Open /dev/kvm (path NULL: the default), check the API version and the
 * capabilities the monitor needs, create the VM with its irqchip, PIT,
 * TSS and `ram` bytes of RAM.  On failure everything is released. */
int vm__create(struct vm *vm, const char *kvm_path, uint64_t ram,
	       int nr_cpus);
void vm__destroy(struct vm *vm);
/* Have vm__destroy() call fn(p) (devices register their state here). */
int vm__add_cleanup(struct vm *vm, void (*fn)(void *), void *p);
/* Whether the host's KVM runs guests on shadow page tables (no EPT/NPT):
 * true unless kvm_intel reports ept=Y or kvm_amd reports npt=1. */
bool vm__host_shadow_paging(void);
/* Drive a GSI of the in-kernel PIC/IOAPIC. */
int vm__irq_line(struct vm *vm, uint32_t gsi, int level);
/* Stop the VM (first reason wins) and kick every vCPU out of KVM_RUN. */
void vm__stop(struct vm *vm, enum vm_stop why, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
enum vm_stop vm__stopped(struct vm *vm);
uint64_t vm__now_ns(void);

/* ---- cpu.c ----------------------------------------------------------- */

/* Create vCPU fds and kvm_run mappings, set CPUID and MSRs on all, the
 * 64-bit entry registers on vCPU 0 (vm->entry_rip / entry_rsi) and the
 * page tables / GDT it uses. */
int cpu__init_all(struct vm *vm);
/* Start one thread per vCPU running the KVM_RUN loop. */
int cpu__start_all(struct vm *vm);
/* Join the threads (after vm__stop). */
void cpu__join_all(struct vm *vm);
void cpu__destroy_all(struct vm *vm);

/* Rewrite KVM_GET_SUPPORTED_CPUID's answer into what vCPU `cpu_id` of
 * `nr_cpus` sees: hypervisor bit, APIC ids and SMP topology, and nothing
 * the monitor does not emulate.  Pure: exposed for the unit tests. */
struct kvm_cpuid2;
void cpu__filter_cpuid(struct kvm_cpuid2 *c, int cpu_id, int nr_cpus);
/* Clear CMPXCHG16B, XSAVE and AVX* and leaf 0xD (vm->shadow_compat). */
void cpu__hide_unemulated(struct kvm_cpuid2 *c);

/* Page tables (identity map of the low 4 GiB with 2 MiB pages) and the
 * boot GDT in guest memory; the addresses are in boot-linux.h. */
int cpu__setup_boot_tables(struct vm *vm);

#endif /* RUNTIME_VM_H */
