/* shape: see shape.h. */
#include "shape.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---------------- presets ---------------- */

struct preset {
	const char *name, *arch, *source;
	uint32_t dim, n_layers, n_heads, n_kv_heads, head_dim, ffn_dim, vocab, n_ctx, window;
	bool tied, qkv_bias, qk_norm, rope_freqs;
};

#define WORKER "margin-worker synth preset (worker/synth.c)"
static const struct preset presets[] = {
	{ "llama-110m", "llama", WORKER, 768, 12, 12, 12, 64, 2048, 32000, 1024, 0, false, false, false, false },
	{ "qwen2-0.5b", "qwen2", WORKER, 896, 24, 14, 2, 64, 4864, 151936, 32768, 0, true, true, false, false },
	{ "qwen3-0.6b", "qwen3", WORKER, 1024, 28, 16, 8, 128, 3072, 151936, 40960, 0, true, false, true, false },
	{ "llama3.2-1b", "llama", WORKER, 2048, 16, 32, 8, 64, 8192, 128256, 131072, 0, true, false, false, true },
	{ "llama2-7b", "llama", WORKER, 4096, 32, 32, 32, 128, 11008, 32000, 4096, 0, false, false, false, false },
	{ "mistral-7b", "llama", WORKER, 4096, 32, 32, 8, 128, 14336, 32000, 32768, 4096, false, false, false, false },
	{ "qwen2-7b", "qwen2", WORKER, 3584, 28, 28, 4, 128, 18944, 152064, 32768, 0, false, true, false, false },
	{ "llama3-8b", "llama", WORKER, 4096, 32, 32, 8, 128, 14336, 128256, 8192, 0, false, false, false, false },
	{ "llama2-13b", "llama", "meta-llama/Llama-2-13b-hf config.json", 5120, 40, 40, 40, 128, 13824, 32000, 4096,
	  0, false, false, false, false },
	{ "llama2-70b", "llama", "meta-llama/Llama-2-70b-hf config.json", 8192, 80, 64, 8, 128, 28672, 32000, 4096,
	  0, false, false, false, false },
	{ "llama3-70b", "llama", "meta-llama/Meta-Llama-3-70B config.json", 8192, 80, 64, 8, 128, 28672, 128256,
	  8192, 0, false, false, false, false },
};
#define N_PRESETS (sizeof(presets) / sizeof(presets[0]))

/* Bytes per weight of a dtype: num / den (ggml blocks of 32: q8_0 = 2-byte
 * scale + 32 int8; q4_0 = 2-byte scale + 16 bytes). */
static const struct {
	const char *name;
	uint32_t num, den;
} dtypes[] = {
	{ "f32", 4, 1 }, { "f16", 2, 1 }, { "bf16", 2, 1 }, { "q8_0", 34, 32 }, { "q4_0", 18, 32 },
};
#define N_DTYPES (sizeof(dtypes) / sizeof(dtypes[0]))

size_t shape_n_presets(void)
{
	return N_PRESETS;
}

const char *shape_preset_name(size_t i)
{
	return i < N_PRESETS ? presets[i].name : NULL;
}

static void list_names(char *buf, size_t len, bool want_dtypes)
{
	size_t o = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < (want_dtypes ? N_DTYPES : N_PRESETS) && o < len; i++)
		o += (size_t)snprintf(buf + o, len - o, "%s%s", i ? ", " : "",
				      want_dtypes ? dtypes[i].name : presets[i].name);
}

