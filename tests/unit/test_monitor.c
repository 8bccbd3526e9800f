/*
 * test_monitor.c - the builtin monitor's pieces that run without KVM:
 * bzImage header validation and loading, the e820 map and RAM layout,
 * bus dispatch, the 16550 UART and i8042 driven in-process, CPUID
 * filtering, the MP table and CPU-list parsing.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "runtime/acpi.h"
#include "runtime/boot-linux.h"
#include "runtime/boot.h"
#include "runtime/legacy.h"
#include "runtime/monitor.h"
#include "runtime/mptable.h"
#include "runtime/serial.h"
#include "runtime/vm.h"
#include "fixture-vm.h"
#include "fixture-run.h"

/* ---- a crafted bzImage ----------------------------------------------- */

#define KSIZE 8192


/* A header that boot_linux__parse() accepts: 1 setup sector, protocol
 * 2.15, 64-bit, relocatable, 7 KiB of "kernel" filled with 0xC3. */
static uint8_t *make_kernel(void)
{
	uint8_t *k = calloc(1, KSIZE);

	k[SETUP_SECTS_OFF] = 1;
	fx_w16(k + BOOT_FLAG_OFF, 0xAA55);
	k[HDR_JUMP_OFF] = 0xEB;
	k[HDR_JUMP_OFF + 1] = 0x6a;
	memcpy(k + HDR_MAGIC_OFF, "HdrS", 4);
	fx_w16(k + HDR_VERSION_OFF, 0x020f);
	k[HDR_LOADFLAGS_OFF] = LOADED_HIGH;
	fx_w32(k + HDR_INITRD_MAX_OFF, 0x7fffffff);
	fx_w32(k + HDR_ALIGN_OFF, 0x200000);
	k[HDR_RELOC_OFF] = 1;
	fx_w16(k + HDR_XLOADFLAGS_OFF, XLF_KERNEL_64);
	fx_w32(k + HDR_CMDLINE_SZ_OFF, 2047);
	fx_w32(k + HDR_INIT_SIZE_OFF, 0x10000);
	memset(k + 1024, 0xC3, KSIZE - 1024);
	return k;
}

static void expect_reject(const uint8_t *k, size_t size, const char *needle)
{
	struct bzimage_info bi;
	int rc = boot_linux__parse(k, size, &bi);

	ck_assert_int_lt(rc, 0);
	ck_assert_msg(strstr(vm__error(), needle), "message '%s' lacks '%s'",
		      vm__error(), needle);
}

START_TEST(bzimage_valid_header_parses)
{
	uint8_t *k = make_kernel();
	struct bzimage_info bi;

	ck_assert_int_eq(boot_linux__parse(k, KSIZE, &bi), 0);
	ck_assert_uint_eq(bi.version, 0x020f);
	ck_assert_uint_eq(bi.setup_size, 1024);
	ck_assert_uint_eq(bi.payload_size, KSIZE - 1024);
	ck_assert_uint_eq(bi.init_size, 0x10000);
	ck_assert_uint_eq(bi.cmdline_size, 2047);
	/* setup_sects 0 means 4 (boot.rst). */
	k[SETUP_SECTS_OFF] = 0;
	ck_assert_int_eq(boot_linux__parse(k, KSIZE, &bi), 0);
	ck_assert_uint_eq(bi.setup_size, 5 * 512);
	free(k);
}
END_TEST

START_TEST(bzimage_hostile_headers_rejected)
{
	uint8_t *k = make_kernel();

	expect_reject(k, 0x100, "too short");
	expect_reject(k, HDR_INIT_SIZE_OFF + 3, "too short");

	memcpy(k + HDR_MAGIC_OFF, "HdrX", 4);
	expect_reject(k, KSIZE, "HdrS");
	memcpy(k + HDR_MAGIC_OFF, "HdrS", 4);

	fx_w16(k + BOOT_FLAG_OFF, 0x1234);
	expect_reject(k, KSIZE, "boot_flag");
	fx_w16(k + BOOT_FLAG_OFF, 0xAA55);

	fx_w16(k + HDR_VERSION_OFF, 0x020b);
	expect_reject(k, KSIZE, "too old");
	fx_w16(k + HDR_VERSION_OFF, 0x020f);

	k[SETUP_SECTS_OFF] = 200;         /* 100 KiB of setup in 8 KiB */
	expect_reject(k, KSIZE, "setup_sects");
	k[SETUP_SECTS_OFF] = 15;          /* payload 0 bytes: 16*512 = KSIZE */
	expect_reject(k, KSIZE, "setup_sects");
	k[SETUP_SECTS_OFF] = 1;

	k[HDR_JUMP_OFF + 1] = 0x10;       /* header shorter than 2.10's */
	expect_reject(k, KSIZE, "0x201");
	k[HDR_JUMP_OFF + 1] = 0x6a;

	k[HDR_LOADFLAGS_OFF] = 0;
	expect_reject(k, KSIZE, "LOADED_HIGH");
	k[HDR_LOADFLAGS_OFF] = LOADED_HIGH;

	fx_w16(k + HDR_XLOADFLAGS_OFF, 0);
	expect_reject(k, KSIZE, "XLF_KERNEL_64");
	fx_w16(k + HDR_XLOADFLAGS_OFF, XLF_KERNEL_64);

	k[HDR_RELOC_OFF] = 0;
	expect_reject(k, KSIZE, "relocatable");
	k[HDR_RELOC_OFF] = 1;

	fx_w32(k + HDR_ALIGN_OFF, 0x3000);
	expect_reject(k, KSIZE, "kernel_alignment");
	fx_w32(k + HDR_ALIGN_OFF, 0x200000);

	fx_w32(k + HDR_INIT_SIZE_OFF, 100);
	expect_reject(k, KSIZE, "init_size");
	fx_w32(k + HDR_INIT_SIZE_OFF, 0x10000);

	/* Restored: accepted again, so each rejection was for its field. */
	struct bzimage_info bi;
	ck_assert_int_eq(boot_linux__parse(k, KSIZE, &bi), 0);
	free(k);
}
END_TEST

