/*
 * blake3.c - see blake3.h.  Written from the BLAKE3 specification (the
 * paper's sections 2.1-2.6 and 5.1): only the default hash mode, 32-byte
 * output.
 *
 * The input is split into 1 KiB chunks of 64-byte blocks; each chunk is
 * compressed block by block into a chaining value (CV); CVs are joined
 * pairwise by parent compressions into a left-complete binary tree whose
 * root compression carries the ROOT flag and gives the digest.
 *
 * Speed comes from hashing W chunks at once (W = 16, 8 or 4 lanes): lane
 * i of every vector holds chunk i's state, so one vector instruction does
 * the same step of W compressions.  (With AVX2, batches of 2-4 use a
 * row-wise kernel instead: see kernel4_avx2_rows.)  The kernels are written once with GCC
 * vector extensions and stamped out per instruction set with
 * target(...) attributes; the best one this CPU runs is chosen once.
 * Whole buffers are then reduced level by level (parents also W at a
 * time): pairs left to right, an odd last CV carried up unchanged, which
 * builds exactly the spec's left-complete tree.  The streaming hasher
 * batches whole chunks the same way and merges them into its stack of
 * subtree CVs level by level too.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/blake3.h"

#define CHUNK_START 1u
#define CHUNK_END 2u
#define PARENT 4u
#define ROOT 8u

/* The CVs of at most this many chunks are kept at once, on the stack
 * (8 KiB): longer buffers go through the streaming hasher, which takes
 * whole chunks in batches of up to this many. */
#define MAX_BATCH_CHUNKS 256

static const uint32_t IV[8] = {
	0x6A09E667u, 0xBB67AE85u, 0x3C6EF372u, 0xA54FF53Au,
	0x510E527Fu, 0x9B05688Cu, 0x1F83D9ABu, 0x5BE0CD19u,
};

/* Message word order of each of the 7 rounds: the spec's permutation
 * (2,6,3,10,7,0,4,13,1,11,12,5,9,14,15,8) applied r times.  Indexing by
 * this table instead of moving the words keeps them in registers. */
static const uint8_t SCHED[7][16] = {
	{ 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15 },
	{ 2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8 },
	{ 3, 4, 10, 12, 13, 2, 7, 14, 6, 5, 9, 0, 11, 15, 8, 1 },
	{ 10, 7, 12, 9, 14, 3, 13, 15, 4, 0, 11, 2, 5, 8, 1, 6 },
	{ 12, 13, 9, 11, 15, 10, 14, 8, 7, 2, 5, 3, 0, 1, 6, 4 },
	{ 9, 14, 11, 5, 8, 12, 15, 1, 13, 3, 0, 10, 2, 6, 4, 7 },
	{ 11, 15, 5, 0, 1, 9, 8, 6, 14, 10, 2, 12, 3, 4, 7, 13 },
};

/* Rotate right; on vectors too (GCC emits vprord with AVX-512VL). */
#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

/*
 * The round function, for any element type: S names the family of rotate
 * macros (ROT16_S ...), v and m are arrays of 16 state and message words
 * (scalars or vectors).
 */
#define G(S, a, b, c, d, x, y)                                           \
	do {                                                             \
		a = a + b + (x);                                         \
		d = ROT16_##S(d ^ a);                                    \
		c = c + d;                                               \
		b = ROT12_##S(b ^ c);                                    \
		a = a + b + (y);                                         \
		d = ROT8_##S(d ^ a);                                     \
		c = c + d;                                               \
		b = ROT7_##S(b ^ c);                                     \
	} while (0)

#define ROUND(S, v, m, r)                                                         \
	do {                                                                      \
		G(S, v[0], v[4], v[8], v[12], m[SCHED[r][0]], m[SCHED[r][1]]);    \
		G(S, v[1], v[5], v[9], v[13], m[SCHED[r][2]], m[SCHED[r][3]]);    \
		G(S, v[2], v[6], v[10], v[14], m[SCHED[r][4]], m[SCHED[r][5]]);   \
		G(S, v[3], v[7], v[11], v[15], m[SCHED[r][6]], m[SCHED[r][7]]);   \
		G(S, v[0], v[5], v[10], v[15], m[SCHED[r][8]], m[SCHED[r][9]]);   \
		G(S, v[1], v[6], v[11], v[12], m[SCHED[r][10]], m[SCHED[r][11]]); \
		G(S, v[2], v[7], v[8], v[13], m[SCHED[r][12]], m[SCHED[r][13]]);  \
		G(S, v[3], v[4], v[9], v[14], m[SCHED[r][14]], m[SCHED[r][15]]);  \
	} while (0)

#define ROUNDS(S, v, m)               \
	do {                          \
		ROUND(S, v, m, 0);    \
		ROUND(S, v, m, 1);    \
		ROUND(S, v, m, 2);    \
		ROUND(S, v, m, 3);    \
		ROUND(S, v, m, 4);    \
		ROUND(S, v, m, 5);    \
		ROUND(S, v, m, 6);    \
	} while (0)

/* ---- portable ------------------------------------------------------- */

#define ROT16_s(x) ROTR(x, 16)
#define ROT12_s(x) ROTR(x, 12)
#define ROT8_s(x) ROTR(x, 8)
#define ROT7_s(x) ROTR(x, 7)

static inline uint32_t load32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static inline void store32(uint8_t *p, uint32_t x)
{
	p[0] = (uint8_t)x;
	p[1] = (uint8_t)(x >> 8);
	p[2] = (uint8_t)(x >> 16);
	p[3] = (uint8_t)(x >> 24);
}

static void store_cv(uint8_t out[32], const uint32_t cv[8])
{
	for (int i = 0; i < 8; i++)
		store32(out + 4 * i, cv[i]);
}

