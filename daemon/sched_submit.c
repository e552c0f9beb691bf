/* sched: submission (inline and file jobs), their validation by the
 * ingest pass, and its errors. See sched.h. */
#include "sched.h"
#include "sched_priv.h"
#include "lib/mg_clock.h"
#include "lib/mg_log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define ERRORS_MAX 100

/* --- submission and validation ----------------------------------------- */

static bool valid_name(const char *n)
{
	size_t len = strlen(n);
	if (len == 0 || len >= 65)
		return false;
	for (const char *p = n; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		      *p == '_' || *p == '-' || *p == '.'))
			return false;
	return true;
}

static int make_name(const char *want, char *out, char *err, size_t errlen)
{
	if (want != NULL) {
		if (!valid_name(want)) {
			snprintf(err, errlen, "id \"%s\": expected 1-64 characters of [A-Za-z0-9_.-]", want);
			return -EINVAL;
		}
		snprintf(out, JOURNAL_NAME_MAX, "%s", want);
		return 0;
	}
	uint8_t rnd[12];
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
		snprintf(err, errlen, "getrandom failed");
		return -EIO;
	}
	int n = snprintf(out, JOURNAL_NAME_MAX, "batch_");
	for (size_t i = 0; i < sizeof(rnd); i++)
		n += snprintf(out + n, JOURNAL_NAME_MAX - (size_t)n, "%02x", rnd[i]);
	return 0;
}

static int check_endpoint(const char *ep, char *err, size_t errlen)
{
	if (ep == NULL || strcmp(ep, "/v1/chat/completions") == 0 || strcmp(ep, "/v1/completions") == 0 ||
	    strcmp(ep, INGEST_EP_EMBEDDINGS) == 0)
		return 0;
	snprintf(err, errlen, "endpoint \"%s\": expected \"/v1/chat/completions\", \"/v1/completions\" or \"%s\"",
		 ep, INGEST_EP_EMBEDDINGS);
	return -EINVAL;
}

static sched_job_t *job_alloc(const char *name, const char *endpoint, const char *path)
{
	sched_job_t *job = calloc(1, sizeof(*job));
	if (job == NULL)
		return NULL;
	snprintf(job->j.name, sizeof(job->j.name), "%s", name);
	snprintf(job->j.endpoint, sizeof(job->j.endpoint), "%s", endpoint ? endpoint : "");
	snprintf(job->j.input_path, sizeof(job->j.input_path), "%s", path ? path : "");
	job->j.next_line = 1;
	job->j.created_at = sched_wall_s();
	return job;
}

/* A validated line joins the job: one endpoint and one model per job. */
static int accept_line(sched_t *s, sched_job_t *job, int64_t line_no, const ingest_line_t *l,
		       char *err, size_t errlen)
{
	journal_job_t *j = &job->j;
	if (j->endpoint[0] == '\0')
		snprintf(j->endpoint, sizeof(j->endpoint), "%s", l->endpoint);
	else if (strcmp(j->endpoint, l->endpoint) != 0) {
		snprintf(err, errlen, "url \"%s\" differs from the batch's endpoint \"%s\"", l->endpoint,
			 j->endpoint);
		return -EINVAL;
	}
	if (j->model[0] == '\0')
		snprintf(j->model, sizeof(j->model), "%s", l->model);
	else if (strcmp(j->model, l->model) != 0) {
		snprintf(err, errlen, "body.model \"%s\" differs from the batch's model \"%s\" (one model per batch)",
			 l->model, j->model);
		return -EINVAL;
	}
	int r = journal_request_insert(s->j, j->id, line_no, l->custom_id, l->body, l->est_tokens);
	if (r == -EEXIST) {
		snprintf(err, errlen, "custom_id \"%s\" is used by an earlier line", l->custom_id);
		return -EINVAL;
	}
	if (r < 0) {
		snprintf(err, errlen, "journal: %s", journal_errmsg(s->j));
		return r;
	}
	j->n_total++;
	j->max_line = line_no;
	return 0;
}

