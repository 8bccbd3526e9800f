/* fuzz/file.c - what the targets share (see fuzz.h): the input as a
 * file, the AVD header checksum put right, virtio devices to drive. */
#include "fuzz/fuzz.h"
#include "avd.h"
#include "crc32c.h"
#include "imgfmt.h"
#include "runtime/virtio/net.h"
#include "runtime/virtio/virtio.h"

#include <stdio.h>
#include <sys/socket.h>
#include <sys/mman.h>
#include <unistd.h>

int fuzz__file(const uint8_t *data, size_t size, char path[64])
{
	int fd = memfd_create("fuzz-input", MFD_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t done = 0;
	while (done < size) {
		ssize_t n = pwrite(fd, data + done, size - done, (off_t)done);
		if (n <= 0) {
			close(fd);
			return -1;
		}
		done += (size_t)n;
	}
	snprintf(path, 64, "/proc/self/fd/%d", fd);
	return fd;
}

void fuzz__fix_avd_header(uint8_t *h)
{
	memset(h + AVD_H_CRC, 0, 4);
	avd_put32(h + AVD_H_CRC, crc32c(0, h, AVD_HEADER_SIZE));
}

struct virtio_dev *fuzz__virtio_device(unsigned kind, int read_only,
				       const struct guest_mem *mem,
				       imgfmt_image **img, int *peer)
{
	static const uint8_t zeros[4096];
	struct virtio_dev *vdev = NULL;
	char path[64];

	if (kind == 0) {
		int fd = fuzz__file(zeros, sizeof zeros, path);
		if (fd < 0)
			return NULL;
		struct imgfmt_open_opts o = {
			.flags = read_only ? 0 : IMGFMT_OPEN_RDWR,
			.format = "raw",
		};
		struct virtio_blk_opts bo = { .read_only = read_only };
		if (ftruncate(fd, 1 << 20) == 0 &&
		    imgfmt__open(path, &o, img) == 0 &&
		    virtio_blk__new(*img, &bo, mem, &vdev) < 0) {
			imgfmt__close(*img);
			*img = NULL;
		}
		close(fd);
	} else if (kind == 1) {
		virtio_rng__new(mem, &vdev);
	} else {
		int sv[2];
		struct net_backend *be;
		struct virtio_net_opts no = { .queue_size = 0 };
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
			return NULL;
		if (net_stream__new(sv[0], &be) == 0 &&
		    virtio_net__new(be, &no, mem, &vdev) == 0)
			*peer = sv[1];
		else
			close(sv[1]);
	}
	return vdev;
}
