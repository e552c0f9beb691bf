/* Engine: the step-time split is exact; on stories260K every request gives
 * the reference tokens alone and inside a busy batch (batch invariance);
 * busy time is conserved; context limits, stop strings, EOS, cancel and
 * slot reuse behave as a caller sees them. */
#include "cu_main.h"
#include "engine.h"
#include "engine_run.h"
#include "sampler.h"
#include "mg_int128.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

typedef mg_u128 u128;

/* --- engine_split ------------------------------------------------------- */

/* Independent oracle: floors, then +1 to the d largest remainders by a
 * selection sort (ties to the lower index). Quadratic, fine for tests. */
static void split_oracle(uint64_t total, const uint64_t *w, size_t n, uint64_t *out)
{
	u128 W = 0;
	for (size_t i = 0; i < n; i++)
		W += w[i];
	int even = W == 0;
	if (even)
		W = n;
	u128 *rem = calloc(n, sizeof(*rem));
	char *got = calloc(n, 1);
	u128 given = 0;
	for (size_t i = 0; i < n; i++) {
		u128 x = (u128)total * (even ? 1 : w[i]);
		out[i] = (uint64_t)(x / W);
		rem[i] = x % W;
		given += out[i];
	}
	for (u128 d = (u128)total - given; d > 0; d--) {
		size_t best = n;
		for (size_t i = 0; i < n; i++)
			if (!got[i] && (best == n || rem[i] > rem[best]))
				best = i;
		got[best] = 1;
		out[best]++;
	}
	free(rem);
	free(got);
}

static void check_split(uint64_t total, const uint64_t *w, size_t n)
{
	uint64_t *a = calloc(n, sizeof(*a)), *b = calloc(n, sizeof(*b));
	engine_split(total, w, n, a);
	split_oracle(total, w, n, b);
	u128 sum = 0, W = 0;
	for (size_t i = 0; i < n; i++) {
		sum += a[i];
		W += w[i];
	}
	CU_ASSERT(sum == (u128)total);
	int same = memcmp(a, b, n * sizeof(*a)) == 0;
	CU_ASSERT(same);
	/* proportional: each part is the exact share rounded down or up */
	for (size_t i = 0; i < n && W > 0; i++) {
		u128 lo = (u128)total * w[i] / W;
		CU_ASSERT(a[i] == lo || a[i] == lo + 1);
	}
	free(a);
	free(b);
}

static void test_split_basic(void)
{
	uint64_t p[4];
	/* ties go to the lower index */
	engine_split(10, (uint64_t[]){ 1, 1, 1 }, 3, p);
	CU_ASSERT(p[0] == 4 && p[1] == 3 && p[2] == 3);
	engine_split(11, (uint64_t[]){ 5, 5, 5, 5 }, 4, p);
	CU_ASSERT(p[0] == 3 && p[1] == 3 && p[2] == 3 && p[3] == 2);
	/* the largest remainder wins over the lower index: 100 * 3/7 = 42.86,
	 * 100 * 4/7 = 57.14 */
	engine_split(100, (uint64_t[]){ 3, 4 }, 2, p);
	CU_ASSERT(p[0] == 43 && p[1] == 57);
	/* all zero: even */
	engine_split(7, (uint64_t[]){ 0, 0, 0 }, 3, p);
	CU_ASSERT(p[0] == 3 && p[1] == 2 && p[2] == 2);
	/* a zero weight gets nothing while others have weight */
	engine_split(1000001, (uint64_t[]){ 0, 1, 0, 1 }, 4, p);
	CU_ASSERT(p[0] == 0 && p[1] == 500001 && p[2] == 0 && p[3] == 500000);
	engine_split(0, (uint64_t[]){ 3, 9 }, 2, p);
	CU_ASSERT(p[0] == 0 && p[1] == 0);
	engine_split(12345, (uint64_t[]){ 7 }, 1, p);
	CU_ASSERT_EQUAL(p[0], 12345);
	engine_split(5, NULL, 0, NULL);	/* nothing to do, no crash */
}

static void test_split_huge(void)
{
	const uint64_t M = UINT64_MAX;
	check_split(M, (uint64_t[]){ M, M, 1 }, 3);
	check_split(M, (uint64_t[]){ M, M, M, M, M }, 5);
	check_split(M - 1, (uint64_t[]){ 1, M / 3, M / 7, 0, M }, 5);
	check_split(3, (uint64_t[]){ M, M, M, M, M, M, M }, 7);
	uint64_t p[3];
	engine_split(M, (uint64_t[]){ M, M, M }, 3, p);
	CU_ASSERT(p[0] == M / 3 && p[1] == M / 3 && p[2] == M / 3);
}

