/* speed: see speed.h. */
#include "speed.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool within(double a, double b, double tol)
{
	return a > 0 && b > 0 && fabs(a - b) <= tol * (a > b ? a : b);
}

void speed_shape_from_bench(const thru_bench_t *b, speed_shape_t *ret)
{
	memset(ret, 0, sizeof(*ret));
	snprintf(ret->model, sizeof(ret->model), "%s", b->model);
	ret->n_params = b->n_params;
	ret->params_per_token = b->params_per_token;
}

int speed_shape_from_rows(const ledger_row_t *rows, size_t n, speed_shape_t *ret, char *err, size_t errlen)
{
	memset(ret, 0, sizeof(*ret));
	double flops = 0, tokens = 0;
	for (size_t i = 0; i < n; i++) {
		if (i > 0 && strcmp(rows[i].model, rows[0].model) != 0) {
			snprintf(err, errlen, "the calls are of several models (%.60s, %.60s): a what-if needs one model's "
				 "calls (one batch, or --group by model)", rows[0].model, rows[i].model);
			return -EINVAL;
		}
		if (rows[i].flops > 0) {
			flops += (double)rows[i].flops;
			tokens += (double)(rows[i].prompt_tokens + rows[i].completion_tokens);
		}
	}
	if (n > 0)
		snprintf(ret->model, sizeof(ret->model), "%s", rows[0].model);
	if (!(flops > 0 && tokens > 0)) {
		snprintf(err, errlen, "no call of %.60s states its FLOPs and tokens: the model's shape is unknown",
			 n > 0 ? rows[0].model : "the batch");
		return -EINVAL;
	}
	ret->params_per_token = (uint64_t)llround(flops / (2.0 * tokens));
	ret->from_flops = true;
	return 0;
}

bool speed_shape_match(const speed_shape_t *s, const thru_bench_t *b)
{
	bool names = s->model[0] != '\0' && strcmp(s->model, b->model) == 0;
	uint64_t bppt = b->params_per_token ? b->params_per_token : b->n_params;
	if (s->from_flops)
		return names || within((double)s->params_per_token, (double)bppt, SPEED_SHAPE_TOLERANCE);
	if (s->params_per_token > 0 && b->params_per_token > 0) {
		if (s->n_params > 0 && b->n_params > 0 &&
		    !within((double)s->n_params, (double)b->n_params, SPEED_SHAPE_TOLERANCE))
			return false;
		return within((double)s->params_per_token, (double)b->params_per_token, SPEED_SHAPE_TOLERANCE);
	}
	if (s->n_params > 0 && b->n_params > 0)
		return within((double)s->n_params, (double)b->n_params, SPEED_SHAPE_TOLERANCE);
	return names;
}

char *speed_shape_describe(const speed_shape_t *s, char *buf, size_t len)
{
	if (s->params_per_token > 0)
		snprintf(buf, len, "%.60s (%.3g params per token%s)", s->model[0] ? s->model : "model",
			 (double)s->params_per_token, s->from_flops ? ", from the ledger's FLOPs / (2 x tokens)" : "");
	else
		snprintf(buf, len, "%.60s (%.3g params)", s->model[0] ? s->model : "model", (double)s->n_params);
	return buf;
}

bool speed_bench_on(const thru_bench_t *b, const hwprof_t *hw, char *why, size_t whylen)
{
	if (b->hardware[0] != '\0') {
		bool same = strcmp(b->hardware, hw->name) == 0;
		snprintf(why, whylen, "%.100s was measured on %.60s (its \"hardware\")", b->origin, b->hardware);
		return same;
	}
	double peak = meter_q_to_double(hw->f[HWPROF_PEAK_FLOPS_FP32].value);
	if (!(b->sgemm_gflops > 0) || !hw->f[HWPROF_PEAK_FLOPS_FP32].given || !(peak > 0)) {
		snprintf(why, whylen, "%.100s does not say where it was measured: taken as %.60s", b->origin, hw->name);
		return true;
	}
	double g = b->sgemm_gflops * 1e9;
	bool same = g <= peak * 1.05 && g >= peak / 10;
	snprintf(why, whylen, "%.100s (sgemm %.1f GFLOP/s) %s %.60s (fp32 peak %.4g GFLOP/s)", b->origin,
		 b->sgemm_gflops, same ? "was measured on" : "was not measured on", hw->name, peak / 1e9);
	return same;
}

