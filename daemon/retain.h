/* retain: what margind keeps of finished batches on disk, and for how
 * long ([journal] retention; docs/operations.md "Disk").
 *
 * STATE_DIR holds, per batch: batches/<id>.json (the sidecar of the
 * OpenAI fields), batches/<id>.input.jsonl and .rejects.jsonl (private
 * copies while it runs), and its output and error files in files/
 * (purpose "batch_output", named <id>_output.jsonl / <id>_error.jsonl);
 * in the journal, its job row, its request rows (bodies and answers) and
 * its shard rows. Files users uploaded (purpose "batch") are theirs: the
 * Files API deletes them, nothing here does.
 *
 * retain_sweep retires the batches that finished more than the retention
 * ago: their private copies, output and error files, request and shard
 * rows go; the job row and the sidecar (a few hundred bytes: GET
 * /v1/batches/ID still answers, naming files that are gone) and the
 * ledger stay. retain_orphans, at start before the HTTP API serves,
 * removes what a crash left in batches/ and files/ that no job names.
 * Both then give the journal's freed pages back (journal_vacuum) and log
 * what they removed. Core thread. */
#ifndef RETAIN_H
#define RETAIN_H

#include <stdint.h>

#include "journal.h"

typedef struct retain_stats {
	int64_t jobs;			/* jobs retired */
	int64_t files;			/* files removed */
	int64_t file_bytes;		/* their size */
	int64_t journal_bytes;		/* by how much the journal file shrank */
} retain_stats_t;

/* Retires the finished batches that ended before now_s - retention_s (at
 * most 1000 a call; a batch whose output files are not written yet waits
 * for the next sweep). retention_s 0: keeps everything (returns 0). */
int retain_sweep(journal_t *j, const char *state_dir, int64_t retention_s, int64_t now_s,
		 retain_stats_t *ret);

/* Removes files in STATE_DIR/batches/ and batch output files in
 * STATE_DIR/files/ whose batch the journal does not know. Only while
 * nothing else writes there (before the HTTP API starts). */
int retain_orphans(journal_t *j, const char *state_dir, retain_stats_t *ret);

#endif
