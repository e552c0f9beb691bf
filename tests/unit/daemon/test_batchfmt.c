/* batchfmt: OpenAI Batch API shapes and line checks, as an SDK reads them. */
#include "cu_main.h"
#include "batchfmt.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

extern const cu_test_t batchfmt_tests[];

static json_t *parse_line(const char *line)
{
	size_t n = strlen(line);
	CU_ASSERT_TRUE_FATAL(n > 0 && line[n - 1] == '\n');
	CU_ASSERT_PTR_NULL(memchr(line, '\n', n - 1));	/* one line */
	json_t *o = json_loadb(line, n - 1, JSON_REJECT_DUPLICATES, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(o);
	return o;
}

static const char *sget(json_t *o, const char *path)
{
	/* "a.b.c" through objects. */
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", path);
	json_t *cur = o;
	for (char *tok = strtok(buf, "."); tok && cur; tok = strtok(NULL, "."))
		cur = json_object_get(cur, tok);
	return json_string_value(cur);
}

static json_int_t iget(json_t *o, const char *path)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", path);
	json_t *cur = o;
	for (char *tok = strtok(buf, "."); tok && cur; tok = strtok(NULL, "."))
		cur = json_object_get(cur, tok);
	CU_ASSERT_TRUE(json_is_integer(cur));
	return json_integer_value(cur);
}

static void test_completion_bodies(void)
{
	batchfmt_completion_t c = { BATCHFMT_EP_COMPLETIONS, "cmpl-1", "llama-110m", 1730000000,
				    " Paris.", "length", 6, 3 };
	json_t *b = batchfmt_completion_body(&c);
	CU_ASSERT_PTR_NOT_NULL_FATAL(b);
	CU_ASSERT_STRING_EQUAL(sget(b, "object"), "text_completion");
	CU_ASSERT_STRING_EQUAL(sget(b, "model"), "llama-110m");
	CU_ASSERT_EQUAL(iget(b, "created"), 1730000000);
	json_t *ch = json_array_get(json_object_get(b, "choices"), 0);
	CU_ASSERT_STRING_EQUAL(sget(ch, "text"), " Paris.");
	CU_ASSERT_STRING_EQUAL(sget(ch, "finish_reason"), "length");
	CU_ASSERT_EQUAL(iget(ch, "index"), 0);
	CU_ASSERT_TRUE(json_is_null(json_object_get(ch, "logprobs")));
	CU_ASSERT_EQUAL(iget(b, "usage.prompt_tokens"), 6);
	CU_ASSERT_EQUAL(iget(b, "usage.completion_tokens"), 3);
	CU_ASSERT_EQUAL(iget(b, "usage.total_tokens"), 9);
	json_decref(b);

	c.endpoint = BATCHFMT_EP_CHAT;
	c.finish_reason = "";
	b = batchfmt_completion_body(&c);
	CU_ASSERT_STRING_EQUAL(sget(b, "object"), "chat.completion");
	ch = json_array_get(json_object_get(b, "choices"), 0);
	CU_ASSERT_STRING_EQUAL(sget(ch, "message.role"), "assistant");
	CU_ASSERT_STRING_EQUAL(sget(ch, "message.content"), " Paris.");
	CU_ASSERT_STRING_EQUAL(sget(ch, "finish_reason"), "stop");
	CU_ASSERT_PTR_NULL(json_object_get(ch, "text"));
	json_decref(b);
}

