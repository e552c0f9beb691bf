/* meter: see meter.h. */
#include "meter.h"
#include "meter_priv.h"
#include "hwprof.h"
#include "litellm.h"
#include "pricetab.h"
#include "mg_split.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Where `meson install` puts deploy/hardware and deploy/prices, and the
 * source tree's deploy/ for a build that was never installed (both set by
 * meter/meson.build; "" = no source tree). */
#ifndef MARGIN_DATADIR
#define MARGIN_DATADIR "/usr/local/share/margin"
#endif
#ifndef MARGIN_SOURCE_DEPLOY
#define MARGIN_SOURCE_DEPLOY ""
#endif

#define I128_MAX ((meter_i128)(((mg_u128)1 << 127) - 1))

static meter_i128 gcd128(meter_i128 a, meter_i128 b)
{
	if (a < 0)
		a = -a;
	if (b < 0)
		b = -b;
	while (b != 0) {
		meter_i128 t = a % b;
		a = b;
		b = t;
	}
	return a;
}

static meter_wq_t wq_reduce(meter_i128 num, meter_i128 den)
{
	if (den < 0) {
		num = -num;
		den = -den;
	}
	meter_i128 g = gcd128(num, den);
	if (g > 1) {
		num /= g;
		den /= g;
	}
	if (num == 0)
		den = 1;
	return (meter_wq_t){ num, den };
}

meter_wq_t meter_wq_from(meter_q_t q)
{
	return wq_reduce(q.num, q.den);
}

meter_wq_t meter_wq_int(int64_t v)
{
	return (meter_wq_t){ v, 1 };
}

int meter_wq_mul(meter_wq_t a, meter_wq_t b, meter_wq_t *ret)
{
	/* Cross-reduce first so that exact products of reduced fractions stay
	 * small: (a.num/g1 * b.num/g2) / (a.den/g2 * b.den/g1). */
	meter_i128 g1 = gcd128(a.num, b.den), g2 = gcd128(b.num, a.den);
	if (g1 == 0)
		g1 = 1;
	if (g2 == 0)
		g2 = 1;
	meter_i128 n, d;
	if (__builtin_mul_overflow(a.num / g1, b.num / g2, &n) ||
	    __builtin_mul_overflow(a.den / g2, b.den / g1, &d))
		return -ERANGE;
	*ret = wq_reduce(n, d);
	return 0;
}

int meter_wq_div(meter_wq_t a, meter_wq_t b, meter_wq_t *ret)
{
	if (b.num == 0)
		return -EDOM;
	meter_wq_t inv = b.num < 0 ? (meter_wq_t){ -b.den, -b.num } : (meter_wq_t){ b.den, b.num };
	return meter_wq_mul(a, inv, ret);
}

int meter_wq_add(meter_wq_t a, meter_wq_t b, meter_wq_t *ret)
{
	/* a/x + b/y over lcm(x, y). */
	meter_i128 g = gcd128(a.den, b.den);
	meter_i128 ya = b.den / g, xb = a.den / g, n1, n2, n, d;
	if (__builtin_mul_overflow(a.num, ya, &n1) || __builtin_mul_overflow(b.num, xb, &n2) ||
	    __builtin_add_overflow(n1, n2, &n) || __builtin_mul_overflow(a.den, ya, &d))
		return -ERANGE;
	*ret = wq_reduce(n, d);
	return 0;
}

int meter_wq_sub(meter_wq_t a, meter_wq_t b, meter_wq_t *ret)
{
	b.num = -b.num;
	return meter_wq_add(a, b, ret);
}

meter_i128 meter_div_round(meter_i128 num, meter_i128 den)
{
	meter_i128 q = num / den, r = num % den;
	if (r < 0)
		r = -r;
	/* |r| >= den - |r| <=> 2|r| >= den, without overflowing 2|r|. */
	if (r >= den - r)
		q += num < 0 ? -1 : 1;
	return q;
}

int meter_wq_round(meter_wq_t a, int64_t *ret)
{
	meter_i128 v = meter_div_round(a.num, a.den);
	if (v > INT64_MAX || v < INT64_MIN)
		return -ERANGE;
	*ret = (int64_t)v;
	return 0;
}

