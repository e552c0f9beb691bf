/* sched: see sched.h. The dispatch loop, workers, results, timers and
 * cancellation; submission and validation are in sched_submit.c, recovery
 * from the journal in sched_recover.c. */
#include "sched.h"
#include "sched_priv.h"
#include "htab.h"
#include "ingest.h"
#include "lib/mg_clock.h"
#include "lib/mg_log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>


void sched_params_default(sched_params_t *p)
{
	*p = (sched_params_t){
		.heartbeat_ns = 1000 * MG_NS_PER_MS,
		.liveness = 3,
		.shard_max_requests = 64,
		.shard_max_tokens = 65536,
		.max_attempts = 3,
		.default_max_tokens = 256,
		.max_tokens_cap = 1u << 20,
		.cancel_grace_ns = 30 * MG_NS_PER_S,
		.shard_timeout_ns = 0,
		.ingest_chunk = 2048,
		.inline_max = 10000,
		.max_credit = 1024,
	};
}

int64_t sched_wall_s(void)
{
	return mg_clock_wall_ns() / MG_NS_PER_S;
}

static bool job_terminal(const sched_job_t *job)
{
	return mg_job_state_terminal(job->j.state);
}

/* A shard that failed SPLIT_AFTER times (after the split: a single request
 * that was in crashed dispatches) may be the poison: it runs alone. */
static bool suspect(const sched_shard_t *sh)
{
	return sh->js.fails >= SCHED_SPLIT_AFTER;
}

static bool job_has_work(const sched_job_t *job)
{
	return job->j.state == MG_JOB_IN_PROGRESS &&
	       (job->retry_head != NULL || job->suspect_head != NULL ||
		job->j.next_line <= job->j.max_line);
}

/* w serves the job's model, and for an embeddings job embeds with it: a
 * worker that does not (ModelInfo.embed_dims 0, e.g. one older than
 * embeddings) never gets an embedding request. */
static bool can_serve(const reg_worker_t *w, const sched_job_t *job)
{
	if (strcmp(job->j.endpoint, INGEST_EP_EMBEDDINGS) == 0)
		return registry_embeds(w, job->j.model);
	return registry_serves(w, job->j.model);
}

/* Work that w may take now: suspects only on an empty worker. */

static bool job_has_work_for(const sched_job_t *job, const reg_worker_t *w)
{
	return job->j.state == MG_JOB_IN_PROGRESS &&
	       (job->retry_head != NULL || job->j.next_line <= job->j.max_line ||
		(job->suspect_head != NULL && w->n_shards == 0));
}

static sched_job_t *find_job(const sched_t *s, const char *name)
{
	for (size_t i = 0; i < s->n_jobs; i++)
		if (strcmp(s->jobs[i]->j.name, name) == 0)
			return s->jobs[i];
	return NULL;
}

/* --- transactions ----------------------------------------------------- */

/* Open a transaction unless the caller already has one; tx_end commits
 * only what tx_begin opened. */
static bool tx_begin(sched_t *s)
{
	if (journal_in_tx(s->j))
		return false;
	if (journal_begin(s->j) < 0) {
		mg_log(MG_LOG_ERROR, "sched", "journal: cannot begin a transaction err=\"%s\"",
		       journal_errmsg(s->j));
		return false;
	}
	return true;
}

static void tx_end(sched_t *s, bool opened)
{
	if (opened && journal_commit(s->j) < 0)
		mg_log(MG_LOG_ERROR, "sched", "journal: commit failed err=\"%s\"", journal_errmsg(s->j));
}

/* --- shard lists ------------------------------------------------------ */

static void queue_push(sched_shard_t **head, sched_shard_t **tail, sched_shard_t *sh, bool front)
{
	sh->worker = NULL;
	sh->prev = sh->next = NULL;
	if (front) {
		sh->next = *head;
		if (*head)
			(*head)->prev = sh;
		else
			*tail = sh;
		*head = sh;
	} else {
		sh->prev = *tail;
		if (*tail)
			(*tail)->next = sh;
		else
			*head = sh;
		*tail = sh;
	}
}

static sched_shard_t *queue_pop(sched_shard_t **head, sched_shard_t **tail)
{
	sched_shard_t *sh = *head;
	if (sh == NULL)
		return NULL;
	*head = sh->next;
	if (*head)
		(*head)->prev = NULL;
	else
		*tail = NULL;
	sh->next = sh->prev = NULL;
	return sh;
}

/* Queue sh for re-dispatch: suspects into their own queue. */
void sched_retry_push(sched_job_t *job, sched_shard_t *sh, bool front)
{
	if (suspect(sh))
		queue_push(&job->suspect_head, &job->suspect_tail, sh, front);
	else
		queue_push(&job->retry_head, &job->retry_tail, sh, front);
	job->n_retry++;
}

/* The next shard to re-dispatch; suspects only when isolated is allowed. */
static sched_shard_t *retry_pop2(sched_job_t *job, bool isolated)
{
	sched_shard_t *sh = NULL;
	if (isolated)
		sh = queue_pop(&job->suspect_head, &job->suspect_tail);
	if (sh == NULL)
		sh = queue_pop(&job->retry_head, &job->retry_tail);
	if (sh != NULL)
		job->n_retry--;
	return sh;
}

/* Any queued shard (teardown, cancel). */
sched_shard_t *sched_retry_pop(sched_job_t *job)
{
	return retry_pop2(job, true);
}

static void worker_attach(reg_worker_t *w, sched_shard_t *sh)
{
	sh->worker = w;
	sh->prev = NULL;
	sh->next = w->shards;
	if (w->shards)
		w->shards->prev = sh;
	w->shards = sh;
	w->n_shards++;
}

/* Takes an in-flight shard out of its worker, the in-flight table and the
 * job's counters; the caller then owns it. */
static void inflight_detach(sched_t *s, sched_shard_t *sh)
{
	reg_worker_t *w = sh->worker;
	if (w != NULL) {
		if (sh->prev)
			sh->prev->next = sh->next;
		else
			w->shards = sh->next;
		if (sh->next)
			sh->next->prev = sh->prev;
		w->n_shards--;
		if (suspect(sh))
			w->n_isolated--;
	}
	sh->worker = NULL;
	sh->next = sh->prev = NULL;
	htab_remove_u64(s->inflight, (uint64_t)sh->js.id);
	sh->job->inflight_requests -= sh->js.n_requests;
	sh->job->inflight_shards--;
	s->inflight_requests -= sh->js.n_requests;
	s->inflight_shards--;
}

