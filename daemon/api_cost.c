/* api_cost: see api_cost.h. */
#include "api_cost.h"
#include "meter/chart.h"
#include "meter/cost.h"
#include "meter/ledger.h"
#include "meter/report.h"
#include "meter/speed.h"
#include "meter/thru.h"
#include "lib/mg_log.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <threads.h>
#include <time.h>

#define MAX_GAUGE_KEYS 1024

/* The gauges' running sums, per (model, currency of the costs). */
typedef struct gauge_sum {
	char *model;			/* owned */
	char currency[4];
	uint64_t tokens;		/* prompt + completion */
	int64_t marginal, loaded;	/* micros of currency */
	int64_t sale;			/* micros of the report currency at the sale price */
} gauge_sum_t;

static struct {
	const booking_conf_t *conf;	/* borrowed; NULL until api_cost_start */
	mtx_t lock;			/* the gauge state below */
	int64_t last_id;		/* highest ledger id counted */
	gauge_sum_t *sums;		/* owned: n_sums */
	size_t n_sums;
	/* Accounting windows (ledger_period rowids): the highest seen, and
	 * those seen open, whose idle cost the loaded counter adds when they
	 * close. */
	int64_t last_period;
	int64_t *open_periods;		/* owned: n_open */
	size_t n_open, cap_open;
} st;

static int open_period_push(int64_t rowid)
{
	if (st.n_open == st.cap_open) {
		size_t cap = st.cap_open ? 2 * st.cap_open : 16;
		int64_t *v = realloc(st.open_periods, cap * sizeof(*v));
		if (v == NULL)
			return -ENOMEM;
		st.open_periods = v;
		st.cap_open = cap;
	}
	st.open_periods[st.n_open++] = rowid;
	return 0;
}

/* The windows there at start: the highest rowid, and the open ones (their
 * idle cost is counted when they close). A journal without the table has
 * none. */
static int period_baseline(sqlite3 *db)
{
	sqlite3_stmt *q = NULL;
	st.n_open = 0;
	st.last_period = 0;
	if (sqlite3_prepare_v2(db, "SELECT rowid, closed FROM ledger_period ORDER BY rowid", -1, &q, NULL) != SQLITE_OK)
		return 0;
	int rc, r = 0;
	while (r == 0 && (rc = sqlite3_step(q)) == SQLITE_ROW) {
		st.last_period = sqlite3_column_int64(q, 0);
		if (sqlite3_column_int(q, 1) == 0)
			r = open_period_push(st.last_period);
	}
	sqlite3_finalize(q);
	return r < 0 ? r : rc == SQLITE_DONE ? 0 : -EIO;
}

static int open_ro(const char *state_dir, sqlite3 **ret, char *err, size_t errlen)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/margin.db", state_dir);
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", path, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		sqlite3_close(db);
		return -EIO;
	}
	sqlite3_busy_timeout(db, 5000);
	*ret = db;
	return 0;
}

int api_cost_start(const booking_conf_t *conf, const char *state_dir, char *err, size_t errlen)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *q = NULL;
	int r = open_ro(state_dir, &db, err, errlen);
	if (r < 0)
		return r;
	if (sqlite3_prepare_v2(db, "SELECT coalesce(max(id), 0) FROM ledger", -1, &q, NULL) != SQLITE_OK ||
	    sqlite3_step(q) != SQLITE_ROW) {
		snprintf(err, errlen, "%s/margin.db: reading the ledger: %s", state_dir, sqlite3_errmsg(db));
		r = -EIO;
	} else {
		if (st.conf == NULL && mtx_init(&st.lock, mtx_plain) != thrd_success) {
			snprintf(err, errlen, "cannot create a mutex");
			r = -ENOMEM;
		} else {
			st.last_id = sqlite3_column_int64(q, 0);
			st.conf = conf;
			if (period_baseline(db) < 0) {
				snprintf(err, errlen, "%s/margin.db: reading the accounting windows: %s", state_dir,
					 sqlite3_errmsg(db));
				r = -EIO;
			}
		}
	}
	sqlite3_finalize(q);
	sqlite3_close(db);
	return r;
}

