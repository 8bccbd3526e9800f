/*
 * kvm.c - the VM itself: /dev/kvm, the VM fd, RAM slots, the in-kernel
 * interrupt controllers and PIT, IRQ lines, and stopping.
 *
 * The monitor leans on KVM for everything timing-critical (PIC, IOAPIC,
 * local APICs, PIT), as Firecracker does, so userspace only emulates the
 * slow legacy devices (UART, i8042, CMOS) and the virtio devices.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "runtime/vm.h"

static __thread char vm_errbuf[1024];

const char *vm__error(void)
{
	return vm_errbuf;
}

int vm__err(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(vm_errbuf, sizeof(vm_errbuf), fmt, ap);
	va_end(ap);
	return -err;
}

uint64_t vm__now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int vm__ram_layout(uint64_t ram, struct guest_mem_region out[2])
{
	uint64_t low = ram < VM_MMIO_HOLE_START ? ram : VM_MMIO_HOLE_START;

	memset(out, 0, 2 * sizeof(out[0]));
	out[0].gpa = 0;
	out[0].size = low;
	if (ram == low)
		return 1;
	out[1].gpa = VM_MMIO_HOLE_END;
	out[1].size = ram - low;
	return 2;
}

/* Capabilities without which the monitor cannot work at all. */
static const struct {
	int cap;
	const char *name;
} required_caps[] = {
	{ KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP" },
	{ KVM_CAP_PIT2, "KVM_CAP_PIT2" },
	{ KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY" },
	{ KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR" },
	{ KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID" },
	{ KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT" },
};

static int get_supported_cpuid(struct vm *vm)
{
	/* The kernel says E2BIG until the buffer is large enough. */
	for (int n = 64; n <= 4096; n *= 2) {
		struct kvm_cpuid2 *c = calloc(1, sizeof(*c) +
					      n * sizeof(c->entries[0]));
		if (!c)
			return vm__err(ENOMEM, "out of memory for CPUID");
		c->nent = (uint32_t)n;
		if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
			vm->supported_cpuid = c;
			return 0;
		}
		int e = errno;
		free(c);
		if (e != E2BIG)
			return vm__err(e, "KVM_GET_SUPPORTED_CPUID: %s",
				       strerror(e));
	}
	return vm__err(E2BIG, "KVM_GET_SUPPORTED_CPUID: too many entries");
}

static int add_ram(struct vm *vm, uint64_t ram)
{
	struct guest_mem_region lay[2];
	int n = vm__ram_layout(ram, lay);

	for (int i = 0; i < n; i++) {
		/* MAP_NORESERVE: guest RAM is touched lazily, so a 512 MiB
		 * guest that uses 20 MiB costs 20 MiB. */
		void *p = mmap(NULL, lay[i].size, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
			       -1, 0);
		if (p == MAP_FAILED)
			return vm__err(errno, "cannot map %llu bytes of guest "
				       "RAM: %s",
				       (unsigned long long)lay[i].size,
				       strerror(errno));
		vm->mem.r[vm->mem.nr].gpa = lay[i].gpa;
		vm->mem.r[vm->mem.nr].size = lay[i].size;
		vm->mem.r[vm->mem.nr].host = p;
		vm->mem.nr++;
		struct kvm_userspace_memory_region slot = {
			.slot = (uint32_t)i,
			.guest_phys_addr = lay[i].gpa,
			.memory_size = lay[i].size,
			.userspace_addr = (uint64_t)(uintptr_t)p,
		};
		if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &slot) < 0)
			return vm__err(errno, "KVM_SET_USER_MEMORY_REGION "
				       "(slot %d at 0x%llx): %s", i,
				       (unsigned long long)lay[i].gpa,
				       strerror(errno));
	}
	vm->ram_size = ram;
	return 0;
}

int vm__create(struct vm *vm, const char *kvm_path, uint64_t ram,
	       int nr_cpus)
{
	int rc;

	memset(vm, 0, sizeof(*vm));
	vm->kvm_fd = vm->vm_fd = vm->stop_efd = -1;
	pthread_mutex_init(&vm->stop_lock, NULL);
	bus__init(&vm->pio, "pio");
	bus__init(&vm->mmio, "mmio");

	if (ram < VM_MIN_RAM || ram > VM_MAX_RAM) {
		rc = vm__err(EINVAL, "guest memory %llu bytes is outside "
			     "[2 MiB, 1 TiB]", (unsigned long long)ram);
		goto fail;
	}
	if (nr_cpus < 1 || nr_cpus > VM_MAX_CPUS) {
		rc = vm__err(EINVAL, "%d vCPUs is outside [1, %d]", nr_cpus,
			     VM_MAX_CPUS);
		goto fail;
	}
	vm->nr_cpus = nr_cpus;
	if (!kvm_path)
		kvm_path = "/dev/kvm";
	vm->kvm_fd = open(kvm_path, O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		rc = vm__err(errno, "%s: %s", kvm_path, strerror(errno));
		goto fail;
	}
	int ver = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (ver != KVM_API_VERSION) {
		rc = vm__err(ENOTSUP, "%s: KVM API version %d, need %d",
			     kvm_path, ver, KVM_API_VERSION);
		goto fail;
	}
	for (size_t i = 0; i < sizeof(required_caps) / sizeof(required_caps[0]);
	     i++) {
		if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION,
			  required_caps[i].cap) <= 0) {
			rc = vm__err(ENOTSUP, "%s lacks %s", kvm_path,
				     required_caps[i].name);
			goto fail;
		}
	}
	int max = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	if (max <= 0)
		max = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	if (max > 0 && nr_cpus > max) {
		rc = vm__err(EINVAL, "%d vCPUs asked, KVM allows %d", nr_cpus,
			     max);
		goto fail;
	}
	vm->vcpu_mmap_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->vcpu_mmap_size <= 0) {
		rc = vm__err(errno, "KVM_GET_VCPU_MMAP_SIZE: %s",
			     strerror(errno));
		goto fail;
	}
	if ((rc = get_supported_cpuid(vm)) < 0)
		goto fail;
	vm->shadow_compat = vm__host_shadow_paging();

	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		rc = vm__err(errno, "KVM_CREATE_VM: %s", strerror(errno));
		goto fail;
	}
	/* Both addresses must be set before the first vCPU exists. */
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)VM_TSS_ADDR) < 0) {
		rc = vm__err(errno, "KVM_SET_TSS_ADDR: %s", strerror(errno));
		goto fail;
	}
	uint64_t idmap = VM_IDENTITY_MAP_ADDR;
	if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION,
		  KVM_CAP_SET_IDENTITY_MAP_ADDR) > 0 &&
	    ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0) {
		rc = vm__err(errno, "KVM_SET_IDENTITY_MAP_ADDR: %s",
			     strerror(errno));
		goto fail;
	}
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
		rc = vm__err(errno, "KVM_CREATE_IRQCHIP: %s", strerror(errno));
		goto fail;
	}
	struct kvm_pit_config pit = { .flags = 0 };
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		rc = vm__err(errno, "KVM_CREATE_PIT2: %s", strerror(errno));
		goto fail;
	}
	if ((rc = add_ram(vm, ram)) < 0)
		goto fail;
	vm->stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->stop_efd < 0) {
		rc = vm__err(errno, "eventfd: %s", strerror(errno));
		goto fail;
	}
	return 0;
