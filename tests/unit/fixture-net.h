/*
 * fixture-net.h - a virtio-net device driven by the test-side driver
 * (test_virtio_driver.h) with its receive queue 0 and transmit queue 1,
 * shared by the stream-backend (test_virtio_net) and tap-backend
 * (test_net_tap) tests.
 */
#ifndef TEST_FIXTURE_NET_H
#define TEST_FIXTURE_NET_H

#include "runtime/virtio/net.h"
#include "test_virtio_driver.h"

/* A virtio-net device on `be` in d's guest RAM with options `o` (NULL:
 * 16-entry queues, a random MAC).  Fails the test with virtio's message
 * if the device cannot be made. */
struct virtio_dev *fx_net_new(struct tdrv *d, struct net_backend *be,
			      const struct virtio_net_opts *o);
/* The driver's side: 16-entry rings for both queues laid out in d's RAM
 * (*rxq, *txq take copies of d) and attached to the device. */
void fx_net_driver_up(struct tdrv *d, struct tdrv *rxq, struct tdrv *txq,
		      struct virtio_dev *vdev);
/* Wait for a completion written by a device thread: 1, or 0 if none
 * came.  The bound only turns a hang into a failure; it is not a
 * performance threshold. */
int fx_wait_used(struct tdrv *q, uint32_t *id, uint32_t *len);

#endif /* TEST_FIXTURE_NET_H */
