/* mg_hash: the hash of every table keyed by bytes that come from outside
 * (custom_ids, routing ids, upload names).
 *
 * SipHash-2-4 (libsodium's crypto_shorthash) under a 128-bit key drawn from
 * the system's random source once per process. An unkeyed hash (FNV) lets
 * anyone who can choose the keys choose their buckets: a batch file of
 * colliding custom_ids turns every lookup into a walk of one long chain.
 * With a secret key the bucket of a string cannot be predicted, so the
 * chains stay as short as for random keys.
 *
 * The values differ from one process to the next: never store them or send
 * them anywhere (a stable hash, such as a request's default seed, is not
 * this). Any thread may call these. */
#ifndef MG_HASH_H
#define MG_HASH_H

#include <stddef.h>
#include <stdint.h>

#define MG_HASH_KEY_BYTES 16

/* The process key's hash of len bytes at p. The first call draws the key. */
uint64_t mg_hash(const void *p, size_t len);

/* The hash under an explicit key (tests, and anyone who must reproduce a
 * value, e.g. two processes sharing a key). */
uint64_t mg_hash_keyed(const unsigned char key[MG_HASH_KEY_BYTES], const void *p, size_t len);

#endif