static void test_output_line(void)
{
	batchfmt_result_t r = { .batch_id = "batch_x", .endpoint = BATCHFMT_EP_CHAT,
				.model = "llama-110m", .created = 1, .line_no = 3, .custom_id = "req-3",
				.state = "done", .text = "hi", .finish_reason = "stop",
				.prompt_tokens = 10, .completion_tokens = 2 };
	char *line = NULL;
	size_t len = 0;
	CU_ASSERT_EQUAL(batchfmt_result_line(&r, &line, &len), 1);
	CU_ASSERT_EQUAL(strlen(line), len);
	json_t *o = parse_line(line);
	CU_ASSERT_STRING_EQUAL(sget(o, "custom_id"), "req-3");
	CU_ASSERT_EQUAL(strncmp(sget(o, "id"), "batch_req_", 10), 0);
	CU_ASSERT_EQUAL(iget(o, "response.status_code"), 200);
	CU_ASSERT_PTR_NOT_NULL(sget(o, "response.request_id"));
	CU_ASSERT_STRING_EQUAL(sget(o, "response.body.object"), "chat.completion");
	CU_ASSERT_EQUAL(iget(o, "response.body.usage.total_tokens"), 12);
	CU_ASSERT_TRUE(json_is_null(json_object_get(o, "error")));
	/* The same request formats to the same bytes; another line gets
	 * another id. */
	char *again = NULL, *other = NULL;
	CU_ASSERT_EQUAL(batchfmt_result_line(&r, &again, NULL), 1);
	CU_ASSERT_STRING_EQUAL(line, again);
	r.line_no = 4;
	CU_ASSERT_EQUAL(batchfmt_result_line(&r, &other, NULL), 1);
	json_t *o2 = parse_line(other);
	CU_ASSERT_STRING_NOT_EQUAL(sget(o, "id"), sget(o2, "id"));
	json_decref(o);
	json_decref(o2);
	free(line);
	free(again);
	free(other);
}

static void test_error_lines(void)
{
	char *line = NULL;
	/* A line refused by validation: an HTTP-style 400 with its line number. */
	batchfmt_result_t r = { .batch_id = "b", .line_no = 7, .custom_id = NULL, .state = "invalid",
				.error_code = "invalid_request", .error_message = "method: expected \"POST\"" };
	CU_ASSERT_EQUAL(batchfmt_result_line(&r, &line, NULL), 0);
	json_t *o = parse_line(line);
	CU_ASSERT_TRUE(json_is_null(json_object_get(o, "custom_id")));
	CU_ASSERT_EQUAL(iget(o, "response.status_code"), 400);
	CU_ASSERT_STRING_EQUAL(sget(o, "response.body.error.message"), "line 7: method: expected \"POST\"");
	CU_ASSERT_STRING_EQUAL(sget(o, "response.body.error.type"), "invalid_request_error");
	CU_ASSERT_TRUE(json_is_null(json_object_get(o, "error")));
	json_decref(o);
	free(line);

	/* A request the worker failed: no response, error {code, message}. */
	batchfmt_result_t f = { .batch_id = "b", .line_no = 2, .custom_id = "c2", .state = "failed",
				.error_code = "no_chat_template",
				.error_message = "model x has no chat template" };
	CU_ASSERT_EQUAL(batchfmt_result_line(&f, &line, NULL), 0);
	o = parse_line(line);
	CU_ASSERT_TRUE(json_is_null(json_object_get(o, "response")));
	CU_ASSERT_STRING_EQUAL(sget(o, "error.code"), "no_chat_template");
	CU_ASSERT_STRING_EQUAL(sget(o, "error.message"), "model x has no chat template");
	json_decref(o);
	free(line);

	/* Never run: cancelled, or expired. */
	batchfmt_result_t q = { .batch_id = "b", .line_no = 9, .custom_id = "c9", .state = "queued" };
	CU_ASSERT_EQUAL(batchfmt_result_line(&q, &line, NULL), 0);
	o = parse_line(line);
	CU_ASSERT_STRING_EQUAL(sget(o, "error.code"), "batch_cancelled");
	json_decref(o);
	free(line);
	q.expired = true;
	CU_ASSERT_EQUAL(batchfmt_result_line(&q, &line, NULL), 0);
	o = parse_line(line);
	CU_ASSERT_STRING_EQUAL(sget(o, "error.code"), "batch_expired");
	json_decref(o);
	free(line);
}

