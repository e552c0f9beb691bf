/* marginctl cost: what a batch's calls cost, from margind's ledger.
 *
 *   marginctl cost --batch ID [--group call|batch|model|worker|day] [--format text|csv|json] [-o FILE]
 *                  [--state-dir DIR] [--prices FILE]... [--ref NAME]... [--currency CUR]
 *                  [--hardware PROFILE|FILE [--speed X | --bench FILE.json] [--decode-batch N]
 *                   [--eff-bench FILE.json]]
 *                  [--sale-price P|IN/OUT]
 *                  [--one-off AMOUNT [--calls-per-day N] [--breakeven-ref NAME]] [--chart FILE.svg]
 *
 * The ledger rows come from the margind at --url (GET /v1/cost/ledger) or
 * straight from a state directory; the report is computed here with the
 * meter library (meter/report.h), so what-if (--hardware: the same calls
 * on other hardware, from their stored busy and idle time divided by the
 * target's speed ratio (meter/speed.h: measured by a bench, else
 * estimated), no rerun;
 * --prices: other closed-API price tables) needs nothing from the server.
 * Closed-API equivalents are the ones booked with the calls (what they cost
 * on that API when answered) unless --prices asks for a what-if; the
 * report says which ("api_basis"/"api_note", a line in text, stderr for
 * CSV).
 * By call the JSON is
 *   {"currency","hardware","rows":[{"custom_id","model","worker","prompt_tokens","completion_tokens",
 *    "busy_ns","flops","cost_marginal_micros","cost_loaded_micros","api_equivalent_micros":{REF:..}}],
 *    "total":{the same keys, summed}}
 * and the total is the exact sum of the rows in every format. */
#include "cli.h"
#include "cmd_cost.h"
#include "meter/chart.h"
#include "meter/cost.h"
#include "meter/meter.h"
#include "meter/meter_catalog.h"
#include "lib/mg_settings.h"
#include "meter/report.h"
#include "meter/speed.h"

#if __has_include(<curl/curl.h>)
#include "http_client.h"
#define HAVE_HTTP 1
#else
#define HAVE_HTTP 0
#endif

#include <errno.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_REFS 16
#define MAX_PRICE_FILES 16

/* --- shared helpers ---------------------------------------------------- */

static bool is_file(const char *p)
{
	struct stat st;
	return p[0] != '\0' && stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* $env when set, else the meter's default directory of kind. */
static const char *data_dir(const char *env, const char *kind, char *buf, size_t len)
{
	const char *e = getenv(env);
	if (e != NULL && *e != '\0')
		return e;
	return meter_default_dir(kind, buf, len);
}

const char *cmd_cost_hardware_dir(void)
{
	static char buf[4096];
	return data_dir("MARGIN_HARDWARE_DIR", "hardware", buf, sizeof(buf));
}

const char *cmd_cost_prices_dir(void)
{
	static char buf[4096];
	return data_dir("MARGIN_PRICES_DIR", "prices", buf, sizeof(buf));
}

int cmd_cost_profile(const char *spec, hwprof_t *ret, char *err, size_t errlen)
{
	int r = meter_load_profile(spec, cmd_cost_hardware_dir(), ret, err, errlen);
	if (r == -ENOENT && strchr(spec, '/') == NULL) {
		/* a name not found: say where names are looked up */
		char e2[512];
		snprintf(e2, sizeof(e2), "%s", err);
		snprintf(err, errlen, "%s (hardware profiles by name come from %s; give a FILE or set $MARGIN_HARDWARE_DIR)",
			 e2, cmd_cost_hardware_dir());
	}
	return r;
}

int cmd_cost_prices(pricetab_t *t, const char *spec, char *err, size_t errlen)
{
	return meter_load_prices(t, spec, cmd_cost_prices_dir(), NULL, err, errlen);
}

int cmd_cost_micros(const char *text, int64_t *ret)
{
	meter_q_t q, m;
	if (meter_q_parse(text, &q) < 0 || q.num < 0 || meter_q_mul(q, METER_Q(METER_MICROS, 1), &m) < 0)
		return -EINVAL;
	return meter_q_round(m, ret) < 0 ? -ERANGE : 0;
}

void cmd_cost_rows_done(cmd_cost_rows_t *r)
{
	if (r == NULL)
		return;
	if (r->db == NULL)
		free(r->v);
	free(r->api);
	free(r->prices);
	ledger_rows_destroy(&r->db);
	json_decref(r->json);
	memset(r, 0, sizeof(*r));
}

static int fetch_db(const char *state_dir, const char *batch, const char *def_cur, cmd_cost_rows_t *ret, char *err,
		    size_t errlen)
{
	char path[4200], e2[1024];
	sqlite3 *db = NULL;
	snprintf(path, sizeof(path), "%s/margin.db", state_dir);
	if (!is_file(path)) {
		snprintf(err, errlen, "%s: no journal there (--state-dir is margind's state directory)", path);
		return -ENOENT;
	}
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", path, db ? sqlite3_errmsg(db) : "cannot open");
		sqlite3_close(db);
		return -EIO;
	}
	sqlite3_busy_timeout(db, 5000);
	snprintf(ret->default_currency, sizeof(ret->default_currency), "%s", def_cur);
	ledger_filter_t f = { .job = batch, .default_currency = ret->default_currency };
	int r = ledger_select(db, &f, &ret->db, e2, sizeof(e2));
	sqlite3_close(db);
	if (r < 0) {
		snprintf(err, errlen, "%s: %s", path, e2);
		return r;
	}
	if (batch != NULL && ret->db->n == 0) {
		snprintf(err, errlen, "batch %s has no ledger rows in %s", batch, path);
		ledger_rows_destroy(&ret->db);
		return -ENOENT;
	}
	ret->v = ret->db->v;
	ret->n = ret->db->n;
	return 0;
}

