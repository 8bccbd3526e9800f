/*
 * cpu.c - vCPUs: creation, CPUID, MSRs, the boot register state, and the
 * KVM_RUN loop that hands I/O exits to the buses.
 *
 * vCPU 0 starts in long mode at the kernel's 64-bit entry (boot.rst's
 * 64-bit protocol: identity-mapped page tables, a GDT with __BOOT_CS 0x10
 * and __BOOT_DS 0x18, %rsi = zero page), or for a PVH kernel in 32-bit
 * protected mode without paging at its PVH entry (%ebx = start_info,
 * boot-pvh.h).  The other vCPUs stay in KVM's
 * wait-for-SIPI state: with the in-kernel local APICs the guest wakes them
 * with INIT/SIPI exactly as on a real PC, so the guest's own SMP bring-up
 * code runs unchanged.
 */
#include <errno.h>
#include <linux/kvm.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "runtime/boot-linux.h"
#include "runtime/boot.h"
#include "runtime/seccomp.h"
#include "runtime/vm.h"

int cpu__kick_signal = SIGUSR1;

/* The vCPU this thread runs, for the kick handler. */
static __thread struct vcpu *this_vcpu;

static void kick_handler(int sig)
{
	(void)sig;
	/* Only an async-signal-safe store: KVM_RUN then returns EINTR, and
	 * if the signal came just before the ioctl it returns at once. */
	if (this_vcpu && this_vcpu->run)
		__atomic_store_n(&this_vcpu->run->immediate_exit, 1,
				 __ATOMIC_SEQ_CST);
}

/* ---- CPUID ----------------------------------------------------------- */

#define CPUID_HYPERVISOR (1u << 31)    /* leaf 1 ECX */
#define CPUID_VMX        (1u << 5)     /* leaf 1 ECX */
#define CPUID_CX16       (1u << 13)    /* leaf 1 ECX */
#define CPUID_HTT        (1u << 28)    /* leaf 1 EDX */

void cpu__filter_cpuid(struct kvm_cpuid2 *c, int cpu_id, int nr_cpus)
{
	uint32_t id = (uint32_t)cpu_id, n = (uint32_t)nr_cpus;
	/* Bits needed to number n CPUs: the x2APIC id shift of the package
	 * level in leaf 0xB (one thread per core, n cores per package). */
	uint32_t shift = 0;
	while ((1u << shift) < n)
		shift++;

	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];
		switch (e->function) {
		case 1:
			/* Initial APIC id and logical CPU count; tell the
			 * guest it is virtual (it then trusts kvmclock and
			 * skips work meant for bare metal) and hide VMX,
			 * which this monitor does not offer. */
			e->ebx = (e->ebx & 0x0000ffffu) | (id << 24) |
				 ((n > 255 ? 255 : n) << 16);
			e->ecx |= CPUID_HYPERVISOR;
			e->ecx &= ~CPUID_VMX;
			if (n > 1)
				e->edx |= CPUID_HTT;
			else
				e->edx &= ~CPUID_HTT;
			break;
		case 4:
			/* Deterministic cache parameters: cores per package
			 * - 1 in EAX[31:26], one thread per cache. */
			e->eax &= 0x3ff;
			if (e->eax & 0x1f)
				e->eax |= ((n - 1) & 0x3f) << 26;
			break;
		case 6:
			/* No thermal/power management to speak of. */
			e->eax = e->ebx = e->ecx = e->edx = 0;
			break;
		case 0xa:
			/* No virtual PMU is set up: report none. */
			e->eax = e->ebx = e->ecx = e->edx = 0;
			break;
		case 0xb:
		case 0x1f:
			/* x2APIC topology: level 0 = SMT (1 thread), level 1
			 * = core (n cores), then invalid. */
			e->edx = id;
			if (e->index == 0) {
				e->eax = 0;
				e->ebx = 1;
				e->ecx = (1u << 8) | 0;
			} else if (e->index == 1) {
				e->eax = shift;
				e->ebx = n;
				e->ecx = (2u << 8) | 1;
			} else {
				e->eax = e->ebx = 0;
				e->ecx = e->index & 0xff;
			}
			break;
		default:
			break;
		}
	}
}

/* Instructions KVM's x86 emulator lacks: CMPXCHG16B and everything that
 * needs XSAVE (XSAVE/XRSTOR themselves, and AVX/AVX-512, whose state
 * only XSAVE manages).  Without XSAVE the guest falls back to FXSAVE,
 * which the emulator handles. */
