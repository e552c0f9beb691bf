/* booking: see booking.h. */
#include "booking.h"
#include "cost.h"
#include "ledger.h"
#include "meter.h"
#include "mg_clock.h"
#include "mg_log.h"
#include "registry.h"

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
	"hardware", "hardware_dir", "prices", "prices_dir", "prices_date", "refs", "currency", "sale_price", NULL,
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
		 "prices_date, refs, currency, sale_price)", mg_config_origin(k->cfg, section, key), key);
	k->r = -EINVAL;
	return 1;
}

static const char *get(const mg_config_t *cfg, const char *key)
{
	const char *v = mg_config_get(cfg, "meter", key);
	return v != NULL && v[0] != '\0' ? v : NULL;
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

	if ((v = get(cfg, "refs")) != NULL) {
		snprintf(list, sizeof(list), "%s", v);
		size_t n = split_list(list, items, BOOKING_MAX_REFS);
		for (size_t i = 0; i < n; i++) {
			bool dup = false;	/* one booked equivalent per (call, reference) */
			for (size_t k = 0; k < c->n_refs && !dup; k++)
				dup = strcmp(c->refs[k], items[i]) == 0;
			if (dup)
				continue;
			if (pricetab_find(c->prices, items[i]) == NULL) {
				snprintf(err, errlen, "%s: [meter] refs: no price \"%s\" in the loaded tables (%s)",
					 mg_config_origin(cfg, "meter", "refs"), items[i], pricetab_name(c->prices));
				r = -ENOENT;
				goto fail;
			}
			if ((c->refs[c->n_refs++] = strdup(items[i])) == NULL)
				goto nomem;
		}
	} else {
		const char *refs[BOOKING_MAX_REFS];
		size_t n = meter_find_default_refs(c->prices, refs, BOOKING_MAX_REFS);
		for (size_t i = 0; i < n; i++)
			if ((c->refs[c->n_refs++] = strdup(refs[i])) == NULL)
				goto nomem;
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
	pricetab_destroy(&c->prices);
	memset(c, 0, sizeof(*c));
}

/* --- margind's flags --------------------------------------------------- */

/* The vector holds the arguments, a NULL, then the strings it owns and
 * another NULL: booking_argv_free finds them there. */
int booking_argv(int argc, char **argv, int *ret_argc, char ***ret_argv, bool *ret_help, char *err, size_t errlen)
{
	static char set[] = "--set";
	size_t cap = 3 * (size_t)argc + 8;
	char **out = calloc(cap, sizeof(*out)), **owned = NULL;
	char *prices = NULL, *kv = NULL;
	size_t plen = 0, n_owned = 0;
	int n = 0, r = -ENOMEM;
	*ret_help = false;
	if (out == NULL || (owned = calloc((size_t)argc + 2, sizeof(*owned))) == NULL)
		goto nomem;
	out[n++] = argv[0];
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = NULL;
		bool hw = strncmp(a, "--hardware", 10) == 0 && (a[10] == '\0' || a[10] == '=');
		bool pr = strncmp(a, "--prices", 8) == 0 && (a[8] == '\0' || a[8] == '=');
		*ret_help |= strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
		if (!hw && !pr) {
			out[n++] = argv[i];
			continue;
		}
		const char *eq = strchr(a, '=');
		if (eq != NULL)
			v = eq + 1;
		else if (i + 1 < argc)
			v = argv[++i];
		if (v == NULL || *v == '\0') {
			snprintf(err, errlen, "option %s needs a value", hw ? "--hardware" : "--prices");
			r = -EINVAL;
			goto fail;
		}
		if (hw) {
			if (asprintf(&kv, "meter.hardware=%s", v) < 0)
				goto nomem;
			out[n++] = set;
			out[n++] = owned[n_owned++] = kv;
		} else {
			size_t l = strlen(v);
			char *np = realloc(prices, plen + l + 2);
			if (np == NULL)
				goto nomem;
			prices = np;
			if (plen > 0)
				prices[plen++] = ',';
			memcpy(prices + plen, v, l + 1);
			plen += l;
		}
	}
	if (prices != NULL) {
		if (asprintf(&kv, "meter.prices=%s", prices) < 0)
			goto nomem;
		out[n++] = set;
		out[n++] = owned[n_owned++] = kv;
	}
	for (size_t k = 0; k < n_owned; k++)
		out[n + 1 + (int)k] = owned[k];
	free(owned);
	free(prices);
	*ret_argc = n;
	*ret_argv = out;
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
fail:
	for (size_t k = 0; owned != NULL && k < n_owned; k++)
		free(owned[k]);
	free(owned);
	free(out);
	free(prices);
	return r;
}

