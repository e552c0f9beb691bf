/* meter: exact decimals, the largest-remainder allocation, rounding once,
 * margins and break-even days. */
#include "tests.h"
#include "meter.h"
#include "lib/mg_int128.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void test_parse(void)
{
	meter_q_t q;
	CU_ASSERT_EQUAL(meter_q_parse("0.075", &q), 0);
	CU_ASSERT(q.num == 3 && q.den == 40);
	CU_ASSERT_EQUAL(meter_q_parse("2.5e-06", &q), 0);	/* LiteLLM's gpt-4o input price */
	CU_ASSERT(q.num == 1 && q.den == 400000);
	CU_ASSERT_EQUAL(meter_q_parse("-3", &q), 0);
	CU_ASSERT(q.num == -3 && q.den == 1);
	CU_ASSERT_EQUAL(meter_q_parse(" 535.2e12 ", &q), 0);
	CU_ASSERT(q.num == 535200000000000LL && q.den == 1);
	CU_ASSERT_EQUAL(meter_q_parse("2700000", &q), 0);
	CU_ASSERT(q.num == 2700000 && q.den == 1);
	CU_ASSERT_EQUAL(meter_q_parse("1,5", &q), -EINVAL);
	CU_ASSERT_EQUAL(meter_q_parse("", &q), -EINVAL);
	CU_ASSERT_EQUAL(meter_q_parse("1e", &q), -EINVAL);
	CU_ASSERT_EQUAL(meter_q_parse("12 yuan", &q), -EINVAL);
	CU_ASSERT_EQUAL(meter_q_parse(".", &q), -EINVAL);
	CU_ASSERT_EQUAL(meter_q_parse("99999999999999999999", &q), -ERANGE);
	CU_ASSERT_EQUAL(meter_q_parse("1e-30", &q), -ERANGE);
}

static void test_arith_format(void)
{
	meter_q_t a = METER_Q(1, 3), b = METER_Q(1, 6), s;
	char buf[64];
	CU_ASSERT_EQUAL(meter_q_add(a, b, &s), 0);
	CU_ASSERT(s.num == 1 && s.den == 2);
	CU_ASSERT_STRING_EQUAL(meter_q_format(s, buf, sizeof(buf)), "0.5");
	CU_ASSERT_STRING_EQUAL(meter_q_format(METER_Q(3, 40), buf, sizeof(buf)), "0.075");
	CU_ASSERT_STRING_EQUAL(meter_q_format(METER_Q(2700000, 1), buf, sizeof(buf)), "2700000");
	CU_ASSERT_STRING_EQUAL(meter_q_format(METER_Q(-1, 3), buf, sizeof(buf)), "-0.333333333333...");
	CU_ASSERT_EQUAL(meter_q_div(a, METER_Q(0, 1), &s), -EDOM);
	CU_ASSERT_EQUAL(meter_q_mul(METER_Q(INT64_MAX, 1), METER_Q(3, 1), &s), -ERANGE);
	CU_ASSERT_EQUAL(meter_q_cmp(METER_Q(1, 3), METER_Q(2, 6)), 0);
	CU_ASSERT_EQUAL(meter_q_cmp(METER_Q(1, 3), METER_Q(1, 2)), -1);
	int64_t v;
	CU_ASSERT_EQUAL(meter_q_round(METER_Q(5, 2), &v), 0);
	CU_ASSERT_EQUAL(v, 3);	/* half away from zero */
	CU_ASSERT_EQUAL(meter_q_round(METER_Q(-5, 2), &v), 0);
	CU_ASSERT_EQUAL(v, -3);
	CU_ASSERT_EQUAL(meter_q_round(METER_Q(7, 3), &v), 0);
	CU_ASSERT_EQUAL(v, 2);
	CU_ASSERT_STRING_EQUAL(meter_format_micros(-12000345, buf, sizeof(buf)), "-12.000345");
	CU_ASSERT_STRING_EQUAL(meter_format_micros(5, buf, sizeof(buf)), "0.000005");
	CU_ASSERT_STRING_EQUAL(meter_format_ppm_pct(845061, buf, sizeof(buf)), "84.51%");
	CU_ASSERT_STRING_EQUAL(meter_format_ppm_pct(-4223313, buf, sizeof(buf)), "-422.33%");
	CU_ASSERT(meter_currency_valid("CNY"));
	CU_ASSERT(!meter_currency_valid("cny"));
	CU_ASSERT(!meter_currency_valid("YUAN"));
}

static int64_t sum(const int64_t *v, size_t n)
{
	int64_t s = 0;
	for (size_t i = 0; i < n; i++)
		s += v[i];
	return s;
}

