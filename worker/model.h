/* model: a LLaMA / Qwen2 / Qwen3 transformer in three parts, as in llama2.c:
 * hyper-parameters (model_config_t), weights (converted to f32 at load and
 * owned by the model, repacked for the kernel: see ops.h), and per-step
 * activations (model_scratch_t, owned by the caller). model_forward() is
 * pure with respect to the model: it reads the weights, reads/writes only
 * the KV caches and scratch it is given, and logs nothing. A model_t is
 * read-only after creation: several threads may run model_forward() on it
 * at once, each with its own scratch and caches.
 *
 * Batched forward: one call processes n tokens that may belong to different
 * sequences (a prefill chunk of one sequence, one decode token of each of
 * many, or a mix). Every weight matrix is applied to all n rows with one
 * kernel call (q|k|v and gate|up are fused matrices). Attention is computed
 * per sequence, so a sequence's logits do not depend on which others share
 * the step (batch invariance: every element's reduction order is fixed
 * whatever n is; see ops.h and docs/kernels.md). */
#ifndef MODEL_H
#define MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "tok.h"

/* The architectures model_load runs (general.architecture); any other is
 * refused by name. Mistral files are "llama" (with a sliding window). */
typedef enum model_arch {
	MODEL_ARCH_LLAMA = 0,
	MODEL_ARCH_QWEN2 = 1,
	MODEL_ARCH_QWEN3 = 2,
} model_arch_t;

/* {arch}.rope.scaling.type: how the positions are scaled. YaRN, LongRoPE
 * and anything else are refused at load. Independently of it, a
 * rope_freqs.weight tensor divides each frequency by its factor (as in
 * llama.cpp, whatever the type). */
typedef enum model_rope_scaling {
	MODEL_ROPE_SCALING_NONE = 0,	/* "none", or no type, no factor, no rope_freqs */
	MODEL_ROPE_SCALING_LINEAR,	/* "linear", or no type with a factor (llama.cpp's
					   default): positions times 1/factor */
	MODEL_ROPE_SCALING_LLAMA3,	/* "llama3", or no type and no factor but a
					   rope_freqs tensor (the converter's Llama 3.x
					   files): the factors do it all, positions unscaled */
} model_rope_scaling_t;

/* Zero is the default of every field added after the first two
 * architectures, so a designated initializer that leaves them out means
 * "no such feature". */
typedef struct model_config {
	model_arch_t arch;
	char arch_name[16];	/* "llama", "qwen2", "qwen3" */
	char name[64];		/* general.name or preset name */
	int dim;		/* embedding_length */
	int n_layers;		/* block_count */
	int n_heads;		/* attention.head_count */
	int n_kv_heads;		/* attention.head_count_kv */
	int head_dim;		/* attention.key_length, else dim / n_heads (qwen3:
				   n_heads * head_dim may differ from dim) */
	int ffn_dim;		/* feed_forward_length */
	int vocab_size;
	int n_ctx;		/* context_length (training context) */
	int rope_dim;		/* rope.dimension_count (<= head_dim) */
	float rope_base;	/* rope.freq_base, 10000 if absent */
	float norm_eps;		/* attention.layer_norm_rms_epsilon */
	bool rope_neox;		/* false: rotate pairs (2i, 2i+1) (llama);
				   true: rotate (i, i + rope_dim/2) (qwen2, qwen3) */
	bool qkv_bias;		/* qwen2: q/k/v projections carry biases */
	bool tied_output;	/* output matrix is the token embedding */
	/* RoPE scaling (ops_rope_table has the angle formula) */
	model_rope_scaling_t rope_scaling;
	float rope_scaling_factor;	/* rope.scaling.factor, 0 if absent; LINEAR
					   scales positions by its inverse. A LLAMA3
					   preset: the factor synth makes rope_freqs
					   from (not written: files carry the tensor) */
	int rope_orig_ctx;	/* rope.scaling.original_context_length, 0 if
				   absent; a LLAMA3 preset: rope_freqs' original
				   context (not written either) */
	bool rope_freqs;	/* a rope_freqs.weight [rope_dim/2] divides
				   frequency i by its element i (Llama 3.x) */
	int sliding_window;	/* llama attention.sliding_window (Mistral): a
				   token at p attends to max(0, p-W+1)..p; 0: all */
	bool qk_norm;		/* qwen3: RMSNorm of each q and k head
				   (attn_q_norm, attn_k_norm [head_dim]) after
				   the projection, before RoPE */
	int pooling_type;	/* {arch}.pooling_type as llama.cpp numbers it
				   (0 none or absent, 1 mean, 2 cls, 3 last,
				   4 rank; any other value kept as read): how an
				   embedding is pooled from the final hidden
				   states (engine.h says what is used) */
} model_config_t;

