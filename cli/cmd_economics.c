/* marginctl economics: the price-war claim worked through, offline.
 *
 *   marginctl economics check [--json]      (economics.md 6's price-war table)
 *   marginctl economics check [--hardware PROFILE|FILE]
 *       [--throughput TOK_S [--throughput-source TEXT] | --bench FILE.json [--batch N]
 *        | --from-ledger BATCH [--state-dir DIR]
 *        | --estimate (--model NAME|FILE.gguf | --params N [--bytes-per-param B])
 *          [--batch N] [--fp16] [--eff-bench FILE.json]]
 *       --price-before P --price-after P [--currency CUR] [--provider NAME] [--prices FILE]...
 *       [--mix IN/OUT] [--utilization U] [--cache-hit R] [--via-batch] [--json]
 *   marginctl economics chart --bench FILE.json -o FILE.svg [--hardware P] [--utilization U]
 *       [--ref NAME]... [--prices FILE]... [--currency CUR] [--via-batch] [--eff-bench FILE.json]
 *
 * A price P is "IN/OUT" or one number (CUR per 1M tokens), an entry of a
 * loaded --prices table, TABLE:ENTRY (a table file or a name in the
 * prices directory, e.g. cn-2024-05-before:qwen-max), or a bare ENTRY
 * that exactly one table of the prices directory holds. Every input is
 * printed with where it comes from (pricewar_format). Only --from-ledger
 * without --state-dir talks to a margind. */
#include "cli.h"
#include "cmd_cost.h"
#include "meter/chart.h"
#include "meter/meter.h"
#include "meter/meter_catalog.h"
#include "lib/mg_settings.h"
#include "meter/plan.h"
#include "meter/pricewar.h"
#include "meter/pricewar_table.h"
#include "meter/speed.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FILES 16

typedef struct eopts {
	const char *hardware, *throughput, *throughput_source, *bench, *from_ledger, *state_dir, *params,
		*bytes_per_param, *batch, *eff_bench, *before, *after, *currency, *provider, *mix, *utilization, *out,
		*cache_hit, *model;
	bool estimate, fp16, via_batch, json;
	const char *prices[MAX_FILES];
	size_t n_prices;
	const char *refs[MAX_FILES];
	size_t n_refs;
	mg_config_t *cfg;	/* owned: the flags' values, which the fields above borrow */
} eopts_t;

#define SEC "economics"
#define O(field) MG_SETTING_AT(eopts_t, field)
#define S(f, k, a, field, h) { .flag = (f), .section = SEC, .key = (k), .arg = (a), .help = (h), O(field) }
#define B(f, k, field, h) { .flag = (f), .section = SEC, .key = (k), .type = MG_SETTING_BOOL, .set = "yes", \
			    .help = (h), O(field) }
static const mg_setting_t settings[] = {
	{ .flag = "hardware", .section = SEC, .key = "hardware", .arg = "P",
	  .help = "a profile FILE or a name in %s (default cpu-2vcpu;\n"
		  "--from-ledger: the batch's); a bench or batch of another machine\n"
		  "gives way to P's own throughput (bench attached to P, else estimate)",
	  .help_fill = cmd_cost_hardware_dir, O(hardware) },
	S("throughput", "throughput", "TOK_S", throughput, "output tokens/s per node at the call mix (a figure you give)"),
	S("throughput-source", "throughput_source", "TEXT", throughput_source, "where that figure comes from"),
	S("bench", "bench", "FILE.json", bench,
	  "a `margin-worker bench --json` run (--batch N: that run; default the best)"),
	S("from-ledger", "from_ledger", "ID", from_ledger,
	  "the throughput, call mix and utilization a batch showed in margind's ledger"),
	S("state-dir", "state_dir", "DIR", state_dir, "read margind's journal there (--from-ledger)"),
	B("estimate", "estimate", estimate,
	  "an upper bound: a roofline on the profile's peaks for --model (a preset\n"
	  "such as llama2-7b, f16, or a GGUF file) or --params N weights, at the\n"
	  "largest batch whose weights + KV cache fit memory_bytes (or --batch N,\n"
	  "refused when it does not fit); fp16 peak for 16-bit or quantized weights"),
	S("model", "model", "M", model, "--estimate: a preset or a GGUF file"),
	S("params", "params", "N", params, "--estimate: the number of weights"),
	S("bytes-per-param", "bytes_per_param", "B", bytes_per_param, "--estimate: bytes per weight"),
	S("batch", "batch", "N", batch, "the bench run, or the estimate's batch"),
	B("fp16", "fp16", fp16, "--estimate: the fp16 peak"),
	S("eff-bench", "eff_bench", "FILE.json", eff_bench,
	  "efficiency from a `margin-worker bench --json` here (default: machine.md's)"),
	S("price-before", "price_before", "P", before,
	  "IN/OUT or P per 1M tokens in --currency, a price entry,\n"
	  "TABLE:ENTRY (e.g. cn-2024-05-before:qwen-max), or an ENTRY that one\n"
	  "table holds (marginctl prices lists them)"),
	S("price-after", "price_after", "P", after, "the price after the cut, as --price-before"),
	S("currency", "currency", "CUR", currency, "the currency of the figures"),
	S("provider", "provider", "NAME", provider, "the provider named in the report"),
	{ .flag = "prices", .section = SEC, .key = "prices", .type = MG_SETTING_LIST, .arg = "FILE",
	  .help = "price tables and exchange rates (default: fx.conf from %s)", .help_fill = cmd_cost_prices_dir,
	  MG_SETTING_LIST_AT(eopts_t, prices, n_prices) },
	S("mix", "mix", "IN/OUT", mix, "tokens per call (default 2048/2048, economics.md 6 basis A)"),
	S("utilization", "utilization", "U", utilization,
	  "0 < U <= 1 (default 0.5, economics.md 6; --from-ledger: measured)"),
	S("cache-hit", "cache_hit", "R", cache_hit,
	  "0 <= R <= 1: that share of the input tokens is paid at the entry's\n"
	  "cached-input price, where it has one (DeepSeek's day: 0.5625)"),
	B("via-batch", "via_batch", via_batch, "the provider's batch prices"),
	B("json", "json", json, "one JSON object"),
	{ .flag = "ref", .section = SEC, .key = "ref", .type = MG_SETTING_LIST, .arg = "NAME",
	  .help = "chart: a reference model drawn as a line (repeatable)", MG_SETTING_LIST_AT(eopts_t, refs, n_refs) },
	{ .short_flag = 'o', .section = SEC, .key = "out", .arg = "FILE.svg", .help = "chart: the SVG written", O(out) },
};
#undef S
#undef B

