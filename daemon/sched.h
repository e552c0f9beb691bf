/* sched: jobs, shards and workers — every scheduling decision of margind.
 *
 * The core thread feeds it worker frames (sched_on_frame), control
 * requests (sched_submit_*, sched_cancel) and the time; it answers through
 * a send callback and the journal. It never reads a clock itself: every
 * entry point takes `now` (monotonic ns), so tests drive it with a fake
 * clock and a capturing send function.
 *
 * Policy:
 * - A shard is a run of consecutive queued requests of one job: at most
 *   shard_max_requests, and at most shard_max_tokens estimated tokens
 *   (prompt bytes / 4 + max_tokens, at least one request); a shard of
 *   embedding requests also holds at most SCHED_EMBED_SHARD_BYTES of
 *   vectors (inputs x dimensions x 4 bytes, as the worker that takes it
 *   embeds), so its Result stays far under the wire's frame cap.
 * - Shards are cut on demand, when a worker has credit: the next requests
 *   are read from the journal then, so memory is bounded by the work in
 *   flight, never by a job's size.
 * - Fair share: dispatch goes round-robin over the jobs that have work, one
 *   shard at a time, so a small job behind a huge one starts at once.
 *   Priority jobs (SCHED_SUBMIT_PRIORITY: the synchronous API) go first.
 *   A job goes only to workers that serve its model, against their credit
 *   (an embeddings job: that embed with it, ModelInfo.embed_dims > 0).
 * - A shard whose worker dies (liveness expired, Bye, restarted process,
 *   unreachable, malformed Result) is a failed attempt: requeued whole the
 *   first time; after SPLIT_AFTER (2) failures it is split into one shard
 *   per request, so one poison request cannot fail its neighbours. Such a
 *   suspect shard runs in isolation: only on a worker that holds nothing
 *   else, which then gets nothing else until it answers, so a crash blames
 *   exactly one request. A single request that failed max_attempts times
 *   is answered with an error ("worker_failed") and the job goes on.
 * - The first Result of the current attempt is committed (outputs, shard
 *   state, job counters and ledger rows in one transaction — or in one
 *   savepoint of a group commit, see sched_group_begin) and Ack'd after the
 *   commit; any other Result (duplicate, stale attempt, unknown shard) is
 *   Ack'd and ignored.
 * - Recovery (sched_new): shards that were in flight when the daemon died
 *   are queued again; jobs that were validating restart validation.
 *
 * Core thread only. */
#ifndef SCHED_H
#define SCHED_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "journal.h"
#include "lib/mg_wire.h"
#include "registry.h"

#define SCHED_SPLIT_AFTER 2
#define SCHED_EMBED_SHARD_BYTES (MG_WIRE_MAX_FRAME / 4)

typedef struct sched sched_t;

typedef struct sched_params {
	int64_t heartbeat_ns;		/* Heartbeat period both ways (1 s) */
	uint32_t liveness;		/* missed heartbeats before a worker is dead (3) */
	uint32_t shard_max_requests;	/* (64) */
	uint64_t shard_max_tokens;	/* estimated tokens per shard (65536) */
	uint32_t max_attempts;		/* failed dispatches before a request fails (3) */
	uint32_t default_max_tokens;	/* when a body has none (256) */
	uint32_t max_tokens_cap;	/* larger max_tokens are refused (1048576) */
	int64_t cancel_grace_ns;	/* how long a cancel waits for in-flight shards (30 s) */
	int64_t shard_timeout_ns;	/* a shard in flight longer is requeued (0 = never) */
	uint32_t ingest_chunk;		/* input lines validated per loop iteration (2048) */
	uint32_t inline_max;		/* requests in an inline submit (10000) */
	uint32_t max_credit;		/* cap on one worker's credit (1024) */
} sched_params_t;

void sched_params_default(sched_params_t *p);

/* Send one message to the worker connection ident. Returns 0 or a negative
 * errno: -EHOSTUNREACH (gone) makes sched drop the worker. */
typedef int (*sched_send_fn)(void *user, const uint8_t *ident, size_t ident_len,
			     const mg_msg_t *m);

/* Loads the active jobs from the journal (borrowed; must outlive the
 * sched) and queues their unfinished shards again. *ret owned by caller. */
int sched_new(journal_t *j, const sched_params_t *p, sched_send_fn send, void *user,
	      int64_t now, sched_t **ret, char *err, size_t errlen);
void sched_destroy(sched_t **s);

/* One frame from the worker endpoint. Garbage (does not decode, too big,
 * a daemon->worker message) is logged with the peer identity and dropped.
 * key: the CURVE key name the ZAP handler gave this connection, or NULL. */
