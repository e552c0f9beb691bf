/* mg_split: the largest-remainder split behind "the parts sum exactly".
 *
 * Busy time over a step's sequences (worker engine), a period's cost over
 * its shards, a converted total over its rows (meter) are all one split:
 * total among n parts in proportion to weights, each part the exact share
 * rounded down or up, the parts summing to total to the unit. */
#ifndef MG_SPLIT_H
#define MG_SPLIT_H

#include <stddef.h>
#include <stdint.h>

/* ret_parts[i] = floor(total * w_i / W) plus one for the (total - sum of
 * floors) parts with the largest remainders (total * w_i) mod W, ties to the
 * lower index; W is the sum of the weights. If every weight is 0 the split
 * is even (the first total % n parts get one more). Products and sums are
 * 128-bit, so any uint64_t total and weights are exact. Allocates nothing
 * (the selection runs in ret_parts), so it cannot fail; n == 0 writes
 * nothing. Any thread may call it. */
void mg_split_largest_remainder(uint64_t total, const uint64_t *weights, size_t n,
				uint64_t *ret_parts);

#endif
