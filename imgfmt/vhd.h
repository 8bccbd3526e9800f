/*
 * vhd.h - what of the VHD driver others use (the format: imgfmt/vhd.md).
 */
#ifndef IMGFMT_VHD_H
#define IMGFMT_VHD_H

#include <stddef.h>
#include <stdint.h>

/* The footer and dynamic header checksum: one's complement of the byte
 * sum of len bytes at p, with the 4-byte checksum field at csum_off
 * taken as zero.  (Stored big-endian at csum_off.) */
uint32_t vhd__checksum(const uint8_t *p, size_t len, size_t csum_off);

#endif /* IMGFMT_VHD_H */
