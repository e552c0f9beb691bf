/* batchfmt: OpenAI Batch API shapes and line checks, as an SDK reads them. */
#include "cu_main.h"
#include "batchfmt.h"

#include "journal.h"

#include <errno.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
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

/* Ids derived from (batch, line) are shown to users and must not change
 * between versions: values computed before the hash moved to lib/. */
static void test_line_id_golden(void)
{
	char id[64];
	batchfmt_line_id("batch_1", 1, "batch_req_", id, sizeof(id));
	CU_ASSERT_STRING_EQUAL(id, "batch_req_9ff7265b6d1502f424706236");
	batchfmt_line_id("batch_abc", 123456789, "file-", id, sizeof(id));
	CU_ASSERT_STRING_EQUAL(id, "file-41751a6b4e52c8a81bec8199");
	batchfmt_line_id("batch_1", -1, "file-", id, sizeof(id));
	CU_ASSERT_STRING_EQUAL(id, "file-d04ce7a3b970b4adea5eb14e");
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

static const batchfmt_model_t served[] = {
	{ "llama-110m", 512, 0, false }, { "qwen2-0.5b", 0, 0, false },
};

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

/* Embedding lines against the models: a sync request needs a worker that
 * embeds; dimensions only where the model can be cut, and within its
 * length; token inputs within the context unless truncate. */
static void test_check_embed_line(void)
{
	static const batchfmt_model_t models[] = {
		{ "emb", 64, 16, true }, { "fixed", 512, 288, false }, { "gen", 512, 0, false },
	};
	ingest_params_t ip = { "batch_t", 16, 1 << 20 };
	char err[512], line[1024];
	static const struct {
		const char *model, *extra;
		bool wait;
		const char *want;	/* NULL: accepted */
	} cases[] = {
		{ "emb", "", false, NULL },
		{ "emb", ",\"dimensions\":16", false, NULL },
		{ "emb", ",\"dimensions\":4", false, NULL },
		{ "emb", ",\"dimensions\":17", false, "body.dimensions: 17 is more than the 16 dimensions of model emb's vectors" },
		{ "fixed", "", false, NULL },
		{ "fixed", ",\"dimensions\":8", false, "body.dimensions: model fixed gives 288-dimension vectors and cannot be cut" },
		{ "gen", "", false, "body.model: \"gen\" does not give embeddings (no connected worker embeds with it)" },
		{ "gen", "", true, NULL },	/* a batch waits for a worker that embeds */
		{ "absent", "", true, NULL },
		{ "absent", "", false, "is not served by any connected worker" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		batchfmt_ctx_t ctx = { .endpoint = BATCHFMT_EP_EMBEDDINGS, .models = models, .n_models = 3,
				       .ingest = &ip, .wait_for_model = cases[i].wait };
		snprintf(line, sizeof(line), "{\"custom_id\":\"e\",\"method\":\"POST\",\"url\":\"/v1/embeddings\","
			 "\"body\":{\"model\":\"%s\",\"input\":[\"a\",\"b\"]%s}}", cases[i].model, cases[i].extra);
		err[0] = '\0';
		int rc = check(&ctx, line, err, sizeof(err), NULL);
		if (cases[i].want == NULL) {
			if (rc != 0)
				fprintf(stderr, "\nembed case %zu: refused: %s\n", i, err);
			CU_ASSERT_EQUAL(rc, 0);
		} else {
			CU_ASSERT_EQUAL(rc, -EINVAL);
			if (strstr(err, cases[i].want) == NULL)
				fprintf(stderr, "\nembed case %zu: got \"%s\", want \"%s\"\n", i, err, cases[i].want);
			CU_ASSERT_PTR_NOT_NULL(strstr(err, cases[i].want));
		}
	}
	/* token ids over the context (64): refused, named by index; with truncate accepted */
	json_t *toks = json_array();
	for (int i = 0; i < 65; i++)
		json_array_append_new(toks, json_integer(i));
	json_t *o = json_pack("{s:s, s:s, s:s, s:{s:s, s:[[i], O]}}", "custom_id", "e", "method", "POST", "url",
			      "/v1/embeddings", "body", "model", "emb", "input", 1, toks);
	char *text = json_dumps(o, JSON_COMPACT);
	batchfmt_ctx_t ctx = { .endpoint = BATCHFMT_EP_EMBEDDINGS, .models = models, .n_models = 3, .ingest = &ip };
	CU_ASSERT_EQUAL(check(&ctx, text, err, sizeof(err), NULL), -EINVAL);
	CU_ASSERT_STRING_EQUAL(err, "body.input[1]: 65 tokens is more than the context of model emb (64 tokens)");
	free(text);
	json_object_set_new(json_object_get(o, "body"), "truncate", json_true());
	text = json_dumps(o, JSON_COMPACT);
	CU_ASSERT_EQUAL(check(&ctx, text, err, sizeof(err), NULL), 0);
	free(text);
	json_decref(o);
	json_decref(toks);
	/* a completions batch refuses an embedding line by its url */
	batchfmt_ctx_t comp = { .endpoint = BATCHFMT_EP_COMPLETIONS, .models = models, .n_models = 3, .ingest = &ip };
	CU_ASSERT_EQUAL(check(&comp, "{\"custom_id\":\"e\",\"method\":\"POST\",\"url\":\"/v1/embeddings\",\"body\":{\"model\":\"emb\",\"input\":\"a\"}}",
			      err, sizeof(err), NULL), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "does not match the batch's endpoint"));
}

/* The stored text of vectors, as journal_embeddings_format writes it. */
static char *stored(const float *const *v, size_t n, size_t dims)
{
	Margin__V1__Embedding e[4], *pe[4];
	for (size_t i = 0; i < n; i++) {
		margin__v1__embedding__init(&e[i]);
		e[i].n_values = dims;
		e[i].values = (float *)v[i];
		pe[i] = &e[i];
	}
	char *s = NULL;
	CU_ASSERT_EQUAL_FATAL(journal_embeddings_format((const Margin__V1__Embedding *const *)pe, n, &s), 0);
	return s;
}

static uint32_t bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

/* The embeddings list: float (each value reads back as the same float32
 * bits) and base64 (little-endian float32, what the openai SDK decodes
 * with numpy.frombuffer), index order, usage. */
static void test_embeddings_body(void)
{
	const float a[3] = { 0.1f, -1.0f / 3.0f, 1.17549435e-38f };
	const float b[3] = { 1.0f, 0.0f, -0.0f };
	const float *v[2] = { a, b };
	char *s = stored(v, 2, 3);
	/* 0.1f = 0x3dcccccd: cd cc cc 3d */
	CU_ASSERT_EQUAL(strncmp(s, "zczMPa", 6), 0);
	CU_ASSERT_PTR_NOT_NULL(strchr(s, ','));

	json_t *body = batchfmt_embeddings_body("emb", s, "float", 7);
	CU_ASSERT_PTR_NOT_NULL_FATAL(body);
	char *text = batchfmt_dumps(body);
	json_decref(body);
	body = json_loads(text, 0, NULL);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(body, "object")), "list");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(body, "model")), "emb");
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_object_get(body, "usage"), "prompt_tokens")), 7);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_object_get(body, "usage"), "total_tokens")), 7);
	json_t *data = json_object_get(body, "data");
	CU_ASSERT_EQUAL_FATAL(json_array_size(data), 2);
	for (size_t i = 0; i < 2; i++) {
		json_t *d = json_array_get(data, i);
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(d, "object")), "embedding");
		CU_ASSERT_EQUAL(json_integer_value(json_object_get(d, "index")), (json_int_t)i);
		json_t *e = json_object_get(d, "embedding");
		CU_ASSERT_EQUAL_FATAL(json_array_size(e), 3);
		for (size_t k = 0; k < 3; k++)
			CU_ASSERT_EQUAL(bits((float)json_number_value(json_array_get(e, k))), bits(v[i][k]));
	}
	/* shortest: 0.1f prints as 0.1, not 0.100000001 */
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "[0.1,"));
	json_decref(body);
	free(text);

	body = batchfmt_embeddings_body("emb", s, "base64", 7);
	data = json_object_get(body, "data");
	CU_ASSERT_EQUAL_FATAL(json_array_size(data), 2);
	for (size_t i = 0; i < 2; i++) {
		const char *b64 = json_string_value(json_object_get(json_array_get(data, i), "embedding"));
		CU_ASSERT_PTR_NOT_NULL_FATAL(b64);
		unsigned char raw[12];
		size_t n = 0;
		CU_ASSERT_EQUAL(sodium_base642bin(raw, sizeof(raw), b64, strlen(b64), NULL, &n, NULL,
						  sodium_base64_VARIANT_ORIGINAL), 0);
		CU_ASSERT_EQUAL_FATAL(n, 12);
		for (size_t k = 0; k < 3; k++) {
			uint32_t u = raw[4 * k] | (uint32_t)raw[4 * k + 1] << 8 | (uint32_t)raw[4 * k + 2] << 16 |
				     (uint32_t)raw[4 * k + 3] << 24;
			CU_ASSERT_EQUAL(u, bits(v[i][k]));
		}
	}
	json_decref(body);
	/* corrupt stored text: no body rather than a wrong one */
	CU_ASSERT_PTR_NULL(batchfmt_embeddings_body("emb", "not base64!", "float", 1));
	CU_ASSERT_PTR_NULL(batchfmt_embeddings_body("emb", "AAAA", "float", 1));	/* 3 bytes */
	CU_ASSERT_PTR_NULL(batchfmt_embeddings_body("emb", "", "float", 1));
	free(s);

	/* a value that is not finite is not stored */
	const float nan1[1] = { NAN };
	const float *vn[1] = { nan1 };
	Margin__V1__Embedding en;
	margin__v1__embedding__init(&en);
	en.n_values = 1;
	en.values = (float *)vn[0];
	Margin__V1__Embedding *pen = &en;
	char *sn = NULL;
	CU_ASSERT_EQUAL(journal_embeddings_format((const Margin__V1__Embedding *const *)&pen, 1, &sn), -EDOM);
	CU_ASSERT_PTR_NULL(sn);
}

