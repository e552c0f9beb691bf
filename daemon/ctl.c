/* ctl: see ctl.h. */
#include "ctl.h"
#include "lib/mg_clock.h"
#include "storage.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *error_reply(const char *code, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static json_t *error_reply(const char *code, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", msg);
}

static json_t *errno_reply(int r, const char *msg)
{
	const char *code = "internal";
	switch (r) {
	case -EINVAL: code = "invalid_request"; break;
	case -ENOENT: code = "not_found"; break;
	case -EEXIST: code = "conflict"; break;
	case -E2BIG: code = "too_large"; break;
	case -EACCES: code = "forbidden"; break;
	default: break;
	}
	return error_reply(code, "%s", msg);
}

static json_t *ts(int64_t t)
{
	return t > 0 ? json_integer(t) : json_null();
}

static json_t *job_json(sched_t *s, const journal_job_t *j)
{
	sched_job_live_t live;
	sched_job_live(s, j->name, &live);
	char *meta = NULL, *errs = NULL;
	journal_job_texts(sched_journal(s), j->id, &meta, &errs);
	json_t *mj = meta ? json_loads(meta, 0, NULL) : NULL;
	json_t *ej = errs ? json_loads(errs, 0, NULL) : NULL;
	free(meta);
	free(errs);
	int64_t queued = j->n_total - j->n_done - j->n_failed - j->n_cancelled - live.in_flight;
	if (queued < 0)
		queued = 0;
	json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s?, s:o, s:o, s:o, s:o, s:o, s:o,"
			      " s:{s:I, s:I, s:I, s:I, s:I, s:I}, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I},"
			      " s:b, s:o, s:o}",
		"id", j->name, "object", "batch", "endpoint", j->endpoint, "model", j->model,
		"state", mg_job_state_name(j->state), "input_path", j->input_path[0] ? j->input_path : NULL,
		"created_at", ts(j->created_at), "in_progress_at", ts(j->in_progress_at),
		"completed_at", ts(j->completed_at), "failed_at", ts(j->failed_at),
		"cancelling_at", ts(j->cancelling_at), "cancelled_at", ts(j->cancelled_at),
		"counts", "total", (json_int_t)j->n_total, "done", (json_int_t)j->n_done,
		"failed", (json_int_t)j->n_failed, "cancelled", (json_int_t)j->n_cancelled,
		"in_flight", (json_int_t)live.in_flight, "queued", (json_int_t)queued,
		"usage", "calls", (json_int_t)j->usage.calls,
		"prompt_tokens", (json_int_t)j->usage.prompt_tokens,
		"completion_tokens", (json_int_t)j->usage.completion_tokens,
		"busy_ns", (json_int_t)j->usage.busy_ns, "flops", (json_int_t)j->usage.flops,
		"cost_marginal_micros", (json_int_t)j->usage.cost_marginal_micros,
		"cost_loaded_micros", (json_int_t)j->usage.cost_loaded_micros,
		"priority", j->priority > 0,
		"errors", ej ? ej : json_null(), "metadata", mj ? mj : json_null());
	return o;
}

static const char *str_field(json_t *req, const char *key, json_t **ret_err)
{
	json_t *v = json_object_get(req, key);
	if (v == NULL || json_is_null(v))
		return NULL;
	if (!json_is_string(v)) {
		*ret_err = error_reply("invalid_request", "%s: expected a string", key);
		return NULL;
	}
	return json_string_value(v);
}

/* Every command: (sched, request object, now) -> reply object. */
typedef json_t *(*cmd_fn)(sched_t *s, json_t *req, int64_t now);

static json_t *job_by_name(sched_t *s, json_t *req, journal_job_t *job)
{
	json_t *err = NULL;
	const char *id = str_field(req, "id", &err);
	if (err != NULL)
		return err;
	if (id == NULL)
		return error_reply("invalid_request", "id: expected the batch id");
	int r = journal_job_find(sched_journal(s), id, job);
	if (r == -ENOENT)
		return error_reply("not_found", "no batch with id \"%s\"", id);
	if (r < 0)
		return error_reply("internal", "journal: %s", journal_errmsg(sched_journal(s)));
	return NULL;
}

