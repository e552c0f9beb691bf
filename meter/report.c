/* report: see report.h. */
#include "report.h"
#include "cost.h"
#include "meter_catalog.h"
#include "meter_priv.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const group_names[] = {
	[REPORT_BY_CALL] = "call", [REPORT_BY_BATCH] = "batch", [REPORT_BY_MODEL] = "model",
	[REPORT_BY_WORKER] = "worker", [REPORT_BY_DAY] = "day",
};

const char *report_group_name(enum report_group g)
{
	return (unsigned)g <= REPORT_BY_DAY ? group_names[g] : "?";
}

int report_group_parse(const char *s, enum report_group *ret)
{
	for (int g = REPORT_BY_CALL; g <= REPORT_BY_DAY; g++)
		if (strcmp(s, group_names[g]) == 0) {
			*ret = (enum report_group)g;
			return 0;
		}
	return -EINVAL;
}

static void row_done(report_row_t *r)
{
	free(r->key);
	free(r->model);
	free(r->worker);
	free(r->api_micros);
	free(r->api_calls);
	free(r->api_tokens);
	free(r->api_loaded);
}

void report_destroy(report_t **p)
{
	if (p == NULL || *p == NULL)
		return;
	report_t *r = *p;
	for (size_t i = 0; i < r->n_rows; i++)
		row_done(&r->rows[i]);
	free(r->rows);
	row_done(&r->total);
	for (size_t i = 0; r->refs != NULL && i < r->n_refs; i++)	/* NULL: half-built */
		free(r->refs[i]);
	free(r->refs);
	free(r->ref_embedding);
	free(r->hardware);
	free(r->prices_name);
	free(r->sale);
	free(r->api_computed);
	free(r->whatif_hardware);
	free(r->whatif_speed_basis);
	free(r->whatif_speed_why);
	free(r);
	*p = NULL;
}

/* --- conversion of a money column into the report currency --- */

/* dst[i] = src[i] (micros of curs[i], >= 0) in currency to: each currency
 * group's total converted once and spread back over its members. */
static int convert_column(const char *const *curs, size_t n, const int64_t *src, const char *to,
			  const pricetab_t *prices, int64_t *dst, char *err, size_t errlen)
{
	bool *done = calloc(n ? n : 1, sizeof(*done));
	size_t *idx = malloc((n ? n : 1) * sizeof(*idx));
	uint64_t *w = malloc((n ? n : 1) * sizeof(*w));
	int64_t *parts = malloc((n ? n : 1) * sizeof(*parts));
	int r = -ENOMEM;
	if (done == NULL || idx == NULL || w == NULL || parts == NULL)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		if (done[i])
			continue;
		const char *cur = curs[i];
		size_t k = 0;
		meter_i128 sum = 0;
		for (size_t j = i; j < n; j++)
			if (!done[j] && strcmp(curs[j], cur) == 0) {
				done[j] = true;
				idx[k] = j;
				w[k] = (uint64_t)src[j];	/* checked >= 0 by the caller */
				sum += src[j];
				k++;
			}
		if (strcmp(cur, to) == 0) {
			for (size_t m = 0; m < k; m++)
				dst[idx[m]] = src[idx[m]];
			continue;
		}
		int64_t total, conv;
		if (sum > INT64_MAX) {
			snprintf(err, errlen, "report: %s costs overflow", cur);
			r = -ERANGE;
			goto fail;
		}
		total = (int64_t)sum;
		if (prices == NULL) {
			snprintf(err, errlen, "report: no exchange rates to convert %s into %s (no price table)", cur, to);
			r = -ENOENT;
			goto fail;
		}
		if ((r = pricetab_convert(prices, total, cur, to, &conv, err, errlen)) < 0)
			goto fail;
		if ((r = meter_allocate(conv, w, k, parts)) < 0)
			goto fail;
		for (size_t m = 0; m < k; m++)
			dst[idx[m]] = parts[m];
	}
	r = 0;
fail:
	free(done);
	free(idx);
	free(w);
	free(parts);
	return r;
}

/* --- grouping --- */

struct keyed {
	const char *key;
	size_t i;
};

static int cmp_keyed(const void *pa, const void *pb)
{
	const struct keyed *a = pa, *b = pb;
	int c = strcmp(a->key, b->key);
	if (c != 0)
		return c;
	return a->i < b->i ? -1 : (a->i > b->i);
}

static int add_u64(uint64_t *acc, uint64_t v)
{
	return __builtin_add_overflow(*acc, v, acc) ? -ERANGE : 0;
}

static int add_i64(int64_t *acc, int64_t v)
{
	return __builtin_add_overflow(*acc, v, acc) ? -ERANGE : 0;
}

/* acc (of acc_calls calls) += w (of w_calls calls); before the calls
 * themselves are added. */
static void window_add(report_window_t *acc, uint64_t acc_calls, const report_window_t *w, uint64_t w_calls)
{
	if (w_calls == 0)
		return;
	if (acc_calls == 0) {
		*acc = *w;
		return;
	}
	acc->mixed |= w->mixed || w->period_ns != acc->period_ns;
	acc->open_calls += w->open_calls;
}

/* acc += one ledger row (with its converted costs and prices; cmp[k]:
 * the call is compared with reference k). */
static int accumulate(report_row_t *acc, const ledger_row_t *row, int64_t marg, int64_t load, const int64_t *api,
		      const bool *cmp, size_t n_refs, int64_t sale)
{
	report_window_t w = { .period_ns = row->period_ns, .open_calls = row->period_open ? 1 : 0 };
	window_add(&acc->window, acc->calls, &w, 1);
	int r = 0;
	r |= add_u64(&acc->calls, 1);
	r |= add_u64(&acc->prompt_tokens, row->prompt_tokens);
	r |= add_u64(&acc->completion_tokens, row->completion_tokens);
	r |= add_u64(&acc->busy_ns, row->busy_ns);
	r |= add_u64(&acc->idle_ns, row->idle_ns);
	r |= add_u64(&acc->flops, row->flops);
	r |= add_i64(&acc->cost_marginal_micros, marg);
	r |= add_i64(&acc->cost_loaded_micros, load);
	for (size_t k = 0; k < n_refs; k++) {
		if (!cmp[k])
			continue;
		r |= add_i64(&acc->api_micros[k], api[k]);
		r |= add_u64(&acc->api_calls[k], 1);
		r |= add_u64(&acc->api_tokens[k], row->prompt_tokens);
		r |= add_u64(&acc->api_tokens[k], row->completion_tokens);
		r |= add_i64(&acc->api_loaded[k], load);
	}
	r |= add_i64(&acc->sale_micros, sale);
	return r ? -ERANGE : 0;
}

