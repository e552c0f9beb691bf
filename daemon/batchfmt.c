/* batchfmt: see batchfmt.h. */
#include "batchfmt.h"
#include "lib/mg_hash.h"

#include <errno.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef MARGIN_VERSION
#define MARGIN_VERSION "unknown"
#endif

/* --- errors ------------------------------------------------------------ */

const char *batchfmt_error_type(unsigned status)
{
	switch (status) {
	case 401:
		return "authentication_error";
	case 403:
		return "permission_error";
	case 404:
		return "not_found_error";
	case 429:
		return "rate_limit_error";
	default:
		return status >= 500 ? "server_error" : "invalid_request_error";
	}
}

static json_t *str_or_null(const char *s)
{
	return s != NULL ? json_string(s) : json_null();
}

/* json_string() refuses invalid UTF-8 (NULL); generated text and messages
 * that carry user bytes must still produce a line, so fall back to a
 * replacement that says so rather than failing the whole file. */
static json_t *text_value(const char *s)
{
	if (s == NULL)
		return json_string("");
	json_t *v = json_string(s);
	return v != NULL ? v : json_string("\xef\xbf\xbd(invalid UTF-8 in the output)");
}

json_t *batchfmt_error_body(const char *message, const char *type, const char *param,
			    const char *code)
{
	return json_pack("{s:{s:o, s:s, s:o, s:o}}", "error", "message", text_value(message),
			 "type", type ? type : "invalid_request_error", "param", str_or_null(param),
			 "code", str_or_null(code));
}

/* --- completions ------------------------------------------------------- */

json_t *batchfmt_completion_body(const batchfmt_completion_t *c)
{
	bool chat = c->endpoint != NULL && strcmp(c->endpoint, BATCHFMT_EP_CHAT) == 0;
	const char *fr = c->finish_reason && c->finish_reason[0] ? c->finish_reason : "stop";
	json_t *choice = chat ?
		json_pack("{s:i, s:{s:s, s:o, s:n}, s:n, s:s}", "index", 0, "message", "role",
			  "assistant", "content", text_value(c->text), "refusal", "logprobs",
			  "finish_reason", fr) :
		json_pack("{s:i, s:o, s:n, s:s}", "index", 0, "text", text_value(c->text), "logprobs",
			  "finish_reason", fr);
	if (choice == NULL)
		return NULL;
	return json_pack("{s:s, s:s, s:I, s:s, s:s, s:[o], s:{s:I, s:I, s:I}}",
			 "id", c->id ? c->id : "", "object", chat ? "chat.completion" : "text_completion",
			 "created", (json_int_t)c->created, "model", c->model ? c->model : "",
			 "system_fingerprint", "margin-" MARGIN_VERSION, "choices", choice, "usage",
			 "prompt_tokens", (json_int_t)c->prompt_tokens, "completion_tokens",
			 (json_int_t)c->completion_tokens, "total_tokens",
			 (json_int_t)(c->prompt_tokens + c->completion_tokens));
}

/* --- embeddings -------------------------------------------------------- */

double batchfmt_float_shortest(float f)
{
	char buf[32];
	for (int p = 1; p < 9; p++) {
		snprintf(buf, sizeof(buf), "%.*g", p, (double)f);
		float g = strtof(buf, NULL);
		if (memcmp(&g, &f, sizeof(f)) == 0)
			return strtod(buf, NULL);
	}
	snprintf(buf, sizeof(buf), "%.9g", (double)f);
	return strtod(buf, NULL);
}

char *batchfmt_dumps(const json_t *body)
{
	return json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
}

