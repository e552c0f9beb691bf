/* report: totals equal the sums of the rows exactly (every column, every
 * grouping, every format, across a currency conversion); what-if
 * reproduces a ledger under its own profile; gross margin; break-even. */
#include "tests.h"
#include "cu_alloc.h"
#include "cost.h"
#include "report.h"
#include "lib/mg_int128.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define N_ROWS 11
#define DAY1 1716249600000000000LL	/* 2024-05-21T00:00:00Z */

static hwprof_t cpu;
static pricetab_t *prices;
static ledger_row_t rows[N_ROWS];
static char ids[N_ROWS][32];
static const char *const refs[] = { "gpt-4o", "gpt-4o-mini", "qwen-long" };

/* Two batches on two workers and days, booked per batch with cost_book(). */
static void fixture(void)
{
	char err[512] = "";
	CU_ASSERT_EQUAL_FATAL(hwprof_load(DEPLOY("hardware/cpu-2vcpu.conf"), &cpu, err, sizeof(err)), 0);
	prices = pricetab_new();
	CU_ASSERT_EQUAL_FATAL(pricetab_load(prices, DEPLOY("prices/fx.conf"), err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(pricetab_load(prices, DEPLOY("prices/closed-2024.conf"), err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(pricetab_load(prices, DEPLOY("prices/cn-2024-05-after.conf"), err, sizeof(err)), 0);
	unsigned long long s = 7;
	cost_call_t calls[N_ROWS];
	for (int i = 0; i < N_ROWS; i++) {
		bool a = i < 6;
		snprintf(ids[i], sizeof(ids[i]), "req-%d", i);
		rows[i] = (ledger_row_t){
			.job = a ? "batch_a" : "batch_b", .shard = a ? 0 : 1, .line_no = i, .custom_id = ids[i],
			.model = a ? "llama-110m" : "qwen2-0.5b", .worker = a ? "wid-1" : "wid-2",
			.worker_name = a ? "w1" : (i == 7 ? "" : "w2"), .hardware_profile = cpu.name,
			.prompt_tokens = 20 + test_rand(&s) % 2000, .completion_tokens = 1 + test_rand(&s) % 500,
			.busy_ns = i == 3 ? 0 : 1000000 + test_rand(&s) % 4000000000ULL, .flops = test_rand(&s) % (1ULL << 45),
			.currency = cpu.currency, .rate_busy_micros_per_hour = cpu.rate_busy_micros_per_hour,
			.rate_idle_micros_per_hour = cpu.rate_idle_micros_per_hour, .via_batch = i % 3 != 0,
			.answered_at_ns = (a ? DAY1 : DAY1 + METER_NS_PER_DAY) + (int64_t)i * 1000000000LL,
		};
		calls[i].busy_ns = rows[i].busy_ns;
	}
	CU_ASSERT_EQUAL_FATAL(cost_book(&cpu, 9000000000ULL, calls, 6), 0);
	CU_ASSERT_EQUAL_FATAL(cost_book(&cpu, 2500000000ULL, calls + 6, N_ROWS - 6), 0);
	for (int i = 0; i < N_ROWS; i++) {
		rows[i].idle_ns = calls[i].idle_ns;
		rows[i].cost_marginal_micros = calls[i].cost_marginal_micros;
		rows[i].cost_loaded_micros = calls[i].cost_loaded_micros;
	}
}

static void done(void)
{
	pricetab_destroy(&prices);
}

/* Per-call reports of rows x and of rows y with the same options give the
 * same JSON; returns x's count of calls priced now for the second ref. */
static uint64_t same_report(const ledger_row_t *x, size_t nx, const ledger_row_t *y, size_t ny,
			    const report_opts_t *o)
{
	char err[256] = "";
	report_t *a = NULL, *b = NULL;
	CU_ASSERT_EQUAL_FATAL(report_new(x, nx, REPORT_BY_CALL, o, &a, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(report_new(y, ny, REPORT_BY_CALL, o, &b, err, sizeof(err)), 0);
	char *ja = NULL, *jb = NULL;
	CU_ASSERT_EQUAL_FATAL(report_format_json(a, &ja), 0);
	CU_ASSERT_EQUAL_FATAL(report_format_json(b, &jb), 0);
	CU_ASSERT_STRING_EQUAL(ja, jb);
	uint64_t computed = o->n_refs > 1 ? a->api_computed[1] : 0;
	free(ja);
	free(jb);
	report_destroy(&a);
	report_destroy(&b);
	return computed;
}

static report_t *make(enum report_group g, const char *currency)
{
	report_opts_t o = { .currency = currency, .prices = prices, .refs = refs, .n_refs = 3 };
	report_t *r = NULL;
	char err[512] = "";
	int rc = report_new(rows, N_ROWS, g, &o, &r, err, sizeof(err));
	if (rc < 0)
		fprintf(stderr, "%s\n", err);
	CU_ASSERT_EQUAL_FATAL(rc, 0);
	return r;
}

static void check_sums(const report_t *r)
{
	report_row_t s = { 0 };
	int64_t api[3] = { 0 };
	for (size_t i = 0; i < r->n_rows; i++) {
		const report_row_t *x = &r->rows[i];
		s.calls += x->calls;
		s.prompt_tokens += x->prompt_tokens;
		s.completion_tokens += x->completion_tokens;
		s.busy_ns += x->busy_ns;
		s.idle_ns += x->idle_ns;
		s.flops += x->flops;
		s.cost_marginal_micros += x->cost_marginal_micros;
		s.cost_loaded_micros += x->cost_loaded_micros;
		for (int k = 0; k < 3; k++)
			api[k] += x->api_micros[k];
	}
	CU_ASSERT_EQUAL(s.calls, N_ROWS);
	CU_ASSERT_EQUAL(r->total.calls, s.calls);
	CU_ASSERT_EQUAL(r->total.prompt_tokens, s.prompt_tokens);
	CU_ASSERT_EQUAL(r->total.completion_tokens, s.completion_tokens);
	CU_ASSERT_EQUAL(r->total.busy_ns, s.busy_ns);
	CU_ASSERT_EQUAL(r->total.idle_ns, s.idle_ns);
	CU_ASSERT_EQUAL(r->total.flops, s.flops);
	CU_ASSERT_EQUAL(r->total.cost_marginal_micros, s.cost_marginal_micros);
	CU_ASSERT_EQUAL(r->total.cost_loaded_micros, s.cost_loaded_micros);
	for (int k = 0; k < 3; k++)
		CU_ASSERT_EQUAL(r->total.api_micros[k], api[k]);
}

static void test_totals_all_groupings(void)
{
	fixture();
	int64_t ledger_m = 0, ledger_l = 0;
	for (int i = 0; i < N_ROWS; i++) {
		ledger_m += rows[i].cost_marginal_micros;
		ledger_l += rows[i].cost_loaded_micros;
	}
	static const size_t want_rows[] = { N_ROWS, 2, 2, 3, 2 };	/* one w2 call has only its id */
	for (int g = REPORT_BY_CALL; g <= REPORT_BY_DAY; g++) {
		report_t *r = make((enum report_group)g, NULL);
		CU_ASSERT_STRING_EQUAL(r->currency, "CNY");
		CU_ASSERT_EQUAL(r->n_rows, want_rows[g]);
		check_sums(r);
		CU_ASSERT_EQUAL(r->total.cost_marginal_micros, ledger_m);	/* same currency: unchanged */
		CU_ASSERT_EQUAL(r->total.cost_loaded_micros, ledger_l);
		if (g == REPORT_BY_DAY) {
			CU_ASSERT_STRING_EQUAL(r->rows[0].key, "2024-05-21");
			CU_ASSERT_STRING_EQUAL(r->rows[1].key, "2024-05-22");
		}
		report_destroy(&r);
		CU_ASSERT_PTR_NULL(r);
	}
	/* The API equivalent of one call, by hand from the price table:
	 * gpt-4o list (row 0 is not via batch) 2.50 / 10.00 USD per 1M at 7.2. */
	report_t *r = make(REPORT_BY_CALL, NULL);
	int64_t want = llround((double)(rows[0].prompt_tokens * 25 + rows[0].completion_tokens * 100) / 10 * 7.2);
	CU_ASSERT_EQUAL(r->rows[0].api_micros[0], want);
	CU_ASSERT_STRING_EQUAL(r->rows[0].key, "req-0");
	report_destroy(&r);
	done();
}

static void test_conversion_exact(void)
{
	fixture();
	report_t *r = make(REPORT_BY_MODEL, "USD");
	check_sums(r);
	int64_t cny = 0, usd;
	char err[256];
	for (int i = 0; i < N_ROWS; i++)
		cny += rows[i].cost_loaded_micros;
	CU_ASSERT_EQUAL(pricetab_convert(prices, cny, "CNY", "USD", &usd, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(r->total.cost_loaded_micros, usd);	/* converted once, spread exactly */
	report_destroy(&r);
	done();
}

static int64_t jint(const json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}

static void test_json_shape(void)
{
	fixture();
	report_t *r = make(REPORT_BY_CALL, NULL);
	char *text = NULL;
	CU_ASSERT_EQUAL_FATAL(report_format_json(r, &text), 0);
	json_error_t je;
	json_t *root = json_loads(text, 0, &je);
	CU_ASSERT_PTR_NOT_NULL_FATAL(root);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(root, "currency")), "CNY");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(root, "hardware")), "cpu-2vcpu");
	json_t *jrows = json_object_get(root, "rows"), *total = json_object_get(root, "total");
	CU_ASSERT_EQUAL_FATAL(json_array_size(jrows), N_ROWS);
	static const char *const keys[] = { "custom_id", "model", "worker", "prompt_tokens", "completion_tokens",
					    "busy_ns", "flops", "cost_marginal_micros", "cost_loaded_micros",
					    "api_equivalent_micros" };
	static const char *const sums[] = { "prompt_tokens", "completion_tokens", "busy_ns", "flops",
					    "cost_marginal_micros", "cost_loaded_micros" };
	CU_ASSERT_EQUAL(json_object_size(json_array_get(jrows, 0)), 10);	/* exactly the keys */
	for (int k = 0; k < 10; k++)
		CU_ASSERT_PTR_NOT_NULL(json_object_get(json_array_get(jrows, 0), keys[k]));
	CU_ASSERT_EQUAL(json_object_size(total), 7);	/* the numeric keys */
	for (int k = 0; k < 6; k++) {
		int64_t s = 0;
		for (size_t i = 0; i < json_array_size(jrows); i++)
			s += jint(json_array_get(jrows, i), sums[k]);
		CU_ASSERT_EQUAL(jint(total, sums[k]), s);
	}
	for (int k = 0; k < 3; k++) {
		int64_t s = 0;
		for (size_t i = 0; i < json_array_size(jrows); i++)
			s += jint(json_object_get(json_array_get(jrows, i), "api_equivalent_micros"), refs[k]);
		CU_ASSERT_EQUAL(jint(json_object_get(total, "api_equivalent_micros"), refs[k]), s);
		CU_ASSERT(s > 0);
	}
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(json_array_get(jrows, 6), "worker")), "w2");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(json_array_get(jrows, 7), "worker")), "wid-2");
	json_decref(root);
	free(text);
	report_destroy(&r);

	/* By model: derived figures agree with the integers they come from. */
	r = make(REPORT_BY_MODEL, NULL);
	CU_ASSERT_EQUAL_FATAL(report_format_json(r, &text), 0);
	root = json_loads(text, 0, &je);
	CU_ASSERT_PTR_NOT_NULL_FATAL(root);
	json_t *g = json_array_get(json_object_get(root, "rows"), 0);
	const report_row_t *x = &r->rows[0];
	int64_t v;
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(g, "key")), "llama-110m");
	CU_ASSERT_EQUAL(jint(g, "calls"), 6);
	CU_ASSERT_EQUAL(report_per_1m_tokens(x->cost_loaded_micros, x->prompt_tokens + x->completion_tokens, &v), 0);
	CU_ASSERT_EQUAL(jint(g, "loaded_per_1m_tokens_micros"), v);
	CU_ASSERT_EQUAL(meter_gross_margin_ppm(x->api_micros[2], x->cost_loaded_micros, &v), 0);
	CU_ASSERT_EQUAL(jint(json_object_get(g, "gross_margin_ppm_at_api_price"), "qwen-long"), v);
	CU_ASSERT_EQUAL(report_utilization_ppm(x->busy_ns, x->idle_ns, &v), 0);
	CU_ASSERT_EQUAL(jint(g, "utilization_ppm"), v);
	CU_ASSERT(v > 0 && v < 1000000);
	json_decref(root);
	free(text);
	report_destroy(&r);
	done();
}

