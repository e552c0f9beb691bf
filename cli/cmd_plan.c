/* marginctl plan: capacity planning in one command.
 *
 *   marginctl plan (--output-tokens N[/day] | --requests N[/day]) --model NAME|FILE.gguf
 *       [--mix IN/OUT] [--deadline D] [--dtype T] [--hardware P]... [--ref NAME]... [--prices FILE]...
 *       [--currency CUR] [--one-off AMOUNT] [--bench FILE.json]... [--eff-bench FILE.json]
 *       [--format text|json|csv]
 *
 * For each hardware profile (default: every *.conf of the hardware
 * directory): the largest batch that fits memory, tokens/s there, nodes
 * needed to finish a day's work within the deadline and their utilization,
 * cost per 1M input and output tokens (marginal and loaded), per day and
 * month, and against each reference API the ratio, the break-even volume
 * and the days to recover a one-off cost. The arithmetic is meter/plan.h's;
 * every input is printed with its source. Tokens/s are measured where a
 * bench of the model's shape was taken on the profile's hardware (attached
 * to the profile, `bench = FILE.json`, or --bench FILE.json, which applies
 * to the profile its "hardware" field names, else to the only --hardware),
 * else estimated; the basis is printed. A profile that cannot be planned
 * (the model does not fit, a peak is missing) gets a line saying why; the
 * exit status is 1 only when no profile could be. */
#include "cli.h"
#include "cmd_cost.h"
#include "meter/meter.h"
#include "meter/meter_catalog.h"
#include "lib/mg_settings.h"
#include "meter/plan.h"
#include "meter/report.h"
#include "meter/speed.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ARGS 16
#define MAX_PROFILES 64

/* "a GGUF file ... or a preset: llama-110m, ..." with the presets the
 * worker knows, broken into lines for --help. */
static const char *model_help(void)
{
	static char buf[1024];
	size_t used = 0, col = 44;
	used += (size_t)snprintf(buf, sizeof(buf), "a GGUF file (its shape is read) or a preset:");
	for (size_t i = 0; shape_preset_name(i) != NULL && used < sizeof(buf); i++) {
		const char *name = shape_preset_name(i);
		bool wrap = col + strlen(name) > 76;
		int w = snprintf(buf + used, sizeof(buf) - used, "%s%s%s", i ? "," : "", wrap ? "\n" : " ", name);
		if (w < 0)
			break;
		used += (size_t)w;
		col = wrap ? strlen(name) : col + strlen(name) + 2;
	}
	return buf;
}

typedef struct popts {
	const char *output_tokens, *requests, *mix, *deadline, *model, *dtype, *currency, *one_off, *eff_bench,
		*format;
	const char *hardware[MAX_ARGS], *refs[MAX_ARGS], *prices[MAX_ARGS], *benches[MAX_ARGS];
	size_t n_hardware, n_refs, n_prices, n_benches;
	mg_config_t *cfg;	/* owned: the flags' values, which the fields above borrow */
} popts_t;

#define SEC "plan"
#define O(field) MG_SETTING_AT(popts_t, field)
#define S(f, k, a, field, h) { .flag = (f), .section = SEC, .key = (k), .arg = (a), .help = (h), O(field) }
#define L(f, a, field, count, h) { .flag = (f), .section = SEC, .key = (f), .type = MG_SETTING_LIST, .arg = (a), \
				   .help = (h), MG_SETTING_LIST_AT(popts_t, field, count) }
static const mg_setting_t settings[] = {
	S("output-tokens", "output_tokens", "N", output_tokens,
	  "output tokens a day (k, M, G suffixes: 50M); or --requests N a day"),
	S("requests", "requests", "N", requests, "requests a day (k, M, G suffixes), each of --mix tokens"),
	S("mix", "mix", "IN/OUT", mix, "tokens per request (default 2048/512)"),
	S("deadline", "deadline", "D", deadline, "a day's work is done within D: 24h (default), 8h, 90m"),
	{ .flag = "model", .section = SEC, .key = "model", .arg = "M", .help = "%s", .help_fill = model_help, O(model) },
	S("dtype", "dtype", "T", dtype, "a preset's weight type: f16 (default), bf16, f32, q8_0, q4_0"),
	{ .flag = "hardware", .section = SEC, .key = "hardware", .type = MG_SETTING_LIST, .arg = "P",
	  .help = "a profile FILE or name in %s\n(repeat; default: all of them)", .help_fill = cmd_cost_hardware_dir,
	  MG_SETTING_LIST_AT(popts_t, hardware, n_hardware) },
	L("ref", "NAME", refs, n_refs, "a reference API price entry (repeat; default gpt-4o-mini, qwen-long)"),
	L("prices", "FILE", prices, n_prices,
	  "price tables and exchange rates (repeat; default: fx, closed-2024,\ncn-2024-05-after)"),
	S("currency", "currency", "CUR", currency, "the plan's currency (default: the first profile's)"),
	S("one-off", "one_off", "AMOUNT", one_off, "a one-off deployment cost in CUR: days to recover it from the saving"),
	L("bench", "FILE", benches, n_benches,
	  "a `margin-worker bench --json` of the model taken on a profile's hardware\n"
	  "(its \"hardware\" field, else the only --hardware; repeat): tokens/s\n"
	  "measured at its largest batch that fits, not estimated. Benches\n"
	  "attached to a profile (bench = FILE) are used the same way"),
	S("eff-bench", "eff_bench", "FILE", eff_bench,
	  "efficiency from a `margin-worker bench --json` here (default: machine.md's)"),
	S("format", "format", "F", format, "text (default), json or csv"),
};
#undef S
#undef L

