/* thru: see thru.h. */
#include "thru.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *thru_source_name(thru_source_t s)
{
	switch (s) {
	case THRU_GIVEN: return "given";
	case THRU_BENCH: return "bench";
	case THRU_ESTIMATED: return "estimated";
	case THRU_LEDGER: return "ledger";
	}
	return "?";
}

const char *thru_basis_name(thru_source_t s)
{
	switch (s) {
	case THRU_GIVEN: return "given";
	case THRU_BENCH:
	case THRU_LEDGER: return "measured";
	case THRU_ESTIMATED: return "estimate";
	}
	return "?";
}

int thru_from_bench(const thru_bench_t *b, uint32_t batch, thru_t *ret, char *err, size_t errlen)
{
	const thru_run_t *best = NULL;
	for (size_t i = 0; i < b->n_runs; i++) {
		const thru_run_t *x = &b->runs[i];
		if (batch != 0 ? x->batch == batch : (best == NULL || x->decode_tok_s > best->decode_tok_s))
			best = x;
	}
	if (best == NULL) {
		snprintf(err, errlen, "%s: no run at batch %u", b->origin, batch);
		return -ENOENT;
	}
	thru_t t = { .source = b->source == THRU_ESTIMATED ? THRU_ESTIMATED : THRU_BENCH, .phases = true,
		     .decode_tok_s = best->decode_tok_s };
	/* Without a prefill figure, prefill is taken at the decode rate (an
	 * upper bound on its cost: prefill is never slower per token). */
	t.prefill_tok_s = best->prefill_tok_s > 0 ? best->prefill_tok_s : best->decode_tok_s;
	snprintf(t.why, sizeof(t.why), "bench %.120s, %.60s, batch %u: prefill %.1f tok/s, decode %.1f tok/s",
		 b->origin, b->model[0] ? b->model : "model ?", best->batch, t.prefill_tok_s, t.decode_tok_s);
	*ret = t;
	return 0;
}

int thru_tokens_per_hour(const thru_t *t, double in_per_call, double out_per_call, double u, double *ret_in,
			 double *ret_out)
{
	if (!(u > 0 && u <= 1) || !(in_per_call >= 0) || !(out_per_call > 0))
		return -EDOM;
	if (t->phases) {
		if (!(t->decode_tok_s > 0) || (in_per_call > 0 && !(t->prefill_tok_s > 0)))
			return -EDOM;
		double sec = out_per_call / t->decode_tok_s + (in_per_call > 0 ? in_per_call / t->prefill_tok_s : 0);
		double calls = 3600.0 * u / sec;
		*ret_in = calls * in_per_call;
		*ret_out = calls * out_per_call;
		return 0;
	}
	if (!(t->out_tok_s > 0))
		return -EDOM;
	*ret_out = t->out_tok_s * 3600.0 * u;
	*ret_in = *ret_out * in_per_call / out_per_call;
	return 0;
}

void thru_eff_machine_md(thru_eff_t *ret)
{
	*ret = (thru_eff_t){ .flops = 208.9 / 234.8, .bandwidth = 0.68 };
	snprintf(ret->why, sizeof(ret->why),
		 "machine.md 2026-11-28 (this 2-vCPU node): sgemm 208.9/234.8 GFLOP/s; batch-1 decode 69 tok/s "
		 "= 68%% of the bandwidth ceiling");
}

