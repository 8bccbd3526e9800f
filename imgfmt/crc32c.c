/*
 * crc32c.c - CRC-32C with a hardware fast path.
 *
 * AVD verifies a CRC-32C on every 4 KiB read, so this sits on the hot path
 * of random reads.  The crc32 instruction has a latency of three cycles
 * but a throughput of one per cycle, so long buffers are split into three
 * interleaved streams whose results are then merged with the usual
 * GF(2) "shift a CRC by n zero bytes" arithmetic (as zlib's crc32_combine
 * does).  That roughly triples the speed over a single dependent chain.
 */
#include <pthread.h>
#include <string.h>

#include "crc32c.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include <nmmintrin.h>
#include <wmmintrin.h>
#endif

#define CRC32C_POLY 0x82f63b78u /* reflected Castagnoli polynomial */

static uint32_t crc32c_table[8][256];
static uint32_t x2n_table[32];  /* x^(2^n) mod P, for shifting CRCs */
static int have_sse42, have_pclmul, have_vpclmul;
static uint64_t k2048_lo, k2048_hi;
/* Folding constants x^n mod P (32-bit reflected) for pclmul; see below. */
static uint64_t k512_lo, k512_hi, k128_lo, k128_hi;
static pthread_once_t crc32c_once = PTHREAD_ONCE_INIT;
static int crc32c_ready; /* set (release) once the tables are built */

/* a(x) * b(x) mod P(x), both in the reflected representation. */
static uint32_t multmodp(uint32_t a, uint32_t b)
{
	uint32_t m = 1u << 31, p = 0;

	for (;;) {
		if (a & m) {
			p ^= b;
			if ((a & (m - 1)) == 0)
				break;
		}
		m >>= 1;
		b = (b & 1) ? (b >> 1) ^ CRC32C_POLY : b >> 1;
	}
	return p;
}

/* x^(n * 2^k) mod P: with k = 3, the operator that appends n zero bytes. */
static uint32_t x2nmodp(uint64_t n, unsigned k)
{
	uint32_t p = 1u << 31; /* x^0 */

	while (n) {
		if (n & 1)
			p = multmodp(x2n_table[k & 31], p);
		n >>= 1;
		k++;
	}
	return p;
}

static void crc32c_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int j = 0; j < 8; j++)
			c = (c & 1) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
		crc32c_table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = crc32c_table[0][i];
		for (int t = 1; t < 8; t++) {
			c = crc32c_table[0][c & 0xff] ^ (c >> 8);
			crc32c_table[t][i] = c;
		}
	}
	uint32_t p = 1u << 30; /* x^1 */
	x2n_table[0] = p;
	for (int n = 1; n < 32; n++)
		x2n_table[n] = p = multmodp(p, p);
#if defined(__x86_64__)
	__builtin_cpu_init();
	have_sse42 = __builtin_cpu_supports("sse4.2");
	have_pclmul = have_sse42 && __builtin_cpu_supports("pclmul");
	k512_lo = x2nmodp(512 + 31, 0);
	k512_hi = x2nmodp(512 - 33, 0);
	k128_lo = x2nmodp(128 + 31, 0);
	k128_hi = x2nmodp(128 - 33, 0);
	k2048_lo = x2nmodp(2048 + 31, 0);
	k2048_hi = x2nmodp(2048 - 33, 0);
	have_vpclmul = have_pclmul && __builtin_cpu_supports("avx512f") &&
		       __builtin_cpu_supports("vpclmulqdq");
#endif
	__atomic_store_n(&crc32c_ready, 1, __ATOMIC_RELEASE);
}

/* Every 4 KiB read checks a CRC: skip the call into pthread_once once the
 * tables exist. */
static inline void crc32c_setup(void)
{
	if (!__atomic_load_n(&crc32c_ready, __ATOMIC_ACQUIRE))
		pthread_once(&crc32c_once, crc32c_init);
}

/* Slicing-by-8 on the raw (non-inverted) register. */
static uint32_t crc32c_sw_raw(uint32_t c, const uint8_t *p, size_t len)
{
	while (len && ((uintptr_t)p & 7)) {
		c = crc32c_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
		len--;
	}
	while (len >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		w ^= c;
		c = crc32c_table[7][w & 0xff] ^
		    crc32c_table[6][(w >> 8) & 0xff] ^
		    crc32c_table[5][(w >> 16) & 0xff] ^
		    crc32c_table[4][(w >> 24) & 0xff] ^
		    crc32c_table[3][(w >> 32) & 0xff] ^
		    crc32c_table[2][(w >> 40) & 0xff] ^
		    crc32c_table[1][(w >> 48) & 0xff] ^
		    crc32c_table[0][w >> 56];
		p += 8;
		len -= 8;
	}
	while (len--)
		c = crc32c_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
	return c;
}

