/* qmm: quantized-weight matrix products, llama.cpp's arithmetic (qmm.h).
 *
 * Two implementations of one definition, which give the same bits:
 *
 * Portable C. A weight row is unpacked, block by block, into a common
 * integer form (unpack_row): its quants as int8 (offsets such as Q4_0's -8
 * applied), an integer scale and an integer min per 16 values, and per
 * block the f32 scale(s). The product of that form with a quantized
 * activation row (dot_row) is the same for every weight type: integer sums
 * per 16 values, multiplied by the integer scales, summed per block, then
 * the block's f32 scaling. qmm_dot_ref is this code whatever the build.
 *
 * AVX-512 VNNI (the "panel" path, below the portable code). Sixteen weight
 * rows are unpacked together into a panel whose vectors hold one dword per
 * row: for every block and every group of 4 positions (the unit of the
 * float lanes, see float_mode), the 4 quants of each of the 16 rows. One
 * broadcast dword of an activation row times such a vector (vpdpbusd, or
 * vpmaddubsw + vpdpwssd where integer sub-block scales multiply) gives the
 * integer lane sums of 16 outputs at once, and the float work of a block
 * (conversion, the fma into the 8 lane accumulators) is done for 16
 * outputs per instruction. Integers are exact, and the float operations
 * are the portable code's, in its order, one output per vector element, so
 * the bits are the same (tested). A panel is unpacked once per call and
 * reused by every activation row.
 *
 * What shaped it, on the Zen 5 it was tuned on (2 cores; bench-qmm):
 * vpdpbusd, vpdpwssd, vpmaddubsw and vfmadd share two pipes, vcvtdq2ps and
 * vpshufd run on others, two vector loads and one 64-byte store issue a
 * cycle. So the kernels take activation dwords from 16-byte broadcasts by
 * vpshufd rather than a broadcast load each; the unpacking stores as little
 * as it can (Q4_K keeps its nibbles packed); a legacy lane costs 2
 * multiply-pipe operations per 64 products (vpdpbusd, the fma dot_row's
 * order needs per lane and block) and a K lane 2 (vpmaddubsw, vpdpwssd),
 * against 4 fmas for the f32 path. With a batch of one the rows come from
 * memory: each task prefetches the next panel a part per block. With many
 * activation rows a task unpacks several panels and runs chunks of the rows
 * against all of them. Figures in the commit history and bench-qmm. */
#include "qmm.h"
#include "lib/mg_f16.h"

#include "gguf.h"
#include "quant.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* QMM_NO_SIMD builds the portable code alone (the tests build this file
 * that way a second time and compare the two). */
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__) && !defined(QMM_NO_SIMD)
#include <immintrin.h>
#define QMM_SIMD 1
#else
#define QMM_SIMD 0
#endif

const char *qmm_kernel_name(void)
{
	return QMM_SIMD ? "avx512-vnni" : "generic";
}

/* ---------------- activation formats ---------------- */

typedef struct a8_0 {
	float d;		/* f16-rounded */
	int8_t qs[32];
} a8_0_t;

typedef struct a8_1 {
	float d;		/* f16-rounded */
	float s;		/* f16(d * sum qs), d before rounding */
	int8_t qs[32];
} a8_1_t;

typedef struct a8_k {
	float d;
	int16_t bsums[16];	/* sum of qs per 16 */
	int8_t qs[256];
} a8_k_t;

int qmm_act_for(uint32_t wtype)
{
	switch (wtype) {
	case QUANT_Q4_0: case QUANT_Q5_0: case QUANT_Q8_0: case QUANT_IQ4_NL:
		return QMM_A8_0;
	case QUANT_Q4_1: case QUANT_Q5_1:
		return QMM_A8_1;
	case QUANT_Q2_K: case QUANT_Q3_K: case QUANT_Q4_K: case QUANT_Q5_K: case QUANT_Q6_K:
	case QUANT_IQ4_XS:
		return QMM_A8_K;
	default:
		return -1;
	}
}

size_t qmm_act_row_bytes(enum qmm_act a, int K)
{
	switch (a) {
	case QMM_A8_0: return K % 32 == 0 ? (size_t)(K / 32) * sizeof(a8_0_t) : 0;
	case QMM_A8_1: return K % 32 == 0 ? (size_t)(K / 32) * sizeof(a8_1_t) : 0;
	case QMM_A8_K: return K % 256 == 0 ? (size_t)(K / 256) * sizeof(a8_k_t) : 0;
	default: return 0;
	}
}

#if QMM_SIMD
/* vcvtps2ph rounds to nearest even as mg_f32_to_f16 does (subnormals,
 * overflow to inf and NaN alike), and vcvtph2ps is exact. */
static float f16_round(float x)
{
	return _cvtsh_ss(_cvtss_sh(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

/* ggml's x86 quantize_row_q8_0 / q8_1 for one block of 32: scale 127 /
 * amax, round half to even (vcvtps2dq under the default rounding, as
 * lrintf). The maximum skips NaNs as the scalar comparison does. Returns
 * the unrounded d; *ret_sum = sum of q. */
static float quantize32(const float *x, int8_t *q, int *ret_sum)
{
	__m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
	__m512 m = _mm512_max_ps(_mm512_abs_ps(x0), _mm512_setzero_ps());
	m = _mm512_max_ps(_mm512_abs_ps(x1), m);
	float amax = _mm512_reduce_max_ps(m);
	float d = amax / 127.0f;
	__m512 id = _mm512_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
	__m128i q0 = _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(x0, id)));
	__m128i q1 = _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(x1, id)));
	_mm_storeu_si128((__m128i *)q, q0);
	_mm_storeu_si128((__m128i *)(q + 16), q1);
	*ret_sum = _mm512_reduce_add_epi32(_mm512_add_epi32(_mm512_cvtepi8_epi32(q0), _mm512_cvtepi8_epi32(q1)));
	return d;
}

/* The sums of 16 vectors: element i is the sum of v[i]'s 16 (a tree of
 * unpacks and lane shuffles, 45 instructions instead of 16 reductions). */
static inline __m512i hsum16(const __m512i *v)
{
	__m512i a[8], b[4];
#pragma GCC unroll 8
	for (int j = 0; j < 8; j++)
		a[j] = _mm512_add_epi32(_mm512_unpacklo_epi32(v[2 * j], v[2 * j + 1]),
					_mm512_unpackhi_epi32(v[2 * j], v[2 * j + 1]));
	/* b[k], 128-bit lane L: the sums over lane L of v[4k .. 4k+3] */
#pragma GCC unroll 4
	for (int k = 0; k < 4; k++)
		b[k] = _mm512_add_epi32(_mm512_unpacklo_epi64(a[2 * k], a[2 * k + 1]),
					_mm512_unpackhi_epi64(a[2 * k], a[2 * k + 1]));
	__m512i q0 = _mm512_add_epi32(_mm512_shuffle_i32x4(b[0], b[1], _MM_SHUFFLE(2, 0, 2, 0)),
				      _mm512_shuffle_i32x4(b[0], b[1], _MM_SHUFFLE(3, 1, 3, 1)));
	__m512i q1 = _mm512_add_epi32(_mm512_shuffle_i32x4(b[2], b[3], _MM_SHUFFLE(2, 0, 2, 0)),
				      _mm512_shuffle_i32x4(b[2], b[3], _MM_SHUFFLE(3, 1, 3, 1)));
	return _mm512_add_epi32(_mm512_shuffle_i32x4(q0, q1, _MM_SHUFFLE(2, 0, 2, 0)),
				_mm512_shuffle_i32x4(q0, q1, _MM_SHUFFLE(3, 1, 3, 1)));
}

/* ggml's quantize_row_q8_K for one block of 256: the first value of the
 * largest magnitude sets the scale -127 / max; q = min(127, round half
 * even(scale * x)) (its nearest_int, which vcvtps2dq equals for |v| <
 * 2^22). Returns d; 0 and all zero for a block of zeros. */
static float quantize256(const float *x, int8_t *q, int16_t *bsums)
{
	__m512 m = _mm512_setzero_ps();
	for (int i = 0; i < 16; i++)
		m = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + 16 * i)), m);
	float amax = _mm512_reduce_max_ps(m);
	if (amax == 0.0f) {
		memset(q, 0, 256);
		memset(bsums, 0, 16 * sizeof(int16_t));
		return 0.0f;
	}
	float max = 0.0f;
	for (int i = 0; i < 16; i++) {
		__mmask16 k = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_loadu_ps(x + 16 * i)), _mm512_set1_ps(amax),
						 _CMP_EQ_OQ);
		if (k != 0) {
			max = x[16 * i + __builtin_ctz(k)];
			break;
		}
	}
	float iscale = -127.0f / max;
	__m512 vs = _mm512_set1_ps(iscale);
	__m512i v[16];
#pragma GCC unroll 16
	for (int i = 0; i < 16; i++) {
		__m512i t = _mm512_cvtps_epi32(_mm512_mul_ps(vs, _mm512_loadu_ps(x + 16 * i)));
		t = _mm512_min_epi32(t, _mm512_set1_epi32(127));
		_mm_storeu_si128((__m128i *)(q + 16 * i), _mm512_cvtepi32_epi8(t));
		v[i] = _mm512_srai_epi32(_mm512_slli_epi32(t, 24), 24);	/* the int8 stored */
	}
	_mm256_storeu_si256((__m256i *)bsums, _mm512_cvtepi32_epi16(hsum16(v)));
	return 1.0f / iscale;
}
#else
static float f16_round(float x)
{
	return mg_f16_to_f32(mg_f32_to_f16(x));
}

/* ggml's x86 quantize_row_q8_0 / q8_1: scale 127 / amax, round half to even. */
static float quantize32(const float *x, int8_t *q, int *ret_sum)
{
	float amax = 0.0f;
	for (int j = 0; j < 32; j++) {
		float a = fabsf(x[j]);
		amax = a > amax ? a : amax;
	}
	float d = amax / 127.0f;
	float id = amax != 0.0f ? 127.0f / amax : 0.0f;
	int sum = 0;
	for (int j = 0; j < 32; j++) {
		q[j] = (int8_t)lrintf(x[j] * id);
		sum += q[j];
	}
	*ret_sum = sum;
	return d;
}

/* ggml's nearest_int: round half to even through the float adder. */
static int nearest_int(float v)
{
	float t = v + 12582912.0f;
	int32_t i;
	memcpy(&i, &t, 4);
	return (i & 0x007fffff) - 0x00400000;
}

/* ggml's quantize_row_q8_K for one block of 256. */
static float quantize256(const float *x, int8_t *q, int16_t *bsums)
{
	float amax = 0.0f, max = 0.0f;
	for (int j = 0; j < 256; j++) {
		float ax = fabsf(x[j]);
		if (ax > amax) {
			amax = ax;
			max = x[j];
		}
	}
	if (amax == 0.0f) {
		memset(q, 0, 256);
		memset(bsums, 0, 16 * sizeof(int16_t));
		return 0.0f;
	}
	float iscale = -127.0f / max;
	for (int j = 0; j < 256; j++) {
		int v = nearest_int(iscale * x[j]);
		q[j] = (int8_t)(v < 127 ? v : 127);
	}
	for (int g = 0; g < 16; g++) {
		int s = 0;
		for (int j = 0; j < 16; j++)
			s += q[16 * g + j];
		bsums[g] = (int16_t)s;
	}
	return 1.0f / iscale;
}
#endif

void qmm_quantize(enum qmm_act a, const float *x, void *dst, int K)
{
	if (a == QMM_A8_0) {
		a8_0_t *b = dst;
		for (int i = 0; i < K / 32; i++) {
			int sum;
			b[i].d = f16_round(quantize32(x + 32 * i, b[i].qs, &sum));
		}
	} else if (a == QMM_A8_1) {
		a8_1_t *b = dst;
		for (int i = 0; i < K / 32; i++) {
			int sum;
			float d = quantize32(x + 32 * i, b[i].qs, &sum);
			b[i].d = f16_round(d);
			b[i].s = f16_round(d * (float)sum);
		}
	} else {
		a8_k_t *b = dst;
		for (int i = 0; i < K / 256; i++)
			b[i].d = quantize256(x + 256 * i, b[i].qs, b[i].bsums);
	}
}

/* ---------------- weights, unpacked ---------------- */

/* One weight row in the common integer form. Per 16 values g: sc[g] and
 * mn[g]; per block b (32 or 256 values): d[b] and dm[b] (the f32 min
 * scale of K-quants, or Q4_1/Q5_1's f32 offset m). */
typedef struct urow {
	int8_t *q;		/* [K] */
	int16_t *sc;		/* [K/16] */
	int16_t *mn;		/* [K/16] */
	float *d;		/* [K/32] */
	float *dm;		/* [K/32] */
} urow_t;

enum { KIND_PLAIN, KIND_OFFSET, KIND_KMIN, KIND_K };

/* How a type's blocks combine (the dot_row cases). */
static int kind_of(uint32_t t)
{
	switch (t) {
	case QUANT_Q4_1: case QUANT_Q5_1: return KIND_OFFSET;
	case QUANT_Q2_K: case QUANT_Q4_K: case QUANT_Q5_K: return KIND_KMIN;
	case QUANT_Q3_K: case QUANT_Q6_K: case QUANT_IQ4_XS: return KIND_K;
	default: return KIND_PLAIN;
	}
}

static const int8_t iq4_levels[16] = {
	-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
};