/* One stored vector (base64 of len characters) -> a JSON array of floats. */
static json_t *vector_floats(const char *b64, size_t len)
{
	size_t cap = len / 4 * 3 + 3, n = 0;
	uint8_t *bytes = malloc(cap);
	json_t *arr = json_array();
	if (bytes == NULL || arr == NULL ||
	    sodium_base642bin(bytes, cap, b64, len, NULL, &n, NULL, sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    n == 0 || n % 4 != 0)
		goto fail;
	for (size_t k = 0; k < n; k += 4) {
		uint32_t u = (uint32_t)bytes[k] | (uint32_t)bytes[k + 1] << 8 |
			     (uint32_t)bytes[k + 2] << 16 | (uint32_t)bytes[k + 3] << 24;
		float f;
		memcpy(&f, &u, sizeof(f));
		if (!isfinite(f) || json_array_append_new(arr, json_real(batchfmt_float_shortest(f))) < 0)
			goto fail;
	}
	free(bytes);
	return arr;
fail:
	free(bytes);
	json_decref(arr);
	return NULL;
}

json_t *batchfmt_embeddings_body(const char *model, const char *vectors, const char *encoding,
				 int64_t prompt_tokens)
{
	bool b64 = encoding != NULL && strcmp(encoding, "base64") == 0;
	json_t *data = json_array();
	if (data == NULL || vectors == NULL || vectors[0] == '\0')
		goto fail;
	const char *p = vectors;
	for (size_t i = 0;; i++) {
		size_t len = strcspn(p, ",");
		json_t *e = b64 ? json_stringn(p, len) : vector_floats(p, len);
		if (e == NULL || len == 0 ||
		    json_array_append_new(data, json_pack("{s:s, s:I, s:o}", "object", "embedding", "index",
							  (json_int_t)i, "embedding", e)) < 0)
			goto fail;
		if (p[len] == '\0')
			break;
		p += len + 1;
	}
	return json_pack("{s:s, s:o, s:s, s:{s:I, s:I}}", "object", "list", "data", data, "model",
			 model ? model : "", "usage", "prompt_tokens", (json_int_t)prompt_tokens,
			 "total_tokens", (json_int_t)prompt_tokens);
fail:
	json_decref(data);
	return NULL;
}

/* --- output and error lines -------------------------------------------- */

void batchfmt_line_id(const char *batch_id, int64_t line_no, const char *prefix, char *buf,
		      size_t len)
{
	uint64_t h = mg_fnv1a64(MG_FNV1A64_OFFSET, batch_id, strlen(batch_id) + 1);
	h = mg_fnv1a64(h, &line_no, sizeof(line_no));
	uint64_t a = mg_mix64(h), b = mg_mix64(h ^ MG_SPLITMIX64_GAMMA);
	snprintf(buf, len, "%s%016llx%08llx", prefix, (unsigned long long)a,
		 (unsigned long long)(b & 0xffffffffULL));
}

static int dump_line(json_t *o, char **ret_line, size_t *ret_len)
{
	if (o == NULL)
		return -ENOMEM;
	char *s = batchfmt_dumps(o);
	json_decref(o);
	if (s == NULL)
		return -ENOMEM;
	size_t n = strlen(s);
	char *line = realloc(s, n + 2);
	if (line == NULL) {
		free(s);
		return -ENOMEM;
	}
	line[n] = '\n';
	line[n + 1] = '\0';
	*ret_line = line;
	if (ret_len != NULL)
		*ret_len = n + 1;
	return 0;
}

int batchfmt_result_line(const batchfmt_result_t *r, char **ret_line, size_t *ret_len)
{
	char id[64], rid[64], cid[64];
	batchfmt_line_id(r->batch_id, r->line_no, "batch_req_", id, sizeof(id));
	batchfmt_line_id(r->batch_id, r->line_no, "req_", rid, sizeof(rid));
	const char *state = r->state ? r->state : "queued";
	json_t *o = NULL;
	int out = 0;

	if (strcmp(state, "done") == 0) {
		bool chat = r->endpoint && strcmp(r->endpoint, BATCHFMT_EP_CHAT) == 0;
		json_t *body;
		if (r->endpoint && strcmp(r->endpoint, BATCHFMT_EP_EMBEDDINGS) == 0) {
			body = batchfmt_embeddings_body(r->model, r->text, r->encoding_format, r->prompt_tokens);
		} else {
			batchfmt_line_id(r->batch_id, r->line_no, chat ? "chatcmpl-" : "cmpl-", cid, sizeof(cid));
			batchfmt_completion_t c = { r->endpoint, cid, r->model, r->created, r->text,
						    r->finish_reason, r->prompt_tokens, r->completion_tokens };
			body = batchfmt_completion_body(&c);
		}
		if (body == NULL)
			return -ENOMEM;
		o = json_pack("{s:s, s:o, s:{s:i, s:s, s:o}, s:n}", "id", id, "custom_id",
			      str_or_null(r->custom_id), "response", "status_code", 200, "request_id", rid,
			      "body", body, "error");
		out = 1;
	} else if (strcmp(state, "invalid") == 0) {
		char msg[1200];
		snprintf(msg, sizeof(msg), "line %lld: %s", (long long)r->line_no,
			 r->error_message ? r->error_message : "invalid request");
		json_t *body = batchfmt_error_body(msg, "invalid_request_error", NULL,
						   r->error_code ? r->error_code : "invalid_request");
		if (body == NULL)
			return -ENOMEM;
		o = json_pack("{s:s, s:o, s:{s:i, s:s, s:o}, s:n}", "id", id, "custom_id",
			      str_or_null(r->custom_id), "response", "status_code", 400, "request_id", rid,
			      "body", body, "error");
	} else {
		const char *code = r->error_code, *msg = r->error_message;
		char buf[160];
		if (strcmp(state, "failed") != 0) {
			/* cancelled by the worker, or never run (still queued when the
			 * batch ended) */
			code = r->expired ? "batch_expired" : "batch_cancelled";
			if (strcmp(state, "queued") == 0 || msg == NULL || msg[0] == '\0') {
				snprintf(buf, sizeof(buf), "the batch %s before this request was answered",
					 r->expired ? "expired" : "was cancelled");
				msg = buf;
			}
		}
		o = json_pack("{s:s, s:o, s:n, s:{s:s, s:o}}", "id", id, "custom_id",
			      str_or_null(r->custom_id), "response", "error", "code",
			      code && code[0] ? code : "request_failed", "message",
			      text_value(msg && msg[0] ? msg : "the request failed"));
	}
	int rc = dump_line(o, ret_line, ret_len);
	return rc < 0 ? rc : out;
}

/* --- objects ----------------------------------------------------------- */

static json_t *ts(int64_t t)
{
	return t > 0 ? json_integer((json_int_t)t) : json_null();
}

json_t *batchfmt_batch_json(const batchfmt_batch_t *b)
{
	json_t *errors = json_null();
	if (b->errors != NULL && json_array_size(b->errors) > 0)
		errors = json_pack("{s:s, s:O}", "object", "list", "data", b->errors);
	if (errors == NULL)
		return NULL;
	json_t *o = json_pack("{s:s, s:s, s:s, s:o, s:s, s:s, s:s, s:o, s:o,"
			      " s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o,"
			      " s:{s:I, s:I, s:I}, s:O}",
			      "id", b->id, "object", "batch", "endpoint", b->endpoint ? b->endpoint : "",
			      "errors", errors, "input_file_id", b->input_file_id ? b->input_file_id : "",
			      "completion_window", b->completion_window ? b->completion_window : "24h",
			      "status", b->status, "output_file_id", str_or_null(b->output_file_id),
			      "error_file_id", str_or_null(b->error_file_id),
			      "created_at", ts(b->created_at), "in_progress_at", ts(b->in_progress_at),
			      "expires_at", ts(b->expires_at), "finalizing_at", ts(b->finalizing_at),
			      "completed_at", ts(b->completed_at), "failed_at", ts(b->failed_at),
			      "expired_at", ts(b->expired_at), "cancelling_at", ts(b->cancelling_at),
			      "cancelled_at", ts(b->cancelled_at),
			      "request_counts", "total", (json_int_t)b->total, "completed",
			      (json_int_t)b->completed, "failed", (json_int_t)b->failed,
			      "metadata", b->metadata ? b->metadata : json_null());
	if (o == NULL)
		return NULL;
	if (b->model != NULL && b->model[0] != '\0' &&
	    json_object_set_new(o, "model", json_string(b->model)) < 0)
		goto fail;
	if (b->has_usage &&
	    json_object_set_new(o, "usage",
				json_pack("{s:I, s:{s:i}, s:I, s:{s:i}, s:I}", "input_tokens",
					  (json_int_t)b->input_tokens, "input_tokens_details",
					  "cached_tokens", 0, "output_tokens",
					  (json_int_t)b->output_tokens, "output_tokens_details",
					  "reasoning_tokens", 0, "total_tokens",
					  (json_int_t)(b->input_tokens + b->output_tokens))) < 0)
		goto fail;
	if (b->margin != NULL && json_object_set(o, "x_margin", b->margin) < 0)
		goto fail;
	return o;
fail:
	json_decref(o);
	return NULL;
}

json_t *batchfmt_file_json(const batchfmt_file_t *f)
{
	json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:s, s:s, s:s}", "id", f->id, "object", "file",
			      "bytes", (json_int_t)f->bytes, "created_at", (json_int_t)f->created_at,
			      "filename", f->filename ? f->filename : "", "purpose",
			      f->purpose ? f->purpose : "batch", "status", "processed");
	if (o != NULL && f->expires_at > 0 &&
	    json_object_set_new(o, "expires_at", json_integer((json_int_t)f->expires_at)) < 0)
		json_decref(o), o = NULL;
	return o;
}

