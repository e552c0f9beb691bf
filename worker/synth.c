/* synth: architecture presets, counter-based pseudo-random weights, the
 * synthetic SentencePiece vocabulary and the GGUF writer of all that. */
#include "synth.h"
#include "lib/mg_f16.h"
#include "lib/mg_err.h"
#include "lib/mg_hash.h"

#include "gguf.h"
#include "quant.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#define LLAMA(dim_, layers, heads, kv, ffn, vocab, ctx, base) \
	{ .arch = MODEL_ARCH_LLAMA, .arch_name = "llama", .dim = dim_, .n_layers = layers, \
	  .n_heads = heads, .n_kv_heads = kv, .head_dim = (dim_) / (heads), .ffn_dim = ffn, \
	  .vocab_size = vocab, .n_ctx = ctx, .rope_dim = (dim_) / (heads), .rope_base = base, \
	  .norm_eps = 1e-5f, .rope_neox = false, .qkv_bias = false, .tied_output = false }
#define QWEN2(dim_, layers, heads, kv, ffn, vocab, ctx, tied) \
	{ .arch = MODEL_ARCH_QWEN2, .arch_name = "qwen2", .dim = dim_, .n_layers = layers, \
	  .n_heads = heads, .n_kv_heads = kv, .head_dim = (dim_) / (heads), .ffn_dim = ffn, \
	  .vocab_size = vocab, .n_ctx = ctx, .rope_dim = (dim_) / (heads), .rope_base = 1e6f, \
	  .norm_eps = 1e-6f, .rope_neox = true, .qkv_bias = true, .tied_output = tied }
/* Llama 3.x: rope_freqs made from factor and an original context of 8192 */
#define LLAMA3(dim_, layers, heads, kv, ffn, vocab, ctx, factor, tied) \
	{ .arch = MODEL_ARCH_LLAMA, .arch_name = "llama", .dim = dim_, .n_layers = layers, \
	  .n_heads = heads, .n_kv_heads = kv, .head_dim = (dim_) / (heads), .ffn_dim = ffn, \
	  .vocab_size = vocab, .n_ctx = ctx, .rope_dim = (dim_) / (heads), .rope_base = 500000.0f, \
	  .norm_eps = 1e-5f, .tied_output = tied, .rope_scaling = MODEL_ROPE_SCALING_LLAMA3, \
	  .rope_scaling_factor = factor, .rope_orig_ctx = 8192, .rope_freqs = true }
/* Mistral: llama with a sliding window */
#define MISTRAL(dim_, layers, heads, kv, ffn, vocab, ctx, base, window) \
	{ .arch = MODEL_ARCH_LLAMA, .arch_name = "llama", .dim = dim_, .n_layers = layers, \
	  .n_heads = heads, .n_kv_heads = kv, .head_dim = (dim_) / (heads), .ffn_dim = ffn, \
	  .vocab_size = vocab, .n_ctx = ctx, .rope_dim = (dim_) / (heads), .rope_base = base, \
	  .norm_eps = 1e-5f, .sliding_window = window }
/* Qwen3: head_dim of its own (q_dim may differ from dim), q/k norms, no biases */
#define QWEN3(dim_, layers, heads, kv, hd, ffn, vocab, ctx, tied) \
	{ .arch = MODEL_ARCH_QWEN3, .arch_name = "qwen3", .dim = dim_, .n_layers = layers, \
	  .n_heads = heads, .n_kv_heads = kv, .head_dim = hd, .ffn_dim = ffn, \
	  .vocab_size = vocab, .n_ctx = ctx, .rope_dim = hd, .rope_base = 1e6f, \
	  .norm_eps = 1e-6f, .rope_neox = true, .qk_norm = true, .tied_output = tied }