static const struct {
	uint32_t leaf, sub;
	int reg;              /* 1 ebx, 2 ecx, 3 edx, 0 eax */
	uint32_t bits;
} unemulated[] = {
	{ 1, 0, 2, CPUID_CX16 | (1u << 26) /* XSAVE */ | (1u << 27) /* OSXSAVE */ |
		   (1u << 28) /* AVX */ | (1u << 12) /* FMA */ | (1u << 29) /* F16C */ },
	{ 7, 0, 1, (1u << 5) /* AVX2 */ | 0xdc230000u /* AVX-512 F,DQ,IFMA,PF,ER,CD,BW,VL */ },
	{ 7, 0, 2, (1u << 1) | (1u << 6) | (1u << 9) | (1u << 10) | (1u << 11) |
		   (1u << 12) | (1u << 14) /* AVX-512 VBMI.., VAES, VPCLMULQDQ */ },
	{ 7, 0, 3, (1u << 2) | (1u << 3) | (1u << 8) | (1u << 22) | (1u << 23) |
		   (1u << 24) | (1u << 25) /* AVX-512 4VNNIW.., FP16, AMX */ },
	{ 7, 1, 0, (1u << 4) | (1u << 5) /* AVX-VNNI, AVX512_BF16 */ },
};

void cpu__hide_unemulated(struct kvm_cpuid2 *c)
{
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];
		if (e->function == 0xd) {
			/* No XSAVE: no XSAVE state components either. */
			e->eax = e->ebx = e->ecx = e->edx = 0;
			continue;
		}
		for (size_t j = 0; j < sizeof(unemulated) / sizeof(unemulated[0]);
		     j++) {
			if (e->function != unemulated[j].leaf ||
			    (e->function == 7 && e->index != unemulated[j].sub))
				continue;
			uint32_t *r = unemulated[j].reg == 0 ? &e->eax
				    : unemulated[j].reg == 1 ? &e->ebx
				    : unemulated[j].reg == 2 ? &e->ecx : &e->edx;
			*r &= ~unemulated[j].bits;
		}
	}
}

/* ---- boot tables and registers --------------------------------------- */

int cpu__setup_boot_tables(struct vm *vm)
{
	/* GDT: null, flat 32-bit code (PVH), __BOOT_CS (64-bit code),
	 * __BOOT_DS (flat data), a TSS descriptor KVM wants for a valid
	 * TR. */
	static const uint64_t gdt[] = {
		0,
		0x00cf9b000000ffffull,  /* 0x08 code: 32-bit (PVH entry) */
		0x00af9b000000ffffull,  /* code: L=1, P, DPL0, exec/read */
		0x00cf93000000ffffull,  /* data: G, D/B, P, read/write */
		0x008f8b000000ffffull,  /* busy 32-bit TSS */
	};
	uint64_t *g = guest_mem__ptr(&vm->mem, BOOT_GDT_ADDR, sizeof(gdt));
	uint64_t *pml4 = guest_mem__ptr(&vm->mem, BOOT_PML4_ADDR, 4096);
	uint64_t *pdpt = guest_mem__ptr(&vm->mem, BOOT_PDPT_ADDR, 4096);
	uint64_t *pd = guest_mem__ptr(&vm->mem, BOOT_PD_ADDR, 4 * 4096);

	if (!g || !pml4 || !pdpt || !pd)
		return vm__err(ENOSPC, "guest RAM too small for boot tables");
	memcpy(g, gdt, sizeof(gdt));
	memset(pml4, 0, 4096);
	memset(pdpt, 0, 4096);
	/* Identity map of 0-4 GiB with 2 MiB pages: the kernel, zero page
	 * and command line wherever they are, and the APIC/IOAPIC pages for
	 * tiny guests that never build their own tables. */
	pml4[0] = BOOT_PDPT_ADDR | 0x3;
	for (uint64_t i = 0; i < 4; i++) {
		pdpt[i] = (BOOT_PD_ADDR + i * 4096) | 0x3;
		for (uint64_t j = 0; j < 512; j++)
			pd[i * 512 + j] = ((i * 512 + j) << 21) | 0x83;
	}
	return 0;
}

