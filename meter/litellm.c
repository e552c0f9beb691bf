/* litellm: see litellm.h. */
#include "litellm.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

int litellm_exact(double v, int scale_pow10, meter_q_t *ret)
{
	if (!isfinite(v))
		return -EINVAL;
	char buf[64];
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(buf, sizeof(buf), "%.*g", prec, v);
		if (strtod(buf, NULL) == v)
			break;
	}
	meter_q_t q;
	int r = meter_q_parse(buf, &q);
	if (r < 0)
		return r;
	meter_q_t scale = METER_Q(1, 1);
	for (int i = 0; i < scale_pow10; i++)
		scale.num *= 10;
	return meter_q_mul(q, scale, ret);
}

static const char *type_name(const json_t *j)
{
	switch (json_typeof(j)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER: return "an integer";
	case JSON_REAL: return "a number";
	case JSON_TRUE: return "true";
	case JSON_FALSE: return "false";
	case JSON_NULL: return "null";
	}
	return "?";
}

/* A price field: -ENOENT when absent (or null), else 0 with *ret per 1M. */
static int get_price(const json_t *obj, const char *field, const char *name, const char *model, meter_q_t *ret,
		     char *err, size_t errlen)
{
	const json_t *j = json_object_get(obj, field);
	if (j == NULL || json_is_null(j))
		return -ENOENT;
	if (!json_is_number(j)) {
		snprintf(err, errlen, "%s: \"%s\": %s: expected a number (USD per token), got %s", name, model, field,
			 type_name(j));
		return -EINVAL;
	}
	double v = json_number_value(j);
	if (v < 0) {
		snprintf(err, errlen, "%s: \"%s\": %s: negative price %g", name, model, field, v);
		return -EINVAL;
	}
	if (litellm_exact(v, 6, ret) < 0) {
		snprintf(err, errlen, "%s: \"%s\": %s: %g is out of range", name, model, field, v);
		return -EINVAL;
	}
	return 0;
}

static int get_string(const json_t *obj, const char *field, const char *name, const char *model,
		      const char **ret, char *err, size_t errlen)
{
	const json_t *j = json_object_get(obj, field);
	*ret = NULL;
	if (j == NULL || json_is_null(j))
		return 0;
	if (!json_is_string(j)) {
		snprintf(err, errlen, "%s: \"%s\": %s: expected a string, got %s", name, model, field, type_name(j));
		return -EINVAL;
	}
	*ret = json_string_value(j);
	return 0;
}