void booking_argv_free(char ***p)
{
	if (p == NULL || *p == NULL)
		return;
	char **a = *p;
	while (*a != NULL)
		a++;
	for (a++; *a != NULL; a++)
		free(*a);
	free(*p);
	*p = NULL;
}

void booking_usage(FILE *f)
{
	fprintf(f,
		"\nmetering ([meter] keys, docs/economics.md):\n"
		"  --hardware PROFILE|FILE  price every worker with this hardware profile (default: the one\n"
		"                        each worker announces, from [meter] hardware_dir; else cpu-2vcpu)\n"
		"  --prices FILE         closed-API price table, INI or LiteLLM .json (repeatable)\n"
		"  --set meter.refs=A,B  reference models of cost reports; also meter.currency=CUR,\n"
		"                        meter.sale_price=P|IN/OUT per 1M tokens (the gross margin gauge)\n");
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
	size_t ref;			/* index in conf->refs */
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
	const pricetab_entry_t *ref_entry[BOOKING_MAX_REFS];
	bool ref_warned[BOOKING_MAX_REFS];
	/* Scratch of one Result's equivalents, kept for the next. */
	ledger_api_t *api;		/* owned: [n calls x n refs] */
	size_t *api_pricing;		/* owned: index in pricings of each */
	size_t cap_api;
	pricing_t *pricings;		/* owned */
	size_t n_pricings, cap_pricings;
	sched_t *s;			/* borrowed */
	int64_t (*now)(void *user);
	int64_t (*joined)(void *user, const char *worker);
	void *now_user, *joined_user;
};

static int64_t clock_now(void *user)
{
	return mg_clock_now_ns();
}

/* The monotonic time the worker registered (sched's clock is the core's
 * mg_clock_now_ns), or -1. */
static int64_t registry_joined(void *user, const char *worker)
{
	booking_t *b = user;
	if (b->s == NULL)
		return -1;
	for (const reg_worker_t *w = registry_first(sched_registry(b->s)); w != NULL; w = w->next)
		if (strcmp(w->id, worker) == 0)
			return w->joined_ns;
	return -1;
}

int booking_new(const booking_conf_t *conf, booking_t **ret)
{
	booking_t *b = calloc(1, sizeof(*b));
	if (b == NULL)
		return -ENOMEM;
	b->conf = conf;
	for (size_t k = 0; k < conf->n_refs && k < BOOKING_MAX_REFS; k++)
		b->ref_entry[k] = conf->prices ? pricetab_find(conf->prices, conf->refs[k]) : NULL;
	b->now = clock_now;
	b->joined = registry_joined;
	b->joined_user = b;
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

void booking_set_clock(booking_t *b, int64_t (*now)(void *user), int64_t (*joined)(void *user, const char *worker),
		       void *user)
{
	b->now = now ? now : clock_now;
	b->now_user = user;
	b->joined = joined ? joined : registry_joined;
	b->joined_user = joined ? user : b;
}

int booking_attach(booking_t *b, sched_t *s, const char *state_dir, char *err, size_t errlen)
{
	char path[BOOKING_PATH_MAX + 16], e2[512];
	sqlite3 *db = NULL;
	snprintf(path, sizeof(path), "%s/margin.db", state_dir);
	int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "%s: cannot open for the meter's columns: %s", path,
			 db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		sqlite3_close(db);
		return -EIO;
	}
	sqlite3_busy_timeout(db, 5000);
	int r = ledger_upgrade(db, e2, sizeof(e2));
	sqlite3_close(db);
	if (r < 0) {
		snprintf(err, errlen, "%s: %s", path, e2);
		return r;
	}
	if (r > 0)
		mg_log(MG_LOG_INFO, "meter", "ledger upgraded: added the meter's columns and closed-API equivalent "
		       "tables count=%d db=%s", r, path);
	b->s = s;
	journal_set_book_fn(sched_journal(s), booking_book, b);
	const booking_conf_t *c = b->conf;
	mg_log(MG_LOG_INFO, "meter", "booking calls hardware=%s fallback=%s hardware_dir=%s prices=%s currency=%s sale_price=%s",
	       c->has_forced ? c->forced.name : "announced", c->has_fallback ? c->fallback.name : "none",
	       c->hardware_dir, pricetab_name(c->prices), c->currency, c->has_sale ? c->sale_text : "none");
	return 0;
}

