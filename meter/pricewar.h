/* pricewar: the price-war check (`economics check`): is serving a model at a
 * provider's price, before and after a cut, above or below cost?
 *
 * Cost side: a hardware profile's node cost per hour, paid for the whole
 * hour; at utilization U the node is busy U of it:
 *   cost/h = U * rate_busy + (1 - U) * rate_idle.
 * Throughput (thru.h: given, bench or estimated) and the call mix give the
 * tokens served per hour at U; revenue per hour = in/h * p_in + out/h * p_out
 * at each price, converted with the price table's exchange rates. With a
 * cache-hit rate R, an entry that has a cached-input price is paid
 *   p_in = R * p_cached + (1 - R) * p_in_list     (pricetab_cache_blend)
 * for its input tokens; an entry without one keeps its list input price.
 *
 *   gross margin GM = (revenue - cost) / revenue
 *   the cut of the before price that takes GM to zero = GM_before
 *     (price * (1 - GM_before) = cost; a 60% margin dies at a 60% cut)
 *   a 90% cut makes GM negative iff GM_before < 90%.
 *
 * Revenues and costs per hour are rounded to micros; margins are computed
 * from those integers. Pure functions; any thread. */
#ifndef PRICEWAR_H
#define PRICEWAR_H

#include <stdbool.h>
#include <stdint.h>

#include "hwprof.h"
#include "pricetab.h"
#include "thru.h"

typedef struct pricewar_in {
	const hwprof_t *hw;
	const thru_t *thru;		/* per node, at 100% utilization */
	double in_per_call, out_per_call;	/* the call mix (tokens) */
	const char *mix_source;
	double utilization;		/* 0 < U <= 1 */
	const char *utilization_source;
	const pricetab_t *prices;	/* exchange rates (and the entries' table) */
	const pricetab_entry_t *before, *after;
	bool via_batch;			/* use the entries' batch prices */
	bool has_cache_hit;		/* apply cache_hit to entries with a cached price */
	meter_q_t cache_hit;		/* 0..1: share of input tokens read from the cache */
	const char *cache_hit_source;
	const char *currency;		/* report currency; NULL = the profile's */
} pricewar_in_t;

typedef struct pricewar_point {
	int64_t revenue_micros_per_hour;
	bool defined;			/* false when revenue is 0 (GM -infinity) */
	int64_t gm_ppm;			/* gross margin */
	int64_t markup_ppm;		/* DeepSeek's "cost profit margin" (price - cost) / cost */
} pricewar_point_t;

typedef struct pricewar {
	char currency[4];
	int64_t cost_micros_per_hour;
	double in_tokens_per_hour, out_tokens_per_hour;
	int64_t cost_per_1m_tokens_micros;	/* blended over in + out */
	pricewar_point_t before, after, at_90;	/* at_90: the before price cut by 90% */
	double revenue_cut;		/* 1 - revenue_after / revenue_before (NaN if no revenue before) */
	double zero_margin_cut;		/* = GM_before as a fraction (NaN if undefined) */
	bool before_cached, after_cached;	/* the cache-hit price was applied */
	bool after_negative;
	bool negative_at_90;
} pricewar_t;

/* -EINVAL naming a bad input, -ENOENT for a missing exchange rate. */
int pricewar_check(const pricewar_in_t *in, pricewar_t *ret, char *err, size_t errlen);
/* The report as text: every input with its source and date, then the
 * results. Caller frees; NULL on ENOMEM. */
char *pricewar_format(const pricewar_in_t *in, const pricewar_t *pw);

#endif
