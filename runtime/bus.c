/*
 * bus.c - port-I/O and MMIO dispatch.
 *
 * Devices claim disjoint address ranges; a vCPU exit for an address is
 * handed to the range that covers it.  A PC bus with nothing at an
 * address floats high, so unclaimed reads return all ones and unclaimed
 * writes vanish: a guest probing for hardware we do not have (a second
 * UART, a parallel port) sees "nothing there" instead of crashing the
 * monitor.  The table is small and sorted; lookups binary-search it under
 * a read lock so that vCPUs never serialise on each other, while PCI BAR
 * moves take the write lock.
 */
#include <errno.h>
#include <string.h>

#include "runtime/vm.h"

int bus__init(struct bus *b, const char *name)
{
	memset(b, 0, sizeof(*b));
	pthread_rwlock_init(&b->lock, NULL);
	b->name = name;
	return 0;
}

void bus__destroy(struct bus *b)
{
	pthread_rwlock_destroy(&b->lock);
	b->nr = 0;
}

int bus__register(struct bus *b, uint64_t base, uint64_t len, bus_io_fn fn,
		  void *opaque, const char *name)
{
	int rc = 0, at;

	if (len == 0 || base + len < base || !fn)
		return vm__err(EINVAL, "%s bus: bad range 0x%llx+0x%llx for %s",
			       b->name, (unsigned long long)base,
			       (unsigned long long)len, name ? name : "?");
	pthread_rwlock_wrlock(&b->lock);
	if (b->nr == BUS_MAX_RANGES) {
		rc = vm__err(ENOSPC, "%s bus: no room for %s", b->name,
			     name ? name : "?");
		goto out;
	}
	for (at = 0; at < b->nr && b->r[at].base < base; at++)
		;
	/* Disjoint from the neighbours on both sides. */
	if ((at > 0 && b->r[at - 1].base + b->r[at - 1].len > base) ||
	    (at < b->nr && base + len > b->r[at].base)) {
		const struct bus_range *o =
			(at > 0 && b->r[at - 1].base + b->r[at - 1].len > base)
			? &b->r[at - 1] : &b->r[at];
		rc = vm__err(EBUSY, "%s bus: %s at 0x%llx+0x%llx overlaps %s",
			     b->name, name ? name : "?",
			     (unsigned long long)base, (unsigned long long)len,
			     o->name ? o->name : "?");
		goto out;
	}
	memmove(&b->r[at + 1], &b->r[at], (size_t)(b->nr - at) * sizeof(b->r[0]));
	b->r[at] = (struct bus_range){ base, len, fn, opaque, name };
	b->nr++;
out:
	pthread_rwlock_unlock(&b->lock);
	return rc;
}

int bus__unregister(struct bus *b, uint64_t base)
{
	int rc = vm__err(ENOENT, "%s bus: nothing registered at 0x%llx",
			 b->name, (unsigned long long)base);

	pthread_rwlock_wrlock(&b->lock);
	for (int i = 0; i < b->nr; i++) {
		if (b->r[i].base == base) {
			memmove(&b->r[i], &b->r[i + 1],
				(size_t)(b->nr - i - 1) * sizeof(b->r[0]));
			b->nr--;
			rc = 0;
			break;
		}
	}
	pthread_rwlock_unlock(&b->lock);
	return rc;
}

bool bus__access(struct bus *b, uint64_t addr, uint8_t *data, uint32_t len,
		 bool is_write)
{
	int lo = 0, hi;

	pthread_rwlock_rdlock(&b->lock);
	hi = b->nr - 1;
	while (lo <= hi) {
		int mid = lo + (hi - lo) / 2;
		const struct bus_range *r = &b->r[mid];
		if (addr < r->base) {
			hi = mid - 1;
		} else if (addr - r->base >= r->len) {
			lo = mid + 1;
		} else {
			/* An access straddling the end of a range is still the
			 * device's: it sees the offset and decides. */
			bus_io_fn fn = r->fn;
			void *opaque = r->opaque;
			uint64_t off = addr - r->base;
			pthread_rwlock_unlock(&b->lock);
			fn(opaque, off, data, len, is_write);
			return true;
		}
	}
	pthread_rwlock_unlock(&b->lock);
	__atomic_add_fetch(&b->unclaimed, 1, __ATOMIC_RELAXED);
	if (!is_write)
		memset(data, 0xff, len);
	return false;
}