static void test_allocate_small(void)
{
	int64_t p[4];
	uint64_t eq[3] = { 1, 1, 1 };
	CU_ASSERT_EQUAL(meter_allocate(10, eq, 3, p), 0);
	CU_ASSERT(p[0] == 4 && p[1] == 3 && p[2] == 3);	/* tie: the lower index gets the extra unit */
	uint64_t w[4] = { 1, 2, 3, 4 };
	CU_ASSERT_EQUAL(meter_allocate(100, w, 4, p), 0);
	CU_ASSERT(p[0] == 10 && p[1] == 20 && p[2] == 30 && p[3] == 40);
	/* 7 over 1:2:4 = 1, 2, 4 exactly; 8 over it = 1.14, 2.29, 4.57 ->
	 * floors 1, 2, 4 and the one left goes to the largest remainder (4.57). */
	uint64_t w3[3] = { 1, 2, 4 };
	CU_ASSERT_EQUAL(meter_allocate(8, w3, 3, p), 0);
	CU_ASSERT(p[0] == 1 && p[1] == 2 && p[2] == 5);
	CU_ASSERT_EQUAL(meter_allocate(-10, eq, 3, p), 0);
	CU_ASSERT(p[0] == -4 && p[1] == -3 && p[2] == -3);
	CU_ASSERT_EQUAL(meter_allocate(0, NULL, 0, p), 0);
	CU_ASSERT_EQUAL(meter_allocate(5, NULL, 0, p), -EINVAL);
	CU_ASSERT_EQUAL(meter_allocate(INT64_MIN, eq, 3, p), -ERANGE);
}

static void test_allocate_zero_weights(void)
{
	int64_t p[3];
	uint64_t z[3] = { 0, 0, 0 };
	CU_ASSERT_EQUAL(meter_allocate(10, z, 3, p), 0);
	CU_ASSERT(p[0] == 4 && p[1] == 3 && p[2] == 3);	/* all zero: even split */
	uint64_t some[3] = { 0, 5, 0 };
	CU_ASSERT_EQUAL(meter_allocate(7, some, 3, p), 0);
	CU_ASSERT(p[0] == 0 && p[1] == 7 && p[2] == 0);	/* a zero weight never gets anything */
}

static void test_allocate_huge(void)
{
	enum { N = 9 };
	uint64_t w[N];
	int64_t p[N];
	for (int i = 0; i < N; i++)
		w[i] = UINT64_MAX - (uint64_t)i;	/* the weight sum needs 68 bits */
	CU_ASSERT_EQUAL(meter_allocate(INT64_MAX, w, N, p), 0);
	CU_ASSERT_EQUAL(sum(p, N), INT64_MAX);
	for (int i = 1; i < N; i++)
		CU_ASSERT(p[i] <= p[i - 1]);	/* never more for a smaller weight */
	uint64_t w2[2] = { UINT64_MAX, 1 };
	CU_ASSERT_EQUAL(meter_allocate(INT64_MAX, w2, 2, p), 0);
	CU_ASSERT_EQUAL(p[0] + p[1], INT64_MAX);
	CU_ASSERT(p[1] == 0 || p[1] == 1);
}

static void test_allocate_random(void)
{
	unsigned long long s = 12345;
	int64_t *p = malloc(300 * sizeof(*p));
	uint64_t *w = malloc(300 * sizeof(*w));
	for (int round = 0; round < 500; round++) {
		size_t n = 1 + test_rand(&s) % 300;
		int64_t total = (int64_t)(test_rand(&s) >> (test_rand(&s) % 60));
		int shift = (int)(test_rand(&s) % 64);
		mg_u128 W = 0;
		for (size_t i = 0; i < n; i++) {
			w[i] = test_rand(&s) % 4 == 0 ? 0 : (uint64_t)(test_rand(&s) << 11 ^ test_rand(&s)) >> shift;
			W += w[i];
		}
		CU_ASSERT_EQUAL_FATAL(meter_allocate(total, w, n, p), 0);
		CU_ASSERT_EQUAL(sum(p, n), total);
		if (W == 0)
			continue;
		for (size_t i = 0; i < n; i++) {
			/* Each part is the floor of its exact share or one more. */
			mg_u128 fl = (mg_u128)(uint64_t)total * w[i] / W;
			CU_ASSERT((mg_u128)p[i] == fl || (mg_u128)p[i] == fl + 1);
			if (w[i] == 0)
				CU_ASSERT_EQUAL(p[i], 0);
		}
	}
	free(p);
	free(w);
}

