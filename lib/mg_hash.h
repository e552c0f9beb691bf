/* mg_hash: the project's hashes, one copy each.
 *
 * mg_hash: the hash of every table keyed by bytes that come from outside
 * (custom_ids, routing ids, upload names, a model file's vocabulary).
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

/* --- stable hashes ---------------------------------------------------------
 * FNV-1a 64 and the splitmix64 finalizer: fixed functions, the same in every
 * process and version. They derive values that are stored or shown (request
 * seeds, output ids, synthetic weights, --fake outputs), so their results are
 * part of the contract; never key a table on them with outside bytes (use
 * mg_hash). Inline because the synthetic weights and the sampler call them
 * once per element. */

#define MG_FNV1A64_OFFSET 0xcbf29ce484222325ULL
#define MG_FNV1A64_PRIME 0x100000001b3ULL
/* splitmix64's increment, 2^64 / golden ratio: successive counters
 * x + k * MG_SPLITMIX64_GAMMA, mixed, make a stream of random-looking words. */
#define MG_SPLITMIX64_GAMMA 0x9e3779b97f4a7c15ULL

/* FNV-1a 64 of len bytes at p, continuing from h (MG_FNV1A64_OFFSET to start),
 * so that several pieces hash as their concatenation. */
static inline uint64_t mg_fnv1a64(uint64_t h, const void *p, size_t len)
{
	const unsigned char *s = p;
	for (size_t i = 0; i < len; i++)
		h = (h ^ s[i]) * MG_FNV1A64_PRIME;
	return h;
}

/* splitmix64's finalizer (Stafford's variant 13): a bijection of 64-bit words
 * in which every output bit depends on every input bit. */
static inline uint64_t mg_mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* splitmix64: advances the counter *x by MG_SPLITMIX64_GAMMA and returns the
 * mixed value. */
static inline uint64_t mg_splitmix64(uint64_t *x)
{
	*x += MG_SPLITMIX64_GAMMA;
	return mg_mix64(*x);
}

#endif
