/* hwprof: profiles load with a source and date for every number; the node
 * rate matches economics.md 5.1 computed by hand; errors name the key. */
#include "tests.h"
#include "hwprof.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* economics.md 5.1: 8xH100 at 2.7M yuan over 5 years, 7.5 kW x PUE 1.3 x
 * 0.6 yuan/kWh. By hand: 2,700,000 / (5 x 8760) = 61.643835616... yuan/h,
 * 7.5 x 1.3 x 0.6 = 5.85 yuan/h, total 67.493835616... = 67,493,836 micros/h
 * ("total ~67.5 yuan/h = 8.4 yuan per GPU-hour"). */
#define H100_TEXT(extra) \
	"[hardware]\nname = h100-example\ncurrency = CNY\n" \
	"purchase_price = 2700000\npurchase_price_source = economics.md 5.1\npurchase_price_date = 2024\n" \
	"depreciation_years = 5\ndepreciation_years_source = economics.md 5.1\ndepreciation_years_date = 2024\n" \
	"power_watts_load = 7500\npower_watts_load_source = economics.md 5.1\npower_watts_load_date = 2024\n" \
	"pue = 1.3\npue_source = economics.md 5.1\npue_date = 2024\n" \
	"electricity_per_kwh = 0.6\nelectricity_per_kwh_source = economics.md 5.1\nelectricity_per_kwh_date = 2024\n" extra

static void test_rate_economics_example(void)
{
	hwprof_t hw;
	char err[512] = "";
	int r = hwprof_load_string("h100.conf", H100_TEXT(""), &hw, err, sizeof(err));
	CU_ASSERT_EQUAL_FATAL(r, 0);
	if (r < 0)
		fprintf(stderr, "%s\n", err);
	CU_ASSERT_EQUAL(hw.rate_busy_micros_per_hour, 67493836);
	CU_ASSERT_EQUAL(hw.rate_idle_micros_per_hour, 67493836);	/* idle power defaults to load */
	/* The exact terms: 4500/73 yuan/h depreciation, 117/20 power. */
	CU_ASSERT(hw.depreciation_per_hour.num == 4500 && hw.depreciation_per_hour.den == 73);
	CU_ASSERT(hw.power_busy_per_hour.num == 117 && hw.power_busy_per_hour.den == 20);
	/* "8.4 yuan per GPU-hour" */
	CU_ASSERT(hw.rate_busy_micros_per_hour / 8 / 100000 == 84);
	CU_ASSERT_STRING_EQUAL(hw.f[HWPROF_HOURS_PER_YEAR].source, "default: 365 x 24 h");
	CU_ASSERT(meter_q_cmp(hw.f[HWPROF_HOURS_PER_YEAR].value, METER_Q(8760, 1)) == 0);

	/* Idle power priced separately: 3 kW x 1.3 x 0.6 = 2.34 yuan/h. */
	r = hwprof_load_string("h100.conf", H100_TEXT("power_watts_idle = 3000\npower_watts_idle_source = x\n"
						      "power_watts_idle_date = 2024\n"), &hw, err, sizeof(err));
	CU_ASSERT_EQUAL_FATAL(r, 0);
	CU_ASSERT_EQUAL(hw.rate_busy_micros_per_hour, 67493836);
	CU_ASSERT_EQUAL(hw.rate_idle_micros_per_hour, 63983836);
}

