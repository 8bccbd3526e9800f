/*
 * boot-pvh.h - direct boot of an uncompressed ELF kernel (vmlinux) through
 * the PVH boot ABI (Xen's docs/misc/pvh.pandoc, Linux's
 * arch/x86/platform/pvh/): the kernel's PT_LOAD segments at their
 * physical addresses, entry at the address its XEN_ELFNOTE_PHYS32_ENTRY
 * note names, in 32-bit protected mode with paging off and %ebx pointing
 * at a struct hvm_start_info (command line, memory map, the initramfs as
 * module 0, the ACPI RSDP).
 *
 * Low guest memory as the PVH loader lays it out (the bzImage loader's
 * zero page and command-line slots, see boot-linux.h):
 *
 *   0x07000  hvm_start_info (56 bytes)
 *   0x07100  module list (one 32-byte entry: the initramfs)
 *   0x07200  memory map (24-byte entries, at most 128)
 *   0x20000  kernel command line
 *   >= 1 MiB the kernel's PT_LOAD segments, below the 32-bit MMIO hole
 *   initrd   at the top of low RAM, above the last segment, page aligned
 */
#ifndef RUNTIME_BOOT_PVH_H
#define RUNTIME_BOOT_PVH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/vm.h"

#define PVH_START_INFO_ADDR  0x7000ull
#define PVH_MODLIST_ADDR     0x7100ull
#define PVH_MEMMAP_ADDR      0x7200ull
#define PVH_MEMMAP_MAX       128

#define PVH_START_MAGIC      0x336ec578u   /* "xEn3" with 0x80 in 'E' */
#define PVH_START_VERSION    1             /* adds the memory map */
#define PVH_START_INFO_SIZE  56
#define PVH_MODLIST_ENTRY    32
#define PVH_MEMMAP_ENTRY     24
/* Offsets in struct hvm_start_info (version 1). */
#define PVH_SI_MAGIC         0
#define PVH_SI_VERSION       4
#define PVH_SI_FLAGS         8
#define PVH_SI_NR_MODULES    12
#define PVH_SI_MODLIST       16
#define PVH_SI_CMDLINE       24
#define PVH_SI_RSDP          32
#define PVH_SI_MEMMAP        40
#define PVH_SI_MEMMAP_NR     48

#define XEN_ELFNOTE_PHYS32_ENTRY 18

/* PT_LOAD segments we accept in one kernel (vmlinux has 4 or 5). */
#define PVH_MAX_SEGMENTS 16

struct pvh_segment {
	uint64_t offset;   /* in the file */
	uint64_t paddr;    /* guest physical load address */
	uint64_t filesz;   /* bytes copied from the file */
	uint64_t memsz;    /* bytes in memory; the rest zeroed */
};

/* What boot_pvh__parse() learned from an ELF kernel. */
struct pvh_kernel_info {
	uint32_t entry;              /* XEN_ELFNOTE_PHYS32_ENTRY */
	int nr_segments;
	struct pvh_segment seg[PVH_MAX_SEGMENTS];
	uint64_t lowest, end;        /* lowest paddr, highest paddr+memsz */
};

/* Whether `img` starts like an ELF file (magic only). */
bool boot_pvh__is_elf(const uint8_t *img, size_t size);

/* Validate an ELF64 x86-64 kernel held in memory (hostile input: every
 * header, segment and note is checked against the file size; segments
 * must not overlap each other, must start at or above 1 MiB and end
 * below 4 GiB; the PVH entry note must exist and point into a loaded
 * segment).  -ENOEXEC with a message naming the field on failure.  It
 * does not know the guest's RAM; boot_pvh__load_mem() checks that. */
int boot_pvh__parse(const uint8_t *img, size_t size,
		    struct pvh_kernel_info *out);

/* Load the segments, initrd, command line, start_info and memory map
 * into guest memory; set vm->entry_mode = VM_ENTRY_PVH32, entry_rip and
 * entry_rbx, and vm->rsdp_slot (where the ACPI RSDP's address goes). */
int boot_pvh__load_mem(struct vm *vm, const uint8_t *kernel,
		       size_t kernel_size, const uint8_t *initrd,
		       size_t initrd_size, const char *cmdline);

#endif /* RUNTIME_BOOT_PVH_H */