int meter_wq_narrow(meter_wq_t a, meter_q_t *ret)
{
	if (a.num > INT64_MAX || a.num < INT64_MIN || a.den > INT64_MAX)
		return -ERANGE;
	*ret = (meter_q_t){ (int64_t)a.num, (int64_t)a.den };
	return 0;
}

/* --- meter_q_t --- */

int meter_q_parse(const char *s, meter_q_t *ret)
{
	if (s == NULL)
		return -EINVAL;
	while (isspace((unsigned char)*s))
		s++;
	bool neg = false;
	if (*s == '+' || *s == '-')
		neg = *s++ == '-';
	meter_i128 mant = 0;
	int digits = 0, frac = 0;
	bool dot = false;
	for (;; s++) {
		if (*s >= '0' && *s <= '9') {
			if (mant > I128_MAX / 100)	/* far beyond int64 anyway */
				return -ERANGE;
			mant = mant * 10 + (*s - '0');
			digits++;
			if (dot)
				frac++;
		} else if (*s == '.' && !dot) {
			dot = true;
		} else {
			break;
		}
	}
	if (digits == 0)
		return -EINVAL;
	long exp10 = 0;
	if (*s == 'e' || *s == 'E') {
		s++;
		bool eneg = false;
		if (*s == '+' || *s == '-')
			eneg = *s++ == '-';
		if (!(*s >= '0' && *s <= '9'))
			return -EINVAL;
		while (*s >= '0' && *s <= '9') {
			exp10 = exp10 * 10 + (*s++ - '0');
			if (exp10 > 60)
				return -ERANGE;
		}
		if (eneg)
			exp10 = -exp10;
	}
	while (isspace((unsigned char)*s))
		s++;
	if (*s != '\0')
		return -EINVAL;
	exp10 -= frac;
	meter_i128 num = mant, den = 1;
	for (; exp10 > 0; exp10--)
		if (__builtin_mul_overflow(num, 10, &num))
			return -ERANGE;
	for (; exp10 < 0; exp10++)
		if (__builtin_mul_overflow(den, 10, &den))
			return -ERANGE;
	meter_wq_t w = wq_reduce(neg ? -num : num, den);
	return meter_wq_narrow(w, ret);
}

typedef int (*wq_op)(meter_wq_t, meter_wq_t, meter_wq_t *);

static int q_op(wq_op op, meter_q_t a, meter_q_t b, meter_q_t *ret)
{
	meter_wq_t w;
	int r = op(meter_wq_from(a), meter_wq_from(b), &w);
	if (r < 0)
		return r;
	return meter_wq_narrow(w, ret);
}

int meter_q_add(meter_q_t a, meter_q_t b, meter_q_t *ret)
{
	return q_op(meter_wq_add, a, b, ret);
}

int meter_q_sub(meter_q_t a, meter_q_t b, meter_q_t *ret)
{
	return q_op(meter_wq_sub, a, b, ret);
}

int meter_q_mul(meter_q_t a, meter_q_t b, meter_q_t *ret)
{
	return q_op(meter_wq_mul, a, b, ret);
}

int meter_q_div(meter_q_t a, meter_q_t b, meter_q_t *ret)
{
	return q_op(meter_wq_div, a, b, ret);
}

int meter_q_cmp(meter_q_t a, meter_q_t b)
{
	/* Dens are positive: compare a.num * b.den with b.num * a.den. */
	meter_i128 l = (meter_i128)a.num * b.den, r = (meter_i128)b.num * a.den;
	return (l > r) - (l < r);
}

double meter_q_to_double(meter_q_t q)
{
	return (double)q.num / (double)q.den;
}

int meter_q_round(meter_q_t q, int64_t *ret)
{
	return meter_wq_round(meter_wq_from(q), ret);
}

