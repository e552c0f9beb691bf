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
 * currency from the filter.
 *
 * Closed-API equivalents as booked: ledger_api holds one row per (call,
 * reference model) with the equivalent in micros, written with the call's
 * ledger row (same transaction); ledger_api_price says what priced it
 * (reference model, the exact prices and exchange rate that applied, the
 * price tables loaded, the entry's source and date), one row per distinct
 * pricing shared by every call priced that way, so the per-call cost is
 * three integers and a short name, not the provenance text again. The view
 * ledger_api_view joins the two for people and SQL tools. Rows booked
 * before these tables existed have no equivalents (reports compute them
 * and say so). The exact schema is also in docs/economics.md and
 * /work/notes/ledger-schema.md. */
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
	"CREATE INDEX IF NOT EXISTS ledger_job ON ledger(job);\n" \
	LEDGER_API_SCHEMA_SQL

/* The stored closed-API equivalents (ledger_upgrade adds them to an older
 * journal). UNIQUE on every column of ledger_api_price: a pricing is
 * stored once, whoever books it. */
#define LEDGER_API_SCHEMA_SQL \
	"CREATE TABLE IF NOT EXISTS ledger_api_price (\n" \
	"  id INTEGER PRIMARY KEY,\n" \
	"  ref_model TEXT NOT NULL,        -- price entry name ([meter] refs)\n" \
	"  currency TEXT NOT NULL,         -- of the equivalents: the ledger row's\n" \
	"  price_currency TEXT NOT NULL,   -- of the two prices\n" \
	"  input_per_1m TEXT NOT NULL,     -- exact, as applied: list, batch tier or band\n" \
	"  output_per_1m TEXT NOT NULL,\n" \
	"  fx_rate TEXT NOT NULL,          -- exact factor price_currency -> currency\n" \
	"  fx_source TEXT NOT NULL,        -- the rates used and their sources ('' = none)\n" \
	"  price_table TEXT NOT NULL,      -- the tables loaded, e.g. fx+closed-2024+cn-2024-05-after\n" \
	"  price_source TEXT NOT NULL,     -- the entry's file:line and sources\n" \
	"  price_date TEXT NOT NULL,       -- the date(s) of the prices that applied\n" \
	"  UNIQUE (ref_model, currency, price_currency, input_per_1m, output_per_1m, fx_rate, fx_source,\n" \
	"          price_table, price_source, price_date)\n" \
	");\n" \
	"CREATE TABLE IF NOT EXISTS ledger_api (\n" \
	"  ledger_id INTEGER NOT NULL,     -- ledger.id\n" \
	"  ref_model TEXT NOT NULL,\n" \
	"  micros INTEGER NOT NULL,        -- the equivalent, micros of ledger_api_price.currency\n" \
	"  price_id INTEGER NOT NULL,      -- ledger_api_price.id\n" \
	"  PRIMARY KEY (ledger_id, ref_model)\n" \
	") WITHOUT ROWID;\n" \
	"CREATE VIEW IF NOT EXISTS ledger_api_view AS\n" \
	"  SELECT a.ledger_id, a.ref_model, a.micros, p.currency, p.price_currency, p.input_per_1m,\n" \
	"         p.output_per_1m, p.fx_rate, p.fx_source, p.price_table, p.price_source, p.price_date\n" \
	"  FROM ledger_api a JOIN ledger_api_price p ON p.id = a.price_id;\n"

/* What priced stored equivalents: one ledger_api_price row. Strings are
 * borrowed (from the caller when inserting, from the ledger_rows_t when
 * selected). */
typedef struct ledger_api_price {
	int64_t id;			/* 0 when inserting */
	const char *ref_model;		/* price entry name */
	const char *currency;		/* of the equivalents */
	const char *price_currency;	/* of the prices */
	const char *input_per_1m, *output_per_1m;	/* exact decimal (or "num/den") per 1M tokens */
	const char *fx_rate;		/* exact factor price_currency -> currency */
	const char *fx_source;
	const char *price_table;
	const char *price_source;
	const char *price_date;
} ledger_api_price_t;

/* One stored equivalent of one call. */
typedef struct ledger_api {
	const ledger_api_price_t *price;	/* borrowed: what priced it (ref_model, currency) */
	int64_t micros;
} ledger_api_t;

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
	/* Closed-API equivalents as booked, one per reference model
	 * (ledger_api); n_api = 0: none stored (a row booked before they
	 * were, or without a price table). Borrowed like the strings. */
	const ledger_api_t *api;
	size_t n_api;
	/* The accounting window whose node cost the loaded cost shares
	 * (docs/economics.md section 3): its start (unix ns, aligned to UTC)
	 * and length. period_ns = 0: booked by the older rule (idle time
	 * carried to the next Result). period_open: the window has not
	 * closed, so cost_loaded_micros is provisional (the window's idle
	 * time is known only when it ends). */
	int64_t period_start_ns, period_ns;
	bool period_open;
} ledger_row_t;

typedef struct ledger_rows {
	ledger_row_t *v;	/* owned, with the strings they point to */
	size_t n;
	ledger_api_t *api;	/* owned: every row's stored equivalents */
	size_t n_api;
	ledger_api_price_t *prices;	/* owned, with their strings: what priced them */
	size_t n_prices;
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
/* Adds what the meter needs to the daemon's ledger table: the five
 * columns (ALTER TABLE ... ADD COLUMN with the defaults above) and the
 * tables of stored equivalents (LEDGER_API_SCHEMA_SQL; older rows simply
 * have none). Returns how many columns and tables were added (0: nothing
 * to do). Run it where the daemon opens its journal, outside a read. */
int ledger_upgrade(sqlite3 *db, char *err, size_t errlen);
/* -EPROTO naming the first missing column when the table does not match:
 * the daemon's columns always, the meter's five and the ledger_api tables
 * too when strict. */
int ledger_check_schema(sqlite3 *db, bool strict, char *err, size_t errlen);
/* Inserts rows with every column, and each row's stored equivalents
 * (api[n_api]: into ledger_api, their pricing into ledger_api_price once),
 * with no transaction of its own: the caller's makes a call's row and its
 * equivalents one. Needs the full schema. -EEXIST for two equivalents of
 * one call with the same ref_model. */
int ledger_insert(sqlite3 *db, const ledger_row_t *rows, size_t n, char *err, size_t errlen);
/* Rows matching f (NULL = all), in id order, with their stored
 * equivalents (in booking order) when the journal has them. -EINVAL
 * naming the row when a row has no currency and f->default_currency is
 * NULL. Caller destroys *ret. */
int ledger_select(sqlite3 *db, const ledger_filter_t *f, ledger_rows_t **ret, char *err, size_t errlen);
void ledger_rows_destroy(ledger_rows_t **r);

/* The stored equivalent of row for reference model ref, or NULL (none
 * booked). Borrowed from the row. */
const ledger_api_t *ledger_row_find_api(const ledger_row_t *row, const char *ref);

#endif
