/* model: LLaMA / Qwen2 / Qwen3 weights (from GGUF or a synthetic preset), KV caches,
 * scratch, and the batched forward pass. See model.h for the contract and
 * ops.h for the kernels and why they are batch-invariant. */
#include "model.h"
#include "lib/mg_clock.h"
#include "lib/mg_err.h"
#include "lib/mg_hash.h"

#include "ops.h"
#include "qmm.h"
#include "quant.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One transformer block. Matrices are [N out][K in] as in GGUF; q|k|v and
 * gate|up are fused so each is one kernel call over all rows of a step. */
typedef struct layer {
	float *attn_norm;	/* owned: [dim] */
	float *ffn_norm;	/* owned: [dim] */
	ops_w_t wqkv;		/* owned: [q_dim + 2*kv_dim][dim] = attn_q | attn_k | attn_v */
	float *bqkv;		/* owned: [q_dim + 2*kv_dim] biases (qwen2) or NULL */
	ops_w_t wo;		/* owned: [dim][q_dim] attn_output */
	ops_w_t w13;		/* owned: [2*ffn][dim] = ffn_gate | ffn_up */
	ops_w_t w2;		/* owned: [dim][ffn] ffn_down */
	float *q_norm;		/* owned: [head_dim] attn_q_norm (qk_norm) or NULL */
	float *k_norm;		/* owned: [head_dim] attn_k_norm (qk_norm) or NULL */
} layer_t;

struct model {
	model_config_t cfg;
	enum ops_layout layout;	/* of f32 matrices: packed, or row-major (BLAS) */
	model_weights_t weights;	/* which matrices become Q8 or a mix's types */
	model_arith_t arith;		/* the OPS_W_QROWS matrices' float order */
	quant_mix_t mix;	/* weights >= MODEL_WEIGHTS_MIX: the mix */
	void **qbufs;		/* owned: blocks quantized at load, [n_qbufs] */
	bool borrowed;		/* some matrix's rows are in g's mapping */
	int n_qbufs;
	int q_dim, kv_dim, qkv_dim;
	tok_t *tok;		/* owned */
	/* owned: the file's mapping, kept open while matrices borrow their
	 * quantized rows from it (OPS_W_QROWS); NULL otherwise */
	gguf_t *g;
	ops_w_t tok_embd;	/* owned: [vocab][dim] row-major f32, Q8 or quantized rows; unused when
				   tied (rows come from output) */
	ops_w_t output;		/* owned: [vocab][dim] */
	float *output_norm;	/* owned: [dim] */
	layer_t *layers;	/* owned: [n_layers] */
	uint64_t weight_bytes;
	/* the matrices read every step (all but an untied embedding table),
	 * as stored and as they would be in f32 */
	uint64_t step_bytes, step_bytes_f32;
	float *rope_freqs;	/* owned: [rope_dim/2] rope_freqs.weight, or NULL */
	float rope_freq_scale;	/* positions' factor in the rope angle: 1/rope.scaling.factor
				   with linear scaling, else 1 */
};

struct model_kv {
	int n_ctx;
	int n_layers;
	int kv_dim;
	model_kv_type_t type;
	/* [n_layers][n_kv_heads][n_ctx][row]: a head's positions are
	 * contiguous, so attention streams them. A row is head_dim floats,
	 * halves, or a q8 row (ops_q8_row_bytes). */
	char *k;		/* owned: ops_big_alloc of bytes */
	char *v;		/* owned: same layout and size */
	size_t row_bytes;
	size_t bytes;		/* of k, and of v */
};

/* A run of tokens of one sequence with consecutive positions (at most
 * BLOCK_TOKENS): the unit of attention work, times the heads. */
#define BLOCK_TOKENS 16
typedef struct attn_block {
	int first;		/* index of its first token in the batch */
	int n;
	int pos0;
	model_kv_t *kv;
	bool multi;		/* its sequence has 2+ tokens in this step */
} attn_block_t;

struct model_scratch {
	int max_tokens;
	int threads;
	int n_ctx;		/* scores capacity per worker */
	uint64_t shape;		/* shape_key() of the model the buffers are sized for */
	ops_pool_t *pool;	/* owned: threads - 1 pthreads */
	float *x;		/* owned: [T][dim] residual stream */
	float *xb;		/* owned: [T][dim] normed input / projection output */
	float *qkv;		/* owned: [T][qkv_dim] */
	float *att;		/* owned: [T][q_dim] attention output */
	float *hb;		/* owned: [T][2*ffn] gate | up; swiglu written over gate */
	float *rope;		/* owned: [T][rope_dim] cos/sin pairs */
	float *scores;		/* owned: [threads][group][n_ctx], group = n_heads / n_kv_heads */
	void *qws;		/* owned: qmm_matmul's scratch (quantized activations) */
	size_t scores_per_worker;
	attn_block_t *blocks;	/* owned: [T] */
	int *wanted;		/* owned: [T] */
	bool prof;		/* time the phases (model_scratch_profile) */
	int64_t prof_t;		/* when the phase being timed began */
	uint64_t prof_ns[MODEL_N_PHASES];
};


/* ---------------- configuration ---------------- */

static void dims(const model_config_t *c, uint64_t *q, uint64_t *kv)
{
	*q = (uint64_t)c->n_heads * (uint64_t)c->head_dim;
	*kv = (uint64_t)c->n_kv_heads * (uint64_t)c->head_dim;
}

static uint64_t layer_matmul_params(const model_config_t *c)
{
	uint64_t q, kv, d = (uint64_t)c->dim, f = (uint64_t)c->ffn_dim;
	dims(c, &q, &kv);
	return d * (q + 2 * kv) + q * d + 3 * d * f;
}

uint64_t model_config_n_params_per_token(const model_config_t *c)
{
	uint64_t q, kv, d = (uint64_t)c->dim;
	dims(c, &q, &kv);
	uint64_t per_layer = layer_matmul_params(c) + 2 * d + (c->qkv_bias ? q + 2 * kv : 0) +
			     (c->qk_norm ? 2 * (uint64_t)c->head_dim : 0);
	return (uint64_t)c->n_layers * per_layer + d + d * (uint64_t)c->vocab_size;
}

uint64_t model_config_n_params(const model_config_t *c)
{
	uint64_t embd = (uint64_t)c->dim * (uint64_t)c->vocab_size;
	return model_config_n_params_per_token(c) + (c->tied_output ? 0 : embd) +
	       (c->rope_freqs ? (uint64_t)c->rope_dim / 2 : 0);
}

/* Checks the hyper-parameters are sane and consistent; fills head_dim and
 * rope_dim defaults beforehand. */
static int check_config(const model_config_t *c, char *err, size_t errlen)
{
	if (c->dim <= 0 || c->dim > 65536 || c->n_layers <= 0 || c->n_layers > 1024 ||
	    c->n_heads <= 0 || c->n_heads > 1024 || c->n_kv_heads <= 0 ||
	    c->ffn_dim <= 0 || c->ffn_dim > 1 << 20 || c->vocab_size <= 0 ||
	    c->vocab_size > 1 << 24 || c->n_ctx <= 0 || c->n_ctx > 1 << 24 ||
	    c->head_dim <= 0 || c->head_dim > 4096)
		return mg_seterr(err, errlen, -EBADMSG,
			      "hyper-parameters out of range: dim %d, layers %d, heads %d/%d, "
			      "head_dim %d, ffn %d, vocab %d, ctx %d", c->dim, c->n_layers, c->n_heads,
			      c->n_kv_heads, c->head_dim, c->ffn_dim, c->vocab_size, c->n_ctx);
	if (c->n_heads % c->n_kv_heads != 0)
		return mg_seterr(err, errlen, -EBADMSG, "head_count %d is not a multiple of head_count_kv %d",
			      c->n_heads, c->n_kv_heads);
	if (c->rope_dim <= 0 || c->rope_dim > c->head_dim || c->rope_dim % 2 != 0)
		return mg_seterr(err, errlen, -EBADMSG, "rope.dimension_count %d must be even and <= head dim %d",
			      c->rope_dim, c->head_dim);
	if (!(c->rope_base > 0.0f) || !isfinite(c->rope_base))
		return mg_seterr(err, errlen, -EBADMSG, "rope.freq_base %g is not a positive number",
			      (double)c->rope_base);
	if (!(c->norm_eps >= 0.0f) || !isfinite(c->norm_eps))
		return mg_seterr(err, errlen, -EBADMSG, "layer_norm_rms_epsilon %g is not valid",
			      (double)c->norm_eps);
	if (c->rope_scaling == MODEL_ROPE_SCALING_LINEAR &&
	    (!(c->rope_scaling_factor > 0.0f) || !isfinite(c->rope_scaling_factor)))
		return mg_seterr(err, errlen, -EBADMSG, "rope.scaling.factor %g is not a positive number "
			      "(linear RoPE scaling divides the positions by it)", (double)c->rope_scaling_factor);
	if (c->rope_scaling == MODEL_ROPE_SCALING_LLAMA3 && !c->rope_freqs)
		return mg_seterr(err, errlen, -EBADMSG, "rope.scaling.type is llama3 but the file has no "
			      "rope_freqs.weight tensor (the Llama 3 frequency factors)");
	if (c->sliding_window < 0)
		return mg_seterr(err, errlen, -EBADMSG, "attention.sliding_window %d is negative",
			      c->sliding_window);
	return 0;
}