static const mg_settings_spec_t spec = {
	.prog = "marginctl economics",
	.synopsis = "check [--json]\n"
		    "       marginctl economics check [--hardware PROFILE|FILE]\n"
		    "           [--throughput TOK_S [--throughput-source TEXT] | --bench FILE.json [--batch N]\n"
		    "            | --from-ledger BATCH [--state-dir DIR]\n"
		    "            | --estimate (--model NAME|FILE.gguf | --params N [--bytes-per-param B])\n"
		    "              [--batch N] [--fp16] [--eff-bench FILE.json]]\n"
		    "           --price-before P --price-after P [--currency CUR] [--provider NAME] [--prices FILE]...\n"
		    "           [--mix IN/OUT] [--utilization U] [--cache-hit R] [--via-batch] [--json]\n"
		    "       marginctl economics chart --bench FILE.json -o FILE.svg [--hardware P] [--utilization U]\n"
		    "           [--ref NAME]... [--prices FILE]... [--currency CUR] [--via-batch] [--eff-bench FILE.json]\n",
	.intro = "check: is serving at a provider's price before and after a cut above or below cost on this\n"
		 "hardware? Prints the gross margin at each price, the cut that takes the margin to zero and\n"
		 "whether a 90% cut makes it negative, with every input and its source. Alone (or with\n"
		 "--json) it prints the price-war table of economics.md 6: every price point of the\n"
		 "cn-2024-05-before, cn-2024-05-after and cn-2024-late tables against its cost bases.\n",
	.epilog = "chart: cost per 1M output tokens against decode batch size from a bench, with the\n"
		  "reference models' output prices as lines.\n",
	.no_config = true,
	.settings = settings,
	.n = sizeof(settings) / sizeof(settings[0]),
};

static void usage(FILE *f)
{
	mg_settings_usage(&spec, f);
}

/* The flags into o (strings borrowed from o->cfg, which the caller
 * destroys). 0; 1 after --help; 2 for bad usage, 3 out of memory; each
 * said. */
static int parse(int argc, char **argv, eopts_t *o)
{
	*o = (eopts_t){ .cfg = mg_config_new() };
	if (o->cfg == NULL) {
		fprintf(stderr, "marginctl economics: out of memory\n");
		return 3;
	}
	int rc = mg_settings_parse_into(&spec, o->cfg, argc, argv, o);
	if (rc != 0)
		return rc == 1 ? 1 : rc == -EINVAL ? 2 : 3;
	return 0;
}

static bool parse_pos(const char *s, double *ret)
{
	char *e;
	double v = s ? strtod(s, &e) : 0;
	if (s == NULL || e == s || *e != '\0' || !(v > 0) || !isfinite(v))
		return false;
	*ret = v;
	return true;
}

/* A price argument into *ret (see the header comment): an entry of the
 * --prices tables, a typed price (it starts with a digit or '.'), else an
 * entry of the prices directory, TABLE:ENTRY or a bare ENTRY that one
 * table holds (said on stderr). */
