/* quant: ggml's quantized block formats, read as they are stored in GGUF.
 *
 * Every supported type stores a row of K values as K / QK blocks, QK = 32
 * (legacy types) or 256 (K-quants, "super-blocks"); the block layouts are
 * ggml's (ggml-common.h), little-endian, packed:
 *
 *   Q4_0   18 B / 32:  f16 d; u8 qs[16]           x = d * (q - 8)
 *   Q4_1   20 B / 32:  f16 d, m; u8 qs[16]        x = d * q + m
 *   Q5_0   22 B / 32:  f16 d; u8 qh[4]; qs[16]    x = d * (q - 16), q 5 bits
 *   Q5_1   24 B / 32:  f16 d, m; qh[4]; qs[16]    x = d * q + m
 *   Q8_0   34 B / 32:  f16 d; i8 qs[32]           x = d * q
 *   IQ4_NL 18 B / 32:  f16 d; u8 qs[16]           x = d * kvalues[q]
 *   Q2_K   84 B / 256: u8 scales[16]; qs[64]; f16 d, dmin
 *                      x = d * (sc & 15) * q - dmin * (sc >> 4), 16 values a scale
 *   Q3_K  110 B / 256: u8 hmask[32]; qs[64]; scales[12] (16 x 6 bits); f16 d
 *                      x = d * (sc - 32) * q, q in [-4, 3], 16 values a scale
 *   Q4_K  144 B / 256: f16 d, dmin; u8 scales[12] (8 x 6-bit scale and min); qs[128]
 *                      x = d * sc * q - dmin * m, 32 values a scale
 *   Q5_K  176 B / 256: as Q4_K plus qh[32] (the fifth bits)
 *   Q6_K  210 B / 256: u8 ql[128]; qh[64]; i8 scales[16]; f16 d
 *                      x = d * sc * (q - 32), 16 values a scale
 *   IQ4_XS 136 B / 256: f16 d; u16 scales_h; u8 scales_l[4]; qs[128]
 *                      x = d * (ls - 32) * kvalues[q], 32 values a scale
 *
 * Exactness. In every type the product of a scale and a quant is exact in
 * f32: an f16 scale has at most 11 significant bits, the sub-block scale at
 * most 8 and the quant at most 6, so d * sc * q < 2^24 in units of its last
 * bit, whatever the order of the multiplications. The only rounding is the
 * addition of the offset (Q4_1, Q5_1, Q2_K, Q4_K, Q5_K), done once, in f32.
 * So each value is the one llama.cpp's dequantize_row_* and gguf-py's numpy
 * dequantizer compute, bit for bit (tested against the reference values in
 * shared/testdata/kquant). The f16 scales go through an exact conversion that
 * keeps subnormals (most Q6_K and Q5_K scales of real models are subnormal).
 *
 * Everything here is pure and reads only the bytes it is given: any thread. */
#ifndef QUANT_H
#define QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ggml_type numbers of the quantized types margin reads. */
enum quant_type {
	QUANT_Q4_0 = 2,
	QUANT_Q4_1 = 3,
	QUANT_Q5_0 = 6,
	QUANT_Q5_1 = 7,
	QUANT_Q8_0 = 8,
	QUANT_Q2_K = 10,
	QUANT_Q3_K = 11,
	QUANT_Q4_K = 12,
	QUANT_Q5_K = 13,
	QUANT_Q6_K = 14,
	QUANT_IQ4_NL = 20,
	QUANT_IQ4_XS = 23,
};

/* The unquantized ggml_type numbers a mix gives some tensors (the same as
 * gguf.h's GGUF_TTYPE_F32, _F16 and _BF16; gguf.c checks). Not "supported"
 * above: they are no block format. */
enum quant_float_type {
	QUANT_F32 = 0,
	QUANT_F16 = 1,
	QUANT_BF16 = 30,
};

#define QUANT_QK 32		/* values per legacy block */
#define QUANT_QK_K 256		/* values per K-quant super-block */

/* Whether type (a ggml_type number) is one of the above. */
bool quant_supported(uint32_t type);
/* Values per block and bytes per block of a supported type; 0 otherwise. */
int quant_block_values(uint32_t type);
int quant_block_bytes(uint32_t type);
/* Bytes of a row of n values (n a multiple of the block size), 0 if n is
 * not whole blocks or the type is not supported. */
size_t quant_row_bytes(uint32_t type, int64_t n);

