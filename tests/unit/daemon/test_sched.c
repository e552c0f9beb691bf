/* sched: sharding, fairness, credit, liveness, retries and poison requests,
 * duplicate and stale results, journal atomicity, recovery, cancel — all
 * with a fake clock and a capturing send. */
#include "cu_sql.h"
#include "fixture.h"
#include "ingest.h"
#include "tests.h"

#include <dirent.h>
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define ASSIGN MARGIN__V1__MSG__BODY_ASSIGN
#define ACK MARGIN__V1__MSG__BODY_ACK
#define BYE MARGIN__V1__MSG__BODY_BYE

static sched_params_t params(uint32_t shard_requests)
{
	sched_params_t p;
	sched_params_default(&p);
	p.shard_max_requests = shard_requests;
	return p;
}

/* Counts the requests of a job by state through the results page. */
static int64_t count_state(fx_t *f, const char *job, const char *state);

struct rows {
	const char *state;
	int64_t n;
	int64_t text_ok;	/* done rows whose text is out:<custom_id> */
};

static int on_row(void *user, const journal_row_t *row)
{
	struct rows *r = user;
	if (strcmp(row->state, r->state) == 0) {
		r->n++;
		char want[600];
		snprintf(want, sizeof(want), "out:%s", row->custom_id);
		if (row->output && strcmp(row->output, want) == 0)
			r->text_ok++;
	}
	return 0;
}

static int64_t count_state(fx_t *f, const char *job, const char *state)
{
	journal_job_t j;
	fx_job(f, job, &j);
	struct rows r = { state, 0, 0 };
	CU_ASSERT(journal_results_page(f->j, j.id, 0, 1000000, on_row, &r) >= 0);
	return r.n;
}

static int64_t count_text_ok(fx_t *f, const char *job)
{
	journal_job_t j;
	fx_job(f, job, &j);
	struct rows r = { "done", 0, 0 };
	CU_ASSERT(journal_results_page(f->j, j.id, 0, 1000000, on_row, &r) >= 0);
	return r.text_ok;
}

static void test_sharding_by_count(void)
{
	fx_t f;
	sched_params_t p = params(64);
	fx_open(&f, &p);
	char job[80];
	fx_submit(&f, "j1", fx_lines(200, "m", "r", 16), job);
	fx_hello(&f, "w1", "m", 1);
	fx_credit(&f, "w1", 10);
	CU_ASSERT_EQUAL(sched_dispatch(f.s, f.now), 4);
	size_t sizes[4] = { 64, 64, 64, 8 };
	uint64_t expect_line = 1;
	for (int i = 0; i < 4; i++) {
		const mg_msg_t *m = fx_next(&f, ASSIGN, NULL);
		CU_ASSERT_PTR_NOT_NULL_FATAL(m);
		CU_ASSERT_EQUAL(m->assign->n_requests, sizes[i]);
		CU_ASSERT_EQUAL(m->assign->attempt, 1);
		CU_ASSERT_STRING_EQUAL(m->assign->model, "m");
		CU_ASSERT_STRING_EQUAL(m->assign->batch_id, "j1");
		for (size_t k = 0; k < m->assign->n_requests; k++)
			CU_ASSERT_EQUAL(m->assign->requests[k]->line_no, expect_line++);
	}
	CU_ASSERT_PTR_NULL(fx_next(&f, ASSIGN, NULL));
	/* Everything is out: more credit sends nothing. */
	fx_credit(&f, "w1", 10);
	CU_ASSERT_EQUAL(sched_dispatch(f.s, f.now), 0);
	fx_close(&f);
}

static void test_sharding_by_tokens(void)
{
	fx_t f;
	sched_params_t p = params(64);
	p.shard_max_tokens = 2500;	/* each request estimates ~1000 */
	fx_open(&f, &p);
	char job[80];
	fx_submit(&f, "j1", fx_lines(7, "m", "r", 1000), job);
	fx_hello(&f, "w1", "m", 1);
	fx_credit(&f, "w1", 10);
	CU_ASSERT_EQUAL(sched_dispatch(f.s, f.now), 4);
	size_t sizes[4] = { 2, 2, 2, 1 };
	for (int i = 0; i < 4; i++) {
		const mg_msg_t *m = fx_next(&f, ASSIGN, NULL);
		CU_ASSERT_PTR_NOT_NULL_FATAL(m);
		CU_ASSERT_EQUAL(m->assign->n_requests, sizes[i]);
		CU_ASSERT_EQUAL(m->assign->requests[0]->max_tokens, 1000);
	}
	fx_close(&f);
}

