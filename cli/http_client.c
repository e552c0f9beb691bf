/* http_client: see http_client.h. */
#include "http_client.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct http_client {
	CURL *curl;			/* owned */
	char *base;			/* owned: without a trailing "/" or "/v1" */
	struct curl_slist *auth;	/* owned: the Authorization header, or NULL */
	char errbuf[CURL_ERROR_SIZE];
};

typedef struct sink {
	char *p;
	size_t len, cap;
	FILE *out;			/* download: 2xx bodies go here */
	long *status;
	bool oom;
} sink_t;

static size_t on_data(char *data, size_t size, size_t n, void *user)
{
	sink_t *s = user;
	size_t len = size * n;
	if (s->out != NULL && s->status != NULL && *s->status >= 200 && *s->status < 300)
		return fwrite(data, 1, len, s->out) == len ? len : 0;
	if (s->len + len + 1 > s->cap) {
		size_t cap = s->cap ? s->cap : 4096;
		while (s->len + len + 1 > cap)
			cap *= 2;
		char *np = realloc(s->p, cap);
		if (np == NULL) {
			s->oom = true;
			return 0;
		}
		s->p = np;
		s->cap = cap;
	}
	memcpy(s->p + s->len, data, len);
	s->len += len;
	s->p[s->len] = '\0';
	return len;
}

/* The status is known once headers arrive: downloads decide there
 * whether the body goes to the file. */
static size_t on_header(char *data, size_t size, size_t n, void *user)
{
	sink_t *s = user;
	int code;
	if (s->status != NULL && size * n > 9 && strncmp(data, "HTTP/", 5) == 0 &&
	    sscanf(data, "HTTP/%*s %d", &code) == 1)
		*s->status = code;
	return size * n;
}

int http_client_new(const char *base_url, const char *api_key, http_client_t **ret, char *err,
		    size_t errlen)
{
	if (base_url == NULL || (strncmp(base_url, "http://", 7) != 0 && strncmp(base_url, "https://", 8) != 0)) {
		snprintf(err, errlen, "--url %s: expected http://HOST:PORT", base_url ? base_url : "(none)");
		return -EINVAL;
	}
	static bool global_done;
	if (!global_done) {
		curl_global_init(CURL_GLOBAL_DEFAULT);
		global_done = true;
	}
	http_client_t *c = calloc(1, sizeof(*c));
	if (c == NULL || (c->base = strdup(base_url)) == NULL || (c->curl = curl_easy_init()) == NULL)
		goto nomem;
	size_t n = strlen(c->base);
	while (n > 0 && c->base[n - 1] == '/')
		c->base[--n] = '\0';
	if (n >= 3 && strcmp(c->base + n - 3, "/v1") == 0)
		c->base[n - 3] = '\0';
	if (api_key != NULL && *api_key != '\0') {
		size_t hl = strlen(api_key) + 32;
		char *h = malloc(hl);
		if (h == NULL)
			goto nomem;
		snprintf(h, hl, "Authorization: Bearer %s", api_key);
		c->auth = curl_slist_append(NULL, h);
		free(h);
		if (c->auth == NULL)
			goto nomem;
	}
	*ret = c;
	return 0;
nomem:
	http_client_destroy(&c);
	snprintf(err, errlen, "out of memory");
	return -ENOMEM;
}

void http_client_destroy(http_client_t **pc)
{
	if (pc == NULL || *pc == NULL)
		return;
	http_client_t *c = *pc;
	if (c->curl != NULL)
		curl_easy_cleanup(c->curl);
	curl_slist_free_all(c->auth);
	free(c->base);
	free(c);
	*pc = NULL;
}

/* The handle reset and set up for one request; the caller adds a body. */
static void setup(http_client_t *c, const char *method, const char *path, struct curl_slist *hdr,
		  sink_t *s, char *url, size_t urllen)
{
	snprintf(url, urllen, "%s%s", c->base, path);
	CURL *h = c->curl;
	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_URL, url);
	if (method != NULL)
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, s);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, s);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "marginctl/" MARGIN_VERSION);
	c->errbuf[0] = '\0';
}

static int run(http_client_t *c, const char *what, const char *url, sink_t *s, long *ret_status,
	       char *err, size_t errlen)
{
	long status = 0;
	s->status = &status;
	CURLcode rc = curl_easy_perform(c->curl);
	if (rc != CURLE_OK) {
		snprintf(err, errlen, "%s %s: %s", what, url,
			 s->oom ? "out of memory" : c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc));
		return rc == CURLE_COULDNT_CONNECT ? -ECONNREFUSED :
		       rc == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT : -EIO;
	}
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
	*ret_status = status;
	return 0;
}

