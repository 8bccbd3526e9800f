/* fuzz/file.c - what the targets share (see fuzz.h): the input as a
 * file, and the AVD header checksum put right. */
#include "fuzz/fuzz.h"
#include "avd.h"
#include "crc32c.h"

#include <stdio.h>
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