static int accumulate_row(report_row_t *acc, const report_row_t *src, size_t n_refs)
{
	window_add(&acc->window, acc->calls, &src->window, src->calls);
	int r = 0;
	r |= add_u64(&acc->calls, src->calls);
	r |= add_u64(&acc->prompt_tokens, src->prompt_tokens);
	r |= add_u64(&acc->completion_tokens, src->completion_tokens);
	r |= add_u64(&acc->busy_ns, src->busy_ns);
	r |= add_u64(&acc->idle_ns, src->idle_ns);
	r |= add_u64(&acc->flops, src->flops);
	r |= add_i64(&acc->cost_marginal_micros, src->cost_marginal_micros);
	r |= add_i64(&acc->cost_loaded_micros, src->cost_loaded_micros);
	for (size_t k = 0; k < n_refs; k++) {
		r |= add_i64(&acc->api_micros[k], src->api_micros[k]);
		r |= add_u64(&acc->api_calls[k], src->api_calls[k]);
		r |= add_u64(&acc->api_tokens[k], src->api_tokens[k]);
		r |= add_i64(&acc->api_loaded[k], src->api_loaded[k]);
	}
	r |= add_i64(&acc->sale_micros, src->sale_micros);
	return r ? -ERANGE : 0;
}

static void day_key(int64_t wall_ns, char *buf, size_t len)
{
	time_t t = (time_t)(wall_ns / 1000000000LL);
	if (wall_ns < 0 && wall_ns % 1000000000LL != 0)
		t--;
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%d", &tm);
}

/* Reports name a worker by its name (--name), or its id without one. */
static const char *worker_label(const ledger_row_t *w)
{
	return w->worker_name != NULL && w->worker_name[0] != '\0' ? w->worker_name : w->worker;
}

static int join_hardware(const ledger_row_t *rows, size_t n, char **ret)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	if (f == NULL)
		return -ENOMEM;
	size_t written = 0;
	for (size_t i = 0; i < n; i++) {
		bool seen = false;
		for (size_t j = 0; j < i && !seen; j++)
			seen = strcmp(rows[j].hardware_profile, rows[i].hardware_profile) == 0;
		if (seen)
			continue;
		fprintf(f, "%s%s", written++ ? "," : "", rows[i].hardware_profile);
	}
	if (fclose(f) != 0) {
		free(out);
		return -ENOMEM;
	}
	*ret = out;
	return 0;
}

static int copy_whatif(report_t *rep, const report_whatif_t *w, char *err, size_t errlen)
{
	if (w == NULL)
		return 0;
	if (!isfinite(w->speed) || !(w->speed > 0)) {
		snprintf(err, errlen, "report: what-if speed %g: expected a positive ratio (target / booked speed)",
			 w->speed);
		return -EINVAL;
	}
	rep->has_whatif = true;
	rep->whatif_speed = w->speed;
	if ((rep->whatif_hardware = strdup(w->hardware ? w->hardware : rep->hardware)) == NULL ||
	    (rep->whatif_speed_basis = strdup(w->speed_basis ? w->speed_basis : "")) == NULL ||
	    (rep->whatif_speed_why = strdup(w->speed_why ? w->speed_why : "")) == NULL)
		return -ENOMEM;
	return 0;
}

bool report_row_is_embedding(const ledger_row_t *row)
{
	return meter_endpoint_is_embedding(row->endpoint);
}

size_t report_default_refs(const ledger_row_t *rows, size_t n, const char *const *chat, size_t n_chat,
			   const char *const *embed, size_t n_embed, const char **ret, size_t max)
{
	bool any_chat = n == 0, any_embed = false;
	for (size_t i = 0; i < n; i++) {
		bool e = report_row_is_embedding(&rows[i]);
		any_embed |= e;
		any_chat |= !e;
	}
	size_t k = 0;
	for (size_t i = 0; any_chat && i < n_chat && k < max; i++)
		ret[k++] = chat[i];
	for (size_t i = 0; any_embed && i < n_embed && k < max; i++)
		ret[k++] = embed[i];
	return k;
}

/* The row's per-reference columns, zeroed. */
static int row_alloc(report_row_t *row, size_t n_refs)
{
	size_t n = n_refs ? n_refs : 1;
	if ((row->api_micros = calloc(n, sizeof(int64_t))) == NULL ||
	    (row->api_calls = calloc(n, sizeof(uint64_t))) == NULL ||
	    (row->api_tokens = calloc(n, sizeof(uint64_t))) == NULL ||
	    (row->api_loaded = calloc(n, sizeof(int64_t))) == NULL)
		return -ENOMEM;
	return 0;
}

/* A reference's kind: its entry's mode when the table has it, else the
 * kind of the calls it was booked with, else not embedding. */
static bool ref_kind(const pricetab_entry_t *e, const char *ref, const ledger_row_t *rows, size_t n)
{
	if (e != NULL)
		return pricetab_is_embedding(e);
	for (size_t i = 0; i < n; i++)
		if (ledger_row_find_api(&rows[i], ref) != NULL)
			return report_row_is_embedding(&rows[i]);
	return false;
}

/* report_new's working columns, one entry per ledger row (api, api_cur
 * and cmp: n_refs per row). All owned; cols_done frees them. */
typedef struct cols {
	const pricetab_entry_t **refs;	/* [n_refs] the table's entries, or NULL */
	const pricetab_entry_t *sale;	/* borrowed from the table */
	int64_t *marg, *load;		/* costs in the report's currency */
	int64_t *src_m, *src_l;		/* costs as booked */
	int64_t *api, *sales;		/* equivalents and revenue */
	int64_t *col_src, *col_dst;	/* one column being converted */
	bool *cmp;			/* the row is compared with the reference */
	const char **row_cur, **api_cur;
} cols_t;

static void cols_done(cols_t *c)
{
	free(c->refs);
	free(c->marg);
	free(c->load);
	free(c->src_m);
	free(c->src_l);
	free(c->api);
	free(c->api_cur);
	free(c->cmp);
	free(c->row_cur);
	free(c->col_src);
	free(c->col_dst);
	free(c->sales);
}

/* The report's currency, names, hardware, what-if, references and sale
 * price; the columns allocated. */