static void test_batch_object(void)
{
	json_t *md = json_pack("{s:s}", "team", "search");
	json_t *errs = json_pack("[{s:s, s:s, s:n, s:i}]", "code", "invalid_file", "message", "not JSONL",
				 "param", "line", 1);
	batchfmt_batch_t b = { .id = "batch_1", .endpoint = BATCHFMT_EP_COMPLETIONS,
			       .input_file_id = "file-1", .completion_window = "24h",
			       .status = "in_progress", .created_at = 100, .in_progress_at = 101,
			       .expires_at = 100 + 86400, .total = 20, .completed = 5, .failed = 1,
			       .metadata = md, .has_usage = true, .input_tokens = 40,
			       .output_tokens = 60, .model = "llama-110m" };
	json_t *o = batchfmt_batch_json(&b);
	CU_ASSERT_PTR_NOT_NULL_FATAL(o);
	CU_ASSERT_STRING_EQUAL(sget(o, "object"), "batch");
	CU_ASSERT_STRING_EQUAL(sget(o, "status"), "in_progress");
	CU_ASSERT_EQUAL(iget(o, "request_counts.total"), 20);
	CU_ASSERT_EQUAL(iget(o, "request_counts.completed"), 5);
	CU_ASSERT_EQUAL(iget(o, "request_counts.failed"), 1);
	CU_ASSERT_EQUAL(iget(o, "in_progress_at"), 101);
	/* Every timestamp field is present; unset ones are null. */
	const char *nulls[] = { "finalizing_at", "completed_at", "failed_at", "expired_at",
				"cancelling_at", "cancelled_at", "output_file_id", "error_file_id",
				"errors" };
	for (size_t i = 0; i < sizeof(nulls) / sizeof(nulls[0]); i++) {
		json_t *v = json_object_get(o, nulls[i]);
		CU_ASSERT_PTR_NOT_NULL(v);
		CU_ASSERT_TRUE(json_is_null(v));
	}
	CU_ASSERT_STRING_EQUAL(sget(o, "metadata.team"), "search");
	CU_ASSERT_EQUAL(iget(o, "usage.total_tokens"), 100);
	CU_ASSERT_STRING_EQUAL(sget(o, "model"), "llama-110m");
	json_decref(o);

	b.status = "failed";
	b.errors = errs;
	b.has_usage = false;
	o = batchfmt_batch_json(&b);
	CU_ASSERT_STRING_EQUAL(sget(o, "errors.object"), "list");
	json_t *e0 = json_array_get(json_object_get(json_object_get(o, "errors"), "data"), 0);
	CU_ASSERT_STRING_EQUAL(sget(e0, "code"), "invalid_file");
	CU_ASSERT_PTR_NULL(json_object_get(o, "usage"));
	json_decref(o);
	json_decref(md);
	json_decref(errs);
}

static void test_file_and_list(void)
{
	batchfmt_file_t f = { "file-abc", "in.jsonl", "batch", 1234, 99, 0 };
	json_t *o = batchfmt_file_json(&f);
	CU_ASSERT_STRING_EQUAL(sget(o, "object"), "file");
	CU_ASSERT_EQUAL(iget(o, "bytes"), 1234);
	CU_ASSERT_STRING_EQUAL(sget(o, "purpose"), "batch");
	CU_ASSERT_PTR_NULL(json_object_get(o, "expires_at"));
	json_t *arr = json_array();
	json_array_append_new(arr, o);
	batchfmt_file_t g = { "file-def", "out.jsonl", "batch_output", 1, 100, 200 };
	json_array_append_new(arr, batchfmt_file_json(&g));
	json_t *l = batchfmt_list(arr, true);
	CU_ASSERT_STRING_EQUAL(sget(l, "object"), "list");
	CU_ASSERT_STRING_EQUAL(sget(l, "first_id"), "file-abc");
	CU_ASSERT_STRING_EQUAL(sget(l, "last_id"), "file-def");
	CU_ASSERT_TRUE(json_is_true(json_object_get(l, "has_more")));
	json_decref(l);
	l = batchfmt_list(json_array(), false);
	CU_ASSERT_TRUE(json_is_null(json_object_get(l, "first_id")));
	json_decref(l);
}

