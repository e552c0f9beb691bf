/* pricewar: economics.md 6 worked again from the shipped profile and price
 * tables; the cut that takes a 60% margin to zero is 60%; every input is
 * printed with its source. */
#include "tests.h"
#include "pricewar.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static hwprof_t rental;
static pricetab_t *before, *after, *late;

static void setup(void)
{
	char err[512] = "";
	CU_ASSERT_EQUAL_FATAL(hwprof_load(DEPLOY("hardware/8xh800-rental.conf"), &rental, err, sizeof(err)), 0);
	before = pricetab_new();
	after = pricetab_new();
	late = pricetab_new();
	pricetab_t *all[3] = { before, after, late };
	const char *files[3] = { DEPLOY("prices/cn-2024-05-before.conf"), DEPLOY("prices/cn-2024-05-after.conf"),
				 DEPLOY("prices/cn-2024-late.conf") };
	for (int i = 0; i < 3; i++) {
		CU_ASSERT_EQUAL_FATAL(pricetab_load(all[i], DEPLOY("prices/fx.conf"), err, sizeof(err)), 0);
		CU_ASSERT_EQUAL_FATAL(pricetab_load(all[i], files[i], err, sizeof(err)), 0);
	}
}

static void teardown(void)
{
	pricetab_destroy(&before);
	pricetab_destroy(&after);
	pricetab_destroy(&late);
}

/* Gross margin (percent) of a cost basis at a price, with the other price
 * as the "after" point. */
static double gm_at(const thru_t *t, double in, double out, double u, const pricetab_t *tab, const char *name,
		    pricewar_t *pw_out)
{
	const pricetab_entry_t *e = pricetab_find(tab, name);
	CU_ASSERT_PTR_NOT_NULL_FATAL(e);
	pricewar_in_t pin = { .hw = &rental, .thru = t, .in_per_call = in, .out_per_call = out, .utilization = u,
			      .prices = tab, .before = e, .after = e, .currency = "USD" };
	pricewar_t pw;
	char err[256] = "";
	int r = pricewar_check(&pin, &pw, err, sizeof(err));
	if (r < 0)
		fprintf(stderr, "%s\n", err);
	CU_ASSERT_EQUAL_FATAL(r, 0);
	if (pw_out)
		*pw_out = pw;
	return pw.before.defined ? pw.before.gm_ppm / 1e4 : -INFINITY;
}

/* economics.md 6 table, gross margins in percent (rounded there to whole
 * points, column C to 0.1 for some): within half a point. */
static void test_economics_table(void)
{
	setup();
	/* Per 8-GPU node: A = 8 x 547 out tok/s at 2048/2048, B = 8 x 306 at
	 * 2048/128, both at U = 50%; C = DeepSeek's day: 168B out tokens over
	 * 226.75 nodes x 24 h, 608 in : 168 out, nodes fully used. */
	thru_t A = { .source = THRU_GIVEN, .out_tok_s = 8 * 547.0 };
	thru_t B = { .source = THRU_GIVEN, .out_tok_s = 8 * 306.0 };
	thru_t C = { .source = THRU_GIVEN, .out_tok_s = 168e9 / (226.75 * 86400) };
	static const struct {
		int table;	/* 0 before, 1 after, 2 late */
		const char *name;
		double a, b, c;
	} rows[] = {
		{ 0, "ernie-4.0-8k", 94, 99, 99.3 },	/* pre-war flagship 120/120 */
		{ 0, "ernie-3.5-8k", 39, 87, 93 },	/* pre-war mid-tier 12/12 */
		{ 1, "qwen-max", 91, 97, 98.6 },	/* after 2024-05-21, 40/120 */
		{ 2, "qwen-max", 82, 93, 97 },		/* after Sept 2024, 20/60 */
		{ 1, "doubao-pro-32k", -422, -77, 24 },	/* 0.8/2 (+23.8 in the text) */
		{ 1, "qwen-long", -485, -161, 2 },	/* 0.5/2 */
	};
	const pricetab_t *tabs[3] = { before, after, late };
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const pricetab_t *t = tabs[rows[i].table];
		double a = gm_at(&A, 2048, 2048, 0.5, t, rows[i].name, NULL);
		double b = gm_at(&B, 2048, 128, 0.5, t, rows[i].name, NULL);
		double c = gm_at(&C, 608, 168, 1.0, t, rows[i].name, NULL);
		if (fabs(a - rows[i].a) > 0.5 || fabs(b - rows[i].b) > 0.5 || fabs(c - rows[i].c) > 0.5)
			fprintf(stderr, "\n%s: %.2f %.2f %.2f, economics.md: %g %g %g\n", rows[i].name, a, b, c,
				rows[i].a, rows[i].b, rows[i].c);
		CU_ASSERT(fabs(a - rows[i].a) <= 0.5);
		CU_ASSERT(fabs(b - rows[i].b) <= 0.5);
		CU_ASSERT(fabs(c - rows[i].c) <= 0.5);
	}
	/* The worked arithmetic: revenue $32.8 per GPU-hour (A, 120/120); $1.13
	 * for Doubao on B; Doubao on B at U = 100% gives "GM = +12%". */
	pricewar_t pw;
	gm_at(&A, 2048, 2048, 0.5, before, "ernie-4.0-8k", &pw);
	CU_ASSERT(llround(pw.before.revenue_micros_per_hour / 8 / 1e5) == 328);
	CU_ASSERT_EQUAL(pw.cost_micros_per_hour, 16000000);
	CU_ASSERT(llround(pw.cost_per_1m_tokens_micros / 1e4) == 102);	/* "$1.02 per 1M tokens blended" */
	gm_at(&B, 2048, 128, 0.5, after, "doubao-pro-32k", &pw);
	CU_ASSERT(llround(pw.before.revenue_micros_per_hour / 8 / 1e4) == 113);
	CU_ASSERT(fabs(gm_at(&B, 2048, 128, 1.0, after, "doubao-pro-32k", NULL) - 12) <= 0.5);
	/* DeepSeek at Doubao prices: 114,222 USD per day against 87,072. */
	gm_at(&C, 608, 168, 1.0, after, "doubao-pro-32k", &pw);
	CU_ASSERT(llround(pw.before.revenue_micros_per_hour * 226.75 * 24 / 1e9) == 114);
	CU_ASSERT(llround(pw.cost_micros_per_hour * 226.75 * 24 / 1e6) == 87072);
	/* Free ERNIE Speed: no revenue, margin -infinity. */
	gm_at(&A, 2048, 2048, 0.5, after, "ernie-speed-8k", &pw);
	CU_ASSERT(!pw.before.defined);
	teardown();
}

