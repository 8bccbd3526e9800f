/*
 * kvmspeed.h - does /dev/kvm run guest code at hardware speed?
 *
 * Nested or software-assisted KVM (shadow paging, kvm_pvm) can run guests
 * thousands of times slower than the host.  kvmspeed__measure() runs the
 * same tiny loop as a guest and on the host and compares the time per
 * iteration; `appliance run --engine auto` uses the verdict.
 */
#ifndef RUNTIME_KVMSPEED_H
#define RUNTIME_KVMSPEED_H

#include <stdbool.h>
#include <stdint.h>

/* A guest loop more than this many times slower than the host's is
 * "emulated": hardware virtualization stays within a few x. */
#define KVMSPEED_EMULATED_RATIO 20.0

struct kvmspeed_result {
	bool emulated;
	double ratio;               /* guest ns per iteration / host's */
	double guest_ns_per_iter;
	double host_ns_per_iter;
	uint64_t guest_iters;
};

/* kvm_path NULL: /dev/kvm.  Negative errno (vm__error()) if no VM could
 * be run at all. */
int kvmspeed__measure(const char *kvm_path, struct kvmspeed_result *out);

/* The verdict's word: "hardware" or "emulated". */
const char *kvmspeed__verdict(const struct kvmspeed_result *r);

#endif /* RUNTIME_KVMSPEED_H */
