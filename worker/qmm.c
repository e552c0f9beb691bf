/* qmm: quantized-weight matrix products, llama.cpp's arithmetic (qmm.h).
 *
 * Structure. A weight row is first unpacked, block by block, into a common
 * integer form (unpack_row): its quants as int8 (offsets such as Q4_0's -8
 * applied), an integer scale and an integer min per 16 values, and per
 * block the f32 scale(s). The product of that form with a quantized
 * activation row (dot_row) is the same for every weight type: integer sums
 * per 16 values, multiplied by the integer scales, summed per block, then
 * the block's f32 scaling. A row is unpacked once per step and reused by
 * every activation row of the step, so a batch pays the unpacking once.
 *
 * Only the integer inner sums have a vector version (AVX-512BW / VNNI);
 * integers are exact, so it gives the portable code's bits. */
#include "qmm.h"

#include "gguf.h"
#include "quant.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX512F__) && defined(__AVX512BW__)
#include <immintrin.h>
#define QMM_AVX512 1
#else
#define QMM_AVX512 0
#endif

const char *qmm_kernel_name(void)
{
#if QMM_AVX512 && defined(__AVX512VNNI__)
	return "avx512-vnni";
#elif QMM_AVX512
	return "avx512";
#else
	return "generic";
#endif
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

static float f16_round(float x)
{
	return gguf_f16_to_f32(gguf_f32_to_f16(x));
}

/* ggml's x86 quantize_row_q8_0 / q8_1: scale 127 / amax, round half to even. */
static int quantize32(const float *x, int8_t *q, float *ret_d)
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
	*ret_d = d;
	return sum;
}

/* ggml's nearest_int: round half to even through the float adder. */
static int nearest_int(float v)
{
	float t = v + 12582912.0f;
	int32_t i;
	memcpy(&i, &t, 4);
	return (i & 0x007fffff) - 0x00400000;
}

