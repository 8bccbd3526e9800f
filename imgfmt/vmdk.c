/*
 * vmdk.c - VMware VMDK: hosted sparse extents ("KDMV": monolithicSparse,
 * streamOptimized, twoGbMaxExtentSparse pieces), text descriptors with
 * FLAT / SPARSE / ZERO extents (monolithicFlat, twoGbMaxExtent*), reading
 * and streaming write of monolithicSparse and streamOptimized.
 * On-disk layout and our rules: imgfmt/vmdk.md.
 *
 * A disk is a list of extents laid end to end.  A sparse extent maps
 * grains (64 KiB by default) through a grain directory (GD) of grain
 * tables (GTs) of 32-bit sector numbers; streamOptimized extents store
 * each grain deflated behind a 12-byte marker and may keep the GD at the
 * end of the file (header gdOffset = GD_AT_END, the real header is the
 * footer 1536 bytes before the end).  The redundant GD is ignored on read
 * (qemu ignores it too, and the primary is what both tools write first);
 * check compares it with the primary.
 *
 * Everything from the file is hostile.  The descriptor is capped at 1 MiB
 * and parsed strictly line by line (unknown syntax is an error, not
 * skipped); extent file names must be relative and free of "..", and are
 * resolved against the descriptor's directory.  Every table is checked to
 * lie inside its file before it is read, every allocation sized from the
 * file is capped, and every grain pointer is checked before it is used.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "driver.h"
#include "zcache.h"

#define SECTOR 512ull
#define VMDK_MAGIC 0x564d444bu /* "KDMV" read little-endian */
#define VMDK_GD_AT_END (~0ull)
#define VMDK_FLAG_NL_TEST (1u << 0)
#define VMDK_FLAG_RGD (1u << 1)
#define VMDK_FLAG_ZERO_GRAIN (1u << 2)
#define VMDK_FLAG_COMPRESS (1u << 16)
#define VMDK_FLAG_MARKERS (1u << 17)
#define VMDK_COMPRESS_DEFLATE 1
#define VMDK_MARKER_EOS 0
#define VMDK_MARKER_GT 1
#define VMDK_MARKER_GD 2
#define VMDK_MARKER_FOOTER 3

#define VMDK_DESC_MAX (1u << 20)      /* descriptor text we accept */
#define VMDK_MAX_EXTENTS 4096
#define VMDK_MAX_GRAIN (2u << 20)     /* bytes */
#define VMDK_MAX_GTES 4096
/* 64 TiB of 64 KiB grains in 512-entry tables needs an 8 MiB GD. */
#define VMDK_MAX_GD_BYTES (16u << 20)
#define VMDK_DEFAULT_GRAIN (64u << 10)
#define VMDK_GTES 512                 /* what we write (and VMware) */
#define VMDK_DESC_SECTORS 20          /* embedded descriptor we write */
/* A grain table entry is a 32-bit sector number, so a sparse file cannot
 * grow past 2 TiB; that is also VMware's limit for these subformats. */
#define VMDK_WRITE_MAX (2ull << 40)

static uint32_t le32(const uint8_t *p)
{
	return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
	return le32(p) | (uint64_t)le32(p + 4) << 32;
}

static void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static void put_le64(uint8_t *p, uint64_t v)
{
	put_le32(p, (uint32_t)v);
	put_le32(p + 4, (uint32_t)(v >> 32));
}

/* ---- reader state ---------------------------------------------------- */

enum { EXT_FLAT, EXT_SPARSE, EXT_ZERO };

struct vmdk_extent {
	int type;
	int fd;                /* -1: the image's own file */
	uint64_t own_base;     /* own file: where the extent starts (an OVA
	                          member); 0 otherwise */
	uint64_t file_length;  /* bytes of the extent's file (own file: of
	                          the member or of the image) */
	char *name;            /* for messages */
	uint64_t start, size;  /* virtual bytes covered */
	uint64_t flat_offset;  /* FLAT: byte offset in the file */

	/* SPARSE */
	uint32_t version, flags;
	uint64_t grain;        /* bytes */
	uint32_t gtes;         /* entries per grain table */
	uint64_t gd_entries;
	uint32_t *gd;          /* host order, sector numbers */
	uint64_t overhead;     /* bytes before the first grain */
	int compressed, markers, zero_grain;
	uint64_t desc_offset, desc_size; /* embedded descriptor, bytes */
	uint64_t rgd_sector;   /* redundant GD, 0: none */
	uint32_t *rgd;         /* read-write: the redundant GD, host order */

	uint32_t **gt;         /* lazily loaded grain tables, host order,
	                          guarded by vmdk.lock */
};

struct vmdk {
	struct vmdk_extent *ext;
	size_t n_ext;
	char create_type[32];
	/* One budget for the grain tables of all extents (a split disk
	 * may have thousands), and one lock for the cache. */
	pthread_mutex_t lock;
	size_t cache_budget, cached;
	/* Loaded tables, oldest first (a ring), for FIFO eviction: convert
	 * and map walk the disk in order, so the oldest is the coldest. */
	struct vmdk_cached { struct vmdk_extent *e; uint64_t gdi; } *ring;
	size_t ring_head, ring_len, ring_cap;
	/* Read-write monolithicSparse: new grains go at alloc_end. */
	pthread_mutex_t alloc_lock;
	uint64_t alloc_end;
	/* Recently inflated grains of a single compressed extent
	 * (streamOptimized, zcache.h; NULL: none). */
	struct imgfmt_zcache *zc;
};

/* The extent file's length: read atomically, because a read-write
 * monolithicSparse grows while other threads read. */
static uint64_t ext_len(const struct vmdk_extent *e)
{
	return __atomic_load_n(&e->file_length, __ATOMIC_ACQUIRE);
}