/* Q4_K / Q5_K: 6-bit scale and min of sub-block j (of 8). */
static void k4_scale_min(int j, const uint8_t *q, int *sc, int *mn)
{
	if (j < 4) {
		*sc = q[j] & 63;
		*mn = q[j + 4] & 63;
	} else {
		*sc = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4);
		*mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
	}
}

/* A 32-value block (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL) into block bi
 * of u. */
static inline void unpack_legacy(uint32_t t, const uint8_t *b, urow_t *u, int bi)
{
	int8_t *q = u->q + 32 * bi;
	u->sc[2 * bi] = u->sc[2 * bi + 1] = 1;
	u->mn[2 * bi] = u->mn[2 * bi + 1] = 0;
	u->d[bi] = mg_f16_load(b);
	u->dm[bi] = 0.0f;
	if (t == QUANT_Q8_0) {
		memcpy(q, b + 2, 32);
		return;
	}
	const uint8_t *qs;
	uint32_t qh = 0;
	int off = 0;
	if (t == QUANT_Q4_0) {
		qs = b + 2;
		off = 8;
	} else if (t == QUANT_Q4_1) {
		qs = b + 4;
		u->dm[bi] = mg_f16_load(b + 2);
	} else if (t == QUANT_Q5_0) {
		memcpy(&qh, b + 2, 4);
		qs = b + 6;
		off = 16;
	} else if (t == QUANT_Q5_1) {
		memcpy(&qh, b + 4, 4);
		qs = b + 8;
		u->dm[bi] = mg_f16_load(b + 2);
	} else {	/* IQ4_NL */
		qs = b + 2;
		for (int j = 0; j < 16; j++) {
			q[j] = iq4_levels[qs[j] & 0xf];
			q[j + 16] = iq4_levels[qs[j] >> 4];
		}
		return;
	}
	for (int j = 0; j < 16; j++) {
		int h0 = (int)((qh >> j) & 1u) << 4, h1 = (int)((qh >> (j + 16)) & 1u) << 4;
		q[j] = (int8_t)(((qs[j] & 0xf) | h0) - off);
		q[j + 16] = (int8_t)(((qs[j] >> 4) | h1) - off);
	}
}

/* The 256-value super-blocks, one function per type: quants q[256], 16
 * sub-block scales sc and mins mn, the super-block's d and dm. */
static inline void unpack_q2_k(const uint8_t *b, int8_t *q, int16_t *sc, int16_t *mn, float *d, float *dm)
{
	const uint8_t *scales = b, *qs = b + 16;
	*d = mg_f16_load(b + 80);
	*dm = mg_f16_load(b + 82);
	int g = 0;
	for (int n = 0; n < 256; n += 128, qs += 32)
		for (int shift = 0; shift < 8; shift += 2)
			for (int h = 0; h < 2; h++, g++) {
				sc[g] = scales[g] & 0xf;
				mn[g] = scales[g] >> 4;
				for (int l = 0; l < 16; l++)
					q[16 * g + l] = (int8_t)((qs[16 * h + l] >> shift) & 3);
			}
}

