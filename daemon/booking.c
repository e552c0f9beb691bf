/* booking: see booking.h. */
#include "booking.h"
#include "meter/cost.h"
#include "meter/ledger.h"
#include "meter/meter.h"
#include "meter/meter_catalog.h"
#include "lib/mg_log.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Cached profile lookups per announced name; bounded, because names come
 * from workers. */
#define MAX_PROFILES 256

/* --- [meter] settings -------------------------------------------------- */

/* Splits a comma-separated list in place; returns the count (at most max). */
static size_t split_list(char *s, char **out, size_t max)
{
	size_t n = 0;
	char *save = NULL;
	for (char *tok = strtok_r(s, ",", &save); tok != NULL && n < max; tok = strtok_r(NULL, ",", &save)) {
		while (*tok == ' ' || *tok == '\t')
			tok++;
		char *e = tok + strlen(tok);
		while (e > tok && (e[-1] == ' ' || e[-1] == '\t'))
			*--e = '\0';
		if (*tok != '\0')
			out[n++] = tok;
	}
	return n;
}

static const char *const meter_keys[] = {
	"hardware", "hardware_dir", "prices", "prices_dir", "prices_date", "refs", "embed_refs", "currency",
	"sale_price", "period", NULL,
};

struct key_check {
	char *err;
	size_t errlen;
	const mg_config_t *cfg;
	int r;
};

static int check_key(void *user, const char *section, const char *key, const char *value)
{
	struct key_check *k = user;
	if (strcmp(section, "meter") != 0)
		return 0;
	for (int i = 0; meter_keys[i] != NULL; i++)
		if (strcmp(key, meter_keys[i]) == 0)
			return 0;
	snprintf(k->err, k->errlen, "%s: [meter] %s: unknown key (hardware, hardware_dir, prices, prices_dir, "
		 "prices_date, refs, embed_refs, currency, sale_price, period)", mg_config_origin(k->cfg, section, key),
		 key);
	k->r = -EINVAL;
	return 1;
}

static const char *get(const mg_config_t *cfg, const char *key)
{
	const char *v = mg_config_get(cfg, "meter", key);
	return v != NULL && v[0] != '\0' ? v : NULL;
}

/* [meter] refs (embedding false) or embed_refs (true): each an entry of
 * the loaded tables of that kind (chat calls are never priced on an
 * embedding price, nor embedding calls on a chat price), else the default
 * ones the tables hold. */
