/* ops: fast kernels (AVX-512 where compiled for it, a portable C fallback
 * with the same bits otherwise) and the OpenBLAS opt-in path; the plain-C
 * reference kernels are in ops_ref.c, the thread pool in ops_pool.c. See
 * ops.h for the contracts; docs/kernels.md for the measurements behind the
 * choices. */
#include "ops.h"
#include "ops_priv.h"
#include "lib/mg_f16.h"
#include "quant.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#define OPS_AVX512 1
#else
#define OPS_AVX512 0
#endif

const char *ops_kernel_name(void)
{
	return OPS_AVX512 ? "avx512" : "generic";
}

/* ======================= weight matrices ======================= */

#define HUGE_PAGE ((size_t)2 << 20)
#define HUGE_MIN ((size_t)4 << 20)

static size_t n_panels(int n_out)
{
	return ((size_t)n_out + OPS_PANEL - 1) / OPS_PANEL;
}

/* Values a packed matrix holds: its rows padded to whole panels. */
static size_t packed_values(int n_out, int n_in)
{
	return n_panels(n_out) * OPS_PANEL * (size_t)n_in;
}

size_t ops_w_bytes(enum ops_layout layout, int n_out, int n_in)
{
	if (n_out <= 0 || n_in <= 0)
		return 0;
	switch (layout) {
	case OPS_W_PACKED: return packed_values(n_out, n_in) * sizeof(float);
	case OPS_W_ROWMAJOR: return (size_t)n_out * (size_t)n_in * sizeof(float);
	case OPS_W_QROWS: return 0;	/* depends on the types: see the segments */
	default:	/* Q8: the int8 values, then a half scale per 32 of them */
		if (n_in % 32 != 0)
			return 0;
		return packed_values(n_out, n_in) + packed_values(n_out, n_in) / 32 * sizeof(uint16_t);
	}
}

