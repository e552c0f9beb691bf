/* http: the server as a client sees it — routes, API keys, limits, error
 * shapes, multipart uploads and batch creation — over a real socket, with
 * a fake core behind the control calls. */
#include "cu_main.h"
#include "http.h"
#include "api.h"
#include "http_priv.h"
#include "lib/mg_clock.h"
#include "storage.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <threads.h>
#include <unistd.h>

extern const cu_test_t http_tests[];

/* --- a fake core --------------------------------------------------------- */

typedef struct fake_core {
	mtx_t lock;
	char last_input[4200];		/* submit's input_path */
	int submits;
	char job_state[32];
	json_t *sync_line;		/* the last api.submit_sync request line */
	int health_delay_ms;		/* "health" answers this late */
} fake_core_t;

static fake_core_t core;

static json_t *job_json(const char *id, const char *state)
{
	int total = strcmp(state, "validating") == 0 ? 0 : 3;
	return json_pack("{s:s, s:s, s:s, s:s, s:I, s:{s:i, s:i, s:i, s:i, s:i, s:i}, s:n, s:n}",
			 "id", id, "endpoint", "/v1/completions", "model", "llama-110m", "state", state,
			 "created_at", (json_int_t)1000, "counts", "total", total, "done", 0, "failed", 0,
			 "cancelled", 0, "in_flight", 0, "queued", total, "errors", "metadata");
}

static int fake_ctl(void *user, json_t *req, json_t **ret)
{
	fake_core_t *c = user;
	const char *cmd = json_string_value(json_object_get(req, "cmd"));
	mtx_lock(&c->lock);
	json_t *reply = NULL;
	if (strcmp(cmd, "workers") == 0) {
		reply = json_pack("{s:[{s:s, s:i, s:[{s:s, s:i}]}]}", "workers", "name", "w1", "slots", 4,
				  "models", "name", "llama-110m", "n_ctx", 64);
	} else if (strcmp(cmd, "health") == 0) {
		struct timespec d = { c->health_delay_ms / 1000, (c->health_delay_ms % 1000) * 1000000L };
		mtx_unlock(&c->lock);
		nanosleep(&d, NULL);
		mtx_lock(&c->lock);
		reply = json_pack("{s:b, s:i, s:b}", "ok", 1, "workers", 1, "draining", 0);
	} else if (strcmp(cmd, "submit") == 0) {
		snprintf(c->last_input, sizeof(c->last_input), "%s",
			 json_string_value(json_object_get(req, "input_path")));
		c->submits++;
		reply = job_json(json_string_value(json_object_get(req, "id")), "validating");
	} else if (strcmp(cmd, "status") == 0) {
		const char *id = json_string_value(json_object_get(req, "id"));
		reply = strncmp(id, "batch_", 6) == 0 || strncmp(id, "sync_", 5) == 0 ?
			job_json(id, c->job_state) :
			json_pack("{s:{s:s, s:s}}", "error", "code", "not_found", "message", "no batch");
	} else if (strcmp(cmd, "api.submit_sync") == 0) {
		json_decref(c->sync_line);
		c->sync_line = json_incref(json_array_get(json_object_get(req, "requests"), 0));
		reply = json_pack("{s:O, s:s}", "id", json_object_get(req, "id"), "state", "completed");
	} else if (strcmp(cmd, "results") == 0) {
		reply = json_pack("{s:[{s:i, s:s, s:s, s:s, s:s, s:i, s:i, s:n}], s:b}", "results", "line", 1,
				  "custom_id", "request", "state", "done", "text", " Paris.", "finish_reason",
				  "stop", "prompt_tokens", 5, "completion_tokens", 2, "error", "has_more", 0);
	} else {
		reply = json_pack("{s:{s:s, s:s}}", "error", "code", "unknown_command", "message", cmd);
	}
	mtx_unlock(&c->lock);
	*ret = reply;
	return reply ? 0 : -ENOMEM;
}

/* --- a raw HTTP client ------------------------------------------------- */

typedef struct resp {
	int status;
	char *head;			/* status line and headers */
	char *body;
	size_t body_len;
} resp_t;

static void resp_free(resp_t *r)
{
	free(r->head);
	free(r->body);
	memset(r, 0, sizeof(*r));
}

static int connect_to(uint16_t port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CU_ASSERT_FATAL(fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	/* A server that never answers fails the test instead of hanging it. */
	struct timeval tv = { 20, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static void send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w <= 0)
			return;	/* the server may close early (413): that is what we test */
		p += w;
		n -= (size_t)w;
	}
}

static void read_resp(int fd, resp_t *r)
{
	size_t cap = 65536, len = 0;
	char *buf = malloc(cap);
	ssize_t n;
	while ((n = recv(fd, buf + len, cap - len - 1, 0)) > 0) {
		len += (size_t)n;
		if (len + 1 == cap)
			buf = realloc(buf, cap *= 2);
	}
	buf[len] = '\0';
	memset(r, 0, sizeof(*r));
	char *sep = strstr(buf, "\r\n\r\n");
	if (sep == NULL || sscanf(buf, "HTTP/1.%*d %d", &r->status) != 1) {
		r->status = -1;
		r->head = buf;
		r->body = strdup("");
		return;
	}
	*sep = '\0';
	r->head = buf;
	r->body_len = len - (size_t)(sep + 4 - buf);
	r->body = malloc(r->body_len + 1);
	memcpy(r->body, sep + 4, r->body_len);
	r->body[r->body_len] = '\0';
}

