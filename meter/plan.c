/* plan: see plan.h. */
#include "plan.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

void plan_fit(const shape_t *m, uint64_t memory_bytes, uint64_t in, uint64_t out, plan_fit_t *ret)
{
	plan_fit_t f = { .memory_bytes = memory_bytes, .weight_bytes = m->weight_bytes, .ctx = in + out };
	if (m->sliding_window > 0 && f.ctx > m->sliding_window)
		f.ctx = m->sliding_window;
	f.kv_bytes_per_seq = shape_kv_bytes_per_seq(m, f.ctx);
	if (memory_bytes > f.weight_bytes && f.kv_bytes_per_seq > 0)
		f.max_batch = (memory_bytes - f.weight_bytes) / f.kv_bytes_per_seq;
	*ret = f;
}

int plan_fit_profile(const shape_t *m, const hwprof_t *hw, uint64_t in, uint64_t out, plan_fit_t *ret,
		     char *err, size_t errlen)
{
	const hwprof_num_t *mem = &hw->f[HWPROF_MEMORY_BYTES];
	double bytes = meter_q_to_double(mem->value);
	if (!mem->given || !(bytes >= 1) || bytes > 1e18) {
		snprintf(err, errlen, "%s: no memory_bytes in the profile (%s): add the node's accelerator memory "
			 "with memory_bytes_source and memory_bytes_date", hw->name, hw->origin);
		return -EINVAL;
	}
	plan_fit(m, (uint64_t)bytes, in, out, ret);
	return 0;
}

/* Decimal gigabytes, the unit memory is sold in ("80 GB"). */
static char *gb(double bytes, char *buf, size_t len)
{
	snprintf(buf, len, bytes < 10e9 ? "%.3f GB" : "%.1f GB", bytes / 1e9);
	return buf;
}

int plan_fit_check(const plan_fit_t *f, uint64_t batch, const char *where, char *err, size_t errlen)
{
	double kv = (double)batch * (double)f->kv_bytes_per_seq, total = (double)f->weight_bytes + kv;
	if (batch >= 1 && total <= (double)f->memory_bytes)
		return 0;
	char w[32], k[32], s[32], t[32], m[32];
	if (f->kv_bytes_per_seq == 0) {	/* a bare parameter count: no shape, no KV */
		snprintf(err, errlen, "batch %llu does not fit %s: weights %s > memory %s (the weights alone; the KV "
			 "cache not even counted)", (unsigned long long)batch, where,
			 gb((double)f->weight_bytes, w, sizeof(w)), gb((double)f->memory_bytes, m, sizeof(m)));
		return -ENOSPC;
	}
	snprintf(err, errlen, "batch %llu does not fit %s: weights %s + KV cache %s (%llu x %s at %llu tokens, f16) "
		 "= %s > memory %s%s", (unsigned long long)batch, where, gb((double)f->weight_bytes, w, sizeof(w)),
		 gb(kv, k, sizeof(k)), (unsigned long long)batch, gb((double)f->kv_bytes_per_seq, s, sizeof(s)),
		 (unsigned long long)f->ctx, gb(total, t, sizeof(t)), gb((double)f->memory_bytes, m, sizeof(m)),
		 f->weight_bytes >= f->memory_bytes ? " (the weights alone do not fit)" : "");
	return -ENOSPC;
}

bool plan_has_fp16_peak(const hwprof_t *hw)
{
	const hwprof_num_t *p16 = &hw->f[HWPROF_PEAK_FLOPS_FP16];
	return p16->given && meter_q_to_double(p16->value) > 0;
}