int ops_w_alloc(ops_w_t *w, enum ops_layout layout, int n_out, int n_in)
{
	size_t nb = ops_w_bytes(layout, n_out, n_in);
	if (w == NULL || nb == 0 || nb > SIZE_MAX / 2)
		return -EINVAL;
	size_t bytes = (nb + 63) / 64 * 64;
	void *d = NULL;
	if (bytes >= HUGE_MIN) {
		/* Big matrices in 2 MiB pages where the kernel offers them
		 * (transparent hugepages in madvise mode): 512x fewer page
		 * faults at load and fewer TLB misses while streaming. */
		bytes = (bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
		if (posix_memalign(&d, HUGE_PAGE, bytes) != 0)
			return -ENOMEM;
#ifdef MADV_HUGEPAGE
		(void)madvise(d, bytes, MADV_HUGEPAGE);
#endif
	} else if ((d = aligned_alloc(64, bytes)) == NULL) {
		return -ENOMEM;
	}
	memset(d, 0, bytes);
	w->n_out = n_out;
	w->n_in = n_in;
	w->layout = layout;
	w->data = d;
	w->q = NULL;
	w->d = NULL;
	if (layout == OPS_W_PACKED_Q8) {
		w->q = d;
		w->d = (uint16_t *)((int8_t *)d + packed_values(n_out, n_in));
	}
	return 0;
}

void ops_w_free(ops_w_t *w)
{
	if (w == NULL)
		return;
	free(w->data);
	w->data = NULL;
}


/* One q8 block of n values: d = amax / 127 as a half, q = x / d rounded to
 * nearest even (0 for a zero or non-finite block scale, NaN as 0). */
void ops_q8_block(const float *x, int n, int8_t *q, uint16_t *d16)
{
	float amax = 0.0f;
	for (int i = 0; i < n; i++)
		if (fabsf(x[i]) > amax)
			amax = fabsf(x[i]);
	*d16 = mg_f32_to_f16(amax / 127.0f);
	float dw = mg_f16_to_f32(*d16);
	float id = dw > 0.0f && isfinite(dw) ? 1.0f / dw : 0.0f;
	for (int i = 0; i < n; i++) {
		float r = rintf(x[i] * id);
		if (!(r >= -127.0f))	/* NaN too */
			r = r != r ? 0.0f : -127.0f;
		if (r > 127.0f)
			r = 127.0f;
		q[i] = (int8_t)r;
	}
}

/* Row j's value k and its block's scale in a Q8 matrix. */
static inline size_t q8_at(const ops_w_t *w, size_t j, size_t k)
{
	return (j / OPS_PANEL) * (size_t)w->n_in * OPS_PANEL + k * OPS_PANEL + j % OPS_PANEL;
}

static inline size_t q8_scale_at(const ops_w_t *w, size_t j, size_t k)
{
	return (j / OPS_PANEL) * ((size_t)w->n_in / 32) * OPS_PANEL + (k / 32) * OPS_PANEL + j % OPS_PANEL;
}

void ops_w_set_rows_q8(ops_w_t *w, int row0, int n_rows, const uint8_t *blocks)
{
	size_t K = (size_t)w->n_in, nb = K / 32;
	for (int r = 0; r < n_rows; r++) {
		size_t j = (size_t)row0 + (size_t)r;
		for (size_t b = 0; b < nb; b++) {
			const uint8_t *blk = blocks + ((size_t)r * nb + b) * 34;
			uint16_t d16;
			memcpy(&d16, blk, sizeof(d16));
			w->d[q8_scale_at(w, j, b * 32)] = d16;
			for (size_t i = 0; i < 32; i++)
				w->q[q8_at(w, j, b * 32 + i)] = (int8_t)blk[2 + i];
		}
	}
}

void ops_w_set_rows(ops_w_t *w, int row0, int n_rows, const float *src)
{
	size_t K = (size_t)w->n_in;
	if (w->layout == OPS_W_PACKED_Q8) {
		for (int r = 0; r < n_rows; r++)
			for (size_t b = 0; b < K / 32; b++) {
				size_t j = (size_t)row0 + (size_t)r;
				int8_t q[32];
				uint16_t d16;
				ops_q8_block(src + (size_t)r * K + b * 32, 32, q, &d16);
				w->d[q8_scale_at(w, j, b * 32)] = d16;
				for (size_t i = 0; i < 32; i++)
					w->q[q8_at(w, j, b * 32 + i)] = q[i];
			}
		return;
	}
	if (w->layout == OPS_W_ROWMAJOR) {
		memcpy(w->data + (size_t)row0 * K, src, (size_t)n_rows * K * sizeof(float));
		return;
	}
	for (int r = 0; r < n_rows; r++) {
		size_t j = (size_t)row0 + (size_t)r;
		float *panel = w->data + (j / OPS_PANEL) * K * OPS_PANEL + j % OPS_PANEL;
		const float *s = src + (size_t)r * K;
		for (size_t k = 0; k < K; k++)
			panel[k * OPS_PANEL] = s[k];
	}
}

void ops_w_get_row(const ops_w_t *w, int r, float *dst)
{
	size_t K = (size_t)w->n_in;
	if (w->layout == OPS_W_QROWS) {
		for (int i = 0; i < w->n_seg; i++) {
			const ops_qseg_t *sg = &w->seg[i];
			if (r >= sg->row0 && r < sg->row0 + sg->n_rows) {
				(void)quant_dequant_row(sg->type, sg->data + (size_t)(r - sg->row0) * sg->row_bytes,
							dst, (int64_t)K);
				return;
			}
		}
		memset(dst, 0, K * sizeof(float));
		return;
	}
	if (w->layout == OPS_W_PACKED_Q8) {
		for (size_t k = 0; k < K; k++)
			dst[k] = (float)w->q[q8_at(w, (size_t)r, k)] * mg_f16_to_f32(w->d[q8_scale_at(w, (size_t)r, k)]);
		return;
	}
	if (w->layout == OPS_W_ROWMAJOR) {
		memcpy(dst, w->data + (size_t)r * K, K * sizeof(float));
		return;
	}
	const float *panel = w->data + ((size_t)r / OPS_PANEL) * K * OPS_PANEL + (size_t)r % OPS_PANEL;
	for (size_t k = 0; k < K; k++)
		dst[k] = panel[k * OPS_PANEL];
}

/* ======================= large buffers ======================= */

static size_t big_len(size_t bytes, bool huge)
{
	size_t page = 4096;
	size_t len = (bytes + page - 1) / page * page;
	if (huge && len >= HUGE_MIN)
		len = (len + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
	return len;
}

int ops_big_alloc(size_t bytes, bool huge, void **ret)
{
	if (bytes == 0 || bytes > SIZE_MAX / 2 || ret == NULL)
		return -EINVAL;
	size_t len = big_len(bytes, huge);
	if (!huge || len < HUGE_MIN) {
		void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			return -ENOMEM;
#ifdef MADV_NOHUGEPAGE
		if (!huge)	/* also where the system's THP mode is "always" */
			(void)madvise(p, len, MADV_NOHUGEPAGE);
#endif
		*ret = p;
		return 0;
	}
	/* over-map by one huge page, then cut the head and the tail so that
	 * the buffer starts on a 2 MiB boundary */
	size_t map = len + HUGE_PAGE;
	char *b = mmap(NULL, map, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (b == MAP_FAILED)
		return -ENOMEM;
	char *a = (char *)(((uintptr_t)b + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
	if (a > b)
		munmap(b, (size_t)(a - b));
	if (b + map > a + len)
		munmap(a + len, (size_t)(b + map - (a + len)));
#ifdef MADV_HUGEPAGE
	(void)madvise(a, len, MADV_HUGEPAGE);
#endif
	*ret = a;
	return 0;
}

void ops_big_free(void *p, size_t bytes, bool huge)
{
	if (p != NULL && bytes > 0)
		munmap(p, big_len(bytes, huge));
}

/* ======================= packed matmul ======================= */

/* Rows per register tile. With 4 vectors of 16 columns per panel this keeps
 * 24 accumulators + 4 weight vectors + 1 broadcast in the 32 zmm registers:
 * per k step 4 loads and 6 broadcasts feed 24 FMAs. */
#define TILE_ROWS 6

/* Prefetch of the next panel while this one is computed: which lines a
 * tile asks for, pf_step per k step, from pf up to pf_end. */
typedef struct pf_range {
	const char *pf, *pf_end;
	int pf_step;
} pf_range_t;

#if OPS_AVX512
/* One panel (64 columns, ncols of them real) for R rows of x. cont: the
 * fma chains go on from the partial sums in y (a float stored and
 * reloaded is exact, so a K split into chunks gives the same bits). */
static inline __attribute__((always_inline)) void
panel_tile(const float *x, size_t ldx, const float *wp, float *y, size_t ldy, int K,
	   int ncols, pf_range_t pr, bool cont, const int R)
{
	__m512 acc[TILE_ROWS][4];
#pragma GCC unroll 8
	for (int i = 0; i < R; i++)
#pragma GCC unroll 4
		for (int v = 0; v < 4; v++) {
			int c = ncols - 16 * v;
			__mmask16 m = c >= 16 ? (__mmask16)0xffff : c > 0 ? (__mmask16)((1u << c) - 1) : 0;
			acc[i][v] = cont ? _mm512_maskz_loadu_ps(m, y + (size_t)i * ldy + 16 * v) : _mm512_setzero_ps();
		}
	const float *w = wp;
	for (int k = 0; k < K; k++, w += OPS_PANEL) {
		if (pr.pf < pr.pf_end) {
			for (int q = 0; q < pr.pf_step; q++)
				_mm_prefetch(pr.pf + 64 * q, _MM_HINT_T0);
			pr.pf += 64 * pr.pf_step;
		}
		__m512 w0 = _mm512_load_ps(w);
		__m512 w1 = _mm512_load_ps(w + 16);
		__m512 w2 = _mm512_load_ps(w + 32);
		__m512 w3 = _mm512_load_ps(w + 48);
#pragma GCC unroll 8
		for (int i = 0; i < R; i++) {
			__m512 xb = _mm512_set1_ps(x[(size_t)i * ldx + (size_t)k]);
			acc[i][0] = _mm512_fmadd_ps(xb, w0, acc[i][0]);
			acc[i][1] = _mm512_fmadd_ps(xb, w1, acc[i][1]);
			acc[i][2] = _mm512_fmadd_ps(xb, w2, acc[i][2]);
			acc[i][3] = _mm512_fmadd_ps(xb, w3, acc[i][3]);
		}
	}
	if (ncols == OPS_PANEL) {
#pragma GCC unroll 8
		for (int i = 0; i < R; i++)
#pragma GCC unroll 4
			for (int v = 0; v < 4; v++)
				_mm512_storeu_ps(y + (size_t)i * ldy + 16 * v, acc[i][v]);
	} else {
		for (int i = 0; i < R; i++)
			for (int v = 0; v < 4; v++) {
				int c = ncols - 16 * v;
				if (c <= 0)
					break;
				__mmask16 m = c >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << c) - 1);
				_mm512_mask_storeu_ps(y + (size_t)i * ldy + 16 * v, m, acc[i][v]);
			}
	}
}

static void panel_rows(const float *x, size_t ldx, const float *wp, float *y, size_t ldy,
		       int K, int ncols, int r, pf_range_t pr, bool cont)
{
	switch (r) {
	case 6: panel_tile(x, ldx, wp, y, ldy, K, ncols, pr, cont, 6); break;
	case 5: panel_tile(x, ldx, wp, y, ldy, K, ncols, pr, cont, 5); break;
	case 4: panel_tile(x, ldx, wp, y, ldy, K, ncols, pr, cont, 4); break;
	case 3: panel_tile(x, ldx, wp, y, ldy, K, ncols, pr, cont, 3); break;
	case 2: panel_tile(x, ldx, wp, y, ldy, K, ncols, pr, cont, 2); break;
	default: panel_tile(x, ldx, wp, y, ldy, K, ncols, pr, cont, 1); break;
	}
}
#else
/* Portable: the same fma chain per element, so the same bits. */
static void panel_rows(const float *x, size_t ldx, const float *wp, float *y, size_t ldy,
		       int K, int ncols, int r, pf_range_t pr, bool cont)
{
	(void)pr;
	for (int i = 0; i < r; i++) {
		float acc[OPS_PANEL];
		for (int c = 0; c < OPS_PANEL; c++)
			acc[c] = cont && c < ncols ? y[(size_t)i * ldy + (size_t)c] : 0.0f;
		const float *xi = x + (size_t)i * ldx;
		for (int k = 0; k < K; k++) {
			const float *w = wp + (size_t)k * OPS_PANEL;
			float xv = xi[k];
			for (int c = 0; c < OPS_PANEL; c++)
				acc[c] = fmaf(xv, w[c], acc[c]);
		}
		memcpy(y + (size_t)i * ldy, acc, (size_t)ncols * sizeof(float));
	}
}
#endif

typedef struct mm_job {
	float *y;
	size_t ldy;
	const float *x;
	size_t ldx;
	const ops_w_t *w;
	int n;
} mm_job_t;

/* Panel p for all n rows; next (or -1) is the panel this thread computes
 * after it. */
static void mm_panel(const mm_job_t *j, int p, int next)
{
	int K = j->w->n_in, N = j->w->n_out;
	const float *wp = j->w->data + (size_t)p * (size_t)K * OPS_PANEL;
	int ncols = N - p * OPS_PANEL < OPS_PANEL ? N - p * OPS_PANEL : OPS_PANEL;
	float *yp = j->y + (size_t)p * OPS_PANEL;
	/* The next panel comes from DRAM while this one is computed: its
	 * 4 K cache lines (256 bytes per k) are prefetched in equal shares by
	 * this panel's row tiles, step lines per k step. Without it the
	 * first tile of each panel waited on the whole panel (192 KiB at K =
	 * 768) and the other tiles found it in L2: 32 rows ran at 130
	 * GFLOP/s on one thread, 185 with it (the same as on weights already
	 * in cache). A single tile (n <= 6) streams at the memory rate
	 * anyway, and an extra stream only competed with it. */
	int nt = (j->n + TILE_ROWS - 1) / TILE_ROWS;
	int step = (4 + nt - 1) / nt;
	const char *nx = NULL, *nx_end = NULL;
	if (next >= 0 && nt > 1) {
		nx = (const char *)(j->w->data + (size_t)next * (size_t)K * OPS_PANEL);
		nx_end = nx + (size_t)K * OPS_PANEL * sizeof(float);
	}
	/* tiles of 6 rows, then the remainder (splitting 6 + 2 as 4 + 4
	 * measured no different) */
	for (int i = 0, t = 0; i < j->n; i += TILE_ROWS, t++) {
		int r = j->n - i < TILE_ROWS ? j->n - i : TILE_ROWS;
		pf_range_t pr = { NULL, NULL, step };
		if (nx != NULL) {
			pr.pf = nx + (size_t)t * (size_t)K * (size_t)step * 64;
			pr.pf_end = nx_end;
		}
		panel_rows(j->x + (size_t)i * j->ldx, j->ldx, wp, yp + (size_t)i * j->ldy, j->ldy, K,
			   ncols, r, pr, false);
	}
}

/* Rows of a Q8 panel widened at a time: 64 KiB of floats, in L2 while
 * every row tile of the panel uses them. */
#define Q8_CHUNK 256
/* Up to Q8_DIRECT_MAX rows of x, a Q8 panel is widened in registers
 * instead, straight into the fma chains of Q8_DIRECT_ROWS rows at a time
 * (4 x 4 accumulators, 4 weight and 4 scale vectors): a step of a few
 * sequences is bound by reading the weights, and the round trip through
 * memory cost more than widening again for each group of rows. llama-110m,
 * 2 threads, decode tok/s: batch 8 775-785 direct against 574-645 through
 * memory; batch 32 838-948 direct against 977-1000 through memory. */
#define Q8_DIRECT_ROWS 4
#define Q8_DIRECT_MAX 16

#if OPS_AVX512
/* panel_tile for a Q8 panel and R <= Q8_DIRECT_ROWS rows: the same fma
 * chains on the same (exactly widened) weights, so the same bits. */
static inline __attribute__((always_inline)) void
panel_tile_q8(const float *x, size_t ldx, const int8_t *qp, const uint16_t *dp, float *y, size_t ldy, int K,
	      int ncols, const int R)
{
	__m512 acc[Q8_DIRECT_ROWS][4];
#pragma GCC unroll 4
	for (int i = 0; i < R; i++)
#pragma GCC unroll 4
		for (int v = 0; v < 4; v++)
			acc[i][v] = _mm512_setzero_ps();
	for (int k0 = 0; k0 < K; k0 += 32) {
		const uint16_t *ds = dp + (size_t)(k0 / 32) * OPS_PANEL;
		__m512 sc[4];
#pragma GCC unroll 4
		for (int v = 0; v < 4; v++)
			sc[v] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(ds + 16 * v)));
		const int8_t *q = qp + (size_t)k0 * OPS_PANEL;
		for (int k = k0; k < k0 + 32; k++, q += OPS_PANEL) {
			__m512 w[4];
#pragma GCC unroll 4
			for (int v = 0; v < 4; v++)
				w[v] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
							     _mm_load_si128((const __m128i *)(q + 16 * v)))),
						     sc[v]);
#pragma GCC unroll 4
			for (int i = 0; i < R; i++) {
				__m512 xb = _mm512_set1_ps(x[(size_t)i * ldx + (size_t)k]);
#pragma GCC unroll 4
				for (int v = 0; v < 4; v++)
					acc[i][v] = _mm512_fmadd_ps(xb, w[v], acc[i][v]);
			}
		}
	}