static int parse_bands(const json_t *arr, const char *name, const char *model, pricetab_entry_t *e, char *err,
		       size_t errlen)
{
	if (!json_is_array(arr)) {
		snprintf(err, errlen, "%s: \"%s\": tiered_pricing: expected an array, got %s", name, model,
			 type_name(arr));
		return -EINVAL;
	}
	size_t i;
	json_t *b;
	json_array_foreach(arr, i, b) {
		char field[64];
		if (i >= PRICETAB_MAX_BANDS) {
			snprintf(err, errlen, "%s: \"%s\": tiered_pricing: more than %d bands", name, model,
				 PRICETAB_MAX_BANDS);
			return -EINVAL;
		}
		snprintf(field, sizeof(field), "tiered_pricing[%zu]", i);
		if (!json_is_object(b)) {
			snprintf(err, errlen, "%s: \"%s\": %s: expected an object, got %s", name, model, field,
				 type_name(b));
			return -EINVAL;
		}
		pricetab_band_t *band = &e->bands[i];
		int r;
		char f2[96];
		snprintf(f2, sizeof(f2), "%s.input_cost_per_token", field);
		if ((r = get_price(b, "input_cost_per_token", name, model, &band->in_per_1m, err, errlen)) == -ENOENT) {
			snprintf(err, errlen, "%s: \"%s\": %s: missing", name, model, f2);
			return -EINVAL;
		}
		if (r < 0)
			return r;
		snprintf(f2, sizeof(f2), "%s.output_cost_per_token", field);
		if ((r = get_price(b, "output_cost_per_token", name, model, &band->out_per_1m, err, errlen)) == -ENOENT) {
			snprintf(err, errlen, "%s: \"%s\": %s: missing", name, model, f2);
			return -EINVAL;
		}
		if (r < 0)
			return r;
		const json_t *range = json_object_get(b, "range");
		if (!json_is_array(range) || json_array_size(range) != 2 ||
		    !json_is_number(json_array_get(range, 0)) || !json_is_number(json_array_get(range, 1))) {
			snprintf(err, errlen, "%s: \"%s\": %s.range: expected [lo, hi] (input tokens)", name, model, field);
			return -EINVAL;
		}
		double lo = json_number_value(json_array_get(range, 0)), hi = json_number_value(json_array_get(range, 1));
		if (!(lo >= 0 && hi > lo && hi < 1.8e19)) {
			snprintf(err, errlen, "%s: \"%s\": %s.range: [%g, %g] is not a band of input tokens", name, model,
				 field, lo, hi);
			return -EINVAL;
		}
		band->lo = (uint64_t)lo;
		band->hi = (uint64_t)hi;
		e->n_bands = i + 1;
	}
	if (e->n_bands == 0) {
		snprintf(err, errlen, "%s: \"%s\": tiered_pricing: empty", name, model);
		return -EINVAL;
	}
	/* The first band's prices stand for the entry in listings. */
	e->in_per_1m = e->bands[0].in_per_1m;
	e->out_per_1m = e->bands[0].out_per_1m;
	return 0;
}

struct pending {
	pricetab_entry_t *v;
	size_t n, cap;
	char **warn;
	size_t n_warn;
};

static int pend_warn(struct pending *p, const char *name, const char *model, const char *what)
{
	char w[512], **nv;
	snprintf(w, sizeof(w), "%s: \"%s\": %s", name, model, what);
	if ((nv = realloc(p->warn, (p->n_warn + 1) * sizeof(*nv))) == NULL)
		return -ENOMEM;
	p->warn = nv;
	if ((p->warn[p->n_warn] = strdup(w)) == NULL)
		return -ENOMEM;
	p->n_warn++;
	return 0;
}

static bool token_mode(const char *mode)
{
	return mode == NULL || strcmp(mode, "chat") == 0 || strcmp(mode, "completion") == 0 ||
	       strcmp(mode, "responses") == 0 || strcmp(mode, PRICETAB_MODE_EMBEDDING) == 0;
}

