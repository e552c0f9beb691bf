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
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
	const char *model_path, *arch, *weights, *arith, *pooling, *kv;	/* borrowed from the config */
	int32_t layers, dims, slots, ctx, chunk, threads;
	bool truncate, ids_in, json;
	engine_opts_t eo;
	model_opts_t mo;
} embed_args_t;

#define EA(field) MG_SETTING_AT(embed_args_t, field)
#define EMBED_INT(flag_, key_, lo_, hi_, field, help_)                                                       \
	{ .flag = flag_, .section = "embed", .key = key_, .type = MG_SETTING_INT, .lo = lo_, .hi = hi_, \
	  .arg = "N", .help = help_, EA(field) }
static const char *const pooling_names[] = { "mean", "cls", "last", NULL };
static const char *const kv_names[] = { "f32", "f16", "q8_0", NULL };
static const mg_setting_t embed_settings[] = {
	{ .flag = "model", .section = "embed", .key = "model", .arg = "FILE", .excludes = "arch",
	  .help = "a GGUF model", EA(model_path) },
	{ .flag = "arch", .section = "embed", .key = "arch", .arg = "PRESET",
	  .help = "a synthetic model (tiny, llama-110m, ...)", EA(arch) },
	EMBED_INT("layers", "layers", 1, 4096, layers, "build only K layers of the preset"),
	{ .flag = "pooling", .section = "embed", .key = "pooling", .type = MG_SETTING_ENUM, .names = pooling_names,
	  .arg = "P",
	  .help = "mean, cls or last, for a model whose GGUF pooling_type\n"
		  "is none or absent (default " ENGINE_POOLING_DEFAULT "); a model that\n"
		  "names one uses it" },
	EMBED_INT("dimensions", "dimensions", 1, 1 << 20, dims,
		  "keep the first N values, then normalize (default: all)"),
	{ .flag = "truncate", .section = "embed", .key = "truncate", .type = MG_SETTING_BOOL, .set = "yes",
	  .help = "cut an input longer than the context to its start\n"
		  "(default: refuse it, code context_length_exceeded)",
	  EA(truncate) },
	{ .flag = "ids", .section = "embed", .key = "ids", .type = MG_SETTING_BOOL, .set = "yes",
	  .help = "each INPUT is comma-separated token ids, not text", EA(ids_in) },
	EMBED_INT("slots", "slots", 1, 4096, slots, "sequences in flight (default 8)"),
	EMBED_INT("ctx", "ctx", 1, 1 << 24, ctx, "context per slot in tokens (default: the model's, <= 2048)"),
	EMBED_INT("prefill-chunk", "prefill_chunk", 2, 1 << 16, chunk, "tokens of one input per step (default 128)"),
	EMBED_INT("threads", "threads", 1, 4096, threads, "compute threads (default: the CPUs of this process)"),
	{ .flag = "kv", .section = "embed", .key = "kv", .type = MG_SETTING_ENUM, .names = kv_names, .arg = "TYPE",
	  .help = "KV cache type: f32, f16 or q8_0 (default " MODEL_KV_DEFAULT ")" },
	{ .flag = "weights", .section = "embed", .key = "weights", .arg = "TYPE",
	  .help = "matrices: auto, f32, q8_0-panels or a mix (q8_0, q4_k_m, ...)", EA(weights) },
	{ .flag = "arith", .section = "embed", .key = "arith", .arg = "ORDER",
	  .help = "quantized kernels' float order: llama (default) or fast", EA(arith) },
	{ .flag = "json", .section = "embed", .key = "json", .type = MG_SETTING_BOOL, .set = "yes",
	  .help = "one JSON object per input: index, tokens, truncated,\nembedding (or error)", EA(json) },
	{ .section = "embed", .key = "input", .type = MG_SETTING_LIST, .hi = 1024, .arg = "INPUT",
	  .flags = MG_SETTING_OPERAND,
	  .help = "the inputs (at most 1024; more: one per line on stdin)" },
};

