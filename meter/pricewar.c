/* pricewar: see pricewar.h. */
#include "pricewar.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void point(int64_t revenue, int64_t cost, pricewar_point_t *p)
{
	p->revenue_micros_per_hour = revenue;
	p->defined = meter_gross_margin_ppm(revenue, cost, &p->gm_ppm) == 0;
	if (!p->defined)
		p->gm_ppm = 0;
	if (meter_markup_ppm(revenue, cost, &p->markup_ppm) < 0)
		p->markup_ppm = 0;
}

/* Revenue per hour (micros of cur, unrounded) at an entry's prices. */
static int revenue(const pricewar_in_t *in, const pricewar_t *pw, const pricetab_entry_t *e, double *ret,
		   bool *ret_cached, char *err, size_t errlen)
{
	meter_q_t pin, pout, fx;
	uint64_t prompt = in->in_per_call > 0 ? (uint64_t)llround(in->in_per_call) : 0;
	if (pricetab_prices(e, prompt, in->via_batch, &pin, &pout) < 0) {
		snprintf(err, errlen, "%s: no price band for a prompt of %llu tokens", e->name,
			 (unsigned long long)prompt);
		return -EINVAL;
	}
	*ret_cached = false;
	if (in->has_cache_hit && pricetab_cache_blend(e, pin, in->cache_hit, &pin, ret_cached) < 0) {
		snprintf(err, errlen, "price-war check: cache-hit rate %g is not in [0, 1] (or out of range for %s)",
			 meter_q_to_double(in->cache_hit), e->name);
		return -EINVAL;
	}
	int r = pricetab_fx_factor(in->prices, e->currency, pw->currency, &fx, err, errlen);
	if (r < 0)
		return r;
	/* Prices are micros per token of the entry's currency. */
	*ret = (pw->in_tokens_per_hour * meter_q_to_double(pin) + pw->out_tokens_per_hour * meter_q_to_double(pout)) *
	       meter_q_to_double(fx);
	return 0;
}

int pricewar_check(const pricewar_in_t *in, pricewar_t *ret, char *err, size_t errlen)
{
	pricewar_t pw;
	int r;
	memset(&pw, 0, sizeof(pw));
	if (in->hw == NULL || in->thru == NULL || in->before == NULL || in->after == NULL) {
		snprintf(err, errlen, "price-war check: hardware, throughput and both prices are needed");
		return -EINVAL;
	}
	if (!(in->utilization > 0 && in->utilization <= 1)) {
		snprintf(err, errlen, "price-war check: utilization %g is not in (0, 1]", in->utilization);
		return -EINVAL;
	}
	const char *cur = in->currency ? in->currency : in->hw->currency;
	if (!meter_currency_valid(cur)) {
		snprintf(err, errlen, "price-war check: currency \"%s\" is not an ISO 4217 code", cur);
		return -EINVAL;
	}
	snprintf(pw.currency, sizeof(pw.currency), "%s", cur);
	if (thru_tokens_per_hour(in->thru, in->in_per_call, in->out_per_call, in->utilization, &pw.in_tokens_per_hour,
				 &pw.out_tokens_per_hour) < 0) {
		snprintf(err, errlen, "price-war check: throughput or call mix is not positive (%s)", in->thru->why);
		return -EINVAL;
	}
	int64_t rb, ri;
	if ((r = pricetab_convert(in->prices, in->hw->rate_busy_micros_per_hour, in->hw->currency, cur, &rb, err,
				  errlen)) < 0 ||
	    (r = pricetab_convert(in->prices, in->hw->rate_idle_micros_per_hour, in->hw->currency, cur, &ri, err,
				  errlen)) < 0)
		return r;
	pw.cost_micros_per_hour = llround(in->utilization * (double)rb + (1.0 - in->utilization) * (double)ri);
	double tok = pw.in_tokens_per_hour + pw.out_tokens_per_hour;
	pw.cost_per_1m_tokens_micros = llround((double)pw.cost_micros_per_hour / tok * 1e6);

	double rev_b, rev_a;
	if ((r = revenue(in, &pw, in->before, &rev_b, &pw.before_cached, err, errlen)) < 0 ||
	    (r = revenue(in, &pw, in->after, &rev_a, &pw.after_cached, err, errlen)) < 0)
		return r;
	if (!(rev_b < 9e18 && rev_a < 9e18)) {
		snprintf(err, errlen, "price-war check: revenue out of range");
		return -ERANGE;
	}
	point(llround(rev_b), pw.cost_micros_per_hour, &pw.before);
	point(llround(rev_a), pw.cost_micros_per_hour, &pw.after);
	point(llround(rev_b * 0.1), pw.cost_micros_per_hour, &pw.at_90);
	pw.revenue_cut = rev_b > 0 ? 1.0 - rev_a / rev_b : NAN;
	pw.zero_margin_cut = pw.before.defined ? (double)pw.before.gm_ppm / 1e6 : NAN;
	pw.after_negative = !pw.after.defined || pw.after.gm_ppm < 0;
	pw.negative_at_90 = !pw.at_90.defined || pw.at_90.gm_ppm < 0;
	*ret = pw;
	return 0;
}

