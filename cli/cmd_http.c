/* marginctl's commands over margind's HTTP API (the OpenAI Files, Batches
 * and Models endpoints; docs/api.md):
 *
 *   submit FILE.jsonl [--wait] [--model M] [--endpoint EP] [--metadata K=V]...
 *   status [ID] [--json]       one batch, or the server (workers, models, active batches)
 *   wait ID [--interval S] [--timeout S]
 *   results ID -o FILE [--errors FILE]
 *   cancel ID
 *   list [--limit N] [--json]
 *   models [--json]
 *
 * --url / $MARGIN_URL and --api-key / $MARGIN_API_KEY come from main.c.
 * Machine-readable output goes to stdout (submit prints the batch id, the
 * --json forms print the API's objects); progress and notes go to stderr.
 * Exit status: 0 success, 2 bad usage, 1 anything else (the reason on
 * stderr); `wait` and `submit --wait` exit 0 only when the batch completed. */
#include "cli.h"
#include "http_client.h"
#include "lib/mg_clock.h"
#include "lib/mg_settings.h"
#include "progress.h"

#include <errno.h>
#include <math.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static http_client_t *connect_api(void)
{
	http_client_t *c = NULL;
	char err[512];
	if (http_client_new(cli_globals.url, cli_globals.api_key, &c, err, sizeof(err)) < 0) {
		fprintf(stderr, "marginctl: %s\n", err);
		return NULL;
	}
	return c;
}

/* A call whose failure (no answer, or an error status) is reported here.
 * Returns the body (new reference) or NULL. */
static json_t *api(http_client_t *c, const char *method, const char *path, json_t *body)
{
	long status = 0;
	json_t *reply = NULL;
	char err[1024];
	int r = http_client_json(c, method, path, body, &status, &reply, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "marginctl: %s%s\n", err,
			r == -ECONNREFUSED ? " (is margind running? --url / $MARGIN_URL)" : "");
		return NULL;
	}
	if (status < 200 || status >= 300) {
		fprintf(stderr, "marginctl: %s %s: %s\n", method, path,
			http_client_error_text(reply, status, err, sizeof(err)));
		json_decref(reply);
		return NULL;
	}
	if (reply == NULL)
		fprintf(stderr, "marginctl: %s %s: the answer is not JSON\n", method, path);
	return reply;
}

static const char *js(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "";
}

static long long ji(json_t *o, const char *k)
{
	return (long long)json_integer_value(json_object_get(o, k));
}

static bool terminal(const char *status)
{
	return strcmp(status, "completed") == 0 || strcmp(status, "failed") == 0 ||
	       strcmp(status, "cancelled") == 0 || strcmp(status, "expired") == 0;
}

static void print_json(json_t *o)
{
	char *t = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	if (t != NULL)
		puts(t);
	free(t);
}

/* --- wait ---------------------------------------------------------------- */

static int term_width(void)
{
	struct winsize ws;
	if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
		return ws.ws_col;
	return 80;
}

static void sample(progress_t *p, json_t *b)
{
	json_t *rc = json_object_get(b, "request_counts");
	json_t *xu = json_object_get(json_object_get(b, "x_margin"), "usage");
	json_t *u = json_object_get(b, "usage");
	p->status = js(b, "status");
	p->total = ji(rc, "total");
	p->completed = ji(rc, "completed");
	p->failed = ji(rc, "failed");
	p->tokens = -1;
	if (json_is_object(xu))
		p->tokens = ji(xu, "completion_tokens");
	else if (json_is_object(u))
		p->tokens = ji(u, "output_tokens");
}

/* A batch's cost as the server's report gives it (GET /v1/cost?batch=ID
 * &group=batch): the totals in the report currency, so calls priced on
 * profiles of different currencies are converted, never added up as they
 * are (the batch object's usage sums carry no currency). */
typedef struct batch_cost {
	int64_t loaded, marginal;	/* micros of currency */
	int64_t calls;
	char currency[4];
} batch_cost_t;

/* 0, or < 0 when the server gives no report (no meter; no call booked
 * yet is calls = 0). */
