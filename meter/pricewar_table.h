/* pricewar_table: economics.md section 6's price-war table, computed from
 * the shipped price tables (`marginctl economics check` with no options).
 *
 * Rows: every entry of the given price tables (the May-2024 "before"
 * table, then the "after" ones), in table order. Columns: the cost bases
 * of economics.md 6, every one a node of 8 GPUs at the hardware profile's
 * rate (8xh800-rental: 2.00 USD per GPU-hour, DeepSeek's assumption):
 *
 *   A   dense 70B, H100 FP8, 547 output tok/s/GPU at 2048 in / 2048 out
 *       (TensorRT-LLM v0.6.1), utilization 50%;
 *   B   the same model at 2048 in / 128 out, 306 output tok/s/GPU, U = 50%;
 *   C   DeepSeek's measured day: 226.75 nodes, 608B input + 168B output
 *       tokens in 24 h (87,072 USD), 342B of the input tokens cache hits:
 *       a price with a cached-input price is paid at that rate (said per
 *       cell), the others at list price;
 *   7B  LLaMA-7B class on H100, 2,740 output tok/s/GPU at 2048/2048, U = 50%:
 *       only for the small-model price points (ERNIE Lite / Speed, Qwen-
 *       Turbo: economics.md 6 "Small models").
 *
 * Each cell is one pricewar_check() (before = after = the entry): its gross
 * margin (revenue - cost) / revenue, -infinity for a free price. A cut of
 * X of a price takes a gross margin of X to zero (price * (1 - X) = cost):
 * the output says so. Every input is printed with its source; the price
 * sources as a numbered footnote list.
 *
 * Pure: the caller loads the profile and the tables. Any thread. */
#ifndef PRICEWAR_TABLE_H
#define PRICEWAR_TABLE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hwprof.h"
#include "pricetab.h"
#include "pricewar.h"

enum { PRICEWAR_BASIS_A, PRICEWAR_BASIS_B, PRICEWAR_BASIS_C, PRICEWAR_BASIS_7B, PRICEWAR_N_BASES };

/* A price table and the group its rows go in. */
typedef struct pricewar_table_src {
	const char *name;		/* as in the prices directory: "cn-2024-05-after" */
	const char *label;		/* "after the May 2024 cuts" */
	bool before;			/* the pre-war group */
	const pricetab_t *prices;	/* borrowed */
} pricewar_table_src_t;

/* The tables economics.md 6 reads, in order (names in the prices dir). */
extern const pricewar_table_src_t pricewar_table_default_srcs[];
extern const size_t pricewar_table_n_default_srcs;
/* The hardware profile of the cost bases. */
#define PRICEWAR_TABLE_PROFILE "8xh800-rental"

typedef struct pricewar_cell {
	bool computed;			/* false: the basis does not apply (7B on a large model) */
	bool defined;			/* false: no revenue (GM -infinity) */
	int64_t gm_ppm;
	int64_t revenue_micros_per_hour;	/* per node */
	bool cached;			/* the cache-hit price was applied */
} pricewar_cell_t;

typedef struct pricewar_row {
	const pricetab_entry_t *e;	/* borrowed: owned by its source table */
	size_t src;			/* index into the sources */
	bool small;			/* a small-model price point: the 7B basis applies */
	pricewar_cell_t cell[PRICEWAR_N_BASES];
	size_t note[3];			/* footnotes (1-based) of the input, output, cached price; 0 = none */
} pricewar_row_t;

typedef struct pricewar_basis {
	const char *key;		/* "A", "B", "C", "7B" */
	const char *title;
	double out_tok_s_per_gpu;
	double in_per_call, out_per_call, utilization;
	bool cache_hits;		/* C: 342/608 of input tokens hit the cache */
	const char *source;
	int64_t cost_micros_per_hour;	/* per node, in the table's currency */
	int64_t cost_per_1m_tokens_micros;	/* blended over in + out */
} pricewar_basis_t;

typedef struct pricewar_table pricewar_table_t;

/* Builds the table from hw and the n sources (exchange rates from fx,
 * currency of the report cur, e.g. "USD"). -EINVAL/-ENOENT with a message
 * (pricewar_check's), -ENOMEM. *ret owned by the caller. */
int pricewar_table_build(const hwprof_t *hw, const pricewar_table_src_t *srcs, size_t n, const pricetab_t *fx,
			 const char *cur, pricewar_table_t **ret, char *err, size_t errlen);
void pricewar_table_destroy(pricewar_table_t **t);

/* Borrowed views, valid while t lives. */
size_t pricewar_table_rows(const pricewar_table_t *t, const pricewar_row_t **ret);
const pricewar_basis_t *pricewar_table_basis(const pricewar_table_t *t, int basis);
/* The row of entry name in the source table called table; NULL if none. */
const pricewar_row_t *pricewar_table_find(const pricewar_table_t *t, const char *table, const char *name);

/* The table as text and as JSON (with the text under "report"). Caller
 * frees / json_decref's; NULL on ENOMEM. */
char *pricewar_table_format(const pricewar_table_t *t);
json_t *pricewar_table_json(const pricewar_table_t *t);

#endif
