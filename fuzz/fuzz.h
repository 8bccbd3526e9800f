/* fuzz/fuzz.h - what the fuzz targets share.
 *
 * Each target is one LLVMFuzzerTestOneInput() over one kind of hostile
 * input (an image, a package, a text format).  The same source links
 * two ways: with clang's libFuzzer (`make fuzz`, coverage-guided, run by
 * hand) and with fuzz/replay.c's main() (built by `make`, run by
 * `make check` over fuzz/corpus/), so every input that once crashed a
 * target stays a regression test on machines without clang. */
#ifndef FUZZ_FUZZ_H
#define FUZZ_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The input as an anonymous file (memfd): returns its fd and writes a
 * path that opens it ("/proc/self/fd/N") into `path`; -1 on failure.
 * Libraries open images and packages by path, as users give them. */
int fuzz__file(const uint8_t *data, size_t size, char path[64]);

/* Put right the CRC-32C of the AVD header at `h` (AVD_HEADER_SIZE bytes
 * that start with the magic), as the writer does: the header is read
 * before anything else is checked, and a mutation almost never keeps its
 * checksum right by chance. */
void fuzz__fix_avd_header(uint8_t *h);

struct guest_mem;
struct imgfmt_image;
struct virtio_dev;

/* A virtio device over guest memory mem, as the monitor makes them:
 * kind 0 virtio-blk on a 1 MiB raw disk (read-only if asked; *img is
 * the image to close after the device), 1 virtio-rng, 2 virtio-net over
 * a socketpair (*peer is the other end, to close).  NULL on failure. */
struct virtio_dev *fuzz__virtio_device(unsigned kind, int read_only,
				       const struct guest_mem *mem,
				       struct imgfmt_image **img, int *peer);

#endif /* FUZZ_FUZZ_H */
