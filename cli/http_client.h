/* http_client: marginctl's client of margind's HTTP API (libcurl).
 *
 * One handle per process (the commands are sequential); it keeps the
 * connection alive between calls. Paths are relative to the base URL
 * ("/v1/batches"); a base URL that ends in "/v1" (as the OpenAI SDKs
 * write it) is accepted too. The API key goes out as
 * "Authorization: Bearer KEY". Single thread. */
#ifndef HTTP_CLIENT_H
#define HTTP_CLIENT_H

#include <jansson.h>
#include <stdio.h>

typedef struct http_client http_client_t;

/* -EINVAL for a URL that is not http(s)://..., -ENOMEM. */
int http_client_new(const char *base_url, const char *api_key, http_client_t **ret, char *err,
		    size_t errlen);
void http_client_destroy(http_client_t **c);

/* A JSON call: body (borrowed, may be NULL) is sent as application/json.
 * Returns 0 when an HTTP response came back — *ret_status its code,
 * *ret_json its body parsed (NULL when not JSON) — or a negative errno
 * when none did (err says why: connection refused, timeout...). */
int http_client_json(http_client_t *c, const char *method, const char *path, json_t *body,
		     long *ret_status, json_t **ret_json, char *err, size_t errlen);

/* POST /v1/files with the fields file (the local path, sent as filename)
 * and purpose. Same returns as http_client_json. */
int http_client_upload(http_client_t *c, const char *local_path, const char *filename,
		       const char *purpose, long *ret_status, json_t **ret_json, char *err,
		       size_t errlen);

/* GET path streamed to out (a 2xx body only; an error body is parsed
 * into *ret_json instead). */
int http_client_download(http_client_t *c, const char *path, FILE *out, long *ret_status,
			 json_t **ret_json, char *err, size_t errlen);

/* "MESSAGE (HTTP STATUS, code CODE)" from an OpenAI error body, or the
 * status alone. Returns buf. */
const char *http_client_error_text(json_t *body, long status, char *buf, size_t len);

#endif