/* One request with Connection: close; body may be NULL. */
static void request(uint16_t port, const char *method, const char *path, const char *headers,
		    const char *body, size_t body_len, resp_t *r)
{
	int fd = connect_to(port);
	char head[4096];
	int n = snprintf(head, sizeof(head), "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s"
			 "Content-Length: %zu\r\n\r\n", method, path, headers ? headers : "",
			 body ? body_len : 0);
	send_all(fd, head, (size_t)n);
	if (body != NULL)
		send_all(fd, body, body_len);
	read_resp(fd, r);
	close(fd);
}

static json_t *body_json(const resp_t *r)
{
	json_t *o = json_loadb(r->body, r->body_len, 0, NULL);
	CU_ASSERT_PTR_NOT_NULL(o);
	return o;
}

static const char *err_code(json_t *o)
{
	return json_string_value(json_object_get(json_object_get(o, "error"), "code"));
}

/* A multipart body with the fields purpose and file. */
static char *multipart(const char *purpose, const char *content, size_t content_len, size_t *ret_len)
{
	const char *b = "XyZzyBoundary42";
	size_t cap = content_len + 1024;
	char *out = malloc(cap);
	int n = 0;
	if (purpose != NULL)
		n += snprintf(out + n, cap - (size_t)n,
			      "--%s\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n%s\r\n", b, purpose);
	n += snprintf(out + n, cap - (size_t)n,
		      "--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\n"
		      "Content-Type: application/jsonl\r\n\r\n", b);
	memcpy(out + n, content, content_len);
	n += (int)content_len;
	n += snprintf(out + n, cap - (size_t)n, "\r\n--%s--\r\n", b);
	*ret_len = (size_t)n;
	return out;
}

#define MP_HEADERS(extra) "Content-Type: multipart/form-data; boundary=XyZzyBoundary42\r\n" extra

static http_t *start(const char *dir, apikeys_t *keys, uint64_t max_upload, uint64_t max_line)
{
	http_config_t c;
	http_config_default(&c);
	c.service = &api_service;
	c.listen = "127.0.0.1:0";
	c.state_dir = dir;
	c.keys = keys;
	c.max_upload_bytes = max_upload;
	c.max_line_bytes = max_line;
	c.max_body_bytes = 4096;
	c.default_max_tokens = 16;
	c.finalize_period_ns = 3600LL * 1000000000LL;	/* the finalizer stays out of the way */
	static bool inited;
	if (!inited) {
		mtx_init(&core.lock, mtx_plain);
		inited = true;
	}
	snprintf(core.job_state, sizeof(core.job_state), "in_progress");
	http_t *h = NULL;
	char err[512];
	int r = http_new(&c, NULL, fake_ctl, &core, &h, err, sizeof(err));
	if (r < 0)
		fprintf(stderr, "http_new: %s\n", err);
	CU_ASSERT_EQUAL_FATAL(r, 0);
	return h;
}

/* --- tests ------------------------------------------------------------- */

static void test_auth_and_routes(void)
{
	apikeys_t *k = apikeys_new();
	apikeys_add(k, "sk-test", 7);
	http_t *h = start(cu_tmpdir(), k, 1 << 20, 1 << 16);
	uint16_t port = http_port(h);
	resp_t r;

	request(port, "GET", "/healthz", NULL, NULL, 0, &r);
	CU_ASSERT_EQUAL(r.status, 200);
	resp_free(&r);
	request(port, "GET", "/readyz", NULL, NULL, 0, &r);
	CU_ASSERT_EQUAL(r.status, 200);
	resp_free(&r);

	request(port, "GET", "/v1/models", NULL, NULL, 0, &r);
	CU_ASSERT_EQUAL(r.status, 401);
	json_t *o = body_json(&r);
	CU_ASSERT_STRING_EQUAL(err_code(o), "invalid_api_key");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(json_object_get(o, "error"), "type")),
			       "authentication_error");
	CU_ASSERT_PTR_NOT_NULL(strcasestr(r.head, "WWW-Authenticate: Bearer"));
	json_decref(o);
	resp_free(&r);

	request(port, "GET", "/v1/models", "Authorization: Bearer sk-wrong\r\n", NULL, 0, &r);
	CU_ASSERT_EQUAL(r.status, 401);
	resp_free(&r);
	request(port, "GET", "/metrics", NULL, NULL, 0, &r);
	CU_ASSERT_EQUAL(r.status, 401);
	resp_free(&r);

	request(port, "GET", "/v1/models", "Authorization: Bearer sk-test\r\n", NULL, 0, &r);
	CU_ASSERT_EQUAL(r.status, 200);
	o = body_json(&r);
	json_t *m0 = json_array_get(json_object_get(o, "data"), 0);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(m0, "id")), "llama-110m");
	json_decref(o);
	resp_free(&r);

	request(port, "GET", "/v1/nope", "Authorization: Bearer sk-test\r\n", NULL, 0, &r);
	CU_ASSERT_EQUAL(r.status, 404);
	resp_free(&r);
	request(port, "PUT", "/v1/batches", "Authorization: Bearer sk-test\r\n", NULL, 0, &r);
	CU_ASSERT_EQUAL(r.status, 405);
	resp_free(&r);
	/* Ids never leave the store. */
	request(port, "GET", "/v1/files/..%2f..%2fetc", "Authorization: Bearer sk-test\r\n", NULL, 0, &r);
	CU_ASSERT_EQUAL(r.status, 404);
	resp_free(&r);

	request(port, "GET", "/metrics", "Authorization: Bearer sk-test\r\n", NULL, 0, &r);
	CU_ASSERT_EQUAL(r.status, 200);
	CU_ASSERT_PTR_NOT_NULL(strcasestr(r.head, "Content-Type: text/plain; version=0.0.4"));
	/* The 401s above were counted. */
	CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "margin_http_requests_total{method=\"GET\",code=\"401\"} 3\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "margin_workers 1\n"));
	resp_free(&r);
	http_destroy(&h);
	CU_ASSERT_PTR_NULL(h);
	apikeys_destroy(&k);
}

