/* fuzz/fuzz-devices.c - a hostile guest at the register level.
 *
 * Everything a vCPU exit hands the builtin monitor: port I/O and MMIO
 * accesses of any size to the machine the monitor builds (the UART, the
 * i8042, the RTC, the ACPI PM registers, the PCI configuration ports and
 * the PCI MMIO window with a virtio-blk, a virtio-rng and a virtio-net
 * behind their virtio-pci transports, MSI-X included), interleaved with
 * the guest writing its own RAM (rings, descriptors, buffers) and the
 * host typing on the console.  fuzz-virtio drives the rings directly;
 * this one goes through what the guest really touches: feature
 * negotiation, queue setup, BAR moves, config space, notify.
 *
 * Input: a sequence of operations, each an op byte then its operands
 * (little-endian; an operation cut short by the end of the input is not
 * done):
 *
 *   op & 3 == 0  port I/O: port (2 bytes), then for a write the value
 *   op & 3 == 1  MMIO in the PCI window: offset (3 bytes, the first 16
 *                MiB, where the BARs are), then for a write the value
 *   op & 3 == 2  guest RAM write: offset (3 bytes, modulo RAM), 8 bytes
 *   op & 3 == 3  one byte typed on the console (then the byte)
 *
 * For I/O, bit 2 is write, bits 3-4 the size (1, 2, 4, 8 bytes; the
 * value takes that many bytes).  The oracle: no crash, no sanitizer
 * report, no leak, no hang.  Every device is made afresh per input. */
#include "fuzz/fuzz.h"
#include "imgfmt.h"
#include "runtime/acpi.h"
#include "runtime/legacy.h"
#include "runtime/pci.h"
#include "runtime/serial.h"
#include "runtime/virtio/net.h"
#include "runtime/virtio/virtio-pci.h"
#include "runtime/virtio/virtio.h"
#include "runtime/vm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RAM_SIZE (1u << 20)

static void no_irq(void *opaque, int level)
{
	(void)opaque;
	(void)level;
}

static void no_pci_irq(void *opaque, int line, int level)
{
	(void)opaque;
	(void)line;
	(void)level;
}

static void no_msi(void *opaque, uint64_t addr, uint32_t data)
{
	(void)opaque;
	(void)addr;
	(void)data;
}

static uint64_t le(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	struct guest_mem_region lay[2];
	struct serial *uart;
	struct pci_bus *pci;
	struct pci_bus_config pc = {
		.mmio_base = PCI_MMIO_BASE, .mmio_size = PCI_MMIO_SIZE,
		.set_irq = no_pci_irq, .send_msi = no_msi,
	};
	struct virtio_pci *vp[3] = { NULL, NULL, NULL };
	struct virtio_dev *vd[3] = { NULL, NULL, NULL };
	imgfmt_image *img = NULL;
	int peer = -1;

	if (!vm)
		abort();
	vm->kvm_fd = vm->vm_fd = vm->stop_efd = -1;
	pthread_mutex_init(&vm->stop_lock, NULL);
	bus__init(&vm->pio, "pio");
	bus__init(&vm->mmio, "mmio");
	vm->ram_size = RAM_SIZE;
	vm->mem.nr = vm__ram_layout(RAM_SIZE, lay);
	for (int i = 0; i < vm->mem.nr; i++) {
		vm->mem.r[i] = lay[i];
		vm->mem.r[i].host = calloc(1, lay[i].size);
		if (!vm->mem.r[i].host)
			abort();
	}

	/* The machine setup_devices() in monitor.c builds. */
	uart = serial__new(-1, no_irq, NULL);
	if (!uart || serial__attach(uart, &vm->pio, SERIAL_COM1_BASE) < 0 ||
	    i8042__attach(vm) < 0 || rtc__attach(vm) < 0 ||
	    acpi__attach_pm(vm) < 0 || pci__bus_new(&pc, &pci) < 0 ||
	    bus__register(&vm->pio, PCI_CONF1_ADDR_PORT, PCI_CONF1_PORT_COUNT,
			  pci__conf1_access, pci, "pci-conf1") < 0 ||
	    bus__register(&vm->mmio, PCI_MMIO_BASE, PCI_MMIO_SIZE,
			  pci__window_access, pci, "pci-mmio") < 0)
		abort();
	serial__bind_vm(uart, vm);
	for (unsigned k = 0; k < 3; k++) {
		struct virtio_dev *vdev = fuzz__virtio_device(
			k, 0, &vm->mem, k == 0 ? &img : NULL,
			k == 2 ? &peer : NULL);
		vd[k] = vdev;
		if (!vdev || virtio_pci__new(pci, vdev, 16 + (int)k,
					     &vp[k]) < 0)   /* IOAPIC pins 16.. */
			abort();
	}

	size_t i = 0;
	while (i < size) {
		uint8_t op = data[i++];
		unsigned kind = op & 3, len = 1u << ((op >> 3) & 3);
		bool write = op & 4;
		uint8_t v[8] = { 0 };

		if (kind == 0 || kind == 1) {
			unsigned an = kind == 0 ? 2 : 3;
			if (size - i < an + (write ? len : 0))
				break;
			uint64_t addr = le(data + i, an);
			i += an;
			if (write) {
				memcpy(v, data + i, len);
				i += len;
			}
			if (kind == 0)
				bus__access(&vm->pio, addr, v, len, write);
			else
				bus__access(&vm->mmio, PCI_MMIO_BASE + addr, v,
					    len, write);
		} else if (kind == 2) {
			if (size - i < 3 + 8)
				break;
			uint64_t off = le(data + i, 3) % (RAM_SIZE - 8);
			uint8_t *h = guest_mem__ptr(&vm->mem, off, 8);
			if (h)
				memcpy(h, data + i + 3, 8);
			i += 3 + 8;
		} else {
			if (size - i < 1)
				break;
			serial__input(uart, data + i, 1);
			i++;
		}
	}

	if (getenv("FUZZ_VERBOSE")) {
		struct virtio_blk_stats bs;
		struct virtio_net_stats ns;
		virtio_blk__stats(vd[0], &bs);
		virtio_net__stats(vd[2], &ns);
		fprintf(stderr, "blk: %llu reads %llu writes %llu malformed; "
			"net: %llu tx; status %x %x %x\n",
			(unsigned long long)bs.reads,
			(unsigned long long)bs.writes,
			(unsigned long long)bs.malformed,
			(unsigned long long)ns.tx_frames, vd[0]->status,
			vd[1]->status, vd[2]->status);
	}

	/* The bus first (it only points at the devices), then the
	 * transports with their models, then the disk; as the monitor. */
	pci__bus_free(pci);
	for (unsigned k = 0; k < 3; k++)
		virtio_pci__free(vp[k]);
	if (img)
		imgfmt__close(img);
	if (peer >= 0)
		close(peer);
	serial__free(uart);
	for (int r = 0; r < vm->mem.nr; r++)
		free(vm->mem.r[r].host);
	vm->mem.nr = 0;
	vm__destroy(vm);
	free(vm);
	return 0;
}