static int fetch_cost(http_client_t *c, const char *id, batch_cost_t *ret)
{
	char path[320], err[256];
	long status = 0;
	json_t *rep = NULL;
	snprintf(path, sizeof(path), "/v1/cost?batch=%s&group=batch&format=json", id);
	int r = http_client_json(c, "GET", path, NULL, &status, &rep, err, sizeof(err));
	json_t *t = json_object_get(rep, "total");
	const char *cur = js(rep, "currency");
	if (r < 0 || status != 200 || !json_is_object(t) || strlen(cur) != 3) {
		json_decref(rep);
		return -ENOENT;
	}
	*ret = (batch_cost_t){ .loaded = ji(t, "cost_loaded_micros"), .marginal = ji(t, "cost_marginal_micros"),
			       .calls = ji(t, "calls") };
	snprintf(ret->currency, sizeof(ret->currency), "%s", cur);
	json_decref(rep);
	return 0;
}

/* "0.012345" */
static char *micros_text(int64_t m, char *buf, size_t len)
{
	uint64_t a = m < 0 ? (uint64_t)0 - (uint64_t)m : (uint64_t)m;
	snprintf(buf, len, "%s%llu.%06llu", m < 0 ? "-" : "", (unsigned long long)(a / 1000000),
		 (unsigned long long)(a % 1000000));
	return buf;
}

static void print_errors(json_t *b)
{
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(json_object_get(b, "errors"), "data"), i, e) {
		json_t *line = json_object_get(e, "line");
		if (json_is_integer(line))
			fprintf(stderr, "  line %lld: %s\n", (long long)json_integer_value(line), js(e, "message"));
		else
			fprintf(stderr, "  %s\n", js(e, "message"));
	}
}

/* Polls until the batch ends; 0 when it completed. */
static int wait_batch(http_client_t *c, const char *id, double interval, double timeout)
{
	bool tty = isatty(STDERR_FILENO);
	char path[256], line[512], last[512] = "";
	snprintf(path, sizeof(path), "/v1/batches/%s", id);
	progress_t p = { .id = id, .tok_per_s = -1, .eta_s = -1, .cost_micros = -1 };
	double t0 = (double)mg_clock_now_ns() / 1e9, last_print = -1e9, last_cost = -1e9;
	int64_t cost_at = -1;		/* answered calls when the cost was read */
	batch_cost_t bc = { 0 };
	json_t *b = NULL;
	if (tty)
		fprintf(stderr, "%s\n", id);
	for (;;) {
		json_decref(b);
		b = api(c, "GET", path, NULL);
		if (b == NULL)
			return 1;
		double now = (double)mg_clock_now_ns() / 1e9;
		sample(&p, b);
		progress_update(&p, now);
		bool done = terminal(p.status);
		/* The cost so far, from the server's report: read again when calls
		 * were answered, at most every 5 s, and at the end. */
		int64_t answered = p.completed + p.failed;
		if (answered != cost_at && (now - last_cost >= 5 || done)) {
			if (fetch_cost(c, id, &bc) == 0 && bc.calls > 0) {
				p.cost_micros = bc.loaded;
				p.currency = bc.currency;
			}
			cost_at = answered;
			last_cost = now;
		}
		if (tty) {
			progress_format(&p, true, term_width(), line, sizeof(line));
			fprintf(stderr, "\r%s\033[K", line);
			if (done)
				fputc('\n', stderr);
		} else {
			/* One plain line per change, and one every 30 s anyway. */
			progress_format(&p, false, 0, line, sizeof(line));
			char key[512];
			snprintf(key, sizeof(key), "%s %lld %lld", p.status, (long long)p.completed,
				 (long long)p.failed);
			if (strcmp(key, last) != 0 || now - last_print >= 30 || done) {
				fprintf(stderr, "%s\n", line);
				snprintf(last, sizeof(last), "%s", key);
				last_print = now;
			}
		}
		fflush(stderr);
		if (done)
			break;
		if (timeout > 0 && now - t0 > timeout) {
			fprintf(stderr, "marginctl: batch %s is still %s after %.0f s (--timeout)\n", id, p.status,
				timeout);
			json_decref(b);
			return 1;
		}
		mg_clock_sleep_ns((int64_t)(interval * 1e9));
	}
	double el = (double)mg_clock_now_ns() / 1e9 - t0;
	int rc = strcmp(p.status, "completed") == 0 ? 0 : 1;
	printf("%s %s: %lld/%lld completed, %lld failed", id, p.status, (long long)p.completed,
	       (long long)p.total, (long long)p.failed);
	if (p.tokens >= 0)
		printf(", %lld tokens generated", (long long)p.tokens);
	char m[40];
	if (p.cost_micros >= 0)
		printf(", cost %s %s (loaded)", micros_text(p.cost_micros, m, sizeof(m)), p.currency);
	printf(" (waited %.1f s)\n", el);
	if (json_is_string(json_object_get(b, "output_file_id")))
		printf("output: %s\n", js(b, "output_file_id"));
	if (json_is_string(json_object_get(b, "error_file_id")))
		printf("errors: %s\n", js(b, "error_file_id"));
	if (strcmp(p.status, "failed") == 0) {
		fprintf(stderr, "marginctl: batch %s failed:\n", id);
		print_errors(b);
	} else if (rc != 0) {
		fprintf(stderr, "marginctl: batch %s was %s\n", id, p.status);
	}
	json_decref(b);
	return rc;
}

