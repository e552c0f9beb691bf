/* synth: presets have the published shapes, weights are deterministic and
 * generated per tensor, and a synthetic model written to GGUF reads back
 * as the same model (bit for bit in F32, close in F16). */
#include "cu_main.h"
#include "gguf.h"
#include "model.h"
#include "quant.h"
#include "synth.h"
#include "tok.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_presets(void)
{
	const synth_preset_t *p = synth_preset_find("llama-110m");
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	/* machine.md: 109.5M parameters read per token (incl. the output head),
	 * 134.1M in all */
	CU_ASSERT_EQUAL(model_config_n_params_per_token(&p->cfg), 109529856u);
	CU_ASSERT_EQUAL((model_config_n_params_per_token(&p->cfg) + 50000) / 100000, 1095);
	CU_ASSERT_EQUAL((model_config_n_params(&p->cfg) + 50000) / 100000, 1341);
	const synth_preset_t *q = synth_preset_find("qwen2-0.5b");
	CU_ASSERT_PTR_NOT_NULL_FATAL(q);
	CU_ASSERT(q->cfg.tied_output && q->cfg.qkv_bias && q->cfg.rope_neox);
	CU_ASSERT_EQUAL(q->cfg.n_kv_heads, 2);
	CU_ASSERT_EQUAL(q->cfg.head_dim, 64);
	/* Qwen2-0.5B: 494M parameters (tied) */
	CU_ASSERT_EQUAL((model_config_n_params(&q->cfg) + 500000) / 1000000, 494);
	const synth_preset_t *l3 = synth_preset_find("llama3-8b");
	CU_ASSERT_PTR_NOT_NULL_FATAL(l3);
	CU_ASSERT_EQUAL((model_config_n_params(&l3->cfg) + 50000000) / 100000000, 80);	/* 8.03B */
	const synth_preset_t *l2 = synth_preset_find("llama2-7b");
	CU_ASSERT_PTR_NOT_NULL_FATAL(l2);
	CU_ASSERT_EQUAL((model_config_n_params(&l2->cfg) + 50000000) / 100000000, 67);	/* 6.74B */
	const synth_preset_t *q7 = synth_preset_find("qwen2-7b");
	CU_ASSERT_PTR_NOT_NULL_FATAL(q7);
	CU_ASSERT_EQUAL((model_config_n_params(&q7->cfg) + 50000000) / 100000000, 76);	/* 7.62B */
	/* Qwen3-0.6B: 596M (0.44B without the tied embedding); head_dim 128,
	 * so q is 2048 wide for a dim of 1024 */
	const synth_preset_t *q3 = synth_preset_find("qwen3-0.6b");
	CU_ASSERT_PTR_NOT_NULL_FATAL(q3);
	CU_ASSERT(q3->cfg.qk_norm && !q3->cfg.qkv_bias && q3->cfg.rope_neox && q3->cfg.tied_output);
	CU_ASSERT_EQUAL(q3->cfg.n_heads * q3->cfg.head_dim, 2048);
	CU_ASSERT_EQUAL((model_config_n_params(&q3->cfg) + 500000) / 1000000, 596);
	/* Llama-3.2-1B: 1.236B, tied, Llama 3 RoPE scaling of factor 32 */
	const synth_preset_t *l32 = synth_preset_find("llama3.2-1b");
	CU_ASSERT_PTR_NOT_NULL_FATAL(l32);
	CU_ASSERT(l32->cfg.rope_freqs && l32->cfg.tied_output);
	CU_ASSERT_EQUAL((model_config_n_params(&l32->cfg) + 500000) / 1000000, 1236);
	/* Mistral-7B-v0.1: 7.24B, a 4096-position window */
	const synth_preset_t *m7 = synth_preset_find("mistral-7b");
	CU_ASSERT_PTR_NOT_NULL_FATAL(m7);
	CU_ASSERT_EQUAL(m7->cfg.sliding_window, 4096);
	CU_ASSERT_EQUAL((model_config_n_params(&m7->cfg) + 5000000) / 10000000, 724);
	CU_ASSERT_PTR_NULL(synth_preset_find("nope"));
	CU_ASSERT(synth_n_presets() >= 13);

	/* a built model agrees with the formula */
	model_t *m = NULL;
	char err[256];
	CU_ASSERT_EQUAL_FATAL(model_new_synth("llama-110m", 1, &m, err, sizeof(err)), 0);
	model_config_t one = p->cfg;
	one.n_layers = 1;
	CU_ASSERT_EQUAL(model_n_params_per_token(m), model_config_n_params_per_token(&one));
	CU_ASSERT_EQUAL(model_config(m)->n_layers, 1);
	model_destroy(&m);
	CU_ASSERT_EQUAL(model_new_synth("nope", 0, &m, err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "llama-110m"));	/* lists the presets */
}