static void test_error_body_and_metadata(void)
{
	json_t *e = batchfmt_error_body("Invalid API key", batchfmt_error_type(401), NULL, "invalid_api_key");
	CU_ASSERT_STRING_EQUAL(sget(e, "error.message"), "Invalid API key");
	CU_ASSERT_STRING_EQUAL(sget(e, "error.type"), "authentication_error");
	CU_ASSERT_STRING_EQUAL(sget(e, "error.code"), "invalid_api_key");
	CU_ASSERT_TRUE(json_is_null(json_object_get(json_object_get(e, "error"), "param")));
	json_decref(e);
	CU_ASSERT_STRING_EQUAL(batchfmt_error_type(413), "invalid_request_error");
	CU_ASSERT_STRING_EQUAL(batchfmt_error_type(503), "server_error");

	char err[256];
	json_t *ok = json_pack("{s:s}", "k", "v");
	CU_ASSERT_EQUAL(batchfmt_check_metadata(ok, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(batchfmt_check_metadata(NULL, err, sizeof(err)), 0);
	json_t *bad = json_pack("{s:i}", "k", 1);
	CU_ASSERT_EQUAL(batchfmt_check_metadata(bad, err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "metadata.k"));
	json_t *many = json_object();
	for (int i = 0; i < 17; i++) {
		char k[16];
		snprintf(k, sizeof(k), "k%d", i);
		json_object_set_new(many, k, json_string("v"));
	}
	CU_ASSERT_EQUAL(batchfmt_check_metadata(many, err, sizeof(err)), -EINVAL);
	json_decref(ok);
	json_decref(bad);
	json_decref(many);
}

static const batchfmt_model_t served[] = { { "llama-110m", 512 }, { "qwen2-0.5b", 0 } };

static int check(batchfmt_ctx_t *ctx, const char *line, char *err, size_t errlen, char **cid)
{
	ingest_line_t l;
	int r = batchfmt_check_line(ctx, line, strlen(line), &l, cid, err, errlen);
	if (r == 0)
		ingest_line_done(&l);
	return r;
}

static void test_check_line(void)
{
	ingest_params_t ip = { "batch_t", 16, 1 << 20 };
	batchfmt_ctx_t ctx = { .endpoint = BATCHFMT_EP_COMPLETIONS, .models = served, .n_models = 2,
			       .ingest = &ip };
	char err[512];
	char *cid = NULL;
	const char *good = "{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/completions\","
			   "\"body\":{\"model\":\"llama-110m\",\"prompt\":\"Hi\",\"max_tokens\":8}}";
	ingest_line_t l;
	CU_ASSERT_EQUAL_FATAL(batchfmt_check_line(&ctx, good, strlen(good), &l, &cid, err, sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(l.custom_id, "a");
	CU_ASSERT_STRING_EQUAL(l.model, "llama-110m");
	CU_ASSERT_STRING_EQUAL(ctx.model, "llama-110m");
	ingest_line_done(&l);
	free(cid);
	cid = NULL;

	struct {
		const char *line, *want;
	} bad[] = {
		{ "{\"custom_id\":\"b\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{\"model\":\"llama-110m\",\"messages\":[]}}",
		  "does not match the batch's endpoint \"/v1/completions\"" },
		{ "{\"custom_id\":\"b\",\"method\":\"GET\",\"url\":\"/v1/completions\",\"body\":{\"model\":\"llama-110m\",\"prompt\":\"x\"}}",
		  "method: expected \"POST\"" },
		{ "{\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"model\":\"llama-110m\",\"prompt\":\"x\"}}",
		  "custom_id" },
		{ "{\"custom_id\":\"b\",\"custom_id\":\"c\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{}}",
		  "duplicate" },
		{ "{\"custom_id\":\"b\",\"method\":\"POST\",", "not valid JSON at column" },
		{ "[1,2,3]", "expected a JSON object" },
		{ "{\"custom_id\":\"b\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"model\":\"gpt-4o\",\"prompt\":\"x\"}}",
		  "\"gpt-4o\" is not served by any connected worker (served: llama-110m, qwen2-0.5b)" },
		{ "{\"custom_id\":\"b\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"model\":\"qwen2-0.5b\",\"prompt\":\"x\"}}",
		  "differs from the batch's model \"llama-110m\"" },
		{ "{\"custom_id\":\"b\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"model\":\"llama-110m\",\"prompt\":\"x\",\"max_tokens\":4096}}",
		  "body.max_tokens: 4096 is more than the context of model \"llama-110m\" (512 tokens)" },
		{ "{\"custom_id\":\"b\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"model\":\"llama-110m\",\"prompt\":\"x\",\"temperature\":7}}",
		  "body.temperature" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		CU_ASSERT_EQUAL(check(&ctx, bad[i].line, err, sizeof(err), &cid), -EINVAL);
		if (strstr(err, bad[i].want) == NULL)
			fprintf(stderr, "\nline %zu: got \"%s\", want \"%s\"\n", i, err, bad[i].want);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, bad[i].want));
		/* The error line can still name the request when it had an id. */
		if (strstr(bad[i].line, "\"custom_id\":\"b\",\"method\"") != NULL && strstr(err, "JSON") == NULL)
			CU_ASSERT_TRUE(cid != NULL && strcmp(cid, "b") == 0);
		free(cid);
		cid = NULL;
	}
	/* A model without a known context is not limited here. */
	batchfmt_ctx_t ctx2 = { .endpoint = BATCHFMT_EP_COMPLETIONS, .models = served, .n_models = 2,
				.ingest = &ip };
	CU_ASSERT_EQUAL(check(&ctx2, "{\"custom_id\":\"q\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"model\":\"qwen2-0.5b\",\"prompt\":\"x\",\"max_tokens\":100000}}",
			      err, sizeof(err), NULL), 0);
	/* No worker: every model is refused, and the message says why. */
	batchfmt_ctx_t none = { .endpoint = BATCHFMT_EP_COMPLETIONS, .ingest = &ip };
	CU_ASSERT_EQUAL(check(&none, good, err, sizeof(err), NULL), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "no worker is connected"));
	/* A batch waits for the workers of its model: no worker connected, or
	 * none serving it, the line is accepted; one model per batch still holds. */
	batchfmt_ctx_t wait = { .endpoint = BATCHFMT_EP_COMPLETIONS, .ingest = &ip, .wait_for_model = true };
	CU_ASSERT_EQUAL(check(&wait, good, err, sizeof(err), NULL), 0);
	CU_ASSERT_STRING_EQUAL(wait.model, "llama-110m");
	err[0] = '\0';
	CU_ASSERT_EQUAL(check(&wait, "{\"custom_id\":\"g\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"model\":\"gpt-4o\",\"prompt\":\"x\"}}",
			      err, sizeof(err), NULL), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "differs from the batch's model \"llama-110m\""));
	batchfmt_ctx_t other = { .endpoint = BATCHFMT_EP_COMPLETIONS, .models = served, .n_models = 2,
				 .ingest = &ip, .wait_for_model = true };
	CU_ASSERT_EQUAL(check(&other, "{\"custom_id\":\"g\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"model\":\"gpt-4o\",\"prompt\":\"x\",\"max_tokens\":100000}}",
			      err, sizeof(err), NULL), 0);
	CU_ASSERT_STRING_EQUAL(other.model, "gpt-4o");
}

static void test_is_json_object(void)
{
	CU_ASSERT_TRUE(batchfmt_is_json_object("{\"a\":1}", 7));
	CU_ASSERT_FALSE(batchfmt_is_json_object("[{\"a\":1}]", 9));
	CU_ASSERT_FALSE(batchfmt_is_json_object("custom_id,prompt", 16));
	CU_ASSERT_FALSE(batchfmt_is_json_object("{\"a\":1,\"a\":2}", 13));
}

const cu_test_t batchfmt_tests[] = {
	{ "completion bodies: text and chat, usage, finish_reason", test_completion_bodies },
	{ "output line: response 200 with the body, stable ids", test_output_line },
	{ "error lines: invalid (400 + line), failed, cancelled, expired", test_error_lines },
	{ "Batch object: timestamps, counts, errors, usage", test_batch_object },
	{ "File object and list pages", test_file_and_list },
	{ "error body and metadata limits", test_error_body_and_metadata },
	{ "line checks: endpoint, method, custom_id, JSON, model, context", test_check_line },
	{ "JSONL sniffing", test_is_json_object },
	{ NULL, NULL },
};
