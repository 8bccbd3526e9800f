/*
 * legacy.h - the PC devices a Linux guest pokes at besides the UART:
 * the i8042 keyboard controller (its reset line is how `reboot` and our
 * test guest power off) and the CMOS real-time clock.
 */
#ifndef RUNTIME_LEGACY_H
#define RUNTIME_LEGACY_H

#include "runtime/vm.h"

/* Ports 0x60 and 0x64.  Command 0xFE (pulse reset) stops the VM with
 * VM_STOP_POWEROFF: a microVM treats reboot as "the appliance is done". */
int i8042__attach(struct vm *vm);
/* A free-standing controller for tests, driven through i8042__io() with
 * the port number (0x60 or 0x64) as `port`; free() it. */
void *i8042__new(struct vm *vm);
void i8042__io(void *opaque, uint64_t port, uint8_t *data, uint32_t len,
	       bool is_write);

/* Ports 0x70/0x71: time of day from the host clock (UTC, BCD, 24h),
 * status registers A-D, and the rest of the 128 bytes of CMOS RAM. */
int rtc__attach(struct vm *vm);

#endif /* RUNTIME_LEGACY_H */
