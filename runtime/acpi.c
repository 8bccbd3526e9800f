/*
 * acpi.c - RSDP, XSDT, FADT, MADT and a small DSDT (ACPI 6.x).
 *
 * The DSDT is written as AML bytes directly (no iasl at build time): it
 * declares the PCI host bridge PNP0A03 on bus 0 with a _PRT that routes
 * INTA# of every populated slot straight to its IOAPIC pin (GSI), and the
 * \_S5 sleep object whose value the guest writes to power off.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/acpi.h"
#include "runtime/bytes.h"

/* ---- a byte buffer --------------------------------------------------- */

struct abuf {
	uint8_t b[2048];
	size_t n;
	int err;
};

static void put(struct abuf *a, const void *p, size_t n)
{
	if (a->err || n > sizeof(a->b) - a->n) {
		a->err = 1;
		return;
	}
	memcpy(a->b + a->n, p, n);
	a->n += n;
}

static void put8(struct abuf *a, uint8_t v) { put(a, &v, 1); }

static void put32le(struct abuf *a, uint32_t v)
{
	uint8_t b[4];

	le32_put(b, v);
	put(a, b, 4);
}

/* AML PkgLength: the length counts its own encoding bytes. */
static void pkglen(struct abuf *a, size_t content)
{
	if (content + 1 < 0x40) {
		put8(a, (uint8_t)(content + 1));
	} else if (content + 2 < 0x1000) {
		size_t t = content + 2;
		put8(a, (uint8_t)(0x40 | (t & 0xf)));
		put8(a, (uint8_t)(t >> 4));
	} else {
		size_t t = content + 3;
		put8(a, (uint8_t)(0x80 | (t & 0xf)));
		put8(a, (uint8_t)(t >> 4));
		put8(a, (uint8_t)(t >> 12));
	}
}

/* Integers: the shortest AML encoding. */
static void aml_int(struct abuf *a, uint32_t v)
{
	if (v == 0) {
		put8(a, 0x00);          /* ZeroOp */
	} else if (v == 1) {
		put8(a, 0x01);          /* OneOp */
	} else if (v <= 0xff) {
		put8(a, 0x0a);          /* BytePrefix */
		put8(a, (uint8_t)v);
	} else {
		put8(a, 0x0c);          /* DWordPrefix */
		put32le(a, v);
	}
}

static void aml_name_int(struct abuf *a, const char *name, uint32_t v)
{
	put8(a, 0x08);                  /* NameOp */
	put(a, name, 4);
	aml_int(a, v);
}

static void wrap(struct abuf *out, const uint8_t *op, size_t oplen,
		 const struct abuf *inner)
{
	put(out, op, oplen);
	pkglen(out, inner->n);
	put(out, inner->b, inner->n);
	if (inner->err)
		out->err = 1;
}

static size_t build_dsdt_body(const struct mptable_config *c, struct abuf *out)
{
	struct abuf *prt = calloc(1, sizeof(*prt));
	struct abuf *dev = calloc(1, sizeof(*dev));
	struct abuf *sb = calloc(1, sizeof(*sb));
	struct abuf *s5 = calloc(1, sizeof(*s5));
	static const uint8_t package_op[] = { 0x12 };

	if (!prt || !dev || !sb || !s5) {
		out->err = 1;
		goto done;
	}
	/* _PRT: Package { Package { slot<<16 | 0xFFFF, pin 0 (INTA#),
	 * source 0 (a GSI, not a link device), GSI } ... } */
	put8(prt, (uint8_t)c->nr_pci);          /* NumElements */
	for (int i = 0; i < c->nr_pci; i++) {
		struct abuf e = { .n = 0 };
		put8(&e, 4);
		aml_int(&e, (uint32_t)c->pci[i].slot << 16 | 0xffff);
		aml_int(&e, 0);
		aml_int(&e, 0);
		aml_int(&e, c->pci[i].line);
		wrap(prt, package_op, 1, &e);
	}

	/* Device (PCI0) { _HID PNP0A03, _UID 0, _SEG 0, _BBN 0, _PRT } */
	put8(dev, 0x08);
	put(dev, "_HID", 4);
	put8(dev, 0x0c);
	put32le(dev, 0x030AD041);               /* EISAID("PNP0A03") */
	aml_name_int(dev, "_UID", 0);
	aml_name_int(dev, "_SEG", 0);
	aml_name_int(dev, "_BBN", 0);
	put8(dev, 0x08);
	put(dev, "_PRT", 4);
	wrap(dev, package_op, 1, prt);

	static const uint8_t device_op[] = { 0x5b, 0x82 };
	struct abuf *devname = calloc(1, sizeof(*devname));
	if (!devname) {
		out->err = 1;
		goto done;
	}
	put(devname, "PCI0", 4);
	put(devname, dev->b, dev->n);
	if (dev->err)
		devname->err = 1;
	wrap(sb, device_op, 2, devname);
	free(devname);

	/* Scope (\_SB) { ... } */
	struct abuf *scope = calloc(1, sizeof(*scope));
	if (!scope) {
		out->err = 1;
		goto done;
	}
	put(scope, "\\_SB_", 5);
	put(scope, sb->b, sb->n);
	if (sb->err)
		scope->err = 1;
	static const uint8_t scope_op[] = { 0x10 };
	wrap(out, scope_op, 1, scope);
	free(scope);

	/* Name (_S5, Package (4) { 5, 5, 0, 0 }) */
	put8(s5, 4);
	aml_int(s5, 5);
	aml_int(s5, 5);
	aml_int(s5, 0);
	aml_int(s5, 0);
	put8(out, 0x08);
	put(out, "_S5_", 4);
	wrap(out, package_op, 1, s5);
done:
	free(prt);
	free(dev);
	free(sb);
	free(s5);
	return out->n;
}

