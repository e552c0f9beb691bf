/* calib: the machine figures are measured (positive, for the thread count
 * asked), kept in a file and reused; a bad file is reported, not used. */
#include "calib.h"
#include "cmds.h"
#include "cu_main.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *tmp_path(const char *name)
{
	static char buf[4][512];
	static int n;
	char *b = buf[n++ % 4];
	snprintf(b, 512, "%s/%s", cu_tmpdir(), name);
	return b;
}

/* A calibration of this CPU with the given figures. */
static calib_t here(int threads, double spread)
{
	calib_t c = { .fma_gflops = 200.0, .int8_gops = 800.0, .bandwidth_gbs = 41.25, .sgemm_gflops = 123.5,
		      .threads = threads, .reps = 7, .spread_pct = spread, .measured_at_ns = 1700000000000000000LL };
	snprintf(c.blas_core, sizeof(c.blas_core), "SkylakeX");
	snprintf(c.fma_kind, sizeof(c.fma_kind), "%s", calib_fma_kind());
	snprintf(c.int8_kind, sizeof(c.int8_kind), "%s", calib_int8_kind());
	calib_cpu_id(c.cpu_model, sizeof(c.cpu_model), c.cpu_flags_key, sizeof(c.cpu_flags_key));
	return c;
}

/* A stand-in for the measurement: returns this CPU's calibration with the
 * next spread of a list, counting the calls. */
static double fake_spreads[8];
static int fake_calls;

static int fake_measure(int threads, calib_t *ret, char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	*ret = here(threads, fake_spreads[fake_calls]);
	ret->fma_gflops += fake_calls;	/* which try it was */
	fake_calls++;
	return 0;
}

static void test_save_load(void)
{
	char err[256] = "";
	calib_t c = here(3, 2.5);
	const char *p = tmp_path("sub/dir/calib-3.json");	/* directories created */
	CU_ASSERT_EQUAL_FATAL(calib_save(p, &c, err, sizeof(err)), 0);
	calib_t d = { 0 };
	CU_ASSERT_EQUAL_FATAL(calib_load(p, &d, err, sizeof(err)), 0);
	CU_ASSERT_DOUBLE_EQUAL(d.fma_gflops, 200.0, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(d.int8_gops, 800.0, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(d.sgemm_gflops, 123.5, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(d.bandwidth_gbs, 41.25, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(d.spread_pct, 2.5, 1e-9);
	CU_ASSERT_STRING_EQUAL(d.blas_core, "SkylakeX");
	CU_ASSERT_STRING_EQUAL(d.cpu_model, c.cpu_model);
	CU_ASSERT_STRING_EQUAL(d.cpu_flags_key, c.cpu_flags_key);
	CU_ASSERT_EQUAL(d.threads, 3);
	CU_ASSERT_EQUAL(d.measured_at_ns, c.measured_at_ns);

	/* the file's keys, by the names other tools read */
	json_error_t je;
	json_t *j = json_load_file(p, 0, &je);
	CU_ASSERT_PTR_NOT_NULL_FATAL(j);
	static const char *const keys[] = { "fma_gflops", "int8_gops", "bandwidth_gbs", "sgemm_gflops", "blas_core",
					    "threads", "measured_at", "spread_pct", "cpu_model", "cpu_flags_key" };
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		if (json_object_get(j, keys[i]) == NULL)
			fprintf(stderr, "calibration file lacks %s\n", keys[i]);
		CU_ASSERT_PTR_NOT_NULL(json_object_get(j, keys[i]));
	}
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "measured_at")), "2023-11-14T22:13:20.000Z");
	json_decref(j);
}

