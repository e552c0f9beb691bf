/* qmm: the quantized products against their definitions.
 *
 * - qmm_dot equals qmm_dot_ref (the scalar definition) and the portable
 *   build of qmm.c (qmm_generic_*, the same file compiled with
 *   QMM_NO_SIMD, see meson.build) bit for bit, for every weight type: rows
 *   of the llama.cpp-quantized files in shared/testdata/kquant (IQ4_NL and
 *   IQ4_XS, which they lack, from quant_quantize_row), activations of
 *   several kinds (Gaussian, zeros, a zero block, large and tiny
 *   magnitudes, outliers).
 * - qmm_matmul over 1..40 (and 100) activation rows equals the per-row
 *   dots bit for bit, with no pool, 1 and 2 threads, in matrices of one or
 *   several types whose row counts are not multiples of 16, with strides,
 *   writing nothing past N; long rows too (the kernels' heap buffers).
 * - qmm_quantize equals a scalar reimplementation of qmm.h's formats,
 *   ties and zero blocks included.
 * - The dots are close to the float64 dot of the dequantized operands.
 * - The float order is the defined one: an independent scalar version of
 *   the Q8_0 lanes and of Q4_0's whole-block sum matches qmm_dot, and on
 *   the same data the other order gives other bits (so a kernel that
 *   summed its lanes differently would fail here); the same for Q8_0 in
 *   QMM_BLOCKS, whole-block sums, on every path (panels, one row without
 *   panels, portable). */
#include "cu_main.h"
#include "lib/mg_f16.h"

#include "gguf.h"
#include "ops.h"
#include "qmm.h"
#include "quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The same module compiled without vector code (tests/unit/worker/meson.build). */
float qmm_generic_dot(uint32_t wtype, enum qmm_order o, const void *wrow, const void *arow, int K);
void qmm_generic_quantize(enum qmm_act a, const float *x, void *dst, int K);
size_t qmm_generic_ws_bytes(int n, int K);
void qmm_generic_matmul(ops_pool_t *p, float *y, size_t ldy, const float *x, size_t ldx, const ops_w_t *w, int n,
			void *ws);
const char *qmm_generic_kernel_name(void);

/* qmm_quantize's formats as qmm.h defines them (qmm.c's a8_* structs). */
typedef struct t_a8_0 {
	float d;
	int8_t qs[32];
} t_a8_0_t;

typedef struct t_a8_1 {
	float d, s;
	int8_t qs[32];
} t_a8_1_t;

typedef struct t_a8_k {
	float d;
	int16_t bsums[16];
	int8_t qs[256];
} t_a8_k_t;

/* ---- data ---- */

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static double rng_unit(uint64_t *s)
{
	return (double)(rng_next(s) >> 11) * 0x1p-53;
}

