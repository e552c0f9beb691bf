/* pricewar_table: see pricewar_table.h. */
#include "pricewar_table.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const pricewar_table_src_t pricewar_table_default_srcs[] = {
	{ "cn-2024-05-before", "before the May 2024 cuts", true, NULL },
	{ "cn-2024-05-after", "after the May 2024 cuts", false, NULL },
	{ "cn-2024-late", "after: the Sept 2024 cuts and late-2024 snapshots", false, NULL },
};
const size_t pricewar_table_n_default_srcs = sizeof(pricewar_table_default_srcs) / sizeof(pricewar_table_default_srcs[0]);

#define TRT "NVIDIA/TensorRT-LLM docs/source/performance.md @138f96d4 (v0.6.1, ~Dec 2023)"
#define DAY6 "deepseek-ai/open-infra-index 202502OpenSourceWeek/day_6_one_more_thing_deepseekV3R1_inference_system_overview.md @3122a252 (2025-03-01)"

/* DeepSeek's day (economics.md 2e): 226.75 nodes on average, 608B input
 * tokens of which 342B cache hits, 168B output tokens, in 24 h. */
#define DS_NODES 226.75
#define DS_IN 608e9
#define DS_HITS 342
#define DS_OUT 168e9

static const pricewar_basis_t default_bases[PRICEWAR_N_BASES] = {
	{ "A", "dense 70B, H100 FP8, 2048 in / 2048 out", 547, 2048, 2048, 0.5, false,
	  TRT ": LLaMA-70B 2048/2048, 547 output tok/s per GPU; U = 50%: economics.md 6 assumption", 0, 0 },
	{ "B", "dense 70B, H100 FP8, 2048 in / 128 out", 306, 2048, 128, 0.5, false,
	  TRT ": LLaMA-70B 2048/128, 306 output tok/s per GPU; U = 50%: economics.md 6 assumption", 0, 0 },
	{ "C", "DeepSeek-V3/R1 production day (MoE, H800), measured", DS_OUT / (DS_NODES * 8 * 86400), 608, 168, 1.0,
	  true,
	  DAY6 ": 226.75 nodes x 8 H800 for 24 h = 87,072 USD; 608B input tokens (342B cache hits, 56.3%) + "
	  "168B output; throughput and utilization are that day's (nodes counted by average occupancy)", 0, 0 },
	{ "7B", "LLaMA-7B class, H100 FP8, 2048 in / 2048 out", 2740, 2048, 2048, 0.5, false,
	  TRT ": LLaMA-7B 2048/2048, 2,740 output tok/s per GPU; U = 50%: economics.md 6 assumption; small-model "
	  "prices only", 0, 0 },
};

/* economics.md 6 "Small models": ERNIE-Lite, ERNIE-Speed and Qwen-Turbo
 * price points (every variant of them in the tables). */
static const char *const small_prefixes[] = { "ernie-lite", "ernie-speed", "qwen-turbo", NULL };

struct pricewar_table {
	char currency[4];
	const hwprof_t *hw;		/* borrowed */
	const pricetab_t *fx;		/* borrowed */
	pricewar_table_src_t *srcs;	/* owned array; its strings and tables borrowed */
	size_t n_srcs;
	pricewar_basis_t bases[PRICEWAR_N_BASES];
	pricewar_row_t *rows;		/* owned */
	size_t n_rows;
	char **notes;			/* owned: "source; date" of each footnote */
	size_t n_notes;
};

void pricewar_table_destroy(pricewar_table_t **p)
{
	if (p == NULL || *p == NULL)
		return;
	for (size_t i = 0; i < (*p)->n_notes; i++)
		free((*p)->notes[i]);
	free((*p)->notes);
	free((*p)->rows);
	free((*p)->srcs);
	free(*p);
	*p = NULL;
}

size_t pricewar_table_rows(const pricewar_table_t *t, const pricewar_row_t **ret)
{
	*ret = t->rows;
	return t->n_rows;
}

const pricewar_basis_t *pricewar_table_basis(const pricewar_table_t *t, int basis)
{
	return basis >= 0 && basis < PRICEWAR_N_BASES ? &t->bases[basis] : NULL;
}

