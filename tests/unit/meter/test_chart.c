/* chart: the SVG is a well-formed document (starts with <svg, tags
 * balanced, text escaped) with one point per measurement and one line per
 * closed-API price. */
#include "tests.h"
#include "chart.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
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

/* Break-even rings (circles that are not data points). */
static int rings(const char *svg)
{
	int n = 0;
	for (const char *p = svg; (p = strstr(p, "<circle class=\"break-even\"")) != NULL; p++)
		n++;
	return n;
}

static void test_well_formed(void)
{
	chart_point_t pts[4] = { { 1, 12.5 }, { 8, 3.1 }, { 64, 0.9 }, { 256, 0.41 } };
	chart_series_t s = { "cpu <2 vCPU> & more", pts, 4 };
	chart_hline_t lines[2] = { { "gpt-4o \"batch\"", 5.0 }, { "qwen-long", 0.28 } };
	chart_t c = { .title = "Cost & price", .subtitle = "sub <title>", .x_label = "batch", .y_label = "CNY per 1M",
		      .log2_x = true, .series = &s, .n_series = 1, .lines = lines, .n_lines = 2 };
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
	chart_t c2 = { .title = "t", .x_label = "x", .y_label = "y", .series = &s2, .n_series = 1 };
	CU_ASSERT_EQUAL_FATAL(chart_svg(&c2, &svg, err, sizeof(err)), 0);
	CU_ASSERT_PTR_NULL(strstr(svg, "(log scale)"));
	CU_ASSERT(xml_check(svg, NULL, &circles) > 0);
	free(svg);

	chart_t empty = { .title = "t", .x_label = "x", .y_label = "y" };
	CU_ASSERT_EQUAL(chart_svg(&empty, &svg, err, sizeof(err)), -EINVAL);
	chart_point_t nan[1] = { { 1, 0.0 / 0.0 } };
	chart_series_t s3 = { "nan", nan, 1 };
	chart_t c3 = { .title = "t", .x_label = "x", .y_label = "y", .series = &s3, .n_series = 1 };
	CU_ASSERT_EQUAL(chart_svg(&c3, &svg, err, sizeof(err)), -EINVAL);
}

/* The cpu-2vcpu profile and the shipped price tables (fx, closed-2024,
 * cn-2024-05-after); the caller destroys the table. */
