/* mg_hash: keyed, so strings built to collide under FNV do not collide; the
 * stable hashes give their published values. */
#include "tests.h"
#include "mg_hash.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t fnv1a32(const char *s)
{
	uint32_t h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

struct seen { uint32_t h; uint32_t i; };

static int by_hash(const void *a, const void *b)
{
	const struct seen *x = a, *y = b;
	return x->h < y->h ? -1 : x->h > y->h ? 1 : (x->i > y->i) - (x->i < y->i);
}

#define N_IDS 500000u

/* Pairs of custom_ids with the same FNV-1a 32 value, found by a birthday
 * search (FNV-1a 32 of these ids gives 24 among 500,000; random 32-bit values
 * would give about 29). */
static size_t fnv_collisions(uint32_t (*ret)[2], size_t max)
{
	struct seen *v = malloc(N_IDS * sizeof(*v));
	if (v == NULL)
		return 0;
	char id[32];
	for (uint32_t i = 0; i < N_IDS; i++) {
		snprintf(id, sizeof(id), "req-%08x", i);
		v[i] = (struct seen){ fnv1a32(id), i };
	}
	qsort(v, N_IDS, sizeof(*v), by_hash);
	size_t n = 0;
	for (uint32_t i = 1; i < N_IDS && n < max; i++)
		if (v[i].h == v[i - 1].h) {
			ret[n][0] = v[i - 1].i;
			ret[n][1] = v[i].i;
			n++;
		}
	free(v);
	return n;
}

static void test_fnv_collisions(void)
{
	uint32_t pairs[16][2];
	size_t n = fnv_collisions(pairs, 16);
	CU_ASSERT_FATAL(n >= 4);	/* the search itself works */
	for (size_t k = 0; k < n; k++) {
		char a[32], b[32];
		snprintf(a, sizeof(a), "req-%08x", pairs[k][0]);
		snprintf(b, sizeof(b), "req-%08x", pairs[k][1]);
		CU_ASSERT_EQUAL(fnv1a32(a), fnv1a32(b));
		CU_ASSERT_NOT_EQUAL(mg_hash(a, strlen(a)), mg_hash(b, strlen(b)));
	}
	/* Nor do their low 16 bits (a table's bucket index) agree, but by
	 * chance: one pair in 65536. */
	size_t low_equal = 0;
	for (size_t k = 0; k < n; k++) {
		char a[32], b[32];
		snprintf(a, sizeof(a), "req-%08x", pairs[k][0]);
		snprintf(b, sizeof(b), "req-%08x", pairs[k][1]);
		low_equal += (mg_hash(a, strlen(a)) & 0xffff) == (mg_hash(b, strlen(b)) & 0xffff);
	}
	CU_ASSERT(low_equal <= 1);
}

static void test_keys(void)
{
	unsigned char k1[MG_HASH_KEY_BYTES] = { 1 }, k2[MG_HASH_KEY_BYTES] = { 2 };
	const char *s = "custom-id-17";
	/* The same key gives the same value; another key another value. */
	CU_ASSERT_EQUAL(mg_hash_keyed(k1, s, strlen(s)), mg_hash_keyed(k1, s, strlen(s)));
	CU_ASSERT_NOT_EQUAL(mg_hash_keyed(k1, s, strlen(s)), mg_hash_keyed(k2, s, strlen(s)));
	/* SipHash-2-4's reference vector: key 00..0f, message 00..0e. */
	unsigned char key[MG_HASH_KEY_BYTES], msg[15];
	for (int i = 0; i < 16; i++)
		key[i] = (unsigned char)i;
	for (int i = 0; i < 15; i++)
		msg[i] = (unsigned char)i;
	CU_ASSERT_EQUAL(mg_hash_keyed(key, msg, sizeof(msg)), 0xa129ca6149be45e5ULL);
	/* The process key is stable within the process, and it is not the
	 * all-zero key (it was drawn). */
	unsigned char zero[MG_HASH_KEY_BYTES] = { 0 };
	CU_ASSERT_EQUAL(mg_hash(s, strlen(s)), mg_hash(s, strlen(s)));
	CU_ASSERT_NOT_EQUAL(mg_hash(s, strlen(s)), mg_hash_keyed(zero, s, strlen(s)));
	CU_ASSERT_NOT_EQUAL(mg_hash("", 0), mg_hash("a", 1));
}

/* The stable hashes against their published vectors: FNV-1a 64 from the FNV
 * reference (Noll's test suite), splitmix64 from Vigna's splitmix64.c with
 * seed 0. These values derive seeds and ids users see: they never change. */
static void test_stable(void)
{
	CU_ASSERT_EQUAL(mg_fnv1a64(MG_FNV1A64_OFFSET, "", 0), 0xcbf29ce484222325ULL);
	CU_ASSERT_EQUAL(mg_fnv1a64(MG_FNV1A64_OFFSET, "a", 1), 0xaf63dc4c8601ec8cULL);
	CU_ASSERT_EQUAL(mg_fnv1a64(MG_FNV1A64_OFFSET, "foobar", 6), 0x85944171f73967e8ULL);
	/* Pieces chain as their concatenation. */
	CU_ASSERT_EQUAL(mg_fnv1a64(mg_fnv1a64(MG_FNV1A64_OFFSET, "foo", 3), "bar", 3),
			0x85944171f73967e8ULL);
	uint64_t x = 0;
	CU_ASSERT_EQUAL(mg_splitmix64(&x), 0xe220a8397b1dcdafULL);
	CU_ASSERT_EQUAL(mg_splitmix64(&x), 0x6e789e6aa1b965f4ULL);
	CU_ASSERT_EQUAL(mg_splitmix64(&x), 0x06c45d188009454fULL);
	CU_ASSERT_EQUAL(x, 3 * MG_SPLITMIX64_GAMMA);
	CU_ASSERT_EQUAL(mg_mix64(0), 0);
	CU_ASSERT_EQUAL(mg_mix64(1), 0x5692161d100b05e5ULL);
}

const cu_test_t hash_tests[] = {
	{ "stable: FNV-1a 64 and splitmix64 reference vectors", test_stable },
	{ "keyed: two keys, two values; the reference vector", test_keys },
	{ "FNV-colliding custom_ids do not collide", test_fnv_collisions },
	{ NULL, NULL },
};
