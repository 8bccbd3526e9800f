/*
 * boot-linux.c - load a bzImage the way the x86 boot protocol says a
 * 64-bit boot loader should (Documentation/x86/boot.rst, "64-bit boot
 * protocol"): the protected-mode kernel at 1 MiB, a zero page holding the
 * setup header, the e820 map, the command line and the initrd location,
 * and entry in long mode at the load address + 0x200 with %rsi pointing
 * at the zero page.
 *
 * The kernel file is hostile input: every header field we use is checked
 * against the file size and the protocol before it is believed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/boot-linux.h"
#include "runtime/boot.h"
#include "runtime/boot-pvh.h"
#include "runtime/bytes.h"

#define MAX_KERNEL_FILE (256u << 20)
#define PAGE 4096ull

int boot_linux__parse(const uint8_t *img, size_t size, struct bzimage_info *o)
{
	memset(o, 0, sizeof(*o));
	/* The fields up to init_size (2.10+) must be in the file at all. */
	if (size < HDR_INIT_SIZE_OFF + 4)
		return vm__err(ENOEXEC, "kernel: file of %zu bytes is too "
			       "short for a bzImage setup header", size);
	if (le16_get(img + BOOT_FLAG_OFF) != 0xAA55)
		return vm__err(ENOEXEC, "kernel: boot_flag at 0x1fe is 0x%04x, "
			       "not 0xaa55 (not a bzImage)",
			       le16_get(img + BOOT_FLAG_OFF));
	if (memcmp(img + HDR_MAGIC_OFF, "HdrS", 4) != 0)
		return vm__err(ENOEXEC, "kernel: no \"HdrS\" magic at 0x202 "
			       "(not a bzImage, or older than protocol 2.00)");
	o->version = le16_get(img + HDR_VERSION_OFF);
	if (o->version < 0x020c)
		return vm__err(ENOEXEC, "kernel: boot protocol %u.%02u is too "
			       "old; 64-bit entry needs 2.12 or later",
			       o->version >> 8, o->version & 0xff);
	o->setup_sects = img[SETUP_SECTS_OFF];
	if (o->setup_sects == 0)
		o->setup_sects = 4;     /* boot.rst: 0 means 4 */
	o->setup_size = ((size_t)o->setup_sects + 1) * 512;
	if (o->setup_size >= size)
		return vm__err(ENOEXEC, "kernel: setup_sects %u puts the "
			       "protected-mode kernel at %zu, past the end of "
			       "the %zu-byte file", o->setup_sects,
			       o->setup_size, size);
	o->payload_size = size - o->setup_size;
	/* The jump at 0x200 says where the header ends; it must end inside
	 * the file and inside boot_params' header area. */
	size_t hdr_end = 0x202 + img[HDR_JUMP_OFF + 1];
	if (img[HDR_JUMP_OFF] != 0xEB || hdr_end < HDR_INIT_SIZE_OFF + 4 ||
	    hdr_end > size)
		return vm__err(ENOEXEC, "kernel: setup header length byte at "
			       "0x201 (0x%02x) is inconsistent with protocol "
			       "%u.%02u", img[HDR_JUMP_OFF + 1],
			       o->version >> 8, o->version & 0xff);
	if (!(img[HDR_LOADFLAGS_OFF] & LOADED_HIGH))
		return vm__err(ENOEXEC, "kernel: loadflags lacks LOADED_HIGH "
			       "(a zImage; only bzImages are supported)");
	o->xloadflags = le16_get(img + HDR_XLOADFLAGS_OFF);
	if (!(o->xloadflags & XLF_KERNEL_64))
		return vm__err(ENOEXEC, "kernel: xloadflags lacks "
			       "XLF_KERNEL_64 (no 64-bit entry point)");
	if (!img[HDR_RELOC_OFF])
		return vm__err(ENOEXEC, "kernel: relocatable_kernel is 0 (we "
			       "load at 0x%llx and need a relocatable kernel)",
			       BOOT_KERNEL_ADDR);
	o->kernel_alignment = le32_get(img + HDR_ALIGN_OFF);
	if (o->kernel_alignment == 0 ||
	    (o->kernel_alignment & (o->kernel_alignment - 1)) ||
	    o->kernel_alignment > (1u << 30))
		return vm__err(ENOEXEC, "kernel: kernel_alignment 0x%x is not "
			       "a power of two up to 1 GiB",
			       o->kernel_alignment);
	o->initrd_addr_max = le32_get(img + HDR_INITRD_MAX_OFF);
	o->cmdline_size = le32_get(img + HDR_CMDLINE_SZ_OFF);
	o->init_size = le32_get(img + HDR_INIT_SIZE_OFF);
	if (o->init_size < o->payload_size)
		return vm__err(ENOEXEC, "kernel: init_size %u is smaller than "
			       "the %zu-byte kernel it must hold",
			       o->init_size, o->payload_size);
	/* The entry point must lie in the loaded bytes. */
	if (o->payload_size < 0x200 + 16)
		return vm__err(ENOEXEC, "kernel: protected-mode part (%zu "
			       "bytes) ends before the 64-bit entry at +0x200",
			       o->payload_size);
	return 0;
}

