/* batchfmt: the OpenAI Batch API's JSON shapes, and the checks of one input
 * line against the batch it joins.
 *
 * Pure functions (any thread, no I/O): the HTTP handlers, the finalizer that
 * writes output and error files, and the unit tests call them directly.
 *
 * Shapes (docs/api.md, ecosystem.md §1):
 * - error body          {"error":{"message","type","param","code"}}
 * - completion body     text_completion / chat.completion with usage and
 *                       finish_reason
 * - output/error line   {"id","custom_id","response":{"status_code",
 *                       "request_id","body"}|null,"error":{"code","message"}|null}
 * - Batch object, File object, list pages.
 *
 * Ids of output lines are derived from (batch id, line number), so the
 * output of a batch is the same bytes however often it is written. */
#ifndef BATCHFMT_H
#define BATCHFMT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ingest.h"

#define BATCHFMT_EP_COMPLETIONS "/v1/completions"
#define BATCHFMT_EP_CHAT "/v1/chat/completions"
#define BATCHFMT_EP_EMBEDDINGS INGEST_EP_EMBEDDINGS

/* --- errors ------------------------------------------------------------ */

/* The OpenAI error "type" for an HTTP status: invalid_request_error (4xx),
 * authentication_error (401), permission_error (403), not_found_error
 * (404), rate_limit_error (429), server_error (5xx). */
const char *batchfmt_error_type(unsigned status);
/* {"error":{"message":message,"type":type,"param":param|null,"code":code|null}}.
 * New reference, NULL on out of memory. */
json_t *batchfmt_error_body(const char *message, const char *type, const char *param,
			    const char *code);

/* --- completions ------------------------------------------------------- */

typedef struct batchfmt_completion {
	const char *endpoint;		/* BATCHFMT_EP_COMPLETIONS or BATCHFMT_EP_CHAT */
	const char *id;			/* "cmpl-…" / "chatcmpl-…" */
	const char *model;
	int64_t created;		/* unix seconds */
	const char *text;
	const char *finish_reason;	/* "stop" | "length" | ... ; NULL/"" -> "stop" */
	int64_t prompt_tokens, completion_tokens;
} batchfmt_completion_t;

/* text_completion {"id","object","created","model","system_fingerprint",
 * "choices":[{"index":0,"text","logprobs":null,"finish_reason"}],"usage"}
 * or chat.completion with choices[0].message {"role":"assistant",
 * "content","refusal":null}. usage.total_tokens = prompt + completion.
 * New reference or NULL (out of memory). */
json_t *batchfmt_completion_body(const batchfmt_completion_t *c);

/* --- embeddings -------------------------------------------------------- */

/* {"object":"list","data":[{"object":"embedding","index":i,"embedding":E}],
 * "model","usage":{"prompt_tokens","total_tokens"}} from the stored
 * vectors (journal.h: base64 of little-endian float32, one per input,
 * joined by ','). E is the stored base64 text as is for encoding
 * "base64", else the array of the floats, each the shortest decimal that
 * reads back as the same float32 (serialize with JSON_REAL_PRECISION(9)
 * or more: batchfmt_dumps). NULL for corrupt stored text or out of
 * memory. New reference. */
json_t *batchfmt_embeddings_body(const char *model, const char *vectors, const char *encoding,
				 int64_t prompt_tokens);
/* The shortest decimal of f that strtof() reads back as f (at most 9
 * significant digits), as the double nearest to it, so that %.9g prints
 * that decimal. f must be finite. */
double batchfmt_float_shortest(float f);
/* json_dumps of a response body: compact, keys in insertion order, reals
 * with 9 significant digits (what a float32 needs). malloc'd or NULL. */
char *batchfmt_dumps(const json_t *body);

/* --- output and error lines -------------------------------------------- */

/* One request of a batch as the journal (or the validation pass) left it. */
typedef struct batchfmt_result {
	const char *batch_id;
	const char *endpoint;
	const char *model;
	int64_t created;		/* unix seconds for the completion body */
	int64_t line_no;		/* 1-based physical line of the input */
	const char *custom_id;		/* NULL: the line had none (validation) */
	const char *state;		/* journal: "done" "failed" "cancelled" "queued";
					   "invalid" for a line refused by validation */
	const char *text;		/* done; embeddings: the stored vectors */
	const char *encoding_format;	/* done embeddings: "float" (NULL) or "base64" */
	const char *finish_reason;
	int64_t prompt_tokens, completion_tokens;
	const char *error_code;		/* failed, cancelled, invalid */
	const char *error_message;
	bool expired;			/* the batch expired: unanswered -> batch_expired */
} batchfmt_result_t;

/* "batch_req_" + 24 hex digits of a hash of (batch id, line): stable. */
void batchfmt_line_id(const char *batch_id, int64_t line_no, const char *prefix, char *buf,
		      size_t len);

