/* pricetab: the shipped tables load with a source and date for every
 * number; batch prices; exchange rates; errors name file, section, key. */
#include "tests.h"
#include "cost.h"
#include "pricetab.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static pricetab_t *load(const char *const *files, size_t n)
{
	pricetab_t *t = pricetab_new();
	char err[512] = "";
	for (size_t i = 0; i < n; i++) {
		int r = pricetab_load(t, files[i], err, sizeof(err));
		if (r < 0)
			fprintf(stderr, "%s\n", err);
		CU_ASSERT_EQUAL(r, 0);
	}
	return t;
}

static bool q_is(meter_q_t q, int64_t num, int64_t den)
{
	return meter_q_cmp(q, METER_Q(num, den)) == 0;
}

static void test_shipped_tables(void)
{
	const char *files[] = { DEPLOY("prices/fx.conf"), DEPLOY("prices/closed-2024.conf"),
				DEPLOY("prices/cn-2024-05-before.conf"), DEPLOY("prices/cn-2024-05-after.conf"),
				DEPLOY("prices/cn-2024-late.conf") };
	for (size_t f = 0; f < 5; f++) {
		pricetab_t *t = load(&files[f], 1);
		/* Every number resolves to a source and a date. */
		for (size_t i = 0; i < pricetab_count(t); i++) {
			const pricetab_entry_t *e = pricetab_at(t, i);
			CU_ASSERT(strlen(e->in_source) > 5 && strlen(e->in_date) >= 4);
			CU_ASSERT(strlen(e->out_source) > 5 && strlen(e->out_date) >= 4);
			CU_ASSERT(strlen(e->batch_source) > 5 && strlen(e->batch_date) >= 4);
			CU_ASSERT(meter_q_cmp(e->out_per_1m, e->in_per_1m) >= 0);
		}
		CU_ASSERT_EQUAL(pricetab_warning_count(t), 0);
		pricetab_destroy(&t);
	}
	pricetab_t *t = load(files, 5);
	const pricetab_entry_t *e = pricetab_find(t, "gpt-4o");
	CU_ASSERT_PTR_NOT_NULL_FATAL(e);
	CU_ASSERT(q_is(e->in_per_1m, 5, 2) && q_is(e->out_per_1m, 10, 1));
	CU_ASSERT(e->has_batch && q_is(e->batch_in_per_1m, 5, 4) && q_is(e->batch_out_per_1m, 5, 1));
	CU_ASSERT(q_is(e->batch_discount, 1, 2));
	e = pricetab_find(t, "gpt-4-turbo");	/* batch price from a 50% discount */
	CU_ASSERT_PTR_NOT_NULL_FATAL(e);
	CU_ASSERT(q_is(e->batch_in_per_1m, 5, 1) && q_is(e->batch_out_per_1m, 15, 1));
	CU_ASSERT_STRING_EQUAL(pricetab_name(t), "fx+closed-2024+cn-2024-05-before+cn-2024-05-after+cn-2024-late");
	/* The later file wins for a name in several: cn-2024-late's qwen-max. */
	e = pricetab_find(t, "qwen-max");
	CU_ASSERT(q_is(e->in_per_1m, 20, 1) && q_is(e->out_per_1m, 60, 1));
	const pricetab_fx_t *fx = pricetab_find_fx(t, "CNY");
	CU_ASSERT_PTR_NOT_NULL_FATAL(fx);
	CU_ASSERT(q_is(fx->per_usd, 36, 5));
	pricetab_destroy(&t);

	/* Before and after the May 2024 cuts (economics.md 1c). */
	t = load(&files[2], 1);
	e = pricetab_find(t, "qwen-long");
	CU_ASSERT(q_is(e->in_per_1m, 20, 1));
	CU_ASSERT_PTR_NOT_NULL(strstr(e->out_source, "not verified"));
	pricetab_destroy(&t);
	t = load(&files[3], 1);
	e = pricetab_find(t, "qwen-long");
	CU_ASSERT(q_is(e->in_per_1m, 1, 2) && q_is(e->out_per_1m, 2, 1));
	CU_ASSERT_STRING_EQUAL(e->in_date, "2024-05-21");
	e = pricetab_find(t, "ernie-speed-8k");
	CU_ASSERT(q_is(e->in_per_1m, 0, 1) && q_is(e->out_per_1m, 0, 1));
	e = pricetab_find(t, "doubao-pro-32k");
	CU_ASSERT(q_is(e->in_per_1m, 4, 5));
	CU_ASSERT_PTR_NOT_NULL(strstr(e->out_source, "not verified"));
	CU_ASSERT_STRING_EQUAL(pricetab_name(t), "cn-2024-05-after");
	CU_ASSERT(!e->has_batch);	/* batch_discount = 0: no batch tier */
	pricetab_destroy(&t);
}