void sched_shard_save(sched_t *s, const sched_shard_t *sh)
{
	if (journal_shard_update(s->j, &sh->js) < 0)
		mg_log(MG_LOG_ERROR, "sched", "journal: shard update failed batch=%s shard=%lld err=\"%s\"",
		       sh->job->j.name, (long long)sh->js.id, journal_errmsg(s->j));
}

void sched_job_save(sched_t *s, const sched_job_t *job)
{
	if (journal_job_update(s->j, &job->j) < 0)
		mg_log(MG_LOG_ERROR, "sched", "journal: job update failed batch=%s err=\"%s\"",
		       job->j.name, journal_errmsg(s->j));
}

/* --- job lifecycle ---------------------------------------------------- */

void sched_job_free(sched_job_t *job)
{
	if (job == NULL)
		return;
	sched_shard_t *sh;
	while ((sh = sched_retry_pop(job)) != NULL)
		free(sh);
	ingest_file_close(&job->in);
	json_decref(job->errors);
	free(job);
}

int sched_jobs_push(sched_t *s, sched_job_t *job)
{
	if (s->n_jobs == s->cap_jobs) {
		size_t nc = s->cap_jobs ? s->cap_jobs * 2 : 16;
		sched_job_t **nv = realloc(s->jobs, nc * sizeof(*nv));
		if (nv == NULL)
			return -ENOMEM;
		s->jobs = nv;
		s->cap_jobs = nc;
	}
	s->jobs[s->n_jobs++] = job;
	if (job->j.priority > 0)
		s->n_priority++;
	return 0;
}

/* Drop finished jobs with nothing in flight from the active list. */
void sched_jobs_reap(sched_t *s)
{
	size_t k = 0;
	for (size_t i = 0; i < s->n_jobs; i++) {
		sched_job_t *job = s->jobs[i];
		if (job_terminal(job) && job->inflight_shards == 0) {
			if (i < s->rr && s->rr > 0)
				s->rr--;
			if (job->j.priority > 0)
				s->n_priority--;
			sched_job_free(job);
			continue;
		}
		s->jobs[k++] = job;
	}
	s->n_jobs = k;
	if (s->rr > s->n_jobs)
		s->rr = 0;
}

void sched_job_finish_cancel(sched_t *s, sched_job_t *job)
{
	journal_job_t *j = &job->j;
	int64_t rest = j->n_total - j->n_done - j->n_failed - j->n_cancelled;
	if (rest > 0)
		j->n_cancelled += rest;
	j->state = MG_JOB_CANCELLED;
	j->cancelled_at = sched_wall_s();
	sched_job_save(s, job);
	mg_log(MG_LOG_INFO, "sched", "batch cancelled batch=%s done=%lld failed=%lld cancelled=%lld",
	       j->name, (long long)j->n_done, (long long)j->n_failed, (long long)j->n_cancelled);
}

/* After a job's counters moved: completed or cancelled when nothing is left. */
static void job_check_done(sched_t *s, sched_job_t *job)
{
	journal_job_t *j = &job->j;
	if (j->state == MG_JOB_CANCELLING && job->inflight_shards == 0) {
		sched_job_finish_cancel(s, job);
		return;
	}
	if (j->state == MG_JOB_IN_PROGRESS &&
	    j->n_done + j->n_failed + j->n_cancelled >= j->n_total) {
		j->state = MG_JOB_COMPLETED;
		j->completed_at = sched_wall_s();
		mg_log(MG_LOG_INFO, "sched", "batch completed batch=%s total=%lld done=%lld failed=%lld",
		       j->name, (long long)j->n_total, (long long)j->n_done, (long long)j->n_failed);
	}
}

/* --- workers ---------------------------------------------------------- */

static int send_to(sched_t *s, const reg_worker_t *w, const mg_msg_t *m)
{
	return s->send(s->user, w->ident, w->ident_len, m);
}

static void send_bye(sched_t *s, const uint8_t *ident, size_t len, const char *reason)
{
	Margin__V1__Bye bye = MARGIN__V1__BYE__INIT;
	bye.reason = (char *)reason;
	mg_msg_t m = MARGIN__V1__MSG__INIT;
	m.body_case = MARGIN__V1__MSG__BODY_BYE;
	m.bye = &bye;
	s->send(s->user, ident, len, &m);
}

static void send_ack(sched_t *s, const uint8_t *ident, size_t len, uint64_t shard, uint32_t attempt)
{
	Margin__V1__Ack ack = MARGIN__V1__ACK__INIT;
	ack.shard_id = shard;
	ack.attempt = attempt;
	mg_msg_t m = MARGIN__V1__MSG__INIT;
	m.body_case = MARGIN__V1__MSG__BODY_ACK;
	m.ack = &ack;
	s->send(s->user, ident, len, &m);
}

struct pending_ack {
	uint8_t ident[REGISTRY_IDENT_MAX];
	size_t len;
	uint64_t shard;
	uint32_t attempt;
};

static void defer_ack(sched_t *s, const uint8_t *ident, size_t len, uint64_t shard, uint32_t attempt)
{
	if (s->n_acks == s->cap_acks) {
		size_t nc = s->cap_acks ? s->cap_acks * 2 : 64;
		struct pending_ack *nv = realloc(s->acks, nc * sizeof(*nv));
		if (nv == NULL)
			return;	/* the worker re-sends; the duplicate is Ack'd then */
		s->acks = nv;
		s->cap_acks = nc;
	}
	struct pending_ack *a = &s->acks[s->n_acks++];
	a->len = len < sizeof(a->ident) ? len : sizeof(a->ident);
	memcpy(a->ident, ident, a->len);
	a->shard = shard;
	a->attempt = attempt;
}