static void test_loopback_rule(void)
{
	CU_ASSERT_EQUAL(http_listen_is_loopback("127.0.0.1:8080"), 1);
	CU_ASSERT_EQUAL(http_listen_is_loopback("127.3.2.1:1"), 1);
	CU_ASSERT_EQUAL(http_listen_is_loopback("[::1]:8080"), 1);
	CU_ASSERT_EQUAL(http_listen_is_loopback("0.0.0.0:8080"), 0);
	CU_ASSERT_EQUAL(http_listen_is_loopback("no-port"), -EINVAL);
	http_config_t c;
	http_config_default(&c);
	c.service = &api_service;
	c.listen = "0.0.0.0:0";
	c.state_dir = cu_tmpdir();
	http_t *h = NULL;
	char err[512];
	CU_ASSERT_EQUAL(http_new(&c, NULL, fake_ctl, &core, &h, err, sizeof(err)), -EPERM);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "--api-keys"));
	CU_ASSERT_PTR_NULL(h);
}

/* An epilogue after the close delimiter (RFC 2046: ignored) is accepted:
 * the openai Node SDK ends its uploads with an extra CR LF. */
static void test_upload_epilogue(void)
{
	const char *dir = cu_tmpdir();
	http_t *h = start(dir, NULL, 1 << 20, 1 << 16);
	uint16_t port = http_port(h);
	const char *jsonl = "{\"custom_id\":\"a\"}\n";
	static const char *const tails[] = { "\r\n", "an epilogue, ignored\r\n" };
	for (size_t i = 0; i < sizeof(tails) / sizeof(tails[0]); i++) {
		size_t len;
		char *mp = multipart("batch", jsonl, strlen(jsonl), &len);
		char *body = malloc(len + strlen(tails[i]));
		memcpy(body, mp, len);
		memcpy(body + len, tails[i], strlen(tails[i]));
		resp_t r;
		request(port, "POST", "/v1/files", MP_HEADERS(""), body, len + strlen(tails[i]), &r);
		CU_ASSERT_EQUAL(r.status, 200);
		json_t *f = body_json(&r);
		CU_ASSERT_EQUAL(json_integer_value(json_object_get(f, "bytes")), (json_int_t)strlen(jsonl));
		char path[512];
		snprintf(path, sizeof(path), "/v1/files/%s", json_string_value(json_object_get(f, "id")));
		json_decref(f);
		resp_free(&r);
		request(port, "DELETE", path, NULL, NULL, 0, &r);	/* the next tests share the store */
		CU_ASSERT_EQUAL(r.status, 200);
		resp_free(&r);
		free(body);
		free(mp);
	}
	http_destroy(&h);
}

static void test_upload_and_download(void)
{
	const char *dir = cu_tmpdir();
	http_t *h = start(dir, NULL, 1 << 20, 1 << 16);
	uint16_t port = http_port(h);
	const char *jsonl = "{\"custom_id\":\"a\"}\n{\"custom_id\":\"b\"}\n";
	size_t len;
	char *mp = multipart("batch", jsonl, strlen(jsonl), &len);
	resp_t r;
	request(port, "POST", "/v1/files", MP_HEADERS(""), mp, len, &r);
	CU_ASSERT_EQUAL_FATAL(r.status, 200);
	json_t *f = body_json(&r);
	const char *id = json_string_value(json_object_get(f, "id"));
	CU_ASSERT_EQUAL(strncmp(id, "file-", 5), 0);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(f, "bytes")), (json_int_t)strlen(jsonl));
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(f, "purpose")), "batch");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(f, "filename")), "in.jsonl");
	resp_free(&r);

	char path[512];
	snprintf(path, sizeof(path), "/v1/files/%s/content", id);
	request(port, "GET", path, NULL, NULL, 0, &r);
	CU_ASSERT_EQUAL(r.status, 200);
	CU_ASSERT_EQUAL(r.body_len, strlen(jsonl));
	CU_ASSERT_STRING_EQUAL(r.body, jsonl);
	resp_free(&r);

	request(port, "GET", "/v1/files", NULL, NULL, 0, &r);
	json_t *l = body_json(&r);
	CU_ASSERT_EQUAL(json_array_size(json_object_get(l, "data")), 1);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(l, "first_id")), id);
	json_decref(l);
	resp_free(&r);

	/* A new server on the same state directory still has it. */
	http_destroy(&h);
	h = start(dir, NULL, 1 << 20, 1 << 16);
	port = http_port(h);
	snprintf(path, sizeof(path), "/v1/files/%s", id);
	request(port, "GET", path, NULL, NULL, 0, &r);
	CU_ASSERT_EQUAL(r.status, 200);
	resp_free(&r);
	request(port, "DELETE", path, NULL, NULL, 0, &r);
	CU_ASSERT_EQUAL(r.status, 200);
	CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "\"deleted\":true"));
	resp_free(&r);
	request(port, "GET", path, NULL, NULL, 0, &r);
	CU_ASSERT_EQUAL(r.status, 404);
	resp_free(&r);
	json_decref(f);
	free(mp);
	http_destroy(&h);
}

