/* marginctl prices: the entries of the price tables, offline.
 *
 *   marginctl prices [TABLE]... [--json]
 *
 * TABLE is a file or a name in the prices directory ($MARGIN_PRICES_DIR,
 * else the meter's default: cmd_cost_prices_dir); without one, every
 * table there. Each table is read alone, so an entry is shown as that
 * table has it. Per entry: currency, list input / output / cached-input
 * prices, the batch prices, and the source and date of each number;
 * per table its exchange rates. */
#include "cli.h"
#include "cmd_cost.h"
#include "meter/meter.h"
#include "meter/meter_catalog.h"
#include "lib/mg_settings.h"
#include "meter/pricetab.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TABLES 256

typedef struct prices_opts {
	const char *tables[MAX_TABLES];	/* borrowed from the config */
	size_t n_tables;
	bool json;
} prices_opts_t;

static const mg_setting_t settings[] = {
	{ .section = "prices", .key = "table", .type = MG_SETTING_LIST, .arg = "TABLE", .flags = MG_SETTING_OPERAND,
	  .help = "a file (INI or LiteLLM .json) or a name in %s\n"
		  "(set $MARGIN_PRICES_DIR); without TABLE, every table there",
	  .help_fill = cmd_cost_prices_dir, MG_SETTING_LIST_AT(prices_opts_t, tables, n_tables) },
	{ .flag = "json", .section = "prices", .key = "json", .type = MG_SETTING_BOOL, .set = "yes",
	  .help = "one JSON object: {\"prices_dir\", \"tables\": [...]}", MG_SETTING_AT(prices_opts_t, json) },
};

static const mg_settings_spec_t prices_spec = {
	.prog = "marginctl prices",
	.synopsis = "[TABLE]... [--json]\n",
	.intro = "The entries of closed-API price tables: currency, input / output / cached-input price\n"
		 "per 1M tokens (list and batch), each with its source and date, and the table's\n"
		 "exchange rates. An entry is what --price-before/--price-after, --ref and --sale-price\n"
		 "take: ENTRY or TABLE:ENTRY.\n",
	.no_config = true,
	.settings = settings,
	.n = sizeof(settings) / sizeof(settings[0]),
};

static void num_src(FILE *f, const char *label, const char *source, const char *date)
{
	fprintf(f, "      %-7s %s; date: %s\n", label, source[0] ? source : "(none)", date[0] ? date : "-");
}

static void entry_text(FILE *f, const pricetab_entry_t *e)
{
	char a[48], b[48], c[48], bi[48], bo[48], batch[100];
	if (e->has_batch)
		snprintf(batch, sizeof(batch), "%s / %s", meter_q_format(e->batch_in_per_1m, bi, sizeof(bi)),
			 meter_q_format(e->batch_out_per_1m, bo, sizeof(bo)));
	else
		snprintf(batch, sizeof(batch), "none");
	fprintf(f, "  %-26s %-3s %-9s %9s %9s %9s  %-15s %s%s%s%s\n", e->name, e->currency, e->mode,
		e->n_bands ? "tiered" : meter_q_format(e->in_per_1m, a, sizeof(a)),
		e->n_bands ? "tiered" : meter_q_format(e->out_per_1m, b, sizeof(b)),
		e->has_cached ? meter_q_format(e->cached_in_per_1m, c, sizeof(c)) : "-", batch, e->model,
		e->provider[0] ? " (" : "", e->provider, e->provider[0] ? ")" : "");
	for (size_t i = 0; i < e->n_bands; i++)
		fprintf(f, "      prompt tokens %llu to %llu: %s in / %s out\n", (unsigned long long)e->bands[i].lo,
			(unsigned long long)e->bands[i].hi, meter_q_format(e->bands[i].in_per_1m, a, sizeof(a)),
			meter_q_format(e->bands[i].out_per_1m, b, sizeof(b)));
	bool same = strcmp(e->in_source, e->out_source) == 0 && strcmp(e->in_date, e->out_date) == 0;
	num_src(f, same ? "in/out:" : "in:", e->in_source, e->in_date);
	if (!same)
		num_src(f, "out:", e->out_source, e->out_date);
	if (e->has_cached)
		num_src(f, "cached:", e->cached_source, e->cached_date);
	num_src(f, "batch:", e->batch_source, e->batch_date);
	if (e->note[0])
		fprintf(f, "      note:   %s\n", e->note);
}

static json_t *src_json(const char *source, const char *date)
{
	return json_pack("{s:s, s:s}", "source", source, "date", date);
}

static json_t *entry_json(const pricetab_entry_t *e)
{
	char a[48], b[48], c[48], d[48], g[48];
	json_t *bands = json_array();
	for (size_t i = 0; bands != NULL && i < e->n_bands; i++)
		json_array_append_new(bands, json_pack("{s:I, s:I, s:s, s:s}", "prompt_from", (json_int_t)e->bands[i].lo,
						       "prompt_to", (json_int_t)e->bands[i].hi, "input_per_1m",
						       meter_q_format(e->bands[i].in_per_1m, a, sizeof(a)), "output_per_1m",
						       meter_q_format(e->bands[i].out_per_1m, b, sizeof(b))));
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:{s:o, s:o, s:o, s:o}, s:s}",
			 "entry", e->name, "model", e->model, "provider", e->provider, "mode", e->mode, "currency",
			 e->currency, "input_per_1m", meter_q_format(e->in_per_1m, a, sizeof(a)), "output_per_1m",
			 meter_q_format(e->out_per_1m, b, sizeof(b)), "cached_input_per_1m",
			 e->has_cached ? json_string(meter_q_format(e->cached_in_per_1m, c, sizeof(c))) : json_null(),
			 "batch",
			 e->has_batch ? json_pack("{s:s, s:s}", "input_per_1m",
						  meter_q_format(e->batch_in_per_1m, d, sizeof(d)), "output_per_1m",
						  meter_q_format(e->batch_out_per_1m, g, sizeof(g)))
				      : json_null(),
			 "bands", bands, "sources", "input", src_json(e->in_source, e->in_date), "output",
			 src_json(e->out_source, e->out_date), "cached",
			 e->has_cached ? src_json(e->cached_source, e->cached_date) : json_null(), "batch",
			 src_json(e->batch_source, e->batch_date), "note", e->note);
}

