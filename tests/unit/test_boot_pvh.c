/*
 * test_boot_pvh.c - the PVH direct-boot loader (runtime/boot-pvh.c) on
 * ELF files crafted in memory: what a good vmlinux-like file leaves in
 * guest memory (segments, start_info, module, memory map, entry state),
 * and the refusals of hostile files (truncated, segments past the end of
 * the file or outside guest RAM, overlapping, in the MMIO hole, bad or
 * missing notes), plus every truncation and many byte corruptions of a
 * good file, which must fail cleanly or load, never read out of bounds
 * (run under ASan by make check SANITIZE=1).
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/boot-linux.h"
#include "runtime/boot-pvh.h"
#include "runtime/vm.h"
#include "fixture-vm.h"
#include "fixture-run.h"

/* ---- a crafted vmlinux ----------------------------------------------- */

/* Layout: ELF header, 3 program headers (text PT_LOAD at 16 MiB, data
 * PT_LOAD at 18 MiB with bss, PT_NOTE), note, text, data. */
#define ESIZE     0x2800   /* the data segment ends the file */
#define PH_OFF    64
#define NOTE_OFF  0x200
#define TEXT_OFF  0x1000
#define DATA_OFF  0x2000
#define TEXT_ADDR 0x1000000ull
#define DATA_ADDR 0x1200000ull
#define ENTRY     (TEXT_ADDR + 0x40)

static uint8_t *ph(uint8_t *e, int i) { return e + PH_OFF + 56 * i; }

static void set_ph(uint8_t *e, int i, uint32_t type, uint64_t off,
		   uint64_t paddr, uint64_t filesz, uint64_t memsz)
{
	uint8_t *p = ph(e, i);
	fx_w32(p, type);
	fx_w32(p + 4, 5);
	fx_w64(p + 8, off);
	fx_w64(p + 16, paddr | 0xffffffff80000000ull);   /* vaddr: unused */
	fx_w64(p + 24, paddr);
	fx_w64(p + 32, filesz);
	fx_w64(p + 40, memsz);
	fx_w64(p + 48, 0x1000);
}

/* A note at `at`: name "Xen", type, a desc of `descsz` bytes = v. */
static size_t put_note(uint8_t *e, size_t at, const char *name,
		       uint32_t type, uint32_t descsz, uint64_t v)
{
	uint32_t namesz = (uint32_t)strlen(name) + 1;
	fx_w32(e + at, namesz);
	fx_w32(e + at + 4, descsz);
	fx_w32(e + at + 8, type);
	memcpy(e + at + 12, name, namesz);
	size_t d = at + 12 + ((namesz + 3) & ~3u);
	memcpy(e + d, &v, descsz > 8 ? 8 : descsz);
	return d + ((descsz + 3) & ~3u) - at;
}

static uint8_t *make_elf(void)
{
	uint8_t *e = calloc(1, ESIZE);

	memcpy(e, "\177ELF", 4);
	e[4] = 2;      /* ELFCLASS64 */
	e[5] = 1;      /* little endian */
	e[6] = 1;      /* EV_CURRENT */
	fx_w16(e + 16, 2);        /* ET_EXEC */
	fx_w16(e + 18, 62);       /* EM_X86_64 */
	fx_w32(e + 20, 1);
	fx_w64(e + 24, 0xffffffff81000000ull);
	fx_w64(e + 32, PH_OFF);
	fx_w16(e + 52, 64);
	fx_w16(e + 54, 56);
	fx_w16(e + 56, 3);
	set_ph(e, 0, 1, TEXT_OFF, TEXT_ADDR, 0x1000, 0x1000);
	set_ph(e, 1, 1, DATA_OFF, DATA_ADDR, 0x800, 0x4000);
	/* Another note first (Linux has several), then the PVH one. */
	size_t n = put_note(e, NOTE_OFF, "GNU", 3, 20, 0x1234);
	n += put_note(e, NOTE_OFF + n, "Xen", XEN_ELFNOTE_PHYS32_ENTRY, 8,
		      ENTRY);
	set_ph(e, 2, 4, NOTE_OFF, 0, n, n);
	memset(e + TEXT_OFF, 0xC3, 0x1000);
	memset(e + DATA_OFF, 0xDA, 0x800);
	return e;
}

static void expect_reject(const uint8_t *e, size_t size, const char *needle)
{
	struct pvh_kernel_info ki;
	int rc = boot_pvh__parse(e, size, &ki);

	ck_assert_int_eq(rc, -ENOEXEC);
	ck_assert_msg(strstr(vm__error(), needle), "message '%s' lacks '%s'",
		      vm__error(), needle);
}

