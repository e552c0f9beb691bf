/* http: see http.h. The server: routing, authentication, body limits, error
 * shapes, the control-socket client and the open endpoints (/healthz,
 * /readyz, /metrics). */
#include "http.h"
#include "http_priv.h"
#include "batchfmt.h"
#include "lib/mg_clock.h"
#include "lib/mg_log.h"
#include "storage.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#define CTL_ENDPOINT "inproc://margind-ctl"	/* ctl.h: CTL_INPROC_ENDPOINT */

/* --- config ------------------------------------------------------------ */

void http_config_default(http_config_t *c)
{
	memset(c, 0, sizeof(*c));
	c->listen = HTTP_DEFAULT_LISTEN;
	c->max_upload_bytes = 200ull << 20;	/* OpenAI's batch input limit */
	c->max_line_bytes = 8ull << 20;		/* ingest.h INGEST_LINE_MAX */
	c->max_body_bytes = 1ull << 20;
	c->max_connections = 4096;
	c->max_connections_per_ip = 256;
	c->idle_timeout_s = 10;
	c->threads = 4;
	c->ctl_timeout_ns = 30 * MG_NS_PER_S;
	c->sync_timeout_ns = 600 * MG_NS_PER_S;
	c->completion_window_s = 24 * 3600;
	c->default_max_tokens = 256;
	c->max_tokens_cap = 1u << 20;
	c->finalize_period_ns = MG_NS_PER_S;
}

/* "HOST:PORT" / "[V6]:PORT" -> host (no brackets) and port. */
static int split_listen(const char *listen, char *host, size_t hostlen, unsigned *port)
{
	const char *colon;
	if (listen == NULL)
		return -EINVAL;
	if (listen[0] == '[') {
		const char *rb = strchr(listen, ']');
		if (rb == NULL || rb[1] != ':')
			return -EINVAL;
		snprintf(host, hostlen, "%.*s", (int)(rb - listen - 1), listen + 1);
		colon = rb + 1;
	} else {
		colon = strrchr(listen, ':');
		if (colon == NULL || colon == listen)
			return -EINVAL;
		snprintf(host, hostlen, "%.*s", (int)(colon - listen), listen);
	}
	char *end;
	unsigned long p = strtoul(colon + 1, &end, 10);
	if (colon[1] == '\0' || *end != '\0' || p > 65535)
		return -EINVAL;
	*port = (unsigned)p;
	return 0;
}

static int resolve(const char *listen, struct sockaddr_storage *ss, socklen_t *sslen)
{
	char host[256];
	unsigned port;
	if (split_listen(listen, host, sizeof(host), &port) < 0)
		return -EINVAL;
	struct addrinfo hints = { .ai_flags = AI_NUMERICSERV | AI_PASSIVE, .ai_socktype = SOCK_STREAM };
	struct addrinfo *ai = NULL;
	char ps[8];
	snprintf(ps, sizeof(ps), "%u", port);
	if (getaddrinfo(host[0] ? host : NULL, ps, &hints, &ai) != 0 || ai == NULL)
		return -EADDRNOTAVAIL;
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	*sslen = ai->ai_addrlen;
	freeaddrinfo(ai);
	return 0;
}

int http_listen_is_loopback(const char *listen)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int r = resolve(listen, &ss, &len);
	if (r < 0)
		return r;
	if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
		return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
	}
	if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
		return IN6_IS_ADDR_LOOPBACK(&a->sin6_addr) ||
		       (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr) && a->sin6_addr.s6_addr[12] == 127);
	}
	return 0;
}

/* --- small helpers shared with the api modules ------------------------ */

void http_random_id(const char *prefix, char *buf, size_t len)
{
	uint8_t rnd[12];
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
		/* Not expected on Linux >= 3.17; fall back to time and address bits. */
		uint64_t t = (uint64_t)mg_clock_wall_ns() ^ (uint64_t)(uintptr_t)buf;
		for (size_t i = 0; i < sizeof(rnd); i++)
			rnd[i] = (uint8_t)(t >> (8 * (i % 8))) ^ (uint8_t)(i * 131);
	}
	int n = snprintf(buf, len, "%s", prefix);
	for (size_t i = 0; i < sizeof(rnd) && n > 0 && (size_t)n + 2 < len; i++)
		n += snprintf(buf + n, len - (size_t)n, "%02x", rnd[i]);
}

int http_fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return r;
}

int http_write_atomic(const char *path, const char *data, size_t len)
{
	char tmp[4200], dir[4200];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	size_t off = 0;
	while (off < len) {
		ssize_t n = write(fd, data + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = -errno;
			close(fd);
			unlink(tmp);
			return e;
		}
		off += (size_t)n;
	}
	if (fsync(fd) < 0 || close(fd) < 0) {
		int e = -errno;
		unlink(tmp);
		return e;
	}
	if (rename(tmp, path) < 0) {
		int e = -errno;
		unlink(tmp);
		return e;
	}
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash != NULL) {
		*slash = '\0';
		return http_fsync_dir(dir[0] ? dir : "/");
	}
	return 0;
}

/* --- control calls ----------------------------------------------------- */

/* The default transport: a REQ socket per call. inproc connects are cheap
 * and a fresh socket never inherits a timed-out exchange's state. */