static int report_head(report_t *rep, const ledger_row_t *rows, size_t n, const char *cur, const report_opts_t *o,
		       cols_t *c, char *err, size_t errlen)
{
	size_t nn = n ? n : 1, nr = o->n_refs ? o->n_refs : 1;
	int r;
	if (!meter_currency_valid(cur)) {
		snprintf(err, errlen, "report: currency \"%s\": expected an ISO 4217 code", cur);
		return -EINVAL;
	}
	snprintf(rep->currency, sizeof(rep->currency), "%s", cur);
	if ((rep->prices_name = strdup(o->prices ? pricetab_name(o->prices) : "")) == NULL)
		return -ENOMEM;
	if ((r = join_hardware(rows, n, &rep->hardware)) < 0 || (r = copy_whatif(rep, o->whatif, err, errlen)) < 0)
		return r;
	/* Reference prices: needed only for calls priced now (refs[k] NULL
	 * until then is not an error: every call may have it booked). */
	rep->n_refs = o->n_refs;
	rep->whatif_prices = o->whatif_prices;
	if ((rep->api_computed = calloc(nr, sizeof(*rep->api_computed))) == NULL ||
	    (rep->ref_embedding = calloc(nr, sizeof(*rep->ref_embedding))) == NULL)
		return -ENOMEM;
	if (o->n_refs > 0) {
		if ((c->refs = calloc(o->n_refs, sizeof(*c->refs))) == NULL ||
		    (rep->refs = calloc(o->n_refs, sizeof(*rep->refs))) == NULL)
			return -ENOMEM;
		for (size_t k = 0; k < o->n_refs; k++) {
			c->refs[k] = o->prices ? pricetab_find(o->prices, o->refs[k]) : NULL;
			rep->ref_embedding[k] = ref_kind(c->refs[k], o->refs[k], rows, n);
			if ((rep->refs[k] = strdup(o->refs[k])) == NULL)
				return -ENOMEM;
		}
	}
	if (o->sale != NULL) {
		c->sale = o->prices ? pricetab_find(o->prices, o->sale) : NULL;
		if (c->sale == NULL) {
			snprintf(err, errlen, "report: no sale price \"%s\" in table %s", o->sale,
				 o->prices ? pricetab_name(o->prices) : "(none)");
			return -ENOENT;
		}
		rep->has_sale = true;
		if ((rep->sale = strdup(o->sale)) == NULL)
			return -ENOMEM;
	}
	if ((c->marg = malloc(nn * sizeof(*c->marg))) == NULL || (c->load = malloc(nn * sizeof(*c->load))) == NULL ||
	    (c->src_m = malloc(nn * sizeof(*c->src_m))) == NULL || (c->src_l = malloc(nn * sizeof(*c->src_l))) == NULL ||
	    (c->api = calloc(nn * nr, sizeof(*c->api))) == NULL ||
	    (c->api_cur = calloc(nn * nr, sizeof(*c->api_cur))) == NULL ||
	    (c->cmp = calloc(nn * nr, sizeof(*c->cmp))) == NULL ||
	    (c->row_cur = calloc(nn, sizeof(*c->row_cur))) == NULL ||
	    (c->col_src = calloc(nn, sizeof(*c->col_src))) == NULL ||
	    (c->col_dst = calloc(nn, sizeof(*c->col_dst))) == NULL || (c->sales = calloc(nn, sizeof(*c->sales))) == NULL)
		return -ENOMEM;
	return 0;
}

/* Ledger row i: its costs as booked, its API equivalents (booked, or
 * priced now from the table) and its sale revenue. */
static int price_row(report_t *rep, const ledger_row_t *w, size_t i, const report_opts_t *o, cols_t *c,
		     char *err, size_t errlen)
{
	const char *cur = rep->currency;
	int r;
	if (w->cost_marginal_micros < 0 || w->cost_loaded_micros < 0) {
		snprintf(err, errlen, "report: job %s line %lld: negative cost", w->job, (long long)w->line_no);
		return -EINVAL;
	}
	if (!meter_currency_valid(w->currency)) {
		snprintf(err, errlen, "report: job %s line %lld: currency \"%s\" is not an ISO 4217 code",
			 w->job, (long long)w->line_no, w->currency);
		return -EINVAL;
	}
	if (w->period_ns < 0) {
		snprintf(err, errlen, "report: job %s line %lld: accounting window of %lld ns (expected 0, the "
			 "carried rule, or a positive length)", w->job, (long long)w->line_no, (long long)w->period_ns);
		return -EINVAL;
	}
	c->src_m[i] = w->cost_marginal_micros;
	c->src_l[i] = w->cost_loaded_micros;
	c->row_cur[i] = w->currency;
	bool embed = report_row_is_embedding(w);
	for (size_t k = 0; k < o->n_refs; k++) {
		size_t x = i * o->n_refs + k;
		/* Embedding calls against embedding prices only, the others
		 * against the others only. */
		c->cmp[x] = embed == rep->ref_embedding[k];
		if (!c->cmp[x]) {
			c->api_cur[x] = cur;
			continue;
		}
		const ledger_api_t *b = o->whatif_prices ? NULL : ledger_row_find_api(w, o->refs[k]);
		if (b != NULL) {
			/* As booked, in the currency it was booked in. */
			if (b->micros < 0 || !meter_currency_valid(b->price->currency)) {
				snprintf(err, errlen, "report: job %s line %lld: booked %s equivalent %lld %s is "
					 "not a price", w->job, (long long)w->line_no, o->refs[k],
					 (long long)b->micros, b->price->currency);
				return -EINVAL;
			}
			c->api[x] = b->micros;
			c->api_cur[x] = b->price->currency;
			rep->api_converted |= strcmp(b->price->currency, cur) != 0;
			continue;
		}
		if (c->refs[k] == NULL) {
			snprintf(err, errlen, "report: no price \"%s\" in table %s%s", o->refs[k],
				 o->prices ? pricetab_name(o->prices) : "(none)",
				 o->whatif_prices ? "" : " (a call has no booked equivalent for it)");
			return -ENOENT;
		}
		if ((r = cost_api_equivalent(o->prices, c->refs[k], w->prompt_tokens, w->completion_tokens,
					     w->via_batch, cur, &c->api[x], err, errlen)) < 0)
			return r;
		c->api_cur[x] = cur;
		rep->api_computed[k]++;
	}
	if (c->sale != NULL &&
	    (r = cost_api_equivalent(o->prices, c->sale, w->prompt_tokens, w->completion_tokens, w->via_batch,
				     cur, &c->sales[i], err, errlen)) < 0)
		return r;
	return 0;
}

/* Every row priced, then the costs and the booked equivalents in another
 * currency converted to the report's (those priced now are in it). */
static int price_rows(report_t *rep, const ledger_row_t *rows, size_t n, const report_opts_t *o, cols_t *c,
		      char *err, size_t errlen)
{
	const char *cur = rep->currency;
	int r;
	for (size_t i = 0; i < n; i++)
		if ((r = price_row(rep, &rows[i], i, o, c, err, errlen)) < 0)
			return r;
	/* Without calls nothing above looked the references up: one that is
	 * not in the table is still an error (a typo, as with calls). */
	for (size_t k = 0; n == 0 && k < o->n_refs; k++)
		if (c->refs[k] == NULL) {
			snprintf(err, errlen, "report: no price \"%s\" in table %s", o->refs[k],
				 o->prices ? pricetab_name(o->prices) : "(none)");
			return -ENOENT;
		}
	if ((r = convert_column(c->row_cur, n, c->src_m, cur, o->prices, c->marg, err, errlen)) < 0 ||
	    (r = convert_column(c->row_cur, n, c->src_l, cur, o->prices, c->load, err, errlen)) < 0)
		return r;
	for (size_t k = 0; rep->api_converted && k < o->n_refs; k++) {
		for (size_t i = 0; i < n; i++) {
			c->col_src[i] = c->api[i * o->n_refs + k];
			c->row_cur[i] = c->api_cur[i * o->n_refs + k];	/* reused: this column's currencies */
		}
		if ((r = convert_column(c->row_cur, n, c->col_src, cur, o->prices, c->col_dst, err, errlen)) < 0)
			return r;
		for (size_t i = 0; i < n; i++)
			c->api[i * o->n_refs + k] = c->col_dst[i];
	}
	return 0;
}

/* The rows of the report: group keys (by call keeps the ledger order),
 * each group's sums, and the total as the sum of the rows, so that it
 * matches them exactly. */
