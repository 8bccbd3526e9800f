/*
 * test_engine_qemu.c - the QEMU engine's command line, and its refusal of
 * bad configurations, without starting QEMU.
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/engine-qemu.h"
#include "fixture-run.h"

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
	const char *socks[] = { "/run/x/d0.sock", "/run/x/d1.sock" };
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
		"file.server.type=unix,file.server.path=/run/x/d0.sock"));
	ck_assert(has_arg_pair(argv, "-drive",
		"id=disk1,if=none,format=raw,cache=writeback,file.driver=nbd,"
		"file.server.type=unix,file.server.path=/run/x/d1.sock,"
		"readonly=on"));
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

int main(void)
{
	Suite *s = suite_create("engine_qemu");
	TCase *tc = tcase_create("engine_qemu");

	tcase_add_test(tc, argv_for_tcg_with_disk_and_forwards);
	tcase_add_test(tc, argv_for_kvm_without_network);
	tcase_add_test(tc, missing_disk_fails_before_qemu_starts);
	tcase_add_test(tc, qemu_failure_is_reported);
	suite_add_tcase(s, tc);
	return fx_run_suite(s);
}