static inline void unpack_q3_k(const uint8_t *b, int8_t *q, int16_t *sc, int16_t *mn, float *d, float *dm)
{
	const uint8_t *hm = b, *qs = b + 32, *p = b + 96;
	*d = mg_f16_load(b + 108);
	*dm = 0.0f;
	int g = 0;
	uint8_t m = 1;
	for (int n = 0; n < 256; n += 128, qs += 32)
		for (int shift = 0; shift < 8; shift += 2, m = (uint8_t)(m << 1))
			for (int h = 0; h < 2; h++, g++) {
				int lo = g < 8 ? (p[g] & 0xf) : (p[g - 8] >> 4);
				int hi = (p[8 + (g & 3)] >> (2 * (g >> 2))) & 3;
				sc[g] = (int16_t)((lo | hi << 4) - 32);
				mn[g] = 0;
				for (int l = 16 * h; l < 16 * h + 16; l++)
					q[16 * g + l - 16 * h] =
						(int8_t)(((qs[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
			}
}

static inline void unpack_q45_k(bool five, const uint8_t *b, int8_t *q, int16_t *sc, int16_t *mn, float *d,
				float *dm)
{
	const uint8_t *scales = b + 4, *qh = b + 16, *qs = b + (five ? 48 : 16);
	*d = mg_f16_load(b);
	*dm = mg_f16_load(b + 2);
	for (int j = 0; j < 8; j++) {
		int s, mi;
		k4_scale_min(j, scales, &s, &mi);
		sc[2 * j] = sc[2 * j + 1] = (int16_t)s;
		mn[2 * j] = mn[2 * j + 1] = (int16_t)mi;
		const uint8_t *src = qs + 32 * (j / 2);
		for (int l = 0; l < 32; l++) {
			int v = (j & 1) ? src[l] >> 4 : src[l] & 0xf;
			if (five)
				v += ((qh[l] >> j) & 1) << 4;
			q[32 * j + l] = (int8_t)v;
		}
	}
}

static inline void unpack_q6_k(const uint8_t *b, int8_t *q, int16_t *sc, int16_t *mn, float *d, float *dm)
{
	const uint8_t *ql = b, *qh = b + 128;
	const int8_t *s8 = (const int8_t *)(b + 192);
	*d = mg_f16_load(b + 208);
	*dm = 0.0f;
	for (int g = 0; g < 16; g++) {
		sc[g] = s8[g];
		mn[g] = 0;
	}
	for (int nh = 0; nh < 2; nh++, ql += 64, qh += 32)
		for (int l = 0; l < 32; l++) {
			int8_t *o = q + 128 * nh;
			o[l] = (int8_t)(((ql[l] & 0xf) | ((qh[l] >> 0) & 3) << 4) - 32);
			o[l + 32] = (int8_t)(((ql[l + 32] & 0xf) | ((qh[l] >> 2) & 3) << 4) - 32);
			o[l + 64] = (int8_t)(((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32);
			o[l + 96] = (int8_t)(((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32);
		}
}

static inline void unpack_iq4_xs(const uint8_t *b, int8_t *q, int16_t *sc, int16_t *mn, float *d, float *dm)
{
	uint16_t sh;
	memcpy(&sh, b + 2, 2);
	const uint8_t *sl = b + 4, *qs = b + 8;
	*d = mg_f16_load(b);
	*dm = 0.0f;
	for (int ib = 0; ib < 8; ib++) {
		int ls = ((sl[ib / 2] >> (4 * (ib % 2))) & 0xf) | (((sh >> (2 * ib)) & 3) << 4);
		sc[2 * ib] = sc[2 * ib + 1] = (int16_t)(ls - 32);
		mn[2 * ib] = mn[2 * ib + 1] = 0;
		for (int j = 0; j < 16; j++) {
			q[32 * ib + j] = iq4_levels[qs[16 * ib + j] & 0xf];
			q[32 * ib + 16 + j] = iq4_levels[qs[16 * ib + j] >> 4];
		}
	}
}

/* Unpacks block b (values [qk*b, qk*b + qk)) of type t into u. The value
 * order is the dequantized order (quant.c), so position i of q multiplies
 * activation i. */
static void unpack_block(uint32_t t, const uint8_t *b, urow_t *u, int bi)
{
	switch (t) {
	case QUANT_Q4_0: case QUANT_Q4_1: case QUANT_Q5_0: case QUANT_Q5_1: case QUANT_Q8_0:
	case QUANT_IQ4_NL:
		unpack_legacy(t, b, u, bi);
		return;
	default:
		break;
	}
	/* 256-value super-blocks: 8 entries of d/dm per block (one used) */
	int8_t *q = u->q + 256 * bi;
	int16_t *sc = u->sc + 16 * bi, *mn = u->mn + 16 * bi;
	float *d = &u->d[8 * bi], *dm = &u->dm[8 * bi];
	switch (t) {
	case QUANT_Q2_K: unpack_q2_k(b, q, sc, mn, d, dm); return;
	case QUANT_Q3_K: unpack_q3_k(b, q, sc, mn, d, dm); return;
	case QUANT_Q4_K: case QUANT_Q5_K: unpack_q45_k(t == QUANT_Q5_K, b, q, sc, mn, d, dm); return;
	case QUANT_Q6_K: unpack_q6_k(b, q, sc, mn, d, dm); return;
	case QUANT_IQ4_XS: unpack_iq4_xs(b, q, sc, mn, d, dm); return;
	default: return;
	}
}

static void unpack_row(uint32_t t, const uint8_t *row, int K, urow_t *u)
{
	int qk = quant_block_values(t), bb = quant_block_bytes(t);
	for (int b = 0; b < K / qk; b++)
		unpack_block(t, row + (size_t)b * (size_t)bb, u, b);
}

/* ---------------- the float arithmetic ---------------- */

/* How a type's block results are combined in f32: the order of ggml's x86
 * (AVX2) kernels, which margin reproduces so that the float rounding
 * follows llama.cpp's too (a rounding difference can move an activation
 * across a quantization step and change the tokens; docs/kernels.md).
 *   LANES: 8 accumulators; per block, lane k gets (float)(the integer sum
 *     of the products at positions i with (i mod 32) / 4 == k, each times
 *     its sub-block scale), times the block scale, by fma; at the end the
 *     lanes are summed as (l + l+4), then (l + l+2), then (l + l+1).
 *   BLOCK: one accumulator, fma(block scale, (float)(block sum)) (Q4_0:
 *     ggml repacks it into 8-row panels whose kernel sums whole blocks).
 *   Offsets and mins: Q4_1 / Q5_1 add m * s per block into a separate
 *     scalar (fma), Q5_K dmin * (sum of its min products) per block into a
 *     separate scalar, Q4_K into 4 lanes (pairs of sub-blocks) summed as
 *     (l + l+2) then (l + l+1), Q2_K into the 8 lanes themselves before the
 *     scales (pairs of 16-value groups); the separate sums are added to the
 *     lanes' total at the end. */
enum { F_LANES, F_BLOCK };

/* QMM_BLOCKS sums every Q5_0, Q8_0, IQ4_NL, Q4_K, Q5_K and Q6_K block
 * whole too (qmm.h). */
static bool blocks_sum(uint32_t t, enum qmm_order o)
{
	return o == QMM_BLOCKS && (t == QUANT_Q5_0 || t == QUANT_Q8_0 || t == QUANT_IQ4_NL || t == QUANT_Q4_K ||
				   t == QUANT_Q5_K || t == QUANT_Q6_K);
}

static int float_mode(uint32_t t, enum qmm_order o)
{
	return t == QUANT_Q4_0 || blocks_sum(t, o) ? F_BLOCK : F_LANES;
}

/* lane[k] += sum over positions i of the block, (i mod 32) / 4 == k, of
 * sc(i) * w[i] * a[i]; n = 32 or 256 values, sc one per 16. */
static inline void lane_sums(const int8_t *w, const int8_t *a, const int16_t *sc, int n, int32_t *lane)
{
	for (int i = 0; i < n; i++)
		lane[(i % 32) / 4] += (int32_t)sc[i / 16] * (int32_t)w[i] * (int32_t)a[i];
}

static inline float hsum8(const float *l)
{
	float r0 = l[0] + l[4], r1 = l[1] + l[5], r2 = l[2] + l[6], r3 = l[3] + l[7];
	return (r0 + r2) + (r1 + r3);
}

/* The dot product of an unpacked weight row with a quantized activation
 * row: the definition in qmm.h, in the float order above. */
static float dot_row(uint32_t t, enum qmm_order o, const urow_t *u, const void *arow, int K)
{
	int kind = kind_of(t), fm = float_mode(t, o);
	float acc[8] = { 0 }, acc1 = 0.0f, summs = 0.0f, accm[4] = { 0 };
	if (kind == KIND_PLAIN || kind == KIND_OFFSET) {
		for (int b = 0; b < K / 32; b++) {
			const int8_t *aq;
			float ad;
			if (kind == KIND_OFFSET) {
				const a8_1_t *a = (const a8_1_t *)arow + b;
				aq = a->qs;
				ad = a->d;
				summs = fmaf(u->dm[b], a->s, summs);
			} else {
				const a8_0_t *a = (const a8_0_t *)arow + b;
				aq = a->qs;
				ad = a->d;
			}
			int32_t lane[8] = { 0 };
			lane_sums(u->q + 32 * b, aq, u->sc + 2 * b, 32, lane);
			float dd = u->d[b] * ad;
			if (fm == F_BLOCK) {
				int32_t is = 0;
				for (int k = 0; k < 8; k++)
					is += lane[k];
				acc1 = fmaf((float)is, dd, acc1);
			} else {
				for (int k = 0; k < 8; k++)
					acc[k] = fmaf(dd, (float)lane[k], acc[k]);
			}
		}
		return fm == F_BLOCK ? acc1 : hsum8(acc) + summs;
	}
	for (int b = 0; b < K / 256; b++) {
		const a8_k_t *a = (const a8_k_t *)arow + b;
		const int16_t *mn = u->mn + 16 * b;
		float d = a->d * u->d[8 * b], dmin = -(a->d * u->dm[8 * b]);
		if (fm == F_BLOCK) {
			/* the mins after the block's sums, below */
		} else if (t == QUANT_Q2_K) {	/* mins of 16-value groups, pairs per lane, first */
			for (int k = 0; k < 8; k++)
				acc[k] = fmaf(dmin, (float)((int32_t)mn[2 * k] * a->bsums[2 * k] +
							     (int32_t)mn[2 * k + 1] * a->bsums[2 * k + 1]), acc[k]);
		} else if (t == QUANT_Q4_K) {	/* 32-value sub-blocks j, pairs per lane */
			for (int m = 0; m < 4; m++) {
				int32_t p = 0;
				for (int j = 2 * m; j < 2 * m + 2; j++)
					p += (int32_t)mn[2 * j] * (a->bsums[2 * j] + a->bsums[2 * j + 1]);
				accm[m] = fmaf(dmin, (float)p, accm[m]);
			}
		} else if (t == QUANT_Q5_K) {
			int32_t p = 0;
			for (int j = 0; j < 8; j++)
				p += (int32_t)mn[2 * j] * (a->bsums[2 * j] + a->bsums[2 * j + 1]);
			summs = fmaf(dmin, (float)p, summs);
		}
		int32_t lane[8] = { 0 };
		lane_sums(u->q + 256 * b, a->qs, u->sc + 16 * b, 256, lane);
		if (fm == F_BLOCK) {	/* the block's sums whole, then its mins */
			int32_t is = 0, im = 0;
			for (int k = 0; k < 8; k++)
				is += lane[k];
			acc1 = fmaf(d, (float)is, acc1);
			if (t == QUANT_Q4_K || t == QUANT_Q5_K) {
				for (int j = 0; j < 8; j++)
					im += (int32_t)mn[2 * j] * (a->bsums[2 * j] + a->bsums[2 * j + 1]);
				acc1 = fmaf(dmin, (float)im, acc1);
			}
			continue;
		}
		for (int k = 0; k < 8; k++)
			acc[k] = fmaf(d, (float)lane[k], acc[k]);
	}
	if (fm == F_BLOCK)
		return acc1;
	float r = hsum8(acc);
	if (t == QUANT_Q4_K)
		r += (accm[0] + accm[2]) + (accm[1] + accm[3]);
	else if (t == QUANT_Q5_K)
		r += summs;
	return r;
}

/* Scratch for one unpacked row of up to K values. */
static size_t urow_bytes(int K)
{
	return (size_t)K + 2 * (size_t)(K / 16) * sizeof(int16_t) + 2 * (size_t)(K / 32) * sizeof(float) + 64;
}

static void urow_init(urow_t *u, void *mem, int K)
{
	char *p = mem;
	u->d = (float *)p;
	p += (size_t)(K / 32) * sizeof(float);
	u->dm = (float *)p;
	p += (size_t)(K / 32) * sizeof(float);
	u->sc = (int16_t *)p;
	p += (size_t)(K / 16) * sizeof(int16_t);
	u->mn = (int16_t *)p;
	p += (size_t)(K / 16) * sizeof(int16_t);
	u->q = (int8_t *)p;
}

/* The same definition with the integer sums in plain scalar C (no vector
 * code), for the tests. */
float qmm_dot_ref(uint32_t wtype, enum qmm_order o, const void *wrow, const void *arow, int K)
{
	bool whole = float_mode(wtype, o) == F_BLOCK;
	size_t nb = urow_bytes(K);
	void *mem = malloc(nb);
	if (mem == NULL)
		return NAN;
	urow_t u;
	urow_init(&u, mem, K);
	unpack_row(wtype, wrow, K, &u);
	/* the lanes, computed position by position */
	int qk = quant_block_values(wtype), kind = kind_of(wtype);
	float acc[8] = { 0 }, acc1 = 0.0f, summs = 0.0f, accm[4] = { 0 };
	for (int b = 0; b < K / qk; b++) {
		const int8_t *aq;
		float dd, dmin = 0.0f;
		const int16_t *bs = NULL;
		if (kind == KIND_OFFSET) {
			const a8_1_t *a = (const a8_1_t *)arow + b;
			aq = a->qs;
			dd = u.d[b] * a->d;
			summs = fmaf(u.dm[b], a->s, summs);
		} else if (kind == KIND_PLAIN) {
			const a8_0_t *a = (const a8_0_t *)arow + b;
			aq = a->qs;
			dd = u.d[b] * a->d;
		} else {
			const a8_k_t *a = (const a8_k_t *)arow + b;
			aq = a->qs;
			dd = a->d * u.d[8 * b];
			dmin = -(a->d * u.dm[8 * b]);
			bs = a->bsums;
		}
		const int16_t *mn = u.mn + (size_t)(qk / 16) * (size_t)b;
		if (wtype == QUANT_Q2_K)
			for (int k = 0; k < 8; k++)
				acc[k] = fmaf(dmin, (float)(mn[2 * k] * bs[2 * k] + mn[2 * k + 1] * bs[2 * k + 1]), acc[k]);
		if (wtype == QUANT_Q4_K && !whole)
			for (int m = 0; m < 4; m++)
				accm[m] = fmaf(dmin, (float)(mn[4 * m] * (bs[4 * m] + bs[4 * m + 1]) +
							   mn[4 * m + 2] * (bs[4 * m + 2] + bs[4 * m + 3])), accm[m]);
		int32_t imin = 0;
		if (wtype == QUANT_Q5_K || (wtype == QUANT_Q4_K && whole)) {
			for (int j = 0; j < 8; j++)
				imin += mn[2 * j] * (bs[2 * j] + bs[2 * j + 1]);
			if (!whole)
				summs = fmaf(dmin, (float)imin, summs);
		}
		int32_t lane[8] = { 0 }, all = 0;
		for (int i = 0; i < qk; i++) {
			int32_t v = (int32_t)u.sc[(size_t)(qk / 16) * (size_t)b + (size_t)(i / 16)] *
				    u.q[(size_t)qk * (size_t)b + (size_t)i] * aq[i];
			lane[(i % 32) / 4] += v;
			all += v;
		}
		if (whole) {
			acc1 = fmaf((float)all, dd, acc1);
			if (wtype == QUANT_Q4_K || wtype == QUANT_Q5_K)	/* then the block's mins */
				acc1 = fmaf(dmin, (float)imin, acc1);
		} else
			for (int k = 0; k < 8; k++)
				acc[k] = fmaf(dd, (float)lane[k], acc[k]);
	}
	free(mem);
	if (whole)
		return acc1;
	float r = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
	if (wtype == QUANT_Q4_K)
		r += (accm[0] + accm[2]) + (accm[1] + accm[3]);
	else
		r += summs;
	return r;
}

/* ======================= the AVX-512 VNNI panel path ======================= */
#if QMM_SIMD

#define INL static inline __attribute__((always_inline))
#define PR 16			/* weight rows per panel: one per dword of a vector */

/* ---- activations, as the panel kernels read them ----
 *
 * The same quantized values as qmm_quantize's formats, with what the
 * kernels add per block precomputed once per row. Panels hold legacy
 * weights plus 128 (unsigned bytes for vpdpbusd), so a legacy block
 * carries the -128 x sum of its activations that takes the offset back,
 * per group of 4 (c) and in all (csum). K-quant panels multiply the
 * activations' bytes plus 128 (qu) where the weights are signed, qs where
 * they are not. */
typedef struct xb0 {
	int8_t qs[32];
	int32_t c[8];		/* -128 * (qs[4p] + ... + qs[4p + 3]) */
	float d;		/* f16-rounded (A8_0 and A8_1) */
	float s;		/* A8_1's s */
	int32_t csum;		/* sum of c */
	int32_t pad;
} xb0_t;

typedef struct xbk {
	int8_t qs[256];
	uint8_t qu[256];	/* qs + 128 */
	int16_t bsums[16];	/* per 16 values */
	int16_t bs32[8];	/* per 32 values */
	float d;
	int32_t pad[3];
} xbk_t;

_Static_assert(sizeof(xb0_t) == 80 && sizeof(xbk_t) == 576, "activation block layouts");

INL __m512i bcast32(const void *p)
{
	int32_t v;
	memcpy(&v, p, 4);
	return _mm512_set1_epi32(v);
}

/* The extra fields of a legacy block whose qs, d and s are set. */
static void x0_finish(xb0_t *b, int sum)
{
	__m512i q = _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)b->qs));
	__m512i s4 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(1), q);
	__m512i c = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(s4, 7));
	_mm256_storeu_si256((__m256i *)b->c, _mm512_castsi512_si256(c));
	b->csum = -128 * sum;
	b->pad = 0;
}

static void xk_finish(xbk_t *b)
{
#pragma GCC unroll 4
	for (int i = 0; i < 4; i++) {
		__m512i q = _mm512_loadu_si512(b->qs + 64 * i);
		_mm512_storeu_si512(b->qu + 64 * i, _mm512_xor_si512(q, _mm512_set1_epi8((char)0x80)));
	}
	__m256i bs = _mm256_loadu_si256((const __m256i *)b->bsums);
	__m256i b32 = _mm256_madd_epi16(bs, _mm256_set1_epi16(1));
	_mm_storeu_si128((__m128i *)b->bs32, _mm256_cvtepi32_epi16(b32));
	memset(b->pad, 0, sizeof(b->pad));
}

/* x[K] quantized into a row of kernel blocks: legacy (A8_0 and A8_1 at
 * once) or K. */
static void x0_quantize(const float *x, xb0_t *b, int K)
{
	for (int i = 0; i < K / 32; i++) {
		int sum;
		float d = quantize32(x + 32 * i, b[i].qs, &sum);
		b[i].d = f16_round(d);
		b[i].s = f16_round(d * (float)sum);
		x0_finish(&b[i], sum);
	}
}

static void xk_quantize(const float *x, xbk_t *b, int K)
{
	for (int i = 0; i < K / 256; i++) {
		b[i].d = quantize256(x + 256 * i, b[i].qs, b[i].bsums);
		xk_finish(&b[i]);
	}
}

/* A row in qmm_quantize's format a, as kernel blocks (qmm_dot). */
static void x_from_act(enum qmm_act a, const void *arow, void *dst, int K)
{
	if (a == QMM_A8_K) {
		const a8_k_t *s = arow;
		xbk_t *b = dst;
		for (int i = 0; i < K / 256; i++) {
			memcpy(b[i].qs, s[i].qs, 256);
			memcpy(b[i].bsums, s[i].bsums, sizeof(b[i].bsums));
			b[i].d = s[i].d;
			xk_finish(&b[i]);
		}
		return;
	}
	xb0_t *b = dst;
	for (int i = 0; i < K / 32; i++) {
		const int8_t *qs;
		if (a == QMM_A8_1) {
			const a8_1_t *s = (const a8_1_t *)arow + i;
			qs = s->qs;
			b[i].d = s->d;
			b[i].s = s->s;
		} else {
			const a8_0_t *s = (const a8_0_t *)arow + i;
			qs = s->qs;
			b[i].d = s->d;
			b[i].s = 0.0f;
		}
		memcpy(b[i].qs, qs, 32);
		int sum = 0;
		for (int j = 0; j < 32; j++)
			sum += qs[j];
		x0_finish(&b[i], sum);
	}
}

/* ---- panels ----
 *
 * A panel is PR consecutive rows of one type (the last rows of a segment
 * may be fewer: the missing ones repeat its last row and are not stored).
 * "w[p]" below is a vector whose dword r holds the 4 quants of row r at
 * positions 4p .. 4p+3 of a 32-value group: lane p of the float order.
 *
 * Legacy block (32 values), PB0 bytes: w[8] as u8 = quant + 128 (so that
 * vpdpbusd multiplies them by the signed activations; the activation
 * side's c takes the 128 back), d[16] and m[16] (Q4_1 / Q5_1) in f32. */
#define PB0 640
#define P0_D 512
#define P0_M 576
/* K block (256 values), PBK bytes: w[8 c][8 p] for the 32-value groups c
 * (signed bytes for Q3_K, Q6_K and IQ4_XS, which multiply the activations
 * plus 128; unsigned for the others; Q4_K keeps its nibbles packed, groups
 * 2m and 2m + 1 in w[m]: zmm stores, one a cycle, bound the unpacking, and
 * the kernel splits them on pipes it leaves idle), the integer scale of
 * each 16-value group g as words (s, s) per row (per32 types: one per
 * group of 32, IQ4_XS's as dwords),
 * corr[8] the int32 start of each lane (-128 x sum of scale x quant, for
 * the signed types), d and dmin in f32, and the integer mins as word
 * pairs: Q2_K (mn[2k], mn[2k+1]) per lane k, Q4_K / Q5_K (mn[2m],
 * mn[2m+1]) of 32-value groups per pair m. */
#define PBK 6272
#define PK_SC 4096
#define PK_CORR 5120
#define PK_D 5632
#define PK_DM 5696
#define PK_MN 5760

static size_t panel_bytes(int K)
{
	size_t l = (size_t)(K / 32) * PB0, k = (size_t)(K / 256) * PBK;
	return l > k ? l : k;
}

/* The rows of a panel. */
typedef struct prows {
	const uint8_t *rp[PR];
} prows_t;

static void prows_init(prows_t *pr, const uint8_t *row0, size_t row_bytes, int rows)
{
	for (int r = 0; r < PR; r++)
		pr->rp[r] = row0 + (size_t)(r < rows ? r : rows - 1) * row_bytes;
}

/* The dword at byte off of each row (scalar loads: cheaper here than
 * vpgatherdd, which takes about 12 cycles). */
INL __m512i load32(const prows_t *pr, size_t off)
{
	uint32_t v[PR];
#pragma GCC unroll 16
	for (int r = 0; r < PR; r++)
		memcpy(&v[r], pr->rp[r] + off, 4);
	return _mm512_loadu_si512(v);
}

/* The f16 in the low (hi = 0) or high half of each dword, in f32. */
INL __m512 half_of(__m512i v, int hi)
{
	if (hi)
		v = _mm512_srli_epi32(v, 16);
	return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v));
}

/* 32 bytes at off of every row, transposed by dwords: o[p]'s dword r is
 * dword p of row r. */
INL void tr16x8(const prows_t *pr, size_t off, __m512i o[8])
{
	__m512i r[8], t[8], u[8];
#pragma GCC unroll 16
	for (int i = 0; i < 8; i++)
		r[i] = _mm512_inserti64x4(
			_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(pr->rp[i] + off))),
			_mm256_loadu_si256((const __m256i *)(pr->rp[i + 8] + off)), 1);
