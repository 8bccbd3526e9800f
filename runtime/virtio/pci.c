/*
 * pci.c - the virtio-pci transport, modern interface only (virtio 1.2,
 * 4.1).  Layout and usage are in virtio-pci.h.
 *
 * Locks, outermost first: the bus lock (config-space hooks run under it),
 * vp->lock (transport registers), a queue's lock (the device model works
 * under it), vp->irq_lock (ISR + the INTx level), the bus's irq lock.  The
 * model raises interrupts while holding its queue lock, which is why ISR
 * has a lock of its own instead of living under vp->lock.
 *
 * MSI-X (when the bus can deliver MSIs): one vector for configuration
 * changes and one per queue at most, a table and PBA in BAR0.  irq_lock
 * covers the table, the PBA and the vector registers too, since it is
 * what the interrupt path holds.
 */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/virtio/virtio-pci.h"

struct msix_entry {
	uint32_t addr_lo, addr_hi, data, ctrl;
};

#define MSIX_MAX_VECTORS (VIRTIO_MAX_QUEUES + 1)

struct virtio_pci {
	struct pci_dev pci;
	struct virtio_dev *vdev;
	pthread_mutex_t lock;
	pthread_mutex_t irq_lock;
	uint32_t dfselect, gfselect;
	uint16_t queue_select;
	uint8_t isr;
	/* MSI-X, under irq_lock */
	int msix;                        /* capability present */
	uint16_t nvec;
	uint16_t config_vec;
	uint16_t queue_vec[VIRTIO_MAX_QUEUES];
	struct msix_entry table[MSIX_MAX_VECTORS];
	uint64_t pba;
};

/* Where the capabilities sit in config space. */
#define CAP_COMMON 0x40
#define CAP_ISR 0x50
#define CAP_DEVICE 0x60
#define CAP_NOTIFY 0x70     /* 20 bytes: + notify_off_multiplier */
#define CAP_PCICFG 0x84     /* 20 bytes: + pci_cfg_data */
#define CAP_PCICFG_BAR (CAP_PCICFG + 4)
#define CAP_PCICFG_OFFSET (CAP_PCICFG + 8)
#define CAP_PCICFG_LENGTH (CAP_PCICFG + 12)
#define CAP_PCICFG_DATA (CAP_PCICFG + 16)
#define CAP_MSIX 0x98       /* 12 bytes */
#define MSIX_CTRL (CAP_MSIX + 2)
#define MSIX_ENABLE 0x8000
#define MSIX_FMASK 0x4000
#define MSIX_TABLE_OFF 0x3800
#define MSIX_PBA_OFF 0x3C00
#define MSIX_ENTRY_MASKED 1

static void put16(uint8_t *p, uint16_t v)
{
	v = htole16(v);
	memcpy(p, &v, 2);
}

static void put32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
}

static void put64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return le32toh(v);
}

static uint64_t load_le(const void *data, uint32_t size)
{
	uint64_t v = 0;

	memcpy(&v, data, size > 8 ? 8 : size);
	return le64toh(v);
}

static uint8_t status_get(struct virtio_dev *vdev)
{
	return __atomic_load_n(&vdev->status, __ATOMIC_RELAXED);
}

/* ---- interrupts ------------------------------------------------------ */

static uint16_t msix_ctrl(struct virtio_pci *vp)
{
	return (uint16_t)(__atomic_load_n(&vp->pci.cfg[MSIX_CTRL],
					  __ATOMIC_RELAXED) |
			  __atomic_load_n(&vp->pci.cfg[MSIX_CTRL + 1],
					  __ATOMIC_RELAXED) << 8);
}

static int msix_on(struct virtio_pci *vp)
{
	return vp->msix && (msix_ctrl(vp) & MSIX_ENABLE);
}

/* Send vector `v` now, or leave it pending while it is masked (PCI 3.0,
 * 6.8.2.9).  irq_lock held. */