static void test_upload_limits(void)
{
	http_t *h = start(cu_tmpdir(), NULL, 4096, 100);
	uint16_t port = http_port(h);
	resp_t r;
	/* Announced too big: refused before the body is sent. */
	int fd = connect_to(port);
	const char *head = "POST /v1/files HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
			   MP_HEADERS("") "Expect: 100-continue\r\nContent-Length: 10000000\r\n\r\n";
	send_all(fd, head, strlen(head));
	read_resp(fd, &r);
	close(fd);
	CU_ASSERT_EQUAL(r.status, 413);
	json_t *o = body_json(&r);
	CU_ASSERT_STRING_EQUAL(err_code(o), "request_too_large");
	CU_ASSERT_PTR_NOT_NULL(strstr(json_string_value(json_object_get(json_object_get(o, "error"), "message")),
				      "max_upload_bytes"));
	json_decref(o);
	resp_free(&r);

	/* A line over max_line_bytes: 400 naming the line. */
	char content[400];
	snprintf(content, sizeof(content), "{\"ok\":1}\n%0200d\n", 7);
	size_t len;
	char *mp = multipart("batch", content, strlen(content), &len);
	request(port, "POST", "/v1/files", MP_HEADERS(""), mp, len, &r);
	CU_ASSERT_EQUAL(r.status, 400);
	o = body_json(&r);
	if (r.status != 400)
		fprintf(stderr, "\nline too long: got %d %s\n", r.status, r.body);
	CU_ASSERT_STRING_EQUAL(err_code(o) ? err_code(o) : "(none)", "line_too_long");
	CU_ASSERT_PTR_NOT_NULL(strstr(json_string_value(json_object_get(json_object_get(o, "error"), "message")),
				      "line 2"));
	json_decref(o);
	resp_free(&r);
	free(mp);

	/* Purpose other than batch, no file, not multipart. */
	mp = multipart("fine-tune", "{}\n", 3, &len);
	request(port, "POST", "/v1/files", MP_HEADERS(""), mp, len, &r);
	CU_ASSERT_EQUAL(r.status, 400);
	CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "only \\\"batch\\\""));
	resp_free(&r);
	free(mp);
	request(port, "POST", "/v1/files", "Content-Type: application/json\r\n", "{}", 2, &r);
	CU_ASSERT_EQUAL(r.status, 400);
	resp_free(&r);

	/* JSON bodies: too big, not JSON. */
	char big[6000];
	memset(big, ' ', sizeof(big));
	big[0] = '{';
	big[sizeof(big) - 1] = '}';
	request(port, "POST", "/v1/batches", "Content-Type: application/json\r\n", big, sizeof(big), &r);
	CU_ASSERT_EQUAL(r.status, 413);
	resp_free(&r);
	request(port, "POST", "/v1/batches", "Content-Type: application/json\r\n", "{\"a\":", 5, &r);
	CU_ASSERT_EQUAL(r.status, 400);
	o = body_json(&r);
	CU_ASSERT_STRING_EQUAL(err_code(o), "invalid_json");
	json_decref(o);
	resp_free(&r);
	/* Nothing half-uploaded is left in the store. */
	char cmd[4400];
	snprintf(cmd, sizeof(cmd), "test -z \"$(ls -A %s/files)\"", h->state_dir);
	CU_ASSERT_EQUAL(system(cmd), 0);
	http_destroy(&h);
}

static char *upload(uint16_t port, const char *content)
{
	size_t len;
	char *mp = multipart("batch", content, strlen(content), &len);
	resp_t r;
	request(port, "POST", "/v1/files", MP_HEADERS(""), mp, len, &r);
	free(mp);
	CU_ASSERT_EQUAL_FATAL(r.status, 200);
	json_t *f = body_json(&r);
	char *id = strdup(json_string_value(json_object_get(f, "id")));
	json_decref(f);
	resp_free(&r);
	return id;
}

