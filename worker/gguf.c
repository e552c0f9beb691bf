/* gguf: GGUF v2/v3 reader (mmap or caller buffer); the v3 writer is
 * gguf_write.c.
 *
 * File layout (little-endian throughout):
 *   "GGUF" u32 version  u64 n_tensors  u64 n_kv
 *   n_kv x { string key, u32 vtype, value }
 *   n_tensors x { string name, u32 n_dims, u64 ne[n_dims], u32 ttype, u64 offset }
 *   padding to general.alignment, then the data section; each tensor's
 *   offset is relative to the data section start and aligned.
 * A string is u64 length + bytes (no NUL). An array value is u32 element
 * type + u64 count + elements.
 *
 * The reader validates all of that once in gguf_open_buffer(); every
 * accessor afterwards trusts the indexes built there. All arithmetic on
 * values read from the file is done against "bytes left" so that a count or
 * length cannot overflow or make us allocate more than the file could hold. */
#include "gguf.h"
#include "gguf_priv.h"
#include "lib/mg_f16.h"
#include "quant.h"
#include "lib/mg_err.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define HEADER_BYTES 24u
/* Smallest possible encodings, used to bound counts before allocating:
 * a kv is a non-empty key (8 + 1), a type (4) and at least 1 value byte;
 * a tensor info is a non-empty name (8 + 1), n_dims (4), one ne (8),
 * type (4) and offset (8). */
#define MIN_KV_BYTES 14u
#define MIN_TENSOR_INFO_BYTES 33u

/* ---- ggml type table ---- */

struct ttype_info {
	const char *name;
	uint32_t blck;	/* elements per block; 0 = removed or unknown */
	uint32_t size;	/* bytes per block */
};

/* ggml_type numbering (ggml.h). Block sizes are those of ggml's block
 * structs; removed types (4, 5, 31..33, 36..38) keep a name only. */
static const struct ttype_info ttypes[] = {
	[0] = { "F32", 1, 4 },
	[1] = { "F16", 1, 2 },
	[2] = { "Q4_0", 32, 18 },
	[3] = { "Q4_1", 32, 20 },
	[4] = { "Q4_2", 0, 0 },
	[5] = { "Q4_3", 0, 0 },
	[6] = { "Q5_0", 32, 22 },
	[7] = { "Q5_1", 32, 24 },
	[8] = { "Q8_0", 32, 34 },
	[9] = { "Q8_1", 32, 36 },
	[10] = { "Q2_K", 256, 84 },
	[11] = { "Q3_K", 256, 110 },
	[12] = { "Q4_K", 256, 144 },
	[13] = { "Q5_K", 256, 176 },
	[14] = { "Q6_K", 256, 210 },
	[15] = { "Q8_K", 256, 292 },
	[16] = { "IQ2_XXS", 256, 66 },
	[17] = { "IQ2_XS", 256, 74 },
	[18] = { "IQ3_XXS", 256, 98 },
	[19] = { "IQ1_S", 256, 50 },
	[20] = { "IQ4_NL", 32, 18 },
	[21] = { "IQ3_S", 256, 110 },
	[22] = { "IQ2_S", 256, 82 },
	[23] = { "IQ4_XS", 256, 136 },
	[24] = { "I8", 1, 1 },
	[25] = { "I16", 1, 2 },
	[26] = { "I32", 1, 4 },
	[27] = { "I64", 1, 8 },
	[28] = { "F64", 1, 8 },
	[29] = { "IQ1_M", 256, 56 },
	[30] = { "BF16", 1, 2 },
	[31] = { "Q4_0_4_4", 0, 0 },
	[32] = { "Q4_0_4_8", 0, 0 },
	[33] = { "Q4_0_8_8", 0, 0 },
	[34] = { "TQ1_0", 256, 54 },
	[35] = { "TQ2_0", 256, 66 },
	[36] = { "IQ4_NL_4_4", 0, 0 },
	[37] = { "IQ4_NL_4_8", 0, 0 },
	[38] = { "IQ4_NL_8_8", 0, 0 },
	[39] = { "MXFP4", 32, 17 },
};
#define N_TTYPES (sizeof(ttypes) / sizeof(ttypes[0]))

const char *gguf_ttype_name(uint32_t type)
{
	return type < N_TTYPES ? ttypes[type].name : "unknown";
}

uint32_t gguf_ttype_block_size(uint32_t type)
{
	return type < N_TTYPES ? ttypes[type].blck : 0;
}

uint32_t gguf_ttype_type_size(uint32_t type)
{
	return type < N_TTYPES ? ttypes[type].size : 0;
}

uint64_t gguf_ttype_nbytes(uint32_t type, uint64_t n_elements)
{
	uint32_t blck = gguf_ttype_block_size(type);
	if (blck == 0 || n_elements % blck != 0)
		return 0;
	uint64_t blocks = n_elements / blck;
	if (blocks > UINT64_MAX / ttypes[type].size)
		return 0;
	return blocks * ttypes[type].size;
}

_Static_assert((int)QUANT_F32 == (int)GGUF_TTYPE_F32 && (int)QUANT_F16 == (int)GGUF_TTYPE_F16 &&
		(int)QUANT_BF16 == (int)GGUF_TTYPE_BF16,
	       "quant.h's float types are ggml_type numbers");