void speed_shape_from_model(const shape_t *m, speed_shape_t *ret)
{
	memset(ret, 0, sizeof(*ret));
	snprintf(ret->model, sizeof(ret->model), "%s", m->name);
	ret->n_params = m->n_params;
	ret->params_per_token = m->n_params_per_token;
}

int speed_attached_bench(const hwprof_t *hw, const speed_shape_t *shape, thru_bench_t *ret, char *err,
			 size_t errlen)
{
	for (size_t i = 0; i < hw->n_bench; i++) {
		char e2[512];
		if (thru_bench_load(hw->bench[i], ret, e2, sizeof(e2)) < 0) {
			snprintf(err, errlen, "%s: bench: %s", hw->origin, e2);
			return -EINVAL;
		}
		if (speed_shape_match(shape, ret))
			return 1;
	}
	return 0;
}

int speed_model_shape(const speed_shape_t *s, const hwprof_t *hw, shape_t *ret, char *why, size_t whylen)
{
	char e[512];
	if (s->model[0] == '\0' || shape_preset(s->model, plan_has_fp16_peak(hw) ? "f16" : "f32", ret, e, sizeof(e)) < 0) {
		snprintf(why, whylen, "%.60s is not a preset shape, so its KV cache cannot be sized (presets: "
			 "marginctl plan --help)", s->model[0] ? s->model : "the model");
		return 0;
	}
	if ((s->params_per_token > 0 && !within((double)s->params_per_token, (double)ret->n_params_per_token,
						SPEED_SHAPE_TOLERANCE)) ||
	    (s->n_params > 0 && !s->from_flops && !within((double)s->n_params, (double)ret->n_params,
							  SPEED_SHAPE_TOLERANCE))) {
		snprintf(why, whylen, "%.60s: the preset of that name has %.4g params per token, the model %.4g: "
			 "not its shape", s->model, (double)ret->n_params_per_token,
			 (double)(s->params_per_token ? s->params_per_token : s->n_params));
		return 0;
	}
	return 1;
}

/* The memory check of an estimate at batch (0: the default, capped) and
 * the call mix in + out (out <= 0: weights only). *batch becomes the
 * batch to estimate at; mem->why says what was checked. */
static int check_memory(const hwprof_t *hw, const speed_shape_t *shape, uint32_t *batch, double in, double out,
			speed_mem_t *mem, char *err, size_t errlen)
{
	shape_t m;
	char why[256], where[96], gw[32], gm[32];
	uint32_t b = *batch ? *batch : SPEED_DEFAULT_BATCH;
	const char *how = *batch ? "asked for" : "the default";
	memset(mem, 0, sizeof(*mem));
	mem->batch = b;
	snprintf(where, sizeof(where), "on %.60s", hw->name);
	if (!speed_model_shape(shape, hw, &m, why, sizeof(why))) {
		snprintf(mem->why, sizeof(mem->why), "decode batch %u (%s), memory not checked: %s", b, how, why);
		return 0;
	}
	plan_fit_t f;
	int r = plan_fit_profile(&m, hw, out > 0 ? (uint64_t)llround(in) : 0, out > 0 ? (uint64_t)llround(out) : 1, &f,
				 why, sizeof(why));
	if (r < 0) {
		snprintf(mem->why, sizeof(mem->why), "decode batch %u (%s), memory not checked: %s", b, how, why);
		return 0;
	}
	if (f.max_batch == 0) {	/* the weights (and one sequence) do not fit */
		plan_fit_check(&f, 1, where, err, errlen);
		return -ENOSPC;
	}
	snprintf(gw, sizeof(gw), "%.1f GB", (double)f.weight_bytes / 1e9);
	snprintf(gm, sizeof(gm), "%.1f GB", (double)f.memory_bytes / 1e9);
	if (!(out > 0)) {
		snprintf(mem->why, sizeof(mem->why), "decode batch %u (%s): %s weights (%s) fit memory %s; the KV cache "
			 "not checked (no call mix)", b, how, gw, m.dtype, gm);
		return 0;
	}
	if (*batch != 0 && (r = plan_fit_check(&f, b, where, err, errlen)) < 0)
		return r;
	if (*batch == 0 && b > f.max_batch) {
		b = (uint32_t)f.max_batch;
		how = "the largest that fits, below the default";
	}
	mem->checked = true;
	mem->fit = f;
	mem->batch = b;
	*batch = b;
	snprintf(mem->why, sizeof(mem->why), "decode batch %u (%s): %s of %s weights + %u x %.3f GB of KV at %llu tokens "
		 "fit memory %s (at most %llu sequences)", b, how, gw, m.dtype, b, (double)f.kv_bytes_per_seq / 1e9,
		 (unsigned long long)f.ctx, gm, (unsigned long long)f.max_batch);
	return 0;
}