static float rng_gauss(uint64_t *s)
{
	double u = rng_unit(s) + 1e-300, v = rng_unit(s);
	return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

/* ACT_HUGE: an A8_1 block's s = f16(d * sum q) overflows to inf (as in
 * llama.cpp), so Q4_1 / Q5_1 dots are not finite; bits still agree. */
enum { ACT_GAUSS, ACT_ZERO, ACT_ZERO_BLOCK, ACT_LARGE, ACT_TINY, ACT_OUTLIERS, ACT_HUGE, N_ACT_KINDS };

/* An activation row of K values of a kind. */
static void make_act(float *x, int K, int kind, uint64_t seed)
{
	uint64_t s = seed * 7919 + (uint64_t)kind;
	for (int i = 0; i < K; i++) {
		float g = rng_gauss(&s);
		switch (kind) {
		case ACT_ZERO: x[i] = 0.0f; break;
		case ACT_ZERO_BLOCK: x[i] = i < 256 ? 0.0f : g; break;
		case ACT_LARGE: x[i] = g * 300.0f; break;
		case ACT_HUGE: x[i] = g * 3e5f; break;
		case ACT_TINY: x[i] = g * 1e-5f; break;
		case ACT_OUTLIERS: x[i] = i % 61 == 7 ? g * 300.0f : g; break;
		default: x[i] = g; break;
		}
	}
}

/* Weight rows of one type: rows[n][row_bytes], K values each. */
typedef struct wset {
	uint32_t type;
	int K, n;
	size_t rb;
	uint8_t *rows;	/* owned */
} wset_t;

#define MAX_SETS 32

typedef struct wsets {
	wset_t s[MAX_SETS];
	int n;
} wsets_t;

static void wsets_add(wsets_t *ws, uint32_t type, int K, const uint8_t *rows, int n)
{
	if (ws->n >= MAX_SETS)
		return;
	wset_t *w = &ws->s[ws->n++];
	w->type = type;
	w->K = K;
	w->n = n;
	w->rb = quant_row_bytes(type, K);
	w->rows = malloc(w->rb * (size_t)n);
	CU_ASSERT_PTR_NOT_NULL_FATAL(w->rows);
	memcpy(w->rows, rows, w->rb * (size_t)n);
}

static void wsets_free(wsets_t *ws)
{
	for (int i = 0; i < ws->n; i++)
		free(ws->s[i].rows);
	ws->n = 0;
}

static const char *const kq_files[] = {
	"synth-kq-q2_k.gguf", "synth-kq-q3_k_m.gguf", "synth-kq-q4_0.gguf", "synth-kq-q4_1.gguf",
	"synth-kq-q4_k_m.gguf", "synth-kq-q5_0.gguf", "synth-kq-q5_1.gguf", "synth-kq-q5_k_m.gguf",
	"synth-kq-q6_k.gguf", "synth-kq-q8_0.gguf",
};

static bool have_set(const wsets_t *ws, uint32_t type, int K)
{
	for (int i = 0; i < ws->n; i++)
		if (ws->s[i].type == type && ws->s[i].K == K)
			return true;
	return false;
}

/* Rows of every (type, row length) in the reference files (the first 48
 * rows of the first such tensor), plus IQ4_NL and IQ4_XS rows quantized
 * here. */
static void load_sets(wsets_t *ws)
{
	memset(ws, 0, sizeof(*ws));
	for (size_t f = 0; f < sizeof(kq_files) / sizeof(kq_files[0]); f++) {
		char rel[128], err[256];
		snprintf(rel, sizeof(rel), "testdata/kquant/%s", kq_files[f]);
		gguf_t *g = NULL;
		CU_ASSERT_EQUAL_FATAL(gguf_open(cu_shared_path(rel), &g, err, sizeof(err)), 0);
		for (uint64_t i = 0; i < gguf_n_tensors(g); i++) {
			const gguf_tensor_t *t = gguf_tensor(g, i);
			int K = (int)t->ne[0], rows = (int)(t->n_elements / t->ne[0]);
			if (!quant_supported(t->type) || t->n_dims != 2 || rows < 48 || have_set(ws, t->type, K))
				continue;
			wsets_add(ws, t->type, K, t->data, 48);
		}
		gguf_close(&g);
	}
	static const uint32_t iq[] = { QUANT_IQ4_NL, QUANT_IQ4_XS };
	for (int i = 0; i < 2; i++) {
		int K = 512, n = 48;
		size_t rb = quant_row_bytes(iq[i], K);
		uint8_t *rows = malloc(rb * (size_t)n);
		float *v = malloc((size_t)K * sizeof(float));
		CU_ASSERT_PTR_NOT_NULL_FATAL(rows);
		CU_ASSERT_PTR_NOT_NULL_FATAL(v);
		uint64_t s = 99 + (uint64_t)i;
		for (int r = 0; r < n; r++) {
			for (int k = 0; k < K; k++)
				v[k] = 0.02f * rng_gauss(&s) * (1.0f + (float)(k / 32 % 5));
			CU_ASSERT_EQUAL_FATAL(quant_quantize_row(iq[i], v, rows + (size_t)r * rb, K), 0);
		}
		wsets_add(ws, iq[i], K, rows, n);
		free(rows);
		free(v);
	}
}

static bool same_bits(float a, float b)
{
	return memcmp(&a, &b, sizeof(a)) == 0;
}

/* ---- tests ---- */

static void test_kernel_name(void)
{
	const char *k = qmm_kernel_name();
	CU_ASSERT(strcmp(k, "avx512-vnni") == 0 || strcmp(k, "generic") == 0);
	CU_ASSERT_STRING_EQUAL(qmm_generic_kernel_name(), "generic");
	CU_ASSERT_EQUAL(qmm_act_row_bytes(QMM_A8_0, 64), 2 * sizeof(t_a8_0_t));
	CU_ASSERT_EQUAL(qmm_act_row_bytes(QMM_A8_1, 64), 2 * sizeof(t_a8_1_t));
	CU_ASSERT_EQUAL(qmm_act_row_bytes(QMM_A8_K, 512), 2 * sizeof(t_a8_k_t));
	CU_ASSERT_EQUAL(qmm_act_row_bytes(QMM_A8_K, 288), 0);
	/* a type qmm does not take: no result, no crash */
	uint8_t row[64] = { 0 }, act[64] = { 0 };
	CU_ASSERT(isnan(qmm_dot(0, QMM_LLAMA, row, act, 32)));
	CU_ASSERT(isnan(qmm_generic_dot(1, QMM_BLOCKS, row, act, 32)));
}

/* Every type's rows are found (the test sees them all). */
static void test_types_covered(void)
{
	wsets_t ws;
	load_sets(&ws);
	static const uint32_t all[] = { QUANT_Q4_0, QUANT_Q4_1, QUANT_Q5_0, QUANT_Q5_1, QUANT_Q8_0, QUANT_Q2_K,
					QUANT_Q3_K, QUANT_Q4_K, QUANT_Q5_K, QUANT_Q6_K, QUANT_IQ4_NL, QUANT_IQ4_XS };
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		bool found = false;
		for (int j = 0; j < ws.n; j++)
			found = found || ws.s[j].type == all[i];
		if (!found)
			fprintf(stderr, "\nno rows of type %u\n", all[i]);
		CU_ASSERT(found);
	}
	wsets_free(&ws);
}

