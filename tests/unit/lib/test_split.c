/* mg_split: the parts sum exactly, each is the exact share rounded down or
 * up, the largest remainders get the extra units with ties to the lower
 * index, all-zero weights split evenly, and totals and weights up to
 * UINT64_MAX (the 128-bit products the engine's busy time and the meter's
 * costs reach) stay exact: checked against a quadratic oracle. */
#include "tests.h"
#include "mg_hash.h"
#include "mg_split.h"
#include "mg_int128.h"

#include <stdlib.h>
#include <string.h>

typedef mg_u128 u128;

/* Independent oracle: floors, then +1 to the d largest remainders by a
 * selection sort (ties to the lower index). Quadratic, fine for tests. */
static void split_oracle(uint64_t total, const uint64_t *w, size_t n, uint64_t *out)
{
	u128 W = 0;
	for (size_t i = 0; i < n; i++)
		W += w[i];
	int even = W == 0;
	if (even)
		W = n;
	u128 *rem = calloc(n, sizeof(*rem));
	char *got = calloc(n, 1);
	u128 given = 0;
	for (size_t i = 0; i < n; i++) {
		u128 x = (u128)total * (even ? 1 : w[i]);
		out[i] = (uint64_t)(x / W);
		rem[i] = x % W;
		given += out[i];
	}
	for (u128 d = (u128)total - given; d > 0; d--) {
		size_t best = n;
		for (size_t i = 0; i < n; i++)
			if (!got[i] && (best == n || rem[i] > rem[best]))
				best = i;
		got[best] = 1;
		out[best]++;
	}
	free(rem);
	free(got);
}

static void check_split(uint64_t total, const uint64_t *w, size_t n)
{
	uint64_t *a = calloc(n, sizeof(*a)), *b = calloc(n, sizeof(*b));
	mg_split_largest_remainder(total, w, n, a);
	split_oracle(total, w, n, b);
	u128 sum = 0, W = 0;
	for (size_t i = 0; i < n; i++) {
		sum += a[i];
		W += w[i];
	}
	CU_ASSERT(sum == (u128)total);
	int same = memcmp(a, b, n * sizeof(*a)) == 0;
	CU_ASSERT(same);
	/* proportional: each part is the exact share rounded down or up */
	for (size_t i = 0; i < n && W > 0; i++) {
		u128 lo = (u128)total * w[i] / W;
		CU_ASSERT(a[i] == lo || a[i] == lo + 1);
	}
	free(a);
	free(b);
}

static void test_split_basic(void)
{
	uint64_t p[4];
	/* ties go to the lower index */
	mg_split_largest_remainder(10, (uint64_t[]){ 1, 1, 1 }, 3, p);
	CU_ASSERT(p[0] == 4 && p[1] == 3 && p[2] == 3);
	mg_split_largest_remainder(11, (uint64_t[]){ 5, 5, 5, 5 }, 4, p);
	CU_ASSERT(p[0] == 3 && p[1] == 3 && p[2] == 3 && p[3] == 2);
	/* the largest remainder wins over the lower index: 100 * 3/7 = 42.86,
	 * 100 * 4/7 = 57.14 */
	mg_split_largest_remainder(100, (uint64_t[]){ 3, 4 }, 2, p);
	CU_ASSERT(p[0] == 43 && p[1] == 57);
	/* all zero: even */
	mg_split_largest_remainder(7, (uint64_t[]){ 0, 0, 0 }, 3, p);
	CU_ASSERT(p[0] == 3 && p[1] == 2 && p[2] == 2);
	/* a zero weight gets nothing while others have weight */
	mg_split_largest_remainder(1000001, (uint64_t[]){ 0, 1, 0, 1 }, 4, p);
	CU_ASSERT(p[0] == 0 && p[1] == 500001 && p[2] == 0 && p[3] == 500000);
	mg_split_largest_remainder(0, (uint64_t[]){ 3, 9 }, 2, p);
	CU_ASSERT(p[0] == 0 && p[1] == 0);
	mg_split_largest_remainder(12345, (uint64_t[]){ 7 }, 1, p);
	CU_ASSERT_EQUAL(p[0], 12345);
	mg_split_largest_remainder(5, NULL, 0, NULL);	/* nothing to do, no crash */
}

static void test_split_huge(void)
{
	const uint64_t M = UINT64_MAX;
	check_split(M, (uint64_t[]){ M, M, 1 }, 3);
	check_split(M, (uint64_t[]){ M, M, M, M, M }, 5);
	check_split(M - 1, (uint64_t[]){ 1, M / 3, M / 7, 0, M }, 5);
	check_split(3, (uint64_t[]){ M, M, M, M, M, M, M }, 7);
	uint64_t p[3];
	mg_split_largest_remainder(M, (uint64_t[]){ M, M, M }, 3, p);
	CU_ASSERT(p[0] == M / 3 && p[1] == M / 3 && p[2] == M / 3);
}

static void test_split_random(void)
{
	uint64_t r = 2024;
	uint64_t w[200];
	for (int iter = 0; iter < 3000; iter++) {
		size_t n = 1 + mg_splitmix64(&r) % 200;
		int shift = (int)(mg_splitmix64(&r) % 64);
		for (size_t i = 0; i < n; i++) {
			uint64_t x = mg_splitmix64(&r) >> shift;
			/* many exact ties and zeros */
			w[i] = (iter % 3 == 0) ? x % 4 : x;
		}
		uint64_t total = mg_splitmix64(&r) >> (mg_splitmix64(&r) % 64);
		check_split(total, w, n);
	}
	/* a large n: the in-place selection must stay exact */
	size_t n = 20000;
	uint64_t *big = malloc(n * sizeof(*big));
	for (size_t i = 0; i < n; i++)
		big[i] = 1 + mg_splitmix64(&r) % 1000;
	check_split(987654321987ULL, big, n);
	free(big);
}

const cu_test_t split_tests[] = {
	{ "basic: ties to the lower index, all-zero even, zero weights", test_split_basic },
	{ "huge totals and weights", test_split_huge },
	{ "random vs oracle", test_split_random },
	{ NULL, NULL },
};