static void test_csv_and_text(void)
{
	fixture();
	report_t *r = make(REPORT_BY_CALL, NULL);
	char *text = NULL;
	CU_ASSERT_EQUAL_FATAL(report_format_csv(r, &text), 0);
	/* header + rows + total; column 10 is cost_loaded_micros. */
	int lines = 0;
	int64_t s = 0, total = -1;
	char *save = NULL;
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save), lines++) {
		char *p = line;
		for (int c = 0; c < 9; c++)
			p = strchr(p, ',') + 1;
		if (lines == 0) {
			CU_ASSERT(strncmp(line, "custom_id,model,worker,currency,", 32) == 0);
			CU_ASSERT(strncmp(p, "cost_loaded_micros,api_equivalent_micros:gpt-4o", 47) == 0);
		} else if (strncmp(line, "total,", 6) == 0)
			total = strtoll(p, NULL, 10);
		else
			s += strtoll(p, NULL, 10);
	}
	CU_ASSERT_EQUAL(lines, N_ROWS + 2);
	CU_ASSERT_EQUAL(total, s);
	free(text);
	report_destroy(&r);
	r = make(REPORT_BY_WORKER, NULL);
	CU_ASSERT_EQUAL_FATAL(report_format_csv(r, &text), 0);
	CU_ASSERT(strncmp(text, "worker,currency,calls,", 22) == 0);
	free(text);
	CU_ASSERT_EQUAL_FATAL(report_format_text(r, &text), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "total"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "w2"));
	free(text);
	report_destroy(&r);
	/* An unknown reference is an error that names it. */
	const char *bad[] = { "gpt-5-turbo-max" };
	report_opts_t o = { .prices = prices, .refs = bad, .n_refs = 1 };
	char err[256] = "";
	CU_ASSERT_EQUAL(report_new(rows, N_ROWS, REPORT_BY_CALL, &o, &r, err, sizeof(err)), -ENOENT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "gpt-5-turbo-max"));
	done();
}

