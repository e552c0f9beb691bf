/* margin-worker embed: embeddings of texts (or token ids) offline, with the
 * engine a worker runs: every input is an embed request, all of them
 * submitted at once and batched in the engine's steps as margind's would
 * be, so the vectors are the ones `serve` returns for the same model,
 * pooling and dimensions.
 *
 * Inputs are the arguments, or the lines of stdin when there are none.
 * Output, one line per input in order: the vector's values separated by
 * spaces (%.9g: a float's exact value), or with --json an object
 * {"index":I,"tokens":[...],"truncated":B,"embedding":[...]} (or
 * {"index":I,"error":{"code":..,"message":..}}). Exit 1 when an input
 * failed (the others are still printed). */
#include "cmds.h"
#include "lib/mg_settings.h"
#include "engine.h"
#include "model.h"
#include "synth.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
	fprintf(f,
		"usage: margin-worker embed (--model FILE.gguf | --arch PRESET [--layers K])\n"
		"                           [--pooling P] [--dimensions N] [--truncate] [--ids]\n"
		"                           [--slots N] [--ctx N] [--prefill-chunk N] [--threads N]\n"
		"                           [--kv TYPE] [--weights TYPE] [--json] [INPUT ...]\n\n"
		"Print the embedding of each INPUT (or of each line of stdin): the final\n"
		"hidden states (after the output norm) pooled, cut to N values, L2-normalized.\n\n"
		"  --model FILE       a GGUF model\n"
		"  --arch PRESET      a synthetic model (tiny, llama-110m, ...)\n"
		"  --layers K         build only K layers of the preset\n"
		"  --pooling P        mean, cls or last, for a model whose GGUF pooling_type\n"
		"                     is none or absent (default " ENGINE_POOLING_DEFAULT "); a model that\n"
		"                     names one uses it\n"
		"  --dimensions N     keep the first N values, then normalize (default: all)\n"
		"  --truncate         cut an input longer than the context to its start\n"
		"                     (default: refuse it, code context_length_exceeded)\n"
		"  --ids              each INPUT is comma-separated token ids, not text\n"
		"  --slots N          sequences in flight (default 8)\n"
		"  --ctx N            context per slot in tokens (default: the model's, <= 2048)\n"
		"  --prefill-chunk N  tokens of one input per step (default 128)\n"
		"  --threads N        compute threads (default: the CPUs of this process)\n"
		"  --kv TYPE          KV cache type: f32, f16 or q8_0 (default " MODEL_KV_DEFAULT ")\n"
		"  --weights TYPE     matrices: auto, f32, q8_0-panels or a mix (q8_0, q4_k_m, ...)\n"
		"  --json             one JSON object per input: index, tokens, truncated,\n"
		"                     embedding (or error)\n\n"
		"Exit status: 0, 1 when an input or the model failed, 2 bad usage.\n");
}

/* "1,2,3" -> ids. -EINVAL names nothing: the caller says which input. */
static int parse_ids(const char *s, int32_t **ret, size_t *ret_n)
{
	size_t cap = 1;
	for (const char *p = s; *p; p++)
		cap += *p == ',';
	int32_t *ids = malloc(cap * sizeof(*ids));
	if (ids == NULL)
		return -ENOMEM;
	size_t n = 0;
	const char *p = s;
	while (*p) {
		char *end;
		errno = 0;
		long v = strtol(p, &end, 10);
		if (errno != 0 || end == p || v < INT32_MIN || v > INT32_MAX || (*end != ',' && *end != '\0')) {
			free(ids);
			return -EINVAL;
		}
		ids[n++] = (int32_t)v;
		p = *end == ',' ? end + 1 : end;
	}
	*ret = ids;
	*ret_n = n;
	return 0;
}

/* The lines of f (newline stripped), into *ret [*ret_n]. */
static int read_lines(FILE *f, char ***ret, size_t *ret_n)
{
	char **lines = NULL, *line = NULL;
	size_t n = 0, cap = 0, lcap = 0;
	ssize_t len;
	while ((len = getline(&line, &lcap, f)) >= 0) {
		if (len > 0 && line[len - 1] == '\n')
			line[--len] = '\0';
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 16;
			char **p = realloc(lines, nc * sizeof(*p));
			if (p == NULL)
				goto nomem;
			lines = p;
			cap = nc;
		}
		if ((lines[n] = strdup(line)) == NULL)
			goto nomem;
		n++;
	}
	free(line);
	*ret = lines;
	*ret_n = n;
	return 0;
nomem:
	free(line);
	for (size_t i = 0; i < n; i++)
		free(lines[i]);
	free(lines);
	return -ENOMEM;
}

