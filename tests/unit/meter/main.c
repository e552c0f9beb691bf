/* CUnit suites of the meter area. Each test_<module>.c defines
 * <module>_tests[]; the references are weak while modules land. */
#include "cu_main.h"

#define SUITE(x) extern const cu_test_t x##_tests[] __attribute__((weak));
SUITE(meter) SUITE(meter_files) SUITE(hwprof) SUITE(pricetab) SUITE(litellm) SUITE(cost) SUITE(ledger)
SUITE(report) SUITE(chart) SUITE(thru) SUITE(pricewar) SUITE(pricewar_table) SUITE(shape) SUITE(plan)
#undef SUITE

int main(int argc, char **argv)
{
	cu_suite_t all[] = {
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
	};
	cu_suite_t suites[sizeof(all) / sizeof(all[0]) + 1];
	int n = 0;
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (all[i].tests != NULL)
			suites[n++] = all[i];
	suites[n] = (cu_suite_t){ NULL, NULL, NULL, NULL };
	return cu_main(argc, argv, suites);
}
