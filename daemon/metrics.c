/* metrics: see metrics.h. */
#include "metrics.h"

#include <errno.h>
#include <math.h>
#include <threads.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef MARGIN_VERSION
#define MARGIN_VERSION "unknown"
#endif

/* CPU inference is slow: buckets reach well past vLLM's GPU-sized ones. */
static const double ttft_buckets[] = { 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 600 };
static const double queue_buckets[] = { 0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 600, 1800, 7200 };
static const double step_buckets[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
				       1, 2.5, 5, 10 };
static const double batch_buckets[] = { 1, 2, 4, 8, 16, 32, 64, 128, 256 };

#define NB(a) a, sizeof(a) / sizeof(a[0])

static const metrics_def_t margin_defs[] = {
	{ "margin_build_info", "margind build; the value is always 1", METRICS_GAUGE,
	  { "version", NULL }, NULL, 0 },
	{ "margin_http_requests_total", "HTTP responses sent, by method and status code",
	  METRICS_COUNTER, { "method", "code", NULL }, NULL, 0 },
	{ "margin_requests_total",
	  "Requests by model and outcome: completed, failed, cancelled (answered by workers), invalid (refused when the batch was created)",
	  METRICS_COUNTER, { "model_name", "status", NULL }, NULL, 0 },
	{ "margin_prompt_tokens_total", "Prompt tokens of answered requests", METRICS_COUNTER,
	  { "model_name", NULL }, NULL, 0 },
	{ "margin_generation_tokens_total", "Generated tokens of answered requests", METRICS_COUNTER,
	  { "model_name", NULL }, NULL, 0 },
	{ "margin_embeddings_total",
	  "Embedding vectors returned, one per input of an answered /v1/embeddings request; rate() gives "
	  "embeddings per second", METRICS_COUNTER, { "model_name", NULL }, NULL, 0 },
	{ "margin_embedding_tokens_total",
	  "Input tokens of answered /v1/embeddings requests (also counted in margin_prompt_tokens_total); "
	  "rate() gives embedded tokens per second", METRICS_COUNTER, { "model_name", NULL }, NULL, 0 },
	{ "margin_requests_waiting", "Requests of active batches not yet sent to a worker (queue depth)",
	  METRICS_GAUGE, { NULL }, NULL, 0 },
	{ "margin_requests_running", "Requests in shards at workers", METRICS_GAUGE, { NULL }, NULL, 0 },
	{ "margin_shards_in_flight", "Shards sent to workers and not yet answered", METRICS_GAUGE,
	  { NULL }, NULL, 0 },
	{ "margin_workers", "Workers connected", METRICS_GAUGE, { NULL }, NULL, 0 },
	{ "margin_worker_slots", "Engine slots of the connected workers", METRICS_GAUGE, { NULL }, NULL, 0 },
	{ "margin_batches", "Active batches by status", METRICS_GAUGE, { "status", NULL }, NULL, 0 },
	{ "margin_time_to_first_token_seconds",
	  "Time from a request's arrival at its worker to its first generated token", METRICS_HISTOGRAM,
	  { "model_name", NULL }, NB(ttft_buckets) },
	{ "margin_request_queue_time_seconds",
	  "Time a request waited at its worker before its first engine step", METRICS_HISTOGRAM,
	  { "model_name", NULL }, NB(queue_buckets) },
	{ "margin_worker_step_seconds",
	  "Engine step wall time per worker (each shard adds its mean step time once per step)",
	  METRICS_HISTOGRAM, { "worker", NULL }, NB(step_buckets) },
	{ "margin_worker_batch_size", "Largest number of sequences in one engine step, per shard",
	  METRICS_HISTOGRAM, { "worker", NULL }, NB(batch_buckets) },
	{ "margin_worker_busy_seconds_total", "Engine time spent on answered requests, per worker",
	  METRICS_COUNTER, { "worker", NULL }, NULL, 0 },
	{ "margin_shards_committed_total", "Shard results committed to the journal, per worker",
	  METRICS_COUNTER, { "worker", NULL }, NULL, 0 },
	{ "margin_results_ignored_total",
	  "Results acknowledged and dropped: duplicates, and late Results of a shard given to another worker",
	  METRICS_COUNTER, { NULL }, NULL, 0 },
	{ "margin_storage_full", "1 while the state directory's free space is below [journal] min_free (new work refused)",
	  METRICS_GAUGE, { NULL }, NULL, 0 },
	/* The metering service (api_cost.c sets them at each scrape from the
	 * ledger rows booked since margind started): operational estimates,
	 * the ledger is the auditable record. Money in currency units. */
	{ "margin_cost_per_token",
	  "Self-hosted cost per prompt+completion token (x 1e6 = per 1M tokens) of the calls booked since margind "
	  "started, in units of the currency label; basis marginal = engine time, loaded = with idle time",
	  METRICS_GAUGE, { "model_name", "basis", "currency", NULL }, NULL, 0 },
	{ "margin_cost_micros_total",
	  "Self-hosted cost of the calls booked since margind started, in micros (1e-6) of the currency label, "
	  "each call in the currency its hardware profile priced it in; kind marginal = engine time, loaded = "
	  "with its share of idle time; rate() gives the cost per second",
	  METRICS_COUNTER, { "kind", "currency", NULL }, NULL, 0 },
	{ "margin_api_equivalent_micros_total",
	  "What the calls booked since margind started cost on each reference closed API (the equivalents "
	  "booked with them), in micros (1e-6) of the currency label",
	  METRICS_COUNTER, { "reference", "currency", NULL }, NULL, 0 },
	{ "margin_gross_margin_ratio",
	  "Gross margin (price - loaded cost) / price of the calls booked since margind started, at the "
	  "[meter] sale_price", METRICS_GAUGE, { "model_name", NULL }, NULL, 0 },
};

