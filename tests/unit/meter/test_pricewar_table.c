/* pricewar_table: the price-war table of economics.md section 6 from the
 * shipped profile and price tables: every cell the reference gives, within
 * half a point; the small-model row; the cache-hit rate on basis C only
 * where a price has a cached price, and said; every source listed. */
#include "tests.h"
#include "pricewar_table.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static hwprof_t rental;
static pricetab_t *fx, *tabs[3];
static pricewar_table_t *pt;

static void setup(void)
{
	char err[1024] = "";
	CU_ASSERT_EQUAL_FATAL(hwprof_load(DEPLOY("hardware/" PRICEWAR_TABLE_PROFILE ".conf"), &rental, err, sizeof(err)),
			      0);
	fx = pricetab_new();
	CU_ASSERT_EQUAL_FATAL(pricetab_load(fx, DEPLOY("prices/fx.conf"), err, sizeof(err)), 0);
	pricewar_table_src_t srcs[3];
	CU_ASSERT_EQUAL_FATAL(pricewar_table_n_default_srcs, 3);
	for (size_t i = 0; i < 3; i++) {
		char path[512];
		srcs[i] = pricewar_table_default_srcs[i];
		snprintf(path, sizeof(path), "%s/prices/%s.conf", METER_DEPLOY_DIR, srcs[i].name);
		tabs[i] = pricetab_new();
		CU_ASSERT_EQUAL_FATAL(pricetab_load(tabs[i], path, err, sizeof(err)), 0);
		srcs[i].prices = tabs[i];
	}
	int r = pricewar_table_build(&rental, srcs, 3, fx, "USD", &pt, err, sizeof(err));
	if (r < 0)
		fprintf(stderr, "\n%s\n", err);
	CU_ASSERT_EQUAL_FATAL(r, 0);
}

static void teardown(void)
{
	pricewar_table_destroy(&pt);
	CU_ASSERT_PTR_NULL(pt);
	for (int i = 0; i < 3; i++)
		pricetab_destroy(&tabs[i]);
	pricetab_destroy(&fx);
}

static double pct(const pricewar_cell_t *c)
{
	CU_ASSERT(c->computed);
	return c->defined ? c->gm_ppm / 1e4 : -INFINITY;
}

static bool near(const char *what, double got, double want)
{
	if (fabs(got - want) <= 0.5)
		return true;
	fprintf(stderr, "\n%s: %.2f%%, economics.md 6: %g%%\n", what, got, want);
	return false;
}

/* economics.md 6's table, rows as it names them (ERNIE 4.0 = Qwen-Max
 * 120/120, the mid-tier ERNIE 3.5 12/12, ...). */
