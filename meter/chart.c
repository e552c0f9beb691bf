/* chart: see chart.h. */
#include "chart.h"
#include "cost.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Layout (px): plot area inside the margins; legend on the right. */
#define W 760
#define H 440
#define ML 84
#define MR 220
#define MT 44
#define MB 56

static const char *const colors[] = { "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2",
				      "#7f7f7f", "#bcbd22", "#17becf", "#ff7f0e" };
#define N_COLORS (sizeof(colors) / sizeof(colors[0]))

static void esc(FILE *f, const char *s)
{
	for (; s && *s; s++) {
		switch (*s) {
		case '&': fputs("&amp;", f); break;
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '"': fputs("&quot;", f); break;
		case '\'': fputs("&apos;", f); break;
		default:
			if ((unsigned char)*s >= 0x20 || *s == '\t')
				fputc(*s, f);
		}
	}
}

struct axis {
	bool log;
	double lo, hi;	/* in data units (log: positive) */
};

static double map(const struct axis *a, double v, double p0, double p1)
{
	double t = a->log ? (log(v) - log(a->lo)) / (log(a->hi) - log(a->lo)) : (v - a->lo) / (a->hi - a->lo);
	return p0 + t * (p1 - p0);
}

static double nice_step(double span)
{
	double raw = span / 5, mag = pow(10, floor(log10(raw))), f = raw / mag;
	return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

static void fmt_num(char *buf, size_t len, double v)
{
	if (v != 0 && (fabs(v) >= 1e6 || fabs(v) < 1e-3))
		snprintf(buf, len, "%.0e", v);
	else
		snprintf(buf, len, "%.4g", v);
}

int chart_svg(const chart_t *c, char **ret_svg, char *err, size_t errlen)
{
	double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
	size_t npts = 0;
	for (size_t s = 0; s < c->n_series; s++)
		for (size_t i = 0; i < c->series[s].n; i++) {
			chart_point_t p = c->series[s].pts[i];
			if (!isfinite(p.x) || !isfinite(p.y) || (c->log2_x && !(p.x > 0))) {
				snprintf(err, errlen, "chart: series \"%s\" point %zu is not drawable", c->series[s].label, i);
				return -EINVAL;
			}
			xmin = fmin(xmin, p.x);
			xmax = fmax(xmax, p.x);
			ymin = fmin(ymin, p.y);
			ymax = fmax(ymax, p.y);
			npts++;
		}
	for (size_t l = 0; l < c->n_lines; l++) {
		if (!isfinite(c->lines[l].y)) {
			snprintf(err, errlen, "chart: line \"%s\" is not finite", c->lines[l].label);
			return -EINVAL;
		}
		ymin = fmin(ymin, c->lines[l].y);
		ymax = fmax(ymax, c->lines[l].y);
	}
	if (npts == 0) {
		snprintf(err, errlen, "chart: no points to draw");
		return -EINVAL;
	}
	if (xmax == xmin) {
		xmin = c->log2_x ? xmin / 2 : xmin - 1;
		xmax = c->log2_x ? xmax * 2 : xmax + 1;
	}
	struct axis ax = { c->log2_x, xmin, xmax }, ay;
	if (ymin > 0 && ymax / ymin > 20) {
		ay = (struct axis){ true, pow(10, floor(log10(ymin))), pow(10, ceil(log10(ymax))) };
	} else {
		double lo = fmin(0, ymin), hi = ymax > lo ? ymax : lo + 1;
		double st = nice_step(hi - lo);
		ay = (struct axis){ false, floor(lo / st) * st, ceil(hi / st) * st };
		if (ay.hi == ay.lo)
			ay.hi = ay.lo + st;
	}

	char *out = NULL, buf[64];
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	if (f == NULL)
		return -ENOMEM;
	const double px0 = ML, px1 = W - MR, py0 = H - MB, py1 = MT;
	fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%d\" height=\"%d\" "
		   "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n", W, H, W, H);
	fprintf(f, "<title>");
	esc(f, c->title);
	fprintf(f, "</title>\n<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"white\"/>\n", W, H);
	fprintf(f, "<text x=\"%d\" y=\"20\" font-size=\"15\" font-weight=\"bold\">", ML);
	esc(f, c->title);
	fprintf(f, "</text>\n");
	if (c->subtitle != NULL) {
		fprintf(f, "<text x=\"%d\" y=\"36\" font-size=\"11\" fill=\"#555555\">", ML);
		esc(f, c->subtitle);
		fprintf(f, "</text>\n");
	}

	/* Grid and ticks. */
	fprintf(f, "<g stroke=\"#dddddd\" stroke-width=\"1\">\n");
	if (ay.log) {
		for (double v = ay.lo; v <= ay.hi * 1.0001; v *= 10) {
			double y = map(&ay, v, py0, py1);
			fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", px0, y, px1, y);
		}
	} else {
		double st = nice_step(ay.hi - ay.lo);
		for (double v = ay.lo; v <= ay.hi + st * 1e-6; v += st) {
			double y = map(&ay, v, py0, py1);
			fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", px0, y, px1, y);
		}
	}
	fprintf(f, "</g>\n<g text-anchor=\"end\">\n");
	if (ay.log) {
		for (double v = ay.lo; v <= ay.hi * 1.0001; v *= 10) {
			fmt_num(buf, sizeof(buf), v);
			fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n", px0 - 6, map(&ay, v, py0, py1) + 4, buf);
		}
	} else {
		double st = nice_step(ay.hi - ay.lo);
		for (double v = ay.lo; v <= ay.hi + st * 1e-6; v += st) {
			fmt_num(buf, sizeof(buf), fabs(v) < st * 1e-9 ? 0 : v);
			fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n", px0 - 6, map(&ay, v, py0, py1) + 4, buf);
		}
	}
	fprintf(f, "</g>\n<g text-anchor=\"middle\">\n");
	if (ax.log) {
		for (double v = pow(2, ceil(log2(ax.lo))); v <= ax.hi * 1.0001; v *= 2) {
			fmt_num(buf, sizeof(buf), v);
			fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n", map(&ax, v, px0, px1), py0 + 16, buf);
		}
	} else {
		double st = nice_step(ax.hi - ax.lo);
		for (double v = ceil(ax.lo / st) * st; v <= ax.hi + st * 1e-6; v += st) {
			fmt_num(buf, sizeof(buf), fabs(v) < st * 1e-9 ? 0 : v);
			fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n", map(&ax, v, px0, px1), py0 + 16, buf);
		}
	}
	fprintf(f, "</g>\n");
	/* Axes and their labels. */
	fprintf(f, "<path d=\"M%.1f %.1f V%.1f H%.1f\" fill=\"none\" stroke=\"black\"/>\n", px0, py1, py0, px1);
	fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">", (px0 + px1) / 2, H - 14);
	esc(f, c->x_label);
	fprintf(f, "</text>\n<text x=\"18\" y=\"%.1f\" text-anchor=\"middle\" transform=\"rotate(-90 18 %.1f)\">",
		(py0 + py1) / 2, (py0 + py1) / 2);
	esc(f, c->y_label);
	fprintf(f, "%s</text>\n", ay.log ? " (log scale)" : "");

	/* Closed-API prices: dashed lines, labelled in the legend. */
	for (size_t l = 0; l < c->n_lines; l++) {
		const char *col = colors[(c->n_series + l) % N_COLORS];
		double y = map(&ay, ay.log && c->lines[l].y <= 0 ? ay.lo : c->lines[l].y, py0, py1);
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"1.5\" "
			   "stroke-dasharray=\"6 4\"/>\n", px0, y, px1, y, col);
	}
	/* Series: polylines with a dot per point. */
	for (size_t s = 0; s < c->n_series; s++) {
		const char *col = colors[s % N_COLORS];
		fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", col);
		for (size_t i = 0; i < c->series[s].n; i++) {
			chart_point_t p = c->series[s].pts[i];
			double y = ay.log && p.y <= 0 ? ay.lo : p.y;
			fprintf(f, "%s%.1f,%.1f", i ? " " : "", map(&ax, p.x, px0, px1), map(&ay, y, py0, py1));
		}
		fprintf(f, "\"/>\n");
		for (size_t i = 0; i < c->series[s].n; i++) {
			chart_point_t p = c->series[s].pts[i];
			double y = ay.log && p.y <= 0 ? ay.lo : p.y;
			fmt_num(buf, sizeof(buf), p.y);
			fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"><title>%s</title></circle>\n",
				map(&ax, p.x, px0, px1), map(&ay, y, py0, py1), col, buf);
		}
	}
	/* Legend. */
	double ly = MT + 8;
	for (size_t s = 0; s < c->n_series + c->n_lines; s++, ly += 18) {
		bool line = s >= c->n_series;
		const char *label = line ? c->lines[s - c->n_series].label : c->series[s].label;
		fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"%s/>\n",
			W - MR + 12, ly, W - MR + 36, ly, colors[s % N_COLORS], line ? " stroke-dasharray=\"6 4\"" : "");
		fprintf(f, "<text x=\"%d\" y=\"%.1f\">", W - MR + 42, ly + 4);
		esc(f, label);
		if (line) {
			fmt_num(buf, sizeof(buf), c->lines[s - c->n_series].y);
			fprintf(f, " (%s)", buf);
		}
		fprintf(f, "</text>\n");
	}
	fprintf(f, "</svg>\n");
	if (fclose(f) != 0) {
		free(out);
		return -ENOMEM;
	}
	*ret_svg = out;
	return 0;
}

