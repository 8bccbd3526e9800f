/*
 * hash-speed.c - what a verified cluster read pays for hashing: BLAKE3
 * (common/blake3, blake3__hash) against OpenSSL's SHA-256 (EVP, which
 * uses SHA-NI where the CPU has it), single-threaded, over buffers of
 * 4 KiB, 64 KiB and 1 MiB of random bytes.
 *
 *   hash-speed [--all-paths] [ROUNDS]      (default 7 rounds)
 *
 * Each round hashes about 64 MiB with each function, the two interleaved
 * so both see the same machine load; the median round is printed, in
 * MB/s (10^6 bytes), with the ratio.  --all-paths repeats the BLAKE3 row
 * for every code path this CPU runs (portable, sse41, avx2, avx512).
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/blake3.h"

#define WORK (64u << 20) /* bytes per function per round */
#define MAX_ROUNDS 31

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Hash the buffer again and again (its first byte changing, so no call
 * can be skipped); MB/s. */
static double run_blake3(uint8_t *buf, size_t len)
{
	size_t n = WORK / len;
	uint8_t d[BLAKE3__OUT_LEN];
	unsigned sink = 0;
	double t0 = now();

	for (size_t i = 0; i < n; i++) {
		buf[0] = (uint8_t)i;
		blake3__hash(buf, len, d);
		sink += d[0];
	}
	t0 = now() - t0;
	buf[1] ^= (uint8_t)sink;
	return (double)n * len / t0 / 1e6;
}

static double run_sha256(uint8_t *buf, size_t len)
{
	size_t n = WORK / len;
	uint8_t d[EVP_MAX_MD_SIZE];
	unsigned dl, sink = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	const EVP_MD *md = EVP_sha256();
	double t0 = now();

	for (size_t i = 0; i < n; i++) {
		buf[0] = (uint8_t)i;
		if (!ctx || !EVP_DigestInit_ex(ctx, md, NULL) ||
		    !EVP_DigestUpdate(ctx, buf, len) ||
		    !EVP_DigestFinal_ex(ctx, d, &dl)) {
			fprintf(stderr, "hash-speed: OpenSSL SHA-256 failed\n");
			exit(1);
		}
		sink += d[0];
	}
	t0 = now() - t0;
	EVP_MD_CTX_free(ctx);
	buf[1] ^= (uint8_t)sink;
	return (double)n * len / t0 / 1e6;
}

int main(int argc, char **argv)
{
	static const size_t sizes[] = { 4096, 65536, 1048576 };
	static const char *paths[] = { "portable", "sse41", "avx2", "avx512" };
	int all = 0, rounds = 7;
	double load[3] = { 0 };
	uint8_t *buf = malloc(1048576);
	FILE *f;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--all-paths") == 0)
			all = 1;
		else if ((rounds = atoi(argv[i])) < 1 || rounds > MAX_ROUNDS) {
			fprintf(stderr, "usage: hash-speed [--all-paths] "
					"[ROUNDS (1-%d)]\n", MAX_ROUNDS);
			return 2;
		}
	}
	if (!buf)
		return 1;
	srand(1);
	for (size_t i = 0; i < 1048576; i++)
		buf[i] = (uint8_t)(rand() >> 7);
	f = fopen("/proc/loadavg", "r");
	if (f) {
		if (fscanf(f, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3)
			load[0] = load[1] = load[2] = 0;
		fclose(f);
	}
	printf("BLAKE3 path: %s; load average %.2f %.2f %.2f; "
	       "median of %d rounds, MB/s\n\n", blake3__impl(), load[0],
	       load[1], load[2], rounds);
	printf("| buffer | BLAKE3 (%s) | SHA-256 (OpenSSL) | ratio |\n",
	       blake3__impl());
	printf("|---|---|---|---|\n");
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		double b[MAX_ROUNDS], h[MAX_ROUNDS];

		for (int r = 0; r < rounds; r++) {
			b[r] = run_blake3(buf, sizes[s]);
			h[r] = run_sha256(buf, sizes[s]);
		}
		qsort(b, rounds, sizeof(double), cmp);
		qsort(h, rounds, sizeof(double), cmp);
		printf("| %zu KiB | %.0f | %.0f | %.2fx |\n", sizes[s] / 1024,
		       b[rounds / 2], h[rounds / 2], b[rounds / 2] / h[rounds / 2]);
	}
	if (!all) {
		free(buf);
		return 0;
	}
	printf("\n| buffer |");
	for (size_t p = 0; p < 4; p++)
		if (blake3__force_impl(paths[p]) == 0)
			printf(" %s |", paths[p]);
	printf(" SHA-256 |\n|---|");
	for (size_t p = 0; p < 4; p++)
		if (blake3__force_impl(paths[p]) == 0)
			printf("---|");
	printf("---|\n");
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		double v[5][MAX_ROUNDS];

		/* round by round, every path then SHA-256 */
		for (int r = 0; r < rounds; r++) {
			for (size_t p = 0; p < 4; p++)
				if (blake3__force_impl(paths[p]) == 0)
					v[p][r] = run_blake3(buf, sizes[s]);
			v[4][r] = run_sha256(buf, sizes[s]);
		}
		printf("| %zu KiB |", sizes[s] / 1024);
		for (size_t p = 0; p < 5; p++) {
			if (p < 4 && blake3__force_impl(paths[p]) < 0)
				continue;
			qsort(v[p], rounds, sizeof(double), cmp);
			printf(" %.0f |", v[p][rounds / 2]);
		}
		printf("\n");
	}
	blake3__force_impl(NULL);
	free(buf);
	return 0;
}
