/* ledger: the per-call cost ledger in margind's SQLite journal.
 *
 * One row per answered call, written by the daemon (daemon/journal.c) in
 * the same transaction as the shard's result. The meter reads it for
 * reports through a sqlite3 handle the caller owns; the cost arithmetic
 * itself never touches SQLite (cost.h, report.h).
 *
 * Columns: the daemon's table (job ... answered_at_ns) plus five the meter
 * adds (idle_ns, currency, rate_busy_micros_per_hour,
 * rate_idle_micros_per_hour, via_batch), all with defaults so that
 * ledger_upgrade() can add them to an existing table with ALTER TABLE.
 * ledger_select() works on a table that lacks the five (older journals):
 * it reads them as their defaults (idle 0, via_batch 1, rates 0) and the
 * currency from the filter. The exact schema is also in docs/economics.md
 * and /work/notes/ledger-schema.md. */
#ifndef LEDGER_H
#define LEDGER_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LEDGER_SCHEMA_SQL \
	"CREATE TABLE IF NOT EXISTS ledger (\n" \
	"  id INTEGER PRIMARY KEY,\n" \
	"  job TEXT NOT NULL,                      -- batch name (the id clients see)\n" \
	"  custom_id TEXT NOT NULL,\n" \
	"  line_no INTEGER NOT NULL,\n" \
	"  model TEXT NOT NULL,\n" \
	"  worker TEXT NOT NULL,                   -- worker id\n" \
	"  worker_name TEXT NOT NULL,\n" \
	"  hardware_profile TEXT NOT NULL,         -- Hello.hardware_profile\n" \
	"  shard INTEGER NOT NULL,\n" \
	"  prompt_tokens INTEGER NOT NULL,\n" \
	"  completion_tokens INTEGER NOT NULL,\n" \
	"  busy_ns INTEGER NOT NULL,               -- Usage.busy_ns\n" \
	"  flops INTEGER NOT NULL,\n" \
	"  queue_ns INTEGER NOT NULL,\n" \
	"  first_token_ns INTEGER NOT NULL,\n" \
	"  cost_marginal_micros INTEGER NOT NULL DEFAULT 0,\n" \
	"  cost_loaded_micros INTEGER NOT NULL DEFAULT 0,\n" \
	"  answered_at_ns INTEGER NOT NULL,        -- unix ns (reports by UTC day)\n" \
	"  idle_ns INTEGER NOT NULL DEFAULT 0,     -- idle node time charged (cost_call_t.idle_ns)\n" \
	"  currency TEXT NOT NULL DEFAULT '',      -- of the cost columns (the profile's)\n" \
	"  rate_busy_micros_per_hour INTEGER NOT NULL DEFAULT 0,\n" \
	"  rate_idle_micros_per_hour INTEGER NOT NULL DEFAULT 0,\n" \
	"  via_batch INTEGER NOT NULL DEFAULT 1    -- 0 for synchronous /v1/*completions\n" \
	");\n" \
	"CREATE INDEX IF NOT EXISTS ledger_job ON ledger(job);\n"

/* One ledger row as plain values. Strings are borrowed: from the caller
 * when inserting, from the ledger_rows_t when selected. */
typedef struct ledger_row {
	int64_t id;			/* 0 when inserting (SQLite assigns it) */
	const char *job;
	const char *custom_id;
	int64_t line_no;
	const char *model;
	const char *worker;		/* worker id */
	const char *worker_name;
	const char *hardware_profile;
	int64_t shard;
	uint64_t prompt_tokens, completion_tokens;
	uint64_t busy_ns, flops, queue_ns, first_token_ns;
	int64_t cost_marginal_micros, cost_loaded_micros;
	int64_t answered_at_ns;
	/* The meter's additions. */
	uint64_t idle_ns;
	const char *currency;
	int64_t rate_busy_micros_per_hour, rate_idle_micros_per_hour;
	bool via_batch;
} ledger_row_t;

typedef struct ledger_rows {
	ledger_row_t *v;	/* owned, with the strings they point to */
	size_t n;
} ledger_rows_t;

typedef struct ledger_filter {
	const char *job;		/* NULL = any */
	const char *model;
	const char *worker_name;
	int64_t from_ns;		/* answered_at_ns >= from_ns (0 = any) */
	int64_t to_ns;			/* answered_at_ns < to_ns (0 = any) */
	const char *default_currency;	/* for rows without one (no column, or '') */
} ledger_filter_t;

/* Runs LEDGER_SCHEMA_SQL (idempotent). For tests and tools: the daemon
 * creates its table itself. */
int ledger_create(sqlite3 *db, char *err, size_t errlen);
/* Adds the meter's five columns to a ledger table that lacks them (ALTER
 * TABLE ... ADD COLUMN with the defaults above). Returns how many were
 * added. Run it where the daemon opens its journal, outside a read. */
int ledger_upgrade(sqlite3 *db, char *err, size_t errlen);
/* -EPROTO naming the first missing column when the table does not match:
 * the daemon's columns always, the meter's five too when strict. */
int ledger_check_schema(sqlite3 *db, bool strict, char *err, size_t errlen);
/* Inserts rows with every column (no transaction of its own). For tests
 * and tools; needs the full schema. */
int ledger_insert(sqlite3 *db, const ledger_row_t *rows, size_t n, char *err, size_t errlen);
/* Rows matching f (NULL = all), in id order. -EINVAL naming the row when a
 * row has no currency and f->default_currency is NULL. Caller destroys
 * *ret. */
int ledger_select(sqlite3 *db, const ledger_filter_t *f, ledger_rows_t **ret, char *err, size_t errlen);
void ledger_rows_destroy(ledger_rows_t **r);

#endif
