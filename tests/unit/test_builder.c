/*
 * test_builder.c - the builder's pure pieces: hostile tarballs, module
 * dependency order, the GPT we write, and the manifest.
 */
#include <archive.h>
#include <archive_entry.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <zlib.h>

#include "builder/steps.h"
#include "builder/toml.h"
#include "fixture-run.h"

static char dir[64], dest[80], outside[80], tarpath[80];

static void setup(void)
{
	strcpy(dir, "/tmp/test_builder.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(dest, sizeof(dest), "%s/dest", dir);
	snprintf(outside, sizeof(outside), "%s/outside", dir);
	snprintf(tarpath, sizeof(tarpath), "%s/t.tar", dir);
	ck_assert_int_eq(mkdir(dest, 0755), 0);
	ck_assert_int_eq(mkdir(outside, 0755), 0);
}

static void teardown(void)
{
	build__rm_rf(dir);
}

/* ---- crafted tarballs ------------------------------------------------- */

struct tent {
	const char *name;
	mode_t type;        /* AE_IFREG, AE_IFDIR, AE_IFLNK, AE_IFCHR */
	const char *data;   /* file content or symlink target */
	const char *hardlink;
};

static void make_tar(const struct tent *e, size_t n, int gzip)
{
	struct archive *a = archive_write_new();
	struct archive_entry *ae = archive_entry_new();

	archive_write_set_format_pax_restricted(a);
	if (gzip)
		archive_write_add_filter_gzip(a);
	ck_assert_int_eq(archive_write_open_filename(a, tarpath), ARCHIVE_OK);
	for (size_t i = 0; i < n; i++) {
		archive_entry_clear(ae);
		archive_entry_set_pathname(ae, e[i].name);
		if (e[i].hardlink) {
			archive_entry_set_hardlink(ae, e[i].hardlink);
			archive_entry_set_size(ae, 0);
			archive_write_header(a, ae);
			continue;
		}
		archive_entry_set_filetype(ae, e[i].type);
		archive_entry_set_perm(ae, e[i].type == AE_IFDIR ? 0755 : 0644);
		if (e[i].type == AE_IFLNK)
			archive_entry_set_symlink(ae, e[i].data);
		if (e[i].type == AE_IFCHR)
			archive_entry_set_rdev(ae, makedev(1, 3));
		size_t len = e[i].type == AE_IFREG && e[i].data ?
			strlen(e[i].data) : 0;
		archive_entry_set_size(ae, (la_int64_t)len);
		ck_assert_int_eq(archive_write_header(a, ae), ARCHIVE_OK);
		if (len)
			archive_write_data(a, e[i].data, len);
	}
	archive_entry_free(ae);
	ck_assert_int_eq(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
}

static int exists(const char *p)
{
	struct stat st;
	return lstat(p, &st) == 0;
}

START_TEST(tarball_good_extracts)
{
	const struct tent e[] = {
		{ "etc", AE_IFDIR, NULL, NULL },
		{ "etc/hostname", AE_IFREG, "box\n", NULL },
		{ "etc/alias", AE_IFLNK, "hostname", NULL },
		{ "etc/hard", 0, NULL, "etc/hostname" },
	};
	char p[128], *data = NULL;

	make_tar(e, 4, 1);
	ck_assert_msg(tarball__extract(tarpath, dest, 0) == 0, "%s",
		      builder__error());
	snprintf(p, sizeof(p), "%s/etc/hard", dest);
	ck_assert_int_eq(build__read_file(p, &data, NULL, 100), 0);
	ck_assert_str_eq(data, "box\n");
	free(data);
	snprintf(p, sizeof(p), "%s/etc/alias", dest);
	ck_assert(exists(p));
}
END_TEST

START_TEST(tarball_dotdot_refused)
{
	const struct tent e[] = {
		{ "ok", AE_IFREG, "x", NULL },
		{ "a/../../outside/pwned", AE_IFREG, "evil", NULL },
	};
	char p[128];

	make_tar(e, 2, 0);
	ck_assert_int_eq(tarball__extract(tarpath, dest, 0), -EPERM);
	ck_assert_ptr_nonnull(strstr(builder__error(), "'..'"));
	ck_assert_ptr_nonnull(strstr(builder__error(), "a/../../outside"));
	snprintf(p, sizeof(p), "%s/pwned", outside);
	ck_assert(!exists(p));
}
END_TEST

START_TEST(tarball_absolute_refused)
{
	char abs_name[128], p[128];
	snprintf(abs_name, sizeof(abs_name), "%s/pwned", outside);
	const struct tent e[] = { { abs_name, AE_IFREG, "evil", NULL } };

	make_tar(e, 1, 0);
	ck_assert_int_eq(tarball__extract(tarpath, dest, 0), -EPERM);
	ck_assert_ptr_nonnull(strstr(builder__error(), "absolute"));
	snprintf(p, sizeof(p), "%s/pwned", outside);
	ck_assert(!exists(p));
}
END_TEST

START_TEST(tarball_symlink_escape_refused)
{
	/* A symlink pointing out of the tree, then a file written through
	 * it: the classic symlink-then-write escape. */
	const struct tent e[] = {
		{ "link", AE_IFLNK, outside, NULL },
		{ "link/pwned", AE_IFREG, "evil", NULL },
	};
	char p[128];

	make_tar(e, 2, 0);
	ck_assert_int_lt(tarball__extract(tarpath, dest, 0), 0);
	snprintf(p, sizeof(p), "%s/pwned", outside);
	ck_assert_msg(!exists(p), "file written through a symlink");

	/* Same with a relative symlink climbing out. */
	const struct tent e2[] = {
		{ "up", AE_IFLNK, "../outside", NULL },
		{ "up/pwned2", AE_IFREG, "evil", NULL },
	};
	build__rm_rf(dest);
	mkdir(dest, 0755);
	make_tar(e2, 2, 0);
	ck_assert_int_lt(tarball__extract(tarpath, dest, 0), 0);
	snprintf(p, sizeof(p), "%s/pwned2", outside);
	ck_assert(!exists(p));
}
END_TEST

START_TEST(tarball_hardlink_escape_refused)
{
	const struct tent e[] = {
		{ "h", 0, NULL, "../outside/secret" },
	};

	make_tar(e, 1, 0);
	ck_assert_int_eq(tarball__extract(tarpath, dest, 0), -EPERM);
	ck_assert_ptr_nonnull(strstr(builder__error(), "hard link"));
}
END_TEST

START_TEST(tarball_devices_need_permission)
{
	const struct tent e[] = { { "dev/null", AE_IFCHR, NULL, NULL } };

	make_tar(e, 1, 0);
	ck_assert_int_eq(tarball__extract(tarpath, dest, 0), -EPERM);
	ck_assert_ptr_nonnull(strstr(builder__error(), "device node"));
	if (geteuid() == 0) {
		char p[128];
		struct stat st;
		ck_assert_msg(tarball__extract(tarpath, dest,
					       TARBALL_ALLOW_DEVICES) == 0,
			      "%s", builder__error());
		snprintf(p, sizeof(p), "%s/dev/null", dest);
		ck_assert_int_eq(lstat(p, &st), 0);
		ck_assert(S_ISCHR(st.st_mode));
	}
}
END_TEST

START_TEST(tarball_garbage_refused)
{
	int fd = open(tarpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	char junk[1024];

	memset(junk, 0x5a, sizeof(junk));
	ck_assert_int_eq(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
	close(fd);
	ck_assert_int_lt(tarball__extract(tarpath, dest, 0), 0);
	ck_assert_ptr_nonnull(strstr(builder__error(), tarpath));
	ck_assert_int_lt(tarball__extract("/nonexistent/x.tar", dest, 0), 0);
}
END_TEST

/* ---- modules.dep -------------------------------------------------------- */

static const char modules_dep[] =
	"kernel/drivers/virtio/virtio.ko:\n"
	"kernel/drivers/virtio/virtio_ring.ko:\n"
	"kernel/drivers/virtio/virtio_pci_legacy_dev.ko:\n"
	"kernel/drivers/virtio/virtio_pci_modern_dev.ko:\n"
	"kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko "
	"kernel/drivers/virtio/virtio_ring.ko\n"
	"kernel/drivers/virtio/virtio_pci.ko: "
	"kernel/drivers/virtio/virtio_pci_legacy_dev.ko "
	"kernel/drivers/virtio/virtio_pci_modern_dev.ko "
	"kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n"
	"kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko "
	"kernel/drivers/virtio/virtio_ring.ko\n"
	"kernel/net/core/failover.ko:\n"
	"kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n"
	"kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko "
	"kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko "
	"kernel/drivers/virtio/virtio_ring.ko\n";

static long pos(char **v, size_t n, const char *suffix)
{
	for (size_t i = 0; i < n; i++) {
		size_t a = strlen(v[i]), b = strlen(suffix);
		if (a >= b && strcmp(v[i] + a - b, suffix) == 0)
			return (long)i;
	}
	return -1;
}

START_TEST(kmod_dependencies_first_each_once)
{
	const char *want[] = { "virtio_blk", "virtio-pci", "virtio_net" };
	char **v;
	size_t n;

	ck_assert_msg(kmod__resolve(modules_dep, want, 3, &v, &n) == 0, "%s",
		      builder__error());
	/* virtio, virtio_ring, legacy, modern, virtio_pci, virtio_blk,
	 * failover, net_failover, virtio_net */
	ck_assert_uint_eq(n, 9);
	ck_assert_int_lt(pos(v, n, "/virtio.ko"), pos(v, n, "/virtio_blk.ko"));
	ck_assert_int_lt(pos(v, n, "/virtio_ring.ko"),
			 pos(v, n, "/virtio_blk.ko"));
	ck_assert_int_lt(pos(v, n, "/virtio_pci_modern_dev.ko"),
			 pos(v, n, "/virtio_pci.ko"));
	ck_assert_int_lt(pos(v, n, "/failover.ko"),
			 pos(v, n, "/net_failover.ko"));
	ck_assert_int_lt(pos(v, n, "/net_failover.ko"),
			 pos(v, n, "/virtio_net.ko"));
	ck_assert_int_ge(pos(v, n, "/virtio_pci.ko"), 0);
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n; j++)
			ck_assert_str_ne(v[i], v[j]);
	kmod__free_list(v, n);
}
END_TEST

START_TEST(kmod_bad_input)
{
	const char *want[] = { "virtio_blk" };
	const char *nope[] = { "no_such_module" };
	char **v;
	size_t n;

	ck_assert_int_eq(kmod__resolve(modules_dep, nope, 1, &v, &n), -ENOENT);
	ck_assert_ptr_nonnull(strstr(builder__error(), "no_such_module"));
	ck_assert_int_eq(kmod__resolve("kernel/a.ko: ../../etc/x.ko\n", want,
				       1, &v, &n), -EINVAL);
	ck_assert_ptr_nonnull(strstr(builder__error(), "'../../etc/x.ko'"));
	ck_assert_int_eq(kmod__resolve("/abs/virtio_blk.ko:\n", want, 1, &v,
				       &n), -EINVAL);
	ck_assert_int_eq(kmod__resolve("no colon here\n", want, 1, &v, &n),
			 -EINVAL);
	ck_assert_int_eq(kmod__resolve("k/virtio_blk.ko: k/x.ko\n", want, 1,
				       &v, &n), -ENOENT);
	ck_assert_int_eq(kmod__resolve("k/virtio_blk.ko: k/x.ko\n"
				       "k/x.ko: k/virtio_blk.ko\n", want, 1,
				       &v, &n), -ELOOP);
	ck_assert_ptr_null(v);
}
END_TEST

/* ---- GPT -------------------------------------------------------------- */

static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static void check_header(int fd, uint64_t lba, uint64_t my, uint64_t alt,
			 uint64_t entries_lba, uint64_t first, uint64_t last)
{
	uint8_t h[512], ent[128 * 128];

	ck_assert_int_eq(pread(fd, h, 512, (off_t)(lba * 512)), 512);
	ck_assert_mem_eq(h, "EFI PART", 8);
	ck_assert_uint_eq(le32(h + 12), 92);
	uint32_t crc = le32(h + 16);
	memset(h + 16, 0, 4);
	ck_assert_uint_eq(crc, (uint32_t)crc32(0, h, 92));
	ck_assert_uint_eq(le64(h + 24), my);
	ck_assert_uint_eq(le64(h + 32), alt);
	ck_assert_uint_eq(le64(h + 72), entries_lba);
	ck_assert_uint_eq(le32(h + 80), 128);
	ck_assert_uint_eq(le32(h + 84), 128);
	ck_assert_int_eq(pread(fd, ent, sizeof(ent),
			       (off_t)(entries_lba * 512)), (ssize_t)sizeof(ent));
	ck_assert_uint_eq(le32(h + 88), (uint32_t)crc32(0, ent, sizeof(ent)));
	/* Linux filesystem type GUID, mixed-endian. */
	ck_assert_uint_eq(ent[0], 0xaf);
	ck_assert_uint_eq(ent[3], 0x0f);
	ck_assert_uint_eq(le64(ent + 32), first);
	ck_assert_uint_eq(le64(ent + 40), last);
	ck_assert_uint_eq(ent[56], 'r');
	ck_assert_uint_le(last, le64(h + 48));
	ck_assert_uint_ge(first, le64(h + 40));
}

START_TEST(gpt_layout)
{
	uint64_t size = 64ull << 20, total = size / 512, first, last;
	char p[128];
	uint8_t mbr[512];
	int fd;

	snprintf(p, sizeof(p), "%s/disk", dir);
	fd = open(p, O_RDWR | O_CREAT, 0644);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)size), 0);
	gpt__default_span(size, &first, &last);
	ck_assert_uint_eq(first, 2048);
	ck_assert_uint_eq((last + 1) % 2048, 0);
	ck_assert_uint_le(last, total - 34);
	struct gpt_layout g = { .disk_size = size, .first_lba = first,
				.last_lba = last, .part_name = "root" };
	memset(g.disk_guid, 0x11, 16);
	memset(g.part_guid, 0x22, 16);
	ck_assert_msg(gpt__write(fd, &g) == 0, "%s", builder__error());
	ck_assert_int_eq(pread(fd, mbr, 512, 0), 512);
	ck_assert_uint_eq(mbr[510], 0x55);
	ck_assert_uint_eq(mbr[511], 0xaa);
	ck_assert_uint_eq(mbr[446 + 4], 0xee);
	ck_assert_uint_eq(le32(mbr + 446 + 8), 1);
	ck_assert_uint_eq(le32(mbr + 446 + 12), total - 1);
	check_header(fd, 1, 1, total - 1, 2, first, last);
	check_header(fd, total - 1, total - 1, 1, total - 33, first, last);

	/* Out-of-range partitions and odd sizes are refused. */
	g.last_lba = total - 2;
	ck_assert_int_eq(gpt__write(fd, &g), -EINVAL);
	g.last_lba = last;
	g.first_lba = 10;
	ck_assert_int_eq(gpt__write(fd, &g), -EINVAL);
	g.first_lba = first;
	g.disk_size = size + 100;
	ck_assert_int_eq(gpt__write(fd, &g), -EINVAL);
	close(fd);

	/* sfdisk, when present, must read it back the same way. */
	if (access("/sbin/sfdisk", X_OK) == 0) {
		char cmd[256];
		snprintf(cmd, sizeof(cmd), "/sbin/sfdisk -d %s 2>&1 | grep -q "
			 "'start=        2048, size=      %llu, "
			 "type=0FC63DAF-8483-4772-8E79-3D69D8477DE4'", p,
			 (unsigned long long)(last - first + 1));
		ck_assert_msg(system(cmd) == 0, "sfdisk disagrees: %s", cmd);
	}
}
END_TEST