const pricewar_row_t *pricewar_table_find(const pricewar_table_t *t, const char *table, const char *name)
{
	for (size_t i = 0; i < t->n_rows; i++)
		if (strcmp(t->srcs[t->rows[i].src].name, table) == 0 && strcmp(t->rows[i].e->name, name) == 0)
			return &t->rows[i];
	return NULL;
}

static bool is_small(const char *name)
{
	for (int i = 0; small_prefixes[i] != NULL; i++)
		if (strncmp(name, small_prefixes[i], strlen(small_prefixes[i])) == 0)
			return true;
	return false;
}

/* The footnote number (1-based) of "source; date", added when new. 0 on
 * ENOMEM. */
static size_t note(pricewar_table_t *t, const char *source, const char *date)
{
	char buf[PRICETAB_TEXT + 64];
	snprintf(buf, sizeof(buf), "%s; %s", source, date);
	for (size_t i = 0; i < t->n_notes; i++)
		if (strcmp(t->notes[i], buf) == 0)
			return i + 1;
	char **nv = realloc(t->notes, (t->n_notes + 1) * sizeof(*nv));
	if (nv == NULL)
		return 0;
	t->notes = nv;
	if ((t->notes[t->n_notes] = strdup(buf)) == NULL)
		return 0;
	return ++t->n_notes;
}

static int cell(pricewar_table_t *t, pricewar_basis_t *b, const pricetab_entry_t *e, pricewar_cell_t *ret, char *err,
		size_t errlen)
{
	thru_t th = { .source = THRU_GIVEN, .out_tok_s = b->out_tok_s_per_gpu * t->hw->accelerators };
	snprintf(th.why, sizeof(th.why), "%s", b->source);
	pricewar_in_t in = { .hw = t->hw, .thru = &th, .in_per_call = b->in_per_call, .out_per_call = b->out_per_call,
			     .mix_source = b->source, .utilization = b->utilization, .utilization_source = b->source,
			     .prices = t->fx, .before = e, .after = e, .currency = t->currency,
			     .has_cache_hit = b->cache_hits, .cache_hit = METER_Q(DS_HITS, 608),
			     .cache_hit_source = DAY6 };
	pricewar_t pw;
	int r = pricewar_check(&in, &pw, err, errlen);
	if (r < 0)
		return r;
	*ret = (pricewar_cell_t){ .computed = true, .defined = pw.before.defined, .gm_ppm = pw.before.gm_ppm,
				  .revenue_micros_per_hour = pw.before.revenue_micros_per_hour,
				  .cached = pw.before_cached };
	b->cost_micros_per_hour = pw.cost_micros_per_hour;
	b->cost_per_1m_tokens_micros = pw.cost_per_1m_tokens_micros;
	return 0;
}

