/* thru: bench JSON, tokens per hour of a call mix (economics.md 6), the
 * efficiency measured here and the roofline estimate. */
#include "tests.h"
#include "chart.h"
#include "cost.h"
#include "report.h"
#include "speed.h"
#include "thru.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_bench(void)
{
	thru_bench_t b;
	char err[512] = "";
	int r = thru_bench_load(DATA("bench_machine_md.json"), &b, err, sizeof(err));
	if (r < 0)
		fprintf(stderr, "%s\n", err);
	CU_ASSERT_EQUAL_FATAL(r, 0);
	CU_ASSERT_EQUAL(b.n_runs, 5);
	CU_ASSERT_EQUAL(b.n_params, 109500000);
	CU_ASSERT_EQUAL(b.runs[0].batch, 1);
	CU_ASSERT_DOUBLE_EQUAL(b.runs[0].decode_tok_s, 69, 1e-9);
	thru_t t;
	CU_ASSERT_EQUAL(thru_from_bench(&b, 0, &t, err, sizeof(err)), 0);	/* best: batch 256 */
	CU_ASSERT_DOUBLE_EQUAL(t.decode_tok_s, 796, 1e-9);
	CU_ASSERT_EQUAL(t.source, THRU_BENCH);
	CU_ASSERT_PTR_NOT_NULL(strstr(t.why, "batch 256"));
	CU_ASSERT_EQUAL(thru_from_bench(&b, 32, &t, err, sizeof(err)), 0);
	CU_ASSERT_DOUBLE_EQUAL(t.decode_tok_s, 527, 1e-9);
	CU_ASSERT_EQUAL(thru_from_bench(&b, 3, &t, err, sizeof(err)), -ENOENT);

	static const struct {
		const char *json, *needle;
		int rc;
	} bad[] = {
		{ "{\"runs\": []}", "runs", -EINVAL },
		{ "{\"runs\": [{\"batch\": 4}]}", "runs[0].decode_tok_s", -EINVAL },
		{ "{\"runs\": [{\"batch\": 4, \"decode_tok_s\": \"fast\"}]}", "runs[0].decode_tok_s", -EINVAL },
		{ "{\"runs\": [{\"decode_tok_s\": 5}]}", "runs[0].batch", -EINVAL },
		{ "{\n\"runs\": [\n{\"batch\": 1,,}]}", "bench.json:3:", -EBADMSG },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		CU_ASSERT_EQUAL(thru_bench_parse("bench.json", bad[i].json, strlen(bad[i].json), &b, err, sizeof(err)),
				bad[i].rc);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, bad[i].needle));
	}
}

static void test_tokens_per_hour(void)
{
	/* economics.md 6, cost basis A: 547 out tok/s per GPU at 2048 in /
	 * 2048 out, U = 50% => 0.985M in + 0.985M out per GPU-hour. */
	thru_t a = { .source = THRU_GIVEN, .out_tok_s = 547 };
	double in, out;
	CU_ASSERT_EQUAL(thru_tokens_per_hour(&a, 2048, 2048, 0.5, &in, &out), 0);
	CU_ASSERT(fabs(in - 0.985e6) < 0.001e6 && fabs(out - 0.985e6) < 0.001e6);
	/* Basis B: 306 out tok/s at 2048 / 128 => 8.81M in + 0.55M out. */
	thru_t b = { .source = THRU_GIVEN, .out_tok_s = 306 };
	CU_ASSERT_EQUAL(thru_tokens_per_hour(&b, 2048, 128, 0.5, &in, &out), 0);
	CU_ASSERT(fabs(in - 8.81e6) < 0.005e6 && fabs(out - 0.55e6) < 0.005e6);
	/* Phases: a call of 100 in + 10 out at 1000 / 10 tok/s takes 1.1 s. */
	thru_t p = { .phases = true, .prefill_tok_s = 1000, .decode_tok_s = 10 };
	CU_ASSERT_EQUAL(thru_tokens_per_hour(&p, 100, 10, 1.0, &in, &out), 0);
	CU_ASSERT_DOUBLE_EQUAL(out, 3600 / 1.1 * 10, 1e-6);
	CU_ASSERT_DOUBLE_EQUAL(in, 3600 / 1.1 * 100, 1e-6);
	CU_ASSERT_EQUAL(thru_tokens_per_hour(&p, 100, 10, 0, &in, &out), -EDOM);
	CU_ASSERT_EQUAL(thru_tokens_per_hour(&p, 100, 10, 1.5, &in, &out), -EDOM);
}

