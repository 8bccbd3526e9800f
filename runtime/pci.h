/*
 * pci.h - the monitor's PCI bus: a host bridge, configuration mechanism #1
 * (ports 0xCF8-0xCFF) and memory BARs, with INTx interrupts.
 *
 * Owned by the virtio side (runtime/virtio/pcibus.c implements it); the KVM
 * side wires it into its I/O bus:
 *
 *   struct pci_bus *bus;
 *   pci__bus_new(&(struct pci_bus_config){ .mmio_base = PCI_MMIO_BASE,
 *                .mmio_size = PCI_MMIO_SIZE, .set_irq = my_irq_line,
 *                .irq_opaque = vm }, &bus);
 *   ... virtio_pci__new(bus, vdev, irq_line, &vp)  (virtio/virtio-pci.h)
 *   port I/O 0xCF8..0xCFF  -> pci__io_read / pci__io_write
 *   MMIO in [mmio_base, mmio_base + mmio_size) -> pci__mmio_read/_write
 *
 * Guest-visible layout the firmware tables must describe:
 *   - bus 0 only; device 0 is a host bridge (class 0x0600) so that Linux's
 *     conf1 sanity check (pci_sanity_check) accepts the mechanism;
 *   - every other device is a single-function device in the next free slot
 *     (1, 2, ...), with one 32-bit memory BAR (BAR0) placed by pci__add()
 *     inside the MMIO window (the guest may move it; pci__mmio_* follows);
 *   - INTx pin A of each device is wired to the `irq_line` given to
 *     pci__add() (an IOAPIC/PIC input: the MP table or ACPI must route
 *     "bus 0, slot N, pin A" to that line, level-triggered, active high
 *     on the IOAPIC as for ISA-less PCI in kvmtool/QEMU microvm).
 *     The line is also in the device's Interrupt Line register (0x3C).
 *
 * set_irq(opaque, line, level) is called with level 1 when the device
 * asserts INTx and 0 when it deasserts; it may be called from any thread
 * (vCPU threads, device worker threads) and must be thread-safe.
 *
 * Threading: every function here may be called concurrently from several
 * vCPU threads.  Errors: negative errno, message in pci__error() (a
 * thread-local string); nothing here prints or exits.
 */
#ifndef RUNTIME_PCI_H
#define RUNTIME_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* Suggested MMIO window for BARs: inside the 32-bit hole below the IOAPIC
 * (0xFEC00000).  The KVM side may pass another window to pci__bus_new. */
#define PCI_MMIO_BASE 0xE0000000u
#define PCI_MMIO_SIZE 0x10000000u

#define PCI_CONF1_ADDR_PORT 0xCF8
#define PCI_CONF1_DATA_PORT 0xCFC
#define PCI_CONF1_PORT_COUNT 8

#define PCI_MAX_SLOTS 32
#define PCI_CFG_SIZE 256
#define PCI_NUM_BARS 6

/* Config-space offsets used by the bus and the virtio transport. */
#define PCI_VENDOR_ID 0x00
#define PCI_DEVICE_ID 0x02
#define PCI_COMMAND 0x04
#define PCI_STATUS 0x06
#define PCI_REVISION_ID 0x08
#define PCI_CLASS_PROG 0x09
#define PCI_CLASS_DEVICE 0x0A
#define PCI_HEADER_TYPE 0x0E
#define PCI_BAR0 0x10
#define PCI_SUBSYSTEM_VENDOR_ID 0x2C
#define PCI_SUBSYSTEM_ID 0x2E
#define PCI_CAPABILITY_LIST 0x34
#define PCI_INTERRUPT_LINE 0x3C
#define PCI_INTERRUPT_PIN 0x3D

#define PCI_COMMAND_IO 0x1
#define PCI_COMMAND_MEMORY 0x2
#define PCI_COMMAND_MASTER 0x4
#define PCI_COMMAND_INTX_DISABLE 0x400
#define PCI_STATUS_INTERRUPT 0x08
#define PCI_STATUS_CAP_LIST 0x10
#define PCI_CAP_ID_VNDR 0x09
#define PCI_CAP_ID_MSIX 0x11

struct pci_bus;
struct pci_dev;

/* A device's side of the bus.  The device fills cfg[] (header and
 * capabilities), wmask[] (which bits of each config byte the guest may
 * change; everything else is read-only) and bar_size[] before pci__add.
 * The bus emulates BAR sizing (writes of all ones read back the size mask)
 * from bar_size and the BAR's read-only low bits. */
struct pci_dev_ops {
	/* Access to BAR `bar` at byte `off` (< bar_size), 1/2/4/8 bytes,
	 * little-endian in `data`.  Reads fill data; unknown offsets read 0. */
	void (*bar_read)(struct pci_dev *dev, int bar, uint64_t off,
			 void *data, uint32_t size);
	void (*bar_write)(struct pci_dev *dev, int bar, uint64_t off,
			  const void *data, uint32_t size);
	/* Optional: called after the bus stored a config write (with the
	 * new bytes in cfg[]), and before a config read is answered, for
	 * registers with side effects.  Called with the bus lock held: must
	 * not call back into the bus except pci__set_irq. */
	void (*cfg_write)(struct pci_dev *dev, uint32_t off, uint32_t size);
	void (*cfg_read)(struct pci_dev *dev, uint32_t off, uint32_t size);
};