uint32_t crc32c__sw(uint32_t crc, const void *buf, size_t len)
{
	crc32c_setup();
	return ~crc32c_sw_raw(~crc, buf, len);
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t crc32c_hw_raw(uint32_t c, const uint8_t *p, size_t len)
{
	uint64_t c64;

	while (len && ((uintptr_t)p & 7)) {
		c = _mm_crc32_u8(c, *p++);
		len--;
	}
	c64 = c;
	while (len >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		c64 = _mm_crc32_u64(c64, w);
		p += 8;
		len -= 8;
	}
	c = (uint32_t)c64;
	while (len--)
		c = _mm_crc32_u8(c, *p++);
	return c;
}

/* Three independent streams over equal thirds, merged afterwards. */
__attribute__((target("sse4.2")))
static uint32_t crc32c_hw(uint32_t crc, const uint8_t *p, size_t len)
{
	static __thread uint64_t cached_len;
	static __thread uint32_t cached_shift;

	if (len < 768)
		return ~crc32c_hw_raw(~crc, p, len);
	size_t third = (len / 24) * 8; /* multiple of 8 bytes */
	const uint8_t *a = p, *b = p + third, *c = p + 2 * third;
	uint64_t ca = ~crc, cb = 0xffffffffu, cc = 0xffffffffu;

	for (size_t i = 0; i < third; i += 8) {
		uint64_t wa, wb, wc;
		memcpy(&wa, a + i, 8);
		memcpy(&wb, b + i, 8);
		memcpy(&wc, c + i, 8);
		ca = _mm_crc32_u64(ca, wa);
		cb = _mm_crc32_u64(cb, wb);
		cc = _mm_crc32_u64(cc, wc);
	}
	if (cached_len != third) {
		cached_len = third;
		cached_shift = x2nmodp(third, 3);
	}
	/* Standard (inverted) CRCs combine as crc(AB) = shift(crc(A)) ^
	 * crc(B) when both start from the standard initial value. */
	uint32_t r = multmodp(cached_shift, ~(uint32_t)ca) ^ ~(uint32_t)cb;
	r = multmodp(cached_shift, r) ^ ~(uint32_t)cc;
	size_t done = 3 * third;
	return ~crc32c_hw_raw(~r, p + done, len - done);
}
#endif

#if defined(__x86_64__)
/*
 * Carry-less multiplication folding (the method of Intel's "Fast CRC
 * Computation Using PCLMULQDQ"), for CPUs whose crc32 instruction is slow
 * to issue (on AMD Zen it issues once per three cycles, so interleaving
 * does not help there).
 *
 * A 16-byte lane V loaded little-endian holds, in reflected order, the
 * polynomial L(x)*x^64 + H(x) (L its low qword).  Moving V forward by D
 * bits onto lane W means adding V*x^D, which modulo P is
 * L*(x^(D+64) mod P) + H*(x^D mod P).  clmul of a reflected 64-bit value
 * by a 32-bit reflected constant lands 33 bits short of W's alignment, so
 * the constants are x^(D+31) and x^(D-33).  The final 16-byte lane is then
 * simply run through the crc32 instruction.
 */
__attribute__((target("sse4.2,pclmul")))
static inline __m128i fold(__m128i v, __m128i k, __m128i w)
{
	return _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(v, k, 0x00),
					   _mm_clmulepi64_si128(v, k, 0x11)),
			     w);
}

__attribute__((target("sse4.2,pclmul")))
static uint32_t crc32c_pclmul_raw(uint32_t r, const uint8_t *p, size_t len)
{
	const __m128i k512 = _mm_set_epi64x((long long)k512_hi,
					    (long long)k512_lo);
	const __m128i k128 = _mm_set_epi64x((long long)k128_hi,
					    (long long)k128_lo);
	__m128i x0 = _mm_loadu_si128((const __m128i *)p);
	__m128i x1 = _mm_loadu_si128((const __m128i *)(p + 16));
	__m128i x2 = _mm_loadu_si128((const __m128i *)(p + 32));
	__m128i x3 = _mm_loadu_si128((const __m128i *)(p + 48));

	x0 = _mm_xor_si128(x0, _mm_cvtsi32_si128((int)r));
	p += 64;
	len -= 64;
	while (len >= 64) {
		x0 = fold(x0, k512, _mm_loadu_si128((const __m128i *)p));
		x1 = fold(x1, k512, _mm_loadu_si128((const __m128i *)(p + 16)));
		x2 = fold(x2, k512, _mm_loadu_si128((const __m128i *)(p + 32)));
		x3 = fold(x3, k512, _mm_loadu_si128((const __m128i *)(p + 48)));
		p += 64;
		len -= 64;
	}
	x0 = fold(x0, k128, x1);
	x0 = fold(x0, k128, x2);
	x0 = fold(x0, k128, x3);
	while (len >= 16) {
		x0 = fold(x0, k128, _mm_loadu_si128((const __m128i *)p));
		p += 16;
		len -= 16;
	}
	uint64_t c = _mm_crc32_u64(0, (uint64_t)_mm_cvtsi128_si64(x0));
	c = _mm_crc32_u64(c, (uint64_t)_mm_extract_epi64(x0, 1));
	return crc32c_hw_raw((uint32_t)c, p, len);
}