int model_tensor_specs(const model_config_t *c, model_tensor_spec_t *ret, int max)
{
	uint64_t q, kv, d = (uint64_t)c->dim, f = (uint64_t)c->ffn_dim;
	dims(c, &q, &kv);
	int n = 0;
#define SPEC(nd, a, b, ...) do { \
		if (n < max) { \
			snprintf(ret[n].name, sizeof(ret[n].name), __VA_ARGS__); \
			ret[n].n_dims = (nd); \
			ret[n].ne[0] = (a); \
			ret[n].ne[1] = (b); \
		} \
		n++; \
	} while (0)
	SPEC(2, d, (uint64_t)c->vocab_size, "token_embd.weight");
	for (int l = 0; l < c->n_layers; l++) {
		SPEC(1, d, 1, "blk.%d.attn_norm.weight", l);
		SPEC(2, d, q, "blk.%d.attn_q.weight", l);
		SPEC(2, d, kv, "blk.%d.attn_k.weight", l);
		SPEC(2, d, kv, "blk.%d.attn_v.weight", l);
		if (c->qk_norm) {
			SPEC(1, (uint64_t)c->head_dim, 1, "blk.%d.attn_q_norm.weight", l);
			SPEC(1, (uint64_t)c->head_dim, 1, "blk.%d.attn_k_norm.weight", l);
		}
		if (c->qkv_bias) {
			SPEC(1, q, 1, "blk.%d.attn_q.bias", l);
			SPEC(1, kv, 1, "blk.%d.attn_k.bias", l);
			SPEC(1, kv, 1, "blk.%d.attn_v.bias", l);
		}
		SPEC(2, q, d, "blk.%d.attn_output.weight", l);
		SPEC(1, d, 1, "blk.%d.ffn_norm.weight", l);
		SPEC(2, d, f, "blk.%d.ffn_gate.weight", l);
		SPEC(2, d, f, "blk.%d.ffn_up.weight", l);
		SPEC(2, f, d, "blk.%d.ffn_down.weight", l);
	}
	SPEC(1, d, 1, "output_norm.weight");
	if (!c->tied_output)
		SPEC(2, d, (uint64_t)c->vocab_size, "output.weight");
	if (c->rope_freqs)
		SPEC(1, (uint64_t)c->rope_dim / 2, 1, "rope_freqs.weight");
#undef SPEC
	return n;
}

/* ---------------- tensor sources ---------------- */

/* Where weights come from: a GGUF file or a generator (synth.h's). */
typedef struct src {
	const gguf_t *g;	/* borrowed, or NULL: generated */
	const model_gen_t *gen;	/* borrowed: the generator when g is NULL */
	const model_config_t *cfg;
	model_t *m;		/* borrowed: the model being loaded */
	float *buf;		/* owned: conversion buffer, CHUNK_ROWS x max K */
} src_t;

#define CHUNK_ROWS 256

/* Checks tensor name exists with shape [ne1][ne0] (1: absent and optional). */
static int src_check(src_t *s, const char *name, uint64_t ne0, uint64_t ne1, bool optional,
		     char *err, size_t errlen)
{
	if (s->g == NULL)
		return 0;
	const gguf_tensor_t *t = gguf_find_tensor(s->g, name);
	if (t == NULL) {
		if (optional)
			return 1;
		return mg_seterr(err, errlen, -EBADMSG, "tensor %s is missing", name);
	}
	int rc = gguf_tensor_check_loadable(t, err, errlen);
	if (rc < 0)
		return rc;
	bool ok = t->ne[0] == ne0 && t->ne[1] == ne1 && t->ne[2] == 1 && t->ne[3] == 1;
	if (!ok)
		return mg_seterr(err, errlen, -EBADMSG,
			      "tensor %s has shape [%llu, %llu, %llu, %llu], expected [%llu, %llu] "
			      "from the hyper-parameters", name, (unsigned long long)t->ne[0],
			      (unsigned long long)t->ne[1], (unsigned long long)t->ne[2],
			      (unsigned long long)t->ne[3], (unsigned long long)ne0,
			      (unsigned long long)ne1);
	return 0;
}

/* Rows [row0, row0 + n) of a checked tensor [ne1][ne0] as f32 into dst. */
static int src_rows(src_t *s, const char *name, uint64_t ne0, uint64_t row0, uint64_t n,
		    float *dst, char *err, size_t errlen)
{
	int rc;
	if (s->g == NULL) {
		rc = s->gen->rows(s->cfg, name, row0, n, dst);
		if (rc < 0)
			return mg_seterr(err, errlen, rc, "synthetic tensor %s: cannot generate", name);
		return 0;
	}
	const gguf_tensor_t *t = gguf_find_tensor(s->g, name);
	/* A view of the row range: every loadable type stores whole rows
	 * (ne0 is a multiple of the block size). */
	uint64_t row_bytes = gguf_ttype_nbytes(t->type, ne0);
	gguf_tensor_t part = *t;
	part.data = (const uint8_t *)t->data + row0 * row_bytes;
	part.n_dims = 2;
	part.ne[1] = n;
	part.n_elements = ne0 * n;
	part.nbytes = row_bytes * n;
	rc = gguf_tensor_to_f32(&part, dst);
	if (rc < 0)
		return mg_seterr(err, errlen, rc, "tensor %s: cannot convert %s to f32", name,
			      gguf_ttype_name(t->type));
	return 0;
}

static int load_vec(src_t *s, const char *name, uint64_t n, float **ret, bool optional,
		    char *err, size_t errlen)
{
	int rc = src_check(s, name, n, 1, optional, err, errlen);
	if (rc != 0)
		return rc;
	float *v = malloc(n * sizeof(float));
	if (v == NULL)
		return mg_seterr(err, errlen, -ENOMEM, "tensor %s: out of memory", name);
	rc = src_rows(s, name, n, 0, 1, v, err, errlen);
	if (rc < 0) {
		free(v);
		return rc;
	}
	*ret = v;
	return 0;
}

/* Loads tensor name [rows][K] into rows [row0, row0 + rows) of w. */
static int load_rows(src_t *s, const char *name, ops_w_t *w, int row0, int rows,
		     char *err, size_t errlen)
{
	int rc = src_check(s, name, (uint64_t)w->n_in, (uint64_t)rows, false, err, errlen);
	if (rc != 0)
		return rc;
	for (int r = 0; r < rows; r += CHUNK_ROWS) {
		int n = rows - r < CHUNK_ROWS ? rows - r : CHUNK_ROWS;
		rc = src_rows(s, name, (uint64_t)w->n_in, (uint64_t)r, (uint64_t)n, s->buf, err, errlen);
		if (rc < 0)
			return rc;
		ops_w_set_rows(w, row0 + r, n, s->buf);
	}
	return 0;
}

/* load_rows for a Q8 matrix from a Q8_0 tensor: the blocks as they are. */
static int load_rows_q8(src_t *s, const char *name, ops_w_t *w, int row0, int rows, char *err, size_t errlen)
{
	int rc = src_check(s, name, (uint64_t)w->n_in, (uint64_t)rows, false, err, errlen);
	if (rc != 0)
		return rc;
	const gguf_tensor_t *t = gguf_find_tensor(s->g, name);
	ops_w_set_rows_q8(w, row0, rows, t->data);
	return 0;
}


/* The type tensor name (rows of n_in values) gets in the model's mix. */
static uint32_t mix_type(const model_t *m, const char *name, int n_in)
{
	return quant_mix_type(&m->mix, name, -1, m->cfg.n_layers, n_in);
}

/* The layout of a matrix with n_in columns assembled from the tensors
 * blk.l.SUFFIX (l < 0: SUFFIX) of sfx[0..n):
 *   auto: when every source is a quantized tensor (quant.h), its rows are
 *     kept as they are in the file and multiplied the way llama.cpp does
 *     (OPS_W_QROWS, qmm.h); otherwise f32.
 *   q8_0: Q8 panels (int8 with a half scale per 32), quantized at load
 *     unless the file has Q8_0 blocks, multiplied by widening them exactly.
 *   f32: everything widened.
 * Q8 needs whole blocks per row and the packed kernel. */
static enum ops_layout layout_for(const model_t *m, const src_t *s, int n_in, int l, const char *const *sfx,
				  int n)
{
	if (m->weights == MODEL_WEIGHTS_F32)
		return m->layout;
	if (m->weights == MODEL_WEIGHTS_Q8)
		return m->layout == OPS_W_PACKED && n_in % 32 == 0 ? OPS_W_PACKED_Q8 : m->layout;
	if (m->weights < MODEL_WEIGHTS_MIX && s->g == NULL)
		return m->layout;
	/* every part quantized: in the mix, or (auto) in the file */
	for (int i = 0; i < n; i++) {
		char name[96];
		if (l >= 0)
			snprintf(name, sizeof(name), "blk.%d.%s", l, sfx[i]);
		else
			snprintf(name, sizeof(name), "%s", sfx[i]);
		const gguf_tensor_t *t = s->g != NULL ? gguf_find_tensor(s->g, name) : NULL;
		uint32_t type = m->weights >= MODEL_WEIGHTS_MIX ? mix_type(m, name, n_in) : t != NULL ? t->type : 0;
		if (!quant_supported(type))
			return m->layout;
	}
	return OPS_W_QROWS;
}

/* Rows [row0, row0 + rows) of an OPS_W_QROWS matrix: tensor name's blocks
 * where they lie in the mapping. Every block's scales are checked, so a
 * hostile file fails here instead of giving NaN logits later. */
