/* fuzz/fuzz-image.c - hostile disk images through imgfmt.
 *
 * Input: one mode byte, then the image file.  Mode bits 0-2 pick the
 * format the caller names (0, 5-7: detect by magic as `appliance img`
 * does; 1 avd, 2 qcow2, 3 vmdk, 4 vhd); bit 3 opens it read-write, as
 * `img write`, `img resize` and a running appliance's overlay do; bit 4
 * first recomputes the checksums that guard AVD's header and VHD's
 * footer and dynamic header, so that mutations of the fields behind them
 * reach the code that interprets those fields (a mutation almost never
 * keeps a checksum right by chance); bit 5 also converts the image
 * (when its virtual size is at most 4 MiB) to the format bits 6-7 pick
 * (avd compressed, qcow2, vmdk, vhd), as `img convert` of a download
 * does, and checks that the copy reads as the original wherever the
 * original reads at all.
 *
 * Everything a user's command does to a downloaded image: info, check,
 * walk the allocation map, read where the map points, and (read-write)
 * write, zero, discard and flush.  The oracles beyond "no crash, no
 * sanitizer report, no leak, no hang": map extents are non-empty and
 * inside the range asked for, a read past the end fails, data written
 * and flushed reads back as written whatever the image said before, a
 * detected raw image is still detected as raw after any write it took
 * (its first bytes are the guest's: imgfmt.c's guard_raw_head), and a
 * converted copy reads as its source. */
#include "fuzz/fuzz.h"
#include "imgfmt.h"
#include "avd.h"
#include "convert.h"
#include "vhd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define READ_BUDGET (2u << 20)  /* bytes read per input, to keep runs fast */
#define MAX_EXTENTS 256

static uint8_t buf[256 * 1024];

static void read_some(imgfmt_image *img, uint64_t off, uint64_t len,
		      uint64_t *budget)
{
	if (len > sizeof buf)
		len = sizeof buf;
	if (len > *budget)
		len = *budget;
	if (len == 0)
		return;
	*budget -= len;
	imgfmt__pread(img, buf, (size_t)len, off);
}

static void walk_and_read(imgfmt_image *img, uint64_t size)
{
	uint64_t budget = READ_BUDGET, off = 0;
	for (int i = 0; i < MAX_EXTENTS && off < size; i++) {
		struct imgfmt_extent ext;
		if (imgfmt__map(img, off, size - off, &ext) < 0)
			break;
		if (ext.length == 0 || ext.length > size - off)
			abort(); /* the contract map's callers loop on */
		if (ext.kind == IMGFMT_EXTENT_DATA)
			read_some(img, off, ext.length, &budget);
		off += ext.length;
	}
	read_some(img, 0, 64 * 1024, &budget);
	if (size >= 4096)
		read_some(img, size - 4096, 4096, &budget);
	/* Reads that straddle the end must fail, not read past it. */
	if (imgfmt__pread(img, buf, 2, size - 1) == 0)
		abort();
}

/* Writes through a hostile image: whatever the image claimed, what was
 * written reads back, or the write or the read fails. */
static void write_and_check(imgfmt_image *img, uint64_t size,
			    const uint8_t *data, size_t len)
{
	static uint8_t pattern[8192], back[8192];
	for (size_t i = 0; i < sizeof pattern; i++)
		pattern[i] = (uint8_t)(i * 7 + 1);
	uint64_t where[3] = { 0, size / 2, size > 8192 ? size - 8192 : 0 };
	if (len >= 8)
		memcpy(&where[1], data, 8);
	for (int i = 0; i < 3; i++) {
		uint64_t off = where[i] % (size > 8192 ? size - 8192 : 1);
		size_t n = size < sizeof pattern ? (size_t)size : sizeof pattern;
		if (imgfmt__pwrite(img, pattern, n, off) < 0)
			continue;
		if (imgfmt__flush(img) < 0)
			continue;
		if (imgfmt__pread(img, back, n, off) == 0 &&
		    memcmp(back, pattern, n) != 0)
			abort();
	}
	imgfmt__write_zeroes(img, size / 4, size / 8, 0);
	imgfmt__discard(img, size / 3, size / 16);
	imgfmt__flush(img);
}

/* A guest's writes into the first bytes of a detected raw image: the
 * input's own bytes, at an offset it picks; whatever is taken, the file
 * must still be detected as raw. */
static void write_head_and_reprobe(imgfmt_image *img, const char *path,
				   uint64_t size, const uint8_t *data,
				   size_t len)
{
	char name[16];

	if (len < 2)
		return;
	uint64_t off = data[0] % 64;
	size_t n = len - 1 < 4096 ? len - 1 : 4096;
	if (off >= size)
		return;
	if (n > size - off)
		n = (size_t)(size - off);
	imgfmt__pwrite(img, data + 1, n, off);
	imgfmt__write_zeroes(img, data[1] % 16, data[0] % 8 + 1, 0);
	if (imgfmt__probe(path, name, sizeof(name)) == 0 &&
	    strcmp(name, "raw") != 0)
		abort(); /* a guest turned its raw disk into another format */
}

