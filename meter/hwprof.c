/* hwprof: see hwprof.h. */
#include "hwprof.h"
#include "meter_names.h"
#include "meter_priv.h"
#include "thru_bench.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
	const char *key;
	const char *unit;	/* NULL: the profile's currency */
	const char *unit_suffix;	/* appended to the currency ("/kWh") */
} fields[HWPROF_N_FIELDS] = {
	[HWPROF_PURCHASE_PRICE] = { "purchase_price", NULL, "" },
	[HWPROF_SALVAGE_VALUE] = { "salvage_value", NULL, "" },
	[HWPROF_DEPRECIATION_YEARS] = { "depreciation_years", "years", NULL },
	[HWPROF_HOURS_PER_YEAR] = { "hours_per_year", "h/year", NULL },
	[HWPROF_POWER_WATTS_LOAD] = { "power_watts_load", "W", NULL },
	[HWPROF_POWER_WATTS_IDLE] = { "power_watts_idle", "W", NULL },
	[HWPROF_PUE] = { "pue", "", NULL },
	[HWPROF_ELECTRICITY_PER_KWH] = { "electricity_per_kwh", NULL, "/kWh" },
	[HWPROF_FIXED_PER_HOUR] = { "fixed_per_hour", NULL, "/h" },
	[HWPROF_PEAK_FLOPS_FP32] = { "peak_flops_fp32", "FLOP/s", NULL },
	[HWPROF_PEAK_FLOPS_FP16] = { "peak_flops_fp16", "FLOP/s", NULL },
	[HWPROF_MEM_BANDWIDTH] = { "mem_bandwidth", "bytes/s", NULL },
	[HWPROF_MEMORY_BYTES] = { "memory_bytes", "bytes", NULL },
};

static const char *const text_keys[] = {
	"name", "description", "currency", "pricing", "accelerator", "accelerators", "bench", NULL,
};

const char *hwprof_field_key(enum hwprof_field f)
{
	return (unsigned)f < HWPROF_N_FIELDS ? fields[f].key : "?";
}

const char *hwprof_field_unit(const hwprof_t *hw, enum hwprof_field f)
{
	static __thread char buf[16];
	if ((unsigned)f >= HWPROF_N_FIELDS)
		return "";
	if (fields[f].unit != NULL)
		return fields[f].unit;
	snprintf(buf, sizeof(buf), "%s%s", hw->currency, fields[f].unit_suffix);
	return buf;
}

struct key_check {
	const char *section;
	const char *bad;	/* first unknown key */
};

static bool known_key(const char *key)
{
	for (int i = 0; text_keys[i]; i++)
		if (strcmp(key, text_keys[i]) == 0)
			return true;
	for (int f = 0; f < HWPROF_N_FIELDS; f++) {
		size_t l = strlen(fields[f].key);
		if (strncmp(key, fields[f].key, l) != 0)
			continue;
		if (key[l] == '\0' || strcmp(key + l, "_source") == 0 || strcmp(key + l, "_date") == 0)
			return true;
	}
	return false;
}

static int check_key(void *user, const char *section, const char *key, const char *value)
{
	struct key_check *c = user;
	(void)value;
	if (strcmp(section, c->section) == 0 && !known_key(key)) {
		c->bad = key;
		return 1;
	}
	return 0;
}

static int fail_at(const mg_config_t *cfg, const char *section, const char *key, char *err, size_t errlen,
		   const char *fmt, const char *arg)
{
	const char *origin = mg_config_origin(cfg, section, key);
	if (origin == NULL)	/* a missing key: name the file the section came from */
		origin = mg_config_origin(cfg, section, "name");
	if (origin == NULL)
		origin = mg_config_origin(cfg, section, "currency");
	char what[256];
	snprintf(what, sizeof(what), fmt, arg);
	snprintf(err, errlen, "%s: [%s] %s: %s", origin ? origin : "hardware profile", section, key, what);
	return -EINVAL;
}