/* ---- manifest ----------------------------------------------------------- */

START_TEST(manifest_is_valid_toml)
{
	struct recipe r = { 0 };
	struct recipe_port ports[2] = {
		{ .host = 8080, .guest = 80 },
		{ .host = 5353, .guest = 53, .proto = "udp" },
	};
	struct manifest_file f[2] = {
		{ .role = "disk", .name = "disk.avd", .format = "avd",
		  .size = 12345 },
		{ .role = "kernel", .name = "vmlinuz", .size = 1 },
	};
	struct toml_value *root = NULL;
	char err[256], *text = NULL;

	r.name = "web";
	r.version = "1.0";
	r.description = "quote \" backslash \\ newline \n tab \t bell \a";
	r.vm.memory = 256ull << 20;
	r.vm.cpus = 2;
	r.vm.ports = ports;
	r.vm.n_ports = 2;
	memset(f[0].sha256, 'a', 64);
	memset(f[1].sha256, 'b', 64);
	ck_assert_int_eq(manifest__format(&r, 1700000000, "console=ttyS0 "
					  "root=/dev/vda rw", f, 2, &text), 0);
	ck_assert_msg(toml__parse(text, strlen(text), "manifest.toml", &root,
				  err, sizeof(err)) == 0, "%s\n%s", err, text);
	const struct toml_value *app = toml__get(root, "appliance");
	ck_assert_str_eq(toml__string(toml__get(app, "name")), "web");
	ck_assert_str_eq(toml__string(toml__get(app, "description")),
			 r.description);
	int64_t v;
	ck_assert(toml__int(toml__get(app, "build_time"), &v));
	ck_assert_int_eq(v, 1700000000);
	const struct toml_value *vm = toml__get(root, "vm");
	ck_assert(toml__int(toml__get(vm, "memory"), &v));
	ck_assert_int_eq(v, 256 << 20);
	ck_assert(toml__int(toml__get(vm, "cpus"), &v));
	ck_assert_int_eq(v, 2);
	const struct toml_value *pv = toml__get(vm, "ports");
	ck_assert_uint_eq(toml__array_len(pv), 2);
	ck_assert(toml__int(toml__get(toml__array_at(pv, 0), "host"), &v));
	ck_assert_int_eq(v, 8080);
	ck_assert_str_eq(toml__string(toml__get(toml__array_at(pv, 0),
						"proto")), "tcp");
	ck_assert_str_eq(toml__string(toml__get(toml__array_at(pv, 1),
						"proto")), "udp");
	const struct toml_value *fv = toml__get(root, "files");
	ck_assert_uint_eq(toml__array_len(fv), 2);
	ck_assert_str_eq(toml__string(toml__get(toml__array_at(fv, 0),
						"format")), "avd");
	ck_assert_str_eq(toml__string(toml__get(toml__array_at(fv, 1),
						"name")), "vmlinuz");
	ck_assert_ptr_null(toml__get(toml__array_at(fv, 1), "format"));
	toml__free(root);
	free(text);
}
END_TEST