static json_t *cmd_submit(sched_t *s, json_t *req, int64_t now)
{
	json_t *err = NULL;
	const char *id = str_field(req, "id", &err);
	const char *endpoint = err ? NULL : str_field(req, "endpoint", &err);
	const char *path = err ? NULL : str_field(req, "input_path", &err);
	if (err != NULL)
		return err;
	json_t *lines = json_object_get(req, "requests");
	json_t *meta = json_object_get(req, "metadata");
	if (meta != NULL && !json_is_null(meta) && !json_is_object(meta))
		return error_reply("invalid_request", "metadata: expected an object");
	if ((lines != NULL) == (path != NULL))
		return error_reply("invalid_request", "give either requests (an array) or input_path (a JSONL file)");
	char *mtxt = meta && json_is_object(meta) ? json_dumps(meta, JSON_COMPACT) : NULL;
	char name[JOURNAL_NAME_MAX], msg[1024];
	int r = lines ? sched_submit_inline(s, id, endpoint, mtxt, lines, now, name, msg, sizeof(msg))
		      : sched_submit_file(s, id, endpoint, mtxt, path, now, name, msg, sizeof(msg));
	free(mtxt);
	if (r < 0)
		return errno_reply(r, msg);
	journal_job_t job;
	if (journal_job_find(sched_journal(s), name, &job) < 0)
		return error_reply("internal", "journal: %s", journal_errmsg(sched_journal(s)));
	return job_json(s, &job);
}

static json_t *cmd_status(sched_t *s, json_t *req, int64_t now)
{
	journal_job_t job;
	json_t *err = job_by_name(s, req, &job);
	return err ? err : job_json(s, &job);
}

static json_t *cmd_cancel(sched_t *s, json_t *req, int64_t now)
{
	journal_job_t job;
	json_t *err = job_by_name(s, req, &job);
	if (err != NULL)
		return err;
	int r = sched_cancel(s, job.name, now);
	if (r < 0 && r != -EALREADY)
		return error_reply("internal", "cancel failed: %s", strerror(-r));
	if (journal_job_find(sched_journal(s), job.name, &job) < 0)
		return error_reply("internal", "journal: %s", journal_errmsg(sched_journal(s)));
	return job_json(s, &job);
}

struct page {
	json_t *arr;
	bool cancelled;		/* the job was cancelled: queued rows read "cancelled" */
	int64_t last;
};

static int on_row(void *user, const journal_row_t *row)
{
	struct page *p = user;
	const char *state = row->state;
	if (p->cancelled && strcmp(state, "queued") == 0)
		state = "cancelled";
	json_t *e = row->error_code ?
		json_pack("{s:s, s:s}", "code", row->error_code, "message",
			  row->error_message ? row->error_message : "") : json_null();
	json_t *o = json_pack("{s:I, s:s, s:s, s:s?, s:s?, s:s?, s:I, s:I, s:I, s:o}",
		"line", (json_int_t)row->line_no, "custom_id", row->custom_id, "state", state,
		"text", row->output, "finish_reason", row->finish_reason,
		"encoding_format", row->encoding_format,
		"prompt_tokens", (json_int_t)row->prompt_tokens,
		"completion_tokens", (json_int_t)row->completion_tokens,
		"attempts", (json_int_t)row->attempts, "error", e);
	if (o == NULL || json_array_append_new(p->arr, o) < 0)
		return -ENOMEM;
	p->last = row->line_no;
	return 0;
}

