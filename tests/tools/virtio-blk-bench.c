/*
 * virtio-blk-bench.c - what one 4 KiB virtio-blk read costs in-process,
 * next to a plain pread() of the same 4 KiB from the same file.
 *
 *   virtio-blk-bench [ITERATIONS] [ROUNDS]
 *
 * The "virtio" path is everything the monitor does for a guest read except
 * the VM exit itself: the driver side writes a request header and
 * publishes the chain, the doorbell goes through the PCI MMIO dispatch
 * (pci__mmio_write -> virtio-pci notify -> ring walk -> imgfmt__pread of a
 * raw image -> used ring -> interrupt decision), and the driver side reaps
 * the completion.  The image is filled first, so both paths read from the
 * page cache.  Rounds alternate between the paths and the medians are
 * printed, since the machines are noisy.  The device runs twice: requests
 * served on the notifying thread (the default), and on the device's I/O
 * thread (opts.iothread; the driver side spins for the completion, so this
 * is the latency including a thread wake-up).
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "imgfmt.h"
#include "runtime/pci.h"
#include "runtime/virtio/virtio-pci.h"

#define DISK (64u << 20)
#define RAM (1u << 20)
#define GPA 0x100000ull
#define QSIZE 256

static uint8_t *ram;
static struct guest_mem mem;
static struct pci_bus *bus;
static uint64_t bar0;
static unsigned irqs;

static void *gp(uint64_t gpa)
{
	return ram + (gpa - GPA);
}

static void set_irq(void *o, int line, int level)
{
	(void)o;
	(void)line;
	irqs += level;
}

static void mw(uint64_t off, uint64_t v, uint32_t size)
{
	if (pci__mmio_write(bus, bar0 + off, &v, size) < 0) {
		fprintf(stderr, "MMIO write at 0x%llx not claimed\n",
			(unsigned long long)(bar0 + off));
		exit(1);
	}
}

static uint64_t mr(uint64_t off, uint32_t size)
{
	uint64_t v = 0;

	pci__mmio_read(bus, bar0 + off, &v, size);
	return v;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Ring layout in guest RAM. */
#define DESC GPA
#define AVAIL (GPA + 16 * QSIZE)
#define USED (GPA + 0x2000)
#define HDR (GPA + 0x4000)
#define DATA (GPA + 0x5000)
#define STATUS (GPA + 0x6000)

static uint16_t avail_idx, last_used;

static uint64_t offset_of(unsigned i)
{
	/* A fixed pseudo-random walk over the disk, 4 KiB aligned. */
	return ((uint64_t)i * 7919u % (DISK / 4096)) * 4096;
}

static double run_virtio(unsigned n)
{
	uint16_t *avail_ring = gp(AVAIL + 4);
	double t0 = now();

	for (unsigned i = 0; i < n; i++) {
		uint64_t sector = offset_of(i) / 512;

		memcpy((uint8_t *)gp(HDR) + 8, &sector, 8);
		*(uint8_t *)gp(STATUS) = 0xFF;
		avail_ring[avail_idx % QSIZE] = 0;
		avail_idx++;
		__atomic_store_n((uint16_t *)gp(AVAIL + 2), avail_idx,
				 __ATOMIC_RELEASE);
		mw(VIRTIO_PCI_NOTIFY_OFF, 0, 2);
		uint16_t used;
		/* Spin like a polling guest; yield now and then so an I/O
		 * thread gets a core on a busy 2-core machine.  Give up
		 * after 10 s (a lost completion). */
		for (long spin = 0;; spin++) {
			used = __atomic_load_n((uint16_t *)gp(USED + 2),
					       __ATOMIC_ACQUIRE);
			if (used != last_used)
				break;
			if (spin % 1024 == 1023) {
				sched_yield();
				if (spin % (1024 * 1024) == 1023 &&
				    now() - t0 > 10.0 * (i + 1))
					break;
			}
		}
		if (used != (uint16_t)(last_used + 1) ||
		    *(uint8_t *)gp(STATUS) != 0) {
			fprintf(stderr, "request %u failed (used %u, expected "
				"%u, status %u): %s\n", i, used,
				(uint16_t)(last_used + 1),
				*(uint8_t *)gp(STATUS), virtio__error());
			exit(1);
		}
		last_used = used;
		(void)mr(VIRTIO_PCI_ISR_OFF, 1);   /* the guest's IRQ handler */
	}
	return (now() - t0) / n;
}

static double run_pread(int fd, unsigned n)
{
	static uint8_t buf[4096] __attribute__((aligned(4096)));
	double t0 = now();

	for (unsigned i = 0; i < n; i++)
		if (pread(fd, buf, 4096, (off_t)offset_of(i)) != 4096) {
			perror("pread");
			exit(1);
		}
	return (now() - t0) / n;
}

static struct virtio_pci *dev_up(imgfmt_image *img, int iothread)
{
	struct virtio_blk_opts bo = { .iothread = iothread };
	struct pci_bus_config bc = { PCI_MMIO_BASE, PCI_MMIO_SIZE, set_irq,
				     NULL };
	struct virtio_dev *vdev;
	struct virtio_pci *vp;

	memset(ram, 0, RAM);
	avail_idx = last_used = 0;
	if (pci__bus_new(&bc, &bus) < 0 ||
	    virtio_blk__new(img, &bo, &mem, &vdev) < 0 ||
	    virtio_pci__new(bus, vdev, 10, &vp) < 0) {
		fprintf(stderr, "setup: %s %s\n", pci__error(),
			virtio__error());
		exit(1);
	}
	bar0 = pci__bar_addr(virtio_pci__pci_dev(vp), 0);