static int group_rows(report_t *rep, const ledger_row_t *rows, size_t n, enum report_group g, size_t n_refs,
		      const cols_t *c, char *err, size_t errlen)
{
	size_t nn = n ? n : 1;
	struct keyed *keys = malloc(nn * sizeof(*keys));
	char (*days)[16] = NULL;
	int r = -ENOMEM;
	if (keys == NULL || (g == REPORT_BY_DAY && (days = malloc(nn * sizeof(*days))) == NULL))
		goto out;
	for (size_t i = 0; i < n; i++) {
		const ledger_row_t *w = &rows[i];
		keys[i].i = i;
		switch (g) {
		case REPORT_BY_CALL: keys[i].key = w->custom_id; break;
		case REPORT_BY_BATCH: keys[i].key = w->job; break;
		case REPORT_BY_MODEL: keys[i].key = w->model; break;
		case REPORT_BY_WORKER: keys[i].key = worker_label(w); break;
		case REPORT_BY_DAY:
			day_key(w->answered_at_ns, days[i], sizeof(days[i]));
			keys[i].key = days[i];
			break;
		}
	}
	if (g != REPORT_BY_CALL)
		qsort(keys, n, sizeof(*keys), cmp_keyed);
	if ((rep->rows = calloc(nn, sizeof(*rep->rows))) == NULL)
		goto out;
	for (size_t a = 0; a < n;) {
		size_t b = a + 1;
		if (g != REPORT_BY_CALL)
			while (b < n && strcmp(keys[b].key, keys[a].key) == 0)
				b++;
		report_row_t *row = &rep->rows[rep->n_rows++];
		if ((row->key = strdup(keys[a].key)) == NULL || row_alloc(row, n_refs) < 0)
			goto out;
		if (g == REPORT_BY_CALL &&
		    ((row->model = strdup(rows[keys[a].i].model)) == NULL ||
		     (row->worker = strdup(worker_label(&rows[keys[a].i]))) == NULL))
			goto out;
		for (size_t m = a; m < b; m++) {
			size_t i = keys[m].i;
			if ((r = accumulate(row, &rows[i], c->marg[i], c->load[i], &c->api[i * n_refs],
					    &c->cmp[i * n_refs], n_refs, c->sales[i])) < 0) {
				snprintf(err, errlen, "report: sums overflow in %s", row->key);
				goto out;
			}
		}
		r = -ENOMEM;
		a = b;
	}
	if ((rep->total.key = strdup("total")) == NULL || row_alloc(&rep->total, n_refs) < 0)
		goto out;
	for (size_t i = 0; i < rep->n_rows; i++)
		if ((r = accumulate_row(&rep->total, &rep->rows[i], n_refs)) < 0) {
			snprintf(err, errlen, "report: total overflows");
			goto out;
		}
	r = 0;
out:
	free(keys);
	free(days);
	return r;
}

int report_new(const ledger_row_t *rows, size_t n, enum report_group g, const report_opts_t *o, report_t **ret,
	       char *err, size_t errlen)
{
	report_opts_t none = { 0 };
	report_t *rep = calloc(1, sizeof(*rep));
	cols_t c = { 0 };
	int r = -ENOMEM;
	if (o == NULL)
		o = &none;
	if (rep == NULL)
		goto fail;
	rep->group = g;
	const char *cur = o->currency ? o->currency : (n > 0 ? rows[0].currency : "USD");
	if ((r = report_head(rep, rows, n, cur, o, &c, err, errlen)) < 0 ||
	    (r = price_rows(rep, rows, n, o, &c, err, errlen)) < 0 ||
	    (r = group_rows(rep, rows, n, g, o->n_refs, &c, err, errlen)) < 0)
		goto fail;
	*ret = rep;
	rep = NULL;
fail:
	cols_done(&c);
	report_destroy(&rep);
	if (r == -ENOMEM)	/* marginctl cost and GET /v1/cost print err */
		snprintf(err, errlen, "report: out of memory for %zu calls", n);
	return r;
}

/* --- where the equivalents come from --- */

const char *report_api_basis(const report_t *r)
{
	if (r->n_refs == 0)
		return "none";
	if (r->whatif_prices)
		return "what-if";
	uint64_t computed = 0, compared = 0;
	for (size_t k = 0; k < r->n_refs; k++) {
		computed += r->api_computed[k];
		compared += r->total.api_calls[k];
	}
	if (computed == 0)
		return "booked";
	return computed == compared ? "computed" : "booked+computed";
}

char *report_api_note(const report_t *r, char *buf, size_t len)
{
	const char *basis = report_api_basis(r);
	const char *tables = r->prices_name[0] ? r->prices_name : "(none)";
	if (strcmp(basis, "none") == 0) {
		snprintf(buf, len, "no reference models");
	} else if (strcmp(basis, "what-if") == 0) {
		snprintf(buf, len, "what-if: closed-API equivalents recomputed from the token counts with prices %s, "
			 "not the ones booked with the calls", tables);
	} else if (strcmp(basis, "booked") == 0) {
		snprintf(buf, len, "closed-API equivalents as booked with each call%s%s%s",
			 r->api_converted ? " (converted into " : "", r->api_converted ? r->currency : "",
			 r->api_converted ? " at the report's exchange rates)" : "");
	} else {
		size_t o = 0;
		o += (size_t)snprintf(buf, len, "%s; computed now from the token counts with prices %s, for calls "
				      "booked without one:", strcmp(basis, "computed") == 0 ?
				      "no call has a booked closed-API equivalent" : "closed-API equivalents as booked",
				      tables);
		for (size_t k = 0; k < r->n_refs && o < len; k++)
			if (r->api_computed[k] > 0)
				o += (size_t)snprintf(buf + o, len - o, " %s %llu of %llu", r->refs[k],
						      (unsigned long long)r->api_computed[k],
						      (unsigned long long)r->total.api_calls[k]);
	}
	return buf;
}

/* --- derived figures --- */

int report_per_call(int64_t micros, uint64_t calls, int64_t *ret)
{
	if (calls == 0)
		return -EDOM;
	*ret = (int64_t)meter_div_round(micros, (meter_i128)calls);
	return 0;
}

int report_per_1m_tokens(int64_t micros, uint64_t tokens, int64_t *ret)
{
	if (tokens == 0)
		return -EDOM;
	meter_i128 v = meter_div_round((meter_i128)micros * 1000000, (meter_i128)tokens);
	if (v > INT64_MAX || v < INT64_MIN)
		return -ERANGE;
	*ret = (int64_t)v;
	return 0;
}

int report_utilization_ppm(uint64_t busy_ns, uint64_t idle_ns, int64_t *ret)
{
	mg_u128 wall = (mg_u128)busy_ns + idle_ns;
	if (wall == 0)
		return -EDOM;
	*ret = (int64_t)meter_div_round((meter_i128)busy_ns * METER_PPM, (meter_i128)wall);
	return 0;
}

/* --- what-if and window notes --- */

bool report_is_whatif(const report_t *r)
{
	return r->has_whatif || r->whatif_prices;
}

