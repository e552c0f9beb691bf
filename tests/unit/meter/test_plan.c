/* plan: memory fit, nodes, utilization and costs per 1M tokens against
 * values computed by hand (in the comments), the estimate's peak choice,
 * and the 70B-on-one-H100 refusal. */
#include "meter_catalog.h"
#include "plan.h"
#include "speed.h"
#include "tests.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static hwprof_t profile(const char *text)
{
	hwprof_t hw;
	char err[512] = "";
	int r = hwprof_load_string("test", text, &hw, err, sizeof(err));
	if (r < 0)
		fprintf(stderr, "%s\n", err);
	CU_ASSERT_EQUAL_FATAL(r, 0);
	return hw;
}

/* One H100 SXM 80GB: 8xh100.conf's figures / 8. */
#define H100_1 \
	"[hardware]\nname = h100-1\ncurrency = CNY\npricing = rental\naccelerators = 1\n" \
	"purchase_price = 0\npurchase_price_source = t\npurchase_price_date = t\n" \
	"power_watts_load = 0\npower_watts_load_source = t\npower_watts_load_date = t\n" \
	"fixed_per_hour = 8.4\nfixed_per_hour_source = t\nfixed_per_hour_date = t\n" \
	"peak_flops_fp32 = 66.9e12\npeak_flops_fp32_source = t\npeak_flops_fp32_date = t\n" \
	"peak_flops_fp16 = 989.4e12\npeak_flops_fp16_source = t\npeak_flops_fp16_date = t\n" \
	"mem_bandwidth = 3.35e12\nmem_bandwidth_source = t\nmem_bandwidth_date = t\n" \
	"memory_bytes = 80e9\nmemory_bytes_source = t\nmemory_bytes_date = t\n"