#if HAVE_HTTP
static int fetch_http(const char *batch, cmd_cost_rows_t *ret, char *err, size_t errlen)
{
	char path[1024], e2[512];
	int o = snprintf(path, sizeof(path), "/v1/cost/ledger?batch=");
	for (const unsigned char *p = (const unsigned char *)batch; *p && o < (int)sizeof(path) - 4; p++) {
		bool plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
			     *p == '-' || *p == '_' || *p == '.' || *p == '~';
		o += plain ? snprintf(path + o, sizeof(path) - (size_t)o, "%c", *p) :
			     snprintf(path + o, sizeof(path) - (size_t)o, "%%%02X", *p);
	}
	http_client_t *c = NULL;
	json_t *j = NULL;
	long status = 0;
	int r = http_client_new(cli_globals.url, cli_globals.api_key, &c, err, errlen);
	if (r < 0)
		return r;
	r = http_client_json(c, "GET", path, NULL, &status, &j, err, errlen);
	http_client_destroy(&c);
	if (r < 0)
		return r;
	if (status != 200) {
		snprintf(err, errlen, "GET %s: %s", path, http_client_error_text(j, status, e2, sizeof(e2)));
		json_decref(j);
		return status == 404 ? -ENOENT : -EIO;
	}
	json_t *data = json_object_get(j, "data");
	const char *cur = json_string_value(json_object_get(j, "currency"));
	if (!json_is_array(data)) {
		snprintf(err, errlen, "GET %s: the reply has no data array", path);
		json_decref(j);
		return -EPROTO;
	}
	snprintf(ret->default_currency, sizeof(ret->default_currency), "%s", cur ? cur : "USD");
	size_t n = json_array_size(data), n_api = 0;
	json_t *prices = json_object_get(j, "api_prices");	/* absent from an older margind */
	for (size_t i = 0; i < n; i++)
		n_api += json_array_size(json_object_get(json_array_get(data, i), "api_equivalents"));
	ret->json = j;
	ret->v = calloc(n ? n : 1, sizeof(*ret->v));
	ret->api = calloc(n_api ? n_api : 1, sizeof(*ret->api));
	ret->prices = calloc(json_array_size(prices) ? json_array_size(prices) : 1, sizeof(*ret->prices));
	if (ret->v == NULL || ret->api == NULL || ret->prices == NULL) {
		cmd_cost_rows_done(ret);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	ret->n = n;
#define S(o, k) (json_string_value(json_object_get(o, k)) ? json_string_value(json_object_get(o, k)) : "")
	for (size_t i = 0; i < json_array_size(prices); i++) {
		json_t *o2 = json_array_get(prices, i);
		ret->prices[ret->n_prices++] = (ledger_api_price_t){
			.id = json_integer_value(json_object_get(o2, "id")), .ref_model = S(o2, "ref_model"),
			.currency = S(o2, "currency"), .price_currency = S(o2, "price_currency"),
			.input_per_1m = S(o2, "input_per_1m"), .output_per_1m = S(o2, "output_per_1m"),
			.fx_rate = S(o2, "fx_rate"), .fx_source = S(o2, "fx_source"), .price_table = S(o2, "price_table"),
			.price_source = S(o2, "price_source"), .price_date = S(o2, "price_date"),
		};
	}
#undef S
	n_api = 0;
	for (size_t i = 0; i < n; i++) {
		json_t *eq = json_object_get(json_array_get(data, i), "api_equivalents");
		ret->v[i].api = json_array_size(eq) ? &ret->api[n_api] : NULL;
		for (size_t k = 0; k < json_array_size(eq); k++) {
			json_t *e = json_array_get(eq, k);
			json_int_t pid = json_integer_value(json_object_get(e, "price_id"));
			size_t m = 0;
			while (m < ret->n_prices && ret->prices[m].id != pid)
				m++;
			if (m == ret->n_prices) {
				snprintf(err, errlen, "GET %s: row %zu's equivalent names pricing %lld, which api_prices lacks",
					 path, i, (long long)pid);
				cmd_cost_rows_done(ret);
				return -EPROTO;
			}
			ret->api[n_api++] = (ledger_api_t){ .price = &ret->prices[m],
							    .micros = json_integer_value(json_object_get(e, "micros")) };
			ret->v[i].n_api++;
		}
	}
	for (size_t i = 0; i < n; i++) {
		json_t *o2 = json_array_get(data, i);
		ledger_row_t *w = &ret->v[i];
#define S(k) (json_string_value(json_object_get(o2, k)) ? json_string_value(json_object_get(o2, k)) : "")
#define I(k) json_integer_value(json_object_get(o2, k))
		w->id = I("id");
		w->job = S("job");
		w->custom_id = S("custom_id");
		w->line_no = I("line_no");
		w->model = S("model");
		w->worker = S("worker");
		w->worker_name = S("worker_name");
		w->hardware_profile = S("hardware_profile");
		w->shard = I("shard");
		w->prompt_tokens = (uint64_t)I("prompt_tokens");
		w->completion_tokens = (uint64_t)I("completion_tokens");
		w->busy_ns = (uint64_t)I("busy_ns");
		w->flops = (uint64_t)I("flops");
		w->queue_ns = (uint64_t)I("queue_ns");
		w->first_token_ns = (uint64_t)I("first_token_ns");
		w->cost_marginal_micros = I("cost_marginal_micros");
		w->cost_loaded_micros = I("cost_loaded_micros");
		w->answered_at_ns = I("answered_at_ns");
		w->idle_ns = (uint64_t)I("idle_ns");
		w->currency = S("currency")[0] ? S("currency") : ret->default_currency;
		w->rate_busy_micros_per_hour = I("rate_busy_micros_per_hour");
		w->rate_idle_micros_per_hour = I("rate_idle_micros_per_hour");
		w->via_batch = json_is_true(json_object_get(o2, "via_batch"));
		w->period_start_ns = I("period_start_ns");
		w->period_ns = I("period_ns");
		w->period_open = json_is_true(json_object_get(o2, "period_open"));
#undef S
#undef I
	}
	return 0;
}
#endif

int cmd_cost_fetch(const char *state_dir, const char *batch, const char *default_currency, cmd_cost_rows_t *ret,
		   char *err, size_t errlen)
{
	memset(ret, 0, sizeof(*ret));
	if (state_dir != NULL)
		return fetch_db(state_dir, batch, default_currency ? default_currency : "USD", ret, err, errlen);
	if (batch == NULL) {
		snprintf(err, errlen, "--batch ID is needed to read the ledger from a margind (or give --state-dir)");
		return -EINVAL;
	}
#if HAVE_HTTP
	return fetch_http(batch, ret, err, errlen);
#else
	snprintf(err, errlen, "marginctl was built without libcurl: use --state-dir");
	return -ENOTSUP;
#endif
}

int cmd_cost_measured(const ledger_row_t *rows, size_t n, const char *what, double time_scale, thru_t *ret,
		      double *ret_in_per_call, double *ret_out_per_call, double *ret_utilization, char *err,
		      size_t errlen)
{
	double prompt = 0, compl = 0, busy = 0, idle = 0;
	for (size_t i = 0; i < n; i++) {
		prompt += (double)rows[i].prompt_tokens;
		compl += (double)rows[i].completion_tokens;
		busy += (double)rows[i].busy_ns;
		idle += (double)rows[i].idle_ns;
	}
	if (n == 0 || !(busy > 0) || !(compl > 0)) {
		snprintf(err, errlen, "%s: no answered calls with engine time and output tokens: no throughput to measure",
			 what);
		return -EINVAL;
	}
	busy *= time_scale;
	idle *= time_scale;
	memset(ret, 0, sizeof(*ret));
	ret->source = THRU_LEDGER;
	ret->out_tok_s = compl / (busy / 1e9);
	snprintf(ret->why, sizeof(ret->why),
		 "measured by the ledger: %s, %zu calls, %.0f output tokens in %.3f s of engine time%s", what, n, compl,
		 busy / 1e9, time_scale != 1 ? " (scaled by --speed)" : "");
	*ret_in_per_call = prompt / (double)n;
	*ret_out_per_call = compl / (double)n;
	*ret_utilization = busy / (busy + idle);
	return 0;
}

/* --- the report -------------------------------------------------------- */

typedef struct opts {
	const char *batch, *group, *format, *out, *state_dir, *currency, *hardware, *speed, *sale, *one_off,
		*calls_per_day, *breakeven_ref, *chart, *bench, *decode_batch, *eff_bench;
	const char *prices[MAX_PRICE_FILES];
	size_t n_prices;
	const char *refs[MAX_REFS];
	size_t n_refs;
	mg_config_t *cfg;	/* owned: the flags' values, which the fields above borrow */
} opts_t;

#define SEC "cost"
#define O(field) MG_SETTING_AT(opts_t, field)
#define S(f, k, a, field, h) { .flag = (f), .section = SEC, .key = (k), .arg = (a), .help = (h), O(field) }
static const mg_setting_t settings[] = {
	S("batch", "batch", "ID", batch, "the batch (required unless --state-dir)"),
	S("group", "group", "G", group, "one row per call (default), batch, model, worker or UTC day"),
	S("format", "format", "F", format, "text (default), csv or json; the total is the exact sum of the rows"),
	{ .short_flag = 'o', .section = SEC, .key = "out", .arg = "FILE", .help = "write the report there (default stdout)",
	  O(out) },
	S("state-dir", "state_dir", "DIR", state_dir, "read margind's journal there instead of asking --url"),
	{ .flag = "prices", .section = SEC, .key = "prices", .type = MG_SETTING_LIST, .arg = "FILE",
	  .help = "what-if: recompute the closed-API equivalents with this price table\n"
		  "(INI or LiteLLM .json; repeatable; a name is looked up in %s)\n"
		  "instead of the ones booked with the calls; the default tables (fx,\n"
		  "closed-2024, cn-2024-05-after, embeddings) only price calls booked without them",
	  .help_fill = cmd_cost_prices_dir, MG_SETTING_LIST_AT(opts_t, prices, n_prices) },
	{ .flag = "ref", .section = SEC, .key = "ref", .type = MG_SETTING_LIST, .arg = "NAME",
	  .help = "a reference model (price entry) to compare with (repeatable;\n"
		  "default: the ones the calls were booked with, else gpt-4o-mini, qwen-long;\n"
		  "embedding calls: text-embedding-3-small, text-embedding-3-large,\n"
		  "text-embedding-v3). Embedding calls are compared with embedding prices\n"
		  "(mode = embedding) only, other calls with the others only",
	  MG_SETTING_LIST_AT(opts_t, refs, n_refs) },
	S("currency", "currency", "CUR", currency, "report currency (default: the hardware profile's)"),
	{ .flag = "hardware", .section = SEC, .key = "hardware", .arg = "P",
	  .help = "what-if: price the same calls on this profile (a FILE, or a name in\n"
		  "%s) from their busy and idle time, divided by\n"
		  "its speed ratio: measured (--bench, else a bench attached to the\n"
		  "profile for the model's shape), else estimated from its peaks",
	  .help_fill = cmd_cost_hardware_dir, O(hardware) },
	S("speed", "speed", "X", speed, "what-if: that hardware runs X times as fast (given, no estimate)"),
	S("bench", "bench", "FILE.json", bench, "what-if: `margin-worker bench --json` taken on that hardware"),
	S("decode-batch", "decode_batch", "N", decode_batch,
	  "what-if: the target's decode batch (default: the bench's best run,\nelse 32 for an estimate)"),
	S("eff-bench", "eff_bench", "FILE", eff_bench,
	  "what-if estimate: efficiency measured by this bench of the machine\n"
	  "the batch ran on (default: machine.md's factors)"),
	S("sale-price", "sale_price", "P", sale,
	  "our price per 1M tokens (P, or IN/OUT) in the report currency:\n"
	  "revenue and gross margin (price - loaded cost) / price"),
	S("one-off", "one_off", "AMOUNT", one_off,
	  "a one-off cost (e.g. 500000 for a deployment): days to recover it from\n"
	  "the saving against --breakeven-ref (default: the first --ref)"),
	S("calls-per-day", "calls_per_day", "N", calls_per_day, "volume for that saving (default: one node's capacity)"),
	S("breakeven-ref", "breakeven_ref", "NAME", breakeven_ref, "the reference the saving is taken against"),
	S("chart", "chart", "FILE.svg", chart,
	  "also write cost per 1M tokens against utilization at this batch's\n"
	  "measured throughput, with the reference prices as lines"),
};
#undef S

static const mg_settings_spec_t spec = {
	.prog = "marginctl cost",
	.synopsis = "--batch ID [--group call|batch|model|worker|day] [--format text|csv|json]\n"
		    "                      [-o FILE] [--state-dir DIR] [--prices FILE]... [--ref NAME]... [--currency CUR]\n"
		    "                      [--hardware PROFILE|FILE [--speed X | --bench FILE.json] [--decode-batch N]\n"
		    "                       [--eff-bench FILE.json]]\n"
		    "                      [--sale-price P|IN/OUT]\n"
		    "                      [--one-off AMOUNT [--calls-per-day N] [--breakeven-ref NAME]] [--chart FILE.svg]\n",
	.no_config = true,
	.settings = settings,
	.n = sizeof(settings) / sizeof(settings[0]),
};

/* The flags into o (strings borrowed from o->cfg, which the caller
 * destroys). 0; 1 after --help; 2 for bad usage; a negative errno
 * (exit 1) when out of memory; each said. */
static int parse_args(int argc, char **argv, opts_t *o)
{
	*o = (opts_t){ .cfg = mg_config_new() };
	if (o->cfg == NULL) {
		fprintf(stderr, "marginctl cost: out of memory\n");
		return -ENOMEM;
	}
	int rc = mg_settings_parse_into(&spec, o->cfg, argc, argv, o);
	if (rc != 0)
		return rc == -EINVAL ? 2 : rc;
	if (o->batch == NULL && o->state_dir == NULL) {
		fprintf(stderr, "marginctl cost: --batch ID is required (marginctl cost --help)\n");
		return 2;
	}
	if (o->format == NULL)
		o->format = "text";
	if (strcmp(o->format, "text") != 0 && strcmp(o->format, "csv") != 0 && strcmp(o->format, "json") != 0) {
		fprintf(stderr, "marginctl cost: --format %s: expected text, csv or json\n", o->format);
		return 2;
	}
	if ((o->speed || o->bench || o->decode_batch || o->eff_bench) && o->hardware == NULL) {
		fprintf(stderr, "marginctl cost: --speed, --bench, --decode-batch and --eff-bench go with --hardware "
			"(what-if)\n");
		return 2;
	}
	if (o->speed != NULL && (o->bench || o->decode_batch || o->eff_bench)) {
		fprintf(stderr, "marginctl cost: --speed X is the speed ratio itself: not with --bench, --decode-batch or "
			"--eff-bench\n");
		return 2;
	}
	if ((o->calls_per_day || o->breakeven_ref) && o->one_off == NULL) {
		fprintf(stderr, "marginctl cost: --calls-per-day and --breakeven-ref go with --one-off\n");
		return 2;
	}
	return 0;
}

/* The by-call table for people: every ledger figure of each call. */
static char *call_table(const report_t *rep, const char *title, const speed_whatif_t *sw, const char *target)
{
	char *out = NULL, a[40], b[40], c[40];
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	if (f == NULL)
		return NULL;
	char note[1024];
	fprintf(f, "%s: by call, %s, hardware %s%s%s\n", title, rep->currency, rep->hardware,
		rep->prices_name[0] ? ", prices " : "", rep->prices_name);
	fprintf(f, "(%s)\n", report_api_note(rep, note, sizeof(note)));
	if (sw != NULL)
		fprintf(f, "(what-if on %s: busy and idle times divided by the speed ratio %.6g (%s): %s)\n", target,
			sw->ratio, sw->basis, sw->why);
	fprintf(f, "%-20s %-16s %-12s %8s %8s %10s %12s %14s %14s", "custom_id", "model", "worker", "prompt", "output",
		"busy_s", "flops", "marginal", "loaded");
	/* Each reference's column holds its whole name. */
	int w[MAX_REFS];
	for (size_t k = 0; k < rep->n_refs && k < MAX_REFS; k++)
		w[k] = strlen(rep->refs[k]) > 14 ? (int)strlen(rep->refs[k]) : 14;
	for (size_t k = 0; k < rep->n_refs && k < MAX_REFS; k++)
		fprintf(f, " %*s", w[k], rep->refs[k]);
	if (rep->has_sale)
		fprintf(f, " %14s", "sale");
	fputc('\n', f);
	for (size_t i = 0; i <= rep->n_rows; i++) {
		const report_row_t *r = i < rep->n_rows ? &rep->rows[i] : &rep->total;
		fprintf(f, "%-20.20s %-16.16s %-12.12s %8llu %8llu %10.3f %12.4g %14s %14s", i < rep->n_rows ? r->key : "total",
			r->model ? r->model : "", r->worker ? r->worker : "", (unsigned long long)r->prompt_tokens,
			(unsigned long long)r->completion_tokens, (double)r->busy_ns / 1e9, (double)r->flops,
			meter_format_micros(r->cost_marginal_micros, a, sizeof(a)),
			meter_format_micros(r->cost_loaded_micros, b, sizeof(b)));
		for (size_t k = 0; k < rep->n_refs && k < MAX_REFS; k++)	/* "-": a call of the other kind */
			fprintf(f, " %*s", w[k], report_row_compared(r, k) ? meter_format_micros(r->api_micros[k], c, sizeof(c)) :
									   "-");
		if (rep->has_sale)
			fprintf(f, " %14s", meter_format_micros(r->sale_micros, c, sizeof(c)));
		fputc('\n', f);
	}
	fprintf(f, "(money in %s; marginal: the node's cost of the engine time; loaded: with its idle time; "
		   "references: the same tokens at that API's price)\n", rep->currency);
	if (report_kinds_note(rep, note, sizeof(note))[0] != '\0')
		fprintf(f, "(%s)\n", note);
	if (fclose(f) != 0) {
		free(out);
		return NULL;
	}
	return out;
}

/* The efficiency bench b of a machine shows, against its "hardware"
 * profile, else the profile the batch ran on (booked). */
static int eff_here(const char *path, const char *booked, thru_eff_t *ret, char *err, size_t errlen)
{
	thru_bench_t *b = malloc(sizeof(*b));
	hwprof_t here;
	int r = b ? thru_bench_load(path, b, err, errlen) : -ENOMEM;
	if (r == 0)
		r = cmd_cost_profile(b->hardware[0] ? b->hardware : booked, &here, err, errlen);
	if (r == 0)
		r = speed_eff_from_bench(b, &here, ret, err, errlen);
	if (r == -ENOMEM)
		snprintf(err, errlen, "out of memory");
	free(b);
	return r;
}

/* Rates of the rows in the report currency: what-if profile, else one
 * profile's rates shared by every row. */
static int breakeven_rates(const ledger_row_t *rows, size_t n, const pricetab_t *t, const char *cur, int64_t *rb,
			   int64_t *ri, char *err, size_t errlen)
{
	for (size_t i = 1; i < n; i++)
		if (rows[i].rate_busy_micros_per_hour != rows[0].rate_busy_micros_per_hour ||
		    rows[i].rate_idle_micros_per_hour != rows[0].rate_idle_micros_per_hour ||
		    strcmp(rows[i].currency, rows[0].currency) != 0) {
			snprintf(err, errlen, "the batch ran on hardware with different rates (%s, %s): give --hardware "
				 "for the break-even", rows[0].hardware_profile, rows[i].hardware_profile);
			return -EINVAL;
		}
	if (n == 0 || rows[0].rate_busy_micros_per_hour <= 0) {
		snprintf(err, errlen, "the ledger has no node rate for this batch (booked without a hardware profile): "
			 "give --hardware");
		return -EINVAL;
	}
	int r = pricetab_convert(t, rows[0].rate_busy_micros_per_hour, rows[0].currency, cur, rb, err, errlen);
	if (r == 0)
		r = pricetab_convert(t, rows[0].rate_idle_micros_per_hour, rows[0].currency, cur, ri, err, errlen);
	return r;
}

static json_t *num_or_null(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

/* One `marginctl cost` call, phase by phase: load the inputs, the what-if,
 * the references, the report, what is asked on top of it, the chart, the
 * output. Each phase returns 0 or the exit status with the reason said. */
typedef struct cost_run {
	opts_t o;
	pricetab_t *t;			/* owned */
	cmd_cost_rows_t rows;		/* owned */
	ledger_row_t *whatif;		/* owned: the rows on the what-if hardware */
	const ledger_row_t *use;	/* borrowed: rows.v or whatif */
	report_t *rep;			/* owned */
	hwprof_t hw;
	bool have_hw, whatif_prices;
	meter_q_t scale;
	speed_whatif_t sw;
	thru_bench_t *tbench;		/* owned */
	uint32_t dbatch;
	const char *cur;		/* borrowed */
	const char *refs[MAX_REFS];	/* borrowed */
	size_t n_refs;
	enum report_group g;
	char title[300];
	char err[2048];
} cost_run_t;

#define COST_FAIL(status, ...) (fprintf(stderr, "marginctl cost: " __VA_ARGS__), (status))

/* Price tables, the what-if hardware and its speed inputs, the rows. */
static int load_inputs(cost_run_t *c)
{
	const opts_t *o = &c->o;
	char *err = c->err;
	size_t errlen = sizeof(c->err);
	for (size_t i = 0; i < o->n_prices; i++)
		if (cmd_cost_prices(c->t, o->prices[i], err, errlen) < 0)
			return COST_FAIL(2, "--prices %s: %s\n", o->prices[i], err);
	if (o->n_prices == 0)
		for (const char *const *p = meter_default_price_tables; *p != NULL; p++)
			if (cmd_cost_prices(c->t, *p, err, errlen) < 0)
				fprintf(stderr, "marginctl cost: warning: default price table not loaded: %s\n", err);
	if (o->hardware != NULL) {
		if (cmd_cost_profile(o->hardware, &c->hw, err, errlen) < 0)
			return COST_FAIL(2, "--hardware %s: %s\n", o->hardware, err);
		c->have_hw = true;
		if (o->speed != NULL && speed_given(o->speed, &c->sw, err, errlen) < 0)
			return COST_FAIL(2, "%s\n", err);
		if (o->bench != NULL && ((c->tbench = malloc(sizeof(*c->tbench))) == NULL ||
					 thru_bench_load(o->bench, c->tbench, err, errlen) < 0))
			return COST_FAIL(2, "--bench %s: %s\n", o->bench, c->tbench ? err : "out of memory");
		char *end = NULL;
		unsigned long db = o->decode_batch ? strtoul(o->decode_batch, &end, 10) : 0;
		if (o->decode_batch != NULL && (end == o->decode_batch || *end != '\0' || db < 1 || db > 1000000))
			return COST_FAIL(2, "--decode-batch %s: expected a positive integer\n", o->decode_batch);
		c->dbatch = (uint32_t)db;
	}
	if (o->currency != NULL && !meter_currency_valid(o->currency))
		return COST_FAIL(2, "--currency %s: expected an ISO 4217 code such as CNY or USD\n", o->currency);
	if (cmd_cost_fetch(o->state_dir, o->batch, o->currency, &c->rows, err, errlen) < 0)
		return COST_FAIL(1, "%s\n", err);
	c->use = c->rows.v;
	return 0;
}

/* On --hardware: the target's speed against the booked one (given, else
 * measured or estimated for the batch's model, speed.h) and the rows
 * repriced on it. Then the currency of the report. */
static int apply_whatif(cost_run_t *c)
{
	const opts_t *o = &c->o;
	char *err = c->err;
	size_t errlen = sizeof(c->err);
	if (c->have_hw) {
		thru_eff_t eff;
		if (o->eff_bench != NULL &&
		    eff_here(o->eff_bench, c->rows.n ? c->rows.v[0].hardware_profile : "", &eff, err, errlen) < 0)
			return COST_FAIL(2, "--eff-bench %s: %s\n", o->eff_bench, err);
		if (o->speed == NULL && speed_whatif(c->rows.v, c->rows.n, &c->hw, c->tbench, c->dbatch,
						     o->eff_bench ? &eff : NULL, &c->sw, err, errlen) < 0)
			return COST_FAIL(1, "--hardware %s: the speed ratio: %s (or give --speed X)\n", o->hardware, err);
		c->scale = c->sw.time_scale;
		if ((c->whatif = calloc(c->rows.n ? c->rows.n : 1, sizeof(*c->whatif))) == NULL ||
		    report_whatif(c->rows.v, c->rows.n, &c->hw, c->scale, c->whatif, err, errlen) < 0)
			return COST_FAIL(1, "%s\n", c->whatif ? err : "out of memory");
		c->use = c->whatif;
	}
	c->cur = o->currency ? o->currency : c->have_hw ? c->hw.currency : c->rows.n ? c->use[0].currency
										      : c->rows.default_currency;
	return 0;
}

/* The reference models: --ref, else the ones the calls were booked with
 * (in booking order) unless prices are a what-if; then the defaults of
 * the kinds of calls selected. And the sale price as a price entry. */
static int choose_refs(cost_run_t *c)
{
	const opts_t *o = &c->o;
	const cmd_cost_rows_t *rows = &c->rows;
	c->whatif_prices = o->n_prices > 0;
	if (o->n_refs > 0) {
		for (size_t i = 0; i < o->n_refs; i++)
			c->refs[c->n_refs++] = o->refs[i];
	} else if (!c->whatif_prices) {
		for (size_t i = 0; i < rows->n; i++)
			for (size_t k = 0; k < rows->v[i].n_api; k++) {
				const char *name = rows->v[i].api[k].price->ref_model;
				size_t m = 0;
				while (m < c->n_refs && strcmp(c->refs[m], name) != 0)
					m++;
				if (m == c->n_refs && c->n_refs < MAX_REFS)
					c->refs[c->n_refs++] = name;
			}
	}
	if (o->n_refs == 0) {
		/* chat prices for chat calls, embedding prices for embedding
		 * calls (and those too when no embedding call has one booked) */
		const char *dc[MAX_REFS], *de[MAX_REFS], *add[MAX_REFS];
		size_t nc = meter_find_default_refs(c->t, dc, MAX_REFS);
		size_t ne = meter_find_default_embed_refs(c->t, de, MAX_REFS);
		bool emb_booked = false;
		for (size_t i = 0; i < rows->n; i++)
			emb_booked |= report_row_is_embedding(&rows->v[i]) && rows->v[i].n_api > 0;
		if (c->n_refs == 0)
			c->n_refs = report_default_refs(rows->v, rows->n, dc, nc, de, ne, c->refs, MAX_REFS);
		else if (!emb_booked)
			for (size_t i = 0, m = report_default_refs(rows->v, rows->n, NULL, 0, de, ne, add, MAX_REFS);
			     i < m && c->n_refs < MAX_REFS; i++)
				c->refs[c->n_refs++] = add[i];
	}
	if (o->sale != NULL) {
		pricetab_entry_t e;
		if (meter_parse_price_entry(o->sale, "sale", NULL, c->cur, "--sale-price", &e, c->err,
					    sizeof(c->err)) < 0)
			return COST_FAIL(2, "--sale-price: %s\n", c->err);
		if (pricetab_add(c->t, &e) < 0)
			return COST_FAIL(1, "out of memory\n");
	}
	return 0;
}

static int build_report(cost_run_t *c)
{
	const opts_t *o = &c->o;
	c->g = REPORT_BY_CALL;
	if (o->group != NULL && report_group_parse(o->group, &c->g) < 0)
		return COST_FAIL(2, "--group %s: expected call, batch, model, worker or day\n", o->group);
	report_whatif_t rw = { .hardware = c->hw.name, .speed = c->sw.ratio, .speed_basis = c->sw.basis,
			       .speed_why = c->sw.why };
	report_opts_t ro = { .currency = c->cur, .prices = c->t, .refs = c->refs, .n_refs = c->n_refs,
			     .sale = o->sale ? "sale" : NULL, .whatif_prices = c->whatif_prices,
			     .whatif = c->have_hw ? &rw : NULL };
	if (report_new(c->use, c->rows.n, c->g, &ro, &c->rep, c->err, sizeof(c->err)) < 0)
		return COST_FAIL(1, "%s\n", c->err);
	snprintf(c->title, sizeof(c->title), "batch %s%s%s%s%.120s", o->batch ? o->batch : "(all)",
		 c->have_hw ? ", what-if on " : "", c->have_hw ? c->hw.name : "",
		 c->whatif_prices ? ", what-if prices " : "", c->whatif_prices ? pricetab_name(c->t) : "");
	return 0;
}

/* The report in the asked format: *ret_text, or *ret_root (JSON with
 * something to add). 0 or -ENOMEM. */
static int format_report(cost_run_t *c, char **ret_text, json_t **ret_root)
{
	const opts_t *o = &c->o;
	int r;
	char *text = NULL;
	if (strcmp(o->format, "json") == 0)
		r = report_format_json(c->rep, &text);
	else if (strcmp(o->format, "csv") == 0)
		r = report_format_csv(c->rep, &text);
	else if (c->g == REPORT_BY_CALL)
		r = (text = call_table(c->rep, c->title, c->have_hw ? &c->sw : NULL, c->hw.name)) ? 0 : -ENOMEM;
	else
		r = report_format_text(c->rep, &text);
	if (r < 0)
		return -ENOMEM;
	if (strcmp(o->format, "json") == 0 && (o->sale || o->one_off)) {
		json_t *root = json_loads(text, JSON_DECODE_ANY, NULL);
		free(text);
		if (root == NULL)
			return -ENOMEM;
		*ret_root = root;
		return 0;
	}
	*ret_text = text;
	return 0;
}

/* --sale-price: revenue and gross margin, into root or as a line. */
static void add_sale(const cost_run_t *c, FILE *ex, json_t *root)
{
	const report_t *rep = c->rep;
	char a[40], b[40], d[40];
	int64_t gm = 0, gm_m = 0;
	int d1 = meter_gross_margin_ppm(rep->total.sale_micros, rep->total.cost_loaded_micros, &gm);
	int d2 = meter_gross_margin_ppm(rep->total.sale_micros, rep->total.cost_marginal_micros, &gm_m);
	if (root != NULL) {
		json_object_set_new(root, "sale", json_pack("{s:s, s:s, s:I, s:I, s:I, s:o, s:o}", "price", c->o.sale,
			"currency", c->cur, "revenue_micros", (json_int_t)rep->total.sale_micros,
			"cost_loaded_micros", (json_int_t)rep->total.cost_loaded_micros, "cost_marginal_micros",
			(json_int_t)rep->total.cost_marginal_micros, "gross_margin_ppm",
			d1 == 0 ? json_integer(gm) : json_null(), "gross_margin_marginal_ppm",
			d2 == 0 ? json_integer(gm_m) : json_null()));
		return;
	}
	fprintf(ex, "at the sale price %s %s per 1M tokens: revenue %s, loaded cost %s -> gross margin %s",
		c->o.sale, c->cur, meter_format_micros(rep->total.sale_micros, a, sizeof(a)),
		meter_format_micros(rep->total.cost_loaded_micros, b, sizeof(b)),
		d1 == 0 ? meter_format_ppm_pct(gm, d, sizeof(d)) : "-infinity (no revenue)");
	fprintf(ex, " (on the marginal cost %s)\n", d2 == 0 ? meter_format_ppm_pct(gm_m, d, sizeof(d)) : "-infinity");
}

/* The break-even's inputs from the flags, the node's rates and the report:
 * 0, or the exit status with the reason said. */
static int breakeven_inputs(cost_run_t *c, report_breakeven_in_t *bi, const char **ret_ref)
{
	const opts_t *o = &c->o;
	const char *ref = o->breakeven_ref ? o->breakeven_ref : c->n_refs ? c->refs[0] : NULL;
	size_t k = 0;
	int r;
	while (ref != NULL && k < c->n_refs && strcmp(c->refs[k], ref) != 0)
		k++;
	if (ref == NULL || k == c->n_refs)
		return COST_FAIL(2, "--breakeven-ref %s: not one of the --ref models\n", ref ? ref : "(none)");
	if (cmd_cost_micros(o->one_off, &bi->one_off_micros) < 0)
		return COST_FAIL(2, "--one-off %s: expected an amount of %s\n", o->one_off, c->cur);
	if (o->calls_per_day != NULL && !(sscanf(o->calls_per_day, "%lf", &bi->calls_per_day) == 1 &&
					  bi->calls_per_day > 0))
		return COST_FAIL(2, "--calls-per-day %s: expected a positive number\n", o->calls_per_day);
	if (c->have_hw) {
		r = pricetab_convert(c->t, c->hw.rate_busy_micros_per_hour, c->hw.currency, c->cur,
				     &bi->rate_busy_micros_per_hour, c->err, sizeof(c->err));
		if (r == 0)
			r = pricetab_convert(c->t, c->hw.rate_idle_micros_per_hour, c->hw.currency, c->cur,
					     &bi->rate_idle_micros_per_hour, c->err, sizeof(c->err));
	} else {
		r = breakeven_rates(c->use, c->rows.n, c->t, c->cur, &bi->rate_busy_micros_per_hour,
				    &bi->rate_idle_micros_per_hour, c->err, sizeof(c->err));
	}
	bi->calls = c->rep->total.calls;
	bi->busy_ns = c->rep->total.busy_ns;
	bi->api_micros = c->rep->total.api_micros[k];
	if (r < 0)
		return COST_FAIL(1, "break-even: %s\n", c->err);
	*ret_ref = ref;
	return 0;
}

static void print_breakeven(const cost_run_t *c, const char *ref, const report_breakeven_in_t *bi,
			    const report_breakeven_t *be, FILE *ex)
{
	const char *cur = c->cur;
	char a[40], b[40];
	fprintf(ex, "break-even against %s, one node at %s/%s %s per hour (busy/idle):\n", ref,
		meter_format_micros(bi->rate_busy_micros_per_hour, a, sizeof(a)),
		meter_format_micros(bi->rate_idle_micros_per_hour, b, sizeof(b)), cur);
	fprintf(ex, "  measured: %llu calls, %.3f s of engine time per call, %s costs %.6f %s per call\n",
		(unsigned long long)bi->calls, be->busy_ns_per_call / 1e9, ref, be->api_per_call_micros / 1e6, cur);
	fprintf(ex, "  the node: %s %s per day whatever it does, %.6f %s more per call; at most %.0f calls per day\n",
		meter_format_micros(be->fixed_per_day_micros, a, sizeof(a)), cur, be->extra_per_call_micros / 1e6,
		cur, be->capacity_calls_per_day);
	if (isfinite(be->breakeven_calls_per_day))
		fprintf(ex, "  break-even: %.0f calls per day (%.1f%% of the node)%s\n", be->breakeven_calls_per_day,
			be->breakeven_utilization * 100,
			be->reachable ? "" : " - more than one node can serve: never on one node");
	else
		fprintf(ex, "  break-even: never (%s costs less per call than the node's extra power)\n", ref);
	fprintf(ex, "  at %.0f calls per day: saving %.2f %s per day; the one-off %s %s: ", be->calls_per_day,
		be->saving_per_day_micros / 1e6, cur, meter_format_micros(bi->one_off_micros, a, sizeof(a)), cur);
	if (isfinite(be->days_to_recover))
		fprintf(ex, "recovered in %.1f days\n", be->days_to_recover);
	else
		fprintf(ex, "never recovered (no saving)\n");
}

/* --one-off: when the node pays for itself against the reference. */
static int add_breakeven(cost_run_t *c, FILE *ex, json_t *root)
{
	report_breakeven_in_t bi = { 0 };
	report_breakeven_t be;
	const char *ref = NULL;
	int st = breakeven_inputs(c, &bi, &ref);
	if (st != 0)
		return st;
	if (report_breakeven(&bi, &be) < 0)
		return COST_FAIL(1, "break-even: no calls with engine time in this batch: nothing to measure\n");
	if (root == NULL) {
		print_breakeven(c, ref, &bi, &be, ex);
		return 0;
	}
	json_object_set_new(root, "breakeven", json_pack("{s:s, s:s, s:I, s:I, s:I, s:o, s:o, s:o, s:o, s:I, s:o, s:o, s:o, s:b, s:o, s:o, s:o}",
		"reference", ref, "currency", c->cur, "one_off_micros", (json_int_t)bi.one_off_micros,
		"rate_busy_micros_per_hour", (json_int_t)bi.rate_busy_micros_per_hour,
		"rate_idle_micros_per_hour", (json_int_t)bi.rate_idle_micros_per_hour,
		"busy_ns_per_call", num_or_null(be.busy_ns_per_call),
		"api_per_call_micros", num_or_null(be.api_per_call_micros),
		"extra_per_call_micros", num_or_null(be.extra_per_call_micros),
		"capacity_calls_per_day", num_or_null(be.capacity_calls_per_day),
		"fixed_per_day_micros", (json_int_t)be.fixed_per_day_micros,
		"breakeven_calls_per_day", num_or_null(be.breakeven_calls_per_day),
		"breakeven_utilization", num_or_null(be.breakeven_utilization),
		"calls_per_day", num_or_null(be.calls_per_day), "reachable", be.reachable,
		"saving_per_day_micros", num_or_null(be.saving_per_day_micros),
		"days_to_recover", num_or_null(be.days_to_recover),
		"note", json_string("per node: fixed = idle rate x 24 h; each call adds (busy - idle rate) x its busy time")));
	return 0;
}

/* What the report's notes, --sale-price and --one-off add: into root
 * (JSON) or as text in *ret_extra (printed after the report, or on stderr
 * beside CSV). */
static int add_extras(cost_run_t *c, json_t *root, FILE *side, char **ret_extra, size_t *ret_len)
{
	FILE *ex = open_memstream(ret_extra, ret_len);
	int st = 0;
	if (ex == NULL)
		return COST_FAIL(1, "out of memory\n");
	const char *basis = report_api_basis(c->rep);
	if (side != NULL && strcmp(basis, "booked") != 0 && strcmp(basis, "none") != 0) {
		char note[1024];
		fprintf(ex, "%s\n", report_api_note(c->rep, note, sizeof(note)));
	}
	if (c->o.sale != NULL)
		add_sale(c, ex, root);
	if (c->o.one_off != NULL)
		st = add_breakeven(c, ex, root);
	fclose(ex);
	return st;
}

/* --chart FILE: cost against utilization, SVG. */
static int write_chart(cost_run_t *c)
{
	const opts_t *o = &c->o;
	thru_t th;
	double in_pc, out_pc, util;
	hwprof_t chw;
	const hwprof_t *ph = &c->hw;
	char *svg = NULL;
	int r = cmd_cost_measured(c->rows.v, c->rows.n, c->title, meter_q_to_double(c->scale), &th, &in_pc, &out_pc,
				  &util, c->err, sizeof(c->err));
	if (r == 0 && c->have_hw) {
		if (o->speed == NULL)
			th = c->sw.target;	/* the target's own throughput, with its basis */
		else
			th.source = THRU_GIVEN;
	}
	if (r < 0 || (!c->have_hw && cmd_cost_profile(c->rows.v[0].hardware_profile, &chw, c->err, sizeof(c->err)) < 0))
		return COST_FAIL(1, "--chart: %s\n", c->err);
	if (!c->have_hw)
		ph = &chw;
	if (chart_cost_vs_utilization(&th, ph, in_pc, out_pc, util, c->t, c->refs, c->n_refs, c->rows.v[0].via_batch,
				      c->cur, &svg, c->err, sizeof(c->err)) < 0)
		return COST_FAIL(1, "--chart: %s\n", c->err);
	FILE *cf = fopen(o->chart, "w");
	int st = 0;
	if (cf == NULL || fputs(svg, cf) < 0 || fclose(cf) != 0)
		st = COST_FAIL(1, "--chart %s: cannot write: %s\n", o->chart, strerror(errno));
	free(svg);
	return st;
}

/* The report and its extras to -o FILE or stdout. */
static int print_output(const cost_run_t *c, const char *text, json_t *root, FILE *side, const char *extra,
			size_t extra_len)
{
	FILE *out = stdout;
	char *dump = NULL;
	if (c->o.out != NULL && (out = fopen(c->o.out, "w")) == NULL)
		return COST_FAIL(1, "-o %s: %s\n", c->o.out, strerror(errno));
	if (root != NULL) {
		if ((dump = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER)) == NULL) {
			if (out != stdout)
				fclose(out);
			return COST_FAIL(1, "out of memory\n");
		}
		fprintf(out, "%s\n", dump);
		free(dump);
	} else {
		fputs(text, out);
		if (extra_len > 0)
			fprintf(side ? side : out, "%s%s", side ? "" : "\n", extra);
	}
	if (out != stdout && fclose(out) != 0)
		return COST_FAIL(1, "-o %s: %s\n", c->o.out, strerror(errno));
	return 0;
}

int cmd_cost(int argc, char **argv)
{
	cost_run_t *c = calloc(1, sizeof(*c));
	char *text = NULL, *extra = NULL;
	size_t extra_len = 0;
	json_t *root = NULL;
	int st;
	if (c == NULL || (c->t = pricetab_new()) == NULL) {
		free(c);
		fprintf(stderr, "marginctl cost: out of memory\n");
		return 1;
	}
	c->scale = METER_Q(1, 1);
	if ((st = parse_args(argc, argv, &c->o)) != 0) {
		st = st == 1 ? 0 : st < 0 ? 1 : st;
		goto done;
	}
	if ((st = load_inputs(c)) != 0 || (st = apply_whatif(c)) != 0 || (st = choose_refs(c)) != 0 ||
	    (st = build_report(c)) != 0)
		goto done;
	if (format_report(c, &text, &root) < 0) {
		st = COST_FAIL(1, "out of memory\n");
		goto done;
	}
	bool json = strcmp(c->o.format, "json") == 0;
	FILE *side = json ? NULL : strcmp(c->o.format, "csv") == 0 ? stderr : NULL;
	if ((st = add_extras(c, root, side, &extra, &extra_len)) != 0 ||
	    (c->o.chart != NULL && (st = write_chart(c)) != 0))
		goto done;
	st = print_output(c, text, root, side, extra, extra_len);
done:
	free(extra);
	json_decref(root);
	free(text);
	report_destroy(&c->rep);
	mg_config_destroy(&c->o.cfg);
	free(c->whatif);
	free(c->tbench);
	cmd_cost_rows_done(&c->rows);
	pricetab_destroy(&c->t);
	free(c);
	return st;
}
