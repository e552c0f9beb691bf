/* plan: capacity planning. How many nodes of a hardware profile serve a
 * daily workload within a deadline, at what cost per token, and how that
 * compares with closed APIs.
 *
 * Memory fit (the node's accelerators taken as one device, tensor parallel:
 * memory, peaks and bandwidth summed, as hwprof.h states them):
 *   context  c   = in + out tokens per request (capped at a sliding window)
 *   KV/seq       = c x shape_kv_bytes_per_token (f16 K and V)
 *   max batch    = floor((memory_bytes - weight_bytes) / KV/seq)
 * Activations and the runtime's own memory are left out, so the batch is
 * an upper bound too.
 *
 * Speed at that batch:
 *  - measured: a bench of the model's shape taken on the profile's
 *    hardware (attached to the profile, or given): its run at the largest
 *    measured batch <= max batch (no interpolation: the batch planned is
 *    that run's). Basis "measured (bench FILE, batch N)". A bench without
 *    such a run (all its batches too large) is set aside, said in the why;
 *  - else thru_estimate's roofline with the efficiency measured here at
 *    max batch, plus what the roofline leaves out at large batches: each
 *    decode step reads the batch's KV cache (batch x KV at the mean context
 *    in + out/2) besides the weights, and attention costs shape_attn_flops
 *    per token. Basis "estimate (roofline x efficiency measured here),
 *    upper bound".
 *
 * Capacity (per day; R = requests a day = output tokens / out):
 *   node-seconds S = R x (in / prefill tok/s + out / decode tok/s)
 *   nodes          = ceil(S / (deadline x 3600))
 *   utilization    = S / (nodes x deadline x 3600)   (within the deadline)
 *   busy hours     = S / 3600 / nodes per node, the rest of the day idle
 * Cost (in the plan's currency, node rates converted with the fx table):
 *   marginal per 1M output = rate_busy / (3600 x decode tok/s) x 1e6,
 *            per 1M input  = rate_busy / (3600 x prefill tok/s) x 1e6
 *            (a token costs the node time it takes: economics.md 5.2)
 *   day cost = nodes x (busy hours x rate_busy + (24 - busy hours) x rate_idle)
 *   loaded   = marginal x day cost / busy cost (the idle time spread over
 *              the day's tokens: loaded in x I + loaded out x O = day cost)
 *   month    = day cost x 365 / 12
 * Against an API of prices p_in, p_out per token (converted):
 *   API per day = I x p_in + O x p_out;  ratio = API per day / day cost
 *   break-even (one node, as report_breakeven): output tokens a day
 *     V* = rate_idle x 24 / (API per output token - extra per output token),
 *     extra = (rate_busy - rate_idle) x node-seconds per output token
 *     (with its share of input); never when the API costs no more than the
 *     extra power; reachable when V* <= one node's capacity in the deadline.
 *   days to recover a one-off cost = one_off / (API per day - day cost).
 *
 * Money here is a double of currency micro-units: a plan is a forecast from
 * measured or estimated floats, not a booking (cost.h books exactly).
 * Pure functions; any thread. */
#ifndef PLAN_H
#define PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hwprof.h"
#include "pricetab.h"
#include "shape.h"
#include "thru.h"

#define PLAN_MAX_REFS 16
#define PLAN_DAYS_PER_MONTH (365.0 / 12.0)

typedef struct plan_fit {
	uint64_t memory_bytes;		/* the profile's memory_bytes */
	uint64_t weight_bytes;
	uint64_t ctx;			/* tokens a sequence holds */
	uint64_t kv_bytes_per_seq;
	uint64_t max_batch;		/* 0: the weights and one sequence do not fit */
} plan_fit_t;

/* The fit of model m on memory_bytes at in + out tokens per request. */
void plan_fit(const shape_t *m, uint64_t memory_bytes, uint64_t in, uint64_t out, plan_fit_t *ret);
/* The same on hw: -EINVAL naming the profile when it has no memory_bytes. */
int plan_fit_profile(const shape_t *m, const hwprof_t *hw, uint64_t in, uint64_t out, plan_fit_t *ret,
		     char *err, size_t errlen);
/* 0 when batch sequences fit; -ENOSPC with "batch B does not fit: weights
 * W + KV K (B x S at C tokens) = T > memory M" otherwise. */
int plan_fit_check(const plan_fit_t *f, uint64_t batch, const char *where, char *err, size_t errlen);