/* The request's header list (the key, plus extra); false when out of
 * memory. An empty list is NULL. */
static bool headers(const http_client_t *c, const char *extra, struct curl_slist **ret)
{
	struct curl_slist *hdr = NULL, *n;
	for (struct curl_slist *a = c->auth; a != NULL; a = a->next) {
		if ((n = curl_slist_append(hdr, a->data)) == NULL)
			goto nomem;
		hdr = n;
	}
	if (extra != NULL) {
		if ((n = curl_slist_append(hdr, extra)) == NULL)
			goto nomem;
		hdr = n;
	}
	*ret = hdr;
	return true;
nomem:
	curl_slist_free_all(hdr);
	return false;
}

static json_t *parse(const sink_t *s)
{
	return s->p != NULL ? json_loadb(s->p, s->len, 0, NULL) : NULL;
}

int http_client_json(http_client_t *c, const char *method, const char *path, json_t *body,
		     long *ret_status, json_t **ret_json, char *err, size_t errlen)
{
	sink_t s = { 0 };
	char url[4096];
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	struct curl_slist *hdr = NULL;
	if ((body != NULL && text == NULL) ||
	    !headers(c, body ? "Content-Type: application/json" : NULL, &hdr)) {
		free(text);
		curl_slist_free_all(hdr);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	setup(c, method, path, hdr, &s, url, sizeof(url));
	if (text != NULL || strcmp(method, "POST") == 0) {
		curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, text ? text : "");
		curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE, text ? (long)strlen(text) : 0L);
	}
	int r = run(c, method, url, &s, ret_status, err, errlen);
	if (r == 0)
		*ret_json = parse(&s);
	free(text);
	free(s.p);
	curl_slist_free_all(hdr);
	return r;
}

int http_client_upload(http_client_t *c, const char *local_path, const char *filename,
		       const char *purpose, long *ret_status, json_t **ret_json, char *err,
		       size_t errlen)
{
	sink_t s = { 0 };
	char url[4096];
	curl_mime *mime = curl_mime_init(c->curl);
	curl_mimepart *p = curl_mime_addpart(mime);
	curl_mime_name(p, "purpose");
	curl_mime_data(p, purpose, CURL_ZERO_TERMINATED);
	p = curl_mime_addpart(mime);
	curl_mime_name(p, "file");
	if (curl_mime_filedata(p, local_path) != CURLE_OK) {
		curl_mime_free(mime);
		snprintf(err, errlen, "cannot read %s", local_path);
		return -ENOENT;
	}
	curl_mime_filename(p, filename);
	curl_mime_type(p, "application/jsonl");
	/* No "Expect: 100-continue" round trip. */
	struct curl_slist *hdr = NULL;
	if (!headers(c, "Expect:", &hdr)) {
		curl_mime_free(mime);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	setup(c, NULL, "/v1/files", hdr, &s, url, sizeof(url));
	curl_easy_setopt(c->curl, CURLOPT_MIMEPOST, mime);
	int r = run(c, "POST", url, &s, ret_status, err, errlen);
	if (r == 0)
		*ret_json = parse(&s);
	curl_mime_free(mime);
	curl_slist_free_all(hdr);
	free(s.p);
	return r;
}

int http_client_download(http_client_t *c, const char *path, FILE *out, long *ret_status,
			 json_t **ret_json, char *err, size_t errlen)
{
	sink_t s = { 0 };
	char url[4096];
	s.out = out;
	struct curl_slist *hdr = NULL;
	if (!headers(c, NULL, &hdr)) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	setup(c, "GET", path, hdr, &s, url, sizeof(url));
	int r = run(c, "GET", url, &s, ret_status, err, errlen);
	curl_slist_free_all(hdr);
	if (r == 0) {
		*ret_json = *ret_status >= 300 ? parse(&s) : NULL;
		if (*ret_status < 300 && fflush(out) != 0) {
			snprintf(err, errlen, "writing the download: %s", strerror(errno));
			r = -EIO;
		}
	}
	free(s.p);
	return r;
}

const char *http_client_error_text(json_t *body, long status, char *buf, size_t len)
{
	json_t *e = json_object_get(body, "error");
	const char *msg = json_string_value(json_object_get(e, "message"));
	const char *code = json_string_value(json_object_get(e, "code"));
	if (msg != NULL && code != NULL)
		snprintf(buf, len, "%s (HTTP %ld, code %s)", msg, status, code);
	else if (msg != NULL)
		snprintf(buf, len, "%s (HTTP %ld)", msg, status);
	else
		snprintf(buf, len, "HTTP %ld", status);
	return buf;
}
