/* retain: which files and rows of finished batches go, and when; what a
 * crash left in the state directory. */
#include "cu_sql.h"
#include "fixture.h"
#include "journal.h"
#include "retain.h"
#include "tests.h"

#include <sqlite3.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void put(const char *dir, const char *sub, const char *name, const char *text)
{
	char path[1200];
	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/%s/%s", dir, sub, name);
	FILE *f = fopen(path, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fputs(text, f);
	fclose(f);
}

static bool exists(const char *dir, const char *sub, const char *name)
{
	char path[1200];
	snprintf(path, sizeof(path), "%s/%s/%s", dir, sub, name);
	return access(path, F_OK) == 0;
}

/* A batch as the HTTP API leaves it: job row, 3 request rows, sidecar,
 * input copy, output file. ended: when it finished (0: running). */
static void make_batch(journal_t *j, const char *dir, const char *name, int64_t ended, bool finalized)
{
	journal_job_t job;
	memset(&job, 0, sizeof(job));
	snprintf(job.name, sizeof(job.name), "%s", name);
	snprintf(job.endpoint, sizeof(job.endpoint), "/v1/completions");
	job.state = ended ? MG_JOB_COMPLETED : MG_JOB_IN_PROGRESS;
	snprintf(job.input_path, sizeof(job.input_path), "%s/batches/%s.input.jsonl", dir, name);
	job.next_line = 1;
	job.created_at = 1;
	CU_ASSERT_EQUAL_FATAL(journal_begin(j), 0);
	CU_ASSERT_EQUAL_FATAL(journal_job_create(j, &job, NULL), 0);
	job.completed_at = ended;
	CU_ASSERT_EQUAL_FATAL(journal_job_update(j, &job), 0);
	for (int i = 1; i <= 3; i++) {
		char cid[16];
		snprintf(cid, sizeof(cid), "c%d", i);
		CU_ASSERT_EQUAL(journal_request_insert(j, job.id, i, cid, "{}", 1), 0);
	}
	CU_ASSERT_EQUAL_FATAL(journal_commit(j), 0);
	char text[512], fname[160];
	snprintf(text, sizeof(text), "{\"id\":\"%s\",\"output_file_id\":\"file-out-%s\",\"error_file_id\":null,"
		 "\"finalized_at\":%d}", name, name, finalized ? 5 : 0);
	snprintf(fname, sizeof(fname), "%s.json", name);
	put(dir, "batches", fname, text);
	snprintf(fname, sizeof(fname), "%s.input.jsonl", name);
	put(dir, "batches", fname, "{}\n");
	snprintf(text, sizeof(text), "{\"id\":\"file-out-%s\",\"filename\":\"%s_output.jsonl\",\"purpose\":\"batch_output\"}",
		 name, name);
	snprintf(fname, sizeof(fname), "file-out-%s.json", name);
	put(dir, "files", fname, text);
	snprintf(fname, sizeof(fname), "file-out-%s.jsonl", name);
	put(dir, "files", fname, "{\"custom_id\":\"c1\"}\n");
}

static int64_t rows(const char *dir, const char *name)
{
	char path[600], sql[200];
	sqlite3 *db = NULL;
	snprintf(path, sizeof(path), "%s/margin.db", dir);
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
		return -1;
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM requests WHERE job = (SELECT id FROM jobs WHERE name = '%s')",
		 name);
	int64_t n = cu_sql_int(db, sql);
	sqlite3_close(db);
	return n;
}

/* Retention 100 s at t = 2000: "old" (ended at 1000) goes but keeps its
 * object; "unwritten" (ended at 1000, output files not written yet) waits;
 * "recent" (ended at 1950) and "running" stay. 0 keeps everything. */