static void *quantized(uint32_t type, const float *x, int K)
{
	enum qmm_act a = (enum qmm_act)qmm_act_for(type);
	void *q = malloc(qmm_act_row_bytes(a, K));
	CU_ASSERT_PTR_NOT_NULL_FATAL(q);
	qmm_quantize(a, x, q, K);
	return q;
}

/* qmm_dot == qmm_dot_ref == the portable build, every type, row, kind and
 * float order. */
static void test_dot_bits(void)
{
	wsets_t ws;
	load_sets(&ws);
	int checked = 0, bad = 0;
	for (int si = 0; si < ws.n; si++) {
		const wset_t *w = &ws.s[si];
		float *x = malloc((size_t)w->K * sizeof(float));
		CU_ASSERT_PTR_NOT_NULL_FATAL(x);
		for (int kind = 0; kind < N_ACT_KINDS; kind++)
			for (uint64_t seed = 1; seed <= 3; seed++) {
				make_act(x, w->K, kind, seed);
				void *q = quantized(w->type, x, w->K);
				for (int r = 0; r < 2 * w->n; r += 5) {
					const uint8_t *row = w->rows + (size_t)(r % w->n) * w->rb;
					enum qmm_order o = r < w->n ? QMM_LLAMA : QMM_BLOCKS;
					float f = qmm_dot(w->type, o, row, q, w->K);
					float ref = qmm_dot_ref(w->type, o, row, q, w->K);
					float gen = qmm_generic_dot(w->type, o, row, q, w->K);
					if (!same_bits(f, ref) || !same_bits(gen, ref)) {
						if (bad++ < 5)
							fprintf(stderr, "\n%s K=%d row %d kind %d order %d: dot %.9g ref "
								"%.9g generic %.9g\n", gguf_ttype_name(w->type), w->K,
								r % w->n, kind, (int)o, f, ref, gen);
					}
					bool offset = w->type == QUANT_Q4_1 || w->type == QUANT_Q5_1;
					CU_ASSERT(isfinite(ref) || (kind == ACT_HUGE && offset));
					checked++;
				}
				free(q);
			}
		free(x);
	}
	CU_ASSERT_EQUAL(bad, 0);
	CU_ASSERT(checked > 1000);
	wsets_free(&ws);
}

/* ---- the float64 sanity check ---- */

static void dequant_act(uint32_t type, const void *q, int K, double *out)
{
	enum qmm_act a = (enum qmm_act)qmm_act_for(type);
	for (int i = 0; i < K; i++) {
		if (a == QMM_A8_0) {
			const t_a8_0_t *b = (const t_a8_0_t *)q + i / 32;
			out[i] = (double)b->d * b->qs[i % 32];
		} else if (a == QMM_A8_1) {
			const t_a8_1_t *b = (const t_a8_1_t *)q + i / 32;
			out[i] = (double)b->d * b->qs[i % 32];
		} else {
			const t_a8_k_t *b = (const t_a8_k_t *)q + i / 256;
			out[i] = (double)b->d * b->qs[i % 256];
		}
	}
}

static void test_dot_close_to_f64(void)
{
	wsets_t ws;
	load_sets(&ws);
	for (int si = 0; si < ws.n; si++) {
		const wset_t *w = &ws.s[si];
		int K = w->K;
		float *x = malloc((size_t)K * sizeof(float)), *wf = malloc((size_t)K * sizeof(float));
		double *af = malloc((size_t)K * sizeof(double));
		CU_ASSERT_PTR_NOT_NULL_FATAL(x);
		CU_ASSERT_PTR_NOT_NULL_FATAL(wf);
		CU_ASSERT_PTR_NOT_NULL_FATAL(af);
		bool offset = w->type == QUANT_Q4_1 || w->type == QUANT_Q5_1;
		for (int kind = ACT_GAUSS; kind <= ACT_OUTLIERS; kind++) {
			if (kind == ACT_ZERO)
				continue;
			make_act(x, K, kind, 5);
			void *q = quantized(w->type, x, K);
			dequant_act(w->type, q, K, af);
			for (int r = 0; r < w->n; r += 7) {
				const uint8_t *row = w->rows + (size_t)r * w->rb;
				CU_ASSERT_EQUAL_FATAL(quant_dequant_row(w->type, row, wf, K), 0);
				double d = 0, mag = 0;
				for (int i = 0; i < K; i++) {
					d += (double)wf[i] * af[i];
					mag += fabs((double)wf[i] * af[i]);
				}
				double got = qmm_dot(w->type, (enum qmm_order)(r % 2), row, q, K);
				/* f32 rounding; and Q4_1 / Q5_1 multiply m by s = f16(d x
				 * sum q) with d before its own rounding to half: each
				 * off from (stored d) x sum q by a half's rounding
				 * (relative 2^-11, or 2^-25 among half's subnormals) */
				double tol = 1e-5 * mag + 1e-30;
				for (int b = 0; offset && b < K / 32; b++) {
					uint16_t h;
					memcpy(&h, row + (size_t)b * (size_t)quant_block_bytes(w->type) + 2, 2);
					const t_a8_1_t *ab = (const t_a8_1_t *)q + b;
					int sum = 0;
					for (int i = 0; i < 32; i++)
						sum += ab->qs[i];
					double e = fabs(ab->s) * 0x1p-11 + 0x1p-25 +
						   abs(sum) * (ab->d * 0x1p-11 + 0x1p-25);
					tol += fabs((double)mg_f16_to_f32(h)) * e;
				}
				if (!(fabs(got - d) <= tol))
					fprintf(stderr, "\n%s K=%d row %d kind %d: %.9g vs f64 %.9g (tol %.3g)\n",
						gguf_ttype_name(w->type), K, r, kind, got, d, tol);
				CU_ASSERT(fabs(got - d) <= tol);
			}
			free(q);
		}
		free(x);
		free(wf);
		free(af);
	}
	wsets_free(&ws);
}

