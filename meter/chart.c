/* chart: see chart.h. */
#include "chart.h"
#include "cost.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Layout (px): a plot area of fixed size inside the margins, the legend on
 * the right; the top margin grows with the subtitle's lines and the image
 * grows when the legend is longer than the plot. */
#define W 800
#define PH 330		/* plot height */
#define ML 84
#define MR 250
#define MB 56
#define EM 0.6		/* estimated glyph width of sans-serif text, in em (generous) */
#define MAX_LINES 24	/* of one wrapped text */

static const char *const colors[] = { "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2",
				      "#7f7f7f", "#bcbd22", "#17becf", "#ff7f0e" };
#define N_COLORS (sizeof(colors) / sizeof(colors[0]))

/* len bytes of s (all when len is (size_t)-1), XML-escaped. */
static void esc_n(FILE *f, const char *s, size_t len)
{
	for (size_t i = 0; s && i < len && s[i]; i++) {
		switch (s[i]) {
		case '&': fputs("&amp;", f); break;
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '"': fputs("&quot;", f); break;
		case '\'': fputs("&apos;", f); break;
		default:
			if ((unsigned char)s[i] >= 0x20 || s[i] == '\t')
				fputc(s[i], f);
		}
	}
}

static void esc(FILE *f, const char *s)
{
	esc_n(f, s, (size_t)-1);
}

/* Characters (UTF-8 code points) of len bytes of s. */
static size_t n_chars(const char *s, size_t len)
{
	size_t n = 0;
	for (size_t i = 0; i < len && s[i]; i++)
		n += ((unsigned char)s[i] & 0xC0) != 0x80;
	return n;
}

/* Estimated width (px) of len bytes of s at font size px. */
static double text_w(const char *s, size_t len, double size)
{
	return (double)n_chars(s, len) * size * EM;
}

/* Splits s into lines of at most max bytes, at spaces (a longer word is
 * broken, on a character boundary); returns the count, at most MAX_LINES. */
static size_t wrap(const char *s, size_t max, size_t *start, size_t *len)
{
	size_t n = 0, i = 0, l = s ? strlen(s) : 0;
	if (max < 8)
		max = 8;
	while (i < l && n < MAX_LINES) {
		while (s[i] == ' ')
			i++;
		if (i >= l)
			break;
		if (l - i <= max) {
			start[n] = i;
			len[n++] = l - i;
			break;
		}
		size_t b = i + max;
		while (b > i && s[b] != ' ')
			b--;
		if (b == i) {
			b = i + max;
			while (b > i + 1 && ((unsigned char)s[b] & 0xC0) == 0x80)
				b--;
		}
		start[n] = i;
		len[n++] = b - i;
		i = b;
	}
	return n;
}

/* Lines of a text wrapped to a width in px at a font size. */
static size_t wrap_px(const char *s, double width, double size, size_t *start, size_t *len)
{
	return wrap(s, (size_t)(width / (size * EM)), start, len);
}

struct axis {
	bool log;
	double lo, hi;	/* in data units (log: positive) */
};

/* Position along an axis in display units: what the eye sees as linear. */
static double disp(const struct axis *a, double v)
{
	return a->log ? log(v) : v;
}

