/*
 * writer.h - streaming image writers: the destination side of convert.
 *
 * Some formats cannot be written at random (VMDK streamOptimized appends
 * compressed grains in order) and all formats write fastest when the
 * whole image streams out front to back.  So conversion writes through
 * this interface instead of imgfmt__pwrite():
 *
 *   imgfmt__writer_open()   create the destination file (the caller passes
 *                           a temporary name and renames it when done)
 *   imgfmt__writer_encode() turn one chunk of guest data into its stored
 *                           form (compress, checksum).  Thread-safe, so
 *                           convert runs it on many threads at once.  A
 *                           format that stores guest data as it is (raw)
 *                           does not copy it: the chunk then points into
 *                           guest_data, which must stay valid and
 *                           unchanged until the chunk is put or
 *                           released.
 *   imgfmt__writer_put()    append encoded chunks, strictly in ascending
 *                           offset order, from one thread.  Ranges never
 *                           put read as zeros (or as the backing file).
 *   imgfmt__writer_finish() write the metadata, fsync, free the writer.
 *   imgfmt__writer_abort()  free the writer; the caller unlinks the file.
 *
 * A chunk is imgfmt__writer_chunk_size() bytes at an offset that is a
 * multiple of it (the last chunk of the disk may be shorter).
 */
#ifndef IMGFMT_WRITER_H
#define IMGFMT_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "imgfmt.h"

struct imgfmt_writer_opts {
	const char *format;         /* "avd", "raw", "qcow2", "vmdk", "vhd" */
	const char *subformat;      /* NULL: the format's default; or
	                               "monolithicSparse", "streamOptimized",
	                               "dynamic", "fixed" */
	uint64_t size;              /* virtual size */
	uint32_t cluster_size;      /* 0: the format's default */
	int compress;               /* store chunks compressed */
	int compress_level;         /* 0: the codec's default */
	const char *compression_type; /* qcow2: "zlib" (default) or "zstd" */
	const char *backing_file;   /* NULL: none */
	const char *backing_format;
	const uint8_t *uuid;        /* 16 bytes, NULL: random */
	int replace;                /* finish replaces a file already at the
	                               path (else it fails with EEXIST and
	                               leaves that file alone) */
};

typedef struct imgfmt_writer imgfmt_writer;

/* One chunk on its way from encode() to put(). */
struct imgfmt_chunk {
	uint64_t offset;       /* virtual offset of the chunk */
	uint32_t length;       /* virtual bytes it covers */
	void *data;            /* stored form (owned by the chunk) */
	size_t data_len;
	uint32_t flags;        /* driver-private, e.g. "compressed" */
	uint32_t checksum;     /* driver-private */
	int borrowed;          /* data points into the caller's guest data
	                          (release does not free it) */
};

/* The image is written to a file that gets the name `path` only when
 * imgfmt__writer_finish succeeds (common/durable.h: unnamed where the
 * file system allows), so a failed, aborted or killed writer leaves
 * nothing; a VMDK's descriptor names `path` as its extent. */
int imgfmt__writer_open(const char *path, const struct imgfmt_writer_opts *o,
			imgfmt_writer **out);
uint32_t imgfmt__writer_chunk_size(const imgfmt_writer *w);
int imgfmt__writer_encode(imgfmt_writer *w, const void *guest_data,
			  uint64_t offset, uint32_t length,
			  struct imgfmt_chunk *chunk);
int imgfmt__writer_put(imgfmt_writer *w, struct imgfmt_chunk *chunk);
void imgfmt__chunk_release(struct imgfmt_chunk *chunk);
int imgfmt__writer_finish(imgfmt_writer *w);
void imgfmt__writer_abort(imgfmt_writer *w);

#endif /* IMGFMT_WRITER_H */