#pragma GCC unroll 16
	for (int i = 0; i < 8; i += 2) {
		t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
		t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
	}
#pragma GCC unroll 16
	for (int i = 0; i < 8; i += 4) {
		u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
		u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
		u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
		u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
	}
	/* u[q]: per 256-bit half, dwords q (low lane) and q + 4 (high lane) of
	 * 4 rows; u[q + 4] the next 4 rows */
	const __m512i lo = _mm512_set_epi64(13, 12, 5, 4, 9, 8, 1, 0);
	const __m512i hi = _mm512_set_epi64(15, 14, 7, 6, 11, 10, 3, 2);
#pragma GCC unroll 16
	for (int q = 0; q < 4; q++) {
		o[q] = _mm512_permutex2var_epi64(u[q], lo, u[q + 4]);
		o[q + 4] = _mm512_permutex2var_epi64(u[q], hi, u[q + 4]);
	}
}

/* The same for 16 bytes: o[q] for dwords q < 4. */
INL void tr16x4(const prows_t *pr, size_t off, __m512i o[4])
{
	__m512i x[4];
#pragma GCC unroll 16
	for (int i = 0; i < 4; i++) {
		__m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(pr->rp[i] + off)));
		v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(pr->rp[i + 4] + off)), 1);
		v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(pr->rp[i + 8] + off)), 2);
		x[i] = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(pr->rp[i + 12] + off)), 3);
	}
	__m512i t0 = _mm512_unpacklo_epi32(x[0], x[1]), t1 = _mm512_unpackhi_epi32(x[0], x[1]);
	__m512i t2 = _mm512_unpacklo_epi32(x[2], x[3]), t3 = _mm512_unpackhi_epi32(x[2], x[3]);
	o[0] = _mm512_unpacklo_epi64(t0, t2);
	o[1] = _mm512_unpackhi_epi64(t0, t2);
	o[2] = _mm512_unpacklo_epi64(t1, t3);
	o[3] = _mm512_unpackhi_epi64(t1, t3);
}

INL __m512i lo_nib(__m512i v)
{
	return _mm512_and_si512(v, _mm512_set1_epi8(0x0f));
}

INL __m512i hi_nib(__m512i v)
{
	return _mm512_and_si512(_mm512_srli_epi16(v, 4), _mm512_set1_epi8(0x0f));
}

/* 0x10 in byte i of dword r where bit 4p + i of qh's dword r is set: the
 * fifth bits of Q5_0 / Q5_1 for lane p. */
INL __m512i fifth_bits(__m512i qh, int p)
{
	const __m512i rep = _mm512_set4_epi32(0x0c0c0c0c, 0x08080808, 0x04040404, 0x00000000);
	__m512i b = _mm512_shuffle_epi8(_mm512_srl_epi32(qh, _mm_cvtsi32_si128(4 * p)), rep);
	__mmask64 k = _mm512_test_epi8_mask(b, _mm512_set1_epi32(0x08040201));
	return _mm512_maskz_mov_epi8(k, _mm512_set1_epi8(0x10));
}

INL __m512i iq4_table(int plus128)
{
	static const int8_t lv[16] = {
		-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
	};
	__m512i t = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)lv));
	return plus128 ? _mm512_xor_si512(t, _mm512_set1_epi8((char)0x80)) : t;
}

/* Legacy blocks [b0, b1) of a panel of type t (a constant). */
INL void unpack_p0(const uint32_t t, const prows_t *pr, int b0, int b1, uint8_t *dst)
{
	size_t bb = (size_t)quant_block_bytes(t);
	bool off = t == QUANT_Q4_1 || t == QUANT_Q5_1;
	size_t qs_at = t == QUANT_Q4_1 ? 4 : t == QUANT_Q5_0 ? 6 : t == QUANT_Q5_1 ? 8 : 2;
	for (int b = b0; b < b1; b++) {
		size_t o = (size_t)b * bb;
		uint8_t *pb = dst + (size_t)b * PB0;
		__m512i w[8], dm = load32(pr, o);
		_mm512_store_ps((float *)(pb + P0_D), half_of(dm, 0));
		if (off)
			_mm512_store_ps((float *)(pb + P0_M), half_of(dm, 1));
		if (t == QUANT_Q8_0) {
			tr16x8(pr, o + 2, w);
#pragma GCC unroll 16
			for (int p = 0; p < 8; p++)
				w[p] = _mm512_xor_si512(w[p], _mm512_set1_epi8((char)0x80));
		} else {
			__m512i n[4];
			tr16x4(pr, o + qs_at, n);
#pragma GCC unroll 16
			for (int q = 0; q < 4; q++) {
				w[q] = lo_nib(n[q]);
				w[q + 4] = hi_nib(n[q]);
			}
			if (t == QUANT_Q5_0 || t == QUANT_Q5_1) {
				__m512i qh = load32(pr, o + (t == QUANT_Q5_0 ? 2 : 4));
#pragma GCC unroll 16
				for (int p = 0; p < 8; p++)
					w[p] = _mm512_or_si512(w[p], fifth_bits(qh, p));
			}
			/* quant + 128: Q4_0 nibble - 8, Q5_0 - 16, IQ4_NL its level */
			__m512i tab = iq4_table(1);
#pragma GCC unroll 16
			for (int p = 0; p < 8; p++) {
				if (t == QUANT_Q4_0)
					w[p] = _mm512_add_epi8(w[p], _mm512_set1_epi8(120));
				else if (t == QUANT_Q5_0)
					w[p] = _mm512_add_epi8(w[p], _mm512_set1_epi8(112));
				else if (t == QUANT_IQ4_NL)
					w[p] = _mm512_shuffle_epi8(tab, w[p]);
				else
					w[p] = _mm512_or_si512(w[p], _mm512_set1_epi8((char)0x80));
			}
		}
#pragma GCC unroll 16
		for (int p = 0; p < 8; p++)
			_mm512_store_si512(pb + 64 * p, w[p]);
	}
}

/* (s, s) as the words of each dword: a scale for vpdpwssd. */
INL __m512i words2(__m512i s)
{
	__m512i l = _mm512_and_si512(s, _mm512_set1_epi32(0xffff));
	return _mm512_or_si512(l, _mm512_slli_epi32(l, 16));
}

/* (a, b) as the low and high words of each dword. */
INL __m512i wpair(__m512i a, __m512i b)
{
	return _mm512_or_si512(_mm512_and_si512(a, _mm512_set1_epi32(0xffff)), _mm512_slli_epi32(b, 16));
}

/* Byte j of each dword of v, zero-extended (j a constant). */
INL __m512i byte_of(__m512i v, int j)
{
	return _mm512_and_si512(_mm512_srli_epi32(v, 8 * j), _mm512_set1_epi32(0xff));
}

/* Byte k of transposed dwords v (zero-extended in each dword). */
INL __m512i tbyte(const __m512i *v, int k)
{
	return byte_of(v[k / 4], k % 4);
}

/* The start of each lane of a signed K block: -128 x the sum over the
 * lane's positions of scale x quant, so that the kernels' products of the
 * quants with (activation + 128) come out as those with the activations. */
static void k_corr(uint8_t *pb, bool dword_scales)
{
	__m512i acc[8];
#pragma GCC unroll 16
	for (int p = 0; p < 8; p++)
		acc[p] = _mm512_setzero_si512();
	for (int c = 0; c < 8; c++)
#pragma GCC unroll 16
		for (int p = 0; p < 8; p++) {
			__m512i w = _mm512_load_si512(pb + 64 * (8 * c + p));
			if (dword_scales) {
				__m512i s4 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(1), w);
				__m512i sc = _mm512_load_si512(pb + PK_SC + 64 * c);
				acc[p] = _mm512_add_epi32(acc[p], _mm512_mullo_epi32(s4, sc));
			} else {
				__m512i s2 = _mm512_maddubs_epi16(_mm512_set1_epi8(1), w);
				__m512i sc = _mm512_load_si512(pb + PK_SC + 64 * (2 * c + (p >= 4)));
				acc[p] = _mm512_dpwssd_epi32(acc[p], s2, sc);
			}
		}
#pragma GCC unroll 16
	for (int p = 0; p < 8; p++)
		_mm512_store_si512(pb + PK_CORR + 64 * p,
				   _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(acc[p], 7)));
}

/* Q4_K / Q5_K scales and mins: 8 x 6 bits each in the 12 bytes at 4
 * (h: the block's first 16 bytes, transposed). */
INL void unpack_k4_scales(const __m512i *h, uint8_t *pb)
{
	__m512i d0 = h[1], d1 = h[2], d2 = h[3];
	__m512i mn[8];
#pragma GCC unroll 16
	for (int j = 0; j < 8; j++) {
		__m512i sc;
		if (j < 4) {
			sc = _mm512_and_si512(byte_of(d0, j), _mm512_set1_epi32(63));
			mn[j] = _mm512_and_si512(byte_of(d1, j), _mm512_set1_epi32(63));
		} else {
			__m512i q8 = byte_of(d2, j - 4);
			__m512i hs = _mm512_slli_epi32(_mm512_srli_epi32(byte_of(d0, j - 4), 6), 4);
			__m512i hm = _mm512_slli_epi32(_mm512_srli_epi32(byte_of(d1, j - 4), 6), 4);
			sc = _mm512_or_si512(_mm512_and_si512(q8, _mm512_set1_epi32(15)), hs);
			mn[j] = _mm512_or_si512(_mm512_srli_epi32(q8, 4), hm);
		}
		_mm512_store_si512(pb + PK_SC + 64 * j, words2(sc));
	}
#pragma GCC unroll 16
	for (int m = 0; m < 4; m++)
		_mm512_store_si512(pb + PK_MN + 64 * m, wpair(mn[2 * m], mn[2 * m + 1]));
}

INL void unpack_q4k(const bool five, const prows_t *pr, size_t o, uint8_t *pb)
{
	__m512i hd[4];
	tr16x4(pr, o, hd);
	_mm512_store_ps((float *)(pb + PK_D), half_of(hd[0], 0));
	_mm512_store_ps((float *)(pb + PK_DM), half_of(hd[0], 1));
	unpack_k4_scales(hd, pb);
	__m512i qh[8];
	if (five)
		tr16x8(pr, o + 16, qh);
#pragma GCC unroll 16
	for (int m = 0; m < 4; m++) {
		__m512i q[8];
		tr16x8(pr, o + (five ? 48 : 16) + 32 * (size_t)m, q);
		if (!five) {	/* kept packed: the kernel splits the nibbles */
#pragma GCC unroll 8
			for (int p = 0; p < 8; p++)
				_mm512_store_si512(pb + 64 * (8 * m + p), q[p]);
			continue;
		}
#pragma GCC unroll 16
		for (int p = 0; p < 8; p++) {
			__m512i l = lo_nib(q[p]), h = hi_nib(q[p]);
			__mmask64 kl = _mm512_test_epi8_mask(qh[p], _mm512_set1_epi8((char)(1 << (2 * m))));
			__mmask64 kh = _mm512_test_epi8_mask(qh[p], _mm512_set1_epi8((char)(1 << (2 * m + 1))));
			l = _mm512_or_si512(l, _mm512_maskz_mov_epi8(kl, _mm512_set1_epi8(0x10)));
			h = _mm512_or_si512(h, _mm512_maskz_mov_epi8(kh, _mm512_set1_epi8(0x10)));
			_mm512_store_si512(pb + 64 * (8 * (2 * m) + p), l);
			_mm512_store_si512(pb + 64 * (8 * (2 * m + 1) + p), h);
		}
	}
}

static void unpack_q6k(const prows_t *pr, size_t o, uint8_t *pb)
{
	/* bytes 178..209: the scales from 192, d at 208 */
	__m512i t[8];
	tr16x8(pr, o + 178, t);
	_mm512_store_ps((float *)(pb + PK_D), half_of(t[7], 1));
	_mm512_store_ps((float *)(pb + PK_DM), _mm512_setzero_ps());
#pragma GCC unroll 16
	for (int g = 0; g < 16; g++) {
		int k = 14 + g;
		__m512i sc = _mm512_srai_epi32(_mm512_slli_epi32(t[k / 4], 24 - 8 * (k % 4)), 24);
		_mm512_store_si512(pb + PK_SC + 64 * g, words2(sc));
	}
	const __m512i m4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
#pragma GCC unroll 16
	for (int nh = 0; nh < 2; nh++) {
		__m512i l0[8], l1[8], qh[8];
		tr16x8(pr, o + 64 * (size_t)nh, l0);
		tr16x8(pr, o + 64 * (size_t)nh + 32, l1);
		tr16x8(pr, o + 128 + 32 * (size_t)nh, qh);
#pragma GCC unroll 16
		for (int p = 0; p < 8; p++) {
			__m512i v[4];
			v[0] = _mm512_or_si512(_mm512_and_si512(l0[p], m4),
					       _mm512_and_si512(_mm512_slli_epi16(qh[p], 4), m30));
			v[1] = _mm512_or_si512(_mm512_and_si512(l1[p], m4),
					       _mm512_and_si512(_mm512_slli_epi16(qh[p], 2), m30));
			v[2] = _mm512_or_si512(hi_nib(l0[p]), _mm512_and_si512(qh[p], m30));
			v[3] = _mm512_or_si512(hi_nib(l1[p]), _mm512_and_si512(_mm512_srli_epi16(qh[p], 2), m30));
#pragma GCC unroll 16
			for (int k = 0; k < 4; k++)
				_mm512_store_si512(pb + 64 * (8 * (4 * nh + k) + p),
						   _mm512_sub_epi8(v[k], _mm512_set1_epi8(32)));
		}
	}
	k_corr(pb, false);
}