/* A file is reused only by the same CPU model, flags and thread count. */
static void test_cache_key(void)
{
	char err[256] = "";
	bool measured;
	calib_t e;
	calib_set_measure_hook(fake_measure);
	const char *p = tmp_path("key/calib-2.json");
	calib_t c = here(2, 1.0);
	c.fma_gflops = 555.0;
	CU_ASSERT_EQUAL_FATAL(calib_save(p, &c, err, sizeof(err)), 0);

	/* the same: reused, nothing measured */
	fake_calls = 0;
	CU_ASSERT_EQUAL(calib_get(p, 2, false, &e, &measured, err, sizeof(err)), 0);
	CU_ASSERT_FALSE(measured);
	CU_ASSERT_EQUAL(fake_calls, 0);
	CU_ASSERT_DOUBLE_EQUAL(e.fma_gflops, 555.0, 1e-9);

	/* another thread count: measured */
	fake_calls = 0;
	memset(fake_spreads, 0, sizeof(fake_spreads));
	CU_ASSERT_EQUAL(calib_get(p, 1, false, &e, &measured, err, sizeof(err)), 0);
	CU_ASSERT_TRUE(measured);
	CU_ASSERT_EQUAL(fake_calls, 1);
	CU_ASSERT_EQUAL(e.threads, 1);

	/* another CPU model, same threads: measured, and the file replaced */
	c = here(2, 1.0);
	c.fma_gflops = 555.0;
	snprintf(c.cpu_model, sizeof(c.cpu_model), "Another CPU (family 6, model 85)");
	CU_ASSERT_EQUAL_FATAL(calib_save(p, &c, err, sizeof(err)), 0);
	fake_calls = 0;
	CU_ASSERT_EQUAL(calib_get(p, 2, false, &e, &measured, err, sizeof(err)), 0);
	CU_ASSERT_TRUE(measured);
	CU_ASSERT_EQUAL(fake_calls, 1);
	CU_ASSERT_DOUBLE_EQUAL(e.fma_gflops, 200.0, 1e-9);
	calib_t d;
	CU_ASSERT_EQUAL(calib_load(p, &d, err, sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(d.cpu_model, e.cpu_model);

	/* other flags (the same model with AVX-512 off, or another build): measured */
	c = here(2, 1.0);
	snprintf(c.cpu_flags_key, sizeof(c.cpu_flags_key), "avx2 fma | fma:avx2 ymm int8:avx2");
	CU_ASSERT_EQUAL_FATAL(calib_save(p, &c, err, sizeof(err)), 0);
	fake_calls = 0;
	CU_ASSERT_EQUAL(calib_get(p, 2, false, &e, &measured, err, sizeof(err)), 0);
	CU_ASSERT_TRUE(measured);
	CU_ASSERT_EQUAL(fake_calls, 1);

	/* a file of the old format (sgemm and bandwidth only): measured */
	FILE *f = fopen(p, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fputs("{\"sgemm_gflops\": 64.0, \"bandwidth_gbs\": 27.0, \"threads\": 2}", f);
	fclose(f);
	fake_calls = 0;
	CU_ASSERT_EQUAL(calib_get(p, 2, false, &e, &measured, err, sizeof(err)), 0);
	CU_ASSERT_TRUE(measured);
	CU_ASSERT_EQUAL(fake_calls, 1);
	calib_set_measure_hook(NULL);
}

/* Repetitions that spread more than 10%: measured again, up to 3 times;
 * never steady: the steadiest returned, marked unreliable, not saved. */
static void test_spread_rule(void)
{
	char err[256] = "";
	double rate, spread;
	/* 4 reps of 1 unit: rates 1, 1, 1, 0.8 -> median 1, spread 20% */
	const double secs[] = { 1.0, 1.0, 1.0, 1.25 };
	CU_ASSERT_EQUAL(calib_rates(secs, 4, 1.0, &rate, &spread), 0);
	CU_ASSERT_DOUBLE_EQUAL(rate, 1.0, 1e-12);
	CU_ASSERT_DOUBLE_EQUAL(spread, 20.0, 1e-9);
	const double steady[] = { 0.5, 0.51, 0.49 };	/* 2 units: 4, 3.92, 4.08 */
	CU_ASSERT_EQUAL(calib_rates(steady, 3, 2.0, &rate, &spread), 0);
	CU_ASSERT_DOUBLE_EQUAL(rate, 4.0, 1e-9);
	CU_ASSERT(spread < 10.0);
	const double bad[] = { 1.0, 0.0 };
	CU_ASSERT_EQUAL(calib_rates(bad, 2, 1.0, &rate, &spread), -EINVAL);

	calib_set_measure_hook(fake_measure);
	bool measured;
	calib_t e;
	const char *p = tmp_path("spread/calib-1.json");
	/* busy, then steady: the second try is taken and saved */
	fake_calls = 0;
	fake_spreads[0] = 25.0;
	fake_spreads[1] = 4.0;
	CU_ASSERT_EQUAL(calib_get(p, 1, true, &e, &measured, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(fake_calls, 2);
	CU_ASSERT_EQUAL(e.tries, 2);
	CU_ASSERT_FALSE(e.unreliable);
	CU_ASSERT_DOUBLE_EQUAL(e.spread_pct, 4.0, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(e.fma_gflops, 201.0, 1e-9);
	calib_t d;
	CU_ASSERT_EQUAL(calib_load(p, &d, err, sizeof(err)), 0);
	CU_ASSERT_DOUBLE_EQUAL(d.spread_pct, 4.0, 1e-9);

	/* busy three times: the steadiest (12%), unreliable, not saved */
	const char *q = tmp_path("spread/calib-busy-1.json");
	fake_calls = 0;
	fake_spreads[0] = 25.0;
	fake_spreads[1] = 12.0;
	fake_spreads[2] = 30.0;
	fake_spreads[3] = 1.0;	/* never reached */
	CU_ASSERT_EQUAL(calib_get(q, 1, false, &e, &measured, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(fake_calls, 3);
	CU_ASSERT_EQUAL(e.tries, 3);
	CU_ASSERT_TRUE(e.unreliable);
	CU_ASSERT_DOUBLE_EQUAL(e.spread_pct, 12.0, 1e-9);
	CU_ASSERT_EQUAL(calib_load(q, &d, err, sizeof(err)), -ENOENT);
	/* ...and an unreliable one is never reused: the next call measures */
	fake_calls = 0;
	fake_spreads[0] = 2.0;
	CU_ASSERT_EQUAL(calib_get(q, 1, false, &e, &measured, err, sizeof(err)), 0);
	CU_ASSERT_TRUE(measured);
	CU_ASSERT_EQUAL(fake_calls, 1);
	CU_ASSERT_FALSE(e.unreliable);
	calib_set_measure_hook(NULL);
}

static void test_bad_files(void)
{
	char err[256] = "";
	calib_t c;
	CU_ASSERT_EQUAL(calib_load(tmp_path("missing.json"), &c, err, sizeof(err)), -ENOENT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "missing.json"));
	char p[512], q[512];
	snprintf(p, sizeof(p), "%s", tmp_path("bad.json"));
	snprintf(q, sizeof(q), "%s", tmp_path("bad2.json"));
	calib_t good = here(2, 1.0);
	CU_ASSERT_EQUAL_FATAL(calib_save(p, &good, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(calib_load(p, &c, err, sizeof(err)), 0);
	/* each key wrong in turn: named in the error */
	static const char *const breaks[][2] = {
		{ "fma_gflops", "\"fast\"" }, { "int8_gops", "-1" }, { "bandwidth_gbs", "0" },
		{ "threads", "1.5" }, { "cpu_model", "7" }, { "blas_core", "null" }, { "spread_pct", "-3" },
	};
	for (size_t i = 0; i < sizeof(breaks) / sizeof(breaks[0]); i++) {
		json_error_t je;
		json_t *j = json_load_file(p, 0, &je);
		CU_ASSERT_PTR_NOT_NULL_FATAL(j);
		json_object_set_new(j, breaks[i][0], json_loads(breaks[i][1], JSON_DECODE_ANY, &je));
		CU_ASSERT_EQUAL_FATAL(json_dump_file(j, q, 0), 0);
		json_decref(j);
		err[0] = '\0';
		CU_ASSERT_EQUAL(calib_load(q, &c, err, sizeof(err)), -EBADMSG);
		if (strstr(err, breaks[i][0]) == NULL)
			fprintf(stderr, "key %zu: error '%s' does not name the key\n", i, err);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, breaks[i][0]));
	}
	FILE *f = fopen(p, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fputs("not json", f);
	fclose(f);
	CU_ASSERT_EQUAL(calib_load(p, &c, err, sizeof(err)), -EBADMSG);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "bad.json:1"));
}

static void test_default_path(void)
{
	char buf[512];
	const char *old = getenv("XDG_CACHE_HOME");
	char *saved = old ? strdup(old) : NULL;
	setenv("XDG_CACHE_HOME", "/var/cache/x", 1);
	CU_ASSERT_EQUAL(calib_default_path(4, buf, sizeof(buf)), 0);
	CU_ASSERT_STRING_EQUAL(buf, "/var/cache/x/margin/calib-4.json");
	CU_ASSERT_EQUAL(calib_default_path(4, buf, 10), -ENAMETOOLONG);
	if (saved != NULL) {
		setenv("XDG_CACHE_HOME", saved, 1);
		free(saved);
	} else {
		unsetenv("XDG_CACHE_HOME");
	}
}

/* One real measurement (a few seconds), in a child process: every figure
 * positive, the kinds this build uses, this CPU's identity, OpenBLAS's
 * core named; where the build has VNNI, the int8 peak counts more ops than
 * the f32 FMA peak (64 multiply-adds per instruction against 16). Sanity,
 * not timing. */
static void test_measure(void)
{
	char err[256] = "";
	calib_t c = { 0 };
	int rc = calib_measure_isolated(1, &c, err, sizeof(err));
	if (rc < 0)
		fprintf(stderr, "calib_measure_isolated: %s\n", err);
	CU_ASSERT_EQUAL_FATAL(rc, 0);
	CU_ASSERT_EQUAL(c.threads, 1);
	CU_ASSERT(c.fma_gflops > 0.1);
	CU_ASSERT(c.int8_gops > 0.1);
	CU_ASSERT(c.bandwidth_gbs > 0.1);
	CU_ASSERT(c.sgemm_gflops > 0.1);
	CU_ASSERT(c.spread_pct >= 0);
	CU_ASSERT_EQUAL(c.reps, 7);
	CU_ASSERT(c.blas_core[0] != '\0');
	CU_ASSERT_STRING_EQUAL(c.fma_kind, calib_fma_kind());
	char model[96], flags[96];
	calib_cpu_id(model, sizeof(model), flags, sizeof(flags));
	CU_ASSERT_STRING_EQUAL(c.cpu_model, model);
	CU_ASSERT_STRING_EQUAL(c.cpu_flags_key, flags);
#if defined(__AVX512F__)
	CU_ASSERT_STRING_EQUAL(calib_fma_kind(), "avx512 zmm");
#endif
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
	CU_ASSERT_PTR_NOT_NULL(strstr(calib_int8_kind(), "vpdpbusd"));
	if (!(c.int8_gops > c.fma_gflops))
		fprintf(stderr, "int8 %.1f GOP/s is not above FMA %.1f GFLOP/s\n", c.int8_gops, c.fma_gflops);
	CU_ASSERT(c.int8_gops > c.fma_gflops);
#endif
	CU_ASSERT_EQUAL(calib_measure(0, &c, err, sizeof(err)), -EINVAL);
}

/* The core type to restart OpenBLAS with. */
static void test_blas_core_fix(void)
{
	/* generic fallbacks on AVX-512 and AVX2 CPUs */
	CU_ASSERT_STRING_EQUAL(calib_blas_core_fix("Prescott", true, true, NULL, NULL), "SkylakeX");
	CU_ASSERT_STRING_EQUAL(calib_blas_core_fix("Core2", false, true, NULL, NULL), "Haswell");
	CU_ASSERT_STRING_EQUAL(calib_blas_core_fix("Nehalem", true, true, "", NULL), "SkylakeX");
	/* an older family's core on an AVX-512 CPU it does not know */
	CU_ASSERT_STRING_EQUAL(calib_blas_core_fix("Haswell", true, true, NULL, NULL), "SkylakeX");
	/* the right core, or a CPU with nothing better: kept */
	CU_ASSERT_PTR_NULL(calib_blas_core_fix("SkylakeX", true, true, NULL, NULL));
	CU_ASSERT_PTR_NULL(calib_blas_core_fix("Haswell", false, true, NULL, NULL));
	CU_ASSERT_PTR_NULL(calib_blas_core_fix("Prescott", false, false, NULL, NULL));
	CU_ASSERT_PTR_NULL(calib_blas_core_fix("ARMV8", true, true, NULL, NULL));
	/* a forced generic core is overridden; any other forced one respected */
	CU_ASSERT_STRING_EQUAL(calib_blas_core_fix("Prescott", true, true, "Prescott", NULL), "SkylakeX");
	CU_ASSERT_PTR_NULL(calib_blas_core_fix("Haswell", true, true, "Haswell", NULL));
	/* the opt-out */
	CU_ASSERT_PTR_NULL(calib_blas_core_fix("Prescott", true, true, "Prescott", "keep"));
	CU_ASSERT_TRUE(calib_blas_core_is_generic("Prescott"));
	CU_ASSERT_FALSE(calib_blas_core_is_generic("SkylakeX"));
}

/* Runs a shell command, returns its stdout and stderr together. */
static char *run_shell(const char *cmd)
{
	FILE *f = popen(cmd, "r");
	if (f == NULL)
		return NULL;
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap);
	for (size_t r; buf != NULL && (r = fread(buf + n, 1, cap - 1 - n, f)) > 0;)
		n += r;
	pclose(f);
	if (buf != NULL)
		buf[n] = '\0';
	return buf;
}

static int count(const char *s, const char *what)
{
	int n = 0;
	for (const char *p = s; (p = strstr(p, what)) != NULL; p += strlen(what))
		n++;
	return n;
}

/* margin-worker under a forced generic OPENBLAS_CORETYPE: it restarts once
 * with the CPU's core, says so once, and the sgemm line is that core's;
 * MARGIN_OPENBLAS_CORETYPE=keep keeps the forced one. */
static void test_blas_core_restart(void)
{
	const char *want = __builtin_cpu_supports("avx512f") ? "SkylakeX"
			 : __builtin_cpu_supports("avx2") ? "Haswell" : "Prescott";
	char cmd[2048];
	const char *base = "env -u MARGIN_OPENBLAS_RESTARTED -u MARGIN_OPENBLAS_CORETYPE MARGIN_LOG_LEVEL=info "
			   "OPENBLAS_CORETYPE=Prescott";
	snprintf(cmd, sizeof(cmd), "%s %s bench --calibrate-only --json --threads 1 --calib %s 2>&1", base,
		 MARGIN_WORKER_BIN, tmp_path("restart/calib-1.json"));
	char *out = run_shell(cmd);
	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	const char *brace = strstr(out, "{\"machine\"");
	if (brace == NULL)
		fprintf(stderr, "%s printed:\n%s\n", cmd, out);
	CU_ASSERT_PTR_NOT_NULL_FATAL(brace);
	json_error_t je;
	json_t *j = json_loadb(brace, strcspn(brace, "\n"), 0, &je);
	CU_ASSERT_PTR_NOT_NULL_FATAL(j);
	const char *core = json_string_value(json_object_get(json_object_get(j, "machine"), "blas_core"));
	CU_ASSERT_PTR_NOT_NULL_FATAL(core);
	if (core == NULL)	/* not reached: the compiler does not know the FATAL assert returns */
		return;
	if (strcmp(core, want) != 0)
		fprintf(stderr, "sgemm ran on OpenBLAS core %s, expected %s:\n%s\n", core, want, out);
	CU_ASSERT_STRING_EQUAL(core, want);
	int lines = count(out, "comp=openblas");
	CU_ASSERT_EQUAL(lines, strcmp(want, "Prescott") != 0 ? 1 : 0);
	if (strcmp(want, "Prescott") != 0) {
		CU_ASSERT_EQUAL(count(out, "core Prescott is a generic fallback"), 1);
		CU_ASSERT_EQUAL(count(out, "OPENBLAS_CORETYPE="), 2);	/* the override note and the new value */
	}
	json_decref(j);
	free(out);

	/* the opt-out: no restart (a usage error after the check keeps it quick) */
	snprintf(cmd, sizeof(cmd), "%s MARGIN_OPENBLAS_CORETYPE=keep %s bench --calibrate-only --threads 0 2>&1", base,
		 MARGIN_WORKER_BIN);
	out = run_shell(cmd);
	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	CU_ASSERT_EQUAL(count(out, "comp=openblas"), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "bad value '0' for --threads"));
	/* ...and without it, the same command restarts once */
	free(out);
	snprintf(cmd, sizeof(cmd), "%s %s bench --calibrate-only --threads 0 2>&1", base, MARGIN_WORKER_BIN);
	out = run_shell(cmd);
	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	CU_ASSERT_EQUAL(count(out, "comp=openblas"), strcmp(want, "Prescott") != 0 ? 1 : 0);
	free(out);
}

static int run_bench(char **argv, int argc, char **out)
{
	return cu_run_captured(cmd_bench, argc, argv, out, NULL);
}

/* bench --json on the tiny preset with a saved calibration: the DESIGN.md
 * shape, the hardware profile it was told ("unknown" when not), the
 * settings it ran with (the KV type among them), one run per batch size
 * with positive figures; the table names the KV type; a bad --kv is a
 * usage error. */
/* bench --profile: every phase of model_forward is in each run's
 * "profile", none negative, the matrix products and attention took time,
 * and the phases with the engine's share add up to the decode step they
 * split (the same repetition); the text has the two tables. Without the
 * flag there is no "profile". */
static void test_bench_profile(void)
{
	char err[256] = "";
	calib_t c = here(2, 1.0);	/* the threads of the run: nothing is measured */
	const char *cal = tmp_path("bench-calib-prof.json");
	CU_ASSERT_EQUAL_FATAL(calib_save(cal, &c, err, sizeof(err)), 0);
	char *argv[] = { "bench", "--arch", "tiny", "--batch", "1,3", "--prompt-len", "8", "--gen-len", "4",
			 "--reps", "3", "--threads", "2", "--calib", (char *)cal, "--profile", "--json", NULL };
	char *out = NULL;
	CU_ASSERT_EQUAL_FATAL(run_bench(argv, 17, &out), 0);
	json_error_t je;
	json_t *j = json_loads(out, 0, &je);
	if (j == NULL)
		fprintf(stderr, "bench --profile --json printed: %s\n", out);
	CU_ASSERT_PTR_NOT_NULL_FATAL(j);
	json_t *runs = json_object_get(j, "runs");
	CU_ASSERT_EQUAL_FATAL(json_array_size(runs), 2);
	static const char *const phases[] = { "qkv", "attention", "attn_output", "gate_up", "ffn_down",
					      "output_head", "row_wise" };
	for (size_t i = 0; i < 2; i++) {
		json_t *p = json_object_get(json_array_get(runs, i), "profile");
		CU_ASSERT_PTR_NOT_NULL_FATAL(p);
		json_t *d = json_object_get(p, "decode_ms"), *pre = json_object_get(p, "prefill_us");
		CU_ASSERT_PTR_NOT_NULL_FATAL(d);
		CU_ASSERT_PTR_NOT_NULL_FATAL(pre);
		double step = json_real_value(json_object_get(p, "decode_step_ms")), sum = 0, pre_sum = 0;
		CU_ASSERT(step > 0);
		for (size_t k = 0; k < sizeof(phases) / sizeof(phases[0]); k++) {
			json_t *v = json_object_get(d, phases[k]), *pv = json_object_get(pre, phases[k]);
			CU_ASSERT_PTR_NOT_NULL_FATAL(v);
			CU_ASSERT_PTR_NOT_NULL_FATAL(pv);
			CU_ASSERT(json_real_value(v) >= 0 && json_real_value(pv) >= 0);
			sum += json_real_value(v);
			pre_sum += json_real_value(pv);
		}
		CU_ASSERT(json_real_value(json_object_get(d, "attention")) > 0);
		CU_ASSERT(json_real_value(json_object_get(d, "gate_up")) > 0);
		CU_ASSERT(json_real_value(json_object_get(pre, "qkv")) > 0);
		double eng = json_real_value(json_object_get(d, "engine"));
		CU_ASSERT(eng >= 0);
		/* the forward's phases and the engine's share are the step */
		CU_ASSERT(sum + eng <= step * 1.0001 + 1e-6);
		CU_ASSERT(sum + eng >= step * 0.9);
		CU_ASSERT(pre_sum <= json_real_value(json_object_get(p, "prefill_us_per_token")) * 1.0001 + 1e-6);
		CU_ASSERT(pre_sum > 0);
	}
	json_decref(j);
	free(out);
	argv[16] = NULL;	/* the text */
	CU_ASSERT_EQUAL_FATAL(run_bench(argv, 16, &out), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "where the time goes"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "decode, ms per step"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "prefill, us per token"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "  attention "));
	free(out);
	char *argv_off[] = { "bench", "--arch", "tiny", "--batch", "1", "--prompt-len", "4", "--gen-len", "2",
			     "--reps", "1", "--threads", "2", "--calib", (char *)cal, "--json", NULL };
	CU_ASSERT_EQUAL_FATAL(run_bench(argv_off, 16, &out), 0);
	j = json_loads(out, 0, &je);
	CU_ASSERT_PTR_NOT_NULL_FATAL(j);
	CU_ASSERT_PTR_NULL(json_object_get(json_array_get(json_object_get(j, "runs"), 0), "profile"));
	CU_ASSERT_PTR_NULL(strstr(out, "where the time goes"));
	json_decref(j);
	free(out);
}

static void test_bench_json(void)
{
	char err[256] = "";
	calib_t c = here(1, 1.0);
	c.sgemm_gflops = 100.0;
	c.bandwidth_gbs = 20.0;
	const char *cal = tmp_path("bench-calib-1.json");
	CU_ASSERT_EQUAL_FATAL(calib_save(cal, &c, err, sizeof(err)), 0);
	char *argv[] = { "bench", "--arch", "tiny", "--batch", "1,2", "--prompt-len", "4", "--gen-len", "2",
			 "--reps", "1", "--threads", "1", "--kv", "q8_0", "--calib", (char *)cal, "--json", NULL };
	char *out = NULL;
	CU_ASSERT_EQUAL_FATAL(run_bench(argv, 18, &out), 0);
	json_error_t je;
	json_t *j = json_loads(out, 0, &je);
	if (j == NULL)
		fprintf(stderr, "bench --json printed: %s\n", out);
	CU_ASSERT_PTR_NOT_NULL_FATAL(j);
	json_t *m = json_object_get(j, "machine"), *st = json_object_get(j, "settings");
	CU_ASSERT_DOUBLE_EQUAL(json_real_value(json_object_get(m, "sgemm_gflops")), 100.0, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(json_real_value(json_object_get(m, "fma_gflops")), 200.0, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(json_real_value(json_object_get(m, "int8_gops")), 800.0, 1e-9);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(m, "threads")), 1);
	CU_ASSERT_FALSE(json_is_true(json_object_get(m, "calibrated_now")));	/* the file was used */
	static const char *const mkeys[] = { "fma_gflops", "int8_gops", "bandwidth_gbs", "sgemm_gflops", "blas_core",
					     "threads", "measured_at", "spread_pct", "cpu_model", "cpu_flags_key" };
	for (size_t i = 0; i < sizeof(mkeys) / sizeof(mkeys[0]); i++) {
		if (json_object_get(m, mkeys[i]) == NULL)
			fprintf(stderr, "bench --json machine lacks %s\n", mkeys[i]);
		CU_ASSERT_PTR_NOT_NULL(json_object_get(m, mkeys[i]));
	}
	CU_ASSERT(json_integer_value(json_object_get(json_object_get(j, "model"), "n_params")) > 0);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(st, "kv_type")), "q8_0");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(st, "weights")), "auto");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(st, "roofline_peak")), "fma_gflops");
	CU_ASSERT(json_integer_value(json_object_get(st, "kv_bytes")) > 0);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(st, "prompt_len")), 4);
	json_t *runs = json_object_get(j, "runs");
	CU_ASSERT_EQUAL_FATAL(json_array_size(runs), 2);
	for (size_t i = 0; i < 2; i++) {
		json_t *r = json_array_get(runs, i);
		CU_ASSERT_EQUAL(json_integer_value(json_object_get(r, "batch")), (json_int_t)i + 1);
		CU_ASSERT(json_real_value(json_object_get(r, "decode_tok_s")) > 0);
		CU_ASSERT(json_real_value(json_object_get(r, "prefill_tok_s")) > 0);
		CU_ASSERT(json_real_value(json_object_get(r, "peak_rss_mb")) > 0);
	}
	/* Which machine: unknown unless --hardware names its profile. */
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "hardware")), "unknown");
	json_decref(j);
	free(out);
	char *argv_hw[] = { "bench", "--arch", "tiny", "--batch", "1", "--prompt-len", "4", "--gen-len", "2", "--reps",
			    "1", "--threads", "1", "--calib", (char *)cal, "--hardware", "cpu-2vcpu", "--json", NULL };
	CU_ASSERT_EQUAL_FATAL(run_bench(argv_hw, 18, &out), 0);
	j = json_loads(out, 0, &je);
	CU_ASSERT_PTR_NOT_NULL_FATAL(j);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "hardware")), "cpu-2vcpu");
	json_decref(j);
	free(out);
	/* quantized matrices: the rooflines are against the int8 peak */
	char *argv_q[] = { "bench", "--arch", "tiny", "--batch", "1", "--prompt-len", "4", "--gen-len", "2", "--reps",
			   "1", "--threads", "1", "--calib", (char *)cal, "--weights", "q8_0", "--json", NULL };
	CU_ASSERT_EQUAL_FATAL(run_bench(argv_q, 18, &out), 0);
	j = json_loads(out, 0, &je);
	CU_ASSERT_PTR_NOT_NULL_FATAL(j);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(json_object_get(j, "settings"), "roofline_peak")),
			       "int8_gops");
	json_decref(j);
	free(out);

	argv[17] = NULL;	/* the table */
	CU_ASSERT_EQUAL_FATAL(run_bench(argv, 17, &out), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "positions of q8_0"));
	/* the ceilings, and when and how they were measured */
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "f32 FMA peak      200.0 GFLOP/s"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "int8 dot peak     800.0 GOP/s"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "OpenBLAS core SkylakeX"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "cached: measured at 2023-11-14T22:13:20.000Z, medians of 7 repetitions"));
	free(out);

	/* Ceilings far below what runs: every percentage above 100% has its
	 * line of explanation under the row. */
	c.fma_gflops = c.int8_gops = c.bandwidth_gbs = 0.001;
	CU_ASSERT_EQUAL_FATAL(calib_save(cal, &c, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(run_bench(argv, 17, &out), 0);
	/* figures above 100% in the rows, and note lines */
	int over = 0, notes = 0;
	for (const char *line = out; *line != '\0';) {
		size_t len = strcspn(line, "\n");
		if (strncmp(line, "       ^ ", 9) == 0)
			notes++;
		else
			for (const char *p = line; p < line + len; p++) {
				if (*p != '%')
					continue;
				const char *b = p;
				while (b > line && (b[-1] == '.' || (b[-1] >= '0' && b[-1] <= '9')))
					b--;
				if (b < p && atof(b) > 100.0)
					over++;
			}
		line += len + (line[len] == '\n');
	}
	CU_ASSERT(over > 0);
	CU_ASSERT_EQUAL(over, notes);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "^ prefill"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "^ decode"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "^ bandwidth"));
	free(out);

	argv[14] = "q4";
	CU_ASSERT_EQUAL(run_bench(argv, 17, &out), 2);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "bad value 'q4' for --kv"));
	free(out);
}

