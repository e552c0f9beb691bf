/* bench-kernels: the measurements behind docs/kernels.md. Prints figures,
 * never passes or fails.
 *
 *   1. batch invariance: does row i of Y = X . W^T come out with the same
 *      bits when the call has M rows as when it has 64? (packed kernel,
 *      OpenBLAS sgemm, OpenBLAS sgemv for one row)
 *   2. GFLOP/s per layer shape of the llama-110m model and batch size, for
 *      the packed kernel and OpenBLAS, weights cold (cycled through more
 *      copies than the caches hold, as in a real step)
 *   3. fused q|k|v and gate|up matrices against separate calls
 *
 * usage: bench-kernels [--threads N] [--reps R] [--quick] */
#include "worker/ops.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static uint64_t rng = 1;
static float frand(void)
{
	rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
	return (float)((double)(rng >> 40) / (double)(1 << 24) * 2.0 - 1.0);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* A matrix in both layouts, in enough copies that a sweep over them does
 * not fit in the 32 MiB L3: every call reads its weights from memory. */
typedef struct mats {
	int N, K, copies;
	ops_w_t *packed, *rowmajor;
} mats_t;

static void mats_init(mats_t *m, int N, int K)
{
	size_t bytes = (size_t)N * K * sizeof(float);
	m->N = N;
	m->K = K;
	m->copies = (int)((128u << 20) / bytes) + 2;
	m->packed = calloc((size_t)m->copies, sizeof(ops_w_t));
	m->rowmajor = calloc((size_t)m->copies, sizeof(ops_w_t));
	float *w = malloc(bytes);
	for (size_t i = 0; i < (size_t)N * K; i++)
		w[i] = frand() * 0.05f;
	for (int c = 0; c < m->copies; c++) {
		if (ops_w_alloc(&m->packed[c], OPS_W_PACKED, N, K) < 0 ||
		    ops_w_alloc(&m->rowmajor[c], OPS_W_ROWMAJOR, N, K) < 0) {
			fprintf(stderr, "out of memory\n");
			exit(1);
		}
		ops_w_set_rows(&m->packed[c], 0, N, w);
		ops_w_set_rows(&m->rowmajor[c], 0, N, w);
	}
	free(w);
}

static void mats_done(mats_t *m)
{
	for (int c = 0; c < m->copies; c++) {
		ops_w_free(&m->packed[c]);
		ops_w_free(&m->rowmajor[c]);
	}
	free(m->packed);
	free(m->rowmajor);
}

/* Median seconds per call of Y[n] = X[n] . W^T over the copies. */
static double time_calls(ops_pool_t *pool, const ops_w_t *ws, int copies, const float *x,
			 float *y, int n, int reps)
{
	double flop = 2.0 * n * ws[0].n_out * ws[0].n_in;
	int calls = (int)(0.05e9 / flop * 50) + copies;	/* ~50 ms of work at 50 GFLOP/s */
	if (calls > 4000)
		calls = 4000;
	double *t = malloc((size_t)reps * sizeof(double));
	for (int r = 0; r < reps; r++) {
		double t0 = now();
		for (int c = 0; c < calls; c++)
			ops_matmul(pool, y, (size_t)ws[0].n_out, x, (size_t)ws[0].n_in, &ws[c % copies], n);
		t[r] = (now() - t0) / calls;
	}
	qsort(t, (size_t)reps, sizeof(double), cmp_double);
	double med = t[reps / 2];
	free(t);
	return med;
}

static void invariance(ops_pool_t *pool)
{
	static const int shapes[][2] = { { 768, 768 }, { 2048, 768 }, { 768, 2048 }, { 2304, 768 } };
	printf("## 1. batch invariance: row i of an M-row call vs the same row in a 64-row call\n\n");
	printf("| N x K | packed: M in 1..64 with a differing row | OpenBLAS sgemm: same | OpenBLAS sgemv (M=1) |\n");
	printf("|---|---|---|---|\n");
	for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
		int N = shapes[s][0], K = shapes[s][1];
		mats_t m;
		mats_init(&m, N, K);
		float *x = malloc((size_t)64 * K * sizeof(float));
		float *ref_p = malloc((size_t)64 * N * sizeof(float)), *ref_b = malloc((size_t)64 * N * sizeof(float));
		float *y = malloc((size_t)64 * N * sizeof(float));
		for (int i = 0; i < 64 * K; i++)
			x[i] = frand();
		ops_matmul(pool, ref_p, (size_t)N, x, (size_t)K, &m.packed[0], 64);
		ops_matmul(NULL, ref_b, (size_t)N, x, (size_t)K, &m.rowmajor[0], 64);
		int bad_p = 0, bad_b = 0;
		for (int M = 1; M <= 64; M++) {
			ops_matmul(pool, y, (size_t)N, x, (size_t)K, &m.packed[0], M);
			bad_p += memcmp(y, ref_p, (size_t)M * N * sizeof(float)) != 0;
			/* sgemm even for M = 1 */
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, x, K,
				    m.rowmajor[0].data, K, 0.0f, y, N);
			bad_b += memcmp(y, ref_b, (size_t)M * N * sizeof(float)) != 0;
		}
		cblas_sgemv(CblasRowMajor, CblasNoTrans, N, K, 1.0f, m.rowmajor[0].data, K, x, 1, 0.0f, y, 1);
		bool gemv_same = memcmp(y, ref_b, (size_t)N * sizeof(float)) == 0;
		printf("| %d x %d | %d of 64 | %d of 64 | %s |\n", N, K, bad_p, bad_b,
		       gemv_same ? "same bits" : "differs");
		free(x);
		free(ref_p);
		free(ref_b);
		free(y);
		mats_done(&m);
	}
	printf("\n");
}