/* The compression function, truncated to the 8 words the default mode
 * uses: cv becomes the next chaining value (or, with ROOT, the digest). */
static void compress(uint32_t cv[8], const uint8_t block[64],
		     uint32_t block_len, uint64_t counter, uint32_t flags)
{
	uint32_t m[16], v[16];

	for (int i = 0; i < 16; i++)
		m[i] = load32(block + 4 * i);
	for (int i = 0; i < 8; i++)
		v[i] = cv[i];
	v[8] = IV[0];
	v[9] = IV[1];
	v[10] = IV[2];
	v[11] = IV[3];
	v[12] = (uint32_t)counter;
	v[13] = (uint32_t)(counter >> 32);
	v[14] = block_len;
	v[15] = flags;
	ROUNDS(s, v, m);
	for (int i = 0; i < 8; i++)
		cv[i] = v[i] ^ v[i + 8];
}

/* The CV of chunk number counter, len bytes at p (1 .. 1024; 0 only for
 * the empty input); root is ROOT when this chunk is the whole input. */
static void chunk_cv(const uint8_t *p, size_t len, uint64_t counter,
		     uint32_t root, uint32_t cv[8])
{
	uint32_t start = CHUNK_START;
	uint8_t last[64] = { 0 };

	memcpy(cv, IV, sizeof(IV));
	while (len > 64) {
		compress(cv, p, 64, counter, start);
		start = 0;
		p += 64;
		len -= 64;
	}
	if (len)
		memcpy(last, p, len);
	compress(cv, last, (uint32_t)len, counter, start | CHUNK_END | root);
}

/* The parent CV of the 64 bytes (left CV, right CV) at block. */
static void parent_cv(const uint8_t block[64], uint32_t flags, uint8_t out[32])
{
	uint32_t cv[8];

	memcpy(cv, IV, sizeof(IV));
	compress(cv, block, 64, 0, PARENT | flags);
	store_cv(out, cv);
}

/*
 * The kernel interface: n inputs in[0 .. n-1] (n <= the kernel's width),
 * each `blocks` 64-byte blocks, starting from the IV; input i's counter
 * is counter + i if inc, else counter; every block gets flags, the first
 * also fstart and the last fend.  Input i's CV goes to out + 32 * i.
 * Chunks: 16 blocks, inc.  Parents: pairs of adjacent CVs, one block.
 * Each call reads all its input before writing, so parents may be
 * reduced in place.
 */
typedef void kernel_fn(const uint8_t *const in[], size_t n, size_t blocks,
		       uint64_t counter, int inc, uint32_t flags,
		       uint32_t fstart, uint32_t fend, uint8_t *out);

static void kernel1_portable(const uint8_t *const in[], size_t n,
			     size_t blocks, uint64_t counter, int inc,
			     uint32_t flags, uint32_t fstart, uint32_t fend,
			     uint8_t *out)
{
	for (size_t i = 0; i < n; i++) {
		const uint8_t *p = in[i];
		uint32_t cv[8];

		memcpy(cv, IV, sizeof(IV));
		for (size_t b = 0; b < blocks; b++)
			compress(cv, p + 64 * b, 64, counter + (inc ? i : 0),
				 flags | (b == 0 ? fstart : 0) |
					 (b + 1 == blocks ? fend : 0));
		store_cv(out + 32 * i, cv);
	}
}

/* ---- SIMD kernels (x86-64) ------------------------------------------ */

/* __builtin_shuffle and the target attributes used here are GCC's. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define HAVE_SIMD 1
#include <immintrin.h>

typedef uint32_t v4u __attribute__((vector_size(16)));
typedef uint32_t v8u __attribute__((vector_size(32)));
typedef uint32_t v16u __attribute__((vector_size(64)));
typedef uint8_t v16b __attribute__((vector_size(16)));
typedef uint8_t v32b __attribute__((vector_size(32)));

/* 16 lanes exist only with AVX-512, where every rotate is one vprord. */
#define ROT16_z(x) ROTR(x, 16)
#define ROT12_z(x) ROTR(x, 12)
#define ROT8_z(x) ROTR(x, 8)
#define ROT7_z(x) ROTR(x, 7)
/* 8 and 4 lanes also run on AVX2 / SSE4.1, which have no vector rotate:
 * rotates by whole bytes are one byte shuffle (pshufb) there.  With
 * AVX-512VL, GCC turns ROTR into vprord by itself. */
/* Byte indices (from o) that rotate each 32-bit word right by 16 / 8. */
#define W16(o) (o) + 2, (o) + 3, (o) + 0, (o) + 1
#define W8(o) (o) + 1, (o) + 2, (o) + 3, (o) + 0
#define BYTES_ROT16(o) W16(o), W16((o) + 4), W16((o) + 8), W16((o) + 12)
#define BYTES_ROT8(o) W8(o), W8((o) + 4), W8((o) + 8), W8((o) + 12)
#define ROT16_y(x) ((v8u)__builtin_shuffle( \
	(v32b)(x), (v32b){ BYTES_ROT16(0), BYTES_ROT16(16) }))
#define ROT8_y(x) ((v8u)__builtin_shuffle( \
	(v32b)(x), (v32b){ BYTES_ROT8(0), BYTES_ROT8(16) }))
#define ROT12_y(x) ROTR(x, 12)
#define ROT7_y(x) ROTR(x, 7)
#define ROT16_x(x) ((v4u)__builtin_shuffle((v16b)(x), (v16b){ BYTES_ROT16(0) }))
#define ROT8_x(x) ((v4u)__builtin_shuffle((v16b)(x), (v16b){ BYTES_ROT8(0) }))
#define ROT12_x(x) ROTR(x, 12)
#define ROT7_x(x) ROTR(x, 7)

