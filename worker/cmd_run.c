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
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PREFILL_CHUNK 128

static void usage(FILE *f)
{
	fprintf(f,
		"usage: margin-worker run (--model FILE.gguf | --arch PRESET [--layers K]) --prompt TEXT\n"
		"                         [-n N] [--temp T] [--top-p P] [--top-k K] [--seed S]\n"
		"                         [--threads N] [--kv TYPE] [--weights TYPE] [--ignore-eos] [--blas]\n"
		"                         [--json] [--stats]\n\n"
		"Generate up to N tokens (default 64) after TEXT; greedy unless --temp > 0.\n\n"
		"  --model FILE     a GGUF model (llama, qwen2)\n"
		"  --arch PRESET    a synthetic model (tiny, llama-110m, qwen2-0.5b, ...)\n"
		"  --layers K       build only K layers of the preset\n"
		"  --temp T --top-p P --top-k K --seed S   sampling (seeded, reproducible)\n"
		"  --threads N      compute threads (default: online cores)\n"
		"  --kv TYPE        KV cache type: f32, f16 or q8_0 (default " MODEL_KV_DEFAULT ")\n"
		"  --weights TYPE   matrices: auto (a file's quantized tensors stay as they are,\n"
		"                   multiplied as llama.cpp does; the rest f32), f32, q8_0-panels\n"
		"                   (Q8 widened exactly), or a mix quantized at load (q8_0, q4_k_m, ...)\n"
		"  --ignore-eos     keep generating past end-of-generation tokens\n"
		"  --blas           OpenBLAS kernels: faster on some shapes, NOT batch-invariant\n"
		"  --json           print {\"prompt_ids\":[..],\"output_ids\":[..],\"text\":\"..\"}\n"
		"  --stats          print prefill/decode throughput on stderr\n");
}

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

static json_t *ids_json(const int32_t *ids, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; a != NULL && i < n; i++)
		json_array_append_new(a, json_integer(ids[i]));
	return a;
}

typedef struct run_args {
	const char *model_path, *arch, *prompt;	/* borrowed from argv */
	int64_t n_gen, layers, threads, top_k;
	uint64_t seed;
	float temp, top_p;
	bool ignore_eos, json, stats;
	model_opts_t mo;
	model_kv_type_t kvt;
} run_args_t;

/* The flags into a. 0; 1 after --help (exit 0); 2 for bad usage, said. */
static int parse_args(int argc, char **argv, run_args_t *a)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "arch", required_argument, NULL, 'a' },
		{ "layers", required_argument, NULL, 'L' },
		{ "prompt", required_argument, NULL, 'p' },
		{ "temp", required_argument, NULL, 'T' },
		{ "top-p", required_argument, NULL, 'P' },
		{ "top-k", required_argument, NULL, 'K' },
		{ "seed", required_argument, NULL, 'S' },
		{ "threads", required_argument, NULL, 't' },
		{ "ignore-eos", no_argument, NULL, 'E' },
		{ "blas", no_argument, NULL, 'B' },
		{ "kv", required_argument, NULL, 'k' },
		{ "weights", required_argument, NULL, 'W' },
		{ "json", no_argument, NULL, 'j' },
		{ "stats", no_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	*a = (run_args_t){ .n_gen = 64, .threads = mg_cpu_count(), .top_p = 1.0f };
	if (model_kv_type_parse(MODEL_KV_DEFAULT, &a->kvt) < 0)
		return 2;
	if (a->threads < 1)
		a->threads = 1;
	optind = 1;
	int c, li = -1;
	while ((c = getopt_long(argc, argv, "n:h", opts, &li)) != -1) {
		int bad = 0;
		switch (c) {
		case 'm': a->model_path = optarg; break;
		case 'a': a->arch = optarg; break;
		case 'p': a->prompt = optarg; break;
		case 'E': a->ignore_eos = true; break;
		case 'B': a->mo.blas = true; break;
		case 'k': bad = model_kv_type_parse(optarg, &a->kvt); break;
		case 'W': bad = model_weights_parse(optarg, &a->mo.weights); break;
		case 'j': a->json = true; break;
		case 's': a->stats = true; break;
		case 'h': usage(stdout); return 1;
		case 'n': bad = mg_settings_parse_int(optarg, 0, 1 << 24, &a->n_gen); break;
		case 'L': bad = mg_settings_parse_int(optarg, 1, 1024, &a->layers); break;
		case 't': bad = mg_settings_parse_int(optarg, 1, 1024, &a->threads); break;
		case 'K': bad = mg_settings_parse_int(optarg, 0, 1 << 24, &a->top_k); break;
		case 'S': {
			char *end;
			errno = 0;
			a->seed = strtoull(optarg, &end, 10);
			bad = errno != 0 || end == optarg || *end != '\0' ? -EINVAL : 0;
			break;
		}
		case 'T': bad = parse_float(optarg, 0.0f, 100.0f, &a->temp); break;
		case 'P': bad = parse_float(optarg, 0.0f, 1.0f, &a->top_p); break;
		default:
			usage(stderr);
			return 2;
		}
		if (bad < 0) {
			if (c == 'n')
				fprintf(stderr, "margin-worker run: bad value '%s' for -n\n", optarg);
			else
				fprintf(stderr, "margin-worker run: bad value '%s' for --%s\n", optarg,
					li >= 0 ? opts[li].name : "?");
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "margin-worker run: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if ((a->model_path == NULL) == (a->arch == NULL) || a->prompt == NULL) {
		fprintf(stderr, "margin-worker run: give --prompt and one of --model or --arch\n");
		usage(stderr);
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
	if (status != 0)
		return status == 1 ? 0 : status;
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
	return status;
}