char *report_whatif_text(const report_t *r, char *buf, size_t len)
{
	size_t o = 0;
	buf[0] = '\0';
	if (r->has_whatif)
		o += (size_t)snprintf(buf, len, "hardware=%s speed=%.3gx%s%s%s", r->whatif_hardware, r->whatif_speed,
				      r->whatif_speed_basis[0] ? " (" : "", r->whatif_speed_basis,
				      r->whatif_speed_basis[0] ? ")" : "");
	if (r->whatif_prices && o < len)
		snprintf(buf + o, len - o, "%sprices=%s", o ? " " : "", r->prices_name[0] ? r->prices_name : "(none)");
	return buf;
}

const char *report_window_rule(const report_window_t *w, uint64_t calls)
{
	if (calls == 0)
		return "none";
	if (w->mixed)
		return "mixed";
	return w->period_ns == 0 ? "carried" : "window";
}

/* "hour", "day" or "900 s window": what a window of that length is called. */
static const char *window_unit(int64_t period_ns, char *buf, size_t len)
{
	if (period_ns == METER_NS_PER_HOUR)
		return "hour";
	if (period_ns == METER_NS_PER_DAY)
		return "day";
	if (period_ns % 1000000000LL == 0)
		snprintf(buf, len, "%lld s window", (long long)(period_ns / 1000000000LL));
	else
		snprintf(buf, len, "%lld ns window", (long long)period_ns);
	return buf;
}

char *report_window_note(const report_t *r, char *buf, size_t len)
{
	const report_window_t *w = &r->total.window;
	const char *rule = report_window_rule(w, r->total.calls);
	char ub[48];
	const char *unit = window_unit(w->period_ns, ub, sizeof(ub));
	size_t o;
	if (strcmp(rule, "none") == 0) {
		snprintf(buf, len, "loaded cost: no calls");
		return buf;
	}
	if (strcmp(rule, "carried") == 0)
		o = (size_t)snprintf(buf, len, "loaded cost: each node's idle time charged to the next Result after it, "
				     "the rule of calls booked before accounting windows");
	else if (strcmp(rule, "window") == 0)
		o = (size_t)snprintf(buf, len, "loaded cost: each node's cost of each UTC %s spread over that %s's "
				     "calls", unit, unit);
	else
		o = (size_t)snprintf(buf, len, "loaded cost: mixed rules (accounting windows of different lengths, or "
				     "idle time carried to the next Result for calls booked before windows)");
	if (w->open_calls > 0 && o < len)
		snprintf(buf + o, len - o, "; %llu call%s in an open %s %s provisional", (unsigned long long)w->open_calls,
			 w->open_calls == 1 ? "" : "s", strcmp(rule, "window") == 0 ? unit : "window",
			 w->open_calls == 1 ? "is" : "are");
	return buf;
}

/* A row's window for its CSV column. */
static char *window_csv(const report_row_t *row, char *buf, size_t len)
{
	const char *rule = report_window_rule(&row->window, row->calls);
	if (strcmp(rule, "window") == 0)
		snprintf(buf, len, "rule=window period=%llds open=%llu",
			 (long long)(row->window.period_ns / 1000000000LL), (unsigned long long)row->window.open_calls);
	else if (strcmp(rule, "mixed") == 0)
		snprintf(buf, len, "rule=mixed open=%llu", (unsigned long long)row->window.open_calls);
	else
		snprintf(buf, len, "rule=%s", rule);
	return buf;
}

/* --- derived figures, one definition for every format --- */

/* A figure that may be undefined (a zero divisor): ok false. Each is a
 * value computed before it is printed, so no format depends on the order
 * in which a call's arguments are evaluated. */
typedef struct opt {
	bool ok;
	int64_t v;
} opt_t;

static opt_t d_per_call(int64_t micros, uint64_t calls)
{
	opt_t o = { false, 0 };
	o.ok = report_per_call(micros, calls, &o.v) == 0;
	return o;
}

static opt_t d_per_1m(int64_t micros, uint64_t tokens)
{
	opt_t o = { false, 0 };
	o.ok = report_per_1m_tokens(micros, tokens, &o.v) == 0;
	return o;
}

static opt_t d_util(const report_row_t *row)
{
	opt_t o = { false, 0 };
	o.ok = report_utilization_ppm(row->busy_ns, row->idle_ns, &o.v) == 0;
	return o;
}

static opt_t d_margin(int64_t price, int64_t cost)
{
	opt_t o = { false, 0 };
	o.ok = meter_gross_margin_ppm(price, cost, &o.v) == 0;
	return o;
}

static uint64_t row_tokens(const report_row_t *row)
{
	return row->prompt_tokens + row->completion_tokens;
}

/* The row has calls, none of them of reference k's kind: no figure. */
static bool api_none(const report_row_t *row, size_t k)
{
	return row->calls > 0 && row->api_calls[k] == 0;
}

bool report_row_compared(const report_row_t *row, size_t k)
{
	return !api_none(row, k);
}

/* Reference k's equivalent, its price per 1M of the compared calls'
 * tokens, the gross margin at it over their loaded cost. */
static opt_t d_api(const report_row_t *row, size_t k)
{
	opt_t o = { !api_none(row, k), row->api_micros[k] };
	return o;
}

static opt_t d_api_per_1m(const report_row_t *row, size_t k)
{
	return d_per_1m(row->api_micros[k], row->api_tokens[k]);
}

static opt_t d_api_margin(const report_row_t *row, size_t k)
{
	return d_margin(row->api_micros[k], row->api_loaded[k]);
}

char *report_kinds_note(const report_t *rep, char *buf, size_t len)
{
	size_t o = 0;
	buf[0] = '\0';
	for (size_t k = 0; k < rep->n_refs && o < len; k++)
		if (rep->ref_embedding[k])
			o += (size_t)snprintf(buf + o, len - o, "%s%s", o ? ", " : "embedding calls (/v1/embeddings) are "
					      "compared with the embedding prices ", rep->refs[k]);
	if (o > 0 && o < len)
		snprintf(buf + o, len - o, " only, on their input tokens, the other calls with the other references "
			 "only; -: no call of that kind");
	return buf;
}

/* --- JSON --- */

static json_t *jopt(opt_t o)
{
	return o.ok ? json_integer(o.v) : json_null();
}

static int set(json_t *o, const char *k, json_t *v)
{
	return v == NULL ? -ENOMEM : (json_object_set_new(o, k, v) < 0 ? -ENOMEM : 0);
}

