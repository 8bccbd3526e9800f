/*
 * fixture-vm.h - a struct vm whose guest RAM is plain host memory, for
 * the tests of the boot loaders and the monitor's devices (no KVM), and
 * the little-endian byte helpers that craft kernels and boot data.
 */
#ifndef TEST_FIXTURE_VM_H
#define TEST_FIXTURE_VM_H

#include <stdint.h>
#include <string.h>

#include "runtime/vm.h"

/* A VM of `ram` bytes laid out by vm__ram_layout(), zeroed, with no KVM
 * behind it (kvm_fd, vm_fd and stop_efd are -1) and empty buses. */
struct vm *fx_vm_new(uint64_t ram);
/* Its RAM, then vm__destroy(), then the struct. */
void fx_vm_free(struct vm *vm);

static inline void fx_w16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static inline void fx_w32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void fx_w64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static inline uint32_t fx_r32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}
static inline uint64_t fx_r64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

#endif /* TEST_FIXTURE_VM_H */