static int copy_text(const mg_config_t *cfg, const char *section, const char *key, char *dst, size_t cap,
		     bool required, char *err, size_t errlen)
{
	const char *v = mg_config_get(cfg, section, key);
	if (v == NULL || *v == '\0') {
		if (required) {
			snprintf(err, errlen, "[%s] %s: missing", section, key);
			return -EINVAL;
		}
		dst[0] = '\0';
		return 0;
	}
	if (strlen(v) >= cap) {
		char lim[24];
		snprintf(lim, sizeof(lim), "%zu", cap - 1);
		return fail_at(cfg, section, key, err, errlen, "longer than %s characters", lim);
	}
	snprintf(dst, cap, "%s", v);
	return 0;
}

/* Reads number f (value, source, date). *present tells whether the key was
 * in the file. */
static int read_num(const mg_config_t *cfg, const char *section, enum hwprof_field f, hwprof_num_t *n,
		    bool *present, char *err, size_t errlen)
{
	const char *key = fields[f].key;
	char skey[64], dkey[64];
	snprintf(skey, sizeof(skey), "%s_source", key);
	snprintf(dkey, sizeof(dkey), "%s_date", key);
	const char *v = mg_config_get(cfg, section, key);
	const char *src = mg_config_get(cfg, section, skey), *date = mg_config_get(cfg, section, dkey);
	*present = v != NULL;
	if (v == NULL) {
		if (src != NULL)
			return fail_at(cfg, section, skey, err, errlen, "given without %s", key);
		if (date != NULL)
			return fail_at(cfg, section, dkey, err, errlen, "given without %s", key);
		return 0;
	}
	int r = meter_q_parse(v, &n->value);
	if (r < 0)
		return fail_at(cfg, section, key, err, errlen,
			       "expected a decimal number such as 2700000, 0.6 or 989e12, got \"%s\"", v);
	if (n->value.num < 0)
		return fail_at(cfg, section, key, err, errlen, "must not be negative (got %s)", v);
	if (src == NULL || *src == '\0')
		return fail_at(cfg, section, skey, err, errlen,
			       "missing: every number needs a source (%s_source) and a date", key);
	if (date == NULL || *date == '\0')
		return fail_at(cfg, section, dkey, err, errlen,
			       "missing: every number needs a source and a date (%s_date)", key);
	if (strlen(src) >= sizeof(n->source) || strlen(date) >= sizeof(n->date))
		return fail_at(cfg, section, key, err, errlen, "%s", "source or date text too long");
	n->given = true;
	snprintf(n->source, sizeof(n->source), "%s", src);
	snprintf(n->date, sizeof(n->date), "%s", date);
	return 0;
}

/* bench = FILE[, FILE...]: each relative to the directory of the file the
 * key came from, checked by reading it. */
static int read_benches(const mg_config_t *cfg, const char *section, hwprof_t *hw, char *err, size_t errlen)
{
	const char *v = mg_config_get(cfg, section, "bench");
	if (v == NULL)
		return 0;
	const char *origin = mg_config_origin(cfg, section, "bench");
	char dir[512] = ".", list[1024], e2[512];
	if (origin != NULL && strchr(origin, '/') != NULL)
		snprintf(dir, sizeof(dir), "%.*s", (int)(strrchr(origin, '/') - origin), origin);
	if (strlen(v) >= sizeof(list))
		return fail_at(cfg, section, "bench", err, errlen, "%s", "list too long");
	snprintf(list, sizeof(list), "%s", v);
	thru_bench_t *b = malloc(sizeof(*b));
	if (b == NULL)
		return -ENOMEM;
	int r = 0;
	for (char *save = NULL, *t = strtok_r(list, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
		while (*t == ' ' || *t == '\t')
			t++;
		size_t l = strlen(t);
		while (l > 0 && (t[l - 1] == ' ' || t[l - 1] == '\t'))
			t[--l] = '\0';
		if (l == 0)
			continue;
		if (hw->n_bench == HWPROF_MAX_BENCH) {
			char lim[16];
			snprintf(lim, sizeof(lim), "%d", HWPROF_MAX_BENCH);
			r = fail_at(cfg, section, "bench", err, errlen, "more than %s files", lim);
			break;
		}
		char *path = hw->bench[hw->n_bench];
		int n = t[0] == '/' ? snprintf(path, sizeof(hw->bench[0]), "%s", t) :
				      snprintf(path, sizeof(hw->bench[0]), "%s/%s", dir, t);
		if (n < 0 || (size_t)n >= sizeof(hw->bench[0])) {
			r = fail_at(cfg, section, "bench", err, errlen, "\"%s\": path too long", t);
			break;
		}
		if ((r = thru_bench_load(path, b, e2, sizeof(e2))) < 0) {
			r = fail_at(cfg, section, "bench", err, errlen,
				    "%s (a `margin-worker bench --json` output, relative to the profile's directory)", e2);
			break;
		}
		hw->n_bench++;
	}
	free(b);
	if (r == 0 && hw->n_bench == 0)
		r = fail_at(cfg, section, "bench", err, errlen, "%s", "empty: name one or more bench files");
	return r;
}

static void set_default(hwprof_num_t *n, meter_q_t v, const char *why)
{
	n->value = v;
	n->given = false;
	snprintf(n->source, sizeof(n->source), "default: %s", why);
	snprintf(n->date, sizeof(n->date), "-");
}

static bool valid_name(const char *s)
{
	if (*s == '\0' || *s == '.')
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
		      *s == '-' || *s == '_' || *s == '.'))
			return false;
	return true;
}

