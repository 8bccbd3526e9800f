/*
 * test_lease.c - common/lease.c: a read lease says "unchanged" only while
 * nobody can have written the file, lets writers in at once, and stops
 * vouching after its window when its thread never runs.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/lease.h"
#include "fixture-dir.h"
#include "fixture-run.h"

static char path[160];
static int fd;

static void make_file(void)
{
	int w = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ck_assert_int_ge(w, 0);
	ck_assert_int_eq(write(w, "genuine", 7), 7);
	close(w);
	fd = open(path, O_RDONLY);
	ck_assert_int_ge(fd, 0);
}

/* The file in the test directory, or in /dev/shm (tmpfs) where /tmp is
 * a file system leases are not trusted on (overlayfs in a container). */
static void setup(void)
{
	struct file_lease *l;

	fx_dir_new("test_lease");
	snprintf(path, sizeof(path), "%s", fx_path("file"));
	make_file();
	if (file_lease__take(fd, &l) == -EOPNOTSUPP) {
		close(fd);
		unlink(path);
		snprintf(path, sizeof(path), "/dev/shm/test_lease.%d",
			 (int)getpid());
		make_file();
	} else {
		file_lease__release(l);
	}
}

static void teardown(void)
{
	close(fd);
	if (strncmp(path, "/dev/shm/", 9) == 0)
		unlink(path);
	fx_dir_remove();
}

/* In a child: open the file for writing (flags added) and write, within
 * 10 s (the kernel would hold an unanswered writer 45 s).  The child's
 * exit status: 0 written, 2 the open would block, 1 anything else. */
static int child_writes(int flags)
{
	pid_t pid = fork();
	int st;

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		alarm(10);
		int w = open(path, O_WRONLY | flags);
		if (w < 0)
			_exit(errno == EWOULDBLOCK ? 2 : 1);
		_exit(pwrite(w, "X", 1, 0) == 1 ? 0 : 1);
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st), "the writer was held (killed by signal %d)",
		      WIFSIGNALED(st) ? WTERMSIG(st) : 0);
	return WEXITSTATUS(st);
}

START_TEST(a_writer_breaks_it_and_is_let_in)
{
	struct file_lease *l;
	int r = file_lease__take(fd, &l);

	ck_assert_msg(r == 0, "file_lease__take: %s", strerror(-r));
	ck_assert(file_lease__unbroken(l));
	ck_assert(file_lease__unbroken(l));
	ck_assert_int_eq(child_writes(0), 0);
	ck_assert(!file_lease__unbroken(l));
	ck_assert_int_eq(fcntl(fd, F_GETLEASE), F_UNLCK);
	/* Broken for good. */
	ck_assert(!file_lease__unbroken(l));
	file_lease__release(l);
}
END_TEST

/* The process holding the lease may itself open the file for writing
 * (a test tampering with a package it has open): not a deadlock. */
START_TEST(a_writer_in_this_thread_is_not_held)
{
	struct file_lease *l;

	ck_assert_int_eq(file_lease__take(fd, &l), 0);
	alarm(10);
	int w = open(path, O_RDWR);
	alarm(0);
	ck_assert_int_ge(w, 0);
	ck_assert(!file_lease__unbroken(l));
	close(w);
	file_lease__release(l);
}
END_TEST

START_TEST(a_file_open_for_writing_cannot_be_leased)
{
	struct file_lease *l = (void *)1;
	int w = open(path, O_WRONLY);

	ck_assert_int_eq(file_lease__take(fd, &l), -EAGAIN);
	ck_assert_ptr_null(l);
	close(w);
	/* Nor anything but a regular file. */
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_eq(file_lease__take(p[0], &l), -EINVAL);
	close(p[0]);
	close(p[1]);
}
END_TEST

/* Without its thread (as if the process were stopped when the writer
 * came), the writer is held by the kernel, and the lease vouches only
 * until its window ends; then it asks the kernel, finds the break, and
 * lets the writer in. */
START_TEST(past_its_window_it_asks_the_kernel)
{
	struct file_lease *l;

	ck_assert_int_eq(file_lease__take_opts(fd, 2000, true, &l), 0);
	ck_assert_int_eq(child_writes(O_NONBLOCK), 2);   /* held */
	ck_assert_int_eq(fcntl(fd, F_GETLEASE), F_UNLCK); /* breaking */
	/* Nothing can have been written yet: still true. */
	ck_assert(file_lease__unbroken(l));
	usleep(2200 * 1000);
	ck_assert(!file_lease__unbroken(l));
	ck_assert_int_eq(child_writes(0), 0);
	file_lease__release(l);
}
END_TEST

START_TEST(release_lets_writers_in)
{
	struct file_lease *l;

	ck_assert_int_eq(file_lease__take(fd, &l), 0);
	file_lease__release(l);
	ck_assert_int_eq(fcntl(fd, F_GETLEASE), F_UNLCK);
	ck_assert_int_eq(child_writes(O_NONBLOCK), 0);
	file_lease__release(NULL);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("lease");
	TCase *tc = tcase_create("lease");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, a_writer_breaks_it_and_is_let_in);
	tcase_add_test(tc, a_writer_in_this_thread_is_not_held);
	tcase_add_test(tc, a_file_open_for_writing_cannot_be_leased);
	tcase_add_test(tc, past_its_window_it_asks_the_kernel);
	tcase_add_test(tc, release_lets_writers_in);
	suite_add_tcase(s, tc);
	return fx_run_suite(s);
}
