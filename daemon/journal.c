/* journal: see journal.h. */
#include "journal.h"
#include "meter/ledger.h"
#include "lib/mg_clock.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* The journal's schema steps (PRAGMA user_version): its own tables and,
 * at the steps the ledger's module numbers, the ledger's (meter/ledger.h:
 * that module creates, migrates and writes the ledger's tables). One
 * counter for the whole file. */
#define SCHEMA_VERSION 4

/* Version 1: jobs, requests, shards, workers (and ledger step 1). */
static const char schema_sql[] =
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
	/* rid = job << 32 | line_no: a job's requests are one contiguous,
	 * line-ordered range of the table's own B-tree. */
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
	" left_reason TEXT);";

/* Version 3 (with ledger step 3): when a worker was attached, to the
 * nanosecond, for the idle time of accounting windows. 0 in rows from
 * before it: those workers' idle time was charged by the older rule. */
static const char workers_ns_sql[] =
	"ALTER TABLE workers ADD COLUMN joined_at_ns INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE workers ADD COLUMN left_at_ns INTEGER NOT NULL DEFAULT 0;"
	"CREATE INDEX IF NOT EXISTS workers_attached ON workers(left_at_ns, joined_at_ns);";

/* The steps: version k runs migrations[k - 1] (its SQL, then the ledger's
 * step, when it names one). A journal of version v runs the steps after v
 * in one transaction each. A journal of version 1 may have the ledger
 * columns of step 2 already (margind then added them without counting):
 * the ledger's steps accept any such shape. */
static const struct migration {
	const char *what;
	const char *sql;	/* NULL: none */
	int ledger_step;	/* 0: none */
} migrations[SCHEMA_VERSION] = {
	{ "jobs, requests, shards, workers and the ledger", schema_sql, 1 },
	{ "the meter's ledger columns and booked closed-API equivalents", NULL, 2 },
	{ "accounting windows (ledger_period) and workers' attached time in ns", workers_ns_sql, 3 },
	{ "the ledger's endpoint column (embedding calls)", NULL, 4 },
};

#define JOB_COLS "id, name, endpoint, model, state, input_path, ingest_offset, ingest_line," \
	" n_total, n_done, n_failed, n_cancelled, next_line, max_line, created_at," \
	" in_progress_at, completed_at, failed_at, cancelling_at, cancelled_at, priority, u_calls," \
	" u_prompt_tokens, u_completion_tokens, u_busy_ns, u_flops, u_cost_marginal_micros," \
	" u_cost_loaded_micros"
#define SHARD_COLS "id, job, first_line, last_line, n_requests, state, attempt, fails, worker," \
	" dispatched_at"

enum stmt {
	ST_BEGIN, ST_COMMIT, ST_ROLLBACK, ST_SAVEPOINT, ST_RELEASE, ST_ROLLBACK_TO,
	ST_JOB_INSERT, ST_JOB_UPDATE, ST_JOB_ERRORS, ST_JOB_FIND, ST_JOB_TEXTS, ST_JOBS_ACTIVE,
	ST_JOBS_PAGE,
	ST_REQ_INSERT, ST_REQ_DELETE, ST_REQ_QUEUED, ST_REQ_FINISH, ST_REQ_BUMP, ST_REQ_ANSWER,
	ST_REQ_LINES, ST_RESULTS_PAGE,
	ST_SHARD_INSERT, ST_SHARD_UPDATE, ST_SHARD_STATS, ST_SHARDS_PENDING,
	ST_WORKER_JOIN, ST_WORKER_LEAVE, ST_WORKERS_GONE, ST_WORKERS_ATTACHED, ST_WORKER_SPAN,
	ST_JOB_USAGE_ADD, ST_LEDGER_COUNT,
	N_STMT
};

static const char *const stmt_sql[N_STMT] = {
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_SAVEPOINT] = "SAVEPOINT result",
	[ST_RELEASE] = "RELEASE result",
	[ST_ROLLBACK_TO] = "ROLLBACK TO result",
	[ST_JOB_INSERT] = "INSERT INTO jobs (name, endpoint, model, state, input_path, ingest_offset,"
		" ingest_line, n_total, next_line, max_line, created_at, metadata, priority)"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
	/* Not the usage sums: the journal adds to them (ST_JOB_USAGE_ADD) in
	 * the transaction that books the calls or closes their window. */
	[ST_JOB_UPDATE] = "UPDATE jobs SET endpoint = ?17, model = ?2, state = ?3, ingest_offset = ?4, ingest_line = ?5,"
		" n_total = ?6, n_done = ?7, n_failed = ?8, n_cancelled = ?9, next_line = ?10,"
		" max_line = ?11, in_progress_at = ?12, completed_at = ?13, failed_at = ?14,"
		" cancelling_at = ?15, cancelled_at = ?16 WHERE id = ?1",
	[ST_JOB_USAGE_ADD] = "UPDATE jobs SET u_calls = u_calls + ?2, u_prompt_tokens = u_prompt_tokens + ?3,"
		" u_completion_tokens = u_completion_tokens + ?4, u_busy_ns = u_busy_ns + ?5, u_flops = u_flops + ?6,"
		" u_cost_marginal_micros = u_cost_marginal_micros + ?7,"
		" u_cost_loaded_micros = u_cost_loaded_micros + ?8 WHERE name = ?1",
	[ST_JOB_ERRORS] = "UPDATE jobs SET errors = ?2 WHERE id = ?1",
	[ST_JOB_FIND] = "SELECT " JOB_COLS " FROM jobs WHERE name = ?1",
	[ST_JOB_TEXTS] = "SELECT metadata, errors FROM jobs WHERE id = ?1",
	[ST_JOBS_ACTIVE] = "SELECT " JOB_COLS " FROM jobs"
		" WHERE state IN ('validating', 'in_progress', 'cancelling') ORDER BY id",
	[ST_JOBS_PAGE] = "SELECT " JOB_COLS " FROM jobs WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
	[ST_REQ_INSERT] = "INSERT INTO requests (rid, job, line_no, custom_id, body, est_tokens)"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	[ST_REQ_DELETE] = "DELETE FROM requests WHERE rid BETWEEN ?1 AND ?2",
	[ST_REQ_QUEUED] = "SELECT line_no, custom_id, body, est_tokens FROM requests"
		" WHERE rid BETWEEN ?1 AND ?2 AND state = 'queued' ORDER BY rid",
	[ST_REQ_FINISH] = "UPDATE requests SET state = ?2, error_code = ?3, error_message = ?4"
		" WHERE rid = ?1 AND state = 'queued'",
	[ST_REQ_BUMP] = "UPDATE requests SET attempts = attempts + 1"
		" WHERE rid BETWEEN ?1 AND ?2 AND state = 'queued'",
	[ST_REQ_ANSWER] = "UPDATE requests SET state = ?3, output = ?4, finish_reason = ?5,"
		" prompt_tokens = ?6, completion_tokens = ?7, error_code = ?8, error_message = ?9,"
		" attempts = attempts + 1"
		" WHERE rid = ?1 AND custom_id = ?2 AND state = 'queued'",
	[ST_REQ_LINES] = "SELECT line_no FROM requests WHERE rid BETWEEN ?1 AND ?2"
		" AND state = 'queued' ORDER BY rid",
	[ST_RESULTS_PAGE] = "SELECT line_no, custom_id, state, output, finish_reason, prompt_tokens,"
		" completion_tokens, attempts, error_code, error_message,"
		" CASE WHEN output IS NOT NULL AND body LIKE '{\"embed\":true,%'"
		" THEN json_extract(body, '$.encoding_format') END FROM requests"
		" WHERE rid BETWEEN ?1 AND ?2 ORDER BY rid LIMIT ?3",
	[ST_SHARD_INSERT] = "INSERT INTO shards (job, first_line, last_line, n_requests, state, attempt,"
		" fails, worker, dispatched_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
	[ST_SHARD_UPDATE] = "UPDATE shards SET state = ?2, attempt = ?3, fails = ?4, worker = ?5,"
		" dispatched_at = ?6, n_requests = ?7 WHERE id = ?1",
	[ST_SHARD_STATS] = "UPDATE shards SET steps = ?2, wall_ns = ?3, busy_ns = ?4, flops = ?5,"
		" tokens = ?6, max_batch = ?7 WHERE id = ?1",
	[ST_SHARDS_PENDING] = "SELECT " SHARD_COLS " FROM shards"
		" WHERE job = ?1 AND state IN ('queued', 'inflight') ORDER BY id",
	[ST_WORKER_JOIN] = "INSERT INTO workers (name, instance_id, hardware_profile, build, models,"
		" slots, threads, key, joined_at, joined_at_ns) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9 / 1000000000,"
		" ?9)",
	[ST_WORKER_LEAVE] = "UPDATE workers SET left_at = ?2 / 1000000000, left_at_ns = ?2, left_reason = ?3"
		" WHERE id = ?1",
	[ST_WORKERS_GONE] = "UPDATE workers SET left_at = ?1 / 1000000000, left_at_ns = ?1, left_reason = ?2"
		" WHERE left_at = 0 AND left_at_ns = 0",
	[ST_WORKERS_ATTACHED] = "SELECT id, name, hardware_profile, joined_at_ns, left_at_ns FROM workers"
		" WHERE joined_at_ns > 0 AND (left_at_ns = 0 OR left_at_ns > ?1) ORDER BY id",
	[ST_WORKER_SPAN] = "SELECT id, name, hardware_profile, joined_at_ns, left_at_ns FROM workers"
		" WHERE id = ?1 AND joined_at_ns > 0",
	[ST_LEDGER_COUNT] = "SELECT count(*) FROM ledger WHERE job = ?1",
};