static const synth_preset_t presets[] = {
	{ "tiny", "test model: dim 64, 2 layers, GQA 4/2, vocab 512",
	  LLAMA(64, 2, 4, 2, 160, 512, 256, 10000.0f) },
	{ "tiny-qwen2", "test model: qwen2 layout (qkv biases, neox rope, tied), dim 64, 2 layers",
	  QWEN2(64, 2, 4, 2, 160, 512, 256, true) },
	{ "tiny-k", "test model for K-quants (rows of 256): dim 256, 8 layers, GQA 4/1, ffn 512",
	  LLAMA(256, 8, 4, 1, 512, 512, 256, 10000.0f) },
	{ "llama-110m", "llama2.c 110M shape: dim 768, 12 layers, 12 heads, ffn 2048, vocab 32000",
	  LLAMA(768, 12, 12, 12, 2048, 32000, 1024, 10000.0f) },
	{ "qwen2-0.5b", "Qwen2-0.5B shape: dim 896, 24 layers, GQA 14/2, ffn 4864, vocab 151936, tied",
	  QWEN2(896, 24, 14, 2, 4864, 151936, 32768, true) },
	{ "llama2-7b", "Llama-2-7B shape: dim 4096, 32 layers, 32 heads, ffn 11008, vocab 32000",
	  LLAMA(4096, 32, 32, 32, 11008, 32000, 4096, 10000.0f) },
	{ "llama3-8b", "Llama-3-8B shape: dim 4096, 32 layers, GQA 32/8, ffn 14336, vocab 128256",
	  LLAMA(4096, 32, 32, 8, 14336, 128256, 8192, 500000.0f) },
	{ "qwen2-7b", "Qwen2-7B shape: dim 3584, 28 layers, GQA 28/4, ffn 18944, vocab 152064",
	  QWEN2(3584, 28, 28, 4, 18944, 152064, 32768, false) },
	{ "llama3-tiny", "test model: tiny with Llama 3.1 RoPE scaling (rope_freqs of factor 8), base 500000",
	  LLAMA3(64, 2, 4, 2, 160, 512, 2048, 8.0f, false) },
	{ "llama-linear-tiny", "test model: tiny with linear RoPE scaling, factor 4",
	  { .arch = MODEL_ARCH_LLAMA, .arch_name = "llama", .dim = 64, .n_layers = 2, .n_heads = 4,
	    .n_kv_heads = 2, .head_dim = 16, .ffn_dim = 160, .vocab_size = 512, .n_ctx = 1024,
	    .rope_dim = 16, .rope_base = 10000.0f, .norm_eps = 1e-5f,
	    .rope_scaling = MODEL_ROPE_SCALING_LINEAR, .rope_scaling_factor = 4.0f } },
	{ "mistral-tiny", "test model: tiny with a sliding window of 8 positions (Mistral)",
	  MISTRAL(64, 2, 4, 2, 160, 512, 256, 10000.0f, 8) },
	{ "qwen3-tiny", "test model: qwen3 layout (q/k norms, head_dim 32 > dim/heads, tied), dim 64",
	  QWEN3(64, 2, 4, 2, 32, 160, 512, 256, true) },
	{ "qwen3-0.6b", "Qwen3-0.6B shape: dim 1024, 28 layers, GQA 16/8, head_dim 128, ffn 3072, tied",
	  QWEN3(1024, 28, 16, 8, 128, 3072, 151936, 40960, true) },
	{ "llama3.2-1b", "Llama-3.2-1B shape: dim 2048, 16 layers, GQA 32/8, ffn 8192, rope_freqs, tied",
	  LLAMA3(2048, 16, 32, 8, 8192, 128256, 131072, 32.0f, true) },
	{ "mistral-7b", "Mistral-7B-v0.1 shape: dim 4096, 32 layers, GQA 32/8, ffn 14336, window 4096",
	  MISTRAL(4096, 32, 32, 8, 14336, 32000, 32768, 10000.0f, 4096) },
};
#define N_PRESETS (sizeof(presets) / sizeof(presets[0]))

const synth_preset_t *synth_preset_find(const char *name)
{
	for (size_t i = 0; name != NULL && i < N_PRESETS; i++)
		if (strcmp(presets[i].name, name) == 0)
			return &presets[i];
	return NULL;
}

size_t synth_n_presets(void)
{
	return N_PRESETS;
}

const synth_preset_t *synth_preset_at(size_t i)
{
	return i < N_PRESETS ? &presets[i] : NULL;
}