/*
 * Transposes by block swaps: for k = W/2, ..., 2, 1, rows i and i + k
 * (i & k == 0) exchange their k-wide blocks at odd block positions.
 * After all stages, word j of row i has moved to word i of row j.  Every
 * step is a two-source shuffle with a constant mask, which GCC turns into
 * unpack / vshufi32x4 / vpermt2d instructions.
 */
#define TLO(j, k, W) (((j) & (k)) ? (W) + (j) - (k) : (j))
#define THI(j, k, W) (((j) & (k)) ? (W) + (j) : (j) + (k))
#define MASK4(F, k) ((v4u){ F(0, k, 4), F(1, k, 4), F(2, k, 4), F(3, k, 4) })
#define MASK8(F, k)                                                     \
	((v8u){ F(0, k, 8), F(1, k, 8), F(2, k, 8), F(3, k, 8),          \
		F(4, k, 8), F(5, k, 8), F(6, k, 8), F(7, k, 8) })
#define MASK16(F, k)                                                     \
	((v16u){ F(0, k, 16), F(1, k, 16), F(2, k, 16), F(3, k, 16),      \
		 F(4, k, 16), F(5, k, 16), F(6, k, 16), F(7, k, 16),      \
		 F(8, k, 16), F(9, k, 16), F(10, k, 16), F(11, k, 16),    \
		 F(12, k, 16), F(13, k, 16), F(14, k, 16), F(15, k, 16) })
/* One stage over rows r[0 .. cnt-1]. */
#define STAGE(VT, MASK, r, k, cnt)                                         \
	do {                                                               \
		_Pragma("GCC unroll 16")                                   \
		for (int i_ = 0; i_ < (cnt); i_++) {                       \
			if (i_ & (k))                                      \
				continue;                                  \
			VT a_ = (r)[i_], b_ = (r)[i_ + (k)];               \
			(r)[i_] = __builtin_shuffle(a_, b_, MASK(TLO, k)); \
			(r)[i_ + (k)] =                                    \
				__builtin_shuffle(a_, b_, MASK(THI, k));   \
		}                                                          \
	} while (0)

#define INLINE static inline __attribute__((always_inline))

/* m[j] = word j of block off of every lane: the lanes' blocks as rows of
 * a 16 x 16 matrix (one vector each), transposed. */
INLINE void load16(v16u m[16], const uint8_t *const p[16], size_t off)
{
	_Pragma("GCC unroll 16")
	for (int i = 0; i < 16; i++)
		memcpy(&m[i], p[i] + off, 64);
	STAGE(v16u, MASK16, m, 8, 16);
	STAGE(v16u, MASK16, m, 4, 16);
	STAGE(v16u, MASK16, m, 2, 16);
	STAGE(v16u, MASK16, m, 1, 16);
}

/* Two 8 x 8 transposes: words 0-7 and 8-15 of the 8 lanes' blocks. */
INLINE void load8(v8u m[16], const uint8_t *const p[8], size_t off)
{
	_Pragma("GCC unroll 8")
	for (int i = 0; i < 8; i++) {
		memcpy(&m[i], p[i] + off, 32);
		memcpy(&m[8 + i], p[i] + off + 32, 32);
	}
	STAGE(v8u, MASK8, m, 4, 8);
	STAGE(v8u, MASK8, m, 2, 8);
	STAGE(v8u, MASK8, m, 1, 8);
	STAGE(v8u, MASK8, m + 8, 4, 8);
	STAGE(v8u, MASK8, m + 8, 2, 8);
	STAGE(v8u, MASK8, m + 8, 1, 8);
}

/* Four 4 x 4 transposes, one per 16 bytes of the 4 lanes' blocks. */
INLINE void load4(v4u m[16], const uint8_t *const p[4], size_t off)
{
	_Pragma("GCC unroll 4")
	for (int g = 0; g < 4; g++) {
		_Pragma("GCC unroll 4")
		for (int i = 0; i < 4; i++)
			memcpy(&m[4 * g + i], p[i] + off + 16 * g, 16);
		STAGE(v4u, MASK4, m + 4 * g, 2, 4);
		STAGE(v4u, MASK4, m + 4 * g, 1, 4);
	}
}

/* Back from word-major to lane-major: lane L's 8 CV words to out + 32 L,
 * for the first n lanes.  With 16 lanes, the two halves of each vector
 * are transposed separately (stages k < 8 never cross them): vector i
 * then holds lane i in its low half and lane 8 + i in its high half. */
INLINE void store16(v16u h[8], uint8_t *out, size_t n)
{
	STAGE(v16u, MASK16, h, 4, 8);
	STAGE(v16u, MASK16, h, 2, 8);
	STAGE(v16u, MASK16, h, 1, 8);
	for (size_t l = 0; l < n; l++)
		memcpy(out + 32 * l, (const uint8_t *)&h[l % 8] + 32 * (l / 8),
		       32);
}

INLINE void store8(v8u h[8], uint8_t *out, size_t n)
{
	STAGE(v8u, MASK8, h, 4, 8);
	STAGE(v8u, MASK8, h, 2, 8);
	STAGE(v8u, MASK8, h, 1, 8);
	for (size_t l = 0; l < n; l++)
		memcpy(out + 32 * l, &h[l], 32);
}

INLINE void store4(v4u h[8], uint8_t *out, size_t n)
{
	STAGE(v4u, MASK4, h, 2, 4);
	STAGE(v4u, MASK4, h, 1, 4);
	STAGE(v4u, MASK4, h + 4, 2, 4);
	STAGE(v4u, MASK4, h + 4, 1, 4);
	for (size_t l = 0; l < n; l++) {
		memcpy(out + 32 * l, &h[l], 16);
		memcpy(out + 32 * l + 16, &h[4 + l], 16);
	}
}