char *meter_q_format(meter_q_t q, char *buf, size_t len)
{
	meter_wq_t w = meter_wq_from(q);
	bool neg = w.num < 0;
	mg_u128 n = (mg_u128)(neg ? -w.num : w.num), d = (mg_u128)w.den;
	mg_u128 ip = n / d, rem = n % d;
	char digits[64];
	int nd = 0;
	bool exact = false;
	for (int i = 0; i < 18; i++) {
		if (rem == 0) {
			exact = true;
			break;
		}
		rem *= 10;
		digits[nd++] = (char)('0' + (int)(rem / d));
		rem %= d;
	}
	if (rem == 0)
		exact = true;
	if (!exact)
		nd = 12;
	char ibuf[48];
	int k = 0;
	do {
		ibuf[k++] = (char)('0' + (int)(ip % 10));
		ip /= 10;
	} while (ip != 0 && k < 47);
	size_t o = 0;
	if (len == 0)
		return buf;
#define PUT(c) do { if (o + 1 < len) buf[o++] = (c); } while (0)
	if (neg)
		PUT('-');
	while (k > 0)
		PUT(ibuf[--k]);
	if (nd > 0) {
		PUT('.');
		for (int i = 0; i < nd; i++)
			PUT(digits[i]);
	}
	if (!exact) {
		PUT('.');
		PUT('.');
		PUT('.');
	}
#undef PUT
	buf[o] = '\0';
	return buf;
}

/* --- allocation --- */

int meter_allocate(int64_t total, const uint64_t *weights, size_t n, int64_t *ret_parts)
{
	if (total == INT64_MIN)
		return -ERANGE;
	if (n == 0)
		return total == 0 ? 0 : -EINVAL;
	if (total < 0) {
		int r = meter_allocate(-total, weights, n, ret_parts);
		if (r < 0)
			return r;
		for (size_t i = 0; i < n; i++)
			ret_parts[i] = -ret_parts[i];
		return 0;
	}
	/* Each part is at most total <= INT64_MAX, so it reads back as the same
	 * int64_t (a signed and an unsigned type may alias). */
	mg_split_largest_remainder((uint64_t)total, weights, n, (uint64_t *)ret_parts);
	return 0;
}

/* --- costs and margins --- */

static int narrow128(meter_i128 v, int64_t *ret)
{
	if (v > INT64_MAX || v < INT64_MIN)
		return -ERANGE;
	*ret = (int64_t)v;
	return 0;
}

int meter_cost_of_period(int64_t rate_busy, uint64_t busy_ns, int64_t rate_idle, uint64_t idle_ns,
			 int64_t *ret_micros)
{
	if (rate_busy < 0 || rate_idle < 0)
		return -EINVAL;
	/* Each product is < 2^63 * 2^64 = 2^127, the sum may not be: use
	 * unsigned 128 bits with an explicit overflow check. */
	mg_u128 a = (mg_u128)(uint64_t)rate_busy * busy_ns;
	mg_u128 b = (mg_u128)(uint64_t)rate_idle * idle_ns;
	mg_u128 s = a + b;
	if (s < a)
		return -ERANGE;
	const mg_u128 h = METER_NS_PER_HOUR;
	mg_u128 q = s / h, r = s % h;
	if (r >= h - r)
		q++;
	if (q > INT64_MAX)
		return -ERANGE;
	*ret_micros = (int64_t)q;
	return 0;
}

int meter_cost_of_ns(int64_t rate_micros_per_hour, uint64_t ns, int64_t *ret_micros)
{
	return meter_cost_of_period(rate_micros_per_hour, ns, 0, 0, ret_micros);
}

int meter_scale(int64_t a, meter_q_t factor, int64_t *ret)
{
	if (factor.den <= 0)
		return -EDOM;
	meter_i128 p = (meter_i128)a * factor.num;	/* < 2^126 */
	return narrow128(meter_div_round(p, factor.den), ret);
}

int meter_gross_margin_ppm(int64_t price_micros, int64_t cost_micros, int64_t *ret_ppm)
{
	if (price_micros <= 0)
		return -EDOM;
	meter_i128 n = ((meter_i128)price_micros - cost_micros) * METER_PPM;
	return narrow128(meter_div_round(n, price_micros), ret_ppm);
}

int meter_markup_ppm(int64_t price_micros, int64_t cost_micros, int64_t *ret_ppm)
{
	if (cost_micros <= 0)
		return -EDOM;
	meter_i128 n = ((meter_i128)price_micros - cost_micros) * METER_PPM;
	return narrow128(meter_div_round(n, cost_micros), ret_ppm);
}

int meter_breakeven_days(int64_t one_off_micros, int64_t saving_per_day_micros, meter_q_t *ret_days)
{
	if (saving_per_day_micros <= 0)
		return -EDOM;
	return meter_q_div(METER_Q(one_off_micros, 1), METER_Q(saving_per_day_micros, 1), ret_days);
}

