/* storage: whether the state directory's filesystem has room for new work
 * ([journal] min_free; docs/operations.md "Disk full").
 *
 * The core thread calls storage_watch every loop turn; it looks at the
 * filesystem (statvfs) at most every 200 ms. Below min_free bytes free,
 * margind is "storage full": the HTTP API refuses new work (uploads,
 * batch creation, synchronous completions) with 507 insufficient_storage,
 * the scheduler validates and dispatches nothing new, and the Results of
 * the shards already at workers are still committed into the space that
 * is left. When free space is back above min_free, everything resumes.
 * One log line at each change. storage_full may be read from any thread. */
#ifndef STORAGE_H
#define STORAGE_H

#include <stdbool.h>
#include <stdint.h>

/* min_free 0 turns the watch off (never full). Returns whether the
 * filesystem is full now. */
bool storage_watch(const char *state_dir, uint64_t min_free, int64_t now);
bool storage_full(void);

#endif