int plan_estimate(const shape_t *m, const hwprof_t *hw, uint64_t batch, double in, double out,
		  const thru_eff_t *eff, thru_t *ret, bool *ret_fp16, char *err, size_t errlen)
{
	if (batch == 0 || batch > UINT32_MAX || !(out > 0) || !(in >= 0) || m->n_params == 0) {
		snprintf(err, errlen, "estimate: batch, output tokens and parameters must be > 0");
		return -EINVAL;
	}
	/* A decode step at the mean context of a request's decode. */
	double ctx = in + out / 2;
	if (m->sliding_window > 0 && ctx > m->sliding_window)
		ctx = m->sliding_window;
	double n_eff = (double)m->n_params_per_token + shape_attn_flops(m, ctx) / 2;
	double weights = (double)m->weight_bytes * (double)m->n_params_per_token / (double)m->n_params;
	double kv = (double)batch * (double)shape_kv_bytes_per_token(m) * ctx;
	/* thru_estimate's roofline: compute 2 n batch / F, memory n bpp / BW.
	 * With n = n_eff and bpp = (weights + KV) / n_eff the memory term is
	 * the bytes a step really reads. */
	const hwprof_num_t *p16 = &hw->f[HWPROF_PEAK_FLOPS_FP16], *p32 = &hw->f[HWPROF_PEAK_FLOPS_FP32];
	bool fp16 = m->fp16_compute && plan_has_fp16_peak(hw);
	if (!p16->given && !p32->given) {
		snprintf(err, errlen, "%s: no peak_flops_fp16 or peak_flops_fp32 in %s: an estimate needs a peak and "
			 "mem_bandwidth (or measure: margin-worker bench --json on that hardware)", hw->name, hw->origin);
		return -EINVAL;
	}
	thru_t t;
	int r = thru_estimate(hw, fp16, (uint64_t)llround(n_eff), (weights + kv) / n_eff, (uint32_t)batch, eff, &t,
			      err, errlen);
	if (r < 0)
		return r;
	enum hwprof_field pf = fp16 ? HWPROF_PEAK_FLOPS_FP16 : HWPROF_PEAK_FLOPS_FP32;
	snprintf(t.why, sizeof(t.why),
		 "estimate (roofline x efficiency measured here), upper bound: %s peak %.4g FLOP/s x %.2f (%s), "
		 "%.4g B/s x %.2f; batch %llu, a step reads %.3g B of weights + %.3g B of KV at %.0f tokens; "
		 "efficiency: %.150s", fp16 ? "fp16" : "fp32", meter_q_to_double(hw->f[pf].value), eff->flops,
		 fp16 ? "16-bit or quantized weights" : m->fp16_compute ? "the profile has no fp16 peak" : "f32 weights",
		 meter_q_to_double(hw->f[HWPROF_MEM_BANDWIDTH].value), eff->bandwidth, (unsigned long long)batch,
		 weights, kv, ctx, eff->why);
	*ret = t;
	*ret_fp16 = fp16;
	return 0;
}

int plan_workload_check(const plan_workload_t *w, char *err, size_t errlen)
{
	if (!(w->out_tokens_per_day > 0) || !isfinite(w->out_tokens_per_day)) {
		snprintf(err, errlen, "output tokens per day: expected a positive number");
		return -EINVAL;
	}
	if (!(w->out_per_req >= 1) || !(w->in_per_req >= 0) || !isfinite(w->in_per_req + w->out_per_req)) {
		snprintf(err, errlen, "mix: expected IN/OUT tokens per request, OUT >= 1");
		return -EINVAL;
	}
	if (!(w->deadline_hours > 0) || w->deadline_hours > 24) {
		snprintf(err, errlen, "deadline: expected 0 < D <= 24h (a day's work done within D; a longer "
			 "deadline still needs a day's work done every day)");
		return -EINVAL;
	}
	return 0;
}

/* factor: amounts in `from` times factor are amounts in `to`. */
static int fx(const plan_in_t *in, const char *from, double *ret, char *err, size_t errlen)
{
	if (strcmp(from, in->currency) == 0) {
		*ret = 1;
		return 0;
	}
	meter_q_t q;
	if (in->prices == NULL) {
		snprintf(err, errlen, "no exchange rate %s -> %s (load fx.conf)", from, in->currency);
		return -ENOENT;
	}
	int r = pricetab_fx_factor(in->prices, from, in->currency, &q, err, errlen);
	if (r < 0)
		return r;
	*ret = meter_q_to_double(q);
	return 0;
}