int boot_linux__e820(uint64_t ram, struct e820_entry *out, int max)
{
	struct guest_mem_region lay[2];
	int nlay = vm__ram_layout(ram, lay), n = 0;
	struct e820_entry all[4];

	/* Conventional memory stops where the EBDA (our MP table) starts;
	 * 0xA0000-0xFFFFF is the legacy VGA/ROM hole, so it is simply absent
	 * from the map. */
	uint64_t low_end = lay[0].size;
	all[n++] = (struct e820_entry){ 0, low_end < BOOT_EBDA_START ?
					low_end : BOOT_EBDA_START, E820_RAM };
	if (low_end > BOOT_EBDA_START)
		all[n++] = (struct e820_entry){ BOOT_EBDA_START,
			0xA0000 - BOOT_EBDA_START, E820_RESERVED };
	if (low_end > BOOT_KERNEL_ADDR)
		all[n++] = (struct e820_entry){ BOOT_KERNEL_ADDR,
			low_end - BOOT_KERNEL_ADDR, E820_RAM };
	if (nlay == 2)
		all[n++] = (struct e820_entry){ lay[1].gpa, lay[1].size,
						E820_RAM };
	if (n > max)
		n = max;
	memcpy(out, all, (size_t)n * sizeof(all[0]));
	return n;
}

int boot_linux__place_initrd(uint64_t ram, uint32_t initrd_addr_max,
			     uint64_t kernel_end, uint64_t initrd_size,
			     uint64_t *addr)
{
	struct guest_mem_region lay[2];
	vm__ram_layout(ram, lay);
	/* initrd_addr_max is the highest address the last byte may have. */
	uint64_t top = lay[0].size;
	if ((uint64_t)initrd_addr_max + 1 < top)
		top = (uint64_t)initrd_addr_max + 1;
	if (initrd_size == 0 || initrd_size > top ||
	    ((top - initrd_size) & ~(PAGE - 1)) < kernel_end)
		return vm__err(ENOSPC, "initrd of %llu bytes does not fit in "
			       "guest memory between the kernel's end (0x%llx)"
			       " and 0x%llx (guest RAM %llu MiB, kernel "
			       "initrd_addr_max 0x%x)",
			       (unsigned long long)initrd_size,
			       (unsigned long long)kernel_end,
			       (unsigned long long)top,
			       (unsigned long long)(ram >> 20),
			       initrd_addr_max);
	*addr = (top - initrd_size) & ~(PAGE - 1);
	return 0;
}

int boot__load_initrd(struct vm *vm, uint32_t addr_max, uint64_t kernel_end,
		      const uint8_t *initrd, size_t size, uint64_t *at)
{
	int rc = boot_linux__place_initrd(vm->ram_size, addr_max, kernel_end,
					  size, at);
	if (rc < 0)
		return rc;
	uint8_t *p = guest_mem__ptr(&vm->mem, *at, size);
	if (!p)
		return vm__err(ENOSPC, "initrd does not fit in RAM");
	memcpy(p, initrd, size);
	return 0;
}

