/*
 * pvh.c - the test guest's PVH hand-over: check the hvm_start_info the
 * monitor built, report it, and present its command line and memory map
 * to guest_main() the way the bzImage build gets them (a zero page), so
 * the rest of the guest and its checks are the same for both builds.
 */
#include <stdint.h>

#include "../guest.h"

#define START_MAGIC 0x336ec578u

static uint8_t zero_page[4096] __attribute__((aligned(16)));

static uint32_t r32(const uint8_t *p) { return *(const uint32_t *)p; }
static uint64_t r64(const uint8_t *p) { return *(const uint64_t *)p; }

void guest_pvh_main(const uint8_t *si);

void guest_pvh_main(const uint8_t *si)
{
	guest_puts("guest: pvh entry, start_info ");
	guest_putx((uint64_t)si);
	guest_puts("\n");
	if (r32(si) != START_MAGIC) {
		guest_puts("guest: pvh bad start_info magic\n");
		return;
	}
	guest_puts("guest: pvh start_info version ");
	guest_putx(r32(si + 4));
	guest_puts("\n");

	uint32_t nmod = r32(si + 12);
	const uint8_t *mod = (const uint8_t *)r64(si + 16);
	guest_puts("guest: pvh modules ");
	guest_putx(nmod);
	guest_puts("\n");
	if (nmod > 0) {
		const char *m = (const char *)r64(mod);
		char first[9];
		for (int i = 0; i < 8; i++)
			first[i] = m[i];
		first[8] = 0;
		guest_puts("guest: pvh module 0 size ");
		guest_putx(r64(mod + 8));
		guest_puts(" starts '");
		guest_puts(first);
		guest_puts("'\n");
	}
	guest_puts("guest: pvh rsdp ");
	guest_putx(r64(si + 32));
	guest_puts("\n");

	/* The zero page fields guest_main() reads: cmd_line_ptr, the e820
	 * count and table (20-byte entries). */
	uint64_t cmdline = r64(si + 24);
	*(uint32_t *)(zero_page + 0x228) = (uint32_t)cmdline;
	uint32_t n = r32(si + 48);
	const uint8_t *mm = (const uint8_t *)r64(si + 40);
	if (n > 128)
		n = 128;
	zero_page[0x1e8] = (uint8_t)n;
	for (uint32_t i = 0; i < n; i++) {
		uint8_t *e = zero_page + 0x2d0 + 20 * i;
		*(uint64_t *)e = r64(mm + 24 * i);
		*(uint64_t *)(e + 8) = r64(mm + 24 * i + 8);
		*(uint32_t *)(e + 16) = r32(mm + 24 * i + 16);
	}
	guest_main(zero_page);
}