static int parse_entry(struct pending *p, const char *name, const char *model, const json_t *val,
		       const char *date, litellm_stats_t *st, char *err, size_t errlen)
{
	const char *provider, *mode, *source;
	pricetab_entry_t e;
	meter_q_t bin, bout;
	int r, ri, ro, rbi, rbo;
	char w[256], a[48], b[48];

	if (!json_is_object(val)) {
		snprintf(err, errlen, "%s: \"%s\": expected an object of prices, got %s", name, model, type_name(val));
		return -EINVAL;
	}
	if ((r = get_string(val, "litellm_provider", name, model, &provider, err, errlen)) < 0 ||
	    (r = get_string(val, "mode", name, model, &mode, err, errlen)) < 0 ||
	    (r = get_string(val, "source", name, model, &source, err, errlen)) < 0)
		return r;
	memset(&e, 0, sizeof(e));
	ri = get_price(val, "input_cost_per_token", name, model, &e.in_per_1m, err, errlen);
	if (ri < 0 && ri != -ENOENT)
		return ri;
	ro = get_price(val, "output_cost_per_token", name, model, &e.out_per_1m, err, errlen);
	if (ro < 0 && ro != -ENOENT)
		return ro;
	rbi = get_price(val, "input_cost_per_token_batches", name, model, &bin, err, errlen);
	if (rbi < 0 && rbi != -ENOENT)
		return rbi;
	rbo = get_price(val, "output_cost_per_token_batches", name, model, &bout, err, errlen);
	if (rbo < 0 && rbo != -ENOENT)
		return rbo;
	/* The cache-hit input price: LiteLLM's cache_read_input_token_cost,
	 * or DeepSeek's older input_cost_per_token_cache_hit. */
	int rc = get_price(val, "cache_read_input_token_cost", name, model, &e.cached_in_per_1m, err, errlen);
	if (rc == -ENOENT)
		rc = get_price(val, "input_cost_per_token_cache_hit", name, model, &e.cached_in_per_1m, err, errlen);
	if (rc < 0 && rc != -ENOENT)
		return rc;
	e.has_cached = rc == 0;
	const json_t *tiers = json_object_get(val, "tiered_pricing");
	if (tiers != NULL && !json_is_null(tiers) && ri == -ENOENT) {
		if ((r = parse_bands(tiers, name, model, &e, err, errlen)) < 0)
			return r;
		ri = ro = 0;
	}
	if (!token_mode(mode) || (ri == -ENOENT && ro == -ENOENT)) {
		st->skipped++;
		return 0;
	}
	/* An embedding price is an input price: no output price means 0. */
	bool embed = mode != NULL && strcmp(mode, PRICETAB_MODE_EMBEDDING) == 0;
	if (embed && ri == 0 && ro == -ENOENT) {
		e.out_per_1m = METER_Q(0, 1);
		ro = 0;
	}
	if (embed && rbi == 0 && rbo == -ENOENT) {
		bout = METER_Q(0, 1);
		rbo = 0;
	}
	if (ri == -ENOENT || ro == -ENOENT) {
		st->skipped++;
		return pend_warn(p, name, model, ri == -ENOENT ? "output_cost_per_token without input_cost_per_token: skipped"
							       : "input_cost_per_token without output_cost_per_token: skipped");
	}
	if (strlen(model) >= sizeof(e.name)) {
		st->skipped++;
		return pend_warn(p, name, model, "model key longer than 127 characters: skipped");
	}
	snprintf(e.name, sizeof(e.name), "%s", model);
	snprintf(e.model, sizeof(e.model), "%s", model);
	snprintf(e.provider, sizeof(e.provider), "%s", provider ? provider : "");
	snprintf(e.mode, sizeof(e.mode), "%s", mode ? mode : "chat");
	snprintf(e.currency, sizeof(e.currency), "USD");
	snprintf(e.origin, sizeof(e.origin), "%s", name);
	if (source != NULL)
		snprintf(e.in_source, sizeof(e.in_source), "%.120s (via LiteLLM %.60s)", source, name);
	else
		snprintf(e.in_source, sizeof(e.in_source), "LiteLLM %.150s", name);
	snprintf(e.in_date, sizeof(e.in_date), "%s", date);
	memcpy(e.out_source, e.in_source, sizeof(e.out_source));
	memcpy(e.out_date, e.in_date, sizeof(e.out_date));
	if (e.has_cached) {
		snprintf(e.cached_source, sizeof(e.cached_source), "%.160s (cache read price)", e.in_source);
		memcpy(e.cached_date, e.in_date, sizeof(e.cached_date));
	}
	if (rbi == 0 && rbo == 0) {
		e.has_batch = true;
		e.batch_in_per_1m = bin;
		e.batch_out_per_1m = bout;
		meter_q_t keep;
		if (e.in_per_1m.num > 0 && meter_q_div(bin, e.in_per_1m, &keep) == 0)
			meter_q_sub(METER_Q(1, 1), keep, &e.batch_discount);
		snprintf(e.batch_source, sizeof(e.batch_source), "%.170s (*_cost_per_token_batches)", e.in_source);
		memcpy(e.batch_date, e.in_date, sizeof(e.batch_date));
	} else {
		if (rbi == 0 || rbo == 0)
			if ((r = pend_warn(p, name, model, "only one of input/output_cost_per_token_batches: ignored")) < 0)
				return r;
		snprintf(e.batch_source, sizeof(e.batch_source), "no batch price in LiteLLM: batch calls pay list price");
	}
	if (!embed && meter_q_cmp(e.out_per_1m, e.in_per_1m) < 0) {
		snprintf(w, sizeof(w), "output price %s below input price %s USD per 1M tokens: check for a 10x typo",
			 meter_q_format(e.out_per_1m, a, sizeof(a)), meter_q_format(e.in_per_1m, b, sizeof(b)));
		if ((r = pend_warn(p, name, model, w)) < 0)
			return r;
	}
	if (p->n == p->cap) {
		size_t nc = p->cap ? p->cap * 2 : 64;
		pricetab_entry_t *nv = realloc(p->v, nc * sizeof(*nv));
		if (nv == NULL)
			return -ENOMEM;
		p->v = nv;
		p->cap = nc;
	}
	p->v[p->n++] = e;
	st->loaded++;
	return 0;
}