static int load_qrows(src_t *s, const char *name, ops_w_t *w, int row0, int rows, char *err, size_t errlen)
{
	int rc = src_check(s, name, (uint64_t)w->n_in, (uint64_t)rows, false, err, errlen);
	if (rc != 0)
		return rc;
	const gguf_tensor_t *t = gguf_find_tensor(s->g, name);
	if (w->n_seg >= OPS_W_MAX_SEG)
		return mg_seterr(err, errlen, -EINVAL, "tensor %s: too many parts", name);
	size_t rb = quant_row_bytes(t->type, w->n_in);
	if (rb == 0 || rb * (size_t)rows != t->nbytes)
		return mg_seterr(err, errlen, -EBADMSG, "tensor %s: %llu bytes are not %d rows of %s blocks",
			      name, (unsigned long long)t->nbytes, rows, gguf_ttype_name(t->type));
	for (int r = 0; r < rows; r++) {
		int64_t bad;
		if (quant_check_row(t->type, (const uint8_t *)t->data + (size_t)r * rb, w->n_in, &bad) < 0)
			return mg_seterr(err, errlen, -EBADMSG, "tensor %s: row %d, block %lld has a scale that "
				      "is not finite", name, r, (long long)bad);
	}
	w->seg[w->n_seg++] = (ops_qseg_t){ row0, rows, t->type, rb, t->data };
	s->m->borrowed = true;
	return 0;
}

/* Rows [row0, row0 + rows) of an OPS_W_QROWS matrix from tensor name
 * converted to f32 (a file's tensor of another type, or a preset's
 * generated values) and quantized into the mix's type for it; the blocks
 * are owned by the model. */
static int load_qrows_quantized(src_t *s, const char *name, ops_w_t *w, int row0, int rows, char *err,
				size_t errlen)
{
	int rc = src_check(s, name, (uint64_t)w->n_in, (uint64_t)rows, false, err, errlen);
	if (rc != 0)
		return rc;
	model_t *m = s->m;
	uint32_t type = mix_type(m, name, w->n_in);
	size_t rb = quant_row_bytes(type, w->n_in);
	if (rb == 0 || w->n_seg >= OPS_W_MAX_SEG)
		return mg_seterr(err, errlen, -EINVAL, "tensor %s: cannot be %s", name, gguf_ttype_name(type));
	void **nb = realloc(m->qbufs, (size_t)(m->n_qbufs + 1) * sizeof(*nb));
	if (nb == NULL)
		return mg_seterr(err, errlen, -ENOMEM, "tensor %s: out of memory", name);
	m->qbufs = nb;
	uint8_t *blocks = malloc(rb * (size_t)rows);
	if (blocks == NULL)
		return mg_seterr(err, errlen, -ENOMEM, "tensor %s: out of memory for %zu bytes", name,
			      rb * (size_t)rows);
	m->qbufs[m->n_qbufs++] = blocks;
	for (int r = 0; r < rows; r += CHUNK_ROWS) {
		int n = rows - r < CHUNK_ROWS ? rows - r : CHUNK_ROWS;
		if ((rc = src_rows(s, name, (uint64_t)w->n_in, (uint64_t)r, (uint64_t)n, s->buf, err, errlen)) < 0)
			return rc;
		for (int i = 0; i < n; i++)
			if ((rc = quant_quantize_row(type, s->buf + (size_t)i * (size_t)w->n_in,
						     blocks + (size_t)(r + i) * rb, w->n_in)) < 0)
				return mg_seterr(err, errlen, rc, "tensor %s: row %d cannot be quantized to %s",
					      name, r + i, gguf_ttype_name(type));
	}
	w->seg[w->n_seg++] = (ops_qseg_t){ row0, rows, type, rb, blocks };
	return 0;
}

/* Rows of w from tensor name: borrowed blocks for OPS_W_QROWS, Q8_0 blocks
 * kept in Q8 panels where both are, else converted to f32. */
static int load_into(src_t *s, const char *name, ops_w_t *w, int row0, int rows, char *err, size_t errlen)
{
	const gguf_tensor_t *t = s->g != NULL ? gguf_find_tensor(s->g, name) : NULL;
	if (w->layout == OPS_W_QROWS) {
		if (s->m->weights >= MODEL_WEIGHTS_MIX &&
		    (t == NULL || t->type != mix_type(s->m, name, w->n_in)))
			return load_qrows_quantized(s, name, w, row0, rows, err, errlen);
		return load_qrows(s, name, w, row0, rows, err, errlen);
	}
	if (w->layout == OPS_W_PACKED_Q8 && t != NULL && t->type == GGUF_TTYPE_Q8_0)
		return load_rows_q8(s, name, w, row0, rows, err, errlen);
	return load_rows(s, name, w, row0, rows, err, errlen);
}

/* Bytes of an OPS_W_QROWS matrix's blocks (known once its rows are loaded). */
static uint64_t qrows_bytes(const ops_w_t *w)
{
	uint64_t b = 0;
	for (int i = 0; i < w->n_seg; i++)
		b += (uint64_t)w->seg[i].row_bytes * (uint64_t)w->seg[i].n_rows;
	return b;
}

/* Counts a loaded matrix in the model's sizes (read every step, or only a
 * row per token: the untied embedding table). */
static void account(model_t *m, const ops_w_t *w, bool every_step)
{
	uint64_t b = w->layout == OPS_W_QROWS ? qrows_bytes(w) : ops_w_bytes(w->layout, w->n_out, w->n_in);
	m->weight_bytes += b;
	if (every_step) {
		m->step_bytes += b;
		m->step_bytes_f32 += ops_w_bytes(OPS_W_PACKED, w->n_out, w->n_in);
	}
}

static int alloc_w(model_t *m, ops_w_t *w, enum ops_layout layout, int n_out, int n_in, const char *what,
		   char *err, size_t errlen)
{
	if (layout == OPS_W_QROWS) {	/* the rows stay where they are */
		*w = (ops_w_t){ .n_out = n_out, .n_in = n_in, .layout = layout,
				.qorder = m->arith == MODEL_ARITH_FAST ? QMM_BLOCKS : QMM_LLAMA };
		if (n_in > 65536)	/* qmm's per-thread row buffer */
			return mg_seterr(err, errlen, -ENOTSUP, "%s: rows of %d values are longer than "
				      "the 65536 the quantized kernels take", what, n_in);
		return 0;
	}
	int rc = ops_w_alloc(w, layout, n_out, n_in);
	if (rc < 0)
		return mg_seterr(err, errlen, rc, "%s [%d x %d]: cannot allocate", what, n_out, n_in);
	return 0;
}

static int load_weights(model_t *m, src_t *s, char *err, size_t errlen)
{
	const model_config_t *c = &m->cfg;
	int d = c->dim, f = c->ffn_dim, q = m->q_dim, kv = m->kv_dim;
	char name[64];
	int rc;

	int max_k = d > f ? d : f;
	if (q > max_k)
		max_k = q;
	s->buf = malloc((size_t)CHUNK_ROWS * (size_t)max_k * sizeof(float));
	if (s->buf == NULL)
		return mg_seterr(err, errlen, -ENOMEM, "out of memory");

	/* token_embd: the embedding table; also the output head when tied */
	rc = src_check(s, "output.weight", (uint64_t)d, (uint64_t)c->vocab_size, true, err, errlen);
	if (rc < 0)
		return rc;
	if (s->g != NULL)
		m->cfg.tied_output = rc == 1;
	m->mix.tied_output = m->cfg.tied_output;
	static const char *const embd_src[] = { "token_embd.weight" }, *const head[] = { "output.weight" };
	if ((rc = alloc_w(m, &m->output, layout_for(m, s, d, -1, c->tied_output ? embd_src : head, 1),
			  c->vocab_size, d, "output", err, errlen)) < 0)
		return rc;
	if (c->tied_output) {
		if ((rc = load_into(s, "token_embd.weight", &m->output, 0, c->vocab_size, err, errlen)) < 0)
			return rc;
	} else {
		if ((rc = load_into(s, "output.weight", &m->output, 0, c->vocab_size, err, errlen)) < 0)
			return rc;
		/* one row read per token: row-major in f32, or Q8 as the other
		 * matrices (a row widened exactly) */
		if ((rc = src_check(s, "token_embd.weight", (uint64_t)d, (uint64_t)c->vocab_size,
				    false, err, errlen)) < 0)
			return rc;
		enum ops_layout el = layout_for(m, s, d, -1, embd_src, 1);
		if (el != OPS_W_PACKED_Q8 && el != OPS_W_QROWS)
			el = OPS_W_ROWMAJOR;
		if ((rc = alloc_w(m, &m->tok_embd, el, c->vocab_size, d, "token_embd.weight", err, errlen)) < 0)
			return rc;
		if ((rc = load_into(s, "token_embd.weight", &m->tok_embd, 0, c->vocab_size, err, errlen)) < 0)
			return rc;
		account(m, &m->tok_embd, false);
	}
	account(m, &m->output, true);
	if ((rc = load_vec(s, "output_norm.weight", (uint64_t)d, &m->output_norm, false, err, errlen)) < 0)
		return rc;
	m->weight_bytes += (size_t)d * sizeof(float);

	m->layers = calloc((size_t)c->n_layers, sizeof(*m->layers));
	if (m->layers == NULL)
		return mg_seterr(err, errlen, -ENOMEM, "out of memory");
	for (int l = 0; l < c->n_layers; l++) {
		layer_t *L = &m->layers[l];
#define NAME(fmt) (snprintf(name, sizeof(name), "blk.%d." fmt, l), name)
		if ((rc = load_vec(s, NAME("attn_norm.weight"), (uint64_t)d, &L->attn_norm, false, err, errlen)) < 0 ||
		    (rc = load_vec(s, NAME("ffn_norm.weight"), (uint64_t)d, &L->ffn_norm, false, err, errlen)) < 0)
			return rc;
		m->weight_bytes += 2 * (size_t)d * sizeof(float);
		static const char *const qkv_src[] = { "attn_q.weight", "attn_k.weight", "attn_v.weight" };
		static const char *const wo_src[] = { "attn_output.weight" };
		static const char *const w13_src[] = { "ffn_gate.weight", "ffn_up.weight" };
		static const char *const w2_src[] = { "ffn_down.weight" };
		if ((rc = alloc_w(m, &L->wqkv, layout_for(m, s, d, l, qkv_src, 3), m->qkv_dim, d, NAME("attn_qkv"),
				  err, errlen)) < 0 ||
		    (rc = load_into(s, NAME("attn_q.weight"), &L->wqkv, 0, q, err, errlen)) < 0 ||
		    (rc = load_into(s, NAME("attn_k.weight"), &L->wqkv, q, kv, err, errlen)) < 0 ||
		    (rc = load_into(s, NAME("attn_v.weight"), &L->wqkv, q + kv, kv, err, errlen)) < 0)
			return rc;
		if (c->qkv_bias) {
			float *bq = NULL, *bk = NULL, *bv = NULL;
			L->bqkv = malloc((size_t)m->qkv_dim * sizeof(float));
			if (L->bqkv == NULL)
				return mg_seterr(err, errlen, -ENOMEM, "out of memory");
			if ((rc = load_vec(s, NAME("attn_q.bias"), (uint64_t)q, &bq, false, err, errlen)) == 0 &&
			    (rc = load_vec(s, NAME("attn_k.bias"), (uint64_t)kv, &bk, false, err, errlen)) == 0 &&
			    (rc = load_vec(s, NAME("attn_v.bias"), (uint64_t)kv, &bv, false, err, errlen)) == 0) {
				memcpy(L->bqkv, bq, (size_t)q * sizeof(float));
				memcpy(L->bqkv + q, bk, (size_t)kv * sizeof(float));
				memcpy(L->bqkv + q + kv, bv, (size_t)kv * sizeof(float));
			}
			free(bq);
			free(bk);
			free(bv);
			if (rc < 0)
				return rc;
			m->weight_bytes += (size_t)m->qkv_dim * sizeof(float);
		}
		if ((rc = alloc_w(m, &L->wo, layout_for(m, s, q, l, wo_src, 1), d, q, NAME("attn_output.weight"),
				  err, errlen)) < 0 ||
		    (rc = load_into(s, NAME("attn_output.weight"), &L->wo, 0, d, err, errlen)) < 0)
			return rc;
		if ((rc = alloc_w(m, &L->w13, layout_for(m, s, d, l, w13_src, 2), 2 * f, d, NAME("ffn_gate_up"),
				  err, errlen)) < 0 ||
		    (rc = load_into(s, NAME("ffn_gate.weight"), &L->w13, 0, f, err, errlen)) < 0 ||
		    (rc = load_into(s, NAME("ffn_up.weight"), &L->w13, f, f, err, errlen)) < 0)
			return rc;
		if ((rc = alloc_w(m, &L->w2, layout_for(m, s, f, l, w2_src, 1), d, f, NAME("ffn_down.weight"),
				  err, errlen)) < 0 ||
		    (rc = load_into(s, NAME("ffn_down.weight"), &L->w2, 0, d, err, errlen)) < 0)
			return rc;
#undef NAME
		account(m, &L->wqkv, true);
		account(m, &L->wo, true);
		account(m, &L->w13, true);
		account(m, &L->w2, true);
	}
	return 0;
}