static double map(const struct axis *a, double v, double p0, double p1)
{
	double t = (disp(a, v) - disp(a, a->lo)) / (disp(a, a->hi) - disp(a, a->lo));
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

/* A label's box, to keep labels in the plot apart. */
struct box {
	double x0, y0, x1, y1;
};

static bool overlaps(const struct box *a, const struct box *b)
{
	return a->x0 < b->x1 && b->x0 < a->x1 && a->y0 < b->y1 && b->y0 < a->y1;
}

/* Places an 11 px label near (x, y) inside the plot [px0, px1] x [py1,
 * py0]: right of x when it fits, else left; moved up (then down) until it
 * overlaps no box placed before. Writes the text on a white backing and
 * adds its box. */
static void place_label(FILE *f, const char *text, double x, double y, const char *color, const char *cls,
			struct box *placed, size_t *n_placed, double px0, double px1, double py0, double py1)
{
	double w = text_w(text, strlen(text), 11), h = 13;
	bool right = x + 6 + w <= px1;
	double x0 = right ? x + 6 : x - 6 - w;
	if (x0 < px0 + 2)
		x0 = px0 + 2;
	struct box b = { x0, y - 6 - h, x0 + w, y - 6 };
	for (int tries = 0; tries < 40; tries++) {
		bool clash = b.y0 < py1 || b.y1 > py0;
		for (size_t i = 0; i < *n_placed && !clash; i++)
			clash = overlaps(&b, &placed[i]);
		if (!clash)
			break;
		/* up in steps of a line; past the top, start below the point */
		double dy = tries < 20 ? -(h + 1) : h + 1;
		if (tries == 20) {
			b.y0 = y + 6;
			b.y1 = y + 6 + h;
		} else {
			b.y0 += dy;
			b.y1 += dy;
		}
	}
	placed[(*n_placed)++] = b;
	/* Moved away from its point: a leader line back to it. */
	if (b.y1 < y - 6 - h || b.y0 > y + 6)
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"0.8\"/>\n",
			right ? b.x0 : b.x1, b.y1 < y ? b.y1 : b.y0, x, y, color);
	fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"white\" fill-opacity=\"0.85\"/>\n",
		b.x0 - 1, b.y0, b.x1 - b.x0 + 2, b.y1 - b.y0);
	fprintf(f, "<text class=\"%s\" x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"%s\">", cls, b.x0, b.y1 - 3, color);
	esc(f, text);
	fprintf(f, "</text>\n");
}

/* Where series s crosses line l, in data x; one per sign change of
 * (series - line) along the series, interpolated in display units (the
 * point sits on the drawn polyline). */
typedef struct crossing {
	size_t s, l;
	double x;
} crossing_t;

static size_t find_crossings(const chart_t *c, const struct axis *ax, const struct axis *ay, crossing_t *out)
{
	size_t n = 0;
	for (size_t l = 0; l < c->n_lines; l++) {
		double yl = disp(ay, ay->log && c->lines[l].y <= 0 ? ay->lo : c->lines[l].y);
		for (size_t s = 0; s < c->n_series; s++) {
			const chart_point_t *p = c->series[s].pts;
			for (size_t i = 0; i + 1 < c->series[s].n; i++) {
				double ya = disp(ay, ay->log && p[i].y <= 0 ? ay->lo : p[i].y) - yl;
				double yb = disp(ay, ay->log && p[i + 1].y <= 0 ? ay->lo : p[i + 1].y) - yl;
				bool cross = (ya < 0 && yb > 0) || (ya > 0 && yb < 0) || (yb == 0 && ya != 0) ||
					     (i == 0 && ya == 0);
				if (!cross)
					continue;
				double t = ya == yb ? 0 : ya / (ya - yb);
				double xa = disp(ax, p[i].x), xb = disp(ax, p[i + 1].x), xd = xa + t * (xb - xa);
				out[n++] = (crossing_t){ s, l, ax->log ? exp(xd) : xd };
			}
		}
	}
	return n;
}

/* "U = 61.6%", "batch = 11.3". */
static void crossing_text(const chart_t *c, double x, char *buf, size_t len)
{
	snprintf(buf, len, "%s = %.3g%s", c->x_name, x, c->x_unit ? c->x_unit : "");
}

/* Writes the lines of a wrapped text at x from baseline y, dy apart;
 * returns the y after the last. */
static double text_lines(FILE *f, const char *s, double x, double y, double dy, double width, double size,
			 const char *attrs)
{
	size_t st[MAX_LINES], ln[MAX_LINES], n = wrap_px(s, width, size, st, ln);
	for (size_t i = 0; i < n; i++, y += dy) {
		fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"%g\"%s>", x, y, size, attrs);
		esc_n(f, s + st[i], ln[i]);
		fprintf(f, "</text>\n");
	}
	return y;
}

/* Legend height (px) of one entry: its label and info lines. */
static double legend_lines(const char *label, const char *const *info, size_t n_info)
{
	size_t st[MAX_LINES], ln[MAX_LINES];
	double h = (double)wrap_px(label, MR - 48, 12, st, ln) * 15;
	for (size_t i = 0; i < n_info; i++)
		if (info[i] != NULL)
			h += (double)wrap_px(info[i], MR - 48, 11, st, ln) * 13;
	return h + 6;
}

/* The legend's info lines of price line l: its value with the unit, and
 * where the (first) series meets it. buf holds both. */
