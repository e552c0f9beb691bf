/* ingest: lines of an OpenAI Batch input file -> journal requests, and a
 * stored request -> the wire Request of an Assign.
 *
 * A line is `{"custom_id": "...", "method": "POST", "url": "/v1/chat/completions",
 * "body": {"model": "...", "messages": [...], "max_tokens": N, ...}}` (or url
 * "/v1/completions" with "prompt"). Validation resolves every default once,
 * so the stored body is a normalized object that dispatch reads without
 * further checks:
 *
 *   {"chat":true,"messages":[{"role":"user","content":"..."}],  (or "prompt":"...")
 *    "max_tokens":N,"temperature":T,"top_p":P,"top_k":K,"seed":S,"stop":[...]}
 *
 * The seed is body.seed when given, else ingest_seed(job, custom_id), so a
 * re-dispatched request samples the same tokens.
 *
 * url "/v1/embeddings" with body {"model","input","encoding_format",
 * "dimensions","user","truncate"} (input: a string, an array of strings,
 * an array of token ids, or an array of such arrays) is stored as
 *
 *   {"embed":true,"inputs":[{"text":"..."} or {"tokens":[1,2,...]}, ...],
 *    "encoding_format":"float"|"base64","dimensions":D (0: the model's),
 *    "truncate":false}
 *
 * Pure functions: any thread. */
#ifndef INGEST_H
#define INGEST_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/mg_wire.h"

#define INGEST_CUSTOM_ID_MAX 512
#define INGEST_LINE_MAX (8u * 1024u * 1024u)
#define INGEST_EP_EMBEDDINGS "/v1/embeddings"
#define INGEST_EMBED_INPUTS_MAX 2048	/* inputs per request, as OpenAI allows */
#define INGEST_EMBED_DIMS_MAX 65536

typedef struct ingest_params {
	const char *job;		/* job name, for the seed */
	uint32_t default_max_tokens;	/* when the body has none */
	uint32_t max_tokens_cap;	/* larger values are refused */
} ingest_params_t;

/* One validated line. */
typedef struct ingest_line {
	char *custom_id;	/* owned */
	char *model;		/* owned: body.model */
	char *body;		/* owned: the normalized body (compact JSON) */
	const char *endpoint;	/* static: "/v1/chat/completions" | "/v1/completions" |
				   "/v1/embeddings" */
	int64_t est_tokens;	/* prompt bytes / 4 + max_tokens (embeddings: text
				   bytes / 4 + 1 and token ids, over the inputs):
				   for sharding */
} ingest_line_t;

/* Parses and validates one line (text of len bytes, no newline). On error
 * returns -EINVAL and err says what is wrong ("custom_id: expected a
 * non-empty string"); the caller adds the line number. *ret is written
 * only on success. */
int ingest_line_parse(const char *text, size_t len, const ingest_params_t *p,
		      ingest_line_t *ret, char *err, size_t errlen);
/* Same, from a decoded object (inline submit). */
int ingest_line_parse_json(json_t *obj, const ingest_params_t *p, ingest_line_t *ret,
			   char *err, size_t errlen);
/* NULL-safe; frees the owned strings and zeroes the struct. */
void ingest_line_done(ingest_line_t *l);

/* The default seed of a request: FNV-1a 64 of job NUL custom_id, then a
 * splitmix64 finalizer. Stable across versions: outputs depend on it. */
uint64_t ingest_seed(const char *job, const char *custom_id);

/* A wire Request built from a stored normalized body. pb's strings borrow
 * from this struct; valid until ingest_req_done(). */
typedef struct ingest_req {
	Margin__V1__Request pb;
	json_t *root;			/* owned: the parsed body */
	char *custom_id;		/* owned */
	Margin__V1__ChatMessage *msgs;	/* owned: n_messages */
	Margin__V1__ChatMessage **msgp;	/* owned: pointers into msgs */
	char **stop;			/* owned array; strings borrowed from root */
	Margin__V1__EmbedInput *inputs;	/* owned: n_inputs (embeddings) */
	Margin__V1__EmbedInput **inputp;	/* owned: pointers into inputs */
	int32_t *tokens;		/* owned: the token ids of every input, in order */
} ingest_req_t;

/* -EBADMSG if the stored body is not a normalized body (a corrupt journal). */
int ingest_req_fill(ingest_req_t *r, int64_t line_no, const char *custom_id, const char *body);
void ingest_req_done(ingest_req_t *r);

/* Streams an input file line by line from a byte offset (resume after a
 * restart). Memory is bounded by INGEST_LINE_MAX whatever the file. */
typedef struct ingest_file ingest_file_t;

/* offset/line: bytes and physical lines already consumed. */
int ingest_file_open(const char *path, int64_t offset, int64_t line, ingest_file_t **ret,
		     char *err, size_t errlen);
void ingest_file_close(ingest_file_t **f);
/* Next non-blank line: returns 1 with *ret_text (borrowed until the next
 * call, NUL-terminated, no newline), 0 at end of file, -EFBIG for a line
 * over INGEST_LINE_MAX (skipped; *ret_line_no names it), -errno on a read
 * error. */
int ingest_file_next(ingest_file_t *f, const char **ret_text, size_t *ret_len,
		     int64_t *ret_line_no);
/* Bytes and physical lines consumed so far. */
int64_t ingest_file_offset(const ingest_file_t *f);
int64_t ingest_file_line(const ingest_file_t *f);

#endif