static void unpack_q3k(const prows_t *pr, size_t o, uint8_t *pb)
{
	/* bytes 94..109: the scales p[12] from 96 (index 2), d at 108 */
	__m512i t[4];
	tr16x4(pr, o + 94, t);
	_mm512_store_ps((float *)(pb + PK_D), half_of(t[3], 1));
	_mm512_store_ps((float *)(pb + PK_DM), _mm512_setzero_ps());
#pragma GCC unroll 16
	for (int g = 0; g < 16; g++) {
		__m512i lo = g < 8 ? tbyte(t, 2 + g) : _mm512_srli_epi32(tbyte(t, 2 + g - 8), 4);
		lo = _mm512_and_si512(lo, _mm512_set1_epi32(15));
		__m512i hi = _mm512_and_si512(_mm512_srli_epi32(tbyte(t, 2 + 8 + (g & 3)), 2 * (g >> 2)),
					      _mm512_set1_epi32(3));
		__m512i sc = _mm512_sub_epi32(_mm512_or_si512(lo, _mm512_slli_epi32(hi, 4)), _mm512_set1_epi32(32));
		_mm512_store_si512(pb + PK_SC + 64 * g, words2(sc));
	}
	__m512i hm[8];
	tr16x8(pr, o, hm);
#pragma GCC unroll 16
	for (int nh = 0; nh < 2; nh++) {
		__m512i q[8];
		tr16x8(pr, o + 32 + 32 * (size_t)nh, q);
#pragma GCC unroll 16
		for (int k = 0; k < 4; k++) {
			int c = 4 * nh + k;
#pragma GCC unroll 16
			for (int p = 0; p < 8; p++) {
				__m512i v = _mm512_and_si512(_mm512_srli_epi16(q[p], 2 * k), _mm512_set1_epi8(3));
				__mmask64 h = _mm512_test_epi8_mask(hm[p], _mm512_set1_epi8((char)(1 << c)));
				v = _mm512_mask_sub_epi8(v, ~h, v, _mm512_set1_epi8(4));
				_mm512_store_si512(pb + 64 * (8 * c + p), v);
			}
		}
	}
	k_corr(pb, false);
}

static void unpack_q2k(const prows_t *pr, size_t o, uint8_t *pb)
{
	__m512i sc4[4], dm[4];
	tr16x4(pr, o, sc4);
	tr16x4(pr, o + 68, dm);	/* d, dmin at 80 */
	_mm512_store_ps((float *)(pb + PK_D), half_of(dm[3], 0));
	_mm512_store_ps((float *)(pb + PK_DM), half_of(dm[3], 1));
	__m512i mn[16];
#pragma GCC unroll 16
	for (int i = 0; i < 4; i++) {
		__m512i s = sc4[i];
#pragma GCC unroll 16
		for (int j = 0; j < 4; j++) {
			__m512i b = byte_of(s, j);
			__m512i sc = _mm512_and_si512(b, _mm512_set1_epi32(15));
			_mm512_store_si512(pb + PK_SC + 64 * (4 * i + j), words2(sc));
			mn[4 * i + j] = _mm512_srli_epi32(b, 4);
		}
	}
#pragma GCC unroll 16
	for (int k = 0; k < 8; k++)
		_mm512_store_si512(pb + PK_MN + 64 * k, wpair(mn[2 * k], mn[2 * k + 1]));
#pragma GCC unroll 16
	for (int nh = 0; nh < 2; nh++) {
		__m512i q[8];
		tr16x8(pr, o + 16 + 32 * (size_t)nh, q);
#pragma GCC unroll 16
		for (int k = 0; k < 4; k++)
#pragma GCC unroll 16
			for (int p = 0; p < 8; p++)
				_mm512_store_si512(pb + 64 * (8 * (4 * nh + k) + p),
						   _mm512_and_si512(_mm512_srli_epi16(q[p], 2 * k),
								    _mm512_set1_epi8(3)));
	}
}

static void unpack_iq4xs(const prows_t *pr, size_t o, uint8_t *pb)
{
	__m512i hd[4];
	tr16x4(pr, o, hd);
	__m512i dh = hd[0], sl = hd[1];
	_mm512_store_ps((float *)(pb + PK_D), half_of(dh, 0));
	_mm512_store_ps((float *)(pb + PK_DM), _mm512_setzero_ps());
	__m512i sh = _mm512_srli_epi32(dh, 16);
#pragma GCC unroll 16
	for (int ib = 0; ib < 8; ib++) {
		__m512i l = _mm512_and_si512(_mm512_srli_epi32(sl, 4 * ib), _mm512_set1_epi32(15));
		__m512i h = _mm512_and_si512(_mm512_srli_epi32(sh, 2 * ib), _mm512_set1_epi32(3));
		__m512i sc = _mm512_sub_epi32(_mm512_or_si512(l, _mm512_slli_epi32(h, 4)), _mm512_set1_epi32(32));
		_mm512_store_si512(pb + PK_SC + 64 * ib, sc);
	}
	__m512i tab = iq4_table(0);
#pragma GCC unroll 16
	for (int m = 0; m < 4; m++) {
		__m512i q[8];
		tr16x8(pr, o + 8 + 32 * (size_t)m, q);
#pragma GCC unroll 16
		for (int h = 0; h < 2; h++)
#pragma GCC unroll 16
			for (int qd = 0; qd < 4; qd++) {
				__m512i v = q[4 * h + qd];
				int c = 2 * m + h;
				_mm512_store_si512(pb + 64 * (8 * c + qd), _mm512_shuffle_epi8(tab, lo_nib(v)));
				_mm512_store_si512(pb + 64 * (8 * c + 4 + qd), _mm512_shuffle_epi8(tab, hi_nib(v)));
			}
	}
	k_corr(pb, true);
}

/* Starts loading bytes [lo, hi) of pf (a prefetch: it changes no result). */
static void prefetch_part(const uint8_t *pf, size_t lo, size_t hi)
{
	for (size_t o = lo / 64 * 64; o < hi; o += 64)
		_mm_prefetch((const char *)pf + o, _MM_HINT_T0);
}

/* Unpacks the panel of rows [row0, row0 + rows) (rows <= PR) of type t,
 * and meanwhile prefetches the pf_bytes at pf (the next panel's rows, or
 * NULL), a part per block: the unpacking walks a block of every row at a
 * time, which the hardware prefetchers do not follow, and a prefetch of a
 * whole panel at once overruns the misses a core can have in flight. */
static void unpack_panel(uint32_t t, const uint8_t *row0, size_t row_bytes, int rows, int K, uint8_t *dst,
			 const uint8_t *pf, size_t pf_bytes)
{
	prows_t pr;
	prows_init(&pr, row0, row_bytes, rows);
	int nb = K / quant_block_values(t);
	size_t bb = (size_t)quant_block_bytes(t);
	if (quant_block_values(t) == 32) {
		/* 8 blocks at a time */
		for (int b = 0; b < nb; b += 8) {
			int e = b + 8 < nb ? b + 8 : nb;
			if (pf != NULL)
				prefetch_part(pf, pf_bytes * (size_t)b / (size_t)nb, pf_bytes * (size_t)e / (size_t)nb);
			switch (t) {
			case QUANT_Q4_0: unpack_p0(QUANT_Q4_0, &pr, b, e, dst); break;
			case QUANT_Q4_1: unpack_p0(QUANT_Q4_1, &pr, b, e, dst); break;
			case QUANT_Q5_0: unpack_p0(QUANT_Q5_0, &pr, b, e, dst); break;
			case QUANT_Q5_1: unpack_p0(QUANT_Q5_1, &pr, b, e, dst); break;
			case QUANT_Q8_0: unpack_p0(QUANT_Q8_0, &pr, b, e, dst); break;
			default: unpack_p0(QUANT_IQ4_NL, &pr, b, e, dst); break;
			}
		}
		return;
	}
	for (int b = 0; b < nb; b++) {
		size_t o = (size_t)b * bb;
		uint8_t *pb = dst + (size_t)b * PBK;
		if (pf != NULL)
			prefetch_part(pf, pf_bytes * (size_t)b / (size_t)nb, pf_bytes * (size_t)(b + 1) / (size_t)nb);
		switch (t) {
		case QUANT_Q2_K: unpack_q2k(&pr, o, pb); break;
		case QUANT_Q3_K: unpack_q3k(&pr, o, pb); break;
		case QUANT_Q4_K: unpack_q4k(false, &pr, o, pb); break;
		case QUANT_Q5_K: unpack_q4k(true, &pr, o, pb); break;
		case QUANT_Q6_K: unpack_q6k(&pr, o, pb); break;
		default: unpack_iq4xs(&pr, o, pb); break;
		}
	}
}

/* ---- kernels: one panel times A activation rows ----
 *
 * Each computes, for the 16 rows of the panel at once, exactly dot_row's
 * float operations (same operands, same order), so every output has the
 * portable code's bits. x[a]: the activation row's kernel blocks; y[a]:
 * where its 16 outputs go (msk: the panel's real rows). */

/* 16 bytes at p in each 128-bit lane; dword k of them in every element
 * is then one vpshufd, which does not take the multiply pipes (Zen 5 issues
 * two vector loads a cycle, and vpdpwssd, vpmaddubsw, vpdpbusd and vfmadd
 * share two pipes: a broadcast load per product made the loads the limit). */
INL __m512i bcast128(const void *p)
{
	return _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)p));
}

INL __m512i dword_k(__m512i v, const int k)
{
	return _mm512_shuffle_epi32(v, (_MM_PERM_ENUM)(k * 0x55));
}

/* hsum8, with 16 outputs per vector. */
INL __m512 lanes_sum(const __m512 l[8])
{
	__m512 r0 = _mm512_add_ps(l[0], l[4]), r1 = _mm512_add_ps(l[1], l[5]);
	__m512 r2 = _mm512_add_ps(l[2], l[6]), r3 = _mm512_add_ps(l[3], l[7]);
	return _mm512_add_ps(_mm512_add_ps(r0, r2), _mm512_add_ps(r1, r3));
}

INL __m512 neg(__m512 v)
{
	return _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(v), _mm512_set1_epi32((int)0x80000000)));
}

/* Legacy types in F_LANES (Q5_0, Q8_0, IQ4_NL; off: Q4_1, Q5_1). */
INL void k_lanes(const uint8_t *pan, int nb, const void *const *xv, float *const *y, __mmask16 msk, const int A,
		 const bool off)
{
	const xb0_t *x[2];
	__m512 acc[2][8], sm[2];
#pragma GCC unroll 16
	for (int a = 0; a < A; a++) {
		x[a] = xv[a];
		sm[a] = _mm512_setzero_ps();
#pragma GCC unroll 16
		for (int p = 0; p < 8; p++)
			acc[a][p] = _mm512_setzero_ps();
	}
	for (int b = 0; b < nb; b++) {
		const uint8_t *pb = pan + (size_t)b * PB0;
		__m512 dw = _mm512_load_ps((const float *)(pb + P0_D)), dd[2];
#pragma GCC unroll 16
		for (int a = 0; a < A; a++)
			dd[a] = _mm512_mul_ps(dw, _mm512_set1_ps(x[a][b].d));
		if (off) {
			__m512 mw = _mm512_load_ps((const float *)(pb + P0_M));
#pragma GCC unroll 16
			for (int a = 0; a < A; a++)
				sm[a] = _mm512_fmadd_ps(mw, _mm512_set1_ps(x[a][b].s), sm[a]);
		}
		__m512i av[2][2];
#pragma GCC unroll 16
		for (int a = 0; a < A; a++) {
			av[a][0] = bcast128(x[a][b].qs);
			av[a][1] = bcast128(x[a][b].qs + 16);
		}
#pragma GCC unroll 16
		for (int p = 0; p < 8; p++) {
			__m512i w = _mm512_load_si512(pb + 64 * p);
#pragma GCC unroll 16
			for (int a = 0; a < A; a++) {
				__m512i t = _mm512_dpbusd_epi32(_mm512_set1_epi32(x[a][b].c[p]), w,
								dword_k(av[a][p / 4], p % 4));
				acc[a][p] = _mm512_fmadd_ps(dd[a], _mm512_cvtepi32_ps(t), acc[a][p]);
			}
		}
	}
#pragma GCC unroll 16
	for (int a = 0; a < A; a++)
		_mm512_mask_storeu_ps(y[a], msk, _mm512_add_ps(lanes_sum(acc[a]), sm[a]));
}

