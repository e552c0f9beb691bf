/* report: cost reports over ledger rows (pure functions; the rows come
 * from ledger_select() or from the daemon's memory).
 *
 * A report has one row per call (REPORT_BY_CALL: the shape of
 * `marginctl cost --batch ID --format json`) or per batch, model, worker or
 * UTC day, and a total that is the exact sum of its rows.
 *
 * Money is in one report currency. Ledger costs in another currency are
 * converted per currency group: the group's total is converted once
 * (rounded half away from zero) and spread back over its rows in proportion
 * to their original amounts (meter_allocate), so converted rows still sum to
 * the converted total.
 *
 * Kinds of calls: an embedding call (ledger endpoint /v1/embeddings) is
 * compared with the embedding references only (price entries of mode
 * embedding), every other call with the other references only; a pair of
 * the other kinds has no equivalent. A reference's kind is its entry's in
 * opts.prices, else that of the calls it was booked with.
 *
 * Closed-API equivalents: by default the ones stored with each call at
 * booking (ledger_row_t.api: what the call cost on that API when it was
 * answered, with the tables margind had then), so a later change of the
 * price tables does not change a past batch's report. A call without a
 * stored equivalent for a reference (booked before they were stored, or a
 * reference it was not booked with) is priced now with opts.prices, and
 * the report counts those (api_computed) and says so (report_api_note).
 * With opts.whatif_prices every equivalent is recomputed from the token
 * counts with opts.prices: a what-if, and the report says that too. Either
 * way one rounding per call (cost_api_equivalent), summed; stored
 * equivalents in another currency are converted per currency group like
 * the costs.
 *
 * Derived figures (per call, per 1M tokens, utilization, gross margin at a
 * reference price) are computed from the integer sums at format time, each
 * rounded once, half away from zero.
 *
 * Any thread; a report_t is immutable after report_new(). */
#ifndef REPORT_H
#define REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "hwprof.h"
#include "ledger.h"
#include "pricetab.h"

enum report_group {
	REPORT_BY_CALL,
	REPORT_BY_BATCH,
	REPORT_BY_MODEL,
	REPORT_BY_WORKER,	/* worker_name, or the worker id without one */
	REPORT_BY_DAY,		/* UTC day of answered_at_ns, "YYYY-MM-DD" */
};

/* What a hardware what-if assumed, for every format to mark: the text
 * title, JSON "what_if" ({"hardware","speed","speed_basis","speed_why",
 * "prices"}; null when the report is as booked) and the CSV column
 * "what_if" (empty when as booked). Strings borrowed. */
typedef struct report_whatif {
	const char *hardware;		/* profile the calls are repriced on; NULL = the booked one */
	double speed;			/* target speed / booked hardware's speed: busy and idle
					 * times are divided by it; 1 = same speed */
	const char *speed_basis;	/* "measured", "estimate" or "given" */
	const char *speed_why;		/* one line: what the ratio was computed from */
} report_whatif_t;

typedef struct report_opts {
	const char *currency;		/* report currency; NULL = the first row's */
	const pricetab_t *prices;	/* reference prices and exchange rates (borrowed; may be NULL
					 * when there are no refs and no conversion) */
	const char *const *refs;	/* price entry names, in output order */
	size_t n_refs;
	const char *sale;		/* optional entry name: our sale price, for gross margin */
	bool whatif_prices;		/* recompute every equivalent with prices (what-if) instead of
					 * using the ones booked with the calls */
	const report_whatif_t *whatif;	/* a hardware what-if's basis (NULL = none) */
} report_opts_t;

/* The accounting window of a set of calls' loaded costs (ledger_row_t
 * period_*): its length when all agree, the rule, and how many calls are
 * in windows not closed yet (their loaded cost is provisional). */
typedef struct report_window {
	int64_t period_ns;		/* the first call's window length; 0 = carried rule */
	bool mixed;			/* calls differ in length or rule */
	uint64_t open_calls;		/* calls with period_open */
} report_window_t;

typedef struct report_row {
	char *key;			/* owned: custom_id, batch id, model, worker or day */
	char *model, *worker;		/* owned, REPORT_BY_CALL only (else NULL) */
	uint64_t calls, prompt_tokens, completion_tokens, busy_ns, idle_ns, flops;
	int64_t cost_marginal_micros, cost_loaded_micros;
	int64_t *api_micros;		/* owned: [n_refs] closed-API equivalents */
	/* Per reference, the calls compared with it (embedding calls with the
	 * embedding references, the others with the others), their prompt +
	 * completion tokens and loaded cost: the bases of its per-1M price and
	 * gross margin. A row with calls but none compared with a reference
	 * has no figure for it (null, empty, "-"), not 0. */
	uint64_t *api_calls, *api_tokens;	/* owned: [n_refs] */
	int64_t *api_loaded;		/* owned: [n_refs] */
	int64_t sale_micros;		/* revenue at the sale price (when has_sale) */
	report_window_t window;		/* of the row's calls (the total's: the report's) */
} report_row_t;

