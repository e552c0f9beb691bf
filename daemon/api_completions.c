/* api_completions: synchronous POST /v1/completions and
 * /v1/chat/completions, and what every synchronous endpoint shares
 * (api_sync_run: /v1/embeddings uses it too).
 *
 * A single request goes through the same scheduler as batch work: it is
 * checked like a batch line (batchfmt_check_line), submitted to the core
 * as a one-request inline job named sync_<hex> (the batch list hides
 * those) with SCHED_SUBMIT_PRIORITY, so it is dispatched before any batch
 * shard; this HTTP thread polls the job until it is answered, then
 * returns the completion body. */
#include "api.h"
#include "batchfmt.h"
#include "lib/mg_clock.h"
#include "lib/mg_jobstate.h"
#include "lib/mg_log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POLL_MIN_NS (2 * MG_NS_PER_MS)
#define POLL_MAX_NS (50 * MG_NS_PER_MS)

/* HTTP status for a request the worker answered with an error. */
static unsigned status_for(const char *code)
{
	if (code == NULL)
		return 500;
	if (strcmp(code, "model_not_found") == 0)
		return 404;
	if (strcmp(code, "invalid_prompt") == 0 || strcmp(code, "context_length_exceeded") == 0 ||
	    strcmp(code, "invalid_request") == 0)
		return 400;
	if (strcmp(code, "cancelled") == 0 || strcmp(code, "out_of_memory") == 0)
		return 503;
	return 500;
}

