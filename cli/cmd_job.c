/* marginctl job: jobs through a margind's control socket on this host
 * (ipc://STATE_DIR/ctl.sock, JSON requests; see docs/control.md).
 *
 *   marginctl job [--state-dir DIR | --ctl ENDPOINT] [--timeout DUR] SUBCOMMAND ...
 *     submit FILE [--id ID] [--endpoint URL] [--inline] [--metadata JSON]
 *     status ID | cancel ID
 *     wait ID [--max DUR]            until completed/failed/cancelled (exit 0 only if completed)
 *     results ID [--after LINE] [--limit N]   one JSON object per line, in line order
 *     list [--limit N] | workers | health
 *     raw JSON                       send a request as is, print the reply
 *
 * The state directory comes from --state-dir, $MARGIN_STATE_DIR, or
 * /var/lib/margin. Replies are printed as one line of JSON; an error reply
 * goes to stderr with exit status 1. A job's "usage" (status, wait) gets
 * the currency of its costs from the ledger in the state directory (not
 * with --ctl: no state directory). */
#include "cli.h"
#include "lib/mg_clock.h"
#include "lib/mg_jobstate.h"
#include "lib/mg_settings.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

typedef struct client {
	void *ctx;		/* owned */
	void *sock;		/* owned: DEALER */
	char endpoint[PATH_MAX + 8];
	char state_dir[PATH_MAX];	/* "" with --ctl */
	int timeout_ms;
} client_t;

/* The options before the subcommand. */
typedef struct job_opts {
	const char *state_dir, *ctl;	/* borrowed from the config */
	int64_t timeout_ns;
} job_opts_t;

#define JOB(field) MG_SETTING_AT(job_opts_t, field)
static const mg_setting_t job_settings[] = {
	{ .flag = "state-dir", .section = "job", .key = "state_dir", .arg = "DIR", .excludes = "ctl",
	  .help = "margind's state directory (ipc://DIR/ctl.sock)", JOB(state_dir) },
	{ .flag = "ctl", .section = "job", .key = "ctl", .arg = "ENDPOINT",
	  .help = "margind's control endpoint (default $MARGIN_CTL)", JOB(ctl) },
	{ .flag = "timeout", .section = "job", .key = "timeout", .type = MG_SETTING_DURATION, .def = "30s",
	  .lo = MG_NS_PER_MS, .hi = 86400 * MG_NS_PER_S, .arg = "DUR", .help = "how long to wait for a reply",
	  JOB(timeout_ns) },
};

static const mg_settings_spec_t job_spec = {
	.prog = "marginctl job",
	.synopsis = "[--state-dir DIR | --ctl ENDPOINT] [--timeout DUR] SUBCOMMAND ...\n",
	.epilog = "subcommands:\n"
		  "  submit FILE [--id ID] [--endpoint URL] [--inline] [--metadata JSON]\n"
		  "                       FILE is a JSONL batch input; margind reads it from its path\n"
		  "                       (--inline sends the lines in the request instead)\n"
		  "  status ID            the job's state and counts\n"
		  "  wait ID [--max DUR]  poll until it ends; exit 0 only when it completed\n"
		  "  results ID [--after LINE] [--limit N]  outputs, one JSON object per line\n"
		  "  cancel ID\n"
		  "  list [--limit N]     newest first\n"
		  "  workers | health\n"
		  "  raw JSON             send a control request as is\n"
		  "The state directory defaults to $MARGIN_STATE_DIR or /var/lib/margin.\n",
	.no_config = true,
	.settings = job_settings,
	.n = sizeof(job_settings) / sizeof(job_settings[0]),
};

static void client_close(client_t *c)
{
	if (c->sock)
		zmq_close(c->sock);
	if (c->ctx)
		zmq_ctx_term(c->ctx);
	c->sock = c->ctx = NULL;
}