#pragma GCC unroll 4
	for (int i = 0; i < R; i++)
#pragma GCC unroll 4
		for (int v = 0; v < 4; v++) {
			int c = ncols - 16 * v;
			if (c >= 16)
				_mm512_storeu_ps(y + (size_t)i * ldy + 16 * v, acc[i][v]);
			else if (c > 0)
				_mm512_mask_storeu_ps(y + (size_t)i * ldy + 16 * v, (__mmask16)((1u << c) - 1), acc[i][v]);
		}
}
#endif

/* Panel p of a Q8 matrix: K in chunks of Q8_CHUNK, each widened to floats
 * (exactly) and run through the f32 tiles, the sums carried in y. */
static void mm_panel_q8(const mm_job_t *j, int p)
{
	static _Thread_local float wbuf[Q8_CHUNK * OPS_PANEL] __attribute__((aligned(64)));
	const ops_w_t *w = j->w;
	int K = w->n_in, N = w->n_out;
	int ncols = N - p * OPS_PANEL < OPS_PANEL ? N - p * OPS_PANEL : OPS_PANEL;
	const int8_t *qp = w->q + (size_t)p * (size_t)K * OPS_PANEL;
	const uint16_t *dp = w->d + (size_t)p * (size_t)(K / 32) * OPS_PANEL;
	float *yp = j->y + (size_t)p * OPS_PANEL;
#if OPS_AVX512
	if (j->n <= Q8_DIRECT_MAX) {
		for (int i = 0; i < j->n; i += Q8_DIRECT_ROWS) {
			const float *x = j->x + (size_t)i * j->ldx;
			float *yi = yp + (size_t)i * j->ldy;
			switch (j->n - i < Q8_DIRECT_ROWS ? j->n - i : Q8_DIRECT_ROWS) {
			case 4: panel_tile_q8(x, j->ldx, qp, dp, yi, j->ldy, K, ncols, 4); break;
			case 3: panel_tile_q8(x, j->ldx, qp, dp, yi, j->ldy, K, ncols, 3); break;
			case 2: panel_tile_q8(x, j->ldx, qp, dp, yi, j->ldy, K, ncols, 2); break;
			default: panel_tile_q8(x, j->ldx, qp, dp, yi, j->ldy, K, ncols, 1); break;
			}
		}
		return;
	}
#endif
	pf_range_t none = { NULL, NULL, 0 };
	for (int k0 = 0; k0 < K; k0 += Q8_CHUNK) {
		int kc = K - k0 < Q8_CHUNK ? K - k0 : Q8_CHUNK;
		for (int k = 0; k < kc; k += 32) {
			const uint16_t *ds = dp + (size_t)((k0 + k) / 32) * OPS_PANEL;
#if OPS_AVX512
			__m512 sc[4];
			for (int v = 0; v < 4; v++)
				sc[v] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(ds + 16 * v)));
			for (int kk = k; kk < k + 32; kk++) {
				const int8_t *qk = qp + (size_t)(k0 + kk) * OPS_PANEL;
				if (kk + 64 < kc)
					_mm_prefetch((const char *)(qk + 64 * OPS_PANEL), _MM_HINT_T0);
				for (int v = 0; v < 4; v++) {
					__m512 x = _mm512_cvtepi32_ps(
						_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(qk + 16 * v))));
					_mm512_store_ps(wbuf + (size_t)kk * OPS_PANEL + 16 * v, _mm512_mul_ps(x, sc[v]));
				}
			}
#else
			for (int kk = k; kk < k + 32; kk++)
				for (int c = 0; c < OPS_PANEL; c++)
					wbuf[(size_t)kk * OPS_PANEL + c] =
						(float)qp[(size_t)(k0 + kk) * OPS_PANEL + c] * mg_f16_to_f32(ds[c]);
#endif
		}
		for (int i = 0; i < j->n; i += TILE_ROWS) {
			int r = j->n - i < TILE_ROWS ? j->n - i : TILE_ROWS;
			panel_rows(j->x + (size_t)i * j->ldx + k0, j->ldx, wbuf, yp + (size_t)i * j->ldy, j->ldy, kc,
				   ncols, r, none, k0 > 0);
		}
	}
}

static void mm_task(void *arg, int task, int next, int worker)
{
	(void)worker;
	const mm_job_t *j = arg;
	if (j->w->layout == OPS_W_PACKED_Q8)
		mm_panel_q8(j, task);
	else
		mm_panel(j, task, next);
}

void ops_matmul(ops_pool_t *p, float *y, size_t ldy, const float *x, size_t ldx,
		const ops_w_t *w, int n)
{
	if (n <= 0)
		return;
	if (w->layout == OPS_W_ROWMAJOR) {
		/* OpenBLAS (opt-in, not batch-invariant); its own threads. */
		if (n == 1)
			cblas_sgemv(CblasRowMajor, CblasNoTrans, w->n_out, w->n_in, 1.0f, w->data,
				    w->n_in, x, 1, 0.0f, y, 1);
		else
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, w->n_out, w->n_in,
				    1.0f, x, (int)ldx, w->data, w->n_in, 0.0f, y, (int)ldy);
		return;
	}
	/* one task per panel (64 x K weights), each thread on its own run of
	 * consecutive panels: the one it computes next is the one it
	 * prefetches (mm_panel) */
	mm_job_t j = { y, ldy, x, ldx, w, n };
	ops_pool_run_shares(p, mm_task, &j, (int)n_panels(w->n_out));
}

/* ======================= small kernels ======================= */

/* y[d] = fma(a, x[d], y[d]) */
static inline void axpy(float *y, float a, const float *x, int n)
{
	int d = 0;
#if OPS_AVX512
	__m512 av = _mm512_set1_ps(a);
	for (; d + 16 <= n; d += 16)
		_mm512_storeu_ps(y + d, _mm512_fmadd_ps(av, _mm512_loadu_ps(x + d), _mm512_loadu_ps(y + d)));
#endif
	for (; d < n; d++)
		y[d] = fmaf(a, x[d], y[d]);
}

/* exp(x): Cephes' expf scheme. n = round(x log2 e), r = x - n ln 2 in two
 * fma steps, a degree-5 polynomial, then 2^n exactly. About 1 ulp; the
 * scalar and the 16-lane versions do the same operations in the same
 * order, so they give the same bits. */
/* exp(x) with the arithmetic of ggml's vector expf (the scheme of Arm's
 * optimized-routines: x = n ln2 + b by a shifter constant, a degree-5
 * polynomial in b, then b scaled by 2^n), so that softmax and silu round as
 * llama.cpp's do. n beyond +-192: 0 or inf. */
#define GEXP_SHIFT 0x1.8p23f
#define GEXP_LOG2E 0x1.715476p+0f
#define GEXP_LN2_HI 0x1.62e4p-1f
#define GEXP_LN2_LO 0x1.7f7d1cp-20f
#define GEXP_C1 0x1.ffffecp-1f
#define GEXP_C2 0x1.fffdb6p-2f
#define GEXP_C3 0x1.555e66p-3f
#define GEXP_C4 0x1.573e2ep-5f
#define GEXP_C5 0x1.0e4020p-7f

float ops_expf(float x)
{
	float z = fmaf(x, GEXP_LOG2E, GEXP_SHIFT);
	float n = z - GEXP_SHIFT;
	float b = fmaf(-n, GEXP_LN2_LO, fmaf(-n, GEXP_LN2_HI, x));
	float u = b * b;
	float j = fmaf(fmaf(fmaf(GEXP_C5, b, GEXP_C4), u, fmaf(GEXP_C3, b, GEXP_C2)), u, fmaf(GEXP_C1, b, 1.0f));
	if (fabsf(n) > 192.0f)
		return n <= 0.0f ? 0.0f : INFINITY;
	return ldexpf(j, (int)n);
}