/* A dispatch of sh ended without a Result. Requeue it, split it, or answer
 * its single request with an error. Caller detached it from its worker.
 * blame: the attempt counts as a failure (the worker died or sent garbage);
 * false when the worker left in order (Bye), which says nothing about the
 * requests. */
static void shard_failed(sched_t *s, sched_shard_t *sh, const char *reason, bool blame)
{
	sched_job_t *job = sh->job;
	bool opened = tx_begin(s);
	if (job->j.state != MG_JOB_IN_PROGRESS) {
		/* cancelling: nothing more to do for it. */
		snprintf(sh->js.state, sizeof(sh->js.state), "cancelled");
		sched_shard_save(s, sh);
		free(sh);
		job_check_done(s, job);
		tx_end(s, opened);
		return;
	}
	sh->js.worker[0] = '\0';
	if (blame) {
		sh->js.fails++;
		journal_requests_bump_attempts(s->j, job->j.id, sh->js.first_line, sh->js.last_line);
	}
	if (blame && sh->js.n_requests <= 1 && sh->js.fails >= s->p.max_attempts) {
		char msg[384];
		snprintf(msg, sizeof(msg), "request failed %u attempts; the last one: %s",
			 sh->js.fails, reason);
		int r = journal_request_finish(s->j, job->j.id, sh->js.first_line, "failed",
					       "worker_failed", msg);
		snprintf(sh->js.state, sizeof(sh->js.state), "failed");
		sched_shard_save(s, sh);
		if (r == 0)
			job->j.n_failed++;
		mg_log(MG_LOG_WARN, "sched", "request failed for good batch=%s shard=%lld line=%lld attempts=%u reason=\"%s\"",
		       job->j.name, (long long)sh->js.id, (long long)sh->js.first_line, sh->js.fails, reason);
		free(sh);
		job_check_done(s, job);
		sched_job_save(s, job);
		tx_end(s, opened);
		return;
	}
	if (blame && sh->js.n_requests > 1 && sh->js.fails >= SCHED_SPLIT_AFTER) {
		int64_t *lines = NULL;
		int n = journal_queued_lines(s->j, job->j.id, sh->js.first_line, sh->js.last_line, &lines);
		if (n >= 0) {
			snprintf(sh->js.state, sizeof(sh->js.state), "split");
			sched_shard_save(s, sh);
			mg_log(MG_LOG_WARN, "sched", "shard split into single requests batch=%s shard=%lld lines=%lld-%lld fails=%u reason=\"%s\"",
			       job->j.name, (long long)sh->js.id, (long long)sh->js.first_line,
			       (long long)sh->js.last_line, sh->js.fails, reason);
			for (int i = 0; i < n; i++) {
				sched_shard_t *one = calloc(1, sizeof(*one));
				if (one == NULL)
					break;
				one->job = job;
				one->js.job = job->j.id;
				one->js.first_line = one->js.last_line = lines[i];
				one->js.n_requests = 1;
				one->js.fails = sh->js.fails;
				snprintf(one->js.state, sizeof(one->js.state), "queued");
				if (journal_shard_insert(s->j, &one->js) < 0) {
					free(one);
					break;
				}
				sched_retry_push(job, one, false);
			}
			free(lines);
			free(sh);
			tx_end(s, opened);
			return;
		}
	}
	snprintf(sh->js.state, sizeof(sh->js.state), "queued");
	sched_shard_save(s, sh);
	mg_log(MG_LOG_INFO, "sched", "shard requeued batch=%s shard=%lld attempt=%u fails=%u reason=\"%s\"",
	       job->j.name, (long long)sh->js.id, sh->js.attempt, sh->js.fails, reason);
	sched_retry_push(job, sh, true);
	tx_end(s, opened);
}

/* w is gone: every shard it held goes back (a failed attempt when blame);
 * it leaves the registry. */
static void worker_lost(sched_t *s, reg_worker_t **pw, const char *reason, bool blame)
{
	reg_worker_t *w = *pw;
	mg_log(MG_LOG_WARN, "sched", "worker lost worker=%s name=%s shards=%u reason=\"%s\"",
	       w->id, w->name, w->n_shards, reason);
	bool opened = tx_begin(s);
	while (w->shards != NULL) {
		sched_shard_t *sh = w->shards;
		inflight_detach(s, sh);
		shard_failed(s, sh, reason, blame);
	}
	journal_worker_leave(s->j, w->db_id, reason);
	tx_end(s, opened);
	registry_remove(s->reg, pw);
}

static void send_welcome(sched_t *s, reg_worker_t *w)
{
	Margin__V1__Welcome wl = MARGIN__V1__WELCOME__INIT;
	wl.worker_id = w->id;
	wl.heartbeat_ms = (uint32_t)(s->p.heartbeat_ns / MG_NS_PER_MS);
	wl.liveness = s->p.liveness;
	mg_msg_t m = MARGIN__V1__MSG__INIT;
	m.body_case = MARGIN__V1__MSG__BODY_WELCOME;
	m.welcome = &wl;
	send_to(s, w, &m);
}

static char *models_json(const Margin__V1__Hello *h)
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < h->n_models; i++)
		json_array_append_new(a, json_pack("{s:s, s:s, s:I, s:i, s:s, s:s, s:I, s:I}",
			"name", h->models[i]->name, "arch", h->models[i]->arch,
			"n_params", (json_int_t)h->models[i]->n_params,
			"n_ctx", (int)h->models[i]->n_ctx,
			"kv_type", h->models[i]->kv_type ? h->models[i]->kv_type : "",
			"arith", h->models[i]->arith ? h->models[i]->arith : "",
			"kv_bytes", (json_int_t)h->models[i]->kv_bytes,
			"weight_bytes", (json_int_t)h->models[i]->weight_bytes));
	char *t = a ? json_dumps(a, JSON_COMPACT) : NULL;
	json_decref(a);
	return t;
}

