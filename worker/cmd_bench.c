/* margin-worker bench: prefill and decode throughput of the batched engine
 * against this machine's ceilings (calib.h).
 *
 * Method, per batch size B and repetition:
 *   prefill  B requests of prompt-len random token ids, max_tokens 1, all
 *            submitted at once; tokens/s = B x prompt-len / the summed wall
 *            time of the engine steps (the one sampled token included).
 *   decode   B requests of prompt-len ids generating together; only steps in
 *            which all B sequences decode and none prefills are timed, and
 *            the run stops after gen-len such steps. tokens/s = B x steps /
 *            their wall time; GFLOP/s = the engine's FLOP count of those
 *            steps / their wall time.
 * Medians over --reps repetitions (after one untimed prefill pass).
 *
 *   roofline_pct   tokens/s over sgemm GFLOP/s / (2 x params per token)
 *   bandwidth_pct  bytes of weights streamed per second (one pass per step:
 *                  decode tokens/s / B x 4 x params per token) over the
 *                  read bandwidth; at B = 1 this is the batch-1 bound.
 *
 * --layers K (synthetic presets): builds K layers and then 2K (or all L)
 * and extrapolates every time per token/step linearly in the number of
 * layers to L: each layer of a shape costs the same, and what does not
 * scale (embedding, output head, sampling, engine) is in both measurements
 * as it is. */
#include "cmds.h"

#include "calib.h"
#include "engine.h"
#include "mg_clock.h"
#include "model.h"
#include "sampler.h"
#include "synth.h"

#include <errno.h>
#include <getopt.h>
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
	bool json;
	const char *calib_path;
	bool recalibrate;
} bench_args_t;

/* One measurement (medians over reps) of one model at one batch size. */
typedef struct fig {
	double prefill_s_per_tok;	/* wall seconds per prompt token */
	double decode_s_per_step;	/* wall seconds per decode step of B tokens */
	double decode_flops_per_step;	/* engine FLOPs of one such step */
	double prefill_flops_per_tok;
} fig_t;

static void usage(FILE *f)
{
	fprintf(f,
		"usage: margin-worker bench (--model FILE.gguf | --arch PRESET) [--layers K]\n"
		"       [--batch 1,8,32] [--prompt-len 128] [--gen-len 64] [--threads N]\n"
		"       [--slots N] [--reps 3] [--prefill-chunk N] [--calib FILE] [--recalibrate] [--json]\n\n"
		"Measure prefill and decode throughput of the batched engine and compare them\n"
		"with this machine's sgemm and memory-bandwidth ceilings (measured once and\n"
		"cached, see --calib). Figures are medians over --reps repetitions.\n\n"
		"  --model FILE      a GGUF model\n"
		"  --arch PRESET     a synthetic model (llama-110m, qwen2-0.5b, llama2-7b, ...)\n"
		"  --layers K        build only K layers of the preset (and 2K) and scale the\n"
		"                    per-token figures to the whole model\n"
		"  --batch LIST      batch sizes, comma-separated (default 1,8,32)\n"
		"  --prompt-len N    prompt tokens per sequence (default 128)\n"
		"  --gen-len N       decode steps timed per sequence (default 64)\n"
		"  --threads N       compute threads (default: online cores)\n"
		"  --slots N         engine slots (default: the largest batch)\n"
		"  --reps R          repetitions per figure (default 3)\n"
		"  --prefill-chunk N prompt tokens per sequence per step (default min(prompt-len, 256))\n"
		"  --calib FILE      calibration file (default $XDG_CACHE_HOME/margin/calib-<threads>.json)\n"
		"  --recalibrate     measure the machine again even if the file exists\n"
		"  --json            one JSON object (DESIGN.md \"Machine-readable outputs\")\n"
		"  --help            this text\n");
}

static int parse_int(const char *s, int lo, int hi, int *ret)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
		return -EINVAL;
	*ret = (int)v;
	return 0;
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