static const mg_settings_spec_t spec = {
	.prog = "marginctl plan",
	.synopsis = "(--output-tokens N[/day] | --requests N[/day]) --model NAME|FILE.gguf\n"
		    "           [--mix IN/OUT] [--deadline D] [--dtype T] [--hardware P]... [--ref NAME]...\n"
		    "           [--prices FILE]... [--currency CUR] [--one-off AMOUNT] [--bench FILE.json]...\n"
		    "           [--eff-bench FILE.json] [--format text|json|csv]\n",
	.intro = "How many nodes of each hardware profile serve a day's work within a deadline, at what cost\n"
		 "per 1M tokens, against closed APIs (docs/economics.md, \"Capacity planning\").\n",
	.no_config = true,
	.settings = settings,
	.n = sizeof(settings) / sizeof(settings[0]),
};

/* The flags into o (strings borrowed from o->cfg, which the caller
 * destroys). 0; 1 after --help; 2 for bad usage, 3 out of memory; each
 * said. */
static int parse(int argc, char **argv, popts_t *o)
{
	*o = (popts_t){ .cfg = mg_config_new() };
	if (o->cfg == NULL) {
		fprintf(stderr, "marginctl plan: out of memory\n");
		return 3;
	}
	int rc = mg_settings_parse_into(&spec, o->cfg, argc, argv, o);
	if (rc != 0)
		return rc == 1 ? 1 : rc == -EINVAL ? 2 : 3;
	return 0;
}

/* "50000000", "50M", "2.5e7", "50M/day" -> 5e7. */
static bool parse_per_day(const char *s, double *ret)
{
	char buf[64], *e;
	snprintf(buf, sizeof(buf), "%s", s);
	char *slash = strchr(buf, '/');
	if (slash != NULL) {
		if (strcmp(slash, "/day") != 0 && strcmp(slash, "/d") != 0)
			return false;
		*slash = '\0';
	}
	double v = strtod(buf, &e);
	if (e == buf)
		return false;
	if (*e == 'k' || *e == 'K')
		v *= 1e3, e++;
	else if (*e == 'M')
		v *= 1e6, e++;
	else if (*e == 'G' || *e == 'B')
		v *= 1e9, e++;
	if (*e != '\0' || !(v > 0) || !isfinite(v))
		return false;
	*ret = v;
	return true;
}

/* "24h", "90m", "1d", "3600s" -> hours. */
static bool parse_hours(const char *s, double *ret)
{
	char *e;
	double v = strtod(s, &e);
	if (e == s || !(v > 0))
		return false;
	if (strcmp(e, "h") == 0)
		*ret = v;
	else if (strcmp(e, "m") == 0 || strcmp(e, "min") == 0)
		*ret = v / 60;
	else if (strcmp(e, "s") == 0)
		*ret = v / 3600;
	else if (strcmp(e, "d") == 0)
		*ret = v * 24;
	else
		return false;
	return true;
}

static bool parse_mix(const char *s, double *in, double *out)
{
	char buf[64], *e1, *e2;
	snprintf(buf, sizeof(buf), "%s", s);
	char *slash = strchr(buf, '/');
	if (slash == NULL)
		return false;
	*slash = '\0';
	*in = strtod(buf, &e1);
	*out = strtod(slash + 1, &e2);
	return e1 != buf && *e1 == '\0' && e2 != slash + 1 && *e2 == '\0' && *in >= 0 && *out >= 1 &&
	       *in == floor(*in) && *out == floor(*out) && *in + *out < 1e9;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every NAME.conf of the hardware directory, sorted. Returns the count;
 * names are owned by the caller (free each). */
static int list_profiles(char **names, int max, char *err, size_t errlen)
{
	const char *dir = cmd_cost_hardware_dir();
	DIR *d = opendir(dir);
	if (d == NULL) {
		snprintf(err, errlen, "%s: %s (set $MARGIN_HARDWARE_DIR or give --hardware)", dir, strerror(errno));
		return -errno;
	}
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL && n < max) {
		size_t l = strlen(de->d_name);
		if (de->d_name[0] == '.' || l < 6 || strcmp(de->d_name + l - 5, ".conf") != 0)
			continue;
		if ((names[n] = strndup(de->d_name, l - 5)) == NULL)
			break;
		n++;
	}
	closedir(d);
	qsort(names, (size_t)n, sizeof(*names), cmp_str);
	if (n == 0) {
		snprintf(err, errlen, "%s: no hardware profiles (*.conf)", dir);
		return -ENOENT;
	}
	return n;
}

/* One profile's outcome: a row, or why there is none. */
typedef struct prow {
	hwprof_t hw;
	thru_bench_t *bench;	/* a measured bench of the model on hw, or NULL */
	bool own_bench;		/* bench is an attached one, loaded for this row */
	bool ok;
	plan_row_t row;
	char why[1024];
} prow_t;