static void on_hello(sched_t *s, const uint8_t *ident, size_t len, const Margin__V1__Hello *h,
		     const char *key, int64_t now)
{
	char idbuf[80];
	const char *peer = registry_ident_str(ident, len, idbuf, sizeof(idbuf));
	reg_worker_t *w = registry_find(s->reg, ident, len);
	if (h->proto_version != MG_PROTO_VERSION) {
		char reason[160];
		snprintf(reason, sizeof(reason), "protocol version %u is not supported: margind speaks version %u",
			 h->proto_version, MG_PROTO_VERSION);
		mg_log(MG_LOG_WARN, "sched", "refused a worker peer=%s name=%s reason=\"%s\"", peer,
		       h->worker_name, reason);
		if (w != NULL)
			worker_lost(s, &w, reason, false);
		send_bye(s, ident, len, reason);
		return;
	}
	if (h->n_models == 0) {
		mg_log(MG_LOG_WARN, "sched", "refused a worker peer=%s name=%s reason=\"no models in Hello\"",
		       peer, h->worker_name);
		if (w != NULL)
			worker_lost(s, &w, "Hello without models", false);
		send_bye(s, ident, len, "Hello lists no models");
		return;
	}
	bool reconnect = false;
	if (w != NULL && w->instance_id != h->instance_id) {
		worker_lost(s, &w, "the worker restarted (new instance)", true);
	} else if (w != NULL) {
		reconnect = true;
	} else {
		w = registry_find_instance(s->reg, h->instance_id);
		if (w != NULL) {
			if (registry_rebind(s->reg, w, ident, len) < 0) {
				worker_lost(s, &w, "out of memory", false);
			} else {
				reconnect = true;
			}
		}
	}
	if (w == NULL) {
		w = registry_add(s->reg, ident, len);
		if (w == NULL) {
			mg_log(MG_LOG_ERROR, "sched", "cannot register a worker peer=%s (out of memory or identity too long)", peer);
			return;
		}
		char *mj = models_json(h);
		int r = journal_worker_join(s->j, h->worker_name, h->instance_id, h->hardware_profile,
					    h->build, mj ? mj : "[]", h->slots, h->threads,
					    key ? key : "", &w->db_id);
		free(mj);
		if (r < 0)
			mg_log(MG_LOG_ERROR, "sched", "journal: worker join failed err=\"%s\"", journal_errmsg(s->j));
		snprintf(w->id, sizeof(w->id), "w%lld", (long long)w->db_id);
		w->joined_ns = now;
	}
	if (registry_set_models(w, h->models, h->n_models) < 0) {
		worker_lost(s, &w, "out of memory", false);
		return;
	}
	snprintf(w->name, sizeof(w->name), "%s", h->worker_name);
	snprintf(w->hardware_profile, sizeof(w->hardware_profile), "%s", h->hardware_profile);
	snprintf(w->build, sizeof(w->build), "%s", h->build);
	snprintf(w->key, sizeof(w->key), "%s", key ? key : "");
	w->slots = h->slots;
	w->threads = h->threads;
	w->instance_id = h->instance_id;
	w->credit = 0;		/* the worker sends Credit after Welcome */
	w->last_seen_ns = now;
	w->expiry_ns = now + s->p.heartbeat_ns * s->p.liveness;
	w->next_hb_ns = now + s->p.heartbeat_ns;
	send_welcome(s, w);
	for (size_t i = 0; i < s->n_jobs; i++)
		if (can_serve(w, s->jobs[i]))
			s->jobs[i]->warned_no_worker = false;
	mg_log(MG_LOG_INFO, "sched", "%s worker=%s name=%s peer=%s model=%s slots=%u hardware=%s key=%s shards=%u",
	       reconnect ? "worker reconnected" : "worker joined", w->id, w->name, peer,
	       w->n_models ? w->models[0].name : "", w->slots, w->hardware_profile,
	       w->key[0] ? w->key : "-", w->n_shards);
}

/* --- results ---------------------------------------------------------- */

static void on_result(sched_t *s, reg_worker_t *w, const uint8_t *ident, size_t len,
		      const Margin__V1__Result *res, int64_t now)
{
	sched_shard_t *sh = htab_find_u64(s->inflight, res->shard_id);
	if (sh == NULL || w == NULL || sh->worker != w || sh->js.attempt != res->attempt ||
	    strcmp(sh->job->j.name, res->batch_id) != 0) {
		/* A duplicate, a stale attempt, a shard given to someone else or
		 * finished: Ack so the worker stops re-sending, commit nothing. */
		s->results_ignored++;
		mg_log(MG_LOG_DEBUG, "sched", "ignored a result batch=%s shard=%llu attempt=%u worker=%s current_attempt=%u",
		       res->batch_id, (unsigned long long)res->shard_id, res->attempt,
		       w ? w->id : "unregistered", sh ? sh->js.attempt : 0);
		send_ack(s, ident, len, res->shard_id, res->attempt);
		return;
	}
	sched_job_t *job = sh->job;
	journal_job_t saved = job->j;
	journal_counts_t c;
	memset(&c, 0, sizeof(c));
	char err[512];
	/* In a group commit this Result is a savepoint of the group's
	 * transaction; alone it is its own transaction. */
	bool grouped = s->group;
	int r = grouped ? journal_savepoint(s->j) : journal_begin(s->j);
	if (r == 0) {
		journal_result_ctx_t ctx = { &job->j, &sh->js, w->id, w->name, w->hardware_profile };
		r = journal_result_apply(s->j, &ctx, res, &c, err, sizeof(err));
	} else {
		snprintf(err, sizeof(err), "%s", journal_errmsg(s->j));
	}
	if (r == -EBADMSG) {
		if (grouped)
			journal_rollback_savepoint(s->j);
		else
			journal_rollback(s->j);
		mg_log(MG_LOG_WARN, "sched", "malformed result batch=%s shard=%lld attempt=%u worker=%s err=\"%s\"",
		       job->j.name, (long long)sh->js.id, res->attempt, w->id, err);
		send_ack(s, ident, len, res->shard_id, res->attempt);
		inflight_detach(s, sh);
		shard_failed(s, sh, "malformed result", true);
		return;
	}
	if (r == 0) {
		job->j.n_done += c.done;
		job->j.n_failed += c.failed;
		job->j.n_cancelled += c.cancelled;
		journal_usage_t *u = &job->j.usage;
		u->calls += c.usage.calls;
		u->prompt_tokens += c.usage.prompt_tokens;
		u->completion_tokens += c.usage.completion_tokens;
		u->busy_ns += c.usage.busy_ns;
		u->flops += c.usage.flops;
		u->cost_marginal_micros += c.usage.cost_marginal_micros;
		u->cost_loaded_micros += c.usage.cost_loaded_micros;
		snprintf(sh->js.state, sizeof(sh->js.state), "done");
		r = journal_shard_update(s->j, &sh->js);
		if (r == 0)
			r = journal_shard_stats(s->j, sh->js.id, res->step_stats);
		/* inflight_shards still counts sh: job_check_done sees 1 for a
		 * cancelling job, so look at it after the shard is detached. */
		if (r == 0 && job->j.state == MG_JOB_IN_PROGRESS)
			job_check_done(s, job);
		if (r == 0)
			r = journal_job_update(s->j, &job->j);
		if (r == 0)
			r = grouped ? journal_release(s->j) : journal_commit(s->j);
		if (r < 0)
			snprintf(err, sizeof(err), "%s", journal_errmsg(s->j));
	}
	if (r < 0) {
		/* The journal refused (disk full, I/O): no Ack, so the worker
		 * sends the Result again and we retry the commit then. */
		if (grouped)
			journal_rollback_savepoint(s->j);
		else
			journal_rollback(s->j);
		job->j = saved;
		snprintf(sh->js.state, sizeof(sh->js.state), "inflight");
		mg_log(MG_LOG_ERROR, "sched", "cannot commit a result batch=%s shard=%lld worker=%s err=\"%s\"",
		       job->j.name, (long long)sh->js.id, w->id, err);
		return;
	}
	if (grouped)
		defer_ack(s, ident, len, res->shard_id, res->attempt);
	else
		send_ack(s, ident, len, res->shard_id, res->attempt);
	if (s->obs.on_result != NULL)
		s->obs.on_result(s->obs_user, job->j.name, job->j.model, w->name, res, now);
	int64_t n = sh->js.n_requests;
	inflight_detach(s, sh);
	w->shards_done++;
	w->requests_done += (uint64_t)n;
	s->shards_committed++;
	s->requests_answered += (uint64_t)n;
	mg_log(MG_LOG_DEBUG, "sched", "shard done batch=%s shard=%lld attempt=%u worker=%s requests=%lld done=%lld failed=%lld",
	       job->j.name, (long long)sh->js.id, sh->js.attempt, w->id, (long long)n,
	       (long long)c.done, (long long)c.failed);
	free(sh);
	if (job->j.state == MG_JOB_CANCELLING && job->inflight_shards == 0) {
		bool opened = tx_begin(s);
		sched_job_finish_cancel(s, job);
		tx_end(s, opened);
	}
}

