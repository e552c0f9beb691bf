/* ledger: the schema the meter expects, insert and select round trips,
 * filters, and a clear error for a table that does not match. */
#include "tests.h"
#include "cu_sql.h"
#include "ledger.h"

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

/* The daemon's table as daemon/journal.c creates it (without the meter's
 * five columns): readable at once with a default currency, and upgraded in
 * place by ledger_upgrade(). */
static const char *daemon_table =
	"CREATE TABLE ledger (id INTEGER PRIMARY KEY, job TEXT NOT NULL, custom_id TEXT NOT NULL,"
	" line_no INTEGER NOT NULL, model TEXT NOT NULL, worker TEXT NOT NULL, worker_name TEXT NOT NULL,"
	" hardware_profile TEXT NOT NULL, shard INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL,"
	" completion_tokens INTEGER NOT NULL, busy_ns INTEGER NOT NULL, flops INTEGER NOT NULL,"
	" queue_ns INTEGER NOT NULL, first_token_ns INTEGER NOT NULL,"
	" cost_marginal_micros INTEGER NOT NULL DEFAULT 0, cost_loaded_micros INTEGER NOT NULL DEFAULT 0,"
	" answered_at_ns INTEGER NOT NULL);"
	"INSERT INTO ledger (job, custom_id, line_no, model, worker, worker_name, hardware_profile, shard,"
	" prompt_tokens, completion_tokens, busy_ns, flops, queue_ns, first_token_ns, cost_marginal_micros,"
	" cost_loaded_micros, answered_at_ns) VALUES ('batch_1', 'r1', 0, 'm', 'wid', 'w', '8xh100', 3, 11, 22,"
	" 3600000000000, 0, 0, 0, 67493836, 67493836, 5)";

static void test_daemon_table(void)
{
	sqlite3 *db = open_db();
	char err[512] = "";
	ledger_rows_t *out = NULL;
	CU_ASSERT_EQUAL_FATAL(sqlite3_exec(db, daemon_table, NULL, NULL, NULL), SQLITE_OK);
	CU_ASSERT_EQUAL(ledger_check_schema(db, false, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(ledger_check_schema(db, true, err, sizeof(err)), -EPROTO);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "idle_ns"));
	/* No currency anywhere: an error that says what to pass. */
	CU_ASSERT_EQUAL(ledger_select(db, NULL, &out, err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "default_currency"));
	ledger_filter_t f = { .default_currency = "CNY" };
	CU_ASSERT_EQUAL_FATAL(ledger_select(db, &f, &out, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(out->n, 1);
	CU_ASSERT_STRING_EQUAL(out->v[0].currency, "CNY");
	CU_ASSERT(out->v[0].via_batch && out->v[0].idle_ns == 0 && out->v[0].cost_loaded_micros == 67493836);
	CU_ASSERT_EQUAL(out->v[0].shard, 3);
	ledger_rows_destroy(&out);
	/* Five columns, the two tables of booked equivalents and their view. */
	CU_ASSERT_EQUAL(ledger_upgrade(db, err, sizeof(err)), 8);
	CU_ASSERT_EQUAL(ledger_upgrade(db, err, sizeof(err)), 0);	/* idempotent */
	CU_ASSERT_EQUAL(ledger_check_schema(db, true, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(ledger_select(db, &f, &out, err, sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(out->v[0].currency, "CNY");	/* '' takes the default */
	CU_ASSERT_EQUAL(out->v[0].n_api, 0);			/* an old row: none booked */
	CU_ASSERT_PTR_NULL(ledger_row_find_api(&out->v[0], "gpt-4o-mini"));
	ledger_rows_destroy(&out);
	/* New rows of the upgraded journal keep their equivalents. */
	ledger_api_price_t p = { .ref_model = "gpt-4o-mini", .currency = "CNY", .price_currency = "USD",
				 .input_per_1m = "0.075", .output_per_1m = "0.3", .fx_rate = "7.2", .fx_source = "fx",
				 .price_table = "fx+closed-2024", .price_source = "closed-2024.conf:40: LiteLLM",
				 .price_date = "2024-07-25" };
	ledger_api_t a = { &p, 1234 };
	ledger_row_t w = row("batch_2", 1, "m", "w", 9);
	w.api = &a;
	w.n_api = 1;
	CU_ASSERT_EQUAL_FATAL(ledger_insert(db, &w, 1, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(ledger_select(db, &f, &out, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(out->n, 2);
	CU_ASSERT_EQUAL(out->v[0].n_api, 0);
	CU_ASSERT_EQUAL_FATAL(out->v[1].n_api, 1);
	CU_ASSERT_EQUAL(out->v[1].api[0].micros, 1234);
	ledger_rows_destroy(&out);
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

const cu_test_t ledger_tests[] = {
	{ "daemon_table", test_daemon_table },
	{ "roundtrip", test_roundtrip },
	{ "api", test_api },
	{ "schema_mismatch", test_schema_mismatch },
	{ NULL, NULL },
};
