/* journal: the state-directory lock, request and job rows, the checks a
 * Result must pass, pagination. */
#include "cu_alloc.h"
#include "cu_sql.h"
#include "fixture.h"
#include "journal.h"
#include "meter/ledger.h"
#include "tests.h"

#include <sqlite3.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int64_t fake_now = 1800000000LL * 1000000000LL;

static int64_t fake_wall(void *user)
{
	return fake_now;
}

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
	return fx_job_new(j, name, n, "/v1/completions");
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
	fx_shard_new(j, id, 1, 2, &sh);
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

/* journal_result_apply of an embeddings Result with allocation n
 * failing, for n = 1, 2, ... until it succeeds: each failure is -ENOMEM
 * with a reason, and after the rollback the journal is as it was (every
 * request queued, no output, no ledger row), so the same Result applies
 * again; LeakSanitizer, in the sanitizer build, checks that nothing
 * leaked. */
static void test_result_apply_enomem(void)
{
	char dir[512], path[600], err[512];
	journal_t *j = open_j(dir, sizeof(dir));
	int64_t id = fx_job_new(j, "je", 3, JOURNAL_EP_EMBEDDINGS);
	journal_job_t job;
	CU_ASSERT_EQUAL_FATAL(journal_job_find(j, "je", &job), 0);
	journal_shard_t sh;
	fx_shard_new(j, id, 1, 3, &sh);

	float vals[3][4] = { { 1, 2, 3, 4 }, { 0.5f, -1, 0, 2 }, { 3, 1, 4, 1 } };
	Margin__V1__Embedding emb[3], *embs[3][1];
	Margin__V1__Output out[3], *outs[3];
	char cids[3][8];
	for (int i = 0; i < 3; i++) {
		margin__v1__embedding__init(&emb[i]);
		emb[i].values = vals[i];
		emb[i].n_values = 4;
		embs[i][0] = &emb[i];
		margin__v1__output__init(&out[i]);
		snprintf(cids[i], sizeof(cids[i]), "c%d", i + 1);
		out[i].line_no = (uint64_t)i + 1;
		out[i].custom_id = cids[i];
		out[i].embeddings = embs[i];
		out[i].n_embeddings = 1;
		out[i].prompt_tokens = 5;
		outs[i] = &out[i];
	}
	Margin__V1__Result res = MARGIN__V1__RESULT__INIT;
	res.outputs = outs;
	res.n_outputs = 3;
	journal_result_ctx_t ctx = { &job, &sh, "w1", "worker-a", "hw" };
	snprintf(path, sizeof(path), "%s/margin.db", dir);
	sqlite3 *db = NULL;
	CU_ASSERT_EQUAL_FATAL(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);

	unsigned long n = 1;
	for (;; n++) {
		journal_counts_t c;
		memset(&c, 0, sizeof(c));
		err[0] = '\0';
		CU_ASSERT_EQUAL_FATAL(journal_begin(j), 0);
		cu_alloc_fail_at(n);
		int rc = journal_result_apply(j, &ctx, &res, &c, err, sizeof(err));
		bool failed = cu_alloc_reset();
		if (!failed) {
			CU_ASSERT_EQUAL(rc, 0);
			CU_ASSERT_EQUAL(journal_commit(j), 0);
			CU_ASSERT_EQUAL(c.done, 3);
			break;
		}
		journal_rollback(j);
		if (rc != -ENOMEM || err[0] == '\0') {
			fprintf(stderr, "\n  allocation %lu failed: rc=%d err=\"%s\"\n", n, rc, err);
			CU_FAIL("journal_result_apply did not fail cleanly with -ENOMEM");
			break;
		}
		CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT COUNT(*) FROM requests WHERE state = 'queued' AND output IS NULL"), 3);
		CU_ASSERT_EQUAL(journal_ledger_count(j, "je"), 0);
	}
	CU_ASSERT(n > 1);
	CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT COUNT(*) FROM requests WHERE state = 'done' AND output IS NOT NULL"), 3);
	CU_ASSERT_EQUAL(journal_ledger_count(j, "je"), 3);
	sqlite3_close(db);
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

/* The journal as margind wrote it before the ledger's numbered steps
 * (version 1): daemon/journal.c's schema of that time, the ledger table
 * included. */
static const char v1_schema[] =
	"CREATE TABLE IF NOT EXISTS jobs ("
	" id INTEGER PRIMARY KEY,"
	" name TEXT NOT NULL UNIQUE,"
	" endpoint TEXT NOT NULL,"
	" model TEXT NOT NULL DEFAULT '',"
	" state TEXT NOT NULL,"
	" input_path TEXT NOT NULL DEFAULT '',"
	" ingest_offset INTEGER NOT NULL DEFAULT 0,"
	" ingest_line INTEGER NOT NULL DEFAULT 0,"
	" metadata TEXT,"
	" errors TEXT,"
	" n_total INTEGER NOT NULL DEFAULT 0,"
	" n_done INTEGER NOT NULL DEFAULT 0,"
	" n_failed INTEGER NOT NULL DEFAULT 0,"
	" n_cancelled INTEGER NOT NULL DEFAULT 0,"
	" next_line INTEGER NOT NULL DEFAULT 1,"
	" max_line INTEGER NOT NULL DEFAULT 0,"
	" created_at INTEGER NOT NULL,"
	" in_progress_at INTEGER NOT NULL DEFAULT 0,"
	" completed_at INTEGER NOT NULL DEFAULT 0,"
	" failed_at INTEGER NOT NULL DEFAULT 0,"
	" cancelling_at INTEGER NOT NULL DEFAULT 0,"
	" cancelled_at INTEGER NOT NULL DEFAULT 0,"
	" priority INTEGER NOT NULL DEFAULT 0,"
	" u_calls INTEGER NOT NULL DEFAULT 0,"
	" u_prompt_tokens INTEGER NOT NULL DEFAULT 0,"
	" u_completion_tokens INTEGER NOT NULL DEFAULT 0,"
	" u_busy_ns INTEGER NOT NULL DEFAULT 0,"
	" u_flops INTEGER NOT NULL DEFAULT 0,"
	" u_cost_marginal_micros INTEGER NOT NULL DEFAULT 0,"
	" u_cost_loaded_micros INTEGER NOT NULL DEFAULT 0);"
	"CREATE TABLE IF NOT EXISTS requests ("
	" rid INTEGER PRIMARY KEY,"
	" job INTEGER NOT NULL,"
	" line_no INTEGER NOT NULL,"
	" custom_id TEXT NOT NULL,"
	" body TEXT NOT NULL,"
	" est_tokens INTEGER NOT NULL,"
	" state TEXT NOT NULL DEFAULT 'queued',"
	" attempts INTEGER NOT NULL DEFAULT 0,"
	" output TEXT,"
	" finish_reason TEXT,"
	" prompt_tokens INTEGER,"
	" completion_tokens INTEGER,"
	" error_code TEXT,"
	" error_message TEXT);"
	"CREATE UNIQUE INDEX IF NOT EXISTS requests_custom_id ON requests(job, custom_id);"
	"CREATE TABLE IF NOT EXISTS shards ("
	" id INTEGER PRIMARY KEY,"
	" job INTEGER NOT NULL,"
	" first_line INTEGER NOT NULL,"
	" last_line INTEGER NOT NULL,"
	" n_requests INTEGER NOT NULL,"
	" state TEXT NOT NULL,"
	" attempt INTEGER NOT NULL DEFAULT 0,"
	" fails INTEGER NOT NULL DEFAULT 0,"
	" worker TEXT NOT NULL DEFAULT '',"
	" dispatched_at INTEGER NOT NULL DEFAULT 0,"
	" steps INTEGER, wall_ns INTEGER, busy_ns INTEGER, flops INTEGER,"
	" tokens INTEGER, max_batch INTEGER);"
	"CREATE INDEX IF NOT EXISTS shards_job_state ON shards(job, state);"
	"CREATE TABLE IF NOT EXISTS workers ("
	" id INTEGER PRIMARY KEY,"
	" name TEXT NOT NULL,"
	" instance_id INTEGER NOT NULL,"
	" hardware_profile TEXT NOT NULL,"
	" build TEXT NOT NULL,"
	" models TEXT NOT NULL,"
	" slots INTEGER NOT NULL,"
	" threads INTEGER NOT NULL,"
	" key TEXT NOT NULL,"
	" joined_at INTEGER NOT NULL,"
	" left_at INTEGER NOT NULL DEFAULT 0,"
	" left_reason TEXT);"
	"CREATE TABLE IF NOT EXISTS ledger ("
	" id INTEGER PRIMARY KEY,"
	" job TEXT NOT NULL,"
	" custom_id TEXT NOT NULL,"
	" line_no INTEGER NOT NULL,"
	" model TEXT NOT NULL,"
	" worker TEXT NOT NULL,"
	" worker_name TEXT NOT NULL,"
	" hardware_profile TEXT NOT NULL,"
	" shard INTEGER NOT NULL,"
	" prompt_tokens INTEGER NOT NULL,"
	" completion_tokens INTEGER NOT NULL,"
	" busy_ns INTEGER NOT NULL,"
	" flops INTEGER NOT NULL,"
	" queue_ns INTEGER NOT NULL,"
	" first_token_ns INTEGER NOT NULL,"
	" cost_marginal_micros INTEGER NOT NULL DEFAULT 0,"
	" cost_loaded_micros INTEGER NOT NULL DEFAULT 0,"
	" answered_at_ns INTEGER NOT NULL);"
	"CREATE INDEX IF NOT EXISTS ledger_job ON ledger(job);";

/* Rows of that time: a job with its usage, a worker that joined, one
 * booked call; with_meter: the columns and tables an older margind's meter
 * added at startup without counting. */
static void write_v1(const char *dir, bool with_meter)
{
	char path[600];
	sqlite3 *db = NULL;
	snprintf(path, sizeof(path), "%s/margin.db", dir);
	CU_ASSERT_EQUAL_FATAL(sqlite3_open(path, &db), SQLITE_OK);
	CU_ASSERT_EQUAL_FATAL(sqlite3_exec(db, v1_schema, NULL, NULL, NULL), SQLITE_OK);
	CU_ASSERT_EQUAL_FATAL(sqlite3_exec(db, "PRAGMA user_version=1;"
		"INSERT INTO jobs (name, endpoint, state, created_at, u_calls, u_cost_marginal_micros, u_cost_loaded_micros)"
		" VALUES ('old', '/v1/completions', 'completed', 5, 1, 100, 250);"
		"INSERT INTO workers (name, instance_id, hardware_profile, build, models, slots, threads, key, joined_at)"
		" VALUES ('wa', 1, 'cpu-2vcpu', 'b', '[]', 1, 1, '', 1700000000);"
		"INSERT INTO ledger (job, custom_id, line_no, model, worker, worker_name, hardware_profile, shard,"
		" prompt_tokens, completion_tokens, busy_ns, flops, queue_ns, first_token_ns, cost_marginal_micros,"
		" cost_loaded_micros, answered_at_ns) VALUES ('old', 'c1', 1, 'm', 'w1', 'wa', 'cpu-2vcpu', 1, 3, 5,"
		" 1000, 0, 0, 0, 100, 250, 1700000001000000000);", NULL, NULL, NULL), SQLITE_OK);
	if (with_meter)
		CU_ASSERT_EQUAL_FATAL(sqlite3_exec(db,
			"ALTER TABLE ledger ADD COLUMN idle_ns INTEGER NOT NULL DEFAULT 0;"
			"ALTER TABLE ledger ADD COLUMN currency TEXT NOT NULL DEFAULT '';"
			"ALTER TABLE ledger ADD COLUMN rate_busy_micros_per_hour INTEGER NOT NULL DEFAULT 0;"
			"ALTER TABLE ledger ADD COLUMN rate_idle_micros_per_hour INTEGER NOT NULL DEFAULT 0;"
			"ALTER TABLE ledger ADD COLUMN via_batch INTEGER NOT NULL DEFAULT 1;"
			"UPDATE ledger SET currency = 'USD', idle_ns = 9;"
			"CREATE TABLE ledger_api_price (id INTEGER PRIMARY KEY, ref_model TEXT NOT NULL, currency TEXT NOT NULL,"
			" price_currency TEXT NOT NULL, input_per_1m TEXT NOT NULL, output_per_1m TEXT NOT NULL,"
			" fx_rate TEXT NOT NULL, fx_source TEXT NOT NULL, price_table TEXT NOT NULL,"
			" price_source TEXT NOT NULL, price_date TEXT NOT NULL, UNIQUE (ref_model, currency,"
			" price_currency, input_per_1m, output_per_1m, fx_rate, fx_source, price_table, price_source,"
			" price_date));"
			"CREATE TABLE ledger_api (ledger_id INTEGER NOT NULL, ref_model TEXT NOT NULL, micros INTEGER"
			" NOT NULL, price_id INTEGER NOT NULL, PRIMARY KEY (ledger_id, ref_model)) WITHOUT ROWID;",
			NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

/* An older journal, with or without the meter's additions, opens at the
 * current version: the ledger at its last step, the old call and the
 * job's totals as they were booked (no window), the worker of that time
 * not metered by window (its idle was charged the old way); a new worker
 * and a new call go by the new rules. A fresh journal gets the same
 * schema, and a journal from a newer margind is refused. */
static void test_migrate(void)
{
	for (int shape = 0; shape < 3; shape++) {
		char dir[512], err[512], path[600];
		fx_newdir(dir, sizeof(dir));
		if (shape < 2)
			write_v1(dir, shape == 1);
		journal_t *j = NULL;
		int r = journal_open(dir, JOURNAL_SYNC_NORMAL, &j, err, sizeof(err));
		if (r < 0)
			fprintf(stderr, "shape %d: %s\n", shape, err);
		CU_ASSERT_EQUAL_FATAL(r, 0);
		snprintf(path, sizeof(path), "%s/margin.db", dir);
		sqlite3 *db = NULL;
		CU_ASSERT_EQUAL_FATAL(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
		CU_ASSERT_EQUAL(cu_sql_int(db, "PRAGMA user_version"), 4);
		CU_ASSERT_EQUAL(ledger_check_schema(db, true, err, sizeof(err)), 0);
		if (shape < 2) {
			CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT count(*) FROM ledger WHERE job = 'old' AND"
						   " cost_marginal_micros = 100 AND cost_loaded_micros = 250 AND period_ns = 0"
						   " AND period_open = 0"), 1);
			CU_ASSERT_EQUAL(cu_sql_int(db, "SELECT idle_ns FROM ledger"), shape == 1 ? 9 : 0);
			journal_usage_t u;
			CU_ASSERT_EQUAL(journal_job_usage(j, "old", &u), 0);
			CU_ASSERT(u.calls == 1 && u.cost_marginal_micros == 100 && u.cost_loaded_micros == 250);
			journal_worker_span_t *w = NULL;
			size_t n = 9;
			CU_ASSERT_EQUAL(journal_workers_attached(j, 0, &w, &n), 0);
			CU_ASSERT_EQUAL(n, 0);
			free(w);
		}
		/* A worker that joins now is metered by window, in ns. */
		journal_set_clock(j, fake_wall, NULL);
		int64_t id;
		CU_ASSERT_EQUAL(journal_worker_join(j, "wb", 2, "cpu-2vcpu", "b", "[]", 1, 1, "", &id), 0);
		journal_worker_span_t *w = NULL, one;
		size_t n = 0;
		CU_ASSERT_EQUAL(journal_workers_attached(j, 0, &w, &n), 0);
		CU_ASSERT_EQUAL_FATAL(n, 1);
		CU_ASSERT_EQUAL(w[0].joined_ns, fake_now);
		CU_ASSERT_EQUAL(w[0].left_ns, 0);
		CU_ASSERT_EQUAL(journal_worker_span(j, w[0].id, &one), 0);
		CU_ASSERT_STRING_EQUAL(one.hardware_profile, "cpu-2vcpu");
		free(w);
		fake_now += 1000;
		CU_ASSERT_EQUAL(journal_worker_leave(j, id, "test"), 0);
		CU_ASSERT_EQUAL(journal_workers_attached(j, fake_now, &w, &n), 0);
		CU_ASSERT_EQUAL(n, 0);	/* left before that */
		free(w);
		CU_ASSERT_EQUAL(journal_workers_attached(j, fake_now - 1, &w, &n), 0);
		CU_ASSERT_EQUAL_FATAL(n, 1);
		CU_ASSERT_EQUAL(w[0].left_ns, fake_now);
		free(w);
		sqlite3_close(db);
		journal_destroy(&j);
		/* Opened again: nothing to do. */
		CU_ASSERT_EQUAL_FATAL(journal_open(dir, JOURNAL_SYNC_NORMAL, &j, err, sizeof(err)), 0);
		journal_destroy(&j);
	}
	char dir[512], err[512], path[600];
	fx_newdir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/margin.db", dir);
	sqlite3 *db = NULL;
	CU_ASSERT_EQUAL_FATAL(sqlite3_open(path, &db), SQLITE_OK);
	CU_ASSERT_EQUAL(sqlite3_exec(db, "PRAGMA user_version = 5", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	journal_t *j = NULL;
	CU_ASSERT_EQUAL(journal_open(dir, JOURNAL_SYNC_NORMAL, &j, err, sizeof(err)), -EPROTO);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "newer"));
}

static int64_t file_size(const char *dir)
{
	char path[600];
	struct stat st;
	snprintf(path, sizeof(path), "%s/margin.db", dir);
	return stat(path, &st) == 0 ? (int64_t)st.st_size : -1;
}

struct retired {
	char names[8][80];
	int n;
	const char *hold;	/* a job the callback leaves for later */
};

static int on_retire(void *user, const char *name, const char *state)
{
	struct retired *r = user;
	if (r->hold != NULL && strcmp(name, r->hold) == 0)
		return 1;
	if (r->n < 8)
		snprintf(r->names[r->n++], sizeof(r->names[0]), "%s", name);
	return 0;
}

/* A big finished job that ended before the cutoff loses its request and
 * shard rows (its row stays, its counts too), and the journal file gives
 * the space back; a job that ended later, a running one and one the
 * callback holds keep theirs. */
static void test_retire_vacuum(void)
{
	char dir[512];
	journal_t *j = open_j(dir, sizeof(dir));
	char sql[160];
	int64_t empty = file_size(dir);
	/* 20 MB of request bodies. */
	static char body[10001];
	memset(body, 'x', sizeof(body) - 1);
	body[0] = '"';
	body[sizeof(body) - 2] = '"';
	int64_t ids[4];
	const char *names[4] = { "old", "recent", "running", "held" };
	for (int k = 0; k < 4; k++) {
		ids[k] = make_job(j, names[k], 2);
		journal_job_t job;
		CU_ASSERT_EQUAL_FATAL(journal_job_find(j, names[k], &job), 0);
		if (k != 2) {
			job.state = k == 3 ? MG_JOB_FAILED : MG_JOB_CANCELLED;
			job.cancelled_at = k == 1 ? 2000 : 1000;
			job.failed_at = k == 3 ? 1000 : 0;
		}
		job.n_total = 2;
		job.n_done = 1;
		CU_ASSERT_EQUAL(journal_begin(j), 0);
		CU_ASSERT_EQUAL(journal_job_update(j, &job), 0);
		journal_shard_t sh = { .job = ids[k], .first_line = 1, .last_line = 2, .n_requests = 2 };
		snprintf(sh.state, sizeof(sh.state), "done");
		CU_ASSERT_EQUAL(journal_shard_insert(j, &sh), 0);
		CU_ASSERT_EQUAL(journal_commit(j), 0);
	}
	CU_ASSERT_EQUAL_FATAL(journal_begin(j), 0);
	for (int i = 3; i < 2003; i++) {
		char cid[32];
		snprintf(cid, sizeof(cid), "big%d", i);
		CU_ASSERT_EQUAL(journal_request_insert(j, ids[0], i, cid, body, 10), 0);
	}
	CU_ASSERT_EQUAL_FATAL(journal_commit(j), 0);
	CU_ASSERT_EQUAL(journal_vacuum(j, NULL), 0);	/* checkpoint: the rows are in the file */
	int64_t full = file_size(dir);
	CU_ASSERT(full > empty + 20000000);

	struct retired r = { .hold = "held" };
	CU_ASSERT_EQUAL(journal_jobs_retire(j, 1500, 100, on_retire, &r), 1);
	CU_ASSERT_EQUAL_FATAL(r.n, 1);
	CU_ASSERT_STRING_EQUAL(r.names[0], "old");
	int64_t freed = 0;
	CU_ASSERT_EQUAL(journal_vacuum(j, &freed), 0);
	int64_t after = file_size(dir);
	if (after >= full - 19000000)
		fprintf(stderr, "\njournal: %lld bytes full, %lld after the retirement\n", (long long)full,
			(long long)after);
	CU_ASSERT(after < full - 19000000);
	CU_ASSERT(freed >= 19000000);

	sqlite3 *db = NULL;
	char path[600];
	snprintf(path, sizeof(path), "%s/margin.db", dir);
	CU_ASSERT_EQUAL_FATAL(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	for (int k = 0; k < 4; k++) {
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM requests WHERE job = %lld", (long long)ids[k]);
		CU_ASSERT_EQUAL(cu_sql_int(db, sql), k == 0 ? 0 : 2);
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM shards WHERE job = %lld", (long long)ids[k]);
		CU_ASSERT_EQUAL(cu_sql_int(db, sql), k == 0 ? 0 : 1);
	}
	sqlite3_close(db);
	journal_job_t job;
	CU_ASSERT_EQUAL(journal_job_find(j, "old", &job), 0);
	CU_ASSERT_STRING_EQUAL(mg_job_state_name(job.state), "cancelled");
	CU_ASSERT_EQUAL(job.n_total, 2);
	CU_ASSERT_EQUAL(job.n_done, 1);
	/* Once retired, a job is not offered again; the held one is. */
	r = (struct retired){ 0 };
	CU_ASSERT_EQUAL(journal_jobs_retire(j, 1500, 100, on_retire, &r), 1);
	CU_ASSERT_STRING_EQUAL(r.names[0], "held");
	CU_ASSERT_EQUAL(journal_jobs_retire(j, 1500, 100, on_retire, &r), 0);
	CU_ASSERT_EQUAL(journal_job_exists(j, "old"), 1);
	CU_ASSERT_EQUAL(journal_job_exists(j, "nope"), 0);
	CU_ASSERT_EQUAL(journal_begin(j), 0);
	CU_ASSERT_EQUAL(journal_jobs_retire(j, 1500, 100, on_retire, &r), -EBUSY);
	CU_ASSERT_EQUAL(journal_vacuum(j, NULL), -EBUSY);
	journal_rollback(j);
	journal_destroy(&j);
}

/* A journal made before incremental vacuum is switched once at open
 * (VACUUM), keeps its rows, and is not rewritten again. */
static void test_vacuum_switch(void)
{
	char dir[512], err[512], path[600];
	fx_newdir(dir, sizeof(dir));
	write_v1(dir, false);
	snprintf(path, sizeof(path), "%s/margin.db", dir);
	sqlite3 *db = NULL;
	CU_ASSERT_EQUAL_FATAL(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	CU_ASSERT_EQUAL(cu_sql_int(db, "PRAGMA auto_vacuum"), 0);
	sqlite3_close(db);
	journal_t *j = NULL;
	CU_ASSERT_EQUAL_FATAL(journal_open(dir, JOURNAL_SYNC_NORMAL, &j, err, sizeof(err)), 0);
	int64_t from = 0, to = 0;
	CU_ASSERT_TRUE(journal_converted(j, &from, &to));
	CU_ASSERT(from > 0 && to > 0);
	journal_job_t job;
	CU_ASSERT_EQUAL(journal_job_find(j, "old", &job), 0);
	journal_destroy(&j);
	CU_ASSERT_EQUAL_FATAL(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	CU_ASSERT_EQUAL(cu_sql_int(db, "PRAGMA auto_vacuum"), 2);
	sqlite3_close(db);
	CU_ASSERT_EQUAL_FATAL(journal_open(dir, JOURNAL_SYNC_NORMAL, &j, err, sizeof(err)), 0);
	CU_ASSERT_FALSE(journal_converted(j, &from, &to));
	journal_destroy(&j);
	/* A new journal is created with it. */
	j = open_j(dir, sizeof(dir));
	CU_ASSERT_FALSE(journal_converted(j, &from, &to));
	journal_destroy(&j);
	snprintf(path, sizeof(path), "%s/margin.db", dir);
	CU_ASSERT_EQUAL_FATAL(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	CU_ASSERT_EQUAL(cu_sql_int(db, "PRAGMA auto_vacuum"), 2);
	sqlite3_close(db);
}

const cu_test_t journal_tests[] = {
	{ "lock", test_lock },
	{ "result_checks", test_result_checks },
	{ "result_apply_enomem", test_result_apply_enomem },
	{ "pages", test_pages },
	{ "migrate", test_migrate },
	{ "retire_vacuum", test_retire_vacuum },
	{ "vacuum_switch", test_vacuum_switch },
	{ NULL, NULL },
};