/* --- frames ----------------------------------------------------------- */

static void log_garbage(sched_t *s, const uint8_t *ident, size_t len, const char *what, int64_t now)
{
	char idbuf[80];
	if (now - s->garbage_window_ns >= MG_NS_PER_S) {
		if (s->garbage_suppressed > 0)
			mg_log(MG_LOG_WARN, "sched", "dropped more frames from the worker endpoint count=%u",
			       s->garbage_suppressed);
		s->garbage_window_ns = now;
		s->garbage_in_window = 0;
		s->garbage_suppressed = 0;
	}
	if (++s->garbage_in_window > 20) {
		s->garbage_suppressed++;
		return;
	}
	mg_log(MG_LOG_WARN, "sched", "dropped a frame from the worker endpoint peer=%s err=\"%s\"",
	       registry_ident_str(ident, len, idbuf, sizeof(idbuf)), what);
}

void sched_on_garbage(sched_t *s, const uint8_t *ident, size_t ident_len, const char *what,
		      int64_t now)
{
	log_garbage(s, ident, ident_len, what, now);
}

void sched_on_frame(sched_t *s, const uint8_t *ident, size_t ident_len, const void *data,
		    size_t len, size_t max_frame, const char *key, int64_t now)
{
	mg_msg_t *m = NULL;
	char err[256];
	if (mg_wire_unpack(data, len, max_frame, &m, err, sizeof(err)) < 0) {
		log_garbage(s, ident, ident_len, err, now);
		return;
	}
	reg_worker_t *w = registry_find(s->reg, ident, ident_len);
	if (w != NULL) {
		w->last_seen_ns = now;
		w->expiry_ns = now + s->p.heartbeat_ns * s->p.liveness;
	}
	switch (m->body_case) {
	case MARGIN__V1__MSG__BODY_HELLO:
		on_hello(s, ident, ident_len, m->hello, key, now);
		break;
	case MARGIN__V1__MSG__BODY_CREDIT:
		if (w != NULL) {
			uint64_t c = (uint64_t)w->credit + m->credit->n;
			w->credit = c > s->p.max_credit ? s->p.max_credit : (uint32_t)c;
		}
		break;
	case MARGIN__V1__MSG__BODY_HEARTBEAT:
		break;
	case MARGIN__V1__MSG__BODY_RESULT:
		on_result(s, w, ident, ident_len, m->result, now);
		break;
	case MARGIN__V1__MSG__BODY_BYE:
		if (w != NULL) {
			char reason[300];
			snprintf(reason, sizeof(reason), "worker said bye: %s", m->bye->reason);
			worker_lost(s, &w, reason, false);
		}
		break;
	default: {
		char what[96];
		snprintf(what, sizeof(what), "unexpected %s message (daemon -> worker only)",
			 mg_wire_body_name(m));
		log_garbage(s, ident, ident_len, what, now);
		break;
	}
	}
	mg_wire_free(&m);
}

/* --- dispatch --------------------------------------------------------- */

struct fill {
	const sched_params_t *p;
	ingest_req_t *reqs;
	int n, cap;
	uint64_t tokens;
	uint64_t vec_bytes;	/* embeddings: the vectors' bytes so far */
	uint32_t embed_dims;	/* the taking worker's, for requests without dimensions */
	bool cut;		/* a new shard: stop at the token and vector budgets */
};