#if OPS_AVX512
static inline __m512 exp16(__m512 x)
{
	const __m512 r = _mm512_set1_ps(GEXP_SHIFT);
	__m512 z = _mm512_fmadd_ps(x, _mm512_set1_ps(GEXP_LOG2E), r);
	__m512 n = _mm512_sub_ps(z, r);
	__m512 b = _mm512_fnmadd_ps(n, _mm512_set1_ps(GEXP_LN2_LO),
				    _mm512_fnmadd_ps(n, _mm512_set1_ps(GEXP_LN2_HI), x));
	__mmask16 big = _mm512_cmp_ps_mask(_mm512_abs_ps(n), _mm512_set1_ps(192.0f), _CMP_GT_OQ);
	__m512 u = _mm512_mul_ps(b, b);
	__m512 j = _mm512_fmadd_ps(
		_mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_set1_ps(GEXP_C5), b, _mm512_set1_ps(GEXP_C4)), u,
				_mm512_fmadd_ps(_mm512_set1_ps(GEXP_C3), b, _mm512_set1_ps(GEXP_C2))),
		u, _mm512_fmadd_ps(_mm512_set1_ps(GEXP_C1), b, _mm512_set1_ps(1.0f)));
	__m512 res = _mm512_scalef_ps(j, n);
	if (big == 0)
		return res;
	__m512 alt = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(n, _mm512_setzero_ps(), _CMP_LE_OQ),
					  _mm512_set1_ps(INFINITY), _mm512_setzero_ps());
	return _mm512_mask_blend_ps(big, res, alt);
}
#endif

/* x[i] = exp(x[i] - sub) */
static void exp_sub(float *x, float sub, int n)
{
	int i = 0;
#if OPS_AVX512
	__m512 s = _mm512_set1_ps(sub);
	for (; i + 16 <= n; i += 16)
		_mm512_storeu_ps(x + i, exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), s)));
#endif
	for (; i < n; i++)
		x[i] = ops_expf(x[i] - sub);
}

void ops_rmsnorm(float *y, const float *x, const float *g, int dim, float eps)
{
	/* ggml's order: squares rounded to float, summed in double */
	double ss = 0.0;
	for (int i = 0; i < dim; i++)
		ss += (double)(x[i] * x[i]);
	float mean = (float)(ss / (double)dim);
	float s = 1.0f / sqrtf(mean + eps);
	for (int i = 0; i < dim; i++)
		y[i] = x[i] * s * g[i];
}

void ops_rope_table(float *cs, int pos, int rope_dim, float base, float freq_scale, const float *ff)
{
	/* ggml's recurrence in float: theta_i = pos * scale^i, scale =
	 * base^(-2 / rope_dim), each step rounded; then / ff[i] and *
	 * freq_scale; cosf and sinf of the result */
	float theta_scale = powf(base, -2.0f / (float)rope_dim);
	float theta = (float)pos;
	for (int i = 0; i < rope_dim / 2; i++) {
		float t = ff != NULL ? theta / ff[i] : theta;
		t = freq_scale * t;
		cs[2 * i] = cosf(t);
		cs[2 * i + 1] = sinf(t);
		theta *= theta_scale;
	}
}

void ops_rope(float *x, int n_heads, int head_dim, int rope_dim, bool neox, const float *cs)
{
	int half = rope_dim / 2;
	for (int h = 0; h < n_heads; h++) {
		float *v = x + (size_t)h * head_dim;
		for (int i = 0; i < half; i++) {
			float c = cs[2 * i], s = cs[2 * i + 1];
			int a = neox ? i : 2 * i;
			int b = neox ? i + half : 2 * i + 1;
			float x0 = v[a], x1 = v[b];
			/* as ggml's compiled rotation rounds: one product, then
			 * an fma */
			v[a] = fmaf(x0, c, -(x1 * s));
			v[b] = fmaf(x0, s, x1 * c);
		}
	}
}

void ops_softmax(float *x, int n)
{
	float mx = x[0];
	for (int i = 1; i < n; i++)
		if (x[i] > mx)
			mx = x[i];
	exp_sub(x, mx, n);
	float sum = 0.0f;
	for (int i = 0; i < n; i++)
		sum += x[i];
	float inv = 1.0f / sum;
	for (int i = 0; i < n; i++)
		x[i] *= inv;
}

void ops_swiglu(float *h, const float *g, const float *u, int n)
{
	int i = 0;
#if OPS_AVX512
	__m512 one = _mm512_set1_ps(1.0f);
	for (; i + 16 <= n; i += 16) {
		__m512 v = _mm512_loadu_ps(g + i);
		__m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), v));
		__m512 sv = _mm512_div_ps(v, _mm512_add_ps(one, e));
		_mm512_storeu_ps(h + i, _mm512_mul_ps(sv, _mm512_loadu_ps(u + i)));
	}
#endif
	/* whole groups of 16 with ops_expf (ggml's vector expf), the tail
	 * with libm's expf, as ggml's silu does */
	for (; i < (n & ~15); i++) {
		float v = g[i];
		h[i] = v / (1.0f + ops_expf(0.0f - v)) * u[i];
	}
	for (; i < n; i++) {
		float v = g[i];
		h[i] = v / (1.0f + expf(0.0f - v)) * u[i];
	}
}

void ops_add(float *y, const float *x, int n)
{
	for (int i = 0; i < n; i++)
		y[i] += x[i];
}

/* ======================= half floats ======================= */

void ops_f16_from_f32(uint16_t *dst, const float *src, int n)
{
	int i = 0;
#if OPS_AVX512
	for (; i + 16 <= n; i += 16)
		_mm256_storeu_si256((__m256i *)(dst + i),
				    _mm512_cvtps_ph(_mm512_loadu_ps(src + i),
						    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#endif
	for (; i < n; i++)
		dst[i] = mg_f32_to_f16(src[i]);
}

void ops_f16_to_f32(float *dst, const uint16_t *src, int n)
{
	int i = 0;
#if OPS_AVX512
	for (; i + 16 <= n; i += 16)
		_mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + i))));
#endif
	for (; i < n; i++)
		dst[i] = mg_f16_to_f32(src[i]);
}

/* ======================= attention ======================= */

/* The cache-row layout (KV_F32, KV_F16, KV_Q8; kv_elem, q8_scale...) is
 * ops_priv.h's: the reference kernels read it too. */

size_t ops_q8_row_bytes(int hd)
{
	return (size_t)hd + 2 * (size_t)(hd / q8_block(hd));
}

#if OPS_AVX512
/* 16 elements of a cache row from element d. */
static inline __attribute__((always_inline)) __m512 kv_load(const char *row, int d, int hd, const int T)
{
	if (T == KV_F16)
		return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)row + d)));
	if (T == KV_Q8) {
		__m512 x = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(row + d))));
		return _mm512_mul_ps(x, _mm512_cvtph_ps(_mm256_set1_epi16((short)q8_scale(row, d, hd))));
	}
	return _mm512_loadu_ps((const float *)row + d);
}

static inline __attribute__((always_inline)) __m512 kv_load_mask(const char *row, int d, int hd, __mmask16 m,
								 const int T)
{
	if (T == KV_F16)
		return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)row + d));
	if (T == KV_Q8) {
		__m512 x = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, row + d)));
		return _mm512_mul_ps(x, _mm512_cvtph_ps(_mm256_set1_epi16((short)q8_scale(row, d, hd))));
	}
	return _mm512_maskz_loadu_ps(m, (const float *)row + d);
}
#endif

void ops_q8_from_f32(void *dst, const float *x, int hd)
{
	char *row = dst;
	int qb = q8_block(hd);
	for (int b = 0; b < hd / qb; b++) {
		uint16_t d16;
		ops_q8_block(x + b * qb, qb, (int8_t *)row + b * qb, &d16);
		memcpy(row + hd + 2 * b, &d16, sizeof(d16));
	}
}

void ops_q8_to_f32(float *x, const void *src, int hd)
{
	for (int d = 0; d < hd; d++)
		x[d] = kv_elem(src, d, hd, KV_Q8);
}

/* dot(a, row) with the row in the cache's element type (KV_F32: ops_dot):
 * 16 fma lanes, a masked last step, then lanes l + l+8, l + l+4, l + l+2,
 * l + l+1. */
static inline __attribute__((always_inline)) float dot_kv(const float *a, const char *row, int n, const int T)
{
#if OPS_AVX512
	__m512 acc = _mm512_setzero_ps();
	int k = 0;
	for (; k + 16 <= n; k += 16)
		acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + k), kv_load(row, k, n, T), acc);
	if (k < n) {
		__mmask16 m = (__mmask16)((1u << (n - k)) - 1);
		acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + k), kv_load_mask(row, k, n, m, T), acc);
	}
	__m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(acc), _mm512_extractf32x8_ps(acc, 1));
	__m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
	__m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
	__m128 s1 = _mm_add_ss(s2, _mm_movehdup_ps(s2));
	return _mm_cvtss_f32(s1);