static void test_cut_logic(void)
{
	setup();
	/* A price that earns a 60% margin: 40 USD of revenue per 16 USD node
	 * hour. Its zero-margin cut is 60% (price x 0.4 = cost) and a 90% cut
	 * makes it negative. */
	pricetab_t *t = pricetab_new();
	char err[256];
	CU_ASSERT_EQUAL_FATAL(pricetab_load_string(t, "p.conf",
		"[price.sixty]\ncurrency = USD\ninput_per_1m = 0\noutput_per_1m = 40\nsource = s\ndate = d\n"
		"[price.cut]\ncurrency = USD\ninput_per_1m = 0\noutput_per_1m = 16\nsource = s\ndate = d\n",
		err, sizeof(err)), 0);
	thru_t one_m = { .source = THRU_GIVEN, .out_tok_s = 1e6 / 3600 };	/* 1M output tokens per hour */
	pricewar_in_t in = { .hw = &rental, .thru = &one_m, .in_per_call = 0, .out_per_call = 1, .utilization = 1,
			     .prices = t, .before = pricetab_find(t, "sixty"), .after = pricetab_find(t, "cut") };
	pricewar_t pw;
	CU_ASSERT_EQUAL_FATAL(pricewar_check(&in, &pw, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(pw.before.revenue_micros_per_hour, 40000000);
	CU_ASSERT_EQUAL(pw.before.gm_ppm, 600000);
	CU_ASSERT_DOUBLE_EQUAL(pw.zero_margin_cut, 0.6, 1e-9);
	CU_ASSERT_EQUAL(llround(pw.before.revenue_micros_per_hour * (1 - pw.zero_margin_cut)), pw.cost_micros_per_hour);
	CU_ASSERT(pw.negative_at_90);
	CU_ASSERT_EQUAL(pw.at_90.gm_ppm, -3000000);	/* (4 - 16) / 4 */
	CU_ASSERT_EQUAL(pw.after.gm_ppm, 0);		/* 16 USD: exactly at cost */
	CU_ASSERT_DOUBLE_EQUAL(pw.revenue_cut, 0.6, 1e-9);

	/* The text names every input and its source. */
	char *text = pricewar_format(&in, &pw);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	CU_ASSERT_PTR_NOT_NULL(strstr(text, rental.f[HWPROF_FIXED_PER_HOUR].source));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "throughput (given)"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "utilization: 100.0%"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "a cut of 60.0% of the before price takes the margin to zero"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "a 90% cut makes the margin NEGATIVE"));
	free(text);
	pricetab_destroy(&t);

	/* Flagship before (ERNIE 4.0 120/120) and Doubao after, on cost basis A:
	 * the cut goes past zero, while a 90% cut alone would not (GM 94%). */
	thru_t A = { .source = THRU_GIVEN, .out_tok_s = 8 * 547.0 };
	pricetab_t *both = pricetab_new();
	CU_ASSERT_EQUAL_FATAL(pricetab_load(both, DEPLOY("prices/fx.conf"), err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(pricetab_load(both, DEPLOY("prices/cn-2024-05-after.conf"), err, sizeof(err)), 0);
	in = (pricewar_in_t){ .hw = &rental, .thru = &A, .in_per_call = 2048, .out_per_call = 2048,
			      .mix_source = "economics.md 6 basis A", .utilization = 0.5,
			      .utilization_source = "economics.md 6 (assumed)", .prices = both,
			      .before = pricetab_find(before, "ernie-4.0-8k"), .after = pricetab_find(both, "doubao-pro-32k"),
			      .currency = "USD" };
	CU_ASSERT_EQUAL_FATAL(pricewar_check(&in, &pw, err, sizeof(err)), 0);
	CU_ASSERT(pw.after_negative);
	CU_ASSERT(!pw.negative_at_90);
	CU_ASSERT(fabs(pw.zero_margin_cut - 0.939) < 0.001);
	text = pricewar_format(&in, &pw);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "CNY_per_USD = 7.2"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, pricetab_find(both, "doubao-pro-32k")->out_source));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "economics.md 6 basis A"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "margin after it is NEGATIVE"));
	free(text);
	in.utilization = 0;
	CU_ASSERT_EQUAL(pricewar_check(&in, &pw, err, sizeof(err)), -EINVAL);
	pricetab_destroy(&both);
	teardown();
}