static int price_arg(const char *arg, const char *label, const eopts_t *o, const pricetab_t *t, const char *cur,
		     pricetab_entry_t *ret, char *err, size_t errlen)
{
	char src[160], table[256];
	const pricetab_entry_t *e = strchr(arg, ':') == NULL ? pricetab_find(t, arg) : NULL;
	if (e != NULL) {
		*ret = *e;
		return 0;
	}
	if ((arg[0] >= '0' && arg[0] <= '9') || arg[0] == '.') {
		snprintf(src, sizeof(src), "--%s %s%s%s", label, arg, o->provider ? ", provider " : "",
			 o->provider ? o->provider : "");
		return meter_parse_price_entry(arg, label, o->provider, cur, src, ret, err, errlen);
	}
	int r = meter_resolve_entry(arg, cmd_cost_prices_dir(), ret, table, sizeof(table), err, errlen);
	if (r == 0 && strchr(arg, ':') == NULL)
		fprintf(stderr, "marginctl economics check: --%s %s: the entry of table %s (%s)\n", label, arg, table,
			ret->origin);
	if (r == -ENOENT && strchr(arg, ':') == NULL) {
		size_t n = strlen(err);
		snprintf(err + n, errlen - n, " (`marginctl prices` lists them); or give a price P or IN/OUT in %s "
			 "per 1M tokens", cur);
	}
	if (r < 0) {
		char e2[2048];
		snprintf(e2, sizeof(e2), "%s", err);
		snprintf(err, errlen, "--%s %.100s: %.1800s", label, arg, e2);
	}
	return r;
}

/* --hardware (default cpu-2vcpu) into *hw and the --prices tables into t
 * for subcommand sub. A negative errno with the reason on stderr. */
static int load_inputs(const eopts_t *o, const char *sub, hwprof_t *hw, pricetab_t *t)
{
	char err[2048];
	int r;
	if ((r = cmd_cost_profile(o->hardware ? o->hardware : "cpu-2vcpu", hw, err, sizeof(err))) < 0) {
		fprintf(stderr, "marginctl economics %s: --hardware: %s\n", sub, err);
		return r;
	}
	for (size_t i = 0; i < o->n_prices; i++)
		if ((r = cmd_cost_prices(t, o->prices[i], err, sizeof(err))) < 0) {
			fprintf(stderr, "marginctl economics %s: --prices %s: %s\n", sub, o->prices[i], err);
			return r;
		}
	return 0;
}

/* --eff-bench FILE (a bench of this machine) as the efficiency of
 * estimates for other hardware, measured against its "hardware" profile,
 * else here_name's. *ret_use is NULL without --eff-bench (machine.md's
 * factors). A negative errno with the reason in err. */
static int eff_arg(const eopts_t *o, const char *here_name, thru_eff_t *eff, const thru_eff_t **ret_use, char *err,
		   size_t errlen)
{
	char e2[1024];
	hwprof_t here;
	*ret_use = NULL;
	if (o->eff_bench == NULL)
		return 0;
	thru_bench_t *b = malloc(sizeof(*b));
	int r = b ? thru_bench_load(o->eff_bench, b, e2, sizeof(e2)) : -ENOMEM;
	if (r == 0)
		r = cmd_cost_profile(b->hardware[0] ? b->hardware : here_name, &here, e2, sizeof(e2));
	if (r == 0)
		r = speed_eff_from_bench(b, &here, eff, e2, sizeof(e2));
	free(b);
	if (r < 0) {
		snprintf(err, errlen, "--eff-bench %s: %s", o->eff_bench, r == -ENOMEM ? "out of memory" : e2);
		return r;
	}
	*ret_use = eff;
	return 0;
}

static json_t *point_json(const pricewar_point_t *p)
{
	return json_pack("{s:I, s:o, s:o}", "revenue_micros_per_hour", (json_int_t)p->revenue_micros_per_hour,
			 "gross_margin_ppm", p->defined ? json_integer(p->gm_ppm) : json_null(), "markup_ppm",
			 p->defined ? json_integer(p->markup_ppm) : json_null());
}

/* `economics check` alone: economics.md 6's table from the shipped
 * profile and price tables. */
