/* ledger: see ledger.h. */
#include "ledger.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const columns[] = {
	"id", "batch_id", "shard_id", "line_no", "custom_id", "model", "worker", "hardware",
	"prompt_tokens", "completion_tokens", "busy_ns", "idle_ns", "flops", "currency",
	"rate_busy_micros_per_hour", "rate_idle_micros_per_hour", "cost_marginal_micros",
	"cost_loaded_micros", "via_batch", "booked_at_ns", NULL,
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

int ledger_check_schema(sqlite3 *db, char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	bool seen[sizeof(columns) / sizeof(columns[0])] = { false };
	int r = 0, n = 0;
	if (sqlite3_prepare_v2(db, "PRAGMA table_info(ledger)", -1, &st, NULL) != SQLITE_OK)
		return sql_fail(db, "table_info", err, errlen);
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(st, 1);
		n++;
		for (int i = 0; columns[i]; i++)
			if (name && strcmp(name, columns[i]) == 0)
				seen[i] = true;
	}
	sqlite3_finalize(st);
	if (r != SQLITE_DONE)
		return sql_fail(db, "table_info", err, errlen);
	if (n == 0) {
		snprintf(err, errlen, "ledger: no table named ledger (see LEDGER_SCHEMA_SQL in meter/ledger.h)");
		return -EPROTO;
	}
	for (int i = 0; columns[i]; i++)
		if (!seen[i]) {
			snprintf(err, errlen, "ledger: column %s missing (see LEDGER_SCHEMA_SQL in meter/ledger.h)",
				 columns[i]);
			return -EPROTO;
		}
	return 0;
}

static int check_u63(uint64_t v, const char *what, const ledger_row_t *row, char *err, size_t errlen)
{
	if (v <= INT64_MAX)
		return 0;
	snprintf(err, errlen, "ledger: batch %s line %lld: %s exceeds 2^63", row->batch_id, (long long)row->line_no,
		 what);
	return -ERANGE;
}