/* Read `len` bytes at `off` of an extent's file, bounds-checked. */
static int vmdk__ext_read(imgfmt_image *img, struct vmdk_extent *e, void *buf,
			  size_t len, uint64_t off, const char *what)
{
	uint8_t *p = buf;
	uint64_t flen = ext_len(e);
	/* The image's own file: our own pread, not imgfmt_file_read, whose
	 * bound (img->file_length) a writer moves. */
	int fd = e->fd < 0 ? img->fd : e->fd;
	uint64_t base = e->fd < 0 ? img->base + e->own_base : 0;

	if (off > flen || len > flen - off)
		return imgfmt_err(EIO, "%s: %s at offset %llu (+%zu) is past "
				  "the end of extent %s (%llu bytes)",
				  img->path, what, (unsigned long long)off, len,
				  e->name, (unsigned long long)flen);
	while (len > 0) {
		ssize_t n = pread(fd, p, len, (off_t)(base + off));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return imgfmt_err(n < 0 ? errno : EIO, "%s: reading %s "
					  "of extent %s failed", img->path,
					  what, e->name);
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

/* ---- descriptor ------------------------------------------------------ */

struct desc_extent {
	int type;
	uint64_t sectors;
	uint64_t offset;       /* FLAT: sectors */
	char file[1024];
};

struct desc {
	char create_type[32];
	char parent_hint[1024];
	uint32_t parent_cid;
	int has_parent_cid;
	struct desc_extent *ext;
	size_t n_ext, cap_ext;
};

/* A printable excerpt of a bad line for the error message. */
static const char *desc__excerpt(const char *s, size_t len, char *out,
				 size_t out_len)
{
	size_t j = 0;

	for (size_t i = 0; i < len && j + 1 < out_len && i < 60; i++)
		out[j++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	out[j] = '\0';
	return out;
}

static int desc__u64(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;

	if (len == 0 || len > 19)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v;
	return 0;
}

static int desc__hex32(const char *s, size_t len, uint32_t *out)
{
	uint32_t v = 0;

	if (len == 0 || len > 8)
		return -1;
	for (size_t i = 0; i < len; i++) {
		int d;
		if (s[i] >= '0' && s[i] <= '9')
			d = s[i] - '0';
		else if (s[i] >= 'a' && s[i] <= 'f')
			d = s[i] - 'a' + 10;
		else if (s[i] >= 'A' && s[i] <= 'F')
			d = s[i] - 'A' + 10;
		else
			return -1;
		v = v << 4 | (uint32_t)d;
	}
	*out = v;
	return 0;
}

/* Copy a quoted value's contents (no control characters, no quotes: the
 * caller has already cut at the closing quote). */
static int desc__copy(char *dst, size_t dst_len, const char *s, size_t len)
{
	if (len >= dst_len)
		return -1;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return -1;
	memcpy(dst, s, len);
	dst[len] = '\0';
	return 0;
}

/* An extent file name: relative, no "..", no control characters. */
static int desc__safe_name(const char *name)
{
	const char *p = name;

	if (!name[0] || name[0] == '/')
		return 0;
	while (*p) {
		const char *slash = strchr(p, '/');
		size_t n = slash ? (size_t)(slash - p) : strlen(p);
		if (n == 2 && p[0] == '.' && p[1] == '.')
			return 0;
		p += n;
		if (*p == '/')
			p++;
	}
	return 1;
}

static int is_space(char c)
{
	return c == ' ' || c == '\t';
}

/* Next whitespace-separated token of [*s, end); quoted tokens keep their
 * quotes.  Returns its length, 0 at the end, -1 on an unclosed quote. */
static long desc__token(const char **s, const char *end, const char **tok)
{
	const char *p = *s;

	while (p < end && is_space(*p))
		p++;
	*tok = p;
	if (p == end)
		return 0;
	if (*p == '"') {
		const char *q = memchr(p + 1, '"', (size_t)(end - p - 1));
		if (!q)
			return -1;
		*s = q + 1;
		if (*s < end && !is_space(**s))
			return -1; /* "a"b: junk glued to a quoted token */
		return q + 1 - p;
	}
	while (p < end && !is_space(*p) && *p != '"')
		p++;
	if (p < end && *p == '"')
		return -1;
	*s = p;
	return p - *tok;
}

static int desc__extent_line(imgfmt_image *img, struct desc *d, int lineno,
			     const char *s, const char *end)
{
	const char *tok[6];
	long len[6];
	int n = 0;
	struct desc_extent *x;

	for (;;) {
		const char *t;
		long l = desc__token(&s, end, &t);
		if (l < 0)
			return imgfmt_err(EINVAL, "%s: descriptor line %d: "
					  "unbalanced or misplaced quote",
					  img->path, lineno);
		if (l == 0)
			break;
		if (n == 6)
			return imgfmt_err(EINVAL, "%s: descriptor line %d: "
					  "too many fields in the extent line",
					  img->path, lineno);
		tok[n] = t;
		len[n++] = l;
	}
	if (d->n_ext >= VMDK_MAX_EXTENTS)
		return imgfmt_err(EINVAL, "%s: descriptor has more than %d "
				  "extents", img->path, VMDK_MAX_EXTENTS);
	if (d->n_ext == d->cap_ext) {
		size_t nc = d->cap_ext ? d->cap_ext * 2 : 4;
		struct desc_extent *ne = realloc(d->ext, nc * sizeof(*ne));
		if (!ne)
			return imgfmt_err(ENOMEM, "out of memory");
		d->ext = ne;
		d->cap_ext = nc;
	}
	x = &d->ext[d->n_ext];
	memset(x, 0, sizeof(*x));
	if (n < 3 || desc__u64(tok[1], (size_t)len[1], &x->sectors) < 0 ||
	    x->sectors == 0)
		return imgfmt_err(EINVAL, "%s: descriptor line %d: extent size "
				  "is not a positive sector count", img->path,
				  lineno);
#define TOK_IS(i, lit) (len[i] == (long)strlen(lit) && \
			memcmp(tok[i], lit, strlen(lit)) == 0)
	if (TOK_IS(2, "FLAT") || TOK_IS(2, "VMFS")) {
		x->type = EXT_FLAT;
	} else if (TOK_IS(2, "SPARSE")) {
		x->type = EXT_SPARSE;
	} else if (TOK_IS(2, "ZERO")) {
		x->type = EXT_ZERO;
	} else {
		char ex[64];
		return imgfmt_err(ENOTSUP, "%s: descriptor line %d: extent "
				  "type '%s' is not supported", img->path,
				  lineno, desc__excerpt(tok[2], (size_t)len[2],
							ex, sizeof(ex)));
	}
#undef TOK_IS
	if (x->type == EXT_ZERO) {
		if (n != 3)
			return imgfmt_err(EINVAL, "%s: descriptor line %d: a "
					  "ZERO extent takes no file name",
					  img->path, lineno);
	} else {
		if (n < 4 || tok[3][0] != '"')
			return imgfmt_err(EINVAL, "%s: descriptor line %d: "
					  "extent file name must be quoted",
					  img->path, lineno);
		if (desc__copy(x->file, sizeof(x->file), tok[3] + 1,
			       (size_t)len[3] - 2) < 0)
			return imgfmt_err(EINVAL, "%s: descriptor line %d: "
					  "extent file name is too long or "
					  "holds control characters",
					  img->path, lineno);
		if (!desc__safe_name(x->file))
			return imgfmt_err(EPERM, "%s: descriptor line %d: "
					  "extent file \"%s\" is absolute or "
					  "leaves the descriptor's directory "
					  "(\"..\"); refused", img->path,
					  lineno, x->file);
		if (x->type == EXT_FLAT) {
			if (n == 5 && desc__u64(tok[4], (size_t)len[4],
						&x->offset) < 0)
				return imgfmt_err(EINVAL, "%s: descriptor line "
						  "%d: bad FLAT extent offset",
						  img->path, lineno);
			if (n > 5)
				return imgfmt_err(EINVAL, "%s: descriptor line "
						  "%d: junk after the extent",
						  img->path, lineno);
		} else if (n != 4) {
			return imgfmt_err(EINVAL, "%s: descriptor line %d: junk "
					  "after the extent file name",
					  img->path, lineno);
		}
	}
	d->n_ext++;
	return 0;
}

static int desc__key_line(imgfmt_image *img, struct desc *d, int lineno,
			  const char *s, const char *end)
{
	const char *k = s, *v;
	size_t klen, vlen;
	int quoted = 0;
	char ex[64];

	while (s < end && (isalnum((unsigned char)*s) || *s == '.' ||
			   *s == '_'))
		s++;
	klen = (size_t)(s - k);
	while (s < end && is_space(*s))
		s++;
	if (klen == 0 || s == end || *s != '=')
		return imgfmt_err(EINVAL, "%s: descriptor line %d: cannot parse "
				  "'%s'", img->path, lineno,
				  desc__excerpt(k, (size_t)(end - k), ex,
						sizeof(ex)));
	s++;
	while (s < end && is_space(*s))
		s++;
	v = s;
	if (s < end && *s == '"') {
		const char *q = memchr(s + 1, '"', (size_t)(end - s - 1));
		if (!q || q + 1 != end)
			return imgfmt_err(EINVAL, "%s: descriptor line %d: value "
					  "of '%.*s' has unbalanced quotes or "
					  "text after the closing quote",
					  img->path, lineno, (int)klen, k);
		v = s + 1;
		vlen = (size_t)(q - v);
		quoted = 1;
	} else {
		vlen = (size_t)(end - s);
		for (size_t i = 0; i < vlen; i++)
			if (is_space(v[i]) || v[i] == '"')
				return imgfmt_err(EINVAL, "%s: descriptor line "
						  "%d: unquoted value of '%.*s' "
						  "holds spaces or quotes",
						  img->path, lineno, (int)klen,
						  k);
	}
#define KEY_IS(lit) (klen == strlen(lit) && memcmp(k, lit, klen) == 0)
	if (KEY_IS("createType")) {
		if (!quoted && vlen == 0)
			goto bad_value;
		if (desc__copy(d->create_type, sizeof(d->create_type), v,
			       vlen) < 0)
			goto bad_value;
	} else if (KEY_IS("parentFileNameHint")) {
		if (desc__copy(d->parent_hint, sizeof(d->parent_hint), v,
			       vlen) < 0)
			goto bad_value;
	} else if (KEY_IS("parentCID")) {
		if (desc__hex32(v, vlen, &d->parent_cid) < 0)
			goto bad_value;
		d->has_parent_cid = 1;
	} else if (KEY_IS("CID")) {
		uint32_t cid;
		if (desc__hex32(v, vlen, &cid) < 0)
			goto bad_value;
	} else if (KEY_IS("version")) {
		uint64_t ver;
		if (desc__u64(v, vlen, &ver) < 0 || ver < 1 || ver > 3)
			goto bad_value;
	} else {
		/* ddb.* and the like: syntax checked above, values unused. */
		for (size_t i = 0; i < vlen; i++)
			if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
				goto bad_value;
	}
#undef KEY_IS
	return 0;
bad_value:
	return imgfmt_err(EINVAL, "%s: descriptor line %d: bad value for "
			  "'%.*s'", img->path, lineno, (int)klen, k);
}

/* Parse descriptor text.  `embedded`: the descriptor inside a sparse
 * extent, whose extent lines describe the file itself and are skipped. */
static int desc__parse(imgfmt_image *img, const char *text, size_t len,
		       struct desc *d, int embedded)
{
	const char *p = text, *end = text + len;
	int lineno = 0;

	memset(d, 0, sizeof(*d));
	/* The text ends at its first NUL (embedded descriptors are padded
	 * with zeros to whole sectors). */
	const char *nul = memchr(text, '\0', len);
	if (nul)
		end = nul;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		const char *s = p;
		int r = 0;

		lineno++;
		p = nl ? nl + 1 : end;
		while (le > s && (le[-1] == '\r' || is_space(le[-1])))
			le--;
		while (s < le && is_space(*s))
			s++;
		if (s == le || *s == '#')
			continue;
		if ((le - s > 3 && memcmp(s, "RW", 2) == 0 && is_space(s[2])) ||
		    (le - s > 7 && memcmp(s, "RDONLY", 6) == 0 &&
		     is_space(s[6])) ||
		    (le - s > 9 && memcmp(s, "NOACCESS", 8) == 0 &&
		     is_space(s[8]))) {
			if (!embedded)
				r = desc__extent_line(img, d, lineno, s, le);
		} else {
			r = desc__key_line(img, d, lineno, s, le);
		}
		if (r < 0)
			return r;
	}
	return 0;
}

/* ---- sparse extents -------------------------------------------------- */

/* Parse a sparse extent header (512 bytes) into `e`, reading the footer
 * when the GD is at the end, then load and check the grain directory. */
static int vmdk__sparse_open(imgfmt_image *img, struct vmdk_extent *e,
			     const uint8_t *h, int is_footer)
{
	e->type = EXT_SPARSE;
	if (le32(h) != VMDK_MAGIC)
		return imgfmt_err(EINVAL, "%s: %s: no sparse extent magic "
				  "\"KDMV\"", img->path, e->name);
	e->version = le32(h + 4);
	e->flags = le32(h + 8);
	uint64_t capacity = le64(h + 12);
	uint64_t grain = le64(h + 20);
	e->desc_offset = le64(h + 28);
	e->desc_size = le64(h + 36);
	e->gtes = le32(h + 44);
	uint64_t gd_off = le64(h + 56);
	e->rgd_sector = (le32(h + 8) & VMDK_FLAG_RGD) ? le64(h + 48) : 0;
	uint64_t overhead = le64(h + 64);
	uint16_t algo = (uint16_t)(h[77] | h[78] << 8);

	if (e->version < 1 || e->version > 3)
		return imgfmt_err(ENOTSUP, "%s: %s: sparse extent version %u "
				  "is not supported", img->path, e->name,
				  e->version);
	if (capacity > IMGFMT_MAX_VIRTUAL_SIZE / SECTOR)
		return imgfmt_err(EFBIG, "%s: %s: capacity of %llu sectors is "
				  "larger than the supported maximum",
				  img->path, e->name,
				  (unsigned long long)capacity);
	if (grain == 0 || (grain & (grain - 1)) ||
	    grain > VMDK_MAX_GRAIN / SECTOR)
		return imgfmt_err(EINVAL, "%s: %s: grainSize %llu sectors is "
				  "not a power of two up to %u", img->path,
				  e->name, (unsigned long long)grain,
				  VMDK_MAX_GRAIN / 512);
	if (e->gtes == 0 || e->gtes > VMDK_MAX_GTES)
		return imgfmt_err(EINVAL, "%s: %s: numGTEsPerGT %u is out of "
				  "range (1..%d)", img->path, e->name, e->gtes,
				  VMDK_MAX_GTES);
	e->compressed = (e->flags & VMDK_FLAG_COMPRESS) != 0;
	e->markers = (e->flags & VMDK_FLAG_MARKERS) != 0;
	e->zero_grain = (e->flags & VMDK_FLAG_ZERO_GRAIN) != 0;
	if (e->compressed && algo != VMDK_COMPRESS_DEFLATE)
		return imgfmt_err(ENOTSUP, "%s: %s: compressAlgorithm %u is "
				  "not supported (only deflate)", img->path,
				  e->name, algo);
	e->grain = grain * SECTOR;
	e->overhead = overhead > ext_len(e) / SECTOR
		? ext_len(e) : overhead * SECTOR;
	e->size = capacity * SECTOR;

	if (gd_off == VMDK_GD_AT_END) {
		/* streamOptimized: the footer (marker, header, end-of-stream
		 * marker) ends the file and holds the real gdOffset. */
		uint8_t f[1536];
		int r;

		if (is_footer)
			return imgfmt_err(EINVAL, "%s: %s: footer gdOffset is "
					  "GD_AT_END as well", img->path,
					  e->name);
		if (ext_len(e) < 1536 + SECTOR)
			return imgfmt_err(EINVAL, "%s: %s: gdOffset is "
					  "GD_AT_END but the file is too short "
					  "for a footer", img->path, e->name);
		r = vmdk__ext_read(img, e, f, sizeof(f),
				   ext_len(e) - 1536, "footer");
		if (r < 0)
			return r;
		if (le32(f + 8) != 0 || le32(f + 12) != VMDK_MARKER_FOOTER ||
		    le64(f + 1024) != 0 || le32(f + 1032) != 0 ||
		    le32(f + 1036) != VMDK_MARKER_EOS)
			return imgfmt_err(EINVAL, "%s: %s: gdOffset is "
					  "GD_AT_END but there is no footer "
					  "and end-of-stream marker at the end "
					  "(truncated stream?)", img->path,
					  e->name);
		return vmdk__sparse_open(img, e, f + 512, 1);
	}

	e->gd_entries = (capacity + (uint64_t)e->gtes * grain - 1) /
			((uint64_t)e->gtes * grain);
	uint64_t gd_bytes = e->gd_entries * 4;
	if (gd_bytes > VMDK_MAX_GD_BYTES)
		return imgfmt_err(EFBIG, "%s: %s: grain directory of %llu "
				  "entries is larger than the %u MiB limit",
				  img->path, e->name,
				  (unsigned long long)e->gd_entries,
				  VMDK_MAX_GD_BYTES >> 20);
	if (gd_off > ext_len(e) / SECTOR ||
	    gd_bytes > ext_len(e) - gd_off * SECTOR)
		return imgfmt_err(EINVAL, "%s: %s: grain directory (gdOffset "
				  "%llu, %llu entries) is past the end of the "
				  "file", img->path, e->name,
				  (unsigned long long)gd_off,
				  (unsigned long long)e->gd_entries);
	e->gd = malloc(gd_bytes + 4);
	e->gt = calloc(e->gd_entries + 1, sizeof(*e->gt));
	if (!e->gd || !e->gt)
		return imgfmt_err(ENOMEM, "out of memory");
	int r = vmdk__ext_read(img, e, e->gd, gd_bytes, gd_off * SECTOR,
			       "grain directory");
	if (r < 0)
		return r;
	uint64_t gt_bytes = (uint64_t)e->gtes * 4;
	for (uint64_t i = 0; i < e->gd_entries; i++) {
		uint32_t s = le32((uint8_t *)&e->gd[i]);
		e->gd[i] = s;
		if (s && ((uint64_t)s * SECTOR > ext_len(e) ||
			  gt_bytes > ext_len(e) - (uint64_t)s * SECTOR))
			return imgfmt_err(EINVAL, "%s: %s: grain directory "
					  "entry %llu (grain table at sector "
					  "%u) is past the end of the file",
					  img->path, e->name,
					  (unsigned long long)i, s);
	}
	return 0;
}

/* The grain table entry of grain `gi` of a sparse extent. */
static int vmdk__gte(imgfmt_image *img, struct vmdk *v, struct vmdk_extent *e,
		     uint64_t gi, uint32_t *out)
{
	uint64_t gdi = gi / e->gtes, gti = gi % e->gtes;
	size_t gt_bytes = (size_t)e->gtes * 4;
	uint8_t raw[4];
	int r = 0;

	if (gdi >= e->gd_entries)
		return imgfmt_err(EIO, "%s: %s: grain %llu is outside the "
				  "grain directory", img->path, e->name,
				  (unsigned long long)gi);
	if (e->gd[gdi] == 0) {
		*out = 0;
		return 0;
	}
	uint64_t gt_off = (uint64_t)e->gd[gdi] * SECTOR;
	pthread_mutex_lock(&v->lock);
	if (!e->gt[gdi] && gt_bytes <= v->cache_budget) {
		uint32_t *t;

		/* Make room: evict the oldest tables. */
		while (v->ring_len && v->cached + gt_bytes > v->cache_budget) {
			struct vmdk_cached *c = &v->ring[v->ring_head];
			free(c->e->gt[c->gdi]);
			c->e->gt[c->gdi] = NULL;
			v->cached -= (size_t)c->e->gtes * 4;
			v->ring_head = (v->ring_head + 1) % v->ring_cap;
			v->ring_len--;
		}
		if (v->ring_len == v->ring_cap) {
			size_t nc = v->ring_cap ? v->ring_cap * 2 : 64;
			struct vmdk_cached *nr = malloc(nc * sizeof(*nr));
			if (!nr) {
				pthread_mutex_unlock(&v->lock);
				return imgfmt_err(ENOMEM, "out of memory");
			}
			for (size_t i = 0; i < v->ring_len; i++)
				nr[i] = v->ring[(v->ring_head + i) %
						v->ring_cap];
			free(v->ring);
			v->ring = nr;
			v->ring_cap = nc;
			v->ring_head = 0;
		}
		t = malloc(gt_bytes);
		if (!t) {
			r = imgfmt_err(ENOMEM, "out of memory");
		} else if ((r = vmdk__ext_read(img, e, t, gt_bytes, gt_off,
					       "grain table")) < 0) {
			free(t);
		} else {
			for (size_t i = 0; i < e->gtes; i++)
				t[i] = le32((uint8_t *)&t[i]);
			e->gt[gdi] = t;
			v->cached += gt_bytes;
			v->ring[(v->ring_head + v->ring_len) % v->ring_cap] =
				(struct vmdk_cached){ e, gdi };
			v->ring_len++;
		}
	}
	if (r == 0 && e->gt[gdi]) {
		*out = e->gt[gdi][gti];
		pthread_mutex_unlock(&v->lock);
		return 0;
	}
	pthread_mutex_unlock(&v->lock);
	if (r < 0)
		return r;
	/* Over the cache budget: read the one entry. */
	r = vmdk__ext_read(img, e, raw, 4, gt_off + gti * 4, "grain table");
	if (r == 0)
		*out = le32(raw);
	return r;
}

/* Inflate the compressed grain whose GT entry is `sector` into `out`
 * (e->grain bytes); returns the inflated length through *out_len. */
static int vmdk__read_compressed(imgfmt_image *img, struct vmdk_extent *e,
				 uint64_t gi, uint32_t sector, uint8_t *out,
				 size_t *out_len)
{
	uint64_t at = (uint64_t)sector * SECTOR;
	uint64_t cap = e->grain + e->grain / 8 + 1024; /* deflate worst case */
	uint64_t size;
	uint8_t mk[12];
	int r;

	if (at >= ext_len(e))
		return imgfmt_err(EIO, "%s: %s: grain table entry for grain "
				  "%llu (sector %u) points past the end of the "
				  "file", img->path, e->name,
				  (unsigned long long)gi, sector);
	if (e->markers) {
		r = vmdk__ext_read(img, e, mk, sizeof(mk), at, "grain marker");
		if (r < 0)
			return r;
		if (le64(mk) != gi * (e->grain / SECTOR))
			return imgfmt_err(EIO, "%s: %s: grain marker at sector "
					  "%u says lba %llu, expected %llu",
					  img->path, e->name, sector,
					  (unsigned long long)le64(mk),
					  (unsigned long long)(gi * (e->grain /
								     SECTOR)));
		size = le32(mk + 8);
		at += 12;
		if (size == 0 || size > cap || size > ext_len(e) - at)
			return imgfmt_err(EIO, "%s: %s: compressed grain at "
					  "sector %u claims %llu bytes, which "
					  "overruns the file or the grain",
					  img->path, e->name, sector,
					  (unsigned long long)size);
	} else {
		size = ext_len(e) - at;
		if (size > cap)
			size = cap;
	}
	/* This thread's scratch buffer and inflate stream (zcache.h):
	 * nothing allocated per grain. */
	uint8_t *in = imgfmt_zscratch(0, size);
	if (!in)
		return imgfmt_err(ENOMEM, "out of memory");
	r = vmdk__ext_read(img, e, in, size, at, "compressed grain");
	if (r < 0)
		return r;
	z_stream *zs = imgfmt_zlib_inflater(MAX_WBITS);
	if (!zs)
		return imgfmt_err(ENOMEM, "inflateInit failed");
	zs->next_in = in;
	zs->avail_in = (uInt)size;
	zs->next_out = out;
	zs->avail_out = (uInt)e->grain;
	int zr = inflate(zs, Z_FINISH);
	*out_len = e->grain - zs->avail_out;
	if (zr != Z_STREAM_END && !(zr == Z_BUF_ERROR && zs->avail_out == 0))
		return imgfmt_err(EIO, "%s: %s: compressed grain %llu at "
				  "sector %u does not inflate (zlib error %d)",
				  img->path, e->name, (unsigned long long)gi,
				  sector, zr);
	return 0;
}

/* A whole compressed grain, for imgfmt_zcache_read: it must inflate to
 * every byte of the extent it covers (a shorter one is damaged; the rest
 * of a last grain past the extent's end is zeroed). */
struct vmdk_zfill {
	imgfmt_image *img;
	struct vmdk_extent *e;
	uint64_t gi;
	uint32_t sector;
};

static int vmdk_zfill(void *arg, uint8_t *out)
{
	struct vmdk_zfill *f = arg;
	struct vmdk_extent *e = f->e;
	uint64_t need = e->size - f->gi * e->grain;
	size_t got = 0;
	int r;

	if (need > e->grain)
		need = e->grain;
	r = vmdk__read_compressed(f->img, e, f->gi, f->sector, out, &got);
	if (r == 0 && got < need)
		return imgfmt_err(EIO, "%s: %s: compressed grain %llu "
				  "inflates to %zu bytes, short of the %llu "
				  "it covers", f->img->path, e->name,
				  (unsigned long long)f->gi, got,
				  (unsigned long long)need);
	if (r == 0)
		memset(out + got, 0, e->grain - got);
	return r;
}

static int vmdk__read_sparse(imgfmt_image *img, struct vmdk *v,
			     struct vmdk_extent *e, uint8_t *p, size_t len,
			     uint64_t off)
{
	int r = 0;

	while (len > 0) {
		uint64_t gi = off / e->grain, in = off % e->grain;
		size_t n = (size_t)(e->grain - in);
		uint32_t s;

		if (n > len)
			n = len;
		r = vmdk__gte(img, v, e, gi, &s);
		if (r < 0)
			break;
		if (s == 0) {
			r = imgfmt_backing_read(img, p, n, e->start + off);
		} else if (s == 1 && e->zero_grain) {
			memset(p, 0, n);
		} else if (e->compressed) {
			/* Through the cache when there is one (a single
			 * compressed extent; imgfmt_zcache_read inflates into
			 * a per-thread buffer otherwise).  Keyed on where the
			 * grain is and which grain it is (check = gi + 1): a
			 * sector that two grain table entries share still has
			 * its marker checked against each grain.  Why the key
			 * cannot go stale: imgfmt_zcache_read and vmdk__open. */
			struct vmdk_zfill f = { img, e, gi, s };
			struct imgfmt_zkey k = { (uint64_t)s * SECTOR, 0,
						 gi + 1 };
			r = imgfmt_zcache_read(v->zc, e->grain, &k,
					       (uint32_t)in, (uint32_t)n, p,
					       vmdk_zfill, &f);
		} else {
			uint64_t at = (uint64_t)s * SECTOR + in;
			if (at > ext_len(e) || n > ext_len(e) - at)
				r = imgfmt_err(EIO, "%s: %s: grain table entry "
					       "for grain %llu (sector %u) "
					       "points past the end of the "
					       "file", img->path, e->name,
					       (unsigned long long)gi, s);
			else
				r = vmdk__ext_read(img, e, p, n, at, "grain");
		}
		if (r < 0)
			break;
		p += n;
		off += n;
		len -= n;
	}
	return r;
}

/* ---- open / close ---------------------------------------------------- */

static void vmdk__free(struct vmdk *v)
{
	if (!v)
		return;
	for (size_t i = 0; i < v->n_ext; i++) {
		struct vmdk_extent *e = &v->ext[i];
		if (e->gt) {
			for (uint64_t j = 0; j < e->gd_entries; j++)
				free(e->gt[j]);
			free(e->gt);
		}
		free(e->gd);
		free(e->rgd);
		free(e->name);
		if (e->fd >= 0)
			close(e->fd);
	}
	free(v->ext);
	free(v->ring);
	imgfmt_zcache_free(v->zc);
	pthread_mutex_destroy(&v->lock);
	pthread_mutex_destroy(&v->alloc_lock);
	free(v);
}

static void vmdk__close(imgfmt_image *img)
{
	vmdk__free(img->priv);
	img->priv = NULL;
}

/* ---- OVA: a tar whose first member is the .ovf ------------------------ */

#define OVA_MAX_MEMBERS 10000

/* A ustar header whose member name ends in ".ovf": the OVF specification
 * puts the descriptor first, so this is what an OVA starts with. */
static int ova__is_tar(const uint8_t *h, size_t len)
{
	size_t n;

	if (len < 512 || memcmp(h + 257, "ustar", 5) != 0)
		return 0;
	n = strnlen((const char *)h, 100);
	return n > 4 && strncasecmp((const char *)h + n - 4, ".ovf", 4) == 0;
}

/* A tar size field: octal ASCII, or base-256 when the top bit is set. */
static int ova__size(const uint8_t *f, uint64_t *out)
{
	uint64_t v = 0;
	size_t i = 0;

	if (f[0] & 0x80) {
		if (f[0] != 0x80 || f[1] || f[2] || f[3])
			return -1; /* negative or > 2^64 */
		for (i = 4; i < 12; i++)
			v = v << 8 | f[i];
		*out = v;
		return 0;
	}
	while (i < 12 && f[i] == ' ')
		i++;
	for (; i < 12 && f[i] >= '0' && f[i] <= '7'; i++)
		v = v << 3 | (uint64_t)(f[i] - '0');
	if (i < 12 && f[i] != '\0' && f[i] != ' ')
		return -1;
	*out = v;
	return 0;
}

/* The "size=" record of a pax extended header (overrides the next
 * member's size field, for members of 8 GiB and more). */
static int ova__pax_size(const char *p, size_t len, uint64_t *out)
{
	size_t pos = 0;

	while (pos < len) {
		uint64_t rl = 0;
		size_t i = pos;
		while (i < len && p[i] >= '0' && p[i] <= '9' && rl < len)
			rl = rl * 10 + (uint64_t)(p[i++] - '0');
		if (i == pos || i >= len || p[i] != ' ' || rl == 0 ||
		    rl > len - pos)
			return -1;
		const char *kv = p + i + 1;
		size_t kvlen = (size_t)(pos + rl - (i + 1));
		if (kvlen > 5 && memcmp(kv, "size=", 5) == 0) {
			uint64_t v = 0;
			size_t j = 5;
			for (; j < kvlen && kv[j] >= '0' && kv[j] <= '9'; j++) {
				if (v > (UINT64_MAX - 9) / 10)
					return -1;
				v = v * 10 + (uint64_t)(kv[j] - '0');
			}
			if (j != kvlen - 1 || kv[j] != '\n')
				return -1;
			*out = v;
		}
		pos += rl;
	}
	return 0;
}

/* Walk the tar to the first regular member named *.vmdk. */
static int ova__find_vmdk(imgfmt_image *img, uint64_t *at, uint64_t *len)
{
	uint64_t off = 0, pax_size = 0;
	int have_pax = 0;

	for (int m = 0; m < OVA_MAX_MEMBERS; m++) {
		uint8_t h[512];
		uint64_t size;
		int r;

		if (img->file_length - off < 512)
			break;
		r = imgfmt_file_read(img, h, sizeof(h), off, "OVA tar header");
		if (r < 0)
			return r;
		if (imgfmt_is_zero(h, sizeof(h)))
			break; /* end of archive */
		if (memcmp(h + 257, "ustar", 5) != 0 || ova__size(h + 124,
								  &size) < 0)
			return imgfmt_err(EINVAL, "%s: OVA tar header at %llu "
					  "is not a valid ustar header",
					  img->path, (unsigned long long)off);
		if (have_pax) {
			size = pax_size;
			have_pax = 0;
		}
		off += 512;
		if (size > img->file_length - off)
			return imgfmt_err(EINVAL, "%s: OVA member at %llu claims "
					  "%llu bytes, past the end of the file",
					  img->path,
					  (unsigned long long)(off - 512),
					  (unsigned long long)size);
		size_t n = strnlen((const char *)h, 100);
		char type = (char)h[156];
		if (type == 'x') {
			/* pax header for the next member: read its size. */
			if (size > 65536)
				return imgfmt_err(EINVAL, "%s: OVA pax header at "
						  "%llu is too large", img->path,
						  (unsigned long long)off);
			char *pax = malloc(size + 1);
			if (!pax)
				return imgfmt_err(ENOMEM, "out of memory");
			r = imgfmt_file_read(img, pax, size, off,
					     "OVA pax header");
			pax_size = 0;
			if (r == 0 && ova__pax_size(pax, size, &pax_size) < 0)
				r = imgfmt_err(EINVAL, "%s: OVA pax header at "
					       "%llu is malformed", img->path,
					       (unsigned long long)off);
			free(pax);
			if (r < 0)
				return r;
			have_pax = pax_size != 0;
		} else if ((type == '0' || type == '\0') && n > 5 &&
			   strncasecmp((const char *)h + n - 5, ".vmdk",
				       5) == 0) {
			*at = off;
			*len = size;
			return 0;
		}
		uint64_t padded = (size + 511) & ~511ull;
		if (padded > img->file_length - off)
			break;
		off += padded;
	}
	return imgfmt_err(ENOENT, "%s: the OVA holds no .vmdk disk",
			  img->path);
}

static int vmdk__probe(const uint8_t *head, size_t len, uint64_t file_size)
{
	(void)file_size;
	if (len >= 4 && le32(head) == VMDK_MAGIC)
		return 100;
	/* An OVA: below any real magic, above raw. */
	if (ova__is_tar(head, len))
		return 50;
	if (len >= 21 && memcmp(head, "# Disk DescriptorFile", 21) == 0)
		return 100;
	return 0;
}

static struct vmdk_extent *vmdk__add_extent(struct vmdk *v)
{
	struct vmdk_extent *e = &v->ext[v->n_ext++];

	memset(e, 0, sizeof(*e));
	e->fd = -1;
	return e;
}

/* Apply the descriptor's parent link (parentCID != ffffffff). */
static int vmdk__set_parent(imgfmt_image *img, const struct desc *d)
{
	if (!d->has_parent_cid || d->parent_cid == 0xffffffffu)
		return 0;
	if (!d->parent_hint[0])
		return imgfmt_err(EINVAL, "%s: descriptor has a parentCID but "
				  "no parentFileNameHint", img->path);
	img->backing_name = strdup(d->parent_hint);
	if (!img->backing_name)
		return imgfmt_err(ENOMEM, "out of memory");
	return 0;
}

static int vmdk__open_monolithic(imgfmt_image *img, struct vmdk *v,
				 const uint8_t *h, uint64_t base,
				 uint64_t length)
{
	struct vmdk_extent *e;
	struct desc d = { 0 };
	int r;

	v->ext = calloc(1, sizeof(*v->ext));
	if (!v->ext)
		return imgfmt_err(ENOMEM, "out of memory");
	e = vmdk__add_extent(v);
	e->own_base = base;
	e->file_length = length;
	e->name = strdup(img->path);
	if (!e->name)
		return imgfmt_err(ENOMEM, "out of memory");
	r = vmdk__sparse_open(img, e, h, 0);
	if (r < 0)
		return r;
	img->virtual_size = e->size;
	snprintf(v->create_type, sizeof(v->create_type), "%s",
		 e->compressed ? "streamOptimized" : "monolithicSparse");
	if (e->desc_offset == 0 || e->desc_size == 0)
		return 0;
	if (e->desc_size > VMDK_DESC_MAX / SECTOR)
		return imgfmt_err(EINVAL, "%s: embedded descriptor of %llu "
				  "sectors is larger than the 1 MiB limit",
				  img->path,
				  (unsigned long long)e->desc_size);
	if (e->desc_offset > ext_len(e) / SECTOR ||
	    e->desc_size * SECTOR > ext_len(e) - e->desc_offset * SECTOR)
		return imgfmt_err(EINVAL, "%s: embedded descriptor "
				  "(descriptorOffset %llu) is past the end of "
				  "the file", img->path,
				  (unsigned long long)e->desc_offset);
	size_t dlen = (size_t)(e->desc_size * SECTOR);
	char *text = malloc(dlen);
	if (!text)
		return imgfmt_err(ENOMEM, "out of memory");
	r = vmdk__ext_read(img, e, text, dlen, e->desc_offset * SECTOR,
			   "embedded descriptor");
	if (r == 0)
		r = desc__parse(img, text, dlen, &d, 1);
	free(text);
	if (r == 0 && d.create_type[0])
		snprintf(v->create_type, sizeof(v->create_type), "%s",
			 d.create_type);
	if (r == 0)
		r = vmdk__set_parent(img, &d);
	free(d.ext);
	return r;
}

static int vmdk__open_extent_file(imgfmt_image *img, struct vmdk_extent *e,
				  const char *file)
{
	const char *slash = strrchr(img->path, '/');
	size_t dirlen = slash ? (size_t)(slash - img->path) + 1 : 0;
	size_t flen = strlen(file);
	struct stat st;

	if (img->flags & IMGFMT_OPEN_SELF_CONTAINED)
		return imgfmt_err(EPERM, "%s: the VMDK descriptor names an "
				  "extent file, %s, and was to be opened "
				  "self-contained (reading nothing but itself)",
				  img->path, file);
	e->name = malloc(dirlen + flen + 1);
	if (!e->name)
		return imgfmt_err(ENOMEM, "out of memory");
	memcpy(e->name, img->path, dirlen);
	memcpy(e->name + dirlen, file, flen + 1);
	e->fd = imgfmt_open_file(e->name, O_RDONLY, 1, &st);
	if (e->fd < 0) {
		char inner[1024];
		int r = e->fd;

		e->fd = -1;
		snprintf(inner, sizeof(inner), "%s", imgfmt__error());
		return imgfmt_err(-r, "%s: extent: %s", img->path, inner);
	}
	e->file_length = (uint64_t)st.st_size;
	return 0;
}

static int vmdk__open_descriptor(imgfmt_image *img, struct vmdk *v)
{
	struct desc d = { 0 };
	char *text;
	int r;

	if (img->file_length > VMDK_DESC_MAX)
		return imgfmt_err(EFBIG, "%s: VMDK descriptor file of %llu "
				  "bytes is larger than the 1 MiB limit",
				  img->path,
				  (unsigned long long)img->file_length);
	text = malloc(img->file_length + 1);
	if (!text)
		return imgfmt_err(ENOMEM, "out of memory");
	r = imgfmt_file_read(img, text, img->file_length, 0, "descriptor");
	if (r == 0)
		r = desc__parse(img, text, img->file_length, &d, 0);
	free(text);
	if (r < 0) {
		free(d.ext);
		return r;
	}
	snprintf(v->create_type, sizeof(v->create_type), "%s", d.create_type);
	if (d.n_ext == 0) {
		r = imgfmt_err(EINVAL, "%s: VMDK descriptor has no extents",
			       img->path);
		goto out;
	}
	v->ext = calloc(d.n_ext, sizeof(*v->ext));
	if (!v->ext) {
		r = imgfmt_err(ENOMEM, "out of memory");
		goto out;
	}
	uint64_t pos = 0;
	for (size_t i = 0; i < d.n_ext && r == 0; i++) {
		struct desc_extent *x = &d.ext[i];
		struct vmdk_extent *e = vmdk__add_extent(v);

		if (x->sectors > (IMGFMT_MAX_VIRTUAL_SIZE - pos) / SECTOR) {
			r = imgfmt_err(EFBIG, "%s: extents add up to more than "
				       "the supported maximum size",
				       img->path);
			break;
		}
		e->type = x->type;
		e->start = pos;
		e->size = x->sectors * SECTOR;
		pos += e->size;
		if (x->type == EXT_ZERO) {
			e->name = strdup("ZERO");
			if (!e->name)
				r = imgfmt_err(ENOMEM, "out of memory");
			continue;
		}
		r = vmdk__open_extent_file(img, e, x->file);
		if (r < 0)
			break;
		if (x->type == EXT_FLAT) {
			e->flat_offset = x->offset * SECTOR;
			if (x->offset > ext_len(e) / SECTOR ||
			    e->size > ext_len(e) - e->flat_offset)
				r = imgfmt_err(EINVAL, "%s: FLAT extent %s is "
					       "shorter than the %llu sectors "
					       "(from sector %llu) the "
					       "descriptor gives it", img->path,
					       e->name,
					       (unsigned long long)x->sectors,
					       (unsigned long long)x->offset);
			continue;
		}
		uint8_t h[512];
		r = vmdk__ext_read(img, e, h, sizeof(h), 0, "sparse header");
		if (r < 0)
			break;
		uint64_t want = e->size;
		r = vmdk__sparse_open(img, e, h, 0);
		if (r == 0 && e->size < want)
			r = imgfmt_err(EINVAL, "%s: sparse extent %s holds %llu "
				       "bytes, less than the %llu the "
				       "descriptor gives it", img->path,
				       e->name, (unsigned long long)e->size,
				       (unsigned long long)want);
		e->size = want;
	}
	if (r == 0) {
		img->virtual_size = pos;
		r = vmdk__set_parent(img, &d);
	}
out:
	free(d.ext);
	return r;
}

/* Read-write is offered for the one layout that can be updated in place:
 * a single uncompressed hosted sparse extent (monolithicSparse).  Load the
 * redundant GD so that both copies of a grain table stay in step. */
static int vmdk__open_rw(imgfmt_image *img, struct vmdk *v)
{
	struct vmdk_extent *e = &v->ext[0];

	if (v->n_ext != 1 || e->type != EXT_SPARSE || e->fd >= 0 ||
	    e->own_base != 0 || e->compressed || img->base != 0)
		return imgfmt_err(EROFS, "%s: only monolithicSparse VMDKs can "
				  "be opened read-write (this is %s)",
				  img->path, v->create_type);
	if (e->rgd_sector) {
		uint64_t gd_bytes = e->gd_entries * 4;
		uint64_t gt_bytes = (uint64_t)e->gtes * 4;
		int r;

		if (e->rgd_sector > ext_len(e) / SECTOR ||
		    gd_bytes > ext_len(e) - e->rgd_sector * SECTOR)
			return imgfmt_err(EINVAL, "%s: redundant grain "
					  "directory is past the end of the "
					  "file", img->path);
		e->rgd = malloc(gd_bytes + 4);
		if (!e->rgd)
			return imgfmt_err(ENOMEM, "out of memory");
		r = vmdk__ext_read(img, e, e->rgd, gd_bytes,
				   e->rgd_sector * SECTOR,
				   "redundant grain directory");
		if (r < 0)
			return r;
		for (uint64_t i = 0; i < e->gd_entries; i++) {
			uint32_t s = le32((uint8_t *)&e->rgd[i]);
			e->rgd[i] = s;
			if (s && ((uint64_t)s * SECTOR > ext_len(e) ||
				  gt_bytes > ext_len(e) - (uint64_t)s * SECTOR))
				return imgfmt_err(EINVAL, "%s: redundant grain "
						  "directory entry %llu is "
						  "past the end of the file",
						  img->path,
						  (unsigned long long)i);
		}
	}
	v->alloc_end = (ext_len(e) + SECTOR - 1) / SECTOR * SECTOR;
	return 0;
}

static int vmdk__open(imgfmt_image *img)
{
	struct vmdk *v = calloc(1, sizeof(*v));
	uint8_t h[512] = { 0 };
	int r;

	if (!v)
		return imgfmt_err(ENOMEM, "out of memory");
	img->priv = v;
	pthread_mutex_init(&v->lock, NULL);
	pthread_mutex_init(&v->alloc_lock, NULL);
	v->cache_budget = img->cache_bytes;
	r = imgfmt_file_read(img, h, img->file_length < 512
				     ? (size_t)img->file_length : 512,
			     0, "VMDK header");
	if (r < 0)
		goto fail;
	if (le32(h) == VMDK_MAGIC) {
		r = vmdk__open_monolithic(img, v, h, 0, img->file_length);
	} else if (ova__is_tar(h, sizeof(h))) {
		uint64_t at = 0, len = 0;
		r = ova__find_vmdk(img, &at, &len);
		if (r == 0)
			r = imgfmt_file_read(img, h, sizeof(h), at,
					     "VMDK header in the OVA");
		if (r == 0 && le32(h) != VMDK_MAGIC)
			r = imgfmt_err(ENOTSUP, "%s: the first .vmdk in the "
				       "OVA is not a sparse extent (only "
				       "streamOptimized/monolithicSparse "
				       "members are read)", img->path);
		if (r == 0)
			r = vmdk__open_monolithic(img, v, h, at, len);
		if (r == 0) {
			char t[sizeof(v->create_type)];
			memcpy(t, v->create_type, sizeof(t));
			snprintf(v->create_type, sizeof(v->create_type),
				 "ova/%.27s", t);
		}
	} else {
		r = vmdk__open_descriptor(img, v);
	}
	if (r == 0 && !img->read_only)
		r = vmdk__open_rw(img, v);
	if (r < 0)
		goto fail;
	/* One compressed extent (streamOptimized, what OVAs carry): a
	 * client reading it 4 KiB at a time would otherwise inflate each
	 * grain once per read.  Such extents are never written (vmdk__open_rw
	 * takes only monolithicSparse), so a grain's bytes stay put. */
	if (v->n_ext == 1 && v->ext[0].compressed)
		v->zc = imgfmt_zcache_new(imgfmt_zcache_entries(
				img->cache_bytes, v->ext[0].grain),
					  v->ext[0].grain);
	return 0;
fail:
	vmdk__close(img);
	return r;
}

/* The extent holding virtual offset `off` (extents are in order). */
static struct vmdk_extent *vmdk__find(struct vmdk *v, uint64_t off)
{
	size_t lo = 0, hi = v->n_ext;

	while (hi - lo > 1) {
		size_t mid = (lo + hi) / 2;
		if (v->ext[mid].start <= off)
			lo = mid;
		else
			hi = mid;
	}
	return &v->ext[lo];
}

static int vmdk__pread(imgfmt_image *img, void *buf, size_t len, uint64_t off)
{
	struct vmdk *v = img->priv;
	uint8_t *p = buf;

	while (len > 0) {
		struct vmdk_extent *e = vmdk__find(v, off);
		uint64_t in = off - e->start;
		size_t n = e->size - in < len ? (size_t)(e->size - in) : len;
		int r;

		switch (e->type) {
		case EXT_FLAT:
			r = vmdk__ext_read(img, e, p, n, e->flat_offset + in,
					   "flat extent data");
			break;
		case EXT_ZERO:
			memset(p, 0, n);
			r = 0;
			break;
		default:
			r = vmdk__read_sparse(img, v, e, p, n, in);
		}
		if (r < 0)
			return r;
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

static int vmdk__map(imgfmt_image *img, uint64_t off, uint64_t len,
		     struct imgfmt_extent *ext)
{
	struct vmdk *v = img->priv;
	struct vmdk_extent *e = vmdk__find(v, off);
	uint64_t in = off - e->start;
	uint64_t max = e->size - in < len ? e->size - in : len;

	if (e->type != EXT_SPARSE) {
		ext->kind = e->type == EXT_ZERO ? IMGFMT_EXTENT_ZERO
						: IMGFMT_EXTENT_DATA;
		ext->length = max;
		ext->file_offset = e->type == EXT_FLAT && e->fd < 0
			? (int64_t)(e->flat_offset + in) : -1;
		return 0;
	}
	/* Walk grains while they are of one kind (and contiguous in the file
	 * for plain data). */
	uint64_t done = 0;
	int kind0 = -1;
	unsigned flags0 = 0;
	int64_t file0 = -1;
	while (done < max) {
		uint64_t o = in + done;
		uint64_t gi = o / e->grain, gin = o % e->grain;
		uint64_t n = e->grain - gin;
		uint32_t s;
		int kind;
		unsigned flags = 0;
		int64_t fo = -1;
		int r = vmdk__gte(img, v, e, gi, &s);

		if (r < 0)
			return r;
		/* An absent grain table: skip all the grains it covers. */
		if (e->gd[gi / e->gtes] == 0)
			n += (e->gtes - 1 - gi % e->gtes) * e->grain;
		if (n > max - done)
			n = max - done;
		if (s == 0) {
			kind = IMGFMT_EXTENT_BACKING;
		} else if (s == 1 && e->zero_grain) {
			kind = IMGFMT_EXTENT_ZERO;
		} else {
			kind = IMGFMT_EXTENT_DATA;
			if (e->compressed)
				flags = IMGFMT_EXTENT_COMPRESSED;
			else if (e->fd < 0)
				fo = (int64_t)(e->own_base +
					       (uint64_t)s * SECTOR + gin);
		}
		if (kind0 < 0) {
			kind0 = kind;
			flags0 = flags;
			file0 = fo;
		} else if (kind != kind0 || flags != flags0 ||
			   (file0 >= 0) != (fo >= 0) ||
			   (fo >= 0 && fo != file0 + (int64_t)done)) {
			break;
		}
		done += n;
	}
	ext->kind = (enum imgfmt_extent_kind)kind0;
	ext->flags = flags0;
	ext->file_offset = file0;
	ext->length = done;
	return 0;
}

static int vmdk__flush(imgfmt_image *img)
{
	if (fdatasync(img->fd) < 0 && errno != EINVAL)
		return imgfmt_err(errno, "%s: fdatasync: %s", img->path,
				  strerror(errno));
	return 0;
}

/* Give grain `gi` a home at the end of the file holding its old content
 * (backing data or zeros) with `n` bytes of `data` at `in`; the grain is
 * on disk before either grain table points at it. */
static int vmdk__allocate(imgfmt_image *img, struct vmdk *v,
			  struct vmdk_extent *e, uint64_t gi, uint32_t old,
			  const uint8_t *data, size_t n, uint64_t in)
{
	uint64_t gdi = gi / e->gtes, gti = gi % e->gtes;
	uint64_t vstart = e->start + gi * e->grain;
	uint64_t at = v->alloc_end;
	uint8_t le[4];
	int r = 0;

	if (e->gd[gdi] == 0)
		return imgfmt_err(ENOTSUP, "%s: grain table %llu is not "
				  "allocated; writing would need a new table",
				  img->path, (unsigned long long)gdi);
	if ((at + e->grain) / SECTOR > UINT32_MAX)
		return imgfmt_err(EFBIG, "%s: VMDK file cannot grow past the "
				  "2 TiB that grain table entries address",
				  img->path);
	uint8_t *g = calloc(1, e->grain);
	if (!g)
		return imgfmt_err(ENOMEM, "out of memory");
	if (old == 0 && img->backing) {
		uint64_t blen = e->grain;
		if (img->virtual_size - vstart < blen)
			blen = img->virtual_size - vstart;
		r = imgfmt_backing_read(img, g, blen, vstart);
	}
	memcpy(g + in, data, n);
	if (r == 0)
		r = imgfmt_file_write(img, g, e->grain, at);
	free(g);
	if (r == 0)
		r = vmdk__flush(img);
	if (r < 0)
		return r;
	le[0] = (uint8_t)(at / SECTOR);
	le[1] = (uint8_t)(at / SECTOR >> 8);
	le[2] = (uint8_t)(at / SECTOR >> 16);
	le[3] = (uint8_t)(at / SECTOR >> 24);
	r = imgfmt_file_write(img, le, 4,
			      (uint64_t)e->gd[gdi] * SECTOR + gti * 4);
	if (r == 0 && e->rgd && e->rgd[gdi])
		r = imgfmt_file_write(img, le, 4,
				      (uint64_t)e->rgd[gdi] * SECTOR + gti * 4);
	if (r < 0)
		return r;
	v->alloc_end = at + e->grain;
	__atomic_store_n(&e->file_length, v->alloc_end, __ATOMIC_RELEASE);
	__atomic_store_n(&img->file_length, v->alloc_end, __ATOMIC_RELEASE);
	pthread_mutex_lock(&v->lock);
	if (e->gt[gdi])
		e->gt[gdi][gti] = (uint32_t)(at / SECTOR);
	pthread_mutex_unlock(&v->lock);
	return 0;
}

static int vmdk__pwrite(imgfmt_image *img, const void *buf, size_t len,
			uint64_t off)
{
	struct vmdk *v = img->priv;
	struct vmdk_extent *e = &v->ext[0];
	const uint8_t *p = buf;

	while (len > 0) {
		uint64_t gi = off / e->grain, in = off % e->grain;
		size_t n = (size_t)(e->grain - in);
		uint32_t s;
		int r;

		if (n > len)
			n = len;
		r = vmdk__gte(img, v, e, gi, &s);
		if (r == 0 && (s == 0 || (s == 1 && e->zero_grain))) {
			if (s == 0 && !img->backing && imgfmt_is_zero(p, n))
				goto next; /* reads as zeros already */
			pthread_mutex_lock(&v->alloc_lock);
			r = vmdk__gte(img, v, e, gi, &s);
			if (r == 0 && (s == 0 || (s == 1 && e->zero_grain))) {
				r = vmdk__allocate(img, v, e, gi, s, p, n, in);
				s = 0;
			}
			pthread_mutex_unlock(&v->alloc_lock);
		}
		if (r == 0 && s != 0) {
			uint64_t at = (uint64_t)s * SECTOR + in;
			if (at > ext_len(e) || n > ext_len(e) - at)
				r = imgfmt_err(EIO, "%s: grain table entry for "
					       "grain %llu (sector %u) points "
					       "past the end of the file",
					       img->path,
					       (unsigned long long)gi, s);
			else if ((uint64_t)s * SECTOR < e->overhead)
				/* Never write over the header or tables. */
				r = imgfmt_err(EIO, "%s: grain table entry for "
					       "grain %llu (sector %u) points "
					       "into the metadata", img->path,
					       (unsigned long long)gi, s);
			else
				r = imgfmt_file_write(img, p, n, at);
		}
		if (r < 0)
			return r;
next:
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

static int vmdk__info(imgfmt_image *img, struct imgfmt_info *info)
{
	struct vmdk *v = img->priv;

	snprintf(info->subformat, sizeof(info->subformat), "%s",
		 v->create_type);
	for (size_t i = 0; i < v->n_ext; i++) {
		if (v->ext[i].type == EXT_SPARSE) {
			info->cluster_size = (uint32_t)v->ext[i].grain;
			break;
		}
	}
	return 0;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static void vmdk__problem(struct imgfmt_check_result *res, const char *fmt,
			  ...) __attribute__((format(printf, 2, 3)));
static void vmdk__problem(struct imgfmt_check_result *res, const char *fmt,
			  ...)
{
	va_list ap;

	if (!res->first_problem[0]) {
		va_start(ap, fmt);
		vsnprintf(res->first_problem, sizeof(res->first_problem), fmt,
			  ap);
		va_end(ap);
	}
	res->corruptions++;
}

/* Every grain pointer must land inside the file, past the header area,
 * and no two plain grains may share a sector. */
static int vmdk__check_extent(imgfmt_image *img, struct vmdk *v,
			      struct vmdk_extent *e,
			      struct imgfmt_check_result *res)
{
	uint64_t grains = (e->size + e->grain - 1) / e->grain;
	uint64_t cap = ext_len(e) / SECTOR + 1;
	uint32_t *seen = malloc((grains < cap ? grains : cap) * 4 + 4);
	size_t n = 0;
	int r = 0;

	if (!seen)
		return imgfmt_err(ENOMEM, "out of memory");
	for (uint64_t gi = 0; gi < grains; gi++) {
		uint32_t s;

		if (e->gd[gi / e->gtes] == 0) {
			gi += e->gtes - 1 - gi % e->gtes;
			continue;
		}
		r = vmdk__gte(img, v, e, gi, &s);
		if (r < 0)
			break;
		if (s == 0 || (s == 1 && e->zero_grain))
			continue;
		uint64_t at = (uint64_t)s * SECTOR;
		uint64_t need = e->compressed ? 12 : e->grain;
		if (at > ext_len(e) || need > ext_len(e) - at)
			vmdk__problem(res, "%s: grain %llu (sector %u) is past "
				      "the end of the file", e->name,
				      (unsigned long long)gi, s);
		else if (at < e->overhead)
			vmdk__problem(res, "%s: grain %llu (sector %u) points "
				      "into the metadata", e->name,
				      (unsigned long long)gi, s);
		else if (n < cap)
			seen[n++] = s;
	}
	qsort(seen, n, sizeof(*seen), cmp_u32);
	for (size_t i = 1; i < n; i++)
		if (seen[i] == seen[i - 1])
			vmdk__problem(res, "%s: two grains share sector %u",
				      e->name, seen[i]);
	free(seen);
	return r;
}

/* The redundant GD and its tables must agree with the primary ones:
 * VMware and qemu update both, so a difference is damage to one copy. */
static int vmdk__check_redundant(imgfmt_image *img, struct vmdk_extent *e,
				 struct imgfmt_check_result *res)
{
	uint64_t gd_bytes = e->gd_entries * 4;
	size_t gt_bytes = (size_t)e->gtes * 4;
	uint8_t *rgd, *a, *b;
	int r = 0;

	if (!e->rgd_sector || e->compressed)
		return 0;
	if (e->rgd_sector > ext_len(e) / SECTOR ||
	    gd_bytes > ext_len(e) - e->rgd_sector * SECTOR) {
		vmdk__problem(res, "%s: redundant grain directory (rgdOffset "
			      "%llu) is past the end of the file", e->name,
			      (unsigned long long)e->rgd_sector);
		return 0;
	}
	rgd = malloc(gd_bytes + 4);
	a = malloc(gt_bytes);
	b = malloc(gt_bytes);
	if (!rgd || !a || !b) {
		r = imgfmt_err(ENOMEM, "out of memory");
		goto out;
	}
	r = vmdk__ext_read(img, e, rgd, gd_bytes, e->rgd_sector * SECTOR,
			   "redundant grain directory");
	for (uint64_t i = 0; i < e->gd_entries && r == 0; i++) {
		uint32_t rs = le32(rgd + 4 * i), ps = e->gd[i];
		if (!rs != !ps) {
			vmdk__problem(res, "%s: grain table %llu is present in "
				      "only one of the two grain directories",
				      e->name, (unsigned long long)i);
			continue;
		}
		if (!rs)
			continue;
		if ((uint64_t)rs * SECTOR > ext_len(e) ||
		    gt_bytes > ext_len(e) - (uint64_t)rs * SECTOR) {
			vmdk__problem(res, "%s: redundant grain table %llu "
				      "(sector %u) is past the end of the "
				      "file", e->name, (unsigned long long)i,
				      rs);
			continue;
		}
		r = vmdk__ext_read(img, e, a, gt_bytes,
				   (uint64_t)ps * SECTOR, "grain table");
		if (r == 0)
			r = vmdk__ext_read(img, e, b, gt_bytes,
					   (uint64_t)rs * SECTOR,
					   "redundant grain table");
		if (r == 0 && memcmp(a, b, gt_bytes) != 0)
			vmdk__problem(res, "%s: grain table %llu differs from "
				      "its redundant copy", e->name,
				      (unsigned long long)i);
	}
out:
	free(rgd);
	free(a);
	free(b);
	return r;
}

static int vmdk__check(imgfmt_image *img, int repair,
		       struct imgfmt_check_result *res)
{
	struct vmdk *v = img->priv;

	if (repair)
		return imgfmt_err(ENOTSUP, "%s: VMDK images cannot be "
				  "repaired", img->path);
	for (size_t i = 0; i < v->n_ext; i++) {
		if (v->ext[i].type != EXT_SPARSE)
			continue;
		int r = vmdk__check_extent(img, v, &v->ext[i], res);
		if (r == 0)
			r = vmdk__check_redundant(img, &v->ext[i], res);
		if (r < 0)
			return r;
	}
	return 0;
}

/* ---- writer ---------------------------------------------------------- */

struct vmdk_writer {
	int stream;
	uint64_t grain;          /* bytes */
	uint64_t sectors;        /* capacity */
	uint64_t gd_entries;
	uint32_t *gd;            /* host order */
	uint64_t gd_sector, rgd_sector; /* sparse: where the tables live */
	uint64_t gt_base, rgt_base;     /* sparse: first GT of each copy */
	uint32_t gt[VMDK_GTES];  /* the GT being filled, host order */
	int64_t gt_index;        /* -1: none */
	uint64_t next;           /* file offset of the next grain */
	uint64_t overhead;       /* sectors */
	int level;
	uint32_t cid;
};

static void vmdk__make_header(const struct vmdk_writer *vw, uint64_t gd,
			      uint64_t rgd, uint8_t *h)
{
	memset(h, 0, SECTOR);
	put_le32(h, VMDK_MAGIC);
	put_le32(h + 4, vw->stream ? 3 : 1);
	put_le32(h + 8, vw->stream
		 ? VMDK_FLAG_NL_TEST | VMDK_FLAG_COMPRESS | VMDK_FLAG_MARKERS
		 : VMDK_FLAG_NL_TEST | VMDK_FLAG_RGD);
	put_le64(h + 12, vw->sectors);
	put_le64(h + 20, vw->grain / SECTOR);
	put_le64(h + 28, 1);
	put_le64(h + 36, VMDK_DESC_SECTORS);
	put_le32(h + 44, VMDK_GTES);
	put_le64(h + 48, rgd);
	put_le64(h + 56, gd);
	put_le64(h + 64, vw->overhead);
	h[72] = 0;           /* uncleanShutdown */
	h[73] = '\n';        /* newline-corruption detection bytes */
	h[74] = ' ';
	h[75] = '\r';
	h[76] = '\n';
	put_le16(h + 77, vw->stream ? VMDK_COMPRESS_DEFLATE : 0);
}

/* The embedded descriptor.  The extent names the file as created; for a
 * hosted sparse file readers (ours, qemu's, VMware's) use the file
 * itself, so a later rename does not matter. */
static int vmdk__descriptor(imgfmt_writer *w, const struct vmdk_writer *vw,
			    char *out, size_t out_len)
{
	const char *slash = strrchr(w->path, '/');
	const char *base = slash ? slash + 1 : w->path;
	uint64_t cyl = vw->sectors / (16 * 63);
	int n;

	for (const char *p = base; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == '"' || *p == 0x7f)
			return imgfmt_err(EINVAL, "%s: the file name cannot "
					  "be written into a VMDK descriptor "
					  "(quote or control character)",
					  w->path);
	if (cyl > 16383)
		cyl = 16383;
	n = snprintf(out, out_len,
		     "# Disk DescriptorFile\n"
		     "version=1\n"
		     "CID=%08x\n"
		     "parentCID=ffffffff\n"
		     "createType=\"%s\"\n"
		     "\n"
		     "# Extent description\n"
		     "RW %llu SPARSE \"%s\"\n"
		     "\n"
		     "# The Disk Data Base\n"
		     "#DDB\n"
		     "\n"
		     "ddb.virtualHWVersion = \"4\"\n"
		     "ddb.geometry.cylinders = \"%llu\"\n"
		     "ddb.geometry.heads = \"16\"\n"
		     "ddb.geometry.sectors = \"63\"\n"
		     "ddb.adapterType = \"ide\"\n",
		     vw->cid, vw->stream ? "streamOptimized" : "monolithicSparse",
		     (unsigned long long)vw->sectors, base,
		     (unsigned long long)cyl);
	if (n < 0 || (size_t)n >= out_len)
		return imgfmt_err(ENAMETOOLONG, "%s: the file name is too long "
				  "for the VMDK descriptor", w->path);
	return 0;
}

static int vmdk__writer_open(imgfmt_writer *w)
{
	const char *sub = w->opts.subformat;
	struct vmdk_writer *vw;
	int stream;
	int r;

	if (!sub || strcmp(sub, "monolithicSparse") == 0)
		stream = 0;
	else if (strcmp(sub, "streamOptimized") == 0)
		stream = 1;
	else
		return imgfmt_err(EINVAL, "%s: cannot write VMDK subformat "
				  "'%s' (monolithicSparse or streamOptimized)",
				  w->path, sub);
	if (w->opts.backing_file)
		return imgfmt_err(ENOTSUP, "%s: VMDK images with a backing file "
				  "are not supported by the writer", w->path);
	if (w->opts.compress && !stream)
		return imgfmt_err(ENOTSUP, "%s: monolithicSparse VMDKs are not "
				  "compressed; use subformat streamOptimized",
				  w->path);
	if (w->opts.size % SECTOR)
		return imgfmt_err(EINVAL, "%s: VMDK size %llu is not a multiple "
				  "of 512", w->path,
				  (unsigned long long)w->opts.size);
	if (w->opts.size > VMDK_WRITE_MAX)
		return imgfmt_err(EFBIG, "%s: VMDK size %llu is larger than "
				  "the 2 TiB sparse VMDKs address", w->path,
				  (unsigned long long)w->opts.size);
	w->chunk_size = w->opts.cluster_size ? w->opts.cluster_size
					     : VMDK_DEFAULT_GRAIN;
	if (w->chunk_size < 4096 || w->chunk_size > VMDK_MAX_GRAIN ||
	    (w->chunk_size & (w->chunk_size - 1)))
		return imgfmt_err(EINVAL, "%s: VMDK grain size %u is not a "
				  "power of two between 4096 and %u", w->path,
				  w->chunk_size, VMDK_MAX_GRAIN);
	vw = calloc(1, sizeof(*vw));
	if (!vw)
		return imgfmt_err(ENOMEM, "out of memory");
	w->priv = vw;
	vw->stream = stream;
	vw->grain = w->chunk_size;
	vw->sectors = w->opts.size / SECTOR;
	vw->gt_index = -1;
	vw->level = w->opts.compress_level ? w->opts.compress_level
					   : Z_DEFAULT_COMPRESSION;
	if (vw->level < -1 || vw->level > 9)
		vw->level = Z_DEFAULT_COMPRESSION;
	uint64_t gt_cover = (uint64_t)VMDK_GTES * vw->grain;
	vw->gd_entries = (w->opts.size + gt_cover - 1) / gt_cover;
	vw->gd = calloc(vw->gd_entries + 1, 4);
	if (!vw->gd)
		return imgfmt_err(ENOMEM, "out of memory");
	if (getrandom(&vw->cid, sizeof(vw->cid), 0) != sizeof(vw->cid))
		vw->cid = 0x12345678;

	/* Layout as qemu lays it out: header, descriptor, then for sparse
	 * the redundant GD and its GTs, the GD and its GTs, all GTs
	 * preallocated; grains start at the next grain boundary. */
	uint64_t gd_sectors = (vw->gd_entries * 4 + SECTOR - 1) / SECTOR;
	uint64_t gt_sectors = VMDK_GTES * 4 / SECTOR;
	uint64_t end = 1 + VMDK_DESC_SECTORS;
	if (!stream) {
		vw->rgd_sector = end;
		vw->rgt_base = vw->rgd_sector + gd_sectors;
		vw->gd_sector = vw->rgt_base + vw->gd_entries * gt_sectors;
		vw->gt_base = vw->gd_sector + gd_sectors;
		end = vw->gt_base + vw->gd_entries * gt_sectors;
	}
	uint64_t gs = vw->grain / SECTOR;
	vw->overhead = (end + gs - 1) / gs * gs;
	vw->next = vw->overhead * SECTOR;

	/* Header and descriptor go out now, so a stream is readable front
	 * to back; a sparse header is rewritten identically at finish. */
	uint8_t *buf = calloc(1, (1 + VMDK_DESC_SECTORS) * SECTOR);
	if (!buf)
		return imgfmt_err(ENOMEM, "out of memory");
	vmdk__make_header(vw, stream ? VMDK_GD_AT_END : vw->gd_sector,
			  stream ? 0 : vw->rgd_sector, buf);
	r = vmdk__descriptor(w, vw, (char *)buf + SECTOR,
			     VMDK_DESC_SECTORS * SECTOR);
	if (r == 0)
		r = imgfmt_writer_write(w, buf, (1 + VMDK_DESC_SECTORS) * SECTOR, 0);
	free(buf);
	return r;
}

static int vmdk__writer_encode(imgfmt_writer *w, const void *data,
			       uint64_t off, uint32_t len,
			       struct imgfmt_chunk *chunk)
{
	struct vmdk_writer *vw = w->priv;

	/* Zero grains stay unallocated: they read as zeros without a
	 * backing file, and we write none. */
	if (imgfmt_is_zero(data, len))
		return 0;
	if (!vw->stream) {
		chunk->data = malloc(len);
		if (!chunk->data)
			return imgfmt_err(ENOMEM, "out of memory");
		memcpy(chunk->data, data, len);
		chunk->data_len = len;
		return 0;
	}
	/* Whole grains only, as VMware writes them: a short last grain is
	 * padded with zeros before deflating. */
	const uint8_t *src = data;
	uint8_t *pad = NULL;
	if (len < vw->grain) {
		pad = calloc(1, vw->grain);
		if (!pad)
			return imgfmt_err(ENOMEM, "out of memory");
		memcpy(pad, data, len);
		src = pad;
	}
	uLong bound = compressBound((uLong)vw->grain);
	size_t cap = ((size_t)bound + 12 + SECTOR - 1) / SECTOR * SECTOR;
	uint8_t *out = calloc(1, cap);
	if (!out) {
		free(pad);
		return imgfmt_err(ENOMEM, "out of memory");
	}
	uLongf clen = bound;
	int zr = compress2(out + 12, &clen, src, (uLong)vw->grain, vw->level);
	free(pad);
	if (zr != Z_OK) {
		free(out);
		return imgfmt_err(EIO, "%s: deflate failed (zlib error %d)",
				  w->path, zr);
	}
	put_le64(out, off / SECTOR);
	put_le32(out + 8, (uint32_t)clen);
	chunk->data = out;
	chunk->data_len = ((size_t)clen + 12 + SECTOR - 1) / SECTOR * SECTOR;
	chunk->flags = 1;
	return 0;
}

/* Write out the grain table being filled (if any). */
static int vmdk__flush_gt(imgfmt_writer *w, struct vmdk_writer *vw)
{
	uint8_t buf[SECTOR + VMDK_GTES * 4];
	uint8_t *gt = buf + SECTOR;
	int r;

	if (vw->gt_index < 0)
		return 0;
	for (int i = 0; i < VMDK_GTES; i++)
		put_le32(gt + 4 * i, vw->gt[i]);
	if (vw->stream) {
		/* GT marker, then the table; the GD points past the marker. */
		memset(buf, 0, SECTOR);
		put_le64(buf, VMDK_GTES * 4 / SECTOR);
		put_le32(buf + 12, VMDK_MARKER_GT);
		r = imgfmt_writer_write(w, buf, sizeof(buf), vw->next);
		if (r < 0)
			return r;
		vw->gd[vw->gt_index] = (uint32_t)(vw->next / SECTOR + 1);
		vw->next += sizeof(buf);
	} else {
		uint64_t gts = VMDK_GTES * 4 / SECTOR;
		r = imgfmt_writer_write(w, gt, VMDK_GTES * 4,
				 (vw->gt_base + vw->gt_index * gts) * SECTOR);
		if (r == 0)
			r = imgfmt_writer_write(w, gt, VMDK_GTES * 4,
					 (vw->rgt_base + vw->gt_index * gts) *
						 SECTOR);
		if (r < 0)
			return r;
	}
	memset(vw->gt, 0, sizeof(vw->gt));
	vw->gt_index = -1;
	return 0;
}

static int vmdk__writer_put(imgfmt_writer *w, struct imgfmt_chunk *chunk)
{
	struct vmdk_writer *vw = w->priv;
	uint64_t gi = chunk->offset / vw->grain;
	int64_t gti = (int64_t)(gi / VMDK_GTES);
	int r;

	if (!chunk->data || chunk->data_len == 0)
		return 0;
	if ((vw->stream && chunk->flags != 1) ||
	    (!vw->stream && chunk->data_len != chunk->length))
		return imgfmt_err(EINVAL, "%s: chunk was not encoded by the "
				  "VMDK writer", w->path);
	if (gti != vw->gt_index) {
		r = vmdk__flush_gt(w, vw);
		if (r < 0)
			return r;
		vw->gt_index = gti;
	}
	if ((vw->next + vw->grain) / SECTOR > UINT32_MAX)
		return imgfmt_err(EFBIG, "%s: VMDK file grew past the 2 TiB "
				  "that 32-bit grain table entries address",
				  w->path);
	r = imgfmt_writer_write(w, chunk->data, chunk->data_len, vw->next);
	if (r < 0)
		return r;
	vw->gt[gi % VMDK_GTES] = (uint32_t)(vw->next / SECTOR);
	vw->next += vw->stream ? chunk->data_len : vw->grain;
	return 0;
}

static int vmdk__writer_finish(imgfmt_writer *w)
{
	struct vmdk_writer *vw = w->priv;
	uint64_t gd_sectors = (vw->gd_entries * 4 + SECTOR - 1) / SECTOR;
	size_t gd_bytes = (size_t)gd_sectors * SECTOR;
	uint8_t *gd = calloc(1, gd_bytes + 3 * SECTOR);
	uint8_t h[SECTOR];
	int r;

	if (!gd) {
		r = imgfmt_err(ENOMEM, "out of memory");
		goto out;
	}
	r = vmdk__flush_gt(w, vw);
	if (r < 0)
		goto out;
	if (vw->stream) {
		/* GD marker + GD, footer marker + footer, end of stream. */
		uint8_t mk[SECTOR] = { 0 };
		uint64_t gd_at = vw->next + SECTOR;

		for (uint64_t i = 0; i < vw->gd_entries; i++)
			put_le32(gd + 4 * i, vw->gd[i]);
		put_le64(mk, gd_sectors);
		put_le32(mk + 12, VMDK_MARKER_GD);
		r = imgfmt_writer_write(w, mk, SECTOR, vw->next);
		if (r == 0)
			r = imgfmt_writer_write(w, gd, gd_bytes, gd_at);
		uint8_t tail[3 * SECTOR] = { 0 };
		put_le64(tail, 1);
		put_le32(tail + 12, VMDK_MARKER_FOOTER);
		vmdk__make_header(vw, gd_at / SECTOR, 0, tail + SECTOR);
		/* tail + 1024: the end-of-stream marker, all zeros. */
		if (r == 0)
			r = imgfmt_writer_write(w, tail, sizeof(tail),
					 gd_at + gd_bytes);
		if (r == 0 && ftruncate(w->fd, (off_t)(gd_at + gd_bytes +
						       sizeof(tail))) < 0)
			r = imgfmt_err(errno, "%s: truncate: %s", w->path,
				       strerror(errno));
		goto out;
	}
	/* Sparse: both directories point at their preallocated tables. */
	uint64_t gts = VMDK_GTES * 4 / SECTOR;
	for (uint64_t i = 0; i < vw->gd_entries; i++)
		put_le32(gd + 4 * i, (uint32_t)(vw->gt_base + i * gts));
	r = imgfmt_writer_write(w, gd, gd_bytes, vw->gd_sector * SECTOR);
	for (uint64_t i = 0; i < vw->gd_entries && r == 0; i++)
		put_le32(gd + 4 * i, (uint32_t)(vw->rgt_base + i * gts));
	if (r == 0)
		r = imgfmt_writer_write(w, gd, gd_bytes, vw->rgd_sector * SECTOR);
	vmdk__make_header(vw, vw->gd_sector, vw->rgd_sector, h);
	if (r == 0)
		r = imgfmt_writer_write(w, h, SECTOR, 0);
	if (r == 0 && ftruncate(w->fd, (off_t)vw->next) < 0)
		r = imgfmt_err(errno, "%s: truncate: %s", w->path,
			       strerror(errno));
out:
	free(gd);
	free(vw->gd);
	free(vw);
	w->priv = NULL;
	return r;
}

static void vmdk__writer_abort(imgfmt_writer *w)
{
	struct vmdk_writer *vw = w->priv;

	free(vw->gd);
	free(vw);
	w->priv = NULL;
}

static int vmdk__create(const char *path, const struct imgfmt_create_opts *o)
{
	struct imgfmt_writer_opts wo = {
		.format = "vmdk",
		.size = o->size,
		.backing_file = o->backing_file,
		.cluster_size = VMDK_DEFAULT_GRAIN,
	};

	return imgfmt_writer_create_empty(path, &wo);
}

const struct imgfmt_driver imgfmt_vmdk_driver = {
	.name = "vmdk",
	.probe = vmdk__probe,
	.open = vmdk__open,
	.close = vmdk__close,
	.pread = vmdk__pread,
	.pwrite = vmdk__pwrite,
	.flush = vmdk__flush,
	.map = vmdk__map,
	.info = vmdk__info,
	.check = vmdk__check,
	.create = vmdk__create,
	.writer_open = vmdk__writer_open,
	.writer_encode = vmdk__writer_encode,
	.writer_put = vmdk__writer_put,
	.writer_finish = vmdk__writer_finish,
	.writer_abort = vmdk__writer_abort,
};