static int check_table(const eopts_t *o)
{
	char err[2048];
	int status = 1;
	hwprof_t hw;
	pricetab_t *fx = NULL, *tabs[8] = { NULL };
	pricewar_table_src_t srcs[8];
	pricewar_table_t *pt = NULL;
	char *text = NULL;
	const char *cur = o->currency ? o->currency : "USD";
	size_t n = pricewar_table_n_default_srcs;
	if (o->hardware || o->bench || o->from_ledger || o->estimate || o->throughput || o->mix || o->utilization ||
	    o->n_prices || o->via_batch || o->cache_hit || o->provider || o->batch || o->params) {
		fprintf(stderr, "marginctl economics check: without --throughput, --bench, --from-ledger or --estimate "
				"and the two prices, it prints economics.md 6's price-war table on its own cost bases "
				"and takes only --json and --currency\n");
		return 2;
	}
	if (!meter_currency_valid(cur)) {
		fprintf(stderr, "marginctl economics check: --currency %s: expected an ISO 4217 code\n", cur);
		return 2;
	}
	if ((fx = pricetab_new()) == NULL || n > 8)
		goto nomem;
	if (cmd_cost_profile(PRICEWAR_TABLE_PROFILE, &hw, err, sizeof(err)) < 0 ||
	    cmd_cost_prices(fx, "fx.conf", err, sizeof(err)) < 0) {
		fprintf(stderr, "marginctl economics check: %s\n", err);
		goto done;
	}
	for (size_t i = 0; i < n; i++) {
		srcs[i] = pricewar_table_default_srcs[i];
		if ((tabs[i] = pricetab_new()) == NULL)
			goto nomem;
		if (cmd_cost_prices(tabs[i], srcs[i].name, err, sizeof(err)) < 0) {
			fprintf(stderr, "marginctl economics check: price table %s: %s\n", srcs[i].name, err);
			goto done;
		}
		srcs[i].prices = tabs[i];
	}
	if (pricewar_table_build(&hw, srcs, n, fx, cur, &pt, err, sizeof(err)) < 0) {
		fprintf(stderr, "marginctl economics check: %s\n", err);
		goto done;
	}
	if (o->json) {
		json_t *j = pricewar_table_json(pt);
		text = j ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
		json_decref(j);
	} else {
		text = pricewar_table_format(pt);
	}
	if (text == NULL)
		goto nomem;
	printf("%s%s", text, o->json ? "\n" : "");
	status = 0;
	goto done;
nomem:
	fprintf(stderr, "marginctl economics: out of memory\n");
done:
	free(text);
	pricewar_table_destroy(&pt);
	for (size_t i = 0; i < 8; i++)
		pricetab_destroy(&tabs[i]);
	pricetab_destroy(&fx);
	return status;
}

/* --estimate: the model (--model: a preset or GGUF shape; --params N of
 * bpp bytes: weights only), the memory check (plan.h: weights + f16 KV at
 * the --mix context against memory_bytes) and the batch (the largest that
 * fits unless --batch), then the roofline, an upper bound. 0, or the exit
 * status with the reason on stderr. */
