/*
 * kvmspeed.c - time a counted loop as a KVM guest and on the host.
 *
 * The guest is eleven bytes of 64-bit code at 1 MiB, entered in long mode
 * through the same boot path as a kernel (cpu.c's page tables and GDT):
 *
 *     mov  $N, %ecx
 *  1: dec  %ecx
 *     jnz  1b
 *     out  %al, $0x99      ; exit to us
 *     jmp  .
 *
 * Two runs with different N cancel the fixed cost of entering the guest,
 * leaving the cost of one iteration; the host runs the same instructions.
 */
#include <errno.h>
#include <linux/kvm.h>
#include <string.h>
#include <sys/ioctl.h>

#include "runtime/boot-linux.h"
#include "runtime/kvmspeed.h"
#include "runtime/vm.h"

#define LOOP_ADDR 0x100000ull
#define EXIT_PORT 0x99

static const uint8_t loop_code[] = {
	0xb9, 0, 0, 0, 0,     /* mov $N, %ecx */
	0xff, 0xc9,           /* dec %ecx */
	0x75, 0xfc,           /* jnz -4 */
	0xe6, EXIT_PORT,      /* out %al, $0x99 */
	0xeb, 0xfe,           /* jmp . */
};

static double host_ns_per_iter(void)
{
	uint64_t n = 20000000, best = UINT64_MAX;

	for (int rep = 0; rep < 3; rep++) {
		uint64_t t0 = vm__now_ns();
		uint32_t c = (uint32_t)n;
		__asm__ volatile("1: dec %0\n\tjnz 1b" : "+c"(c) : : "cc");
		uint64_t dt = vm__now_ns() - t0;
		if (dt < best)
			best = dt;
	}
	return (double)best / (double)n;
}

/* Run the loop once with N iterations; nanoseconds from KVM_RUN to the
 * exit, or negative errno. */
static int64_t guest_run(struct vm *vm, uint32_t n)
{
	struct vcpu *c = &vm->cpus[0];
	struct kvm_regs r;
	uint8_t *code = guest_mem__ptr(&vm->mem, LOOP_ADDR, sizeof(loop_code));

	memcpy(code, loop_code, sizeof(loop_code));
	memcpy(code + 1, &n, 4);
	if (ioctl(c->fd, KVM_GET_REGS, &r) < 0)
		return vm__err(errno, "KVM_GET_REGS: %s", strerror(errno));
	r.rip = LOOP_ADDR;
	r.rflags = 2;
	if (ioctl(c->fd, KVM_SET_REGS, &r) < 0)
		return vm__err(errno, "KVM_SET_REGS: %s", strerror(errno));
	uint64_t t0 = vm__now_ns();
	for (;;) {
		if (ioctl(c->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR)
				continue;
			return vm__err(errno, "KVM_RUN: %s", strerror(errno));
		}
		if (c->run->exit_reason == KVM_EXIT_IO &&
		    c->run->io.port == EXIT_PORT)
			break;
		if (c->run->exit_reason != KVM_EXIT_IO &&
		    c->run->exit_reason != KVM_EXIT_MMIO &&
		    c->run->exit_reason != KVM_EXIT_INTR)
			return vm__err(EIO, "speed-test guest stopped with KVM "
				       "exit %u", c->run->exit_reason);
	}
	return (int64_t)(vm__now_ns() - t0);
}

/* Best (smallest) of three runs: noise only ever adds time. */
static int64_t guest_best(struct vm *vm, uint32_t n)
{
	int64_t best = INT64_MAX;

	for (int rep = 0; rep < 3; rep++) {
		int64_t t = guest_run(vm, n);
		if (t < 0)
			return t;
		if (t < best)
			best = t;
	}
	return best;
}

int kvmspeed__measure(const char *kvm_path, struct kvmspeed_result *out)
{
	struct vm vm;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = vm__create(&vm, kvm_path, 4ull << 20, 1)) < 0)
		return rc;
	vm.entry_rip = LOOP_ADDR;
	if ((rc = cpu__init_all(&vm)) < 0)
		goto done;
	/* 20,000 iterations take ~70 ms where KVM is emulated and a few
	 * microseconds on hardware; in the latter case the difference would
	 * drown in entry noise, so measure again with more. */
	uint32_t lo = 1000, hi = 21000;
	int64_t tlo = guest_best(&vm, lo), thi = guest_best(&vm, hi);
	if (tlo < 0 || thi < 0) {
		rc = (int)(tlo < 0 ? tlo : thi);
		goto done;
	}
	if (thi - tlo < 5000000) {
		lo = 1000000;
		hi = 21000000;
		tlo = guest_best(&vm, lo);
		thi = guest_best(&vm, hi);
		if (tlo < 0 || thi < 0) {
			rc = (int)(tlo < 0 ? tlo : thi);
			goto done;
		}
	}
	int64_t diff = thi - tlo;
	if (diff <= 0)
		diff = 1;
	out->guest_iters = hi - lo;
	out->guest_ns_per_iter = (double)diff / (double)(hi - lo);
	out->host_ns_per_iter = host_ns_per_iter();
	if (out->host_ns_per_iter <= 0)
		out->host_ns_per_iter = 0.001;
	out->ratio = out->guest_ns_per_iter / out->host_ns_per_iter;
	out->emulated = out->ratio > KVMSPEED_EMULATED_RATIO;
	rc = 0;
done:
	cpu__destroy_all(&vm);
	vm__destroy(&vm);
	return rc;
}

const char *kvmspeed__verdict(const struct kvmspeed_result *r)
{
	return r->emulated ? "emulated" : "hardware";
}