static void print_out(const engine_out_t *o, size_t index, bool json)
{
	if (json) {
		json_t *j = json_object();
		json_object_set_new(j, "index", json_integer((json_int_t)index));
		if (o->error != 0) {
			json_object_set_new(j, "error", json_pack("{s:s,s:s}", "code", o->error_code,
								  "message", o->error_msg));
		} else {
			json_t *t = json_array(), *v = json_array();
			for (size_t i = 0; i < o->n_prompt_ids; i++)
				json_array_append_new(t, json_integer(o->prompt_ids[i]));
			for (uint32_t i = 0; i < o->n_embedding; i++)
				json_array_append_new(v, json_real(o->embedding[i]));
			json_object_set_new(j, "tokens", t);
			json_object_set_new(j, "truncated", json_boolean(o->truncated));
			json_object_set_new(j, "embedding", v);
		}
		char *s = json_dumps(j, JSON_COMPACT);
		if (s != NULL)
			printf("%s\n", s);
		free(s);
		json_decref(j);
		return;
	}
	if (o->error != 0) {
		fprintf(stderr, "margin-worker embed: %s: %s\n", o->error_code, o->error_msg);
		printf("\n");
		return;
	}
	for (uint32_t i = 0; i < o->n_embedding; i++)
		printf("%s%.9g", i ? " " : "", (double)o->embedding[i]);
	printf("\n");
}

typedef struct embed_args {
	const char *model_path, *arch;	/* borrowed from argv */
	int64_t layers, dims;
	bool truncate, ids_in, json;
	engine_opts_t eo;
	model_opts_t mo;
} embed_args_t;

/* The flags into a (optind: the first input after). 0; 1 after --help
 * (exit 0); 2 for bad usage, said. */
static int parse_args(int argc, char **argv, embed_args_t *a)
{
	enum { O_MODEL = 256, O_ARCH, O_LAYERS, O_POOLING, O_DIMS, O_TRUNCATE, O_IDS, O_SLOTS, O_CTX,
	       O_CHUNK, O_THREADS, O_KV, O_WEIGHTS, O_JSON, O_HELP };
	static const struct option opts[] = {
		{ "model", required_argument, NULL, O_MODEL },
		{ "arch", required_argument, NULL, O_ARCH },
		{ "layers", required_argument, NULL, O_LAYERS },
		{ "pooling", required_argument, NULL, O_POOLING },
		{ "dimensions", required_argument, NULL, O_DIMS },
		{ "truncate", no_argument, NULL, O_TRUNCATE },
		{ "ids", no_argument, NULL, O_IDS },
		{ "slots", required_argument, NULL, O_SLOTS },
		{ "ctx", required_argument, NULL, O_CTX },
		{ "prefill-chunk", required_argument, NULL, O_CHUNK },
		{ "threads", required_argument, NULL, O_THREADS },
		{ "kv", required_argument, NULL, O_KV },
		{ "weights", required_argument, NULL, O_WEIGHTS },
		{ "json", no_argument, NULL, O_JSON },
		{ "help", no_argument, NULL, O_HELP },
		{ NULL, 0, NULL, 0 },
	};
	const char *weights = NULL;
	int64_t v = 0;
	*a = (embed_args_t){ .mo = { .weights = MODEL_WEIGHTS_AUTO } };
	optind = 0;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
		const char *bad = NULL;
		switch (c) {
		case O_MODEL: a->model_path = optarg; break;
		case O_ARCH: a->arch = optarg; break;
		case O_LAYERS: if (mg_settings_parse_int(optarg, 1, 4096, &a->layers) < 0) bad = "--layers 1..4096"; break;
		case O_POOLING:
			if (engine_pooling_parse(optarg) < 0)
				bad = "--pooling mean, cls or last";
			a->eo.pooling = optarg;
			break;
		case O_DIMS: if (mg_settings_parse_int(optarg, 1, 1 << 20, &a->dims) < 0) bad = "--dimensions 1.."; break;
		case O_TRUNCATE: a->truncate = true; break;
		case O_IDS: a->ids_in = true; break;
		case O_SLOTS:
			if (mg_settings_parse_int(optarg, 1, 4096, &v) < 0)
				bad = "--slots 1..4096";
			a->eo.slots = (int)v;
			break;
		case O_CTX:
			if (mg_settings_parse_int(optarg, 1, 1 << 24, &v) < 0)
				bad = "--ctx 1..16777216";
			a->eo.n_ctx = (int)v;
			break;
		case O_CHUNK:
			if (mg_settings_parse_int(optarg, 2, 1 << 16, &v) < 0)
				bad = "--prefill-chunk 2..65536";
			a->eo.prefill_chunk = (int)v;
			break;
		case O_THREADS:
			if (mg_settings_parse_int(optarg, 1, 4096, &v) < 0)
				bad = "--threads 1..4096";
			a->eo.threads = (int)v;
			break;
		case O_KV: a->eo.kv_type = optarg; break;
		case O_WEIGHTS: weights = optarg; break;
		case O_JSON: a->json = true; break;
		case O_HELP: usage(stdout); return 1;
		case ':':
			fprintf(stderr, "margin-worker embed: %s needs a value\n", argv[optind - 1]);
			return 2;
		default:
			fprintf(stderr, "margin-worker embed: unknown option '%s'\n", argv[optind - 1]);
			usage(stderr);
			return 2;
		}
		if (bad != NULL) {
			fprintf(stderr, "margin-worker embed: bad value '%s': %s\n", optarg, bad);
			return 2;
		}
	}
	if ((a->model_path == NULL) == (a->arch == NULL)) {
		fprintf(stderr, "margin-worker embed: give exactly one of --model FILE.gguf and --arch PRESET\n");
		return 2;
	}
	if (weights != NULL && model_weights_parse(weights, &a->mo.weights) < 0) {
		fprintf(stderr, "margin-worker embed: --weights %s: not auto, f32, q8_0-panels or a quantized "
			"mix (q8_0, q4_k_m, ...)\n", weights);
		return 2;
	}
	return 0;
}