static char *read_text(const char *path)
{
	FILE *f = fopen(path, "r");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	static char buf[65536];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/* Good lines run, bad ones are set aside with their line numbers; the job
 * reads a copy whose line numbers are the file's. */
static void test_batch_create(void)
{
	http_t *h = start(cu_tmpdir(), NULL, 1 << 20, 1 << 16);
	uint16_t port = http_port(h);
	const char *jsonl =
		"{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"model\":\"llama-110m\",\"prompt\":\"x\"}}\n"
		"\n"
		"{\"custom_id\":\"b\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{\"model\":\"llama-110m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}}\n"
		"{\"custom_id\":\"c\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"model\":\"llama-110m\",\"prompt\":\"x\",\"max_tokens\":100}}\n"
		"{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"model\":\"llama-110m\",\"prompt\":\"y\"}}\n"
		"{\"custom_id\":\"d\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"model\":\"gpt-4o\",\"prompt\":\"x\"}}\n"
		"{\"custom_id\":\"e\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"model\":\"llama-110m\",\"prompt\":\"z\"}}\n";
	char *fid = upload(port, jsonl);
	char body[512];
	resp_t r;
	snprintf(body, sizeof(body), "{\"input_file_id\":\"%s\",\"endpoint\":\"/v1/completions\",\"completion_window\":\"24h\",\"metadata\":{\"team\":\"t\"}}", fid);
	request(port, "POST", "/v1/batches", "Content-Type: application/json\r\n", body, strlen(body), &r);
	CU_ASSERT_EQUAL_FATAL(r.status, 200);
	json_t *b = body_json(&r);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(b, "object")), "batch");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(b, "status")), "validating");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(b, "input_file_id")), fid);
	/* 6 requests: 2 good (a, e), 4 refused (b url, c context, a dup, d model). */
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_object_get(b, "request_counts"), "total")), 6);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_object_get(b, "request_counts"), "failed")), 4);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_object_get(b, "x_margin"), "invalid")), 4);
	resp_free(&r);

	char *copy = read_text(core.last_input);
	CU_ASSERT_STRING_EQUAL(copy,
		"{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"model\":\"llama-110m\",\"prompt\":\"x\"}}\n"
		"\n\n\n\n\n"
		"{\"custom_id\":\"e\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"model\":\"llama-110m\",\"prompt\":\"z\"}}\n");
	char rej[4300];
	snprintf(rej, sizeof(rej), "%s/batches/%s.rejects.jsonl", h->state_dir,
		 json_string_value(json_object_get(b, "id")));
	char *rt = read_text(rej);
	CU_ASSERT_PTR_NOT_NULL(strstr(rt, "{\"line\":3,\"custom_id\":\"b\",\"message\":\"url: \\\"/v1/chat/completions\\\" does not match"));
	CU_ASSERT_PTR_NOT_NULL(strstr(rt, "{\"line\":4,\"custom_id\":\"c\",\"message\":\"body.max_tokens: 100 is more than the context"));
	CU_ASSERT_PTR_NOT_NULL(strstr(rt, "{\"line\":5,\"custom_id\":\"a\",\"message\":\"custom_id \\\"a\\\" is used by line 1"));
	/* A model no worker serves waits for one, but one batch has one model. */
	CU_ASSERT_PTR_NOT_NULL(strstr(rt, "{\"line\":6,\"custom_id\":\"d\",\"message\":\"body.model: \\\"gpt-4o\\\" differs from the batch's model"));

	/* Bad create parameters. */
	snprintf(body, sizeof(body), "{\"input_file_id\":\"%s\",\"endpoint\":\"/v1/moderations\",\"completion_window\":\"24h\"}", fid);
	request(port, "POST", "/v1/batches", NULL, body, strlen(body), &r);
	CU_ASSERT_EQUAL(r.status, 400);
	CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "\"param\":\"endpoint\""));
	resp_free(&r);
	snprintf(body, sizeof(body), "{\"input_file_id\":\"%s\",\"endpoint\":\"/v1/completions\",\"completion_window\":\"1h\"}", fid);
	request(port, "POST", "/v1/batches", NULL, body, strlen(body), &r);
	CU_ASSERT_EQUAL(r.status, 400);
	resp_free(&r);
	snprintf(body, sizeof(body), "{\"input_file_id\":\"file-none\",\"endpoint\":\"/v1/completions\",\"completion_window\":\"24h\"}");
	request(port, "POST", "/v1/batches", NULL, body, strlen(body), &r);
	CU_ASSERT_EQUAL(r.status, 404);
	resp_free(&r);
	CU_ASSERT_EQUAL(core.submits, 1);

	/* Not JSONL: the job gets the file as is (the core fails it). */
	char *f2 = upload(port, "custom_id,prompt\nx,y\n");
	snprintf(body, sizeof(body), "{\"input_file_id\":\"%s\",\"endpoint\":\"/v1/completions\",\"completion_window\":\"24h\"}", f2);
	request(port, "POST", "/v1/batches", NULL, body, strlen(body), &r);
	CU_ASSERT_EQUAL(r.status, 200);
	CU_ASSERT_STRING_EQUAL(read_text(core.last_input), "custom_id,prompt\nx,y\n");
	resp_free(&r);
	json_decref(b);
	free(fid);
	free(f2);
	http_destroy(&h);
}

static void test_sync_completion(void)
{
	http_t *h = start(cu_tmpdir(), NULL, 1 << 20, 1 << 16);
	uint16_t port = http_port(h);
	resp_t r;
	const char *body = "{\"model\":\"llama-110m\",\"messages\":[{\"role\":\"user\",\"content\":\"Capital of France?\"}],\"max_tokens\":4}";
	request(port, "POST", "/v1/chat/completions", NULL, body, strlen(body), &r);
	CU_ASSERT_EQUAL(r.status, 200);
	json_t *o = body_json(&r);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(o, "object")), "chat.completion");
	json_t *ch = json_array_get(json_object_get(o, "choices"), 0);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(json_object_get(ch, "message"), "content")), " Paris.");
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_object_get(o, "usage"), "total_tokens")), 7);
	/* The core got one request line for the chat endpoint. */
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(core.sync_line, "url")), "/v1/chat/completions");
	json_decref(o);
	resp_free(&r);

	body = "{\"model\":\"gpt-4o\",\"prompt\":\"x\"}";
	request(port, "POST", "/v1/completions", NULL, body, strlen(body), &r);
	CU_ASSERT_EQUAL(r.status, 404);
	o = body_json(&r);
	CU_ASSERT_STRING_EQUAL(err_code(o), "model_not_found");
	json_decref(o);
	resp_free(&r);
	body = "{\"model\":\"llama-110m\",\"prompt\":\"x\",\"stream\":true}";
	request(port, "POST", "/v1/completions", NULL, body, strlen(body), &r);
	CU_ASSERT_EQUAL(r.status, 400);
	resp_free(&r);
	http_destroy(&h);
	json_decref(core.sync_line);
	core.sync_line = NULL;
}

/* --- hostile input ------------------------------------------------------ */

/* Sends raw bytes, reads what comes back; *closed: the server closed the
 * connection (as opposed to the 5 s guard running out). */
