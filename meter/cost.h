/* cost: turning measured busy time and token counts into money.
 *
 * The engine already splits each step's wall time among the sequences in
 * it (integers that sum to the step); a call's busy_ns is its share. A
 * group of calls priced together with cost_book():
 *
 *   marginal total  M = round(rate_busy * sum(busy_ns) / 3.6e12)
 *   loaded total    L = round((rate_busy * sum(busy_ns) + rate_idle * idle_ns) / 3.6e12)
 *   marginal_i      = meter_allocate(M, busy_ns)
 *   loaded_i        = marginal_i + meter_allocate(L - M, busy_ns)_i
 *   idle_ns_i       = meter_allocate(idle_ns, busy_ns)_i
 *
 * so sum(marginal_i) = node cost of the busy time and sum(loaded_i) = node
 * cost of busy + idle time, exactly, and loaded_i >= marginal_i. idle_ns is
 * the node's idle wall time charged to this group (OpenCost's shareIdle,
 * economics.md 4). margind charges a worker's idle time per accounting
 * window to the calls of that window (cost_close_window below), so every
 * nanosecond a worker is attached is charged once, to its own window.
 * Storing idle_ns_i in the ledger lets a report recompute both costs under
 * another profile (what-if) from busy_ns and idle_ns alone.
 *
 * Pure functions; any thread. */
#ifndef COST_H
#define COST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hwprof.h"
#include "pricetab.h"

typedef struct cost_call {
	uint64_t busy_ns;		/* in: this call's share of its engine steps */
	uint64_t idle_ns;		/* out: idle time charged to it */
	int64_t cost_marginal_micros;	/* out: busy_ns at rate_busy */
	int64_t cost_loaded_micros;	/* out: marginal + its share of the idle cost */
} cost_call_t;

/* Books n calls with the profile's rates. -EINVAL (n == 0 with idle time),
 * -ERANGE, -ENOMEM; calls are written only on success. */
int cost_book(const hwprof_t *hw, uint64_t idle_ns, cost_call_t *calls, size_t n);
/* Same with explicit rates (micros per hour), for what-if and tests. */
int cost_book_rates(int64_t rate_busy, int64_t rate_idle, uint64_t idle_ns, cost_call_t *calls, size_t n);

/* Fully loaded cost over a period: the node's cost for period_ns (busy at
 * rate_busy, the rest at rate_idle) spread over the calls served in it in
 * proportion to busy time. sum(ret_loaded) = node cost of the period,
 * exactly. -EINVAL when sum(busy) > period_ns. */
int cost_spread_period(int64_t rate_busy, int64_t rate_idle, uint64_t period_ns, const uint64_t *busy_ns,
		       size_t n, int64_t *ret_loaded);

/* Closes one worker's accounting window (docs/economics.md section 3):
 *
 *   idle_ns   = max(0, attended_ns - engine_ns)
 *   node_cost = round((rate_busy * engine_ns + rate_idle * idle_ns) / 3.6e12)
 *   loaded_i  = marginal_i + meter_allocate(node_cost - sum(marginal), busy_ns)_i
 *   idle_i    = meter_allocate(idle_ns, busy_ns)_i
 *
 * engine_ns is the engine time of every output in the window, failed ones
 * too; the n calls are the window's answered ones with their marginal
 * costs as booked. With n > 0, sum(loaded_i) = node_cost exactly and
 * loaded_i >= marginal_i. Marginal costs booked per window sum to
 * round(rate_busy x their busy time) <= node_cost; should they exceed it
 * (rows priced some other way), node_cost is their sum. n = 0: only the
 * node cost (idle cost no call absorbs). ret_loaded and ret_idle may be
 * NULL when n = 0. -ERANGE, -EINVAL (a negative rate), -ENOMEM. */
int cost_close_window(int64_t rate_busy, int64_t rate_idle, uint64_t engine_ns, uint64_t attended_ns,
		      const uint64_t *busy_ns, const int64_t *marginal, size_t n, int64_t *ret_loaded,
		      uint64_t *ret_idle, int64_t *ret_node_cost, uint64_t *ret_idle_ns);

/* Closed-API equivalent of one call: prompt * p_in + completion * p_out
 * with the entry's prices (batch prices when via_batch and the entry has a
 * batch tier; the tier band chosen by prompt size), converted to currency
 * with the table's exchange rates, rounded once (half away from zero) to
 * micros. Prompt tokens are all priced as cache misses (the ledger has no
 * cache-hit count). -ENOENT (no exchange rate), -ERANGE (no band, overflow)
 * with a message. */
int cost_api_equivalent(const pricetab_t *t, const pricetab_entry_t *e, uint64_t prompt_tokens,
			uint64_t completion_tokens, bool via_batch, const char *currency, int64_t *ret_micros,
			char *err, size_t errlen);

/* The same, with what priced it: the per-token prices that applied (in
 * the entry's currency, batch tier and band resolved) and the exchange
 * factor. micros is exactly cost_api_equivalent()'s. margind books one
 * quote per (call, reference model) into the ledger (ledger_api). */
typedef struct cost_api_quote {
	int64_t micros;			/* (prompt * in + completion * out) * fx, rounded once */
	meter_q_t in_per_1m, out_per_1m;	/* applied: micros of the entry's currency per token */
	bool batch_tier;		/* the entry's batch prices applied (via_batch and it has a tier) */
	meter_q_t fx;			/* entry currency -> the quote's currency (1 when the same) */
} cost_api_quote_t;

int cost_api_quote(const pricetab_t *t, const pricetab_entry_t *e, uint64_t prompt_tokens,
		   uint64_t completion_tokens, bool via_batch, const char *currency, cost_api_quote_t *ret,
		   char *err, size_t errlen);

/* What priced a quote, as the text the ledger keeps (ledger_api_price_t):
 * exact numbers ("0.075", "7.2"; "5/36" when the decimal does not end),
 * the entry's file and sources, the dates of the prices that applied
 * (the batch tier's when it applied) and the exchange rates used. */
typedef struct cost_api_source {
	char input_per_1m[48], output_per_1m[48];	/* applied, entry currency per 1M tokens */
	char fx_rate[48];
	char fx_source[2 * PRICETAB_TEXT + 300];	/* "" when no conversion */
	char price_source[3 * PRICETAB_TEXT + 200];
	char price_date[160];
} cost_api_source_t;

void cost_api_source(const pricetab_t *t, const pricetab_entry_t *e, const cost_api_quote_t *q,
		     const char *currency, bool via_batch, cost_api_source_t *ret);

/* Cost per 1M tokens at a throughput: rate / (tok_s * 3600 * utilization)
 * * 1e6, in micros (rounded half away from zero). For charts and the
 * price-war check, where throughput is a measured float. -EDOM for a
 * non-positive throughput or utilization. */
int cost_per_1m_tokens(int64_t rate_micros_per_hour, double tok_per_s, double utilization, int64_t *ret_micros);

#endif