static void msix_fire(struct virtio_pci *vp, uint16_t v)
{
	const struct msix_entry *e = &vp->table[v];

	if ((msix_ctrl(vp) & MSIX_FMASK) || (e->ctrl & MSIX_ENTRY_MASKED)) {
		vp->pba |= 1ull << v;
		return;
	}
	vp->pba &= ~(1ull << v);
	pci__send_msi(&vp->pci, (uint64_t)e->addr_hi << 32 | e->addr_lo,
		      e->data);
}

/* Deliver pending vectors that are no longer masked.  irq_lock held. */
static void msix_flush_pending(struct virtio_pci *vp)
{
	if (!msix_on(vp) || (msix_ctrl(vp) & MSIX_FMASK))
		return;
	for (uint16_t v = 0; v < vp->nvec; v++)
		if ((vp->pba & (1ull << v)) &&
		    !(vp->table[v].ctrl & MSIX_ENTRY_MASKED))
			msix_fire(vp, v);
}

static void vp_signal(struct virtio_dev *vdev, unsigned bits, int q)
{
	struct virtio_pci *vp = vdev->transport;

	pthread_mutex_lock(&vp->irq_lock);
	if (msix_on(vp)) {
		/* 4.1.4.5: with MSI-X the ISR is not used; an unmapped
		 * event (NO_VECTOR) is simply not signalled. */
		uint16_t v = q < 0 ? vp->config_vec :
			     q < VIRTIO_MAX_QUEUES ? vp->queue_vec[q] :
			     VIRTIO_MSI_NO_VECTOR;

		if (v < vp->nvec)
			msix_fire(vp, v);
	} else {
		vp->isr |= (uint8_t)bits;
		pci__set_irq(&vp->pci, 1);
	}
	pthread_mutex_unlock(&vp->irq_lock);
}

/* A vector register write: keep it if it names a vector we have, else
 * NO_VECTOR, which the driver reads back as "mapping failed"
 * (4.1.4.3 / 4.1.5.1.2). */
static void set_vector(struct virtio_pci *vp, uint16_t *reg, uint16_t v)
{
	pthread_mutex_lock(&vp->irq_lock);
	*reg = vp->msix && v < vp->nvec ? v : VIRTIO_MSI_NO_VECTOR;
	pthread_mutex_unlock(&vp->irq_lock);
}

/* Reading ISR status returns and clears it and drops INTx (4.1.4.5). */
static uint8_t isr_read_clear(struct virtio_pci *vp)
{
	uint8_t v;

	pthread_mutex_lock(&vp->irq_lock);
	v = vp->isr;
	vp->isr = 0;
	pci__set_irq(&vp->pci, 0);
	pthread_mutex_unlock(&vp->irq_lock);
	return v;
}

/* ---- common configuration ------------------------------------------- */

/* The structure as the driver would see it right now.  Called with
 * vp->lock held. */
