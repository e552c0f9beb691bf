/* CUnit suites of the meter area. Each test_<module>.c defines
 * <module>_tests[]; a suite missing from the build fails the link. */
#include "cu_main.h"

#define SUITE(x) extern const cu_test_t x##_tests[];
SUITE(meter) SUITE(meter_files) SUITE(hwprof) SUITE(pricetab) SUITE(litellm) SUITE(cost) SUITE(ledger)
SUITE(report) SUITE(chart) SUITE(thru) SUITE(pricewar) SUITE(pricewar_table) SUITE(shape) SUITE(plan)
#undef SUITE

static const cu_suite_t suites[] = {
	{ "meter", meter_tests, NULL, NULL },
	{ "meter_files", meter_files_tests, NULL, NULL },
	{ "hwprof", hwprof_tests, NULL, NULL },
	{ "pricetab", pricetab_tests, NULL, NULL },
	{ "litellm", litellm_tests, NULL, NULL },
	{ "cost", cost_tests, NULL, NULL },
	{ "ledger", ledger_tests, NULL, NULL },
	{ "report", report_tests, NULL, NULL },
	{ "chart", chart_tests, NULL, NULL },
	{ "thru", thru_tests, NULL, NULL },
	{ "pricewar", pricewar_tests, NULL, NULL },
	{ "pricewar_table", pricewar_table_tests, NULL, NULL },
	{ "shape", shape_tests, NULL, NULL },
	{ "plan", plan_tests, NULL, NULL },
	{ NULL, NULL, NULL, NULL },
};

int main(int argc, char **argv)
{
	return cu_main(argc, argv, suites);
}