/* Q4_0 in F_BLOCK: one accumulator over whole-block sums. */
INL void k_block(const uint8_t *pan, int nb, const void *const *xv, float *const *y, __mmask16 msk, const int A)
{
	const xb0_t *x[4];
	__m512 acc[4];
#pragma GCC unroll 16
	for (int a = 0; a < A; a++) {
		x[a] = xv[a];
		acc[a] = _mm512_setzero_ps();
	}
	for (int b = 0; b < nb; b++) {
		const uint8_t *pb = pan + (size_t)b * PB0;
		__m512 dw = _mm512_load_ps((const float *)(pb + P0_D));
		__m512i t[4];
#pragma GCC unroll 16
		for (int a = 0; a < A; a++)
			t[a] = _mm512_set1_epi32(x[a][b].csum);
		__m512i av[4][2];
#pragma GCC unroll 16
		for (int a = 0; a < A; a++) {
			av[a][0] = bcast128(x[a][b].qs);
			av[a][1] = bcast128(x[a][b].qs + 16);
		}
#pragma GCC unroll 16
		for (int p = 0; p < 8; p++) {
			__m512i w = _mm512_load_si512(pb + 64 * p);
#pragma GCC unroll 16
			for (int a = 0; a < A; a++)
				t[a] = _mm512_dpbusd_epi32(t[a], w, dword_k(av[a][p / 4], p % 4));
		}
#pragma GCC unroll 16
		for (int a = 0; a < A; a++) {
			__m512 dd = _mm512_mul_ps(dw, _mm512_set1_ps(x[a][b].d));
			acc[a] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(t[a]), dd, acc[a]);
		}
	}
#pragma GCC unroll 16
	for (int a = 0; a < A; a++)
		_mm512_mask_storeu_ps(y[a], msk, acc[a]);
}

/* K types whose sub-block scales go per 32 values (one scale vector per
 * group of 32 in the panel; the others have one per 16). */
static inline bool per32(uint32_t t)
{
	return t == QUANT_Q4_K || t == QUANT_Q5_K || t == QUANT_IQ4_XS;
}

/* The integer sums of lanes 4h .. 4h+3 of a K block (its 8 groups of 32
 * values) with the sub-block scales, for A activation rows: ia[p][a] for
 * lane 4h + p. vpmaddubsw pairs, then vpdpwssd by the scale words (the 4
 * lanes of a half share a 16-value group, so a scale vector); IQ4_XS,
 * whose quants reach 127, vpdpbusd and a multiplication. */
INL void k_half(const uint8_t *pb, const xbk_t *const *xb, const int h, __m512i ia[4][4], const int A,
		const uint32_t T)
{
	const bool sgn = T == QUANT_Q3_K || T == QUANT_Q6_K || T == QUANT_IQ4_XS;
#pragma GCC unroll 4
	for (int p = 0; p < 4; p++)
#pragma GCC unroll 4
		for (int a = 0; a < A; a++)
			ia[p][a] = sgn ? _mm512_load_si512(pb + PK_CORR + 64 * (4 * h + p)) : _mm512_setzero_si512();
	/* unrolled: GCC copies and spills accumulators carried by a loop */
#pragma GCC unroll 8
	for (int c = 0; c < 8; c++) {
		__m512i sc = _mm512_load_si512(pb + PK_SC + 64 * (per32(T) ? c : 2 * c + h));
		__m512i av[4];
#pragma GCC unroll 4
		for (int a = 0; a < A; a++)
			av[a] = bcast128((sgn ? xb[a]->qu : (const uint8_t *)xb[a]->qs) + 32 * c + 16 * h);
#pragma GCC unroll 4
		for (int p = 0; p < 4; p++) {
			__m512i w;
			if (T == QUANT_Q4_K) {	/* nibbles of groups 2m, 2m + 1 */
				w = _mm512_load_si512(pb + 64 * (8 * (c / 2) + 4 * h + p));
				w = c % 2 == 0 ? lo_nib(w) : hi_nib(w);
			} else {
				w = _mm512_load_si512(pb + 64 * (8 * c + 4 * h + p));
			}
#pragma GCC unroll 4
			for (int a = 0; a < A; a++) {
				__m512i ab = dword_k(av[a], p);
				if (T == QUANT_IQ4_XS) {
					__m512i t = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ab, w);
					ia[p][a] = _mm512_add_epi32(ia[p][a], _mm512_mullo_epi32(t, sc));
				} else {
					__m512i m = sgn ? _mm512_maddubs_epi16(ab, w) : _mm512_maddubs_epi16(w, ab);
					ia[p][a] = _mm512_dpwssd_epi32(ia[p][a], m, sc);
				}
			}
		}
	}
}

/* The K types (T a constant). Each lane's float chain runs over the blocks
 * in order, as dot_row's; the lanes being independent, lanes 0-3 go over
 * all blocks, then lanes 4-7, then the mins (Q4_K, Q5_K), so that only the
 * accumulators of one pass are live (Q2_K's mins go into the lanes, first
 * in each block, as in dot_row). */
INL void k_kq(const uint8_t *pan, int nb, const void *const *xv, float *const *y, __mmask16 msk, const int A,
	      const uint32_t T)
{
	const xbk_t *x[2];
	__m512 fa[2][8], fm[2][4], fs[2];
#pragma GCC unroll 2
	for (int a = 0; a < A; a++) {
		x[a] = xv[a];
		fs[a] = _mm512_setzero_ps();
#pragma GCC unroll 8
		for (int k = 0; k < 8; k++)
			fa[a][k] = _mm512_setzero_ps();
#pragma GCC unroll 4
		for (int m = 0; m < 4; m++)
			fm[a][m] = _mm512_setzero_ps();
	}
#pragma GCC unroll 2
	for (int h = 0; h < 2; h++)
		for (int b = 0; b < nb; b++) {
			const uint8_t *pb = pan + (size_t)b * PBK;
			const xbk_t *xb[2];
			__m512 d[2], dmin[2];
			__m512 dw = _mm512_load_ps((const float *)(pb + PK_D));
#pragma GCC unroll 2
			for (int a = 0; a < A; a++) {
				xb[a] = x[a] + b;
				__m512 ad = _mm512_set1_ps(xb[a]->d);
				d[a] = _mm512_mul_ps(ad, dw);
				if (T == QUANT_Q2_K)
					dmin[a] = neg(_mm512_mul_ps(ad, _mm512_load_ps((const float *)(pb + PK_DM))));
			}
			__m512i ia[4][4];
			k_half(pb, xb, h, ia, A, T);
#pragma GCC unroll 4
			for (int p = 0; p < 4; p++)
#pragma GCC unroll 2
				for (int a = 0; a < A; a++) {
					int k = 4 * h + p;
					if (T == QUANT_Q2_K) {
						__m512i t = _mm512_madd_epi16(_mm512_load_si512(pb + PK_MN + 64 * k),
									      bcast32(&xb[a]->bsums[2 * k]));
						fa[a][k] = _mm512_fmadd_ps(dmin[a], _mm512_cvtepi32_ps(t), fa[a][k]);
					}
					fa[a][k] = _mm512_fmadd_ps(d[a], _mm512_cvtepi32_ps(ia[p][a]), fa[a][k]);
				}
		}
	for (int b = 0; (T == QUANT_Q4_K || T == QUANT_Q5_K) && b < nb; b++) {
		const uint8_t *pb = pan + (size_t)b * PBK;
		__m512 dmw = _mm512_load_ps((const float *)(pb + PK_DM));
#pragma GCC unroll 2
		for (int a = 0; a < A; a++) {
			const xbk_t *xb = x[a] + b;
			__m512 dmin = neg(_mm512_mul_ps(_mm512_set1_ps(xb->d), dmw));
			if (T == QUANT_Q4_K) {
#pragma GCC unroll 4
				for (int m = 0; m < 4; m++) {
					__m512i t = _mm512_madd_epi16(_mm512_load_si512(pb + PK_MN + 64 * m),
								      bcast32(&xb->bs32[2 * m]));
					fm[a][m] = _mm512_fmadd_ps(dmin, _mm512_cvtepi32_ps(t), fm[a][m]);
				}
			} else {
				__m512i t = _mm512_setzero_si512();
#pragma GCC unroll 4
				for (int m = 0; m < 4; m++) {
					__m512i mn = _mm512_load_si512(pb + PK_MN + 64 * m);
					t = _mm512_add_epi32(t, _mm512_madd_epi16(mn, bcast32(&xb->bs32[2 * m])));
				}
				fs[a] = _mm512_fmadd_ps(dmin, _mm512_cvtepi32_ps(t), fs[a]);
			}
		}
	}
#pragma GCC unroll 2
	for (int a = 0; a < A; a++) {
		__m512 r = lanes_sum(fa[a]);
		if (T == QUANT_Q4_K)
			r = _mm512_add_ps(r, _mm512_add_ps(_mm512_add_ps(fm[a][0], fm[a][2]),
							   _mm512_add_ps(fm[a][1], fm[a][3])));
		else if (T == QUANT_Q5_K)
			r = _mm512_add_ps(r, fs[a]);
		_mm512_mask_storeu_ps(y[a], msk, r);
	}
}

/* The low words of v's dwords, sign-extended: a scale stored as (s, s). */
INL __m512i lo_words(__m512i v)
{
	return _mm512_srai_epi32(_mm512_slli_epi32(v, 16), 16);
}

/* Q4_K, Q5_K and Q6_K in QMM_BLOCKS (T a constant), on the same panels:
 * a block's integer sum, then one fma by d per block and one by dmin for
 * the mins, dot_row's F_BLOCK operations. Q4_K and Q5_K: per 32-value group
 * the vpdpbusd of its 8 lane vectors into one int32 per output, times the
 * group's scale (vpmulld). Q6_K, whose scales go per 16 values (twice the
 * vpmulld, which made its output head slower than the lanes), sums k_half's
 * lanes instead: the same integers. */
INL void k_kq_blocks(const uint8_t *pan, int nb, const void *const *xv, float *const *y, __mmask16 msk,
		     const int A, const uint32_t T)
{
	const bool sgn = T == QUANT_Q6_K;
	const xbk_t *x[4];
	__m512 fa[4];
#pragma GCC unroll 4
	for (int a = 0; a < A; a++) {
		x[a] = xv[a];
		fa[a] = _mm512_setzero_ps();
	}
	for (int b = 0; b < nb; b++) {
		const uint8_t *pb = pan + (size_t)b * PBK;
		__m512i is[4];
#pragma GCC unroll 4
		for (int a = 0; a < A; a++)
			is[a] = _mm512_setzero_si512();
		if (sgn) {
			const xbk_t *xb[4];
#pragma GCC unroll 4
			for (int a = 0; a < A; a++)
				xb[a] = x[a] + b;
#pragma GCC unroll 2
			for (int h = 0; h < 2; h++) {
				__m512i ia[4][4];
				k_half(pb, xb, h, ia, A, T);
#pragma GCC unroll 4
				for (int a = 0; a < A; a++)
					is[a] = _mm512_add_epi32(is[a], _mm512_add_epi32(_mm512_add_epi32(ia[0][a], ia[1][a]),
											 _mm512_add_epi32(ia[2][a], ia[3][a])));
			}
		}
#pragma GCC unroll 8
		for (int c = 0; c < 8 && !sgn; c++) {
			__m512i av[4][2], t[4];
#pragma GCC unroll 4
			for (int a = 0; a < A; a++) {
				av[a][0] = bcast128(x[a][b].qs + 32 * c);
				av[a][1] = bcast128(x[a][b].qs + 32 * c + 16);
				t[a] = _mm512_setzero_si512();
			}
#pragma GCC unroll 8
			for (int p = 0; p < 8; p++) {
				__m512i w;
				if (T == QUANT_Q4_K) {	/* nibbles of groups 2m, 2m + 1 */
					w = _mm512_load_si512(pb + 64 * (8 * (c / 2) + p));
					w = c % 2 == 0 ? lo_nib(w) : hi_nib(w);
				} else {
					w = _mm512_load_si512(pb + 64 * (8 * c + p));
				}
#pragma GCC unroll 4
				for (int a = 0; a < A; a++)
					t[a] = _mm512_dpbusd_epi32(t[a], w, dword_k(av[a][p / 4], p % 4));
			}
			__m512i sc = lo_words(_mm512_load_si512(pb + PK_SC + 64 * c));
#pragma GCC unroll 4
			for (int a = 0; a < A; a++)
				is[a] = _mm512_add_epi32(is[a], _mm512_mullo_epi32(t[a], sc));
		}
		__m512 dw = _mm512_load_ps((const float *)(pb + PK_D));
#pragma GCC unroll 4
		for (int a = 0; a < A; a++) {
			__m512 ad = _mm512_set1_ps(x[a][b].d);
			fa[a] = _mm512_fmadd_ps(_mm512_mul_ps(ad, dw), _mm512_cvtepi32_ps(is[a]), fa[a]);
			if (T == QUANT_Q4_K || T == QUANT_Q5_K) {
				__m512 dmin = neg(_mm512_mul_ps(ad, _mm512_load_ps((const float *)(pb + PK_DM))));
				__m512i m = _mm512_setzero_si512();
#pragma GCC unroll 4
				for (int q = 0; q < 4; q++)
					m = _mm512_add_epi32(m, _mm512_madd_epi16(_mm512_load_si512(pb + PK_MN + 64 * q),
										  bcast32(&x[a][b].bs32[2 * q])));
				fa[a] = _mm512_fmadd_ps(dmin, _mm512_cvtepi32_ps(m), fa[a]);
			}
		}
	}
#pragma GCC unroll 4
	for (int a = 0; a < A; a++)
		_mm512_mask_storeu_ps(y[a], msk, fa[a]);
}

/* Activation rows a panel of type t takes at a time. */
static int group_rows(uint32_t t, enum qmm_order o)
{
	return float_mode(t, o) == F_BLOCK ? 4 : 2;
}

