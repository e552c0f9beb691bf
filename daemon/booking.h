/* booking: the metering service inside margind — every answered call is
 * priced when its Result commits, in the same SQLite transaction as the
 * shard's outputs (journal_set_book_fn), and written to the ledger with
 * every column of meter/ledger.h.
 *
 * Which hardware profile prices a worker:
 *   - [meter] hardware (margind --hardware PROFILE|FILE), for every worker;
 *   - else the profile the worker announced in Hello (margin-worker serve
 *     --hardware NAME), loaded from [meter] hardware_dir/NAME.conf;
 *   - else (no name, or no such file) a warning, once per name, and the
 *     cpu-2vcpu profile from the same directory;
 *   - else (not even that: a broken install) a warning and cost 0 with no
 *     currency: tokens and busy_ns are still booked and can be priced
 *     later (marginctl cost --hardware).
 * The ledger's hardware_profile column names the profile that priced the
 * row (the announced name when none did).
 *
 * How a Result's calls are priced (docs/economics.md section 3, "How
 * margind books"):
 *   - Accounting windows: [meter] period (hour or day, default hour),
 *     aligned to UTC. A call belongs to the window its Result commits in,
 *     on its worker (ledger_period: one row per window and worker, in the
 *     journal, written in the Result's transaction).
 *   - Marginal cost is carried per (worker, window): after a Result, the
 *     window's calls have cost exactly round(rate_busy x their busy time)
 *     in total; the Result's part is the difference of two such roundings,
 *     spread over its calls by busy time with the largest-remainder
 *     method (meter_allocate).
 *   - Loaded cost: provisional (= marginal, period_open = 1) until the
 *     window closes. A window closes when it has ended, or when its worker
 *     has left: at the next Result, on margind's timer (booking_tick via
 *     journal_tick, at least every 10 s) and at startup (windows a
 *     restart left open). Its node cost is round((rate_busy x engine +
 *     rate_idle x idle) / 3.6e12), engine = every output's engine time
 *     (failed ones too), idle = max(0, attended - engine), attended = the
 *     worker's attached time (journal workers: join..leave) inside the
 *     window; the part above the marginal costs is spread over the
 *     window's calls by busy time (cost_close_window), so their loaded
 *     costs sum to it exactly and loaded >= marginal. A window without
 *     calls keeps its cost in its ledger_period row (idle no call
 *     absorbed). The jobs' loaded totals rise by their calls' share in the
 *     same transaction (journal_job_add_loaded). Idle time is never
 *     charged to a later window's calls.
 *   - Closed-API equivalents: each call is priced on every [meter] refs
 *     model (an embedding call, its job's endpoint /v1/embeddings: on
 *     every [meter] embed_refs model instead) with the [meter] price tables (cost_api_quote: batch tier when
 *     via_batch, into the row's currency, one rounding) and the result,
 *     with what priced it, goes to ledger_api / ledger_api_price with the
 *     call's row — same transaction, so reports show what a call cost on
 *     the APIs when it was answered, whatever the tables say later. A
 *     reference that cannot price a call is left out of it with one
 *     warning (a configuration error must not stall the batch).
 *
 * Core thread only (the hook runs inside sched's Result transaction). */
#ifndef BOOKING_H
#define BOOKING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "meter/hwprof.h"
#include "journal.h"
#include "meter/ledger.h"
#include "lib/mg_config.h"
#include "meter/pricetab.h"
#include "sched.h"

#define BOOKING_FALLBACK_PROFILE "cpu-2vcpu"
#define BOOKING_PATH_MAX 4096
#define BOOKING_MAX_REFS 16