typedef struct plan_ctx {
	const popts_t *o;
	shape_t model;
	plan_workload_t work;
	plan_in_t in;
	pricetab_t *prices;
	thru_eff_t eff;
	char out_src[160], mix_src[96], deadline_src[96];
	prow_t *rows;
	size_t n_rows;
	thru_bench_t *benches[MAX_ARGS];	/* --bench, loaded */
	bool bench_used[MAX_ARGS];
} plan_ctx_t;

/* Parses the workload, loads model, prices, refs; exit status on error. */
static int build(plan_ctx_t *x)
{
	const popts_t *o = x->o;
	char err[2048];
	int r;
	double in = 2048, out = 512, hours = 24, n;
	snprintf(x->mix_src, sizeof(x->mix_src), "default 2048/512");
	snprintf(x->deadline_src, sizeof(x->deadline_src), "default 24h");
	if ((o->output_tokens != NULL) == (o->requests != NULL)) {
		fprintf(stderr, "marginctl plan: give one of --output-tokens N/day and --requests N/day\n");
		return 2;
	}
	if (o->model == NULL) {
		fprintf(stderr, "marginctl plan: --model NAME|FILE.gguf is required (see --help for the presets)\n");
		return 2;
	}
	if (o->mix != NULL && !parse_mix(o->mix, &in, &out)) {
		fprintf(stderr, "marginctl plan: --mix %s: expected IN/OUT whole tokens per request, OUT >= 1 "
			"(e.g. 2048/512)\n", o->mix);
		return 2;
	}
	if (o->mix != NULL)
		snprintf(x->mix_src, sizeof(x->mix_src), "--mix %.60s", o->mix);
	const char *vol = o->output_tokens ? o->output_tokens : o->requests;
	if (!parse_per_day(vol, &n)) {
		fprintf(stderr, "marginctl plan: %s %s: expected a positive count a day, e.g. 50000000, 50M or "
			"50M/day\n", o->output_tokens ? "--output-tokens" : "--requests", vol);
		return 2;
	}
	snprintf(x->out_src, sizeof(x->out_src), "%s %.60s", o->output_tokens ? "--output-tokens" : "--requests", vol);
	if (o->deadline != NULL) {
		if (!parse_hours(o->deadline, &hours) || hours > 24) {
			fprintf(stderr, "marginctl plan: --deadline %s: expected a duration up to a day: 24h, 8h, 90m, "
				"3600s (a day's work must finish every day)\n", o->deadline);
			return 2;
		}
		snprintf(x->deadline_src, sizeof(x->deadline_src), "--deadline %.60s", o->deadline);
	}
	x->work = (plan_workload_t){ .out_tokens_per_day = o->output_tokens ? n : n * out, .in_per_req = in,
				     .out_per_req = out, .deadline_hours = hours };
	if ((r = shape_load(o->model, o->dtype, &x->model, err, sizeof(err))) < 0) {
		fprintf(stderr, "marginctl plan: --model %s: %s\n", o->model, err);
		return r == -ENOENT || r == -EINVAL ? 2 : 1;
	}
	speed_shape_t shape;
	speed_shape_from_model(&x->model, &shape);
	for (size_t i = 0; i < o->n_benches; i++) {
		char sa[256], sb[256];
		speed_shape_t bs;
		if ((x->benches[i] = malloc(sizeof(*x->benches[i]))) == NULL)
			return 1;
		if (thru_bench_load(o->benches[i], x->benches[i], err, sizeof(err)) < 0) {
			fprintf(stderr, "marginctl plan: --bench %s: %s\n", o->benches[i], err);
			return 2;
		}
		speed_shape_from_bench(x->benches[i], &bs);
		if (!speed_shape_match(&shape, x->benches[i])) {
			fprintf(stderr, "marginctl plan: --bench %s: a bench of %s, not of the model planned, %s (the same "
				"shape: n_params and params_per_token within 1%%)\n", o->benches[i],
				speed_shape_describe(&bs, sa, sizeof(sa)), speed_shape_describe(&shape, sb, sizeof(sb)));
			return 2;
		}
		if (x->benches[i]->hardware[0] == '\0' && o->n_hardware != 1) {
			fprintf(stderr, "marginctl plan: --bench %s: it does not say which hardware it was measured on (no "
				"\"hardware\" field): give the profile with a single --hardware, or add \"hardware\": "
				"\"PROFILE\" to it\n", o->benches[i]);
			return 2;
		}
	}
	if (o->eff_bench != NULL) {
		hwprof_t here;
		thru_bench_t *b = malloc(sizeof(*b));
		if (b == NULL)
			return 1;
		r = cmd_cost_profile("cpu-2vcpu", &here, err, sizeof(err));
		if (r == 0)
			r = thru_bench_load(o->eff_bench, b, err, sizeof(err));
		if (r == 0)
			r = thru_eff_from_bench(b, &here, (double)x->model.weight_bytes / (double)x->model.n_params,
						&x->eff, err, sizeof(err));
		free(b);
		if (r < 0) {
			fprintf(stderr, "marginctl plan: --eff-bench %s: %s\n", o->eff_bench, err);
			return 2;
		}
	} else {
		thru_eff_machine_md(&x->eff);
	}
	if ((x->prices = pricetab_new()) == NULL)
		return 1;
	for (size_t i = 0; i < o->n_prices; i++)
		if ((r = cmd_cost_prices(x->prices, o->prices[i], err, sizeof(err))) < 0) {
			fprintf(stderr, "marginctl plan: --prices %s: %s\n", o->prices[i], err);
			return 2;
		}
	if (o->n_prices == 0)
		for (const char *const *p = meter_default_price_tables; *p != NULL; p++)
			if (cmd_cost_prices(x->prices, *p, err, sizeof(err)) < 0)
				fprintf(stderr, "marginctl plan: warning: default price table not loaded: %s\n", err);
	const char *refs[PLAN_MAX_REFS];
	size_t n_refs = o->n_refs;
	for (size_t i = 0; i < o->n_refs; i++)
		refs[i] = o->refs[i];
	if (o->n_refs == 0)
		n_refs = meter_find_default_refs(x->prices, refs, PLAN_MAX_REFS);
	for (size_t i = 0; i < n_refs; i++) {
		x->in.refs[i] = pricetab_find(x->prices, refs[i]);
		if (x->in.refs[i] == NULL) {
			fprintf(stderr, "marginctl plan: --ref %s: no such price entry in %s; known:", refs[i],
				pricetab_name(x->prices));
			for (size_t k = 0; k < pricetab_count(x->prices); k++)
				fprintf(stderr, " %s", pricetab_at(x->prices, k)->name);
			fprintf(stderr, "\n");
			return 2;
		}
	}
	x->in.n_refs = n_refs;
	x->in.model = &x->model;
	x->in.work = &x->work;
	x->in.prices = x->prices;
	x->in.eff = &x->eff;
	return 0;
}