/* Dequantizes n values (whole blocks) of a row: dst[n] from the blocks at
 * src. The plain definition above, block by block; dst's bits are the same
 * on every build. -EINVAL for an unsupported type or n not whole blocks. */
int quant_dequant_row(uint32_t type, const void *src, float *dst, int64_t n);

/* Checks that a quantized row's scales are finite (an f16 scale of inf or
 * NaN poisons every value of its block): 0, or -EBADMSG with *ret_block set
 * to the first bad block. A loader calls it on every row of a file it keeps
 * packed, so a hostile file is refused at load instead of producing NaN
 * logits later. */
int quant_check_row(uint32_t type, const void *src, int64_t n, int64_t *ret_block);

/* ---- the writer's side: quantization ----
 *
 * quant_quantize_row: n values (whole blocks) of src into blocks of type at
 * dst (quant_row_bytes(type, n) bytes). Deterministic: the same input gives
 * the same bytes on every build. Not llama-quantize's bits for the K types
 * (it searches more), but valid blocks of the same layouts, finite scales,
 * every value rounded to the level nearest to it under the scales stored
 * (quant.c has the method). 0, -EINVAL for an unsupported type, n not whole
 * blocks or a value that is not finite, -ERANGE when a block needs a scale
 * past f16's range (|x| above about 65504 x the type's largest level);
 * dst's content is unspecified after an error.
 *
 * Error bounds, per value, |x - dequant(quant(x))| <= (test_quant checks
 * them on Gaussian, uniform, outlier, constant, tiny and large inputs):
 *
 *   Q8_0   A/254            Q4_0  A/8          Q5_0  A/16         IQ4_NL 0.111 A
 *   Q4_1   R/30             Q5_1  R/62
 *   Q2_K   0.173 R'         Q3_K  0.267 A      Q4_K  R'/29.7      Q5_K   R'/61.5
 *   Q6_K   0.036 A          IQ4_XS 0.127 A
 *
 * A = max |x| of the block (legacy types) or super-block (K types); R =
 * max x - min x of the block; R' = the largest, over the super-block's
 * groups, of max x - min(0, min x) (the K types' offset is subtracted, so
 * their range takes in 0). Half a step of the largest group, or, for the
 * symmetric types, one step on the side of the grid that has a level less
 * (Q4_0: -8..7; IQ4: -127..113, gap 14) plus what the integer group scales
 * lose (Q3_K 1/62, Q6_K 1/254, IQ4_XS 1/62 of A). Each bound is the
 * method's worst case (the tests reach 0.99 of it for most types, 0.94 to
 * 0.97 for Q2_K, Q3_K and IQ4_XS, 0.7 for Q6_K); times (1 + 2^-9)
 * for the f16 rounding of the scales, plus L x 2^-24 where scales are f16
 * subnormals (tiny weights: A below about 1e-4 for Q6_K), L the type's
 * largest level x scale product (Q8_0 127, Q4_K 1008, Q6_K 4096). Relative
 * RMS errors on N(0, 1) data: Q8_0 0.0054, Q6_K 0.018, Q5_K 0.038, Q5_1
 * 0.038, Q5_0 0.042, Q4_K 0.078, Q4_1 0.078, IQ4_NL 0.078, IQ4_XS 0.079,
 * Q4_0 0.085, Q3_K 0.153, Q2_K 0.329. */
int quant_quantize_row(uint32_t type, const float *src, void *dst, int64_t n);

/* ---- mixes: which type each tensor of a model gets ----
 *
 * A mix is what llama-quantize calls a file type ("Q4_K_M"): a base type
 * plus rules that give some tensors more bits. general.file_type holds its
 * llama_ftype number. */
enum quant_ftype {
	QUANT_FTYPE_ALL_F32 = 0,
	QUANT_FTYPE_F16 = 1,
	QUANT_FTYPE_Q4_0 = 2,
	QUANT_FTYPE_Q4_1 = 3,
	QUANT_FTYPE_Q8_0 = 7,
	QUANT_FTYPE_Q5_0 = 8,
	QUANT_FTYPE_Q5_1 = 9,
	QUANT_FTYPE_Q2_K = 10,
	QUANT_FTYPE_Q3_K_S = 11,
	QUANT_FTYPE_Q3_K_M = 12,
	QUANT_FTYPE_Q3_K_L = 13,
	QUANT_FTYPE_Q4_K_S = 14,
	QUANT_FTYPE_Q4_K_M = 15,
	QUANT_FTYPE_Q5_K_S = 16,
	QUANT_FTYPE_Q5_K_M = 17,
	QUANT_FTYPE_Q6_K = 18,
	QUANT_FTYPE_IQ4_NL = 25,
	QUANT_FTYPE_IQ4_XS = 30,
	QUANT_FTYPE_BF16 = 32,
};

