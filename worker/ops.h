/* ops: the numeric kernels of the forward pass, each in two versions:
 *
 *   ops_ref_*  plain C, simple loops, double accumulation: the oracle the
 *              tests compare the fast kernels against. Never used by the
 *              model.
 *   ops_*      the fast path the model runs.
 *
 * Matrix product. A weight matrix W is [N x K] row-major as GGUF stores it
 * (N output features, K input features) and a step multiplies n activation
 * rows at once: Y[n x N] = X[n x K] . W^T. Two kernels:
 *
 *   OPS_W_PACKED (default): our own AVX-512 kernel over W repacked at load
 *     into panels of OPS_PANEL columns, [N/64][K][64]. Every output element
 *     is one sequential fused multiply-add chain over k = 0..K-1, started
 *     from +0:  y = fma(x[k], w[k], y). Which tile, thread or batch size
 *     computes it changes nothing, so a row's result is bit-identical
 *     whatever else shares the step (batch invariance, DESIGN.md
 *     "Determinism") and whatever the thread count. ops_ref_matmul_chain
 *     is that definition written as a scalar loop; the tests require the
 *     kernel to equal it bit for bit.
 *   OPS_W_ROWMAJOR: OpenBLAS, cblas_sgemv for n == 1 and cblas_sgemm
 *     (RowMajor, NoTrans, Trans) otherwise. Measured NOT batch-invariant:
 *     OpenBLAS 0.3.21's sgemm gives different bits for the same row
 *     depending on M (its tail kernels and thread split), and sgemv differs
 *     from sgemm. Opt-in only (docs/kernels.md has the figures).
 *
 * Every other kernel works row by row (or per token and head) with a fixed
 * order, so it is batch-invariant by construction.
 *
 * Threads: the fast kernels take an ops_pool_t (persistent threads; the
 * caller's thread takes part). NULL runs on the caller's thread alone. */
#ifndef OPS_H
#define OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OPS_PANEL 64	/* columns per packed panel */

/* ---- thread pool ---- */

typedef struct ops_pool ops_pool_t;

/* One task of a parallel region: task in [0, n_tasks), worker in
 * [0, threads) (the caller is worker 0). */
typedef void (*ops_task_fn)(void *arg, int task, int worker);

/* threads >= 1 workers in all (threads - 1 new pthreads). -EINVAL, -ENOMEM,
 * -errno from pthread_create. *ret owned by the caller. */
int ops_pool_new(int threads, ops_pool_t **ret);
/* Stops and joins the threads. NULL-safe; sets *p = NULL. */
void ops_pool_destroy(ops_pool_t **p);
int ops_pool_threads(const ops_pool_t *p);	/* 1 for NULL */
/* Whether idle pool threads spin (then yield) for a few hundred
 * microseconds before sleeping (default true: regions of a forward step
 * follow each other closely). Off when another library's threads (OpenBLAS)
 * share the cores between our regions. */
void ops_pool_set_spin(ops_pool_t *p, bool spin);
/* Runs fn for every task (claimed in order by whichever worker is free)
 * and returns when all are done. One region at a time: only the owner's
 * thread calls this. p may be NULL (runs inline). */
void ops_pool_run(ops_pool_t *p, ops_task_fn fn, void *arg, int n_tasks);

/* A region whose tasks are best run in order by one thread: fn also
 * learns the task this worker runs after this one (next, -1 if none is
 * known) and can prefetch its data while it computes this one. */
typedef void (*ops_share_fn)(void *arg, int task, int next, int worker);
/* Like ops_pool_run, but the tasks are cut into one contiguous share per
 * thread (at most 64 shares). A worker runs its share upwards, then steals
 * single tasks from the tops of the others, downwards, so a thread that
 * does not get a core delays the region by about one task. */
void ops_pool_run_shares(ops_pool_t *p, ops_share_fn fn, void *arg, int n_tasks);

/* ---- weight matrices ---- */