static int on_row(void *user, int64_t line, const char *cid, const char *body, int64_t est)
{
	struct fill *f = user;
	if (f->n >= f->cap)
		return 1;
	if (f->cut && f->n > 0 && f->tokens + (uint64_t)est > f->p->shard_max_tokens)
		return 1;
	ingest_req_t *q = &f->reqs[f->n];
	int r = ingest_req_fill(q, line, cid, body);
	if (r < 0)
		return r;
	uint64_t vb = q->pb.n_inputs * (uint64_t)(q->pb.dimensions ? q->pb.dimensions : f->embed_dims) * 4;
	if (f->cut && f->n > 0 && f->vec_bytes + vb > SCHED_EMBED_SHARD_BYTES) {
		ingest_req_done(q);
		return 1;
	}
	f->n++;
	f->tokens += (uint64_t)est;
	f->vec_bytes += vb;
	return 0;
}

/* Cut (or take from the retry queue) one shard of job and send it to w.
 * Returns 1 when a shard went out, 0 when the job had nothing after all,
 * < 0 when w cannot take it (then w is dropped or out of credit). */
static int dispatch_one(sched_t *s, reg_worker_t **pw, sched_job_t *job, int64_t now)
{
	reg_worker_t *w = *pw;
	bool fresh = false;
	sched_shard_t *sh = retry_pop2(job, w->n_shards == 0);
	int cap = (int)s->p.shard_max_requests;
	if (sh == NULL) {
		sh = calloc(1, sizeof(*sh));
		if (sh == NULL)
			return -ENOMEM;
		sh->job = job;
		sh->js.job = job->j.id;
		sh->js.first_line = job->j.next_line;
		sh->js.last_line = JOURNAL_LINE_MAX;
		fresh = true;
	} else if (sh->js.n_requests > cap) {
		cap = (int)sh->js.n_requests;
	}
	const reg_model_t *wm = registry_model(w, job->j.model);
	struct fill f = { &s->p, calloc((size_t)cap, sizeof(ingest_req_t)), 0, cap, 0, 0,
			  wm ? wm->embed_dims : 0, fresh };
	Margin__V1__Request **ptrs = calloc((size_t)cap, sizeof(*ptrs));
	int r = -ENOMEM;
	if (f.reqs == NULL || ptrs == NULL)
		goto fail;
	r = journal_requests_queued(s->j, job->j.id, sh->js.first_line, sh->js.last_line, cap,
				    on_row, &f);
	if (r < 0) {
		mg_log(MG_LOG_ERROR, "sched", "journal: cannot read requests batch=%s lines=%lld- err=\"%s\"",
		       job->j.name, (long long)sh->js.first_line,
		       r == -EBADMSG ? "a stored body is corrupt" : journal_errmsg(s->j));
		goto fail;
	}
	if (f.n == 0) {
		/* Nothing queued there any more. */
		if (fresh) {
			job->j.next_line = job->j.max_line + 1;
			free(sh);
		} else {
			snprintf(sh->js.state, sizeof(sh->js.state), "done");
			sched_shard_save(s, sh);
			free(sh);
		}
		r = 0;
		goto out;
	}
	if (fresh) {
		sh->js.first_line = (int64_t)f.reqs[0].pb.line_no;
		sh->js.last_line = (int64_t)f.reqs[f.n - 1].pb.line_no;
		job->j.next_line = sh->js.last_line + 1;
	}
	sh->js.n_requests = f.n;
	sh->js.attempt++;
	snprintf(sh->js.state, sizeof(sh->js.state), "inflight");
	snprintf(sh->js.worker, sizeof(sh->js.worker), "%s", w->id);
	sh->js.dispatched_at = mg_clock_wall_ns();
	sh->sent_ns = now;
	r = fresh ? journal_shard_insert(s->j, &sh->js) : journal_shard_update(s->j, &sh->js);
	if (r == 0 && fresh)
		r = journal_job_update(s->j, &job->j);
	if (r < 0) {
		mg_log(MG_LOG_ERROR, "sched", "journal: cannot record a dispatch batch=%s err=\"%s\"",
		       job->j.name, journal_errmsg(s->j));
		if (fresh)
			job->j.next_line = sh->js.first_line;
		goto fail;
	}

	Margin__V1__Assign as = MARGIN__V1__ASSIGN__INIT;
	as.batch_id = job->j.name;
	as.shard_id = (uint64_t)sh->js.id;
	as.attempt = sh->js.attempt;
	as.model = job->j.model;
	for (int i = 0; i < f.n; i++)
		ptrs[i] = &f.reqs[i].pb;
	as.n_requests = (size_t)f.n;
	as.requests = ptrs;
	mg_msg_t m = MARGIN__V1__MSG__INIT;
	m.body_case = MARGIN__V1__MSG__BODY_ASSIGN;
	m.assign = &as;
	r = send_to(s, w, &m);
	if (r < 0) {
		/* It never reached the worker: not a failed attempt. */
		sh->js.attempt--;
		sh->js.worker[0] = '\0';
		snprintf(sh->js.state, sizeof(sh->js.state), "queued");
		sched_shard_save(s, sh);
		sched_retry_push(job, sh, true);
		if (r == -EHOSTUNREACH) {
			worker_lost(s, pw, "unreachable (disconnected)", true);
		} else {
			/* Its send queue is full (or the frame too big): keep the
			 * credit — the worker re-grants only new capacity — and try
			 * again a little later. */
			w->blocked_until_ns = now + 100 * MG_NS_PER_MS;
			mg_log(MG_LOG_WARN, "sched", "cannot send an Assign batch=%s shard=%lld worker=%s err=\"%s\"",
			       job->j.name, (long long)sh->js.id, w->id, strerror(-r));
		}
		goto out;
	}
	w->credit--;
	worker_attach(w, sh);
	if (suspect(sh)) {
		w->n_isolated++;
		mg_log(MG_LOG_INFO, "sched", "suspect shard dispatched alone batch=%s shard=%lld line=%lld worker=%s fails=%u",
		       job->j.name, (long long)sh->js.id, (long long)sh->js.first_line, w->id, sh->js.fails);
	}
	htab_put_u64(s->inflight, (uint64_t)sh->js.id, sh);
	job->inflight_requests += f.n;
	job->inflight_shards++;
	s->inflight_requests += f.n;
	s->inflight_shards++;
	mg_log(MG_LOG_DEBUG, "sched", "shard assigned batch=%s shard=%lld attempt=%u worker=%s lines=%lld-%lld requests=%d",
	       job->j.name, (long long)sh->js.id, sh->js.attempt, w->id,
	       (long long)sh->js.first_line, (long long)sh->js.last_line, f.n);
	r = 1;
	goto out;
fail:
	if (fresh)
		free(sh);
	else
		sched_retry_push(job, sh, true);
out:
	for (int i = 0; i < f.n; i++)
		ingest_req_done(&f.reqs[i]);
	free(f.reqs);
	free(ptrs);
	return r;
}

