/* api: margind's HTTP endpoints (OpenAI's Files, Batches, Completions,
 * Embeddings and Models shapes, and the metering ones of api_cost.h) as
 * one route table for the server, api_service. The endpoint modules
 * (api_*.c) share the declarations below; http.c knows none of them: it
 * reaches them through http_config_t.service, so the server and the
 * endpoints never include each other. */
#ifndef API_H
#define API_H

#include "http_priv.h"

/* Set http_config_t.service to it. Static: lives for the process. */
extern const http_service_t api_service;

/* api_files.c */
int api_files_upload_begin(http_req_t *r);
int api_files_upload_data(http_req_t *r, const char *data, size_t len);
void api_files_upload(http_req_t *r);
void api_files_list(http_req_t *r);
void api_files_get(http_req_t *r);
void api_files_content(http_req_t *r);
void api_files_delete(http_req_t *r);
/* A file's metadata: 0, -ENOENT, -EBADMSG. Strings into the caller's
 * buffers (filename, purpose). path gets the data file. */
typedef struct api_file {
	char id[64];
	char filename[256];
	char purpose[32];
	int64_t bytes, created_at;
	char path[4096];
} api_file_t;
int api_files_find(http_t *h, const char *id, api_file_t *ret);
/* Registers a file the daemon wrote (output/error): moves tmp_path to
 * the store under id (replacing a file of that id: finalizing a batch
 * twice after a crash gives the same ids) and writes its metadata. */
int api_files_adopt(http_t *h, const char *tmp_path, const char *id, const char *filename,
		    const char *purpose);
/* Removes data files left without metadata by a crash. */
void api_files_sweep(http_t *h);

/* api_batches.c */
int api_batches_new(http_t *h, api_batches_t **ret, char *err, size_t errlen);
void api_batches_destroy(api_batches_t **b);
void api_batches_create(http_req_t *r);
void api_batches_get(http_req_t *r);
void api_batches_list(http_req_t *r);
void api_batches_cancel(http_req_t *r);

/* api_completions.c */
void api_completions_post(http_req_t *r);
/* A synchronous request (the JSON body of r) to endpoint ep, run as a
 * one-request inline job: checked like a batch line, submitted with
 * priority, waited for. On success returns 0 with *ret_row the job's
 * answered row (the core's "results" shape: text, prompt_tokens, ...;
 * new reference), ret_model the body's model and ret_name the job's name;
 * otherwise the error is replied and a negative errno returned. */
int api_sync_run(http_req_t *r, const char *ep, char *ret_model, size_t model_len,
		 char *ret_name, size_t name_len, json_t **ret_row);

/* api_embeddings.c */
void api_embeddings_post(http_req_t *r);

/* api_models.c */
void api_models_list(http_req_t *r);
void api_models_get(http_req_t *r);

#endif
