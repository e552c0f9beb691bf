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

#endif
