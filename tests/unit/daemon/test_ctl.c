/* ctl: the control interface's JSON commands against a real sched. */
#include "ctl.h"
#include "fixture.h"
#include "tests.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *ask(fx_t *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static json_t *ask(fx_t *f, const char *fmt, ...)
{
	char req[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(req, sizeof(req), fmt, ap);
	va_end(ap);
	size_t len = 0;
	char *reply = ctl_handle(f->s, req, strlen(req), f->now, &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(reply);
	CU_ASSERT_EQUAL(strlen(reply), len);
	json_t *o = json_loads(reply, 0, NULL);
	free(reply);
	CU_ASSERT_PTR_NOT_NULL_FATAL(o);
	return o;
}

static const char *err_code(json_t *o)
{
	return json_string_value(json_object_get(json_object_get(o, "error"), "code"));
}

static json_int_t count(json_t *job, const char *k)
{
	return json_integer_value(json_object_get(json_object_get(job, "counts"), k));
}

static void test_submit_status_results(void)
{
	fx_t f;
	sched_params_t p;
	sched_params_default(&p);
	p.shard_max_requests = 2;
	fx_open(&f, &p);
	json_t *lines = fx_lines(5, "m", "q", 8);
	char *lt = json_dumps(lines, JSON_COMPACT);
	json_decref(lines);
	json_t *r = ask(&f, "{\"cmd\":\"submit\",\"id\":\"c1\",\"metadata\":{\"team\":\"a\"},\"requests\":%s}", lt);
	free(lt);
	CU_ASSERT_PTR_NULL(err_code(r));
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r, "id")), "c1");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r, "state")), "in_progress");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r, "model")), "m");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(json_object_get(r, "metadata"), "team")), "a");
	CU_ASSERT_EQUAL(count(r, "total"), 5);
	CU_ASSERT_EQUAL(count(r, "queued"), 5);
	json_decref(r);

	fx_hello(&f, "w", "m", 1);
	fx_credit(&f, "w", 1);
	sched_dispatch(f.s, f.now);
	r = ask(&f, "{\"cmd\":\"status\",\"id\":\"c1\"}");
	CU_ASSERT_EQUAL(count(r, "in_flight"), 2);
	CU_ASSERT_EQUAL(count(r, "queued"), 3);
	json_decref(r);
	const mg_msg_t *a = fx_next(&f, MARGIN__V1__MSG__BODY_ASSIGN, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	fx_result(&f, "w", a->assign);
	r = ask(&f, "{\"cmd\":\"status\",\"id\":\"c1\"}");
	CU_ASSERT_EQUAL(count(r, "done"), 2);
	CU_ASSERT_EQUAL(count(r, "in_flight"), 0);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_object_get(r, "usage"), "calls")), 2);
	json_decref(r);

	r = ask(&f, "{\"cmd\":\"results\",\"id\":\"c1\",\"limit\":3}");
	json_t *res = json_object_get(r, "results");
	CU_ASSERT_EQUAL_FATAL(json_array_size(res), 3);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(json_array_get(res, 0), "text")), "out:q0");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(json_array_get(res, 2), "state")), "queued");
	CU_ASSERT_TRUE(json_is_null(json_object_get(json_array_get(res, 2), "text")));
	CU_ASSERT_TRUE(json_is_true(json_object_get(r, "has_more")));
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(r, "last_line")), 3);
	json_decref(r);
	r = ask(&f, "{\"cmd\":\"results\",\"id\":\"c1\",\"after\":3,\"limit\":3}");
	CU_ASSERT_EQUAL(json_array_size(json_object_get(r, "results")), 2);
	CU_ASSERT_FALSE(json_is_true(json_object_get(r, "has_more")));
	json_decref(r);

	r = ask(&f, "{\"cmd\":\"cancel\",\"id\":\"c1\"}");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r, "state")), "cancelled");
	CU_ASSERT_EQUAL(count(r, "cancelled"), 3);
	json_decref(r);
	r = ask(&f, "{\"cmd\":\"results\",\"id\":\"c1\",\"after\":4}");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(json_array_get(json_object_get(r, "results"), 0), "state")),
			       "cancelled");
	json_decref(r);

	r = ask(&f, "{\"cmd\":\"workers\"}");
	json_t *w0 = json_array_get(json_object_get(r, "workers"), 0);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(w0, "name")), "w");
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(w0, "requests_done")), 2);
	json_t *m0 = json_array_get(json_object_get(w0, "models"), 0);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(m0, "name")), "m");
	/* the worker's memory as its Hello reported it */
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(m0, "kv_type")), "q8_0");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(m0, "arith")), "fast");
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(m0, "kv_bytes")), 4096);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(m0, "weight_bytes")), 8192);
	json_decref(r);
	r = ask(&f, "{\"cmd\":\"health\"}");
	CU_ASSERT_TRUE(json_is_true(json_object_get(r, "ok")));
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(r, "workers")), 1);
	json_decref(r);
	fx_close(&f);
}

