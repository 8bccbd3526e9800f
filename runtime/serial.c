/*
 * serial.c - 16550A UART: what Linux's 8250 driver needs to probe the
 * port, print the console and read keystrokes.
 *
 * Transmission is instant (THR is always empty, so LSR always shows THRE
 * and TEMT), which makes the "THR empty" interrupt an edge the guest
 * consumes by reading IIR, exactly like the real chip after a character
 * leaves.  The modem lines report a connected terminal (DCD, DSR, CTS)
 * and follow MCR in loopback mode, which is what the driver's probe
 * checks.  The divisor latch is stored and read back but has no effect.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/serial.h"

/* Register offsets. */
enum { RBR_THR = 0, IER = 1, IIR_FCR = 2, LCR = 3, MCR = 4, LSR = 5,
       MSR = 6, SCR = 7 };

#define IER_RDI  0x01
#define IER_THRI 0x02
#define IIR_NONE 0x01
#define IIR_THRI 0x02
#define IIR_RDI  0x04
#define IIR_FIFO 0xc0
#define FCR_ENABLE 0x01
#define FCR_CLEAR_RX 0x02
#define LCR_DLAB 0x80
#define MCR_LOOP 0x10
#define LSR_DR   0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define MSR_DCD  0x80
#define MSR_RI   0x40
#define MSR_DSR  0x20
#define MSR_CTS  0x10

struct serial {
	pthread_mutex_t lock;
	int out_fd;
	struct vm *vm;           /* stop waiting for out_fd when it stops */
	serial_irq_fn irq;
	void *irq_opaque;
	int irq_level;

	uint8_t ier, lcr, mcr, scr, fcr, dll, dlm;
	bool thri_pending;       /* THR-empty interrupt not yet taken */
	uint8_t rx[SERIAL_FIFO];
	unsigned rx_head, rx_count;
	uint64_t tx_bytes;
};

struct serial *serial__new(int out_fd, serial_irq_fn irq, void *irq_opaque)
{
	struct serial *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	pthread_mutex_init(&s->lock, NULL);
	s->out_fd = out_fd;
	s->irq = irq;
	s->irq_opaque = irq_opaque;
	s->dll = 12;             /* 9600 baud, the power-on divisor */
	return s;
}

void serial__bind_vm(struct serial *s, struct vm *vm)
{
	s->vm = vm;
}

