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
 * Pure functions; any thread. The last section (data files) reads
 * profiles and price tables from the file system; any thread too, no
 * shared state. */
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

/* --- data files: hardware profiles and price tables --------------------
 *
 * How margind ([meter] settings, --hardware, --prices) and marginctl
 * (cost, economics) resolve the profiles and price tables they are given:
 * a spec is a file path when it contains '/' or names an existing file,
 * else a name looked up in a directory. The structs are hwprof.h's and
 * pricetab.h's (declared here by tag: those headers include this one). */

struct hwprof;
struct pricetab;
struct pricetab_entry;

/* What is loaded when nothing is configured (NULL-terminated, in load
 * order): the price tables (exchange rates first) of the prices
 * directory, and the reference models compared with. */
extern const char *const meter_default_price_tables[];
extern const char *const meter_default_refs[];
/* The embedding reference models (mode = embedding entries) that
 * /v1/embeddings calls are compared with by default. */
extern const char *const meter_default_embed_refs[];

/* The endpoint of embedding calls (the journal's jobs.endpoint, the
 * ledger's endpoint column). Embedding calls are compared with embedding
 * prices only, every other call with the other prices only. */
#define METER_ENDPOINT_EMBEDDINGS "/v1/embeddings"
bool meter_endpoint_is_embedding(const char *endpoint);

/* The directory of a kind of data file ("hardware", "prices"):
 * DATADIR/margin/KIND when it exists (meson install), else this source
 * tree's deploy/KIND when that exists (a build that was never installed),
 * else DATADIR/margin/KIND all the same, so that a message can name where
 * a name was looked for. Both roots are fixed at build time
 * (meter/meson.build). Returns buf. */
char *meter_default_dir(const char *kind, char *buf, size_t len);

/* The names of the data files in dir: NAME for each NAME.conf (and, with
 * json, NAME.json), sorted, NULL-terminated. Caller frees with
 * meter_names_free. NULL with *ret_n = 0 for a directory that cannot be
 * read; NULL on ENOMEM too. */
char **meter_dir_names(const char *dir, bool json, size_t *ret_n);
void meter_names_free(char ***names);

/* "did you mean X or Y? known: A, B, C" for name among names[0..n): the
 * close ones first (same name ignoring case, then edit distance at most
 * about a third of the name, or containing it; a candidate TABLE:ENTRY is
 * compared by its ENTRY), then, with list_all, every name as far as buf
 * holds ("..." when cut; "(none)" when n is 0). Returns buf. */
char *meter_suggest(const char *name, const char *const *names, size_t n, bool list_all, char *buf, size_t len);

/* The error for a name that is no data file of dir: "no KIND \"NAME\" in
 * DIR: did you mean ...? (known: ...)" (meter_suggest over
 * meter_dir_names; json: .json files count too). Returns -ENOENT. */
int meter_unknown_name(const char *kind, const char *name, const char *dir, bool json, char *err, size_t errlen);

/* A hardware profile: spec is a file (hwprof_load), or NAME or NAME.conf
 * in dir (hwprof_find: DIR/NAME.conf, whose name must be NAME). -ENOENT
 * with a message when spec is a name and dir is NULL or "", or names no
 * profile there (the message lists the profiles of dir, the close ones
 * first); otherwise hwprof_load's and hwprof_find's errors. *ret is
 * written only on success. */
int meter_load_profile(const char *spec, const char *dir, struct hwprof *ret, char *err, size_t errlen);

/* Adds one price table to t: spec is a file, or DIR/SPEC, else
 * DIR/SPEC.conf (dir NULL or "": spec is taken as a path). A path ending
 * in ".json" is read as LiteLLM's format (date: the date to record for
 * its prices, or NULL for the file's; litellm_load), anything else as INI
 * (pricetab_load). -ENOENT for a name that is no table of dir (the message
 * lists its tables, the close ones first); their errors, -ENAMETOOLONG for
 * a path that does not fit. */
int meter_load_prices(struct pricetab *t, const char *spec, const char *dir, const char *date, char *err,
		      size_t errlen);

/* A price given as text, "P" or "IN/OUT" (exact non-negative decimals,
 * currency units per 1M tokens; "P" is both), into an entry called name
 * (also its model) of provider (NULL: none), mode chat, no batch tier.
 * source is recorded as where each price and the entry came from. -EINVAL
 * with a message for a malformed price or a currency that is not an ISO
 * 4217 code. *ret is written only on success. */
int meter_parse_price_entry(const char *text, const char *name, const char *provider, const char *currency,
			    const char *source, struct pricetab_entry *ret, char *err, size_t errlen);

/* The entry called name of t; -ENOENT with a message naming where (what:
 * "table cn-2024-05-after") and the entries of t, the close ones first. */
int meter_find_entry(const struct pricetab *t, const char *name, const char *what, const struct pricetab_entry **ret,
		     char *err, size_t errlen);

/* A price entry by name, across the price tables of dir: spec is
 * TABLE:ENTRY (TABLE a file or a table of dir) or a bare ENTRY, looked up
 * in every table of dir (meter_dir_names). The entry is copied to *ret and
 * the table it came from (its name in dir, or the file) to ret_table.
 * -ENOENT when no table holds it (the message names the close entries as
 * TABLE:ENTRY), -EEXIST when several do (the message names every
 * candidate as TABLE:ENTRY), the loaders' errors. */
int meter_resolve_entry(const char *spec, const char *dir, struct pricetab_entry *ret, char *ret_table,
			size_t tablelen, char *err, size_t errlen);

/* The meter_default_refs that t holds an entry for, in order, at most max
 * of them, into ret (borrowed: static strings). Returns how many. */
size_t meter_find_default_refs(const struct pricetab *t, const char **ret, size_t max);
/* The same for meter_default_embed_refs. */
size_t meter_find_default_embed_refs(const struct pricetab *t, const char **ret, size_t max);
/* 0 when t has an entry called name of the kind asked for (embedding:
 * mode = embedding; else any other mode); -ENOENT (no such entry) or
 * -EINVAL (the other kind) with a message starting with what (e.g.
 * "[meter] refs") that names the entry, its mode and where it belongs. */
int meter_check_ref_kind(const struct pricetab *t, const char *name, bool embedding, const char *what, char *err,
			 size_t errlen);

#endif