json_t *batchfmt_list(json_t *data, bool has_more)
{
	if (data == NULL)
		return NULL;
	size_t n = json_array_size(data);
	json_t *first = n ? json_object_get(json_array_get(data, 0), "id") : NULL;
	json_t *last = n ? json_object_get(json_array_get(data, n - 1), "id") : NULL;
	return json_pack("{s:s, s:o, s:O, s:O, s:b}", "object", "list", "data", data, "first_id",
			 first ? first : json_null(), "last_id", last ? last : json_null(), "has_more",
			 has_more);
}

int batchfmt_check_metadata(json_t *md, char *err, size_t errlen)
{
	if (md == NULL || json_is_null(md))
		return 0;
	if (!json_is_object(md)) {
		snprintf(err, errlen, "metadata: expected an object of string values");
		return -EINVAL;
	}
	if (json_object_size(md) > 16) {
		snprintf(err, errlen, "metadata: %zu keys; at most 16", json_object_size(md));
		return -EINVAL;
	}
	const char *k;
	json_t *v;
	json_object_foreach(md, k, v) {
		if (strlen(k) > 64) {
			snprintf(err, errlen, "metadata: key \"%.64s...\" is longer than 64 characters", k);
			return -EINVAL;
		}
		if (!json_is_string(v) || json_string_length(v) > 512) {
			snprintf(err, errlen, "metadata.%s: expected a string of at most 512 characters", k);
			return -EINVAL;
		}
	}
	return 0;
}