static int client_open(client_t *c, const char *state_dir, const char *ctl, int timeout_ms)
{
	memset(c, 0, sizeof(*c));
	c->timeout_ms = timeout_ms;
	if (ctl != NULL) {
		snprintf(c->endpoint, sizeof(c->endpoint), "%s", ctl);
	} else {
		if (state_dir == NULL)
			state_dir = getenv("MARGIN_STATE_DIR");
		if (state_dir == NULL || *state_dir == '\0')
			state_dir = "/var/lib/margin";
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "%s/ctl.sock", state_dir);
		struct stat st;
		if (stat(path, &st) < 0) {
			fprintf(stderr, "marginctl job: %s: %s (is margind running with --state-dir %s?)\n",
				path, strerror(errno), state_dir);
			return -errno;
		}
		snprintf(c->endpoint, sizeof(c->endpoint), "ipc://%s", path);
		snprintf(c->state_dir, sizeof(c->state_dir), "%s", state_dir);
	}
	c->ctx = zmq_ctx_new();
	if (c->ctx == NULL)
		return -ENOMEM;
	c->sock = zmq_socket(c->ctx, ZMQ_DEALER);
	int linger = 0;
	if (c->sock == NULL || zmq_setsockopt(c->sock, ZMQ_LINGER, &linger, sizeof(linger)) < 0 ||
	    zmq_setsockopt(c->sock, ZMQ_RCVTIMEO, &c->timeout_ms, sizeof(c->timeout_ms)) < 0 ||
	    zmq_connect(c->sock, c->endpoint) < 0) {
		fprintf(stderr, "marginctl job: %s: %s\n", c->endpoint, zmq_strerror(zmq_errno()));
		client_close(c);
		return -EIO;
	}
	return 0;
}

/* Sends req (consumed) and returns the reply object (caller decrefs), or
 * NULL with the reason on stderr. */
static json_t *call(client_t *c, json_t *req)
{
	char *txt = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	if (txt == NULL) {
		fprintf(stderr, "marginctl job: out of memory\n");
		return NULL;
	}
	int r = zmq_send(c->sock, txt, strlen(txt), 0);
	free(txt);
	if (r < 0) {
		fprintf(stderr, "marginctl job: sending to %s: %s\n", c->endpoint, zmq_strerror(zmq_errno()));
		return NULL;
	}
	zmq_msg_t m;
	zmq_msg_init(&m);
	if (zmq_msg_recv(&m, c->sock, 0) < 0) {
		int e = zmq_errno();
		zmq_msg_close(&m);
		if (e == EAGAIN)
			fprintf(stderr, "marginctl job: no answer from margind at %s within %d s (is it running?)\n",
				c->endpoint, c->timeout_ms / 1000);
		else
			fprintf(stderr, "marginctl job: %s: %s\n", c->endpoint, zmq_strerror(e));
		return NULL;
	}
	json_error_t je;
	json_t *reply = json_loadb(zmq_msg_data(&m), zmq_msg_size(&m), 0, &je);
	zmq_msg_close(&m);
	if (reply == NULL)
		fprintf(stderr, "marginctl job: the reply is not JSON: %s\n", je.text);
	return reply;
}

/* 0 when reply is not an error reply; else prints it and returns 1. */
static int check(json_t *reply)
{
	json_t *e = json_object_get(reply, "error");
	if (e == NULL)
		return 0;
	fprintf(stderr, "marginctl job: %s: %s\n", json_string_value(json_object_get(e, "code")),
		json_string_value(json_object_get(e, "message")));
	return 1;
}

static int print_reply(json_t *reply)
{
	if (reply == NULL)
		return 1;
	int rc = check(reply);
	if (rc == 0) {
		char *t = json_dumps(reply, JSON_COMPACT);
		if (t)
			puts(t);
		free(t);
	}
	json_decref(reply);
	return rc;
}

/* Adds "currency" to a job reply's "usage": its cost sums add up the
 * costs of its calls as booked, each in the currency of the hardware
 * profile that priced it (ledger.currency). One currency: its code. Calls
 * in several: null, and "currencies" lists them (the sums then add
 * different money; marginctl cost converts). No ledger to read (--ctl, or
 * no call booked yet): nothing added. */