int shape_preset(const char *name, const char *dtype, shape_t *ret, char *err, size_t errlen)
{
	char known[512];
	const struct preset *p = NULL;
	for (size_t i = 0; name != NULL && i < N_PRESETS; i++)
		if (strcmp(presets[i].name, name) == 0)
			p = &presets[i];
	if (p == NULL) {
		list_names(known, sizeof(known), false);
		snprintf(err, errlen, "unknown model \"%s\": give a GGUF file (NAME.gguf) or a preset: %s",
			 name ? name : "", known);
		return -ENOENT;
	}
	size_t d = N_DTYPES;
	for (size_t i = 0; i < N_DTYPES; i++)
		if (strcmp(dtypes[i].name, dtype ? dtype : "f16") == 0)
			d = i;
	if (d == N_DTYPES) {
		list_names(known, sizeof(known), true);
		snprintf(err, errlen, "unknown weight type \"%s\": known: %s", dtype, known);
		return -EINVAL;
	}
	shape_t s;
	memset(&s, 0, sizeof(s));
	snprintf(s.name, sizeof(s.name), "%s", p->name);
	snprintf(s.arch, sizeof(s.arch), "%s", p->arch);
	snprintf(s.source, sizeof(s.source), "preset %s (%s), %s weights", p->name, p->source, dtypes[d].name);
	snprintf(s.dtype, sizeof(s.dtype), "%s", dtypes[d].name);
	s.dim = p->dim;
	s.n_layers = p->n_layers;
	s.n_heads = p->n_heads;
	s.n_kv_heads = p->n_kv_heads;
	s.head_dim = p->head_dim;
	s.ffn_dim = p->ffn_dim;
	s.vocab = p->vocab;
	s.n_ctx = p->n_ctx;
	s.sliding_window = p->window;
	uint64_t D = p->dim, q = (uint64_t)p->n_heads * p->head_dim, kv = (uint64_t)p->n_kv_heads * p->head_dim;
	uint64_t mat_layer = D * (q + 2 * kv) + q * D + 3 * D * p->ffn_dim;
	uint64_t vec_layer = 2 * D + (p->qkv_bias ? q + 2 * kv : 0) + (p->qk_norm ? 2 * (uint64_t)p->head_dim : 0);
	uint64_t embd = D * p->vocab;
	uint64_t mats = p->n_layers * mat_layer + embd + (p->tied ? 0 : embd);
	uint64_t vecs = p->n_layers * vec_layer + D + (p->rope_freqs ? p->head_dim / 2 : 0);
	s.n_params = mats + vecs;
	s.n_params_per_token = p->n_layers * (mat_layer + vec_layer) + D + embd;
	s.weight_bytes = mats * dtypes[d].num / dtypes[d].den + vecs * 4;
	s.fp16_compute = strcmp(dtypes[d].name, "f32") != 0;
	*ret = s;
	return 0;
}

/* ---------------- GGUF ---------------- */

enum { V_U8, V_I8, V_U16, V_I16, V_U32, V_I32, V_F32, V_BOOL, V_STR, V_ARR, V_U64, V_I64, V_F64, V_N };
static const uint8_t vsize[V_N] = { 1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8 };

#define MAX_COUNT (1u << 24)	/* tensors, keys, array elements: far above any model */

struct rd {
	FILE *f;
	const char *path;
	char *err;
	size_t errlen;
};

static int bad(struct rd *r, const char *what)
{
	snprintf(r->err, r->errlen, "%s: not a valid GGUF file: %s at offset %ld", r->path, what, ftell(r->f));
	return -EBADMSG;
}

static int rd_bytes(struct rd *r, void *p, size_t n, const char *what)
{
	return fread(p, 1, n, r->f) == n ? 0 : bad(r, what);
}

/* Little-endian integers (GGUF is little-endian; so is every host margin
 * runs on, but the bytes are assembled so that it does not matter). */
static int rd_u(struct rd *r, size_t n, uint64_t *ret, const char *what)
{
	uint8_t b[8];
	int e = rd_bytes(r, b, n, what);
	if (e < 0)
		return e;
	uint64_t v = 0;
	for (size_t i = n; i-- > 0;)
		v = v << 8 | b[i];
	*ret = v;
	return 0;
}

/* A string into buf (truncated to cap - 1; the rest skipped). */
static int rd_str(struct rd *r, char *buf, size_t cap, const char *what)
{
	uint64_t n;
	int e = rd_u(r, 8, &n, what);
	if (e < 0)
		return e;
	if (n > (1u << 30))
		return bad(r, what);
	size_t keep = n < cap ? (size_t)n : cap - 1;
	if ((e = rd_bytes(r, buf, keep, what)) < 0)
		return e;
	buf[keep] = '\0';
	if (n > keep && fseek(r->f, (long)(n - keep), SEEK_CUR) != 0)
		return bad(r, what);
	return 0;
}

