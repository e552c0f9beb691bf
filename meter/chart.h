/* chart: hand-written SVG line charts of cost per 1M tokens, with closed-API
 * prices as horizontal dashed lines.
 *
 * chart_svg() draws any series; chart_cost_vs_batch() and
 * chart_cost_vs_utilization() build the two charts the reports need. The
 * y axis is logarithmic (decades) when the values span more than 20x,
 * linear from 0 otherwise; the batch axis is log2. Text is XML-escaped. The
 * output is a complete standalone SVG 1.1 document starting with "<svg".
 *
 * Nothing is cut: the subtitle and the legend wrap onto as many lines as
 * they need (the image grows), at an estimated 0.6 em per character.
 * Where a series crosses a horizontal line (a cost curve meets an API's
 * price: the break-even) a ring marks the crossing, labelled with x there
 * ("U = 61.6%"), and the legend says it; vertical lines (the measured
 * utilization) are drawn and labelled at the top of the plot. Labels
 * inside the plot move apart instead of overlapping.
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

typedef struct chart_vline {
	const char *label;	/* drawn at the top of the plot, e.g. "measured U = 37%" */
	double x;
} chart_vline_t;

typedef struct chart {
	const char *title, *subtitle, *x_label, *y_label;	/* subtitle may be NULL */
	bool log2_x;		/* x axis in powers of two (batch sizes) */
	const chart_series_t *series;
	size_t n_series;
	const chart_hline_t *lines;
	size_t n_lines;
	const chart_vline_t *vlines;	/* may be NULL */
	size_t n_vlines;
	/* Crossings of series and lines are marked when x_name is set:
	 * "<x_name> = <x><x_unit>", e.g. "U", "%" or "batch", "". */
	const char *x_name, *x_unit;
	const char *y_unit;	/* after the lines' values in the legend, e.g. "CNY/1M tokens" */
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
 * as a line, and the utilization where the cost meets it. measured_u
 * (0 < u <= 1; 0 = none) is drawn as a vertical line "measured U = 37%". */
int chart_cost_vs_utilization(const thru_t *t, const hwprof_t *hw, double in_per_call, double out_per_call,
			      double measured_u, const pricetab_t *prices, const char *const *refs, size_t n_refs,
			      bool via_batch, const char *currency, char **ret_svg, char *err, size_t errlen);

#endif