/* Convert into a tmpfs (fsync is free there) and compare. */
static void convert_and_compare(imgfmt_image *img, uint64_t size,
				unsigned mode)
{
	static const char *const formats[4] = { "avd", "qcow2", "vmdk",
						"vhd" };
	static uint8_t a[65536], b[65536];
	char dir[] = "/dev/shm/fuzz-image.XXXXXX", dst[64];
	if (size > (4u << 20) || !mkdtemp(dir))
		return;
	snprintf(dst, sizeof dst, "%s/copy", dir);
	struct imgfmt_writer_opts wo = {
		.format = formats[(mode >> 6) & 3],
		.compress = ((mode >> 6) & 3) == 0,
	};
	struct imgfmt_convert_opts co = { .threads = 1 };
	imgfmt_image *copy;
	struct imgfmt_open_opts o = { .format = wo.format };
	if (imgfmt__convert(img, dst, &wo, &co, NULL) == 0 &&
	    imgfmt__open(dst, &o, &copy) == 0) {
		for (uint64_t off = 0; off < size; off += sizeof a) {
			size_t n = size - off < sizeof a ? (size_t)(size - off)
							 : sizeof a;
			if (imgfmt__pread(img, a, n, off) < 0)
				continue;
			if (imgfmt__pread(copy, b, n, off) < 0 ||
			    memcmp(a, b, n) != 0)
				abort(); /* the copy differs from its source */
		}
		imgfmt__close(copy);
	} else if (getenv("FUZZ_VERBOSE")) {
		fprintf(stderr, "convert to %s: %s\n", wo.format,
			imgfmt__error());
	}
	unlink(dst);
	rmdir(dir);
}

/* Put right the byte-sum checksum of a VHD structure (imgfmt/vhd.md). */
static void vhd_fix(uint8_t *p, size_t len, size_t at)
{
	uint32_t sum = vhd__checksum(p, len, at);

	for (int i = 0; i < 4; i++)
		p[at + i] = (uint8_t)(sum >> (24 - 8 * i));
}

static void fix_checksums(uint8_t *f, size_t len)
{
	if (len >= AVD_HEADER_SIZE && memcmp(f, AVD_MAGIC, AVD_MAGIC_LEN) == 0)
		fuzz__fix_avd_header(f);
	if (len < 512 || memcmp(f + len - 512, "conectix", 8) != 0)
		return;
	uint8_t *footer = f + len - 512;
	vhd_fix(footer, 512, 64);
	if (len >= 1024 && memcmp(f, "conectix", 8) == 0)
		memcpy(f, footer, 512); /* a dynamic disk's copy */
	uint64_t dyn = 0;
	for (int i = 0; i < 8; i++)
		dyn = dyn << 8 | footer[16 + i];
	if (dyn <= len && len - dyn >= 1024 &&
	    memcmp(f + dyn, "cxsparse", 8) == 0)
		vhd_fix(f + dyn, 1024, 36);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const formats[8] = {
		NULL, "avd", "qcow2", "vmdk", "vhd", NULL, NULL, NULL
	};
	if (size < 1)
		return 0;
	unsigned mode = data[0];
	char path[64];
	int fd;
	if (mode & 16) {
		uint8_t *copy = malloc(size);
		if (!copy)
			return 0;
		memcpy(copy, data + 1, size - 1);
		fix_checksums(copy, size - 1);
		fd = fuzz__file(copy, size - 1, path);
		free(copy);
	} else {
		fd = fuzz__file(data + 1, size - 1, path);
	}
	if (fd < 0)
		return 0;
	struct imgfmt_open_opts o = {
		.flags = IMGFMT_OPEN_NO_BACKING |
			 ((mode & 8) ? IMGFMT_OPEN_RDWR : 0),
		.format = formats[mode & 7],
	};
	imgfmt_image *img;
	if (imgfmt__open(path, &o, &img) == 0) {
		struct imgfmt_info info;
		if (imgfmt__info(img, &info) == 0 && info.virtual_size > 0) {
			struct imgfmt_check_result res;
			imgfmt__check(img, 0, &res);
			walk_and_read(img, info.virtual_size);
			if (mode & 32)
				convert_and_compare(img, info.virtual_size,
						    mode);
			if (mode & 8)
				write_and_check(img, info.virtual_size,
						data + 1, size - 1);
			if ((mode & 8) && !formats[mode & 7] &&
			    strcmp(info.format, "raw") == 0)
				write_head_and_reprobe(img, path,
						       info.virtual_size,
						       data + 1, size - 1);
		}
		imgfmt__close(img);
	} else if (getenv("FUZZ_VERBOSE")) {
		fprintf(stderr, "open: %s\n", imgfmt__error());
	}
	close(fd);
	return 0;
}