/* The tensors that came with Llama 3 RoPE scaling and qwen3, loaded after
 * load_weights has loaded the rest: rope_freqs.weight [rope_dim/2] and
 * each layer's attn_q_norm / attn_k_norm [head_dim]. A rope factor divides
 * an angle, so each must be a positive number. */
static int load_extras(model_t *m, src_t *s, char *err, size_t errlen)
{
	const model_config_t *c = &m->cfg;
	int rc;
	if (c->rope_freqs) {
		int n = c->rope_dim / 2;
		if ((rc = load_vec(s, "rope_freqs.weight", (uint64_t)n, &m->rope_freqs, false, err, errlen)) < 0)
			return rc;
		for (int i = 0; i < n; i++)
			if (!(m->rope_freqs[i] > 0.0f) || !isfinite(m->rope_freqs[i]))
				return mg_seterr(err, errlen, -EBADMSG, "tensor rope_freqs.weight: element %d is %g, "
					      "not a positive frequency factor", i, (double)m->rope_freqs[i]);
		m->weight_bytes += (size_t)n * sizeof(float);
	}
	for (int l = 0; c->qk_norm && l < c->n_layers; l++) {
		layer_t *L = &m->layers[l];
		char name[64];
		snprintf(name, sizeof(name), "blk.%d.attn_q_norm.weight", l);
		if ((rc = load_vec(s, name, (uint64_t)c->head_dim, &L->q_norm, false, err, errlen)) < 0)
			return rc;
		snprintf(name, sizeof(name), "blk.%d.attn_k_norm.weight", l);
		if ((rc = load_vec(s, name, (uint64_t)c->head_dim, &L->k_norm, false, err, errlen)) < 0)
			return rc;
		m->weight_bytes += 2 * (size_t)c->head_dim * sizeof(float);
	}
	return 0;
}

static void set_derived(model_t *m)
{
	m->q_dim = m->cfg.n_heads * m->cfg.head_dim;
	m->kv_dim = m->cfg.n_kv_heads * m->cfg.head_dim;
	m->qkv_dim = m->q_dim + 2 * m->kv_dim;
}

/* ---------------- GGUF ---------------- */

static int get_u32_key(const gguf_t *g, const char *arch, const char *suffix, bool required,
		       uint32_t dflt, int *ret, char *err, size_t errlen)
{
	char key[96];
	snprintf(key, sizeof(key), "%s.%s", arch, suffix);
	uint32_t v;
	int rc = gguf_get_u32(g, key, &v);
	if (rc == -ENOENT && !required)
		v = dflt;
	else if (rc == -ENOENT)
		return mg_seterr(err, errlen, -EBADMSG, "metadata key %s is missing", key);
	else if (rc < 0 || v > INT32_MAX)
		return mg_seterr(err, errlen, -EBADMSG, "metadata key %s is not an unsigned integer "
			      "that fits in 32 bits", key);
	*ret = (int)v;
	return 0;
}

static int get_f32_key(const gguf_t *g, const char *arch, const char *suffix, float dflt,
		       float *ret, char *err, size_t errlen)
{
	char key[96];
	snprintf(key, sizeof(key), "%s.%s", arch, suffix);
	int rc = gguf_get_f32(g, key, ret);
	if (rc == -ENOENT) {
		*ret = dflt;
		return 0;
	}
	if (rc < 0)
		return mg_seterr(err, errlen, -EBADMSG, "metadata key %s is not a float", key);
	return 0;
}

/* The architectures: general.architecture and what it implies. */
static const struct arch_info {
	const char *name;
	model_arch_t arch;
	bool rope_neox, qkv_bias, qk_norm;
	bool sliding_window;	/* reads {arch}.attention.sliding_window */
	float norm_eps;		/* when attention.layer_norm_rms_epsilon is absent */
} archs[] = {
	/* Mistral files say "llama"; their window is the one key they add */
	{ "llama", MODEL_ARCH_LLAMA, false, false, false, true, 1e-5f },
	{ "qwen2", MODEL_ARCH_QWEN2, true, true, false, false, 1e-6f },
	/* llama.cpp models/qwen3.cpp: no biases; q and k heads RMS-normed
	 * after the projection, then RoPE'd */
	{ "qwen3", MODEL_ARCH_QWEN3, true, false, true, false, 1e-6f },
};
#define N_ARCHS (sizeof(archs) / sizeof(archs[0]))

/* general.architecture: fills arch, arch_name and what the arch implies. */
static int read_arch(const gguf_t *g, model_config_t *c, char *err, size_t errlen)
{
	gguf_str_t s;
	int rc = gguf_get_str(g, "general.architecture", &s);
	if (rc < 0)
		return mg_seterr(err, errlen, -EBADMSG, "metadata key general.architecture is %s",
			      rc == -ENOENT ? "missing" : "not a string");
	for (size_t i = 0; i < N_ARCHS; i++) {
		const struct arch_info *a = &archs[i];
		if (s.len != strlen(a->name) || memcmp(s.data, a->name, s.len) != 0)
			continue;
		c->arch = a->arch;
		snprintf(c->arch_name, sizeof(c->arch_name), "%s", a->name);
		c->rope_neox = a->rope_neox;
		c->qkv_bias = a->qkv_bias;
		c->qk_norm = a->qk_norm;
		return 0;
	}
	char list[64] = "";
	size_t len = 0;
	for (size_t i = 0; i < N_ARCHS && len < sizeof(list); i++)
		len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%s", i == 0 ? "" : ", ", archs[i].name);
	return mg_seterr(err, errlen, -ENOTSUP, "general.architecture '%.*s' is not supported "
		      "(margin runs %s; Mistral files are llama)", (int)(s.len > 64 ? 64 : s.len), s.data, list);
}

static const struct arch_info *arch_info(model_arch_t a)
{
	for (size_t i = 0; i < N_ARCHS; i++)
		if (archs[i].arch == a)
			return &archs[i];
	return &archs[0];
}

/* RoPE scaling as llama.cpp reads it (llama-model.cpp, llama-context.cpp):
 * the factor is rope.scaling.factor or the older rope.scale_linear; a
 * missing type means "linear", "none" never scales; the factors of Llama
 * 3.x are the rope_freqs.weight tensor, whatever the type. YaRN and the
 * rest are refused: a model run with the wrong angles produces fluent
 * nonsense, not an error. */