static void common_snapshot(struct virtio_pci *vp,
			    uint8_t b[VIRTIO_PCI_COMMON_LEN])
{
	struct virtio_dev *vdev = vp->vdev;
	uint16_t q = vp->queue_select;

	memset(b, 0, VIRTIO_PCI_COMMON_LEN);
	put32(b + VIRTIO_PCI_COMMON_DFSELECT, vp->dfselect);
	if (vp->dfselect < 2)
		put32(b + VIRTIO_PCI_COMMON_DF,
		      (uint32_t)(vdev->features >> (32 * vp->dfselect)));
	put32(b + VIRTIO_PCI_COMMON_GFSELECT, vp->gfselect);
	if (vp->gfselect < 2)
		put32(b + VIRTIO_PCI_COMMON_GF,
		      (uint32_t)(vdev->driver_features >> (32 * vp->gfselect)));
	pthread_mutex_lock(&vp->irq_lock);
	put16(b + VIRTIO_PCI_COMMON_MSIX, vp->config_vec);
	put16(b + VIRTIO_PCI_COMMON_Q_MSIX, q < vdev->num_queues ?
	      vp->queue_vec[q] : VIRTIO_MSI_NO_VECTOR);
	pthread_mutex_unlock(&vp->irq_lock);
	put16(b + VIRTIO_PCI_COMMON_NUMQ, (uint16_t)vdev->num_queues);
	b[VIRTIO_PCI_COMMON_STATUS] = status_get(vdev);
	b[VIRTIO_PCI_COMMON_CFGGENERATION] =
		__atomic_load_n(&vdev->config_generation, __ATOMIC_RELAXED);
	put16(b + VIRTIO_PCI_COMMON_Q_SELECT, q);
	if (q < vdev->num_queues) {
		struct virtq *vq = &vdev->vqs[q];

		put16(b + VIRTIO_PCI_COMMON_Q_SIZE, vq->num);
		put16(b + VIRTIO_PCI_COMMON_Q_ENABLE, (uint16_t)vq->ready);
		put16(b + VIRTIO_PCI_COMMON_Q_NOFF, q);
		put64(b + VIRTIO_PCI_COMMON_Q_DESCLO, vq->desc_gpa);
		put64(b + VIRTIO_PCI_COMMON_Q_AVAILLO, vq->avail_gpa);
		put64(b + VIRTIO_PCI_COMMON_Q_USEDLO, vq->used_gpa);
	}
}

static void set_half(uint64_t *field, int high, uint64_t v, uint32_t size)
{
	if (size == 8 && !high)
		*field = v;
	else if (size == 4 && high)
		*field = (*field & 0xFFFFFFFFull) | (v << 32);
	else if (size == 4)
		*field = (*field & ~0xFFFFFFFFull) | (v & 0xFFFFFFFFull);
}

/* The status the device keeps when the driver writes `v` over `old`. */
static uint8_t status_accept(struct virtio_dev *vdev, uint8_t old, uint8_t v)
{
	/* NEEDS_RESET is the device's to set; only a reset clears it. */
	v = (uint8_t)((v & ~VIRTIO_STATUS_NEEDS_RESET) |
		      (old & VIRTIO_STATUS_NEEDS_RESET));
	if ((v & VIRTIO_STATUS_FEATURES_OK) &&
	    !(old & VIRTIO_STATUS_FEATURES_OK)) {
		/* 3.1.1: the device refuses a subset it cannot serve by
		 * leaving FEATURES_OK clear; we also insist on VERSION_1
		 * since there is no legacy interface here. */
		if ((vdev->driver_features & ~vdev->features) ||
		    !(vdev->driver_features & (1ull << VIRTIO_F_VERSION_1)))
			v &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK;
	}
	if ((v & VIRTIO_STATUS_DRIVER_OK) && !(v & VIRTIO_STATUS_FEATURES_OK))
		v &= (uint8_t)~VIRTIO_STATUS_DRIVER_OK;
	return v;
}

/* Called with vp->lock held.  Returns 1 if every queue should be kicked
 * (the driver just set DRIVER_OK). */
static int status_write(struct virtio_pci *vp, uint8_t v)
{
	struct virtio_dev *vdev = vp->vdev;
	uint8_t old, nv;

	if (v == 0) {
		virtio__reset(vdev);
		vp->dfselect = vp->gfselect = 0;
		vp->queue_select = 0;
		isr_read_clear(vp);
		pthread_mutex_lock(&vp->irq_lock);
		vp->config_vec = VIRTIO_MSI_NO_VECTOR;
		for (int i = 0; i < VIRTIO_MAX_QUEUES; i++)
			vp->queue_vec[i] = VIRTIO_MSI_NO_VECTOR;
		pthread_mutex_unlock(&vp->irq_lock);
		return 0;
	}
	/* A queue worker may set NEEDS_RESET at any moment: update with a
	 * compare-and-swap so that bit is never lost. */
	old = status_get(vdev);
	do {
		nv = status_accept(vdev, old, v);
	} while (!__atomic_compare_exchange_n(&vdev->status, &old, nv, 0,
					      __ATOMIC_RELAXED,
					      __ATOMIC_RELAXED));
	return (nv & VIRTIO_STATUS_DRIVER_OK) && !(old &
						   VIRTIO_STATUS_DRIVER_OK);
}

