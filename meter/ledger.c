/* ledger: see ledger.h. */
#include "ledger.h"
#include "cost.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Step 1: the daemon's original table. Steps 2 and 3 add columns to it
 * (opt_cols) and tables beside it. */
static const char step1_sql[] =
	"CREATE TABLE IF NOT EXISTS ledger (\n"
	"  id INTEGER PRIMARY KEY,\n"
	"  job TEXT NOT NULL,\n"
	"  custom_id TEXT NOT NULL,\n"
	"  line_no INTEGER NOT NULL,\n"
	"  model TEXT NOT NULL,\n"
	"  worker TEXT NOT NULL,\n"
	"  worker_name TEXT NOT NULL,\n"
	"  hardware_profile TEXT NOT NULL,\n"
	"  shard INTEGER NOT NULL,\n"
	"  prompt_tokens INTEGER NOT NULL,\n"
	"  completion_tokens INTEGER NOT NULL,\n"
	"  busy_ns INTEGER NOT NULL,\n"
	"  flops INTEGER NOT NULL,\n"
	"  queue_ns INTEGER NOT NULL,\n"
	"  first_token_ns INTEGER NOT NULL,\n"
	"  cost_marginal_micros INTEGER NOT NULL DEFAULT 0,\n"
	"  cost_loaded_micros INTEGER NOT NULL DEFAULT 0,\n"
	"  answered_at_ns INTEGER NOT NULL);\n"
	"CREATE INDEX IF NOT EXISTS ledger_job ON ledger(job);\n";

/* Step 2's tables of booked equivalents. UNIQUE on every column of
 * ledger_api_price: a pricing is stored once, whoever books it. */
static const char step2_sql[] =
	"CREATE TABLE IF NOT EXISTS ledger_api_price (\n"
	"  id INTEGER PRIMARY KEY,\n"
	"  ref_model TEXT NOT NULL,\n"
	"  currency TEXT NOT NULL,\n"
	"  price_currency TEXT NOT NULL,\n"
	"  input_per_1m TEXT NOT NULL,\n"
	"  output_per_1m TEXT NOT NULL,\n"
	"  fx_rate TEXT NOT NULL,\n"
	"  fx_source TEXT NOT NULL,\n"
	"  price_table TEXT NOT NULL,\n"
	"  price_source TEXT NOT NULL,\n"
	"  price_date TEXT NOT NULL,\n"
	"  UNIQUE (ref_model, currency, price_currency, input_per_1m, output_per_1m, fx_rate, fx_source,\n"
	"          price_table, price_source, price_date));\n"
	"CREATE TABLE IF NOT EXISTS ledger_api (\n"
	"  ledger_id INTEGER NOT NULL,\n"
	"  ref_model TEXT NOT NULL,\n"
	"  micros INTEGER NOT NULL,\n"
	"  price_id INTEGER NOT NULL,\n"
	"  PRIMARY KEY (ledger_id, ref_model)) WITHOUT ROWID;\n"
	"CREATE VIEW IF NOT EXISTS ledger_api_view AS\n"
	"  SELECT a.ledger_id, a.ref_model, a.micros, p.currency, p.price_currency, p.input_per_1m,\n"
	"         p.output_per_1m, p.fx_rate, p.fx_source, p.price_table, p.price_source, p.price_date\n"
	"  FROM ledger_api a JOIN ledger_api_price p ON p.id = a.price_id;\n";

/* Step 3: one row per (window, worker); the open calls of a window are
 * found by the partial index when it closes. */
static const char step3_sql[] =
	"CREATE TABLE IF NOT EXISTS ledger_period (\n"
	"  period_start_ns INTEGER NOT NULL,\n"
	"  period_ns INTEGER NOT NULL,\n"
	"  worker TEXT NOT NULL,\n"
	"  worker_name TEXT NOT NULL,\n"
	"  hardware_profile TEXT NOT NULL,\n"
	"  currency TEXT NOT NULL,\n"
	"  rate_busy_micros_per_hour INTEGER NOT NULL,\n"
	"  rate_idle_micros_per_hour INTEGER NOT NULL,\n"
	"  engine_ns INTEGER NOT NULL DEFAULT 0,\n"
	"  busy_ns INTEGER NOT NULL DEFAULT 0,\n"
	"  calls INTEGER NOT NULL DEFAULT 0,\n"
	"  marginal_micros INTEGER NOT NULL DEFAULT 0,\n"
	"  attended_ns INTEGER NOT NULL DEFAULT 0,\n"
	"  idle_ns INTEGER NOT NULL DEFAULT 0,\n"
	"  node_cost_micros INTEGER NOT NULL DEFAULT 0,\n"
	"  closed INTEGER NOT NULL DEFAULT 0,\n"
	"  PRIMARY KEY (period_start_ns, period_ns, worker));\n"
	"CREATE INDEX IF NOT EXISTS ledger_period_worker ON ledger_period(worker, period_start_ns);\n"
	"CREATE INDEX IF NOT EXISTS ledger_period_open ON ledger_period(closed, period_start_ns);\n"
	"CREATE INDEX IF NOT EXISTS ledger_window ON ledger(worker, period_start_ns, period_ns) WHERE period_open = 1;\n";

/* Step 1's columns, then the later steps' with the SQL that adds each and
 * the expression that stands in for it when absent. */
static const char *const base_cols[] = {
	"id", "job", "custom_id", "line_no", "model", "worker", "worker_name", "hardware_profile", "shard",
	"prompt_tokens", "completion_tokens", "busy_ns", "flops", "queue_ns", "first_token_ns",
	"cost_marginal_micros", "cost_loaded_micros", "answered_at_ns", NULL,
};

enum {
	OPT_IDLE, OPT_CURRENCY, OPT_RATE_BUSY, OPT_RATE_IDLE, OPT_VIA_BATCH, OPT_PERIOD_START, OPT_PERIOD_NS,
	OPT_PERIOD_OPEN, OPT_ENDPOINT, N_OPT
};

static const struct {
	int step;
	const char *name;
	const char *decl;	/* ALTER TABLE ledger ADD COLUMN <decl> */
	const char *absent;	/* select expression when the column is absent */
} opt_cols[N_OPT] = {
	[OPT_IDLE] = { 2, "idle_ns", "idle_ns INTEGER NOT NULL DEFAULT 0", "0" },
	[OPT_CURRENCY] = { 2, "currency", "currency TEXT NOT NULL DEFAULT ''", "''" },
	[OPT_RATE_BUSY] = { 2, "rate_busy_micros_per_hour", "rate_busy_micros_per_hour INTEGER NOT NULL DEFAULT 0", "0" },
	[OPT_RATE_IDLE] = { 2, "rate_idle_micros_per_hour", "rate_idle_micros_per_hour INTEGER NOT NULL DEFAULT 0", "0" },
	[OPT_VIA_BATCH] = { 2, "via_batch", "via_batch INTEGER NOT NULL DEFAULT 1", "1" },
	[OPT_PERIOD_START] = { 3, "period_start_ns", "period_start_ns INTEGER NOT NULL DEFAULT 0", "0" },
	[OPT_PERIOD_NS] = { 3, "period_ns", "period_ns INTEGER NOT NULL DEFAULT 0", "0" },
	[OPT_PERIOD_OPEN] = { 3, "period_open", "period_open INTEGER NOT NULL DEFAULT 0", "0" },
	[OPT_ENDPOINT] = { 4, "endpoint", "endpoint TEXT NOT NULL DEFAULT ''", "''" },
};

