/* margin-worker run: generate text from one prompt with a GGUF model or a
 * synthetic preset, on the engine (engine.h) with one slot: the prompt is
 * prefilled in chunks, then tokens are sampled one step at a time (greedy
 * unless --temp) with the request's own seeded generator (sampler.h), as
 * for a batch request. The text is printed once generation ends.
 *
 *   --json prints {"prompt_ids":[...],"output_ids":[...],"text":"..."}:
 *   prompt_ids as fed (BOS when the vocabulary asks for it), output_ids the
 *   generated ids (an end-of-generation token that stopped it included),
 *   text the generated text only. */
#include "cmds.h"
#include "lib/mg_settings.h"
#include "lib/mg_cpu.h"
#include "lib/mg_clock.h"
#include "engine.h"
#include "lib/mg_utf8.h"
#include "model.h"
#include "synth.h"
#include "tok.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PREFILL_CHUNK 128

static json_t *ids_json(const int32_t *ids, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; a != NULL && i < n; i++)
		json_array_append_new(a, json_integer(ids[i]));
	return a;
}

typedef struct run_args {
	const char *model_path, *arch, *prompt;	/* borrowed from cfg */
	const char *temp_s, *top_p_s, *seed_s, *kv, *weights, *arith;	/* borrowed from cfg */
	int64_t n_gen, layers, threads, top_k;
	uint64_t seed;
	float temp, top_p;
	bool ignore_eos, json, stats;
	model_opts_t mo;
	model_kv_type_t kvt;
	mg_config_t *cfg;	/* owned: the flags' values */
} run_args_t;

#define SEC "run"
#define A(field) MG_SETTING_AT(run_args_t, field)
static const mg_setting_t settings[] = {
	{ .flag = "model", .section = SEC, .key = "model", .arg = "FILE", .help = "a GGUF model (llama, qwen2)",
	  A(model_path) },
	{ .flag = "arch", .section = SEC, .key = "arch", .arg = "PRESET",
	  .help = "a synthetic model (tiny, llama-110m, qwen2-0.5b, ...)", A(arch) },
	{ .flag = "layers", .section = SEC, .key = "layers", .type = MG_SETTING_INT, .lo = 1, .hi = 1024, .arg = "K",
	  .help = "build only K layers of the preset", A(layers) },
	{ .flag = "prompt", .section = SEC, .key = "prompt", .arg = "TEXT", .help = "the prompt", A(prompt) },
	{ .short_flag = 'n', .section = SEC, .key = "n", .type = MG_SETTING_INT, .lo = 0, .hi = 1 << 24, .def = "64",
	  .arg = "N", .help = "tokens to generate at most", A(n_gen) },
	{ .flag = "temp", .section = SEC, .key = "temp", .arg = "T", .help = "sampling temperature, 0 to 100 (0: greedy)",
	  A(temp_s) },
	{ .flag = "top-p", .section = SEC, .key = "top_p", .arg = "P", .help = "nucleus sampling, 0 to 1 (default 1)",
	  A(top_p_s) },
	{ .flag = "top-k", .section = SEC, .key = "top_k", .type = MG_SETTING_INT, .lo = 0, .hi = 1 << 24, .arg = "K",
	  .help = "sample among the K likeliest (0: all)", A(top_k) },
	{ .flag = "seed", .section = SEC, .key = "seed", .arg = "S", .help = "the sampler's seed (reproducible)",
	  A(seed_s) },
	{ .flag = "threads", .section = SEC, .key = "threads", .type = MG_SETTING_INT, .lo = 1, .hi = 1024, .arg = "N",
	  .help = "compute threads (default: online cores)", A(threads) },
	{ .flag = "kv", .section = SEC, .key = "kv", .arg = "TYPE",
	  .help = "KV cache type: f32, f16 or q8_0 (default " MODEL_KV_DEFAULT ")", A(kv) },
	{ .flag = "weights", .section = SEC, .key = "weights", .arg = "TYPE",
	  .help = "matrices: auto (a file's quantized tensors stay as they are,\n"
		  "multiplied as llama.cpp does; the rest f32), f32, q8_0-panels\n"
		  "(Q8 widened exactly), or a mix quantized at load (q8_0, q4_k_m, ...)", A(weights) },
	{ .flag = "arith", .section = SEC, .key = "arith", .arg = "ORDER",
	  .help = "quantized kernels' float order: llama (default: llama.cpp's\n"
		  "logits bit for bit) or fast (Q5_0, Q8_0, IQ4_NL, Q4_K, Q5_K,\n"
		  "Q6_K blocks summed whole: other bits, faster at batch 8+)", A(arith) },
	{ .flag = "ignore-eos", .section = SEC, .key = "ignore_eos", .type = MG_SETTING_BOOL, .set = "yes",
	  .help = "keep generating past end-of-generation tokens", A(ignore_eos) },
	{ .flag = "blas", .section = SEC, .key = "blas", .type = MG_SETTING_BOOL, .set = "yes",
	  .help = "OpenBLAS kernels: faster on some shapes, NOT batch-invariant", A(mo.blas) },
	{ .flag = "json", .section = SEC, .key = "json", .type = MG_SETTING_BOOL, .set = "yes",
	  .help = "print {\"prompt_ids\":[..],\"output_ids\":[..],\"text\":\"..\"}", A(json) },
	{ .flag = "stats", .section = SEC, .key = "stats", .type = MG_SETTING_BOOL, .set = "yes",
	  .help = "print prefill/decode throughput on stderr", A(stats) },
};

