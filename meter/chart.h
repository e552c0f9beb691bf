/* chart: hand-written SVG line charts of cost per 1M tokens, with closed-API
 * prices as horizontal dashed lines.
 *
 * chart_svg() draws any series; chart_cost_vs_batch() and
 * chart_cost_vs_utilization() build the two charts the reports need. The
 * y axis is logarithmic (decades) when the values span more than 20x,
 * linear from 0 otherwise; the batch axis is log2. Text is XML-escaped. The
 * output is a complete standalone SVG 1.1 document starting with "<svg".
 *
 * Pure functions; any thread. */
#ifndef CHART_H
#define CHART_H

#include <stdbool.h>
#include <stddef.h>

#include "hwprof.h"
#include "pricetab.h"
#include "thru.h"

typedef struct chart_point {
	double x, y;
} chart_point_t;

typedef struct chart_series {
	const char *label;
	const chart_point_t *pts;
	size_t n;
} chart_series_t;

typedef struct chart_hline {
	const char *label;
	double y;
} chart_hline_t;

typedef struct chart {
	const char *title, *subtitle, *x_label, *y_label;	/* subtitle may be NULL */
	bool log2_x;		/* x axis in powers of two (batch sizes) */
	const chart_series_t *series;
	size_t n_series;
	const chart_hline_t *lines;
	size_t n_lines;
} chart_t;

/* *ret_svg is malloc'd (caller frees). -EINVAL when there is nothing to
 * draw or a value is not finite (or not positive on a log axis). */
int chart_svg(const chart_t *c, char **ret_svg, char *err, size_t errlen);

/* Cost per 1M generated tokens against decode batch size from a bench, on
 * hw at utilization u, in currency; each reference's output price per 1M
 * (its batch price when via_batch) as a line. */
int chart_cost_vs_batch(const thru_bench_t *b, const hwprof_t *hw, double u, const pricetab_t *prices,
			const char *const *refs, size_t n_refs, bool via_batch, const char *currency, char **ret_svg,
			char *err, size_t errlen);

/* Cost per 1M tokens of a call mix against utilization (5% .. 100%) at one
 * throughput; each reference's blended price per 1M tokens of the same mix
 * as a line. */
int chart_cost_vs_utilization(const thru_t *t, const hwprof_t *hw, double in_per_call, double out_per_call,
			      const pricetab_t *prices, const char *const *refs, size_t n_refs, bool via_batch,
			      const char *currency, char **ret_svg, char *err, size_t errlen);

#endif