/* DeepSeek's published margin (economics.md 2e) with the cache-hit rate:
 * R1 prices, 342B of 608B input tokens at the cache-hit price, 168B out,
 * 226.75 nodes for a day: gross margin 84.5%, "cost profit margin 545%".
 * Without the rate, the list input price overstates revenue; a price with
 * no cached price is not changed by it. */
static void test_cache_hit(void)
{
	setup();
	pricetab_t *t = pricetab_new();
	char err[512] = "";
	CU_ASSERT_EQUAL_FATAL(pricetab_load(t, DEPLOY("prices/deepseek-2025.conf"), err, sizeof(err)), 0);
	const pricetab_entry_t *r1 = pricetab_find(t, "deepseek-r1");
	CU_ASSERT_PTR_NOT_NULL_FATAL(r1);
	thru_t day = { .source = THRU_GIVEN, .out_tok_s = 168e9 / (226.75 * 86400) };
	pricewar_in_t in = { .hw = &rental, .thru = &day, .in_per_call = 608, .out_per_call = 168, .utilization = 1,
			     .prices = t, .before = r1, .after = r1, .currency = "USD", .has_cache_hit = true,
			     .cache_hit = METER_Q(342, 608), .cache_hit_source = "DeepSeek day 6" };
	pricewar_t pw;
	CU_ASSERT_EQUAL_FATAL(pricewar_check(&in, &pw, err, sizeof(err)), 0);
	CU_ASSERT(pw.before_cached && pw.after_cached);
	CU_ASSERT(fabs(pw.before.gm_ppm / 1e4 - 84.5) <= 0.05);
	CU_ASSERT(fabs(pw.before.markup_ppm / 1e4 - 545) <= 1);
	/* 562,027 USD a day in the note (562,100 from the rounded counts). */
	CU_ASSERT(llround(pw.before.revenue_micros_per_hour * 226.75 * 24 / 1e9) == 562);
	char *text = pricewar_format(&in, &pw);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "cache-hit rate: 56.2"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "cached input: 0.14 USD per 1M tokens (applied"));
	free(text);

	in.has_cache_hit = false;
	CU_ASSERT_EQUAL_FATAL(pricewar_check(&in, &pw, err, sizeof(err)), 0);
	/* List price on every input token: 702,320 USD a day, GM 87.6%. */
	CU_ASSERT(!pw.before_cached && fabs(pw.before.gm_ppm / 1e4 - 87.6) <= 0.05);

	/* Qwen-Long has no cached price: the rate changes nothing. */
	const pricetab_entry_t *ql = pricetab_find(after, "qwen-long");
	pricewar_in_t q = { .hw = &rental, .thru = &day, .in_per_call = 608, .out_per_call = 168, .utilization = 1,
			    .prices = after, .before = ql, .after = ql, .currency = "USD" };
	pricewar_t p0, p1;
	CU_ASSERT_EQUAL_FATAL(pricewar_check(&q, &p0, err, sizeof(err)), 0);
	q.has_cache_hit = true;
	q.cache_hit = METER_Q(1, 2);
	CU_ASSERT_EQUAL_FATAL(pricewar_check(&q, &p1, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(p0.before.gm_ppm, p1.before.gm_ppm);
	CU_ASSERT(!p1.before_cached);
	q.cache_hit = METER_Q(3, 2);
	CU_ASSERT_EQUAL(pricewar_check(&q, &p1, err, sizeof(err)), -EINVAL);
	pricetab_destroy(&t);
	teardown();
}

const cu_test_t pricewar_tests[] = {
	{ "cache_hit", test_cache_hit },
	{ "economics_table", test_economics_table },
	{ "cut_logic", test_cut_logic },
	{ NULL, NULL },
};