/* ---------------- weights ---------------- */

/* How a tensor's elements are made (synth.h): element i is u(key, i) * a;
 * 1 for norm weights; 1 + u(key, i) * a for the q/k head norms; Llama 3's
 * formula for rope_freqs. */
enum gen_kind { GEN_UNIFORM, GEN_ONES, GEN_NEAR_ONE, GEN_LLAMA3_FREQS };
typedef struct gen {
	enum gen_kind kind;
	uint64_t key;
	float a;
	uint64_t ne0, ne1;
	/* GEN_LLAMA3_FREQS */
	double base, factor, orig_ctx;
	int rope_dim;
} gen_t;

static int gen_init(const model_config_t *cfg, const char *name, gen_t *g)
{
	/* find the tensor among the configuration's (fan-in = ne0) */
	int n = model_tensor_specs(cfg, NULL, 0);
	model_tensor_spec_t *specs = malloc((size_t)n * sizeof(*specs));
	if (specs == NULL)
		return -ENOMEM;
	model_tensor_specs(cfg, specs, n);
	int found = -1;
	for (int i = 0; i < n && found < 0; i++)
		if (strcmp(specs[i].name, name) == 0)
			found = i;
	if (found >= 0) {
		g->ne0 = specs[found].ne[0];
		g->ne1 = specs[found].ne[1];
	}
	free(specs);
	if (found < 0)
		return -EINVAL;
	size_t len = strlen(name);
	bool is_bias = len > 5 && strcmp(name + len - 5, ".bias") == 0;
	bool head_norm = strstr(name, ".attn_q_norm.") != NULL || strstr(name, ".attn_k_norm.") != NULL;
	g->kind = len > 12 && strcmp(name + len - 12, "_norm.weight") == 0 ? GEN_ONES : GEN_UNIFORM;
	g->a = is_bias ? 0.1f : (float)sqrt(3.0 / (double)g->ne0);
	if (head_norm) {
		g->kind = GEN_NEAR_ONE;
		g->a = 0.5f;
	}
	if (strcmp(name, "rope_freqs.weight") == 0) {
		g->kind = GEN_LLAMA3_FREQS;
		g->base = cfg->rope_base;
		g->factor = cfg->rope_scaling_factor;
		g->orig_ctx = cfg->rope_orig_ctx;
		g->rope_dim = cfg->rope_dim;
	}
	g->key = mg_mix64(SYNTH_SEED ^ mg_fnv1a64(MG_FNV1A64_OFFSET, name, strlen(name)));
	return 0;
}

/* Factor i of Llama 3.x RoPE scaling as llama.cpp's converter makes
 * rope_freqs.weight (convert_hf_to_gguf.py, LlamaModel, rope_type
 * "llama3"), with low_freq_factor 1 and high_freq_factor 4 (those of every
 * Llama 3.1 and 3.2 release): frequencies whose wavelength is under
 * orig_ctx / 4 keep 1, over orig_ctx / 1 get factor, and in between a
 * smooth mix. In double, rounded once (the converter works in float32
 * torch, so a mixed factor may differ from its file in the last bit). */
static float llama3_freq_factor(const gen_t *g, uint64_t i)
{
	const double low = 1.0, high = 4.0;
	double freq = 1.0 / pow(g->base, (double)(2 * i) / g->rope_dim);
	double wavelen = 2.0 * M_PI / freq;
	if (wavelen < g->orig_ctx / high)
		return 1.0f;
	if (wavelen > g->orig_ctx / low)
		return (float)g->factor;
	double smooth = (g->orig_ctx / wavelen - low) / (high - low);
	return (float)(1.0 / ((1.0 - smooth) / g->factor + smooth));
}

