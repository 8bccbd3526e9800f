/*
 * boot-linux.h - the x86 Linux boot protocol (Documentation/x86/boot.rst)
 * as the monitor implements it: 64-bit entry into a relocatable bzImage.
 *
 * Low guest memory as the monitor lays it out:
 *
 *   0x00500  boot GDT                0x07000  zero page (boot_params)
 *   0x09000  PML4   0x0a000  PDPT    0x0b000-0x0efff  4 page directories
 *   0x20000  kernel command line     0x9f000  MP table (EBDA, reserved)
 *   0x100000 the kernel (protected-mode part of the bzImage)
 *   initrd   as high as initrd_addr_max and RAM allow, page aligned
 */
#ifndef RUNTIME_BOOT_LINUX_H
#define RUNTIME_BOOT_LINUX_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/vm.h"

#define BOOT_GDT_ADDR       0x500ull
#define BOOT_ZERO_PAGE      0x7000ull
#define BOOT_STACK_TOP      0x8ff0ull
#define BOOT_PML4_ADDR      0x9000ull
#define BOOT_PDPT_ADDR      0xa000ull
#define BOOT_PD_ADDR        0xb000ull   /* 4 pages: 4 GiB of 2 MiB pages */
#define BOOT_CMDLINE_ADDR   0x20000ull
#define BOOT_CMDLINE_MAX    0x10000u    /* our buffer; the kernel may say less */
#define BOOT_EBDA_START     0x9f000ull   /* 4 KiB to 0xa0000: MP table */
#define BOOT_KERNEL_ADDR    0x100000ull

/* Boot GDT selectors, as the boot protocol names them. */
#define BOOT_CS 0x10
#define BOOT_DS 0x18

#define E820_RAM      1
#define E820_RESERVED 2
#define E820_MAX_ZEROPAGE 128

struct e820_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
} __attribute__((packed));

/* Offsets into the bzImage / zero page (boot.rst). */
#define SETUP_SECTS_OFF    0x1f1
#define BOOT_FLAG_OFF      0x1fe
#define HDR_JUMP_OFF       0x200
#define HDR_MAGIC_OFF      0x202
#define HDR_VERSION_OFF    0x206
#define HDR_LOADER_OFF     0x210
#define HDR_LOADFLAGS_OFF  0x211
#define HDR_CODE32_OFF     0x214
#define HDR_RAMDISK_OFF    0x218
#define HDR_RAMDISK_SZ_OFF 0x21c
#define HDR_HEAP_END_OFF   0x224
#define HDR_CMDLINE_OFF    0x228
#define HDR_INITRD_MAX_OFF 0x22c
#define HDR_ALIGN_OFF      0x230
#define HDR_RELOC_OFF      0x234
#define HDR_XLOADFLAGS_OFF 0x236
#define HDR_CMDLINE_SZ_OFF 0x238
#define HDR_PREF_ADDR_OFF  0x258
#define HDR_INIT_SIZE_OFF  0x260
#define HDR_END_MAX        0x290   /* the header area of boot_params ends */
#define ZP_ACPI_RSDP       0x070
#define ZP_EXT_RAMDISK     0x0c0
#define ZP_EXT_RAMDISK_SZ  0x0c4
#define ZP_EXT_CMDLINE     0x0c8
#define ZP_E820_ENTRIES    0x1e8
#define ZP_E820_TABLE      0x2d0

#define LOADED_HIGH    0x01
#define CAN_USE_HEAP   0x80
#define XLF_KERNEL_64  0x01

/* What boot_linux__parse() learned from a bzImage header. */
struct bzimage_info {
	uint16_t version;         /* 0x20c = 2.12 */
	unsigned setup_sects;
	size_t setup_size;        /* bytes before the protected-mode kernel */
	size_t payload_size;      /* protected-mode kernel bytes in the file */
	uint32_t init_size;       /* memory the kernel needs from its start */
	uint32_t initrd_addr_max;
	uint32_t cmdline_size;    /* longest command line, without the NUL */
	uint32_t kernel_alignment;
	uint16_t xloadflags;
};

/* Validate a bzImage held in memory (hostile input: every field is
 * checked against the file size and the protocol).  -EINVAL/-ENOEXEC with
 * a message naming the field on failure. */
int boot_linux__parse(const uint8_t *img, size_t size,
		      struct bzimage_info *out);

/* The e820 map for `ram` bytes of guest RAM laid out by vm__ram_layout():
 * RAM below the EBDA, the EBDA reserved, RAM from 1 MiB to the hole, RAM
 * above 4 GiB.  Returns the number of entries written (at most `max`). */
int boot_linux__e820(uint64_t ram, struct e820_entry *out, int max);

/* Where the initrd goes: the highest page-aligned address such that it
 * ends at or below min(initrd_addr_max, end of low RAM) and starts above
 * `kernel_end`.  -ENOSPC with a message if it does not fit. */
int boot_linux__place_initrd(uint64_t ram, uint32_t initrd_addr_max,
			     uint64_t kernel_end, uint64_t initrd_size,
			     uint64_t *addr);

struct boot_linux_args {
	const char *kernel_path;
	const char *initrd_path;   /* NULL: none */
	const char *cmdline;       /* NULL: "" */
};

/* Load kernel, initrd, command line and zero page into guest memory and
 * set vm->entry_rip/entry_rsi for the 64-bit entry.  Files are capped
 * (kernel 256 MiB, initrd by guest RAM).  A kernel that is an ELF file
 * (a vmlinux) goes to boot_pvh__load_mem() instead (boot-pvh.h). */
int boot_linux__load(struct vm *vm, const struct boot_linux_args *a);

/* Same as boot_linux__load() from memory buffers (for the unit tests). */
int boot_linux__load_mem(struct vm *vm, const uint8_t *kernel,
			 size_t kernel_size, const uint8_t *initrd,
			 size_t initrd_size, const char *cmdline);

#endif /* RUNTIME_BOOT_LINUX_H */