struct pci_dev {
	uint8_t cfg[PCI_CFG_SIZE];
	uint8_t wmask[PCI_CFG_SIZE];
	uint32_t bar_size[PCI_NUM_BARS]; /* 0: BAR unused; else a power of
					    two >= 16 (32-bit memory BARs) */
	const struct pci_dev_ops *ops;
	void *opaque;                    /* the device's own state */

	/* Set by pci__add. */
	struct pci_bus *bus;
	int slot;
	int irq_line;
	int irq_level;                   /* last level requested by device */
};

struct pci_bus_config {
	uint32_t mmio_base, mmio_size;   /* window BARs are placed in */
	void (*set_irq)(void *opaque, int line, int level);
	void *irq_opaque;
	/* Optional: deliver a message-signalled interrupt (the guest's MSI
	 * address/data pair, e.g. through KVM_SIGNAL_MSI), with irq_opaque.
	 * NULL: devices offer INTx only.  Called from any thread. */
	void (*send_msi)(void *opaque, uint64_t addr, uint32_t data);
};

/* Message of the most recent failing call in this thread. */
const char *pci__error(void);

int pci__bus_new(const struct pci_bus_config *cfg, struct pci_bus **out);
/* Devices are not freed: their owners free them after the bus. */
void pci__bus_free(struct pci_bus *bus);

/* Plug `dev` into the next free slot, place its BARs in the MMIO window,
 * enable memory decoding, and wire INTx pin A to `irq_line`.  Returns the
 * slot number (>= 1) or a negative errno (-ENOSPC: bus or window full). */
int pci__add(struct pci_bus *bus, struct pci_dev *dev, int irq_line);

/* Configuration mechanism #1 as port I/O: `port` in 0xCF8..0xCFF, size 1,
 * 2 or 4, value little-endian in the low bytes of *val.  Reads of absent
 * devices, of a disabled address register, or of unaligned ranges return
 * all ones. */
void pci__io_read(struct pci_bus *bus, uint16_t port, uint32_t size,
		  uint32_t *val);
void pci__io_write(struct pci_bus *bus, uint16_t port, uint32_t size,
		   uint32_t val);

/* Direct config-space access, for tests and for the monitor: `addr` is a
 * conf1 address (bit 31 enable, bus 23:16, device 15:11, function 10:8,
 * register 7:0; the low two bits of the register may be non-zero for
 * byte/word accesses). */
uint32_t pci__config_read(struct pci_bus *bus, uint32_t addr, uint32_t size);
void pci__config_write(struct pci_bus *bus, uint32_t addr, uint32_t size,
		       uint32_t val);

/* Forward a guest MMIO access to the device whose enabled memory BAR holds
 * `gpa`.  Returns 0 if a device claimed it, -ENOENT if none did (then a
 * read leaves *data all ones).  size 1, 2, 4 or 8. */
int pci__mmio_read(struct pci_bus *bus, uint64_t gpa, void *data,
		   uint32_t size);
int pci__mmio_write(struct pci_bus *bus, uint64_t gpa, const void *data,
		    uint32_t size);

/* Guest physical address BAR `bar` of `dev` currently decodes at, or 0 if
 * memory decoding is off or the BAR is unused. */
uint64_t pci__bar_addr(struct pci_dev *dev, int bar);

/* Does the bus deliver MSIs (send_msi was given)? */
int pci__msi_capable(struct pci_bus *bus);

/* The bus as devices on the monitor's buses (bus_io_fn, runtime/vm.h;
 * opaque is the pci_bus): the configuration mechanism #1 ports,
 * registered at PCI_CONF1_ADDR_PORT for PCI_CONF1_PORT_COUNT, and the
 * MMIO window, registered at the bus's mmio_base for its mmio_size. */
void pci__conf1_access(void *opaque, uint64_t off, uint8_t *data,
		       uint32_t len, bool is_write);
void pci__window_access(void *opaque, uint64_t off, uint8_t *data,
			uint32_t len, bool is_write);

/* Send an MSI on behalf of `dev` (dropped while bus mastering is off, as
 * the device could not write it).  Returns 0, or -ENOTSUP without
 * send_msi. */
int pci__send_msi(struct pci_dev *dev, uint64_t addr, uint32_t data);

/* Drive the device's INTx pin (level 1 asserted).  Respects the command
 * register's INTx-disable bit and keeps the status register's interrupt
 * bit in step. */
void pci__set_irq(struct pci_dev *dev, int level);

#endif /* RUNTIME_PCI_H */