/* Per-1M price lines of the references, in currency. blend_in/out: the
 * token mix (0, 1 = output price only). */
static int ref_lines(const pricetab_t *prices, const char *const *refs, size_t n_refs, bool via_batch,
		     const char *currency, double blend_in, double blend_out, chart_hline_t *lines,
		     char (*labels)[160], char *err, size_t errlen)
{
	for (size_t k = 0; k < n_refs; k++) {
		const pricetab_entry_t *e = pricetab_find(prices, refs[k]);
		meter_q_t pin, pout, fx;
		int r;
		if (e == NULL) {
			snprintf(err, errlen, "chart: no price \"%s\" in table %s", refs[k], pricetab_name(prices));
			return -ENOENT;
		}
		uint64_t prompt = (uint64_t)llround(blend_in);
		if (pricetab_prices(e, prompt, via_batch, &pin, &pout) < 0) {
			snprintf(err, errlen, "chart: %s has no band for %llu prompt tokens", e->name,
				 (unsigned long long)prompt);
			return -ERANGE;
		}
		if ((r = pricetab_fx_factor(prices, e->currency, currency, &fx, err, errlen)) < 0)
			return r;
		double per_tok = (blend_in * meter_q_to_double(pin) + blend_out * meter_q_to_double(pout)) /
				 (blend_in + blend_out);
		lines[k].y = per_tok * meter_q_to_double(fx);	/* micros per token = units per 1M */
		snprintf(labels[k], sizeof(labels[k]), "%s%s", e->name, via_batch && e->has_batch ? " batch" : "");
		lines[k].label = labels[k];
	}
	return 0;
}