static void add_currency(const client_t *c, json_t *reply)
{
	json_t *u = json_object_get(reply, "usage");
	const char *job = json_string_value(json_object_get(reply, "id"));
	if (!json_is_object(u) || job == NULL || c->state_dir[0] == '\0' ||
	    json_integer_value(json_object_get(u, "calls")) <= 0)
		return;
	char path[PATH_MAX + 16];
	snprintf(path, sizeof(path), "%s/margin.db", c->state_dir);
	sqlite3 *db = NULL;
	sqlite3_stmt *q = NULL;
	json_t *cur = json_array();
	if (cur == NULL || sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "SELECT DISTINCT currency FROM ledger WHERE job = ?1 AND currency <> '' ORDER BY 1",
			       -1, &q, NULL) != SQLITE_OK)
		goto out;
	sqlite3_busy_timeout(db, 2000);
	sqlite3_bind_text(q, 1, job, -1, SQLITE_STATIC);
	while (sqlite3_step(q) == SQLITE_ROW)
		json_array_append_new(cur, json_string((const char *)sqlite3_column_text(q, 0)));
	if (json_array_size(cur) == 1) {
		json_object_set(u, "currency", json_array_get(cur, 0));
	} else if (json_array_size(cur) > 1) {
		json_object_set_new(u, "currency", json_null());
		json_object_set(u, "currencies", cur);
	}
out:
	json_decref(cur);
	sqlite3_finalize(q);
	sqlite3_close(db);
}

static json_t *cmd_req(const char *cmd, const char *id)
{
	return id ? json_pack("{s:s, s:s}", "cmd", cmd, "id", id) : json_pack("{s:s}", "cmd", cmd);
}

typedef struct submit_opts {
	const char *file, *id, *endpoint, *meta;	/* borrowed from the config */
	bool inl;
} submit_opts_t;

#define SUB(field) MG_SETTING_AT(submit_opts_t, field)
static const mg_setting_t submit_settings[] = {
	{ .section = "submit", .key = "file", .arg = "FILE", .flags = MG_SETTING_OPERAND, SUB(file) },
	{ .flag = "id", .section = "submit", .key = "id", .arg = "ID", .help = "the batch's ID",
	  SUB(id) },
	{ .flag = "endpoint", .section = "submit", .key = "endpoint", .arg = "URL",
	  .help = "the endpoint recorded with the batch", SUB(endpoint) },
	{ .flag = "inline", .section = "submit", .key = "inline", .type = MG_SETTING_BOOL, .set = "yes",
	  .help = "send the lines in the request instead of FILE's path", SUB(inl) },
	{ .flag = "metadata", .section = "submit", .key = "metadata", .arg = "JSON",
	  .help = "a JSON object kept with the batch", SUB(meta) },
};

static const mg_settings_spec_t submit_spec = {
	.prog = "marginctl job submit",
	.synopsis = "FILE [--id ID] [--endpoint URL] [--inline] [--metadata JSON]\n",
	.intro = "FILE is a JSONL batch input; margind reads it from its path.\n",
	.no_config = true,
	.settings = submit_settings,
	.n = sizeof(submit_settings) / sizeof(submit_settings[0]),
};

/* The flags of submit into o (strings borrowed from cfg). 0; 1 after
 * --help; 2 for bad usage and 1 when out of memory, said. */
static int parse_submit(int argc, char **argv, mg_config_t *cfg, submit_opts_t *o)
{
	*o = (submit_opts_t){ 0 };
	int rc = mg_settings_parse_into(&submit_spec, cfg, argc, argv, o);
	if (rc != 0)
		return rc == 1 ? 1 : rc == -EINVAL ? 2 : -1;
	if (o->file == NULL) {
		fprintf(stderr, "marginctl job submit: missing FILE\n");
		return 2;
	}
	return 0;
}