static int plan_ref(const plan_in_t *in, const plan_row_t *row, const pricetab_entry_t *e, plan_ref_t *ret,
		    char *err, size_t errlen)
{
	const plan_workload_t *w = in->work;
	meter_q_t qin, qout;
	double f;
	int r = pricetab_prices(e, (uint64_t)llround(w->in_per_req), false, &qin, &qout);
	if (r < 0) {
		snprintf(err, errlen, "price %s: no price for %.0f prompt tokens", e->name, w->in_per_req);
		return r;
	}
	if ((r = fx(in, e->currency, &f, err, errlen)) < 0)
		return r;
	plan_ref_t p;
	memset(&p, 0, sizeof(p));
	snprintf(p.name, sizeof(p.name), "%s", e->name);
	snprintf(p.model, sizeof(p.model), "%s", e->model[0] ? e->model : e->name);
	double pin = meter_q_to_double(qin) * f, pout = meter_q_to_double(qout) * f;	/* micros per token */
	p.api_per_day_micros = row->in_tokens_per_day * pin + w->out_tokens_per_day * pout;
	p.ratio = row->cost_per_day_micros > 0 ? p.api_per_day_micros / row->cost_per_day_micros : INFINITY;
	p.api_per_out_token_micros = w->in_per_req / w->out_per_req * pin + pout;
	/* One node: fixed idle cost a day, and the power above idle that an
	 * output token (with its input) adds. */
	double sec_per_out = row->node_seconds_per_day / w->out_tokens_per_day;
	double fixed = (double)row->rate_idle_micros_per_hour * 24;
	double extra = (double)(row->rate_busy_micros_per_hour - row->rate_idle_micros_per_hour) / 3600 * sec_per_out;
	double margin = p.api_per_out_token_micros - extra;
	p.breakeven_out_tokens_per_day = margin > 0 ? fixed / margin : INFINITY;
	p.reachable = p.breakeven_out_tokens_per_day <= w->deadline_hours * 3600 / sec_per_out;
	p.saving_per_day_micros = p.api_per_day_micros - row->cost_per_day_micros;
	if (in->one_off_micros <= 0)
		p.days_to_recover = NAN;
	else
		p.days_to_recover = p.saving_per_day_micros > 0 ? (double)in->one_off_micros / p.saving_per_day_micros
								 : INFINITY;
	*ret = p;
	return 0;
}

int plan_capacity(const plan_in_t *in, const hwprof_t *hw, plan_row_t *row, char *err, size_t errlen)
{
	const plan_workload_t *w = in->work;
	const thru_t *t = &row->speed;
	double in_h, out_h, f;
	int r;
	if ((r = plan_workload_check(w, err, errlen)) < 0)
		return r;
	if ((r = thru_tokens_per_hour(t, w->in_per_req, w->out_per_req, 1.0, &in_h, &out_h)) < 0) {
		snprintf(err, errlen, "%s: no usable throughput (%s)", hw->name, t->why);
		return r;
	}
	if ((r = fx(in, hw->currency, &f, err, errlen)) < 0)
		return r;
	row->rate_busy_micros_per_hour = llround((double)hw->rate_busy_micros_per_hour * f);
	row->rate_idle_micros_per_hour = llround((double)hw->rate_idle_micros_per_hour * f);
	row->requests_per_day = w->out_tokens_per_day / w->out_per_req;
	row->in_tokens_per_day = row->requests_per_day * w->in_per_req;
	row->node_seconds_per_day = w->out_tokens_per_day / out_h * 3600;
	double x = row->node_seconds_per_day / (w->deadline_hours * 3600);
	row->nodes = (uint64_t)ceil(x * (1 - 1e-12));	/* 2.0000000000001 nodes of float noise are 2 */
	if (row->nodes == 0)
		row->nodes = 1;
	row->utilization = x / (double)row->nodes;
	row->busy_hours_per_node = row->node_seconds_per_day / 3600 / (double)row->nodes;

	double rb = (double)row->rate_busy_micros_per_hour, ri = (double)row->rate_idle_micros_per_hour;
	if (t->phases) {
		row->marginal_out_per_1m = rb / (3600 * t->decode_tok_s) * 1e6;
		row->marginal_in_per_1m = w->in_per_req > 0 ? rb / (3600 * t->prefill_tok_s) * 1e6 : 0;
	} else {	/* a figure at the mix: the output tokens carry the node time */
		row->marginal_out_per_1m = rb / (3600 * t->out_tok_s) * 1e6;
		row->marginal_in_per_1m = 0;
	}
	double busy_cost = row->node_seconds_per_day / 3600 * rb;
	row->cost_per_day_micros = (double)row->nodes * (row->busy_hours_per_node * rb +
							(24 - row->busy_hours_per_node) * ri);
	double load = busy_cost > 0 ? row->cost_per_day_micros / busy_cost : 1;
	row->loaded_in_per_1m = row->marginal_in_per_1m * load;
	row->loaded_out_per_1m = row->marginal_out_per_1m * load;
	row->cost_per_month_micros = row->cost_per_day_micros * PLAN_DAYS_PER_MONTH;
	row->n_refs = 0;
	for (size_t i = 0; i < in->n_refs && i < PLAN_MAX_REFS; i++) {
		if ((r = plan_ref(in, row, in->refs[i], &row->refs[i], err, errlen)) < 0)
			return r;
		row->n_refs = i + 1;
	}
	return 0;
}

