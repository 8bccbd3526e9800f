/*
 * bytes.h - little-endian field access and the firmware-table checksum,
 * shared by the boot protocol (boot-linux.c), the MP table and ACPI.
 * Byte-wise so that hostile or unaligned buffers are never cast.
 */
#ifndef RUNTIME_BYTES_H
#define RUNTIME_BYTES_H

#include <stddef.h>
#include <stdint.h>

static inline uint16_t le16_get(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t le32_get(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static inline void le_put(uint8_t *p, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void le16_put(uint8_t *p, uint16_t v) { le_put(p, v, 2); }
static inline void le32_put(uint8_t *p, uint32_t v) { le_put(p, v, 4); }
static inline void le64_put(uint8_t *p, uint64_t v) { le_put(p, v, 8); }

/* The byte that makes p[0..n) sum to zero (MP and ACPI tables). */
static inline uint8_t table_checksum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;

	for (size_t i = 0; i < n; i++)
		s = (uint8_t)(s + p[i]);
	return (uint8_t)(0 - s);
}

#endif /* RUNTIME_BYTES_H */