void sched_on_frame(sched_t *s, const uint8_t *ident, size_t ident_len, const void *data,
		    size_t len, size_t max_frame, const char *key, int64_t now);
/* Group commit: the Results fed between begin and end share one
 * transaction (each in a savepoint, so a bad one still rolls back alone)
 * and their Acks go out after its commit. end returns < 0 when the commit
 * failed: nothing of the group is in the journal, no Ack went out, and the
 * in-memory state is ahead of the journal — the caller should stop the
 * daemon so a restart resumes from the journal. Without a group every
 * Result is its own transaction. */
void sched_group_begin(sched_t *s);
int sched_group_end(sched_t *s);
/* Something on the worker endpoint that is not one frame (a multipart
 * message): logged like a bad frame (rate-limited) and dropped. */
void sched_on_garbage(sched_t *s, const uint8_t *ident, size_t ident_len, const char *what,
		      int64_t now);
/* Heartbeats, liveness expiry, cancel deadlines, shard timeouts. Returns
 * the monotonic time of the next deadline. */
int64_t sched_tick(sched_t *s, int64_t now);
/* Assigns shards while some worker has credit and some job has work.
 * Returns the number of shards sent. */
int sched_dispatch(sched_t *s, int64_t now);
/* Validates one chunk of a job being ingested from a file. Returns 1 when
 * more input is pending, 0 when none. */
int sched_ingest(sched_t *s, int64_t now);

/* Stop dispatching (drain). */
void sched_set_draining(sched_t *s, bool on);

/* Submissions. name: requested job id or NULL for a generated one;
 * endpoint: NULL to take the lines' url; metadata: JSON text or NULL.
 * On success ret_name (JOURNAL_NAME_MAX) holds the job id.
 * inline: lines is a JSON array of request objects; the job is validated
 * and journaled at once (durably) and starts in_progress; a bad line is
 * -EINVAL with "line N: ..." in err and no job. -EEXIST: name taken.
 * file: path to a JSONL file the daemon reads; the job starts validating
 * and is checked in chunks by sched_ingest(). */
int sched_submit_inline(sched_t *s, const char *name, const char *endpoint,
			const char *metadata, json_t *lines, int64_t now, char *ret_name,
			char *err, size_t errlen);
/* flags for sched_submit_inline2 */
#define SCHED_SUBMIT_PRIORITY 1u	/* dispatched before any ordinary job (sync API calls) */
int sched_submit_inline2(sched_t *s, const char *name, const char *endpoint,
			 const char *metadata, json_t *lines, unsigned flags, int64_t now,
			 char *ret_name, char *err, size_t errlen);
int sched_submit_file(sched_t *s, const char *name, const char *endpoint,
		      const char *metadata, const char *path, int64_t now, char *ret_name,
		      char *err, size_t errlen);
/* -ENOENT: no such job; -EALREADY: already finished (not an error for
 * callers that just want it stopped). */
int sched_cancel(sched_t *s, const char *name, int64_t now);

/* Live (in-memory) figures of a job; zeros when it is not active. */
typedef struct sched_job_live {
	int64_t in_flight;		/* requests in shards at workers */
	int64_t shards_in_flight;
	int64_t shards_queued;		/* shards waiting for re-dispatch */
} sched_job_live_t;
void sched_job_live(const sched_t *s, const char *name, sched_job_live_t *ret);

typedef struct sched_stats {
	size_t workers, jobs_active;
	int64_t shards_in_flight, requests_in_flight;
	uint64_t requests_answered, shards_committed;	/* since start */
	uint64_t results_ignored;	/* duplicate or stale Results Ack'd and dropped, since start */
	bool draining;
} sched_stats_t;
void sched_get_stats(const sched_t *s, sched_stats_t *ret);

/* Called in the core thread right after a Result was applied (in a group
 * commit: before the group's commit; a failed group commit stops the
 * daemon). The pointers are valid during the call only. */
typedef struct sched_observer {
	void (*on_result)(void *user, const char *job, const char *model, const char *worker_name,
			  const Margin__V1__Result *res, int64_t now);
} sched_observer_t;
/* obs is copied; user borrowed. NULL obs removes it. */
void sched_set_observer(sched_t *s, const sched_observer_t *obs, void *user);

/* The live workers (borrowed; valid until the next sched call). */
const registry_t *sched_registry(const sched_t *s);
journal_t *sched_journal(const sched_t *s);
const sched_params_t *sched_params(const sched_t *s);

#endif