/* One W-lane kernel (see kernel_fn) for one instruction set.  Lanes past
 * n repeat input n - 1 (nothing is read out of bounds) and are not
 * stored. */
#define DEFINE_KERNEL(NAME, TARGET, VT, W, S, IOTA, LOAD, STORE)                \
	__attribute__((target(TARGET))) static void NAME(                       \
		const uint8_t *const in[], size_t n, size_t blocks,             \
		uint64_t counter, int inc, uint32_t flags, uint32_t fstart,     \
		uint32_t fend, uint8_t *out)                                    \
	{                                                                       \
		const uint8_t *p[W];                                            \
		VT h[8], clo, chi;                                              \
		for (size_t i = 0; i < (W); i++)                                \
			p[i] = in[i < n ? i : n - 1];                           \
		_Pragma("GCC unroll 8")                                         \
		for (int i = 0; i < 8; i++)                                     \
			h[i] = (VT){ 0 } + IV[i];                               \
		clo = (VT){ 0 } + (uint32_t)counter;                            \
		chi = (VT){ 0 } + (uint32_t)(counter >> 32);                    \
		if (inc) {                                                      \
			VT lo = clo + (VT)IOTA;                                 \
			chi -= (VT)(lo < clo); /* carry: true is -1 */          \
			clo = lo;                                               \
		}                                                               \
		for (size_t b = 0; b < blocks; b++) {                           \
			VT m[16], v[16];                                        \
			uint32_t f = flags | (b == 0 ? fstart : 0) |            \
				     (b + 1 == blocks ? fend : 0);              \
			LOAD(m, p, 64 * b);                                     \
			_Pragma("GCC unroll 8")                                 \
			for (int i = 0; i < 8; i++)                             \
				v[i] = h[i];                                    \
			v[8] = (VT){ 0 } + IV[0];                               \
			v[9] = (VT){ 0 } + IV[1];                               \
			v[10] = (VT){ 0 } + IV[2];                              \
			v[11] = (VT){ 0 } + IV[3];                              \
			v[12] = clo;                                            \
			v[13] = chi;                                            \
			v[14] = (VT){ 0 } + 64u;                                \
			v[15] = (VT){ 0 } + f;                                  \
			ROUNDS(S, v, m);                                        \
			_Pragma("GCC unroll 8")                                 \
			for (int i = 0; i < 8; i++)                             \
				h[i] = v[i] ^ v[i + 8];                         \
		}                                                               \
		STORE(h, out, n);                                               \
	}

#define IOTA16 { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15 }
#define IOTA8 { 0, 1, 2, 3, 4, 5, 6, 7 }
#define IOTA4 { 0, 1, 2, 3 }

#define T_AVX512 "avx2,avx512f,avx512vl"
DEFINE_KERNEL(kernel16_avx512, T_AVX512, v16u, 16, z, IOTA16, load16, store16)
DEFINE_KERNEL(kernel8_avx512, T_AVX512, v8u, 8, y, IOTA8, load8, store8)
DEFINE_KERNEL(kernel4_avx512, T_AVX512, v4u, 4, x, IOTA4, load4, store4)
DEFINE_KERNEL(kernel8_avx2, "avx2", v8u, 8, y, IOTA8, load8, store8)
DEFINE_KERNEL(kernel4_sse41, "sse4.1", v4u, 4, x, IOTA4, load4, store4)

/*
 * AVX2 for 2 to 4 inputs (a 4 KiB part is 4 chunks; parent levels of a
 * few CVs): row-wise instead of lane-wise.  The 16 state words of one
 * compression sit in four rows of four (v0-3, v4-7, v8-11, v12-15); the
 * column step's four G functions are then one set of row operations,
 * and the diagonal step the same after rotating rows 1-3 by 1, 2 and 3
 * words.  A 256-bit register holds one row of two compressions (inputs
 * 2s and 2s + 1 in its low and high halves; every instruction used works
 * on the halves separately), and the two pairs are interleaved.  Four
 * lanes of the lane-wise kernel spend 4 x 8 G functions of scalar-width
 * work per round plus transposes; this does the same work in about 30%
 * fewer instructions (the compiled kernels, rounds unrolled: 915
 * against 1306), and a 4 KiB part hashes in 2.3-2.5 us instead of 2.7-3.1 us (AVX2 EPYC,
 * interleaved runs).
 *
 * The message is kept as (m0 m2 m4 m6) (m1 m3 m5 m7) (m8 m10 m12 m14)
 * (m9 m11 m13 m15): the column step takes the first two, the diagonal
 * step the last two.  Between rounds the words move by the spec's
 * permutation P (m'[i] = m[P[i]]), which in this layout is
 *   (m2 m3 m7 m4)  = (a1 b1 b3 a2)      (m6 m10 m0 m13) = (a3 c1 a0 d2)
 *   (m1 m12 m9 m15) = (b0 c2 d0 d3)     (m11 m5 m14 m8) = (d1 b2 c3 c0)
 * with a, b, c, d the four registers before the move.
 */
#define RW __attribute__((target("avx2"), always_inline)) static inline

RW __m256i rw_rot16(__m256i x)
{
	return _mm256_shuffle_epi8(x, _mm256_setr_epi8(
		2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13,
		2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13));
}

RW __m256i rw_rot8(__m256i x)
{
	return _mm256_shuffle_epi8(x, _mm256_setr_epi8(
		1, 2, 3, 0, 5, 6, 7, 4, 9, 10, 11, 8, 13, 14, 15, 12,
		1, 2, 3, 0, 5, 6, 7, 4, 9, 10, 11, 8, 13, 14, 15, 12));
}