int chart_cost_vs_batch(const thru_bench_t *b, const hwprof_t *hw, double u, const pricetab_t *prices,
			const char *const *refs, size_t n_refs, bool via_batch, const char *currency, char **ret_svg,
			char *err, size_t errlen)
{
	chart_point_t *pts = calloc(b->n_runs ? b->n_runs : 1, sizeof(*pts));
	chart_hline_t *lines = calloc(n_refs ? n_refs : 1, sizeof(*lines));
	char (*labels)[160] = calloc(n_refs ? n_refs : 1, sizeof(*labels));
	char sub[320], ylab[64], slab[200];
	int64_t rate;
	int r = -ENOMEM;
	if (pts == NULL || lines == NULL || labels == NULL)
		goto fail;
	if ((r = pricetab_convert(prices, hw->rate_busy_micros_per_hour, hw->currency, currency, &rate, err, errlen)) < 0)
		goto fail;
	for (size_t i = 0; i < b->n_runs; i++) {
		int64_t c;
		if ((r = cost_per_1m_tokens(rate, b->runs[i].decode_tok_s, u, &c)) < 0) {
			snprintf(err, errlen, "chart: run %zu has no throughput", i);
			goto fail;
		}
		pts[i] = (chart_point_t){ b->runs[i].batch, (double)c / 1e6 };
	}
	if ((r = ref_lines(prices, refs, n_refs, via_batch, currency, 0, 1, lines, labels, err, errlen)) < 0)
		goto fail;
	snprintf(sub, sizeof(sub), "%.60s on %.40s (%.3f %s/h), utilization %.0f%%; prices %.120s",
		 b->model[0] ? b->model : "model", hw->name, (double)rate / 1e6, currency, u * 100, pricetab_name(prices));
	snprintf(ylab, sizeof(ylab), "%s per 1M output tokens", currency);
	snprintf(slab, sizeof(slab), "%.40s (%.40s)", hw->name, thru_basis_name((thru_source_t)b->source));
	chart_series_t s = { slab, pts, b->n_runs };
	chart_t c = { "Cost per 1M output tokens vs batch size", sub, "decode batch size (sequences per step)", ylab,
		      true, &s, 1, lines, n_refs };
	r = chart_svg(&c, ret_svg, err, errlen);
fail:
	free(pts);
	free(lines);
	free(labels);
	return r;
}