static void queue_enable(struct virtio_pci *vp, struct virtq *vq)
{
	struct virtio_dev *vdev = vp->vdev;
	int r;

	/* Queues are set up after feature negotiation (3.1.1 step 7); the
	 * ring features decide how the ring is used. */
	if (!(status_get(vdev) & VIRTIO_STATUS_FEATURES_OK) || vq->ready)
		return;
	pthread_mutex_lock(&vq->lock);
	r = virtq__enable(vq, vdev->mem, vdev->driver_features);
	pthread_mutex_unlock(&vq->lock);
	if (r < 0)
		virtio__needs_reset(vdev);
}

/* Called with vp->lock held; returns 1 if all queues need a kick. */
static int common_write(struct virtio_pci *vp, uint64_t off, uint64_t v,
			uint32_t size)
{
	struct virtio_dev *vdev = vp->vdev;
	struct virtq *vq = vp->queue_select < vdev->num_queues ?
			   &vdev->vqs[vp->queue_select] : NULL;
	int configurable = vq && !vq->ready;

	switch (off) {
	case VIRTIO_PCI_COMMON_DFSELECT:
		if (size == 4)
			vp->dfselect = (uint32_t)v;
		break;
	case VIRTIO_PCI_COMMON_GFSELECT:
		if (size == 4)
			vp->gfselect = (uint32_t)v;
		break;
	case VIRTIO_PCI_COMMON_GF:
		if (size == 4 && vp->gfselect < 2 &&
		    !(status_get(vdev) & VIRTIO_STATUS_FEATURES_OK)) {
			int sh = 32 * (int)vp->gfselect;

			vdev->driver_features &= ~(0xFFFFFFFFull << sh);
			vdev->driver_features |= (v & 0xFFFFFFFFull) << sh;
		}
		break;
	case VIRTIO_PCI_COMMON_STATUS:
		if (size == 1)
			return status_write(vp, (uint8_t)v);
		break;
	case VIRTIO_PCI_COMMON_Q_SELECT:
		if (size == 2)
			vp->queue_select = (uint16_t)v;
		break;
	case VIRTIO_PCI_COMMON_MSIX:
		if (size == 2)
			set_vector(vp, &vp->config_vec, (uint16_t)v);
		break;
	case VIRTIO_PCI_COMMON_Q_MSIX:
		if (size == 2 && vq)
			set_vector(vp, &vp->queue_vec[vp->queue_select],
				   (uint16_t)v);
		break;
	case VIRTIO_PCI_COMMON_Q_SIZE:
		if (size == 2 && configurable)
			vq->num = (uint16_t)v;   /* checked at enable */
		break;
	case VIRTIO_PCI_COMMON_Q_ENABLE:
		/* Writing 0 is not allowed (4.1.4.3.2); ignore it. */
		if (size == 2 && v == 1 && vq)
			queue_enable(vp, vq);
		break;
	case VIRTIO_PCI_COMMON_Q_DESCLO:
	case VIRTIO_PCI_COMMON_Q_DESCHI:
		if (configurable)
			set_half(&vq->desc_gpa,
				 off == VIRTIO_PCI_COMMON_Q_DESCHI, v, size);
		break;
	case VIRTIO_PCI_COMMON_Q_AVAILLO:
	case VIRTIO_PCI_COMMON_Q_AVAILHI:
		if (configurable)
			set_half(&vq->avail_gpa,
				 off == VIRTIO_PCI_COMMON_Q_AVAILHI, v, size);
		break;
	case VIRTIO_PCI_COMMON_Q_USEDLO:
	case VIRTIO_PCI_COMMON_Q_USEDHI:
		if (configurable)
			set_half(&vq->used_gpa,
				 off == VIRTIO_PCI_COMMON_Q_USEDHI, v, size);
		break;
	default:
		/* Read-only fields, the middle of a field: ignored. */
		break;
	}
	return 0;
}