static int parse_args(int argc, char **argv, bench_args_t *a)
{
	enum { O_MODEL = 1, O_ARCH, O_LAYERS, O_BATCH, O_PLEN, O_GLEN, O_THREADS, O_SLOTS, O_REPS,
	       O_CHUNK, O_CALIB, O_RECAL, O_JSON, O_HELP };
	static const struct option opts[] = {
		{ "model", required_argument, NULL, O_MODEL },
		{ "arch", required_argument, NULL, O_ARCH },
		{ "layers", required_argument, NULL, O_LAYERS },
		{ "batch", required_argument, NULL, O_BATCH },
		{ "prompt-len", required_argument, NULL, O_PLEN },
		{ "gen-len", required_argument, NULL, O_GLEN },
		{ "threads", required_argument, NULL, O_THREADS },
		{ "slots", required_argument, NULL, O_SLOTS },
		{ "reps", required_argument, NULL, O_REPS },
		{ "prefill-chunk", required_argument, NULL, O_CHUNK },
		{ "calib", required_argument, NULL, O_CALIB },
		{ "recalibrate", no_argument, NULL, O_RECAL },
		{ "json", no_argument, NULL, O_JSON },
		{ "help", no_argument, NULL, O_HELP },
		{ NULL, 0, NULL, 0 },
	};
	*a = (bench_args_t){ .batch = { 1, 8, 32 }, .n_batch = 3, .prompt_len = 128, .gen_len = 64, .reps = 3 };
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	a->threads = ncpu > 0 ? (int)ncpu : 1;
	optind = 1;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		int rc = 0;
		switch (c) {
		case O_MODEL: a->model_path = optarg; break;
		case O_ARCH: a->arch = optarg; break;
		case O_LAYERS: rc = parse_int(optarg, 1, 1000, &a->layers); break;
		case O_BATCH: rc = parse_batches(optarg, a); break;
		case O_PLEN: rc = parse_int(optarg, 1, 1 << 20, &a->prompt_len); break;
		case O_GLEN: rc = parse_int(optarg, 1, 1 << 20, &a->gen_len); break;
		case O_THREADS: rc = parse_int(optarg, 1, 256, &a->threads); break;
		case O_SLOTS: rc = parse_int(optarg, 1, 4096, &a->slots); break;
		case O_REPS: rc = parse_int(optarg, 1, 1000, &a->reps); break;
		case O_CHUNK: rc = parse_int(optarg, 1, 1 << 16, &a->prefill_chunk); break;
		case O_CALIB: a->calib_path = optarg; break;
		case O_RECAL: a->recalibrate = true; break;
		case O_JSON: a->json = true; break;
		case O_HELP: usage(stdout); return 1;
		default:
			fprintf(stderr, "margin-worker bench: unknown option or missing value: %s\n",
				argv[optind - 1]);
			return -EINVAL;
		}
		if (rc < 0) {
			fprintf(stderr, "margin-worker bench: bad value '%s' for %s\n", optarg, argv[optind - 2 >= 0 ? optind - 2 : 0]);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "margin-worker bench: unexpected argument '%s'\n", argv[optind]);
		return -EINVAL;
	}
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

