/*
 * test_durable.c - common/durable.c: whole-file replacement and directory
 * syncs, including what is left behind when they fail (nothing).
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/durable.h"
#include "fixture-dir.h"
#include "fixture-run.h"

static char dir[160], path[160];

static void setup(void)
{
	umask(022);
	fx_dir_new("test_durable");
	snprintf(dir, sizeof(dir), "%s", fx_path(""));   /* "DIR/" */
	snprintf(path, sizeof(path), "%s", fx_path("file"));
}

static void teardown(void)
{
	fx_dir_remove();
}

static void assert_content(const char *want)
{
	char buf[64] = { 0 };
	FILE *f = fopen(path, "r");

	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fread(buf, 1, sizeof(buf) - 1, f), strlen(want));
	fclose(f);
	ck_assert_str_eq(buf, want);
}

/* Entries in dir: a temporary file left behind would show here. */
static int entries(void)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

START_TEST(write_creates_and_replaces)
{
	struct stat st;

	ck_assert_int_eq(durable__write_file(path, "one", 3, 0640, 0), 0);
	assert_content("one");
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0640);
	ck_assert_int_eq(durable__write_file(path, "second", 6, 0600, 0), 0);
	assert_content("second");
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0600);
	ck_assert_int_eq(entries(), 1);
	ck_assert_int_eq(durable__write_file(path, "", 0, 0644, 0), 0);
	assert_content("");
	umask(077);   /* exactly the mode asked for, whatever the umask */
	ck_assert_int_eq(durable__write_file(path, "x", 1, 0644, 0), 0);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0644);
}
END_TEST

START_TEST(no_overwrite_keeps_the_old_file)
{
	ck_assert_int_eq(durable__write_file(path, "old", 3, 0644, 1), 0);
	ck_assert_int_eq(durable__write_file(path, "new", 3, 0644, 1),
			 -EEXIST);
	assert_content("old");
	ck_assert_int_eq(entries(), 1);
}
END_TEST

START_TEST(failures_leave_nothing)
{
	char missing[200], ondir[200];

	/* No such directory: nothing can be made, nothing is. */
	snprintf(missing, sizeof(missing), "%s/no/such", dir);
	ck_assert_int_eq(durable__write_file(missing, "x", 1, 0644, 0),
			 -ENOENT);
	/* The target is a directory: the rename fails, the temporary file
	 * is removed and the directory is as it was. */
	snprintf(ondir, sizeof(ondir), "%s/sub", dir);
	ck_assert_int_eq(mkdir(ondir, 0755), 0);
	ck_assert_int_eq(durable__write_file(ondir, "x", 1, 0644, 0),
			 -EISDIR);
	ck_assert_int_eq(entries(), 1);
}
END_TEST

static void write_new(struct durable_new *n, const char *s)
{
	ck_assert_int_eq(durable__new_open(path, 0644, n), 0);
	ck_assert_int_eq(write(n->fd, s, strlen(s)), (ssize_t)strlen(s));
}

/* Where the file system has O_TMPFILE (the test directory's does), the
 * new file has no name at all until its commit. */
START_TEST(a_new_file_is_nameless_until_committed)
{
	struct durable_new n;
	struct stat st;

	write_new(&n, "content");
	ck_assert_ptr_null(n.tmp);
	ck_assert_int_eq(entries(), 0);
	ck_assert_int_eq(durable__new_commit(&n, path, 0), 0);
	ck_assert_int_eq(n.fd, -1);
	assert_content("content");
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0644);
	ck_assert_int_eq(entries(), 1);
}
END_TEST

/* What a process killed while writing leaves: nothing, or (without
 * O_TMPFILE) its temporary name only. */
START_TEST(a_writer_killed_midway_leaves_nothing)
{
	pid_t pid = fork();
	int status;

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct durable_new n;
		if (durable__new_open(path, 0644, &n) == 0 &&
		    write(n.fd, "half", 4) == 4)
			kill(getpid(), SIGKILL);
		_exit(1);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFSIGNALED(status));
	ck_assert_int_eq(entries(), 0);
}
END_TEST

/* Both ways, the unnamed file and the temporary name: replace, refuse to
 * replace, discard; never a temporary name left. */
START_TEST(commit_replaces_or_refuses_either_way)
{
	struct durable_new n;

	durable__named_only = _i;
	ck_assert_int_eq(durable__write_file(path, "old", 3, 0644, 0), 0);
	write_new(&n, "new");
	ck_assert_int_eq(n.tmp != NULL, _i);
	ck_assert_int_eq(entries(), 1 + _i);
	ck_assert_int_eq(durable__new_commit(&n, path, 1), -EEXIST);
	assert_content("old");
	ck_assert_int_eq(entries(), 1);
	write_new(&n, "newer");
	ck_assert_int_eq(durable__new_commit(&n, path, 0), 0);
	assert_content("newer");
	ck_assert_int_eq(entries(), 1);
	write_new(&n, "dropped");
	durable__new_discard(&n);
	assert_content("newer");
	ck_assert_int_eq(entries(), 1);
	unlink(path);
	write_new(&n, "fresh");
	ck_assert_int_eq(durable__new_commit(&n, path, 1), 0);
	assert_content("fresh");
	ck_assert_int_eq(entries(), 1);
	durable__named_only = 0;
}
END_TEST

START_TEST(fsync_dir_forms)
{
	char cwd[4096];

	ck_assert_int_eq(durable__fsync_dir(dir), 0);
	ck_assert_int_eq(durable__fsync_dir_of(path), 0);  /* path need not exist */
	ck_assert_int_eq(durable__fsync_dir_of("/etc"), 0);     /* in "/" */
	ck_assert_ptr_nonnull(getcwd(cwd, sizeof(cwd)));
	ck_assert_int_eq(chdir(dir), 0);
	ck_assert_int_eq(durable__fsync_dir_of("bare-name"), 0); /* "." */
	ck_assert_int_eq(chdir(cwd), 0);
	ck_assert_int_eq(durable__fsync_dir_of("/tmp/test_durable-none/x"),
			 -ENOENT);
	/* A file is not a directory. */
	ck_assert_int_eq(durable__write_file(path, "f", 1, 0644, 0), 0);
	ck_assert_int_eq(durable__fsync_dir(path), -ENOTDIR);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("durable");
	TCase *tc = tcase_create("durable");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, write_creates_and_replaces);
	tcase_add_test(tc, no_overwrite_keeps_the_old_file);
	tcase_add_test(tc, failures_leave_nothing);
	tcase_add_test(tc, fsync_dir_forms);
	tcase_add_test(tc, a_new_file_is_nameless_until_committed);
	tcase_add_test(tc, a_writer_killed_midway_leaves_nothing);
	tcase_add_loop_test(tc, commit_replaces_or_refuses_either_way, 0, 2);
	suite_add_tcase(s, tc);
	return fx_run_suite(s);
}