/* One table, read alone: as text to f, or appended to arr. */
static int show(const char *spec, FILE *f, json_t *arr)
{
	char err[2048], a[48];
	pricetab_t *t = pricetab_new();
	if (t == NULL)
		return -ENOMEM;
	int r = cmd_cost_prices(t, spec, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "marginctl prices: %s\n", err);
		pricetab_destroy(&t);
		return r;
	}
	size_t n = pricetab_count(t);
	const char *file = n > 0 ? pricetab_at(t, 0)->origin : spec;
	if (arr != NULL) {
		json_t *entries = json_array(), *fx = json_array(), *warn = json_array();
		for (size_t i = 0; i < n; i++)
			json_array_append_new(entries, entry_json(pricetab_at(t, i)));
		for (size_t i = 0; i < pricetab_fx_count(t); i++) {
			const pricetab_fx_t *x = pricetab_fx_at(t, i);
			json_array_append_new(fx, json_pack("{s:s, s:s, s:s, s:s}", "currency", x->currency, "per_usd",
							    meter_q_format(x->per_usd, a, sizeof(a)), "source", x->source,
							    "date", x->date));
		}
		for (size_t i = 0; i < pricetab_warning_count(t); i++)
			json_array_append_new(warn, json_string(pricetab_warning_at(t, i)));
		r = json_array_append_new(arr, json_pack("{s:s, s:s, s:o, s:o, s:o}", "table", pricetab_name(t), "spec",
							 spec, "entries", entries, "fx", fx, "warnings", warn));
		pricetab_destroy(&t);
		return r < 0 ? -ENOMEM : 0;
	}
	if (n > 0)
		fprintf(f, "%s: %zu entr%s from %s (prices per 1M tokens)\n", pricetab_name(t), n, n == 1 ? "y" : "ies",
			file);
	else
		fprintf(f, "%s: no price entries%s\n", pricetab_name(t),
			pricetab_fx_count(t) > 0 ? " (exchange rates only)" : "");
	for (size_t i = 0; i < pricetab_fx_count(t); i++) {
		const pricetab_fx_t *x = pricetab_fx_at(t, i);
		fprintf(f, "  exchange rate: %s_per_USD = %s [source: %s; date: %s]\n", x->currency,
			meter_q_format(x->per_usd, a, sizeof(a)), x->source, x->date);
	}
	if (n > 0)
		fprintf(f, "  %-26s %-3s %-9s %9s %9s %9s  %-15s %s\n", "ENTRY", "CUR", "MODE", "IN", "OUT", "CACHED",
			"BATCH IN / OUT", "MODEL (PROVIDER)");
	for (size_t i = 0; i < n; i++)
		entry_text(f, pricetab_at(t, i));
	for (size_t i = 0; i < pricetab_warning_count(t); i++)
		fprintf(f, "  warning: %s\n", pricetab_warning_at(t, i));
	fprintf(f, "\n");
	pricetab_destroy(&t);
	return 0;
}

/* The tables named in o (or every one in the prices directory), shown. */
static int prices_main(const prices_opts_t *o)
{
	bool json = o->json;
	int status = 0;
	size_t n = o->n_tables;
	char **names = NULL;
	const char *const *specs = o->tables;
	if (n == 0) {
		const char *dir = cmd_cost_prices_dir();
		if ((names = meter_dir_names(dir, true, &n)) == NULL || n == 0) {
			fprintf(stderr, "marginctl prices: no price tables in %s%s%s (set $MARGIN_PRICES_DIR)\n", dir,
				names == NULL ? ": " : "", names == NULL ? strerror(errno) : "");
			meter_names_free(&names);
			return 1;
		}
		specs = (const char *const *)names;
	}
	json_t *arr = json ? json_array() : NULL;
	for (size_t i = 0; i < n && status == 0; i++) {
		int r = show(specs[i], stdout, arr);
		if (r == -ENOMEM)
			fprintf(stderr, "marginctl prices: out of memory\n");
		if (r < 0)
			status = r == -ENOENT || r == -EINVAL ? 2 : 1;
	}
	if (json && status == 0) {
		json_t *j = json_pack("{s:s, s:o}", "prices_dir", cmd_cost_prices_dir(), "tables", arr);
		char *s = j ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
		json_decref(j);
		arr = NULL;
		if (s == NULL) {
			fprintf(stderr, "marginctl prices: out of memory\n");
			status = 1;
		} else {
			printf("%s\n", s);
			free(s);
		}
	}
	json_decref(arr);
	meter_names_free(&names);
	return status;
}

int cmd_prices(int argc, char **argv)
{
	mg_config_t *cfg = mg_config_new();
	prices_opts_t *o = calloc(1, sizeof(*o));
	int r = cfg == NULL || o == NULL ? -ENOMEM : mg_settings_parse_into(&prices_spec, cfg, argc, argv, o);
	if (r == -ENOMEM && (cfg == NULL || o == NULL))
		fprintf(stderr, "marginctl prices: out of memory\n");
	int status = r == 0 ? prices_main(o) : r == 1 ? 0 : r == -EINVAL ? 2 : 1;
	free(o);
	mg_config_destroy(&cfg);
	return status;
}