static void price_line(FILE *f, const char *label, const pricetab_entry_t *e, bool via_batch, bool cached)
{
	char a[48], b[48];
	fprintf(f, "  %s: %s (%s%s%s) %s in / %s out %s per 1M tokens [source: %s; date: %s]\n", label, e->name,
		e->model, e->provider[0] ? ", " : "", e->provider, meter_q_format(e->in_per_1m, a, sizeof(a)),
		meter_q_format(e->out_per_1m, b, sizeof(b)), e->currency, e->in_source, e->in_date);
	if (strcmp(e->in_source, e->out_source) != 0 || strcmp(e->in_date, e->out_date) != 0)
		fprintf(f, "    output price [source: %s; date: %s]\n", e->out_source, e->out_date);
	if (e->has_cached)
		fprintf(f, "    cached input: %s %s per 1M tokens%s [source: %s; date: %s]\n",
			meter_q_format(e->cached_in_per_1m, a, sizeof(a)), e->currency,
			cached ? " (applied at the cache-hit rate)" : " (not applied: no --cache-hit)", e->cached_source,
			e->cached_date);
	if (via_batch)
		fprintf(f, "    batch: %s [source: %s; date: %s]\n",
			e->has_batch ? meter_q_format(e->batch_discount, a, sizeof(a)) : "none", e->batch_source,
			e->batch_date[0] ? e->batch_date : "-");
}

static void result_line(FILE *f, const char *label, const pricewar_point_t *p, const char *cur)
{
	char a[40], b[40], c[40];
	if (p->defined)
		fprintf(f, "  %-22s revenue %s %s/h, gross margin %s (cost profit margin %s)\n", label,
			meter_format_micros(p->revenue_micros_per_hour, a, sizeof(a)), cur,
			meter_format_ppm_pct(p->gm_ppm, b, sizeof(b)), meter_format_ppm_pct(p->markup_ppm, c, sizeof(c)));
	else
		fprintf(f, "  %-22s revenue 0 %s/h, gross margin -infinity (no revenue)\n", label, cur);
}

