/* apikeys: see apikeys.h. */
#include "apikeys.h"

#include <ctype.h>
#include <errno.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DIGEST crypto_hash_sha256_BYTES

struct apikeys {
	uint8_t (*digest)[DIGEST];	/* owned: n entries */
	size_t n, cap;
};

apikeys_t *apikeys_new(void)
{
	/* sodium_init() is idempotent and thread-safe after the first call;
	 * the hash and compare functions work without it, but it picks the
	 * best implementation. */
	if (sodium_init() < 0)
		return NULL;
	return calloc(1, sizeof(apikeys_t));
}

void apikeys_destroy(apikeys_t **pk)
{
	if (pk == NULL || *pk == NULL)
		return;
	apikeys_t *k = *pk;
	if (k->digest != NULL)
		sodium_memzero(k->digest, k->cap * DIGEST);
	free(k->digest);
	free(k);
	*pk = NULL;
}

static int push(apikeys_t *k, const uint8_t *d)
{
	if (k->n == k->cap) {
		size_t cap = k->cap ? k->cap * 2 : 8;
		uint8_t (*nd)[DIGEST] = calloc(cap, DIGEST);
		if (nd == NULL)
			return -ENOMEM;
		if (k->n > 0) {
			memcpy(nd, k->digest, k->n * DIGEST);
			sodium_memzero(k->digest, k->cap * DIGEST);
		}
		free(k->digest);
		k->digest = nd;
		k->cap = cap;
	}
	memcpy(k->digest[k->n++], d, DIGEST);
	return 0;
}

int apikeys_add(apikeys_t *k, const char *key, size_t len)
{
	if (len == 0 || len > APIKEYS_MAX_KEY)
		return -EINVAL;
	uint8_t d[DIGEST];
	crypto_hash_sha256(d, (const unsigned char *)key, len);
	int r = push(k, d);
	sodium_memzero(d, sizeof(d));
	return r;
}

int apikeys_add_digest_hex(apikeys_t *k, const char *hex)
{
	uint8_t d[DIGEST];
	size_t bin_len = 0;
	const char *end = NULL;
	if (strlen(hex) != 2 * DIGEST ||
	    sodium_hex2bin(d, sizeof(d), hex, strlen(hex), NULL, &bin_len, &end) != 0 ||
	    bin_len != DIGEST)
		return -EINVAL;
	return push(k, d);
}

int apikeys_load(const char *path, apikeys_t **ret, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	if (f == NULL) {
		int e = errno;
		snprintf(err, errlen, "API key file %s: %s", path, strerror(e));
		return -e;
	}
	apikeys_t *k = apikeys_new();
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	long line_no = 0;
	int r = 0;
	if (k == NULL) {
		r = -ENOMEM;
		snprintf(err, errlen, "API key file %s: out of memory", path);
		goto fail;
	}
	while ((len = getline(&line, &cap, f)) >= 0) {
		line_no++;
		char *s = line, *e = line + len;
		while (s < e && isspace((unsigned char)*s))
			s++;
		while (e > s && isspace((unsigned char)e[-1]))
			e--;
		if (s == e || *s == '#')
			continue;
		*e = '\0';
		if (strncmp(s, "sha256:", 7) == 0) {
			r = apikeys_add_digest_hex(k, s + 7);
			if (r < 0) {
				snprintf(err, errlen, "API key file %s:%ld: expected sha256: and 64 hex digits",
					 path, line_no);
				goto fail;
			}
			continue;
		}
		for (const char *p = s; p < e; p++)
			if (isspace((unsigned char)*p) || iscntrl((unsigned char)*p)) {
				snprintf(err, errlen, "API key file %s:%ld: a key must not contain blanks or control characters",
					 path, line_no);
				r = -EINVAL;
				goto fail;
			}
		r = apikeys_add(k, s, (size_t)(e - s));
		if (r < 0) {
			snprintf(err, errlen, "API key file %s:%ld: %s", path, line_no,
				 r == -EINVAL ? "key longer than 4096 bytes" : "out of memory");
			goto fail;
		}
	}
	if (ferror(f)) {
		r = -EIO;
		snprintf(err, errlen, "API key file %s: read error", path);
		goto fail;
	}
	if (k->n == 0) {
		r = -EINVAL;
		snprintf(err, errlen, "API key file %s: no key in it (one key per line; '#' starts a comment)",
			 path);
		goto fail;
	}
	if (line != NULL)
		sodium_memzero(line, cap);
	free(line);
	fclose(f);
	*ret = k;
	return 0;
fail:
	if (line != NULL)
		sodium_memzero(line, cap);
	free(line);
	fclose(f);
	apikeys_destroy(&k);
	return r;
}

size_t apikeys_count(const apikeys_t *k)
{
	return k ? k->n : 0;
}

bool apikeys_check(const apikeys_t *k, const char *key, size_t len)
{
	if (k == NULL || key == NULL || len == 0 || len > APIKEYS_MAX_KEY)
		return false;
	uint8_t d[DIGEST];
	crypto_hash_sha256(d, (const unsigned char *)key, len);
	/* Visit every digest, whatever matched, so the time does not depend
	 * on which key (if any) it is. */
	int found = 0;
	for (size_t i = 0; i < k->n; i++)
		found |= sodium_memcmp(d, k->digest[i], DIGEST) == 0;
	sodium_memzero(d, sizeof(d));
	return found != 0;
}

bool apikeys_check_header(const apikeys_t *k, const char *authorization)
{
	if (authorization == NULL || strncasecmp(authorization, "Bearer", 6) != 0 ||
	    (authorization[6] != ' ' && authorization[6] != '\t'))
		return false;
	const char *s = authorization + 6;
	while (*s == ' ' || *s == '\t')
		s++;
	size_t len = strlen(s);
	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	return apikeys_check(k, s, len);
}