typedef struct child {
	char **values;			/* owned: one per label */
	double value;			/* counter, gauge; histogram: the sum */
	uint64_t count;			/* histogram */
	uint64_t *buckets;		/* owned: histogram, non-cumulative per bucket */
	struct child *next;		/* sorted by label values */
} child_t;

typedef struct family {
	const metrics_def_t *def;	/* borrowed: static table */
	size_t n_labels;
	child_t *children;		/* owned */
} family_t;

struct metrics {
	mtx_t lock;
	family_t *fam;			/* owned: n_fam */
	size_t n_fam, cap;
};

static bool valid_name(const char *s, bool label)
{
	if (s == NULL || *s == '\0')
		return false;
	if (label && s[0] == '_' && s[1] == '_')
		return false;	/* reserved for Prometheus */
	for (const char *p = s; *p; p++) {
		bool alpha = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_';
		if (!alpha && !(p > s && *p >= '0' && *p <= '9'))
			return false;
	}
	return true;
}

metrics_t *metrics_new_empty(void)
{
	metrics_t *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return NULL;
	if (mtx_init(&m->lock, mtx_plain) != thrd_success) {
		free(m);
		return NULL;
	}
	return m;
}

metrics_t *metrics_new(void)
{
	metrics_t *m = metrics_new_empty();
	if (m == NULL)
		return NULL;
	for (size_t i = 0; i < sizeof(margin_defs) / sizeof(margin_defs[0]); i++)
		if (metrics_register(m, &margin_defs[i]) < 0)
			goto fail;
	const char *v[] = { MARGIN_VERSION };
	if (metrics_gauge_set(m, "margin_build_info", v, 1) < 0)
		goto fail;
	return m;
fail:
	metrics_destroy(&m);
	return NULL;
}

static void child_free(child_t *c, size_t n_labels)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < n_labels; i++)
		free(c->values[i]);
	free(c->values);
	free(c->buckets);
	free(c);
}

static void family_clear(family_t *f)
{
	child_t *c = f->children;
	while (c != NULL) {
		child_t *next = c->next;
		child_free(c, f->n_labels);
		c = next;
	}
	f->children = NULL;
}