START_TEST(load_fills_zero_page)
{
	struct vm *vm = fx_vm_new(64ull << 20);
	uint8_t *k = make_kernel();
	uint8_t initrd[10000];

	memset(initrd, 0x5a, sizeof(initrd));
	ck_assert_int_eq(boot_linux__load_mem(vm, k, KSIZE, initrd,
					      sizeof(initrd),
					      "console=ttyS0 quiet"), 0);
	ck_assert_uint_eq(vm->entry_rip, 0x100200);
	ck_assert_uint_eq(vm->entry_rsi, BOOT_ZERO_PAGE);
	uint8_t *zp = guest_mem__ptr(&vm->mem, BOOT_ZERO_PAGE, 4096);
	ck_assert_uint_eq(zp[HDR_LOADER_OFF], 0xff);
	ck_assert_uint_eq(fx_r32(zp + HDR_CMDLINE_OFF), BOOT_CMDLINE_ADDR);
	ck_assert_str_eq(guest_mem__ptr(&vm->mem, BOOT_CMDLINE_ADDR, 1),
			 "console=ttyS0 quiet");
	/* The kernel body at 1 MiB. */
	ck_assert_uint_eq(*(uint8_t *)guest_mem__ptr(&vm->mem, 0x100000, 1),
			  0xC3);
	/* initrd: page aligned, at the top of RAM, intact. */
	uint32_t at = fx_r32(zp + HDR_RAMDISK_OFF);
	ck_assert_uint_eq(at % 4096, 0);
	ck_assert_uint_eq(fx_r32(zp + HDR_RAMDISK_SZ_OFF), sizeof(initrd));
	ck_assert_uint_le(at + sizeof(initrd), 64u << 20);
	ck_assert_uint_gt(at + sizeof(initrd), (64u << 20) - 4096);
	ck_assert_mem_eq(guest_mem__ptr(&vm->mem, at, sizeof(initrd)), initrd,
			 sizeof(initrd));
	/* e820 in the zero page matches boot_linux__e820(). */
	struct e820_entry want[8];
	int n = boot_linux__e820(64ull << 20, want, 8);
	ck_assert_int_eq(zp[ZP_E820_ENTRIES], n);
	ck_assert_mem_eq(zp + ZP_E820_TABLE, want, n * sizeof(want[0]));
	free(k);
	fx_vm_free(vm);
}
END_TEST

START_TEST(load_refuses_what_does_not_fit)
{
	struct vm *vm = fx_vm_new(8ull << 20);
	uint8_t *k = make_kernel();
	size_t big = 16u << 20;
	uint8_t *initrd = calloc(1, big);
	char *cmd = malloc(4000);

	ck_assert_int_eq(boot_linux__load_mem(vm, k, KSIZE, initrd, big, ""),
			 -ENOSPC);
	ck_assert_ptr_nonnull(strstr(vm__error(), "initrd"));
	ck_assert_ptr_nonnull(strstr(vm__error(), "does not fit"));
	/* An initrd that fits only below a kernel that claims all RAM. */
	fx_w32(k + HDR_INIT_SIZE_OFF, 7u << 20);
	ck_assert_int_eq(boot_linux__load_mem(vm, k, KSIZE, initrd, 1u << 20,
					      ""), -ENOSPC);
	fx_w32(k + HDR_INIT_SIZE_OFF, 64u << 20);  /* larger than RAM */
	ck_assert_int_eq(boot_linux__load_mem(vm, k, KSIZE, NULL, 0, ""),
			 -ENOSPC);
	ck_assert_ptr_nonnull(strstr(vm__error(), "init_size"));
	fx_w32(k + HDR_INIT_SIZE_OFF, 0x10000);
	memset(cmd, 'a', 3999);
	cmd[3999] = 0;
	ck_assert_int_eq(boot_linux__load_mem(vm, k, KSIZE, NULL, 0, cmd),
			 -E2BIG);
	ck_assert_ptr_nonnull(strstr(vm__error(), "cmdline_size"));
	free(cmd);
	free(initrd);
	free(k);
	fx_vm_free(vm);
}
END_TEST

START_TEST(initrd_respects_initrd_addr_max)
{
	uint64_t at;

	/* 1 GiB of RAM, kernel says the initrd must end below 256 MiB. */
	ck_assert_int_eq(boot_linux__place_initrd(1ull << 30, 0x0fffffff,
						  0x200000, 5000, &at), 0);
	ck_assert_uint_le(at + 5000, 0x10000000);
	ck_assert_uint_eq(at % 4096, 0);
	/* Above the kernel, or refused. */
	ck_assert_int_eq(boot_linux__place_initrd(1ull << 30, 0x0fffffff,
						  0x0ff00000, 2u << 20, &at),
			 -ENOSPC);
	ck_assert_int_eq(boot_linux__place_initrd(1ull << 30, 0xffffffff,
						  0x200000, 0, &at), -ENOSPC);
}
END_TEST

/* ---- layout ---------------------------------------------------------- */

START_TEST(ram_layout_avoids_the_hole)
{
	struct guest_mem_region r[2];

	ck_assert_int_eq(vm__ram_layout(512ull << 20, r), 1);
	ck_assert_uint_eq(r[0].size, 512ull << 20);
	ck_assert_int_eq(vm__ram_layout(3ull << 30, r), 1);
	ck_assert_int_eq(vm__ram_layout(6ull << 30, r), 2);
	ck_assert_uint_eq(r[0].gpa, 0);
	ck_assert_uint_eq(r[0].size, 3ull << 30);
	ck_assert_uint_eq(r[1].gpa, 4ull << 30);
	ck_assert_uint_eq(r[1].size, 3ull << 30);
}
END_TEST