enum ops_layout {
	OPS_W_PACKED = 0,	/* [ceil(N/64)][K][64], zero-padded columns */
	OPS_W_ROWMAJOR = 1,	/* [N][K], as in GGUF; OpenBLAS kernels */
	/* Packed as OPS_W_PACKED but int8 with an f16 scale per 32 values of
	 * a row (GGUF's Q8_0 blocks, kept as they are): q [ceil(N/64)][K][64]
	 * int8, then d [ceil(N/64)][K/32][64] halves. K a multiple of 32. The
	 * kernel widens each value exactly (q x d has at most 8 + 11
	 * significant bits), so the product is, bit for bit, that of
	 * OPS_W_PACKED holding the widened values. */
	OPS_W_PACKED_Q8 = 2,
	/* Rows of ggml quantized blocks (quant.h) as GGUF stores them, in up
	 * to OPS_W_MAX_SEG segments of consecutive rows (a fused matrix
	 * assembled from tensors of different types), usually borrowed from
	 * the file's mapping. Multiplied by qmm.h's kernels (activations
	 * quantized, integer block products: llama.cpp's arithmetic), not by
	 * ops_matmul. */
	OPS_W_QROWS = 3,
};

#define OPS_W_MAX_SEG 3

/* A run of rows [row0, row0 + n_rows) of an OPS_W_QROWS matrix. */
typedef struct ops_qseg {
	int row0, n_rows;
	uint32_t type;		/* ggml type (quant.h) */
	size_t row_bytes;	/* bytes of one row of blocks */
	const uint8_t *data;	/* borrowed: the mapping, or the matrix's data */
} ops_qseg_t;

typedef struct ops_w {
	int n_out;		/* N */
	int n_in;		/* K */
	enum ops_layout layout;
	float *data;		/* owned by whoever called ops_w_alloc (Q8: the
				   allocation q and d point into) */
	int8_t *q;		/* OPS_W_PACKED_Q8 only */
	uint16_t *d;
	int n_seg;		/* OPS_W_QROWS only */
	int qorder;		/* OPS_W_QROWS: enum qmm_order (qmm.h), 0 llama.cpp's */
	ops_qseg_t seg[OPS_W_MAX_SEG];
} ops_w_t;

/* Bytes the data of an [N x K] matrix takes in a layout (0: not
 * possible, e.g. Q8 rows that are not whole blocks). */
size_t ops_w_bytes(enum ops_layout layout, int n_out, int n_in);
/* Allocates w->data (64-byte aligned, zeroed). -EINVAL, -ENOMEM. */
int ops_w_alloc(ops_w_t *w, enum ops_layout layout, int n_out, int n_in);
void ops_w_free(ops_w_t *w);
/* Stores rows [row0, row0 + n_rows) of W from src[n_rows][K] row-major.
 * Fused matrices (q|k|v, gate|up) are assembled from several tensors so. */
void ops_w_set_rows(ops_w_t *w, int row0, int n_rows, const float *src);
/* OPS_W_PACKED_Q8: rows as GGUF Q8_0 blocks (K/32 blocks of an f16 scale
 * and 32 int8 per row), stored as they are. set_rows quantizes floats into
 * such blocks (ops_q8_from_f32's rounding, 32 values a block). */
void ops_w_set_rows_q8(ops_w_t *w, int row0, int n_rows, const uint8_t *blocks);
/* Copies row r of W (K floats) to dst: an embedding lookup in a tied
 * output matrix (OPS_W_QROWS: the row dequantized exactly). */
void ops_w_get_row(const ops_w_t *w, int r, float *dst);

/* ---- large buffers ---- */

/* Zero-filled memory for a big buffer that fills over time (a KV cache):
 * a private anonymous mapping, never touched here, so its pages cost
 * nothing until written, and munmap gives them back at once.
 *   huge = false: 4 KiB pages (MADV_NOHUGEPAGE), so the resident size
 *     follows what was written. In this VM a first write to a page costs
 *     about 16 us.
 *   huge = true and bytes >= 4 MiB: 2 MiB-aligned, the length rounded up
 *     to 2 MiB, transparent hugepages (MADV_HUGEPAGE): a first write
 *     anywhere in a 2 MiB page maps all of it in one fault.
 * -EINVAL (bytes == 0), -ENOMEM. Free with ops_big_free(p, bytes, huge)
 * (the same arguments). Any thread. */
int ops_big_alloc(size_t bytes, bool huge, void **ret);
/* NULL-safe. */
void ops_big_free(void *p, size_t bytes, bool huge);

/* ---- fast kernels ---- */

/* Y[n][ldy] (first N columns written) = X[n][ldx] (first K columns) . W^T. */
void ops_matmul(ops_pool_t *p, float *y, size_t ldy, const float *x, size_t ldx,
		const ops_w_t *w, int n);