/* --- formatting --- */

char *meter_format_micros(int64_t micros, char *buf, size_t len)
{
	uint64_t a = micros < 0 ? (uint64_t)0 - (uint64_t)micros : (uint64_t)micros;
	snprintf(buf, len, "%s%llu.%06llu", micros < 0 ? "-" : "",
		 (unsigned long long)(a / METER_MICROS), (unsigned long long)(a % METER_MICROS));
	return buf;
}

char *meter_format_ppm_pct(int64_t ppm, char *buf, size_t len)
{
	/* ppm / 100 = hundredths of a percent. */
	int64_t c = (int64_t)meter_div_round(ppm, 100);
	uint64_t a = c < 0 ? (uint64_t)0 - (uint64_t)c : (uint64_t)c;
	snprintf(buf, len, "%s%llu.%02llu%%", c < 0 ? "-" : "", (unsigned long long)(a / 100),
		 (unsigned long long)(a % 100));
	return buf;
}

bool meter_currency_valid(const char *code)
{
	if (code == NULL || strlen(code) != 3)
		return false;
	for (int i = 0; i < 3; i++)
		if (code[i] < 'A' || code[i] > 'Z')
			return false;
	return true;
}

/* --- data files --- */

const char *const meter_default_price_tables[] = { "fx.conf", "closed-2024.conf", "cn-2024-05-after.conf",
						   "embeddings.conf", NULL };
const char *const meter_default_refs[] = { "gpt-4o-mini", "qwen-long", NULL };
const char *const meter_default_embed_refs[] = { "text-embedding-3-small", "text-embedding-3-large",
						 "text-embedding-v3", NULL };

static bool is_dir(const char *p)
{
	struct stat st;
	return p[0] != '\0' && stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool is_file(const char *p)
{
	struct stat st;
	return p[0] != '\0' && stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* A spec names a file rather than an entry of a directory. */
static bool is_path(const char *spec)
{
	return strchr(spec, '/') != NULL || is_file(spec);
}

char *meter_default_dir(const char *kind, char *buf, size_t len)
{
	char alt[4096];
	if (len == 0)
		return buf;
	if (snprintf(buf, len, "%s/%s", MARGIN_DATADIR, kind) < (int)len && is_dir(buf))
		return buf;
	if (MARGIN_SOURCE_DEPLOY[0] != '\0' &&
	    snprintf(alt, sizeof(alt), "%s/%s", MARGIN_SOURCE_DEPLOY, kind) < (int)sizeof(alt) && is_dir(alt))
		snprintf(buf, len, "%s", alt);
	return buf;
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
	if (ends_with(name, ".conf"))
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
	if (ends_with(path, ".json"))
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

/* --- names: listing data files, suggesting the close ones -------------- */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void meter_names_free(char ***names)
{
	if (names == NULL || *names == NULL)
		return;
	for (char **p = *names; *p != NULL; p++)
		free(*p);
	free(*names);
	*names = NULL;
}

char **meter_dir_names(const char *dir, bool json, size_t *ret_n)
{
	*ret_n = 0;
	DIR *d = dir != NULL && dir[0] != '\0' ? opendir(dir) : NULL;
	if (d == NULL)
		return NULL;
	char **v = calloc(1, sizeof(*v));
	size_t n = 0, cap = 1;
	struct dirent *de;
	while (v != NULL && (de = readdir(d)) != NULL) {
		const char *nm = de->d_name;
		size_t l = strlen(nm);
		if (nm[0] == '.' || l <= 5 || !(ends_with(nm, ".conf") || (json && ends_with(nm, ".json"))))
			continue;
		if (n + 1 >= cap) {
			char **nv = realloc(v, cap * 2 * sizeof(*nv));
			if (nv == NULL)
				goto nomem;
			v = nv;
			cap *= 2;
		}
		if ((v[n] = strndup(nm, l - 5)) == NULL)
			goto nomem;
		v[++n] = NULL;
	}
	closedir(d);
	if (v == NULL)
		return NULL;
	qsort(v, n, sizeof(*v), cmp_str);
	/* NAME.conf and NAME.json name one table. */
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (k > 0 && strcmp(v[k - 1], v[i]) == 0) {
			free(v[i]);
			continue;
		}
		v[k++] = v[i];
	}
	v[k] = NULL;
	*ret_n = k;
	return v;
nomem:
	closedir(d);
	meter_names_free(&v);
	return NULL;
}

/* Levenshtein distance ignoring ASCII case; names longer than 127 bytes
 * count as far from everything. */
static size_t distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), row[128], prev;
	if (la > 127 || lb > 127)
		return SIZE_MAX;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		prev = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t sub = prev + (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
			size_t best = row[j] + 1 < row[j - 1] + 1 ? row[j] + 1 : row[j - 1] + 1;
			prev = row[j];
			row[j] = sub < best ? sub : best;
		}
	}
	return row[lb];
}