RW __m256i rw_rotr(__m256i x, int n)
{
	return _mm256_or_si256(_mm256_srli_epi32(x, n),
			       _mm256_slli_epi32(x, 32 - n));
}

/* Half of G on all four columns (or diagonals): m holds their x words,
 * then the same with y words and the other rotations. */
RW void rw_g1(__m256i r[4], __m256i m)
{
	r[0] = _mm256_add_epi32(_mm256_add_epi32(r[0], m), r[1]);
	r[3] = rw_rot16(_mm256_xor_si256(r[3], r[0]));
	r[2] = _mm256_add_epi32(r[2], r[3]);
	r[1] = rw_rotr(_mm256_xor_si256(r[1], r[2]), 12);
}

RW void rw_g2(__m256i r[4], __m256i m)
{
	r[0] = _mm256_add_epi32(_mm256_add_epi32(r[0], m), r[1]);
	r[3] = rw_rot8(_mm256_xor_si256(r[3], r[0]));
	r[2] = _mm256_add_epi32(r[2], r[3]);
	r[1] = rw_rotr(_mm256_xor_si256(r[1], r[2]), 7);
}

/* Rows 1-3 rotated left by 1, 2, 3 words (diagonals become columns),
 * and back. */
RW void rw_diagonalize(__m256i r[4])
{
	r[1] = _mm256_shuffle_epi32(r[1], _MM_SHUFFLE(0, 3, 2, 1));
	r[2] = _mm256_shuffle_epi32(r[2], _MM_SHUFFLE(1, 0, 3, 2));
	r[3] = _mm256_shuffle_epi32(r[3], _MM_SHUFFLE(2, 1, 0, 3));
}

RW void rw_undiagonalize(__m256i r[4])
{
	r[1] = _mm256_shuffle_epi32(r[1], _MM_SHUFFLE(2, 1, 0, 3));
	r[2] = _mm256_shuffle_epi32(r[2], _MM_SHUFFLE(1, 0, 3, 2));
	r[3] = _mm256_shuffle_epi32(r[3], _MM_SHUFFLE(0, 3, 2, 1));
}

#define RW_SHUFPS(a, b, imm) _mm256_castps_si256(_mm256_shuffle_ps( \
	_mm256_castsi256_ps(a), _mm256_castsi256_ps(b), (imm)))

/* The message layout above, for the next round. */
RW void rw_permute(__m256i m[4])
{
	__m256i a = m[0], b = m[1], c = m[2], d = m[3];

	m[0] = _mm256_shuffle_epi32(RW_SHUFPS(a, b, _MM_SHUFFLE(3, 1, 2, 1)),
				    _MM_SHUFFLE(1, 3, 2, 0));
	m[1] = _mm256_shuffle_epi32(
		RW_SHUFPS(a, RW_SHUFPS(c, d, _MM_SHUFFLE(2, 2, 1, 1)),
			  _MM_SHUFFLE(2, 0, 0, 3)),
		_MM_SHUFFLE(3, 1, 2, 0));
	m[2] = RW_SHUFPS(RW_SHUFPS(b, c, _MM_SHUFFLE(2, 2, 0, 0)), d,
			 _MM_SHUFFLE(3, 0, 2, 0));
	m[3] = RW_SHUFPS(RW_SHUFPS(d, b, _MM_SHUFFLE(2, 2, 1, 1)), c,
			 _MM_SHUFFLE(0, 3, 2, 0));
}

/* Block off of inputs lo and hi, in the message layout above. */
RW void rw_load(__m256i m[4], const uint8_t *lo, const uint8_t *hi,
		size_t off)
{
	__m256i w[4];

	for (int i = 0; i < 4; i++)
		w[i] = _mm256_inserti128_si256(
			_mm256_castsi128_si256(_mm_loadu_si128(
				(const __m128i *)(lo + off + 16 * i))),
			_mm_loadu_si128((const __m128i *)(hi + off + 16 * i)),
			1);
	m[0] = RW_SHUFPS(w[0], w[1], _MM_SHUFFLE(2, 0, 2, 0));
	m[1] = RW_SHUFPS(w[0], w[1], _MM_SHUFFLE(3, 1, 3, 1));
	m[2] = RW_SHUFPS(w[2], w[3], _MM_SHUFFLE(2, 0, 2, 0));
	m[3] = RW_SHUFPS(w[2], w[3], _MM_SHUFFLE(3, 1, 3, 1));
}