static int ctl_zmq(void *user, json_t *req, json_t **ret_reply)
{
	http_t *h = user;
	char *text = json_dumps(req, JSON_COMPACT);
	if (text == NULL)
		return -ENOMEM;
	int r = 0;
	void *s = zmq_socket(h->zctx, ZMQ_REQ);
	if (s == NULL) {
		free(text);
		return -zmq_errno();
	}
	int linger = 0;
	zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger));
	if (zmq_connect(s, CTL_ENDPOINT) < 0 || zmq_send(s, text, strlen(text), 0) < 0) {
		r = -zmq_errno();
		goto out;
	}
	zmq_pollitem_t it = { s, 0, ZMQ_POLLIN, 0 };
	int64_t deadline = mg_clock_now_ns() + h->cfg.ctl_timeout_ns;
	for (;;) {
		int64_t left = deadline - mg_clock_now_ns();
		if (left <= 0) {
			r = -ETIMEDOUT;
			goto out;
		}
		if (atomic_load(&h->stopping)) {
			r = -ESHUTDOWN;
			goto out;
		}
		/* Short slices: a stopping daemon does not wait out the timeout. */
		long ms = (long)(left / MG_NS_PER_MS) + 1;
		int n = zmq_poll(&it, 1, ms > 100 ? 100 : ms);
		if (n < 0 && zmq_errno() == EINTR)
			continue;
		if (n < 0) {
			r = -zmq_errno();
			goto out;
		}
		if (n > 0)
			break;
	}
	zmq_msg_t m;
	zmq_msg_init(&m);
	if (zmq_msg_recv(&m, s, 0) < 0) {
		r = -zmq_errno();
		zmq_msg_close(&m);
		goto out;
	}
	json_error_t je;
	json_t *reply = json_loadb(zmq_msg_data(&m), zmq_msg_size(&m), 0, &je);
	zmq_msg_close(&m);
	if (!json_is_object(reply)) {
		json_decref(reply);
		r = -EPROTO;
		goto out;
	}
	*ret_reply = reply;
out:
	zmq_close(s);
	free(text);
	return r;
}

static int call(http_t *h, const char *cmd, json_t *req, json_t **ret_reply)
{
	if (req == NULL)
		return -ENOMEM;
	if (json_object_set_new(req, "cmd", json_string(cmd)) < 0) {
		json_decref(req);
		return -ENOMEM;
	}
	json_t *reply = NULL;
	int r = h->ctl(h->ctl_user, req, &reply);
	json_decref(req);
	if (r < 0)
		return r;
	*ret_reply = reply;
	return 0;
}

static int ctl_error_errno(const char *code)
{
	if (code == NULL)
		return -EIO;
	if (strcmp(code, "not_found") == 0)
		return -ENOENT;
	if (strcmp(code, "invalid_request") == 0)
		return -EINVAL;
	if (strcmp(code, "conflict") == 0)
		return -EEXIST;
	if (strcmp(code, "too_large") == 0)
		return -E2BIG;
	if (strcmp(code, "unknown_command") == 0)
		return -EOPNOTSUPP;
	return -EIO;
}

int http_call_quiet(http_t *h, const char *cmd, json_t *req, json_t **ret_reply, char *err,
		    size_t errlen)
{
	json_t *reply = NULL;
	int r = call(h, cmd, req, &reply);
	if (r < 0) {
		snprintf(err, errlen, "the scheduler core did not answer \"%s\": %s", cmd, strerror(-r));
		return r == -ETIMEDOUT ? r : -EIO;
	}
	json_t *e = json_object_get(reply, "error");
	if (e != NULL) {
		const char *code = json_string_value(json_object_get(e, "code"));
		const char *msg = json_string_value(json_object_get(e, "message"));
		snprintf(err, errlen, "%s", msg ? msg : "error");
		int e2 = ctl_error_errno(code);
		json_decref(reply);
		return e2;
	}
	*ret_reply = reply;
	return 0;
}

int http_call(http_req_t *r, const char *cmd, json_t *req, json_t **ret_reply)
{
	char err[1024];
	int rc = http_call_quiet(r->h, cmd, req, ret_reply, err, sizeof(err));
	switch (rc) {
	case 0:
		return 0;
	case -ENOENT:
		http_reply_error(r, 404, "not_found", NULL, "%s", err);
		break;
	case -EINVAL:
		http_reply_error(r, 400, "invalid_request", NULL, "%s", err);
		break;
	case -EEXIST:
		http_reply_error(r, 409, "conflict", NULL, "%s", err);
		http_reply_header(r, "x-should-retry", "false");
		break;
	case -E2BIG:
		http_reply_error(r, 413, "too_large", NULL, "%s", err);
		break;
	case -ETIMEDOUT:
		http_reply_error(r, 503, "scheduler_busy", NULL, "%s", err);
		http_reply_header(r, "retry-after", "1");
		break;
	default:
		http_reply_error(r, 500, "internal_error", NULL, "%s", err);
		break;
	}
	return rc;
}

