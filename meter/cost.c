/* cost: see cost.h. */
#include "cost.h"
#include "meter_priv.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int cost_book_rates(int64_t rate_busy, int64_t rate_idle, uint64_t idle_ns, cost_call_t *calls, size_t n)
{
	if (n == 0)
		return idle_ns == 0 ? 0 : -EINVAL;
	uint64_t *w = malloc(n * sizeof(*w));
	int64_t *marg = malloc(n * sizeof(*marg)), *idle_cost = malloc(n * sizeof(*idle_cost));
	int64_t *idle = malloc(n * sizeof(*idle));
	int64_t m_total, l_total;
	unsigned __int128 busy = 0;
	int r = -ENOMEM;
	if (w == NULL || marg == NULL || idle_cost == NULL || idle == NULL)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		w[i] = calls[i].busy_ns;
		busy += w[i];
	}
	r = -ERANGE;
	if (busy > UINT64_MAX || idle_ns > INT64_MAX)
		goto fail;
	if ((r = meter_cost_of_ns(rate_busy, (uint64_t)busy, &m_total)) < 0 ||
	    (r = meter_cost_of_period(rate_busy, (uint64_t)busy, rate_idle, idle_ns, &l_total)) < 0)
		goto fail;
	/* l_total >= m_total: the same rounding of a larger exact value. */
	if ((r = meter_allocate(m_total, w, n, marg)) < 0 ||
	    (r = meter_allocate(l_total - m_total, w, n, idle_cost)) < 0 ||
	    (r = meter_allocate((int64_t)idle_ns, w, n, idle)) < 0)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		calls[i].cost_marginal_micros = marg[i];
		calls[i].cost_loaded_micros = marg[i] + idle_cost[i];
		calls[i].idle_ns = (uint64_t)idle[i];
	}
	r = 0;
fail:
	free(w);
	free(marg);
	free(idle_cost);
	free(idle);
	return r;
}

int cost_book(const hwprof_t *hw, uint64_t idle_ns, cost_call_t *calls, size_t n)
{
	return cost_book_rates(hw->rate_busy_micros_per_hour, hw->rate_idle_micros_per_hour, idle_ns, calls, n);
}

int cost_spread_period(int64_t rate_busy, int64_t rate_idle, uint64_t period_ns, const uint64_t *busy_ns,
		       size_t n, int64_t *ret_loaded)
{
	unsigned __int128 busy = 0;
	for (size_t i = 0; i < n; i++)
		busy += busy_ns[i];
	if (busy > period_ns)
		return -EINVAL;
	int64_t total;
	int r = meter_cost_of_period(rate_busy, (uint64_t)busy, rate_idle, period_ns - (uint64_t)busy, &total);
	if (r < 0)
		return r;
	return meter_allocate(total, busy_ns, n, ret_loaded);
}

int cost_api_equivalent(const pricetab_t *t, const pricetab_entry_t *e, uint64_t prompt_tokens,
			uint64_t completion_tokens, bool via_batch, const char *currency, int64_t *ret_micros,
			char *err, size_t errlen)
{
	meter_q_t pin, pout, fx;
	int r = pricetab_prices(e, prompt_tokens, via_batch, &pin, &pout);
	if (r < 0) {
		snprintf(err, errlen, "%s: no price band for a prompt of %llu tokens", e->name,
			 (unsigned long long)prompt_tokens);
		return r;
	}
	if ((r = pricetab_fx_factor(t, e->currency, currency, &fx, err, errlen)) < 0)
		return r;
	/* (prompt * p_in + completion * p_out) * fx, exact, then one rounding.
	 * Prices are micros per token. */
	meter_wq_t a, b, sum;
	if ((r = meter_wq_mul(meter_wq_from(pin), (meter_wq_t){ (meter_i128)prompt_tokens, 1 }, &a)) < 0 ||
	    (r = meter_wq_mul(meter_wq_from(pout), (meter_wq_t){ (meter_i128)completion_tokens, 1 }, &b)) < 0 ||
	    (r = meter_wq_add(a, b, &sum)) < 0 || (r = meter_wq_mul(sum, meter_wq_from(fx), &sum)) < 0 ||
	    (r = meter_wq_round(sum, ret_micros)) < 0) {
		snprintf(err, errlen, "%s: API price of %llu + %llu tokens out of range", e->name,
			 (unsigned long long)prompt_tokens, (unsigned long long)completion_tokens);
		return r;
	}
	return 0;
}

int cost_per_1m_tokens(int64_t rate_micros_per_hour, double tok_per_s, double utilization, int64_t *ret_micros)
{
	if (!(tok_per_s > 0) || !(utilization > 0) || !isfinite(tok_per_s) || !isfinite(utilization))
		return -EDOM;
	double v = (double)rate_micros_per_hour / (tok_per_s * 3600.0 * utilization) * 1e6;
	if (!(v < 9.2e18))
		return -ERANGE;
	*ret_micros = (int64_t)llround(v);
	return 0;
}
