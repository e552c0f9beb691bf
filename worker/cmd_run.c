/* margin-worker run: generate text from one prompt with a GGUF model or a
 * synthetic preset. The prompt is prefilled in chunks, then tokens are
 * sampled one step at a time (greedy unless --temp) with the request's own
 * seeded generator (sampler.h), as the engine does for a batch request.
 *
 *   --json prints {"prompt_ids":[...],"output_ids":[...],"text":"..."}:
 *   prompt_ids as fed (BOS when the vocabulary asks for it), output_ids the
 *   generated ids (an end-of-generation token that stopped it included),
 *   text the generated text only. */
#include "cmds.h"
#include "mg_settings.h"
#include "mg_cpu.h"
#include "mg_clock.h"
#include "model.h"
#include "sampler.h"
#include "tok.h"

#include <cblas.h>
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

/* Copy of s with invalid UTF-8 replaced by U+FFFD (JSON needs valid text). */
static char *utf8_clean(const char *s, size_t n)
{
	char *out = malloc(n * 3 + 1);
	if (out == NULL)
		return NULL;
	size_t o = 0;
	const unsigned char *p = (const unsigned char *)s;
	for (size_t i = 0; i < n;) {
		unsigned c = p[i];
		size_t len = c < 0x80 ? 1 : (c >= 0xc2 && c <= 0xdf) ? 2 : (c >= 0xe0 && c <= 0xef) ? 3 :
			     (c >= 0xf0 && c <= 0xf4) ? 4 : 0;
		bool ok = len > 0 && i + len <= n;
		for (size_t k = 1; ok && k < len; k++)
			ok = (p[i + k] & 0xc0) == 0x80;
		if (ok && len == 3) {
			unsigned cp = (c & 0x0f) << 12 | (p[i + 1] & 0x3f) << 6 | (p[i + 2] & 0x3f);
			ok = cp >= 0x800 && (cp < 0xd800 || cp > 0xdfff);
		} else if (ok && len == 4) {
			unsigned cp = (c & 0x07) << 18 | (p[i + 1] & 0x3f) << 12 | (p[i + 2] & 0x3f) << 6 |
				      (p[i + 3] & 0x3f);
			ok = cp >= 0x10000 && cp <= 0x10ffff;
		}
		if (ok) {
			memcpy(out + o, p + i, len);
			o += len;
			i += len;
		} else {
			memcpy(out + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		}
	}
	out[o] = '\0';
	return out;
}

static json_t *ids_json(const int32_t *ids, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; a != NULL && i < n; i++)
		json_array_append_new(a, json_integer(ids[i]));
	return a;
}

