/*
 * gpt.c - a GUID partition table with one Linux partition, written by hand.
 *
 * Why not sfdisk/sgdisk: they pick random GUIDs and need a device or
 * loop-free tricks; writing the ~100 bytes of structure ourselves keeps the
 * disk reproducible (GUIDs derived from the recipe) and tool-free.
 * Layout (UEFI 2.x, chapter 5): LBA 0 protective MBR, LBA 1 header,
 * LBA 2..33 the 128 entries of 128 bytes; at the end of the disk the
 * entries again and the backup header in the last LBA.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "builder/steps.h"

#define SECTOR 512u
#define N_ENTRIES 128u
#define ENTRY_SIZE 128u
#define ENTRIES_SECTORS (N_ENTRIES * ENTRY_SIZE / SECTOR) /* 32 */

/* 0FC63DAF-8483-4772-8E79-3D69D8477DE4, "Linux filesystem data", in the
 * on-disk mixed-endian byte order. */
static const uint8_t linux_fs_type[16] = {
	0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47,
	0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47, 0x7d, 0xe4,
};

static void put16(uint8_t *p, uint16_t v) { p[0] = v; p[1] = v >> 8; }
static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

void gpt__default_span(uint64_t disk_size, uint64_t *first_lba,
		       uint64_t *last_lba)
{
	uint64_t total = disk_size / SECTOR;
	uint64_t last_usable = total - 2 - ENTRIES_SECTORS;

	*first_lba = 2048; /* 1 MiB: aligned for every storage stack */
	/* End on a 1 MiB boundary too, so the filesystem is a whole number
	 * of MiB (mke2fs block counts stay simple). */
	*last_lba = (last_usable + 1) / 2048 * 2048 - 1;
}

static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return build__err(errno, "writing the partition "
					  "table: %s", strerror(errno));
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static void make_header(uint8_t *h, uint64_t my_lba, uint64_t alt_lba,
			uint64_t entries_lba, uint64_t total,
			const uint8_t *disk_guid, uint32_t entries_crc)
{
	memset(h, 0, SECTOR);
	memcpy(h, "EFI PART", 8);
	put32(h + 8, 0x00010000);      /* revision 1.0 */
	put32(h + 12, 92);             /* header size */
	put64(h + 24, my_lba);
	put64(h + 32, alt_lba);
	put64(h + 40, 2 + ENTRIES_SECTORS);          /* first usable */
	put64(h + 48, total - 2 - ENTRIES_SECTORS);  /* last usable */
	memcpy(h + 56, disk_guid, 16);
	put64(h + 72, entries_lba);
	put32(h + 80, N_ENTRIES);
	put32(h + 84, ENTRY_SIZE);
	put32(h + 88, entries_crc);
	put32(h + 16, (uint32_t)crc32(0, h, 92));
}

int gpt__write(int fd, const struct gpt_layout *g)
{
	uint8_t mbr[SECTOR], hdr[SECTOR];
	static __thread uint8_t entries[N_ENTRIES * ENTRY_SIZE];
	uint64_t total = g->disk_size / SECTOR;
	int rc;

	if (g->disk_size % SECTOR || total < 2048 + 2 * (2 + ENTRIES_SECTORS))
		return build__err(EINVAL, "GPT: disk size %llu is not a "
				  "multiple of 512 or too small",
				  (unsigned long long)g->disk_size);
	if (g->first_lba < 2 + ENTRIES_SECTORS || g->last_lba < g->first_lba ||
	    g->last_lba > total - 2 - ENTRIES_SECTORS)
		return build__err(EINVAL, "GPT: partition [%llu, %llu] is "
				  "outside the usable sectors",
				  (unsigned long long)g->first_lba,
				  (unsigned long long)g->last_lba);

	/* Protective MBR: one partition of type 0xEE covering the disk, so
	 * MBR-only tools see the disk as in use. */
	memset(mbr, 0, sizeof(mbr));
	uint8_t *pe = mbr + 446;
	pe[1] = 0x00; pe[2] = 0x02; pe[3] = 0x00;   /* CHS 0/0/2 */
	pe[4] = 0xee;
	pe[5] = 0xff; pe[6] = 0xff; pe[7] = 0xff;   /* CHS "beyond" */
	put32(pe + 8, 1);
	put32(pe + 12, total - 1 > 0xffffffffu ? 0xffffffffu :
	      (uint32_t)(total - 1));
	mbr[510] = 0x55;
	mbr[511] = 0xaa;

	memset(entries, 0, sizeof(entries));
	memcpy(entries, linux_fs_type, 16);
	memcpy(entries + 16, g->part_guid, 16);
	put64(entries + 32, g->first_lba);
	put64(entries + 40, g->last_lba);
	put64(entries + 48, 0);   /* attributes */
	for (size_t i = 0; g->part_name && g->part_name[i] && i < 36; i++)
		put16(entries + 56 + 2 * i, (uint8_t)g->part_name[i]);
	uint32_t ecrc = (uint32_t)crc32(0, entries, sizeof(entries));

	if ((rc = pwrite_all(fd, mbr, SECTOR, 0)) < 0)
		return rc;
	make_header(hdr, 1, total - 1, 2, total, g->disk_guid, ecrc);
	if ((rc = pwrite_all(fd, hdr, SECTOR, SECTOR)) < 0 ||
	    (rc = pwrite_all(fd, entries, sizeof(entries), 2 * SECTOR)) < 0)
		return rc;
	uint64_t backup_entries = total - 1 - ENTRIES_SECTORS;
	make_header(hdr, total - 1, 1, backup_entries, total, g->disk_guid,
		    ecrc);
	if ((rc = pwrite_all(fd, entries, sizeof(entries),
			     backup_entries * SECTOR)) < 0 ||
	    (rc = pwrite_all(fd, hdr, SECTOR, (total - 1) * SECTOR)) < 0)
		return rc;
	return 0;
}