static int read_rope_scaling(const gguf_t *g, model_config_t *c, char *err, size_t errlen)
{
	const char *arch = c->arch_name;
	float factor = 0.0f;
	int rc;
	if ((rc = get_f32_key(g, arch, "rope.scaling.factor", 0.0f, &factor, err, errlen)) < 0 ||
	    (factor == 0.0f && (rc = get_f32_key(g, arch, "rope.scale_linear", 0.0f, &factor, err, errlen)) < 0) ||
	    (rc = get_u32_key(g, arch, "rope.scaling.original_context_length", false, 0, &c->rope_orig_ctx,
			      err, errlen)) < 0)
		return rc;
	if (!(factor >= 0.0f) || !isfinite(factor))
		return mg_seterr(err, errlen, -EBADMSG, "metadata key %s.rope.scaling.factor is %g, not a "
			      "positive number", arch, (double)factor);
	c->rope_scaling_factor = factor;
	c->rope_freqs = gguf_find_tensor(g, "rope_freqs.weight") != NULL;
	char key[96];
	snprintf(key, sizeof(key), "%s.rope.scaling.type", arch);
	gguf_str_t t;
	rc = gguf_get_str(g, key, &t);
	if (rc == -ENOENT) {
		/* what llama.cpp's converter writes: linear scaling as type and
		 * factor, Llama 3's as the rope_freqs tensor alone */
		c->rope_scaling = factor > 0.0f ? MODEL_ROPE_SCALING_LINEAR
				  : c->rope_freqs ? MODEL_ROPE_SCALING_LLAMA3 : MODEL_ROPE_SCALING_NONE;
		return 0;
	}
	if (rc < 0)
		return mg_seterr(err, errlen, -EBADMSG, "metadata key %s is not a string", key);
	static const struct { const char *name; model_rope_scaling_t v; } types[] = {
		{ "none", MODEL_ROPE_SCALING_NONE },
		{ "linear", MODEL_ROPE_SCALING_LINEAR },
		{ "llama3", MODEL_ROPE_SCALING_LLAMA3 },
	};
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (t.len == strlen(types[i].name) && memcmp(t.data, types[i].name, t.len) == 0) {
			c->rope_scaling = types[i].v;
			return 0;
		}
	return mg_seterr(err, errlen, -ENOTSUP, "metadata key %s is '%.*s': margin runs RoPE scaling "
		      "none, linear and llama3 (rope_freqs.weight), not yarn, longrope or others", key,
		      (int)(t.len > 32 ? 32 : t.len), t.data);
}

static int read_config(const gguf_t *g, model_config_t *c, char *err, size_t errlen)
{
	memset(c, 0, sizeof(*c));
	gguf_str_t s;
	int rc = read_arch(g, c, err, errlen);
	if (rc < 0)
		return rc;
	const char *arch = c->arch_name;
	if (gguf_get_str(g, "general.name", &s) == 0) {
		size_t n = s.len < sizeof(c->name) - 1 ? s.len : sizeof(c->name) - 1;
		memcpy(c->name, s.data, n);
		c->name[n] = '\0';
	} else {
		snprintf(c->name, sizeof(c->name), "%s", arch);
	}
	int key_len = 0, val_len = 0, rope_dim = 0;
	if ((rc = get_u32_key(g, arch, "embedding_length", true, 0, &c->dim, err, errlen)) < 0 ||
	    (rc = get_u32_key(g, arch, "block_count", true, 0, &c->n_layers, err, errlen)) < 0 ||
	    (rc = get_u32_key(g, arch, "attention.head_count", true, 0, &c->n_heads, err, errlen)) < 0 ||
	    (rc = get_u32_key(g, arch, "feed_forward_length", true, 0, &c->ffn_dim, err, errlen)) < 0 ||
	    (rc = get_u32_key(g, arch, "context_length", false, 2048, &c->n_ctx, err, errlen)) < 0 ||
	    (rc = get_u32_key(g, arch, "attention.head_count_kv", false, (uint32_t)c->n_heads,
			      &c->n_kv_heads, err, errlen)) < 0 ||
	    (rc = get_u32_key(g, arch, "attention.key_length", false, 0, &key_len, err, errlen)) < 0 ||
	    (rc = get_u32_key(g, arch, "attention.value_length", false, 0, &val_len, err, errlen)) < 0 ||
	    (rc = get_u32_key(g, arch, "rope.dimension_count", false, 0, &rope_dim, err, errlen)) < 0 ||
	    (rc = get_f32_key(g, arch, "rope.freq_base", 10000.0f, &c->rope_base, err, errlen)) < 0 ||
	    (rc = get_f32_key(g, arch, "attention.layer_norm_rms_epsilon",
			      arch_info(c->arch)->norm_eps, &c->norm_eps, err, errlen)) < 0 ||
	    (rc = read_rope_scaling(g, c, err, errlen)) < 0)
		return rc;
	/* how an embedding is pooled (llama.cpp's enum; 0 when absent) */
	if ((rc = get_u32_key(g, arch, "pooling_type", false, 0, &c->pooling_type, err, errlen)) < 0)
		return rc;
	/* Mistral's window, in a llama file. (llama.cpp's llama graph ignores
	 * this key; docs/models.md says where that matters.) */
	if (arch_info(c->arch)->sliding_window &&
	    (rc = get_u32_key(g, arch, "attention.sliding_window", false, 0, &c->sliding_window, err,
			      errlen)) < 0)
		return rc;
	if (c->n_heads <= 0)
		return mg_seterr(err, errlen, -EBADMSG, "%s.attention.head_count is 0", arch);
	c->head_dim = key_len > 0 ? key_len : c->dim / c->n_heads;
	if (key_len == 0 && c->dim % c->n_heads != 0)
		return mg_seterr(err, errlen, -EBADMSG, "%s.embedding_length %d is not a multiple of "
			      "the head count %d", arch, c->dim, c->n_heads);
	if (val_len > 0 && val_len != c->head_dim)
		return mg_seterr(err, errlen, -ENOTSUP, "%s.attention.value_length %d differs from the key "
			      "length %d (margin needs K and V heads of one size)", arch, val_len, c->head_dim);
	c->rope_dim = rope_dim > 0 ? rope_dim : c->head_dim;
	const gguf_tensor_t *te = gguf_find_tensor(g, "token_embd.weight");
	if (te == NULL)
		return mg_seterr(err, errlen, -EBADMSG, "tensor token_embd.weight is missing");
	if (te->ne[1] == 0 || te->ne[1] > (1u << 24))
		return mg_seterr(err, errlen, -EBADMSG, "tensor token_embd.weight has %llu rows, "
			      "not a vocabulary size", (unsigned long long)te->ne[1]);
	c->vocab_size = (int)te->ne[1];
	return check_config(c, err, errlen);
}

static int model_alloc(const model_config_t *c, const model_opts_t *o, model_t **ret)
{
	model_t *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return -ENOMEM;
	m->cfg = *c;
	m->layout = o != NULL && o->blas ? OPS_W_ROWMAJOR : OPS_W_PACKED;
	m->weights = o != NULL ? o->weights : MODEL_WEIGHTS_AUTO;
	m->arith = o != NULL ? o->arith : MODEL_ARITH_LLAMA;
	if (m->weights >= MODEL_WEIGHTS_MIX) {
		const char *name = quant_mix_name((size_t)(m->weights - MODEL_WEIGHTS_MIX));
		if (name == NULL || quant_mix_parse(name, &m->mix) < 0) {
			free(m);
			return -EINVAL;
		}
		m->mix.n_gqa = c->n_kv_heads > 0 ? c->n_heads / c->n_kv_heads : 1;
		m->mix.tied_output = c->tied_output;
	}
	/* as llama.cpp: 1.0f / factor in float */
	m->rope_freq_scale = c->rope_scaling == MODEL_ROPE_SCALING_LINEAR && c->rope_scaling_factor > 0.0f
			     ? 1.0f / c->rope_scaling_factor : 1.0f;
	set_derived(m);
	*ret = m;
	return 0;
}

int model_load_opts(const char *path, const model_opts_t *o, model_t **ret,
		    char *err, size_t errlen)
{
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (path == NULL || ret == NULL)
		return mg_seterr(err, errlen, -EINVAL, "no model path");
	gguf_t *g = NULL;
	model_t *m = NULL;
	src_t s = { 0 };
	model_config_t c;
	char sub[256];
	int rc = gguf_open(path, &g, sub, sizeof(sub));
	if (rc < 0) {
		mg_seterr(err, errlen, rc, "%s", sub);
		goto fail;
	}
	if ((rc = read_config(g, &c, sub, sizeof(sub))) < 0) {
		mg_seterr(err, errlen, rc, "%s: %s", path, sub);
		goto fail;
	}
	if ((rc = model_alloc(&c, o, &m)) < 0) {
		mg_seterr(err, errlen, rc, "%s: out of memory", path);
		goto fail;
	}
	s.g = g;
	s.cfg = &m->cfg;
	s.m = m;
	if ((rc = load_weights(m, &s, sub, sizeof(sub))) < 0 ||
	    (rc = load_extras(m, &s, sub, sizeof(sub))) < 0) {
		mg_seterr(err, errlen, rc, "%s: %s", path, sub);
		goto fail;
	}
	if ((rc = tok_new_from_gguf(g, &m->tok, sub, sizeof(sub))) < 0) {
		mg_seterr(err, errlen, rc, "%s: tokenizer: %s", path, sub);
		goto fail;
	}
	if (tok_n_vocab(m->tok) > (uint32_t)m->cfg.vocab_size) {
		rc = mg_seterr(err, errlen, -EBADMSG, "%s: the tokenizer has %u tokens but "
			    "token_embd.weight only %d rows", path, tok_n_vocab(m->tok), m->cfg.vocab_size);
		goto fail;
	}
	free(s.buf);
	if (m->borrowed)
		m->g = g;	/* the matrices' rows live in its mapping */
	else
		gguf_close(&g);
	*ret = m;
	return 0;
fail:
	free(s.buf);
	model_destroy(&m);
	gguf_close(&g);
	return rc;
}