static void seg(struct kvm_segment *s, uint16_t sel, uint8_t type, int l,
		int db)
{
	memset(s, 0, sizeof(*s));
	s->selector = sel;
	s->base = 0;
	s->limit = 0xffffffff;
	s->type = type;
	s->present = 1;
	s->dpl = 0;
	s->db = (uint8_t)db;
	s->s = 1;
	s->l = (uint8_t)l;
	s->g = 1;
}

/* What differs between the two entries; the rest (flat 4 GiB data
 * segments at __BOOT_DS, the boot GDT, a busy TSS at 0x20, no IDT,
 * interrupts off) is common.
 *
 * - boot.rst's 64-bit entry: long mode, paging on over the identity map
 *   of cpu__setup_boot_tables(), CS = __BOOT_CS (64-bit code), %rsi = the
 *   zero page, a stack below it.
 * - The PVH boot ABI: 32-bit protected mode, paging off, CS a flat 32-bit
 *   code segment, TR limit 0x67, %ebx = the hvm_start_info, everything
 *   else zero. */
#define PVH_CS 0x08
#define CR0_PE (1u << 0)
#define CR0_ET (1u << 4)
#define CR0_PG (1u << 31)
#define CR4_PAE (1u << 5)
#define EFER_LME (1u << 8)
#define EFER_LMA (1u << 10)

static const struct boot_entry {
	uint16_t cs;
	int cs_long;           /* L=1 D=0 (64-bit) or L=0 D=1 (32-bit) */
	uint32_t tr_limit;
	uint64_t cr0, cr3, cr4, efer;
} boot_entries[] = {
	[VM_ENTRY_LONG64] = { BOOT_CS, 1, 0xffff, CR0_PE | CR0_ET | CR0_PG,
			      BOOT_PML4_ADDR, CR4_PAE, EFER_LME | EFER_LMA },
	[VM_ENTRY_PVH32] = { PVH_CS, 0, 0x67, CR0_PE | CR0_ET, 0, 0, 0 },
};

void cpu__boot_regs(const struct vm *vm, struct kvm_sregs *sr,
		    struct kvm_regs *r)
{
	const struct boot_entry *e = &boot_entries[vm->entry_mode];

	seg(&sr->cs, e->cs, 0xb, e->cs_long, !e->cs_long);
	seg(&sr->ds, BOOT_DS, 0x3, 0, 1);
	sr->es = sr->fs = sr->gs = sr->ss = sr->ds;
	memset(&sr->tr, 0, sizeof(sr->tr));
	sr->tr.selector = 0x20;
	sr->tr.limit = e->tr_limit;
	sr->tr.type = 0xb;
	sr->tr.present = 1;
	sr->gdt.base = BOOT_GDT_ADDR;
	sr->gdt.limit = 5 * 8 - 1;
	sr->idt.base = 0;
	sr->idt.limit = 0;
	sr->cr0 = e->cr0;
	sr->cr3 = e->cr3;
	sr->cr4 = e->cr4;
	sr->efer = e->efer;
	memset(r, 0, sizeof(*r));
	r->rflags = 2;
	r->rip = vm->entry_rip;
	if (vm->entry_mode == VM_ENTRY_PVH32) {
		r->rbx = vm->entry_rbx;
	} else {
		r->rsi = vm->entry_rsi;
		r->rsp = r->rbp = BOOT_STACK_TOP;
	}
}

/* vCPU 0's entry state: what KVM has, with the fields the boot protocol
 * fixes overwritten (cpu__boot_regs). */
static int setup_boot_regs(struct vcpu *c)
{
	struct kvm_sregs sr;
	struct kvm_regs r;

	if (ioctl(c->fd, KVM_GET_SREGS, &sr) < 0)
		return vm__err(errno, "vCPU %d: KVM_GET_SREGS: %s", c->id,
			       strerror(errno));
	cpu__boot_regs(c->vm, &sr, &r);
	if (ioctl(c->fd, KVM_SET_SREGS, &sr) < 0)
		return vm__err(errno, "vCPU %d: KVM_SET_SREGS: %s", c->id,
			       strerror(errno));
	if (ioctl(c->fd, KVM_SET_REGS, &r) < 0)
		return vm__err(errno, "vCPU %d: KVM_SET_REGS: %s", c->id,
			       strerror(errno));
	return 0;
}

static int setup_fpu(struct vcpu *c)
{
	struct kvm_fpu f;

	memset(&f, 0, sizeof(f));
	f.fcw = 0x37f;       /* the FNINIT state */
	f.mxcsr = 0x1f80;    /* all SSE exceptions masked */
	if (ioctl(c->fd, KVM_SET_FPU, &f) < 0)
		return vm__err(errno, "vCPU %d: KVM_SET_FPU: %s", c->id,
			       strerror(errno));
	return 0;
}