/* ---- BAR0 -------------------------------------------------------------- */

/* MSI-X table and PBA, dword by dword (aligned 4- and 8-byte accesses,
 * as PCI 3.0 6.8.2 allows).  Returns 1 if `off` is in either. */
static int msix_bar_access(struct virtio_pci *vp, uint64_t off, uint8_t *p,
			   uint32_t size, int write)
{
	uint64_t tend = MSIX_TABLE_OFF + 16ull * vp->nvec;

	if (!vp->msix || off < MSIX_TABLE_OFF)
		return 0;
	if ((size != 4 && size != 8) || (off & (size - 1)))
		return 1;
	pthread_mutex_lock(&vp->irq_lock);
	for (uint32_t i = 0; i < size; i += 4) {
		uint64_t o = off + i;
		uint32_t v;

		if (o + 4 <= tend) {
			uint32_t *dw = &vp->table[(o - MSIX_TABLE_OFF) / 16]
				       .addr_lo + ((o - MSIX_TABLE_OFF) % 16) / 4;
			if (write) {
				memcpy(&v, p + i, 4);
				*dw = le32toh(v);
				/* Only the mask bit of vector control is
				 * defined; a write may unmask a pending
				 * vector. */
				if ((o - MSIX_TABLE_OFF) % 16 == 12) {
					*dw &= MSIX_ENTRY_MASKED;
					msix_flush_pending(vp);
				}
			} else {
				v = htole32(*dw);
				memcpy(p + i, &v, 4);
			}
		} else if (o >= MSIX_PBA_OFF && o + 4 <= MSIX_PBA_OFF + 8 &&
			   !write) {
			v = htole32((uint32_t)(vp->pba >> (8 * (o -
							       MSIX_PBA_OFF))));
			memcpy(p + i, &v, 4);
		}
	}
	pthread_mutex_unlock(&vp->irq_lock);
	return 1;
}

void virtio_pci__bar_read(struct virtio_pci *vp, uint64_t off, void *data,
			  uint32_t size)
{
	struct virtio_dev *vdev = vp->vdev;
	uint8_t *out = data;

	if (size == 0 || size > 8)
		return;
	memset(out, 0, size);
	if (off >= VIRTIO_PCI_BAR_SIZE || size > VIRTIO_PCI_BAR_SIZE - off)
		return;
	if (off < VIRTIO_PCI_COMMON_LEN) {
		uint8_t b[VIRTIO_PCI_COMMON_LEN];

		if (off + size > VIRTIO_PCI_COMMON_LEN)
			return;
		pthread_mutex_lock(&vp->lock);
		common_snapshot(vp, b);
		pthread_mutex_unlock(&vp->lock);
		memcpy(out, b + off, size);
	} else if (off == VIRTIO_PCI_ISR_OFF) {
		out[0] = isr_read_clear(vp);
	} else if (off >= VIRTIO_PCI_DEVICE_OFF &&
		   off < VIRTIO_PCI_NOTIFY_OFF) {
		uint64_t o = off - VIRTIO_PCI_DEVICE_OFF;

		pthread_mutex_lock(&vp->lock);
		for (uint32_t i = 0; i < size; i++)
			if (o + i < vdev->config_len)
				out[i] = vdev->config[o + i];
		pthread_mutex_unlock(&vp->lock);
	} else {
		/* MSI-X; the notify area reads as zero. */
		msix_bar_access(vp, off, out, size, 0);
	}
}