static int skip_value(struct rd *r, uint32_t type, const char *key)
{
	char tmp[8];
	uint64_t n, et;
	int e;
	if (type < V_N && vsize[type] > 0)
		return fseek(r->f, vsize[type], SEEK_CUR) == 0 ? 0 : bad(r, key);
	if (type == V_STR)
		return rd_str(r, tmp, sizeof(tmp), key);
	if (type != V_ARR)
		return bad(r, key);
	if ((e = rd_u(r, 4, &et, key)) < 0 || (e = rd_u(r, 8, &n, key)) < 0)
		return e;
	if (n > MAX_COUNT || et >= V_N || et == V_ARR)
		return bad(r, key);
	if (vsize[et] > 0)
		return fseek(r->f, (long)(n * vsize[et]), SEEK_CUR) == 0 ? 0 : bad(r, key);
	for (uint64_t i = 0; i < n; i++)
		if ((e = rd_str(r, tmp, sizeof(tmp), key)) < 0)
			return e;
	return 0;
}

/* The metadata the shape needs. */
struct meta {
	char arch[16], name[64];
	uint64_t dim, layers, heads, kv_heads, key_length, ffn, ctx, window, alignment;
	bool has_kv_heads, has_key_length;
};

/* Integer value of key (any unsigned or signed integer type). */
static int rd_int(struct rd *r, uint32_t type, uint64_t *ret, const char *key)
{
	if (type > V_I64 || type == V_F32 || type == V_BOOL || type == V_STR || type == V_ARR)
		return bad(r, key);
	int e = rd_u(r, vsize[type], ret, key);
	if (e == 0 && (type == V_I8 || type == V_I16 || type == V_I32 || type == V_I64)) {
		uint64_t sign = 1ull << (vsize[type] * 8 - 1);
		if (*ret & sign)
			return bad(r, key);	/* a negative count */
	}
	return e;
}

static int read_kv(struct rd *r, struct meta *m)
{
	char key[256], want[256];
	uint64_t type;
	int e;
	if ((e = rd_str(r, key, sizeof(key), "key")) < 0 || (e = rd_u(r, 4, &type, key)) < 0)
		return e;
	if (strcmp(key, "general.architecture") == 0 && type == V_STR)
		return rd_str(r, m->arch, sizeof(m->arch), key);
	if (strcmp(key, "general.name") == 0 && type == V_STR)
		return rd_str(r, m->name, sizeof(m->name), key);
	if (strcmp(key, "general.alignment") == 0)
		return rd_int(r, (uint32_t)type, &m->alignment, key);
	static const struct {
		const char *suffix;
		size_t off;
	} ints[] = {
		{ "embedding_length", offsetof(struct meta, dim) },
		{ "block_count", offsetof(struct meta, layers) },
		{ "attention.head_count", offsetof(struct meta, heads) },
		{ "attention.head_count_kv", offsetof(struct meta, kv_heads) },
		{ "attention.key_length", offsetof(struct meta, key_length) },
		{ "feed_forward_length", offsetof(struct meta, ffn) },
		{ "context_length", offsetof(struct meta, ctx) },
		{ "attention.sliding_window", offsetof(struct meta, window) },
	};
	/* {arch}.KEY: general.architecture comes first in every writer's
	 * files; a key of another prefix is skipped. */
	for (size_t i = 0; m->arch[0] && i < sizeof(ints) / sizeof(ints[0]); i++) {
		snprintf(want, sizeof(want), "%s.%s", m->arch, ints[i].suffix);
		if (strcmp(key, want) != 0)
			continue;
		uint64_t *dst = (uint64_t *)((char *)m + ints[i].off);
		if (dst == &m->kv_heads)
			m->has_kv_heads = true;
		if (dst == &m->key_length)
			m->has_key_length = true;
		if (type == V_ARR)	/* per-layer counts (some architectures): not a dense shape */
			return bad(r, key);
		return rd_int(r, (uint32_t)type, dst, key);
	}
	return skip_value(r, (uint32_t)type, key);
}

/* ggml type names for the dtype; the others print as "type N". */
static const char *ttype_name(uint32_t t, char *buf, size_t len)
{
	static const char *const names[] = { [0] = "f32", [1] = "f16", [2] = "q4_0", [3] = "q4_1", [6] = "q5_0",
		[7] = "q5_1", [8] = "q8_0", [10] = "q2_k", [11] = "q3_k", [12] = "q4_k", [13] = "q5_k", [14] = "q6_k",
		[30] = "bf16" };
	if (t < sizeof(names) / sizeof(names[0]) && names[t] != NULL)
		return names[t];
	snprintf(buf, len, "type %u", t);
	return buf;
}