START_TEST(e820_map_layout)
{
	struct e820_entry e[8];
	int n = boot_linux__e820(64ull << 20, e, 8);

	ck_assert_int_eq(n, 3);
	ck_assert_uint_eq(e[0].addr, 0);
	ck_assert_uint_eq(e[0].size, BOOT_EBDA_START);
	ck_assert_uint_eq(e[0].type, E820_RAM);
	ck_assert_uint_eq(e[1].addr, BOOT_EBDA_START);
	ck_assert_uint_eq(e[1].addr + e[1].size, 0xA0000);
	ck_assert_uint_eq(e[1].type, E820_RESERVED);
	ck_assert_uint_eq(e[2].addr, 0x100000);
	ck_assert_uint_eq(e[2].addr + e[2].size, 64ull << 20);

	n = boot_linux__e820(5ull << 30, e, 8);
	ck_assert_int_eq(n, 4);
	ck_assert_uint_eq(e[2].addr + e[2].size, VM_MMIO_HOLE_START);
	ck_assert_uint_eq(e[3].addr, VM_MMIO_HOLE_END);
	ck_assert_uint_eq(e[3].size, 2ull << 30);
	ck_assert_uint_eq(e[3].type, E820_RAM);
	/* No entry overlaps the MMIO hole. */
	for (int i = 0; i < n; i++)
		ck_assert(e[i].addr + e[i].size <= VM_MMIO_HOLE_START ||
			  e[i].addr >= VM_MMIO_HOLE_END);
}
END_TEST

/* ---- bus ------------------------------------------------------------- */

struct probe {
	uint64_t off;
	uint32_t len;
	bool wr;
	int calls;
	uint8_t last;
};

static void probe_io(void *o, uint64_t off, uint8_t *d, uint32_t len, bool wr)
{
	struct probe *p = o;
	p->off = off;
	p->len = len;
	p->wr = wr;
	p->calls++;
	if (wr)
		p->last = d[0];
	else
		memset(d, 0x42, len);
}

START_TEST(bus_dispatch_and_overlap)
{
	struct bus b;
	struct probe p1 = { 0 }, p2 = { 0 };
	uint8_t d[4];

	bus__init(&b, "pio");
	ck_assert_int_eq(bus__register(&b, 0x3f8, 8, probe_io, &p1, "a"), 0);
	ck_assert_int_eq(bus__register(&b, 0x60, 1, probe_io, &p2, "b"), 0);
	ck_assert_int_eq(bus__register(&b, 0x3fc, 8, probe_io, &p2, "c"),
			 -EBUSY);
	ck_assert_ptr_nonnull(strstr(vm__error(), "overlaps a"));
	ck_assert_int_eq(bus__register(&b, 0x3f0, 9, probe_io, &p2, "c"),
			 -EBUSY);
	ck_assert_int_eq(bus__register(&b, 0, 0, probe_io, &p2, "c"), -EINVAL);

	ck_assert(bus__access(&b, 0x3fd, d, 1, false));
	ck_assert_uint_eq(p1.off, 5);
	ck_assert_uint_eq(d[0], 0x42);
	d[0] = 7;
	ck_assert(bus__access(&b, 0x60, d, 1, true));
	ck_assert_uint_eq(p2.last, 7);
	ck_assert(p2.wr);

	/* Unclaimed: all ones, nobody called, counted. */
	memset(d, 0, sizeof(d));
	ck_assert(!bus__access(&b, 0x3f7, d, 4, false));
	ck_assert_uint_eq(fx_r32(d), 0xffffffff);
	ck_assert(!bus__access(&b, 0x400, d, 1, true));
	ck_assert_uint_eq(b.unclaimed, 2);
	ck_assert_int_eq(p1.calls, 1);

	ck_assert_int_eq(bus__unregister(&b, 0x3f8), 0);
	ck_assert(!bus__access(&b, 0x3f8, d, 1, false));
	ck_assert_int_eq(bus__unregister(&b, 0x3f8), -ENOENT);
	bus__destroy(&b);
}
END_TEST

/* ---- serial ---------------------------------------------------------- */

static int irq_level = -1, irq_changes;

static void rec_irq(void *o, int level)
{
	(void)o;
	irq_level = level;
	irq_changes++;
}

static uint8_t uart_in(struct serial *s, unsigned reg)
{
	uint8_t v;
	serial__io(s, reg, &v, 1, false);
	return v;
}

static void uart_out(struct serial *s, unsigned reg, uint8_t v)
{
	serial__io(s, reg, &v, 1, true);
}