/* ---- matmul: batch invariance and threads ---- */

/* Y[n][ldy] by qmm_matmul (or the portable build's) against the per-row
 * definition; columns past N must keep their sentinel. */
static int check_matmul(ops_pool_t *pool, bool generic, const ops_w_t *w, const float *x, size_t ldx, int n,
			const float *want)
{
	int N = w->n_out, K = w->n_in;
	size_t ldy = (size_t)N + 3;
	float *y = malloc((size_t)n * ldy * sizeof(float));
	size_t wsb = generic ? qmm_generic_ws_bytes(n, K) : qmm_ws_bytes(n, K);
	void *wsp = aligned_alloc(64, (wsb + 63) / 64 * 64);
	CU_ASSERT_PTR_NOT_NULL_FATAL(y);
	CU_ASSERT_PTR_NOT_NULL_FATAL(wsp);
	for (size_t i = 0; i < (size_t)n * ldy; i++)
		y[i] = -12345.0f;
	if (generic)
		qmm_generic_matmul(pool, y, ldy, x, ldx, w, n, wsp);
	else
		qmm_matmul(pool, y, ldy, x, ldx, w, n, wsp);
	int bad = 0;
	for (int i = 0; i < n; i++) {
		for (int r = 0; r < N; r++)
			if (!same_bits(y[(size_t)i * ldy + (size_t)r], want[(size_t)i * (size_t)N + (size_t)r])) {
				if (bad++ < 3)
					fprintf(stderr, "\nmatmul n=%d row %d col %d: %.9g want %.9g\n", n, i, r,
						y[(size_t)i * ldy + (size_t)r],
						want[(size_t)i * (size_t)N + (size_t)r]);
			}
		for (size_t r = (size_t)N; r < ldy; r++)
			if (y[(size_t)i * ldy + r] != -12345.0f)
				bad++;
	}
	free(y);
	free(wsp);
	return bad;
}

/* The expected outputs: qmm_dot_ref of each (activation row, weight row). */
static float *expected(const ops_w_t *w, const float *x, size_t ldx, int n)
{
	int N = w->n_out, K = w->n_in;
	float *want = malloc((size_t)n * (size_t)N * sizeof(float));
	CU_ASSERT_PTR_NOT_NULL_FATAL(want);
	for (int i = 0; i < n; i++) {
		void *q[OPS_W_MAX_SEG];
		for (int s = 0; s < w->n_seg; s++)
			q[s] = quantized(w->seg[s].type, x + (size_t)i * ldx, K);
		for (int s = 0; s < w->n_seg; s++)
			for (int r = 0; r < w->seg[s].n_rows; r++) {
				const ops_qseg_t *sg = &w->seg[s];
				want[(size_t)i * (size_t)N + (size_t)(sg->row0 + r)] =
					qmm_dot_ref(sg->type, (enum qmm_order)w->qorder,
						    sg->data + (size_t)r * sg->row_bytes, q[s], K);
			}
		for (int s = 0; s < w->n_seg; s++)
			free(q[s]);
	}
	return want;
}

static float *make_acts(int n, int K, size_t ldx, uint64_t seed)
{
	float *x = malloc((size_t)n * ldx * sizeof(float));
	CU_ASSERT_PTR_NOT_NULL_FATAL(x);
	/* every kind but zeros (the rows of a batch differ) */
	for (int i = 0; i < n; i++) {
		int kind = i % N_ACT_KINDS == ACT_ZERO ? ACT_GAUSS : i % N_ACT_KINDS;
		make_act(x + (size_t)i * ldx, K, kind, seed + (uint64_t)i);
	}
	return x;
}

/* Every n in 1..max against the definition, with no pool, 1 and 2
 * threads; and the portable build for a few n. */