static int estimate(const eopts_t *o, const hwprof_t *hw, uint32_t batch, double bpp, const thru_eff_t *eff,
		    thru_t *ret)
{
	static const char pre[] = "estimate (roofline x efficiency measured here), upper bound: ";
	char err[2048], fit[256], where[96], rest[sizeof(ret->why)];
	double params = 0, in = 2048, out = 2048;
	shape_t m;
	plan_fit_t f;
	bool fp16;
	int r;
	if ((o->model != NULL) == (o->params != NULL)) {
		fprintf(stderr, "marginctl economics check: --estimate needs --model NAME|FILE.gguf (weights and KV "
			"cache) or --params N (weights only), one of them\n");
		return 2;
	}
	if (o->mix != NULL && (sscanf(o->mix, "%lf/%lf", &in, &out) != 2 || !(in >= 0) || !(out >= 1))) {
		fprintf(stderr, "marginctl economics check: --mix %s: expected IN/OUT tokens per call\n", o->mix);
		return 2;
	}
	if (o->model != NULL) {
		if ((r = shape_load(o->model, NULL, &m, err, sizeof(err))) < 0 || o->bytes_per_param != NULL) {
			fprintf(stderr, "marginctl economics check: --model %s: %s\n", o->model,
				r < 0 ? err : "--bytes-per-param is for --params (a model carries its weight type)");
			return 2;
		}
	} else {
		if (!parse_pos(o->params, &params)) {
			fprintf(stderr, "marginctl economics check: --params %s: expected the model's weights\n", o->params);
			return 2;
		}
		memset(&m, 0, sizeof(m));	/* no layers: no KV cache known */
		m.n_params = m.n_params_per_token = (uint64_t)params;
		m.weight_bytes = (uint64_t)(params * bpp);
		m.fp16_compute = bpp <= 2;
	}
	snprintf(where, sizeof(where), "on %.60s", hw->name);
	if (plan_fit_profile(&m, hw, (uint64_t)in, (uint64_t)out, &f, err, sizeof(err)) < 0) {
		if (batch == 0) {
			fprintf(stderr, "marginctl economics check: --estimate: %s; or give --batch N (memory unchecked)\n",
				err);
			return 2;
		}
		snprintf(fit, sizeof(fit), "batch %u given, memory NOT checked (%.60s has no memory_bytes)", batch,
			 hw->name);
	} else if (o->model == NULL && batch == 0) {
		fprintf(stderr, "marginctl economics check: --estimate --params: the largest batch that fits needs the "
			"KV cache size: give --model NAME|FILE.gguf (the shape) or --batch N\n");
		return 2;
	} else {
		bool largest = batch == 0;
		if (largest)
			batch = f.max_batch > UINT32_MAX ? UINT32_MAX : (uint32_t)(f.max_batch ? f.max_batch : 1);
		if (plan_fit_check(&f, batch, where, err, sizeof(err)) < 0) {
			fprintf(stderr, "marginctl economics check: --estimate refused: %s\n", err);
			return 1;
		}
		if (o->model != NULL)
			snprintf(fit, sizeof(fit), "batch %u%s: %.1f GB weights + %u x %.3f GB KV at %llu tokens <= %.1f GB",
				 batch, largest ? " (the largest that fits)" : " (--batch)", (double)f.weight_bytes / 1e9,
				 batch, (double)f.kv_bytes_per_seq / 1e9, (unsigned long long)f.ctx,
				 (double)f.memory_bytes / 1e9);
		else
			snprintf(fit, sizeof(fit), "batch %u (--batch): %.1f GB weights <= %.1f GB; KV cache NOT counted "
				 "(--params: no shape, give --model)", batch, (double)f.weight_bytes / 1e9,
				 (double)f.memory_bytes / 1e9);
	}
	if (o->model != NULL) {
		r = plan_estimate(&m, hw, batch, in, out, eff, ret, &fp16, err, sizeof(err));
	} else {
		const hwprof_num_t *p16 = &hw->f[HWPROF_PEAK_FLOPS_FP16];
		bool has16 = p16->given && meter_q_to_double(p16->value) > 0;
		fp16 = o->fp16 || (m.fp16_compute && has16);
		r = thru_estimate(hw, fp16, m.n_params, bpp, batch, eff, ret, err, sizeof(err));
		if (r == 0) {
			snprintf(rest, sizeof(rest), "%s", ret->why);
			snprintf(ret->why, sizeof(ret->why), "%s%s peak (%s); %.400s", pre, fp16 ? "fp16" : "fp32",
				 o->fp16 ? "--fp16" : fp16 ? "2-byte weights" : has16 ? "weights over 2 bytes" :
				 "the profile has no peak_flops_fp16", rest);
		}
	}
	if (r < 0) {
		fprintf(stderr, "marginctl economics check: --estimate: %s\n", err);
		return 1;
	}
	/* The fit goes right after "upper bound: ". */
	size_t np = sizeof(pre) - 1;
	snprintf(rest, sizeof(rest), "%s", strncmp(ret->why, pre, np) == 0 ? ret->why + np : ret->why);
	int k = snprintf(ret->why, sizeof(ret->why), "%s%s; ", pre, fit);
	if (k > 0 && (size_t)k < sizeof(ret->why) - 1) {	/* the rest, cut to what is left */
		size_t n = strlen(rest), left = sizeof(ret->why) - 1 - (size_t)k;
		memcpy(ret->why + k, rest, n < left ? n : left);
		ret->why[(size_t)k + (n < left ? n : left)] = '\0';
	}
	return 0;
}

/* One `economics check`, phase by phase: the inputs, the throughput with
 * its source, the call mix and utilization, the two prices, the check, the
 * output. Each phase returns 0 or the exit status with the reason said. */
typedef struct check_run {
	const eopts_t *o;
	hwprof_t hw;
	thru_t th;
	thru_bench_t *bench;		/* owned */
	cmd_cost_rows_t rows;		/* owned */
	pricetab_t *t;			/* owned */
	const char *cur;		/* borrowed */
	uint32_t batch;
	double in_pc, out_pc, util;
	char mix_src[200], util_src[200], hit_src[96];
	char err[2048];
} check_run_t;

#define CHECK_FAIL(status, ...) (fprintf(stderr, "marginctl economics check: " __VA_ARGS__), (status))
#define CHECK_NOMEM() (fprintf(stderr, "marginctl economics: out of memory\n"), 1)

static int check_inputs(check_run_t *c)
{
	const eopts_t *o = c->o;
	int n_src = (o->throughput != NULL) + (o->bench != NULL) + (o->from_ledger != NULL) + o->estimate;
	if (n_src != 1)
		return CHECK_FAIL(2, "give one of --throughput, --bench, --from-ledger, --estimate\n");
	if (o->before == NULL || o->after == NULL)
		return CHECK_FAIL(2, "--price-before and --price-after are required\n");
	if (load_inputs(o, "check", &c->hw, c->t) < 0)
		return 2;
	if (o->n_prices == 0 && cmd_cost_prices(c->t, "fx.conf", c->err, sizeof(c->err)) < 0)
		fprintf(stderr, "marginctl economics check: warning: no exchange rates loaded: %s\n", c->err);
	c->cur = o->currency ? o->currency : c->hw.currency;
	if (!meter_currency_valid(c->cur))
		return CHECK_FAIL(2, "--currency %s: expected an ISO 4217 code\n", c->cur);
	if (o->batch != NULL) {
		double b;
		if (!parse_pos(o->batch, &b) || b != floor(b) || b > 1e6)
			return CHECK_FAIL(2, "--batch %s: expected a positive integer\n", o->batch);
		c->batch = (uint32_t)b;
	}
	return 0;
}