typedef struct report {
	enum report_group group;
	char currency[4];
	char *hardware;			/* owned: distinct profile names, comma-separated */
	char *prices_name;		/* owned: the price table's name ("" without one) */
	size_t n_refs;
	char **refs;			/* owned: [n_refs] */
	bool *ref_embedding;		/* owned: [n_refs] an embedding price (compared with
					 * /v1/embeddings calls only) */
	bool has_sale;
	char *sale;			/* owned */
	report_row_t *rows;		/* owned: [n_rows], sorted by key (by call: ledger order) */
	size_t n_rows;
	report_row_t total;		/* exact sums of the rows */
	bool whatif_prices;		/* every equivalent recomputed with prices_name's tables */
	uint64_t *api_computed;		/* owned: [n_refs] calls whose equivalent was priced now, not as booked */
	bool api_converted;		/* some booked equivalents were converted into the report currency */
	/* The hardware what-if (opts.whatif), copied; has_whatif false = as booked. */
	bool has_whatif;
	char *whatif_hardware;		/* owned: the profile repriced on (the rows' hardware when
					 * opts.whatif->hardware is NULL) */
	double whatif_speed;		/* target / booked speed */
	char *whatif_speed_basis;	/* owned: "measured", "estimate", "given" ("" when not said) */
	char *whatif_speed_why;		/* owned ("" when not said) */
} report_t;

/* Builds a report. -ENOENT naming an unknown reference price (needed to
 * price a call that has no booked equivalent for it, or any call in a
 * what-if) or a missing exchange rate, -EINVAL (negative cost in a row),
 * -ERANGE, -ENOMEM. */
int report_new(const ledger_row_t *rows, size_t n, enum report_group g, const report_opts_t *o, report_t **ret,
	       char *err, size_t errlen);
void report_destroy(report_t **r);
/* "call", "batch", "model", "worker", "day"; and back (-EINVAL). */
const char *report_group_name(enum report_group g);
int report_group_parse(const char *s, enum report_group *ret);

/* Is the call of row an embedding call, and is a reference of that kind
 * compared with it. */
bool report_row_is_embedding(const ledger_row_t *row);
/* The reference models a report over rows compares with by default: the
 * chat ones when some row is not an embedding call (or there are no
 * rows), then the embedding ones when some row is one; each list in its
 * order, at most max in all. Returns how many (borrowed pointers). */
size_t report_default_refs(const ledger_row_t *rows, size_t n, const char *const *chat, size_t n_chat,
			   const char *const *embed, size_t n_embed, const char **ret, size_t max);

/* "embedding calls (/v1/embeddings) are compared with the embedding prices
 * A, B only, ..." naming r's embedding references; "" when it has none.
 * Returns buf. */
char *report_kinds_note(const report_t *r, char *buf, size_t len);

/* Does row (of rep) have a figure for reference k: it has no calls, or
 * some of them of k's kind. */
bool report_row_compared(const report_row_t *row, size_t k);

/* Where the closed-API equivalents come from: "booked" (all stored with
 * the calls), "what-if" (opts.whatif_prices), "computed" (none was
 * stored: all priced now), "booked+computed" (some of each), "none" (no
 * reference models). Static string. */
const char *report_api_basis(const report_t *r);
/* One sentence for people saying the same, naming the tables used for
 * what was priced now and how many calls per reference. Returns buf. */
char *report_api_note(const report_t *r, char *buf, size_t len);

/* The rule of a window summary: "window" (every call shares the node cost
 * of its own window, all of one length), "carried" (booked before windows:
 * idle time carried to the next Result), "mixed", or "none" (no calls).
 * Static string. */
const char *report_window_rule(const report_window_t *w, uint64_t calls);
/* One sentence for people naming the loaded-cost window of r, e.g. "loaded
 * cost: each node's cost of each UTC hour spread over that hour's calls; 3
 * calls in an open hour are provisional". Returns buf. */
char *report_window_note(const report_t *r, char *buf, size_t len);
/* Is r a what-if (hardware or prices), and the short text of the CSV
 * column ("hardware=8xh100 speed=1.5x (estimate) prices=T"; "" as
 * booked). Returns buf. */
bool report_is_whatif(const report_t *r);
char *report_whatif_text(const report_t *r, char *buf, size_t len);

