/*
 * guest.c - the tiny test guest the builtin monitor boots in the tests.
 *
 * A few thousand instructions (KVM is ~10,000x slower than native on the
 * build machines): print on the 16550 UART, show what the boot protocol
 * handed over (command line, e820 map), check the CPUID the monitor set,
 * start vCPU 1 with INIT/SIPI, read and write a virtio-blk disk if there
 * is one (virtio-blk.c), then reset through the i8042, which the
 * monitor treats as power-off; or, with "idle" on its command line,
 * halt until the monitor stops it (the console escape test).
 */
#include <stdint.h>

#include "guest.h"

#define COM1 0x3f8
#define LAPIC 0xfee00000ul
#define TRAMPOLINE 0x6000ul
#define MAILBOX ((volatile uint8_t *)0x5ff0)

extern const char ap_trampoline[], ap_trampoline_end[];

static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
	uint8_t v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static void putc_(char c)
{
	/* Wait for THR empty (LSR bit 5), as a real driver must. */
	while (!(inb(COM1 + 5) & 0x20))
		;
	outb(COM1, (uint8_t)c);
}

void guest_puts(const char *s)
{
	while (*s) {
		if (*s == '\n')
			putc_('\r');
		putc_(*s++);
	}
}

void guest_putx(uint64_t v)
{
	char buf[19];
	int i = 18;

	buf[i] = 0;
	do {
		buf[--i] = "0123456789abcdef"[v & 15];
		v >>= 4;
	} while (v);
	buf[--i] = 'x';
	buf[--i] = '0';
	guest_puts(buf + i);
}

static void cpuid(uint32_t leaf, uint32_t *a, uint32_t *b, uint32_t *c,
		  uint32_t *d)
{
	__asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d)
			 : "a"(leaf), "c"(0));
}

static void lapic_write(uint32_t reg, uint32_t v)
{
	*(volatile uint32_t *)(LAPIC + reg) = v;
}

static uint32_t lapic_read(uint32_t reg)
{
	return *(volatile uint32_t *)(LAPIC + reg);
}

static void lapic_wait_icr(void)
{
	/* Delivery status (bit 12) clears when the IPI is sent. */
	for (int i = 0; i < 1000 && (lapic_read(0x300) & (1u << 12)); i++)
		;
}

static void start_ap(uint32_t apic_id)
{
	const char *s = ap_trampoline;
	volatile char *d = (volatile char *)TRAMPOLINE;

	while (s < ap_trampoline_end)
		*d++ = *s++;
	MAILBOX[0] = 0;
	lapic_write(0xf0, lapic_read(0xf0) | 0x100);   /* APIC software on */
	lapic_write(0x310, apic_id << 24);
	lapic_write(0x300, 0x00004500);                 /* INIT, assert */
	lapic_wait_icr();
	for (int i = 0; i < 2; i++) {
		lapic_write(0x310, apic_id << 24);
		lapic_write(0x300, 0x00004600 | (TRAMPOLINE >> 12)); /* SIPI */
		lapic_wait_icr();
	}
}

/* Whether the command line has the word `w`. */
static int has_word(const char *s, const char *w)
{
	for (const char *p = s; *p; p++) {
		if (p != s && p[-1] != ' ')
			continue;
		const char *a = p, *b = w;
		while (*b && *a == *b) {
			a++;
			b++;
		}
		if (!*b && (*a == ' ' || *a == 0))
			return 1;
	}
	return 0;
}

void guest_main(const uint8_t *zp)
{
	uint32_t a, b, c, d;

	guest_puts("guest: hello\n");

	/* The boot protocol's hand-over. */
	uint32_t cmdline = *(const uint32_t *)(zp + 0x228);
	guest_puts("guest: cmdline '");
	guest_puts((const char *)(uint64_t)cmdline);
	guest_puts("'\n");
	uint8_t n = zp[0x1e8];
	guest_puts("guest: e820 entries ");
	guest_putx(n);
	guest_puts("\n");
	for (uint8_t i = 0; i < n && i < 8; i++) {
		const uint8_t *e = zp + 0x2d0 + 20 * i;
		guest_puts("guest: e820 ");
		guest_putx(*(const uint64_t *)e);
		guest_puts(" ");
		guest_putx(*(const uint64_t *)(e + 8));
		guest_puts(" ");
		guest_putx(*(const uint32_t *)(e + 16));
		guest_puts("\n");
	}

	cpuid(1, &a, &b, &c, &d);
	guest_puts(c & (1u << 31) ? "guest: hypervisor bit set\n"
			     : "guest: hypervisor bit clear\n");
	guest_puts(c & (1u << 13) ? "guest: cx16 present\n"
				  : "guest: cx16 hidden\n");
	uint32_t ncpu = (b >> 16) & 0xff;
	guest_puts("guest: cpus ");
	guest_putx(ncpu);
	guest_puts("\n");

	if (ncpu > 1) {
		start_ap(1);
		/* Each loop iteration is a few microseconds under emulated
		 * KVM; wait up to ~2M of them for the AP. */
		for (uint32_t i = 0; i < 2000000 && MAILBOX[0] != 0xa5; i++)
			__asm__ volatile("pause");
		if (MAILBOX[0] == 0xa5) {
			guest_puts("guest: cpu1 up, apic id ");
			guest_putx(MAILBOX[1]);
			guest_puts("\n");
		} else {
			guest_puts("guest: cpu1 did not come up\n");
		}
	}

	guest_virtio_blk();

	/* "idle" on the command line: stay up until the monitor stops us
	 * (the console escape, a signal), halted with interrupts off. */
	if (has_word((const char *)(uint64_t)cmdline, "idle")) {
		guest_puts("guest: idle until stopped\n");
		for (;;)
			__asm__ volatile("cli; hlt");
	}

	guest_puts("guest: poweroff\n");
	outb(0x64, 0xfe);     /* i8042: pulse reset */
	for (;;)
		__asm__ volatile("cli; hlt");
}