/* y[i] = x[i] / sqrt(mean(x^2) + eps) * g[i], one row of dim. y may be x.
 * ggml's order: the squares rounded to float and summed in double, the
 * mean rounded to float, then (x[i] * s) * g[i]. */
void ops_rmsnorm(float *y, const float *x, const float *g, int dim, float eps);
/* Rotary embedding of one token's heads in place: x[n_heads][head_dim],
 * the first rope_dim dims of each head rotated by angles a_i (below).
 * neox = false rotates (2i, 2i+1) (llama "normal" mode), true rotates
 * (i, i + rope_dim/2) (qwen2, qwen3). cs[rope_dim] = cos/sin pairs from
 * ops_rope_table. Each pair as ggml's compiled rotation rounds it:
 * x0' = fma(x0, c, -(x1 s)), x1' = fma(x0, s, x1 c). */
void ops_rope(float *x, int n_heads, int head_dim, int rope_dim, bool neox, const float *cs);
/* cs[2i] = cos(a_i), cs[2i+1] = sin(a_i), i < rope_dim/2, with
 *
 *   a_i = pos * freq_scale * base^(-2i / rope_dim) / ff[i]
 *
 * computed as ggml's rope_ext without YaRN (ext_factor 0, attn_factor 1)
 * computes it, in float: theta = pos, multiplied by powf(base, -2 /
 * rope_dim) once per pair (each step rounded), a_i = freq_scale * (theta /
 * ff[i]), then cosf and sinf. So the angles are llama.cpp's bit for bit,
 * with its rounding error, which grows with pos (about pos * i * 6e-8
 * radians). freq_scale is 1/rope.scaling.factor under linear scaling
 * (else 1), ff the rope_freqs.weight factors of Llama 3.x (NULL: all 1). */
void ops_rope_table(float *cs, int pos, int rope_dim, float base, float freq_scale, const float *ff);
/* exp(x) as every fast kernel computes it (softmax, attention, swiglu):
 * the arithmetic of ggml's vector expf (a shifter-constant reduction and a
 * degree-5 polynomial, about 2 ulp), so these round as llama.cpp's do; 0
 * below about -104 and inf above about 88.7. */
float ops_expf(float x);
/* In place over n values: exp(x - max) / sum. */
void ops_softmax(float *x, int n);
/* h[i] = silu(g[i]) * u[i], silu(v) = v / (1 + ops_expf(-v)). h may be g. */
void ops_swiglu(float *h, const float *g, const float *u, int n);
/* y[i] += x[i] */
void ops_add(float *y, const float *x, int n);
/* Dot product in the fixed order the attention uses: 16 lanes over k, then
 * the lanes summed pairwise (l + l+8, l + l+4, l + l+2, l + l+1). */
float ops_dot(const float *a, const float *b, int n);

/* Attention of query tokens of ONE sequence over its KV cache, for the
 * query heads of kv heads [g0, g1) (GQA: query head h reads kv head
 * h / (n_heads / n_kv_heads); per token the keys and the values of a kv
 * head are each streamed once for up to 16 heads of its group, a block
 * of rows staying in L1 while every head uses it). Query t (t < n_q) sits at position pos0 + t and attends to
 * cache rows 0..pos0+t (the cache already holds them, its own included),
 * or only the last a->window of them.
 *   q   [n_q][ldq], head h at q + h*head_dim
 *   k,v row p of kv head g at k + g*head_stride + p*row_stride
 *   out [n_q][ldo], head h at out + h*head_dim
 *   scores: (n_heads / n_kv_heads) * (pos0 + n_q) + 64 * head_dim floats of
 *           scratch
 * score = dot(q, k) * (1/sqrt(head_dim)) with the ops_dot order, softmax
 * in float (max subtracted, ops_expf, sum in position order), out = sum_p e_p v_p in
 * position order (one fma per element), divided by the sum. Per (token,
 * head) a fixed order: invariant to batching and threads. With a->window
 * the positions are those of the window (the sum and the blocks start at
 * its first position). */
