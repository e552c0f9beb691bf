/* pricetab: see pricetab.h. */
#include "pricetab.h"
#include "meter_priv.h"
#include "lib/mg_config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pricetab {
	pricetab_entry_t *v;	/* owned */
	size_t n, cap;
	pricetab_fx_t *fx;	/* owned */
	size_t n_fx, cap_fx;
	char **warn;		/* owned, each owned */
	size_t n_warn;
	char name[256];	/* loaded tables, "+"-separated */
};

pricetab_t *pricetab_new(void)
{
	return calloc(1, sizeof(pricetab_t));
}

void pricetab_destroy(pricetab_t **p)
{
	if (p == NULL || *p == NULL)
		return;
	for (size_t i = 0; i < (*p)->n_warn; i++)
		free((*p)->warn[i]);
	free((*p)->warn);
	free((*p)->v);
	free((*p)->fx);
	free(*p);
	*p = NULL;
}

size_t pricetab_count(const pricetab_t *t)
{
	return t->n;
}

const pricetab_entry_t *pricetab_at(const pricetab_t *t, size_t i)
{
	return i < t->n ? &t->v[i] : NULL;
}

const pricetab_entry_t *pricetab_find(const pricetab_t *t, const char *name)
{
	for (size_t i = 0; i < t->n; i++)
		if (strcmp(t->v[i].name, name) == 0)
			return &t->v[i];
	return NULL;
}

const char *pricetab_name(const pricetab_t *t)
{
	return t->name;
}

int pricetab_add(pricetab_t *t, const pricetab_entry_t *e)
{
	for (size_t i = 0; i < t->n; i++)
		if (strcmp(t->v[i].name, e->name) == 0) {
			t->v[i] = *e;
			return 0;
		}
	if (t->n == t->cap) {
		size_t nc = t->cap ? t->cap * 2 : 32;
		pricetab_entry_t *nv = realloc(t->v, nc * sizeof(*nv));
		if (nv == NULL)
			return -ENOMEM;
		t->v = nv;
		t->cap = nc;
	}
	t->v[t->n++] = *e;
	return 0;
}

int pricetab_set_fx(pricetab_t *t, const char *currency, meter_q_t per_usd, const char *source, const char *date)
{
	if (!meter_currency_valid(currency) || per_usd.num <= 0 || per_usd.den <= 0)
		return -EINVAL;
	pricetab_fx_t fx = { .per_usd = per_usd };
	snprintf(fx.currency, sizeof(fx.currency), "%s", currency);
	snprintf(fx.source, sizeof(fx.source), "%s", source ? source : "");
	snprintf(fx.date, sizeof(fx.date), "%s", date ? date : "");
	for (size_t i = 0; i < t->n_fx; i++)
		if (strcmp(t->fx[i].currency, currency) == 0) {
			t->fx[i] = fx;
			return 0;
		}
	if (t->n_fx == t->cap_fx) {
		size_t nc = t->cap_fx ? t->cap_fx * 2 : 4;
		pricetab_fx_t *nv = realloc(t->fx, nc * sizeof(*nv));
		if (nv == NULL)
			return -ENOMEM;
		t->fx = nv;
		t->cap_fx = nc;
	}
	t->fx[t->n_fx++] = fx;
	return 0;
}

const pricetab_fx_t *pricetab_find_fx(const pricetab_t *t, const char *currency)
{
	for (size_t i = 0; i < t->n_fx; i++)
		if (strcmp(t->fx[i].currency, currency) == 0)
			return &t->fx[i];
	return NULL;
}

size_t pricetab_fx_count(const pricetab_t *t)
{
	return t->n_fx;
}

const pricetab_fx_t *pricetab_fx_at(const pricetab_t *t, size_t i)
{
	return i < t->n_fx ? &t->fx[i] : NULL;
}