_Static_assert((int)QUANT_Q8_0 == (int)GGUF_TTYPE_Q8_0, "quant.h's types are ggml_type numbers");

bool gguf_ttype_loadable(uint32_t type)
{
	return type == GGUF_TTYPE_F32 || type == GGUF_TTYPE_F16 ||
	       type == GGUF_TTYPE_BF16 || quant_supported(type);
}

static const char *const vtype_names[] = {
	"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
	"bool", "string", "array", "uint64", "int64", "float64",
};
static const uint8_t vtype_sizes[] = { 1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8 };
#define N_VTYPES 13u

const char *gguf_vtype_name(enum gguf_vtype t)
{
	return (unsigned)t < N_VTYPES ? vtype_names[t] : "unknown";
}

size_t gguf_vtype_size(enum gguf_vtype t)
{
	return (unsigned)t < N_VTYPES ? vtype_sizes[t] : 0;
}

/* ---- half precision ---- */

static float bits_f32(uint32_t u)
{
	float f;
	memcpy(&f, &u, 4);
	return f;
}

static uint32_t f32_bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

float gguf_bf16_to_f32(uint16_t h)
{
	return bits_f32((uint32_t)h << 16);
}

uint16_t gguf_f32_to_bf16(float f)
{
	uint32_t x = f32_bits(f);
	if ((x & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((x >> 16) | 0x40u);
	x += 0x7fffu + ((x >> 16) & 1u);
	return (uint16_t)(x >> 16);
}

/* ---- reader ---- */

struct kv {
	char *key;		/* owned, NUL-terminated copy */
	uint32_t type;		/* enum gguf_vtype */
	uint32_t arr_type;	/* element type when type == ARRAY */
	uint64_t arr_n;
	/* borrowed: into the buffer. Scalars: the value; strings: the u64
	 * length; arrays: the first element. */
	const uint8_t *val;
	/* owned, string arrays only: arr_n byte offsets from val of each
	 * string's length field, so the i-th string is O(1) */
	uint64_t *str_off;
};

struct gguf {
	const uint8_t *base;	/* borrowed: the mapping or the caller's buffer */
	size_t size;
	void *map;		/* owned mapping (gguf_open) or NULL */
	size_t map_len;
	uint32_t version;
	uint32_t alignment;
	size_t data_offset;
	uint64_t n_kv;
	struct kv *kv;		/* owned [n_kv] */
	uint64_t *kv_by_key;	/* owned [n_kv]: kv indexes sorted by key */
	uint64_t n_tensors;
	gguf_tensor_t *tensors;	/* owned [n_tensors], names owned */
	uint64_t *t_by_name;	/* owned [n_tensors]: indexes sorted by name */
};

typedef struct rd {
	const uint8_t *p;
	size_t size;
	size_t pos;
	char *err;
	size_t errlen;
} rd_t;


#define BAD(r, ...) mg_seterr((r)->err, (r)->errlen, -EBADMSG, __VA_ARGS__)

static size_t left(const rd_t *r)
{
	return r->size - r->pos;
}

static uint32_t ld32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static uint64_t ld64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

/* Read a u32/u64; what names the field for the error text. */
static int rd_u32(rd_t *r, uint32_t *v, const char *what, const char *who)
{
	if (left(r) < 4)
		return BAD(r, "%s%s: %s at offset %zu is cut off (file ends at %zu)",
			   who, who[0] ? "" : "file", what, r->pos, r->size);
	*v = ld32(r->p + r->pos);
	r->pos += 4;
	return 0;
}

static int rd_u64(rd_t *r, uint64_t *v, const char *what, const char *who)
{
	if (left(r) < 8)
		return BAD(r, "%s%s: %s at offset %zu is cut off (file ends at %zu)",
			   who, who[0] ? "" : "file", what, r->pos, r->size);
	*v = ld64(r->p + r->pos);
	r->pos += 8;
	return 0;
}

/* A string: checks the length against the bytes left, returns its start. */
static int rd_str(rd_t *r, gguf_str_t *s, const char *what, const char *who)
{
	size_t at = r->pos;
	uint64_t len = 0;
	int rc = rd_u64(r, &len, what, who);
	if (rc < 0)
		return rc;
	if (len > left(r))
		return BAD(r, "%s%s: %s at offset %zu has length %llu but only %zu bytes are left in the file",
			   who, who[0] ? "" : "file", what, at, (unsigned long long)len, left(r));
	s->len = len;
	s->data = (const char *)r->p + r->pos;
	r->pos += len;
	return 0;
}

static int check_vtype(rd_t *r, uint32_t t, const char *key, size_t at, bool elem)
{
	if (t >= N_VTYPES)
		return BAD(r, "key '%s': unknown %svalue type %u at offset %zu (expected 0..12)",
			   key, elem ? "array element " : "", t, at);
	return 0;
}

/* Validate one value of scalar type t at r->pos (not array). */
static int rd_scalar(rd_t *r, uint32_t t, const char *key)
{
	if (t == GGUF_VTYPE_STRING) {
		gguf_str_t s;
		char who[96];
		snprintf(who, sizeof(who), "key '%.60s'", key);
		return rd_str(r, &s, "string value", who);
	}
	size_t sz = vtype_sizes[t];
	if (left(r) < sz)
		return BAD(r, "key '%s': %s value at offset %zu is cut off (file ends at %zu)",
			   key, vtype_names[t], r->pos, r->size);
	if (t == GGUF_VTYPE_BOOL && r->p[r->pos] > 1)
		return BAD(r, "key '%s': bool value at offset %zu is %u (expected 0 or 1)",
			   key, r->pos, r->p[r->pos]);
	r->pos += sz;
	return 0;
}

static int rd_array(rd_t *r, struct kv *kv)
{
	size_t at = r->pos;
	char who[96];
	snprintf(who, sizeof(who), "key '%.60s'", kv->key);
	int rc = rd_u32(r, &kv->arr_type, "array element type", who);
	if (rc < 0)
		return rc;
	if ((rc = check_vtype(r, kv->arr_type, kv->key, at, true)) < 0)
		return rc;
	if (kv->arr_type == GGUF_VTYPE_ARRAY)
		return mg_seterr(r->err, r->errlen, -ENOTSUP,
			      "key '%s': arrays of arrays (offset %zu) are not supported", kv->key, at);
	size_t cnt_at = r->pos;
	if ((rc = rd_u64(r, &kv->arr_n, "array count", who)) < 0)
		return rc;
	kv->val = r->p + r->pos;
	if (kv->arr_type != GGUF_VTYPE_STRING) {
		size_t esz = vtype_sizes[kv->arr_type];
		if (kv->arr_n > left(r) / esz)
			return BAD(r, "key '%s': array count %llu at offset %zu needs more than the %zu bytes left in the file",
				   kv->key, (unsigned long long)kv->arr_n, cnt_at, left(r));
		if (kv->arr_type == GGUF_VTYPE_BOOL)
			for (uint64_t i = 0; i < kv->arr_n; i++)
				if (r->p[r->pos + i] > 1)
					return BAD(r, "key '%s': bool element %llu at offset %zu is %u (expected 0 or 1)",
						   kv->key, (unsigned long long)i, r->pos + (size_t)i, r->p[r->pos + i]);
		r->pos += (size_t)(kv->arr_n * esz);
		return 0;
	}
	/* each string takes at least its 8-byte length */
	if (kv->arr_n > left(r) / 8)
		return BAD(r, "key '%s': string array count %llu at offset %zu needs more than the %zu bytes left in the file",
			   kv->key, (unsigned long long)kv->arr_n, cnt_at, left(r));
	kv->str_off = malloc((size_t)(kv->arr_n ? kv->arr_n : 1) * sizeof(uint64_t));
	if (kv->str_off == NULL)
		return mg_seterr(r->err, r->errlen, -ENOMEM, "key '%s': out of memory indexing %llu strings",
			      kv->key, (unsigned long long)kv->arr_n);
	size_t start = r->pos;
	for (uint64_t i = 0; i < kv->arr_n; i++) {
		kv->str_off[i] = r->pos - start;
		gguf_str_t s;
		char what[64];
		snprintf(what, sizeof(what), "string %llu of the array", (unsigned long long)i);
		if ((rc = rd_str(r, &s, what, who)) < 0)
			return rc;
	}
	return 0;
}

/* C11 qsort has no context argument and a file-scope pointer would make
 * two concurrent gguf_open calls race, so: a small merge sort of index
 * arrays with an explicit context (O(n log n), stable). */
typedef int (*cmp_fn)(const void *a, const void *b, void *ctx);

static void msort(uint64_t *v, uint64_t *tmp, uint64_t n, cmp_fn cmp, void *ctx)
{
	if (n < 2)
		return;
	uint64_t h = n / 2;
	msort(v, tmp, h, cmp, ctx);
	msort(v + h, tmp, n - h, cmp, ctx);
	uint64_t i = 0, j = h, k = 0;
	while (i < h && j < n)
		tmp[k++] = cmp(&v[j], &v[i], ctx) < 0 ? v[j++] : v[i++];
	while (i < h)
		tmp[k++] = v[i++];
	while (j < n)
		tmp[k++] = v[j++];
	memcpy(v, tmp, n * sizeof(*v));
}

static int sort_index(uint64_t **ret, uint64_t n, cmp_fn cmp, void *ctx)
{
	uint64_t *v = malloc((size_t)(n ? n : 1) * sizeof(*v));
	uint64_t *tmp = malloc((size_t)(n ? n : 1) * sizeof(*tmp));
	if (v == NULL || tmp == NULL) {
		free(v);
		free(tmp);
		return -ENOMEM;
	}
	for (uint64_t i = 0; i < n; i++)
		v[i] = i;
	msort(v, tmp, n, cmp, ctx);
	free(tmp);
	*ret = v;
	return 0;
}

static int cmp_kv_key(const void *a, const void *b, void *ctx)
{
	const struct kv *kv = ctx;
	return strcmp(kv[*(const uint64_t *)a].key, kv[*(const uint64_t *)b].key);
}

static int cmp_t_name(const void *a, const void *b, void *ctx)
{
	const gguf_tensor_t *t = ctx;
	return strcmp(t[*(const uint64_t *)a].name, t[*(const uint64_t *)b].name);
}

static int cmp_t_off(const void *a, const void *b, void *ctx)
{
	const gguf_tensor_t *t = ctx;
	uint64_t x = t[*(const uint64_t *)a].offset, y = t[*(const uint64_t *)b].offset;
	return x < y ? -1 : x > y;
}

/* NUL-terminated copy of a file string that must not contain NUL. */
static int dup_name(rd_t *r, const gguf_str_t *s, char **ret, const char *what, size_t at)
{
	if (memchr(s->data, '\0', (size_t)s->len) != NULL)
		return BAD(r, "%s at offset %zu contains a NUL byte", what, at);
	char *c = malloc((size_t)s->len + 1);
	if (c == NULL)
		return mg_seterr(r->err, r->errlen, -ENOMEM, "out of memory");
	memcpy(c, s->data, (size_t)s->len);
	c[s->len] = '\0';
	*ret = c;
	return 0;
}

static int parse_kvs(gguf_t *g, rd_t *r)
{
	int rc;
	for (uint64_t i = 0; i < g->n_kv; i++) {
		struct kv *kv = &g->kv[i];
		size_t at = r->pos;
		gguf_str_t key;
		char who[48];
		snprintf(who, sizeof(who), "key #%llu", (unsigned long long)i);
		if ((rc = rd_str(r, &key, "key length", who)) < 0)
			return rc;
		if (key.len == 0)
			return BAD(r, "key #%llu at offset %zu is empty", (unsigned long long)i, at);
		if (key.len > MAX_KEY_LEN)
			return BAD(r, "key #%llu at offset %zu is %llu bytes long (at most %u)",
				   (unsigned long long)i, at, (unsigned long long)key.len, MAX_KEY_LEN);
		if ((rc = dup_name(r, &key, &kv->key, "key", at)) < 0)
			return rc;
		snprintf(who, sizeof(who), "key '%.30s'", kv->key);
		size_t type_at = r->pos;
		if ((rc = rd_u32(r, &kv->type, "value type", who)) < 0)
			return rc;
		if ((rc = check_vtype(r, kv->type, kv->key, type_at, false)) < 0)
			return rc;
		if (kv->type == GGUF_VTYPE_ARRAY) {
			rc = rd_array(r, kv);
		} else {
			kv->val = r->p + r->pos;
			rc = rd_scalar(r, kv->type, kv->key);
		}
		if (rc < 0)
			return rc;
	}
	if ((rc = sort_index(&g->kv_by_key, g->n_kv, cmp_kv_key, g->kv)) < 0)
		return mg_seterr(r->err, r->errlen, rc, "out of memory");
	for (uint64_t i = 1; i < g->n_kv; i++)
		if (strcmp(g->kv[g->kv_by_key[i - 1]].key, g->kv[g->kv_by_key[i]].key) == 0)
			return BAD(r, "duplicate key '%s' (entries #%llu and #%llu)", g->kv[g->kv_by_key[i]].key,
				   (unsigned long long)g->kv_by_key[i - 1], (unsigned long long)g->kv_by_key[i]);

	g->alignment = GGUF_DEFAULT_ALIGNMENT;
	int64_t ai = gguf_find_kv(g, "general.alignment");
	if (ai >= 0) {
		const struct kv *kv = &g->kv[ai];
		if (kv->type != GGUF_VTYPE_UINT32)
			return BAD(r, "key 'general.alignment' has type %s (expected uint32)",
				   gguf_vtype_name(kv->type));
		uint32_t a = ld32(kv->val);
		if (a == 0 || (a & (a - 1)) != 0)
			return BAD(r, "key 'general.alignment' is %u (expected a power of two)", a);
		g->alignment = a;
	}
	return 0;
}

static int parse_tensor_info(gguf_t *g, rd_t *r, uint64_t i)
{
	gguf_tensor_t *t = &g->tensors[i];
	size_t at = r->pos;
	gguf_str_t name;
	char who[96];
	int rc;
	snprintf(who, sizeof(who), "tensor #%llu", (unsigned long long)i);
	if ((rc = rd_str(r, &name, "name", who)) < 0)
		return rc;
	if (name.len == 0 || name.len > MAX_NAME_LEN)
		return BAD(r, "tensor #%llu at offset %zu: name length %llu (expected 1..%u)",
			   (unsigned long long)i, at, (unsigned long long)name.len, MAX_NAME_LEN);
	char *nm = NULL;
	if ((rc = dup_name(r, &name, &nm, "tensor name", at)) < 0)
		return rc;
	t->name = nm;
	snprintf(who, sizeof(who), "tensor '%s'", t->name);
	size_t nd_at = r->pos;
	if ((rc = rd_u32(r, &t->n_dims, "n_dims", who)) < 0)
		return rc;
	if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
		return BAD(r, "tensor '%s': n_dims %u at offset %zu (expected 1..%d)",
			   t->name, t->n_dims, nd_at, GGUF_MAX_DIMS);
	uint64_t n = 1;
	for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++)
		t->ne[d] = 1;
	for (uint32_t d = 0; d < t->n_dims; d++) {
		size_t ne_at = r->pos;
		if ((rc = rd_u64(r, &t->ne[d], "dimension", who)) < 0)
			return rc;
		if (t->ne[d] == 0)
			return BAD(r, "tensor '%s': ne[%u] is 0 at offset %zu (every dimension must be > 0)",
				   t->name, d, ne_at);
		/* ggml counts elements in int64_t */
		if (t->ne[d] > (uint64_t)INT64_MAX / n)
			return BAD(r, "tensor '%s': element count overflows at ne[%u] = %llu (offset %zu)",
				   t->name, d, (unsigned long long)t->ne[d], ne_at);
		n *= t->ne[d];
	}
	t->n_elements = n;
	size_t type_at = r->pos;
	if ((rc = rd_u32(r, &t->type, "type", who)) < 0)
		return rc;
	if (t->type >= N_TTYPES)
		return BAD(r, "tensor '%s': unknown tensor type %u at offset %zu", t->name, t->type, type_at);
	uint32_t blck = ttypes[t->type].blck;
	if (blck == 0)
		return mg_seterr(r->err, r->errlen, -ENOTSUP,
			      "tensor '%s': type %s (%u) was removed from ggml and is not supported",
			      t->name, ttypes[t->type].name, t->type);
	if (t->ne[0] % blck != 0)
		return BAD(r, "tensor '%s': ne[0] = %llu is not a multiple of the %s block size %u",
			   t->name, (unsigned long long)t->ne[0], ttypes[t->type].name, blck);
	t->nbytes = gguf_ttype_nbytes(t->type, n);
	if (t->nbytes == 0)
		return BAD(r, "tensor '%s': byte size of %llu %s elements overflows",
			   t->name, (unsigned long long)n, ttypes[t->type].name);
	if ((rc = rd_u64(r, &t->offset, "data offset", who)) < 0)
		return rc;
	return 0;
}

static int parse_tensors(gguf_t *g, rd_t *r)
{
	int rc;
	for (uint64_t i = 0; i < g->n_tensors; i++)
		if ((rc = parse_tensor_info(g, r, i)) < 0)
			return rc;
	if ((rc = sort_index(&g->t_by_name, g->n_tensors, cmp_t_name, g->tensors)) < 0)
		return mg_seterr(r->err, r->errlen, rc, "out of memory");
	for (uint64_t i = 1; i < g->n_tensors; i++)
		if (strcmp(g->tensors[g->t_by_name[i - 1]].name, g->tensors[g->t_by_name[i]].name) == 0)
			return BAD(r, "duplicate tensor name '%s' (tensors #%llu and #%llu)",
				   g->tensors[g->t_by_name[i]].name,
				   (unsigned long long)g->t_by_name[i - 1], (unsigned long long)g->t_by_name[i]);

	/* data section: the first aligned offset after the infos. A file
	 * without tensors may end before it (vocab-only files do). */
	size_t a = g->alignment;
	size_t pad = (a - r->pos % a) % a;
	if (pad > left(r)) {
		if (g->n_tensors > 0)
			return BAD(r, "data section would start at offset %zu, past the end of the file (%zu bytes)",
				   r->pos + pad, r->size);
		pad = left(r);
	}
	g->data_offset = r->pos + pad;
	size_t avail = r->size - g->data_offset;

	for (uint64_t i = 0; i < g->n_tensors; i++) {
		gguf_tensor_t *t = &g->tensors[i];
		if (t->offset % a != 0)
			return BAD(r, "tensor '%s': data offset %llu is not a multiple of the alignment %zu",
				   t->name, (unsigned long long)t->offset, a);
		if (t->offset > avail || t->nbytes > avail - t->offset)
			return BAD(r, "tensor '%s': data at offset %llu + %llu bytes runs past the end of the file "
				   "(data section holds %zu bytes from file offset %zu)",
				   t->name, (unsigned long long)t->offset, (unsigned long long)t->nbytes,
				   avail, g->data_offset);
		t->data = r->p + g->data_offset + t->offset;
	}

	uint64_t *by_off = NULL;
	if ((rc = sort_index(&by_off, g->n_tensors, cmp_t_off, g->tensors)) < 0)
		return mg_seterr(r->err, r->errlen, rc, "out of memory");
	rc = 0;
	for (uint64_t i = 1; i < g->n_tensors; i++) {
		const gguf_tensor_t *p = &g->tensors[by_off[i - 1]], *q = &g->tensors[by_off[i]];
		if (p->offset + p->nbytes > q->offset) {
			rc = BAD(r, "tensors '%s' and '%s' overlap: [%llu, %llu) and [%llu, %llu) in the data section",
				 p->name, q->name, (unsigned long long)p->offset,
				 (unsigned long long)(p->offset + p->nbytes), (unsigned long long)q->offset,
				 (unsigned long long)(q->offset + q->nbytes));
			break;
		}
	}
	free(by_off);
	return rc;
}

static int parse(gguf_t *g, rd_t *r)
{
	int rc;
	if (r->size < 4 || memcmp(r->p, GGUF_MAGIC, 4) != 0) {
		if (r->size < 4)
			return BAD(r, "not a GGUF file: %zu bytes, too short for the magic", r->size);
		return BAD(r, "not a GGUF file: magic is %02x %02x %02x %02x (expected \"GGUF\")",
			   r->p[0], r->p[1], r->p[2], r->p[3]);
	}
	r->pos = 4;
	if ((rc = rd_u32(r, &g->version, "version", "")) < 0)
		return rc;
	if (g->version == 1)
		return mg_seterr(r->err, r->errlen, -ENOTSUP,
			      "GGUF version 1 is not supported (margin reads versions 2 and 3; re-convert the model)");
	if (g->version != 2 && g->version != 3) {
		if (g->version != 0 && (g->version & 0xffffu) == 0)
			return mg_seterr(r->err, r->errlen, -ENOTSUP,
				      "GGUF version field 0x%08x looks byte-swapped: big-endian GGUF files are not supported",
				      g->version);
		return mg_seterr(r->err, r->errlen, -ENOTSUP,
			      "GGUF version %u is not supported (margin reads versions 2 and 3)", g->version);
	}
	if ((rc = rd_u64(r, &g->n_tensors, "tensor count", "")) < 0)
		return rc;
	if ((rc = rd_u64(r, &g->n_kv, "metadata key count", "")) < 0)
		return rc;
	/* counts against what the rest of the file could possibly hold, so an
	 * absurd count fails here instead of in malloc */
	if (g->n_kv > left(r) / MIN_KV_BYTES)
		return BAD(r, "metadata key count %llu (offset 16) cannot fit in the %zu bytes after the header",
			   (unsigned long long)g->n_kv, left(r));
	if (g->n_tensors > left(r) / MIN_TENSOR_INFO_BYTES)
		return BAD(r, "tensor count %llu (offset 8) cannot fit in the %zu bytes after the header",
			   (unsigned long long)g->n_tensors, left(r));
	if (g->n_kv * MIN_KV_BYTES + g->n_tensors * MIN_TENSOR_INFO_BYTES > left(r))
		return BAD(r, "%llu keys and %llu tensors cannot fit in the %zu bytes after the header",
			   (unsigned long long)g->n_kv, (unsigned long long)g->n_tensors, left(r));
	g->kv = calloc((size_t)(g->n_kv ? g->n_kv : 1), sizeof(*g->kv));
	g->tensors = calloc((size_t)(g->n_tensors ? g->n_tensors : 1), sizeof(*g->tensors));
	if (g->kv == NULL || g->tensors == NULL)
		return mg_seterr(r->err, r->errlen, -ENOMEM, "out of memory for %llu keys and %llu tensors",
			      (unsigned long long)g->n_kv, (unsigned long long)g->n_tensors);
	if ((rc = parse_kvs(g, r)) < 0)
		return rc;
	return parse_tensors(g, r);
}

int gguf_open_buffer(const void *buf, size_t size, gguf_t **ret, char *err, size_t errlen)
{
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (buf == NULL && size > 0)
		return mg_seterr(err, errlen, -EINVAL, "no buffer");
	gguf_t *g = calloc(1, sizeof(*g));
	if (g == NULL)
		return mg_seterr(err, errlen, -ENOMEM, "out of memory");
	g->base = buf;
	g->size = size;
	rd_t r = { .p = buf, .size = size, .pos = 0, .err = err, .errlen = errlen };
	int rc = parse(g, &r);
	if (rc < 0)
		goto fail;
	*ret = g;
	return 0;
fail:
	gguf_close(&g);
	return rc;
}

int gguf_open(const char *path, gguf_t **ret, char *err, size_t errlen)
{
	char sub[512];
	void *map = NULL;
	size_t len = 0;
	gguf_t *g = NULL;
	int rc;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		return mg_seterr(err, errlen, rc, "%s: %s", path, strerror(-rc));
	}
	struct stat st;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		mg_seterr(err, errlen, rc, "%s: %s", path, strerror(-rc));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = mg_seterr(err, errlen, -EINVAL, "%s: not a regular file", path);
		goto fail;
	}
	len = (size_t)st.st_size;
	if (len > 0) {
		map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
		if (map == MAP_FAILED) {
			map = NULL;
			rc = -errno;
			mg_seterr(err, errlen, rc, "%s: mmap of %zu bytes: %s", path, len, strerror(-rc));
			goto fail;
		}
	}
	close(fd);
	fd = -1;
	rc = gguf_open_buffer(map, len, &g, sub, sizeof(sub));
	if (rc < 0) {
		mg_seterr(err, errlen, rc, "%s: %s", path, sub);
		goto fail;
	}
	g->map = map;
	g->map_len = len;
	*ret = g;
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	if (map != NULL)
		munmap(map, len);
	return rc;
}