typedef struct ops_attn {
	int n_heads, n_kv_heads, head_dim;
	const float *k, *v;	/* this layer's cache */
	size_t head_stride;	/* elements between kv heads */
	size_t row_stride;	/* elements between positions */
	/* Non-NULL: the cache holds IEEE half floats here instead (k and v
	 * unused). Each half is widened exactly on load, so the result is the
	 * f32 kernel's on the widened values, bit for bit. */
	const uint16_t *k16, *v16;
	/* Non-NULL (and k16 NULL): the cache holds q8 rows here instead
	 * (ops_q8_from_f32; the strides count bytes). Widened exactly too. */
	const void *k8, *v8;
	/* With k16: llama.cpp's f16 arithmetic instead of exact widening
	 * into the f32 kernel: each query row is rounded to half before its
	 * dot products with the keys, and the softmax probabilities are
	 * normalized (sum in double, position order) and rounded to half
	 * before they weight the values (ggml converts both operands of an
	 * f16 cache's products to half). Per (token, head) a fixed order, so
	 * batch-invariant too. head_dim <= 512. */
	bool half_math;
	/* With half_math: the queries belong to a sequence that has 2+ tokens
	 * in this step (a prompt batch). llama.cpp multiplies those with its
	 * tiled GEMM instead of its dot product, whose order differs: 16 float
	 * lanes (values l, l+16, ... by fma) summed at the end, for the scores
	 * when head_dim is a multiple of 16 and for the weighted values when
	 * it is a multiple of 4. Depends only on the sequence's own token
	 * count in the step, not on other sequences. */
	bool tiled;
	/* Sliding-window attention: > 0, the query at position p attends to
	 * positions max(0, p - window + 1) .. p only (window positions, its own
	 * included): llama.cpp's LLAMA_SWA_TYPE_STANDARD, which masks key p0
	 * when p - p0 >= n_swa. 0: all of 0 .. p. The window start depends on
	 * p alone, so batching still changes nothing. */
	int window;
} ops_attn_t;
void ops_attention(const ops_attn_t *a, const float *q, size_t ldq, int pos0, int n_q,
		   int g0, int g1, float *out, size_t ldo, float *scores);

/* Starts loading the first keys of kv head g (a prefetch: it changes no
 * result). A caller that knows which head it attends over next calls it
 * before the current one, so the next stream does not start cold. */
void ops_attention_prefetch(const ops_attn_t *a, int g);

/* IEEE binary16 from binary32, rounded to nearest even (overflow to inf,
 * NaN quieted with its payload truncated, as x86's vcvtps2ph), and back
 * (exact). The vector and scalar paths give the same bits. */
void ops_f16_from_f32(uint16_t *dst, const float *src, int n);
void ops_f16_to_f32(float *dst, const uint16_t *src, int n);

/* q8: a row of hd values as hd int8 q_i followed by one f16 scale d per
 * block (32 values when hd is a multiple of 32, else the whole row), the
 * value being q_i * d exactly: ggml's Q8_0 rounding (d = amax / 127 as a
 * half, q = round(x / d)), the scales moved to the row's end so that the
 * int8s of a row are contiguous. A quarter of f32's bytes plus 1/16. */
size_t ops_q8_row_bytes(int hd);
/* One block of n values: *d16 = amax / 127 as a half, q = x / d rounded to
 * nearest even (all 0 when d is 0 or not finite; NaN as 0). */
void ops_q8_block(const float *x, int n, int8_t *q, uint16_t *d16);
void ops_q8_from_f32(void *dst, const float *x, int hd);
void ops_q8_to_f32(float *x, const void *src, int hd);

/* Whether the fast kernels were compiled with AVX-512 ("avx512") or are
 * the portable C fallback ("generic"); both compute the same bits. */
const char *ops_kernel_name(void);

/* ---- reference kernels (oracle) ---- */

/* Y[n][N] = X[n][K] . W^T, W row-major [N][K], double accumulation. */
void ops_ref_matmul(float *y, const float *x, const float *w, int n, int n_out, int n_in);
/* The packed kernel's definition: each element a float fma chain over k
 * from +0. Equal bit for bit to ops_matmul on OPS_W_PACKED. */
void ops_ref_matmul_chain(float *y, const float *x, const float *w, int n, int n_out, int n_in);
void ops_ref_rmsnorm(float *y, const float *x, const float *g, int dim, float eps);
/* Angles recomputed in double from the ops_rope_table formula (ff may be
 * NULL). */
void ops_ref_rope(float *x, int n_heads, int head_dim, int rope_dim, bool neox, int pos, float base,
		  float freq_scale, const float *ff);
void ops_ref_softmax(float *x, int n);
void ops_ref_swiglu(float *h, const float *g, const float *u, int n);
void ops_ref_attention(const ops_attn_t *a, const float *q, size_t ldq, int pos0, int n_q,
		       int g0, int g1, float *out, size_t ldo);

#endif
