/* quant: dequantization of ggml's block formats. See quant.h for the
 * layouts and why every value is exact but for one rounded addition. */
#include "quant.h"

#include "gguf.h"

#include <errno.h>
#include <math.h>
#include <string.h>

/* IQ4_NL / IQ4_XS: the 16 non-uniform levels (ggml-common.h kvalues_iq4nl). */
static const int8_t iq4_levels[16] = {
	-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
};

static float half(const uint8_t *p)
{
	uint16_t h;
	memcpy(&h, p, 2);
	return gguf_f16_to_f32(h);
}

bool quant_supported(uint32_t type)
{
	return quant_block_bytes(type) > 0;
}

int quant_block_values(uint32_t type)
{
	switch (type) {
	case QUANT_Q4_0: case QUANT_Q4_1: case QUANT_Q5_0: case QUANT_Q5_1:
	case QUANT_Q8_0: case QUANT_IQ4_NL:
		return QUANT_QK;
	case QUANT_Q2_K: case QUANT_Q3_K: case QUANT_Q4_K: case QUANT_Q5_K:
	case QUANT_Q6_K: case QUANT_IQ4_XS:
		return QUANT_QK_K;
	default:
		return 0;
	}
}

int quant_block_bytes(uint32_t type)
{
	switch (type) {
	case QUANT_Q4_0: return 18;
	case QUANT_Q4_1: return 20;
	case QUANT_Q5_0: return 22;
	case QUANT_Q5_1: return 24;
	case QUANT_Q8_0: return 34;
	case QUANT_IQ4_NL: return 18;
	case QUANT_Q2_K: return 84;
	case QUANT_Q3_K: return 110;
	case QUANT_Q4_K: return 144;
	case QUANT_Q5_K: return 176;
	case QUANT_Q6_K: return 210;
	case QUANT_IQ4_XS: return 136;
	default: return 0;
	}
}

size_t quant_row_bytes(uint32_t type, int64_t n)
{
	int qk = quant_block_values(type);
	if (qk == 0 || n <= 0 || n % qk != 0)
		return 0;
	return (size_t)(n / qk) * (size_t)quant_block_bytes(type);
}

/* ---- legacy 32-value blocks ---- */

static void deq_q4_0(const uint8_t *b, float *y)
{
	float d = half(b);
	const uint8_t *qs = b + 2;
	for (int j = 0; j < 16; j++) {
		y[j] = d * (float)((qs[j] & 0xf) - 8);
		y[j + 16] = d * (float)((qs[j] >> 4) - 8);
	}
}

static void deq_q4_1(const uint8_t *b, float *y)
{
	float d = half(b), m = half(b + 2);
	const uint8_t *qs = b + 4;
	for (int j = 0; j < 16; j++) {
		float p0 = d * (float)(qs[j] & 0xf), p1 = d * (float)(qs[j] >> 4);
		y[j] = p0 + m;
		y[j + 16] = p1 + m;
	}
}

static void deq_q5_0(const uint8_t *b, float *y)
{
	float d = half(b);
	uint32_t qh;
	memcpy(&qh, b + 2, 4);
	const uint8_t *qs = b + 6;
	for (int j = 0; j < 16; j++) {
		int h0 = (int)((qh >> j) & 1u) << 4, h1 = (int)((qh >> (j + 16)) & 1u) << 4;
		y[j] = d * (float)(((qs[j] & 0xf) | h0) - 16);
		y[j + 16] = d * (float)(((qs[j] >> 4) | h1) - 16);
	}
}

static void deq_q5_1(const uint8_t *b, float *y)
{
	float d = half(b), m = half(b + 2);
	uint32_t qh;
	memcpy(&qh, b + 4, 4);
	const uint8_t *qs = b + 8;
	for (int j = 0; j < 16; j++) {
		int h0 = (int)((qh >> j) & 1u) << 4, h1 = (int)((qh >> (j + 16)) & 1u) << 4;
		float p0 = d * (float)((qs[j] & 0xf) | h0), p1 = d * (float)((qs[j] >> 4) | h1);
		y[j] = p0 + m;
		y[j + 16] = p1 + m;
	}
}

static void deq_q8_0(const uint8_t *b, float *y)
{
	float d = half(b);
	for (int j = 0; j < 32; j++)
		y[j] = d * (float)(int8_t)b[2 + j];
}

static void deq_iq4_nl(const uint8_t *b, float *y)
{
	float d = half(b);
	const uint8_t *qs = b + 2;
	for (int j = 0; j < 16; j++) {
		y[j] = d * (float)iq4_levels[qs[j] & 0xf];
		y[j + 16] = d * (float)iq4_levels[qs[j] >> 4];
	}
}