/* --bench FILE: measured here, carried to the target. */
static int throughput_bench(check_run_t *c)
{
	const eopts_t *o = c->o;
	thru_eff_t eff;
	const thru_eff_t *use_eff;
	if ((c->bench = malloc(sizeof(*c->bench))) == NULL)
		return CHECK_NOMEM();
	if (eff_arg(o, "cpu-2vcpu", &eff, &use_eff, c->err, sizeof(c->err)) < 0 ||
	    thru_bench_load(o->bench, c->bench, c->err, sizeof(c->err)) < 0 ||
	    thru_from_bench(c->bench, c->batch, &c->th, c->err, sizeof(c->err)) < 0 ||
	    speed_bench_elsewhere(c->bench, &c->hw, c->batch, use_eff, &c->th, c->err, sizeof(c->err)) < 0)
		return CHECK_FAIL(1, "--bench %s: %s\n", o->bench, c->err);
	return 0;
}

/* --from-ledger BATCH: the batch's own throughput, call mix and utilization. */
static int throughput_ledger(check_run_t *c)
{
	const eopts_t *o = c->o;
	thru_eff_t eff;
	const thru_eff_t *use_eff = NULL;
	char *err = c->err;
	size_t errlen = sizeof(c->err);
	if (cmd_cost_fetch(o->state_dir, o->from_ledger, c->cur, &c->rows, err, errlen) < 0 ||
	    cmd_cost_measured(c->rows.v, c->rows.n, o->from_ledger, 1.0, &c->th, &c->in_pc, &c->out_pc, &c->util,
			      err, errlen) < 0 ||
	    (o->hardware == NULL && c->rows.v[0].hardware_profile[0] != '\0' &&
	     cmd_cost_profile(c->rows.v[0].hardware_profile, &c->hw, err, errlen) < 0) ||
	    eff_arg(o, c->rows.v[0].hardware_profile[0] ? c->rows.v[0].hardware_profile : "cpu-2vcpu", &eff,
		    &use_eff, err, errlen) < 0 ||
	    speed_ledger_elsewhere(c->rows.v, c->rows.n, &c->hw, c->batch, use_eff, &c->th, err, errlen) < 0)
		return CHECK_FAIL(1, "--from-ledger %s: %s\n", o->from_ledger, err);
	snprintf(c->mix_src, sizeof(c->mix_src), "measured: the mean call of batch %.100s", o->from_ledger);
	snprintf(c->util_src, sizeof(c->util_src), "measured: busy / (busy + idle) of batch %.100s", o->from_ledger);
	if (c->util <= 0)
		c->util = 1e-6;
	return 0;
}

/* --estimate: from the model's size and the hardware's bandwidth. */
static int throughput_estimate(check_run_t *c)
{
	const eopts_t *o = c->o;
	double bpp = 2;
	thru_eff_t eff;
	if (o->bytes_per_param && !parse_pos(o->bytes_per_param, &bpp))
		return CHECK_FAIL(2, "--bytes-per-param %s: expected a positive number\n", o->bytes_per_param);
	if (o->eff_bench != NULL) {
		hwprof_t here;
		thru_bench_t *eb = malloc(sizeof(*eb));
		if (eb == NULL)
			return CHECK_NOMEM();
		int r = cmd_cost_profile("cpu-2vcpu", &here, c->err, sizeof(c->err));
		if (r == 0)
			r = thru_bench_load(o->eff_bench, eb, c->err, sizeof(c->err));
		if (r == 0)
			r = thru_eff_from_bench(eb, &here, bpp, &eff, c->err, sizeof(c->err));
		free(eb);
		if (r < 0)
			return CHECK_FAIL(1, "--eff-bench %s: %s\n", o->eff_bench, c->err);
	} else {
		thru_eff_machine_md(&eff);
	}
	return estimate(o, &c->hw, c->batch, bpp, &eff, &c->th);
}

/* The throughput, with its source. */
static int check_throughput(check_run_t *c)
{
	const eopts_t *o = c->o;
	if (o->throughput != NULL) {
		double v;
		if (!parse_pos(o->throughput, &v))
			return CHECK_FAIL(2, "--throughput %s: expected tokens per second\n", o->throughput);
		c->th = (thru_t){ .source = THRU_GIVEN, .out_tok_s = v };
		snprintf(c->th.why, sizeof(c->th.why), "--throughput %s%s%s", o->throughput,
			 o->throughput_source ? ": " : " (no source given)",
			 o->throughput_source ? o->throughput_source : "");
		return 0;
	}
	if (o->bench != NULL)
		return throughput_bench(c);
	if (o->from_ledger != NULL)
		return throughput_ledger(c);
	return throughput_estimate(c);
}

