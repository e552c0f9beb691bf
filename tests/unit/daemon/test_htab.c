/* htab: insert, replace, find, remove across growth. */
#include "htab.h"
#include "tests.h"

#include <stdint.h>
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

const cu_test_t htab_tests[] = {
	{ "many", test_many },
	{ "bytes", test_bytes },
	{ NULL, NULL },
};