static int per_usd(const pricetab_t *t, const char *cur, meter_q_t *ret, char *err, size_t errlen)
{
	if (strcmp(cur, "USD") == 0) {
		*ret = METER_Q(1, 1);
		return 0;
	}
	const pricetab_fx_t *fx = t ? pricetab_find_fx(t, cur) : NULL;
	if (fx == NULL) {
		snprintf(err, errlen, "no exchange rate for %s: add [fx] %s_per_USD = ... (with _source and _date) "
			 "to a price file", cur, cur);
		return -ENOENT;
	}
	*ret = fx->per_usd;
	return 0;
}

int pricetab_fx_factor(const pricetab_t *t, const char *from, const char *to, meter_q_t *ret, char *err,
		       size_t errlen)
{
	if (strcmp(from, to) == 0) {
		*ret = METER_Q(1, 1);
		return 0;
	}
	meter_q_t f, g;
	int r;
	if ((r = per_usd(t, from, &f, err, errlen)) < 0 || (r = per_usd(t, to, &g, err, errlen)) < 0)
		return r;
	r = meter_q_div(g, f, ret);
	if (r < 0)
		snprintf(err, errlen, "exchange rate %s -> %s out of range", from, to);
	return r;
}

int pricetab_convert(const pricetab_t *t, int64_t micros, const char *from, const char *to, int64_t *ret,
		     char *err, size_t errlen)
{
	meter_q_t f;
	int r = pricetab_fx_factor(t, from, to, &f, err, errlen);
	if (r < 0)
		return r;
	r = meter_scale(micros, f, ret);
	if (r < 0)
		snprintf(err, errlen, "converting %lld micros %s -> %s: out of range", (long long)micros, from, to);
	return r;
}

bool pricetab_mode_valid(const char *mode)
{
	static const char *const modes[] = { "chat", "completion", "responses", PRICETAB_MODE_EMBEDDING, NULL };
	for (int i = 0; modes[i] != NULL; i++)
		if (strcmp(mode, modes[i]) == 0)
			return true;
	return false;
}

bool pricetab_is_embedding(const pricetab_entry_t *e)
{
	return strcmp(e->mode, PRICETAB_MODE_EMBEDDING) == 0;
}

int pricetab_prices(const pricetab_entry_t *e, uint64_t prompt_tokens, bool via_batch, meter_q_t *ret_in,
		    meter_q_t *ret_out)
{
	meter_q_t in = e->in_per_1m, out = e->out_per_1m;
	if (e->n_bands > 0) {
		size_t i;
		for (i = 0; i < e->n_bands; i++)
			if (prompt_tokens >= e->bands[i].lo && prompt_tokens < e->bands[i].hi)
				break;
		if (i == e->n_bands)
			return -ERANGE;	/* prompt larger than every band */
		in = e->bands[i].in_per_1m;
		out = e->bands[i].out_per_1m;
		if (via_batch && e->has_batch) {
			/* A batch discount applies to the band price. */
			meter_q_t keep;
			int r;
			if ((r = meter_q_sub(METER_Q(1, 1), e->batch_discount, &keep)) < 0 ||
			    (r = meter_q_mul(in, keep, &in)) < 0 || (r = meter_q_mul(out, keep, &out)) < 0)
				return r;
		}
	} else if (via_batch && e->has_batch) {
		in = e->batch_in_per_1m;
		out = e->batch_out_per_1m;
	}
	*ret_in = in;
	*ret_out = out;
	return 0;
}

int pricetab_cache_blend(const pricetab_entry_t *e, meter_q_t in, meter_q_t hit, meter_q_t *ret, bool *ret_applied)
{
	if (hit.num < 0 || meter_q_cmp(hit, METER_Q(1, 1)) > 0)
		return -EINVAL;
	if (!e->has_cached) {
		*ret = in;
		*ret_applied = false;
		return 0;
	}
	meter_q_t miss, a, b;
	int r;
	if ((r = meter_q_sub(METER_Q(1, 1), hit, &miss)) < 0 || (r = meter_q_mul(hit, e->cached_in_per_1m, &a)) < 0 ||
	    (r = meter_q_mul(miss, in, &b)) < 0 || (r = meter_q_add(a, b, ret)) < 0)
		return r;
	*ret_applied = true;
	return 0;
}

