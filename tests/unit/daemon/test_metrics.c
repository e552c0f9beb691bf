/* metrics: the Prometheus text format 0.0.4 as a scraper reads it. */
#include "cu_main.h"
#include "metrics.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const cu_test_t metrics_tests[];

static const double secs[] = { 0.25, 1, 10 };
static const metrics_def_t defs[] = {
	{ "t_requests_total", "Requests\nby code \\ status", METRICS_COUNTER, { "code", NULL }, NULL, 0 },
	{ "t_queue", "Queue depth", METRICS_GAUGE, { NULL }, NULL, 0 },
	{ "t_latency_seconds", "Latency", METRICS_HISTOGRAM, { "model_name", NULL }, secs, 3 },
};

static char *render(metrics_t *m)
{
	char *text = NULL;
	size_t len = 0;
	CU_ASSERT_EQUAL_FATAL(metrics_format(m, &text, &len), 0);
	CU_ASSERT_EQUAL(strlen(text), len);
	return text;
}

/* Every line is a comment (# HELP / # TYPE) or `name[{labels}] value`, the
 * names carry no colon, the text ends with a newline. */
static void check_grammar(const char *text)
{
	CU_ASSERT_TRUE(text[0] == '\0' || text[strlen(text) - 1] == '\n');
	const char *p = text;
	while (*p) {
		const char *nl = strchr(p, '\n');
		CU_ASSERT_PTR_NOT_NULL_FATAL(nl);
		char line[1024];
		snprintf(line, sizeof(line), "%.*s", (int)(nl - p), p);
		if (line[0] == '#') {
			CU_ASSERT_TRUE(strncmp(line, "# HELP ", 7) == 0 || strncmp(line, "# TYPE ", 7) == 0);
		} else {
			size_t n = strspn(line, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789");
			CU_ASSERT_TRUE(n > 0);
			CU_ASSERT_TRUE(line[n] == '{' || line[n] == ' ');
			const char *sp = strrchr(line, ' ');
			CU_ASSERT_PTR_NOT_NULL_FATAL(sp);
			char *end;
			const char *v = sp + 1;
			if (strcmp(v, "+Inf") && strcmp(v, "-Inf") && strcmp(v, "NaN")) {
				strtod(v, &end);
				CU_ASSERT_EQUAL(*end, '\0');
			}
		}
		p = nl + 1;
	}
}

static void test_counter_gauge_format(void)
{
	metrics_t *m = metrics_new_empty();
	for (size_t i = 0; i < 3; i++)
		CU_ASSERT_EQUAL(metrics_register(m, &defs[i]), 0);
	const char *a[] = { "500" }, *b[] = { "200" }, *q[] = { "we\"ird\\\nname" };
	CU_ASSERT_EQUAL(metrics_counter_add(m, "t_requests_total", a, 1), 0);
	CU_ASSERT_EQUAL(metrics_counter_add(m, "t_requests_total", b, 2), 0);
	CU_ASSERT_EQUAL(metrics_counter_add(m, "t_requests_total", b, 3), 0);
	CU_ASSERT_EQUAL(metrics_counter_add(m, "t_requests_total", q, 0.25), 0);
	CU_ASSERT_EQUAL(metrics_gauge_set(m, "t_queue", NULL, 7), 0);
	CU_ASSERT_EQUAL(metrics_gauge_set(m, "t_queue", NULL, 3), 0);
	char *t = render(m);
	check_grammar(t);
	/* HELP escapes backslash and newline; children sorted by label value;
	 * counters accumulate; a gauge keeps the last value. */
	CU_ASSERT_PTR_NOT_NULL(strstr(t,
		"# HELP t_requests_total Requests\\nby code \\\\ status\n"
		"# TYPE t_requests_total counter\n"
		"t_requests_total{code=\"200\"} 5\n"
		"t_requests_total{code=\"500\"} 1\n"
		"t_requests_total{code=\"we\\\"ird\\\\\\nname\"} 0.25\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(t, "# TYPE t_queue gauge\nt_queue 3\n"));
	/* Families in registration order. */
	CU_ASSERT_TRUE(strstr(t, "t_requests_total") < strstr(t, "t_queue"));
	free(t);
	metrics_destroy(&m);
	CU_ASSERT_PTR_NULL(m);
}

static void test_histogram(void)
{
	metrics_t *m = metrics_new_empty();
	CU_ASSERT_EQUAL(metrics_register(m, &defs[2]), 0);
	const char *lv[] = { "llama-110m" };
	CU_ASSERT_EQUAL(metrics_histogram_observe(m, "t_latency_seconds", lv, 0.125, 1), 0);
	CU_ASSERT_EQUAL(metrics_histogram_observe(m, "t_latency_seconds", lv, 0.25, 1), 0);	/* le is inclusive */
	CU_ASSERT_EQUAL(metrics_histogram_observe(m, "t_latency_seconds", lv, 2, 3), 0);
	CU_ASSERT_EQUAL(metrics_histogram_observe(m, "t_latency_seconds", lv, 99, 1), 0);
	char *t = render(m);
	check_grammar(t);
	CU_ASSERT_PTR_NOT_NULL(strstr(t,
		"# TYPE t_latency_seconds histogram\n"
		"t_latency_seconds_bucket{model_name=\"llama-110m\",le=\"0.25\"} 2\n"
		"t_latency_seconds_bucket{model_name=\"llama-110m\",le=\"1\"} 2\n"
		"t_latency_seconds_bucket{model_name=\"llama-110m\",le=\"10\"} 5\n"
		"t_latency_seconds_bucket{model_name=\"llama-110m\",le=\"+Inf\"} 6\n"
		"t_latency_seconds_sum{model_name=\"llama-110m\"} 105.375\n"
		"t_latency_seconds_count{model_name=\"llama-110m\"} 6\n"));
	free(t);
	metrics_destroy(&m);
}

static void test_misuse(void)
{
	metrics_t *m = metrics_new_empty();
	CU_ASSERT_EQUAL(metrics_register(m, &defs[0]), 0);
	CU_ASSERT_EQUAL(metrics_register(m, &defs[0]), -EEXIST);
	metrics_def_t colon = { "t:bad", "x", METRICS_GAUGE, { NULL }, NULL, 0 };
	CU_ASSERT_EQUAL(metrics_register(m, &colon), -EINVAL);
	static const double down[] = { 2, 1 };
	metrics_def_t unsorted = { "t_h", "x", METRICS_HISTOGRAM, { NULL }, down, 2 };
	CU_ASSERT_EQUAL(metrics_register(m, &unsorted), -EINVAL);
	metrics_def_t le = { "t_h2", "x", METRICS_HISTOGRAM, { "le", NULL }, secs, 3 };
	CU_ASSERT_EQUAL(metrics_register(m, &le), -EINVAL);
	const char *lv[] = { "200" };
	CU_ASSERT_EQUAL(metrics_counter_add(m, "t_requests_total", lv, -1), -EINVAL);
	CU_ASSERT_EQUAL(metrics_counter_add(m, "t_requests_total", NULL, 1), -EINVAL);
	CU_ASSERT_EQUAL(metrics_gauge_set(m, "t_requests_total", lv, 1), -EINVAL);
	CU_ASSERT_EQUAL(metrics_counter_add(m, "t_absent_total", lv, 1), -ENOENT);
	/* An empty family renders its HELP and TYPE only. */
	char *t = render(m);
	CU_ASSERT_STRING_EQUAL(t, "# HELP t_requests_total Requests\\nby code \\\\ status\n"
				  "# TYPE t_requests_total counter\n");
	free(t);
	metrics_destroy(&m);
}

static void test_reset(void)
{
	metrics_t *m = metrics_new();
	CU_ASSERT_PTR_NOT_NULL_FATAL(m);
	metrics_sched_t s = { .workers = 2, .worker_slots = 16, .requests_waiting = 40,
			      .requests_running = 8, .shards_in_flight = 2, .batches_in_progress = 1 };
	CU_ASSERT_EQUAL(metrics_set_sched(m, &s), 0);
	char *t = render(m);
	CU_ASSERT_PTR_NOT_NULL(strstr(t, "\nmargin_workers 2\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(t, "\nmargin_requests_waiting 40\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(t, "\nmargin_batches{status=\"in_progress\"} 1\n"));
	free(t);
	CU_ASSERT_EQUAL(metrics_reset(m, "margin_batches"), 0);
	t = render(m);
	CU_ASSERT_PTR_NULL(strstr(t, "margin_batches{"));
	free(t);
	metrics_destroy(&m);
}

/* A committed Result feeds requests by outcome, tokens, TTFT and the
 * worker's step histograms; margind's names follow the conventions. */
static void test_on_result(void)
{
	metrics_t *m = metrics_new();
	Margin__V1__Usage u = MARGIN__V1__USAGE__INIT;
	u.busy_ns = 500000000;
	u.queue_ns = 100000000;
	u.first_token_ns = 200000000;
	Margin__V1__Error e = MARGIN__V1__ERROR__INIT;
	e.code = "cancelled";
	e.message = "batch b was cancelled";
	Margin__V1__Output o[3];
	Margin__V1__Output *op[3];
	for (int i = 0; i < 3; i++) {
		margin__v1__output__init(&o[i]);
		op[i] = &o[i];
		o[i].line_no = (uint64_t)i + 1;
	}
	o[0].prompt_tokens = 5;
	o[0].completion_tokens = 7;
	o[0].usage = &u;
	o[1].prompt_tokens = 3;
	o[1].completion_tokens = 2;
	o[1].usage = &u;
	o[2].error = &e;
	Margin__V1__StepStats st = MARGIN__V1__STEP_STATS__INIT;
	st.steps = 10;
	st.wall_ns = 200000000;	/* 20 ms a step */
	st.max_batch = 2;
	Margin__V1__Result r = MARGIN__V1__RESULT__INIT;
	r.n_outputs = 3;
	r.outputs = op;
	r.step_stats = &st;
	CU_ASSERT_EQUAL(metrics_on_result(m, "llama-110m", "node-a", &r), 0);
	CU_ASSERT_EQUAL(metrics_on_result(m, "llama-110m", "node-a", &r), 0);
	CU_ASSERT_EQUAL(metrics_on_http(m, "GET", 200), 0);
	char *t = render(m);
	check_grammar(t);
	CU_ASSERT_PTR_NOT_NULL(strstr(t, "margin_requests_total{model_name=\"llama-110m\",status=\"completed\"} 4\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(t, "margin_requests_total{model_name=\"llama-110m\",status=\"cancelled\"} 2\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(t, "margin_prompt_tokens_total{model_name=\"llama-110m\"} 16\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(t, "margin_generation_tokens_total{model_name=\"llama-110m\"} 18\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(t, "margin_time_to_first_token_seconds_bucket{model_name=\"llama-110m\",le=\"0.25\"} 0\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(t, "margin_time_to_first_token_seconds_bucket{model_name=\"llama-110m\",le=\"0.5\"} 4\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(t, "margin_worker_step_seconds_bucket{worker=\"node-a\",le=\"0.025\"} 20\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(t, "margin_worker_step_seconds_count{worker=\"node-a\"} 20\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(t, "margin_worker_batch_size_bucket{worker=\"node-a\",le=\"2\"} 2\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(t, "margin_worker_busy_seconds_total{worker=\"node-a\"} 2\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(t, "margin_http_requests_total{method=\"GET\",code=\"200\"} 1\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(t, "margin_build_info{version=\""));
	/* Counter names end in _total, no metric name has a colon. */
	for (const char *p = t; (p = strstr(p, "# TYPE ")) != NULL; p++) {
		char name[128], type[32];
		CU_ASSERT_EQUAL_FATAL(sscanf(p, "# TYPE %127s %31s", name, type), 2);
		CU_ASSERT_PTR_NULL(strchr(name, ':'));
		CU_ASSERT_EQUAL(strncmp(name, "margin_", 7), 0);
		if (strcmp(type, "counter") == 0)
			CU_ASSERT_STRING_EQUAL(name + strlen(name) - 6, "_total");
	}
	free(t);
	metrics_destroy(&m);
}

const cu_test_t metrics_tests[] = {
	{ "counters and gauges: escaping, order, values", test_counter_gauge_format },
	{ "histograms: cumulative buckets, +Inf, sum, count", test_histogram },
	{ "bad names, types and values are refused", test_misuse },
	{ "scheduler gauges and reset", test_reset },
	{ "a Result feeds margind's families", test_on_result },
	{ NULL, NULL },
};