int model_load(const char *path, model_t **ret, char *err, size_t errlen)
{
	return model_load_opts(path, NULL, ret, err, errlen);
}

int model_new_generated(const char *label, const model_config_t *c, const model_opts_t *o,
			const model_gen_t *gen, model_t **ret, char *err, size_t errlen)
{
	int rc = check_config(c, err, errlen);
	if (rc < 0)
		return rc;
	model_t *m = NULL;
	src_t s = { 0 };
	if ((rc = model_alloc(c, o, &m)) < 0)
		return mg_seterr(err, errlen, rc, "%s: out of memory", label);
	s.gen = gen;
	s.cfg = &m->cfg;
	s.m = m;
	char sub[200];
	if ((rc = load_weights(m, &s, sub, sizeof(sub))) < 0 ||
	    (rc = load_extras(m, &s, sub, sizeof(sub))) < 0) {
		mg_seterr(err, errlen, rc, "%s: %s", label, sub);
		goto fail;
	}
	if ((rc = gen->tok_new((uint32_t)c->vocab_size, &m->tok, sub, sizeof(sub))) < 0) {
		mg_seterr(err, errlen, rc, "%s: tokenizer: %s", label, sub);
		goto fail;
	}
	free(s.buf);
	*ret = m;
	return 0;
fail:
	free(s.buf);
	model_destroy(&m);
	return rc;
}

void model_destroy(model_t **pm)
{
	if (pm == NULL || *pm == NULL)
		return;
	model_t *m = *pm;
	if (m->layers != NULL) {
		for (int l = 0; l < m->cfg.n_layers; l++) {
			layer_t *L = &m->layers[l];
			free(L->attn_norm);
			free(L->ffn_norm);
			free(L->bqkv);
			ops_w_free(&L->wqkv);
			ops_w_free(&L->wo);
			ops_w_free(&L->w13);
			ops_w_free(&L->w2);
			free(L->q_norm);
			free(L->k_norm);
		}
		free(m->layers);
	}
	free(m->rope_freqs);
	ops_w_free(&m->output);
	free(m->output_norm);
	ops_w_free(&m->tok_embd);
	tok_destroy(&m->tok);
	gguf_close(&m->g);
	for (int i = 0; i < m->n_qbufs; i++)
		free(m->qbufs[i]);
	free(m->qbufs);
	free(m);
	*pm = NULL;
}

const model_config_t *model_config(const model_t *m)
{
	return &m->cfg;
}

const tok_t *model_tok(const model_t *m)
{
	return m->tok;
}

bool model_uses_blas(const model_t *m)
{
	return m->layout == OPS_W_ROWMAJOR;
}

uint64_t model_n_params(const model_t *m)
{
	return model_config_n_params(&m->cfg);
}

uint64_t model_n_params_per_token(const model_t *m)
{
	return model_config_n_params_per_token(&m->cfg);
}

uint64_t model_weight_bytes(const model_t *m)
{
	return m->weight_bytes;
}

double model_matrix_bytes_ratio(const model_t *m)
{
	return m->step_bytes_f32 > 0 ? (double)m->step_bytes / (double)m->step_bytes_f32 : 1.0;
}

uint64_t model_token_flops(const model_t *m, int pos, bool with_logits)
{
	const model_config_t *c = &m->cfg;
	uint64_t f = 2 * (uint64_t)c->n_layers * layer_matmul_params(c);
	uint64_t n_att = (uint64_t)pos + 1;
	if (c->sliding_window > 0 && n_att > (uint64_t)c->sliding_window)
		n_att = (uint64_t)c->sliding_window;
	f += 4 * (uint64_t)c->n_layers * (uint64_t)c->n_heads * (uint64_t)c->head_dim * n_att;
	if (with_logits)
		f += 2 * (uint64_t)c->dim * (uint64_t)c->vocab_size;
	return f;
}

/* ---------------- KV cache and scratch ---------------- */

static const char *const weights_names[] = { "auto", "f32", "q8_0-panels" };

int model_weights_parse(const char *s, model_weights_t *ret)
{
	for (int i = 0; i < 3; i++)
		if (s != NULL && strcmp(s, weights_names[i]) == 0) {
			*ret = (model_weights_t)i;
			return 0;
		}
	quant_mix_t mix;
	if (s == NULL || quant_mix_parse(s, &mix) < 0 || !quant_supported(mix.base))
		return -EINVAL;
	for (size_t i = 0; quant_mix_name(i) != NULL; i++)
		if (strcmp(quant_mix_name(i), mix.name) == 0) {
			*ret = (model_weights_t)(MODEL_WEIGHTS_MIX + (int)i);
			return 0;
		}
	return -EINVAL;
}

const char *model_weights_name(model_weights_t w)
{
	if ((unsigned)w < 3)
		return weights_names[w];
	const char *n = w >= MODEL_WEIGHTS_MIX ? quant_mix_name((size_t)(w - MODEL_WEIGHTS_MIX)) : NULL;
	return n != NULL ? n : "?";
}

static const char *const arith_names[] = { "llama", "fast" };

int model_arith_parse(const char *s, model_arith_t *ret)
{
	for (int i = 0; i < 2; i++)
		if (s != NULL && strcmp(s, arith_names[i]) == 0) {
			*ret = (model_arith_t)i;
			return 0;
		}
	return -EINVAL;
}

const char *model_arith_name(model_arith_t a)
{
	return (unsigned)a < 2 ? arith_names[a] : "?";
}

static const char *const kv_type_names[] = { "f32", "f16", "q8_0" };

const char *model_kv_type_name(model_kv_type_t t)
{
	return (unsigned)t < 3 ? kv_type_names[t] : "?";
}

int model_kv_type_parse(const char *s, model_kv_type_t *t)
{
	for (int i = 0; i < 3; i++)
		if (s != NULL && strcmp(s, kv_type_names[i]) == 0) {
			*t = (model_kv_type_t)i;
			return 0;
		}
	return -EINVAL;
}

static size_t kv_row_bytes(const model_t *m, model_kv_type_t t)
{
	size_t hd = (size_t)m->cfg.head_dim;
	switch (t) {
	case MODEL_KV_F16: return hd * sizeof(uint16_t);
	case MODEL_KV_Q8: return ops_q8_row_bytes((int)hd);
	default: return hd * sizeof(float);
	}
}

size_t model_kv_bytes(const model_t *m, int n_ctx, model_kv_type_t type)
{
	if (n_ctx <= 0)
		return 0;
	return 2 * (size_t)m->cfg.n_layers * (size_t)n_ctx * (size_t)m->cfg.n_kv_heads * kv_row_bytes(m, type);
}

int model_kv_new(const model_t *m, int n_ctx, model_kv_type_t type, model_kv_t **ret)
{
	if (m == NULL || ret == NULL || n_ctx <= 0 || n_ctx > m->cfg.n_ctx || (unsigned)type > MODEL_KV_Q8)
		return -EINVAL;
	size_t rows = (size_t)m->cfg.n_layers * (size_t)n_ctx * (size_t)m->cfg.n_kv_heads;
	size_t rb = kv_row_bytes(m, type);
	if (rows > SIZE_MAX / 2 / rb)
		return -ENOMEM;
	model_kv_t *kv = calloc(1, sizeof(*kv));
	if (kv == NULL)
		return -ENOMEM;
	kv->n_ctx = n_ctx;
	kv->n_layers = m->cfg.n_layers;
	kv->kv_dim = m->kv_dim;
	kv->type = type;
	kv->row_bytes = rb;
	/* Untouched zero pages, kept at 4 KiB (ops_big_alloc, huge = false):
	 * memory is paid as positions fill, so a worker's RSS follows the
	 * tokens it holds, not slots x n_ctx. The layout is [layer][kv head]
	 * [position][head_dim], so one position touches a page in every
	 * (layer, head) block; with 2 MiB pages the first token of a slot
	 * made its whole cache resident (32 llama-110m slots of 1024: 2.8 GB
	 * RSS after 12 positions, against 0.5 GB). The price is a page fault
	 * per block every 16 positions the first time a slot reaches them:
	 * about 6 ms of a 38 ms batch-32 step of llama-110m in this VM
	 * (docs/kernels.md); a slot that held a longer sequence before
	 * has them already. */
	kv->bytes = rows * rb;
	void *k = NULL, *v = NULL;
	if (ops_big_alloc(kv->bytes, false, &k) < 0 || ops_big_alloc(kv->bytes, false, &v) < 0) {
		ops_big_free(k, kv->bytes, false);
		free(kv);
		return -ENOMEM;
	}
	kv->k = k;
	kv->v = v;
	*ret = kv;
	return 0;
}

void model_kv_destroy(model_kv_t **pkv)
{
	if (pkv == NULL || *pkv == NULL)
		return;
	ops_big_free((*pkv)->k, (*pkv)->bytes, false);
	ops_big_free((*pkv)->v, (*pkv)->bytes, false);
	free(*pkv);
	*pkv = NULL;
}

int model_kv_n_ctx(const model_kv_t *kv)
{
	return kv->n_ctx;
}

model_kv_type_t model_kv_type(const model_kv_t *kv)
{
	return kv->type;
}

/* The dimensions a scratch's buffers depend on, folded into one key. */
static uint64_t shape_key(const model_t *m)
{
	const model_config_t *c = &m->cfg;
	int v[] = { c->dim, m->qkv_dim, m->q_dim, c->ffn_dim, c->rope_dim,
		    c->n_heads / c->n_kv_heads, c->n_ctx };
	return mg_fnv1a64(MG_FNV1A64_OFFSET, v, sizeof(v));
}

static void *alloc_floats(size_t a, size_t b, bool *fail)
{
	if (a != 0 && b > SIZE_MAX / sizeof(float) / a) {
		*fail = true;
		return NULL;
	}
	void *p = aligned_alloc(64, (a * b * sizeof(float) + 63) / 64 * 64);
	if (p == NULL)
		*fail = true;
	return p;
}