static void test_list(void)
{
	fx_t f;
	fx_open(&f, NULL);
	char name[80];
	for (int i = 0; i < 3; i++) {
		char id[8];
		snprintf(id, sizeof(id), "L%d", i);
		fx_submit(&f, id, fx_lines(1, "m", "x", 4), name);
	}
	json_t *r = ask(&f, "{\"cmd\":\"list\",\"limit\":2}");
	json_t *jobs = json_object_get(r, "jobs");
	CU_ASSERT_EQUAL_FATAL(json_array_size(jobs), 2);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(json_array_get(jobs, 0), "id")), "L2");
	CU_ASSERT_TRUE(json_is_true(json_object_get(r, "has_more")));
	json_decref(r);
	r = ask(&f, "{\"cmd\":\"list\",\"after\":\"L1\"}");
	jobs = json_object_get(r, "jobs");
	CU_ASSERT_EQUAL_FATAL(json_array_size(jobs), 1);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(json_array_get(jobs, 0), "id")), "L0");
	CU_ASSERT_FALSE(json_is_true(json_object_get(r, "has_more")));
	json_decref(r);
	fx_close(&f);
}

static void test_errors(void)
{
	fx_t f;
	fx_open(&f, NULL);
	static const struct {
		const char *req, *code;
	} cases[] = {
		{ "not json", "invalid_request" },
		{ "[1]", "invalid_request" },
		{ "{\"cmd\":7}", "invalid_request" },
		{ "{\"cmd\":\"explode\"}", "unknown_command" },
		{ "{\"cmd\":\"status\"}", "invalid_request" },
		{ "{\"cmd\":\"status\",\"id\":\"nope\"}", "not_found" },
		{ "{\"cmd\":\"results\",\"id\":\"nope\"}", "not_found" },
		{ "{\"cmd\":\"submit\"}", "invalid_request" },
		{ "{\"cmd\":\"submit\",\"requests\":[],\"input_path\":\"/x\"}", "invalid_request" },
		{ "{\"cmd\":\"submit\",\"requests\":[]}", "invalid_request" },
		{ "{\"cmd\":\"submit\",\"input_path\":\"relative.jsonl\"}", "invalid_request" },
		{ "{\"cmd\":\"submit\",\"input_path\":\"/nonexistent/in.jsonl\"}", "not_found" },
		{ "{\"cmd\":\"list\",\"limit\":1000}", "invalid_request" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *r = ask(&f, "%s", cases[i].req);
		const char *code = err_code(r);
		if (code == NULL || strcmp(code, cases[i].code) != 0)
			fprintf(stderr, "case %zu (%s): code %s\n", i, cases[i].req, code ? code : "(none)");
		CU_ASSERT_PTR_NOT_NULL(code);
		if (code)
			CU_ASSERT_STRING_EQUAL(code, cases[i].code);
		CU_ASSERT_PTR_NOT_NULL(json_string_value(json_object_get(json_object_get(r, "error"), "message")));
		json_decref(r);
	}
	fx_close(&f);
}

static int ext_calls;

static int ext(void *user, sched_t *s, const char *cmd, json_t *req, int64_t now, json_t **ret)
{
	ext_calls++;
	*ret = json_pack("{s:s, s:s}", "echo", cmd, "tag", (const char *)user);
	return 0;
}

static void test_extension(void)
{
	fx_t f;
	fx_open(&f, NULL);
	CU_ASSERT_EQUAL(ctl_add_extension("test.", ext, "t1"), 0);
	json_t *r = ask(&f, "{\"cmd\":\"test.ping\"}");
	CU_ASSERT_EQUAL(ext_calls, 1);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r, "echo")), "test.ping");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r, "tag")), "t1");
	json_decref(r);
	r = ask(&f, "{\"cmd\":\"health\"}");	/* built-ins still answer */
	CU_ASSERT_TRUE(json_is_true(json_object_get(r, "ok")));
	json_decref(r);
	fx_close(&f);
}

const cu_test_t ctl_tests[] = {
	{ "submit_status_results", test_submit_status_results },
	{ "list", test_list },
	{ "errors", test_errors },
	{ "extension", test_extension },
	{ NULL, NULL },
};