char *pricewar_format(const pricewar_in_t *in, const pricewar_t *pw)
{
	char *out = NULL, a[40], b[40];
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	if (f == NULL)
		return NULL;
	const hwprof_t *hw = in->hw;
	fprintf(f, "price-war check (%s)\ninputs:\n", pw->currency);
	fprintf(f, "  hardware %s (%s): rate %s %s/h busy, %s %s/h idle%s%s\n", hw->name, hw->pricing,
		meter_format_micros(hw->rate_busy_micros_per_hour, a, sizeof(a)), hw->currency,
		meter_format_micros(hw->rate_idle_micros_per_hour, b, sizeof(b)), hw->currency,
		hw->origin[0] ? " from " : "", hw->origin);
	for (int i = 0; i < HWPROF_N_FIELDS; i++) {
		const hwprof_num_t *n = &hw->f[i];
		if (i >= HWPROF_PEAK_FLOPS_FP32 && in->thru->source != THRU_ESTIMATED)
			continue;
		if (!n->given)	/* defaults ("no salvage value"...) add nothing here */
			continue;
		fprintf(f, "    %-20s = %s %s [source: %s; date: %s]\n", hwprof_field_key(i),
			meter_q_format(n->value, a, sizeof(a)), hwprof_field_unit(hw, i), n->source, n->date);
	}
	if (in->thru->phases)
		fprintf(f, "  throughput (%s): prefill %.1f tok/s, decode %.1f tok/s per node [%s]\n",
			thru_source_name(in->thru->source), in->thru->prefill_tok_s, in->thru->decode_tok_s,
			in->thru->why);
	else
		fprintf(f, "  throughput (%s): %.1f output tok/s per node at the call mix [%s]\n",
			thru_source_name(in->thru->source), in->thru->out_tok_s, in->thru->why);
	fprintf(f, "  call mix: %.0f in / %.0f out tokens [%s]\n", in->in_per_call, in->out_per_call,
		in->mix_source ? in->mix_source : "source not given");
	fprintf(f, "  utilization: %.1f%% [%s]\n", in->utilization * 100,
		in->utilization_source ? in->utilization_source : "source not given");
	if (in->has_cache_hit)
		fprintf(f, "  cache-hit rate: %.2f%% of input tokens at the cached-input price, where the entry has one "
			   "[%s]\n", meter_q_to_double(in->cache_hit) * 100,
			in->cache_hit_source ? in->cache_hit_source : "source not given");
	price_line(f, "price before", in->before, in->via_batch, pw->before_cached);
	price_line(f, "price after", in->after, in->via_batch, pw->after_cached);
	/* The exchange rates used: every non-USD currency involved, when more
	 * than one currency is. */
	const char *curs[4] = { hw->currency, in->before->currency, in->after->currency, pw->currency };
	bool mixed = false;
	for (int i = 1; i < 4; i++)
		mixed |= strcmp(curs[i], curs[0]) != 0;
	for (int i = 0; i < 4 && mixed; i++) {
		bool dup = strcmp(curs[i], "USD") == 0;
		for (int j = 0; j < i; j++)
			dup |= strcmp(curs[i], curs[j]) == 0;
		const pricetab_fx_t *fx = in->prices ? pricetab_find_fx(in->prices, curs[i]) : NULL;
		if (!dup && fx != NULL)
			fprintf(f, "  exchange rate: %s_per_USD = %s [source: %s; date: %s]\n", fx->currency,
				meter_q_format(fx->per_usd, a, sizeof(a)), fx->source, fx->date);
	}
	fprintf(f, "results:\n");
	fprintf(f, "  tokens per hour: %.4g in + %.4g out; cost %s %s/h; %s %s per 1M tokens (blended)\n",
		pw->in_tokens_per_hour, pw->out_tokens_per_hour, meter_format_micros(pw->cost_micros_per_hour, a, sizeof(a)),
		pw->currency, meter_format_micros(pw->cost_per_1m_tokens_micros, b, sizeof(b)), pw->currency);
	result_line(f, "before the cut:", &pw->before, pw->currency);
	result_line(f, "after the cut:", &pw->after, pw->currency);
	if (!isnan(pw->revenue_cut))
		fprintf(f, "  the cut lowers revenue per hour by %.1f%%; the margin after it is %s\n",
			pw->revenue_cut * 100, pw->after_negative ? "NEGATIVE" : "positive");
	if (!isnan(pw->zero_margin_cut)) {
		if (pw->zero_margin_cut > 0)
			fprintf(f, "  a cut of %.1f%% of the before price takes the margin to zero "
				   "(price x %.3f = cost)\n", pw->zero_margin_cut * 100, 1 - pw->zero_margin_cut);
		else
			fprintf(f, "  the before price is already at or below cost\n");
	}
	result_line(f, "a 90% cut:", &pw->at_90, pw->currency);
	fprintf(f, "  a 90%% cut makes the margin %s\n", pw->negative_at_90 ? "NEGATIVE" : "still positive");
	if (fclose(f) != 0) {
		free(out);
		return NULL;
	}
	return out;
}