static void gen_elems(const gen_t *g, uint64_t e0, uint64_t n, float *dst)
{
	if (g->kind == GEN_ONES || g->kind == GEN_LLAMA3_FREQS) {
		for (uint64_t i = 0; i < n; i++)
			dst[i] = g->kind == GEN_ONES ? 1.0f : llama3_freq_factor(g, e0 + i);
		return;
	}
	for (uint64_t i = 0; i < n; i++) {
		uint64_t h = mg_mix64(g->key + (e0 + i) * MG_SPLITMIX64_GAMMA);
		/* 24 random bits: exactly representable, uniform in [-1, 1) */
		float u = (float)(int32_t)(h >> 40) * (1.0f / 8388608.0f) - 1.0f;
		dst[i] = g->kind == GEN_NEAR_ONE ? 1.0f + u * g->a : u * g->a;
	}
}

int synth_tensor_rows(const model_config_t *cfg, const char *name, uint64_t row0,
		      uint64_t n_rows, float *dst)
{
	gen_t g;
	int rc = gen_init(cfg, name, &g);
	if (rc < 0)
		return rc;
	if (row0 > g.ne1 || n_rows > g.ne1 - row0)
		return -EINVAL;
	gen_elems(&g, row0 * g.ne0, n_rows * g.ne0, dst);
	return 0;
}

/* ---------------- vocabulary ---------------- */

/* "a".."z", "aa".. : bijective base 26 of m + 1 */
static size_t word(uint64_t m, char *out)
{
	char tmp[16];
	size_t n = 0;
	m += 1;
	while (m > 0 && n < sizeof(tmp)) {
		m -= 1;
		tmp[n++] = (char)('a' + m % 26);
		m /= 26;
	}
	for (size_t i = 0; i < n; i++)
		out[i] = tmp[n - 1 - i];
	return n;
}

int synth_vocab_init(synth_vocab_t *v, uint32_t n)
{
	memset(v, 0, sizeof(*v));
	if (n < 260)
		return -EINVAL;
	v->n = n;
	v->tokens = calloc(n, sizeof(*v->tokens));
	v->scores = calloc(n, sizeof(*v->scores));
	v->types = calloc(n, sizeof(*v->types));
	v->pool = malloc((size_t)n * 24);
	if (v->tokens == NULL || v->scores == NULL || v->types == NULL || v->pool == NULL) {
		synth_vocab_done(v);
		return -ENOMEM;
	}
	char *p = v->pool;
	for (uint32_t i = 0; i < n; i++) {
		v->tokens[i] = p;
		if (i == 0) {
			p += sprintf(p, "<unk>");
			v->types[i] = TOK_TYPE_UNKNOWN;
		} else if (i == 1 || i == 2) {
			p += sprintf(p, i == 1 ? "<s>" : "</s>");
			v->types[i] = TOK_TYPE_CONTROL;
		} else if (i < 259) {
			p += sprintf(p, "<0x%02X>", i - 3);
			v->types[i] = TOK_TYPE_BYTE;
		} else {
			uint64_t j = i - 259;
			if (j == 0 || j % 2 == 1) {
				memcpy(p, "\xe2\x96\x81", 3);	/* U+2581 */
				p += 3;
			}
			if (j > 0)
				p += word((j - 1) / 2, p);
			v->types[i] = TOK_TYPE_NORMAL;
			v->scores[i] = -(float)(i - 259);
		}
		*p++ = '\0';
	}
	return 0;
}

void synth_vocab_done(synth_vocab_t *v)
{
	if (v == NULL)
		return;
	free(v->tokens);
	free(v->scores);
	free(v->types);
	free(v->pool);
	memset(v, 0, sizeof(*v));
}

int synth_tok_new(uint32_t n_tokens, tok_t **ret, char *err, size_t errlen)
{
	synth_vocab_t sv;
	int rc = synth_vocab_init(&sv, n_tokens);
	if (rc < 0)
		return mg_seterr(err, errlen, rc, "synthetic vocabulary of %u tokens: %s", n_tokens,
			      rc == -EINVAL ? "needs at least 260" : "out of memory");
	tok_vocab_t v = {
		.kind = TOK_KIND_SPM,
		.n_tokens = sv.n,
		.tokens = (const char *const *)sv.tokens,
		.scores = sv.scores,
		.types = sv.types,
		.bos = 1, .eos = 2, .unk = 0, .pad = -1,
		.add_bos = 1, .add_eos = 0,
	};
	rc = tok_new(&v, ret, err, errlen);
	synth_vocab_done(&sv);
	return rc;
}

