/* pricetab: closed-API price tables and exchange rates.
 *
 * Native format: INI (lib/mg_config.h), one file per dated table, e.g.
 * deploy/prices/cn-2024-05-after.conf:
 *
 *   [table]
 *   name = cn-2024-05-after
 *   description = Chinese list prices after the May 2024 cuts
 *
 *   [fx]
 *   CNY_per_USD = 7.2
 *   CNY_per_USD_source = economics.md conventions (assumption, not a sourced rate)
 *   CNY_per_USD_date = 2024
 *
 *   [price.qwen-long]
 *   model = Qwen-Long
 *   provider = alibaba
 *   currency = CNY
 *   input_per_1m = 0.5
 *   output_per_1m = 2
 *   source = 163.com/dy/article/J2O09HCV05118O92
 *   date = 2024-05-21
 *   batch_discount = 0
 *   batch_discount_source = no batch tier in the 2024 sources (economics.md 1d)
 *   batch_discount_date = 2024-05
 *
 * Prices are currency units per 1M tokens (= micro-units per token), exact
 * decimals. Each number's source and date are NAME_source / NAME_date, or
 * the entry's `source` / `date` when those are absent; a number with
 * neither is an error. The batch price is batch_input_per_1m /
 * batch_output_per_1m, or the list price times (1 - batch_discount).
 * An entry with neither, or with batch_discount = 0 (a sourced "no batch
 * tier"), has no batch tier: batch calls pay the list price.
 * cached_input_per_1m (optional, with its source and date like every
 * number) is the price of a prompt token read from the provider's context
 * cache (DeepSeek's "cache hit" price, LiteLLM's cache_read_input_token_cost);
 * pricetab_cache_blend() applies it at a cache-hit rate.
 * mode = embedding marks an embedding price (see PRICETAB_MODE_EMBEDDING):
 * input prices only, output_per_1m / batch_output_per_1m absent or 0.
 * LiteLLM's JSON format is read by litellm.h into the same table.
 *
 * Exchange rates: [fx] CUR_per_USD = rate (units of CUR per 1 USD); USD is
 * 1 by definition. Conversion X -> Y multiplies by Y_per_USD / X_per_USD,
 * exactly, and rounds once.
 *
 * A pricetab_t is owned by one thread at a time; after loading, concurrent
 * reads are fine. */
#ifndef PRICETAB_H
#define PRICETAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "meter.h"

#define PRICETAB_TEXT 200
#define PRICETAB_MAX_BANDS 8

/* A prompt-size band of a tiered price (LiteLLM tiered_pricing): applies
 * when lo <= prompt_tokens < hi. */
typedef struct pricetab_band {
	uint64_t lo, hi;
	meter_q_t in_per_1m, out_per_1m;
} pricetab_band_t;

typedef struct pricetab_entry {
	char name[128];		/* lookup key: NAME of [price.NAME], or LiteLLM's key */
	char model[128];	/* display name */
	char provider[48];
	char mode[24];		/* "chat" (default), "completion", "responses" or "embedding" */
	char currency[4];
	meter_q_t in_per_1m, out_per_1m;	/* list price per 1M tokens */
	char in_source[PRICETAB_TEXT], in_date[48];
	char out_source[PRICETAB_TEXT], out_date[48];
	bool has_batch;
	meter_q_t batch_discount;		/* fraction off, informative */
	meter_q_t batch_in_per_1m, batch_out_per_1m;
	char batch_source[PRICETAB_TEXT], batch_date[48];
	bool has_cached;			/* a cache-hit input price is known */
	meter_q_t cached_in_per_1m;		/* per 1M prompt tokens read from the cache */
	char cached_source[PRICETAB_TEXT], cached_date[48];
	size_t n_bands;		/* > 0: bands replace in/out by prompt size */
	pricetab_band_t bands[PRICETAB_MAX_BANDS];
	char note[PRICETAB_TEXT];
	char origin[128];	/* file it came from */
} pricetab_entry_t;

