/* api_batches: the OpenAI Batches endpoints on top of the core's jobs.
 *
 * The core (sched + journal) runs a batch as a job; this module adds what
 * the OpenAI API has and the scheduler does not need, in a sidecar
 * STATE_DIR/batches/<id>.json written atomically:
 *
 *   {"id","input_file_id","endpoint","completion_window","created_at","expires_at",
 *    "invalid":N,"not_jsonl":bool,"input_path","rejects",
 *    "output_file_id","error_file_id","finalized_at","expired_at","usage",
 *    "rejects_shown" (a failed batch: the first refused lines, its copies gone)}
 *
 * Creating a batch checks every line first (batchfmt_check_line: the
 * scheduler's own rules plus endpoint, model served, one model per batch,
 * max_tokens within the context, unique custom_id). Refused lines go to
 * <id>.rejects.jsonl with their line number; the job gets a hard link of
 * the input (no refused line) or a copy with the refused lines blanked, so
 * line numbers stay the physical ones and good lines still run. A file
 * whose first line is not a JSON object is not JSONL: the job gets it as
 * it is and fails validation with the core's message.
 *
 * Status: the job's state, with `finalizing` between the last answer and
 * the output and error files being written by the finalizer thread (and
 * `cancelling` until a cancelled batch's files are written). The finalizer
 * also expires batches past their completion window (cancel, then
 * `expired`). Output files get ids derived from the batch id, so writing
 * them again after a crash replaces rather than duplicates them.
 *
 * Threads: handlers run in HTTP threads; the finalizer is one more thread
 * and the only one that rewrites a sidecar. The lock guards the pending
 * list. */
#include "api.h"
#include "batchfmt.h"
#include "htab.h"
#include "lib/mg_jobstate.h"
#include "ingest.h"
#include "lib/mg_clock.h"
#include "lib/mg_hash.h"
#include "lib/mg_log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SYNC_PREFIX "sync_"	/* synchronous completions: jobs, not batches */
#define ERRORS_SHOWN 20		/* refused lines copied into a failed batch's errors */
#define RESULTS_PAGE 1000

struct api_batches {
	http_t *h;			/* borrowed */
	mtx_t lock;
	cnd_t cond;
	thrd_t thread;
	bool started, stop;
	char **pending;			/* owned: ids to finalize or watch for expiry */
	size_t n_pending, cap_pending;
};

static int64_t now_s(void)
{
	return mg_clock_wall_ns() / MG_NS_PER_S;
}

/* --- sidecars ---------------------------------------------------------- */

static void sidecar_path(const http_t *h, const char *id, const char *suffix, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s%s", h->batches_dir, id, suffix);
}

/* New reference or NULL (absent or unreadable). */
static json_t *sidecar_load(const http_t *h, const char *id)
{
	char path[4200];
	sidecar_path(h, id, ".json", path, sizeof(path));
	json_t *o = json_load_file(path, 0, NULL);
	if (o != NULL && !json_is_object(o)) {
		json_decref(o);
		o = NULL;
	}
	return o;
}

static int sidecar_save(const http_t *h, const char *id, json_t *o)
{
	char path[4200];
	sidecar_path(h, id, ".json", path, sizeof(path));
	char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (text == NULL)
		return -ENOMEM;
	int r = http_write_atomic(path, text, strlen(text));
	free(text);
	return r;
}

static int64_t jint(json_t *o, const char *key)
{
	return (int64_t)json_integer_value(json_object_get(o, key));
}