static int sql_fail(sqlite3 *db, const char *what, char *err, size_t errlen)
{
	snprintf(err, errlen, "ledger: %s: %s", what, sqlite3_errmsg(db));
	int ec = sqlite3_errcode(db);
	if (ec == SQLITE_NOMEM)
		return -ENOMEM;
	if (ec == SQLITE_CONSTRAINT)
		return -EEXIST;
	if (ec == SQLITE_BUSY || ec == SQLITE_LOCKED)
		return -EBUSY;
	return -EIO;
}

/* Which columns the table has: *n_cols = 0 when there is no table. */
static int table_columns(sqlite3 *db, bool base[], bool opt[], int *n_cols, char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	int r;
	*n_cols = 0;
	if (sqlite3_prepare_v2(db, "PRAGMA table_info(ledger)", -1, &st, NULL) != SQLITE_OK)
		return sql_fail(db, "table_info", err, errlen);
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(st, 1);
		(*n_cols)++;
		for (int i = 0; name && base_cols[i]; i++)
			if (strcmp(name, base_cols[i]) == 0)
				base[i] = true;
		for (int i = 0; name && i < N_OPT; i++)
			if (strcmp(name, opt_cols[i].name) == 0)
				opt[i] = true;
	}
	sqlite3_finalize(st);
	if (r != SQLITE_DONE)
		return sql_fail(db, "table_info", err, errlen);
	return 0;
}

/* 1 when the schema has an object of that type and name, 0 when not. */
static int has_object(sqlite3 *db, const char *type, const char *name, char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type = ?1 AND name = ?2", -1, &st, NULL) !=
	    SQLITE_OK)
		return sql_fail(db, "sqlite_master", err, errlen);
	sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return sql_fail(db, "sqlite_master", err, errlen);
	return rc == SQLITE_ROW;
}

/* The objects later steps create beside the table. */
static const struct {
	int step;
	const char *type, *name;
} step_objects[] = {
	{ 2, "table", "ledger_api_price" }, { 2, "table", "ledger_api" }, { 2, "view", "ledger_api_view" },
	{ 3, "table", "ledger_period" },
};
#define N_STEP_OBJECTS (sizeof(step_objects) / sizeof(step_objects[0]))

int ledger_check_schema(sqlite3 *db, bool strict, char *err, size_t errlen)
{
	bool base[sizeof(base_cols) / sizeof(base_cols[0])] = { false }, opt[N_OPT] = { false };
	int n, r = table_columns(db, base, opt, &n, err, errlen);
	if (r < 0)
		return r;
	if (n == 0) {
		snprintf(err, errlen, "ledger: no table named ledger (ledger_create() or margind's journal makes it)");
		return -EPROTO;
	}
	for (int i = 0; base_cols[i]; i++)
		if (!base[i]) {
			snprintf(err, errlen, "ledger: column %s missing (not a ledger of docs/economics.md section 8)",
				 base_cols[i]);
			return -EPROTO;
		}
	for (int i = 0; strict && i < N_OPT; i++)
		if (!opt[i]) {
			snprintf(err, errlen, "ledger: column %s missing (schema step %d adds it)", opt_cols[i].name,
				 opt_cols[i].step);
			return -EPROTO;
		}
	for (size_t i = 0; strict && i < N_STEP_OBJECTS; i++) {
		if ((r = has_object(db, step_objects[i].type, step_objects[i].name, err, errlen)) < 0)
			return r;
		if (r == 0) {
			snprintf(err, errlen, "ledger: %s %s missing (schema step %d adds it)", step_objects[i].type,
				 step_objects[i].name, step_objects[i].step);
			return -EPROTO;
		}
	}
	return 0;
}

static int exec(sqlite3 *db, const char *sql, const char *what, char *err, size_t errlen)
{
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK)
		return 0;
	snprintf(err, errlen, "ledger: %s: %s", what, msg ? msg : sqlite3_errmsg(db));
	sqlite3_free(msg);
	int ec = sqlite3_errcode(db);
	return ec == SQLITE_NOMEM ? -ENOMEM : ec == SQLITE_BUSY || ec == SQLITE_LOCKED ? -EBUSY :
	       ec == SQLITE_FULL ? -ENOSPC : -EIO;
}

/* The columns of `step` that the table lacks (margind versions before
 * numbered steps added them at startup, so any subset may be there). */
static int add_columns(sqlite3 *db, int step, char *err, size_t errlen)
{
	bool base[sizeof(base_cols) / sizeof(base_cols[0])] = { false }, opt[N_OPT] = { false };
	int n, r = table_columns(db, base, opt, &n, err, errlen);
	if (r < 0)
		return r;
	if (n == 0) {
		snprintf(err, errlen, "ledger: schema step %d: no table named ledger (step 1 makes it)", step);
		return -EPROTO;
	}
	for (int i = 0; i < N_OPT; i++) {
		if (opt_cols[i].step != step || opt[i])
			continue;
		char sql[160];
		snprintf(sql, sizeof(sql), "ALTER TABLE ledger ADD COLUMN %s", opt_cols[i].decl);
		if ((r = exec(db, sql, sql, err, errlen)) < 0)
			return r;
	}
	return 0;
}

int ledger_migrate_step(sqlite3 *db, int step, char *err, size_t errlen)
{
	int r;
	switch (step) {
	case 1:
		return exec(db, step1_sql, "schema step 1 (the ledger table)", err, errlen);
	case 2:
		if ((r = add_columns(db, 2, err, errlen)) < 0)
			return r;
		return exec(db, step2_sql, "schema step 2 (booked closed-API equivalents)", err, errlen);
	case 3:
		if ((r = add_columns(db, 3, err, errlen)) < 0)
			return r;
		return exec(db, step3_sql, "schema step 3 (accounting windows)", err, errlen);
	case 4:
		return add_columns(db, 4, err, errlen);
	default:
		snprintf(err, errlen, "ledger: no schema step %d (1 to %d)", step, LEDGER_STEPS);
		return -EINVAL;
	}
}