/* ---- customize: writes stay inside the root ----------------------------- */

START_TEST(customize_never_writes_through_image_symlinks)
{
	/* The root's /etc is an absolute symlink to a directory on the
	 * host: a naive open(root + "/etc/hostname") would write there. */
	char root[128], link[160], p[200];
	struct recipe r = { 0 };
	struct recipe_file f = { .path = "/etc/motd", .content = "hi" };
	struct build_ctx c = { .r = &r, .log_fd = -1 };

	snprintf(root, sizeof(root), "%s/root", dir);
	ck_assert_int_eq(mkdir(root, 0755), 0);
	snprintf(link, sizeof(link), "%s/etc", root);
	ck_assert_int_eq(symlink(outside, link), 0);
	r.name = "box";
	r.version = "1";
	r.files = &f;
	r.n_files = 1;
	c.root = root;
	ck_assert_int_lt(customize__apply(&c), 0);
	snprintf(p, sizeof(p), "%s/motd", outside);
	ck_assert_msg(!exists(p), "wrote through the image's symlink");
	snprintf(p, sizeof(p), "%s/hostname", outside);
	ck_assert(!exists(p));

	/* A relative symlink climbing out is held inside the root too:
	 * /etc -> ../../.. resolves to the root itself. */
	ck_assert_int_eq(unlink(link), 0);
	ck_assert_int_eq(symlink("../../../../../..", link), 0);
	ck_assert_msg(customize__apply(&c) == 0, "%s", builder__error());
	snprintf(p, sizeof(p), "%s/motd", root);
	ck_assert_msg(exists(p), "file should land at the root's top");
	snprintf(p, sizeof(p), "%s/motd", dir);
	ck_assert(!exists(p));
}
END_TEST

