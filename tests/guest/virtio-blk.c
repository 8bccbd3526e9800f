/*
 * virtio-blk.c - the test guest's virtio-blk driver: find the device on
 * PCI bus 0 through configuration mechanism #1, walk its virtio
 * capabilities to the common/notify/device regions in BAR0, bring it up
 * (virtio 1.2 section 3.1.1), then read sector 0 and write and flush
 * sector 1 with one split virtqueue, polling the used ring (interrupts
 * stay off in this guest).
 */
#include <stdint.h>

#include "guest.h"

#define PCI_ADDR 0xcf8
#define PCI_DATA 0xcfc

#define ST_ACK 1
#define ST_DRIVER 2
#define ST_DRIVER_OK 4
#define ST_FEATURES_OK 8

#define QSIZE 8
#define F_NEXT 1
#define F_WRITE 2

struct desc { uint64_t addr; uint32_t len; uint16_t flags, next; };

static struct {
	struct desc d[QSIZE];
} ring_desc __attribute__((aligned(4096)));
static struct {
	uint16_t flags, idx, ring[QSIZE], used_event;
} ring_avail __attribute__((aligned(4096)));
static struct {
	uint16_t flags, idx;
	struct { uint32_t id, len; } ring[QSIZE];
	uint16_t avail_event;
} ring_used __attribute__((aligned(4096)));

static struct { uint32_t type, reserved; uint64_t sector; } req_hdr;
static uint8_t req_data[512] __attribute__((aligned(512)));
static volatile uint8_t req_status;

static volatile uint8_t *common, *notify, *devcfg;
static uint32_t notify_mult;
static uint16_t last_used;