/* ---- K-quants: 256-value super-blocks ---- */

static void deq_q2_k(const uint8_t *b, float *y)
{
	const uint8_t *sc = b, *q = b + 16;
	float d = half(b + 80), dmin = half(b + 82);
	int is = 0;
	for (int n = 0; n < QUANT_QK_K; n += 128) {
		for (int shift = 0; shift < 8; shift += 2) {
			for (int half16 = 0; half16 < 2; half16++) {
				uint8_t s = sc[is++];
				float dl = d * (float)(s & 0xf), ml = dmin * (float)(s >> 4);
				const uint8_t *qq = q + 16 * half16;
				for (int l = 0; l < 16; l++) {
					float p = dl * (float)((qq[l] >> shift) & 3);
					*y++ = p - ml;
				}
			}
		}
		q += 32;
	}
}

/* The 16 six-bit scales of a Q3_K super-block, as signed values - 32. */
static void q3_k_scales(const uint8_t *p, int *ret)
{
	for (int j = 0; j < 16; j++) {
		int lo = j < 8 ? (p[j] & 0xf) : (p[j - 8] >> 4);
		int hi = (p[8 + (j & 3)] >> (2 * (j >> 2))) & 3;
		ret[j] = (lo | hi << 4) - 32;
	}
}

static void deq_q3_k(const uint8_t *b, float *y)
{
	const uint8_t *hm = b, *q = b + 32;
	float d = half(b + 108);
	int sc[16];
	q3_k_scales(b + 96, sc);
	int is = 0;
	uint8_t m = 1;
	for (int n = 0; n < QUANT_QK_K; n += 128) {
		for (int shift = 0; shift < 8; shift += 2) {
			for (int half16 = 0; half16 < 2; half16++) {
				float dl = d * (float)sc[is++];
				for (int l = 16 * half16; l < 16 * half16 + 16; l++) {
					int v = ((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4);
					*y++ = dl * (float)v;
				}
			}
			m = (uint8_t)(m << 1);
		}
		q += 32;
	}
}

/* Scale and min j (of 8) of a Q4_K / Q5_K super-block: 6 bits each. */
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

static void deq_q4_k(const uint8_t *b, float *y)
{
	float d = half(b), dmin = half(b + 2);
	const uint8_t *scales = b + 4, *q = b + 16;
	for (int j = 0; j < 8; j += 2) {
		int s0, m0, s1, m1;
		k4_scale_min(j, scales, &s0, &m0);
		k4_scale_min(j + 1, scales, &s1, &m1);
		float d0 = d * (float)s0, o0 = dmin * (float)m0;
		float d1 = d * (float)s1, o1 = dmin * (float)m1;
		for (int l = 0; l < 32; l++) {
			float p = d0 * (float)(q[l] & 0xf);
			y[l] = p - o0;
		}
		for (int l = 0; l < 32; l++) {
			float p = d1 * (float)(q[l] >> 4);
			y[32 + l] = p - o1;
		}
		y += 64;
		q += 32;
	}
}

static void deq_q5_k(const uint8_t *b, float *y)
{
	float d = half(b), dmin = half(b + 2);
	const uint8_t *scales = b + 4, *qh = b + 16, *q = b + 48;
	uint8_t u1 = 1, u2 = 2;
	for (int j = 0; j < 8; j += 2) {
		int s0, m0, s1, m1;
		k4_scale_min(j, scales, &s0, &m0);
		k4_scale_min(j + 1, scales, &s1, &m1);
		float d0 = d * (float)s0, o0 = dmin * (float)m0;
		float d1 = d * (float)s1, o1 = dmin * (float)m1;
		for (int l = 0; l < 32; l++) {
			float p = d0 * (float)((q[l] & 0xf) + ((qh[l] & u1) ? 16 : 0));
			y[l] = p - o0;
		}
		for (int l = 0; l < 32; l++) {
			float p = d1 * (float)((q[l] >> 4) + ((qh[l] & u2) ? 16 : 0));
			y[32 + l] = p - o1;
		}
		y += 64;
		q += 32;
		u1 = (uint8_t)(u1 << 2);
		u2 = (uint8_t)(u2 << 2);
	}
}

static void deq_q6_k(const uint8_t *b, float *y)
{
	const uint8_t *ql = b, *qh = b + 128;
	const int8_t *sc = (const int8_t *)(b + 192);
	float d = half(b + 208);
	for (int n = 0; n < QUANT_QK_K; n += 128) {
		for (int l = 0; l < 32; l++) {
			int is = l / 16;
			int q1 = ((ql[l] & 0xf) | ((qh[l] >> 0) & 3) << 4) - 32;
			int q2 = ((ql[l + 32] & 0xf) | ((qh[l] >> 2) & 3) << 4) - 32;
			int q3 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
			int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
			y[l] = d * (float)sc[is + 0] * (float)q1;
			y[l + 32] = d * (float)sc[is + 2] * (float)q2;
			y[l + 64] = d * (float)sc[is + 4] * (float)q3;
			y[l + 96] = d * (float)sc[is + 6] * (float)q4;
		}
		y += 128;
		ql += 64;
		qh += 32;
		sc += 8;
	}
}

static void deq_iq4_xs(const uint8_t *b, float *y)
{
	float d = half(b);
	uint16_t sh;
	memcpy(&sh, b + 2, 2);
	const uint8_t *sl = b + 4, *qs = b + 8;
	for (int ib = 0; ib < 8; ib++) {
		int ls = ((sl[ib / 2] >> (4 * (ib % 2))) & 0xf) | (((sh >> (2 * ib)) & 3) << 4);
		float dl = d * (float)(ls - 32);
		for (int j = 0; j < 16; j++) {
			y[j] = dl * (float)iq4_levels[qs[j] & 0xf];
			y[j + 16] = dl * (float)iq4_levels[qs[j] >> 4];
		}
		y += 32;
		qs += 16;
	}
}

typedef void (*deq_fn)(const uint8_t *b, float *y);

static deq_fn deq_for(uint32_t type)
{
	switch (type) {
	case QUANT_Q4_0: return deq_q4_0;
	case QUANT_Q4_1: return deq_q4_1;
	case QUANT_Q5_0: return deq_q5_0;
	case QUANT_Q5_1: return deq_q5_1;
	case QUANT_Q8_0: return deq_q8_0;
	case QUANT_IQ4_NL: return deq_iq4_nl;
	case QUANT_Q2_K: return deq_q2_k;
	case QUANT_Q3_K: return deq_q3_k;
	case QUANT_Q4_K: return deq_q4_k;
	case QUANT_Q5_K: return deq_q5_k;
	case QUANT_Q6_K: return deq_q6_k;
	case QUANT_IQ4_XS: return deq_iq4_xs;
	default: return NULL;
	}
}

int quant_dequant_row(uint32_t type, const void *src, float *dst, int64_t n)
{
	deq_fn f = deq_for(type);
	int qk = quant_block_values(type), bb = quant_block_bytes(type);
	if (f == NULL || n < 0 || n % qk != 0)
		return -EINVAL;
	const uint8_t *p = src;
	for (int64_t i = 0; i < n / qk; i++)
		f(p + i * bb, dst + i * qk);
	return 0;
}

/* Byte offsets of the f16 scales in a block: up to two. */
static int scale_offsets(uint32_t type, int off[2])
{
	switch (type) {
	case QUANT_Q4_0: case QUANT_Q5_0: case QUANT_Q8_0: case QUANT_IQ4_NL: case QUANT_IQ4_XS:
		off[0] = 0;
		return 1;
	case QUANT_Q4_1: case QUANT_Q5_1: case QUANT_Q4_K: case QUANT_Q5_K:
		off[0] = 0;
		off[1] = 2;
		return 2;
	case QUANT_Q2_K:
		off[0] = 80;
		off[1] = 82;
		return 2;
	case QUANT_Q3_K:
		off[0] = 108;
		return 1;
	case QUANT_Q6_K:
		off[0] = 208;
		return 1;
	default:
		return 0;
	}
}

int quant_check_row(uint32_t type, const void *src, int64_t n, int64_t *ret_block)
{
	int qk = quant_block_values(type), bb = quant_block_bytes(type), off[2];
	int n_off = scale_offsets(type, off);
	if (qk == 0 || n < 0 || n % qk != 0)
		return -EINVAL;
	const uint8_t *p = src;
	for (int64_t i = 0; i < n / qk; i++) {
		for (int k = 0; k < n_off; k++) {
			uint16_t h;
			memcpy(&h, p + i * bb + off[k], 2);
			if ((h & 0x7c00u) == 0x7c00u) {	/* inf or NaN */
				if (ret_block != NULL)
					*ret_block = i;
				return -EBADMSG;
			}
		}
	}
	return 0;
}