START_TEST(serial_registers)
{
	int fds[2];
	ck_assert_int_eq(pipe(fds), 0);
	irq_level = -1;
	struct serial *s = serial__new(fds[1], rec_irq, NULL);
	char buf[8];

	/* Transmit goes to the fd; THR is always empty. */
	uart_out(s, 0, 'h');
	uart_out(s, 0, 'i');
	ck_assert_int_eq(read(fds[0], buf, 2), 2);
	ck_assert_mem_eq(buf, "hi", 2);
	ck_assert_uint_eq(uart_in(s, 5) & 0x60, 0x60);
	ck_assert_uint_eq(serial__tx_bytes(s), 2);

	/* Scratch and divisor latch read back; DLAB hides THR/IER. */
	uart_out(s, 7, 0x5a);
	ck_assert_uint_eq(uart_in(s, 7), 0x5a);
	uart_out(s, 3, 0x80);
	uart_out(s, 0, 0x01);
	uart_out(s, 1, 0x00);
	ck_assert_uint_eq(uart_in(s, 0), 0x01);
	uart_out(s, 3, 0x03);
	ck_assert_uint_eq(uart_in(s, 3), 0x03);
	ck_assert_uint_eq(serial__tx_bytes(s), 2);  /* DLAB: nothing sent */

	/* THRI: enabling it raises the line, reading IIR acknowledges. */
	ck_assert_uint_eq(uart_in(s, 2) & 0x0f, 0x01);
	uart_out(s, 1, 0x02);
	ck_assert_int_eq(irq_level, 1);
	ck_assert_uint_eq(uart_in(s, 2) & 0x0f, 0x02);
	ck_assert_int_eq(irq_level, 0);
	ck_assert_uint_eq(uart_in(s, 2) & 0x0f, 0x01);
	/* A transmitted byte raises it again. */
	uart_out(s, 0, '!');
	ck_assert_int_eq(irq_level, 1);
	ck_assert_uint_eq(uart_in(s, 2) & 0x0f, 0x02);

	/* Received data: DR, RDI interrupt (higher priority), RBR. */
	uart_out(s, 1, 0x03);
	ck_assert_uint_eq(serial__input(s, (const uint8_t *)"ab", 2), 2);
	ck_assert_uint_eq(uart_in(s, 5) & 1, 1);
	ck_assert_uint_eq(uart_in(s, 2) & 0x0f, 0x04);
	ck_assert_int_eq(irq_level, 1);
	ck_assert_uint_eq(uart_in(s, 0), 'a');
	ck_assert_uint_eq(uart_in(s, 0), 'b');
	ck_assert_uint_eq(uart_in(s, 5) & 1, 0);

	/* The FIFO holds 64 bytes, the rest is refused. */
	uint8_t many[100];
	memset(many, 'x', sizeof(many));
	ck_assert_uint_eq(serial__input(s, many, sizeof(many)), SERIAL_FIFO);
	ck_assert_uint_eq(serial__rx_room(s), 0);
	uart_out(s, 2, 0x07);    /* FIFO enable + clear */
	ck_assert_uint_eq(serial__rx_room(s), SERIAL_FIFO);
	ck_assert_uint_eq(uart_in(s, 2) & 0xc0, 0xc0);

	/* Loopback: bytes come back, MSR mirrors MCR. */
	uart_out(s, 4, 0x10 | 0x0a);  /* LOOP, RTS, OUT2 */
	ck_assert_uint_eq(uart_in(s, 6) & 0xf0, 0x90);
	uart_out(s, 0, 'L');
	ck_assert_uint_eq(uart_in(s, 0), 'L');
	uart_out(s, 4, 0x0b);
	ck_assert_uint_eq(uart_in(s, 6) & 0xb0, 0xb0);

	/* Wide and out-of-range accesses do not crash. */
	uint8_t w[4];
	serial__io(s, 6, w, 4, false);
	ck_assert_uint_eq(w[2], 0xff);
	serial__free(s);
	close(fds[0]);
	close(fds[1]);
}
END_TEST

/* ---- i8042 ----------------------------------------------------------- */

static void *send_x(void *arg)
{
	uart_out(arg, 0, 'x');
	return NULL;
}

/* A console nobody drains holds the vCPU writing to it, but only until
 * the VM stops: the kick that stops vCPUs cannot end a blocking write
 * (it is retried), so the UART must not block in one. */
START_TEST(stalled_console_gives_way_when_the_vm_stops)
{
	struct vm *vm = fx_vm_new(16u << 20);
	int fds[2];
	char filler[4096];
	pthread_t t;
	struct timespec until;

	ck_assert_int_eq(pipe(fds), 0);
	memset(filler, 'f', sizeof(filler));
	int fl = fcntl(fds[1], F_GETFL);
	ck_assert_int_eq(fcntl(fds[1], F_SETFL, fl | O_NONBLOCK), 0);
	while (write(fds[1], filler, sizeof(filler)) > 0)
		;
	ck_assert_int_eq(fcntl(fds[1], F_SETFL, fl), 0);   /* blocking */

	struct serial *s = serial__new(fds[1], rec_irq, NULL);
	serial__bind_vm(s, vm);
	ck_assert_int_eq(pthread_create(&t, NULL, send_x, s), 0);
	usleep(200 * 1000);
	ck_assert_int_eq(pthread_tryjoin_np(t, NULL), EBUSY);  /* held */
	vm__stop(vm, VM_STOP_POWEROFF, "test");
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 10;    /* a bound that turns a hang into a failure */
	ck_assert_int_eq(pthread_timedjoin_np(t, NULL, &until), 0);

	/* The byte was dropped, not written late. */
	int rfl = fcntl(fds[0], F_GETFL);
	ck_assert_int_eq(fcntl(fds[0], F_SETFL, rfl | O_NONBLOCK), 0);
	ssize_t r;
	while ((r = read(fds[0], filler, sizeof(filler))) > 0)
		ck_assert_ptr_null(memchr(filler, 'x', (size_t)r));
	serial__free(s);
	close(fds[0]);
	close(fds[1]);
	fx_vm_free(vm);
}
END_TEST

START_TEST(i8042_probe_and_reset)
{
	struct vm *vm = fx_vm_new(4ull << 20);
	void *k = i8042__new(vm);
	uint8_t v;

	i8042__io(k, 0x64, &v, 1, false);
	ck_assert_uint_eq(v & 1, 0);      /* nothing to read */
	v = 0xAA;
	i8042__io(k, 0x64, &v, 1, true);  /* self-test */
	i8042__io(k, 0x64, &v, 1, false);
	ck_assert_uint_eq(v & 1, 1);
	i8042__io(k, 0x60, &v, 1, false);
	ck_assert_uint_eq(v, 0x55);
	v = 0x60;
	i8042__io(k, 0x64, &v, 1, true);  /* write config byte */
	v = 0x47;
	i8042__io(k, 0x60, &v, 1, true);
	v = 0x20;
	i8042__io(k, 0x64, &v, 1, true);  /* read it back */
	i8042__io(k, 0x60, &v, 1, false);
	ck_assert_uint_eq(v, 0x47);
	ck_assert_int_eq(vm__stopped(vm), VM_RUNNING);
	v = 0xFE;
	i8042__io(k, 0x64, &v, 1, true);
	ck_assert_int_eq(vm__stopped(vm), VM_STOP_POWEROFF);
	ck_assert_ptr_nonnull(strstr(vm->stop_msg, "reset"));
	free(k);
	fx_vm_free(vm);
}
END_TEST

/* ---- CPUID ----------------------------------------------------------- */

