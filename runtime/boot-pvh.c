/*
 * boot-pvh.c - boot an ELF vmlinux through the PVH entry point (see
 * boot-pvh.h for the ABI and the memory layout).
 *
 * The ELF file is hostile input: the header, every program header and
 * every note is bounds-checked against the file before it is read, with
 * overflow-safe arithmetic, and the segments are checked against each
 * other and against guest RAM before a byte is copied.
 */
#include <errno.h>
#include <string.h>

#include "runtime/boot-linux.h"
#include "runtime/boot.h"
#include "runtime/boot-pvh.h"
#include "runtime/bytes.h"

#define PAGE 4096ull

/* ELF64 constants (System V gABI), spelled out: the file is read byte
 * by byte, never cast to <elf.h>'s structs. */
#define EHDR_SIZE      64
#define PHDR_SIZE      56
#define EI_CLASS       4
#define EI_DATA        5
#define EI_VERSION     6
#define ELFCLASS64     2
#define ELFDATA2LSB    1
#define ET_EXEC        2
#define EM_X86_64      62
#define PT_LOAD        1
#define PT_NOTE        4
#define MAX_PHDRS      64

static uint64_t le64_get(const uint8_t *p)
{
	return (uint64_t)le32_get(p) | (uint64_t)le32_get(p + 4) << 32;
}

bool boot_pvh__is_elf(const uint8_t *img, size_t size)
{
	return size >= 4 && memcmp(img, "\177ELF", 4) == 0;
}

/* [off, off+len) lies inside a file of `size` bytes (no wrap). */
static bool in_file(uint64_t off, uint64_t len, size_t size)
{
	return off <= size && len <= size - off;
}

/* Look through one PT_NOTE segment for Xen's PHYS32_ENTRY note.
 * Returns 1 and sets *entry if found, 0 if not, -ENOEXEC if the notes
 * are malformed. */
static int find_pvh_note(const uint8_t *n, uint64_t len, int ph,
			 uint32_t *entry)
{
	uint64_t at = 0;

	while (len - at >= 12) {
		uint32_t namesz = le32_get(n + at);
		uint32_t descsz = le32_get(n + at + 4);
		uint32_t type = le32_get(n + at + 8);
		uint64_t name_off = at + 12;
		uint64_t desc_off = name_off + (((uint64_t)namesz + 3) & ~3ull);
		uint64_t next = desc_off + (((uint64_t)descsz + 3) & ~3ull);

		/* The padded sizes may run past the segment only in the
		 * last note's padding; the name and desc themselves not. */
		if (desc_off > len || descsz > len - desc_off ||
		    namesz > len - name_off)
			return vm__err(ENOEXEC, "kernel: note at offset %llu "
				       "of program header %d runs past its "
				       "segment (namesz %u, descsz %u)",
				       (unsigned long long)at, ph, namesz,
				       descsz);
		if (namesz == 4 && memcmp(n + name_off, "Xen", 4) == 0 &&
		    type == XEN_ELFNOTE_PHYS32_ENTRY) {
			uint64_t v;
			if (descsz == 4)
				v = le32_get(n + desc_off);
			else if (descsz == 8)
				v = le64_get(n + desc_off);
			else
				return vm__err(ENOEXEC, "kernel: PVH entry "
					       "note has a %u-byte value (4 or "
					       "8 expected)", descsz);
			if (v == 0 || v > 0xffffffffull)
				return vm__err(ENOEXEC, "kernel: PVH entry "
					       "0x%llx is not a 32-bit "
					       "physical address",
					       (unsigned long long)v);
			*entry = (uint32_t)v;
			return 1;
		}
		if (next >= len)
			break;
		at = next;
	}
	return 0;
}