typedef struct model model_t;
typedef struct model_kv model_kv_t;
typedef struct model_scratch model_scratch_t;

/* Load a GGUF model file (weights converted to f32 at load). *ret owned by
 * the caller. -EBADMSG/-ENOTSUP/-errno with err naming the key/tensor. */
int model_load(const char *path, model_t **ret, char *err, size_t errlen);
void model_destroy(model_t **m);

/* Load options (NULL = defaults). */
typedef enum model_weights {
	MODEL_WEIGHTS_AUTO,
	MODEL_WEIGHTS_F32,
	MODEL_WEIGHTS_Q8,
	/* MODEL_WEIGHTS_MIX + i: every matrix quantized at load into the mix
	 * quant_mix_name(i) (llama.cpp's per-tensor types, quant.h) unless
	 * the file already holds it so, kept as blocks and multiplied the way
	 * llama.cpp does (qmm.h). How a preset gets a Q4_K_M model, etc. */
	MODEL_WEIGHTS_MIX = 16,
} model_weights_t;
/* "auto", "f32", "q8_0-panels" (MODEL_WEIGHTS_Q8), or a quantized mix
 * ("q8_0", "q4_0", "q4_k_m", "q6_k", ...: MODEL_WEIGHTS_MIX + i): -EINVAL
 * for anything else. */
int model_weights_parse(const char *s, model_weights_t *ret);
const char *model_weights_name(model_weights_t w);

/* The float order of the integer kernels (qmm.h enum qmm_order). LLAMA
 * (default, "llama"): llama.cpp's x86 lanes, so the logits are llama.cpp's
 * bit for bit. FAST ("fast"): every Q5_0, Q8_0, IQ4_NL, Q4_K, Q5_K and Q6_K
 * block summed whole in int32 before its scale, 1.2-1.5x the products at
 * batch 32 (docs/kernels.md section 12); other bits, as batch-invariant. */
typedef enum model_arith {
	MODEL_ARITH_LLAMA = 0,
	MODEL_ARITH_FAST = 1,
} model_arith_t;
/* "llama" or "fast"; -EINVAL otherwise. */
int model_arith_parse(const char *s, model_arith_t *ret);
const char *model_arith_name(model_arith_t a);

typedef struct model_opts {
	/* false (default): weights packed for the batch-invariant kernel
	 * (ops.h). true: row-major weights and OpenBLAS sgemv/sgemm: NOT
	 * batch-invariant (a sequence's logits change in the last bits with the
	 * batch it shares); the caller sets the BLAS threads with
	 * openblas_set_num_threads. See docs/kernels.md. */
	bool blas;
	/* Matrices in f32 or in Q8 (int8 with an f16 scale per 32 values, a
	 * quarter of the bytes; ops.h OPS_W_PACKED_Q8). AUTO (default): Q8
	 * where every tensor of a matrix is Q8_0 in the file (the blocks are
	 * kept, so the logits are those of the f32 widening, bit for bit, in
	 * 0.27 of the memory), f32 otherwise. Q8: every packed matrix whose
	 * rows are whole blocks, quantized at load if the file has other
	 * types (the values change). F32: everything widened. Unused with
	 * blas. */
	model_weights_t weights;
	/* The quantized kernels' float order (above). */
	model_arith_t arith;
} model_opts_t;
int model_load_opts(const char *path, const model_opts_t *o, model_t **ret,
		    char *err, size_t errlen);

/* A generator of weights and a tokenizer (synth.h's): rows [row0, row0 +
 * n_rows) of tensor name of cfg as f32 into dst[n_rows][ne0], and a
 * tokenizer of n_tokens tokens (*ret owned by the caller). */
