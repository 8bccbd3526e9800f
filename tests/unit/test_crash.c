/*
 * test_crash.c - SIGKILL crash test of every writable format.
 *
 * A child process applies a reproducible stream of writes, zero writes,
 * discards and flushes to an image, telling the parent over a pipe which
 * operation it starts and which flush has returned.  The parent kills it
 * with SIGKILL at a random moment, then:
 *   1. opens the image; `check` must be clean, or `check --repair` must
 *      leave it clean;
 *   2. every byte that no operation after the last completed flush touched
 *      must read back exactly as the model says (acknowledged flushes are
 *      durable; later writes may or may not have landed);
 * and starts the next round on the same image, so damage accumulates if
 * repair leaves any behind.  CRASH_ROUNDS sets the number of rounds
 * (default 60; the slow suite uses more), TEST_MODEL_SEED replays a run.
 */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "imgfmt.h"
#include "fixture-run.h"

#define DISK_SIZE (4u << 20)

static char dir[64], img_path[128];

static void setup(void)
{
	strcpy(dir, "/tmp/test_crash.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(img_path, sizeof(img_path), "%s/disk", dir);
}

static void teardown(void)
{
	unlink(img_path);
	rmdir(dir);
}

static uint64_t mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

enum op_kind { OP_WRITE, OP_ZERO, OP_DISCARD, OP_FLUSH };

struct op {
	enum op_kind kind;
	uint64_t off, len;
	uint64_t data_seed;
};

/* Operation i of the stream of round `seed`; the same in both processes. */
static void gen_op(uint64_t seed, uint32_t i, uint32_t cluster, struct op *op)
{
	uint64_t r = mix(seed ^ mix(i + 1));
	uint64_t k = r % 100;

	op->kind = k < 60 ? OP_WRITE : k < 70 ? OP_ZERO :
		   k < 78 ? OP_DISCARD : OP_FLUSH;
	r = mix(r);
	switch (r % 3) {
	case 0: op->len = 1 + (r >> 8) % 4096; break;
	case 1: op->len = cluster ? cluster : 65536; break;
	default: op->len = 1 + (r >> 8) % 200000; break;
	}
	r = mix(r);
	op->off = r % (DISK_SIZE - op->len + 1);
	if ((r >> 40) % 2 && cluster)
		op->off = op->off / cluster * cluster;
	op->data_seed = mix(r);
}

static void fill(uint8_t *buf, const struct op *op)
{
	for (uint64_t i = 0; i < op->len; i++)
		buf[i] = (uint8_t)(mix(op->data_seed + i / 8) >> (8 * (i % 8)));
}

struct record {
	uint32_t kind; /* 0: starting op i, 1: flush op i returned */
	uint32_t i;
};

static void child(int fd, uint64_t seed, uint32_t cluster)
{
	struct imgfmt_open_opts o = { .flags = IMGFMT_OPEN_RDWR };
	imgfmt_image *img;
	uint8_t *buf = malloc(256 * 1024);
	struct op op;

	if (!buf || imgfmt__open(img_path, &o, &img) < 0)
		_exit(3);
	for (uint32_t i = 0;; i++) {
		struct record rec = { 0, i };
		int r = 0;

		gen_op(seed, i, cluster, &op);
		if (write(fd, &rec, sizeof(rec)) != sizeof(rec))
			_exit(4);
		switch (op.kind) {
		case OP_WRITE:
			fill(buf, &op);
			r = imgfmt__pwrite(img, buf, op.len, op.off);
			break;
		case OP_ZERO:
			r = imgfmt__write_zeroes(img, op.off, op.len, 0);
			break;
		case OP_DISCARD:
			r = imgfmt__discard(img, op.off, op.len);
			break;
		case OP_FLUSH:
			r = imgfmt__flush(img);
			rec.kind = 1;
			if (r == 0 && write(fd, &rec, sizeof(rec)) != sizeof(rec))
				_exit(4);
			break;
		}
		if (r < 0)
			_exit(5);
	}
}

static void apply(uint8_t *model, const struct op *op, uint8_t *buf)
{
	switch (op->kind) {
	case OP_WRITE:
		fill(buf, op);
		memcpy(model + op->off, buf, op->len);
		break;
	case OP_ZERO:
	case OP_DISCARD: /* no backing file: discard reads as zeros */
		memset(model + op->off, 0, op->len);
		break;
	case OP_FLUSH:
		break;
	}
}

static void run_crash(const char *fmt, uint32_t cluster_size)
{
	const char *env_seed = getenv("TEST_MODEL_SEED");
	const char *env_rounds = getenv("CRASH_ROUNDS");
	uint64_t seed0 = env_seed ? strtoull(env_seed, NULL, 0)
				  : mix((uint64_t)time(NULL) ^ getpid());
	int rounds = env_rounds ? atoi(env_rounds) : 60;
	uint8_t *model = calloc(1, DISK_SIZE), *got = malloc(DISK_SIZE);
	uint8_t *uncertain = malloc(DISK_SIZE), *buf = malloc(256 * 1024);
	struct imgfmt_create_opts c = { .format = fmt, .size = DISK_SIZE,
					.cluster_size = cluster_size };
	struct imgfmt_info info;
	imgfmt_image *img;
	int repaired_rounds = 0;

	ck_assert_msg(imgfmt__create(img_path, &c) == 0, "%s",
		      imgfmt__error());
	ck_assert_int_eq(imgfmt__open(img_path, NULL, &img), 0);
	imgfmt__info(img, &info);
	imgfmt__close(img);

	for (int round = 0; round < rounds; round++) {
		uint64_t seed = mix(seed0 + (uint64_t)round);
		int pfd[2];
		pid_t pid;

		ck_assert_int_eq(pipe(pfd), 0);
		pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			close(pfd[0]);
			child(pfd[1], seed, info.cluster_size);
		}
		close(pfd[1]);
		/* Let it run 0-40 ms: from before the first write to
		 * hundreds of operations in. */
		struct timespec ts = { 0, (long)(mix(seed) % 40000) * 1000 };
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
		int status;
		waitpid(pid, &status, 0);
		ck_assert_msg(WIFSIGNALED(status), "seed %llu round %d: the "
			      "writer died on its own (status %d)",
			      (unsigned long long)seed0, round, status);

		/* What the child reported. */
		int64_t last_started = -1, last_flushed = -1;
		struct record rec;
		while (read(pfd[0], &rec, sizeof(rec)) == sizeof(rec)) {
			if (rec.kind == 0)
				last_started = rec.i;
			else
				last_flushed = rec.i;
		}
		close(pfd[0]);

		/* Expected content: everything up to the last acknowledged
		 * flush; bytes touched after it are uncertain. */
		memset(uncertain, 0, DISK_SIZE);
		for (int64_t i = 0; i <= last_started; i++) {
			struct op op;
			gen_op(seed, (uint32_t)i, info.cluster_size, &op);
			if (i <= last_flushed)
				apply(model, &op, buf);
			else if (op.kind != OP_FLUSH)
				memset(uncertain + op.off, 1, op.len);
		}

		/* The image must open, and check clean or repair clean. */
		struct imgfmt_open_opts o = { .flags = IMGFMT_OPEN_RDWR };
		struct imgfmt_check_result res;
		ck_assert_msg(imgfmt__open(img_path, &o, &img) == 0,
			      "seed %llu round %d: reopen after kill: %s",
			      (unsigned long long)seed0, round,
			      imgfmt__error());
		ck_assert_int_eq(imgfmt__check(img, 0, &res), 0);
		if (res.corruptions || res.leaks || res.checksum_errors ||
		    res.was_dirty) {
			ck_assert_msg(res.corruptions == 0 &&
				      res.checksum_errors == 0,
				      "seed %llu round %d: corruption after "
				      "a crash: %s", (unsigned long long)seed0,
				      round, res.first_problem);
			ck_assert_int_eq(imgfmt__check(img, 1, &res), 0);
			ck_assert_int_eq(imgfmt__check(img, 0, &res), 0);
			ck_assert_msg(res.corruptions + res.leaks +
				      res.checksum_errors == 0,
				      "seed %llu round %d: still broken after "
				      "repair: %s", (unsigned long long)seed0,
				      round, res.first_problem);
			repaired_rounds++;
		}
		ck_assert_msg(imgfmt__pread(img, got, DISK_SIZE, 0) == 0,
			      "seed %llu round %d: read: %s",
			      (unsigned long long)seed0, round,
			      imgfmt__error());
		for (uint64_t b = 0; b < DISK_SIZE; b++) {
			if (!uncertain[b] && got[b] != model[b])
				ck_abort_msg("seed %llu round %d: byte %llu is "
					     "0x%02x, flushed data says 0x%02x "
					     "(last flush op %lld, last op "
					     "%lld)", (unsigned long long)seed0,
					     round, (unsigned long long)b,
					     got[b], model[b],
					     (long long)last_flushed,
					     (long long)last_started);
		}
		ck_assert_int_eq(imgfmt__close(img), 0);
		memcpy(model, got, DISK_SIZE);
	}
	(void)repaired_rounds;
	free(model);
	free(got);
	free(uncertain);
	free(buf);
}

static int format_exists(const char *fmt)
{
	for (const char *const *f = imgfmt__formats(); *f; f++)
		if (strcmp(*f, fmt) == 0)
			return 1;
	return 0;
}

START_TEST(crash_raw)
{
	run_crash("raw", 0);
}
END_TEST

START_TEST(crash_avd)
{
	static const uint32_t clusters[] = { 4096, 65536 };

	if (!format_exists("avd"))
		return;
	run_crash("avd", clusters[_i]);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("crash");
	TCase *tc = tcase_create("crash");

	tcase_set_timeout(tc, 900);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, crash_raw);
	tcase_add_loop_test(tc, crash_avd, 0, 2);
	suite_add_tcase(s, tc);
	return fx_run_suite(s);
}