int hwprof_compute(hwprof_t *hw, char *err, size_t errlen)
{
	meter_wq_t K = meter_wq_from(hw->f[HWPROF_PURCHASE_PRICE].value);
	meter_wq_t S = meter_wq_from(hw->f[HWPROF_SALVAGE_VALUE].value);
	meter_wq_t L = meter_wq_from(hw->f[HWPROF_DEPRECIATION_YEARS].value);
	meter_wq_t H = meter_wq_from(hw->f[HWPROF_HOURS_PER_YEAR].value);
	meter_wq_t WL = meter_wq_from(hw->f[HWPROF_POWER_WATTS_LOAD].value);
	meter_wq_t WI = meter_wq_from(hw->f[HWPROF_POWER_WATTS_IDLE].value);
	meter_wq_t pue = meter_wq_from(hw->f[HWPROF_PUE].value);
	meter_wq_t e = meter_wq_from(hw->f[HWPROF_ELECTRICITY_PER_KWH].value);
	meter_wq_t F = meter_wq_from(hw->f[HWPROF_FIXED_PER_HOUR].value);
	meter_wq_t dep = meter_wq_int(0), life, kwh_price, pb, pi, sum, micros = meter_wq_int(METER_MICROS);
	int r = 0;

	if ((r = meter_wq_sub(K, S, &dep)) < 0)
		goto fail;
	if (dep.num < 0) {
		snprintf(err, errlen, "%s: salvage_value exceeds purchase_price", hw->origin);
		return -EINVAL;
	}
	if (dep.num > 0) {
		if ((r = meter_wq_mul(L, H, &life)) < 0)
			goto fail;
		if (life.num <= 0) {
			snprintf(err, errlen, "%s: depreciation_years and hours_per_year must be > 0", hw->origin);
			return -EINVAL;
		}
		if ((r = meter_wq_div(dep, life, &dep)) < 0)
			goto fail;
	}
	/* W / 1000 kW * PUE * price per kWh */
	if ((r = meter_wq_mul(pue, e, &kwh_price)) < 0 ||
	    (r = meter_wq_div(kwh_price, meter_wq_int(1000), &kwh_price)) < 0 ||
	    (r = meter_wq_mul(WL, kwh_price, &pb)) < 0 || (r = meter_wq_mul(WI, kwh_price, &pi)) < 0)
		goto fail;
	if ((r = meter_wq_narrow(dep, &hw->depreciation_per_hour)) < 0 ||
	    (r = meter_wq_narrow(pb, &hw->power_busy_per_hour)) < 0 ||
	    (r = meter_wq_narrow(pi, &hw->power_idle_per_hour)) < 0 ||
	    (r = meter_wq_narrow(F, &hw->fixed_per_hour)) < 0)
		goto fail;
	/* The one rounding: the exact sum, in micros, to a whole number. */
	if ((r = meter_wq_add(dep, pb, &sum)) < 0 || (r = meter_wq_add(sum, F, &sum)) < 0 ||
	    (r = meter_wq_mul(sum, micros, &sum)) < 0 || (r = meter_wq_round(sum, &hw->rate_busy_micros_per_hour)) < 0)
		goto fail;
	if ((r = meter_wq_add(dep, pi, &sum)) < 0 || (r = meter_wq_add(sum, F, &sum)) < 0 ||
	    (r = meter_wq_mul(sum, micros, &sum)) < 0 || (r = meter_wq_round(sum, &hw->rate_idle_micros_per_hour)) < 0)
		goto fail;
	return 0;
fail:
	snprintf(err, errlen, "%s: node rate out of range (numbers too large or too precise)", hw->origin);
	return r;
}