struct tensors {
	uint64_t n_params, embd, out;	/* elements: all, token_embd, output */
	uint64_t by_type[64];		/* 2-D elements per ggml type (< 64) */
	uint64_t max_offset;		/* of a tensor's data, from the data start */
	uint64_t end;			/* offset just after the tensor table */
};

static int read_tensors(struct rd *r, uint64_t n, struct tensors *t)
{
	char name[128];
	uint64_t nd, ne, type, off;
	int e;
	for (uint64_t i = 0; i < n; i++) {
		if ((e = rd_str(r, name, sizeof(name), "tensor name")) < 0 || (e = rd_u(r, 4, &nd, name)) < 0)
			return e;
		if (nd == 0 || nd > 4)
			return bad(r, "tensor dimension count");
		uint64_t elems = 1;
		for (uint64_t d = 0; d < nd; d++) {
			if ((e = rd_u(r, 8, &ne, name)) < 0)
				return e;
			if (ne == 0 || elems > UINT64_MAX / ne)
				return bad(r, "tensor dimensions");
			elems *= ne;
		}
		if ((e = rd_u(r, 4, &type, name)) < 0 || (e = rd_u(r, 8, &off, name)) < 0)
			return e;
		if (off > t->max_offset)
			t->max_offset = off;
		if (t->n_params > UINT64_MAX - elems)
			return bad(r, "tensor sizes");
		t->n_params += elems;
		if (strcmp(name, "token_embd.weight") == 0)
			t->embd = elems;
		if (strcmp(name, "output.weight") == 0)
			t->out = elems;
		if (nd >= 2 && type < 64)
			t->by_type[type] += elems;
	}
	long pos = ftell(r->f);
	if (pos < 0)
		return bad(r, "tensor table");
	t->end = (uint64_t)pos;
	return 0;
}

static int fill_shape(const char *path, const struct meta *m, const struct tensors *t, uint64_t file_size,
		      shape_t *ret, char *err, size_t errlen)
{
	const char *need = m->arch[0] == '\0' ? "general.architecture" : m->dim == 0 ? "embedding_length" :
			   m->layers == 0 ? "block_count" : m->heads == 0 ? "attention.head_count" : NULL;
	if (need != NULL) {
		snprintf(err, errlen, "%s: no %s%s%s (not a transformer model file?)", path,
			 need[0] == 'g' ? "" : m->arch, need[0] == 'g' ? "" : ".", need);
		return -ENOTSUP;
	}
	uint64_t kvh = m->has_kv_heads ? m->kv_heads : m->heads;
	uint64_t hd = m->has_key_length ? m->key_length : m->dim / m->heads;
	if (kvh == 0 || hd == 0 || m->layers > 4096 || m->heads > 4096 || kvh > m->heads || hd > 65536) {
		snprintf(err, errlen, "%s: %s.attention.head_count_kv %llu / key_length %llu out of range", path,
			 m->arch, (unsigned long long)kvh, (unsigned long long)hd);
		return -EBADMSG;
	}
	uint64_t align = m->alignment ? m->alignment : 32;
	uint64_t data = (t->end + align - 1) / align * align;
	/* The last tensor starts at data + max_offset: a file that ends
	 * before it lost its weights. */
	if (t->n_params == 0 || data > file_size || file_size - data <= t->max_offset) {
		snprintf(err, errlen, "%s: %s", path, t->n_params == 0 ? "no tensors (a vocabulary-only file?)" :
			 "truncated: the tensor data is missing");
		return t->n_params == 0 ? -ENOTSUP : -EBADMSG;
	}
	shape_t s;
	memset(&s, 0, sizeof(s));
	const char *base = strrchr(path, '/');
	snprintf(s.name, sizeof(s.name), "%s", m->name[0] ? m->name : base ? base + 1 : path);
	snprintf(s.arch, sizeof(s.arch), "%s", m->arch);
	snprintf(s.source, sizeof(s.source), "GGUF %.200s (metadata and tensor table)", path);
	s.dim = (uint32_t)m->dim;
	s.n_layers = (uint32_t)m->layers;
	s.n_heads = (uint32_t)m->heads;
	s.n_kv_heads = (uint32_t)kvh;
	s.head_dim = (uint32_t)hd;
	s.ffn_dim = (uint32_t)m->ffn;
	s.vocab = m->dim ? (uint32_t)(t->embd / m->dim) : 0;
	s.n_ctx = (uint32_t)m->ctx;
	s.sliding_window = (uint32_t)m->window;
	s.n_params = t->n_params;
	/* The embedding table is looked up, not multiplied, unless the output
	 * head is tied to it. */
	s.n_params_per_token = t->n_params - (t->out ? t->embd : 0);
	s.weight_bytes = file_size - data;
	uint32_t top = 0;
	for (uint32_t i = 1; i < 64; i++)
		if (t->by_type[i] > t->by_type[top])
			top = i;
	char tb[16];
	bool only = true;
	for (uint32_t i = 0; i < 64; i++)
		only &= i == top || t->by_type[i] == 0;
	snprintf(s.dtype, sizeof(s.dtype), "%s%s", only ? "" : "mostly ", ttype_name(top, tb, sizeof(tb)));
	s.fp16_compute = top != 0;
	*ret = s;
	return 0;
}

