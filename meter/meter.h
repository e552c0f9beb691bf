/* meter: money arithmetic of the metering service.
 *
 * Money is an int64_t count of micro-units (1e-6) of an ISO 4217 currency:
 * 1 CNY = 1,000,000 micros. Prices and rates read from files are exact
 * rationals (meter_q_t) parsed from their decimal text, never binary
 * floats, so "0.075" stays 75/1000.
 *
 * Rounding rule (the only one in the library): round half away from zero,
 * applied once where an exact rational becomes a count of micros. A group
 * total is rounded once, then meter_allocate() spreads it over the group's
 * members without rounding again, so the parts always add up to the total.
 *
 * A price per 1M tokens in currency units is also a price per token in
 * micro-units: 2.50 USD / 1M tokens = 2.5 micro-USD per token.
 *
 * Pure functions; any thread. Reading profiles and price tables from the
 * file system is meter_catalog.h's. */
#ifndef METER_H
#define METER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define METER_MICROS		1000000LL	/* micro-units per currency unit */
#define METER_NS_PER_HOUR	3600000000000LL
#define METER_NS_PER_DAY	86400000000000LL
#define METER_PPM		1000000LL	/* parts per million (margins) */

/* An exact rational: den > 0, gcd(num, den) = 1. */
typedef struct meter_q {
	int64_t num;
	int64_t den;
} meter_q_t;

#define METER_Q(n, d) ((meter_q_t){ (n), (d) })

/* Parses "12", "-0.075", "2.5e-06", "535e12" exactly. -EINVAL on anything
 * else (empty, trailing text, "1,5"), -ERANGE when it does not fit in
 * 64-bit numerator and denominator. */
int meter_q_parse(const char *s, meter_q_t *ret);
/* Exact arithmetic; -ERANGE when the reduced result does not fit, -EDOM on
 * division by zero. */
int meter_q_add(meter_q_t a, meter_q_t b, meter_q_t *ret);
int meter_q_sub(meter_q_t a, meter_q_t b, meter_q_t *ret);
int meter_q_mul(meter_q_t a, meter_q_t b, meter_q_t *ret);
int meter_q_div(meter_q_t a, meter_q_t b, meter_q_t *ret);
/* -1, 0, 1. */
int meter_q_cmp(meter_q_t a, meter_q_t b);
double meter_q_to_double(meter_q_t q);
/* Rounds q (half away from zero) to an integer. -ERANGE if it does not fit. */
int meter_q_round(meter_q_t q, int64_t *ret);
/* Decimal text: exact when the denominator divides a power of ten
 * ("0.075", "2700000"), else up to 12 decimals followed by "..." .
 * Returns buf. */
char *meter_q_format(meter_q_t q, char *buf, size_t len);

/* Splits a signed amount among n parts in proportion to weights with
 * mg_split_largest_remainder (lib/mg_split.h: floors, then one more for the
 * largest remainders, ties to the lower index, all-zero weights even, exact
 * for any uint64_t weights). A negative total is split as -(split of
 * -total). The parts sum exactly to total. -EINVAL when n == 0 and
 * total != 0, -ERANGE for INT64_MIN. */
int meter_allocate(int64_t total, const uint64_t *weights, size_t n, int64_t *ret_parts);

/* Cost of ns nanoseconds at rate micros per hour:
 * round(rate * ns / 3.6e12), 128-bit intermediate. -ERANGE on overflow,
 * -EINVAL for a negative rate. */
int meter_cost_of_ns(int64_t rate_micros_per_hour, uint64_t ns, int64_t *ret_micros);
/* Same for a node whose busy and idle time cost different rates (power at
 * load and at idle): round((rate_busy * busy_ns + rate_idle * idle_ns) /
 * 3.6e12), one rounding for the whole period. */
int meter_cost_of_period(int64_t rate_busy, uint64_t busy_ns, int64_t rate_idle, uint64_t idle_ns,
			 int64_t *ret_micros);
/* round(a * num / den) with a 128-bit intermediate: scaling a count of
 * micros by an exact factor (currency conversion, time scaling). den > 0.
 * -ERANGE, -EDOM. */
int meter_scale(int64_t a, meter_q_t factor, int64_t *ret);

/* Gross margin (price - cost) / price in parts per million, rounded half
 * away from zero. -EDOM when price <= 0 (no revenue: margin -infinity, or
 * undefined). */
int meter_gross_margin_ppm(int64_t price_micros, int64_t cost_micros, int64_t *ret_ppm);
/* DeepSeek's "cost profit margin" (price - cost) / cost, ppm. -EDOM when
 * cost <= 0. GM = m / (1 + m), m = GM / (1 - GM). */
int meter_markup_ppm(int64_t price_micros, int64_t cost_micros, int64_t *ret_ppm);
/* Days to recover a one-off cost from a daily saving, D = one_off / saving,
 * exact. -EDOM when saving <= 0 (never recovered). */
int meter_breakeven_days(int64_t one_off_micros, int64_t saving_per_day_micros, meter_q_t *ret_days);

/* "-12.000345" (always six decimals). Returns buf (32 bytes are enough). */
char *meter_format_micros(int64_t micros, char *buf, size_t len);
/* "84.51%" from ppm (two decimals, half away from zero). Returns buf. */
char *meter_format_ppm_pct(int64_t ppm, char *buf, size_t len);
/* True for three upper-case ASCII letters (ISO 4217 style). */
bool meter_currency_valid(const char *code);

#endif