/* ---------------- GGUF ---------------- */

static int set_keys(gguf_writer_t *w, const synth_preset_t *p, const model_config_t *c,
		    const quant_mix_t *mix, const synth_vocab_t *sv)
{
	char key[96];
	const char *a = c->arch_name;
	int rc = 0;
#define K(suffix) (snprintf(key, sizeof(key), "%s.%s", a, suffix), key)
	if ((rc = gguf_writer_set_str(w, "general.architecture", a)) < 0 ||
	    (rc = gguf_writer_set_str(w, "general.name", p->name)) < 0 ||
	    (rc = gguf_writer_set_u32(w, "general.file_type", mix->ftype)) < 0 ||
	    (quant_supported(mix->base) &&
	     (rc = gguf_writer_set_u32(w, "general.quantization_version", 2)) < 0) ||
	    (rc = gguf_writer_set_u32(w, K("context_length"), (uint32_t)c->n_ctx)) < 0 ||
	    (rc = gguf_writer_set_u32(w, K("embedding_length"), (uint32_t)c->dim)) < 0 ||
	    (rc = gguf_writer_set_u32(w, K("block_count"), (uint32_t)c->n_layers)) < 0 ||
	    (rc = gguf_writer_set_u32(w, K("feed_forward_length"), (uint32_t)c->ffn_dim)) < 0 ||
	    (rc = gguf_writer_set_u32(w, K("attention.head_count"), (uint32_t)c->n_heads)) < 0 ||
	    (rc = gguf_writer_set_u32(w, K("attention.head_count_kv"), (uint32_t)c->n_kv_heads)) < 0 ||
	    (rc = gguf_writer_set_u32(w, K("rope.dimension_count"), (uint32_t)c->rope_dim)) < 0 ||
	    (rc = gguf_writer_set_f32(w, K("rope.freq_base"), c->rope_base)) < 0 ||
	    (rc = gguf_writer_set_f32(w, K("attention.layer_norm_rms_epsilon"), c->norm_eps)) < 0 ||
	    (rc = gguf_writer_set_u32(w, K("vocab_size"), (uint32_t)c->vocab_size)) < 0)
		return rc;
	/* the keys of the later features, written where a converter writes
	 * them: head sizes of their own (Qwen3's head_dim), linear RoPE
	 * scaling (Llama 3's is the rope_freqs tensor alone), Mistral's window */
	if ((c->head_dim * c->n_heads != c->dim || c->arch == MODEL_ARCH_QWEN3) &&
	    ((rc = gguf_writer_set_u32(w, K("attention.key_length"), (uint32_t)c->head_dim)) < 0 ||
	     (rc = gguf_writer_set_u32(w, K("attention.value_length"), (uint32_t)c->head_dim)) < 0))
		return rc;
	if (c->rope_scaling == MODEL_ROPE_SCALING_LINEAR &&
	    ((rc = gguf_writer_set_str(w, K("rope.scaling.type"), "linear")) < 0 ||
	     (rc = gguf_writer_set_f32(w, K("rope.scaling.factor"), c->rope_scaling_factor)) < 0))
		return rc;
	if (c->sliding_window > 0 &&
	    (rc = gguf_writer_set_u32(w, K("attention.sliding_window"), (uint32_t)c->sliding_window)) < 0)
		return rc;
#undef K
	if ((rc = gguf_writer_set_str(w, "tokenizer.ggml.model", "llama")) < 0 ||
	    (rc = gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)sv->tokens,
					  sv->n)) < 0 ||
	    (rc = gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_VTYPE_FLOAT32, sv->scores,
				      sv->n)) < 0 ||
	    (rc = gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_VTYPE_INT32, sv->types,
				      sv->n)) < 0 ||
	    (rc = gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1)) < 0 ||
	    (rc = gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2)) < 0 ||
	    (rc = gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0)) < 0 ||
	    (rc = gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true)) < 0 ||
	    (rc = gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", false)) < 0)
		return rc;
	return 0;
}

