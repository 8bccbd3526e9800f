/*
 * serial.h - a 16550A UART, the guest's console (ttyS0 at 0x3f8, IRQ 4).
 */
#ifndef RUNTIME_SERIAL_H
#define RUNTIME_SERIAL_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/vm.h"

#define SERIAL_COM1_BASE 0x3f8
#define SERIAL_COM1_IRQ  4
#define SERIAL_FIFO      64

struct serial;

/* Drive the UART's interrupt line (level: 1 raised, 0 lowered). */
typedef void (*serial_irq_fn)(void *opaque, int level);

/* A UART whose transmitted bytes go to `out_fd` (-1: discarded). */
struct serial *serial__new(int out_fd, serial_irq_fn irq, void *irq_opaque);
void serial__free(struct serial *s);
/* A console that does not take the UART's bytes holds the vCPU writing
 * them until `vm` stops; then they are dropped (without a VM: holds). */
void serial__bind_vm(struct serial *s, struct vm *vm);
/* Claim the eight registers at `base` on the port-I/O bus. */
int serial__attach(struct serial *s, struct bus *pio, uint16_t base);
/* The register handler (exposed so tests drive the UART directly). */
void serial__io(void *opaque, uint64_t off, uint8_t *data, uint32_t len,
		bool is_write);
/* Queue received bytes; returns how many fit in the receive FIFO. */
size_t serial__input(struct serial *s, const uint8_t *buf, size_t n);
/* Free space in the receive FIFO. */
size_t serial__rx_room(struct serial *s);
/* Bytes written to out_fd so far, and write errors seen. */
uint64_t serial__tx_bytes(struct serial *s);

#endif /* RUNTIME_SERIAL_H */