int litellm_load_buffer(pricetab_t *t, const char *name, const char *text, size_t len, const char *date,
			litellm_stats_t *ret_stats, char *err, size_t errlen)
{
	json_error_t je;
	struct pending p = { 0 };
	litellm_stats_t st = { 0, 0 };
	int r = 0;
	json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
	if (root == NULL) {
		snprintf(err, errlen, "%s:%d:%d: %s", name, je.line, je.column, je.text);
		return -EBADMSG;
	}
	if (!json_is_object(root)) {
		snprintf(err, errlen, "%s: top level: expected an object keyed by model name, got %s", name,
			 type_name(root));
		r = -EINVAL;
		goto fail;
	}
	const char *key;
	json_t *val;
	json_object_foreach(root, key, val) {
		if (strcmp(key, "sample_spec") == 0)
			continue;
		if ((r = parse_entry(&p, name, key, val, date ? date : "undated", &st, err, errlen)) < 0)
			goto fail;
	}
	for (size_t i = 0; i < p.n; i++)
		if ((r = pricetab_add(t, &p.v[i])) < 0)
			goto fail;
	for (size_t i = 0; i < p.n_warn; i++)
		if ((r = pricetab_add_warning(t, p.warn[i])) < 0)
			goto fail;
	if (ret_stats != NULL)
		*ret_stats = st;
	r = 0;
fail:
	for (size_t i = 0; i < p.n_warn; i++)
		free(p.warn[i]);
	free(p.warn);
	free(p.v);
	json_decref(root);
	return r;
}

int litellm_load(pricetab_t *t, const char *path, const char *date, litellm_stats_t *ret_stats, char *err,
		 size_t errlen)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL, dbuf[48];
	int r;
	if (f == NULL) {
		r = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(-r));
		return r;
	}
	struct stat sb;
	if (fstat(fileno(f), &sb) < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(-r));
		goto fail;
	}
	if (sb.st_size > (off_t)256 * 1024 * 1024) {
		snprintf(err, errlen, "%s: larger than 256 MiB", path);
		r = -EFBIG;
		goto fail;
	}
	if ((buf = malloc((size_t)sb.st_size + 1)) == NULL) {
		r = -ENOMEM;
		goto fail;
	}
	size_t n = fread(buf, 1, (size_t)sb.st_size, f);
	if (n != (size_t)sb.st_size) {
		snprintf(err, errlen, "%s: short read", path);
		r = -EIO;
		goto fail;
	}
	if (date == NULL) {
		struct tm tm;
		time_t mt = sb.st_mtime;
		gmtime_r(&mt, &tm);
		strftime(dbuf, sizeof(dbuf), "%Y-%m-%d (file modification date)", &tm);
		date = dbuf;
	}
	r = litellm_load_buffer(t, path, buf, n, date, ret_stats, err, errlen);
fail:
	free(buf);
	fclose(f);
	return r;
}