int ledger_create(sqlite3 *db, char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	int version = 0, r;
	if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
		return sql_fail(db, "user_version", err, errlen);
	if (sqlite3_step(st) == SQLITE_ROW)
		version = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	if (version > LEDGER_STEPS) {
		snprintf(err, errlen, "ledger: schema version %d is newer than this build's (%d)", version, LEDGER_STEPS);
		return -EPROTO;
	}
	if (version == LEDGER_STEPS)
		return 0;
	if ((r = exec(db, "SAVEPOINT ledger_create", "savepoint", err, errlen)) < 0)
		return r;
	for (int k = version + 1; k <= LEDGER_STEPS && r == 0; k++)
		r = ledger_migrate_step(db, k, err, errlen);
	if (r == 0) {
		char sql[64];
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", LEDGER_STEPS);
		r = exec(db, sql, sql, err, errlen);
	}
	if (r < 0) {
		sqlite3_exec(db, "ROLLBACK TO ledger_create; RELEASE ledger_create", NULL, NULL, NULL);
		return r;
	}
	return exec(db, "RELEASE ledger_create", "release", err, errlen);
}

static int check_u63(uint64_t v, const char *what, const ledger_row_t *row, char *err, size_t errlen)
{
	if (v <= INT64_MAX)
		return 0;
	snprintf(err, errlen, "ledger: job %s line %lld: %s exceeds 2^63", row->job, (long long)row->line_no, what);
	return -ERANGE;
}

/* Statements for the stored equivalents, prepared on the first row that
 * has any, and the ids of the pricings seen in this call. */
typedef struct api_ins {
	sqlite3_stmt *price_ins, *price_sel, *api_ins;
	const ledger_api_price_t **seen;	/* borrowed pointers ... */
	int64_t *ids;				/* ... and their rows' ids */
	size_t n_seen, cap;
} api_ins_t;

static void api_ins_done(api_ins_t *a)
{
	sqlite3_finalize(a->price_ins);
	sqlite3_finalize(a->price_sel);
	sqlite3_finalize(a->api_ins);
	free(a->seen);
	free(a->ids);
}

#define PRICE_COLS "ref_model, currency, price_currency, input_per_1m, output_per_1m, fx_rate, fx_source," \
	" price_table, price_source, price_date"

/* The id of p's ledger_api_price row, inserted when it is new. */
static int price_id(sqlite3 *db, api_ins_t *a, const ledger_api_price_t *p, int64_t *ret, char *err, size_t errlen)
{
	for (size_t i = 0; i < a->n_seen; i++)
		if (a->seen[i] == p) {
			*ret = a->ids[i];
			return 0;
		}
	if (a->price_ins == NULL &&
	    (sqlite3_prepare_v2(db, "INSERT OR IGNORE INTO ledger_api_price (" PRICE_COLS ") VALUES (?1, ?2, ?3, ?4,"
				" ?5, ?6, ?7, ?8, ?9, ?10)", -1, &a->price_ins, NULL) != SQLITE_OK ||
	     sqlite3_prepare_v2(db, "SELECT id FROM ledger_api_price WHERE ref_model = ?1 AND currency = ?2 AND"
				" price_currency = ?3 AND input_per_1m = ?4 AND output_per_1m = ?5 AND fx_rate = ?6"
				" AND fx_source = ?7 AND price_table = ?8 AND price_source = ?9 AND price_date = ?10",
				-1, &a->price_sel, NULL) != SQLITE_OK))
		return sql_fail(db, "prepare ledger_api_price", err, errlen);
	const char *v[10] = { p->ref_model, p->currency, p->price_currency, p->input_per_1m, p->output_per_1m,
			      p->fx_rate, p->fx_source, p->price_table, p->price_source, p->price_date };
	sqlite3_stmt *st[2] = { a->price_ins, a->price_sel };
	for (int k = 0; k < 2; k++) {
		sqlite3_reset(st[k]);
		for (int i = 0; i < 10; i++)
			sqlite3_bind_text(st[k], i + 1, v[i] ? v[i] : "", -1, SQLITE_STATIC);
	}
	if (sqlite3_step(a->price_ins) != SQLITE_DONE)
		return sql_fail(db, "insert ledger_api_price", err, errlen);
	if (sqlite3_step(a->price_sel) != SQLITE_ROW)
		return sql_fail(db, "select ledger_api_price", err, errlen);
	int64_t id = sqlite3_column_int64(a->price_sel, 0);
	sqlite3_reset(a->price_sel);
	if (a->n_seen == a->cap) {
		size_t nc = a->cap ? 2 * a->cap : 8;
		const ledger_api_price_t **ns = realloc(a->seen, nc * sizeof(*ns));
		if (ns != NULL)
			a->seen = ns;
		int64_t *ni = ns ? realloc(a->ids, nc * sizeof(*ni)) : NULL;
		if (ni == NULL) {
			snprintf(err, errlen, "ledger: out of memory");
			return -ENOMEM;
		}
		a->ids = ni;
		a->cap = nc;
	}
	a->seen[a->n_seen] = p;
	a->ids[a->n_seen++] = id;
	*ret = id;
	return 0;
}

/* The stored equivalents of the row just inserted as ledger_id. */
static int insert_api(sqlite3 *db, api_ins_t *a, const ledger_row_t *w, int64_t ledger_id, char *err, size_t errlen)
{
	int r;
	if (a->api_ins == NULL && sqlite3_prepare_v2(db, "INSERT INTO ledger_api (ledger_id, ref_model, micros, price_id)"
						     " VALUES (?1, ?2, ?3, ?4)", -1, &a->api_ins, NULL) != SQLITE_OK)
		return sql_fail(db, "prepare ledger_api", err, errlen);
	for (size_t k = 0; k < w->n_api; k++) {
		const ledger_api_t *e = &w->api[k];
		int64_t pid;
		if (e->price == NULL || e->price->ref_model == NULL) {
			snprintf(err, errlen, "ledger: job %s line %lld: an equivalent without its pricing", w->job,
				 (long long)w->line_no);
			return -EINVAL;
		}
		if ((r = price_id(db, a, e->price, &pid, err, errlen)) < 0)
			return r;
		sqlite3_reset(a->api_ins);
		sqlite3_bind_int64(a->api_ins, 1, ledger_id);
		sqlite3_bind_text(a->api_ins, 2, e->price->ref_model, -1, SQLITE_STATIC);
		sqlite3_bind_int64(a->api_ins, 3, e->micros);
		sqlite3_bind_int64(a->api_ins, 4, pid);
		if (sqlite3_step(a->api_ins) != SQLITE_DONE) {
			char what[200];
			snprintf(what, sizeof(what), "insert ledger_api job %.60s line %lld ref %.60s", w->job ? w->job : "?",
				 (long long)w->line_no, e->price->ref_model);
			return sql_fail(db, what, err, errlen);
		}
	}
	return 0;
}

