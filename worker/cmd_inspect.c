/* margin-worker inspect FILE.gguf [--slots N] [--ctx C] [--kv T] [--json]:
 * a GGUF file's metadata and tensor table, and the memory a worker serving
 * it holds. Arrays are summarised (element type, count, first values),
 * long strings are cut in the human form; --json gives every scalar in full
 * and the first values of each array. Lists every ggml tensor type, also
 * those margin cannot load (marked "not loadable").
 *
 * Memory: per tensor, what the loader keeps: quantized types (quant.h) as
 * stored, F32 as is, F16 and BF16 widened to f32, 1-D tensors in f32; plus
 * the KV caches of N slots of C positions (model_config_kv_bytes, the
 * formula of model_kv_bytes). */
#include "cmds.h"
#include "lib/mg_settings.h"
#include "gguf.h"
#include "lib/mg_utf8.h"
#include "model.h"
#include "quant.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STR_CUT 64	/* bytes of a string shown in the human form */
#define ARR_HEAD 5	/* array elements shown in the human form */
#define JSON_ARR_HEAD 8

typedef struct inspect_opts {
	const char *path;	/* borrowed from the config */
	int32_t slots, ctx;
	bool json;
} inspect_opts_t;

#define IO(field) MG_SETTING_AT(inspect_opts_t, field)
static const char *const kv_names[] = { "f16", "f32", "q8_0", NULL };
static const mg_setting_t inspect_settings[] = {
	{ .section = "inspect", .key = "file", .arg = "FILE.gguf", .flags = MG_SETTING_OPERAND, IO(path) },
	{ .flag = "slots", .section = "inspect", .key = "slots", .type = MG_SETTING_INT, .lo = 1, .hi = 65536,
	  .def = "1", .arg = "N", .help = "sequences served at once", IO(slots) },
	{ .flag = "ctx", .section = "inspect", .key = "ctx", .type = MG_SETTING_INT, .lo = 1, .hi = 1 << 24,
	  .arg = "C", .help = "positions per slot (default: the model's context_length)", IO(ctx) },
	{ .flag = "kv", .section = "inspect", .key = "kv", .type = MG_SETTING_ENUM, .names = kv_names,
	  .def = MODEL_KV_DEFAULT, .arg = "T", .help = "KV cache type: f16, f32 or q8_0" },
	{ .flag = "json", .section = "inspect", .key = "json", .type = MG_SETTING_BOOL, .set = "yes",
	  .help = "one JSON object instead of text", IO(json) },
};

static const mg_settings_spec_t inspect_spec = {
	.prog = "margin-worker inspect",
	.synopsis = "FILE.gguf [--slots N] [--ctx C] [--kv f16|f32|q8_0] [--json]\n",
	.intro = "Print a GGUF file's metadata (arrays summarised), its tensor table (name,\n"
		 "type, shape, offset, bytes, memory) with the total parameter count, and\n"
		 "the memory a worker serving it holds: the weights (quantized tensors as\n"
		 "stored, F32 as is, F16/BF16 widened to f32, 1-D tensors f32) and the KV\n"
		 "caches of N slots of C positions.\n",
	.no_config = true,
	.settings = inspect_settings,
	.n = sizeof(inspect_settings) / sizeof(inspect_settings[0]),
};

/* What a worker holds for a file: the options and the sums. */
typedef struct mem {
	int slots, ctx;		/* ctx 0: the model's context_length */
	model_kv_type_t kv;
	bool runnable;		/* a model margin runs: the KV cache is known */
	char why[256];		/* otherwise, the loader's reason */
	model_config_t cfg;
	uint64_t weights;	/* every loadable tensor as the loader keeps it */
	uint64_t kv_slot;	/* one slot's K and V caches */
	uint64_t total;		/* weights + slots x kv_slot */
} mem_t;

/* Bytes a worker holds for tensor t; 0 for a type it cannot load. */
static uint64_t tensor_memory(const gguf_tensor_t *t)
{
	if (!gguf_ttype_loadable(t->type))
		return 0;
	if (t->n_dims > 1 && quant_supported(t->type))
		return t->nbytes;
	return t->n_elements * sizeof(float);
}