/* --- shared helpers ---------------------------------------------------- */

/* The days a filter can name: times are int64 nanoseconds since 1970
 * (the last whole day ends before 2262-04-11T23:47:16Z), and 0 means "no
 * bound" to the ledger. */
#define DAY_MIN "1970-01-01"
#define DAY_MAX "2262-04-10"
#define DAY_NS (86400LL * 1000000000LL)

/* "YYYY-MM-DD" -> unix ns of its 00:00 UTC. -EINVAL when it does not
 * parse, -ERANGE outside DAY_MIN..DAY_MAX. */
static int parse_day(const char *s, int64_t *ret)
{
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	const char *e = strptime(s, "%Y-%m-%d", &tm);
	if (e == NULL || *e != '\0')
		return -EINVAL;
	time_t t = timegm(&tm);
	/* Whole days only, so the end of the last one (+ DAY_NS) fits too. */
	if (t < 0 || t > INT64_MAX / 1000000000LL - 86400)
		return -ERANGE;
	*ret = (int64_t)t * 1000000000LL;
	return 0;
}

static bool day_arg(http_req_t *r, const char *name, const char *s, int64_t *ret)
{
	int rc = parse_day(s, ret);
	if (rc == -EINVAL)
		http_reply_error(r, 400, "invalid_request", name, "%s=%s: expected a day, YYYY-MM-DD (UTC)", name, s);
	else if (rc == -ERANGE)
		http_reply_error(r, 400, "invalid_request", name, "%s=%s: out of range: expected a day from %s to %s",
				 name, s, DAY_MIN, DAY_MAX);
	return rc == 0;
}

/* Does the journal know the batch? 1 yes, 0 no, < 0 error. */
static int batch_known(sqlite3 *db, const char *batch)
{
	sqlite3_stmt *q = NULL;
	if (sqlite3_prepare_v2(db, "SELECT 1 FROM jobs WHERE name = ?1", -1, &q, NULL) != SQLITE_OK)
		return -EIO;
	sqlite3_bind_text(q, 1, batch, -1, SQLITE_STATIC);
	int rc = sqlite3_step(q);
	sqlite3_finalize(q);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -EIO;
}

/* Opens the journal and selects the rows of f; replies with the error and
 * returns < 0 when it cannot. */
static int load_rows(http_req_t *r, const ledger_filter_t *f, ledger_rows_t **ret)
{
	char err[1024];
	sqlite3 *db = NULL;
	if (st.conf == NULL) {
		http_reply_error(r, 503, "meter_unavailable", NULL, "the metering service is not running");
		return -EAGAIN;
	}
	if (open_ro(r->h->state_dir, &db, err, sizeof(err)) < 0) {
		mg_log(MG_LOG_ERROR, "http", "cannot read the journal err=\"%s\"", err);
		http_reply_error(r, 500, "internal_error", NULL, "cannot read the journal (margind's log says why)");
		return -EIO;
	}
	int k = f->job ? batch_known(db, f->job) : 1;
	int rc = -ENOENT;
	if (k < 0)
		http_reply_error(r, 500, "internal_error", NULL, "cannot read the journal: %s", sqlite3_errmsg(db));
	else if (k == 0)
		http_reply_error(r, 404, "batch_not_found", "batch", "No batch found with id '%s'", f->job);
	else if ((rc = ledger_select(db, f, ret, err, sizeof(err))) < 0)
		http_reply_error(r, 500, "internal_error", NULL, "%s", err);
	sqlite3_close(db);
	return k == 1 ? rc : -ENOENT;
}

/* --- GET /v1/cost ------------------------------------------------------ */

