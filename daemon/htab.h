/* htab: a chained hash table from byte-string keys to borrowed values.
 *
 * The core loop keeps its lookups here: workers by ZeroMQ routing id,
 * shards in flight by id (key = the 8 bytes of the uint64); the HTTP side
 * checks the custom_ids of an upload with one. Keys may come from outside,
 * so they are hashed with mg_hash (keyed per process): no input can pick
 * its buckets. The table copies keys; values are borrowed (the caller owns
 * them). One thread per table. */
#ifndef HTAB_H
#define HTAB_H

#include <stddef.h>
#include <stdint.h>

typedef struct htab htab_t;

/* NULL on out of memory. */
htab_t *htab_new(void);
/* NULL-safe; frees the table and its key copies, not the values. */
void htab_destroy(htab_t **h);

/* Insert or replace. 0 or -ENOMEM. */
int htab_put(htab_t *h, const void *key, size_t len, void *val);
/* Borrowed value or NULL. */
void *htab_find(const htab_t *h, const void *key, size_t len);
/* Removes the entry; returns its value or NULL when absent. */
void *htab_remove(htab_t *h, const void *key, size_t len);
size_t htab_count(const htab_t *h);
/* The most entries in one bucket (tests: how even the spread is). */
size_t htab_longest_chain(const htab_t *h);

/* Calls fn for every entry (order unspecified); fn must not modify the
 * table. Stops when fn returns non-zero and returns that value. */
int htab_foreach(const htab_t *h, int (*fn)(void *user, const void *key, size_t len, void *val),
		 void *user);

static inline int htab_put_u64(htab_t *h, uint64_t k, void *v) { return htab_put(h, &k, sizeof(k), v); }
static inline void *htab_find_u64(const htab_t *h, uint64_t k) { return htab_find(h, &k, sizeof(k)); }
static inline void *htab_remove_u64(htab_t *h, uint64_t k) { return htab_remove(h, &k, sizeof(k)); }

#endif