/* Fills m's sums; -EINVAL (with a message) for a --ctx past the model's. */
static int mem_build(const gguf_t *g, mem_t *m)
{
	for (uint64_t i = 0; i < gguf_n_tensors(g); i++)
		m->weights += tensor_memory(gguf_tensor(g, i));
	m->total = m->weights;
	char err[256];
	if (model_config_read(g, &m->cfg, err, sizeof(err)) < 0) {
		snprintf(m->why, sizeof(m->why), "%s", err);
		return 0;
	}
	m->runnable = true;
	if (m->ctx == 0)
		m->ctx = m->cfg.n_ctx;
	if (m->ctx > m->cfg.n_ctx) {
		fprintf(stderr, "margin-worker inspect: --ctx %d is past the model's context of %d\n",
			m->ctx, m->cfg.n_ctx);
		return -EINVAL;
	}
	m->kv_slot = model_config_kv_bytes(&m->cfg, m->ctx, m->kv);
	m->total += (uint64_t)m->slots * m->kv_slot;
	return 0;
}

static double mib(uint64_t b)
{
	return (double)b / (1024.0 * 1024.0);
}

/* Quoted, escaped, cut at max bytes (0 = no cut). */
static void print_str(FILE *f, gguf_str_t s, size_t max)
{
	const uint8_t *p = (const uint8_t *)s.data;
	size_t n = (size_t)s.len, shown = (max && n > max) ? max : n;
	fputc('"', f);
	for (size_t i = 0; i < shown;) {
		uint8_t c = p[i];
		size_t l = mg_utf8_seq(p + i, n - i);
		if (c == '"' || c == '\\') {
			fprintf(f, "\\%c", c);
		} else if (c == '\n') {
			fputs("\\n", f);
		} else if (c == '\t') {
			fputs("\\t", f);
		} else if (c < 0x20 || c == 0x7f || l == 0) {
			fprintf(f, "\\x%02x", c);
		} else {
			fwrite(p + i, 1, l, f);
			i += l;
			continue;
		}
		i++;
	}
	fputc('"', f);
	if (shown < n)
		fprintf(f, "... (%zu bytes)", n);
}

/* Prints one numeric/bool element of type t at p (unaligned). */
static void print_num(FILE *f, enum gguf_vtype t, const uint8_t *p)
{
	union {
		uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32;
		float f32; uint64_t u64; int64_t i64; double f64;
	} v;
	memcpy(&v, p, gguf_vtype_size(t));
	switch (t) {
	case GGUF_VTYPE_UINT8: fprintf(f, "%u", v.u8); break;
	case GGUF_VTYPE_INT8: fprintf(f, "%d", v.i8); break;
	case GGUF_VTYPE_UINT16: fprintf(f, "%u", v.u16); break;
	case GGUF_VTYPE_INT16: fprintf(f, "%d", v.i16); break;
	case GGUF_VTYPE_UINT32: fprintf(f, "%" PRIu32, v.u32); break;
	case GGUF_VTYPE_INT32: fprintf(f, "%" PRId32, v.i32); break;
	case GGUF_VTYPE_FLOAT32: fprintf(f, "%.9g", v.f32); break;
	case GGUF_VTYPE_BOOL: fputs(v.u8 ? "true" : "false", f); break;
	case GGUF_VTYPE_UINT64: fprintf(f, "%" PRIu64, v.u64); break;
	case GGUF_VTYPE_INT64: fprintf(f, "%" PRId64, v.i64); break;
	case GGUF_VTYPE_FLOAT64: fprintf(f, "%.17g", v.f64); break;
	default: fputs("?", f); break;
	}
}

static json_t *json_num(enum gguf_vtype t, const uint8_t *p)
{
	union {
		uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32;
		float f32; uint64_t u64; int64_t i64; double f64;
	} v;
	memcpy(&v, p, gguf_vtype_size(t));
	switch (t) {
	case GGUF_VTYPE_UINT8: return json_integer(v.u8);
	case GGUF_VTYPE_INT8: return json_integer(v.i8);
	case GGUF_VTYPE_UINT16: return json_integer(v.u16);
	case GGUF_VTYPE_INT16: return json_integer(v.i16);
	case GGUF_VTYPE_UINT32: return json_integer(v.u32);
	case GGUF_VTYPE_INT32: return json_integer(v.i32);
	case GGUF_VTYPE_FLOAT32: return json_real(v.f32);
	case GGUF_VTYPE_BOOL: return json_boolean(v.u8);
	case GGUF_VTYPE_UINT64:
		if (v.u64 <= INT64_MAX)
			return json_integer((json_int_t)v.u64);
		/* JSON numbers past int64 are not portable: give the digits */
		char buf[32];
		snprintf(buf, sizeof(buf), "%" PRIu64, v.u64);
		return json_string(buf);
	case GGUF_VTYPE_INT64: return json_integer(v.i64);
	case GGUF_VTYPE_FLOAT64: return json_real(v.f64);
	default: return json_null();
	}
}