static ingest_params_t ingest_params(const sched_t *s, const char *job)
{
	return (ingest_params_t){ job, s->p.default_max_tokens, s->p.max_tokens_cap };
}

int sched_submit_inline(sched_t *s, const char *name, const char *endpoint,
			const char *metadata, json_t *lines, int64_t now, char *ret_name,
			char *err, size_t errlen)
{
	return sched_submit_inline2(s, name, endpoint, metadata, lines, 0, now, ret_name, err, errlen);
}

int sched_submit_inline2(sched_t *s, const char *name, const char *endpoint,
			 const char *metadata, json_t *lines, unsigned flags, int64_t now,
			 char *ret_name, char *err, size_t errlen)
{
	char jname[JOURNAL_NAME_MAX], e2[400];
	int r = make_name(name, jname, err, errlen);
	if (r < 0)
		return r;
	if ((r = check_endpoint(endpoint, err, errlen)) < 0)
		return r;
	if (!json_is_array(lines) || json_array_size(lines) == 0) {
		snprintf(err, errlen, "requests: expected a non-empty array of request objects");
		return -EINVAL;
	}
	if (json_array_size(lines) > s->p.inline_max) {
		snprintf(err, errlen, "requests: %zu requests; an inline submit takes at most %u (use input_path)",
			 json_array_size(lines), s->p.inline_max);
		return -E2BIG;
	}
	if (journal_in_tx(s->j)) {
		snprintf(err, errlen, "internal: a transaction is open");
		return -EBUSY;
	}
	sched_job_t *job = job_alloc(jname, endpoint, NULL);
	if (job == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	ingest_params_t ip = ingest_params(s, jname);
	if ((r = journal_begin_durable(s->j)) < 0) {
		snprintf(err, errlen, "journal: %s", journal_errmsg(s->j));
		goto fail;
	}
	job->j.state = MG_JOB_IN_PROGRESS;
	job->j.in_progress_at = job->j.created_at;
	job->j.priority = (flags & SCHED_SUBMIT_PRIORITY) ? 1 : 0;
	r = journal_job_create(s->j, &job->j, metadata);
	if (r == -EEXIST) {
		snprintf(err, errlen, "a batch with id \"%s\" exists", jname);
		goto fail_tx;
	}
	if (r < 0) {
		snprintf(err, errlen, "journal: %s", journal_errmsg(s->j));
		goto fail_tx;
	}
	size_t i;
	json_t *obj;
	json_array_foreach(lines, i, obj) {
		ingest_line_t l = { 0 };
		r = ingest_line_parse_json(obj, &ip, &l, e2, sizeof(e2));
		if (r == 0) {
			r = accept_line(s, job, (int64_t)i + 1, &l, e2, sizeof(e2));
			ingest_line_done(&l);
		}
		if (r < 0) {
			snprintf(err, errlen, "line %zu: %s", i + 1, e2);
			goto fail_tx;
		}
	}
	if ((r = journal_job_update(s->j, &job->j)) < 0 || (r = journal_commit(s->j)) < 0) {
		snprintf(err, errlen, "journal: %s", journal_errmsg(s->j));
		goto fail_tx;
	}
	if ((r = sched_jobs_push(s, job)) < 0) {
		/* Journaled: a restart picks it up. */
		snprintf(err, errlen, "out of memory");
		sched_job_free(job);
		return r;
	}
	snprintf(ret_name, JOURNAL_NAME_MAX, "%s", jname);
	mg_log(MG_LOG_INFO, "sched", "batch accepted batch=%s requests=%lld model=%s endpoint=%s",
	       jname, (long long)job->j.n_total, job->j.model, job->j.endpoint);
	(void)now;
	return 0;
fail_tx:
	journal_rollback(s->j);
fail:
	sched_job_free(job);
	return r < 0 ? r : -EIO;
}

int sched_submit_file(sched_t *s, const char *name, const char *endpoint,
		      const char *metadata, const char *path, int64_t now, char *ret_name,
		      char *err, size_t errlen)
{
	char jname[JOURNAL_NAME_MAX];
	int r = make_name(name, jname, err, errlen);
	if (r < 0)
		return r;
	if ((r = check_endpoint(endpoint, err, errlen)) < 0)
		return r;
	if (path == NULL || path[0] != '/' || strlen(path) >= JOURNAL_PATH_MAX) {
		snprintf(err, errlen, "input_path: expected an absolute path");
		return -EINVAL;
	}
	sched_job_t *job = job_alloc(jname, endpoint, path);
	if (job == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	/* Refuse a missing or unreadable file now; the validation opens it
	 * again when this batch's turn comes. */
	ingest_file_t *probe = NULL;
	char e2[512];
	r = ingest_file_open(path, 0, 0, &probe, e2, sizeof(e2));
	ingest_file_close(&probe);
	if (r < 0) {
		/* The reply names the batch, the log the path (a server path
		 * is none of a client's business). */
		mg_log(MG_LOG_WARN, "sched", "cannot open the input of a new batch batch=%s err=\"%s\"", jname, e2);
		snprintf(err, errlen, "cannot open the input file of batch %s: %s", jname, strerror(-r));
		goto fail;
	}
	if ((r = journal_begin_durable(s->j)) < 0) {
		snprintf(err, errlen, "journal: %s", journal_errmsg(s->j));
		goto fail;
	}
	job->j.state = MG_JOB_VALIDATING;
	r = journal_job_create(s->j, &job->j, metadata);
	if (r == 0)
		r = journal_commit(s->j);
	else
		journal_rollback(s->j);
	if (r == -EEXIST) {
		snprintf(err, errlen, "a batch with id \"%s\" exists", jname);
		goto fail;
	}
	if (r < 0) {
		snprintf(err, errlen, "journal: %s", journal_errmsg(s->j));
		goto fail;
	}
	if ((r = sched_jobs_push(s, job)) < 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	snprintf(ret_name, JOURNAL_NAME_MAX, "%s", jname);
	mg_log(MG_LOG_INFO, "sched", "batch accepted batch=%s input=\"%s\" state=validating", jname, path);
	(void)now;
	return 0;
fail:
	sched_job_free(job);
	return r;
}

static void add_error(sched_job_t *job, int64_t line, const char *msg)
{
	if (job->errors == NULL)
		job->errors = json_array();
	if (job->errors == NULL || json_array_size(job->errors) >= ERRORS_MAX)
		return;
	json_t *e = line > 0 ?
		json_pack("{s:s, s:I, s:s}", "code", "invalid_request", "line", (json_int_t)line,
			  "message", msg) :
		json_pack("{s:s, s:n, s:s}", "code", "invalid_request", "line", "message", msg);
	if (e != NULL)
		json_array_append_new(job->errors, e);
}

static void fail_validation(sched_t *s, sched_job_t *job)
{
	journal_job_t *j = &job->j;
	char *txt = job->errors ? json_dumps(job->errors, JSON_COMPACT) : NULL;
	journal_requests_delete(s->j, j->id);
	journal_job_set_errors(s->j, j->id, txt);
	j->n_total = 0;
	j->max_line = 0;
	j->state = MG_JOB_FAILED;
	j->failed_at = sched_wall_s();
	json_t *first = json_array_get(job->errors, 0);
	mg_log(MG_LOG_WARN, "sched", "batch failed validation batch=%s errors=%zu first_line=%lld first=\"%s\"",
	       j->name, json_array_size(job->errors),
	       (long long)json_integer_value(json_object_get(first, "line")),
	       json_string_value(json_object_get(first, "message")));
	free(txt);
}

static bool validating(const sched_job_t *job)
{
	return job->j.state == MG_JOB_VALIDATING;
}

int sched_ingest(sched_t *s, int64_t now)
{
	sched_job_t *job = NULL;
	for (size_t i = 0; i < s->n_jobs && job == NULL; i++)
		if (validating(s->jobs[i]))
			job = s->jobs[i];
	if (job == NULL)
		return 0;
	if (journal_in_tx(s->j) || journal_begin(s->j) < 0)
		return 1;
	ingest_params_t ip = ingest_params(s, job->j.name);
	bool eof = false;
	char e2[400];
	if (job->in == NULL) {
		int r = ingest_file_open(job->j.input_path, job->j.ingest_offset, job->j.ingest_line,
					 &job->in, e2, sizeof(e2));
		if (r == -EMFILE || r == -ENFILE) {
			/* Out of descriptors for now: not the batch's fault. The
			 * loop comes back within a second. */
			journal_rollback(s->j);
			if (!job->warned_open)
				mg_log(MG_LOG_WARN, "sched", "cannot open the input of a batch yet batch=%s err=\"%s\"",
				       job->j.name, strerror(-r));
			job->warned_open = true;
			return 0;
		}
		if (r < 0) {
			mg_log(MG_LOG_WARN, "sched", "cannot open the input of a batch batch=%s err=\"%s\"", job->j.name,
			       e2);
			snprintf(e2, sizeof(e2), "cannot open the batch's input file: %s", strerror(-r));
			add_error(job, 0, e2);
			eof = true;
		}
	}
	for (uint32_t i = 0; job->in != NULL && i < s->p.ingest_chunk; i++) {
		const char *text;
		size_t len;
		int64_t line = 0;
		int r = ingest_file_next(job->in, &text, &len, &line);
		if (r == 0) {
			eof = true;
			break;
		}
		if (r == -EFBIG) {
			snprintf(e2, sizeof(e2), "the line is longer than %u bytes", INGEST_LINE_MAX);
			add_error(job, line, e2);
			continue;
		}
		if (r < 0) {
			mg_log(MG_LOG_WARN, "sched", "cannot read the input of a batch batch=%s path=%s err=\"%s\"",
			       job->j.name, job->j.input_path, strerror(-r));
			snprintf(e2, sizeof(e2), "reading the batch's input file: %s", strerror(-r));
			add_error(job, 0, e2);
			eof = true;
			break;
		}
		if (line > JOURNAL_LINE_MAX) {
			add_error(job, line, "too many lines");
			eof = true;
			break;
		}
		ingest_line_t l = { 0 };
		r = ingest_line_parse(text, len, &ip, &l, e2, sizeof(e2));
		if (r == 0 && job->errors == NULL)
			r = accept_line(s, job, line, &l, e2, sizeof(e2));
		ingest_line_done(&l);
		if (r < 0) {
			add_error(job, line, e2);
			if (json_array_size(job->errors) >= ERRORS_MAX) {
				eof = true;
				break;
			}
		}
	}
	if (job->in != NULL) {
		job->j.ingest_offset = ingest_file_offset(job->in);
		job->j.ingest_line = ingest_file_line(job->in);
	}
	if (eof) {
		ingest_file_close(&job->in);
		if (job->errors == NULL && job->j.n_total == 0)
			add_error(job, 0, "the input file has no requests");
		if (job->errors != NULL) {
			fail_validation(s, job);
		} else {
			job->j.state = MG_JOB_IN_PROGRESS;
			job->j.in_progress_at = sched_wall_s();
			mg_log(MG_LOG_INFO, "sched", "batch validated batch=%s requests=%lld model=%s endpoint=%s",
			       job->j.name, (long long)job->j.n_total, job->j.model, job->j.endpoint);
		}
	}
	sched_job_save(s, job);
	if (journal_commit(s->j) < 0)
		mg_log(MG_LOG_ERROR, "sched", "journal: commit failed while validating batch=%s err=\"%s\"",
		       job->j.name, journal_errmsg(s->j));
	if (eof)
		sched_jobs_reap(s);
	(void)now;
	for (size_t i = 0; i < s->n_jobs; i++)
		if (validating(s->jobs[i]))
			return 1;
	return 0;
}