typedef struct quant_mix {
	const char *name;	/* canonical lower-case name, static */
	uint32_t ftype;		/* enum quant_ftype: general.file_type */
	uint32_t base;		/* ggml type of most matrices (F32 0, F16 1,
				   BF16 30, or a quantized type) */
	/* Facts about the model that some rules read; parse sets the
	 * defaults, the caller sets them for its model: */
	int n_gqa;		/* n_heads / n_kv_heads (1) */
	bool tied_output;	/* no output.weight: token_embd is the output (false) */
} quant_mix_t;

/* Names, case ignored: f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q2_k,
 * q3_k_s, q3_k_m (or q3_k), q3_k_l, q4_k_s, q4_k_m (or q4_k), q5_k_s,
 * q5_k_m (or q5_k), q6_k, iq4_nl, iq4_xs. 0 or -EINVAL. */
int quant_mix_parse(const char *name, quant_mix_t *ret);
/* The mix with general.file_type ftype: 0 or -EINVAL. */
int quant_mix_from_ftype(uint32_t ftype, quant_mix_t *ret);
/* The i-th canonical name (for help texts), NULL past the end. Static. */
const char *quant_mix_name(size_t i);

/* The ggml type the tensor tensor_name (GGUF name, "blk.3.attn_v.weight")
 * gets in mix, for layer (-1: read from "blk.N.") of n_layers and rows of
 * row_len values (ne[0]). llama.cpp's llama_tensor_get_type (llama-quant.cpp
 * at c392e509) for llama-like models (no experts, not Falcon, no imatrix,
 * not the 70B special case):
 *
 * - Left as the source, F32 here: names not ending in "weight", norms
 *   ("_norm.weight"), rope_freqs.weight (1-D), and the few other kinds
 *   llama-quantize never touches.
 *   A llama-like model's 1-D tensors are all norms or biases, so the name
 *   decides (a writer keeps any 1-D tensor F32 anyway).
 * - f32, f16, bf16 mixes: every other tensor in that type.
 * - output.weight, and token_embd.weight when the output is tied: Q8_0 if
 *   row_len is not whole blocks of the base type, else Q6_K (Q8_0 stays).
 *   An untied token_embd.weight keeps the base type.
 * - attn_v: Q2_K -> Q4_K if n_gqa >= 4 else Q3_K; Q3_K_M -> Q5_K for
 *   layers 0, 1, Q4_K after; Q3_K_L -> Q5_K; IQ4_NL/IQ4_XS -> Q5_K if
 *   n_gqa >= 4; Q4_K_M/Q5_K_M -> Q6_K on use_more_bits layers; Q4_K_S ->
 *   Q5_K for layers 0..3.
 * - ffn_down: Q2_K -> Q3_K; Q3_K_M -> Q5_K below n_layers/16, else Q4_K;
 *   Q3_K_L -> Q5_K; Q4_K_M/Q5_K_M -> Q6_K on use_more_bits layers;
 *   IQ4_NL/IQ4_XS and Q4_K_S -> Q5_K below n_layers/8.
 * - attn_output: Q2_K -> Q3_K, Q3_K_M -> Q4_K, Q3_K_L -> Q5_K.
 * - attn_qkv (fused): Q3_K_M/L -> Q4_K, Q4_K_M -> Q5_K, Q5_K_M -> Q6_K.
 * - use_more_bits(i, n): i < n/8 || i >= 7n/8 || (i - n/8) % 3 == 2
 *   (6 layers: 2 and 5; 32 layers: 0-3, 6, 9, ..., 27, 28-31).
 * - Then, if row_len is not whole blocks of the type: Q2_K, Q3_K, IQ4_XS
 *   -> IQ4_NL; Q4_K -> Q5_0; Q5_K -> Q5_1; Q6_K -> Q8_0; and F16 if still
 *   not whole blocks (llama-quantize refuses a legacy type there; F16 is
 *   what it falls back to otherwise). stories15M (rows of 288) in Q4_K_M:
 *   Q5_0 for most matrices, Q8_0 for the tied embedding and the
 *   use_more_bits attn_v, Q4_K / Q6_K for ffn_down (rows of 768). */
uint32_t quant_mix_type(const quant_mix_t *mix, const char *tensor_name, int layer, int n_layers,
			int64_t row_len);

#endif