/* JSON string of arbitrary bytes: invalid UTF-8 becomes U+FFFD. */
static json_t *json_str(gguf_str_t s)
{
	json_t *j = json_stringn(s.data, (size_t)s.len);
	if (j != NULL)
		return j;
	size_t o;
	char *b = mg_utf8_clean(s.data, (size_t)s.len, &o);
	if (b == NULL)
		return NULL;
	j = json_stringn(b, o);
	free(b);
	return j;
}

/* "64 x 512" (ne[0] first, as ggml lists shapes) */
static void format_shape(const gguf_tensor_t *t, char *buf, size_t len)
{
	size_t o = 0;
	buf[0] = '\0';
	for (uint32_t d = 0; d < t->n_dims && o < len; d++)
		o += (size_t)snprintf(buf + o, len - o, "%s%" PRIu64, d ? " x " : "", t->ne[d]);
}

/* The memory section of the text form. */
static void print_memory(const mem_t *m)
{
	if (!m->runnable) {
		printf("\nmemory of a worker serving it: KV cache unknown (%s)\n", m->why);
		printf("  weights %14" PRIu64 " bytes %9.2f MiB  quantized tensors as stored, F32 as is,"
		       " F16/BF16 widened to f32, 1-D f32\n", m->weights, mib(m->weights));
		return;
	}
	const model_config_t *c = &m->cfg;
	uint64_t kv = (uint64_t)m->slots * m->kv_slot;
	printf("\nmemory of a worker serving it (%d slots x %d positions, KV cache %s):\n", m->slots, m->ctx,
	       model_kv_type_name(m->kv));
	printf("  weights %14" PRIu64 " bytes %9.2f MiB  quantized tensors as stored, F32 as is,"
	       " F16/BF16 widened to f32, 1-D f32\n", m->weights, mib(m->weights));
	printf("  kv      %14" PRIu64 " bytes %9.2f MiB  %d slots x %" PRIu64 " = %d layers x %d KV heads x"
	       " %d positions x %" PRIu64 " B x 2 (K, V)\n", kv, mib(kv), m->slots, m->kv_slot, c->n_layers,
	       c->n_kv_heads, m->ctx, m->kv_slot / (2 * (uint64_t)c->n_layers * (uint64_t)c->n_kv_heads * (uint64_t)m->ctx));
	printf("  total   %14" PRIu64 " bytes %9.2f MiB\n", m->total, mib(m->total));
}

static int print_text(const char *path, const gguf_t *g, const mem_t *m)
{
	uint64_t n_kv = gguf_n_kv(g), n_t = gguf_n_tensors(g);
	printf("%s: GGUF v%u, %zu bytes, %" PRIu64 " keys, %" PRIu64 " tensors, alignment %u, data at offset %zu\n",
	       path, gguf_version(g), gguf_file_size(g), n_kv, n_t, gguf_alignment(g), gguf_data_offset(g));
	printf("\nmetadata:\n");
	size_t w = 0;
	for (uint64_t i = 0; i < n_kv; i++) {
		size_t l = strlen(gguf_kv_key(g, i));
		if (l > w)
			w = l;
	}
	if (w > 48)
		w = 48;
	for (uint64_t i = 0; i < n_kv; i++) {
		enum gguf_vtype t = gguf_kv_type(g, i);
		printf("  %-*s  ", (int)w, gguf_kv_key(g, i));
		if (t == GGUF_VTYPE_STRING) {
			gguf_str_t s;
			gguf_kv_str(g, i, &s);
			printf("%-8s ", "string");
			print_str(stdout, s, STR_CUT);
		} else if (t == GGUF_VTYPE_ARRAY) {
			enum gguf_vtype et;
			uint64_t n;
			gguf_kv_arr_info(g, i, &et, &n);
			char head[32];
			snprintf(head, sizeof(head), "[%s x %" PRIu64 "]", gguf_vtype_name(et), n);
			printf("%-8s ", head);
			const void *data = NULL;
			gguf_kv_arr_data(g, i, &data);
			for (uint64_t k = 0; k < n && k < ARR_HEAD; k++) {
				if (k > 0)
					fputs(", ", stdout);
				if (et == GGUF_VTYPE_STRING) {
					gguf_str_t s;
					gguf_kv_arr_str(g, i, k, &s);
					print_str(stdout, s, STR_CUT / 2);
				} else {
					print_num(stdout, et, (const uint8_t *)data + k * gguf_vtype_size(et));
				}
			}
			if (n > ARR_HEAD)
				fputs(", ...", stdout);
		} else {
			const void *v;
			gguf_kv_scalar(g, i, &v);
			printf("%-8s ", gguf_vtype_name(t));
			print_num(stdout, t, v);
		}
		putchar('\n');
	}

	printf("\ntensors:\n");
	size_t nw = 4;
	for (uint64_t i = 0; i < n_t; i++) {
		size_t l = strlen(gguf_tensor(g, i)->name);
		if (l > nw)
			nw = l;
	}
	printf("  %-*s  %-7s  %-22s  %12s  %12s  %12s\n", (int)nw, "name", "type", "shape", "offset", "bytes",
	       "memory");
	uint64_t params = 0, bytes = 0, not_loadable = 0;
	for (uint64_t i = 0; i < n_t; i++) {
		const gguf_tensor_t *t = gguf_tensor(g, i);
		char shape[128], held[24] = "-";
		format_shape(t, shape, sizeof(shape));
		if (gguf_ttype_loadable(t->type))
			snprintf(held, sizeof(held), "%" PRIu64, tensor_memory(t));
		printf("  %-*s  %-7s  %-22s  %12" PRIu64 "  %12" PRIu64 "  %12s%s\n", (int)nw, t->name,
		       gguf_ttype_name(t->type), shape, t->offset, t->nbytes, held,
		       gguf_ttype_loadable(t->type) ? "" : "  (not loadable)");
		params += t->n_elements;
		bytes += t->nbytes;
		not_loadable += !gguf_ttype_loadable(t->type);
	}
	printf("\ntotal: %" PRIu64 " tensors, %" PRIu64 " parameters, %" PRIu64 " bytes of tensor data\n",
	       n_t, params, bytes);
	if (not_loadable > 0)
		printf("note: %" PRIu64 " tensors have types margin cannot load (it loads %s)\n",
		       not_loadable, GGUF_LOADABLE_TYPES);
	print_memory(m);
	return 0;
}

