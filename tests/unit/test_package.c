/*
 * test_package.c - appliance packages: writing, opening, verifying, and
 * refusing every kind of tampering the format promises to catch.
 */
#include <archive.h>
#include <archive_entry.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "appliances/package.h"
#include "common/lease.h"
#include "imgfmt.h"
#include "fixture-run.h"

static char dir[64], build[128], pkg[128];
static uint8_t variant;   /* XORed into the build dir's bytes */
static struct minisign_seckey sk;
static struct minisign_pubkey pk;

static void write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(data, 1, len, f), len);
	fclose(f);
}

static void sha_hex(const char *path, char out[65])
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "sha256sum '%s'", path);
	FILE *p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(fscanf(p, "%64s", out), 1);
	pclose(p);
}

static int have_avd(void)
{
	for (const char *const *f = imgfmt__formats(); *f; f++)
		if (strcmp(*f, "avd") == 0)
			return 1;
	return 0;
}

/* The test disk's data: bytes i*13 + i/512 (XOR variant) from this
 * virtual offset on; zeros elsewhere. */
#define DISK_DATA_AT 70000

static uint8_t data_byte(size_t i)
{
	return (uint8_t)(i * 13 + (i >> 9)) ^ variant;
}

/* The genuine disk byte at virtual offset voff, inside the data. */
static uint8_t genuine_byte(uint64_t voff)
{
	return data_byte((size_t)(voff - DISK_DATA_AT));
}

/* A build directory as `appliance build` leaves it. */
static void make_build_dir(void)
{
	char p[256], kh[65], ih[65], dh[65], manifest[4096];
	static uint8_t data[300000];
	struct imgfmt_create_opts c = { .format = "avd", .size = 1 << 20 };
	struct imgfmt_open_opts o = { .flags = IMGFMT_OPEN_RDWR };
	imgfmt_image *img;
	struct stat sk_, si, sd;

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = data_byte(i);
	snprintf(p, sizeof(p), "%s/vmlinuz", build);
	write_file(p, data, 5000);
	snprintf(p, sizeof(p), "%s/initrd.img", build);
	write_file(p, data + 7, 3000);
	snprintf(p, sizeof(p), "%s/disk.avd", build);
	ck_assert_msg(imgfmt__create(p, &c) == 0, "%s", imgfmt__error());
	ck_assert_int_eq(imgfmt__open(p, &o, &img), 0);
	ck_assert_int_eq(imgfmt__pwrite(img, data, sizeof(data), DISK_DATA_AT),
			 0);
	ck_assert_int_eq(imgfmt__close(img), 0);

	snprintf(p, sizeof(p), "%s/vmlinuz", build);
	sha_hex(p, kh);
	stat(p, &sk_);
	snprintf(p, sizeof(p), "%s/initrd.img", build);
	sha_hex(p, ih);
	stat(p, &si);
	snprintf(p, sizeof(p), "%s/disk.avd", build);
	sha_hex(p, dh);
	stat(p, &sd);
	snprintf(manifest, sizeof(manifest),
		 "manifest_version = 1\n\n[appliance]\nname = \"demo\"\n"
		 "version = \"1.2\"\ndescription = \"a test\"\n"
		 "architecture = \"x86_64\"\nbuild_time = 1700000000\n\n"
		 "[vm]\nmemory = 268435456\ncpus = 2\n"
		 "cmdline = \"console=ttyS0 root=/dev/vda rw\"\n"
		 "console = \"serial\"\n\n[[vm.ports]]\nhost = 8080\n"
		 "guest = 80\nproto = \"tcp\"\n\n"
		 "[[files]]\nrole = \"disk\"\nname = \"disk.avd\"\n"
		 "format = \"avd\"\nsize = %lld\nsha256 = \"%s\"\n\n"
		 "[[files]]\nrole = \"kernel\"\nname = \"vmlinuz\"\n"
		 "size = %lld\nsha256 = \"%s\"\n\n"
		 "[[files]]\nrole = \"initrd\"\nname = \"initrd.img\"\n"
		 "size = %lld\nsha256 = \"%s\"\n",
		 (long long)sd.st_size, dh, (long long)sk_.st_size, kh,
		 (long long)si.st_size, ih);
	snprintf(p, sizeof(p), "%s/manifest.toml", build);
	write_file(p, manifest, strlen(manifest));
}

