/*
 * test_engine_qemu.c - the QEMU engine's command line, and its refusal of
 * bad configurations, without starting QEMU.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "imgfmt.h"
#include "runtime/engine-qemu.h"
#include "fixture-dir.h"
#include "fixture-run.h"

static void setup(void)
{
	fx_dir_new("engine-qemu");
}

static void teardown(void)
{
	fx_dir_remove();
}

/* A stand-in for qemu-system-x86_64: a shell script. */
static const char *fake_qemu(const char *body)
{
	const char *path = fx_path("fake-qemu");
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	fprintf(f, "#!/bin/sh\n%s\n", body);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_int_eq(chmod(path, 0755), 0);
	return path;
}

static char *slurp(const char *path)
{
	static char buf[8192];
	int fd = open(path, O_RDONLY);
	ssize_t n;

	ck_assert_int_ge(fd, 0);
	n = read(fd, buf, sizeof(buf) - 1);
	ck_assert_int_ge(n, 0);
	buf[n] = 0;
	close(fd);
	return buf;
}

static int has_arg_pair(char **argv, const char *opt, const char *val)
{
	for (int i = 0; argv[i] && argv[i + 1]; i++)
		if (strcmp(argv[i], opt) == 0 && strcmp(argv[i + 1], val) == 0)
			return 1;
	return 0;
}

START_TEST(argv_for_tcg_with_disk_and_forwards)
{
	const char *disks[] = { "a.avd", "b.qcow2" };
	const bool ro[] = { false, true };
	const int socks[] = { 5, 7 };
	struct qemu_port_forward fwd[] = { { 8080, 80, false },
					   { 5353, 53, true } };
	struct qemu_engine_config c = {
		.mem_size = 512ull << 20, .nr_cpus = 2, .kernel = "vmlinuz",
		.initrd = "initrd.img", .cmdline = "console=ttyS0 root=/dev/vda",
		.disks = disks, .disk_readonly = ro, .nr_disks = 2,
		.ports = fwd, .nr_ports = 2,
	};
	char **argv = qemu_engine__argv(&c, socks);

	ck_assert_ptr_nonnull(argv);
	ck_assert_str_eq(argv[0], "qemu-system-x86_64");
	ck_assert(has_arg_pair(argv, "-M",
			       "microvm,pit=on,pic=on,rtc=on,acpi=on"));
	ck_assert(has_arg_pair(argv, "-accel", "tcg"));
	ck_assert(has_arg_pair(argv, "-m", "512"));
	ck_assert(has_arg_pair(argv, "-smp", "2"));
	ck_assert(has_arg_pair(argv, "-kernel", "vmlinuz"));
	ck_assert(has_arg_pair(argv, "-initrd", "initrd.img"));
	ck_assert(has_arg_pair(argv, "-append", "console=ttyS0 root=/dev/vda "
			       "tsc_early_khz=2000000"));
	ck_assert(has_arg_pair(argv, "-drive",
		"id=disk0,if=none,format=raw,cache=writeback,file.driver=nbd,"
		"file.server.type=fd,file.server.str=5"));
	ck_assert(has_arg_pair(argv, "-drive",
		"id=disk1,if=none,format=raw,cache=writeback,file.driver=nbd,"
		"file.server.type=fd,file.server.str=7,readonly=on"));
	ck_assert(has_arg_pair(argv, "-device", "virtio-blk-device,drive=disk1"));
	ck_assert(has_arg_pair(argv, "-netdev",
		"user,id=net0,hostfwd=tcp:127.0.0.1:8080-:80,"
		"hostfwd=udp:127.0.0.1:5353-:53"));
	ck_assert(has_arg_pair(argv, "-device", "virtio-net-device,netdev=net0"));
	qemu_engine__free_argv(argv);
}
END_TEST

START_TEST(argv_for_kvm_without_network)
{
	struct qemu_engine_config c = { .kernel = "k", .use_kvm = true };
	char **argv = qemu_engine__argv(&c, NULL);

	ck_assert(has_arg_pair(argv, "-accel", "kvm"));
	ck_assert(has_arg_pair(argv, "-cpu", "host"));
	ck_assert(has_arg_pair(argv, "-m", "256"));
	ck_assert(has_arg_pair(argv, "-append", "console=ttyS0"));
	for (int i = 0; argv[i]; i++)
		ck_assert_str_ne(argv[i], "-netdev");
	qemu_engine__free_argv(argv);
}
END_TEST

START_TEST(missing_disk_fails_before_qemu_starts)
{
	const char *disks[] = { "/nonexistent/disk.avd" };
	struct qemu_engine_config c = { .kernel = "k", .disks = disks,
					.nr_disks = 1, .console_in_fd = -1,
					.console_out_fd = -1,
					.qemu_binary = "/bin/false" };
	struct qemu_engine_result r;

	ck_assert_int_lt(qemu_engine__run(&c, &r), 0);
	ck_assert_ptr_nonnull(strstr(r.message, "/nonexistent/disk.avd"));
}
END_TEST

/* A disk whose image names a backing file would show the guest that
 * file: refused before QEMU starts, unless allowed for that disk. */