static void test_split_random(void)
{
	sampler_rng_t r;
	sampler_rng_seed(&r, 2024);
	uint64_t w[200];
	for (int iter = 0; iter < 3000; iter++) {
		size_t n = 1 + sampler_rng_next(&r) % 200;
		int shift = (int)(sampler_rng_next(&r) % 64);
		for (size_t i = 0; i < n; i++) {
			uint64_t x = sampler_rng_next(&r) >> shift;
			/* many exact ties and zeros */
			w[i] = (iter % 3 == 0) ? x % 4 : x;
		}
		uint64_t total = sampler_rng_next(&r) >> (sampler_rng_next(&r) % 64);
		check_split(total, w, n);
	}
	/* a large n: the in-place selection must stay exact */
	size_t n = 20000;
	uint64_t *big = malloc(n * sizeof(*big));
	for (size_t i = 0; i < n; i++)
		big[i] = 1 + sampler_rng_next(&r) % 1000;
	check_split(987654321987ULL, big, n);
	free(big);
}

/* --- the model runs ------------------------------------------------------- */

typedef struct ref_case {
	const char *prompt;
	int32_t prompt_ids[64];
	size_t n_prompt;
	int32_t out[48];
	size_t n_out;
	const char *text;
} ref_case_t;

static json_t *g_ref;
static ref_case_t g_cases[16];
static size_t g_n_cases;

static int load_ref(void)
{
	if (g_ref != NULL)
		return 0;
	json_error_t je;
	g_ref = json_load_file(cu_shared_path("testdata/stories260K_greedy.json"), 0, &je);
	if (g_ref == NULL)
		return -1;
	json_t *cases = json_object_get(g_ref, "cases");
	size_t i;
	json_t *c;
	json_array_foreach(cases, i, c) {
		if (g_n_cases == 16)
			break;
		ref_case_t *rc = &g_cases[g_n_cases++];
		rc->prompt = json_string_value(json_object_get(c, "prompt"));
		rc->text = json_string_value(json_object_get(c, "output_text"));
		size_t j;
		json_t *v;
		json_array_foreach(json_object_get(c, "prompt_tokens"), j, v)
			if (j < 64)
				rc->prompt_ids[rc->n_prompt++] = (int32_t)json_integer_value(v);
		json_array_foreach(json_object_get(c, "output_tokens"), j, v)
			if (j < 48)
				rc->out[rc->n_out++] = (int32_t)json_integer_value(v);
	}
	return 0;
}

static model_t *load_model(void)
{
	model_t *m = NULL;
	char err[256] = "";
	int rc = model_load(cu_shared_path("models/stories260K.gguf"), &m, err, sizeof(err));
	if (rc < 0)
		fprintf(stderr, "model_load: %s\n", err);
	CU_ASSERT_EQUAL_FATAL(rc, 0);
	CU_ASSERT_EQUAL_FATAL(load_ref(), 0);
	CU_ASSERT_FATAL(g_n_cases >= 8);
	return m;
}

/* The KV cache type of the engines the tests make (NULL: the default). */
static const char *g_kv;

static engine_t *mk_engine_step(const model_t *m, int slots, int n_ctx, int chunk, int step_tokens)
{
	engine_opts_t o = { .slots = slots, .n_ctx = n_ctx, .prefill_chunk = chunk,
			    .max_step_tokens = step_tokens, .threads = 2, .kv_type = g_kv };
	engine_t *e = NULL;
	char err[256] = "";
	int rc = engine_new(m, &o, &e, err, sizeof(err));
	if (rc < 0)
		fprintf(stderr, "engine_new: %s\n", err);
	CU_ASSERT_EQUAL_FATAL(rc, 0);
	return e;
}

static engine_t *mk_engine(const model_t *m, int slots, int n_ctx, int chunk)
{
	return mk_engine_step(m, slots, n_ctx, chunk, 0);
}

static engine_out_t *run_one(const model_t *m, const engine_req_t *r)
{
	engine_t *e = mk_engine(m, 1, 512, 128);
	engine_req_t q = *r;
	q.id = 0;
	CU_ASSERT_EQUAL_FATAL(engine_submit(e, &q), 0);
	engine_out_t *out = NULL;
	run_all(e, &out, 1);
	engine_destroy(&e);
	CU_ASSERT_PTR_NULL(e);
	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	return out;
}

/* Each reference prompt alone: the file's 48 greedy tokens, its prompt ids
 * and its text (with the default f16 KV cache, and with f32: both hold
 * the reference's tokens). */