static void test_cells(void)
{
	setup();
	static const struct {
		const char *table, *name;
		double a, b, c;
	} want[] = {
		{ "cn-2024-05-before", "ernie-4.0-8k", 94, 99, 99.3 },
		{ "cn-2024-05-before", "qwen-max", 94, 99, 99.3 },
		{ "cn-2024-05-before", "ernie-3.5-8k", 39, 87, 93 },
		{ "cn-2024-05-after", "qwen-max", 91, 97, 98.6 },
		{ "cn-2024-late", "qwen-max", 82, 93, 97 },
		{ "cn-2024-05-after", "doubao-pro-32k", -422, -77, 24 },
		{ "cn-2024-05-after", "qwen-long", -485, -161, 2 },
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		const pricewar_row_t *row = pricewar_table_find(pt, want[i].table, want[i].name);
		CU_ASSERT_PTR_NOT_NULL_FATAL(row);
		CU_ASSERT(near(want[i].name, pct(&row->cell[PRICEWAR_BASIS_A]), want[i].a));
		CU_ASSERT(near(want[i].name, pct(&row->cell[PRICEWAR_BASIS_B]), want[i].b));
		CU_ASSERT(near(want[i].name, pct(&row->cell[PRICEWAR_BASIS_C]), want[i].c));
		CU_ASSERT(!row->cell[PRICEWAR_BASIS_C].cached);	/* no cached price: list price */
		CU_ASSERT(!row->cell[PRICEWAR_BASIS_7B].computed);	/* a large model's price */
	}
	/* Free ERNIE Speed / Lite: -infinity everywhere. */
	const pricewar_row_t *row = pricewar_table_find(pt, "cn-2024-05-after", "ernie-speed-8k");
	CU_ASSERT_PTR_NOT_NULL_FATAL(row);
	for (int b = 0; b < PRICEWAR_N_BASES; b++)
		CU_ASSERT(row->cell[b].computed && !row->cell[b].defined);

	/* Small models on the 7B basis: pre-war ERNIE-Lite 3/3 51%, ERNIE-Speed
	 * 4/4 64%, post-May Qwen-Turbo 2/6 64%, Sept Qwen-Turbo 0.3/0.6 -224%. */
	static const struct {
		const char *table, *name;
		double gm;
	} small[] = {
		{ "cn-2024-05-before", "ernie-lite-8k", 51 },
		{ "cn-2024-05-before", "ernie-speed-8k", 64 },
		{ "cn-2024-05-after", "qwen-turbo", 64 },
		{ "cn-2024-late", "qwen-turbo", -224 },
	};
	for (size_t i = 0; i < sizeof(small) / sizeof(small[0]); i++) {
		row = pricewar_table_find(pt, small[i].table, small[i].name);
		CU_ASSERT_PTR_NOT_NULL_FATAL(row);
		CU_ASSERT(row->small);
		CU_ASSERT(near(small[i].name, pct(&row->cell[PRICEWAR_BASIS_7B]), small[i].gm));
	}

	/* The bases: $2.00 per GPU-hour; A $1.02, B $0.21, C $0.112, 7B $0.20
	 * per 1M tokens blended; C's node-day costs 87,072 USD over 226.75. */
	const pricewar_basis_t *a = pricewar_table_basis(pt, PRICEWAR_BASIS_A), *b = pricewar_table_basis(pt, PRICEWAR_BASIS_B),
			       *c = pricewar_table_basis(pt, PRICEWAR_BASIS_C), *s = pricewar_table_basis(pt, PRICEWAR_BASIS_7B);
	CU_ASSERT_EQUAL(a->cost_micros_per_hour, 16000000);
	CU_ASSERT_EQUAL(llround(a->cost_per_1m_tokens_micros / 1e4), 102);
	CU_ASSERT_EQUAL(llround(b->cost_per_1m_tokens_micros / 1e4), 21);
	CU_ASSERT_EQUAL(llround(c->cost_per_1m_tokens_micros / 1e3), 112);
	CU_ASSERT_EQUAL(llround(s->cost_per_1m_tokens_micros / 1e4), 20);
	CU_ASSERT_EQUAL(llround(c->cost_micros_per_hour * 226.75 * 24 / 1e6), 87072);
	CU_ASSERT_PTR_NULL(pricewar_table_basis(pt, PRICEWAR_N_BASES));

	/* Every entry of the three tables is a row, in table order. */
	const pricewar_row_t *rows;
	size_t n = pricewar_table_rows(pt, &rows);
	CU_ASSERT_EQUAL(n, pricetab_count(tabs[0]) + pricetab_count(tabs[1]) + pricetab_count(tabs[2]));
	CU_ASSERT(rows[0].src == 0 && rows[n - 1].src == 2);
	teardown();
}

/* Basis C takes DeepSeek's cache-hit rate where a price has a cached
 * price: DeepSeek-V2 after its Aug 2024 cache-hit price (cn-2024-late),
 * not the same entry without one (cn-2024-05-after). */
static void test_cache_on_c(void)
{
	setup();
	const pricewar_row_t *late = pricewar_table_find(pt, "cn-2024-late", "deepseek-chat"),
			     *may = pricewar_table_find(pt, "cn-2024-05-after", "deepseek-chat");
	CU_ASSERT_FATAL(late != NULL && may != NULL);
	CU_ASSERT(late->cell[PRICEWAR_BASIS_C].cached && !may->cell[PRICEWAR_BASIS_C].cached);
	CU_ASSERT(!late->cell[PRICEWAR_BASIS_A].cached && !late->cell[PRICEWAR_BASIS_B].cached);
	/* 608,000 x (0.5625 x 0.1 + 0.4375 x 1) + 168,000 x 2 CNY = 636,200 CNY
	 * = 88,361 USD a day against 87,072: 1.46%; at list price 33.6%. */
	CU_ASSERT(fabs(pct(&late->cell[PRICEWAR_BASIS_C]) - 1.46) <= 0.01);
	CU_ASSERT(fabs(pct(&may->cell[PRICEWAR_BASIS_C]) - 33.6) <= 0.05);
	CU_ASSERT_EQUAL(late->cell[PRICEWAR_BASIS_A].gm_ppm, may->cell[PRICEWAR_BASIS_A].gm_ppm);
	CU_ASSERT(late->note[2] != 0);	/* the cached price's source is a footnote */
	teardown();
}

static bool has(const char *s, const char *needle)
{
	if (s != NULL && strstr(s, needle) != NULL)
		return true;
	fprintf(stderr, "\nexpected \"%s\" in the output\n", needle);
	return false;
}