/* ---- tests ----------------------------------------------------------- */

START_TEST(valid_elf_parses)
{
	uint8_t *e = make_elf();
	struct pvh_kernel_info ki;

	ck_assert_msg(boot_pvh__parse(e, ESIZE, &ki) == 0, "%s", vm__error());
	ck_assert_uint_eq(ki.entry, ENTRY);
	ck_assert_int_eq(ki.nr_segments, 2);
	ck_assert_uint_eq(ki.lowest, TEXT_ADDR);
	ck_assert_uint_eq(ki.end, DATA_ADDR + 0x4000);
	ck_assert(boot_pvh__is_elf(e, ESIZE));
	/* A 4-byte entry value is as good as Linux's 8-byte one. */
	size_t n = put_note(e, NOTE_OFF, "Xen", XEN_ELFNOTE_PHYS32_ENTRY, 4,
			    ENTRY + 4);
	set_ph(e, 2, 4, NOTE_OFF, 0, n, n);
	ck_assert_int_eq(boot_pvh__parse(e, ESIZE, &ki), 0);
	ck_assert_uint_eq(ki.entry, ENTRY + 4);
	free(e);
}
END_TEST

START_TEST(load_builds_start_info)
{
	struct vm *vm = fx_vm_new(64ull << 20);
	uint8_t *e = make_elf();
	uint8_t initrd[5000];

	memset(initrd, 0x1d, sizeof(initrd));
	/* Stale bytes where the bss goes: the loader must zero them. */
	memset(guest_mem__ptr(&vm->mem, DATA_ADDR, 0x4000), 0xff, 0x4000);
	ck_assert_msg(boot_pvh__load_mem(vm, e, ESIZE, initrd, sizeof(initrd),
					 "console=ttyS0 pvh") == 0, "%s",
		      vm__error());
	ck_assert_int_eq(vm->entry_mode, VM_ENTRY_PVH32);
	ck_assert_uint_eq(vm->entry_rip, ENTRY);
	ck_assert_uint_eq(vm->entry_rbx, PVH_START_INFO_ADDR);
	ck_assert_uint_eq(vm->rsdp_slot, PVH_START_INFO_ADDR + PVH_SI_RSDP);

	/* Segments: file bytes, then zeros up to memsz. */
	const uint8_t *t = guest_mem__ptr(&vm->mem, TEXT_ADDR, 0x1000);
	const uint8_t *d = guest_mem__ptr(&vm->mem, DATA_ADDR, 0x4000);
	ck_assert_uint_eq(t[0], 0xC3);
	ck_assert_uint_eq(t[0xfff], 0xC3);
	ck_assert_uint_eq(d[0x7ff], 0xDA);
	for (int i = 0x800; i < 0x4000; i++)
		ck_assert_uint_eq(d[i], 0);

	const uint8_t *si = guest_mem__ptr(&vm->mem, PVH_START_INFO_ADDR,
					   PVH_START_INFO_SIZE);
	ck_assert_uint_eq(fx_r32(si + PVH_SI_MAGIC), 0x336ec578);
	ck_assert_uint_eq(fx_r32(si + PVH_SI_VERSION), 1);
	ck_assert_str_eq(guest_mem__ptr(&vm->mem, fx_r64(si + PVH_SI_CMDLINE),
					1), "console=ttyS0 pvh");
	/* The initramfs is module 0, page aligned, above the kernel, intact. */
	ck_assert_uint_eq(fx_r32(si + PVH_SI_NR_MODULES), 1);
	const uint8_t *m = guest_mem__ptr(&vm->mem, fx_r64(si + PVH_SI_MODLIST),
					  PVH_MODLIST_ENTRY);
	uint64_t at = fx_r64(m);
	ck_assert_uint_eq(fx_r64(m + 8), sizeof(initrd));
	ck_assert_uint_eq(at % 4096, 0);
	ck_assert_uint_ge(at, DATA_ADDR + 0x4000);
	ck_assert_uint_le(at + sizeof(initrd), 64u << 20);
	ck_assert_mem_eq(guest_mem__ptr(&vm->mem, at, sizeof(initrd)), initrd,
			 sizeof(initrd));
	/* The memory map is the e820 map, in 24-byte entries. */
	struct e820_entry want[8];
	int n = boot_linux__e820(64ull << 20, want, 8);
	ck_assert_uint_eq(fx_r32(si + PVH_SI_MEMMAP_NR), (uint32_t)n);
	const uint8_t *mm = guest_mem__ptr(&vm->mem, fx_r64(si + PVH_SI_MEMMAP),
					   (uint64_t)n * PVH_MEMMAP_ENTRY);
	ck_assert_ptr_nonnull(mm);
	for (int i = 0; i < n; i++) {
		ck_assert_uint_eq(fx_r64(mm + 24 * i), want[i].addr);
		ck_assert_uint_eq(fx_r64(mm + 24 * i + 8), want[i].size);
		ck_assert_uint_eq(fx_r32(mm + 24 * i + 16), want[i].type);
	}
	/* Without an initrd: no modules. */
	ck_assert_int_eq(boot_pvh__load_mem(vm, e, ESIZE, NULL, 0, NULL), 0);
	ck_assert_uint_eq(fx_r32(si + PVH_SI_NR_MODULES), 0);
	ck_assert_uint_eq(fx_r64(si + PVH_SI_MODLIST), 0);
	free(e);
	fx_vm_free(vm);
}
END_TEST