static void test_weights(void)
{
	const model_config_t *c = &synth_preset_find("tiny")->cfg;
	float all[160 * 64], part[5 * 64];
	CU_ASSERT_EQUAL_FATAL(synth_tensor_rows(c, "blk.1.ffn_up.weight", 0, 160, all), 0);
	CU_ASSERT_EQUAL_FATAL(synth_tensor_rows(c, "blk.1.ffn_up.weight", 77, 5, part), 0);
	CU_ASSERT(memcmp(part, all + 77 * 64, sizeof(part)) == 0);
	double a = sqrt(3.0 / 64), sum = 0, sq = 0;
	for (int i = 0; i < 160 * 64; i++) {
		CU_ASSERT(fabs(all[i]) <= a);
		sum += all[i];
		sq += (double)all[i] * all[i];
	}
	/* variance 1/fan_in, mean 0 */
	CU_ASSERT(fabs(sq / (160 * 64) - 1.0 / 64) < 0.1 / 64);
	CU_ASSERT(fabs(sum / (160 * 64)) < 0.01);
	/* another tensor is different */
	CU_ASSERT_EQUAL_FATAL(synth_tensor_rows(c, "blk.0.ffn_up.weight", 77, 5, part), 0);
	CU_ASSERT(memcmp(part, all + 77 * 64, sizeof(part)) != 0);
	float norm[64];
	CU_ASSERT_EQUAL(synth_tensor_rows(c, "blk.0.attn_norm.weight", 0, 1, norm), 0);
	for (int i = 0; i < 64; i++)
		CU_ASSERT_EQUAL(norm[i], 1.0f);
	CU_ASSERT_EQUAL(synth_tensor_rows(c, "blk.2.attn_q.weight", 0, 1, part), -EINVAL);
	CU_ASSERT_EQUAL(synth_tensor_rows(c, "blk.0.attn_q.weight", 60, 5, part), -EINVAL);
	CU_ASSERT_EQUAL(synth_tensor_rows(c, "blk.0.attn_q.bias", 0, 1, part), -EINVAL);
	CU_ASSERT_EQUAL(synth_tensor_rows(c, "rope_freqs.weight", 0, 1, part), -EINVAL);
	CU_ASSERT_EQUAL(synth_tensor_rows(c, "blk.0.attn_q_norm.weight", 0, 1, part), -EINVAL);

	/* qwen3's head norms are not all 1: in [0.5, 1.5), and differ */
	const model_config_t *q3 = &synth_preset_find("qwen3-tiny")->cfg;
	float qn[32], kn[32];
	CU_ASSERT_EQUAL_FATAL(synth_tensor_rows(q3, "blk.1.attn_q_norm.weight", 0, 1, qn), 0);
	CU_ASSERT_EQUAL_FATAL(synth_tensor_rows(q3, "blk.1.attn_k_norm.weight", 0, 1, kn), 0);
	for (int i = 0; i < 32; i++)
		CU_ASSERT(qn[i] >= 0.5f && qn[i] < 1.5f && kn[i] >= 0.5f && kn[i] < 1.5f);
	CU_ASSERT(qn[0] != qn[1] && memcmp(qn, kn, sizeof(qn)) != 0);
}

/* Llama 3's frequency factors, written out from the converter's loop
 * (convert_hf_to_gguf.py, LlamaModel): low_freq_factor 1, high 4. */
static double llama3_factor(double base, int dim, int i, double factor, double old_ctx)
{
	double freq = 1.0 / pow(base, (double)(2 * i) / dim);
	double wavelen = 2 * M_PI / freq, low_wl = old_ctx / 1.0, high_wl = old_ctx / 4.0;
	if (wavelen < high_wl)
		return 1.0;
	if (wavelen > low_wl)
		return factor;
	double smooth = (old_ctx / wavelen - 1.0) / (4.0 - 1.0);
	return 1.0 / ((1.0 - smooth) / factor + smooth);
}

/* rope_freqs of the Llama 3 presets: the converter's factors; for
 * llama3-tiny (base 500000, 8 pairs) 1 for the four fastest frequencies,
 * 8 for the three slowest and a mix (about 2.69) between. */