#define FILL_MAX (64u * 1024u)	/* the writer's largest piece */

/* One tensor being written: the blocks (elements for F32, F16, BF16) that
 * cover each piece the writer asks for are generated and converted there
 * and then; a block split between two pieces is made twice, the same. */
typedef struct fill {
	gen_t g;
	uint32_t type;
	uint64_t qk, bb;	/* values and bytes a block: 1 and 4 for F32 */
	float *f;		/* borrowed: shared scratch for the largest piece */
	uint8_t *bytes;		/* borrowed: shared scratch for the largest piece */
} fill_t;

/* Blocks that can cover a piece, and the scratch they need. */
static uint64_t fill_blocks(uint64_t bb)
{
	return FILL_MAX / bb + 2;
}

static int fill_piece(void *ctx, void *dst, uint64_t offset, size_t len)
{
	fill_t *f = ctx;
	uint64_t b0 = offset / f->bb, b1 = (offset + len + f->bb - 1) / f->bb, n = (b1 - b0) * f->qk;
	if (b1 - b0 > fill_blocks(f->bb))
		return -EINVAL;
	gen_elems(&f->g, b0 * f->qk, n, f->f);
	if (f->type == GGUF_TTYPE_F32) {
		memcpy(f->bytes, f->f, n * sizeof(float));
	} else if (f->type == GGUF_TTYPE_F16 || f->type == GGUF_TTYPE_BF16) {
		for (uint64_t i = 0; i < n; i++) {
			uint16_t h = f->type == GGUF_TTYPE_F16 ? mg_f32_to_f16(f->f[i]) : gguf_f32_to_bf16(f->f[i]);
			memcpy(f->bytes + 2 * i, &h, 2);
		}
	} else {
		int rc = quant_quantize_row(f->type, f->f, f->bytes, (int64_t)n);
		if (rc < 0)
			return rc;
	}
	memcpy(dst, f->bytes + (offset - b0 * f->bb), len);
	return 0;
}

/* The type tensor t gets in mix: 1-D tensors stay F32. */
static uint32_t tensor_type(const quant_mix_t *mix, const model_config_t *c,
			    const model_tensor_spec_t *t)
{
	if (t->n_dims == 1)
		return GGUF_TTYPE_F32;
	return quant_mix_type(mix, t->name, -1, c->n_layers, (int64_t)t->ne[0]);
}

int synth_write_gguf(const char *preset, int n_layers_override, uint32_t type,
		     const char *path, char *err, size_t errlen)
{
	const char *mix = type == GGUF_TTYPE_F32 ? "f32" : type == GGUF_TTYPE_F16 ? "f16"
			  : type == GGUF_TTYPE_BF16 ? "bf16" : type == GGUF_TTYPE_Q8_0 ? "q8_0" : NULL;
	if (mix == NULL)
		return mg_seterr(err, errlen, -EINVAL, "synth_write_gguf writes F32, F16, BF16 or Q8_0; "
				 "name a mix for the other types");
	return synth_write_gguf_mix(preset, n_layers_override, mix, path, err, errlen);
}