int api_sync_run(http_req_t *r, const char *ep, char *ret_model, size_t model_len,
		 char *ret_name, size_t name_len, json_t **ret_row)
{
	http_t *h = r->h;
	char err[1024], name[64];
	http_model_t *models = NULL;
	size_t n_models = 0;
	json_t *job = NULL, *res = NULL;
	int rc = -EINVAL;
	if (json_is_true(json_object_get(r->json, "stream"))) {
		http_reply_error(r, 400, "unsupported_parameter", "stream",
				 "stream: streamed responses are not supported; send \"stream\": false");
		return -EINVAL;
	}
	if (http_models(h, &models, &n_models, err, sizeof(err)) < 0) {
		http_reply_error(r, 503, "scheduler_unavailable", NULL, "%s", err);
		http_reply_header(r, "retry-after", "1");
		return -EAGAIN;
	}
	http_random_id("sync_", name, sizeof(name));
	json_t *line = json_pack("{s:s, s:s, s:s, s:O}", "custom_id", "request", "method", "POST", "url",
				 ep, "body", r->json);
	char *text = line ? json_dumps(line, JSON_COMPACT) : NULL;
	batchfmt_model_t *bm = http_models_check(models, n_models);
	ingest_params_t ip = { name, h->cfg.default_max_tokens, h->cfg.max_tokens_cap };
	batchfmt_ctx_t ctx = { .endpoint = ep, .models = bm, .n_models = n_models, .ingest = &ip };
	if (text == NULL || bm == NULL) {
		http_reply_error(r, 500, "internal_error", NULL, "out of memory");
		goto out;
	}
	ingest_line_t l;
	if (batchfmt_check_line(&ctx, text, strlen(text), &l, NULL, err, sizeof(err)) < 0) {
		bool model = strncmp(err, "body.model:", 11) == 0 && strstr(err, "not served") != NULL;
		/* Messages name body fields as a batch line does; here the body is the request. */
		const char *msg = strncmp(err, "body.", 5) == 0 ? err + 5 : err;
		char param[64];
		snprintf(param, sizeof(param), "%.*s", (int)strcspn(msg, ":[ "), msg);
		http_reply_error(r, model ? 404 : 400, model ? "model_not_found" : "invalid_request",
				 msg != err ? param : NULL, "%s", msg);
		goto out;
	}
	snprintf(ret_model, model_len, "%s", l.model);
	ingest_line_done(&l);

	json_t *sub = json_pack("{s:s, s:s, s:[O]}", "id", name, "endpoint", ep, "requests", line);
	if (http_call(r, "api.submit_sync", sub, &job) < 0)
		goto out;
	int64_t start = mg_clock_now_ns(), wait = POLL_MIN_NS;
	const char *state = json_string_value(json_object_get(job, "state"));
	while (!mg_job_state_name_terminal(state)) {
		if (atomic_load(&h->stopping)) {
			http_reply_error(r, 503, "shutting_down", NULL, "the server is stopping");
			goto out;
		}
		if (mg_clock_now_ns() - start > h->cfg.sync_timeout_ns) {
			json_t *c = NULL;
			http_call_quiet(h, "cancel", json_pack("{s:s}", "id", name), &c, err, sizeof(err));
			json_decref(c);
			http_reply_error(r, 504, "timeout", NULL,
					 "no answer within %lld s (the server's [http] sync_timeout); the request was cancelled",
					 (long long)(h->cfg.sync_timeout_ns / MG_NS_PER_S));
			http_reply_header(r, "x-should-retry", "false");
			goto out;
		}
		mg_clock_sleep_ns(wait);
		wait = wait * 2 > POLL_MAX_NS ? POLL_MAX_NS : wait * 2;
		json_decref(job);
		job = NULL;
		if (http_call(r, "status", json_pack("{s:s}", "id", name), &job) < 0)
			goto out;
		state = json_string_value(json_object_get(job, "state"));
	}
	if (http_call(r, "results", json_pack("{s:s, s:i}", "id", name, "limit", 1), &res) < 0)
		goto out;
	json_t *row = json_array_get(json_object_get(res, "results"), 0);
	const char *rs = json_string_value(json_object_get(row, "state"));
	if (rs == NULL || strcmp(rs, "done") != 0) {
		json_t *e = json_object_get(row, "error");
		const char *code = json_string_value(json_object_get(e, "code"));
		const char *msg = json_string_value(json_object_get(e, "message"));
		bool no_template = msg != NULL && strstr(msg, "chat template") != NULL;
		http_reply_error(r, status_for(code), code ? code : "request_failed", NULL, "%s%s",
				 msg && msg[0] ? msg : "the request was not answered",
				 no_template ? " (this model takes prompts: use /v1/completions)" : "");
		goto out;
	}
	mg_log(MG_LOG_DEBUG, "http", "sync request answered job=%s endpoint=%s model=%s ms=%lld", name, ep,
	       ret_model, (long long)((mg_clock_now_ns() - start) / MG_NS_PER_MS));
	snprintf(ret_name, name_len, "%s", name);
	*ret_row = json_incref(row);
	rc = 0;
out:
	json_decref(job);
	json_decref(res);
	json_decref(line);
	free(text);
	free(bm);
	http_models_free(models, n_models);
	return rc;
}

void api_completions_post(http_req_t *r)
{
	const char *ep = strncmp(r->path, BATCHFMT_EP_CHAT, strlen(BATCHFMT_EP_CHAT)) == 0 ?
		BATCHFMT_EP_CHAT : BATCHFMT_EP_COMPLETIONS;
	char model[256], name[64], cid[64];
	json_t *row = NULL;
	if (api_sync_run(r, ep, model, sizeof(model), name, sizeof(name), &row) < 0)
		return;
	batchfmt_line_id(name, 1, strcmp(ep, BATCHFMT_EP_CHAT) == 0 ? "chatcmpl-" : "cmpl-", cid, sizeof(cid));
	batchfmt_completion_t c = {
		ep, cid, model, mg_clock_wall_ns() / MG_NS_PER_S,
		json_string_value(json_object_get(row, "text")),
		json_string_value(json_object_get(row, "finish_reason")),
		json_integer_value(json_object_get(row, "prompt_tokens")),
		json_integer_value(json_object_get(row, "completion_tokens")),
	};
	http_reply_json(r, 200, batchfmt_completion_body(&c));
	json_decref(row);
}