static int estimate(const hwprof_t *hw, const speed_shape_t *shape, uint32_t batch, double in, double out,
		    const thru_eff_t *eff, thru_t *ret, speed_mem_t *mem, char *err, size_t errlen)
{
	thru_eff_t md;
	if (eff == NULL) {
		thru_eff_machine_md(&md);
		eff = &md;
	}
	uint64_t w = shape->params_per_token ? shape->params_per_token : shape->n_params;
	if (w == 0) {
		snprintf(err, errlen, "%.60s: the model's size is unknown: no estimate", shape->model);
		return -EINVAL;
	}
	int r = check_memory(hw, shape, &batch, in, out, mem, err, errlen);
	if (r < 0)
		return r;
	bool fp16 = plan_has_fp16_peak(hw);	/* fp16 and 2 bytes per weight, else fp32 and 4 */
	return thru_estimate(hw, fp16, w, fp16 ? 2.0 : 4.0, mem->batch, eff, ret, err, errlen);
}

int speed_target_thru(const hwprof_t *hw, const speed_shape_t *shape, const thru_bench_t *bench, uint32_t batch,
		      double in, double out, const thru_eff_t *eff, thru_t *ret, speed_mem_t *mem, char *err,
		      size_t errlen)
{
	speed_mem_t m0;
	if (mem == NULL)
		mem = &m0;
	memset(mem, 0, sizeof(*mem));
	if (bench != NULL)
		return thru_from_bench(bench, batch, ret, err, errlen);
	thru_bench_t *b = malloc(sizeof(*b));
	if (b == NULL)
		return -ENOMEM;
	int r = speed_attached_bench(hw, shape, b, err, errlen);
	if (r > 0)
		r = thru_from_bench(b, batch, ret, err, errlen);
	else if (r == 0)
		r = estimate(hw, shape, batch, in, out, eff, ret, mem, err, errlen);
	free(b);
	return r;
}

int speed_target_bench(const hwprof_t *hw, const thru_bench_t *b, const thru_eff_t *eff, thru_bench_t *ret,
		       char *err, size_t errlen)
{
	speed_shape_t shape;
	speed_shape_from_bench(b, &shape);
	int r = speed_attached_bench(hw, &shape, ret, err, errlen);
	if (r != 0)
		return r < 0 ? r : 0;
	thru_bench_t *e = calloc(1, sizeof(*e));
	if (e == NULL)
		return -ENOMEM;
	snprintf(e->hardware, sizeof(e->hardware), "%s", hw->name);
	snprintf(e->model, sizeof(e->model), "%s", b->model);
	e->n_params = b->n_params;
	e->params_per_token = b->params_per_token;
	e->source = THRU_ESTIMATED;
	snprintf(e->origin, sizeof(e->origin), "estimate for %.60s", hw->name);
	for (size_t i = 0; i < b->n_runs && r == 0; i++) {
		thru_t t;
		speed_mem_t mem;
		if ((r = estimate(hw, &shape, b->runs[i].batch, 0, 0, eff, &t, &mem, err, errlen)) < 0)
			break;
		e->runs[i] = (thru_run_t){ .batch = b->runs[i].batch, .prefill_tok_s = t.prefill_tok_s,
					   .decode_tok_s = t.decode_tok_s };
		e->n_runs = i + 1;
	}
	if (r == 0)
		*ret = *e;
	free(e);
	return r;
}

/* ratio rounded to 6 significant digits, as an exact rational, and 1 / it. */
static int ratio_q(double ratio, meter_q_t *ret_scale)
{
	if (!(ratio > 0) || !isfinite(ratio))
		return -EDOM;
	int e = (int)floor(log10(ratio));
	int64_t m = llround(ratio * pow(10, 5 - e));
	meter_q_t q;
	if (e >= 5) {
		if (e - 5 > 12)
			return -ERANGE;
		q = METER_Q(m * (int64_t)llround(pow(10, e - 5)), 1);
	} else {
		if (5 - e > 17)
			return -ERANGE;
		int r = meter_q_div(METER_Q(m, 1), METER_Q((int64_t)llround(pow(10, 5 - e)), 1), &q);
		if (r < 0)
			return r;
	}
	return meter_q_div(METER_Q(1, 1), q, ret_scale);
}