static void reference_alone(void)
{
	model_t *m = load_model();
	for (size_t c = 0; c < g_n_cases; c++) {
		engine_req_t r = { .prompt = g_cases[c].prompt, .max_tokens = 48, .ignore_eos = true };
		engine_out_t *o = run_one(m, &r);
		CU_ASSERT_EQUAL(o->error, 0);
		CU_ASSERT_STRING_EQUAL(o->finish_reason, "length");
		CU_ASSERT_EQUAL_FATAL(o->n_prompt_ids, g_cases[c].n_prompt);
		CU_ASSERT(memcmp(o->prompt_ids, g_cases[c].prompt_ids, o->n_prompt_ids * 4) == 0);
		CU_ASSERT_EQUAL_FATAL(o->n_ids, 48);
		int same = memcmp(o->ids, g_cases[c].out, 48 * sizeof(int32_t)) == 0;
		if (!same)
			fprintf(stderr, "case %s: tokens differ from the reference\n", g_cases[c].prompt);
		CU_ASSERT(same);
		CU_ASSERT_STRING_EQUAL(o->text, g_cases[c].text);
		CU_ASSERT_EQUAL(o->text_len, strlen(g_cases[c].text));
		CU_ASSERT(o->busy_ns > 0 && o->flops > 0);
		CU_ASSERT_EQUAL(o->steps, 48);	/* one prefill step, 47 decodes */
		engine_out_free(&o);
		CU_ASSERT_PTR_NULL(o);
	}
	model_destroy(&m);
}

static void test_reference_alone(void)
{
	g_kv = NULL;
	reference_alone();
	g_kv = "f32";
	reference_alone();
	g_kv = NULL;
}

#define NB 40

/* Forty requests through 32 slots: reference prompts, prompts extended by a
 * part of their own reference continuation (so the expected tokens are the
 * rest of it), truncated prompts, and sampled requests, with max_tokens
 * from 1 to 48 so sequences end at different steps and slots are reused,
 * and small prefill chunks so prompts are split across steps that also
 * decode others. Each must equal the same request run alone; where the
 * reference file says what the tokens are, they must equal those too. */