int http_models(http_t *h, http_model_t **ret, size_t *ret_n, char *err, size_t errlen)
{
	json_t *reply = NULL;
	int r = http_call_quiet(h, "workers", json_object(), &reply, err, errlen);
	if (r < 0)
		return r;
	http_model_t *m = NULL;
	size_t n = 0, cap = 0, i, k;
	json_t *w, *mo;
	json_array_foreach(json_object_get(reply, "workers"), i, w) {
		json_array_foreach(json_object_get(w, "models"), k, mo) {
			/* A model is a name, or {"name","n_ctx"} where the core knows it. */
			const char *name = json_is_string(mo) ? json_string_value(mo) :
					   json_string_value(json_object_get(mo, "name"));
			json_int_t ctx = json_integer_value(json_object_get(mo, "n_ctx"));
			json_int_t dims = json_integer_value(json_object_get(mo, "embed_dims"));
			bool cut = json_is_true(json_object_get(mo, "embed_truncatable"));
			if (name == NULL)
				continue;
			size_t j = 0;
			while (j < n && strcmp(m[j].name, name) != 0)
				j++;
			if (j == n) {
				if (n == cap) {
					size_t nc = cap ? cap * 2 : 8;
					http_model_t *nm = realloc(m, nc * sizeof(*nm));
					if (nm == NULL)
						goto nomem;
					m = nm;
					cap = nc;
				}
				m[n] = (http_model_t){ strdup(name), 0, 0, 0, true };
				if (m[n].name == NULL)
					goto nomem;
				n++;
			}
			m[j].workers++;
			/* Workers may differ in context: the smallest one bounds a request. */
			if (ctx > 0 && (m[j].n_ctx == 0 || (uint32_t)ctx < m[j].n_ctx))
				m[j].n_ctx = (uint32_t)ctx;
			/* Only the workers that embed bound an embedding request. */
			if (dims > 0 && (m[j].embed_dims == 0 || (uint32_t)dims < m[j].embed_dims))
				m[j].embed_dims = (uint32_t)dims;
			if (dims > 0 && !cut)
				m[j].embed_truncatable = false;
		}
	}
	json_decref(reply);
	*ret = m;
	*ret_n = n;
	return 0;
nomem:
	json_decref(reply);
	http_models_free(m, n);
	snprintf(err, errlen, "out of memory");
	return -ENOMEM;
}

batchfmt_model_t *http_models_check(const http_model_t *m, size_t n)
{
	batchfmt_model_t *bm = calloc(n ? n : 1, sizeof(*bm));
	for (size_t i = 0; bm != NULL && i < n; i++)
		bm[i] = (batchfmt_model_t){ m[i].name, m[i].n_ctx, m[i].embed_dims,
					    m[i].embed_dims > 0 && m[i].embed_truncatable };
	return bm;
}

void http_models_free(http_model_t *m, size_t n)
{
	for (size_t i = 0; m != NULL && i < n; i++)
		free(m[i].name);
	free(m);
}

/* --- replies ------------------------------------------------------------ */

static void set_reply(http_req_t *r, unsigned status, struct MHD_Response *resp)
{
	if (r->resp != NULL || r->replied) {
		if (resp != NULL)
			MHD_destroy_response(resp);
		return;
	}
	if (resp == NULL) {
		/* Out of memory building the reply: a bare 500. */
		resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
		status = 500;
		if (resp == NULL)
			return;
	}
	r->resp = resp;
	r->status = status;
}

void http_reply_text(http_req_t *r, unsigned status, const char *content_type, const char *text,
		     size_t len)
{
	struct MHD_Response *resp =
		MHD_create_response_from_buffer(len, (void *)text, MHD_RESPMEM_MUST_COPY);
	if (resp != NULL)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	set_reply(r, status, resp);
}

void http_reply_json(http_req_t *r, unsigned status, json_t *body)
{
	char *text = body ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(body);
	if (text == NULL) {
		set_reply(r, 500, NULL);
		return;
	}
	size_t len = strlen(text);
	struct MHD_Response *resp =
		MHD_create_response_from_buffer_with_free_callback(len, text, free);
	if (resp == NULL) {
		free(text);
	} else {
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	}
	set_reply(r, status, resp);
}

void http_reply_error(http_req_t *r, unsigned status, const char *code, const char *param,
		      const char *fmt, ...)
{
	char msg[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	http_reply_json(r, status, batchfmt_error_body(msg, batchfmt_error_type(status), param, code));
}

void http_reply_fd(http_req_t *r, unsigned status, const char *content_type, int fd, uint64_t size)
{
	struct MHD_Response *resp = MHD_create_response_from_fd64(size, fd);
	if (resp == NULL)
		close(fd);
	else
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	set_reply(r, status, resp);
}

void http_reply_header(http_req_t *r, const char *name, const char *value)
{
	if (r->resp != NULL)
		MHD_add_response_header(r->resp, name, value);
}

const char *http_query(http_req_t *r, const char *key)
{
	return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, key);
}

