/* ops: the fast kernels against the plain-C reference, on odd shapes; the
 * packed matmul bit for bit against its definition (an fma chain per
 * element), which is what makes the forward batch-invariant. */
#include "cu_main.h"
#include "ops.h"

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static uint64_t rng_state;

static float frand(void)	/* uniform in [-1, 1) */
{
	rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
	return (float)((double)(rng_state >> 40) / (double)(1ULL << 24) * 2.0 - 1.0);
}

static float *rand_vec(size_t n, float scale)
{
	float *v = malloc(n * sizeof(float) + 1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(v);
	for (size_t i = 0; i < n; i++)
		v[i] = frand() * scale;
	return v;
}

static double max_rel_err(const float *a, const float *b, size_t n)
{
	double scale = 1e-6, err = 0.0;
	for (size_t i = 0; i < n; i++)
		if (fabs(b[i]) > scale)
			scale = fabs(b[i]);
	for (size_t i = 0; i < n; i++) {
		double e = fabs((double)a[i] - b[i]) / scale;
		if (!(e <= err))	/* NaN counts as an error */
			err = e > err ? e : INFINITY;
	}
	return err;
}

static const int shapes[][3] = {	/* n, N, K */
	{ 1, 1, 1 }, { 1, 64, 64 }, { 3, 65, 17 }, { 7, 130, 100 }, { 13, 200, 33 },
	{ 6, 64, 768 }, { 1, 172, 64 }, { 12, 32, 64 }, { 5, 512, 64 }, { 19, 129, 16 },
	{ 2, 63, 15 }, { 37, 96, 48 },
};
#define N_SHAPES (sizeof(shapes) / sizeof(shapes[0]))

static void check_matmul_layout(enum ops_layout layout, ops_pool_t *pool)
{
	rng_state = 42;
	for (size_t s = 0; s < N_SHAPES; s++) {
		int n = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
		float *x = rand_vec((size_t)n * K, 1.0f);
		float *wr = rand_vec((size_t)N * K, 0.1f);
		float *y = malloc((size_t)n * N * sizeof(float));
		float *ref = malloc((size_t)n * N * sizeof(float));
		float *chain = malloc((size_t)n * N * sizeof(float));
		CU_ASSERT_PTR_NOT_NULL_FATAL(y);
		CU_ASSERT_PTR_NOT_NULL_FATAL(ref);
		CU_ASSERT_PTR_NOT_NULL_FATAL(chain);
		ops_w_t w;
		CU_ASSERT_EQUAL_FATAL(ops_w_alloc(&w, layout, N, K), 0);
		ops_w_set_rows(&w, 0, N, wr);
		ops_matmul(pool, y, (size_t)N, x, (size_t)K, &w, n);
		ops_ref_matmul(ref, x, wr, n, N, K);
		double e = max_rel_err(y, ref, (size_t)n * N);
		if (e > 1e-5)
			fprintf(stderr, "\nmatmul layout %d n=%d N=%d K=%d rel err %g\n", layout, n, N, K, e);
		CU_ASSERT(e <= 1e-5);
		if (layout == OPS_W_PACKED) {
			ops_ref_matmul_chain(chain, x, wr, n, N, K);
			CU_ASSERT(memcmp(y, chain, (size_t)n * N * sizeof(float)) == 0);
		}
		ops_w_free(&w);
		free(x);
		free(wr);
		free(y);
		free(ref);
		free(chain);
	}
}

static void test_matmul_packed(void)
{
	check_matmul_layout(OPS_W_PACKED, NULL);
	ops_pool_t *p = NULL;
	CU_ASSERT_EQUAL_FATAL(ops_pool_new(3, &p), 0);
	check_matmul_layout(OPS_W_PACKED, p);
	ops_pool_destroy(&p);
	CU_ASSERT_PTR_NULL(p);
}

/* Q8 weights: the product is, bit for bit, the fma chain over the widened
 * weights (ops_w_get_row), with K across several 256-value chunks or
 * under one, N past a panel, one thread or three; a row alone or in any
 * batch gives the same bits; the values round as Q8_0 does (within half a
 * step of the block's amax / 127); Q8_0 blocks go in as they are; the
 * matrix takes 1.0625 bytes a value (plus panel padding). */
static void test_matmul_q8(void)
{
	static const int qs[][3] = { { 1, 64, 32 }, { 7, 130, 96 }, { 13, 200, 288 }, { 33, 65, 800 },
				     { 6, 300, 256 }, { 2, 1, 64 }, { 4, 100, 320 }, { 3, 64, 768 },
				     { 5, 70, 64 }, { 16, 128, 96 }, { 17, 64, 64 } };
	rng_state = 21;
	ops_pool_t *p3 = NULL;
	CU_ASSERT_EQUAL_FATAL(ops_pool_new(3, &p3), 0);
	for (size_t si = 0; si < sizeof(qs) / sizeof(qs[0]); si++) {
		int n = qs[si][0], N = qs[si][1], K = qs[si][2];
		float *x = rand_vec((size_t)n * K, 1.0f), *wr = rand_vec((size_t)N * K, 0.1f);
		float *wide = malloc((size_t)N * K * sizeof(float)), *y = calloc((size_t)n * N, sizeof(float));
		float *chain = malloc((size_t)n * N * sizeof(float)), *one = calloc((size_t)N, sizeof(float));
		CU_ASSERT_FATAL(wide != NULL && y != NULL && chain != NULL && one != NULL);
		ops_w_t w;
		CU_ASSERT_EQUAL_FATAL(ops_w_alloc(&w, OPS_W_PACKED_Q8, N, K), 0);
		CU_ASSERT_EQUAL(ops_w_bytes(OPS_W_PACKED_Q8, N, K),
				(size_t)((N + 63) / 64 * 64) * (size_t)K * 17 / 16);
		ops_w_set_rows(&w, 0, N, wr);
		for (int r = 0; r < N; r++)
			ops_w_get_row(&w, r, wide + (size_t)r * K);
		for (int r = 0; r < N; r++)
			for (int b = 0; b < K / 32; b++) {
				float amax = 0;
				for (int i = 0; i < 32; i++)
					amax = fmaxf(amax, fabsf(wr[(size_t)r * K + b * 32 + i]));
				for (int i = 0; i < 32; i++) {
					size_t at = (size_t)r * K + (size_t)b * 32 + (size_t)i;
					CU_ASSERT(fabsf(wide[at] - wr[at]) <= amax / 127.0f * 0.5f * 1.002f);
				}
			}
		ops_ref_matmul_chain(chain, x, wide, n, N, K);
		ops_matmul(si % 2 ? p3 : NULL, y, (size_t)N, x, (size_t)K, &w, n);
		CU_ASSERT(memcmp(y, chain, (size_t)n * N * sizeof(float)) == 0);
		ops_matmul(p3, one, (size_t)N, x + (size_t)(n - 1) * K, (size_t)K, &w, 1);
		CU_ASSERT(memcmp(one, y + (size_t)(n - 1) * N, (size_t)N * sizeof(float)) == 0);
		/* the same values as GGUF Q8_0 blocks: the same matrix */
		ops_w_t w2;
		CU_ASSERT_EQUAL_FATAL(ops_w_alloc(&w2, OPS_W_PACKED_Q8, N, K), 0);
		uint8_t *blocks = malloc((size_t)N * (size_t)(K / 32) * 34);
		CU_ASSERT_FATAL(blocks != NULL);
		for (int r = 0; r < N; r++)
			for (int b = 0; b < K / 32; b++) {
				uint8_t *blk = blocks + ((size_t)r * (size_t)(K / 32) + (size_t)b) * 34;
				float amax = 0;
				for (int i = 0; i < 32; i++)
					amax = fmaxf(amax, fabsf(wide[(size_t)r * K + b * 32 + i]));
				float d = 0;
				for (int i = 0; i < 32 && amax > 0; i++)	/* d from a value of magnitude amax */
					if (fabsf(wide[(size_t)r * K + b * 32 + i]) == amax)
						d = amax / 127.0f;
				uint16_t d16;
				ops_f16_from_f32(&d16, &d, 1);
				memcpy(blk, &d16, 2);
				float dw;
				ops_f16_to_f32(&dw, &d16, 1);
				for (int i = 0; i < 32; i++)
					blk[2 + i] = (uint8_t)(int8_t)(dw > 0 ? rintf(wide[(size_t)r * K + b * 32 + i] / dw) : 0);
			}
		ops_w_set_rows_q8(&w2, 0, N, blocks);
		float *y2 = calloc((size_t)n * N, sizeof(float));
		CU_ASSERT_FATAL(y2 != NULL);
		ops_matmul(NULL, y2, (size_t)N, x, (size_t)K, &w2, n);
		CU_ASSERT(memcmp(y2, y, (size_t)n * N * sizeof(float)) == 0);
		free(y2);
		free(blocks);
		ops_w_free(&w2);
		ops_w_free(&w);
		free(x);
		free(wr);
		free(wide);
		free(y);
		free(chain);
		free(one);
	}
	/* K must be whole blocks */
	ops_w_t bad;
	CU_ASSERT_EQUAL(ops_w_alloc(&bad, OPS_W_PACKED_Q8, 64, 48), -EINVAL);
	ops_pool_destroy(&p3);
}

static void test_matmul_blas(void)
{
	check_matmul_layout(OPS_W_ROWMAJOR, NULL);
}

/* Rows computed alone, in a batch of any size, with any thread count and
 * with strided input/output are the same bits. */
static void test_matmul_batch_invariant(void)
{
	rng_state = 7;
	int n = 33, N = 300, K = 200;
	size_t ldx = K + 5, ldy = N + 3;
	float *x = rand_vec((size_t)n * ldx, 1.0f);
	float *wr = rand_vec((size_t)N * K, 0.1f);
	float *all = calloc((size_t)n * ldy, sizeof(float));
	float *part = calloc((size_t)n * ldy, sizeof(float));
	CU_ASSERT_PTR_NOT_NULL_FATAL(all);
	CU_ASSERT_PTR_NOT_NULL_FATAL(part);
	ops_w_t w;
	CU_ASSERT_EQUAL_FATAL(ops_w_alloc(&w, OPS_W_PACKED, N, K), 0);
	ops_w_set_rows(&w, 0, N, wr);
	ops_pool_t *p2 = NULL;
	CU_ASSERT_EQUAL_FATAL(ops_pool_new(2, &p2), 0);
	ops_matmul(NULL, all, ldy, x, ldx, &w, n);
	int sizes[] = { 1, 2, 5, 6, 7, 12 };
	for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
		memset(part, 0, (size_t)n * ldy * sizeof(float));
		for (int i = 0; i < n; i += sizes[si]) {
			int m = n - i < sizes[si] ? n - i : sizes[si];
			ops_matmul(si % 2 ? p2 : NULL, part + (size_t)i * ldy, ldy, x + (size_t)i * ldx, ldx, &w, m);
		}
		for (int i = 0; i < n; i++)
			CU_ASSERT(memcmp(part + (size_t)i * ldy, all + (size_t)i * ldy, (size_t)N * sizeof(float)) == 0);
	}
	ops_pool_destroy(&p2);
	ops_w_free(&w);
	free(x);
	free(wr);
	free(all);
	free(part);
}

