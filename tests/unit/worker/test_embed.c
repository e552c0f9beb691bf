/* Embedding requests in the engine (engine.h): batch invariance, pooling,
 * dimensions and normalization, context limits, token-id inputs, errors
 * and accounting, on stories260K from ../shared (pooling_type absent: the
 * default, mean, unless the engine is told otherwise). The vectors are
 * checked against model_forward's hidden states pooled here. */
#include "cu_main.h"
#include "engine.h"
#include "engine_run.h"
#include "model.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static model_t *load260k(void)
{
	model_t *m = NULL;
	char err[256] = "";
	int rc = model_load(cu_shared_path("models/stories260K.gguf"), &m, err, sizeof(err));
	if (rc < 0)
		fprintf(stderr, "model_load: %s\n", err);
	CU_ASSERT_EQUAL_FATAL(rc, 0);
	return m;
}

static engine_t *mk(const model_t *m, int slots, int n_ctx, int chunk, const char *pooling)
{
	engine_opts_t o = { .slots = slots, .n_ctx = n_ctx, .prefill_chunk = chunk, .threads = 2,
			    .pooling = pooling };
	engine_t *e = NULL;
	char err[256] = "";
	int rc = engine_new(m, &o, &e, err, sizeof(err));
	if (rc < 0)
		fprintf(stderr, "engine_new: %s\n", err);
	CU_ASSERT_EQUAL_FATAL(rc, 0);
	return e;
}

/* Deterministic ids: BOS, then a spread over the vocabulary. */
static void make_ids(int32_t *ids, int n, int vocab, unsigned seed)
{
	uint32_t x = seed;
	ids[0] = 1;
	for (int i = 1; i < n; i++) {
		x = x * 1103515245u + 12345u;
		ids[i] = 3 + (int32_t)((x >> 8) % (uint32_t)(vocab - 3));
	}
}

/* The input lengths of the invariance tests: a lone BOS, 2 and 3 tokens
 * (the smallest chunks), odd lengths across chunk edges, one long. */
static const int g_lens[] = { 1, 2, 3, 7, 17, 40, 130 };
#define N_LENS (sizeof(g_lens) / sizeof(g_lens[0]))

static engine_out_t *embed_alone(const model_t *m, const int32_t *ids, int n, const char *pooling, uint32_t dims)
{
	engine_t *e = mk(m, 1, 256, 128, pooling);
	engine_req_t r = { .id = 0, .prompt_ids = ids, .n_prompt_ids = (size_t)n, .embed = true, .dimensions = dims };
	CU_ASSERT_EQUAL_FATAL(engine_submit(e, &r), 0);
	engine_out_t *o = NULL;
	run_all(e, &o, 1);
	engine_destroy(&e);
	CU_ASSERT_PTR_NOT_NULL_FATAL(o);
	return o;
}

static double l2(const float *v, uint32_t n)
{
	double s = 0.0;
	for (uint32_t i = 0; i < n; i++)
		s += (double)v[i] * v[i];
	return sqrt(s);
}

/* Every input's vector has the same bits alone and in a batch: with the
 * other embed inputs, with generating sequences decoding in the same
 * steps, over different slot counts and prefill chunks, for each pooling. */