/* The options of the HTTP commands: each command's table picks its rows. */
typedef struct http_opts {
	const char *id, *file, *out, *errs, *model, *endpoint;	/* borrowed from the config */
	const char *meta[16];
	size_t n_meta;
	int64_t interval_ns, timeout_ns, limit;
	bool json, wait;
} http_opts_t;

#define HO(field) MG_SETTING_AT(http_opts_t, field)
#define ROW_ID(flags_) { .section = "http", .key = "id", .arg = "ID", .flags = (flags_), HO(id) }
#define ROW_JSON                                                                                          \
	{ .flag = "json", .section = "http", .key = "json", .type = MG_SETTING_BOOL, .set = "yes",        \
	  .help = "print the server's JSON", HO(json) }
#define ROW_INTERVAL                                                                                      \
	{ .flag = "interval", .section = "http", .key = "interval", .type = MG_SETTING_DURATION,          \
	  .def = "500ms", .arg = "SECONDS", .help = "between polls (at least 50ms)", HO(interval_ns) }

static const mg_setting_t wait_settings[] = {
	ROW_ID(MG_SETTING_OPERAND),
	ROW_INTERVAL,
	{ .flag = "timeout", .section = "http", .key = "timeout", .type = MG_SETTING_DURATION, .def = "0",
	  .arg = "SECONDS", .help = "give up after this long (0: never)", HO(timeout_ns) },
};

static const mg_setting_t submit_settings[] = {
	{ .section = "http", .key = "file", .arg = "FILE", .flags = MG_SETTING_OPERAND, HO(file) },
	{ .flag = "endpoint", .section = "http", .key = "endpoint", .arg = "EP",
	  .help = "/v1/completions, /v1/chat/completions or /v1/embeddings\n(default: the first line's url)",
	  HO(endpoint) },
	{ .flag = "model", .section = "http", .key = "model", .arg = "M",
	  .help = "run every line on model M (rewrites body.model before the upload)", HO(model) },
	{ .flag = "metadata", .section = "http", .key = "metadata", .type = MG_SETTING_LIST, .arg = "K=V",
	  .help = "batch metadata (up to 16 pairs)", MG_SETTING_LIST_AT(http_opts_t, meta, n_meta) },
	{ .flag = "wait", .section = "http", .key = "wait", .type = MG_SETTING_BOOL, .set = "yes",
	  .help = "then wait for it with a progress bar (exit 0 only when it completed)", HO(wait) },
	ROW_INTERVAL,
};

static const mg_setting_t status_settings[] = { ROW_ID(MG_SETTING_OPERAND), ROW_JSON };
static const mg_setting_t list_settings[] = {
	{ .flag = "limit", .section = "http", .key = "limit", .type = MG_SETTING_INT, .lo = 1, .hi = 100,
	  .def = "20", .arg = "N", .help = "at most N batches", HO(limit) },
	ROW_JSON,
};
static const mg_setting_t results_settings[] = {
	ROW_ID(MG_SETTING_OPERAND),
	{ .flag = "output", .short_flag = 'o', .section = "http", .key = "output", .arg = "FILE",
	  .help = "the output file (- for stdout)", HO(out) },
	{ .flag = "errors", .section = "http", .key = "errors", .arg = "FILE",
	  .help = "the error file (refused and failed requests, with their reasons)", HO(errs) },
};
static const mg_setting_t models_settings[] = { ROW_JSON };

#define HTTP_SPEC(name, syn, intro_, table) \
	{ .prog = "marginctl " name, .synopsis = syn, .intro = intro_, .no_config = true, .settings = table, \
	  .n = sizeof(table) / sizeof(table[0]) }
static const mg_settings_spec_t wait_spec =
	HTTP_SPEC("wait", "ID [--interval SECONDS] [--timeout SECONDS]\n",
		  "Polls the batch until it ends; on a terminal, a live progress bar on stderr\n"
		  "(done/total, failed, tokens/s, ETA, cost so far when the server books it).\n"
		  "Exit 0 only when the batch completed.\n", wait_settings);