static void test_whatif(void)
{
	fixture();
	ledger_row_t out[N_ROWS];
	char err[256];
	/* Under its own profile the ledger is reproduced to the micro. */
	CU_ASSERT_EQUAL_FATAL(report_whatif(rows, N_ROWS, &cpu, METER_Q(1, 1), out, err, sizeof(err)), 0);
	for (int i = 0; i < N_ROWS; i++) {
		CU_ASSERT_EQUAL(out[i].cost_marginal_micros, rows[i].cost_marginal_micros);
		CU_ASSERT_EQUAL(out[i].cost_loaded_micros, rows[i].cost_loaded_micros);
		CU_ASSERT_EQUAL(out[i].idle_ns, rows[i].idle_ns);
	}
	/* On the 8xH100 profile, twice as fast: each batch's new costs sum to
	 * the new node cost of its (halved) time. */
	hwprof_t h100;
	CU_ASSERT_EQUAL_FATAL(hwprof_load(DEPLOY("hardware/8xh100.conf"), &h100, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(report_whatif(rows, N_ROWS, &h100, METER_Q(1, 2), out, err, sizeof(err)), 0);
	for (int b = 0; b < 2; b++) {
		int lo = b ? 6 : 0, hi = b ? N_ROWS : 6;
		uint64_t busy = 0, idle = 0, old_busy = 0;
		int64_t m = 0, l = 0, want;
		for (int i = lo; i < hi; i++) {
			busy += out[i].busy_ns;
			idle += out[i].idle_ns;
			old_busy += rows[i].busy_ns;
			m += out[i].cost_marginal_micros;
			l += out[i].cost_loaded_micros;
			CU_ASSERT_STRING_EQUAL(out[i].hardware_profile, "8xh100");
			CU_ASSERT_STRING_EQUAL(out[i].custom_id, rows[i].custom_id);
		}
		CU_ASSERT(busy + 3 >= old_busy / 2 && busy <= old_busy / 2 + 3);
		CU_ASSERT_EQUAL(meter_cost_of_ns(h100.rate_busy_micros_per_hour, busy, &want), 0);
		CU_ASSERT_EQUAL(m, want);
		CU_ASSERT_EQUAL(meter_cost_of_period(h100.rate_busy_micros_per_hour, busy, h100.rate_idle_micros_per_hour,
						     idle, &want), 0);
		CU_ASSERT_EQUAL(l, want);
	}
	CU_ASSERT_EQUAL(report_whatif(rows, N_ROWS, &h100, METER_Q(0, 1), out, err, sizeof(err)), -EINVAL);
	done();
}

static void test_breakeven(void)
{
	/* economics.md 5.6: a 500,000-yuan deployment and a saving of 10,000,
	 * 20,000 or 50,000 yuan per day: 50, 25, 10 days. Here the saving comes
	 * from 10,000 / 20,000 / 50,000 calls a day, each 1 yuan cheaper than the
	 * API on a node whose own cost is not counted (rates 0). */
	static const double calls[] = { 10000, 20000, 50000 }, days[] = { 50, 25, 10 };
	for (int i = 0; i < 3; i++) {
		report_breakeven_in_t in = { .calls = 100, .busy_ns = 100 * 1000000000ULL,
					     .api_micros = 100 * METER_MICROS, .one_off_micros = 500000 * METER_MICROS,
					     .calls_per_day = calls[i] };
		report_breakeven_t b;
		CU_ASSERT_EQUAL_FATAL(report_breakeven(&in, &b), 0);
		CU_ASSERT_DOUBLE_EQUAL(b.saving_per_day_micros, calls[i] * METER_MICROS, 1e-3);
		CU_ASSERT_DOUBLE_EQUAL(b.days_to_recover, days[i], 1e-9);
	}
	/* At the break-even volume, self-hosting and the API cost the same. */
	report_breakeven_in_t in = { .rate_busy_micros_per_hour = 67493836, .rate_idle_micros_per_hour = 60000000,
				     .calls = 1000, .busy_ns = 1000 * 2000000000ULL, .api_micros = 1000 * 50000 };
	report_breakeven_t b;
	CU_ASSERT_EQUAL_FATAL(report_breakeven(&in, &b), 0);
	double n = b.breakeven_calls_per_day;
	double self = (double)b.fixed_per_day_micros + n * b.extra_per_call_micros, api = n * b.api_per_call_micros;
	CU_ASSERT(isfinite(n) && fabs(self - api) < 1e-6 * api);
	CU_ASSERT_DOUBLE_EQUAL(b.capacity_calls_per_day, 43200, 1e-9);	/* 2 s a call */
	CU_ASSERT(b.reachable == (n <= 43200));
	CU_ASSERT_DOUBLE_EQUAL(b.breakeven_utilization, n / 43200, 1e-12);
	CU_ASSERT_EQUAL(b.fixed_per_day_micros, 60000000LL * 24);
	/* An API cheaper than the extra power of a call: never. */
	in.api_micros = 1;
	CU_ASSERT_EQUAL_FATAL(report_breakeven(&in, &b), 0);
	CU_ASSERT(isinf(b.breakeven_calls_per_day) && !b.reachable);
	in.calls = 0;
	CU_ASSERT_EQUAL(report_breakeven(&in, &b), -EINVAL);
}

/* Gross margin at our own sale price, by model: (sale - loaded) / sale. */
static void test_sale_price(void)
{
	fixture();
	report_opts_t o = { .prices = prices, .refs = refs, .n_refs = 3, .sale = "qwen-long" };
	report_t *r = NULL;
	char err[256], *text = NULL;
	CU_ASSERT_EQUAL_FATAL(report_new(rows, N_ROWS, REPORT_BY_MODEL, &o, &r, err, sizeof(err)), 0);
	CU_ASSERT(r->has_sale);
	for (size_t i = 0; i < r->n_rows; i++)
		CU_ASSERT_EQUAL(r->rows[i].sale_micros, r->rows[i].api_micros[2]);	/* same entry */
	CU_ASSERT_EQUAL(r->total.sale_micros, r->rows[0].sale_micros + r->rows[1].sale_micros);
	CU_ASSERT_EQUAL_FATAL(report_format_json(r, &text), 0);
	json_error_t je;
	json_t *root = json_loads(text, 0, &je), *t = json_object_get(root, "total");
	int64_t gm;
	CU_ASSERT_EQUAL(meter_gross_margin_ppm(r->total.sale_micros, r->total.cost_loaded_micros, &gm), 0);
	CU_ASSERT_EQUAL(jint(t, "gross_margin_ppm"), gm);
	CU_ASSERT_EQUAL(jint(t, "sale_micros"), r->total.sale_micros);
	json_decref(root);
	free(text);
	report_destroy(&r);
	o.sale = "no-such-price";
	CU_ASSERT_EQUAL(report_new(rows, N_ROWS, REPORT_BY_MODEL, &o, &r, err, sizeof(err)), -ENOENT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "no-such-price"));
	done();
}

/* Ledger rows through SQLite and back give the same report. */
static void test_from_sqlite(void)
{
	fixture();
	sqlite3 *db = NULL;
	char err[512] = "";
	ledger_rows_t *got = NULL;
	CU_ASSERT_EQUAL_FATAL(sqlite3_open(":memory:", &db), SQLITE_OK);
	CU_ASSERT_EQUAL_FATAL(ledger_create(db, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(ledger_insert(db, rows, N_ROWS, err, sizeof(err)), 0);
	ledger_filter_t f = { .job = "batch_b" };
	CU_ASSERT_EQUAL_FATAL(ledger_select(db, &f, &got, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(got->n, N_ROWS - 6);
	report_opts_t o = { .prices = prices, .refs = refs, .n_refs = 3 };
	same_report(got->v, got->n, rows + 6, N_ROWS - 6, &o);
	ledger_rows_destroy(&got);
	sqlite3_close(db);
	done();
}

/* Booked equivalents (what the calls cost on the APIs when they were
 * answered, here as if with an older price table: the table's price plus a
 * mark per row) are what a report shows by default; the what-if
 * recomputes them all with the loaded table; a call booked without one is
 * priced now, counted and named; totals stay the sums of the rows. */
static ledger_api_price_t booked_price[3];
static ledger_api_t booked[N_ROWS][3];

static void book_equivalents(size_t without_mini_from)
{
	char err[256];
	for (int k = 0; k < 3; k++)
		booked_price[k] = (ledger_api_price_t){ .ref_model = refs[k], .currency = "CNY", .price_currency = "USD",
							.input_per_1m = "?", .output_per_1m = "?", .fx_rate = "7.2",
							.fx_source = "", .price_table = "older", .price_source = "test",
							.price_date = "2024" };
	for (int i = 0; i < N_ROWS; i++) {
		size_t n = 0;
		for (int k = 0; k < 3; k++) {
			if (k == 1 && (size_t)i >= without_mini_from)
				continue;
			int64_t now;
			CU_ASSERT_EQUAL_FATAL(cost_api_equivalent(prices, pricetab_find(prices, refs[k]), rows[i].prompt_tokens,
								  rows[i].completion_tokens, rows[i].via_batch, "CNY", &now,
								  err, sizeof(err)), 0);
			booked[i][n++] = (ledger_api_t){ &booked_price[k], now + 1000 * (i + 1) + k };
		}
		rows[i].api = booked[i];
		rows[i].n_api = n;
	}
}

static report_t *make_opts(enum report_group g, const char *currency, const char *const *rf, size_t n_rf, bool whatif,
			   int want_rc)
{
	report_opts_t o = { .currency = currency, .prices = prices, .refs = rf, .n_refs = n_rf,
			    .whatif_prices = whatif };
	report_t *r = NULL;
	char err[512] = "";
	int rc = report_new(rows, N_ROWS, g, &o, &r, err, sizeof(err));
	if (rc != want_rc)
		fprintf(stderr, "report_new: %d %s\n", rc, err);
	CU_ASSERT_EQUAL(rc, want_rc);
	return r;
}

static void test_booked(void)
{
	char err[256], note[1024];
	fixture();
	book_equivalents(5);	/* gpt-4o-mini booked for rows 0..4 only */
	report_t *r = make_opts(REPORT_BY_CALL, NULL, refs, 3, false, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(r);
	for (int i = 0; i < N_ROWS; i++) {
		int64_t now;
		CU_ASSERT_EQUAL(r->rows[i].api_micros[0], booked[i][0].micros);
		CU_ASSERT_EQUAL(cost_api_equivalent(prices, pricetab_find(prices, "gpt-4o-mini"), rows[i].prompt_tokens,
						    rows[i].completion_tokens, rows[i].via_batch, "CNY", &now, err,
						    sizeof(err)), 0);
		CU_ASSERT_EQUAL(r->rows[i].api_micros[1], i < 5 ? booked[i][1].micros : now);
		CU_ASSERT_EQUAL(r->rows[i].api_micros[2], booked[i][i < 5 ? 2 : 1].micros);
	}
	check_sums(r);
	CU_ASSERT_EQUAL(r->api_computed[0], 0);
	CU_ASSERT_EQUAL(r->api_computed[1], N_ROWS - 5);
	CU_ASSERT_EQUAL(r->api_computed[2], 0);
	CU_ASSERT_STRING_EQUAL(report_api_basis(r), "booked+computed");
	report_api_note(r, note, sizeof(note));
	CU_ASSERT_PTR_NOT_NULL(strstr(note, "gpt-4o-mini 6 of 11"));
	CU_ASSERT_PTR_NOT_NULL(strstr(note, pricetab_name(prices)));
	char *text = NULL;
	CU_ASSERT_EQUAL_FATAL(report_format_json(r, &text), 0);
	json_t *root = json_loads(text, 0, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(root);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(root, "api_basis")), "booked+computed");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(root, "api_note")), note);
	CU_ASSERT_EQUAL(jint(json_object_get(root, "api_computed_calls"), "gpt-4o-mini"), N_ROWS - 5);
	CU_ASSERT_EQUAL(jint(json_object_get(json_object_get(root, "total"), "api_equivalent_micros"), "gpt-4o"),
			r->total.api_micros[0]);
	json_decref(root);
	free(text);
	CU_ASSERT_EQUAL_FATAL(report_format_text(r, &text), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(text, note));
	free(text);
	report_destroy(&r);

	/* Grouped the same: the rows and total add up what was booked. */
	r = make_opts(REPORT_BY_BATCH, NULL, refs, 3, false, 0);
	int64_t want = 0;
	for (int i = 0; i < 6; i++)
		want += booked[i][0].micros;
	CU_ASSERT_EQUAL(r->rows[0].api_micros[0], want);
	check_sums(r);
	report_destroy(&r);

	/* What-if: every call priced with the loaded table. */
	r = make_opts(REPORT_BY_CALL, NULL, refs, 3, true, 0);
	for (int i = 0; i < N_ROWS; i++)
		for (int k = 0; k < 3; k++) {
			int64_t now;
			CU_ASSERT_EQUAL(cost_api_equivalent(prices, pricetab_find(prices, refs[k]), rows[i].prompt_tokens,
							    rows[i].completion_tokens, rows[i].via_batch, "CNY", &now, err,
							    sizeof(err)), 0);
			CU_ASSERT_EQUAL(r->rows[i].api_micros[k], now);
		}
	check_sums(r);
	CU_ASSERT_STRING_EQUAL(report_api_basis(r), "what-if");
	CU_ASSERT_PTR_NOT_NULL(strstr(report_api_note(r, note, sizeof(note)), "what-if"));
	report_destroy(&r);

	/* All booked: a reference the loaded table no longer has still
	 * reports; one call without it and it is an error naming it. */
	for (int k = 0; k < 3; k++)
		booked_price[k].ref_model = k == 0 ? "retired-model" : refs[k];
	const char *retired[] = { "retired-model" };
	r = make_opts(REPORT_BY_CALL, NULL, retired, 1, false, 0);
	CU_ASSERT_STRING_EQUAL(report_api_basis(r), "booked");
	CU_ASSERT_STRING_EQUAL(report_api_note(r, note, sizeof(note)), "closed-API equivalents as booked with each call");
	CU_ASSERT_EQUAL(r->rows[3].api_micros[0], booked[3][0].micros);
	report_destroy(&r);
	rows[7].n_api = 0;
	report_opts_t o = { .prices = prices, .refs = retired, .n_refs = 1 };
	CU_ASSERT_EQUAL(report_new(rows, N_ROWS, REPORT_BY_CALL, &o, &r, err, sizeof(err)), -ENOENT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "retired-model"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "no booked equivalent"));

	/* Nothing booked at all: computed, and said. */
	for (int i = 0; i < N_ROWS; i++)
		rows[i].n_api = 0;
	r = make_opts(REPORT_BY_CALL, NULL, refs, 3, false, 0);
	CU_ASSERT_STRING_EQUAL(report_api_basis(r), "computed");
	CU_ASSERT_PTR_NOT_NULL(strstr(report_api_note(r, note, sizeof(note)), "no call has a booked"));
	report_destroy(&r);
	done();
}

/* Booked CNY equivalents in a USD report: each reference's total is the
 * booked total converted once, and still the sum of the rows. */
static void test_booked_conversion(void)
{
	char err[256], note[1024];
	fixture();
	book_equivalents(N_ROWS);
	report_t *r = make_opts(REPORT_BY_MODEL, "USD", refs, 3, false, 0);
	check_sums(r);
	for (int k = 0; k < 3; k++) {
		int64_t cny = 0, usd;
		for (int i = 0; i < N_ROWS; i++)
			cny += booked[i][k].micros;
		CU_ASSERT_EQUAL(pricetab_convert(prices, cny, "CNY", "USD", &usd, err, sizeof(err)), 0);
		CU_ASSERT_EQUAL(r->total.api_micros[k], usd);
	}
	CU_ASSERT(r->api_converted);
	CU_ASSERT_PTR_NOT_NULL(strstr(report_api_note(r, note, sizeof(note)), "converted into USD"));
	report_destroy(&r);
	done();
}

/* Booked equivalents through SQLite: the same report as from memory. */
static void test_booked_from_sqlite(void)
{
	fixture();
	book_equivalents(4);
	sqlite3 *db = NULL;
	char err[512] = "";
	ledger_rows_t *got = NULL;
	CU_ASSERT_EQUAL_FATAL(sqlite3_open(":memory:", &db), SQLITE_OK);
	CU_ASSERT_EQUAL_FATAL(ledger_create(db, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(ledger_insert(db, rows, N_ROWS, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(ledger_select(db, NULL, &got, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(got->n, N_ROWS);
	report_opts_t o = { .prices = prices, .refs = refs, .n_refs = 3 };
	CU_ASSERT_EQUAL(same_report(got->v, got->n, rows, N_ROWS, &o), N_ROWS - 4);
	ledger_rows_destroy(&got);
	sqlite3_close(db);
	done();
}

/* --- every derived figure of every format, against its definition --- */

/* round(n / d), half away from zero, d > 0: the definition of every
 * derived figure (docs/economics.md section 6), written out here so the
 * check does not use the code it checks. */
static int64_t half_away(mg_i128 n, mg_i128 d)
{
	mg_i128 q = (n < 0 ? -n : n) * 2 + d;
	q /= 2 * d;
	return (int64_t)(n < 0 ? -q : q);
}

/* A group's sums, from the ledger rows. */
typedef struct want {
	char key[96];
	uint64_t calls, ptok, ctok, busy, idle;
	int64_t marg, load, api[3], sale;
} want_t;

#define LONG_A "batch_6f1d2a7c9e0b4d3f8a5c1e7b2d9f4a60"
#define LONG_B "batch_6f1d2a7c9e0b4d3f8a5c1e7b2d9f4a61"

static void want_key(enum report_group g, const ledger_row_t *w, char *buf, size_t len)
{
	switch (g) {
	case REPORT_BY_CALL: snprintf(buf, len, "%s", w->custom_id); break;
	case REPORT_BY_BATCH: snprintf(buf, len, "%s", w->job); break;
	case REPORT_BY_MODEL: snprintf(buf, len, "%s", w->model); break;
	case REPORT_BY_WORKER: snprintf(buf, len, "%s", w->worker_name[0] ? w->worker_name : w->worker); break;
	case REPORT_BY_DAY: {
		time_t t = (time_t)(w->answered_at_ns / 1000000000LL);
		struct tm tm;
		gmtime_r(&t, &tm);
		strftime(buf, len, "%Y-%m-%d", &tm);
		break;
	}
	}
}

/* The groups of g (plus the total, last); returns their count. */
static size_t want_groups(enum report_group g, want_t *out)
{
	char err[256];
	size_t n = 0;
	memset(out, 0, (N_ROWS + 1) * sizeof(*out));
	for (int i = 0; i < N_ROWS; i++) {
		char key[96];
		want_key(g, &rows[i], key, sizeof(key));
		size_t j = 0;
		while (g != REPORT_BY_CALL && j < n && strcmp(out[j].key, key) != 0)
			j++;
		if (g == REPORT_BY_CALL || j == n)
			snprintf(out[j = n++].key, sizeof(out[0].key), "%s", key);
		for (int t = 0; t < 2; t++) {
			want_t *x = t ? &out[N_ROWS] : &out[j];
			x->calls++;
			x->ptok += rows[i].prompt_tokens;
			x->ctok += rows[i].completion_tokens;
			x->busy += rows[i].busy_ns;
			x->idle += rows[i].idle_ns;
			x->marg += rows[i].cost_marginal_micros;
			x->load += rows[i].cost_loaded_micros;
			for (int k = 0; k < 3; k++) {
				int64_t v;
				CU_ASSERT_EQUAL_FATAL(cost_api_equivalent(prices, pricetab_find(prices, refs[k]),
									  rows[i].prompt_tokens, rows[i].completion_tokens,
									  rows[i].via_batch, "CNY", &v, err, sizeof(err)), 0);
				x->api[k] += v;
				if (k == 2)
					x->sale += v;	/* the sale price is qwen-long's */
			}
		}
	}
	snprintf(out[N_ROWS].key, sizeof(out[0].key), "total");
	out[n] = out[N_ROWS];
	return n + 1;
}

/* The derived figures of a group, by name; false when undefined. */
static bool want_derived(const want_t *x, const char *name, int ref, int64_t *ret)
{
	mg_i128 tok = (mg_i128)x->ptok + x->ctok;
	if (strcmp(name, "marginal_per_call_micros") == 0 || strcmp(name, "loaded_per_call_micros") == 0) {
		*ret = half_away(name[0] == 'm' ? x->marg : x->load, x->calls);
		return true;
	}
	if (strcmp(name, "marginal_per_1m_tokens_micros") == 0 || strcmp(name, "loaded_per_1m_tokens_micros") == 0 ||
	    strcmp(name, "api_per_1m_tokens_micros") == 0) {
		int64_t m = name[0] == 'm' ? x->marg : name[0] == 'l' ? x->load : x->api[ref];
		if (tok == 0)
			return false;
		*ret = half_away((mg_i128)m * 1000000, tok);
		return true;
	}
	if (strcmp(name, "utilization_ppm") == 0) {
		if (x->busy + x->idle == 0)
			return false;
		*ret = half_away((mg_i128)x->busy * 1000000, (mg_i128)x->busy + x->idle);
		return true;
	}
	if (strcmp(name, "gross_margin_ppm_at_api_price") == 0 || strcmp(name, "gross_margin_ppm") == 0) {
		int64_t price = strcmp(name, "gross_margin_ppm") == 0 ? x->sale : x->api[ref];
		if (price <= 0)
			return false;
		*ret = half_away(((mg_i128)price - x->load) * 1000000, price);
		return true;
	}
	CU_FAIL("unknown derived figure");
	return false;
}

static const char *const derived_names[] = { "marginal_per_call_micros", "loaded_per_call_micros",
					     "marginal_per_1m_tokens_micros", "loaded_per_1m_tokens_micros",
					     "utilization_ppm", "gross_margin_ppm" };

/* Splits one CSV line (quotes honoured) into fields; returns the count. */
static int csv_split(char *line, char **f, int max)
{
	int n = 0;
	char *w = line;
	while (n < max) {
		f[n++] = w;
		char *r = w;
		bool q = *r == '"';
		if (q)
			r++;
		for (;; r++) {
			if (q && *r == '"' && r[1] == '"') {
				*w++ = '"';
				r++;
			} else if (q && *r == '"') {
				q = false;
			} else if ((!q && *r == ',') || *r == '\0') {
				break;
			} else {
				*w++ = *r;
			}
		}
		bool end = *r == '\0';
		*w = '\0';
		if (end)
			break;
		w = r + 1;
	}
	return n;
}

static int col_of(char **head, int nh, const char *name)
{
	for (int c = 0; c < nh; c++)
		if (strcmp(head[c], name) == 0)
			return c;
	return -1;
}

/* Parses "12.345678" (6 decimals) into micros; "-" = undefined. */
static bool parse_micros(const char *s, int64_t *ret)
{
	long long a, b;
	int n = 0;
	bool neg = s[0] == '-';
	if (sscanf(s + neg, "%lld.%6lld%n", &a, &b, &n) != 2 || strlen(s + neg) != (size_t)n || n < 8)
		return false;
	*ret = (neg ? -1 : 1) * (a * 1000000 + b);
	return true;
}

/* "-12.34%" into hundredths of a percent. */
static bool parse_pct(const char *s, int64_t *ret)
{
	long long a, b;
	int n = 0;
	bool neg = s[0] == '-';
	if (sscanf(s + neg, "%lld.%2lld%%%n", &a, &b, &n) != 2 || strlen(s + neg) != (size_t)n)
		return false;
	*ret = (neg ? -1 : 1) * (a * 100 + b);
	return true;
}

static void check_csv(enum report_group g, const char *text, const want_t *w, size_t nw)
{
	char *copy = strdup(text), *save = NULL, *head[64], *f[64];
	CU_ASSERT_PTR_NOT_NULL_FATAL(copy);
	char *line = strtok_r(copy, "\n", &save);
	int nh = csv_split(line, head, 64);
	CU_ASSERT_STRING_EQUAL(head[0], g == REPORT_BY_CALL ? "custom_id" : report_group_name(g));
	int cur = col_of(head, nh, "currency");
	CU_ASSERT(cur > 0);
	size_t i = 0;
	for (line = strtok_r(NULL, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save), i++) {
		int n = csv_split(line, f, 64);
		CU_ASSERT_EQUAL_FATAL(n, nh);
		CU_ASSERT_FATAL(i < nw);
		const want_t *x = &w[i];
		CU_ASSERT_STRING_EQUAL(f[0], x->key);
		CU_ASSERT(cur > 0 && strcmp(f[cur], "CNY") == 0);	/* on every row */
		int cl = col_of(head, nh, "cost_loaded_micros"), cm = col_of(head, nh, "cost_marginal_micros");
		CU_ASSERT_FATAL(cl > 0 && cm > 0);
		CU_ASSERT_EQUAL(strtoll(f[cl], NULL, 10), x->load);
		CU_ASSERT_EQUAL(strtoll(f[cm], NULL, 10), x->marg);
		int checked = 0;
		for (int c = 0; c < nh; c++) {
			char name[128];
			int ref = -1;
			snprintf(name, sizeof(name), "%s", head[c]);
			char *colon = strchr(name, ':');
			if (colon != NULL) {
				*colon = '\0';
				for (int k = 0; k < 3; k++)
					if (strcmp(colon + 1, refs[k]) == 0)
						ref = k;
				CU_ASSERT(ref >= 0);
				if (strcmp(name, "api_equivalent_micros") == 0) {
					CU_ASSERT_EQUAL(strtoll(f[c], NULL, 10), x->api[ref]);
					continue;
				}
			}
			bool derived = ref >= 0;
			for (size_t d = 0; d < sizeof(derived_names) / sizeof(derived_names[0]); d++)
				derived |= strcmp(name, derived_names[d]) == 0;
			if (!derived)
				continue;
			int64_t v;
			if (want_derived(x, name, ref, &v)) {
				char *end;
				long long got = strtoll(f[c], &end, 10);
				CU_ASSERT(f[c][0] != '\0' && *end == '\0' && got == v);
				if (got != v)
					fprintf(stderr, "csv %s row %s column %s: %s, want %lld\n", report_group_name(g), x->key,
						head[c], f[c], (long long)v);
			} else {
				CU_ASSERT_STRING_EQUAL(f[c], "");
			}
			checked++;
		}
		/* per call x2, per 1M x2, utilization, per ref x2, gross margin at the sale price */
		CU_ASSERT_EQUAL(checked, g == REPORT_BY_CALL ? 0 : 5 + 3 * 2 + 1);
	}
	CU_ASSERT_EQUAL(i, nw);
	free(copy);
}

static void check_json(enum report_group g, const char *text, const want_t *w, size_t nw)
{
	json_error_t je;
	json_t *root = json_loads(text, 0, &je), *jr = json_object_get(root, "rows");
	CU_ASSERT_PTR_NOT_NULL_FATAL(root);
	CU_ASSERT_EQUAL_FATAL(json_array_size(jr) + 1, nw);
	for (size_t i = 0; i < nw; i++) {
		const want_t *x = &w[i];
		json_t *o = i + 1 < nw ? json_array_get(jr, i) : json_object_get(root, "total");
		if (i + 1 < nw)
			CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(o, g == REPORT_BY_CALL ? "custom_id" : "key")),
					       x->key);
		CU_ASSERT_EQUAL(jint(o, "cost_loaded_micros"), x->load);
		CU_ASSERT_EQUAL(jint(o, "cost_marginal_micros"), x->marg);
		for (int k = 0; k < 3; k++)
			CU_ASSERT_EQUAL(jint(json_object_get(o, "api_equivalent_micros"), refs[k]), x->api[k]);
		if (g == REPORT_BY_CALL)
			continue;
		int64_t v;
		for (size_t d = 0; d < sizeof(derived_names) / sizeof(derived_names[0]); d++) {
			json_t *j = json_object_get(o, derived_names[d]);
			CU_ASSERT_PTR_NOT_NULL(j);
			bool def = want_derived(x, derived_names[d], -1, &v);
			CU_ASSERT(def ? json_is_integer(j) && json_integer_value(j) == v : json_is_null(j));
		}
		for (int k = 0; k < 3; k++) {
			static const char *const per_ref[] = { "api_per_1m_tokens_micros", "gross_margin_ppm_at_api_price" };
			for (int d = 0; d < 2; d++) {
				json_t *j = json_object_get(json_object_get(o, per_ref[d]), refs[k]);
				bool def = want_derived(x, per_ref[d], k, &v);
				CU_ASSERT(def ? json_is_integer(j) && json_integer_value(j) == v : json_is_null(j));
			}
		}
	}
	json_decref(root);
}

/* Text: key, calls, tokens, busy_s, loaded_cost, loaded/1M, then per
 * reference its /1M price and the gross margin at it. */
static void check_text(enum report_group g, const char *text, const want_t *w, size_t nw)
{
	char *copy = strdup(text), *save = NULL;
	CU_ASSERT_PTR_NOT_NULL_FATAL(copy);
	size_t i = 0;
	bool table = false;
	for (char *line = strtok_r(copy, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		char *tok[32], *s2 = NULL;
		int n = 0;
		if (line[0] == '(' || strncmp(line, "cost by", 7) == 0 || strncmp(line, "WHAT-IF", 7) == 0)
			continue;
		if (!table) {	/* the header */
			CU_ASSERT(strncmp(line, report_group_name(g), strlen(report_group_name(g))) == 0);
			table = true;
			continue;
		}
		for (char *t = strtok_r(line, " ", &s2); t != NULL && n < 32; t = strtok_r(NULL, " ", &s2))
			tok[n++] = t;
		CU_ASSERT_EQUAL_FATAL(n, 6 + 2 * 3);
		CU_ASSERT_FATAL(i < nw);
		const want_t *x = &w[i++];
		CU_ASSERT_STRING_EQUAL(tok[0], x->key);	/* whole, however long */
		CU_ASSERT_EQUAL(strtoull(tok[1], NULL, 10), x->calls);
		CU_ASSERT_EQUAL(strtoull(tok[2], NULL, 10), x->ptok + x->ctok);
		int64_t v, got;
		CU_ASSERT(parse_micros(tok[4], &got) && got == x->load);
		bool def = want_derived(x, "loaded_per_1m_tokens_micros", -1, &v);
		CU_ASSERT(def ? parse_micros(tok[5], &got) && got == v : strcmp(tok[5], "-") == 0);
		for (int k = 0; k < 3; k++) {
			def = want_derived(x, "api_per_1m_tokens_micros", k, &v);
			CU_ASSERT(def ? parse_micros(tok[6 + 2 * k], &got) && got == v : strcmp(tok[6 + 2 * k], "-") == 0);
			def = want_derived(x, "gross_margin_ppm_at_api_price", k, &v);
			CU_ASSERT(def ? parse_pct(tok[7 + 2 * k], &got) && got == half_away(v, 100) :
				  strcmp(tok[7 + 2 * k], "-inf") == 0);
		}
	}
	CU_ASSERT_EQUAL(i, nw);
	free(copy);
}

static void test_derived_every_format(void)
{
	fixture();
	for (int i = 0; i < N_ROWS; i++)
		rows[i].job = i < 6 ? LONG_A : LONG_B;	/* real batch ids are longer than 24 characters */
	report_opts_t o = { .prices = prices, .refs = refs, .n_refs = 3, .sale = "qwen-long" };
	for (int g = REPORT_BY_CALL; g <= REPORT_BY_DAY; g++) {
		want_t w[N_ROWS + 1];
		size_t nw = want_groups((enum report_group)g, w);
		report_t *r = NULL;
		char err[256], *text = NULL;
		CU_ASSERT_EQUAL_FATAL(report_new(rows, N_ROWS, (enum report_group)g, &o, &r, err, sizeof(err)), 0);
		CU_ASSERT_EQUAL_FATAL(report_format_csv(r, &text), 0);
		check_csv((enum report_group)g, text, w, nw);
		free(text);
		CU_ASSERT_EQUAL_FATAL(report_format_json(r, &text), 0);
		check_json((enum report_group)g, text, w, nw);
		free(text);
		CU_ASSERT_EQUAL_FATAL(report_format_text(r, &text), 0);
		check_text((enum report_group)g, text, w, nw);
		CU_ASSERT_PTR_NOT_NULL(strstr(text, "money in CNY"));
		free(text);
		report_destroy(&r);
	}
	done();
}

/* --- what-if and accounting-window marking --- */

/* The value of CSV column name on line (0 = header) of text, into buf. */
static char *csv_cell(const char *text, int line, const char *name, char *buf, size_t len)
{
	char *copy = strdup(text), *save = NULL, *head[64], *f[64];
	buf[0] = '\0';
	CU_ASSERT_PTR_NOT_NULL_FATAL(copy);
	char *l = strtok_r(copy, "\n", &save);
	int nh = csv_split(l, head, 64), c = col_of(head, nh, name);
	CU_ASSERT(c >= 0);
	for (int i = 0; i < line && l != NULL; i++)
		l = strtok_r(NULL, "\n", &save);
	CU_ASSERT_PTR_NOT_NULL(l);
	if (l != NULL && c >= 0 && csv_split(l, f, 64) == nh)
		snprintf(buf, len, "%s", f[c]);
	free(copy);
	return buf;
}

typedef struct formats {
	char *text, *csv;
	json_t *json;
} formats_t;

static int all_formats(enum report_group g, const report_opts_t *o, formats_t *ret, char *err, size_t errlen)
{
	report_t *r = NULL;
	char *js = NULL;
	int rc = report_new(rows, N_ROWS, g, o, &r, err, errlen);
	if (rc < 0)
		return rc;
	CU_ASSERT_EQUAL_FATAL(report_format_text(r, &ret->text), 0);
	CU_ASSERT_EQUAL_FATAL(report_format_csv(r, &ret->csv), 0);
	CU_ASSERT_EQUAL_FATAL(report_format_json(r, &js), 0);
	json_error_t je;
	ret->json = json_loads(js, 0, &je);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ret->json);
	free(js);
	report_destroy(&r);
	return 0;
}

static void formats_done(formats_t *f)
{
	free(f->text);
	free(f->csv);
	json_decref(f->json);
	memset(f, 0, sizeof(*f));
}

static const char *jstr(const json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "(not a string)";
}

/* Every format says when a report is a what-if, on which hardware, at
 * what speed and on what basis, and with which prices; and says nothing
 * of the kind when it is as booked. */
static void test_whatif_marking(void)
{
	fixture();
	char err[512], cell[512];
	formats_t f;
	report_opts_t o = { .prices = prices, .refs = refs, .n_refs = 3 };
	for (int g = REPORT_BY_CALL; g <= REPORT_BY_DAY; g += REPORT_BY_DAY) {	/* by call and by day */
		CU_ASSERT_EQUAL_FATAL(all_formats((enum report_group)g, &o, &f, err, sizeof(err)), 0);
		CU_ASSERT(strncmp(f.text, "cost by ", 8) == 0);
		CU_ASSERT_PTR_NULL(strstr(f.text, "WHAT-IF"));
		CU_ASSERT(json_is_null(json_object_get(f.json, "what_if")));
		for (int line = 1; line <= (g == REPORT_BY_CALL ? N_ROWS + 1 : 3); line++)
			CU_ASSERT_STRING_EQUAL(csv_cell(f.csv, line, "what_if", cell, sizeof(cell)), "");
		formats_done(&f);
	}

	/* Another machine, at an estimated speed. */
	report_whatif_t wi = { .hardware = "8xh100", .speed = 3.2, .speed_basis = "estimate",
			       .speed_why = "peak FLOP/s and bandwidth ratio x 0.4 measured efficiency" };
	o.whatif = &wi;
	CU_ASSERT_EQUAL_FATAL(all_formats(REPORT_BY_BATCH, &o, &f, err, sizeof(err)), 0);
	CU_ASSERT(strncmp(f.text, "WHAT-IF: cost by batch", 22) == 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(f.text, "repriced on 8xh100 at 3.2x the booked hardware's speed, estimate: "
					      "peak FLOP/s and bandwidth ratio x 0.4 measured efficiency"));
	json_t *w = json_object_get(f.json, "what_if");
	CU_ASSERT_STRING_EQUAL(jstr(w, "hardware"), "8xh100");
	CU_ASSERT_DOUBLE_EQUAL(json_real_value(json_object_get(w, "speed")), 3.2, 1e-12);
	CU_ASSERT_STRING_EQUAL(jstr(w, "speed_basis"), "estimate");
	CU_ASSERT_STRING_EQUAL(jstr(w, "speed_why"), wi.speed_why);
	CU_ASSERT(json_is_null(json_object_get(w, "prices")));	/* the equivalents as booked */
	for (int line = 1; line <= 3; line++)
		CU_ASSERT_STRING_EQUAL(csv_cell(f.csv, line, "what_if", cell, sizeof(cell)),
				       "hardware=8xh100 speed=3.2x (estimate)");
	formats_done(&f);

	/* And other prices too. */
	o.whatif_prices = true;
	char want[512];
	snprintf(want, sizeof(want), "hardware=8xh100 speed=3.2x (estimate) prices=%s", pricetab_name(prices));
	CU_ASSERT_EQUAL_FATAL(all_formats(REPORT_BY_CALL, &o, &f, err, sizeof(err)), 0);
	CU_ASSERT(strncmp(f.text, "WHAT-IF: cost by call", 21) == 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(f.text, "what-if: closed-API equivalents recomputed"));
	CU_ASSERT_STRING_EQUAL(jstr(json_object_get(f.json, "what_if"), "prices"), pricetab_name(prices));
	CU_ASSERT_STRING_EQUAL(csv_cell(f.csv, 1, "what_if", cell, sizeof(cell)), want);
	CU_ASSERT_STRING_EQUAL(csv_cell(f.csv, N_ROWS + 1, "what_if", cell, sizeof(cell)), want);	/* total */
	formats_done(&f);

	/* Prices alone: no hardware named. */
	o.whatif = NULL;
	snprintf(want, sizeof(want), "prices=%s", pricetab_name(prices));
	CU_ASSERT_EQUAL_FATAL(all_formats(REPORT_BY_MODEL, &o, &f, err, sizeof(err)), 0);
	CU_ASSERT(strncmp(f.text, "WHAT-IF: cost by model", 22) == 0);
	w = json_object_get(f.json, "what_if");
	CU_ASSERT(json_is_null(json_object_get(w, "hardware")) && json_is_null(json_object_get(w, "speed")));
	CU_ASSERT_STRING_EQUAL(jstr(w, "prices"), pricetab_name(prices));
	CU_ASSERT_STRING_EQUAL(csv_cell(f.csv, 2, "what_if", cell, sizeof(cell)), want);
	formats_done(&f);

	/* The same hardware at a given speed: named after the rows' profile. */
	report_whatif_t same = { .speed = 0.5, .speed_basis = "given" };
	o = (report_opts_t){ .prices = prices, .refs = refs, .n_refs = 3, .whatif = &same };
	CU_ASSERT_EQUAL_FATAL(all_formats(REPORT_BY_DAY, &o, &f, err, sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(csv_cell(f.csv, 1, "what_if", cell, sizeof(cell)), "hardware=cpu-2vcpu speed=0.5x (given)");
	CU_ASSERT(json_is_null(json_object_get(json_object_get(f.json, "what_if"), "speed_why")));
	formats_done(&f);

	same.speed = 0;
	CU_ASSERT_EQUAL(all_formats(REPORT_BY_DAY, &o, &f, err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "speed"));
	done();
}

/* The loaded cost's accounting window, from hand-built ledger rows: JSON
 * names its length and rule and counts the provisional calls, the text
 * says it in words, the CSV per row. */
static void test_loaded_window(void)
{
	fixture();
	char err[512], cell[256];
	formats_t f;
	report_opts_t o = { .prices = prices, .refs = refs, .n_refs = 3 };
	const int64_t hour = 3600 * 1000000000LL;
	for (int i = 0; i < N_ROWS; i++) {
		rows[i].period_ns = hour;
		rows[i].period_start_ns = rows[i].answered_at_ns / hour * hour;
		rows[i].period_open = i >= 9;	/* batch_b's last two calls: the hour is still running */
	}
	CU_ASSERT_EQUAL_FATAL(all_formats(REPORT_BY_BATCH, &o, &f, err, sizeof(err)), 0);
	json_t *w = json_object_get(f.json, "loaded_window");
	CU_ASSERT_EQUAL(jint(w, "period_s"), 3600);
	CU_ASSERT_STRING_EQUAL(jstr(w, "rule"), "window");
	CU_ASSERT_EQUAL(jint(w, "open_calls"), 2);
	CU_ASSERT_PTR_NOT_NULL(strstr(f.text, "(loaded cost: each node's cost of each UTC hour spread over that hour's "
					      "calls; 2 calls in an open hour are provisional)\n"));
	CU_ASSERT_STRING_EQUAL(csv_cell(f.csv, 1, "loaded_window", cell, sizeof(cell)), "rule=window period=3600s open=0");
	CU_ASSERT_STRING_EQUAL(csv_cell(f.csv, 2, "loaded_window", cell, sizeof(cell)), "rule=window period=3600s open=2");
	CU_ASSERT_STRING_EQUAL(csv_cell(f.csv, 3, "loaded_window", cell, sizeof(cell)), "rule=window period=3600s open=2");
	formats_done(&f);

	/* One open call, by day windows. */
	for (int i = 0; i < N_ROWS; i++) {
		rows[i].period_ns = 24 * hour;
		rows[i].period_open = i == 10;
	}
	CU_ASSERT_EQUAL_FATAL(all_formats(REPORT_BY_CALL, &o, &f, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(jint(json_object_get(f.json, "loaded_window"), "period_s"), 86400);
	CU_ASSERT_PTR_NOT_NULL(strstr(f.text, "each UTC day spread over that day's calls; 1 call in an open day is "
					      "provisional)"));
	CU_ASSERT_STRING_EQUAL(csv_cell(f.csv, 11, "loaded_window", cell, sizeof(cell)), "rule=window period=86400s open=1");
	CU_ASSERT_STRING_EQUAL(csv_cell(f.csv, 10, "loaded_window", cell, sizeof(cell)), "rule=window period=86400s open=0");
	formats_done(&f);

	/* Booked before windows: the carried rule, said so. */
	for (int i = 0; i < N_ROWS; i++)
		rows[i].period_ns = 0, rows[i].period_open = false;
	CU_ASSERT_EQUAL_FATAL(all_formats(REPORT_BY_MODEL, &o, &f, err, sizeof(err)), 0);
	w = json_object_get(f.json, "loaded_window");
	CU_ASSERT(json_is_null(json_object_get(w, "period_s")));
	CU_ASSERT_STRING_EQUAL(jstr(w, "rule"), "carried");
	CU_ASSERT_EQUAL(jint(w, "open_calls"), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(f.text, "(loaded cost: each node's idle time charged to the next Result"));
	CU_ASSERT_STRING_EQUAL(csv_cell(f.csv, 3, "loaded_window", cell, sizeof(cell)), "rule=carried");
	formats_done(&f);

	/* batch_a carried, batch_b by hour: mixed in the total only. */
	for (int i = 6; i < N_ROWS; i++)
		rows[i].period_ns = hour;
	rows[8].period_open = true;
	CU_ASSERT_EQUAL_FATAL(all_formats(REPORT_BY_BATCH, &o, &f, err, sizeof(err)), 0);
	w = json_object_get(f.json, "loaded_window");
	CU_ASSERT(json_is_null(json_object_get(w, "period_s")));
	CU_ASSERT_STRING_EQUAL(jstr(w, "rule"), "mixed");
	CU_ASSERT_EQUAL(jint(w, "open_calls"), 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(f.text, "loaded cost: mixed rules"));
	CU_ASSERT_PTR_NOT_NULL(strstr(f.text, "1 call in an open window is provisional"));
	CU_ASSERT_STRING_EQUAL(csv_cell(f.csv, 1, "loaded_window", cell, sizeof(cell)), "rule=carried");
	CU_ASSERT_STRING_EQUAL(csv_cell(f.csv, 2, "loaded_window", cell, sizeof(cell)), "rule=window period=3600s open=1");
	CU_ASSERT_STRING_EQUAL(csv_cell(f.csv, 3, "loaded_window", cell, sizeof(cell)), "rule=mixed open=1");
	formats_done(&f);

	rows[4].period_ns = -1;
	CU_ASSERT_EQUAL(all_formats(REPORT_BY_BATCH, &o, &f, err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "line 4"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "accounting window"));
	done();
}

#define N_EMB 5

/* Every grouping of the mixed ledger: the rows sum to the total per
 * reference, and the derived figures of a reference use its kind's calls
 * only (test_embedding_mixed). */
static void check_mixed_groupings(const ledger_row_t *all, size_t n, const report_opts_t *o,
				  const int64_t want_api[4], const int64_t want_load[2], const uint64_t want_tok[2])
{
	char err[512] = "";
	report_t *r = NULL;
	char *text = NULL;
	json_t *root;
	json_error_t je;
	for (int g = REPORT_BY_BATCH; g <= REPORT_BY_DAY; g++) {
		CU_ASSERT_EQUAL_FATAL(report_new(all, n, (enum report_group)g, o, &r, err, sizeof(err)), 0);
		for (int k = 0; k < 4; k++) {
			int64_t sum = 0;
			uint64_t calls = 0;
			for (size_t i = 0; i < r->n_rows; i++) {
				sum += r->rows[i].api_micros[k];
				calls += r->rows[i].api_calls[k];
			}
			CU_ASSERT_EQUAL(sum, want_api[k]);
			CU_ASSERT_EQUAL(r->total.api_micros[k], want_api[k]);
			CU_ASSERT_EQUAL(calls, k < 2 ? N_ROWS : N_EMB);
			bool e = k >= 2;
			CU_ASSERT_EQUAL(r->total.api_tokens[k], want_tok[e]);
			CU_ASSERT_EQUAL(r->total.api_loaded[k], want_load[e]);
		}
		CU_ASSERT_EQUAL(r->total.cost_loaded_micros, want_load[0] + want_load[1]);
		CU_ASSERT_EQUAL_FATAL(report_format_json(r, &text), 0);
		root = json_loads(text, 0, &je);
		CU_ASSERT_PTR_NOT_NULL_FATAL(root);
		json_t *t = json_object_get(root, "total");
		int64_t v;
		CU_ASSERT_EQUAL(report_per_1m_tokens(want_api[2], want_tok[1], &v), 0);
		CU_ASSERT_EQUAL(jint(json_object_get(t, "api_per_1m_tokens_micros"), "text-embedding-3-small"), v);
		CU_ASSERT_EQUAL(report_per_1m_tokens(want_api[0], want_tok[0], &v), 0);
		CU_ASSERT_EQUAL(jint(json_object_get(t, "api_per_1m_tokens_micros"), "gpt-4o-mini"), v);
		CU_ASSERT_EQUAL(meter_gross_margin_ppm(want_api[3], want_load[1], &v), 0);
		CU_ASSERT_EQUAL(jint(json_object_get(t, "gross_margin_ppm_at_api_price"), "text-embedding-v3"), v);
		CU_ASSERT_EQUAL(meter_gross_margin_ppm(want_api[1], want_load[0], &v), 0);
		CU_ASSERT_EQUAL(jint(json_object_get(t, "gross_margin_ppm_at_api_price"), "qwen-long"), v);
		CU_ASSERT_EQUAL(jint(json_object_get(t, "api_compared_calls"), "text-embedding-v3"), N_EMB);
		CU_ASSERT_EQUAL(jint(json_object_get(t, "api_compared_tokens"), "gpt-4o-mini"), (int64_t)want_tok[0]);
		if (g == REPORT_BY_BATCH) {
			/* batch_a, batch_b, batch_e: the embedding batch has no
			 * chat figures and the chat batches no embedding ones. */
			json_t *ba = json_array_get(json_object_get(root, "rows"), 0);
			json_t *be = json_array_get(json_object_get(root, "rows"), 2);
			CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(be, "key")), "batch_e");
			CU_ASSERT(json_is_null(json_object_get(json_object_get(be, "api_equivalent_micros"), "gpt-4o-mini")));
			CU_ASSERT(json_is_null(json_object_get(json_object_get(be, "api_per_1m_tokens_micros"), "qwen-long")));
			CU_ASSERT(json_is_null(json_object_get(json_object_get(be, "gross_margin_ppm_at_api_price"),
							      "gpt-4o-mini")));
			CU_ASSERT(json_is_integer(json_object_get(json_object_get(be, "gross_margin_ppm_at_api_price"),
								  "text-embedding-3-small")));
			CU_ASSERT(json_is_null(json_object_get(json_object_get(ba, "api_equivalent_micros"),
							      "text-embedding-v3")));
		}
		json_decref(root);
		free(text);
		CU_ASSERT_EQUAL_FATAL(report_format_text(r, &text), 0);
		CU_ASSERT_PTR_NOT_NULL(strstr(text, "(embedding calls (/v1/embeddings) are compared with the embedding "
						    "prices text-embedding-3-small, text-embedding-v3 only, on their input "
						    "tokens, the other calls with the other references only; -: no call of "
						    "that kind)\n"));
		if (g == REPORT_BY_BATCH) {
			/* batch_e: "-" under both chat references (price and GM). */
			char *l = strstr(text, "\nbatch_e ");
			CU_ASSERT_PTR_NOT_NULL_FATAL(l);
			char *tok[16], *sv = NULL, *copy = strndup(l + 1, strcspn(l + 1, "\n"));
			int nt = 0;
			for (char *x = strtok_r(copy, " ", &sv); x != NULL && nt < 16; x = strtok_r(NULL, " ", &sv))
				tok[nt++] = x;
			CU_ASSERT_EQUAL_FATAL(nt, 6 + 2 * 4);
			for (int c = 6; c < 10; c++)
				CU_ASSERT_STRING_EQUAL(tok[c], "-");
			CU_ASSERT(strcmp(tok[10], "-") != 0 && strcmp(tok[12], "-") != 0);
			free(copy);
		}
		free(text);
		report_destroy(&r);
	}

}

/* A ledger mixing chat and embedding calls: each call is compared with
 * the references of its own kind only (an embedding call is never priced
 * at gpt-4o-mini, a chat call never at text-embedding-3-small), in every
 * grouping and format, and the totals and derived figures reconcile with
 * the calls of each kind. */
static void test_embedding_mixed(void)
{
	fixture();
	char err[512] = "";
	CU_ASSERT_EQUAL_FATAL(pricetab_load(prices, DEPLOY("prices/embeddings.conf"), err, sizeof(err)), 0);
	ledger_row_t all[N_ROWS + N_EMB];
	char eids[N_EMB][32];
	memcpy(all, rows, sizeof(rows));
	for (int i = 0; i < N_EMB; i++) {
		ledger_row_t *w = &all[N_ROWS + i];
		snprintf(eids[i], sizeof(eids[i]), "emb-%d", i);
		*w = rows[i];
		w->job = "batch_e";
		w->custom_id = eids[i];
		w->model = "bge-small";
		w->endpoint = "/v1/embeddings";
		w->prompt_tokens = 100 + 37 * (uint64_t)i;
		w->completion_tokens = 0;
		w->via_batch = i != 0;	/* one synchronous call: list price */
	}
	all[0].endpoint = "/v1/chat/completions";	/* explicit or empty: both chat */
	const size_t n = N_ROWS + N_EMB;
	static const char *const mixed[] = { "gpt-4o-mini", "qwen-long", "text-embedding-3-small", "text-embedding-v3" };
	report_opts_t o = { .prices = prices, .refs = mixed, .n_refs = 4 };
	const pricetab_entry_t *ent[4];
	for (int k = 0; k < 4; k++)
		CU_ASSERT_PTR_NOT_NULL_FATAL(ent[k] = pricetab_find(prices, mixed[k]));

	/* By call: the other kind's columns are null; each equivalent is the
	 * entry's price of the call's tokens (batch tier when via_batch),
	 * in CNY. */
	report_t *r = NULL;
	CU_ASSERT_EQUAL_FATAL(report_new(all, n, REPORT_BY_CALL, &o, &r, err, sizeof(err)), 0);
	CU_ASSERT(!r->ref_embedding[0] && !r->ref_embedding[1] && r->ref_embedding[2] && r->ref_embedding[3]);
	int64_t want_api[4] = { 0 }, want_load[2] = { 0 };
	uint64_t want_tok[2] = { 0 };
	for (size_t i = 0; i < n; i++) {
		bool e = i >= N_ROWS;
		want_load[e] += all[i].cost_loaded_micros;
		want_tok[e] += all[i].prompt_tokens + all[i].completion_tokens;
		for (int k = 0; k < 4; k++) {
			bool cmp = (k >= 2) == e;
			CU_ASSERT_EQUAL(r->rows[i].api_calls[k], cmp ? 1 : 0);
			if (!cmp)
				continue;
			int64_t v;
			CU_ASSERT_EQUAL_FATAL(cost_api_equivalent(prices, ent[k], all[i].prompt_tokens,
								  all[i].completion_tokens, all[i].via_batch, "CNY", &v,
								  err, sizeof(err)), 0);
			CU_ASSERT_EQUAL(r->rows[i].api_micros[k], v);
			want_api[k] += v;
		}
	}
	/* text-embedding-3-small: 0.02 USD per 1M list, 0.01 batch, x 7.2. */
	CU_ASSERT_EQUAL(r->rows[N_ROWS].api_micros[2], (int64_t)((100 * 144 + 500) / 1000));	/* 1.44 -> 1 */
	CU_ASSERT_EQUAL(r->rows[N_ROWS + 4].api_micros[3], (248 + 2) / 4);	/* 248 x 0.25 = 62 */
	for (int k = 0; k < 4; k++) {
		CU_ASSERT_EQUAL(r->total.api_micros[k], want_api[k]);
		CU_ASSERT_EQUAL(r->total.api_calls[k], k < 2 ? N_ROWS : N_EMB);
		CU_ASSERT_EQUAL(r->api_computed[k], k < 2 ? N_ROWS : N_EMB);
		CU_ASSERT(want_api[k] > 0);
	}
	CU_ASSERT_STRING_EQUAL(report_api_basis(r), "computed");
	char note[1024];
	CU_ASSERT_PTR_NOT_NULL(strstr(report_api_note(r, note, sizeof(note)), "text-embedding-3-small 5 of 5"));
	CU_ASSERT_PTR_NOT_NULL(strstr(note, "gpt-4o-mini 11 of 11"));
	char *text = NULL;
	CU_ASSERT_EQUAL_FATAL(report_format_json(r, &text), 0);
	json_error_t je;
	json_t *root = json_loads(text, 0, &je);
	CU_ASSERT_PTR_NOT_NULL_FATAL(root);
	json_t *jr = json_object_get(root, "rows");
	json_t *chat0 = json_object_get(json_array_get(jr, 0), "api_equivalent_micros");
	json_t *emb0 = json_object_get(json_array_get(jr, N_ROWS), "api_equivalent_micros");
	CU_ASSERT(json_is_integer(json_object_get(chat0, "gpt-4o-mini")));
	CU_ASSERT(json_is_null(json_object_get(chat0, "text-embedding-3-small")));
	CU_ASSERT(json_is_null(json_object_get(emb0, "gpt-4o-mini")));
	CU_ASSERT(json_is_null(json_object_get(emb0, "qwen-long")));
	CU_ASSERT(json_is_integer(json_object_get(emb0, "text-embedding-v3")));
	CU_ASSERT_EQUAL(jint(json_object_get(json_object_get(root, "total"), "api_equivalent_micros"), "text-embedding-v3"),
			want_api[3]);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(json_object_get(root, "api_ref_kinds"),
								 "text-embedding-v3")), "embedding");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(json_object_get(root, "api_ref_kinds"),
								 "qwen-long")), "chat");
	json_decref(root);
	free(text);
	CU_ASSERT_EQUAL_FATAL(report_format_csv(r, &text), 0);
	/* An embedding call's line: empty chat columns, then its two. */
	char want[256];
	snprintf(want, sizeof(want), "emb-3,bge-small,%s,CNY,", all[N_ROWS + 3].worker_name);
	char *line = strstr(text, want);
	CU_ASSERT_PTR_NOT_NULL_FATAL(line);
	snprintf(want, sizeof(want), ",%lld,%lld,,,%lld,%lld,", (long long)all[N_ROWS + 3].cost_marginal_micros,
		 (long long)all[N_ROWS + 3].cost_loaded_micros, (long long)r->rows[N_ROWS + 3].api_micros[2],
		 (long long)r->rows[N_ROWS + 3].api_micros[3]);
	CU_ASSERT_PTR_NOT_NULL(strstr(line, want));
	free(text);
	report_destroy(&r);

	check_mixed_groupings(all, n, &o, want_api, want_load, want_tok);

	/* As booked: an embedding call's booked embedding equivalent is
	 * used; a chat price booked on it (not something margind books) is
	 * not compared. */
	ledger_api_price_t pe = { .ref_model = "text-embedding-3-small", .currency = "CNY" };
	ledger_api_price_t pc = { .ref_model = "gpt-4o-mini", .currency = "CNY" };
	ledger_api_t bk[2] = { { &pc, 999999 }, { &pe, 7 } };
	all[N_ROWS + 1].api = bk;
	all[N_ROWS + 1].n_api = 2;
	CU_ASSERT_EQUAL_FATAL(report_new(all, n, REPORT_BY_BATCH, &o, &r, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(r->total.api_micros[0], want_api[0]);
	CU_ASSERT_EQUAL(r->api_computed[2], N_EMB - 1);
	CU_ASSERT_STRING_EQUAL(report_api_basis(r), "booked+computed");
	report_destroy(&r);

	/* The default references follow the kinds of the calls selected. */
	static const char *const chat_d[] = { "gpt-4o-mini", "qwen-long" }, *const emb_d[] = { "text-embedding-3-small" };
	const char *got[8];
	CU_ASSERT_EQUAL(report_default_refs(all, n, chat_d, 2, emb_d, 1, got, 8), 3);
	CU_ASSERT_STRING_EQUAL(got[2], "text-embedding-3-small");
	CU_ASSERT_EQUAL(report_default_refs(all + N_ROWS, N_EMB, chat_d, 2, emb_d, 1, got, 8), 1);
	CU_ASSERT_STRING_EQUAL(got[0], "text-embedding-3-small");
	CU_ASSERT_EQUAL(report_default_refs(all, N_ROWS, chat_d, 2, emb_d, 1, got, 8), 2);
	CU_ASSERT_EQUAL(report_default_refs(all, 0, chat_d, 2, emb_d, 1, got, 8), 2);
	done();
}

/* report_new with allocation n failing, for n = 1, 2, ... until it
 * succeeds, per grouping, with every option that allocates (references, a
 * sale price, a currency conversion, a hardware what-if): each failure is
 * -ENOMEM with a reason and *ret untouched (LeakSanitizer, in the
 * sanitizer build, checks that nothing leaked); the report built at last
 * is the one built without failures. */
static void test_new_enomem(void)
{
	fixture();
	report_whatif_t wi = { .hardware = "8xh100", .speed = 3.2, .speed_basis = "estimate", .speed_why = "ratio" };
	report_opts_t o = { .currency = "CNY", .prices = prices, .refs = refs, .n_refs = 3, .sale = "qwen-long",
			    .whatif = &wi };
	static char mark;	/* *ret before the call: an address report_new never returns */
	report_t *const sentinel = (report_t *)&mark;
	for (int g = REPORT_BY_CALL; g <= REPORT_BY_DAY; g++) {
		char err[512] = "", *want = NULL, *got = NULL;
		report_t *r = NULL;
		int rc0 = report_new(rows, N_ROWS, (enum report_group)g, &o, &r, err, sizeof(err));
		if (rc0 < 0)
			fprintf(stderr, "\n  report_new: %s\n", err);
		CU_ASSERT_EQUAL_FATAL(rc0, 0);
		CU_ASSERT_EQUAL_FATAL(report_format_json(r, &want), 0);
		report_destroy(&r);
		unsigned long n = 1;
		for (;; n++) {
			r = sentinel;
			err[0] = '\0';
			cu_alloc_fail_at(n);
			int rc = report_new(rows, N_ROWS, (enum report_group)g, &o, &r, err, sizeof(err));
			bool failed = cu_alloc_reset();
			if (!failed) {
				CU_ASSERT_EQUAL_FATAL(rc, 0);
				CU_ASSERT_EQUAL_FATAL(report_format_json(r, &got), 0);
				CU_ASSERT_STRING_EQUAL(got, want);
				free(got);
				report_destroy(&r);
				break;
			}
			if (rc != -ENOMEM || r != sentinel || err[0] == '\0') {
				fprintf(stderr, "\n  group %s, allocation %lu failed: rc=%d err=\"%s\" ret %s\n",
					report_group_name((enum report_group)g), n, rc, err,
					r == sentinel ? "untouched" : "written");
				CU_FAIL("report_new did not fail cleanly with -ENOMEM");
				if (rc == 0 && r != sentinel)
					report_destroy(&r);
				break;
			}
		}
		CU_ASSERT(n > 1);
		free(want);
	}
	done();
}

const cu_test_t report_tests[] = {
	{ "new_enomem", test_new_enomem },
	{ "embedding_mixed", test_embedding_mixed },
	{ "booked", test_booked },
	{ "booked_conversion", test_booked_conversion },
	{ "booked_from_sqlite", test_booked_from_sqlite },
	{ "sale_price", test_sale_price },
	{ "from_sqlite", test_from_sqlite },
	{ "totals_all_groupings", test_totals_all_groupings },
	{ "conversion_exact", test_conversion_exact },
	{ "json_shape", test_json_shape },
	{ "csv_and_text", test_csv_and_text },
	{ "whatif", test_whatif },
	{ "breakeven", test_breakeven },
	{ "derived_every_format", test_derived_every_format },
	{ "whatif_marking", test_whatif_marking },
	{ "loaded_window", test_loaded_window },
	{ NULL, NULL },
};
