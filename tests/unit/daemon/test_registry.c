/* registry: add, find by routing id and instance, rebind, remove, models. */
#include "registry.h"
#include "tests.h"

#include <string.h>

static void test_lifecycle(void)
{
	registry_t *r = registry_new();
	CU_ASSERT_PTR_NOT_NULL_FATAL(r);
	reg_worker_t *a = registry_add(r, (const uint8_t *)"a", 1);
	reg_worker_t *b = registry_add(r, (const uint8_t *)"\0\x01\x02", 3);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	CU_ASSERT_PTR_NOT_NULL_FATAL(b);
	a->instance_id = 11;
	CU_ASSERT_PTR_EQUAL(registry_find(r, (const uint8_t *)"a", 1), a);
	CU_ASSERT_PTR_EQUAL(registry_find_instance(r, 11), a);
	CU_ASSERT_PTR_NULL(registry_find_instance(r, 0));
	CU_ASSERT_EQUAL(registry_rebind(r, a, (const uint8_t *)"a2", 2), 0);
	CU_ASSERT_PTR_NULL(registry_find(r, (const uint8_t *)"a", 1));
	CU_ASSERT_PTR_EQUAL(registry_find(r, (const uint8_t *)"a2", 2), a);
	CU_ASSERT_EQUAL(registry_count(r), 2);
	CU_ASSERT_PTR_EQUAL(registry_first(r), a);
	CU_ASSERT_PTR_NULL(registry_add(r, (const uint8_t *)"x", 0));

	Margin__V1__ModelInfo m1 = MARGIN__V1__MODEL_INFO__INIT, m2 = MARGIN__V1__MODEL_INFO__INIT;
	m1.name = "llama-110m";
	m1.n_ctx = 1024;
	m2.name = "qwen";
	Margin__V1__ModelInfo *ms[2] = { &m1, &m2 };
	CU_ASSERT_EQUAL(registry_set_models(b, ms, 2), 0);
	CU_ASSERT_TRUE(registry_serves(b, "qwen"));
	CU_ASSERT_FALSE(registry_serves(b, "qwen2"));
	CU_ASSERT_EQUAL(registry_model(b, "llama-110m")->n_ctx, 1024);

	char buf[64];
	CU_ASSERT_STRING_EQUAL(registry_ident_str(b->ident, b->ident_len, buf, sizeof(buf)), "0x000102");
	CU_ASSERT_STRING_EQUAL(registry_ident_str((const uint8_t *)"w-1", 3, buf, sizeof(buf)), "w-1");
	registry_remove(r, &a);
	CU_ASSERT_PTR_NULL(a);
	CU_ASSERT_EQUAL(registry_count(r), 1);
	CU_ASSERT_PTR_EQUAL(registry_first(r), b);
	registry_destroy(&r);
	CU_ASSERT_PTR_NULL(r);
}

const cu_test_t registry_tests[] = {
	{ "lifecycle", test_lifecycle },
	{ NULL, NULL },
};
