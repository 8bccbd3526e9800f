/*
 * crc32c.h - CRC-32C (Castagnoli), the checksum AVD stores for its data.
 *
 * crc32c(0, buf, len) is the standard CRC-32C of buf ("123456789" gives
 * 0xe3069283); pass a previous result as `crc` to continue a running
 * checksum over more bytes.  Uses the SSE4.2 crc32 instruction when the CPU
 * has it (checked once at run time) and a table otherwise.
 */
#ifndef IMGFMT_CRC32C_H
#define IMGFMT_CRC32C_H

#include <stddef.h>
#include <stdint.h>

uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

/* The portable table implementation, exposed so tests can compare it with
 * the hardware path. */
uint32_t crc32c__sw(uint32_t crc, const void *buf, size_t len);

/* Each implementation on its own, so that tests can compare every fast
 * path this CPU has with the table one (crc32c() picks one by length).
 * Returns 0 and the CRC in *out; -1 if this CPU lacks the path; -2 if
 * len is below what the path handles (PCLMUL: 64, VPCLMUL: 256). */
enum { CRC32C_PATH_SW, CRC32C_PATH_SSE42, CRC32C_PATH_PCLMUL,
       CRC32C_PATH_VPCLMUL, CRC32C_NPATHS };
int crc32c__path(int path, uint32_t crc, const void *buf, size_t len,
		 uint32_t *out);

#endif /* IMGFMT_CRC32C_H */