static void test_w_rows(void)
{
	rng_state = 3;
	int N = 70, K = 9;
	float *wr = rand_vec((size_t)N * K, 1.0f);
	float row[9];
	for (int layout = 0; layout < 2; layout++) {
		ops_w_t w;
		CU_ASSERT_EQUAL_FATAL(ops_w_alloc(&w, (enum ops_layout)layout, N, K), 0);
		/* assembled from two pieces, as fused matrices are */
		ops_w_set_rows(&w, 0, 40, wr);
		ops_w_set_rows(&w, 40, 30, wr + 40 * K);
		for (int r = 0; r < N; r++) {
			ops_w_get_row(&w, r, row);
			CU_ASSERT(memcmp(row, wr + (size_t)r * K, sizeof(row)) == 0);
		}
		ops_w_free(&w);
	}
	free(wr);
}

static void test_dot_order(void)
{
	/* The documented order: 16 fma lanes, then pairwise halving. */
	rng_state = 11;
	int lens[] = { 1, 15, 16, 17, 64, 100, 172 };
	for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
		int n = lens[li];
		float *a = rand_vec((size_t)n, 1.0f), *b = rand_vec((size_t)n, 1.0f);
		float l[16] = { 0 };
		for (int k = 0; k < n; k++)
			l[k % 16] = fmaf(a[k], b[k], l[k % 16]);
		for (int w = 8; w >= 1; w /= 2)
			for (int i = 0; i < w; i++)
				l[i] = l[i] + l[i + w];
		float d = ops_dot(a, b, n);
		CU_ASSERT(memcmp(&d, &l[0], sizeof(float)) == 0);
		double ref = 0;
		for (int k = 0; k < n; k++)
			ref += (double)a[k] * b[k];
		CU_ASSERT(fabs(d - ref) < 1e-5 * n);
		free(a);
		free(b);
	}
}

