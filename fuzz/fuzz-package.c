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

#define READ_CHUNK (128u * 1024)
_Static_assert(READ_BUDGET % READ_CHUNK == 0, "reads stop at the budget");

/* 0 if the whole disk (up to the budget) read, -1 if anything failed;
 * what was read until then is out[0, *got). */
static int read_disk(struct package *p, uint8_t *out, uint64_t *got)
{
	imgfmt_image *disk;
	uint64_t off = 0;
	int r = -1;
	*got = 0;
	if (package__open_disk(p, &disk) < 0) {
		note("disk");
		return -1;
	}
	struct imgfmt_info info;
	if (imgfmt__info(disk, &info) == 0) {
		while (off < info.virtual_size && off < READ_BUDGET) {
			uint64_t n = info.virtual_size - off;
			if (n > READ_CHUNK)
				n = READ_CHUNK;
			if (imgfmt__pread(disk, out + off, (size_t)n, off) < 0) {
				if (getenv("FUZZ_VERBOSE"))
					fprintf(stderr, "read: %s\n",
						imgfmt__error());
				break;
			}
			off += n;
			if (off == info.virtual_size || off == READ_BUDGET)
				r = 0;
		}
	}
	imgfmt__close(disk);
	*got = off;
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
			static uint8_t first[READ_BUDGET], again[READ_BUDGET];
			uint64_t n1, n2;
			int r = read_disk(p, first, &n1);
			if (r < 0 && full_ok)
				abort(); /* full passed, a lazy read failed */
			if (read_disk(p, again, &n2) != r || n2 != n1 ||
			    memcmp(first, again, n1) != 0)
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
