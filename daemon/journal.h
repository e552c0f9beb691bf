/* journal: the daemon's durable state in one SQLite file, STATE_DIR/margin.db.
 *
 * Tables: jobs, requests, shards, workers (schema in journal.c), and the
 * ledger's tables, which meter/ledger.c owns: it creates and migrates them
 * (the journal's `PRAGMA user_version` steps call its numbered steps, so
 * the file has one version) and writes them (ledger_insert, also for the
 * calls this module books without the booking hook). The core thread
 * owns the one journal_t (the write connection); nothing here is
 * thread-safe. Every statement is prepared once at open.
 *
 * Time: the wall clock (journal_set_clock; mg_clock_wall_ns by default)
 * stamps answered calls and the workers' join and leave (unix ns), the
 * bounds of their accounting windows.
 *
 * Transactions are composed by the caller: journal_begin(), a number of
 * writes, journal_commit() (or journal_rollback()). A shard's outputs, its
 * state change, its ledger rows and its job's counters go into ONE
 * transaction (see sched.c), so after a crash either all of a Result is
 * there or none of it.
 *
 * Durability: WAL with synchronous=NORMAL by default. A commit then reaches
 * the OS before journal_commit() returns (safe against kill -9 of the
 * daemon) and the disk at the next checkpoint; a power loss can roll back
 * the last few Results, which only means they are computed again (the
 * outputs are deterministic and the ledger rows went with them).
 * Accepting a job is not repeatable that way, so that transaction runs
 * with synchronous=FULL (journal_begin_durable). `journal_sync = full` in
 * the config makes every commit FULL.
 *
 * Line numbers are the 1-based physical lines of the input; a request's
 * primary key is (job id << 32) | line_no so one B-tree keeps a job's
 * requests in line order. */
#ifndef JOURNAL_H
#define JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/mg_jobstate.h"
#include "lib/mg_wire.h"

typedef struct journal journal_t;

#define JOURNAL_NAME_MAX 80
#define JOURNAL_MODEL_MAX 256
#define JOURNAL_PATH_MAX 4096
#define JOURNAL_LINE_MAX 0xffffffffLL

enum journal_sync {
	JOURNAL_SYNC_NORMAL = 0,
	JOURNAL_SYNC_FULL = 1,
};

/* Sums over a job's answered calls (the ledger rows), kept in the job's
 * row by every Result's transaction, so reading them is O(1). The journal
 * adds to them in the transaction that books the calls and, for the loaded
 * cost, in the one that closes their accounting window
 * (journal_job_add_loaded): cost_loaded_micros is the sum of the calls'
 * loaded costs as they stand, provisional (= marginal) for calls whose
 * window is open. journal_job_update does not write them. */
typedef struct journal_usage {
	int64_t calls;			/* ledger rows */
	int64_t prompt_tokens, completion_tokens;
	int64_t busy_ns, flops;
	int64_t cost_marginal_micros, cost_loaded_micros;
} journal_usage_t;

/* One job as stored. Strings are NUL-terminated arrays (no ownership). */
typedef struct journal_job {
	int64_t id;			/* rowid */
	char name[JOURNAL_NAME_MAX];	/* "batch_…", the id clients see */
	char endpoint[32];		/* "/v1/chat/completions" | "/v1/completions" */
	char model[JOURNAL_MODEL_MAX];	/* from the first line; "" until then */
	mg_job_state_t state;		/* stored by name; MG_JOB_N_STATES if the text is none */
	char input_path[JOURNAL_PATH_MAX];	/* "" for an inline job */
	int64_t ingest_offset;		/* bytes of input_path consumed */
	int64_t ingest_line;		/* physical lines consumed */
	int64_t n_total, n_done, n_failed, n_cancelled;
	int64_t next_line;		/* lines below are in shards already */
	int64_t max_line;		/* highest line_no of a request */
	int64_t created_at, in_progress_at, completed_at, failed_at, cancelling_at, cancelled_at;
					/* unix seconds, 0 = not yet */
	int priority;			/* > 0: dispatched before ordinary jobs */
	journal_usage_t usage;
} journal_job_t;

typedef struct journal_shard {
	int64_t id;			/* rowid = Assign.shard_id */
	int64_t job;
	int64_t first_line, last_line;	/* inclusive */
	int64_t n_requests;		/* queued requests of the range at dispatch */
	char state[12];			/* queued inflight done split failed cancelled */
	uint32_t attempt;		/* dispatches so far */
	uint32_t fails;			/* dispatches that ended without a Result */
	char worker[64];		/* worker id of the last dispatch */
	int64_t dispatched_at;		/* unix ns of the last dispatch */
} journal_shard_t;