const char *http_header(http_req_t *r, const char *name)
{
	return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

/* --- open endpoints and metrics ----------------------------------------- */

static void on_healthz(http_req_t *r)
{
	http_reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

/* Ready: the core answers, is not draining, and a worker is connected. */
static void on_readyz(http_req_t *r)
{
	json_t *h = NULL;
	char err[512];
	if (http_call_quiet(r->h, "health", json_object(), &h, err, sizeof(err)) < 0) {
		http_reply_json(r, 503, json_pack("{s:s, s:s}", "status", "unavailable", "reason", err));
		return;
	}
	json_int_t workers = json_integer_value(json_object_get(h, "workers"));
	bool draining = json_is_true(json_object_get(h, "draining"));
	if (draining || workers < 1)
		http_reply_json(r, 503, json_pack("{s:s, s:s, s:I}", "status", "not_ready", "reason",
						  draining ? "draining" : "no worker is connected",
						  "workers", workers));
	else
		http_reply_json(r, 200, json_pack("{s:s, s:I}", "status", "ready", "workers", workers));
	json_decref(h);
}

/* Gauges from the core's figures, then the whole set (the counters and
 * histograms are fed by the core's result observer, ctl_api.c). */
static void on_metrics(http_req_t *r)
{
	http_t *h = r->h;
	metrics_sched_t s = { 0 };
	json_t *hr = NULL, *gr = NULL, *wr = NULL;
	char err[512];
	if (http_call_quiet(h, "health", json_object(), &hr, err, sizeof(err)) == 0) {
		s.workers = (uint64_t)json_integer_value(json_object_get(hr, "workers"));
		s.shards_in_flight = (uint64_t)json_integer_value(json_object_get(hr, "shards_in_flight"));
		s.requests_running = (uint64_t)json_integer_value(json_object_get(hr, "requests_in_flight"));
		s.results_ignored = (uint64_t)json_integer_value(json_object_get(hr, "results_ignored"));
		s.storage_full = json_is_true(json_object_get(hr, "storage_full"));
	}
	if (http_call_quiet(h, "workers", json_object(), &wr, err, sizeof(err)) == 0) {
		size_t i;
		json_t *w;
		json_array_foreach(json_object_get(wr, "workers"), i, w)
			s.worker_slots += (uint64_t)json_integer_value(json_object_get(w, "slots"));
	}
	if (http_call_quiet(h, "api.gauges", json_object(), &gr, err, sizeof(err)) == 0) {
		json_t *b = json_object_get(gr, "batches");
		s.requests_waiting = (uint64_t)json_integer_value(json_object_get(gr, "requests_queued"));
		s.batches_validating = (uint64_t)json_integer_value(json_object_get(b, "validating"));
		s.batches_in_progress = (uint64_t)json_integer_value(json_object_get(b, "in_progress"));
		s.batches_cancelling = (uint64_t)json_integer_value(json_object_get(b, "cancelling"));
	}
	json_decref(hr);
	json_decref(gr);
	json_decref(wr);
	metrics_set_sched(h->metrics, &s);
	if (h->cfg.service != NULL && h->cfg.service->scrape != NULL)
		h->cfg.service->scrape(h);
	char *text = NULL;
	size_t len = 0;
	if (metrics_format(h->metrics, &text, &len) < 0) {
		http_reply_error(r, 500, "internal_error", NULL, "out of memory rendering metrics");
		return;
	}
	struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback(len, text, free);
	if (resp == NULL)
		free(text);
	else
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
					"text/plain; version=0.0.4; charset=utf-8");
	set_reply(r, 200, resp);
}

/* --- routing ----------------------------------------------------------- */

/* The server's own endpoints; the rest come from cfg.service. */
static const http_route_t own_routes[] = {
	{ "GET", "/healthz", HTTP_ROUTE_OPEN | HTTP_ROUTE_INLINE, on_healthz, NULL, NULL },
	{ "GET", "/readyz", HTTP_ROUTE_OPEN, on_readyz, NULL, NULL },
	{ "GET", "/metrics", 0, on_metrics, NULL, NULL },
};

/* An id segment: what file and batch ids are made of, so an id can never
 * name a path outside the store. */
static bool id_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-' || c == '.';
}

/* 1 when path matches pattern (params filled), 0 when not. */
static int match(const char *pattern, const char *path, http_req_t *r)
{
	const char *p = pattern, *s = path;
	int np = 0;
	while (*p != '\0') {
		if (p[0] == '{' && p[1] == '}') {
			const char *e = s;
			while (*e != '\0' && *e != '/')
				e++;
			size_t n = (size_t)(e - s);
			if (n == 0 || n >= sizeof(r->param[0]) || np >= HTTP_MAX_PARAMS || s[0] == '.')
				return 0;
			for (const char *c = s; c < e; c++)
				if (!id_char(*c))
					return 0;
			memcpy(r->param[np], s, n);
			r->param[np][n] = '\0';
			np++;
			s = e;
			p += 2;
			continue;
		}
		if (*p != *s)
			return 0;
		p++;
		s++;
	}
	/* One trailing slash is forgiven. */
	return *s == '\0' || (s[0] == '/' && s[1] == '\0');
}

/* The first of table's n routes whose pattern matches (params filled);
 * *ret_path_known when one matches the path whatever its method. */
static const http_route_t *find_in(const http_route_t *table, size_t n, http_req_t *r,
				   bool *ret_path_known)
{
	for (size_t i = 0; i < n; i++) {
		if (!match(table[i].pattern, r->path, r))
			continue;
		*ret_path_known = true;
		if (strcmp(table[i].method, r->method) == 0)
			return &table[i];
	}
	return NULL;
}

static const http_route_t *find_route(http_req_t *r, bool *ret_path_known)
{
	*ret_path_known = false;
	const http_route_t *route = find_in(own_routes, sizeof(own_routes) / sizeof(own_routes[0]), r,
					    ret_path_known);
	const http_service_t *svc = r->h->cfg.service;
	if (route == NULL && svc != NULL)
		route = find_in(svc->routes, svc->n_routes, r, ret_path_known);
	return route;
}