static int print_json(const char *path, const gguf_t *g, const mem_t *m)
{
	int rc = -ENOMEM;
	json_t *root = json_object(), *meta = json_array(), *tens = json_array();
	if (root == NULL || meta == NULL || tens == NULL)
		goto fail;
	json_object_set_new(root, "file", json_string(path));
	json_object_set_new(root, "version", json_integer(gguf_version(g)));
	json_object_set_new(root, "size", json_integer((json_int_t)gguf_file_size(g)));
	json_object_set_new(root, "alignment", json_integer(gguf_alignment(g)));
	json_object_set_new(root, "data_offset", json_integer((json_int_t)gguf_data_offset(g)));
	for (uint64_t i = 0; i < gguf_n_kv(g); i++) {
		enum gguf_vtype t = gguf_kv_type(g, i);
		json_t *e = json_object();
		if (e == NULL)
			goto fail;
		json_array_append_new(meta, e);
		json_object_set_new(e, "key", json_string(gguf_kv_key(g, i)));
		json_object_set_new(e, "type", json_string(gguf_vtype_name(t)));
		if (t == GGUF_VTYPE_STRING) {
			gguf_str_t s;
			gguf_kv_str(g, i, &s);
			json_object_set_new(e, "value", json_str(s));
		} else if (t == GGUF_VTYPE_ARRAY) {
			enum gguf_vtype et;
			uint64_t n;
			const void *data = NULL;
			gguf_kv_arr_info(g, i, &et, &n);
			gguf_kv_arr_data(g, i, &data);
			json_object_set_new(e, "element_type", json_string(gguf_vtype_name(et)));
			json_object_set_new(e, "count", json_integer((json_int_t)n));
			json_t *head = json_array();
			if (head == NULL)
				goto fail;
			json_object_set_new(e, "head", head);
			for (uint64_t k = 0; k < n && k < JSON_ARR_HEAD; k++) {
				if (et == GGUF_VTYPE_STRING) {
					gguf_str_t s;
					gguf_kv_arr_str(g, i, k, &s);
					json_array_append_new(head, json_str(s));
				} else {
					json_array_append_new(head, json_num(et, (const uint8_t *)data + k * gguf_vtype_size(et)));
				}
			}
		} else {
			const void *v;
			gguf_kv_scalar(g, i, &v);
			json_object_set_new(e, "value", json_num(t, v));
		}
	}
	uint64_t params = 0, bytes = 0;
	for (uint64_t i = 0; i < gguf_n_tensors(g); i++) {
		const gguf_tensor_t *t = gguf_tensor(g, i);
		json_t *e = json_object(), *shape = json_array();
		if (e == NULL || shape == NULL) {
			json_decref(e);
			json_decref(shape);
			goto fail;
		}
		json_array_append_new(tens, e);
		json_object_set_new(e, "name", json_string(t->name));
		json_object_set_new(e, "type", json_string(gguf_ttype_name(t->type)));
		for (uint32_t d = 0; d < t->n_dims; d++)
			json_array_append_new(shape, json_integer((json_int_t)t->ne[d]));
		json_object_set_new(e, "shape", shape);
		json_object_set_new(e, "offset", json_integer((json_int_t)t->offset));
		json_object_set_new(e, "bytes", json_integer((json_int_t)t->nbytes));
		json_object_set_new(e, "loadable", json_boolean(gguf_ttype_loadable(t->type)));
		json_object_set_new(e, "memory", gguf_ttype_loadable(t->type)
				    ? json_integer((json_int_t)tensor_memory(t)) : json_null());
		params += t->n_elements;
		bytes += t->nbytes;
	}
	json_object_set_new(root, "metadata", meta);
	json_object_set_new(root, "tensors", tens);
	meta = tens = NULL;
	json_object_set_new(root, "n_tensors", json_integer((json_int_t)gguf_n_tensors(g)));
	json_object_set_new(root, "n_params", json_integer((json_int_t)params));
	json_object_set_new(root, "tensor_bytes", json_integer((json_int_t)bytes));
	json_t *mj = json_object();
	if (mj == NULL)
		goto fail;
	json_object_set_new(root, "memory", mj);
	json_object_set_new(mj, "weights", json_integer((json_int_t)m->weights));
	if (m->runnable) {
		json_object_set_new(mj, "slots", json_integer(m->slots));
		json_object_set_new(mj, "ctx", json_integer(m->ctx));
		json_object_set_new(mj, "kv_type", json_string(model_kv_type_name(m->kv)));
		json_object_set_new(mj, "kv_bytes_per_slot", json_integer((json_int_t)m->kv_slot));
		json_object_set_new(mj, "kv_bytes", json_integer((json_int_t)((uint64_t)m->slots * m->kv_slot)));
		json_object_set_new(mj, "total", json_integer((json_int_t)m->total));
	} else {
		json_object_set_new(mj, "kv_bytes", json_null());
		json_object_set_new(mj, "total", json_null());
		json_object_set_new(mj, "error", json_string(m->why));
	}
	if (json_dumpf(root, stdout, JSON_INDENT(1) | JSON_PRESERVE_ORDER) < 0) {
		rc = -EIO;
		goto fail;
	}
	putchar('\n');
	json_decref(root);
	return 0;
fail:
	json_decref(meta);
	json_decref(tens);
	json_decref(root);
	return rc;
}