struct journal {
	sqlite3 *db;		/* owned */
	sqlite3_stmt *st[N_STMT];	/* owned, prepared at open */
	int lock_fd;		/* owned: flock'ed STATE_DIR/lock */
	int sync;
	bool in_tx;
	bool durable;		/* this transaction runs with synchronous=FULL */
	journal_cost_fn cost_fn;
	void *cost_user;	/* borrowed */
	journal_book_fn book_fn;
	void *book_user;	/* borrowed */
	journal_tick_fn tick_fn;
	void *tick_user;	/* borrowed */
	int64_t (*wall)(void *user);	/* the wall clock (mg_clock_wall_ns) */
	void *wall_user;	/* borrowed */
	journal_call_t *calls;	/* owned: a Result's calls for book_fn */
	size_t cap_calls;
	int64_t converted_from;	/* bytes of the file before journal_open switched it to
				 * incremental vacuum (0: it did not) */
	int64_t converted_to;
};

static int64_t wall_default(void *user)
{
	(void)user;
	return mg_clock_wall_ns();
}

static int64_t rid_of(int64_t job, int64_t line)
{
	return (job << 32) | (line & JOURNAL_LINE_MAX);
}

/* SQLite result code -> negative errno. */
static int sq_err(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK: case SQLITE_DONE: case SQLITE_ROW: return 0;
	case SQLITE_NOMEM: return -ENOMEM;
	case SQLITE_BUSY: case SQLITE_LOCKED: return -EBUSY;
	case SQLITE_CONSTRAINT: return -EEXIST;
	case SQLITE_FULL: return -ENOSPC;
	case SQLITE_READONLY: case SQLITE_PERM: case SQLITE_AUTH: return -EACCES;
	case SQLITE_CORRUPT: case SQLITE_NOTADB: return -EBADMSG;
	default: return -EIO;
	}
}

/* Run a prepared statement that returns no rows, then reset it. */
static int step_done(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : sq_err(rc == SQLITE_ROW ? SQLITE_MISUSE : rc);
}

/* Every row of a prepared (bound) statement, each read by READ into an
 * item of SIZE bytes of a new array (FIRST items, then doubling), then
 * reset it. 0 with the array in *RET (NULL when there is no row) and its
 * length in *RET_N, or < 0 (then nothing is allocated). */
static int collect(sqlite3_stmt *st, size_t size, size_t first, void (*read)(sqlite3_stmt *st, void *item),
		   void **ret, size_t *ret_n)
{
	char *v = NULL;
	size_t n = 0, cap = 0;
	int rc, r = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == cap) {
			size_t nc = cap ? 2 * cap : first;
			char *nv = realloc(v, nc * size);
			if (nv == NULL) {
				r = -ENOMEM;
				break;
			}
			v = nv;
			cap = nc;
		}
		read(st, v + n++ * size);
	}
	if (r == 0 && rc != SQLITE_DONE)
		r = sq_err(rc);
	sqlite3_reset(st);
	if (r < 0) {
		free(v);
		return r;
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
	if (s == NULL)
		sqlite3_bind_null(st, i);
	else
		sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
}

static void copy_col(char *dst, size_t cap, sqlite3_stmt *st, int col)
{
	const unsigned char *s = sqlite3_column_text(st, col);
	snprintf(dst, cap, "%s", s ? (const char *)s : "");
}

static int take_lock(const char *dir, int *ret_fd, char *err, size_t errlen)
{
	char path[PATH_MAX];
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		int e = errno;
		snprintf(err, errlen, "state directory %s: cannot create: %s", dir, strerror(e));
		return -e;
	}
	snprintf(path, sizeof(path), "%s/lock", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen, "state directory %s: cannot open %s: %s", dir, path, strerror(e));
		return -e;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		char pid[32] = "";
		ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		close(fd);
		if (e == EWOULDBLOCK) {
			snprintf(err, errlen, "state directory %s is in use by another margind (pid %s, lock %s)",
				 dir, pid[0] ? pid : "unknown", path);
			return -EBUSY;
		}
		snprintf(err, errlen, "state directory %s: cannot lock %s: %s", dir, path, strerror(e));
		return -e;
	}
	char pid[32];
	int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
		/* The lock is what matters; the pid is a courtesy for the message. */
	}
	*ret_fd = fd;
	return 0;
}

static int exec_sql(journal_t *j, const char *sql, char *err, size_t errlen)
{
	char *msg = NULL;
	int rc = sqlite3_exec(j->db, sql, NULL, NULL, &msg);
	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "%s", msg ? msg : sqlite3_errstr(rc));
		sqlite3_free(msg);
		return sq_err(rc);
	}
	return 0;
}