START_TEST(customize_rejects_bad_paths_and_names)
{
	char root[128];
	struct recipe r = { .name = "box", .version = "1" };
	struct recipe_file f = { .path = "/etc/../../x", .content = "x" };
	struct recipe_user u = { .name = "Bad:Name", .uid = -1 };
	struct build_ctx c = { .r = &r, .log_fd = -1 };

	snprintf(root, sizeof(root), "%s/root", dir);
	ck_assert_int_eq(mkdir(root, 0755), 0);
	c.root = root;
	r.files = &f;
	r.n_files = 1;
	ck_assert_int_eq(customize__apply(&c), -EINVAL);
	ck_assert_ptr_nonnull(strstr(builder__error(), "/etc/../../x"));
	r.n_files = 0;
	r.users = &u;
	r.n_users = 1;
	ck_assert_int_eq(customize__apply(&c), -EINVAL);
	ck_assert_ptr_nonnull(strstr(builder__error(), "Bad:Name"));
	/* uid/gid collisions with the image's own accounts. */
	char pw[200];
	snprintf(pw, sizeof(pw), "%s/etc", root);
	mkdir(pw, 0755);
	snprintf(pw, sizeof(pw), "%s/etc/passwd", root);
	ck_assert_int_eq(build__write_file(pw, "root:x:0:0::/root:/bin/sh\n",
					   26, 0644), 0);
	snprintf(pw, sizeof(pw), "%s/etc/group", root);
	ck_assert_int_eq(build__write_file(pw, "root:x:0:\n", 10, 0644), 0);
	struct recipe_user u0 = { .name = "toor", .uid = 0 };
	r.users = &u0;
	ck_assert_int_eq(customize__apply(&c), -EEXIST);
	ck_assert_ptr_nonnull(strstr(builder__error(), "uid 0"));
	struct recipe_group g0 = { .name = "wheel", .gid = 0 };
	r.n_users = 0;
	r.groups = &g0;
	r.n_groups = 1;
	ck_assert_int_eq(customize__apply(&c), -EEXIST);
	ck_assert_ptr_nonnull(strstr(builder__error(), "gid 0"));
	r.n_groups = 0;
	r.hostname = "bad host";
	ck_assert_int_eq(customize__apply(&c), -EINVAL);
	r.hostname = NULL;
	r.timezone = "../../etc/shadow";
	ck_assert_int_eq(customize__apply(&c), -EINVAL);
}
END_TEST