__attribute__((target("avx2"))) static void kernel4_avx2_rows(
	const uint8_t *const in[], size_t n, size_t blocks, uint64_t counter,
	int inc, uint32_t flags, uint32_t fstart, uint32_t fend, uint8_t *out)
{
	const __m256i iv0 = _mm256_setr_epi32(
		(int)IV[0], (int)IV[1], (int)IV[2], (int)IV[3],
		(int)IV[0], (int)IV[1], (int)IV[2], (int)IV[3]);
	const __m256i iv1 = _mm256_setr_epi32(
		(int)IV[4], (int)IV[5], (int)IV[6], (int)IV[7],
		(int)IV[4], (int)IV[5], (int)IV[6], (int)IV[7]);
	const uint8_t *p[4];
	uint64_t ctr[4];
	__m256i h[2][2];

	for (size_t i = 0; i < 4; i++) {
		p[i] = in[i < n ? i : n - 1];
		ctr[i] = counter + (inc ? i : 0);
	}
	for (int s = 0; s < 2; s++) {
		h[s][0] = iv0;
		h[s][1] = iv1;
	}
	for (size_t b = 0; b < blocks; b++) {
		int f = (int)(flags | (b == 0 ? fstart : 0) |
			      (b + 1 == blocks ? fend : 0));
		__m256i r[2][4], m[2][4];

		for (int s = 0; s < 2; s++) {
			uint64_t lo = ctr[2 * s], hi = ctr[2 * s + 1];

			rw_load(m[s], p[2 * s], p[2 * s + 1], 64 * b);
			r[s][0] = h[s][0];
			r[s][1] = h[s][1];
			r[s][2] = iv0;
			r[s][3] = _mm256_setr_epi32(
				(int)(uint32_t)lo, (int)(uint32_t)(lo >> 32),
				64, f, (int)(uint32_t)hi,
				(int)(uint32_t)(hi >> 32), 64, f);
		}
		_Pragma("GCC unroll 7")
		for (int round = 0; round < 7; round++) {
			rw_g1(r[0], m[0][0]);
			rw_g1(r[1], m[1][0]);
			rw_g2(r[0], m[0][1]);
			rw_g2(r[1], m[1][1]);
			rw_diagonalize(r[0]);
			rw_diagonalize(r[1]);
			rw_g1(r[0], m[0][2]);
			rw_g1(r[1], m[1][2]);
			rw_g2(r[0], m[0][3]);
			rw_g2(r[1], m[1][3]);
			rw_undiagonalize(r[0]);
			rw_undiagonalize(r[1]);
			if (round < 6) {
				rw_permute(m[0]);
				rw_permute(m[1]);
			}
		}
		for (int s = 0; s < 2; s++) {
			h[s][0] = _mm256_xor_si256(r[s][0], r[s][2]);
			h[s][1] = _mm256_xor_si256(r[s][1], r[s][3]);
		}
	}
	for (size_t i = 0; i < n; i++) {
		__m256i h0 = h[i / 2][0], h1 = h[i / 2][1];
		__m128i w0 = i % 2 ? _mm256_extracti128_si256(h0, 1)
				   : _mm256_castsi256_si128(h0);
		__m128i w1 = i % 2 ? _mm256_extracti128_si256(h1, 1)
				   : _mm256_castsi256_si128(h1);

		_mm_storeu_si128((__m128i *)(out + 32 * i), w0);
		_mm_storeu_si128((__m128i *)(out + 32 * i + 16), w1);
	}
}

#endif /* HAVE_SIMD */

/* ---- dispatch ------------------------------------------------------- */

struct impl {
	const char *name;
	kernel_fn *k16, *k8, *k4; /* NULL: this path has no such width */
};

enum { IMPL_PORTABLE, IMPL_SSE41, IMPL_AVX2, IMPL_AVX512, NIMPL };

static const struct impl impls[NIMPL] = {
	[IMPL_PORTABLE] = { "portable", NULL, NULL, NULL },
#ifdef HAVE_SIMD
	[IMPL_SSE41] = { "sse41", NULL, NULL, kernel4_sse41 },
	[IMPL_AVX2] = { "avx2", NULL, kernel8_avx2, kernel4_avx2_rows },
	[IMPL_AVX512] = { "avx512", kernel16_avx512, kernel8_avx512,
			  kernel4_avx512 },
#else
	[IMPL_SSE41] = { "sse41", NULL, NULL, NULL },
	[IMPL_AVX2] = { "avx2", NULL, NULL, NULL },
	[IMPL_AVX512] = { "avx512", NULL, NULL, NULL },
#endif
};

static int impl_supported(int i)
{
	if (i == IMPL_PORTABLE)
		return 1;
#ifdef HAVE_SIMD
	__builtin_cpu_init();
	switch (i) {
	case IMPL_SSE41:
		return __builtin_cpu_supports("sse4.1");
	case IMPL_AVX2:
		return __builtin_cpu_supports("avx2");
	case IMPL_AVX512:
		return __builtin_cpu_supports("avx2") &&
		       __builtin_cpu_supports("avx512f") &&
		       __builtin_cpu_supports("avx512vl");
	}
#endif
	return 0;
}

static int impl_by_name(const char *name)
{
	for (int i = 0; i < NIMPL; i++)
		if (strcmp(impls[i].name, name) == 0)
			return i;
	return -1;
}

static pthread_once_t impl_once = PTHREAD_ONCE_INIT;
static const struct impl *auto_impl; /* set once, under impl_once */
static const struct impl *active;    /* read and written atomically */

static void impl_choose(void)
{
	const char *env = getenv("APPLIANCE_BLAKE3_IMPL");
	int i = env ? impl_by_name(env) : -1;

	if (i < 0 || !impl_supported(i))
		for (i = NIMPL - 1; i > 0 && !impl_supported(i); i--)
			;
	auto_impl = &impls[i];
	__atomic_store_n(&active, auto_impl, __ATOMIC_RELEASE);
}

/* Every cluster read hashes: skip pthread_once once a path is chosen. */
static inline const struct impl *impl_get(void)
{
	const struct impl *im = __atomic_load_n(&active, __ATOMIC_ACQUIRE);

	if (im)
		return im;
	pthread_once(&impl_once, impl_choose);
	return __atomic_load_n(&active, __ATOMIC_ACQUIRE);
}

const char *blake3__impl(void)
{
	return impl_get()->name;
}

int blake3__force_impl(const char *name)
{
	int i;

	pthread_once(&impl_once, impl_choose);
	if (!name) {
		__atomic_store_n(&active, auto_impl, __ATOMIC_RELEASE);
		return 0;
	}
	i = impl_by_name(name);
	if (i < 0 || !impl_supported(i))
		return -1;
	__atomic_store_n(&active, &impls[i], __ATOMIC_RELEASE);
	return 0;
}

/* kernel_fn over any n inputs: input 0 at first if that is not NULL,
 * the others at in + stride * i (or i - 1 after first).  The widest
 * kernel the path has takes full batches, a narrower one (or the portable
 * code for a single input) the rest unless most of a wide batch would be
 * used anyway. */