/* Text renderings; *ret_text is malloc'd, NUL-terminated, caller frees.
 * JSON by call: {"currency","hardware","api_basis","api_note",
 * "api_computed_calls":{REF:n},"rows":[{"custom_id","model","worker",
 * "prompt_tokens","completion_tokens","busy_ns","flops","cost_marginal_micros",
 * "cost_loaded_micros","api_equivalent_micros":{REF:..}}],"total":{same keys}}.
 * By group, rows carry "key", "calls", "idle_ns" and the derived figures
 * too. Top level also: "what_if" (null as booked, else {"hardware",
 * "speed","speed_basis","speed_why","prices"}; prices: the table name when
 * the equivalents were recomputed, else null; the hardware keys null in a
 * prices-only what-if) and "loaded_window" ({"period_s": seconds or null,
 * "rule": report_window_rule, "open_calls"}). CSV: a header, the rows,
 * then a "total" row; every row carries "currency" after the key columns,
 * and "loaded_window" (that row's window: "rule=window period=3600s
 * open=3", "rule=carried", "rule=mixed open=1") and "what_if"
 * (report_whatif_text) last (the api basis is not in it: callers print
 * report_api_note beside it). Text: "WHAT-IF" in the title, the what-if's
 * basis, the api note and the window note under it. */
int report_format_json(const report_t *r, char **ret_text);
int report_format_csv(const report_t *r, char **ret_text);
/* An aligned table for people, with per-call and per-1M figures. */
int report_format_text(const report_t *r, char **ret_text);
/* Writes S to F as one CSV field (RFC 4180): in double quotes, a quote
 * doubled, when ALWAYS or when S holds a comma, a quote, CR or LF; else as
 * it is. */
void report_csv_field(FILE *f, const char *s, bool always);

/* Derived figures of a row (or the total), micros rounded once.
 * -EDOM when the divisor is 0 (then *ret is untouched). */
int report_per_call(int64_t micros, uint64_t calls, int64_t *ret);
int report_per_1m_tokens(int64_t micros, uint64_t tokens, int64_t *ret);
/* busy / (busy + idle), ppm. */
int report_utilization_ppm(uint64_t busy_ns, uint64_t idle_ns, int64_t *ret);

/* What-if: rows recomputed under another hardware profile, from their
 * stored busy_ns and idle_ns alone (no rerun). time_scale multiplies both
 * (1 = same speed; 1/3 = hardware three times faster at the same
 * utilization). Calls are booked per job as cost_book() does, so each
 * batch's new costs sum exactly to the new node cost of its time. out[i]
 * copies in[i] (strings borrowed from in) with hardware_profile, currency, rates,
 * busy/idle and costs replaced. For another price table, build a report
 * with other report_opts.prices. */
int report_whatif(const ledger_row_t *in, size_t n, const hwprof_t *hw, meter_q_t time_scale, ledger_row_t *out,
		  char *err, size_t errlen);

/* Break-even between a self-hosted node and a closed API, from measured
 * calls. Self-hosted cost per day of N calls on one node:
 *   fixed (rate_idle * 24 h) + N * (rate_busy - rate_idle) * busy per call;
 * the API costs N * api per call. */
typedef struct report_breakeven_in {
	int64_t rate_busy_micros_per_hour, rate_idle_micros_per_hour;	/* report currency */
	uint64_t calls;			/* measured calls ... */
	uint64_t busy_ns;		/* ... their total busy time ... */
	int64_t api_micros;		/* ... and their total closed-API price */
	int64_t one_off_micros;		/* a one-off cost to recover (0 = none) */
	double calls_per_day;		/* planned volume for the recovery (0 = node capacity) */
} report_breakeven_in_t;

typedef struct report_breakeven {
	double busy_ns_per_call;
	double api_per_call_micros;
	double extra_per_call_micros;		/* power at load above idle */
	int64_t fixed_per_day_micros;		/* one node, 24 h at rate_idle */
	double capacity_calls_per_day;		/* one node fully busy */
	double breakeven_calls_per_day;		/* INFINITY: the API is always cheaper */
	double breakeven_utilization;		/* of one node */
	bool reachable;				/* break-even <= capacity */
	double calls_per_day;			/* volume used for the saving */
	double saving_per_day_micros;		/* API cost - self-hosted cost at that volume */
	double days_to_recover;			/* one_off / saving; INFINITY when saving <= 0 */
} report_breakeven_t;

/* -EINVAL when calls or busy_ns is 0. */
int report_breakeven(const report_breakeven_in_t *in, report_breakeven_t *ret);

#endif