/* The steps after version `from`, one transaction each. */
static int migrate(journal_t *j, int from, char *err, size_t errlen)
{
	char e2[512];
	int r = 0;
	for (int v = from + 1; v <= SCHEMA_VERSION && r == 0; v++) {
		const struct migration *m = &migrations[v - 1];
		char sql[64];
		if ((r = exec_sql(j, "BEGIN IMMEDIATE", e2, sizeof(e2))) < 0)
			break;
		if (m->sql != NULL)
			r = exec_sql(j, m->sql, e2, sizeof(e2));
		if (r == 0 && m->ledger_step > 0)
			r = ledger_migrate_step(j->db, m->ledger_step, e2, sizeof(e2));
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", v);
		if (r == 0)
			r = exec_sql(j, sql, e2, sizeof(e2));
		if (r == 0)
			r = exec_sql(j, "COMMIT", e2, sizeof(e2));
		if (r < 0) {
			char *msg = NULL;
			sqlite3_exec(j->db, "ROLLBACK", NULL, NULL, &msg);
			sqlite3_free(msg);
			snprintf(err, errlen, "schema version %d (%s): %.400s", v, m->what, e2);
		}
	}
	return r;
}

static int64_t sql_int(journal_t *j, const char *sql)
{
	sqlite3_stmt *st = NULL;
	int64_t v = -1;
	if (sqlite3_prepare_v2(j->db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static int64_t file_bytes(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (int64_t)st.st_size : 0;
}

/* auto_vacuum = INCREMENTAL, so that pages freed by deletions can be given
 * back to the file system (journal_vacuum). SQLite takes the setting only
 * before the first table exists or through a VACUUM: an older journal is
 * rewritten once here (it needs as much free disk as the file). */
static int incremental_vacuum_on(journal_t *j, const char *path, char *err, size_t errlen)
{
	if (sql_int(j, "PRAGMA auto_vacuum") == 2)
		return 0;
	int r = exec_sql(j, "PRAGMA auto_vacuum = INCREMENTAL", err, errlen);
	if (r < 0)
		return r;
	if (sql_int(j, "SELECT count(*) FROM sqlite_master") == 0)	/* new: a VACUUM of nothing */
		return exec_sql(j, "VACUUM", err, errlen);
	j->converted_from = file_bytes(path);
	if ((r = exec_sql(j, "VACUUM", err, errlen)) < 0 ||
	    (r = exec_sql(j, "PRAGMA wal_checkpoint(TRUNCATE)", err, errlen)) < 0)
		return r;
	j->converted_to = file_bytes(path);
	if (sql_int(j, "PRAGMA auto_vacuum") != 2) {
		snprintf(err, errlen, "auto_vacuum is still %lld after VACUUM",
			 (long long)sql_int(j, "PRAGMA auto_vacuum"));
		return -EIO;
	}
	return 0;
}

bool journal_converted(const journal_t *j, int64_t *ret_from, int64_t *ret_to)
{
	*ret_from = j->converted_from;
	*ret_to = j->converted_to;
	return j->converted_from > 0;
}

int journal_open(const char *state_dir, int sync, journal_t **ret, char *err, size_t errlen)
{
	char path[PATH_MAX], e2[512];
	int r;
	journal_t *j = calloc(1, sizeof(*j));
	if (j == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	j->lock_fd = -1;
	j->sync = sync;
	j->wall = wall_default;
	r = take_lock(state_dir, &j->lock_fd, err, errlen);
	if (r < 0)
		goto fail;
	snprintf(path, sizeof(path), "%s/margin.db", state_dir);
	int rc = sqlite3_open_v2(path, &j->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				 SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "%s: cannot open: %s", path,
			 j->db ? sqlite3_errmsg(j->db) : sqlite3_errstr(rc));
		r = sq_err(rc);
		goto fail;
	}
	sqlite3_busy_timeout(j->db, 5000);
	r = exec_sql(j, sync == JOURNAL_SYNC_FULL ?
		     "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;" :
		     "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", e2, sizeof(e2));
	if (r == 0)
		/* 32 MiB of page cache: the custom_id index of a big job stays hot. */
		r = exec_sql(j, "PRAGMA cache_size=-32768; PRAGMA temp_store=MEMORY; PRAGMA wal_autocheckpoint=8192;"
			     " PRAGMA journal_size_limit=67108864;", e2, sizeof(e2));
	if (r < 0) {
		snprintf(err, errlen, "%s: %s", path, e2);
		goto fail;
	}
	sqlite3_stmt *v;
	int version = 0;
	if (sqlite3_prepare_v2(j->db, "PRAGMA user_version", -1, &v, NULL) == SQLITE_OK) {
		if (sqlite3_step(v) == SQLITE_ROW)
			version = sqlite3_column_int(v, 0);
		sqlite3_finalize(v);
	}
	if (version > SCHEMA_VERSION) {
		snprintf(err, errlen, "%s: schema version %d is newer than this margind's (%d)",
			 path, version, SCHEMA_VERSION);
		r = -EPROTO;
		goto fail;
	}
	if ((r = incremental_vacuum_on(j, path, e2, sizeof(e2))) < 0) {
		snprintf(err, errlen, "%s: switching to incremental vacuum: %s", path, e2);
		goto fail;
	}
	if ((r = migrate(j, version, e2, sizeof(e2))) < 0) {
		snprintf(err, errlen, "%s: %s", path, e2);
		goto fail;
	}
	for (int i = 0; i < N_STMT; i++) {
		rc = sqlite3_prepare_v3(j->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &j->st[i], NULL);
		if (rc != SQLITE_OK) {
			snprintf(err, errlen, "%s: preparing statement %d: %s", path, i, sqlite3_errmsg(j->db));
			r = sq_err(rc);
			goto fail;
		}
	}
	*ret = j;
	return 0;
fail:
	journal_destroy(&j);
	return r < 0 ? r : -EIO;
}

void journal_destroy(journal_t **p)
{
	if (p == NULL || *p == NULL)
		return;
	journal_t *j = *p;
	if (j->in_tx)
		journal_rollback(j);
	for (int i = 0; i < N_STMT; i++)
		sqlite3_finalize(j->st[i]);
	if (j->db)
		sqlite3_close(j->db);
	if (j->lock_fd >= 0)
		close(j->lock_fd);	/* releases the flock */
	free(j->calls);
	free(j);
	*p = NULL;
}

const char *journal_errmsg(const journal_t *j)
{
	return j->db ? sqlite3_errmsg(j->db) : "no database";
}

static void set_sync(journal_t *j, const char *pragma)
{
	char *msg = NULL;
	sqlite3_exec(j->db, pragma, NULL, NULL, &msg);
	sqlite3_free(msg);
}

int journal_begin(journal_t *j)
{
	int r = step_done(j->st[ST_BEGIN]);
	if (r == 0)
		j->in_tx = true;
	return r;
}

int journal_begin_durable(journal_t *j)
{
	/* synchronous cannot change inside a transaction: raise it for this
	 * one, journal_commit() lowers it again. */
	if (j->sync != JOURNAL_SYNC_FULL) {
		set_sync(j, "PRAGMA synchronous=FULL");
		j->durable = true;
	}
	int r = journal_begin(j);
	if (r < 0 && j->durable) {
		set_sync(j, "PRAGMA synchronous=NORMAL");
		j->durable = false;
	}
	return r;
}

static void end_tx(journal_t *j)
{
	j->in_tx = false;
	if (j->durable) {
		set_sync(j, "PRAGMA synchronous=NORMAL");
		j->durable = false;
	}
}

int journal_commit(journal_t *j)
{
	int r = step_done(j->st[ST_COMMIT]);
	if (r == 0)
		end_tx(j);
	else
		journal_rollback(j);
	return r;
}

void journal_rollback(journal_t *j)
{
	if (sqlite3_get_autocommit(j->db) == 0)
		step_done(j->st[ST_ROLLBACK]);
	end_tx(j);
}

bool journal_in_tx(const journal_t *j)
{
	return j->in_tx;
}

int journal_savepoint(journal_t *j)
{
	return step_done(j->st[ST_SAVEPOINT]);
}

int journal_release(journal_t *j)
{
	return step_done(j->st[ST_RELEASE]);
}

int journal_rollback_savepoint(journal_t *j)
{
	int r = step_done(j->st[ST_ROLLBACK_TO]);
	if (r == 0)
		r = step_done(j->st[ST_RELEASE]);
	return r;
}

void journal_set_cost_fn(journal_t *j, journal_cost_fn fn, void *user)
{
	j->cost_fn = fn;
	j->cost_user = user;
}

void journal_set_book_fn(journal_t *j, journal_book_fn fn, void *user)
{
	j->book_fn = fn;
	j->book_user = user;
}

/* --- jobs ------------------------------------------------------------- */

static void read_job(sqlite3_stmt *st, journal_job_t *job)
{
	memset(job, 0, sizeof(*job));
	job->id = sqlite3_column_int64(st, 0);
	copy_col(job->name, sizeof(job->name), st, 1);
	copy_col(job->endpoint, sizeof(job->endpoint), st, 2);
	copy_col(job->model, sizeof(job->model), st, 3);
	int state = mg_job_state_parse((const char *)sqlite3_column_text(st, 4));
	job->state = state >= 0 ? (mg_job_state_t)state : MG_JOB_N_STATES;
	copy_col(job->input_path, sizeof(job->input_path), st, 5);
	job->ingest_offset = sqlite3_column_int64(st, 6);
	job->ingest_line = sqlite3_column_int64(st, 7);
	job->n_total = sqlite3_column_int64(st, 8);
	job->n_done = sqlite3_column_int64(st, 9);
	job->n_failed = sqlite3_column_int64(st, 10);
	job->n_cancelled = sqlite3_column_int64(st, 11);
	job->next_line = sqlite3_column_int64(st, 12);
	job->max_line = sqlite3_column_int64(st, 13);
	job->created_at = sqlite3_column_int64(st, 14);
	job->in_progress_at = sqlite3_column_int64(st, 15);
	job->completed_at = sqlite3_column_int64(st, 16);
	job->failed_at = sqlite3_column_int64(st, 17);
	job->cancelling_at = sqlite3_column_int64(st, 18);
	job->cancelled_at = sqlite3_column_int64(st, 19);
	job->priority = sqlite3_column_int(st, 20);
	job->usage.calls = sqlite3_column_int64(st, 21);
	job->usage.prompt_tokens = sqlite3_column_int64(st, 22);
	job->usage.completion_tokens = sqlite3_column_int64(st, 23);
	job->usage.busy_ns = sqlite3_column_int64(st, 24);
	job->usage.flops = sqlite3_column_int64(st, 25);
	job->usage.cost_marginal_micros = sqlite3_column_int64(st, 26);
	job->usage.cost_loaded_micros = sqlite3_column_int64(st, 27);
}

int journal_job_create(journal_t *j, journal_job_t *job, const char *metadata_json)
{
	sqlite3_stmt *st = j->st[ST_JOB_INSERT];
	bind_text(st, 1, job->name);
	bind_text(st, 2, job->endpoint);
	bind_text(st, 3, job->model);
	bind_text(st, 4, mg_job_state_name(job->state));
	bind_text(st, 5, job->input_path);
	sqlite3_bind_int64(st, 6, job->ingest_offset);
	sqlite3_bind_int64(st, 7, job->ingest_line);
	sqlite3_bind_int64(st, 8, job->n_total);
	sqlite3_bind_int64(st, 9, job->next_line);
	sqlite3_bind_int64(st, 10, job->max_line);
	sqlite3_bind_int64(st, 11, job->created_at);
	bind_text(st, 12, metadata_json);
	sqlite3_bind_int(st, 13, job->priority);
	int r = step_done(st);
	if (r == 0)
		job->id = sqlite3_last_insert_rowid(j->db);
	return r;
}

int journal_job_update(journal_t *j, const journal_job_t *job)
{
	sqlite3_stmt *st = j->st[ST_JOB_UPDATE];
	sqlite3_bind_int64(st, 1, job->id);
	bind_text(st, 2, job->model);
	bind_text(st, 3, mg_job_state_name(job->state));
	sqlite3_bind_int64(st, 4, job->ingest_offset);
	sqlite3_bind_int64(st, 5, job->ingest_line);
	sqlite3_bind_int64(st, 6, job->n_total);
	sqlite3_bind_int64(st, 7, job->n_done);
	sqlite3_bind_int64(st, 8, job->n_failed);
	sqlite3_bind_int64(st, 9, job->n_cancelled);
	sqlite3_bind_int64(st, 10, job->next_line);
	sqlite3_bind_int64(st, 11, job->max_line);
	sqlite3_bind_int64(st, 12, job->in_progress_at);
	sqlite3_bind_int64(st, 13, job->completed_at);
	sqlite3_bind_int64(st, 14, job->failed_at);
	sqlite3_bind_int64(st, 15, job->cancelling_at);
	sqlite3_bind_int64(st, 16, job->cancelled_at);
	bind_text(st, 17, job->endpoint);
	return step_done(st);
}

int journal_job_set_errors(journal_t *j, int64_t job, const char *errors_json)
{
	sqlite3_stmt *st = j->st[ST_JOB_ERRORS];
	sqlite3_bind_int64(st, 1, job);
	bind_text(st, 2, errors_json);
	return step_done(st);
}

int journal_job_find(journal_t *j, const char *name, journal_job_t *ret)
{
	sqlite3_stmt *st = j->st[ST_JOB_FIND];
	bind_text(st, 1, name);
	int rc = sqlite3_step(st), r;
	if (rc == SQLITE_ROW) {
		read_job(st, ret);
		r = 0;
	} else {
		r = rc == SQLITE_DONE ? -ENOENT : sq_err(rc);
	}
	sqlite3_reset(st);
	return r;
}

int journal_job_usage(journal_t *j, const char *name, journal_usage_t *ret)
{
	journal_job_t *job = malloc(sizeof(*job));
	if (job == NULL)
		return -ENOMEM;
	int r = journal_job_find(j, name, job);
	if (r == 0)
		*ret = job->usage;
	free(job);
	return r;
}

static char *dup_col(sqlite3_stmt *st, int col)
{
	const unsigned char *s = sqlite3_column_text(st, col);
	return s ? strdup((const char *)s) : NULL;
}

int journal_job_texts(journal_t *j, int64_t job, char **ret_metadata, char **ret_errors)
{
	sqlite3_stmt *st = j->st[ST_JOB_TEXTS];
	sqlite3_bind_int64(st, 1, job);
	int rc = sqlite3_step(st), r = 0;
	char *m = NULL, *e = NULL;
	if (rc == SQLITE_ROW) {
		m = dup_col(st, 0);
		e = dup_col(st, 1);
	} else {
		r = rc == SQLITE_DONE ? -ENOENT : sq_err(rc);
	}
	sqlite3_reset(st);
	if (r == 0) {
		*ret_metadata = m;
		*ret_errors = e;
	}
	return r;
}

static int each_job(sqlite3_stmt *st, int (*fn)(void *user, const journal_job_t *job), void *user)
{
	journal_job_t *job = malloc(sizeof(*job));
	int rc, r = 0, n = 0;
	if (job == NULL) {
		sqlite3_reset(st);
		return -ENOMEM;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		read_job(st, job);
		r = fn(user, job);
		if (r < 0)
			break;
		n++;
	}
	if (r == 0 && rc != SQLITE_DONE)
		r = sq_err(rc);
	sqlite3_reset(st);
	free(job);
	return r < 0 ? r : n;
}

int journal_jobs_active(journal_t *j, int (*fn)(void *user, const journal_job_t *job), void *user)
{
	return each_job(j->st[ST_JOBS_ACTIVE], fn, user);
}

int journal_jobs_page(journal_t *j, int64_t before_id, int limit,
		      int (*fn)(void *user, const journal_job_t *job), void *user)
{
	sqlite3_stmt *st = j->st[ST_JOBS_PAGE];
	sqlite3_bind_int64(st, 1, before_id > 0 ? before_id : INT64_MAX);
	sqlite3_bind_int(st, 2, limit);
	return each_job(st, fn, user);
}

/* --- requests --------------------------------------------------------- */

int journal_request_insert(journal_t *j, int64_t job, int64_t line_no, const char *custom_id,
			   const char *body, int64_t est_tokens)
{
	if (line_no < 1 || line_no > JOURNAL_LINE_MAX)
		return -ERANGE;
	sqlite3_stmt *st = j->st[ST_REQ_INSERT];
	sqlite3_bind_int64(st, 1, rid_of(job, line_no));
	sqlite3_bind_int64(st, 2, job);
	sqlite3_bind_int64(st, 3, line_no);
	bind_text(st, 4, custom_id);
	bind_text(st, 5, body);
	sqlite3_bind_int64(st, 6, est_tokens);
	return step_done(st);
}

int journal_requests_delete(journal_t *j, int64_t job)
{
	sqlite3_stmt *st = j->st[ST_REQ_DELETE];
	sqlite3_bind_int64(st, 1, rid_of(job, 0));
	sqlite3_bind_int64(st, 2, rid_of(job, JOURNAL_LINE_MAX));
	return step_done(st);
}

/* --- retention -------------------------------------------------------- */

/* Finished jobs that still hold something: request or shard rows, or an
 * input path (cleared when retired). */
static const char retire_sql[] =
	"SELECT id, name, state FROM jobs"
	" WHERE state IN ('completed', 'failed', 'cancelled')"
	" AND max(completed_at, failed_at, cancelled_at) < ?1"
	" AND (input_path != ''"
	"  OR EXISTS (SELECT 1 FROM requests WHERE rid BETWEEN id * 4294967296 AND id * 4294967296 + 4294967295)"
	"  OR EXISTS (SELECT 1 FROM shards WHERE shards.job = jobs.id))"
	" ORDER BY id LIMIT ?2";

/* One statement with the id as ?1, run to completion. */
static int exec_id(journal_t *j, const char *sql, int64_t id)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(j->db, sql, -1, &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, id);
		rc = sqlite3_step(st);
	}
	sqlite3_finalize(st);
	return sq_err(rc);
}

int journal_jobs_retire(journal_t *j, int64_t before_s, int limit, journal_retire_fn fn, void *user)
{
	if (j->in_tx)
		return -EBUSY;
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(j->db, retire_sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return sq_err(rc);
	sqlite3_bind_int64(st, 1, before_s);
	sqlite3_bind_int(st, 2, limit);
	struct retiree {
		int64_t id;
		char name[JOURNAL_NAME_MAX], state[16];
	} *list = calloc((size_t)(limit > 0 ? limit : 1), sizeof(*list));
	int n = 0, r = 0;
	while (list != NULL && n < limit && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		list[n].id = sqlite3_column_int64(st, 0);
		snprintf(list[n].name, sizeof(list[n].name), "%s", (const char *)sqlite3_column_text(st, 1));
		snprintf(list[n].state, sizeof(list[n].state), "%s", (const char *)sqlite3_column_text(st, 2));
		n++;
	}
	if (list == NULL)
		r = -ENOMEM;
	else if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		r = sq_err(rc);
	sqlite3_finalize(st);
	int done = 0;
	for (int i = 0; i < n && r == 0; i++) {
		int k = fn(user, list[i].name, list[i].state);
		if (k < 0) {
			r = k;
			break;
		}
		if (k > 0)
			continue;	/* not yet */
		if ((r = journal_begin(j)) < 0)
			break;
		r = journal_requests_delete(j, list[i].id);
		if (r == 0)
			r = exec_id(j, "DELETE FROM shards WHERE job = ?1", list[i].id);
		if (r == 0)
			r = exec_id(j, "UPDATE jobs SET input_path = '' WHERE id = ?1", list[i].id);
		if (r == 0)
			r = journal_commit(j);
		else
			journal_rollback(j);
		if (r == 0)
			done++;
	}
	free(list);
	return r < 0 ? r : done;
}

int journal_vacuum(journal_t *j, int64_t *ret_freed_bytes)
{
	if (j->in_tx)
		return -EBUSY;
	int64_t page = sql_int(j, "PRAGMA page_size");
	int64_t before = sql_int(j, "PRAGMA page_count");
	char e2[256];
	int r = exec_sql(j, "PRAGMA incremental_vacuum", e2, sizeof(e2));
	/* In WAL mode the file is cut at the checkpoint. */
	if (r == 0)
		r = exec_sql(j, "PRAGMA wal_checkpoint(TRUNCATE)", e2, sizeof(e2));
	int64_t after = sql_int(j, "PRAGMA page_count");
	if (r == 0 && ret_freed_bytes != NULL)
		*ret_freed_bytes = before > after ? (before - after) * page : 0;
	return r;
}

int journal_job_exists(journal_t *j, const char *name)
{
	sqlite3_stmt *st = j->st[ST_JOB_FIND];
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : sq_err(rc);
}

int journal_requests_queued(journal_t *j, int64_t job, int64_t first, int64_t last, int limit,
			    journal_req_fn fn, void *user)
{
	sqlite3_stmt *st = j->st[ST_REQ_QUEUED];
	sqlite3_bind_int64(st, 1, rid_of(job, first));
	sqlite3_bind_int64(st, 2, rid_of(job, last > JOURNAL_LINE_MAX ? JOURNAL_LINE_MAX : last));
	int rc, n = 0, r = 0;
	while (n < limit && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *body = (const char *)sqlite3_column_text(st, 2);
		r = fn(user, sqlite3_column_int64(st, 0), (const char *)sqlite3_column_text(st, 1),
		       body ? body : "{}", sqlite3_column_int64(st, 3));
		if (r != 0)
			break;
		n++;
	}
	if (n < limit && r == 0 && rc != SQLITE_DONE)
		r = sq_err(rc);
	sqlite3_reset(st);
	return r < 0 ? r : n;
}

int journal_request_finish(journal_t *j, int64_t job, int64_t line_no, const char *state,
			   const char *code, const char *message)
{
	sqlite3_stmt *st = j->st[ST_REQ_FINISH];
	sqlite3_bind_int64(st, 1, rid_of(job, line_no));
	bind_text(st, 2, state);
	bind_text(st, 3, code);
	bind_text(st, 4, message);
	int r = step_done(st);
	if (r == 0 && sqlite3_changes(j->db) != 1)
		r = -ENOENT;
	return r;
}

int journal_requests_bump_attempts(journal_t *j, int64_t job, int64_t first, int64_t last)
{
	sqlite3_stmt *st = j->st[ST_REQ_BUMP];
	sqlite3_bind_int64(st, 1, rid_of(job, first));
	sqlite3_bind_int64(st, 2, rid_of(job, last));
	return step_done(st);
}

static void read_line(sqlite3_stmt *st, void *item)
{
	*(int64_t *)item = sqlite3_column_int64(st, 0);
}

int journal_queued_lines(journal_t *j, int64_t job, int64_t first, int64_t last,
			 int64_t **ret_lines)
{
	sqlite3_stmt *st = j->st[ST_REQ_LINES];
	sqlite3_bind_int64(st, 1, rid_of(job, first));
	sqlite3_bind_int64(st, 2, rid_of(job, last));
	void *v;
	size_t n;
	int r = collect(st, sizeof(int64_t), 64, read_line, &v, &n);
	if (r < 0)
		return r;
	*ret_lines = v;
	return (int)n;
}

int journal_results_page(journal_t *j, int64_t job, int64_t after_line, int limit,
			 int (*fn)(void *user, const journal_row_t *row), void *user)
{
	sqlite3_stmt *st = j->st[ST_RESULTS_PAGE];
	sqlite3_bind_int64(st, 1, rid_of(job, after_line + 1));
	sqlite3_bind_int64(st, 2, rid_of(job, JOURNAL_LINE_MAX));
	sqlite3_bind_int(st, 3, limit);
	int rc, n = 0, r = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		journal_row_t row = {
			.line_no = sqlite3_column_int64(st, 0),
			.custom_id = (const char *)sqlite3_column_text(st, 1),
			.state = (const char *)sqlite3_column_text(st, 2),
			.output = (const char *)sqlite3_column_text(st, 3),
			.finish_reason = (const char *)sqlite3_column_text(st, 4),
			.prompt_tokens = sqlite3_column_int64(st, 5),
			.completion_tokens = sqlite3_column_int64(st, 6),
			.attempts = sqlite3_column_int64(st, 7),
			.error_code = (const char *)sqlite3_column_text(st, 8),
			.error_message = (const char *)sqlite3_column_text(st, 9),
			.encoding_format = (const char *)sqlite3_column_text(st, 10),
		};
		r = fn(user, &row);
		if (r < 0)
			break;
		n++;
	}
	if (r == 0 && rc != SQLITE_DONE)
		r = sq_err(rc);
	sqlite3_reset(st);
	return r < 0 ? r : n;
}

/* --- results and the ledger ------------------------------------------- */

static int usage_add(journal_t *j, const char *job, const journal_usage_t *u)
{
	sqlite3_stmt *st = j->st[ST_JOB_USAGE_ADD];
	bind_text(st, 1, job);
	sqlite3_bind_int64(st, 2, u->calls);
	sqlite3_bind_int64(st, 3, u->prompt_tokens);
	sqlite3_bind_int64(st, 4, u->completion_tokens);
	sqlite3_bind_int64(st, 5, u->busy_ns);
	sqlite3_bind_int64(st, 6, u->flops);
	sqlite3_bind_int64(st, 7, u->cost_marginal_micros);
	sqlite3_bind_int64(st, 8, u->cost_loaded_micros);
	return step_done(st);
}

int journal_job_add_loaded(journal_t *j, const char *job, int64_t delta_micros)
{
	journal_usage_t u;
	memset(&u, 0, sizeof(u));
	u.cost_loaded_micros = delta_micros;
	return usage_add(j, job, &u);
}

/* A call booked without the booking hook: priced by the cost hook (or
 * cost 0), written by the ledger's one INSERT path. Such rows belong to
 * no accounting window (period_ns = 0). */
static int ledger_book(journal_t *j, const journal_call_t *c, const char *endpoint,
		       journal_usage_t *sum, bool *ret_hook_failed, char *err, size_t errlen)
{
	int64_t marginal = 0, loaded = 0;
	if (j->cost_fn != NULL) {
		int r = j->cost_fn(j->cost_user, c, &marginal, &loaded);
		if (r < 0) {
			*ret_hook_failed = true;
			return r;
		}
	}
	ledger_row_t row = {
		.job = c->job, .custom_id = c->custom_id, .line_no = c->line_no, .model = c->model,
		.worker = c->worker, .worker_name = c->worker_name ? c->worker_name : "",
		.hardware_profile = c->hardware_profile ? c->hardware_profile : "", .shard = (int64_t)c->shard_id,
		.prompt_tokens = c->prompt_tokens, .completion_tokens = c->completion_tokens, .busy_ns = c->busy_ns,
		.flops = c->flops, .queue_ns = c->queue_ns, .first_token_ns = c->first_token_ns,
		.cost_marginal_micros = marginal, .cost_loaded_micros = loaded, .answered_at_ns = c->answered_at_ns,
		.currency = "", .via_batch = true, .endpoint = endpoint,
	};
	int r = ledger_insert(j->db, &row, 1, err, errlen);
	if (r == 0) {
		sum->calls++;
		sum->prompt_tokens += c->prompt_tokens;
		sum->completion_tokens += c->completion_tokens;
		sum->busy_ns += (int64_t)c->busy_ns;
		sum->flops += (int64_t)c->flops;
		sum->cost_marginal_micros += marginal;
		sum->cost_loaded_micros += loaded;
	}
	return r;
}

int journal_embeddings_format(const Margin__V1__Embedding *const *v, size_t n, char **ret)
{
	size_t len = 0;
	for (size_t i = 0; i < n; i++) {
		for (size_t k = 0; k < v[i]->n_values; k++)
			if (!isfinite(v[i]->values[k]))
				return -EDOM;
		len += sodium_base64_ENCODED_LEN(v[i]->n_values * 4, sodium_base64_VARIANT_ORIGINAL);
	}
	char *out = malloc(len + 1);
	uint8_t *bytes = NULL;
	size_t cap = 0, off = 0;
	if (out == NULL)
		return -ENOMEM;
	out[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		size_t nb = v[i]->n_values * 4;
		if (nb > cap) {
			uint8_t *nbuf = realloc(bytes, nb);
			if (nbuf == NULL) {
				free(bytes);
				free(out);
				return -ENOMEM;
			}
			bytes = nbuf;
			cap = nb;
		}
		for (size_t k = 0; k < v[i]->n_values; k++) {
			uint32_t u;
			memcpy(&u, &v[i]->values[k], 4);
			for (int b = 0; b < 4; b++)
				bytes[4 * k + (size_t)b] = (uint8_t)(u >> (8 * b));
		}
		if (i > 0)
			out[off++] = ',';
		sodium_bin2base64(out + off, len + 1 - off, bytes, nb, sodium_base64_VARIANT_ORIGINAL);
		off += strlen(out + off);
	}
	free(bytes);
	*ret = out;
	return 0;
}

static int format_embeddings(const Margin__V1__Output *o, char **ret)
{
	return journal_embeddings_format((const Margin__V1__Embedding *const *)o->embeddings,
					 o->n_embeddings, ret);
}

int journal_result_apply(journal_t *j, const journal_result_ctx_t *ctx,
			 const Margin__V1__Result *res, journal_counts_t *ret,
			 char *err, size_t errlen)
{
	const journal_shard_t *sh = ctx->shard;
	const journal_job_t *job = ctx->job;
	journal_counts_t c;
	memset(&c, 0, sizeof(c));
	int64_t now = j->wall(j->wall_user);
	if ((int64_t)res->n_outputs != sh->n_requests) {
		snprintf(err, errlen, "result has %zu outputs, the shard has %lld requests",
			 res->n_outputs, (long long)sh->n_requests);
		return -EBADMSG;
	}
	/* With a booking hook the calls are collected and priced together. */
	size_t n_calls = 0;
	uint64_t unbooked_busy = 0;
	if (j->book_fn != NULL && res->n_outputs > j->cap_calls) {
		journal_call_t *nc = realloc(j->calls, res->n_outputs * sizeof(*nc));
		if (nc == NULL) {
			snprintf(err, errlen, "out of memory for %zu calls", res->n_outputs);
			return -ENOMEM;
		}
		j->calls = nc;
		j->cap_calls = res->n_outputs;
	}
	for (size_t i = 0; i < res->n_outputs; i++) {
		const Margin__V1__Output *o = res->outputs[i];
		int64_t line = (int64_t)o->line_no;
		if (line < sh->first_line || line > sh->last_line) {
			snprintf(err, errlen, "output %zu: line %lld is outside the shard's lines %lld-%lld",
				 i, (long long)line, (long long)sh->first_line, (long long)sh->last_line);
			return -EBADMSG;
		}
		const char *state = "done", *code = NULL, *msg = NULL;
		if (o->error != NULL && (o->error->code[0] || o->error->message[0])) {
			code = o->error->code[0] ? o->error->code : "worker_error";
			msg = o->error->message;
			state = strcmp(code, "cancelled") == 0 ? "cancelled" : "failed";
		}
		char *vecs = NULL;
		if (code == NULL && strcmp(job->endpoint, JOURNAL_EP_EMBEDDINGS) == 0) {
			int e = o->n_embeddings > 0 ? format_embeddings(o, &vecs) : -ENODATA;
			if (e == -ENOMEM) {
				snprintf(err, errlen, "out of memory for the embeddings of line %lld", (long long)line);
				return e;
			}
			if (e < 0) {
				code = "worker_error";
				msg = e == -ENODATA ? "the worker answered an embedding request without vectors" :
					"the worker's embedding has a value that is not a finite number";
				state = "failed";
			}
		}
		sqlite3_stmt *st = j->st[ST_REQ_ANSWER];
		sqlite3_bind_int64(st, 1, rid_of(job->id, line));
		bind_text(st, 2, o->custom_id);
		bind_text(st, 3, state);
		if (code == NULL) {
			sqlite3_bind_text(st, 4, vecs ? vecs : o->text, -1, SQLITE_STATIC);
			bind_text(st, 5, o->finish_reason);
		} else {
			sqlite3_bind_null(st, 4);
			sqlite3_bind_null(st, 5);
		}
		sqlite3_bind_int64(st, 6, o->prompt_tokens);
		sqlite3_bind_int64(st, 7, o->completion_tokens);
		bind_text(st, 8, code);
		bind_text(st, 9, msg);
		int r = step_done(st);
		free(vecs);
		if (r < 0) {
			snprintf(err, errlen, "output %zu (line %lld): %s", i, (long long)line,
				 sqlite3_errmsg(j->db));
			return r;
		}
		if (sqlite3_changes(j->db) != 1) {
			snprintf(err, errlen, "output %zu: line %lld custom_id \"%s\" is not a pending request of the shard (wrong custom_id or answered twice)",
				 i, (long long)line, o->custom_id);
			return -EBADMSG;
		}
		if (code != NULL) {
			if (state[0] == 'c')
				c.cancelled++;
			else
				c.failed++;
			if (o->usage != NULL)
				unbooked_busy += o->usage->busy_ns;
			continue;
		}
		c.done++;
		const Margin__V1__Usage *u = o->usage;
		journal_call_t call = {
			.job = job->name, .custom_id = o->custom_id, .line_no = line,
			.model = job->model, .worker = ctx->worker, .worker_name = ctx->worker_name,
			.hardware_profile = ctx->hardware_profile, .shard_id = (uint64_t)sh->id,
			.prompt_tokens = o->prompt_tokens, .completion_tokens = o->completion_tokens,
			.busy_ns = u ? u->busy_ns : 0, .flops = u ? u->flops : 0,
			.queue_ns = u ? u->queue_ns : 0, .first_token_ns = u ? u->first_token_ns : 0,
			.answered_at_ns = now,
		};
		if (j->book_fn != NULL) {
			j->calls[n_calls++] = call;
			continue;
		}
		bool hook_failed = false;
		char e2[512];
		r = ledger_book(j, &call, job->endpoint, &c.usage, &hook_failed, e2, sizeof(e2));
		if (r < 0 && hook_failed) {
			snprintf(err, errlen, "output %zu (line %lld): the cost hook failed: %s", i,
				 (long long)line, strerror(-r));
			return r;
		}
		if (r < 0) {
			snprintf(err, errlen, "output %zu (line %lld): booking the ledger row: %s", i,
				 (long long)line, e2);
			return r;
		}
	}
	if (j->book_fn != NULL) {
		int r = j->book_fn(j->book_user, j->db, ctx, j->calls, n_calls, unbooked_busy, now, &c.usage,
				   err, errlen);
		if (r < 0)
			return r;
	}
	if (c.usage.calls > 0) {
		int r = usage_add(j, job->name, &c.usage);
		if (r < 0) {
			snprintf(err, errlen, "the job's usage: %s", sqlite3_errmsg(j->db));
			return r;
		}
	}
	ret->done += c.done;
	ret->failed += c.failed;
	ret->cancelled += c.cancelled;
	ret->usage.calls += c.usage.calls;
	ret->usage.prompt_tokens += c.usage.prompt_tokens;
	ret->usage.completion_tokens += c.usage.completion_tokens;
	ret->usage.busy_ns += c.usage.busy_ns;
	ret->usage.flops += c.usage.flops;
	ret->usage.cost_marginal_micros += c.usage.cost_marginal_micros;
	ret->usage.cost_loaded_micros += c.usage.cost_loaded_micros;
	return 0;
}

int64_t journal_ledger_count(journal_t *j, const char *job_name)
{
	sqlite3_stmt *st = j->st[ST_LEDGER_COUNT];
	bind_text(st, 1, job_name);
	int64_t n = -1;
	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return n;
}

/* --- shards ----------------------------------------------------------- */

int journal_shard_insert(journal_t *j, journal_shard_t *s)
{
	sqlite3_stmt *st = j->st[ST_SHARD_INSERT];
	sqlite3_bind_int64(st, 1, s->job);
	sqlite3_bind_int64(st, 2, s->first_line);
	sqlite3_bind_int64(st, 3, s->last_line);
	sqlite3_bind_int64(st, 4, s->n_requests);
	bind_text(st, 5, s->state);
	sqlite3_bind_int64(st, 6, s->attempt);
	sqlite3_bind_int64(st, 7, s->fails);
	bind_text(st, 8, s->worker);
	sqlite3_bind_int64(st, 9, s->dispatched_at);
	int r = step_done(st);
	if (r == 0)
		s->id = sqlite3_last_insert_rowid(j->db);
	return r;
}

int journal_shard_update(journal_t *j, const journal_shard_t *s)
{
	sqlite3_stmt *st = j->st[ST_SHARD_UPDATE];
	sqlite3_bind_int64(st, 1, s->id);
	bind_text(st, 2, s->state);
	sqlite3_bind_int64(st, 3, s->attempt);
	sqlite3_bind_int64(st, 4, s->fails);
	bind_text(st, 5, s->worker);
	sqlite3_bind_int64(st, 6, s->dispatched_at);
	sqlite3_bind_int64(st, 7, s->n_requests);
	return step_done(st);
}

int journal_shard_stats(journal_t *j, int64_t shard, const Margin__V1__StepStats *s)
{
	if (s == NULL)
		return 0;
	sqlite3_stmt *st = j->st[ST_SHARD_STATS];
	sqlite3_bind_int64(st, 1, shard);
	sqlite3_bind_int64(st, 2, (int64_t)s->steps);
	sqlite3_bind_int64(st, 3, (int64_t)s->wall_ns);
	sqlite3_bind_int64(st, 4, (int64_t)s->busy_ns);
	sqlite3_bind_int64(st, 5, (int64_t)s->flops);
	sqlite3_bind_int64(st, 6, (int64_t)s->tokens);
	sqlite3_bind_int64(st, 7, s->max_batch);
	return step_done(st);
}

int journal_shards_pending(journal_t *j, int64_t job,
			   int (*fn)(void *user, const journal_shard_t *s), void *user)
{
	sqlite3_stmt *st = j->st[ST_SHARDS_PENDING];
	sqlite3_bind_int64(st, 1, job);
	int rc, r = 0, n = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		journal_shard_t s;
		memset(&s, 0, sizeof(s));
		s.id = sqlite3_column_int64(st, 0);
		s.job = sqlite3_column_int64(st, 1);
		s.first_line = sqlite3_column_int64(st, 2);
		s.last_line = sqlite3_column_int64(st, 3);
		s.n_requests = sqlite3_column_int64(st, 4);
		copy_col(s.state, sizeof(s.state), st, 5);
		s.attempt = (uint32_t)sqlite3_column_int64(st, 6);
		s.fails = (uint32_t)sqlite3_column_int64(st, 7);
		copy_col(s.worker, sizeof(s.worker), st, 8);
		s.dispatched_at = sqlite3_column_int64(st, 9);
		r = fn(user, &s);
		if (r < 0)
			break;
		n++;
	}
	if (r == 0 && rc != SQLITE_DONE)
		r = sq_err(rc);
	sqlite3_reset(st);
	return r < 0 ? r : n;
}