static void batch_invariance(bool check_reference)
{
	model_t *m = load_model();
	engine_req_t reqs[NB];
	int32_t pbuf[NB][128];
	const int32_t *expect[NB];
	size_t n_expect[NB];
	memset(reqs, 0, sizeof(reqs));
	for (int i = 0; i < NB; i++) {
		const ref_case_t *c = &g_cases[(size_t)i % g_n_cases];
		engine_req_t *r = &reqs[i];
		r->id = (uint64_t)i;
		r->ignore_eos = true;
		expect[i] = NULL;
		int kind = (i / (int)g_n_cases) % 5;
		uint32_t j = (uint32_t)(i * 7) % 40;	/* reference tokens moved into the prompt */
		switch (kind) {
		case 0:	/* the reference prompt, as text */
			r->prompt = c->prompt;
			r->max_tokens = 48 - (uint32_t)(i % 5) * 9;
			expect[i] = c->out;
			n_expect[i] = r->max_tokens;
			break;
		case 1:	/* prompt + first j reference tokens, as ids */
		case 3:
			memcpy(pbuf[i], c->prompt_ids, c->n_prompt * 4);
			memcpy(pbuf[i] + c->n_prompt, c->out, j * 4);
			r->prompt_ids = pbuf[i];
			r->n_prompt_ids = c->n_prompt + j;
			r->max_tokens = 1 + (uint32_t)(i * 5) % (48 - j);
			expect[i] = c->out + j;
			n_expect[i] = r->max_tokens;
			break;
		case 2:	/* a truncated prompt: no reference, only invariance */
			memcpy(pbuf[i], c->prompt_ids, c->n_prompt * 4);
			r->prompt_ids = pbuf[i];
			r->n_prompt_ids = c->n_prompt > 2 ? c->n_prompt - 1 : c->n_prompt;
			r->max_tokens = 20 + (uint32_t)i % 29;
			break;
		default:	/* sampled */
			r->prompt = c->prompt;
			r->temperature = 0.8f;
			r->top_p = (i % 2) ? 0.95f : 0;
			r->top_k = (i % 3) ? 0 : 40;
			r->seed = 1000 + (uint64_t)i;
			r->max_tokens = 10 + (uint32_t)i % 39;
			break;
		}
	}

	engine_out_t *alone[NB] = { 0 }, *batch[NB] = { 0 };
	for (int i = 0; i < NB; i++)
		alone[i] = run_one(m, &reqs[i]);

	/* 200 tokens a step: the first step holds a chunk of all 32 prompts */
	engine_t *e = mk_engine_step(m, 32, 512, 5, 200);
	for (int i = 0; i < NB; i++)
		CU_ASSERT_EQUAL_FATAL(engine_submit(e, &reqs[i]), 0);
	CU_ASSERT_EQUAL(engine_pending(e), NB);
	run_all(e, batch, NB);
	engine_stats_t st;
	engine_get_stats(e, &st);
	CU_ASSERT_EQUAL(st.max_batch, 32);	/* the batch really was full */

	uint64_t busy = 0, flops = 0;
	for (int i = 0; i < NB; i++) {
		CU_ASSERT_PTR_NOT_NULL_FATAL(batch[i]);
		engine_out_t *a = alone[i], *b = batch[i];
		CU_ASSERT_EQUAL(b->error, 0);
		CU_ASSERT_STRING_EQUAL(b->finish_reason, "length");
		CU_ASSERT_EQUAL_FATAL(b->n_ids, reqs[i].max_tokens);
		CU_ASSERT_EQUAL_FATAL(a->n_ids, b->n_ids);
		int same = memcmp(a->ids, b->ids, a->n_ids * 4) == 0;
		if (!same)
			fprintf(stderr, "request %d: batched tokens differ from the same request alone\n", i);
		CU_ASSERT(same);
		CU_ASSERT_STRING_EQUAL(a->text, b->text);
		if (expect[i] != NULL && check_reference) {
			int ref = memcmp(b->ids, expect[i], n_expect[i] * 4) == 0;
			if (!ref)
				fprintf(stderr, "request %d: tokens differ from the reference file\n", i);
			CU_ASSERT(ref);
		}
		/* alone: one prefill step, then one step per further token */
		CU_ASSERT_EQUAL(a->steps, a->n_ids);
		/* (chunks of at most 5, or 6 where a 1-token remainder is
		 * folded in: prompts are never cut to a 1-token chunk) */
		CU_ASSERT(b->steps >= (b->n_prompt_ids + 5) / 6 + b->n_ids - 1);
		busy += b->busy_ns;
		flops += b->flops;
		CU_ASSERT_EQUAL(a->flops, b->flops);	/* FLOPs do not depend on the batch */
	}
	/* conservation: the parts of every step sum to the step */
	CU_ASSERT_EQUAL(busy, st.wall_ns);
	CU_ASSERT_EQUAL(flops, st.flops);
	CU_ASSERT(st.forward_ns > 0 && st.forward_ns <= st.wall_ns);
	for (int i = 0; i < NB; i++) {
		engine_out_free(&alone[i]);
		engine_out_free(&batch[i]);
	}
	engine_destroy(&e);
	model_destroy(&m);
}

static void test_batch_invariance(void)
{
	g_kv = NULL;
	batch_invariance(true);
}

/* A q8_0 cache rounds K and V to 8 bits, so its tokens may leave the
 * reference's (on stories260K 2 of the 8 continuations do, after 32 and 34
 * tokens); a request still gets the same tokens alone and in any batch. */
static void test_batch_invariance_q8(void)
{
	g_kv = "q8_0";
	batch_invariance(false);
	g_kv = NULL;
}

/* Sampled requests: a seed gives the same text alone and in a batch; other
 * seeds give other texts. */
static void test_sampled_seeds(void)
{
	model_t *m = load_model();
	enum { N = 12 };
	engine_req_t reqs[N];
	for (int i = 0; i < N; i++)
		reqs[i] = (engine_req_t){ .id = (uint64_t)i, .prompt = g_cases[0].prompt, .max_tokens = 40,
					  .temperature = 0.8f, .seed = (uint64_t)(i / 2) * 7919, .ignore_eos = true };
	engine_t *e = mk_engine(m, 8, 256, 128);
	for (int i = 0; i < N; i++)
		CU_ASSERT_EQUAL_FATAL(engine_submit(e, &reqs[i]), 0);
	engine_out_t *b[N] = { 0 };
	run_all(e, b, N);
	int distinct = 0;
	for (int i = 0; i < N; i++) {
		CU_ASSERT_PTR_NOT_NULL_FATAL(b[i]);
		engine_out_t *a = run_one(m, &reqs[i]);
		CU_ASSERT_STRING_EQUAL(a->text, b[i]->text);
		CU_ASSERT_EQUAL(a->n_ids, b[i]->n_ids);
		engine_out_free(&a);
		if (i % 2 == 1)	/* same prompt and seed, neighbours in the batch */
			CU_ASSERT_STRING_EQUAL(b[i]->text, b[i - 1]->text);
		if (i >= 2 && i % 2 == 0)
			distinct += strcmp(b[i]->text, b[0]->text) != 0;
	}
	CU_ASSERT(distinct >= 4);	/* seeds matter */
	for (int i = 0; i < N; i++)
		engine_out_free(&b[i]);
	engine_destroy(&e);
	model_destroy(&m);
}