	/* Driver bring-up through the common configuration. */
	mw(VIRTIO_PCI_COMMON_STATUS, 1 | 2, 1);
	mw(VIRTIO_PCI_COMMON_GFSELECT, 1, 4);
	mw(VIRTIO_PCI_COMMON_GF, 1, 4);          /* VERSION_1 */
	mw(VIRTIO_PCI_COMMON_STATUS, 1 | 2 | 8, 1);
	mw(VIRTIO_PCI_COMMON_Q_SELECT, 0, 2);
	mw(VIRTIO_PCI_COMMON_Q_SIZE, QSIZE, 2);
	mw(VIRTIO_PCI_COMMON_Q_DESCLO, DESC, 8);
	mw(VIRTIO_PCI_COMMON_Q_AVAILLO, AVAIL, 8);
	mw(VIRTIO_PCI_COMMON_Q_USEDLO, USED, 8);
	mw(VIRTIO_PCI_COMMON_Q_ENABLE, 1, 2);
	mw(VIRTIO_PCI_COMMON_STATUS, 1 | 2 | 4 | 8, 1);
	if (!(mr(VIRTIO_PCI_COMMON_STATUS, 1) & 4) ||
	    !mr(VIRTIO_PCI_COMMON_Q_ENABLE, 2)) {
		fprintf(stderr, "bring-up failed: %s\n", virtio__error());
		exit(1);
	}
	/* One chain, reused: header (16), data (4096, writable), status. */
	struct virtq_desc ds[3] = {
		{ HDR, 16, VIRTQ_DESC_F_NEXT, 1 },
		{ DATA, 4096, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2 },
		{ STATUS, 1, VIRTQ_DESC_F_WRITE, 0 },
	};
	memcpy(gp(DESC), ds, sizeof(ds));
	memset(gp(HDR), 0, 16);                  /* type 0: read */
	return vp;
}

static void dev_down(struct virtio_pci *vp)
{
	virtio_pci__free(vp);
	pci__bus_free(bus);
	bus = NULL;
}

int main(int argc, char **argv)
{
	unsigned n = argc > 1 ? (unsigned)atoi(argv[1]) : 200000;
	int rounds = argc > 2 ? atoi(argv[2]) : 5;
	char path[] = "/tmp/virtio-blk-bench.XXXXXX";
	struct imgfmt_create_opts co = { .format = "raw", .size = DISK };
	struct imgfmt_open_opts oo = { .flags = IMGFMT_OPEN_RDWR };
	imgfmt_image *img;
	struct virtio_pci *vp, *vpio;
	double tv[64], tp[64], ti[64];
	int fd;

	if (n == 0 || rounds < 1 || rounds > 64) {
		fprintf(stderr, "usage: %s [ITERATIONS] [ROUNDS<=64]\n",
			argv[0]);
		return 2;
	}
	fd = mkstemp(path);
	if (fd < 0) {
		perror("mkstemp");
		return 1;
	}
	close(fd);
	unlink(path);
	if (imgfmt__create(path, &co) < 0 || imgfmt__open(path, &oo, &img) < 0) {
		fprintf(stderr, "%s\n", imgfmt__error());
		return 1;
	}
	/* Real data in the page cache for both paths. */
	{
		static uint8_t chunk[1 << 20];

		memset(chunk, 0x5A, sizeof(chunk));
		for (uint64_t off = 0; off < DISK; off += sizeof(chunk))
			if (imgfmt__pwrite(img, chunk, sizeof(chunk), off) < 0) {
				fprintf(stderr, "%s\n", imgfmt__error());
				return 1;
			}
	}
	fd = open(path, O_RDONLY);
	if (fd < 0) {
		perror(path);
		return 1;
	}

	ram = aligned_alloc(4096, RAM);
	mem.nr = 1;
	mem.r[0] = (struct guest_mem_region){ GPA, RAM, ram };

	vp = dev_up(img, 0);
	run_virtio(n / 10 + 1);                  /* warm up */
	run_pread(fd, n / 10 + 1);
	for (int r = 0; r < rounds; r++) {
		tv[r] = run_virtio(n);
		tp[r] = run_pread(fd, n);
	}
	if (memcmp(gp(DATA), "\x5a\x5a\x5a\x5a", 4) != 0) {
		fprintf(stderr, "read data is wrong\n");
		return 1;
	}
	dev_down(vp);
	vpio = dev_up(img, 1);
	run_virtio(n / 10 + 1);
	for (int r = 0; r < rounds; r++)
		ti[r] = run_virtio(n);
	dev_down(vpio);
	qsort(tv, (size_t)rounds, sizeof(double), cmp);
	qsort(tp, (size_t)rounds, sizeof(double), cmp);
	qsort(ti, (size_t)rounds, sizeof(double), cmp);
	double v = tv[rounds / 2] * 1e9, p = tp[rounds / 2] * 1e9,
	       io = ti[rounds / 2] * 1e9;
	printf("4 KiB read, median of %d rounds x %u requests:\n", rounds, n);
	printf("  virtio-blk in-process (PCI notify -> ring -> imgfmt raw): "
	       "%.0f ns\n", v);
	printf("  pread(2) of the same file:                               "
	       "%.0f ns\n", p);
	printf("  overhead: %.0f ns per request (%.2fx)\n", v - p, v / p);
	printf("  with the device's I/O thread (incl. wake-up):          "
	       "%.0f ns (%.2fx pread)\n", io, io / p);
	printf("  interrupts raised: %u\n", irqs);

	imgfmt__close(img);
	close(fd);
	unlink(path);
	free(ram);
	return 0;
}