int speed_whatif(const ledger_row_t *rows, size_t n, const hwprof_t *target, const thru_bench_t *bench,
		 uint32_t batch, const thru_eff_t *eff, speed_whatif_t *ret, char *err, size_t errlen)
{
	speed_whatif_t *w = calloc(1, sizeof(*w));
	double prompt = 0, compl = 0, busy = 0;
	int r;
	if (w == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		prompt += (double)rows[i].prompt_tokens;
		compl += (double)rows[i].completion_tokens;
		busy += (double)rows[i].busy_ns;
	}
	if (n == 0 || !(busy > 0) || !(prompt + compl > 0)) {
		snprintf(err, errlen, "no calls with engine time and tokens: no speed to compare with %s", target->name);
		r = -EINVAL;
		goto out;
	}
	w->in_per_call = prompt / (double)n;
	w->out_per_call = compl / (double)n;
	w->booked_s_per_call = busy / 1e9 / (double)n;
	bool same = bench == NULL;
	for (size_t i = 0; same && i < n; i++)
		same = strcmp(rows[i].hardware_profile, target->name) == 0;
	if (same) {
		/* The hardware the calls ran on: its speed is the ledger's. */
		snprintf(w->shape.model, sizeof(w->shape.model), "%s", rows[0].model);
		w->target = (thru_t){ .source = THRU_LEDGER, .out_tok_s = compl / (busy / 1e9) };
		snprintf(w->target.why, sizeof(w->target.why), "measured by the ledger: %zu calls on %.60s", n,
			 target->name);
		w->target_s_per_call = w->booked_s_per_call;
		w->time_scale = METER_Q(1, 1);
		w->ratio = 1;
		w->basis = "measured";
		snprintf(w->why, sizeof(w->why), "the calls ran on %.60s: its speed is the ledger's (%.4g s of engine time "
			 "per call)", target->name, w->booked_s_per_call);
		*ret = *w;
		r = 0;
		goto out;
	}
	if ((r = speed_shape_from_rows(rows, n, &w->shape, err, errlen)) < 0)
		goto out;
	if ((r = speed_target_thru(target, &w->shape, bench, batch, w->in_per_call, w->out_per_call, eff, &w->target,
				   &w->mem, err, errlen)) < 0)
		goto out;
	if (w->target.phases)
		w->target_s_per_call = w->in_per_call / w->target.prefill_tok_s + w->out_per_call / w->target.decode_tok_s;
	else
		w->target_s_per_call = w->out_per_call / w->target.out_tok_s;
	if ((r = ratio_q(w->booked_s_per_call / w->target_s_per_call, &w->time_scale)) < 0) {
		snprintf(err, errlen, "speed ratio %g out of range", w->booked_s_per_call / w->target_s_per_call);
		goto out;
	}
	w->ratio = 1.0 / meter_q_to_double(w->time_scale);
	w->basis = w->target.source == THRU_ESTIMATED ? "estimate" : "measured";
	char shape[192], profs[160] = "";
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(profs);
		if (strstr(profs, rows[i].hardware_profile) == NULL && l + strlen(rows[i].hardware_profile) + 2 < sizeof(profs))
			snprintf(profs + l, sizeof(profs) - l, "%s%s", l ? "," : "", rows[i].hardware_profile[0] ?
				 rows[i].hardware_profile : "?");
	}
	snprintf(w->why, sizeof(w->why), "%zu calls of %s, %.0f in / %.0f out tokens per call: %.4g s of "
		 "engine time per call on %s (ledger) vs %.4g s on %s (%s: %.420s%s%.300s)", n,
		 speed_shape_describe(&w->shape, shape, sizeof(shape)), w->in_per_call, w->out_per_call,
		 w->booked_s_per_call, profs, w->target_s_per_call, target->name, w->basis, w->target.why,
		 w->mem.why[0] ? "; " : "", w->mem.why);
	*ret = *w;
	r = 0;
out:
	free(w);
	return r;
}