/* The profile that prices a worker that announced `announced`; NULL when
 * there is none at all (cost 0). Warns once per name. */
static const hwprof_t *profile_for(booking_t *b, const char *announced)
{
	const booking_conf_t *c = b->conf;
	if (c->has_forced)
		return &c->forced;
	for (size_t i = 0; i < b->n_profs; i++)
		if (strcmp(b->profs[i]->announced, announced) == 0)
			return b->profs[i]->hw;
	const hwprof_t *fallback = c->has_fallback ? &c->fallback : NULL;
	prof_t *p = b->n_profs < MAX_PROFILES ? calloc(1, sizeof(*p)) : NULL;
	if (p == NULL) {
		if (!b->warned_full)
			mg_log(MG_LOG_WARN, "meter", "too many hardware profile names announced: pricing new ones as %s",
			       fallback ? fallback->name : "cost 0");
		b->warned_full = true;
		return fallback;
	}
	char err[1024];
	snprintf(p->announced, sizeof(p->announced), "%s", announced);
	/* A name from the wire is only ever a name in the directory
	 * (hwprof_find refuses '/' and leading dots), never a path. */
	if (announced[0] != '\0' && hwprof_find(c->hardware_dir, announced, &p->own, err, sizeof(err)) == 0) {
		p->hw = &p->own;
		mg_log(MG_LOG_INFO, "meter", "hardware profile loaded profile=%s rate_busy_micros_per_hour=%lld "
		       "rate_idle_micros_per_hour=%lld currency=%s file=%s", p->own.name,
		       (long long)p->own.rate_busy_micros_per_hour, (long long)p->own.rate_idle_micros_per_hour,
		       p->own.currency, p->own.origin);
	} else {
		p->hw = fallback;
		if (announced[0] == '\0')
			snprintf(err, sizeof(err), "the worker announced none (margin-worker serve --hardware NAME)");
		mg_log(MG_LOG_WARN, "meter", "unknown hardware profile announced=\"%s\" priced_as=%s err=\"%s\"",
		       announced, fallback ? fallback->name : "nothing (cost 0, no currency)", err);
	}
	b->profs[b->n_profs++] = p;
	return p->hw;
}

/* Carried sums, TEMP tables of the journal's connection: they roll back
 * with the Result and die with the process (worker ids are new after a
 * restart, so nothing needs to outlive it). */
static const char tables_sql[] =
	"CREATE TEMP TABLE IF NOT EXISTS booking_worker ("
	" worker TEXT PRIMARY KEY, since_ns INTEGER NOT NULL,"
	" busy_ns INTEGER NOT NULL, idle_ns INTEGER NOT NULL);"
	"CREATE TEMP TABLE IF NOT EXISTS booking_pair ("
	" job TEXT NOT NULL, worker TEXT NOT NULL,"
	" busy_ns INTEGER NOT NULL, idle_ns INTEGER NOT NULL, PRIMARY KEY (job, worker));";

static int sql_fail(sqlite3 *db, const char *what, char *err, size_t errlen)
{
	snprintf(err, errlen, "booking: %s: %s", what, sqlite3_errmsg(db));
	int ec = sqlite3_errcode(db) & 0xff;
	return ec == SQLITE_NOMEM ? -ENOMEM : ec == SQLITE_BUSY ? -EBUSY : ec == SQLITE_FULL ? -ENOSPC : -EIO;
}

/* Reads up to 3 integers of one row of sql (binding a, b); *found = false
 * when there is none. */