static const mg_settings_spec_t embed_spec = {
	.prog = "margin-worker embed",
	.synopsis = "(--model FILE.gguf | --arch PRESET [--layers K])\n"
		    "                           [--pooling P] [--dimensions N] [--truncate] [--ids]\n"
		    "                           [--slots N] [--ctx N] [--prefill-chunk N] [--threads N]\n"
		    "                           [--kv TYPE] [--weights TYPE] [--arith ORDER] [--json]\n"
		    "                           [INPUT ...]\n",
	.intro = "Print the embedding of each INPUT (or of each line of stdin): the final\n"
		 "hidden states (after the output norm) pooled, cut to N values, L2-normalized.\n",
	.epilog = "Exit status: 0, 1 when an input or the model failed, 2 bad usage.\n",
	.no_config = true,
	.settings = embed_settings,
	.n = sizeof(embed_settings) / sizeof(embed_settings[0]),
};

/* The flags into a, strings borrowed from cfg. 0; 1 after --help (exit 0);
 * 2 for bad usage, said; -1 out of memory. */
static int parse_args(int argc, char **argv, mg_config_t *cfg, embed_args_t *a)
{
	*a = (embed_args_t){ .mo = { .weights = MODEL_WEIGHTS_AUTO } };
	int r = mg_settings_parse_into(&embed_spec, cfg, argc, argv, a);
	if (r != 0)
		return r == 1 ? 1 : r == -EINVAL ? 2 : -1;
	if (a->model_path == NULL && a->arch == NULL) {
		fprintf(stderr, "margin-worker embed: give exactly one of --model FILE.gguf and --arch PRESET\n");
		return 2;
	}
	if (a->weights != NULL && model_weights_parse(a->weights, &a->mo.weights) < 0) {
		fprintf(stderr, "margin-worker embed: --weights %s: not auto, f32, q8_0-panels or a quantized "
			"mix (q8_0, q4_k_m, ...)\n", a->weights);
		return 2;
	}
	if (a->arith != NULL && model_arith_parse(a->arith, &a->mo.arith) < 0) {
		fprintf(stderr, "margin-worker embed: --arith %s: not llama or fast\n", a->arith);
		return 2;
	}
	/* the ENUM rows are kept as text, as engine_opts_t takes them */
	a->eo = (engine_opts_t){ .pooling = mg_config_get(cfg, "embed", "pooling"),
				 .kv_type = mg_config_get(cfg, "embed", "kv"), .slots = a->slots, .n_ctx = a->ctx,
				 .prefill_chunk = a->chunk, .threads = a->threads };
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

/* The inputs from the command line into a new array (borrowed strings),
 * or NULL when there are none or no memory (*ret_n 0). */
static char **arg_inputs(const mg_config_t *cfg, size_t *ret_n)
{
	size_t n = 0;
	while (mg_settings_list_get(cfg, "embed", "input", n) != NULL)
		n++;
	char **v = n ? malloc(n * sizeof(*v)) : NULL;
	for (size_t i = 0; v != NULL && i < n; i++)
		v[i] = (char *)mg_settings_list_get(cfg, "embed", "input", i);
	*ret_n = v ? n : 0;
	return v;
}

int cmd_embed(int argc, char **argv)
{
	embed_args_t a;
	mg_config_t *cfg = mg_config_new();
	int status = cfg == NULL ? -1 : parse_args(argc, argv, cfg, &a);
	if (status != 0) {
		if (status < 0)
			fprintf(stderr, "margin-worker embed: out of memory\n");
		mg_config_destroy(&cfg);
		return status == 1 ? 0 : status < 0 ? 1 : status;
	}

	size_t n_in = 0, n_lines = 0;
	char **args = arg_inputs(cfg, &n_in), **inputs = args, **lines = NULL;
	if (n_in == 0) {
		if (read_lines(stdin, &lines, &n_lines) < 0) {
			fprintf(stderr, "margin-worker embed: out of memory reading stdin\n");
			mg_config_destroy(&cfg);
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
	free(args);
	engine_destroy(&e);
	model_destroy(&m);
	mg_config_destroy(&cfg);
	return status;
}
