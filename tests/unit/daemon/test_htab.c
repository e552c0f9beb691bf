/* htab: insert, replace, find, remove across growth. */
#include "htab.h"
#include "tests.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static int sum(void *user, const void *key, size_t len, void *val)
{
	*(uint64_t *)user += (uint64_t)(uintptr_t)val;
	return 0;
}

static void test_many(void)
{
	htab_t *h = htab_new();
	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	for (uint64_t i = 1; i <= 5000; i++)
		CU_ASSERT_EQUAL(htab_put_u64(h, i, (void *)(uintptr_t)(i * 3)), 0);
	CU_ASSERT_EQUAL(htab_count(h), 5000);
	for (uint64_t i = 1; i <= 5000; i++)
		CU_ASSERT_EQUAL((uintptr_t)htab_find_u64(h, i), i * 3);
	CU_ASSERT_PTR_NULL(htab_find_u64(h, 5001));
	CU_ASSERT_EQUAL(htab_put_u64(h, 7, (void *)(uintptr_t)1), 0);	/* replace */
	CU_ASSERT_EQUAL((uintptr_t)htab_find_u64(h, 7), 1);
	CU_ASSERT_EQUAL(htab_count(h), 5000);
	for (uint64_t i = 1; i <= 5000; i += 2)
		CU_ASSERT_PTR_NOT_NULL(htab_remove_u64(h, i));
	CU_ASSERT_PTR_NULL(htab_remove_u64(h, 1));
	CU_ASSERT_EQUAL(htab_count(h), 2500);
	uint64_t total = 0, want = 0;
	for (uint64_t i = 2; i <= 5000; i += 2)
		want += i * 3;
	htab_foreach(h, sum, &total);
	CU_ASSERT_EQUAL(total, want);
	htab_destroy(&h);
	CU_ASSERT_PTR_NULL(h);
	htab_destroy(&h);
}

static void test_bytes(void)
{
	htab_t *h = htab_new();
	CU_ASSERT_EQUAL(htab_put(h, "\0ab", 3, (void *)1), 0);
	CU_ASSERT_EQUAL(htab_put(h, "\0ac", 3, (void *)2), 0);
	CU_ASSERT_EQUAL((uintptr_t)htab_find(h, "\0ab", 3), 1);
	CU_ASSERT_EQUAL((uintptr_t)htab_find(h, "\0ac", 3), 2);
	CU_ASSERT_PTR_NULL(htab_find(h, "\0a", 2));
	htab_destroy(&h);
}

/* The table's hash before it was keyed: FNV-1a 64 and a final mix. Anyone
 * could compute it, so anyone could choose keys that share a bucket. */
static uint64_t fnv_mix(const void *key, size_t len)
{
	const unsigned char *p = key;
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 0x100000001b3ULL;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return h;
}

/* A batch file's custom_ids chosen to share one bucket of an unkeyed
 * table of up to 4096 buckets (their FNV hashes agree in the low 12 bits,
 * found by trying ~4 million ids): every lookup walked all of them. Now
 * they spread as any ids do. */
static void test_flood(void)
{
	enum { N = 1000 };
	htab_t *h = htab_new();
	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	char id[32];
	int n = 0;
	for (uint32_t i = 0; n < N; i++) {
		int len = snprintf(id, sizeof(id), "req-%u", i);
		if ((fnv_mix(id, (size_t)len) & 4095) != 0)
			continue;
		CU_ASSERT_EQUAL(htab_put(h, id, (size_t)len, (void *)(uintptr_t)(n + 1)), 0);
		n++;
	}
	CU_ASSERT_EQUAL(htab_count(h), N);
	/* 1000 keys in 1024 buckets: random keys give chains of 6 or so. */
	size_t longest = htab_longest_chain(h);
	CU_ASSERT(longest <= 12);
	if (longest > 12)
		fprintf(stderr, "longest chain %zu of %d keys\n", longest, N);
	htab_destroy(&h);
}

const cu_test_t htab_tests[] = {
	{ "many", test_many },
	{ "bytes", test_bytes },
	{ "ids built to collide spread out", test_flood },
	{ NULL, NULL },
};
