/*
 * seccomp.c - after setup, the monitor only reads and writes file
 * descriptors it already has, runs KVM, and synchronises its threads.
 * Opening files, creating processes, sockets, mapping executable memory
 * (mmap is allowed, but not with PROT_EXEC) and every ioctl except the
 * few the run loop issues are refused by killing the process: a guest
 * that takes over a device model gets nothing more than the device had.
 *
 * Like Firecracker, each thread gets the filter for its role; a vCPU
 * thread installs its own before the first KVM_RUN.
 */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/kvm.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#include "runtime/seccomp.h"
#include "runtime/vm.h"

int seccomp__supported(void)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
	return 0;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
	return 0;
#else
	return 1;
#endif
#else
	return 1;
#endif
}

/* Syscalls every thread of a running monitor may make.  Memory calls are
 * there for malloc and for imgfmt's caches; file I/O for the disk images
 * (preadv/pwritev, fsync, fallocate, ftruncate) and the console. */
static const int common_calls[] = {
	SYS_read, SYS_write, SYS_readv, SYS_writev, SYS_pread64,
	SYS_pwrite64, SYS_preadv, SYS_pwritev, SYS_preadv2, SYS_pwritev2,
	SYS_lseek, SYS_fsync, SYS_fdatasync, SYS_fallocate, SYS_ftruncate,
	SYS_fstat, SYS_newfstatat, SYS_fcntl, SYS_close,
	SYS_futex, SYS_sched_yield, SYS_nanosleep, SYS_clock_nanosleep,
	SYS_clock_gettime, SYS_gettimeofday, SYS_getpid, SYS_gettid,
	SYS_getrandom, SYS_brk, SYS_munmap, SYS_madvise, SYS_mremap,
	SYS_rt_sigreturn, SYS_rt_sigprocmask, SYS_rt_sigtimedwait, SYS_mincore, SYS_tgkill, SYS_restart_syscall,
	SYS_exit, SYS_exit_group, SYS_poll, SYS_ppoll, SYS_epoll_wait,
	SYS_epoll_pwait, SYS_epoll_ctl,
	/* virtio-net's stream backend to passt (sendmsg with MSG_NOSIGNAL,
	 * reads), and stopping and reaping passt when the VM ends. */
	SYS_sendmsg, SYS_recvfrom, SYS_recvmsg, SYS_kill, SYS_wait4,
};

/* ioctl requests, by role. */
static const unsigned long vcpu_ioctls[] = {
	KVM_RUN, KVM_IRQ_LINE, KVM_GET_REGS,
};
static const unsigned long main_ioctls[] = {
	KVM_IRQ_LINE, TCGETS, TCSETS, TCSETSW, TCSETSF,
};

#define MAX_INSNS 160

struct prog {
	struct sock_filter f[MAX_INSNS];
	int n;
};

static void emit(struct prog *p, uint16_t code, uint8_t jt, uint8_t jf,
		 uint32_t k)
{
	if (p->n < MAX_INSNS)
		p->f[p->n++] = (struct sock_filter){ code, jt, jf, k };
}

#define LD_W(off) emit(p, BPF_LD | BPF_W | BPF_ABS, 0, 0, (uint32_t)(off))
#define RET(v)    emit(p, BPF_RET | BPF_K, 0, 0, (uint32_t)(v))

int seccomp__install(enum seccomp_role role)
{
	struct prog prog, *p = &prog;
	const unsigned long *ioc = role == SECCOMP_VCPU ? vcpu_ioctls
							: main_ioctls;
	int nioc = role == SECCOMP_VCPU
		? (int)(sizeof(vcpu_ioctls) / sizeof(vcpu_ioctls[0]))
		: (int)(sizeof(main_ioctls) / sizeof(main_ioctls[0]));
	int ncommon = (int)(sizeof(common_calls) / sizeof(common_calls[0]));

	memset(&prog, 0, sizeof(prog));
	/* Only native x86-64 calls (no i386, no x32 numbers). */
	LD_W(offsetof(struct seccomp_data, arch));
	emit(p, BPF_JMP | BPF_JEQ | BPF_K, 1, 0, AUDIT_ARCH_X86_64);
	RET(SECCOMP_RET_KILL_PROCESS);
	LD_W(offsetof(struct seccomp_data, nr));
	emit(p, BPF_JMP | BPF_JGE | BPF_K, 0, 1, 0x40000000u);
	RET(SECCOMP_RET_KILL_PROCESS);
	/* The plain allowlist: each jeq jumps to the ALLOW at the end of
	 * the block. */
	for (int i = 0; i < ncommon; i++)
		emit(p, BPF_JMP | BPF_JEQ | BPF_K,
		     (uint8_t)(ncommon - i), 0, (uint32_t)common_calls[i]);
	emit(p, BPF_JMP | BPF_JA, 0, 0, 1);
	RET(SECCOMP_RET_ALLOW);
	/* mmap/mprotect without PROT_EXEC (arg 2).  The accumulator still
	 * holds nr here. */
	emit(p, BPF_JMP | BPF_JEQ | BPF_K, 2, 0, SYS_mmap);
	emit(p, BPF_JMP | BPF_JEQ | BPF_K, 1, 0, SYS_mprotect);
	emit(p, BPF_JMP | BPF_JA, 0, 0, 4);
	LD_W(offsetof(struct seccomp_data, args[2]));
	emit(p, BPF_JMP | BPF_JSET | BPF_K, 0, 1, PROT_EXEC);
	RET(SECCOMP_RET_KILL_PROCESS);
	RET(SECCOMP_RET_ALLOW);
	/* ioctl with an allowed request number (arg 1, which the kernel
	 * truncates to 32 bits anyway). */
	LD_W(offsetof(struct seccomp_data, nr));
	emit(p, BPF_JMP | BPF_JEQ | BPF_K, 0, (uint8_t)(nioc + 3), SYS_ioctl);
	LD_W(offsetof(struct seccomp_data, args[1]));
	for (int i = 0; i < nioc; i++)
		emit(p, BPF_JMP | BPF_JEQ | BPF_K, (uint8_t)(nioc - i), 0,
		     (uint32_t)ioc[i]);
	RET(SECCOMP_RET_KILL_PROCESS);
	RET(SECCOMP_RET_ALLOW);
	RET(SECCOMP_RET_KILL_PROCESS);
	if (p->n >= MAX_INSNS)
		return vm__err(E2BIG, "seccomp filter too long");

	struct sock_fprog fp = { .len = (unsigned short)p->n, .filter = p->f };
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return vm__err(errno, "prctl(NO_NEW_PRIVS): %s",
			       strerror(errno));
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fp) < 0)
		return vm__err(errno, "seccomp: %s", strerror(errno));
	return 0;
}