START_TEST(cpuid_filter)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + 5 * sizeof(c->entries[0]));

	c->nent = 5;
	c->entries[0] = (struct kvm_cpuid_entry2){ .function = 1,
		.ebx = 0xff00abcd, .ecx = 1u << 5, .edx = 0 };
	c->entries[1] = (struct kvm_cpuid_entry2){ .function = 0xb, .index = 0 };
	c->entries[2] = (struct kvm_cpuid_entry2){ .function = 0xb, .index = 1 };
	c->entries[3] = (struct kvm_cpuid_entry2){ .function = 0xa,
		.eax = 0x07300402 };
	c->entries[4] = (struct kvm_cpuid_entry2){ .function = 0,
		.eax = 0xd, .ebx = 0x756e6547 };
	cpu__filter_cpuid(c, 2, 4);

	struct kvm_cpuid_entry2 *l1 = &c->entries[0];
	ck_assert_uint_eq(l1->ebx >> 24, 2);              /* APIC id */
	ck_assert_uint_eq((l1->ebx >> 16) & 0xff, 4);     /* logical CPUs */
	ck_assert_uint_eq(l1->ebx & 0xffff, 0xabcd);      /* rest kept */
	ck_assert(l1->ecx & (1u << 31));                  /* hypervisor */
	ck_assert(!(l1->ecx & (1u << 5)));                /* no VMX */
	ck_assert(l1->edx & (1u << 28));                  /* HTT */
	ck_assert_uint_eq(c->entries[1].edx, 2);          /* x2APIC id */
	ck_assert_uint_eq(c->entries[1].ebx, 1);
	ck_assert_uint_eq(c->entries[2].ebx, 4);
	ck_assert_uint_eq(c->entries[2].eax, 2);          /* shift */
	ck_assert_uint_eq((c->entries[2].ecx >> 8) & 0xff, 2);  /* core */
	ck_assert_uint_eq(c->entries[3].eax, 0);          /* no PMU */
	ck_assert_uint_eq(c->entries[4].ebx, 0x756e6547); /* untouched */

	cpu__filter_cpuid(c, 0, 1);
	ck_assert(!(c->entries[0].edx & (1u << 28)));
	ck_assert_uint_eq(c->entries[0].ebx >> 24, 0);
	free(c);
}
END_TEST

START_TEST(cpuid_hide_unemulated)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + 4 * sizeof(c->entries[0]));

	c->nent = 4;
	c->entries[0] = (struct kvm_cpuid_entry2){ .function = 1,
		.ecx = 0xffffffff, .edx = 0xffffffff };
	c->entries[1] = (struct kvm_cpuid_entry2){ .function = 7, .index = 0,
		.ebx = 0xffffffff };
	c->entries[2] = (struct kvm_cpuid_entry2){ .function = 0xd,
		.eax = 7, .ebx = 0x240, .ecx = 0x340 };
	c->entries[3] = (struct kvm_cpuid_entry2){ .function = 7, .index = 1,
		.eax = 0xffffffff };
	cpu__hide_unemulated(c);
	uint32_t ecx = c->entries[0].ecx;
	ck_assert(!(ecx & (1u << 13)));     /* CX16 */
	ck_assert(!(ecx & (1u << 26)));     /* XSAVE */
	ck_assert(!(ecx & (1u << 28)));     /* AVX */
	ck_assert(ecx & (1u << 20));        /* SSE4.2 stays */
	ck_assert(ecx & (1u << 25));        /* AES-NI stays */
	ck_assert_uint_eq(c->entries[0].edx, 0xffffffff);
	uint32_t ebx = c->entries[1].ebx;
	ck_assert(!(ebx & (1u << 5)));      /* AVX2 */
	ck_assert(!(ebx & (1u << 16)));     /* AVX512F */
	ck_assert(ebx & (1u << 29));        /* SHA stays */
	ck_assert(ebx & (1u << 3));         /* BMI1 stays */
	ck_assert_uint_eq(c->entries[2].eax | c->entries[2].ebx |
			  c->entries[2].ecx, 0);
	ck_assert(!(c->entries[3].eax & (1u << 4)));
	free(c);
}
END_TEST

/* ---- MP table -------------------------------------------------------- */

static uint8_t sum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;
	for (size_t i = 0; i < n; i++)
		s = (uint8_t)(s + p[i]);
	return s;
}

/* ---- vCPU 0's entry state (cpu__boot_regs) ---------------------------- */

/* The boot GDT's descriptor for `sel`, as cpu__setup_boot_tables() wrote
 * it, decoded into KVM's segment form: the cached segment KVM is given
 * must be what a reload of the selector from that GDT would give. */
static struct kvm_segment gdt_seg(struct vm *vm, uint16_t sel)
{
	uint64_t d;
	struct kvm_segment s = { .selector = sel };

	memcpy(&d, guest_mem__ptr(&vm->mem, BOOT_GDT_ADDR + (sel & ~7u), 8), 8);
	s.base = (d >> 16 & 0xffffff) | (d >> 56 & 0xff) << 24;
	s.limit = (uint32_t)((d & 0xffff) | (d >> 48 & 0xf) << 16);
	s.type = d >> 40 & 0xf;
	s.s = d >> 44 & 1;
	s.dpl = d >> 45 & 3;
	s.present = d >> 47 & 1;
	s.l = d >> 53 & 1;
	s.db = d >> 54 & 1;
	s.g = d >> 55 & 1;
	if (s.g)
		s.limit = s.limit << 12 | 0xfff;
	return s;
}

static void assert_seg_is_gdt(struct vm *vm, const struct kvm_segment *s)
{
	struct kvm_segment g = gdt_seg(vm, s->selector);

	ck_assert_msg(s->selector < 5 * 8, "selector 0x%x past the GDT",
		      s->selector);
	ck_assert_uint_eq(s->base, g.base);
	ck_assert_uint_eq(s->limit, g.limit);
	ck_assert_uint_eq(s->type, g.type);
	ck_assert_uint_eq(s->s, g.s);
	ck_assert_uint_eq(s->dpl, g.dpl);
	ck_assert_uint_eq(s->present, g.present);
	ck_assert_uint_eq(s->l, g.l);
	ck_assert_uint_eq(s->db, g.db);
	ck_assert_uint_eq(s->g, g.g);
}

