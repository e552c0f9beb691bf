/* chart: the SVG is a well-formed document (starts with <svg, tags
 * balanced, text escaped) with one point per measurement and one line per
 * closed-API price. */
#include "tests.h"
#include "chart.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A small XML checker: every tag closes in order, attributes are quoted,
 * text has no raw '<' or a '&' that does not start an entity. Returns the
 * number of elements, or -1. */
static int xml_check(const char *s, const char *count_tag, int *count)
{
	const char *stack[64];
	size_t lens[64];
	int depth = 0, elems = 0;
	*count = 0;
	while (*s) {
		if (*s == '&') {
			const char *semi = strchr(s, ';');
			if (semi == NULL || semi - s > 6)
				return -1;
			s = semi + 1;
			continue;
		}
		if (*s != '<') {
			s++;
			continue;
		}
		const char *end = strchr(s, '>');
		if (end == NULL)
			return -1;
		if (s[1] == '/') {
			size_t l = strcspn(s + 2, " >");
			if (depth == 0 || l != lens[depth - 1] || strncmp(s + 2, stack[depth - 1], l) != 0)
				return -1;
			depth--;
		} else {
			size_t l = strcspn(s + 1, " />");
			int quotes = 0;
			for (const char *p = s; p < end; p++)
				quotes += *p == '"';
			if (quotes % 2 != 0 || l == 0)
				return -1;
			elems++;
			if (count_tag && strlen(count_tag) == l && strncmp(s + 1, count_tag, l) == 0)
				(*count)++;
			if (end[-1] != '/') {
				if (depth == 64)
					return -1;
				stack[depth] = s + 1;
				lens[depth++] = l;
			}
		}
		s = end + 1;
	}
	return depth == 0 ? elems : -1;
}

static void test_well_formed(void)
{
	chart_point_t pts[4] = { { 1, 12.5 }, { 8, 3.1 }, { 64, 0.9 }, { 256, 0.41 } };
	chart_series_t s = { "cpu <2 vCPU> & more", pts, 4 };
	chart_hline_t lines[2] = { { "gpt-4o \"batch\"", 5.0 }, { "qwen-long", 0.28 } };
	chart_t c = { "Cost & price", "sub <title>", "batch", "CNY per 1M", true, &s, 1, lines, 2 };
	char *svg = NULL, err[256];
	CU_ASSERT_EQUAL_FATAL(chart_svg(&c, &svg, err, sizeof(err)), 0);
	CU_ASSERT(strncmp(svg, "<svg", 4) == 0);
	CU_ASSERT(strcmp(svg + strlen(svg) - 7, "</svg>\n") == 0);
	int circles;
	CU_ASSERT(xml_check(svg, "circle", &circles) > 0);
	CU_ASSERT_EQUAL(circles, 4);
	CU_ASSERT_PTR_NOT_NULL(strstr(svg, "cpu &lt;2 vCPU&gt; &amp; more"));
	CU_ASSERT_PTR_NOT_NULL(strstr(svg, "sub &lt;title&gt;"));
	CU_ASSERT_PTR_NOT_NULL(strstr(svg, "gpt-4o &quot;batch&quot;"));
	CU_ASSERT_PTR_NOT_NULL(strstr(svg, "(log scale)"));	/* 0.28 .. 12.5 spans more than 20x */
	CU_ASSERT_EQUAL(xml_check("<svg><g></svg></g>", NULL, &circles), -1);	/* the checker can fail */
	free(svg);

	chart_point_t flat[2] = { { 10, 2 }, { 20, 3 } };
	chart_series_t s2 = { "flat", flat, 2 };
	chart_t c2 = { "t", NULL, "x", "y", false, &s2, 1, NULL, 0 };
	CU_ASSERT_EQUAL_FATAL(chart_svg(&c2, &svg, err, sizeof(err)), 0);
	CU_ASSERT_PTR_NULL(strstr(svg, "(log scale)"));
	CU_ASSERT(xml_check(svg, NULL, &circles) > 0);
	free(svg);

	chart_t empty = { "t", NULL, "x", "y", false, NULL, 0, NULL, 0 };
	CU_ASSERT_EQUAL(chart_svg(&empty, &svg, err, sizeof(err)), -EINVAL);
	chart_point_t nan[1] = { { 1, 0.0 / 0.0 } };
	chart_series_t s3 = { "nan", nan, 1 };
	chart_t c3 = { "t", NULL, "x", "y", false, &s3, 1, NULL, 0 };
	CU_ASSERT_EQUAL(chart_svg(&c3, &svg, err, sizeof(err)), -EINVAL);
}

static void test_cost_charts(void)
{
	hwprof_t cpu;
	thru_bench_t b;
	pricetab_t *t = pricetab_new();
	char err[512] = "", *svg = NULL;
	int circles;
	const char *refs[] = { "gpt-4o-mini", "qwen-long", "deepseek-chat" };
	CU_ASSERT_EQUAL_FATAL(hwprof_load(DEPLOY("hardware/cpu-2vcpu.conf"), &cpu, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(thru_bench_load(DATA("bench_machine_md.json"), &b, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(pricetab_load(t, DEPLOY("prices/fx.conf"), err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(pricetab_load(t, DEPLOY("prices/closed-2024.conf"), err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(pricetab_load(t, DEPLOY("prices/cn-2024-05-after.conf"), err, sizeof(err)), 0);
	int r = chart_cost_vs_batch(&b, &cpu, 1.0, t, refs, 3, true, "CNY", &svg, err, sizeof(err));
	if (r < 0)
		fprintf(stderr, "%s\n", err);
	CU_ASSERT_EQUAL_FATAL(r, 0);
	CU_ASSERT(strncmp(svg, "<svg", 4) == 0);
	CU_ASSERT(xml_check(svg, "circle", &circles) > 0);
	CU_ASSERT_EQUAL(circles, 5);	/* one per bench run */
	CU_ASSERT_PTR_NOT_NULL(strstr(svg, "gpt-4o-mini batch"));
	CU_ASSERT_PTR_NOT_NULL(strstr(svg, "qwen-long ("));	/* no batch tier: not labelled batch */
	CU_ASSERT_PTR_NULL(strstr(svg, "qwen-long batch"));
	CU_ASSERT_PTR_NOT_NULL(strstr(svg, "CNY per 1M output tokens"));
	free(svg);

	thru_t tp;
	CU_ASSERT_EQUAL_FATAL(thru_from_bench(&b, 32, &tp, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(chart_cost_vs_utilization(&tp, &cpu, 512, 128, t, refs, 3, true, "USD", &svg, err,
							sizeof(err)), 0);
	CU_ASSERT(xml_check(svg, "circle", &circles) > 0);
	CU_ASSERT_EQUAL(circles, 20);	/* 5% .. 100% */
	free(svg);
	const char *bad[] = { "nope" };
	CU_ASSERT_EQUAL(chart_cost_vs_batch(&b, &cpu, 1.0, t, bad, 1, true, "CNY", &svg, err, sizeof(err)), -ENOENT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "nope"));
	pricetab_destroy(&t);
}

const cu_test_t chart_tests[] = {
	{ "well_formed", test_well_formed },
	{ "cost_charts", test_cost_charts },
	{ NULL, NULL },
};