size_t pricetab_warning_count(const pricetab_t *t)
{
	return t->n_warn;
}

const char *pricetab_warning_at(const pricetab_t *t, size_t i)
{
	return i < t->n_warn ? t->warn[i] : NULL;
}

int pricetab_add_warning(pricetab_t *t, const char *text)
{
	char **nv = realloc(t->warn, (t->n_warn + 1) * sizeof(*nv));
	if (nv == NULL)
		return -ENOMEM;
	t->warn = nv;
	if ((t->warn[t->n_warn] = strdup(text)) == NULL)
		return -ENOMEM;
	t->n_warn++;
	return 0;
}

/* --- INI --- */

struct load {
	const mg_config_t *cfg;
	char (*sections)[160];	/* owned: distinct section names in order */
	size_t n_sections;
	int rc;
	const char *bad_section, *bad_key;
};

static int collect(void *user, const char *section, const char *key, const char *value)
{
	struct load *l = user;
	(void)value;
	(void)key;
	for (size_t i = 0; i < l->n_sections; i++)
		if (strcmp(l->sections[i], section) == 0)
			return 0;
	if (strlen(section) >= sizeof(l->sections[0])) {
		l->bad_section = section;
		return 1;
	}
	void *nv = realloc(l->sections, (l->n_sections + 1) * sizeof(l->sections[0]));
	if (nv == NULL) {
		l->rc = -ENOMEM;
		return 1;
	}
	l->sections = nv;
	snprintf(l->sections[l->n_sections++], sizeof(l->sections[0]), "%s", section);
	return 0;
}

static const char *const price_numbers[] = {
	"input_per_1m", "output_per_1m", "batch_discount", "batch_input_per_1m", "batch_output_per_1m",
	"cached_input_per_1m", NULL,
};
static const char *const price_texts[] = { "model", "provider", "currency", "mode", "source", "date", "note", NULL };

static bool price_key_known(const char *key)
{
	for (int i = 0; price_texts[i]; i++)
		if (strcmp(key, price_texts[i]) == 0)
			return true;
	for (int i = 0; price_numbers[i]; i++) {
		size_t l = strlen(price_numbers[i]);
		if (strncmp(key, price_numbers[i], l) == 0 &&
		    (key[l] == '\0' || strcmp(key + l, "_source") == 0 || strcmp(key + l, "_date") == 0))
			return true;
	}
	return false;
}

struct keycheck {
	const char *section;
	bool (*known)(const char *key);
	const char *bad;
};

static int check_keys(void *user, const char *section, const char *key, const char *value)
{
	struct keycheck *k = user;
	(void)value;
	if (strcmp(section, k->section) == 0 && !k->known(key)) {
		k->bad = key;
		return 1;
	}
	return 0;
}

static int kerr(const mg_config_t *cfg, const char *section, const char *key, char *err, size_t errlen,
		const char *what)
{
	const char *o = mg_config_origin(cfg, section, key);
	if (o == NULL)
		o = mg_config_origin(cfg, section, "currency");
	snprintf(err, errlen, "%s: [%s] %s: %s", o ? o : "price table", section, key, what);
	return -EINVAL;
}