/* One answered call, as the ledger books it and the meter prices it. */
typedef struct journal_call {
	const char *job;		/* batch name */
	const char *custom_id;
	int64_t line_no;
	const char *model;
	const char *worker;		/* worker id */
	const char *worker_name;
	const char *hardware_profile;
	uint64_t shard_id;
	uint32_t prompt_tokens, completion_tokens;
	uint64_t busy_ns, flops, queue_ns, first_token_ns;
	int64_t answered_at_ns;		/* unix ns */
} journal_call_t;

/* The meter's hook: price one call. Returns 0 or a negative errno, which
 * rolls the whole Result back. Without a hook both costs are 0. */
typedef int (*journal_cost_fn)(void *user, const journal_call_t *call,
			       int64_t *ret_marginal_micros, int64_t *ret_loaded_micros);

/* Per-request totals of one applied Result. */
typedef struct journal_counts {
	int64_t done, failed, cancelled;
	journal_usage_t usage;		/* of the ledger rows it booked */
} journal_counts_t;

/* What sched knows about the shard a Result answers. */
typedef struct journal_result_ctx {
	const journal_job_t *job;
	const journal_shard_t *shard;
	const char *worker;		/* worker id */
	const char *worker_name;
	const char *hardware_profile;
} journal_result_ctx_t;

/* The booking hook (daemon/booking.c): prices the n answered calls of one
 * Result together and writes their ledger rows itself, on db (this
 * journal's connection, inside the Result's transaction), adding them to
 * *sum. unbooked_busy_ns: engine time of the Result's outputs that get no
 * ledger row (failed, cancelled). wall_ns: the journal's clock now (the
 * calls' answered_at_ns). Called once per Result, also with n = 0. A
 * negative errno (err says why) rolls the Result back. When set, it
 * replaces journal_cost_fn and the journal's own ledger insert. */
struct sqlite3;
typedef int (*journal_book_fn)(void *user, struct sqlite3 *db, const journal_result_ctx_t *ctx,
			       const journal_call_t *calls, size_t n, uint64_t unbooked_busy_ns, int64_t wall_ns,
			       journal_usage_t *sum, char *err, size_t errlen);
void journal_set_book_fn(journal_t *j, journal_book_fn fn, void *user);

/* The meter's timer hook (daemon/booking.c): closes the accounting windows
 * that have ended by wall_ns, on db inside a transaction journal_tick
 * opened. Returns how many it closed, or a negative errno (rolled back);
 * *ret_next_ns: the wall time it wants to run again. */
typedef int (*journal_tick_fn)(void *user, struct sqlite3 *db, int64_t wall_ns, int64_t *ret_next_ns,
			       char *err, size_t errlen);
void journal_set_tick_fn(journal_t *j, journal_tick_fn fn, void *user);
/* Runs the tick hook in a transaction of its own (-EBUSY inside one).
 * Returns what it returns; *ret_next_ns = INT64_MAX without a hook. Core
 * thread: margind's loop calls it at startup and on a timer. */
int journal_tick(journal_t *j, int64_t *ret_next_ns, char *err, size_t errlen);

/* The wall clock for timestamps (unix ns); NULL restores
 * mg_clock_wall_ns. Tests make hours pass with it. user borrowed. */
void journal_set_clock(journal_t *j, int64_t (*wall)(void *user), void *user);
int64_t journal_wall_ns(const journal_t *j);

/* Opens (creating) STATE_DIR/margin.db. First takes an exclusive flock on
 * STATE_DIR/lock (creating STATE_DIR with mode 0700 if missing): -EBUSY
 * with "state directory DIR is in use by another margind (pid N)" in err
 * when another process holds it. *ret owned by the caller. */
int journal_open(const char *state_dir, int sync, journal_t **ret, char *err, size_t errlen);
/* NULL-safe: rolls back an open transaction, closes, releases the lock. */
void journal_destroy(journal_t **j);

/* Text of the last SQLite error (borrowed, until the next call). */
const char *journal_errmsg(const journal_t *j);

int journal_begin(journal_t *j);
/* Begin a transaction whose commit waits for the disk (synchronous=FULL
 * for this one transaction): for accepting a job. */