void qmm_quantize(enum qmm_act a, const float *x, void *dst, int K)
{
	if (a == QMM_A8_0) {
		a8_0_t *b = dst;
		for (int i = 0; i < K / 32; i++) {
			float d;
			quantize32(x + 32 * i, b[i].qs, &d);
			b[i].d = f16_round(d);
		}
	} else if (a == QMM_A8_1) {
		a8_1_t *b = dst;
		for (int i = 0; i < K / 32; i++) {
			float d;
			int sum = quantize32(x + 32 * i, b[i].qs, &d);
			b[i].d = f16_round(d);
			b[i].s = f16_round(d * (float)sum);
		}
	} else {
		a8_k_t *b = dst;
		for (int i = 0; i < K / 256; i++) {
			const float *xb = x + 256 * i;
			float amax = 0.0f, max = 0.0f;
			for (int j = 0; j < 256; j++) {
				float ax = fabsf(xb[j]);
				if (ax > amax) {
					amax = ax;
					max = xb[j];
				}
			}
			if (amax == 0.0f) {
				memset(&b[i], 0, sizeof(b[i]));
				continue;
			}
			float iscale = -127.0f / max;
			for (int j = 0; j < 256; j++) {
				int v = nearest_int(iscale * xb[j]);
				b[i].qs[j] = (int8_t)(v < 127 ? v : 127);
			}
			for (int g = 0; g < 16; g++) {
				int s = 0;
				for (int j = 0; j < 16; j++)
					s += b[i].qs[16 * g + j];
				b[i].bsums[g] = (int16_t)s;
			}
			b[i].d = 1.0f / iscale;
		}
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

static float half_at(const uint8_t *p)
{
	uint16_t h;
	memcpy(&h, p, 2);
	return gguf_f16_to_f32(h);
}

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

/* Unpacks block b (values [qk*b, qk*b + qk)) of type t into u. The value
 * order is the dequantized order (quant.c), so position i of q multiplies
 * activation i. */
static void unpack_block(uint32_t t, const uint8_t *b, urow_t *u, int bi)
{
	int8_t *q;
	int16_t *sc, *mn;
	switch (t) {
	case QUANT_Q4_0: case QUANT_Q4_1: case QUANT_Q5_0: case QUANT_Q5_1: case QUANT_Q8_0:
	case QUANT_IQ4_NL: {
		q = u->q + 32 * bi;
		u->sc[2 * bi] = u->sc[2 * bi + 1] = 1;
		u->mn[2 * bi] = u->mn[2 * bi + 1] = 0;
		u->d[bi] = half_at(b);
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
			u->dm[bi] = half_at(b + 2);
		} else if (t == QUANT_Q5_0) {
			memcpy(&qh, b + 2, 4);
			qs = b + 6;
			off = 16;
		} else if (t == QUANT_Q5_1) {
			memcpy(&qh, b + 4, 4);
			qs = b + 8;
			u->dm[bi] = half_at(b + 2);
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
		return;
	}
	default:
		break;
	}
	/* 256-value super-blocks: 8 entries of d/dm per block (one used) */
	q = u->q + 256 * bi;
	sc = u->sc + 16 * bi;
	mn = u->mn + 16 * bi;
	float *d = &u->d[8 * bi], *dm = &u->dm[8 * bi];
	switch (t) {
	case QUANT_Q2_K: {
		const uint8_t *scales = b, *qs = b + 16;
		*d = half_at(b + 80);
		*dm = half_at(b + 82);
		int g = 0;
		for (int n = 0; n < 256; n += 128, qs += 32)
			for (int shift = 0; shift < 8; shift += 2)
				for (int h = 0; h < 2; h++, g++) {
					sc[g] = scales[g] & 0xf;
					mn[g] = scales[g] >> 4;
					for (int l = 0; l < 16; l++)
						q[16 * g + l] = (int8_t)((qs[16 * h + l] >> shift) & 3);
				}
		return;
	}
	case QUANT_Q3_K: {
		const uint8_t *hm = b, *qs = b + 32, *p = b + 96;
		*d = half_at(b + 108);
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
		return;
	}
	case QUANT_Q4_K: case QUANT_Q5_K: {
		bool five = t == QUANT_Q5_K;
		const uint8_t *scales = b + 4, *qh = b + 16, *qs = b + (five ? 48 : 16);
		*d = half_at(b);
		*dm = half_at(b + 2);
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
		return;
	}
	case QUANT_Q6_K: {
		const uint8_t *ql = b, *qh = b + 128;
		const int8_t *s8 = (const int8_t *)(b + 192);
		*d = half_at(b + 208);
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
		return;
	}
	case QUANT_IQ4_XS: {
		uint16_t sh;
		memcpy(&sh, b + 2, 2);
		const uint8_t *sl = b + 4, *qs = b + 8;
		*d = half_at(b);
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
		return;
	}
	default:
		return;
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

static int float_mode(uint32_t t)
{
	return t == QUANT_Q4_0 ? F_BLOCK : F_LANES;
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
static float dot_row(uint32_t t, const urow_t *u, const void *arow, int K)
{
	int kind = kind_of(t), fm = float_mode(t);
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
		if (t == QUANT_Q2_K) {	/* mins of 16-value groups, pairs per lane, first */
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
		for (int k = 0; k < 8; k++)
			acc[k] = fmaf(d, (float)lane[k], acc[k]);
	}
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

float qmm_dot(uint32_t wtype, const void *wrow, const void *arow, int K)
{
	size_t nb = urow_bytes(K);
	void *mem = malloc(nb);
	if (mem == NULL)
		return NAN;
	urow_t u;
	urow_init(&u, mem, K);
	unpack_row(wtype, wrow, K, &u);
	float r = dot_row(wtype, &u, arow, K);
	free(mem);
	return r;
}

/* The same definition with the integer sums in plain scalar C (no vector
 * code), for the tests. */
float qmm_dot_ref(uint32_t wtype, const void *wrow, const void *arow, int K)
{
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
		if (wtype == QUANT_Q4_K)
			for (int m = 0; m < 4; m++)
				accm[m] = fmaf(dmin, (float)(mn[4 * m] * (bs[4 * m] + bs[4 * m + 1]) +
							   mn[4 * m + 2] * (bs[4 * m + 2] + bs[4 * m + 3])), accm[m]);
		if (wtype == QUANT_Q5_K) {
			int32_t p = 0;
			for (int j = 0; j < 8; j++)
				p += mn[2 * j] * (bs[2 * j] + bs[2 * j + 1]);
			summs = fmaf(dmin, (float)p, summs);
		}
		int32_t lane[8] = { 0 }, all = 0;
		for (int i = 0; i < qk; i++) {
			int32_t v = (int32_t)u.sc[(size_t)(qk / 16) * (size_t)b + (size_t)(i / 16)] *
				    u.q[(size_t)qk * (size_t)b + (size_t)i] * aq[i];
			lane[(i % 32) / 4] += v;
			all += v;
		}
		if (wtype == QUANT_Q4_0)
			acc1 = fmaf((float)all, dd, acc1);
		else
			for (int k = 0; k < 8; k++)
				acc[k] = fmaf(dd, (float)lane[k], acc[k]);
	}
	free(mem);
	if (wtype == QUANT_Q4_0)
		return acc1;
	float r = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
	if (wtype == QUANT_Q4_K)
		r += (accm[0] + accm[2]) + (accm[1] + accm[3]);
	else
		r += summs;
	return r;
}

/* ---------------- the matrix product ---------------- */

#define ROWS_PER_TASK 16

size_t qmm_ws_bytes(int n, int K)
{
	size_t per = 0;
	for (int a = 0; a < QMM_N_ACT; a++) {
		size_t rb = qmm_act_row_bytes((enum qmm_act)a, K);
		per += (rb + 63) / 64 * 64;
	}
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

/* Rows [16 task, 16 task + 16) of W against every activation row. The
 * unpacked row lives on this thread's stack-sized heap buffer. */
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
			j->y[(size_t)i * j->ldy + (size_t)r] = dot_row(sg->type, &u, ar + (size_t)i * j->act_stride[a], K);
	}
}

void qmm_matmul(ops_pool_t *p, float *y, size_t ldy, const float *x, size_t ldx,
		const ops_w_t *w, int n, void *ws)
{
	if (n <= 0)
		return;
	int K = w->n_in;
	qjob_t j = { .y = y, .ldy = ldy, .w = w, .n = n };
	bool need[QMM_N_ACT] = { false };
	for (int i = 0; i < w->n_seg; i++)
		need[qmm_act_for(w->seg[i].type)] = true;
	char *base = ws;
	for (int a = 0; a < QMM_N_ACT; a++) {
		size_t rb = (qmm_act_row_bytes((enum qmm_act)a, K) + 63) / 64 * 64;
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