static void test_rmsnorm(void)
{
	rng_state = 5;
	int dims[] = { 1, 7, 64, 100, 768 };
	for (size_t i = 0; i < sizeof(dims) / sizeof(dims[0]); i++) {
		int d = dims[i];
		float *x = rand_vec((size_t)d, 3.0f), *g = rand_vec((size_t)d, 1.0f);
		float *y = malloc((size_t)d * sizeof(float)), *r = malloc((size_t)d * sizeof(float));
		ops_rmsnorm(y, x, g, d, 1e-5f);
		ops_ref_rmsnorm(r, x, g, d, 1e-5f);
		CU_ASSERT(max_rel_err(y, r, (size_t)d) < 1e-5);
		/* in place */
		ops_rmsnorm(x, x, g, d, 1e-5f);
		CU_ASSERT(memcmp(x, y, (size_t)d * sizeof(float)) == 0);
		free(x);
		free(g);
		free(y);
		free(r);
	}
}

static void test_rope(void)
{
	rng_state = 9;
	int n_heads = 3, hd = 20;
	int rope_dims[] = { 20, 8 };
	int positions[] = { 0, 1, 17, 1000 };
	for (int neox = 0; neox < 2; neox++)
		for (size_t ri = 0; ri < 2; ri++)
			for (size_t pi = 0; pi < 4; pi++) {
				int rd = rope_dims[ri], pos = positions[pi];
				float *x = rand_vec((size_t)n_heads * hd, 1.0f);
				float *r = malloc((size_t)n_heads * hd * sizeof(float));
				memcpy(r, x, (size_t)n_heads * hd * sizeof(float));
				float cs[20];
				ops_rope_table(cs, pos, rd, 10000.0f, 1.0f, NULL);
				float *orig = malloc((size_t)n_heads * hd * sizeof(float));
				memcpy(orig, x, (size_t)n_heads * hd * sizeof(float));
				ops_rope(x, n_heads, hd, rd, neox, cs);
				ops_ref_rope(r, n_heads, hd, rd, neox, pos, 10000.0f, 1.0f, NULL);
				CU_ASSERT(max_rel_err(x, r, (size_t)n_heads * hd) < 1e-5);
				if (pos == 0)
					CU_ASSERT(memcmp(x, orig, (size_t)n_heads * hd * sizeof(float)) == 0);
				/* dims past rope_dim are untouched */
				for (int h = 0; h < n_heads; h++)
					for (int d = rd; d < hd; d++)
						CU_ASSERT_EQUAL(x[h * hd + d], orig[h * hd + d]);
				free(x);
				free(r);
				free(orig);
			}
	/* the pairing: a unit vector in dim 0 rotates into dim 1 (normal) or
	 * dim rope_dim/2 (neox) */
	float cs[8], v[8];
	ops_rope_table(cs, 1, 8, 10000.0f, 1.0f, NULL);	/* theta_0 = 1 rad */
	memset(v, 0, sizeof(v));
	v[0] = 1.0f;
	ops_rope(v, 1, 8, 8, false, cs);
	CU_ASSERT(fabs(v[0] - cos(1.0)) < 1e-6 && fabs(v[1] - sin(1.0)) < 1e-6 && v[4] == 0.0f);
	memset(v, 0, sizeof(v));
	v[0] = 1.0f;
	ops_rope(v, 1, 8, 8, true, cs);
	CU_ASSERT(fabs(v[0] - cos(1.0)) < 1e-6 && fabs(v[4] - sin(1.0)) < 1e-6 && v[1] == 0.0f);
}

/* RoPE scaling: linear (positions times freq_scale) and Llama 3's
 * frequency factors (theta_i / ff[i]) give the angles of their formulas,
 * as the double reference computes them; a table is that of the
 * unscaled one at the scaled position where the scaling is exact. */
static void test_rope_scaling(void)
{
	enum { RD = 16, HD = 20, NH = 2 };
	const float ff[RD / 2] = { 1.0f, 1.0f, 1.5f, 2.6898f, 8.0f, 8.0f, 8.0f, 8.0f };
	float cs[RD], ref_cs[RD];
	/* linear, factor 4: position 40 rotates as 10 does unscaled */
	ops_rope_table(cs, 40, RD, 10000.0f, 0.25f, NULL);
	ops_rope_table(ref_cs, 10, RD, 10000.0f, 1.0f, NULL);
	CU_ASSERT(memcmp(cs, ref_cs, sizeof(cs)) == 0);
	/* the factors divide each angle: pair i against ggml's float
	 * recurrence bit for bit, and against the formula in double within
	 * the recurrence's rounding (it grows with the position) */
	int positions[] = { 0, 3, 777, 100000 };
	for (size_t pi = 0; pi < 4; pi++) {
		int pos = positions[pi];
		ops_rope_table(cs, pos, RD, 500000.0f, 0.5f, ff);
		float theta = (float)pos, ts = powf(500000.0f, -2.0f / (float)RD);
		for (int i = 0; i < RD / 2; i++) {
			float t = 0.5f * (theta / ff[i]);
			CU_ASSERT(cs[2 * i] == cosf(t));
			CU_ASSERT(cs[2 * i + 1] == sinf(t));
			theta *= ts;
			double a = pos * 0.5 * pow(500000.0, -2.0 * i / RD) / ff[i];
			if (pos < 1000) {
				CU_ASSERT(fabs(cs[2 * i] - cos(a)) < 1e-3);
				CU_ASSERT(fabs(cs[2 * i + 1] - sin(a)) < 1e-3);
			}
		}
		for (int neox = 0; neox < 2; neox++) {
			rng_state = 21 + (uint64_t)pi;
			float *x = rand_vec((size_t)NH * HD, 1.0f), *r = malloc((size_t)NH * HD * sizeof(float));
			CU_ASSERT_PTR_NOT_NULL_FATAL(r);
			memcpy(r, x, (size_t)NH * HD * sizeof(float));
			ops_rope(x, NH, HD, RD, neox, cs);
			ops_ref_rope(r, NH, HD, RD, neox, pos, 500000.0f, 0.5f, ff);
			/* the float recurrence's angle error: about pos * i * 6e-8 */
			CU_ASSERT(max_rel_err(x, r, (size_t)NH * HD) < (pos < 1000 ? 2e-3 : 0.2));
			/* and not what the unscaled rope gives (past position 0) */
			ops_ref_rope(r, NH, HD, RD, neox, pos, 500000.0f, 1.0f, NULL);
			if (pos > 0)
				CU_ASSERT(max_rel_err(x, r, (size_t)NH * HD) > 1e-3);
			free(x);
			free(r);
		}
	}
}

static void test_expf(void)
{
	/* within 2 ulp-ish of the double exp over the range softmax and silu
	 * use; 0 and inf far outside it, as ggml's vector expf */
	double worst = 0;
	for (int i = -870000; i <= 880000; i += 7) {
		float x = (float)i * 1e-4f;
		double e = exp((double)x), r = fabs(ops_expf(x) - e) / e;
		worst = r > worst ? r : worst;
	}
	CU_ASSERT(worst < 3e-7);
	CU_ASSERT_EQUAL(ops_expf(0.0f), 1.0f);
	CU_ASSERT(ops_expf(-87.0f) > 0.0f && ops_expf(-87.0f) < 1.7e-38f);
	CU_ASSERT(ops_expf(-1000.0f) == 0.0f);
	CU_ASSERT(isinf(ops_expf(1000.0f)));
}

