/* synth: presets have the published shapes, weights are deterministic and
 * generated per tensor, and a synthetic model written to GGUF reads back
 * as the same model (bit for bit in F32, close in F16). */
#include "cu_main.h"
#include "gguf.h"
#include "model.h"
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
	CU_ASSERT_PTR_NULL(synth_preset_find("nope"));
	CU_ASSERT(synth_n_presets() >= 6);

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

	/* Q8_0 matrices: kept as Q8 panels (weights = q8_0) they give the
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

const cu_test_t synth_tests[] = {
	{ "presets", test_presets },
	{ "weights", test_weights },
	{ "vocab", test_vocab },
	{ "gguf_roundtrip_llama", test_gguf_roundtrip_llama },
	{ "gguf_roundtrip_qwen2", test_gguf_roundtrip_qwen2 },
	{ NULL, NULL },
};