int ledger_insert(sqlite3 *db, const ledger_row_t *rows, size_t n, char *err, size_t errlen)
{
	static const char *sql =
		"INSERT INTO ledger (job, custom_id, line_no, model, worker, worker_name, hardware_profile, shard, "
		"prompt_tokens, completion_tokens, busy_ns, flops, queue_ns, first_token_ns, cost_marginal_micros, "
		"cost_loaded_micros, answered_at_ns, idle_ns, currency, rate_busy_micros_per_hour, "
		"rate_idle_micros_per_hour, via_batch, period_start_ns, period_ns, period_open, endpoint) VALUES (?1, ?2,"
		" ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24,"
		" ?25, ?26)";
	sqlite3_stmt *st = NULL;
	api_ins_t api = { 0 };
	int r = 0;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return sql_fail(db, "prepare insert", err, errlen);
	for (size_t i = 0; i < n; i++) {
		const ledger_row_t *w = &rows[i];
		if ((r = check_u63(w->prompt_tokens, "prompt_tokens", w, err, errlen)) < 0 ||
		    (r = check_u63(w->completion_tokens, "completion_tokens", w, err, errlen)) < 0 ||
		    (r = check_u63(w->busy_ns, "busy_ns", w, err, errlen)) < 0 ||
		    (r = check_u63(w->flops, "flops", w, err, errlen)) < 0 ||
		    (r = check_u63(w->queue_ns, "queue_ns", w, err, errlen)) < 0 ||
		    (r = check_u63(w->first_token_ns, "first_token_ns", w, err, errlen)) < 0 ||
		    (r = check_u63(w->idle_ns, "idle_ns", w, err, errlen)) < 0)
			goto fail;
		sqlite3_reset(st);
		sqlite3_bind_text(st, 1, w->job, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, w->custom_id, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, w->line_no);
		sqlite3_bind_text(st, 4, w->model, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 5, w->worker, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 6, w->worker_name ? w->worker_name : "", -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 7, w->hardware_profile, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 8, w->shard);
		sqlite3_bind_int64(st, 9, (int64_t)w->prompt_tokens);
		sqlite3_bind_int64(st, 10, (int64_t)w->completion_tokens);
		sqlite3_bind_int64(st, 11, (int64_t)w->busy_ns);
		sqlite3_bind_int64(st, 12, (int64_t)w->flops);
		sqlite3_bind_int64(st, 13, (int64_t)w->queue_ns);
		sqlite3_bind_int64(st, 14, (int64_t)w->first_token_ns);
		sqlite3_bind_int64(st, 15, w->cost_marginal_micros);
		sqlite3_bind_int64(st, 16, w->cost_loaded_micros);
		sqlite3_bind_int64(st, 17, w->answered_at_ns);
		sqlite3_bind_int64(st, 18, (int64_t)w->idle_ns);
		sqlite3_bind_text(st, 19, w->currency ? w->currency : "", -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 20, w->rate_busy_micros_per_hour);
		sqlite3_bind_int64(st, 21, w->rate_idle_micros_per_hour);
		sqlite3_bind_int(st, 22, w->via_batch ? 1 : 0);
		sqlite3_bind_int64(st, 23, w->period_start_ns);
		sqlite3_bind_int64(st, 24, w->period_ns);
		sqlite3_bind_int(st, 25, w->period_open ? 1 : 0);
		sqlite3_bind_text(st, 26, w->endpoint ? w->endpoint : "", -1, SQLITE_STATIC);
		if (sqlite3_step(st) != SQLITE_DONE) {
			char what[160];
			snprintf(what, sizeof(what), "insert job %.60s line %lld", w->job ? w->job : "?",
				 (long long)w->line_no);
			r = sql_fail(db, what, err, errlen);
			goto fail;
		}
		if (w->n_api > 0 && (r = insert_api(db, &api, w, sqlite3_last_insert_rowid(db), err, errlen)) < 0)
			goto fail;
	}
	r = 0;
fail:
	sqlite3_finalize(st);
	api_ins_done(&api);
	return r;
}

void ledger_rows_destroy(ledger_rows_t **p)
{
	if (p == NULL || *p == NULL)
		return;
	for (size_t i = 0; i < (*p)->n; i++)
		free((void *)(*p)->v[i].job);	/* one block holds the row's strings */
	for (size_t i = 0; i < (*p)->n_prices; i++)
		free((void *)(*p)->prices[i].ref_model);	/* likewise a pricing's */
	free((*p)->v);
	free((*p)->api);
	free((*p)->prices);
	free(*p);
	*p = NULL;
}

const ledger_api_t *ledger_row_find_api(const ledger_row_t *row, const char *ref)
{
	for (size_t k = 0; k < row->n_api; k++)
		if (strcmp(row->api[k].price->ref_model, ref) == 0)
			return &row->api[k];
	return NULL;
}

/* Select list; the column numbers below follow it. */
enum {
	C_ID, C_JOB, C_CUSTOM_ID, C_LINE, C_MODEL, C_WORKER, C_WORKER_NAME, C_HW, C_SHARD, C_PROMPT, C_COMPL,
	C_BUSY, C_FLOPS, C_QUEUE, C_FIRST, C_MARG, C_LOADED, C_AT, C_IDLE, C_CURRENCY, C_RATE_BUSY, C_RATE_IDLE,
	C_VIA_BATCH, C_PERIOD_START, C_PERIOD_NS, C_PERIOD_OPEN, C_ENDPOINT,
};

/* Copies the row's strings into one block; job points at its start. */
static int copy_strings(sqlite3_stmt *st, ledger_row_t *row, const char *currency)
{
	static const int cols[8] = { C_JOB, C_CUSTOM_ID, C_MODEL, C_WORKER, C_WORKER_NAME, C_HW, C_CURRENCY,
				     C_ENDPOINT };
	const char *src[8];
	size_t len[8], total = 0;
	for (int i = 0; i < 8; i++) {
		src[i] = (const char *)sqlite3_column_text(st, cols[i]);
		if (src[i] == NULL)
			src[i] = "";
		if (cols[i] == C_CURRENCY && src[i][0] == '\0')
			src[i] = currency;
		len[i] = strlen(src[i]);
		total += len[i] + 1;
	}
	char *blk = malloc(total), *p = blk;
	if (blk == NULL)
		return -ENOMEM;
	const char **dst[8] = { &row->job, &row->custom_id, &row->model, &row->worker, &row->worker_name,
				&row->hardware_profile, &row->currency, &row->endpoint };
	for (int i = 0; i < 8; i++) {
		memcpy(p, src[i], len[i] + 1);
		*dst[i] = p;
		p += len[i] + 1;
	}
	return 0;
}

static uint64_t col_u64(sqlite3_stmt *st, int c)
{
	int64_t v = sqlite3_column_int64(st, c);
	return v < 0 ? 0 : (uint64_t)v;
}