static void check_all_n(const ops_w_t *w, int max_n, uint64_t seed)
{
	int K = w->n_in;
	size_t ldx = (size_t)K + 5;
	float *x = make_acts(max_n, K, ldx, seed);
	float *want = expected(w, x, ldx, max_n);
	ops_pool_t *p1 = NULL, *p2 = NULL;
	CU_ASSERT_EQUAL_FATAL(ops_pool_new(1, &p1), 0);
	CU_ASSERT_EQUAL_FATAL(ops_pool_new(2, &p2), 0);
	int bad = 0;
	for (int n = 1; n <= max_n; n++) {
		/* rows are independent: a batch of n gives the first n rows */
		bad += check_matmul(NULL, false, w, x, ldx, n, want);
		bad += check_matmul(p1, false, w, x, ldx, n, want);
		bad += check_matmul(p2, false, w, x, ldx, n, want);
		if (n == 1 || n == 7 || n == max_n)
			bad += check_matmul(p2, true, w, x, ldx, n, want);
	}
	CU_ASSERT_EQUAL(bad, 0);
	ops_pool_destroy(&p1);
	ops_pool_destroy(&p2);
	free(x);
	free(want);
}

static void set_seg(ops_w_t *w, const wset_t *s, int rows)
{
	CU_ASSERT_FATAL(w->n_seg < OPS_W_MAX_SEG && rows <= s->n);
	w->seg[w->n_seg++] = (ops_qseg_t){ w->n_out, rows, s->type, s->rb, s->rows };
	w->n_out += rows;
}

static void test_matmul_one_type(void)
{
	wsets_t ws;
	load_sets(&ws);
	for (int si = 0; si < ws.n; si++) {
		/* 40 rows: two whole panels and a partial one */
		ops_w_t w = { .n_out = 0, .n_in = ws.s[si].K, .layout = OPS_W_QROWS };
		set_seg(&w, &ws.s[si], 40);
		check_all_n(&w, 40, 1000 + (uint64_t)si);
		uint32_t t = ws.s[si].type;
		if (t == QUANT_Q8_0 || t == QUANT_Q5_0 || t == QUANT_IQ4_NL || t == QUANT_Q4_K || t == QUANT_Q5_K ||
		    t == QUANT_Q6_K) {	/* whole blocks too */
			w.qorder = QMM_BLOCKS;
			check_all_n(&w, 40, 2000 + (uint64_t)si);
		}
	}
	wsets_free(&ws);
}

static const wset_t *find_set(const wsets_t *ws, uint32_t type, int K)
{
	for (int i = 0; i < ws->n; i++)
		if (ws->s[i].type == type && (K == 0 || ws->s[i].K == K))
			return &ws->s[i];
	return NULL;
}

/* Fused matrices of several types (as q|k|v of a Q4_K_M file), segments of
 * odd lengths; and a batch large enough for the tasks of several panels. */
static void test_matmul_mixed(void)
{
	wsets_t ws;
	load_sets(&ws);
	const wset_t *q4k = find_set(&ws, QUANT_Q4_K, 256), *q6k = find_set(&ws, QUANT_Q6_K, 256);
	const wset_t *q80 = find_set(&ws, QUANT_Q8_0, 256), *q40 = find_set(&ws, QUANT_Q4_0, 256);
	const wset_t *q51 = find_set(&ws, QUANT_Q5_1, 256);
	CU_ASSERT_FATAL(q4k && q6k && q80 && q40 && q51);
	ops_w_t w = { .n_out = 0, .n_in = 256, .layout = OPS_W_QROWS };
	set_seg(&w, q4k, 21);
	set_seg(&w, q6k, 19);
	set_seg(&w, q80, 10);
	check_all_n(&w, 24, 7);
	/* Q8_0 segments only: one activation row takes the path without
	 * panels, 4 rows at a time, across segment ends and a tail of 3 */
	ops_w_t u = { .n_out = 0, .n_in = 256, .layout = OPS_W_QROWS };
	set_seg(&u, q80, 7);
	set_seg(&u, q80, 13);
	set_seg(&u, q80, 39);
	check_all_n(&u, 3, 8);
	u.qorder = QMM_BLOCKS;
	check_all_n(&u, 3, 9);
	w.qorder = QMM_BLOCKS;	/* every segment's order changes */
	check_all_n(&w, 24, 10);
	ops_w_t v = { .n_out = 0, .n_in = 256, .layout = OPS_W_QROWS };
	set_seg(&v, q40, 33);
	set_seg(&v, q51, 17);
	set_seg(&v, q6k, 48);
	int n = 100;
	size_t ldx = 256;
	float *x = make_acts(n, 256, ldx, 77);
	float *want = expected(&v, x, ldx, n);
	ops_pool_t *p2 = NULL;
	CU_ASSERT_EQUAL_FATAL(ops_pool_new(2, &p2), 0);
	CU_ASSERT_EQUAL(check_matmul(p2, false, &v, x, ldx, n, want), 0);
	CU_ASSERT_EQUAL(check_matmul(NULL, false, &v, x, ldx, n, want), 0);
	CU_ASSERT_EQUAL(check_matmul(p2, true, &v, x, ldx, n, want), 0);
	/* whole blocks: Q6_K's order changes, Q4_0's and Q5_1's do not */
	v.qorder = QMM_BLOCKS;
	float *want_b = expected(&v, x, ldx, n);
	int changed = 0;
	for (size_t i = 0; i < (size_t)n * (size_t)v.n_out; i++)
		changed += !same_bits(want[i], want_b[i]);
	CU_ASSERT(changed > 0);
	CU_ASSERT_EQUAL(check_matmul(p2, false, &v, x, ldx, n, want_b), 0);
	CU_ASSERT_EQUAL(check_matmul(NULL, false, &v, x, ldx, n, want_b), 0);
	CU_ASSERT_EQUAL(check_matmul(p2, true, &v, x, ldx, n, want_b), 0);
	free(want_b);
	ops_pool_destroy(&p2);
	free(x);
	free(want);
	wsets_free(&ws);
}