static void raw_exchange(uint16_t port, const char *data, size_t len, resp_t *r, bool *closed)
{
	int fd = connect_to(port);
	struct timeval tv = { 5, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	send_all(fd, data, len);
	read_resp(fd, r);
	char c;
	ssize_t n = recv(fd, &c, 1, 0);
	*closed = n == 0 || (n < 0 && errno == ECONNRESET);
	close(fd);
}

/* A request whose length or key the server would read one way and a proxy
 * another: 400, and the connection is closed (nothing after it is read as
 * a request). */
static void test_framing(void)
{
	apikeys_t *k = apikeys_new();
	apikeys_add(k, "sk-a", 4);
	http_t *h = start(cu_tmpdir(), k, 1 << 20, 1 << 16);
	uint16_t port = http_port(h);
	static const struct {
		const char *name, *req;
		size_t len;
		const char *why;
	} bad[] = {
#define REQ(s) s, sizeof(s) - 1
		{ "two Content-Length", REQ("POST /v1/batches HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-a\r\n"
					    "Content-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 10\r\n\r\n"
					    "{}GET /healthz HTTP/1.1\r\n\r\n"), "more than one Content-Length" },
		{ "Content-Length and chunked", REQ("POST /v1/batches HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-a\r\n"
						    "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"),
		  "both Content-Length and Transfer-Encoding" },
		{ "unknown Transfer-Encoding", REQ("POST /v1/batches HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-a\r\n"
						   "Transfer-Encoding: gzip\r\n\r\n{}"), "Transfer-Encoding \\\"gzip\\\"" },
		{ "NUL in the key", REQ("GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-a\0bc\r\n\r\n"),
		  "NUL byte" },
		{ "NUL, LF endings", REQ("GET /v1/models HTTP/1.1\nHost: x\nAuthorization: Bearer sk-a\0bc\n\n"), "NUL byte" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		resp_t r;
		bool closed;
		raw_exchange(port, bad[i].req, bad[i].len, &r, &closed);
		if (r.status != 400 || !closed || strstr(r.body, bad[i].why) == NULL)
			fprintf(stderr, "\n%s: status %d closed %d: %s\n", bad[i].name, r.status, closed, r.body);
		CU_ASSERT_EQUAL(r.status, 400);
		CU_ASSERT(closed);
		CU_ASSERT_PTR_NOT_NULL(strstr(r.body, bad[i].why));
		resp_free(&r);
	}
	/* What clients send stays accepted: the key with LF endings and no
	 * blank after the colon, a chunked body. */
	static const char lf[] = "GET /v1/models HTTP/1.1\nHost:x\nAuthorization:Bearer sk-a\nConnection: close\n\n";
	static const char chunked[] = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-a\r\n"
				      "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
				      "1f\r\n{\"model\":\"gpt-4o\",\"prompt\":\"x\"}\r\n0\r\n\r\n";
	resp_t r;
	bool closed;
	raw_exchange(port, lf, sizeof(lf) - 1, &r, &closed);
	CU_ASSERT_EQUAL(r.status, 200);
	resp_free(&r);
	raw_exchange(port, chunked, sizeof(chunked) - 1, &r, &closed);
	CU_ASSERT_EQUAL(r.status, 404);	/* read whole: the model is not served */
	CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "model_not_found"));
	resp_free(&r);
	http_destroy(&h);
	apikeys_destroy(&k);
}

/* A raw multipart body with the given parts and ending. */
static void mp_post(uint16_t port, const char *body, size_t len, resp_t *r)
{
	request(port, "POST", "/v1/files", MP_HEADERS(""), body, len, r);
}

static int files_in_store(const http_t *h)
{
	char cmd[4400];
	snprintf(cmd, sizeof(cmd), "exit $(ls -A %s/files | wc -l)", h->state_dir);
	return WEXITSTATUS(system(cmd));
}

/* Multipart bodies that are not one whole file: 400, and nothing stored. */
static void test_multipart_refusals(void)
{
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/multipart", cu_tmpdir());
	http_t *h = start(dir, NULL, 1 << 20, 1 << 16);
	uint16_t port = http_port(h);
#define PURPOSE "--XyZzyBoundary42\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
#define FILEPART(name) "--XyZzyBoundary42\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" name \
		       "\"\r\nContent-Type: application/jsonl\r\n\r\n"
#define LINES "{\"custom_id\":\"a\"}\n{\"custom_id\":\"b\"}\n"
	static const struct {
		const char *name, *body;
		size_t len;
		const char *why;
	} bad[] = {
		{ "no closing boundary", REQ(PURPOSE FILEPART("in.jsonl") LINES), "closing boundary" },
		{ "closing boundary cut", REQ(PURPOSE FILEPART("in.jsonl") LINES "\r\n--XyZzyBoundary42"), "closing boundary" },
		{ "two file parts", REQ(PURPOSE FILEPART("a.jsonl") LINES "\r\n" FILEPART("b.jsonl") LINES
					"\r\n--XyZzyBoundary42--\r\n"), "more than one" },
		{ "an empty file part, then another", REQ(PURPOSE FILEPART("a.jsonl") "\r\n" FILEPART("b.jsonl") LINES
							  "\r\n--XyZzyBoundary42--\r\n"), "more than one" },
		{ "filename in Latin-1", REQ(PURPOSE FILEPART("caf\xe9.jsonl") LINES "\r\n--XyZzyBoundary42--\r\n"), "UTF-8" },
		{ "filename cut mid-character", REQ(PURPOSE FILEPART("in\xc3") LINES "\r\n--XyZzyBoundary42--\r\n"), "UTF-8" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		resp_t r;
		mp_post(port, bad[i].body, bad[i].len, &r);
		if (r.status != 400 || strstr(r.body, bad[i].why) == NULL)
			fprintf(stderr, "\n%s: status %d: %s\n", bad[i].name, r.status, r.body);
		CU_ASSERT_EQUAL(r.status, 400);
		CU_ASSERT_PTR_NOT_NULL(strstr(r.body, bad[i].why));
		CU_ASSERT_EQUAL(files_in_store(h), 0);
		resp_free(&r);
	}
	/* The same parts, whole, are stored: a long UTF-8 name is cut on a
	 * character boundary. */
	char name[700] = "";
	for (int i = 0; i < 300; i++)
		strcat(name, "\xc3\xa9");
	char body[2048];
	int n = snprintf(body, sizeof(body), PURPOSE FILEPART("%s") LINES "\r\n--XyZzyBoundary42--\r\n", name);
	resp_t r;
	mp_post(port, body, (size_t)n, &r);
	CU_ASSERT_EQUAL(r.status, 200);
	json_t *o = body_json(&r);
	const char *fn = json_string_value(json_object_get(o, "filename"));
	CU_ASSERT_PTR_NOT_NULL(fn);
	CU_ASSERT_EQUAL(fn ? strlen(fn) : 0, 254);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(o, "bytes")), (json_int_t)strlen(LINES));
	json_decref(o);
	resp_free(&r);
	CU_ASSERT_EQUAL(files_in_store(h), 2);
	http_destroy(&h);
}

