/* api_completions: synchronous POST /v1/completions and
 * /v1/chat/completions.
 *
 * A single request goes through the same scheduler as batch work: it is
 * checked like a batch line (batchfmt_check_line), submitted to the core
 * as a one-request inline job named sync_<hex> (the batch list hides
 * those) with SCHED_SUBMIT_PRIORITY, so it is dispatched before any batch
 * shard; this HTTP thread polls the job until it is answered, then
 * returns the completion body. */
#include "http_priv.h"
#include "batchfmt.h"
#include "mg_clock.h"
#include "mg_log.h"

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

static bool terminal(const char *state)
{
	return state && (strcmp(state, "completed") == 0 || strcmp(state, "failed") == 0 ||
			 strcmp(state, "cancelled") == 0);
}

void api_completions_post(http_req_t *r)
{
	http_t *h = r->h;
	const char *ep = strncmp(r->path, BATCHFMT_EP_CHAT, strlen(BATCHFMT_EP_CHAT)) == 0 ?
		BATCHFMT_EP_CHAT : BATCHFMT_EP_COMPLETIONS;
	char err[1024], name[64];
	http_model_t *models = NULL;
	size_t n_models = 0;
	json_t *job = NULL, *res = NULL;
	if (json_is_true(json_object_get(r->json, "stream"))) {
		http_reply_error(r, 400, "unsupported_parameter", "stream",
				 "stream: streamed responses are not supported; send \"stream\": false");
		return;
	}
	if (http_models(h, &models, &n_models, err, sizeof(err)) < 0) {
		http_reply_error(r, 503, "scheduler_unavailable", NULL, "%s", err);
		http_reply_header(r, "retry-after", "1");
		return;
	}
	http_random_id("sync_", name, sizeof(name));
	json_t *line = json_pack("{s:s, s:s, s:s, s:O}", "custom_id", "request", "method", "POST", "url",
				 ep, "body", r->json);
	char *text = line ? json_dumps(line, JSON_COMPACT) : NULL;
	batchfmt_model_t *bm = calloc(n_models ? n_models : 1, sizeof(*bm));
	for (size_t i = 0; bm != NULL && i < n_models; i++)
		bm[i] = (batchfmt_model_t){ models[i].name, models[i].n_ctx };
	ingest_params_t ip = { name, h->cfg.default_max_tokens, h->cfg.max_tokens_cap };
	batchfmt_ctx_t ctx = { .endpoint = ep, .models = bm, .n_models = n_models, .ingest = &ip };
	if (text == NULL || bm == NULL) {
		http_reply_error(r, 500, "internal_error", NULL, "out of memory");
		goto out;
	}
	ingest_line_t l;
	int rc = batchfmt_check_line(&ctx, text, strlen(text), &l, NULL, err, sizeof(err));
	if (rc < 0) {
		bool model = strncmp(err, "body.model:", 11) == 0 && strstr(err, "not served") != NULL;
		/* Messages name body fields as a batch line does; here the body is the request. */
		const char *msg = strncmp(err, "body.", 5) == 0 ? err + 5 : err;
		http_reply_error(r, model ? 404 : 400, model ? "model_not_found" : "invalid_request", NULL,
				 "%s", msg);
		goto out;
	}
	char model_name[256];
	snprintf(model_name, sizeof(model_name), "%s", l.model);
	ingest_line_done(&l);

	json_t *sub = json_pack("{s:s, s:s, s:[O]}", "id", name, "endpoint", ep, "requests", line);
	if (http_call(r, "api.submit_sync", sub, &job) < 0)
		goto out;
	int64_t start = mg_clock_now_ns(), wait = POLL_MIN_NS;
	const char *state = json_string_value(json_object_get(job, "state"));
	while (!terminal(state)) {
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
	char cid[64];
	batchfmt_line_id(name, 1, strcmp(ep, BATCHFMT_EP_CHAT) == 0 ? "chatcmpl-" : "cmpl-", cid, sizeof(cid));
	batchfmt_completion_t c = {
		ep, cid, model_name, mg_clock_wall_ns() / MG_NS_PER_S,
		json_string_value(json_object_get(row, "text")),
		json_string_value(json_object_get(row, "finish_reason")),
		json_integer_value(json_object_get(row, "prompt_tokens")),
		json_integer_value(json_object_get(row, "completion_tokens")),
	};
	mg_log(MG_LOG_DEBUG, "http", "completion answered job=%s model=%s ms=%lld", name, model_name,
	       (long long)((mg_clock_now_ns() - start) / MG_NS_PER_MS));
	http_reply_json(r, 200, batchfmt_completion_body(&c));
out:
	json_decref(job);
	json_decref(res);
	json_decref(line);
	free(text);
	free(bm);
	http_models_free(models, n_models);
}
