/*
 * vhd.c - Microsoft VHD ("Virtual Hard Disk", qemu's "vpc"): fixed and
 * dynamic disks, read and streaming write.  Layout notes: imgfmt/vhd.md.
 *
 * A VHD is described by a 512-byte big-endian footer at the end of the
 * file.  A fixed disk is the raw data followed by that footer.  A dynamic
 * disk keeps a copy of the footer at byte 0, a dynamic-disk header (pointed
 * to by the footer's data_offset), a Block Allocation Table of 32-bit
 * sector numbers, and blocks, each a sector bitmap followed by block_size
 * bytes of data.  Differencing disks (type 4) are refused: nothing in the
 * project makes them and their parent locators are platform paths.
 *
 * Size: the footer holds current_size, but Virtual PC (and qemu without
 * force_size) define the disk by its CHS geometry instead.  We read the
 * size the way qemu does, so that both tools see the same disk, and we
 * write current_size exactly with creator "win " (the Hyper-V convention,
 * which qemu and VirtualBox take as "current_size is authoritative").
 *
 * Reads ignore the per-block sector bitmaps, as qemu does for dynamic
 * disks: a sector of an allocated block that was never written holds
 * zeros anyway, and the bitmap only matters for differencing disks.
 *
 * Read-write (pwrite): a fixed disk is written in place.  A dynamic disk
 * writes allocated blocks in place and allocates a new block where the
 * footer is: block (bitmap all ones, data), then the footer after it,
 * then the BAT entry.  A crash before the BAT entry leaks the block but
 * the disk reads as before; a crash before the new footer is complete
 * leaves no footer at the end, and open falls back to the copy at byte 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "driver.h"
#include "vhd.h"

#define VHD_FOOTER_SIZE 512
#define VHD_DYNHDR_SIZE 1024
#define VHD_TYPE_FIXED 2
#define VHD_TYPE_DYNAMIC 3
#define VHD_TYPE_DIFF 4
#define VHD_BAT_UNUSED 0xffffffffu
/* qemu's limit (VHD_MAX_SECTORS): the largest disk a 32-bit BAT of 2 MiB
 * blocks with sector offsets can hold, a little under 2 TiB. */
#define VHD_MAX_SECTORS 0xff000000ull
#define VHD_MAX_GEOMETRY (65535ull * 16 * 255)
#define VHD_MIN_BLOCK 512u
#define VHD_MAX_BLOCK (256u << 20)
#define VHD_DEFAULT_BLOCK (2u << 20)
/* Seconds from the Unix epoch to the VHD epoch, 2000-01-01 00:00 UTC. */
#define VHD_EPOCH 946684800

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64(const uint8_t *p)
{
	return (uint64_t)be32(p) << 32 | be32(p + 4);
}

static void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
	put_be32(p, (uint32_t)(v >> 32));
	put_be32(p + 4, (uint32_t)v);
}

uint32_t vhd__checksum(const uint8_t *p, size_t len, size_t csum_off)
{
	uint32_t sum = 0;

	for (size_t i = 0; i < len; i++)
		if (i < csum_off || i >= csum_off + 4)
			sum += p[i];
	return ~sum;
}

/* CHS geometry for a sector count, the algorithm of the VHD specification
 * (appendix "CHS calculation"); counts past the largest geometry are
 * clamped to it. */
static void vhd__geometry(uint64_t total, uint16_t *cyls, uint8_t *heads,
		   uint8_t *spt)
{
	uint64_t cth, h, s;

	if (total > VHD_MAX_GEOMETRY)
		total = VHD_MAX_GEOMETRY;
	if (total >= 65535ull * 16 * 63) {
		s = 255;
		h = 16;
		cth = total / s;
	} else {
		s = 17;
		cth = total / s;
		h = (cth + 1023) / 1024;
		if (h < 4)
			h = 4;
		if (cth >= h * 1024 || h > 16) {
			s = 31;
			h = 16;
			cth = total / s;
		}
		if (cth >= h * 1024) {
			s = 63;
			h = 16;
			cth = total / s;
		}
	}
	*cyls = (uint16_t)(cth / h);
	*heads = (uint8_t)h;
	*spt = (uint8_t)s;
}

/* ---- reader ---------------------------------------------------------- */