void virtio_pci__bar_write(struct virtio_pci *vp, uint64_t off,
			   const void *data, uint32_t size)
{
	struct virtio_dev *vdev = vp->vdev;
	uint64_t v;
	int kick_all = 0;

	if (size == 0 || size > 8 || off >= VIRTIO_PCI_BAR_SIZE ||
	    size > VIRTIO_PCI_BAR_SIZE - off)
		return;
	v = load_le(data, size);
	if (off < VIRTIO_PCI_COMMON_LEN) {
		pthread_mutex_lock(&vp->lock);
		kick_all = common_write(vp, off, v, size);
		pthread_mutex_unlock(&vp->lock);
	} else if (msix_bar_access(vp, off, (uint8_t *)&v, size, 1)) {
		/* MSI-X table */
	} else if (off >= VIRTIO_PCI_NOTIFY_OFF) {
		uint64_t q = (off - VIRTIO_PCI_NOTIFY_OFF) /
			     VIRTIO_PCI_NOTIFY_MULT;

		/* The queue is named by where the write lands; the value
		 * (the queue index without NOTIFICATION_DATA) adds nothing. */
		if (q < (uint64_t)vdev->num_queues)
			virtio__kick(vdev, (int)q);
	} else if (off >= VIRTIO_PCI_DEVICE_OFF) {
		uint64_t o = off - VIRTIO_PCI_DEVICE_OFF;
		uint64_t lo = vdev->config_wr_off,
			 hi = lo + vdev->config_wr_len;

		if (o >= lo && o + size <= hi && hi <= vdev->config_len) {
			pthread_mutex_lock(&vp->lock);
			memcpy(vdev->config + o, data, size);
			if (vdev->ops->config_write)
				vdev->ops->config_write(vdev, (uint32_t)o,
							size);
			pthread_mutex_unlock(&vp->lock);
		}
	}
	/* Buffers made available before DRIVER_OK were not processed
	 * (3.1.1: the device must not use them earlier); do it now. */
	if (kick_all)
		for (int q = 0; q < vdev->num_queues; q++)
			virtio__kick(vdev, q);
}

/* ---- PCI glue ---------------------------------------------------------- */

static void vp_pci_bar_read(struct pci_dev *dev, int bar, uint64_t off,
			    void *data, uint32_t size)
{
	if (bar == 0)
		virtio_pci__bar_read(dev->opaque, off, data, size);
}

static void vp_pci_bar_write(struct pci_dev *dev, int bar, uint64_t off,
			     const void *data, uint32_t size)
{
	if (bar == 0)
		virtio_pci__bar_write(dev->opaque, off, data, size);
}

/* The VIRTIO_PCI_CAP_PCI_CFG window (4.1.4.9): the driver names a BAR,
 * offset and length in the capability, then reads or writes pci_cfg_data
 * to access that BAR through config space. */
static int pcicfg_target(struct pci_dev *dev, uint64_t *off, uint32_t *len)
{
	*off = get32(dev->cfg + CAP_PCICFG_OFFSET);
	*len = get32(dev->cfg + CAP_PCICFG_LENGTH);
	return dev->cfg[CAP_PCICFG_BAR] == 0 &&
	       (*len == 1 || *len == 2 || *len == 4) && !(*off & (*len - 1)) &&
	       *off < VIRTIO_PCI_BAR_SIZE;
}

static int touches_data(uint32_t off, uint32_t size)
{
	return off < CAP_PCICFG_DATA + 4 && off + size > CAP_PCICFG_DATA;
}

static void vp_cfg_write(struct pci_dev *dev, uint32_t off, uint32_t size)
{
	struct virtio_pci *vp = dev->opaque;
	uint64_t bar_off;
	uint32_t len;

	if (vp->msix && off < MSIX_CTRL + 2 && off + size > MSIX_CTRL) {
		/* MSI-X switched on or unmasked: INTx is no longer used and
		 * anything pending may go out. */
		pthread_mutex_lock(&vp->irq_lock);
		if (msix_on(vp)) {
			vp->isr = 0;
			pci__set_irq(&vp->pci, 0);
		}
		msix_flush_pending(vp);
		pthread_mutex_unlock(&vp->irq_lock);
	}

	if (touches_data(off, size) && pcicfg_target(dev, &bar_off, &len))
		virtio_pci__bar_write(dev->opaque, bar_off,
				      dev->cfg + CAP_PCICFG_DATA, len);
}