static void test_softmax_swiglu(void)
{
	rng_state = 13;
	int n = 300;
	float *x = rand_vec((size_t)n, 20.0f), *r = malloc((size_t)n * sizeof(float));
	memcpy(r, x, (size_t)n * sizeof(float));
	ops_softmax(x, n);
	ops_ref_softmax(r, n);
	CU_ASSERT(max_rel_err(x, r, (size_t)n) < 1e-5);
	double s = 0;
	for (int i = 0; i < n; i++)
		s += x[i];
	CU_ASSERT(fabs(s - 1.0) < 1e-5);
	float *g = rand_vec((size_t)n, 8.0f), *u = rand_vec((size_t)n, 2.0f);
	ops_swiglu(x, g, u, n);
	ops_ref_swiglu(r, g, u, n);
	CU_ASSERT(max_rel_err(x, r, (size_t)n) < 1e-5);
	/* every element as the definition says: whole groups of 16 with
	 * ops_expf, the tail with libm's expf (as ggml's silu) */
	for (int i = 0; i < n; i++) {
		float e = i < (n & ~15) ? ops_expf(0.0f - g[i]) : expf(0.0f - g[i]);
		float want = g[i] / (1.0f + e) * u[i];
		CU_ASSERT(memcmp(&x[i], &want, sizeof(float)) == 0);
	}
	ops_swiglu(g, g, u, n);	/* in place */
	CU_ASSERT(memcmp(g, x, (size_t)n * sizeof(float)) == 0);
	free(x);
	free(r);
	free(g);
	free(u);
}

/* The definition in ops.h written out with ops_dot, expf and fmaf; a
 * window keeps the positions p with (pos0 + t) - p < window, llama.cpp's
 * is_masked_swa (standard) negated. */
static void attention_by_definition(const ops_attn_t *a, const float *q, size_t ldq, int pos0,
				    int n_q, float *out, size_t ldo)
{
	int hd = a->head_dim, group = a->n_heads / a->n_kv_heads;
	float scale = 1.0f / sqrtf((float)hd);
	float s[256];
	for (int t = 0; t < n_q; t++)
		for (int h = 0; h < a->n_heads; h++) {
			int lo = 0;
			while (a->window > 0 && (pos0 + t) - lo >= a->window)
				lo++;
			int n = pos0 + t + 1 - lo;
			const float *k = a->k + (size_t)(h / group) * a->head_stride + (size_t)lo * a->row_stride;
			const float *v = a->v + (size_t)(h / group) * a->head_stride + (size_t)lo * a->row_stride;
			const float *qh = q + (size_t)t * ldq + (size_t)h * hd;
			float mx = -INFINITY, sum = 0.0f;
			for (int p = 0; p < n; p++) {
				s[p] = ops_dot(qh, k + (size_t)p * a->row_stride, hd) * scale;
				mx = s[p] > mx ? s[p] : mx;
			}
			for (int p = 0; p < n; p++) {
				s[p] = ops_expf(s[p] - mx);
				sum += s[p];
			}
			float *o = out + (size_t)t * ldo + (size_t)h * hd;
			for (int d = 0; d < hd; d++) {
				float acc = 0.0f;
				for (int p = 0; p < n; p++)
					acc = fmaf(s[p], v[(size_t)p * a->row_stride + d], acc);
				o[d] = acc * (1.0f / sum);
			}
		}
}

/* llama.cpp's f16-cache arithmetic (ops.h half_math) written out plainly:
 * ggml_vec_dot_f16's order (4 x 16 lanes per 64 values, (0+2)+(1+3), a
 * 16-lane sum, the rest in double) or, tiled, 16 lanes over all values;
 * softmax with ops_expf and 16-position sums in double; probabilities as
 * halves; positions padded to 32 for the weighted sum. */
static float lanes16(const float *v)
{
	float t3[8], t6[4];
	for (int l = 0; l < 8; l++)
		t3[l] = v[l] + v[l + 8];
	for (int l = 0; l < 4; l++)
		t6[l] = t3[l] + t3[l + 4];
	return (t6[0] + t6[2]) + (t6[1] + t6[3]);
}

static float half_of(float x)
{
	uint16_t h;
	ops_f16_from_f32(&h, &x, 1);
	ops_f16_to_f32(&x, &h, 1);
	return x;
}

/* sum of x[i * sx] * y[i * sy], i < n, in ggml_vec_dot_f16's or the tiled
 * order (x, y already halves) */
static float dot_order(const float *x, size_t sx, const float *y, size_t sy, int n, bool tiled)
{
	if (tiled) {
		float l[16] = { 0 };
		for (int i = 0; i < n; i++)
			l[i % 16] = fmaf(x[i * sx], y[i * sy], l[i % 16]);
		return lanes16(l);
	}
	int np = n & ~63;
	double sum = 0.0;
	if (np > 0) {
		float acc[64] = { 0 }, l[16];
		for (int i = 0; i < np; i++)
			acc[i % 64] = fmaf(x[i * sx], y[i * sy], acc[i % 64]);
		for (int k = 0; k < 16; k++)
			l[k] = (acc[k] + acc[32 + k]) + (acc[16 + k] + acc[48 + k]);
		sum = lanes16(l);
	}
	for (int i = np; i < n; i++)
		sum += (double)(x[i * sx] * y[i * sy]);
	return (float)sum;
}