/* The bench p is planned with: a --bench for p's profile (by its
 * "hardware", else the only --hardware), else one attached to the profile
 * of the model's shape, else none (the estimate). A bench file's error. */
static int pick_bench(plan_ctx_t *x, prow_t *p, char *err, size_t errlen)
{
	for (size_t k = 0; k < x->o->n_benches; k++) {
		const char *on = x->benches[k]->hardware;
		if (on[0] != '\0' ? strcmp(on, p->hw.name) != 0 : x->o->n_hardware != 1)
			continue;
		x->bench_used[k] = true;
		if (p->bench == NULL)
			p->bench = x->benches[k];
	}
	if (p->bench != NULL)
		return 0;
	speed_shape_t shape;
	speed_shape_from_model(&x->model, &shape);
	thru_bench_t *b = malloc(sizeof(*b));
	int r = b ? speed_attached_bench(&p->hw, &shape, b, err, errlen) : -ENOMEM;
	if (r > 0) {
		p->bench = b;	/* owned: freed with the rows */
		p->own_bench = true;
		return 0;
	}
	free(b);
	return r;
}

/* Loads the profiles and plans each. Exit status on a usage error. */
static int run_plan(plan_ctx_t *x)
{
	const popts_t *o = x->o;
	char err[2048];
	char *names[MAX_PROFILES];
	int n = 0, r;
	if (o->n_hardware > 0) {
		for (size_t i = 0; i < o->n_hardware; i++)
			names[n++] = strdup(o->hardware[i]);
	} else if ((n = list_profiles(names, MAX_PROFILES, err, sizeof(err))) < 0) {
		fprintf(stderr, "marginctl plan: %s\n", err);
		return 1;
	}
	int status = 0;
	bool have_currency = false;
	if ((x->rows = calloc((size_t)n, sizeof(*x->rows))) == NULL)
		status = 1;
	for (int i = 0; status == 0 && i < n; i++) {
		prow_t *p = &x->rows[x->n_rows];
		if (names[i] == NULL) {
			status = 1;
			break;
		}
		if ((r = cmd_cost_profile(names[i], &p->hw, err, sizeof(err))) < 0) {
			if (o->n_hardware > 0) {	/* named: a usage error */
				fprintf(stderr, "marginctl plan: --hardware %s: %s\n", names[i], err);
				status = 2;
				break;
			}
			/* one broken file of the directory: a row saying so */
			memset(&p->hw, 0, sizeof(p->hw));
			snprintf(p->hw.name, sizeof(p->hw.name), "%s", names[i]);
			snprintf(p->why, sizeof(p->why), "%.1000s", err);
			x->n_rows++;
			continue;
		}
		x->n_rows++;
		if (!have_currency) {
			have_currency = true;
			x->in.currency = o->currency ? o->currency : p->hw.currency;
			if (!meter_currency_valid(x->in.currency)) {
				fprintf(stderr, "marginctl plan: --currency %s: expected an ISO 4217 code such as CNY\n",
					x->in.currency);
				status = 2;
				break;
			}
			if (o->one_off != NULL && cmd_cost_micros(o->one_off, &x->in.one_off_micros) < 0) {
				fprintf(stderr, "marginctl plan: --one-off %s: expected an amount of %s\n", o->one_off,
					x->in.currency);
				status = 2;
				break;
			}
		}
		if ((r = pick_bench(x, p, err, sizeof(err))) < 0) {
			snprintf(p->why, sizeof(p->why), "%.1000s", err);
			continue;
		}
		p->ok = plan_profile(&x->in, &p->hw, p->bench, &p->row, p->why, sizeof(p->why)) == 0;
	}
	for (size_t k = 0; status == 0 && k < o->n_benches; k++)
		if (!x->bench_used[k]) {
			fprintf(stderr, "marginctl plan: --bench %s: measured on %s, which is not planned here (profiles:",
				o->benches[k], x->benches[k]->hardware);
			for (size_t i = 0; i < x->n_rows; i++)
				fprintf(stderr, " %s", x->rows[i].hw.name);
			fprintf(stderr, ")\n");
			status = 2;
		}
	if (status == 0 && !have_currency)
		x->in.currency = o->currency ? o->currency : "USD";	/* no profile loaded: rows say why */
	for (int i = 0; i < n; i++)
		free(names[i]);
	return status;
}

