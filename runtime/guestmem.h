/*
 * guestmem.h - guest physical memory as the monitor's devices see it.
 *
 * Guest RAM is a few host mappings, each covering a range of guest
 * physical addresses (below and above the 32-bit MMIO hole).  Every address
 * a guest hands a device (a descriptor table, a buffer) goes through
 * guest_mem__ptr(), which returns NULL unless the whole range lies inside
 * one RAM region: devices never touch host memory the guest does not own.
 */
#ifndef RUNTIME_GUESTMEM_H
#define RUNTIME_GUESTMEM_H

#include <stddef.h>
#include <stdint.h>

#define GUEST_MEM_MAX_REGIONS 4

struct guest_mem_region {
	uint64_t gpa;   /* guest physical start */
	uint64_t size;
	uint8_t *host;  /* host mapping of the region */
};

struct guest_mem {
	int nr;
	struct guest_mem_region r[GUEST_MEM_MAX_REGIONS];
};

/* Host pointer for [gpa, gpa+len), or NULL if any byte of it is not RAM
 * (or the range wraps). */
static inline void *guest_mem__ptr(const struct guest_mem *m, uint64_t gpa,
				   uint64_t len)
{
	if (gpa + len < gpa)
		return NULL;
	for (int i = 0; i < m->nr; i++) {
		const struct guest_mem_region *r = &m->r[i];
		if (gpa >= r->gpa && gpa - r->gpa <= r->size &&
		    len <= r->size - (gpa - r->gpa))
			return r->host + (gpa - r->gpa);
	}
	return NULL;
}

#endif /* RUNTIME_GUESTMEM_H */