void serial__free(struct serial *s)
{
	if (!s)
		return;
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static uint8_t iir(const struct serial *s)
{
	uint8_t fifo = (s->fcr & FCR_ENABLE) ? IIR_FIFO : 0;

	if ((s->ier & IER_RDI) && s->rx_count)
		return fifo | IIR_RDI;
	if ((s->ier & IER_THRI) && s->thri_pending)
		return fifo | IIR_THRI;
	return fifo | IIR_NONE;
}

/* Called with the lock held after every state change. */
static void update_irq(struct serial *s)
{
	int level = !(iir(s) & IIR_NONE);

	if (level != s->irq_level) {
		s->irq_level = level;
		if (s->irq)
			s->irq(s->irq_opaque, level);
	}
}

static void rx_push(struct serial *s, uint8_t b)
{
	if (s->rx_count == SERIAL_FIFO)
		return;   /* overrun: the byte is lost, as on the chip */
	s->rx[(s->rx_head + s->rx_count) % SERIAL_FIFO] = b;
	s->rx_count++;
}

/* One byte to the console.  A console that does not take it (a pipe
 * nobody drains, a terminal on XOFF) holds the guest, as a UART on a
 * stalled line would, but only while the VM runs: the wait is poll() in
 * slices with a look at the VM in between, never a blocking write().
 * The kick that stops a vCPU interrupts a blocking write only to have it
 * retried, and a kick landing just before the write is lost; a vCPU
 * stuck here could never be stopped, and the monitor never exit. */
static void console_write(struct serial *s, uint8_t b)
{
	for (;;) {
		struct pollfd p = { s->out_fd, POLLOUT, 0 };
		int r = poll(&p, 1, 100);

		if (r > 0) {
			/* Writable (1 byte cannot block now), or an error
			 * the write reports. */
			ssize_t w = write(s->out_fd, &b, 1);
			if (w < 0 && errno == EINTR)
				continue;
			return;   /* a dead console must not stop the guest */
		}
		if (r < 0 && errno != EINTR)
			return;
		if (s->vm && vm__stopped(s->vm) != VM_RUNNING)
			return;   /* stopping: the byte is dropped */
	}
}

static void transmit(struct serial *s, uint8_t b)
{
	if (s->mcr & MCR_LOOP) {
		rx_push(s, b);
	} else if (s->out_fd >= 0) {
		console_write(s, b);
	}
	s->tx_bytes++;
	s->thri_pending = true;
}

static uint8_t reg_read(struct serial *s, unsigned reg)
{
	switch (reg) {
	case RBR_THR:
		if (s->lcr & LCR_DLAB)
			return s->dll;
		if (s->rx_count) {
			uint8_t b = s->rx[s->rx_head];
			s->rx_head = (s->rx_head + 1) % SERIAL_FIFO;
			s->rx_count--;
			return b;
		}
		return 0;
	case IER:
		return (s->lcr & LCR_DLAB) ? s->dlm : s->ier;
	case IIR_FCR: {
		uint8_t v = iir(s);
		/* Reading IIR while it reports THR empty acknowledges it. */
		if ((v & 0x0f) == IIR_THRI)
			s->thri_pending = false;
		return v;
	}
	case LCR:
		return s->lcr;
	case MCR:
		return s->mcr;
	case LSR:
		return LSR_THRE | LSR_TEMT | (s->rx_count ? LSR_DR : 0);
	case MSR:
		if (s->mcr & MCR_LOOP) {
			/* Loopback: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD. */
			uint8_t m = s->mcr;
			return (uint8_t)(((m & 0x01) ? MSR_DSR : 0) |
					 ((m & 0x02) ? MSR_CTS : 0) |
					 ((m & 0x04) ? MSR_RI : 0) |
					 ((m & 0x08) ? MSR_DCD : 0));
		}
		return MSR_DCD | MSR_DSR | MSR_CTS;
	case SCR:
		return s->scr;
	}
	return 0xff;
}

static void reg_write(struct serial *s, unsigned reg, uint8_t v)
{
	switch (reg) {
	case RBR_THR:
		if (s->lcr & LCR_DLAB)
			s->dll = v;
		else
			transmit(s, v);
		break;
	case IER:
		if (s->lcr & LCR_DLAB) {
			s->dlm = v;
		} else {
			/* Enabling THRI with THR already empty raises it at
			 * once: the 8250 driver's startup test relies on it. */
			if ((v & IER_THRI) && !(s->ier & IER_THRI))
				s->thri_pending = true;
			s->ier = v & 0x0f;
		}
		break;
	case IIR_FCR:
		if (v & FCR_CLEAR_RX)
			s->rx_head = s->rx_count = 0;
		s->fcr = v & (FCR_ENABLE | 0xc0);
		break;
	case LCR:
		s->lcr = v;
		break;
	case MCR:
		s->mcr = v & 0x1f;
		break;
	case LSR:
	case MSR:
		break;   /* read-only */
	case SCR:
		s->scr = v;
		break;
	}
}

void serial__io(void *opaque, uint64_t off, uint8_t *data, uint32_t len,
		bool is_write)
{
	struct serial *s = opaque;

	/* Byte registers: wider accesses touch consecutive registers. */
	pthread_mutex_lock(&s->lock);
	for (uint32_t i = 0; i < len; i++) {
		uint64_t reg = off + i;
		if (reg > SCR) {
			if (!is_write)
				data[i] = 0xff;
			continue;
		}
		if (is_write)
			reg_write(s, (unsigned)reg, data[i]);
		else
			data[i] = reg_read(s, (unsigned)reg);
	}
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

int serial__attach(struct serial *s, struct bus *pio, uint16_t base)
{
	return bus__register(pio, base, 8, serial__io, s, "serial");
}

size_t serial__input(struct serial *s, const uint8_t *buf, size_t n)
{
	size_t took = 0;

	pthread_mutex_lock(&s->lock);
	while (took < n && s->rx_count < SERIAL_FIFO)
		rx_push(s, buf[took++]);
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return took;
}

size_t serial__rx_room(struct serial *s)
{
	pthread_mutex_lock(&s->lock);
	size_t room = SERIAL_FIFO - s->rx_count;
	pthread_mutex_unlock(&s->lock);
	return room;
}

uint64_t serial__tx_bytes(struct serial *s)
{
	pthread_mutex_lock(&s->lock);
	uint64_t n = s->tx_bytes;
	pthread_mutex_unlock(&s->lock);
	return n;
}