/* Every input submitted as an embed request (its index is its id). 0, or
 * the exit status with the reason said. */
static int submit_all(engine_t *e, const embed_args_t *a, char **inputs, size_t n_in)
{
	for (size_t i = 0; i < n_in; i++) {
		engine_req_t r = { .id = i, .embed = true, .dimensions = (uint32_t)a->dims, .truncate = a->truncate,
				   .input = (uint32_t)i };
		int32_t *ids = NULL;
		size_t n_ids = 0;
		if (a->ids_in) {
			if (parse_ids(inputs[i], &ids, &n_ids) < 0) {
				fprintf(stderr, "margin-worker embed: input %zu: '%s' is not comma-separated token ids\n",
					i, inputs[i]);
				return 2;
			}
			r.prompt_ids = ids;
			r.n_prompt_ids = n_ids;
		} else {
			r.prompt = inputs[i];
		}
		int rc = engine_submit(e, &r);
		free(ids);
		if (rc < 0) {
			fprintf(stderr, "margin-worker embed: %s\n", strerror(-rc));
			return 1;
		}
	}
	return 0;
}

/* Steps until every input is done; outs[id] = its result. */
static int run_all(engine_t *e, engine_out_t **outs)
{
	engine_out_t *o;
	while (engine_pending(e) > 0) {
		int rc = engine_step(e);
		if (rc < 0) {
			fprintf(stderr, "margin-worker embed: engine step failed: %s\n", strerror(-rc));
			return 1;
		}
		while ((o = engine_take(e)) != NULL)
			outs[o->id] = o;
	}
	while ((o = engine_take(e)) != NULL)
		outs[o->id] = o;
	return 0;
}

int cmd_embed(int argc, char **argv)
{
	embed_args_t a;
	int status = parse_args(argc, argv, &a);
	if (status != 0)
		return status == 1 ? 0 : status;

	char **inputs = argv + optind, **lines = NULL;
	size_t n_in = (size_t)(argc - optind), n_lines = 0;
	if (n_in == 0) {
		if (read_lines(stdin, &lines, &n_lines) < 0) {
			fprintf(stderr, "margin-worker embed: out of memory reading stdin\n");
			return 1;
		}
		inputs = lines;
		n_in = n_lines;
	}

	status = 1;
	char err[512] = "";
	model_t *m = NULL;
	engine_t *e = NULL;
	engine_out_t **outs = calloc(n_in ? n_in : 1, sizeof(*outs));
	if (outs == NULL) {
		fprintf(stderr, "margin-worker embed: out of memory\n");
		goto out;
	}
	int rc = a.model_path ? model_load_opts(a.model_path, &a.mo, &m, err, sizeof(err))
			      : model_new_synth_opts(a.arch, (int)a.layers, &a.mo, &m, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "margin-worker embed: %s\n", err);
		goto out;
	}
	if ((rc = engine_new(m, &a.eo, &e, err, sizeof(err))) < 0) {
		fprintf(stderr, "margin-worker embed: %s\n", err);
		status = rc == -EINVAL ? 2 : 1;
		goto out;
	}
	if (engine_embed_dims(e) == 0) {
		fprintf(stderr, "margin-worker embed: %s\n", engine_embed_why(e));
		goto out;
	}
	if ((status = submit_all(e, &a, inputs, n_in)) != 0 || (status = run_all(e, outs)) != 0)
		goto out;
	for (size_t i = 0; i < n_in; i++) {
		print_out(outs[i], i, a.json);
		if (outs[i]->error != 0)
			status = 1;
	}
out:
	for (size_t i = 0; outs != NULL && i < n_in; i++)
		engine_out_free(&outs[i]);
	free(outs);
	for (size_t i = 0; i < n_lines; i++)
		free(lines[i]);
	free(lines);
	engine_destroy(&e);
	model_destroy(&m);
	return status;
}
