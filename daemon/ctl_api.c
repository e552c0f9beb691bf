/* ctl_api: see ctl_api.h. */
#include "ctl_api.h"
#include "ctl.h"
#include "journal.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

static json_t *error_reply(const char *code, const char *msg)
{
	return json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", msg);
}

static const char *errno_code(int r)
{
	switch (r) {
	case -EINVAL: return "invalid_request";
	case -ENOENT: return "not_found";
	case -EEXIST: return "conflict";
	case -E2BIG: return "too_large";
	default: return "internal";
	}
}

static json_t *submit_sync(sched_t *s, json_t *req, int64_t now)
{
	const char *id = json_string_value(json_object_get(req, "id"));
	const char *ep = json_string_value(json_object_get(req, "endpoint"));
	json_t *lines = json_object_get(req, "requests");
	if (id == NULL || ep == NULL || !json_is_array(lines))
		return error_reply("invalid_request", "api.submit_sync: expected id, endpoint and requests");
	char name[JOURNAL_NAME_MAX], err[1024];
	int r = sched_submit_inline2(s, id, ep, NULL, lines, SCHED_SUBMIT_PRIORITY, now, name, err,
				     sizeof(err));
	if (r < 0)
		return error_reply(errno_code(r), err);
	journal_job_t job;
	if (journal_job_find(sched_journal(s), name, &job) < 0)
		return error_reply("internal", journal_errmsg(sched_journal(s)));
	return json_pack("{s:s, s:s}", "id", job.name, "state", mg_job_state_name(job.state));
}

struct gauges {
	const sched_t *s;
	int64_t queued, validating, in_progress, cancelling;
};

static int on_active(void *user, const journal_job_t *j)
{
	struct gauges *g = user;
	sched_job_live_t live;
	sched_job_live(g->s, j->name, &live);
	int64_t q = j->n_total - j->n_done - j->n_failed - j->n_cancelled - live.in_flight;
	if (j->state == MG_JOB_IN_PROGRESS) {
		g->in_progress++;
		if (q > 0)
			g->queued += q;
	} else if (j->state == MG_JOB_VALIDATING) {
		g->validating++;
	} else if (j->state == MG_JOB_CANCELLING) {
		g->cancelling++;
	}
	return 0;
}

static json_t *gauges(sched_t *s)
{
	struct gauges g = { s, 0, 0, 0, 0 };
	if (journal_jobs_active(sched_journal(s), on_active, &g) < 0)
		return error_reply("internal", journal_errmsg(sched_journal(s)));
	return json_pack("{s:I, s:{s:I, s:I, s:I}}", "requests_queued", (json_int_t)g.queued, "batches",
			 "validating", (json_int_t)g.validating, "in_progress", (json_int_t)g.in_progress,
			 "cancelling", (json_int_t)g.cancelling);
}

static int on_ctl(void *user, sched_t *s, const char *cmd, json_t *req, int64_t now, json_t **ret)
{
	json_t *reply;
	if (strcmp(cmd, "api.submit_sync") == 0)
		reply = submit_sync(s, req, now);
	else if (strcmp(cmd, "api.gauges") == 0)
		reply = gauges(s);
	else {
		char msg[200];
		snprintf(msg, sizeof(msg), "unknown command \"%.100s\" (api.submit_sync, api.gauges)", cmd);
		reply = error_reply("unknown_command", msg);
	}
	if (reply == NULL)
		return -ENOMEM;
	*ret = reply;
	return 0;
}

static void on_result(void *user, const char *job, const char *model, const char *worker_name,
		      const Margin__V1__Result *res, int64_t now)
{
	metrics_on_result(user, model ? model : "", worker_name ? worker_name : "", res);
}

int ctl_api_attach(sched_t *s, metrics_t *m)
{
	int r = ctl_add_extension("api.", on_ctl, m);
	if (r < 0)
		return r;
	sched_set_observer(s, &(sched_observer_t){ .on_result = on_result }, m);
	return 0;
}
