/* Shared helpers of the meter test suites. */
#ifndef TEST_METER_H
#define TEST_METER_H

#include "cu_main.h"

/* Paths of the test data and of the shipped profiles and price tables. */
#define DATA(f) (METER_TEST_DATA "/" f)
#define DEPLOY(f) (METER_DEPLOY_DIR "/" f)

/* A small deterministic generator for property tests (no wall clock). */
static inline unsigned long long test_rand(unsigned long long *s)
{
	*s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
	return *s >> 11;
}

#endif