/* " AND ..." of filter f over the ledger aliased l, parameters ?1..?5. */
static int filter_sql(const ledger_filter_t *f, char *buf, size_t len)
{
	int o = 0;
	buf[0] = '\0';
	if (f->job)
		o += snprintf(buf + o, len - (size_t)o, " AND l.job = ?1");
	if (f->model)
		o += snprintf(buf + o, len - (size_t)o, " AND l.model = ?2");
	if (f->worker_name)
		o += snprintf(buf + o, len - (size_t)o, " AND l.worker_name = ?3");
	if (f->from_ns)
		o += snprintf(buf + o, len - (size_t)o, " AND l.answered_at_ns >= ?4");
	if (f->to_ns)
		o += snprintf(buf + o, len - (size_t)o, " AND l.answered_at_ns < ?5");
	return o;
}

static void filter_bind(sqlite3_stmt *st, const ledger_filter_t *f)
{
	if (f->job)
		sqlite3_bind_text(st, 1, f->job, -1, SQLITE_STATIC);
	if (f->model)
		sqlite3_bind_text(st, 2, f->model, -1, SQLITE_STATIC);
	if (f->worker_name)
		sqlite3_bind_text(st, 3, f->worker_name, -1, SQLITE_STATIC);
	if (f->from_ns)
		sqlite3_bind_int64(st, 4, f->from_ns);
	if (f->to_ns)
		sqlite3_bind_int64(st, 5, f->to_ns);
}

static int cmp_price_id(const void *key, const void *elem)
{
	int64_t a = *(const int64_t *)key, b = ((const ledger_api_price_t *)elem)->id;
	return a < b ? -1 : a > b;
}

/* Every pricing (a journal holds few: one per reference model, table,
 * tier and currency), in id order. */
static int select_prices(sqlite3 *db, ledger_rows_t *rows, char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	size_t cap = 0;
	int r;
	if (sqlite3_prepare_v2(db, "SELECT id, " PRICE_COLS " FROM ledger_api_price ORDER BY id", -1, &st, NULL) !=
	    SQLITE_OK)
		return sql_fail(db, "prepare select ledger_api_price", err, errlen);
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		if (rows->n_prices == cap) {
			size_t nc = cap ? 2 * cap : 16;
			ledger_api_price_t *np = realloc(rows->prices, nc * sizeof(*np));
			if (np == NULL)
				goto nomem;
			rows->prices = np;
			cap = nc;
		}
		const char *src[10];
		size_t len[10], total = 0;
		for (int i = 0; i < 10; i++) {
			src[i] = (const char *)sqlite3_column_text(st, 1 + i);
			if (src[i] == NULL)
				src[i] = "";
			len[i] = strlen(src[i]);
			total += len[i] + 1;
		}
		char *blk = malloc(total), *q = blk;
		if (blk == NULL)
			goto nomem;
		ledger_api_price_t *p = &rows->prices[rows->n_prices++];
		const char **dst[10] = { &p->ref_model, &p->currency, &p->price_currency, &p->input_per_1m,
					 &p->output_per_1m, &p->fx_rate, &p->fx_source, &p->price_table,
					 &p->price_source, &p->price_date };
		for (int i = 0; i < 10; i++) {
			memcpy(q, src[i], len[i] + 1);
			*dst[i] = q;
			q += len[i] + 1;
		}
		p->id = sqlite3_column_int64(st, 0);
	}
	sqlite3_finalize(st);
	return r == SQLITE_DONE ? 0 : sql_fail(db, "select ledger_api_price", err, errlen);
nomem:
	sqlite3_finalize(st);
	snprintf(err, errlen, "ledger: out of memory");
	return -ENOMEM;
}

/* The stored equivalents of the selected rows (rows->v in id order), in
 * booking order within a row. */
static int select_api(sqlite3 *db, const ledger_filter_t *f, ledger_rows_t *rows, char *err, size_t errlen)
{
	char sql[1024], where[256];
	sqlite3_stmt *st = NULL;
	size_t cap = 0;
	int r;
	if ((r = has_object(db, "table", "ledger_api", err, errlen)) <= 0 ||
	    (r = has_object(db, "table", "ledger_api_price", err, errlen)) <= 0)
		return r;	/* an older journal: no equivalents stored */
	if ((r = select_prices(db, rows, err, errlen)) < 0)
		return r;
	filter_sql(f, where, sizeof(where));
	snprintf(sql, sizeof(sql), "SELECT a.ledger_id, a.micros, a.price_id FROM ledger l JOIN ledger_api a"
		 " ON a.ledger_id = l.id WHERE 1%s ORDER BY a.ledger_id, a.price_id", where);
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return sql_fail(db, "prepare select ledger_api", err, errlen);
	filter_bind(st, f);
	int64_t *owner = NULL;	/* ledger_id of each entry */
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t pid = sqlite3_column_int64(st, 2);
		const ledger_api_price_t *p = rows->n_prices == 0 ? NULL :
			bsearch(&pid, rows->prices, rows->n_prices, sizeof(*rows->prices), cmp_price_id);
		if (p == NULL) {
			snprintf(err, errlen, "ledger: ledger_api of ledger row %lld names pricing %lld, which "
				 "ledger_api_price does not have", (long long)sqlite3_column_int64(st, 0),
				 (long long)pid);
			r = -EBADMSG;
			goto fail;
		}
		if (rows->n_api == cap) {
			size_t nc = cap ? 2 * cap : 64;
			ledger_api_t *na = realloc(rows->api, nc * sizeof(*na));
			if (na != NULL)
				rows->api = na;
			int64_t *no = na ? realloc(owner, nc * sizeof(*no)) : NULL;
			if (no == NULL) {
				snprintf(err, errlen, "ledger: out of memory");
				r = -ENOMEM;
				goto fail;
			}
			owner = no;
			cap = nc;
		}
		owner[rows->n_api] = sqlite3_column_int64(st, 0);
		rows->api[rows->n_api++] = (ledger_api_t){ .price = p, .micros = sqlite3_column_int64(st, 1) };
	}
	if (r != SQLITE_DONE) {
		r = sql_fail(db, "select ledger_api", err, errlen);
		goto fail;
	}
	/* Both in id order: one merge hands each row its entries (the array
	 * no longer moves). */
	for (size_t i = 0, k = 0; i < rows->n; i++) {
		ledger_row_t *w = &rows->v[i];
		while (k < rows->n_api && owner[k] < w->id)
			k++;
		size_t k0 = k;
		while (k < rows->n_api && owner[k] == w->id)
			k++;
		w->api = k > k0 ? &rows->api[k0] : NULL;
		w->n_api = k - k0;
	}
	r = 0;
fail:
	free(owner);
	sqlite3_finalize(st);
	return r;
}