/* A 4 GiB flat, present, ring-0 code (exec/read) or data (read/write)
 * segment. */
static void assert_flat(const struct kvm_segment *s, int code)
{
	ck_assert_uint_eq(s->base, 0);
	ck_assert_uint_eq(s->limit, 0xffffffffu);
	ck_assert_uint_eq(s->present, 1);
	ck_assert_uint_eq(s->s, 1);
	ck_assert_uint_eq(s->dpl, 0);
	if (code)
		ck_assert_uint_eq(s->type & 0xa, 0xa);  /* code, readable */
	else
		ck_assert_uint_eq(s->type & 0xa, 0x2);  /* data, writable */
}

/* A VM with its boot tables and the given entry, and cpu__boot_regs()'s
 * answer, starting from sregs as KVM might hand them over: noise
 * everywhere, and an APIC base the boot state must leave alone. */
static struct vm *boot_regs(int mode, uint64_t rip, uint64_t rsi,
			    uint64_t rbx, struct kvm_sregs *sr,
			    struct kvm_regs *r)
{
	struct vm *vm = fx_vm_new(64ull << 20);

	ck_assert_int_eq(cpu__setup_boot_tables(vm), 0);
	vm->entry_mode = mode;
	vm->entry_rip = rip;
	vm->entry_rsi = rsi;
	vm->entry_rbx = rbx;
	memset(sr, 0xa5, sizeof(*sr));
	sr->apic_base = 0xfee00900;
	memset(r, 0xa5, sizeof(*r));
	cpu__boot_regs(vm, sr, r);
	return vm;
}

#define CR0_PE (1ull << 0)
#define CR0_ET (1ull << 4)
#define CR0_PG (1ull << 31)
#define CR4_PAE (1ull << 5)
#define EFER_LME (1ull << 8)
#define EFER_LMA (1ull << 10)
#define RFLAGS_TF (1ull << 8)
#define RFLAGS_IF (1ull << 9)
#define RFLAGS_VM (1ull << 17)

/* Documentation/x86/boot.rst, 64-bit boot protocol: 64-bit mode with
 * paging on; a GDT with __BOOT_CS (0x10) and __BOOT_DS (0x18), both 4G
 * flat, CS execute/read and DS read/write; CS = __BOOT_CS, DS/ES/SS =
 * __BOOT_DS; interrupts off; %rsi = boot_params. */
START_TEST(boot_regs_long64)
{
	struct kvm_sregs sr;
	struct kvm_regs r;
	struct vm *vm = boot_regs(VM_ENTRY_LONG64, 0x100200, BOOT_ZERO_PAGE,
				  0x1234, &sr, &r);

	ck_assert_uint_eq(sr.cs.selector, 0x10);
	assert_flat(&sr.cs, 1);
	ck_assert_uint_eq(sr.cs.l, 1);          /* 64-bit code: L=1, D=0 */
	ck_assert_uint_eq(sr.cs.db, 0);
	const struct kvm_segment *data[] = { &sr.ds, &sr.es, &sr.ss };
	for (int i = 0; i < 3; i++) {
		ck_assert_uint_eq(data[i]->selector, 0x18);
		assert_flat(data[i], 0);
		assert_seg_is_gdt(vm, data[i]);
	}
	assert_seg_is_gdt(vm, &sr.cs);
	ck_assert_uint_eq(sr.gdt.base, BOOT_GDT_ADDR);
	ck_assert_uint_ge(sr.gdt.limit, 0x18 + 7);
	/* Paging on in long mode, over the identity map. */
	ck_assert(sr.cr0 & CR0_PE);
	ck_assert(sr.cr0 & CR0_PG);
	ck_assert(sr.cr4 & CR4_PAE);
	ck_assert_uint_eq(sr.efer & (EFER_LME | EFER_LMA), EFER_LME | EFER_LMA);
	ck_assert_uint_eq(sr.cr3, BOOT_PML4_ADDR);
	/* KVM needs a usable TR: a busy TSS in the GDT. */
	ck_assert_uint_eq(sr.tr.type, 0xb);
	ck_assert_uint_eq(sr.tr.present, 1);
	ck_assert_uint_eq(sr.tr.selector, 0x20);
	ck_assert_uint_eq(gdt_seg(vm, 0x20).type, 0xb);
	ck_assert_uint_eq(sr.apic_base, 0xfee00900);
	ck_assert_uint_eq(r.rip, 0x100200);
	ck_assert_uint_eq(r.rsi, BOOT_ZERO_PAGE);
	ck_assert_uint_eq(r.rflags & RFLAGS_IF, 0);
	ck_assert_uint_eq(r.rflags, 2);         /* bit 1 is always set */
	ck_assert_uint_eq(r.rsp, BOOT_STACK_TOP);
	ck_assert_uint_eq(r.rax | r.rcx | r.rdx | r.rbx | r.rdi, 0);
	fx_vm_free(vm);
}
END_TEST

/* Xen's PVH boot ABI (docs/misc/pvh.pandoc; Linux's
 * arch/x86/platform/pvh/head.S): %ebx = hvm_start_info; CR0.PE set and
 * every other writable bit clear (ET is fixed to 1); CR4 all clear; CS
 * a 32-bit execute/read segment, DS/ES 32-bit read/write, base 0, limit
 * 0xffffffff; TR a 32-bit active TSS, base 0, limit 0x67; EFLAGS.VM, IF
 * and TF clear. */