static void app(char *buf, size_t len, size_t *o, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void app(char *buf, size_t len, size_t *o, const char *fmt, ...)
{
	if (*o >= len)
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf + *o, len - *o, fmt, ap);
	va_end(ap);
	*o = n < 0 ? len : *o + (size_t)n;
}

struct close {
	size_t d, i;
};

static int cmp_close(const void *pa, const void *pb)
{
	const struct close *a = pa, *b = pb;
	if (a->d != b->d)
		return a->d < b->d ? -1 : 1;
	return a->i < b->i ? -1 : (a->i > b->i);
}

/* The part of a candidate compared with the name: ENTRY of TABLE:ENTRY. */
static const char *key_of(const char *s)
{
	const char *c = strrchr(s, ':');
	return c != NULL ? c + 1 : s;
}

char *meter_suggest(const char *name, const char *const *names, size_t n, bool list_all, char *buf, size_t len)
{
	size_t o = 0, n_close = 0, limit = strlen(name) / 3;
	struct close close[5];
	if (len == 0)
		return buf;
	buf[0] = '\0';
	if (limit < 1)
		limit = 1;
	for (size_t i = 0; i < n; i++) {
		size_t d = distance(name, key_of(names[i]));
		if (d > limit && strcasestr(key_of(names[i]), name) == NULL)
			continue;
		struct close c = { d, i };
		if (n_close < 5) {
			close[n_close++] = c;
		} else if (cmp_close(&c, &close[4]) < 0) {
			close[4] = c;
		} else {
			continue;
		}
		qsort(close, n_close, sizeof(close[0]), cmp_close);
	}
	for (size_t k = 0; k < n_close; k++)
		app(buf, len, &o, "%s%s", k == 0 ? "did you mean " : k + 1 == n_close ? " or " : ", ",
		    names[close[k].i]);
	if (!list_all) {
		app(buf, len, &o, "%s", n_close > 0 ? "?" : "");
		return buf;
	}
	app(buf, len, &o, "%sknown: ", n_close > 0 ? "? " : "");
	if (n == 0)
		app(buf, len, &o, "(none)");
	for (size_t i = 0; i < n; i++) {
		size_t before = o;
		app(buf, len, &o, "%s%s", i ? ", " : "", names[i]);
		if (o + 4 >= len && i + 1 < n) {
			/* Cut at a whole name, with room for "...". */
			o = before;
			buf[o] = '\0';
			app(buf, len, &o, ", ...");
			break;
		}
	}
	if (o >= len && len > 4)
		snprintf(buf + len - 4, 4, "...");
	return buf;
}

int meter_unknown_name(const char *kind, const char *name, const char *dir, bool json, char *err, size_t errlen)
{
	size_t n;
	char **names = meter_dir_names(dir, json, &n);
	char list[1536], base[256];
	/* NAME.conf is compared as NAME; the message says what was given. */
	snprintf(base, sizeof(base), "%s", name);
	if (ends_with(base, ".conf") || (json && ends_with(base, ".json")))
		base[strlen(base) - 5] = '\0';
	if (names == NULL)
		snprintf(list, sizeof(list), "the directory cannot be read: %s", strerror(errno));
	else
		meter_suggest(base, (const char *const *)names, n, true, list, sizeof(list));
	snprintf(err, errlen, "no %s \"%s\" in %s: %s", kind, name, dir, list);
	meter_names_free(&names);
	return -ENOENT;
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
