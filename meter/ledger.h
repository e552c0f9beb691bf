/* ledger: the per-call cost ledger in margind's SQLite journal.
 *
 * One row per answered call, written by the daemon in the same
 * transaction as the shard's result (DESIGN.md "Journal"). The meter only
 * reads it for reports, through a sqlite3 handle the caller owns; the
 * cost arithmetic itself never touches SQLite (cost.h, report.h).
 *
 * The table the meter expects (also in docs/economics.md and
 * /work/notes/ledger-schema.md); ledger_check_schema() verifies that a
 * database has these columns. */
#ifndef LEDGER_H
#define LEDGER_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LEDGER_SCHEMA_SQL \
	"CREATE TABLE IF NOT EXISTS ledger (\n" \
	"  id INTEGER PRIMARY KEY,\n" \
	"  batch_id TEXT NOT NULL,                 -- the job: OpenAI batch id\n" \
	"  shard_id INTEGER NOT NULL DEFAULT 0,\n" \
	"  line_no INTEGER NOT NULL,               -- line in the input file\n" \
	"  custom_id TEXT NOT NULL,\n" \
	"  model TEXT NOT NULL,\n" \
	"  worker TEXT NOT NULL,\n" \
	"  hardware TEXT NOT NULL,                 -- hardware profile name (Hello.hardware_profile)\n" \
	"  prompt_tokens INTEGER NOT NULL CHECK (prompt_tokens >= 0),\n" \
	"  completion_tokens INTEGER NOT NULL CHECK (completion_tokens >= 0),\n" \
	"  busy_ns INTEGER NOT NULL CHECK (busy_ns >= 0),     -- Usage.busy_ns\n" \
	"  idle_ns INTEGER NOT NULL DEFAULT 0 CHECK (idle_ns >= 0), -- cost_call_t.idle_ns\n" \
	"  flops INTEGER NOT NULL DEFAULT 0,       -- Usage.flops\n" \
	"  currency TEXT NOT NULL,                 -- of the two cost columns (the profile's)\n" \
	"  rate_busy_micros_per_hour INTEGER NOT NULL,\n" \
	"  rate_idle_micros_per_hour INTEGER NOT NULL,\n" \
	"  cost_marginal_micros INTEGER NOT NULL,\n" \
	"  cost_loaded_micros INTEGER NOT NULL,\n" \
	"  via_batch INTEGER NOT NULL DEFAULT 1,   -- came through the Batch API\n" \
	"  booked_at_ns INTEGER NOT NULL,          -- CLOCK_REALTIME ns at booking (UTC days)\n" \
	"  UNIQUE (batch_id, line_no)\n" \
	");\n" \
	"CREATE INDEX IF NOT EXISTS ledger_booked_at ON ledger (booked_at_ns);\n"

/* One ledger row as plain values. Strings are borrowed: from the caller
 * when inserting, from the ledger_rows_t when selected. */
typedef struct ledger_row {
	int64_t id;		/* 0 when inserting (SQLite assigns it) */
	const char *batch_id;
	int64_t shard_id;
	int64_t line_no;
	const char *custom_id;
	const char *model;
	const char *worker;
	const char *hardware;
	uint64_t prompt_tokens;
	uint64_t completion_tokens;
	uint64_t busy_ns;
	uint64_t idle_ns;
	uint64_t flops;
	const char *currency;
	int64_t rate_busy_micros_per_hour;
	int64_t rate_idle_micros_per_hour;
	int64_t cost_marginal_micros;
	int64_t cost_loaded_micros;
	bool via_batch;
	int64_t booked_at_ns;
} ledger_row_t;

typedef struct ledger_rows {
	ledger_row_t *v;	/* owned, with the strings they point to */
	size_t n;
} ledger_rows_t;

typedef struct ledger_filter {
	const char *batch_id;	/* NULL = any */
	const char *model;
	const char *worker;
	int64_t from_ns;	/* booked_at_ns >= from_ns (0 = any) */
	int64_t to_ns;		/* booked_at_ns < to_ns (0 = any) */
} ledger_filter_t;

/* Runs LEDGER_SCHEMA_SQL (idempotent). For tests and tools; the daemon
 * creates the table with its own schema. */
int ledger_create(sqlite3 *db, char *err, size_t errlen);
/* -EPROTO naming the first missing column when the table does not match. */
int ledger_check_schema(sqlite3 *db, char *err, size_t errlen);
/* Inserts rows (no transaction of its own: run it inside the shard's). */
int ledger_insert(sqlite3 *db, const ledger_row_t *rows, size_t n, char *err, size_t errlen);
/* Rows matching f (NULL = all), in id order. Caller destroys *ret. */
int ledger_select(sqlite3 *db, const ledger_filter_t *f, ledger_rows_t **ret, char *err, size_t errlen);
void ledger_rows_destroy(ledger_rows_t **r);

#endif
