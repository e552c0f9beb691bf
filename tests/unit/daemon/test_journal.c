/* journal: the state-directory lock, request and job rows, the checks a
 * Result must pass, pagination. */
#include "fixture.h"
#include "journal.h"
#include "tests.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_lock(void)
{
	char dir[512], err[512];
	fx_newdir(dir, sizeof(dir));
	journal_t *a = NULL, *b = NULL;
	CU_ASSERT_EQUAL_FATAL(journal_open(dir, JOURNAL_SYNC_NORMAL, &a, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(journal_open(dir, JOURNAL_SYNC_NORMAL, &b, err, sizeof(err)), -EBUSY);
	CU_ASSERT_PTR_NULL(b);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "in use by another margind"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, dir));
	journal_destroy(&a);
	CU_ASSERT_PTR_NULL(a);
	CU_ASSERT_EQUAL(journal_open(dir, JOURNAL_SYNC_FULL, &b, err, sizeof(err)), 0);
	journal_destroy(&b);
	journal_destroy(&b);
}

static journal_t *open_j(char *dir, size_t len)
{
	char err[512];
	journal_t *j = NULL;
	fx_newdir(dir, len);
	CU_ASSERT_EQUAL_FATAL(journal_open(dir, JOURNAL_SYNC_NORMAL, &j, err, sizeof(err)), 0);
	return j;
}

static int64_t make_job(journal_t *j, const char *name, int n)
{
	journal_job_t job;
	memset(&job, 0, sizeof(job));
	snprintf(job.name, sizeof(job.name), "%s", name);
	snprintf(job.endpoint, sizeof(job.endpoint), "/v1/completions");
	snprintf(job.model, sizeof(job.model), "m");
	snprintf(job.state, sizeof(job.state), "in_progress");
	job.next_line = 1;
	job.created_at = 1;
	CU_ASSERT_EQUAL_FATAL(journal_begin_durable(j), 0);
	CU_ASSERT_EQUAL_FATAL(journal_job_create(j, &job, "{\"k\":\"v\"}"), 0);
	for (int i = 1; i <= n; i++) {
		char cid[32];
		snprintf(cid, sizeof(cid), "c%d", i);
		CU_ASSERT_EQUAL(journal_request_insert(j, job.id, i, cid, "{}", 10), 0);
	}
	CU_ASSERT_EQUAL(journal_request_insert(j, job.id, n + 1, "c1", "{}", 10), -EEXIST);
	CU_ASSERT_EQUAL_FATAL(journal_commit(j), 0);
	return job.id;
}