START_TEST(hostile_headers_rejected)
{
	uint8_t *e = make_elf();
	uint8_t *g = make_elf();
#define RESET() memcpy(e, g, ESIZE)

	expect_reject(e, 63, "too short");
	expect_reject(e, 3, "too short");
	e[4] = 1; expect_reject(e, ESIZE, "64-bit"); RESET();
	e[5] = 2; expect_reject(e, ESIZE, "little-endian"); RESET();
	fx_w16(e + 18, 3); expect_reject(e, ESIZE, "x86-64"); RESET();
	fx_w16(e + 16, 3); expect_reject(e, ESIZE, "x86-64"); RESET();
	fx_w16(e + 56, 0); expect_reject(e, ESIZE, "program headers"); RESET();
	fx_w16(e + 56, 1000); expect_reject(e, ESIZE, "program headers"); RESET();
	fx_w16(e + 54, 32); expect_reject(e, ESIZE, "program headers"); RESET();
	/* Program headers past the end of the file (truncated), or at an
	 * offset that wraps. */
	expect_reject(e, PH_OFF + 56 * 2, "run past the end");
	fx_w64(e + 32, ~0ull - 8); expect_reject(e, ESIZE, "run past the end");
	RESET();
	/* Segment bytes past the end of the file; an offset+size wrap. */
	set_ph(e, 0, 1, TEXT_OFF, TEXT_ADDR, 0x3000, 0x3000);
	expect_reject(e, ESIZE, "past the end of the");
	set_ph(e, 0, 1, ~0ull - 0xfff, TEXT_ADDR, 0x1000, 0x1000);
	expect_reject(e, ESIZE, "past the end of the");
	RESET();
	expect_reject(e, DATA_OFF + 0x400, "past the end of the");
	/* filesz > memsz. */
	set_ph(e, 1, 1, DATA_OFF, DATA_ADDR, 0x800, 0x10);
	expect_reject(e, ESIZE, "exceeds memory size");
	RESET();
	/* Below 1 MiB (over the monitor's boot data), in or past the hole,
	 * wrapping. */
	set_ph(e, 0, 1, TEXT_OFF, 0x7000, 0x1000, 0x1000);
	expect_reject(e, ESIZE, "outside 1 MiB to 4 GiB");
	set_ph(e, 0, 1, TEXT_OFF, 0xfffff000ull, 0x1000, 0x2000);
	expect_reject(e, ESIZE, "outside 1 MiB to 4 GiB");
	set_ph(e, 0, 1, TEXT_OFF, 0x100000000ull, 0x1000, 0x1000);
	expect_reject(e, ESIZE, "outside 1 MiB to 4 GiB");
	set_ph(e, 0, 1, TEXT_OFF, TEXT_ADDR, 0x1000, ~0ull - 0x100);
	expect_reject(e, ESIZE, "outside 1 MiB to 4 GiB");
	RESET();
	/* Overlapping segments (either order, or one inside the other). */
	set_ph(e, 1, 1, DATA_OFF, TEXT_ADDR + 0x800, 0x800, 0x4000);
	expect_reject(e, ESIZE, "overlaps");
	set_ph(e, 1, 1, DATA_OFF, TEXT_ADDR - 0x800, 0x800, 0x1000);
	expect_reject(e, ESIZE, "overlaps");
	set_ph(e, 1, 1, DATA_OFF, TEXT_ADDR + 0x100, 0x10, 0x10);
	expect_reject(e, ESIZE, "overlaps");
	RESET();
	/* No loadable segment at all. */
	set_ph(e, 0, 6, 0, 0, 0, 0);
	set_ph(e, 1, 6, 0, 0, 0, 0);
	expect_reject(e, ESIZE, "no loadable segment");
	RESET();
	free(e);
	free(g);
#undef RESET
}
END_TEST