int hwprof_from_config(const mg_config_t *cfg, const char *section, hwprof_t *ret, char *err, size_t errlen)
{
	hwprof_t *hw = calloc(1, sizeof(*hw));
	bool present[HWPROF_N_FIELDS] = { false };
	int r;
	if (hw == NULL)
		return -ENOMEM;
	const char *any = mg_config_get(cfg, section, "name");
	const char *origin = any ? mg_config_origin(cfg, section, "name") : NULL;
	snprintf(hw->origin, sizeof(hw->origin), "%s", origin ? origin : "hardware profile");

	struct key_check kc = { section, NULL };
	mg_config_foreach(cfg, check_key, &kc);
	if (kc.bad != NULL) {
		r = fail_at(cfg, section, kc.bad, err, errlen, "%s",
			    "unknown key (see docs/economics.md for the keys of a hardware profile)");
		goto fail;
	}
	if (any == NULL) {
		snprintf(err, errlen, "%s: [%s] name: missing (is this a hardware profile?)", hw->origin, section);
		r = -EINVAL;
		goto fail;
	}
	if ((r = copy_text(cfg, section, "name", hw->name, sizeof(hw->name), true, err, errlen)) < 0 ||
	    (r = copy_text(cfg, section, "description", hw->description, sizeof(hw->description), false, err, errlen)) < 0 ||
	    (r = copy_text(cfg, section, "accelerator", hw->accelerator, sizeof(hw->accelerator), false, err, errlen)) < 0 ||
	    (r = copy_text(cfg, section, "pricing", hw->pricing, sizeof(hw->pricing), false, err, errlen)) < 0)
		goto fail;
	if (!valid_name(hw->name)) {
		r = fail_at(cfg, section, "name", err, errlen, "\"%s\": use letters, digits, '-', '_', '.'", hw->name);
		goto fail;
	}
	const char *cur = mg_config_get(cfg, section, "currency");
	if (cur == NULL) {
		snprintf(err, errlen, "%s: [%s] currency: missing (an ISO 4217 code such as CNY or USD)", hw->origin, section);
		r = -EINVAL;
		goto fail;
	}
	if (!meter_currency_valid(cur)) {
		r = fail_at(cfg, section, "currency", err, errlen, "\"%s\": expected an ISO 4217 code such as CNY or USD", cur);
		goto fail;
	}
	snprintf(hw->currency, sizeof(hw->currency), "%s", cur);
	if (hw->pricing[0] == '\0')
		snprintf(hw->pricing, sizeof(hw->pricing), "owned");
	if (strcmp(hw->pricing, "owned") != 0 && strcmp(hw->pricing, "rental") != 0) {
		r = fail_at(cfg, section, "pricing", err, errlen, "\"%s\": expected owned or rental", hw->pricing);
		goto fail;
	}
	if (mg_config_get(cfg, section, "accelerators") != NULL) {
		uint64_t n = 0;
		if ((r = mg_config_get_u64(cfg, section, "accelerators", &n, err, errlen)) < 0)
			goto fail;
		hw->accelerators = (uint32_t)(n > UINT32_MAX ? UINT32_MAX : n);
	}
	for (int f = 0; f < HWPROF_N_FIELDS; f++)
		if ((r = read_num(cfg, section, f, &hw->f[f], &present[f], err, errlen)) < 0)
			goto fail;
	if ((r = read_benches(cfg, section, hw, err, errlen)) < 0)
		goto fail;

	/* Required numbers and defaults. */
	static const enum hwprof_field required[] = { HWPROF_PURCHASE_PRICE, HWPROF_POWER_WATTS_LOAD };
	for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++)
		if (!present[required[i]]) {
			snprintf(err, errlen, "%s: [%s] %s: missing (write 0 with a source when it does not apply, "
				 "e.g. a rental)", hw->origin, section, fields[required[i]].key);
			r = -EINVAL;
			goto fail;
		}
	if (!present[HWPROF_SALVAGE_VALUE])
		set_default(&hw->f[HWPROF_SALVAGE_VALUE], METER_Q(0, 1), "no salvage value");
	if (!present[HWPROF_HOURS_PER_YEAR])
		set_default(&hw->f[HWPROF_HOURS_PER_YEAR], METER_Q(8760, 1), "365 x 24 h");
	if (!present[HWPROF_POWER_WATTS_IDLE])
		set_default(&hw->f[HWPROF_POWER_WATTS_IDLE], hw->f[HWPROF_POWER_WATTS_LOAD].value,
			    "equal to power_watts_load (no idle figure given)");
	if (!present[HWPROF_FIXED_PER_HOUR])
		set_default(&hw->f[HWPROF_FIXED_PER_HOUR], METER_Q(0, 1), "no other fixed costs");
	if (meter_q_cmp(hw->f[HWPROF_PURCHASE_PRICE].value, hw->f[HWPROF_SALVAGE_VALUE].value) > 0 &&
	    !present[HWPROF_DEPRECIATION_YEARS]) {
		snprintf(err, errlen, "%s: [%s] depreciation_years: missing (needed to spread purchase_price)",
			 hw->origin, section);
		r = -EINVAL;
		goto fail;
	}
	if (!present[HWPROF_DEPRECIATION_YEARS])
		set_default(&hw->f[HWPROF_DEPRECIATION_YEARS], METER_Q(1, 1), "unused (nothing to depreciate)");
	bool powered = hw->f[HWPROF_POWER_WATTS_LOAD].value.num > 0 || hw->f[HWPROF_POWER_WATTS_IDLE].value.num > 0;
	if (powered && (!present[HWPROF_PUE] || !present[HWPROF_ELECTRICITY_PER_KWH])) {
		snprintf(err, errlen, "%s: [%s] %s: missing (needed to price power_watts)", hw->origin, section,
			 present[HWPROF_PUE] ? "electricity_per_kwh" : "pue");
		r = -EINVAL;
		goto fail;
	}
	if (!present[HWPROF_PUE])
		set_default(&hw->f[HWPROF_PUE], METER_Q(1, 1), "unused (no power cost)");
	if (!present[HWPROF_ELECTRICITY_PER_KWH])
		set_default(&hw->f[HWPROF_ELECTRICITY_PER_KWH], METER_Q(0, 1), "unused (no power cost)");

	if (meter_q_cmp(hw->f[HWPROF_PUE].value, METER_Q(1, 1)) < 0) {
		r = fail_at(cfg, section, "pue", err, errlen, "%s", "must be at least 1 (facility power >= IT power)");
		goto fail;
	}
	if (present[HWPROF_HOURS_PER_YEAR] && hw->f[HWPROF_HOURS_PER_YEAR].value.num == 0) {
		r = fail_at(cfg, section, "hours_per_year", err, errlen, "%s", "must be > 0");
		goto fail;
	}
	if (present[HWPROF_DEPRECIATION_YEARS] && hw->f[HWPROF_DEPRECIATION_YEARS].value.num == 0) {
		r = fail_at(cfg, section, "depreciation_years", err, errlen, "%s", "must be > 0");
		goto fail;
	}
	if (meter_q_cmp(hw->f[HWPROF_POWER_WATTS_IDLE].value, hw->f[HWPROF_POWER_WATTS_LOAD].value) > 0) {
		r = fail_at(cfg, section, "power_watts_idle", err, errlen, "%s", "exceeds power_watts_load");
		goto fail;
	}
	if ((r = hwprof_compute(hw, err, errlen)) < 0)
		goto fail;
	*ret = *hw;
	free(hw);
	return 0;
