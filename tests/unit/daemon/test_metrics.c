/* metrics: the Prometheus text format 0.0.4 as a scraper reads it. */
#include "api_cost.h"
#include "cu_main.h"
#include "fixture.h"
#include "meter/ledger.h"
#include "metrics.h"

#include <errno.h>
#include <math.h>
#include <sqlite3.h>
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
/* n empty outputs of lines 1..n, and the pointers a Result holds. */
static void outputs_init(Margin__V1__Output *o, Margin__V1__Output **op, int n)
{
	for (int i = 0; i < n; i++) {
		margin__v1__output__init(&o[i]);
		op[i] = &o[i];
		o[i].line_no = (uint64_t)i + 1;
	}
}

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
	outputs_init(o, op, 3);
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
	/* A model that does not embed has no embedding series. */
	CU_ASSERT_PTR_NULL(strstr(t, "margin_embeddings_total{"));
	CU_ASSERT_PTR_NULL(strstr(t, "margin_embedding_tokens_total{"));
	free(t);

	/* An embedding Result: two answered requests of 3 and 1 inputs (12
	 * and 4 input tokens) and a failed one. Embeddings and their tokens
	 * are counted per model, so that rate() gives embeddings/s and
	 * tokens/s; the tokens are prompt tokens too. */
	Margin__V1__Embedding v[4];
	Margin__V1__Embedding *vp[4];
	for (int i = 0; i < 4; i++) {
		margin__v1__embedding__init(&v[i]);
		vp[i] = &v[i];
	}
	Margin__V1__Error fe = MARGIN__V1__ERROR__INIT;
	fe.code = "context_length_exceeded";
	fe.message = "input 2 has 9000 tokens";
	Margin__V1__Output eo[3];
	Margin__V1__Output *eop[3];
	outputs_init(eo, eop, 3);
	eo[0].prompt_tokens = 12;
	eo[0].n_embeddings = 3;
	eo[0].embeddings = vp;
	eo[0].usage = &u;
	eo[1].prompt_tokens = 4;
	eo[1].n_embeddings = 1;
	eo[1].embeddings = vp + 3;
	eo[1].usage = &u;
	eo[2].error = &fe;
	eo[2].n_embeddings = 0;
	Margin__V1__Result er = MARGIN__V1__RESULT__INIT;
	er.n_outputs = 3;
	er.outputs = eop;
	CU_ASSERT_EQUAL(metrics_on_result(m, "bge-small", "node-a", &er), 0);
	CU_ASSERT_EQUAL(metrics_on_result(m, "bge-small", "node-a", &er), 0);
	t = render(m);
	check_grammar(t);
	CU_ASSERT_PTR_NOT_NULL(strstr(t, "# TYPE margin_embeddings_total counter\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(t, "margin_embeddings_total{model_name=\"bge-small\"} 8\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(t, "# TYPE margin_embedding_tokens_total counter\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(t, "margin_embedding_tokens_total{model_name=\"bge-small\"} 32\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(t, "margin_prompt_tokens_total{model_name=\"bge-small\"} 32\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(t, "margin_requests_total{model_name=\"bge-small\",status=\"completed\"} 4\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(t, "margin_requests_total{model_name=\"bge-small\",status=\"failed\"} 2\n"));
	CU_ASSERT_PTR_NULL(strstr(t, "margin_embeddings_total{model_name=\"llama-110m\"}"));
	free(t);
	metrics_destroy(&m);
}

/* The value of one sample line "series value"; NAN when absent. */
static double sample(const char *text, const char *series)
{
	size_t l = strlen(series);
	for (const char *p = text; (p = strstr(p, series)) != NULL; p += l)
		if ((p == text || p[-1] == '\n') && p[l] == ' ')
			return strtod(p + l + 1, NULL);
	return NAN;
}

/* Books rows [from, from + n) of a fixed pattern: cost i+1 micros marginal,
 * 3(i+1) loaded, ref-a equivalent 10(i+1), ref-b 100(i+1) (row 2: none). */
static void book_rows(sqlite3 *db, int from, int n, const char *currency)
{
	static const ledger_api_price_t pa = { .ref_model = "ref-a", .currency = "CNY", .price_currency = "USD",
					       .input_per_1m = "1", .output_per_1m = "2", .fx_rate = "7.2",
					       .fx_source = "t", .price_table = "t", .price_source = "t",
					       .price_date = "2026" };
	static const ledger_api_price_t pb = { .ref_model = "ref-b", .currency = "CNY", .price_currency = "CNY",
					       .input_per_1m = "1", .output_per_1m = "2", .fx_rate = "1",
					       .fx_source = "t", .price_table = "t", .price_source = "t",
					       .price_date = "2026" };
	ledger_row_t rows[8];
	ledger_api_t api[8][2];
	char ids[8][16], err[512];
	CU_ASSERT_FATAL(n <= 8);
	for (int k = 0; k < n; k++) {
		int i = from + k;
		snprintf(ids[k], sizeof(ids[k]), "c%d", i);
		api[k][0] = (ledger_api_t){ &pa, 10 * (i + 1) };
		api[k][1] = (ledger_api_t){ &pb, 100 * (i + 1) };
		rows[k] = (ledger_row_t){ .job = "b1", .custom_id = ids[k], .line_no = i, .model = "m", .worker = "w",
					  .worker_name = "w", .hardware_profile = "hw", .prompt_tokens = 10,
					  .completion_tokens = 5, .busy_ns = 1000, .cost_marginal_micros = i + 1,
					  .cost_loaded_micros = 3 * (i + 1), .answered_at_ns = 1, .currency = currency,
					  .api = api[k], .n_api = i == 2 ? 0 : 2 };
	}
	int r = ledger_insert(db, rows, (size_t)n, err, sizeof(err));
	if (r < 0)
		fprintf(stderr, "%s\n", err);
	CU_ASSERT_EQUAL_FATAL(r, 0);
}

/* margin_cost_micros_total{kind,currency} and
 * margin_api_equivalent_micros_total{reference,currency}: counters of the
 * ledger rows booked since margind started, each row counted once
 * however often Prometheus scrapes, never going down. */
static void test_cost_counters(void)
{
	char dir[512], path[600], err[512];
	fx_newdir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/margin.db", dir);
	sqlite3 *db = NULL;
	CU_ASSERT_EQUAL_FATAL(sqlite3_open(path, &db), SQLITE_OK);
	CU_ASSERT_EQUAL_FATAL(ledger_create(db, err, sizeof(err)), 0);
	book_rows(db, 0, 2, "CNY");	/* before margind started: not counted */

	static booking_conf_t conf;	/* api_cost keeps a pointer */
	memset(&conf, 0, sizeof(conf));
	snprintf(conf.currency, sizeof(conf.currency), "CNY");
	char ra[] = "ref-a", rb[] = "ref-b";
	conf.refs[0] = ra;
	conf.refs[1] = rb;
	conf.n_refs = 2;
	conf.prices = pricetab_new();
	CU_ASSERT_EQUAL_FATAL(api_cost_start(&conf, dir, err, sizeof(err)), 0);
	metrics_t *m = metrics_new();

	/* Nothing booked yet: the series exist, at 0. */
	CU_ASSERT_EQUAL(api_cost_update_metrics(dir, m), 0);
	char *t = render(m);
	check_grammar(t);
	CU_ASSERT_PTR_NOT_NULL(strstr(t, "# TYPE margin_cost_micros_total counter\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(t, "# TYPE margin_api_equivalent_micros_total counter\n"));
	CU_ASSERT_EQUAL(sample(t, "margin_cost_micros_total{kind=\"loaded\",currency=\"CNY\"}"), 0);
	CU_ASSERT_EQUAL(sample(t, "margin_api_equivalent_micros_total{reference=\"ref-a\",currency=\"CNY\"}"), 0);
	free(t);

	/* Rows 2..4 (row 2 without booked equivalents). */
	book_rows(db, 2, 3, "CNY");
	CU_ASSERT_EQUAL(api_cost_update_metrics(dir, m), 0);
	t = render(m);
	CU_ASSERT_EQUAL(sample(t, "margin_cost_micros_total{kind=\"marginal\",currency=\"CNY\"}"), 3 + 4 + 5);
	CU_ASSERT_EQUAL(sample(t, "margin_cost_micros_total{kind=\"loaded\",currency=\"CNY\"}"), 3 * (3 + 4 + 5));
	CU_ASSERT_EQUAL(sample(t, "margin_api_equivalent_micros_total{reference=\"ref-a\",currency=\"CNY\"}"), 10 * (4 + 5));
	CU_ASSERT_EQUAL(sample(t, "margin_api_equivalent_micros_total{reference=\"ref-b\",currency=\"CNY\"}"), 100 * (4 + 5));
	free(t);

	/* A scrape with nothing new changes nothing; new rows add, in the
	 * currency they were booked in. */
	CU_ASSERT_EQUAL(api_cost_update_metrics(dir, m), 0);
	book_rows(db, 5, 2, "USD");
	CU_ASSERT_EQUAL(api_cost_update_metrics(dir, m), 0);
	t = render(m);
	check_grammar(t);
	CU_ASSERT_EQUAL(sample(t, "margin_cost_micros_total{kind=\"marginal\",currency=\"CNY\"}"), 3 + 4 + 5);
	CU_ASSERT_EQUAL(sample(t, "margin_cost_micros_total{kind=\"loaded\",currency=\"USD\"}"), 3 * (6 + 7));
	CU_ASSERT_EQUAL(sample(t, "margin_api_equivalent_micros_total{reference=\"ref-b\",currency=\"CNY\"}"),
			100 * (4 + 5 + 6 + 7));
	free(t);

	/* Calls of an accounting window: the loaded counter takes their
	 * marginal cost when they are booked and the window's idle cost when
	 * it closes, once, however often it is scraped; a window with no
	 * calls adds its whole node cost. 1 CNY an hour = 1 micro a 3.6 s. */
	ledger_period_t p = { .start_ns = 0, .period_ns = LEDGER_HOUR_NS, .worker = "w", .worker_name = "w",
			      .hardware_profile = "hw", .currency = "CNY", .rate_busy_micros_per_hour = 1000000,
			      .rate_idle_micros_per_hour = 1000000, .engine_ns = 72000000000, .busy_ns = 72000000000,
			      .calls = 2, .marginal_micros = 20000 };
	ledger_row_t wr[2];
	for (int i = 0; i < 2; i++)
		wr[i] = (ledger_row_t){ .job = "b2", .custom_id = i ? "w1" : "w0", .line_no = i, .model = "m",
					.worker = "w", .worker_name = "w", .hardware_profile = "hw", .prompt_tokens = 10,
					.completion_tokens = 5, .busy_ns = 36000000000, .cost_marginal_micros = 10000,
					.cost_loaded_micros = 10000, .answered_at_ns = 1, .currency = "CNY",
					.rate_busy_micros_per_hour = 1000000, .rate_idle_micros_per_hour = 1000000,
					.period_start_ns = 0, .period_ns = LEDGER_HOUR_NS, .period_open = true };
	CU_ASSERT_EQUAL_FATAL(ledger_insert(db, wr, 2, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(ledger_period_add(db, &p, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(api_cost_update_metrics(dir, m), 0);
	t = render(m);
	CU_ASSERT_EQUAL(sample(t, "margin_cost_micros_total{kind=\"marginal\",currency=\"CNY\"}"), 12 + 20000);
	CU_ASSERT_EQUAL(sample(t, "margin_cost_micros_total{kind=\"loaded\",currency=\"CNY\"}"), 36 + 20000);
	free(t);
	/* The hour closes: the worker was attached all of it, so the window
	 * costs 1 CNY, 980000 micros of it idle. */
	CU_ASSERT_EQUAL_FATAL(ledger_period_close(db, &p, (uint64_t)LEDGER_HOUR_NS, NULL, NULL, err, sizeof(err)), 0);
	ledger_period_t idle = p;	/* the next hour: attached, no call */
	idle.start_ns = LEDGER_HOUR_NS;
	CU_ASSERT_EQUAL_FATAL(ledger_period_close(db, &idle, (uint64_t)LEDGER_HOUR_NS, NULL, NULL, err, sizeof(err)), 0);
	for (int k = 0; k < 2; k++)
		CU_ASSERT_EQUAL(api_cost_update_metrics(dir, m), 0);
	t = render(m);
	check_grammar(t);
	CU_ASSERT_EQUAL(sample(t, "margin_cost_micros_total{kind=\"marginal\",currency=\"CNY\"}"), 12 + 20000);
	CU_ASSERT_EQUAL(sample(t, "margin_cost_micros_total{kind=\"loaded\",currency=\"CNY\"}"),
			36 + 1000000 + 1000000);
	free(t);
	metrics_destroy(&m);
	sqlite3_close(db);
	pricetab_destroy(&conf.prices);
}

const cu_test_t metrics_tests[] = {
	{ "counters and gauges: escaping, order, values", test_counter_gauge_format },
	{ "histograms: cumulative buckets, +Inf, sum, count", test_histogram },
	{ "bad names, types and values are refused", test_misuse },
	{ "scheduler gauges and reset", test_reset },
	{ "a Result feeds margind's families", test_on_result },
	{ "cost and API-equivalent counters from the ledger", test_cost_counters },
	{ NULL, NULL },
};