START_TEST(hostile_notes_rejected)
{
	uint8_t *e = make_elf();
	uint8_t *g = make_elf();
	size_t n;
#define RESET() memcpy(e, g, ESIZE)

	/* No PVH note: a kernel built without CONFIG_PVH. */
	n = put_note(e, NOTE_OFF, "GNU", 3, 8, 0);
	memset(e + NOTE_OFF + n, 0, 64);
	set_ph(e, 2, 4, NOTE_OFF, 0, n, n);
	expect_reject(e, ESIZE, "no PVH entry note");
	/* No PT_NOTE segment at all. */
	RESET();
	set_ph(e, 2, 6, 0, 0, 0, 0);
	expect_reject(e, ESIZE, "no PVH entry note");
	/* A Xen note of another type is not the entry. */
	RESET();
	n = put_note(e, NOTE_OFF, "Xen", 17, 8, ENTRY);
	set_ph(e, 2, 4, NOTE_OFF, 0, n, n);
	expect_reject(e, ESIZE, "no PVH entry note");
	/* Name or desc sizes that run past the segment. */
	RESET();
	fx_w32(e + NOTE_OFF, 0xfffffff0u);
	expect_reject(e, ESIZE, "runs past its segment");
	RESET();
	fx_w32(e + NOTE_OFF + 4, 0xffffffffu);
	expect_reject(e, ESIZE, "runs past its segment");
	/* The PVH note cut short by its segment's size. */
	RESET();
	fx_w64(ph(e, 2) + 32, fx_r64(ph(e, 2) + 32) - 4);
	expect_reject(e, ESIZE, "runs past its segment");
	/* A note segment past the end of the file. */
	RESET();
	expect_reject(e, NOTE_OFF + 16, "past the end");
	/* Desc sizes other than 4 or 8; entries of 0 or above 4 GiB. */
	RESET();
	n = put_note(e, NOTE_OFF, "Xen", XEN_ELFNOTE_PHYS32_ENTRY, 2, ENTRY);
	set_ph(e, 2, 4, NOTE_OFF, 0, n, n);
	expect_reject(e, ESIZE, "4 or 8 expected");
	n = put_note(e, NOTE_OFF, "Xen", XEN_ELFNOTE_PHYS32_ENTRY, 8,
		     0x100000000ull);
	set_ph(e, 2, 4, NOTE_OFF, 0, n, n);
	expect_reject(e, ESIZE, "not a 32-bit physical address");
	n = put_note(e, NOTE_OFF, "Xen", XEN_ELFNOTE_PHYS32_ENTRY, 8, 0);
	set_ph(e, 2, 4, NOTE_OFF, 0, n, n);
	expect_reject(e, ESIZE, "not a 32-bit physical address");
	/* An entry that is not in a loaded segment (in the data's bss, or
	 * nowhere). */
	n = put_note(e, NOTE_OFF, "Xen", XEN_ELFNOTE_PHYS32_ENTRY, 8,
		     DATA_ADDR + 0x1000);
	set_ph(e, 2, 4, NOTE_OFF, 0, n, n);
	expect_reject(e, ESIZE, "not in a loaded segment");
	n = put_note(e, NOTE_OFF, "Xen", XEN_ELFNOTE_PHYS32_ENTRY, 4,
		     0x500000);
	set_ph(e, 2, 4, NOTE_OFF, 0, n, n);
	expect_reject(e, ESIZE, "not in a loaded segment");
	free(e);
	free(g);
#undef RESET
}
END_TEST