int model_scratch_new(const model_t *m, int max_tokens, int threads, model_scratch_t **ret)
{
	if (m == NULL || ret == NULL || max_tokens <= 0 || max_tokens > 1 << 20 || threads <= 0 ||
	    threads > 1024)
		return -EINVAL;
	model_scratch_t *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	const model_config_t *c = &m->cfg;
	size_t T = (size_t)max_tokens;
	bool fail = false;
	s->max_tokens = max_tokens;
	s->threads = threads;
	s->n_ctx = c->n_ctx;
	s->shape = shape_key(m);
	s->x = alloc_floats(T, (size_t)c->dim, &fail);
	s->xb = alloc_floats(T, (size_t)c->dim, &fail);
	s->qkv = alloc_floats(T, (size_t)m->qkv_dim, &fail);
	s->att = alloc_floats(T, (size_t)m->q_dim, &fail);
	s->hb = alloc_floats(T, 2 * (size_t)c->ffn_dim, &fail);
	s->rope = alloc_floats(T, (size_t)c->rope_dim, &fail);
	/* scores, and the lane accumulators of llama.cpp's f16 arithmetic */
	s->scores_per_worker = (size_t)(c->n_heads / c->n_kv_heads) * (size_t)c->n_ctx + 64 * (size_t)c->head_dim;
	s->scores = alloc_floats((size_t)threads, s->scores_per_worker, &fail);
	s->blocks = calloc(T, sizeof(*s->blocks));
	s->wanted = calloc(T, sizeof(*s->wanted));
	/* the quantized activations of the widest input each format can take */
	int ks[3] = { c->dim, c->ffn_dim, m->q_dim };
	size_t qb = 0;
	for (int i = 0; i < 3; i++)
		qb = qmm_ws_bytes(max_tokens, ks[i]) > qb ? qmm_ws_bytes(max_tokens, ks[i]) : qb;
	qb = (qb + 63) / 64 * 64;
	s->qws = aligned_alloc(64, qb);
	int rc = -ENOMEM;
	if (fail || s->blocks == NULL || s->wanted == NULL || s->qws == NULL)
		goto fail;
	if ((rc = ops_pool_new(threads, &s->pool)) < 0)
		goto fail;
	/* with OpenBLAS doing the matmuls its threads need the cores between
	 * our attention regions */
	ops_pool_set_spin(s->pool, m->layout != OPS_W_ROWMAJOR);
	*ret = s;
	return 0;
fail:
	model_scratch_destroy(&s);
	return rc;
}

void model_scratch_destroy(model_scratch_t **ps)
{
	if (ps == NULL || *ps == NULL)
		return;
	model_scratch_t *s = *ps;
	ops_pool_destroy(&s->pool);
	free(s->x);
	free(s->xb);
	free(s->qkv);
	free(s->att);
	free(s->hb);
	free(s->rope);
	free(s->scores);
	free(s->blocks);
	free(s->wanted);
	free(s->qws);
	free(s);
	*ps = NULL;
}

/* ---------------- phase profile ---------------- */

static const char *const phase_names[MODEL_N_PHASES] = {
	"qkv", "attention", "attn_output", "gate_up", "ffn_down", "output_head", "row_wise",
};

const char *model_phase_name(int phase)
{
	return phase >= 0 && phase < MODEL_N_PHASES ? phase_names[phase] : NULL;
}

void model_scratch_profile(model_scratch_t *s, bool on)
{
	if (s != NULL)
		s->prof = on;
}

void model_scratch_profile_get(const model_scratch_t *s, uint64_t ns[MODEL_N_PHASES])
{
	for (int i = 0; i < MODEL_N_PHASES; i++)
		ns[i] = s != NULL ? s->prof_ns[i] : 0;
}

void model_scratch_profile_reset(model_scratch_t *s)
{
	if (s != NULL)
		memset(s->prof_ns, 0, sizeof(s->prof_ns));
}

/* Starts the clock for the next phase. */
static inline void prof_begin(model_scratch_t *s)
{
	if (s->prof)
		s->prof_t = mg_clock_now_ns();
}

/* Books the time since prof_begin (or the last prof_end) to phase ph. */
static inline void prof_end(model_scratch_t *s, enum model_phase ph)
{
	if (s->prof) {
		int64_t t = mg_clock_now_ns();
		s->prof_ns[ph] += (uint64_t)(t - s->prof_t);
		s->prof_t = t;
	}
}

/* ---------------- forward ---------------- */

typedef struct attn_job {
	const model_t *m;
	model_scratch_t *s;
	int layer;
} attn_job_t;

/* The cache view of block blk for one layer. */
static ops_attn_t attn_view(const model_t *m, const attn_block_t *blk, int layer)
{
	const model_kv_t *kv = blk->kv;
	int n_kv = m->cfg.n_kv_heads, hd = m->cfg.head_dim;
	size_t off = (size_t)layer * (size_t)n_kv * (size_t)kv->n_ctx * kv->row_bytes;
	const char *k = kv->k + off, *v = kv->v + off;
	/* strides in elements of the row's type (bytes for q8) */
	size_t row = kv->type == MODEL_KV_Q8 ? kv->row_bytes : (size_t)hd;
	ops_attn_t a = {
		.n_heads = m->cfg.n_heads,
		.n_kv_heads = n_kv,
		.head_dim = hd,
		.head_stride = (size_t)kv->n_ctx * row,
		.row_stride = row,
		.window = m->cfg.sliding_window,
	};
	switch (kv->type) {
	case MODEL_KV_F16:
		a.k16 = (const uint16_t *)k;
		a.v16 = (const uint16_t *)v;
		a.half_math = true;	/* llama.cpp's f16 cache arithmetic */
		break;
	case MODEL_KV_Q8:
		a.k8 = k;
		a.v8 = v;
		break;
	default:
		a.k = (const float *)k;
		a.v = (const float *)v;
		break;
	}
	return a;
}

/* Task = (block, kv head): attention of up to BLOCK_TOKENS consecutive
 * tokens of one sequence for the query heads of one kv head, over that
 * sequence's cache. Tasks run in shares (ops_pool_run_shares): the next
 * task's keys are requested before this task starts, so its stream is
 * under way when it begins. */
static void attn_task(void *arg, int task, int next, int worker)
{
	const attn_job_t *j = arg;
	const model_t *m = j->m;
	model_scratch_t *s = j->s;
	int n_kv = m->cfg.n_kv_heads;
	if (next >= 0) {
		ops_attn_t an = attn_view(m, &s->blocks[next / n_kv], j->layer);
		ops_attention_prefetch(&an, next % n_kv);
	}
	const attn_block_t *b = &s->blocks[task / n_kv];
	int g = task % n_kv;
	ops_attn_t a = attn_view(m, b, j->layer);
	a.tiled = b->multi;
	ops_attention(&a, s->qkv + (size_t)b->first * m->qkv_dim, (size_t)m->qkv_dim, b->pos0, b->n,
		      g, g + 1, s->att + (size_t)b->first * m->q_dim, (size_t)m->q_dim,
		      s->scores + (size_t)worker * s->scores_per_worker);
}

/* The row-wise work between the matrix products, one phase at a time;
 * rows are independent, so a phase is split across the pool when the step
 * is big enough to pay for the hand-off. */
enum row_phase {
	PH_EMBED,	/* x = embedding; rope angles */
	PH_ATTN_IN,	/* x += xb (previous layer's ffn output, not in layer 0); xb = norm(x) */
	PH_QKV,		/* qkv += bias; q/k head norms; rope on q and k; k and v into the cache */
	PH_FFN_IN,	/* x += xb (attention output); xb = norm(x) */
	PH_SWIGLU,	/* gate = silu(gate) * up */
	PH_OUT,		/* x += xb (last layer's ffn output) */
};

typedef struct rows_job {
	const model_t *m;
	model_scratch_t *s;
	const model_batch_t *b;
	int layer;
	enum row_phase phase;
	int per_task;
} rows_job_t;