#else
	float l[16];
	for (int i = 0; i < 16; i++)
		l[i] = 0.0f;
	for (int k = 0; k < n; k++)
		l[k % 16] = fmaf(a[k], kv_elem(row, k, n, T), l[k % 16]);
	/* an all-zero tail lane adds fma(0, 0, l) = l, as the masked step does */
	for (int i = 0; i < 8; i++)
		l[i] = l[i] + l[i + 8];
	for (int i = 0; i < 4; i++)
		l[i] = l[i] + l[i + 4];
	for (int i = 0; i < 2; i++)
		l[i] = l[i] + l[i + 2];
	return l[0] + l[1];
#endif
}

float ops_dot(const float *a, const float *b, int n)
{
	return dot_kv(a, (const char *)b, n, KV_F32);
}

#if OPS_AVX512
/* Scores of 16 consecutive positions: out[p] = dot(q, k_p) * scale with
 * exactly ops_dot's order (16 fma lanes, then l+8, l+4, l+2, l+1), the 16
 * lane reductions done together by shuffles. Position p accumulates in
 * slot 4*(p%4) + p/4 so that the reduced lanes come out in position order.
 * k: the first of the 16 rows, rb bytes apart. */
static inline __attribute__((always_inline)) void
scores16(const float *qh, const char *k, size_t rb, int hd, float scale, float *out, const int T)
{
	__m512 acc[16];
#pragma GCC unroll 16
	for (int i = 0; i < 16; i++)
		acc[i] = _mm512_setzero_ps();
	int d = 0;
	for (; d + 16 <= hd; d += 16) {
		__m512 qv = _mm512_loadu_ps(qh + d);
#pragma GCC unroll 16
		for (int p = 0; p < 16; p++)
			acc[4 * (p % 4) + p / 4] = _mm512_fmadd_ps(qv, kv_load(k + (size_t)p * rb, d, hd, T),
								   acc[4 * (p % 4) + p / 4]);
	}
	if (d < hd) {
		__mmask16 m = (__mmask16)((1u << (hd - d)) - 1);
		__m512 qv = _mm512_maskz_loadu_ps(m, qh + d);
#pragma GCC unroll 16
		for (int p = 0; p < 16; p++)
			acc[4 * (p % 4) + p / 4] = _mm512_fmadd_ps(
				qv, kv_load_mask(k + (size_t)p * rb, d, hd, m, T), acc[4 * (p % 4) + p / 4]);
	}
	__m512 v1[8], v2[4], v3[2];
#pragma GCC unroll 8
	for (int j = 0; j < 8; j++)	/* l + l+8 */
		v1[j] = _mm512_add_ps(_mm512_shuffle_f32x4(acc[2 * j], acc[2 * j + 1], 0x44),
				      _mm512_shuffle_f32x4(acc[2 * j], acc[2 * j + 1], 0xee));
#pragma GCC unroll 4
	for (int j = 0; j < 4; j++)	/* l + l+4 */
		v2[j] = _mm512_add_ps(_mm512_shuffle_f32x4(v1[2 * j], v1[2 * j + 1], 0x88),
				      _mm512_shuffle_f32x4(v1[2 * j], v1[2 * j + 1], 0xdd));
#pragma GCC unroll 2
	for (int j = 0; j < 2; j++)	/* l + l+2 */
		v3[j] = _mm512_add_ps(_mm512_shuffle_ps(v2[2 * j], v2[2 * j + 1], 0x44),
				      _mm512_shuffle_ps(v2[2 * j], v2[2 * j + 1], 0xee));
	__m512 r = _mm512_add_ps(_mm512_shuffle_ps(v3[0], v3[1], 0x88),	/* l + l+1 */
				 _mm512_shuffle_ps(v3[0], v3[1], 0xdd));
	_mm512_storeu_ps(out, _mm512_mul_ps(r, _mm512_set1_ps(scale)));
}
#endif

/* Software prefetch of rows [p0, p1) of a head's K or V (row_bytes each,
 * rb bytes apart), clipped to the rows that exist. The hardware
 * prefetchers follow a stream but restart at every 4 KiB page and at every
 * new (sequence, head) stream; attention is a few hundred such streams of
 * a few tens of KiB per layer, all of it from DRAM at batch 32. */
#define ATT_PF_ROWS 32		/* rows ahead: 8 KiB at head_dim 64 in f32 */
static inline void prefetch_rows(const char *base, size_t rb, size_t row_bytes, int p0, int p1, int n)
{
#if OPS_AVX512
	if (p1 > n)
		p1 = n;
	if (rb == row_bytes) {
		const char *c = base + (size_t)p0 * rb;
		const char *e = base + (size_t)p1 * rb;
		for (; c < e; c += 64)
			_mm_prefetch(c, _MM_HINT_T0);
		return;
	}
	for (int p = p0; p < p1; p++)
		for (size_t off = 0; off < row_bytes; off += 64)
			_mm_prefetch(base + (size_t)p * rb + off, _MM_HINT_T0);
#else
	(void)base; (void)rb; (void)row_bytes; (void)p0; (void)p1; (void)n;
#endif
}

#if OPS_AVX512
/* o[NV*16] (+)= sum_p e[p] * v_p over p < n: one fma chain per element in
 * p order, held in registers; first starts the chains from +0, otherwise
 * they continue from o (a float stored and reloaded is exact, so splitting
 * the positions into blocks changes no bit). *sum += e[p] in p order as
 * well: the softmax denominator, its dependent adds hidden under the loads
 * of V instead of a pass of their own. pf: also prefetch the row
 * ATT_PF_ROWS ahead (the first head of a group to pass over this V). */
static inline __attribute__((always_inline)) void
weighted_sum(float *o, float *sum, const float *e, const char *v, size_t rb, int n, int n_all,
	     int p_base, bool first, bool pf, const int NV, const int T)
{
	const int lines = (int)((kv_row_bytes(16 * NV, T) + 63) / 64);
	__m512 acc[8];
#pragma GCC unroll 8
	for (int j = 0; j < NV; j++)
		acc[j] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(o + 16 * j);
	float sm = *sum;
	for (int p = 0; p < n; p++) {
		if (pf && p_base + p + ATT_PF_ROWS < n_all) {
			const char *c = v + (size_t)(p + ATT_PF_ROWS) * rb;
			for (int j = 0; j < lines; j++)	/* the row's lines */
				_mm_prefetch(c + 64 * j, _MM_HINT_T0);
		}
		sm += e[p];
		__m512 ep = _mm512_set1_ps(e[p]);
#pragma GCC unroll 8
		for (int j = 0; j < NV; j++)
			acc[j] = _mm512_fmadd_ps(ep, kv_load(v + (size_t)p * rb, 16 * j, 16 * NV, T), acc[j]);
	}
	*sum = sm;
#pragma GCC unroll 8
	for (int j = 0; j < NV; j++)
		_mm512_storeu_ps(o + 16 * j, acc[j]);
}
#endif

/* o[hd] (+)= sum over p < n of e[p] * v_p and *sum += e[p], as
 * weighted_sum; v and e point at position p_base of n_all. */
static inline __attribute__((always_inline)) void
weighted(float *o, float *sum, const float *e, const char *v, size_t rb, int n, int hd, int n_all,
	 int p_base, bool first, bool pf, const int T)
{
#if OPS_AVX512
	switch (hd) {
	case 64: weighted_sum(o, sum, e, v, rb, n, n_all, p_base, first, pf, 4, T); return;
	case 128: weighted_sum(o, sum, e, v, rb, n, n_all, p_base, first, pf, 8, T); return;
	default: break;
	}
#endif
	(void)n_all; (void)p_base; (void)pf;
	if (first)
		memset(o, 0, (size_t)hd * sizeof(float));
	float sm = *sum;
	for (int p = 0; p < n; p++) {
		sm += e[p];
		const char *vp = v + (size_t)p * rb;
		if (T == KV_F32) {
			axpy(o, e[p], (const float *)vp, hd);
			continue;
		}
		for (int d = 0; d < hd; d++)
			o[d] = fmaf(e[p], kv_elem(vp, d, hd, T), o[d]);
	}
	*sum = sm;
}

/* The largest of x[0..n): order-free, so vectorised without changing a
 * bit of what follows (exp(x - max) is the same for max = +0 or -0). */
static float max_of(const float *x, int n)
{
	int i = 0;
	float mx = x[0];
#if OPS_AVX512
	if (n >= 16) {
		__m512 m = _mm512_loadu_ps(x);
		for (i = 16; i + 16 <= n; i += 16)
			m = _mm512_max_ps(m, _mm512_loadu_ps(x + i));
		mx = _mm512_reduce_max_ps(m);
	}
#endif
	for (; i < n; i++)
		if (x[i] > mx)
			mx = x[i];
	return mx;
}

/* Query heads sharing one pass over K and one over V (a GQA group, in
 * chunks of this many when a group is larger). */