static const mg_settings_spec_t submit_spec =
	HTTP_SPEC("submit", "FILE.jsonl [--wait] [--model M] [--endpoint EP] [--metadata K=V]...\n",
		  "Uploads FILE (purpose batch), creates a batch and prints its id.\n", submit_settings);
static const mg_settings_spec_t status_spec =
	HTTP_SPEC("status", "[ID] [--json]\n",
		  "A batch's status, counts, tokens, files and times;\n"
		  "without ID: the server, its models and the active batches.\n", status_settings);
static const mg_settings_spec_t cancel_spec = HTTP_SPEC("cancel", "ID [--json]\n", NULL, status_settings);
static const mg_settings_spec_t list_spec =
	HTTP_SPEC("list", "[--limit N] [--json]\n", "Batches, newest first.\n", list_settings);
static const mg_settings_spec_t results_spec =
	HTTP_SPEC("results", "ID -o FILE [--errors FILE]\n",
		  "Downloads the batch's output file (- for stdout) and, with --errors,\n"
		  "its error file (refused and failed requests, with their reasons).\n", results_settings);
static const mg_settings_spec_t models_spec =
	HTTP_SPEC("models", "[--json]\n", "The models the connected workers serve.\n", models_settings);

/* The command's options into o (strings borrowed from *ret_cfg, which the
 * caller destroys). 0; 1 after --help; 2 bad usage (said); -1 out of
 * memory (said). */
static int parse_http(const mg_settings_spec_t *spec, int argc, char **argv, mg_config_t **ret_cfg,
		      http_opts_t *o)
{
	*o = (http_opts_t){ 0 };
	if ((*ret_cfg = mg_config_new()) == NULL) {
		fprintf(stderr, "%s: out of memory\n", spec->prog);
		return -1;
	}
	int r = mg_settings_parse_into(spec, *ret_cfg, argc, argv, o);
	return r == 0 ? 0 : r == 1 ? 1 : r == -EINVAL ? 2 : -1;
}

/* parse_http's answer as an exit status: 1 after --help is 0. */
static int parse_exit(int r)
{
	return r == 1 ? 0 : r < 0 ? 1 : r;
}

int cmd_wait(int argc, char **argv)
{
	http_opts_t o;
	mg_config_t *cfg = NULL;
	int r = parse_http(&wait_spec, argc, argv, &cfg, &o);
	if (r == 0 && o.id == NULL) {
		mg_settings_usage(&wait_spec, stderr);
		r = 2;
	}
	http_client_t *cl = r == 0 ? connect_api() : NULL;
	if (r == 0 && cl == NULL)
		r = -1;
	if (r == 0)
		r = wait_batch(cl, o.id, fmax(0.05, (double)o.interval_ns / MG_NS_PER_S),
			       (double)o.timeout_ns / MG_NS_PER_S);
	else
		r = parse_exit(r);
	http_client_destroy(&cl);
	mg_config_destroy(&cfg);
	return r;
}

/* --- submit ------------------------------------------------------------- */

/* The url of the first request line ("" when there is none). */
static int first_url(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return -errno;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	buf[0] = '\0';
	while ((n = getline(&line, &cap, f)) > 0) {
		if (strspn(line, " \t\r\n") == (size_t)n)
			continue;
		json_t *o = json_loadb(line, (size_t)n, 0, NULL);
		snprintf(buf, len, "%s", js(o, "url"));
		json_decref(o);
		break;
	}
	free(line);
	fclose(f);
	return 0;
}

/* A copy of path with body.model set to model on every request line, in
 * a temporary file (*ret_tmp, caller unlinks). Lines that are not JSON
 * objects are copied as they are: the server reports them. */