/* Currency units from micros, for people. */
static double units(double micros)
{
	return micros / (double)METER_MICROS;
}

static void print_inputs(const plan_ctx_t *x, FILE *f)
{
	const plan_workload_t *w = &x->work;
	const shape_t *m = &x->model;
	char a[64];
	fprintf(f, "capacity plan: %.0f output tokens a day of %s within %g h, in %s\n", w->out_tokens_per_day, m->name,
		w->deadline_hours, x->in.currency);
	fprintf(f, "inputs:\n");
	fprintf(f, "  workload: %.0f output tokens/day [%s]; %.0f in / %.0f out tokens per request [%s]\n"
		   "            = %.0f requests, %.0f input tokens a day\n",
		w->out_tokens_per_day, x->out_src, w->in_per_req, w->out_per_req, x->mix_src,
		w->out_tokens_per_day / w->out_per_req, w->out_tokens_per_day / w->out_per_req * w->in_per_req);
	fprintf(f, "  deadline: a day's work done within %g h [%s]\n", w->deadline_hours, x->deadline_src);
	fprintf(f, "  model: %s (%s): %.4g parameters, %.2f GB of %s weights; %u layers, %u heads (%u KV) x %u; "
		   "KV cache %llu B/token (f16)%s [%s]\n", m->name, m->arch, (double)m->n_params,
		(double)m->weight_bytes / 1e9, m->dtype, m->n_layers, m->n_heads, m->n_kv_heads, m->head_dim,
		(unsigned long long)shape_kv_bytes_per_token(m), m->sliding_window ? ", sliding window" : "", m->source);
	fprintf(f, "  efficiency for estimates: flops %.2f, bandwidth %.2f [%s]\n", x->eff.flops, x->eff.bandwidth,
		x->eff.why);
	for (size_t i = 0; i < x->in.n_refs; i++) {
		const pricetab_entry_t *e = x->in.refs[i];
		char b[64];
		fprintf(f, "  reference %s (%s): %s in / %s out %s per 1M [source: %s; date: %s]\n", e->name, e->model,
			meter_q_format(e->in_per_1m, a, sizeof(a)), meter_q_format(e->out_per_1m, b, sizeof(b)),
			e->currency, e->in_source, e->in_date);
	}
	/* The exchange rates of every currency involved (USD is 1). */
	const char *curs[2 + PLAN_MAX_REFS + MAX_PROFILES];
	size_t n = 0;
	curs[n++] = x->in.currency;
	for (size_t i = 0; i < x->in.n_refs; i++)
		curs[n++] = x->in.refs[i]->currency;
	for (size_t i = 0; i < x->n_rows; i++)
		if (x->rows[i].hw.currency[0] != '\0')	/* a profile that did not load has none */
			curs[n++] = x->rows[i].hw.currency;
	for (size_t i = 0; i < n; i++) {
		bool seen = strcmp(curs[i], "USD") == 0;
		for (size_t k = 0; k < i; k++)
			seen |= strcmp(curs[k], curs[i]) == 0;
		const pricetab_fx_t *fx = seen ? NULL : pricetab_find_fx(x->prices, curs[i]);
		if (fx != NULL)
			fprintf(f, "  exchange rate: %s_per_USD = %s [source: %s; date: %s]\n", fx->currency,
				meter_q_format(fx->per_usd, a, sizeof(a)), fx->source, fx->date);
	}
	if (x->in.one_off_micros > 0)
		fprintf(f, "  one-off cost: %s %s [--one-off; economics.md 5.6]\n",
			meter_format_micros(x->in.one_off_micros, a, sizeof(a)), x->in.currency);
}

static void fmt_tokens(double v, char *buf, size_t len)
{
	if (isinf(v))
		snprintf(buf, len, "never");
	else if (v >= 1e9)
		snprintf(buf, len, "%.2fG", v / 1e9);
	else if (v >= 1e6)
		snprintf(buf, len, "%.2fM", v / 1e6);
	else
		snprintf(buf, len, "%.0f", v);
}

