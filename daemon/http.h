/* http: margind's HTTP API on libmicrohttpd — the OpenAI Files, Batches,
 * Completions and Models endpoints, /metrics, /healthz and /readyz.
 *
 * Threads: libmicrohttpd's epoll loop runs in a small pool of threads
 * ([http] threads) that read and write every connection; an idle or slow
 * connection costs a socket and a few kilobytes, never a thread. A request
 * whose body is complete runs its handler in a thread of its own while its
 * connection is suspended (handlers may wait: a synchronous completion
 * waits for its answer), so a slow handler never holds up the event loop;
 * http adds one finalizer thread that writes the output and error files of
 * finished batches. None of them touches the core's state: they talk to the
 * core thread through the control socket (inproc://margind-ctl, one JSON
 * request and one JSON reply per call, see ctl.h), and they own only the
 * files they write under STATE_DIR/files and STATE_DIR/batches.
 *
 * Limits, authentication and error shapes are tables in http.c; the
 * route table of the endpoints is api.c's (http_config_t.service), which
 * live in api_files.c, api_batches.c, api_completions.c, api_embeddings.c,
 * api_models.c and api_cost.c. docs/api.md describes what clients see.
 *
 * Lifetime: http_new() (binds, starts threads) -> ... -> http_destroy()
 * (stops them), from one controlling thread (margind's main). */
#ifndef HTTP_H
#define HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "apikeys.h"
#include "metrics.h"

#define HTTP_DEFAULT_LISTEN "127.0.0.1:8080"

typedef struct http http_t;
/* The endpoints beyond the server's own (http_priv.h). */
typedef struct http_service http_service_t;

/* One control call: req borrowed, *ret_reply a new reference on success
 * (0) — the reply object, which may be an {"error":{"code","message"}}.
 * A negative errno when the core did not answer (-ETIMEDOUT) or the
 * request could not be sent. Called from HTTP threads concurrently. */
typedef int (*http_ctl_fn)(void *user, json_t *req, json_t **ret_reply);

typedef struct http_config {
	const char *listen;		/* "HOST:PORT" (IPv6: "[::1]:8080"); port 0 picks one */
	const char *state_dir;		/* files/ and batches/ are created below it */
	const apikeys_t *keys;		/* borrowed; NULL: no authentication (loopback only) */
	uint64_t max_upload_bytes;	/* POST /v1/files body (default 200 MiB) */
	uint64_t max_line_bytes;	/* one line of an uploaded JSONL file (default 8 MiB) */
	uint64_t max_body_bytes;	/* JSON request bodies (default 1 MiB) */
	uint32_t max_connections;	/* concurrent connections, all clients (default 4096) */
	uint32_t max_connections_per_ip;	/* from one client address (default 256) */
	uint32_t idle_timeout_s;	/* a connection silent this long is closed (default 10) */
	uint32_t threads;		/* event-loop threads (default 4) */
	int64_t ctl_timeout_ns;		/* one control call (default 30 s) */
	int64_t sync_timeout_ns;	/* a synchronous completion (default 10 min) */
	int64_t completion_window_s;	/* "24h" ([http] batch_expiry) */
	uint32_t default_max_tokens;	/* as the scheduler's (for validation) */
	uint32_t max_tokens_cap;
	int64_t finalize_period_ns;	/* how often finished batches are looked for (1 s) */
	metrics_t *metrics;		/* borrowed: shared with the core, which feeds it from
					   committed Results; NULL: http keeps its own */
	const http_service_t *service;	/* borrowed: the endpoints past /healthz, /readyz
					   and /metrics (api.h: api_service); NULL: none */
} http_config_t;

/* Defaults above (the same as margind's settings table, opts.c, whose
 * opts_http_config() fills the limits from [http]); listen =
 * HTTP_DEFAULT_LISTEN, strings NULL otherwise. */
void http_config_default(http_config_t *c);
/* True when HOST of "HOST:PORT" is a loopback address (127.0.0.0/8, ::1,
 * "localhost"). -EINVAL when listen does not parse. */
int http_listen_is_loopback(const char *listen);

/* Binds and starts serving. ctl: how to reach the core (NULL: a REQ socket
 * to inproc://margind-ctl in zctx, which must then be given). Refuses a
 * non-loopback address without keys (-EPERM). Writes the base URL to
 * STATE_DIR/http ("http://127.0.0.1:8080\n") for scripts. *ret owned by
 * the caller; err says what went wrong and where. */
int http_new(const http_config_t *cfg, void *zctx, http_ctl_fn ctl, void *ctl_user, http_t **ret,
	     char *err, size_t errlen);
/* Stops accepting, waits for running requests and the finalizer, frees.
 * NULL-safe; sets *h = NULL. */
void http_destroy(http_t **h);

/* The bound port (useful with port 0). */
uint16_t http_port(const http_t *h);

#endif
