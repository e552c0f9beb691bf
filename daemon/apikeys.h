/* apikeys: the HTTP API's bearer keys, kept as SHA-256 digests.
 *
 * The key file (`--api-keys FILE`, or `[http] api_keys` in the config) has
 * one key per line. Blank lines and lines starting with '#' are ignored;
 * blanks around a key are trimmed. A line `sha256:HEX` (64 hex digits) is a
 * key given by its digest, so an operator can keep plaintext keys out of the
 * daemon's config directory (`printf %s KEY | sha256sum`).
 *
 * Only digests stay in memory; a presented key is hashed and compared with
 * every stored digest in constant time (sodium_memcmp, no early exit), so
 * neither the key nor its position in the file leaks through timing.
 *
 * Immutable after apikeys_load(): any thread may call apikeys_check(). */
#ifndef APIKEYS_H
#define APIKEYS_H

#include <stdbool.h>
#include <stddef.h>

#define APIKEYS_MAX_KEY 4096	/* longer lines are refused */

typedef struct apikeys apikeys_t;

/* An empty set (no key passes). NULL on out of memory. */
apikeys_t *apikeys_new(void);
/* NULL-safe; wipes the digests, frees, sets *k = NULL. */
void apikeys_destroy(apikeys_t **k);

/* Adds one key (len bytes; not trimmed). -EINVAL for an empty or too long
 * key, -ENOMEM. */
int apikeys_add(apikeys_t *k, const char *key, size_t len);
/* Adds a key given by its SHA-256 digest in hex (64 digits). -EINVAL. */
int apikeys_add_digest_hex(apikeys_t *k, const char *hex);

/* Reads a key file into a new set (*ret owned by the caller). Errors:
 * -ENOENT/-EACCES (cannot open), -EINVAL for a bad line or a file with no
 * key at all; err says which file and line. */
int apikeys_load(const char *path, apikeys_t **ret, char *err, size_t errlen);

size_t apikeys_count(const apikeys_t *k);

/* True when key (len bytes) is one of the set. */
bool apikeys_check(const apikeys_t *k, const char *key, size_t len);
/* True when an Authorization header value is "Bearer KEY" (scheme
 * case-insensitive, blanks after it skipped) with a key of the set.
 * NULL header: false. */
bool apikeys_check_header(const apikeys_t *k, const char *authorization);

#endif