static const char *method_label(const char *m)
{
	static const char *const known[] = { "GET", "POST", "DELETE", "PUT", "HEAD", "PATCH", "OPTIONS" };
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (strcmp(m, known[i]) == 0)
			return known[i];
	return "other";
}

typedef struct conn_state {
	http_req_t req;
	const http_route_t *route;
	bool started;			/* on_access has seen the request */
	size_t raw_uri_len;		/* the request target as sent */
	atomic_bool handled;		/* the handler thread is done: queue its reply */
	bool suspended;			/* a handler thread has the request */
} conn_state_t;

static enum MHD_Result queue(http_req_t *r)
{
	if (r->replied)
		return MHD_YES;
	if (r->resp == NULL)
		http_reply_error(r, 500, "internal_error", NULL, "the handler of %s %s gave no reply",
				 r->method, r->path);
	if (r->resp == NULL)
		return MHD_NO;
	enum MHD_Result q = MHD_queue_response(r->conn, r->status, r->resp);
	if (q == MHD_YES) {
		MHD_destroy_response(r->resp);
		r->resp = NULL;
		r->replied = true;
		metrics_on_http(r->h->metrics, method_label(r->method), r->status);
	}
	return q;
}

/* --- handler threads ----------------------------------------------------- */

static int handler_main(void *arg)
{
	conn_state_t *cs = arg;
	http_t *h = cs->req.h;
	cs->route->handle(&cs->req);
	atomic_store(&cs->handled, true);
	/* libmicrohttpd calls on_access again, which queues the reply. */
	MHD_resume_connection(cs->req.conn);
	mtx_lock(&h->busy_lock);
	if (--h->busy == 0)
		cnd_broadcast(&h->busy_idle);
	mtx_unlock(&h->busy_lock);
	return 0;
}

/* Suspends the connection and runs the route's handler in a thread of its
 * own: the event loop goes on serving every other connection. */
static int handle_in_thread(conn_state_t *cs)
{
	http_t *h = cs->req.h;
	thrd_t t;
	mtx_lock(&h->busy_lock);
	h->busy++;
	mtx_unlock(&h->busy_lock);
	cs->suspended = true;
	MHD_suspend_connection(cs->req.conn);
	if (thrd_create(&t, handler_main, cs) != thrd_success) {
		MHD_resume_connection(cs->req.conn);
		cs->suspended = false;
		mtx_lock(&h->busy_lock);
		if (--h->busy == 0)
			cnd_broadcast(&h->busy_idle);
		mtx_unlock(&h->busy_lock);
		return -EAGAIN;
	}
	thrd_detach(t);
	return 0;
}

static uint64_t content_length(http_req_t *r, bool *known)
{
	const char *cl = http_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
	*known = false;
	if (cl == NULL)
		return 0;
	char *end;
	unsigned long long v = strtoull(cl, &end, 10);
	if (end == cl || *end != '\0')
		return 0;
	*known = true;
	return v;
}

/* --- framing ------------------------------------------------------------ */

typedef struct framing {
	unsigned n_cl, n_te, n_headers;
	const char *te;
	bool cl_bad;
	bool nul;			/* a NUL seen in a header name or value */
	bool moved;			/* a header not where its line is (folded) */
	char nul_name[64];
	size_t lines;			/* the header lines' bytes, LF endings */
} framing_t;

static enum MHD_Result framing_header(void *cls, enum MHD_ValueKind kind, const char *key,
				      size_t key_size, const char *value, size_t value_size)
{
	framing_t *f = cls;
	(void)kind;
	if (key == NULL)
		return MHD_YES;
	f->n_headers++;
	if (strlen(key) != key_size || (value != NULL && strlen(value) != value_size)) {
		if (!f->nul)
			snprintf(f->nul_name, sizeof(f->nul_name), "%.*s", (int)strnlen(key, key_size), key);
		f->nul = true;
	}
	/* libmicrohttpd keeps a header where its line was read: NAME, the
	 * colon (now a NUL), blanks, VALUE. The line's length is then the
	 * distance from NAME to VALUE plus VALUE's; a folded line is copied
	 * elsewhere. */
	uintptr_t k = (uintptr_t)key, v = (uintptr_t)value;
	if (value == NULL || v <= k + key_size || v - k > 65536)
		f->moved = true;
	else
		f->lines += (size_t)(v - k) + value_size + 1;
	if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
		f->n_cl++;
		const char *p = value ? value : "";
		f->cl_bad |= *p == '\0' || strspn(p, "0123456789") != strlen(p);
	} else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
		f->n_te++;
		f->te = value ? value : "";
	}
	return MHD_YES;
}

/* Requests whose body the server would have to guess at, or whose headers
 * are not what the checks after this one would read, are refused before
 * routing: one Content-Length, or one Transfer-Encoding that is "chunked",
 * never both, and no NUL byte in a header (a key cut short at a NUL would
 * be checked as its prefix). libmicrohttpd 0.9.75 cuts a value at a NUL
 * without a word, so the header's size as received is compared with the
 * lines it gave: they differ by nothing (LF endings) or one CR a line
 * (CRLF), and any other difference is bytes it did not pass on. False
 * after queueing a 400. */