void api_cost_report(http_req_t *r)
{
	const booking_conf_t *c = st.conf;
	const char *batch = http_query(r, "batch"), *group = http_query(r, "group");
	const char *format = http_query(r, "format"), *cur = http_query(r, "currency");
	const char *refs_q = http_query(r, "refs"), *from = http_query(r, "from"), *to = http_query(r, "to");
	const char *prices_q = http_query(r, "prices");
	enum report_group g = batch ? REPORT_BY_CALL : REPORT_BY_BATCH;
	ledger_filter_t f = { .job = batch, .model = http_query(r, "model"), .worker_name = http_query(r, "worker") };
	char refbuf[1024], err[1024];
	const char *refs[2 * BOOKING_MAX_REFS];
	size_t n_refs = 0;

	if (group != NULL && report_group_parse(group, &g) < 0) {
		http_reply_error(r, 400, "invalid_request", "group", "group=%s: expected call, batch, model, worker or day",
				 group);
		return;
	}
	if (g == REPORT_BY_CALL && batch == NULL) {
		http_reply_error(r, 400, "invalid_request", "batch", "group=call needs batch=ID");
		return;
	}
	if (format == NULL)
		format = "json";
	if (strcmp(format, "json") != 0 && strcmp(format, "csv") != 0 && strcmp(format, "text") != 0) {
		http_reply_error(r, 400, "invalid_request", "format", "format=%s: expected json, csv or text", format);
		return;
	}
	if (prices_q != NULL && strcmp(prices_q, "booked") != 0 && strcmp(prices_q, "current") != 0) {
		http_reply_error(r, 400, "invalid_request", "prices",
				 "prices=%s: expected booked (the equivalents stored with the calls) or current "
				 "(what-if: recomputed with margind's price tables)", prices_q);
		return;
	}
	if (from != NULL && !day_arg(r, "from", from, &f.from_ns))
		return;
	if (to != NULL && !day_arg(r, "to", to, &f.to_ns))
		return;
	if (to != NULL)
		f.to_ns += DAY_NS;	/* the whole day */
	if (c == NULL) {
		http_reply_error(r, 503, "meter_unavailable", NULL, "the metering service is not running");
		return;
	}
	f.default_currency = c->currency;
	if (refs_q != NULL) {
		snprintf(refbuf, sizeof(refbuf), "%s", refs_q);
		char *save = NULL;
		for (char *t = strtok_r(refbuf, ",", &save); t != NULL && n_refs < BOOKING_MAX_REFS;
		     t = strtok_r(NULL, ",", &save))
			refs[n_refs++] = t;
	}
	ledger_rows_t *rows = NULL;
	if (load_rows(r, &f, &rows) < 0)
		return;
	/* By default [meter] refs for chat calls, embed_refs for embedding
	 * calls: the references of the kinds of calls selected. */
	if (refs_q == NULL)
		n_refs = report_default_refs(rows->v, rows->n, (const char *const *)c->refs, c->n_refs,
					     (const char *const *)c->embed_refs, c->n_embed_refs, refs,
					     2 * BOOKING_MAX_REFS);
	report_opts_t o = { .currency = cur ? cur : c->currency, .prices = c->prices, .refs = refs, .n_refs = n_refs,
			    .sale = c->has_sale ? BOOKING_SALE_ENTRY : NULL,
			    .whatif_prices = prices_q != NULL && strcmp(prices_q, "current") == 0 };
	report_t *rep = NULL;
	int rc = report_new(rows->v, rows->n, g, &o, &rep, err, sizeof(err));
	ledger_rows_destroy(&rows);
	if (rc < 0) {
		http_reply_error(r, rc == -ENOENT || rc == -EINVAL ? 400 : 500,
				 rc == -ENOENT || rc == -EINVAL ? "invalid_request" : "internal_error", NULL, "%s", err);
		return;
	}
	char *text = NULL;
	const char *type = "application/json";
	if (format[0] == 'j') {
		rc = report_format_json(rep, &text);
	} else if (format[0] == 'c') {
		rc = report_format_csv(rep, &text);
		type = "text/csv; charset=utf-8";
	} else {
		rc = report_format_text(rep, &text);
		type = "text/plain; charset=utf-8";
	}
	report_destroy(&rep);
	if (rc < 0) {
		http_reply_error(r, 500, "internal_error", NULL, "out of memory formatting the report");
		return;
	}
	http_reply_text(r, 200, type, text, strlen(text));
	free(text);
}