int boot_pvh__parse(const uint8_t *img, size_t size,
		    struct pvh_kernel_info *o)
{
	memset(o, 0, sizeof(*o));
	if (size < EHDR_SIZE || !boot_pvh__is_elf(img, size))
		return vm__err(ENOEXEC, "kernel: file of %zu bytes is too "
			       "short for an ELF header", size);
	if (img[EI_CLASS] != ELFCLASS64 || img[EI_DATA] != ELFDATA2LSB ||
	    img[EI_VERSION] != 1)
		return vm__err(ENOEXEC, "kernel: ELF class %u, data %u, "
			       "version %u: only 64-bit little-endian ELF "
			       "version 1 is supported", img[EI_CLASS],
			       img[EI_DATA], img[EI_VERSION]);
	uint16_t type = le16_get(img + 16), machine = le16_get(img + 18);
	if (type != ET_EXEC || machine != EM_X86_64)
		return vm__err(ENOEXEC, "kernel: ELF type %u machine %u: not "
			       "an x86-64 executable", type, machine);
	uint64_t phoff = le64_get(img + 32);
	uint16_t phentsize = le16_get(img + 54), phnum = le16_get(img + 56);
	if (phentsize != PHDR_SIZE || phnum == 0 || phnum > MAX_PHDRS)
		return vm__err(ENOEXEC, "kernel: ELF has %u program headers "
			       "of %u bytes (1 to %d of %d expected)", phnum,
			       phentsize, MAX_PHDRS, PHDR_SIZE);
	if (!in_file(phoff, (uint64_t)phnum * PHDR_SIZE, size))
		return vm__err(ENOEXEC, "kernel: program headers at offset "
			       "%llu run past the end of the %zu-byte file",
			       (unsigned long long)phoff, size);

	bool have_note = false;
	for (int i = 0; i < phnum; i++) {
		const uint8_t *ph = img + phoff + (uint64_t)i * PHDR_SIZE;
		uint32_t ptype = le32_get(ph);
		uint64_t off = le64_get(ph + 8), paddr = le64_get(ph + 24);
		uint64_t filesz = le64_get(ph + 32), memsz = le64_get(ph + 40);

		if (ptype != PT_LOAD && ptype != PT_NOTE)
			continue;
		if (!in_file(off, filesz, size))
			return vm__err(ENOEXEC, "kernel: program header %d: "
				       "%llu bytes at offset %llu run past "
				       "the end of the %zu-byte file", i,
				       (unsigned long long)filesz,
				       (unsigned long long)off, size);
		if (ptype == PT_NOTE) {
			if (have_note)
				continue;
			int r = find_pvh_note(img + off, filesz, i,
					      &o->entry);
			if (r < 0)
				return r;
			have_note = r == 1;
			continue;
		}
		if (memsz == 0)
			continue;
		if (filesz > memsz)
			return vm__err(ENOEXEC, "kernel: program header %d: "
				       "file size %llu exceeds memory size "
				       "%llu", i, (unsigned long long)filesz,
				       (unsigned long long)memsz);
		if (paddr < BOOT_KERNEL_ADDR || paddr >= VM_MMIO_HOLE_END ||
		    memsz > VM_MMIO_HOLE_END - paddr)
			return vm__err(ENOEXEC, "kernel: program header %d "
				       "loads at 0x%llx-0x%llx, outside 1 "
				       "MiB to 4 GiB", i,
				       (unsigned long long)paddr,
				       (unsigned long long)(paddr + memsz));
		if (o->nr_segments == PVH_MAX_SEGMENTS)
			return vm__err(ENOEXEC, "kernel: more than %d "
				       "loadable segments", PVH_MAX_SEGMENTS);
		for (int j = 0; j < o->nr_segments; j++) {
			const struct pvh_segment *s = &o->seg[j];
			if (paddr < s->paddr + s->memsz &&
			    s->paddr < paddr + memsz)
				return vm__err(ENOEXEC, "kernel: program "
					       "header %d (0x%llx-0x%llx) "
					       "overlaps an earlier segment "
					       "(0x%llx-0x%llx)", i,
					       (unsigned long long)paddr,
					       (unsigned long long)(paddr +
								    memsz),
					       (unsigned long long)s->paddr,
					       (unsigned long long)(s->paddr +
								    s->memsz));
		}
		o->seg[o->nr_segments++] = (struct pvh_segment){
			off, paddr, filesz, memsz };
		if (o->nr_segments == 1 || paddr < o->lowest)
			o->lowest = paddr;
		if (paddr + memsz > o->end)
			o->end = paddr + memsz;
	}
	if (o->nr_segments == 0)
		return vm__err(ENOEXEC, "kernel: ELF has no loadable "
			       "segment");
	if (!have_note)
		return vm__err(ENOEXEC, "kernel: ELF has no PVH entry note "
			       "(Xen note type %d; a Linux vmlinux has it "
			       "with CONFIG_PVH=y)", XEN_ELFNOTE_PHYS32_ENTRY);
	for (int j = 0; j < o->nr_segments; j++) {
		const struct pvh_segment *s = &o->seg[j];
		if (o->entry >= s->paddr && o->entry - s->paddr < s->filesz)
			return 0;
	}
	return vm__err(ENOEXEC, "kernel: PVH entry 0x%x is not in a loaded "
		       "segment", o->entry);
}