int ledger_insert(sqlite3 *db, const ledger_row_t *rows, size_t n, char *err, size_t errlen)
{
	static const char *sql =
		"INSERT INTO ledger (batch_id, shard_id, line_no, custom_id, model, worker, hardware, "
		"prompt_tokens, completion_tokens, busy_ns, idle_ns, flops, currency, rate_busy_micros_per_hour, "
		"rate_idle_micros_per_hour, cost_marginal_micros, cost_loaded_micros, via_batch, booked_at_ns) "
		"VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)";
	sqlite3_stmt *st = NULL;
	int r = 0;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return sql_fail(db, "prepare insert", err, errlen);
	for (size_t i = 0; i < n; i++) {
		const ledger_row_t *w = &rows[i];
		if ((r = check_u63(w->prompt_tokens, "prompt_tokens", w, err, errlen)) < 0 ||
		    (r = check_u63(w->completion_tokens, "completion_tokens", w, err, errlen)) < 0 ||
		    (r = check_u63(w->busy_ns, "busy_ns", w, err, errlen)) < 0 ||
		    (r = check_u63(w->idle_ns, "idle_ns", w, err, errlen)) < 0 ||
		    (r = check_u63(w->flops, "flops", w, err, errlen)) < 0)
			goto fail;
		sqlite3_reset(st);
		sqlite3_bind_text(st, 1, w->batch_id, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, w->shard_id);
		sqlite3_bind_int64(st, 3, w->line_no);
		sqlite3_bind_text(st, 4, w->custom_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 5, w->model, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 6, w->worker, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 7, w->hardware, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 8, (int64_t)w->prompt_tokens);
		sqlite3_bind_int64(st, 9, (int64_t)w->completion_tokens);
		sqlite3_bind_int64(st, 10, (int64_t)w->busy_ns);
		sqlite3_bind_int64(st, 11, (int64_t)w->idle_ns);
		sqlite3_bind_int64(st, 12, (int64_t)w->flops);
		sqlite3_bind_text(st, 13, w->currency, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 14, w->rate_busy_micros_per_hour);
		sqlite3_bind_int64(st, 15, w->rate_idle_micros_per_hour);
		sqlite3_bind_int64(st, 16, w->cost_marginal_micros);
		sqlite3_bind_int64(st, 17, w->cost_loaded_micros);
		sqlite3_bind_int(st, 18, w->via_batch ? 1 : 0);
		sqlite3_bind_int64(st, 19, w->booked_at_ns);
		if (sqlite3_step(st) != SQLITE_DONE) {
			char what[160];
			snprintf(what, sizeof(what), "insert batch %.60s line %lld", w->batch_id ? w->batch_id : "?",
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
		free((void *)(*p)->v[i].batch_id);	/* one block holds the row's strings */
	free((*p)->v);
	free(*p);
	*p = NULL;
}

/* Copies the row's six strings into one block; batch_id points at its start. */
static int copy_strings(sqlite3_stmt *st, ledger_row_t *row)
{
	static const int cols[6] = { 1, 4, 5, 6, 7, 13 };
	size_t len[6], total = 0;
	for (int i = 0; i < 6; i++) {
		const unsigned char *s = sqlite3_column_text(st, cols[i]);
		len[i] = s ? (size_t)sqlite3_column_bytes(st, cols[i]) : 0;
		total += len[i] + 1;
	}
	char *blk = malloc(total), *p = blk;
	if (blk == NULL)
		return -ENOMEM;
	const char **dst[6] = { &row->batch_id, &row->custom_id, &row->model, &row->worker, &row->hardware,
				&row->currency };
	for (int i = 0; i < 6; i++) {
		const unsigned char *s = sqlite3_column_text(st, cols[i]);
		memcpy(p, s ? (const char *)s : "", len[i]);
		p[len[i]] = '\0';
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
	char sql[1024];
	ledger_filter_t none = { 0 };
	if (f == NULL)
		f = &none;
	int o = snprintf(sql, sizeof(sql),
			 "SELECT id, batch_id, shard_id, line_no, custom_id, model, worker, hardware, prompt_tokens, "
			 "completion_tokens, busy_ns, idle_ns, flops, currency, rate_busy_micros_per_hour, "
			 "rate_idle_micros_per_hour, cost_marginal_micros, cost_loaded_micros, via_batch, "
			 "booked_at_ns FROM ledger WHERE 1");
	if (f->batch_id)
		o += snprintf(sql + o, sizeof(sql) - (size_t)o, " AND batch_id = ?1");
	if (f->model)
		o += snprintf(sql + o, sizeof(sql) - (size_t)o, " AND model = ?2");
	if (f->worker)
		o += snprintf(sql + o, sizeof(sql) - (size_t)o, " AND worker = ?3");
	if (f->from_ns)
		o += snprintf(sql + o, sizeof(sql) - (size_t)o, " AND booked_at_ns >= ?4");
	if (f->to_ns)
		o += snprintf(sql + o, sizeof(sql) - (size_t)o, " AND booked_at_ns < ?5");
	snprintf(sql + o, sizeof(sql) - (size_t)o, " ORDER BY id");

	sqlite3_stmt *st = NULL;
	ledger_rows_t *rows = calloc(1, sizeof(*rows));
	size_t cap = 0;
	int r;
	if (rows == NULL)
		return -ENOMEM;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		r = sql_fail(db, "prepare select", err, errlen);
		goto fail;
	}
	if (f->batch_id)
		sqlite3_bind_text(st, 1, f->batch_id, -1, SQLITE_STATIC);
	if (f->model)
		sqlite3_bind_text(st, 2, f->model, -1, SQLITE_STATIC);
	if (f->worker)
		sqlite3_bind_text(st, 3, f->worker, -1, SQLITE_STATIC);
	if (f->from_ns)
		sqlite3_bind_int64(st, 4, f->from_ns);
	if (f->to_ns)
		sqlite3_bind_int64(st, 5, f->to_ns);
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
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
		if (copy_strings(st, w) < 0) {
			r = -ENOMEM;
			goto fail;
		}
		rows->n++;
		w->id = sqlite3_column_int64(st, 0);
		w->shard_id = sqlite3_column_int64(st, 2);
		w->line_no = sqlite3_column_int64(st, 3);
		w->prompt_tokens = col_u64(st, 8);
		w->completion_tokens = col_u64(st, 9);
		w->busy_ns = col_u64(st, 10);
		w->idle_ns = col_u64(st, 11);
		w->flops = col_u64(st, 12);
		w->rate_busy_micros_per_hour = sqlite3_column_int64(st, 14);
		w->rate_idle_micros_per_hour = sqlite3_column_int64(st, 15);
		w->cost_marginal_micros = sqlite3_column_int64(st, 16);
		w->cost_loaded_micros = sqlite3_column_int64(st, 17);
		w->via_batch = sqlite3_column_int(st, 18) != 0;
		w->booked_at_ns = sqlite3_column_int64(st, 19);
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