static void test_fit(void)
{
	shape_t m7, m70;
	char err[1024] = "";
	hwprof_t h100x8, cpu;
	plan_fit_t f;
	CU_ASSERT_EQUAL_FATAL(shape_preset("llama2-7b", "f16", &m7, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(shape_preset("llama2-70b", "f16", &m70, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(hwprof_load(DEPLOY("hardware/8xh100.conf"), &h100x8, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(hwprof_load(DEPLOY("hardware/cpu-2vcpu.conf"), &cpu, err, sizeof(err)), 0);

	/* 7B f16 on 8 x 80 GB at 2048/512: KV/seq = 2560 x 524,288 =
	 * 1,342,177,280 B; (640e9 - 13,477,363,712) / that = 466.8 -> 466. */
	CU_ASSERT_EQUAL_FATAL(plan_fit_profile(&m7, &h100x8, 2048, 512, &f, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(f.memory_bytes, 640000000000ull);
	CU_ASSERT_EQUAL(f.ctx, 2560);
	CU_ASSERT_EQUAL(f.kv_bytes_per_seq, 1342177280ull);
	CU_ASSERT_EQUAL(f.max_batch, 466);
	CU_ASSERT_EQUAL(plan_fit_check(&f, 466, "x", err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(plan_fit_check(&f, 467, "x", err, sizeof(err)), -ENOSPC);
	/* This machine, 24 GiB: (25,769,803,776 - 13,477,363,712) / 1,342,177,280 = 9.16 -> 9. */
	CU_ASSERT_EQUAL_FATAL(plan_fit_profile(&m7, &cpu, 2048, 512, &f, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(f.max_batch, 9);

	/* 70B f16 at 2048/2048: fits 8 x H100 at batch 256 (137.96 GB +
	 * 256 x 1.34 GB = 481.6 GB), at most (640e9 - 137,955,934,208) /
	 * 1,342,177,280 = 374; never on one 80 GB H100. */
	CU_ASSERT_EQUAL_FATAL(plan_fit_profile(&m70, &h100x8, 2048, 2048, &f, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(f.max_batch, 374);
	CU_ASSERT_EQUAL(plan_fit_check(&f, 256, "x", err, sizeof(err)), 0);
	hwprof_t one = profile(H100_1);
	CU_ASSERT_EQUAL_FATAL(plan_fit_profile(&m70, &one, 2048, 2048, &f, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(f.max_batch, 0);
	CU_ASSERT_EQUAL(plan_fit_check(&f, 256, "on h100-1", err, sizeof(err)), -ENOSPC);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "batch 256 does not fit on h100-1"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "weights 138.0 GB"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "KV cache 343.6 GB"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "> memory 80.0 GB"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "weights alone"));

	/* A profile without memory_bytes is named, not guessed. */
	hwprof_t rent;
	CU_ASSERT_EQUAL_FATAL(hwprof_load(DEPLOY("hardware/8xh800-rental.conf"), &rent, err, sizeof(err)), 0);
	rent.f[HWPROF_MEMORY_BYTES].given = false;
	CU_ASSERT_EQUAL(plan_fit_profile(&m7, &rent, 2048, 512, &f, err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "memory_bytes"));
}

static void test_estimate(void)
{
	shape_t m;
	char err[1024] = "";
	hwprof_t h100x8, cpu;
	thru_t t;
	bool fp16;
	thru_eff_t eff = { .flops = 0.5, .bandwidth = 0.5, .why = "test" };
	CU_ASSERT_EQUAL_FATAL(shape_preset("llama2-7b", "f16", &m, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(hwprof_load(DEPLOY("hardware/8xh100.conf"), &h100x8, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(hwprof_load(DEPLOY("hardware/cpu-2vcpu.conf"), &cpu, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(plan_estimate(&m, &h100x8, 466, 2048, 512, &eff, &t, &fp16, err, sizeof(err)), 0);
	CU_ASSERT(fp16);
	/* Mean decode context 2048 + 256 = 2304. Per token: 6,607,343,616
	 * weights + attention 4 x 32 x 32 x 128 x 2304 / 2 = 603,979,776.
	 * A step reads the weights a token multiplies and 466 x 2304 x
	 * 524,288 B of KV; at 26.8e12 x 0.5 B/s that is the bound (compute:
	 * 2 x 7.21e9 x 466 / (7915.2e12 x 0.5) = 1.7 ms). */
	double n = 6607343616.0 + 603979776.0;
	double bytes = 13477363712.0 * 6607343616.0 / 6738415616.0 + 466.0 * 2304 * 524288;
	CU_ASSERT_DOUBLE_EQUAL(t.decode_tok_s, 466 / (bytes / 13.4e12), 1e-6 * t.decode_tok_s);
	CU_ASSERT_DOUBLE_EQUAL(t.prefill_tok_s, 7915.2e12 * 0.5 / (2 * n), 1e-3);
	CU_ASSERT(fabs(t.decode_tok_s - 10838) < 2);
	CU_ASSERT_PTR_NOT_NULL(strstr(t.why, "upper bound"));
	CU_ASSERT_PTR_NOT_NULL(strstr(t.why, "fp16 peak"));
	CU_ASSERT_EQUAL(t.source, THRU_ESTIMATED);

	/* f16 weights on a profile without an fp16 peak: fp32, said so. */
	CU_ASSERT_EQUAL_FATAL(plan_estimate(&m, &cpu, 9, 2048, 512, &eff, &t, &fp16, err, sizeof(err)), 0);
	CU_ASSERT(!fp16);
	CU_ASSERT_PTR_NOT_NULL(strstr(t.why, "no fp16 peak"));
	/* f32 weights: fp32 even where an fp16 peak exists. */
	CU_ASSERT_EQUAL_FATAL(shape_preset("llama2-7b", "f32", &m, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(plan_estimate(&m, &h100x8, 8, 2048, 512, &eff, &t, &fp16, err, sizeof(err)), 0);
	CU_ASSERT(!fp16);
	CU_ASSERT_PTR_NOT_NULL(strstr(t.why, "fp32 peak"));
}

/* A rental at 36 CNY/h busy, 35 idle (1 kW of power at 1 CNY/kWh, PUE 1,
 * above a 35 CNY/h rent). */
#define NODE \
	"[hardware]\nname = node\ncurrency = CNY\npricing = rental\n" \
	"purchase_price = 0\npurchase_price_source = t\npurchase_price_date = t\n" \
	"power_watts_load = 1000\npower_watts_load_source = t\npower_watts_load_date = t\n" \
	"power_watts_idle = 0\npower_watts_idle_source = t\npower_watts_idle_date = t\n" \
	"pue = 1\npue_source = t\npue_date = t\n" \
	"electricity_per_kwh = 1\nelectricity_per_kwh_source = t\nelectricity_per_kwh_date = t\n" \
	"fixed_per_hour = 35\nfixed_per_hour_source = t\nfixed_per_hour_date = t\n"

static void test_capacity(void)
{
	char err[1024] = "";
	hwprof_t hw = profile(NODE);
	CU_ASSERT_EQUAL(hw.rate_busy_micros_per_hour, 36000000);
	CU_ASSERT_EQUAL(hw.rate_idle_micros_per_hour, 35000000);
	pricetab_t *t = pricetab_new();
	CU_ASSERT_PTR_NOT_NULL_FATAL(t);
	CU_ASSERT_EQUAL_FATAL(pricetab_load(t, DEPLOY("prices/fx.conf"), err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(pricetab_load(t, DEPLOY("prices/closed-2024.conf"), err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(pricetab_load(t, DEPLOY("prices/cn-2024-05-after.conf"), err, sizeof(err)), 0);
	pricetab_entry_t dear;
	CU_ASSERT_EQUAL_FATAL(meter_parse_price_entry("120", "dear", NULL, "CNY", "test", &dear, err, sizeof(err)), 0);

	/* 50M output tokens a day at 2048/512, prefill 40,000 and decode
	 * 2,000 tok/s: 97,656.25 requests x (0.0512 + 0.256 s) = 30,000
	 * node-seconds; input 200M tokens. */
	plan_workload_t w = { .out_tokens_per_day = 50e6, .in_per_req = 2048, .out_per_req = 512,
			      .deadline_hours = 24 };
	plan_in_t in = { .work = &w, .currency = "CNY", .prices = t, .n_refs = 3, .one_off_micros = 500000000000ll };
	in.refs[0] = pricetab_find(t, "qwen-long");
	in.refs[1] = pricetab_find(t, "gpt-4o-mini");
	in.refs[2] = &dear;
	CU_ASSERT_PTR_NOT_NULL_FATAL(in.refs[0]);
	CU_ASSERT_PTR_NOT_NULL_FATAL(in.refs[1]);
	plan_row_t row;
	memset(&row, 0, sizeof(row));
	row.speed = (thru_t){ .source = THRU_GIVEN, .phases = true, .prefill_tok_s = 40000, .decode_tok_s = 2000 };
	int r = plan_capacity(&in, &hw, &row, err, sizeof(err));
	if (r < 0)
		fprintf(stderr, "%s\n", err);
	CU_ASSERT_EQUAL_FATAL(r, 0);
	CU_ASSERT_DOUBLE_EQUAL(row.node_seconds_per_day, 30000, 1e-6);
	CU_ASSERT_DOUBLE_EQUAL(row.in_tokens_per_day, 200e6, 1e-3);
	CU_ASSERT_EQUAL(row.nodes, 1);
	CU_ASSERT_DOUBLE_EQUAL(row.utilization, 30000.0 / 86400, 1e-12);
	/* Marginal: 36 CNY/h / (3600 x 2000) x 1e6 = 5 CNY per 1M output;
	 * / (3600 x 40000) x 1e6 = 0.25 per 1M input. */
	CU_ASSERT_DOUBLE_EQUAL(row.marginal_out_per_1m, 5e6, 1e-6);
	CU_ASSERT_DOUBLE_EQUAL(row.marginal_in_per_1m, 0.25e6, 1e-6);
	/* Day: 8.3333 h x 36 + 15.6667 h x 35 = 300 + 548.3333 = 848.3333 CNY;
	 * busy 300, so loaded = marginal x 2.827778; month x 365 / 12. */
	CU_ASSERT_DOUBLE_EQUAL(row.cost_per_day_micros, 848333333.333, 1e-2);
	CU_ASSERT_DOUBLE_EQUAL(row.loaded_out_per_1m, 5e6 * 848.333333333 / 300, 1e-2);
	CU_ASSERT_DOUBLE_EQUAL(row.loaded_in_per_1m * 200 + row.loaded_out_per_1m * 50, row.cost_per_day_micros, 1e-3);
	CU_ASSERT_DOUBLE_EQUAL(row.cost_per_month_micros, 848333333.333 * 365 / 12, 1);

	/* Qwen-Long 0.5/2 CNY: the API costs 200 x 0.5 + 50 x 2 = 200 CNY a
	 * day (ratio 0.2358). Break-even, one node: 35 x 24 = 840 CNY fixed /
	 * (4 x 0.5 + 2 - 1 CNY/h / 3600 x 0.0006 s = 3.833333 micros per
	 * output token) = 219.13M tokens a day > 144M a node can do:
	 * unreachable; no saving, so never recovered. */
	plan_ref_t *q = &row.refs[0];
	CU_ASSERT_EQUAL(row.n_refs, 3);
	CU_ASSERT_DOUBLE_EQUAL(q->api_per_day_micros, 200e6, 1e-3);
	CU_ASSERT_DOUBLE_EQUAL(q->ratio, 200 / 848.333333333, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(q->breakeven_out_tokens_per_day, 840e6 / (4 - 1.0 / 6), 1);
	CU_ASSERT(!q->reachable);
	CU_ASSERT(isinf(q->days_to_recover));
	/* GPT-4o mini 0.15/0.60 USD at 7.2 CNY/USD: 1.08/4.32 CNY; 8.64 micros
	 * per output token; API 432 CNY a day; break-even 840e6 / 8.473333 =
	 * 99.13M tokens a day, within one node's 144M. */
	q = &row.refs[1];
	CU_ASSERT_DOUBLE_EQUAL(q->api_per_day_micros, 432e6, 1e-2);
	CU_ASSERT_DOUBLE_EQUAL(q->breakeven_out_tokens_per_day, 840e6 / (8.64 - 1.0 / 6), 1);
	CU_ASSERT(q->reachable);
	/* 120 CNY per 1M in and out: 30,000 CNY a day; saving 29,151.67;
	 * 500,000 CNY recovered in 17.15 days. */
	q = &row.refs[2];
	CU_ASSERT_DOUBLE_EQUAL(q->api_per_day_micros, 30000e6, 1);
	CU_ASSERT_DOUBLE_EQUAL(q->days_to_recover, 500000 / (30000 - 848.333333333), 1e-6);

	/* Deadline 4 h: 30,000 / 14,400 = 2.083 -> 3 nodes at 69.4%, each
	 * busy 2.7778 h: day = 3 x (2.7778 x 36 + 21.2222 x 35) = 2,528.33. */
	w.deadline_hours = 4;
	CU_ASSERT_EQUAL_FATAL(plan_capacity(&in, &hw, &row, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(row.nodes, 3);
	CU_ASSERT_DOUBLE_EQUAL(row.utilization, 30000.0 / 14400 / 3, 1e-12);
	CU_ASSERT_DOUBLE_EQUAL(row.cost_per_day_micros, 3 * (30000.0 / 3 / 3600 * 36e6 + (24 - 30000.0 / 3 / 3600) * 35e6),
			       1e-2);
	/* Exactly 2 nodes of work stays 2 nodes. */
	w.deadline_hours = 30000.0 / 3600 / 2;
	CU_ASSERT_EQUAL_FATAL(plan_capacity(&in, &hw, &row, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(row.nodes, 2);
	CU_ASSERT_DOUBLE_EQUAL(row.utilization, 1, 1e-9);

	/* Bad workloads are named. */
	w.deadline_hours = 48;
	CU_ASSERT_EQUAL(plan_capacity(&in, &hw, &row, err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "deadline"));
	w.deadline_hours = 24;
	w.out_per_req = 0;
	CU_ASSERT_EQUAL(plan_capacity(&in, &hw, &row, err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "mix"));
	pricetab_destroy(&t);
}

/* The whole question in one call: 50M output tokens a day of a 7B model
 * at 2048/512 within 24 h on 8 x H100, estimated. */
static void test_profile(void)
{
	char err[1024] = "";
	shape_t m;
	hwprof_t hw;
	thru_eff_t eff;
	thru_eff_machine_md(&eff);
	CU_ASSERT_EQUAL_FATAL(shape_preset("llama2-7b", NULL, &m, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(hwprof_load(DEPLOY("hardware/8xh100.conf"), &hw, err, sizeof(err)), 0);
	plan_workload_t w = { .out_tokens_per_day = 50e6, .in_per_req = 2048, .out_per_req = 512,
			      .deadline_hours = 24 };
	plan_in_t in = { .model = &m, .work = &w, .currency = "CNY", .eff = &eff };
	plan_row_t row;
	int r = plan_profile(&in, &hw, NULL, &row, err, sizeof(err));
	if (r < 0)
		fprintf(stderr, "%s\n", err);
	CU_ASSERT_EQUAL_FATAL(r, 0);
	CU_ASSERT_EQUAL(row.fit.max_batch, 466);
	CU_ASSERT(row.fp16);
	CU_ASSERT_EQUAL(row.nodes, 1);
	/* The row's own figures obey the definitions. */
	double s = w.out_tokens_per_day / 512 * (2048 / row.speed.prefill_tok_s + 512 / row.speed.decode_tok_s);
	CU_ASSERT_DOUBLE_EQUAL(row.node_seconds_per_day, s, 1e-6 * s);
	CU_ASSERT_DOUBLE_EQUAL(row.utilization, s / 86400, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(row.marginal_out_per_1m, 67493836.0 / (3600 * row.speed.decode_tok_s) * 1e6, 1e-3);

	/* 70B on one 80 GB H100 is refused, naming weights + KV vs memory. */
	CU_ASSERT_EQUAL_FATAL(shape_preset("llama2-70b", NULL, &m, err, sizeof(err)), 0);
	hwprof_t one = profile(H100_1);
	CU_ASSERT_EQUAL(plan_profile(&in, &one, NULL, &row, err, sizeof(err)), -ENOSPC);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "weights 138.0 GB"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "memory 80.0 GB"));
}

/* Copies src to dir/name, appending extra (a line) when not NULL. */
static int copy_file(const char *src, const char *dir, const char *name, const char *extra, char *path, size_t len)
{
	char buf[4096];
	size_t n;
	snprintf(path, len, "%s/%s", dir, name);
	FILE *in = fopen(src, "r"), *out = fopen(path, "w");
	if (in == NULL || out == NULL)
		return -1;
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		fwrite(buf, 1, n, out);
	if (extra != NULL)
		fprintf(out, "\n%s\n", extra);
	fclose(in);
	return fclose(out);
}

/* The 7B question on this machine's profile with the real bench of
 * llama2-7b taken here attached (bench = FILE): tokens/s measured at the
 * bench's largest batch that fits (8 of the 9 that fit), not estimated,
 * and the nodes and costs follow from those figures. */
static void test_profile_bench(void)
{
	char dir[] = "/tmp/test_plan_XXXXXX", conf[1024], bpath[1024], err[1024] = "";
	CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
	CU_ASSERT_EQUAL_FATAL(copy_file(DATA("bench_llama2_7b_cpu.json"), dir, "llama2-7b.json", NULL, bpath,
					sizeof(bpath)), 0);
	CU_ASSERT_EQUAL_FATAL(copy_file(DEPLOY("hardware/cpu-2vcpu.conf"), dir, "cpu-2vcpu.conf",
					"bench = llama2-7b.json", conf, sizeof(conf)), 0);
	hwprof_t hw;
	int r = hwprof_load(conf, &hw, err, sizeof(err));
	if (r < 0)
		fprintf(stderr, "%s\n", err);
	CU_ASSERT_EQUAL_FATAL(r, 0);
	shape_t m;
	thru_eff_t eff;
	thru_eff_machine_md(&eff);
	CU_ASSERT_EQUAL_FATAL(shape_preset("llama2-7b", NULL, &m, err, sizeof(err)), 0);
	speed_shape_t shape;
	speed_shape_from_model(&m, &shape);
	thru_bench_t *b = malloc(sizeof(*b));
	CU_ASSERT_PTR_NOT_NULL_FATAL(b);
	CU_ASSERT_EQUAL_FATAL(speed_attached_bench(&hw, &shape, b, err, sizeof(err)), 1);

	plan_workload_t w = { .out_tokens_per_day = 50e6, .in_per_req = 2048, .out_per_req = 512,
			      .deadline_hours = 24 };
	plan_in_t in = { .model = &m, .work = &w, .currency = "CNY", .eff = &eff };
	plan_row_t row, est;
	r = plan_profile(&in, &hw, b, &row, err, sizeof(err));
	if (r < 0)
		fprintf(stderr, "%s\n", err);
	CU_ASSERT_EQUAL_FATAL(r, 0);
	/* 9 sequences of 2560 tokens fit 24 GiB; the bench measured batches 1
	 * and 8: batch 8's prefill 8.15124 and decode 7.57068 tok/s. */
	CU_ASSERT_EQUAL(row.fit.max_batch, 9);
	CU_ASSERT_EQUAL(row.batch, 8);
	CU_ASSERT_EQUAL(row.speed.source, THRU_BENCH);
	CU_ASSERT_DOUBLE_EQUAL(row.speed.decode_tok_s, 7.57068, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(row.speed.prefill_tok_s, 8.15124, 1e-9);
	char want[1200];
	snprintf(want, sizeof(want), "measured (bench %s, batch 8)", bpath);
	CU_ASSERT_STRING_EQUAL(row.basis, want);
	CU_ASSERT_PTR_NOT_NULL(strstr(row.speed.why, "the largest batch measured <= the 9 that fit"));
	/* 97,656.25 requests x (2048 / 8.15124 + 512 / 7.57068) s = 31.14M
	 * node-seconds: 361 nodes within a day, 0.8832 CNY/h busy and idle. */
	double s = 50e6 / 512 * (2048 / 8.15124 + 512 / 7.57068);
	CU_ASSERT_DOUBLE_EQUAL(row.node_seconds_per_day, s, 1e-6 * s);
	CU_ASSERT_EQUAL(row.nodes, (uint64_t)ceil(s / 86400));
	CU_ASSERT_EQUAL(row.nodes, 361);
	CU_ASSERT_DOUBLE_EQUAL(row.marginal_out_per_1m, 883200 / (3600 * 7.57068) * 1e6, 1e-3);
	CU_ASSERT_DOUBLE_EQUAL(row.cost_per_day_micros, 361 * 24 * 883200.0, 1e-3);

	/* Without the bench: the estimate at the 9 that fit, named so. */
	CU_ASSERT_EQUAL_FATAL(plan_profile(&in, &hw, NULL, &est, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(est.batch, 9);
	CU_ASSERT_EQUAL(est.speed.source, THRU_ESTIMATED);
	CU_ASSERT_STRING_EQUAL(est.basis, PLAN_BASIS_ESTIMATE);
	CU_ASSERT(est.nodes != row.nodes);

	/* A bench with every run above the batch that fits is set aside. */
	thru_t t;
	uint64_t at;
	CU_ASSERT_EQUAL(plan_bench_speed(b, 7, &t, &at, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(at, 1);
	CU_ASSERT_DOUBLE_EQUAL(t.decode_tok_s, b->runs[0].decode_tok_s, 0);
	b->runs[0].batch = 16;
	b->runs[1].batch = 32;
	CU_ASSERT_EQUAL(plan_bench_speed(b, 9, &t, &at, err, sizeof(err)), -ENOENT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "its smallest is 16"));
	CU_ASSERT_EQUAL_FATAL(plan_profile(&in, &hw, b, &row, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(row.speed.source, THRU_ESTIMATED);
	CU_ASSERT_DOUBLE_EQUAL(row.speed.decode_tok_s, est.speed.decode_tok_s, 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(row.speed.why, "bench set aside"));
	free(b);
	unlink(conf);
	unlink(bpath);
	rmdir(dir);
}

const cu_test_t plan_tests[] = {
	{ "fit", test_fit },
	{ "estimate", test_estimate },
	{ "capacity", test_capacity },
	{ "profile", test_profile },
	{ "profile_bench", test_profile_bench },
	{ NULL, NULL },
};