static json_t *cmd_results(sched_t *s, json_t *req, int64_t now)
{
	journal_job_t job;
	json_t *err = job_by_name(s, req, &job);
	if (err != NULL)
		return err;
	json_int_t after = 0, limit = CTL_RESULTS_PAGE;
	json_t *a = json_object_get(req, "after"), *l = json_object_get(req, "limit");
	if (a != NULL && (!json_is_integer(a) || json_integer_value(a) < 0))
		return error_reply("invalid_request", "after: expected a line number >= 0");
	if (l != NULL && (!json_is_integer(l) || json_integer_value(l) < 1 ||
			  json_integer_value(l) > CTL_RESULTS_PAGE_MAX))
		return error_reply("invalid_request", "limit: expected 1 to %d", CTL_RESULTS_PAGE_MAX);
	if (a)
		after = json_integer_value(a);
	if (l)
		limit = json_integer_value(l);
	struct page p = { json_array(), job.state == MG_JOB_CANCELLED, 0 };
	if (p.arr == NULL)
		return NULL;
	int n = journal_results_page(sched_journal(s), job.id, after, (int)limit, on_row, &p);
	if (n < 0) {
		json_decref(p.arr);
		return error_reply("internal", "journal: %s", journal_errmsg(sched_journal(s)));
	}
	bool more = n == limit;
	return json_pack("{s:s, s:s, s:o, s:b, s:o}", "id", job.name, "state", mg_job_state_name(job.state),
			 "results", p.arr, "has_more", more,
			 "last_line", n > 0 ? json_integer(p.last) : json_null());
}

struct list {
	sched_t *s;
	json_t *arr;
	int64_t last_id;
};

static int on_job(void *user, const journal_job_t *job)
{
	struct list *l = user;
	json_t *o = job_json(l->s, job);
	if (o == NULL || json_array_append_new(l->arr, o) < 0)
		return -ENOMEM;
	l->last_id = job->id;
	return 0;
}

static json_t *cmd_list(sched_t *s, json_t *req, int64_t now)
{
	json_t *err = NULL;
	const char *after = str_field(req, "after", &err);
	if (err != NULL)
		return err;
	json_t *l = json_object_get(req, "limit");
	json_int_t limit = 20;
	if (l != NULL && (!json_is_integer(l) || json_integer_value(l) < 1 || json_integer_value(l) > 100))
		return error_reply("invalid_request", "limit: expected 1 to 100");
	if (l)
		limit = json_integer_value(l);
	int64_t before = 0;
	if (after != NULL) {
		journal_job_t job;
		if (journal_job_find(sched_journal(s), after, &job) < 0)
			return error_reply("not_found", "after: no batch with id \"%s\"", after);
		before = job.id;
	}
	struct list ls = { s, json_array(), 0 };
	if (ls.arr == NULL)
		return NULL;
	/* One more than asked tells whether there is a next page. */
	int n = journal_jobs_page(sched_journal(s), before, (int)limit + 1, on_job, &ls);
	if (n < 0) {
		json_decref(ls.arr);
		return error_reply("internal", "journal: %s", journal_errmsg(sched_journal(s)));
	}
	bool more = n > limit;
	if (more)
		json_array_remove(ls.arr, json_array_size(ls.arr) - 1);
	return json_pack("{s:o, s:b}", "jobs", ls.arr, "has_more", more);
}

static json_t *cmd_workers(sched_t *s, json_t *req, int64_t now)
{
	json_t *arr = json_array();
	if (arr == NULL)
		return NULL;
	for (const reg_worker_t *w = registry_first(sched_registry(s)); w != NULL; w = w->next) {
		json_t *models = json_array();
		for (size_t i = 0; models && i < w->n_models; i++)
			json_array_append_new(models, json_pack("{s:s, s:s, s:I, s:i, s:i, s:s, s:s, s:I, s:I, s:I, s:s, s:b}",
				"name", w->models[i].name, "arch", w->models[i].arch,
				"n_params", (json_int_t)w->models[i].n_params,
				"n_ctx", (int)w->models[i].n_ctx, "n_vocab", (int)w->models[i].n_vocab,
				"kv_type", w->models[i].kv_type, "arith", w->models[i].arith,
				"kv_bytes", (json_int_t)w->models[i].kv_bytes,
				"weight_bytes", (json_int_t)w->models[i].weight_bytes,
				"embed_dims", (json_int_t)w->models[i].embed_dims,
				"pooling", w->models[i].pooling,
				"embed_truncatable", w->models[i].embed_truncatable));
		json_t *o = json_pack("{s:s, s:s, s:o, s:i, s:i, s:s, s:s, s:s, s:i, s:i, s:I, s:I, s:I, s:I}",
			"id", w->id, "name", w->name, "models", models ? models : json_array(),
			"slots", (int)w->slots, "threads", (int)w->threads,
			"hardware_profile", w->hardware_profile, "build", w->build, "key", w->key,
			"credit", (int)w->credit, "shards_in_flight", (int)w->n_shards,
			"shards_done", (json_int_t)w->shards_done,
			"requests_done", (json_int_t)w->requests_done,
			"connected_ms", (json_int_t)((now - w->joined_ns) / MG_NS_PER_MS),
			"last_seen_ms_ago", (json_int_t)((now - w->last_seen_ns) / MG_NS_PER_MS));
		if (o != NULL)
			json_array_append_new(arr, o);
	}
	return json_pack("{s:o}", "workers", arr);
}

