/* litellm: reads LiteLLM's model_prices_and_context_window.json into a
 * price table, so operators can use the price file they already keep.
 *
 * Format (economics.md 1e): a JSON object keyed by model name; the
 * "sample_spec" record is skipped. Per entry, money is USD per single token:
 * input_cost_per_token, output_cost_per_token, optional
 * input_cost_per_token_batches / output_cost_per_token_batches, or a
 * tiered_pricing list of { input_cost_per_token, output_cost_per_token,
 * range: [lo, hi] } bands by prompt size; litellm_provider, mode, source.
 *
 * Numbers become exact decimals: each JSON number is taken at the shortest
 * decimal that reads back to the same double (the literal in the file for
 * any literal of up to 15 significant digits), times 1e6 for per-1M prices.
 *
 * Loaded: entries whose mode is chat, completion, responses or embedding
 * (or absent) and that have token prices (an embedding entry's output
 * price is 0 when absent). Skipped (counted): other modes
 * (image_generation, rerank, ...) and entries priced per second, image or
 * character.
 * Errors (the table is left unchanged): a syntax error (file:line:column),
 * a top level that is not an object, an entry that is not an object, a
 * price field that is not a number or is negative — the message names the
 * model key and the field. Warnings (pricetab_warning_*): an output price
 * below the input price (LiteLLM's 10x typo trap), an input price without
 * an output price, half of a batch pair. */
#ifndef LITELLM_H
#define LITELLM_H

#include <stddef.h>

#include "pricetab.h"

typedef struct litellm_stats {
	size_t loaded;
	size_t skipped;		/* not a token-priced chat/completion entry */
} litellm_stats_t;

/* date: the date to record for every price (e.g. the snapshot's commit
 * date); NULL = the file's modification date, marked as such.
 * ret_stats may be NULL. Returns 0 or a negative errno. */
int litellm_load(pricetab_t *t, const char *path, const char *date, litellm_stats_t *ret_stats, char *err,
		 size_t errlen);
/* Same from memory; name is used in messages and sources. */
int litellm_load_buffer(pricetab_t *t, const char *name, const char *text, size_t len, const char *date,
			litellm_stats_t *ret_stats, char *err, size_t errlen);

/* Exact decimal of a double at the shortest round-trip precision, times
 * 10^scale_pow10 (6 for per-token -> per-1M). -ERANGE, -EINVAL (NaN). */
int litellm_exact(double v, int scale_pow10, meter_q_t *ret);

#endif
