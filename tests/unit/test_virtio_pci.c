/*
 * test_virtio_pci.c - the PCI bus and the virtio-pci transport, driven
 * the way a guest kernel does it: conf1 probing through ports 0xCF8/0xCFC,
 * BAR sizing, walking the capability list, feature negotiation, queue
 * setup through the common configuration, notify, and INTx + ISR.
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "imgfmt.h"
#include "runtime/pci.h"
#include "runtime/virtio/virtio-pci.h"
#include "test_virtio_driver.h"
#include "fixture-run.h"

#define IRQ_BLK 10
#define IRQ_RNG 11

static char path[64];
static struct tdrv d;
static imgfmt_image *img;
static struct pci_bus *bus;
static struct virtio_pci *vp_blk, *vp_rng;
static int irq_level[32], irq_raises[32];
static int with_msi;
static int msi_count;
static uint64_t msi_addr;
static uint32_t msi_data;

static void send_msi(void *opaque, uint64_t addr, uint32_t data)
{
	ck_assert_ptr_eq(opaque, &irq_level);
	msi_count++;
	msi_addr = addr;
	msi_data = data;
}

static void set_irq(void *opaque, int line, int level)
{
	ck_assert_ptr_eq(opaque, &irq_level);
	ck_assert(line >= 0 && line < 32);
	if (level && !irq_level[line])
		irq_raises[line]++;
	irq_level[line] = level;
}

static void setup_common(void);

static void setup(void)
{
	with_msi = 0;
	setup_common();
}

static void setup_msi(void)
{
	with_msi = 1;
	setup_common();
}

static void setup_common(void)
{
	struct imgfmt_create_opts c = { .format = "raw", .size = 1 << 20 };
	struct imgfmt_open_opts o = { .flags = IMGFMT_OPEN_RDWR };
	struct pci_bus_config bc = { .mmio_base = PCI_MMIO_BASE,
				     .mmio_size = PCI_MMIO_SIZE,
				     .set_irq = set_irq,
				     .irq_opaque = &irq_level,
				     .send_msi = with_msi ? send_msi : NULL };
	struct virtio_dev *vdev;
	int fd;

	msi_count = 0;

	strcpy(path, "/tmp/test_vpci.XXXXXX");
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	close(fd);
	unlink(path);
	ck_assert_int_eq(imgfmt__create(path, &c), 0);
	ck_assert_int_eq(imgfmt__open(path, &o, &img), 0);
	td_init(&d);
	memset(irq_level, 0, sizeof(irq_level));
	memset(irq_raises, 0, sizeof(irq_raises));
	ck_assert_int_eq(pci__bus_new(&bc, &bus), 0);
	ck_assert_int_eq(virtio_blk__new(img, NULL, &d.mem, &vdev), 0);
	ck_assert_msg(virtio_pci__new(bus, vdev, IRQ_BLK, &vp_blk) == 0, "%s",
		      virtio__error());
	ck_assert_int_eq(virtio_rng__new(&d.mem, &vdev), 0);
	ck_assert_int_eq(virtio_pci__new(bus, vdev, IRQ_RNG, &vp_rng), 0);
}

static void teardown(void)
{
	virtio_pci__free(vp_blk);
	virtio_pci__free(vp_rng);
	pci__bus_free(bus);
	imgfmt__close(img);
	td_fini(&d);
	unlink(path);
}

/* ---- config space through the ports, like Linux's pci_conf1_read ---- */

static uint32_t cfg_rd(int slot, int fn, int reg, int size)
{
	uint32_t v;

	pci__io_write(bus, 0xCF8, 4, 0x80000000u | (uint32_t)slot << 11 |
		      (uint32_t)fn << 8 | (uint32_t)(reg & 0xFC));
	pci__io_read(bus, (uint16_t)(0xCFC + (reg & 3)), (uint32_t)size, &v);
	return v;
}

static void cfg_wr(int slot, int reg, int size, uint32_t v)
{
	pci__io_write(bus, 0xCF8, 4, 0x80000000u | (uint32_t)slot << 11 |
		      (uint32_t)(reg & 0xFC));
	pci__io_write(bus, (uint16_t)(0xCFC + (reg & 3)), (uint32_t)size, v);
}

/* ---- what a driver learns from the capabilities --------------------- */

struct vdesc {
	int slot;
	uint64_t bar0;
	uint32_t common, notify, isr, device, device_len, mult;
	int pcicfg;        /* config offset of the PCI_CFG capability */
	int msix;          /* config offset of the MSI-X capability, or 0 */
	uint32_t msix_table, msix_pba, msix_n;
};

static struct vdesc discover(int slot)
{
	struct vdesc v = { .slot = slot, .pcicfg = -1 };
	int at, guard = 0;