int journal_begin_durable(journal_t *j);
/* On failure the transaction is rolled back. */
int journal_commit(journal_t *j);
void journal_rollback(journal_t *j);
bool journal_in_tx(const journal_t *j);
/* A savepoint inside the open transaction (one at a time): one Result of a
 * group commit. rollback_savepoint undoes what followed it and ends it. */
int journal_savepoint(journal_t *j);
int journal_release(journal_t *j);
int journal_rollback_savepoint(journal_t *j);

void journal_set_cost_fn(journal_t *j, journal_cost_fn fn, void *user);

/* Jobs. create: -EEXIST when the name is taken; sets job->id. */
int journal_job_create(journal_t *j, journal_job_t *job, const char *metadata_json);
/* Writes every mutable field of job (by job->id). */
int journal_job_update(journal_t *j, const journal_job_t *job);
int journal_job_set_errors(journal_t *j, int64_t job, const char *errors_json);
/* -ENOENT when absent. */
int journal_job_find(journal_t *j, const char *name, journal_job_t *ret);
/* The usage sums of a job by name. -ENOENT when absent. */
int journal_job_usage(journal_t *j, const char *name, journal_usage_t *ret);
/* Adds delta to the job's loaded cost (its calls' accounting window
 * closed). Inside the caller's transaction. */
int journal_job_add_loaded(journal_t *j, const char *job, int64_t delta_micros);
/* metadata and errors JSON texts of a job (malloc'ed, caller frees; NULL if none). */
int journal_job_texts(journal_t *j, int64_t job, char **ret_metadata, char **ret_errors);
/* Calls fn for jobs in states validating, in_progress, cancelling (by id). */
int journal_jobs_active(journal_t *j, int (*fn)(void *user, const journal_job_t *job), void *user);
/* Jobs newest first, starting below before_id (0 = from the newest);
 * at most limit. Returns the number passed to fn. */
int journal_jobs_page(journal_t *j, int64_t before_id, int limit,
		      int (*fn)(void *user, const journal_job_t *job), void *user);

/* Retention. Finished jobs (completed, failed, cancelled) that ended
 * before before_s (Unix seconds) and still hold rows or an input path,
 * oldest first, at most limit: for each, fn(user, name, state) first
 * (removing the job's files; returns 0 to go on, 1 to leave this job for a
 * later sweep, < 0 to stop with that error), then in one transaction its
 * request and shard rows are deleted and its input path cleared. The job
 * row (name, state, counts, usage, timestamps) stays, and the ledger is
 * not touched. Not inside a transaction (-EBUSY). Returns the number of
 * jobs retired. Core thread. */
typedef int (*journal_retire_fn)(void *user, const char *name, const char *state);
int journal_jobs_retire(journal_t *j, int64_t before_s, int limit, journal_retire_fn fn, void *user);
/* Gives the pages that deletions freed back to the file system
 * (incremental vacuum, then a WAL checkpoint that cuts the file).
 * *ret_freed_bytes (may be NULL): by how much the file shrank. Not inside
 * a transaction (-EBUSY). */
int journal_vacuum(journal_t *j, int64_t *ret_freed_bytes);
/* True when journal_open switched an older journal to incremental vacuum
 * (a VACUUM): the file's bytes before and after, for the caller's log. */
bool journal_converted(const journal_t *j, int64_t *ret_from, int64_t *ret_to);
/* 1 when a job of that name exists, 0 when not, < 0 on error. */
int journal_job_exists(journal_t *j, const char *name);

/* Requests. insert: -EEXIST on a duplicate custom_id within the job. */
int journal_request_insert(journal_t *j, int64_t job, int64_t line_no, const char *custom_id,
			   const char *body, int64_t est_tokens);
/* Deletes every request of a job (a job that failed validation). */
int journal_requests_delete(journal_t *j, int64_t job);

/* fn gets each queued request of lines [first, last] in order: return 0 to
 * take it and go on, 1 to stop before it, < 0 to abort with that error.
 * At most limit are taken. Returns the number taken. */
typedef int (*journal_req_fn)(void *user, int64_t line_no, const char *custom_id,
			      const char *body, int64_t est_tokens);
int journal_requests_queued(journal_t *j, int64_t job, int64_t first, int64_t last, int limit,
			    journal_req_fn fn, void *user);
/* Answers one queued request without a worker (poison request, cancel):
 * state "failed" or "cancelled", with an error code and message. 0, or
 * -ENOENT when it is not queued. */
int journal_request_finish(journal_t *j, int64_t job, int64_t line_no, const char *state,
			   const char *code, const char *message);