/* The cache's size follows its type (stories260K: 5 layers, 4 kv heads of
 * 8: 2 x 5 x 32 values a position; q8_0 with one scale per 8-value row),
 * and an unknown type is refused with a message naming it. */
static void test_kv_types(void)
{
	model_t *m = load_model();
	CU_ASSERT_EQUAL(model_kv_bytes(m, 16, MODEL_KV_F32), 2 * 5 * 16 * 32 * sizeof(float));
	CU_ASSERT_EQUAL(model_kv_bytes(m, 16, MODEL_KV_F16), 2 * 5 * 16 * 32 * sizeof(uint16_t));
	CU_ASSERT_EQUAL(model_kv_bytes(m, 16, MODEL_KV_Q8), 2 * 5 * 16 * 4 * (8 + 2));
	const char *names[] = { "f32", "f16", "q8_0" };
	for (int t = 0; t < 3; t++) {
		engine_opts_t o = { .slots = 2, .n_ctx = 16, .threads = 1, .kv_type = names[t] };
		engine_t *e = NULL;
		char err[256] = "";
		CU_ASSERT_EQUAL_FATAL(engine_new(m, &o, &e, err, sizeof(err)), 0);
		CU_ASSERT_STRING_EQUAL(engine_opts(e)->kv_type, names[t]);
		CU_ASSERT_EQUAL(engine_kv_bytes(e), 2 * model_kv_bytes(m, 16, (model_kv_type_t)t));
		engine_destroy(&e);
	}
	engine_opts_t bad = { .slots = 2, .n_ctx = 16, .threads = 1, .kv_type = "q4" };
	engine_t *e = NULL;
	char err[256] = "";
	CU_ASSERT_EQUAL(engine_new(m, &bad, &e, err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NULL(e);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "\"q4\""));
	model_destroy(&m);
}