void gguf_close(gguf_t **pg)
{
	if (pg == NULL || *pg == NULL)
		return;
	gguf_t *g = *pg;
	if (g->kv != NULL)
		for (uint64_t i = 0; i < g->n_kv; i++) {
			free(g->kv[i].key);
			free(g->kv[i].str_off);
		}
	if (g->tensors != NULL)
		for (uint64_t i = 0; i < g->n_tensors; i++)
			free((char *)g->tensors[i].name);
	free(g->kv);
	free(g->kv_by_key);
	free(g->tensors);
	free(g->t_by_name);
	if (g->map != NULL)
		munmap(g->map, g->map_len);
	free(g);
	*pg = NULL;
}

uint32_t gguf_version(const gguf_t *g) { return g->version; }
uint64_t gguf_n_kv(const gguf_t *g) { return g->n_kv; }
uint64_t gguf_n_tensors(const gguf_t *g) { return g->n_tensors; }
size_t gguf_file_size(const gguf_t *g) { return g->size; }
uint32_t gguf_alignment(const gguf_t *g) { return g->alignment; }
size_t gguf_data_offset(const gguf_t *g) { return g->data_offset; }

const char *gguf_kv_key(const gguf_t *g, uint64_t i)
{
	return i < g->n_kv ? g->kv[i].key : NULL;
}