/* --- GET /v1/cost/ledger ----------------------------------------------- */

/* A row's booked equivalents: [{"ref_model","micros","currency","price_id"}]
 * (price_id: the top-level "api_prices" entry that says what priced it). */
static json_t *api_json(const ledger_row_t *w)
{
	json_t *a = json_array();
	for (size_t k = 0; a != NULL && k < w->n_api; k++) {
		const ledger_api_t *e = &w->api[k];
		if (json_array_append_new(a, json_pack("{s:s, s:I, s:s, s:I}", "ref_model", e->price->ref_model, "micros",
						       (json_int_t)e->micros, "currency", e->price->currency,
						       "price_id", (json_int_t)e->price->id)) < 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

static json_t *price_json(const ledger_api_price_t *p)
{
	return json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "id", (json_int_t)p->id,
			 "ref_model", p->ref_model, "currency", p->currency, "price_currency", p->price_currency,
			 "input_per_1m", p->input_per_1m, "output_per_1m", p->output_per_1m, "fx_rate", p->fx_rate,
			 "fx_source", p->fx_source, "price_table", p->price_table, "price_source", p->price_source,
			 "price_date", p->price_date);
}

static json_t *row_json(const ledger_row_t *w)
{
	return json_pack("{s:I, s:s, s:s, s:I, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I,"
			 " s:I, s:s, s:I, s:I, s:b, s:I, s:I, s:b, s:o?}",
			 "id", (json_int_t)w->id, "job", w->job, "custom_id", w->custom_id, "line_no",
			 (json_int_t)w->line_no, "model", w->model, "worker", w->worker, "worker_name", w->worker_name,
			 "hardware_profile", w->hardware_profile, "shard", (json_int_t)w->shard, "prompt_tokens",
			 (json_int_t)w->prompt_tokens, "completion_tokens", (json_int_t)w->completion_tokens, "busy_ns",
			 (json_int_t)w->busy_ns, "flops", (json_int_t)w->flops, "queue_ns", (json_int_t)w->queue_ns,
			 "first_token_ns", (json_int_t)w->first_token_ns, "cost_marginal_micros",
			 (json_int_t)w->cost_marginal_micros, "cost_loaded_micros", (json_int_t)w->cost_loaded_micros,
			 "answered_at_ns", (json_int_t)w->answered_at_ns, "idle_ns", (json_int_t)w->idle_ns, "currency",
			 w->currency, "rate_busy_micros_per_hour", (json_int_t)w->rate_busy_micros_per_hour,
			 "rate_idle_micros_per_hour", (json_int_t)w->rate_idle_micros_per_hour, "via_batch",
			 (int)w->via_batch, "period_start_ns", (json_int_t)w->period_start_ns, "period_ns",
			 (json_int_t)w->period_ns, "period_open", (int)w->period_open, "api_equivalents", api_json(w));
}

void api_cost_ledger(http_req_t *r)
{
	const char *batch = http_query(r, "batch");
	if (batch == NULL) {
		http_reply_error(r, 400, "invalid_request", "batch", "batch=ID is required");
		return;
	}
	ledger_filter_t f = { .job = batch, .default_currency = st.conf ? st.conf->currency : NULL };
	ledger_rows_t *rows = NULL;
	if (load_rows(r, &f, &rows) < 0)
		return;
	json_t *data = json_array(), *prices = json_array();
	for (size_t i = 0; data != NULL && i < rows->n; i++)
		if (json_array_append_new(data, row_json(&rows->v[i])) < 0) {
			json_decref(data);
			data = NULL;
		}
	/* The pricings the rows name (a journal holds few). */
	bool *used = calloc(rows->n_prices ? rows->n_prices : 1, sizeof(*used));
	for (size_t k = 0; used != NULL && k < rows->n_api; k++)
		used[rows->api[k].price - rows->prices] = true;
	for (size_t i = 0; prices != NULL && i < rows->n_prices; i++)
		if ((used == NULL || used[i]) && json_array_append_new(prices, price_json(&rows->prices[i])) < 0) {
			json_decref(prices);
			prices = NULL;
		}
	free(used);
	ledger_rows_destroy(&rows);
	if (data == NULL || prices == NULL) {
		json_decref(data);
		json_decref(prices);
		http_reply_error(r, 500, "internal_error", NULL, "out of memory");
		return;
	}
	http_reply_json(r, 200, json_pack("{s:s, s:s, s:s, s:o, s:o}", "object", "list", "batch", batch, "currency",
					  st.conf->currency, "data", data, "api_prices", prices));
}

/* --- GET /v1/cost/chart ------------------------------------------------ */

void api_cost_chart(http_req_t *r)
{
	const booking_conf_t *c = st.conf;
	const char *batch = http_query(r, "batch"), *hwq = http_query(r, "hardware");
	const char *dbq = http_query(r, "decode_batch");
	char err[1024];
	uint32_t dbatch = 0;
	if (dbq != NULL) {
		char *end = NULL;
		unsigned long v = strtoul(dbq, &end, 10);
		if (end == dbq || *end != '\0' || v < 1 || v > 1000000) {
			http_reply_error(r, 400, "invalid_request", "decode_batch",
					 "decode_batch=%s: expected a positive integer (the target's decode batch)", dbq);
			return;
		}
		dbatch = (uint32_t)v;
	}
	if (batch == NULL) {
		http_reply_error(r, 400, "invalid_request", "batch", "batch=ID is required");
		return;
	}
	ledger_filter_t f = { .job = batch, .default_currency = c ? c->currency : NULL };
	ledger_rows_t *rows = NULL;
	if (load_rows(r, &f, &rows) < 0)
		return;
	uint64_t prompt = 0, compl = 0, busy = 0, idle = 0;
	for (size_t i = 0; i < rows->n; i++) {
		prompt += rows->v[i].prompt_tokens;
		compl += rows->v[i].completion_tokens;
		busy += rows->v[i].busy_ns;
		idle += rows->v[i].idle_ns;
	}
	if (rows->n == 0 || busy == 0 || compl == 0) {
		ledger_rows_destroy(&rows);
		http_reply_error(r, 409, "no_measurement", "batch",
				 "batch %s has no answered calls with engine time yet: nothing to chart", batch);
		return;
	}
	/* The hardware: asked for, else the profile that priced the batch. */
	hwprof_t hw;
	const char *name = hwq ? hwq : rows->v[0].hardware_profile;
	int rc;
	if (c->has_forced && strcmp(name, c->forced.name) == 0)
		hw = c->forced, rc = 0;
	else if (c->has_fallback && strcmp(name, c->fallback.name) == 0)
		hw = c->fallback, rc = 0;
	else
		rc = hwprof_find(c->hardware_dir, name, &hw, err, sizeof(err));
	bool via_batch = rows->v[0].via_batch;
	size_t n = rows->n;
	if (rc < 0) {
		ledger_rows_destroy(&rows);
		http_reply_error(r, hwq ? 400 : 409, hwq ? "invalid_request" : "no_profile", "hardware", "%s", err);
		return;
	}
	/* Throughput at the batch's own mix: output tokens per second of
	 * engine time (prefill included), i.e. per node at 100% utilization;
	 * on other hardware than the batch ran on, that hardware's own
	 * (a bench attached to its profile, else an estimate: speed.h). */
	thru_t t = { .source = THRU_LEDGER, .phases = false, .out_tok_s = (double)compl / ((double)busy / 1e9) };
	snprintf(t.why, sizeof(t.why), "measured: batch %.80s, %zu calls, %llu output tokens in %.3f s of engine time",
		 batch, n, (unsigned long long)compl, (double)busy / 1e9);
	bool other = false;
	for (size_t i = 0; i < n; i++)
		other |= strcmp(rows->v[i].hardware_profile, hw.name) != 0;
	if (other) {
		speed_whatif_t *sw = malloc(sizeof(*sw));
		rc = sw ? speed_whatif(rows->v, n, &hw, NULL, dbatch, NULL, sw, err, sizeof(err)) : -ENOMEM;
		if (rc == 0)
			t = sw->target;
		free(sw);
		if (rc < 0) {
			ledger_rows_destroy(&rows);
			http_reply_error(r, 409, "no_speed", "hardware", "the speed of %s for batch %s: %s", hw.name, batch,
					 rc == -ENOMEM ? "out of memory" : err);
			return;
		}
	}
	ledger_rows_destroy(&rows);
	const char *refs[BOOKING_MAX_REFS];
	for (size_t i = 0; i < c->n_refs; i++)
		refs[i] = c->refs[i];
	char *svg = NULL;
	/* The batch's own utilization (engine time over the node time it was
	 * charged), marked on the chart. */
	double measured_u = busy + idle > 0 ? (double)busy / (double)(busy + idle) : 0;
	rc = chart_cost_vs_utilization(&t, &hw, (double)prompt / (double)n, (double)compl / (double)n, measured_u,
				       c->prices, refs, c->n_refs, via_batch, c->currency, &svg, err, sizeof(err));
	if (rc < 0) {
		http_reply_error(r, 500, "internal_error", NULL, "chart: %s", err);
		return;
	}
	http_reply_text(r, 200, "image/svg+xml", svg, strlen(svg));
	free(svg);
}

/* --- gauges ------------------------------------------------------------ */

static gauge_sum_t *gauge_find(const char *model, const char *currency)
{
	for (size_t i = 0; i < st.n_sums; i++)
		if (strcmp(st.sums[i].model, model) == 0 && strcmp(st.sums[i].currency, currency) == 0)
			return &st.sums[i];
	if (st.n_sums >= MAX_GAUGE_KEYS)
		return NULL;
	gauge_sum_t *n = realloc(st.sums, (st.n_sums + 1) * sizeof(*n));
	if (n == NULL)
		return NULL;
	st.sums = n;
	gauge_sum_t *g = &st.sums[st.n_sums];
	memset(g, 0, sizeof(*g));
	if ((g->model = strdup(model)) == NULL)
		return NULL;
	snprintf(g->currency, sizeof(g->currency), "%s", currency);
	st.n_sums++;
	return g;
}

/* Adds the booked equivalents of ledger rows (from, to] to the counter
 * margin_api_equivalent_micros_total{reference,currency}. A journal
 * without the tables of booked equivalents has none to add. */
static int api_scan(sqlite3 *db, int64_t from, int64_t to, metrics_t *m)
{
	sqlite3_stmt *q = NULL;
	if (sqlite3_prepare_v2(db, "SELECT p.ref_model, p.currency, a.micros FROM ledger_api a JOIN ledger_api_price p"
			       " ON p.id = a.price_id WHERE a.ledger_id > ?1 AND a.ledger_id <= ?2", -1, &q,
			       NULL) != SQLITE_OK)
		return 0;
	sqlite3_bind_int64(q, 1, from);
	sqlite3_bind_int64(q, 2, to);
	int rc;
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		const char *ref = (const char *)sqlite3_column_text(q, 0), *cur = (const char *)sqlite3_column_text(q, 1);
		int64_t v = sqlite3_column_int64(q, 2);
		const char *lv[] = { ref ? ref : "", cur ? cur : "" };
		if (v > 0)
			metrics_counter_add(m, "margin_api_equivalent_micros_total", lv, (double)v);
	}
	sqlite3_finalize(q);
	return rc == SQLITE_DONE ? 0 : -EIO;
}

/* The loaded-cost counter's second part: when an accounting window closes,
 * its idle cost (node cost of the window less its calls' marginal cost,
 * which the counter took as the calls were booked; all of it for a window
 * without calls). Each window once: those seen open are looked at again,
 * newer ones are read once by rowid. */
static int period_scan(sqlite3 *db, metrics_t *m)
{
	sqlite3_stmt *one = NULL, *news = NULL;
	int r = 0;
	if (sqlite3_prepare_v2(db, "SELECT closed, currency, node_cost_micros - marginal_micros FROM ledger_period"
			       " WHERE rowid = ?1", -1, &one, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "SELECT rowid, closed, currency, node_cost_micros - marginal_micros"
			       " FROM ledger_period WHERE rowid > ?1 ORDER BY rowid", -1, &news, NULL) != SQLITE_OK) {
		sqlite3_finalize(one);
		return 0;	/* a journal without windows */
	}
	size_t kept = 0;
	for (size_t i = 0; i < st.n_open; i++) {
		sqlite3_bind_int64(one, 1, st.open_periods[i]);
		bool closed = false;
		if (sqlite3_step(one) == SQLITE_ROW && sqlite3_column_int(one, 0) != 0) {
			const char *cur = (const char *)sqlite3_column_text(one, 1);
			int64_t idle = sqlite3_column_int64(one, 2);
			const char *ll[] = { "loaded", cur ? cur : "" };
			if (cur != NULL && *cur != '\0' && idle > 0)
				metrics_counter_add(m, "margin_cost_micros_total", ll, (double)idle);
			closed = true;
		}
		sqlite3_reset(one);
		if (!closed)
			st.open_periods[kept++] = st.open_periods[i];
	}
	st.n_open = kept;
	sqlite3_bind_int64(news, 1, st.last_period);
	int rc;
	while (r == 0 && (rc = sqlite3_step(news)) == SQLITE_ROW) {
		st.last_period = sqlite3_column_int64(news, 0);
		if (sqlite3_column_int(news, 1) == 0) {
			r = open_period_push(st.last_period);
			continue;
		}
		const char *cur = (const char *)sqlite3_column_text(news, 2);
		int64_t idle = sqlite3_column_int64(news, 3);
		const char *ll[] = { "loaded", cur ? cur : "" };
		if (cur != NULL && *cur != '\0' && idle > 0)
			metrics_counter_add(m, "margin_cost_micros_total", ll, (double)idle);
	}
	sqlite3_finalize(one);
	sqlite3_finalize(news);
	return r < 0 ? r : rc == SQLITE_DONE ? 0 : -EIO;
}

/* Adds the rows booked since the last scrape: to the gauges' sums, and
 * their costs and booked equivalents to the counters (each in the
 * currency it was booked in: no conversion, so a counter only grows). */
static int gauge_scan(const char *state_dir, metrics_t *m)
{
	const booking_conf_t *c = st.conf;
	const pricetab_entry_t *sale = c->has_sale ? pricetab_find(c->prices, BOOKING_SALE_ENTRY) : NULL;
	sqlite3 *db = NULL;
	sqlite3_stmt *q = NULL;
	char err[512];
	int r = open_ro(state_dir, &db, err, sizeof(err));
	if (r < 0)
		return r;
	if (sqlite3_prepare_v2(db, "SELECT id, model, currency, prompt_tokens, completion_tokens, cost_marginal_micros,"
			       " cost_loaded_micros, via_batch, period_ns FROM ledger WHERE id > ?1 ORDER BY id", -1, &q,
			       NULL) != SQLITE_OK) {
		sqlite3_close(db);
		return -EIO;
	}
	int64_t from = st.last_id;
	sqlite3_bind_int64(q, 1, st.last_id);
	int rc;
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		const char *model = (const char *)sqlite3_column_text(q, 1);
		const char *cur = (const char *)sqlite3_column_text(q, 2);
		uint64_t pt = (uint64_t)sqlite3_column_int64(q, 3), ct = (uint64_t)sqlite3_column_int64(q, 4);
		int64_t cm = sqlite3_column_int64(q, 5), cl = sqlite3_column_int64(q, 6);
		gauge_sum_t *g = gauge_find(model ? model : "", cur && *cur ? cur : c->currency);
		st.last_id = sqlite3_column_int64(q, 0);
		if (cur != NULL && *cur != '\0') {	/* a row priced by no profile has no cost */
			const char *lm[] = { "marginal", cur }, *ll[] = { "loaded", cur };
			if (cm > 0)
				metrics_counter_add(m, "margin_cost_micros_total", lm, (double)cm);
			/* A row of an accounting window adds its marginal cost now
			 * and the window its idle cost when it closes (period_scan);
			 * a row of the older carried rule its loaded cost. */
			int64_t add = sqlite3_column_int64(q, 8) != 0 ? cm : cl;
			if (add > 0)
				metrics_counter_add(m, "margin_cost_micros_total", ll, (double)add);
		}
		if (g == NULL)
			continue;
		g->tokens += pt + ct;
		g->marginal += sqlite3_column_int64(q, 5);
		g->loaded += sqlite3_column_int64(q, 6);
		int64_t s = 0;
		if (sale != NULL && cost_api_equivalent(c->prices, sale, pt, ct, sqlite3_column_int(q, 7) != 0,
							c->currency, &s, err, sizeof(err)) == 0)
			g->sale += s;
	}
	sqlite3_finalize(q);
	if (rc == SQLITE_DONE)
		rc = api_scan(db, from, st.last_id, m) == 0 && period_scan(db, m) == 0 ? SQLITE_DONE : SQLITE_ERROR;
	sqlite3_close(db);
	return rc == SQLITE_DONE ? 0 : -EIO;
}

