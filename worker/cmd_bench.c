/* margin-worker bench: prefill and decode throughput of the batched engine
 * against this machine's ceilings (calib.h). docs/bench.md has the method
 * and measured figures.
 *
 * Per batch size B and repetition:
 *   prefill  B requests of prompt-len pseudo-random token ids, max_tokens 1,
 *            submitted at once; tokens/s = B x prompt-len / the summed wall
 *            time of the engine steps (the one sampled token included).
 *   decode   B requests of prompt-len ids generating together; only steps in
 *            which all B sequences decode and none prefills are timed, and
 *            the run stops after gen-len such steps. tokens/s = B x steps /
 *            their wall time; GFLOP/s = the engine's FLOP count of those
 *            steps (model_token_flops) / their wall time.
 * One untimed repetition first (page faults of the KV cache and
 * activations), then --reps timed ones; the figures are their medians.
 *
 *   roofline_pct   decode tokens/s over the compute ceiling / (2 x params
 *                  read per token); the ceiling is the calibrated FMA peak
 *                  for f32 matrices, the int8 dot-product peak for
 *                  quantized ones (calib.h).
 *   prefill_roofline_pct  prefill GFLOP/s (the FLOPs it really does: no
 *                  classifier but for the last token, attention included)
 *                  over the same ceiling.
 *   bandwidth_pct  weight bytes streamed per second (one pass per step:
 *                  decode tokens/s / B x params per token x the bytes a
 *                  parameter of the matrices takes, 4 in f32, about 1.06
 *                  in Q8) over the read bandwidth; at B = 1 the batch-1
 *                  bound.
 *   decode_spread_pct  (max - min) / median of decode tok/s over the reps
 *   unreliable_reps  (scaled) reps in which the bigger model was not slower
 *   engine_overhead_pct  share of the decode step time spent outside
 *                  model_forward (batch assembly, sampling, stop checks,
 *                  accounting): the engine's own cost.
 *
 * --layers K (synthetic presets): builds the preset with K layers and with
 * min(2K, L) layers, measures both back to back in every repetition (so
 * both see the same machine state), and extrapolates each time per token
 * or per step linearly in the layer count to L: every layer of a shape
 * costs the same, and what does not scale (embedding, output head,
 * sampling, engine) is in both measurements as it is. Parameter counts of
 * the whole model come from its configuration.
 *
 * --embed adds, per batch size and repetition, an embedding pass beside
 * the prefill pass: B embed requests (engine.h) of the same prompt-len
 * ids, submitted at once; embeddings/s = B / the summed wall time of its
 * steps, tokens/s = B x prompt-len / the same. It is the prefill's work
 * without the one sampled token and its output head, so the two tokens/s
 * should be close; the best batch is the one with the most embeddings/s.
 *
 * --calibrate-only: the machine's ceilings alone (no model). */
#include "cmds.h"
#include "lib/mg_settings.h"

#include "calib.h"
#include "engine.h"
#include "lib/mg_clock.h"
#include "lib/mg_cpu.h"
#include "model.h"
#include "sampler.h"
#include "synth.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define MAX_B 16

typedef struct bench_args {
	const char *model_path;
	const char *arch;
	int layers;
	int batch[MAX_B];
	int n_batch;
	int prompt_len;
	int gen_len;
	int threads;
	int slots;
	int reps;
	int prefill_chunk;
	int ctx;		/* slot context; 0 = just what a run needs */
	const char *kv;		/* KV cache type; NULL = the engine's default */
	model_weights_t weights;
	model_arith_t arith;
	bool json;
	const char *calib_path;
	bool recalibrate;
	bool calibrate_only;
	bool embed;		/* also measure embedding passes */
	bool profile;		/* time the forward pass's phases */
	const char *hardware;	/* the hardware profile of this machine, for the JSON; NULL = unknown */
} bench_args_t;

/* One repetition's figures of one model at one batch size. */
typedef struct fig {
	double prefill_s_per_tok;	/* wall seconds per prompt token */
	double decode_s_per_step;	/* wall seconds per decode step of B tokens */
	double decode_flops_per_step;	/* engine FLOPs of one such step */
	double prefill_flops_per_tok;
	double decode_engine_s_per_step;	/* outside model_forward */
	double embed_s_per_input;	/* --embed: wall seconds per embedded input */
	double decode_ph[MODEL_N_PHASES];	/* --profile: seconds per decode step by phase */
	double prefill_ph[MODEL_N_PHASES];	/* --profile: seconds per prompt token by phase */
} fig_t;

#define B(field) MG_SETTING_AT(bench_args_t, field)
#define SEC "bench"