#define ATT_HEADS 16
/* Positions per block of the weighted sum: every head of the chunk takes
 * its turn on a V block while it is in L1 (16 KiB at head_dim 64). */
#define ATT_VBLOCK 64

/* ---- llama.cpp's f16-cache attention (ops_attn_t.half_math) ----
 *
 * ggml multiplies an f16 cache by converting the other operand to half and
 * calling its f16 dot product (ggml_vec_dot_f16), whose order is: per 64
 * values, 4 x 16 float lanes accumulated by fma; the 4 accumulators summed
 * as (0 + 2) + (1 + 3); the 16 lanes summed as (l + l+8), (l + l+4),
 * (l + l+2), (l + l+1), into a double; then the remaining values' products
 * added one by one in double; the result rounded to float. The scores use
 * it over head_dim; the weighted sum over positions 0 .. n_pad-1, n_pad =
 * the position count rounded up to 32 (llama.cpp's cache view), masked
 * positions weighing 0. The softmax between them takes ops_expf per
 * position and sums 16 positions at a time (lanes as above) into a double.
 * For the tokens of a prompt batch of 2+ tokens llama.cpp takes another
 * kernel for both products (ops_attn_t.tiled: dot_half16).
 * Reproducing that order lets margin's tokens follow llama.cpp's: a
 * rounding difference that moves a value across a half step changes the
 * logits by much more than the difference itself. */

static inline float reduce16(const float *v)
{
	float t3[8], t6[4];
	for (int l = 0; l < 8; l++)
		t3[l] = v[l] + v[l + 8];
	for (int l = 0; l < 4; l++)
		t6[l] = t3[l] + t3[l + 4];
	return (t6[0] + t6[2]) + (t6[1] + t6[3]);
}

/* ggml_vec_dot_f16 of a float row x (values that are halves) and a half
 * row y, n values. */
static float dot_half(const float *x, const uint16_t *y, int n)
{
	int np = n & ~63;
	double sum = 0.0;
	if (np > 0) {
		float acc[64] = { 0 };
#if OPS_AVX512
		__m512 s[4] = { _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps() };
		for (int i = 0; i < np; i += 64)
			for (int j = 0; j < 4; j++)
				s[j] = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16 * j),
						       _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(y + i + 16 * j))),
						       s[j]);
		_mm512_storeu_ps(acc, _mm512_add_ps(_mm512_add_ps(s[0], s[2]), _mm512_add_ps(s[1], s[3])));
#else
		float yf[64];
		for (int i = 0; i < np; i += 64) {
			ops_f16_to_f32(yf, y + i, 64);
			for (int k = 0; k < 64; k++)
				acc[k] = fmaf(x[i + k], yf[k], acc[k]);
		}
		for (int l = 0; l < 16; l++)
			acc[l] = (acc[l] + acc[32 + l]) + (acc[16 + l] + acc[48 + l]);
#endif
		sum = (double)reduce16(acc);
	}
	for (int i = np; i < n; i++) {
		float yv;
		ops_f16_to_f32(&yv, y + i, 1);
		sum += (double)(x[i] * yv);
	}
	return (float)sum;
}

/* One query head of one token over positions lo .. hi of its kv head (K
 * and V rows of head_dim halves, rs apart): out[hd]. e: hi + 1 floats of
 * scratch, acc: 64 * hd floats. q is already rounded to half. */
/* ggml's tiled GEMM (llamafile's tinyBLAS, which llama.cpp runs for a
 * prompt batch of 2+ tokens) on an f16 product of n values: 16 float lanes,
 * lane l taking values l, l+16, ... by fma, then the lanes summed as
 * reduce16. */
static float dot_half16(const float *x, const uint16_t *y, int n)
{
	float l16[16] = { 0 };
#if OPS_AVX512
	__m512 acc = _mm512_setzero_ps();
	for (int i = 0; i < n; i += 16)
		acc = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(y + i))),
				      _mm512_loadu_ps(x + i), acc);
	_mm512_storeu_ps(l16, acc);
#else
	float yf[16];
	for (int i = 0; i < n; i += 16) {
		ops_f16_to_f32(yf, y + i, 16);
		for (int l = 0; l < 16; l++)
			l16[l] = fmaf(yf[l], x[i + l], l16[l]);
	}
#endif
	return reduce16(l16);
}

#if OPS_AVX512
/* One position's 16 lane sums before reduce16: dot_half's 4 accumulators
 * over 64 values at a time summed (0 + 2) + (1 + 3), or (tiled)
 * dot_half16's one accumulator over 16 at a time. hd: a multiple of 64. */
static inline __attribute__((always_inline)) __m512 lanes_half(const float *q, const uint16_t *y, const int hd,
								bool tiled)
{
	if (tiled) {
		__m512 acc = _mm512_setzero_ps();
		for (int d = 0; d < hd; d += 16)
			acc = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(y + d))),
					      _mm512_loadu_ps(q + d), acc);
		return acc;
	}
	__m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
	for (int d = 0; d < hd; d += 64) {
		s0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + d), _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(y + d))), s0);
		s1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + d + 16),
				     _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(y + d + 16))), s1);
		s2 = _mm512_fmadd_ps(_mm512_loadu_ps(q + d + 32),
				     _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(y + d + 32))), s2);
		s3 = _mm512_fmadd_ps(_mm512_loadu_ps(q + d + 48),
				     _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(y + d + 48))), s3);
	}
	return _mm512_add_ps(_mm512_add_ps(s0, s2), _mm512_add_ps(s1, s3));
}

/* The scores of 16 consecutive positions (K rows rs halves apart): dot_half
 * or, tiled, dot_half16 of each (hd a multiple of 64), times scale, into
 * e[0..16). reduce16 of the 16 lane vectors at once, by shuffles that pair
 * whole 256-, 128- and 32-bit parts of two vectors, each sum with the same
 * operands in the same order as reduce16 (lanes l + l+8, then + l+4, then
 * (0 + 2) + (1 + 3)); taken as the positions come, so that few vectors are
 * live. */
static inline __attribute__((always_inline)) void scores_half16(const float *q, const uint16_t *K, size_t rs,
								 const int hd, float scale, bool tiled, float *e)
{
	__m512 w[4];
#pragma GCC unroll 4
	for (int i = 0; i < 4; i++) {
		__m512 z[2];
#pragma GCC unroll 2
		for (int k = 0; k < 2; k++) {	/* lanes 0-7: t3 of position 4i+2k, 8-15: of 4i+2k+1 */
			__m512 a = lanes_half(q, K + (size_t)(4 * i + 2 * k) * rs, hd, tiled);
			__m512 b = lanes_half(q, K + (size_t)(4 * i + 2 * k + 1) * rs, hd, tiled);
			z[k] = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
		}
		/* 128-bit part u: t6 of position 4i+u */
		w[i] = _mm512_add_ps(_mm512_shuffle_f32x4(z[0], z[1], 0x88), _mm512_shuffle_f32x4(z[0], z[1], 0xDD));
	}
	__m512 s2[2];
	for (int i = 0; i < 2; i++)	/* part u: t6[0]+t6[2], t6[1]+t6[3] of positions 8i+u, 8i+4+u */
		s2[i] = _mm512_add_ps(_mm512_shuffle_ps(w[2 * i], w[2 * i + 1], 0x44),
				      _mm512_shuffle_ps(w[2 * i], w[2 * i + 1], 0xEE));
	/* element 4u + j: the sum of position 4j + u; back to element i for i */
	__m512 f = _mm512_add_ps(_mm512_shuffle_ps(s2[0], s2[1], 0x88), _mm512_shuffle_ps(s2[0], s2[1], 0xDD));
	const __m512i idx = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
	_mm512_storeu_ps(e, _mm512_mul_ps(_mm512_permutexvar_ps(idx, f), _mm512_set1_ps(scale)));
}

/* Lane chains of the weighted sum over nd x 16 output values (nd <= 4):
 * a[c] = fma of e_p and v_p[16c ..] over the positions first, first + L,
 * ... <= hi, in order; each V row is read whole once per chain. */
static inline __attribute__((always_inline)) void lane_chains(const float *e, const uint16_t *V, size_t rs,
								int first, int hi, int L, __m512 a[4])
{
	__m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
	for (int p = first; p <= hi; p += L) {
		__m512 ev = _mm512_set1_ps(e[p]);
		const __m256i *vp = (const __m256i *)(V + (size_t)p * rs);
		a0 = _mm512_fmadd_ps(ev, _mm512_cvtph_ps(_mm256_loadu_si256(vp)), a0);
		a1 = _mm512_fmadd_ps(ev, _mm512_cvtph_ps(_mm256_loadu_si256(vp + 1)), a1);
		a2 = _mm512_fmadd_ps(ev, _mm512_cvtph_ps(_mm256_loadu_si256(vp + 2)), a2);
		a3 = _mm512_fmadd_ps(ev, _mm512_cvtph_ps(_mm256_loadu_si256(vp + 3)), a3);
	}
	a[0] = a0;
	a[1] = a1;
	a[2] = a2;
	a[3] = a3;
}