enum gguf_vtype gguf_kv_type(const gguf_t *g, uint64_t i)
{
	return i < g->n_kv ? (enum gguf_vtype)g->kv[i].type : (enum gguf_vtype)-1;
}

int64_t gguf_find_kv(const gguf_t *g, const char *key)
{
	/* binary search over the sorted index; kv_by_key is NULL only while
	 * parse_kvs has not sorted yet, which never reaches here */
	uint64_t lo = 0, hi = g->n_kv;
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		int c = strcmp(g->kv[g->kv_by_key[mid]].key, key);
		if (c == 0)
			return (int64_t)g->kv_by_key[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

static const struct kv *find(const gguf_t *g, const char *key)
{
	int64_t i = gguf_find_kv(g, key);
	return i < 0 ? NULL : &g->kv[i];
}

/* Integer value of a scalar kv: signed flag + magnitude in two forms. */
static int kv_int(const struct kv *kv, bool *neg, uint64_t *u, int64_t *s)
{
	const uint8_t *p = kv->val;
	int64_t v = 0;
	uint64_t uv = 0;
	switch (kv->type) {
	case GGUF_VTYPE_UINT8: uv = p[0]; break;
	case GGUF_VTYPE_UINT16: { uint16_t x; memcpy(&x, p, 2); uv = x; break; }
	case GGUF_VTYPE_UINT32: uv = ld32(p); break;
	case GGUF_VTYPE_UINT64: uv = ld64(p); break;
	case GGUF_VTYPE_INT8: { int8_t x; memcpy(&x, p, 1); v = x; goto sgn; }
	case GGUF_VTYPE_INT16: { int16_t x; memcpy(&x, p, 2); v = x; goto sgn; }
	case GGUF_VTYPE_INT32: { int32_t x; memcpy(&x, p, 4); v = x; goto sgn; }
	case GGUF_VTYPE_INT64: { int64_t x; memcpy(&x, p, 8); v = x; goto sgn; }
	default: return -EINVAL;
	}
	*neg = false;
	*u = uv;
	*s = uv > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)uv;
	return 0;
sgn:
	*neg = v < 0;
	*u = v < 0 ? 0 : (uint64_t)v;
	*s = v;
	return 0;
}

static int get_int(const gguf_t *g, const char *key, bool *neg, uint64_t *u, int64_t *s)
{
	const struct kv *kv = find(g, key);
	if (kv == NULL)
		return -ENOENT;
	return kv_int(kv, neg, u, s);
}

int gguf_get_u32(const gguf_t *g, const char *key, uint32_t *ret)
{
	bool neg;
	uint64_t u;
	int64_t s;
	int rc = get_int(g, key, &neg, &u, &s);
	if (rc < 0)
		return rc;
	if (neg || u > UINT32_MAX)
		return -ERANGE;
	*ret = (uint32_t)u;
	return 0;
}

int gguf_get_i32(const gguf_t *g, const char *key, int32_t *ret)
{
	bool neg;
	uint64_t u;
	int64_t s;
	int rc = get_int(g, key, &neg, &u, &s);
	if (rc < 0)
		return rc;
	if ((!neg && u > INT32_MAX) || s < INT32_MIN)
		return -ERANGE;
	*ret = (int32_t)s;
	return 0;
}

int gguf_get_u64(const gguf_t *g, const char *key, uint64_t *ret)
{
	bool neg;
	uint64_t u;
	int64_t s;
	int rc = get_int(g, key, &neg, &u, &s);
	if (rc < 0)
		return rc;
	if (neg)
		return -ERANGE;
	*ret = u;
	return 0;
}

int gguf_get_i64(const gguf_t *g, const char *key, int64_t *ret)
{
	bool neg;
	uint64_t u;
	int64_t s;
	int rc = get_int(g, key, &neg, &u, &s);
	if (rc < 0)
		return rc;
	if (!neg && u > (uint64_t)INT64_MAX)
		return -ERANGE;
	*ret = s;
	return 0;
}

int gguf_get_f64(const gguf_t *g, const char *key, double *ret)
{
	const struct kv *kv = find(g, key);
	if (kv == NULL)
		return -ENOENT;
	if (kv->type == GGUF_VTYPE_FLOAT32) {
		float f;
		memcpy(&f, kv->val, 4);
		*ret = f;
	} else if (kv->type == GGUF_VTYPE_FLOAT64) {
		memcpy(ret, kv->val, 8);
	} else {
		return -EINVAL;
	}
	return 0;
}

int gguf_get_f32(const gguf_t *g, const char *key, float *ret)
{
	double d;
	int rc = gguf_get_f64(g, key, &d);
	if (rc == 0)
		*ret = (float)d;
	return rc;
}

int gguf_get_bool(const gguf_t *g, const char *key, bool *ret)
{
	const struct kv *kv = find(g, key);
	if (kv == NULL)
		return -ENOENT;
	if (kv->type != GGUF_VTYPE_BOOL)
		return -EINVAL;
	*ret = kv->val[0] != 0;
	return 0;
}

static gguf_str_t str_at(const uint8_t *p)
{
	gguf_str_t s = { ld64(p), (const char *)p + 8 };
	return s;
}

int gguf_get_str(const gguf_t *g, const char *key, gguf_str_t *ret)
{
	int64_t i = gguf_find_kv(g, key);
	return i < 0 ? -ENOENT : gguf_kv_str(g, (uint64_t)i, ret);
}

int gguf_kv_str(const gguf_t *g, uint64_t i, gguf_str_t *ret)
{
	if (i >= g->n_kv)
		return -ENOENT;
	if (g->kv[i].type != GGUF_VTYPE_STRING)
		return -EINVAL;
	*ret = str_at(g->kv[i].val);
	return 0;
}

int gguf_kv_scalar(const gguf_t *g, uint64_t i, const void **ret)
{
	if (i >= g->n_kv)
		return -ENOENT;
	if (g->kv[i].type == GGUF_VTYPE_STRING || g->kv[i].type == GGUF_VTYPE_ARRAY)
		return -EINVAL;
	*ret = g->kv[i].val;
	return 0;
}

int gguf_kv_arr_info(const gguf_t *g, uint64_t i, enum gguf_vtype *ret_type, uint64_t *ret_n)
{
	if (i >= g->n_kv)
		return -ENOENT;
	if (g->kv[i].type != GGUF_VTYPE_ARRAY)
		return -EINVAL;
	if (ret_type != NULL)
		*ret_type = (enum gguf_vtype)g->kv[i].arr_type;
	if (ret_n != NULL)
		*ret_n = g->kv[i].arr_n;
	return 0;
}

int gguf_kv_arr_data(const gguf_t *g, uint64_t i, const void **ret_data)
{
	int rc = gguf_kv_arr_info(g, i, NULL, NULL);
	if (rc < 0)
		return rc;
	if (ret_data != NULL)
		*ret_data = g->kv[i].arr_type == GGUF_VTYPE_STRING ? NULL : g->kv[i].val;
	return 0;
}

int gguf_get_arr(const gguf_t *g, const char *key, enum gguf_vtype *ret_type,
		 uint64_t *ret_n, const void **ret_data)
{
	int64_t i = gguf_find_kv(g, key);
	if (i < 0)
		return -ENOENT;
	int rc = gguf_kv_arr_info(g, (uint64_t)i, ret_type, ret_n);
	if (rc == 0)
		rc = gguf_kv_arr_data(g, (uint64_t)i, ret_data);
	return rc;
}

int gguf_kv_arr_str(const gguf_t *g, uint64_t kv, uint64_t i, gguf_str_t *ret)
{
	if (kv >= g->n_kv)
		return -ENOENT;
	const struct kv *k = &g->kv[kv];
	if (k->type != GGUF_VTYPE_ARRAY || k->arr_type != GGUF_VTYPE_STRING)
		return -EINVAL;
	if (i >= k->arr_n)
		return -ERANGE;
	*ret = str_at(k->val + k->str_off[i]);
	return 0;
}

int gguf_get_arr_str(const gguf_t *g, const char *key, uint64_t i, gguf_str_t *ret)
{
	int64_t kv = gguf_find_kv(g, key);
	return kv < 0 ? -ENOENT : gguf_kv_arr_str(g, (uint64_t)kv, i, ret);
}

const gguf_tensor_t *gguf_tensor(const gguf_t *g, uint64_t i)
{
	return i < g->n_tensors ? &g->tensors[i] : NULL;
}

const gguf_tensor_t *gguf_find_tensor(const gguf_t *g, const char *name)
{
	uint64_t lo = 0, hi = g->n_tensors;
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		const gguf_tensor_t *t = &g->tensors[g->t_by_name[mid]];
		int c = strcmp(t->name, name);
		if (c == 0)
			return t;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

int gguf_tensor_check_loadable(const gguf_tensor_t *t, char *err, size_t errlen)
{
	if (gguf_ttype_loadable(t->type))
		return 0;
	return mg_seterr(err, errlen, -ENOTSUP, "tensor %s has type %s; margin loads " GGUF_LOADABLE_TYPES,
		      t->name, gguf_ttype_name(t->type));
}

int gguf_check_loadable(const gguf_t *g, char *err, size_t errlen)
{
	for (uint64_t i = 0; i < g->n_tensors; i++) {
		int rc = gguf_tensor_check_loadable(&g->tensors[i], err, errlen);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int gguf_tensor_to_f32(const gguf_tensor_t *t, float *dst)
{
	const uint8_t *p = t->data;
	uint64_t n = t->n_elements;
	switch (t->type) {
	case GGUF_TTYPE_F32:
		memcpy(dst, p, (size_t)n * 4);
		return 0;
	case GGUF_TTYPE_F16:
		for (uint64_t i = 0; i < n; i++)
			dst[i] = mg_f16_load(p + 2 * i);
		return 0;
	case GGUF_TTYPE_BF16:
		for (uint64_t i = 0; i < n; i++) {
			uint16_t h;
			memcpy(&h, p + 2 * i, 2);
			dst[i] = gguf_bf16_to_f32(h);
		}
		return 0;
	default:
		if (!quant_supported(t->type))
			return -ENOTSUP;
		return quant_dequant_row(t->type, p, dst, (int64_t)n) < 0 ? -EBADMSG : 0;
	}
}