static int load_refs(booking_conf_t *c, const mg_config_t *cfg, bool embedding, char *err, size_t errlen)
{
	const char *key = embedding ? "embed_refs" : "refs", *v = get(cfg, key);
	char **out = embedding ? c->embed_refs : c->refs, list[BOOKING_PATH_MAX], what[600], e2[1024];
	size_t *n_out = embedding ? &c->n_embed_refs : &c->n_refs;
	char *items[BOOKING_MAX_REFS];
	const char *defaults[BOOKING_MAX_REFS];
	size_t n;
	if (v != NULL) {
		snprintf(list, sizeof(list), "%s", v);
		n = split_list(list, items, BOOKING_MAX_REFS);
		snprintf(what, sizeof(what), "%s: [meter] %s", mg_config_origin(cfg, "meter", key), key);
	} else {
		n = embedding ? meter_find_default_embed_refs(c->prices, defaults, BOOKING_MAX_REFS) :
				meter_find_default_refs(c->prices, defaults, BOOKING_MAX_REFS);
		memcpy(items, defaults, n * sizeof(*items));	/* read only below */
	}
	for (size_t i = 0; i < n; i++) {
		bool dup = false;	/* one booked equivalent per (call, reference) */
		for (size_t k = 0; k < *n_out && !dup; k++)
			dup = strcmp(out[k], items[i]) == 0;
		if (dup)
			continue;
		int r;
		if (v != NULL && (r = meter_check_ref_kind(c->prices, items[i], embedding, what, e2, sizeof(e2))) < 0) {
			snprintf(err, errlen, "%s", e2);
			return r;
		}
		if ((out[(*n_out)++] = strdup(items[i])) == NULL) {
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
	}
	return 0;
}

int booking_conf_load(booking_conf_t *c, const mg_config_t *cfg, char *err, size_t errlen)
{
	char e2[1024], list[BOOKING_PATH_MAX];
	char *items[64];
	const char *v;
	int r;
	memset(c, 0, sizeof(*c));
	struct key_check kc = { err, errlen, cfg, 0 };
	mg_config_foreach(cfg, check_key, &kc);
	if (kc.r < 0)
		return kc.r;
	if ((c->prices = pricetab_new()) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if ((v = get(cfg, "hardware_dir")) != NULL)
		snprintf(c->hardware_dir, sizeof(c->hardware_dir), "%s", v);
	else
		meter_default_dir("hardware", c->hardware_dir, sizeof(c->hardware_dir));
	if ((v = get(cfg, "prices_dir")) != NULL)
		snprintf(c->prices_dir, sizeof(c->prices_dir), "%s", v);
	else
		meter_default_dir("prices", c->prices_dir, sizeof(c->prices_dir));

	if ((v = get(cfg, "hardware")) != NULL) {
		snprintf(c->hardware, sizeof(c->hardware), "%s", v);
		if ((r = meter_load_profile(v, c->hardware_dir, &c->forced, e2, sizeof(e2))) < 0) {
			snprintf(err, errlen, "%s: [meter] hardware = %s: %s", mg_config_origin(cfg, "meter", "hardware"),
				 v, e2);
			goto fail;
		}
		c->has_forced = true;
	}
	if (meter_load_profile(BOOKING_FALLBACK_PROFILE, c->hardware_dir, &c->fallback, e2, sizeof(e2)) == 0)
		c->has_fallback = true;
	else if (!c->has_forced)
		mg_log(MG_LOG_WARN, "meter", "no fallback hardware profile: workers without a known profile will be "
		       "booked at cost 0 (set [meter] hardware_dir or margind --hardware) err=\"%s\"", e2);

	const char *date = get(cfg, "prices_date");
	if ((v = get(cfg, "prices")) != NULL) {
		snprintf(list, sizeof(list), "%s", v);
		size_t n = split_list(list, items, 64);
		for (size_t i = 0; i < n; i++)
			if ((r = meter_load_prices(c->prices, items[i], c->prices_dir, date, e2, sizeof(e2))) < 0) {
				snprintf(err, errlen, "%s: [meter] prices: %s", mg_config_origin(cfg, "meter", "prices"), e2);
				goto fail;
			}
	} else {
		for (const char *const *p = meter_default_price_tables; *p != NULL; p++)
			if (meter_load_prices(c->prices, *p, c->prices_dir, NULL, e2, sizeof(e2)) < 0)
				mg_log(MG_LOG_WARN, "meter", "default price table not loaded (set [meter] prices or "
				       "prices_dir) err=\"%s\"", e2);
	}

	if ((v = get(cfg, "currency")) != NULL) {
		if (!meter_currency_valid(v)) {
			snprintf(err, errlen, "%s: [meter] currency = %s: expected an ISO 4217 code such as CNY or USD",
				 mg_config_origin(cfg, "meter", "currency"), v);
			r = -EINVAL;
			goto fail;
		}
		snprintf(c->currency, sizeof(c->currency), "%s", v);
	} else {
		snprintf(c->currency, sizeof(c->currency), "%s", c->has_forced ? c->forced.currency :
			 c->has_fallback ? c->fallback.currency : "USD");
	}

	if ((r = load_refs(c, cfg, false, err, errlen)) < 0 || (r = load_refs(c, cfg, true, err, errlen)) < 0)
		goto fail;

	c->period_ns = LEDGER_HOUR_NS;
	if ((v = get(cfg, "period")) != NULL) {
		if (strcmp(v, "hour") == 0) {
			c->period_ns = LEDGER_HOUR_NS;
		} else if (strcmp(v, "day") == 0) {
			c->period_ns = LEDGER_DAY_NS;
		} else {
			snprintf(err, errlen, "%s: [meter] period = %s: expected hour or day (the accounting window whose "
				 "idle time the calls in it share)", mg_config_origin(cfg, "meter", "period"), v);
			r = -EINVAL;
			goto fail;
		}
	}

	if ((v = get(cfg, "sale_price")) != NULL) {
		pricetab_entry_t e;
		char src[128];
		snprintf(src, sizeof(src), "[meter] sale_price (%.100s)", mg_config_origin(cfg, "meter", "sale_price"));
		if ((r = meter_parse_price_entry(v, BOOKING_SALE_ENTRY, NULL, c->currency, src, &e, e2, sizeof(e2))) < 0) {
			snprintf(err, errlen, "%s: [meter] sale_price: %s", mg_config_origin(cfg, "meter", "sale_price"), e2);
			goto fail;
		}
		if (pricetab_add(c->prices, &e) < 0)
			goto nomem;
		c->has_sale = true;
		snprintf(c->sale_text, sizeof(c->sale_text), "%s", v);
	}
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
	r = -ENOMEM;
fail:
	booking_conf_done(c);
	return r;
}

void booking_conf_done(booking_conf_t *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->n_refs; i++)
		free(c->refs[i]);
	for (size_t i = 0; i < c->n_embed_refs; i++)
		free(c->embed_refs[i]);
	pricetab_destroy(&c->prices);
	memset(c, 0, sizeof(*c));
}

/* --- the booking ------------------------------------------------------- */

typedef struct prof {
	char announced[128];
	const hwprof_t *hw;		/* borrowed: &own or the conf's fallback; NULL = none */
	hwprof_t own;
} prof_t;

/* One distinct pricing of a Result's equivalents: a reference model's
 * prices as they applied (tier, band) and the exchange factor. */
typedef struct pricing {
	size_t ref;			/* index in the references: conf->refs, then conf->embed_refs */
	cost_api_quote_t q;		/* micros unused: the prices and fx */
	cost_api_source_t src;		/* their text */
	ledger_api_price_t p;		/* points into src, conf and the Result */
} pricing_t;

struct booking {
	const booking_conf_t *conf;	/* borrowed */
	prof_t *profs[MAX_PROFILES];	/* owned */
	size_t n_profs;
	bool warned_full;
	/* The reference models' entries (borrowed from conf->prices, which
	 * does not change after booking_conf_load). */
	const pricetab_entry_t *ref_entry[2 * BOOKING_MAX_REFS];
	const char *ref_name[2 * BOOKING_MAX_REFS];
	bool ref_warned[2 * BOOKING_MAX_REFS];
	size_t n_chat_refs, n_all_refs;	/* conf->refs are [0, n_chat_refs), embed_refs the rest */
	/* Scratch of one Result's equivalents, kept for the next. */
	ledger_api_t *api;		/* owned: [n calls x n refs] */
	size_t *api_pricing;		/* owned: index in pricings of each */
	size_t cap_api;
	pricing_t *pricings;		/* owned */
	size_t n_pricings, cap_pricings;
	sched_t *s;			/* borrowed; NULL until booking_attach */
	/* Accounting windows: the wall time from which a Result runs the
	 * closing first (the end of the window the last closing ran in),
	 * and the workers' leave time after which they are looked at (a day
	 * before the last closing: a closing a Result rolled back is
	 * repeated by the next). */
	int64_t next_due_ns, since_ns;
};

int booking_new(const booking_conf_t *conf, booking_t **ret)
{
	booking_t *b = calloc(1, sizeof(*b));
	if (b == NULL)
		return -ENOMEM;
	b->conf = conf;
	for (size_t k = 0; k < conf->n_refs && k < BOOKING_MAX_REFS; k++)
		b->ref_name[b->n_all_refs++] = conf->refs[k];
	b->n_chat_refs = b->n_all_refs;
	for (size_t k = 0; k < conf->n_embed_refs && k < BOOKING_MAX_REFS; k++)
		b->ref_name[b->n_all_refs++] = conf->embed_refs[k];
	for (size_t k = 0; k < b->n_all_refs; k++)
		b->ref_entry[k] = conf->prices ? pricetab_find(conf->prices, b->ref_name[k]) : NULL;
	*ret = b;
	return 0;
}

void booking_destroy(booking_t **p)
{
	if (p == NULL || *p == NULL)
		return;
	booking_t *b = *p;
	for (size_t i = 0; i < b->n_profs; i++)
		free(b->profs[i]);
	free(b->api);
	free(b->api_pricing);
	free(b->pricings);
	free(b);
	*p = NULL;
}

int booking_attach(booking_t *b, sched_t *s, const char *state_dir, char *err, size_t errlen)
{
	/* journal_open made the ledger's tables current (ledger steps). */
	b->s = s;
	journal_set_book_fn(sched_journal(s), booking_book, b);
	journal_set_tick_fn(sched_journal(s), booking_tick, b);
	const booking_conf_t *c = b->conf;
	mg_log(MG_LOG_INFO, "meter", "booking calls hardware=%s fallback=%s hardware_dir=%s prices=%s currency=%s "
	       "sale_price=%s period=%s db=%s/margin.db", c->has_forced ? c->forced.name : "announced",
	       c->has_fallback ? c->fallback.name : "none", c->hardware_dir, pricetab_name(c->prices), c->currency,
	       c->has_sale ? c->sale_text : "none", c->period_ns == LEDGER_DAY_NS ? "day" : "hour", state_dir);
	return 0;
}

/* The profile that prices a worker that announced `announced`, in *ret;
 * NULL when there is none at all (cost 0). Warns once per name. -ENOMEM
 * (err says so) when the profile could not be loaded for want of memory:
 * nothing is remembered then, so the next Result tries again instead of
 * pricing the worker as the fallback for good. */
static int profile_for(booking_t *b, const char *announced, const hwprof_t **ret, char *err, size_t errlen)
{
	const booking_conf_t *c = b->conf;
	if (c->has_forced) {
		*ret = &c->forced;
		return 0;
	}
	for (size_t i = 0; i < b->n_profs; i++)
		if (strcmp(b->profs[i]->announced, announced) == 0) {
			*ret = b->profs[i]->hw;
			return 0;
		}
	const hwprof_t *fallback = c->has_fallback ? &c->fallback : NULL;
	if (b->n_profs == MAX_PROFILES) {
		if (!b->warned_full)
			mg_log(MG_LOG_WARN, "meter", "too many hardware profile names announced: pricing new ones as %s",
			       fallback ? fallback->name : "cost 0");
		b->warned_full = true;
		*ret = fallback;
		return 0;
	}
	prof_t *p = calloc(1, sizeof(*p));
	char e2[1024];
	int r = p == NULL ? -ENOMEM : 0;
	snprintf(e2, sizeof(e2), "out of memory");
	if (p != NULL) {
		snprintf(p->announced, sizeof(p->announced), "%s", announced);
		/* A name from the wire is only ever a name in the directory
		 * (hwprof_find refuses '/' and leading dots), never a path. */
		r = announced[0] != '\0' ? hwprof_find(c->hardware_dir, announced, &p->own, e2, sizeof(e2)) : -ENOENT;
	}
	if (r == -ENOMEM) {
		snprintf(err, errlen, "booking: hardware profile \"%s\": %s", announced, e2);
		free(p);
		return r;
	}
	if (r == 0) {
		p->hw = &p->own;
		mg_log(MG_LOG_INFO, "meter", "hardware profile loaded profile=%s rate_busy_micros_per_hour=%lld "
		       "rate_idle_micros_per_hour=%lld currency=%s file=%s", p->own.name,
		       (long long)p->own.rate_busy_micros_per_hour, (long long)p->own.rate_idle_micros_per_hour,
		       p->own.currency, p->own.origin);
	} else {
		p->hw = fallback;
		if (announced[0] == '\0')
			snprintf(e2, sizeof(e2), "the worker announced none (margin-worker serve --hardware NAME)");
		mg_log(MG_LOG_WARN, "meter", "unknown hardware profile announced=\"%s\" priced_as=%s err=\"%s\"",
		       announced, fallback ? fallback->name : "nothing (cost 0, no currency)", e2);
	}
	b->profs[b->n_profs++] = p;
	*ret = p->hw;
	return 0;
}

/* rate x ns, rounded once; the difference of two of these is what a
 * group adds to a carried total. */
static int cost_delta(int64_t rate, uint64_t before, uint64_t add, int64_t *ret)
{
	int64_t a, b;
	int r;
	if ((r = meter_cost_of_ns(rate, before, &a)) < 0 || (r = meter_cost_of_ns(rate, before + add, &b)) < 0)
		return r;
	*ret = b - a;
	return 0;
}

/* The closed-API equivalents of the Result's rows, one per (call,
 * reference model), attached to rows[i].api for ledger_insert (same
 * transaction as the rows). currency: the rows' (the profile's), or the
 * report currency for rows booked without a profile. A reference that
 * cannot price a call (no exchange rate into this currency, a prompt
 * beyond its bands) is left out with a warning, once per reference: the
 * Result is still booked, and reports price that call when asked and say
 * so; failing it would stall the batch on a configuration error. */
static int quote_rows(booking_t *b, ledger_row_t *rows, size_t n, const char *currency, char *err, size_t errlen)
{
	const booking_conf_t *c = b->conf;
	/* At most the larger kind's references per call. */
	size_t n_embed = b->n_all_refs - b->n_chat_refs, n_api = 0;
	size_t n_refs = b->n_chat_refs > n_embed ? b->n_chat_refs : n_embed;
	if (n_refs == 0 || n == 0)
		return 0;
	if (n * n_refs > b->cap_api) {
		size_t cap = n * n_refs;
		ledger_api_t *na = realloc(b->api, cap * sizeof(*na));
		if (na != NULL)
			b->api = na;
		size_t *np = na ? realloc(b->api_pricing, cap * sizeof(*np)) : NULL;
		if (np == NULL)
			goto nomem;
		b->api_pricing = np;
		b->cap_api = cap;
	}
	b->n_pricings = 0;
	for (size_t i = 0; i < n; i++) {
		ledger_row_t *w = &rows[i];
		size_t first = n_api;
		/* An embedding call on the embedding references only, any other
		 * call on the others only. */
		bool embed = meter_endpoint_is_embedding(w->endpoint);
		size_t k0 = embed ? b->n_chat_refs : 0, k1 = embed ? b->n_all_refs : b->n_chat_refs;
		for (size_t k = k0; k < k1; k++) {
			const pricetab_entry_t *e = b->ref_entry[k];
			cost_api_quote_t q;
			char e2[512];
			if (e == NULL || cost_api_quote(c->prices, e, w->prompt_tokens, w->completion_tokens, w->via_batch,
							currency, &q, e2, sizeof(e2)) < 0) {
				if (!b->ref_warned[k])
					mg_log(MG_LOG_WARN, "meter", "closed-API equivalent not booked (reports price such "
					       "calls when asked) batch=%s ref=%s currency=%s err=\"%s\"", w->job,
					       b->ref_name[k], currency, e ? e2 : "no such price entry");
				b->ref_warned[k] = true;
				continue;
			}
			size_t j = 0;
			while (j < b->n_pricings &&
			       !(b->pricings[j].ref == k && b->pricings[j].q.batch_tier == q.batch_tier &&
				 meter_q_cmp(b->pricings[j].q.in_per_1m, q.in_per_1m) == 0 &&
				 meter_q_cmp(b->pricings[j].q.out_per_1m, q.out_per_1m) == 0 &&
				 meter_q_cmp(b->pricings[j].q.fx, q.fx) == 0))
				j++;
			if (j == b->n_pricings) {
				if (b->n_pricings == b->cap_pricings) {
					size_t cap = b->cap_pricings ? 2 * b->cap_pricings : 8;
					pricing_t *np = realloc(b->pricings, cap * sizeof(*np));
					if (np == NULL)
						goto nomem;
					b->pricings = np;
					b->cap_pricings = cap;
				}
				pricing_t *pr = &b->pricings[b->n_pricings++];
				pr->ref = k;
				pr->q = q;
				cost_api_source(c->prices, e, &q, currency, w->via_batch, &pr->src);
			}
			b->api[n_api] = (ledger_api_t){ .micros = q.micros };
			b->api_pricing[n_api++] = j;
		}
		w->n_api = n_api - first;
		w->api = w->n_api ? &b->api[first] : NULL;
	}
	/* The array has stopped moving: point the pricings at their text. */
	for (size_t j = 0; j < b->n_pricings; j++) {
		pricing_t *pr = &b->pricings[j];
		const pricetab_entry_t *e = b->ref_entry[pr->ref];
		pr->p = (ledger_api_price_t){
			.ref_model = b->ref_name[pr->ref], .currency = currency, .price_currency = e->currency,
			.input_per_1m = pr->src.input_per_1m, .output_per_1m = pr->src.output_per_1m,
			.fx_rate = pr->src.fx_rate, .fx_source = pr->src.fx_source, .price_table = pricetab_name(c->prices),
			.price_source = pr->src.price_source, .price_date = pr->src.price_date,
		};
	}
	for (size_t x = 0; x < n_api; x++)
		b->api[x].price = &b->pricings[b->api_pricing[x]].p;
	return 0;
nomem:
	snprintf(err, errlen, "booking: out of memory for the closed-API equivalents of %zu calls", n);
	return -ENOMEM;
}

/* --- accounting windows ------------------------------------------------ */

static int on_job_delta(void *user, const char *job, int64_t delta)
{
	booking_t *b = user;
	return b->s ? journal_job_add_loaded(sched_journal(b->s), job, delta) : 0;
}

/* The window key, names and rates of worker `worker` priced by hw. */
static void period_of(ledger_period_t *p, int64_t start, int64_t len, const char *worker, const char *name,
		      const char *announced, const hwprof_t *hw)
{
	memset(p, 0, sizeof(*p));
	p->start_ns = start;
	p->period_ns = len;
	snprintf(p->worker, sizeof(p->worker), "%s", worker);
	snprintf(p->worker_name, sizeof(p->worker_name), "%s", name ? name : "");
	snprintf(p->hardware_profile, sizeof(p->hardware_profile), "%s", hw ? hw->name : announced ? announced : "");
	snprintf(p->currency, sizeof(p->currency), "%s", hw ? hw->currency : "");
	p->rate_busy_micros_per_hour = hw ? hw->rate_busy_micros_per_hour : 0;
	p->rate_idle_micros_per_hour = hw ? hw->rate_idle_micros_per_hour : 0;
}

/* The worker's attached time inside [start, start + len). */
static uint64_t attended_in(const journal_worker_span_t *w, int64_t start, int64_t len)
{
	int64_t a = w->joined_ns > start ? w->joined_ns : start;
	int64_t e = start + len;
	if (w->left_ns > 0 && w->left_ns < e)
		e = w->left_ns;
	return e > a ? (uint64_t)(e - a) : 0;
}

/* Closes the windows of one worker that can close by now: those that have
 * ended, and the one it left in (nothing more can be booked to it). A
 * window it was attached in without a Result gets its row here. */
static int close_worker(booking_t *b, sqlite3 *db, const journal_worker_span_t *w, int64_t now, char *err,
			size_t errlen)
{
	ledger_period_t last, p;
	int64_t len = b->conf->period_ns, start;
	int r = ledger_period_last_closed(db, w->id, &last, err, errlen), n = 0;
	if (r < 0 && r != -ENOENT)
		return r;
	if (r == 0) {
		len = last.period_ns;	/* a worker keeps the length it started with */
		start = last.start_ns + last.period_ns;
	} else {
		start = ledger_window_start(w->joined_ns, len);
	}
	const hwprof_t *hw = NULL;
	for (; start < now && (w->left_ns == 0 || start < w->left_ns); start += len) {
		if (start + len > now && w->left_ns == 0)
			break;	/* still attached in it */
		if (hw == NULL && (r = profile_for(b, w->hardware_profile, &hw, err, errlen)) < 0)
			return r;
		period_of(&p, start, len, w->id, w->name, w->hardware_profile, hw);
		if ((r = ledger_period_close(db, &p, attended_in(w, start, len), on_job_delta, b, err, errlen)) < 0 &&
		    r != -EALREADY)
			return r;
		n += r == 0;
	}
	return n;
}

/* What close_orphan needs. */
typedef struct sweep {
	booking_t *b;
	sqlite3 *db;
	char *err;
	size_t errlen;
} sweep_t;

/* An open window that ended and that close_worker left: its worker was
 * not among the attached ones looked at. */
static int close_orphan(void *user, const ledger_period_t *p)
{
	const sweep_t *x = user;
	booking_t *b = x->b;
	journal_worker_span_t w;
	/* Not found among the attached workers (a worker id the journal does
	 * not know): its engine time is all the attendance known. */
	uint64_t att = p->engine_ns;
	if (b->s != NULL && journal_worker_span(sched_journal(b->s), p->worker, &w) == 0)
		att = attended_in(&w, p->start_ns, p->period_ns);
	int r = ledger_period_close(x->db, p, att, on_job_delta, b, x->err, x->errlen);
	return r == -EALREADY ? 0 : r;
}

/* Closes every window that can close by now; returns how many closed. */
static int close_windows(booking_t *b, sqlite3 *db, int64_t now, char *err, size_t errlen)
{
	int n = 0, r;
	if (b->s != NULL) {
		journal_worker_span_t *w = NULL;
		size_t nw = 0;
		if ((r = journal_workers_attached(sched_journal(b->s), b->since_ns, &w, &nw)) < 0) {
			snprintf(err, errlen, "booking: the workers' attached times: %s", strerror(-r));
			return r;
		}
		for (size_t i = 0; i < nw && r >= 0; i++)
			if ((r = close_worker(b, db, &w[i], now, err, errlen)) > 0)
				n += r;
		free(w);
		if (r < 0)
			return r;
	}
	sweep_t x = { b, db, err, errlen };
	if ((r = ledger_period_each_ended(db, now, close_orphan, &x, err, errlen)) < 0)
		return r;
	n += r;
	b->since_ns = now - LEDGER_DAY_NS;
	b->next_due_ns = ledger_window_start(now, b->conf->period_ns) + b->conf->period_ns;
	return n;
}

/* How often margind's loop closes windows when no window end comes
 * sooner: workers that leave get their last window closed within this
 * (a query of the attached workers and one per worker each time). */
#define TICK_MAX_NS (10 * 1000000000LL)

int booking_tick(void *user, sqlite3 *db, int64_t wall_ns, int64_t *ret_next_ns, char *err, size_t errlen)
{
	booking_t *b = user;
	int r = close_windows(b, db, wall_ns, err, errlen);
	if (r > 0)
		mg_log(MG_LOG_INFO, "meter", "accounting windows closed count=%d", r);
	*ret_next_ns = b->next_due_ns < wall_ns + TICK_MAX_NS ? b->next_due_ns : wall_ns + TICK_MAX_NS;
	return r;
}

int booking_book(void *user, sqlite3 *db, const journal_result_ctx_t *ctx, const journal_call_t *calls, size_t n,
		 uint64_t unbooked_busy_ns, int64_t wall_ns, journal_usage_t *sum, char *err, size_t errlen)
{
	booking_t *b = user;
	const char *worker = ctx->worker, *job = ctx->job->name;
	const hwprof_t *hw = NULL;
	int r = profile_for(b, ctx->hardware_profile ? ctx->hardware_profile : "", &hw, err, errlen);
	if (r < 0)
		return r;
	int64_t rate_busy = hw ? hw->rate_busy_micros_per_hour : 0, len = b->conf->period_ns;
	uint64_t *w = NULL, busy = 0;
	int64_t *marg = NULL;
	ledger_row_t *rows = NULL;
	ledger_period_t p;
	char e2[512];

	/* A window that ended since the last closing closes first. */
	if (wall_ns >= b->next_due_ns && (r = close_windows(b, db, wall_ns, err, errlen)) < 0)
		return r;
	for (size_t i = 0; i < n; i++)
		busy += calls[i].busy_ns;

	/* The window the Result commits in (a later one when that has closed:
	 * the wall clock stepped back). The window's calls' marginal costs sum
	 * to round(rate_busy x their busy time): this Result adds the
	 * difference of two such roundings. */
	int64_t start = ledger_window_start(wall_ns, len);
	for (int tries = 0;; tries++, start += len) {
		r = ledger_period_find(db, start, len, worker, &p, e2, sizeof(e2));
		if (r == -ENOENT) {
			period_of(&p, start, len, worker, ctx->worker_name, ctx->hardware_profile, hw);
			break;
		}
		if (r < 0) {
			snprintf(err, errlen, "booking: %s", e2);
			return r;
		}
		if (!p.closed)
			break;
		if (tries == 8) {
			snprintf(err, errlen, "booking: worker %s: the windows after %lld have closed", worker,
				 (long long)start);
			return -EALREADY;
		}
	}
	int64_t m_total = 0;
	if ((r = cost_delta(rate_busy, p.busy_ns, busy, &m_total)) < 0) {
		snprintf(err, errlen, "booking: batch %s worker %s: cost out of range", job, worker);
		return r;
	}

	if (n > 0) {
		r = -ENOMEM;
		if ((w = malloc(n * sizeof(*w))) == NULL || (marg = malloc(n * sizeof(*marg))) == NULL ||
		    (rows = calloc(n, sizeof(*rows))) == NULL) {
			snprintf(err, errlen, "booking: out of memory for %zu calls", n);
			goto done;
		}
		for (size_t i = 0; i < n; i++)
			w[i] = calls[i].busy_ns;
		if ((r = meter_allocate(m_total, w, n, marg)) < 0) {
			snprintf(err, errlen, "booking: batch %s worker %s: cannot split the cost: %s", job, worker,
				 strerror(-r));
			goto done;
		}
		bool via_batch = strncmp(job, "sync_", 5) != 0;
		for (size_t i = 0; i < n; i++) {
			const journal_call_t *c = &calls[i];
			/* Loaded = marginal until the window closes. */
			rows[i] = (ledger_row_t){
				.job = c->job, .custom_id = c->custom_id, .line_no = c->line_no, .model = c->model,
				.worker = c->worker, .worker_name = c->worker_name,
				.hardware_profile = hw ? hw->name : c->hardware_profile, .shard = (int64_t)c->shard_id,
				.prompt_tokens = c->prompt_tokens, .completion_tokens = c->completion_tokens,
				.busy_ns = c->busy_ns, .flops = c->flops, .queue_ns = c->queue_ns,
				.first_token_ns = c->first_token_ns, .cost_marginal_micros = marg[i],
				.cost_loaded_micros = marg[i], .answered_at_ns = c->answered_at_ns,
				.currency = hw ? hw->currency : "", .rate_busy_micros_per_hour = rate_busy,
				.rate_idle_micros_per_hour = hw ? hw->rate_idle_micros_per_hour : 0, .via_batch = via_batch,
				.period_start_ns = p.start_ns, .period_ns = p.period_ns, .period_open = true,
				.endpoint = ctx->job->endpoint,
			};
		}
		if ((r = quote_rows(b, rows, n, hw ? hw->currency : b->conf->currency, err, errlen)) < 0)
			goto done;
		if ((r = ledger_insert(db, rows, n, e2, sizeof(e2))) < 0) {
			snprintf(err, errlen, "booking: %s", e2);
			goto done;
		}
	}
	if (n > 0 || busy + unbooked_busy_ns > 0) {
		ledger_period_t add = p;
		add.engine_ns = busy + unbooked_busy_ns;
		add.busy_ns = busy;
		add.calls = (int64_t)n;
		add.marginal_micros = m_total;
		if ((r = ledger_period_add(db, &add, e2, sizeof(e2))) < 0) {
			snprintf(err, errlen, "booking: %s", e2);
			goto done;
		}
	}
	for (size_t i = 0; i < n; i++) {
		sum->calls++;
		sum->prompt_tokens += calls[i].prompt_tokens;
		sum->completion_tokens += calls[i].completion_tokens;
		sum->busy_ns += (int64_t)calls[i].busy_ns;
		sum->flops += (int64_t)calls[i].flops;
		sum->cost_marginal_micros += marg[i];
		sum->cost_loaded_micros += marg[i];
	}
	r = 0;
done:
	free(w);
	free(marg);
	free(rows);
	return r;
}
