/* thru: bench JSON, tokens per hour of a call mix (economics.md 6), the
 * efficiency measured here and the roofline estimate. */
#include "tests.h"
#include "thru.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

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

const cu_test_t thru_tests[] = {
	{ "real_bench_output", test_real_bench_output },
	{ "bench", test_bench },
	{ "tokens_per_hour", test_tokens_per_hour },
	{ "efficiency_and_estimate", test_efficiency_and_estimate },
	{ NULL, NULL },
};