/* One panel (K values per row) times A <= group_rows(t) activation rows. */
static void kern(uint32_t t, enum qmm_order o, const uint8_t *pan, int K, const void *const *x, float *const *y,
		 __mmask16 msk, int A)
{
#define KQ(T) do {								\
		if (A == 2)							\
			k_kq(pan, K / 256, x, y, msk, 2, T);			\
		else								\
			k_kq(pan, K / 256, x, y, msk, 1, T);			\
	} while (0)
#define KB(T) do {								\
		if (A == 4)							\
			k_kq_blocks(pan, K / 256, x, y, msk, 4, T);		\
		else if (A == 3)						\
			k_kq_blocks(pan, K / 256, x, y, msk, 3, T);		\
		else if (A == 2)						\
			k_kq_blocks(pan, K / 256, x, y, msk, 2, T);		\
		else								\
			k_kq_blocks(pan, K / 256, x, y, msk, 1, T);		\
	} while (0)
	if (blocks_sum(t, o)) {
		switch (t) {	/* the same panels; the legacy types take Q4_0's kernel */
		case QUANT_Q4_K: KB(QUANT_Q4_K); return;
		case QUANT_Q5_K: KB(QUANT_Q5_K); return;
		case QUANT_Q6_K: KB(QUANT_Q6_K); return;
		default: t = QUANT_Q4_0; break;
		}
	}
#undef KB
	switch (t) {
	case QUANT_Q4_0:
		if (A == 4)
			k_block(pan, K / 32, x, y, msk, 4);
		else if (A == 2)
			k_block(pan, K / 32, x, y, msk, 2);
		else if (A == 3)
			k_block(pan, K / 32, x, y, msk, 3);
		else
			k_block(pan, K / 32, x, y, msk, 1);
		break;
	case QUANT_Q4_1: case QUANT_Q5_1:
		if (A == 2)
			k_lanes(pan, K / 32, x, y, msk, 2, true);
		else
			k_lanes(pan, K / 32, x, y, msk, 1, true);
		break;
	case QUANT_Q5_0: case QUANT_Q8_0: case QUANT_IQ4_NL:
		if (A == 2)
			k_lanes(pan, K / 32, x, y, msk, 2, false);
		else
			k_lanes(pan, K / 32, x, y, msk, 1, false);
		break;
	case QUANT_Q2_K: KQ(QUANT_Q2_K); break;
	case QUANT_Q3_K: KQ(QUANT_Q3_K); break;
	case QUANT_Q4_K: KQ(QUANT_Q4_K); break;
	case QUANT_Q5_K: KQ(QUANT_Q5_K); break;
	case QUANT_Q6_K: KQ(QUANT_Q6_K); break;
	case QUANT_IQ4_XS: KQ(QUANT_IQ4_XS); break;
	default: break;
	}
#undef KQ
}

/* qmm_dot on the panel path: a panel of one row, one activation row. */
static float dot_panel(uint32_t wtype, enum qmm_order o, const void *wrow, const void *arow, int K)
{
	int a = qmm_act_for(wtype);
	bool kq = a == QMM_A8_K;
	size_t pb = (panel_bytes(K) + 63) / 64 * 64;
	size_t xb = kq ? (size_t)(K / 256) * sizeof(xbk_t) : (size_t)(K / 32) * sizeof(xb0_t);
	uint8_t *mem = aligned_alloc(64, pb + (xb + 63) / 64 * 64);
	if (mem == NULL)
		return NAN;
	x_from_act((enum qmm_act)a, arow, mem + pb, K);
	unpack_panel(wtype, wrow, 0, 1, K, mem, NULL, 0);
	float r[PR];
	const void *x[1] = { mem + pb };
	float *y[1] = { r };
	kern(wtype, o, mem, K, x, y, 1, 1);
	free(mem);
	return r[0];
}

#endif /* QMM_SIMD */

float qmm_dot(uint32_t wtype, enum qmm_order o, const void *wrow, const void *arow, int K)
{
	if (qmm_act_for(wtype) < 0)
		return NAN;
#if QMM_SIMD
	return dot_panel(wtype, o, wrow, arow, K);
#else
	size_t nb = urow_bytes(K);
	void *mem = malloc(nb);
	if (mem == NULL)
		return NAN;
	urow_t u;
	urow_init(&u, mem, K);
	unpack_row(wtype, wrow, K, &u);
	float r = dot_row(wtype, o, &u, arow, K);
	free(mem);
	return r;
#endif
}

/* ---------------- the matrix product ---------------- */

#define ROWS_PER_TASK 16

/* Bytes of a quantized activation row in the portable path's formats,
 * each rounded to 64. */
static size_t act_row_bytes(enum qmm_act a, int K)
{
	return (qmm_act_row_bytes(a, K) + 63) / 64 * 64;
}

#if QMM_SIMD
/* The panel path's rows: legacy kernel blocks (A8_0 and A8_1 alike) and K
 * kernel blocks, each rounded to 64. */
static size_t x0_row_bytes(int K)
{
	return K % 32 == 0 ? ((size_t)(K / 32) * sizeof(xb0_t) + 63) / 64 * 64 : 0;
}

static size_t xk_row_bytes(int K)
{
	return K % 256 == 0 ? ((size_t)(K / 256) * sizeof(xbk_t) + 63) / 64 * 64 : 0;
}
#endif

size_t qmm_ws_bytes(int n, int K)
{
	size_t per = 0;
	for (int a = 0; a < QMM_N_ACT; a++)
		per += act_row_bytes((enum qmm_act)a, K);
#if QMM_SIMD
	size_t simd = x0_row_bytes(K) + xk_row_bytes(K);
	per = simd > per ? simd : per;
#endif
	return (size_t)n * per + 64;
}

typedef struct qjob {
	float *y;
	size_t ldy;
	const ops_w_t *w;
	int n;
	const char *act[QMM_N_ACT];	/* quantized rows of each format used */
	size_t act_stride[QMM_N_ACT];
	int n_tasks;
} qjob_t;

/* The portable path: rows [16 task, 16 task + 16) of W against every
 * activation row, one row unpacked at a time on this thread's stack. */
static void q_task(void *arg, int task, int worker)
{
	(void)worker;
	const qjob_t *j = arg;
	const ops_w_t *w = j->w;
	int K = w->n_in;
	/* one unpacked row: K int8 + scales; K <= 65536 checked at load */
	_Alignas(64) char mem[65536 + 2 * 4096 * 2 + 2 * 2048 * 4 + 64];
	urow_t u;
	urow_init(&u, mem, K);
	int r0 = task * ROWS_PER_TASK, r1 = r0 + ROWS_PER_TASK < w->n_out ? r0 + ROWS_PER_TASK : w->n_out;
	for (int r = r0; r < r1; r++) {
		const ops_qseg_t *sg = &w->seg[0];
		for (int i = 1; i < w->n_seg && r >= w->seg[i].row0; i++)
			sg = &w->seg[i];
		unpack_row(sg->type, sg->data + (size_t)(r - sg->row0) * sg->row_bytes, K, &u);
		int a = qmm_act_for(sg->type);
		const char *ar = j->act[a];
		for (int i = 0; i < j->n; i++)
			j->y[(size_t)i * j->ldy + (size_t)r] = dot_row(sg->type, (enum qmm_order)w->qorder, &u,
										   ar + (size_t)i * j->act_stride[a], K);
	}
}

static void matmul_rows(ops_pool_t *p, float *y, size_t ldy, const float *x, size_t ldx, const ops_w_t *w, int n,
			void *ws)
{
	int K = w->n_in;
	qjob_t j = { .y = y, .ldy = ldy, .w = w, .n = n };
	bool need[QMM_N_ACT] = { false };
	for (int i = 0; i < w->n_seg; i++)
		need[qmm_act_for(w->seg[i].type)] = true;
	char *base = ws;
	for (int a = 0; a < QMM_N_ACT; a++) {
		size_t rb = act_row_bytes((enum qmm_act)a, K);
		if (!need[a])
			continue;
		j.act[a] = base;
		j.act_stride[a] = rb;
		for (int i = 0; i < n; i++)
			qmm_quantize((enum qmm_act)a, x + (size_t)i * ldx, base + (size_t)i * rb, K);
		base += (size_t)n * rb;
	}
	j.n_tasks = (w->n_out + ROWS_PER_TASK - 1) / ROWS_PER_TASK;
	ops_pool_run(p, q_task, &j, j.n_tasks);
}

#if QMM_SIMD
/* Panels kept on a task's stack up to this size (else one heap buffer per
 * worker for the call). */
#define PANEL_STACK (96 * 1024)
/* With many activation rows a task unpacks several panels, up to about
 * this many bytes (half of a Zen 5 core's L2), and runs the activation rows
 * against all of them a chunk of ACT_BYTES at a time: each chunk is read
 * once from memory or L3 for all the panels, instead of once per panel
 * (with rows of 2048, one panel per task made a prefill of 4096 rows
 * stream 19 MB per 16 outputs, slower than the f32 path). */
#define PANEL_BUDGET (384 * 1024)
#define ACT_BYTES (160 * 1024)
#define MANY_ROWS 64		/* "many activation rows" */

typedef struct pjob {
	float *y;
	size_t ldy;
	const ops_w_t *w;
	int n, K;
	const uint8_t *x0, *xk;	/* kernel rows, legacy and K */
	size_t s0, sk;		/* their strides */
	int n_panels;		/* over all segments */
	int per_task;		/* panels a task unpacks */
	int chunk;		/* activation rows run against them at a time */
	size_t pbytes;		/* bytes of a panel, a multiple of 64 */
	uint8_t *heap;		/* NULL: panels on the stack; else per worker */
} pjob_t;

/* Panel i of w: its segment and first row in it. */
static const ops_qseg_t *panel_at(const ops_w_t *w, int i, int *ret_r0)
{
	for (int s = 0; s < w->n_seg; s++) {
		int np = (w->seg[s].n_rows + PR - 1) / PR;
		if (i < np) {
			*ret_r0 = i * PR;
			return &w->seg[s];
		}
		i -= np;
	}
	return NULL;
}

static int count_panels(const ops_w_t *w)
{
	int n = 0;
	for (int s = 0; s < w->n_seg; s++)
		n += (w->seg[s].n_rows + PR - 1) / PR;
	return n;
}

/* Activation rows [i0, i1) against one unpacked panel. */
static void run_panel(const pjob_t *j, const ops_qseg_t *sg, int r0, const uint8_t *pan, int i0, int i1)
{
	int rows = sg->n_rows - r0 < PR ? sg->n_rows - r0 : PR;
	__mmask16 msk = (__mmask16)((1u << rows) - 1u);
	size_t col0 = (size_t)(sg->row0 + r0);
	bool kq = quant_block_values(sg->type) == 256;
	const uint8_t *xb = kq ? j->xk : j->x0;
	size_t xs = kq ? j->sk : j->s0;
	int g = group_rows(sg->type, (enum qmm_order)j->w->qorder);
	for (int i = i0; i < i1; i += g) {
		int A = i1 - i < g ? i1 - i : g;
		const void *x[4];
		float *y[4];
		for (int a = 0; a < A; a++) {
			x[a] = xb + (size_t)(i + a) * xs;
			y[a] = j->y + (size_t)(i + a) * j->ldy + col0;
		}
		kern(sg->type, (enum qmm_order)j->w->qorder, pan, j->K, x, y, msk, A);
	}
}

/* The rows of panel i of w: where they start and their bytes. */
static const uint8_t *panel_rows(const ops_w_t *w, int i, size_t *ret_bytes)
{
	int r0;
	const ops_qseg_t *sg = panel_at(w, i, &r0);
	int rows = sg->n_rows - r0 < PR ? sg->n_rows - r0 : PR;
	*ret_bytes = (size_t)rows * sg->row_bytes;
	return sg->data + (size_t)r0 * sg->row_bytes;
}

static void p_task(void *arg, int task, int next, int worker)
{
	const pjob_t *j = arg;
	_Alignas(64) uint8_t stack[PANEL_STACK];
	uint8_t *buf = j->heap != NULL ? j->heap + (size_t)worker * (size_t)j->per_task * j->pbytes : stack;
	int p0 = task * j->per_task, p1 = p0 + j->per_task < j->n_panels ? p0 + j->per_task : j->n_panels;
	const ops_qseg_t *sg[64];	/* panel p0 + k: segment, first row in it */
	int r0[64];
	for (int k = 0; k < p1 - p0; k++) {
		/* the panel after this one: this task's next, or the first of
		 * the task this worker takes next */
		int after = p0 + k + 1 < p1 ? p0 + k + 1 : next >= 0 ? next * j->per_task : -1;
		size_t pf_bytes = 0;
		const uint8_t *pf = after >= 0 ? panel_rows(j->w, after, &pf_bytes) : NULL;
		const ops_qseg_t *s = sg[k] = panel_at(j->w, p0 + k, &r0[k]);
		unpack_panel(s->type, s->data + (size_t)r0[k] * s->row_bytes, s->row_bytes, s->n_rows - r0[k], j->K,
			     buf + (size_t)k * j->pbytes, pf, pf_bytes);
	}
	for (int i0 = 0; i0 < j->n; i0 += j->chunk) {
		int i1 = i0 + j->chunk < j->n ? i0 + j->chunk : j->n;
		for (int k = 0; k < p1 - p0; k++)
			run_panel(j, sg[k], r0[k], buf + (size_t)k * j->pbytes, i0, i1);
	}
}

/* Activation rows [QZ_ROWS task, + QZ_ROWS) quantized into kernel blocks. */
#define QZ_ROWS 16

