/* mg_f16: half <-> single, exact both ways on every half, round to nearest
 * even on every midpoint, overflow to inf, NaN kept, and the same bits as
 * the compiler's _Float16 conversion. */
#include "tests.h"
#include "mg_f16.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static void test_f16(void)
{
	/* exact round trip of every non-NaN half */
	for (uint32_t h = 0; h < 0x10000; h++) {
		float f = mg_f16_to_f32((uint16_t)h);
		if (isnan(f)) {
			CU_ASSERT((h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0);
			CU_ASSERT(isnan(mg_f16_to_f32(mg_f32_to_f16(f))));
			continue;
		}
		if (mg_f32_to_f16(f) != h) {
			CU_FAIL("f16 round trip");
			fprintf(stderr, "h=0x%04x f=%g back=0x%04x\n", h, f, mg_f32_to_f16(f));
			break;
		}
	}
	CU_ASSERT_EQUAL(mg_f16_to_f32(0x0001), 0x1p-24f);	/* smallest subnormal */
	CU_ASSERT_EQUAL(mg_f16_to_f32(0x03ff), 1023 * 0x1p-24f);
	CU_ASSERT_EQUAL(mg_f16_to_f32(0x0400), 0x1p-14f);
	CU_ASSERT_EQUAL(mg_f16_to_f32(0x3c00), 1.0f);
	const unsigned char bytes[3] = { 0xff, 0x00, 0x3c };	/* 1.0 at an odd address */
	CU_ASSERT_EQUAL(mg_f16_load(bytes + 1), 1.0f);
	CU_ASSERT_EQUAL(mg_f16_to_f32(0xc000), -2.0f);
	CU_ASSERT_EQUAL(mg_f16_to_f32(0x7bff), 65504.0f);
	CU_ASSERT(isinf(mg_f16_to_f32(0x7c00)) && mg_f16_to_f32(0x7c00) > 0);
	CU_ASSERT(isinf(mg_f16_to_f32(0xfc00)) && mg_f16_to_f32(0xfc00) < 0);
	CU_ASSERT(signbit(mg_f16_to_f32(0x8000)) && mg_f16_to_f32(0x8000) == 0.0f);
	CU_ASSERT_EQUAL(mg_f32_to_f16(-0.0f), 0x8000);
	CU_ASSERT_EQUAL(mg_f32_to_f16(INFINITY), 0x7c00);
	CU_ASSERT_EQUAL(mg_f32_to_f16(-INFINITY), 0xfc00);
	CU_ASSERT(isnan(mg_f16_to_f32(mg_f32_to_f16(NAN))));
	CU_ASSERT_EQUAL(mg_f32_to_f16(65519.0f), 0x7bff);
	CU_ASSERT_EQUAL(mg_f32_to_f16(65520.0f), 0x7c00);	/* overflow rounds to inf */
	CU_ASSERT_EQUAL(mg_f32_to_f16(1e30f), 0x7c00);
	CU_ASSERT_EQUAL(mg_f32_to_f16(0x1p-25f), 0x0000);	/* tie to even (0) */
	CU_ASSERT_EQUAL(mg_f32_to_f16(nextafterf(0x1p-25f, 1.0f)), 0x0001);
	CU_ASSERT_EQUAL(mg_f32_to_f16(1e-10f), 0x0000);

	/* rounding: every midpoint between adjacent finite halves goes to the
	 * even one, and a hair either side goes to the nearer one */
	for (uint32_t h = 0; h < 0x7bff; h++) {
		float lo = mg_f16_to_f32((uint16_t)h), hi = mg_f16_to_f32((uint16_t)(h + 1));
		float mid = (float)(((double)lo + (double)hi) / 2);
		uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
		if (mg_f32_to_f16(mid) != even || mg_f32_to_f16(nextafterf(mid, 0.0f)) != h ||
		    mg_f32_to_f16(nextafterf(mid, INFINITY)) != h + 1 ||
		    mg_f32_to_f16(-mid) != (even | 0x8000)) {
			CU_FAIL("f16 rounding");
			fprintf(stderr, "h=0x%04x mid=%a -> 0x%04x\n", h, mid, mg_f32_to_f16(mid));
			break;
		}
	}
}

/* Against the compiler's own conversion (_Float16, IEEE round to nearest
 * even) on f32 bit patterns spread over every exponent, signs and NaNs
 * included: the same half, and NaN where it gives NaN. */
__extension__ typedef _Float16 cc_half;

static void test_f16_vs_compiler(void)
{
	size_t bad = 0;
	for (uint64_t u = 0; u < 0x100000000ULL; u += 0x1001) {
		uint32_t x = (uint32_t)u;
		float f;
		memcpy(&f, &x, 4);
		cc_half c = (cc_half)f;
		uint16_t want;
		memcpy(&want, &c, 2);
		uint16_t got = mg_f32_to_f16(f);
		bool ok = isnan(f) ? (got & 0x7c00) == 0x7c00 && (got & 0x3ff) != 0 : got == want;
		if (!ok && bad++ < 5)
			fprintf(stderr, "f32 0x%08x: got 0x%04x, the compiler 0x%04x\n", x, got, want);
	}
	CU_ASSERT_EQUAL(bad, 0);
}

const cu_test_t f16_tests[] = {
	{ "every half round trips; the edges; midpoints to even", test_f16 },
	{ "the same bits as the compiler's _Float16", test_f16_vs_compiler },
	{ NULL, NULL },
};
