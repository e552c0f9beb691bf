/* quant: dequantization of ggml's block formats. See quant.h for the
 * layouts and why every value is exact but for one rounded addition. */
#include "quant.h"
#include "lib/mg_f16.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* IQ4_NL / IQ4_XS: the 16 non-uniform levels (ggml-common.h kvalues_iq4nl). */
static const int8_t iq4_levels[16] = {
	-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
};

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
	float d = mg_f16_load(b);
	const uint8_t *qs = b + 2;
	for (int j = 0; j < 16; j++) {
		y[j] = d * (float)((qs[j] & 0xf) - 8);
		y[j + 16] = d * (float)((qs[j] >> 4) - 8);
	}
}

static void deq_q4_1(const uint8_t *b, float *y)
{
	float d = mg_f16_load(b), m = mg_f16_load(b + 2);
	const uint8_t *qs = b + 4;
	for (int j = 0; j < 16; j++) {
		float p0 = d * (float)(qs[j] & 0xf), p1 = d * (float)(qs[j] >> 4);
		y[j] = p0 + m;
		y[j + 16] = p1 + m;
	}
}

static void deq_q5_0(const uint8_t *b, float *y)
{
	float d = mg_f16_load(b);
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
	float d = mg_f16_load(b), m = mg_f16_load(b + 2);
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
	float d = mg_f16_load(b);
	for (int j = 0; j < 32; j++)
		y[j] = d * (float)(int8_t)b[2 + j];
}