struct vhd {
	int type;
	uint8_t footer[VHD_FOOTER_SIZE];
	uint32_t block_size;   /* dynamic only */
	uint32_t bitmap_size;  /* bytes of sector bitmap before each block */
	uint32_t max_entries;
	uint64_t bat_offset;
	uint32_t *bat;         /* host order; entries read and set with
	                          __atomic (pwrite allocates concurrently) */
	/* Read-write dynamic disks: where the footer is now (the next block
	 * goes there), updated under alloc_lock and read atomically. */
	uint64_t end;
	pthread_mutex_t alloc_lock;
	int have_lock;
};

static int vhd__probe(const uint8_t *head, size_t len, uint64_t file_size)
{
	(void)file_size;
	/* Only dynamic disks start with the footer copy; a fixed disk starts
	 * with guest data and is found only when named (-f vhd), as in qemu. */
	if (len >= 8 && memcmp(head, "conectix", 8) == 0)
		return 100;
	return 0;
}

/* Read and validate a footer at image offset `off`. */
static int vhd__read_footer(imgfmt_image *img, uint64_t off, uint8_t *f)
{
	int r = imgfmt_file_read(img, f, VHD_FOOTER_SIZE, off, "VHD footer");

	if (r < 0)
		return r;
	if (memcmp(f, "conectix", 8) != 0)
		return imgfmt_err(EINVAL, "%s: no VHD footer cookie "
				  "\"conectix\" at offset %llu", img->path,
				  (unsigned long long)off);
	uint32_t want = vhd__checksum(f, VHD_FOOTER_SIZE, 64);
	if (be32(f + 64) != want)
		return imgfmt_err(EINVAL, "%s: VHD footer checksum is 0x%08x, "
				  "computed 0x%08x (corrupt footer)", img->path,
				  be32(f + 64), want);
	return 0;
}

/* The virtual size, by qemu's rule (block/vpc.c): CHS geometry for images
 * from Virtual PC, qemu and unknown creators, current_size for Hyper-V,
 * disk2vhd, XenServer, XenConverter and qemu force_size ("qem2"), and
 * current_size whenever the geometry is the maximum (it cannot express the
 * size then). */
static uint64_t vhd__virtual_size(const uint8_t *f)
{
	static const char *const by_size[] = { "win ", "qem2", "d2v ",
					       "CTXS" };
	uint64_t chs = (uint64_t)((f[56] << 8) | f[57]) * f[58] * f[59];
	int use_chs = memcmp(f + 28, "tap\0", 4) != 0;

	for (size_t i = 0; i < sizeof(by_size) / sizeof(by_size[0]); i++)
		if (memcmp(f + 28, by_size[i], 4) == 0)
			use_chs = 0;
	if (!use_chs || chs == VHD_MAX_GEOMETRY)
		return be64(f + 48);
	return chs * 512;
}