int boot_pvh__load_mem(struct vm *vm, const uint8_t *kernel,
		       size_t kernel_size, const uint8_t *initrd,
		       size_t initrd_size, const char *cmdline)
{
	struct pvh_kernel_info ki;
	int rc = boot_pvh__parse(kernel, kernel_size, &ki);

	if (rc < 0)
		return rc;
	if (!cmdline)
		cmdline = "";
	/* Every segment in RAM below the hole (guest_mem__ptr refuses
	 * ranges that cross into it or past the end of RAM). */
	uint64_t low_end = boot__low_ram_end(vm);
	if (ki.end > low_end)
		return vm__err(ENOSPC, "kernel: segments reach 0x%llx but "
			       "guest low RAM ends at 0x%llx",
			       (unsigned long long)ki.end,
			       (unsigned long long)low_end);
	for (int i = 0; i < ki.nr_segments; i++) {
		const struct pvh_segment *s = &ki.seg[i];
		uint8_t *dst = guest_mem__ptr(&vm->mem, s->paddr, s->memsz);
		if (!dst)
			return vm__err(ENOSPC, "kernel: segment at 0x%llx "
				       "does not fit in guest RAM",
				       (unsigned long long)s->paddr);
		memcpy(dst, kernel + s->offset, s->filesz);
		memset(dst + s->filesz, 0, s->memsz - s->filesz);
	}

	size_t clen = strlen(cmdline);
	if (clen + 1 > BOOT_CMDLINE_MAX)
		return vm__err(E2BIG, "command line of %zu bytes exceeds %u",
			       clen, BOOT_CMDLINE_MAX - 1);
	char *cl = guest_mem__ptr(&vm->mem, BOOT_CMDLINE_ADDR, clen + 1);
	uint8_t *si = guest_mem__ptr(&vm->mem, PVH_START_INFO_ADDR, PAGE);
	if (!cl || !si)
		return vm__err(ENOSPC, "no guest RAM for the boot data");
	memcpy(cl, cmdline, clen + 1);
	memset(si, 0, PAGE);

	le32_put(si + PVH_SI_MAGIC, PVH_START_MAGIC);
	le32_put(si + PVH_SI_VERSION, PVH_START_VERSION);
	le64_put(si + PVH_SI_CMDLINE, BOOT_CMDLINE_ADDR);
	if (initrd && initrd_size) {
		uint64_t at;
		/* The module may sit anywhere below 4 GiB; the kernel's end
		 * is the last segment's. */
		rc = boot__load_initrd(vm, 0xffffffffu, ki.end, initrd,
				       initrd_size, &at);
		if (rc < 0)
			return rc;
		uint8_t *m = si + (PVH_MODLIST_ADDR - PVH_START_INFO_ADDR);
		le64_put(m, at);
		le64_put(m + 8, initrd_size);
		le32_put(si + PVH_SI_NR_MODULES, 1);
		le64_put(si + PVH_SI_MODLIST, PVH_MODLIST_ADDR);
	}
	struct e820_entry map[PVH_MEMMAP_MAX];
	int n = boot_linux__e820(vm->ram_size, map, PVH_MEMMAP_MAX);
	uint8_t *mm = si + (PVH_MEMMAP_ADDR - PVH_START_INFO_ADDR);
	for (int i = 0; i < n; i++) {
		le64_put(mm + i * PVH_MEMMAP_ENTRY, map[i].addr);
		le64_put(mm + i * PVH_MEMMAP_ENTRY + 8, map[i].size);
		le32_put(mm + i * PVH_MEMMAP_ENTRY + 16, map[i].type);
	}
	le64_put(si + PVH_SI_MEMMAP, PVH_MEMMAP_ADDR);
	le32_put(si + PVH_SI_MEMMAP_NR, (uint32_t)n);

	vm->entry_mode = VM_ENTRY_PVH32;
	vm->entry_rip = ki.entry;
	vm->entry_rbx = PVH_START_INFO_ADDR;
	vm->entry_rsi = 0;
	vm->rsdp_slot = PVH_START_INFO_ADDR + PVH_SI_RSDP;
	return 0;
}
