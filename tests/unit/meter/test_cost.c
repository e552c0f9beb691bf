/* cost: a batch's per-call costs sum to the node cost of its busy time, and
 * loaded costs to the node cost of busy + idle time, exactly; API prices. */
#include "tests.h"
#include "cost.h"
#include "hwprof.h"
#include "lib/mg_int128.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_small_example(void)
{
	/* 3,600,000 micros/h = 1 micro per ms. Three 1 ms calls cost 1 each;
	 * 1.5 ms of idle adds 1.5 -> loaded total round(4.5) = 5, the 2 extra
	 * micros go to the first two calls (ties to the lower index). */
	cost_call_t c[3] = { { .busy_ns = 1000000 }, { .busy_ns = 1000000 }, { .busy_ns = 1000000 } };
	CU_ASSERT_EQUAL_FATAL(cost_book_rates(3600000, 3600000, 1500000, c, 3), 0);
	CU_ASSERT(c[0].cost_marginal_micros == 1 && c[1].cost_marginal_micros == 1 && c[2].cost_marginal_micros == 1);
	CU_ASSERT(c[0].cost_loaded_micros == 2 && c[1].cost_loaded_micros == 2 && c[2].cost_loaded_micros == 1);
	CU_ASSERT(c[0].idle_ns == 500000 && c[1].idle_ns == 500000 && c[2].idle_ns == 500000);
	CU_ASSERT_EQUAL(cost_book_rates(1, 1, 5, c, 0), -EINVAL);	/* idle with no call to carry it */
	CU_ASSERT_EQUAL(cost_book_rates(1, 1, 0, c, 0), 0);
}

static void test_batch_conservation(void)
{
	hwprof_t hw;
	char err[256];
	CU_ASSERT_EQUAL_FATAL(hwprof_load(DEPLOY("hardware/8xh100.conf"), &hw, err, sizeof(err)), 0);
	hw.rate_idle_micros_per_hour = hw.rate_busy_micros_per_hour / 3;	/* idle priced lower */
	unsigned long long s = 99;
	cost_call_t *c = malloc(1000 * sizeof(*c));
	for (int round = 0; round < 200; round++) {
		size_t n = 1 + test_rand(&s) % 1000;
		mg_u128 busy = 0;
		for (size_t i = 0; i < n; i++) {
			/* Engine parts: mostly ms-scale, some zero (a call that failed
			 * before its first step), some huge. */
			uint64_t b = test_rand(&s) % 7 == 0 ? 0 : test_rand(&s) % 3000000000ULL;
			if (test_rand(&s) % 97 == 0)
				b = test_rand(&s) % (1ULL << 50);
			c[i] = (cost_call_t){ .busy_ns = b };
			busy += b;
		}
		uint64_t idle = test_rand(&s) % 100000000000ULL;
		CU_ASSERT_EQUAL_FATAL(cost_book(&hw, idle, c, n), 0);
		int64_t m = 0, l = 0, want_m, want_l;
		uint64_t idle_sum = 0;
		for (size_t i = 0; i < n; i++) {
			m += c[i].cost_marginal_micros;
			l += c[i].cost_loaded_micros;
			idle_sum += c[i].idle_ns;
			CU_ASSERT(c[i].cost_loaded_micros >= c[i].cost_marginal_micros);
		}
		CU_ASSERT_EQUAL(meter_cost_of_ns(hw.rate_busy_micros_per_hour, (uint64_t)busy, &want_m), 0);
		CU_ASSERT_EQUAL(meter_cost_of_period(hw.rate_busy_micros_per_hour, (uint64_t)busy,
						     hw.rate_idle_micros_per_hour, idle, &want_l), 0);
		CU_ASSERT_EQUAL(m, want_m);	/* node cost x busy time, to the micro */
		CU_ASSERT_EQUAL(l, want_l);	/* node cost x (busy + idle) time */
		CU_ASSERT_EQUAL(idle_sum, idle);
	}
	free(c);
}

static void test_spread_period(void)
{
	/* A day on the CPU node (0.8832 CNY/h) spread over calls by busy time:
	 * the parts sum to 24 x 0.8832 = 21.1968 CNY exactly. */
	hwprof_t hw;
	char err[256];
	CU_ASSERT_EQUAL_FATAL(hwprof_load(DEPLOY("hardware/cpu-2vcpu.conf"), &hw, err, sizeof(err)), 0);
	uint64_t busy[5] = { 3600000000000ULL, 1, 0, 7200000000000ULL, 123456789 };
	int64_t loaded[5], s = 0;
	CU_ASSERT_EQUAL_FATAL(cost_spread_period(hw.rate_busy_micros_per_hour, hw.rate_idle_micros_per_hour,
						 (uint64_t)METER_NS_PER_DAY, busy, 5, loaded), 0);
	for (int i = 0; i < 5; i++)
		s += loaded[i];
	CU_ASSERT_EQUAL(s, 21196800);
	CU_ASSERT_EQUAL(loaded[2], 0);
	CU_ASSERT(loaded[3] == 2 * loaded[0] || loaded[3] == 2 * loaded[0] + 1 || loaded[3] == 2 * loaded[0] - 1);
	CU_ASSERT_EQUAL(cost_spread_period(1, 1, 10, busy, 5, loaded), -EINVAL);	/* busy > period */
}

