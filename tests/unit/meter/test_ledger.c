/* ledger: the schema the meter expects, insert and select round trips,
 * filters, and a clear error for a table that does not match. */
#include "tests.h"
#include "cu_sql.h"
#include "ledger.h"
#include "meter.h"
#include "lib/mg_int128.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static sqlite3 *open_db(void)
{
	sqlite3 *db = NULL;
	CU_ASSERT_EQUAL_FATAL(sqlite3_open(":memory:", &db), SQLITE_OK);
	return db;
}

static ledger_row_t row(const char *job, int64_t line, const char *model, const char *worker, int64_t at)
{
	return (ledger_row_t){ .job = job, .shard = line / 2, .line_no = line, .custom_id = "req-x",
			       .model = model, .worker = "wid", .worker_name = worker, .hardware_profile = "cpu-2vcpu",
			       .prompt_tokens = 10, .completion_tokens = 20, .busy_ns = 1000 + (uint64_t)line,
			       .flops = 1ULL << 40, .queue_ns = 5, .first_token_ns = 6, .idle_ns = 7, .currency = "CNY",
			       .rate_busy_micros_per_hour = 883200, .rate_idle_micros_per_hour = 883200,
			       .cost_marginal_micros = 3 + line, .cost_loaded_micros = 4 + line,
			       .via_batch = line % 2 == 0, .answered_at_ns = at };
}