/* --- workers ---------------------------------------------------------- */

int journal_worker_join(journal_t *j, const char *name, uint64_t instance_id,
			const char *hardware_profile, const char *build, const char *models_json,
			uint32_t slots, uint32_t threads, const char *key, int64_t *ret_id)
{
	sqlite3_stmt *st = j->st[ST_WORKER_JOIN];
	bind_text(st, 1, name);
	sqlite3_bind_int64(st, 2, (int64_t)instance_id);
	bind_text(st, 3, hardware_profile);
	bind_text(st, 4, build);
	bind_text(st, 5, models_json);
	sqlite3_bind_int64(st, 6, slots);
	sqlite3_bind_int64(st, 7, threads);
	bind_text(st, 8, key);
	sqlite3_bind_int64(st, 9, j->wall(j->wall_user));
	int r = step_done(st);
	if (r == 0)
		*ret_id = sqlite3_last_insert_rowid(j->db);
	return r;
}

int journal_workers_gone(journal_t *j, const char *reason)
{
	sqlite3_stmt *st = j->st[ST_WORKERS_GONE];
	sqlite3_bind_int64(st, 1, j->wall(j->wall_user));
	bind_text(st, 2, reason);
	return step_done(st);
}

int journal_worker_leave(journal_t *j, int64_t id, const char *reason)
{
	sqlite3_stmt *st = j->st[ST_WORKER_LEAVE];
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, j->wall(j->wall_user));
	bind_text(st, 3, reason);
	return step_done(st);
}