	ck_assert_uint_eq(cfg_rd(slot, 0, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST,
			  PCI_STATUS_CAP_LIST);
	v.bar0 = cfg_rd(slot, 0, PCI_BAR0, 4) & ~0xFull;
	ck_assert_uint_ge(v.bar0, PCI_MMIO_BASE);
	for (at = (int)cfg_rd(slot, 0, PCI_CAPABILITY_LIST, 1); at;
	     at = (int)cfg_rd(slot, 0, at + 1, 1)) {
		ck_assert_int_lt(++guard, 48);
		ck_assert_int_ge(at, 0x40);
		if (cfg_rd(slot, 0, at, 1) == PCI_CAP_ID_MSIX) {
			v.msix = at;
			v.msix_n = (cfg_rd(slot, 0, at + 2, 2) & 0x7FF) + 1;
			v.msix_table = cfg_rd(slot, 0, at + 4, 4);
			v.msix_pba = cfg_rd(slot, 0, at + 8, 4);
			continue;
		}
		if (cfg_rd(slot, 0, at, 1) != PCI_CAP_ID_VNDR)
			continue;
		uint32_t type = cfg_rd(slot, 0, at + 3, 1);
		uint32_t bar = cfg_rd(slot, 0, at + 4, 1);
		uint32_t off = cfg_rd(slot, 0, at + 8, 4);
		uint32_t len = cfg_rd(slot, 0, at + 12, 4);

		if (type != VIRTIO_PCI_CAP_PCI_CFG)
			ck_assert_uint_eq(bar, 0);
		switch (type) {
		case VIRTIO_PCI_CAP_COMMON_CFG:
			v.common = off;
			ck_assert_uint_ge(len, 0x38);
			break;
		case VIRTIO_PCI_CAP_NOTIFY_CFG:
			v.notify = off;
			v.mult = cfg_rd(slot, 0, at + 16, 4);
			break;
		case VIRTIO_PCI_CAP_ISR_CFG:
			v.isr = off;
			break;
		case VIRTIO_PCI_CAP_DEVICE_CFG:
			v.device = off;
			v.device_len = len;
			break;
		case VIRTIO_PCI_CAP_PCI_CFG:
			v.pcicfg = at;
			break;
		}
	}
	ck_assert_int_ge(v.pcicfg, 0);
	ck_assert_uint_ne(v.isr, 0);
	ck_assert_uint_ne(v.notify, 0);
	ck_assert_uint_ne(v.device, 0);
	return v;
}

static uint64_t mrd(const struct vdesc *v, uint64_t off, uint32_t size)
{
	uint64_t x = 0;

	ck_assert_int_eq(pci__mmio_read(bus, v->bar0 + off, &x, size), 0);
	return x;
}

static void mwr(const struct vdesc *v, uint64_t off, uint64_t x,
		uint32_t size)
{
	ck_assert_int_eq(pci__mmio_write(bus, v->bar0 + off, &x, size), 0);
}

#define C(v, f) ((v)->common + VIRTIO_PCI_COMMON_##f)

static uint8_t status(const struct vdesc *v)
{
	return (uint8_t)mrd(v, C(v, STATUS), 1);
}

static uint64_t device_features(const struct vdesc *v)
{
	mwr(v, C(v, DFSELECT), 0, 4);
	uint64_t lo = mrd(v, C(v, DF), 4);
	mwr(v, C(v, DFSELECT), 1, 4);
	return lo | mrd(v, C(v, DF), 4) << 32;
}

/* 3.1.1 steps 1-6; returns whether FEATURES_OK stuck. */
static int negotiate(const struct vdesc *v, uint64_t want)
{
	mwr(v, C(v, STATUS), 0, 1);
	ck_assert_uint_eq(status(v), 0);
	mwr(v, C(v, STATUS), VIRTIO_STATUS_ACKNOWLEDGE, 1);
	mwr(v, C(v, STATUS), VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER,
	    1);
	mwr(v, C(v, GFSELECT), 0, 4);
	mwr(v, C(v, GF), (uint32_t)want, 4);
	mwr(v, C(v, GFSELECT), 1, 4);
	mwr(v, C(v, GF), (uint32_t)(want >> 32), 4);
	mwr(v, C(v, STATUS), VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
	    VIRTIO_STATUS_FEATURES_OK, 1);
	return !!(status(v) & VIRTIO_STATUS_FEATURES_OK);
}

/* Step 7: queue 0 at the test driver's rings; returns the queue size
 * the device offered. */
static uint16_t setup_queue(const struct vdesc *v, uint16_t num)
{
	mwr(v, C(v, Q_SELECT), 0, 2);
	uint16_t max = (uint16_t)mrd(v, C(v, Q_SIZE), 2);
	ck_assert_uint_eq(mrd(v, C(v, Q_ENABLE), 2), 0);
	ck_assert_uint_eq(mrd(v, C(v, Q_MSIX), 2), VIRTIO_MSI_NO_VECTOR);
	td_rings(&d, num);
	mwr(v, C(v, Q_SIZE), num, 2);
	/* Descriptor address in two halves (as Linux does), the others as
	 * 64-bit writes. */
	mwr(v, C(v, Q_DESCLO), (uint32_t)d.desc, 4);
	mwr(v, C(v, Q_DESCHI), d.desc >> 32, 4);
	mwr(v, C(v, Q_AVAILLO), d.avail, 8);
	mwr(v, C(v, Q_USEDLO), d.used, 8);
	mwr(v, C(v, Q_ENABLE), 1, 2);
	return max;
}

static void driver_ok(const struct vdesc *v)
{
	mwr(v, C(v, STATUS), VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
	    VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK, 1);
}

static void kick(const struct vdesc *v, uint16_t q)
{
	mwr(v, C(v, Q_SELECT), q, 2);
	uint64_t noff = mrd(v, C(v, Q_NOFF), 2);
	mwr(v, v->notify + noff * v->mult, q, 2);
}

#define F_V1 (1ull << VIRTIO_F_VERSION_1)
#define F_EVENT (1ull << VIRTIO_F_EVENT_IDX)
#define F_INDIRECT (1ull << VIRTIO_F_INDIRECT_DESC)

/* A 512-byte write request at `sector`; returns the status gpa. */
static uint64_t post_write(uint64_t sector, uint8_t fill)
{
	uint64_t h = td_alloc(&d, 16, 8), data = td_alloc(&d, 512, 512),
		 st = td_alloc(&d, 1, 1);
	uint32_t type = 1;
	struct tbuf b[3] = { { h, 16, 0 }, { data, 512, 0 }, { st, 1, 1 } };

	memcpy(td_ptr(&d, h), &type, 4);
	memcpy((uint8_t *)td_ptr(&d, h) + 8, &sector, 8);
	memset(td_ptr(&d, data), fill, 512);
	*(uint8_t *)td_ptr(&d, st) = 0xEE;
	td_post(&d, b, 3, 0);
	return st;
}

START_TEST(conf1_probe_finds_bridge_and_devices)
{
	uint32_t v;

	/* Linux's pci_check_type1(): a byte write to 0xCFB, then the dword
	 * address register must read back what was written. */
	pci__io_write(bus, 0xCFB, 1, 0x01);
	pci__io_write(bus, 0xCF8, 4, 0x80000000u);
	pci__io_read(bus, 0xCF8, 4, &v);
	ck_assert_uint_eq(v, 0x80000000u);
	/* The host bridge that pci_sanity_check() looks for. */
	ck_assert_uint_eq(cfg_rd(0, 0, PCI_CLASS_DEVICE, 2), 0x0600);
	/* The two virtio functions. */
	ck_assert_uint_eq(cfg_rd(1, 0, 0, 4), 0x10421AF4u);
	ck_assert_uint_eq(cfg_rd(2, 0, 0, 4), 0x10441AF4u);
	ck_assert_uint_eq(cfg_rd(1, 0, PCI_DEVICE_ID, 2), 0x1042);
	ck_assert_uint_eq(cfg_rd(1, 0, PCI_DEVICE_ID + 1, 1), 0x10);
	ck_assert_uint_ge(cfg_rd(1, 0, PCI_REVISION_ID, 1), 1);
	ck_assert_uint_eq(cfg_rd(1, 0, PCI_CLASS_DEVICE, 2), 0x0180);
	ck_assert_uint_eq(cfg_rd(1, 0, PCI_SUBSYSTEM_VENDOR_ID, 2), 0x1AF4);
	ck_assert_uint_eq(cfg_rd(1, 0, PCI_INTERRUPT_LINE, 1), IRQ_BLK);
	ck_assert_uint_eq(cfg_rd(2, 0, PCI_INTERRUPT_LINE, 1), IRQ_RNG);
	ck_assert_uint_eq(cfg_rd(1, 0, PCI_INTERRUPT_PIN, 1), 1);
	ck_assert_uint_eq(cfg_rd(1, 0, PCI_HEADER_TYPE, 1), 0);
	/* Nothing else: empty slots, other functions, other buses. */
	ck_assert_uint_eq(cfg_rd(3, 0, 0, 4), 0xFFFFFFFFu);
	ck_assert_uint_eq(cfg_rd(31, 0, 0, 2), 0xFFFF);
	ck_assert_uint_eq(cfg_rd(1, 1, 0, 4), 0xFFFFFFFFu);
	pci__io_write(bus, 0xCF8, 4, 0x80010000u | 1u << 11);
	pci__io_read(bus, 0xCFC, 4, &v);
	ck_assert_uint_eq(v, 0xFFFFFFFFu);
	/* Address register disabled: data port reads all ones. */
	pci__io_write(bus, 0xCF8, 4, 1u << 11);
	pci__io_read(bus, 0xCFC, 4, &v);
	ck_assert_uint_eq(v, 0xFFFFFFFFu);
	/* The direct interface agrees. */
	ck_assert_uint_eq(pci__config_read(bus, 0x80000800u, 2), 0x1AF4);
}
END_TEST

START_TEST(bar_sizing_and_moving)
{
	uint32_t orig = cfg_rd(1, 0, PCI_BAR0, 4), other;
	struct vdesc v;

	ck_assert_uint_eq(orig & 0xF, 0);  /* 32-bit memory BAR */
	cfg_wr(1, PCI_BAR0, 4, 0xFFFFFFFFu);
	ck_assert_uint_eq(cfg_rd(1, 0, PCI_BAR0, 4),
			  (uint32_t)~(VIRTIO_PCI_BAR_SIZE - 1));
	cfg_wr(1, PCI_BAR0 + 4, 4, 0xFFFFFFFFu);
	ck_assert_uint_eq(cfg_rd(1, 0, PCI_BAR0 + 4, 4), 0);  /* unused */
	cfg_wr(1, PCI_BAR0, 4, orig);
	ck_assert_uint_eq(cfg_rd(1, 0, PCI_BAR0, 4), orig);
	/* The two devices do not overlap. */
	other = cfg_rd(2, 0, PCI_BAR0, 4);
	ck_assert(other >= orig + VIRTIO_PCI_BAR_SIZE ||
		  orig >= other + VIRTIO_PCI_BAR_SIZE);
	/* Read-only registers stay put. */
	cfg_wr(1, PCI_VENDOR_ID, 4, 0);
	ck_assert_uint_eq(cfg_rd(1, 0, 0, 4), 0x10421AF4u);

	/* Move the BAR: MMIO follows. */
	cfg_wr(1, PCI_BAR0, 4, 0xE8000000u);
	v = discover(1);
	ck_assert_uint_eq(v.bar0, 0xE8000000u);
	ck_assert_uint_eq(mrd(&v, C(&v, NUMQ), 2), 1);
	uint32_t x = 0;
	ck_assert_int_eq(pci__mmio_read(bus, orig, &x, 4), -ENOENT);
	/* Memory decoding off: nobody answers (reads all ones). */
	cfg_wr(1, PCI_COMMAND, 2, 0);
	x = 0;
	ck_assert_int_eq(pci__mmio_read(bus, 0xE8000000u, &x, 4), -ENOENT);
	ck_assert_uint_eq(x, 0xFFFFFFFFu);
	ck_assert_uint_eq(pci__bar_addr(virtio_pci__pci_dev(vp_blk), 0), 0);
}
END_TEST

START_TEST(full_driver_bringup_and_io)
{
	struct vdesc v = discover(1);
	uint64_t feat = device_features(&v), st;
	uint32_t id, len;
	uint8_t buf[512];

	ck_assert(feat & F_V1);
	ck_assert(feat & F_EVENT);
	ck_assert(feat & F_INDIRECT);
	ck_assert_uint_eq(v.mult, VIRTIO_PCI_NOTIFY_MULT);
	ck_assert(negotiate(&v, F_V1 | F_EVENT | (1ull << 9)));
	ck_assert_uint_eq(setup_queue(&v, 128), VIRTQ_MAX_SIZE);
	ck_assert_uint_eq(mrd(&v, C(&v, Q_ENABLE), 2), 1);
	ck_assert_uint_eq(mrd(&v, C(&v, Q_DESCLO), 8), d.desc);
	driver_ok(&v);
	ck_assert_uint_eq(status(&v) & VIRTIO_STATUS_DRIVER_OK,
			  VIRTIO_STATUS_DRIVER_OK);

	/* Device config: capacity in sectors. */
	ck_assert_uint_eq(mrd(&v, v.device, 8), (1 << 20) / 512);
	ck_assert_uint_eq(mrd(&v, v.device + 20, 4), 512);

	st = post_write(5, 0xC3);
	kick(&v, 0);
	ck_assert_int_eq(td_used(&d, &id, &len), 1);
	ck_assert_uint_eq(*(uint8_t *)td_ptr(&d, st), 0);
	ck_assert_int_eq(imgfmt__pread(img, buf, 512, 5 * 512), 0);
	for (int i = 0; i < 512; i++)
		ck_assert_uint_eq(buf[i], 0xC3);

	/* INTx asserted until ISR is read; reading clears both. */
	ck_assert_int_eq(irq_level[IRQ_BLK], 1);
	ck_assert_uint_eq(cfg_rd(1, 0, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT,
			  PCI_STATUS_INTERRUPT);
	ck_assert_uint_eq(mrd(&v, v.isr, 1), VIRTIO_ISR_QUEUE);
	ck_assert_int_eq(irq_level[IRQ_BLK], 0);
	ck_assert_uint_eq(mrd(&v, v.isr, 1), 0);
	ck_assert_int_eq(irq_level[IRQ_RNG], 0);

	/* Reset: everything back to zero, line low. */
	mwr(&v, C(&v, STATUS), 0, 1);
	ck_assert_uint_eq(status(&v), 0);
	ck_assert_uint_eq(mrd(&v, C(&v, Q_ENABLE), 2), 0);
	mwr(&v, C(&v, GFSELECT), 0, 4);
	ck_assert_uint_eq(mrd(&v, C(&v, GF), 4), 0);
}
END_TEST

START_TEST(feature_negotiation_refusals)
{
	struct vdesc v = discover(1);

	/* No VERSION_1: this device has no legacy interface. */
	ck_assert(!negotiate(&v, F_EVENT));
	/* A bit the device never offered. */
	ck_assert(!negotiate(&v, F_V1 | (1ull << 40)));
	ck_assert(negotiate(&v, F_V1));
	/* Features are frozen after FEATURES_OK. */
	mwr(&v, C(&v, GFSELECT), 0, 4);
	mwr(&v, C(&v, GF), 0xFFFFFFFFu, 4);
	ck_assert_uint_eq(mrd(&v, C(&v, GF), 4), 0);
	/* Out-of-range selects read zero. */
	mwr(&v, C(&v, DFSELECT), 7, 4);
	ck_assert_uint_eq(mrd(&v, C(&v, DF), 4), 0);
	mwr(&v, C(&v, Q_SELECT), 5, 2);
	ck_assert_uint_eq(mrd(&v, C(&v, Q_SIZE), 2), 0);
	mwr(&v, C(&v, Q_ENABLE), 1, 2);   /* no such queue: ignored */
	/* DRIVER_OK without FEATURES_OK does not stick. */
	mwr(&v, C(&v, STATUS), 0, 1);
	mwr(&v, C(&v, STATUS), VIRTIO_STATUS_ACKNOWLEDGE |
	    VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK, 1);
	ck_assert_uint_eq(status(&v) & VIRTIO_STATUS_DRIVER_OK, 0);
}
END_TEST

START_TEST(notify_before_driver_ok_waits)
{
	struct vdesc v = discover(1);
	uint32_t id, len;

	ck_assert(negotiate(&v, F_V1));
	setup_queue(&v, 16);
	uint64_t st = post_write(1, 0x11);
	kick(&v, 0);
	ck_assert_int_eq(td_used(&d, &id, &len), 0);
	driver_ok(&v);
	ck_assert_int_eq(td_used(&d, &id, &len), 1);
	ck_assert_uint_eq(*(uint8_t *)td_ptr(&d, st), 0);
}
END_TEST

START_TEST(bad_queue_setup_needs_reset)
{
	struct vdesc v = discover(1);

	ck_assert(negotiate(&v, F_V1));
	mwr(&v, C(&v, Q_SELECT), 0, 2);
	mwr(&v, C(&v, Q_SIZE), 100, 2);        /* not a power of two */
	mwr(&v, C(&v, Q_DESCLO), TD_GPA_BASE, 8);
	mwr(&v, C(&v, Q_AVAILLO), TD_GPA_BASE + 4096, 8);
	mwr(&v, C(&v, Q_USEDLO), TD_GPA_BASE + 8192, 8);
	mwr(&v, C(&v, Q_ENABLE), 1, 2);
	ck_assert_uint_eq(mrd(&v, C(&v, Q_ENABLE), 2), 0);
	ck_assert_uint_eq(status(&v) & VIRTIO_STATUS_NEEDS_RESET,
			  VIRTIO_STATUS_NEEDS_RESET);
	/* The driver cannot clear NEEDS_RESET except by resetting. */
	mwr(&v, C(&v, STATUS), VIRTIO_STATUS_ACKNOWLEDGE, 1);
	ck_assert_uint_eq(status(&v) & VIRTIO_STATUS_NEEDS_RESET,
			  VIRTIO_STATUS_NEEDS_RESET);
	ck_assert(negotiate(&v, F_V1));
	ck_assert_uint_eq(status(&v) & VIRTIO_STATUS_NEEDS_RESET, 0);
	/* Rings outside guest RAM. */
	mwr(&v, C(&v, Q_SIZE), 16, 2);
	mwr(&v, C(&v, Q_DESCLO), 0x1000, 8);
	mwr(&v, C(&v, Q_ENABLE), 1, 2);
	ck_assert_uint_eq(mrd(&v, C(&v, Q_ENABLE), 2), 0);
	ck_assert(status(&v) & VIRTIO_STATUS_NEEDS_RESET);
}
END_TEST

START_TEST(broken_ring_after_driver_ok_raises_config_irq)
{
	struct vdesc v = discover(1);

	ck_assert(negotiate(&v, F_V1));
	setup_queue(&v, 16);
	driver_ok(&v);
	__atomic_store_n(td_avail_idx(&d), 100, __ATOMIC_RELEASE);
	kick(&v, 0);
	ck_assert(status(&v) & VIRTIO_STATUS_NEEDS_RESET);
	ck_assert_int_eq(irq_level[IRQ_BLK], 1);
	ck_assert_uint_eq(mrd(&v, v.isr, 1), VIRTIO_ISR_CONFIG);
}
END_TEST

START_TEST(intx_disable_masks_the_line)
{
	struct vdesc v = discover(1);
	uint16_t cmd = (uint16_t)cfg_rd(1, 0, PCI_COMMAND, 2);

	ck_assert(negotiate(&v, F_V1));
	setup_queue(&v, 16);
	driver_ok(&v);
	cfg_wr(1, PCI_COMMAND, 2, cmd | PCI_COMMAND_INTX_DISABLE);
	post_write(2, 1);
	kick(&v, 0);
	ck_assert_int_eq(irq_level[IRQ_BLK], 0);
	/* The status bit still shows the pending interrupt... */
	ck_assert(cfg_rd(1, 0, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
	/* ...and re-enabling INTx delivers it. */
	cfg_wr(1, PCI_COMMAND, 2, cmd);
	ck_assert_int_eq(irq_level[IRQ_BLK], 1);
	ck_assert_uint_eq(mrd(&v, v.isr, 1), VIRTIO_ISR_QUEUE);
	ck_assert_int_eq(irq_level[IRQ_BLK], 0);
}
END_TEST

START_TEST(pci_cfg_window_reaches_the_bar)
{
	struct vdesc v = discover(1);
	int at = v.pcicfg;

	/* Read device_feature (select 0) through config space. */
	cfg_wr(1, at + 4, 1, 0);                          /* bar */
	cfg_wr(1, at + 8, 4, v.common + VIRTIO_PCI_COMMON_DF); /* offset */
	cfg_wr(1, at + 12, 4, 4);                         /* length */
	mwr(&v, C(&v, DFSELECT), 1, 4);
	ck_assert_uint_eq(cfg_rd(1, 0, at + 16, 4), 1);   /* VERSION_1 */
	/* Write the status register through it. */
	cfg_wr(1, at + 8, 4, v.common + VIRTIO_PCI_COMMON_STATUS);
	cfg_wr(1, at + 12, 4, 1);
	cfg_wr(1, at + 16, 1, VIRTIO_STATUS_ACKNOWLEDGE);
	ck_assert_uint_eq(status(&v), VIRTIO_STATUS_ACKNOWLEDGE);
	/* Bad lengths / BARs / offsets are ignored. */
	cfg_wr(1, at + 12, 4, 3);
	cfg_wr(1, at + 16, 4, 0);
	cfg_wr(1, at + 12, 4, 4);
	cfg_wr(1, at + 8, 4, 0xFFFFFFF0u);
	cfg_wr(1, at + 16, 4, 0);
	cfg_wr(1, at + 4, 1, 3);
	cfg_wr(1, at + 16, 4, 0);
	ck_assert_uint_eq(status(&v), VIRTIO_STATUS_ACKNOWLEDGE);
}
END_TEST

START_TEST(hostile_accesses_are_harmless)
{
	struct vdesc v = discover(1);
	uint64_t x;
	uint32_t val;

	/* Odd sizes and ranges on the bus. */
	ck_assert_int_eq(pci__mmio_read(bus, v.bar0, &x, 3), -ENOENT);
	ck_assert_int_eq(pci__mmio_read(bus, v.bar0 + VIRTIO_PCI_BAR_SIZE - 2,
					&x, 4), -ENOENT);
	ck_assert_int_eq(pci__mmio_read(bus, 0, &x, 4), -ENOENT);
	ck_assert_int_eq(pci__mmio_read(bus, UINT64_MAX - 1, &x, 8), -ENOENT);
	pci__io_read(bus, 0xCF9, 1, &val);
	pci__io_read(bus, 0xD00, 4, &val);
	ck_assert_uint_eq(val, 0xFFFFFFFFu);
	pci__io_write(bus, 0xCFD, 2, 0x1234);     /* unaligned word */
	ck_assert_uint_eq(pci__config_read(bus, 0x80000801u, 2), 0xFFFF);
	ck_assert_uint_eq(pci__config_read(bus, 0x80000800u, 3), 0xFFFFFFFFu);
	/* Writes everywhere in the BAR, every size: nothing breaks. */
	for (uint64_t off = 0; off < VIRTIO_PCI_BAR_SIZE; off += 4) {
		x = 0xFFFFFFFFFFFFFFFFull;
		if (off == v.common + VIRTIO_PCI_COMMON_STATUS)
			continue;          /* a reset is not the point here */
		pci__mmio_write(bus, v.bar0 + off, &x, 1);
		pci__mmio_write(bus, v.bar0 + off, &x, 4);
		pci__mmio_read(bus, v.bar0 + off, &x, 8);
	}
	/* Config space scribbles on every register of the device. */
	for (int reg = 0; reg < 256; reg += 4)
		if (reg != PCI_BAR0 && reg != PCI_COMMAND)
			cfg_wr(1, reg, 4, 0xFFFFFFFFu);
	ck_assert_uint_eq(cfg_rd(1, 0, 0, 4), 0x10421AF4u);
	ck_assert_uint_eq(cfg_rd(1, 0, PCI_CAPABILITY_LIST, 1), 0x40);
	v = discover(1);
	ck_assert(negotiate(&v, F_V1));
}
END_TEST

START_TEST(rng_fills_buffers)
{
	struct vdesc v = discover(2);
	uint64_t a = td_alloc(&d, 256, 8), b = td_alloc(&d, 256, 8);
	struct tbuf bufs[2] = { { a, 256, 1 }, { b, 256, 1 } };
	uint32_t id, len;
	int nonzero = 0;

	ck_assert_uint_eq(v.device_len, 4);   /* no config of its own */
	ck_assert(negotiate(&v, F_V1 | F_INDIRECT));
	setup_queue(&v, 8);
	driver_ok(&v);
	td_post(&d, bufs, 2, 1);
	kick(&v, 0);
	ck_assert_int_eq(td_used(&d, &id, &len), 1);
	ck_assert_uint_eq(len, 512);
	for (int i = 0; i < 256; i++)
		nonzero += ((uint8_t *)td_ptr(&d, a))[i] != 0;
	ck_assert_int_gt(nonzero, 128);
	ck_assert_mem_ne(td_ptr(&d, a), td_ptr(&d, b), 256);
	ck_assert_int_eq(irq_level[IRQ_RNG], 1);
	ck_assert_int_eq(irq_level[IRQ_BLK], 0);
}
END_TEST

START_TEST(bus_rejects_bad_setups)
{
	struct pci_bus *b2;
	struct pci_bus_config bad = { .mmio_base = 0xFFFFF000u,
				      .mmio_size = 0x2000, .set_irq = set_irq };
	struct pci_bus_config tiny = { .mmio_base = 0xE0000000u,
				       .mmio_size = 0x4000, .set_irq = set_irq,
				       .irq_opaque = &irq_level };
	struct virtio_dev *r1, *r2;
	struct virtio_pci *p1, *p2;

	ck_assert_int_eq(pci__bus_new(&bad, &b2), -EINVAL);
	ck_assert_ptr_nonnull(strstr(pci__error(), "MMIO window"));
	/* A window with room for one device: the second is refused. */
	ck_assert_int_eq(pci__bus_new(&tiny, &b2), 0);
	ck_assert_int_eq(virtio_rng__new(&d.mem, &r1), 0);
	ck_assert_int_eq(virtio_rng__new(&d.mem, &r2), 0);
	ck_assert_int_eq(virtio_pci__new(b2, r1, 5, &p1), 0);
	ck_assert_int_eq(virtio_pci__new(b2, r2, 6, &p2), -ENOSPC);
	ck_assert_ptr_nonnull(strstr(virtio__error(), "window full"));
	virtio__dev_free(r2);
	virtio_pci__free(p1);
	pci__bus_free(b2);
}
END_TEST

START_TEST(no_msix_without_msi_delivery)
{
	struct vdesc v = discover(1);

	ck_assert_int_eq(v.msix, 0);
	/* Vector registers refuse any vector. */
	mwr(&v, C(&v, MSIX), 0, 2);
	ck_assert_uint_eq(mrd(&v, C(&v, MSIX), 2), VIRTIO_MSI_NO_VECTOR);
}
END_TEST

/* Program MSI-X entry `i` (unmasked) with a recognisable message. */
static void msix_entry(const struct vdesc *v, uint32_t i, int masked)
{
	uint64_t e = v->msix_table + 16ull * i;

	mwr(v, e, 0xFEE00000u + 0x1000 * i, 4);
	mwr(v, e + 4, 0, 4);
	mwr(v, e + 8, 0x40 + i, 4);
	mwr(v, e + 12, masked ? 1 : 0, 4);
}

START_TEST(msix_delivers_per_queue_vectors)
{
	struct vdesc v = discover(1);
	uint32_t id, len;

	ck_assert_int_ne(v.msix, 0);
	ck_assert_uint_eq(v.msix_n, 2);            /* config + 1 queue */
	ck_assert_uint_eq(v.msix_table & 7, 0);    /* BIR 0 */
	/* Entries start masked. */
	ck_assert_uint_eq(mrd(&v, v.msix_table + 12, 4), 1);
	msix_entry(&v, 0, 0);
	msix_entry(&v, 1, 0);
	ck_assert_uint_eq(mrd(&v, v.msix_table + 16 + 8, 4), 0x41);
	/* Enable MSI-X (and bus mastering, which Linux sets). */
	cfg_wr(1, PCI_COMMAND, 2, cfg_rd(1, 0, PCI_COMMAND, 2) |
	       PCI_COMMAND_MASTER);
	cfg_wr(1, v.msix + 2, 2, 0x8000);
	ck_assert(negotiate(&v, F_V1));
	mwr(&v, C(&v, MSIX), 0, 2);
	ck_assert_uint_eq(mrd(&v, C(&v, MSIX), 2), 0);
	setup_queue(&v, 16);
	mwr(&v, C(&v, Q_MSIX), 1, 2);
	ck_assert_uint_eq(mrd(&v, C(&v, Q_MSIX), 2), 1);
	mwr(&v, C(&v, Q_MSIX), 7, 2);              /* no such vector */
	ck_assert_uint_eq(mrd(&v, C(&v, Q_MSIX), 2), VIRTIO_MSI_NO_VECTOR);
	mwr(&v, C(&v, Q_MSIX), 1, 2);
	driver_ok(&v);

	post_write(1, 0xAA);
	kick(&v, 0);
	ck_assert_int_eq(td_used(&d, &id, &len), 1);
	ck_assert_int_eq(msi_count, 1);
	ck_assert_uint_eq(msi_addr, 0xFEE01000u);
	ck_assert_uint_eq(msi_data, 0x41);
	ck_assert_int_eq(irq_level[IRQ_BLK], 0);     /* no INTx */
	ck_assert_uint_eq(mrd(&v, v.isr, 1), 0);

	/* Masked: held in the PBA, sent on unmask. */
	mwr(&v, v.msix_table + 16 + 12, 1, 4);
	post_write(2, 0xBB);
	kick(&v, 0);
	ck_assert_int_eq(msi_count, 1);
	ck_assert_uint_eq(mrd(&v, v.msix_pba, 4), 2);
	mwr(&v, v.msix_table + 16 + 12, 0, 4);
	ck_assert_int_eq(msi_count, 2);
	ck_assert_uint_eq(mrd(&v, v.msix_pba, 4), 0);

	/* Function mask works the same way. */
	cfg_wr(1, v.msix + 2, 2, 0xC000);
	post_write(3, 0xCC);
	kick(&v, 0);
	ck_assert_int_eq(msi_count, 2);
	cfg_wr(1, v.msix + 2, 2, 0x8000);
	ck_assert_int_eq(msi_count, 3);

	/* A broken ring raises the configuration vector. */
	__atomic_store_n(td_avail_idx(&d), 200, __ATOMIC_RELEASE);
	kick(&v, 0);
	ck_assert_int_eq(msi_count, 4);
	ck_assert_uint_eq(msi_data, 0x40);

	/* Reset forgets the vector mapping. */
	mwr(&v, C(&v, STATUS), 0, 1);
	ck_assert_uint_eq(mrd(&v, C(&v, MSIX), 2), VIRTIO_MSI_NO_VECTOR);
}
END_TEST

START_TEST(msix_without_bus_master_or_vector_is_silent)
{
	struct vdesc v = discover(1);
	uint32_t id, len;

	msix_entry(&v, 0, 0);
	msix_entry(&v, 1, 0);
	cfg_wr(1, v.msix + 2, 2, 0x8000);
	cfg_wr(1, PCI_COMMAND, 2, cfg_rd(1, 0, PCI_COMMAND, 2) &
	       ~PCI_COMMAND_MASTER);
	ck_assert(negotiate(&v, F_V1));
	setup_queue(&v, 16);
	mwr(&v, C(&v, Q_MSIX), 1, 2);
	driver_ok(&v);
	post_write(1, 1);
	kick(&v, 0);
	ck_assert_int_eq(td_used(&d, &id, &len), 1);
	ck_assert_int_eq(msi_count, 0);     /* no bus mastering */
	cfg_wr(1, PCI_COMMAND, 2, cfg_rd(1, 0, PCI_COMMAND, 2) |
	       PCI_COMMAND_MASTER);
	mwr(&v, C(&v, Q_SELECT), 0, 2);
	mwr(&v, C(&v, Q_MSIX), VIRTIO_MSI_NO_VECTOR, 2);
	post_write(2, 2);
	kick(&v, 0);
	ck_assert_int_eq(td_used(&d, &id, &len), 1);
	ck_assert_int_eq(msi_count, 0);     /* queue has no vector */
	ck_assert_int_eq(irq_level[IRQ_BLK], 0);
	/* Hostile table accesses: odd sizes, past the table. */
	uint32_t x = 0xFFFFFFFF;
	pci__mmio_write(bus, v.bar0 + v.msix_table + 2, &x, 2);
	pci__mmio_write(bus, v.bar0 + v.msix_table + 16 * 40, &x, 4);
	pci__mmio_write(bus, v.bar0 + v.msix_pba, &x, 4);
	ck_assert_uint_eq(mrd(&v, v.msix_pba, 4), 0);
	/* MSI-X off again: back to INTx. */
	cfg_wr(1, v.msix + 2, 2, 0);
	post_write(3, 3);
	kick(&v, 0);
	ck_assert_int_eq(irq_level[IRQ_BLK], 1);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("virtio_pci");
	TCase *tc = tcase_create("virtio_pci");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, conf1_probe_finds_bridge_and_devices);
	tcase_add_test(tc, bar_sizing_and_moving);
	tcase_add_test(tc, full_driver_bringup_and_io);
	tcase_add_test(tc, feature_negotiation_refusals);
	tcase_add_test(tc, notify_before_driver_ok_waits);
	tcase_add_test(tc, bad_queue_setup_needs_reset);
	tcase_add_test(tc, broken_ring_after_driver_ok_raises_config_irq);
	tcase_add_test(tc, intx_disable_masks_the_line);
	tcase_add_test(tc, pci_cfg_window_reaches_the_bar);
	tcase_add_test(tc, hostile_accesses_are_harmless);
	tcase_add_test(tc, rng_fills_buffers);
	tcase_add_test(tc, bus_rejects_bad_setups);
	tcase_add_test(tc, no_msix_without_msi_delivery);
	suite_add_tcase(s, tc);
	TCase *tm = tcase_create("virtio_pci_msix");
	tcase_add_checked_fixture(tm, setup_msi, teardown);
	tcase_add_test(tm, msix_delivers_per_queue_vectors);
	tcase_add_test(tm, msix_without_bus_master_or_vector_is_silent);
	tcase_add_test(tm, full_driver_bringup_and_io);
	tcase_add_test(tm, hostile_accesses_are_harmless);
	tcase_add_test(tm, pci_cfg_window_reaches_the_bar);
	suite_add_tcase(s, tm);
	return fx_run_suite(s);
}
