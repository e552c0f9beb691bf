/* bench-qmm: time of qmm_matmul (quantized weights, llama.cpp's
 * arithmetic) against ops_matmul on the same shape in f32 panels, per
 * weight type, layer shape, batch and thread count. Prints figures; it
 * never passes or fails.
 *
 *   bench-qmm [--threads 1,2] [--batch 1,8,32,128] [--types q8_0,q4_0,q4_k,q6_k]
 *             [--shapes llama-110m|N:K,...] [--ms 300] [--cpu] [--order llama|blocks]
 *
 * Each figure is the median of runs of one call, repeated for --ms
 * milliseconds. GMAC/s counts n x N x K multiply-adds. --cpu times with
 * the process's CPU clock instead of the wall clock: steadier on a shared
 * machine, meaningful with --threads 1 only (pool threads spin). --order
 * blocks: Q5_0, Q8_0, IQ4_NL, Q4_K, Q5_K and Q6_K blocks summed whole (qmm.h
 * QMM_BLOCKS). */
#include "worker/ops.h"
#include "worker/qmm.h"
#include "worker/quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static clockid_t clock_id = CLOCK_MONOTONIC;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(clock_id, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng = 88172645463325252ull;

static float gauss(void)
{
	double u = 0;
	for (int i = 0; i < 12; i++) {
		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		u += (double)(rng >> 11) * 0x1p-53;
	}
	return (float)(u - 6.0);
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

typedef struct timed {
	ops_pool_t *p;
	float *y;
	const float *x;
	const ops_w_t *w;
	int n;
	void *ws;	/* NULL: ops_matmul */
} timed_t;

static void call(const timed_t *t)
{
	if (t->ws != NULL)
		qmm_matmul(t->p, t->y, (size_t)t->w->n_out, t->x, (size_t)t->w->n_in, t->w, t->n, t->ws);
	else
		ops_matmul(t->p, t->y, (size_t)t->w->n_out, t->x, (size_t)t->w->n_in, t->w, t->n);
}

/* Median seconds per call over about ms milliseconds. */
static double median_time(const timed_t *t, double ms)
{
	double ts[4096];
	int k = 0;
	call(t);
	double end = now_s() + ms / 1e3;
	while (k < 4096 && (k < 5 || now_s() < end)) {
		double t0 = now_s();
		call(t);
		ts[k++] = now_s() - t0;
	}
	qsort(ts, (size_t)k, sizeof(double), cmp_d);
	return ts[k / 2];
}

static int parse_list(const char *s, int *out, int max)
{
	int n = 0;
	while (*s != '\0' && n < max) {
		out[n++] = atoi(s);
		const char *c = strchr(s, ',');
		if (c == NULL)
			break;
		s = c + 1;
	}
	return n;
}

static const struct qtype {
	const char *name;
	uint32_t type;
} qtypes[] = {
	{ "q4_0", QUANT_Q4_0 }, { "q4_1", QUANT_Q4_1 }, { "q5_0", QUANT_Q5_0 }, { "q5_1", QUANT_Q5_1 },
	{ "q8_0", QUANT_Q8_0 }, { "q2_k", QUANT_Q2_K }, { "q3_k", QUANT_Q3_K }, { "q4_k", QUANT_Q4_K },
	{ "q5_k", QUANT_Q5_K }, { "q6_k", QUANT_Q6_K }, { "iq4_nl", QUANT_IQ4_NL }, { "iq4_xs", QUANT_IQ4_XS },
};

/* The type named at the start of s (up to a comma); 0 if none. */
static uint32_t type_of(const char *s)
{
	size_t len = strcspn(s, ",");
	for (size_t i = 0; i < sizeof(qtypes) / sizeof(qtypes[0]); i++)
		if (strlen(qtypes[i].name) == len && strncmp(s, qtypes[i].name, len) == 0)
			return qtypes[i].type;
	return 0;
}

static const char *type_name(uint32_t t)
{
	for (size_t i = 0; i < sizeof(qtypes) / sizeof(qtypes[0]); i++)
		if (qtypes[i].type == t)
			return qtypes[i].name;
	return "?";
}

int main(int argc, char **argv)
{
	int threads[8] = { 1, 2 }, nt = 2, batch[16] = { 1, 8, 32, 128 }, nbt = 4;
	uint32_t types[16] = { QUANT_Q8_0, QUANT_Q4_0, QUANT_Q4_K, QUANT_Q6_K };
	int ntypes = 4;
	/* llama-110m: q|k|v, attn_output, gate|up, ffn_down, output */
	int shapes[16][2] = { { 2304, 768 }, { 768, 768 }, { 4096, 768 }, { 768, 2048 }, { 32000, 768 } };
	int nsh = 5;
	double ms = 300;
	enum qmm_order order = QMM_LLAMA;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
		if (strcmp(a, "--threads") == 0) {
			nt = parse_list(v, threads, 8);
			i++;
		} else if (strcmp(a, "--batch") == 0) {
			nbt = parse_list(v, batch, 16);
			i++;
		} else if (strcmp(a, "--order") == 0 && (strcmp(v, "llama") == 0 || strcmp(v, "blocks") == 0)) {
			order = strcmp(v, "blocks") == 0 ? QMM_BLOCKS : QMM_LLAMA;
			i++;
		} else if (strcmp(a, "--cpu") == 0) {
			clock_id = CLOCK_PROCESS_CPUTIME_ID;
		} else if (strcmp(a, "--ms") == 0) {
			ms = atof(v);
			i++;
		} else if (strcmp(a, "--types") == 0) {
			ntypes = 0;
			for (const char *s = v; s != NULL && *s != '\0' && ntypes < 16;) {
				uint32_t t = type_of(s);
				if (t == 0) {
					fprintf(stderr, "bench-qmm: unknown type at %s\n", s);
					return 2;
				}
				types[ntypes++] = t;
				s = strchr(s, ',');
				s = s != NULL ? s + 1 : NULL;
			}
			i++;
		} else if (strcmp(a, "--shapes") == 0) {
			if (strcmp(v, "llama-110m") != 0) {
				nsh = 0;
				for (const char *s = v; s != NULL && *s != '\0' && nsh < 16; nsh++) {
					if (sscanf(s, "%d:%d", &shapes[nsh][0], &shapes[nsh][1]) != 2) {
						fprintf(stderr, "bench-qmm: bad shape at %s\n", s);
						return 2;
					}
					s = strchr(s, ',');
					s = s != NULL ? s + 1 : NULL;
				}
			}
			i++;
		} else {
			fprintf(stderr, "usage: bench-qmm [--threads 1,2] [--batch 1,8,32,128] "
				"[--types q8_0,q4_0,q4_k,q6_k] [--shapes llama-110m|N:K,...] [--ms 300] [--cpu] [--order llama|blocks]\n");
			return strcmp(a, "--help") == 0 ? 0 : 2;
		}
	}
	int max_n = 0;
	for (int i = 0; i < nbt; i++)
		max_n = batch[i] > max_n ? batch[i] : max_n;
	printf("qmm kernels: %s; ops kernels: %s; median of %.0f ms per figure\n", qmm_kernel_name(),
	       ops_kernel_name(), ms);
	printf("%-6s %6s %6s %4s %3s %10s %9s %10s %9s %7s\n", "type", "N", "K", "n", "thr", "qmm ms", "GMAC/s",
	       "f32 ms", "GMAC/s", "f32/qmm");
	for (int si = 0; si < nsh; si++) {
		int N = shapes[si][0], K = shapes[si][1];
		float *x = malloc((size_t)max_n * (size_t)K * sizeof(float));
		float *y = malloc((size_t)max_n * (size_t)N * sizeof(float));
		float *wf = malloc((size_t)N * (size_t)K * sizeof(float));
		void *ws = aligned_alloc(64, (qmm_ws_bytes(max_n, K) + 63) / 64 * 64);
		if (x == NULL || y == NULL || wf == NULL || ws == NULL)
			return 1;
		for (size_t i = 0; i < (size_t)max_n * (size_t)K; i++)
			x[i] = gauss();
		for (size_t i = 0; i < (size_t)N * (size_t)K; i++)
			wf[i] = 0.02f * gauss();
		ops_w_t f32 = { 0 };
		if (ops_w_alloc(&f32, OPS_W_PACKED, N, K) < 0)
			return 1;
		ops_w_set_rows(&f32, 0, N, wf);
		for (int ti = 0; ti < ntypes; ti++) {
			uint32_t t = types[ti];
			size_t rb = quant_row_bytes(t, K);
			if (rb == 0)
				continue;
			uint8_t *q = malloc(rb * (size_t)N);
			if (q == NULL)
				return 1;
			for (int r = 0; r < N; r++)
				if (quant_quantize_row(t, wf + (size_t)r * (size_t)K, q + (size_t)r * rb, K) < 0)
					return 1;
			ops_w_t w = { .n_out = N, .n_in = K, .layout = OPS_W_QROWS, .n_seg = 1, .qorder = (int)order };
			w.seg[0] = (ops_qseg_t){ 0, N, t, rb, q };
			for (int hi = 0; hi < nt; hi++) {
				ops_pool_t *p = NULL;
				if (ops_pool_new(threads[hi], &p) < 0)
					return 1;
				for (int bi = 0; bi < nbt; bi++) {
					int n = batch[bi];
					timed_t tq = { p, y, x, &w, n, ws }, tf = { p, y, x, &f32, n, NULL };
					double sq = median_time(&tq, ms), sf = median_time(&tf, ms);
					double mac = (double)n * N * K;
					printf("%-6s %6d %6d %4d %3d %10.3f %9.1f %10.3f %9.1f %7.2f\n",
					       type_name(t),
					       N, K, n, threads[hi], sq * 1e3, mac / sq / 1e9, sf * 1e3, mac / sf / 1e9,
					       sf / sq);
					fflush(stdout);
				}
				ops_pool_destroy(&p);
			}
			free(q);
		}
		ops_w_free(&f32);
		free(x);
		free(y);
		free(wf);
		free(ws);
	}
	return 0;
}
