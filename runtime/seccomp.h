/*
 * seccomp.h - the monitor's syscall allowlist (raw BPF, no libseccomp).
 */
#ifndef RUNTIME_SECCOMP_H
#define RUNTIME_SECCOMP_H

enum seccomp_role {
	SECCOMP_VCPU,     /* a vCPU thread in its KVM_RUN loop */
	SECCOMP_MAIN,     /* the main thread's console/signal loop */
};

/* Restrict the calling thread (and threads it creates later) to what
 * `role` needs once the VM runs; anything else kills the process.  Needs
 * no privilege (sets no_new_privs).  Negative errno on failure. */
int seccomp__install(enum seccomp_role role);

/* Whether the filter can work in this build: sanitizer runtimes make
 * syscalls of their own (reports, shadow memory) that no allowlist
 * anticipates, so sanitizer builds skip it. */
int seccomp__supported(void);

#endif /* RUNTIME_SECCOMP_H */
