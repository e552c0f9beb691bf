/* progress: see progress.h. */
#include "progress.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void progress_update(progress_t *p, double t)
{
	int64_t done = p->completed + p->failed;
	p->tok_per_s = -1;
	p->eta_s = -1;
	if (!p->started) {
		if (p->status == NULL || strcmp(p->status, "in_progress") != 0)
			return;
		p->started = true;
		p->t0 = t;
		p->done0 = done;
		p->tokens0 = p->tokens;
		return;
	}
	double dt = t - p->t0;
	if (dt <= 0)
		return;
	if (p->tokens >= 0 && p->tokens0 >= 0)
		p->tok_per_s = (double)(p->tokens - p->tokens0) / dt;
	double rate = (double)(done - p->done0) / dt;
	int64_t left = p->total - done;
	if (left <= 0)
		p->eta_s = 0;
	else if (rate > 0)
		p->eta_s = (double)left / rate;
}

char *progress_duration(double s, char *buf, size_t len)
{
	if (s < 0 || !isfinite(s)) {
		snprintf(buf, len, "?");
		return buf;
	}
	long long v = (long long)(s + 0.5);
	if (v >= 3600)
		snprintf(buf, len, "%lld:%02lld:%02lld", v / 3600, (v / 60) % 60, v % 60);
	else
		snprintf(buf, len, "%lld:%02lld", v / 60, v % 60);
	return buf;
}

/* Appends to buf at *off, never past len. */
__attribute__((format(printf, 4, 5)))
static void add(char *buf, size_t len, size_t *off, const char *fmt, ...)
{
	if (*off + 1 >= len)
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf + *off, len - *off, fmt, ap);
	va_end(ap);
	if (n > 0)
		*off += (size_t)n < len - *off ? (size_t)n : len - *off - 1;
}

static void money(char *buf, size_t len, int64_t micros)
{
	snprintf(buf, len, "%s%lld.%06lld", micros < 0 ? "-" : "",
		 (long long)(micros < 0 ? -micros : micros) / 1000000,
		 (long long)(micros < 0 ? -micros : micros) % 1000000);
}

size_t progress_format(const progress_t *p, bool bar, int width, char *buf, size_t len)
{
	size_t off = 0;
	char eta[32], cost[48] = "";
	int64_t done = p->completed + p->failed;
	if (p->cost_micros >= 0) {
		char m[40];
		money(m, sizeof(m), p->cost_micros);
		snprintf(cost, sizeof(cost), "%s%s%s", m, p->currency ? " " : "", p->currency ? p->currency : "");
	}
	buf[0] = '\0';
	if (!bar) {
		add(buf, len, &off, "%s %s: %lld/%lld done, %lld failed", p->id, p->status,
		    (long long)p->completed, (long long)p->total, (long long)p->failed);
		if (p->tok_per_s >= 0)
			add(buf, len, &off, ", %.0f tok/s", p->tok_per_s);
		if (p->eta_s >= 0)
			add(buf, len, &off, ", ETA %.0fs", p->eta_s);
		if (cost[0])
			add(buf, len, &off, ", cost %s", cost);
		return off;
	}
	/* The tail first, so the bar takes what the terminal has left. */
	char tail[256];
	size_t toff = 0;
	int pct = p->total > 0 ? (int)(100 * done / p->total) : 0;
	add(tail, sizeof(tail), &toff, " %3d%%  %lld/%lld done", pct, (long long)p->completed,
	    (long long)p->total);
	if (p->failed > 0)
		add(tail, sizeof(tail), &toff, "  %lld failed", (long long)p->failed);
	if (p->tok_per_s >= 0)
		add(tail, sizeof(tail), &toff, "  %.0f tok/s", p->tok_per_s);
	if (strcmp(p->status, "in_progress") == 0 || strcmp(p->status, "validating") == 0)
		add(tail, sizeof(tail), &toff, "  ETA %s", progress_duration(p->eta_s, eta, sizeof(eta)));
	else
		add(tail, sizeof(tail), &toff, "  %s", p->status);
	if (cost[0])
		add(tail, sizeof(tail), &toff, "  cost %s", cost);
	if (width < 40)
		width = 40;
	/* The id is not on the bar line (`wait` prints it once above): the
	 * bar gets the room. A fixed budget for the tail (not its current
	 * length) keeps the bar's size as rates and the cost appear. */
	int cells = width - 3 - 56;
	if (cells > 40)
		cells = 40;
	if (cells < 10)
		cells = 10;
	int fill = p->total > 0 ? (int)((int64_t)cells * done / p->total) : 0;
	if (fill > cells)
		fill = cells;
	add(buf, len, &off, "[");
	for (int i = 0; i < cells; i++)
		add(buf, len, &off, "%c", i < fill ? '#' : '.');
	add(buf, len, &off, "]%s", tail);
	return off;
}