static int select_rows(sqlite3 *db, const ledger_filter_t *f, ledger_rows_t **ret, char *err, size_t errlen)
{
	ledger_filter_t none = { 0 };
	bool base[sizeof(base_cols) / sizeof(base_cols[0])] = { false }, opt[N_OPT] = { false };
	int n_cols, r;
	if (f == NULL)
		f = &none;
	if ((r = ledger_check_schema(db, false, err, errlen)) < 0 ||
	    (r = table_columns(db, base, opt, &n_cols, err, errlen)) < 0)
		return r;
	char sql[2048], where[256];
	int o = snprintf(sql, sizeof(sql),
			 "SELECT id, job, custom_id, line_no, model, worker, worker_name, hardware_profile, shard, "
			 "prompt_tokens, completion_tokens, busy_ns, flops, queue_ns, first_token_ns, "
			 "cost_marginal_micros, cost_loaded_micros, answered_at_ns");
	for (int i = 0; i < N_OPT; i++)
		o += snprintf(sql + o, sizeof(sql) - (size_t)o, ", %s", opt[i] ? opt_cols[i].name : opt_cols[i].absent);
	filter_sql(f, where, sizeof(where));
	snprintf(sql + o, sizeof(sql) - (size_t)o, " FROM ledger l WHERE 1%s ORDER BY id", where);

	sqlite3_stmt *st = NULL;
	ledger_rows_t *rows = calloc(1, sizeof(*rows));
	size_t cap = 0;
	if (rows == NULL)
		return -ENOMEM;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		r = sql_fail(db, "prepare select", err, errlen);
		goto fail;
	}
	filter_bind(st, f);
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		const char *cur = (const char *)sqlite3_column_text(st, C_CURRENCY);
		if ((cur == NULL || *cur == '\0') && f->default_currency == NULL) {
			snprintf(err, errlen, "ledger: job %s line %lld has no currency: give the profile's currency "
				 "(ledger_filter_t.default_currency)", (const char *)sqlite3_column_text(st, C_JOB),
				 (long long)sqlite3_column_int64(st, C_LINE));
			r = -EINVAL;
			goto fail;
		}
		if (rows->n == cap) {
			size_t nc = cap ? cap * 2 : 64;
			ledger_row_t *nv = realloc(rows->v, nc * sizeof(*nv));
			if (nv == NULL) {
				r = -ENOMEM;
				goto fail;
			}
			rows->v = nv;
			cap = nc;
		}
		ledger_row_t *w = &rows->v[rows->n];
		memset(w, 0, sizeof(*w));
		if (copy_strings(st, w, f->default_currency) < 0) {
			r = -ENOMEM;
			goto fail;
		}
		rows->n++;
		w->id = sqlite3_column_int64(st, C_ID);
		w->line_no = sqlite3_column_int64(st, C_LINE);
		w->shard = sqlite3_column_int64(st, C_SHARD);
		w->prompt_tokens = col_u64(st, C_PROMPT);
		w->completion_tokens = col_u64(st, C_COMPL);
		w->busy_ns = col_u64(st, C_BUSY);
		w->flops = col_u64(st, C_FLOPS);
		w->queue_ns = col_u64(st, C_QUEUE);
		w->first_token_ns = col_u64(st, C_FIRST);
		w->cost_marginal_micros = sqlite3_column_int64(st, C_MARG);
		w->cost_loaded_micros = sqlite3_column_int64(st, C_LOADED);
		w->answered_at_ns = sqlite3_column_int64(st, C_AT);
		w->idle_ns = col_u64(st, C_IDLE);
		w->rate_busy_micros_per_hour = sqlite3_column_int64(st, C_RATE_BUSY);
		w->rate_idle_micros_per_hour = sqlite3_column_int64(st, C_RATE_IDLE);
		w->via_batch = sqlite3_column_int(st, C_VIA_BATCH) != 0;
		w->period_start_ns = sqlite3_column_int64(st, C_PERIOD_START);
		w->period_ns = sqlite3_column_int64(st, C_PERIOD_NS);
		w->period_open = sqlite3_column_int(st, C_PERIOD_OPEN) != 0;
	}
	if (r != SQLITE_DONE) {
		r = sql_fail(db, "select", err, errlen);
		goto fail;
	}
	sqlite3_finalize(st);
	st = NULL;
	if ((r = select_api(db, f, rows, err, errlen)) < 0)
		goto fail;
	*ret = rows;
	return 0;
fail:
	sqlite3_finalize(st);
	ledger_rows_destroy(&rows);
	return r;
}

/* The rows, their equivalents and their prices are read by several
 * SELECTs: in one read transaction (unless the caller has one open), so
 * they are one snapshot even while margind books calls on another
 * connection (WAL): a call committed between two of them would otherwise
 * show an equivalent whose pricing the first did not see. */
int ledger_select(sqlite3 *db, const ledger_filter_t *f, ledger_rows_t **ret, char *err, size_t errlen)
{
	bool own = sqlite3_get_autocommit(db) != 0;
	if (own && sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
		return sql_fail(db, "begin the read", err, errlen);
	int r = select_rows(db, f, ret, err, errlen);
	if (own)
		sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);	/* a read: nothing to lose */
	return r;
}

/* --- accounting windows ------------------------------------------------ */

int64_t ledger_window_start(int64_t t, int64_t period_ns)
{
	int64_t q = t / period_ns;
	if (t % period_ns < 0)
		q--;	/* floor, for times before 1970 */
	return q * period_ns;
}

#define PERIOD_COLS "period_start_ns, period_ns, worker, worker_name, hardware_profile, currency," \
	" rate_busy_micros_per_hour, rate_idle_micros_per_hour, engine_ns, busy_ns, calls, marginal_micros," \
	" attended_ns, idle_ns, node_cost_micros, closed"

static void read_period(sqlite3_stmt *st, ledger_period_t *p)
{
	memset(p, 0, sizeof(*p));
	p->start_ns = sqlite3_column_int64(st, 0);
	p->period_ns = sqlite3_column_int64(st, 1);
	const char *t;
	snprintf(p->worker, sizeof(p->worker), "%s", (t = (const char *)sqlite3_column_text(st, 2)) ? t : "");
	snprintf(p->worker_name, sizeof(p->worker_name), "%s", (t = (const char *)sqlite3_column_text(st, 3)) ? t : "");
	snprintf(p->hardware_profile, sizeof(p->hardware_profile), "%s",
		 (t = (const char *)sqlite3_column_text(st, 4)) ? t : "");
	snprintf(p->currency, sizeof(p->currency), "%s", (t = (const char *)sqlite3_column_text(st, 5)) ? t : "");
	p->rate_busy_micros_per_hour = sqlite3_column_int64(st, 6);
	p->rate_idle_micros_per_hour = sqlite3_column_int64(st, 7);
	p->engine_ns = col_u64(st, 8);
	p->busy_ns = col_u64(st, 9);
	p->calls = sqlite3_column_int64(st, 10);
	p->marginal_micros = sqlite3_column_int64(st, 11);
	p->attended_ns = col_u64(st, 12);
	p->idle_ns = col_u64(st, 13);
	p->node_cost_micros = sqlite3_column_int64(st, 14);
	p->closed = sqlite3_column_int(st, 15) != 0;
}