/* bench's flags (no file: the keys name them in an mg_config_t). */
static const mg_setting_t settings[] = {
	{ .flag = "model", .section = SEC, .key = "model", .arg = "FILE", .help = "a GGUF model", B(model_path) },
	{ .flag = "arch", .section = SEC, .key = "arch", .arg = "PRESET",
	  .help = "a synthetic model (llama-110m, qwen2-0.5b, llama2-7b, ...)", B(arch) },
	{ .flag = "layers", .section = SEC, .key = "layers", .type = MG_SETTING_INT, .lo = 1, .hi = 1000, .arg = "K",
	  .help = "build only K layers of the preset (and 2K) and scale the\n"
		  "per-token figures to the whole model", B(layers) },
	{ .flag = "batch", .section = SEC, .key = "batch", .arg = "LIST", .def = "1,8,32",
	  .help = "batch sizes, comma-separated" },
	{ .flag = "prompt-len", .section = SEC, .key = "prompt_len", .type = MG_SETTING_INT, .lo = 1, .hi = 1 << 20,
	  .def = "128", .arg = "N", .help = "prompt tokens per sequence", B(prompt_len) },
	{ .flag = "gen-len", .section = SEC, .key = "gen_len", .type = MG_SETTING_INT, .lo = 1, .hi = 1 << 20,
	  .def = "64", .arg = "N", .help = "decode steps timed per sequence", B(gen_len) },
	{ .flag = "threads", .section = SEC, .key = "threads", .type = MG_SETTING_INT, .lo = 1, .hi = 256, .arg = "N",
	  .help = "compute threads (default: the CPUs this process may run on)", B(threads) },
	{ .flag = "slots", .section = SEC, .key = "slots", .type = MG_SETTING_INT, .lo = 1, .hi = 4096, .arg = "N",
	  .help = "engine slots (default: the largest batch)", B(slots) },
	{ .flag = "ctx", .section = SEC, .key = "ctx", .type = MG_SETTING_INT, .lo = 2, .hi = 1 << 24, .arg = "N",
	  .help = "KV context per slot (default: what the run needs; its pages\n"
		  "are touched only as far as the run fills them)", B(ctx) },
	{ .flag = "kv", .section = SEC, .key = "kv", .arg = "TYPE",
	  .help = "KV cache type: f32, f16 or q8_0 (default " MODEL_KV_DEFAULT ")", B(kv) },
	{ .flag = "weights", .section = SEC, .key = "weights", .arg = "TYPE",
	  .help = "matrices: auto (default: a file's quantized tensors stay as\n"
		  "they are, the rest f32), f32, q8_0-panels (Q8 widened\n"
		  "exactly), or a mix quantized at load: q8_0, q4_0, q4_1, q5_0,\n"
		  "q5_1, q2_k, q3_k_m, q4_k_m, q5_k_m, q6_k, iq4_nl, iq4_xs, ..." },
	{ .flag = "arith", .section = SEC, .key = "arith", .arg = "ORDER",
	  .help = "quantized kernels' float order: llama (default: llama.cpp's\n"
		  "logits bit for bit) or fast (Q5_0, Q8_0, IQ4_NL, Q4_K, Q5_K,\n"
		  "Q6_K blocks summed whole: other bits, faster at batch 8+)" },
	{ .flag = "reps", .section = SEC, .key = "reps", .type = MG_SETTING_INT, .lo = 1, .hi = 1000, .def = "3",
	  .arg = "R", .help = "repetitions per figure", B(reps) },
	{ .flag = "prefill-chunk", .section = SEC, .key = "prefill_chunk", .type = MG_SETTING_INT, .lo = 1,
	  .hi = 1 << 16, .arg = "N", .help = "prompt tokens per sequence per step (default min(prompt-len, 256))",
	  B(prefill_chunk) },
	{ .flag = "calib", .section = SEC, .key = "calib", .arg = "FILE",
	  .help = "calibration file (default $XDG_CACHE_HOME/margin/calib-<threads>.json)", B(calib_path) },
	{ .flag = "recalibrate", .section = SEC, .key = "recalibrate", .type = MG_SETTING_BOOL, .set = "yes",
	  .help = "measure the machine again even if the file exists", B(recalibrate) },
	{ .flag = "calibrate-only", .section = SEC, .key = "calibrate_only", .type = MG_SETTING_BOOL, .set = "yes",
	  .help = "print the machine's ceilings (with --json: {\"machine\": ...})", B(calibrate_only) },
	{ .flag = "embed", .section = SEC, .key = "embed", .type = MG_SETTING_BOOL, .set = "yes",
	  .help = "also embed B inputs of prompt-len tokens at once per batch\n"
		  "size: embeddings/s and tokens/s beside prefill tokens/s", B(embed) },
	{ .flag = "profile", .section = SEC, .key = "profile", .type = MG_SETTING_BOOL, .set = "yes",
	  .help = "also split the forward pass's time by phase: the matrix\n"
		  "products by weight, attention, the row-wise work (ms per\n"
		  "decode step, us per prompt token)", B(profile) },
	{ .flag = "hardware", .section = SEC, .key = "hardware", .arg = "NAME",
	  .help = "the hardware profile of this machine, recorded in the JSON\n"
		  "(\"hardware\"; default \"unknown\") so that marginctl knows\n"
		  "which machine the figures belong to (docs/economics.md 6)", B(hardware) },
	{ .flag = "json", .section = SEC, .key = "json", .type = MG_SETTING_BOOL, .set = "yes",
	  .help = "one JSON object (its keys: docs/bench.md, \"Method\")", B(json) },
};

static const mg_settings_spec_t spec = {
	.prog = "margin-worker bench",
	.synopsis = "(--model FILE.gguf | --arch PRESET | --calibrate-only) [--layers K]\n"
		    "       [--batch 1,8,32] [--prompt-len 128] [--gen-len 64] [--threads N]\n"
		    "       [--slots N] [--ctx N] [--kv TYPE] [--weights TYPE] [--arith ORDER] [--reps 3] [--prefill-chunk N]\n"
		    "       [--calib FILE] [--recalibrate] [--hardware PROFILE] [--embed] [--profile]\n"
		    "       [--json]\n",
	.intro = "Measure prefill and decode throughput of the batched engine and compare them\n"
		 "with this machine's ceilings: the f32 FMA peak, the int8 dot-product peak and\n"
		 "the read bandwidth (measured once per CPU and thread count and cached, see\n"
		 "--calib; OpenBLAS sgemm is shown for reference). Figures are medians over\n"
		 "--reps repetitions.\n",
	.no_config = true,
	.settings = settings,
	.n = sizeof(settings) / sizeof(settings[0]),
};

static void usage(FILE *f)
{
	mg_settings_usage(&spec, f);
}

/* mg_settings_parse_int into an int field. */
static int parse_int(const char *s, int lo, int hi, int *ret)
{
	int64_t v;
	int r = mg_settings_parse_int(s, lo, hi, &v);
	if (r == 0)
		*ret = (int)v;
	return r;
}

static int parse_batches(const char *s, bench_args_t *a)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", s);
	a->n_batch = 0;
	for (char *save = NULL, *t = strtok_r(buf, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
		if (a->n_batch == MAX_B || parse_int(t, 1, 4096, &a->batch[a->n_batch]) < 0)
			return -EINVAL;
		a->n_batch++;
	}
	return a->n_batch > 0 ? 0 : -EINVAL;
}

/* The flags into a (strings borrowed from argv and *cfg, which the caller
 * destroys after a's last use). 0; 1 after --help; -EINVAL for bad usage,
 * said. */