static void attention_half_by_definition(const ops_attn_t *a, const float *q, size_t ldq, int pos0,
					 int n_q, float *out, size_t ldo, bool tiled)
{
	int hd = a->head_dim, group = a->n_heads / a->n_kv_heads;
	float scale = 1.0f / sqrtf((float)hd);
	for (int t = 0; t < n_q; t++)
		for (int h = 0; h < a->n_heads; h++) {
			int hi = pos0 + t, lo = a->window > 0 && hi >= a->window ? hi - a->window + 1 : 0;
			int n_pad = (hi + 1 + 31) / 32 * 32;
			float *kk = calloc((size_t)n_pad * hd, sizeof(float)), *vv = calloc((size_t)n_pad * hd, sizeof(float));
			float *e = calloc((size_t)n_pad, sizeof(float)), qh[512];
			for (int i = 0; i < hd; i++)
				qh[i] = half_of(q[(size_t)t * ldq + (size_t)h * hd + i]);
			for (int p = 0; p <= hi; p++)
				for (int i = 0; i < hd; i++) {
					size_t at = (size_t)(h / group) * a->head_stride + (size_t)p * a->row_stride + i;
					ops_f16_to_f32(&kk[(size_t)p * hd + i], &a->k16[at], 1);
					ops_f16_to_f32(&vv[(size_t)p * hd + i], &a->v16[at], 1);
				}
			float mx = -INFINITY;
			for (int p = lo; p <= hi; p++) {
				e[p] = dot_order(qh, 1, kk + (size_t)p * hd, 1, hd, tiled && hd % 16 == 0) * scale;
				mx = e[p] > mx ? e[p] : mx;
			}
			double sum = 0.0;
			for (int c = 0; c < n_pad; c += 16) {
				float l[16];
				for (int k = 0; k < 16; k++) {
					int p = c + k;
					l[k] = p >= lo && p <= hi ? (e[p] = ops_expf(e[p] - mx)) : 0.0f;
				}
				sum += (double)lanes16(l);
			}
			for (int p = 0; p < n_pad; p++)
				e[p] = p >= lo && p <= hi ? half_of(e[p] * (float)(1.0 / sum)) : 0.0f;
			for (int d = 0; d < hd; d++)
				out[(size_t)t * ldo + (size_t)h * hd + d] =
					dot_order(e, 1, vv + d, (size_t)hd, n_pad, tiled && hd % 4 == 0);
			free(kk);
			free(vv);
			free(e);
		}
}

/* The f16 cache with llama.cpp's arithmetic: the kernel equals the
 * definition above bit for bit, in both orders; the orders differ; the
 * double reference (same roundings of q and probabilities) agrees; the
 * last token alone gives the same bits. */
static void check_half_math(const ops_attn_t *ah0, const float *q, size_t ldq, int pos0, int n_q, size_t ldo,
			    float *scores)
{
	size_t n_out = (size_t)n_q * ldo;
	float *out = calloc(n_out, sizeof(float)), *def = calloc(n_out, sizeof(float));
	float *ref = calloc(n_out, sizeof(float)), *one = calloc(ldo, sizeof(float));
	float *tiled = calloc(n_out, sizeof(float));
	CU_ASSERT_FATAL(out != NULL && def != NULL && ref != NULL && one != NULL && tiled != NULL);
	ops_attn_t ah = *ah0;
	ah.half_math = true;
	ops_attention(&ah, q, ldq, pos0, n_q, 0, ah.n_kv_heads, out, ldo, scores);
	attention_half_by_definition(&ah, q, ldq, pos0, n_q, def, ldo, false);
	CU_ASSERT(memcmp(out, def, n_out * sizeof(float)) == 0);
	ops_ref_attention(&ah, q, ldq, pos0, n_q, 0, ah.n_kv_heads, ref, ldo);
	CU_ASSERT(max_rel_err(out, ref, n_out) < 2e-3);
	int t = n_q - 1;
	for (int g = 0; g < ah.n_kv_heads; g++)
		ops_attention(&ah, q + (size_t)t * ldq, ldq, pos0 + t, 1, g, g + 1, one, ldo, scores);
	CU_ASSERT(memcmp(one, out + (size_t)t * ldo, ldo * sizeof(float)) == 0);
	ah.tiled = true;
	ops_attention(&ah, q, ldq, pos0, n_q, 0, ah.n_kv_heads, tiled, ldo, scores);
	attention_half_by_definition(&ah, q, ldq, pos0, n_q, def, ldo, true);
	CU_ASSERT(memcmp(tiled, def, n_out * sizeof(float)) == 0);
	CU_ASSERT(max_rel_err(tiled, ref, n_out) < 2e-3);
	if (ah.head_dim % 16 == 0 && pos0 + n_q > 64)	/* the orders really differ */
		CU_ASSERT(memcmp(tiled, out, n_out * sizeof(float)) != 0);
	free(out);
	free(def);
	free(ref);
	free(one);
	free(tiled);
}

/* Attention over a compact cache ac (f16 or q8) gives, bit for bit, the
 * definition's result over aw, the same cache widened to f32; the double
 * reference agrees; the last token alone, kv head by kv head, gives the
 * same bits. */
static void check_compact(const ops_attn_t *ac, const ops_attn_t *aw, const float *q, size_t ldq, int pos0,
			  int n_q, size_t ldo, float *scores)
{
	size_t n_out = (size_t)n_q * ldo;
	float *out = calloc(n_out, sizeof(float)), *def = calloc(n_out, sizeof(float));
	float *ref = calloc(n_out, sizeof(float)), *one = calloc(ldo, sizeof(float));
	CU_ASSERT_FATAL(out != NULL && def != NULL && ref != NULL && one != NULL);
	ops_attention(ac, q, ldq, pos0, n_q, 0, ac->n_kv_heads, out, ldo, scores);
	attention_by_definition(aw, q, ldq, pos0, n_q, def, ldo);
	CU_ASSERT(memcmp(out, def, n_out * sizeof(float)) == 0);
	ops_ref_attention(ac, q, ldq, pos0, n_q, 0, ac->n_kv_heads, ref, ldo);
	CU_ASSERT(max_rel_err(out, ref, n_out) < 1e-5);
	int t = n_q - 1;
	for (int g = 0; g < ac->n_kv_heads; g++)
		ops_attention(ac, q + (size_t)t * ldq, ldq, pos0 + t, 1, g, g + 1, one, ldo, scores);
	CU_ASSERT(memcmp(one, out + (size_t)t * ldo, ldo * sizeof(float)) == 0);
	free(out);
	free(def);
	free(ref);
	free(one);
}