static void read_span(sqlite3_stmt *st, journal_worker_span_t *w)
{
	memset(w, 0, sizeof(*w));
	snprintf(w->id, sizeof(w->id), "w%lld", (long long)sqlite3_column_int64(st, 0));
	copy_col(w->name, sizeof(w->name), st, 1);
	copy_col(w->hardware_profile, sizeof(w->hardware_profile), st, 2);
	w->joined_ns = sqlite3_column_int64(st, 3);
	w->left_ns = sqlite3_column_int64(st, 4);
}

static void read_span_item(sqlite3_stmt *st, void *item)
{
	read_span(st, item);
}

int journal_workers_attached(journal_t *j, int64_t since_ns, journal_worker_span_t **ret, size_t *ret_n)
{
	sqlite3_stmt *st = j->st[ST_WORKERS_ATTACHED];
	sqlite3_bind_int64(st, 1, since_ns);
	void *v;
	int r = collect(st, sizeof(journal_worker_span_t), 16, read_span_item, &v, ret_n);
	if (r == 0)
		*ret = v;
	return r;
}

int journal_worker_span(journal_t *j, const char *id, journal_worker_span_t *ret)
{
	char *end = NULL;
	if (id == NULL || id[0] != 'w')
		return -ENOENT;
	long long rowid = strtoll(id + 1, &end, 10);
	if (end == id + 1 || *end != '\0')
		return -ENOENT;
	sqlite3_stmt *st = j->st[ST_WORKER_SPAN];
	sqlite3_bind_int64(st, 1, rowid);
	int rc = sqlite3_step(st), r = 0;
	if (rc == SQLITE_ROW)
		read_span(st, ret);
	else
		r = rc == SQLITE_DONE ? -ENOENT : sq_err(rc);
	sqlite3_reset(st);
	return r;
}