static void hash_many(const struct impl *im, const uint8_t *first,
		      const uint8_t *in, size_t stride, size_t n,
		      size_t blocks, uint64_t counter, int inc, uint32_t flags,
		      uint32_t fstart, uint32_t fend, uint8_t *out)
{
	const uint8_t *ptrs[16];

	while (n) {
		kernel_fn *k = kernel1_portable;
		size_t w = 1;

		if (im->k16 && n > 8) {
			k = im->k16;
			w = 16;
		} else if (im->k8 && n > 4) {
			k = im->k8;
			w = 8;
		} else if (im->k4 && n > 1) {
			k = im->k4;
			w = 4;
		}
		if (w > n)
			w = n;
		for (size_t i = 0; i < w; i++) {
			if (first) {
				ptrs[i] = first;
				first = NULL;
			} else {
				ptrs[i] = in;
				in += stride;
			}
		}
		k(ptrs, w, blocks, counter, inc, flags, fstart, fend, out);
		out += 32 * w;
		if (inc)
			counter += w;
		n -= w;
	}
}

/* Merge the n >= 2 CVs at cvs (overwritten) one tree level at a time
 * down to the CV of their subtree, or with flags ROOT the digest. */
static void merge_cvs(const struct impl *im, uint8_t *cvs, size_t n,
		      uint32_t flags, uint8_t out[32])
{
	while (n > 2) {
		size_t pairs = n / 2;

		hash_many(im, NULL, cvs, 64, pairs, 1, 0, 0, PARENT, 0, 0,
			  cvs);
		if (n & 1)
			memmove(cvs + 32 * pairs, cvs + 32 * (n - 1), 32);
		n = pairs + (n & 1);
	}
	parent_cv(cvs, flags, out);
}

/* The CV (flags 0) or digest (ROOT) of the subtree of len bytes at p,
 * more than one chunk and at most a batch, whose first chunk is number
 * first_chunk: every chunk goes through the kernels (none is the root),
 * then the tree is merged level by level. */
static void subtree_of_chunks(const struct impl *im, const uint8_t *p,
			      size_t len, uint64_t first_chunk,
			      uint32_t flags, uint8_t out[32])
{
	uint8_t cvs[MAX_BATCH_CHUNKS * 32];
	size_t full = len / BLAKE3__CHUNK_LEN, n = full;
	uint32_t cv[8];

	hash_many(im, NULL, p, BLAKE3__CHUNK_LEN, full, 16, first_chunk, 1, 0,
		  CHUNK_START, CHUNK_END, cvs);
	if (len % BLAKE3__CHUNK_LEN) {
		chunk_cv(p + full * BLAKE3__CHUNK_LEN, len % BLAKE3__CHUNK_LEN,
			 first_chunk + full, 0, cv);
		store_cv(cvs + 32 * full, cv);
		n++;
	}
	merge_cvs(im, cvs, n, flags, out);
}

/* ---- streaming ------------------------------------------------------ */

/*
 * The current chunk's bytes wait raw in h->chunk until more input shows
 * that it is not the last one (the last gets CHUNK_END, and ROOT if it is
 * the only one).  Then it joins the next batch of whole chunks through
 * the kernels, so input given in large pieces is hashed as fast as one
 * buffer; small pieces only cost the copy.  Completed subtrees go on a
 * stack of CVs, merged eagerly (spec section 5.1.2).
 */

void blake3__init(struct blake3__hasher *h)
{
	h->chunk_counter = 0;
	h->chunk_len = 0;
	h->stack_len = 0;
}

/*
 * Hash count whole chunks, none of them the last of the input (the first
 * at first if not NULL, the others at p), with the kernels, and merge
 * them into the CV stack.
 *
 * The stack holds one complete subtree per set bit of chunk_counter,
 * largest first (merged eagerly).  The new CVs are reduced one tree level
 * at a time, all of a level in one batch: at level L a node's index x
 * counts subtrees of 2^L chunks; a first node with odd x is a right child
 * whose left sibling is the top of the stack (pulled into the batch); a
 * last node with even x is a left child still waiting for its sibling
 * (set aside, and pushed once the batch is done: the stack then again
 * holds one subtree per set bit of the new chunk count).
 */
static void add_chunks(struct blake3__hasher *h, const uint8_t *first,
		       const uint8_t *p, size_t count)
{
	const struct impl *im = impl_get();
	/* slot 0 is for a left sibling pulled from the stack */
	uint8_t cvs[(MAX_BATCH_CHUNKS + 1) * 32];
	uint8_t waiting[64][32];
	unsigned nwaiting = 0;
	uint64_t x = h->chunk_counter;
	size_t start = 1, n = count;

	hash_many(im, first, p, BLAKE3__CHUNK_LEN, count, 16, x, 1, 0,
		  CHUNK_START, CHUNK_END, cvs + 32);
	while (n) {
		size_t pairs;

		if ((x & 1) && h->stack_len) {
			start--;
			memcpy(cvs + 32 * start, h->cv_stack[--h->stack_len],
			       32);
			x--;
			n++;
		}
		if (n & 1) {
			memcpy(waiting[nwaiting++], cvs + 32 * (start + n - 1),
			       32);
			n--;
		}
		pairs = n / 2;
		/* outputs overwrite inputs already read (see kernel_fn) */
		hash_many(im, NULL, cvs + 32 * start, 64, pairs, 1, 0, 0, PARENT,
			  0, 0, cvs + 32);
		start = 1;
		x >>= 1;
		n = pairs;
	}
	/* the highest level was set aside last and is leftmost */
	while (nwaiting)
		memcpy(h->cv_stack[h->stack_len++], waiting[--nwaiting], 32);
	h->chunk_counter += count;
}