static void setup(void)
{
	strcpy(dir, "/tmp/test_package.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(build, sizeof(build), "%s/build", dir);
	mkdir(build, 0755);
	snprintf(pkg, sizeof(pkg), "%s/demo-1.2.appliance", dir);
	ck_assert_int_eq(minisign__generate(&sk, &pk), 0);
	if (have_avd()) {
		make_build_dir();
		ck_assert_msg(package__create(build, pkg, &sk, NULL,
					      PACKAGE_LEAF_BLAKE3, NULL) == 0,
			      "%s", package__error());
	}
}

/* Loop tests run once per leaf hash: _i 0 is the default (BLAKE3), 1
 * rewrites the package with SHA-256 leaves, as older packages have. */
static const enum package_leaf_hash leaf_hashes[] = {
	PACKAGE_LEAF_BLAKE3, PACKAGE_LEAF_SHA256,
};

static void remake_pkg(enum package_leaf_hash alg)
{
	ck_assert_msg(package__create(build, pkg, &sk, NULL, alg, NULL) == 0,
		      "%s", package__error());
}

static void teardown(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
}

static struct package *open_ok(void)
{
	struct package *p;
	ck_assert_msg(package__open(pkg, &p) == 0, "%s", package__error());
	return p;
}

START_TEST(roundtrip_signed_package)
{
	struct package *p;
	const char *tc;
	char kid[MINISIGN_KEYID_HEX];
	imgfmt_image *disk;
	uint8_t buf[1000];

	if (!have_avd())
		return;
	remake_pkg(leaf_hashes[_i]);
	p = open_ok();
	ck_assert_int_eq(p->leaf_hash, leaf_hashes[_i]);
	ck_assert_str_eq(p->name, "demo");
	ck_assert_str_eq(p->version, "1.2");
	ck_assert_uint_eq(p->memory, 268435456);
	ck_assert_int_eq(p->cpus, 2);
	ck_assert_int_eq(p->nr_ports, 1);
	ck_assert_int_eq(p->ports[0].host, 8080);
	ck_assert(p->has_signature);
	ck_assert_int_eq(package__verify_signature(p, &pk, kid, &tc), 0);
	ck_assert_ptr_nonnull(strstr(tc, "demo 1.2"));
	ck_assert_int_eq(package__verify_members(p, false), 0);
	ck_assert_int_eq(package__open_disk(p, &disk), 0);
	ck_assert_int_eq(imgfmt__pread(disk, buf, sizeof(buf),
				       DISK_DATA_AT + 5), 0);
	ck_assert_uint_eq(buf[0], genuine_byte(DISK_DATA_AT + 5));
	imgfmt__close(disk);
	ck_assert_int_eq(package__verify_members(p, true), 0);
	package__close(p);
}
END_TEST

START_TEST(same_inputs_same_bytes)
{
	char other[160], a[65], b[65];

	if (!have_avd())
		return;
	snprintf(other, sizeof(other), "%s/again.appliance", dir);
	ck_assert_int_eq(package__create(build, other, &sk, NULL,
					 PACKAGE_LEAF_BLAKE3, NULL), 0);
	sha_hex(pkg, a);
	sha_hex(other, b);
	ck_assert_str_eq(a, b);
}
END_TEST

/* Flip one byte at `off` of the package file. */
static void flip(uint64_t off)
{
	int fd = open(pkg, O_RDWR);
	uint8_t c;
	ck_assert_int_eq(pread(fd, &c, 1, (off_t)off), 1);
	c ^= 0x40;
	ck_assert_int_eq(pwrite(fd, &c, 1, (off_t)off), 1);
	close(fd);
}

START_TEST(tampered_members_are_refused)
{
	struct package *p;
	uint64_t offs[PACKAGE_MAX_MEMBERS];
	const char *names[PACKAGE_MAX_MEMBERS];
	int n;

	if (!have_avd())
		return;
	remake_pkg(leaf_hashes[_i]);
	p = open_ok();
	n = p->nr_members;
	for (int i = 0; i < n; i++) {
		offs[i] = p->members[i].offset + p->members[i].size / 2;
		names[i] = strdup(p->members[i].name);
	}
	int disk = p->disk, subtrees = p->subtrees;
	ck_assert_int_eq(subtrees >= 0, leaf_hashes[_i] == PACKAGE_LEAF_BLAKE3);
	if (subtrees >= 0)   /* the entries of cluster 2, which holds data */
		offs[subtrees] = p->members[subtrees].offset + 2 * 512 + 40;
	package__close(p);
	for (int i = 0; i < n; i++) {
		flip(offs[i]);
		p = open_ok();
		ck_assert_int_eq(package__verify_signature(p, &pk, NULL, NULL), 0);
		int lazy = package__verify_members(p, false);
		if (i == disk) {
			/* Lazy mode: caught when the guest reads it. */
			imgfmt_image *img;
			uint8_t buf[65536];
			ck_assert_int_eq(lazy, 0);
			ck_assert_int_eq(package__open_disk(p, &img), 0);
			int bad = 0;
			for (uint64_t o = 0; o < (1 << 20); o += 65536)
				if (imgfmt__pread(img, buf, sizeof(buf), o) < 0)
					bad++;
			imgfmt__close(img);
			ck_assert_msg(bad >= 1, "tampered disk read cleanly");
			ck_assert_int_eq(package__verify_members(p, true),
					 -EBADMSG);
		} else if (i == subtrees) {
			/* Not hashed up front (FORMAT.md): cluster 2's
			 * entries no longer merge to its leaf, so the view
			 * checks it whole, and the data still reads; --full
			 * names the member. */
			imgfmt_image *img;
			uint8_t buf[4096];
			ck_assert_int_eq(lazy, 0);
			ck_assert_int_eq(package__open_disk(p, &img), 0);
			ck_assert_int_eq(imgfmt__pread(img, buf, sizeof(buf),
						       2 * 65536 + 8192), 0);
			ck_assert_uint_eq(buf[0], genuine_byte(2 * 65536 + 8192));
			imgfmt__close(img);
			ck_assert_int_eq(package__verify_members(p, true),
					 -EBADMSG);
			ck_assert_ptr_nonnull(strstr(package__error(), names[i]));
		} else {
			ck_assert_int_eq(lazy, -EBADMSG);
			ck_assert_ptr_nonnull(strstr(package__error(), names[i]));
		}
		package__close(p);
		flip(offs[i]); /* restore */
	}
	for (int i = 0; i < n; i++)
		free((void *)names[i]);
}
END_TEST

/* Package offset of the disk's byte at virtual offset voff (the disk is
 * an uncompressed AVD: its data cluster sits as is in the member). */
static uint64_t disk_byte_in_package(struct package *p, uint64_t voff)
{
	char path[256];
	imgfmt_image *img;
	struct imgfmt_extent ext;

	snprintf(path, sizeof(path), "%s/disk.avd", build);
	ck_assert_int_eq(imgfmt__open(path, NULL, &img), 0);
	ck_assert_int_eq(imgfmt__map(img, voff, 1, &ext), 0);
	ck_assert_int_eq(ext.kind, IMGFMT_EXTENT_DATA);
	ck_assert_int_ge(ext.file_offset, 0);
	imgfmt__close(img);
	return p->members[p->disk].offset + (uint64_t)ext.file_offset;
}

/* The package opened with one byte changed in part 3 of disk cluster 2
 * (which holds data), its members checked, and its disk. */
#define TAMPERED_CLUSTER (2 * 65536)
#define TAMPERED_PART (TAMPERED_CLUSTER + 3 * 4096)

static imgfmt_image *open_with_tampered_part(struct package **p)
{
	imgfmt_image *img;

	*p = open_ok();
	flip(disk_byte_in_package(*p, TAMPERED_PART + 100));
	ck_assert_int_eq(package__verify_members(*p, false), 0);
	ck_assert_int_eq(package__open_disk(*p, &img), 0);
	return img;
}

/* With the disk-subtrees member, a small read is checked by the 4 KiB
 * parts it touches: a changed byte fails the read of its part, and only
 * that (with whole-cluster checks, as for SHA-256 leaves, every read of
 * the cluster fails). */
START_TEST(small_reads_are_checked_by_their_parts)
{
	struct package *p;
	imgfmt_image *img;
	uint8_t buf[4096];
	uint64_t other = TAMPERED_CLUSTER + 9 * 4096;

	if (!have_avd())
		return;
	remake_pkg(leaf_hashes[_i]);
	img = open_with_tampered_part(&p);
	/* The tampered part first: a failed read starts no stream. */
	memset(buf, 0x55, sizeof(buf));
	ck_assert_int_eq(imgfmt__pread(img, buf, sizeof(buf), TAMPERED_PART),
			 -EBADMSG);
	for (size_t k = 0; k < sizeof(buf); k++)
		ck_assert_uint_eq(buf[k], 0);
	int r = imgfmt__pread(img, buf, sizeof(buf), other);
	if (p->subtrees >= 0) {
		ck_assert_int_eq(r, 0);
		ck_assert_uint_eq(buf[0], genuine_byte(other));
	} else {
		ck_assert_int_eq(r, -EBADMSG);
	}
	imgfmt__close(img);
	ck_assert_int_eq(package__verify_members(p, true), -EBADMSG);
	package__close(p);
}
END_TEST

/* CVs that merged to their leaf are kept in memory: changing the member
 * afterwards changes nothing for that cluster (were they read again,
 * they would no longer merge, and the whole-cluster check would then
 * fail on the part tampered before). */
START_TEST(merged_cvs_are_kept_not_read_again)
{
	struct package *p;
	imgfmt_image *img;
	uint8_t buf[4096];

	if (!have_avd())
		return;
	img = open_with_tampered_part(&p);
	ck_assert_int_ge(p->subtrees, 0);
	/* Failed reads start no stream, so both are checked by parts. */
	ck_assert_int_eq(imgfmt__pread(img, buf, sizeof(buf), TAMPERED_PART),
			 -EBADMSG);
	flip(p->members[p->subtrees].offset + 2 * 512 + 5);
	ck_assert_int_eq(imgfmt__pread(img, buf, sizeof(buf),
				       TAMPERED_CLUSTER + 12 * 4096), 0);
	imgfmt__close(img);
	package__close(p);
}
END_TEST

/* 1 if the package file can be leased where the test makes it (not on
 * overlayfs, say): reads are spared their hash only then. */
static int leasable(void)
{
	struct file_lease *l;
	int f = open(pkg, O_RDONLY);
	int r = file_lease__take(f, &l);

	file_lease__release(l);
	close(f);
	return r == 0;
}

/* 4 KiB at `off` through a fresh view of p's disk (no cache of the view's
 * own in between): 0 or -errno. */
static int read_4k(struct package *p, uint64_t off, uint8_t *buf)
{
	imgfmt_image *img;

	ck_assert_int_eq(package__open_disk(p, &img), 0);
	int r = imgfmt__pread(img, buf, 4096, off);
	imgfmt__close(img);
	return r;
}

/* FORMAT.md, "Checked once": bytes checked once are not hashed again
 * while the package file stands leased; a write to the file (here by
 * this very process, which must not be held by its own lease) makes the
 * next read of them check them, and fail; and from then on every read
 * is hashed. */
START_TEST(checked_parts_are_hashed_again_only_after_a_write)
{
	struct package *p;
	uint8_t buf[4096];
	uint64_t off = TAMPERED_PART, other = 3 * 65536 + 4096;

	if (!have_avd())
		return;
	remake_pkg(leaf_hashes[_i]);
	int lease = leasable();
	p = open_ok();
	ck_assert_int_eq(package__verify_members(p, false), 0);
	for (int k = 0; k < 3; k++) {
		ck_assert_int_eq(read_4k(p, off, buf), 0);
		ck_assert_uint_eq(buf[0], genuine_byte(off));
		ck_assert_uint_eq(package__disk_checks_skipped(p),
				  lease ? (uint64_t)k : 0);
	}
	flip(disk_byte_in_package(p, off + 100));
	memset(buf, 0x55, sizeof(buf));
	ck_assert_int_eq(read_4k(p, off, buf), -EBADMSG);
	for (size_t k = 0; k < sizeof(buf); k++)
		ck_assert_uint_eq(buf[k], 0);
	uint64_t skipped = package__disk_checks_skipped(p);
	ck_assert_int_eq(read_4k(p, other, buf), 0);
	ck_assert_int_eq(read_4k(p, other, buf), 0);
	ck_assert_uint_eq(buf[0], genuine_byte(other));
	ck_assert_uint_eq(package__disk_checks_skipped(p), skipped);
	package__close(p);
}
END_TEST

/* A package some program has open for writing cannot be leased: every
 * read is hashed, however often it repeats. */
START_TEST(a_package_open_for_writing_is_always_hashed)
{
	struct package *p;
	uint8_t buf[4096];

	if (!have_avd())
		return;
	int w = open(pkg, O_WRONLY);
	ck_assert_int_ge(w, 0);
	p = open_ok();
	ck_assert_int_eq(package__verify_members(p, false), 0);
	for (int k = 0; k < 3; k++)
		ck_assert_int_eq(read_4k(p, TAMPERED_PART, buf), 0);
	ck_assert_uint_eq(package__disk_checks_skipped(p), 0);
	package__close(p);
	close(w);
}
END_TEST

/*
 * Whatever one changed byte of the disk or of its part CVs does, a read
 * returns the genuine bytes or fails, zeroed: 300 rounds of a random
 * byte flipped in either member, then random reads of random sizes
 * (parts, unaligned, whole and several clusters) through a fresh view.
 */
static uint64_t next_rand(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

START_TEST(random_damage_never_yields_wrong_bytes)
{
	static uint8_t genuine[1 << 20], buf[3 * 65536];
	uint64_t x = 0x2545f4914f6cdd1dull;
	struct package *p;
	imgfmt_image *img;
	char path[256];
	int failed = 0, served = 0;

	if (!have_avd())
		return;
	snprintf(path, sizeof(path), "%s/disk.avd", build);
	ck_assert_int_eq(imgfmt__open(path, NULL, &img), 0);
	ck_assert_int_eq(imgfmt__pread(img, genuine, sizeof(genuine), 0), 0);
	imgfmt__close(img);
	p = open_ok();
	ck_assert_int_eq(package__verify_members(p, false), 0);
	struct package_member *dm = &p->members[p->disk];
	struct package_member *sm = &p->members[p->subtrees];
	for (int round = 0; round < 300; round++) {
		uint64_t r = next_rand(&x);
		uint64_t at = round % 2 ? dm->offset + r % dm->size
					: sm->offset + r % sm->size;
		flip(at);
		ck_assert_int_eq(package__open_disk(p, &img), 0);
		for (int k = 0; k < 8; k++) {
			static const size_t sizes[] = { 512, 4096, 4096, 8192,
				5000, 65536, 2 * 65536 + 300, 100 };
			size_t len = sizes[k];
			uint64_t off = next_rand(&x) % (sizeof(genuine) - len);
			if (k < 4)
				off &= ~(uint64_t)4095;
			memset(buf, 0x5a, len);
			if (imgfmt__pread(img, buf, len, off) == 0) {
				ck_assert_msg(memcmp(buf, genuine + off, len) == 0,
					      "round %d: %zu bytes at %" PRIu64
					      " served wrong", round, len, off);
				served++;
			} else {
				for (size_t i = 0; i < len; i++)
					ck_assert_uint_eq(buf[i], 0);
				failed++;
			}
		}
		imgfmt__close(img);
		flip(at);
	}
	package__close(p);
	ck_assert_int_gt(served, 0);
	ck_assert_int_gt(failed, 0);
}
END_TEST

/* [disk_verity] subtree keys that disagree with the member or the rules
 * (edited in place, same length: the tar stays valid) are refused when
 * the package is opened, naming the key. */
START_TEST(bad_subtree_keys_are_refused)
{
	static const struct { const char *from, *to, *why; } edits[] = {
		{ "subtree_size = 4096", "subtree_size = 8192", "disk-subtrees "
		  "member is" },
		{ "subtree_size = 4096", "subtree_size = 3000", "power of two" },
		{ "subtree_size = 4096", "subtree_size = 512 ", "subtree_size" },
		{ "subtrees = \"disk.", "subtreex = \"disk.", "subtreex" },
		{ "subtrees = \"disk.subtrees\"", "subtrees = \"disk.hashes\"  ",
		  "not the disk-subtrees file" },
		{ "subtrees = \"disk.", "#ubtrees = \"disk.", "go together" },
		{ "algorithm = \"blake3\"", "algorithm = \"sha256\"",
		  "need disk_verity.algorithm" },
	};

	if (!have_avd())
		return;
	for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
		struct package *p = open_ok();
		char *pos = strstr(p->manifest_text, edits[i].from);
		ck_assert_ptr_nonnull(pos);
		uint64_t off = 512 + (uint64_t)(pos - p->manifest_text);
		size_t len = strlen(edits[i].from);
		package__close(p);
		ck_assert_uint_eq(strlen(edits[i].to), len);
		int fd = open(pkg, O_RDWR);
		ck_assert_int_eq(pwrite(fd, edits[i].to, len, (off_t)off),
				 (ssize_t)len);
		ck_assert_int_lt(package__open(pkg, &p), 0);
		ck_assert_msg(strstr(package__error(), edits[i].why),
			      "edit %zu: %s", i, package__error());
		ck_assert_int_eq(pwrite(fd, edits[i].from, len, (off_t)off),
				 (ssize_t)len);
		close(fd);
	}
}
END_TEST

START_TEST(tampered_manifest_fails_the_signature)
{
	struct package *p;
	char *pos;

	if (!have_avd())
		return;
	p = open_ok();
	/* Change the memory size in place (same length keeps the tar). */
	pos = strstr(p->manifest_text, "memory = 268435456");
	ck_assert_ptr_nonnull(pos);
	uint64_t off = 512 + (uint64_t)(pos - p->manifest_text) + 9;
	package__close(p);
	flip(off); /* '2' -> 'r': no longer an integer */
	ck_assert_int_eq(package__open(pkg, &p), -EINVAL);
	flip(off);
	flip(off + 1); /* '6' -> 'v' */
	ck_assert_int_lt(package__open(pkg, &p), 0);
	flip(off + 1);
	/* A digit change keeps it valid TOML: then the signature fails. */
	p = open_ok();
	package__close(p);
	{
		int fd = open(pkg, O_RDWR);
		ck_assert_int_eq(pwrite(fd, "9", 1, (off_t)off), 1);
		close(fd);
	}
	p = open_ok();
	ck_assert_int_eq(package__verify_signature(p, &pk, NULL, NULL),
			 -EBADMSG);
	package__close(p);
}
END_TEST

START_TEST(wrong_or_untrusted_key_is_refused)
{
	struct minisign_seckey sk2;
	struct minisign_pubkey pk2;
	struct package *p;
	char kid[MINISIGN_KEYID_HEX], want[MINISIGN_KEYID_HEX];

	if (!have_avd())
		return;
	ck_assert_int_eq(minisign__generate(&sk2, &pk2), 0);
	p = open_ok();
	ck_assert_int_lt(package__verify_signature(p, &pk2, kid, NULL), 0);
	setenv("APPLIANCE_TRUST_DIR", dir, 1);
	setenv("APPLIANCE_SYSTEM_TRUST_DIR", dir, 1);
	ck_assert_int_eq(package__verify_signature(p, NULL, kid, NULL),
			 -ENOKEY);
	minisign__keyid_hex(pk.keyid, want);
	ck_assert_str_eq(kid, want);
	ck_assert_ptr_nonnull(strstr(package__error(), want));
	package__close(p);
}
END_TEST

/* Rewrite the package with libarchive, member by member, through an edit
 * callback: the way an attacker would build a hostile one. */
typedef int (*edit_fn)(struct archive *out, struct archive_entry *e,
		       const void *data, size_t len, int index);

static void rewrite(edit_fn fn)
{
	char tmp[160];
	struct archive *in = archive_read_new(), *out = archive_write_new();
	struct archive_entry *e;
	int i = 0;

	snprintf(tmp, sizeof(tmp), "%s/hostile.appliance", dir);
	archive_read_support_format_tar(in);
	ck_assert_int_eq(archive_read_open_filename(in, pkg, 10240), 0);
	archive_write_set_format_ustar(out);
	ck_assert_int_eq(archive_write_open_filename(out, tmp), 0);
	while (archive_read_next_header(in, &e) == ARCHIVE_OK) {
		size_t len = (size_t)archive_entry_size(e);
		void *data = malloc(len + 1);
		ck_assert_int_eq(archive_read_data(in, data, len), (ssize_t)len);
		if (!fn(out, e, data, len, i)) {
			archive_write_header(out, e);
			archive_write_data(out, data, len);
		}
		free(data);
		i++;
	}
	archive_read_free(in);
	archive_write_free(out);
	ck_assert_int_eq(rename(tmp, pkg), 0);
}

static void *held;
static size_t held_len;
static struct archive_entry *held_e;

static int swap_kernel_and_initrd(struct archive *out, struct archive_entry *e,
				  const void *data, size_t len, int i)
{
	(void)i;
	if (strcmp(archive_entry_pathname(e), "vmlinuz") == 0) {
		held = malloc(len);
		memcpy(held, data, len);
		held_len = len;
		held_e = archive_entry_clone(e);
		return 1;
	}
	if (strcmp(archive_entry_pathname(e), "initrd.img") == 0) {
		archive_write_header(out, e);
		archive_write_data(out, data, len);
		archive_write_header(out, held_e);
		archive_write_data(out, held, held_len);
		archive_entry_free(held_e);
		free(held);
		return 1;
	}
	return 0;
}

static int add_member(struct archive *out, struct archive_entry *e,
		      const void *data, size_t len, int i)
{
	(void)data; (void)len; (void)e;
	if (i == 2) {
		struct archive_entry *x = archive_entry_new();
		archive_entry_set_pathname(x, "extra");
		archive_entry_set_size(x, 3);
		archive_entry_set_filetype(x, AE_IFREG);
		archive_entry_set_perm(x, 0644);
		archive_write_header(out, x);
		archive_write_data(out, "abc", 3);
		archive_entry_free(x);
	}
	return 0;
}

static const char *hostile_name;
static int hostile_type;
static int replace_kernel(struct archive *out, struct archive_entry *e,
			  const void *data, size_t len, int i)
{
	(void)data; (void)len; (void)i;
	if (strcmp(archive_entry_pathname(e), "vmlinuz") != 0)
		return 0;
	struct archive_entry *x = archive_entry_new();
	archive_entry_set_pathname(x, hostile_name);
	archive_entry_set_filetype(x, (mode_t)hostile_type);
	if (hostile_type == AE_IFLNK) {
		archive_entry_set_symlink(x, "/etc/passwd");
		archive_entry_set_size(x, 0);
	} else {
		archive_entry_set_size(x, 5000);
	}
	archive_entry_set_perm(x, 0644);
	archive_write_header(out, x);
	if (hostile_type != AE_IFLNK) {
		static char z[5000];
		archive_write_data(out, z, sizeof(z));
	}
	archive_entry_free(x);
	return 1;
}

/* Swap one member for the same-named, same-sized member of another
 * package signed by the same key. */
static char other_pkg[160];
static const char *swap_name;

static int swap_from_other(struct archive *out, struct archive_entry *e,
			   const void *data, size_t len, int i)
{
	struct archive *in;
	struct archive_entry *oe;
	int found = 0;

	(void)data;
	(void)i;
	if (strcmp(archive_entry_pathname(e), swap_name) != 0)
		return 0;
	in = archive_read_new();
	archive_read_support_format_tar(in);
	ck_assert_int_eq(archive_read_open_filename(in, other_pkg, 10240), 0);
	while (!found && archive_read_next_header(in, &oe) == ARCHIVE_OK)
		found = strcmp(archive_entry_pathname(oe), swap_name) == 0;
	ck_assert_msg(found, "%s not in the other package", swap_name);
	/* Same size: only the digests can tell the two apart. */
	ck_assert_int_eq(archive_entry_size(oe), (la_int64_t)len);
	void *od = malloc(len + 1);
	ck_assert_int_eq(archive_read_data(in, od, len), (ssize_t)len);
	ck_assert_msg(memcmp(od, data, len) != 0, "%s is the same in both",
		      swap_name);
	archive_write_header(out, oe);
	archive_write_data(out, od, len);
	free(od);
	archive_read_free(in);
	return 1;
}

/* Members taken from another genuine package by the same publisher:
 * each signature covers only its own manifest, and the manifest names
 * every member's SHA-256 (and the disk's leaves), so every swap is
 * refused, naming what was swapped. */
START_TEST(members_swapped_from_another_package_are_refused)
{
	static const char *const names[] = {
		"manifest.toml", "manifest.toml.minisig", "vmlinuz",
		"initrd.img", "disk.hashes", "disk.avd", "disk.subtrees",
	};
	char saved[sizeof(build)];
	struct package *p;

	if (!have_avd())
		return;
	snprintf(saved, sizeof(saved), "%s", build);
	snprintf(build, sizeof(build), "%s/build2", dir);
	ck_assert_int_eq(mkdir(build, 0755), 0);
	variant = 0x5a;
	make_build_dir();
	variant = 0;
	snprintf(other_pkg, sizeof(other_pkg), "%s/other.appliance", dir);
	ck_assert_msg(package__create(build, other_pkg, &sk, NULL,
				      PACKAGE_LEAF_BLAKE3, NULL) == 0, "%s",
		      package__error());
	snprintf(build, sizeof(build), "%s", saved);

	for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
		remake_pkg(PACKAGE_LEAF_BLAKE3);
		swap_name = names[k];
		rewrite(swap_from_other);
		p = open_ok();
		if (k < 2) {   /* manifest or signature: the signature fails */
			ck_assert_int_eq(package__verify_signature(p, &pk, NULL,
								   NULL),
					 -EBADMSG);
			package__close(p);
			continue;
		}
		ck_assert_int_eq(package__verify_signature(p, &pk, NULL, NULL),
				 0);
		if (strcmp(swap_name, "disk.avd") == 0) {
			/* Lazily: the clusters that differ fail as read. */
			imgfmt_image *img;
			uint8_t buf[65536];
			int bad = 0;
			ck_assert_int_eq(package__verify_members(p, false), 0);
			ck_assert_int_eq(package__open_disk(p, &img), 0);
			for (uint64_t o = 0; o < (1 << 20); o += sizeof(buf))
				bad += imgfmt__pread(img, buf, sizeof(buf), o) < 0;
			imgfmt__close(img);
			ck_assert_int_ge(bad, 1);
			ck_assert_int_eq(package__verify_members(p, true),
					 -EBADMSG);
		} else if (strcmp(swap_name, "disk.subtrees") == 0) {
			/* Not hashed up front (FORMAT.md): the entries do
			 * not merge to this package's leaves, so clusters
			 * are checked whole; --full names the member. */
			ck_assert_int_eq(package__verify_members(p, false), 0);
			ck_assert_int_eq(package__verify_members(p, true),
					 -EBADMSG);
		} else {
			ck_assert_int_eq(package__verify_members(p, false),
					 -EBADMSG);
		}
		ck_assert_msg(strstr(package__error(), swap_name),
			      "'%s' does not name %s", package__error(),
			      swap_name);
		package__close(p);
	}
}
END_TEST

