/* http_priv: what the endpoint modules (api_*.c) share with http.c.
 *
 * A handler gets an http_req_t (one per HTTP request, owned by http.c,
 * alive until the request completes) and answers with one http_reply_*()
 * call. A handler runs in a thread of its own while libmicrohttpd keeps
 * its connection suspended: it may block (control calls, file I/O, a
 * synchronous completion's wait) but must not keep pointers into the
 * request after returning. Streaming data callbacks (uploads) run in the
 * event loop: they must not wait for anything but the disk. */
#ifndef HTTP_PRIV_H
#define HTTP_PRIV_H

#include <jansson.h>
#include <microhttpd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <threads.h>

#include "http.h"
#include "metrics.h"

#define HTTP_MAX_PARAMS 2

typedef struct api_batches api_batches_t;

struct http {
	http_config_t cfg;		/* strings borrowed from the caller's config... */
	char *listen, *state_dir;	/* ...except these two: owned copies */
	char files_dir[3900];		/* STATE_DIR/files */
	char batches_dir[3900];	/* STATE_DIR/batches */
	const apikeys_t *keys;		/* borrowed */
	void *zctx;			/* borrowed */
	http_ctl_fn ctl;
	void *ctl_user;
	struct MHD_Daemon *mhd;		/* owned */
	atomic_bool stopping;		/* http_destroy began: waits end early */
	mtx_t busy_lock;		/* guards busy */
	cnd_t busy_idle;		/* signalled when busy drops to 0 */
	unsigned busy;			/* handler threads running */
	bool busy_init;
	uint16_t port;
	metrics_t *metrics;		/* cfg.metrics (borrowed) or own_metrics */
	metrics_t *own_metrics;		/* owned, when cfg.metrics is NULL */
	api_batches_t *batches;		/* owned by cfg.service (api.c): sidecars and the
					   finalizer thread */
	bool service_started;		/* cfg.service->start ran: stop runs */
};

typedef struct http_req http_req_t;

/* A streaming body (uploads): called for each chunk of the raw request
 * body, then handle() runs once it is complete. Returns 0, or a negative
 * errno after queueing an error reply with http_reply_*() (the rest of the
 * body is then discarded). */
typedef int (*http_data_fn)(http_req_t *r, const char *data, size_t len);
typedef void (*http_handler_fn)(http_req_t *r);
/* Frees what begin/data left in r->user (also when the client went away). */
typedef void (*http_cleanup_fn)(http_req_t *r);

struct http_req {
	http_t *h;			/* borrowed */
	struct MHD_Connection *conn;	/* borrowed: valid during the request */
	const char *method;		/* borrowed from MHD */
	const char *path;		/* without the query string */
	char param[HTTP_MAX_PARAMS][256];	/* {} segments of the route, in order */
	char *body;			/* owned: the JSON body (ROUTE_JSON), NUL-terminated */
	size_t body_len;
	json_t *json;			/* owned: body parsed (ROUTE_JSON) */
	uint64_t received;		/* body bytes seen */
	void *user;			/* owned by the route's module (cleanup) */
	http_cleanup_fn cleanup;
	struct MHD_Response *resp;	/* owned until queued */
	unsigned status;
	bool replied;			/* an error reply is queued already */
};

/* Query argument (?key=value) or NULL. */
const char *http_query(http_req_t *r, const char *key);
/* Request header or NULL (case-insensitive name). */
const char *http_header(http_req_t *r, const char *name);

/* Replies. Each sets r->resp/r->status (http.c queues it); a second reply
 * for the same request is ignored. */
void http_reply_json(http_req_t *r, unsigned status, json_t *body /* stolen */);
void http_reply_error(http_req_t *r, unsigned status, const char *code, const char *param,
		      const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* text copied. */
void http_reply_text(http_req_t *r, unsigned status, const char *content_type, const char *text,
		     size_t len);
/* Serves size bytes of fd (stolen: closed by libmicrohttpd). */
void http_reply_fd(http_req_t *r, unsigned status, const char *content_type, int fd, uint64_t size);
/* Adds a header to the queued reply (after an http_reply_*). */
void http_reply_header(http_req_t *r, const char *name, const char *value);

/* A control call (see http_ctl_fn): reply is a new reference. On an
 * {"error":...} reply or a failed call, replies with the matching HTTP
 * error (not_found 404, invalid_request 400, conflict 409, too_large 413,
 * core unreachable 503, ...) and returns a negative errno; the caller just
 * returns. cmd is added to req. */
int http_call(http_req_t *r, const char *cmd, json_t *req /* stolen */, json_t **ret_reply);
/* The same without replying (background threads): -ENOENT for not_found,
 * -EINVAL, -EIO for other errors; err gets the core's message. */
int http_call_quiet(http_t *h, const char *cmd, json_t *req /* stolen */, json_t **ret_reply,
		    char *err, size_t errlen);

/* Random hex id: prefix + 24 hex digits. */
void http_random_id(const char *prefix, char *buf, size_t len);

/* Writes len bytes to path atomically (path.tmp, fsync, rename, fsync of
 * the directory). -errno. */
int http_write_atomic(const char *path, const char *data, size_t len);
/* fsync of a directory. */
int http_fsync_dir(const char *dir);

/* Models the connected workers serve: fills *ret (malloc'd array of
 * malloc'd names, free with http_models_free). */
typedef struct http_model {
	char *name;
	uint32_t n_ctx;			/* 0 = unknown */
	uint32_t workers;
	uint32_t embed_dims;		/* smallest over the workers that embed with it;
					   0: none does */
	bool embed_truncatable;		/* every worker that embeds with it allows cutting */
} http_model_t;
int http_models(http_t *h, http_model_t **ret, size_t *ret_n, char *err, size_t errlen);
void http_models_free(http_model_t *m, size_t n);
/* The same as batchfmt_check_line's models: malloc'd array of n (names
 * borrowed from m), NULL on out of memory. */
struct batchfmt_model *http_models_check(const http_model_t *m, size_t n);

/* --- routes ------------------------------------------------------------ */

enum {
	HTTP_ROUTE_OPEN = 1,	/* no API key needed */
	HTTP_ROUTE_JSON = 2,	/* a JSON object body is required */
	HTTP_ROUTE_STREAM = 4,	/* the body is streamed to begin/data (uploads) */
	HTTP_ROUTE_INLINE = 8,	/* answered in the event loop: never waits */
	HTTP_ROUTE_WORK = 16,	/* new work: refused with 507 while the disk is full */
};

typedef struct http_route {
	const char *method;
	const char *pattern;		/* "{}" = one id segment */
	unsigned flags;			/* HTTP_ROUTE_* */
	http_handler_fn handle;
	int (*begin)(http_req_t *r);	/* HTTP_ROUTE_STREAM: before the first chunk */
	http_data_fn data;		/* HTTP_ROUTE_STREAM: each chunk */
} http_route_t;

/* The endpoints a server answers besides its own /healthz, /readyz and
 * /metrics (http_config_t.service; api.h's api_service is margind's). The
 * server knows them only through this table, so it never includes the
 * modules that implement them. */
struct http_service {
	const http_route_t *routes;	/* tried in order after the server's own */
	size_t n_routes;
	/* In http_new(), once STATE_DIR/{files,batches} exist: 0, or a
	 * negative errno with err filled (http_new fails with it). */
	int (*start)(http_t *h, char *err, size_t errlen);
	/* In http_destroy() after the last handler ended, when start ran
	 * (also when it failed: it must free what it half-built). */
	void (*stop)(http_t *h);
	/* At each /metrics scrape, before the set is rendered. */
	void (*scrape)(http_t *h);
};

#endif
