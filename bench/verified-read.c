/*
 * verified-read.c - what lazy per-cluster verification costs a guest's
 * reads: the disk of an appliance package read through the verified view
 * (package__open_disk) against the same AVD member opened directly.
 *
 *   verified-read PKG [BLOCK_BYTES [cold|random|cold,random]]
 *                                          (default 4096, hot, in order)
 *
 * Reads the whole virtual disk front to back in BLOCK_BYTES requests
 * (random: as many requests, at random BLOCK_BYTES-aligned offsets, the
 * same sequence for both ways: a guest reading small files).  Three
 * rounds, each with the package opened afresh: one pass unverified, a
 * first verified pass (every byte hashed: nothing was checked yet in
 * this run) and a second verified pass through a new view (bytes checked
 * once are not hashed again while the file stands leased, FORMAT.md
 * "Checked once"; as a guest re-reading what its page cache dropped).
 * Prints the median throughputs and the ratios.  Hot: the package is in
 * the page cache (as right after `appliance pull`), so the unverified
 * read is a memory copy and hashing is all the difference.  Cold: the
 * package's pages are dropped before every pass (POSIX_FADV_DONTNEED),
 * so both read from the disk, as a guest does days after the pull.  bench/verified-read.sh
 * makes the packages (a worst case of random bytes and a realistic ext4
 * root filesystem, compressed) and runs this on both.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "appliances/package.h"
#include "imgfmt.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double read_all(imgfmt_image *img, uint64_t size, size_t bs,
		       int shuffled)
{
	char *buf = malloc(bs);
	uint64_t x = 0x9e3779b97f4a7c15ull, blocks = size / bs;
	double t0 = now();

	for (uint64_t pos = 0; pos < size; pos += bs) {
		uint64_t off = pos;
		if (shuffled) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			off = x % blocks * bs;
		}
		size_t n = size - off < bs ? (size_t)(size - off) : bs;
		if (imgfmt__pread(img, buf, n, off) < 0) {
			fprintf(stderr, "%s\n", imgfmt__error());
			exit(1);
		}
	}
	free(buf);
	return size / (now() - t0) / 1048576.0;
}

/* Evict the package from the page cache (its pages are clean). */
static void drop_cache(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) != 0) {
		perror(path);
		exit(1);
	}
	close(fd);
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	struct package *p;
	size_t bs = argc > 2 ? (size_t)atol(argv[2]) : 4096;
	int cold = argc > 3 && strstr(argv[3], "cold") != NULL;
	int shuffled = argc > 3 && strstr(argv[3], "random") != NULL;
	double first[3], again[3], r[3];
	uint64_t skipped = 0;

	for (int i = 0; i < 3; i++) {
		imgfmt_image *plain, *verified;
		if (argc < 2 || package__open(argv[1], &p) < 0 ||
		    package__verify_members(p, false) < 0) {
			fprintf(stderr, "usage: verified-read PKG [BLOCK]: %s\n",
				argc < 2 ? "" : package__error());
			return 2;
		}
		struct package_member *d = &p->members[p->disk];
		struct imgfmt_open_opts o = { .format = "avd",
			.offset = d->offset, .length = d->size };
		if (imgfmt__open(p->path, &o, &plain) < 0) {
			fprintf(stderr, "open failed\n");
			return 1;
		}
		if (cold)
			drop_cache(p->path);
		r[i] = read_all(plain, p->disk_virtual_size, bs, shuffled);
		imgfmt__close(plain);
		for (int pass = 0; pass < 2; pass++) {
			if (package__open_disk(p, &verified) < 0) {
				fprintf(stderr, "open failed\n");
				return 1;
			}
			if (cold)
				drop_cache(p->path);
			double t = read_all(verified, p->disk_virtual_size, bs,
					    shuffled);
			*(pass ? &again[i] : &first[i]) = t;
			imgfmt__close(verified);
		}
		skipped = package__disk_checks_skipped(p);
		package__close(p);
	}
	qsort(first, 3, sizeof(double), cmp);
	qsort(again, 3, sizeof(double), cmp);
	qsort(r, 3, sizeof(double), cmp);
	printf("| %s%zu-byte reads%s | %.0f | %.0f | %.0f MiB/s | %.2fx | "
	       "%.2fx | %llu |\n", shuffled ? "random " : "", bs,
	       cold ? ", cold" : "", first[1], again[1], r[1], first[1] / r[1],
	       again[1] / r[1], (unsigned long long)skipped);
	return 0;
}