static const mg_settings_spec_t spec = {
	.prog = "margin-worker run",
	.synopsis = "(--model FILE.gguf | --arch PRESET [--layers K]) --prompt TEXT\n"
		    "                         [-n N] [--temp T] [--top-p P] [--top-k K] [--seed S]\n"
		    "                         [--threads N] [--kv TYPE] [--weights TYPE] [--arith ORDER] [--ignore-eos] [--blas]\n"
		    "                         [--json] [--stats]\n",
	.intro = "Generate up to N tokens (default 64) after TEXT; greedy unless --temp > 0.\n",
	.no_config = true,
	.settings = settings,
	.n = sizeof(settings) / sizeof(settings[0]),
};

static int parse_float(const char *s, float lo, float hi, float *ret)
{
	char *end;
	errno = 0;
	float v = strtof(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !(v >= lo && v <= hi))
		return -EINVAL;
	*ret = v;
	return 0;
}

/* The values that the table keeps as text: -EINVAL naming the flag. */
static int parse_values(run_args_t *a)
{
	const char *bad = NULL, *v = NULL;
	char *end;
	if (a->temp_s != NULL && parse_float(v = a->temp_s, 0.0f, 100.0f, &a->temp) < 0)
		bad = "temp";
	else if (a->top_p_s != NULL && parse_float(v = a->top_p_s, 0.0f, 1.0f, &a->top_p) < 0)
		bad = "top-p";
	else if (a->seed_s != NULL) {
		errno = 0;
		a->seed = strtoull(v = a->seed_s, &end, 10);
		if (errno != 0 || end == a->seed_s || *end != '\0')
			bad = "seed";
	}
	if (bad == NULL && a->kv != NULL && model_kv_type_parse(v = a->kv, &a->kvt) < 0)
		bad = "kv";
	else if (bad == NULL && a->weights != NULL && model_weights_parse(v = a->weights, &a->mo.weights) < 0)
		bad = "weights";
	else if (bad == NULL && a->arith != NULL && model_arith_parse(v = a->arith, &a->mo.arith) < 0)
		bad = "arith";
	if (bad == NULL)
		return 0;
	fprintf(stderr, "margin-worker run: bad value '%s' for --%s\n", v, bad);
	return -EINVAL;
}

/* The flags into a (strings borrowed from a->cfg, which the caller
 * destroys). 0; 1 after --help (exit 0); 2 for bad usage, said. */