typedef struct model_gen {
	int (*rows)(const model_config_t *cfg, const char *name, uint64_t row0, uint64_t n_rows, float *dst);
	int (*tok_new)(uint32_t n_tokens, tok_t **ret, char *err, size_t errlen);
} model_gen_t;
/* A model of configuration c whose weights and tokenizer come from gen
 * instead of a file (model_new_synth). label names it in errors ("LABEL:
 * out of memory"). *ret owned by the caller. */
int model_new_generated(const char *label, const model_config_t *c, const model_opts_t *o,
			const model_gen_t *gen, model_t **ret, char *err, size_t errlen);
/* Whether the model runs the OpenBLAS (non-invariant) kernels. */
bool model_uses_blas(const model_t *m);

/* The tensors a model of this configuration has, with GGUF names and
 * shapes (ne[0] innermost): what model_load requires and synth writes.
 * Fills up to max specs; returns the total count. */
typedef struct model_tensor_spec {
	char name[48];
	uint32_t n_dims;	/* 1 or 2 */
	uint64_t ne[2];
} model_tensor_spec_t;
int model_tensor_specs(const model_config_t *c, model_tensor_spec_t *ret, int max);
/* Parameter counts of a configuration, without building it. */
uint64_t model_config_n_params(const model_config_t *c);
uint64_t model_config_n_params_per_token(const model_config_t *c);

const model_config_t *model_config(const model_t *m);
/* Borrowed: owned by the model. */
const tok_t *model_tok(const model_t *m);
/* Parameters of the whole model (embedding + layers + norms + output; a
 * tied output counted once). */
uint64_t model_n_params(const model_t *m);
/* Parameters read per decoded token: the layers (matrices, norms, biases),
 * the final norm and the output head; not the embedding table (a row is
 * copied, not multiplied). llama-110m: 109,529,856. 2 x the matrix part is
 * the matmul FLOPs of a token (model_token_flops). */
uint64_t model_n_params_per_token(const model_t *m);
/* Bytes of weights the model holds (f32, Q8 matrices where model_opts_t
 * weights asked for them). */
uint64_t model_weight_bytes(const model_t *m);
/* Bytes of the matrices a step reads, over what they take in f32: 1 with
 * f32 weights, about 0.27 with Q8. */
double model_matrix_bytes_ratio(const model_t *m);

/* The element type of a KV cache. f32 holds what the model computed;
 * f16 (half the bytes) and q8_0 (int8 with an f16 scale per 32 values:
 * 0.27 of the bytes) round each K and V row as it is stored. Every type is
 * batch-invariant: a row is rounded alone, and attention widens it exactly
 * and runs the f32 kernel's order. */
typedef enum model_kv_type {
	MODEL_KV_F32,
	MODEL_KV_F16,
	MODEL_KV_Q8,
} model_kv_type_t;
/* What a worker and `run` use unless told otherwise. */
#define MODEL_KV_DEFAULT "f16"
/* "f32", "f16", "q8_0"; parse: -EINVAL for anything else. */
const char *model_kv_type_name(model_kv_type_t t);
int model_kv_type_parse(const char *s, model_kv_type_t *t);

/* One sequence's KV cache: [n_layers][n_kv_heads][n_ctx][head_dim] for K
 * and for V in the given type, allocated up front (untouched pages: RSS
 * grows as positions fill). n_ctx <= the model's n_ctx, else -EINVAL.
 * -ENOMEM fails the request, not the process. */
int model_kv_new(const model_t *m, int n_ctx, model_kv_type_t type, model_kv_t **ret);
void model_kv_destroy(model_kv_t **kv);
size_t model_kv_bytes(const model_t *m, int n_ctx, model_kv_type_t type);
int model_kv_n_ctx(const model_kv_t *kv);
model_kv_type_t model_kv_type(const model_kv_t *kv);

/* Activations for up to max_tokens tokens in one step, and a pool of
 * threads compute threads (threads - 1 new pthreads; the caller's thread
 * is the other) that runs the matrix products, attention and, for steps of
 * 8+ tokens, the row-wise work. Everything a step needs is allocated here:
 * model_forward never allocates. With model_opts_t.blas the matrix
 * products run on OpenBLAS's threads instead (the caller sets their number
 * with openblas_set_num_threads). Owned by the caller; one thread at a
 * time uses it. -EINVAL, -ENOMEM, -errno from pthread_create. */