static void test_rope_freqs(void)
{
	static const char *const names[] = { "llama3-tiny", "llama3.2-1b" };
	for (int k = 0; k < 2; k++) {
		const model_config_t *c = &synth_preset_find(names[k])->cfg;
		int n = c->rope_dim / 2;
		float ff[64];
		CU_ASSERT_FATAL(n <= 64);
		CU_ASSERT_EQUAL_FATAL(synth_tensor_rows(c, "rope_freqs.weight", 0, 1, ff), 0);
		for (int i = 0; i < n; i++)
			CU_ASSERT(ff[i] == (float)llama3_factor(c->rope_base, c->rope_dim, i,
								c->rope_scaling_factor, c->rope_orig_ctx));
		CU_ASSERT_EQUAL(ff[0], 1.0f);
		CU_ASSERT_EQUAL(ff[n - 1], c->rope_scaling_factor);
	}
	const model_config_t *t = &synth_preset_find("llama3-tiny")->cfg;
	float ff[8];
	CU_ASSERT_EQUAL_FATAL(synth_tensor_rows(t, "rope_freqs.weight", 0, 1, ff), 0);
	for (int i = 0; i < 4; i++)
		CU_ASSERT_EQUAL(ff[i], 1.0f);
	CU_ASSERT(fabs(ff[4] - 2.69) < 0.01);
	for (int i = 5; i < 8; i++)
		CU_ASSERT_EQUAL(ff[i], 8.0f);
}