int cmd_run(int argc, char **argv)
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
	const char *model_path = NULL, *arch = NULL, *prompt = NULL;
	int64_t n_gen = 64, layers = 0, threads = mg_cpu_count(), top_k = 0;
	unsigned long long seed = 0;
	float temp = 0.0f, top_p = 1.0f;
	bool ignore_eos = false, json = false, stats = false;
	model_opts_t mo = { .blas = false };
	model_kv_type_t kvt;
	if (model_kv_type_parse(MODEL_KV_DEFAULT, &kvt) < 0)
		return 1;
	if (threads < 1)
		threads = 1;
	optind = 1;
	int c, li = -1;
	while ((c = getopt_long(argc, argv, "n:h", opts, &li)) != -1) {
		switch (c) {
		case 'm': model_path = optarg; break;
		case 'a': arch = optarg; break;
		case 'p': prompt = optarg; break;
		case 'E': ignore_eos = true; break;
		case 'B': mo.blas = true; break;
		case 'k':
			if (model_kv_type_parse(optarg, &kvt) < 0)
				goto bad_value;
			break;
		case 'W':
			if (model_weights_parse(optarg, &mo.weights) < 0)
				goto bad_value;
			break;
		case 'j': json = true; break;
		case 's': stats = true; break;
		case 'h': usage(stdout); return 0;
		case 'n':
			if (mg_settings_parse_int(optarg, 0, 1 << 24, &n_gen) < 0)
				goto bad_value;
			break;
		case 'L':
			if (mg_settings_parse_int(optarg, 1, 1024, &layers) < 0)
				goto bad_value;
			break;
		case 't':
			if (mg_settings_parse_int(optarg, 1, 1024, &threads) < 0)
				goto bad_value;
			break;
		case 'K':
			if (mg_settings_parse_int(optarg, 0, 1 << 24, &top_k) < 0)
				goto bad_value;
			break;
		case 'S': {
			char *end;
			errno = 0;
			seed = strtoull(optarg, &end, 10);
			if (errno != 0 || end == optarg || *end != '\0')
				goto bad_value;
			break;
		}
		case 'T':
			if (parse_float(optarg, 0.0f, 100.0f, &temp) < 0)
				goto bad_value;
			break;
		case 'P':
			if (parse_float(optarg, 0.0f, 1.0f, &top_p) < 0)
				goto bad_value;
			break;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "margin-worker run: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if ((model_path == NULL) == (arch == NULL) || prompt == NULL) {
		fprintf(stderr, "margin-worker run: give --prompt and one of --model or --arch\n");
		usage(stderr);
		return 2;
	}
	if (layers > 0 && arch == NULL) {
		fprintf(stderr, "margin-worker run: --layers applies to --arch presets only\n");
		return 2;
	}

	int status = 1, rc;
	char err[512];
	model_t *m = NULL;
	model_kv_t *kv = NULL;
	model_scratch_t *s = NULL;
	sampler_t *smp = NULL;
	int32_t *prompt_ids = NULL, *out = NULL, *pos = NULL;
	model_kv_t **kvs = NULL;
	float *logits = NULL;
	char *text = NULL, *clean = NULL, piece[256];
	size_t n_prompt = 0, n_out = 0, text_len = 0;

	openblas_set_num_threads((int)threads);
	rc = model_path != NULL ? model_load_opts(model_path, &mo, &m, err, sizeof(err))
				: model_new_synth_opts(arch, (int)layers, &mo, &m, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "margin-worker run: %s\n", err);
		goto done;
	}
	const model_config_t *cfg = model_config(m);
	const tok_t *tok = model_tok(m);
	rc = tok_encode(tok, prompt, strlen(prompt), true, true, &prompt_ids, &n_prompt);
	if (rc < 0) {
		fprintf(stderr, "margin-worker run: cannot tokenize the prompt: %s\n", strerror(-rc));
		goto done;
	}
	if (n_prompt == 0) {
		fprintf(stderr, "margin-worker run: the prompt gives no tokens (and the vocabulary adds no BOS)\n");
		goto done;
	}
	if (n_prompt >= (size_t)cfg->n_ctx) {
		fprintf(stderr, "margin-worker run: the prompt has %zu tokens; the context holds %d\n",
			n_prompt, cfg->n_ctx);
		goto done;
	}
	if (n_prompt + (size_t)n_gen > (size_t)cfg->n_ctx)
		n_gen = cfg->n_ctx - (int64_t)n_prompt;	/* generation ends where the context does */
	int n_ctx = (int)n_prompt + (int)n_gen;
	int chunk = n_prompt < PREFILL_CHUNK ? (int)n_prompt : PREFILL_CHUNK;
	out = malloc(((size_t)n_gen + 1) * sizeof(int32_t));
	pos = malloc((size_t)n_ctx * sizeof(int32_t));
	kvs = malloc((size_t)n_ctx * sizeof(*kvs));
	logits = malloc((size_t)cfg->vocab_size * sizeof(float));
	if (out == NULL || pos == NULL || kvs == NULL || logits == NULL) {
		fprintf(stderr, "margin-worker run: out of memory\n");
		goto done;
	}
	if ((rc = model_kv_new(m, n_ctx, kvt, &kv)) < 0 ||
	    (rc = model_scratch_new(m, chunk, (int)threads, &s)) < 0 ||
	    (rc = sampler_new(cfg->vocab_size, &smp)) < 0) {
		fprintf(stderr, "margin-worker run: cannot allocate the KV cache (%zu bytes) or "
			"buffers: %s\n", model_kv_bytes(m, n_ctx, kvt), strerror(-rc));
		goto done;
	}
	sampler_params_t sp = { temp, top_p, (uint32_t)top_k, seed };
	sampler_reset(smp, &sp);
	for (int i = 0; i < n_ctx; i++) {
		pos[i] = i;
		kvs[i] = kv;
	}

	int64_t t0 = mg_clock_now_ns();
	for (size_t i = 0; i < n_prompt; i += (size_t)chunk) {
		int k = n_prompt - i < (size_t)chunk ? (int)(n_prompt - i) : chunk;
		model_batch_t b = { .n = k, .tokens = prompt_ids + i, .pos = pos + i, .kv = kvs,
				    .logits = logits };
		if ((rc = model_forward(m, s, &b)) < 0) {
			fprintf(stderr, "margin-worker run: forward failed: %s\n", strerror(-rc));
			goto done;
		}
	}
	int64_t t1 = mg_clock_now_ns();
	for (int64_t g = 0; g < n_gen; g++) {
		int32_t id = sampler_sample(smp, logits);
		out[n_out++] = id;
		if (tok_is_eog(tok, id) && !ignore_eos)
			break;
		if (!json) {
			int len = tok_piece(tok, id, false, piece, sizeof(piece));
			if (len > 0)
				fwrite(piece, 1, (size_t)len < sizeof(piece) ? (size_t)len : sizeof(piece), stdout);
			fflush(stdout);
		}
		if (g == n_gen - 1)
			break;
		int32_t p = (int32_t)(n_prompt + (size_t)g);
		model_batch_t b = { .n = 1, .tokens = &id, .pos = &p, .kv = kvs, .logits = logits };
		if ((rc = model_forward(m, s, &b)) < 0) {
			fprintf(stderr, "margin-worker run: forward failed: %s\n", strerror(-rc));
			goto done;
		}
	}
	int64_t t2 = mg_clock_now_ns();

	if (json) {
		if ((rc = tok_decode(tok, out, n_out, false, &text, &text_len)) < 0 ||
		    (clean = utf8_clean(text, text_len)) == NULL) {
			fprintf(stderr, "margin-worker run: cannot decode the output\n");
			goto done;
		}
		json_t *o = json_object();
		json_object_set_new(o, "prompt_ids", ids_json(prompt_ids, n_prompt));
		json_object_set_new(o, "output_ids", ids_json(out, n_out));
		json_object_set_new(o, "text", json_string(clean));
		char *dump = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
		json_decref(o);
		if (dump == NULL) {
			fprintf(stderr, "margin-worker run: cannot format the output\n");
			goto done;
		}
		printf("%s\n", dump);
		free(dump);
	} else {
		printf("\n");
	}
	if (stats) {
		double pre = (double)(t1 - t0) / 1e9, dec = (double)(t2 - t1) / 1e9;
		/* the last sampled token needs no forward */
		size_t steps = n_out > 0 ? n_out - 1 : 0;
		fprintf(stderr, "prompt %zu tokens in %.3f s (%.1f tok/s), %zu generated in %.3f s "
			"(%.1f tok/s), threads %" PRId64 ", kernels %s, kv %s\n", n_prompt, pre, (double)n_prompt / pre,
			n_out, dec, dec > 0 ? (double)steps / dec : 0.0, threads,
			model_uses_blas(m) ? "openblas" : "packed", model_kv_type_name(kvt));
	}
	status = fflush(stdout) == 0 ? 0 : 1;
done:
	free(clean);
	free(text);
	free(prompt_ids);
	free(out);
	free(pos);
	free(kvs);
	free(logits);
	sampler_destroy(&smp);
	model_scratch_destroy(&s);
	model_kv_destroy(&kv);
	model_destroy(&m);
	return status;
bad_value:
	if (c == 'n')
		fprintf(stderr, "margin-worker run: bad value '%s' for -n\n", optarg);
	else
		fprintf(stderr, "margin-worker run: bad value '%s' for --%s\n", optarg,
			li >= 0 ? opts[li].name : "?");
	return 2;
}