typedef struct pricetab_fx {
	char currency[4];
	meter_q_t per_usd;
	char source[PRICETAB_TEXT], date[48];
} pricetab_fx_t;

typedef struct pricetab pricetab_t;

pricetab_t *pricetab_new(void);
void pricetab_destroy(pricetab_t **t);

/* Adds the entries and rates of an INI price file; an entry or rate with a
 * name already present replaces it. -ENOENT/-EACCES, -EINVAL with a message
 * naming file, section and key (the table is unchanged then), -ENOMEM. */
int pricetab_load(pricetab_t *t, const char *path, char *err, size_t errlen);
int pricetab_load_string(pricetab_t *t, const char *name, const char *text, char *err, size_t errlen);

/* Copies e in (replacing an entry of the same name). -ENOMEM. */
int pricetab_add(pricetab_t *t, const pricetab_entry_t *e);
size_t pricetab_count(const pricetab_t *t);
/* Borrowed, valid until the table changes. */
const pricetab_entry_t *pricetab_at(const pricetab_t *t, size_t i);
const pricetab_entry_t *pricetab_find(const pricetab_t *t, const char *name);
/* The names of the loaded tables ([table] name, else the file name),
 * "+"-separated in load order: "fx+cn-2024-05-after". Borrowed. */
const char *pricetab_name(const pricetab_t *t);

int pricetab_set_fx(pricetab_t *t, const char *currency, meter_q_t per_usd, const char *source,
		    const char *date);
const pricetab_fx_t *pricetab_find_fx(const pricetab_t *t, const char *currency);
/* The exchange rates in load order (borrowed, valid until t changes). */
size_t pricetab_fx_count(const pricetab_t *t);
const pricetab_fx_t *pricetab_fx_at(const pricetab_t *t, size_t i);
/* amount_in_to = amount_in_from * factor. -ENOENT naming the missing rate. */
int pricetab_fx_factor(const pricetab_t *t, const char *from, const char *to, meter_q_t *ret,
		       char *err, size_t errlen);
/* Converts micros, rounding once (half away from zero). */
int pricetab_convert(const pricetab_t *t, int64_t micros, const char *from, const char *to, int64_t *ret,
		     char *err, size_t errlen);

/* The mode of an embedding price (LiteLLM's `mode`): the entry prices
 * /v1/embeddings calls, on their input tokens only (its output prices are
 * 0), and only those: margind compares embedding calls with embedding
 * entries ([meter] embed_refs) and every other call with the others. */
#define PRICETAB_MODE_EMBEDDING "embedding"

/* mode is one a price file may give: chat, completion, responses, embedding. */
bool pricetab_mode_valid(const char *mode);
bool pricetab_is_embedding(const pricetab_entry_t *e);

/* Per-token prices (micros per token = units per 1M tokens) that apply to
 * a call with this many prompt tokens, through the batch API or not. */
int pricetab_prices(const pricetab_entry_t *e, uint64_t prompt_tokens, bool via_batch, meter_q_t *ret_in,
		    meter_q_t *ret_out);

/* The input price of a call of which a share hit (0 <= hit <= 1) of the
 * prompt tokens hits the provider's cache: hit * cached + (1 - hit) * in,
 * exact. in is the price pricetab_prices() gave. An entry without a cached
 * price returns in unchanged and *ret_applied = false. -EINVAL for hit
 * outside [0, 1], -ERANGE. */
int pricetab_cache_blend(const pricetab_entry_t *e, meter_q_t in, meter_q_t hit, meter_q_t *ret, bool *ret_applied);

/* Warnings found while loading (e.g. an output price below the input
 * price: LiteLLM's 10x typo trap). Borrowed. */
size_t pricetab_warning_count(const pricetab_t *t);
const char *pricetab_warning_at(const pricetab_t *t, size_t i);
int pricetab_add_warning(pricetab_t *t, const char *text);

#endif