static void test_text_and_json(void)
{
	setup();
	char *text = pricewar_table_format(pt);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	CU_ASSERT(has(text, "before the May 2024 cuts (cn-2024-05-before)"));
	CU_ASSERT(has(text, "after the May 2024 cuts (cn-2024-05-after)"));
	CU_ASSERT(has(text, "  ernie-4.0-8k           120 / 120 CNY            93.9%     98.7%     99.3%         -"));
	CU_ASSERT(has(text, "  qwen-long              0.5 / 2 CNY            -485.0%   -161.4%      2.0%         -"));
	CU_ASSERT(has(text, "-inf"));
	CU_ASSERT(has(text, "1.5%c"));	/* DeepSeek-V2 late 2024 on C, at the cache-hit rate */
	CU_ASSERT(has(text, "c: 56.25% of the input tokens paid at the entry's cached-input price"));
	CU_ASSERT(has(text, "a 60% margin dies at a 60% cut"));
	/* Every input with its source: the rate, the throughputs, the day, the
	 * exchange rate, each price. */
	CU_ASSERT(has(text, "CNY at 7.2 per USD [source: economics.md conventions"));
	CU_ASSERT(has(text, "547.0 output tok/s per GPU") && has(text, "306.0 output tok/s per GPU") &&
		  has(text, "2740.0 output tok/s per GPU"));
	CU_ASSERT(has(text, "NVIDIA/TensorRT-LLM docs/source/performance.md @138f96d4"));
	CU_ASSERT(has(text, "226.75 nodes x 8 H800 for 24 h = 87,072 USD"));
	CU_ASSERT(has(text, "16.000000 USD/h per node of 8 x NVIDIA H800 [8 x 2.00 USD/GPU-h"));
	CU_ASSERT(has(text, "sources of the prices:\n  [1] 163.com/dy/article/J2O09HCV05118O92"));
	CU_ASSERT(has(text, "economics.md 1c: cache hit 0.1 (Aug 2024)"));
	CU_ASSERT(has(text, "before the cuts: of 16 price points, gross margin over 60% / below 0%: A 8 / 4"));
	free(text);

	json_t *j = pricewar_table_json(pt);
	CU_ASSERT_PTR_NOT_NULL_FATAL(j);
	json_t *rows = json_object_get(j, "rows"), *bases = json_object_get(j, "bases");
	const pricewar_row_t *r;
	CU_ASSERT_EQUAL(json_array_size(rows), pricewar_table_rows(pt, &r));
	CU_ASSERT_EQUAL(json_array_size(bases), PRICEWAR_N_BASES);
	json_t *first = json_array_get(rows, 0);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(first, "table")), "cn-2024-05-before");
	CU_ASSERT(json_is_true(json_object_get(first, "before")));
	json_t *a = json_object_get(json_object_get(first, "cells"), "A");
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(a, "gross_margin_ppm")), r[0].cell[0].gm_ppm);
	CU_ASSERT(json_is_null(json_object_get(json_object_get(first, "cells"), "7B")));
	CU_ASSERT(json_real_value(json_object_get(json_array_get(bases, 2), "cache_hit_rate")) == 0.5625);
	CU_ASSERT(json_array_size(json_object_get(j, "sources")) > 10);
	CU_ASSERT(has(json_string_value(json_object_get(j, "report")), "a 60% margin dies at a 60% cut"));
	json_decref(j);
	teardown();
}

static void test_errors(void)
{
	char err[512] = "";
	hwprof_t hw;
	CU_ASSERT_EQUAL_FATAL(hwprof_load(DEPLOY("hardware/8xh800-rental.conf"), &hw, err, sizeof(err)), 0);
	hw.accelerators = 0;
	pricewar_table_t *t = NULL;
	CU_ASSERT_EQUAL(pricewar_table_build(&hw, NULL, 0, NULL, "USD", &t, err, sizeof(err)), -EINVAL);
	CU_ASSERT(has(err, "accelerators"));
	CU_ASSERT_PTR_NULL(t);
	/* CNY prices without an exchange rate: pricewar_check's error. */
	hw.accelerators = 8;
	pricetab_t *p = pricetab_new();
	CU_ASSERT_EQUAL_FATAL(pricetab_load(p, DEPLOY("prices/cn-2024-05-after.conf"), err, sizeof(err)), 0);
	pricewar_table_src_t s = { "cn-2024-05-after", "after", false, p };
	CU_ASSERT_EQUAL(pricewar_table_build(&hw, &s, 1, p, "USD", &t, err, sizeof(err)), -ENOENT);
	CU_ASSERT(has(err, "CNY_per_USD"));
	pricetab_destroy(&p);
	pricewar_table_destroy(&t);
}

const cu_test_t pricewar_table_tests[] = {
	{ "cells", test_cells },
	{ "cache_on_c", test_cache_on_c },
	{ "text_and_json", test_text_and_json },
	{ "errors", test_errors },
	{ NULL, NULL },
};