/* --- the clock and the meter's timer ----------------------------------- */

void journal_set_clock(journal_t *j, int64_t (*wall)(void *user), void *user)
{
	j->wall = wall ? wall : wall_default;
	j->wall_user = user;
}

int64_t journal_wall_ns(const journal_t *j)
{
	return j->wall(j->wall_user);
}

void journal_set_tick_fn(journal_t *j, journal_tick_fn fn, void *user)
{
	j->tick_fn = fn;
	j->tick_user = user;
}

int journal_tick(journal_t *j, int64_t *ret_next_ns, char *err, size_t errlen)
{
	int64_t next = INT64_MAX;
	int r = 0;
	if (j->tick_fn != NULL) {
		if (j->in_tx) {
			snprintf(err, errlen, "journal_tick inside a transaction");
			return -EBUSY;
		}
		if ((r = journal_begin(j)) < 0) {
			snprintf(err, errlen, "%s", sqlite3_errmsg(j->db));
			return r;
		}
		r = j->tick_fn(j->tick_user, j->db, j->wall(j->wall_user), &next, err, errlen);
		if (r < 0) {
			journal_rollback(j);
			return r;
		}
		int n = r;
		if ((r = journal_commit(j)) < 0) {
			snprintf(err, errlen, "%s", sqlite3_errmsg(j->db));
			return r;
		}
		r = n;
	}
	*ret_next_ns = next;
	return r;
}
