/*
 * rtc.c - the MC146818 CMOS clock at ports 0x70 (index) / 0x71 (data).
 *
 * Linux reads the wall clock from it at boot (and probes for it; without
 * one it complains and starts at 1970).  The time comes from the host's
 * clock on every read of a time register, in BCD, 24-hour mode, with
 * "update in progress" never set, so a reader's retry loop ends at once.
 * The other bytes are plain CMOS RAM.  Alarms and periodic interrupts are
 * not emulated (status C always reads 0).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/legacy.h"

struct rtc {
	pthread_mutex_t lock;
	uint8_t index;
	uint8_t ram[128];
};

static uint8_t bcd(int v)
{
	return (uint8_t)(((v / 10) << 4) | (v % 10));
}

static uint8_t rtc_read(struct rtc *r, uint8_t idx)
{
	time_t now = time(NULL);
	struct tm tm;

	gmtime_r(&now, &tm);
	switch (idx) {
	case 0x00: return bcd(tm.tm_sec);
	case 0x02: return bcd(tm.tm_min);
	case 0x04: return bcd(tm.tm_hour);
	case 0x06: return bcd(tm.tm_wday + 1);
	case 0x07: return bcd(tm.tm_mday);
	case 0x08: return bcd(tm.tm_mon + 1);
	case 0x09: return bcd(tm.tm_year % 100);
	case 0x32: return bcd((tm.tm_year + 1900) / 100);
	case 0x0a: return r->ram[0x0a] & 0x7f;   /* UIP clear */
	case 0x0c: return 0;                      /* no interrupt flags */
	case 0x0d: return 0x80;                   /* battery good */
	default: return r->ram[idx];
	}
}

static void rtc_io(void *opaque, uint64_t off, uint8_t *data, uint32_t len,
		   bool is_write)
{
	struct rtc *r = opaque;

	if (len != 1) {
		if (!is_write)
			memset(data, 0xff, len);
		return;
	}
	pthread_mutex_lock(&r->lock);
	if (off == 0) {
		if (is_write)
			r->index = data[0] & 0x7f;   /* bit 7 masks NMI */
		else
			data[0] = 0xff;
	} else if (is_write) {
		/* Writes to the clock itself are ignored: the guest cannot
		 * set the host's time, and reads stay host time. */
		if (r->index > 0x09 && r->index != 0x0c && r->index != 0x0d)
			r->ram[r->index] = data[0];
	} else {
		data[0] = rtc_read(r, r->index);
	}
	pthread_mutex_unlock(&r->lock);
}

static void rtc_free(void *p)
{
	struct rtc *r = p;
	pthread_mutex_destroy(&r->lock);
	free(r);
}

int rtc__attach(struct vm *vm)
{
	struct rtc *r = calloc(1, sizeof(*r));
	int rc;

	if (!r)
		return vm__err(ENOMEM, "out of memory for the RTC");
	pthread_mutex_init(&r->lock, NULL);
	r->ram[0x0a] = 0x26;   /* 32.768 kHz time base, 1024 Hz rate */
	r->ram[0x0b] = 0x02;   /* 24-hour, BCD, no interrupts */
	if ((rc = vm__add_cleanup(vm, rtc_free, r)) < 0) {
		rtc_free(r);
		return rc;
	}
	return bus__register(&vm->pio, 0x70, 2, rtc_io, r, "rtc");
}