/* The same folding four 128-bit lanes at a time with AVX-512: four
 * 512-bit accumulators take 256 bytes per iteration, are folded into one
 * 512-bit value, whose four lanes finish on the 128-bit path. */
__attribute__((target("sse4.2,pclmul,avx512f,vpclmulqdq")))
static inline __m512i fold512(__m512i v, __m512i k, __m512i w)
{
	return _mm512_xor_si512(_mm512_xor_si512(
		_mm512_clmulepi64_epi128(v, k, 0x00),
		_mm512_clmulepi64_epi128(v, k, 0x11)), w);
}

__attribute__((target("sse4.2,pclmul,avx512f,vpclmulqdq")))
static uint32_t crc32c_vpclmul_raw(uint32_t r, const uint8_t *p, size_t len)
{
	const __m512i k2048 = _mm512_broadcast_i32x4(
		_mm_set_epi64x((long long)k2048_hi, (long long)k2048_lo));
	const __m512i k512 = _mm512_broadcast_i32x4(
		_mm_set_epi64x((long long)k512_hi, (long long)k512_lo));
	const __m128i k128 = _mm_set_epi64x((long long)k128_hi,
					    (long long)k128_lo);
	__m512i z0 = _mm512_loadu_si512(p);
	__m512i z1 = _mm512_loadu_si512(p + 64);
	__m512i z2 = _mm512_loadu_si512(p + 128);
	__m512i z3 = _mm512_loadu_si512(p + 192);

	z0 = _mm512_xor_si512(z0, _mm512_zextsi128_si512(
					  _mm_cvtsi32_si128((int)r)));
	p += 256;
	len -= 256;
	while (len >= 256) {
		z0 = fold512(z0, k2048, _mm512_loadu_si512(p));
		z1 = fold512(z1, k2048, _mm512_loadu_si512(p + 64));
		z2 = fold512(z2, k2048, _mm512_loadu_si512(p + 128));
		z3 = fold512(z3, k2048, _mm512_loadu_si512(p + 192));
		p += 256;
		len -= 256;
	}
	z0 = fold512(z0, k512, z1);
	z0 = fold512(z0, k512, z2);
	z0 = fold512(z0, k512, z3);
	while (len >= 64) {
		z0 = fold512(z0, k512, _mm512_loadu_si512(p));
		p += 64;
		len -= 64;
	}
	__m128i x = _mm512_extracti32x4_epi32(z0, 0);
	x = fold(x, k128, _mm512_extracti32x4_epi32(z0, 1));
	x = fold(x, k128, _mm512_extracti32x4_epi32(z0, 2));
	x = fold(x, k128, _mm512_extracti32x4_epi32(z0, 3));
	while (len >= 16) {
		x = fold(x, k128, _mm_loadu_si128((const __m128i *)p));
		p += 16;
		len -= 16;
	}
	uint64_t c = _mm_crc32_u64(0, (uint64_t)_mm_cvtsi128_si64(x));
	c = _mm_crc32_u64(c, (uint64_t)_mm_extract_epi64(x, 1));
	return crc32c_hw_raw((uint32_t)c, p, len);
}
#endif

uint32_t crc32c(uint32_t crc, const void *buf, size_t len)
{
	crc32c_setup();
#if defined(__x86_64__)
	if (have_vpclmul && len >= 256)
		return ~crc32c_vpclmul_raw(~crc, buf, len);
	if (have_pclmul && len >= 128)
		return ~crc32c_pclmul_raw(~crc, buf, len);
	if (have_sse42)
		return crc32c_hw(crc, buf, len);
#endif
	return ~crc32c_sw_raw(~crc, buf, len);
}

/* One implementation on its own, for tests (crc32c.h). */
int crc32c__path(int path, uint32_t crc, const void *buf, size_t len,
		 uint32_t *out)
{
	crc32c_setup();
	switch (path) {
	case CRC32C_PATH_SW:
		*out = ~crc32c_sw_raw(~crc, buf, len);
		return 0;
#if defined(__x86_64__)
	case CRC32C_PATH_SSE42:
		if (!have_sse42)
			return -1;
		*out = crc32c_hw(crc, buf, len);
		return 0;
	case CRC32C_PATH_PCLMUL:
		if (!have_pclmul)
			return -1;
		if (len < 64)
			return -2;
		*out = ~crc32c_pclmul_raw(~crc, buf, len);
		return 0;
	case CRC32C_PATH_VPCLMUL:
		if (!have_vpclmul)
			return -1;
		if (len < 256)
			return -2;
		*out = ~crc32c_vpclmul_raw(~crc, buf, len);
		return 0;
#endif
	default:
		return -1;
	}
}