fail:
	free(hw);
	return r;
}

int hwprof_load_string(const char *name, const char *text, hwprof_t *ret, char *err, size_t errlen)
{
	mg_config_t *cfg = mg_config_new();
	if (cfg == NULL)
		return -ENOMEM;
	int r = mg_config_load_string(cfg, name, text, err, errlen);
	if (r == 0)
		r = hwprof_from_config(cfg, "hardware", ret, err, errlen);
	mg_config_destroy(&cfg);
	return r;
}

int hwprof_load(const char *path, hwprof_t *ret, char *err, size_t errlen)
{
	mg_config_t *cfg = mg_config_new();
	if (cfg == NULL)
		return -ENOMEM;
	int r = mg_config_load(cfg, path, err, errlen);
	if (r == 0)
		r = hwprof_from_config(cfg, "hardware", ret, err, errlen);
	mg_config_destroy(&cfg);
	return r;
}

int hwprof_find(const char *dir, const char *name, hwprof_t *ret, char *err, size_t errlen)
{
	if (!valid_name(name)) {
		snprintf(err, errlen, "hardware profile name \"%s\": use letters, digits, '-', '_', '.'", name);
		return -EINVAL;
	}
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s.conf", dir, name);
	hwprof_t hw;
	int r = hwprof_load(path, &hw, err, errlen);
	if (r == -ENOENT)	/* a misspelt name: list the profiles there */
		return meter_unknown_name("hardware profile", name, dir, false, err, errlen);
	if (r < 0)
		return r;
	if (strcmp(hw.name, name) != 0) {
		snprintf(err, errlen, "%s: name = %s, expected %s (the file name)", path, hw.name, name);
		return -EINVAL;
	}
	*ret = hw;
	return 0;
}