typedef struct qzjob {
	const float *x;
	size_t ldx;
	int n, K;
	uint8_t *x0, *xk;	/* NULL where no panel takes that format */
	size_t s0, sk;
} qzjob_t;

static void qz_task(void *arg, int task, int worker)
{
	(void)worker;
	const qzjob_t *q = arg;
	int i1 = (task + 1) * QZ_ROWS < q->n ? (task + 1) * QZ_ROWS : q->n;
	for (int i = task * QZ_ROWS; i < i1; i++) {
		if (q->x0 != NULL)
			x0_quantize(q->x + (size_t)i * q->ldx, (xb0_t *)(q->x0 + (size_t)i * q->s0), q->K);
		if (q->xk != NULL)
			xk_quantize(q->x + (size_t)i * q->ldx, (xbk_t *)(q->xk + (size_t)i * q->sk), q->K);
	}
}

/* The panel path; false if it cannot get its memory (the caller then
 * takes the portable one). */
static bool matmul_panels(ops_pool_t *p, float *y, size_t ldy, const float *x, size_t ldx, const ops_w_t *w,
			  int n, void *ws)
{
	int K = w->n_in, threads = ops_pool_threads(p);
	pjob_t j = { .y = y, .ldy = ldy, .w = w, .n = n, .K = K };
	j.pbytes = (panel_bytes(K) + 63) / 64 * 64;
	j.n_panels = count_panels(w);
	/* several panels a task when many activation rows share them, while
	 * leaving every thread a few tasks */
	j.per_task = 1;
	j.chunk = n;
	if (n >= MANY_ROWS) {
		int g = (int)(PANEL_BUDGET / j.pbytes), most = j.n_panels / (3 * threads);
		g = g < most ? g : most;
		j.per_task = g < 1 ? 1 : g > 64 ? 64 : g;
		size_t xb = x0_row_bytes(K) + xk_row_bytes(K);
		j.chunk = (int)(ACT_BYTES / xb);
		j.chunk = j.chunk < 8 ? 8 : j.chunk;
	}
	if ((size_t)j.per_task * j.pbytes > PANEL_STACK) {
		j.heap = aligned_alloc(64, (size_t)threads * (size_t)j.per_task * j.pbytes);
		if (j.heap == NULL)
			return false;
	}
	bool need0 = false, needk = false;
	for (int i = 0; i < w->n_seg; i++) {
		if (quant_block_values(w->seg[i].type) == 256)
			needk = true;
		else
			need0 = true;
	}
	uint8_t *base = ws;
	qzjob_t qz = { .x = x, .ldx = ldx, .n = n, .K = K };
	if (need0) {
		j.x0 = qz.x0 = base;
		j.s0 = qz.s0 = x0_row_bytes(K);
		base += (size_t)n * j.s0;
	}
	if (needk) {
		j.xk = qz.xk = base;
		j.sk = qz.sk = xk_row_bytes(K);
	}
	/* a region of its own when it is worth the synchronisation */
	int qt = (n + QZ_ROWS - 1) / QZ_ROWS;
	if (n >= 4 * QZ_ROWS && threads > 1)
		ops_pool_run(p, qz_task, &qz, qt);
	else
		for (int t = 0; t < qt; t++)
			qz_task(&qz, t, 0);
	ops_pool_run_shares(p, p_task, &j, (j.n_panels + j.per_task - 1) / j.per_task);
	free(j.heap);
	return true;
}
#endif

#if QMM_SIMD
/* ---- one activation row over Q8_0 rows: no panels ----
 *
 * A decode step of one sequence multiplies each weight row by one
 * activation row: transposing 16 rows into a panel then costs more than
 * the products it serves (unpack_panel was 64% of a batch-1 Q8_0 profile).
 * Here each row is read straight from its blocks, 4 rows at a time, with
 * dot_row's operations: lane k of a block = dword k of its products (one
 * vpdpbusd of |w| and a * sign(w): w = -128 gives |w| = 128 unsigned, a is
 * at most 127 in magnitude), acc_k = fma(dw * da, lane_k, acc_k) over the
 * blocks in order, then hsum8 and + 0 (the offset term Q8_0 lacks), as
 * k_lanes gives. */
#define D1_ROWS 32		/* rows a task takes */

typedef struct d1job {
	float *y;
	const ops_w_t *w;
	const a8_0_t *xa;
	int nb;			/* blocks per row */
} d1job_t;

/* hsum8 of the 8 lanes: (l + l+4), then (+ l+2), then (+ l+1). */
INL float hsum8_ps(__m256 v)
{
	__m128 r = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	__m128 h = _mm_add_ps(r, _mm_movehl_ps(r, r));
	return _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
}

INL __m256 d1_block(const uint8_t *wb, const a8_0_t *a, __m256 acc)
{
	__m256i w = _mm256_loadu_si256((const __m256i *)(wb + 2));
	__m256i q = _mm256_loadu_si256((const __m256i *)a->qs);
	__m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(w, w), _mm256_sign_epi8(q, w));
	float dw = _cvtsh_ss(*(const uint16_t *)wb);
	return _mm256_fmadd_ps(_mm256_set1_ps(dw * a->d), _mm256_cvtepi32_ps(s), acc);
}

/* The scales dw * da of the same block of 4 rows rb apart, as 4 floats. */
INL __m128 d1_scales4(const uint8_t *wb, size_t rb, float da)
{
	__m128i dh = _mm_setr_epi16((short)*(const uint16_t *)wb, (short)*(const uint16_t *)(wb + rb),
				    (short)*(const uint16_t *)(wb + 2 * rb), (short)*(const uint16_t *)(wb + 3 * rb), 0,
				    0, 0, 0);
	return _mm_mul_ps(_mm_cvtph_ps(dh), _mm_set1_ps(da));
}

/* The 8 lanes of one block of 2 rows (row0, row0 + rb) in the two halves
 * of a vector: |w| times a * sign(w) by vpdpbusd (w = -128 gives |w| = 128
 * unsigned; a is at most 127 in magnitude), d1_block's integers. */
INL __m512i d1_lanes2(const uint8_t *wb, size_t rb, __m512i a2)
{
	__m512i w = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(wb + 2))),
				       _mm256_loadu_si256((const __m256i *)(wb + rb + 2)), 1);
	__m512i as = _mm512_mask_sub_epi8(a2, _mm512_movepi8_mask(w), _mm512_setzero_si512(), a2);
	return _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(w), as);
}

/* QMM_LLAMA, 4 rows rb apart: d1_block's chains (acc_k = fma(dw * da,
 * lane_k, acc_k) per row, over the blocks in order), two rows to a vector,
 * and the 4 rows' scales converted together. */
static void d1_rows4_lanes(const uint8_t *row, size_t rb, const a8_0_t *xa, int nb, float *y)
{
	const __m512i i01 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
	const __m512i i23 = _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
	__m512 a01 = _mm512_setzero_ps(), a23 = a01;
	for (int b = 0; b < nb; b++) {
		const uint8_t *wb = row + (size_t)b * 34;
		if (b % 2 == 0)	/* the same blocks of the rows 16 ahead */
			for (int k = 16; k < 20; k++)
				_mm_prefetch((const char *)wb + (size_t)k * rb, _MM_HINT_T0);
		__m512i a2 = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)xa[b].qs));
		__m512 dd = _mm512_castps128_ps512(d1_scales4(wb, rb, xa[b].d));
		a01 = _mm512_fmadd_ps(_mm512_permutexvar_ps(i01, dd), _mm512_cvtepi32_ps(d1_lanes2(wb, rb, a2)), a01);
		a23 = _mm512_fmadd_ps(_mm512_permutexvar_ps(i23, dd),
				      _mm512_cvtepi32_ps(d1_lanes2(wb + 2 * rb, rb, a2)), a23);
	}
	y[0] = hsum8_ps(_mm512_castps512_ps256(a01)) + 0.0f;
	y[1] = hsum8_ps(_mm512_extractf32x8_ps(a01, 1)) + 0.0f;
	y[2] = hsum8_ps(_mm512_castps512_ps256(a23)) + 0.0f;
	y[3] = hsum8_ps(_mm512_extractf32x8_ps(a23, 1)) + 0.0f;
}

/* QMM_BLOCKS: the int32 sums of the same block of 4 rows, rows 0-3 in
 * dwords 0-3 (integer additions: any order gives the same sums), from
 * d1_lanes2's lanes, two rows to a vector. */
INL __m128i d1_isum4(const uint8_t *wb, size_t rb, const a8_0_t *a)
{
	__m512i a2 = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)a->qs));
	__m512i s01 = d1_lanes2(wb, rb, a2), s23 = d1_lanes2(wb + 2 * rb, rb, a2);
	__m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(_mm512_castsi512_si256(s01), _mm512_extracti64x4_epi64(s01, 1)),
				      _mm256_hadd_epi32(_mm512_castsi512_si256(s23), _mm512_extracti64x4_epi64(s23, 1)));
	return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

/* QMM_BLOCKS, 4 rows rb apart: acc_r = fma(isum_r, dw_r * da, acc_r) over
 * the blocks in order (k_block's and dot_row's F_BLOCK operations). */
static void d1_rows4_blocks(const uint8_t *row, size_t rb, const a8_0_t *xa, int nb, float *y)
{
	__m128 acc = _mm_setzero_ps();
	for (int b = 0; b < nb; b++) {
		const uint8_t *wb = row + (size_t)b * 34;
		if (b % 2 == 0)
			for (int k = 16; k < 20; k++)
				_mm_prefetch((const char *)wb + (size_t)k * rb, _MM_HINT_T0);
		acc = _mm_fmadd_ps(_mm_cvtepi32_ps(d1_isum4(wb, rb, xa + b)), d1_scales4(wb, rb, xa[b].d), acc);
	}
	_mm_storeu_ps(y, acc);
}

/* QMM_BLOCKS, one row. (Not a scalar loop: GCC 12 vectorizes the int8 x
 * int8 sum of a uint8_t pointer cast to int8_t into an unsigned vpdpbusd.) */
static float d1_row_blocks(const uint8_t *row, const a8_0_t *xa, int nb)
{
	float acc = 0.0f;
	for (int b = 0; b < nb; b++) {
		const uint8_t *wb = row + (size_t)b * 34;
		__m256i w = _mm256_loadu_si256((const __m256i *)(wb + 2));
		__m256i q = _mm256_loadu_si256((const __m256i *)xa[b].qs);
		__m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(w, w), _mm256_sign_epi8(q, w));
		__m128i h = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
		h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4E));
		h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xB1));
		acc = fmaf((float)_mm_cvtsi128_si32(h), _cvtsh_ss(*(const uint16_t *)wb) * xa[b].d, acc);
	}
	return acc;
}

static void d1_task(void *arg, int task, int next, int worker)
{
	(void)worker;
	(void)next;
	const d1job_t *j = arg;
	bool blocks = j->w->qorder == QMM_BLOCKS;
	const ops_w_t *w = j->w;
	int r0 = task * D1_ROWS, r1 = r0 + D1_ROWS < w->n_out ? r0 + D1_ROWS : w->n_out;
	for (int r = r0; r < r1;) {
		const ops_qseg_t *sg = &w->seg[0];
		for (int i = 1; i < w->n_seg && r >= w->seg[i].row0; i++)
			sg = &w->seg[i];
		const uint8_t *row = sg->data + (size_t)(r - sg->row0) * sg->row_bytes;
		int seg_end = sg->row0 + sg->n_rows, nr = r1 - r < 4 ? r1 - r : 4;
		if (nr > seg_end - r)
			nr = seg_end - r;
		if (blocks) {
			if (nr == 4)
				d1_rows4_blocks(row, sg->row_bytes, j->xa, j->nb, j->y + r);
			else
				for (int k = 0; k < nr; k++)
					j->y[r + k] = d1_row_blocks(row + (size_t)k * sg->row_bytes, j->xa, j->nb);
		} else if (nr == 4) {
			d1_rows4_lanes(row, sg->row_bytes, j->xa, j->nb, j->y + r);
		} else {
			for (int k = 0; k < nr; k++) {
				__m256 a = _mm256_setzero_ps();
				for (int b = 0; b < j->nb; b++)
					a = d1_block(row + (size_t)k * sg->row_bytes + (size_t)b * 34, j->xa + b, a);
				j->y[r + k] = hsum8_ps(a) + 0.0f;
			}
		}
		r += nr;
	}
}

/* Y[1][N] = x . W^T when every segment of w is Q8_0; false otherwise. */
static bool matmul_q8_0_one(ops_pool_t *p, float *y, const float *x, const ops_w_t *w, void *ws)
{
	for (int i = 0; i < w->n_seg; i++)
		if (w->seg[i].type != QUANT_Q8_0)
			return false;
	int K = w->n_in;
	qmm_quantize(QMM_A8_0, x, ws, K);
	d1job_t j = { .y = y, .w = w, .xa = ws, .nb = K / 32 };
	ops_pool_run_shares(p, d1_task, &j, (w->n_out + D1_ROWS - 1) / D1_ROWS);
	return true;
}
#endif

void qmm_matmul(ops_pool_t *p, float *y, size_t ldy, const float *x, size_t ldx,
		const ops_w_t *w, int n, void *ws)
{
	if (n <= 0)
		return;
#if QMM_SIMD
	if (n == 1 && matmul_q8_0_one(p, y, x, w, ws))
		return;
	if (matmul_panels(p, y, ldy, x, ldx, w, n, ws))
		return;
#endif
	matmul_rows(p, y, ldy, x, ldx, w, n, ws);
}