static void test_roundtrip(void)
{
	sqlite3 *db = open_db();
	char err[512] = "";
	CU_ASSERT_EQUAL_FATAL(ledger_create(db, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(ledger_create(db, err, sizeof(err)), 0);	/* idempotent */
	CU_ASSERT_EQUAL(ledger_check_schema(db, true, err, sizeof(err)), 0);
	ledger_row_t rows[4] = { row("b1", 0, "llama-110m", "w1", 100), row("b1", 1, "llama-110m", "w2", 200),
				 row("b2", 0, "qwen2-0.5b", "w1", 300), row("b2", 1, "qwen2-0.5b", "w1", 400) };
	rows[3].busy_ns = (uint64_t)INT64_MAX;
	rows[3].custom_id = "id with 'quotes', commas and ünïcode";
	CU_ASSERT_EQUAL_FATAL(ledger_insert(db, rows, 4, err, sizeof(err)), 0);
	ledger_rows_t *out = NULL;
	CU_ASSERT_EQUAL_FATAL(ledger_select(db, NULL, &out, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(out->n, 4);
	for (size_t i = 0; i < 4; i++) {
		const ledger_row_t *a = &rows[i], *b = &out->v[i];
		CU_ASSERT(b->id > 0);
		CU_ASSERT_STRING_EQUAL(a->job, b->job);
		CU_ASSERT_STRING_EQUAL(a->custom_id, b->custom_id);
		CU_ASSERT_STRING_EQUAL(a->model, b->model);
		CU_ASSERT_STRING_EQUAL(a->worker, b->worker);
		CU_ASSERT_STRING_EQUAL(a->worker_name, b->worker_name);
		CU_ASSERT_STRING_EQUAL(a->hardware_profile, b->hardware_profile);
		CU_ASSERT_STRING_EQUAL(a->currency, b->currency);
		CU_ASSERT(a->shard == b->shard && a->line_no == b->line_no);
		CU_ASSERT(a->prompt_tokens == b->prompt_tokens && a->completion_tokens == b->completion_tokens);
		CU_ASSERT(a->busy_ns == b->busy_ns && a->idle_ns == b->idle_ns && a->flops == b->flops);
		CU_ASSERT(a->queue_ns == b->queue_ns && a->first_token_ns == b->first_token_ns);
		CU_ASSERT(a->rate_busy_micros_per_hour == b->rate_busy_micros_per_hour);
		CU_ASSERT(a->rate_idle_micros_per_hour == b->rate_idle_micros_per_hour);
		CU_ASSERT(a->cost_marginal_micros == b->cost_marginal_micros);
		CU_ASSERT(a->cost_loaded_micros == b->cost_loaded_micros);
		CU_ASSERT(a->via_batch == b->via_batch && a->answered_at_ns == b->answered_at_ns);
	}
	ledger_rows_destroy(&out);
	CU_ASSERT_PTR_NULL(out);

	ledger_filter_t f = { .job = "b2" };
	CU_ASSERT_EQUAL_FATAL(ledger_select(db, &f, &out, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(out->n, 2);
	ledger_rows_destroy(&out);
	f = (ledger_filter_t){ .worker_name = "w1", .from_ns = 150, .to_ns = 400 };
	CU_ASSERT_EQUAL_FATAL(ledger_select(db, &f, &out, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(out->n, 1);
	CU_ASSERT_EQUAL(out->v[0].answered_at_ns, 300);
	ledger_rows_destroy(&out);
	f = (ledger_filter_t){ .model = "none" };
	CU_ASSERT_EQUAL_FATAL(ledger_select(db, &f, &out, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(out->n, 0);
	ledger_rows_destroy(&out);

	rows[0].flops = UINT64_MAX;
	rows[0].line_no = 9;
	CU_ASSERT_EQUAL(ledger_insert(db, rows, 1, err, sizeof(err)), -ERANGE);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "flops"));
	sqlite3_close(db);
}

static void test_schema_mismatch(void)
{
	sqlite3 *db = open_db();
	char err[512] = "";
	CU_ASSERT_EQUAL(ledger_check_schema(db, false, err, sizeof(err)), -EPROTO);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "no table"));
	CU_ASSERT_EQUAL(sqlite3_exec(db, "CREATE TABLE ledger (id INTEGER PRIMARY KEY, job TEXT, custom_id TEXT)",
				     NULL, NULL, NULL), SQLITE_OK);
	CU_ASSERT_EQUAL(ledger_check_schema(db, false, err, sizeof(err)), -EPROTO);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "column line_no missing"));
	sqlite3_close(db);
}

/* The older shapes of the table, each with one row booked by the code of
 * its time: the daemon's original table (no meter columns), the same after
 * an older margind added the meter's five columns (no tables of booked
 * equivalents yet), and after it added those tables too (all without a
 * user_version: those margind versions did not count). */
static const char *daemon_table =
	"CREATE TABLE ledger (id INTEGER PRIMARY KEY, job TEXT NOT NULL, custom_id TEXT NOT NULL,"
	" line_no INTEGER NOT NULL, model TEXT NOT NULL, worker TEXT NOT NULL, worker_name TEXT NOT NULL,"
	" hardware_profile TEXT NOT NULL, shard INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL,"
	" completion_tokens INTEGER NOT NULL, busy_ns INTEGER NOT NULL, flops INTEGER NOT NULL,"
	" queue_ns INTEGER NOT NULL, first_token_ns INTEGER NOT NULL,"
	" cost_marginal_micros INTEGER NOT NULL DEFAULT 0, cost_loaded_micros INTEGER NOT NULL DEFAULT 0,"
	" answered_at_ns INTEGER NOT NULL);"
	"CREATE INDEX ledger_job ON ledger(job);"
	"INSERT INTO ledger (job, custom_id, line_no, model, worker, worker_name, hardware_profile, shard,"
	" prompt_tokens, completion_tokens, busy_ns, flops, queue_ns, first_token_ns, cost_marginal_micros,"
	" cost_loaded_micros, answered_at_ns) VALUES ('batch_1', 'r1', 0, 'm', 'wid', 'w', '8xh100', 3, 11, 22,"
	" 3600000000000, 0, 0, 0, 67493836, 67493836, 5);";
static const char *meter_columns =
	"ALTER TABLE ledger ADD COLUMN idle_ns INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE ledger ADD COLUMN currency TEXT NOT NULL DEFAULT '';"
	"ALTER TABLE ledger ADD COLUMN rate_busy_micros_per_hour INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE ledger ADD COLUMN rate_idle_micros_per_hour INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE ledger ADD COLUMN via_batch INTEGER NOT NULL DEFAULT 1;"
	"UPDATE ledger SET currency = 'USD', idle_ns = 77, cost_loaded_micros = 70000000;";
static const char *api_tables =
	"CREATE TABLE ledger_api_price (id INTEGER PRIMARY KEY, ref_model TEXT NOT NULL, currency TEXT NOT NULL,"
	" price_currency TEXT NOT NULL, input_per_1m TEXT NOT NULL, output_per_1m TEXT NOT NULL, fx_rate TEXT NOT NULL,"
	" fx_source TEXT NOT NULL, price_table TEXT NOT NULL, price_source TEXT NOT NULL, price_date TEXT NOT NULL,"
	" UNIQUE (ref_model, currency, price_currency, input_per_1m, output_per_1m, fx_rate, fx_source,"
	" price_table, price_source, price_date));"
	"CREATE TABLE ledger_api (ledger_id INTEGER NOT NULL, ref_model TEXT NOT NULL, micros INTEGER NOT NULL,"
	" price_id INTEGER NOT NULL, PRIMARY KEY (ledger_id, ref_model)) WITHOUT ROWID;"
	"CREATE VIEW ledger_api_view AS SELECT a.ledger_id, a.ref_model, a.micros, p.currency, p.price_currency,"
	" p.input_per_1m, p.output_per_1m, p.fx_rate, p.fx_source, p.price_table, p.price_source, p.price_date"
	" FROM ledger_api a JOIN ledger_api_price p ON p.id = a.price_id;"
	"INSERT INTO ledger_api_price VALUES (1, 'gpt-4o-mini', 'USD', 'USD', '0.15', '0.6', '1', '', 't', 's', 'd');"
	"INSERT INTO ledger_api VALUES (1, 'gpt-4o-mini', 15, 1);";

/* Each older shape: readable as it is (read-only tools), then migrated by
 * ledger_create to the current schema with its row's costs, currency and
 * equivalents as booked and no window (period_ns = 0); new rows carry
 * their window; a second run changes nothing. */
static void test_migrate(void)
{
	for (int shape = 0; shape < 3; shape++) {
		sqlite3 *db = open_db();
		char err[512] = "";
		ledger_rows_t *out = NULL;
		CU_ASSERT_EQUAL_FATAL(sqlite3_exec(db, daemon_table, NULL, NULL, NULL), SQLITE_OK);
		if (shape >= 1)
			CU_ASSERT_EQUAL_FATAL(sqlite3_exec(db, meter_columns, NULL, NULL, NULL), SQLITE_OK);
		if (shape >= 2)
			CU_ASSERT_EQUAL_FATAL(sqlite3_exec(db, api_tables, NULL, NULL, NULL), SQLITE_OK);
		CU_ASSERT_EQUAL(ledger_check_schema(db, false, err, sizeof(err)), 0);
		CU_ASSERT_EQUAL(ledger_check_schema(db, true, err, sizeof(err)), -EPROTO);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, shape == 0 ? "idle_ns" : "period_start_ns"));
		if (shape == 0) {
			/* No currency anywhere: an error that says what to pass. */
			CU_ASSERT_EQUAL(ledger_select(db, NULL, &out, err, sizeof(err)), -EINVAL);
			CU_ASSERT_PTR_NOT_NULL(strstr(err, "default_currency"));
		}
		ledger_filter_t f = { .default_currency = "CNY" };
		CU_ASSERT_EQUAL_FATAL(ledger_select(db, &f, &out, err, sizeof(err)), 0);
		CU_ASSERT_EQUAL_FATAL(out->n, 1);
		CU_ASSERT_EQUAL(out->v[0].period_ns, 0);
		ledger_rows_destroy(&out);

		CU_ASSERT_EQUAL(cu_sql_int(db, "PRAGMA user_version"), 0);
		int r = ledger_create(db, err, sizeof(err));
		if (r < 0)
			fprintf(stderr, "shape %d: %s\n", shape, err);
		CU_ASSERT_EQUAL_FATAL(r, 0);
		CU_ASSERT_EQUAL(cu_sql_int(db, "PRAGMA user_version"), LEDGER_STEPS);
		CU_ASSERT_EQUAL(ledger_check_schema(db, true, err, sizeof(err)), 0);
		CU_ASSERT_EQUAL(ledger_create(db, err, sizeof(err)), 0);	/* idempotent */
		CU_ASSERT_EQUAL_FATAL(ledger_select(db, &f, &out, err, sizeof(err)), 0);
		CU_ASSERT_EQUAL_FATAL(out->n, 1);
		const ledger_row_t *o = &out->v[0];
		CU_ASSERT_STRING_EQUAL(o->currency, shape == 0 ? "CNY" : "USD");	/* '' takes the default */
		CU_ASSERT_EQUAL(o->cost_marginal_micros, 67493836);
		CU_ASSERT_EQUAL(o->cost_loaded_micros, shape == 0 ? 67493836 : 70000000);
		CU_ASSERT_EQUAL(o->idle_ns, shape == 0 ? 0 : 77);
		CU_ASSERT(o->via_batch && o->shard == 3);
		CU_ASSERT(o->period_ns == 0 && o->period_start_ns == 0 && !o->period_open);
		CU_ASSERT_EQUAL(o->n_api, shape == 2 ? 1 : 0);	/* an old row: as booked */
		ledger_rows_destroy(&out);
		/* New rows of the migrated ledger keep their window and equivalents. */
		ledger_api_price_t p = { .ref_model = "gpt-4o-mini", .currency = "CNY", .price_currency = "USD",
					 .input_per_1m = "0.075", .output_per_1m = "0.3", .fx_rate = "7.2", .fx_source = "fx",
					 .price_table = "fx+closed-2024", .price_source = "closed-2024.conf:40: LiteLLM",
					 .price_date = "2024-07-25" };
		ledger_api_t a = { &p, 1234 };
		ledger_row_t w = row("batch_2", 1, "m", "w", 9);
		w.api = &a;
		w.n_api = 1;
		w.period_start_ns = 7 * LEDGER_HOUR_NS;
		w.period_ns = LEDGER_HOUR_NS;
		w.period_open = true;
		CU_ASSERT_EQUAL_FATAL(ledger_insert(db, &w, 1, err, sizeof(err)), 0);
		CU_ASSERT_EQUAL_FATAL(ledger_select(db, &f, &out, err, sizeof(err)), 0);
		CU_ASSERT_EQUAL_FATAL(out->n, 2);
		CU_ASSERT_EQUAL_FATAL(out->v[1].n_api, 1);
		CU_ASSERT_EQUAL(out->v[1].api[0].micros, 1234);
		CU_ASSERT_EQUAL(out->v[1].period_start_ns, 7 * LEDGER_HOUR_NS);
		CU_ASSERT_EQUAL(out->v[1].period_ns, LEDGER_HOUR_NS);
		CU_ASSERT(out->v[1].period_open);
		ledger_rows_destroy(&out);
		sqlite3_close(db);
	}
	/* A ledger from a newer build is refused, not downgraded. */
	sqlite3 *db = open_db();
	char err[256];
	CU_ASSERT_EQUAL(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
	CU_ASSERT_EQUAL(ledger_create(db, err, sizeof(err)), -EPROTO);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "newer"));
	CU_ASSERT_EQUAL(ledger_migrate_step(db, LEDGER_STEPS + 1, err, sizeof(err)), -EINVAL);
	sqlite3_close(db);
}

/* The oracle: rate (micros/h) x ns / 3.6e12, rounded half up, 128 bits. */
static int64_t oracle_cost(int64_t rate_busy, uint64_t busy, int64_t rate_idle, uint64_t idle)
{
	mg_u128 d = 3600000000000ULL;
	return (int64_t)(((mg_u128)rate_busy * busy + (mg_u128)rate_idle * idle + d / 2) / d);
}

static uint64_t rnd(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

struct deltas {
	int64_t sum;
	int n;
};

static int on_delta(void *user, const char *job, int64_t d)
{
	struct deltas *x = user;
	x->sum += d;
	x->n++;
	return 0;
}

/* Windows closed with random busy times (zeros, tiny, most of the hour)
 * and attended times: the loaded costs of a window's calls sum to the
 * node cost of the window exactly, computed here from engine and idle
 * time; loaded >= marginal; the idle time spread sums to the window's;
 * the jobs' totals rise by what the calls did. A window with node time and
 * no calls keeps its cost in its row. A closed window takes nothing more. */
static void test_windows(void)
{
	sqlite3 *db = open_db();
	char err[512] = "";
	CU_ASSERT_EQUAL_FATAL(ledger_create(db, err, sizeof(err)), 0);
	uint64_t x = 0x9e3779b97f4a7c15ULL;
	const int64_t rb = 883200, ri = 231000;
	for (int win = 0; win < 40; win++) {
		ledger_period_t p = { .start_ns = win * LEDGER_HOUR_NS, .period_ns = LEDGER_HOUR_NS, .currency = "CNY",
				      .rate_busy_micros_per_hour = rb, .rate_idle_micros_per_hour = ri };
		snprintf(p.worker, sizeof(p.worker), "w%d", win % 3);
		snprintf(p.hardware_profile, sizeof(p.hardware_profile), "hw");
		int results = win % 7 == 6 ? 0 : 1 + (int)(rnd(&x) % 4);
		uint64_t engine = 0;
		for (int k = 0; k < results; k++) {
			/* A Result: n calls booked at their marginal cost. */
			size_t n = rnd(&x) % 5;	/* 0: only failed outputs */
			ledger_row_t rows[5];
			uint64_t busy = 0;
			for (size_t i = 0; i < n; i++) {
				rows[i] = row(i % 2 ? "ja" : "jb", (int64_t)(win * 100 + k * 10 + (int)i), "m", "w", 1);
				rows[i].worker = p.worker;
				uint64_t kind = rnd(&x) % 4;
				rows[i].busy_ns = kind == 0 ? 0 : kind == 1 ? rnd(&x) % 1000 : rnd(&x) % 200000000000ULL;
				busy += rows[i].busy_ns;
				rows[i].period_start_ns = p.start_ns;
				rows[i].period_ns = p.period_ns;
				rows[i].period_open = true;
			}
			ledger_period_t before;
			uint64_t b0 = ledger_period_find(db, p.start_ns, p.period_ns, p.worker, &before, err,
							 sizeof(err)) == 0 ? before.busy_ns : 0;
			int64_t m_total = oracle_cost(rb, b0 + busy, 0, 0) - oracle_cost(rb, b0, 0, 0);
			uint64_t w8[5];
			int64_t marg[5];
			for (size_t i = 0; i < n; i++)
				w8[i] = rows[i].busy_ns;
			CU_ASSERT_EQUAL_FATAL(meter_allocate(m_total, w8, n, marg), 0);
			for (size_t i = 0; i < n; i++)
				rows[i].cost_marginal_micros = rows[i].cost_loaded_micros = marg[i];
			CU_ASSERT_EQUAL_FATAL(ledger_insert(db, rows, n, err, sizeof(err)), 0);
			ledger_period_t add = p;
			add.busy_ns = busy;
			add.engine_ns = busy + (rnd(&x) % 3 == 0 ? rnd(&x) % 100000000000ULL : 0);	/* failed */
			add.calls = (int64_t)n;
			add.marginal_micros = m_total;
			engine += add.engine_ns;
			CU_ASSERT_EQUAL_FATAL(ledger_period_add(db, &add, err, sizeof(err)), 0);
		}
		uint64_t attended = rnd(&x) % 2 ? LEDGER_HOUR_NS : rnd(&x) % LEDGER_HOUR_NS;
		char where[160];
		snprintf(where, sizeof(where), "FROM ledger WHERE worker = '%s' AND period_start_ns = %lld", p.worker,
			 (long long)p.start_ns);
		char q[300];
		snprintf(q, sizeof(q), "SELECT coalesce(sum(cost_loaded_micros), 0) %s", where);
		int64_t loaded_before = cu_sql_int(db, q);
		struct deltas d = { 0, 0 };
		int r = ledger_period_close(db, &p, attended, on_delta, &d, err, sizeof(err));
		if (r < 0)
			fprintf(stderr, "close: %s\n", err);
		CU_ASSERT_EQUAL_FATAL(r, 0);
		ledger_period_t c;
		CU_ASSERT_EQUAL_FATAL(ledger_period_find(db, p.start_ns, p.period_ns, p.worker, &c, err, sizeof(err)), 0);
		uint64_t idle = attended > engine ? attended - engine : 0;
		CU_ASSERT(c.closed);
		CU_ASSERT_EQUAL(c.engine_ns, engine);
		CU_ASSERT_EQUAL(c.attended_ns, attended);
		CU_ASSERT_EQUAL(c.idle_ns, idle);
		CU_ASSERT_EQUAL(c.node_cost_micros, oracle_cost(rb, engine, ri, idle));
		snprintf(q, sizeof(q), "SELECT count(*) %s", where);
		int64_t calls = cu_sql_int(db, q);
		CU_ASSERT_EQUAL(calls, c.calls);
		snprintf(q, sizeof(q), "SELECT coalesce(sum(cost_loaded_micros), 0) %s", where);
		int64_t loaded = cu_sql_int(db, q);
		if (calls > 0) {
			CU_ASSERT_EQUAL(loaded, c.node_cost_micros);
			snprintf(q, sizeof(q), "SELECT sum(idle_ns) %s", where);
			CU_ASSERT_EQUAL(cu_sql_int(db, q), (int64_t)idle);
		} else {
			CU_ASSERT_EQUAL(loaded, 0);	/* unabsorbed: the row keeps it */
		}
		CU_ASSERT_EQUAL(d.sum, loaded - loaded_before);
		snprintf(q, sizeof(q), "SELECT count(*) %s AND (period_open != 0 OR cost_loaded_micros < cost_marginal_micros)",
			 where);
		CU_ASSERT_EQUAL(cu_sql_int(db, q), 0);
		CU_ASSERT_EQUAL(ledger_period_close(db, &p, attended, NULL, NULL, err, sizeof(err)), -EALREADY);
		ledger_period_t more = p;
		more.engine_ns = more.busy_ns = 5;
		CU_ASSERT_EQUAL(ledger_period_add(db, &more, err, sizeof(err)), -EALREADY);
	}
	/* Windows are aligned to UTC: 2026-12-07T17:26:46Z is in the hour from
	 * 17:00 and the day from 00:00. */
	int64_t t = 1796664406LL * 1000000000LL;
	CU_ASSERT_EQUAL(ledger_window_start(t, LEDGER_HOUR_NS), 1796662800LL * 1000000000LL);
	CU_ASSERT_EQUAL(ledger_window_start(t, LEDGER_DAY_NS), 1796601600LL * 1000000000LL);
	CU_ASSERT_EQUAL(ledger_window_start(-1, LEDGER_HOUR_NS), -LEDGER_HOUR_NS);
	sqlite3_close(db);
}

/* Booked equivalents: each row's come back with it, in booking order,
 * with what priced them; a pricing is stored once however many calls (and
 * inserts) use it; two equivalents of one call for the same reference are
 * refused; a filter selects only its rows' equivalents; the view joins
 * them for SQL tools. */
static void test_api(void)
{
	sqlite3 *db = open_db();
	char err[512] = "";
	CU_ASSERT_EQUAL_FATAL(ledger_create(db, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(ledger_check_schema(db, true, err, sizeof(err)), 0);
	ledger_api_price_t pq = { .ref_model = "qwen-long", .currency = "CNY", .price_currency = "CNY",
				  .input_per_1m = "0.5", .output_per_1m = "2", .fx_rate = "1", .fx_source = "",
				  .price_table = "fx+cn", .price_source = "cn.conf:8: 163.com", .price_date = "2024-05-21" };
	ledger_api_price_t pg = { .ref_model = "gpt-4o-mini", .currency = "CNY", .price_currency = "USD",
				  .input_per_1m = "0.075", .output_per_1m = "0.3", .fx_rate = "7.2",
				  .fx_source = "USD -> CNY: CNY_per_USD = 7.2", .price_table = "fx+cn",
				  .price_source = "closed.conf:40", .price_date = "2024-07-25" };
	ledger_api_price_t pq2 = pq;	/* the same pricing by another pointer */
	ledger_api_t a0[2] = { { &pq, 11 }, { &pg, 22 } }, a1[2] = { { &pq2, 33 }, { &pg, 44 } };
	ledger_row_t rows[3] = { row("b1", 0, "m", "w1", 100), row("b1", 1, "m", "w1", 200), row("b2", 0, "m", "w1", 300) };
	rows[0].api = a0;
	rows[0].n_api = 2;
	rows[2].api = a1;
	rows[2].n_api = 2;	/* rows[1] has none */
	CU_ASSERT_EQUAL_FATAL(ledger_insert(db, rows, 3, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(ledger_insert(db, rows, 1, err, sizeof(err)), 0);	/* a second call */
	CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT count(*) FROM ledger_api"), 6);
	CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT count(*) FROM ledger_api_price"), 2);
	CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT sum(micros) FROM ledger_api_view WHERE fx_rate = '7.2'"
			      " AND price_date = '2024-07-25' AND price_currency = 'USD'"), 22 + 44 + 22);

	ledger_rows_t *out = NULL;
	CU_ASSERT_EQUAL_FATAL(ledger_select(db, NULL, &out, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(out->n, 4);
	CU_ASSERT_EQUAL(out->n_prices, 2);
	CU_ASSERT_EQUAL_FATAL(out->v[0].n_api, 2);
	CU_ASSERT_STRING_EQUAL(out->v[0].api[0].price->ref_model, "qwen-long");	/* booking order */
	CU_ASSERT_EQUAL(out->v[0].api[0].micros, 11);
	CU_ASSERT_EQUAL(out->v[0].api[1].micros, 22);
	const ledger_api_t *g = ledger_row_find_api(&out->v[0], "gpt-4o-mini");
	CU_ASSERT_PTR_NOT_NULL_FATAL(g);
	CU_ASSERT_EQUAL(g->micros, 22);
	CU_ASSERT_STRING_EQUAL(g->price->fx_rate, "7.2");
	CU_ASSERT_STRING_EQUAL(g->price->fx_source, "USD -> CNY: CNY_per_USD = 7.2");
	CU_ASSERT_STRING_EQUAL(g->price->input_per_1m, "0.075");
	CU_ASSERT_STRING_EQUAL(g->price->output_per_1m, "0.3");
	CU_ASSERT_STRING_EQUAL(g->price->price_table, "fx+cn");
	CU_ASSERT_STRING_EQUAL(g->price->price_source, "closed.conf:40");
	CU_ASSERT_STRING_EQUAL(g->price->price_date, "2024-07-25");
	CU_ASSERT_STRING_EQUAL(g->price->currency, "CNY");
	CU_ASSERT_STRING_EQUAL(g->price->price_currency, "USD");
	CU_ASSERT(g->price->id > 0);
	CU_ASSERT_EQUAL(out->v[1].n_api, 0);
	CU_ASSERT_PTR_NULL(ledger_row_find_api(&out->v[1], "qwen-long"));
	CU_ASSERT_EQUAL(out->v[2].n_api, 2);
	CU_ASSERT_EQUAL(ledger_row_find_api(&out->v[2], "qwen-long")->micros, 33);
	CU_ASSERT_PTR_EQUAL(ledger_row_find_api(&out->v[2], "qwen-long")->price, out->v[0].api[0].price);
	CU_ASSERT_EQUAL(out->v[3].n_api, 2);
	CU_ASSERT_PTR_NULL(ledger_row_find_api(&out->v[3], "gpt-4o"));
	ledger_rows_destroy(&out);

	ledger_filter_t f = { .job = "b2" };
	CU_ASSERT_EQUAL_FATAL(ledger_select(db, &f, &out, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(out->n, 1);
	CU_ASSERT_EQUAL(out->n_api, 2);
	CU_ASSERT_EQUAL(ledger_row_find_api(&out->v[0], "gpt-4o-mini")->micros, 44);
	ledger_rows_destroy(&out);

	/* One reference twice for one call. */
	ledger_api_t twice[2] = { { &pq, 1 }, { &pq2, 2 } };
	rows[1].api = twice;
	rows[1].n_api = 2;
	CU_ASSERT_EQUAL(ledger_insert(db, &rows[1], 1, err, sizeof(err)), -EEXIST);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "qwen-long"));
	sqlite3_close(db);
}

/* Another connection books a call while ledger_select reads (margind's
 * core thread and an HTTP thread answering /v1/cost): the rows, their
 * equivalents and prices come from one snapshot, never a call's
 * equivalent without its row or its pricing. */
struct writer {
	sqlite3 *db;
	ledger_row_t *row;
	int fired;
};

/* When the SELECT of the equivalents starts: after the rows and the
 * prices were read, the moment a separate read would see more. */
static int write_once(unsigned type, void *user, void *stmt, void *sql)
{
	struct writer *w = user;
	(void)stmt;
	if (type == SQLITE_TRACE_STMT && strstr((const char *)sql, "JOIN ledger_api a") != NULL &&
	    w->fired++ == 0) {
		char err[256];
		CU_ASSERT_EQUAL(ledger_insert(w->db, w->row, 1, err, sizeof(err)), 0);
	}
	return 0;
}

static void test_select_snapshot(void)
{
	char path[600], err[512] = "";
	snprintf(path, sizeof(path), "%s/snapshot.db", cu_tmpdir());
	remove(path);
	sqlite3 *wdb = NULL, *rdb = NULL;
	CU_ASSERT_EQUAL_FATAL(sqlite3_open(path, &wdb), SQLITE_OK);
	CU_ASSERT_EQUAL_FATAL(sqlite3_exec(wdb, "PRAGMA journal_mode=WAL", NULL, NULL, NULL), SQLITE_OK);
	CU_ASSERT_EQUAL_FATAL(ledger_create(wdb, err, sizeof(err)), 0);
	ledger_api_price_t pq = { .ref_model = "qwen-long", .currency = "CNY", .price_currency = "CNY",
				  .input_per_1m = "0.5", .output_per_1m = "2", .fx_rate = "1", .fx_source = "",
				  .price_table = "cn", .price_source = "cn.conf:8", .price_date = "2024-05-21" };
	ledger_api_price_t pg = { .ref_model = "gpt-4o-mini", .currency = "CNY", .price_currency = "USD",
				  .input_per_1m = "0.075", .output_per_1m = "0.3", .fx_rate = "7.2",
				  .fx_source = "USD -> CNY", .price_table = "closed", .price_source = "closed.conf:40",
				  .price_date = "2024-07-25" };
	ledger_api_t a0 = { &pq, 11 }, a1 = { &pg, 22 };
	ledger_row_t first = row("b1", 0, "m", "w1", 100), second = row("b1", 1, "m", "w1", 200);
	first.api = &a0;
	first.n_api = 1;
	second.api = &a1;
	second.n_api = 1;
	CU_ASSERT_EQUAL_FATAL(ledger_insert(wdb, &first, 1, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(sqlite3_open(path, &rdb), SQLITE_OK);
	struct writer w = { wdb, &second, 0 };
	sqlite3_trace_v2(rdb, SQLITE_TRACE_STMT, write_once, &w);
	ledger_rows_t *out = NULL;
	int r = ledger_select(rdb, NULL, &out, err, sizeof(err));
	if (r < 0)
		fprintf(stderr, "\nledger_select: %s\n", err);
	CU_ASSERT_EQUAL_FATAL(r, 0);
	CU_ASSERT(w.fired > 0);
	CU_ASSERT_EQUAL(out->n, 1);		/* the snapshot: before the second call */
	CU_ASSERT_EQUAL(out->n_api, 1);
	CU_ASSERT_EQUAL(out->n_prices, 1);
	ledger_rows_destroy(&out);
	sqlite3_trace_v2(rdb, 0, NULL, NULL);
	CU_ASSERT_EQUAL_FATAL(ledger_select(rdb, NULL, &out, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(out->n, 2);		/* the next read sees it */
	CU_ASSERT_EQUAL(out->n_api, 2);
	ledger_rows_destroy(&out);
	sqlite3_close(rdb);
	sqlite3_close(wdb);
}

const cu_test_t ledger_tests[] = {
	{ "migrate", test_migrate },
	{ "windows", test_windows },
	{ "roundtrip", test_roundtrip },
	{ "api", test_api },
	{ "select_snapshot", test_select_snapshot },
	{ "schema_mismatch", test_schema_mismatch },
	{ NULL, NULL },
};