/* bench --help sends the reader to documents that exist in the source
 * tree (it once named a DESIGN.md the tree does not have). */
static void test_bench_help_docs(void)
{
	char *argv[] = { "bench", "--help", NULL }, *out = NULL;
	CU_ASSERT_EQUAL(run_bench(argv, 2, &out), 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	int named = 0;
	for (const char *p = out; (p = strstr(p, ".md")) != NULL; p += 3) {
		const char *b = p;
		while (b > out && (b[-1] == '/' || b[-1] == '_' || b[-1] == '-' || (b[-1] >= 'a' && b[-1] <= 'z') ||
				   (b[-1] >= 'A' && b[-1] <= 'Z')))
			b--;
		char path[1024];
		snprintf(path, sizeof(path), "%s/%.*s.md", MARGIN_SOURCE_ROOT, (int)(p - b), b);
		FILE *f = fopen(path, "r");
		if (f == NULL)
			fprintf(stderr, "bench --help names %.*s.md: not in the source tree\n", (int)(p - b), b);
		CU_ASSERT_PTR_NOT_NULL(f);
		if (f != NULL)
			fclose(f);
		named++;
	}
	CU_ASSERT(named > 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "docs/bench.md"));
	free(out);
}

const cu_test_t calib_tests[] = {
	{ "bench json", test_bench_json },
	{ "bench profile", test_bench_profile },
	{ "bench help names documents that exist", test_bench_help_docs },
	{ "save and load", test_save_load },
	{ "cache key", test_cache_key },
	{ "spread rule", test_spread_rule },
	{ "blas core fix", test_blas_core_fix },
	{ "blas core restart", test_blas_core_restart },
	{ "bad files", test_bad_files },
	{ "default path", test_default_path },
	{ "measure", test_measure },
	{ NULL, NULL },
};