static pricetab_t *fixture(hwprof_t *cpu)
{
	char err[512] = "";
	pricetab_t *t = pricetab_new();
	CU_ASSERT_PTR_NOT_NULL_FATAL(t);
	CU_ASSERT_EQUAL_FATAL(hwprof_load(DEPLOY("hardware/cpu-2vcpu.conf"), cpu, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(pricetab_load(t, DEPLOY("prices/fx.conf"), err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(pricetab_load(t, DEPLOY("prices/closed-2024.conf"), err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(pricetab_load(t, DEPLOY("prices/cn-2024-05-after.conf"), err, sizeof(err)), 0);
	return t;
}

static void test_cost_charts(void)
{
	hwprof_t cpu;
	thru_bench_t b;
	char err[512] = "", *svg = NULL;
	int circles;
	const char *refs[] = { "gpt-4o-mini", "qwen-long", "deepseek-chat" };
	pricetab_t *t = fixture(&cpu);
	CU_ASSERT_EQUAL_FATAL(thru_bench_load(DATA("bench_machine_md.json"), &b, err, sizeof(err)), 0);
	int r = chart_cost_vs_batch(&b, &cpu, 1.0, t, refs, 3, true, "CNY", &svg, err, sizeof(err));
	if (r < 0)
		fprintf(stderr, "%s\n", err);
	CU_ASSERT_EQUAL_FATAL(r, 0);
	CU_ASSERT(strncmp(svg, "<svg", 4) == 0);
	CU_ASSERT(xml_check(svg, "circle", &circles) > 0);
	CU_ASSERT_EQUAL(circles - rings(svg), 5);	/* one per bench run */
	CU_ASSERT_PTR_NOT_NULL(strstr(svg, "gpt-4o-mini batch"));
	CU_ASSERT_PTR_NOT_NULL(strstr(svg, ">qwen-long</text>"));	/* no batch tier: not labelled batch */
	CU_ASSERT_PTR_NULL(strstr(svg, "qwen-long batch"));
	CU_ASSERT_PTR_NOT_NULL(strstr(svg, "CNY per 1M output tokens"));
	free(svg);

	thru_t tp;
	CU_ASSERT_EQUAL_FATAL(thru_from_bench(&b, 32, &tp, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(chart_cost_vs_utilization(&tp, &cpu, 512, 128, 0, t, refs, 3, true, "USD", &svg, err,
							sizeof(err)), 0);
	CU_ASSERT(xml_check(svg, "circle", &circles) > 0);
	CU_ASSERT_EQUAL(circles - rings(svg), 20);	/* 5% .. 100% */
	free(svg);
	const char *bad[] = { "nope" };
	CU_ASSERT_EQUAL(chart_cost_vs_batch(&b, &cpu, 1.0, t, bad, 1, true, "CNY", &svg, err, sizeof(err)), -ENOENT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "nope"));
	pricetab_destroy(&t);
}

/* --- what a person sees: nothing cut, nothing on top of anything --- */

/* One <text> of an SVG: its box (estimated like a renderer would draw
 * it: 0.55 em a character, the glyphs from 0.8 em above the baseline to
 * 0.2 em below) and its content, entities decoded. */
typedef struct svg_text {
	double x0, y0, x1, y1;
	char cls[32];
	char body[512];
	bool rotated;
} svg_text_t;

static double attr_num(const char *tag, const char *end, const char *name, double dflt)
{
	char key[40];
	snprintf(key, sizeof(key), " %s=\"", name);
	const char *p = strstr(tag, key);
	return p != NULL && p < end ? strtod(p + strlen(key), NULL) : dflt;
}

static void attr_str(const char *tag, const char *end, const char *name, char *buf, size_t len)
{
	char key[40];
	snprintf(key, sizeof(key), " %s=\"", name);
	const char *p = strstr(tag, key);
	buf[0] = '\0';
	if (p != NULL && p < end) {
		p += strlen(key);
		snprintf(buf, len, "%.*s", (int)(strchr(p, '"') - p), p);
	}
}

/* Parses every <text> (the text-anchor of an enclosing <g> applies);
 * returns the count; *ret_w, *ret_h: the image's size. */
static size_t svg_texts(const char *svg, svg_text_t *out, size_t cap, double *ret_w, double *ret_h)
{
	size_t n = 0;
	char g_anchor[16] = "start", anchor[16];
	const char *end = strchr(svg, '>');
	*ret_w = attr_num(svg, end, "width", 0);
	*ret_h = attr_num(svg, end, "height", 0);
	for (const char *p = svg; (p = strchr(p, '<')) != NULL; p++) {
		end = strchr(p, '>');
		if (strncmp(p, "<g", 2) == 0) {
			attr_str(p, end, "text-anchor", g_anchor, sizeof(g_anchor));
			if (!g_anchor[0])
				snprintf(g_anchor, sizeof(g_anchor), "start");
			continue;
		}
		if (strncmp(p, "</g>", 4) == 0) {
			snprintf(g_anchor, sizeof(g_anchor), "start");
			continue;
		}
		if (strncmp(p, "<text", 5) != 0 || n == cap)
			continue;
		svg_text_t *t = &out[n++];
		memset(t, 0, sizeof(*t));
		double x = attr_num(p, end, "x", 0), y = attr_num(p, end, "y", 0), size = attr_num(p, end, "font-size", 12);
		attr_str(p, end, "text-anchor", anchor, sizeof(anchor));
		if (!anchor[0])
			snprintf(anchor, sizeof(anchor), "%s", g_anchor);
		attr_str(p, end, "class", t->cls, sizeof(t->cls));
		char tr[64];
		attr_str(p, end, "transform", tr, sizeof(tr));
		t->rotated = tr[0] != '\0';
		size_t k = 0, chars = 0;
		for (const char *q = end + 1; *q && *q != '<' && k + 1 < sizeof(t->body); q++) {
			if (*q == '&') {
				static const char *const ent[][2] = { { "&amp;", "&" }, { "&lt;", "<" }, { "&gt;", ">" },
								      { "&quot;", "\"" }, { "&apos;", "'" } };
				for (size_t e = 0; e < 5; e++)
					if (strncmp(q, ent[e][0], strlen(ent[e][0])) == 0) {
						t->body[k++] = ent[e][1][0];
						q += strlen(ent[e][0]) - 1;
						break;
					}
			} else {
				t->body[k++] = *q;
			}
			chars += ((unsigned char)t->body[k - 1] & 0xC0) != 0x80;
		}
		double w = (double)chars * size * 0.55;
		t->x0 = strcmp(anchor, "end") == 0 ? x - w : strcmp(anchor, "middle") == 0 ? x - w / 2 : x;
		t->x1 = t->x0 + w;
		t->y0 = y - 0.8 * size;
		t->y1 = y + 0.2 * size;
	}
	return n;
}

/* Every text lies inside the image and none overlaps another (the
 * rotated y-axis label: only its length against the image's height). */
static void check_layout(const char *svg)
{
	static svg_text_t t[400];
	double w, h;
	size_t n = svg_texts(svg, t, 400, &w, &h);
	CU_ASSERT(n > 10 && w > 0 && h > 0);
	for (size_t i = 0; i < n; i++) {
		if (t[i].rotated) {
			CU_ASSERT(t[i].x1 - t[i].x0 < h - 80);
			continue;
		}
		bool inside = t[i].x0 >= 0 && t[i].x1 <= w && t[i].y0 >= 0 && t[i].y1 <= h;
		if (!inside)
			fprintf(stderr, "text \"%s\" outside the %gx%g image: %.0f..%.0f, %.0f..%.0f\n", t[i].body, w, h,
				t[i].x0, t[i].x1, t[i].y0, t[i].y1);
		CU_ASSERT(inside);
		for (size_t j = i + 1; j < n; j++) {
			if (t[j].rotated)
				continue;
			bool apart = t[i].x1 <= t[j].x0 || t[j].x1 <= t[i].x0 || t[i].y1 <= t[j].y0 || t[j].y1 <= t[i].y0;
			if (!apart)
				fprintf(stderr, "\"%s\" overlaps \"%s\"\n", t[i].body, t[j].body);
			CU_ASSERT(apart);
		}
	}
}

/* The lines of the texts of one class, joined with spaces. */
static void texts_of(const char *svg, const char *cls, char *buf, size_t len)
{
	static svg_text_t t[400];
	double w, h;
	size_t n = svg_texts(svg, t, 400, &w, &h), o = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < n && o < len; i++)
		if (strcmp(t[i].cls, cls) == 0)
			o += (size_t)snprintf(buf + o, len - o, "%s%s", o ? " " : "", t[i].body);
}

static void subtitle_of(const char *svg, char *buf, size_t len)
{
	texts_of(svg, "subtitle", buf, len);
}

/* A long subtitle is wrapped, never cut, and the plot moves down for it;
 * long legend labels wrap too. */
static void test_no_cut_text(void)
{
	chart_point_t pts[3] = { { 5, 9 }, { 50, 2 }, { 100, 1.5 } };
	chart_series_t s = { "a series with a rather long name that does not fit the legend", pts, 3 };
	chart_hline_t lines[1] = { { "cn-2024-05-before:qwen-max batch", 2.5 } };
	const char *sub = "8xh100 at 67.494 CNY/h busy, 19.200 CNY/h idle; 2048 in / 2048 out tokens per call; "
			  "measured: batch batch_6f1d2a7c9e0b4d3f8a5c1e7b2d9f4a60, 4000 calls, 8192000 output tokens in "
			  "5123.456 s of engine time; prices fx+closed-2024+cn-2024-05-after+cn-2024-05-before; "
			  "all figures in CNY per 1M tokens";
	chart_t c = { .title = "Cost per 1M tokens vs utilization", .subtitle = sub, .x_label = "utilization U (%)",
		      .y_label = "CNY per 1M tokens", .series = &s, .n_series = 1, .lines = lines, .n_lines = 1,
		      .x_name = "U", .x_unit = "%", .y_unit = "CNY/1M tokens" };
	char *svg = NULL, *short_svg = NULL, err[256], got[2048];
	CU_ASSERT_EQUAL_FATAL(chart_svg(&c, &svg, err, sizeof(err)), 0);
	subtitle_of(svg, got, sizeof(got));
	CU_ASSERT_STRING_EQUAL(got, sub);	/* all of it, units included */
	check_layout(svg);
	CU_ASSERT_PTR_NOT_NULL(strstr(svg, ">2.5 CNY/1M tokens<"));	/* the line's value has its unit */
	c.subtitle = "short";
	CU_ASSERT_EQUAL_FATAL(chart_svg(&c, &short_svg, err, sizeof(err)), 0);
	double w1, h1, w2, h2;
	static svg_text_t t[400];
	svg_texts(svg, t, 400, &w1, &h1);
	svg_texts(short_svg, t, 400, &w2, &h2);
	CU_ASSERT(h1 >= h2 + 2 * 14);	/* three subtitle lines instead of one */
	free(svg);
	free(short_svg);
}

/* The utilization chart: the measured utilization as a labelled vertical
 * line, and each API's break-even utilization marked where the cost curve
 * crosses its price, at the utilization where the cost equals the price
 * (solved here from the profile's rates and the throughput). */
static void test_marks(void)
{
	hwprof_t cpu;
	char err[512] = "", *svg = NULL;
	const char *refs[] = { "gpt-4o-mini", "qwen-long", "deepseek-chat" };
	pricetab_t *t = fixture(&cpu);
	thru_t tp = { .source = THRU_GIVEN, .out_tok_s = 150 };
	snprintf(tp.why, sizeof(tp.why), "given: 150 output tokens/s");
	CU_ASSERT_EQUAL_FATAL(chart_cost_vs_utilization(&tp, &cpu, 512, 128, 0.37, t, refs, 3, true, "CNY", &svg, err,
							sizeof(err)), 0);
	check_layout(svg);
	/* The label gives the cost there: the formula below at U = 37%. */
	double tin0, tout0;
	CU_ASSERT_EQUAL_FATAL(thru_tokens_per_hour(&tp, 512, 128, 0.37, &tin0, &tout0), 0);
	char want_label[128];
	snprintf(want_label, sizeof(want_label), ">measured U = 37%%: %.4g CNY/1M tokens</text>",
		 (0.37 * (double)cpu.rate_busy_micros_per_hour + 0.63 * (double)cpu.rate_idle_micros_per_hour) /
		 (tin0 + tout0));
	CU_ASSERT_PTR_NOT_NULL(strstr(svg, want_label));
	/* x of the data points at 5% and 100% give the axis (the 37% point is
	 * one of them too); the line is at 37%. */
	double x5 = 1e9, x100 = -1e9, y;
	int points = 0;
	for (const char *q = svg; (q = strstr(q, "<circle cx=\"")) != NULL; q++, points++) {
		x5 = fmin(x5, strtod(q + 12, NULL));
		x100 = fmax(x100, strtod(q + 12, NULL));
	}
	CU_ASSERT_EQUAL(points, 21);
	const char *v = strstr(svg, "<line class=\"vline\" x1=\"");
	CU_ASSERT_PTR_NOT_NULL_FATAL(v);
	CU_ASSERT_DOUBLE_EQUAL(strtod(v + 24, NULL), x5 + (37.0 - 5) / 95 * (x100 - x5), 0.11);

	/* Break-even: cost(u) = (u rate_busy + (1-u) rate_idle) / tokens per
	 * hour at u, in micros per token = CNY per 1M. */
	int found = 0;
	for (const char *p = svg; (p = strstr(p, "<circle class=\"break-even\"")) != NULL; p++, found++) {
		const char *tt = strstr(p, "<title>break-even: U = ");
		CU_ASSERT_PTR_NOT_NULL_FATAL(tt);
		double u_label = strtod(tt + 23, NULL) / 100;
		double cx = strtod(strstr(p, "cx=\"") + 4, NULL), cy = strtod(strstr(p, "cy=\"") + 4, NULL);
		CU_ASSERT_DOUBLE_EQUAL((cx - x5) / (x100 - x5) * 95 + 5, u_label * 100, 0.3);	/* where it says */
		/* on one of the price lines */
		bool on_line = false;
		for (const char *q = svg; (q = strstr(q, "<line class=\"price\"")) != NULL; q++) {
			y = strtod(strstr(q, "y1=\"") + 4, NULL);
			on_line |= fabs(y - cy) < 0.11;
		}
		CU_ASSERT(on_line);
		/* and there the cost is the API's price to within 1 point of U */
		double tin, tout, price = 0;
		for (int k = 0; k < 3; k++) {
			const pricetab_entry_t *e = pricetab_find(t, refs[k]);
			meter_q_t pin, pout, fx;
			CU_ASSERT_EQUAL_FATAL(pricetab_prices(e, 512, true, &pin, &pout), 0);
			CU_ASSERT_EQUAL_FATAL(pricetab_fx_factor(t, e->currency, "CNY", &fx, err, sizeof(err)), 0);
			double pk = (512 * meter_q_to_double(pin) + 128 * meter_q_to_double(pout)) / 640 * meter_q_to_double(fx);
			char want[64];
			snprintf(want, sizeof(want), "%.3g CNY/1M tokens", pk);
			const char *leg = strstr(svg, want);
			if (leg != NULL && strstr(leg, "break-even at U = ") != NULL &&
			    fabs(strtod(strstr(leg, "break-even at U = ") + 18, NULL) / 100 - u_label) < 1e-9)
				price = pk;
		}
		CU_ASSERT_FATAL(price > 0);
		double lo = 0.001, hi = 1;
		for (int i = 0; i < 60; i++) {
			double u = (lo + hi) / 2;
			CU_ASSERT_EQUAL_FATAL(thru_tokens_per_hour(&tp, 512, 128, u, &tin, &tout), 0);
			double cost = (u * (double)cpu.rate_busy_micros_per_hour + (1 - u) * (double)cpu.rate_idle_micros_per_hour) /
				      (tin + tout);
			if (cost > price)
				lo = u;
			else
				hi = u;
		}
		if (fabs(u_label - lo) >= 0.01)
			fprintf(stderr, "break-even labelled U = %g, cost = price at U = %g\n", u_label, lo);
		CU_ASSERT(fabs(u_label - lo) < 0.01);
	}
	CU_ASSERT_EQUAL(found, 3);
	free(svg);

	/* A batch below the 5% grid: the curve reaches its point, and the
	 * line stands clear of the y axis (the axis starts at 0). */
	CU_ASSERT_EQUAL_FATAL(chart_cost_vs_utilization(&tp, &cpu, 512, 128, 0.0193, t, refs, 3, true, "CNY", &svg, err,
							sizeof(err)), 0);
	check_layout(svg);
	const char *first = strstr(svg, "<circle cx=\""), *vl = strstr(svg, "<line class=\"vline\" x1=\"");
	const char *axis = strstr(svg, "<path d=\"M");
	CU_ASSERT_FATAL(first != NULL && vl != NULL && axis != NULL);
	CU_ASSERT_DOUBLE_EQUAL(strtod(first + 12, NULL), strtod(vl + 24, NULL), 0.11);
	CU_ASSERT(strtod(vl + 24, NULL) > strtod(axis + 10, NULL) + 5);
	CU_ASSERT_PTR_NOT_NULL(strstr(svg, ">measured U = 1.93%: "));
	free(svg);

	/* A throughput too low to reach any price: none marked, and said. */
	tp.out_tok_s = 2;
	CU_ASSERT_EQUAL_FATAL(chart_cost_vs_utilization(&tp, &cpu, 512, 128, 0, t, refs, 3, true, "CNY", &svg, err,
							sizeof(err)), 0);
	CU_ASSERT_PTR_NULL(strstr(svg, "class=\"break-even\""));
	CU_ASSERT_PTR_NULL(strstr(svg, "class=\"vline\""));
	char legend[4096];
	texts_of(svg, "legend", legend, sizeof(legend));
	CU_ASSERT_PTR_NOT_NULL(strstr(legend, "gpt-4o-mini batch 0.864 CNY/1M tokens no break-even: cost above it at "
					      "every U shown"));
	check_layout(svg);
	free(svg);
	CU_ASSERT_EQUAL(chart_cost_vs_utilization(&tp, &cpu, 512, 128, 1.5, t, refs, 3, true, "CNY", &svg, err,
						  sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "measured utilization"));
	pricetab_destroy(&t);
}

/* The batch chart: units on both axes, the break-even batch marked. */
static void test_batch_marks(void)
{
	hwprof_t cpu;
	thru_bench_t b;
	char err[512] = "", *svg = NULL;
	const char *refs[] = { "gpt-4o-mini", "qwen-long", "deepseek-chat" };
	pricetab_t *t = fixture(&cpu);
	CU_ASSERT_EQUAL_FATAL(thru_bench_load(DATA("bench_machine_md.json"), &b, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(chart_cost_vs_batch(&b, &cpu, 1.0, t, refs, 3, true, "CNY", &svg, err, sizeof(err)), 0);
	check_layout(svg);
	static svg_text_t tx[400];
	double w, h;
	size_t n = svg_texts(svg, tx, 400, &w, &h);
	int axes = 0;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(tx[i].cls, "x-label") == 0)
			axes += strstr(tx[i].body, "(sequences per step)") != NULL;
		if (strcmp(tx[i].cls, "y-label") == 0)
			axes += strstr(tx[i].body, "CNY per 1M output tokens") != NULL;
	}
	CU_ASSERT_EQUAL(axes, 2);
	char sub[1024];
	subtitle_of(svg, sub, sizeof(sub));
	CU_ASSERT_PTR_NOT_NULL(strstr(sub, "CNY/h"));
	CU_ASSERT_PTR_NOT_NULL(strstr(sub, pricetab_name(t)));
	/* Cost falls from 3.6 to 0.3 CNY per 1M between batch 1 and 256: it
	 * crosses each price (2 to 2.2 CNY) between batch 2 and 8. */
	int found = 0;
	for (const char *p = svg; (p = strstr(p, "<title>break-even: batch = ")) != NULL; p++, found++) {
		double at = strtod(p + 27, NULL);
		CU_ASSERT(at > 2 && at < 8);
	}
	CU_ASSERT_EQUAL(found, 3);
	free(svg);
	pricetab_destroy(&t);
}

const cu_test_t chart_tests[] = {
	{ "well_formed", test_well_formed },
	{ "cost_charts", test_cost_charts },
	{ "no_cut_text", test_no_cut_text },
	{ "marks", test_marks },
	{ "batch_marks", test_batch_marks },
	{ NULL, NULL },
};