/* Formats the output or error line of r (compact JSON and '\n').
 * Returns 1 when it belongs in the output file (state "done"), 0 for the
 * error file, -ENOMEM. *ret_line malloc'd, caller frees.
 * - done:      response {status_code 200, request_id, body: completion or
 *              the embeddings list}, error null
 * - invalid:   response {status_code 400, body: error body whose message
 *              starts with "line N: "}, error null
 * - failed:    response null, error {code, message}
 * - cancelled / queued of a finished batch: response null, error
 *              {"batch_cancelled" or "batch_expired", message} */
int batchfmt_result_line(const batchfmt_result_t *r, char **ret_line, size_t *ret_len);

/* --- objects ----------------------------------------------------------- */

typedef struct batchfmt_batch {
	const char *id, *endpoint, *input_file_id, *completion_window, *status;
	const char *output_file_id, *error_file_id;	/* NULL -> null */
	const char *model;				/* NULL/"" -> absent */
	int64_t created_at, in_progress_at, expires_at, finalizing_at, completed_at, failed_at,
		expired_at, cancelling_at, cancelled_at;	/* unix s; 0 -> null */
	int64_t total, completed, failed;
	json_t *errors;			/* borrowed: array of {code,message,param,line}; NULL/empty -> null */
	json_t *metadata;		/* borrowed: object or NULL -> null */
	bool has_usage;
	int64_t input_tokens, output_tokens;
	json_t *margin;			/* borrowed: extension object "x_margin" (progress,
					   busy time, cost) or NULL -> absent */
} batchfmt_batch_t;

/* The Batch object. New reference or NULL. */
json_t *batchfmt_batch_json(const batchfmt_batch_t *b);

typedef struct batchfmt_file {
	const char *id, *filename, *purpose;
	int64_t bytes, created_at, expires_at;	/* expires_at 0 -> absent */
} batchfmt_file_t;

/* The File object {"id","object":"file","bytes","created_at","filename",
 * "purpose","status":"processed"}. New reference or NULL. */
json_t *batchfmt_file_json(const batchfmt_file_t *f);

/* {"object":"list","data":data,"first_id","last_id","has_more"}: steals
 * data (an array whose elements have "id"). New reference or NULL. */
json_t *batchfmt_list(json_t *data, bool has_more);

/* --- metadata and create parameters ----------------------------------- */

/* metadata: null/absent, or an object of at most 16 string values, keys at
 * most 64 characters, values at most 512. -EINVAL with err naming the key. */
int batchfmt_check_metadata(json_t *metadata, char *err, size_t errlen);

/* --- line checks ------------------------------------------------------- */

/* A model the connected workers serve. */
typedef struct batchfmt_model {
	const char *name;
	uint32_t n_ctx;			/* 0: unknown (no check) */
	uint32_t embed_dims;		/* the vectors' length; 0: no connected worker
					   embeds with it */
	bool embed_truncatable;		/* dimensions may ask for fewer */
} batchfmt_model_t;

typedef struct batchfmt_ctx {
	const char *endpoint;		/* the batch's endpoint (required) */
	const batchfmt_model_t *models;	/* served models (borrowed) */
	size_t n_models;
	const ingest_params_t *ingest;	/* defaults and caps of the daemon */
	bool wait_for_model;		/* a batch: a model no connected worker serves is
					 * accepted (its lines wait in the queue for a worker
					 * or the completion window); a synchronous request
					 * cannot wait, so there it is refused */
	char model[256];		/* the batch's model: set by the first good line */
} batchfmt_ctx_t;

/* Checks one input line (len bytes, no newline) as sched will run it, and
 * beyond that: method POST, url equal to the batch's endpoint, the model
 * served by a connected worker (unless ctx->wait_for_model) and the same
 * for every line of the batch, max_tokens within the model's context (when
 * a connected worker says what it is). For /v1/embeddings: a connected
 * worker embeds with the model (unless ctx->wait_for_model), dimensions
 * only where every such worker allows cutting and at most its length, and
 * token-id inputs within the context. Does NOT check custom_id
 * uniqueness (the caller's set does). On success returns 0 and *ret holds
 * the parsed line (ingest_line_done). On a refused line returns -EINVAL,
 * err says what and where ("url: \"/v1/embeddings\" does not match ..."),
 * and *ret_custom_id (when not NULL) gets a malloc'd copy of the line's
 * custom_id if it had a string one. -ENOMEM. */
int batchfmt_check_line(batchfmt_ctx_t *ctx, const char *text, size_t len, ingest_line_t *ret,
			char **ret_custom_id, char *err, size_t errlen);

/* True when text parses as a JSON object: the test for "this file is JSONL"
 * applied to its first non-blank line. */
bool batchfmt_is_json_object(const char *text, size_t len);

#endif