static json_t *row_json(const report_t *rep, const report_row_t *row, bool is_total)
{
	json_t *o = json_object(), *api = json_object();
	int r = 0;
	if (o == NULL || api == NULL)
		goto fail;
	if (rep->group == REPORT_BY_CALL) {
		if (!is_total) {
			r |= set(o, "custom_id", json_string(row->key));
			r |= set(o, "model", json_string(row->model));
			r |= set(o, "worker", json_string(row->worker));
		}
	} else {
		if (!is_total)
			r |= set(o, "key", json_string(row->key));
		r |= set(o, "calls", json_integer((json_int_t)row->calls));
	}
	r |= set(o, "prompt_tokens", json_integer((json_int_t)row->prompt_tokens));
	r |= set(o, "completion_tokens", json_integer((json_int_t)row->completion_tokens));
	r |= set(o, "busy_ns", json_integer((json_int_t)row->busy_ns));
	if (rep->group != REPORT_BY_CALL)
		r |= set(o, "idle_ns", json_integer((json_int_t)row->idle_ns));
	r |= set(o, "flops", json_integer((json_int_t)row->flops));
	r |= set(o, "cost_marginal_micros", json_integer(row->cost_marginal_micros));
	r |= set(o, "cost_loaded_micros", json_integer(row->cost_loaded_micros));
	for (size_t k = 0; k < rep->n_refs; k++)
		r |= set(api, rep->refs[k], jopt(d_api(row, k)));
	r |= set(o, "api_equivalent_micros", api);
	api = NULL;
	if (rep->has_sale)
		r |= set(o, "sale_micros", json_integer(row->sale_micros));
	if (rep->group != REPORT_BY_CALL) {
		uint64_t tok = row_tokens(row);
		r |= set(o, "marginal_per_call_micros", jopt(d_per_call(row->cost_marginal_micros, row->calls)));
		r |= set(o, "loaded_per_call_micros", jopt(d_per_call(row->cost_loaded_micros, row->calls)));
		r |= set(o, "marginal_per_1m_tokens_micros", jopt(d_per_1m(row->cost_marginal_micros, tok)));
		r |= set(o, "loaded_per_1m_tokens_micros", jopt(d_per_1m(row->cost_loaded_micros, tok)));
		r |= set(o, "utilization_ppm", jopt(d_util(row)));
		json_t *per = json_object(), *gm = json_object(), *cc = json_object(), *ct = json_object();
		if (per == NULL || gm == NULL || cc == NULL || ct == NULL) {
			json_decref(per);
			json_decref(gm);
			json_decref(cc);
			json_decref(ct);
			goto fail;
		}
		for (size_t k = 0; k < rep->n_refs; k++) {
			r |= set(per, rep->refs[k], jopt(d_api_per_1m(row, k)));
			r |= set(gm, rep->refs[k], jopt(d_api_margin(row, k)));
			r |= set(cc, rep->refs[k], json_integer((json_int_t)row->api_calls[k]));
			r |= set(ct, rep->refs[k], json_integer((json_int_t)row->api_tokens[k]));
		}
		r |= set(o, "api_per_1m_tokens_micros", per);
		r |= set(o, "gross_margin_ppm_at_api_price", gm);
		r |= set(o, "api_compared_calls", cc);
		r |= set(o, "api_compared_tokens", ct);
		if (rep->has_sale)
			r |= set(o, "gross_margin_ppm", jopt(d_margin(row->sale_micros, row->cost_loaded_micros)));
	}
	if (r != 0)
		goto fail;
	return o;
fail:
	json_decref(api);
	json_decref(o);
	return NULL;
}

static json_t *whatif_json(const report_t *rep)
{
	if (!report_is_whatif(rep))
		return json_null();
	json_t *w = json_object();
	int r = 0;
	if (w == NULL)
		return NULL;
	bool hw = rep->has_whatif;
	r |= set(w, "hardware", hw ? json_string(rep->whatif_hardware) : json_null());
	r |= set(w, "speed", hw ? json_real(rep->whatif_speed) : json_null());
	r |= set(w, "speed_basis", hw && rep->whatif_speed_basis[0] ? json_string(rep->whatif_speed_basis) : json_null());
	r |= set(w, "speed_why", hw && rep->whatif_speed_why[0] ? json_string(rep->whatif_speed_why) : json_null());
	r |= set(w, "prices", rep->whatif_prices ? json_string(rep->prices_name) : json_null());
	if (r != 0) {
		json_decref(w);
		return NULL;
	}
	return w;
}

static json_t *window_json(const report_t *rep)
{
	const report_window_t *win = &rep->total.window;
	const char *rule = report_window_rule(win, rep->total.calls);
	json_t *w = json_object(), *period;
	int r = 0;
	if (w == NULL)
		return NULL;
	if (strcmp(rule, "window") != 0)
		period = json_null();
	else if (win->period_ns % 1000000000LL == 0)
		period = json_integer(win->period_ns / 1000000000LL);
	else
		period = json_real((double)win->period_ns / 1e9);
	r |= set(w, "period_s", period);
	r |= set(w, "rule", json_string(rule));
	r |= set(w, "open_calls", json_integer((json_int_t)win->open_calls));
	if (r != 0) {
		json_decref(w);
		return NULL;
	}
	return w;
}

int report_format_json(const report_t *rep, char **ret_text)
{
	json_t *root = json_object(), *rows = json_array();
	int r = 0;
	if (root == NULL || rows == NULL)
		goto fail;
	char note[1024];
	json_t *computed = json_object();
	r |= set(root, "currency", json_string(rep->currency));
	r |= set(root, "hardware", json_string(rep->hardware));
	r |= set(root, "what_if", whatif_json(rep));
	r |= set(root, "loaded_window", window_json(rep));
	if (rep->group != REPORT_BY_CALL) {
		r |= set(root, "group", json_string(report_group_name(rep->group)));
		r |= set(root, "prices", json_string(rep->prices_name));
	}
	r |= set(root, "api_basis", json_string(report_api_basis(rep)));
	r |= set(root, "api_note", json_string(report_api_note(rep, note, sizeof(note))));
	json_t *kinds = json_object();
	for (size_t k = 0; computed != NULL && kinds != NULL && k < rep->n_refs; k++) {
		r |= set(computed, rep->refs[k], json_integer((json_int_t)rep->api_computed[k]));
		r |= set(kinds, rep->refs[k], json_string(rep->ref_embedding[k] ? "embedding" : "chat"));
	}
	r |= set(root, "api_computed_calls", computed);
	r |= set(root, "api_ref_kinds", kinds);
	for (size_t i = 0; i < rep->n_rows; i++) {
		json_t *row = row_json(rep, &rep->rows[i], false);
		if (row == NULL || json_array_append_new(rows, row) < 0)
			goto fail;
	}
	r |= set(root, "rows", rows);
	rows = NULL;
	r |= set(root, "total", row_json(rep, &rep->total, true));
	if (r != 0)
		goto fail;
	char *s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(root);
	if (s == NULL)
		return -ENOMEM;
	/* json_dumps memory comes from malloc (jansson's default allocator):
	 * hand it over with a trailing newline. */
	size_t l = strlen(s);
	char *t = realloc(s, l + 2);
	if (t == NULL) {
		free(s);
		return -ENOMEM;
	}
	t[l] = '\n';
	t[l + 1] = '\0';
	*ret_text = t;
	return 0;
fail:
	json_decref(rows);
	json_decref(root);
	return -ENOMEM;
}

/* --- CSV --- */

void report_csv_field(FILE *f, const char *s, bool always)
{
	if (!always && strpbrk(s, ",\"\r\n") == NULL) {
		fputs(s, f);
		return;
	}
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"')
			fputc('"', f);
		fputc(*s, f);
	}
	fputc('"', f);
}

/* ",v", or "," when the figure is undefined. */
static void csv_opt(FILE *f, opt_t o)
{
	if (o.ok)
		fprintf(f, ",%lld", (long long)o.v);
	else
		fputc(',', f);
}