static void line_info(const chart_t *c, size_t l, const crossing_t *cr, size_t n_cr, char (*buf)[160],
		      const char **info)
{
	char num[64];
	fmt_num(num, sizeof(num), c->lines[l].y);
	snprintf(buf[0], sizeof(buf[0]), "%s%s%s", num, c->y_unit ? " " : "", c->y_unit ? c->y_unit : "");
	info[0] = buf[0];
	info[1] = NULL;
	if (c->x_name == NULL || c->n_series == 0)
		return;
	size_t o = 0, k = 0;
	for (size_t i = 0; i < n_cr; i++) {
		if (cr[i].l != l || cr[i].s != 0)
			continue;
		char t[96];
		crossing_text(c, cr[i].x, t, sizeof(t));
		o += (size_t)snprintf(buf[1] + o, sizeof(buf[1]) - o, "%s%s", k++ ? ", " : "break-even at ", t);
		if (o >= sizeof(buf[1]))
			break;
	}
	if (k == 0) {
		const chart_point_t *p = &c->series[0].pts[0];
		bool above = c->series[0].n > 0 && p->y > c->lines[l].y;
		snprintf(buf[1], sizeof(buf[1]), "no break-even: cost %s it at every %s shown", above ? "above" : "below",
			 c->x_name);
	}
	info[1] = buf[1];
}

/* Grid, ticks, the axes and their labels (with their units: the
 * callers' labels) of the plot area [px0, px1] x [py1, py0]. */
static void draw_axes(FILE *f, const chart_t *c, const struct axis *ax, const struct axis *ay, double px0, double px1,
		      double py0, double py1)
{
	char buf[64];
	/* Grid and ticks. */
	fprintf(f, "<g stroke=\"#dddddd\" stroke-width=\"1\">\n");
	if (ay->log) {
		for (double v = ay->lo; v <= ay->hi * 1.0001; v *= 10) {
			double y = map(ay, v, py0, py1);
			fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", px0, y, px1, y);
		}
	} else {
		double st = nice_step(ay->hi - ay->lo);
		for (double v = ay->lo; v <= ay->hi + st * 1e-6; v += st) {
			double y = map(ay, v, py0, py1);
			fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", px0, y, px1, y);
		}
	}
	fprintf(f, "</g>\n<g text-anchor=\"end\">\n");
	if (ay->log) {
		for (double v = ay->lo; v <= ay->hi * 1.0001; v *= 10) {
			fmt_num(buf, sizeof(buf), v);
			fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n", px0 - 6, map(ay, v, py0, py1) + 4, buf);
		}
	} else {
		double st = nice_step(ay->hi - ay->lo);
		for (double v = ay->lo; v <= ay->hi + st * 1e-6; v += st) {
			fmt_num(buf, sizeof(buf), fabs(v) < st * 1e-9 ? 0 : v);
			fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n", px0 - 6, map(ay, v, py0, py1) + 4, buf);
		}
	}
	fprintf(f, "</g>\n<g text-anchor=\"middle\">\n");
	if (ax->log) {
		for (double v = pow(2, ceil(log2(ax->lo))); v <= ax->hi * 1.0001; v *= 2) {
			fmt_num(buf, sizeof(buf), v);
			fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n", map(ax, v, px0, px1), py0 + 16, buf);
		}
	} else {
		double st = nice_step(ax->hi - ax->lo);
		for (double v = ceil(ax->lo / st) * st; v <= ax->hi + st * 1e-6; v += st) {
			fmt_num(buf, sizeof(buf), fabs(v) < st * 1e-9 ? 0 : v);
			fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n", map(ax, v, px0, px1), py0 + 16, buf);
		}
	}
	fprintf(f, "</g>\n");
	/* Axes and their labels (with their units: the callers' labels). */
	fprintf(f, "<path d=\"M%.1f %.1f V%.1f H%.1f\" fill=\"none\" stroke=\"black\"/>\n", px0, py1, py0, px1);
	fprintf(f, "<text class=\"x-label\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", (px0 + px1) / 2, py0 + 42);
	esc(f, c->x_label);
	fprintf(f, "</text>\n<text class=\"y-label\" x=\"18\" y=\"%.1f\" text-anchor=\"middle\" "
		   "transform=\"rotate(-90 18 %.1f)\">", (py0 + py1) / 2, (py0 + py1) / 2);
	esc(f, c->y_label);
	fprintf(f, "%s</text>\n", ay->log ? " (log scale)" : "");

}