static void test_efficiency_and_estimate(void)
{
	hwprof_t cpu, h100, ascend;
	thru_bench_t b;
	thru_eff_t eff, md;
	char err[512] = "";
	CU_ASSERT_EQUAL_FATAL(hwprof_load(DEPLOY("hardware/cpu-2vcpu.conf"), &cpu, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(hwprof_load(DEPLOY("hardware/8xh100.conf"), &h100, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(hwprof_load(DEPLOY("hardware/8xascend910b.conf"), &ascend, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(thru_bench_load(DATA("bench_machine_md.json"), &b, err, sizeof(err)), 0);
	/* machine.md: batch-1 decode reaches "about 68%" of the bandwidth
	 * ceiling; the measured runs give the same from the bench figures. */
	CU_ASSERT_EQUAL_FATAL(thru_eff_from_bench(&b, &cpu, 4.0, &eff, err, sizeof(err)), 0);
	thru_eff_machine_md(&md);
	CU_ASSERT(fabs(eff.bandwidth - 0.68) < 0.02);
	CU_ASSERT(fabs(md.bandwidth - 0.68) < 1e-9);
	CU_ASSERT(eff.flops > 0.7 && eff.flops < md.flops);	/* the full model is below bare sgemm */
	CU_ASSERT_PTR_NOT_NULL(strstr(eff.why, "measured here"));

	/* Roofline: batch-1 decode is bandwidth-bound, large batches
	 * compute-bound, and never faster than prefill. */
	thru_t t1, t64, t4096;
	const uint64_t n = 7000000000ULL;
	CU_ASSERT_EQUAL_FATAL(thru_estimate(&h100, true, n, 2.0, 1, &eff, &t1, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(t1.source, THRU_ESTIMATED);
	CU_ASSERT_DOUBLE_EQUAL(t1.decode_tok_s, 26.8e12 * eff.bandwidth / (n * 2.0), 1e-6);
	CU_ASSERT_DOUBLE_EQUAL(t1.prefill_tok_s, 7915.2e12 * eff.flops / (2.0 * n), 1e-3);
	CU_ASSERT_EQUAL_FATAL(thru_estimate(&h100, true, n, 2.0, 64, &eff, &t64, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(thru_estimate(&h100, true, n, 2.0, 4096, &eff, &t4096, err, sizeof(err)), 0);
	CU_ASSERT(t64.decode_tok_s > t1.decode_tok_s);
	CU_ASSERT_DOUBLE_EQUAL(t4096.decode_tok_s, t4096.prefill_tok_s, 1e-6);
	CU_ASSERT_PTR_NOT_NULL(strstr(t1.why, "measured here"));
	/* The Ascend profile has no fp32 peak: the error names it. */
	CU_ASSERT_EQUAL(thru_estimate(&ascend, false, n, 2.0, 1, &eff, &t1, err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "peak_flops_fp32"));
}

/* A real `margin-worker bench --json` output (measured here on a busy
 * machine): its extra fields are ignored, params_per_token is used. */
static void test_real_bench_output(void)
{
	thru_bench_t b;
	hwprof_t cpu;
	thru_eff_t eff;
	thru_t t;
	char err[512] = "";
	CU_ASSERT_EQUAL_FATAL(thru_bench_load(DATA("bench_margin_worker.json"), &b, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(b.n_runs, 3);
	CU_ASSERT_EQUAL(b.params_per_token, 109529856);
	CU_ASSERT_STRING_EQUAL(b.model, "llama-110m");
	CU_ASSERT_EQUAL_FATAL(hwprof_load(DEPLOY("hardware/cpu-2vcpu.conf"), &cpu, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(thru_eff_from_bench(&b, &cpu, 4.0, &eff, err, sizeof(err)), 0);
	/* batch 1: decode_tok_s x 109.5M weights x 4 B over 43.9 GB/s. */
	CU_ASSERT_DOUBLE_EQUAL(eff.bandwidth, b.runs[0].decode_tok_s * 109529856.0 * 4 / 43.9e9, 1e-12);
	CU_ASSERT(eff.bandwidth > 0 && eff.bandwidth < 1 && eff.flops > 0 && eff.flops < 1);
	CU_ASSERT_EQUAL(thru_from_bench(&b, 32, &t, err, sizeof(err)), 0);
	CU_ASSERT_DOUBLE_EQUAL(t.decode_tok_s, b.runs[2].decode_tok_s, 1e-9);
	CU_ASSERT(t.prefill_tok_s > 0);
}


/* --- what-ifs at the target's speed (speed.h) ----------------------------- */

#define N7 8
#define TOK7 256	/* prompt and completion tokens per call */

/* A batch of llama2-7b served on this 2-vCPU node at the speeds its bench
 * measured at batch 1 (prefill 22.8, decode 1.94 tok/s), as the ledger
 * records it: busy time, FLOPs (2 per weight read per token), idle time. */
static void rows_7b(ledger_row_t *rows, const hwprof_t *cpu, const thru_bench_t *b)
{
	static const char *const ids[N7] = { "c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7" };
	double busy = (TOK7 / b->runs[0].prefill_tok_s + TOK7 / b->runs[0].decode_tok_s) * 1e9;
	for (int i = 0; i < N7; i++)
		rows[i] = (ledger_row_t){ .job = "batch_7b", .custom_id = ids[i], .line_no = i + 1, .model = "llama2-7b",
					  .worker = "w1", .worker_name = "w1", .hardware_profile = "cpu-2vcpu",
					  .prompt_tokens = TOK7, .completion_tokens = TOK7,
					  .busy_ns = (uint64_t)llround(busy), .flops = 2 * b->params_per_token * 2 * TOK7,
					  .idle_ns = 5000000000ULL + (uint64_t)i, .currency = "CNY",
					  .rate_busy_micros_per_hour = cpu->rate_busy_micros_per_hour,
					  .rate_idle_micros_per_hour = cpu->rate_idle_micros_per_hour, .via_batch = true,
					  .answered_at_ns = 1700000000000000000LL + i };
}

/* CNY per 1M completion tokens of calls repriced with time_scale. */
static double per_1m_out(const ledger_row_t *rows, const hwprof_t *hw, meter_q_t scale, ledger_row_t *out)
{
	char err[256];
	CU_ASSERT_EQUAL_FATAL(report_whatif(rows, N7, hw, scale, out, err, sizeof(err)), 0);
	int64_t marg = 0;
	for (int i = 0; i < N7; i++)
		marg += out[i].cost_marginal_micros;
	return (double)marg / (N7 * TOK7);	/* micros per token = units per 1M */
}

static void test_whatif_7b_estimate(void)
{
	hwprof_t cpu, h100;
	thru_bench_t b;
	thru_eff_t md;
	ledger_row_t rows[N7], out[N7];
	speed_whatif_t w;
	char err[512] = "";
	CU_ASSERT_EQUAL_FATAL(hwprof_load(DEPLOY("hardware/cpu-2vcpu.conf"), &cpu, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(hwprof_load(DEPLOY("hardware/8xh100.conf"), &h100, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(thru_bench_load(DATA("bench_llama2_7b_cpu.json"), &b, err, sizeof(err)), 0);
	rows_7b(rows, &cpu, &b);
	thru_eff_machine_md(&md);

	int r = speed_whatif(rows, N7, &h100, NULL, 0, NULL, &w, err, sizeof(err));
	if (r < 0)
		fprintf(stderr, "%s\n", err);
	CU_ASSERT_EQUAL_FATAL(r, 0);
	/* The shape from the ledger's FLOPs, the estimate at batch 32 in fp16. */
	CU_ASSERT_EQUAL(w.shape.params_per_token, b.params_per_token);
	CU_ASSERT_STRING_EQUAL(w.basis, "estimate");
	CU_ASSERT_EQUAL(w.target.source, THRU_ESTIMATED);
	thru_t t32, t1, tmax;
	CU_ASSERT_EQUAL_FATAL(thru_estimate(&h100, true, b.params_per_token, 2.0, 32, &md, &t32, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(thru_estimate(&h100, true, b.params_per_token, 2.0, 1, &md, &t1, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(thru_estimate(&h100, true, b.params_per_token, 2.0, 1 << 20, &md, &tmax, err,
					    sizeof(err)), 0);
	double s32 = TOK7 / t32.prefill_tok_s + TOK7 / t32.decode_tok_s;
	CU_ASSERT_DOUBLE_EQUAL(w.target_s_per_call, s32, s32 * 1e-12);
	CU_ASSERT_DOUBLE_EQUAL(w.booked_s_per_call, (double)rows[0].busy_ns / 1e9, 1e-9);
	CU_ASSERT(fabs(w.ratio / (w.booked_s_per_call / s32) - 1) < 1e-5);	/* 6 significant digits */
	CU_ASSERT(w.ratio > 1000);	/* eight H100s against two vCPUs */
	/* The basis, printed: where each speed comes from. */
	CU_ASSERT_PTR_NOT_NULL(strstr(w.why, "llama2-7b"));
	CU_ASSERT_PTR_NOT_NULL(strstr(w.why, "cpu-2vcpu (ledger)"));
	CU_ASSERT_PTR_NOT_NULL(strstr(w.why, "8xh100 (estimate"));
	CU_ASSERT_PTR_NOT_NULL(strstr(w.why, "batch 32"));
	CU_ASSERT_PTR_NOT_NULL(strstr(w.why, "FLOPs"));

	/* Busy and idle time divided by the ratio, call by call. */
	double per1m = per_1m_out(rows, &h100, w.time_scale, out);
	uint64_t idle_in = 0, idle_out = 0;
	for (int i = 0; i < N7; i++) {
		int64_t want;
		CU_ASSERT_EQUAL(meter_scale((int64_t)rows[i].busy_ns, w.time_scale, &want), 0);
		CU_ASSERT_EQUAL(out[i].busy_ns, (uint64_t)want);
		CU_ASSERT(fabs((double)out[i].busy_ns - (double)rows[i].busy_ns / w.ratio) <= 1);
		CU_ASSERT_STRING_EQUAL(out[i].hardware_profile, "8xh100");
		idle_in += rows[i].idle_ns;
		idle_out += out[i].idle_ns;
	}
	CU_ASSERT(fabs((double)idle_out - (double)idle_in / w.ratio) <= N7);
	/* Cost per 1M output tokens (whole calls' time): inside the
	 * estimate's range from batch 1 to compute-bound, cents to a few
	 * yuan; at this machine's speed (the old what-if) thousands. */
	double rate = (double)h100.rate_busy_micros_per_hour / 1e6 / 3600;	/* CNY per second */
	double hi = rate * (TOK7 / t1.prefill_tok_s + TOK7 / t1.decode_tok_s) / TOK7 * 1e6;
	double lo = rate * (TOK7 / tmax.prefill_tok_s + TOK7 / tmax.decode_tok_s) / TOK7 * 1e6;
	double at32 = rate * s32 / TOK7 * 1e6;
	CU_ASSERT(per1m >= lo * 0.99 && per1m <= hi * 1.01);
	CU_ASSERT(fabs(per1m - at32) <= at32 * 0.01);
	CU_ASSERT(per1m < 20);
	double old = per_1m_out(rows, &h100, METER_Q(1, 1), out);
	CU_ASSERT(old > 1000);

	/* Efficiency measured here by this machine's bench: its bytes per
	 * weight from its own bandwidth_pct (f32: 4), and the estimate
	 * follows it. */
	thru_eff_t here;
	CU_ASSERT_EQUAL_FATAL(speed_eff_from_bench(&b, &cpu, &here, err, sizeof(err)), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(here.why, "4.00 B per weight (from its bandwidth_pct)"));
	thru_eff_t want_eff;
	CU_ASSERT_EQUAL_FATAL(thru_eff_from_bench(&b, &cpu, 4.0, &want_eff, err, sizeof(err)), 0);
	CU_ASSERT_DOUBLE_EQUAL(here.flops, want_eff.flops, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(here.bandwidth, want_eff.bandwidth, 1e-3);
	speed_whatif_t wh;
	CU_ASSERT_EQUAL_FATAL(speed_whatif(rows, N7, &h100, NULL, 0, &here, &wh, err, sizeof(err)), 0);
	thru_t th32;
	CU_ASSERT_EQUAL_FATAL(thru_estimate(&h100, true, b.params_per_token, 2.0, 32, &here, &th32, err, sizeof(err)), 0);
	CU_ASSERT_DOUBLE_EQUAL(wh.target_s_per_call, TOK7 / th32.prefill_tok_s + TOK7 / th32.decode_tok_s, 1e-12);
	CU_ASSERT_PTR_NOT_NULL(strstr(wh.why, "measured here"));

	/* On the hardware they ran on: the ledger's speed, ratio 1. */
	CU_ASSERT_EQUAL_FATAL(speed_whatif(rows, N7, &cpu, NULL, 0, NULL, &w, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(meter_q_cmp(w.time_scale, METER_Q(1, 1)), 0);
	CU_ASSERT_STRING_EQUAL(w.basis, "measured");

	/* A given speed is "given"; rows of several models have no one shape. */
	speed_whatif_t g;
	CU_ASSERT_EQUAL(speed_given("2.5", &g, err, sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(g.basis, "given");
	CU_ASSERT_EQUAL(meter_q_cmp(g.time_scale, METER_Q(2, 5)), 0);
	CU_ASSERT_EQUAL(speed_given("0", &g, err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "--speed 0"));
	rows[3].model = "qwen2-7b";
	CU_ASSERT_EQUAL(speed_whatif(rows, N7, &h100, NULL, 0, NULL, &w, err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "qwen2-7b"));
}

/* A temporary profile: 8xh100.conf renamed, with extra lines. */
static int write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (f == NULL)
		return -1;
	fputs(text, f);
	return fclose(f);
}

static int temp_profile(const char *dir, const char *name, const char *extra, char *path, size_t len)
{
	FILE *f = fopen(DEPLOY("hardware/8xh100.conf"), "r");
	char line[512], *text = NULL;
	size_t tlen = 0;
	FILE *o = open_memstream(&text, &tlen);
	if (f == NULL || o == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, "name = ", 7) == 0)
			fprintf(o, "name = %s\n", name);
		else
			fputs(line, o);
	fprintf(o, "%s\n", extra);
	fclose(f);
	fclose(o);
	snprintf(path, len, "%s/%s.conf", dir, name);
	int r = write_file(path, text);
	free(text);
	return r;
}

static void test_attached_bench(void)
{
	char dir[] = "/tmp/test_speed_XXXXXX", path[1024], err[1024] = "", js[1024];
	hwprof_t cpu, hb, bad;
	thru_bench_t b;
	ledger_row_t rows[N7];
	speed_whatif_t w;
	CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
	CU_ASSERT_EQUAL_FATAL(hwprof_load(DEPLOY("hardware/cpu-2vcpu.conf"), &cpu, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(thru_bench_load(DATA("bench_llama2_7b_cpu.json"), &b, err, sizeof(err)), 0);
	rows_7b(rows, &cpu, &b);
	/* Bench outputs taken "on" the target (test figures): one of another
	 * model, one of this shape under another name, one of a shape 2% off. */
	const char *names[] = { "other.json", "seven.json", "off.json" };
	const char *models[] = { "llama-110m", "my-7b", "near-7b" };
	double ppt[] = { 109529856, (double)b.params_per_token * 1.005, (double)b.params_per_token * 1.02 };
	for (int i = 0; i < 3; i++) {
		char p[1100];
		snprintf(js, sizeof(js), "{\"hardware\": \"h100-bench\", \"model\": {\"name\": \"%s\", \"n_params\": %.0f, "
			 "\"params_per_token\": %.0f}, \"runs\": [{\"batch\": 1, \"prefill_tok_s\": 40000, \"decode_tok_s\": "
			 "900}, {\"batch\": 64, \"prefill_tok_s\": 50000, \"decode_tok_s\": 20000}]}", models[i], ppt[i] * 1.02,
			 ppt[i]);
		snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
		CU_ASSERT_EQUAL_FATAL(write_file(p, js), 0);
	}
	CU_ASSERT_EQUAL_FATAL(temp_profile(dir, "h100-bench", "bench = other.json, seven.json", path, sizeof(path)), 0);
	int r = hwprof_load(path, &hb, err, sizeof(err));
	if (r < 0)
		fprintf(stderr, "%s\n", err);
	CU_ASSERT_EQUAL_FATAL(r, 0);
	CU_ASSERT_EQUAL(hb.n_bench, 2);
	/* The attached bench of the shape (within 1%) wins over the
	 * estimate; its best run by default, or the batch asked for. */
	CU_ASSERT_EQUAL_FATAL(speed_whatif(rows, N7, &hb, NULL, 0, NULL, &w, err, sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(w.basis, "measured");
	CU_ASSERT_DOUBLE_EQUAL(w.target_s_per_call, TOK7 / 50000.0 + TOK7 / 20000.0, 1e-12);
	CU_ASSERT_PTR_NOT_NULL(strstr(w.why, "seven.json"));
	CU_ASSERT_EQUAL_FATAL(speed_whatif(rows, N7, &hb, NULL, 1, NULL, &w, err, sizeof(err)), 0);
	CU_ASSERT_DOUBLE_EQUAL(w.target_s_per_call, TOK7 / 40000.0 + TOK7 / 900.0, 1e-12);
	CU_ASSERT_EQUAL(speed_whatif(rows, N7, &hb, NULL, 8, NULL, &w, err, sizeof(err)), -ENOENT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "batch 8"));
	/* A bench given (--bench) wins over the attached one. */
	thru_bench_t given;
	snprintf(path, sizeof(path), "%s/off.json", dir);
	CU_ASSERT_EQUAL_FATAL(thru_bench_load(path, &given, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(speed_whatif(rows, N7, &hb, &given, 1, NULL, &w, err, sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(w.basis, "measured");
	CU_ASSERT_PTR_NOT_NULL(strstr(w.why, "off.json"));
	/* Only a bench 2% off the shape: the estimate. */
	CU_ASSERT_EQUAL_FATAL(temp_profile(dir, "h100-off", "bench = off.json", path, sizeof(path)), 0);
	CU_ASSERT_EQUAL_FATAL(hwprof_load(path, &hb, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(speed_whatif(rows, N7, &hb, NULL, 0, NULL, &w, err, sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(w.basis, "estimate");

	/* Shapes: the same n_params and params_per_token within 1%. */
	speed_shape_t s7;
	speed_shape_from_bench(&b, &s7);
	CU_ASSERT(speed_shape_match(&s7, &b));
	thru_bench_t c = b;
	c.params_per_token = (uint64_t)(b.params_per_token * 1.009);
	snprintf(c.model, sizeof(c.model), "x");
	CU_ASSERT(speed_shape_match(&s7, &c));
	c.n_params = (uint64_t)(b.n_params * 1.02);
	CU_ASSERT(!speed_shape_match(&s7, &c));
	c = b;
	c.params_per_token = (uint64_t)(b.params_per_token * 1.011);
	CU_ASSERT(!speed_shape_match(&s7, &c));

	/* Bad attachments: the error names the file and the key. */
	CU_ASSERT_EQUAL_FATAL(temp_profile(dir, "h100-bad", "bench = missing.json", path, sizeof(path)), 0);
	CU_ASSERT_EQUAL(hwprof_load(path, &bad, err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "missing.json"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "bench"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "h100-bad.conf"));
	CU_ASSERT_EQUAL_FATAL(temp_profile(dir, "h100-bad", "bench = h100-bad.conf", path, sizeof(path)), 0);
	CU_ASSERT_EQUAL(hwprof_load(path, &bad, err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "margin-worker bench --json"));

	const char *rm[] = { "other.json", "seven.json", "off.json", "h100-bench.conf", "h100-off.conf", "h100-bad.conf" };
	for (size_t i = 0; i < sizeof(rm) / sizeof(rm[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, rm[i]);
		unlink(path);
	}
	rmdir(dir);
}

/* A bench of this machine charted on 8xh100: the target's estimated
 * throughput at the same batch sizes, labelled estimate, never bench. */
static void test_bench_elsewhere(void)
{
	hwprof_t cpu, h100;
	thru_bench_t b, e;
	thru_eff_t md;
	char err[512] = "", why[512], *svg = NULL;
	CU_ASSERT_EQUAL_FATAL(hwprof_load(DEPLOY("hardware/cpu-2vcpu.conf"), &cpu, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(hwprof_load(DEPLOY("hardware/8xh100.conf"), &h100, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(thru_bench_load(DATA("bench_llama2_7b_cpu.json"), &b, err, sizeof(err)), 0);
	thru_eff_machine_md(&md);
	/* No "hardware" field: told by its sgemm figure against the peaks. */
	CU_ASSERT(speed_bench_on(&b, &cpu, why, sizeof(why)));
	CU_ASSERT(!speed_bench_on(&b, &h100, why, sizeof(why)));
	CU_ASSERT_PTR_NOT_NULL(strstr(why, "8xh100"));
	e = b;
	snprintf(e.hardware, sizeof(e.hardware), "8xh100");
	CU_ASSERT(speed_bench_on(&e, &h100, why, sizeof(why)));
	CU_ASSERT(!speed_bench_on(&e, &cpu, why, sizeof(why)));

	e = b;
	CU_ASSERT_EQUAL_FATAL(speed_chart_bench(&e, &h100, NULL, why, sizeof(why), err, sizeof(err)), 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(why, "charted 8xh100's own throughput for llama2-7b: an estimate"));
	CU_ASSERT_EQUAL(e.source, THRU_ESTIMATED);
	CU_ASSERT_EQUAL_FATAL(e.n_runs, b.n_runs);
	for (size_t i = 0; i < e.n_runs; i++) {
		thru_t t;
		CU_ASSERT_EQUAL(e.runs[i].batch, b.runs[i].batch);
		CU_ASSERT_EQUAL_FATAL(thru_estimate(&h100, true, b.params_per_token, 2.0, b.runs[i].batch, &md, &t, err,
						    sizeof(err)), 0);
		CU_ASSERT_DOUBLE_EQUAL(e.runs[i].decode_tok_s, t.decode_tok_s, 1e-6);
	}
	pricetab_t *p = pricetab_new();
	const char *refs[] = { "gpt-4o-mini" };
	CU_ASSERT_EQUAL_FATAL(pricetab_load(p, DEPLOY("prices/fx.conf"), err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(pricetab_load(p, DEPLOY("prices/closed-2024.conf"), err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(chart_cost_vs_batch(&e, &h100, 1.0, p, refs, 1, true, "CNY", &svg, err, sizeof(err)), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(svg, "8xh100 (estimate)"));
	CU_ASSERT_PTR_NULL(strstr(svg, "(bench)"));
	free(svg);
	/* Batch 1 of a 7B model on 8xh100: about 14 CNY per 1M output tokens
	 * at full use, not the 3,000-16,000 of the 2-vCPU speed. */
	int64_t c1;
	CU_ASSERT_EQUAL(cost_per_1m_tokens(h100.rate_busy_micros_per_hour, e.runs[0].decode_tok_s, 1.0, &c1), 0);
	CU_ASSERT(c1 > 1000000 && c1 < 30000000);
	/* The same machine's bench is left as it is, and says measured. */
	e = b;
	CU_ASSERT_EQUAL_FATAL(speed_chart_bench(&e, &cpu, NULL, why, sizeof(why), err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(e.source, THRU_BENCH);
	CU_ASSERT_DOUBLE_EQUAL(e.runs[0].decode_tok_s, b.runs[0].decode_tok_s, 0);
	CU_ASSERT_EQUAL_FATAL(chart_cost_vs_batch(&e, &cpu, 1.0, p, refs, 1, true, "CNY", &svg, err, sizeof(err)), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(svg, "cpu-2vcpu (measured)"));
	free(svg);
	pricetab_destroy(&p);
}

/* One H100 SXM (8xh100.conf's figures / 8) with memory_bytes `mem` ("":
 * none stated). */
static hwprof_t h100_mem(const char *name, const char *mem)
{
	char text[2048], err[512] = "";
	hwprof_t hw;
	snprintf(text, sizeof(text),
		 "[hardware]\nname = %s\ncurrency = CNY\npricing = rental\naccelerators = 1\n"
		 "purchase_price = 0\npurchase_price_source = t\npurchase_price_date = t\n"
		 "power_watts_load = 0\npower_watts_load_source = t\npower_watts_load_date = t\n"
		 "fixed_per_hour = 8.4\nfixed_per_hour_source = t\nfixed_per_hour_date = t\n"
		 "peak_flops_fp32 = 66.9e12\npeak_flops_fp32_source = t\npeak_flops_fp32_date = t\n"
		 "peak_flops_fp16 = 989.4e12\npeak_flops_fp16_source = t\npeak_flops_fp16_date = t\n"
		 "mem_bandwidth = 3.35e12\nmem_bandwidth_source = t\nmem_bandwidth_date = t\n%s%s%s",
		 name, mem[0] ? "memory_bytes = " : "", mem, mem[0] ? "\nmemory_bytes_source = t\nmemory_bytes_date = t\n" : "");
	int r = hwprof_load_string(name, text, &hw, err, sizeof(err));
	if (r < 0)
		fprintf(stderr, "%s\n", err);
	CU_ASSERT_EQUAL_FATAL(r, 0);
	return hw;
}

/* The what-if estimate knows the target's memory: the default decode
 * batch (32) is capped at the largest that fits the batch's mix, a batch
 * asked for must fit, weights that do not fit are an error; a model whose
 * shape cannot be had says "memory not checked". */
static void test_whatif_memory(void)
{
	hwprof_t cpu, h100;
	thru_bench_t b;
	thru_eff_t md;
	ledger_row_t rows[N7];
	speed_whatif_t w;
	char err[1024] = "";
	CU_ASSERT_EQUAL_FATAL(hwprof_load(DEPLOY("hardware/cpu-2vcpu.conf"), &cpu, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(hwprof_load(DEPLOY("hardware/8xh100.conf"), &h100, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(thru_bench_load(DATA("bench_llama2_7b_cpu.json"), &b, err, sizeof(err)), 0);
	rows_7b(rows, &cpu, &b);
	thru_eff_machine_md(&md);

	/* 16 GB: 13,477,363,712 B of f16 weights + 268,435,456 B of KV per
	 * sequence of 256 + 256 tokens: 9 sequences fit, not 32. */
	hwprof_t small = h100_mem("h100-16g", "16e9");
	int r = speed_whatif(rows, N7, &small, NULL, 0, NULL, &w, err, sizeof(err));
	if (r < 0)
		fprintf(stderr, "%s\n", err);
	CU_ASSERT_EQUAL_FATAL(r, 0);
	CU_ASSERT(w.mem.checked);
	CU_ASSERT_EQUAL(w.mem.fit.max_batch, 9);
	CU_ASSERT_EQUAL(w.mem.fit.kv_bytes_per_seq, 268435456);
	CU_ASSERT_EQUAL(w.mem.batch, 9);
	thru_t t9;
	CU_ASSERT_EQUAL_FATAL(thru_estimate(&small, true, b.params_per_token, 2.0, 9, &md, &t9, err, sizeof(err)), 0);
	CU_ASSERT_DOUBLE_EQUAL(w.target_s_per_call, TOK7 / t9.prefill_tok_s + TOK7 / t9.decode_tok_s, 1e-12);
	CU_ASSERT_PTR_NOT_NULL(strstr(w.why, "decode batch 9 (the largest that fits, below the default)"));
	CU_ASSERT_PTR_NOT_NULL(strstr(w.why, "fit memory 16.0 GB"));
	CU_ASSERT_PTR_NULL(strstr(w.why, "not checked"));
	/* A batch asked for that does not fit: refused, weights + KV named. */
	CU_ASSERT_EQUAL(speed_whatif(rows, N7, &small, NULL, 32, NULL, &w, err, sizeof(err)), -ENOSPC);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "batch 32 does not fit on h100-16g"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "weights 13.5 GB + KV cache"));
	CU_ASSERT_EQUAL(speed_whatif(rows, N7, &small, NULL, 9, NULL, &w, err, sizeof(err)), 0);
	/* 10 GB: the weights alone do not fit. */
	hwprof_t tiny = h100_mem("h100-10g", "10e9");
	CU_ASSERT_EQUAL(speed_whatif(rows, N7, &tiny, NULL, 0, NULL, &w, err, sizeof(err)), -ENOSPC);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "weights 13.5 GB"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "> memory 10.0 GB (the weights alone do not fit)"));
	/* ... nor for a chart of its bench (no call mix: the weights). */
	thru_bench_t *e = malloc(sizeof(*e));
	CU_ASSERT_PTR_NOT_NULL_FATAL(e);
	CU_ASSERT_EQUAL(speed_target_bench(&tiny, &b, NULL, e, err, sizeof(err)), -ENOSPC);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "the weights alone do not fit"));
	CU_ASSERT_EQUAL(speed_target_bench(&small, &b, NULL, e, err, sizeof(err)), 0);
	free(e);
	/* 8 x 80 GB: the default 32 fits. */
	CU_ASSERT_EQUAL_FATAL(speed_whatif(rows, N7, &h100, NULL, 0, NULL, &w, err, sizeof(err)), 0);
	CU_ASSERT(w.mem.checked);
	CU_ASSERT_EQUAL(w.mem.batch, 32);
	CU_ASSERT_PTR_NOT_NULL(strstr(w.why, "decode batch 32 (the default)"));

	/* No shape to size the KV cache: a name that is no preset, or a
	 * preset's name on calls of another size; or no memory_bytes. The
	 * default batch is kept and the basis says so. */
	for (int i = 0; i < N7; i++)
		rows[i].model = "my-7b";
	CU_ASSERT_EQUAL_FATAL(speed_whatif(rows, N7, &tiny, NULL, 0, NULL, &w, err, sizeof(err)), 0);
	CU_ASSERT(!w.mem.checked);
	CU_ASSERT_EQUAL(w.mem.batch, 32);
	CU_ASSERT_PTR_NOT_NULL(strstr(w.why, "memory not checked: my-7b is not a preset shape"));
	for (int i = 0; i < N7; i++) {
		rows[i].model = "llama2-7b";
		rows[i].flops = rows[i].flops / 2;	/* a 3.3B model's FLOPs */
	}
	CU_ASSERT_EQUAL_FATAL(speed_whatif(rows, N7, &tiny, NULL, 0, NULL, &w, err, sizeof(err)), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(w.why, "memory not checked: llama2-7b: the preset of that name has"));
	rows_7b(rows, &cpu, &b);
	hwprof_t nomem = h100_mem("h100-nomem", "");
	CU_ASSERT_EQUAL_FATAL(speed_whatif(rows, N7, &nomem, NULL, 0, NULL, &w, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(w.mem.batch, 32);
	CU_ASSERT_PTR_NOT_NULL(strstr(w.why, "memory not checked: h100-nomem: no memory_bytes"));
}

const cu_test_t thru_tests[] = {
	{ "real_bench_output", test_real_bench_output },
	{ "bench", test_bench },
	{ "tokens_per_hour", test_tokens_per_hour },
	{ "efficiency_and_estimate", test_efficiency_and_estimate },
	{ "whatif_7b_estimate", test_whatif_7b_estimate },
	{ "attached_bench", test_attached_bench },
	{ "bench_elsewhere", test_bench_elsewhere },
	{ "whatif_memory", test_whatif_memory },
	{ NULL, NULL },
};