static void test_batch_invariance(void)
{
	model_t *m = load260k();
	int vocab = model_config(m)->vocab_size;
	int32_t ids[N_LENS][130];
	for (size_t i = 0; i < N_LENS; i++)
		make_ids(ids[i], g_lens[i], vocab, 7 + (unsigned)i);
	static const char *const pools[] = { "mean", "cls", "last" };
	static const struct { int slots, chunk; } shapes[] = { { 3, 4 }, { 8, 16 }, { 2, 5 }, { 16, 128 } };
	for (size_t p = 0; p < 3; p++) {
		engine_out_t *alone[N_LENS];
		for (size_t i = 0; i < N_LENS; i++) {
			alone[i] = embed_alone(m, ids[i], g_lens[i], pools[p], 0);
			CU_ASSERT_EQUAL_FATAL(alone[i]->error, 0);
			CU_ASSERT_EQUAL_FATAL(alone[i]->n_embedding, (uint32_t)model_config(m)->dim);
		}
		for (size_t sh = 0; sh < sizeof(shapes) / sizeof(shapes[0]); sh++) {
			engine_t *e = mk(m, shapes[sh].slots, 256, shapes[sh].chunk, pools[p]);
			/* generating sequences first, so the embeddings share
			 * steps with their decode tokens; then the inputs,
			 * twice, in two orders */
			enum { GEN = 4 };
			engine_out_t *outs[GEN + 2 * N_LENS] = { 0 };
			for (int g = 0; g < GEN; g++) {
				engine_req_t r = { .id = (uint64_t)g, .prompt_ids = ids[3 + g % 3],
						   .n_prompt_ids = (size_t)g_lens[3 + g % 3], .max_tokens = 24,
						   .ignore_eos = true };
				CU_ASSERT_EQUAL_FATAL(engine_submit(e, &r), 0);
			}
			for (size_t k = 0; k < 2 * N_LENS; k++) {
				size_t i = k < N_LENS ? k : 2 * N_LENS - 1 - k;
				engine_req_t r = { .id = GEN + k, .prompt_ids = ids[i], .n_prompt_ids = (size_t)g_lens[i],
						   .embed = true, .input = (uint32_t)k };
				CU_ASSERT_EQUAL_FATAL(engine_submit(e, &r), 0);
			}
			run_all(e, outs, GEN + 2 * N_LENS);
			engine_stats_t st;
			engine_get_stats(e, &st);
			CU_ASSERT(st.max_batch >= 2);
			CU_ASSERT_EQUAL(st.embeddings, 2 * N_LENS);
			for (int g = 0; g < GEN; g++) {
				CU_ASSERT_EQUAL(outs[g]->error, 0);
				CU_ASSERT_EQUAL(outs[g]->n_ids, 24);
				CU_ASSERT_PTR_NULL(outs[g]->embedding);
			}
			for (size_t k = 0; k < 2 * N_LENS; k++) {
				size_t i = k < N_LENS ? k : 2 * N_LENS - 1 - k;
				const engine_out_t *o = outs[GEN + k];
				CU_ASSERT_EQUAL_FATAL(o->error, 0);
				CU_ASSERT_EQUAL(o->n_ids, 0);
				CU_ASSERT_EQUAL(o->n_prompt_ids, (size_t)g_lens[i]);
				CU_ASSERT_EQUAL_FATAL(o->n_embedding, alone[i]->n_embedding);
				bool same = memcmp(o->embedding, alone[i]->embedding,
						   o->n_embedding * sizeof(float)) == 0;
				if (!same)
					fprintf(stderr, "\n%s, %d slots, chunk %d: input of %d tokens differs from alone\n",
						pools[p], shapes[sh].slots, shapes[sh].chunk, g_lens[i]);
				CU_ASSERT(same);
			}
			for (size_t k = 0; k < GEN + 2 * N_LENS; k++)
				engine_out_free(&outs[k]);
			engine_destroy(&e);
		}
		for (size_t i = 0; i < N_LENS; i++)
			engine_out_free(&alone[i]);
	}
	model_destroy(&m);
}

/* The final hidden states of ids [n] from model_forward in one step. */
static float *hidden_of(const model_t *m, const int32_t *ids, int n)
{
	int d = model_config(m)->dim;
	model_kv_t *kv = NULL;
	model_scratch_t *s = NULL;
	CU_ASSERT_EQUAL_FATAL(model_kv_new(m, 256, MODEL_KV_F16, &kv), 0);
	CU_ASSERT_EQUAL_FATAL(model_scratch_new(m, n, 2, &s), 0);
	int32_t *pos = malloc((size_t)n * sizeof(*pos));
	model_kv_t **kvs = malloc((size_t)n * sizeof(*kvs));
	bool *want = malloc((size_t)n * sizeof(*want)), *hw = malloc((size_t)n * sizeof(*hw));
	float *h = malloc((size_t)n * (size_t)d * sizeof(*h)), logits[1];
	for (int i = 0; i < n; i++) {
		pos[i] = i;
		kvs[i] = kv;
		want[i] = false;
		hw[i] = true;
	}
	model_batch_t b = { .n = n, .tokens = ids, .pos = pos, .kv = kvs, .logits_wanted = want,
			    .logits = logits, .hidden_wanted = hw, .hidden = h };
	CU_ASSERT_EQUAL(model_forward(m, s, &b), 0);
	free(pos);
	free(kvs);
	free(want);
	free(hw);
	model_scratch_destroy(&s);
	model_kv_destroy(&kv);
	return h;
}

/* ref[0..dims) = v / |v| in double */
static void normalized(const double *v, uint32_t dims, double *ref)
{
	double s = 0.0;
	for (uint32_t k = 0; k < dims; k++)
		s += v[k] * v[k];
	for (uint32_t k = 0; k < dims; k++)
		ref[k] = v[k] / sqrt(s);
}