static void print_text(const plan_ctx_t *x, FILE *f)
{
	const char *cur = x->in.currency;
	print_inputs(x, f);
	fprintf(f, "\nper profile (cost in %s; per 1M tokens: input / output; loaded spreads the idle day):\n", cur);
	fprintf(f, "%-16s %6s %6s %8s %10s %11s %-9s %21s %21s %12s %14s\n", "profile", "nodes", "util", "batch",
		"out tok/s", "in tok/s", "basis", "marginal in/out", "loaded in/out", "per day", "per month");
	for (size_t i = 0; i < x->n_rows; i++) {
		const prow_t *p = &x->rows[i];
		const plan_row_t *r = &p->row;
		if (!p->ok)
			continue;
		char mg[48], ld[48];
		snprintf(mg, sizeof(mg), "%.4f / %.4f", units(r->marginal_in_per_1m), units(r->marginal_out_per_1m));
		snprintf(ld, sizeof(ld), "%.4f / %.4f", units(r->loaded_in_per_1m), units(r->loaded_out_per_1m));
		fprintf(f, "%-16s %6llu %5.1f%% %8llu %10.0f %11.0f %-9s %21s %21s %12.2f %14.2f\n", r->profile,
			(unsigned long long)r->nodes, r->utilization * 100, (unsigned long long)r->batch,
			r->speed.decode_tok_s, r->speed.prefill_tok_s,
			r->speed.source == THRU_ESTIMATED ? "estimate" : thru_basis_name(r->speed.source), mg, ld,
			units(r->cost_per_day_micros), units(r->cost_per_month_micros));
	}
	if (x->in.n_refs > 0) {
		fprintf(f, "\nagainst the APIs (ratio = API cost / self-hosted cost of the day's work; break-even: "
			   "output tokens a day on one node):\n");
		fprintf(f, "%-16s %-14s %14s %8s %12s %-12s %14s\n", "profile", "reference", "API per day", "ratio",
			"break-even", "", x->in.one_off_micros > 0 ? "days to recover" : "saving/day");
		for (size_t i = 0; i < x->n_rows; i++) {
			const prow_t *p = &x->rows[i];
			for (size_t k = 0; p->ok && k < p->row.n_refs; k++) {
				const plan_ref_t *q = &p->row.refs[k];
				char be[32], last[32];
				fmt_tokens(q->breakeven_out_tokens_per_day, be, sizeof(be));
				if (x->in.one_off_micros <= 0)
					snprintf(last, sizeof(last), "%.2f", units(q->saving_per_day_micros));
				else if (isinf(q->days_to_recover))
					snprintf(last, sizeof(last), "never");
				else
					snprintf(last, sizeof(last), "%.1f", q->days_to_recover);
				fprintf(f, "%-16s %-14s %14.2f %7.2fx %12s %-12s %14s\n", p->row.profile, q->name,
					units(q->api_per_day_micros), q->ratio, be,
					isinf(q->breakeven_out_tokens_per_day) ? "(API cheaper)" :
					q->reachable ? "(1 node)" : "(> 1 node)", last);
			}
		}
	}
	fprintf(f, "\nbases:\n");
	for (size_t i = 0; i < x->n_rows; i++) {
		const prow_t *p = &x->rows[i];
		const plan_row_t *r = &p->row;
		char a[32], b[32];
		if (!p->ok) {
			fprintf(f, "  %s: not planned: %s\n", p->hw.name, p->why);
			continue;
		}
		const hwprof_num_t *mem = &p->hw.f[HWPROF_MEMORY_BYTES];
		fprintf(f, "  %s: memory %.1f GB [%s; %s] holds %.1f GB of weights + %llu x %.3f GB of KV at %llu "
			   "tokens\n", r->profile, (double)r->fit.memory_bytes / 1e9, mem->source, mem->date,
			(double)r->fit.weight_bytes / 1e9, (unsigned long long)r->fit.max_batch,
			(double)r->fit.kv_bytes_per_seq / 1e9, (unsigned long long)r->fit.ctx);
		fprintf(f, "    speed: %s\n", r->speed.why);
		if (r->speed.source != THRU_ESTIMATED)
			fprintf(f, "    basis: %s\n", r->basis);
		fprintf(f, "    rate %s %s/h busy, %s idle (%s%s%s, from %s); each node busy %.2f h a day\n",
			meter_format_micros(r->rate_busy_micros_per_hour, a, sizeof(a)), cur,
			meter_format_micros(r->rate_idle_micros_per_hour, b, sizeof(b)), p->hw.pricing,
			strcmp(p->hw.currency, cur) != 0 ? ", converted from " : "",
			strcmp(p->hw.currency, cur) != 0 ? p->hw.currency : "", p->hw.origin, r->busy_hours_per_node);
	}
	bool measured = false;
	for (size_t i = 0; i < x->n_rows; i++)
		measured |= x->rows[i].ok && x->rows[i].row.speed.source != THRU_ESTIMATED;
	fprintf(f, "a month = 365/12 days. The estimates are upper bounds: the roofline at the largest batch that "
		   "fits, activations not counted.%s\n", measured ? " Measured rows: a bench's run at the largest batch "
		   "it measured that fits." : "");
}

