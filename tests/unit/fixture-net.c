/*
 * fixture-net.c - see fixture-net.h.  Linked into every unit test (the
 * Makefile's TEST_HELPER_SRCS).
 */
#include <unistd.h>

#include "fixture-net.h"

struct virtio_dev *fx_net_new(struct tdrv *d, struct net_backend *be,
			      const struct virtio_net_opts *o)
{
	struct virtio_net_opts def = { .queue_size = 16 };
	struct virtio_dev *vdev = NULL;

	ck_assert_msg(virtio_net__new(be, o ? o : &def, &d->mem, &vdev) == 0,
		      "%s", virtio__error());
	return vdev;
}

void fx_net_driver_up(struct tdrv *d, struct tdrv *rxq, struct tdrv *txq,
		      struct virtio_dev *vdev)
{
	td_rings(d, 16);
	*rxq = *d;
	td_rings(d, 16);
	*txq = *d;
	td_attach(rxq, vdev, 0, 0);
	td_attach(txq, vdev, 1, 0);
}

int fx_wait_used(struct tdrv *q, uint32_t *id, uint32_t *len)
{
	for (int i = 0; i < 20000; i++) {
		if (td_used(q, id, len))
			return 1;
		usleep(500);
	}
	return 0;
}