START_TEST(boot_regs_pvh32)
{
	struct kvm_sregs sr;
	struct kvm_regs r;
	struct vm *vm = boot_regs(VM_ENTRY_PVH32, 0x1000040, 0, 0x7000, &sr,
				  &r);

	assert_flat(&sr.cs, 1);
	ck_assert_uint_eq(sr.cs.l, 0);          /* 32-bit code: L=0, D=1 */
	ck_assert_uint_eq(sr.cs.db, 1);
	assert_seg_is_gdt(vm, &sr.cs);
	const struct kvm_segment *data[] = { &sr.ds, &sr.es, &sr.ss };
	for (int i = 0; i < 3; i++) {
		assert_flat(data[i], 0);
		ck_assert_uint_eq(data[i]->db, 1);
		assert_seg_is_gdt(vm, data[i]);
	}
	ck_assert_uint_eq(sr.cr0 & ~CR0_ET, CR0_PE);
	ck_assert_uint_eq(sr.cr4, 0);
	ck_assert_uint_eq(sr.efer & EFER_LMA, 0);
	ck_assert_uint_eq(sr.tr.base, 0);
	ck_assert_uint_eq(sr.tr.limit, 0x67);
	ck_assert_uint_eq(sr.tr.type, 0xb);     /* 32-bit TSS, busy */
	ck_assert_uint_eq(sr.tr.present, 1);
	ck_assert_uint_eq(sr.apic_base, 0xfee00900);
	ck_assert_uint_eq(r.rbx, 0x7000);
	ck_assert_uint_eq(r.rip, 0x1000040);
	ck_assert_uint_eq(r.rflags & (RFLAGS_VM | RFLAGS_IF | RFLAGS_TF), 0);
	ck_assert_uint_eq(r.rflags, 2);
	ck_assert_uint_eq(r.rsi | r.rsp | r.rax | r.rdi, 0);
	fx_vm_free(vm);
}
END_TEST

START_TEST(mptable_layout)
{
	uint8_t buf[4096];
	struct mptable_config mc = { .nr_cpus = 2, .nr_pci = 1,
		.pci = { { .slot = 1, .line = 16 } } };

	ck_assert_int_eq(mptable__build(&mc, buf, sizeof(buf), 0x9f000),
			 (int)sizeof(buf));
	const uint8_t *fp = buf + sizeof(buf) - 16;
	ck_assert_mem_eq(fp, "_MP_", 4);
	ck_assert_uint_eq(sum(fp, 16), 0);
	ck_assert_uint_eq(fx_r32(fp + 4), 0x9f000);         /* table pointer */
	const uint8_t *t = buf;
	ck_assert_mem_eq(t, "PCMP", 4);
	uint16_t len = (uint16_t)(t[4] | t[5] << 8);
	ck_assert_uint_eq(sum(t, len), 0);
	uint16_t count = (uint16_t)(t[34] | t[35] << 8);
	/* 2 CPUs, 2 buses, 1 IOAPIC, 16 ISA + 1 PCI interrupts, 2 local. */
	ck_assert_uint_eq(count, 2 + 2 + 1 + 16 + 1 + 2);
	ck_assert_uint_eq(fx_r32(t + 36), 0xfee00000);
	/* First entry: CPU 0, enabled BSP; second CPU 1, not BSP. */
	ck_assert_uint_eq(t[44], 0);
	ck_assert_uint_eq(t[46 + 0], 0x14);
	ck_assert_uint_eq(t[47], 3);
	ck_assert_uint_eq(t[64 + 1], 1);
	ck_assert_uint_eq(t[64 + 3], 1);
	/* The PCI routing entry: bus 0, slot 1 pin A -> IOAPIC pin 16, level. */
	size_t pci_ent = 44 + 2 * 20 + 2 * 8 + 8 + 16 * 8;
	ck_assert_uint_eq(t[pci_ent], 3);
	ck_assert_uint_eq(t[pci_ent + 2], 0x0d);
	ck_assert_uint_eq(t[pci_ent + 4], 0);
	ck_assert_uint_eq(t[pci_ent + 5], 1 << 2);
	ck_assert_uint_eq(t[pci_ent + 6], 2);             /* IOAPIC id */
	ck_assert_uint_eq(t[pci_ent + 7], 16);
	ck_assert_uint_eq(len, pci_ent + 8 + 16);

	/* 64 CPUs fit the 4 KiB area; too small a buffer is refused. */
	mc.nr_cpus = 64;
	ck_assert_int_gt(mptable__build(&mc, buf, sizeof(buf), 0x9f000), 0);
	ck_assert_int_eq(mptable__build(&mc, buf, 1024, 0x9fc00), -ENOSPC);
	mc.nr_cpus = 0;
	ck_assert_int_eq(mptable__build(&mc, buf, sizeof(buf), 0x9f000),
			 -EINVAL);
}
END_TEST