/* attempts += 1 for the queued requests of a range (a dispatch that failed). */
int journal_requests_bump_attempts(journal_t *j, int64_t job, int64_t first, int64_t last);

/* Applies a Result's outputs: each output must name a queued request of
 * the shard's range with the same custom_id, exactly once, and there must
 * be shard->n_requests of them; otherwise -EBADMSG with the reason in err
 * (the caller rolls back). Writes outputs, request states, and one ledger
 * row per output without an error. Adds to *ret (done/failed/cancelled).
 * Must run inside a transaction. */
int journal_result_apply(journal_t *j, const journal_result_ctx_t *ctx,
			 const Margin__V1__Result *res, journal_counts_t *ret,
			 char *err, size_t errlen);

/* Embeddings: an answered /v1/embeddings request's output column holds its
 * vectors exactly, each as the standard base64 (with padding) of its
 * little-endian float32 values, joined by ',' in input order, so every
 * rendering of the output (float or base64) gives the same bytes.
 * journal_embeddings_format writes that text for n vectors (*ret
 * malloc'd, caller frees): 0, -EDOM for a value that is not finite (the
 * request is then stored as failed), -ENOMEM. Any thread. */
#define JOURNAL_EP_EMBEDDINGS "/v1/embeddings"
int journal_embeddings_format(const Margin__V1__Embedding *const *v, size_t n, char **ret);

/* Shards. insert sets s->id. */
int journal_shard_insert(journal_t *j, journal_shard_t *s);
/* Writes state, attempt, fails, worker, dispatched_at (by s->id). */
int journal_shard_update(journal_t *j, const journal_shard_t *s);
/* Writes a finished shard's step statistics. */
int journal_shard_stats(journal_t *j, int64_t shard, const Margin__V1__StepStats *st);
/* Calls fn for the job's shards in state queued or inflight, by id. */
int journal_shards_pending(journal_t *j, int64_t job,
			   int (*fn)(void *user, const journal_shard_t *s), void *user);
/* Line numbers of the queued requests of [first, last] (for splitting a
 * shard); *ret_lines malloc'ed, caller frees. Returns the count. */
int journal_queued_lines(journal_t *j, int64_t job, int64_t first, int64_t last,
			 int64_t **ret_lines);

/* Workers (history; the live registry is in memory). */
int journal_worker_join(journal_t *j, const char *name, uint64_t instance_id,
			const char *hardware_profile, const char *build, const char *models_json,
			uint32_t slots, uint32_t threads, const char *key, int64_t *ret_id);
int journal_worker_leave(journal_t *j, int64_t id, const char *reason);
/* Marks every worker still listed as present as gone (at a restart). */
int journal_workers_gone(journal_t *j, const char *reason);

/* When a worker was attached, for accounting windows. id is the worker id
 * the ledger and Welcome carry: "w" and its workers row id. */
typedef struct journal_worker_span {
	char id[24];
	char name[128];
	char hardware_profile[128];	/* as announced */
	int64_t joined_ns;		/* unix ns */
	int64_t left_ns;		/* unix ns; 0 = attached now */
} journal_worker_span_t;
/* The workers attached at some time after since_ns (still attached, or
 * left after it), in join order, into *ret (malloc'ed, caller frees).
 * Workers that joined before the journal kept nanoseconds (version 3) are
 * left out: their idle time was charged by the older rule. */
int journal_workers_attached(journal_t *j, int64_t since_ns, journal_worker_span_t **ret, size_t *ret_n);
/* One worker by id: 0, or -ENOENT (also for one from before version 3). */
int journal_worker_span(journal_t *j, const char *id, journal_worker_span_t *ret);

/* One page of a job's requests in line order after after_line: calls fn
 * with each row. Returns the count. */
typedef struct journal_row {
	int64_t line_no;
	const char *custom_id;
	const char *state;
	const char *output;		/* NULL unless answered */
	const char *finish_reason;
	int64_t prompt_tokens, completion_tokens, attempts;
	const char *error_code, *error_message;
	const char *encoding_format;	/* an answered embedding request: "float" or
					   "base64" (its body's); else NULL */
} journal_row_t;
int journal_results_page(journal_t *j, int64_t job, int64_t after_line, int limit,
			 int (*fn)(void *user, const journal_row_t *row), void *user);

/* Number of ledger rows of a job (tests, status). */
int64_t journal_ledger_count(journal_t *j, const char *job_name);

#endif
