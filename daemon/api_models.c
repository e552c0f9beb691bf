/* api_models: GET /v1/models and /v1/models/{id} — the models the
 * connected workers serve now (a model is listed while at least one worker
 * that announced it is connected). */
#include "api.h"
#include "batchfmt.h"

#include <stdio.h>
#include <string.h>

static json_t *model_json(const http_model_t *m)
{
	json_t *o = json_pack("{s:s, s:s, s:i, s:s, s:{s:i}}", "id", m->name, "object", "model",
			      "created", 0, "owned_by", "margin", "x_margin", "workers", (int)m->workers);
	if (o != NULL && m->n_ctx > 0)
		json_object_set_new(json_object_get(o, "x_margin"), "n_ctx", json_integer(m->n_ctx));
	/* What /v1/embeddings gives with it (absent: no connected worker embeds). */
	if (o != NULL && m->embed_dims > 0) {
		json_t *x = json_object_get(o, "x_margin");
		json_object_set_new(x, "embed_dims", json_integer(m->embed_dims));
		json_object_set_new(x, "embed_truncatable", json_boolean(m->embed_truncatable));
	}
	return o;
}

static bool load(http_req_t *r, http_model_t **m, size_t *n)
{
	char err[512];
	if (http_models(r->h, m, n, err, sizeof(err)) < 0) {
		http_reply_error(r, 503, "scheduler_unavailable", NULL, "%s", err);
		http_reply_header(r, "retry-after", "1");
		return false;
	}
	return true;
}

void api_models_list(http_req_t *r)
{
	http_model_t *m = NULL;
	size_t n = 0;
	if (!load(r, &m, &n))
		return;
	json_t *data = json_array();
	for (size_t i = 0; data != NULL && i < n; i++)
		json_array_append_new(data, model_json(&m[i]));
	http_models_free(m, n);
	http_reply_json(r, 200, data ? json_pack("{s:s, s:o}", "object", "list", "data", data) : NULL);
}

void api_models_get(http_req_t *r)
{
	http_model_t *m = NULL;
	size_t n = 0;
	if (!load(r, &m, &n))
		return;
	for (size_t i = 0; i < n; i++)
		if (strcmp(m[i].name, r->param[0]) == 0) {
			http_reply_json(r, 200, model_json(&m[i]));
			http_models_free(m, n);
			return;
		}
	http_models_free(m, n);
	http_reply_error(r, 404, "model_not_found", "model",
			 "The model \"%s\" is not served by any connected worker", r->param[0]);
}