char *hwprof_describe(const hwprof_t *hw)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	if (f == NULL)
		return NULL;
	char a[64], b[64], c[64], d[64], e[64];
	fprintf(f, "hardware %s (%s, %s)%s%s\n", hw->name, hw->pricing, hw->currency,
		hw->description[0] ? ": " : "", hw->description);
	if (hw->accelerators > 0 || hw->accelerator[0])
		fprintf(f, "  accelerators: %u x %s\n", hw->accelerators, hw->accelerator[0] ? hw->accelerator : "?");
	for (int i = 0; i < HWPROF_N_FIELDS; i++) {
		const hwprof_num_t *n = &hw->f[i];
		if (!n->given && n->source[0] == '\0')
			continue;
		fprintf(f, "  %-20s = %s %s  [source: %s; date: %s]\n", fields[i].key,
			meter_q_format(n->value, a, sizeof(a)), hwprof_field_unit(hw, i), n->source, n->date);
	}
	for (size_t i = 0; i < hw->n_bench; i++)
		fprintf(f, "  bench                = %s  [throughput measured on this hardware]\n", hw->bench[i]);
	fprintf(f, "  rate = (purchase_price - salvage_value) / (depreciation_years * hours_per_year)\n"
		   "       + power_watts / 1000 * pue * electricity_per_kwh + fixed_per_hour\n");
	fprintf(f, "       = %s + %s + %s %s/h busy (power at load)\n",
		meter_q_format(hw->depreciation_per_hour, a, sizeof(a)),
		meter_q_format(hw->power_busy_per_hour, b, sizeof(b)),
		meter_q_format(hw->fixed_per_hour, c, sizeof(c)), hw->currency);
	fprintf(f, "  rate_busy = %s %s/h, rate_idle = %s %s/h (exact sum rounded once to whole micros, "
		   "half away from zero)\n",
		meter_format_micros(hw->rate_busy_micros_per_hour, d, sizeof(d)), hw->currency,
		meter_format_micros(hw->rate_idle_micros_per_hour, e, sizeof(e)), hw->currency);
	if (fclose(f) != 0) {
		free(out);
		return NULL;
	}
	return out;
}