START_TEST(reordered_members_are_refused)
{
	struct package *p;
	if (!have_avd())
		return;
	rewrite(swap_kernel_and_initrd);
	ck_assert_int_eq(package__open(pkg, &p), -EINVAL);
	ck_assert_ptr_nonnull(strstr(package__error(), "reordered"));
}
END_TEST

START_TEST(added_member_is_refused)
{
	struct package *p;
	if (!have_avd())
		return;
	rewrite(add_member);
	ck_assert_int_eq(package__open(pkg, &p), -EINVAL);
}
END_TEST

START_TEST(traversal_and_symlink_members_are_refused)
{
	static const struct { const char *name; int type; const char *why; }
	cases[] = {
		{ "../vmlinuz", AE_IFREG, "not allowed" },
		{ "/vmlinuz", AE_IFREG, "not allowed" },
		{ "vmlinuz", AE_IFLNK, "type" },
		{ "sub/vmlinuz", AE_IFREG, "not allowed" },
	};
	char saved[160], cmd[400];
	if (!have_avd())
		return;
	snprintf(saved, sizeof(saved), "%s/saved.appliance", dir);
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", pkg, saved);
	ck_assert_int_eq(system(cmd), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct package *p;
		hostile_name = cases[i].name;
		hostile_type = cases[i].type;
		rewrite(replace_kernel);
		ck_assert_int_eq(package__open(pkg, &p), -EINVAL);
		ck_assert_msg(strstr(package__error(), cases[i].why),
			      "%s: %s", cases[i].name, package__error());
		snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", saved, pkg);
		ck_assert_int_eq(system(cmd), 0);
	}
}
END_TEST

