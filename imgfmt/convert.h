/*
 * convert.h - the image conversion engine behind `appliance img convert`.
 *
 * imgfmt__convert() copies the guest-visible content of an open image (its
 * backing chain flattened) into a new image of any writable format:
 *
 *   - ranges the source maps as zero (or unallocated with nothing below)
 *     are never read, and chunks that read as all zeros are not written,
 *     so the destination stays sparse;
 *   - chunks are read and encoded (compressed) on `threads` worker
 *     threads and appended in order by the calling thread (the streaming
 *     writer's contract, writer.h);
 *   - the destination is written under a temporary name next to it
 *     (DST.tmp-XXXXXX), fsynced, and renamed into place only when
 *     complete, so DST never exists half written; any failure removes the
 *     temporary file.
 */
#ifndef IMGFMT_CONVERT_H
#define IMGFMT_CONVERT_H

#include <stdint.h>

#include "imgfmt.h"
#include "writer.h"

/* Called from the writing thread after each chunk: bytes of the virtual
 * disk done so far, out of total. */
typedef void (*imgfmt_progress_fn)(uint64_t done, uint64_t total, void *arg);

struct imgfmt_convert_opts {
	int threads;               /* worker threads; 0: one per CPU */
	int overwrite;             /* replace an existing destination */
	imgfmt_progress_fn progress; /* NULL: none */
	void *progress_arg;
};

struct imgfmt_convert_stats {
	uint64_t chunks_written;   /* chunks stored in the destination */
	uint64_t chunks_skipped;   /* chunks left sparse (zero) */
	uint64_t bytes_read;       /* bytes read from the source */
};

/* wo->size 0: the source's virtual size.  stats may be NULL. */
int imgfmt__convert(imgfmt_image *src, const char *dst_path,
		    const struct imgfmt_writer_opts *wo,
		    const struct imgfmt_convert_opts *co,
		    struct imgfmt_convert_stats *stats);

#endif /* IMGFMT_CONVERT_H */