/* Rows longer than the kernels keep on the stack (per-worker heap panels). */
static void test_matmul_long_rows(void)
{
	static const uint32_t types[] = { QUANT_Q4_K, QUANT_Q8_0, QUANT_Q6_K };
	for (size_t ti = 0; ti < sizeof(types) / sizeof(types[0]); ti++) {
		int K = 8192, N = 20;
		wsets_t ws = { .n = 0 };
		size_t rb = quant_row_bytes(types[ti], K);
		uint8_t *rows = malloc(rb * (size_t)N);
		float *v = malloc((size_t)K * sizeof(float));
		CU_ASSERT_PTR_NOT_NULL_FATAL(rows);
		CU_ASSERT_PTR_NOT_NULL_FATAL(v);
		uint64_t s = 5;
		for (int r = 0; r < N; r++) {
			for (int k = 0; k < K; k++)
				v[k] = rng_gauss(&s);
			CU_ASSERT_EQUAL_FATAL(quant_quantize_row(types[ti], v, rows + (size_t)r * rb, K), 0);
		}
		wsets_add(&ws, types[ti], K, rows, N);
		ops_w_t w = { .n_out = 0, .n_in = K, .layout = OPS_W_QROWS };
		set_seg(&w, &ws.s[0], N);
		check_all_n(&w, 3, 11);
		free(rows);
		free(v);
		wsets_free(&ws);
	}
}

/* Rows of type t quantized here from Gaussian values (n rows of K). */
static void make_rows(wsets_t *ws, uint32_t t, int K, int n, uint64_t seed)
{
	size_t rb = quant_row_bytes(t, K);
	uint8_t *rows = malloc(rb * (size_t)n);
	float *v = malloc((size_t)K * sizeof(float));
	CU_ASSERT_PTR_NOT_NULL_FATAL(rows);
	CU_ASSERT_PTR_NOT_NULL_FATAL(v);
	uint64_t s = seed;
	for (int r = 0; r < n; r++) {
		for (int k = 0; k < K; k++)
			v[k] = 0.02f * rng_gauss(&s);
		CU_ASSERT_EQUAL_FATAL(quant_quantize_row(t, v, rows + (size_t)r * rb, K), 0);
	}
	wsets_add(ws, t, K, rows, n);
	free(rows);
	free(v);
}

/* Enough activation rows for tasks of several panels (straddling
 * segments of three types) run against chunks of the rows, with rows long
 * enough for panels on the heap. */
static void test_matmul_many_rows(void)
{
	static const int Ks[] = { 512, 2048 };
	for (size_t ki = 0; ki < sizeof(Ks) / sizeof(Ks[0]); ki++) {
		int K = Ks[ki], n = 150;
		wsets_t ws = { .n = 0 };
		make_rows(&ws, QUANT_Q4_K, K, 100, 1);
		make_rows(&ws, QUANT_Q8_0, K, 77, 2);
		make_rows(&ws, QUANT_Q6_K, K, 50, 3);
		ops_w_t w = { .n_out = 0, .n_in = K, .layout = OPS_W_QROWS };
		for (int i = 0; i < 3; i++)
			set_seg(&w, &ws.s[i], ws.s[i].n);
		size_t ldx = (size_t)K;
		float *x = make_acts(n, K, ldx, 31);
		float *want = expected(&w, x, ldx, n);
		ops_pool_t *p2 = NULL;
		CU_ASSERT_EQUAL_FATAL(ops_pool_new(2, &p2), 0);
		CU_ASSERT_EQUAL(check_matmul(p2, false, &w, x, ldx, n, want), 0);
		CU_ASSERT_EQUAL(check_matmul(NULL, false, &w, x, ldx, n, want), 0);
		CU_ASSERT_EQUAL(check_matmul(p2, false, &w, x, ldx, 70, want), 0);
		ops_pool_destroy(&p2);
		free(x);
		free(want);
		wsets_free(&ws);
	}
}

/* ---- quantization of the activations ---- */

static uint16_t f16_bits(float f)
{
	return mg_f32_to_f16(f);
}

static float f16r(float f)
{
	return mg_f16_to_f32(f16_bits(f));
}