/* --- line checks ------------------------------------------------------- */

bool batchfmt_is_json_object(const char *text, size_t len)
{
	json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
	bool ok = json_is_object(o);
	json_decref(o);
	return ok;
}

static const batchfmt_model_t *find_model(const batchfmt_ctx_t *ctx, const char *name)
{
	for (size_t i = 0; i < ctx->n_models; i++)
		if (strcmp(ctx->models[i].name, name) == 0)
			return &ctx->models[i];
	return NULL;
}

static void served_list(const batchfmt_ctx_t *ctx, char *buf, size_t len)
{
	size_t off = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < ctx->n_models && off + 1 < len; i++) {
		int n = snprintf(buf + off, len - off, "%s%s", i ? ", " : "", ctx->models[i].name);
		if (n < 0)
			break;
		off += (size_t)n;
	}
	if (ctx->n_models == 0)
		snprintf(buf, len, "none: no worker is connected");
}

/* The model's side of an embedding line (m: the served model or NULL). */
static int check_embed(const batchfmt_ctx_t *ctx, const batchfmt_model_t *m, const ingest_line_t *l,
		       char *err, size_t errlen)
{
	if (m == NULL || m->embed_dims == 0) {
		if (m == NULL || ctx->wait_for_model)
			return 0;	/* waits for a worker that embeds with it */
		snprintf(err, errlen, "body.model: \"%.200s\" does not give embeddings (no connected worker embeds with it)",
			 l->model);
		return -EINVAL;
	}
	json_t *norm = json_loads(l->body, 0, NULL);
	json_int_t dims = json_integer_value(json_object_get(norm, "dimensions"));
	bool trunc = json_is_true(json_object_get(norm, "truncate"));
	json_t *in = json_object_get(norm, "inputs");
	int r = -EINVAL;
	if (dims > 0 && !m->embed_truncatable) {
		snprintf(err, errlen, "body.dimensions: model %s gives %u-dimension vectors and cannot be cut",
			 l->model, m->embed_dims);
		goto out;
	}
	if (dims > (json_int_t)m->embed_dims) {
		snprintf(err, errlen, "body.dimensions: %lld is more than the %u dimensions of model %s's vectors",
			 (long long)dims, m->embed_dims, l->model);
		goto out;
	}
	size_t i;
	json_t *x;
	json_array_foreach(in, i, x) {
		size_t n = json_array_size(json_object_get(x, "tokens"));
		if (!trunc && m->n_ctx > 0 && n > m->n_ctx) {
			char where[32] = "";
			if (json_array_size(in) > 1)
				snprintf(where, sizeof(where), "[%zu]", i);
			snprintf(err, errlen, "body.input%s: %zu tokens is more than the context of model %s (%u tokens)",
				 where, n, l->model, m->n_ctx);
			goto out;
		}
	}
	r = 0;
out:
	json_decref(norm);
	return r;
}