static int vhd__open_dynamic(imgfmt_image *img, struct vhd *v)
{
	uint8_t h[VHD_DYNHDR_SIZE];
	uint64_t hdr_off = be64(v->footer + 16);
	int r;

	if (hdr_off > img->file_length ||
	    img->file_length - hdr_off < VHD_DYNHDR_SIZE)
		return imgfmt_err(EINVAL, "%s: VHD data_offset %llu (dynamic "
				  "disk header) is past the end of the file",
				  img->path, (unsigned long long)hdr_off);
	r = imgfmt_file_read(img, h, sizeof(h), hdr_off, "VHD dynamic header");
	if (r < 0)
		return r;
	if (memcmp(h, "cxsparse", 8) != 0)
		return imgfmt_err(EINVAL, "%s: no dynamic disk header cookie "
				  "\"cxsparse\" at offset %llu", img->path,
				  (unsigned long long)hdr_off);
	uint32_t want = vhd__checksum(h, sizeof(h), 36);
	if (be32(h + 36) != want)
		return imgfmt_err(EINVAL, "%s: VHD dynamic header checksum is "
				  "0x%08x, computed 0x%08x", img->path,
				  be32(h + 36), want);
	v->bat_offset = be64(h + 16);
	v->max_entries = be32(h + 28);
	v->block_size = be32(h + 32);
	if (v->block_size < VHD_MIN_BLOCK || v->block_size > VHD_MAX_BLOCK ||
	    (v->block_size & (v->block_size - 1)))
		return imgfmt_err(EINVAL, "%s: VHD block_size %u is not a power "
				  "of two between %u and %u", img->path,
				  v->block_size, VHD_MIN_BLOCK, VHD_MAX_BLOCK);
	v->bitmap_size = ((v->block_size / 512 / 8) + 511) & ~511u;
	if ((uint64_t)v->max_entries * v->block_size < img->virtual_size)
		return imgfmt_err(EINVAL, "%s: VHD max_table_entries %u of %u "
				  "bytes cannot hold the %llu-byte disk",
				  img->path, v->max_entries, v->block_size,
				  (unsigned long long)img->virtual_size);
	/* The BAT must lie inside the file: that also caps the allocation. */
	uint64_t bat_bytes = (uint64_t)v->max_entries * 4;
	if (v->bat_offset > img->file_length ||
	    bat_bytes > img->file_length - v->bat_offset)
		return imgfmt_err(EINVAL, "%s: VHD BAT (table_offset %llu, %u "
				  "entries) is past the end of the file",
				  img->path,
				  (unsigned long long)v->bat_offset,
				  v->max_entries);
	v->bat = malloc(bat_bytes ? bat_bytes : 1);
	if (!v->bat)
		return imgfmt_err(ENOMEM, "%s: out of memory for the BAT",
				  img->path);
	r = imgfmt_file_read(img, v->bat, bat_bytes, v->bat_offset, "VHD BAT");
	if (r < 0)
		return r;
	for (uint32_t i = 0; i < v->max_entries; i++)
		v->bat[i] = be32((uint8_t *)&v->bat[i]);
	return 0;
}

static void vhd__close(imgfmt_image *img)
{
	struct vhd *v = img->priv;

	if (v) {
		if (v->have_lock)
			pthread_mutex_destroy(&v->alloc_lock);
		free(v->bat);
		free(v);
		img->priv = NULL;
	}
}

static int vhd__open(imgfmt_image *img)
{
	struct vhd *v = calloc(1, sizeof(*v));
	int r;

	if (!v)
		return imgfmt_err(ENOMEM, "out of memory");
	img->priv = v;
	if (img->file_length < VHD_FOOTER_SIZE) {
		r = imgfmt_err(EINVAL, "%s: too short for a VHD (%llu bytes)",
			       img->path,
			       (unsigned long long)img->file_length);
		goto fail;
	}
	r = vhd__read_footer(img, img->file_length - VHD_FOOTER_SIZE,
			     v->footer);
	if (r < 0 && !img->read_only)
		goto fail; /* never extend a file whose end we cannot trust */
	if (r < 0) {
		/* A dynamic disk whose trailing footer is damaged still has
		 * the copy at byte 0. */
		uint8_t head[8];
		if (imgfmt_file_read(img, head, 8, 0, "VHD header") == 0 &&
		    memcmp(head, "conectix", 8) == 0) {
			char first[1024];
			snprintf(first, sizeof(first), "%s", imgfmt__error());
			r = vhd__read_footer(img, 0, v->footer);
			if (r < 0) {
				imgfmt_err(EINVAL, "%s", first);
				goto fail;
			}
		} else {
			goto fail;
		}
	}
	v->type = (int)be32(v->footer + 60);
	img->virtual_size = vhd__virtual_size(v->footer);
	if (img->virtual_size % 512 ||
	    img->virtual_size > VHD_MAX_SECTORS * 512) {
		r = imgfmt_err(EFBIG, "%s: VHD current_size %llu is not a "
			       "sector multiple or exceeds the VHD maximum",
			       img->path,
			       (unsigned long long)img->virtual_size);
		goto fail;
	}
	switch (v->type) {
	case VHD_TYPE_FIXED:
		if (img->virtual_size > img->file_length - VHD_FOOTER_SIZE) {
			r = imgfmt_err(EINVAL, "%s: fixed VHD current_size %llu "
				       "is larger than the file's data area "
				       "(%llu bytes)", img->path,
				       (unsigned long long)img->virtual_size,
				       (unsigned long long)(img->file_length -
							   VHD_FOOTER_SIZE));
			goto fail;
		}
		break;
	case VHD_TYPE_DYNAMIC:
		r = vhd__open_dynamic(img, v);
		if (r < 0)
			goto fail;
		if (!img->read_only && img->base != 0) {
			r = imgfmt_err(EROFS, "%s: a dynamic VHD embedded in a "
				       "larger file cannot grow; open it "
				       "read-only", img->path);
			goto fail;
		}
		break;
	case VHD_TYPE_DIFF:
		r = imgfmt_err(ENOTSUP, "%s: differencing VHDs are not "
			       "supported", img->path);
		goto fail;
	default:
		r = imgfmt_err(EINVAL, "%s: unknown VHD disk type %d",
			       img->path, v->type);
		goto fail;
	}
	v->end = img->file_length - VHD_FOOTER_SIZE;
	pthread_mutex_init(&v->alloc_lock, NULL);
	v->have_lock = 1;
	return 0;
fail:
	vhd__close(img);
	return r;
}