int shape_from_gguf(const char *path, shape_t *ret, char *err, size_t errlen)
{
	struct stat st;
	FILE *f = fopen(path, "rb");
	if (f == NULL || fstat(fileno(f), &st) != 0) {
		int e = errno;
		snprintf(err, errlen, "%s: %s", path, strerror(e));
		if (f != NULL)
			fclose(f);
		return -e;
	}
	struct rd r = { f, path, err, errlen };
	struct meta m;
	struct tensors *t = calloc(1, sizeof(*t));
	uint64_t magic, version, n_tensors, n_kv;
	int e = -ENOMEM;
	memset(&m, 0, sizeof(m));
	if (t == NULL)
		goto out;
	if ((e = rd_u(&r, 4, &magic, "magic")) < 0)
		goto out;
	if (magic != 0x46554747u) {	/* "GGUF" */
		snprintf(err, errlen, "%s: not a GGUF file (no GGUF magic)", path);
		e = -EBADMSG;
		goto out;
	}
	if ((e = rd_u(&r, 4, &version, "version")) < 0 || (e = rd_u(&r, 8, &n_tensors, "tensor count")) < 0 ||
	    (e = rd_u(&r, 8, &n_kv, "key count")) < 0)
		goto out;
	if (version < 2 || version > 3) {
		snprintf(err, errlen, "%s: GGUF version %llu (versions 2 and 3 are read)", path,
			 (unsigned long long)version);
		e = -ENOTSUP;
		goto out;
	}
	if (n_tensors > MAX_COUNT || n_kv > MAX_COUNT) {
		e = bad(&r, "tensor or key count");
		goto out;
	}
	for (uint64_t i = 0; i < n_kv; i++)
		if ((e = read_kv(&r, &m)) < 0)
			goto out;
	if ((e = read_tensors(&r, n_tensors, t)) < 0)
		goto out;
	if (m.alignment != 0 && (m.alignment & (m.alignment - 1)) != 0) {
		snprintf(err, errlen, "%s: general.alignment %llu is not a power of two", path,
			 (unsigned long long)m.alignment);
		e = -EBADMSG;
		goto out;
	}
	e = fill_shape(path, &m, t, (uint64_t)st.st_size, ret, err, errlen);
out:
	free(t);
	fclose(f);
	return e;
}

int shape_load(const char *spec, const char *dtype, shape_t *ret, char *err, size_t errlen)
{
	size_t n = strlen(spec);
	bool file = strchr(spec, '/') != NULL || (n > 5 && strcmp(spec + n - 5, ".gguf") == 0);
	if (!file)
		return shape_preset(spec, dtype, ret, err, errlen);
	if (dtype != NULL) {
		snprintf(err, errlen, "%s: a GGUF file's weight type is read from the file (drop --dtype)", spec);
		return -EINVAL;
	}
	return shape_from_gguf(spec, ret, err, errlen);
}

uint64_t shape_kv_bytes_per_token(const shape_t *s)
{
	return 2ull * s->n_layers * s->n_kv_heads * s->head_dim * 2;
}

uint64_t shape_kv_bytes_per_seq(const shape_t *s, uint64_t ctx)
{
	if (s->sliding_window > 0 && ctx > s->sliding_window)
		ctx = s->sliding_window;
	return shape_kv_bytes_per_token(s) * ctx;
}

double shape_attn_flops(const shape_t *s, double ctx)
{
	if (s->sliding_window > 0 && ctx > s->sliding_window)
		ctx = s->sliding_window;
	return 4.0 * s->n_layers * s->n_heads * s->head_dim * ctx;
}
