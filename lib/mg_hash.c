/* mg_hash: see mg_hash.h. */
#include "mg_hash.h"

#include <pthread.h>
#include <sodium.h>
#include <string.h>

_Static_assert(crypto_shorthash_KEYBYTES == MG_HASH_KEY_BYTES, "SipHash-2-4 takes a 128-bit key");
_Static_assert(crypto_shorthash_BYTES == sizeof(uint64_t), "SipHash-2-4 gives 64 bits");

static unsigned char process_key[MG_HASH_KEY_BYTES];
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

static void draw_key(void)
{
	/* sodium_init() only fails when no random source can be opened; then
	 * the keygen's randombytes_buf() aborts, which is what a process that
	 * cannot get randomness should do rather than use a guessable key. */
	int r = sodium_init();
	(void)r;
	crypto_shorthash_keygen(process_key);
}

uint64_t mg_hash_keyed(const unsigned char key[MG_HASH_KEY_BYTES], const void *p, size_t len)
{
	unsigned char out[crypto_shorthash_BYTES];
	crypto_shorthash(out, p, len, key);
	uint64_t h;
	memcpy(&h, out, sizeof(h));
	return h;
}

uint64_t mg_hash(const void *p, size_t len)
{
	pthread_once(&key_once, draw_key);
	return mg_hash_keyed(process_key, p, len);
}