static void test_result_checks(void)
{
	char dir[512], err[512];
	journal_t *j = open_j(dir, sizeof(dir));
	int64_t id = make_job(j, "jb", 4);
	journal_job_t job;
	CU_ASSERT_EQUAL_FATAL(journal_job_find(j, "jb", &job), 0);
	CU_ASSERT_EQUAL(journal_job_find(j, "nope", &job), -ENOENT);
	journal_shard_t sh;
	memset(&sh, 0, sizeof(sh));
	sh.job = id;
	sh.first_line = 1;
	sh.last_line = 2;
	sh.n_requests = 2;
	snprintf(sh.state, sizeof(sh.state), "inflight");
	CU_ASSERT_EQUAL_FATAL(journal_shard_insert(j, &sh), 0);
	CU_ASSERT(sh.id > 0);

	Margin__V1__Output o1 = MARGIN__V1__OUTPUT__INIT, o2 = MARGIN__V1__OUTPUT__INIT;
	Margin__V1__Output *outs[2] = { &o1, &o2 };
	Margin__V1__Result res = MARGIN__V1__RESULT__INIT;
	res.outputs = outs;
	res.n_outputs = 2;
	journal_result_ctx_t ctx = { &job, &sh, "w1", "worker-a", "hw" };
	journal_counts_t c;
	static const struct {
		uint64_t l1, l2;
		const char *c1, *c2, *want;
	} bad[] = {
		{ 1, 3, "c1", "c3", "outside the shard" },
		{ 1, 2, "c1", "zz", "not a pending request" },
		{ 1, 1, "c1", "c1", "not a pending request" },	/* answered twice */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		o1.line_no = bad[i].l1;
		o1.custom_id = (char *)bad[i].c1;
		o2.line_no = bad[i].l2;
		o2.custom_id = (char *)bad[i].c2;
		memset(&c, 0, sizeof(c));
		CU_ASSERT_EQUAL_FATAL(journal_begin(j), 0);
		CU_ASSERT_EQUAL(journal_result_apply(j, &ctx, &res, &c, err, sizeof(err)), -EBADMSG);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, bad[i].want));
		journal_rollback(j);
	}
	res.n_outputs = 1;
	CU_ASSERT_EQUAL_FATAL(journal_begin(j), 0);
	CU_ASSERT_EQUAL(journal_result_apply(j, &ctx, &res, &c, err, sizeof(err)), -EBADMSG);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "1 outputs"));
	journal_rollback(j);

	/* A good one, with one request failed by the worker. */
	res.n_outputs = 2;
	o1.line_no = 2;
	o1.custom_id = "c2";
	o1.text = "hi";
	o1.finish_reason = "stop";
	o1.prompt_tokens = 4;
	o1.completion_tokens = 2;
	Margin__V1__Error e = MARGIN__V1__ERROR__INIT;
	e.code = "context_length_exceeded";
	e.message = "prompt of 900 tokens";
	o2.line_no = 1;
	o2.custom_id = "c1";
	o2.error = &e;
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL_FATAL(journal_begin(j), 0);
	CU_ASSERT_EQUAL(journal_result_apply(j, &ctx, &res, &c, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(journal_commit(j), 0);
	CU_ASSERT_EQUAL(c.done, 1);
	CU_ASSERT_EQUAL(c.failed, 1);
	CU_ASSERT_EQUAL(c.usage.calls, 1);
	CU_ASSERT_EQUAL(c.usage.prompt_tokens, 4);
	CU_ASSERT_EQUAL(journal_ledger_count(j, "jb"), 1);
	journal_destroy(&j);
}

struct page {
	int n;
	int64_t lines[16];
	char states[16][16];
};

static int on_row(void *user, const journal_row_t *row)
{
	struct page *p = user;
	p->lines[p->n] = row->line_no;
	snprintf(p->states[p->n], sizeof(p->states[0]), "%s", row->state);
	p->n++;
	return 0;
}

static int on_job(void *user, const journal_job_t *job)
{
	struct page *p = user;
	p->lines[p->n++] = job->id;
	return 0;
}

static void test_pages(void)
{
	char dir[512];
	journal_t *j = open_j(dir, sizeof(dir));
	int64_t a = make_job(j, "a", 10), b = make_job(j, "b", 3);
	CU_ASSERT_EQUAL(journal_request_finish(j, a, 4, "failed", "x", "y"), 0);
	CU_ASSERT_EQUAL(journal_request_finish(j, a, 4, "failed", "x", "y"), -ENOENT);
	struct page p = { 0 };
	CU_ASSERT_EQUAL(journal_results_page(j, a, 2, 3, on_row, &p), 3);
	CU_ASSERT_EQUAL(p.lines[0], 3);
	CU_ASSERT_EQUAL(p.lines[1], 4);
	CU_ASSERT_EQUAL(p.lines[2], 5);
	CU_ASSERT_STRING_EQUAL(p.states[1], "failed");
	CU_ASSERT_STRING_EQUAL(p.states[0], "queued");
	memset(&p, 0, sizeof(p));
	CU_ASSERT_EQUAL(journal_results_page(j, b, 0, 100, on_row, &p), 3);	/* only b's rows */
	memset(&p, 0, sizeof(p));
	CU_ASSERT_EQUAL(journal_jobs_page(j, 0, 10, on_job, &p), 2);
	CU_ASSERT_EQUAL(p.lines[0], b);	/* newest first */
	CU_ASSERT_EQUAL(p.lines[1], a);
	memset(&p, 0, sizeof(p));
	CU_ASSERT_EQUAL(journal_jobs_page(j, b, 10, on_job, &p), 1);
	int64_t *lines = NULL;
	CU_ASSERT_EQUAL(journal_queued_lines(j, a, 3, 6, &lines), 3);	/* 4 failed */
	CU_ASSERT_EQUAL(lines[0], 3);
	CU_ASSERT_EQUAL(lines[1], 5);
	free(lines);
	char *meta = NULL, *errs = NULL;
	CU_ASSERT_EQUAL(journal_job_texts(j, a, &meta, &errs), 0);
	CU_ASSERT_STRING_EQUAL(meta, "{\"k\":\"v\"}");
	CU_ASSERT_PTR_NULL(errs);
	free(meta);
	journal_destroy(&j);
}

const cu_test_t journal_tests[] = {
	{ "lock", test_lock },
	{ "result_checks", test_result_checks },
	{ "pages", test_pages },
	{ NULL, NULL },
};