START_TEST(a_disk_naming_a_backing_file_is_refused_unless_allowed)
{
	struct imgfmt_create_opts base = { .format = "raw", .size = 1 << 20 };
	struct imgfmt_create_opts over = { .backing_file = "base.raw",
					   .backing_format = "raw" };
	const char *disks[] = { fx_path("over.avd") };
	const bool allowed = true;
	struct qemu_engine_config c = { .kernel = "k", .disks = disks,
					.nr_disks = 1, .console_in_fd = -1,
					.console_out_fd = -1,
					.qemu_binary = "/bin/false" };
	struct qemu_engine_result r;

	ck_assert_int_eq(imgfmt__create(fx_path("base.raw"), &base), 0);
	ck_assert_int_eq(imgfmt__create(disks[0], &over), 0);
	ck_assert_int_lt(qemu_engine__run(&c, &r), 0);
	ck_assert_ptr_nonnull(strstr(r.message, "names a backing file"));
	ck_assert_int_eq(r.qemu_status, -1);   /* never started */
	c.disk_backing = &allowed;
	ck_assert_int_eq(qemu_engine__run(&c, &r), -EIO);
	ck_assert_int_eq(r.qemu_status, 1);   /* /bin/false ran */
}
END_TEST

START_TEST(qemu_failure_is_reported)
{
	struct qemu_engine_config c = { .kernel = "k", .console_in_fd = -1,
					.console_out_fd = -1,
					.qemu_binary = "/bin/false" };
	struct qemu_engine_result r;

	ck_assert_int_eq(qemu_engine__run(&c, &r), -EIO);
	ck_assert_int_eq(r.qemu_status, 1);
	ck_assert_ptr_nonnull(strstr(r.message, "status 1"));
}
END_TEST

/* QEMU finds its disk as a connected socket and the kernel through
 * /proc/self/fd/N, and nothing named is made for either: the run leaves
 * nothing behind in $TMPDIR even if it is killed. */
START_TEST(qemu_inherits_its_disk_socket_and_files)
{
	const char *disks[] = { "d.raw" };
	struct imgfmt_create_opts co = { .format = "raw", .size = 1 << 20 };
	imgfmt_image *img;
	int kfd = open(fx_path("kernel"), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	int out = open(fx_path("out"), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	char kpath[64];

	ck_assert_int_ge(kfd, 0);
	ck_assert_int_eq(write(kfd, "KERNEL-BYTES", 12), 12);
	unlink(fx_path("kernel"));
	snprintf(kpath, sizeof(kpath), "/proc/self/fd/%d", kfd);
	ck_assert_int_eq(imgfmt__create(fx_path("d.raw"), &co), 0);
	ck_assert_int_eq(imgfmt__open(fx_path("d.raw"),
		&(struct imgfmt_open_opts){ .flags = IMGFMT_OPEN_RDWR }, &img), 0);
	struct qemu_engine_config c = {
		.kernel = kpath, .disks = disks, .disk_images = &img,
		.nr_disks = 1, .console_in_fd = -1, .console_out_fd = out,
		.inherit_fds = &kfd, .nr_inherit_fds = 1,
		.qemu_binary = fake_qemu(
			"for a; do case $a in\n"
			"  *server.str=*) fd=${a##*server.str=}; fd=${fd%%,*} ;;\n"
			"  /proc/self/fd/*) k=$a ;;\n"
			"esac; done\n"
			"[ -S /proc/self/fd/$fd ] && echo disk-socket-ok\n"
			"cat $k; echo\n"
			"echo sockets: $(ls -l /proc/self/fd/ | grep -c socket:)"),
	};
	struct qemu_engine_result r;
	const char *dir = getenv("TMPDIR");

	setenv("TMPDIR", fx_path("tmp"), 1);
	ck_assert_int_eq(mkdir(fx_path("tmp"), 0700), 0);
	ck_assert_int_eq(qemu_engine__run(&c, &r), 0);
	char *o = slurp(fx_path("out"));
	ck_assert_msg(strstr(o, "disk-socket-ok\nKERNEL-BYTES\n"), "%s", o);
	/* The server's end of the socketpair stays with us. */
	ck_assert_msg(strstr(o, "KERNEL-BYTES\nsockets: 1\n"), "%s", o);
	ck_assert_int_eq(rmdir(fx_path("tmp")), 0);   /* empty */
	if (dir)
		setenv("TMPDIR", dir, 1);
	ck_assert_int_eq(imgfmt__close(img), 0);
	close(kfd);
	close(out);
}
END_TEST

/* A console nobody reads any more (`appliance run ... | head`): QEMU
 * would go on writing into the void, so the engine stops it. */
START_TEST(closed_console_stops_qemu)
{
	int p[2];
	char buf[64];
	struct qemu_engine_result r;

	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	struct qemu_engine_config c = {
		.kernel = "k", .console_in_fd = -1, .console_out_fd = p[1],
		/* Like QEMU: ignores SIGPIPE, goes on after EPIPE. */
		.qemu_binary = fake_qemu("trap '' PIPE\n"
					 "while :; do echo guest; sleep 0.01; done"),
	};
	/* The reader takes a little and leaves. */
	pid_t reader = fork();
	ck_assert_int_ge(reader, 0);
	if (reader == 0) {
		close(p[1]);
		_exit(read(p[0], buf, sizeof(buf)) > 0 ? 0 : 1);
	}
	close(p[0]);
	ck_assert_int_eq(qemu_engine__run(&c, &r), 0);
	ck_assert(r.console_closed);
	ck_assert(!r.stopped_by_signal);
	close(p[1]);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("engine_qemu");
	TCase *tc = tcase_create("engine_qemu");

	tcase_add_test(tc, argv_for_tcg_with_disk_and_forwards);
	tcase_add_test(tc, argv_for_kvm_without_network);
	tcase_add_test(tc, missing_disk_fails_before_qemu_starts);
	tcase_add_test(tc, qemu_failure_is_reported);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, qemu_inherits_its_disk_socket_and_files);
	tcase_add_test(tc, a_disk_naming_a_backing_file_is_refused_unless_allowed);
	tcase_add_test(tc, closed_console_stops_qemu);
	suite_add_tcase(s, tc);
	return fx_run_suite(s);
}