static double max_diff(const float *a, const double *b, uint32_t n)
{
	double w = 0.0;
	for (uint32_t k = 0; k < n; k++)
		w = fmax(w, fabs((double)a[k] - b[k]));
	return w;
}

/* Each pooling is what it says on the final hidden states: mean of every
 * position, the first (cls), the last; the default (a model without
 * pooling_type) is mean. Dimensions keep the first N values of the pooled
 * state and normalize them; every vector has L2 norm 1 within 1e-6. */
static void test_pooling_and_dimensions(void)
{
	model_t *m = load260k();
	int d = model_config(m)->dim, vocab = model_config(m)->vocab_size;
	CU_ASSERT_EQUAL(model_config(m)->pooling_type, 0);
	enum { N = 37 };
	int32_t ids[N];
	make_ids(ids, N, vocab, 99);
	float *h = hidden_of(m, ids, N);
	double *pooled = calloc((size_t)d, sizeof(double)), *ref = calloc((size_t)d, sizeof(double));
	static const char *const pools[] = { "mean", "cls", "last", NULL };
	for (size_t p = 0; p < 4; p++) {
		engine_t *e = mk(m, 1, 256, 128, pools[p]);
		CU_ASSERT_STRING_EQUAL(engine_opts(e)->pooling, pools[p] ? pools[p] : "mean");
		CU_ASSERT_EQUAL(engine_embed_dims(e), (uint32_t)d);
		engine_destroy(&e);
		const char *pool = pools[p] ? pools[p] : ENGINE_POOLING_DEFAULT;
		for (int k = 0; k < d; k++) {
			double s = 0.0;
			for (int i = 0; i < N; i++)
				s += h[(size_t)i * d + k];
			pooled[k] = strcmp(pool, "mean") == 0 ? s / N
				    : strcmp(pool, "cls") == 0 ? h[k] : h[(size_t)(N - 1) * d + k];
		}
		static const uint32_t dims[] = { 0, 16, 1 };
		for (size_t j = 0; j < 3; j++) {
			uint32_t nd = dims[j] ? dims[j] : (uint32_t)d;
			engine_out_t *o = embed_alone(m, ids, N, pools[p], dims[j]);
			CU_ASSERT_EQUAL_FATAL(o->error, 0);
			CU_ASSERT_EQUAL_FATAL(o->n_embedding, nd);
			normalized(pooled, nd, ref);
			double diff = max_diff(o->embedding, ref, nd);
			if (!(diff < 1e-6))
				fprintf(stderr, "\npooling %s dims %u: max |engine - pooled here| %g\n", pool, nd, diff);
			CU_ASSERT(diff < 1e-6);
			CU_ASSERT(fabs(l2(o->embedding, nd) - 1.0) < 1e-6);
			engine_out_free(&o);
		}
	}
	/* the poolings differ (a test that could not tell them apart would
	 * prove nothing) */
	engine_out_t *a = embed_alone(m, ids, N, "mean", 0), *b = embed_alone(m, ids, N, "last", 0),
		     *c = embed_alone(m, ids, N, "cls", 0);
	CU_ASSERT(memcmp(a->embedding, b->embedding, (size_t)d * 4) != 0);
	CU_ASSERT(memcmp(b->embedding, c->embedding, (size_t)d * 4) != 0);
	/* cls of a causal model: position 0 sees only itself, so it is the
	 * embedding of the BOS alone */
	engine_out_t *bos = embed_alone(m, ids, 1, "last", 0);
	for (int k = 0; k < d; k++)
		CU_ASSERT(fabsf(bos->embedding[k] - c->embedding[k]) < 1e-6f);
	engine_out_free(&a);
	engine_out_free(&b);
	engine_out_free(&c);
	engine_out_free(&bos);
	free(pooled);
	free(ref);
	free(h);
	model_destroy(&m);
}

/* Longer than the context: refused with context_length_exceeded naming
 * the input and the lengths, or cut to the context's start with truncate
 * (the vector of the first n_ctx tokens). Exactly n_ctx fits (no token is
 * generated). Empty and out-of-vocabulary inputs are invalid_request;
 * dimensions beyond the model's too. */