static Suite *builder_suite(void)
{
	Suite *s = suite_create("builder");
	TCase *t = tcase_create("tarball");

	tcase_add_checked_fixture(t, setup, teardown);
	tcase_add_test(t, tarball_good_extracts);
	tcase_add_test(t, tarball_dotdot_refused);
	tcase_add_test(t, tarball_absolute_refused);
	tcase_add_test(t, tarball_symlink_escape_refused);
	tcase_add_test(t, tarball_hardlink_escape_refused);
	tcase_add_test(t, tarball_devices_need_permission);
	tcase_add_test(t, tarball_garbage_refused);
	suite_add_tcase(s, t);

	t = tcase_create("kmod");
	tcase_add_test(t, kmod_dependencies_first_each_once);
	tcase_add_test(t, kmod_bad_input);
	suite_add_tcase(s, t);

	t = tcase_create("gpt");
	tcase_add_checked_fixture(t, setup, teardown);
	tcase_add_test(t, gpt_layout);
	suite_add_tcase(s, t);

	t = tcase_create("customize");
	tcase_add_checked_fixture(t, setup, teardown);
	tcase_add_test(t, customize_never_writes_through_image_symlinks);
	tcase_add_test(t, customize_rejects_bad_paths_and_names);
	suite_add_tcase(s, t);

	t = tcase_create("manifest");
	tcase_add_test(t, manifest_is_valid_toml);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	return fx_run_suite(builder_suite());
}