static int rewrite_model(const char *path, const char *model, char *ret_tmp, size_t len)
{
	const char *dir = getenv("TMPDIR");
	snprintf(ret_tmp, len, "%s/marginctl-XXXXXX", dir && *dir ? dir : "/tmp");
	int fd = mkstemp(ret_tmp);
	if (fd < 0)
		return -errno;
	FILE *out = fdopen(fd, "w");
	FILE *in = fopen(path, "re");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int r = 0;
	if (out == NULL || in == NULL) {
		r = -errno;
		goto out;
	}
	while ((n = getline(&line, &cap, in)) > 0) {
		json_t *o = json_loadb(line, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
		json_t *body = json_object_get(o, "body");
		if (json_is_object(body) && json_object_set_new(body, "model", json_string(model)) == 0) {
			char *t = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
			if (t == NULL || fprintf(out, "%s\n", t) < 0)
				r = -EIO;
			free(t);
		} else if (fwrite(line, 1, (size_t)n, out) != (size_t)n) {
			r = -EIO;
		}
		json_decref(o);
		if (r < 0)
			goto out;
	}
	if (fflush(out) != 0)
		r = -errno;
out:
	free(line);
	if (in != NULL)
		fclose(in);
	if (out != NULL)
		fclose(out);
	else
		close(fd);
	if (r < 0)
		unlink(ret_tmp);
	return r;
}

/* --metadata K=V pairs into a JSON object: 0, or 2 (said). */
static int metadata(const http_opts_t *o, json_t *meta)
{
	for (size_t i = 0; i < o->n_meta; i++) {
		const char *eq = strchr(o->meta[i], '=');
		if (eq == NULL || eq == o->meta[i]) {
			fprintf(stderr, "marginctl: --metadata %s: expected KEY=VALUE\n", o->meta[i]);
			mg_settings_usage(&submit_spec, stderr);
			return 2;
		}
		char key[128];
		snprintf(key, sizeof(key), "%.*s", (int)(eq - o->meta[i]), o->meta[i]);
		json_object_set_new(meta, key, json_string(eq + 1));
	}
	return 0;
}

/* Uploads o->file and creates its batch (then waits with --wait). */
static int submit(const http_opts_t *o, json_t *meta)
{
	const char *file = o->file, *endpoint = o->endpoint, *model = o->model;
	double interval = fmax(0.05, (double)o->interval_ns / MG_NS_PER_S);
	bool wait = o->wait;
	int rc = 1;
	char ep[256];
	if (endpoint == NULL) {
		int r = first_url(file, ep, sizeof(ep));
		if (r < 0) {
			fprintf(stderr, "marginctl: %s: %s\n", file, strerror(-r));
			return 1;
		}
		if (ep[0] == '\0')
			snprintf(ep, sizeof(ep), "/v1/completions");
		endpoint = ep;
	}
	char tmp[4096] = "";
	const char *upload = file;
	if (model != NULL) {
		int r = rewrite_model(file, model, tmp, sizeof(tmp));
		if (r < 0) {
			fprintf(stderr, "marginctl: rewriting %s for --model: %s\n", file, strerror(-r));
			return 1;
		}
		upload = tmp;
	}
	http_client_t *cl = connect_api();
	json_t *f = NULL, *b = NULL;
	if (cl == NULL)
		goto out;
	long status = 0;
	char err[1024];
	const char *base = strrchr(file, '/') ? strrchr(file, '/') + 1 : file;
	int r = http_client_upload(cl, upload, base, "batch", &status, &f, err, sizeof(err));
	if (r < 0 || status != 200) {
		fprintf(stderr, "marginctl: uploading %s: %s\n", file,
			r < 0 ? err : http_client_error_text(f, status, err, sizeof(err)));
		goto out;
	}
	fprintf(stderr, "uploaded %s as %s (%lld bytes)\n", file, js(f, "id"), ji(f, "bytes"));
	json_t *req = json_pack("{s:s, s:s, s:s}", "input_file_id", js(f, "id"), "endpoint", endpoint,
				"completion_window", "24h");
	if (req != NULL && json_object_size(meta) > 0)
		json_object_set(req, "metadata", meta);
	b = api(cl, "POST", "/v1/batches", req);
	json_decref(req);
	if (b == NULL)
		goto out;
	printf("%s\n", js(b, "id"));
	fflush(stdout);
	if (ji(json_object_get(b, "x_margin"), "invalid") > 0)
		fprintf(stderr, "note: %lld line(s) were refused and will be in the error file\n",
			ji(json_object_get(b, "x_margin"), "invalid"));
	rc = wait ? wait_batch(cl, js(b, "id"), interval, 0) : 0;
out:
	if (tmp[0] != '\0')
		unlink(tmp);
	json_decref(f);
	json_decref(b);
	http_client_destroy(&cl);
	return rc;
}

int cmd_submit(int argc, char **argv)
{
	http_opts_t o;
	mg_config_t *cfg = NULL;
	json_t *meta = json_object();
	int r = parse_http(&submit_spec, argc, argv, &cfg, &o);
	if (r == 0 && o.file == NULL) {
		mg_settings_usage(&submit_spec, stderr);
		r = 2;
	}
	if (r == 0)
		r = meta == NULL ? -1 : metadata(&o, meta);
	if (r != 0) {
		json_decref(meta);
		mg_config_destroy(&cfg);
		return parse_exit(r);
	}
	int rc = submit(&o, meta);
	json_decref(meta);
	mg_config_destroy(&cfg);
	return rc;
}


/* --- status, cancel, list, results --------------------------------------- */

static void print_batch(http_client_t *c, json_t *b)
{
	json_t *rc = json_object_get(b, "request_counts");
	printf("id:        %s\nstatus:    %s\nendpoint:  %s\n", js(b, "id"), js(b, "status"), js(b, "endpoint"));
	if (js(b, "model")[0])
		printf("model:     %s\n", js(b, "model"));
	printf("requests:  %lld total, %lld completed, %lld failed\n", ji(rc, "total"), ji(rc, "completed"),
	       ji(rc, "failed"));
	json_t *u = json_object_get(b, "usage");
	if (json_is_object(u))
		printf("tokens:    %lld prompt, %lld generated\n", ji(u, "input_tokens"), ji(u, "output_tokens"));
	json_t *xu = json_object_get(json_object_get(b, "x_margin"), "usage");
	batch_cost_t bc;
	char l[40], mg[40];
	if (json_is_object(xu) && ji(xu, "calls") > 0) {
		printf("busy:      %.3f s engine time\n", (double)ji(xu, "busy_ns") / 1e9);
		if (fetch_cost(c, js(b, "id"), &bc) == 0 && bc.calls > 0)
			printf("cost:      %s %s loaded, %s %s marginal (%lld calls; marginctl cost --batch %s)\n",
			       micros_text(bc.loaded, l, sizeof(l)), bc.currency, micros_text(bc.marginal, mg, sizeof(mg)),
			       bc.currency, (long long)bc.calls, js(b, "id"));
	}
	printf("input:     %s\n", js(b, "input_file_id"));
	if (json_is_string(json_object_get(b, "output_file_id")))
		printf("output:    %s\n", js(b, "output_file_id"));
	if (json_is_string(json_object_get(b, "error_file_id")))
		printf("error file: %s\n", js(b, "error_file_id"));
	static const char *const ts[] = { "created_at", "in_progress_at", "finalizing_at", "completed_at",
					  "failed_at", "cancelling_at", "cancelled_at", "expired_at",
					  "expires_at" };
	for (size_t i = 0; i < sizeof(ts) / sizeof(ts[0]); i++) {
		json_t *t = json_object_get(b, ts[i]);
		if (!json_is_integer(t))
			continue;
		char buf[40];
		mg_clock_format_iso8601(buf, sizeof(buf), (int64_t)json_integer_value(t) * MG_NS_PER_S);
		printf("%-10s %s\n", ts[i], buf);
	}
	if (json_array_size(json_object_get(json_object_get(b, "errors"), "data")) > 0) {
		printf("batch errors:\n");
		fflush(stdout);
		size_t i;
		json_t *e;
		json_array_foreach(json_object_get(json_object_get(b, "errors"), "data"), i, e)
			printf("  line %lld: %s\n", ji(e, "line"), js(e, "message"));
	}
}

static int server_status(http_client_t *c, bool json)
{
	long st = 0;
	json_t *ready = NULL;
	char err[512];
	if (http_client_json(c, "GET", "/readyz", NULL, &st, &ready, err, sizeof(err)) < 0) {
		fprintf(stderr, "marginctl: %s (is margind running? --url / $MARGIN_URL)\n", err);
		return 1;
	}
	json_t *models = api(c, "GET", "/v1/models", NULL);
	json_t *list = api(c, "GET", "/v1/batches?limit=100", NULL);
	if (models == NULL || list == NULL) {
		json_decref(ready);
		json_decref(models);
		json_decref(list);
		return 1;
	}
	if (json) {
		json_t *o = json_pack("{s:s, s:O, s:O, s:O}", "url", cli_globals.url, "ready", ready ? ready : json_null(),
				      "models", json_object_get(models, "data"), "batches", json_object_get(list, "data"));
		print_json(o);
		json_decref(o);
	} else {
		printf("server:    %s (%s)\n", cli_globals.url, st == 200 ? "ready" : js(ready, "reason"));
		size_t i;
		json_t *m;
		json_array_foreach(json_object_get(models, "data"), i, m)
			printf("model:     %s (%lld worker%s)\n", js(m, "id"),
			       ji(json_object_get(m, "x_margin"), "workers"),
			       ji(json_object_get(m, "x_margin"), "workers") == 1 ? "" : "s");
		int active = 0;
		json_t *b;
		json_array_foreach(json_object_get(list, "data"), i, b)
			if (!terminal(js(b, "status"))) {
				json_t *rc = json_object_get(b, "request_counts");
				printf("active:    %s %s %lld/%lld\n", js(b, "id"), js(b, "status"),
				       ji(rc, "completed") + ji(rc, "failed"), ji(rc, "total"));
				active++;
			}
		if (active == 0)
			printf("active:    none\n");
	}
	json_decref(ready);
	json_decref(models);
	json_decref(list);
	return 0;
}

int cmd_status(int argc, char **argv)
{
	http_opts_t o;
	mg_config_t *cfg = NULL;
	int r = parse_http(&status_spec, argc, argv, &cfg, &o);
	if (r != 0) {
		mg_config_destroy(&cfg);
		return parse_exit(r);
	}
	bool json = o.json;
	http_client_t *c = connect_api();
	if (c == NULL) {
		mg_config_destroy(&cfg);
		return 1;
	}
	int rc = 1;
	if (o.id == NULL) {
		rc = server_status(c, json);
	} else {
		char path[300];
		snprintf(path, sizeof(path), "/v1/batches/%s", o.id);
		json_t *b = api(c, "GET", path, NULL);
		if (b != NULL) {
			if (json)
				print_json(b);
			else
				print_batch(c, b);
			rc = 0;
		}
		json_decref(b);
	}
	http_client_destroy(&c);
	mg_config_destroy(&cfg);
	return rc;
}

int cmd_cancel(int argc, char **argv)
{
	http_opts_t o;
	mg_config_t *cfg = NULL;
	int r = parse_http(&cancel_spec, argc, argv, &cfg, &o);
	if (r == 0 && o.id == NULL) {
		mg_settings_usage(&cancel_spec, stderr);
		r = 2;
	}
	http_client_t *c = r == 0 ? connect_api() : NULL;
	if (c == NULL) {
		mg_config_destroy(&cfg);
		return r == 0 ? 1 : parse_exit(r);
	}
	bool json = o.json;
	char path[300];
	snprintf(path, sizeof(path), "/v1/batches/%s/cancel", o.id);
	json_t *b = api(c, "POST", path, NULL);
	if (b != NULL) {
		if (json)
			print_json(b);
		else
			printf("%s %s\n", js(b, "id"), js(b, "status"));
	}
	int rc = b ? 0 : 1;
	json_decref(b);
	http_client_destroy(&c);
	mg_config_destroy(&cfg);
	return rc;
}

int cmd_list(int argc, char **argv)
{
	http_opts_t o;
	mg_config_t *cfg = NULL;
	int r = parse_http(&list_spec, argc, argv, &cfg, &o);
	bool json = o.json;
	long limit = (long)o.limit;
	mg_config_destroy(&cfg);
	if (r != 0)
		return parse_exit(r);
	http_client_t *c = connect_api();
	if (c == NULL)
		return 1;
	char path[64];
	snprintf(path, sizeof(path), "/v1/batches?limit=%ld", limit);
	json_t *l = api(c, "GET", path, NULL);
	int rc = l ? 0 : 1;
	if (l != NULL && json) {
		print_json(l);
	} else if (l != NULL) {
		printf("%-30s %-11s %9s %7s %-20s %s\n", "ID", "STATUS", "DONE", "FAILED", "CREATED", "MODEL");
		size_t i;
		json_t *b;
		json_array_foreach(json_object_get(l, "data"), i, b) {
			json_t *rcs = json_object_get(b, "request_counts");
			char done[32], when[40];
			snprintf(done, sizeof(done), "%lld/%lld", ji(rcs, "completed"), ji(rcs, "total"));
			mg_clock_format_iso8601(when, sizeof(when), (int64_t)ji(b, "created_at") * MG_NS_PER_S);
			when[19] = '\0';
			printf("%-30s %-11s %9s %7lld %-20s %s\n", js(b, "id"), js(b, "status"), done,
			       ji(rcs, "failed"), when, js(b, "model"));
		}
	}
	json_decref(l);
	http_client_destroy(&c);
	return rc;
}

static int download(http_client_t *c, const char *file_id, const char *dest)
{
	char path[300], err[1024];
	snprintf(path, sizeof(path), "/v1/files/%s/content", file_id);
	bool to_stdout = strcmp(dest, "-") == 0;
	FILE *out = to_stdout ? stdout : fopen(dest, "w");
	if (out == NULL) {
		fprintf(stderr, "marginctl: %s: %s\n", dest, strerror(errno));
		return 1;
	}
	long status = 0;
	json_t *eb = NULL;
	int r = http_client_download(c, path, out, &status, &eb, err, sizeof(err));
	if (!to_stdout && fclose(out) != 0 && r == 0) {
		snprintf(err, sizeof(err), "%s: %s", dest, strerror(errno));
		r = -EIO;
	}
	if (r == 0 && status != 200) {
		http_client_error_text(eb, status, err, sizeof(err));
		r = -EIO;
	}
	json_decref(eb);
	if (r < 0) {
		fprintf(stderr, "marginctl: downloading %s: %s\n", file_id, err);
		return 1;
	}
	return 0;
}

/* Downloads the batch's output to out and its errors to errs (either NULL). */
static int fetch_results(const char *id, const char *out, const char *errs)
{
	http_client_t *c = connect_api();
	if (c == NULL)
		return 1;
	char path[300];
	snprintf(path, sizeof(path), "/v1/batches/%s", id);
	json_t *b = api(c, "GET", path, NULL);
	int rc = 1;
	if (b == NULL)
		goto out;
	const char *st = js(b, "status");
	if (!terminal(st)) {
		fprintf(stderr, "marginctl: batch %s is %s; its files are written when it ends (marginctl wait %s)\n",
			id, st, id);
		goto out;
	}
	rc = 0;
	if (out != NULL) {
		if (json_is_string(json_object_get(b, "output_file_id"))) {
			rc |= download(c, js(b, "output_file_id"), out);
		} else {
			/* No request succeeded: an empty output, said so. */
			FILE *f = strcmp(out, "-") == 0 ? NULL : fopen(out, "w");
			if (f != NULL)
				fclose(f);
			fprintf(stderr, "marginctl: batch %s has no output (status %s, %lld failed)\n", id, st,
				ji(json_object_get(b, "request_counts"), "failed"));
		}
	}
	if (errs != NULL && json_is_string(json_object_get(b, "error_file_id")))
		rc |= download(c, js(b, "error_file_id"), errs);
	else if (errs != NULL && strcmp(errs, "-") != 0) {
		FILE *f = fopen(errs, "w");
		if (f != NULL)
			fclose(f);
	}
	if (rc == 0 && out != NULL && strcmp(out, "-") != 0)
		fprintf(stderr, "wrote %lld completed request(s) to %s\n",
			ji(json_object_get(b, "request_counts"), "completed"), out);
out:
	json_decref(b);
	http_client_destroy(&c);
	return rc;
}

int cmd_results(int argc, char **argv)
{
	http_opts_t o;
	mg_config_t *cfg = NULL;
	int r = parse_http(&results_spec, argc, argv, &cfg, &o);
	if (r == 0 && (o.id == NULL || (o.out == NULL && o.errs == NULL))) {
		fprintf(stderr, "usage: marginctl results ID -o FILE [--errors FILE]\n");
		r = 2;
	}
	if (r != 0) {
		mg_config_destroy(&cfg);
		return parse_exit(r);
	}
	int rc = fetch_results(o.id, o.out, o.errs);
	mg_config_destroy(&cfg);
	return rc;
}

int cmd_models(int argc, char **argv)
{
	http_opts_t o;
	mg_config_t *cfg = NULL;
	int r = parse_http(&models_spec, argc, argv, &cfg, &o);
	bool json = o.json;
	mg_config_destroy(&cfg);
	if (r != 0)
		return parse_exit(r);
	http_client_t *c = connect_api();
	if (c == NULL)
		return 1;
	json_t *l = api(c, "GET", "/v1/models", NULL);
	if (l != NULL && json) {
		print_json(l);
	} else if (l != NULL) {
		printf("%-32s %8s %8s\n", "MODEL", "WORKERS", "CONTEXT");
		size_t i;
		json_t *m;
		json_array_foreach(json_object_get(l, "data"), i, m) {
			json_t *x = json_object_get(m, "x_margin");
			printf("%-32s %8lld %8lld\n", js(m, "id"), ji(x, "workers"), ji(x, "n_ctx"));
		}
		if (json_array_size(json_object_get(l, "data")) == 0)
			fprintf(stderr, "no worker is connected\n");
	}
	int rc = l ? 0 : 1;
	json_decref(l);
	http_client_destroy(&c);
	return rc;
}