static void vp_cfg_read(struct pci_dev *dev, uint32_t off, uint32_t size)
{
	uint64_t bar_off;
	uint32_t len;

	if (touches_data(off, size) && pcicfg_target(dev, &bar_off, &len)) {
		uint8_t tmp[4] = { 0 };

		virtio_pci__bar_read(dev->opaque, bar_off, tmp, len);
		memcpy(dev->cfg + CAP_PCICFG_DATA, tmp, 4);
	}
}

static const struct pci_dev_ops vp_pci_ops = {
	.bar_read = vp_pci_bar_read,
	.bar_write = vp_pci_bar_write,
	.cfg_write = vp_cfg_write,
	.cfg_read = vp_cfg_read,
};

static void add_cap(uint8_t *cfg, uint8_t at, uint8_t next, uint8_t len,
		    uint8_t type, uint32_t off, uint32_t length)
{
	cfg[at] = PCI_CAP_ID_VNDR;
	cfg[at + 1] = next;
	cfg[at + 2] = len;
	cfg[at + 3] = type;
	cfg[at + 4] = 0;          /* BAR0 */
	put32(cfg + at + 8, off);
	put32(cfg + at + 12, length);
}

/* PCI class for each device type, as QEMU presents them, so guest tools
 * (lspci) show something sensible. */
static uint32_t class_of(uint16_t device_id)
{
	switch (device_id) {
	case VIRTIO_ID_NET:
		return 0x020000;   /* network, ethernet */
	case VIRTIO_ID_BLOCK:
		return 0x018000;   /* mass storage, other */
	default:
		return 0xFF0000;   /* unclassified */
	}
}