fail:
	vm__destroy(vm);
	return rc;
}

int vm__add_cleanup(struct vm *vm, void (*fn)(void *), void *p)
{
	int n = (int)(sizeof(vm->cleanups) / sizeof(vm->cleanups[0]));

	if (vm->nr_cleanups == n)
		return vm__err(ENOSPC, "too many devices");
	vm->cleanups[vm->nr_cleanups].fn = fn;
	vm->cleanups[vm->nr_cleanups].p = p;
	vm->nr_cleanups++;
	return 0;
}

void vm__destroy(struct vm *vm)
{
	while (vm->nr_cleanups > 0) {
		vm->nr_cleanups--;
		vm->cleanups[vm->nr_cleanups].fn(vm->cleanups[vm->nr_cleanups].p);
	}
	for (int i = 0; i < vm->mem.nr; i++)
		munmap(vm->mem.r[i].host, vm->mem.r[i].size);
	vm->mem.nr = 0;
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	if (vm->stop_efd >= 0)
		close(vm->stop_efd);
	vm->vm_fd = vm->kvm_fd = vm->stop_efd = -1;
	free(vm->supported_cpuid);
	vm->supported_cpuid = NULL;
	bus__destroy(&vm->pio);
	bus__destroy(&vm->mmio);
}

static bool param_is(const char *path, const char *yes1, const char *yes2)
{
	char buf[8] = "";
	FILE *f = fopen(path, "re");

	if (!f)
		return false;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = '\0';
	fclose(f);
	buf[strcspn(buf, "\n")] = '\0';
	return strcmp(buf, yes1) == 0 || strcmp(buf, yes2) == 0;
}

bool vm__host_shadow_paging(void)
{
	return !param_is("/sys/module/kvm_intel/parameters/ept", "Y", "1") &&
	       !param_is("/sys/module/kvm_amd/parameters/npt", "Y", "1");
}

int vm__irq_line(struct vm *vm, uint32_t gsi, int level)
{
	struct kvm_irq_level irq = { .irq = gsi, .level = (uint32_t)!!level };

	if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq) < 0)
		return vm__err(errno, "KVM_IRQ_LINE %u: %s", gsi,
			       strerror(errno));
	return 0;
}

/* The signal cpu.c installs to interrupt KVM_RUN (SIGUSR1 by default). */
extern int cpu__kick_signal;

void vm__stop(struct vm *vm, enum vm_stop why, const char *fmt, ...)
{
	pthread_mutex_lock(&vm->stop_lock);
	if (vm->stop_reason != VM_RUNNING) {
		pthread_mutex_unlock(&vm->stop_lock);
		return;
	}
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(vm->stop_msg, sizeof(vm->stop_msg), fmt, ap);
		va_end(ap);
	}
	__atomic_store_n(&vm->stop_reason, why, __ATOMIC_RELEASE);
	/* immediate_exit closes the race with a vCPU that is about to enter
	 * KVM_RUN: it returns EINTR at once instead of sleeping in the guest's
	 * HLT forever. */
	for (int i = 0; i < vm->nr_cpus && vm->cpus; i++) {
		struct vcpu *c = &vm->cpus[i];
		if (c->run)
			__atomic_store_n(&c->run->immediate_exit, 1,
					 __ATOMIC_SEQ_CST);
		if (c->started && !pthread_equal(c->thread, pthread_self()))
			pthread_kill(c->thread, cpu__kick_signal);
	}
	pthread_mutex_unlock(&vm->stop_lock);
	if (vm->stop_efd >= 0) {
		uint64_t one = 1;
		ssize_t w = write(vm->stop_efd, &one, sizeof(one));
		(void)w;
	}
}

enum vm_stop vm__stopped(struct vm *vm)
{
	return __atomic_load_n(&vm->stop_reason, __ATOMIC_ACQUIRE);
}