typedef struct create_arg {
	uint16_t port;
	const char *fid;
	resp_t r;
} create_arg_t;

static int create_main(void *p)
{
	create_arg_t *a = p;
	char body[512];
	snprintf(body, sizeof(body), "{\"input_file_id\":\"%s\",\"endpoint\":\"/v1/completions\",\"completion_window\":\"24h\"}",
		 a->fid);
	request(a->port, "POST", "/v1/batches", NULL, body, strlen(body), &a->r);
	return 0;
}

static int readyz_main(void *p)
{
	create_arg_t *a = p;
	request(a->port, "GET", "/readyz", NULL, NULL, 0, &a->r);
	return 0;
}

/* Creating a batch while its file is being deleted: the create wins (200,
 * and the batch has the whole input) or the delete does (404), never 500. */
static void test_create_delete_race(void)
{
	http_t *h = start(cu_tmpdir(), NULL, 64 << 20, 1 << 16);
	uint16_t port = http_port(h);
	/* Enough lines that checking them takes a while. */
	size_t n_lines = 20000, cap = n_lines * 128;
	char *jsonl = malloc(cap);
	size_t len = 0;
	for (size_t i = 0; i < n_lines; i++)
		len += (size_t)snprintf(jsonl + len, cap - len,
					"{\"custom_id\":\"r%zu\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"model\":\"llama-110m\",\"prompt\":\"x\"}}\n", i);
	int outcomes[600] = { 0 };
	for (int round = 0; round < 8; round++) {
		char *fid = upload(port, jsonl);
		create_arg_t a = { port, fid, { 0 } };
		thrd_t t;
		CU_ASSERT_FATAL(thrd_create(&t, create_main, &a) == thrd_success);
		/* Staggered: early rounds delete before the lookup, later ones
		 * while the lines are being checked. */
		struct timespec ts = { 0, round * 4000000L };
		nanosleep(&ts, NULL);
		char path[256];
		snprintf(path, sizeof(path), "/v1/files/%s", fid);
		resp_t d;
		request(port, "DELETE", path, NULL, NULL, 0, &d);
		CU_ASSERT_EQUAL(d.status, 200);
		resp_free(&d);
		thrd_join(t, NULL);
		if (a.r.status != 200 && a.r.status != 404)
			fprintf(stderr, "\nround %d: create gave %d: %s\n", round, a.r.status, a.r.body);
		CU_ASSERT(a.r.status == 200 || a.r.status == 404);
		if (a.r.status >= 0 && a.r.status < 600)
			outcomes[a.r.status]++;
		if (a.r.status == 200) {
			/* The job's input is all there, whatever the delete did. */
			struct stat st;
			CU_ASSERT_EQUAL(stat(core.last_input, &st), 0);
			CU_ASSERT_EQUAL((size_t)st.st_size, len);
		} else if (a.r.status == 404) {
			CU_ASSERT_PTR_NOT_NULL(strstr(a.r.body, fid));
		}
		resp_free(&a.r);
		free(fid);
	}
	CU_ASSERT_EQUAL(outcomes[500], 0);
	free(jsonl);
	http_destroy(&h);
}

/* A handler that takes longer than idle_timeout still answers (its
 * connection is not idle, it waits for the server), and slow requests run
 * side by side: /healthz answers meanwhile. */
static void test_slow_handler(void)
{
	http_config_t c;
	http_config_default(&c);
	c.service = &api_service;
	c.listen = "127.0.0.1:0";
	c.state_dir = cu_tmpdir();
	c.idle_timeout_s = 1;
	c.threads = 1;
	http_t *h = NULL;
	char err[512];
	CU_ASSERT_EQUAL_FATAL(http_new(&c, NULL, fake_ctl, &core, &h, err, sizeof(err)), 0);
	uint16_t port = http_port(h);
	core.health_delay_ms = 2500;
	create_arg_t a[3];
	thrd_t t[3];
	for (int i = 0; i < 3; i++) {
		a[i] = (create_arg_t){ port, NULL, { 0 } };
		CU_ASSERT_FATAL(thrd_create(&t[i], readyz_main, &a[i]) == thrd_success);
	}
	struct timespec d = { 0, 300000000L };
	nanosleep(&d, NULL);
	resp_t r;
	request(port, "GET", "/healthz", NULL, NULL, 0, &r);
	CU_ASSERT_EQUAL(r.status, 200);
	resp_free(&r);
	for (int i = 0; i < 3; i++) {
		thrd_join(t[i], NULL);
		CU_ASSERT_EQUAL(a[i].r.status, 200);
		resp_free(&a[i].r);
	}
	core.health_delay_ms = 0;
	http_destroy(&h);
}