void metrics_destroy(metrics_t **pm)
{
	if (pm == NULL || *pm == NULL)
		return;
	metrics_t *m = *pm;
	for (size_t i = 0; i < m->n_fam; i++)
		family_clear(&m->fam[i]);
	free(m->fam);
	mtx_destroy(&m->lock);
	free(m);
	*pm = NULL;
}

int metrics_register(metrics_t *m, const metrics_def_t *def)
{
	if (!valid_name(def->name, false) || def->help == NULL)
		return -EINVAL;
	size_t nl = 0;
	while (nl <= METRICS_MAX_LABELS && def->labels[nl] != NULL) {
		if (!valid_name(def->labels[nl], true) ||
		    (def->type == METRICS_HISTOGRAM && strcmp(def->labels[nl], "le") == 0))
			return -EINVAL;
		nl++;
	}
	if (nl > METRICS_MAX_LABELS)
		return -EINVAL;
	if (def->type == METRICS_HISTOGRAM) {
		if (def->n_buckets == 0 || def->n_buckets > METRICS_MAX_BUCKETS || def->buckets == NULL)
			return -EINVAL;
		for (size_t i = 0; i < def->n_buckets; i++)
			if (!isfinite(def->buckets[i]) || (i > 0 && def->buckets[i] <= def->buckets[i - 1]))
				return -EINVAL;
	}
	mtx_lock(&m->lock);
	int r = 0;
	for (size_t i = 0; i < m->n_fam; i++)
		if (strcmp(m->fam[i].def->name, def->name) == 0) {
			r = -EEXIST;
			goto out;
		}
	if (m->n_fam == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 16;
		family_t *nf = realloc(m->fam, cap * sizeof(*nf));
		if (nf == NULL) {
			r = -ENOMEM;
			goto out;
		}
		m->fam = nf;
		m->cap = cap;
	}
	m->fam[m->n_fam++] = (family_t){ def, nl, NULL };
out:
	mtx_unlock(&m->lock);
	return r;
}

static family_t *find_family(metrics_t *m, const char *name)
{
	for (size_t i = 0; i < m->n_fam; i++)
		if (strcmp(m->fam[i].def->name, name) == 0)
			return &m->fam[i];
	return NULL;
}

static int cmp_values(const family_t *f, const char *const *a, const char *const *b)
{
	for (size_t i = 0; i < f->n_labels; i++) {
		int c = strcmp(a[i], b[i]);
		if (c != 0)
			return c;
	}
	return 0;
}

/* The child for label values lv, created in sorted position when absent.
 * NULL on out of memory. Lock held. */
static child_t *get_child(family_t *f, const char *const *lv)
{
	child_t **pp = &f->children;
	const char *none[1] = { "" };
	if (f->n_labels > 0 && lv == NULL)
		return NULL;
	const char *const *vals = f->n_labels ? lv : none;
	for (; *pp != NULL; pp = &(*pp)->next) {
		int c = cmp_values(f, (const char *const *)(*pp)->values, vals);
		if (c == 0)
			return *pp;
		if (c > 0)
			break;
	}
	child_t *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->values = calloc(f->n_labels + 1, sizeof(char *));
	if (c->values == NULL)
		goto fail;
	for (size_t i = 0; i < f->n_labels; i++)
		if ((c->values[i] = strdup(lv[i] ? lv[i] : "")) == NULL)
			goto fail;
	if (f->def->type == METRICS_HISTOGRAM &&
	    (c->buckets = calloc(f->def->n_buckets + 1, sizeof(uint64_t))) == NULL)
		goto fail;
	c->next = *pp;
	*pp = c;
	return c;
fail:
	child_free(c, f->n_labels);
	return NULL;
}

