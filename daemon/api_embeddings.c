/* api_embeddings: synchronous POST /v1/embeddings.
 *
 * The request runs as a batch line would (api_sync_run: checked by
 * batchfmt_check_line against the models of the connected workers, which
 * must embed with the model; a one-request inline job with priority,
 * dispatched only to a worker that embeds); the answer is the stored
 * vectors as the embeddings list, floats or base64 as encoding_format
 * asks. */
#include "api.h"
#include "batchfmt.h"

#include <stdlib.h>
#include <string.h>

void api_embeddings_post(http_req_t *r)
{
	char model[256], name[64];
	json_t *row = NULL;
	if (api_sync_run(r, BATCHFMT_EP_EMBEDDINGS, model, sizeof(model), name, sizeof(name), &row) < 0)
		return;
	json_t *body = batchfmt_embeddings_body(model, json_string_value(json_object_get(row, "text")),
						json_string_value(json_object_get(row, "encoding_format")),
						json_integer_value(json_object_get(row, "prompt_tokens")));
	char *text = body ? batchfmt_dumps(body) : NULL;
	json_decref(body);
	json_decref(row);
	if (text == NULL) {
		http_reply_error(r, 500, "internal_error", NULL, "cannot format the embeddings of %s", name);
		return;
	}
	http_reply_text(r, 200, "application/json", text, strlen(text));
	free(text);
}
