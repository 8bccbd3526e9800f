/*
 * download-sink.h - where a download's bytes go: a file, written, hashed
 * and pushed to writeback on a second thread.
 *
 * The thread that receives (libcurl's write callback) only copies each
 * chunk into a 1 MiB staging buffer; full buffers go to the sink's
 * thread, which writes each with one call, hashes it from memory
 * (SHA-256) and starts its writeback.  Compared with writing curl's
 * 16 KiB chunks one by one and hashing the file back from the page cache,
 * that is 64 times fewer write calls and no second copy of the data, and
 * the receiving thread is free to receive.
 *
 * Not thread-safe on the producing side: one receiving thread per sink.
 */
#ifndef APPLIANCES_DOWNLOAD_SINK_H
#define APPLIANCES_DOWNLOAD_SINK_H

#include <stddef.h>
#include <stdint.h>

struct download_sink;

/* A sink appending to fd at offset `have`, whose bytes [0, have) (what an
 * earlier attempt left) are hashed first, so the digest covers the whole
 * file.  0, or an errno (ENOMEM, or what pthread_create gave). */
int download_sink__start(int fd, uint64_t have, struct download_sink **out);

/* Take n received bytes.  0, or the errno of an earlier write or read
 * that failed: the caller then stops the transfer. */
int download_sink__put(struct download_sink *s, const void *p, size_t n);

/* Write out what is staged, wait for the sink's thread and free the sink.
 * Fills sha (of the whole file, prefix included) and returns 0, or
 * returns the first errno (sha is then meaningless). */
int download_sink__finish(struct download_sink *s, uint8_t sha[32]);

#endif