static void test_context_and_errors(void)
{
	model_t *m = load260k();
	int vocab = model_config(m)->vocab_size, d = model_config(m)->dim;
	enum { CTX = 32 };
	int32_t ids[50];
	make_ids(ids, 50, vocab, 5);
	engine_t *e = mk(m, 2, CTX, 8, NULL);
	engine_req_t rs[] = {
		{ .id = 0, .prompt_ids = ids, .n_prompt_ids = 50, .embed = true, .input = 3 },
		{ .id = 1, .prompt_ids = ids, .n_prompt_ids = 50, .embed = true, .truncate = true },
		{ .id = 2, .prompt_ids = ids, .n_prompt_ids = CTX, .embed = true },
		{ .id = 3, .prompt_ids = ids, .n_prompt_ids = 0, .embed = true, .input = 5 },
		{ .id = 4, .prompt_ids = (const int32_t[]){ 1, 5, 70000 }, .n_prompt_ids = 3, .embed = true, .input = 2 },
		{ .id = 5, .prompt_ids = ids, .n_prompt_ids = 4, .embed = true, .dimensions = (uint32_t)d + 1 },
		/* a generating request of n_ctx tokens is refused: it needs room
		 * for one generated token (unchanged) */
		{ .id = 6, .prompt_ids = ids, .n_prompt_ids = CTX, .max_tokens = 1 },
	};
	enum { NR = sizeof(rs) / sizeof(rs[0]) };
	for (size_t i = 0; i < NR; i++)
		CU_ASSERT_EQUAL_FATAL(engine_submit(e, &rs[i]), 0);
	engine_out_t *o[NR] = { 0 };
	run_all(e, o, NR);
	CU_ASSERT_STRING_EQUAL(o[0]->error_code, "context_length_exceeded");
	CU_ASSERT_PTR_NOT_NULL(strstr(o[0]->error_msg, "input 3 has 50 tokens"));
	CU_ASSERT_PTR_NOT_NULL(strstr(o[0]->error_msg, "32"));
	CU_ASSERT_PTR_NULL(o[0]->embedding);
	CU_ASSERT_EQUAL_FATAL(o[1]->error, 0);
	CU_ASSERT(o[1]->truncated);
	CU_ASSERT_EQUAL(o[1]->n_prompt_ids, CTX);
	CU_ASSERT_EQUAL_FATAL(o[2]->error, 0);
	CU_ASSERT(!o[2]->truncated);
	CU_ASSERT(memcmp(o[1]->embedding, o[2]->embedding, (size_t)d * sizeof(float)) == 0);
	CU_ASSERT_STRING_EQUAL(o[3]->error_code, "invalid_request");
	CU_ASSERT_PTR_NOT_NULL(strstr(o[3]->error_msg, "input 5 is empty"));
	CU_ASSERT_STRING_EQUAL(o[4]->error_code, "invalid_request");
	CU_ASSERT_PTR_NOT_NULL(strstr(o[4]->error_msg, "input 2: token 2 is id 70000"));
	CU_ASSERT_STRING_EQUAL(o[5]->error_code, "invalid_request");
	CU_ASSERT_PTR_NOT_NULL(strstr(o[5]->error_msg, "dimensions"));
	CU_ASSERT_STRING_EQUAL(o[6]->error_code, "context_length_exceeded");
	for (size_t i = 0; i < NR; i++)
		engine_out_free(&o[i]);
	engine_destroy(&e);
	model_destroy(&m);
}

/* A text input is tokenized as a prompt (BOS as the model adds it): its
 * ids, given as a token-id input, give the same bits. An empty text is
 * the BOS alone (stories260K adds one). */
static void test_text_and_ids(void)
{
	model_t *m = load260k();
	engine_t *e = mk(m, 4, 256, 8, NULL);
	const char *texts[] = { "Once upon a time, there was a little girl.", "" };
	for (uint64_t i = 0; i < 2; i++)
		CU_ASSERT_EQUAL_FATAL(engine_submit(e, &(engine_req_t){ .id = i, .prompt = texts[i], .embed = true }), 0);
	engine_out_t *o[4] = { 0 };
	run_all(e, o, 2);
	CU_ASSERT_EQUAL_FATAL(o[0]->error, 0);
	CU_ASSERT_EQUAL_FATAL(o[1]->error, 0);
	CU_ASSERT(o[0]->n_prompt_ids > 5 && o[0]->prompt_ids[0] == 1);
	CU_ASSERT_EQUAL(o[1]->n_prompt_ids, 1);
	for (uint64_t i = 0; i < 2; i++)
		CU_ASSERT_EQUAL_FATAL(engine_submit(e, &(engine_req_t){ .id = 2 + i, .prompt_ids = o[i]->prompt_ids,
									.n_prompt_ids = o[i]->n_prompt_ids,
									.embed = true }), 0);
	run_all(e, o, 4);
	for (int i = 0; i < 2; i++) {
		CU_ASSERT_EQUAL_FATAL(o[2 + i]->error, 0);
		CU_ASSERT_EQUAL_FATAL(o[2 + i]->n_embedding, o[i]->n_embedding);
		CU_ASSERT(memcmp(o[2 + i]->embedding, o[i]->embedding, o[i]->n_embedding * sizeof(float)) == 0);
	}
	for (int i = 0; i < 4; i++)
		engine_out_free(&o[i]);
	engine_destroy(&e);
	model_destroy(&m);
}