/* --mix IN/OUT and --utilization U over the defaults or the ledger's. */
static int check_mix(check_run_t *c)
{
	const eopts_t *o = c->o;
	if (o->mix != NULL) {
		char m[64], *slash;
		snprintf(m, sizeof(m), "%s", o->mix);
		slash = strchr(m, '/');
		if (slash != NULL)
			*slash++ = '\0';
		if (slash == NULL || !parse_pos(m, &c->in_pc) || !parse_pos(slash, &c->out_pc))
			return CHECK_FAIL(2, "--mix %s: expected IN/OUT tokens per call\n", o->mix);
		snprintf(c->mix_src, sizeof(c->mix_src), "--mix %s", o->mix);
	}
	if (o->utilization != NULL) {
		if (!parse_pos(o->utilization, &c->util) || c->util > 1)
			return CHECK_FAIL(2, "--utilization %s: expected 0 < U <= 1\n", o->utilization);
		snprintf(c->util_src, sizeof(c->util_src), "--utilization %s", o->utilization);
	}
	return 0;
}

/* The check's input: the two prices, and --cache-hit. */
static int check_prices(check_run_t *c, pricetab_entry_t *before, pricetab_entry_t *after, pricewar_in_t *in)
{
	const eopts_t *o = c->o;
	if (price_arg(o->before, "price-before", o, c->t, c->cur, before, c->err, sizeof(c->err)) < 0 ||
	    price_arg(o->after, "price-after", o, c->t, c->cur, after, c->err, sizeof(c->err)) < 0)
		return CHECK_FAIL(2, "%s\n", c->err);
	*in = (pricewar_in_t){ .hw = &c->hw, .thru = &c->th, .in_per_call = c->in_pc, .out_per_call = c->out_pc,
			       .mix_source = c->mix_src, .utilization = c->util, .utilization_source = c->util_src,
			       .prices = c->t, .before = before, .after = after, .via_batch = o->via_batch,
			       .currency = c->cur };
	if (o->cache_hit != NULL) {
		if (meter_q_parse(o->cache_hit, &in->cache_hit) < 0 || in->cache_hit.num < 0 ||
		    meter_q_cmp(in->cache_hit, METER_Q(1, 1)) > 0)
			return CHECK_FAIL(2, "--cache-hit %s: expected a share 0 <= R <= 1 of the "
					     "input tokens (DeepSeek's day: 0.5625)\n", o->cache_hit);
		snprintf(c->hit_src, sizeof(c->hit_src), "--cache-hit %.60s", o->cache_hit);
		in->has_cache_hit = true;
		in->cache_hit_source = c->hit_src;
	}
	return 0;
}

/* The report as text, or in a JSON object with the numbers. */
static int check_print(const check_run_t *c, const pricewar_t *pw, const char *text)
{
	if (!c->o->json) {
		fputs(text, stdout);
		return 0;
	}
	const thru_t *th = &c->th;
	json_t *j = json_pack("{s:s, s:s, s:I, s:I, s:f, s:f, s:I, s:{s:s, s:s, s:f, s:f, s:f, s:s, s:f, s:s},"
			      " s:o, s:o, s:o, s:o, s:o, s:b, s:b, s:s}",
			      "currency", pw->currency, "hardware", c->hw.name,
			      "rate_busy_micros_per_hour", (json_int_t)c->hw.rate_busy_micros_per_hour,
			      "cost_micros_per_hour", (json_int_t)pw->cost_micros_per_hour,
			      "in_tokens_per_hour", pw->in_tokens_per_hour, "out_tokens_per_hour", pw->out_tokens_per_hour,
			      "cost_per_1m_tokens_micros", (json_int_t)pw->cost_per_1m_tokens_micros,
			      "inputs", "throughput_source", thru_source_name(th->source), "throughput", th->why,
			      "in_per_call", c->in_pc, "out_per_call", c->out_pc, "utilization", c->util,
			      "utilization_source", c->util_src, "out_tok_s", th->phases ? th->decode_tok_s : th->out_tok_s,
			      "mix_source", c->mix_src,
			      "before", point_json(&pw->before), "after", point_json(&pw->after),
			      "at_90", point_json(&pw->at_90),
			      "revenue_cut", isnan(pw->revenue_cut) ? json_null() : json_real(pw->revenue_cut),
			      "zero_margin_cut", isnan(pw->zero_margin_cut) ? json_null() : json_real(pw->zero_margin_cut),
			      "after_negative", pw->after_negative, "negative_at_90", pw->negative_at_90,
			      "report", text);
	char *s = j ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
	json_decref(j);
	if (s == NULL)
		return CHECK_NOMEM();
	printf("%s\n", s);
	free(s);
	return 0;
}