/* Submits B requests of prompt_len ids with max_tokens each. */
static int submit_b(engine_t *e, const int32_t *prompts, int B, int prompt_len, uint32_t max_tokens)
{
	for (int i = 0; i < B; i++) {
		engine_req_t r = { .id = (uint64_t)i, .prompt_ids = prompts + (size_t)i * (size_t)prompt_len,
				   .n_prompt_ids = (size_t)prompt_len, .max_tokens = max_tokens, .ignore_eos = true };
		int rc = engine_submit(e, &r);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int prefill_pass(engine_t *e, const int32_t *prompts, int B, int plen, double *ret_s, double *ret_flops)
{
	engine_stats_reset(e);
	int rc = submit_b(e, prompts, B, plen, 1);
	while (rc >= 0 && engine_pending(e) > 0)
		rc = engine_step(e);
	drain(e);
	if (rc < 0)
		return rc;
	engine_stats_t st;
	engine_get_stats(e, &st);
	*ret_s = (double)st.wall_ns / 1e9;
	*ret_flops = (double)st.flops;
	return 0;
}

/* gen_len steps in which all B sequences decode. */
static int decode_pass(engine_t *e, const int32_t *prompts, int B, int plen, int gen_len, uint32_t max_tokens,
		       double *ret_s, double *ret_flops, int *ret_steps)
{
	engine_stats_reset(e);
	int rc = submit_b(e, prompts, B, plen, max_tokens);
	engine_stats_t a, b;
	uint64_t wall = 0, flops = 0;
	int steps = 0;
	engine_get_stats(e, &a);
	while (rc >= 0 && steps < gen_len && engine_pending(e) > 0) {
		rc = engine_step(e);
		engine_get_stats(e, &b);
		if (rc == B && b.prefill_tokens == a.prefill_tokens && b.decode_tokens - a.decode_tokens == (uint64_t)B) {
			wall += b.wall_ns - a.wall_ns;
			flops += b.flops - a.flops;
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
	*ret_steps = steps;
	return 0;
}

/* Measures one model at every batch size: figs[n_batch]. */
static int measure_model(const model_t *m, const bench_args_t *a, fig_t *figs, double *rss, char *err, size_t errlen)
{
	int maxb = a->slots;
	/* A decode pass submits max_tokens = gen_len + the steps the prefill of
	 * B prompts may take, so that gen_len steps of all B remain after the
	 * last prompt is in. */
	int step_tokens = a->slots + a->prefill_chunk;
	int prefill_steps = (int)(((int64_t)maxb * a->prompt_len + (step_tokens - maxb) - 1) / (step_tokens - maxb)) + 1;
	uint32_t max_tokens = (uint32_t)(a->gen_len + prefill_steps + 1);
	engine_opts_t o = { .slots = a->slots, .n_ctx = a->prompt_len + (int)max_tokens + 1,
			    .prefill_chunk = a->prefill_chunk, .max_step_tokens = step_tokens,
			    .threads = a->threads };
	engine_t *e = NULL;
	int rc = engine_new(m, &o, &e, err, errlen);
	if (rc < 0)
		return rc;
	int vocab = model_config(m)->vocab_size;
	int32_t *prompts = malloc((size_t)maxb * (size_t)a->prompt_len * sizeof(*prompts));
	double *pre = malloc((size_t)a->reps * sizeof(double)), *dec = malloc((size_t)a->reps * sizeof(double));
	if (prompts == NULL || pre == NULL || dec == NULL) {
		rc = -ENOMEM;
		snprintf(err, errlen, "bench: out of memory for the prompts");
		goto out;
	}
	make_prompts(prompts, maxb * a->prompt_len, vocab, 42);
	for (int bi = 0; bi < a->n_batch; bi++) {
		int B = a->batch[bi];
		double s, f, pf = 0, df = 0;
		int steps = 0;
		/* untimed: first touch of the KV pages and activations */
		if ((rc = prefill_pass(e, prompts, B, a->prompt_len, &s, &f)) < 0)
			goto step_fail;
		for (int r = 0; r < a->reps; r++) {
			if ((rc = prefill_pass(e, prompts, B, a->prompt_len, &s, &pf)) < 0)
				goto step_fail;
			pre[r] = s / ((double)B * a->prompt_len);
			rc = decode_pass(e, prompts, B, a->prompt_len, a->gen_len, max_tokens, &s, &f, &steps);
			if (rc < 0)
				goto step_fail;
			dec[r] = s / steps;
			df = f / steps;
		}
		figs[bi].prefill_s_per_tok = median(pre, a->reps);
		figs[bi].decode_s_per_step = median(dec, a->reps);
		figs[bi].decode_flops_per_step = df;
		figs[bi].prefill_flops_per_tok = pf / ((double)B * a->prompt_len);
		rss[bi] = peak_rss_mb();
	}
	rc = 0;
	goto out;
step_fail:
	snprintf(err, errlen, "bench: an engine step failed: %s", strerror(-rc));
out:
	free(prompts);
	free(pre);
	free(dec);
	engine_destroy(&e);
	return rc;
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

int cmd_bench(int argc, char **argv)
{
	bench_args_t a;
	int rc = parse_args(argc, argv, &a);
	if (rc == 1)
		return 0;
	if (rc < 0) {
		usage(stderr);
		return 2;
	}
	char err[512] = "";

	/* The machine first, in a child process: its buffers must not count
	 * in this process's peak RSS. */
	calib_t cal;
	bool measured = false;
	rc = calib_get(a.calib_path, a.threads, a.recalibrate, &cal, &measured, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "margin-worker bench: %s\n", err);
		return 1;
	}

	/* The layer counts to run: all, or K and min(2K, L). */
	int L = 0, k[2] = { 0, 0 }, n_models = 1;
	if (a.arch != NULL) {
		const synth_preset_t *pr = synth_preset_find(a.arch);
		L = pr != NULL ? pr->cfg.n_layers : 0;
		if (L <= 0) {
			fprintf(stderr, "margin-worker bench: unknown preset '%s'\n", a.arch);
			return 2;
		}
		k[0] = a.layers > 0 && a.layers < L ? a.layers : L;
		if (k[0] < L) {
			k[1] = 2 * k[0] < L ? 2 * k[0] : L;
			n_models = 2;
		}
	}
	fig_t figs[2][MAX_B];
	double rss[MAX_B] = { 0 }, rss1[MAX_B];
	uint64_t n_params[2] = { 0 }, ppt[2] = { 0 };
	model_config_t cfg = { 0 };
	for (int mi = 0; mi < n_models; mi++) {
		model_t *m = NULL;
		if (a.arch != NULL)
			rc = model_new_synth(a.arch, k[mi] < L ? k[mi] : 0, &m, err, sizeof(err));
		else
			rc = model_load(a.model_path, &m, err, sizeof(err));
		if (rc < 0) {
			fprintf(stderr, "margin-worker bench: %s\n", err);
			return 1;
		}
		if (mi == 0)
			cfg = *model_config(m);
		if (a.arch == NULL)
			L = k[0] = model_config(m)->n_layers;
		n_params[mi] = model_n_params(m);
		ppt[mi] = model_n_params_per_token(m);
		rc = measure_model(m, &a, figs[mi], rss1, err, sizeof(err));
		model_destroy(&m);
		if (rc < 0) {
			fprintf(stderr, "margin-worker bench: %s\n", err);
			return 1;
		}
		for (int bi = 0; bi < a.n_batch; bi++)
			if (rss1[bi] > rss[bi])
				rss[bi] = rss1[bi];
	}
	bool scaled = n_models == 2;
	/* whole-model parameter counts: linear in the layers, exactly */
	double params_full = (double)n_params[0], ppt_full = (double)ppt[0];
	if (scaled) {
		params_full = extrapolate((double)n_params[0], (double)n_params[1], k[0], k[1], L);
		ppt_full = extrapolate((double)ppt[0], (double)ppt[1], k[0], k[1], L);
	}

	json_t *runs = json_array();
	double roof_tok_s = cal.sgemm_gflops * 1e9 / (2.0 * ppt_full);
	double bw_steps_s = cal.bandwidth_gbs * 1e9 / (4.0 * ppt_full);
	if (!a.json) {
		printf("machine: sgemm %.1f GFLOP/s, read bandwidth %.1f GB/s, %d threads (%s)\n",
		       cal.sgemm_gflops, cal.bandwidth_gbs, cal.threads, measured ? "measured now" : "cached calibration");
		printf("model: %s (%s), %.1fM parameters, %.1fM per token, %d layers\n",
		       a.arch ? a.arch : cfg.name, cfg.arch_name, params_full / 1e6, ppt_full / 1e6, L);
		if (scaled)
			printf("       (scaled from %d of %d layers: measured with %d and %d layers, extrapolated per layer)\n",
			       k[0], L, k[0], k[1]);
		printf("ceilings: %.0f tok/s at sgemm peak (2 x %.1fM FLOP per token), %.1f steps/s at read bandwidth (%.0f MB per step)\n",
		       roof_tok_s, ppt_full / 1e6, bw_steps_s, 4.0 * ppt_full / 1e6);
		printf("prompt %d, gen %d, prefill chunk %d, %d slots, medians of %d reps\n\n",
		       a.prompt_len, a.gen_len, a.prefill_chunk, a.slots, a.reps);
		printf("%6s %14s %9s %13s %9s %9s %11s %11s\n", "batch", "prefill tok/s", "roofline", "decode tok/s",
		       "GFLOP/s", "roofline", "bandwidth", "peak RSS MB");
	}
	for (int bi = 0; bi < a.n_batch; bi++) {
		int B = a.batch[bi];
		fig_t f = figs[0][bi];
		if (scaled) {
			const fig_t *g = &figs[1][bi];
			f.prefill_s_per_tok = extrapolate(f.prefill_s_per_tok, g->prefill_s_per_tok, k[0], k[1], L);
			f.decode_s_per_step = extrapolate(f.decode_s_per_step, g->decode_s_per_step, k[0], k[1], L);
			f.decode_flops_per_step = extrapolate(f.decode_flops_per_step, g->decode_flops_per_step, k[0], k[1], L);
			f.prefill_flops_per_tok = extrapolate(f.prefill_flops_per_tok, g->prefill_flops_per_tok, k[0], k[1], L);
		}
		double prefill_tok_s = 1.0 / f.prefill_s_per_tok;
		double decode_tok_s = B / f.decode_s_per_step;
		double gflops = f.decode_flops_per_step / f.decode_s_per_step / 1e9;
		double prefill_gflops = f.prefill_flops_per_tok * prefill_tok_s / 1e9;
		double roof = 100.0 * decode_tok_s / roof_tok_s;
		double proof = 100.0 * prefill_tok_s / roof_tok_s;
		double bw = 100.0 * (decode_tok_s / B) / bw_steps_s;
		if (a.json) {
			json_array_append_new(runs, json_pack("{s:i, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f}",
				"batch", B, "prefill_tok_s", prefill_tok_s, "decode_tok_s", decode_tok_s,
				"gflops", gflops, "roofline_pct", roof, "bandwidth_pct", bw, "peak_rss_mb", rss[bi],
				"prefill_gflops", prefill_gflops, "prefill_roofline_pct", proof));
		} else {
			printf("%6d %14.1f %8.1f%% %13.1f %9.1f %8.1f%% %10.1f%% %11.0f\n", B, prefill_tok_s, proof,
			       decode_tok_s, gflops, roof, bw, rss[bi]);
		}
	}
	if (a.json) {
		json_t *root = json_pack("{s:{s:f, s:f, s:i, s:b}, s:{s:s, s:s, s:I, s:I, s:i, s:i, s:b}, "
					 "s:{s:i, s:i, s:i, s:i, s:i}, s:o}",
			"machine", "sgemm_gflops", cal.sgemm_gflops, "bandwidth_gbs", cal.bandwidth_gbs,
				"threads", cal.threads, "calibrated_now", measured,
			"model", "name", a.arch ? a.arch : cfg.name, "arch", cfg.arch_name,
				"n_params", (json_int_t)llround(params_full),
				"params_per_token", (json_int_t)llround(ppt_full),
				"layers_run", k[0], "n_layers", L, "scaled", scaled,
			"settings", "prompt_len", a.prompt_len, "gen_len", a.gen_len, "reps", a.reps,
				"slots", a.slots, "prefill_chunk", a.prefill_chunk,
			"runs", runs);
		if (root == NULL) {
			fprintf(stderr, "margin-worker bench: cannot build the JSON output\n");
			return 1;
		}
		char *s = json_dumps(root, JSON_REAL_PRECISION(6));
		json_decref(root);
		if (s == NULL)
			return 1;
		puts(s);
		free(s);
	} else {
		json_decref(runs);
		if (scaled)
			printf("\n(scaled from %d of %d layers; peak RSS is this process's, with %d layers built)\n",
			       k[0], L, k[1]);
	}
	return 0;
}