int virtio_pci__new(struct pci_bus *bus, struct virtio_dev *vdev,
		    int irq_line, struct virtio_pci **out)
{
	struct virtio_pci *vp;
	uint8_t *c;
	uint32_t cls;
	int r;

	*out = NULL;
	if (vdev->num_queues < 1 || vdev->config_len > 0x1000)
		return virtio__err(EINVAL, "%s: %d queues, %u config bytes: "
				   "not representable", vdev->name,
				   vdev->num_queues, vdev->config_len);
	vp = calloc(1, sizeof(*vp));
	if (!vp)
		return virtio__err(ENOMEM, "%s: out of memory", vdev->name);
	pthread_mutex_init(&vp->lock, NULL);
	pthread_mutex_init(&vp->irq_lock, NULL);
	vp->vdev = vdev;
	vdev->transport = vp;
	vdev->signal = vp_signal;

	c = vp->pci.cfg;
	put16(c + PCI_VENDOR_ID, VIRTIO_PCI_VENDOR);
	put16(c + PCI_DEVICE_ID, (uint16_t)(VIRTIO_PCI_DEVICE_BASE +
					    vdev->device_id));
	put16(c + PCI_STATUS, PCI_STATUS_CAP_LIST);
	c[PCI_REVISION_ID] = 1;   /* non-transitional (4.1.2.1) */
	cls = class_of(vdev->device_id);
	c[PCI_CLASS_PROG] = (uint8_t)cls;
	c[PCI_CLASS_DEVICE] = (uint8_t)(cls >> 8);
	c[PCI_CLASS_DEVICE + 1] = (uint8_t)(cls >> 16);
	put16(c + PCI_SUBSYSTEM_VENDOR_ID, VIRTIO_PCI_VENDOR);
	put16(c + PCI_SUBSYSTEM_ID, 0x1100);
	c[PCI_CAPABILITY_LIST] = CAP_COMMON;
	put32(c + PCI_BAR0, 0);   /* 32-bit, non-prefetchable memory */
	vp->pci.bar_size[0] = VIRTIO_PCI_BAR_SIZE;

	add_cap(c, CAP_COMMON, CAP_ISR, 16, VIRTIO_PCI_CAP_COMMON_CFG,
		VIRTIO_PCI_COMMON_OFF, VIRTIO_PCI_COMMON_LEN);
	add_cap(c, CAP_ISR, CAP_DEVICE, 16, VIRTIO_PCI_CAP_ISR_CFG,
		VIRTIO_PCI_ISR_OFF, 1);
	add_cap(c, CAP_DEVICE, CAP_NOTIFY, 16, VIRTIO_PCI_CAP_DEVICE_CFG,
		VIRTIO_PCI_DEVICE_OFF, vdev->config_len ? vdev->config_len
							 : 4);
	add_cap(c, CAP_NOTIFY, CAP_PCICFG, 20, VIRTIO_PCI_CAP_NOTIFY_CFG,
		VIRTIO_PCI_NOTIFY_OFF,
		VIRTIO_PCI_NOTIFY_MULT * (uint32_t)vdev->num_queues);
	put32(c + CAP_NOTIFY + 16, VIRTIO_PCI_NOTIFY_MULT);
	vp->msix = pci__msi_capable(bus);
	vp->nvec = (uint16_t)(vdev->num_queues + 1);
	vp->config_vec = VIRTIO_MSI_NO_VECTOR;
	for (int i = 0; i < VIRTIO_MAX_QUEUES; i++)
		vp->queue_vec[i] = VIRTIO_MSI_NO_VECTOR;
	for (int i = 0; i < MSIX_MAX_VECTORS; i++)
		vp->table[i].ctrl = MSIX_ENTRY_MASKED;
	add_cap(c, CAP_PCICFG, vp->msix ? CAP_MSIX : 0, 20,
		VIRTIO_PCI_CAP_PCI_CFG, 0, 0);
	if (vp->msix) {
		/* MSI-X capability: table size - 1, table and PBA in BAR0;
		 * the driver may set enable and function mask. */
		c[CAP_MSIX] = PCI_CAP_ID_MSIX;
		c[CAP_MSIX + 1] = 0;
		put16(c + MSIX_CTRL, (uint16_t)(vp->nvec - 1));
		put32(c + CAP_MSIX + 4, MSIX_TABLE_OFF);
		put32(c + CAP_MSIX + 8, MSIX_PBA_OFF);
		vp->pci.wmask[MSIX_CTRL + 1] = (MSIX_ENABLE | MSIX_FMASK) >> 8;
	}
	/* The window's bar/offset/length/data are the driver's to set. */
	memset(vp->pci.wmask + CAP_PCICFG_BAR, 0xFF, 1);
	memset(vp->pci.wmask + CAP_PCICFG_OFFSET, 0xFF, 12);

	vp->pci.ops = &vp_pci_ops;
	vp->pci.opaque = vp;
	r = pci__add(bus, &vp->pci, irq_line);
	if (r < 0) {
		int e = virtio__err(-r, "%s: %s", vdev->name, pci__error());

		vdev->transport = NULL;
		vdev->signal = NULL;
		pthread_mutex_destroy(&vp->lock);
		pthread_mutex_destroy(&vp->irq_lock);
		free(vp);
		return e;
	}
	*out = vp;
	return 0;
}

void virtio_pci__free(struct virtio_pci *vp)
{
	if (!vp)
		return;
	virtio__dev_free(vp->vdev);
	pthread_mutex_destroy(&vp->lock);
	pthread_mutex_destroy(&vp->irq_lock);
	free(vp);
}

struct pci_dev *virtio_pci__pci_dev(struct virtio_pci *vp)
{
	return &vp->pci;
}

struct virtio_dev *virtio_pci__vdev(struct virtio_pci *vp)
{
	return vp->vdev;
}