/* The next job (round-robin) with work that w can serve; priority jobs
 * before the others. */
static sched_job_t *next_job_for(sched_t *s, const reg_worker_t *w)
{
	for (int pass = 0; pass < 2; pass++) {
		if (pass == 0 && s->n_priority == 0)
			continue;
		for (size_t k = 0; k < s->n_jobs; k++) {
			size_t i = (s->rr + k) % s->n_jobs;
			sched_job_t *job = s->jobs[i];
			if ((pass == 0 && job->j.priority <= 0) || !job_has_work_for(job, w) ||
			    !can_serve(w, job))
				continue;
			s->rr = i + 1;
			return job;
		}
	}
	return NULL;
}

int sched_dispatch(sched_t *s, int64_t now)
{
	if (s->draining || s->n_jobs == 0)
		return 0;
	int sent = 0;
	bool opened = false, progress = true;
	while (progress) {
		progress = false;
		reg_worker_t *next;
		for (reg_worker_t *w = registry_first(s->reg); w != NULL; w = next) {
			next = w->next;
			if (w->credit == 0 || w->n_isolated > 0 || now < w->blocked_until_ns)
				continue;
			sched_job_t *job = next_job_for(s, w);
			if (job == NULL)
				continue;
			if (!opened)
				opened = tx_begin(s);
			int r = dispatch_one(s, &w, job, now);
			if (r > 0)
				sent++;
			if (r >= 0 || w == NULL)
				progress = true;
			if (r < 0 && w != NULL && now >= w->blocked_until_ns)
				goto done;	/* journal trouble: try again next iteration */
		}
	}
done:
	tx_end(s, opened);
	return sent;
}

/* --- timers ----------------------------------------------------------- */

static void check_idle_jobs(sched_t *s)
{
	for (size_t i = 0; i < s->n_jobs; i++) {
		sched_job_t *job = s->jobs[i];
		if (job->warned_no_worker || !job_has_work(job) || job->inflight_shards > 0)
			continue;
		bool any = false;
		for (reg_worker_t *w = registry_first(s->reg); w && !any; w = w->next)
			any = can_serve(w, job);
		if (!any) {
			mg_log(MG_LOG_WARN, "sched", "no worker %s the model of a waiting batch batch=%s model=%s",
			       strcmp(job->j.endpoint, INGEST_EP_EMBEDDINGS) == 0 ? "embeds with" : "serves",
			       job->j.name, job->j.model);
			job->warned_no_worker = true;
		}
	}
}

int64_t sched_tick(sched_t *s, int64_t now)
{
	int64_t next = now + MG_NS_PER_S;
	reg_worker_t *nw;
	for (reg_worker_t *w = registry_first(s->reg); w != NULL; w = nw) {
		nw = w->next;
		if (now >= w->expiry_ns) {
			char reason[128];
			snprintf(reason, sizeof(reason), "heartbeat timeout: silent for %lld ms",
				 (long long)((now - w->last_seen_ns) / MG_NS_PER_MS));
			uint8_t ident[REGISTRY_IDENT_MAX];
			size_t len = w->ident_len;
			memcpy(ident, w->ident, len);
			worker_lost(s, &w, reason, true);
			/* If it is only slow, it learns it must say Hello again. */
			send_bye(s, ident, len, reason);
			continue;
		}
		if (s->p.shard_timeout_ns > 0) {
			sched_shard_t *nsh;
			for (sched_shard_t *sh = w->shards; sh != NULL; sh = nsh) {
				nsh = sh->next;
				if (now - sh->sent_ns < s->p.shard_timeout_ns)
					continue;
				inflight_detach(s, sh);
				shard_failed(s, sh, "shard timeout", true);
			}
		}
		if (now >= w->next_hb_ns) {
			Margin__V1__Heartbeat hb = MARGIN__V1__HEARTBEAT__INIT;
			mg_msg_t m = MARGIN__V1__MSG__INIT;
			m.body_case = MARGIN__V1__MSG__BODY_HEARTBEAT;
			m.heartbeat = &hb;
			w->next_hb_ns = now + s->p.heartbeat_ns;
			if (send_to(s, w, &m) == -EHOSTUNREACH) {
				worker_lost(s, &w, "unreachable (disconnected)", true);
				continue;
			}
		}
		if (w->next_hb_ns < next)
			next = w->next_hb_ns;
		if (w->expiry_ns < next)
			next = w->expiry_ns;
	}
	for (size_t i = 0; i < s->n_jobs; i++) {
		sched_job_t *job = s->jobs[i];
		if (job->j.state != MG_JOB_CANCELLING)
			continue;
		if (now < job->cancel_deadline) {
			if (job->cancel_deadline < next)
				next = job->cancel_deadline;
			continue;
		}
		/* The grace is over: stop waiting for the shards still out. */
		bool opened = tx_begin(s);
		for (reg_worker_t *w = registry_first(s->reg); w != NULL; w = w->next) {
			sched_shard_t *nsh;
			for (sched_shard_t *sh = w->shards; sh != NULL; sh = nsh) {
				nsh = sh->next;
				if (sh->job != job)
					continue;
				inflight_detach(s, sh);
				snprintf(sh->js.state, sizeof(sh->js.state), "cancelled");
				sched_shard_save(s, sh);
				free(sh);
			}
		}
		sched_job_finish_cancel(s, job);
		tx_end(s, opened);
	}
	if (now >= s->next_check_ns) {
		check_idle_jobs(s);
		s->next_check_ns = now + 10 * MG_NS_PER_S;
	}
	sched_jobs_reap(s);
	return next;
}