static void test_cost_of_ns(void)
{
	int64_t c;
	CU_ASSERT_EQUAL(meter_cost_of_ns(67493836, (uint64_t)METER_NS_PER_HOUR, &c), 0);
	CU_ASSERT_EQUAL(c, 67493836);
	/* 1 micro per hour for half an hour is 0.5: rounds up; a ns less rounds down. */
	CU_ASSERT_EQUAL(meter_cost_of_ns(1, (uint64_t)METER_NS_PER_HOUR / 2, &c), 0);
	CU_ASSERT_EQUAL(c, 1);
	CU_ASSERT_EQUAL(meter_cost_of_ns(1, (uint64_t)METER_NS_PER_HOUR / 2 - 1, &c), 0);
	CU_ASSERT_EQUAL(c, 0);
	/* busy and idle in one rounding: 0.5 + 0.5 = 1, not 1 + 1. */
	CU_ASSERT_EQUAL(meter_cost_of_period(1, (uint64_t)METER_NS_PER_HOUR / 2, 1, (uint64_t)METER_NS_PER_HOUR / 2, &c), 0);
	CU_ASSERT_EQUAL(c, 1);
	CU_ASSERT_EQUAL(meter_cost_of_ns(INT64_MAX, UINT64_MAX, &c), -ERANGE);
	CU_ASSERT_EQUAL(meter_cost_of_ns(-1, 1, &c), -EINVAL);
	CU_ASSERT_EQUAL(meter_scale(1000000, METER_Q(1, 72), &c), 0);	/* 1 CNY -> USD at 7.2: 138888.9 */
	CU_ASSERT_EQUAL(c, 13889);
}

static void test_margins(void)
{
	int64_t ppm;
	/* economics.md 5.5: m = 545% <=> GM = 84.5%; GM = 60% <=> m = 150%. */
	CU_ASSERT_EQUAL(meter_gross_margin_ppm(250, 100, &ppm), 0);
	CU_ASSERT_EQUAL(ppm, 600000);
	CU_ASSERT_EQUAL(meter_markup_ppm(250, 100, &ppm), 0);
	CU_ASSERT_EQUAL(ppm, 1500000);
	/* DeepSeek day 6 (economics.md 2e): revenue 562,027 USD/day, cost 87,072. */
	CU_ASSERT_EQUAL(meter_markup_ppm(562027, 87072, &ppm), 0);
	CU_ASSERT(ppm / 10000 == 545);
	CU_ASSERT_EQUAL(meter_gross_margin_ppm(562027, 87072, &ppm), 0);
	CU_ASSERT(ppm / 1000 == 845);
	CU_ASSERT_EQUAL(meter_gross_margin_ppm(0, 1, &ppm), -EDOM);	/* free: -infinity */
	CU_ASSERT_EQUAL(meter_markup_ppm(1, 0, &ppm), -EDOM);
	CU_ASSERT_EQUAL(meter_gross_margin_ppm(100, 150, &ppm), 0);
	CU_ASSERT_EQUAL(ppm, -500000);
}

static void test_breakeven_days(void)
{
	/* economics.md 5.6: a 500,000-yuan deployment recovered by 10,000,
	 * 20,000 or 50,000 yuan per day takes 50, 25 or 10 days. */
	meter_q_t d;
	const int64_t one_off = 500000 * METER_MICROS;
	CU_ASSERT_EQUAL(meter_breakeven_days(one_off, 10000 * METER_MICROS, &d), 0);
	CU_ASSERT(d.num == 50 && d.den == 1);
	CU_ASSERT_EQUAL(meter_breakeven_days(one_off, 20000 * METER_MICROS, &d), 0);
	CU_ASSERT(d.num == 25 && d.den == 1);
	CU_ASSERT_EQUAL(meter_breakeven_days(one_off, 50000 * METER_MICROS, &d), 0);
	CU_ASSERT(d.num == 10 && d.den == 1);
	CU_ASSERT_EQUAL(meter_breakeven_days(one_off, 0, &d), -EDOM);	/* no saving: never */
	CU_ASSERT_EQUAL(meter_breakeven_days(one_off, -5, &d), -EDOM);
}

const cu_test_t meter_tests[] = {
	{ "parse", test_parse },
	{ "arith_format", test_arith_format },
	{ "allocate_small", test_allocate_small },
	{ "allocate_zero_weights", test_allocate_zero_weights },
	{ "allocate_huge", test_allocate_huge },
	{ "allocate_random", test_allocate_random },
	{ "cost_of_ns", test_cost_of_ns },
	{ "margins", test_margins },
	{ "breakeven_days", test_breakeven_days },
	{ NULL, NULL },
};