int pricewar_table_build(const hwprof_t *hw, const pricewar_table_src_t *srcs, size_t n, const pricetab_t *fx,
			 const char *cur, pricewar_table_t **ret, char *err, size_t errlen)
{
	int r = -ENOMEM;
	size_t total = 0;
	pricewar_table_t *t = calloc(1, sizeof(*t));
	if (t == NULL)
		goto nomem;
	if (hw->accelerators == 0) {
		snprintf(err, errlen, "hardware profile %s: the cost bases are per GPU; the profile gives no accelerators "
			 "count", hw->name);
		r = -EINVAL;
		goto fail;
	}
	snprintf(t->currency, sizeof(t->currency), "%s", cur);
	t->hw = hw;
	t->fx = fx;
	memcpy(t->bases, default_bases, sizeof(t->bases));
	for (size_t i = 0; i < n; i++)
		total += srcs[i].prices ? pricetab_count(srcs[i].prices) : 0;
	if ((t->srcs = calloc(n ? n : 1, sizeof(*t->srcs))) == NULL ||
	    (t->rows = calloc(total ? total : 1, sizeof(*t->rows))) == NULL)
		goto nomem;
	memcpy(t->srcs, srcs, n * sizeof(*srcs));
	t->n_srcs = n;
	for (size_t s = 0; s < n; s++) {
		for (size_t i = 0; srcs[s].prices != NULL && i < pricetab_count(srcs[s].prices); i++) {
			pricewar_row_t *row = &t->rows[t->n_rows];
			row->e = pricetab_at(srcs[s].prices, i);
			row->src = s;
			row->small = is_small(row->e->name);
			for (int b = 0; b < PRICEWAR_N_BASES; b++) {
				if (b == PRICEWAR_BASIS_7B && !row->small)
					continue;
				if ((r = cell(t, &t->bases[b], row->e, &row->cell[b], err, errlen)) < 0)
					goto fail;
			}
			const pricetab_entry_t *e = row->e;
			if ((row->note[0] = note(t, e->in_source, e->in_date)) == 0)
				goto nomem;
			if ((strcmp(e->in_source, e->out_source) != 0 || strcmp(e->in_date, e->out_date) != 0) &&
			    (row->note[1] = note(t, e->out_source, e->out_date)) == 0)
				goto nomem;
			if (e->has_cached && (row->note[2] = note(t, e->cached_source, e->cached_date)) == 0)
				goto nomem;
			t->n_rows++;
		}
	}
	/* A basis no row used (7B without small-model prices): its cost all
	 * the same, for the list of bases. */
	for (int b = 0; b < PRICEWAR_N_BASES; b++) {
		pricewar_cell_t c;
		if (t->bases[b].cost_micros_per_hour == 0 && t->n_rows > 0 &&
		    (r = cell(t, &t->bases[b], t->rows[0].e, &c, err, errlen)) < 0)
			goto fail;
	}
	*ret = t;
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
	r = -ENOMEM;
fail:
	pricewar_table_destroy(&t);
	return r;
}

/* "94.0%", "-422.3%", "-inf", "-"; a trailing 'c' when the cache-hit
 * price was applied. */
static char *cell_text(const pricewar_cell_t *c, char *buf, size_t len)
{
	if (!c->computed)
		snprintf(buf, len, "-");
	else if (!c->defined)
		snprintf(buf, len, "-inf");
	else
		snprintf(buf, len, "%.1f%%%s", (double)c->gm_ppm / 1e4, c->cached ? "c" : "");
	return buf;
}

static void group_summary(FILE *f, const pricewar_table_t *t, bool before)
{
	size_t n = 0, over60[PRICEWAR_N_BASES] = { 0 }, below0[PRICEWAR_N_BASES] = { 0 }, applies[PRICEWAR_N_BASES] = { 0 };
	size_t free_ = 0;
	for (size_t i = 0; i < t->n_rows; i++) {
		const pricewar_row_t *row = &t->rows[i];
		if (t->srcs[row->src].before != before)
			continue;
		n++;
		free_ += !row->cell[PRICEWAR_BASIS_A].defined;
		for (int b = 0; b < PRICEWAR_N_BASES; b++) {
			const pricewar_cell_t *c = &row->cell[b];
			if (!c->computed)
				continue;
			applies[b]++;
			over60[b] += c->defined && c->gm_ppm > 600000;
			below0[b] += !c->defined || c->gm_ppm < 0;
		}
	}
	if (n == 0)
		return;
	fprintf(f, "  %s: of %zu price points, gross margin over 60%% / below 0%%: A %zu / %zu, B %zu / %zu, "
		   "C %zu / %zu; 7B %zu / %zu of %zu small-model ones\n",
		before ? "before the cuts" : "after the cuts", n, over60[0], below0[0], over60[1], below0[1], over60[2],
		below0[2], over60[3], below0[3], applies[3]);
	if (free_ > 0)
		fprintf(f, "    (%zu of them free: no revenue, gross margin -infinity)\n", free_);
}