void sched_group_begin(sched_t *s)
{
	if (s->group || journal_in_tx(s->j))
		return;
	if (journal_begin(s->j) < 0) {
		mg_log(MG_LOG_ERROR, "sched", "journal: cannot begin a transaction err=\"%s\"",
		       journal_errmsg(s->j));
		return;
	}
	s->group = true;
}

int sched_group_end(sched_t *s)
{
	if (!s->group)
		return 0;
	s->group = false;
	int r = journal_commit(s->j);
	if (r < 0) {
		mg_log(MG_LOG_ERROR, "sched", "journal: a group commit failed; the Results in it are not Ack'd and memory is ahead of the journal results=%zu err=\"%s\"",
		       s->n_acks, journal_errmsg(s->j));
		s->n_acks = 0;
		return r;
	}
	for (size_t i = 0; i < s->n_acks; i++)
		send_ack(s, s->acks[i].ident, s->acks[i].len, s->acks[i].shard, s->acks[i].attempt);
	s->n_acks = 0;
	return 0;
}

void sched_set_draining(sched_t *s, bool on)
{
	s->draining = on;
}

int sched_cancel(sched_t *s, const char *name, int64_t now)
{
	sched_job_t *job = find_job(s, name);
	if (job == NULL || job_terminal(job)) {
		journal_job_t tmp;
		if (job == NULL && journal_job_find(s->j, name, &tmp) < 0)
			return -ENOENT;
		return -EALREADY;
	}
	journal_job_t *j = &job->j;
	if (j->state == MG_JOB_CANCELLING)
		return 0;
	bool opened = tx_begin(s);
	j->cancelling_at = sched_wall_s();
	if (j->state == MG_JOB_VALIDATING) {
		ingest_file_close(&job->in);
		sched_job_finish_cancel(s, job);
		tx_end(s, opened);
		sched_jobs_reap(s);
		return 0;
	}
	sched_shard_t *sh;
	while ((sh = sched_retry_pop(job)) != NULL) {
		snprintf(sh->js.state, sizeof(sh->js.state), "cancelled");
		sched_shard_save(s, sh);
		free(sh);
	}
	if (job->inflight_shards == 0) {
		sched_job_finish_cancel(s, job);
		tx_end(s, opened);
		sched_jobs_reap(s);
		return 0;
	}
	j->state = MG_JOB_CANCELLING;
	job->cancel_deadline = now + s->p.cancel_grace_ns;
	sched_job_save(s, job);
	tx_end(s, opened);
	Margin__V1__Cancel c = MARGIN__V1__CANCEL__INIT;
	c.batch_id = j->name;
	mg_msg_t m = MARGIN__V1__MSG__INIT;
	m.body_case = MARGIN__V1__MSG__BODY_CANCEL;
	m.cancel = &c;
	for (reg_worker_t *w = registry_first(s->reg); w != NULL; w = w->next)
		for (sched_shard_t *x = w->shards; x != NULL; x = x->next)
			if (x->job == job) {
				send_to(s, w, &m);
				break;
			}
	mg_log(MG_LOG_INFO, "sched", "batch cancelling batch=%s shards_in_flight=%lld", j->name,
	       (long long)job->inflight_shards);
	return 0;
}

/* --- construction and queries ------------------------------------------ */

int sched_new(journal_t *j, const sched_params_t *p, sched_send_fn send, void *user,
	      int64_t now, sched_t **ret, char *err, size_t errlen)
{
	sched_t *s = calloc(1, sizeof(*s));
	int r = -ENOMEM;
	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	s->j = j;
	s->p = *p;
	if (s->p.liveness == 0)
		s->p.liveness = 1;
	if (s->p.shard_max_requests == 0)
		s->p.shard_max_requests = 1;
	if (s->p.max_attempts == 0)
		s->p.max_attempts = 1;
	if (s->p.ingest_chunk == 0)
		s->p.ingest_chunk = 1;
	s->send = send;
	s->user = user;
	s->reg = registry_new();
	s->inflight = htab_new();
	if (s->reg == NULL || s->inflight == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	s->next_check_ns = now + 10 * MG_NS_PER_S;
	if ((r = sched_recover(s, err, errlen)) < 0)
		goto fail;
	*ret = s;
	return 0;
fail:
	sched_destroy(&s);
	return r;
}

static int free_shard(void *user, const void *key, size_t len, void *val)
{
	free(val);
	return 0;
}

void sched_destroy(sched_t **p)
{
	if (p == NULL || *p == NULL)
		return;
	sched_t *s = *p;
	if (s->inflight) {
		htab_foreach(s->inflight, free_shard, NULL);
		htab_destroy(&s->inflight);
	}
	for (size_t i = 0; i < s->n_jobs; i++)
		sched_job_free(s->jobs[i]);
	free(s->jobs);
	free(s->acks);
	registry_destroy(&s->reg);
	free(s);
	*p = NULL;
}

void sched_set_observer(sched_t *s, const sched_observer_t *obs, void *user)
{
	if (obs != NULL)
		s->obs = *obs;
	else
		memset(&s->obs, 0, sizeof(s->obs));
	s->obs_user = user;
}

void sched_job_live(const sched_t *s, const char *name, sched_job_live_t *ret)
{
	memset(ret, 0, sizeof(*ret));
	sched_job_t *job = find_job(s, name);
	if (job == NULL)
		return;
	ret->in_flight = job->inflight_requests;
	ret->shards_in_flight = job->inflight_shards;
	ret->shards_queued = job->n_retry;
}

void sched_get_stats(const sched_t *s, sched_stats_t *ret)
{
	ret->workers = registry_count(s->reg);
	ret->jobs_active = s->n_jobs;
	ret->shards_in_flight = s->inflight_shards;
	ret->requests_in_flight = s->inflight_requests;
	ret->requests_answered = s->requests_answered;
	ret->shards_committed = s->shards_committed;
	ret->results_ignored = s->results_ignored;
	ret->draining = s->draining;
}

const registry_t *sched_registry(const sched_t *s)
{
	return s->reg;
}

journal_t *sched_journal(const sched_t *s)
{
	return s->j;
}

const sched_params_t *sched_params(const sched_t *s)
{
	return &s->p;
}