/* A number of a price entry with its source and date (or the entry's). */
static int price_num(const mg_config_t *cfg, const char *sec, const char *key, bool *present, meter_q_t *v,
		     char *src, size_t srclen, char *date, size_t datelen, char *err, size_t errlen)
{
	char k2[64], what[320];
	const char *s = mg_config_get(cfg, sec, key);
	*present = s != NULL;
	if (s == NULL)
		return 0;
	if (meter_q_parse(s, v) < 0) {
		snprintf(what, sizeof(what), "expected a decimal number such as 2.50 or 0.075, got \"%s\"", s);
		return kerr(cfg, sec, key, err, errlen, what);
	}
	if (v->num < 0)
		return kerr(cfg, sec, key, err, errlen, "must not be negative");
	snprintf(k2, sizeof(k2), "%s_source", key);
	const char *so = mg_config_get(cfg, sec, k2);
	if (so == NULL)
		so = mg_config_get(cfg, sec, "source");
	snprintf(k2, sizeof(k2), "%s_date", key);
	const char *da = mg_config_get(cfg, sec, k2);
	if (da == NULL)
		da = mg_config_get(cfg, sec, "date");
	if (so == NULL || *so == '\0') {
		snprintf(what, sizeof(what), "no source: give %s_source or the entry's source", key);
		return kerr(cfg, sec, key, err, errlen, what);
	}
	if (da == NULL || *da == '\0') {
		snprintf(what, sizeof(what), "no date: give %s_date or the entry's date", key);
		return kerr(cfg, sec, key, err, errlen, what);
	}
	snprintf(src, srclen, "%s", so);
	snprintf(date, datelen, "%s", da);
	return 0;
}

