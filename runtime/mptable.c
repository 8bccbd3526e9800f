/*
 * mptable.c - build an MP Specification 1.4 table.
 *
 * Linux looks for the "_MP_" floating pointer in the last KiB of base
 * memory (0x9fc00-0x9ffff); the configuration table may be anywhere.  So
 * the table starts at the beginning of the buffer and the floating
 * pointer takes the buffer's last 16 bytes: with the buffer at
 * 0x9f000-0x9ffff (reserved in the e820 map) there is room for 64 CPUs.  The table lists every vCPU (APIC id = vCPU index, vCPU 0 the
 * BSP), one IOAPIC at 0xfec00000 with the id after the CPUs, bus 0 (PCI)
 * and bus 1 (ISA), ISA IRQs 0-15 on IOAPIC pins 0-15 (KVM's default GSI
 * routing), every PCI slot's INTA# on its own pin (level, active high),
 * and the local APIC's LINT0 as ExtINT (8259 virtual wire) and LINT1 as
 * NMI.
 */
#include <errno.h>
#include <string.h>

#include "runtime/bytes.h"
#include "runtime/mptable.h"
#include "runtime/vm.h"

#define MP_ENT_CPU     0
#define MP_ENT_BUS     1
#define MP_ENT_IOAPIC  2
#define MP_ENT_IOINT   3
#define MP_ENT_LOCINT  4

#define MP_INT         0
#define MP_NMI         1
#define MP_EXTINT      3

#define MP_BUS_PCI 0
#define MP_BUS_ISA 1

/* irqflag: polarity bits 0-1 (1 high, 3 low), trigger bits 2-3 (1 edge,
 * 3 level); 0 means "as the bus defines". */
#define MP_IRQ_LEVEL_HIGH 0x0d

struct cursor {
	uint8_t *buf;
	size_t size, pos;
	int err;
};

static uint8_t *take(struct cursor *c, size_t n)
{
	if (c->err || n > c->size - c->pos) {
		c->err = 1;
		return NULL;
	}
	uint8_t *p = c->buf + c->pos;
	memset(p, 0, n);
	c->pos += n;
	return p;
}

static void ioint(struct cursor *c, uint8_t type, uint16_t flags,
		  uint8_t bus, uint8_t busirq, uint8_t apic, uint8_t pin)
{
	uint8_t *e = take(c, 8);
	if (!e)
		return;
	e[0] = MP_ENT_IOINT;
	e[1] = type;
	le16_put(e + 2, flags);
	e[4] = bus;
	e[5] = busirq;
	e[6] = apic;
	e[7] = pin;
}

int mptable__build(const struct mptable_config *cfg, uint8_t *buf,
		   size_t size, uint64_t gpa)
{
	struct cursor c = { buf, size, 0, 0 };
	int entries = 0;

	if (cfg->nr_cpus < 1 || cfg->nr_cpus > 254 || cfg->nr_pci < 0 ||
	    cfg->nr_pci > MPTABLE_MAX_PCI)
		return vm__err(EINVAL, "MP table: %d CPUs / %d PCI devices "
			       "out of range", cfg->nr_cpus, cfg->nr_pci);
	if (gpa + size > 0x100000000ull)
		return vm__err(EINVAL, "MP table must lie below 4 GiB");

	if (size < 16 + 44)
		goto nospace;
	uint8_t *fp = buf + size - 16;
	memset(fp, 0, 16);
	c.size = size - 16;
	uint8_t *hdr = take(&c, 44);
	if (c.err)
		goto nospace;
	size_t table_start = (size_t)(hdr - buf);

	uint8_t ioapic_id = MPTABLE_IOAPIC_ID(cfg->nr_cpus);
	for (int i = 0; i < cfg->nr_cpus; i++) {
		uint8_t *e = take(&c, 20);
		if (!e)
			goto nospace;
		e[0] = MP_ENT_CPU;
		e[1] = (uint8_t)i;              /* local APIC id */
		e[2] = 0x14;                    /* local APIC version */
		e[3] = (uint8_t)(1 | (i == 0 ? 2 : 0));  /* enabled, BSP */
		le32_put(e + 4, 0x600);            /* family 6 signature */
		le32_put(e + 8, (1u << 0) | (1u << 9));  /* FPU, APIC */
		entries++;
	}
	static const char *const bus_names[] = { "PCI   ", "ISA   " };
	for (int b = 0; b < 2; b++) {
		uint8_t *e = take(&c, 8);
		if (!e)
			goto nospace;
		e[0] = MP_ENT_BUS;
		e[1] = (uint8_t)b;
		memcpy(e + 2, bus_names[b], 6);
		entries++;
	}
	uint8_t *io = take(&c, 8);
	if (!io)
		goto nospace;
	io[0] = MP_ENT_IOAPIC;
	io[1] = ioapic_id;
	io[2] = 0x11;                           /* IOAPIC version */
	io[3] = 1;                              /* enabled */
	le32_put(io + 4, (uint32_t)VM_IOAPIC_ADDR);
	entries++;
	for (uint8_t irq = 0; irq < 16; irq++, entries++)
		ioint(&c, MP_INT, 0, MP_BUS_ISA, irq, ioapic_id, irq);
	for (int i = 0; i < cfg->nr_pci; i++, entries++)
		ioint(&c, MP_INT, MP_IRQ_LEVEL_HIGH, MP_BUS_PCI,
		      (uint8_t)(cfg->pci[i].slot << 2), /* pin A */
		      ioapic_id, cfg->pci[i].line);
	/* Local interrupts, to every local APIC (0xff). */
	static const uint8_t lint[2][2] = { { MP_EXTINT, 0 }, { MP_NMI, 1 } };
	for (int i = 0; i < 2; i++) {
		uint8_t *e = take(&c, 8);
		if (!e)
			goto nospace;
		e[0] = MP_ENT_LOCINT;
		e[1] = lint[i][0];
		e[4] = MP_BUS_ISA;
		e[5] = 0;
		e[6] = 0xff;
		e[7] = lint[i][1];
		entries++;
	}
	if (c.err)
		goto nospace;

	size_t table_len = c.pos - table_start;
	memcpy(hdr, "PCMP", 4);
	le16_put(hdr + 4, (uint16_t)table_len);
	hdr[6] = 4;                             /* spec revision 1.4 */
	memcpy(hdr + 8, "APPLIANC", 8);
	memcpy(hdr + 16, "MICROVM     ", 12);
	le16_put(hdr + 34, (uint16_t)entries);
	le32_put(hdr + 36, (uint32_t)VM_LAPIC_ADDR);
	hdr[7] = table_checksum(hdr, table_len);

	memcpy(fp, "_MP_", 4);
	le32_put(fp + 4, (uint32_t)(gpa + table_start));
	fp[8] = 1;                              /* length in 16-byte units */
	fp[9] = 4;
	fp[10] = table_checksum(fp, 16);
	return (int)size;
nospace:
	return vm__err(ENOSPC, "MP table for %d CPUs and %d PCI devices "
		       "does not fit in %zu bytes", cfg->nr_cpus, cfg->nr_pci,
		       size);
}