int model_scratch_new(const model_t *m, int max_tokens, int threads, model_scratch_t **ret);
void model_scratch_destroy(model_scratch_t **s);

/* Where a forward pass spends its time, for `margin-worker bench
 * --profile`: the matrix products by weight (q|k|v, attention output,
 * gate|up, down, the output head), attention over the caches, and the
 * row-wise work between them (embedding lookup, norms, RoPE, KV writes,
 * SwiGLU, residual adds). With profiling on, model_forward adds the wall
 * time of each phase (monotonic clock, both threads' work inside it) to
 * the scratch's counters; off (the default), it reads no clock. */
enum model_phase {
	MODEL_PH_QKV = 0,
	MODEL_PH_ATTN,
	MODEL_PH_WO,
	MODEL_PH_W13,
	MODEL_PH_W2,
	MODEL_PH_HEAD,
	MODEL_PH_ROWS,
	MODEL_N_PHASES,
};
/* "qkv", "attention", "attn_output", "gate_up", "ffn_down", "output_head",
 * "row_wise"; NULL out of range. */
const char *model_phase_name(int phase);
void model_scratch_profile(model_scratch_t *s, bool on);
/* The counters (ns since the last reset), and their reset. */
void model_scratch_profile_get(const model_scratch_t *s, uint64_t ns[MODEL_N_PHASES]);
void model_scratch_profile_reset(model_scratch_t *s);

typedef struct model_batch {
	int n;			/* tokens in this step, 1..max_tokens */
	const int32_t *tokens;	/* [n] */
	const int32_t *pos;	/* [n] position in its sequence; tokens of one
				   sequence are contiguous with ascending pos */
	model_kv_t *const *kv;	/* [n] the cache of each token's sequence */
	const bool *logits_wanted;	/* [n], NULL = only the last token of each sequence */
	float *logits;		/* out: [n_wanted][vocab_size], in token order */
	uint64_t *flops;	/* out, may be NULL: [n] FLOPs attributed to each
				   token (matrix products + its attention) */
	const bool *hidden_wanted;	/* [n], NULL = none: tokens whose final hidden
					   state is wanted (embeddings) */
	float *hidden;		/* out: [n_hidden][dim], in token order: the
				   state after the output norm, what feeds the
				   output head (llama.cpp's embeddings) */
} model_batch_t;

/* Run one step: writes each token's K and V into its cache at its
 * position, logits for the wanted tokens and the normed hidden states of
 * the hidden-wanted ones (a token may be both, or neither: a token wanting
 * only its hidden state skips the output head). A token at position p attends
 * to positions 0..p of its cache (max(0, p - W + 1)..p with a sliding
 * window W), which earlier steps (or earlier tokens of this step) must have
 * filled. Returns the number of logits rows written, or
 * -EINVAL (bad token id, position >= the kv's n_ctx, a cache of another
 * model, n > max_tokens); nothing is written then. */
int model_forward(const model_t *m, model_scratch_t *s, const model_batch_t *b);

/* FLOPs of one token at position pos (0-based) through the whole model,
 * with or without the output head: the accounting formula.
 *
 *   matmuls   2 * n_layers * dim * (q_dim + 2*kv_dim + q_dim + 3*ffn_dim)
 *   attention 4 * n_layers * n_heads * head_dim * min(pos + 1, W)
 *             (q.k and p.v over the pos + 1 cached positions, or the
 *             sliding window's W)
 *   head      2 * dim * vocab_size, only with_logits
 *
 * q_dim = n_heads * head_dim, kv_dim = n_kv_heads * head_dim. Norms (q/k
 * norms too), rope,
 * softmax, biases and activations (O(dim) per token) are left out. */
uint64_t model_token_flops(const model_t *m, int pos, bool with_logits);

/* Sizing a model without loading it (inspect). The configuration a GGUF
 * file describes, as model_load reads it (-ENOTSUP for an architecture
 * margin does not run, -EBADMSG, with err). */
int model_config_read(const gguf_t *g, model_config_t *ret, char *err, size_t errlen);
/* model_kv_bytes of a model of configuration c (equal to it: test_gguf). */
size_t model_config_kv_bytes(const model_config_t *c, int n_ctx, model_kv_type_t type);

#endif