static const char *jstr(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

/* o's string member key, or def when it is absent or not a string. */
static const char *jstr_or(json_t *o, const char *key, const char *def)
{
	const char *s = jstr(o, key);
	return s != NULL ? s : def;
}

/* --- the pending list and the finalizer -------------------------------- */

static void pending_add(api_batches_t *b, const char *id)
{
	mtx_lock(&b->lock);
	for (size_t i = 0; i < b->n_pending; i++)
		if (strcmp(b->pending[i], id) == 0)
			goto out;
	if (b->n_pending == b->cap_pending) {
		size_t nc = b->cap_pending ? b->cap_pending * 2 : 16;
		char **np = realloc(b->pending, nc * sizeof(*np));
		if (np == NULL)
			goto out;
		b->pending = np;
		b->cap_pending = nc;
	}
	if ((b->pending[b->n_pending] = strdup(id)) != NULL)
		b->n_pending++;
out:
	mtx_unlock(&b->lock);
}

static void pending_remove(api_batches_t *b, const char *id)
{
	mtx_lock(&b->lock);
	for (size_t i = 0; i < b->n_pending; i++)
		if (strcmp(b->pending[i], id) == 0) {
			free(b->pending[i]);
			b->pending[i] = b->pending[--b->n_pending];
			break;
		}
	mtx_unlock(&b->lock);
}

static void kick(api_batches_t *b, const char *id)
{
	pending_add(b, id);
	mtx_lock(&b->lock);
	cnd_signal(&b->cond);
	mtx_unlock(&b->lock);
}

/* One reject record of <id>.rejects.jsonl: {"line","custom_id","message"}. */
typedef struct reject_reader {
	FILE *f;
	char *buf;
	size_t cap;
	json_t *cur;			/* owned: the next record, NULL at the end */
} reject_reader_t;

static void rejects_next(reject_reader_t *rr)
{
	json_decref(rr->cur);
	rr->cur = NULL;
	if (rr->f == NULL)
		return;
	ssize_t n;
	while ((n = getline(&rr->buf, &rr->cap, rr->f)) > 0) {
		rr->cur = json_loadb(rr->buf, (size_t)n, 0, NULL);
		if (json_is_object(rr->cur))
			return;
		json_decref(rr->cur);
		rr->cur = NULL;
	}
}

static void rejects_close(reject_reader_t *rr)
{
	if (rr->f != NULL)
		fclose(rr->f);
	free(rr->buf);
	json_decref(rr->cur);
	memset(rr, 0, sizeof(*rr));
}

typedef struct out_file {
	char tmp[4200];
	FILE *f;
	uint64_t lines;
} out_file_t;

static int out_open(http_t *h, out_file_t *o)
{
	char id[64];
	http_random_id(".out-", id, sizeof(id));
	snprintf(o->tmp, sizeof(o->tmp), "%s/%s", h->files_dir, id);
	o->f = fopen(o->tmp, "wxe");
	o->lines = 0;
	return o->f ? 0 : -errno;
}

static int out_write(out_file_t *o, const char *line, size_t len)
{
	if (fwrite(line, 1, len, o->f) != len)
		return -EIO;
	o->lines++;
	return 0;
}

/* Flushes, fsyncs and moves the file into the store as id (NULL id and
 * the file removed when it has no line). */
static int out_commit(http_t *h, out_file_t *o, const char *id, const char *filename, bool *ret_kept)
{
	*ret_kept = false;
	int r = 0;
	if (fflush(o->f) != 0 || fsync(fileno(o->f)) < 0)
		r = -errno;
	if (fclose(o->f) != 0 && r == 0)
		r = -errno;
	o->f = NULL;
	if (r == 0 && o->lines > 0) {
		r = api_files_adopt(h, o->tmp, id, filename, "batch_output");
		*ret_kept = r == 0;
	}
	if (!*ret_kept)
		unlink(o->tmp);
	return r;
}

static void out_abort(out_file_t *o)
{
	if (o->f != NULL)
		fclose(o->f);
	o->f = NULL;
	unlink(o->tmp);
}

/* The job's input copy is no longer needed once it is finished (only
 * active jobs are recovered); the refusals are in the error file (or the
 * sidecar) now. */
static void drop_copies(json_t *side)
{
	const char *in = jstr(side, "input_path");
	const char *rej = jstr(side, "rejects");
	if (in != NULL)
		unlink(in);
	if (rej != NULL)
		unlink(rej);
}

static void add_rejects(json_t *errors, json_t *side);

/* Writes the output and error files of a finished job, merging the rows
 * the core answered with the lines refused at creation, in line order. */
static int finalize(api_batches_t *b, const char *id, json_t *job, json_t *side, char *err,
		    size_t errlen)
{
	http_t *h = b->h;
	const char *state = jstr(job, "state");
	int64_t t = now_s();
	if (mg_job_state_parse(state) == MG_JOB_FAILED) {
		/* Nothing runs and nothing can be downloaded: the errors shown
		 * move into the sidecar, the private copies go. */
		json_t *shown = json_array();
		add_rejects(shown, side);
		json_object_set_new(side, "rejects_shown", shown);
		json_object_set_new(side, "finalized_at", json_integer(t));
		int r = sidecar_save(h, id, side);
		if (r < 0)
			return r;
		drop_copies(side);
		return 0;
	}
	out_file_t out = { 0 }, errf = { 0 };
	reject_reader_t rr = { 0 };
	json_t *page = NULL;
	int r;
	if ((r = out_open(h, &out)) < 0 || (r = out_open(h, &errf)) < 0) {
		snprintf(err, errlen, "cannot create a file in %.300s: %s", h->files_dir, strerror(-r));
		goto fail;
	}
	const char *rej = jstr(side, "rejects");
	if (rej != NULL && (rr.f = fopen(rej, "re")) == NULL && errno != ENOENT) {
		r = -errno;
		snprintf(err, errlen, "cannot read %s: %s", rej, strerror(errno));
		goto fail;
	}
	rejects_next(&rr);
	bool expired = jint(side, "expired_at") > 0;
	int64_t created = jint(job, "completed_at");
	if (created <= 0)
		created = jint(job, "cancelled_at");
	if (created <= 0)
		created = t;
	int64_t ptok = 0, ctok = 0, after = 0;
	size_t pi = 0;			/* next row of page */
	bool more = true;
	batchfmt_result_t base = { .batch_id = id, .endpoint = jstr(job, "endpoint"),
				   .model = jstr(job, "model"), .created = created,
				   .expired = expired };
	for (;;) {
		if (more && pi >= json_array_size(json_object_get(page, "results"))) {
			json_decref(page);
			page = NULL;
			pi = 0;
			r = http_call_quiet(h, "results",
					    json_pack("{s:s, s:I, s:i}", "id", id, "after", (json_int_t)after,
						      "limit", RESULTS_PAGE),
					    &page, err, errlen);
			if (r < 0)
				goto fail;
			more = json_is_true(json_object_get(page, "has_more"));
			if (json_array_size(json_object_get(page, "results")) == 0)
				more = false;
		}
		json_t *row = json_array_get(json_object_get(page, "results"), pi);
		if (row == NULL && rr.cur == NULL)
			break;
		batchfmt_result_t x = base;
		int64_t rline = row ? jint(row, "line") : INT64_MAX;
		if (rr.cur != NULL && jint(rr.cur, "line") < rline) {
			x.line_no = jint(rr.cur, "line");
			x.custom_id = jstr(rr.cur, "custom_id");
			x.state = "invalid";
			x.error_code = "invalid_request";
			x.error_message = jstr(rr.cur, "message");
		} else {
			json_t *e = json_object_get(row, "error");
			x.line_no = rline;
			x.custom_id = jstr(row, "custom_id");
			x.state = jstr(row, "state");
			x.text = jstr(row, "text");
			x.encoding_format = jstr(row, "encoding_format");
			x.finish_reason = jstr(row, "finish_reason");
			x.prompt_tokens = jint(row, "prompt_tokens");
			x.completion_tokens = jint(row, "completion_tokens");
			x.error_code = jstr(e, "code");
			x.error_message = jstr(e, "message");
		}
		char *line = NULL;
		size_t len = 0;
		int k = batchfmt_result_line(&x, &line, &len);
		if (k < 0) {
			r = k;
			snprintf(err, errlen, "out of memory formatting line %lld", (long long)x.line_no);
			goto fail;
		}
		if (k == 1) {
			ptok += x.prompt_tokens;
			ctok += x.completion_tokens;
		}
		r = out_write(k == 1 ? &out : &errf, line, len);
		free(line);
		if (r < 0) {
			snprintf(err, errlen, "writing the output of batch %s: %s", id, strerror(errno));
			goto fail;
		}
		if (strcmp(x.state, "invalid") == 0) {
			rejects_next(&rr);
		} else {
			after = rline;
			pi++;
		}
	}
	json_decref(page);
	page = NULL;
	rejects_close(&rr);
	char oid[64], eid[64], oname[160], ename[160];
	batchfmt_line_id(id, -1, "file-", oid, sizeof(oid));
	batchfmt_line_id(id, -2, "file-", eid, sizeof(eid));
	snprintf(oname, sizeof(oname), "%s_output.jsonl", id);
	snprintf(ename, sizeof(ename), "%s_error.jsonl", id);
	bool okept, ekept;
	if ((r = out_commit(h, &out, oid, oname, &okept)) < 0 ||
	    (r = out_commit(h, &errf, eid, ename, &ekept)) < 0) {
		snprintf(err, errlen, "storing the output files of batch %s: %s", id, strerror(-r));
		goto fail;
	}
	json_object_set_new(side, "output_file_id", okept ? json_string(oid) : json_null());
	json_object_set_new(side, "error_file_id", ekept ? json_string(eid) : json_null());
	json_object_set_new(side, "usage", json_pack("{s:I, s:I}", "input_tokens", (json_int_t)ptok,
						     "output_tokens", (json_int_t)ctok));
	json_object_set_new(side, "finalized_at", json_integer(now_s()));
	if ((r = sidecar_save(h, id, side)) < 0) {
		snprintf(err, errlen, "saving batch %s: %s", id, strerror(-r));
		return r;
	}
	drop_copies(side);
	mg_log(MG_LOG_INFO, "http", "batch finalized batch=%s state=%s output_lines=%llu error_lines=%llu",
	       id, state, (unsigned long long)out.lines, (unsigned long long)errf.lines);
	return 0;
fail:
	json_decref(page);
	rejects_close(&rr);
	out_abort(&out);
	out_abort(&errf);
	return r < 0 ? r : -EIO;
}

/* One pending batch: expire it past its window, finalize it when the
 * core is done with it. Returns true when it needs no more watching. */
static bool tend(api_batches_t *b, const char *id)
{
	http_t *h = b->h;
	char err[1024];
	json_t *job = NULL;
	int r = http_call_quiet(h, "status", json_pack("{s:s}", "id", id), &job, err, sizeof(err));
	if (r == -ENOENT)
		return true;		/* not a job (a creation that never reached the core) */
	if (r < 0)
		return false;
	/* Only this thread rewrites an existing sidecar (creation writes new
	 * ones; readers see whole files thanks to rename), so no lock here:
	 * a long finalization must not hold up kick() from HTTP threads. */
	bool done = false;
	json_t *side = sidecar_load(h, id);
	if (side == NULL) {
		/* A job created through the control socket: give it a sidecar. */
		side = json_pack("{s:s, s:s, s:s, s:I, s:I}", "id", id, "endpoint",
				 jstr_or(job, "endpoint", ""), "completion_window", "24h", "created_at",
				 (json_int_t)jint(job, "created_at"), "expires_at",
				 (json_int_t)(jint(job, "created_at") + h->cfg.completion_window_s));
	}
	const char *state = jstr(job, "state");
	if (side == NULL || jint(side, "finalized_at") > 0) {
		done = side != NULL;
	} else if (mg_job_state_name_terminal(state)) {
		int64_t t0 = mg_clock_now_ns();
		r = finalize(b, id, job, side, err, sizeof(err));
		if (r < 0)
			mg_log(MG_LOG_ERROR, "http", "cannot finalize batch=%s err=\"%s\"", id, err);
		else
			mg_log(MG_LOG_DEBUG, "http", "finalize took batch=%s ms=%lld", id,
			       (long long)((mg_clock_now_ns() - t0) / MG_NS_PER_MS));
		done = r == 0;
	} else if (jint(side, "expires_at") > 0 && now_s() >= jint(side, "expires_at") &&
		   jint(side, "expired_at") == 0) {
		json_object_set_new(side, "expired_at", json_integer(now_s()));
		if (sidecar_save(h, id, side) == 0) {
			json_t *c = NULL;
			if (http_call_quiet(h, "cancel", json_pack("{s:s}", "id", id), &c, err, sizeof(err)) < 0)
				mg_log(MG_LOG_ERROR, "http", "cannot expire batch=%s err=\"%s\"", id, err);
			else
				mg_log(MG_LOG_INFO, "http", "batch expired batch=%s", id);
			json_decref(c);
		}
	}
	json_decref(side);
	json_decref(job);
	return done;
}

static int finalizer_main(void *arg)
{
	api_batches_t *b = arg;
	mtx_lock(&b->lock);
	while (!b->stop) {
		int64_t period = b->h->cfg.finalize_period_ns;
		struct timespec ts;
		timespec_get(&ts, TIME_UTC);
		ts.tv_sec += (time_t)(period / MG_NS_PER_S);
		ts.tv_nsec += (long)(period % MG_NS_PER_S);
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		cnd_timedwait(&b->cond, &b->lock, &ts);
		if (b->stop)
			break;
		size_t n = b->n_pending;
		char **ids = n ? calloc(n, sizeof(char *)) : NULL;
		for (size_t i = 0; ids != NULL && i < n; i++)
			ids[i] = strdup(b->pending[i]);
		mtx_unlock(&b->lock);
		for (size_t i = 0; ids != NULL && i < n; i++) {
			if (ids[i] != NULL && !b->stop && tend(b, ids[i]))
				pending_remove(b, ids[i]);
			free(ids[i]);
		}
		free(ids);
		mtx_lock(&b->lock);
	}
	mtx_unlock(&b->lock);
	return 0;
}

int api_batches_new(http_t *h, api_batches_t **ret, char *err, size_t errlen)
{
	api_batches_t *b = calloc(1, sizeof(*b));
	if (b == NULL || mtx_init(&b->lock, mtx_plain) != thrd_success) {
		free(b);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (cnd_init(&b->cond) != thrd_success) {
		mtx_destroy(&b->lock);
		free(b);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	b->h = h;
	/* Batches not finalized when the daemon stopped are watched again. */
	DIR *d = opendir(h->batches_dir);
	struct dirent *e;
	while (d != NULL && (e = readdir(d)) != NULL) {
		size_t len = strlen(e->d_name);
		if (e->d_name[0] == '.' || len <= 5 || strcmp(e->d_name + len - 5, ".json") != 0 ||
		    len - 5 >= 128)
			continue;
		char id[128];
		snprintf(id, sizeof(id), "%.*s", (int)(len - 5), e->d_name);
		json_t *side = sidecar_load(h, id);
		if (side != NULL && jint(side, "finalized_at") == 0)
			pending_add(b, id);
		json_decref(side);
	}
	if (d != NULL)
		closedir(d);
	if (thrd_create(&b->thread, finalizer_main, b) != thrd_success) {
		api_batches_destroy(&b);
		snprintf(err, errlen, "cannot start the finalizer thread");
		return -EAGAIN;
	}
	b->started = true;
	*ret = b;
	return 0;
}

void api_batches_destroy(api_batches_t **pb)
{
	if (pb == NULL || *pb == NULL)
		return;
	api_batches_t *b = *pb;
	if (b->started) {
		mtx_lock(&b->lock);
		b->stop = true;
		cnd_signal(&b->cond);
		mtx_unlock(&b->lock);
		thrd_join(b->thread, NULL);
	}
	for (size_t i = 0; i < b->n_pending; i++)
		free(b->pending[i]);
	free(b->pending);
	cnd_destroy(&b->cond);
	mtx_destroy(&b->lock);
	free(b);
	*pb = NULL;
}

/* --- the Batch object -------------------------------------------------- */

/* status per OpenAI from the job's state and the sidecar. */
static const char *status_of(const char *state, json_t *side)
{
	bool fin = side != NULL && jint(side, "finalized_at") > 0;
	bool expired = side != NULL && jint(side, "expired_at") > 0;
	if (state == NULL)
		return "failed";
	int st = mg_job_state_parse(state);
	if (st < 0)
		return state;
	if (st == MG_JOB_FAILED)
		return "failed";
	if (expired && (mg_job_state_terminal((mg_job_state_t)st) || st == MG_JOB_CANCELLING))
		return fin ? "expired" : "finalizing";
	if (st == MG_JOB_COMPLETED)
		return fin ? "completed" : "finalizing";
	if (st == MG_JOB_CANCELLED)
		return fin ? "cancelled" : "cancelling";
	return state;		/* validating, in_progress, cancelling */
}

/* The first refused lines, as batch errors {code, message, param, line}. */
static void add_rejects(json_t *errors, json_t *side)
{
	json_t *shown = json_object_get(side, "rejects_shown");
	if (json_is_array(shown)) {
		size_t i;
		json_t *e;
		json_array_foreach(shown, i, e)
			json_array_append(errors, e);
		return;
	}
	const char *rej = jstr(side, "rejects");
	reject_reader_t rr = { 0 };
	if (rej == NULL || (rr.f = fopen(rej, "re")) == NULL)
		return;
	rejects_next(&rr);
	for (int i = 0; i < ERRORS_SHOWN && rr.cur != NULL; i++) {
		json_array_append_new(errors, json_pack("{s:s, s:O, s:n, s:I}", "code", "invalid_request",
							"message", json_object_get(rr.cur, "message"),
							"param", "line", (json_int_t)jint(rr.cur, "line")));
		rejects_next(&rr);
	}
	rejects_close(&rr);
}

static json_t *batch_object(http_t *h, json_t *job, json_t *side)
{
	const char *state = jstr(job, "state");
	const char *status = status_of(state, side);
	json_t *counts = json_object_get(job, "counts");
	int64_t invalid = jint(side, "invalid");
	batchfmt_batch_t b = { 0 };
	b.id = jstr(job, "id");
	b.endpoint = jstr(job, "endpoint");
	b.input_file_id = side ? jstr(side, "input_file_id") : NULL;
	b.completion_window = side ? jstr(side, "completion_window") : "24h";
	b.status = status;
	b.model = jstr(job, "model");
	b.created_at = jint(job, "created_at");
	b.in_progress_at = jint(job, "in_progress_at");
	b.expires_at = side && jint(side, "expires_at") ? jint(side, "expires_at")
						       : b.created_at + h->cfg.completion_window_s;
	b.failed_at = jint(job, "failed_at");
	b.cancelling_at = jint(job, "cancelling_at");
	b.expired_at = jint(side, "expired_at");
	bool fin = jint(side, "finalized_at") > 0;
	if (strcmp(status, "finalizing") == 0 || strcmp(status, "completed") == 0 ||
	    strcmp(status, "expired") == 0)
		b.finalizing_at = jint(job, "completed_at") ? jint(job, "completed_at")
							    : jint(job, "cancelled_at");
	if (strcmp(status, "completed") == 0)
		b.completed_at = fin ? jint(side, "finalized_at") : 0;
	if (strcmp(status, "cancelled") == 0)
		b.cancelled_at = jint(job, "cancelled_at");
	if (strcmp(status, "expired") == 0) {
		b.cancelling_at = 0;
		b.cancelled_at = 0;
	}
	if (fin) {
		b.output_file_id = jstr(side, "output_file_id");
		b.error_file_id = jstr(side, "error_file_id");
	}
	/* While the core validates, its count grows; the check at creation
	 * already knows them all. */
	b.total = jint(counts, "total") + invalid;
	if (strcmp(status, "validating") == 0 && jint(side, "lines") > b.total)
		b.total = jint(side, "lines");
	b.completed = jint(counts, "done");
	b.failed = jint(counts, "failed") + invalid;
	json_t *usage = json_object_get(job, "usage");
	if (usage == NULL && side != NULL)
		usage = json_object_get(side, "usage");
	if (json_is_object(usage)) {
		b.has_usage = true;
		json_t *in = json_object_get(usage, "input_tokens");
		json_t *pt = json_object_get(usage, "prompt_tokens");
		b.input_tokens = json_integer_value(in ? in : pt);
		json_t *ou = json_object_get(usage, "output_tokens");
		json_t *ct = json_object_get(usage, "completion_tokens");
		b.output_tokens = json_integer_value(ou ? ou : ct);
	}
	json_t *meta = json_object_get(job, "metadata");
	b.metadata = json_is_object(meta) ? meta : NULL;

	/* Batch-level errors: not JSONL, the core's validation errors, and the
	 * first refused lines when nothing was left to run. */
	json_t *errors = json_array();
	if (errors != NULL && strcmp(status, "failed") == 0) {
		if (json_is_true(json_object_get(side, "not_jsonl")))
			json_array_append_new(errors, json_pack("{s:s, s:s, s:n, s:i}", "code", "invalid_file",
					"message", "the input file is not JSONL: its first line is not a JSON object (one request object per line)",
					"param", "line", 1));
		size_t i;
		json_t *e;
		json_array_foreach(json_object_get(job, "errors"), i, e) {
			json_t *line = json_object_get(e, "line"), *msg = json_object_get(e, "message");
			json_array_append_new(errors, json_pack("{s:s, s:o, s:n, s:O}", "code",
					jstr_or(e, "code", "invalid_request"), "message",
					msg != NULL ? json_incref(msg) : json_string(""), "param",
					"line", line ? line : json_null()));
		}
		if (invalid > 0)
			add_rejects(errors, side);
	}
	b.errors = errors;
	json_t *x = json_pack("{s:s, s:I, s:I, s:I, s:I}", "state", state ? state : "",
			      "in_flight", (json_int_t)jint(counts, "in_flight"),
			      "queued", (json_int_t)jint(counts, "queued"),
			      "cancelled", (json_int_t)jint(counts, "cancelled"),
			      "invalid", (json_int_t)invalid);
	if (x != NULL && json_is_object(json_object_get(job, "usage")))
		json_object_set(x, "usage", json_object_get(job, "usage"));
	b.margin = x;
	json_t *o = batchfmt_batch_json(&b);
	json_decref(errors);
	json_decref(x);
	return o;
}

/* --- create ------------------------------------------------------------ */

typedef struct validation {
	int64_t lines, good, invalid;
	bool not_jsonl;
	int64_t *bad;			/* owned: refused line numbers, ascending */
	size_t n_bad, cap_bad;
} validation_t;

static int note_bad(validation_t *v, int64_t line)
{
	if (v->n_bad == v->cap_bad) {
		size_t nc = v->cap_bad ? v->cap_bad * 2 : 64;
		int64_t *nb = realloc(v->bad, nc * sizeof(*nb));
		if (nb == NULL)
			return -ENOMEM;
		v->bad = nb;
		v->cap_bad = nc;
	}
	v->bad[v->n_bad++] = line;
	return 0;
}

/* Keyed (mg_hash): an unkeyed hash would let a file bring two different
 * custom_ids with one hash, the second refused as a duplicate. */
static uint64_t hash_id(const char *s)
{
	return mg_hash(s, strlen(s));
}

static int write_reject(FILE *f, int64_t line, const char *cid, const char *msg)
{
	json_t *o = json_pack("{s:I, s:o, s:s}", "line", (json_int_t)line, "custom_id",
			      cid ? json_string(cid) : json_null(), "message", msg);
	if (o == NULL)	/* a custom_id that is not UTF-8 */
		o = json_pack("{s:I, s:n, s:s}", "line", (json_int_t)line, "custom_id", "message", msg);
	char *t = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (t == NULL)
		return -ENOMEM;
	int r = fprintf(f, "%s\n", t) < 0 ? -EIO : 0;
	free(t);
	return r;
}

/* Pass 1: checks every line; refused ones go to rej with their reasons.
 * custom_ids are kept as 64-bit hashes (memory: a few words a line). */
static int validate(http_t *h, const char *path, batchfmt_ctx_t *ctx, FILE *rej, validation_t *v,
		    char *err, size_t errlen)
{
	ingest_file_t *in = NULL;
	htab_t *seen = htab_new();
	int r = ingest_file_open(path, 0, 0, &in, err, errlen);
	if (r < 0 || seen == NULL) {
		if (r < 0) {
			mg_log(MG_LOG_WARN, "http", "cannot read an uploaded file err=\"%s\"", err);
			snprintf(err, errlen, "%s", strerror(-r));
		}
		if (seen == NULL)
			snprintf(err, errlen, "out of memory");
		htab_destroy(&seen);
		return r < 0 ? r : -ENOMEM;
	}
	for (;;) {
		const char *text;
		size_t len;
		int64_t line = 0;
		char msg[1024];
		char *cid = NULL;
		r = ingest_file_next(in, &text, &len, &line);
		if (r == 0)
			break;
		if (r < 0 && r != -EFBIG) {
			snprintf(err, errlen, "reading the file: %s", strerror(-r));
			goto out;
		}
		v->lines = line;
		if (r == -EFBIG) {
			snprintf(msg, sizeof(msg), "the line is longer than %u bytes", INGEST_LINE_MAX);
		} else if (v->good == 0 && v->invalid == 0 && !batchfmt_is_json_object(text, len)) {
			v->not_jsonl = true;
			r = 0;
			goto out;
		} else {
			ingest_line_t l;
			r = batchfmt_check_line(ctx, text, len, &l, &cid, msg, sizeof(msg));
			if (r == -ENOMEM) {
				snprintf(err, errlen, "out of memory");
				goto out;
			}
			if (r == 0) {
				uint64_t k = hash_id(l.custom_id);
				void *first = htab_find(seen, &k, sizeof(k));
				if (first != NULL) {
					snprintf(msg, sizeof(msg), "custom_id \"%.200s\" is used by line %lld too (custom_id must be unique in the file)",
						 l.custom_id, (long long)(intptr_t)first);
					r = -EINVAL;
				} else if (htab_put(seen, &k, sizeof(k), (void *)(intptr_t)line) < 0) {
					ingest_line_done(&l);
					snprintf(err, errlen, "out of memory");
					r = -ENOMEM;
					goto out;
				}
				ingest_line_done(&l);
			}
			if (r == 0) {
				v->good++;
				free(cid);
				continue;
			}
		}
		v->invalid++;
		if ((r = note_bad(v, line)) < 0 || (r = write_reject(rej, line, cid, msg)) < 0) {
			free(cid);
			snprintf(err, errlen, "recording line %lld: %s", (long long)line, strerror(-r));
			goto out;
		}
		free(cid);
	}
	r = 0;
out:
	ingest_file_close(&in);
	htab_destroy(&seen);
	return r;
}

/* Pass 2: a copy with the refused lines (and only them) blanked. */
static int copy_without(const char *src, const char *dst, const validation_t *v, char *err,
			size_t errlen)
{
	FILE *in = fopen(src, "re");
	FILE *out = fopen(dst, "we");
	char *buf = NULL;
	size_t cap = 0, k = 0;
	int64_t line = 0;
	int r = 0;
	if (in == NULL || out == NULL) {
		r = -errno;
		snprintf(err, errlen, "copying the input: %s", strerror(errno));
		goto out;
	}
	ssize_t n;
	while ((n = getline(&buf, &cap, in)) >= 0) {
		line++;
		while (k < v->n_bad && v->bad[k] < line)
			k++;
		bool drop = k < v->n_bad && v->bad[k] == line;
		if (drop ? fputc('\n', out) == EOF : fwrite(buf, 1, (size_t)n, out) != (size_t)n) {
			r = -EIO;
			snprintf(err, errlen, "writing the input copy");
			goto out;
		}
	}
	if (fflush(out) != 0 || fsync(fileno(out)) < 0) {
		r = -errno;
		snprintf(err, errlen, "writing the input copy: %s", strerror(errno));
	}
out:
	free(buf);
	if (in != NULL)
		fclose(in);
	if (out != NULL && fclose(out) != 0 && r == 0)
		r = -EIO;
	return r;
}

/* The request's fields and its input file: 0 with *ret_f, or a negative
 * errno after replying. */
static int check_create(http_req_t *r, const char *fid, const char *ep, const char *win,
			json_t *meta, api_file_t *ret_f)
{
	http_t *h = r->h;
	char err[1024];
	api_file_t f;
	if (fid == NULL) {
		http_reply_error(r, 400, "invalid_request", "input_file_id", "input_file_id: expected the id of an uploaded file");
		return -EINVAL;
	}
	if (ep == NULL || (strcmp(ep, BATCHFMT_EP_COMPLETIONS) != 0 && strcmp(ep, BATCHFMT_EP_CHAT) != 0 &&
			   strcmp(ep, BATCHFMT_EP_EMBEDDINGS) != 0)) {
		http_reply_error(r, 400, "invalid_request", "endpoint",
				 "endpoint \"%s\": this server runs \"/v1/completions\", \"/v1/chat/completions\" and \"/v1/embeddings\"",
				 ep ? ep : "(missing)");
		return -EINVAL;
	}
	if (win == NULL || strcmp(win, "24h") != 0) {
		http_reply_error(r, 400, "invalid_request", "completion_window",
				 "completion_window: expected \"24h\"");
		return -EINVAL;
	}
	if (batchfmt_check_metadata(meta, err, sizeof(err)) < 0) {
		http_reply_error(r, 400, "invalid_request", "metadata", "%s", err);
		return -EINVAL;
	}
	int rc = api_files_find(h, fid, &f);
	if (rc < 0) {
		http_reply_error(r, rc == -ENOENT ? 404 : 500, "not_found", "input_file_id",
				 rc == -ENOENT ? "no file with id \"%s\"" : "the metadata of file %s is damaged", fid);
		return rc;
	}
	if (strcmp(f.purpose, "batch") != 0) {
		http_reply_error(r, 400, "invalid_request", "input_file_id",
				 "file %s has purpose \"%s\"; a batch reads a file uploaded with purpose \"batch\"",
				 fid, f.purpose);
		return -EINVAL;
	}
	*ret_f = f;
	return 0;
}

/* The batch's input at in_path, checked line by line against the models
 * (ctx, whose model it sets) with the refused lines written to rej
 * (closed here: *prej = NULL) and counted in v, then blanked in the copy.
 * 0, or a negative errno after replying. */
static int prepare_input(http_req_t *r, const api_file_t *f, const char *fid, const char *id,
			 const char *in_path, batchfmt_ctx_t *ctx, FILE **prej, validation_t *v)
{
	http_t *h = r->h;
	char err[1024];
	int rc;
	FILE *rej = *prej;
	/* The batch's own name for the input first: a DELETE of the file from
	 * now on cannot pull it away (the bytes stay until the batch's copy
	 * goes). A file deleted since the lookup is a file not found. */
	if (link(f->path, in_path) < 0) {
		validation_t all = { 0 };
		rc = errno == ENOENT ? -ENOENT : copy_without(f->path, in_path, &all, err, sizeof(err));
		if (rc == -ENOENT) {
			http_reply_error(r, 404, "not_found", "input_file_id", "no file with id \"%s\" (it was deleted)",
					 fid);
			return rc;
		}
		if (rc < 0) {
			http_reply_error(r, 500, "internal_error", NULL, "preparing the input of the batch: %s", err);
			return rc;
		}
	}
	rc = validate(h, in_path, ctx, rej, v, err, sizeof(err));
	if (rc == 0 && (fflush(rej) != 0 || fsync(fileno(rej)) < 0))
		rc = -errno, snprintf(err, sizeof(err), "writing the rejects of batch %s: %s", id, strerror(errno));
	fclose(rej);
	*prej = NULL;
	if (rc < 0) {
		http_reply_error(r, 500, "internal_error", NULL, "validating file %s: %s", fid, err);
		return rc;
	}
	/* Refused lines are blanked in the job's copy (line numbers stay). */
	if (v->n_bad > 0 && !v->not_jsonl) {
		char tmp[4300];
		snprintf(tmp, sizeof(tmp), "%s.tmp", in_path);
		rc = copy_without(in_path, tmp, v, err, sizeof(err));
		if (rc == 0 && rename(tmp, in_path) < 0) {
			rc = -errno;
			snprintf(err, sizeof(err), "renaming the copy: %s", strerror(errno));
		}
		if (rc < 0)
			unlink(tmp);
	}
	if (rc < 0) {
		http_reply_error(r, 500, "internal_error", NULL, "preparing the input of the batch: %s", err);
		return rc;
	}
	return 0;
}

void api_batches_create(http_req_t *r)
{
	http_t *h = r->h;
	json_t *req = r->json;
	char err[1024];
	const char *fid = jstr(req, "input_file_id");
	const char *ep = jstr(req, "endpoint");
	const char *win = jstr(req, "completion_window");
	json_t *meta = json_object_get(req, "metadata");
	api_file_t f;
	int rc = check_create(r, fid, ep, win, meta, &f);
	if (rc < 0)
		return;
	http_model_t *models = NULL;
	size_t n_models = 0;
	if (http_models(h, &models, &n_models, err, sizeof(err)) < 0) {
		http_reply_error(r, 503, "scheduler_unavailable", NULL, "%s", err);
		http_reply_header(r, "retry-after", "1");
		return;
	}
	batchfmt_model_t *bm = http_models_check(models, n_models);

	char id[64], in_path[4200], rej_path[4200];
	http_random_id("batch_", id, sizeof(id));
	sidecar_path(h, id, ".input.jsonl", in_path, sizeof(in_path));
	sidecar_path(h, id, ".rejects.jsonl", rej_path, sizeof(rej_path));
	ingest_params_t ip = { id, h->cfg.default_max_tokens, h->cfg.max_tokens_cap };
	batchfmt_ctx_t ctx = { .endpoint = ep, .models = bm, .n_models = bm ? n_models : 0, .ingest = &ip,
				.wait_for_model = true };
	validation_t v = { 0 };
	json_t *side = NULL, *job = NULL;
	FILE *rej = fopen(rej_path, "we");
	int64_t t0 = mg_clock_now_ns();
	if (rej == NULL || bm == NULL) {
		http_reply_error(r, 500, "internal_error", NULL, "cannot create the rejects file of batch %s: %s", id,
				 strerror(errno));
		goto out;
	}
	if ((rc = prepare_input(r, &f, fid, id, in_path, &ctx, &rej, &v)) < 0)
		goto out;
	int64_t created = now_s();
	side = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:b, s:s, s:s, s:n, s:n, s:i, s:i}",
			 "id", id, "input_file_id", fid, "endpoint", ep, "completion_window", win,
			 "created_at", (json_int_t)created, "expires_at",
			 (json_int_t)(created + h->cfg.completion_window_s), "lines",
			 (json_int_t)(v.good + v.invalid), "invalid",
			 (json_int_t)v.invalid, "not_jsonl", v.not_jsonl, "input_path", in_path,
			 "rejects", rej_path, "output_file_id", "error_file_id", "finalized_at", 0,
			 "expired_at", 0);
	if (side == NULL || (rc = sidecar_save(h, id, side)) < 0) {
		http_reply_error(r, 500, "internal_error", NULL, "saving batch %s: %s", id,
				 strerror(side == NULL ? ENOMEM : -rc));
		goto out;
	}
	json_t *sub = json_pack("{s:s, s:s, s:s}", "id", id, "endpoint", ep, "input_path", in_path);
	if (sub != NULL && json_is_object(meta))
		json_object_set(sub, "metadata", meta);
	pending_add(h->batches, id);
	if (http_call(r, "submit", sub, &job) < 0) {
		char sp[4200];
		pending_remove(h->batches, id);
		sidecar_path(h, id, ".json", sp, sizeof(sp));
		unlink(sp);
		goto out;
	}
	if (v.invalid > 0)
		metrics_on_requests(h->metrics, ctx.model, "invalid", (uint64_t)v.invalid);
	mg_log(MG_LOG_INFO, "http", "batch created batch=%s file=%s endpoint=%s lines=%lld invalid=%lld not_jsonl=%d check_ms=%lld",
	       id, fid, ep, (long long)(v.good + v.invalid), (long long)v.invalid, v.not_jsonl,
	       (long long)((mg_clock_now_ns() - t0) / MG_NS_PER_MS));
	http_reply_json(r, 200, batch_object(h, job, side));
	json_decref(job);
	json_decref(side);
	free(v.bad);
	free(bm);
	http_models_free(models, n_models);
	return;
out:
	if (rej != NULL)
		fclose(rej);
	unlink(in_path);
	unlink(rej_path);
	json_decref(side);
	free(v.bad);
	free(bm);
	http_models_free(models, n_models);
}

/* --- get, list, cancel --------------------------------------------------- */

static json_t *object_for(http_t *h, json_t *job)
{
	const char *id = jstr(job, "id");
	json_t *side = id ? sidecar_load(h, id) : NULL;
	if (id != NULL && mg_job_state_name_terminal(jstr(job, "state")) && (side == NULL || jint(side, "finalized_at") == 0))
		kick(h->batches, id);
	json_t *o = batch_object(h, job, side);
	json_decref(side);
	return o;
}

void api_batches_get(http_req_t *r)
{
	json_t *job = NULL;
	if (http_call(r, "status", json_pack("{s:s}", "id", r->param[0]), &job) < 0)
		return;
	http_reply_json(r, 200, object_for(r->h, job));
	json_decref(job);
}

void api_batches_cancel(http_req_t *r)
{
	json_t *job = NULL;
	if (http_call(r, "cancel", json_pack("{s:s}", "id", r->param[0]), &job) < 0)
		return;
	mg_log(MG_LOG_INFO, "http", "batch cancel requested batch=%s state=%s", r->param[0],
	       jstr_or(job, "state", "?"));
	http_reply_json(r, 200, object_for(r->h, job));
	json_decref(job);
}

void api_batches_list(http_req_t *r)
{
	const char *after = http_query(r, "after");
	const char *ls = http_query(r, "limit");
	long limit = 20;
	if (ls != NULL) {
		char *end;
		limit = strtol(ls, &end, 10);
		if (*ls == '\0' || *end != '\0' || limit < 1 || limit > 100) {
			http_reply_error(r, 400, "invalid_request", "limit", "limit: expected 1 to 100");
			return;
		}
	}
	json_t *data = json_array();
	char cursor[128] = "";
	if (after != NULL)
		snprintf(cursor, sizeof(cursor), "%s", after);
	bool more = true;
	/* Synchronous completions are jobs too: skip them, reading on until
	 * the page is full. */
	while (data != NULL && more && (long)json_array_size(data) < limit) {
		json_t *req = json_pack("{s:i}", "limit", 100);
		if (cursor[0] != '\0')
			json_object_set_new(req, "after", json_string(cursor));
		json_t *page = NULL;
		if (http_call(r, "list", req, &page) < 0) {
			json_decref(data);
			return;
		}
		more = json_is_true(json_object_get(page, "has_more"));
		size_t i;
		json_t *job;
		json_array_foreach(json_object_get(page, "jobs"), i, job) {
			const char *id = jstr(job, "id");
			if (id == NULL)
				continue;
			if (strncmp(id, SYNC_PREFIX, strlen(SYNC_PREFIX)) != 0 &&
			    (long)json_array_size(data) == limit) {
				more = true;
				break;
			}
			snprintf(cursor, sizeof(cursor), "%s", id);
			if (strncmp(id, SYNC_PREFIX, strlen(SYNC_PREFIX)) == 0)
				continue;
			json_array_append_new(data, object_for(r->h, job));
		}
		if (json_array_size(json_object_get(page, "jobs")) == 0)
			more = false;
		json_decref(page);
	}
	http_reply_json(r, 200, batchfmt_list(data, more));
}
