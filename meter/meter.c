/* meter: see meter.h. */
#include "meter.h"
#include "meter_priv.h"
#include "lib/mg_split.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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
