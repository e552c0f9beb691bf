/* sched: recovery, the active jobs and their pending shards read back
 * from the journal when the scheduler starts. See sched.h. */
#include "sched.h"
#include "sched_priv.h"
#include "lib/mg_log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

/* --- recovery --------------------------------------------------------- */

static int on_active_row(void *user, const journal_job_t *row)
{
	sched_t *s = user;
	sched_job_t *job = calloc(1, sizeof(*job));
	if (job == NULL)
		return -ENOMEM;
	job->j = *row;
	if (sched_jobs_push(s, job) < 0) {
		free(job);
		return -ENOMEM;
	}
	return 0;
}

struct recover_ctx {
	sched_t *s;
	sched_job_t *job;
	int64_t requeued;
};

static int on_pending_shard(void *user, const journal_shard_t *row)
{
	struct recover_ctx *rc = user;
	sched_shard_t *sh = calloc(1, sizeof(*sh));
	if (sh == NULL)
		return -ENOMEM;
	sh->js = *row;
	sh->job = rc->job;
	sched_retry_push(rc->job, sh, false);
	rc->requeued++;
	return 0;
}

int sched_recover(sched_t *s, char *err, size_t errlen)
{
	int r = journal_jobs_active(s->j, on_active_row, s);
	if (r < 0) {
		snprintf(err, errlen, "journal: reading the active batches: %s", journal_errmsg(s->j));
		return r;
	}
	if ((r = journal_begin(s->j)) < 0) {
		snprintf(err, errlen, "journal: %s", journal_errmsg(s->j));
		return r;
	}
	/* The registry starts empty: workers say Hello again. */
	journal_workers_gone(s->j, "margind restarted");
	for (size_t i = 0; i < s->n_jobs; i++) {
		sched_job_t *job = s->jobs[i];
		journal_job_t *j = &job->j;
		struct recover_ctx rc = { s, job, 0 };
		r = journal_shards_pending(s->j, j->id, on_pending_shard, &rc);
		if (r < 0) {
			snprintf(err, errlen, "journal: reading the shards of batch %s: %s", j->name,
				 journal_errmsg(s->j));
			goto fail;
		}
		/* Shards that were at workers are queued again, their attempt kept:
		 * the next dispatch is attempt+1, so a late Result of the old one is
		 * recognized as stale. */
		for (sched_shard_t *sh = job->retry_head; sh != NULL; sh = sh->next) {
			snprintf(sh->js.state, sizeof(sh->js.state), "%s",
				 j->state == MG_JOB_IN_PROGRESS ? "queued" : "cancelled");
			sh->js.worker[0] = '\0';
			sched_shard_save(s, sh);
		}
		if (j->state == MG_JOB_VALIDATING) {
			/* Validation errors lived in memory: start the file over. */
			journal_requests_delete(s->j, j->id);
			j->n_total = j->max_line = j->ingest_offset = j->ingest_line = 0;
			j->model[0] = '\0';
			j->next_line = 1;
			sched_job_save(s, job);
		} else if (j->state == MG_JOB_CANCELLING) {
			sched_shard_t *sh;
			while ((sh = sched_retry_pop(job)) != NULL)
				free(sh);
			sched_job_finish_cancel(s, job);
		}
		mg_log(MG_LOG_INFO, "sched", "batch resumed batch=%s state=%s total=%lld done=%lld failed=%lld shards_requeued=%lld",
		       j->name, mg_job_state_name(j->state), (long long)j->n_total, (long long)j->n_done,
		       (long long)j->n_failed, (long long)rc.requeued);
	}
	if ((r = journal_commit(s->j)) < 0) {
		snprintf(err, errlen, "journal: %s", journal_errmsg(s->j));
		return r;
	}
	sched_jobs_reap(s);
	return 0;
fail:
	journal_rollback(s->j);
	return r;
}