static void check_attention_w(int n_heads, int n_kv, int hd, int ctx, int pos0, int n_q, int window)
{
	/* cache layout [kv head][ctx][hd] with a padded row to test strides */
	size_t rs = (size_t)hd + 4, hs = (size_t)ctx * rs;
	float *k = rand_vec(hs * n_kv, 1.0f), *v = rand_vec(hs * n_kv, 1.0f);
	size_t ldq = (size_t)n_heads * hd + 3, ldo = (size_t)n_heads * hd;
	float *q = rand_vec((size_t)n_q * ldq, 2.0f);
	float *out = calloc((size_t)n_q * ldo, sizeof(float));
	float *ref = calloc((size_t)n_q * ldo, sizeof(float));
	float *def = calloc((size_t)n_q * ldo, sizeof(float));
	float *one = calloc(ldo, sizeof(float));
	float *scores = malloc(((size_t)(n_heads / n_kv) * (size_t)(pos0 + n_q) + 64 * (size_t)hd) * sizeof(float));
	ops_attn_t a = { .n_heads = n_heads, .n_kv_heads = n_kv, .head_dim = hd, .k = k, .v = v,
			  .head_stride = hs, .row_stride = rs, .window = window };
	ops_attention(&a, q, ldq, pos0, n_q, 0, n_kv, out, ldo, scores);
	ops_ref_attention(&a, q, ldq, pos0, n_q, 0, n_kv, ref, ldo);
	attention_by_definition(&a, q, ldq, pos0, n_q, def, ldo);
	CU_ASSERT(max_rel_err(out, ref, (size_t)n_q * ldo) < 1e-5);
	CU_ASSERT(memcmp(out, def, (size_t)n_q * ldo * sizeof(float)) == 0);
	/* the last token alone, kv heads one at a time: the same bits */
	int t = n_q - 1;
	for (int g = 0; g < n_kv; g++)
		ops_attention(&a, q + (size_t)t * ldq, ldq, pos0 + t, 1, g, g + 1, one, ldo, scores);
	CU_ASSERT(memcmp(one, out + (size_t)t * ldo, ldo * sizeof(float)) == 0);
	/* position 0 sees only its own row: out = v[0] of its kv head */
	ops_attention(&a, q, ldq, 0, 1, 0, n_kv, one, ldo, scores);
	for (int h = 0; h < n_heads; h++)
		for (int d = 0; d < hd; d++)
			CU_ASSERT(fabs(one[h * hd + d] - v[(size_t)(h / (n_heads / n_kv)) * hs + d]) < 1e-6);
	/* an f16 cache: the f32 kernel's bits on the widened values */
	size_t nkv = hs * (size_t)n_kv;
	uint16_t *k16 = malloc(nkv * sizeof(uint16_t)), *v16 = malloc(nkv * sizeof(uint16_t));
	float *kw = malloc(nkv * sizeof(float)), *vw = malloc(nkv * sizeof(float));
	CU_ASSERT_FATAL(k16 != NULL && v16 != NULL && kw != NULL && vw != NULL);
	ops_f16_from_f32(k16, k, (int)nkv);
	ops_f16_from_f32(v16, v, (int)nkv);
	ops_f16_to_f32(kw, k16, (int)nkv);
	ops_f16_to_f32(vw, v16, (int)nkv);
	ops_attn_t ah = a, aw = a;
	ah.k = ah.v = NULL;
	ah.k16 = k16;
	ah.v16 = v16;
	aw.k = kw;
	aw.v = vw;
	check_compact(&ah, &aw, q, ldq, pos0, n_q, ldo, scores);
	check_half_math(&ah, q, ldq, pos0, n_q, ldo, scores);
	/* a q8 cache ([kv head][ctx][row bytes], rows packed): the same */
	size_t rb = ops_q8_row_bytes(hd);
	char *k8 = malloc(rb * (size_t)ctx * (size_t)n_kv), *v8 = malloc(rb * (size_t)ctx * (size_t)n_kv);
	CU_ASSERT_FATAL(k8 != NULL && v8 != NULL);
	for (int g = 0; g < n_kv; g++)
		for (int p = 0; p < ctx; p++) {
			size_t src = (size_t)g * hs + (size_t)p * rs, dst = ((size_t)g * ctx + (size_t)p) * rb;
			ops_q8_from_f32(k8 + dst, k + src, hd);
			ops_q8_from_f32(v8 + dst, v + src, hd);
			ops_q8_to_f32(kw + src, k8 + dst, hd);
			ops_q8_to_f32(vw + src, v8 + dst, hd);
		}
	ops_attn_t a8 = { .n_heads = n_heads, .n_kv_heads = n_kv, .head_dim = hd, .k8 = k8, .v8 = v8,
			  .head_stride = rb * (size_t)ctx, .row_stride = rb, .window = window };
	check_compact(&a8, &aw, q, ldq, pos0, n_q, ldo, scores);
	free(k8);
	free(v8);
	free(k16);
	free(v16);
	free(kw);
	free(vw);
	free(k);
	free(v);
	free(q);
	free(out);
	free(ref);
	free(def);
	free(one);
	free(scores);
}

static void check_attention(int n_heads, int n_kv, int hd, int ctx, int pos0, int n_q)
{
	check_attention_w(n_heads, n_kv, hd, ctx, pos0, n_q, 0);
}

/* A window of W: the query at p gives, bit for bit, full attention of the
 * same query over the cache rows max(0, p-W+1)..p alone (a view starting
 * there); rows before the window do not matter (changing them changes no
 * bit), the newest W do; W past p is full attention. */
static void check_window(int n_heads, int n_kv, int hd, int ctx, int p, int window)
{
	size_t rs = (size_t)hd, hs = (size_t)ctx * rs, ldq = (size_t)n_heads * hd, ldo = ldq;
	float *k = rand_vec(hs * n_kv, 1.0f), *v = rand_vec(hs * n_kv, 1.0f);
	float *q = rand_vec(ldq, 2.0f);
	float *win = calloc(ldo, sizeof(float)), *view = calloc(ldo, sizeof(float));
	float *full = calloc(ldo, sizeof(float)), *again = calloc(ldo, sizeof(float));
	float *scores = malloc((size_t)(n_heads / n_kv) * (size_t)(p + 1) * sizeof(float));
	CU_ASSERT_FATAL(win != NULL && view != NULL && full != NULL && again != NULL && scores != NULL);
	ops_attn_t aw = { .n_heads = n_heads, .n_kv_heads = n_kv, .head_dim = hd, .k = k, .v = v,
			  .head_stride = hs, .row_stride = rs, .window = window };
	ops_attn_t af = aw;
	af.window = 0;
	int lo = p - window + 1 > 0 ? p - window + 1 : 0;
	ops_attn_t av = af;
	av.k = k + (size_t)lo * rs;
	av.v = v + (size_t)lo * rs;
	ops_attention(&aw, q, ldq, p, 1, 0, n_kv, win, ldo, scores);
	ops_attention(&av, q, ldq, p - lo, 1, 0, n_kv, view, ldo, scores);
	ops_attention(&af, q, ldq, p, 1, 0, n_kv, full, ldo, scores);
	CU_ASSERT(memcmp(win, view, ldo * sizeof(float)) == 0);
	CU_ASSERT_EQUAL(memcmp(win, full, ldo * sizeof(float)) == 0, lo == 0);
	/* the row just before the window, changed: nothing moves; the first
	 * row inside it: the output does */
	for (int g = 0; lo > 0 && g < n_kv; g++)
		for (int d = 0; d < hd; d++) {
			k[(size_t)g * hs + (size_t)(lo - 1) * rs + (size_t)d] += 5.0f;
			v[(size_t)g * hs + (size_t)(lo - 1) * rs + (size_t)d] += 5.0f;
		}
	ops_attention(&aw, q, ldq, p, 1, 0, n_kv, again, ldo, scores);
	CU_ASSERT(memcmp(win, again, ldo * sizeof(float)) == 0);
	for (int g = 0; g < n_kv; g++)
		for (int d = 0; d < hd; d++)
			v[(size_t)g * hs + (size_t)lo * rs + (size_t)d] += 5.0f;
	ops_attention(&aw, q, ldq, p, 1, 0, n_kv, again, ldo, scores);
	CU_ASSERT(memcmp(win, again, ldo * sizeof(float)) != 0);
	free(k);
	free(v);
	free(q);
	free(win);
	free(view);
	free(full);
	free(again);
	free(scores);
}