#define MSR_IA32_SYSENTER_CS  0x174
#define MSR_IA32_SYSENTER_ESP 0x175
#define MSR_IA32_SYSENTER_EIP 0x176
#define MSR_IA32_MISC_ENABLE  0x1a0
#define MSR_STAR              0xc0000081
#define MSR_LSTAR             0xc0000082
#define MSR_CSTAR             0xc0000083
#define MSR_SYSCALL_MASK      0xc0000084
#define MSR_KERNEL_GS_BASE    0xc0000102
#define MSR_IA32_TSC          0x10

static int setup_msrs(struct vcpu *c)
{
	static const uint32_t zeroed[] = {
		MSR_IA32_SYSENTER_CS, MSR_IA32_SYSENTER_ESP,
		MSR_IA32_SYSENTER_EIP, MSR_STAR, MSR_LSTAR, MSR_CSTAR,
		MSR_SYSCALL_MASK, MSR_KERNEL_GS_BASE, MSR_IA32_TSC,
	};
	/* The header and its entries in one buffer: a union, since a struct
	 * with a flexible array may not be followed by more members. */
	union {
		struct kvm_msrs h;
		uint8_t room[sizeof(struct kvm_msrs) +
			     16 * sizeof(struct kvm_msr_entry)];
	} m;
	struct kvm_msr_entry *e = m.h.entries;
	uint32_t n = 0;

	memset(&m, 0, sizeof(m));
	for (size_t i = 0; i < sizeof(zeroed) / sizeof(zeroed[0]); i++)
		e[n++].index = zeroed[i];
	/* Fast string operations on, as firmware leaves them. */
	e[n].index = MSR_IA32_MISC_ENABLE;
	e[n++].data = 1;
	m.h.nmsrs = n;
	int set = ioctl(c->fd, KVM_SET_MSRS, &m);
	if (set < 0)
		return vm__err(errno, "vCPU %d: KVM_SET_MSRS: %s", c->id,
			       strerror(errno));
	if ((uint32_t)set != n)
		return vm__err(EINVAL, "vCPU %d: KVM refused MSR 0x%x", c->id,
			       e[set].index);
	return 0;
}

/* Local APIC: LINT0 as ExtINT (the 8259 reaches the CPU through it in
 * virtual-wire mode), LINT1 as NMI, as a PC BIOS leaves them. */
static int setup_lapic(struct vcpu *c)
{
	struct kvm_lapic_state la;

	if (ioctl(c->fd, KVM_GET_LAPIC, &la) < 0)
		return vm__err(errno, "vCPU %d: KVM_GET_LAPIC: %s", c->id,
			       strerror(errno));
	uint32_t *lint0 = (uint32_t *)(void *)&la.regs[0x350];
	uint32_t *lint1 = (uint32_t *)(void *)&la.regs[0x360];
	*lint0 = (*lint0 & ~0x700u) | (7u << 8);
	*lint1 = (*lint1 & ~0x700u) | (4u << 8);
	if (ioctl(c->fd, KVM_SET_LAPIC, &la) < 0)
		return vm__err(errno, "vCPU %d: KVM_SET_LAPIC: %s", c->id,
			       strerror(errno));
	return 0;
}

static int setup_cpuid(struct vcpu *c)
{
	const struct kvm_cpuid2 *sup = c->vm->supported_cpuid;
	size_t sz = sizeof(*sup) + sup->nent * sizeof(sup->entries[0]);
	struct kvm_cpuid2 *cp = malloc(sz);

	if (!cp)
		return vm__err(ENOMEM, "out of memory for CPUID");
	memcpy(cp, sup, sz);
	cpu__filter_cpuid(cp, c->id, c->vm->nr_cpus);
	if (c->vm->shadow_compat)
		cpu__hide_unemulated(cp);
	int rc = ioctl(c->fd, KVM_SET_CPUID2, cp);
	int e = errno;
	free(cp);
	if (rc < 0)
		return vm__err(e, "vCPU %d: KVM_SET_CPUID2: %s", c->id,
			       strerror(e));
	return 0;
}

