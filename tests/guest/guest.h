/* guest.h - what the test guest's files share. */
#ifndef TESTS_GUEST_H
#define TESTS_GUEST_H

#include <stdint.h>

void guest_puts(const char *s);
void guest_putx(uint64_t v);
void guest_virtio_blk(void);
void guest_main(const uint8_t *zero_page);

#endif