/* The compiler's half type (a GCC/Clang extension, the oracle below). */
__extension__ typedef _Float16 cc_half;

/* Halves: every one of the 65536 widens as the compiler's _Float16 does and
 * narrows back to itself (NaNs quieted); f32 values narrow as _Float16
 * rounds them (nearest even, subnormals, overflow), the 16-lane and the
 * scalar paths alike. */
static void test_f16(void)
{
	enum { N = 65536 };
	static uint16_t h[N], back[N];
	static float w[N];
	for (int i = 0; i < N; i++)
		h[i] = (uint16_t)i;
	ops_f16_to_f32(w, h, N);
	ops_f16_from_f32(back, w, N);
	int bad_widen = 0, bad_back = 0, bad_scalar = 0;
	for (int i = 0; i < N; i++) {
		cc_half hf;
		memcpy(&hf, &h[i], sizeof(hf));
		float want = (float)hf, one;
		ops_f16_to_f32(&one, &h[i], 1);
		bool nan = (h[i] & 0x7c00) == 0x7c00 && (h[i] & 0x3ff) != 0;
		if (nan ? !isnan(w[i]) : memcmp(&w[i], &want, sizeof(float)) != 0)
			bad_widen++;
		if (memcmp(&one, &w[i], sizeof(float)) != 0)
			bad_scalar++;
		if (back[i] != (nan ? (h[i] | 0x200) : h[i]))
			bad_back++;
	}
	CU_ASSERT_EQUAL(bad_widen, 0);
	CU_ASSERT_EQUAL(bad_scalar, 0);
	CU_ASSERT_EQUAL(bad_back, 0);

	/* narrowing: random bit patterns, ties and the edges of the range */
	enum { M = 1 << 16 };
	static float x[M];
	static uint16_t vec[M];
	rng_state = 99;
	for (int i = 0; i < M; i++) {
		uint32_t u;
		rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
		u = (uint32_t)(rng_state >> 32);
		if (i % 4 == 1)	/* exponents that land in or near the half range */
			u = (u & 0x807fffffu) | ((uint32_t)(100 + (u >> 23) % 45) << 23);
		if (i % 4 == 2)	/* exact ties between two halves */
			u = (u & 0x8fffe000u) | 0x1000u;
		memcpy(&x[i], &u, sizeof(u));
	}
	float edges[] = { 65504.0f, 65519.99f, 65520.0f, 1e9f, INFINITY, -INFINITY, 0x1p-24f,
			  0x1p-25f, 0x1.8p-25f, 0x1p-26f, 0x1p-14f, 0x1.ffcp-15f, -0.0f, 0.0f };
	memcpy(x, edges, sizeof(edges));
	ops_f16_from_f32(vec, x, M);
	int bad_vec = 0, bad_sc = 0;
	for (int i = 0; i < M; i++) {
		uint16_t one, want;
		ops_f16_from_f32(&one, &x[i], 1);
		if (isnan(x[i])) {
			uint32_t u;
			memcpy(&u, &x[i], sizeof(u));
			want = (uint16_t)(((u >> 16) & 0x8000u) | 0x7e00u | ((u >> 13) & 0x3ffu));
		} else {
			cc_half hf = (cc_half)x[i];
			memcpy(&want, &hf, sizeof(want));
		}
		bad_vec += vec[i] != want;
		bad_sc += one != want;
	}
	CU_ASSERT_EQUAL(bad_vec, 0);
	CU_ASSERT_EQUAL(bad_sc, 0);
}

/* q8 rows: each value comes back within half a step (d/2) of itself, the
 * largest magnitude of a block exactly as +-127 d, the step d the block's
 * amax/127 rounded to a half; zeros stay zeros; the scales sit after the
 * int8s, one per 32 values (or one per row when hd is not a multiple of 32). */
static void test_q8(void)
{
	int hds[] = { 8, 20, 32, 64, 128 };
	rng_state = 5;
	for (size_t c = 0; c < sizeof(hds) / sizeof(hds[0]); c++) {
		int hd = hds[c], qb = hd % 32 == 0 ? 32 : hd;
		CU_ASSERT_EQUAL(ops_q8_row_bytes(hd), (size_t)hd + 2 * (size_t)(hd / qb));
		float *x = rand_vec((size_t)hd, 3.0f), back[128];
		unsigned char row[128 + 8];
		x[1] = 0.0f;
		ops_q8_from_f32(row, x, hd);
		ops_q8_to_f32(back, row, hd);
		for (int b = 0; b < hd / qb; b++) {
			float amax = 0.0f;
			for (int i = 0; i < qb; i++)
				amax = fmaxf(amax, fabsf(x[b * qb + i]));
			uint16_t d16;
			memcpy(&d16, row + hd + 2 * b, sizeof(d16));
			float d, want = amax / 127.0f;
			ops_f16_to_f32(&d, &d16, 1);
			CU_ASSERT(fabsf(d - want) <= want * 0x1p-11f);
			for (int i = 0; i < qb; i++) {
				int q = (int8_t)row[b * qb + i];
				CU_ASSERT(q >= -127 && q <= 127);
				CU_ASSERT_EQUAL(back[b * qb + i], (float)q * d);
				CU_ASSERT(fabsf(back[b * qb + i] - x[b * qb + i]) <= 0.5f * d * 1.001f);
				if (fabsf(x[b * qb + i]) == amax)
					CU_ASSERT_EQUAL(abs(q), 127);
			}
		}
		CU_ASSERT_EQUAL(back[1], 0.0f);
		free(x);
	}
	/* an all-zero row: scale 0, values 0, no NaN */
	float z[64] = { 0 }, zb[64];
	unsigned char zr[68];
	ops_q8_from_f32(zr, z, 64);
	ops_q8_to_f32(zb, zr, 64);
	for (int i = 0; i < 64; i++)
		CU_ASSERT_EQUAL(zb[i], 0.0f);
}