char *pricewar_table_format(const pricewar_table_t *t)
{
	char *out = NULL, a[48], b[48], c[48];
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	if (f == NULL)
		return NULL;
	const pricetab_fx_t *cny = t->fx ? pricetab_find_fx(t->fx, "CNY") : NULL;
	fprintf(f, "The May 2024 LLM API price war: gross margin of every price point against the cost bases of "
		   "economics.md section 6\n");
	fprintf(f, "gross margin = (revenue - cost) / revenue per node-hour, in %s", t->currency);
	if (cny != NULL)
		fprintf(f, "; CNY at %s per USD [source: %s; date: %s]", meter_q_format(cny->per_usd, a, sizeof(a)),
			cny->source, cny->date);
	fprintf(f, "\n\n%-24s %-20s %9s %9s %9s %9s  %s\n", "price point", "per 1M in / out", "A", "B", "C", "7B",
		"sources");
	size_t last = (size_t)-1;
	for (size_t i = 0; i < t->n_rows; i++) {
		const pricewar_row_t *row = &t->rows[i];
		const pricetab_entry_t *e = row->e;
		if (row->src != last) {
			fprintf(f, "%s (%s)\n", t->srcs[row->src].label, t->srcs[row->src].name);
			last = row->src;
		}
		char price[64], cells[PRICEWAR_N_BASES][24], notes[48];
		snprintf(price, sizeof(price), "%s / %s %s", meter_q_format(e->in_per_1m, a, sizeof(a)),
			 meter_q_format(e->out_per_1m, b, sizeof(b)), e->currency);
		for (int k = 0; k < PRICEWAR_N_BASES; k++)
			cell_text(&row->cell[k], cells[k], sizeof(cells[k]));
		snprintf(notes, sizeof(notes), "[%zu", row->note[0]);
		for (int k = 1; k < 3; k++)
			if (row->note[k] != 0)
				snprintf(notes + strlen(notes), sizeof(notes) - strlen(notes), ",%zu", row->note[k]);
		snprintf(notes + strlen(notes), sizeof(notes) - strlen(notes), "]");
		fprintf(f, "  %-22s %-20s %9s %9s %9s %9s  %s\n", e->name, price, cells[0], cells[1], cells[2], cells[3],
			notes);
		if (e->has_cached)
			fprintf(f, "  %-22s cached input %s %s\n", "", meter_q_format(e->cached_in_per_1m, c, sizeof(c)),
				e->currency);
	}
	fprintf(f, "\n-inf: a free price (no revenue). c: %.2f%% of the input tokens paid at the entry's cached-input "
		   "price (basis C's measured cache-hit rate); every other cell pays list prices (economics.md 6 applies "
		   "no cache discount). 7B: small-model price points only.\n",
		100.0 * DS_HITS / 608);
	fprintf(f, "\ncost bases (hardware %s: %s %s/h per node of %u x %s [%s]):\n", t->hw->name,
		meter_format_micros(t->hw->rate_busy_micros_per_hour, a, sizeof(a)), t->hw->currency,
		t->hw->accelerators, t->hw->accelerator[0] ? t->hw->accelerator : "GPU",
		t->hw->f[HWPROF_FIXED_PER_HOUR].given ? t->hw->f[HWPROF_FIXED_PER_HOUR].source : t->hw->origin);
	for (int k = 0; k < PRICEWAR_N_BASES; k++) {
		const pricewar_basis_t *bs = &t->bases[k];
		fprintf(f, "  %-2s %s: %.1f output tok/s per GPU, %.0f in / %.0f out tokens per call, utilization %.0f%%; "
			   "cost %s %s per node-hour, %s %s per 1M tokens (in + out)\n     [source: %s]\n", bs->key,
			bs->title, bs->out_tok_s_per_gpu, bs->in_per_call, bs->out_per_call, bs->utilization * 100,
			meter_format_micros(bs->cost_micros_per_hour, a, sizeof(a)), t->currency,
			meter_format_micros(bs->cost_per_1m_tokens_micros, b, sizeof(b)), t->currency, bs->source);
	}
	fprintf(f, "\nreading:\n");
	group_summary(f, t, true);
	group_summary(f, t, false);
	fprintf(f, "  a cut of X%% of a price takes a gross margin of X%% to zero (price x (1 - X) = cost): a 60%% "
		   "margin dies at a 60%% cut, and a 90%% cut leaves only margins above 90%% positive.\n");
	fprintf(f, "\nsources of the prices:\n");
	for (size_t i = 0; i < t->n_notes; i++)
		fprintf(f, "  [%zu] %s\n", i + 1, t->notes[i]);
	if (fclose(f) != 0) {
		free(out);
		return NULL;
	}
	return out;
}

