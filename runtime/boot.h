/*
 * boot.h - what the two boot loaders (boot-linux.c: bzImage, 64-bit
 * entry; boot-pvh.c: ELF vmlinux, PVH entry) and the vCPU setup (cpu.c)
 * share.
 */
#ifndef RUNTIME_BOOT_H
#define RUNTIME_BOOT_H

#include <linux/kvm.h>

#include "runtime/vm.h"

/* vCPU 0's entry registers for vm->entry_mode, entry_rip, entry_rsi and
 * entry_rbx.  The fields of `sr` the boot protocol fixes (segments, TR,
 * GDT/IDT, control registers, EFER) are overwritten, the others left as
 * the caller read them from KVM (the APIC base among them); `r` is
 * filled whole.  Pure, so the unit tests check it without /dev/kvm. */
void cpu__boot_regs(const struct vm *vm, struct kvm_sregs *sr,
		    struct kvm_regs *r);

#endif /* RUNTIME_BOOT_H */