int cpu__init_all(struct vm *vm)
{
	int rc;

	vm->cpus = calloc((size_t)vm->nr_cpus, sizeof(vm->cpus[0]));
	if (!vm->cpus)
		return vm__err(ENOMEM, "out of memory for vCPUs");
	for (int i = 0; i < vm->nr_cpus; i++) {
		vm->cpus[i].fd = -1;
		vm->cpus[i].host_cpu = -1;
	}
	if ((rc = cpu__setup_boot_tables(vm)) < 0)
		return rc;
	for (int i = 0; i < vm->nr_cpus; i++) {
		struct vcpu *c = &vm->cpus[i];
		c->vm = vm;
		c->id = i;
		c->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)i);
		if (c->fd < 0)
			return vm__err(errno, "KVM_CREATE_VCPU %d: %s", i,
				       strerror(errno));
		void *p = mmap(NULL, (size_t)vm->vcpu_mmap_size,
			       PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, 0);
		if (p == MAP_FAILED)
			return vm__err(errno, "vCPU %d: mmap kvm_run: %s", i,
				       strerror(errno));
		c->run = p;
		if ((rc = setup_cpuid(c)) < 0 || (rc = setup_msrs(c)) < 0 ||
		    (rc = setup_fpu(c)) < 0 || (rc = setup_lapic(c)) < 0)
			return rc;
		if (i == 0 && (rc = setup_boot_regs(c)) < 0)
			return rc;
	}
	return 0;
}

/* ---- the run loop ---------------------------------------------------- */

static void handle_io(struct vcpu *c)
{
	struct kvm_run *r = c->run;
	uint8_t *data = (uint8_t *)r + r->io.data_offset;
	bool wr = r->io.direction == KVM_EXIT_IO_OUT;

	/* String I/O (rep outsb, ...) arrives as `count` back-to-back
	 * accesses in one buffer. */
	for (uint32_t i = 0; i < r->io.count; i++) {
		bus__access(&c->vm->pio, r->io.port, data, r->io.size, wr);
		data += r->io.size;
	}
}

static void handle_mmio(struct vcpu *c)
{
	struct kvm_run *r = c->run;
	uint32_t len = r->mmio.len > 8 ? 8 : r->mmio.len;

	bus__access(&c->vm->mmio, r->mmio.phys_addr, r->mmio.data, len,
		    r->mmio.is_write);
}

static uint64_t vcpu_rip(struct vcpu *c)
{
	struct kvm_regs regs;

	if (ioctl(c->fd, KVM_GET_REGS, &regs) < 0)
		return 0;
	return regs.rip;
}