static json_t *cmd_health(sched_t *s, json_t *req, int64_t now)
{
	sched_stats_t st;
	sched_get_stats(s, &st);
	return json_pack("{s:b, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:b}",
		"ok", 1, "version", MARGIN_VERSION, "workers", (json_int_t)st.workers,
		"jobs_active", (json_int_t)st.jobs_active,
		"shards_in_flight", (json_int_t)st.shards_in_flight,
		"requests_in_flight", (json_int_t)st.requests_in_flight,
		"requests_answered", (json_int_t)st.requests_answered,
		"results_ignored", (json_int_t)st.results_ignored, "draining", st.draining,
		"storage_full", storage_full());
}

static const struct {
	const char *name;
	cmd_fn fn;
} commands[] = {
	{ "submit", cmd_submit },
	{ "status", cmd_status },
	{ "results", cmd_results },
	{ "cancel", cmd_cancel },
	{ "list", cmd_list },
	{ "workers", cmd_workers },
	{ "health", cmd_health },
};

static struct {
	const char *prefix;	/* borrowed: static text of the caller */
	ctl_ext_fn fn;
	void *user;
} extensions[CTL_MAX_EXTENSIONS];
static size_t n_extensions;

int ctl_add_extension(const char *prefix, ctl_ext_fn fn, void *user)
{
	if (n_extensions == CTL_MAX_EXTENSIONS)
		return -ENOSPC;
	extensions[n_extensions].prefix = prefix;
	extensions[n_extensions].fn = fn;
	extensions[n_extensions].user = user;
	n_extensions++;
	return 0;
}

char *ctl_handle(sched_t *s, const char *req, size_t len, int64_t now, size_t *ret_len)
{
	json_error_t je;
	json_t *reply = NULL;
	json_t *o = json_loadb(req, len, JSON_REJECT_DUPLICATES, &je);
	if (o == NULL) {
		reply = error_reply("invalid_request", "not valid JSON at line %d column %d: %s",
				    je.line, je.column, je.text);
	} else if (!json_is_object(o) || !json_is_string(json_object_get(o, "cmd"))) {
		reply = error_reply("invalid_request", "expected an object with \"cmd\"");
	} else {
		const char *cmd = json_string_value(json_object_get(o, "cmd"));
		for (size_t i = 0; i < n_extensions && reply == NULL; i++)
			if (strncmp(cmd, extensions[i].prefix, strlen(extensions[i].prefix)) == 0) {
				int r = extensions[i].fn(extensions[i].user, s, cmd, o, now, &reply);
				if (r < 0 || reply == NULL) {
					json_decref(reply);
					reply = error_reply("internal", "%s failed: %s", cmd, strerror(r < 0 ? -r : EIO));
				}
			}
		for (size_t i = 0; reply == NULL && i < sizeof(commands) / sizeof(commands[0]); i++)
			if (strcmp(cmd, commands[i].name) == 0) {
				reply = commands[i].fn(s, o, now);
				if (reply == NULL)
					reply = error_reply("internal", "out of memory");
				break;
			}
		if (reply == NULL)
			reply = error_reply("unknown_command", "unknown command \"%s\" (try submit, status, results, cancel, list, workers, health)",
					    cmd);
	}
	json_decref(o);
	char *text = reply ? json_dumps(reply, JSON_COMPACT) : NULL;
	json_decref(reply);
	if (text != NULL && ret_len != NULL)
		*ret_len = strlen(text);
	return text;
}