static void test_sweep(void)
{
	char dir[512], err[512];
	fx_newdir(dir, sizeof(dir));
	journal_t *j = NULL;
	CU_ASSERT_EQUAL_FATAL(journal_open(dir, JOURNAL_SYNC_NORMAL, &j, err, sizeof(err)), 0);
	make_batch(j, dir, "old", 1000, true);
	make_batch(j, dir, "unwritten", 1000, false);
	make_batch(j, dir, "recent", 1950, true);
	make_batch(j, dir, "running", 0, false);
	put(dir, "files", "file-up.json", "{\"id\":\"file-up\",\"filename\":\"in.jsonl\",\"purpose\":\"batch\"}");
	put(dir, "files", "file-up.jsonl", "{}\n");
	retain_stats_t st;
	CU_ASSERT_EQUAL(retain_sweep(j, dir, 0, 2000, &st), 0);
	CU_ASSERT_EQUAL(st.jobs, 0);
	CU_ASSERT_EQUAL(rows(dir, "old"), 3);

	CU_ASSERT_EQUAL(retain_sweep(j, dir, 100, 2000, &st), 0);
	CU_ASSERT_EQUAL(st.jobs, 1);
	CU_ASSERT_EQUAL(st.files, 3);	/* the input copy, the output file and its metadata */
	CU_ASSERT_FALSE(exists(dir, "batches", "old.input.jsonl"));
	CU_ASSERT_FALSE(exists(dir, "files", "file-out-old.jsonl"));
	CU_ASSERT_FALSE(exists(dir, "files", "file-out-old.json"));
	CU_ASSERT_TRUE(exists(dir, "batches", "old.json"));
	CU_ASSERT_EQUAL(rows(dir, "old"), 0);
	journal_job_t job;
	CU_ASSERT_EQUAL(journal_job_find(j, "old", &job), 0);
	CU_ASSERT_STRING_EQUAL(mg_job_state_name(job.state), "completed");
	const char *kept[] = { "unwritten", "recent", "running" };
	for (int i = 0; i < 3; i++) {
		char name[120];
		CU_ASSERT_EQUAL(rows(dir, kept[i]), 3);
		snprintf(name, sizeof(name), "%s.input.jsonl", kept[i]);
		CU_ASSERT_TRUE(exists(dir, "batches", name));
		snprintf(name, sizeof(name), "file-out-%s.jsonl", kept[i]);
		CU_ASSERT_TRUE(exists(dir, "files", name));
	}
	CU_ASSERT_TRUE(exists(dir, "files", "file-up.jsonl"));	/* the user's */
	/* Nothing more to do at the same time; once written, "unwritten" goes. */
	CU_ASSERT_EQUAL(retain_sweep(j, dir, 100, 2000, &st), 0);
	CU_ASSERT_EQUAL(st.jobs, 0);
	put(dir, "batches", "unwritten.json", "{\"id\":\"unwritten\",\"finalized_at\":7}");
	CU_ASSERT_EQUAL(retain_sweep(j, dir, 100, 2000, &st), 0);
	CU_ASSERT_EQUAL(st.jobs, 1);
	CU_ASSERT_EQUAL(rows(dir, "unwritten"), 0);
	journal_destroy(&j);
}

/* At start: files of batches the journal does not know go, with
 * half-written ones; the known batches' files and uploads stay. */
static void test_orphans(void)
{
	char dir[512], err[512];
	fx_newdir(dir, sizeof(dir));
	journal_t *j = NULL;
	CU_ASSERT_EQUAL_FATAL(journal_open(dir, JOURNAL_SYNC_NORMAL, &j, err, sizeof(err)), 0);
	make_batch(j, dir, "known", 0, false);
	put(dir, "batches", "ghost.json", "{}");
	put(dir, "batches", "ghost.input.jsonl", "0123456789");
	put(dir, "batches", "known.json.tmp", "{");
	put(dir, "files", "file-g.json", "{\"id\":\"file-g\",\"filename\":\"ghost_error.jsonl\",\"purpose\":\"batch_output\"}");
	put(dir, "files", "file-g.jsonl", "{}\n");
	put(dir, "files", "file-up.json", "{\"id\":\"file-up\",\"filename\":\"ghost_output.jsonl\",\"purpose\":\"batch\"}");
	put(dir, "files", "file-up.jsonl", "{}\n");
	retain_stats_t st;
	CU_ASSERT_EQUAL(retain_orphans(j, dir, &st), 0);
	CU_ASSERT_EQUAL(st.files, 5);
	CU_ASSERT_EQUAL(st.file_bytes, 2 + 10 + 1 + 3 + (int64_t)strlen("{\"id\":\"file-g\",\"filename\":\"ghost_error.jsonl\",\"purpose\":\"batch_output\"}"));
	CU_ASSERT_FALSE(exists(dir, "batches", "ghost.json"));
	CU_ASSERT_FALSE(exists(dir, "batches", "ghost.input.jsonl"));
	CU_ASSERT_FALSE(exists(dir, "batches", "known.json.tmp"));
	CU_ASSERT_FALSE(exists(dir, "files", "file-g.jsonl"));
	CU_ASSERT_TRUE(exists(dir, "batches", "known.json"));
	CU_ASSERT_TRUE(exists(dir, "batches", "known.input.jsonl"));
	CU_ASSERT_TRUE(exists(dir, "files", "file-out-known.jsonl"));
	CU_ASSERT_TRUE(exists(dir, "files", "file-up.jsonl"));
	journal_destroy(&j);
}

const cu_test_t retain_tests[] = {
	{ "sweep", test_sweep },
	{ "orphans", test_orphans },
	{ NULL, NULL },
};