static int do_submit(client_t *c, const submit_opts_t *so)
{
	const char *file = so->file, *id = so->id, *endpoint = so->endpoint, *meta = so->meta;
	bool inl = so->inl;
	json_t *req = json_pack("{s:s}", "cmd", "submit");
	if (id)
		json_object_set_new(req, "id", json_string(id));
	if (endpoint)
		json_object_set_new(req, "endpoint", json_string(endpoint));
	if (meta) {
		json_error_t je;
		json_t *m = json_loads(meta, 0, &je);
		if (!json_is_object(m)) {
			fprintf(stderr, "marginctl job submit: --metadata: expected a JSON object\n");
			json_decref(m);
			json_decref(req);
			return 2;
		}
		json_object_set_new(req, "metadata", m);
	}
	if (inl) {
		FILE *f = fopen(file, "r");
		if (f == NULL) {
			fprintf(stderr, "marginctl job submit: %s: %s\n", file, strerror(errno));
			json_decref(req);
			return 1;
		}
		json_t *arr = json_array();
		char *line = NULL;
		size_t cap = 0;
		ssize_t n;
		long lno = 0;
		int rc = 0;
		while ((n = getline(&line, &cap, f)) > 0) {
			lno++;
			while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
				line[--n] = '\0';
			if (n == 0)
				continue;
			json_error_t je;
			json_t *o = json_loadb(line, (size_t)n, 0, &je);
			if (o == NULL) {
				fprintf(stderr, "marginctl job submit: %s:%ld: not JSON: %s\n", file, lno, je.text);
				rc = 1;
				break;
			}
			json_array_append_new(arr, o);
		}
		free(line);
		fclose(f);
		if (rc) {
			json_decref(arr);
			json_decref(req);
			return rc;
		}
		json_object_set_new(req, "requests", arr);
	} else {
		char abs[PATH_MAX];
		if (realpath(file, abs) == NULL) {
			fprintf(stderr, "marginctl job submit: %s: %s\n", file, strerror(errno));
			json_decref(req);
			return 1;
		}
		json_object_set_new(req, "input_path", json_string(abs));
	}
	return print_reply(call(c, req));
}

static int do_wait(client_t *c, const char *id, double max_s)
{
	int64_t deadline = max_s > 0 ? mg_clock_now_ns() + (int64_t)(max_s * 1e9) : INT64_MAX;
	bool tty = isatty(2);
	for (;;) {
		json_t *r = call(c, cmd_req("status", id));
		if (r == NULL)
			return 1;
		if (check(r)) {
			json_decref(r);
			return 1;
		}
		const char *state = json_string_value(json_object_get(r, "state"));
		json_t *cn = json_object_get(r, "counts");
		long long total = json_integer_value(json_object_get(cn, "total"));
		long long done = json_integer_value(json_object_get(cn, "done"));
		long long failed = json_integer_value(json_object_get(cn, "failed"));
		if (tty)
			fprintf(stderr, "\r%s: %s %lld/%lld done, %lld failed   ", id, state, done, total, failed);
		if (mg_job_state_name_terminal(state)) {
			if (tty)
				fputc('\n', stderr);
			add_currency(c, r);
			char *t = json_dumps(r, JSON_COMPACT);
			if (t)
				puts(t);
			free(t);
			int rc = mg_job_state_parse(state) == MG_JOB_COMPLETED ? 0 : 1;
			json_decref(r);
			return rc;
		}
		json_decref(r);
		if (mg_clock_now_ns() >= deadline) {
			fprintf(stderr, "%smarginctl job wait: %s still %s after %.0f s\n", tty ? "\n" : "",
				id, state, max_s);
			return 1;
		}
		mg_clock_sleep_ns(200 * MG_NS_PER_MS);
	}
}