static int parse_args(int argc, char **argv, run_args_t *a)
{
	*a = (run_args_t){ .threads = mg_cpu_count(), .top_p = 1.0f, .cfg = mg_config_new() };
	if (a->threads < 1)
		a->threads = 1;
	if (a->cfg == NULL || model_kv_type_parse(MODEL_KV_DEFAULT, &a->kvt) < 0)
		return 2;
	int rc = mg_settings_parse_into(&spec, a->cfg, argc, argv, a);
	if (rc != 0)
		return rc == 1 ? 1 : 2;
	if (parse_values(a) < 0)
		return 2;
	if ((a->model_path == NULL) == (a->arch == NULL) || a->prompt == NULL) {
		fprintf(stderr, "margin-worker run: give --prompt and one of --model or --arch\n");
		mg_settings_usage(&spec, stderr);
		return 2;
	}
	if (a->layers > 0 && a->arch == NULL) {
		fprintf(stderr, "margin-worker run: --layers applies to --arch presets only\n");
		return 2;
	}
	return 0;
}

/* The model, and the prompt's ids (BOS as the vocabulary asks); *n_gen
 * shrinks to what the context leaves. 0, or -1 with the reason said. */
static int build(const run_args_t *a, model_t **ret_m, int32_t **ret_ids, size_t *ret_n, int64_t *n_gen)
{
	char err[512];
	int rc = a->model_path != NULL ? model_load_opts(a->model_path, &a->mo, ret_m, err, sizeof(err))
				       : model_new_synth_opts(a->arch, (int)a->layers, &a->mo, ret_m, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "margin-worker run: %s\n", err);
		return -1;
	}
	const model_config_t *cfg = model_config(*ret_m);
	rc = tok_encode(model_tok(*ret_m), a->prompt, strlen(a->prompt), true, true, ret_ids, ret_n);
	if (rc < 0) {
		fprintf(stderr, "margin-worker run: cannot tokenize the prompt: %s\n", strerror(-rc));
		return -1;
	}
	if (*ret_n == 0) {
		fprintf(stderr, "margin-worker run: the prompt gives no tokens (and the vocabulary adds no BOS)\n");
		return -1;
	}
	if (*ret_n >= (size_t)cfg->n_ctx) {
		fprintf(stderr, "margin-worker run: the prompt has %zu tokens; the context holds %d\n",
			*ret_n, cfg->n_ctx);
		return -1;
	}
	if (*ret_n + (size_t)*n_gen > (size_t)cfg->n_ctx)
		*n_gen = cfg->n_ctx - (int64_t)*ret_n;	/* generation ends where the context does */
	return 0;
}

/* Prefill and decode on the engine: one slot whose context holds the
 * prompt and n_gen tokens (n_gen > 0), prompt chunks of PREFILL_CHUNK.
 * *ret (engine_out_free) on success; -1 with the reason said. The
 * prefill time runs to the first sampled token. */
static int generate(const run_args_t *a, const model_t *m, const int32_t *ids, size_t n, int64_t n_gen,
		    engine_out_t **ret, int64_t *ret_prefill_ns, int64_t *ret_decode_ns)
{
	char err[512];
	engine_t *e = NULL;
	engine_opts_t eo = { .slots = 1, .n_ctx = (int)n + (int)n_gen, .prefill_chunk = PREFILL_CHUNK,
			     .threads = (int)a->threads, .kv_type = model_kv_type_name(a->kvt) };
	int rc = engine_new(m, &eo, &e, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "margin-worker run: cannot allocate the KV cache (%zu bytes) or buffers: %s\n",
			model_kv_bytes(m, eo.n_ctx, a->kvt), err);
		return -1;
	}
	engine_req_t r = { .id = 1, .prompt_ids = ids, .n_prompt_ids = n, .max_tokens = (uint32_t)n_gen,
			   .temperature = a->temp, .top_p = a->top_p, .top_k = (uint32_t)a->top_k,
			   .seed = a->seed, .ignore_eos = a->ignore_eos };
	int64_t t0 = mg_clock_now_ns();
	if ((rc = engine_submit(e, &r)) < 0)
		goto fail;
	while (engine_pending(e) > 0)
		if ((rc = engine_step(e)) < 0)
			goto fail;
	int64_t t2 = mg_clock_now_ns();
	engine_out_t *o = engine_take(e);
	engine_destroy(&e);
	if (o == NULL || o->error < 0) {
		fprintf(stderr, "margin-worker run: %s\n", o ? o->error_msg : "the engine gave no result");
		engine_out_free(&o);
		return -1;
	}
	*ret_prefill_ns = (int64_t)(o->queue_ns + o->first_token_ns);
	*ret_decode_ns = t2 - t0 - *ret_prefill_ns;
	*ret = o;
	return 0;