static int parse_price(const mg_config_t *cfg, const char *sec, pricetab_entry_t *e, char *err, size_t errlen)
{
	struct keycheck kc = { sec, price_key_known, NULL };
	bool p_in, p_out, p_disc, p_bin, p_bout;
	char dsrc[PRICETAB_TEXT], ddate[48], bsrc2[PRICETAB_TEXT], bdate2[48];
	int r;
	mg_config_foreach(cfg, check_keys, &kc);
	if (kc.bad != NULL)
		return kerr(cfg, sec, kc.bad, err, errlen, "unknown key (see docs/economics.md for price-table keys)");
	memset(e, 0, sizeof(*e));
	snprintf(e->name, sizeof(e->name), "%s", sec + strlen("price."));
	if (e->name[0] == '\0')
		return kerr(cfg, sec, "name", err, errlen, "empty entry name: write [price.NAME]");
	const char *cur = mg_config_get(cfg, sec, "currency");
	if (cur == NULL)
		return kerr(cfg, sec, "currency", err, errlen, "missing (an ISO 4217 code such as USD or CNY)");
	if (!meter_currency_valid(cur))
		return kerr(cfg, sec, "currency", err, errlen, "expected an ISO 4217 code such as USD or CNY");
	snprintf(e->currency, sizeof(e->currency), "%s", cur);
	const char *s;
	snprintf(e->model, sizeof(e->model), "%s", (s = mg_config_get(cfg, sec, "model")) ? s : e->name);
	snprintf(e->provider, sizeof(e->provider), "%s", (s = mg_config_get(cfg, sec, "provider")) ? s : "");
	snprintf(e->mode, sizeof(e->mode), "%s", (s = mg_config_get(cfg, sec, "mode")) ? s : "chat");
	if (!pricetab_mode_valid(e->mode))
		return kerr(cfg, sec, "mode", err, errlen,
			    "expected chat (the default), completion, responses or embedding");
	bool embed = pricetab_is_embedding(e);
	snprintf(e->note, sizeof(e->note), "%s", (s = mg_config_get(cfg, sec, "note")) ? s : "");
	const char *o = mg_config_origin(cfg, sec, "currency");
	snprintf(e->origin, sizeof(e->origin), "%s", o ? o : "");

	if ((r = price_num(cfg, sec, "input_per_1m", &p_in, &e->in_per_1m, e->in_source, sizeof(e->in_source),
			   e->in_date, sizeof(e->in_date), err, errlen)) < 0 ||
	    (r = price_num(cfg, sec, "output_per_1m", &p_out, &e->out_per_1m, e->out_source,
			   sizeof(e->out_source), e->out_date, sizeof(e->out_date), err, errlen)) < 0)
		return r;
	if (!p_in)
		return kerr(cfg, sec, "input_per_1m", err, errlen, "missing (price per 1M input tokens)");
	if (!p_out && !embed)
		return kerr(cfg, sec, "output_per_1m", err, errlen, "missing (price per 1M output tokens)");
	if (embed && p_out && e->out_per_1m.num != 0)
		return kerr(cfg, sec, "output_per_1m", err, errlen,
			    "an embedding price has no output price (leave it out or give 0: embeddings are "
			    "billed on input tokens only)");
	if (!p_out) {
		e->out_per_1m = METER_Q(0, 1);
		snprintf(e->out_source, sizeof(e->out_source), "embedding: billed on input tokens only");
		snprintf(e->out_date, sizeof(e->out_date), "%s", e->in_date);
	}
	if ((r = price_num(cfg, sec, "batch_discount", &p_disc, &e->batch_discount, dsrc, sizeof(dsrc), ddate,
			   sizeof(ddate), err, errlen)) < 0 ||
	    (r = price_num(cfg, sec, "batch_input_per_1m", &p_bin, &e->batch_in_per_1m, e->batch_source,
			   sizeof(e->batch_source), e->batch_date, sizeof(e->batch_date), err, errlen)) < 0 ||
	    (r = price_num(cfg, sec, "batch_output_per_1m", &p_bout, &e->batch_out_per_1m, bsrc2, sizeof(bsrc2),
			   bdate2, sizeof(bdate2), err, errlen)) < 0)
		return r;
	if ((r = price_num(cfg, sec, "cached_input_per_1m", &e->has_cached, &e->cached_in_per_1m, e->cached_source,
			   sizeof(e->cached_source), e->cached_date, sizeof(e->cached_date), err, errlen)) < 0)
		return r;
	if (e->has_cached && meter_q_cmp(e->cached_in_per_1m, e->in_per_1m) > 0)
		return kerr(cfg, sec, "cached_input_per_1m", err, errlen,
			    "above input_per_1m: a cache hit costs at most the list input price");
	if (embed && p_bout && e->batch_out_per_1m.num != 0)
		return kerr(cfg, sec, "batch_output_per_1m", err, errlen,
			    "an embedding price has no output price (leave it out or give 0)");
	if (embed && p_bin && !p_bout) {
		p_bout = true;	/* 0: embeddings have no output tokens */
		e->batch_out_per_1m = METER_Q(0, 1);
	}
	if (p_bin != p_bout)
		return kerr(cfg, sec, p_bin ? "batch_output_per_1m" : "batch_input_per_1m", err, errlen,
			    "missing: give both batch prices, or batch_discount");
	if (p_bin && p_disc)
		return kerr(cfg, sec, "batch_discount", err, errlen,
			    "give either batch_discount or the two batch prices, not both");
	if (p_disc) {
		if (meter_q_cmp(e->batch_discount, METER_Q(1, 1)) > 0)
			return kerr(cfg, sec, "batch_discount", err, errlen,
				    "expected a fraction between 0 and 1 (0.5 = half price)");
		meter_q_t keep;
		if (meter_q_sub(METER_Q(1, 1), e->batch_discount, &keep) < 0 ||
		    meter_q_mul(e->in_per_1m, keep, &e->batch_in_per_1m) < 0 ||
		    meter_q_mul(e->out_per_1m, keep, &e->batch_out_per_1m) < 0)
			return kerr(cfg, sec, "batch_discount", err, errlen, "out of range");
		e->has_batch = e->batch_discount.num > 0;	/* 0: stated "no batch tier" */
		snprintf(e->batch_source, sizeof(e->batch_source), "%s", dsrc);
		snprintf(e->batch_date, sizeof(e->batch_date), "%s", ddate);
	} else if (p_bin) {
		e->has_batch = true;
		meter_q_t keep;
		/* Informative discount from the input price. */
		if (e->in_per_1m.num > 0 && meter_q_div(e->batch_in_per_1m, e->in_per_1m, &keep) == 0)
			meter_q_sub(METER_Q(1, 1), keep, &e->batch_discount);
	} else {
		e->batch_discount = METER_Q(0, 1);
		snprintf(e->batch_source, sizeof(e->batch_source), "no batch price given: batch calls pay list price");
	}
	return 0;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && strcmp(s + a - b, suffix) == 0;
}

