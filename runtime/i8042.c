/*
 * i8042.c - just enough of the PS/2 controller: status and data ports
 * that answer the kernel's probe (controller self-test, config byte read
 * and write) so it does not wait for a keyboard, and the reset command.
 *
 * There is no keyboard behind it: port commands that talk to the devices
 * get no answer, which the kernel takes as "nothing connected".
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/legacy.h"

#define I8042_DATA 0x60
#define I8042_CMD  0x64

#define STS_OBF 0x01       /* output buffer full: a byte waits at 0x60 */
#define STS_SYS 0x04       /* system flag: passed POST */
#define STS_CMD 0x08       /* last write was a command */

struct i8042 {
	pthread_mutex_t lock;
	struct vm *vm;
	uint8_t status;
	uint8_t out;           /* the byte behind OBF */
	uint8_t ctr;           /* controller configuration byte */
	uint8_t pending_cmd;   /* a command that takes a data byte */
};

static void put_out(struct i8042 *k, uint8_t b)
{
	k->out = b;
	k->status |= STS_OBF;
}

static void command(struct i8042 *k, uint8_t cmd)
{
	k->status |= STS_CMD;
	switch (cmd) {
	case 0x20:                 /* read controller config byte */
		put_out(k, k->ctr);
		break;
	case 0x60:                 /* write config byte: next data byte */
	case 0xD1:                 /* write output port: next data byte */
	case 0xD2: case 0xD3: case 0xD4:
		k->pending_cmd = cmd;
		break;
	case 0xAA:                 /* controller self-test: passed */
		put_out(k, 0x55);
		break;
	case 0xAB:                 /* keyboard port test: ok */
		put_out(k, 0x00);
		break;
	case 0xFE:                 /* pulse the CPU reset line */
		vm__stop(k->vm, VM_STOP_POWEROFF, "guest reset (i8042)");
		break;
	default:                   /* enable/disable ports and the rest */
		break;
	}
}

void i8042__io(void *opaque, uint64_t port, uint8_t *data, uint32_t len,
	       bool is_write)
{
	struct i8042 *k = opaque;

	if (len != 1 || (port != I8042_DATA && port != I8042_CMD)) {
		if (!is_write)
			memset(data, 0xff, len);
		return;
	}
	pthread_mutex_lock(&k->lock);
	if (port == I8042_CMD) {
		if (is_write)
			command(k, data[0]);
		else
			data[0] = k->status;
	} else if (is_write) {
		k->status &= (uint8_t)~STS_CMD;
		if (k->pending_cmd == 0x60)
			k->ctr = data[0];
		else if (k->pending_cmd == 0xD1 && !(data[0] & 1))
			/* Output port bit 0 low holds the CPU in reset. */
			vm__stop(k->vm, VM_STOP_POWEROFF,
				 "guest reset (i8042 output port)");
		k->pending_cmd = 0;
	} else {
		data[0] = k->out;
		k->status &= (uint8_t)~STS_OBF;
	}
	pthread_mutex_unlock(&k->lock);
}

/* The bus hands offsets within a range; the two ports are separate
 * one-byte ranges (0x61, between them, is the PIT's speaker port, which
 * KVM emulates), so each gets a wrapper that names its port. */
static void data_io(void *o, uint64_t off, uint8_t *d, uint32_t len, bool w)
{
	(void)off;
	i8042__io(o, I8042_DATA, d, len, w);
}

static void cmd_io(void *o, uint64_t off, uint8_t *d, uint32_t len, bool w)
{
	(void)off;
	i8042__io(o, I8042_CMD, d, len, w);
}

static void i8042_free(void *p)
{
	struct i8042 *k = p;
	pthread_mutex_destroy(&k->lock);
	free(k);
}

void *i8042__new(struct vm *vm)
{
	struct i8042 *k = calloc(1, sizeof(*k));

	if (!k)
		return NULL;
	pthread_mutex_init(&k->lock, NULL);
	k->vm = vm;
	k->status = STS_SYS;
	k->ctr = 0x00;   /* no interrupts, both ports' clocks disabled */
	return k;
}

int i8042__attach(struct vm *vm)
{
	struct i8042 *k = i8042__new(vm);
	int rc;

	if (!k)
		return vm__err(ENOMEM, "out of memory for the i8042");
	if ((rc = vm__add_cleanup(vm, i8042_free, k)) < 0) {
		i8042_free(k);
		return rc;
	}
	rc = bus__register(&vm->pio, I8042_DATA, 1, data_io, k, "i8042");
	if (rc == 0)
		rc = bus__register(&vm->pio, I8042_CMD, 1, cmd_io, k, "i8042");
	return rc;
}