int batchfmt_check_line(batchfmt_ctx_t *ctx, const char *text, size_t len, ingest_line_t *ret,
			char **ret_custom_id, char *err, size_t errlen)
{
	json_error_t je;
	ingest_line_t l = { 0 };
	int r = -EINVAL;
	json_t *obj = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
	if (obj == NULL) {
		snprintf(err, errlen, "not valid JSON at column %d: %s", je.column, je.text);
		return -EINVAL;
	}
	if (!json_is_object(obj)) {
		snprintf(err, errlen, "expected a JSON object {\"custom_id\",\"method\",\"url\",\"body\"}");
		goto out;
	}
	json_t *cid = json_object_get(obj, "custom_id");
	if (ret_custom_id != NULL && json_is_string(cid) &&
	    strlen(json_string_value(cid)) == json_string_length(cid))
		*ret_custom_id = strdup(json_string_value(cid));
	if (cid == NULL) {
		snprintf(err, errlen, "custom_id: missing (each line needs a unique custom_id)");
		goto out;
	}
	json_t *method = json_object_get(obj, "method");
	if (!json_is_string(method) || strcmp(json_string_value(method), "POST") != 0) {
		snprintf(err, errlen, "method: expected \"POST\"");
		goto out;
	}
	json_t *url = json_object_get(obj, "url");
	if (!json_is_string(url)) {
		snprintf(err, errlen, "url: expected \"%s\" (the batch's endpoint)", ctx->endpoint);
		goto out;
	}
	if (strcmp(json_string_value(url), ctx->endpoint) != 0) {
		snprintf(err, errlen, "url: \"%.200s\" does not match the batch's endpoint \"%s\"",
			 json_string_value(url), ctx->endpoint);
		goto out;
	}
	r = ingest_line_parse_json(obj, ctx->ingest, &l, err, errlen);
	if (r < 0)
		goto out;
	r = -EINVAL;
	const batchfmt_model_t *m = find_model(ctx, l.model);
	if (m == NULL && !ctx->wait_for_model) {
		char served[512];
		served_list(ctx, served, sizeof(served));
		snprintf(err, errlen, "body.model: \"%.200s\" is not served by any connected worker (served: %s)",
			 l.model, served);
		goto out;
	}
	if (ctx->model[0] != '\0' && strcmp(ctx->model, l.model) != 0) {
		snprintf(err, errlen, "body.model: \"%.200s\" differs from the batch's model \"%s\" (one model per batch)",
			 l.model, ctx->model);
		goto out;
	}
	if (strcmp(l.endpoint, BATCHFMT_EP_EMBEDDINGS) == 0) {
		if (check_embed(ctx, m, &l, err, errlen) < 0)
			goto out;
	} else if (m != NULL && m->n_ctx > 0) {
		json_t *norm = json_loads(l.body, 0, NULL);
		json_int_t mt = json_integer_value(json_object_get(norm, "max_tokens"));
		json_decref(norm);
		if (mt > (json_int_t)m->n_ctx) {
			snprintf(err, errlen, "body.max_tokens: %lld is more than the context of model \"%s\" (%u tokens)",
				 (long long)mt, l.model, m->n_ctx);
			goto out;
		}
	}
	if (ctx->model[0] == '\0')
		snprintf(ctx->model, sizeof(ctx->model), "%s", l.model);
	*ret = l;
	memset(&l, 0, sizeof(l));
	r = 0;
out:
	ingest_line_done(&l);
	json_decref(obj);
	return r;
}