static json_t *num_or_null(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

static json_t *micros(double v)
{
	return isfinite(v) ? json_integer((json_int_t)llround(v)) : json_null();
}

static json_t *row_json(const plan_ctx_t *x, const prow_t *p)
{
	const plan_row_t *r = &p->row;
	if (!p->ok)
		return json_pack("{s:s, s:s, s:s}", "profile", p->hw.name, "status", "not planned", "error", p->why);
	json_t *refs = json_array();
	for (size_t k = 0; refs != NULL && k < r->n_refs; k++) {
		const plan_ref_t *q = &r->refs[k];
		json_array_append_new(refs, json_pack("{s:s, s:s, s:o, s:o, s:o, s:b, s:o, s:o}", "ref", q->name,
						      "model", q->model, "api_per_day_micros", micros(q->api_per_day_micros),
						      "ratio", num_or_null(q->ratio), "breakeven_out_tokens_per_day",
						      num_or_null(q->breakeven_out_tokens_per_day), "breakeven_reachable",
						      q->reachable, "saving_per_day_micros",
						      micros(q->saving_per_day_micros), "days_to_recover",
						      x->in.one_off_micros > 0 ? num_or_null(q->days_to_recover) : json_null()));
	}
	return json_pack("{s:s, s:s, s:I, s:{s:I, s:I, s:I, s:I, s:I}, s:{s:s, s:s, s:I, s:f, s:f, s:s}, s:I, s:f, s:f,"
			 " s:f, s:I, s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
			 "profile", r->profile, "status", "ok", "accelerators", (json_int_t)r->accelerators,
			 "memory", "memory_bytes", (json_int_t)r->fit.memory_bytes, "weight_bytes",
			 (json_int_t)r->fit.weight_bytes, "context_tokens", (json_int_t)r->fit.ctx,
			 "kv_bytes_per_seq", (json_int_t)r->fit.kv_bytes_per_seq, "max_batch", (json_int_t)r->fit.max_batch,
			 "speed", "basis", r->basis,
			 "peak", r->speed.source == THRU_ESTIMATED ? (r->fp16 ? "fp16" : "fp32") : "-", "batch",
			 (json_int_t)r->batch,
			 "prefill_tok_s", r->speed.prefill_tok_s, "decode_tok_s", r->speed.decode_tok_s, "why", r->speed.why,
			 "nodes", (json_int_t)r->nodes, "utilization", r->utilization, "busy_hours_per_node",
			 r->busy_hours_per_node, "node_seconds_per_day", r->node_seconds_per_day,
			 "rate_busy_micros_per_hour", (json_int_t)r->rate_busy_micros_per_hour,
			 "rate_idle_micros_per_hour", (json_int_t)r->rate_idle_micros_per_hour,
			 "marginal_in_per_1m_micros", micros(r->marginal_in_per_1m), "marginal_out_per_1m_micros",
			 micros(r->marginal_out_per_1m), "loaded_in_per_1m_micros", micros(r->loaded_in_per_1m),
			 "loaded_out_per_1m_micros", micros(r->loaded_out_per_1m), "cost_per_day_micros",
			 micros(r->cost_per_day_micros), "cost_per_month_micros", micros(r->cost_per_month_micros),
			 "refs", refs);
}

static int print_json(const plan_ctx_t *x, FILE *f)
{
	const plan_workload_t *w = &x->work;
	const shape_t *m = &x->model;
	json_t *rows = json_array();
	for (size_t i = 0; rows != NULL && i < x->n_rows; i++)
		json_array_append_new(rows, row_json(x, &x->rows[i]));
	json_t *j = json_pack("{s:s, s:{s:f, s:f, s:f, s:f, s:f, s:s, s:s, s:s}, s:{s:s, s:s, s:s, s:I, s:I, s:I,"
			      " s:s, s:I, s:I, s:I, s:I, s:I}, s:{s:f, s:f, s:s}, s:o, s:s, s:o}",
			      "currency", x->in.currency,
			      "workload", "out_tokens_per_day", w->out_tokens_per_day, "in_tokens_per_day",
			      w->out_tokens_per_day / w->out_per_req * w->in_per_req, "in_per_request", w->in_per_req,
			      "out_per_request", w->out_per_req, "deadline_hours", w->deadline_hours, "volume_source",
			      x->out_src, "mix_source", x->mix_src, "deadline_source", x->deadline_src,
			      "model", "name", m->name, "arch", m->arch, "source", m->source, "n_params",
			      (json_int_t)m->n_params, "n_params_per_token", (json_int_t)m->n_params_per_token,
			      "weight_bytes", (json_int_t)m->weight_bytes, "dtype", m->dtype, "n_layers",
			      (json_int_t)m->n_layers, "n_heads", (json_int_t)m->n_heads, "n_kv_heads",
			      (json_int_t)m->n_kv_heads, "head_dim", (json_int_t)m->head_dim, "kv_bytes_per_token",
			      (json_int_t)shape_kv_bytes_per_token(m),
			      "efficiency", "flops", x->eff.flops, "bandwidth", x->eff.bandwidth, "source", x->eff.why,
			      "one_off_micros", x->in.one_off_micros > 0 ? json_integer(x->in.one_off_micros) : json_null(),
			      "month", "365/12 days", "profiles", rows);
	char *s = j ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
	json_decref(j);
	if (s == NULL)
		return -ENOMEM;
	fprintf(f, "%s\n", s);
	free(s);
	return 0;
}

static void csv_num(FILE *f, double v, const char *fmt)
{
	fputc(',', f);
	if (isfinite(v))
		fprintf(f, fmt, v);
}

/* One line per profile; money in micros of the currency column. */
static void print_csv(const plan_ctx_t *x, FILE *f)
{
	fprintf(f, "profile,currency,status,max_batch,batch,basis,prefill_tok_s,decode_tok_s,nodes,utilization,"
		   "busy_hours_per_node,marginal_in_per_1m_micros,marginal_out_per_1m_micros,loaded_in_per_1m_micros,"
		   "loaded_out_per_1m_micros,cost_per_day_micros,cost_per_month_micros");
	for (size_t k = 0; k < x->in.n_refs; k++) {
		const char *n = x->in.refs[k]->name;
		fprintf(f, ",api_per_day_micros_%s,ratio_%s,breakeven_out_tokens_per_day_%s,days_to_recover_%s", n, n,
			n, n);
	}
	fprintf(f, ",error\n");
	for (size_t i = 0; i < x->n_rows; i++) {
		const prow_t *p = &x->rows[i];
		const plan_row_t *r = &p->row;
		fprintf(f, "%s,%s,%s", p->hw.name, x->in.currency, p->ok ? "ok" : "not planned");
		if (p->ok) {
			fprintf(f, ",%llu,%llu,", (unsigned long long)r->fit.max_batch, (unsigned long long)r->batch);
			if (r->speed.source == THRU_ESTIMATED)
				fputs("estimate (upper bound)", f);
			else
				report_csv_field(f, r->basis, true);
			csv_num(f, r->speed.prefill_tok_s, "%.1f");
			csv_num(f, r->speed.decode_tok_s, "%.1f");
			fprintf(f, ",%llu", (unsigned long long)r->nodes);
			csv_num(f, r->utilization, "%.6f");
			csv_num(f, r->busy_hours_per_node, "%.6f");
			csv_num(f, round(r->marginal_in_per_1m), "%.0f");
			csv_num(f, round(r->marginal_out_per_1m), "%.0f");
			csv_num(f, round(r->loaded_in_per_1m), "%.0f");
			csv_num(f, round(r->loaded_out_per_1m), "%.0f");
			csv_num(f, round(r->cost_per_day_micros), "%.0f");
			csv_num(f, round(r->cost_per_month_micros), "%.0f");
			for (size_t k = 0; k < r->n_refs; k++) {
				csv_num(f, round(r->refs[k].api_per_day_micros), "%.0f");
				csv_num(f, r->refs[k].ratio, "%.6f");
				csv_num(f, r->refs[k].breakeven_out_tokens_per_day, "%.0f");
				csv_num(f, x->in.one_off_micros > 0 ? r->refs[k].days_to_recover : NAN, "%.3f");
			}
			fprintf(f, ",\n");
		} else {
			for (size_t c = 0; c < 15 + 4 * x->in.n_refs; c++)	/* 14 + 4 per ref empty, then error */
				fputc(',', f);
			report_csv_field(f, p->why, true);	/* the reason (it may hold commas) */
			fputc('\n', f);
		}
	}
}

static int plan_main(popts_t *op)
{
	popts_t o = *op;
	int status;
	const char *fmt = o.format ? o.format : "text";
	if (strcmp(fmt, "text") != 0 && strcmp(fmt, "json") != 0 && strcmp(fmt, "csv") != 0) {
		fprintf(stderr, "marginctl plan: --format %s: expected text, json or csv\n", fmt);
		return 2;
	}
	plan_ctx_t x;
	memset(&x, 0, sizeof(x));
	x.o = &o;
	if ((status = build(&x)) == 0 && (status = run_plan(&x)) == 0) {
		size_t ok = 0;
		for (size_t i = 0; i < x.n_rows; i++)
			ok += x.rows[i].ok;
		if (strcmp(fmt, "json") == 0)
			status = print_json(&x, stdout) < 0 ? 1 : 0;
		else if (strcmp(fmt, "csv") == 0)
			print_csv(&x, stdout);
		else
			print_text(&x, stdout);
		if (ok == 0) {
			fprintf(stderr, "marginctl plan: no profile could be planned:\n");
			for (size_t i = 0; i < x.n_rows; i++)
				fprintf(stderr, "  %s: %s\n", x.rows[i].hw.name, x.rows[i].why);
			status = 1;
		}
	}
	for (size_t i = 0; i < x.n_rows; i++)
		if (x.rows[i].own_bench)
			free(x.rows[i].bench);
	for (size_t k = 0; k < o.n_benches; k++)
		free(x.benches[k]);
	free(x.rows);
	pricetab_destroy(&x.prices);
	return status;
}

int cmd_plan(int argc, char **argv)
{
	popts_t o;
	int status = parse(argc, argv, &o);
	if (status == 0)
		status = plan_main(&o);
	else
		status = status == 1 ? 0 : status == 3 ? 1 : status;
	mg_config_destroy(&o.cfg);
	return status;
}
