/* litellm: LiteLLM's model_prices_and_context_window.json read exactly;
 * bad input fails with the key or line named, leaving the table as it was. */
#include "tests.h"
#include "cost.h"
#include "litellm.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static bool q_is(meter_q_t q, int64_t num, int64_t den)
{
	return meter_q_cmp(q, METER_Q(num, den)) == 0;
}

static void test_sample(void)
{
	pricetab_t *t = pricetab_new();
	litellm_stats_t st;
	char err[512] = "";
	int r = litellm_load(t, DATA("litellm_sample.json"), "2024-11-22", &st, err, sizeof(err));
	if (r < 0)
		fprintf(stderr, "%s\n", err);
	CU_ASSERT_EQUAL_FATAL(r, 0);
	CU_ASSERT_EQUAL(st.loaded, 7);	/* sample_spec skipped; the image entry skipped */
	CU_ASSERT_EQUAL(st.skipped, 1);
	CU_ASSERT_EQUAL(pricetab_count(t), 7);
	CU_ASSERT_PTR_NULL(pricetab_find(t, "sample_spec"));
	CU_ASSERT_PTR_NULL(pricetab_find(t, "dall-e-3"));

	/* An embedding entry is loaded as one (mode embedding): 2e-08 USD per
	 * token is 0.02 per 1M, its batch price 0.01, no output price, and no
	 * "output below input" typo warning for it. */
	const pricetab_entry_t *emb = pricetab_find(t, "text-embedding-3-small");
	CU_ASSERT_PTR_NOT_NULL_FATAL(emb);
	CU_ASSERT(pricetab_is_embedding(emb));
	CU_ASSERT_STRING_EQUAL(emb->mode, "embedding");
	CU_ASSERT(q_is(emb->in_per_1m, 1, 50) && q_is(emb->out_per_1m, 0, 1));
	CU_ASSERT(emb->has_batch && q_is(emb->batch_in_per_1m, 1, 100) && q_is(emb->batch_out_per_1m, 0, 1));
	CU_ASSERT(!pricetab_is_embedding(pricetab_find(t, "gpt-4o")));
	for (size_t i = 0; i < pricetab_warning_count(t); i++)
		CU_ASSERT_PTR_NULL(strstr(pricetab_warning_at(t, i), "text-embedding-3-small"));

	/* 2.5e-06 USD per token is exactly 2.50 per 1M (economics.md 1a). */
	const pricetab_entry_t *e = pricetab_find(t, "gpt-4o");
	CU_ASSERT_PTR_NOT_NULL_FATAL(e);
	CU_ASSERT(q_is(e->in_per_1m, 5, 2) && q_is(e->out_per_1m, 10, 1));
	CU_ASSERT(e->has_batch && q_is(e->batch_in_per_1m, 5, 4) && q_is(e->batch_out_per_1m, 5, 1));
	CU_ASSERT_STRING_EQUAL(e->provider, "openai");
	CU_ASSERT_STRING_EQUAL(e->currency, "USD");
	CU_ASSERT_STRING_EQUAL(e->in_date, "2024-11-22");
	e = pricetab_find(t, "gpt-4o-mini");
	CU_ASSERT(q_is(e->in_per_1m, 3, 20) && q_is(e->batch_in_per_1m, 3, 40));
	e = pricetab_find(t, "claude-3-haiku-20240307");
	CU_ASSERT(q_is(e->in_per_1m, 1, 4) && q_is(e->out_per_1m, 5, 4) && !e->has_batch);
	e = pricetab_find(t, "deepseek/deepseek-chat");
	CU_ASSERT(q_is(e->in_per_1m, 7, 25) && q_is(e->out_per_1m, 21, 50));
	CU_ASSERT_PTR_NOT_NULL(strstr(e->in_source, "api-docs.deepseek.com"));

	/* The 10x typo trap of economics.md 1e is reported. */
	bool warned = false;
	for (size_t i = 0; i < pricetab_warning_count(t); i++)
		warned |= strstr(pricetab_warning_at(t, i), "gemini/gemini-1.5-pro-latest") != NULL &&
			  strstr(pricetab_warning_at(t, i), "typo") != NULL;
	CU_ASSERT(warned);

	/* Tiered pricing: the band is chosen by prompt size. */
	e = pricetab_find(t, "dashscope/qwen-plus-latest");
	CU_ASSERT_PTR_NOT_NULL_FATAL(e);
	CU_ASSERT_EQUAL(e->n_bands, 2);
	int64_t v;
	CU_ASSERT_EQUAL(cost_api_equivalent(t, e, 1000, 1000, false, "USD", &v, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(v, 1000 * 4 / 10 + 1000 * 12 / 10);	/* 0.40 and 1.20 per 1M */
	CU_ASSERT_EQUAL(cost_api_equivalent(t, e, 300000, 1000, false, "USD", &v, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(v, 300000 * 12 / 10 + 1000 * 36 / 10);	/* 1.20 and 3.60 */
	CU_ASSERT_EQUAL(cost_api_equivalent(t, e, 2000000, 1, false, "USD", &v, err, sizeof(err)), -ERANGE);

	/* A call priced from the JSON: 1000 in + 500 out on gpt-4o. */
	e = pricetab_find(t, "gpt-4o");
	CU_ASSERT_EQUAL(cost_api_equivalent(t, e, 1000, 500, false, "USD", &v, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(v, 7500);
	CU_ASSERT_EQUAL(cost_api_equivalent(t, e, 1000, 500, true, "USD", &v, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(v, 3750);
	pricetab_destroy(&t);
}

static void expect_error(const char *json, int want, const char *n1, const char *n2)
{
	pricetab_t *t = pricetab_new();
	char err[512] = "";
	int r = litellm_load_buffer(t, "prices.json", json, strlen(json), "d", NULL, err, sizeof(err));
	CU_ASSERT_EQUAL(r, want);
	if (strstr(err, n1) == NULL || (n2 && strstr(err, n2) == NULL))
		fprintf(stderr, "\nexpected \"%s\" and \"%s\" in: %s\n", n1, n2 ? n2 : "", err);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, n1));
	if (n2)
		CU_ASSERT_PTR_NOT_NULL(strstr(err, n2));
	CU_ASSERT_EQUAL(pricetab_count(t), 0);	/* nothing half-loaded */
	pricetab_destroy(&t);
}

static void test_bad_input(void)
{
	/* Syntax errors name the line (and column). */
	expect_error("{\n  \"a\": {\n    \"input_cost_per_token\": 1e-06\n    \"output_cost_per_token\": 2e-06}}",
		     -EBADMSG, "prices.json:4:", NULL);
	expect_error("{\"gpt-4o\": {\"input_cost_per_token\": 2.5e-06,,}}", -EBADMSG, "prices.json:1:", NULL);
	expect_error("{\"a\": {}, \"a\": {}}", -EBADMSG, "duplicate", NULL);
	expect_error("", -EBADMSG, "prices.json", NULL);
	/* Semantic errors name the model key and the field. */
	expect_error("[1, 2]", -EINVAL, "top level", "an object keyed by model name");
	expect_error("{\"ok\": {\"input_cost_per_token\": 1e-06, \"output_cost_per_token\": 2e-06},"
		     " \"gpt-4o\": {\"input_cost_per_token\": \"2.5e-06\", \"output_cost_per_token\": 1e-05}}",
		     -EINVAL, "\"gpt-4o\": input_cost_per_token", "got a string");
	expect_error("{\"m\": {\"input_cost_per_token\": -1e-06, \"output_cost_per_token\": 2e-06}}", -EINVAL,
		     "\"m\": input_cost_per_token", "negative");
	expect_error("{\"m\": 5}", -EINVAL, "\"m\"", "expected an object");
	expect_error("{\"m\": {\"mode\": 7, \"input_cost_per_token\": 1e-06, \"output_cost_per_token\": 2e-06}}",
		     -EINVAL, "\"m\": mode", "expected a string");
	expect_error("{\"m\": {\"tiered_pricing\": [{\"input_cost_per_token\": 1e-06, \"output_cost_per_token\": 2e-06,"
		     " \"range\": [5]}]}}", -EINVAL, "\"m\": tiered_pricing[0].range", NULL);
	expect_error("{\"m\": {\"input_cost_per_token\": 1e-06, \"output_cost_per_token_batches\": true,"
		     " \"output_cost_per_token\": 2e-06}}", -EINVAL, "output_cost_per_token_batches", "got true");
}

static void test_exact(void)
{
	meter_q_t q;
	CU_ASSERT_EQUAL(litellm_exact(1.05e-05, 6, &q), 0);
	CU_ASSERT(q_is(q, 21, 2));	/* 10.5 per 1M */
	CU_ASSERT_EQUAL(litellm_exact(1.4e-08, 6, &q), 0);
	CU_ASSERT(q_is(q, 7, 500));	/* DeepSeek's cache hit: 0.014 per 1M */
	CU_ASSERT_EQUAL(litellm_exact(0.1 + 0.2, 0, &q), 0);	/* 0.30000000000000004: kept as the double */
	CU_ASSERT(q.den >= 100000000000000000LL / 10);
}

/* Cache-read prices: cache_read_input_token_cost, or DeepSeek's older
 * input_cost_per_token_cache_hit; none without either. */
static void test_cached(void)
{
	const char *json = "{\"gpt-4o-mini\": {\"input_cost_per_token\": 1.5e-07, \"output_cost_per_token\": 6e-07,"
			   " \"cache_read_input_token_cost\": 7.5e-08, \"litellm_provider\": \"openai\", \"mode\": \"chat\"},"
			   " \"deepseek-chat\": {\"input_cost_per_token\": 1.4e-07, \"output_cost_per_token\": 2.8e-07,"
			   " \"input_cost_per_token_cache_hit\": 1.4e-08, \"mode\": \"chat\"},"
			   " \"plain\": {\"input_cost_per_token\": 1e-06, \"output_cost_per_token\": 2e-06}}";
	pricetab_t *t = pricetab_new();
	char err[512] = "";
	CU_ASSERT_EQUAL_FATAL(litellm_load_buffer(t, "p.json", json, strlen(json), "2024-11-22", NULL, err, sizeof(err)),
			      0);
	const pricetab_entry_t *a = pricetab_find(t, "gpt-4o-mini"), *b = pricetab_find(t, "deepseek-chat"),
			       *c = pricetab_find(t, "plain");
	CU_ASSERT_FATAL(a != NULL && b != NULL && c != NULL);
	CU_ASSERT(a->has_cached && q_is(a->cached_in_per_1m, 3, 40));	/* 0.075 per 1M */
	CU_ASSERT(b->has_cached && q_is(b->cached_in_per_1m, 7, 500));	/* 0.014 per 1M */
	CU_ASSERT_STRING_EQUAL(b->cached_date, "2024-11-22");
	CU_ASSERT_PTR_NOT_NULL(strstr(b->cached_source, "p.json"));
	CU_ASSERT(!c->has_cached);
	pricetab_destroy(&t);
	expect_error("{\"m\": {\"input_cost_per_token\": 1e-06, \"output_cost_per_token\": 2e-06,"
		     " \"cache_read_input_token_cost\": \"x\"}}", -EINVAL, "cache_read_input_token_cost", "got a string");
}

const cu_test_t litellm_tests[] = {
	{ "cached", test_cached },
	{ "sample", test_sample },
	{ "bad_input", test_bad_input },
	{ "exact", test_exact },
	{ NULL, NULL },
};