/* Every float32 the shortest decimal prints reads back as itself. */
static void test_float_shortest(void)
{
	uint64_t x = 0x9e3779b97f4a7c15ULL;
	int bad = 0;
	for (int i = 0; i < 200000; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		uint32_t u = (uint32_t)x;
		float f;
		memcpy(&f, &u, 4);
		if (!isfinite(f))
			continue;
		char buf[40];
		snprintf(buf, sizeof(buf), "%.9g", batchfmt_float_shortest(f));
		float g = strtof(buf, NULL);
		if (bits(g) != u && bad++ < 5)
			fprintf(stderr, "\n%08x printed %s reads %08x\n", u, buf, bits(g));
	}
	CU_ASSERT_EQUAL(bad, 0);
}

/* An embeddings batch's output line: the list body, the same bytes each
 * time it is written. */
static void test_embed_output_line(void)
{
	const float a[2] = { 0.6f, 0.8f };
	const float *v[1] = { a };
	char *s = stored(v, 1, 2);
	batchfmt_result_t r = { .batch_id = "batch_e", .endpoint = BATCHFMT_EP_EMBEDDINGS, .model = "emb",
				.created = 5, .line_no = 4, .custom_id = "c4", .state = "done", .text = s,
				.prompt_tokens = 3 };
	char *line = NULL, *again = NULL;
	size_t len = 0, len2 = 0;
	CU_ASSERT_EQUAL_FATAL(batchfmt_result_line(&r, &line, &len), 1);
	CU_ASSERT_EQUAL_FATAL(batchfmt_result_line(&r, &again, &len2), 1);
	CU_ASSERT_EQUAL(len, len2);
	CU_ASSERT_EQUAL(memcmp(line, again, len), 0);
	json_t *o = parse_line(line);
	json_t *resp = json_object_get(o, "response");
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(resp, "status_code")), 200);
	CU_ASSERT_TRUE(json_is_null(json_object_get(o, "error")));
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(o, "custom_id")), "c4");
	json_t *body = json_object_get(resp, "body");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(body, "object")), "list");
	json_t *e = json_object_get(json_array_get(json_object_get(body, "data"), 0), "embedding");
	CU_ASSERT_EQUAL(json_array_size(e), 2);
	CU_ASSERT_PTR_NOT_NULL(strstr(line, "\"embedding\":[0.6,0.8]"));
	json_decref(o);
	free(line);
	r.encoding_format = "base64";
	CU_ASSERT_EQUAL_FATAL(batchfmt_result_line(&r, &line, &len), 1);
	o = parse_line(line);
	body = json_object_get(json_object_get(o, "response"), "body");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(json_array_get(json_object_get(body, "data"), 0),
								 "embedding")), s);
	json_decref(o);
	free(line);
	free(again);
	free(s);
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
	{ "line ids: golden values", test_line_id_golden },
	{ "error lines: invalid (400 + line), failed, cancelled, expired", test_error_lines },
	{ "Batch object: timestamps, counts, errors, usage", test_batch_object },
	{ "File object and list pages", test_file_and_list },
	{ "error body and metadata limits", test_error_body_and_metadata },
	{ "line checks: endpoint, method, custom_id, JSON, model, context", test_check_line },
	{ "JSONL sniffing", test_is_json_object },
	{ "embedding lines: model embeds, dimensions, context", test_check_embed_line },
	{ "embeddings body: float bits round-trip, base64", test_embeddings_body },
	{ "floats: the shortest decimal reads back as the same float32", test_float_shortest },
	{ "embeddings output line: list body, same bytes", test_embed_output_line },
	{ NULL, NULL },
};
