/* cost: see cost.h. */
#include "cost.h"
#include "meter_priv.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cost_book_rates(int64_t rate_busy, int64_t rate_idle, uint64_t idle_ns, cost_call_t *calls, size_t n)
{
	if (n == 0)
		return idle_ns == 0 ? 0 : -EINVAL;
	uint64_t *w = malloc(n * sizeof(*w));
	int64_t *marg = malloc(n * sizeof(*marg)), *idle_cost = malloc(n * sizeof(*idle_cost));
	int64_t *idle = malloc(n * sizeof(*idle));
	int64_t m_total, l_total;
	mg_u128 busy = 0;
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
	mg_u128 busy = 0;
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

int cost_close_window(int64_t rate_busy, int64_t rate_idle, uint64_t engine_ns, uint64_t attended_ns,
		      const uint64_t *busy_ns, const int64_t *marginal, size_t n, int64_t *ret_loaded,
		      uint64_t *ret_idle, int64_t *ret_node_cost, uint64_t *ret_idle_ns)
{
	uint64_t idle = attended_ns > engine_ns ? attended_ns - engine_ns : 0;
	int64_t node, marg = 0, *extra = NULL, *idle_part = NULL;
	int r;
	if (idle > INT64_MAX)
		return -ERANGE;
	if ((r = meter_cost_of_period(rate_busy, engine_ns, rate_idle, idle, &node)) < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		if (marginal[i] < 0 || __builtin_add_overflow(marg, marginal[i], &marg))
			return -ERANGE;
	}
	if (node < marg)
		node = marg;
	if (n > 0) {
		extra = malloc(n * sizeof(*extra));
		idle_part = malloc(n * sizeof(*idle_part));
		r = -ENOMEM;
		if (extra == NULL || idle_part == NULL)
			goto done;
		if ((r = meter_allocate(node - marg, busy_ns, n, extra)) < 0 ||
		    (r = meter_allocate((int64_t)idle, busy_ns, n, idle_part)) < 0)
			goto done;
		for (size_t i = 0; i < n; i++) {
			ret_loaded[i] = marginal[i] + extra[i];
			ret_idle[i] = (uint64_t)idle_part[i];
		}
	}
	*ret_node_cost = node;
	*ret_idle_ns = idle;
	r = 0;
done:
	free(extra);
	free(idle_part);
	return r;
}

int cost_api_quote(const pricetab_t *t, const pricetab_entry_t *e, uint64_t prompt_tokens,
		   uint64_t completion_tokens, bool via_batch, const char *currency, cost_api_quote_t *ret,
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
	int64_t micros;
	if ((r = meter_wq_mul(meter_wq_from(pin), (meter_wq_t){ (meter_i128)prompt_tokens, 1 }, &a)) < 0 ||
	    (r = meter_wq_mul(meter_wq_from(pout), (meter_wq_t){ (meter_i128)completion_tokens, 1 }, &b)) < 0 ||
	    (r = meter_wq_add(a, b, &sum)) < 0 || (r = meter_wq_mul(sum, meter_wq_from(fx), &sum)) < 0 ||
	    (r = meter_wq_round(sum, &micros)) < 0) {
		snprintf(err, errlen, "%s: API price of %llu + %llu tokens out of range", e->name,
			 (unsigned long long)prompt_tokens, (unsigned long long)completion_tokens);
		return r;
	}
	*ret = (cost_api_quote_t){ .micros = micros, .in_per_1m = pin, .out_per_1m = pout,
				   .batch_tier = via_batch && e->has_batch, .fx = fx };
	return 0;
}

int cost_api_equivalent(const pricetab_t *t, const pricetab_entry_t *e, uint64_t prompt_tokens,
			uint64_t completion_tokens, bool via_batch, const char *currency, int64_t *ret_micros,
			char *err, size_t errlen)
{
	cost_api_quote_t q;
	int r = cost_api_quote(t, e, prompt_tokens, completion_tokens, via_batch, currency, &q, err, errlen);
	if (r == 0)
		*ret_micros = q.micros;
	return r;
}

/* Exact text of a rational: the decimal when it ends (the denominator
 * has no prime factor but 2 and 5), else "num/den". */
static void q_text(meter_q_t q, char *buf, size_t len)
{
	int64_t d = q.den;
	while (d % 2 == 0)
		d /= 2;
	while (d % 5 == 0)
		d /= 5;
	if (d == 1)
		meter_q_format(q, buf, len);
	else
		snprintf(buf, len, "%lld/%lld", (long long)q.num, (long long)q.den);
}

static void fx_text(const pricetab_t *t, const char *cur, char *buf, size_t len)
{
	const pricetab_fx_t *f = pricetab_find_fx(t, cur);
	char v[48];
	if (f == NULL) {
		snprintf(buf, len, "%s_per_USD: none", cur);	/* the factor would have failed */
		return;
	}
	q_text(f->per_usd, v, sizeof(v));
	snprintf(buf, len, "%s_per_USD = %s (%s; %s)", cur, v, f->source, f->date);
}

void cost_api_source(const pricetab_t *t, const pricetab_entry_t *e, const cost_api_quote_t *q,
		     const char *currency, bool via_batch, cost_api_source_t *ret)
{
	memset(ret, 0, sizeof(*ret));
	q_text(q->in_per_1m, ret->input_per_1m, sizeof(ret->input_per_1m));
	q_text(q->out_per_1m, ret->output_per_1m, sizeof(ret->output_per_1m));
	q_text(q->fx, ret->fx_rate, sizeof(ret->fx_rate));
	if (strcmp(e->currency, currency) != 0) {
		/* The rates the factor came from (USD is 1 by definition). */
		char a[PRICETAB_TEXT + 130] = "", b[PRICETAB_TEXT + 130] = "";
		if (strcmp(e->currency, "USD") != 0)
			fx_text(t, e->currency, a, sizeof(a));
		if (strcmp(currency, "USD") != 0)
			fx_text(t, currency, b, sizeof(b));
		snprintf(ret->fx_source, sizeof(ret->fx_source), "%s -> %s: %s%s%s", e->currency, currency, a,
			 a[0] && b[0] ? "; " : "", b);
	}
	/* The sources and dates of the prices that applied: the entry's list
	 * prices (input and output may be sourced apart), or its batch tier;
	 * a batch call at list price says why (the entry's batch note). */
	char *ps = ret->price_source;
	size_t cap = sizeof(ret->price_source);
	if (q->batch_tier) {
		snprintf(ps, cap, "%s: batch tier: %s", e->origin[0] ? e->origin : e->name, e->batch_source);
		snprintf(ret->price_date, sizeof(ret->price_date), "%s", e->batch_date);
		return;
	}
	const char *note = via_batch && e->batch_source[0] ? "; batch call at list price: " : "";
	const char *why = note[0] ? e->batch_source : "";
	if (strcmp(e->in_source, e->out_source) == 0)
		snprintf(ps, cap, "%s: %s%s%s", e->origin[0] ? e->origin : e->name, e->in_source, note, why);
	else
		snprintf(ps, cap, "%s: input: %s; output: %s%s%s", e->origin[0] ? e->origin : e->name, e->in_source,
			 e->out_source, note, why);
	if (strcmp(e->in_date, e->out_date) == 0)
		snprintf(ret->price_date, sizeof(ret->price_date), "%s", e->in_date);
	else
		snprintf(ret->price_date, sizeof(ret->price_date), "input %s, output %s", e->in_date, e->out_date);
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