static void test_credit(void)
{
	fx_t f;
	sched_params_t p = params(10);
	fx_open(&f, &p);
	char job[80];
	fx_submit(&f, "j1", fx_lines(100, "m", "r", 16), job);
	fx_hello(&f, "w1", "m", 1);
	CU_ASSERT_EQUAL(sched_dispatch(f.s, f.now), 0);	/* no credit yet */
	fx_credit(&f, "w1", 2);
	CU_ASSERT_EQUAL(sched_dispatch(f.s, f.now), 2);
	const mg_msg_t *a = fx_next(&f, ASSIGN, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	fx_result(&f, "w1", a->assign);
	/* A Result does not give credit back: only Credit does. */
	CU_ASSERT_EQUAL(sched_dispatch(f.s, f.now), 0);
	fx_credit(&f, "w1", 1);
	CU_ASSERT_EQUAL(sched_dispatch(f.s, f.now), 1);
	fx_close(&f);
}

static void test_fairness(void)
{
	fx_t f;
	sched_params_t p = params(10);
	p.inline_max = 100000;
	fx_open(&f, &p);
	char big[80], small[80];
	fx_submit(&f, "big", fx_lines(5000, "m", "b", 16), big);
	fx_hello(&f, "w1", "m", 1);
	fx_credit(&f, "w1", 1);
	CU_ASSERT_EQUAL(sched_dispatch(f.s, f.now), 1);
	fx_submit(&f, "small", fx_lines(15, "m", "s", 16), small);
	fx_credit(&f, "w1", 4);
	CU_ASSERT_EQUAL(sched_dispatch(f.s, f.now), 4);
	const char *want[] = { "big", "small", "big", "small", "big" };
	for (int i = 0; i < 5; i++) {
		const mg_msg_t *m = fx_next(&f, ASSIGN, NULL);
		CU_ASSERT_PTR_NOT_NULL_FATAL(m);
		CU_ASSERT_STRING_EQUAL(m->assign->batch_id, want[i]);
	}
	fx_close(&f);
}

static void test_priority_first(void)
{
	fx_t f;
	sched_params_t p = params(10);
	fx_open(&f, &p);
	char a[80], b[80], err[256];
	fx_submit(&f, "bulk", fx_lines(100, "m", "b", 16), a);
	json_t *lines = fx_lines(1, "m", "sync", 16);
	CU_ASSERT_EQUAL(sched_submit_inline2(f.s, "sync1", NULL, NULL, lines, SCHED_SUBMIT_PRIORITY,
					     f.now, b, err, sizeof(err)), 0);
	json_decref(lines);
	fx_hello(&f, "w1", "m", 1);
	fx_credit(&f, "w1", 2);
	CU_ASSERT_EQUAL(sched_dispatch(f.s, f.now), 2);
	const mg_msg_t *m = fx_next(&f, ASSIGN, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(m);
	CU_ASSERT_STRING_EQUAL(m->assign->batch_id, "sync1");
	m = fx_next(&f, ASSIGN, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(m);
	CU_ASSERT_STRING_EQUAL(m->assign->batch_id, "bulk");
	fx_close(&f);
}

/* ident (just said Hello) gets credit 5; one dispatch sends it one
 * Assign, which this returns. */
static const mg_msg_t *one_assign_to(fx_t *f, const char *ident)
{
	fx_credit(f, ident, 5);
	CU_ASSERT_EQUAL(sched_dispatch(f->s, f->now), 1);
	char who[64];
	const mg_msg_t *m = fx_next(f, ASSIGN, who);
	CU_ASSERT_PTR_NOT_NULL_FATAL(m);
	CU_ASSERT_STRING_EQUAL(who, ident);
	return m;
}

static void test_model_routing(void)
{
	fx_t f;
	sched_params_t p = params(10);
	fx_open(&f, &p);
	char job[80];
	fx_submit(&f, "j2", fx_lines(5, "m2", "r", 16), job);
	fx_hello(&f, "w1", "m1", 1);
	fx_credit(&f, "w1", 5);
	CU_ASSERT_EQUAL(sched_dispatch(f.s, f.now), 0);
	fx_hello(&f, "w2", "m2", 2);
	const mg_msg_t *m = one_assign_to(&f, "w2");
	CU_ASSERT_STRING_EQUAL(m->assign->model, "m2");
	fx_close(&f);
}

/* w1 goes silent holding a shard: after heartbeat x liveness it is dead,
 * told so with a Bye, and its shard goes to w2 as attempt 2. */
static void test_liveness_expiry(void)
{
	fx_t f;
	sched_params_t p = params(10);
	fx_open(&f, &p);
	char job[80];
	fx_submit(&f, "j", fx_lines(10, "m", "r", 16), job);
	fx_hello(&f, "w1", "m", 1);
	fx_credit(&f, "w1", 1);
	CU_ASSERT_EQUAL(sched_dispatch(f.s, f.now), 1);
	const mg_msg_t *a1 = fx_next(&f, ASSIGN, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a1);
	uint64_t shard = a1->assign->shard_id;
	fx_hello(&f, "w2", "m", 2);
	/* 2.9 s of silence from w1 (w2 keeps talking): still alive. */
	for (int i = 0; i < 29; i++) {
		f.now += 100 * MG_NS_PER_MS;
		fx_heartbeat(&f, "w2");
		sched_tick(f.s, f.now);
	}
	CU_ASSERT_EQUAL(fx_count(&f, "w1", BYE), 0);
	CU_ASSERT(fx_count(&f, "w1", MARGIN__V1__MSG__BODY_HEARTBEAT) >= 2);
	for (int i = 0; i < 2; i++) {
		f.now += 100 * MG_NS_PER_MS;
		fx_heartbeat(&f, "w2");
		sched_tick(f.s, f.now);
	}
	CU_ASSERT_EQUAL(fx_count(&f, "w1", BYE), 1);
	fx_credit(&f, "w2", 1);
	CU_ASSERT_EQUAL(sched_dispatch(f.s, f.now), 1);
	char who[64];
	const mg_msg_t *a2 = fx_next(&f, ASSIGN, who);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a2);
	CU_ASSERT_STRING_EQUAL(who, "w2");
	CU_ASSERT_EQUAL(a2->assign->shard_id, shard);
	CU_ASSERT_EQUAL(a2->assign->attempt, 2);
	/* The silent worker wakes up: its late attempt-1 Result is Ack'd, not
	 * committed; w2's attempt 2 is. */
	fx_result(&f, "w1", a1->assign);
	CU_ASSERT_EQUAL(fx_count(&f, "w1", ACK), 1);
	CU_ASSERT_EQUAL(count_state(&f, "j", "done"), 0);
	fx_result(&f, "w2", a2->assign);
	CU_ASSERT_EQUAL(count_state(&f, "j", "done"), 10);
	journal_job_t jj;
	fx_job(&f, "j", &jj);
	CU_ASSERT_STRING_EQUAL(mg_job_state_name(jj.state), "completed");
	CU_ASSERT_EQUAL(journal_ledger_count(f.j, "j"), 10);
	fx_close(&f);
}

static void test_duplicate_result(void)
{
	fx_t f;
	sched_params_t p = params(10);
	fx_open(&f, &p);
	char job[80];
	fx_submit(&f, "j", fx_lines(20, "m", "r", 16), job);
	fx_hello(&f, "w1", "m", 1);
	fx_credit(&f, "w1", 1);
	sched_dispatch(f.s, f.now);
	const mg_msg_t *a = fx_next(&f, ASSIGN, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	fx_result(&f, "w1", a->assign);
	fx_result(&f, "w1", a->assign);
	fx_result(&f, "w1", a->assign);
	CU_ASSERT_EQUAL(fx_count(&f, "w1", ACK), 3);
	/* Counted for the operator (margin_results_ignored_total). */
	sched_stats_t st;
	sched_get_stats(f.s, &st);
	CU_ASSERT_EQUAL(st.results_ignored, 2);
	CU_ASSERT_EQUAL(st.shards_committed, 1);
	journal_job_t jj;
	fx_job(&f, "j", &jj);
	CU_ASSERT_EQUAL(jj.n_done, 10);
	CU_ASSERT_EQUAL(journal_ledger_count(f.j, "j"), 10);
	CU_ASSERT_EQUAL(count_text_ok(&f, "j"), 10);
	fx_close(&f);
}

static bool has_line(const Margin__V1__Assign *a, uint64_t line)
{
	for (size_t i = 0; i < a->n_requests; i++)
		if (a->requests[i]->line_no == line)
			return true;
	return false;
}

/* One request crashes every worker it reaches. Its neighbours must be
 * answered; it fails after max_attempts dispatches, and the job completes. */
static void test_poison_request(void)
{
	fx_t f;
	sched_params_t p = params(8);
	p.max_attempts = 3;
	fx_open(&f, &p);
	char job[80];
	fx_submit(&f, "j", fx_lines(8, "m", "r", 16), job);
	const uint64_t poison = 5;
	int poison_dispatches = 0, rounds = 0;
	uint64_t instance = 100;
	fx_hello(&f, "w", "m", instance);
	journal_job_t jj;
	for (;;) {
		fx_job(&f, "j", &jj);
		if (jj.state == MG_JOB_COMPLETED || ++rounds > 100)
			break;
		fx_credit(&f, "w", 16);
		sched_dispatch(f.s, f.now);
		const mg_msg_t *m;
		bool crashed = false;
		while ((m = fx_next(&f, ASSIGN, NULL)) != NULL) {
			if (crashed)
				continue;
			if (has_line(m->assign, poison)) {
				poison_dispatches++;
				/* The process dies and comes back: a new instance. */
				fx_hello(&f, "w", "m", ++instance);
				crashed = true;
			} else {
				fx_result(&f, "w", m->assign);
			}
		}
	}
	CU_ASSERT_STRING_EQUAL(mg_job_state_name(jj.state), "completed");
	CU_ASSERT_EQUAL(jj.n_done, 7);
	CU_ASSERT_EQUAL(jj.n_failed, 1);
	CU_ASSERT_EQUAL(poison_dispatches, 3);
	CU_ASSERT_EQUAL(count_text_ok(&f, "j"), 7);
	CU_ASSERT_EQUAL(journal_ledger_count(f.j, "j"), 7);
	fx_close(&f);
}

/* A worker that leaves in order (Bye) does not count against its shards:
 * after three Byes the shard is still whole. */
static void test_bye_is_not_a_failure(void)
{
	fx_t f;
	sched_params_t p = params(4);
	p.max_attempts = 2;
	fx_open(&f, &p);
	char job[80];
	fx_submit(&f, "j", fx_lines(4, "m", "r", 16), job);
	for (int i = 0; i < 3; i++) {
		char w[16];
		snprintf(w, sizeof(w), "w%d", i);
		fx_hello(&f, w, "m", 10 + (uint64_t)i);
		fx_credit(&f, w, 1);
		CU_ASSERT_EQUAL(sched_dispatch(f.s, f.now), 1);
		fx_bye(&f, w);
	}
	fx_hello(&f, "last", "m", 99);
	fx_credit(&f, "last", 5);
	CU_ASSERT_EQUAL(sched_dispatch(f.s, f.now), 1);
	char who[64];
	const mg_msg_t *m, *last = NULL;
	while ((m = fx_next(&f, ASSIGN, who)) != NULL)
		last = m;
	CU_ASSERT_PTR_NOT_NULL_FATAL(last);
	CU_ASSERT_EQUAL(last->assign->n_requests, 4);
	CU_ASSERT_EQUAL(last->assign->attempt, 4);
	fx_result(&f, "last", last->assign);
	journal_job_t jj;
	fx_job(&f, "j", &jj);
	CU_ASSERT_STRING_EQUAL(mg_job_state_name(jj.state), "completed");
	CU_ASSERT_EQUAL(jj.n_done, 4);
	fx_close(&f);
}

static void test_malformed_result(void)
{
	fx_t f;
	sched_params_t p = params(10);
	fx_open(&f, &p);
	char job[80];
	fx_submit(&f, "j", fx_lines(10, "m", "r", 16), job);
	fx_hello(&f, "w1", "m", 1);
	fx_credit(&f, "w1", 1);
	sched_dispatch(f.s, f.now);
	const mg_msg_t *a = fx_next(&f, ASSIGN, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	fx_result_opts(&f, "w1", a->assign, 1, 0);	/* one output missing */
	CU_ASSERT_EQUAL(fx_count(&f, "w1", ACK), 1);
	CU_ASSERT_EQUAL(count_state(&f, "j", "done"), 0);
	CU_ASSERT_EQUAL(journal_ledger_count(f.j, "j"), 0);
	fx_credit(&f, "w1", 1);
	CU_ASSERT_EQUAL(sched_dispatch(f.s, f.now), 1);
	const mg_msg_t *a2 = fx_next(&f, ASSIGN, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a2);
	CU_ASSERT_EQUAL(a2->assign->shard_id, a->assign->shard_id);
	CU_ASSERT_EQUAL(a2->assign->attempt, 2);
	fx_result(&f, "w1", a2->assign);
	CU_ASSERT_EQUAL(count_state(&f, "j", "done"), 10);
	fx_close(&f);
}

static int cost_calls, cost_fail_at;

static int cost_hook(void *user, const journal_call_t *c, int64_t *marginal, int64_t *loaded)
{
	if (++cost_calls == cost_fail_at)
		return -EIO;
	*marginal = (int64_t)c->busy_ns;
	*loaded = 2 * (int64_t)c->busy_ns;
	return 0;
}

/* A Result is one transaction: when booking its 3rd ledger row fails,
 * nothing of it is visible, no Ack goes out (the worker will re-send),
 * and the re-sent Result commits all of it. */
static void test_result_atomic(void)
{
	fx_t f;
	sched_params_t p = params(10);
	fx_open(&f, &p);
	journal_set_cost_fn(f.j, cost_hook, NULL);
	cost_calls = 0;
	cost_fail_at = 3;
	char job[80];
	fx_submit(&f, "j", fx_lines(10, "m", "r", 16), job);
	fx_hello(&f, "w1", "m", 1);
	fx_credit(&f, "w1", 1);
	sched_dispatch(f.s, f.now);
	const mg_msg_t *a = fx_next(&f, ASSIGN, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	fx_result(&f, "w1", a->assign);
	CU_ASSERT_EQUAL(fx_count(&f, "w1", ACK), 0);
	CU_ASSERT_EQUAL(count_state(&f, "j", "done"), 0);
	CU_ASSERT_EQUAL(count_state(&f, "j", "queued"), 10);
	CU_ASSERT_EQUAL(journal_ledger_count(f.j, "j"), 0);
	journal_job_t jj;
	fx_job(&f, "j", &jj);
	CU_ASSERT_EQUAL(jj.n_done, 0);
	CU_ASSERT_EQUAL(jj.usage.calls, 0);
	fx_result(&f, "w1", a->assign);
	CU_ASSERT_EQUAL(fx_count(&f, "w1", ACK), 1);
	CU_ASSERT_EQUAL(count_state(&f, "j", "done"), 10);
	CU_ASSERT_EQUAL(journal_ledger_count(f.j, "j"), 10);
	fx_job(&f, "j", &jj);
	CU_ASSERT_EQUAL(jj.n_done, 10);
	CU_ASSERT_STRING_EQUAL(mg_job_state_name(jj.state), "completed");
	CU_ASSERT_EQUAL(jj.usage.calls, 10);
	CU_ASSERT_EQUAL(jj.usage.prompt_tokens, 30);
	CU_ASSERT_EQUAL(jj.usage.cost_marginal_micros, 10 * 1000);
	CU_ASSERT_EQUAL(jj.usage.cost_loaded_micros, 10 * 2000);
	fx_close(&f);
}

/* The daemon dies with shards at workers and two committed: after the
 * restart the uncommitted ones go out again (same shard ids, attempt 2),
 * the committed ones never, and every request is answered exactly once. */
static void test_recovery(void)
{
	fx_t f;
	sched_params_t p = params(10);
	fx_open(&f, &p);
	char job[80];
	fx_submit(&f, "j", fx_lines(100, "m", "r", 16), job);
	fx_hello(&f, "w1", "m", 1);
	fx_credit(&f, "w1", 5);
	CU_ASSERT_EQUAL(sched_dispatch(f.s, f.now), 5);
	Margin__V1__Assign *old[5];
	for (int i = 0; i < 5; i++) {
		const mg_msg_t *m = fx_next(&f, ASSIGN, NULL);
		CU_ASSERT_PTR_NOT_NULL_FATAL(m);
		old[i] = m->assign;
	}
	fx_result(&f, "w1", old[0]);
	fx_result(&f, "w1", old[1]);
	uint64_t lost[3] = { old[2]->shard_id, old[3]->shard_id, old[4]->shard_id };
	uint64_t committed[2] = { old[0]->shard_id, old[1]->shard_id };
	/* Keep the stale Assign of shard 2 for a late Result after restart. */
	uint8_t *stale_buf;
	size_t stale_len;
	mg_msg_t sm = MARGIN__V1__MSG__INIT;
	sm.body_case = ASSIGN;
	sm.assign = old[2];
	CU_ASSERT_EQUAL_FATAL(mg_wire_pack(&sm, MG_WIRE_MAX_FRAME, &stale_buf, &stale_len), 0);

	fx_reopen(&f);		/* kill -9 and restart */
	journal_job_t jj;
	fx_job(&f, "j", &jj);
	CU_ASSERT_STRING_EQUAL(mg_job_state_name(jj.state), "in_progress");
	CU_ASSERT_EQUAL(jj.n_done, 20);
	fx_hello(&f, "w2", "m", 2);
	fx_credit(&f, "w2", 100);
	CU_ASSERT_EQUAL(sched_dispatch(f.s, f.now), 8);
	int again = 0;
	const mg_msg_t *m;
	while ((m = fx_next(&f, ASSIGN, NULL)) != NULL) {
		for (int k = 0; k < 3; k++)
			if (m->assign->shard_id == lost[k]) {
				again++;
				CU_ASSERT_EQUAL(m->assign->attempt, 2);
			}
		CU_ASSERT(m->assign->shard_id != committed[0] && m->assign->shard_id != committed[1]);
		fx_result(&f, "w2", m->assign);
	}
	CU_ASSERT_EQUAL(again, 3);
	/* The old worker's late Result for attempt 1: Ack'd, not applied. */
	mg_msg_t *stale = NULL;
	char err[128];
	CU_ASSERT_EQUAL_FATAL(mg_wire_unpack(stale_buf, stale_len, MG_WIRE_MAX_FRAME, &stale, err, sizeof(err)), 0);
	fx_hello(&f, "w1", "m", 1);
	fx_result(&f, "w1", stale->assign);
	mg_wire_free(&stale);
	free(stale_buf);
	fx_job(&f, "j", &jj);
	CU_ASSERT_STRING_EQUAL(mg_job_state_name(jj.state), "completed");
	CU_ASSERT_EQUAL(jj.n_done, 100);
	CU_ASSERT_EQUAL(count_text_ok(&f, "j"), 100);
	CU_ASSERT_EQUAL(journal_ledger_count(f.j, "j"), 100);
	fx_close(&f);
}

static void test_cancel(void)
{
	fx_t f;
	sched_params_t p = params(10);
	fx_open(&f, &p);
	char job[80];
	fx_submit(&f, "j", fx_lines(100, "m", "r", 16), job);
	fx_hello(&f, "w1", "m", 1);
	fx_credit(&f, "w1", 2);
	CU_ASSERT_EQUAL(sched_dispatch(f.s, f.now), 2);
	CU_ASSERT_EQUAL(sched_cancel(f.s, "j", f.now), 0);
	CU_ASSERT_EQUAL(fx_count(&f, "w1", MARGIN__V1__MSG__BODY_CANCEL), 1);
	journal_job_t jj;
	fx_job(&f, "j", &jj);
	CU_ASSERT_STRING_EQUAL(mg_job_state_name(jj.state), "cancelling");
	fx_credit(&f, "w1", 10);
	CU_ASSERT_EQUAL(sched_dispatch(f.s, f.now), 0);
	const mg_msg_t *m;
	while ((m = fx_next(&f, ASSIGN, NULL)) != NULL)
		fx_result(&f, "w1", m->assign);
	fx_job(&f, "j", &jj);
	CU_ASSERT_STRING_EQUAL(mg_job_state_name(jj.state), "cancelled");
	CU_ASSERT_EQUAL(jj.n_done, 20);
	CU_ASSERT_EQUAL(jj.n_cancelled, 80);
	CU_ASSERT_EQUAL(sched_cancel(f.s, "j", f.now), -EALREADY);
	CU_ASSERT_EQUAL(sched_cancel(f.s, "nope", f.now), -ENOENT);
	fx_close(&f);
}

/* The cancel grace runs out while a worker sits on a shard. */
static void test_cancel_grace(void)
{
	fx_t f;
	sched_params_t p = params(10);
	p.cancel_grace_ns = 2 * MG_NS_PER_S;
	fx_open(&f, &p);
	char job[80];
	fx_submit(&f, "j", fx_lines(30, "m", "r", 16), job);
	fx_hello(&f, "w1", "m", 1);
	fx_credit(&f, "w1", 1);
	sched_dispatch(f.s, f.now);
	CU_ASSERT_EQUAL(sched_cancel(f.s, "j", f.now), 0);
	for (int i = 0; i < 25; i++) {
		f.now += 100 * MG_NS_PER_MS;
		fx_heartbeat(&f, "w1");
		sched_tick(f.s, f.now);
	}
	journal_job_t jj;
	fx_job(&f, "j", &jj);
	CU_ASSERT_STRING_EQUAL(mg_job_state_name(jj.state), "cancelled");
	CU_ASSERT_EQUAL(jj.n_cancelled, 30);
	fx_close(&f);
}

/* The same process on a new connection keeps its shards; a new process
 * under the same connection id loses them. */
static void test_reconnect_and_restart(void)
{
	fx_t f;
	sched_params_t p = params(10);
	fx_open(&f, &p);
	char job[80];
	fx_submit(&f, "j", fx_lines(20, "m", "r", 16), job);
	fx_hello(&f, "a", "m", 7);
	fx_credit(&f, "a", 1);
	sched_dispatch(f.s, f.now);
	const mg_msg_t *a1 = fx_next(&f, ASSIGN, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a1);
	fx_hello(&f, "a2", "m", 7);	/* reconnect, new routing id */
	fx_result(&f, "a2", a1->assign);
	CU_ASSERT_EQUAL(count_state(&f, "j", "done"), 10);
	fx_credit(&f, "a2", 1);
	sched_dispatch(f.s, f.now);
	const mg_msg_t *b1 = fx_next(&f, ASSIGN, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(b1);
	fx_hello(&f, "a2", "m", 8);	/* restarted process */
	fx_credit(&f, "a2", 1);
	sched_dispatch(f.s, f.now);
	const mg_msg_t *b2 = fx_next(&f, ASSIGN, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(b2);
	CU_ASSERT_EQUAL(b2->assign->shard_id, b1->assign->shard_id);
	CU_ASSERT_EQUAL(b2->assign->attempt, 2);
	fx_close(&f);
}

static void test_version_and_garbage(void)
{
	fx_t f;
	sched_params_t p = params(10);
	fx_open(&f, &p);
	char job[80];
	fx_submit(&f, "j", fx_lines(5, "m", "r", 16), job);
	fx_hello_v(&f, "old", "m", 1, MG_PROTO_VERSION + 1);
	char who[64];
	const mg_msg_t *bye = fx_next(&f, BYE, who);
	CU_ASSERT_PTR_NOT_NULL_FATAL(bye);
	CU_ASSERT_STRING_EQUAL(who, "old");
	CU_ASSERT_PTR_NOT_NULL(strstr(bye->bye->reason, "version"));
	fx_credit(&f, "old", 5);
	CU_ASSERT_EQUAL(sched_dispatch(f.s, f.now), 0);
	CU_ASSERT_EQUAL(registry_count(sched_registry(f.s)), 0);
	/* Garbage: not protobuf, empty, a daemon->worker message. */
	static const char junk[] = "\xff\xff\xff\xffnot a frame";
	fx_frame(&f, "g", junk, sizeof(junk));
	fx_frame(&f, "g", "", 0);
	Margin__V1__Ack ack = MARGIN__V1__ACK__INIT;
	mg_msg_t m = MARGIN__V1__MSG__INIT;
	m.body_case = ACK;
	m.ack = &ack;
	uint8_t *buf;
	size_t len;
	CU_ASSERT_EQUAL_FATAL(mg_wire_pack(&m, MG_WIRE_MAX_FRAME, &buf, &len), 0);
	fx_frame(&f, "g", buf, len);
	free(buf);
	/* Service goes on. */
	fx_hello(&f, "w", "m", 3);
	fx_credit(&f, "w", 1);
	CU_ASSERT_EQUAL(sched_dispatch(f.s, f.now), 1);
	fx_close(&f);
}

static void test_seeds(void)
{
	fx_t f;
	sched_params_t p = params(10);
	fx_open(&f, &p);
	json_t *lines = fx_lines(2, "m", "r", 16);
	json_object_set_new(json_object_get(json_array_get(lines, 1), "body"), "seed", json_integer(42));
	char job[80];
	fx_submit(&f, "jseed", lines, job);
	fx_hello(&f, "w", "m", 1);
	fx_credit(&f, "w", 1);
	sched_dispatch(f.s, f.now);
	const mg_msg_t *a = fx_next(&f, ASSIGN, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	CU_ASSERT_EQUAL_FATAL(a->assign->n_requests, 2);
	CU_ASSERT_EQUAL(a->assign->requests[0]->seed, ingest_seed("jseed", "r0"));
	CU_ASSERT_EQUAL(a->assign->requests[1]->seed, 42);
	CU_ASSERT_EQUAL(a->assign->requests[0]->temperature, 1.0f);
	CU_ASSERT_TRUE(a->assign->requests[0]->chat);
	CU_ASSERT_EQUAL_FATAL(a->assign->requests[0]->n_messages, 1);
	CU_ASSERT_STRING_EQUAL(a->assign->requests[0]->messages[0]->content, "hello 0");
	fx_close(&f);
}

static void write_file(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
	fputs(text, fp);
	fclose(fp);
}

static void test_ingest_file(void)
{
	fx_t f;
	sched_params_t p = params(10);
	p.ingest_chunk = 100;
	fx_open(&f, &p);
	char path[600], name[80], err[512];
	snprintf(path, sizeof(path), "%s/in.jsonl", f.dir);
	FILE *fp = fopen(path, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
	for (int i = 0; i < 1050; i++) {
		fprintf(fp, "{\"custom_id\":\"c%d\",\"method\":\"POST\",\"url\":\"/v1/completions\","
			    "\"body\":{\"model\":\"m\",\"prompt\":\"p%d\",\"max_tokens\":4}}\n", i, i);
		if (i == 10)
			fputs("\n   \n", fp);	/* blank lines are skipped */
	}
	fclose(fp);
	CU_ASSERT_EQUAL_FATAL(sched_submit_file(f.s, "fj", NULL, NULL, path, f.now, name, err, sizeof(err)), 0);
	int steps = 0;
	while (sched_ingest(f.s, f.now) > 0)
		steps++;
	CU_ASSERT(steps >= 10);	/* in chunks of 100 lines */
	journal_job_t jj;
	fx_job(&f, "fj", &jj);
	CU_ASSERT_STRING_EQUAL(mg_job_state_name(jj.state), "in_progress");
	CU_ASSERT_EQUAL(jj.n_total, 1050);
	CU_ASSERT_STRING_EQUAL(jj.endpoint, "/v1/completions");
	CU_ASSERT_EQUAL(jj.max_line, 1052);	/* physical line numbers */

	/* A bad file: errors name their lines, the job fails, nothing queued. */
	snprintf(path, sizeof(path), "%s/bad.jsonl", f.dir);
	write_file(path,
		"{\"custom_id\":\"a\",\"url\":\"/v1/completions\",\"body\":{\"model\":\"m\",\"prompt\":\"x\"}}\n"
		"{\"custom_id\":\"b\",\"url\":\"/v1/completions\",\"body\":{\"model\":\"m\",\"prompt\":\"x\"}}\n"
		"{not json\n"
		"{\"custom_id\":\"a\",\"url\":\"/v1/completions\",\"body\":{\"model\":\"m\",\"prompt\":\"x\"}}\n"
		"{\"custom_id\":\"c\",\"url\":\"/v1/completions\",\"body\":{\"model\":\"other\",\"prompt\":\"x\"}}\n");
	CU_ASSERT_EQUAL_FATAL(sched_submit_file(f.s, "bad", NULL, NULL, path, f.now, name, err, sizeof(err)), 0);
	while (sched_ingest(f.s, f.now) > 0)
		;
	fx_job(&f, "bad", &jj);
	CU_ASSERT_STRING_EQUAL(mg_job_state_name(jj.state), "failed");
	CU_ASSERT_EQUAL(jj.n_total, 0);
	char *meta = NULL, *errs = NULL;
	CU_ASSERT_EQUAL(journal_job_texts(f.j, jj.id, &meta, &errs), 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(errs);
	json_t *e = json_loads(errs, 0, NULL);
	CU_ASSERT_EQUAL(json_array_size(e), 1);	/* inserting stops at the first error */
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_array_get(e, 0), "line")), 3);
	json_decref(e);
	free(meta);
	free(errs);
	/* Not JSONL at all: the first line is already refused. */
	snprintf(path, sizeof(path), "%s/csv.jsonl", f.dir);
	write_file(path, "custom_id,prompt\nreq-1,Once upon a time\n");
	CU_ASSERT_EQUAL_FATAL(sched_submit_file(f.s, "csv", NULL, NULL, path, f.now, name, err, sizeof(err)), 0);
	while (sched_ingest(f.s, f.now) > 0)
		;
	fx_job(&f, "csv", &jj);
	CU_ASSERT_STRING_EQUAL(mg_job_state_name(jj.state), "failed");
	CU_ASSERT_EQUAL(journal_job_texts(f.j, jj.id, &meta, &errs), 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(errs);
	CU_ASSERT_PTR_NOT_NULL(strstr(errs, "\"line\":1"));
	CU_ASSERT_PTR_NOT_NULL(strstr(errs, "not valid JSON"));
	free(meta);
	free(errs);
	CU_ASSERT_EQUAL(sched_submit_file(f.s, "bad2", NULL, NULL, "/nonexistent/x.jsonl", f.now, name,
					  err, sizeof(err)), -ENOENT);
	CU_ASSERT_EQUAL(sched_submit_file(f.s, "fj", NULL, NULL, path, f.now, name, err, sizeof(err)), -EEXIST);
	fx_close(&f);
}

static int open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;
	if (d == NULL)
		return -1;
	while (readdir(d) != NULL)
		n++;
	closedir(d);
	return n;
}

/* Queued batches hold no file descriptor: the input is opened when its
 * validation starts and closed when it ends. 300 queued batches under a
 * limit of 64 descriptors are all accepted and all validated, also after
 * a restart. */
static void test_ingest_fds(void)
{
	fx_t f;
	sched_params_t p = params(10);
	p.ingest_chunk = 2;
	fx_open(&f, &p);
	char path[600], name[80], err[512];
	struct rlimit old;
	CU_ASSERT_EQUAL_FATAL(getrlimit(RLIMIT_NOFILE, &old), 0);
	struct rlimit low = { 64, old.rlim_max };
	int before = open_fds();
	CU_ASSERT_FATAL(before > 0 && before < 40);
	CU_ASSERT_EQUAL_FATAL(setrlimit(RLIMIT_NOFILE, &low), 0);
	int submitted = 0;
	for (int i = 0; i < 300; i++) {
		snprintf(path, sizeof(path), "%s/in%d.jsonl", f.dir, i);
		FILE *fp = fopen(path, "we");
		if (fp == NULL) {
			fprintf(stderr, "\nwriting input %d: %s\n", i, strerror(errno));
			break;
		}
		for (int k = 0; k < 3; k++)
			fprintf(fp, "{\"custom_id\":\"c%d\",\"method\":\"POST\",\"url\":\"/v1/completions\","
				    "\"body\":{\"model\":\"m\",\"prompt\":\"p%d\"}}\n", k, i);
		fclose(fp);
		char jn[32];
		snprintf(jn, sizeof(jn), "q%d", i);
		if (sched_submit_file(f.s, jn, NULL, NULL, path, f.now, name, err, sizeof(err)) != 0) {
			fprintf(stderr, "\nsubmit %d: %s\n", i, err);
			break;
		}
		submitted++;
	}
	CU_ASSERT_EQUAL(submitted, 300);
	if (submitted < 300)
		goto out;
	CU_ASSERT(open_fds() <= before + 1);
	/* No descriptor left when validation is due: the batch waits, it does
	 * not fail. */
	int lowest_free = dup(0);
	CU_ASSERT_FATAL(lowest_free > 0);
	close(lowest_free);
	struct rlimit none = { (rlim_t)lowest_free, old.rlim_max };
	CU_ASSERT_EQUAL_FATAL(setrlimit(RLIMIT_NOFILE, &none), 0);
	CU_ASSERT_EQUAL(sched_ingest(f.s, f.now), 0);
	CU_ASSERT_EQUAL_FATAL(setrlimit(RLIMIT_NOFILE, &low), 0);
	journal_job_t first;
	fx_job(&f, "q0", &first);
	CU_ASSERT_STRING_EQUAL(mg_job_state_name(first.state), "validating");
	/* Half-way through the first file, a restart: it starts over, the
	 * others wait their turn, still without descriptors. */
	CU_ASSERT_EQUAL(sched_ingest(f.s, f.now), 1);
	fx_reopen(&f);
	CU_ASSERT(open_fds() <= before + 1);
	int max = 0;
	while (sched_ingest(f.s, f.now) > 0) {
		int n = open_fds();
		if (n > max)
			max = n;
	}
	CU_ASSERT(max <= before + 1);
	for (int i = 0; i < 300; i++) {
		char jn[32];
		journal_job_t jj;
		snprintf(jn, sizeof(jn), "q%d", i);
		fx_job(&f, jn, &jj);
		CU_ASSERT_STRING_EQUAL(mg_job_state_name(jj.state), "in_progress");
		CU_ASSERT_EQUAL(jj.n_total, 3);
	}
	/* A file that is gone when its turn comes fails that batch, saying
	 * so without the server path (clients see the batch's errors). */
	snprintf(path, sizeof(path), "%s/gone.jsonl", f.dir);
	write_file(path, "{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"model\":\"m\",\"prompt\":\"x\"}}\n");
	CU_ASSERT_EQUAL_FATAL(sched_submit_file(f.s, "gone", NULL, NULL, path, f.now, name, err, sizeof(err)), 0);
	unlink(path);
	while (sched_ingest(f.s, f.now) > 0)
		;
	journal_job_t jj;
	fx_job(&f, "gone", &jj);
	CU_ASSERT_STRING_EQUAL(mg_job_state_name(jj.state), "failed");
	char *meta = NULL, *errs = NULL;
	CU_ASSERT_EQUAL(journal_job_texts(f.j, jj.id, &meta, &errs), 0);
	CU_ASSERT_PTR_NOT_NULL(errs != NULL ? strstr(errs, "cannot open the batch's input file: No such file") : NULL);
	CU_ASSERT_PTR_NULL(errs != NULL ? strstr(errs, f.dir) : NULL);
	free(meta);
	free(errs);
out:
	CU_ASSERT_EQUAL(setrlimit(RLIMIT_NOFILE, &old), 0);
	fx_close(&f);
}

static void test_inline_errors(void)
{
	fx_t f;
	sched_params_t p = params(10);
	fx_open(&f, &p);
	char name[80], err[512];
	json_t *lines = fx_lines(3, "m", "r", 16);
	json_object_set_new(json_array_get(lines, 2), "custom_id", json_string("r0"));
	CU_ASSERT_EQUAL(sched_submit_inline(f.s, "x", NULL, NULL, lines, f.now, name, err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "line 3"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "r0"));
	journal_job_t jj;
	CU_ASSERT_EQUAL(journal_job_find(f.j, "x", &jj), -ENOENT);	/* no job left behind */
	json_decref(lines);
	lines = fx_lines(2, "m", "r", 16);
	CU_ASSERT_EQUAL(sched_submit_inline(f.s, "bad id!", NULL, NULL, lines, f.now, name, err, sizeof(err)), -EINVAL);
	CU_ASSERT_EQUAL(sched_submit_inline(f.s, NULL, "/v1/moderations", NULL, lines, f.now, name, err, sizeof(err)), -EINVAL);
	/* chat lines in an embeddings job */
	CU_ASSERT_EQUAL(sched_submit_inline(f.s, NULL, "/v1/embeddings", NULL, lines, f.now, name, err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "differs from the batch's endpoint \"/v1/embeddings\""));
	CU_ASSERT_EQUAL(sched_submit_inline(f.s, NULL, NULL, NULL, lines, f.now, name, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(strncmp(name, "batch_", 6), 0);
	CU_ASSERT_EQUAL(strlen(name), 6 + 24);
	json_decref(lines);
	fx_close(&f);
}

/* Group commit: Results share a transaction, each in a savepoint; Acks
 * wait for the commit; a bad Result or a failing hook undoes only itself. */
static void test_group_commit(void)
{
	fx_t f;
	sched_params_t p = params(10);
	fx_open(&f, &p);
	journal_set_cost_fn(f.j, cost_hook, NULL);
	cost_calls = 0;
	cost_fail_at = 25;	/* the 5th call of the 3rd good Result */
	char job[80];
	fx_submit(&f, "j", fx_lines(50, "m", "r", 16), job);
	fx_hello(&f, "w1", "m", 1);
	fx_credit(&f, "w1", 5);
	CU_ASSERT_EQUAL(sched_dispatch(f.s, f.now), 5);
	const mg_msg_t *a[5];
	for (int i = 0; i < 5; i++) {
		a[i] = fx_next(&f, ASSIGN, NULL);
		CU_ASSERT_PTR_NOT_NULL_FATAL(a[i]);
	}
	sched_group_begin(f.s);
	fx_result(&f, "w1", a[0]->assign);
	fx_result(&f, "w1", a[1]->assign);
	fx_result_opts(&f, "w1", a[2]->assign, 2, 0);	/* malformed: Ack'd at once */
	CU_ASSERT_EQUAL(fx_count(&f, "w1", ACK), 1);
	fx_result(&f, "w1", a[3]->assign);		/* the hook fails inside it */
	fx_result(&f, "w1", a[4]->assign);
	CU_ASSERT_EQUAL(fx_count(&f, "w1", ACK), 1);	/* the good ones wait for the commit */
	CU_ASSERT_EQUAL(sched_group_end(f.s), 0);
	CU_ASSERT_EQUAL(fx_count(&f, "w1", ACK), 4);	/* + a0, a1, a4; not a3 */
	journal_job_t jj;
	fx_job(&f, "j", &jj);
	CU_ASSERT_EQUAL(jj.n_done, 30);
	CU_ASSERT_EQUAL(count_state(&f, "j", "done"), 30);
	CU_ASSERT_EQUAL(journal_ledger_count(f.j, "j"), 30);
	CU_ASSERT_EQUAL(jj.usage.calls, 30);
	/* a3 is still in flight: its re-sent Result commits now. */
	fx_result(&f, "w1", a[3]->assign);
	CU_ASSERT_EQUAL(count_state(&f, "j", "done"), 40);
	/* a2 went back to the queue as attempt 2. */
	fx_credit(&f, "w1", 1);
	CU_ASSERT_EQUAL(sched_dispatch(f.s, f.now), 1);
	const mg_msg_t *again = fx_next(&f, ASSIGN, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(again);
	CU_ASSERT_EQUAL(again->assign->attempt, 2);
	fx_result(&f, "w1", again->assign);
	fx_job(&f, "j", &jj);
	CU_ASSERT_STRING_EQUAL(mg_job_state_name(jj.state), "completed");
	CU_ASSERT_EQUAL(count_text_ok(&f, "j"), 50);
	CU_ASSERT_EQUAL(journal_ledger_count(f.j, "j"), 50);
	fx_close(&f);
}

/* A full send queue keeps the worker's credit (the worker re-grants only
 * new capacity); an unreachable worker is dropped and its shard goes on. */
static void test_send_failures(void)
{
	fx_t f;
	sched_params_t p = params(10);
	fx_open(&f, &p);
	char job[80];
	fx_submit(&f, "j", fx_lines(30, "m", "r", 16), job);
	fx_hello(&f, "w1", "m", 1);
	fx_credit(&f, "w1", 2);
	strcpy(f.unreach_ident, "w1");
	f.fail_sends_to = -EAGAIN;
	CU_ASSERT_EQUAL(sched_dispatch(f.s, f.now), 0);
	f.fail_sends_to = 0;
	CU_ASSERT_EQUAL(sched_dispatch(f.s, f.now), 0);	/* backing off */
	f.now += 200 * MG_NS_PER_MS;
	CU_ASSERT_EQUAL(sched_dispatch(f.s, f.now), 2);	/* both credits still there */
	const mg_msg_t *a = fx_next(&f, ASSIGN, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	CU_ASSERT_EQUAL(a->assign->attempt, 1);		/* the failed send was no attempt */
	CU_ASSERT_PTR_NOT_NULL(fx_next(&f, ASSIGN, NULL));	/* w1's second */
	fx_hello(&f, "w2", "m", 2);
	fx_credit(&f, "w2", 1);
	f.fail_sends_to = -EHOSTUNREACH;
	fx_credit(&f, "w1", 1);
	sched_dispatch(f.s, f.now);
	CU_ASSERT_EQUAL(registry_count(sched_registry(f.s)), 1);	/* w1 gone */
	f.fail_sends_to = 0;
	fx_credit(&f, "w2", 5);
	sched_dispatch(f.s, f.now);
	const mg_msg_t *m;
	char who[64];
	int again = 0;
	while ((m = fx_next(&f, ASSIGN, who)) != NULL) {
		CU_ASSERT_STRING_EQUAL(who, "w2");
		again += m->assign->attempt == 2;
		fx_result(&f, "w2", m->assign);
	}
	CU_ASSERT_EQUAL(again, 2);	/* w1's two shards, requeued */
	CU_ASSERT_EQUAL(count_state(&f, "j", "done"), 30);
	fx_close(&f);
}

struct embed_rows {
	char out[2][256], enc[2][16], code[64];
	int n;
};

static int collect_embed_row(void *user, const journal_row_t *row)
{
	struct embed_rows *rs = user;
	if (rs->n < 2) {
		snprintf(rs->out[rs->n], sizeof(rs->out[0]), "%s", row->output ? row->output : "");
		snprintf(rs->enc[rs->n], sizeof(rs->enc[0]), "%s", row->encoding_format ? row->encoding_format : "");
	} else {
		snprintf(rs->code, sizeof(rs->code), "%s", row->error_code ? row->error_code : "");
	}
	rs->n++;
	return 0;
}

/* An embeddings job goes only to a worker whose ModelInfo embeds with its
 * model; the vectors it answers are stored exactly (the journal's base64
 * of float32) with the body's encoding, and a worker that answers without
 * vectors fails the request rather than storing an empty answer. */
static void test_embed_routing(void)
{
	fx_t f;
	sched_params_t p = params(10);
	fx_open(&f, &p);
	json_t *lines = json_array();
	for (int i = 0; i < 3; i++) {
		char cid[16];
		snprintf(cid, sizeof(cid), "e%d", i);
		json_array_append_new(lines, json_pack("{s:s, s:s, s:s, s:{s:s, s:[[i], [i, i]], s:s}}", "custom_id", cid,
						       "method", "POST", "url", "/v1/embeddings", "body", "model", "m",
						       "input", 7, 4, 5, "encoding_format",
						       i == 1 ? "base64" : "float"));
	}
	char job[80];
	fx_submit(&f, "emb", lines, job);
	fx_hello(&f, "w1", "m", 1);		/* serves m, does not embed */
	fx_credit(&f, "w1", 5);
	CU_ASSERT_EQUAL(sched_dispatch(f.s, f.now), 0);
	CU_ASSERT_EQUAL(fx_count(&f, "w1", ASSIGN), 0);
	fx_hello_embed(&f, "w2", "m", 2, 4);
	const Margin__V1__Assign *a = one_assign_to(&f, "w2")->assign;
	CU_ASSERT_EQUAL_FATAL(a->n_requests, 3);
	const Margin__V1__Request *q = a->requests[0];
	CU_ASSERT_TRUE(q->embed);
	CU_ASSERT_EQUAL_FATAL(q->n_inputs, 2);
	CU_ASSERT_EQUAL_FATAL(q->inputs[0]->n_tokens, 1);
	CU_ASSERT_EQUAL(q->inputs[0]->tokens[0], 7);
	CU_ASSERT_EQUAL_FATAL(q->inputs[1]->n_tokens, 2);
	CU_ASSERT_EQUAL(q->inputs[1]->tokens[1], 5);

	/* answer: two vectors each for lines 1 and 2, none for line 3 */
	float vals[2][4] = { { 0.5f, -0.5f, 0.5f, -0.5f }, { 0.1f, 0.2f, 0.3f, 0.9273618f } };
	Margin__V1__Embedding e[2], *pe[2] = { &e[0], &e[1] };
	for (int k = 0; k < 2; k++) {
		margin__v1__embedding__init(&e[k]);
		e[k].n_values = 4;
		e[k].values = vals[k];
	}
	Margin__V1__Output outs[3], *po[3];
	for (size_t i = 0; i < 3; i++) {
		margin__v1__output__init(&outs[i]);
		outs[i].line_no = a->requests[i]->line_no;
		outs[i].custom_id = a->requests[i]->custom_id;
		outs[i].prompt_tokens = 4;
		outs[i].n_embeddings = i < 2 ? 2 : 0;
		outs[i].embeddings = pe;
		po[i] = &outs[i];
	}
	Margin__V1__Result res = MARGIN__V1__RESULT__INIT;
	res.batch_id = a->batch_id;
	res.shard_id = a->shard_id;
	res.attempt = a->attempt;
	res.n_outputs = 3;
	res.outputs = po;
	mg_msg_t rm = MARGIN__V1__MSG__INIT;
	rm.body_case = MARGIN__V1__MSG__BODY_RESULT;
	rm.result = &res;
	fx_feed(&f, "w2", &rm);

	journal_job_t jj;
	fx_job(&f, job, &jj);
	CU_ASSERT_EQUAL(jj.n_done, 2);
	CU_ASSERT_EQUAL(jj.n_failed, 1);
	CU_ASSERT_STRING_EQUAL(jj.endpoint, "/v1/embeddings");
	char *want = NULL;
	CU_ASSERT_EQUAL_FATAL(journal_embeddings_format((const Margin__V1__Embedding *const *)pe, 2, &want), 0);
	struct embed_rows rs = { .n = 0 };
	CU_ASSERT_EQUAL(journal_results_page(f.j, jj.id, 0, 10, collect_embed_row, &rs), 3);
	CU_ASSERT_STRING_EQUAL(rs.out[0], want);
	CU_ASSERT_STRING_EQUAL(rs.out[1], want);
	CU_ASSERT_STRING_EQUAL(rs.enc[0], "float");
	CU_ASSERT_STRING_EQUAL(rs.enc[1], "base64");
	CU_ASSERT_STRING_EQUAL(rs.code, "worker_error");
	free(want);
	/* booked without the booking hook, the ledger rows still say what kind
	 * of call they were (reports price them on embedding references) */
	char path[600];
	sqlite3 *db = NULL;
	snprintf(path, sizeof(path), "%s/margin.db", f.dir);
	CU_ASSERT_EQUAL_FATAL(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT count(*) FROM ledger WHERE endpoint = '/v1/embeddings'"), 2);
	sqlite3_close(db);
	fx_close(&f);
}

/* Shards of embedding requests hold at most SCHED_EMBED_SHARD_BYTES of
 * vectors as the taking worker embeds: 600 inputs of 4096 floats (9.8 MB)
 * per request go one per shard; the same requests cut to 4 dimensions
 * share one. */
static void test_embed_shard_bytes(void)
{
	for (int cut = 0; cut < 2; cut++) {
		fx_t f;
		sched_params_t p = params(10);
		fx_open(&f, &p);
		json_t *lines = json_array();
		for (int i = 0; i < 3; i++) {
			json_t *in = json_array();
			for (int k = 0; k < 600; k++)
				json_array_append_new(in, json_string("x"));
			char cid[16];
			snprintf(cid, sizeof(cid), "e%d", i);
			json_t *l = json_pack("{s:s, s:s, s:s, s:{s:s, s:o}}", "custom_id", cid, "method", "POST", "url",
					      "/v1/embeddings", "body", "model", "m", "input", in);
			if (cut)
				json_object_set_new(json_object_get(l, "body"), "dimensions", json_integer(4));
			json_array_append_new(lines, l);
		}
		char job[80];
		fx_submit(&f, "emb", lines, job);
		fx_hello_embed(&f, "w1", "m", 1, 4096);
		fx_credit(&f, "w1", 5);
		CU_ASSERT_EQUAL(sched_dispatch(f.s, f.now), cut ? 1 : 3);
		const mg_msg_t *m = fx_next(&f, ASSIGN, NULL);
		CU_ASSERT_PTR_NOT_NULL_FATAL(m);
		CU_ASSERT_EQUAL(m->assign->n_requests, cut ? 3u : 1u);
		fx_close(&f);
	}
}

const cu_test_t sched_tests[] = {
	{ "embed_routing", test_embed_routing },
	{ "embed_shard_bytes", test_embed_shard_bytes },
	{ "sharding_by_count", test_sharding_by_count },
	{ "sharding_by_tokens", test_sharding_by_tokens },
	{ "credit", test_credit },
	{ "fairness", test_fairness },
	{ "priority_first", test_priority_first },
	{ "model_routing", test_model_routing },
	{ "liveness_expiry", test_liveness_expiry },
	{ "duplicate_result", test_duplicate_result },
	{ "poison_request", test_poison_request },
	{ "bye_is_not_a_failure", test_bye_is_not_a_failure },
	{ "malformed_result", test_malformed_result },
	{ "result_atomic", test_result_atomic },
	{ "group_commit", test_group_commit },
	{ "send_failures", test_send_failures },
	{ "recovery", test_recovery },
	{ "cancel", test_cancel },
	{ "cancel_grace", test_cancel_grace },
	{ "reconnect_and_restart", test_reconnect_and_restart },
	{ "version_and_garbage", test_version_and_garbage },
	{ "seeds", test_seeds },
	{ "ingest_file", test_ingest_file },
	{ "ingest_fds", test_ingest_fds },
	{ "inline_errors", test_inline_errors },
	{ NULL, NULL },
};