/* qmm.h's definitions, written again. */
static void ref_quantize(enum qmm_act a, const float *x, void *dst, int K)
{
	if (a == QMM_A8_0 || a == QMM_A8_1) {
		for (int b = 0; b < K / 32; b++) {
			const float *xb = x + 32 * b;
			float amax = 0.0f;
			for (int i = 0; i < 32; i++)
				amax = fmaxf(amax, fabsf(xb[i]));
			float d = amax / 127.0f, id = amax != 0.0f ? 127.0f / amax : 0.0f;
			int8_t qs[32];
			int sum = 0;
			for (int i = 0; i < 32; i++) {
				qs[i] = (int8_t)nearbyintf(xb[i] * id);
				sum += qs[i];
			}
			if (a == QMM_A8_0) {
				t_a8_0_t *o = (t_a8_0_t *)dst + b;
				o->d = f16r(d);
				memcpy(o->qs, qs, 32);
			} else {
				t_a8_1_t *o = (t_a8_1_t *)dst + b;
				o->d = f16r(d);
				o->s = f16r(d * (float)sum);
				memcpy(o->qs, qs, 32);
			}
		}
		return;
	}
	for (int b = 0; b < K / 256; b++) {
		const float *xb = x + 256 * b;
		t_a8_k_t *o = (t_a8_k_t *)dst + b;
		memset(o, 0, sizeof(*o));
		float amax = 0.0f, max = 0.0f;
		for (int i = 0; i < 256; i++)
			if (fabsf(xb[i]) > amax) {
				amax = fabsf(xb[i]);
				max = xb[i];
			}
		if (amax == 0.0f)
			continue;
		float scale = -127.0f / max;
		for (int i = 0; i < 256; i++) {
			float v = nearbyintf(scale * xb[i]);
			o->qs[i] = (int8_t)(v < 127.0f ? v : 127.0f);
			o->bsums[i / 16] = (int16_t)(o->bsums[i / 16] + o->qs[i]);
		}
		o->d = 1.0f / scale;
	}
}

static void check_quantize(const float *x, int K, const char *what)
{
	for (int a = 0; a < QMM_N_ACT; a++) {
		size_t nb = qmm_act_row_bytes((enum qmm_act)a, K);
		if (nb == 0)
			continue;
		uint8_t *got = calloc(1, nb), *gen = calloc(1, nb), *want = calloc(1, nb);
		CU_ASSERT_PTR_NOT_NULL_FATAL(got);
		CU_ASSERT_PTR_NOT_NULL_FATAL(gen);
		CU_ASSERT_PTR_NOT_NULL_FATAL(want);
		qmm_quantize((enum qmm_act)a, x, got, K);
		qmm_generic_quantize((enum qmm_act)a, x, gen, K);
		ref_quantize((enum qmm_act)a, x, want, K);
		if (memcmp(got, want, nb) != 0)
			fprintf(stderr, "\nquantize %d of %s differs\n", a, what);
		CU_ASSERT(memcmp(got, want, nb) == 0);
		CU_ASSERT(memcmp(gen, want, nb) == 0);
		free(got);
		free(gen);
		free(want);
	}
}

static void test_quantize(void)
{
	int K = 1024;
	float *x = malloc((size_t)K * sizeof(float));
	CU_ASSERT_PTR_NOT_NULL_FATAL(x);
	for (int kind = 0; kind < N_ACT_KINDS; kind++)
		for (uint64_t seed = 1; seed <= 4; seed++) {
			make_act(x, K, kind, seed);
			check_quantize(x, K, "random");
		}
	/* ties: with amax 127 (A8_0's 127 / amax is 1) and a largest value of
	 * -127 (A8_K's -127 / max is 1), x * scale is x, halves included */
	for (int i = 0; i < K; i++)
		x[i] = (float)((i % 29) - 14) + 0.5f;
	for (int b = 0; b < K / 32; b++)
		x[32 * b + 5] = -127.0f;
	check_quantize(x, K, "ties");
	int8_t q[32];
	t_a8_0_t a0[32];
	qmm_quantize(QMM_A8_0, x, a0, K);
	memcpy(q, a0[0].qs, 32);
	CU_ASSERT_EQUAL(q[0], -14);	/* -13.5 -> -14 */
	CU_ASSERT_EQUAL(q[1], -12);	/* -12.5 -> -12 */
	CU_ASSERT_EQUAL(q[14], 0);	/* 0.5 -> 0 */
	CU_ASSERT_EQUAL(q[15], 2);	/* 1.5 -> 2 */
	/* the first of two largest magnitudes sets A8_K's sign */
	for (int i = 0; i < K; i++)
		x[i] = 0.25f * (float)(i % 7);
	x[3] = 9.0f;
	x[200] = -9.0f;
	check_quantize(x, K, "first max");
	x[3] = -9.0f;
	x[200] = 9.0f;
	check_quantize(x, K, "first max, other sign");
	/* all-zero blocks among others */
	for (int i = 0; i < 512; i++)
		x[i] = 0.0f;
	check_quantize(x, K, "zero blocks");
	free(x);
}

