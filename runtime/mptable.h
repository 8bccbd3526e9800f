/*
 * mptable.h - the Intel MultiProcessor Specification 1.4 table: how a
 * guest without ACPI finds its CPUs, the IOAPIC, and which IOAPIC pin
 * each ISA IRQ and each PCI slot's INTA# reaches.
 */
#ifndef RUNTIME_MPTABLE_H
#define RUNTIME_MPTABLE_H

#include <stddef.h>
#include <stdint.h>

#define MPTABLE_MAX_PCI 32

struct mptable_pci_irq {
	uint8_t slot;      /* PCI device number on bus 0 */
	uint8_t line;      /* IOAPIC pin its INTA# is wired to */
};

struct mptable_config {
	int nr_cpus;
	int nr_pci;
	struct mptable_pci_irq pci[MPTABLE_MAX_PCI];
};

/* Write the configuration table at the start of `buf` (which the guest
 * sees at guest physical address `gpa`) and the floating pointer in its
 * last 16 bytes, which must lie in the last KiB of base memory.  Returns
 * `size`, or -ENOSPC/-EINVAL with a message. */
int mptable__build(const struct mptable_config *c, uint8_t *buf,
		   size_t size, uint64_t gpa);

/* IOAPIC id the table gives (after the CPUs' APIC ids). */
#define MPTABLE_IOAPIC_ID(nr_cpus) ((uint8_t)(nr_cpus))

#endif /* RUNTIME_MPTABLE_H */