/* The state directory's disk below [journal] min_free: new work (uploads,
 * batch creation, synchronous completions and embeddings) answers 507
 * insufficient_storage, reads still answer; space back, uploads work. */
static void test_disk_full(void)
{
	const char *dir = cu_tmpdir();
	http_t *h = start(dir, NULL, 1 << 20, 1 << 16);
	uint16_t port = http_port(h);
	const char *jsonl = "{\"custom_id\":\"a\"}\n";
	size_t len;
	char *mp = multipart("batch", jsonl, strlen(jsonl), &len);
	resp_t r;
	int64_t now = mg_clock_now_ns();
	CU_ASSERT_TRUE(storage_watch(dir, UINT64_MAX, now, false));
	CU_ASSERT_TRUE(storage_full());
	request(port, "POST", "/v1/files", MP_HEADERS(""), mp, len, &r);
	CU_ASSERT_EQUAL(r.status, 507);
	json_t *o = body_json(&r);
	CU_ASSERT_STRING_EQUAL(err_code(o), "insufficient_storage");
	json_decref(o);
	resp_free(&r);
	const char *create = "{\"input_file_id\":\"file-x\",\"endpoint\":\"/v1/completions\",\"completion_window\":\"24h\"}";
	request(port, "POST", "/v1/batches", "Content-Type: application/json\r\n", create, strlen(create), &r);
	CU_ASSERT_EQUAL(r.status, 507);
	resp_free(&r);
	const char *sync = "{\"model\":\"m\",\"prompt\":\"x\"}";
	request(port, "POST", "/v1/completions", "Content-Type: application/json\r\n", sync, strlen(sync), &r);
	CU_ASSERT_EQUAL(r.status, 507);
	resp_free(&r);
	const char *emb = "{\"model\":\"m\",\"input\":\"x\"}";
	request(port, "POST", "/v1/embeddings", "Content-Type: application/json\r\n", emb, strlen(emb), &r);
	CU_ASSERT_EQUAL(r.status, 507);
	resp_free(&r);
	request(port, "GET", "/v1/files", NULL, NULL, 0, &r);
	CU_ASSERT_EQUAL(r.status, 200);
	resp_free(&r);
	/* The watch looks again 200 ms later at most. */
	CU_ASSERT_TRUE(storage_watch(dir, 1, now + 1, false));
	CU_ASSERT_FALSE(storage_watch(dir, 1, now + 1000000000LL, false));
	request(port, "POST", "/v1/files", MP_HEADERS(""), mp, len, &r);
	CU_ASSERT_EQUAL(r.status, 200);
	resp_free(&r);
	free(mp);
	http_destroy(&h);

	/* The reserves: min_free / 4 set aside while there is room, deleted
	 * the moment the disk is full, and at start; min_free / 8 kept while
	 * full (the restart's room), deleted at start only. */
	char rp[4200], sp[4200];
	snprintf(rp, sizeof(rp), "%s/reserve", dir);
	snprintf(sp, sizeof(sp), "%s/reserve.start", dir);
	struct stat sb;
	CU_ASSERT_FALSE(storage_watch(dir, 8 << 20, now + 2000000000LL, false));
	CU_ASSERT_EQUAL_FATAL(stat(rp, &sb), 0);
	CU_ASSERT_EQUAL(sb.st_size, 2 << 20);
	CU_ASSERT_EQUAL_FATAL(stat(sp, &sb), 0);
	CU_ASSERT_EQUAL(sb.st_size, 1 << 20);
	CU_ASSERT_TRUE(storage_watch(dir, UINT64_MAX, now + 2000000001LL, true));
	CU_ASSERT_NOT_EQUAL(stat(rp, &sb), 0);
	CU_ASSERT_EQUAL(stat(sp, &sb), 0);
	CU_ASSERT_FALSE(storage_watch(dir, 8 << 20, now + 3000000000LL, false));
	CU_ASSERT_EQUAL(stat(rp, &sb), 0);
	storage_start(dir);
	CU_ASSERT_NOT_EQUAL(stat(rp, &sb), 0);
	CU_ASSERT_NOT_EQUAL(stat(sp, &sb), 0);
	CU_ASSERT_FALSE(storage_watch(dir, 0, now + 4000000000LL, false));
}

const cu_test_t http_tests[] = {
	{ "auth: keys, open endpoints, 401/404/405, metrics", test_auth_and_routes },
	{ "non-loopback needs API keys", test_loopback_rule },
	{ "upload, download, list, delete, restart", test_upload_and_download },
	{ "upload with an epilogue after the close delimiter", test_upload_epilogue },
	{ "limits: 413 upload/body, 400 line length and shapes", test_upload_limits },
	{ "batch create: per-line checks, blanked copy, rejects", test_batch_create },
	{ "synchronous completions", test_sync_completion },
	{ "framing: two lengths, length and chunked, unknown coding, NUL: 400 and closed", test_framing },
	{ "multipart: no closing boundary, two files, filename not UTF-8: 400, nothing stored", test_multipart_refusals },
	{ "batch create racing the file's delete: 200 or 404, never 500", test_create_delete_race },
	{ "a handler slower than idle_timeout still answers; others run meanwhile", test_slow_handler },
	{ "disk full: new work 507 insufficient_storage, reads 200, then back", test_disk_full },
	{ NULL, NULL },
};
