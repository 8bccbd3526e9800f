/*
 * pcibus.c - PCI bus 0: host bridge, configuration mechanism #1, BAR
 * decoding and INTx (the interface is documented in runtime/pci.h).
 *
 * Everything the guest writes here is hostile: config addresses for other
 * buses/functions, unaligned data-port accesses, BARs moved on top of each
 * other or to address 0.  None of it may crash the monitor; the worst case
 * is an access that goes nowhere (reads all ones).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/pci.h"

struct pci_bus {
	struct pci_bus_config cfg;
	pthread_mutex_t lock;      /* config space and the address register */
	pthread_mutex_t irq_lock;  /* INTx state; innermost lock */
	uint32_t conf1_addr;
	uint32_t next_bar;         /* next free address in the MMIO window */
	struct pci_dev *slots[PCI_MAX_SLOTS];
	struct pci_dev host_bridge;
};

static __thread char pci_errbuf[256];

const char *pci__error(void)
{
	return pci_errbuf;
}

static int pci_err(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(pci_errbuf, sizeof(pci_errbuf), fmt, ap);
	va_end(ap);
	return -err;
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static uint32_t get32(const uint8_t *p)
{
	return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

int pci__bus_new(const struct pci_bus_config *cfg, struct pci_bus **out)
{
	struct pci_bus *bus;
	struct pci_dev *hb;

	*out = NULL;
	if (!cfg->set_irq)
		return pci_err(EINVAL, "pci: no interrupt callback");
	if (cfg->mmio_size == 0 || (uint64_t)cfg->mmio_base +
	    cfg->mmio_size > 0x100000000ull || cfg->mmio_base & 0xFFF)
		return pci_err(EINVAL, "pci: MMIO window 0x%x+0x%x is not a "
			       "page-aligned range below 4 GiB",
			       cfg->mmio_base, cfg->mmio_size);
	bus = calloc(1, sizeof(*bus));
	if (!bus)
		return pci_err(ENOMEM, "pci: out of memory");
	bus->cfg = *cfg;
	bus->next_bar = cfg->mmio_base;
	pthread_mutex_init(&bus->lock, NULL);
	pthread_mutex_init(&bus->irq_lock, NULL);

	/* Device 0: a host bridge.  Linux accepts conf1 only after finding
	 * a device of class "host bridge" (or an Intel/Compaq vendor id) on
	 * bus 0.  1b36:0008 is the id QEMU's generic host bridge uses; no
	 * Linux quirk keys on it. */
	hb = &bus->host_bridge;
	put16(hb->cfg + PCI_VENDOR_ID, 0x1b36);
	put16(hb->cfg + PCI_DEVICE_ID, 0x0008);
	hb->cfg[PCI_CLASS_DEVICE] = 0x00;     /* subclass: host bridge */
	hb->cfg[PCI_CLASS_DEVICE + 1] = 0x06; /* class: bridge */
	hb->cfg[PCI_COMMAND] = PCI_COMMAND_MEMORY;
	hb->slot = 0;
	hb->bus = bus;
	hb->irq_line = -1;
	bus->slots[0] = hb;
	*out = bus;
	return 0;
}

void pci__bus_free(struct pci_bus *bus)
{
	if (!bus)
		return;
	pthread_mutex_destroy(&bus->lock);
	pthread_mutex_destroy(&bus->irq_lock);
	free(bus);
}

int pci__add(struct pci_bus *bus, struct pci_dev *dev, int irq_line)
{
	int slot;

	pthread_mutex_lock(&bus->lock);
	for (slot = 1; slot < PCI_MAX_SLOTS && bus->slots[slot]; slot++)
		;
	if (slot == PCI_MAX_SLOTS) {
		pthread_mutex_unlock(&bus->lock);
		return pci_err(ENOSPC, "pci: all %d slots of bus 0 are used",
			       PCI_MAX_SLOTS);
	}
	/* Place each BAR naturally aligned in the window. */
	uint32_t next = bus->next_bar;
	for (int b = 0; b < PCI_NUM_BARS; b++) {
		uint32_t sz = dev->bar_size[b];
		uint64_t at;

		if (!sz)
			continue;
		if (sz < 16 || (sz & (sz - 1))) {
			pthread_mutex_unlock(&bus->lock);
			return pci_err(EINVAL, "pci: BAR%d size %u is not a "
				       "power of two >= 16", b, sz);
		}
		at = ((uint64_t)next + sz - 1) & ~(uint64_t)(sz - 1);
		if (at + sz > (uint64_t)bus->cfg.mmio_base +
		    bus->cfg.mmio_size) {
			pthread_mutex_unlock(&bus->lock);
			return pci_err(ENOSPC, "pci: MMIO window full placing "
				       "BAR%d of %u bytes", b, sz);
		}
		uint32_t v = (uint32_t)at | (get32(dev->cfg + PCI_BAR0 + 4 * b)
					     & 0xF);
		memcpy(dev->cfg + PCI_BAR0 + 4 * b, &v, 4);
		/* The address bits above the size are writable. */
		uint32_t m = ~(sz - 1) & ~0xFu;
		memcpy(dev->wmask + PCI_BAR0 + 4 * b, &m, 4);
		next = (uint32_t)(at + sz);
	}
	bus->next_bar = next;
	dev->cfg[PCI_COMMAND] |= PCI_COMMAND_MEMORY;
	dev->wmask[PCI_COMMAND] |= PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
	dev->wmask[PCI_COMMAND + 1] |= PCI_COMMAND_INTX_DISABLE >> 8;
	dev->cfg[PCI_INTERRUPT_LINE] = (uint8_t)irq_line;
	dev->cfg[PCI_INTERRUPT_PIN] = 1;      /* INTA# */
	dev->wmask[PCI_INTERRUPT_LINE] = 0xFF; /* scratch for the OS */
	dev->bus = bus;
	dev->slot = slot;
	dev->irq_line = irq_line;
	dev->irq_level = 0;
	bus->slots[slot] = dev;
	pthread_mutex_unlock(&bus->lock);
	return slot;
}

/* Device for a conf1 address, or NULL (disabled, other bus, function != 0,
 * empty slot).  Called with bus->lock held. */
static struct pci_dev *conf1_dev(struct pci_bus *bus, uint32_t addr)
{
	if (!(addr & 0x80000000u))
		return NULL;
	if ((addr >> 16) & 0xFF)          /* bus number */
		return NULL;
	if ((addr >> 8) & 0x7)            /* function */
		return NULL;
	return bus->slots[(addr >> 11) & 0x1F];
}

/* Re-drive INTx after the command register changed.  bus->lock held. */
static void intx_update(struct pci_dev *dev)
{
	struct pci_bus *bus = dev->bus;
	int disabled = dev->cfg[PCI_COMMAND + 1] & (PCI_COMMAND_INTX_DISABLE
						     >> 8);

	if (dev->irq_line < 0)
		return;
	pthread_mutex_lock(&bus->irq_lock);
	bus->cfg.set_irq(bus->cfg.irq_opaque, dev->irq_line,
			 dev->irq_level && !disabled);
	pthread_mutex_unlock(&bus->irq_lock);
}

uint32_t pci__config_read(struct pci_bus *bus, uint32_t addr, uint32_t size)
{
	uint32_t reg = addr & 0xFF, v = 0;
	struct pci_dev *dev;

	if (size != 1 && size != 2 && size != 4)
		return 0xFFFFFFFFu;
	if (reg & (size - 1))
		return size == 4 ? 0xFFFFFFFFu : (1u << (8 * size)) - 1;
	pthread_mutex_lock(&bus->lock);
	dev = conf1_dev(bus, addr);
	if (!dev) {
		pthread_mutex_unlock(&bus->lock);
		return size == 4 ? 0xFFFFFFFFu : (1u << (8 * size)) - 1;
	}
	if (dev->ops && dev->ops->cfg_read)
		dev->ops->cfg_read(dev, reg, size);
	for (uint32_t i = 0; i < size; i++)
		v |= (uint32_t)__atomic_load_n(&dev->cfg[reg + i],
					       __ATOMIC_RELAXED) << (8 * i);
	pthread_mutex_unlock(&bus->lock);
	return v;
}

void pci__config_write(struct pci_bus *bus, uint32_t addr, uint32_t size,
		       uint32_t val)
{
	uint32_t reg = addr & 0xFF;
	struct pci_dev *dev;
	uint16_t old_cmd;

	if ((size != 1 && size != 2 && size != 4) || (reg & (size - 1)))
		return;
	pthread_mutex_lock(&bus->lock);
	dev = conf1_dev(bus, addr);
	if (!dev) {
		pthread_mutex_unlock(&bus->lock);
		return;
	}
	old_cmd = dev->cfg[PCI_COMMAND] | dev->cfg[PCI_COMMAND + 1] << 8;
	for (uint32_t i = 0; i < size; i++) {
		uint8_t m = dev->wmask[reg + i], b = (uint8_t)(val >> (8 * i));

		/* Read-only bytes are not rewritten: pci__set_irq updates the
		 * status byte under another lock. */
		if (!m)
			continue;
		uint8_t o = __atomic_load_n(&dev->cfg[reg + i],
					    __ATOMIC_RELAXED);
		__atomic_store_n(&dev->cfg[reg + i],
				 (uint8_t)((o & ~m) | (b & m)),
				 __ATOMIC_RELAXED);
	}
	if (dev->ops && dev->ops->cfg_write)
		dev->ops->cfg_write(dev, reg, size);
	if (reg < PCI_COMMAND + 2 && reg + size > PCI_COMMAND &&
	    (old_cmd ^ (dev->cfg[PCI_COMMAND] | dev->cfg[PCI_COMMAND + 1]
			<< 8)) & PCI_COMMAND_INTX_DISABLE)
		intx_update(dev);
	pthread_mutex_unlock(&bus->lock);
}

void pci__io_read(struct pci_bus *bus, uint16_t port, uint32_t size,
		  uint32_t *val)
{
	uint32_t addr;

	*val = size >= 4 ? 0xFFFFFFFFu : (1u << (8 * size)) - 1;
	if (port < PCI_CONF1_ADDR_PORT ||
	    port >= PCI_CONF1_ADDR_PORT + PCI_CONF1_PORT_COUNT)
		return;
	if (port < PCI_CONF1_DATA_PORT) {
		/* Only whole-register reads of the address register; Linux's
		 * probe writes a dword and reads it back. */
		if (port == PCI_CONF1_ADDR_PORT && size == 4) {
			pthread_mutex_lock(&bus->lock);
			*val = bus->conf1_addr;
			pthread_mutex_unlock(&bus->lock);
		}
		return;
	}
	pthread_mutex_lock(&bus->lock);
	addr = bus->conf1_addr;
	pthread_mutex_unlock(&bus->lock);
	if (!(addr & 0x80000000u))
		return;
	*val = pci__config_read(bus, (addr & ~3u) + (port - PCI_CONF1_DATA_PORT),
				size);
}

void pci__io_write(struct pci_bus *bus, uint16_t port, uint32_t size,
		   uint32_t val)
{
	uint32_t addr;

	if (port < PCI_CONF1_ADDR_PORT ||
	    port >= PCI_CONF1_ADDR_PORT + PCI_CONF1_PORT_COUNT)
		return;
	if (port < PCI_CONF1_DATA_PORT) {
		/* Byte/word writes here are other chipset registers (0xCF9 is
		 * the reset control register on real chipsets): ignored. */
		if (port == PCI_CONF1_ADDR_PORT && size == 4) {
			pthread_mutex_lock(&bus->lock);
			bus->conf1_addr = val & 0x80FFFFFCu;
			pthread_mutex_unlock(&bus->lock);
		}
		return;
	}
	pthread_mutex_lock(&bus->lock);
	addr = bus->conf1_addr;
	pthread_mutex_unlock(&bus->lock);
	if (!(addr & 0x80000000u))
		return;
	pci__config_write(bus, (addr & ~3u) + (port - PCI_CONF1_DATA_PORT),
			  size, val);
}

/* bus->lock held. */
static uint64_t bar_addr_locked(struct pci_dev *dev, int bar)
{
	if (bar < 0 || bar >= PCI_NUM_BARS || !dev->bar_size[bar])
		return 0;
	if (!(dev->cfg[PCI_COMMAND] & PCI_COMMAND_MEMORY))
		return 0;
	return get32(dev->cfg + PCI_BAR0 + 4 * bar) & ~0xFu;
}

uint64_t pci__bar_addr(struct pci_dev *dev, int bar)
{
	uint64_t a;

	if (!dev->bus)
		return 0;
	pthread_mutex_lock(&dev->bus->lock);
	a = bar_addr_locked(dev, bar);
	pthread_mutex_unlock(&dev->bus->lock);
	return a;
}

/* Find the device and BAR decoding [gpa, gpa+size).  A BAR at address 0 is
 * treated as unassigned (the guest is in the middle of sizing it). */
static struct pci_dev *mmio_find(struct pci_bus *bus, uint64_t gpa,
				 uint32_t size, int *bar, uint64_t *off)
{
	struct pci_dev *found = NULL;

	pthread_mutex_lock(&bus->lock);
	for (int s = 1; s < PCI_MAX_SLOTS && !found; s++) {
		struct pci_dev *dev = bus->slots[s];

		if (!dev)
			continue;
		for (int b = 0; b < PCI_NUM_BARS; b++) {
			uint64_t a = bar_addr_locked(dev, b);

			if (a && gpa >= a && gpa - a < dev->bar_size[b] &&
			    size <= dev->bar_size[b] - (gpa - a)) {
				found = dev;
				*bar = b;
				*off = gpa - a;
				break;
			}
		}
	}
	pthread_mutex_unlock(&bus->lock);
	return found;
}

static int mmio_size_ok(uint32_t size)
{
	return size == 1 || size == 2 || size == 4 || size == 8;
}

int pci__mmio_read(struct pci_bus *bus, uint64_t gpa, void *data,
		   uint32_t size)
{
	struct pci_dev *dev;
	uint64_t off;
	int bar;

	if (size <= 8)
		memset(data, 0xFF, size);
	if (!mmio_size_ok(size))
		return -ENOENT;
	dev = mmio_find(bus, gpa, size, &bar, &off);
	if (!dev || !dev->ops || !dev->ops->bar_read)
		return -ENOENT;
	memset(data, 0, size);
	dev->ops->bar_read(dev, bar, off, data, size);
	return 0;
}

int pci__mmio_write(struct pci_bus *bus, uint64_t gpa, const void *data,
		    uint32_t size)
{
	struct pci_dev *dev;
	uint64_t off;
	int bar;

	if (!mmio_size_ok(size))
		return -ENOENT;
	dev = mmio_find(bus, gpa, size, &bar, &off);
	if (!dev || !dev->ops || !dev->ops->bar_write)
		return -ENOENT;
	dev->ops->bar_write(dev, bar, off, data, size);
	return 0;
}

void pci__set_irq(struct pci_dev *dev, int level)
{
	struct pci_bus *bus = dev->bus;
	int disabled;

	if (!bus || dev->irq_line < 0)
		return;
	pthread_mutex_lock(&bus->irq_lock);
	dev->irq_level = !!level;
	/* The status bit reflects the device's request even when INTx is
	 * disabled (PCI 3.0 6.2.3). */
	uint8_t st = __atomic_load_n(&dev->cfg[PCI_STATUS], __ATOMIC_RELAXED);
	st = level ? st | PCI_STATUS_INTERRUPT : st & ~PCI_STATUS_INTERRUPT;
	__atomic_store_n(&dev->cfg[PCI_STATUS], st, __ATOMIC_RELAXED);
	disabled = __atomic_load_n(&dev->cfg[PCI_COMMAND + 1],
				   __ATOMIC_RELAXED) &
		   (PCI_COMMAND_INTX_DISABLE >> 8);
	bus->cfg.set_irq(bus->cfg.irq_opaque, dev->irq_line,
			 dev->irq_level && !disabled);
	pthread_mutex_unlock(&bus->irq_lock);
}

int pci__msi_capable(struct pci_bus *bus)
{
	return bus->cfg.send_msi != NULL;
}

int pci__send_msi(struct pci_dev *dev, uint64_t addr, uint32_t data)
{
	struct pci_bus *bus = dev->bus;

	if (!bus || !bus->cfg.send_msi)
		return -ENOTSUP;
	if (!(__atomic_load_n(&dev->cfg[PCI_COMMAND], __ATOMIC_RELAXED) &
	      PCI_COMMAND_MASTER))
		return 0;
	bus->cfg.send_msi(bus->cfg.irq_opaque, addr, data);
	return 0;
}

/* ---- as devices on the monitor's buses ------------------------------ */

void pci__conf1_access(void *opaque, uint64_t off, uint8_t *data,
		       uint32_t len, bool is_write)
{
	uint32_t v = 0;

	if (len > 4) {
		if (!is_write)
			memset(data, 0xff, len);
		return;
	}
	if (is_write) {
		memcpy(&v, data, len);
		pci__io_write(opaque, (uint16_t)(PCI_CONF1_ADDR_PORT + off),
			      len, v);
	} else {
		pci__io_read(opaque, (uint16_t)(PCI_CONF1_ADDR_PORT + off),
			     len, &v);
		memcpy(data, &v, len);
	}
}

void pci__window_access(void *opaque, uint64_t off, uint8_t *data,
			uint32_t len, bool is_write)
{
	struct pci_bus *bus = opaque;
	uint64_t gpa = (uint64_t)bus->cfg.mmio_base + off;

	if (is_write)
		pci__mmio_write(bus, gpa, data, len);
	else
		pci__mmio_read(bus, gpa, data, len);
}