static json_t *cell_json(const pricewar_cell_t *c)
{
	if (!c->computed)
		return json_null();
	return json_pack("{s:o, s:I, s:b}", "gross_margin_ppm", c->defined ? json_integer(c->gm_ppm) : json_null(),
			 "revenue_micros_per_hour", (json_int_t)c->revenue_micros_per_hour, "cache_hit_applied", c->cached);
}

static json_t *row_json(const pricewar_table_t *t, const pricewar_row_t *row)
{
	char a[48], b[48], c[48];
	const pricetab_entry_t *e = row->e;
	json_t *cells = json_object(), *notes = json_array();
	for (int k = 0; cells != NULL && k < PRICEWAR_N_BASES; k++)
		json_object_set_new(cells, t->bases[k].key, cell_json(&row->cell[k]));
	for (int k = 0; notes != NULL && k < 3; k++)
		if (row->note[k] != 0)
			json_array_append_new(notes, json_integer((json_int_t)row->note[k]));
	return json_pack("{s:s, s:s, s:s, s:b, s:s, s:s, s:s, s:s, s:o, s:b, s:o, s:o}", "table", t->srcs[row->src].name,
			 "entry", e->name, "model", e->model, "before", t->srcs[row->src].before, "provider", e->provider,
			 "currency", e->currency, "input_per_1m", meter_q_format(e->in_per_1m, a, sizeof(a)),
			 "output_per_1m", meter_q_format(e->out_per_1m, b, sizeof(b)), "cached_input_per_1m",
			 e->has_cached ? json_string(meter_q_format(e->cached_in_per_1m, c, sizeof(c))) : json_null(),
			 "small_model", row->small, "cells", cells, "sources", notes);
}

json_t *pricewar_table_json(const pricewar_table_t *t)
{
	json_t *bases = json_array(), *rows = json_array(), *notes = json_array();
	char *text = pricewar_table_format(t);
	if (bases == NULL || rows == NULL || notes == NULL || text == NULL)
		goto fail;
	for (int k = 0; k < PRICEWAR_N_BASES; k++) {
		const pricewar_basis_t *b = &t->bases[k];
		if (json_array_append_new(bases, json_pack("{s:s, s:s, s:f, s:f, s:f, s:f, s:o, s:I, s:I, s:s}", "key",
							   b->key, "title", b->title, "out_tok_s_per_gpu",
							   b->out_tok_s_per_gpu, "in_per_call", b->in_per_call,
							   "out_per_call", b->out_per_call, "utilization", b->utilization,
							   "cache_hit_rate",
							   b->cache_hits ? json_real((double)DS_HITS / 608) : json_null(),
							   "cost_micros_per_hour", (json_int_t)b->cost_micros_per_hour,
							   "cost_per_1m_tokens_micros",
							   (json_int_t)b->cost_per_1m_tokens_micros, "source", b->source)) < 0)
			goto fail;
	}
	for (size_t i = 0; i < t->n_rows; i++)
		if (json_array_append_new(rows, row_json(t, &t->rows[i])) < 0)
			goto fail;
	for (size_t i = 0; i < t->n_notes; i++)
		if (json_array_append_new(notes, json_string(t->notes[i])) < 0)
			goto fail;
	json_t *j = json_pack("{s:s, s:s, s:I, s:o, s:o, s:s, s:o, s:s}", "currency", t->currency, "hardware",
			      t->hw->name, "rate_busy_micros_per_hour", (json_int_t)t->hw->rate_busy_micros_per_hour,
			      "bases", bases, "rows", rows, "zero_margin_cut",
			      "a cut of X of a price takes a gross margin of X to zero: a 60% margin dies at a 60% cut",
			      "sources", notes, "report", text);
	free(text);
	return j;
fail:
	json_decref(bases);
	json_decref(rows);
	json_decref(notes);
	free(text);
	return NULL;
}