START_TEST(truncated_and_trailing_data_are_refused)
{
	struct package *p;
	struct stat st;
	if (!have_avd())
		return;
	stat(pkg, &st);
	ck_assert_int_eq(truncate(pkg, st.st_size - 20000), 0);
	ck_assert_int_eq(package__open(pkg, &p), -EINVAL);
	ck_assert_int_eq(truncate(pkg, st.st_size + 20000), 0);
	flip((uint64_t)st.st_size + 100);
	ck_assert_int_eq(package__open(pkg, &p), -EINVAL);
}
END_TEST

START_TEST(resigning_replaces_the_signature)
{
	struct minisign_seckey sk2;
	struct minisign_pubkey pk2;
	struct package *p;
	if (!have_avd())
		return;
	ck_assert_int_eq(minisign__generate(&sk2, &pk2), 0);
	ck_assert_int_eq(package__sign(pkg, &sk2, "re-signed"), 0);
	p = open_ok();
	ck_assert_int_lt(package__verify_signature(p, &pk, NULL, NULL), 0);
	ck_assert_int_eq(package__verify_signature(p, &pk2, NULL, NULL), 0);
	ck_assert_int_eq(package__verify_members(p, true), 0);
	package__close(p);
}
END_TEST

START_TEST(not_a_package)
{
	struct package *p;
	write_file(pkg, "hello", 5);
	ck_assert_int_eq(package__open(pkg, &p), -EINVAL);
	ck_assert_int_eq(package__open("/nonexistent.appliance", &p), -ENOENT);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("package");
	TCase *tc = tcase_create("package");

	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, roundtrip_signed_package, 0, 2);
	tcase_add_test(tc, same_inputs_same_bytes);
	tcase_add_loop_test(tc, tampered_members_are_refused, 0, 2);
	tcase_add_loop_test(tc, small_reads_are_checked_by_their_parts, 0, 2);
	tcase_add_test(tc, merged_cvs_are_kept_not_read_again);
	tcase_add_loop_test(tc, checked_parts_are_hashed_again_only_after_a_write,
			    0, 2);
	tcase_add_test(tc, a_package_open_for_writing_is_always_hashed);
	tcase_add_test(tc, bad_subtree_keys_are_refused);
	tcase_add_test(tc, random_damage_never_yields_wrong_bytes);
	tcase_add_test(tc, tampered_manifest_fails_the_signature);
	tcase_add_test(tc, wrong_or_untrusted_key_is_refused);
	tcase_add_test(tc, members_swapped_from_another_package_are_refused);
	tcase_add_test(tc, reordered_members_are_refused);
	tcase_add_test(tc, added_member_is_refused);
	tcase_add_test(tc, traversal_and_symlink_members_are_refused);
	tcase_add_test(tc, truncated_and_trailing_data_are_refused);
	tcase_add_test(tc, resigning_replaces_the_signature);
	tcase_add_test(tc, not_a_package);
	suite_add_tcase(s, tc);
	return fx_run_suite(s);
}