int speed_bench_elsewhere(const thru_bench_t *b, const hwprof_t *hw, uint32_t batch, const thru_eff_t *eff,
			  thru_t *th, char *err, size_t errlen)
{
	char why[400];
	if (speed_bench_on(b, hw, why, sizeof(why)))
		return 0;
	uint32_t at = batch;
	double best = -1;
	for (size_t i = 0; batch == 0 && i < b->n_runs; i++)
		if (b->runs[i].decode_tok_s > best) {
			best = b->runs[i].decode_tok_s;
			at = b->runs[i].batch;	/* the run *th was taken from */
		}
	speed_shape_t shape;
	thru_t t;
	speed_shape_from_bench(b, &shape);
	int r = speed_target_thru(hw, &shape, NULL, at, 0, 0, eff, &t, NULL, err, errlen);
	if (r < 0)
		return r;
	char tw[sizeof(t.why)];
	snprintf(tw, sizeof(tw), "%s", t.why);
	snprintf(t.why, sizeof(t.why), "%.300s [not the bench given: %.180s]", tw, why);
	*th = t;
	return 0;
}

int speed_ledger_elsewhere(const ledger_row_t *rows, size_t n, const hwprof_t *hw, uint32_t batch,
			   const thru_eff_t *eff, thru_t *th, char *err, size_t errlen)
{
	bool other = false;
	for (size_t i = 0; i < n; i++)
		other |= strcmp(rows[i].hardware_profile, hw->name) != 0;
	if (!other)
		return 0;
	speed_whatif_t *w = malloc(sizeof(*w));
	int r = w ? speed_whatif(rows, n, hw, NULL, batch, eff, w, err, errlen) : -ENOMEM;
	if (r == 0) {
		*th = w->target;
		snprintf(th->why, sizeof(th->why), "%.200s%s%.100s [the ledger's calls ran on %.40s at %.4g s per call: "
			 "%.6g x as fast on %.40s]", w->target.why, w->mem.why[0] ? "; " : "", w->mem.why,
			 rows[0].hardware_profile, w->booked_s_per_call, w->ratio, hw->name);
	}
	free(w);
	return r;
}

int speed_chart_bench(thru_bench_t *b, const hwprof_t *hw, const thru_eff_t *eff, char *note, size_t notelen,
		      char *err, size_t errlen)
{
	char why[400];
	if (speed_bench_on(b, hw, why, sizeof(why)))
		return 0;
	thru_bench_t *t = malloc(sizeof(*t));
	int r = t ? speed_target_bench(hw, b, eff, t, err, errlen) : -ENOMEM;
	if (r == 0) {
		snprintf(note, notelen, "%s: charted %.60s's own throughput for %.60s: %s%.160s", why, hw->name,
			 b->model[0] ? b->model : "its model", t->source == THRU_ESTIMATED ? "an estimate from its "
			 "profile's peaks" : "measured by ", t->source == THRU_ESTIMATED ? "" : t->origin);
		*b = *t;
		r = 1;
	}
	free(t);
	return r;
}

int speed_eff_from_bench(const thru_bench_t *b, const hwprof_t *here, thru_eff_t *ret, char *err, size_t errlen)
{
	const thru_run_t *small = NULL;
	for (size_t i = 0; i < b->n_runs; i++)
		if (small == NULL || b->runs[i].batch < small->batch)
			small = &b->runs[i];
	double w = (double)(b->params_per_token ? b->params_per_token : b->n_params), bpp = 4;
	bool derived = small != NULL && small->bandwidth_pct > 0 && b->bandwidth_gbs > 0 && w > 0;
	if (derived)	/* bandwidth_pct = decode_tok_s / B x weights x bytes / read bandwidth */
		bpp = small->bandwidth_pct / 100 * b->bandwidth_gbs * 1e9 * small->batch / (small->decode_tok_s * w);
	thru_eff_t e;
	int r = thru_eff_from_bench(b, here, bpp, &e, err, errlen);
	if (r < 0)
		return r;
	size_t l = strlen(e.why);
	snprintf(e.why + l, sizeof(e.why) - l, "; %.2f B per weight%s", bpp, derived ? " (from its bandwidth_pct)" :
		 " (f32 assumed)");
	*ret = e;
	return 0;
}

int speed_given(const char *text, speed_whatif_t *ret, char *err, size_t errlen)
{
	meter_q_t sp;
	memset(ret, 0, sizeof(*ret));
	if (meter_q_parse(text, &sp) < 0 || sp.num <= 0 || meter_q_div(METER_Q(1, 1), sp, &ret->time_scale) < 0) {
		snprintf(err, errlen, "--speed %s: expected a positive number (the target's speed / the booked one)", text);
		return -EINVAL;
	}
	ret->ratio = meter_q_to_double(sp);
	ret->basis = "given";
	snprintf(ret->why, sizeof(ret->why), "--speed %s: given", text);
	return 0;
}
