/* Clock: durations as operators write them. */
#include "tests.h"
#include "mg_clock.h"

#include <errno.h>
#include <string.h>

static void test_durations(void)
{
	int64_t ns = 0;
	CU_ASSERT_EQUAL(mg_clock_parse_duration("250ms", MG_NS_PER_S, &ns), 0);
	CU_ASSERT_EQUAL(ns, 250 * MG_NS_PER_MS);
	CU_ASSERT_EQUAL(mg_clock_parse_duration("10min", MG_NS_PER_S, &ns), 0);
	CU_ASSERT_EQUAL(ns, 600 * MG_NS_PER_S);
	CU_ASSERT_EQUAL(mg_clock_parse_duration("1.5s", MG_NS_PER_S, &ns), 0);
	CU_ASSERT_EQUAL(ns, 1500 * MG_NS_PER_MS);
	CU_ASSERT_EQUAL(mg_clock_parse_duration("3", MG_NS_PER_MS, &ns), 0);
	CU_ASSERT_EQUAL(ns, 3 * MG_NS_PER_MS);
	CU_ASSERT_EQUAL(mg_clock_parse_duration("2h", MG_NS_PER_S, &ns), 0);
	CU_ASSERT_EQUAL(ns, 7200 * MG_NS_PER_S);
	CU_ASSERT_EQUAL(mg_clock_parse_duration("-1s", MG_NS_PER_S, &ns), -EINVAL);
	CU_ASSERT_EQUAL(mg_clock_parse_duration("5 parsecs", MG_NS_PER_S, &ns), -EINVAL);
	CU_ASSERT_EQUAL(mg_clock_parse_duration("", MG_NS_PER_S, &ns), -EINVAL);
	CU_ASSERT_EQUAL(mg_clock_parse_duration("1e30d", MG_NS_PER_S, &ns), -ERANGE);
}

static void test_iso(void)
{
	char buf[40];
	mg_clock_format_iso8601(buf, sizeof(buf), 0);
	CU_ASSERT_STRING_EQUAL(buf, "1970-01-01T00:00:00.000Z");
	int64_t a = mg_clock_now_ns(), b = mg_clock_now_ns();
	CU_ASSERT(b >= a);
}

const cu_test_t clock_tests[] = {
	{ "durations", test_durations },
	{ "timestamps", test_iso },
	{ NULL, NULL },
};
