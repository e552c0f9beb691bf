/* A helper of the engine's test suites (test_engine.c, test_embed.c). */
#ifndef TEST_ENGINE_RUN_H
#define TEST_ENGINE_RUN_H

#include "cu_main.h"
#include "engine.h"

/* Steps until idle; outputs by request id into outs[] (ids 0..n-1, each
 * once). */
static inline void run_all(engine_t *e, engine_out_t **outs, size_t n)
{
	for (int guard = 0; engine_pending(e) > 0 && guard < 100000; guard++) {
		CU_ASSERT_FATAL(engine_step(e) >= 0);
		for (engine_out_t *o; (o = engine_take(e)) != NULL;) {
			CU_ASSERT_FATAL(o->id < n);
			CU_ASSERT_PTR_NULL(outs[o->id]);
			outs[o->id] = o;
		}
	}
	for (engine_out_t *o; (o = engine_take(e)) != NULL;) {
		CU_ASSERT_FATAL(o->id < n);
		CU_ASSERT_PTR_NULL(outs[o->id]);
		outs[o->id] = o;
	}
	CU_ASSERT_EQUAL(engine_pending(e), 0);
}

#endif