static bool fx_key_known(const char *key)
{
	const char *p = strstr(key, "_per_USD");
	return p != NULL && p == key + 3 &&
	       (strcmp(p, "_per_USD") == 0 || strcmp(p, "_per_USD_source") == 0 || strcmp(p, "_per_USD_date") == 0);
}

static bool table_key_known(const char *key)
{
	return strcmp(key, "name") == 0 || strcmp(key, "description") == 0;
}

struct fxctx {
	const mg_config_t *cfg;
	pricetab_fx_t *out;
	size_t n, cap;
	char *err;
	size_t errlen;
	int rc;
};

static int on_fx(void *user, const char *section, const char *key, const char *value)
{
	struct fxctx *c = user;
	if (strcmp(section, "fx") != 0 || ends_with(key, "_source") || ends_with(key, "_date"))
		return 0;
	char cur[4] = { 0 }, k2[64];
	memcpy(cur, key, 3);
	if (!meter_currency_valid(cur)) {
		c->rc = kerr(c->cfg, "fx", key, c->err, c->errlen, "expected CUR_per_USD with an ISO 4217 code");
		return 1;
	}
	pricetab_fx_t fx = { 0 };
	snprintf(fx.currency, sizeof(fx.currency), "%s", cur);
	if (meter_q_parse(value, &fx.per_usd) < 0 || fx.per_usd.num <= 0) {
		c->rc = kerr(c->cfg, "fx", key, c->err, c->errlen, "expected a positive decimal number such as 7.2");
		return 1;
	}
	snprintf(k2, sizeof(k2), "%s_source", key);
	const char *s = mg_config_get(c->cfg, "fx", k2);
	snprintf(k2, sizeof(k2), "%s_date", key);
	const char *d = mg_config_get(c->cfg, "fx", k2);
	if (s == NULL || *s == '\0' || d == NULL || *d == '\0') {
		char what[128];
		snprintf(what, sizeof(what), "missing %s_%s: every exchange rate needs a source and a date", key,
			 s == NULL || *s == '\0' ? "source" : "date");
		c->rc = kerr(c->cfg, "fx", key, c->err, c->errlen, what);
		return 1;
	}
	snprintf(fx.source, sizeof(fx.source), "%s", s);
	snprintf(fx.date, sizeof(fx.date), "%s", d);
	if (c->n == c->cap) {
		size_t nc = c->cap ? c->cap * 2 : 4;
		void *nv = realloc(c->out, nc * sizeof(*c->out));
		if (nv == NULL) {
			c->rc = -ENOMEM;
			return 1;
		}
		c->out = nv;
		c->cap = nc;
	}
	c->out[c->n++] = fx;
	return 0;
}