/* Inspects path with m's options: 0; 1 when it cannot, 2 for options the
 * file refuses (said). */
static int inspect(const char *path, mem_t *m, bool as_json)
{
	gguf_t *g = NULL;
	char err[512];
	int rc = gguf_open(path, &g, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "margin-worker inspect: %s\n", err);
		return 1;
	}
	if (mem_build(g, m) < 0) {
		gguf_close(&g);
		return 2;
	}
	rc = as_json ? print_json(path, g, m) : print_text(path, g, m);
	gguf_close(&g);
	if (rc == 0 && (fflush(stdout) != 0 || ferror(stdout)))
		rc = -EIO;
	if (rc < 0) {
		fprintf(stderr, "margin-worker inspect: %s: %s\n", path, strerror(-rc));
		return 1;
	}
	return 0;
}

int cmd_inspect(int argc, char **argv)
{
	inspect_opts_t o = { 0 };
	mem_t m = { 0 };
	mg_config_t *cfg = mg_config_new();
	int r = cfg == NULL ? -ENOMEM : mg_settings_parse_into(&inspect_spec, cfg, argc, argv, &o);
	if (cfg == NULL)
		fprintf(stderr, "margin-worker inspect: out of memory\n");
	if (r == 0 && o.path == NULL) {
		fprintf(stderr, "margin-worker inspect: no file given\n");
		mg_settings_usage(&inspect_spec, stderr);
		r = -EINVAL;
	}
	const char *kv = cfg ? mg_config_get(cfg, "inspect", "kv") : NULL;
	if (r == 0 && model_kv_type_parse(kv ? kv : MODEL_KV_DEFAULT, &m.kv) < 0)
		r = -EINVAL;	/* the table's names are the parser's */
	m.slots = o.slots;
	m.ctx = o.ctx;
	r = r == 0 ? inspect(o.path, &m, o.json) : r == 1 ? 0 : r == -EINVAL ? 2 : 1;
	mg_config_destroy(&cfg);
	return r;
}