static void throughput(ops_pool_t *pool, int threads, int reps, bool quick)
{
	static const struct { int N, K; const char *what; } shapes[] = {
		{ 2304, 768, "q|k|v fused" }, { 768, 768, "attn_output" }, { 4096, 768, "gate|up fused" },
		{ 768, 2048, "ffn_down" }, { 32000, 768, "output head" },
	};
	static const int ns[] = { 1, 4, 8, 16, 32, 64, 128 };
	printf("## 2. GFLOP/s, %d thread(s), weights cold (median of %d)\n\n", threads, reps);
	printf("| shape | kernel |");
	for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++)
		printf(" n=%d |", ns[i]);
	printf("\n|---|---|");
	for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++)
		printf("---|");
	printf("\n");
	for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
		if (quick && s > 1)
			break;
		mats_t m;
		mats_init(&m, shapes[s].N, shapes[s].K);
		float *x = malloc((size_t)128 * m.K * sizeof(float));
		float *y = malloc((size_t)128 * m.N * sizeof(float));
		for (int i = 0; i < 128 * m.K; i++)
			x[i] = frand();
		for (int kind = 0; kind < 2; kind++) {
			printf("| %d x %d %s | %s |", m.N, m.K, shapes[s].what,
			       kind == 0 ? "packed" : "OpenBLAS");
			for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
				int n = ns[i];
				double t = time_calls(kind == 0 ? pool : NULL, kind == 0 ? m.packed : m.rowmajor,
						      m.copies, x, y, n, reps);
				printf(" %.1f |", 2.0 * n * m.N * m.K / t / 1e9);
				fflush(stdout);
			}
			printf("\n");
		}
		free(x);
		free(y);
		mats_done(&m);
	}
	printf("\n");
}

static void fusion(ops_pool_t *pool, int reps)
{
	static const int ns[] = { 1, 8, 32, 128 };
	printf("## 3. fused matrices (packed kernel): microseconds per layer\n\n");
	printf("| what | n | separate calls | one fused call |\n|---|---|---|---|\n");
	mats_t q, qkv, g, gu;
	mats_init(&q, 768, 768);
	mats_init(&qkv, 2304, 768);
	mats_init(&g, 2048, 768);
	mats_init(&gu, 4096, 768);
	float *x = malloc((size_t)128 * 768 * sizeof(float));
	float *y = malloc((size_t)128 * 4096 * sizeof(float));
	for (int i = 0; i < 128 * 768; i++)
		x[i] = frand();
	for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
		int n = ns[i];
		double sep = 3 * time_calls(pool, q.packed, q.copies, x, y, n, reps);
		double fused = time_calls(pool, qkv.packed, qkv.copies, x, y, n, reps);
		printf("| q,k,v 768x768 x3 vs 2304x768 | %d | %.0f | %.0f |\n", n, sep * 1e6, fused * 1e6);
		sep = 2 * time_calls(pool, g.packed, g.copies, x, y, n, reps);
		fused = time_calls(pool, gu.packed, gu.copies, x, y, n, reps);
		printf("| gate,up 2048x768 x2 vs 4096x768 | %d | %.0f | %.0f |\n", n, sep * 1e6, fused * 1e6);
	}
	printf("\n");
	free(x);
	free(y);
	mats_done(&q);
	mats_done(&qkv);
	mats_done(&g);
	mats_done(&gu);
}

int main(int argc, char **argv)
{
	int threads = 2, reps = 5;
	bool quick = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
			threads = atoi(argv[++i]);
		else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
			reps = atoi(argv[++i]);
		else if (strcmp(argv[i], "--quick") == 0)
			quick = true;
		else {
			fprintf(stderr, "usage: bench-kernels [--threads N] [--reps R] [--quick]\n");
			return 2;
		}
	}
	if (threads < 1 || reps < 1) {
		fprintf(stderr, "bench-kernels: --threads and --reps must be >= 1\n");
		return 2;
	}
	openblas_set_num_threads(threads);
	ops_pool_t *pool = NULL;
	if (ops_pool_new(threads, &pool) < 0) {
		fprintf(stderr, "bench-kernels: cannot start %d threads\n", threads);
		return 1;
	}
	printf("# bench-kernels: %s kernel, OpenBLAS core %s, %d thread(s)\n\n", ops_kernel_name(),
	       openblas_get_corename(), threads);
	invariance(pool);
	throughput(pool, threads, reps, quick);
	fusion(pool, reps);
	ops_pool_destroy(&pool);
	return 0;
}
