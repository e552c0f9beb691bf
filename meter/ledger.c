/* ledger: see ledger.h. */
#include "ledger.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The daemon's columns, then the meter's optional five with the SQL that
 * adds each and the expression that stands in for it when absent. */
static const char *const base_cols[] = {
	"id", "job", "custom_id", "line_no", "model", "worker", "worker_name", "hardware_profile", "shard",
	"prompt_tokens", "completion_tokens", "busy_ns", "flops", "queue_ns", "first_token_ns",
	"cost_marginal_micros", "cost_loaded_micros", "answered_at_ns", NULL,
};

enum { OPT_IDLE, OPT_CURRENCY, OPT_RATE_BUSY, OPT_RATE_IDLE, OPT_VIA_BATCH, N_OPT };

static const struct {
	const char *name;
	const char *decl;	/* ALTER TABLE ledger ADD COLUMN <decl> */
	const char *absent;	/* select expression when the column is absent */
} opt_cols[N_OPT] = {
	[OPT_IDLE] = { "idle_ns", "idle_ns INTEGER NOT NULL DEFAULT 0", "0" },
	[OPT_CURRENCY] = { "currency", "currency TEXT NOT NULL DEFAULT ''", "''" },
	[OPT_RATE_BUSY] = { "rate_busy_micros_per_hour", "rate_busy_micros_per_hour INTEGER NOT NULL DEFAULT 0", "0" },
	[OPT_RATE_IDLE] = { "rate_idle_micros_per_hour", "rate_idle_micros_per_hour INTEGER NOT NULL DEFAULT 0", "0" },
	[OPT_VIA_BATCH] = { "via_batch", "via_batch INTEGER NOT NULL DEFAULT 1", "1" },
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

int ledger_create(sqlite3 *db, char *err, size_t errlen)
{
	if (sqlite3_exec(db, LEDGER_SCHEMA_SQL, NULL, NULL, NULL) != SQLITE_OK)
		return sql_fail(db, "create table", err, errlen);
	return 0;
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

int ledger_check_schema(sqlite3 *db, bool strict, char *err, size_t errlen)
{
	bool base[sizeof(base_cols) / sizeof(base_cols[0])] = { false }, opt[N_OPT] = { false };
	int n, r = table_columns(db, base, opt, &n, err, errlen);
	if (r < 0)
		return r;
	if (n == 0) {
		snprintf(err, errlen, "ledger: no table named ledger (see LEDGER_SCHEMA_SQL in meter/ledger.h)");
		return -EPROTO;
	}
	for (int i = 0; base_cols[i]; i++)
		if (!base[i]) {
			snprintf(err, errlen, "ledger: column %s missing (see LEDGER_SCHEMA_SQL in meter/ledger.h)",
				 base_cols[i]);
			return -EPROTO;
		}
	for (int i = 0; strict && i < N_OPT; i++)
		if (!opt[i]) {
			snprintf(err, errlen, "ledger: column %s missing (ledger_upgrade() adds it)", opt_cols[i].name);
			return -EPROTO;
		}
	return 0;
}

int ledger_upgrade(sqlite3 *db, char *err, size_t errlen)
{
	bool base[sizeof(base_cols) / sizeof(base_cols[0])] = { false }, opt[N_OPT] = { false };
	int n, added = 0, r = table_columns(db, base, opt, &n, err, errlen);
	if (r < 0)
		return r;
	if (n == 0) {
		snprintf(err, errlen, "ledger: no table named ledger to upgrade");
		return -EPROTO;
	}
	for (int i = 0; i < N_OPT; i++) {
		if (opt[i])
			continue;
		char sql[160];
		snprintf(sql, sizeof(sql), "ALTER TABLE ledger ADD COLUMN %s", opt_cols[i].decl);
		if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
			return sql_fail(db, sql, err, errlen);
		added++;
	}
	return added;
}

static int check_u63(uint64_t v, const char *what, const ledger_row_t *row, char *err, size_t errlen)
{
	if (v <= INT64_MAX)
		return 0;
	snprintf(err, errlen, "ledger: job %s line %lld: %s exceeds 2^63", row->job, (long long)row->line_no, what);
	return -ERANGE;
}

int ledger_insert(sqlite3 *db, const ledger_row_t *rows, size_t n, char *err, size_t errlen)
{
	static const char *sql =
		"INSERT INTO ledger (job, custom_id, line_no, model, worker, worker_name, hardware_profile, shard, "
		"prompt_tokens, completion_tokens, busy_ns, flops, queue_ns, first_token_ns, cost_marginal_micros, "
		"cost_loaded_micros, answered_at_ns, idle_ns, currency, rate_busy_micros_per_hour, "
		"rate_idle_micros_per_hour, via_batch) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, "
		"?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)";
	sqlite3_stmt *st = NULL;
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
		if (sqlite3_step(st) != SQLITE_DONE) {
			char what[160];
			snprintf(what, sizeof(what), "insert job %.60s line %lld", w->job ? w->job : "?",
				 (long long)w->line_no);
			r = sql_fail(db, what, err, errlen);
			goto fail;
		}
	}
	r = 0;
fail:
	sqlite3_finalize(st);
	return r;
}

void ledger_rows_destroy(ledger_rows_t **p)
{
	if (p == NULL || *p == NULL)
		return;
	for (size_t i = 0; i < (*p)->n; i++)
		free((void *)(*p)->v[i].job);	/* one block holds the row's strings */
	free((*p)->v);
	free(*p);
	*p = NULL;
}

/* Select list; the column numbers below follow it. */
enum {
	C_ID, C_JOB, C_CUSTOM_ID, C_LINE, C_MODEL, C_WORKER, C_WORKER_NAME, C_HW, C_SHARD, C_PROMPT, C_COMPL,
	C_BUSY, C_FLOPS, C_QUEUE, C_FIRST, C_MARG, C_LOADED, C_AT, C_IDLE, C_CURRENCY, C_RATE_BUSY, C_RATE_IDLE,
	C_VIA_BATCH,
};

/* Copies the row's strings into one block; job points at its start. */
static int copy_strings(sqlite3_stmt *st, ledger_row_t *row, const char *currency)
{
	static const int cols[7] = { C_JOB, C_CUSTOM_ID, C_MODEL, C_WORKER, C_WORKER_NAME, C_HW, C_CURRENCY };
	const char *src[7];
	size_t len[7], total = 0;
	for (int i = 0; i < 7; i++) {
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
	const char **dst[7] = { &row->job, &row->custom_id, &row->model, &row->worker, &row->worker_name,
				&row->hardware_profile, &row->currency };
	for (int i = 0; i < 7; i++) {
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

int ledger_select(sqlite3 *db, const ledger_filter_t *f, ledger_rows_t **ret, char *err, size_t errlen)
{
	ledger_filter_t none = { 0 };
	bool base[sizeof(base_cols) / sizeof(base_cols[0])] = { false }, opt[N_OPT] = { false };
	int n_cols, r;
	if (f == NULL)
		f = &none;
	if ((r = ledger_check_schema(db, false, err, errlen)) < 0 ||
	    (r = table_columns(db, base, opt, &n_cols, err, errlen)) < 0)
		return r;
	char sql[2048];
	int o = snprintf(sql, sizeof(sql),
			 "SELECT id, job, custom_id, line_no, model, worker, worker_name, hardware_profile, shard, "
			 "prompt_tokens, completion_tokens, busy_ns, flops, queue_ns, first_token_ns, "
			 "cost_marginal_micros, cost_loaded_micros, answered_at_ns");
	for (int i = 0; i < N_OPT; i++)
		o += snprintf(sql + o, sizeof(sql) - (size_t)o, ", %s", opt[i] ? opt_cols[i].name : opt_cols[i].absent);
	o += snprintf(sql + o, sizeof(sql) - (size_t)o, " FROM ledger WHERE 1");
	if (f->job)
		o += snprintf(sql + o, sizeof(sql) - (size_t)o, " AND job = ?1");
	if (f->model)
		o += snprintf(sql + o, sizeof(sql) - (size_t)o, " AND model = ?2");
	if (f->worker_name)
		o += snprintf(sql + o, sizeof(sql) - (size_t)o, " AND worker_name = ?3");
	if (f->from_ns)
		o += snprintf(sql + o, sizeof(sql) - (size_t)o, " AND answered_at_ns >= ?4");
	if (f->to_ns)
		o += snprintf(sql + o, sizeof(sql) - (size_t)o, " AND answered_at_ns < ?5");
	snprintf(sql + o, sizeof(sql) - (size_t)o, " ORDER BY id");

	sqlite3_stmt *st = NULL;
	ledger_rows_t *rows = calloc(1, sizeof(*rows));
	size_t cap = 0;
	if (rows == NULL)
		return -ENOMEM;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		r = sql_fail(db, "prepare select", err, errlen);
		goto fail;
	}
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
	}
	if (r != SQLITE_DONE) {
		r = sql_fail(db, "select", err, errlen);
		goto fail;
	}
	sqlite3_finalize(st);
	*ret = rows;
	return 0;
fail:
	sqlite3_finalize(st);
	ledger_rows_destroy(&rows);
	return r;
}