static void test_shipped_profiles(void)
{
	/* The rates of the shipped profiles, worked by hand from their numbers
	 * (economics.md): rate = K/(L*8760) + W/1000*PUE*e + fixed. */
	static const struct {
		const char *file, *currency;
		int64_t rate;
	} want[] = {
		{ "8xh100.conf", "CNY", 67493836 },	/* 61.643835.. + 5.85 */
		{ "cpu-2vcpu.conf", "CNY", 883200 },	/* 2 x 0.1764 + 24 x 0.0221 */
		{ "8xa100.conf", "USD", 3100389 },	/* 2.283105.. + 6.5 x 1.56 x 0.0806 = 0.817284 */
		{ "8xh20.conf", "CNY", 29893260 },	/* 27.397260.. + 3.2 x 1.3 x 0.6 = 2.496 */
		{ "8xascend910b.conf", "CNY", 23852208 },	/* 21.917808.. + 2.48 x 0.78 = 1.9344 */
		{ "8xh800-rental.conf", "USD", 16000000 },	/* 8 x 2 USD per GPU-hour */
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		char path[512], err[512] = "";
		hwprof_t hw;
		snprintf(path, sizeof(path), "%s", DEPLOY("hardware/"));
		strncat(path, want[i].file, sizeof(path) - strlen(path) - 1);
		int r = hwprof_load(path, &hw, err, sizeof(err));
		if (r < 0)
			fprintf(stderr, "%s: %s\n", path, err);
		CU_ASSERT_EQUAL_FATAL(r, 0);
		CU_ASSERT_STRING_EQUAL(hw.currency, want[i].currency);
		CU_ASSERT_EQUAL(hw.rate_busy_micros_per_hour, want[i].rate);
		/* Every number given has a source and a date. */
		for (int f = 0; f < HWPROF_N_FIELDS; f++)
			if (hw.f[f].given) {
				CU_ASSERT(strlen(hw.f[f].source) > 3);
				CU_ASSERT(strlen(hw.f[f].date) >= 4);
			}
		char *d = hwprof_describe(&hw);
		CU_ASSERT_PTR_NOT_NULL_FATAL(d);
		CU_ASSERT_PTR_NOT_NULL(strstr(d, "rate_busy"));
		CU_ASSERT_PTR_NOT_NULL(strstr(d, hw.f[HWPROF_PURCHASE_PRICE].source));
		free(d);
	}
	hwprof_t hw;
	char err[512];
	CU_ASSERT_EQUAL(hwprof_find(DEPLOY("hardware"), "8xh100", &hw, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(hw.accelerators, 8);
	CU_ASSERT(hw.f[HWPROF_PEAK_FLOPS_FP16].given);
	CU_ASSERT_EQUAL(hwprof_find(DEPLOY("hardware"), "../prices/fx", &hw, err, sizeof(err)), -EINVAL);
	CU_ASSERT_EQUAL(hwprof_find(DEPLOY("hardware"), "no-such-node", &hw, err, sizeof(err)), -ENOENT);
}

static void test_round_once(void)
{
	/* Two terms of 0.4 micros each: rounded separately they would give 0;
	 * the exact sum 0.8 rounds once, to 1. */
	const char *text =
		"[hardware]\nname = tiny\ncurrency = USD\npricing = rental\n"
		"purchase_price = 0\npurchase_price_source = s\npurchase_price_date = d\n"
		"power_watts_load = 1\npower_watts_load_source = s\npower_watts_load_date = d\n"
		"pue = 1\npue_source = s\npue_date = d\n"
		"electricity_per_kwh = 0.0004\nelectricity_per_kwh_source = s\nelectricity_per_kwh_date = d\n"
		"fixed_per_hour = 0.0000004\nfixed_per_hour_source = s\nfixed_per_hour_date = d\n";
	hwprof_t hw;
	char err[256];
	CU_ASSERT_EQUAL_FATAL(hwprof_load_string("tiny.conf", text, &hw, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(hw.rate_busy_micros_per_hour, 1);
}

static void expect_error(const char *text, const char *needle)
{
	hwprof_t hw;
	char err[512] = "";
	int r = hwprof_load_string("bad.conf", text, &hw, err, sizeof(err));
	CU_ASSERT_EQUAL(r, -EINVAL);
	if (strstr(err, needle) == NULL)
		fprintf(stderr, "\nexpected \"%s\" in: %s\n", needle, err);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, needle));
	if (strstr(err, "bad.conf") == NULL)
		fprintf(stderr, "\nno file name in: %s\n", err);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "bad.conf"));
}

static void test_errors(void)
{
	/* A number without its source. */
	expect_error("[hardware]\nname = x\ncurrency = CNY\npurchase_price = 1\npurchase_price_date = 2024\n"
		     "power_watts_load = 0\npower_watts_load_source = s\npower_watts_load_date = d\n",
		     "purchase_price_source");
	/* A misspelt key. */
	expect_error(H100_TEXT("pue_sourse = typo\n"), "pue_sourse");
	/* Not a number, negative, impossible PUE. */
	expect_error(H100_TEXT("fixed_per_hour = 1,5\nfixed_per_hour_source = s\nfixed_per_hour_date = d\n"),
		     "fixed_per_hour");
	expect_error(H100_TEXT("salvage_value = -5\nsalvage_value_source = s\nsalvage_value_date = d\n"),
		     "negative");
	const char *pue09 =
		"[hardware]\nname = x\ncurrency = CNY\npurchase_price = 0\npurchase_price_source = s\n"
		"purchase_price_date = d\npower_watts_load = 100\npower_watts_load_source = s\npower_watts_load_date = d\n"
		"pue = 0.9\npue_source = s\npue_date = d\nelectricity_per_kwh = 1\nelectricity_per_kwh_source = s\n"
		"electricity_per_kwh_date = d\n";
	expect_error(pue09, "pue");
	expect_error(H100_TEXT("power_watts_idle = 9000\npower_watts_idle_source = s\npower_watts_idle_date = d\n"),
		     "power_watts_idle");
	/* Missing currency, bad currency, missing depreciation. */
	expect_error("[hardware]\nname = x\npurchase_price = 0\npurchase_price_source = s\npurchase_price_date = d\n",
		     "currency");
	expect_error("[hardware]\nname = x\ncurrency = yuan\n", "ISO 4217");
	expect_error("[hardware]\nname = x\ncurrency = CNY\npurchase_price = 10\npurchase_price_source = s\n"
		     "purchase_price_date = d\npower_watts_load = 0\npower_watts_load_source = s\n"
		     "power_watts_load_date = d\n", "depreciation_years");
	/* Power without an electricity price. */
	expect_error("[hardware]\nname = x\ncurrency = CNY\npurchase_price = 0\npurchase_price_source = s\n"
		     "purchase_price_date = d\npower_watts_load = 100\npower_watts_load_source = s\n"
		     "power_watts_load_date = d\npue = 1.2\npue_source = s\npue_date = d\n", "electricity_per_kwh");
	/* A source for a number that is not there. */
	expect_error(H100_TEXT("fixed_per_hour_source = orphan\n"), "fixed_per_hour_source");
	hwprof_t hw;
	char err[256];
	CU_ASSERT_EQUAL(hwprof_load("/nonexistent/x.conf", &hw, err, sizeof(err)), -ENOENT);
}

const cu_test_t hwprof_tests[] = {
	{ "rate_economics_example", test_rate_economics_example },
	{ "shipped_profiles", test_shipped_profiles },
	{ "round_once", test_round_once },
	{ "errors", test_errors },
	{ NULL, NULL },
};
