/* mg_split: see mg_split.h. */
#include "mg_split.h"
#include "mg_int128.h"

#include <stdbool.h>

/* total < 2^64 and w < 2^64: a product fits in 128 bits; W, a sum of n
 * weights, fits for any n below 2^64. */
typedef mg_u128 u128;

/* Remainder order of the largest-remainder method: bigger remainder
 * first, then lower index. key(i) = (total * w_i) mod W. */
static inline bool rem_before(u128 ra, size_t a, u128 rb, size_t b)
{
	return ra > rb || (ra == rb && a < b);
}

static void sift_idx(uint64_t *h, size_t n, size_t i, uint64_t total, const uint64_t *w, bool even,
		     u128 W)
{
	uint64_t x = h[i];
	u128 rx = (u128)total * (even ? 1 : w[x]) % W;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= n)
			break;
		u128 rc = (u128)total * (even ? 1 : w[h[c]]) % W;
		if (c + 1 < n) {
			u128 r1 = (u128)total * (even ? 1 : w[h[c + 1]]) % W;
			if (rem_before(r1, h[c + 1], rc, h[c])) {
				c++;
				rc = r1;
			}
		}
		if (!rem_before(rc, h[c], rx, x))
			break;
		h[i] = h[c];
		i = c;
	}
	h[i] = x;
}

void mg_split_largest_remainder(uint64_t total, const uint64_t *weights, size_t n,
				uint64_t *ret_parts)
{
	if (n == 0)
		return;
	u128 W = 0;
	for (size_t i = 0; i < n; i++)
		W += weights[i];
	bool even = W == 0;
	if (even)
		W = n;
	/* floor parts sum to total - d with 0 <= d < n */
	u128 given = 0;
	for (size_t i = 0; i < n; i++)
		given += (u128)total * (even ? 1 : weights[i]) / W;
	uint64_t d = (uint64_t)((u128)total - given);
	if (d == 0) {
		for (size_t i = 0; i < n; i++)
			ret_parts[i] = (uint64_t)((u128)total * (even ? 1 : weights[i]) / W);
		return;
	}
	/* Find the d-th index in remainder order without allocating: heap-select
	 * over indices kept in ret_parts (a max-heap in remainder order, popped
	 * d times), then rewrite ret_parts with the values: every index whose
	 * remainder comes before or at the d-th one's gets one more. */
	for (size_t i = 0; i < n; i++)
		ret_parts[i] = i;
	for (size_t i = n / 2; i-- > 0;)
		sift_idx(ret_parts, n, i, total, weights, even, W);
	uint64_t last = 0;
	size_t hn = n;
	for (uint64_t k = 0; k < d; k++) {
		last = ret_parts[0];
		ret_parts[0] = ret_parts[--hn];
		if (hn > 1)
			sift_idx(ret_parts, hn, 0, total, weights, even, W);
	}
	u128 rlast = (u128)total * (even ? 1 : weights[last]) % W;
	for (size_t i = 0; i < n; i++) {
		uint64_t wi = even ? 1 : weights[i];
		u128 r = (u128)total * wi % W;
		bool extra = r > rlast || (r == rlast && i <= last);
		ret_parts[i] = (uint64_t)((u128)total * wi / W) + (extra ? 1 : 0);
	}
}