static void test_api_equivalent(void)
{
	pricetab_t *t = pricetab_new();
	char err[512] = "";
	CU_ASSERT_EQUAL_FATAL(pricetab_load(t, DEPLOY("prices/fx.conf"), err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(pricetab_load(t, DEPLOY("prices/closed-2024.conf"), err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(pricetab_load(t, DEPLOY("prices/cn-2024-05-after.conf"), err, sizeof(err)), 0);
	const pricetab_entry_t *gpt = pricetab_find(t, "gpt-4o"), *ql = pricetab_find(t, "qwen-long");
	int64_t v;
	/* 1000 x 2.50 + 500 x 10.00 micro-USD. */
	CU_ASSERT_EQUAL(cost_api_equivalent(t, gpt, 1000, 500, false, "USD", &v, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(v, 7500);
	CU_ASSERT_EQUAL(cost_api_equivalent(t, gpt, 1000, 500, true, "USD", &v, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(v, 3750);	/* Batch API: half */
	CU_ASSERT_EQUAL(cost_api_equivalent(t, gpt, 1000, 500, false, "CNY", &v, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(v, 54000);	/* x 7.2 */
	/* Qwen-Long after the cut: 1000 x 0.5 + 500 x 2 = 1500 micro-CNY = 208.33 micro-USD. */
	CU_ASSERT_EQUAL(cost_api_equivalent(t, ql, 1000, 500, false, "USD", &v, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(v, 208);
	/* Half a micro rounds away from zero: one prompt token at 0.5 per 1M. */
	CU_ASSERT_EQUAL(cost_api_equivalent(t, ql, 1, 0, false, "CNY", &v, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(v, 1);
	CU_ASSERT_EQUAL(cost_api_equivalent(t, ql, 1, 0, false, "EUR", &v, err, sizeof(err)), -ENOENT);
	pricetab_destroy(&t);
}

/* A quote is the equivalent plus what priced it: the prices that applied
 * (batch tier or list), the exchange factor, exact, and their sources. */
static void test_api_quote(void)
{
	pricetab_t *t = pricetab_new();
	char err[512] = "";
	CU_ASSERT_EQUAL_FATAL(pricetab_load(t, DEPLOY("prices/fx.conf"), err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(pricetab_load(t, DEPLOY("prices/closed-2024.conf"), err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(pricetab_load(t, DEPLOY("prices/cn-2024-05-after.conf"), err, sizeof(err)), 0);
	const pricetab_entry_t *mini = pricetab_find(t, "gpt-4o-mini"), *ql = pricetab_find(t, "qwen-long");
	cost_api_quote_t q;
	cost_api_source_t src;
	int64_t v;
	/* Batch tier 0.075 / 0.30 USD, in CNY: (1000 x 0.075 + 500 x 0.3) x 7.2 = 1620. */
	CU_ASSERT_EQUAL_FATAL(cost_api_quote(t, mini, 1000, 500, true, "CNY", &q, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(q.micros, 1620);
	CU_ASSERT(q.batch_tier);
	CU_ASSERT_EQUAL(cost_api_equivalent(t, mini, 1000, 500, true, "CNY", &v, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(v, q.micros);
	cost_api_source(t, mini, &q, "CNY", true, &src);
	CU_ASSERT_STRING_EQUAL(src.input_per_1m, "0.075");
	CU_ASSERT_STRING_EQUAL(src.output_per_1m, "0.3");
	CU_ASSERT_STRING_EQUAL(src.fx_rate, "7.2");
	CU_ASSERT_PTR_NOT_NULL(strstr(src.fx_source, "CNY_per_USD = 7.2"));
	CU_ASSERT_PTR_NOT_NULL(strstr(src.price_source, "closed-2024.conf"));
	CU_ASSERT_PTR_NOT_NULL(strstr(src.price_source, mini->batch_source));
	CU_ASSERT_STRING_EQUAL(src.price_date, mini->batch_date);
	/* List price, same currency: factor 1, no conversion, the list date. */
	CU_ASSERT_EQUAL_FATAL(cost_api_quote(t, mini, 1000, 500, false, "USD", &q, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(q.micros, 450);
	CU_ASSERT_FALSE(q.batch_tier);
	cost_api_source(t, mini, &q, "USD", false, &src);
	CU_ASSERT_STRING_EQUAL(src.fx_rate, "1");
	CU_ASSERT_STRING_EQUAL(src.fx_source, "");
	CU_ASSERT_STRING_EQUAL(src.input_per_1m, "0.15");
	CU_ASSERT_STRING_EQUAL(src.price_date, "2024-07-25");
	/* No batch tier: a batch call pays list price and the source says why;
	 * CNY -> USD is 5/36, which has no finite decimal. */
	CU_ASSERT_EQUAL_FATAL(cost_api_quote(t, ql, 1000, 500, true, "USD", &q, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(q.micros, 208);
	CU_ASSERT_FALSE(q.batch_tier);
	cost_api_source(t, ql, &q, "USD", true, &src);
	CU_ASSERT_STRING_EQUAL(src.fx_rate, "5/36");
	CU_ASSERT_PTR_NOT_NULL(strstr(src.price_source, "batch call at list price"));
	CU_ASSERT_STRING_EQUAL(src.price_date, "2024-05-21");
	CU_ASSERT_EQUAL(cost_api_quote(t, ql, 1, 0, false, "EUR", &q, err, sizeof(err)), -ENOENT);
	pricetab_destroy(&t);
}

static void test_per_1m(void)
{
	/* economics.md 2e: a 16 USD node-hour at DeepSeek's 73.7k prefill tok/s
	 * is ~0.060 USD per 1M input tokens, at 14.8k decode tok/s ~0.30. */
	int64_t v;
	CU_ASSERT_EQUAL(cost_per_1m_tokens(16000000, 73700, 1.0, &v), 0);
	CU_ASSERT(v / 1000 == 60);
	CU_ASSERT_EQUAL(cost_per_1m_tokens(16000000, 14800, 1.0, &v), 0);
	CU_ASSERT(v / 10000 == 30);
	CU_ASSERT_EQUAL(cost_per_1m_tokens(16000000, 14800, 0.0, &v), -EDOM);
}

/* Closing a window, worked by hand at 1 micro per ms busy and 0.5 idle:
 * 3 ms of engine time (1 ms of it a failed output) in 10 ms attended, two
 * calls of 1 ms at 1 micro each: idle 7 ms, node cost round(3 + 3.5) = 7,
 * the 5 above the marginal costs split 3/2 (ties to the lower index). */
static void test_close_window(void)
{
	uint64_t busy[2] = { 1000000, 1000000 }, idle[2];
	int64_t marg[2] = { 1, 1 }, loaded[2], node;
	uint64_t idle_ns;
	CU_ASSERT_EQUAL_FATAL(cost_close_window(3600000, 1800000, 3000000, 10000000, busy, marg, 2, loaded, idle, &node,
						&idle_ns), 0);
	CU_ASSERT_EQUAL(idle_ns, 7000000);
	CU_ASSERT_EQUAL(node, 7);
	CU_ASSERT(loaded[0] == 4 && loaded[1] == 3);
	CU_ASSERT(idle[0] == 3500000 && idle[1] == 3500000);
	/* More engine than attended time (overlapping shards): idle 0, never
	 * negative. No calls: the node cost alone. */
	CU_ASSERT_EQUAL_FATAL(cost_close_window(3600000, 1800000, 3000000, 1000000, NULL, NULL, 0, NULL, NULL, &node,
						&idle_ns), 0);
	CU_ASSERT(idle_ns == 0 && node == 3);
	/* Calls of busy time 0 only: the idle cost is split evenly. */
	uint64_t zero[3] = { 0, 0, 0 }, id3[3];
	int64_t m3[3] = { 0, 0, 0 }, l3[3];
	CU_ASSERT_EQUAL_FATAL(cost_close_window(0, 3600000, 0, 5000000, zero, m3, 3, l3, id3, &node, &idle_ns), 0);
	CU_ASSERT(node == 5 && l3[0] == 2 && l3[1] == 2 && l3[2] == 1);
	/* Marginal costs priced some other way above the formula: the node
	 * cost is their sum, and no call goes below its marginal cost. */
	int64_t big[2] = { 10, 20 };
	CU_ASSERT_EQUAL_FATAL(cost_close_window(3600000, 0, 2000000, 2000000, busy, big, 2, loaded, idle, &node,
						&idle_ns), 0);
	CU_ASSERT(node == 30 && loaded[0] == 10 && loaded[1] == 20);
	int64_t neg[1] = { -1 };
	CU_ASSERT_EQUAL(cost_close_window(1, 1, 1, 1, busy, neg, 1, loaded, idle, &node, &idle_ns), -ERANGE);
	CU_ASSERT_EQUAL(cost_close_window(-1, 1, 1, 1, NULL, NULL, 0, NULL, NULL, &node, &idle_ns), -EINVAL);
}

const cu_test_t cost_tests[] = {
	{ "small_example", test_small_example },
	{ "batch_conservation", test_batch_conservation },
	{ "spread_period", test_spread_period },
	{ "close_window", test_close_window },
	{ "api_equivalent", test_api_equivalent },
	{ "api_quote", test_api_quote },
	{ "per_1m", test_per_1m },
	{ NULL, NULL },
};