static int read_row(sqlite3 *db, const char *sql, const char *a, const char *b, int64_t *v, int nv, bool *found,
		    char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return sql_fail(db, "prepare", err, errlen);
	sqlite3_bind_text(st, 1, a, -1, SQLITE_STATIC);
	if (b != NULL)
		sqlite3_bind_text(st, 2, b, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	*found = rc == SQLITE_ROW;
	for (int i = 0; *found && i < nv; i++)
		v[i] = sqlite3_column_int64(st, i);
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return sql_fail(db, "select", err, errlen);
	return 0;
}

static int write_row(sqlite3 *db, const char *sql, const char *a, const char *b, const int64_t *v, int nv,
		     char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return sql_fail(db, "prepare", err, errlen);
	int k = 1;
	sqlite3_bind_text(st, k++, a, -1, SQLITE_STATIC);
	if (b != NULL)
		sqlite3_bind_text(st, k++, b, -1, SQLITE_STATIC);
	for (int i = 0; i < nv; i++)
		sqlite3_bind_int64(st, k++, v[i]);
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : sql_fail(db, "write", err, errlen);
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
	size_t n_refs = c->n_refs < BOOKING_MAX_REFS ? c->n_refs : BOOKING_MAX_REFS, n_api = 0;
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
		for (size_t k = 0; k < n_refs; k++) {
			const pricetab_entry_t *e = b->ref_entry[k];
			cost_api_quote_t q;
			char e2[512];
			if (e == NULL || cost_api_quote(c->prices, e, w->prompt_tokens, w->completion_tokens, w->via_batch,
							currency, &q, e2, sizeof(e2)) < 0) {
				if (!b->ref_warned[k])
					mg_log(MG_LOG_WARN, "meter", "closed-API equivalent not booked (reports price such "
					       "calls when asked) batch=%s ref=%s currency=%s err=\"%s\"", w->job,
					       c->refs[k], currency, e ? e2 : "no such price entry");
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
			.ref_model = c->refs[pr->ref], .currency = currency, .price_currency = e->currency,
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

int booking_book(void *user, sqlite3 *db, const journal_result_ctx_t *ctx, const journal_call_t *calls, size_t n,
		 uint64_t unbooked_busy_ns, journal_usage_t *sum, char *err, size_t errlen)
{
	booking_t *b = user;
	const char *worker = ctx->worker, *job = ctx->job->name;
	const hwprof_t *hw = profile_for(b, ctx->hardware_profile ? ctx->hardware_profile : "");
	int64_t rate_busy = hw ? hw->rate_busy_micros_per_hour : 0, rate_idle = hw ? hw->rate_idle_micros_per_hour : 0;
	uint64_t *w = NULL, busy = 0;
	int64_t *marg = NULL, *idle_cost = NULL, *idle = NULL;
	ledger_row_t *rows = NULL;
	char e2[512];
	int r;

	char *msg = NULL;
	if (sqlite3_exec(db, tables_sql, NULL, NULL, &msg) != SQLITE_OK) {
		snprintf(err, errlen, "booking: creating the temp tables: %s", msg ? msg : "?");
		sqlite3_free(msg);
		return -EIO;
	}
	int64_t now = b->now(b->now_user);
	for (size_t i = 0; i < n; i++)
		busy += calls[i].busy_ns;

	/* Idle time of the worker not charged yet. */
	int64_t ws[3] = { 0, 0, 0 };	/* since_ns, busy_ns, idle_ns */
	bool found;
	if ((r = read_row(db, "SELECT since_ns, busy_ns, idle_ns FROM temp.booking_worker WHERE worker = ?1", worker,
			  NULL, ws, 3, &found, err, errlen)) < 0)
		return r;
	ws[1] += (int64_t)(busy + unbooked_busy_ns);
	if (!found) {
		int64_t j = b->joined(b->joined_user, worker);
		/* Unknown: the first Result is charged no idle time. */
		ws[0] = j >= 0 && j <= now ? j : now - ws[1];
	}
	int64_t unexplained = now - ws[0] - ws[1];
	uint64_t idle_g = 0;
	if (n > 0 && unexplained > ws[2]) {
		idle_g = (uint64_t)(unexplained - ws[2]);
		ws[2] = unexplained;
	}

	/* The (batch, worker) carried sums: this group adds the difference of
	 * two roundings, so the pair's calls always sum to one rounding. */
	int64_t ps[2] = { 0, 0 };	/* busy_ns, idle_ns */
	if ((r = read_row(db, "SELECT busy_ns, idle_ns FROM temp.booking_pair WHERE job = ?1 AND worker = ?2", job,
			  worker, ps, 2, &found, err, errlen)) < 0)
		return r;
	int64_t m_total = 0, x_total = 0;
	if ((r = cost_delta(rate_busy, (uint64_t)ps[0], busy, &m_total)) < 0 ||
	    (r = cost_delta(rate_idle, (uint64_t)ps[1], idle_g, &x_total)) < 0) {
		snprintf(err, errlen, "booking: batch %s worker %s: cost out of range", job, worker);
		return r;
	}
	ps[0] += (int64_t)busy;
	ps[1] += (int64_t)idle_g;

	if (n > 0) {
		r = -ENOMEM;
		if ((w = malloc(n * sizeof(*w))) == NULL || (marg = malloc(n * sizeof(*marg))) == NULL ||
		    (idle_cost = malloc(n * sizeof(*idle_cost))) == NULL || (idle = malloc(n * sizeof(*idle))) == NULL ||
		    (rows = calloc(n, sizeof(*rows))) == NULL) {
			snprintf(err, errlen, "booking: out of memory for %zu calls", n);
			goto done;
		}
		for (size_t i = 0; i < n; i++)
			w[i] = calls[i].busy_ns;
		if ((r = meter_allocate(m_total, w, n, marg)) < 0 || (r = meter_allocate(x_total, w, n, idle_cost)) < 0 ||
		    (r = meter_allocate((int64_t)idle_g, w, n, idle)) < 0) {
			snprintf(err, errlen, "booking: batch %s worker %s: cannot split the cost: %s", job, worker,
				 strerror(-r));
			goto done;
		}
		bool via_batch = strncmp(job, "sync_", 5) != 0;
		for (size_t i = 0; i < n; i++) {
			const journal_call_t *c = &calls[i];
			rows[i] = (ledger_row_t){
				.job = c->job, .custom_id = c->custom_id, .line_no = c->line_no, .model = c->model,
				.worker = c->worker, .worker_name = c->worker_name,
				.hardware_profile = hw ? hw->name : c->hardware_profile, .shard = (int64_t)c->shard_id,
				.prompt_tokens = c->prompt_tokens, .completion_tokens = c->completion_tokens,
				.busy_ns = c->busy_ns, .flops = c->flops, .queue_ns = c->queue_ns,
				.first_token_ns = c->first_token_ns, .cost_marginal_micros = marg[i],
				.cost_loaded_micros = marg[i] + idle_cost[i], .answered_at_ns = c->answered_at_ns,
				.idle_ns = (uint64_t)idle[i], .currency = hw ? hw->currency : "",
				.rate_busy_micros_per_hour = rate_busy, .rate_idle_micros_per_hour = rate_idle,
				.via_batch = via_batch,
			};
		}
		if ((r = quote_rows(b, rows, n, hw ? hw->currency : b->conf->currency, err, errlen)) < 0)
			goto done;
		if ((r = ledger_insert(db, rows, n, e2, sizeof(e2))) < 0) {
			snprintf(err, errlen, "booking: %s", e2);
			goto done;
		}
	}
	if ((r = write_row(db, "INSERT OR REPLACE INTO temp.booking_worker VALUES (?1, ?2, ?3, ?4)", worker, NULL, ws, 3,
			   err, errlen)) < 0 ||
	    (r = write_row(db, "INSERT OR REPLACE INTO temp.booking_pair VALUES (?1, ?2, ?3, ?4)", job, worker, ps, 2,
			   err, errlen)) < 0)
		goto done;
	for (size_t i = 0; i < n; i++) {
		sum->calls++;
		sum->prompt_tokens += calls[i].prompt_tokens;
		sum->completion_tokens += calls[i].completion_tokens;
		sum->busy_ns += (int64_t)calls[i].busy_ns;
		sum->flops += (int64_t)calls[i].flops;
		sum->cost_marginal_micros += marg[i];
		sum->cost_loaded_micros += marg[i] + idle_cost[i];
	}
	r = 0;
done:
	free(w);
	free(marg);
	free(idle_cost);
	free(idle);
	free(rows);
	return r;
}
