/* ledger: the schema the meter expects, insert and select round trips,
 * filters, and a clear error for a table that does not match. */
#include "tests.h"
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

static ledger_row_t row(const char *batch, int64_t line, const char *model, const char *worker, int64_t at)
{
	return (ledger_row_t){ .batch_id = batch, .shard_id = line / 2, .line_no = line, .custom_id = "req-x",
			       .model = model, .worker = worker, .hardware = "cpu-2vcpu", .prompt_tokens = 10,
			       .completion_tokens = 20, .busy_ns = 1000 + (uint64_t)line, .idle_ns = 7, .flops = 1ULL << 40,
			       .currency = "CNY", .rate_busy_micros_per_hour = 883200,
			       .rate_idle_micros_per_hour = 883200, .cost_marginal_micros = 3 + line,
			       .cost_loaded_micros = 4 + line, .via_batch = line % 2 == 0, .booked_at_ns = at };
}

static void test_roundtrip(void)
{
	sqlite3 *db = open_db();
	char err[512] = "";
	CU_ASSERT_EQUAL_FATAL(ledger_create(db, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(ledger_create(db, err, sizeof(err)), 0);	/* idempotent */
	CU_ASSERT_EQUAL(ledger_check_schema(db, err, sizeof(err)), 0);
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
		CU_ASSERT_STRING_EQUAL(a->batch_id, b->batch_id);
		CU_ASSERT_STRING_EQUAL(a->custom_id, b->custom_id);
		CU_ASSERT_STRING_EQUAL(a->model, b->model);
		CU_ASSERT_STRING_EQUAL(a->worker, b->worker);
		CU_ASSERT_STRING_EQUAL(a->hardware, b->hardware);
		CU_ASSERT_STRING_EQUAL(a->currency, b->currency);
		CU_ASSERT(a->shard_id == b->shard_id && a->line_no == b->line_no);
		CU_ASSERT(a->prompt_tokens == b->prompt_tokens && a->completion_tokens == b->completion_tokens);
		CU_ASSERT(a->busy_ns == b->busy_ns && a->idle_ns == b->idle_ns && a->flops == b->flops);
		CU_ASSERT(a->rate_busy_micros_per_hour == b->rate_busy_micros_per_hour);
		CU_ASSERT(a->rate_idle_micros_per_hour == b->rate_idle_micros_per_hour);
		CU_ASSERT(a->cost_marginal_micros == b->cost_marginal_micros);
		CU_ASSERT(a->cost_loaded_micros == b->cost_loaded_micros);
		CU_ASSERT(a->via_batch == b->via_batch && a->booked_at_ns == b->booked_at_ns);
	}
	ledger_rows_destroy(&out);
	CU_ASSERT_PTR_NULL(out);

	ledger_filter_t f = { .batch_id = "b2" };
	CU_ASSERT_EQUAL_FATAL(ledger_select(db, &f, &out, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(out->n, 2);
	ledger_rows_destroy(&out);
	f = (ledger_filter_t){ .worker = "w1", .from_ns = 150, .to_ns = 400 };
	CU_ASSERT_EQUAL_FATAL(ledger_select(db, &f, &out, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(out->n, 1);
	CU_ASSERT_EQUAL(out->v[0].booked_at_ns, 300);
	ledger_rows_destroy(&out);
	f = (ledger_filter_t){ .model = "none" };
	CU_ASSERT_EQUAL_FATAL(ledger_select(db, &f, &out, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(out->n, 0);
	ledger_rows_destroy(&out);

	/* A call is booked once: the same (batch, line) again is refused. */
	CU_ASSERT_EQUAL(ledger_insert(db, rows, 1, err, sizeof(err)), -EEXIST);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "b1"));
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
	CU_ASSERT_EQUAL(ledger_check_schema(db, err, sizeof(err)), -EPROTO);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "no table"));
	CU_ASSERT_EQUAL(sqlite3_exec(db, "CREATE TABLE ledger (id INTEGER PRIMARY KEY, batch_id TEXT, custom_id TEXT)",
				     NULL, NULL, NULL), SQLITE_OK);
	CU_ASSERT_EQUAL(ledger_check_schema(db, err, sizeof(err)), -EPROTO);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "column shard_id missing"));
	sqlite3_close(db);
}

const cu_test_t ledger_tests[] = {
	{ "roundtrip", test_roundtrip },
	{ "schema_mismatch", test_schema_mismatch },
	{ NULL, NULL },
};