static void test_attention(void)
{
	rng_state = 17;
	check_attention(6, 2, 20, 40, 11, 5);	/* GQA 3, head_dim not a lane multiple */
	check_attention(4, 4, 64, 80, 30, 9);	/* 16-position blocks and a tail */
	check_attention(8, 2, 128, 60, 40, 3);
	check_attention(2, 1, 16, 40, 0, 33);
	check_attention(7, 1, 8, 20, 2, 1);
	/* past one block of the weighted sum (64 positions): the chains go
	 * on from the stored partial sums */
	check_attention(4, 2, 128, 170, 140, 2);
	check_attention(3, 3, 20, 160, 129, 1);
	/* a group of 18 query heads, past the 16 that share one pass */
	check_attention(18, 1, 64, 200, 150, 3);
	/* sliding windows, against the definition, the double reference and
	 * token by token, with every cache type: queries before the window
	 * fills (full attention), crossing it, and well past it (the window
	 * starting inside a 16-row block, and spanning V blocks of 64) */
	check_attention_w(4, 2, 64, 40, 0, 20, 8);
	check_attention_w(6, 2, 20, 60, 11, 30, 7);
	check_attention_w(8, 2, 128, 200, 150, 9, 100);
	check_attention_w(2, 1, 16, 40, 3, 33, 1);	/* a window of one: its own row */
	check_window(4, 2, 64, 64, 5, 8);		/* not yet full */
	check_window(4, 2, 64, 64, 7, 8);		/* exactly full: rows 0..7 */
	check_window(4, 2, 64, 64, 8, 8);		/* rows 1..8 */
	check_window(6, 3, 20, 200, 150, 37);
	check_window(8, 1, 128, 300, 299, 90);
}

/* Resident 4 KiB pages of [p, p + bytes), by mincore. */
static size_t resident_pages(void *p, size_t bytes)
{
	size_t n = (bytes + 4095) / 4096;
	unsigned char *v = calloc(n, 1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(v);
	size_t r = 0;
	if (mincore(p, bytes, v) == 0)
		for (size_t i = 0; i < n; i++)
			r += v[i] & 1;
	else
		r = SIZE_MAX;
	free(v);
	return r;
}

/* ops_big_alloc: zero pages, writable end to end; 4 KiB pages paid as
 * written (a KV cache's resident size follows its tokens), or 2 MiB-aligned
 * from 4 MiB for transparent hugepages. */
static void test_big_alloc(void)
{
	size_t sizes[] = { 1, 4096, 100000, (size_t)4 << 20, ((size_t)9 << 20) + 12345 };
	for (int huge = 0; huge < 2; huge++)
		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			size_t n = sizes[i];
			void *p = NULL;
			CU_ASSERT_EQUAL_FATAL(ops_big_alloc(n, huge, &p), 0);
			unsigned char *b = p;
			if (!huge && n > ((size_t)1 << 20)) {
				b[0] = 1;
				b[n / 2] = 1;
				CU_ASSERT_EQUAL(resident_pages(p, n), 2);
				b[0] = 0;
				b[n / 2] = 0;
			}
			size_t nz = 0;
			for (size_t j = 0; j < n; j += 4093)
				nz += b[j] != 0;
			CU_ASSERT_EQUAL(nz + (b[n - 1] != 0), 0);
			memset(b, 0xab, n);
			CU_ASSERT_EQUAL(b[n - 1], 0xab);
			if (huge && n >= ((size_t)4 << 20))
				CU_ASSERT_EQUAL((uintptr_t)p % ((uintptr_t)2 << 20), 0);
			ops_big_free(p, n, huge);
		}
	void *p = NULL;
	CU_ASSERT_EQUAL(ops_big_alloc(0, false, &p), -EINVAL);
	CU_ASSERT_PTR_NULL(p);
	ops_big_free(NULL, 100, true);
}

static atomic_int task_hits[1000];

static void count_task(void *arg, int task, int worker)
{
	int *nw = arg;
	CU_ASSERT(worker >= 0 && worker < *nw);
	atomic_fetch_add(&task_hits[task], 1);
}

static void test_pool(void)
{
	for (int threads = 1; threads <= 4; threads++) {
		ops_pool_t *p = NULL;
		CU_ASSERT_EQUAL_FATAL(ops_pool_new(threads, &p), 0);
		CU_ASSERT_EQUAL(ops_pool_threads(p), threads);
		for (int region = 0; region < 200; region++) {
			int n = (region * 37) % 1000 + 1;
			for (int i = 0; i < n; i++)
				atomic_store(&task_hits[i], 0);
			ops_pool_run(p, count_task, &threads, n);
			int bad = 0;
			for (int i = 0; i < n; i++)
				bad += atomic_load(&task_hits[i]) != 1;
			CU_ASSERT_EQUAL(bad, 0);
		}
		ops_pool_destroy(&p);
		CU_ASSERT_PTR_NULL(p);
	}
	ops_pool_destroy(NULL);
	ops_pool_t *p = NULL;
	CU_ASSERT_EQUAL(ops_pool_new(0, &p), -EINVAL);
}

static atomic_int share_bad_next;

static void count_share(void *arg, int task, int next, int worker)
{
	int *a = arg;	/* [0] threads, [1] tasks */
	CU_ASSERT(worker >= 0 && worker < a[0]);
	if (next < -1 || next >= a[1] || next == task || (a[0] == 1 && next != (task + 1 < a[1] ? task + 1 : -1)))
		atomic_fetch_add(&share_bad_next, 1);
	atomic_fetch_add(&task_hits[task], 1);
}

/* ops_pool_run_shares: every task exactly once, whatever the threads; the
 * next task it names is a real one (on one thread: the following one). */
static void test_pool_shares(void)
{
	for (int threads = 1; threads <= 4; threads++) {
		ops_pool_t *p = NULL;
		CU_ASSERT_EQUAL_FATAL(ops_pool_new(threads, &p), 0);
		for (int region = 0; region < 200; region++) {
			int n = (region * 37) % 1000 + 1;
			int a[2] = { threads, n };
			for (int i = 0; i < n; i++)
				atomic_store(&task_hits[i], 0);
			atomic_store(&share_bad_next, 0);
			ops_pool_run_shares(p, count_share, a, n);
			int bad = 0;
			for (int i = 0; i < n; i++)
				bad += atomic_load(&task_hits[i]) != 1;
			CU_ASSERT_EQUAL(bad, 0);
			CU_ASSERT_EQUAL(atomic_load(&share_bad_next), 0);
		}
		ops_pool_destroy(&p);
	}
}

const cu_test_t ops_tests[] = {
	{ "matmul_packed", test_matmul_packed },
	{ "matmul_q8", test_matmul_q8 },
	{ "matmul_blas", test_matmul_blas },
	{ "matmul_batch_invariant", test_matmul_batch_invariant },
	{ "w_rows", test_w_rows },
	{ "dot_order", test_dot_order },
	{ "rmsnorm", test_rmsnorm },
	{ "rope", test_rope },
	{ "rope_scaling", test_rope_scaling },
	{ "expf", test_expf },
	{ "softmax_swiglu", test_softmax_swiglu },
	{ "attention", test_attention },
	{ "f16", test_f16 },
	{ "q8", test_q8 },
	{ "big_alloc", test_big_alloc },
	{ "pool", test_pool },
	{ "pool_shares", test_pool_shares },
	{ NULL, NULL },
};