/* Does hw state an fp16 peak (accelerators serve 16-bit weights on it)? */
bool plan_has_fp16_peak(const hwprof_t *hw);

/* The roofline estimate at batch (see the header comment): thru_estimate
 * on the fp16 peak when the model's weights are 16-bit or quantized and hw
 * has one, else fp32; *ret_fp16 says which. ret->why names the basis. */
int plan_estimate(const shape_t *m, const hwprof_t *hw, uint64_t batch, double in, double out,
		  const thru_eff_t *eff, thru_t *ret, bool *ret_fp16, char *err, size_t errlen);

typedef struct plan_workload {
	double out_tokens_per_day;	/* > 0 */
	double in_per_req, out_per_req;	/* the mix: in >= 0, out > 0 */
	double deadline_hours;		/* 0 < D <= 24 */
} plan_workload_t;

typedef struct plan_ref {
	char name[128];			/* entry name */
	char model[128];
	double api_per_day_micros;
	double ratio;			/* API per day / self-hosted day cost */
	double api_per_out_token_micros;	/* with the input it brings */
	double breakeven_out_tokens_per_day;	/* one node; INFINITY: never */
	bool reachable;			/* within one node's capacity in the deadline */
	double saving_per_day_micros;	/* API per day - day cost */
	double days_to_recover;		/* one-off / saving; INFINITY: never; NAN: no one-off */
} plan_ref_t;

typedef struct plan_row {
	char profile[64];
	uint64_t accelerators;
	plan_fit_t fit;
	uint64_t batch;			/* the decode batch speed is at: fit.max_batch for an estimate,
					 * the bench run's (<= fit.max_batch) when measured */
	thru_t speed;			/* at batch */
	char basis[256];		/* PLAN_BASIS_ESTIMATE or "measured (bench FILE, batch N)" */
	bool fp16;			/* the estimate used the fp16 peak */
	double in_tokens_per_day, requests_per_day;
	double node_seconds_per_day;	/* S */
	uint64_t nodes;
	double utilization;		/* within the deadline */
	double busy_hours_per_node;	/* per day */
	int64_t rate_busy_micros_per_hour, rate_idle_micros_per_hour;	/* converted to the plan's currency */
	double marginal_in_per_1m, marginal_out_per_1m;	/* micros */
	double loaded_in_per_1m, loaded_out_per_1m;
	double cost_per_day_micros, cost_per_month_micros;
	size_t n_refs;
	plan_ref_t refs[PLAN_MAX_REFS];
} plan_row_t;

typedef struct plan_in {
	const shape_t *model;
	const plan_workload_t *work;
	const char *currency;		/* the plan's */
	const pricetab_t *prices;	/* exchange rates (may be NULL when every currency is the plan's) */
	const pricetab_entry_t *refs[PLAN_MAX_REFS];	/* borrowed */
	size_t n_refs;
	int64_t one_off_micros;		/* in the plan's currency; 0 = none */
	const thru_eff_t *eff;		/* for estimates */
} plan_in_t;

/* Validates a workload: -EINVAL with the field named. */
int plan_workload_check(const plan_workload_t *w, char *err, size_t errlen);

#define PLAN_BASIS_ESTIMATE "estimate (roofline x efficiency measured here), upper bound"

/* The run of bench b to plan with when max_batch sequences fit: the one
 * at the largest batch <= max_batch, as a throughput (thru_from_bench);
 * *ret_batch its batch. -ENOENT naming the smallest batch measured when
 * every run is larger. */
int plan_bench_speed(const thru_bench_t *b, uint64_t max_batch, thru_t *ret, uint64_t *ret_batch, char *err,
		     size_t errlen);

/* One profile's row. bench: a bench of the model's shape measured on hw
 * (the caller matches it: speed_plan_bench), or NULL: the estimate at the
 * largest batch that fits. -ENOSPC when the model does not fit, -EINVAL
 * for a profile without memory_bytes or the peaks an estimate needs,
 * -ENOENT for a missing exchange rate; err says which. */
int plan_profile(const plan_in_t *in, const hwprof_t *hw, const thru_bench_t *bench, plan_row_t *ret, char *err,
		 size_t errlen);

/* Capacity of one profile from a throughput (no fit, no estimate): the
 * arithmetic of the header comment. Used by plan_profile; exposed for
 * tests. row->speed, fit and profile must be set; fills the rest. */
int plan_capacity(const plan_in_t *in, const hwprof_t *hw, plan_row_t *row, char *err, size_t errlen);

#endif