START_TEST(acpi_tables)
{
	static uint8_t buf[ACPI_TABLES_SIZE];
	const uint64_t base = ACPI_TABLES_ADDR;
	struct mptable_config mc = { .nr_cpus = 3, .nr_pci = 2,
		.pci = { { .slot = 1, .line = 16 }, { .slot = 2, .line = 17 } } };

	int64_t rsdp_at = acpi__build(&mc, buf, sizeof(buf), base);
	ck_assert_int_ge(rsdp_at, (int64_t)base);
	const uint8_t *rsdp = buf + (rsdp_at - base);
	ck_assert_mem_eq(rsdp, "RSD PTR ", 8);
	ck_assert_uint_eq(sum(rsdp, 20), 0);
	ck_assert_uint_eq(sum(rsdp, 36), 0);
	ck_assert_uint_eq(rsdp[15], 2);
	const uint8_t *xsdt = buf + (fx_r64(rsdp + 24) - base);
	ck_assert_mem_eq(xsdt, "XSDT", 4);
	ck_assert_uint_eq(sum(xsdt, fx_r32(xsdt + 4)), 0);
	ck_assert_uint_eq(fx_r32(xsdt + 4), 36 + 16);
	const uint8_t *fadt = buf + (fx_r64(xsdt + 36) - base);
	const uint8_t *madt = buf + (fx_r64(xsdt + 44) - base);
	ck_assert_mem_eq(fadt, "FACP", 4);
	ck_assert_uint_eq(sum(fadt, fx_r32(fadt + 4)), 0);
	ck_assert(fx_r32(fadt + 112) & (1u << 20));          /* HW_REDUCED */
	ck_assert_uint_eq(fadt[128], 0xfe);               /* reset value */
	ck_assert_uint_eq(fx_r64(fadt + 116 + 4), 0x64);     /* reset port */
	ck_assert_uint_eq(fx_r64(fadt + 244 + 4), ACPI_SLEEP_CTL_PORT);
	const uint8_t *dsdt = buf + (fx_r64(fadt + 140) - base);
	ck_assert_uint_eq(fx_r32(fadt + 40), fx_r64(fadt + 140));
	ck_assert_mem_eq(dsdt, "DSDT", 4);
	uint32_t dlen = fx_r32(dsdt + 4);
	ck_assert_uint_eq(sum(dsdt, dlen), 0);
	/* The DSDT names the PCI host bridge, its routing and \_S5. */
	ck_assert_ptr_nonnull(memmem(dsdt, dlen, "PCI0", 4));
	ck_assert_ptr_nonnull(memmem(dsdt, dlen, "\x0c\x41\xd0\x0a\x03", 5));
	ck_assert_ptr_nonnull(memmem(dsdt, dlen, "_PRT", 4));
	ck_assert_ptr_nonnull(memmem(dsdt, dlen, "_S5_", 4));
	/* Slot 2's entry: Package(4){0x0002FFFF, 0, 0, 17}. */
	ck_assert_ptr_nonnull(memmem(dsdt, dlen,
		"\x12\x0b\x04\x0c\xff\xff\x02\x00\x00\x00\x0a\x11", 12));
	/* MADT: 3 local APICs, then the IOAPIC after them. */
	ck_assert_mem_eq(madt, "APIC", 4);
	ck_assert_uint_eq(sum(madt, fx_r32(madt + 4)), 0);
	ck_assert_uint_eq(fx_r32(madt + 36), 0xfee00000);
	for (int i = 0; i < 3; i++) {
		ck_assert_uint_eq(madt[44 + 8 * i], 0);
		ck_assert_uint_eq(madt[44 + 8 * i + 3], i);
	}
	const uint8_t *io = madt + 44 + 24;
	ck_assert_uint_eq(io[0], 1);
	ck_assert_uint_eq(io[2], 3);
	ck_assert_uint_eq(fx_r32(io + 4), 0xfec00000);
	ck_assert_uint_eq(fx_r32(madt + 4), 44 + 24 + 12 + 6);

	ck_assert_int_eq(acpi__build(&mc, buf, 200, base), -ENOSPC);
	mc.nr_cpus = 0;
	ck_assert_int_eq(acpi__build(&mc, buf, sizeof(buf), base), -EINVAL);
}
END_TEST

START_TEST(acpi_sleep_register_powers_off)
{
	struct vm *vm = fx_vm_new(4ull << 20);
	uint8_t v;

	ck_assert_int_eq(acpi__attach_pm(vm), 0);
	v = 0x20 | (3 << 2);            /* S3: not supported, ignored */
	bus__access(&vm->pio, ACPI_SLEEP_CTL_PORT, &v, 1, true);
	ck_assert_int_eq(vm__stopped(vm), VM_RUNNING);
	v = 5 << 2;                     /* SLP_TYP without SLP_EN */
	bus__access(&vm->pio, ACPI_SLEEP_CTL_PORT, &v, 1, true);
	ck_assert_int_eq(vm__stopped(vm), VM_RUNNING);
	v = 0x20 | (5 << 2);
	bus__access(&vm->pio, ACPI_SLEEP_CTL_PORT, &v, 1, true);
	ck_assert_int_eq(vm__stopped(vm), VM_STOP_POWEROFF);
	fx_vm_free(vm);
}
END_TEST

START_TEST(cpu_list_parsing)
{
	int cpus[8];

	ck_assert_int_eq(monitor__parse_cpu_list("0-2,5", cpus, 8), 4);
	ck_assert_int_eq(cpus[0], 0);
	ck_assert_int_eq(cpus[2], 2);
	ck_assert_int_eq(cpus[3], 5);
	ck_assert_int_eq(monitor__parse_cpu_list("3", cpus, 8), 1);
	ck_assert_int_eq(monitor__parse_cpu_list("", cpus, 8), -EINVAL);
	ck_assert_int_eq(monitor__parse_cpu_list("2-1", cpus, 8), -EINVAL);
	ck_assert_int_eq(monitor__parse_cpu_list("1,x", cpus, 8), -EINVAL);
	ck_assert_int_eq(monitor__parse_cpu_list("0-100", cpus, 8), -EINVAL);
	ck_assert_int_eq(monitor__parse_cpu_list("-1", cpus, 8), -EINVAL);
}
END_TEST

static Suite *monitor_suite(void)
{
	Suite *s = suite_create("monitor");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, bzimage_valid_header_parses);
	tcase_add_test(tc, bzimage_hostile_headers_rejected);
	tcase_add_test(tc, load_fills_zero_page);
	tcase_add_test(tc, load_refuses_what_does_not_fit);
	tcase_add_test(tc, initrd_respects_initrd_addr_max);
	tcase_add_test(tc, ram_layout_avoids_the_hole);
	tcase_add_test(tc, e820_map_layout);
	tcase_add_test(tc, bus_dispatch_and_overlap);
	tcase_add_test(tc, serial_registers);
	tcase_add_test(tc, stalled_console_gives_way_when_the_vm_stops);
	tcase_add_test(tc, i8042_probe_and_reset);
	tcase_add_test(tc, cpuid_filter);
	tcase_add_test(tc, cpuid_hide_unemulated);
	tcase_add_test(tc, boot_regs_long64);
	tcase_add_test(tc, boot_regs_pvh32);
	tcase_add_test(tc, mptable_layout);
	tcase_add_test(tc, acpi_tables);
	tcase_add_test(tc, acpi_sleep_register_powers_off);
	tcase_add_test(tc, cpu_list_parsing);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return fx_run_suite(monitor_suite());
}