static int update(metrics_t *m, const char *name, enum metrics_type type, const char *const *lv,
		  double v, uint64_t count)
{
	if (type == METRICS_COUNTER && !(v >= 0))
		return -EINVAL;
	if (type == METRICS_HISTOGRAM && (count == 0 || isnan(v)))
		return -EINVAL;
	mtx_lock(&m->lock);
	int r = 0;
	family_t *f = find_family(m, name);
	if (f == NULL) {
		r = -ENOENT;
		goto out;
	}
	if (f->def->type != type || (f->n_labels > 0 && lv == NULL)) {
		r = -EINVAL;
		goto out;
	}
	for (size_t i = 0; i < f->n_labels; i++)
		if (lv[i] == NULL) {
			r = -EINVAL;
			goto out;
		}
	child_t *c = get_child(f, lv);
	if (c == NULL) {
		r = -ENOMEM;
		goto out;
	}
	switch (type) {
	case METRICS_COUNTER:
		if (count == 0)
			c->value += v;
		else if (v > c->value)
			c->value = v;	/* metrics_counter_raise: a total kept elsewhere */
		break;
	case METRICS_GAUGE:
		c->value = v;
		break;
	case METRICS_HISTOGRAM: {
		size_t b = 0;
		while (b < f->def->n_buckets && v > f->def->buckets[b])
			b++;
		c->buckets[b] += count;	/* b == n_buckets: only +Inf */
		c->count += count;
		c->value += v * (double)count;
		break;
	}
	}
out:
	mtx_unlock(&m->lock);
	return r;
}

int metrics_counter_add(metrics_t *m, const char *name, const char *const *lv, double v)
{
	return update(m, name, METRICS_COUNTER, lv, v, 0);
}

int metrics_counter_raise(metrics_t *m, const char *name, const char *const *lv, double total)
{
	return update(m, name, METRICS_COUNTER, lv, total, 1);
}

int metrics_gauge_set(metrics_t *m, const char *name, const char *const *lv, double v)
{
	return update(m, name, METRICS_GAUGE, lv, v, 0);
}

int metrics_histogram_observe(metrics_t *m, const char *name, const char *const *lv, double v,
			      uint64_t count)
{
	return update(m, name, METRICS_HISTOGRAM, lv, v, count);
}

int metrics_reset(metrics_t *m, const char *name)
{
	mtx_lock(&m->lock);
	family_t *f = find_family(m, name);
	if (f != NULL)
		family_clear(f);
	mtx_unlock(&m->lock);
	return f ? 0 : -ENOENT;
}

/* --- text format ------------------------------------------------------ */

typedef struct buf {
	char *p;
	size_t len, cap;
	bool oom;
} buf_t;