int thru_eff_from_bench(const thru_bench_t *b, const hwprof_t *here, double bytes_per_param, thru_eff_t *ret,
			char *err, size_t errlen)
{
	double peak = meter_q_to_double(here->f[HWPROF_PEAK_FLOPS_FP32].value);
	double bw = meter_q_to_double(here->f[HWPROF_MEM_BANDWIDTH].value);
	if (!here->f[HWPROF_PEAK_FLOPS_FP32].given || !(peak > 0) || !here->f[HWPROF_MEM_BANDWIDTH].given ||
	    !(bw > 0)) {
		snprintf(err, errlen, "%s: peak_flops_fp32 and mem_bandwidth are needed to measure efficiency",
			 here->name);
		return -EINVAL;
	}
	if (b->n_params == 0) {
		snprintf(err, errlen, "%s: model.n_params is needed to measure bandwidth efficiency", b->origin);
		return -EINVAL;
	}
	const thru_run_t *small = NULL;
	/* The model's own best run, not bare sgemm: that is what a model
	 * reaches; machine.sgemm_gflops only when the runs carry no gflops. */
	double best_gflops = 0;
	for (size_t i = 0; i < b->n_runs; i++) {
		if (small == NULL || b->runs[i].batch < small->batch)
			small = &b->runs[i];
		if (b->runs[i].gflops > best_gflops)
			best_gflops = b->runs[i].gflops;
	}
	if (!(best_gflops > 0))
		best_gflops = b->sgemm_gflops;
	if (!(best_gflops > 0)) {
		snprintf(err, errlen, "%s: no gflops figure (machine.sgemm_gflops or runs[].gflops)", b->origin);
		return -EINVAL;
	}
	thru_eff_t e;
	e.flops = best_gflops * 1e9 / peak;
	/* Per decode step every weight is read once whatever the batch. */
	double weights = (double)(b->params_per_token ? b->params_per_token : b->n_params);
	e.bandwidth = small->decode_tok_s / (double)small->batch * weights * bytes_per_param / bw;
	if (e.flops > 1)
		e.flops = 1;
	if (e.bandwidth > 1)
		e.bandwidth = 1;
	snprintf(e.why, sizeof(e.why), "measured here (%.100s on %s): %.1f of %.1f GFLOP/s; batch-%u decode moves "
		 "%.1f of %.1f GB/s", b->origin, here->name, best_gflops, peak / 1e9, small->batch,
		 e.bandwidth * bw / 1e9, bw / 1e9);
	*ret = e;
	return 0;
}

int thru_estimate(const hwprof_t *hw, bool fp16, uint64_t n_params, double bytes_per_param, uint32_t batch,
		  const thru_eff_t *eff, thru_t *ret, char *err, size_t errlen)
{
	enum hwprof_field pf = fp16 ? HWPROF_PEAK_FLOPS_FP16 : HWPROF_PEAK_FLOPS_FP32;
	double F = meter_q_to_double(hw->f[pf].value), BW = meter_q_to_double(hw->f[HWPROF_MEM_BANDWIDTH].value);
	if (!hw->f[pf].given || !(F > 0)) {
		snprintf(err, errlen, "%s: %s is needed for an estimate", hw->name, hwprof_field_key(pf));
		return -EINVAL;
	}
	if (!hw->f[HWPROF_MEM_BANDWIDTH].given || !(BW > 0)) {
		snprintf(err, errlen, "%s: mem_bandwidth is needed for an estimate", hw->name);
		return -EINVAL;
	}
	if (n_params == 0 || batch == 0 || !(bytes_per_param > 0) || !(eff->flops > 0) || !(eff->bandwidth > 0)) {
		snprintf(err, errlen, "estimate: n_params, batch, bytes per parameter and efficiencies must be > 0");
		return -EINVAL;
	}
	double f = F * eff->flops, bw = BW * eff->bandwidth, n = (double)n_params;
	double t_compute = 2.0 * n * batch / f, t_memory = n * bytes_per_param / bw;
	thru_t t = { .source = THRU_ESTIMATED, .phases = true };
	t.prefill_tok_s = f / (2.0 * n);
	t.decode_tok_s = batch / (t_compute > t_memory ? t_compute : t_memory);
	snprintf(t.why, sizeof(t.why), "roofline on %.40s (%s peak %.3g FLOP/s x %.2f, %.3g B/s x %.2f), %.3g params x "
		 "%.2g B, batch %u; efficiency from %.250s", hw->name, fp16 ? "fp16" : "fp32", F, eff->flops, BW,
		 eff->bandwidth, n, bytes_per_param, batch, eff->why);
	*ret = t;
	return 0;
}