/* ---- the float order ---- */

/* Q8_0 and Q4_0 dots written from qmm.h / qmm.c's definition: per block
 * the integer sums of lane k (positions i with (i mod 32) / 4 == k), f32
 * fma into 8 lanes by (dw * da); lanes summed (l+l+4), (l+l+2), (l+l+1);
 * Q4_0, and Q8_0 in QMM_BLOCKS, one accumulator over whole-block sums.
 * wrong = true: another order (sequential lanes, or lanes for whole
 * blocks). */
static float my_dot(uint32_t type, enum qmm_order o, const uint8_t *row, const t_a8_0_t *a, int K, bool wrong)
{
	bool lanes = (type == QUANT_Q8_0 && o == QMM_LLAMA) != wrong;
	float acc[8] = { 0 }, acc1 = 0.0f;
	int bb = quant_block_bytes(type);
	for (int b = 0; b < K / 32; b++) {
		const uint8_t *blk = row + (size_t)b * (size_t)bb;
		uint16_t h;
		memcpy(&h, blk, 2);
		int32_t lane[8] = { 0 };
		for (int i = 0; i < 32; i++) {
			int wq = type == QUANT_Q8_0 ? (int8_t)blk[2 + i]
				 : (i < 16 ? (blk[2 + i] & 0xf) : (blk[2 + i - 16] >> 4)) - 8;
			lane[(i % 32) / 4] += wq * a[b].qs[i];
		}
		float dd = mg_f16_to_f32(h) * a[b].d;
		if (lanes) {
			for (int k = 0; k < 8; k++)
				acc[k] = fmaf(dd, (float)lane[k], acc[k]);
		} else {
			int32_t all = 0;
			for (int k = 0; k < 8; k++)
				all += lane[k];
			acc1 = fmaf((float)all, dd, acc1);
		}
	}
	if (!lanes)
		return acc1;
	if (wrong && type == QUANT_Q8_0) {
		float r = 0.0f;
		for (int k = 0; k < 8; k++)
			r += acc[k];
		return r;
	}
	return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

static void test_float_order(void)
{
	static const uint32_t types[] = { QUANT_Q8_0, QUANT_Q4_0, QUANT_Q8_0 };
	static const enum qmm_order orders[] = { QMM_LLAMA, QMM_LLAMA, QMM_BLOCKS };
	int K = 1024;
	float *w = malloc((size_t)K * sizeof(float)), *x = malloc((size_t)K * sizeof(float));
	uint8_t *row = malloc(quant_row_bytes(QUANT_Q8_0, K));
	t_a8_0_t *a = malloc((size_t)(K / 32) * sizeof(t_a8_0_t));
	CU_ASSERT_PTR_NOT_NULL_FATAL(w);
	CU_ASSERT_PTR_NOT_NULL_FATAL(x);
	CU_ASSERT_PTR_NOT_NULL_FATAL(row);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	for (size_t ti = 0; ti < 3; ti++) {
		int differ = 0;
		for (uint64_t seed = 1; seed <= 40; seed++) {
			uint64_t s = seed;
			/* scales spread over decades, so that the orders round differently */
			for (int i = 0; i < K; i++) {
				float sc = powf(10.0f, (float)((i / 32 * 7 + (int)seed) % 9) - 4.0f);
				w[i] = rng_gauss(&s) * sc;
				x[i] = rng_gauss(&s) * (i % 32 < 8 ? 50.0f : 0.01f);
			}
			CU_ASSERT_EQUAL_FATAL(quant_quantize_row(types[ti], w, row, K), 0);
			qmm_quantize(QMM_A8_0, x, a, K);
			enum qmm_order o = orders[ti];
			float got = qmm_dot(types[ti], o, row, a, K);
			float gen = qmm_generic_dot(types[ti], o, row, a, K);
			float def = my_dot(types[ti], o, row, a, K, false), other = my_dot(types[ti], o, row, a, K, true);
			CU_ASSERT(same_bits(got, def));
			CU_ASSERT(same_bits(gen, def));
			differ += !same_bits(def, other);
		}
		/* the data tells the orders apart, so the checks above bite */
		CU_ASSERT(differ >= 10);
	}
	free(w);
	free(x);
	free(row);
	free(a);
}

const cu_test_t qmm_tests[] = {
	{ "kernel name and formats", test_kernel_name },
	{ "every type has rows", test_types_covered },
	{ "dot == ref == portable, bit for bit", test_dot_bits },
	{ "dot close to the float64 dot", test_dot_close_to_f64 },
	{ "matmul == per-row dots, n = 1..40, threads", test_matmul_one_type },
	{ "matmul over mixed segments, n = 100", test_matmul_mixed },
	{ "matmul with long rows", test_matmul_long_rows },
	{ "matmul with many activation rows", test_matmul_many_rows },
	{ "quantize == definition (ties, zero blocks)", test_quantize },
	{ "the float order is the defined one", test_float_order },
	{ NULL, NULL },
};