/* ---- tables ---------------------------------------------------------- */

/* The 36-byte header every table but the RSDP starts with. */
static void header(uint8_t *t, const char *sig, uint32_t len, uint8_t rev)
{
	memcpy(t, sig, 4);
	le32_put(t + 4, len);
	t[8] = rev;
	memcpy(t + 10, "APPLNC", 6);
	memcpy(t + 16, "MICROVM ", 8);
	le32_put(t + 24, 1);
	memcpy(t + 28, "APLC", 4);
	le32_put(t + 32, 1);
}

/* Generic Address Structure in port I/O space. */
static void gas_io(uint8_t *g, uint16_t port, uint8_t bits)
{
	g[0] = 1;           /* SystemIO */
	g[1] = bits;
	g[2] = 0;
	g[3] = 1;           /* byte access */
	le64_put(g + 4, port);
}

#define FADT_LEN 276
#define FADT_F_RESET_REG_SUP   (1u << 10)
#define FADT_F_HW_REDUCED_ACPI (1u << 20)
#define IAPC_8042              (1u << 1)
#define IAPC_NO_VGA            (1u << 2)
#define IAPC_NO_MSI            (1u << 3)

int64_t acpi__build(const struct mptable_config *c, uint8_t *buf,
		    size_t size, uint64_t gpa)
{
	size_t off = 0;
	struct abuf *aml = calloc(1, sizeof(*aml));

	if (!aml)
		return vm__err(ENOMEM, "out of memory for ACPI tables");
	if (c->nr_cpus < 1 || c->nr_cpus > 254 || c->nr_pci < 0 ||
	    c->nr_pci > MPTABLE_MAX_PCI || gpa + size > 0x100000000ull) {
		free(aml);
		return vm__err(EINVAL, "ACPI: %d CPUs / %d PCI devices / table "
			       "address out of range", c->nr_cpus, c->nr_pci);
	}
	build_dsdt_body(c, aml);
	size_t madt_len = 44 + 8 * (size_t)c->nr_cpus + 12 + 6;
	size_t dsdt_len = 36 + aml->n;
	/* RSDP 36 -> 48, XSDT 36 + 2*8, FADT, MADT, DSDT, 16-aligned. */
	size_t rsdp_off = 0, xsdt_off = 48, fadt_off = xsdt_off + 64;
	size_t madt_off = fadt_off + ((FADT_LEN + 15) & ~15u);
	size_t dsdt_off = madt_off + ((madt_len + 15) & ~(size_t)15);
	off = dsdt_off + dsdt_len;
	if (aml->err || off > size) {
		free(aml);
		return vm__err(ENOSPC, "ACPI tables for %d CPUs and %d PCI "
			       "devices do not fit in %zu bytes", c->nr_cpus,
			       c->nr_pci, size);
	}
	memset(buf, 0, off);

	/* DSDT */
	uint8_t *dsdt = buf + dsdt_off;
	header(dsdt, "DSDT", (uint32_t)dsdt_len, 2);
	memcpy(dsdt + 36, aml->b, aml->n);
	dsdt[9] = table_checksum(dsdt, dsdt_len);
	free(aml);

	/* MADT: local APIC address, PCAT_COMPAT (the 8259s exist), one
	 * local APIC per vCPU, the IOAPIC, LINT1 = NMI on all. */
	uint8_t *madt = buf + madt_off;
	header(madt, "APIC", (uint32_t)madt_len, 3);
	le32_put(madt + 36, (uint32_t)VM_LAPIC_ADDR);
	le32_put(madt + 40, 1);
	uint8_t *e = madt + 44;
	for (int i = 0; i < c->nr_cpus; i++, e += 8) {
		e[0] = 0;               /* Processor Local APIC */
		e[1] = 8;
		e[2] = (uint8_t)i;      /* ACPI processor UID */
		e[3] = (uint8_t)i;      /* APIC id */
		le32_put(e + 4, 1);          /* enabled */
	}
	e[0] = 1;                       /* I/O APIC */
	e[1] = 12;
	e[2] = MPTABLE_IOAPIC_ID(c->nr_cpus);
	le32_put(e + 4, (uint32_t)VM_IOAPIC_ADDR);
	le32_put(e + 8, 0);                  /* GSI base */
	e += 12;
	e[0] = 4;                       /* Local APIC NMI */
	e[1] = 6;
	e[2] = 0xff;                    /* all processors */
	le16_put(e + 3, 0);
	e[5] = 1;                       /* LINT1 */
	madt[9] = table_checksum(madt, madt_len);

	/* FADT: hardware-reduced, DSDT, reset via the i8042, sleep
	 * registers for power-off. */
	uint8_t *fadt = buf + fadt_off;
	header(fadt, "FACP", FADT_LEN, 6);
	le32_put(fadt + 40, (uint32_t)(gpa + dsdt_off));
	le16_put(fadt + 109, IAPC_8042 | IAPC_NO_VGA | IAPC_NO_MSI);
	le32_put(fadt + 112, FADT_F_HW_REDUCED_ACPI | FADT_F_RESET_REG_SUP);
	gas_io(fadt + 116, 0x64, 8);    /* RESET_REG: i8042 command port */
	fadt[128] = 0xfe;               /* RESET_VALUE: pulse reset */
	fadt[131] = 5;                  /* FADT minor version (6.5) */
	le64_put(fadt + 140, gpa + dsdt_off);
	gas_io(fadt + 244, ACPI_SLEEP_CTL_PORT, 8);
	gas_io(fadt + 256, ACPI_SLEEP_STS_PORT, 8);
	memcpy(fadt + 268, "APPLNCVM", 8); /* hypervisor vendor identity */
	fadt[9] = table_checksum(fadt, FADT_LEN);

	/* XSDT -> FADT, MADT */
	uint8_t *xsdt = buf + xsdt_off;
	header(xsdt, "XSDT", 36 + 16, 1);
	le64_put(xsdt + 36, gpa + fadt_off);
	le64_put(xsdt + 44, gpa + madt_off);
	xsdt[9] = table_checksum(xsdt, 36 + 16);

	/* RSDP (revision 2: XSDT only) */
	uint8_t *rsdp = buf + rsdp_off;
	memcpy(rsdp, "RSD PTR ", 8);
	memcpy(rsdp + 9, "APPLNC", 6);
	rsdp[15] = 2;
	le32_put(rsdp + 20, 36);
	le64_put(rsdp + 24, gpa + xsdt_off);
	rsdp[8] = table_checksum(rsdp, 20);
	rsdp[32] = table_checksum(rsdp, 36);
	return (int64_t)(gpa + rsdp_off);
}

/* ---- power-off register ---------------------------------------------- */

#define SLP_EN 0x20

static void sleep_io(void *opaque, uint64_t off, uint8_t *data, uint32_t len,
		     bool is_write)
{
	struct vm *vm = opaque;

	if (!is_write) {
		/* Status: WAK_STS never set (we never wake from sleep). */
		memset(data, 0, len);
		return;
	}
	if (off == 0 && len >= 1 && (data[0] & SLP_EN) &&
	    ((data[0] >> 2) & 7) == 5)
		vm__stop(vm, VM_STOP_POWEROFF, "guest powered off (ACPI S5)");
}

int acpi__attach_pm(struct vm *vm)
{
	return bus__register(&vm->pio, ACPI_SLEEP_CTL_PORT, 2, sleep_io, vm,
			     "acpi-sleep");
}