/* The last two columns of every row. */
static void csv_tail(FILE *f, const report_row_t *row, const char *whatif)
{
	char w[96];
	fputc(',', f);
	report_csv_field(f, window_csv(row, w, sizeof(w)), false);
	fputc(',', f);
	report_csv_field(f, whatif, false);
	fputc('\n', f);
}

static void csv_row(FILE *f, const report_t *rep, const report_row_t *row, bool is_total, const char *whatif)
{
	if (rep->group == REPORT_BY_CALL) {
		report_csv_field(f, is_total ? "total" : row->key, false);
		fputc(',', f);
		report_csv_field(f, is_total ? "" : row->model, false);
		fputc(',', f);
		report_csv_field(f, is_total ? "" : row->worker, false);
		fprintf(f, ",%s,%llu,%llu,%llu,%llu,%lld,%lld", rep->currency, (unsigned long long)row->prompt_tokens,
			(unsigned long long)row->completion_tokens, (unsigned long long)row->busy_ns,
			(unsigned long long)row->flops, (long long)row->cost_marginal_micros,
			(long long)row->cost_loaded_micros);
		for (size_t k = 0; k < rep->n_refs; k++)
			csv_opt(f, d_api(row, k));
		if (rep->has_sale)
			fprintf(f, ",%lld", (long long)row->sale_micros);
		csv_tail(f, row, whatif);
		return;
	}
	uint64_t tok = row_tokens(row);
	report_csv_field(f, is_total ? "total" : row->key, false);
	fprintf(f, ",%s,%llu,%llu,%llu,%llu,%llu,%llu,%lld,%lld", rep->currency, (unsigned long long)row->calls,
		(unsigned long long)row->prompt_tokens, (unsigned long long)row->completion_tokens,
		(unsigned long long)row->busy_ns, (unsigned long long)row->idle_ns, (unsigned long long)row->flops,
		(long long)row->cost_marginal_micros, (long long)row->cost_loaded_micros);
	csv_opt(f, d_per_call(row->cost_marginal_micros, row->calls));
	csv_opt(f, d_per_call(row->cost_loaded_micros, row->calls));
	csv_opt(f, d_per_1m(row->cost_marginal_micros, tok));
	csv_opt(f, d_per_1m(row->cost_loaded_micros, tok));
	csv_opt(f, d_util(row));
	for (size_t k = 0; k < rep->n_refs; k++) {
		csv_opt(f, d_api(row, k));
		csv_opt(f, d_api_per_1m(row, k));
		csv_opt(f, d_api_margin(row, k));
	}
	if (rep->has_sale) {
		fprintf(f, ",%lld", (long long)row->sale_micros);
		csv_opt(f, d_margin(row->sale_micros, row->cost_loaded_micros));
	}
	csv_tail(f, row, whatif);
}

/* open_memstream() updates *bufp at fclose(): read it only after. */
static int finish(FILE *f, char **bufp, char **ret_text)
{
	if (fclose(f) != 0) {
		free(*bufp);
		return -ENOMEM;
	}
	*ret_text = *bufp;
	return 0;
}

int report_format_csv(const report_t *rep, char **ret_text)
{
	char *buf = NULL, h[300], whatif[1024];
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (f == NULL)
		return -ENOMEM;
	report_whatif_text(rep, whatif, sizeof(whatif));
	if (rep->group == REPORT_BY_CALL) {
		fputs("custom_id,model,worker,currency,prompt_tokens,completion_tokens,busy_ns,flops,"
		      "cost_marginal_micros,cost_loaded_micros", f);
		for (size_t k = 0; k < rep->n_refs; k++) {
			snprintf(h, sizeof(h), "api_equivalent_micros:%s", rep->refs[k]);
			fputc(',', f);
			report_csv_field(f, h, false);
		}
		if (rep->has_sale)
			fputs(",sale_micros", f);
	} else {
		fprintf(f, "%s,currency,calls,prompt_tokens,completion_tokens,busy_ns,idle_ns,flops,cost_marginal_micros,"
			   "cost_loaded_micros,marginal_per_call_micros,loaded_per_call_micros,"
			   "marginal_per_1m_tokens_micros,loaded_per_1m_tokens_micros,utilization_ppm",
			report_group_name(rep->group));
		for (size_t k = 0; k < rep->n_refs; k++) {
			static const char *const cols[] = { "api_equivalent_micros", "api_per_1m_tokens_micros",
							    "gross_margin_ppm_at_api_price" };
			for (int c = 0; c < 3; c++) {
				snprintf(h, sizeof(h), "%s:%s", cols[c], rep->refs[k]);
				fputc(',', f);
				report_csv_field(f, h, false);
			}
		}
		if (rep->has_sale)
			fputs(",sale_micros,gross_margin_ppm", f);
	}
	fputs(",loaded_window,what_if\n", f);
	for (size_t i = 0; i < rep->n_rows; i++)
		csv_row(f, rep, &rep->rows[i], false, whatif);
	csv_row(f, rep, &rep->total, true, whatif);
	return finish(f, &buf, ret_text);
}

/* --- text --- */

/* A reference's column: its whole name (text-embedding-3-small and
 * text-embedding-3-large must not both read "text-embedding"). */
static int ref_width(const report_t *rep, size_t k)
{
	size_t l = strlen(rep->refs[k]);
	return l > 14 ? (int)l : 14;
}

static void text_row(FILE *f, const report_t *rep, const report_row_t *row, int kw)
{
	char a[40], b[40];
	uint64_t tok = row_tokens(row);
	opt_t per = d_per_1m(row->cost_loaded_micros, tok);
	fprintf(f, "%-*s %8llu %12llu %10.3f %16s", kw, row->key, (unsigned long long)row->calls,
		(unsigned long long)tok, (double)row->busy_ns / 1e9,
		meter_format_micros(row->cost_loaded_micros, a, sizeof(a)));
	fprintf(f, " %14s", per.ok ? meter_format_micros(per.v, b, sizeof(b)) : "-");
	for (size_t k = 0; k < rep->n_refs; k++) {
		opt_t api = d_api_per_1m(row, k), gm = d_api_margin(row, k);
		bool none = api_none(row, k);	/* no call of this reference's kind */
		fprintf(f, " %*s", ref_width(rep, k), api.ok && !none ? meter_format_micros(api.v, a, sizeof(a)) : "-");
		fprintf(f, " %9s", none ? "-" : gm.ok ? meter_format_ppm_pct(gm.v, b, sizeof(b)) : "-inf");
	}
	fputc('\n', f);
}