static int parse_args(int argc, char **argv, mg_config_t *cfg, bench_args_t *a)
{
	*a = (bench_args_t){ .threads = mg_cpu_count() };
	int rc = mg_settings_parse_into(&spec, cfg, argc, argv, a);
	if (rc != 0)
		return rc == 1 ? 1 : -EINVAL;
	const char *batch = mg_config_get(cfg, SEC, "batch"), *weights = mg_config_get(cfg, SEC, "weights");
	model_kv_type_t t;
	if ((batch != NULL && parse_batches(batch, a) < 0) || (batch == NULL && parse_batches("1,8,32", a) < 0)) {
		fprintf(stderr, "margin-worker bench: bad value '%s' for --batch\n", batch);
		return -EINVAL;
	}
	if (a->kv != NULL && model_kv_type_parse(a->kv, &t) < 0) {
		fprintf(stderr, "margin-worker bench: bad value '%s' for --kv\n", a->kv);
		return -EINVAL;
	}
	if (weights != NULL && model_weights_parse(weights, &a->weights) < 0) {
		fprintf(stderr, "margin-worker bench: bad value '%s' for --weights\n", weights);
		return -EINVAL;
	}
	const char *arith = mg_config_get(cfg, SEC, "arith");
	if (arith != NULL && model_arith_parse(arith, &a->arith) < 0) {
		fprintf(stderr, "margin-worker bench: bad value '%s' for --arith (llama or fast)\n", arith);
		return -EINVAL;
	}
	if (a->calibrate_only && a->model_path == NULL && a->arch == NULL)
		return 0;
	if ((a->model_path == NULL) == (a->arch == NULL)) {
		fprintf(stderr, "margin-worker bench: give exactly one of --model FILE and --arch PRESET\n");
		return -EINVAL;
	}
	if (a->layers > 0 && a->arch == NULL) {
		fprintf(stderr, "margin-worker bench: --layers works with --arch presets only\n");
		return -EINVAL;
	}
	int maxb = 0;
	for (int i = 0; i < a->n_batch; i++)
		if (a->batch[i] > maxb)
			maxb = a->batch[i];
	if (a->slots == 0)
		a->slots = maxb;
	if (a->slots < maxb) {
		fprintf(stderr, "margin-worker bench: --slots %d is smaller than the largest batch %d\n", a->slots, maxb);
		return -EINVAL;
	}
	if (a->prefill_chunk == 0)
		a->prefill_chunk = a->prompt_len < 256 ? a->prompt_len : 256;
	return 0;
}

static int cmp_double(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;
	return a < b ? -1 : a > b;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double peak_rss_mb(void)
{
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) < 0)
		return 0;
	return (double)ru.ru_maxrss / 1024.0;	/* KiB on Linux */
}

/* Prompt ids: pseudo-random, fixed, away from the first ids (control and
 * byte tokens of real vocabularies). */
static void make_prompts(int32_t *p, int n, int vocab, uint64_t seed)
{
	sampler_rng_t r;
	sampler_rng_seed(&r, seed);
	int lo = vocab > 1024 ? 512 : 0;
	for (int i = 0; i < n; i++)
		p[i] = lo + (int32_t)(sampler_rng_next(&r) % (uint64_t)(vocab - lo));
}

static void drain(engine_t *e)
{
	for (engine_out_t *o; (o = engine_take(e)) != NULL;)
		engine_out_free(&o);
}

/* Submits B requests of prompt_len ids with max_tokens each (embed: B
 * embed requests). */