fail:
	fprintf(stderr, "margin-worker run: forward failed: %s\n", strerror(-rc));
	engine_destroy(&e);
	return -1;
}

/* The text (as pieces, up to an end-of-generation token that stopped it)
 * or the JSON object. 0, or -1 with the reason said. */
static int print_result(const run_args_t *a, const tok_t *tok, const int32_t *prompt_ids, size_t n_prompt,
			const int32_t *out, size_t n_out)
{
	char piece[256];
	if (!a->json) {
		for (size_t g = 0; g < n_out; g++) {
			if (tok_is_eog(tok, out[g]) && !a->ignore_eos)
				break;
			int len = tok_piece(tok, out[g], false, piece, sizeof(piece));
			if (len > 0)
				fwrite(piece, 1, (size_t)len < sizeof(piece) ? (size_t)len : sizeof(piece), stdout);
		}
		printf("\n");
		return 0;
	}
	char *text = NULL, *clean = NULL, *dump = NULL;
	size_t text_len = 0;
	if (tok_decode(tok, out, n_out, false, &text, &text_len) < 0 ||
	    (clean = mg_utf8_clean(text, text_len, NULL)) == NULL) {
		fprintf(stderr, "margin-worker run: cannot decode the output\n");
		free(text);
		return -1;
	}
	json_t *o = json_object();
	json_object_set_new(o, "prompt_ids", ids_json(prompt_ids, n_prompt));
	json_object_set_new(o, "output_ids", ids_json(out, n_out));
	json_object_set_new(o, "text", json_string(clean));
	dump = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	free(clean);
	free(text);
	if (dump == NULL) {
		fprintf(stderr, "margin-worker run: cannot format the output\n");
		return -1;
	}
	printf("%s\n", dump);
	free(dump);
	return 0;
}

int cmd_run(int argc, char **argv)
{
	run_args_t a;
	int status = parse_args(argc, argv, &a);
	if (status != 0) {
		mg_config_destroy(&a.cfg);
		return status == 1 ? 0 : status;
	}
	status = 1;
	model_t *m = NULL;
	engine_out_t *o = NULL;
	int32_t *prompt_ids = NULL;
	size_t n_prompt = 0;
	int64_t n_gen = a.n_gen, pre_ns = 0, dec_ns = 0;
	if (build(&a, &m, &prompt_ids, &n_prompt, &n_gen) < 0)
		goto done;
	if (n_gen > 0 && generate(&a, m, prompt_ids, n_prompt, n_gen, &o, &pre_ns, &dec_ns) < 0)
		goto done;
	if (print_result(&a, model_tok(m), prompt_ids, n_prompt, o ? o->ids : NULL, o ? o->n_ids : 0) < 0)
		goto done;
	if (a.stats) {
		double pre = (double)pre_ns / 1e9, dec = (double)dec_ns / 1e9;
		size_t n_out = o ? o->n_ids : 0;
		/* the last sampled token needs no forward */
		size_t steps = n_out > 0 ? n_out - 1 : 0;
		fprintf(stderr, "prompt %zu tokens in %.3f s (%.1f tok/s), %zu generated in %.3f s "
			"(%.1f tok/s), threads %" PRId64 ", kernels %s, kv %s\n", n_prompt, pre,
			pre > 0 ? (double)n_prompt / pre : 0.0, n_out, dec, dec > 0 ? (double)steps / dec : 0.0,
			a.threads, model_uses_blas(m) ? "openblas" : "packed", model_kv_type_name(a.kvt));
	}
	status = fflush(stdout) == 0 ? 0 : 1;
done:
	engine_out_free(&o);
	free(prompt_ids);
	model_destroy(&m);
	mg_config_destroy(&a.cfg);
	return status;
}