static void put(buf_t *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (b->len + n + 1 > cap)
			cap *= 2;
		char *np = realloc(b->p, cap);
		if (np == NULL) {
			b->oom = true;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void puts_(buf_t *b, const char *s)
{
	put(b, s, strlen(s));
}

__attribute__((format(printf, 2, 3)))
static void putf(buf_t *b, const char *fmt, ...)
{
	char tmp[128];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n > 0)
		put(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* label values escape backslash, double quote and newline; HELP text
 * escapes backslash and newline only. */
static void put_escaped(buf_t *b, const char *s, bool quote)
{
	for (; *s; s++) {
		if (*s == '\\')
			puts_(b, "\\\\");
		else if (*s == '\n')
			puts_(b, "\\n");
		else if (quote && *s == '"')
			puts_(b, "\\\"");
		else
			put(b, s, 1);
	}
}

/* Shortest text that reads back as the same double; integers without an
 * exponent up to 2^53; the special values as Prometheus spells them. */
static void put_number(buf_t *b, double v)
{
	if (isnan(v)) {
		puts_(b, "NaN");
		return;
	}
	if (isinf(v)) {
		puts_(b, v > 0 ? "+Inf" : "-Inf");
		return;
	}
	if (v == floor(v) && fabs(v) < 9007199254740992.0) {
		putf(b, "%.0f", v);
		return;
	}
	char tmp[40];
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
		if (strtod(tmp, NULL) == v)
			break;
	}
	puts_(b, tmp);
}

static void put_labels(buf_t *b, const family_t *f, const child_t *c, const char *le)
{
	if (f->n_labels == 0 && le == NULL)
		return;
	puts_(b, "{");
	for (size_t i = 0; i < f->n_labels; i++) {
		if (i > 0)
			puts_(b, ",");
		puts_(b, f->def->labels[i]);
		puts_(b, "=\"");
		put_escaped(b, c->values[i], true);
		puts_(b, "\"");
	}
	if (le != NULL) {
		if (f->n_labels > 0)
			puts_(b, ",");
		puts_(b, "le=\"");
		puts_(b, le);
		puts_(b, "\"");
	}
	puts_(b, "}");
}

static const char *type_name(enum metrics_type t)
{
	return t == METRICS_COUNTER ? "counter" : t == METRICS_GAUGE ? "gauge" : "histogram";
}

static void put_family(buf_t *b, const family_t *f)
{
	const metrics_def_t *d = f->def;
	puts_(b, "# HELP ");
	puts_(b, d->name);
	puts_(b, " ");
	put_escaped(b, d->help, false);
	puts_(b, "\n# TYPE ");
	puts_(b, d->name);
	puts_(b, " ");
	puts_(b, type_name(d->type));
	puts_(b, "\n");
	for (const child_t *c = f->children; c != NULL; c = c->next) {
		if (d->type != METRICS_HISTOGRAM) {
			puts_(b, d->name);
			put_labels(b, f, c, NULL);
			puts_(b, " ");
			put_number(b, c->value);
			puts_(b, "\n");
			continue;
		}
		uint64_t cum = 0;
		for (size_t i = 0; i <= d->n_buckets; i++) {
			char le[40];
			buf_t lb = { 0 };
			if (i < d->n_buckets) {
				put_number(&lb, d->buckets[i]);
				snprintf(le, sizeof(le), "%s", lb.p ? lb.p : "0");
			} else {
				snprintf(le, sizeof(le), "+Inf");
			}
			if (lb.oom)
				b->oom = true;
			free(lb.p);
			cum += c->buckets[i];
			puts_(b, d->name);
			puts_(b, "_bucket");
			put_labels(b, f, c, le);
			putf(b, " %llu\n", (unsigned long long)cum);
		}
		puts_(b, d->name);
		puts_(b, "_sum");
		put_labels(b, f, c, NULL);
		puts_(b, " ");
		put_number(b, c->value);
		puts_(b, "\n");
		puts_(b, d->name);
		puts_(b, "_count");
		put_labels(b, f, c, NULL);
		putf(b, " %llu\n", (unsigned long long)c->count);
	}
}

int metrics_format(metrics_t *m, char **ret_text, size_t *ret_len)
{
	buf_t b = { 0 };
	mtx_lock(&m->lock);
	for (size_t i = 0; i < m->n_fam; i++)
		put_family(&b, &m->fam[i]);
	mtx_unlock(&m->lock);
	put(&b, "", 0);		/* an empty set still gets a buffer */
	if (b.oom) {
		free(b.p);
		return -ENOMEM;
	}
	*ret_text = b.p;
	if (ret_len != NULL)
		*ret_len = b.len;
	return 0;
}

/* --- margind's feeds --------------------------------------------------- */

int metrics_on_requests(metrics_t *m, const char *model, const char *status, uint64_t n)
{
	const char *lv[] = { model, status };
	return n ? metrics_counter_add(m, "margin_requests_total", lv, (double)n) : 0;
}

int metrics_on_result(metrics_t *m, const char *model, const char *worker,
		      const Margin__V1__Result *res)
{
	uint64_t done = 0, failed = 0, cancelled = 0, ptok = 0, gtok = 0, emb = 0, etok = 0;
	int r = 0;
	const char *ml[] = { model };
	const char *wl[] = { worker };
	for (size_t i = 0; i < res->n_outputs; i++) {
		const Margin__V1__Output *o = res->outputs[i];
		bool err = o->error != NULL && o->error->code != NULL && o->error->code[0] != '\0';
		if (err) {
			if (strcmp(o->error->code, "cancelled") == 0)
				cancelled++;
			else
				failed++;
			continue;
		}
		done++;
		ptok += o->prompt_tokens;
		gtok += o->completion_tokens;
		if (o->n_embeddings > 0) {	/* an embedding request: its vectors and input tokens */
			emb += o->n_embeddings;
			etok += o->prompt_tokens;
		}
		if (o->usage != NULL) {
			double ttft = (double)(o->usage->queue_ns + o->usage->first_token_ns) / 1e9;
			if (r == 0 && o->completion_tokens > 0)
				r = metrics_histogram_observe(m, "margin_time_to_first_token_seconds", ml, ttft, 1);
			if (r == 0)
				r = metrics_histogram_observe(m, "margin_request_queue_time_seconds", ml,
							      (double)o->usage->queue_ns / 1e9, 1);
			if (r == 0)
				r = metrics_counter_add(m, "margin_worker_busy_seconds_total", wl,
							(double)o->usage->busy_ns / 1e9);
		}
	}
	if (r == 0)
		r = metrics_on_requests(m, model, "completed", done);
	if (r == 0)
		r = metrics_on_requests(m, model, "failed", failed);
	if (r == 0)
		r = metrics_on_requests(m, model, "cancelled", cancelled);
	if (r == 0)
		r = metrics_counter_add(m, "margin_prompt_tokens_total", ml, (double)ptok);
	if (r == 0)
		r = metrics_counter_add(m, "margin_generation_tokens_total", ml, (double)gtok);
	/* Only models that embed get the embedding series. */
	if (r == 0 && emb > 0)
		r = metrics_counter_add(m, "margin_embeddings_total", ml, (double)emb);
	if (r == 0 && emb > 0)
		r = metrics_counter_add(m, "margin_embedding_tokens_total", ml, (double)etok);
	if (r == 0)
		r = metrics_counter_add(m, "margin_shards_committed_total", wl, 1);
	const Margin__V1__StepStats *st = res->step_stats;
	if (r == 0 && st != NULL && st->steps > 0) {
		r = metrics_histogram_observe(m, "margin_worker_step_seconds", wl,
					      (double)st->wall_ns / 1e9 / (double)st->steps, st->steps);
		if (r == 0 && st->max_batch > 0)
			r = metrics_histogram_observe(m, "margin_worker_batch_size", wl, st->max_batch, 1);
	}
	return r;
}

int metrics_on_http(metrics_t *m, const char *method, unsigned code)
{
	char c[8];
	snprintf(c, sizeof(c), "%u", code);
	const char *lv[] = { method, c };
	return metrics_counter_add(m, "margin_http_requests_total", lv, 1);
}

int metrics_set_sched(metrics_t *m, const metrics_sched_t *s)
{
	int r = metrics_gauge_set(m, "margin_workers", NULL, (double)s->workers);
	if (r == 0)
		r = metrics_gauge_set(m, "margin_worker_slots", NULL, (double)s->worker_slots);
	if (r == 0)
		r = metrics_gauge_set(m, "margin_requests_waiting", NULL, (double)s->requests_waiting);
	if (r == 0)
		r = metrics_gauge_set(m, "margin_requests_running", NULL, (double)s->requests_running);
	if (r == 0)
		r = metrics_gauge_set(m, "margin_shards_in_flight", NULL, (double)s->shards_in_flight);
	const struct {
		const char *status;
		uint64_t n;
	} b[] = {
		{ "validating", s->batches_validating },
		{ "in_progress", s->batches_in_progress },
		{ "cancelling", s->batches_cancelling },
	};
	for (size_t i = 0; i < 3 && r == 0; i++) {
		const char *lv[] = { b[i].status };
		r = metrics_gauge_set(m, "margin_batches", lv, (double)b[i].n);
	}
	if (r == 0)
		r = metrics_gauge_set(m, "margin_storage_full", NULL, s->storage_full ? 1 : 0);
	if (r == 0)
		r = metrics_counter_raise(m, "margin_results_ignored_total", NULL, (double)s->results_ignored);
	return r;
}
