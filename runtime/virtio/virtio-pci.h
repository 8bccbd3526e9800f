/*
 * virtio-pci.h - virtio 1.x devices as PCI functions (virtio 1.2, 4.1).
 *
 * Each device is a modern-only ("non-transitional") PCI function:
 * vendor 0x1AF4, device 0x1040 + virtio device id, revision 1, with one
 * 32-bit memory BAR (BAR0, VIRTIO_PCI_BAR_SIZE bytes) holding
 *
 *     0x0000  common configuration   (VIRTIO_PCI_CAP_COMMON_CFG)
 *     0x1000  ISR status             (VIRTIO_PCI_CAP_ISR_CFG)
 *     0x2000  device configuration   (VIRTIO_PCI_CAP_DEVICE_CFG)
 *     0x3000  queue notify, 4 bytes per queue (notify_off_multiplier 4,
 *             queue_notify_off = queue index)
 * *     0x3800  MSI-X table, 0x3C00 MSI-X PBA (only with MSI-X)
 *
 * and the vendor capabilities that point there, plus a
 * VIRTIO_PCI_CAP_PCI_CFG window, in the capability list at 0x40.
 * Interrupts: INTx, where reading the ISR register deasserts the line;
 * and MSI-X (one vector for config changes + one per queue) when the bus
 * was given a send_msi callback.  Without it there is no MSI-X capability
 * and the vector registers read VIRTIO_MSI_NO_VECTOR, so drivers use INTx.
 *
 * Usage by the monitor:
 *     virtio_blk__new(img, &opts, &vm->mem, &vdev);
 *     virtio_pci__new(bus, vdev, irq_line, &vp);   // plugs into `bus`
 *     ... guest runs; MMIO reaches BAR0 through pci__mmio_read/write ...
 *     virtio_pci__free(vp);   // after the vCPUs stopped; frees vdev too
 *
 * A queue notification runs the device model synchronously on the calling
 * (vCPU) thread.
 */
#ifndef RUNTIME_VIRTIO_VIRTIO_PCI_H
#define RUNTIME_VIRTIO_VIRTIO_PCI_H

#include <stdint.h>

#include "runtime/pci.h"
#include "runtime/virtio/virtio.h"

#define VIRTIO_PCI_VENDOR 0x1AF4
#define VIRTIO_PCI_DEVICE_BASE 0x1040
#define VIRTIO_PCI_BAR_SIZE 0x4000

#define VIRTIO_PCI_COMMON_OFF 0x0000
#define VIRTIO_PCI_ISR_OFF 0x1000
#define VIRTIO_PCI_DEVICE_OFF 0x2000
#define VIRTIO_PCI_NOTIFY_OFF 0x3000
#define VIRTIO_PCI_NOTIFY_MULT 4
#define VIRTIO_PCI_COMMON_LEN 0x40

/* Capability types (cfg_type). */
#define VIRTIO_PCI_CAP_COMMON_CFG 1
#define VIRTIO_PCI_CAP_NOTIFY_CFG 2
#define VIRTIO_PCI_CAP_ISR_CFG 3
#define VIRTIO_PCI_CAP_DEVICE_CFG 4
#define VIRTIO_PCI_CAP_PCI_CFG 5

/* struct virtio_pci_common_cfg offsets. */
#define VIRTIO_PCI_COMMON_DFSELECT 0x00
#define VIRTIO_PCI_COMMON_DF 0x04
#define VIRTIO_PCI_COMMON_GFSELECT 0x08
#define VIRTIO_PCI_COMMON_GF 0x0C
#define VIRTIO_PCI_COMMON_MSIX 0x10
#define VIRTIO_PCI_COMMON_NUMQ 0x12
#define VIRTIO_PCI_COMMON_STATUS 0x14
#define VIRTIO_PCI_COMMON_CFGGENERATION 0x15
#define VIRTIO_PCI_COMMON_Q_SELECT 0x16
#define VIRTIO_PCI_COMMON_Q_SIZE 0x18
#define VIRTIO_PCI_COMMON_Q_MSIX 0x1A
#define VIRTIO_PCI_COMMON_Q_ENABLE 0x1C
#define VIRTIO_PCI_COMMON_Q_NOFF 0x1E
#define VIRTIO_PCI_COMMON_Q_DESCLO 0x20
#define VIRTIO_PCI_COMMON_Q_DESCHI 0x24
#define VIRTIO_PCI_COMMON_Q_AVAILLO 0x28
#define VIRTIO_PCI_COMMON_Q_AVAILHI 0x2C
#define VIRTIO_PCI_COMMON_Q_USEDLO 0x30
#define VIRTIO_PCI_COMMON_Q_USEDHI 0x34

#define VIRTIO_MSI_NO_VECTOR 0xFFFF

struct virtio_pci;

/* Make `vdev` a PCI function on `bus` with INTx wired to `irq_line`.  On
 * success the transport owns vdev (virtio_pci__free frees it); on failure
 * vdev is still the caller's to free with virtio__dev_free. */
int virtio_pci__new(struct pci_bus *bus, struct virtio_dev *vdev,
		    int irq_line, struct virtio_pci **out);
void virtio_pci__free(struct virtio_pci *vp);

struct pci_dev *virtio_pci__pci_dev(struct virtio_pci *vp);
struct virtio_dev *virtio_pci__vdev(struct virtio_pci *vp);

/* BAR0 accesses (pci__mmio_* lands here too).  Sizes 1, 2, 4, 8. */
void virtio_pci__bar_read(struct virtio_pci *vp, uint64_t off, void *data,
			  uint32_t size);
void virtio_pci__bar_write(struct virtio_pci *vp, uint64_t off,
			   const void *data, uint32_t size);

#endif /* RUNTIME_VIRTIO_VIRTIO_PCI_H */