static void test_vocab(void)
{
	tok_t *t = NULL;
	char err[256];
	CU_ASSERT_EQUAL_FATAL(synth_tok_new(512, &t, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(tok_n_vocab(t), 512);
	CU_ASSERT_EQUAL(tok_bos(t), 1);
	CU_ASSERT_EQUAL(tok_eos(t), 2);
	CU_ASSERT(tok_add_bos(t));
	CU_ASSERT_STRING_EQUAL(tok_text(t, 3), "<0x00>");
	CU_ASSERT_STRING_EQUAL(tok_text(t, 259), "\xe2\x96\x81");
	CU_ASSERT_STRING_EQUAL(tok_text(t, 260), "\xe2\x96\x81" "a");
	CU_ASSERT_STRING_EQUAL(tok_text(t, 261), "a");
	/* text round-trips, bytes outside the pieces through byte tokens */
	const char *text = "hello world, caf\xc3\xa9!";
	int32_t *ids = NULL;
	size_t n = 0;
	CU_ASSERT_EQUAL_FATAL(tok_encode(t, text, strlen(text), true, false, &ids, &n), 0);
	CU_ASSERT(n > 1);
	CU_ASSERT_EQUAL(ids[0], 1);
	char *back = NULL;
	size_t len = 0;
	CU_ASSERT_EQUAL_FATAL(tok_decode(t, ids + 1, n - 1, false, &back, &len), 0);
	CU_ASSERT_STRING_EQUAL(back, " hello world, caf\xc3\xa9!");	/* SPM dummy-prefix space */
	free(ids);
	free(back);
	tok_destroy(&t);
	CU_ASSERT_EQUAL(synth_tok_new(100, &t, err, sizeof(err)), -EINVAL);
}

/* Runs prompt (prefill) then 6 greedy steps; logits of every step into out
 * [7][vocab]. */
static void run(const model_t *m, float *out)
{
	const model_config_t *c = model_config(m);
	model_kv_t *kv = NULL;
	model_scratch_t *s = NULL;
	CU_ASSERT_EQUAL_FATAL(model_kv_new(m, 32, MODEL_KV_F32, &kv), 0);
	CU_ASSERT_EQUAL_FATAL(model_scratch_new(m, 8, 2, &s), 0);
	int32_t toks[8] = { 1, 300, 301, 302, 303, 304, 305, 306 }, pos[8];
	model_kv_t *kvs[8];
	for (int i = 0; i < 8; i++) {
		pos[i] = i;
		kvs[i] = kv;
	}
	model_batch_t b = { .n = 5, .tokens = toks, .pos = pos, .kv = kvs, .logits = out };
	CU_ASSERT_EQUAL(model_forward(m, s, &b), 1);
	for (int g = 0; g < 6; g++) {
		float *l = out + (size_t)g * c->vocab_size;
		int32_t best = 0;
		for (int v = 1; v < c->vocab_size; v++)
			if (l[v] > l[best])
				best = v;
		int32_t p = 5 + g;
		model_batch_t d = { .n = 1, .tokens = &best, .pos = &p, .kv = kvs,
				    .logits = l + c->vocab_size };
		CU_ASSERT_EQUAL(model_forward(m, s, &d), 1);
	}
	model_kv_destroy(&kv);
	model_scratch_destroy(&s);
}

static void check_roundtrip(const char *preset)
{
	char path[512], err[256];
	snprintf(path, sizeof(path), "%s/%s.gguf", cu_tmpdir(), preset);
	model_t *mem = NULL, *f32 = NULL, *f16 = NULL;
	CU_ASSERT_EQUAL_FATAL(model_new_synth(preset, 0, &mem, err, sizeof(err)), 0);
	int V = model_config(mem)->vocab_size;
	float *a = malloc(7 * (size_t)V * sizeof(float)), *b = malloc(7 * (size_t)V * sizeof(float));
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	CU_ASSERT_PTR_NOT_NULL_FATAL(b);
	run(mem, a);

	CU_ASSERT_EQUAL_FATAL(synth_write_gguf(preset, 0, GGUF_TTYPE_F32, path, err, sizeof(err)), 0);
	int rc = model_load(path, &f32, err, sizeof(err));
	if (rc < 0)
		fprintf(stderr, "\n%s\n", err);
	CU_ASSERT_EQUAL_FATAL(rc, 0);
	const model_config_t *cm = model_config(mem), *cf = model_config(f32);
	CU_ASSERT_EQUAL(cf->arch, cm->arch);
	CU_ASSERT_EQUAL(cf->dim, cm->dim);
	CU_ASSERT_EQUAL(cf->n_kv_heads, cm->n_kv_heads);
	CU_ASSERT_EQUAL(cf->tied_output, cm->tied_output);
	CU_ASSERT_EQUAL(cf->qkv_bias, cm->qkv_bias);
	CU_ASSERT_EQUAL(cf->rope_neox, cm->rope_neox);
	CU_ASSERT(cf->rope_base == cm->rope_base);
	CU_ASSERT_EQUAL(cf->head_dim, cm->head_dim);
	CU_ASSERT_EQUAL(cf->qk_norm, cm->qk_norm);
	CU_ASSERT_EQUAL(cf->sliding_window, cm->sliding_window);
	CU_ASSERT_EQUAL(cf->rope_freqs, cm->rope_freqs);
	CU_ASSERT_EQUAL(cf->rope_scaling, cm->rope_scaling);
	/* a linear factor is in the file; Llama 3's is in rope_freqs' values */
	if (cm->rope_scaling == MODEL_ROPE_SCALING_LINEAR)
		CU_ASSERT(cf->rope_scaling_factor == cm->rope_scaling_factor);
	CU_ASSERT_EQUAL(model_n_params(f32), model_n_params(mem));
	CU_ASSERT_EQUAL(tok_n_vocab(model_tok(f32)), tok_n_vocab(model_tok(mem)));
	run(f32, b);
	CU_ASSERT(memcmp(a, b, 7 * (size_t)V * sizeof(float)) == 0);

	/* the file uses llama.cpp's names */
	gguf_t *g = NULL;
	CU_ASSERT_EQUAL_FATAL(gguf_open(path, &g, err, sizeof(err)), 0);
	gguf_str_t s;
	CU_ASSERT_EQUAL(gguf_get_str(g, "tokenizer.ggml.model", &s), 0);
	CU_ASSERT(s.len == 5 && memcmp(s.data, "llama", 5) == 0);
	CU_ASSERT_PTR_NOT_NULL(gguf_find_tensor(g, "blk.1.ffn_down.weight"));
	CU_ASSERT_EQUAL(gguf_find_tensor(g, "output.weight") == NULL, cm->tied_output);
	gguf_close(&g);

	CU_ASSERT_EQUAL_FATAL(synth_write_gguf(preset, 0, GGUF_TTYPE_F16, path, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(model_load(path, &f16, err, sizeof(err)), 0);
	run(f16, b);
	/* F16 weights: close, not equal (first step, before greedy paths part) */
	double maxd = 0, maxa = 0;
	for (int v = 0; v < V; v++) {
		maxd = fmax(maxd, fabs(a[v] - b[v]));
		maxa = fmax(maxa, fabs(a[v]));
	}
	CU_ASSERT(maxd > 0.0);
	CU_ASSERT(maxd < 0.01 * maxa + 1e-3);

	/* Q8_0 matrices: kept as Q8 panels (weights = q8_0-panels) they give the
	 * logits of widening them (weights = f32), bit for bit, from a quarter
	 * of the bytes; kept as blocks (weights = auto, llama.cpp's quantized
	 * arithmetic) close to them; both close to the f32 model's */
	model_t *q8 = NULL, *q8w = NULL, *q8a = NULL;
	float *c = malloc(7 * (size_t)V * sizeof(float));
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	CU_ASSERT_EQUAL_FATAL(synth_write_gguf(preset, 0, GGUF_TTYPE_Q8_0, path, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(gguf_open(path, &g, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(gguf_find_tensor(g, "blk.0.attn_q.weight")->type, GGUF_TTYPE_Q8_0);
	CU_ASSERT_EQUAL(gguf_find_tensor(g, "blk.0.attn_norm.weight")->type, GGUF_TTYPE_F32);
	gguf_close(&g);
	model_opts_t keep = { .weights = MODEL_WEIGHTS_Q8 }, wide = { .weights = MODEL_WEIGHTS_F32 },
		     deflt = { .weights = MODEL_WEIGHTS_AUTO };
	CU_ASSERT_EQUAL_FATAL(model_load_opts(path, &keep, &q8, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(model_load_opts(path, &wide, &q8w, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(model_load_opts(path, &deflt, &q8a, err, sizeof(err)), 0);
	run(q8, b);
	run(q8w, c);
	CU_ASSERT(memcmp(b, c, 7 * (size_t)V * sizeof(float)) == 0);
	CU_ASSERT(model_weight_bytes(q8) < model_weight_bytes(q8w) / 2);
	CU_ASSERT(model_weight_bytes(q8a) < model_weight_bytes(q8w) / 2);
	run(q8a, c);
	double maxqa = 0;
	for (int v = 0; v < V; v++)
		maxqa = fmax(maxqa, fabs(b[v] - c[v]));
	CU_ASSERT(maxqa > 0.0);
	if (maxqa >= 0.05 * maxa + 1e-3)
		fprintf(stderr, "\n[q8_0 activations: %g of %g]\n", maxqa, maxa);
	CU_ASSERT(maxqa < 0.05 * maxa + 1e-3);
	maxd = 0;
	for (int v = 0; v < V; v++)
		maxd = fmax(maxd, fabs(a[v] - b[v]));
	CU_ASSERT(maxd > 0.0);
	CU_ASSERT(maxd < 0.05 * maxa + 1e-3);
	free(a);
	free(b);
	free(c);
	model_destroy(&mem);
	model_destroy(&f32);
	model_destroy(&f16);
	model_destroy(&q8);
	model_destroy(&q8w);
	model_destroy(&q8a);
	unlink(path);
}

static void test_gguf_roundtrip_llama(void)
{
	check_roundtrip("tiny");
}

static void test_gguf_roundtrip_qwen2(void)
{
	check_roundtrip("tiny-qwen2");
}

/* The test models of the later features, through their own keys and
 * tensors: rope_freqs, rope.scaling.type linear, attention.sliding_window
 * (run() goes 11 positions, past the window of 8), qwen3's key_length
 * and q/k norms. */
static void test_gguf_roundtrip_features(void)
{
	check_roundtrip("llama3-tiny");
	check_roundtrip("llama-linear-tiny");
	check_roundtrip("mistral-tiny");
	check_roundtrip("qwen3-tiny");
	char path[512], err[256];
	snprintf(path, sizeof(path), "%s/keys.gguf", cu_tmpdir());
	gguf_t *g = NULL;
	uint32_t u;
	float f;
	gguf_str_t s;
	CU_ASSERT_EQUAL_FATAL(synth_write_gguf("qwen3-tiny", 0, GGUF_TTYPE_F32, path, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(gguf_open(path, &g, err, sizeof(err)), 0);
	CU_ASSERT(gguf_get_str(g, "general.architecture", &s) == 0 && s.len == 5 && memcmp(s.data, "qwen3", 5) == 0);
	CU_ASSERT(gguf_get_u32(g, "qwen3.attention.key_length", &u) == 0 && u == 32);
	CU_ASSERT(gguf_get_u32(g, "qwen3.attention.value_length", &u) == 0 && u == 32);
	const gguf_tensor_t *t = gguf_find_tensor(g, "blk.1.attn_k_norm.weight");
	CU_ASSERT(t != NULL && t->n_dims == 1 && t->ne[0] == 32);
	t = gguf_find_tensor(g, "blk.0.attn_output.weight");	/* [dim x q_dim]: ne = {128, 64} */
	CU_ASSERT(t != NULL && t->ne[0] == 128 && t->ne[1] == 64);
	CU_ASSERT_PTR_NULL(gguf_find_tensor(g, "blk.0.attn_q.bias"));
	gguf_close(&g);
	CU_ASSERT_EQUAL_FATAL(synth_write_gguf("llama-linear-tiny", 0, GGUF_TTYPE_F32, path, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(gguf_open(path, &g, err, sizeof(err)), 0);
	CU_ASSERT(gguf_get_str(g, "llama.rope.scaling.type", &s) == 0 && s.len == 6 && memcmp(s.data, "linear", 6) == 0);
	CU_ASSERT(gguf_get_f32(g, "llama.rope.scaling.factor", &f) == 0 && f == 4.0f);
	gguf_close(&g);
	CU_ASSERT_EQUAL_FATAL(synth_write_gguf("mistral-tiny", 0, GGUF_TTYPE_F32, path, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(gguf_open(path, &g, err, sizeof(err)), 0);
	CU_ASSERT(gguf_get_u32(g, "llama.attention.sliding_window", &u) == 0 && u == 8);
	gguf_close(&g);
	/* Llama 3: the tensor alone, as the converter writes it (a factor key
	 * would make llama.cpp scale the positions too) */
	CU_ASSERT_EQUAL_FATAL(synth_write_gguf("llama3-tiny", 0, GGUF_TTYPE_F32, path, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(gguf_open(path, &g, err, sizeof(err)), 0);
	t = gguf_find_tensor(g, "rope_freqs.weight");
	CU_ASSERT(t != NULL && t->type == GGUF_TTYPE_F32 && t->n_dims == 1 && t->ne[0] == 8);
	CU_ASSERT_EQUAL(gguf_get_str(g, "llama.rope.scaling.type", &s), -ENOENT);
	CU_ASSERT_EQUAL(gguf_get_f32(g, "llama.rope.scaling.factor", &f), -ENOENT);
	gguf_close(&g);
	unlink(path);
}

/* Error bound of each type relative to A = max |x| of the block or
 * super-block: quant.h's bounds with R, R' <= 2A, and the subnormal slack. */
static double bound_of_a(uint32_t type)
{
	switch (type) {
	case QUANT_Q8_0: return 1.0 / 254;
	case QUANT_Q4_0: return 1.0 / 8;
	case QUANT_Q5_0: return 1.0 / 16;
	case QUANT_IQ4_NL: return 14.0 / 127;
	case QUANT_Q4_1: return 2.0 / 30 * 1.001;
	case QUANT_Q5_1: return 2.0 / 62 * 1.001;
	case QUANT_Q2_K: return 2 * 0.1723;
	case QUANT_Q3_K: return 1.0 / 4 + 1.0 / 62;
	case QUANT_Q4_K: return 2.0 / 29.7;
	case QUANT_Q5_K: return 2.0 / 61.5;
	case QUANT_Q6_K: return 1.0 / 32 + 1.0 / 254;
	case QUANT_IQ4_XS: return 14.0 / 127 + 1.0 / 62;
	case GGUF_TTYPE_F16: return 1.0 / 2048;	/* half an ulp, relative */
	case GGUF_TTYPE_BF16: return 1.0 / 256;
	default: return 0.0;			/* F32: exact */
	}
}

/* A preset written in mix: general.file_type is the mix's llama_ftype,
 * every tensor has the type quant_mix_type gives it (norms F32), its bytes
 * are quant_quantize_row of the generated values (the streaming writer
 * adds nothing), and it dequantizes to the f32 weights within its type's
 * bound. Returns how many tensors had each type (counts[type]). */
static void check_mix(const char *preset, const char *mix_name, int counts[64])
{
	char path[512], err[256];
	snprintf(path, sizeof(path), "%s/%s-%s.gguf", cu_tmpdir(), preset, mix_name);
	CU_ASSERT_EQUAL_FATAL(synth_write_gguf_mix(preset, 0, mix_name, path, err, sizeof(err)), 0);
	const model_config_t *c = &synth_preset_find(preset)->cfg;
	quant_mix_t mix;
	CU_ASSERT_EQUAL_FATAL(quant_mix_parse(mix_name, &mix), 0);
	mix.n_gqa = c->n_heads / c->n_kv_heads;
	mix.tied_output = c->tied_output;
	gguf_t *g = NULL;
	CU_ASSERT_EQUAL_FATAL(gguf_open(path, &g, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(gguf_check_loadable(g, err, sizeof(err)), 0);
	uint32_t ft = 99, qv = 0;
	CU_ASSERT_EQUAL(gguf_get_u32(g, "general.file_type", &ft), 0);
	CU_ASSERT_EQUAL(ft, mix.ftype);
	CU_ASSERT_EQUAL(gguf_get_u32(g, "general.quantization_version", &qv) == 0, quant_supported(mix.base));
	int n = model_tensor_specs(c, NULL, 0);
	model_tensor_spec_t *specs = calloc((size_t)n, sizeof(*specs));
	CU_ASSERT_FATAL(specs != NULL);
	model_tensor_specs(c, specs, n);
	CU_ASSERT_EQUAL(gguf_n_tensors(g), (uint64_t)n);
	memset(counts, 0, 64 * sizeof(int));
	for (int i = 0; i < n; i++) {
		const gguf_tensor_t *t = gguf_find_tensor(g, specs[i].name);
		CU_ASSERT_PTR_NOT_NULL_FATAL(t);
		uint32_t want = specs[i].n_dims == 1 ? GGUF_TTYPE_F32
			: quant_mix_type(&mix, t->name, -1, c->n_layers, (int64_t)t->ne[0]);
		CU_ASSERT_EQUAL(t->type, want);
		counts[t->type & 63]++;
		uint64_t ne = t->n_elements, ne0 = t->ne[0];
		float *x = malloc(ne * sizeof(float)), *y = malloc(ne * sizeof(float));
		CU_ASSERT_FATAL(x != NULL && y != NULL);
		CU_ASSERT_EQUAL_FATAL(synth_tensor_rows(c, t->name, 0, ne / ne0, x), 0);
		CU_ASSERT_EQUAL_FATAL(gguf_tensor_to_f32(t, y), 0);
		if (quant_supported(t->type)) {
			void *q = malloc(t->nbytes);
			CU_ASSERT_FATAL(q != NULL);
			CU_ASSERT_EQUAL(quant_quantize_row(t->type, x, q, (int64_t)ne), 0);
			CU_ASSERT(memcmp(q, t->data, t->nbytes) == 0);
			free(q);
		}
		int qk = quant_supported(t->type) ? quant_block_values(t->type) : 1;
		double frac = bound_of_a(t->type);
		/* f16 subnormals; quant.h's slack for subnormal scales */
		double slack = t->type == GGUF_TTYPE_F16 ? 0x1p-25 : 4096 * 0x1p-24;
		int bad = 0;
		for (uint64_t b = 0; b < ne / (uint64_t)qk; b++) {
			double a = 0;
			for (int k = 0; k < qk; k++)
				a = fmax(a, fabs(x[b * qk + k]));
			for (int k = 0; k < qk; k++)
				bad += !(fabs((double)x[b * qk + k] - y[b * qk + k]) <= frac * a * (1 + 1.0 / 512) + slack);
		}
		if (bad > 0)
			fprintf(stderr, "\n%s %s: %s (%s): %d values past the bound\n", preset, mix_name, t->name,
				gguf_ttype_name(t->type), bad);
		CU_ASSERT_EQUAL(bad, 0);
		free(x);
		free(y);
	}
	free(specs);
	gguf_close(&g);
	unlink(path);
}

/* Every mix, on a preset with rows of 256 (tiny-k: the K types themselves,
 * GQA 4) and one with rows of 64 (tiny-qwen2: fallbacks, tied output,
 * biases). */
static void test_gguf_mixes(void)
{
	int counts[64];
	for (size_t i = 0; quant_mix_name(i) != NULL; i++) {
		check_mix("tiny-k", quant_mix_name(i), counts);
		check_mix("tiny-qwen2", quant_mix_name(i), counts);
	}
	/* the later layouts: rope_freqs (1-D, F32), qwen3's q/k norms and
	 * attn_output of rows q_dim = 128 */
	static const char *const more[] = { "q4_k_m", "q8_0", "iq4_nl", "q2_k" };
	for (size_t i = 0; i < 4; i++) {
		check_mix("llama3-tiny", more[i], counts);
		CU_ASSERT_EQUAL(counts[GGUF_TTYPE_F32], 1 + 2 * 2 + 1);
		check_mix("qwen3-tiny", more[i], counts);
		CU_ASSERT_EQUAL(counts[GGUF_TTYPE_F32], 1 + 2 * 4);
	}
	/* what llama.cpp's Q4_K_M makes of tiny-k (8 layers): Q6_K for the
	 * output and attn_v / ffn_down of use_more_bits layers 0, 3, 6, 7 */
	check_mix("tiny-k", "q4_k_m", counts);
	CU_ASSERT_EQUAL(counts[QUANT_Q6_K], 1 + 4 + 4);
	CU_ASSERT_EQUAL(counts[QUANT_Q4_K], 1 + 8 * 7 - 8);
	CU_ASSERT_EQUAL(counts[GGUF_TTYPE_F32], 1 + 8 * 2);
	/* Q2_K with GQA 4: attn_v Q4_K, ffn_down and attn_output Q3_K */
	check_mix("tiny-k", "q2_k", counts);
	CU_ASSERT_EQUAL(counts[QUANT_Q4_K], 8);
	CU_ASSERT_EQUAL(counts[QUANT_Q3_K], 16);
	CU_ASSERT_EQUAL(counts[QUANT_Q2_K], 1 + 8 * 4);
	/* rows of 64: Q4_K falls back to Q5_0; the tied embedding is Q8_0 */
	check_mix("tiny-qwen2", "q4_k_m", counts);
	CU_ASSERT_EQUAL(counts[QUANT_Q4_K] + counts[QUANT_Q6_K], 0);
	CU_ASSERT_EQUAL(counts[QUANT_Q8_0], 1 + 2);	/* embedding; attn_v, ffn_down of layer 1 (Q6_K) */
	CU_ASSERT_EQUAL(counts[QUANT_Q5_0], 7 + 5);
	CU_ASSERT(counts[GGUF_TTYPE_F32] == 1 + 2 * 2 + 2 * 3);	/* norms and q/k/v biases */

	char err[256];
	CU_ASSERT_EQUAL(synth_write_gguf_mix("tiny", 0, "q4_k_xl", "/nonexistent/x.gguf", err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "q4_k_xl"));
	CU_ASSERT_EQUAL(synth_write_gguf("tiny", 0, QUANT_Q4_K, "/nonexistent/x.gguf", err, sizeof(err)), -EINVAL);
}

/* The type counts llama.cpp prints when it loads its own Llama-2-7B and
 * Llama-3-8B Q4_K_M files (f32 65, q4_K 193, q6_K 33), from the presets'
 * tensor lists, without writing 4 GB. */
static void test_mix_7b_counts(void)
{
	static const char *const presets[] = { "llama2-7b", "llama3-8b" };
	for (size_t p = 0; p < 2; p++) {
		const model_config_t *c = &synth_preset_find(presets[p])->cfg;
		quant_mix_t mix;
		CU_ASSERT_EQUAL_FATAL(quant_mix_parse("q4_k_m", &mix), 0);
		mix.n_gqa = c->n_heads / c->n_kv_heads;
		int n = model_tensor_specs(c, NULL, 0), counts[64] = { 0 };
		model_tensor_spec_t *specs = calloc((size_t)n, sizeof(*specs));
		CU_ASSERT_FATAL(specs != NULL);
		model_tensor_specs(c, specs, n);
		for (int i = 0; i < n; i++)
			counts[specs[i].n_dims == 1 ? 0 : quant_mix_type(&mix, specs[i].name, -1, c->n_layers,
									 (int64_t)specs[i].ne[0]) & 63]++;
		CU_ASSERT_EQUAL(counts[GGUF_TTYPE_F32], 65);
		CU_ASSERT_EQUAL(counts[QUANT_Q4_K], 193);
		CU_ASSERT_EQUAL(counts[QUANT_Q6_K], 33);
		free(specs);
	}
}

/* A quantized synthetic model loads and runs close to the f32 one, the
 * closer the more bits. 8 layers of random weights amplify the weights'
 * errors: the first logits move by about 4x the type's relative RMS error
 * (Q6_K 0.018 -> 0.075 of max |logit|, Q4_K_M 0.28); a wrong block layout
 * would move them by the whole range. */
static void test_gguf_mix_runs(void)
{
	static const struct {
		const char *mix;
		double tol;	/* max logit difference over max |logit| */
	} cases[] = { { "q8_0", 0.04 }, { "q6_k", 0.12 }, { "q5_1", 0.35 }, { "q4_k_m", 0.45 },
		      { "iq4_xs", 0.45 } };
	double prev = 0;
	char path[512], err[256];
	snprintf(path, sizeof(path), "%s/tiny-k-run.gguf", cu_tmpdir());
	model_t *mem = NULL;
	CU_ASSERT_EQUAL_FATAL(model_new_synth("tiny-k", 0, &mem, err, sizeof(err)), 0);
	int V = model_config(mem)->vocab_size;
	float *a = malloc(7 * (size_t)V * sizeof(float)), *b = malloc(7 * (size_t)V * sizeof(float));
	CU_ASSERT_FATAL(a != NULL && b != NULL);
	run(mem, a);
	double maxa = 0;
	for (int v = 0; v < V; v++)
		maxa = fmax(maxa, fabs(a[v]));
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		model_t *q = NULL;
		CU_ASSERT_EQUAL_FATAL(synth_write_gguf_mix("tiny-k", 0, cases[i].mix, path, err, sizeof(err)), 0);
		int rc = model_load(path, &q, err, sizeof(err));
		if (rc < 0)
			fprintf(stderr, "\n%s\n", err);
		CU_ASSERT_EQUAL_FATAL(rc, 0);
		run(q, b);
		double maxd = 0;
		for (int v = 0; v < V; v++)	/* the first step: the same prompt */
			maxd = fmax(maxd, fabs(a[v] - b[v]));
		if (!(maxd > 0 && maxd < cases[i].tol * maxa))
			fprintf(stderr, "\n%s: logits differ by %.4f of %.4f\n", cases[i].mix, maxd, maxa);
		CU_ASSERT(maxd > 0.0);
		CU_ASSERT(maxd < cases[i].tol * maxa);
		if (i <= 3)	/* fewer bits, larger differences */
			CU_ASSERT(maxd > prev);
		prev = maxd;
		model_destroy(&q);
	}
	free(a);
	free(b);
	model_destroy(&mem);
	unlink(path);
}

const cu_test_t synth_tests[] = {
	{ "presets", test_presets },
	{ "weights", test_weights },
	{ "vocab", test_vocab },
	{ "gguf_roundtrip_llama", test_gguf_roundtrip_llama },
	{ "gguf_roundtrip_qwen2", test_gguf_roundtrip_qwen2 },
	{ "rope_freqs", test_rope_freqs },
	{ "gguf_roundtrip_features", test_gguf_roundtrip_features },
	{ "gguf_mixes", test_gguf_mixes },
	{ "mix_7b_counts", test_mix_7b_counts },
	{ "gguf_mix_runs", test_gguf_mix_runs },
	{ NULL, NULL },
};