/* The first position >= lo of lane k of L. */
static inline int lane_first(int lo, int k, int L)
{
	return lo + ((k - lo) % L + L) % L;
}

/* attend_half's weighted sum, 64 output values at a time (hd a multiple
 * of 64), every value by the same chains, lane sums and double tail. */
static void weighted_half16(const float *e, const uint16_t *V, size_t rs, int lo, int hi, int hd, bool tiled,
			    float *out)
{
	int n_pad = (hi + 1 + 31) & ~31, np = n_pad & ~63;
	int pv = tiled ? hi : hi < np - 1 ? hi : np - 1;
	_Alignas(64) float wl[16][64];	/* the 16 lane sums of each value */
	for (int d0 = 0; d0 < hd; d0 += 64) {
		const uint16_t *vd = V + d0;
		const int nd = 4;
		for (int l = 0; l < 16; l++) {
			__m512 a0[4], a1[4], a2[4], a3[4];
			if (tiled) {
				lane_chains(e, vd, rs, lane_first(lo, l, 16), hi, 16, a0);
				for (int c = 0; c < nd; c++)
					_mm512_store_ps(wl[l] + 16 * c, a0[c]);
				continue;
			}
			lane_chains(e, vd, rs, lane_first(lo, l, 64), pv, 64, a0);
			lane_chains(e, vd, rs, lane_first(lo, 16 + l, 64), pv, 64, a1);
			lane_chains(e, vd, rs, lane_first(lo, 32 + l, 64), pv, 64, a2);
			lane_chains(e, vd, rs, lane_first(lo, 48 + l, 64), pv, 64, a3);
			for (int c = 0; c < nd; c++)
				_mm512_store_ps(wl[l] + 16 * c, _mm512_add_ps(_mm512_add_ps(a0[c], a2[c]),
									      _mm512_add_ps(a1[c], a3[c])));
		}
		__m512d r[4][2];
		for (int c = 0; c < nd; c++) {
			__m512 t3[8], t6[4];
			for (int l = 0; l < 8; l++)
				t3[l] = _mm512_add_ps(_mm512_load_ps(wl[l] + 16 * c), _mm512_load_ps(wl[l + 8] + 16 * c));
			for (int l = 0; l < 4; l++)
				t6[l] = _mm512_add_ps(t3[l], t3[l + 4]);
			__m512 s = _mm512_add_ps(_mm512_add_ps(t6[0], t6[2]), _mm512_add_ps(t6[1], t6[3]));
			if (tiled) {
				_mm512_storeu_ps(out + d0 + 16 * c, s);
				continue;
			}
			/* in double (0 with no lane part), then the rest one by one */
			r[c][0] = r[c][1] = _mm512_setzero_pd();
			if (np > 0) {
				r[c][0] = _mm512_cvtps_pd(_mm512_castps512_ps256(s));
				r[c][1] = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(s), 1)));
			}
		}
		if (tiled)
			continue;
		for (int p = np > lo ? np : lo; p <= hi; p++) {
			__m512 ev = _mm512_set1_ps(e[p]);
			const uint16_t *vp = vd + (size_t)p * rs;
			for (int c = 0; c < nd; c++) {
				__m512 pr = _mm512_mul_ps(ev, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(vp + 16 * c))));
				r[c][0] = _mm512_add_pd(r[c][0], _mm512_cvtps_pd(_mm512_castps512_ps256(pr)));
				r[c][1] = _mm512_add_pd(r[c][1], _mm512_cvtps_pd(_mm256_castpd_ps(
									_mm512_extractf64x4_pd(_mm512_castps_pd(pr), 1))));
			}
		}
		for (int c = 0; c < nd; c++) {
			_mm256_storeu_ps(out + d0 + 16 * c, _mm512_cvtpd_ps(r[c][0]));
			_mm256_storeu_ps(out + d0 + 16 * c + 8, _mm512_cvtpd_ps(r[c][1]));
		}
	}
}

/* The softmax numerators e[lo..hi] = ops_expf(e - mx) (exp16 gives its
 * bits), summed 16 positions at a time (from lo & ~15) as reduce16 into a
 * double. */
static double exp_sum_half(float *e, int lo, int hi, float mx)
{
	double sum = 0.0;
	__m512 m = _mm512_set1_ps(mx);
	for (int c0 = lo & ~15; c0 <= hi; c0 += 16) {
		int a = lo > c0 ? lo - c0 : 0, b = hi - c0 < 15 ? hi - c0 : 15;
		__mmask16 k = (__mmask16)(((1u << (b + 1)) - 1) & ~((1u << a) - 1));
		__m512 x = _mm512_maskz_loadu_ps(k, e + c0);
		x = _mm512_maskz_mov_ps(k, exp16(_mm512_sub_ps(x, m)));
		_mm512_mask_storeu_ps(e + c0, k, x);
		_Alignas(64) float ch[16];
		_mm512_store_ps(ch, x);
		sum += (double)reduce16(ch);
	}
	return sum;
}
#endif

static void attend_half(const float *q, const uint16_t *K, const uint16_t *V, size_t rs, int lo, int hi,
			int hd, float scale, bool tiled, float *out, float *e, float *acc)
{
#if OPS_AVX512
	/* the same operations, vectorized across positions and output values */
	if (hd % 64 == 0) {
		int p = lo, n = hi + 1;
		size_t rb = rs * sizeof(uint16_t), row = (size_t)hd * sizeof(uint16_t);
		const char *Kc = (const char *)K, *Vc = (const char *)V;
		prefetch_rows(Kc, rb, row, lo, lo + ATT_PF_ROWS, n);
		for (; p + 16 <= n; p += 16) {
			/* K ahead into L1; this block's V into L2 for the weighted
			 * sum (into L1 it took the fill buffers K needs: attention
			 * of a batch-32 step 10.8 ms against 8.6-9.0 into L2) */
			prefetch_rows(Kc, rb, row, p + ATT_PF_ROWS, p + ATT_PF_ROWS + 16, n);
			for (const char *c = Vc + (size_t)p * rb, *end = Vc + (size_t)(p + 16) * rb; c < end; c += 64)
				_mm_prefetch(c, _MM_HINT_T1);
			/* unrolled into registers for the common sizes */
			if (hd == 64 && !tiled)
				scores_half16(q, K + (size_t)p * rs, rs, 64, scale, false, e + p);
			else if (hd == 64)
				scores_half16(q, K + (size_t)p * rs, rs, 64, scale, true, e + p);
			else if (hd == 128 && !tiled)
				scores_half16(q, K + (size_t)p * rs, rs, 128, scale, false, e + p);
			else if (hd == 128)
				scores_half16(q, K + (size_t)p * rs, rs, 128, scale, true, e + p);
			else
				scores_half16(q, K + (size_t)p * rs, rs, hd, scale, tiled, e + p);
		}
		prefetch_rows(Vc, rb, row, p, n, n);
		for (; p <= hi; p++)
			e[p] = (tiled ? dot_half16(q, K + (size_t)p * rs, hd) : dot_half(q, K + (size_t)p * rs, hd)) *
			       scale;
		float mx = max_of(e + lo, hi - lo + 1);
		float inv = (float)(1.0 / exp_sum_half(e, lo, hi, mx));
		int i = lo;
		for (; i + 16 <= hi + 1; i += 16)
			_mm512_storeu_ps(e + i, _mm512_mul_ps(_mm512_loadu_ps(e + i), _mm512_set1_ps(inv)));
		for (; i <= hi; i++)
			e[i] *= inv;
		round_half(e + lo, e + lo, hi - lo + 1);
		weighted_half16(e, V, rs, lo, hi, hd, tiled, out);
		return;
	}
#endif
	/* the tiled order needs whole 16-value steps over head_dim (else
	 * ggml falls back to its dot product) */
	bool tiled_k = tiled && hd % 16 == 0, tiled_v = tiled && hd % 4 == 0;
	float mx = -INFINITY;
	for (int p = lo; p <= hi; p++) {
		e[p] = (tiled_k ? dot_half16(q, K + (size_t)p * rs, hd) : dot_half(q, K + (size_t)p * rs, hd)) * scale;
		mx = e[p] > mx ? e[p] : mx;
	}
	double sum = 0.0;
	for (int c0 = lo & ~15; c0 <= hi; c0 += 16) {
		float ch[16];
		for (int l = 0; l < 16; l++) {
			int p = c0 + l;
			ch[l] = p >= lo && p <= hi ? (e[p] = ops_expf(e[p] - mx)) : 0.0f;
		}
		sum += (double)reduce16(ch);
	}
	float inv = (float)(1.0 / sum);
	for (int p = lo; p <= hi; p++)
		e[p] *= inv;
	round_half(e + lo, e + lo, hi - lo + 1);
	if (tiled_v) {	/* 16 lanes over positions p % 16, per output value */
		memset(acc, 0, (size_t)16 * (size_t)hd * sizeof(float));
		for (int p = lo; p <= hi; p++) {
			float *ap = acc + (size_t)(p % 16) * hd;
			const uint16_t *vp = V + (size_t)p * rs;
			int d = 0;
#if OPS_AVX512
			__m512 ev = _mm512_set1_ps(e[p]);
			for (; d + 16 <= hd; d += 16)
				_mm512_storeu_ps(ap + d, _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256(
								(const __m256i *)(vp + d))), ev, _mm512_loadu_ps(ap + d)));
#endif
			for (; d < hd; d++) {
				float vv;
				ops_f16_to_f32(&vv, vp + d, 1);
				ap[d] = fmaf(vv, e[p], ap[d]);
			}
		}
		for (int d = 0; d < hd; d++) {
			float l16[16];
			for (int l = 0; l < 16; l++)
				l16[l] = acc[(size_t)l * hd + d];
			out[d] = reduce16(l16);
		}
		return;
	}
	/* sum over positions of e_p v_p: the first n_pad & ~63 positions in
	 * 64 lane accumulators per output value, the rest in double */
	int n_pad = (hi + 1 + 31) & ~31, np = n_pad & ~63;
	int pv = hi < np - 1 ? hi : np - 1;
	if (np > 0)
		memset(acc, 0, (size_t)64 * (size_t)hd * sizeof(float));
	for (int p = lo; p <= pv; p++) {
		float *ap = acc + (size_t)(p % 64) * hd;
		const uint16_t *vp = V + (size_t)p * rs;
		int d = 0;
#if OPS_AVX512
		__m512 ev = _mm512_set1_ps(e[p]);
		for (; d + 16 <= hd; d += 16)
			_mm512_storeu_ps(ap + d, _mm512_fmadd_ps(ev, _mm512_cvtph_ps(_mm256_loadu_si256(
							(const __m256i *)(vp + d))), _mm512_loadu_ps(ap + d)));
#endif
		for (; d < hd; d++) {
			float vv;
			ops_f16_to_f32(&vv, vp + d, 1);
			ap[d] = fmaf(e[p], vv, ap[d]);
		}
	}
	for (int d = 0; d < hd; d++) {
		double r = 0.0;
		if (np > 0) {
			float l16[16];
			for (int l = 0; l < 16; l++)
				l16[l] = (acc[(size_t)l * hd + d] + acc[(size_t)(32 + l) * hd + d]) +
					 (acc[(size_t)(16 + l) * hd + d] + acc[(size_t)(48 + l) * hd + d]);
			r = (double)reduce16(l16);
		}
		for (int p = np > lo ? np : lo; p <= hi; p++) {
			float vv;
			ops_f16_to_f32(&vv, V + (size_t)p * rs + d, 1);
			r += (double)(e[p] * vv);
		}
		out[d] = (float)r;
	}
}