static bool framing_ok(conn_state_t *cs, const char *version)
{
	http_req_t *r = &cs->req;
	framing_t f = { 0 };
	MHD_get_connection_values_n(r->conn, MHD_HEADER_KIND, framing_header, &f);
	const union MHD_ConnectionInfo *hi =
		MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
	if (hi != NULL && !f.nul && !f.moved) {
		/* METHOD SP TARGET SP VERSION LF, the header lines, LF. */
		size_t base = strlen(r->method) + 1 + cs->raw_uri_len + 1 + strlen(version) + 1 + f.lines + 1;
		size_t crs = f.n_headers + 2;
		f.nul = hi->header_size != base && hi->header_size != base + crs;
	}
	const char *why = NULL;
	char msg[256];
	if (f.moved) {
		why = "a header line is folded (obs-fold)";
	} else if (f.nul && f.nul_name[0] != '\0') {
		snprintf(msg, sizeof(msg), "the header %s contains a NUL byte", f.nul_name);
		why = msg;
	} else if (f.nul) {
		why = "a header contains a NUL byte, or the lines mix CRLF and LF endings";
	} else if (f.n_cl > 1) {
		why = "more than one Content-Length header";
	} else if (f.cl_bad) {
		why = "Content-Length is not a decimal number";
	} else if (f.n_te > 1) {
		why = "more than one Transfer-Encoding header";
	} else if (f.n_te == 1 && strcasecmp(f.te, "chunked") != 0) {
		snprintf(msg, sizeof(msg), "Transfer-Encoding \"%.100s\": only \"chunked\" is accepted", f.te);
		why = msg;
	} else if (f.n_te == 1 && f.n_cl == 1) {
		why = "both Content-Length and Transfer-Encoding: send one";
	}
	if (why == NULL)
		return true;
	http_reply_error(r, 400, "invalid_request", NULL, "ambiguous request framing: %s", why);
	http_reply_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
	return false;
}

static void too_large(http_req_t *r, uint64_t limit, const char *what, const char *key)
{
	http_reply_error(r, 413, "request_too_large", NULL,
			 "%s is larger than %llu bytes (the server's [http] %s)", what,
			 (unsigned long long)limit, key);
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
				 const char *method, const char *version, const char *upload_data,
				 size_t *upload_data_size, void **con_cls)
{
	http_t *h = cls;
	conn_state_t *cs = *con_cls;
	if (cs == NULL)
		return MHD_NO;	/* on_uri could not allocate it */
	if (!cs->started) {
		cs->started = true;
		http_req_t *r = &cs->req;
		r->h = h;
		r->conn = conn;
		r->method = method;
		r->path = url;
		if (!framing_ok(cs, version))
			return queue(r);
		bool known;
		cs->route = find_route(r, &known);
		if (cs->route == NULL) {
			if (known)
				http_reply_error(r, 405, "method_not_allowed", NULL, "%s is not allowed on %s",
						 method, url);
			else
				http_reply_error(r, 404, "not_found", NULL, "no endpoint %s %s", method, url);
			return queue(r);
		}
		if (!(cs->route->flags & HTTP_ROUTE_OPEN) && h->keys != NULL &&
		    !apikeys_check_header(h->keys, http_header(r, MHD_HTTP_HEADER_AUTHORIZATION))) {
			bool has = http_header(r, MHD_HTTP_HEADER_AUTHORIZATION) != NULL;
			http_reply_error(r, 401, "invalid_api_key", NULL,
					 has ? "Incorrect API key provided" :
					       "You didn't provide an API key: send the header \"Authorization: Bearer KEY\"");
			http_reply_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
			return queue(r);
		}
		if ((cs->route->flags & HTTP_ROUTE_WORK) && storage_full()) {
			http_reply_error(r, 507, "insufficient_storage", NULL,
					 "the server's disk is full: new work is refused until space returns "
					 "(reads and the batches already accepted go on)");
			http_reply_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
			return queue(r);
		}
		bool cl_known;
		uint64_t cl = content_length(r, &cl_known);
		uint64_t limit = cs->route->flags & HTTP_ROUTE_STREAM ? h->cfg.max_upload_bytes : h->cfg.max_body_bytes;
		if (cl_known && cl > limit) {
			too_large(r, limit, cs->route->flags & HTTP_ROUTE_STREAM ? "the upload" : "the request body",
				  cs->route->flags & HTTP_ROUTE_STREAM ? "max_upload_bytes" : "max_body_bytes");
			return queue(r);
		}
		if (cs->route->begin != NULL && cs->route->begin(r) < 0)
			return queue(r);
		return MHD_YES;
	}
	http_req_t *r = &cs->req;
	/* libmicrohttpd takes no response while a body is arriving: an error
	 * found then waits in r->resp, the rest of the body is discarded
	 * (nothing more is stored), and it goes out with the final call. */
	if (*upload_data_size > 0) {
		size_t n = *upload_data_size;
		*upload_data_size = 0;
		if (r->replied || r->resp != NULL)
			return MHD_YES;	/* an error is on its way: discard the rest */
		r->received += n;
		if (cs->route->flags & HTTP_ROUTE_STREAM) {
			if (r->received > h->cfg.max_upload_bytes) {
				too_large(r, h->cfg.max_upload_bytes, "the upload", "max_upload_bytes");
				return MHD_YES;
			}
			if (cs->route->data(r, upload_data, n) < 0)
				return MHD_YES;
			return MHD_YES;
		}
		if (r->received > h->cfg.max_body_bytes) {
			too_large(r, h->cfg.max_body_bytes, "the request body", "max_body_bytes");
			return MHD_YES;
		}
		char *nb = realloc(r->body, r->body_len + n + 1);
		if (nb == NULL) {
			http_reply_error(r, 500, "internal_error", NULL, "out of memory reading the body");
			return MHD_YES;
		}
		memcpy(nb + r->body_len, upload_data, n);
		r->body = nb;
		r->body_len += n;
		r->body[r->body_len] = '\0';
		return MHD_YES;
	}
	if (r->replied)
		return MHD_YES;
	if (cs->suspended) {
		/* Resumed: the handler thread has replied. */
		if (!atomic_load(&cs->handled))
			return MHD_YES;
		cs->suspended = false;
		return queue(r);
	}
	if (r->resp == NULL && (cs->route->flags & HTTP_ROUTE_JSON)) {
		json_error_t je;
		r->json = r->body_len ? json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &je) : NULL;
		if (r->body_len == 0)
			http_reply_error(r, 400, "invalid_request", NULL, "%s %s needs a JSON object body",
					 method, url);
		else if (r->json == NULL)
			http_reply_error(r, 400, "invalid_json", NULL,
					 "the request body is not valid JSON (line %d, column %d): %s",
					 je.line, je.column, je.text);
		else if (!json_is_object(r->json))
			http_reply_error(r, 400, "invalid_request", NULL, "the request body must be a JSON object");
	}
	if (r->resp == NULL && !(cs->route->flags & HTTP_ROUTE_INLINE)) {
		if (handle_in_thread(cs) == 0)
			return MHD_YES;
		http_reply_error(r, 503, "server_busy", NULL, "cannot start a thread for the request");
		http_reply_header(r, "retry-after", "1");
	}
	if (r->resp == NULL)
		cs->route->handle(r);
	return queue(r);
}

