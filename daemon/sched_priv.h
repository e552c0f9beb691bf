/* sched_priv: what sched.c, sched_submit.c and sched_recover.c share.
 * Not for other modules: they use sched.h. All of it runs on the core
 * thread, as sched.h says. */
#ifndef SCHED_PRIV_H
#define SCHED_PRIV_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "htab.h"
#include "ingest.h"
#include "sched.h"

typedef struct sched_job sched_job_t;

typedef struct sched_shard {
	journal_shard_t js;
	sched_job_t *job;		/* borrowed: the active job it belongs to */
	reg_worker_t *worker;		/* borrowed: holder while in flight, else NULL */
	int64_t sent_ns;		/* monotonic time of the last dispatch */
	struct sched_shard *next, *prev;	/* in worker->shards or the job's retry queue */
} sched_shard_t;

struct sched_job {
	journal_job_t j;		/* the persisted row, kept current */
	sched_shard_t *retry_head, *retry_tail;	/* owned: shards queued for re-dispatch */
	sched_shard_t *suspect_head, *suspect_tail;	/* owned: suspects, run in isolation */
	int64_t n_retry;		/* in both queues */
	int64_t inflight_requests, inflight_shards;
	ingest_file_t *in;		/* owned: the input while this job is the one being
					 * validated (one at a time, oldest first); opened
					 * when its turn comes, so queued batches hold no
					 * file descriptor */
	json_t *errors;			/* owned: validation errors ([{code,line,message}]) */
	int64_t cancel_deadline;	/* monotonic; while cancelling */
	bool warned_no_worker;
	bool warned_open;		/* out of descriptors when its validation was due */
};

struct sched {
	journal_t *j;			/* borrowed */
	sched_params_t p;
	sched_send_fn send;
	void *user;			/* borrowed: send's context */
	registry_t *reg;		/* owned */
	htab_t *inflight;		/* owned table of owned shards, by id */
	sched_job_t **jobs;		/* owned: active jobs, oldest first */
	size_t n_jobs, cap_jobs;
	size_t rr;			/* round-robin cursor: the job after the last one served
					   (may equal n_jobs: a job added since is next) */
	size_t n_priority;		/* active jobs with priority > 0 */
	bool draining;
	bool group;			/* a group commit's transaction is open */
	struct pending_ack *acks;	/* owned: Acks held until the group commits */
	size_t n_acks, cap_acks;
	sched_observer_t obs;
	void *obs_user;			/* borrowed */
	int64_t inflight_requests, inflight_shards;
	uint64_t requests_answered, shards_committed;
	uint64_t results_ignored;	/* Results Ack'd and dropped: duplicates, stale attempts */
	int64_t next_check_ns;		/* periodic checks (workers for idle jobs) */
	int64_t garbage_window_ns;	/* rate limit of "dropped frame" lines */
	unsigned garbage_in_window, garbage_suppressed;
};

/* Wall-clock seconds (the journal's *_at columns). */
int64_t sched_wall_s(void);
/* Journal writes of a shard's or a job's row; a failure is logged (the
 * row is rewritten at its next change). */
void sched_shard_save(sched_t *s, const sched_shard_t *sh);
void sched_job_save(sched_t *s, const sched_job_t *job);
/* Queue sh (owned by job from now) for re-dispatch, suspects into their
 * own queue; sched_retry_pop takes any queued shard (NULL when none). */
void sched_retry_push(sched_job_t *job, sched_shard_t *sh, bool front);
sched_shard_t *sched_retry_pop(sched_job_t *job);
/* Frees job and the shards it queues (NULL-safe). */
void sched_job_free(sched_job_t *job);
/* Appends job (owned by s from now) to the active jobs: 0 or -ENOMEM. */
int sched_jobs_push(sched_t *s, sched_job_t *job);
/* Drops finished jobs with nothing in flight from the active list. */
void sched_jobs_reap(sched_t *s);
/* The end of a cancel: what was left counts cancelled, state cancelled. */
void sched_job_finish_cancel(sched_t *s, sched_job_t *job);
/* sched_recover.c: the active jobs and their pending shards from the
 * journal (sched_new). 0 or a negative errno with err filled. */
int sched_recover(sched_t *s, char *err, size_t errlen);

#endif
