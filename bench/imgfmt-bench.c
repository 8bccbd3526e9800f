/*
 * imgfmt-bench.c - the imgfmt library against plain pread/pwrite, through
 * one harness so that the only difference is the I/O path.
 *
 *   imgfmt-bench [--backend posix|imgfmt] [--format avd] [--cluster N]
 *                [--size 1G] [--seconds S] DIR
 *
 * Phases (each reports MiB/s and IOPS):
 *   seq-write-fresh   1 MiB writes front to back into a new image
 *   seq-read          1 MiB reads of the allocated image, front to back,
 *                     repeated for the phase's time
 *   rand-read-4k      4 KiB reads at random aligned offsets (allocated)
 *   rand-write-4k     4 KiB overwrites at random offsets (allocated)
 *   alloc-write-4k    4 KiB writes, each into the next not yet allocated
 *                     cluster (as `qemu-img bench -w -s 4096 -S CLUSTER`)
 * Write phases end with a flush (fdatasync for posix), which is timed.
 * The files live in DIR and usually sit in the page cache, so the figures
 * measure the library's own cost per request: that is what this compares.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "imgfmt.h"

struct backend {
	int fd;              /* posix */
	imgfmt_image *img;   /* imgfmt */
};

static int use_posix;
static const char *format = "avd";
static uint32_t cluster = 65536;
static uint64_t disk_size = 1ull << 30;
static double seconds = 3;
static char path[4096];

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	fprintf(stderr, "imgfmt-bench: %s: %s\n", what,
		use_posix ? strerror(errno) : imgfmt__error());
	exit(1);
}

static void b_open(struct backend *b, int fresh)
{
	if (fresh)
		unlink(path);
	if (use_posix) {
		b->fd = open(path, O_RDWR | O_CREAT, 0644);
		if (b->fd < 0 || (fresh && ftruncate(b->fd, (off_t)disk_size)))
			die("open");
		return;
	}
	if (fresh) {
		struct imgfmt_create_opts c = { .format = format,
			.size = disk_size, .cluster_size = cluster };
		if (imgfmt__create(path, &c) < 0)
			die("create");
	}
	struct imgfmt_open_opts o = { .flags = IMGFMT_OPEN_RDWR };
	if (imgfmt__open(path, &o, &b->img) < 0)
		die("open");
}

static void b_close(struct backend *b)
{
	if (use_posix)
		close(b->fd);
	else if (imgfmt__close(b->img) < 0)
		die("close");
}

static void b_read(struct backend *b, void *buf, size_t len, uint64_t off)
{
	if (use_posix) {
		if (pread(b->fd, buf, len, (off_t)off) != (ssize_t)len)
			die("pread");
	} else if (imgfmt__pread(b->img, buf, len, off) < 0) {
		die("pread");
	}
}

static void b_write(struct backend *b, const void *buf, size_t len,
		    uint64_t off)
{
	if (use_posix) {
		if (pwrite(b->fd, buf, len, (off_t)off) != (ssize_t)len)
			die("pwrite");
	} else if (imgfmt__pwrite(b->img, buf, len, off) < 0) {
		die("pwrite");
	}
}

static void b_flush(struct backend *b)
{
	if (use_posix) {
		if (fdatasync(b->fd) < 0)
			die("fdatasync");
	} else if (imgfmt__flush(b->img) < 0) {
		die("flush");
	}
}

static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void report(const char *phase, uint64_t ops, uint64_t bytes, double t)
{
	printf("%-16s %10.1f MiB/s %10.0f IOPS  (%llu ops, %.2f s)\n", phase,
	       bytes / t / 1048576.0, ops / t, (unsigned long long)ops, t);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "backend", required_argument, NULL, 'b' },
		{ "format", required_argument, NULL, 'f' },
		{ "cluster", required_argument, NULL, 'c' },
		{ "size", required_argument, NULL, 's' },
		{ "seconds", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	struct backend b = { .fd = -1 };
	uint8_t *buf;
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'b': use_posix = strcmp(optarg, "posix") == 0; break;
		case 'f': format = optarg; break;
		case 'c': cluster = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 's': disk_size = strtoull(optarg, NULL, 0) << 20; break;
		case 't': seconds = atof(optarg); break;
		default: return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "usage: imgfmt-bench [--backend posix|imgfmt] "
			"[--format F] [--cluster N] [--size MiB] [--seconds S] "
			"DIR\n");
		return 2;
	}
	snprintf(path, sizeof(path), "%s/bench.img", argv[optind]);
	if (posix_memalign((void **)&buf, 4096, 1 << 20))
		return 1;
	for (int i = 0; i < 1 << 20; i++)
		buf[i] = (uint8_t)(i * 7 + 1);
	printf("backend %s%s%s, cluster %u, size %llu MiB\n",
	       use_posix ? "posix" : "imgfmt", use_posix ? "" : " format ",
	       use_posix ? "" : format, cluster,
	       (unsigned long long)(disk_size >> 20));

	/* seq-write-fresh: the whole disk, 1 MiB at a time. */
	b_open(&b, 1);
	double t0 = now();
	uint64_t ops = 0;
	for (uint64_t off = 0; off < disk_size; off += 1 << 20, ops++)
		b_write(&b, buf, 1 << 20, off);
	b_flush(&b);
	report("seq-write-fresh", ops, ops << 20, now() - t0);

	/* seq-read: passes over the whole disk for at least the phase's
	 * time (one pass of a page-cached 512 MiB disk takes ~30 ms, too
	 * short to time on a shared machine). */
	t0 = now();
	ops = 0;
	do {
		for (uint64_t off = 0; off < disk_size; off += 1 << 20, ops++)
			b_read(&b, buf, 1 << 20, off);
	} while (now() - t0 < seconds);
	report("seq-read", ops, ops << 20, now() - t0);

	/* rand-read-4k, for a fixed time */
	uint64_t blocks = disk_size / 4096;
	t0 = now();
	ops = 0;
	do {
		for (int i = 0; i < 4096; i++, ops++)
			b_read(&b, buf, 4096, (rnd() % blocks) * 4096);
	} while (now() - t0 < seconds);
	report("rand-read-4k", ops, ops * 4096, now() - t0);

	/* rand-write-4k (overwrites) */
	t0 = now();
	ops = 0;
	do {
		for (int i = 0; i < 4096; i++, ops++)
			b_write(&b, buf, 4096, (rnd() % blocks) * 4096);
	} while (now() - t0 < seconds);
	b_flush(&b);
	report("rand-write-4k", ops, ops * 4096, now() - t0);
	b_close(&b);

	/* alloc-write-4k: each write lands at the start of the next, not yet
	 * allocated cluster: the pattern `qemu-img bench -w -s 4096 -S
	 * CLUSTER` drives, so the two are comparable. */
	b_open(&b, 1);
	uint64_t n = disk_size / cluster;
	t0 = now();
	for (ops = 0; ops < n; ops++)
		b_write(&b, buf, 4096, ops * cluster);
	b_flush(&b);
	report("alloc-write-4k", ops, ops * 4096, now() - t0);
	b_close(&b);
	unlink(path);
	free(buf);
	return 0;
}