static void row_work(const rows_job_t *j, int i)
{
	const model_t *m = j->m;
	const model_config_t *c = &m->cfg;
	model_scratch_t *s = j->s;
	const model_batch_t *b = j->b;
	int d = c->dim;
	float *x = s->x + (size_t)i * d, *xb = s->xb + (size_t)i * d;
	const layer_t *L = j->layer < c->n_layers ? &m->layers[j->layer] : NULL;
	switch (j->phase) {
	case PH_EMBED:
		ops_w_get_row(m->cfg.tied_output ? &m->output : &m->tok_embd, b->tokens[i], x);
		ops_rope_table(s->rope + (size_t)i * c->rope_dim, b->pos[i], c->rope_dim, c->rope_base,
			       m->rope_freq_scale, m->rope_freqs);
		break;
	case PH_ATTN_IN:
		if (j->layer > 0)
			ops_add(x, xb, d);
		ops_rmsnorm(xb, x, L->attn_norm, d, c->norm_eps);
		break;
	case PH_QKV: {
		float *qkv = s->qkv + (size_t)i * m->qkv_dim;
		int q = m->q_dim, kvd = m->kv_dim;
		if (L->bqkv != NULL)
			ops_add(qkv, L->bqkv, m->qkv_dim);
		if (L->q_norm != NULL) {
			/* qwen3: every q and k head RMS-normed alone, after the
			 * projection and before RoPE (llama.cpp models/qwen3.cpp) */
			for (int h = 0; h < c->n_heads; h++)
				ops_rmsnorm(qkv + h * c->head_dim, qkv + h * c->head_dim, L->q_norm, c->head_dim,
					    c->norm_eps);
			for (int h = 0; h < c->n_kv_heads; h++)
				ops_rmsnorm(qkv + q + h * c->head_dim, qkv + q + h * c->head_dim, L->k_norm,
					    c->head_dim, c->norm_eps);
		}
		const float *cs = s->rope + (size_t)i * c->rope_dim;
		ops_rope(qkv, c->n_heads, c->head_dim, c->rope_dim, c->rope_neox, cs);
		ops_rope(qkv + q, c->n_kv_heads, c->head_dim, c->rope_dim, c->rope_neox, cs);
		model_kv_t *kv = b->kv[i];
		int hd = c->head_dim;
		for (int g = 0; g < c->n_kv_heads; g++) {
			size_t off = (((size_t)j->layer * c->n_kv_heads + g) * kv->n_ctx + b->pos[i]) * kv->row_bytes;
			const float *kr = qkv + q + g * hd, *vr = qkv + q + kvd + g * hd;
			switch (kv->type) {
			case MODEL_KV_F16:
				ops_f16_from_f32((uint16_t *)(kv->k + off), kr, hd);
				ops_f16_from_f32((uint16_t *)(kv->v + off), vr, hd);
				break;
			case MODEL_KV_Q8:
				ops_q8_from_f32(kv->k + off, kr, hd);
				ops_q8_from_f32(kv->v + off, vr, hd);
				break;
			default:
				memcpy(kv->k + off, kr, (size_t)hd * sizeof(float));
				memcpy(kv->v + off, vr, (size_t)hd * sizeof(float));
				break;
			}
		}
		break;
	}
	case PH_FFN_IN:
		ops_add(x, xb, d);
		ops_rmsnorm(xb, x, L->ffn_norm, d, c->norm_eps);
		break;
	case PH_SWIGLU: {
		float *h = s->hb + (size_t)i * 2 * c->ffn_dim;
		ops_swiglu(h, h, h + c->ffn_dim, c->ffn_dim);
		break;
	}
	case PH_OUT:
		ops_add(x, xb, d);
		break;
	}
}

static void rows_task(void *arg, int task, int worker)
{
	(void)worker;
	const rows_job_t *j = arg;
	int i0 = task * j->per_task, i1 = i0 + j->per_task;
	if (i1 > j->b->n)
		i1 = j->b->n;
	for (int i = i0; i < i1; i++)
		row_work(j, i);
}

/* Steps below this many tokens do their row work on the caller's thread. */
#define ROWS_PARALLEL_MIN 8

static void run_rows(const model_t *m, model_scratch_t *s, const model_batch_t *b, int layer,
		     enum row_phase phase)
{
	rows_job_t j = { m, s, b, layer, phase, b->n };
	if (b->n < ROWS_PARALLEL_MIN || s->threads == 1) {
		rows_task(&j, 0, 0);
		return;
	}
	j.per_task = (b->n + 4 * s->threads - 1) / (4 * s->threads);
	ops_pool_run(s->pool, rows_task, &j, (b->n + j.per_task - 1) / j.per_task);
}

/* Y = X . W^T with the kernel of W's layout. */
static void matmul(model_scratch_t *s, float *y, size_t ldy, const float *x, size_t ldx, const ops_w_t *w,
		   int n)
{
	if (w->layout == OPS_W_QROWS)
		qmm_matmul(s->pool, y, ldy, x, ldx, w, n, s->qws);
	else
		ops_matmul(s->pool, y, ldy, x, ldx, w, n);
}

int model_forward(const model_t *m, model_scratch_t *s, const model_batch_t *b)
{
	if (m == NULL || s == NULL || b == NULL || b->n <= 0 || b->n > s->max_tokens ||
	    b->tokens == NULL || b->pos == NULL || b->kv == NULL || b->logits == NULL ||
	    (b->hidden_wanted != NULL && b->hidden == NULL) || s->shape != shape_key(m))
		return -EINVAL;	/* (a scratch made for a model of another shape) */
	const model_config_t *c = &m->cfg;
	int n = b->n, d = c->dim, f = c->ffn_dim;
	int q = m->q_dim, kvd = m->kv_dim, qkvd = m->qkv_dim;

	/* validate, and find the wanted rows and the attention blocks */
	int n_wanted = 0, n_blocks = 0;
	for (int i = 0; i < n; i++) {
		model_kv_t *kv = b->kv[i];
		if (b->tokens[i] < 0 || b->tokens[i] >= c->vocab_size || kv == NULL ||
		    kv->n_layers != c->n_layers || kv->kv_dim != kvd || b->pos[i] < 0 ||
		    b->pos[i] >= kv->n_ctx)
			return -EINVAL;
		bool last = i == n - 1 || b->kv[i + 1] != kv;
		if (b->logits_wanted != NULL ? b->logits_wanted[i] : last)
			s->wanted[n_wanted++] = i;
		attn_block_t *blk = n_blocks > 0 ? &s->blocks[n_blocks - 1] : NULL;
		if (blk != NULL && blk->kv == kv && blk->pos0 + blk->n == b->pos[i] &&
		    blk->n < BLOCK_TOKENS) {
			blk->n++;
		} else {
			s->blocks[n_blocks++] = (attn_block_t){ i, 1, b->pos[i], kv, false };
		}
	}
	/* a sequence with 2+ tokens in the step (its tokens are contiguous):
	 * llama.cpp's prompt-batch arithmetic for its attention (ops.h tiled) */
	for (int k = 0; k < n_blocks; k++) {
		attn_block_t *blk = &s->blocks[k];
		blk->multi = blk->n > 1 || (k > 0 && s->blocks[k - 1].kv == blk->kv) ||
			     (k + 1 < n_blocks && s->blocks[k + 1].kv == blk->kv);
	}

	prof_begin(s);
	run_rows(m, s, b, 0, PH_EMBED);
	prof_end(s, MODEL_PH_ROWS);
	for (int l = 0; l < c->n_layers; l++) {
		const layer_t *L = &m->layers[l];
		/* attention: xb = norm(x); qkv = xb . Wqkv^T (+ b), rope, into the cache */
		run_rows(m, s, b, l, PH_ATTN_IN);
		prof_end(s, MODEL_PH_ROWS);
		matmul(s, s->qkv, (size_t)qkvd, s->xb, (size_t)d, &L->wqkv, n);
		prof_end(s, MODEL_PH_QKV);
		run_rows(m, s, b, l, PH_QKV);
		prof_end(s, MODEL_PH_ROWS);
		attn_job_t aj = { m, s, l };
		ops_pool_run_shares(s->pool, attn_task, &aj, n_blocks * c->n_kv_heads);
		prof_end(s, MODEL_PH_ATTN);
		/* x += att . Wo^T; xb = norm(x) */
		matmul(s, s->xb, (size_t)d, s->att, (size_t)q, &L->wo, n);
		prof_end(s, MODEL_PH_WO);
		run_rows(m, s, b, l, PH_FFN_IN);
		prof_end(s, MODEL_PH_ROWS);
		/* ffn: x += (silu(xb . Wg^T) * (xb . Wu^T)) . Wd^T (the add in the next phase) */
		matmul(s, s->hb, 2 * (size_t)f, s->xb, (size_t)d, &L->w13, n);
		prof_end(s, MODEL_PH_W13);
		run_rows(m, s, b, l, PH_SWIGLU);
		prof_end(s, MODEL_PH_ROWS);
		matmul(s, s->xb, (size_t)d, s->hb, 2 * (size_t)f, &L->w2, n);
		prof_end(s, MODEL_PH_W2);
	}
	run_rows(m, s, b, c->n_layers, PH_OUT);

	/* logits of the wanted rows only: gather, norm, output head */
	for (int w = 0; w < n_wanted; w++)
		ops_rmsnorm(s->xb + (size_t)w * d, s->x + (size_t)s->wanted[w] * d, m->output_norm, d,
			    c->norm_eps);
	prof_end(s, MODEL_PH_ROWS);
	if (n_wanted > 0)
		matmul(s, b->logits, (size_t)c->vocab_size, s->xb, (size_t)d, &m->output, n_wanted);
	prof_end(s, MODEL_PH_HEAD);
	/* hidden states of the wanted rows: the same norm, row by row */
	for (int i = 0, h = 0; b->hidden_wanted != NULL && i < n; i++)
		if (b->hidden_wanted[i])
			ops_rmsnorm(b->hidden + (size_t)h++ * d, s->x + (size_t)i * d, m->output_norm, d,
				    c->norm_eps);
	prof_end(s, MODEL_PH_ROWS);

	if (b->flops != NULL) {
		for (int i = 0; i < n; i++)
			b->flops[i] = model_token_flops(m, b->pos[i], false);
		for (int w = 0; w < n_wanted; w++)
			b->flops[s->wanted[w]] += 2 * (uint64_t)d * (uint64_t)c->vocab_size;
	}
	return n_wanted;
}

/* ---- sizing a model without loading it (inspect): an addition of the
 * synth/inspect work, kept apart from the loader and forward ---- */

int model_config_read(const gguf_t *g, model_config_t *ret, char *err, size_t errlen)
{
	model_config_t c;
	int rc = read_config(g, &c, err, errlen);
	if (rc < 0)
		return rc;
	*ret = c;
	return 0;
}

size_t model_config_kv_bytes(const model_config_t *c, int n_ctx, model_kv_type_t type)
{
	if (n_ctx <= 0)
		return 0;
	size_t hd = (size_t)c->head_dim;
	size_t row = type == MODEL_KV_F16 ? hd * sizeof(uint16_t)
		     : type == MODEL_KV_Q8 ? ops_q8_row_bytes((int)hd) : hd * sizeof(float);
	return 2 * (size_t)c->n_layers * (size_t)n_ctx * (size_t)c->n_kv_heads * row;
}