static void test_fx(void)
{
	pricetab_t *t = pricetab_new();
	char err[256] = "";
	int64_t v;
	CU_ASSERT_EQUAL(pricetab_load(t, DEPLOY("prices/fx.conf"), err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(pricetab_convert(t, 7200000, "CNY", "USD", &v, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(v, 1000000);
	CU_ASSERT_EQUAL(pricetab_convert(t, 1, "USD", "CNY", &v, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(v, 7);	/* 7.2 rounds to 7 */
	CU_ASSERT_EQUAL(pricetab_convert(t, 5, "CNY", "CNY", &v, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(v, 5);
	CU_ASSERT_EQUAL(pricetab_convert(t, 5, "EUR", "USD", &v, err, sizeof(err)), -ENOENT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "EUR_per_USD"));
	pricetab_destroy(&t);
}

static void expect_error(const char *text, const char *needle)
{
	pricetab_t *t = pricetab_new();
	char err[512] = "";
	CU_ASSERT_EQUAL(pricetab_load_string(t, "bad.conf", "[price.ok]\ncurrency = USD\ninput_per_1m = 1\n"
					     "output_per_1m = 2\nsource = s\ndate = d\n", err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(pricetab_load_string(t, "bad.conf", text, err, sizeof(err)), -EINVAL);
	if (strstr(err, needle) == NULL)
		fprintf(stderr, "\nexpected \"%s\" in: %s\n", needle, err);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, needle));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "bad.conf"));
	CU_ASSERT_EQUAL(pricetab_count(t), 1);	/* a failed load changes nothing */
	pricetab_destroy(&t);
}

static void test_errors(void)
{
	expect_error("[price.a]\ncurrency = USD\ninput_per_1m = 1\noutput_per_1m = 2\n", "input_per_1m: no source");
	expect_error("[price.a]\ncurrency = USD\ninput_per_1m = 1\noutput_per_1m = 2\nsource = s\n", "no date");
	expect_error("[price.a]\ncurrency = USD\ninput_per_1m = 1\nsource = s\ndate = d\n", "output_per_1m");
	expect_error("[prcie.a]\ncurrency = USD\n", "[prcie.a]");
	expect_error("[price.a]\ncurrency = USD\ninput_per_1m = 1\noutput_per_1m = 2\nsource = s\ndate = d\n"
		     "inptu_per_1m = 3\n", "inptu_per_1m");
	expect_error("[price.a]\ncurrency = USD\ninput_per_1m = -1\noutput_per_1m = 2\nsource = s\ndate = d\n",
		     "negative");
	expect_error("[price.a]\ncurrency = USD\ninput_per_1m = 1\noutput_per_1m = 2\nsource = s\ndate = d\n"
		     "batch_discount = 1.5\n", "batch_discount");
	expect_error("[price.a]\ncurrency = USD\ninput_per_1m = 1\noutput_per_1m = 2\nsource = s\ndate = d\n"
		     "batch_discount = 0.5\nbatch_input_per_1m = 0.5\nbatch_output_per_1m = 1\n", "not both");
	expect_error("[price.a]\ncurrency = usd\n", "ISO 4217");
	expect_error("[fx]\nCNY_per_USD = 7.2\nCNY_per_USD_source = s\n", "CNY_per_USD_date");
	expect_error("[fx]\nCNY_per_USD = seven\nCNY_per_USD_source = s\nCNY_per_USD_date = d\n", "CNY_per_USD");
}

static void test_warning_and_no_batch(void)
{
	pricetab_t *t = pricetab_new();
	char err[256];
	CU_ASSERT_EQUAL(pricetab_load_string(t, "w.conf", "[price.typo]\ncurrency = USD\ninput_per_1m = 3.5\n"
					     "output_per_1m = 1.05\nsource = s\ndate = d\n", err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(pricetab_warning_count(t), 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(pricetab_warning_at(t, 0), "typo"));
	const pricetab_entry_t *e = pricetab_find(t, "typo");
	CU_ASSERT(!e->has_batch);
	meter_q_t pin, pout;
	CU_ASSERT_EQUAL(pricetab_prices(e, 10, true, &pin, &pout), 0);	/* no batch tier: list price */
	CU_ASSERT(q_is(pin, 7, 2));
	pricetab_destroy(&t);
}

/* A cached-input price: read with its own source and date, shown as the
 * entry has it, and blended at a cache-hit rate. The shipped tables carry
 * the ones economics.md gives (DeepSeek's cache hit among them). */
static void test_cached_input(void)
{
	pricetab_t *t = pricetab_new();
	char err[512] = "";
	CU_ASSERT_EQUAL_FATAL(pricetab_load_string(t, "c.conf",
		"[price.ds]\ncurrency = CNY\ninput_per_1m = 1\noutput_per_1m = 2\nsource = s\ndate = 2024-05\n"
		"cached_input_per_1m = 0.1\ncached_input_per_1m_source = cache hit\ncached_input_per_1m_date = 2024-08\n"
		"[price.plain]\ncurrency = CNY\ninput_per_1m = 1\noutput_per_1m = 2\nsource = s\ndate = d\n"
		"[price.inherit]\ncurrency = CNY\ninput_per_1m = 1\noutput_per_1m = 2\ncached_input_per_1m = 0.5\n"
		"source = s2\ndate = d2\n", err, sizeof(err)), 0);
	const pricetab_entry_t *ds = pricetab_find(t, "ds"), *plain = pricetab_find(t, "plain"),
			       *inh = pricetab_find(t, "inherit");
	CU_ASSERT_FATAL(ds != NULL && plain != NULL && inh != NULL);
	CU_ASSERT(ds->has_cached && q_is(ds->cached_in_per_1m, 1, 10));
	CU_ASSERT_STRING_EQUAL(ds->cached_source, "cache hit");
	CU_ASSERT_STRING_EQUAL(ds->cached_date, "2024-08");
	CU_ASSERT(!plain->has_cached);
	CU_ASSERT(inh->has_cached && strcmp(inh->cached_source, "s2") == 0 && strcmp(inh->cached_date, "d2") == 0);

	/* in x (R x cached + (1 - R) x list), exact: 342/608 hits at 0.1, the
	 * rest at 1 = 0.49375. No cached price: the list price, said. */
	meter_q_t p;
	bool applied = false;
	CU_ASSERT_EQUAL(pricetab_cache_blend(ds, ds->in_per_1m, METER_Q(342, 608), &p, &applied), 0);
	CU_ASSERT(applied && q_is(p, 49375, 100000));
	CU_ASSERT_EQUAL(pricetab_cache_blend(plain, plain->in_per_1m, METER_Q(1, 2), &p, &applied), 0);
	CU_ASSERT(!applied && q_is(p, 1, 1));
	CU_ASSERT_EQUAL(pricetab_cache_blend(ds, ds->in_per_1m, METER_Q(3, 2), &p, &applied), -EINVAL);
	CU_ASSERT_EQUAL(pricetab_cache_blend(ds, ds->in_per_1m, METER_Q(-1, 2), &p, &applied), -EINVAL);
	pricetab_destroy(&t);

	expect_error("[price.a]\ncurrency = USD\ninput_per_1m = 1\noutput_per_1m = 2\nsource = s\ndate = d\n"
		     "cached_input_per_1m = 2\n", "cached_input_per_1m: above input_per_1m");
	expect_error("[price.a]\ncurrency = USD\ninput_per_1m = 1\noutput_per_1m = 2\ncached_input_per_1m = 0.1\n"
		     "input_per_1m_source = s\noutput_per_1m_source = s\ndate = d\n", "cached_input_per_1m: no source");

	/* The shipped tables: DeepSeek's cache-hit price (economics.md 1c: 0.1
	 * CNY from Aug 2024; 1a: 0.014 USD), GPT-4o mini's cached 0.075. */
	const char *files[] = { DEPLOY("prices/cn-2024-late.conf"), DEPLOY("prices/closed-2024.conf"),
				DEPLOY("prices/deepseek-2025.conf") };
	t = load(files, 3);
	const pricetab_entry_t *e = pricetab_find(t, "deepseek-chat");
	CU_ASSERT(e != NULL && e->has_cached && q_is(e->cached_in_per_1m, 1, 10) && strcmp(e->currency, "CNY") == 0);
	CU_ASSERT(e != NULL && strstr(e->cached_source, "economics.md 1c") != NULL);
	e = pricetab_find(t, "deepseek-chat-usd");
	CU_ASSERT(e != NULL && e->has_cached && q_is(e->cached_in_per_1m, 14, 1000));
	e = pricetab_find(t, "gpt-4o-mini");
	CU_ASSERT(e != NULL && e->has_cached && q_is(e->cached_in_per_1m, 75, 1000));
	e = pricetab_find(t, "deepseek-r1");
	CU_ASSERT(e != NULL && e->has_cached && q_is(e->cached_in_per_1m, 14, 100) && q_is(e->in_per_1m, 55, 100));
	CU_ASSERT(pricetab_find(t, "gpt-4-turbo") != NULL && !pricetab_find(t, "gpt-4-turbo")->has_cached);
	pricetab_destroy(&t);
}

/* The shipped embedding prices: mode embedding, input prices only, each
 * with its source and date; an embedding call of 1,000,000 tokens costs
 * the list price, half through the Batch API, converted exactly. */
static void test_embedding_prices(void)
{
	const char *files[] = { DEPLOY("prices/fx.conf"), DEPLOY("prices/embeddings.conf") };
	pricetab_t *t = load(files, 2);
	char err[512] = "";
	CU_ASSERT_STRING_EQUAL(pricetab_name(t), "fx+embeddings");
	CU_ASSERT_EQUAL(pricetab_count(t), 4);
	for (size_t i = 0; i < pricetab_count(t); i++) {
		const pricetab_entry_t *e = pricetab_at(t, i);
		CU_ASSERT(pricetab_is_embedding(e));
		CU_ASSERT_STRING_EQUAL(e->mode, "embedding");
		CU_ASSERT(q_is(e->out_per_1m, 0, 1) && e->has_batch && q_is(e->batch_out_per_1m, 0, 1));
		CU_ASSERT(strlen(e->in_source) > 20 && strlen(e->in_date) >= 7);
		CU_ASSERT(strlen(e->batch_source) > 20 && strlen(e->batch_date) >= 7);
		CU_ASSERT_PTR_NOT_NULL(strstr(e->out_source, "input tokens only"));
	}
	CU_ASSERT_EQUAL(pricetab_warning_count(t), 0);	/* output 0 < input is no typo here */
	const pricetab_entry_t *s = pricetab_find(t, "text-embedding-3-small");
	const pricetab_entry_t *l = pricetab_find(t, "text-embedding-3-large");
	const pricetab_entry_t *v3 = pricetab_find(t, "text-embedding-v3");
	CU_ASSERT_FATAL(s != NULL && l != NULL && v3 != NULL && pricetab_find(t, "text-embedding-v4") != NULL);
	CU_ASSERT(q_is(s->in_per_1m, 2, 100) && q_is(s->batch_in_per_1m, 1, 100) && !strcmp(s->currency, "USD"));
	CU_ASSERT(q_is(l->in_per_1m, 13, 100) && q_is(l->batch_in_per_1m, 65, 1000));
	CU_ASSERT(q_is(v3->in_per_1m, 1, 2) && q_is(v3->batch_in_per_1m, 1, 4) && !strcmp(v3->currency, "CNY"));
	CU_ASSERT_PTR_NOT_NULL(strstr(s->in_source, "openai.com/index/new-embedding-models-and-api-updates"));
	CU_ASSERT_STRING_EQUAL(s->in_date, "2024-01-25");
	CU_ASSERT_PTR_NOT_NULL(strstr(s->batch_source, "TC-2025-01-13"));
	CU_ASSERT_PTR_NOT_NULL(strstr(v3->in_source, "help.aliyun.com/zh/model-studio/model-introduction-6"));
	CU_ASSERT_PTR_NOT_NULL(strstr(v3->batch_source, "Batch calls 0.00025"));

	int64_t v;
	/* 1,000,000 prompt tokens: 0.02 USD = 20,000 micro-USD; batch half. */
	CU_ASSERT_EQUAL(cost_api_equivalent(t, s, 1000000, 0, false, "USD", &v, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(v, 20000);
	CU_ASSERT_EQUAL(cost_api_equivalent(t, s, 1000000, 0, true, "USD", &v, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(v, 10000);
	/* In CNY at 7.2: 0.144 and 0.072 CNY; 3-large batch 0.065 x 7.2. */
	CU_ASSERT_EQUAL(cost_api_equivalent(t, s, 1000000, 0, false, "CNY", &v, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(v, 144000);
	CU_ASSERT_EQUAL(cost_api_equivalent(t, l, 1000000, 0, true, "CNY", &v, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(v, 468000);
	/* 333 tokens on text-embedding-v3, batch, in USD: 333 x 0.25 / 7.2
	 * = 11.5625 micro-USD, rounded once: 12. */
	CU_ASSERT_EQUAL(cost_api_equivalent(t, v3, 333, 0, true, "USD", &v, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(v, 12);
	pricetab_destroy(&t);

	/* Bad embedding entries are refused, naming the key. */
	static const struct {
		const char *text, *want;
	} bad[] = {
		{ "[price.e]\ncurrency = USD\nmode = embedding\ninput_per_1m = 0.02\noutput_per_1m = 0.01\n"
		  "source = s\ndate = d\n", "[price.e] output_per_1m: an embedding price has no output price" },
		{ "[price.e]\ncurrency = USD\nmode = embedding\ninput_per_1m = 0.02\nbatch_input_per_1m = 0.01\n"
		  "batch_output_per_1m = 1\nsource = s\ndate = d\n", "[price.e] batch_output_per_1m: an embedding" },
		{ "[price.e]\ncurrency = USD\nmode = embeddings\ninput_per_1m = 0.02\nsource = s\ndate = d\n",
		  "[price.e] mode: expected chat (the default), completion, responses or embedding" },
		{ "[price.e]\ncurrency = USD\ninput_per_1m = 0.02\nsource = s\ndate = d\n",
		  "[price.e] output_per_1m: missing" },	/* a chat price still needs its output price */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		t = pricetab_new();
		CU_ASSERT_EQUAL(pricetab_load_string(t, "e.conf", bad[i].text, err, sizeof(err)), -EINVAL);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, bad[i].want));
		if (strstr(err, bad[i].want) == NULL)
			fprintf(stderr, "got: %s\n", err);
		CU_ASSERT_EQUAL(pricetab_count(t), 0);
		pricetab_destroy(&t);
	}
	/* Output price 0 given explicitly is fine, and batch_discount applies. */
	t = pricetab_new();
	CU_ASSERT_EQUAL(pricetab_load_string(t, "e.conf", "[price.e]\ncurrency = USD\nmode = embedding\n"
					     "input_per_1m = 0.1\noutput_per_1m = 0\nbatch_discount = 0.5\n"
					     "source = s\ndate = d\n", err, sizeof(err)), 0);
	const pricetab_entry_t *e = pricetab_find(t, "e");
	CU_ASSERT(e != NULL && pricetab_is_embedding(e) && q_is(e->batch_in_per_1m, 1, 20));
	pricetab_destroy(&t);
}

const cu_test_t pricetab_tests[] = {
	{ "embedding_prices", test_embedding_prices },
	{ "cached_input", test_cached_input },
	{ "shipped_tables", test_shipped_tables },
	{ "fx", test_fx },
	{ "errors", test_errors },
	{ "warning_and_no_batch", test_warning_and_no_batch },
	{ NULL, NULL },
};