/* One row of sql (binding the text a and, when it has them, the integers
 * x, y) into *ret: 0, or -ENOENT. */
static int period_one(sqlite3 *db, const char *sql, const char *a, int64_t x, int64_t y, ledger_period_t *ret,
		      char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return sql_fail(db, "prepare ledger_period", err, errlen);
	sqlite3_bind_text(st, 1, a, -1, SQLITE_STATIC);
	if (sqlite3_bind_parameter_count(st) >= 3) {
		sqlite3_bind_int64(st, 2, x);
		sqlite3_bind_int64(st, 3, y);
	}
	int rc = sqlite3_step(st), r = 0;
	if (rc == SQLITE_ROW)
		read_period(st, ret);
	else if (rc == SQLITE_DONE)
		r = -ENOENT;
	else
		r = sql_fail(db, "select ledger_period", err, errlen);
	sqlite3_finalize(st);
	return r;
}

int ledger_period_find(sqlite3 *db, int64_t start_ns, int64_t period_ns, const char *worker,
		       ledger_period_t *ret, char *err, size_t errlen)
{
	return period_one(db, "SELECT " PERIOD_COLS " FROM ledger_period WHERE worker = ?1 AND period_start_ns = ?2"
			  " AND period_ns = ?3", worker, start_ns, period_ns, ret, err, errlen);
}

int ledger_period_last_closed(sqlite3 *db, const char *worker, ledger_period_t *ret, char *err, size_t errlen)
{
	return period_one(db, "SELECT " PERIOD_COLS " FROM ledger_period WHERE worker = ?1 AND closed = 1"
			  " ORDER BY period_start_ns DESC LIMIT 1", worker, 0, 0, ret, err, errlen);
}

static int check_period(const ledger_period_t *p, char *err, size_t errlen)
{
	if (p->period_ns <= 0 || p->engine_ns > INT64_MAX || p->busy_ns > INT64_MAX || p->calls < 0 ||
	    p->marginal_micros < 0 || p->attended_ns > INT64_MAX) {
		snprintf(err, errlen, "ledger: window %lld+%lld of worker %s: a length of 0 or a sum out of range",
			 (long long)p->start_ns, (long long)p->period_ns, p->worker);
		return -ERANGE;
	}
	return 0;
}

int ledger_period_add(sqlite3 *db, const ledger_period_t *p, char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	int r;
	if ((r = check_period(p, err, errlen)) < 0)
		return r;
	if (sqlite3_prepare_v2(db, "INSERT INTO ledger_period (period_start_ns, period_ns, worker, worker_name,"
			       " hardware_profile, currency, rate_busy_micros_per_hour, rate_idle_micros_per_hour,"
			       " engine_ns, busy_ns, calls, marginal_micros) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9,"
			       " ?10, ?11, ?12) ON CONFLICT (period_start_ns, period_ns, worker) DO UPDATE SET"
			       " engine_ns = engine_ns + excluded.engine_ns, busy_ns = busy_ns + excluded.busy_ns,"
			       " calls = calls + excluded.calls, marginal_micros = marginal_micros + excluded.marginal_micros"
			       " WHERE closed = 0", -1, &st, NULL) != SQLITE_OK)
		return sql_fail(db, "prepare ledger_period insert", err, errlen);
	sqlite3_bind_int64(st, 1, p->start_ns);
	sqlite3_bind_int64(st, 2, p->period_ns);
	sqlite3_bind_text(st, 3, p->worker, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, p->worker_name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, p->hardware_profile, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, p->currency, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 7, p->rate_busy_micros_per_hour);
	sqlite3_bind_int64(st, 8, p->rate_idle_micros_per_hour);
	sqlite3_bind_int64(st, 9, (int64_t)p->engine_ns);
	sqlite3_bind_int64(st, 10, (int64_t)p->busy_ns);
	sqlite3_bind_int64(st, 11, p->calls);
	sqlite3_bind_int64(st, 12, p->marginal_micros);
	if (sqlite3_step(st) != SQLITE_DONE)
		r = sql_fail(db, "insert ledger_period", err, errlen);
	else if (sqlite3_changes(db) == 0) {
		snprintf(err, errlen, "ledger: window %lld+%lld of worker %s has closed", (long long)p->start_ns,
			 (long long)p->period_ns, p->worker);
		r = -EALREADY;
	}
	sqlite3_finalize(st);
	return r;
}

/* The open calls of a window, read before any is updated. */
typedef struct window_calls {
	int64_t *id, *marg, *old;
	uint64_t *busy;
	char **job;		/* owned */
	size_t n, cap;
} window_calls_t;

static void window_calls_done(window_calls_t *w)
{
	for (size_t i = 0; i < w->n; i++)
		free(w->job[i]);
	free(w->id);
	free(w->marg);
	free(w->old);
	free(w->busy);
	free(w->job);
}

static int window_calls_read(sqlite3 *db, const ledger_period_t *p, window_calls_t *w, char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	int rc;
	if (sqlite3_prepare_v2(db, "SELECT id, job, busy_ns, cost_marginal_micros, cost_loaded_micros FROM ledger"
			       " WHERE worker = ?1 AND period_start_ns = ?2 AND period_ns = ?3 AND period_open = 1"
			       " ORDER BY id", -1, &st, NULL) != SQLITE_OK)
		return sql_fail(db, "prepare the window's calls", err, errlen);
	sqlite3_bind_text(st, 1, p->worker, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, p->start_ns);
	sqlite3_bind_int64(st, 3, p->period_ns);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (w->n == w->cap) {
			size_t nc = w->cap ? 2 * w->cap : 64;
			int64_t *a = realloc(w->id, nc * sizeof(*a));
			if (a != NULL)
				w->id = a;
			int64_t *b = a ? realloc(w->marg, nc * sizeof(*b)) : NULL;
			if (b != NULL)
				w->marg = b;
			int64_t *c = b ? realloc(w->old, nc * sizeof(*c)) : NULL;
			if (c != NULL)
				w->old = c;
			uint64_t *d = c ? realloc(w->busy, nc * sizeof(*d)) : NULL;
			if (d != NULL)
				w->busy = d;
			char **e = d ? realloc(w->job, nc * sizeof(*e)) : NULL;
			if (e == NULL)
				goto nomem;
			w->job = e;
			w->cap = nc;
		}
		const char *job = (const char *)sqlite3_column_text(st, 1);
		if ((w->job[w->n] = strdup(job ? job : "")) == NULL)
			goto nomem;
		w->id[w->n] = sqlite3_column_int64(st, 0);
		w->busy[w->n] = col_u64(st, 2);
		w->marg[w->n] = sqlite3_column_int64(st, 3);
		w->old[w->n] = sqlite3_column_int64(st, 4);
		w->n++;
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : sql_fail(db, "select the window's calls", err, errlen);
nomem:
	sqlite3_finalize(st);
	snprintf(err, errlen, "ledger: out of memory for the calls of a window");
	return -ENOMEM;
}