void blake3__update(struct blake3__hasher *h, const void *data, size_t len)
{
	const uint8_t *p = data;

	while (len) {
		/* Whole chunks of the input go straight to the kernels,
		 * after the buffered chunk if it is complete; at least one
		 * byte is kept back, so the last chunk is never among
		 * them. */
		int full = h->chunk_len == BLAKE3__CHUNK_LEN;

		if (full || (h->chunk_len == 0 && len > BLAKE3__CHUNK_LEN)) {
			size_t count = (len - 1) / BLAKE3__CHUNK_LEN;

			if (count > MAX_BATCH_CHUNKS - (size_t)full)
				count = MAX_BATCH_CHUNKS - (size_t)full;
			add_chunks(h, full ? h->chunk : NULL, p, count + full);
			h->chunk_len = 0;
			p += count * BLAKE3__CHUNK_LEN;
			len -= count * BLAKE3__CHUNK_LEN;
			continue;
		}
		size_t take = BLAKE3__CHUNK_LEN - (size_t)h->chunk_len;

		if (take > len)
			take = len;
		memcpy(h->chunk + h->chunk_len, p, take);
		h->chunk_len = (uint16_t)(h->chunk_len + take);
		p += take;
		len -= take;
	}
}

void blake3__final(const struct blake3__hasher *h, uint8_t out[BLAKE3__OUT_LEN])
{
	uint8_t block[64];
	uint32_t cv[8];

	if (h->stack_len == 0) {
		chunk_cv(h->chunk, h->chunk_len, h->chunk_counter, ROOT, cv);
		store_cv(out, cv);
		return;
	}
	/* The last chunk, then up the stack from its right edge. */
	chunk_cv(h->chunk, h->chunk_len, h->chunk_counter, 0, cv);
	store_cv(block + 32, cv);
	for (int i = h->stack_len - 1; i >= 0; i--) {
		memcpy(block, h->cv_stack[i], 32);
		parent_cv(block, i == 0 ? ROOT : 0, block + 32);
	}
	memcpy(out, block + 32, BLAKE3__OUT_LEN);
}

/* ---- one shot ------------------------------------------------------- */

void blake3__hash(const void *data, size_t len, uint8_t out[BLAKE3__OUT_LEN])
{
	uint32_t cv[8];

	if (len <= BLAKE3__CHUNK_LEN) {
		chunk_cv(data, len, 0, ROOT, cv);
		store_cv(out, cv);
		return;
	}
	if (len > (size_t)MAX_BATCH_CHUNKS * BLAKE3__CHUNK_LEN) {
		struct blake3__hasher h;

		blake3__init(&h);
		blake3__update(&h, data, len);
		blake3__final(&h, out);
		return;
	}
	subtree_of_chunks(impl_get(), data, len, 0, ROOT, out);
}

/* ---- subtrees ------------------------------------------------------- */

void blake3__subtree_cv(const void *data, size_t len, uint64_t first_chunk,
			uint8_t out[BLAKE3__OUT_LEN])
{
	uint32_t cv[8];

	if (len <= BLAKE3__CHUNK_LEN) {
		chunk_cv(data, len, first_chunk, 0, cv);
		store_cv(out, cv);
		return;
	}
	if (len > (size_t)MAX_BATCH_CHUNKS * BLAKE3__CHUNK_LEN) {
		memset(out, 0, BLAKE3__OUT_LEN);   /* outside the contract */
		return;
	}
	subtree_of_chunks(impl_get(), data, len, first_chunk, 0, out);
}

/*
 * All parts at once: the chunks of up to a batch of whole parts go
 * through the kernels together (a 4 KiB part alone would fill only four
 * lanes), then each part's chunk CVs are reduced to its CV.
 */
void blake3__subtree_cvs(const void *data, size_t len, size_t subtree_len,
			 uint8_t *cvs)
{
	const uint8_t *p = data;
	const struct impl *im = impl_get();
	size_t per = subtree_len / BLAKE3__CHUNK_LEN;   /* chunks per part */
	size_t batch;                                   /* parts per batch */
	uint8_t ccv[MAX_BATCH_CHUNKS * 32];
	uint64_t chunk = 0;

	if (per == 0 || per > MAX_BATCH_CHUNKS) {   /* outside the contract */
		if (subtree_len)
			memset(cvs, 0,
			       32 * ((len + subtree_len - 1) / subtree_len));
		return;
	}
	batch = MAX_BATCH_CHUNKS / per;
	while (len >= subtree_len && per > 1) {
		/* whole parts, a batch at a time (a part is never the root,
		 * so the last one may be among them) */
		size_t parts = len / subtree_len < batch ? len / subtree_len
							 : batch;

		hash_many(im, NULL, p, BLAKE3__CHUNK_LEN, per * parts, 16,
			  chunk, 1, 0, CHUNK_START, CHUNK_END, ccv);
		for (size_t k = 0; k < parts; k++) {
			merge_cvs(im, ccv + 32 * per * k, per, 0, cvs);
			cvs += 32;
		}
		p += subtree_len * parts;
		len -= subtree_len * parts;
		chunk += per * parts;
	}
	while (len) {
		size_t l = len < subtree_len ? len : subtree_len;

		blake3__subtree_cv(p, l, chunk, cvs);
		cvs += 32;
		p += l;
		len -= l;
		chunk += per;
	}
}

void blake3__root_from_cvs(uint8_t *cvs, size_t n,
			   uint8_t out[BLAKE3__OUT_LEN])
{
	if (n < 2) {
		memset(out, 0, BLAKE3__OUT_LEN);   /* outside the contract */
		return;
	}
	merge_cvs(impl_get(), cvs, n, ROOT, out);
}
