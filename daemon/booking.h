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
 * How a Result's calls are priced (docs/economics.md "Booking"):
 *   - Marginal cost is carried per (batch, worker): after a Result, the
 *     batch's calls on that worker have cost exactly
 *     round(rate_busy x their busy time) in total — the shard's total is
 *     the difference of two such roundings, spread over its calls by busy
 *     time with the largest-remainder method (meter_allocate). A single
 *     Result's marginal costs are exactly cost_book()'s.
 *   - Idle time: per worker, the time since it joined minus the engine
 *     time it reported (all outputs, failed ones too) is idle; each Result
 *     is charged the part of that not charged yet, never less than 0. So
 *     every attached nanosecond is charged at most once, and exactly once
 *     when Results do not overlap; with overlapping shards the excess is
 *     bounded by the busy time in flight (the meter engineer's
 *     "period since the last booking minus this Result's busy" rule adds
 *     up every overlap instead). Idle cost is carried per (batch, worker)
 *     like the marginal cost: sum(loaded - marginal) = round(rate_idle x
 *     idle time charged), so sum(loaded) = cost of busy time + cost of idle
 *     time, each rounded once, and loaded >= marginal on every row.
 *   - The carried sums live in TEMP tables of the journal's connection,
 *     so a Result that rolls back rolls them back too.
 *   - Closed-API equivalents: each call is priced on every [meter] refs
 *     model with the [meter] price tables (cost_api_quote: batch tier when
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

#include "hwprof.h"
#include "journal.h"
#include "mg_config.h"
#include "pricetab.h"
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
 *                                 (default gpt-4o-mini,qwen-long)
 *   currency = CUR                report currency (default the profile's)
 *   sale_price = P | IN/OUT       our sale price per 1M tokens in that currency,
 *                                 for gross margins (the metric and reports)
 *
 * A name without '/' that is not an existing file is looked up in the
 * directory (NAME, then NAME.conf): meter_load_profile, meter_load_prices
 * and meter_default_dir (meter.h), as marginctl does. */
typedef struct booking_conf {
	char hardware[BOOKING_PATH_MAX];	/* "" = each worker's own */
	char hardware_dir[BOOKING_PATH_MAX];
	char prices_dir[BOOKING_PATH_MAX];
	char currency[4];			/* resolved: never "" after load */
	char *refs[BOOKING_MAX_REFS];		/* owned */
	size_t n_refs;
	pricetab_t *prices;			/* owned; holds the "sale" entry when has_sale */
	bool has_sale;
	char sale_text[64];			/* as configured */
	hwprof_t forced;			/* [meter] hardware, when set */
	bool has_forced;
	hwprof_t fallback;			/* cpu-2vcpu, when found */
	bool has_fallback;
} booking_conf_t;

/* The price entry name under which a configured sale price is added. */
#define BOOKING_SALE_ENTRY "sale"

/* Reads [meter] from cfg and loads the profile(s) and price tables. An
 * explicit setting that does not load is an error naming it (-ENOENT,
 * -EINVAL); a missing default directory or fallback profile is only
 * logged. c is written in full (booking_conf_done frees it). */
int booking_conf_load(booking_conf_t *c, const mg_config_t *cfg, char *err, size_t errlen);
void booking_conf_done(booking_conf_t *c);

/* margind's flags for the meter, as `--set meter.KEY=VALUE` for opts.c:
 * --hardware PROFILE|FILE -> meter.hardware, --prices FILE (repeatable)
 * -> meter.prices (joined with commas). *ret_argv is a new NULL-terminated
 * vector (free with booking_argv_free); the other arguments are borrowed.
 * *ret_help: --help or -h was given. -ENOMEM, -EINVAL (a flag without its
 * value, err says which). */
int booking_argv(int argc, char **argv, int *ret_argc, char ***ret_argv, bool *ret_help, char *err, size_t errlen);
void booking_argv_free(char ***argv);
/* The lines margind --help adds for these flags. */
void booking_usage(FILE *f);

typedef struct booking booking_t;

/* conf borrowed (must outlive the booking). -ENOMEM. */
int booking_new(const booking_conf_t *conf, booking_t **ret);
void booking_destroy(booking_t **b);

/* Adds the meter's columns and the tables of booked equivalents to the
 * ledger of STATE_DIR/margin.db (ledger_upgrade, on a connection of its
 * own, before the core runs) and installs the hook on s's journal. s
 * borrowed. */
int booking_attach(booking_t *b, sched_t *s, const char *state_dir, char *err, size_t errlen);

/* Tests: the monotonic clock (default mg_clock_now_ns) and when a worker
 * joined, in the same clock (default: the registry's joined_ns; < 0 =
 * unknown, then its first Result is charged no idle time). */
void booking_set_clock(booking_t *b, int64_t (*now)(void *user),
		       int64_t (*joined)(void *user, const char *worker), void *user);

/* The hook itself (journal_book_fn with user = the booking_t). */
int booking_book(void *user, struct sqlite3 *db, const journal_result_ctx_t *ctx, const journal_call_t *calls,
		 size_t n, uint64_t unbooked_busy_ns, journal_usage_t *sum, char *err, size_t errlen);

#endif