static int do_results(client_t *c, const char *id, long long after, long long limit)
{
	long long printed = 0;
	for (;;) {
		long long page = 1000;
		if (limit > 0 && limit - printed < page)
			page = limit - printed;
		if (page <= 0)
			return 0;
		json_t *req = json_pack("{s:s, s:s, s:I, s:I}", "cmd", "results", "id", id,
					"after", (json_int_t)after, "limit", (json_int_t)page);
		json_t *r = call(c, req);
		if (r == NULL)
			return 1;
		if (check(r)) {
			json_decref(r);
			return 1;
		}
		json_t *arr = json_object_get(r, "results"), *o;
		size_t i;
		json_array_foreach(arr, i, o) {
			char *t = json_dumps(o, JSON_COMPACT);
			if (t)
				puts(t);
			free(t);
			printed++;
		}
		bool more = json_is_true(json_object_get(r, "has_more"));
		json_t *last = json_object_get(r, "last_line");
		if (json_is_integer(last))
			after = json_integer_value(last);
		json_decref(r);
		if (!more)
			return 0;
	}
}

/* The options of status, cancel, wait, results, list, workers, health
 * and raw: each subcommand's table picks its rows. */
typedef struct sub_opts {
	const char *id, *json;	/* borrowed from the config */
	int64_t max_ns, after, limit;
} sub_opts_t;

#define SUBOPT(field) MG_SETTING_AT(sub_opts_t, field)
#define ROW_ID { .section = "sub", .key = "id", .arg = "ID", .flags = MG_SETTING_OPERAND, SUBOPT(id) }
#define ROW_LIMIT                                                                                   \
	{ .flag = "limit", .section = "sub", .key = "limit", .type = MG_SETTING_INT, .lo = 0,        \
	  .hi = INT32_MAX, .def = "0", .arg = "N", .help = "at most N (0: the server's default)", \
	  SUBOPT(limit) }
static const mg_setting_t id_settings[] = { ROW_ID };
static const mg_setting_t none_settings[] = { MG_SETTING_TITLE("no options") };
static const mg_setting_t wait_settings[] = {
	ROW_ID,
	{ .flag = "max", .section = "sub", .key = "max", .type = MG_SETTING_DURATION, .def = "0", .lo = 0,
	  .hi = 365 * 86400 * MG_NS_PER_S, .arg = "DUR", .help = "give up after this long (0: never)",
	  SUBOPT(max_ns) },
};
static const mg_setting_t results_settings[] = {
	ROW_ID,
	{ .flag = "after", .section = "sub", .key = "after", .type = MG_SETTING_INT, .lo = 0, .hi = INT64_MAX,
	  .def = "0", .arg = "LINE", .help = "start after this input line", SUBOPT(after) },
	ROW_LIMIT,
};
static const mg_setting_t list_settings[] = { ROW_LIMIT };
static const mg_setting_t raw_settings[] = {
	{ .section = "sub", .key = "json", .arg = "JSON", .flags = MG_SETTING_OPERAND, SUBOPT(json) },
};

#define SUBSPEC(name, syn, table) \
	{ .prog = "marginctl job " name, .synopsis = syn, .no_config = true, .settings = table, \
	  .n = sizeof(table) / sizeof(table[0]) }
static const mg_settings_spec_t sub_specs[] = {
	SUBSPEC("status", "ID\n", id_settings),
	SUBSPEC("cancel", "ID\n", id_settings),
	SUBSPEC("wait", "ID [--max DUR]\n", wait_settings),
	SUBSPEC("results", "ID [--after LINE] [--limit N]\n", results_settings),
	SUBSPEC("list", "[--limit N]\n", list_settings),
	SUBSPEC("workers", "\n", none_settings),
	SUBSPEC("health", "\n", none_settings),
	SUBSPEC("raw", "JSON\n", raw_settings),
};

/* The subcommand's options into o (strings borrowed from cfg). 0; 1 after
 * --help; 2 for bad usage (said). */