/* Read file bytes of a dynamic disk, bounded by where the footer is now
 * (the file grows under read-write use). */
static int vhd__read_at(imgfmt_image *img, struct vhd *v, void *buf,
			size_t len, uint64_t at, uint64_t blk)
{
	uint64_t limit = __atomic_load_n(&v->end, __ATOMIC_ACQUIRE);
	uint8_t *p = buf;

	if (at > limit || len > limit - at)
		return imgfmt_err(EIO, "%s: VHD BAT entry %llu points past the "
				  "end of the file", img->path,
				  (unsigned long long)blk);
	while (len > 0) {
		ssize_t n = pread(img->fd, p, len, (off_t)(img->base + at));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return imgfmt_err(n < 0 ? errno : EIO, "%s: reading VHD "
					  "block %llu failed", img->path,
					  (unsigned long long)blk);
		p += n;
		at += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

static int vhd__pread(imgfmt_image *img, void *buf, size_t len, uint64_t off)
{
	struct vhd *v = img->priv;
	uint8_t *p = buf;

	if (v->type == VHD_TYPE_FIXED)
		return imgfmt_file_read(img, buf, len, off, "VHD data");
	while (len > 0) {
		uint64_t blk = off / v->block_size;
		uint32_t in = (uint32_t)(off % v->block_size);
		size_t n = v->block_size - in;
		int r;

		if (n > len)
			n = len;
		uint32_t e = __atomic_load_n(&v->bat[blk], __ATOMIC_ACQUIRE);
		if (e == VHD_BAT_UNUSED)
			r = imgfmt_backing_read(img, p, n, off);
		else
			r = vhd__read_at(img, v, p, n,
					 (uint64_t)e * 512 + v->bitmap_size + in,
					 blk);
		if (r < 0)
			return r;
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

static int vhd__map(imgfmt_image *img, uint64_t off, uint64_t len,
		    struct imgfmt_extent *ext)
{
	struct vhd *v = img->priv;

	if (v->type == VHD_TYPE_FIXED) {
		ext->kind = IMGFMT_EXTENT_DATA;
		ext->length = len;
		ext->file_offset = (int64_t)off;
		return 0;
	}
	/* Walk blocks of the same kind (and, for data, contiguous in the
	 * file) so a large empty disk maps in one call. */
	uint64_t done = 0;
	int64_t file0 = -1;
	int first_kind = -1;
	while (done < len) {
		uint64_t o = off + done;
		uint64_t blk = o / v->block_size;
		uint64_t in = o % v->block_size;
		uint64_t n = v->block_size - in;
		uint32_t e = __atomic_load_n(&v->bat[blk], __ATOMIC_ACQUIRE);
		int kind = e == VHD_BAT_UNUSED ? IMGFMT_EXTENT_BACKING
					       : IMGFMT_EXTENT_DATA;
		int64_t fo = kind == IMGFMT_EXTENT_DATA
			? (int64_t)((uint64_t)e * 512 + v->bitmap_size + in)
			: -1;

		if (n > len - done)
			n = len - done;
		if (first_kind < 0) {
			first_kind = kind;
			file0 = fo;
		} else if (kind != first_kind ||
			   (kind == IMGFMT_EXTENT_DATA &&
			    fo != file0 + (int64_t)done)) {
			break;
		}
		done += n;
	}
	ext->kind = (enum imgfmt_extent_kind)first_kind;
	ext->length = done;
	ext->file_offset = file0;
	return 0;
}

static int vhd__pwrite_file(imgfmt_image *img, const void *buf, size_t len,
			    uint64_t at)
{
	return imgfmt_file_write(img, buf, len, at);
}

static int vhd__flush(imgfmt_image *img)
{
	if (fdatasync(img->fd) < 0 && errno != EINVAL)
		return imgfmt_err(errno, "%s: fdatasync: %s", img->path,
				  strerror(errno));
	return 0;
}

/* Allocate block `blk` at the footer's place and fill it with `data`
 * (`n` bytes at `in`); the rest of the block is zeros. */
static int vhd__allocate(imgfmt_image *img, struct vhd *v, uint64_t blk,
			 const uint8_t *data, size_t n, uint32_t in)
{
	size_t span = (size_t)v->bitmap_size + v->block_size;
	uint64_t at = v->end;
	uint8_t be[4];
	int r;

	if (at % 512 || at / 512 >= VHD_BAT_UNUSED)
		return imgfmt_err(EFBIG, "%s: VHD file cannot grow past the "
				  "2 TiB that 32-bit BAT entries address",
				  img->path);
	uint8_t *b = calloc(1, span + VHD_FOOTER_SIZE);
	if (!b)
		return imgfmt_err(ENOMEM, "out of memory");
	memset(b, 0xff, v->bitmap_size);
	memcpy(b + v->bitmap_size + in, data, n);
	memcpy(b + span, v->footer, VHD_FOOTER_SIZE);
	/* Block and the moved footer in one write, then the BAT entry. */
	r = vhd__pwrite_file(img, b, span + VHD_FOOTER_SIZE, at);
	free(b);
	if (r < 0)
		return r;
	/* The block must be on disk before the BAT points at it, or a power
	 * loss could leave the entry pointing at garbage. */
	r = vhd__flush(img);
	if (r < 0)
		return r;
	be[0] = (uint8_t)((at / 512) >> 24);
	be[1] = (uint8_t)((at / 512) >> 16);
	be[2] = (uint8_t)((at / 512) >> 8);
	be[3] = (uint8_t)(at / 512);
	r = vhd__pwrite_file(img, be, 4, v->bat_offset + blk * 4);
	if (r < 0)
		return r;
	__atomic_store_n(&v->end, at + span, __ATOMIC_RELEASE);
	__atomic_store_n(&img->file_length, at + span + VHD_FOOTER_SIZE,
			 __ATOMIC_RELEASE);
	__atomic_store_n(&v->bat[blk], (uint32_t)(at / 512), __ATOMIC_RELEASE);
	return 0;
}

static int vhd__pwrite(imgfmt_image *img, const void *buf, size_t len,
		       uint64_t off)
{
	struct vhd *v = img->priv;
	const uint8_t *p = buf;

	if (v->type == VHD_TYPE_FIXED)
		return vhd__pwrite_file(img, buf, len, off);
	while (len > 0) {
		uint64_t blk = off / v->block_size;
		uint32_t in = (uint32_t)(off % v->block_size);
		size_t n = v->block_size - in;
		int r = 0;

		if (n > len)
			n = len;
		uint32_t e = __atomic_load_n(&v->bat[blk], __ATOMIC_ACQUIRE);
		if (e == VHD_BAT_UNUSED && !imgfmt_is_zero(p, n)) {
			pthread_mutex_lock(&v->alloc_lock);
			e = __atomic_load_n(&v->bat[blk], __ATOMIC_ACQUIRE);
			if (e == VHD_BAT_UNUSED)
				r = vhd__allocate(img, v, blk, p, n, in);
			pthread_mutex_unlock(&v->alloc_lock);
		}
		/* Zeros into an unallocated block need nothing: it reads as
		 * zeros (a VHD here has no parent). */
		if (r == 0 && e != VHD_BAT_UNUSED)
			r = vhd__pwrite_file(img, p, n, (uint64_t)e * 512 +
					     v->bitmap_size + in);
		if (r < 0)
			return r;
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

static int vhd__info(imgfmt_image *img, struct imgfmt_info *info)
{
	struct vhd *v = img->priv;

	snprintf(info->subformat, sizeof(info->subformat), "%s",
		 v->type == VHD_TYPE_FIXED ? "fixed" : "dynamic");
	info->cluster_size = v->type == VHD_TYPE_FIXED ? 0 : v->block_size;
	memcpy(info->uuid, v->footer + 68, 16);
	info->has_uuid = 1;
	info->dirty = 0;
	return 0;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static void vhd__problem(struct imgfmt_check_result *res, const char *msg)
{
	if (!res->first_problem[0])
		snprintf(res->first_problem, sizeof(res->first_problem), "%s",
			 msg);
	res->corruptions++;
}

/* Dynamic disks: every BAT entry must point at a whole block inside the
 * file, after the BAT, and no two blocks may overlap. */
static int vhd__check(imgfmt_image *img, int repair,
		      struct imgfmt_check_result *res)
{
	struct vhd *v = img->priv;
	char msg[256];
	uint32_t *s;
	size_t n = 0;

	if (repair)
		return imgfmt_err(ENOTSUP, "%s: VHD images cannot be repaired",
				  img->path);
	if (v->type != VHD_TYPE_DYNAMIC)
		return 0;
	s = malloc((size_t)v->max_entries * 4 + 4);
	if (!s)
		return imgfmt_err(ENOMEM, "out of memory");
	uint64_t meta_end = v->bat_offset + (uint64_t)v->max_entries * 4;
	uint64_t span = (uint64_t)v->bitmap_size + v->block_size;
	for (uint32_t i = 0; i < v->max_entries; i++) {
		uint32_t e = v->bat[i];
		if (e == VHD_BAT_UNUSED)
			continue;
		uint64_t at = (uint64_t)e * 512;
		if (at + span > img->file_length - VHD_FOOTER_SIZE) {
			snprintf(msg, sizeof(msg), "BAT entry %u (sector %u) "
				 "points past the end of the file", i, e);
			vhd__problem(res, msg);
		} else if (at < meta_end) {
			snprintf(msg, sizeof(msg), "BAT entry %u (sector %u) "
				 "points into the metadata", i, e);
			vhd__problem(res, msg);
		} else {
			s[n++] = e;
		}
	}
	qsort(s, n, sizeof(*s), cmp_u32);
	for (size_t i = 1; i < n; i++) {
		if ((uint64_t)(s[i] - s[i - 1]) * 512 < span) {
			snprintf(msg, sizeof(msg), "blocks at sectors %u and "
				 "%u overlap", s[i - 1], s[i]);
			vhd__problem(res, msg);
		}
	}
	free(s);
	return 0;
}

/* ---- writer ---------------------------------------------------------- */

struct vhd_writer {
	int type;
	uint32_t block_size, bitmap_size, entries;
	uint64_t next;        /* file offset where the next block goes */
	uint32_t *bat;        /* host order */
	uint8_t uuid[16];
};

static void vhd__make_footer(const struct vhd_writer *vw, uint64_t size,
			     uint8_t *f)
{
	uint16_t c;
	uint8_t h, s;
	time_t now = time(NULL);

	memset(f, 0, VHD_FOOTER_SIZE);
	memcpy(f, "conectix", 8);
	put_be32(f + 8, 2);                  /* features: "reserved" bit */
	put_be32(f + 12, 0x00010000);        /* format version 1.0 */
	put_be64(f + 16, vw->type == VHD_TYPE_FIXED ? ~0ull : 512);
	put_be32(f + 24, now > VHD_EPOCH ? (uint32_t)(now - VHD_EPOCH) : 0);
	/* "win ": current_size is authoritative (see the top comment). */
	memcpy(f + 28, "win ", 4);
	put_be32(f + 32, 0x000a0000);
	memcpy(f + 36, "Wi2k", 4);
	put_be64(f + 40, size);
	put_be64(f + 48, size);
	vhd__geometry(size / 512, &c, &h, &s);
	put_be16(f + 56, c);
	f[58] = h;
	f[59] = s;
	put_be32(f + 60, (uint32_t)vw->type);
	memcpy(f + 68, vw->uuid, 16);
	put_be32(f + 64, vhd__checksum(f, VHD_FOOTER_SIZE, 64));
}

static int vhd__writer_open(imgfmt_writer *w)
{
	const char *sub = w->opts.subformat;
	struct vhd_writer *vw;

	if (w->opts.backing_file)
		return imgfmt_err(ENOTSUP, "%s: VHD images with a backing file "
				  "(differencing disks) are not supported",
				  w->path);
	if (w->opts.compress)
		return imgfmt_err(ENOTSUP, "%s: VHD images cannot be "
				  "compressed", w->path);
	if (w->opts.size % 512)
		return imgfmt_err(EINVAL, "%s: VHD size %llu is not a multiple "
				  "of 512", w->path,
				  (unsigned long long)w->opts.size);
	if (w->opts.size / 512 > VHD_MAX_SECTORS)
		return imgfmt_err(EFBIG, "%s: VHD size %llu exceeds the VHD "
				  "maximum of %llu bytes", w->path,
				  (unsigned long long)w->opts.size,
				  VHD_MAX_SECTORS * 512);
	vw = calloc(1, sizeof(*vw));
	if (!vw)
		return imgfmt_err(ENOMEM, "out of memory");
	if (!sub || strcmp(sub, "dynamic") == 0) {
		vw->type = VHD_TYPE_DYNAMIC;
	} else if (strcmp(sub, "fixed") == 0) {
		vw->type = VHD_TYPE_FIXED;
	} else {
		free(vw);
		return imgfmt_err(EINVAL, "%s: unknown VHD subformat '%s' "
				  "(dynamic or fixed)", w->path, sub);
	}
	w->chunk_size = w->opts.cluster_size ? w->opts.cluster_size
					     : VHD_DEFAULT_BLOCK;
	if (w->chunk_size < VHD_MIN_BLOCK || w->chunk_size > VHD_MAX_BLOCK ||
	    (w->chunk_size & (w->chunk_size - 1))) {
		int r = imgfmt_err(EINVAL, "%s: VHD block size %u is not a "
				   "power of two between %u and %u", w->path,
				   w->chunk_size, VHD_MIN_BLOCK,
				   VHD_MAX_BLOCK);
		free(vw);
		return r;
	}
	vw->block_size = w->chunk_size;
	vw->bitmap_size = ((vw->block_size / 512 / 8) + 511) & ~511u;
	if (w->opts.uuid)
		memcpy(vw->uuid, w->opts.uuid, 16);
	else if (getrandom(vw->uuid, 16, 0) != 16) {
		free(vw);
		return imgfmt_err(EIO, "%s: getrandom failed", w->path);
	}
	if (vw->type == VHD_TYPE_DYNAMIC) {
		uint64_t entries = (w->opts.size + vw->block_size - 1) /
				   vw->block_size;
		vw->entries = (uint32_t)entries;
		vw->bat = malloc(entries * 4 + 4);
		if (!vw->bat) {
			free(vw);
			return imgfmt_err(ENOMEM, "out of memory");
		}
		memset(vw->bat, 0xff, entries * 4);
		vw->next = 512 + VHD_DYNHDR_SIZE + ((entries * 4 + 511) & ~511ull);
	}
	w->priv = vw;
	return 0;
}

static int vhd__writer_encode(imgfmt_writer *w, const void *data,
			      uint64_t off, uint32_t len,
			      struct imgfmt_chunk *chunk)
{
	(void)w;
	(void)off;
	/* All-zero chunks stay holes: they read as zeros either way. */
	if (imgfmt_is_zero(data, len))
		return 0;
	chunk->data = malloc(len);
	if (!chunk->data)
		return imgfmt_err(ENOMEM, "out of memory");
	memcpy(chunk->data, data, len);
	chunk->data_len = len;
	return 0;
}

static int vhd__writer_put(imgfmt_writer *w, struct imgfmt_chunk *chunk)
{
	struct vhd_writer *vw = w->priv;
	int r;

	if (!chunk->data || chunk->data_len == 0)
		return 0;
	if (chunk->data_len != chunk->length)
		return imgfmt_err(EINVAL, "%s: chunk was not encoded by the "
				  "VHD writer", w->path);
	if (vw->type == VHD_TYPE_FIXED)
		return imgfmt_writer_write(w, chunk->data, chunk->data_len,
				       chunk->offset);
	if (vw->next / 512 >= VHD_BAT_UNUSED)
		return imgfmt_err(EFBIG, "%s: VHD file grew past the 2 TiB "
				  "that 32-bit BAT entries address", w->path);
	/* Every sector of the block is marked present, as qemu does. */
	uint8_t *bitmap = malloc(vw->bitmap_size);
	if (!bitmap)
		return imgfmt_err(ENOMEM, "out of memory");
	memset(bitmap, 0xff, vw->bitmap_size);
	r = imgfmt_writer_write(w, bitmap, vw->bitmap_size, vw->next);
	free(bitmap);
	if (r == 0)
		r = imgfmt_writer_write(w, chunk->data, chunk->data_len,
				    vw->next + vw->bitmap_size);
	if (r < 0)
		return r;
	vw->bat[chunk->offset / vw->block_size] = (uint32_t)(vw->next / 512);
	vw->next += (uint64_t)vw->bitmap_size + vw->block_size;
	return 0;
}

static int vhd__writer_finish(imgfmt_writer *w)
{
	struct vhd_writer *vw = w->priv;
	uint8_t f[VHD_FOOTER_SIZE];
	uint64_t end;
	int r;

	vhd__make_footer(vw, w->opts.size, f);
	if (vw->type == VHD_TYPE_FIXED) {
		end = w->opts.size;
	} else {
		uint8_t h[VHD_DYNHDR_SIZE] = { 0 };
		size_t bat_bytes = ((size_t)vw->entries * 4 + 511) & ~(size_t)511;
		uint8_t *bat = calloc(1, bat_bytes ? bat_bytes : 1);

		if (!bat) {
			r = imgfmt_err(ENOMEM, "out of memory");
			goto out;
		}
		memset(bat, 0xff, bat_bytes);
		for (uint32_t i = 0; i < vw->entries; i++)
			put_be32(bat + 4 * i, vw->bat[i]);
		memcpy(h, "cxsparse", 8);
		put_be64(h + 8, ~0ull);
		put_be64(h + 16, 512 + VHD_DYNHDR_SIZE);
		put_be32(h + 24, 0x00010000);
		put_be32(h + 28, vw->entries);
		put_be32(h + 32, vw->block_size);
		put_be32(h + 36, vhd__checksum(h, sizeof(h), 36));
		r = imgfmt_writer_write(w, f, sizeof(f), 0);
		if (r == 0)
			r = imgfmt_writer_write(w, h, sizeof(h), 512);
		if (r == 0)
			r = imgfmt_writer_write(w, bat, bat_bytes,
					    512 + VHD_DYNHDR_SIZE);
		free(bat);
		if (r < 0)
			goto out;
		end = vw->next;
	}
	if (ftruncate(w->fd, (off_t)end) < 0) {
		r = imgfmt_err(errno, "%s: truncate: %s", w->path,
			       strerror(errno));
		goto out;
	}
	r = imgfmt_writer_write(w, f, sizeof(f), end);
out:
	free(vw->bat);
	free(vw);
	w->priv = NULL;
	return r;
}

static void vhd__writer_abort(imgfmt_writer *w)
{
	struct vhd_writer *vw = w->priv;

	free(vw->bat);
	free(vw);
	w->priv = NULL;
}

static int vhd__create(const char *path, const struct imgfmt_create_opts *o)
{
	struct imgfmt_writer_opts wo = {
		.format = "vhd",
		.size = o->size,
		.backing_file = o->backing_file,
		.uuid = o->uuid,
		.cluster_size = VHD_DEFAULT_BLOCK,
	};

	return imgfmt_writer_create_empty(path, &wo);
}

const struct imgfmt_driver imgfmt_vhd_driver = {
	.name = "vhd",
	.probe = vhd__probe,
	.open = vhd__open,
	.close = vhd__close,
	.pread = vhd__pread,
	.pwrite = vhd__pwrite,
	.flush = vhd__flush,
	.map = vhd__map,
	.info = vhd__info,
	.check = vhd__check,
	.create = vhd__create,
	.writer_open = vhd__writer_open,
	.writer_encode = vhd__writer_encode,
	.writer_put = vhd__writer_put,
	.writer_finish = vhd__writer_finish,
	.writer_abort = vhd__writer_abort,
};