static int submit_b(engine_t *e, const int32_t *prompts, int B, int prompt_len, uint32_t max_tokens, bool embed)
{
	for (int i = 0; i < B; i++) {
		engine_req_t r = { .id = (uint64_t)i, .prompt_ids = prompts + (size_t)i * (size_t)prompt_len,
				   .n_prompt_ids = (size_t)prompt_len, .max_tokens = max_tokens, .ignore_eos = true,
				   .embed = embed };
		int rc = engine_submit(e, &r);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* B prompts of plen ids at once, prefilled and one token sampled each, or
 * (embed) embedded. */
static int prefill_pass(engine_t *e, const int32_t *prompts, int B, int plen, bool embed, double *ret_s,
			double *ret_flops, double ret_ph[MODEL_N_PHASES])
{
	engine_stats_reset(e);
	int rc = submit_b(e, prompts, B, plen, 1, embed);
	while (rc >= 0 && engine_pending(e) > 0)
		rc = engine_step(e);
	drain(e);
	if (rc < 0)
		return rc;
	engine_stats_t st;
	engine_get_stats(e, &st);
	*ret_s = (double)st.wall_ns / 1e9;
	*ret_flops = (double)st.flops;
	for (int p = 0; p < MODEL_N_PHASES; p++)
		ret_ph[p] = (double)st.phase_ns[p] / 1e9;
	return 0;
}

/* gen_len steps in which all B sequences decode. */
static int decode_pass(engine_t *e, const int32_t *prompts, int B, int plen, int gen_len, uint32_t max_tokens,
		       double *ret_s, double *ret_flops, double *ret_engine_s, double ret_ph[MODEL_N_PHASES],
		       int *ret_steps)
{
	engine_stats_reset(e);
	int rc = submit_b(e, prompts, B, plen, max_tokens, false);
	engine_stats_t a, b;
	uint64_t wall = 0, flops = 0, fwd = 0, ph[MODEL_N_PHASES] = { 0 };
	int steps = 0;
	engine_get_stats(e, &a);
	while (rc >= 0 && steps < gen_len && engine_pending(e) > 0) {
		rc = engine_step(e);
		engine_get_stats(e, &b);
		if (rc == B && b.prefill_tokens == a.prefill_tokens && b.decode_tokens - a.decode_tokens == (uint64_t)B) {
			wall += b.wall_ns - a.wall_ns;
			fwd += b.forward_ns - a.forward_ns;
			flops += b.flops - a.flops;
			for (int p = 0; p < MODEL_N_PHASES; p++)
				ph[p] += b.phase_ns[p] - a.phase_ns[p];
			steps++;
		}
		a = b;
		drain(e);
	}
	for (int i = 0; i < B; i++)
		engine_cancel(e, (uint64_t)i);
	drain(e);
	if (rc < 0)
		return rc;
	if (steps == 0)
		return -EAGAIN;
	*ret_s = (double)wall / 1e9;
	*ret_flops = (double)flops;
	*ret_engine_s = (double)(wall - fwd) / 1e9;
	for (int p = 0; p < MODEL_N_PHASES; p++)
		ret_ph[p] = (double)ph[p] / 1e9;
	*ret_steps = steps;
	return 0;
}

/* A model under test and its engine. */
typedef struct bench_model {
	model_t *m;		/* owned */
	engine_t *e;		/* owned */
	int layers;
} bench_model_t;

/* max_tokens of a decode pass: gen_len + the steps the prefill of the
 * largest batch may take, so that gen_len steps of all B sequences remain
 * after the last prompt is in. */
static uint32_t decode_max_tokens(const bench_args_t *a)
{
	int step_tokens = a->slots + a->prefill_chunk;
	int64_t room = step_tokens - a->slots;
	int64_t prefill_steps = ((int64_t)a->slots * a->prompt_len + room - 1) / room + 1;
	return (uint32_t)(a->gen_len + prefill_steps + 1);
}

static int open_model(bench_model_t *bm, const bench_args_t *a, int layers_override, char *err, size_t errlen)
{
	int rc;
	model_opts_t mo = { .weights = a->weights, .arith = a->arith };
	if (a->arch != NULL)
		rc = model_new_synth_opts(a->arch, layers_override, &mo, &bm->m, err, errlen);
	else
		rc = model_load_opts(a->model_path, &mo, &bm->m, err, errlen);
	if (rc < 0)
		return rc;
	bm->layers = model_config(bm->m)->n_layers;
	if (a->ctx > model_config(bm->m)->n_ctx) {
		snprintf(err, errlen, "bench: --ctx %d is above the model's context of %d", a->ctx,
			 model_config(bm->m)->n_ctx);
		return -EINVAL;
	}
	uint32_t max_tokens = decode_max_tokens(a);
	int need = a->prompt_len + (int)max_tokens + 1;
	if (a->ctx > 0 && a->ctx < need) {
		snprintf(err, errlen, "bench: --ctx %d is too small: the run needs %d positions per slot", a->ctx, need);
		return -EINVAL;
	}
	engine_opts_t o = { .slots = a->slots, .n_ctx = a->ctx > 0 ? a->ctx : need,
			    .prefill_chunk = a->prefill_chunk, .max_step_tokens = a->slots + a->prefill_chunk,
			    .threads = a->threads, .kv_type = a->kv };
	if ((rc = engine_new(bm->m, &o, &bm->e, err, errlen)) < 0)
		return rc;
	engine_profile(bm->e, a->profile);
	return 0;
}

static void close_model(bench_model_t *bm)
{
	engine_destroy(&bm->e);
	model_destroy(&bm->m);
}

/* One repetition of both passes at batch B. */
static int measure_once(bench_model_t *bm, const bench_args_t *a, int B, const int32_t *prompts, fig_t *ret)
{
	double s, f, eng = 0, ph[MODEL_N_PHASES];
	int steps = 0;
	int rc = prefill_pass(bm->e, prompts, B, a->prompt_len, false, &s, &f, ph);
	if (rc < 0)
		return rc;
	ret->prefill_s_per_tok = s / ((double)B * a->prompt_len);
	ret->prefill_flops_per_tok = f / ((double)B * a->prompt_len);
	for (int p = 0; p < MODEL_N_PHASES; p++)
		ret->prefill_ph[p] = ph[p] / ((double)B * a->prompt_len);
	rc = decode_pass(bm->e, prompts, B, a->prompt_len, a->gen_len, decode_max_tokens(a), &s, &f, &eng, ph,
			 &steps);
	if (rc < 0)
		return rc;
	ret->decode_s_per_step = s / steps;
	ret->decode_flops_per_step = f / steps;
	ret->decode_engine_s_per_step = eng / steps;
	for (int p = 0; p < MODEL_N_PHASES; p++)
		ret->decode_ph[p] = ph[p] / steps;
	if (a->embed) {
		if ((rc = prefill_pass(bm->e, prompts, B, a->prompt_len, true, &s, &f, ph)) < 0)
			return rc;
		ret->embed_s_per_input = s / B;
	}
	return 0;
}

/* x(L) from x(k1) and x(k2), linear in the layer count; the per-layer
 * slope is not allowed below 0 (noise). */
static double extrapolate(double x1, double x2, int k1, int k2, int L)
{
	if (k2 == k1)
		return x1;
	double slope = (x2 - x1) / (k2 - k1);
	if (slope < 0)
		slope = 0;
	return x1 + slope * (L - k1);
}

static fig_t extrapolate_fig(const fig_t *f1, const fig_t *f2, int k1, int k2, int L)
{
	fig_t r = {
		.prefill_s_per_tok = extrapolate(f1->prefill_s_per_tok, f2->prefill_s_per_tok, k1, k2, L),
		.decode_s_per_step = extrapolate(f1->decode_s_per_step, f2->decode_s_per_step, k1, k2, L),
		.decode_flops_per_step = extrapolate(f1->decode_flops_per_step, f2->decode_flops_per_step, k1, k2, L),
		.prefill_flops_per_tok = extrapolate(f1->prefill_flops_per_tok, f2->prefill_flops_per_tok, k1, k2, L),
		.decode_engine_s_per_step = extrapolate(f1->decode_engine_s_per_step, f2->decode_engine_s_per_step, k1, k2, L),
		.embed_s_per_input = extrapolate(f1->embed_s_per_input, f2->embed_s_per_input, k1, k2, L),
	};
	for (int p = 0; p < MODEL_N_PHASES; p++) {
		r.decode_ph[p] = extrapolate(f1->decode_ph[p], f2->decode_ph[p], k1, k2, L);
		r.prefill_ph[p] = extrapolate(f1->prefill_ph[p], f2->prefill_ph[p], k1, k2, L);
	}
	return r;
}

/* The compute ceiling of a model's matrices, GFLOP/s (or GOP/s): the
 * int8 dot-product peak when they are quantized blocks multiplied as
 * integers, the f32 FMA peak when they are f32 or widened to it (f32,
 * q8_0-panels). */
static bool integer_matrices(const model_t *m, model_weights_t w)
{
	return model_matrix_bytes_ratio(m) < 0.99 && w != MODEL_WEIGHTS_Q8;
}

static double compute_peak(const calib_t *c, const model_t *m, model_weights_t w)
{
	return integer_matrices(m, w) ? c->int8_gops : c->fma_gflops;
}

typedef struct result {
	int batch;
	double prefill_tok_s, decode_tok_s, gflops, prefill_gflops;
	double roofline_pct, prefill_roofline_pct, bandwidth_pct, peak_rss_mb;
	double engine_pct;	/* decode step time outside model_forward */
	double spread_pct;	/* decode tok/s over the reps: (max - min) / median */
	double embed_s;		/* --embed: embeddings/s */
	int implausible;	/* scaled: reps where more layers were not slower */
	/* --profile, from the repetition with the median decode step: */
	double decode_step_ms, decode_engine_ms;
	double decode_ph_ms[MODEL_N_PHASES];	/* ms per decode step by phase */
	double prefill_ph_us[MODEL_N_PHASES];	/* us per prompt token by phase */
	double prefill_us;			/* us per prompt token in all */
} result_t;

/* --profile: the phase split of the repetition whose decode step took the
 * median time (the lower middle one of an even count), so that its phases
 * and the engine's share add up to that step. */
static void median_profile(const fig_t *figs, int n, result_t *o)
{
	int best = 0;
	for (int i = 0; i < n; i++) {
		int below = 0;
		for (int j = 0; j < n; j++)
			below += figs[j].decode_s_per_step < figs[i].decode_s_per_step ||
				 (figs[j].decode_s_per_step == figs[i].decode_s_per_step && j < i);
		if (below == (n - 1) / 2)
			best = i;
	}
	const fig_t *f = &figs[best];
	o->decode_step_ms = 1e3 * f->decode_s_per_step;
	o->decode_engine_ms = 1e3 * f->decode_engine_s_per_step;
	o->prefill_us = 1e6 * f->prefill_s_per_tok;
	for (int p = 0; p < MODEL_N_PHASES; p++) {
		o->decode_ph_ms[p] = 1e3 * f->decode_ph[p];
		o->prefill_ph_us[p] = 1e6 * f->prefill_ph[p];
	}
}

/* Every batch size: reps repetitions, each measuring every model back to
 * back (in scaled mode the two layer counts see the same machine state),
 * extrapolated per repetition, then medians. */
static int run_all(bench_model_t *bm, int n_models, int L, const bench_args_t *a, const calib_t *cal,
		   double ppt_full, result_t *res, char *err, size_t errlen)
{
	int maxb = a->slots, rc = 0;
	int32_t *prompts = malloc((size_t)maxb * (size_t)a->prompt_len * sizeof(*prompts));
	double *v[6];
	fig_t *figs = malloc((size_t)a->reps * sizeof(*figs));
	for (int i = 0; i < 6; i++)
		v[i] = malloc((size_t)a->reps * sizeof(double));
	if (prompts == NULL || figs == NULL || v[0] == NULL || v[1] == NULL || v[2] == NULL || v[3] == NULL ||
	    v[4] == NULL || v[5] == NULL) {
		snprintf(err, errlen, "bench: out of memory for %d prompts of %d tokens", maxb, a->prompt_len);
		rc = -ENOMEM;
		goto out;
	}
	make_prompts(prompts, maxb * a->prompt_len, model_config(bm[0].m)->vocab_size, 42);
	double peak = compute_peak(cal, bm[0].m, a->weights);
	double roof_tok_s = peak * 1e9 / (2.0 * ppt_full);
	double bw_steps_s = cal->bandwidth_gbs * 1e9 / (4.0 * model_matrix_bytes_ratio(bm[0].m) * ppt_full);
	for (int bi = 0; bi < a->n_batch; bi++) {
		int B = a->batch[bi];
		fig_t f[2];
		/* untimed: first touch of the KV pages and activations */
		for (int mi = 0; mi < n_models; mi++)
			if ((rc = measure_once(&bm[mi], a, B, prompts, &f[mi])) < 0)
				goto step_fail;
		for (int r = 0; r < a->reps; r++) {
			for (int mi = 0; mi < n_models; mi++)
				if ((rc = measure_once(&bm[mi], a, B, prompts, &f[mi])) < 0)
					goto step_fail;
			fig_t x = n_models == 2 ? extrapolate_fig(&f[0], &f[1], bm[0].layers, bm[1].layers, L) : f[0];
			if (n_models == 2 && (f[1].prefill_s_per_tok <= f[0].prefill_s_per_tok ||
					      f[1].decode_s_per_step <= f[0].decode_s_per_step))
				res[bi].implausible++;
			v[0][r] = 1.0 / x.prefill_s_per_tok;
			v[1][r] = B / x.decode_s_per_step;
			v[2][r] = x.decode_flops_per_step / x.decode_s_per_step / 1e9;
			v[3][r] = x.prefill_flops_per_tok / x.prefill_s_per_tok / 1e9;
			v[4][r] = 100.0 * x.decode_engine_s_per_step / x.decode_s_per_step;
			v[5][r] = a->embed ? 1.0 / x.embed_s_per_input : 0.0;
			figs[r] = x;
		}
		result_t *o = &res[bi];
		o->batch = B;
		double lo = v[1][0], hi = v[1][0];
		for (int r = 1; r < a->reps; r++) {
			lo = v[1][r] < lo ? v[1][r] : lo;
			hi = v[1][r] > hi ? v[1][r] : hi;
		}
		o->prefill_tok_s = median(v[0], a->reps);
		o->decode_tok_s = median(v[1], a->reps);
		o->gflops = median(v[2], a->reps);
		o->prefill_gflops = median(v[3], a->reps);
		o->engine_pct = median(v[4], a->reps);
		o->embed_s = median(v[5], a->reps);
		o->spread_pct = 100.0 * (hi - lo) / o->decode_tok_s;
		median_profile(figs, a->reps, o);
		o->roofline_pct = 100.0 * o->decode_tok_s / roof_tok_s;
		o->prefill_roofline_pct = 100.0 * o->prefill_gflops / peak;
		o->bandwidth_pct = 100.0 * (o->decode_tok_s / B) / bw_steps_s;
		o->peak_rss_mb = peak_rss_mb();
	}
	goto out;
step_fail:
	snprintf(err, errlen, "bench: an engine step failed: %s", strerror(-rc));
out:
	free(prompts);
	free(figs);
	for (int i = 0; i < 6; i++)
		free(v[i]);
	return rc;
}

/* The "machine" object of --json: the calibration file's keys and how
 * this run came by them. */
static json_t *machine_json(const calib_t *c, bool measured)
{
	char when[40];
	mg_clock_format_iso8601(when, sizeof(when), c->measured_at_ns);
	return json_pack("{s:f, s:f, s:f, s:f, s:s, s:i, s:s, s:f, s:s, s:s, s:i, s:s, s:s, s:b, s:i, s:b}",
			 "fma_gflops", c->fma_gflops, "int8_gops", c->int8_gops, "bandwidth_gbs", c->bandwidth_gbs,
			 "sgemm_gflops", c->sgemm_gflops, "blas_core", c->blas_core, "threads", c->threads,
			 "measured_at", when, "spread_pct", c->spread_pct, "cpu_model", c->cpu_model,
			 "cpu_flags_key", c->cpu_flags_key, "reps", c->reps, "fma_kind", c->fma_kind,
			 "int8_kind", c->int8_kind, "calibrated_now", measured, "tries", c->tries,
			 "reliable", !c->unreliable);
}

/* The ceilings, when and how they were measured. */
static void print_machine(const calib_t *c, bool measured, const char *path)
{
	char when[40];
	mg_clock_format_iso8601(when, sizeof(when), c->measured_at_ns);
	printf("machine: %s, %d threads\n", c->cpu_model, c->threads);
	printf("  f32 FMA peak   %8.1f GFLOP/s  (%s, register-only loop)\n", c->fma_gflops, c->fma_kind);
	printf("  int8 dot peak  %8.1f GOP/s    (%s, 2 ops per multiply-add)\n", c->int8_gops, c->int8_kind);
	printf("  read bandwidth %8.1f GB/s     (512 MiB read-only sum)\n", c->bandwidth_gbs);
	printf("  OpenBLAS sgemm %8.1f GFLOP/s  (reference only; OpenBLAS core %s)\n", c->sgemm_gflops, c->blas_core);
	if (measured)
		printf("  measured now at %s: medians of %d repetitions, largest spread %.1f%%, %d %s\n", when,
		       c->reps, c->spread_pct, c->tries, c->tries == 1 ? "try" : "tries");
	else
		printf("  cached: measured at %s, medians of %d repetitions, largest spread %.1f%% (%s;\n"
		       "  --recalibrate measures again)\n", when, c->reps, c->spread_pct, path ? path : "?");
	if (measured)
		printf("  spreads: FMA %.1f%%, int8 %.1f%%, bandwidth %.1f%%, sgemm %.1f%%\n", c->spreads_pct[0],
		       c->spreads_pct[1], c->spreads_pct[2], c->spreads_pct[3]);
	if (c->unreliable)
		printf("  WARNING: the repetitions spread %.1f%% (above %.0f%%) in each of %d tries: the machine is busy,\n"
		       "  these ceilings are unreliable and were not saved\n", c->spread_pct, CALIB_MAX_SPREAD_PCT,
		       c->tries);
}

/* One line under a row for each of its percentages above 100%: why it can
 * be. */
static void print_over_notes(const result_t *o, const calib_t *c, bool measured, double step_bytes, bool ints)
{
	const char *busy = c->unreliable ? "the ceiling was measured on a busy machine (see the warning above)"
				: measured ? "the machine was busier during calibration than during this row"
				: "the cached ceiling was measured on a busier machine: --recalibrate";
	const char *peak = ints ? "int8 dot-product" : "f32 FMA";
	if (o->prefill_roofline_pct > 100.0)
		printf("       ^ prefill %.0f%% of the %s peak: %s\n", o->prefill_roofline_pct, peak, busy);
	if (o->roofline_pct > 100.0)
		printf("       ^ decode %.0f%% of the %s roofline: %s\n", o->roofline_pct, peak, busy);
	if (o->bandwidth_pct > 100.0) {
		long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
		if (l3 > 0)
			printf("       ^ bandwidth %.0f%%: part of the %.0f MB of weights read per step stays in the %.0f MB L3 "
			       "cache, which reads faster than DRAM\n", o->bandwidth_pct, step_bytes / 1e6, (double)l3 / 1e6);
		else
			printf("       ^ bandwidth %.0f%%: weights stay in the caches between steps, or %s\n",
			       o->bandwidth_pct, busy);
	}
}

/* --profile's object of a run: {"decode_step_ms", "decode_ms": {phase:
 * ms, ..., "engine": ms}, "prefill_us_per_token", "prefill_us": {phase:
 * us, ...}}. */
static json_t *profile_json(const result_t *o)
{
	json_t *d = json_object(), *p = json_object();
	for (int i = 0; i < MODEL_N_PHASES; i++) {
		json_object_set_new(d, model_phase_name(i), json_real(o->decode_ph_ms[i]));
		json_object_set_new(p, model_phase_name(i), json_real(o->prefill_ph_us[i]));
	}
	json_object_set_new(d, "engine", json_real(o->decode_engine_ms));
	return json_pack("{s:f, s:o, s:f, s:o}", "decode_step_ms", o->decode_step_ms, "decode_ms", d,
			 "prefill_us_per_token", o->prefill_us, "prefill_us", p);
}

static int print_json(const bench_args_t *a, const calib_t *cal, bool measured, const char *name,
		      const model_config_t *cfg, double params_full, double ppt_full, int layers_run, int L,
		      bool scaled, int ctx, const char *kv_type, double kv_bytes, bool ints, const result_t *res)
{
	json_t *runs = json_array();
	for (int bi = 0; bi < a->n_batch && runs != NULL; bi++) {
		const result_t *o = &res[bi];
		json_array_append_new(runs, json_pack("{s:i, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:i}",
			"batch", o->batch, "prefill_tok_s", o->prefill_tok_s, "decode_tok_s", o->decode_tok_s,
			"gflops", o->gflops, "roofline_pct", o->roofline_pct, "bandwidth_pct", o->bandwidth_pct,
			"peak_rss_mb", o->peak_rss_mb, "prefill_gflops", o->prefill_gflops,
			"prefill_roofline_pct", o->prefill_roofline_pct, "engine_overhead_pct", o->engine_pct,
			"decode_spread_pct", o->spread_pct, "unreliable_reps", o->implausible));
		json_t *run = json_array_get(runs, (size_t)bi);
		if (a->embed && run != NULL) {
			json_object_set_new(run, "embed_per_s", json_real(o->embed_s));
			json_object_set_new(run, "embed_tok_s", json_real(o->embed_s * a->prompt_len));
		}
		if (a->profile && run != NULL)
			json_object_set_new(run, "profile", profile_json(o));
	}
	json_t *root = json_pack("{s:s, s:o, s:{s:s, s:s, s:I, s:I, s:i, s:i, s:b}, "
				 "s:{s:i, s:i, s:i, s:i, s:i, s:i, s:s, s:I, s:s, s:s, s:s}, s:o}",
		"hardware", a->hardware ? a->hardware : "unknown",
		"machine", machine_json(cal, measured),
		"model", "name", name, "arch", cfg->arch_name,
			"n_params", (json_int_t)llround(params_full),
			"params_per_token", (json_int_t)llround(ppt_full),
			"layers_run", layers_run, "n_layers", L, "scaled", scaled,
		"settings", "prompt_len", a->prompt_len, "gen_len", a->gen_len, "reps", a->reps,
			"slots", a->slots, "prefill_chunk", a->prefill_chunk, "ctx", ctx, "kv_type", kv_type,
			"kv_bytes", (json_int_t)llround(kv_bytes), "weights", model_weights_name(a->weights),
			"arith", model_arith_name(a->arith),
			"roofline_peak", ints ? "int8_gops" : "fma_gflops",
		"runs", runs);
	if (root == NULL)
		return -ENOMEM;
	char *s = json_dumps(root, JSON_REAL_PRECISION(6));
	json_decref(root);
	if (s == NULL)
		return -ENOMEM;
	puts(s);
	free(s);
	return 0;
}

/* --profile's tables: a decode step and a prompt token split by phase. */
static void print_profile(const bench_args_t *a, const result_t *res)
{
	printf("\nwhere the time goes (the repetition with the median decode step; phases timed\n"
	       "around each call in model_forward, both threads' work inside them):\n");
	printf("%-22s", "decode, ms per step");
	for (int bi = 0; bi < a->n_batch; bi++)
		printf("  %6s %-5d", "batch", res[bi].batch);
	printf("\n");
	for (int p = 0; p <= MODEL_N_PHASES + 1; p++) {
		printf("  %-20s", p < MODEL_N_PHASES ? model_phase_name(p) : p == MODEL_N_PHASES ? "engine" : "step");
		for (int bi = 0; bi < a->n_batch; bi++) {
			const result_t *o = &res[bi];
			double ms = p < MODEL_N_PHASES ? o->decode_ph_ms[p]
				  : p == MODEL_N_PHASES ? o->decode_engine_ms : o->decode_step_ms;
			printf("  %7.2f %3.0f%%", ms, o->decode_step_ms > 0 ? 100.0 * ms / o->decode_step_ms : 0.0);
		}
		printf("\n");
	}
	printf("%-22s", "prefill, us per token");
	printf("\n");
	for (int p = 0; p <= MODEL_N_PHASES; p++) {
		printf("  %-20s", p < MODEL_N_PHASES ? model_phase_name(p) : "all (wall)");
		for (int bi = 0; bi < a->n_batch; bi++) {
			const result_t *o = &res[bi];
			double us = p < MODEL_N_PHASES ? o->prefill_ph_us[p] : o->prefill_us;
			printf("  %7.1f %3.0f%%", us, o->prefill_us > 0 ? 100.0 * us / o->prefill_us : 0.0);
		}
		printf("\n");
	}
}

/* The report as text: the machine, the model, the ceilings, a row per
 * batch size, the embeddings, the warnings. */
static void print_text(const bench_args_t *a, const calib_t *cal, bool measured, const char *cal_path,
		       const char *name, const model_config_t *full_cfg, int L, bool scaled, const bench_model_t *bm,
		       const result_t *res)
{
	const model_config_t full = *full_cfg;
	const engine_opts_t *eo = engine_opts(bm[0].e);
	double kv_full = (double)engine_kv_bytes(bm[0].e) / bm[0].layers * L;
	double params_full = (double)model_config_n_params(&full);
	double ppt_full = (double)model_config_n_params_per_token(&full);
	print_machine(cal, measured, cal_path);
	printf("model: %s (%s), %.1fM parameters, %.1fM read per token, %d layers\n", name, full.arch_name,
	       params_full / 1e6, ppt_full / 1e6, L);
	if (scaled)
		printf("       (scaled from %d of %d layers: measured with %d and %d layers back to back,\n"
		       "        extrapolated linearly in the layer count)\n",
		       bm[0].layers, L, bm[0].layers, bm[1].layers);
	bool ints = integer_matrices(bm[0].m, a->weights);
	if (ints && a->arith == MODEL_ARITH_FAST)
		printf("arith: fast (Q5_0, Q8_0, IQ4_NL, Q4_K, Q5_K and Q6_K blocks summed whole: not llama.cpp's bits)\n");
	double peak = compute_peak(cal, bm[0].m, a->weights), step_bytes = 4.0 * model_matrix_bytes_ratio(bm[0].m) * ppt_full;
	printf("ceilings: %.0f tok/s at the %s peak (2 x %.1fM %s per token); batch 1: %.1f tok/s at the read\n"
	       "          bandwidth (%.0f MB of weights per step)\n",
	       peak * 1e9 / (2.0 * ppt_full), ints ? "int8 dot-product" : "f32 FMA", ppt_full / 1e6, ints ? "ops" : "FLOP",
	       cal->bandwidth_gbs * 1e9 / step_bytes, step_bytes / 1e6);
	printf("prompt %d, gen %d, prefill chunk %d, %d threads, medians of %d reps\n", a->prompt_len, a->gen_len,
	       a->prefill_chunk, a->threads, a->reps);
	printf("KV cache: %d slots x %d positions of %s = %.0f MB reserved%s (pages count in RSS once filled)\n\n",
	       a->slots, eo->n_ctx, eo->kv_type, kv_full / 1e6, scaled ? " for the whole model" : "");
	printf("%6s %14s %9s %13s %7s %9s %9s %10s %8s %12s\n", "batch", "prefill tok/s", "roofline", "decode tok/s",
	       "spread", "GFLOP/s", "roofline", "bandwidth", "engine", "peak RSS MB");
	for (int bi = 0; bi < a->n_batch; bi++) {
		const result_t *o = &res[bi];
		printf("%6d %14.1f %8.1f%% %13.1f %6.0f%% %9.1f %8.1f%% %9.1f%% %7.2f%% %12.0f%s\n", o->batch,
		       o->prefill_tok_s, o->prefill_roofline_pct, o->decode_tok_s, o->spread_pct, o->gflops,
		       o->roofline_pct, o->bandwidth_pct, o->engine_pct, o->peak_rss_mb, o->implausible ? "  !" : "");
		print_over_notes(o, cal, measured, step_bytes, ints);
	}
	printf("\nspread: (max - min) / median of decode tok/s over the reps; a large one means a disturbed machine\n");
	if (a->profile)
		print_profile(a, res);
	if (a->embed) {
		printf("\nembeddings: B inputs of %d tokens at once, prefilled in the same steps and pooled\n"
		       "(%s pooling, no output head), beside the prefill pass of the same B prompts\n",
		       a->prompt_len, engine_opts(bm[0].e)->pooling);
		printf("%6s %13s %13s %14s %7s\n", "batch", "embeddings/s", "embed tok/s", "prefill tok/s", "ratio");
		int best = 0;
		for (int bi = 0; bi < a->n_batch; bi++) {
			const result_t *o = &res[bi];
			double tok = o->embed_s * a->prompt_len;
			printf("%6d %13.2f %13.1f %14.1f %6.2fx\n", o->batch, o->embed_s, tok, o->prefill_tok_s,
			       tok / o->prefill_tok_s);
			if (o->embed_s > res[best].embed_s)
				best = bi;
		}
		printf("best batch %d: %.2f embeddings/s of %d tokens (%.1f tok/s; prefill %.1f tok/s at that batch)\n",
		       res[best].batch, res[best].embed_s, a->prompt_len, res[best].embed_s * a->prompt_len,
		       res[best].prefill_tok_s);
	}
	if (scaled)
		printf("(scaled from %d of %d layers; peak RSS is this process's, holding the %d- and %d-layer models)\n",
		       bm[0].layers, L, bm[0].layers, bm[1].layers);
	for (int bi = 0; bi < a->n_batch; bi++)
		if (res[bi].implausible > 0)
			printf("! batch %d: in %d of %d repetitions the %d-layer model was not slower than the %d-layer one:\n"
			       "  the machine was disturbed and the scaled figures of this row are not reliable\n",
			       res[bi].batch, res[bi].implausible, a->reps, bm[1].layers, bm[0].layers);
}

/* The measurements and the report; the exit status. */
static int bench_run(const bench_args_t *args)
{
	bench_args_t a = *args;
	int rc;
	char err[512] = "";
	int status = 1;

	/* The layer counts to run: all, or K and min(2K, L). */
	int L = 0, n_models = 1, k2 = 0;
	model_config_t full = { 0 };
	if (a.arch != NULL) {
		const synth_preset_t *pr = synth_preset_find(a.arch);
		if (pr == NULL) {
			fprintf(stderr, "margin-worker bench: unknown preset '%s'\n", a.arch);
			return 2;
		}
		full = pr->cfg;
		L = full.n_layers;
		if (a.layers > 0 && a.layers < L) {
			k2 = 2 * a.layers < L ? 2 * a.layers : L;
			n_models = 2;
		}
	}

	/* The machine first, in a child process: its buffers must not count
	 * in this process's peak RSS. */
	calib_t cal;
	bool measured = false;
	char def_path[PATH_MAX];
	const char *cal_path = a.calib_path;
	if (cal_path == NULL && calib_default_path(a.threads, def_path, sizeof(def_path)) == 0)
		cal_path = def_path;
	rc = calib_get(cal_path, a.threads, a.recalibrate, &cal, &measured, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "margin-worker bench: %s\n", err);
		return 1;
	}
	if (cal.unreliable)
		fprintf(stderr, "margin-worker bench: the calibration's repetitions spread %.1f%% (above %.0f%%) in "
			"%d tries: the machine is busy; the ceilings are unreliable and were not saved\n",
			cal.spread_pct, CALIB_MAX_SPREAD_PCT, cal.tries);
	if (a.calibrate_only) {
		if (!a.json) {
			print_machine(&cal, measured, cal_path);
			return 0;
		}
		json_t *j = json_pack("{s:o}", "machine", machine_json(&cal, measured));
		char *s = j ? json_dumps(j, JSON_REAL_PRECISION(6)) : NULL;
		json_decref(j);
		if (s == NULL) {
			fprintf(stderr, "margin-worker bench: out of memory for the JSON output\n");
			return 1;
		}
		puts(s);
		free(s);
		return 0;
	}

	bench_model_t bm[2] = { 0 };
	result_t res[MAX_B] = { 0 };
	for (int mi = 0; mi < n_models; mi++) {
		int override = n_models == 2 ? (mi == 0 ? a.layers : k2) : 0;
		if (override == L)
			override = 0;
		if ((rc = open_model(&bm[mi], &a, override, err, sizeof(err))) < 0) {
			fprintf(stderr, "margin-worker bench: %s\n", err);
			goto out;
		}
	}
	if (a.arch == NULL) {
		full = *model_config(bm[0].m);
		L = full.n_layers;
	}
	if (a.embed && engine_embed_dims(bm[0].e) == 0) {
		fprintf(stderr, "margin-worker bench: --embed: %s\n", engine_embed_why(bm[0].e));
		goto out;
	}
	bool scaled = n_models == 2;
	/* KV is all per layer: the whole model's is exactly L/K times */
	const engine_opts_t *eo = engine_opts(bm[0].e);
	double kv_full = (double)engine_kv_bytes(bm[0].e) / bm[0].layers * L;
	/* Whole-model counts from the configuration: nothing extrapolated. */
	double params_full = (double)model_config_n_params(&full);
	double ppt_full = (double)model_config_n_params_per_token(&full);
	const char *name = a.arch ? a.arch : full.name;

	if ((rc = run_all(bm, n_models, L, &a, &cal, ppt_full, res, err, sizeof(err))) < 0) {
		fprintf(stderr, "margin-worker bench: %s\n", err);
		goto out;
	}
	if (a.json) {
		if (print_json(&a, &cal, measured, name, &full, params_full, ppt_full, bm[0].layers, L, scaled,
			       eo->n_ctx, eo->kv_type, kv_full, integer_matrices(bm[0].m, a.weights), res) < 0) {
			fprintf(stderr, "margin-worker bench: out of memory for the JSON output\n");
			goto out;
		}
		status = 0;
		goto out;
	}
	print_text(&a, &cal, measured, cal_path, name, &full, L, scaled, bm, res);
	status = 0;
out:
	for (int mi = 0; mi < 2; mi++)
		close_model(&bm[mi]);
	return status;
}

int cmd_bench(int argc, char **argv)
{
	bench_args_t a;
	mg_config_t *args = mg_config_new();
	int rc = args ? parse_args(argc, argv, args, &a) : -ENOMEM;
	if (rc == -ENOMEM)
		fprintf(stderr, "margin-worker bench: out of memory\n");
	if (rc == -EINVAL)
		usage(stderr);
	int status = rc == 0 ? bench_run(&a) : rc == 1 ? 0 : rc == -EINVAL ? 2 : 1;
	mg_config_destroy(&args);
	return status;
}