int api_cost_update_metrics(const char *state_dir, metrics_t *m)
{
	const booking_conf_t *c = st.conf;
	if (c == NULL)
		return 0;
	char err[256];
	mtx_lock(&st.lock);
	/* The counters exist at 0 from the first scrape on, in the report
	 * currency, so rate() has a start. */
	const char *zm[] = { "marginal", c->currency }, *zl[] = { "loaded", c->currency };
	metrics_counter_add(m, "margin_cost_micros_total", zm, 0);
	metrics_counter_add(m, "margin_cost_micros_total", zl, 0);
	for (size_t k = 0; k < c->n_refs + c->n_embed_refs; k++) {
		const char *za[] = { k < c->n_refs ? c->refs[k] : c->embed_refs[k - c->n_refs], c->currency };
		metrics_counter_add(m, "margin_api_equivalent_micros_total", za, 0);
	}
	int r = gauge_scan(state_dir, m);
	/* One figure per model in the report currency: each currency's sums
	 * converted once. */
	for (size_t i = 0; i < st.n_sums; i++) {
		const char *model = st.sums[i].model;
		bool first = true;
		for (size_t j = 0; j < i && first; j++)
			first = strcmp(st.sums[j].model, model) != 0;
		if (!first)
			continue;
		uint64_t tokens = 0;
		int64_t marg = 0, load = 0, sale = 0, v;
		bool ok = true;
		for (size_t j = i; j < st.n_sums; j++) {
			const gauge_sum_t *g = &st.sums[j];
			if (strcmp(g->model, model) != 0)
				continue;
			tokens += g->tokens;
			sale += g->sale;
			v = 0;
			ok &= pricetab_convert(c->prices, g->marginal, g->currency, c->currency, &v, err, sizeof(err)) == 0;
			marg += v;
			v = 0;
			ok &= pricetab_convert(c->prices, g->loaded, g->currency, c->currency, &v, err, sizeof(err)) == 0;
			load += v;
		}
		if (!ok || tokens == 0)
			continue;
		const char *lm[] = { model, "marginal", c->currency }, *ll[] = { model, "loaded", c->currency };
		metrics_gauge_set(m, "margin_cost_per_token", lm, (double)marg / 1e6 / (double)tokens);
		metrics_gauge_set(m, "margin_cost_per_token", ll, (double)load / 1e6 / (double)tokens);
		if (c->has_sale && sale > 0) {
			const char *lg[] = { model };
			metrics_gauge_set(m, "margin_gross_margin_ratio", lg, (double)(sale - load) / (double)sale);
		}
	}
	mtx_unlock(&st.lock);
	return r;
}