/* The legend from y = top: each entry wrapped to the legend's width; a
 * price line's value with its unit and its break-even under it. */
static void draw_legend(FILE *f, const chart_t *c, const char *(*info)[2], double top)
{
	size_t n_leg = c->n_series + c->n_lines;
	double ly = top;
	for (size_t s = 0; s < n_leg; s++) {
		bool line = s >= c->n_series;
		const char *label = line ? c->lines[s - c->n_series].label : c->series[s].label;
		fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"%s/>\n",
			W - MR + 12, ly, W - MR + 36, ly, colors[s % N_COLORS], line ? " stroke-dasharray=\"6 4\"" : "");
		double y = text_lines(f, label, W - MR + 42, ly + 4, 15, MR - 48, 12, " class=\"legend\"");
		for (int k = 0; line && k < 2; k++)
			if (info[s - c->n_series][k] != NULL)
				y = text_lines(f, info[s - c->n_series][k], W - MR + 42, y - 2, 13, MR - 48, 11,
					       " class=\"legend\" fill=\"#555555\"");
		ly = y + 2;
	}
}

/* The vertical lines, labelled at the top of the plot, and the break-even
 * crossings: a ring on each, x there beside it. placed: room for every
 * label. */
static void draw_marks(FILE *f, const chart_t *c, const crossing_t *cr, size_t n_cr, const struct axis *ax,
		       const struct axis *ay, struct box *placed, double px0, double px1, double py0, double py1)
{
	size_t n_placed = 0;
	for (size_t v = 0; v < c->n_vlines; v++) {
		double x = map(ax, c->vlines[v].x, px0, px1);
		fprintf(f, "<line class=\"vline\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333333\" "
			   "stroke-width=\"1.5\" stroke-dasharray=\"2 3\"/>\n", x, py1, x, py0);
		place_label(f, c->vlines[v].label, x, py1 + 20, "#333333", "vline-label", placed, &n_placed, px0, px1,
			    py0, py1);
	}
	for (size_t i = 0; i < n_cr; i++) {
		const char *col = colors[(c->n_series + cr[i].l) % N_COLORS];
		double yv = c->lines[cr[i].l].y;
		double x = map(ax, cr[i].x, px0, px1), y = map(ay, ay->log && yv <= 0 ? ay->lo : yv, py0, py1);
		char t[96];
		crossing_text(c, cr[i].x, t, sizeof(t));
		fprintf(f, "<circle class=\"break-even\" cx=\"%.1f\" cy=\"%.1f\" r=\"5.5\" fill=\"none\" stroke=\"%s\" "
			   "stroke-width=\"2\"><title>break-even: ", x, y, col);
		esc(f, t);
		fprintf(f, "</title></circle>\n");
		place_label(f, t, x, y, col, "break-even-label", placed, &n_placed, px0, px1, py0, py1);
	}
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
	for (size_t v = 0; v < c->n_vlines; v++) {
		if (!isfinite(c->vlines[v].x) || (c->log2_x && !(c->vlines[v].x > 0))) {
			snprintf(err, errlen, "chart: vertical line \"%s\" is not drawable", c->vlines[v].label);
			return -EINVAL;
		}
		xmin = fmin(xmin, c->vlines[v].x);
		xmax = fmax(xmax, c->vlines[v].x);
	}
	if (xmax == xmin) {
		xmin = c->log2_x ? xmin / 2 : xmin - 1;
		xmax = c->log2_x ? xmax * 2 : xmax + 1;
	}
	struct axis ax = { c->log2_x, xmin, xmax }, ay;
	if (!ax.log) {	/* on the tick grid, so no mark sits on the y axis itself */
		double st = nice_step(xmax - xmin);
		ax.lo = floor(xmin / st) * st;
		ax.hi = ceil(xmax / st) * st;
	}
	if (ymin > 0 && ymax / ymin > 20) {
		ay = (struct axis){ true, pow(10, floor(log10(ymin))), pow(10, ceil(log10(ymax))) };
	} else {
		double lo = fmin(0, ymin), hi = ymax > lo ? ymax : lo + 1;
		double st = nice_step(hi - lo);
		ay = (struct axis){ false, floor(lo / st) * st, ceil(hi / st) * st };
		if (ay.hi == ay.lo)
			ay.hi = ay.lo + st;
	}

	/* Crossings, the legend's entries and the image's height. */
	size_t cap = 1, n_cr = 0, n_leg = c->n_series + c->n_lines;
	for (size_t s = 0; s < c->n_series; s++)
		cap += c->series[s].n * c->n_lines;
	crossing_t *cr = malloc(cap * sizeof(*cr));
	struct box *placed = malloc((cap + c->n_vlines + 1) * sizeof(*placed));
	char (*info_buf)[2][160] = calloc(c->n_lines + 1, sizeof(*info_buf));
	const char *(*info)[2] = calloc(c->n_lines + 1, sizeof(*info));
	char *out = NULL, buf[64];
	size_t len = 0;
	FILE *f = NULL;
	int r = -ENOMEM;
	if (cr == NULL || placed == NULL || info_buf == NULL || info == NULL)
		goto fail;
	if (c->x_name != NULL)
		n_cr = find_crossings(c, &ax, &ay, cr);
	for (size_t l = 0; l < c->n_lines; l++)
		line_info(c, l, cr, n_cr, info_buf[l], info[l]);
	size_t sst[MAX_LINES], sln[MAX_LINES];
	size_t n_sub = c->subtitle ? wrap_px(c->subtitle, W - ML - 12, 11, sst, sln) : 0;
	const double mt = 34 + 14 * (double)n_sub;
	double legend_h = 8;
	for (size_t s = 0; s < n_leg; s++)
		legend_h += s < c->n_series ? legend_lines(c->series[s].label, NULL, 0) :
					      legend_lines(c->lines[s - c->n_series].label, info[s - c->n_series], 2);
	int h = (int)ceil(mt + fmax(PH, legend_h) + MB);
	const double px0 = ML, px1 = W - MR, py1 = mt, py0 = mt + PH;

	if ((f = open_memstream(&out, &len)) == NULL)
		goto fail;
	fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%d\" height=\"%d\" "
		   "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n", W, h, W, h);
	fprintf(f, "<title>");
	esc(f, c->title);
	fprintf(f, "</title>\n<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"white\"/>\n", W, h);
	fprintf(f, "<text x=\"%d\" y=\"20\" font-size=\"15\" font-weight=\"bold\">", ML);
	esc(f, c->title);
	fprintf(f, "</text>\n");
	for (size_t i = 0; i < n_sub; i++) {
		fprintf(f, "<text class=\"subtitle\" x=\"%d\" y=\"%.1f\" font-size=\"11\" fill=\"#555555\">", ML,
			36 + 14 * (double)i);
		esc_n(f, c->subtitle + sst[i], sln[i]);
		fprintf(f, "</text>\n");
	}

	draw_axes(f, c, &ax, &ay, px0, px1, py0, py1);

	/* Closed-API prices: dashed lines, labelled in the legend. */
	for (size_t l = 0; l < c->n_lines; l++) {
		const char *col = colors[(c->n_series + l) % N_COLORS];
		double y = map(&ay, ay.log && c->lines[l].y <= 0 ? ay.lo : c->lines[l].y, py0, py1);
		fprintf(f, "<line class=\"price\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
			   "stroke-width=\"1.5\" stroke-dasharray=\"6 4\"/>\n", px0, y, px1, y, col);
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
	draw_marks(f, c, cr, n_cr, &ax, &ay, placed, px0, px1, py0, py1);
	draw_legend(f, c, info, mt + 8);
	fprintf(f, "</svg>\n");
	r = 0;
fail:
	if (f != NULL && fclose(f) != 0)
		r = -ENOMEM;
	free(cr);
	free(placed);
	free(info_buf);
	free(info);
	if (r < 0) {
		free(out);
		return r;
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
	char sub[1024], ylab[64], slab[200], yunit[48];
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
	snprintf(sub, sizeof(sub), "%s on %s at %.3f %s/h, utilization %.0f%%; prices %s", b->model[0] ? b->model : "model",
		 hw->name, (double)rate / 1e6, currency, u * 100, pricetab_name(prices));
	snprintf(ylab, sizeof(ylab), "%s per 1M output tokens", currency);
	snprintf(yunit, sizeof(yunit), "%s/1M output tokens", currency);
	snprintf(slab, sizeof(slab), "%.40s (%.40s)", hw->name, thru_basis_name((thru_source_t)b->source));
	chart_series_t s = { slab, pts, b->n_runs };
	chart_t c = { "Cost per 1M output tokens vs batch size", sub, "decode batch size (sequences per step)", ylab,
		      true, &s, 1, lines, n_refs, NULL, 0, "batch", "", yunit };
	r = chart_svg(&c, ret_svg, err, errlen);
fail:
	free(pts);
	free(lines);
	free(labels);
	return r;
}

int chart_cost_vs_utilization(const thru_t *t, const hwprof_t *hw, double in_per_call, double out_per_call,
			      double measured_u, const pricetab_t *prices, const char *const *refs, size_t n_refs,
			      bool via_batch, const char *currency, char **ret_svg, char *err, size_t errlen)
{
	enum { NP = 20 };
	chart_point_t pts[NP + 1];	/* 5% .. 100%, and the measured utilization */
	size_t np = 0;
	double measured_cost = 0;
	chart_hline_t *lines = calloc(n_refs ? n_refs : 1, sizeof(*lines));
	char (*labels)[160] = calloc(n_refs ? n_refs : 1, sizeof(*labels));
	char sub[1200], ylab[64], yunit[48], vlab[128];
	int64_t rb, ri;
	int r = -ENOMEM;
	if (lines == NULL || labels == NULL)
		goto fail;
	if ((r = pricetab_convert(prices, hw->rate_busy_micros_per_hour, hw->currency, currency, &rb, err, errlen)) < 0 ||
	    (r = pricetab_convert(prices, hw->rate_idle_micros_per_hour, hw->currency, currency, &ri, err, errlen)) < 0)
		goto fail;
	if (!(measured_u >= 0 && measured_u <= 1)) {
		snprintf(err, errlen, "chart: measured utilization %g: expected 0 (none) or 0 < U <= 1", measured_u);
		r = -EINVAL;
		goto fail;
	}
	/* The grid, with the measured utilization in its place: the curve
	 * reaches the batch's own point even below 5%. */
	double us[NP + 1];
	size_t nu = 0;
	for (int i = 1; i <= NP; i++) {
		double g = i * 0.05;
		if (measured_u > g - 0.05 + 1e-9 && measured_u < g - 1e-9)	/* between two grid points */
			us[nu++] = measured_u;
		us[nu++] = g;
	}
	for (size_t i = 0; i < nu; i++) {
		double u = us[i], tin, tout;
		if ((r = thru_tokens_per_hour(t, in_per_call, out_per_call, u, &tin, &tout)) < 0) {
			snprintf(err, errlen, "chart: throughput or call mix is not positive");
			goto fail;
		}
		/* The node is paid for the whole hour: busy u of it, idle the rest. */
		double cost_h = u * (double)rb + (1 - u) * (double)ri;
		pts[np++] = (chart_point_t){ u * 100, cost_h / (tin + tout) };	/* micros per token = units per 1M */
		if (fabs(u - measured_u) <= 1e-9)
			measured_cost = pts[np - 1].y;	/* on the grid or inserted */
	}
	if ((r = ref_lines(prices, refs, n_refs, via_batch, currency, in_per_call, out_per_call, lines, labels, err,
			   errlen)) < 0)
		goto fail;
	snprintf(sub, sizeof(sub), "%s at %.3f %s/h busy, %.3f %s/h idle; %.0f in / %.0f out tokens per call; %s; prices %s",
		 hw->name, (double)rb / 1e6, currency, (double)ri / 1e6, currency, in_per_call, out_per_call, t->why,
		 pricetab_name(prices));
	snprintf(ylab, sizeof(ylab), "%s per 1M tokens (in + out)", currency);
	char slab[200];
	snprintf(slab, sizeof(slab), "%.40s (%.40s)", hw->name, thru_basis_name(t->source));
	snprintf(yunit, sizeof(yunit), "%s/1M tokens", currency);
	char cb[32];
	fmt_num(cb, sizeof(cb), measured_cost);
	snprintf(vlab, sizeof(vlab), "measured U = %.3g%%: %s %s", measured_u * 100, cb, yunit);
	chart_vline_t v = { vlab, measured_u * 100 };
	chart_series_t s = { slab, pts, np };
	chart_t c = { "Cost per 1M tokens vs utilization", sub, "utilization U (% of the node's time busy)", ylab, false,
		      &s, 1, lines, n_refs, &v, measured_u > 0 ? 1 : 0, "U", "%", yunit };
	r = chart_svg(&c, ret_svg, err, errlen);
fail:
	free(lines);
	free(labels);
	return r;
}