int report_format_text(const report_t *rep, char **ret_text)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (f == NULL)
		return -ENOMEM;
	char note[1024];
	/* The key column fits the longest key: batch ids are not cut. */
	int kw = (int)strlen(report_group_name(rep->group));
	if (kw < 5)
		kw = 5;	/* "total" */
	for (size_t i = 0; i < rep->n_rows; i++)
		if (strlen(rep->rows[i].key) > (size_t)kw)
			kw = (int)strlen(rep->rows[i].key);
	fprintf(f, "%scost by %s, %s, hardware %s%s%s\n", report_is_whatif(rep) ? "WHAT-IF: " : "",
		report_group_name(rep->group), rep->currency, rep->hardware, rep->prices_name[0] ? ", prices " : "",
		rep->prices_name);
	if (rep->has_whatif)
		fprintf(f, "(what-if: the calls repriced on %s at %.3gx the booked hardware's speed%s%s%s%s%s)\n",
			rep->whatif_hardware, rep->whatif_speed, rep->whatif_speed_basis[0] ? ", " : "",
			rep->whatif_speed_basis, rep->whatif_speed_why[0] ? ": " : "", rep->whatif_speed_why,
			rep->whatif_speed == 1 ? "; busy and idle times as booked" :
						 "; busy and idle times divided by it");
	fprintf(f, "(%s)\n", report_api_note(rep, note, sizeof(note)));
	fprintf(f, "(%s)\n", report_window_note(rep, note, sizeof(note)));
	fprintf(f, "%-*s %8s %12s %10s %16s %14s", kw, report_group_name(rep->group), "calls", "tokens", "busy_s",
		"loaded_cost", "loaded/1M");
	for (size_t k = 0; k < rep->n_refs; k++)
		fprintf(f, " %*s %9s", ref_width(rep, k), rep->refs[k], "GM@ref");
	fputc('\n', f);
	for (size_t i = 0; i < rep->n_rows; i++)
		text_row(f, rep, &rep->rows[i], kw);
	text_row(f, rep, &rep->total, kw);
	fprintf(f, "(money in %s; /1M: per million prompt+completion tokens; GM@ref: gross margin if sold at that "
		   "API's price, (price - loaded cost) / price)\n", rep->currency);
	if (report_kinds_note(rep, note, sizeof(note))[0] != '\0')
		fprintf(f, "(%s)\n", note);
	return finish(f, &buf, ret_text);
}

/* --- what-if --- */

static int cmp_batch(const void *pa, const void *pb)
{
	return cmp_keyed(pa, pb);
}

int report_whatif(const ledger_row_t *in, size_t n, const hwprof_t *hw, meter_q_t time_scale, ledger_row_t *out,
		  char *err, size_t errlen)
{
	if (time_scale.num <= 0 || time_scale.den <= 0) {
		snprintf(err, errlen, "what-if: time scale must be positive");
		return -EINVAL;
	}
	struct keyed *keys = malloc((n ? n : 1) * sizeof(*keys));
	cost_call_t *calls = malloc((n ? n : 1) * sizeof(*calls));
	uint64_t *busy = malloc((n ? n : 1) * sizeof(*busy));
	int r = -ENOMEM;
	if (keys == NULL || calls == NULL || busy == NULL)
		goto fail;
	for (size_t i = 0; i < n; i++)
		keys[i] = (struct keyed){ in[i].job, i };
	qsort(keys, n, sizeof(*keys), cmp_batch);
	for (size_t a = 0; a < n;) {
		size_t b = a + 1;
		while (b < n && strcmp(keys[b].key, keys[a].key) == 0)
			b++;
		mg_u128 idle = 0;
		for (size_t m = a; m < b; m++) {
			const ledger_row_t *w = &in[keys[m].i];
			int64_t bs, is;
			if (w->busy_ns > INT64_MAX || w->idle_ns > INT64_MAX ||
			    meter_scale((int64_t)w->busy_ns, time_scale, &bs) < 0 ||
			    meter_scale((int64_t)w->idle_ns, time_scale, &is) < 0) {
				snprintf(err, errlen, "what-if: job %s line %lld: time out of range", w->job,
					 (long long)w->line_no);
				r = -ERANGE;
				goto fail;
			}
			calls[m - a] = (cost_call_t){ .busy_ns = (uint64_t)bs };
			busy[m - a] = (uint64_t)bs;
			idle += (uint64_t)is;
		}
		if (idle > INT64_MAX ||
		    (r = cost_book_rates(hw->rate_busy_micros_per_hour, hw->rate_idle_micros_per_hour,
					 (uint64_t)idle, calls, b - a)) < 0) {
			snprintf(err, errlen, "what-if: job %s: cost out of range", keys[a].key);
			r = -ERANGE;
			goto fail;
		}
		for (size_t m = a; m < b; m++) {
			size_t i = keys[m].i;
			out[i] = in[i];
			out[i].hardware_profile = hw->name;
			out[i].currency = hw->currency;
			out[i].rate_busy_micros_per_hour = hw->rate_busy_micros_per_hour;
			out[i].rate_idle_micros_per_hour = hw->rate_idle_micros_per_hour;
			out[i].busy_ns = busy[m - a];
			out[i].idle_ns = calls[m - a].idle_ns;
			out[i].cost_marginal_micros = calls[m - a].cost_marginal_micros;
			out[i].cost_loaded_micros = calls[m - a].cost_loaded_micros;
		}
		a = b;
	}
	r = 0;
fail:
	free(keys);
	free(calls);
	free(busy);
	return r;
}

/* --- break-even --- */

int report_breakeven(const report_breakeven_in_t *in, report_breakeven_t *ret)
{
	if (in->calls == 0 || in->busy_ns == 0)
		return -EINVAL;
	report_breakeven_t b = { 0 };
	int r = meter_cost_of_ns(in->rate_idle_micros_per_hour, (uint64_t)METER_NS_PER_DAY, &b.fixed_per_day_micros);
	if (r < 0)
		return r;
	b.busy_ns_per_call = (double)in->busy_ns / (double)in->calls;
	b.api_per_call_micros = (double)in->api_micros / (double)in->calls;
	b.extra_per_call_micros = (double)(in->rate_busy_micros_per_hour - in->rate_idle_micros_per_hour) *
				  b.busy_ns_per_call / (double)METER_NS_PER_HOUR;
	b.capacity_calls_per_day = (double)METER_NS_PER_DAY / b.busy_ns_per_call;
	double margin_per_call = b.api_per_call_micros - b.extra_per_call_micros;
	if (margin_per_call > 0) {
		b.breakeven_calls_per_day = (double)b.fixed_per_day_micros / margin_per_call;
		b.breakeven_utilization = b.breakeven_calls_per_day * b.busy_ns_per_call / (double)METER_NS_PER_DAY;
		b.reachable = b.breakeven_calls_per_day <= b.capacity_calls_per_day;
	} else {
		b.breakeven_calls_per_day = INFINITY;
		b.breakeven_utilization = INFINITY;
		b.reachable = false;
	}
	b.calls_per_day = in->calls_per_day > 0 ? in->calls_per_day : b.capacity_calls_per_day;
	if (b.calls_per_day > b.capacity_calls_per_day)
		b.calls_per_day = b.capacity_calls_per_day;
	b.saving_per_day_micros = b.calls_per_day * margin_per_call - (double)b.fixed_per_day_micros;
	if (in->one_off_micros <= 0)
		b.days_to_recover = 0;
	else if (b.saving_per_day_micros > 0)
		b.days_to_recover = (double)in->one_off_micros / b.saving_per_day_micros;
	else
		b.days_to_recover = INFINITY;
	*ret = b;
	return 0;
}