int plan_bench_speed(const thru_bench_t *b, uint64_t max_batch, thru_t *ret, uint64_t *ret_batch, char *err,
		     size_t errlen)
{
	const thru_run_t *at = NULL, *least = NULL;
	for (size_t i = 0; i < b->n_runs; i++) {
		const thru_run_t *x = &b->runs[i];
		if (x->batch <= max_batch && (at == NULL || x->batch > at->batch))
			at = x;
		if (least == NULL || x->batch < least->batch)
			least = x;
	}
	if (at == NULL) {
		snprintf(err, errlen, "%s has no run at a batch that fits (%llu sequences; its smallest is %u)", b->origin,
			 (unsigned long long)max_batch, least ? least->batch : 0);
		return -ENOENT;
	}
	*ret_batch = at->batch;
	return thru_from_bench(b, at->batch, ret, err, errlen);
}

int plan_profile(const plan_in_t *in, const hwprof_t *hw, const thru_bench_t *bench, plan_row_t *ret, char *err,
		 size_t errlen)
{
	const plan_workload_t *w = in->work;
	int r;
	plan_row_t row;
	memset(&row, 0, sizeof(row));
	snprintf(row.profile, sizeof(row.profile), "%s", hw->name);
	row.accelerators = hw->accelerators;
	if ((r = plan_workload_check(w, err, errlen)) < 0)
		return r;
	if ((r = plan_fit_profile(in->model, hw, (uint64_t)llround(w->in_per_req), (uint64_t)llround(w->out_per_req),
				  &row.fit, err, errlen)) < 0)
		return r;
	if (row.fit.max_batch == 0) {
		char where[160];
		snprintf(where, sizeof(where), "on %s", hw->name);
		return plan_fit_check(&row.fit, 1, where, err, errlen);
	}
	char aside[400] = "";
	if (bench != NULL && plan_bench_speed(bench, row.fit.max_batch, &row.speed, &row.batch, aside,
					      sizeof(aside)) == 0) {
		snprintf(row.basis, sizeof(row.basis), "measured (bench %.160s, batch %llu)", bench->origin,
			 (unsigned long long)row.batch);
		char tw[sizeof(row.speed.why)];
		snprintf(tw, sizeof(tw), "%s", row.speed.why);
		snprintf(row.speed.why, sizeof(row.speed.why), "measured: %.300s (the largest batch measured <= the %llu "
			 "that fit)", tw, (unsigned long long)row.fit.max_batch);
	} else {
		row.batch = row.fit.max_batch < UINT32_MAX ? row.fit.max_batch : UINT32_MAX;
		if ((r = plan_estimate(in->model, hw, row.batch, w->in_per_req, w->out_per_req, in->eff, &row.speed,
				       &row.fp16, err, errlen)) < 0)
			return r;
		snprintf(row.basis, sizeof(row.basis), "%s", PLAN_BASIS_ESTIMATE);
		if (aside[0] != '\0') {	/* a bench of the shape, every run too large */
			size_t l = strlen(row.speed.why);
			snprintf(row.speed.why + l, sizeof(row.speed.why) - l, " [bench set aside: %.200s]", aside);
		}
	}
	if ((r = plan_capacity(in, hw, &row, err, errlen)) < 0)
		return r;
	*ret = row;
	return 0;
}
