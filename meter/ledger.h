/* ledger: the per-call cost ledger in margind's SQLite journal.
 *
 * This module owns the ledger's tables: it creates them, migrates them
 * (numbered steps, ledger_migrate_step; the journal's own `PRAGMA
 * user_version` steps call them, see daemon/journal.c) and writes them
 * (ledger_insert, the one INSERT path; ledger_period_* for accounting
 * windows). The meter reads it for reports through a sqlite3 handle the
 * caller owns; the cost arithmetic itself never touches SQLite (cost.h,
 * report.h).
 *
 * Schema steps (LEDGER_STEPS; each step is idempotent against the shapes
 * that older margind versions left, since those changed the table without
 * counting):
 *   1. the daemon's original table (job ... answered_at_ns);
 *   2. the meter's five columns (idle_ns, currency, rate_busy_micros_per_hour,
 *      rate_idle_micros_per_hour, via_batch) and the tables of booked
 *      closed-API equivalents (ledger_api, ledger_api_price, the view);
 *   3. accounting windows: the columns period_start_ns, period_ns,
 *      period_open and the table ledger_period;
 *   4. the column endpoint: the API endpoint of the call's job
 *      ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"), so
 *      that embedding calls are compared with embedding prices only.
 * ledger_select() works on a table of any step from 1 (older journals,
 * read-only): it reads the missing columns as their defaults (idle 0,
 * via_batch 1, rates 0, period 0, endpoint '': a completion, the only
 * kind of call there was) and the currency from the filter.
 *
 * Accounting windows (docs/economics.md section 3): a call's loaded cost
 * shares the node cost of its worker's window (an hour or a day, aligned
 * to UTC) in which its Result committed. ledger_period holds one row per
 * (window, worker): the window's engine time, calls and marginal costs as
 * Results add them (ledger_period_add, in the Result's transaction), then,
 * once the window has ended, its attended and idle time and node cost
 * (ledger_period_close). Until then the window's calls carry
 * period_open = 1 and cost_loaded_micros = cost_marginal_micros
 * (provisional); closing spreads the window's idle cost over them, so
 * their loaded costs sum to the node cost exactly. A closed window without
 * calls keeps its node cost in its ledger_period row: idle cost no call
 * absorbed. Rows booked before step 3 (period_ns = 0) keep the costs they
 * were booked with (idle carried to the next Result).
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
 * and say so). The exact schema is in docs/economics.md section 8. */
#ifndef LEDGER_H
#define LEDGER_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Schema steps of the ledger's tables (see above). */
#define LEDGER_STEPS 4

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
	/* The API endpoint of the call's job (jobs.endpoint); "" or NULL in
	 * rows booked before the column: completions. "/v1/embeddings"
	 * (METER_ENDPOINT_EMBEDDINGS): an embedding call, compared with
	 * embedding prices only. */
	const char *endpoint;
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

/* Runs schema step `step` (1..LEDGER_STEPS) on db, with no transaction
 * of its own: the journal's migrations call it inside theirs. Each step
 * brings any older shape of the tables to its own (a column another
 * version added already is left as it is). -EINVAL for an unknown step;
 * -EIO etc. with err naming the statement. */
int ledger_migrate_step(sqlite3 *db, int step, char *err, size_t errlen);
/* A database that holds the ledger alone (tests, tools): runs the steps
 * after its `PRAGMA user_version` and sets it to LEDGER_STEPS, in one
 * transaction. Idempotent. -EPROTO for a newer version. (margind's journal
 * numbers its own versions and calls ledger_migrate_step; see
 * daemon/journal.c.) */
int ledger_create(sqlite3 *db, char *err, size_t errlen);
/* -EPROTO naming the first missing column when the table does not match:
 * the columns of step 1 always, every later step's too when strict. */
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

/* --- accounting windows ------------------------------------------------ */

#define LEDGER_HOUR_NS 3600000000000LL
#define LEDGER_DAY_NS (24 * LEDGER_HOUR_NS)

/* The start of the window of length period_ns (> 0, a divisor of a day)
 * that holds t (unix ns): windows are aligned to UTC midnight. */
int64_t ledger_window_start(int64_t t, int64_t period_ns);

/* One ledger_period row: a worker's accounting window. */
typedef struct ledger_period {
	int64_t start_ns, period_ns;	/* the window [start, start + period) */
	char worker[64];		/* worker id */
	char worker_name[128];
	char hardware_profile[128];	/* that priced it */
	char currency[8];		/* of the costs ('' = none: cost 0) */
	int64_t rate_busy_micros_per_hour, rate_idle_micros_per_hour;
	/* Added by each Result committed in the window: */
	uint64_t engine_ns;		/* engine time of every output, failed ones too */
	uint64_t busy_ns;		/* of the answered calls (ledger rows) */
	int64_t calls;
	int64_t marginal_micros;	/* sum of the calls' marginal costs = round(rate_busy x busy_ns) */
	/* Set when it closes: */
	uint64_t attended_ns;		/* the worker's attached time inside the window */
	uint64_t idle_ns;		/* max(0, attended - engine) */
	int64_t node_cost_micros;	/* round((rate_busy x engine + rate_idle x idle) / 3.6e12) */
	bool closed;
} ledger_period_t;

/* The row of (start, period, worker) into *ret: 0, or -ENOENT. */
int ledger_period_find(sqlite3 *db, int64_t start_ns, int64_t period_ns, const char *worker,
		       ledger_period_t *ret, char *err, size_t errlen);
/* Adds a Result to its window: creates the row from p (key, names and
 * rates; p's sums are what is added) or adds p's engine_ns, busy_ns, calls
 * and marginal_micros to it. No transaction of its own (the Result's).
 * -EALREADY when the window has closed (the caller books into a later
 * one). */
int ledger_period_add(sqlite3 *db, const ledger_period_t *p, char *err, size_t errlen);

/* Closes the window (start, period, worker) with the worker's attended
 * time in it: computes its idle time and node cost (cost_close_window),
 * spreads the cost over the window's calls (their cost_loaded_micros and
 * idle_ns; period_open = 0) and marks the row closed. A window that has no
 * row yet (a worker attached with no Result in it) is created from p's
 * names and rates first. on_job (may be NULL) gets, per job, how much its
 * calls' loaded cost rose (> 0 only), for the job's totals; a negative
 * return from it aborts with that error. No transaction of its own.
 * -EALREADY when already closed. */
typedef int (*ledger_job_delta_fn)(void *user, const char *job, int64_t loaded_delta_micros);
int ledger_period_close(sqlite3 *db, const ledger_period_t *p, uint64_t attended_ns, ledger_job_delta_fn on_job,
			void *user, char *err, size_t errlen);

/* The latest closed window of a worker, -ENOENT when none has closed. */
int ledger_period_last_closed(sqlite3 *db, const char *worker, ledger_period_t *ret, char *err, size_t errlen);
/* Calls fn with each open window that ended by now_ns (start + period <=
 * now_ns), oldest first. The rows are copies: fn may close them. */
int ledger_period_each_ended(sqlite3 *db, int64_t now_ns, int (*fn)(void *user, const ledger_period_t *p),
			     void *user, char *err, size_t errlen);

#endif