int chart_cost_vs_utilization(const thru_t *t, const hwprof_t *hw, double in_per_call, double out_per_call,
			      const pricetab_t *prices, const char *const *refs, size_t n_refs, bool via_batch,
			      const char *currency, char **ret_svg, char *err, size_t errlen)
{
	enum { NP = 20 };
	chart_point_t pts[NP];
	chart_hline_t *lines = calloc(n_refs ? n_refs : 1, sizeof(*lines));
	char (*labels)[160] = calloc(n_refs ? n_refs : 1, sizeof(*labels));
	char sub[320], ylab[64];
	int64_t rb, ri;
	int r = -ENOMEM;
	if (lines == NULL || labels == NULL)
		goto fail;
	if ((r = pricetab_convert(prices, hw->rate_busy_micros_per_hour, hw->currency, currency, &rb, err, errlen)) < 0 ||
	    (r = pricetab_convert(prices, hw->rate_idle_micros_per_hour, hw->currency, currency, &ri, err, errlen)) < 0)
		goto fail;
	for (int i = 0; i < NP; i++) {
		double u = (i + 1) * 0.05, tin, tout;
		if ((r = thru_tokens_per_hour(t, in_per_call, out_per_call, u, &tin, &tout)) < 0) {
			snprintf(err, errlen, "chart: throughput or call mix is not positive");
			goto fail;
		}
		/* The node is paid for the whole hour: busy u of it, idle the rest. */
		double cost_h = u * (double)rb + (1 - u) * (double)ri;
		pts[i] = (chart_point_t){ u * 100, cost_h / (tin + tout) };	/* micros per token = units per 1M */
	}
	if ((r = ref_lines(prices, refs, n_refs, via_batch, currency, in_per_call, out_per_call, lines, labels, err,
			   errlen)) < 0)
		goto fail;
	snprintf(sub, sizeof(sub), "%.40s (%.3f %s/h), %.0f in / %.0f out per call; %.100s; prices %.100s", hw->name,
		 (double)rb / 1e6, currency, in_per_call, out_per_call, t->why, pricetab_name(prices));
	snprintf(ylab, sizeof(ylab), "%s per 1M tokens (in + out)", currency);
	char slab[200];
	snprintf(slab, sizeof(slab), "%.40s (%.40s)", hw->name, thru_basis_name(t->source));
	chart_series_t s = { slab, pts, NP };
	chart_t c = { "Cost per 1M tokens vs utilization", sub, "utilization (%)", ylab, false, &s, 1, lines, n_refs };
	r = chart_svg(&c, ret_svg, err, errlen);
fail:
	free(lines);
	free(labels);
	return r;
}