/* One exit; returns false when the loop should end. */
static bool handle_exit(struct vcpu *c)
{
	struct kvm_run *r = c->run;
	struct vm *vm = c->vm;

	switch (r->exit_reason) {
	case KVM_EXIT_IO:
		handle_io(c);
		return true;
	case KVM_EXIT_MMIO:
		handle_mmio(c);
		return true;
	case KVM_EXIT_IRQ_WINDOW_OPEN:
	case KVM_EXIT_INTR:
		return true;
	case KVM_EXIT_HLT:
		/* Only without an in-kernel LAPIC; ours always has one. */
		vm__stop(vm, VM_STOP_ERROR, "vCPU %d halted with no interrupt "
			 "controller to wake it (rip 0x%llx)", c->id,
			 (unsigned long long)vcpu_rip(c));
		return false;
	case KVM_EXIT_SHUTDOWN:
		vm__stop(vm, VM_STOP_ERROR, "vCPU %d: triple fault, the guest "
			 "crashed (rip 0x%llx)", c->id,
			 (unsigned long long)vcpu_rip(c));
		return false;
	case KVM_EXIT_SYSTEM_EVENT:
		if (r->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN ||
		    r->system_event.type == KVM_SYSTEM_EVENT_RESET) {
			vm__stop(vm, VM_STOP_POWEROFF, "guest %s",
				 r->system_event.type ==
				 KVM_SYSTEM_EVENT_RESET ? "reset" : "shutdown");
			return false;
		}
		vm__stop(vm, VM_STOP_ERROR, "vCPU %d: system event %u", c->id,
			 r->system_event.type);
		return false;
	case KVM_EXIT_FAIL_ENTRY:
		vm__stop(vm, VM_STOP_ERROR, "vCPU %d: KVM could not enter the "
			 "guest (hardware reason 0x%llx)", c->id,
			 (unsigned long long)
			 r->fail_entry.hardware_entry_failure_reason);
		return false;
	case KVM_EXIT_INTERNAL_ERROR: {
		/* Suberror 1 is "KVM could not emulate an instruction"; the
		 * data words (instruction bytes, exit info) help whoever
		 * debugs it. */
		char extra[160] = "";
		size_t used = 0;
		uint32_t nd = r->internal.ndata;
		if (nd > 4)
			nd = 4;
		for (uint32_t i = 0; i < nd && used < sizeof(extra); i++)
			used += (size_t)snprintf(extra + used,
						 sizeof(extra) - used,
						 " 0x%llx", (unsigned long long)
						 r->internal.data[i]);
		vm__stop(vm, VM_STOP_ERROR, "vCPU %d: KVM internal error, "
			 "suberror %u (rip 0x%llx)%s%s", c->id,
			 r->internal.suberror,
			 (unsigned long long)vcpu_rip(c), nd ? ", data" : "",
			 extra);
		return false;
	}
	default:
		vm__stop(vm, VM_STOP_ERROR, "vCPU %d: unexpected KVM exit %u",
			 c->id, r->exit_reason);
		return false;
	}
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *c = arg;
	struct vm *vm = c->vm;
	sigset_t set;

	this_vcpu = c;
	/* This thread takes the kick signal; SIGINT/SIGTERM stay blocked
	 * (the monitor's main thread reads them from a signalfd). */
	sigemptyset(&set);
	sigaddset(&set, cpu__kick_signal);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	if (c->host_cpu >= 0) {
		cpu_set_t cs;
		CPU_ZERO(&cs);
		CPU_SET(c->host_cpu, &cs);
		pthread_setaffinity_np(pthread_self(), sizeof(cs), &cs);
	}
	if (vm->seccomp && seccomp__install(SECCOMP_VCPU) < 0) {
		vm__stop(vm, VM_STOP_ERROR, "vCPU %d: %s", c->id, vm__error());
		return NULL;
	}
	for (;;) {
		if (vm__stopped(vm) != VM_RUNNING)
			break;
		uint64_t zero = 0;
		__atomic_compare_exchange_n(&vm->first_run_ns, &zero,
					    vm__now_ns(), false,
					    __ATOMIC_RELAXED, __ATOMIC_RELAXED);
		if (ioctl(c->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				/* A kick: clear it, then the loop top sees a
				 * stop that raced with us (vm__stop sets the
				 * reason before it sets immediate_exit). */
				__atomic_store_n(&c->run->immediate_exit, 0,
						 __ATOMIC_SEQ_CST);
				continue;
			}
			c->result = -errno;
			vm__stop(vm, VM_STOP_ERROR, "vCPU %d: KVM_RUN: %s",
				 c->id, strerror(errno));
			break;
		}
		if (!handle_exit(c))
			break;
	}
	return NULL;
}

int cpu__start_all(struct vm *vm)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = kick_handler;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0;     /* no SA_RESTART: KVM_RUN must return EINTR */
	if (sigaction(cpu__kick_signal, &sa, NULL) < 0)
		return vm__err(errno, "sigaction: %s", strerror(errno));
	for (int i = 0; i < vm->nr_cpus; i++) {
		struct vcpu *c = &vm->cpus[i];
		int e = pthread_create(&c->thread, NULL, vcpu_thread, c);
		if (e) {
			vm__stop(vm, VM_STOP_ERROR, "cannot start vCPU %d", i);
			return vm__err(e, "cannot start vCPU %d thread: %s", i,
				       strerror(e));
		}
		pthread_mutex_lock(&vm->stop_lock);
		c->started = true;
		pthread_mutex_unlock(&vm->stop_lock);
	}
	return 0;
}

void cpu__join_all(struct vm *vm)
{
	for (int i = 0; i < vm->nr_cpus && vm->cpus; i++) {
		struct vcpu *c = &vm->cpus[i];
		if (c->started) {
			pthread_join(c->thread, NULL);
			c->started = false;
		}
	}
}

void cpu__destroy_all(struct vm *vm)
{
	if (!vm->cpus)
		return;
	for (int i = 0; i < vm->nr_cpus; i++) {
		struct vcpu *c = &vm->cpus[i];
		if (c->run)
			munmap(c->run, (size_t)vm->vcpu_mmap_size);
		if (c->fd >= 0)
			close(c->fd);
	}
	free(vm->cpus);
	vm->cpus = NULL;
}