int boot_linux__load_mem(struct vm *vm, const uint8_t *kernel,
			 size_t kernel_size, const uint8_t *initrd,
			 size_t initrd_size, const char *cmdline)
{
	struct bzimage_info bi;
	int rc = boot_linux__parse(kernel, kernel_size, &bi);
	if (rc < 0)
		return rc;
	if (!cmdline)
		cmdline = "";

	uint64_t low_end = boot__low_ram_end(vm);
	uint64_t kernel_end = BOOT_KERNEL_ADDR + bi.init_size;
	if (kernel_end > low_end)
		return vm__err(ENOSPC, "kernel needs %u bytes from 0x%llx "
			       "(init_size) but guest low RAM ends at 0x%llx",
			       bi.init_size, BOOT_KERNEL_ADDR,
			       (unsigned long long)low_end);
	uint8_t *dst = guest_mem__ptr(&vm->mem, BOOT_KERNEL_ADDR,
				      bi.payload_size);
	if (!dst)
		return vm__err(ENOSPC, "kernel does not fit in guest RAM");
	memcpy(dst, kernel + bi.setup_size, bi.payload_size);

	/* Command line: the kernel's limit and ours, NUL included. */
	size_t clen = strlen(cmdline);
	uint32_t cmax = bi.cmdline_size ? bi.cmdline_size : 255;
	if (clen > cmax || clen + 1 > BOOT_CMDLINE_MAX)
		return vm__err(E2BIG, "command line of %zu bytes exceeds the "
			       "kernel's cmdline_size %u", clen, cmax);
	char *cl = guest_mem__ptr(&vm->mem, BOOT_CMDLINE_ADDR, clen + 1);
	if (!cl)
		return vm__err(ENOSPC, "no guest RAM for the command line");
	memcpy(cl, cmdline, clen + 1);

	uint8_t *zp = guest_mem__ptr(&vm->mem, BOOT_ZERO_PAGE, PAGE);
	if (!zp)
		return vm__err(ENOSPC, "no guest RAM for the zero page");
	memset(zp, 0, PAGE);
	/* boot.rst: copy the setup header from the file into the zero page,
	 * then fill in the loader's fields. */
	size_t hdr_end = 0x202 + kernel[HDR_JUMP_OFF + 1];
	if (hdr_end > HDR_END_MAX)
		hdr_end = HDR_END_MAX;
	memcpy(zp + SETUP_SECTS_OFF, kernel + SETUP_SECTS_OFF,
	       hdr_end - SETUP_SECTS_OFF);
	zp[HDR_LOADER_OFF] = 0xff;  /* "undefined" loader id */
	zp[HDR_LOADFLAGS_OFF] |= CAN_USE_HEAP;
	le16_put(zp + HDR_HEAP_END_OFF, 0xfe00);
	le32_put(zp + HDR_CODE32_OFF, (uint32_t)BOOT_KERNEL_ADDR);
	le32_put(zp + HDR_CMDLINE_OFF, (uint32_t)BOOT_CMDLINE_ADDR);
	le32_put(zp + ZP_EXT_CMDLINE, 0);

	if (initrd && initrd_size) {
		uint64_t at;
		rc = boot__load_initrd(vm, bi.initrd_addr_max, kernel_end,
				       initrd, initrd_size, &at);
		if (rc < 0)
			return rc;
		le32_put(zp + HDR_RAMDISK_OFF, (uint32_t)at);
		le32_put(zp + HDR_RAMDISK_SZ_OFF, (uint32_t)initrd_size);
		le32_put(zp + ZP_EXT_RAMDISK, (uint32_t)(at >> 32));
		le32_put(zp + ZP_EXT_RAMDISK_SZ, (uint32_t)(initrd_size >> 32));
	}

	struct e820_entry map[E820_MAX_ZEROPAGE];
	int n = boot_linux__e820(vm->ram_size, map, E820_MAX_ZEROPAGE);
	zp[ZP_E820_ENTRIES] = (uint8_t)n;
	memcpy(zp + ZP_E820_TABLE, map, (size_t)n * sizeof(map[0]));

	vm->entry_mode = VM_ENTRY_LONG64;
	vm->entry_rip = BOOT_KERNEL_ADDR + 0x200;
	vm->entry_rsi = BOOT_ZERO_PAGE;
	vm->rsdp_slot = BOOT_ZERO_PAGE + ZP_ACPI_RSDP;
	return 0;
}

/* Read a whole file of at most `cap` bytes into a fresh buffer. */
static int slurp(const char *what, const char *path, size_t cap,
		 uint8_t **buf, size_t *size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;

	if (fd < 0)
		return vm__err(errno, "%s %s: %s", what, path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return vm__err(EINVAL, "%s %s: not a regular file", what, path);
	}
	if ((uint64_t)st.st_size > cap) {
		close(fd);
		return vm__err(EFBIG, "%s %s: %lld bytes is more than the %zu "
			       "allowed", what, path, (long long)st.st_size,
			       cap);
	}
	size_t n = (size_t)st.st_size, got = 0;
	uint8_t *b = malloc(n ? n : 1);
	if (!b) {
		close(fd);
		return vm__err(ENOMEM, "%s %s: out of memory", what, path);
	}
	while (got < n) {
		ssize_t r = read(fd, b + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			int e = r < 0 ? errno : EIO;
			free(b);
			close(fd);
			return vm__err(e, "%s %s: read failed: %s", what, path,
				       r < 0 ? strerror(e) : "file shrank");
		}
		got += (size_t)r;
	}
	close(fd);
	*buf = b;
	*size = n;
	return 0;
}

int boot_linux__load(struct vm *vm, const struct boot_linux_args *a)
{
	uint8_t *k = NULL, *i = NULL;
	size_t ks = 0, is = 0;
	int rc = slurp("kernel", a->kernel_path, MAX_KERNEL_FILE, &k, &ks);

	if (rc < 0)
		return rc;
	if (a->initrd_path) {
		size_t cap = vm->ram_size > SIZE_MAX ? SIZE_MAX
						     : (size_t)vm->ram_size;
		rc = slurp("initrd", a->initrd_path, cap, &i, &is);
		if (rc < 0) {
			free(k);
			return rc;
		}
		if (is == 0) {
			free(k);
			free(i);
			return vm__err(EINVAL, "initrd %s is empty",
				       a->initrd_path);
		}
	}
	/* An ELF file is a vmlinux: PVH direct boot (boot-pvh.c). */
	if (boot_pvh__is_elf(k, ks))
		rc = boot_pvh__load_mem(vm, k, ks, i, is, a->cmdline);
	else
		rc = boot_linux__load_mem(vm, k, ks, i, is, a->cmdline);
	if (rc < 0) {
		/* Name the file in the message the parser wrote. */
		char msg[1024];
		snprintf(msg, sizeof(msg), "%s", vm__error());
		vm__err(-rc, "%s: %s", a->kernel_path, msg);
	}
	free(k);
	free(i);
	return rc;
}
