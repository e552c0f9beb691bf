/* shape: a model's shape for capacity planning and estimates — parameter
 * count, weight bytes, layers, KV heads, head dim — from a named preset or
 * read from a GGUF file's metadata and tensor table (the weights are never
 * read).
 *
 * The presets are the full-size shapes of the worker's synthetic presets
 * (`margin-worker synth --arch NAME`: llama-110m, qwen2-0.5b, qwen3-0.6b,
 * llama3.2-1b, llama2-7b, mistral-7b, qwen2-7b, llama3-8b) plus larger
 * published shapes the worker does not build (llama2-13b, llama2-70b,
 * llama3-70b: the models' config.json). The worker's table is in
 * worker/synth.c, which the meter cannot link (areas share lib/ only); the
 * parameter counts here are checked against the worker's by the unit tests
 * (llama2-7b: 6,738,415,616, as model_config_n_params).
 *
 * Parameters of a dense llama-family model of dim d, L layers, q = heads x
 * head_dim, kv = kv_heads x head_dim, ffn f, vocab V:
 *   per layer  d (q + 2 kv) + q d + 3 d f    matrices
 *            + 2 d                            norms
 *            + (q + 2 kv)                     qkv biases (qwen2)
 *            + 2 head_dim                     q/k norms (qwen3)
 *   model      L x per layer + d V (embedding) + d (final norm)
 *            + d V unless the output is tied to the embedding.
 * A preset's weight bytes: matrices in the dtype, 1-D tensors in f32 (as
 * llama.cpp and `margin-worker synth` write them).
 *
 * KV cache per token (f16, what a worker uses by default): 2 (K and V) x
 * layers x kv_heads x head_dim x 2 bytes; a sequence holds min(context,
 * sliding window) tokens.
 *
 * A shape_t is a plain value. Pure functions; any thread. */
#ifndef SHAPE_H
#define SHAPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct shape {
	char name[64];		/* preset name, or general.name / the file name */
	char arch[16];		/* "llama", "qwen2", "qwen3" */
	char source[256];	/* where the shape comes from */
	uint32_t dim, n_layers, n_heads, n_kv_heads, head_dim, ffn_dim, vocab;
	uint32_t n_ctx;		/* training context (0 when the file does not say) */
	uint32_t sliding_window;	/* 0: attends to the whole context */
	uint64_t n_params;		/* every weight */
	uint64_t n_params_per_token;	/* weights a token multiplies: all but the embedding table */
	uint64_t weight_bytes;		/* as stored (file or dtype) */
	char dtype[24];			/* "f16", "q8_0", ..., or "mostly q4_k" for a file's mix */
	bool fp16_compute;		/* 16-bit or quantized weights: the fp16 peak applies */
} shape_t;

/* A preset in dtype ("f32", "f16", "bf16", "q8_0", "q4_0"; NULL = "f16").
 * -ENOENT for an unknown name, -EINVAL for an unknown dtype, with a
 * message listing the known names. */
int shape_preset(const char *name, const char *dtype, shape_t *ret, char *err, size_t errlen);
size_t shape_n_presets(void);
const char *shape_preset_name(size_t i);	/* NULL past the end; static */

/* Reads the shape of a GGUF file (v2 or v3): general.architecture and
 * {arch}.embedding_length, block_count, attention.head_count,
 * attention.head_count_kv (default: head_count), attention.key_length
 * (default dim / heads), feed_forward_length, context_length,
 * attention.sliding_window; the parameter count is the sum of the tensors'
 * elements, the weight bytes the tensor data (file size - data offset),
 * the dtype the type holding most 2-D elements. -errno from opening,
 * -EBADMSG for a corrupt or truncated file (with the offset or key),
 * -ENOTSUP for a file without the keys of a transformer. */
int shape_from_gguf(const char *path, shape_t *ret, char *err, size_t errlen);

/* "model" when spec ends in ".gguf" or contains '/', else a preset
 * (dtype applies to presets only: -EINVAL when given with a file). */
int shape_load(const char *spec, const char *dtype, shape_t *ret, char *err, size_t errlen);

/* f16 KV cache bytes per token, and per sequence of ctx tokens (capped at
 * the sliding window). */
uint64_t shape_kv_bytes_per_token(const shape_t *s);
uint64_t shape_kv_bytes_per_seq(const shape_t *s, uint64_t ctx);
/* Attention FLOPs of one token at position ctx (scores and weighted sum:
 * 4 x layers x heads x head_dim x attended tokens). */
double shape_attn_flops(const shape_t *s, double ctx);

#endif
