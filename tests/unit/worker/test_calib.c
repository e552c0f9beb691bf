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

static void test_save_load(void)
{
	char err[256] = "";
	calib_t c = { .sgemm_gflops = 123.5, .bandwidth_gbs = 41.25, .threads = 3, .measured_at_ns = 1700000000000000000LL };
	const char *p = tmp_path("sub/dir/calib-3.json");	/* directories created */
	CU_ASSERT_EQUAL_FATAL(calib_save(p, &c, err, sizeof(err)), 0);
	calib_t d = { 0 };
	CU_ASSERT_EQUAL_FATAL(calib_load(p, &d, err, sizeof(err)), 0);
	CU_ASSERT_DOUBLE_EQUAL(d.sgemm_gflops, 123.5, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(d.bandwidth_gbs, 41.25, 1e-9);
	CU_ASSERT_EQUAL(d.threads, 3);
	CU_ASSERT_EQUAL(d.measured_at_ns, c.measured_at_ns);

	/* reused by calib_get for the same thread count: no measurement */
	bool measured = true;
	calib_t e = { 0 };
	CU_ASSERT_EQUAL(calib_get(p, 3, false, &e, &measured, err, sizeof(err)), 0);
	CU_ASSERT_FALSE(measured);
	CU_ASSERT_DOUBLE_EQUAL(e.sgemm_gflops, 123.5, 1e-9);
}

static void test_bad_files(void)
{
	char err[256] = "";
	calib_t c;
	CU_ASSERT_EQUAL(calib_load(tmp_path("missing.json"), &c, err, sizeof(err)), -ENOENT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "missing.json"));
	const char *p = tmp_path("bad.json");
	FILE *f = fopen(p, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fputs("{\"sgemm_gflops\": \"fast\", \"threads\": 2}", f);
	fclose(f);
	CU_ASSERT_EQUAL(calib_load(p, &c, err, sizeof(err)), -EBADMSG);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "sgemm_gflops"));
	f = fopen(p, "w");
	fputs("{\"sgemm_gflops\": -1, \"bandwidth_gbs\": 40, \"threads\": 2}", f);
	fclose(f);
	CU_ASSERT_EQUAL(calib_load(p, &c, err, sizeof(err)), -EBADMSG);
	f = fopen(p, "w");
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

/* One real measurement (about a second): in a child process, with the
 * thread count asked, and saved where calib_get was told. */
static void test_measure(void)
{
	char err[256] = "";
	calib_t c = { 0 };
	bool measured = false;
	const char *p = tmp_path("calib-1.json");
	int rc = calib_get(p, 1, true, &c, &measured, err, sizeof(err));
	if (rc < 0)
		fprintf(stderr, "calib_get: %s\n", err);
	CU_ASSERT_EQUAL_FATAL(rc, 0);
	CU_ASSERT_TRUE(measured);
	CU_ASSERT_EQUAL(c.threads, 1);
	CU_ASSERT(c.sgemm_gflops > 0.1);
	CU_ASSERT(c.bandwidth_gbs > 0.1);
	calib_t d;
	CU_ASSERT_EQUAL(calib_load(p, &d, err, sizeof(err)), 0);
	CU_ASSERT_DOUBLE_EQUAL(d.sgemm_gflops, c.sgemm_gflops, 1e-3);
	CU_ASSERT_EQUAL(calib_measure(0, &c, err, sizeof(err)), -EINVAL);
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
static void test_bench_json(void)
{
	char err[256] = "";
	calib_t c = { .sgemm_gflops = 100.0, .bandwidth_gbs = 20.0, .threads = 1, .measured_at_ns = 1 };
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
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(m, "threads")), 1);
	CU_ASSERT(json_integer_value(json_object_get(json_object_get(j, "model"), "n_params")) > 0);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(st, "kv_type")), "q8_0");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(st, "weights")), "auto");
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

	argv[17] = NULL;	/* the table */
	CU_ASSERT_EQUAL_FATAL(run_bench(argv, 17, &out), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "positions of q8_0"));
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
	{ "bench help names documents that exist", test_bench_help_docs },
	{ "save and load", test_save_load },
	{ "bad files", test_bad_files },
	{ "default path", test_default_path },
	{ "measure", test_measure },
	{ NULL, NULL },
};