START_TEST(load_refuses_what_does_not_fit)
{
	/* 16 MiB of RAM: the segments at 16 and 18 MiB are outside it. */
	struct vm *vm = fx_vm_new(16ull << 20);
	uint8_t *e = make_elf();
	uint8_t *initrd = calloc(1, 32u << 20);

	ck_assert_int_eq(boot_pvh__load_mem(vm, e, ESIZE, NULL, 0, ""),
			 -ENOSPC);
	ck_assert_ptr_nonnull(strstr(vm__error(), "low RAM ends"));
	fx_vm_free(vm);
	/* Enough for the kernel, not for this initrd. */
	vm = fx_vm_new(32ull << 20);
	ck_assert_int_eq(boot_pvh__load_mem(vm, e, ESIZE, initrd, 20u << 20,
					    ""), -ENOSPC);
	ck_assert_ptr_nonnull(strstr(vm__error(), "initrd"));
	/* A command line longer than the monitor's buffer. */
	char *cmd = malloc(BOOT_CMDLINE_MAX + 10);
	memset(cmd, 'a', BOOT_CMDLINE_MAX + 9);
	cmd[BOOT_CMDLINE_MAX + 9] = 0;
	ck_assert_int_eq(boot_pvh__load_mem(vm, e, ESIZE, NULL, 0, cmd),
			 -E2BIG);
	free(cmd);
	free(initrd);
	free(e);
	fx_vm_free(vm);
}
END_TEST

/* Every prefix of a good file: refused with a message or (the full file
 * only) accepted; never a read past the end (ASan). */
START_TEST(every_truncation_is_refused)
{
	uint8_t *e = make_elf();
	struct pvh_kernel_info ki;

	for (size_t len = 0; len < ESIZE; len++) {
		uint8_t *c = malloc(len ? len : 1);
		memcpy(c, e, len);
		ck_assert_msg(boot_pvh__parse(c, len, &ki) < 0,
			      "a %zu-byte prefix was accepted", len);
		ck_assert_str_ne(vm__error(), "");
		free(c);
	}
	ck_assert_int_eq(boot_pvh__parse(e, ESIZE, &ki), 0);
	free(e);
}
END_TEST

/* Random byte corruption of the headers and notes (fixed seed): the
 * loader either refuses or loads inside guest RAM. */
START_TEST(corrupted_headers_never_crash)
{
	uint8_t *g = make_elf();
	uint8_t *e = malloc(ESIZE);
	struct vm *vm = fx_vm_new(64ull << 20);
	unsigned seed = 7;
	int loaded = 0;

	for (int round = 0; round < 3000; round++) {
		memcpy(e, g, ESIZE);
		int flips = 1 + rand_r(&seed) % 4;
		for (int f = 0; f < flips; f++) {
			/* The header, program headers and notes. */
			size_t at = (size_t)rand_r(&seed) % (NOTE_OFF + 0x40);
			e[at] = (uint8_t)rand_r(&seed);
		}
		int rc = boot_pvh__load_mem(vm, e, ESIZE, NULL, 0, "x");
		ck_assert_msg(rc == 0 || rc == -ENOEXEC || rc == -ENOSPC,
			      "round %d: rc %d (%s)", round, rc, vm__error());
		loaded += rc == 0;
	}
	/* Many flips land in fields that do not matter: some must load. */
	ck_assert_int_gt(loaded, 0);
	free(e);
	free(g);
	fx_vm_free(vm);
}
END_TEST

/* boot_linux__load() sends an ELF file to the PVH loader and names the
 * file in its messages. */
START_TEST(file_loader_detects_elf)
{
	struct vm *vm = fx_vm_new(64ull << 20);
	uint8_t *e = make_elf();
	char path[] = "/tmp/test_boot_pvh.XXXXXX";
	int fd = mkstemp(path);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, e, ESIZE), ESIZE);
	struct boot_linux_args a = { .kernel_path = path, .cmdline = "c" };
	ck_assert_msg(boot_linux__load(vm, &a) == 0, "%s", vm__error());
	ck_assert_int_eq(vm->entry_mode, VM_ENTRY_PVH32);
	ck_assert_uint_eq(vm->entry_rip, ENTRY);
	ck_assert_int_eq(ftruncate(fd, 100), 0);
	ck_assert_int_eq(boot_linux__load(vm, &a), -ENOEXEC);
	ck_assert_ptr_nonnull(strstr(vm__error(), path));
	ck_assert_ptr_nonnull(strstr(vm__error(), "run past the end"));
	close(fd);
	unlink(path);
	free(e);
	fx_vm_free(vm);
}
END_TEST

static Suite *pvh_suite(void)
{
	Suite *s = suite_create("boot_pvh");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, valid_elf_parses);
	tcase_add_test(tc, load_builds_start_info);
	tcase_add_test(tc, hostile_headers_rejected);
	tcase_add_test(tc, hostile_notes_rejected);
	tcase_add_test(tc, load_refuses_what_does_not_fit);
	tcase_add_test(tc, every_truncation_is_refused);
	tcase_add_test(tc, corrupted_headers_never_crash);
	tcase_add_test(tc, file_loader_detects_elf);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return fx_run_suite(pvh_suite());
}
