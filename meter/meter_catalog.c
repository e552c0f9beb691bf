/* meter_catalog: see meter_catalog.h. */
#include "meter_catalog.h"
#include "litellm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>


const char *const meter_default_price_tables[] = { "fx.conf", "closed-2024.conf", "cn-2024-05-after.conf",
						   "embeddings.conf", NULL };
const char *const meter_default_refs[] = { "gpt-4o-mini", "qwen-long", NULL };
const char *const meter_default_embed_refs[] = { "text-embedding-3-small", "text-embedding-3-large",
						 "text-embedding-v3", NULL };
static bool is_file(const char *p)
{
	struct stat st;
	return p[0] != '\0' && stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* A spec names a file rather than an entry of a directory. */
static bool is_path(const char *spec)
{
	return strchr(spec, '/') != NULL || is_file(spec);
}
int meter_load_profile(const char *spec, const char *dir, hwprof_t *ret, char *err, size_t errlen)
{
	if (is_path(spec))
		return hwprof_load(spec, ret, err, errlen);
	if (dir == NULL || dir[0] == '\0') {
		snprintf(err, errlen, "hardware profile %s: not a file, and no profile directory to look the name up in",
			 spec);
		return -ENOENT;
	}
	char name[256];
	snprintf(name, sizeof(name), "%s", spec);
	if (meter_has_suffix(name, ".conf"))
		name[strlen(name) - 5] = '\0';
	return hwprof_find(dir, name, ret, err, errlen);
}

int meter_load_prices(pricetab_t *t, const char *spec, const char *dir, const char *date, char *err, size_t errlen)
{
	char path[8192];
	int n;
	if (is_path(spec) || dir == NULL || dir[0] == '\0') {
		n = snprintf(path, sizeof(path), "%s", spec);
	} else {
		n = snprintf(path, sizeof(path), "%s/%s", dir, spec);
		if (n < (int)sizeof(path) && !is_file(path))
			n = snprintf(path, sizeof(path), "%s/%s.conf", dir, spec);
		if (n < (int)sizeof(path) && !is_file(path))
			return meter_unknown_name("price table", spec, dir, true, err, errlen);
	}
	if (n < 0 || n >= (int)sizeof(path)) {
		snprintf(err, errlen, "price table %.200s: its path is longer than %zu bytes", spec, sizeof(path) - 1);
		return -ENAMETOOLONG;
	}
	if (meter_has_suffix(path, ".json"))
		return litellm_load(t, path, date, NULL, err, errlen);
	return pricetab_load(t, path, err, errlen);
}

int meter_parse_price_entry(const char *text, const char *name, const char *provider, const char *currency,
			    const char *source, pricetab_entry_t *ret, char *err, size_t errlen)
{
	char a[64], *b;
	meter_q_t in, out;
	if (snprintf(a, sizeof(a), "%s", text) >= (int)sizeof(a))
		goto bad;
	b = strchr(a, '/');
	if (b != NULL)
		*b++ = '\0';
	if (meter_q_parse(a, &in) < 0 || meter_q_parse(b ? b : a, &out) < 0 || in.num < 0 || out.num < 0)
		goto bad;
	if (!meter_currency_valid(currency)) {
		snprintf(err, errlen, "price \"%s\": currency \"%s\" is not an ISO 4217 code", text, currency);
		return -EINVAL;
	}
	memset(ret, 0, sizeof(*ret));
	snprintf(ret->name, sizeof(ret->name), "%s", name);
	snprintf(ret->model, sizeof(ret->model), "%s", name);
	snprintf(ret->provider, sizeof(ret->provider), "%s", provider ? provider : "");
	snprintf(ret->mode, sizeof(ret->mode), "chat");
	snprintf(ret->currency, sizeof(ret->currency), "%s", currency);
	ret->in_per_1m = in;
	ret->out_per_1m = out;
	snprintf(ret->in_source, sizeof(ret->in_source), "%s", source);
	snprintf(ret->out_source, sizeof(ret->out_source), "%s", source);
	snprintf(ret->in_date, sizeof(ret->in_date), "as given");
	snprintf(ret->out_date, sizeof(ret->out_date), "as given");
	snprintf(ret->batch_source, sizeof(ret->batch_source), "no batch tier (one price for every call)");
	snprintf(ret->origin, sizeof(ret->origin), "%s", source);
	return 0;
bad:
	snprintf(err, errlen, "price \"%s\": expected P or IN/OUT (non-negative decimals, %s per 1M tokens)", text,
		 currency);
	return -EINVAL;
}

static size_t find_defaults(const char *const *names, const pricetab_t *t, const char **ret, size_t max)
{
	size_t n = 0;
	for (size_t i = 0; names[i] != NULL && n < max; i++)
		if (pricetab_find(t, names[i]) != NULL)
			ret[n++] = names[i];
	return n;
}

size_t meter_find_default_refs(const pricetab_t *t, const char **ret, size_t max)
{
	return find_defaults(meter_default_refs, t, ret, max);
}

size_t meter_find_default_embed_refs(const pricetab_t *t, const char **ret, size_t max)
{
	return find_defaults(meter_default_embed_refs, t, ret, max);
}

bool meter_endpoint_is_embedding(const char *endpoint)
{
	return endpoint != NULL && strcmp(endpoint, METER_ENDPOINT_EMBEDDINGS) == 0;
}

int meter_check_ref_kind(const pricetab_t *t, const char *name, bool embedding, const char *what, char *err,
			 size_t errlen)
{
	const pricetab_entry_t *e = pricetab_find(t, name);
	if (e == NULL) {
		snprintf(err, errlen, "%s: no price \"%s\" in the loaded tables (%s)", what, name, pricetab_name(t));
		return -ENOENT;
	}
	if (pricetab_is_embedding(e) == embedding)
		return 0;
	if (embedding)
		snprintf(err, errlen, "%s: %s is a %s price (mode = %s), not an embedding price: embedding calls are "
			 "compared with mode = embedding entries only (such as text-embedding-3-small)", what, name,
			 e->mode, e->mode);
	else
		snprintf(err, errlen, "%s: %s is an embedding price (mode = embedding): it prices /v1/embeddings calls "
			 "only; list it in [meter] embed_refs", what, name);
	return -EINVAL;
}


int meter_find_entry(const pricetab_t *t, const char *name, const char *what, const pricetab_entry_t **ret,
		     char *err, size_t errlen)
{
	const pricetab_entry_t *e = pricetab_find(t, name);
	if (e != NULL) {
		*ret = e;
		return 0;
	}
	size_t n = pricetab_count(t);
	const char **names = calloc(n ? n : 1, sizeof(*names));
	char list[1536];
	if (names == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		names[i] = pricetab_at(t, i)->name;
	meter_suggest(name, names, n, true, list, sizeof(list));
	free(names);
	snprintf(err, errlen, "no price entry \"%s\" in %s: %s", name, what, list);
	return -ENOENT;
}

/* TABLE:ENTRY: the table alone, its entry looked up in it. */
static int resolve_qualified(const char *spec, const char *colon, const char *dir, pricetab_entry_t *ret,
			     char *ret_table, size_t tablelen, char *err, size_t errlen)
{
	char table[1024], what[1100];
	const pricetab_entry_t *e;
	snprintf(table, sizeof(table), "%.*s", (int)(colon - spec), spec);
	pricetab_t *t = pricetab_new();
	if (t == NULL)
		return -ENOMEM;
	int r = meter_load_prices(t, table, dir, NULL, err, errlen);
	snprintf(what, sizeof(what), "table %s", table);
	if (r == 0 && (r = meter_find_entry(t, colon + 1, what, &e, err, errlen)) == 0) {
		*ret = *e;
		snprintf(ret_table, tablelen, "%s", table);
	}
	pricetab_destroy(&t);
	return r;
}

int meter_resolve_entry(const char *spec, const char *dir, pricetab_entry_t *ret, char *ret_table, size_t tablelen,
			char *err, size_t errlen)
{
	const char *colon = strchr(spec, ':');
	if (colon != NULL)
		return resolve_qualified(spec, colon, dir, ret, ret_table, tablelen, err, errlen);
	size_t n_tables, n_all = 0, n_hits = 0;
	char **tables = meter_dir_names(dir, true, &n_tables);
	char **all = NULL;	/* owned: "TABLE:ENTRY" of every entry */
	char hits[1024] = "", list[1536];
	int r = 0;
	if (tables == NULL) {
		snprintf(err, errlen, "price entry \"%s\": no price tables to look it up in (%s: %s)", spec,
			 dir ? dir : "no prices directory", strerror(errno ? errno : ENOENT));
		return -ENOENT;
	}
	for (size_t i = 0; i < n_tables && r == 0; i++) {
		pricetab_t *t = pricetab_new();
		if (t == NULL) {
			r = -ENOMEM;
			break;
		}
		if ((r = meter_load_prices(t, tables[i], dir, NULL, err, errlen)) == 0) {
			const pricetab_entry_t *e = pricetab_find(t, spec);
			if (e != NULL) {
				if (n_hits++ == 0) {
					*ret = *e;
					snprintf(ret_table, tablelen, "%s", tables[i]);
				}
				size_t used = strlen(hits);
				snprintf(hits + used, sizeof(hits) - used, "%s%s:%s", used ? ", " : "", tables[i], spec);
			}
			size_t m = pricetab_count(t);
			char **nv = realloc(all, (n_all + m + 1) * sizeof(*nv));
			if (nv == NULL)
				r = -ENOMEM;
			else
				all = nv;
			for (size_t k = 0; r == 0 && k < m; k++) {
				size_t l = strlen(tables[i]) + strlen(pricetab_at(t, k)->name) + 2;
				if ((all[n_all] = malloc(l)) == NULL) {
					r = -ENOMEM;
					break;
				}
				snprintf(all[n_all++], l, "%s:%s", tables[i], pricetab_at(t, k)->name);
			}
			if (all != NULL)
				all[n_all] = NULL;
		} else {
			char e2[1024];
			snprintf(e2, sizeof(e2), "%s", err);
			snprintf(err, errlen, "looking up price entry \"%s\" in %s: %s", spec, dir, e2);
		}
		pricetab_destroy(&t);
	}
	if (r == 0 && n_hits > 1) {
		snprintf(err, errlen, "price entry \"%s\" is in %zu tables of %s: give TABLE:ENTRY, one of %s", spec,
			 n_hits, dir, hits);
		r = -EEXIST;
	} else if (r == 0 && n_hits == 0) {
		meter_suggest(spec, (const char *const *)all, n_all, false, list, sizeof(list));
		snprintf(err, errlen, "no price entry \"%s\" in the %zu tables of %s (%zu entries)%s%s", spec, n_tables,
			 dir, n_all, list[0] ? ": " : "", list);
		r = -ENOENT;
	}
	if (r == -ENOMEM)
		snprintf(err, errlen, "out of memory");
	for (size_t i = 0; i < n_all; i++)
		free(all[i]);
	free(all);
	meter_names_free(&tables);
	return r;
}
