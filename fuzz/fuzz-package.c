/* fuzz/fuzz-package.c - hostile appliance packages.
 *
 * Input: the package file.  What `appliance verify`, `inspect` and `run
 * --insecure` do with it: open (tar members, manifest), check the
 * signature against a fixed key (fuzz/fixed.key's, which signs the
 * seeds, so mutated manifests and signatures reach Ed25519), check the
 * members whatever the signature said (--insecure goes on too), then
 * open the disk through the verified view and read it, twice (the
 * second time through a new view, which skips the hash of what the
 * first checked: the file is read-only here, so it is leased; see
 * appliances/FORMAT.md "Checked once"); and separately verify --full.
 * The oracle: no crash, no sanitizer report, no leak, no hang; verify
 * --full and lazy verification agree: a package --full accepts reads
 * whole through the verified view; and the second read ends where the
 * first did with the same bytes.  (That every byte read through the
 * view was checked against the manifest's tree, test_package covers.)
 *
 * The disk member's AVD header checksum is recomputed before each run:
 * the header is read before any cluster is verified, so its fields are
 * what an attacker controls, and a mutation almost never keeps the
 * checksum right by chance (fuzz-image.c mode bit 4 does the same). */
#include "fuzz/fuzz.h"
#include "appliances/package.h"
#include "avd.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define READ_BUDGET (4u << 20)

static const char fixed_key[] =
	"untrusted comment: minisign public key 9044771B9CB29870\n"
	"RWRwmLKcG3dEkMpEabFkJrQ36B0KPa78vgWSApOYOzst3Mw06Qt6jtw4\n";

/* FUZZ_VERBOSE=1: say where an input stopped (for triage). */
static void note(const char *step)
{
	if (getenv("FUZZ_VERBOSE"))
		fprintf(stderr, "%s: %s\n", step, package__error());
}

/* 0 if the whole disk (up to the budget) read, -1 if anything failed;
 * *sum: a digest of what was read until then (FNV-1a over the bytes and
 * where the reading stopped). */
static int read_disk(struct package *p, uint64_t *sum)
{
	static uint8_t buf[128 * 1024];
	imgfmt_image *disk;
	uint64_t h = 0xcbf29ce484222325ull, off = 0;
	int r = -1;
	if (package__open_disk(p, &disk) < 0) {
		note("disk");
		*sum = 0;
		return -1;
	}
	struct imgfmt_info info;
	if (imgfmt__info(disk, &info) == 0) {
		uint64_t left = READ_BUDGET;
		while (off < info.virtual_size && left) {
			uint64_t n = info.virtual_size - off;
			if (n > sizeof buf)
				n = sizeof buf;
			if (imgfmt__pread(disk, buf, (size_t)n, off) < 0) {
				if (getenv("FUZZ_VERBOSE"))
					fprintf(stderr, "read: %s\n",
						imgfmt__error());
				break;
			}
			for (size_t i = 0; i < n; i++)
				h = (h ^ buf[i]) * 0x100000001b3ull;
			off += n;
			left -= n < left ? n : left;
			if (off == info.virtual_size || !left)
				r = 0;
		}
	}
	imgfmt__close(disk);
	*sum = h ^ off;
	return r;
}

/* Tar members start on 512-byte boundaries. */
static void fix_avd_header(uint8_t *f, size_t len)
{
	for (size_t off = 512; off + AVD_HEADER_SIZE <= len; off += 512) {
		if (memcmp(f + off, AVD_MAGIC, AVD_MAGIC_LEN) == 0) {
			fuzz__fix_avd_header(f + off);
			return;
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct minisign_pubkey pk;
	static int have_pk;
	if (!have_pk) {
		if (minisign__pubkey_parse(fixed_key, strlen(fixed_key),
					   "fixed key", &pk) < 0)
			abort();
		have_pk = 1;
	}
	char path[64];
	uint8_t *copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	fix_avd_header(copy, size);
	int wfd = fuzz__file(copy, size, path);
	free(copy);
	if (wfd < 0)
		return 0;
	/* Only a read-only descriptor left, as for a downloaded package:
	 * then the package can be leased. */
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	close(wfd);
	if (fd < 0)
		return 0;
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	/* verify --full first: a package it passes must also pass the lazy
	 * path, member check and every read, or the two disagree about
	 * what a good package is. */
	struct package *p;
	int full_ok = 0;
	if (package__open(path, &p) == 0) {
		full_ok = package__verify_members(p, true) == 0;
		package__close(p);
	}
	if (package__open(path, &p) == 0) {
		char keyid[MINISIGN_KEYID_HEX];
		const char *comment;
		if (package__verify_signature(p, &pk, keyid, &comment) < 0)
			note("signature");
		if (package__verify_members(p, false) == 0) {
			uint64_t first, again;
			int r = read_disk(p, &first);
			if (r < 0 && full_ok)
				abort(); /* full passed, a lazy read failed */
			if (read_disk(p, &again) != r || again != first)
				abort(); /* checked once, read otherwise */
		} else {
			note("members");
			if (full_ok)
				abort(); /* full passed, the lazy check not */
		}
		package__close(p);
	} else {
		note("open");
		if (full_ok)
			abort(); /* opened once, not twice */
	}
	close(fd);
	return 0;
}
