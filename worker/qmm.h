/* qmm: matrix products over quantized weights kept as their GGUF blocks,
 * computed the way llama.cpp's CPU backend computes them.
 *
 * Y[n x N] = X[n x K] . W^T where each row of W is a row of ggml blocks
 * (quant.h) as stored in the file (or its mapping). llama.cpp does not
 * multiply dequantized weights by float activations: it first quantizes
 * each activation row in blocks to the weight type's "vec_dot_type" and
 * then sums integer products block by block. margin does the same, so its
 * logits follow llama.cpp's to float rounding instead of differing by the
 * activation-quantization noise (about 1% of a logit on stories15M, enough
 * to change greedy tokens; docs/kernels.md):
 *
 *   A8_0 (Q4_0, Q5_0, Q8_0, IQ4_NL weights): per 32 values d = amax / 127
 *        rounded to f16, q = round-to-nearest-even(x * (127 / amax)), as
 *        ggml's x86 quantize_row_q8_0.
 *   A8_1 (Q4_1, Q5_1): as A8_0, plus s = f16(d * sum q) for the offsets.
 *   A8_K (the K-quants, IQ4_XS): per 256 values, scale -127 / (the value of
 *        largest magnitude), q = min(127, nearest(x * scale)), d = 1 / scale
 *        in f32, and the sums of q per 16 (ggml's quantize_row_q8_K).
 *
 * A block's integer products are summed exactly in int32 (sub-block scales
 * and mins applied as integers), then scaled in f32; the blocks of a row are
 * summed in order into one f32 accumulator:
 *
 *   legacy:  acc += (dw * da) * isum            (+ mw * sa for Q4_1/Q5_1)
 *   K-quant: acc += (da * dw) * isum - (da * dminw) * imin
 *
 * In that formula's terms, llama.cpp's x86 kernels (and margin by default,
 * QMM_LLAMA) keep 8 float lanes for every type but Q4_0: lane k of a block
 * sums the products of positions 4k..4k+3 (mod 32) in int32 (the K types
 * with their sub-block scales), each lane accumulates fma(d, lane, acc_k)
 * over the blocks, the mins go into accumulators of their own, and the 8
 * lanes are summed at the end ((0 + 4) + (2 + 6)) + ((1 + 5) + (3 + 7)).
 * That costs a conversion and an fma per 4 products, and the K types a
 * vpmaddubsw and a vpdpwssd per 64 (the scale applied per lane).
 * QMM_BLOCKS takes the formula as written for Q5_0, Q8_0, IQ4_NL, Q4_K,
 * Q5_K and Q6_K: acc = fma(d, isum, acc) per block, then (Q4_K, Q5_K)
 * acc = fma(dmin, imin, acc) with dmin = -(da * dminw); one conversion and
 * fma per block, and for the K types a vpdpbusd per 64 products and a
 * vpmulld by the scale per 16 or 32 values (for the legacy types that is
 * the order of llama.cpp's portable C and ARM kernels, for the K types
 * margin's own). Other bits than llama.cpp's x86 build; the same definition
 * on every path and batch size. Q2_K, Q3_K, IQ4_XS, Q4_0, Q4_1 and Q5_1
 * have the one order.
 *
 * Every output element is one such chain over its row, whatever the batch
 * size, tile or thread that computes it: batch-invariant by construction
 * (DESIGN.md "Determinism"). The portable C path and the AVX-512 path
 * compute the same integers and run the same float operations in the same
 * order, so they give the same bits (tested). */
#ifndef QMM_H
#define QMM_H

#include <stddef.h>
#include <stdint.h>

#include "ops.h"

/* Activation block formats. */
enum qmm_act {
	QMM_A8_0 = 0,
	QMM_A8_1 = 1,
	QMM_A8_K = 2,
	QMM_N_ACT = 3,
};

/* The activation format a weight type multiplies with; -1 for a type
 * quant.h does not support. */
int qmm_act_for(uint32_t wtype);
/* Bytes of one quantized activation row of K values (K a multiple of 256
 * for A8_K, of 32 otherwise; 0 if not). */
size_t qmm_act_row_bytes(enum qmm_act a, int K);
/* Quantizes x[K] into dst (qmm_act_row_bytes). */
void qmm_quantize(enum qmm_act a, const float *x, void *dst, int K);

/* The float order (above); an OPS_W_QROWS matrix's ops_w_t.qorder. */
enum qmm_order {
	QMM_LLAMA = 0,		/* llama.cpp's x86 lanes (the default) */
	QMM_BLOCKS = 1,		/* whole-block sums */
};
/* The dot product of one weight row (K values of type wtype) with one
 * quantized activation row of the matching format, as defined above. */
float qmm_dot(uint32_t wtype, enum qmm_order o, const void *wrow, const void *arow, int K);
/* The same, with the portable C code whatever the build (the tests compare
 * the two). */
float qmm_dot_ref(uint32_t wtype, enum qmm_order o, const void *wrow, const void *arow, int K);

/* Scratch bytes qmm_matmul needs for n rows of a matrix with K columns. */
size_t qmm_ws_bytes(int n, int K);

/* Y[n][ldy] (first N columns) = X[n][ldx] (first K columns) . W^T for w in
 * layout OPS_W_QROWS. ws: qmm_ws_bytes(n, K) bytes of scratch, 64-byte
 * aligned. Runs on the pool (NULL: the caller's thread). */
void qmm_matmul(ops_pool_t *p, float *y, size_t ldy, const float *x, size_t ldx,
		const ops_w_t *w, int n, void *ws);

/* The build's kernels: "avx512-vnni" (AVX-512 F, BW and VNNI) or "generic"
 * (the portable C, same bits). */
const char *qmm_kernel_name(void);

#endif