/* Accounting: an embed request's FLOPs are its prefill's without the
 * output head (model_token_flops(pos, false) over its positions), it gets
 * a share of every step it was in, and the shares of all requests sum to
 * the engine's wall time; its tokens count as prefill tokens. */
static void test_accounting(void)
{
	model_t *m = load260k();
	int vocab = model_config(m)->vocab_size;
	int32_t ids[60];
	make_ids(ids, 60, vocab, 11);
	engine_t *e = mk(m, 3, 256, 8, NULL);
	CU_ASSERT_EQUAL_FATAL(engine_submit(e, &(engine_req_t){ .id = 0, .prompt_ids = ids, .n_prompt_ids = 20,
								 .max_tokens = 10, .ignore_eos = true }), 0);
	CU_ASSERT_EQUAL_FATAL(engine_submit(e, &(engine_req_t){ .id = 1, .prompt_ids = ids, .n_prompt_ids = 60,
								 .embed = true }), 0);
	CU_ASSERT_EQUAL_FATAL(engine_submit(e, &(engine_req_t){ .id = 2, .prompt_ids = ids + 5, .n_prompt_ids = 9,
								 .embed = true }), 0);
	engine_out_t *o[3] = { 0 };
	run_all(e, o, 3);
	engine_stats_t st;
	engine_get_stats(e, &st);
	uint64_t busy = 0;
	for (int i = 0; i < 3; i++) {
		CU_ASSERT_EQUAL_FATAL(o[i]->error, 0);
		CU_ASSERT(o[i]->busy_ns > 0 && o[i]->steps > 0);
		busy += o[i]->busy_ns;
	}
	CU_ASSERT_EQUAL(busy, st.wall_ns);
	static const int n[] = { 0, 60, 9 };
	for (int i = 1; i < 3; i++) {
		uint64_t f = 0;
		for (int p = 0; p < n[i]; p++)
			f += model_token_flops(m, p, false);
		CU_ASSERT_EQUAL(o[i]->flops, f);
		CU_ASSERT_EQUAL(o[i]->first_token_ns, 0);
	}
	CU_ASSERT_EQUAL(st.prefill_tokens, 20 + 60 + 9);
	CU_ASSERT_EQUAL(st.embeddings, 2);
	for (int i = 0; i < 3; i++)
		engine_out_free(&o[i]);
	engine_destroy(&e);
	model_destroy(&m);
}

/* Cancelling an embed request mid-prefill hands it back cancelled, without
 * a vector, and frees its slot for the next. */
static void test_cancel(void)
{
	model_t *m = load260k();
	int32_t ids[100];
	make_ids(ids, 100, model_config(m)->vocab_size, 3);
	engine_t *e = mk(m, 1, 256, 8, NULL);
	CU_ASSERT_EQUAL_FATAL(engine_submit(e, &(engine_req_t){ .id = 0, .prompt_ids = ids, .n_prompt_ids = 100,
								 .embed = true }), 0);
	CU_ASSERT_EQUAL_FATAL(engine_submit(e, &(engine_req_t){ .id = 1, .prompt_ids = ids, .n_prompt_ids = 10,
								 .embed = true }), 0);
	CU_ASSERT(engine_step(e) > 0);
	CU_ASSERT_EQUAL(engine_cancel(e, 0), 1);
	engine_out_t *o[2] = { 0 };
	run_all(e, o, 2);
	CU_ASSERT_EQUAL(o[0]->error, -ECANCELED);
	CU_ASSERT_PTR_NULL(o[0]->embedding);
	CU_ASSERT_EQUAL(o[1]->error, 0);
	CU_ASSERT_PTR_NOT_NULL(o[1]->embedding);
	engine_out_free(&o[0]);
	engine_out_free(&o[1]);
	engine_destroy(&e);
	model_destroy(&m);
}

const cu_test_t embed_tests[] = {
	{ "batch invariance", test_batch_invariance },
	{ "pooling and dimensions", test_pooling_and_dimensions },
	{ "context and errors", test_context_and_errors },
	{ "text and ids", test_text_and_ids },
	{ "accounting", test_accounting },
	{ "cancel", test_cancel },
	{ NULL, NULL },
};
