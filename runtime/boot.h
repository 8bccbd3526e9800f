/*
 * boot.h - what the two boot loaders (boot-linux.c: bzImage, 64-bit
 * entry; boot-pvh.c: ELF vmlinux, PVH entry) and the vCPU setup (cpu.c)
 * share.
 */
#ifndef RUNTIME_BOOT_H
#define RUNTIME_BOOT_H

#include <linux/kvm.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/vm.h"

/* vCPU 0's entry registers for vm->entry_mode, entry_rip, entry_rsi and
 * entry_rbx.  The fields of `sr` the boot protocol fixes (segments, TR,
 * GDT/IDT, control registers, EFER) are overwritten, the others left as
 * the caller read them from KVM (the APIC base among them); `r` is
 * filled whole.  Pure, so the unit tests check it without /dev/kvm. */
void cpu__boot_regs(const struct vm *vm, struct kvm_sregs *sr,
		    struct kvm_regs *r);

/* Where RAM below the 32-bit MMIO hole ends: the kernel, its boot data
 * and the initramfs all go below it. */
static inline uint64_t boot__low_ram_end(const struct vm *vm)
{
	return vm->mem.nr > 0 ? vm->mem.r[0].size : 0;
}

/* Place the initramfs where boot_linux__place_initrd() says (the top of
 * low RAM, ending at or below addr_max + 1, above kernel_end, page
 * aligned) and copy it there; its guest address in *at.  -ENOSPC with a
 * message if it does not fit. */
int boot__load_initrd(struct vm *vm, uint32_t addr_max, uint64_t kernel_end,
		      const uint8_t *initrd, size_t size, uint64_t *at);

#endif /* RUNTIME_BOOT_H */
