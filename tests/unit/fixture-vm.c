/*
 * fixture-vm.c - see fixture-vm.h.  Linked into every unit test (the
 * Makefile's TEST_HELPER_SRCS: tests/unit/ files not named test_*).
 */
#include <check.h>
#include <stdlib.h>

#include "fixture-vm.h"

struct vm *fx_vm_new(uint64_t ram)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	struct guest_mem_region lay[2];

	ck_assert_ptr_nonnull(vm);
	int n = vm__ram_layout(ram, lay);
	vm->kvm_fd = vm->vm_fd = vm->stop_efd = -1;
	pthread_mutex_init(&vm->stop_lock, NULL);
	bus__init(&vm->pio, "pio");
	bus__init(&vm->mmio, "mmio");
	vm->ram_size = ram;
	for (int i = 0; i < n; i++) {
		vm->mem.r[i] = lay[i];
		vm->mem.r[i].host = calloc(1, lay[i].size);
		ck_assert_ptr_nonnull(vm->mem.r[i].host);
	}
	vm->mem.nr = n;
	return vm;
}

void fx_vm_free(struct vm *vm)
{
	for (int i = 0; i < vm->mem.nr; i++)
		free(vm->mem.r[i].host);
	vm->mem.nr = 0;
	vm__destroy(vm);
	free(vm);
}
