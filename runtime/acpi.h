/*
 * acpi.h - the ACPI tables a stock distribution kernel needs to find its
 * CPUs, the IOAPIC and the PCI host bridge with its interrupt routing.
 *
 * Debian's kernels are built without MP-table support (X86_MPPARSE is
 * off), so the MP table alone leaves them on one CPU with the 8259s; with
 * these tables they see every vCPU, the IOAPIC and the PCI INTx routing.
 * The platform is "hardware-reduced" ACPI (as in Firecracker): no PM
 * timer, no SCI, no GPEs; reset is the i8042 and power-off is a sleep
 * control register the monitor decodes.
 */
#ifndef RUNTIME_ACPI_H
#define RUNTIME_ACPI_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/mptable.h"
#include "runtime/vm.h"

/* Where the tables go: the BIOS area Linux scans for "RSD PTR ". */
#define ACPI_TABLES_ADDR 0xE0000ull
#define ACPI_TABLES_SIZE 0x10000ull
/* Sleep control / status registers (hardware-reduced ACPI, port I/O). */
#define ACPI_SLEEP_CTL_PORT 0x600
#define ACPI_SLEEP_STS_PORT 0x601

/* Build RSDP, XSDT, FADT, MADT and DSDT into `buf` (seen by the guest at
 * `gpa`, below 4 GiB); CPUs and PCI INTx routing as for the MP table.
 * Returns the RSDP's guest address, or a negative errno with a message. */
int64_t acpi__build(const struct mptable_config *c, uint8_t *buf,
		    size_t size, uint64_t gpa);

/* The sleep control register: writing SLP_EN with SLP_TYP 5 (the _S5
 * value in our DSDT) powers the VM off. */
int acpi__attach_pm(struct vm *vm);

#endif /* RUNTIME_ACPI_H */