int synth_write_gguf_mix(const char *preset, int n_layers_override, const char *mix_name,
			 const char *path, char *err, size_t errlen)
{
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	const synth_preset_t *p = synth_preset_find(preset);
	if (p == NULL)
		return mg_seterr(err, errlen, -EINVAL, "unknown preset '%s'", preset ? preset : "");
	quant_mix_t mix;
	if (quant_mix_parse(mix_name, &mix) < 0)
		return mg_seterr(err, errlen, -EINVAL, "unknown type '%s'", mix_name ? mix_name : "");
	model_config_t c = p->cfg;
	if (n_layers_override > 0)
		c.n_layers = n_layers_override;
	mix.n_gqa = c.n_heads / c.n_kv_heads;
	mix.tied_output = c.tied_output;
	int n = model_tensor_specs(&c, NULL, 0);
	model_tensor_spec_t *specs = calloc((size_t)n, sizeof(*specs));
	fill_t *fills = calloc((size_t)n, sizeof(*fills));
	gguf_writer_t *w = gguf_writer_new();
	float *fbuf = NULL;
	uint8_t *bbuf = NULL;
	synth_vocab_t sv;
	memset(&sv, 0, sizeof(sv));
	int rc = -ENOMEM;
	if (specs == NULL || fills == NULL || w == NULL) {
		mg_seterr(err, errlen, rc, "%s: out of memory", path);
		goto done;
	}
	model_tensor_specs(&c, specs, n);
	/* each tensor's type, and the scratch its pieces need */
	uint64_t max_f = 0, max_b = 0;
	for (int i = 0; i < n; i++) {
		fill_t *f = &fills[i];
		f->type = tensor_type(&mix, &c, &specs[i]);
		f->qk = quant_supported(f->type) ? (uint64_t)quant_block_values(f->type) : 1;
		f->bb = quant_supported(f->type) ? (uint64_t)quant_block_bytes(f->type)
			: f->type == GGUF_TTYPE_F32 ? 4 : 2;
		uint64_t nb = fill_blocks(f->bb);
		max_f = nb * f->qk > max_f ? nb * f->qk : max_f;
		max_b = nb * f->bb > max_b ? nb * f->bb : max_b;
	}
	fbuf = malloc(max_f * sizeof(float));
	bbuf = malloc(max_f * sizeof(float) > max_b ? max_f * sizeof(float) : max_b);
	if (fbuf == NULL || bbuf == NULL) {
		mg_seterr(err, errlen, rc, "%s: out of memory", path);
		goto done;
	}
	if ((rc = synth_vocab_init(&sv, (uint32_t)c.vocab_size)) < 0 ||
	    (rc = set_keys(w, p, &c, &mix, &sv)) < 0) {
		mg_seterr(err, errlen, rc, "%s: cannot build the metadata", path);
		goto done;
	}
	/* Tensors are generated piece by piece as the writer streams them out:
	 * the model is never held in memory, whatever its size. */
	for (int i = 0; i < n; i++) {
		const model_tensor_spec_t *t = &specs[i];
		fill_t *f = &fills[i];
		f->f = fbuf;
		f->bytes = bbuf;
		uint64_t nb = gguf_ttype_nbytes(f->type, t->ne[0] * t->ne[1]);
		if ((rc = gen_init(&c, t->name, &f->g)) < 0 ||
		    (rc = gguf_writer_add_tensor_fill(w, t->name, f->type, t->n_dims, t->ne, nb,
						      fill_piece, f)) < 0) {
			mg_seterr(err, errlen, rc, "%s: tensor %s: cannot add it", path, t->name);
			goto done;
		}
	}
	rc = gguf_writer_write(w, path, err, errlen);
done:
	free(fills);
	free(fbuf);
	free(bbuf);
	free(specs);
	synth_vocab_done(&sv);
	gguf_writer_destroy(&w);
	return rc;
}

/* ---------------- models ---------------- */

int model_new_synth_opts(const char *preset, int n_layers_override, const model_opts_t *o,
			 model_t **ret, char *err, size_t errlen)
{
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	const synth_preset_t *p = preset != NULL ? synth_preset_find(preset) : NULL;
	if (p == NULL || ret == NULL) {
		size_t len = 0;
		char list[256] = "";
		for (size_t i = 0; i < synth_n_presets() && len < sizeof(list); i++)
			len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%s", i ? ", " : "",
						synth_preset_at(i)->name);
		return mg_seterr(err, errlen, -EINVAL, "unknown preset '%s' (presets: %s)",
			      preset != NULL ? preset : "", list);
	}
	model_config_t c = p->cfg;
	if (n_layers_override > 0)
		c.n_layers = n_layers_override;
	static const model_gen_t gen = { synth_tensor_rows, synth_tok_new };
	char label[64];
	snprintf(label, sizeof(label), "preset %s", preset);
	return model_new_generated(label, &c, o, &gen, ret, err, errlen);
}

int model_new_synth(const char *preset, int n_layers_override, model_t **ret,
		    char *err, size_t errlen)
{
	return model_new_synth_opts(preset, n_layers_override, NULL, ret, err, errlen);
}
