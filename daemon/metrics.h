/* metrics: margind's Prometheus metrics, rendered in the text exposition
 * format 0.0.4 (`Content-Type: text/plain; version=0.0.4`).
 *
 * A metrics_t holds families (counter, gauge, histogram), each with a fixed
 * list of label names and children keyed by label values. margind's own
 * families are registered by metrics_new() from a table (names in base
 * units with the margin_ prefix, `_total` on counters, no colons; see
 * docs/api.md): the core thread feeds them from committed Results and the
 * scheduler's figures, the HTTP threads count responses, and GET /metrics
 * renders them. Label values are bounded by design: model names, worker
 * names, statuses and HTTP codes, never batch or request ids.
 *
 * Every function is thread-safe (one mutex; updates are a few compares and
 * adds, rendering copies text). */
#ifndef METRICS_H
#define METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/mg_wire.h"

#define METRICS_MAX_LABELS 4
#define METRICS_MAX_BUCKETS 24

enum metrics_type {
	METRICS_COUNTER,
	METRICS_GAUGE,
	METRICS_HISTOGRAM,
};

typedef struct metrics_def {
	const char *name;		/* [a-zA-Z_][a-zA-Z0-9_]* (no colons) */
	const char *help;
	enum metrics_type type;
	const char *labels[METRICS_MAX_LABELS + 1];	/* NULL-terminated label names */
	const double *buckets;		/* histograms: ascending upper bounds, +Inf implied */
	size_t n_buckets;
} metrics_def_t;

typedef struct metrics metrics_t;

/* A set with margind's families registered (table in metrics.c). NULL on
 * out of memory. */
metrics_t *metrics_new(void);
/* An empty set (tests, other programs). */
metrics_t *metrics_new_empty(void);
void metrics_destroy(metrics_t **m);

/* Adds a family (the def and its strings must outlive m: static tables).
 * -EINVAL for a bad name, label name, bucket list or too many labels;
 * -EEXIST for a name already registered; -ENOMEM. */
int metrics_register(metrics_t *m, const metrics_def_t *def);

/* Updates. label_values has one string per label name of the family (NULL
 * when it has none). -ENOENT: no such family; -EINVAL: wrong type, or a
 * negative counter increment; -ENOMEM. */
int metrics_counter_add(metrics_t *m, const char *name, const char *const *label_values, double v);
/* A counter whose total is kept elsewhere (the scheduler's): raised to
 * total, never lowered. */
int metrics_counter_raise(metrics_t *m, const char *name, const char *const *label_values, double total);
int metrics_gauge_set(metrics_t *m, const char *name, const char *const *label_values, double v);
/* Observes v count times (count > 0): a histogram of per-step times fed
 * from a shard's totals adds the mean step time once per step. */
int metrics_histogram_observe(metrics_t *m, const char *name, const char *const *label_values,
			      double v, uint64_t count);
/* Drops every child of a family: gauges recomputed at each scrape
 * (batches by status, workers) forget label values that went away. */
int metrics_reset(metrics_t *m, const char *name);

/* Renders the text format: families in registration order, each with
 * # HELP and # TYPE, children sorted by label values, histograms as
 * cumulative _bucket{le=...} up to +Inf, then _sum and _count. Label values
 * escape \\, \" and \n; HELP escapes \\ and \n. *ret_text is malloc'd,
 * NUL-terminated, owned by the caller. -ENOMEM. */
int metrics_format(metrics_t *m, char **ret_text, size_t *ret_len);

/* margind's feeds. */

/* One committed Result: requests by status (completed, failed,
 * cancelled), prompt and generation tokens, time to first token and queue
 * time per request (model_name), and the worker's engine step time and
 * batch size (worker). Core thread. */
int metrics_on_result(metrics_t *m, const char *model, const char *worker,
		      const Margin__V1__Result *res);
/* Requests answered without a worker (poison requests, cancels):
 * status "failed" or "cancelled". */
int metrics_on_requests(metrics_t *m, const char *model, const char *status, uint64_t n);
/* One HTTP response. */
int metrics_on_http(metrics_t *m, const char *method, unsigned code);

/* The scheduler's gauges, set at each scrape. */
typedef struct metrics_sched {
	uint64_t workers;		/* connected */
	uint64_t worker_slots;		/* engine slots they announced */
	uint64_t requests_waiting;	/* queued, not yet at a worker */
	uint64_t requests_running;	/* in shards at workers */
	uint64_t shards_in_flight;
	uint64_t batches_validating, batches_in_progress, batches_cancelling;
	uint64_t results_ignored;	/* counter: duplicate or stale Results dropped */
	bool storage_full;		/* new work refused for want of disk */
} metrics_sched_t;
int metrics_set_sched(metrics_t *m, const metrics_sched_t *s);

#endif