static void deq_iq4_nl(const uint8_t *b, float *y)
{
	float d = mg_f16_load(b);
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
	float d = mg_f16_load(b + 80), dmin = mg_f16_load(b + 82);
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
	float d = mg_f16_load(b + 108);
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
	float d = mg_f16_load(b), dmin = mg_f16_load(b + 2);
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
	float d = mg_f16_load(b), dmin = mg_f16_load(b + 2);
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
	float d = mg_f16_load(b + 208);
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
	float d = mg_f16_load(b);
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

/* ======================= quantization ======================= */

/* How a row is quantized (the writer's side of the layouts above). Every
 * type works block by block in three steps, the same for all of them:
 *
 * 1. A scale for each group of values (a legacy block, or a sub-block of a
 *    super-block). Symmetric types (x = s * level): the value of largest
 *    magnitude goes to the lowest level of the grid (Q4_0: -8) or to the
 *    highest (+7), whichever leaves the smaller squared error over the
 *    group. Types with an offset (Q4_1, Q5_1, Q2_K, Q4_K, Q5_K): the group's
 *    [min, max] is spread over the levels 0..nmax; the K types' offset is
 *    subtracted (x = d*sc*q - dmin*m), so their min is min(0, min x).
 * 2. K types: the group scales of a super-block are quantized to integers
 *    (6 bits; Q2_K 4 bits; Q6_K 8 bits) against one f16 super-scale: the
 *    largest group scale over the largest integer (for signed scales, the
 *    largest of the other sign over the largest positive integer where
 *    that is more), rounded up in magnitude, so no integer scale is
 *    clamped.
 * 3. Each value gets the level nearest to it under the scale actually
 *    stored (the f16 scale times the integer scale, exact in f32), clamped
 *    to the grid. Rounding against the stored scale matters: with the small
 *    weights of real models most Q6_K and many Q5_K super-scales are f16
 *    subnormals, whose relative precision is coarse.
 *
 * No search beyond the two candidates of step 1 (llama.cpp's make_qkx2 /
 * make_qx quants try more and give slightly smaller errors). Every step is
 * plain f32 arithmetic in a fixed order (the build is ISO C, so nothing is
 * contracted into an FMA): the same input gives the same bytes on every
 * build. Q8_0 is ops_q8_block's rounding (see q_q8_0). */

/* The half nearest to v whose magnitude is not below |v| (v finite). */
static uint16_t half_up(float v)
{
	float a = fabsf(v);
	uint16_t h = mg_f32_to_f16(a);
	if (mg_f16_to_f32(h) < a)
		h++;	/* the next larger magnitude; past 65504 that is inf */
	return (uint16_t)(h | (v < 0.0f ? 0x8000u : 0u));
}

/* The half nearest to v that is not above v (v finite). */
static uint16_t half_down(float v)
{
	uint16_t h = mg_f32_to_f16(v);
	if (mg_f16_to_f32(h) > v)
		h = (h & 0x8000u) ? (uint16_t)(h + 1) : h == 0 ? 0x8001u : (uint16_t)(h - 1);
	return h;
}

static bool half_finite(uint16_t h)
{
	return (h & 0x7c00u) != 0x7c00u;
}

static void put_half(uint8_t *p, uint16_t h)
{
	memcpy(p, &h, 2);
}

/* The levels a symmetric type maps values onto: the integers lo..hi, or
 * the 16 IQ4 levels. A value's code is what the block stores: level - lo
 * for integers, the table index for IQ4. */
typedef struct grid {
	int lo, hi;		/* lowest and highest level */
	bool iq4;
} grid_t;

static const grid_t G_Q3 = { -4, 3, false }, G_Q4 = { -8, 7, false }, G_Q5 = { -16, 15, false },
	G_Q6 = { -32, 31, false }, G_IQ4 = { -127, 113, true };

/* Midpoints between consecutive IQ4 levels: the code of v is the number of
 * midpoints below it (a tie goes to the lower level). */
static int iq4_code(float v)
{
	static const float mid[15] = {
		-115.5f, -93.5f, -74.0f, -57.0f, -42.0f, -28.5f, -16.0f, -4.5f,
		7.0f, 19.0f, 31.5f, 45.5f, 61.0f, 79.0f, 101.0f,
	};
	int lo = 0, hi = 15;	/* the answer is in [lo, hi] */
	while (lo < hi) {
		int m = (lo + hi) / 2;
		if (v > mid[m])
			lo = m + 1;
		else
			hi = m;
	}
	return lo;
}

/* The code of the level nearest to v (in units of the scale). */
static int grid_code(const grid_t *g, float v)
{
	if (g->iq4)
		return iq4_code(v);
	float r = rintf(v);
	if (!(r >= (float)g->lo))	/* NaN cannot reach here; -inf can */
		return 0;
	if (r > (float)g->hi)
		return g->hi - g->lo;
	return (int)r - g->lo;
}

static int grid_level(const grid_t *g, int code)
{
	return g->iq4 ? iq4_levels[code] : g->lo + code;
}

/* Codes of x[n] under the stored step ds (all zero-level codes if ds = 0). */
static void sym_codes(const grid_t *g, const float *x, int n, float ds, uint8_t *codes)
{
	for (int i = 0; i < n; i++)
		codes[i] = (uint8_t)grid_code(g, ds != 0.0f ? x[i] / ds : 0.0f);
}

static float sym_sse(const grid_t *g, const float *x, int n, float s)
{
	float e = 0.0f;
	for (int i = 0; i < n; i++) {
		float r = x[i] - s * (float)grid_level(g, grid_code(g, x[i] / s));
		e += r * r;
	}
	return e;
}

/* Step 1 for a symmetric group: the extreme value to the lowest or the
 * highest level, whichever fits the group better; 0 for a group of zeros. */
static float sym_scale(const grid_t *g, const float *x, int n)
{
	float m = 0.0f;
	for (int i = 0; i < n; i++)
		if (fabsf(x[i]) > fabsf(m))
			m = x[i];
	if (m == 0.0f)
		return 0.0f;
	float s_lo = m / (float)g->lo, s_hi = m / (float)g->hi;
	return sym_sse(g, x, n, s_hi) < sym_sse(g, x, n, s_lo) ? s_hi : s_lo;
}

/* Codes of x[n] ~ ds * q - off, q in 0..nmax. */
static void asym_codes(const float *x, int n, int nmax, float ds, float off, uint8_t *codes)
{
	for (int i = 0; i < n; i++) {
		float r = ds > 0.0f ? rintf((x[i] + off) / ds) : 0.0f;
		codes[i] = (uint8_t)(r > (float)nmax ? nmax : r >= 0.0f ? (int)r : 0);
	}
}

/* Step 2, symmetric: group scales s[n] as integers sc[n] in [sclo, schi]
 * times the super-scale *ret_d. The largest |s| goes to sclo, unless a
 * scale of the other sign would then need more than schi: the largest of
 * that sign goes to schi then. So no integer scale is clamped. */
static int super_sym(const float *s, int n, int sclo, int schi, uint16_t *ret_d, int *sc)
{
	float big = 0.0f, other = 0.0f;
	for (int j = 0; j < n; j++)
		if (fabsf(s[j]) > fabsf(big))
			big = s[j];
	for (int j = 0; j < n; j++)
		if ((s[j] < 0.0f) != (big < 0.0f) && fabsf(s[j]) > other)
			other = fabsf(s[j]);
	float dm = fabsf(big) / (float)-sclo, dm_other = other / (float)schi;
	dm = dm_other > dm ? dm_other : dm;
	uint16_t dh = half_up(big > 0.0f ? -dm : dm);
	if (!half_finite(dh))
		return -ERANGE;
	float d = mg_f16_to_f32(dh);
	for (int j = 0; j < n; j++) {
		float r = d != 0.0f ? rintf(s[j] / d) : 0.0f;
		sc[j] = r > (float)schi ? schi : r < (float)sclo ? sclo : (int)r;
	}
	*ret_d = dh;
	return 0;
}

/* Steps 1 and 2 for the K types with an offset: n groups of len values of
 * x, levels 0..nmax, integer scales and mins 0..smax. */
static int super_asym(const float *x, int n, int len, int nmax, int smax, uint16_t *ret_d,
		      uint16_t *ret_dmin, int *sc, int *mn)
{
	float s[16], o[16], smx = 0.0f, omx = 0.0f;
	for (int j = 0; j < n; j++) {
		const float *v = x + j * len;
		float lo = 0.0f, hi = v[0];
		for (int i = 0; i < len; i++) {
			lo = v[i] < lo ? v[i] : lo;
			hi = v[i] > hi ? v[i] : hi;
		}
		s[j] = (hi - lo) / (float)nmax;
		o[j] = -lo;
		smx = s[j] > smx ? s[j] : smx;
		omx = o[j] > omx ? o[j] : omx;
	}
	uint16_t dh = half_up(smx / (float)smax), mh = half_up(omx / (float)smax);
	if (!half_finite(dh) || !half_finite(mh))
		return -ERANGE;
	float d = mg_f16_to_f32(dh), dm = mg_f16_to_f32(mh);
	for (int j = 0; j < n; j++) {
		float rs = d > 0.0f ? rintf(s[j] / d) : 0.0f, rm = dm > 0.0f ? rintf(o[j] / dm) : 0.0f;
		sc[j] = rs > (float)smax ? smax : (int)rs;
		mn[j] = rm > (float)smax ? smax : (int)rm;
	}
	*ret_d = dh;
	*ret_dmin = mh;
	return 0;
}

/* ---- legacy 32-value blocks ---- */

/* Q4_0, Q5_0, IQ4_NL: one symmetric scale; codes[32] out. */
static int q_sym32(const grid_t *g, const float *x, uint8_t *b, uint8_t *codes)
{
	uint16_t dh = half_up(sym_scale(g, x, 32));
	if (!half_finite(dh))
		return -ERANGE;
	put_half(b, dh);
	sym_codes(g, x, 32, mg_f16_to_f32(dh), codes);
	return 0;
}

static void pack_nibbles(const uint8_t *c, uint8_t *qs)	/* value j low, j + 16 high */
{
	for (int j = 0; j < 16; j++)
		qs[j] = (uint8_t)((c[j] & 15) | (c[j + 16] & 15) << 4);
}

static uint32_t fifth_bits(const uint8_t *c)
{
	uint32_t qh = 0;
	for (int j = 0; j < 32; j++)
		qh |= (uint32_t)(c[j] >> 4) << j;
	return qh;
}

static int q_q4_0(const float *x, uint8_t *b)
{
	uint8_t c[32];
	int rc = q_sym32(&G_Q4, x, b, c);
	if (rc < 0)
		return rc;
	pack_nibbles(c, b + 2);
	return rc;
}

static int q_iq4_nl(const float *x, uint8_t *b)
{
	uint8_t c[32];
	int rc = q_sym32(&G_IQ4, x, b, c);
	if (rc < 0)
		return rc;
	pack_nibbles(c, b + 2);
	return rc;
}

static int q_q5_0(const float *x, uint8_t *b)
{
	uint8_t c[32];
	int rc = q_sym32(&G_Q5, x, b, c);
	if (rc < 0)
		return rc;
	uint32_t qh = fifth_bits(c);
	memcpy(b + 2, &qh, 4);
	pack_nibbles(c, b + 6);
	return rc;
}

/* Q4_1, Q5_1: x = d * q + m over the block's [min, max]; m is rounded
 * down and d up, so no value falls outside the levels. */
static int q_min32(const float *x, int nmax, uint8_t *b, uint8_t *codes)
{
	float lo = x[0], hi = x[0];
	for (int i = 1; i < 32; i++) {
		lo = x[i] < lo ? x[i] : lo;
		hi = x[i] > hi ? x[i] : hi;
	}
	uint16_t mh = half_down(lo);
	float m = mg_f16_to_f32(mh);
	uint16_t dh = half_up((hi - m) / (float)nmax);
	if (!half_finite(mh) || !half_finite(dh))
		return -ERANGE;
	put_half(b, dh);
	put_half(b + 2, mh);
	asym_codes(x, 32, nmax, mg_f16_to_f32(dh), -m, codes);
	return 0;
}

static int q_q4_1(const float *x, uint8_t *b)
{
	uint8_t c[32];
	int rc = q_min32(x, 15, b, c);
	if (rc < 0)
		return rc;
	pack_nibbles(c, b + 4);
	return rc;
}

static int q_q5_1(const float *x, uint8_t *b)
{
	uint8_t c[32];
	int rc = q_min32(x, 31, b, c);
	if (rc < 0)
		return rc;
	uint32_t qh = fifth_bits(c);
	memcpy(b + 4, &qh, 4);
	pack_nibbles(c, b + 8);
	return rc;
}

/* Q8_0: d = amax / 127 as a half, q = x / d rounded to nearest even: the
 * rounding of ops_q8_block (worker/ops.c), bit for bit (test_quant checks),
 * which the loader uses to quantize at load. quant.c cannot call it (the
 * GGUF reader is linked without the kernels); the lower module should own
 * it, ops calling here. */
static int q_q8_0(const float *x, uint8_t *b)
{
	float amax = 0.0f;
	for (int i = 0; i < 32; i++)
		amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
	uint16_t dh = mg_f32_to_f16(amax / 127.0f);
	if (!half_finite(dh))
		return -ERANGE;
	float d = mg_f16_to_f32(dh), id = d > 0.0f ? 1.0f / d : 0.0f;
	for (int i = 0; i < 32; i++) {
		float r = rintf(x[i] * id);
		b[2 + i] = (uint8_t)(int8_t)(r > 127.0f ? 127 : r < -127.0f ? -127 : (int)r);
	}
	put_half(b, dh);
	return 0;
}

/* ---- K-quants ---- */

/* Symmetric super-blocks: n groups of len values on grid g, integer
 * scales in [sclo, schi]; codes[256] and the integer scales out. */
static int q_sym256(const grid_t *g, const float *x, int n, int len, int sclo, int schi,
		    uint16_t *ret_d, int *sc, uint8_t *codes)
{
	float s[16];
	for (int j = 0; j < n; j++)
		s[j] = sym_scale(g, x + j * len, len);
	int rc = super_sym(s, n, sclo, schi, ret_d, sc);
	if (rc < 0)
		return rc;
	float d = mg_f16_to_f32(*ret_d);
	for (int j = 0; j < n; j++)
		sym_codes(g, x + j * len, len, d * (float)sc[j], codes + j * len);
	return 0;
}

static int q_asym256(const float *x, int n, int len, int nmax, int smax, uint16_t *ret_d,
		     uint16_t *ret_dmin, int *sc, int *mn, uint8_t *codes)
{
	int rc = super_asym(x, n, len, nmax, smax, ret_d, ret_dmin, sc, mn);
	if (rc < 0)
		return rc;
	float d = mg_f16_to_f32(*ret_d), dm = mg_f16_to_f32(*ret_dmin);
	for (int j = 0; j < n; j++)
		asym_codes(x + j * len, len, nmax, d * (float)sc[j], dm * (float)mn[j], codes + j * len);
	return 0;
}

static int q_q2_k(const float *x, uint8_t *b)
{
	uint16_t d, dmin;
	int sc[16], mn[16];
	uint8_t c[256];
	int rc = q_asym256(x, 16, 16, 3, 15, &d, &dmin, sc, mn, c);
	if (rc < 0)
		return rc;
	for (int j = 0; j < 16; j++)
		b[j] = (uint8_t)(sc[j] | mn[j] << 4);
	uint8_t *qs = b + 16;
	memset(qs, 0, 64);
	for (int i = 0; i < 256; i++)	/* 2 bits, four 32-value runs a byte */
		qs[(i / 128) * 32 + i % 32] |= (uint8_t)(c[i] << (2 * ((i % 128) / 32)));
	put_half(b + 80, d);
	put_half(b + 82, dmin);
	return 0;
}

static int q_q3_k(const float *x, uint8_t *b)
{
	uint16_t d;
	int sc[16];
	uint8_t c[256];
	int rc = q_sym256(&G_Q3, x, 16, 16, -32, 31, &d, sc, c);
	if (rc < 0)
		return rc;
	uint8_t *hm = b, *qs = b + 32, *sp = b + 96;
	memset(b, 0, 108);
	for (int i = 0; i < 256; i++) {	/* code = level + 4: low 2 bits and a high bit */
		int run = (i % 128) / 32;
		qs[(i / 128) * 32 + i % 32] |= (uint8_t)((c[i] & 3) << (2 * run));
		hm[i % 32] |= (uint8_t)((c[i] >> 2) << ((i / 128) * 4 + run));
	}
	for (int j = 0; j < 16; j++) {	/* 6-bit scale + 32: 4 low bits, 2 high bits */
		int u = sc[j] + 32;
		sp[j % 8] |= (uint8_t)((u & 15) << (j < 8 ? 0 : 4));
		sp[8 + (j & 3)] |= (uint8_t)((u >> 4) << (2 * (j >> 2)));
	}
	put_half(b + 108, d);
	return 0;
}

/* The 12 scale bytes of Q4_K / Q5_K: 8 six-bit scales and mins (the
 * inverse of k4_scale_min). */
static void k4_pack_scales(const int *sc, const int *mn, uint8_t *q)
{
	for (int j = 0; j < 4; j++) {
		q[j] = (uint8_t)(sc[j] | (sc[j + 4] >> 4) << 6);
		q[j + 4] = (uint8_t)(mn[j] | (mn[j + 4] >> 4) << 6);
		q[j + 8] = (uint8_t)((sc[j + 4] & 15) | (mn[j + 4] & 15) << 4);
	}
}

static int q_q4_k(const float *x, uint8_t *b)
{
	uint16_t d, dmin;
	int sc[8], mn[8];
	uint8_t c[256];
	int rc = q_asym256(x, 8, 32, 15, 63, &d, &dmin, sc, mn, c);
	if (rc < 0)
		return rc;
	put_half(b, d);
	put_half(b + 2, dmin);
	k4_pack_scales(sc, mn, b + 4);
	for (int p = 0; p < 4; p++)	/* groups 2p (low nibbles) and 2p + 1 (high) */
		for (int l = 0; l < 32; l++)
			b[16 + 32 * p + l] = (uint8_t)(c[64 * p + l] | c[64 * p + 32 + l] << 4);
	return 0;
}

static int q_q5_k(const float *x, uint8_t *b)
{
	uint16_t d, dmin;
	int sc[8], mn[8];
	uint8_t c[256];
	int rc = q_asym256(x, 8, 32, 31, 63, &d, &dmin, sc, mn, c);
	if (rc < 0)
		return rc;
	put_half(b, d);
	put_half(b + 2, dmin);
	k4_pack_scales(sc, mn, b + 4);
	uint8_t *qh = b + 16, *qs = b + 48;
	memset(qh, 0, 32);
	for (int p = 0; p < 4; p++) {
		for (int l = 0; l < 32; l++) {
			uint8_t c0 = c[64 * p + l], c1 = c[64 * p + 32 + l];
			qs[32 * p + l] = (uint8_t)((c0 & 15) | (c1 & 15) << 4);
			qh[l] |= (uint8_t)((c0 >> 4) << (2 * p) | (c1 >> 4) << (2 * p + 1));
		}
	}
	return 0;
}

static int q_q6_k(const float *x, uint8_t *b)
{
	uint16_t d;
	int sc[16];
	uint8_t c[256];
	int rc = q_sym256(&G_Q6, x, 16, 16, -128, 127, &d, sc, c);
	if (rc < 0)
		return rc;
	uint8_t *ql = b, *qh = b + 128;
	memset(b, 0, 192);
	for (int i = 0; i < 256; i++) {	/* code = level + 32: 4 low bits, 2 high bits */
		int h = i / 128, k = (i % 128) / 32, l = i % 32;
		ql[64 * h + 32 * (k & 1) + l] |= (uint8_t)((c[i] & 15) << (4 * (k >> 1)));
		qh[32 * h + l] |= (uint8_t)((c[i] >> 4) << (2 * k));
	}
	for (int j = 0; j < 16; j++)
		b[192 + j] = (uint8_t)(int8_t)sc[j];
	put_half(b + 208, d);
	return 0;
}

static int q_iq4_xs(const float *x, uint8_t *b)
{
	uint16_t d;
	int sc[8];
	uint8_t c[256];
	int rc = q_sym256(&G_IQ4, x, 8, 32, -32, 31, &d, sc, c);
	if (rc < 0)
		return rc;
	put_half(b, d);
	uint16_t sh = 0;
	memset(b + 4, 0, 4);
	for (int ib = 0; ib < 8; ib++) {
		int u = sc[ib] + 32;
		b[4 + ib / 2] |= (uint8_t)((u & 15) << (4 * (ib % 2)));
		sh |= (uint16_t)((u >> 4) << (2 * ib));
		pack_nibbles(c + 32 * ib, b + 8 + 16 * ib);
	}
	memcpy(b + 2, &sh, 2);
	return 0;
}

typedef int (*qnt_fn)(const float *x, uint8_t *b);

static qnt_fn qnt_for(uint32_t type)
{
	switch (type) {
	case QUANT_Q4_0: return q_q4_0;
	case QUANT_Q4_1: return q_q4_1;
	case QUANT_Q5_0: return q_q5_0;
	case QUANT_Q5_1: return q_q5_1;
	case QUANT_Q8_0: return q_q8_0;
	case QUANT_IQ4_NL: return q_iq4_nl;
	case QUANT_Q2_K: return q_q2_k;
	case QUANT_Q3_K: return q_q3_k;
	case QUANT_Q4_K: return q_q4_k;
	case QUANT_Q5_K: return q_q5_k;
	case QUANT_Q6_K: return q_q6_k;
	case QUANT_IQ4_XS: return q_iq4_xs;
	default: return NULL;
	}
}

int quant_quantize_row(uint32_t type, const float *src, void *dst, int64_t n)
{
	qnt_fn f = qnt_for(type);
	int qk = quant_block_values(type), bb = quant_block_bytes(type);
	if (f == NULL || n < 0 || n % qk != 0)
		return -EINVAL;
	uint8_t *p = dst;
	for (int64_t i = 0; i < n / qk; i++) {
		const float *x = src + i * qk;
		for (int j = 0; j < qk; j++)
			if (!isfinite(x[j]))
				return -EINVAL;
		int rc = f(x, p + i * bb);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* ======================= mixes ======================= */

/* The mixes, as llama-quantize names them (lower case here; parse ignores
 * case) with their llama_ftype and the type most matrices get. */
static const struct mix_def {
	const char *name, *alias;
	uint32_t ftype, base;
} mixes[] = {
	{ "f32", NULL, QUANT_FTYPE_ALL_F32, QUANT_F32 },
	{ "f16", NULL, QUANT_FTYPE_F16, QUANT_F16 },
	{ "bf16", NULL, QUANT_FTYPE_BF16, QUANT_BF16 },
	{ "q4_0", NULL, QUANT_FTYPE_Q4_0, QUANT_Q4_0 },
	{ "q4_1", NULL, QUANT_FTYPE_Q4_1, QUANT_Q4_1 },
	{ "q5_0", NULL, QUANT_FTYPE_Q5_0, QUANT_Q5_0 },
	{ "q5_1", NULL, QUANT_FTYPE_Q5_1, QUANT_Q5_1 },
	{ "q8_0", NULL, QUANT_FTYPE_Q8_0, QUANT_Q8_0 },
	{ "q2_k", NULL, QUANT_FTYPE_Q2_K, QUANT_Q2_K },
	{ "q3_k_s", NULL, QUANT_FTYPE_Q3_K_S, QUANT_Q3_K },
	{ "q3_k_m", "q3_k", QUANT_FTYPE_Q3_K_M, QUANT_Q3_K },
	{ "q3_k_l", NULL, QUANT_FTYPE_Q3_K_L, QUANT_Q3_K },
	{ "q4_k_s", NULL, QUANT_FTYPE_Q4_K_S, QUANT_Q4_K },
	{ "q4_k_m", "q4_k", QUANT_FTYPE_Q4_K_M, QUANT_Q4_K },
	{ "q5_k_s", NULL, QUANT_FTYPE_Q5_K_S, QUANT_Q5_K },
	{ "q5_k_m", "q5_k", QUANT_FTYPE_Q5_K_M, QUANT_Q5_K },
	{ "q6_k", NULL, QUANT_FTYPE_Q6_K, QUANT_Q6_K },
	{ "iq4_nl", NULL, QUANT_FTYPE_IQ4_NL, QUANT_IQ4_NL },
	{ "iq4_xs", NULL, QUANT_FTYPE_IQ4_XS, QUANT_IQ4_XS },
};
#define N_MIXES (sizeof(mixes) / sizeof(mixes[0]))

static void mix_init(const struct mix_def *m, quant_mix_t *ret)
{
	*ret = (quant_mix_t){ .name = m->name, .ftype = m->ftype, .base = m->base, .n_gqa = 1,
			      .tied_output = false };
}

int quant_mix_parse(const char *name, quant_mix_t *ret)
{
	for (size_t i = 0; name != NULL && i < N_MIXES; i++) {
		if (strcasecmp(name, mixes[i].name) == 0 ||
		    (mixes[i].alias != NULL && strcasecmp(name, mixes[i].alias) == 0)) {
			mix_init(&mixes[i], ret);
			return 0;
		}
	}
	return -EINVAL;
}

int quant_mix_from_ftype(uint32_t ftype, quant_mix_t *ret)
{
	for (size_t i = 0; i < N_MIXES; i++) {
		if (mixes[i].ftype == ftype) {
			mix_init(&mixes[i], ret);
			return 0;
		}
	}
	return -EINVAL;
}

const char *quant_mix_name(size_t i)
{
	return i < N_MIXES ? mixes[i].name : NULL;
}

static bool has(const char *s, const char *part)
{
	return strstr(s, part) != NULL;
}

/* llama.cpp's layers that get more bits in Q4_K_M / Q5_K_M: the first and
 * last eighth and every third one between. */
static bool use_more_bits(int layer, int n_layers)
{
	return layer < n_layers / 8 || layer >= 7 * n_layers / 8 || (layer - n_layers / 8) % 3 == 2;
}

/* Whether llama-quantize quantizes a tensor of this name at all. */
static bool quantizable(const char *name)
{
	static const char *const never[] = {	/* substrings it leaves alone (or 1-D) */
		"_norm.weight", "rope_freqs.weight", "ffn_gate_inp.weight", "ssm_conv1d.weight", "time_mix_first.weight",
		"time_mix_w1.weight", "time_mix_w2.weight", "time_mix_decay_w1.weight",
		"time_mix_decay_w2.weight", "time_mix_lerp_fused.weight", "attn_rel_b.weight",
	};
	size_t len = strlen(name);
	if (len < 6 || strcmp(name + len - 6, "weight") != 0 ||
	    strcmp(name, "position_embd.weight") == 0 || strcmp(name, "token_types.weight") == 0)
		return false;
	for (size_t i = 0; i < sizeof(never) / sizeof(never[0]); i++)
		if (has(name, never[i]))
			return false;
	return true;
}

/* The type llama_tensor_get_type picks before the row-length check. */
static uint32_t mix_pick(const quant_mix_t *mix, const char *name, int layer, int n_layers,
			 int64_t row_len)
{
	uint32_t t = mix->base, f = mix->ftype;
	int gqa = mix->n_gqa;
	bool more = use_more_bits(layer, n_layers);
	if (strcmp(name, "output.weight") == 0 ||
	    (mix->tied_output && strcmp(name, "token_embd.weight") == 0)) {
		if (row_len % quant_block_values(t) != 0)
			return QUANT_Q8_0;
		return t == QUANT_Q8_0 ? t : QUANT_Q6_K;
	}
	if (strcmp(name, "token_embd.weight") == 0)
		return t;	/* only the IQ1..IQ3 mixes change it */
	if (has(name, "attn_v.weight")) {
		if (f == QUANT_FTYPE_Q2_K)
			return gqa >= 4 ? QUANT_Q4_K : QUANT_Q3_K;
		if (f == QUANT_FTYPE_Q3_K_M)
			return layer < 2 ? QUANT_Q5_K : QUANT_Q4_K;
		if (f == QUANT_FTYPE_Q3_K_L)
			return QUANT_Q5_K;
		if ((f == QUANT_FTYPE_IQ4_NL || f == QUANT_FTYPE_IQ4_XS) && gqa >= 4)
			return QUANT_Q5_K;
		if ((f == QUANT_FTYPE_Q4_K_M || f == QUANT_FTYPE_Q5_K_M) && more)
			return QUANT_Q6_K;
		if (f == QUANT_FTYPE_Q4_K_S && layer < 4)
			return QUANT_Q5_K;
		return t;
	}
	if (has(name, "ffn_down")) {
		if (f == QUANT_FTYPE_Q2_K)
			return QUANT_Q3_K;
		if (f == QUANT_FTYPE_Q3_K_M)
			return layer < n_layers / 16 ? QUANT_Q5_K : QUANT_Q4_K;
		if (f == QUANT_FTYPE_Q3_K_L)
			return QUANT_Q5_K;
		if (f == QUANT_FTYPE_Q4_K_M || f == QUANT_FTYPE_Q5_K_M)
			return more ? QUANT_Q6_K : t;
		if ((f == QUANT_FTYPE_IQ4_NL || f == QUANT_FTYPE_IQ4_XS) && layer < n_layers / 8)
			return QUANT_Q5_K;
		if (f == QUANT_FTYPE_Q4_K_S && layer < n_layers / 8)
			return QUANT_Q5_K;
		return t;
	}
	if (has(name, "attn_output.weight")) {
		if (f == QUANT_FTYPE_Q2_K)
			return QUANT_Q3_K;
		if (f == QUANT_FTYPE_Q3_K_M)
			return QUANT_Q4_K;
		if (f == QUANT_FTYPE_Q3_K_L)
			return QUANT_Q5_K;
		return t;
	}
	if (has(name, "attn_qkv.weight")) {
		if (f == QUANT_FTYPE_Q3_K_M || f == QUANT_FTYPE_Q3_K_L)
			return QUANT_Q4_K;
		if (f == QUANT_FTYPE_Q4_K_M)
			return QUANT_Q5_K;
		if (f == QUANT_FTYPE_Q5_K_M)
			return QUANT_Q6_K;
	}
	return t;
}

uint32_t quant_mix_type(const quant_mix_t *mix, const char *tensor_name, int layer, int n_layers,
			int64_t row_len)
{
	if (!quantizable(tensor_name))
		return QUANT_F32;
	if (!quant_supported(mix->base))
		return mix->base;	/* f32, f16, bf16 */
	if (layer < 0 && sscanf(tensor_name, "blk.%d.", &layer) != 1)
		layer = 0;
	uint32_t t = mix_pick(mix, tensor_name, layer, n_layers, row_len);
	if (row_len % quant_block_values(t) == 0)
		return t;
	switch (t) {	/* llama.cpp's fallback for rows that are not whole blocks */
	case QUANT_Q2_K: case QUANT_Q3_K: case QUANT_IQ4_XS: t = QUANT_IQ4_NL; break;
	case QUANT_Q4_K: t = QUANT_Q5_0; break;
	case QUANT_Q5_K: t = QUANT_Q5_1; break;
	case QUANT_Q6_K: t = QUANT_Q8_0; break;
	default: break;
	}
	return row_len % quant_block_values(t) == 0 ? t : QUANT_F16;
}