static int load_cfg(pricetab_t *t, const mg_config_t *cfg, const char *file, char *err, size_t errlen)
{
	struct load l = { .cfg = cfg };
	pricetab_entry_t *entries = NULL;
	size_t n_entries = 0;
	struct fxctx fc = { .cfg = cfg, .err = err, .errlen = errlen };
	char tname[128] = "";
	int r = 0;

	mg_config_foreach(cfg, collect, &l);
	if (l.rc < 0) {
		r = l.rc;
		goto fail;
	}
	if (l.bad_section != NULL) {
		snprintf(err, errlen, "%s: [%.40s...]: section name too long", file, l.bad_section);
		r = -EINVAL;
		goto fail;
	}
	if (l.n_sections > 0 && (entries = calloc(l.n_sections, sizeof(*entries))) == NULL) {
		r = -ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < l.n_sections; i++) {
		const char *sec = l.sections[i];
		if (strncmp(sec, "price.", 6) == 0) {
			if ((r = parse_price(cfg, sec, &entries[n_entries], err, errlen)) < 0)
				goto fail;
			n_entries++;
		} else if (strcmp(sec, "fx") == 0 || strcmp(sec, "table") == 0) {
			struct keycheck kc = { sec, sec[0] == 'f' ? fx_key_known : table_key_known, NULL };
			mg_config_foreach(cfg, check_keys, &kc);
			if (kc.bad != NULL) {
				r = kerr(cfg, sec, kc.bad, err, errlen,
					 sec[0] == 'f' ? "unknown key: expected CUR_per_USD (+ _source, _date)"
						       : "unknown key: expected name or description");
				goto fail;
			}
		} else {
			snprintf(err, errlen, "%s: [%s]: unknown section (expected [table], [fx] or [price.NAME])",
				 file, sec);
			r = -EINVAL;
			goto fail;
		}
	}
	mg_config_foreach(cfg, on_fx, &fc);
	if (fc.rc < 0) {
		r = fc.rc;
		goto fail;
	}
	const char *tn = mg_config_get(cfg, "table", "name");
	if (tn != NULL)
		snprintf(tname, sizeof(tname), "%s", tn);

	/* Commit: nothing below fails except ENOMEM. */
	for (size_t i = 0; i < n_entries; i++) {
		if ((r = pricetab_add(t, &entries[i])) < 0)
			goto fail;
		const pricetab_entry_t *e = &entries[i];
		if (!pricetab_is_embedding(e) && meter_q_cmp(e->out_per_1m, e->in_per_1m) < 0) {
			char w[400], a[48], b[48];
			snprintf(w, sizeof(w), "%s: [price.%s]: output price %s below input price %s %s per 1M tokens: "
				 "check for a typo", file, e->name, meter_q_format(e->out_per_1m, a, sizeof(a)),
				 meter_q_format(e->in_per_1m, b, sizeof(b)), e->currency);
			if ((r = pricetab_add_warning(t, w)) < 0)
				goto fail;
		}
	}
	for (size_t i = 0; i < fc.n; i++)
		if ((r = pricetab_set_fx(t, fc.out[i].currency, fc.out[i].per_usd, fc.out[i].source,
					 fc.out[i].date)) < 0)
			goto fail;
	/* The table's name lists what was loaded: "fx+cn-2024-05-after". */
	const char *add = tname[0] != '\0' ? tname : file;
	if (strstr(t->name, add) == NULL) {
		size_t used = strlen(t->name);
		snprintf(t->name + used, sizeof(t->name) - used, "%s%s", used ? "+" : "", add);
	}
	r = 0;
fail:
	free(fc.out);
	free(entries);
	free(l.sections);
	return r;
}

int pricetab_load(pricetab_t *t, const char *path, char *err, size_t errlen)
{
	mg_config_t *cfg = mg_config_new();
	if (cfg == NULL)
		return -ENOMEM;
	int r = mg_config_load(cfg, path, err, errlen);
	if (r == 0)
		r = load_cfg(t, cfg, path, err, errlen);
	mg_config_destroy(&cfg);
	return r;
}

int pricetab_load_string(pricetab_t *t, const char *name, const char *text, char *err, size_t errlen)
{
	mg_config_t *cfg = mg_config_new();
	if (cfg == NULL)
		return -ENOMEM;
	int r = mg_config_load_string(cfg, name, text, err, errlen);
	if (r == 0)
		r = load_cfg(t, cfg, name, err, errlen);
	mg_config_destroy(&cfg);
	return r;
}