static void test_context_limits(void)
{
	model_t *m = load_model();
	engine_t *e = mk_engine(m, 2, 16, 4);
	CU_ASSERT_STRING_EQUAL(engine_opts(e)->kv_type, MODEL_KV_DEFAULT);
	CU_ASSERT_EQUAL(engine_kv_bytes(e), 2 * model_kv_bytes(m, 16, MODEL_KV_F16));
	int32_t ids[20];
	for (int i = 0; i < 20; i++)
		ids[i] = g_cases[3].prompt_ids[i % (int)g_cases[3].n_prompt];
	/* 16 tokens: no room for one generated token */
	CU_ASSERT_EQUAL(engine_submit(e, &(engine_req_t){ .id = 0, .prompt_ids = ids, .n_prompt_ids = 16 }), 0);
	/* 15 tokens and max_tokens 10: clamped to 1 */
	CU_ASSERT_EQUAL(engine_submit(e, &(engine_req_t){ .id = 1, .prompt_ids = ids, .n_prompt_ids = 15,
							  .max_tokens = 10, .ignore_eos = true }), 0);
	/* 6 tokens, max_tokens 0: until the context is full */
	CU_ASSERT_EQUAL(engine_submit(e, &(engine_req_t){ .id = 2, .prompt_ids = ids, .n_prompt_ids = 6,
							  .ignore_eos = true }), 0);
	/* a bad token id */
	int32_t bad[2] = { 1, 100000 };
	CU_ASSERT_EQUAL(engine_submit(e, &(engine_req_t){ .id = 3, .prompt_ids = bad, .n_prompt_ids = 2 }), 0);
	/* chat messages: stories260K has no chat template, so the plain
	 * fallback, "user: Hi\nassistant:" (BOS + 15 tokens): too long for 16 */
	engine_msg_t chat[1] = { { "user", "Hi" } };
	CU_ASSERT_EQUAL(engine_submit(e, &(engine_req_t){ .id = 4, .messages = chat, .n_messages = 1 }), 0);
	engine_out_t *o[5] = { 0 };
	run_all(e, o, 5);
	CU_ASSERT_PTR_NOT_NULL_FATAL(o[4]);
	CU_ASSERT_EQUAL(o[4]->error, -E2BIG);
	CU_ASSERT_STRING_EQUAL(o[4]->error_code, "context_length_exceeded");
	CU_ASSERT_PTR_NOT_NULL(strstr(o[4]->error_msg, "16 tokens"));
	engine_out_free(&o[4]);
	CU_ASSERT_PTR_NOT_NULL_FATAL(o[0]);
	CU_ASSERT_EQUAL(o[0]->error, -E2BIG);
	CU_ASSERT_STRING_EQUAL(o[0]->error_code, "context_length_exceeded");
	CU_ASSERT_PTR_NULL(o[0]->finish_reason);
	CU_ASSERT_PTR_NOT_NULL(strstr(o[0]->error_msg, "16 tokens"));
	CU_ASSERT_PTR_NOT_NULL(strstr(o[0]->error_msg, "holds 16"));
	CU_ASSERT_EQUAL(o[0]->n_ids, 0);
	CU_ASSERT_STRING_EQUAL(o[0]->text, "");
	CU_ASSERT_EQUAL(o[0]->busy_ns, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(o[1]);
	CU_ASSERT_EQUAL(o[1]->error, 0);
	CU_ASSERT_STRING_EQUAL(o[1]->finish_reason, "length");
	CU_ASSERT_EQUAL(o[1]->n_ids, 1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(o[2]);
	CU_ASSERT_STRING_EQUAL(o[2]->finish_reason, "length");
	CU_ASSERT_EQUAL(o[2]->n_ids, 10);
	CU_ASSERT_PTR_NOT_NULL_FATAL(o[3]);
	CU_ASSERT_EQUAL(o[3]->error, -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(o[3]->error_msg, "100000"));
	for (int i = 0; i < 4; i++)
		engine_out_free(&o[i]);
	engine_destroy(&e);
	model_destroy(&m);
}

/* Stop strings from the reference text: the text ends right before them,
 * even when they span tokens. */
static void test_stop_strings(void)
{
	model_t *m = load_model();
	const ref_case_t *c = &g_cases[0];
	static const char *const stops[][2] = { { "Lily", NULL }, { "girl named", "She" }, { "e pa", "zzz" } };
	for (size_t k = 0; k < 3; k++) {
		const char *first = strstr(c->text, stops[k][0]);
		CU_ASSERT_PTR_NOT_NULL_FATAL(first);
		size_t n_stop = stops[k][1] ? 2 : 1;
		engine_req_t r = { .prompt = c->prompt, .max_tokens = 48, .stop = stops[k], .n_stop = n_stop, .ignore_eos = true };
		engine_out_t *o = run_one(m, &r);
		CU_ASSERT_STRING_EQUAL(o->finish_reason, "stop");
		CU_ASSERT_EQUAL(o->text_len, (size_t)(first - c->text));
		CU_ASSERT(strncmp(o->text, c->text, o->text_len) == 0);
		CU_ASSERT(o->n_ids < 48);
		/* the tokens are the reference's, up to the one completing the stop */
		CU_ASSERT(memcmp(o->ids, c->out, o->n_ids * 4) == 0);
		engine_out_free(&o);
	}
	model_destroy(&m);
}

/* Without ignore_eos a request ends at its first end-of-generation token,
 * which is the same token ignore_eos runs past. */
static void test_eos(void)
{
	model_t *m = load_model();
	engine_req_t r = { .prompt = "Once upon a time", .max_tokens = 0 };
	engine_out_t *o = run_one(m, &r);
	r.ignore_eos = true;
	engine_out_t *all = run_one(m, &r);
	CU_ASSERT_EQUAL(all->n_ids, 512 - all->n_prompt_ids);
	const tok_t *t = model_tok(m);
	size_t first_eog = all->n_ids;
	for (size_t i = 0; i < all->n_ids; i++)
		if (tok_is_eog(t, all->ids[i])) {
			first_eog = i;
			break;
		}
	if (first_eog < all->n_ids) {
		CU_ASSERT_STRING_EQUAL(o->finish_reason, "stop");
		CU_ASSERT_EQUAL(o->n_ids, first_eog + 1);
	} else {
		CU_ASSERT_STRING_EQUAL(o->finish_reason, "length");
		CU_ASSERT_EQUAL(o->n_ids, all->n_ids);
	}
	CU_ASSERT(memcmp(o->ids, all->ids, o->n_ids * 4) == 0);
	engine_out_free(&o);
	engine_out_free(&all);
	model_destroy(&m);
}

/* A queued request takes a slot the step after it frees; a cancelled one
 * comes back with -ECANCELED and its busy time so far. */
static void test_slots_and_cancel(void)
{
	model_t *m = load_model();
	engine_t *e = mk_engine(m, 2, 128, 128);
	const char *p = g_cases[0].prompt;
	CU_ASSERT_EQUAL(engine_submit(e, &(engine_req_t){ .id = 0, .prompt = p, .max_tokens = 1 }), 0);
	CU_ASSERT_EQUAL(engine_submit(e, &(engine_req_t){ .id = 1, .prompt = p, .max_tokens = 30, .ignore_eos = true }), 0);
	CU_ASSERT_EQUAL(engine_submit(e, &(engine_req_t){ .id = 2, .prompt = p, .max_tokens = 30, .ignore_eos = true }), 0);
	CU_ASSERT_EQUAL(engine_submit(e, &(engine_req_t){ .id = 3, .prompt = p, .max_tokens = 30, .ignore_eos = true }), 0);
	CU_ASSERT_EQUAL(engine_pending(e), 4);
	CU_ASSERT_EQUAL(engine_step(e), 2);	/* 0 and 1 prefill; 0 is done */
	engine_out_t *o = engine_take(e);
	CU_ASSERT_PTR_NOT_NULL_FATAL(o);
	CU_ASSERT_EQUAL(o->id, 0);
	CU_ASSERT_EQUAL(o->n_ids, 1);
	CU_ASSERT_PTR_NULL(engine_take(e));
	engine_out_free(&o);
	CU_ASSERT_EQUAL(engine_pending(e), 3);
	CU_ASSERT_EQUAL(engine_step(e), 2);	/* 1 decodes, 2 took slot 0 */
	CU_ASSERT_EQUAL(engine_cancel(e, 3), 1);	/* still queued */
	CU_ASSERT_EQUAL(engine_step(e), 2);
	CU_ASSERT_EQUAL(engine_cancel(e, 1), 1);	/* running */
	CU_ASSERT_EQUAL(engine_cancel(e, 99), 0);
	CU_ASSERT_EQUAL(engine_pending(e), 1);
	engine_out_t *got[4] = { 0 };
	run_all(e, got, 4);
	CU_ASSERT_PTR_NOT_NULL_FATAL(got[1]);
	CU_ASSERT_PTR_NOT_NULL_FATAL(got[2]);
	CU_ASSERT_PTR_NOT_NULL_FATAL(got[3]);
	CU_ASSERT_EQUAL(got[3]->error, -ECANCELED);
	CU_ASSERT_EQUAL(got[3]->busy_ns, 0);
	CU_ASSERT_EQUAL(got[1]->error, -ECANCELED);
	CU_ASSERT_STRING_EQUAL(got[1]->error_code, "cancelled");
	CU_ASSERT_EQUAL(got[1]->n_ids, 3);
	CU_ASSERT(got[1]->busy_ns > 0);
	CU_ASSERT_EQUAL(got[2]->error, 0);
	CU_ASSERT_EQUAL(got[2]->n_ids, 30);
	engine_stats_t st;
	engine_get_stats(e, &st);
	CU_ASSERT_EQUAL(st.max_batch, 2);
	CU_ASSERT_EQUAL(st.steps, 3 + 28);
	engine_stats_reset(e);
	engine_get_stats(e, &st);
	CU_ASSERT_EQUAL(st.steps, 0);
	for (int i = 0; i < 4; i++)
		engine_out_free(&got[i]);
	CU_ASSERT_EQUAL(engine_step(e), 0);	/* idle */
	engine_destroy(&e);
	engine_destroy(&e);	/* NULL-safe */
	model_destroy(&m);
}

/* Prefill budget goes to the oldest admission first, whatever its slot:
 * B (slot 1, admitted first) keeps its full chunk when C lands in slot 0. */
static void test_prefill_order(void)
{
	model_t *m = load_model();
	engine_t *e = mk_engine(m, 2, 64, 4);	/* 6 tokens a step */
	int32_t ids[30];
	for (int i = 0; i < 30; i++)
		ids[i] = g_cases[4].prompt_ids[i % (int)g_cases[4].n_prompt];
	CU_ASSERT_EQUAL(engine_submit(e, &(engine_req_t){ .id = 0, .prompt_ids = ids, .n_prompt_ids = 3, .max_tokens = 1 }), 0);
	CU_ASSERT_EQUAL(engine_submit(e, &(engine_req_t){ .id = 1, .prompt_ids = ids, .n_prompt_ids = 30, .max_tokens = 1 }), 0);
	CU_ASSERT_EQUAL(engine_submit(e, &(engine_req_t){ .id = 2, .prompt_ids = ids, .n_prompt_ids = 30, .max_tokens = 1 }), 0);
	/* step 1: A 3 tokens (done), B 3; then B 4 a step: 3 + 7 x 4 >= 30 at step 8 */
	int done_at[3] = { 0 };
	for (int step = 1; step <= 20 && engine_pending(e) > 0; step++) {
		CU_ASSERT_FATAL(engine_step(e) > 0);
		for (engine_out_t *o; (o = engine_take(e)) != NULL;) {
			CU_ASSERT_FATAL(o->id < 3);
			CU_ASSERT_EQUAL(o->error, 0);
			done_at[o->id] = step;
			engine_out_free(&o);
		}
	}
	CU_ASSERT_EQUAL(done_at[0], 1);
	CU_ASSERT_EQUAL(done_at[1], 8);
	/* C: 2 a step during steps 2..8, then 4 a step: 14 + 4 x 4 >= 30 */
	CU_ASSERT_EQUAL(done_at[2], 12);
	engine_destroy(&e);
	model_destroy(&m);
}

/* stories15M in the three llama.cpp-quantized files, served as a worker
 * serves it: the 8 reference prompts together through 3 slots with prompts
 * cut into chunks of 4 (so slots are reused, prompts span steps and share
 * them with other sequences' decode tokens), twice each with different
 * orders. Every request gets llama.cpp's 48 greedy tokens and text. */
static void test_stories15m_mixed(void)
{
	static const char *const types[] = { "q8_0", "q4_0", "q4_k_m" };
	for (size_t t = 0; t < 3; t++) {
		char rel[128];
		snprintf(rel, sizeof(rel), "testdata/stories15M_%s_greedy.json", types[t]);
		json_error_t je;
		json_t *root = json_load_file(cu_shared_path(rel), 0, &je);
		CU_ASSERT_PTR_NOT_NULL_FATAL(root);
		json_t *cases = json_object_get(root, "cases");
		size_t nc = json_array_size(cases);
		CU_ASSERT_EQUAL_FATAL(nc, 8);
		snprintf(rel, sizeof(rel), "models/stories15M-%s.gguf", types[t]);
		model_t *m = NULL;
		char err[256] = "";
		CU_ASSERT_EQUAL_FATAL(model_load(cu_shared_path(rel), &m, err, sizeof(err)), 0);
		engine_t *e = mk_engine(m, 3, 256, 4);
		engine_req_t reqs[16];
		engine_out_t *outs[16] = { 0 };
		for (size_t i = 0; i < 2 * nc; i++) {
			size_t c = i < nc ? i : 2 * nc - 1 - i;	/* then in reverse order */
			json_t *cs = json_array_get(cases, c);
			reqs[i] = (engine_req_t){ .id = i, .max_tokens = 48, .ignore_eos = true,
						  .prompt = json_string_value(json_object_get(cs, "prompt")) };
			CU_ASSERT_EQUAL_FATAL(engine_submit(e, &reqs[i]), 0);
		}
		run_all(e, outs, 2 * nc);
		int same_all = 0;
		for (size_t i = 0; i < 2 * nc; i++) {
			size_t c = i < nc ? i : 2 * nc - 1 - i;
			json_t *cs = json_array_get(cases, c);
			engine_out_t *o = outs[i];
			CU_ASSERT_PTR_NOT_NULL_FATAL(o);
			CU_ASSERT_EQUAL(o->error, 0);
			json_t *want = json_object_get(cs, "output_tokens");
			int same = o->n_ids == 48 && json_array_size(want) == 48;
			for (size_t k = 0; same && k < 48; k++)
				same = o->ids[k] == (int32_t)json_integer_value(json_array_get(want, k));
			if (!same)
				fprintf(stderr, "\nstories15M %s, case %s (request %zu): tokens differ from llama.cpp's\n",
					types[t], json_string_value(json_object_get(cs, "id")), i);
			CU_ASSERT(same);
			CU_ASSERT_STRING_EQUAL(o->text, json_string_value(json_object_get(cs, "output_text")));
			same_all += same;
			engine_out_free(&outs[i]);
		}
		fprintf(stderr, "[stories15M %s mixed: %d of 16 requests equal llama.cpp's] ", types[t], same_all);
		engine_destroy(&e);
		model_destroy(&m);
		json_decref(root);
	}
}

const cu_test_t engine_tests[] = {
	{ "split basic", test_split_basic },
	{ "split huge values", test_split_huge },
	{ "split random vs oracle", test_split_random },
	{ "reference alone", test_reference_alone },
	{ "batch invariance", test_batch_invariance },
	{ "batch invariance q8_0", test_batch_invariance_q8 },
	{ "kv types", test_kv_types },
	{ "sampled seeds", test_sampled_seeds },
	{ "context limits", test_context_limits },
	{ "stop strings", test_stop_strings },
	{ "eos", test_eos },
	{ "slots and cancel", test_slots_and_cancel },
	{ "prefill order", test_prefill_order },
	{ "stories15M references, mixed batch", test_stories15m_mixed },
	{ NULL, NULL },
};