/* The [meter] settings, shared by the booking (core thread) and the cost
 * reports (HTTP threads, read only after load):
 *
 *   [meter]
 *   hardware = PROFILE | FILE     price every worker with this profile (--hardware)
 *   hardware_dir = DIR            profiles by name (default DATADIR/margin/hardware)
 *   prices = FILE[,FILE...]       price tables, INI or LiteLLM .json (--prices;
 *                                 default fx, closed-2024, cn-2024-05-after)
 *   prices_dir = DIR              tables by name (default DATADIR/margin/prices)
 *   prices_date = DATE            the snapshot date of a LiteLLM file
 *   refs = NAME[,NAME...]         reference models (price entries), booked with
 *                                 each call (ledger_api) and in reports
 *                                 (default gpt-4o-mini,qwen-long); not
 *                                 embedding prices
 *   embed_refs = NAME[,NAME...]   the embedding prices (mode = embedding) that
 *                                 /v1/embeddings calls are booked and reported
 *                                 against instead (default text-embedding-3-small,
 *                                 text-embedding-3-large,text-embedding-v3)
 *   currency = CUR                report currency (default the profile's)
 *   sale_price = P | IN/OUT       our sale price per 1M tokens in that currency,
 *                                 for gross margins (the metric and reports)
 *   period = hour | day           the accounting window whose idle time its calls
 *                                 share (default hour; UTC-aligned)
 *
 * A name without '/' that is not an existing file is looked up in the
 * directory (NAME, then NAME.conf): meter_load_profile, meter_load_prices
 * and meter_default_dir (meter_catalog.h), as marginctl does. */
typedef struct booking_conf {
	char hardware[BOOKING_PATH_MAX];	/* "" = each worker's own */
	char hardware_dir[BOOKING_PATH_MAX];
	char prices_dir[BOOKING_PATH_MAX];
	char currency[4];			/* resolved: never "" after load */
	char *refs[BOOKING_MAX_REFS];		/* owned: chat/completion prices */
	size_t n_refs;
	char *embed_refs[BOOKING_MAX_REFS];	/* owned: embedding prices */
	size_t n_embed_refs;
	pricetab_t *prices;			/* owned; holds the "sale" entry when has_sale */
	bool has_sale;
	char sale_text[64];			/* as configured */
	hwprof_t forced;			/* [meter] hardware, when set */
	bool has_forced;
	hwprof_t fallback;			/* cpu-2vcpu, when found */
	bool has_fallback;
	int64_t period_ns;			/* LEDGER_HOUR_NS or LEDGER_DAY_NS */
} booking_conf_t;

/* The price entry name under which a configured sale price is added. */
#define BOOKING_SALE_ENTRY "sale"

/* Reads [meter] from cfg and loads the profile(s) and price tables. An
 * explicit setting that does not load is an error naming it (-ENOENT,
 * -EINVAL); a missing default directory or fallback profile is only
 * logged. c is written in full (booking_conf_done frees it). */
int booking_conf_load(booking_conf_t *c, const mg_config_t *cfg, char *err, size_t errlen);
void booking_conf_done(booking_conf_t *c);

typedef struct booking booking_t;

/* conf borrowed (must outlive the booking). -ENOMEM. */
int booking_new(const booking_conf_t *conf, booking_t **ret);
void booking_destroy(booking_t **b);

/* Installs the booking and timer hooks on s's journal (journal_open has
 * made the ledger's tables current). s borrowed; state_dir only named in
 * the log. */
int booking_attach(booking_t *b, sched_t *s, const char *state_dir, char *err, size_t errlen);

/* The Result hook itself (journal_book_fn with user = the booking_t).
 * Without booking_attach (tests on a bare ledger) windows close only by
 * booking_tick, with the engine time as the attended time. */
int booking_book(void *user, struct sqlite3 *db, const journal_result_ctx_t *ctx, const journal_call_t *calls,
		 size_t n, uint64_t unbooked_busy_ns, int64_t wall_ns, journal_usage_t *sum, char *err, size_t errlen);
/* The timer hook (journal_tick_fn): closes the windows that can close by
 * wall_ns; *ret_next_ns: the end of the current window, or 10 s from
 * now if sooner. */
int booking_tick(void *user, struct sqlite3 *db, int64_t wall_ns, int64_t *ret_next_ns, char *err, size_t errlen);

#endif
