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

/* Optional number: 0 when absent; -EINVAL when present but not a number. */
static int opt_num(const json_t *o, const char *field, double *ret, const char *name, const char *where, char *err,
		   size_t errlen)
{
	const json_t *j = json_object_get(o, field);
	*ret = 0;
	if (j == NULL || json_is_null(j))
		return 0;
	if (!json_is_number(j) || !isfinite(json_number_value(j)) || json_number_value(j) < 0) {
		snprintf(err, errlen, "%s: %s.%s: expected a non-negative number", name, where, field);
		return -EINVAL;
	}
	*ret = json_number_value(j);
	return 0;
}

int thru_bench_parse(const char *name, const char *text, size_t len, thru_bench_t *ret, char *err, size_t errlen)
{
	json_error_t je;
	json_t *root = json_loadb(text, len, 0, &je);
	thru_bench_t *b = calloc(1, sizeof(*b));
	double v;
	int r = -EINVAL;
	if (b == NULL) {
		json_decref(root);
		return -ENOMEM;
	}
	if (root == NULL) {
		snprintf(err, errlen, "%s:%d:%d: %s", name, je.line, je.column, je.text);
		r = -EBADMSG;
		goto fail;
	}
	snprintf(b->origin, sizeof(b->origin), "%s", name);
	b->source = THRU_BENCH;
	if (!json_is_object(root)) {
		snprintf(err, errlen, "%s: expected a JSON object (margin-worker bench --json)", name);
		goto fail;
	}
	const json_t *hwj = json_object_get(root, "hardware");
	if (hwj != NULL && !json_is_null(hwj)) {
		if (!json_is_string(hwj) || json_string_length(hwj) >= sizeof(b->hardware)) {
			snprintf(err, errlen, "%s: hardware: expected a profile name (a string of at most %zu characters)",
				 name, sizeof(b->hardware) - 1);
			goto fail;
		}
		if (strcmp(json_string_value(hwj), "unknown") != 0)
			snprintf(b->hardware, sizeof(b->hardware), "%s", json_string_value(hwj));
	}
	const json_t *m = json_object_get(root, "machine");
	if (json_is_object(m)) {
		if ((r = opt_num(m, "sgemm_gflops", &b->sgemm_gflops, name, "machine", err, errlen)) < 0 ||
		    (r = opt_num(m, "bandwidth_gbs", &b->bandwidth_gbs, name, "machine", err, errlen)) < 0 ||
		    (r = opt_num(m, "threads", &v, name, "machine", err, errlen)) < 0)
			goto fail;
		b->threads = (uint32_t)v;
	}
	const json_t *mo = json_object_get(root, "model");
	if (json_is_object(mo)) {
		const json_t *s = json_object_get(mo, "name");
		if (!json_is_string(s))
			s = json_object_get(mo, "arch");
		if (json_is_string(s))
			snprintf(b->model, sizeof(b->model), "%s", json_string_value(s));
		if ((r = opt_num(mo, "n_params", &v, name, "model", err, errlen)) < 0)
			goto fail;
		b->n_params = (uint64_t)v;
		if ((r = opt_num(mo, "params_per_token", &v, name, "model", err, errlen)) < 0)
			goto fail;
		b->params_per_token = (uint64_t)v;
	}
	const json_t *runs = json_object_get(root, "runs");
	r = -EINVAL;
	if (!json_is_array(runs) || json_array_size(runs) == 0) {
		snprintf(err, errlen, "%s: runs: expected a non-empty array", name);
		goto fail;
	}
	if (json_array_size(runs) > THRU_MAX_RUNS) {
		snprintf(err, errlen, "%s: runs: more than %d", name, THRU_MAX_RUNS);
		goto fail;
	}
	size_t i;
	const json_t *run;
	json_array_foreach(runs, i, run) {
		char where[32];
		thru_run_t *x = &b->runs[i];
		snprintf(where, sizeof(where), "runs[%zu]", i);
		if (!json_is_object(run)) {
			snprintf(err, errlen, "%s: %s: expected an object", name, where);
			goto fail;
		}
		if ((r = opt_num(run, "batch", &v, name, where, err, errlen)) < 0 ||
		    (r = opt_num(run, "prefill_tok_s", &x->prefill_tok_s, name, where, err, errlen)) < 0 ||
		    (r = opt_num(run, "decode_tok_s", &x->decode_tok_s, name, where, err, errlen)) < 0 ||
		    (r = opt_num(run, "gflops", &x->gflops, name, where, err, errlen)) < 0 ||
		    (r = opt_num(run, "roofline_pct", &x->roofline_pct, name, where, err, errlen)) < 0 ||
		    (r = opt_num(run, "bandwidth_pct", &x->bandwidth_pct, name, where, err, errlen)) < 0 ||
		    (r = opt_num(run, "peak_rss_mb", &x->peak_rss_mb, name, where, err, errlen)) < 0)
			goto fail;
		r = -EINVAL;
		if (v < 1 || v > UINT32_MAX) {
			snprintf(err, errlen, "%s: %s.batch: missing or not a positive integer", name, where);
			goto fail;
		}
		x->batch = (uint32_t)v;
		if (!(x->decode_tok_s > 0)) {
			snprintf(err, errlen, "%s: %s.decode_tok_s: missing or zero", name, where);
			goto fail;
		}
		b->n_runs = i + 1;
	}
	*ret = *b;
	r = 0;
fail:
	free(b);
	json_decref(root);
	return r;
}

int thru_bench_load(const char *path, thru_bench_t *ret, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		int e = errno;
		snprintf(err, errlen, "%s: %s", path, strerror(e));
		return -e;
	}
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int r = 0;
	for (;;) {
		if (len + 4096 > cap) {
			if (cap > 64u * 1024 * 1024) {
				snprintf(err, errlen, "%s: too large for a bench output", path);
				r = -EFBIG;
				goto out;
			}
			char *nb = realloc(buf, cap ? cap * 2 : 8192);
			if (nb == NULL) {
				r = -ENOMEM;
				goto out;
			}
			buf = nb;
			cap = cap ? cap * 2 : 8192;
		}
		size_t n = fread(buf + len, 1, cap - len, f);
		len += n;
		if (n == 0)
			break;
	}
	r = thru_bench_parse(path, buf ? buf : "", len, ret, err, errlen);
out:
	free(buf);
	fclose(f);
	return r;
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