static int parse_sub(const char *sub, int argc, char **argv, mg_config_t *cfg, sub_opts_t *o)
{
	const mg_settings_spec_t *spec = NULL;
	for (size_t k = 0; k < sizeof(sub_specs) / sizeof(sub_specs[0]); k++)
		if (strcmp(sub_specs[k].prog + strlen("marginctl job "), sub) == 0)
			spec = &sub_specs[k];
	if (spec == NULL) {
		fprintf(stderr, "marginctl job: unknown subcommand '%s'\n", sub);
		mg_settings_usage(&job_spec, stderr);
		return 2;
	}
	*o = (sub_opts_t){ 0 };
	int r = mg_settings_parse_into(spec, cfg, argc, argv, o);
	if (r != 0)
		return r == 1 ? 1 : r == -EINVAL ? 2 : -1;
	if (spec->settings[0].key != NULL && strcmp(spec->settings[0].key, "id") == 0 && o->id == NULL) {
		fprintf(stderr, "marginctl job %s: missing the job ID\n", sub);
		return 2;
	}
	return 0;
}

/* Parses "job [OPTIONS] SUBCOMMAND [ARGS]" into jo, and the subcommand's
 * options into so or to (submit). 0; 1 after --help; 2 bad usage; -1 out of
 * memory. *ret_sub: the subcommand. */
static int parse_job(int argc, char **argv, mg_config_t *cfg, job_opts_t *jo, sub_opts_t *so, submit_opts_t *to,
		     const char **ret_sub)
{
	int next = argc;
	*jo = (job_opts_t){ 0 };
	int r = mg_settings_parse_head_into(&job_spec, cfg, argc, argv, jo, &next);
	if (r != 0)
		return r == 1 ? 1 : r == -EINVAL ? 2 : -1;
	if (next >= argc) {
		mg_settings_usage(&job_spec, stderr);
		return 2;
	}
	*ret_sub = argv[next];
	if (strcmp(argv[next], "submit") == 0)
		return parse_submit(argc - next, argv + next, cfg, to);
	return parse_sub(argv[next], argc - next, argv + next, cfg, so);
}

int cmd_job(int argc, char **argv)
{
	job_opts_t jo;
	sub_opts_t o;
	submit_opts_t so;
	const char *sub = NULL;
	mg_config_t *cfg = mg_config_new();
	int r = cfg == NULL ? -1 : parse_job(argc, argv, cfg, &jo, &o, &so, &sub);
	if (r != 0) {
		if (r < 0)
			fprintf(stderr, "marginctl job: out of memory\n");
		mg_config_destroy(&cfg);
		return r == 1 ? 0 : r < 0 ? 1 : r;
	}
	/* $MARGIN_CTL unless --state-dir or --ctl says otherwise */
	const char *ctl = jo.ctl ? jo.ctl : jo.state_dir ? NULL : getenv("MARGIN_CTL");
	if (ctl != NULL && *ctl == '\0')
		ctl = NULL;
	client_t c;
	if (client_open(&c, jo.state_dir, ctl, (int)(jo.timeout_ns / MG_NS_PER_MS)) < 0) {
		mg_config_destroy(&cfg);
		return 1;
	}
	int rc;
	if (strcmp(sub, "submit") == 0) {
		rc = do_submit(&c, &so);
	} else if (strcmp(sub, "wait") == 0) {
		rc = do_wait(&c, o.id, (double)o.max_ns / MG_NS_PER_S);
	} else if (strcmp(sub, "results") == 0) {
		rc = do_results(&c, o.id, o.after, o.limit);
	} else if (strcmp(sub, "list") == 0) {
		json_t *req = cmd_req("list", NULL);
		if (o.limit > 0)
			json_object_set_new(req, "limit", json_integer(o.limit));
		rc = print_reply(call(&c, req));
	} else if (strcmp(sub, "raw") == 0) {
		json_error_t je;
		json_t *req = o.json ? json_loads(o.json, 0, &je) : NULL;
		if (req == NULL) {
			fprintf(stderr, "marginctl job raw: expected a JSON request\n");
			rc = 2;
		} else {
			rc = print_reply(call(&c, req));
		}
	} else {
		json_t *reply = call(&c, cmd_req(sub, o.id));
		if (reply != NULL && strcmp(sub, "status") == 0 && json_object_get(reply, "error") == NULL)
			add_currency(&c, reply);
		rc = print_reply(reply);
	}
	client_close(&c);
	mg_config_destroy(&cfg);
	return rc;
}