static inline void outl(uint16_t port, uint32_t v)
{
	__asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint32_t inl(uint16_t port)
{
	uint32_t v;
	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static uint32_t cfg_read(int slot, int reg)
{
	outl(PCI_ADDR, 0x80000000u | (uint32_t)slot << 11 | (uint32_t)(reg & 0xfc));
	return inl(PCI_DATA) >> (8 * (reg & 3));
}

static void cfg_write16(int slot, int reg, uint16_t v)
{
	uint32_t old = cfg_read(slot, reg & 0xfc);
	int sh = 8 * (reg & 2);
	old = (old & ~(0xffffu << sh)) | (uint32_t)v << sh;
	outl(PCI_ADDR, 0x80000000u | (uint32_t)slot << 11 | (uint32_t)(reg & 0xfc));
	outl(PCI_DATA, old);
}

#define C8(off) (*(volatile uint8_t *)(common + (off)))
#define C16(off) (*(volatile uint16_t *)(common + (off)))
#define C32(off) (*(volatile uint32_t *)(common + (off)))

static int find_device(void)
{
	for (int slot = 1; slot < 32; slot++) {
		uint32_t id = cfg_read(slot, 0);
		if (id != ((0x1040u + 2) << 16 | 0x1af4))
			continue;
		uint64_t bar = cfg_read(slot, 0x10) & ~0xfu;
		cfg_write16(slot, 0x04, (uint16_t)(cfg_read(slot, 0x04) | 0x6));
		for (int cap = cfg_read(slot, 0x34) & 0xfc; cap;
		     cap = cfg_read(slot, cap + 1) & 0xfc) {
			if ((cfg_read(slot, cap) & 0xff) != 0x09)
				continue;
			int type = cfg_read(slot, cap + 3) & 0xff;
			uint32_t off = cfg_read(slot, cap + 8);
			volatile uint8_t *p = (volatile uint8_t *)(bar + off);
			if (type == 1)
				common = p;
			else if (type == 2) {
				notify = p;
				notify_mult = cfg_read(slot, cap + 16);
			} else if (type == 4)
				devcfg = p;
		}
		return common && notify && devcfg ? slot : -1;
	}
	return -1;
}

/* One request: header, 512 data bytes (device-written for reads), status. */
static int request(uint32_t type, uint64_t sector, int data_in)
{
	req_hdr.type = type;
	req_hdr.reserved = 0;
	req_hdr.sector = sector;
	req_status = 0xff;
	ring_desc.d[0] = (struct desc){ (uint64_t)&req_hdr, 16, F_NEXT, 1 };
	int n = 1;
	if (type != 4) {
		ring_desc.d[1] = (struct desc){ (uint64_t)req_data, 512,
			(uint16_t)(F_NEXT | (data_in ? F_WRITE : 0)), 2 };
		n = 2;
	} else {
		ring_desc.d[0].next = 2;
	}
	(void)n;
	ring_desc.d[2] = (struct desc){ (uint64_t)&req_status, 1, F_WRITE, 0 };
	ring_avail.ring[ring_avail.idx % QSIZE] = 0;
	__asm__ volatile("" ::: "memory");
	ring_avail.idx++;
	__asm__ volatile("mfence" ::: "memory");
	*(volatile uint16_t *)(notify + C16(0x1e) * notify_mult) = 0;
	for (uint32_t i = 0; i < 1000000; i++) {
		if (*(volatile uint16_t *)&ring_used.idx != last_used)
			break;
		__asm__ volatile("pause");
	}
	if (*(volatile uint16_t *)&ring_used.idx == last_used)
		return -2;
	last_used++;
	return req_status;
}

/* Report every virtio device on bus 0 by its PCI device id, so the test
 * sees the whole device set the monitor offers (blk 0x1042, rng 0x1044). */
static void list_virtio_devices(void)
{
	for (int slot = 1; slot < 32; slot++) {
		uint32_t id = cfg_read(slot, 0);
		if ((id & 0xffff) != 0x1af4)
			continue;
		guest_puts("guest: virtio device ");
		guest_putx(id >> 16);
		guest_puts(" in slot ");
		guest_putx((uint64_t)slot);
		guest_puts("\n");
	}
}

void guest_virtio_blk(void)
{
	list_virtio_devices();

	int slot = find_device();

	if (slot < 0) {
		guest_puts("guest: no virtio-blk\n");
		return;
	}
	guest_puts("guest: virtio-blk in slot ");
	guest_putx((uint64_t)slot);
	guest_puts("\n");
	C8(0x14) = 0;                            /* reset */
	while (C8(0x14) != 0)
		;
	C8(0x14) = ST_ACK;
	C8(0x14) = ST_ACK | ST_DRIVER;
	C32(0x00) = 1;                           /* device features 63:32 */
	if (!(C32(0x04) & 1)) {
		guest_puts("guest: virtio-blk lacks VERSION_1\n");
		return;
	}
	C32(0x00) = 0;
	uint32_t lo = C32(0x04) & (1u << 9);     /* FLUSH, if offered */
	C32(0x08) = 0;
	C32(0x0c) = lo;
	C32(0x08) = 1;
	C32(0x0c) = 1;                           /* VERSION_1 */
	C8(0x14) = ST_ACK | ST_DRIVER | ST_FEATURES_OK;
	if (!(C8(0x14) & ST_FEATURES_OK)) {
		guest_puts("guest: virtio-blk refused our features\n");
		return;
	}
	C16(0x16) = 0;                           /* queue 0 */
	if (C16(0x18) < QSIZE) {
		guest_puts("guest: virtio-blk queue too small\n");
		return;
	}
	C16(0x18) = QSIZE;
	C32(0x20) = (uint32_t)(uint64_t)&ring_desc;
	C32(0x24) = 0;
	C32(0x28) = (uint32_t)(uint64_t)&ring_avail;
	C32(0x2c) = 0;
	C32(0x30) = (uint32_t)(uint64_t)&ring_used;
	C32(0x34) = 0;
	C16(0x1c) = 1;
	C8(0x14) = ST_ACK | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK;

	uint64_t cap = *(volatile uint32_t *)devcfg |
		       (uint64_t)*(volatile uint32_t *)(devcfg + 4) << 32;
	guest_puts("guest: disk sectors ");
	guest_putx(cap);
	guest_puts("\n");

	int st = request(0, 0, 1);               /* VIRTIO_BLK_T_IN */
	if (st != 0) {
		guest_puts("guest: disk read failed ");
		guest_putx((uint64_t)(uint32_t)st);
		guest_puts("\n");
		return;
	}
	char text[17];
	for (int i = 0; i < 16; i++)
		text[i] = (req_data[i] >= 32 && req_data[i] < 127)
			? (char)req_data[i] : '.';
	text[16] = 0;
	guest_puts("guest: disk read '");
	guest_puts(text);
	guest_puts("'\n");

	static const char msg[] = "written by the test guest";
	for (int i = 0; i < 512; i++)
		req_data[i] = i < (int)sizeof(msg) - 1 ? (uint8_t)msg[i] : 0;
	st = request(1, 1, 0);                   /* VIRTIO_BLK_T_OUT */
	if (st == 0 && lo)
		st = request(4, 0, 0);           /* VIRTIO_BLK_T_FLUSH */
	guest_puts(st == 0 ? "guest: disk write ok\n"
			   : "guest: disk write failed\n");
}