static int check(const eopts_t *o)
{
	if ((o->throughput != NULL) + (o->bench != NULL) + (o->from_ledger != NULL) + o->estimate == 0 &&
	    o->before == NULL && o->after == NULL)
		return check_table(o);
	check_run_t c = { .o = o, .in_pc = 2048, .out_pc = 2048, .util = 0.5 };
	char *text = NULL;
	int st;
	snprintf(c.mix_src, sizeof(c.mix_src), "default: economics.md 6 cost basis A (2048 in / 2048 out)");
	snprintf(c.util_src, sizeof(c.util_src), "default: economics.md 6 assumption (U = 50%%)");
	if ((c.t = pricetab_new()) == NULL)
		return CHECK_NOMEM();
	pricetab_entry_t before, after;
	pricewar_in_t in;
	pricewar_t pw;
	if ((st = check_inputs(&c)) != 0 || (st = check_throughput(&c)) != 0 || (st = check_mix(&c)) != 0 ||
	    (st = check_prices(&c, &before, &after, &in)) != 0)
		goto done;
	if (pricewar_check(&in, &pw, c.err, sizeof(c.err)) < 0) {
		st = CHECK_FAIL(1, "%s\n", c.err);
		goto done;
	}
	if ((text = pricewar_format(&in, &pw)) == NULL) {
		st = CHECK_NOMEM();
		goto done;
	}
	st = check_print(&c, &pw, text);
done:
	free(text);
	free(c.bench);
	cmd_cost_rows_done(&c.rows);
	pricetab_destroy(&c.t);
	return st;
}

static int chart(const eopts_t *o)
{
	char err[2048];
	int status = 1, r;
	hwprof_t hw;
	thru_bench_t *b = malloc(sizeof(*b));
	pricetab_t *t = pricetab_new();
	char *svg = NULL;
	const char *refs[MAX_FILES];
	size_t n_refs = 0;
	double util = 1;
	char note[1024];
	int moved = 0;
	thru_eff_t eff;
	const thru_eff_t *use_eff = NULL;
	if (b == NULL || t == NULL) {
		fprintf(stderr, "marginctl economics: out of memory\n");
		goto done;
	}
	if (o->bench == NULL || o->out == NULL) {
		fprintf(stderr, "marginctl economics chart: --bench FILE.json and -o FILE.svg are required\n");
		status = 2;
		goto done;
	}
	if (o->utilization != NULL && (!parse_pos(o->utilization, &util) || util > 1)) {
		fprintf(stderr, "marginctl economics chart: --utilization %s: expected 0 < U <= 1\n", o->utilization);
		status = 2;
		goto done;
	}
	if (load_inputs(o, "chart", &hw, t) < 0) {
		status = 2;
		goto done;
	}
	if (o->n_prices == 0)
		for (const char *const *p = meter_default_price_tables; *p != NULL; p++)
			if (cmd_cost_prices(t, *p, err, sizeof(err)) < 0)
				fprintf(stderr, "marginctl economics chart: warning: %s\n", err);
	for (size_t i = 0; i < o->n_refs; i++)
		refs[n_refs++] = o->refs[i];
	if (o->n_refs == 0)
		n_refs = meter_find_default_refs(t, refs, MAX_FILES);
	if ((r = thru_bench_load(o->bench, b, err, sizeof(err))) < 0 ||
	    (r = eff_arg(o, "cpu-2vcpu", &eff, &use_eff, err, sizeof(err))) < 0 ||
	    (r = moved = speed_chart_bench(b, &hw, use_eff, note, sizeof(note), err, sizeof(err))) < 0 ||
	    (r = chart_cost_vs_batch(b, &hw, util, t, refs, n_refs, o->via_batch, o->currency ? o->currency : hw.currency,
				     &svg, err, sizeof(err))) < 0) {
		fprintf(stderr, "marginctl economics chart: %s\n", err);
		goto done;
	}
	FILE *f = fopen(o->out, "w");
	if (f == NULL || fputs(svg, f) < 0 || fclose(f) != 0) {
		fprintf(stderr, "marginctl economics chart: -o %s: %s\n", o->out, strerror(errno));
		goto done;
	}
	if (moved > 0)
		fprintf(stderr, "marginctl economics chart: note: %s\n", note);
	status = 0;
done:
	free(svg);
	free(b);
	pricetab_destroy(&t);
	return status;
}

int cmd_economics(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	eopts_t o;
	int r = parse(argc - 1, argv + 1, &o);
	if (r != 0)
		r = r == 1 ? 0 : r == 3 ? 1 : r;
	else if (strcmp(argv[1], "check") == 0)
		r = check(&o);
	else if (strcmp(argv[1], "chart") == 0)
		r = chart(&o);
	else {
		fprintf(stderr, "marginctl economics: unknown subcommand \"%s\" (check, chart)\n", argv[1]);
		r = 2;
	}
	mg_config_destroy(&o.cfg);
	return r;
}