/* Per job, how much its calls' loaded cost rose, to on_job. */
static int job_deltas(const window_calls_t *w, const int64_t *loaded, ledger_job_delta_fn on_job, void *user)
{
	if (on_job == NULL)
		return 0;
	bool *done = calloc(w->n ? w->n : 1, sizeof(*done));
	if (done == NULL)
		return -ENOMEM;
	int r = 0;
	for (size_t i = 0; i < w->n && r >= 0; i++) {
		if (done[i])
			continue;
		int64_t d = 0;
		for (size_t k = i; k < w->n; k++)
			if (!done[k] && strcmp(w->job[k], w->job[i]) == 0) {
				d += loaded[k] - w->old[k];
				done[k] = true;
			}
		if (d != 0)
			r = on_job(user, w->job[i], d);
	}
	free(done);
	return r < 0 ? r : 0;
}

int ledger_period_close(sqlite3 *db, const ledger_period_t *p, uint64_t attended_ns, ledger_job_delta_fn on_job,
			void *user, char *err, size_t errlen)
{
	ledger_period_t cur;
	window_calls_t w = { 0 };
	int64_t *loaded = NULL, node;
	uint64_t *idle = NULL, idle_ns;
	sqlite3_stmt *st = NULL;
	int r = ledger_period_find(db, p->start_ns, p->period_ns, p->worker, &cur, err, errlen);
	if (r == -ENOENT) {
		/* Attended, no Result in it: the row says what its idle cost. */
		ledger_period_t z = *p;
		z.engine_ns = z.busy_ns = 0;
		z.calls = z.marginal_micros = 0;
		if ((r = ledger_period_add(db, &z, err, errlen)) < 0)
			return r;
		r = ledger_period_find(db, p->start_ns, p->period_ns, p->worker, &cur, err, errlen);
	}
	if (r < 0)
		return r;
	if (cur.closed) {
		snprintf(err, errlen, "ledger: window %lld+%lld of worker %s has closed", (long long)p->start_ns,
			 (long long)p->period_ns, p->worker);
		return -EALREADY;
	}
	if (attended_ns > INT64_MAX) {
		snprintf(err, errlen, "ledger: window of worker %s: attended time out of range", p->worker);
		return -ERANGE;
	}
	if ((r = window_calls_read(db, &cur, &w, err, errlen)) < 0)
		goto done;
	r = -ENOMEM;
	if (w.n > 0 && ((loaded = malloc(w.n * sizeof(*loaded))) == NULL || (idle = malloc(w.n * sizeof(*idle))) == NULL)) {
		snprintf(err, errlen, "ledger: out of memory for the calls of a window");
		goto done;
	}
	if ((r = cost_close_window(cur.rate_busy_micros_per_hour, cur.rate_idle_micros_per_hour, cur.engine_ns,
				   attended_ns, w.busy, w.marg, w.n, loaded, idle, &node, &idle_ns)) < 0) {
		snprintf(err, errlen, "ledger: window %lld+%lld of worker %s: cannot spread its cost: %s",
			 (long long)cur.start_ns, (long long)cur.period_ns, cur.worker, strerror(-r));
		goto done;
	}
	if (sqlite3_prepare_v2(db, "UPDATE ledger SET cost_loaded_micros = ?2, idle_ns = ?3, period_open = 0"
			       " WHERE id = ?1", -1, &st, NULL) != SQLITE_OK) {
		r = sql_fail(db, "prepare the window's calls update", err, errlen);
		goto done;
	}
	for (size_t i = 0; i < w.n; i++) {
		sqlite3_reset(st);
		sqlite3_bind_int64(st, 1, w.id[i]);
		sqlite3_bind_int64(st, 2, loaded[i]);
		sqlite3_bind_int64(st, 3, (int64_t)idle[i]);
		if (sqlite3_step(st) != SQLITE_DONE) {
			r = sql_fail(db, "update a call of the window", err, errlen);
			goto done;
		}
	}
	sqlite3_finalize(st);
	st = NULL;
	if (sqlite3_prepare_v2(db, "UPDATE ledger_period SET attended_ns = ?4, idle_ns = ?5, node_cost_micros = ?6,"
			       " closed = 1 WHERE worker = ?1 AND period_start_ns = ?2 AND period_ns = ?3", -1, &st,
			       NULL) != SQLITE_OK) {
		r = sql_fail(db, "prepare ledger_period close", err, errlen);
		goto done;
	}
	sqlite3_bind_text(st, 1, cur.worker, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, cur.start_ns);
	sqlite3_bind_int64(st, 3, cur.period_ns);
	sqlite3_bind_int64(st, 4, (int64_t)attended_ns);
	sqlite3_bind_int64(st, 5, (int64_t)idle_ns);
	sqlite3_bind_int64(st, 6, node);
	if (sqlite3_step(st) != SQLITE_DONE) {
		r = sql_fail(db, "close ledger_period", err, errlen);
		goto done;
	}
	if ((r = job_deltas(&w, loaded, on_job, user)) < 0)
		snprintf(err, errlen, "ledger: window of worker %s: the jobs' totals: %s", cur.worker, strerror(-r));
done:
	sqlite3_finalize(st);
	window_calls_done(&w);
	free(loaded);
	free(idle);
	return r;
}

int ledger_period_each_ended(sqlite3 *db, int64_t now_ns, int (*fn)(void *user, const ledger_period_t *p),
			     void *user, char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	ledger_period_t *v = NULL;
	size_t n = 0, cap = 0;
	int rc, r = 0;
	if (sqlite3_prepare_v2(db, "SELECT " PERIOD_COLS " FROM ledger_period WHERE closed = 0 AND"
			       " period_start_ns + period_ns <= ?1 ORDER BY period_start_ns, worker", -1, &st, NULL) !=
	    SQLITE_OK)
		return sql_fail(db, "prepare the ended windows", err, errlen);
	sqlite3_bind_int64(st, 1, now_ns);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == cap) {
			size_t nc = cap ? 2 * cap : 16;
			ledger_period_t *nv = realloc(v, nc * sizeof(*nv));
			if (nv == NULL) {
				snprintf(err, errlen, "ledger: out of memory for the ended windows");
				r = -ENOMEM;
				goto done;
			}
			v = nv;
			cap = nc;
		}
		read_period(st, &v[n++]);
	}
	if (rc != SQLITE_DONE) {
		r = sql_fail(db, "select the ended windows", err, errlen);
		goto done;
	}
	sqlite3_finalize(st);
	st = NULL;
	for (size_t i = 0; i < n && r >= 0; i++)
		r = fn(user, &v[i]);
done:
	sqlite3_finalize(st);
	free(v);
	return r < 0 ? r : (int)n;
}