/* The first sight of a request: its state, with the target's length as
 * sent (framing_ok). */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
	(void)cls;
	(void)conn;
	conn_state_t *cs = calloc(1, sizeof(*cs));
	if (cs != NULL)
		cs->raw_uri_len = strlen(uri);
	return cs;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	conn_state_t *cs = *con_cls;
	if (cs == NULL)
		return;
	http_req_t *r = &cs->req;
	if (r->cleanup != NULL)
		r->cleanup(r);
	if (r->resp != NULL)
		MHD_destroy_response(r->resp);
	json_decref(r->json);
	free(r->body);
	free(cs);
	*con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	size_t n = strlen(msg);
	while (n > 0 && msg[n - 1] == '\n')
		msg[--n] = '\0';
	mg_log(MG_LOG_WARN, "http", "libmicrohttpd: %s", msg);
}

/* --- lifetime ---------------------------------------------------------- */

static int mkdir_p(const char *dir)
{
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* Every connection is a descriptor: the soft limit (often 1024) goes up
 * to the hard one, as far as the connection limit needs. */
static void raise_fd_limit(uint32_t max_connections)
{
	struct rlimit rl;
	rlim_t want = (rlim_t)max_connections + 256;	/* the journal, workers, files */
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= want)
		return;
	rlim_t old = rl.rlim_cur;
	rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
	if (rl.rlim_cur > old && setrlimit(RLIMIT_NOFILE, &rl) < 0)
		rl.rlim_cur = old;
	if (rl.rlim_cur < want)
		mg_log(MG_LOG_WARN, "http", "the descriptor limit is below [http] max_connections: connections past it are refused limit=%llu max_connections=%u",
		       (unsigned long long)rl.rlim_cur, max_connections);
}

