/* storage: whether the state directory's filesystem has room for new work
 * ([journal] min_free; docs/operations.md "Disk full").
 *
 * The core thread calls storage_watch every loop turn; it looks at the
 * filesystem (statvfs) at most every 200 ms, or at once with force (before
 * the commit of Results). Below min_free bytes free, margind is "storage
 * full": the HTTP API refuses new work (uploads, batch creation, synchronous
 * completions) with 507 insufficient_storage, the scheduler validates and
 * dispatches nothing new, and the Results of the shards already at workers
 * are still committed into the space that is left. When free space is back
 * above min_free, everything resumes. One log line at each change.
 *
 * Reserves: while there is room, STATE_DIR/reserve holds min_free / 4
 * bytes and STATE_DIR/reserve.start min_free / 8 (fallocate), counted as
 * free. Full, the first is deleted at once, so a filesystem another writer
 * filled to the last byte between two looks still has that much for the
 * journal; the second is kept and only storage_start deletes it, before
 * the journal opens, so margind restarted on a disk filled to the last
 * byte (the writer took the first reserve too) starts, and refuses new
 * work until space returns. storage_full may be read from any
 * thread; the rest is the core thread's. */
#ifndef STORAGE_H
#define STORAGE_H

#include <stdbool.h>
#include <stdint.h>

/* At start, before the journal opens: deletes the reserves. */
void storage_start(const char *state_dir);
/* min_free 0 turns the watch off (never full, no reserve). Returns whether
 * the filesystem is full now. */
bool storage_watch(const char *state_dir, uint64_t min_free, int64_t now, bool force);
bool storage_full(void);

#endif