static void attention_half(const ops_attn_t *a, const float *q, size_t ldq, int pos0, int n_q, int g0, int g1,
			   float *out, size_t ldo, float *scores)
{
	int hd = a->head_dim, group = a->n_heads / a->n_kv_heads;
	float scale = 1.0f / sqrtf((float)hd);
	/* scores holds (pos0 + n_q) floats per head of a group: use the first
	 * head's share for e, the rest (>= 64 * hd when the cache is long
	 * enough) for the accumulators */
	float *e = scores, *acc = scores + (size_t)(pos0 + n_q);
	_Alignas(64) float qh[512];
	for (int t = 0; t < n_q; t++) {
		int hi = pos0 + t, lo = window_start(a, hi);
		for (int h = g0 * group; h < g1 * group; h++) {
			const uint16_t *K = a->k16 + (size_t)(h / group) * a->head_stride;
			const uint16_t *V = a->v16 + (size_t)(h / group) * a->head_stride;
			round_half(qh, q + (size_t)t * ldq + (size_t)h * hd, hd);
			attend_half(qh, K, V, a->row_stride, lo, hi, hd, scale, a->tiled,
				    out + (size_t)t * ldo + (size_t)h * hd, e, acc);
		}
	}
}

static inline __attribute__((always_inline)) void
attention(const ops_attn_t *a, const float *q, size_t ldq, int pos0, int n_q, int g0, int g1,
	  float *out, size_t ldo, float *scores, const int T)
{
	int hd = a->head_dim;
	int group = a->n_heads / a->n_kv_heads;
	const size_t esz = kv_esz(T), rb = a->row_stride * esz, row_bytes = kv_row_bytes(hd, T);
	const char *kc, *vc;
	kv_bases(a, T, &kc, &vc);
	float scale = 1.0f / sqrtf((float)hd);
	_Alignas(64) float qbuf[ATT_HEADS * 512];
	for (int t = 0; t < n_q; t++) {
		/* positions lo .. pos0 + t: K and V start at row lo */
		int lo = window_start(a, pos0 + t), n_kv = pos0 + t + 1 - lo;
		for (int g = g0; g < g1; g++) {
			const char *K = kc + ((size_t)g * a->head_stride + (size_t)lo * a->row_stride) * esz;
			const char *V = vc + ((size_t)g * a->head_stride + (size_t)lo * a->row_stride) * esz;
			for (int h0 = 0; h0 < group; h0 += ATT_HEADS) {
				int nh = group - h0 < ATT_HEADS ? group - h0 : ATT_HEADS;
				const float *qg = q + (size_t)t * ldq + (size_t)(g * group + h0) * hd;
				float *og = out + (size_t)t * ldo + (size_t)(g * group + h0) * hd;
				float sums[ATT_HEADS];
				bool half = T == KV_F16 && a->half_math;
				if (half) {	/* the query as ggml's f16 product sees it */
					round_half(qbuf, qg, nh * hd);
					qg = qbuf;
				}
				/* scores of all nh heads, K read once: a 16-row
				 * block stays in L1 while every head uses it */
				prefetch_rows(V, rb, row_bytes, 0, ATT_PF_ROWS, n_kv);
				int p = 0;
#if OPS_AVX512
				for (; p + 16 <= n_kv; p += 16) {
					prefetch_rows(K, rb, row_bytes, p + ATT_PF_ROWS, p + ATT_PF_ROWS + 16, n_kv);
					for (int hl = 0; hl < nh; hl++)
						scores16(qg + (size_t)hl * hd, K + (size_t)p * rb, rb, hd, scale,
							 scores + (size_t)hl * n_kv + p, T);
				}
#endif
				for (; p < n_kv; p++)
					for (int hl = 0; hl < nh; hl++)
						scores[(size_t)hl * n_kv + p] =
							dot_kv(qg + (size_t)hl * hd, K + (size_t)p * rb, hd, T) *
							scale;
				/* softmax numerators e_p = exp(s_p - max) */
				for (int hl = 0; hl < nh; hl++) {
					float *sc = scores + (size_t)hl * n_kv;
					exp_sub(sc, max_of(sc, n_kv), n_kv);
					sums[hl] = 0.0f;
					if (half) {	/* probabilities, normalized, as halves */
						double sum = 0.0;
						for (int p2 = 0; p2 < n_kv; p2++)
							sum += (double)sc[p2];
						float inv = (float)(1.0 / sum);
						for (int p2 = 0; p2 < n_kv; p2++)
							sc[p2] *= inv;
						round_half(sc, sc, n_kv);
					}
				}
				/* out = sum_p e_p v_p, V read once; the sums of e_p
				 * in position order on the way */
				for (int pb = 0; pb < n_kv; pb += ATT_VBLOCK) {
					int nb = n_kv - pb < ATT_VBLOCK ? n_kv - pb : ATT_VBLOCK;
					for (int hl = 0; hl < nh; hl++)
						weighted(og + (size_t)hl * hd, &sums[hl], scores + (size_t)hl * n_kv + pb,
							 V + (size_t)pb * rb, rb, nb, hd, n_kv, pb, pb == 0, hl == 0, T);
				}
				for (int hl = 0; hl < nh && !half; hl++) {
					float inv = 1.0f / sums[hl];
					float *o = og + (size_t)hl * hd;
					for (int d = 0; d < hd; d++)
						o[d] *= inv;
				}
			}
		}
	}
}

void ops_attention(const ops_attn_t *a, const float *q, size_t ldq, int pos0, int n_q,
		   int g0, int g1, float *out, size_t ldo, float *scores)
{
	if (a->k16 != NULL && a->half_math) {
		attention_half(a, q, ldq, pos0, n_q, g0, g1, out, ldo, scores);
		return;
	}
	switch (kv_type(a)) {
	case KV_Q8: attention(a, q, ldq, pos0, n_q, g0, g1, out, ldo, scores, KV_Q8); break;
	case KV_F16: attention(a, q, ldq, pos0, n_q, g0, g1, out, ldo, scores, KV_F16); break;
	default: attention(a, q, ldq, pos0, n_q, g0, g1, out, ldo, scores, KV_F32); break;
	}
}

void ops_attention_prefetch(const ops_attn_t *a, int g)
{
	int T = kv_type(a);
	size_t esz = kv_esz(T);
	const char *k, *v;
	kv_bases(a, T, &k, &v);
	prefetch_rows(k + (size_t)g * a->head_stride * esz, a->row_stride * esz,
		      kv_row_bytes(a->head_dim, T), 0, ATT_PF_ROWS, ATT_PF_ROWS);
}