int http_new(const http_config_t *cfg, void *zctx, http_ctl_fn ctl, void *ctl_user, http_t **ret,
	     char *err, size_t errlen)
{
	int r;
	struct sockaddr_storage ss;
	socklen_t sslen;
	if (cfg->state_dir == NULL || strlen(cfg->state_dir) > 3800) {
		snprintf(err, errlen, "http: no state directory, or its path is longer than 3800 bytes");
		return -EINVAL;
	}
	r = http_listen_is_loopback(cfg->listen);
	if (r == -EINVAL) {
		snprintf(err, errlen, "--http %s: expected HOST:PORT (e.g. 127.0.0.1:8080 or [::1]:8080)",
			 cfg->listen ? cfg->listen : "(none)");
		return r;
	}
	if (r < 0) {
		snprintf(err, errlen, "--http %s: cannot resolve the host", cfg->listen);
		return r;
	}
	if (r == 0 && cfg->keys == NULL) {
		snprintf(err, errlen, "--http %s is not a loopback address: the HTTP API needs --api-keys FILE there",
			 cfg->listen);
		return -EPERM;
	}
	if (ctl == NULL && zctx == NULL) {
		snprintf(err, errlen, "http: no way to reach the core");
		return -EINVAL;
	}
	http_t *h = calloc(1, sizeof(*h));
	if (h == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	h->cfg = *cfg;
	h->listen = strdup(cfg->listen);
	h->state_dir = strdup(cfg->state_dir);
	h->cfg.listen = h->listen;
	h->cfg.state_dir = h->state_dir;
	h->keys = cfg->keys;
	h->zctx = zctx;
	h->ctl = ctl ? ctl : ctl_zmq;
	h->ctl_user = ctl ? ctl_user : h;
	if (cfg->metrics == NULL)
		h->own_metrics = metrics_new();
	h->metrics = cfg->metrics ? cfg->metrics : h->own_metrics;
	if (h->listen == NULL || h->state_dir == NULL || h->metrics == NULL) {
		snprintf(err, errlen, "out of memory");
		r = -ENOMEM;
		goto fail;
	}
	snprintf(h->files_dir, sizeof(h->files_dir), "%s/files", cfg->state_dir);
	snprintf(h->batches_dir, sizeof(h->batches_dir), "%s/batches", cfg->state_dir);
	if ((r = mkdir_p(cfg->state_dir)) < 0 || (r = mkdir_p(h->files_dir)) < 0 ||
	    (r = mkdir_p(h->batches_dir)) < 0) {
		snprintf(err, errlen, "http: cannot create %s/{files,batches}: %s", cfg->state_dir,
			 strerror(-r));
		goto fail;
	}
	if (cfg->service != NULL && cfg->service->start != NULL) {
		h->service_started = true;
		if ((r = cfg->service->start(h, err, errlen)) < 0)
			goto fail;
	}
	if ((r = resolve(cfg->listen, &ss, &sslen)) < 0) {
		snprintf(err, errlen, "--http %s: cannot resolve the host", cfg->listen);
		goto fail;
	}
	if (mtx_init(&h->busy_lock, mtx_plain) != thrd_success) {
		snprintf(err, errlen, "out of memory");
		r = -ENOMEM;
		goto fail;
	}
	if (cnd_init(&h->busy_idle) != thrd_success) {
		mtx_destroy(&h->busy_lock);
		snprintf(err, errlen, "out of memory");
		r = -ENOMEM;
		goto fail;
	}
	h->busy_init = true;
	raise_fd_limit(cfg->max_connections);
	/* epoll, not select(): no FD_SETSIZE ceiling on descriptors, and no
	 * thread per connection: an idle or slow connection costs a socket. */
	unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	h->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_access, h,
				  MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h,
				  MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
				  MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)cfg->threads,
				  MHD_OPTION_CONNECTION_LIMIT, (unsigned int)cfg->max_connections,
				  MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int)cfg->max_connections_per_ip,
				  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)cfg->idle_timeout_s,
				  MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned int)1024,
				  MHD_OPTION_URI_LOG_CALLBACK, on_uri, h,
				  MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
				  MHD_OPTION_END);
	if (h->mhd == NULL) {
		snprintf(err, errlen, "http: cannot listen on %s (address in use, or not this host's?)",
			 cfg->listen);
		r = -EADDRINUSE;
		goto fail;
	}
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_BIND_PORT);
	h->port = info ? info->port : 0;
	char host[256], url[400], path[4200];
	unsigned port;
	split_listen(cfg->listen, host, sizeof(host), &port);
	const char *uhost = host;
	if (strcmp(host, "0.0.0.0") == 0 || host[0] == '\0')
		uhost = "127.0.0.1";
	int n = snprintf(url, sizeof(url), ss.ss_family == AF_INET6 ? "http://[%s]:%u\n" : "http://%s:%u\n",
			 strcmp(host, "::") == 0 ? "::1" : uhost, (unsigned)h->port);
	snprintf(path, sizeof(path), "%s/http", cfg->state_dir);
	if (n > 0 && (r = http_write_atomic(path, url, (size_t)n)) < 0)
		mg_log(MG_LOG_WARN, "http", "cannot write the base URL file path=%s err=\"%s\"", path,
		       strerror(-r));
	mg_log(MG_LOG_INFO, "http", "listening addr=%s port=%u auth=%s max_upload_bytes=%llu max_connections=%u max_connections_per_ip=%u idle_timeout_s=%u threads=%u",
	       cfg->listen, (unsigned)h->port, h->keys ? "api-keys" : "none",
	       (unsigned long long)cfg->max_upload_bytes, cfg->max_connections,
	       cfg->max_connections_per_ip, cfg->idle_timeout_s, cfg->threads);
	*ret = h;
	return 0;
fail:
	http_destroy(&h);
	return r;
}

void http_destroy(http_t **ph)
{
	if (ph == NULL || *ph == NULL)
		return;
	http_t *h = *ph;
	atomic_store(&h->stopping, true);
	if (h->busy_init) {
		/* Handlers see stopping and end their waits; their connections
		 * must be resumed before libmicrohttpd stops. */
		mtx_lock(&h->busy_lock);
		while (h->busy > 0)
			cnd_wait(&h->busy_idle, &h->busy_lock);
		mtx_unlock(&h->busy_lock);
	}
	if (h->mhd != NULL)
		MHD_stop_daemon(h->mhd);
	if (h->busy_init) {
		cnd_destroy(&h->busy_idle);
		mtx_destroy(&h->busy_lock);
	}
	if (h->service_started && h->cfg.service->stop != NULL)
		h->cfg.service->stop(h);
	metrics_destroy(&h->own_metrics);
	free(h->listen);
	free(h->state_dir);
	free(h);
	*ph = NULL;
}

uint16_t http_port(const http_t *h)
{
	return h->port;
}
