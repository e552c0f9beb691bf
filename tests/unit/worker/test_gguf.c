/* gguf: the reference model and vocab files read back as documented in
 * shared/models/README.md; the writer round-trips every value and tensor
 * type; hostile files built from a valid one are errors, never crashes. */
#include "cmds.h"
#include "lib/mg_f16.h"
#include "cu_alloc.h"
#include "cu_main.h"
#include "gguf.h"
#include "model.h"
#include "quant.h"
#include "synth.h"

#include <jansson.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static int read_file(const char *path, uint8_t **ret, size_t *ret_len)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return -errno;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
	if (b == NULL || fread(b, 1, (size_t)n, f) != (size_t)n) {
		free(b);
		fclose(f);
		return -EIO;
	}
	fclose(f);
	*ret = b;
	*ret_len = (size_t)n;
	return 0;
}

static bool str_eq(gguf_str_t s, const char *c)
{
	return s.len == strlen(c) && memcmp(s.data, c, (size_t)s.len) == 0;
}

static void check_shape(const gguf_t *g, const char *name, uint32_t n_dims, uint64_t ne0, uint64_t ne1)
{
	const gguf_tensor_t *t = gguf_find_tensor(g, name);
	CU_ASSERT_PTR_NOT_NULL_FATAL(t);
	CU_ASSERT_STRING_EQUAL(t->name, name);
	CU_ASSERT_EQUAL(t->type, GGUF_TTYPE_F32);
	CU_ASSERT_EQUAL(t->n_dims, n_dims);
	CU_ASSERT_EQUAL(t->ne[0], ne0);
	CU_ASSERT_EQUAL(t->ne[1], ne1);
	CU_ASSERT_EQUAL(t->ne[2], 1);
	CU_ASSERT_EQUAL(t->n_elements, ne0 * ne1);
	CU_ASSERT_EQUAL(t->nbytes, ne0 * ne1 * 4);
	CU_ASSERT_EQUAL(t->offset % gguf_alignment(g), 0);
}

static void test_stories260k(void)
{
	gguf_t *g = NULL;
	char err[512];
	int rc = gguf_open(cu_shared_path("models/stories260K.gguf"), &g, err, sizeof(err));
	if (rc < 0)
		fprintf(stderr, "%s\n", err);
	CU_ASSERT_EQUAL_FATAL(rc, 0);
	CU_ASSERT_EQUAL(gguf_version(g), 3);
	CU_ASSERT_EQUAL(gguf_file_size(g), 1185376);
	CU_ASSERT_EQUAL(gguf_n_tensors(g), 48);
	CU_ASSERT_EQUAL(gguf_alignment(g), 32);

	gguf_str_t s;
	CU_ASSERT_EQUAL(gguf_get_str(g, "general.architecture", &s), 0);
	CU_ASSERT(str_eq(s, "llama"));
	CU_ASSERT_EQUAL(gguf_get_str(g, "general.name", &s), 0);
	CU_ASSERT(str_eq(s, "llama"));
	CU_ASSERT_EQUAL(gguf_get_str(g, "tokenizer.ggml.model", &s), 0);
	CU_ASSERT(str_eq(s, "llama"));

	uint32_t u = 0;
	CU_ASSERT_EQUAL(gguf_get_u32(g, "llama.context_length", &u), 0);
	CU_ASSERT_EQUAL(u, 512);
	CU_ASSERT_EQUAL(gguf_get_u32(g, "llama.embedding_length", &u), 0);
	CU_ASSERT_EQUAL(u, 64);
	CU_ASSERT_EQUAL(gguf_get_u32(g, "llama.feed_forward_length", &u), 0);
	CU_ASSERT_EQUAL(u, 172);
	CU_ASSERT_EQUAL(gguf_get_u32(g, "llama.block_count", &u), 0);
	CU_ASSERT_EQUAL(u, 5);
	CU_ASSERT_EQUAL(gguf_get_u32(g, "llama.attention.head_count", &u), 0);
	CU_ASSERT_EQUAL(u, 8);
	CU_ASSERT_EQUAL(gguf_get_u32(g, "llama.attention.head_count_kv", &u), 0);
	CU_ASSERT_EQUAL(u, 4);
	CU_ASSERT_EQUAL(gguf_get_u32(g, "llama.rope.dimension_count", &u), 0);
	CU_ASSERT_EQUAL(u, 8);
	CU_ASSERT_EQUAL(gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &u), 0);
	CU_ASSERT_EQUAL(u, 1);
	CU_ASSERT_EQUAL(gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &u), 0);
	CU_ASSERT_EQUAL(u, 2);
	CU_ASSERT_EQUAL(gguf_get_u32(g, "tokenizer.ggml.unknown_token_id", &u), 0);
	CU_ASSERT_EQUAL(u, 0);
	CU_ASSERT_EQUAL(gguf_get_u32(g, "tokenizer.ggml.seperator_token_id", &u), 0);
	CU_ASSERT_EQUAL(u, 4294967295u);
	int32_t i32;
	CU_ASSERT_EQUAL(gguf_get_i32(g, "tokenizer.ggml.seperator_token_id", &i32), -ERANGE);
	CU_ASSERT_EQUAL(gguf_get_i32(g, "llama.block_count", &i32), 0);
	CU_ASSERT_EQUAL(i32, 5);
	float f = 0;
	CU_ASSERT_EQUAL(gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &f), 0);
	CU_ASSERT_EQUAL(f, 9.99999974738e-06f);
	CU_ASSERT_EQUAL(gguf_get_f32(g, "llama.rope.freq_base", &f), -ENOENT);
	bool b;
	CU_ASSERT_EQUAL(gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b), -ENOENT);
	CU_ASSERT_EQUAL(gguf_get_u32(g, "general.architecture", &u), -EINVAL);
	CU_ASSERT_EQUAL(gguf_get_str(g, "llama.block_count", &s), -EINVAL);
	CU_ASSERT(gguf_find_kv(g, "no.such.key") < 0);
	int64_t ki = gguf_find_kv(g, "llama.block_count");
	CU_ASSERT_FATAL(ki >= 0);
	CU_ASSERT_STRING_EQUAL(gguf_kv_key(g, (uint64_t)ki), "llama.block_count");
	CU_ASSERT_EQUAL(gguf_kv_type(g, (uint64_t)ki), GGUF_VTYPE_UINT32);

	/* vocabulary arrays */
	enum gguf_vtype t;
	uint64_t n = 0;
	const void *data = (const void *)1;
	CU_ASSERT_EQUAL(gguf_get_arr(g, "tokenizer.ggml.tokens", &t, &n, &data), 0);
	CU_ASSERT_EQUAL(t, GGUF_VTYPE_STRING);
	CU_ASSERT_EQUAL(n, 512);
	CU_ASSERT_PTR_NULL(data);
	CU_ASSERT_EQUAL(gguf_get_arr_str(g, "tokenizer.ggml.tokens", 0, &s), 0);
	CU_ASSERT(str_eq(s, "<unk>"));
	CU_ASSERT_EQUAL(gguf_get_arr_str(g, "tokenizer.ggml.tokens", 3, &s), 0);
	CU_ASSERT(str_eq(s, "<0x00>"));
	CU_ASSERT_EQUAL(gguf_get_arr_str(g, "tokenizer.ggml.tokens", 258, &s), 0);
	CU_ASSERT(str_eq(s, "<0xFF>"));
	CU_ASSERT_EQUAL(gguf_get_arr_str(g, "tokenizer.ggml.tokens", 512, &s), -ERANGE);
	CU_ASSERT_EQUAL(gguf_get_arr(g, "tokenizer.ggml.scores", &t, &n, &data), 0);
	CU_ASSERT_EQUAL(t, GGUF_VTYPE_FLOAT32);
	CU_ASSERT_EQUAL_FATAL(n, 512);
	float sc;
	/* merged pieces have score -(id - 259) */
	memcpy(&sc, (const uint8_t *)data + 4 * 300, 4);
	CU_ASSERT_EQUAL(sc, -41.0f);
	CU_ASSERT_EQUAL(gguf_get_arr(g, "tokenizer.ggml.token_type", &t, &n, &data), 0);
	CU_ASSERT_EQUAL(t, GGUF_VTYPE_INT32);
	CU_ASSERT_EQUAL_FATAL(n, 512);
	int32_t tt[4];
	memcpy(tt, data, sizeof(tt));
	CU_ASSERT_EQUAL(tt[0], 2);	/* <unk>: unknown */
	CU_ASSERT_EQUAL(tt[1], 3);	/* <s>: control */
	CU_ASSERT_EQUAL(tt[3], 6);	/* <0x00>: byte */
	CU_ASSERT_EQUAL(gguf_get_arr_str(g, "tokenizer.ggml.scores", 0, &s), -EINVAL);

	/* tensors: shapes as the README lists them, ne[0] innermost */
	check_shape(g, "token_embd.weight", 2, 64, 512);
	check_shape(g, "output_norm.weight", 1, 64, 1);
	check_shape(g, "output.weight", 2, 64, 512);
	char name[64];
	for (int l = 0; l < 5; l++) {
		snprintf(name, sizeof(name), "blk.%d.attn_q.weight", l);
		check_shape(g, name, 2, 64, 64);
		snprintf(name, sizeof(name), "blk.%d.attn_k.weight", l);
		check_shape(g, name, 2, 64, 32);
		snprintf(name, sizeof(name), "blk.%d.attn_v.weight", l);
		check_shape(g, name, 2, 64, 32);
		snprintf(name, sizeof(name), "blk.%d.attn_output.weight", l);
		check_shape(g, name, 2, 64, 64);
		snprintf(name, sizeof(name), "blk.%d.attn_norm.weight", l);
		check_shape(g, name, 1, 64, 1);
		snprintf(name, sizeof(name), "blk.%d.ffn_gate.weight", l);
		check_shape(g, name, 2, 64, 172);
		snprintf(name, sizeof(name), "blk.%d.ffn_down.weight", l);
		check_shape(g, name, 2, 172, 64);
		snprintf(name, sizeof(name), "blk.%d.ffn_up.weight", l);
		check_shape(g, name, 2, 64, 172);
		snprintf(name, sizeof(name), "blk.%d.ffn_norm.weight", l);
		check_shape(g, name, 1, 64, 1);
	}
	CU_ASSERT_PTR_NULL(gguf_find_tensor(g, "blk.5.attn_q.weight"));
	CU_ASSERT_PTR_NULL(gguf_tensor(g, 48));
	CU_ASSERT_EQUAL(gguf_check_loadable(g, err, sizeof(err)), 0);

	/* the model is tied: output.weight is a copy of the embedding */
	const gguf_tensor_t *emb = gguf_find_tensor(g, "token_embd.weight");
	const gguf_tensor_t *outw = gguf_find_tensor(g, "output.weight");
	CU_ASSERT_EQUAL(memcmp(emb->data, outw->data, (size_t)emb->nbytes), 0);
	float *x = malloc((size_t)emb->n_elements * sizeof(float));
	CU_ASSERT_FATAL(x != NULL);
	CU_ASSERT_EQUAL(gguf_tensor_to_f32(emb, x), 0);
	CU_ASSERT_EQUAL(memcmp(x, emb->data, (size_t)emb->nbytes), 0);
	free(x);
	gguf_close(&g);
	CU_ASSERT_PTR_NULL(g);
	gguf_close(&g);	/* NULL-safe */
}

/* The GGUF tensor data equals the llama2.c checkpoint's: token_embedding
 * starts right after the 7 x int32 header, rms_att after it. */
static void test_stories260k_matches_bin(void)
{
	uint8_t *bin = NULL;
	size_t len = 0;
	CU_ASSERT_EQUAL_FATAL(read_file(cu_shared_path("models/stories260K.bin"), &bin, &len), 0);
	gguf_t *g = NULL;
	char err[512];
	CU_ASSERT_EQUAL_FATAL(gguf_open(cu_shared_path("models/stories260K.gguf"), &g, err, sizeof(err)), 0);
	const gguf_tensor_t *emb = gguf_find_tensor(g, "token_embd.weight");
	const gguf_tensor_t *norm0 = gguf_find_tensor(g, "blk.0.attn_norm.weight");
	CU_ASSERT_FATAL(emb != NULL && norm0 != NULL && len > 28 + 512 * 64 * 4 + 64 * 4);
	CU_ASSERT_EQUAL(memcmp(emb->data, bin + 28, 512 * 64 * 4), 0);
	CU_ASSERT_EQUAL(memcmp(norm0->data, bin + 28 + 512 * 64 * 4, 64 * 4), 0);
	gguf_close(&g);
	free(bin);
}

static void open_vocab(const char *rel, const char *model, uint64_t n_tokens)
{
	gguf_t *g = NULL;
	char err[512];
	int rc = gguf_open(cu_shared_path(rel), &g, err, sizeof(err));
	if (rc < 0)
		fprintf(stderr, "%s\n", err);
	CU_ASSERT_EQUAL_FATAL(rc, 0);
	CU_ASSERT_EQUAL(gguf_n_tensors(g), 0);
	gguf_str_t s;
	CU_ASSERT_EQUAL(gguf_get_str(g, "tokenizer.ggml.model", &s), 0);
	CU_ASSERT(str_eq(s, model));
	enum gguf_vtype t;
	uint64_t n = 0;
	CU_ASSERT_EQUAL(gguf_get_arr(g, "tokenizer.ggml.tokens", &t, &n, NULL), 0);
	CU_ASSERT_EQUAL(t, GGUF_VTYPE_STRING);
	if (n_tokens > 0)
		CU_ASSERT_EQUAL(n, n_tokens);
	/* every string is reachable, and the last one ends inside the file */
	const char *end = NULL;
	for (uint64_t i = 0; i < n; i++) {
		CU_ASSERT_EQUAL_FATAL(gguf_get_arr_str(g, "tokenizer.ggml.tokens", i, &s), 0);
		end = s.data + s.len;
	}
	CU_ASSERT(end != NULL);
	gguf_close(&g);
}

static void test_vocab_files(void)
{
	open_vocab("testdata/vocab/ggml-vocab-llama-spm.gguf", "llama", 0);
	open_vocab("testdata/vocab/ggml-vocab-llama-bpe.gguf", "gpt2", 0);
	open_vocab("testdata/vocab/ggml-vocab-qwen2.gguf", "gpt2", 151936);
	gguf_t *g = NULL;
	char err[512];
	CU_ASSERT_EQUAL_FATAL(gguf_open(cu_shared_path("testdata/vocab/ggml-vocab-qwen2.gguf"), &g, err,
					sizeof(err)), 0);
	gguf_str_t s;
	CU_ASSERT_EQUAL(gguf_get_arr_str(g, "tokenizer.ggml.tokens", 0, &s), 0);
	CU_ASSERT(str_eq(s, "!"));
	CU_ASSERT_EQUAL(gguf_get_str(g, "tokenizer.ggml.pre", &s), 0);
	CU_ASSERT(str_eq(s, "qwen2"));
	gguf_close(&g);
}

static void test_open_errors(void)
{
	gguf_t *g = NULL;
	char err[512];
	CU_ASSERT_EQUAL(gguf_open("/nonexistent/x.gguf", &g, err, sizeof(err)), -ENOENT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "/nonexistent/x.gguf"));
	CU_ASSERT_PTR_NULL(g);
	CU_ASSERT_EQUAL(gguf_open("/", &g, err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "regular file"));
}

/* ---- half precision ---- */

static void test_bf16(void)
{
	for (uint32_t h = 0; h < 0x10000; h++) {
		float f = gguf_bf16_to_f32((uint16_t)h);
		if (isnan(f)) {
			CU_ASSERT(isnan(gguf_bf16_to_f32(gguf_f32_to_bf16(f))));
			continue;
		}
		if (gguf_f32_to_bf16(f) != h) {
			CU_FAIL("bf16 round trip");
			break;
		}
	}
	CU_ASSERT_EQUAL(gguf_bf16_to_f32(0x3f80), 1.0f);
	CU_ASSERT_EQUAL(gguf_bf16_to_f32(0x0001), 0x1p-133f);	/* subnormal */
	CU_ASSERT_EQUAL(gguf_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);	/* tie to even */
	CU_ASSERT_EQUAL(gguf_f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);
	CU_ASSERT_EQUAL(gguf_f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);
	CU_ASSERT_EQUAL(gguf_f32_to_bf16(3.4028235e38f), 0x7f80);	/* FLT_MAX rounds to inf */
	CU_ASSERT_EQUAL(gguf_f32_to_bf16(-INFINITY), 0xff80);
	CU_ASSERT(isnan(gguf_bf16_to_f32(gguf_f32_to_bf16(NAN))));
	/* a NaN whose payload sits only in the low bits must stay NaN */
	uint32_t snan = 0x7f800001u;
	float fs;
	memcpy(&fs, &snan, 4);
	CU_ASSERT(isnan(gguf_bf16_to_f32(gguf_f32_to_bf16(fs))));
}

/* ---- writer round trip ---- */

static const char *tmp_path(const char *name)
{
	static char buf[4][512];
	static int slot;
	char *p = buf[slot++ % 4];
	snprintf(p, 512, "%s/%s", cu_tmpdir(), name);
	return p;
}

/* The scalars test_writer_roundtrip wrote, read back by every getter
 * that may read them, and refused by those that may not. */
static void check_roundtrip_scalars(gguf_t *g)
{
	uint32_t u32;
	int32_t s32;
	uint64_t u64;
	int64_t s64;
	float f;
	double d;
	bool b;
	gguf_str_t s;
	CU_ASSERT_EQUAL(gguf_get_u32(g, "t.u8", &u32), 0);
	CU_ASSERT_EQUAL(u32, 200);
	CU_ASSERT_EQUAL(gguf_get_i32(g, "t.i8", &s32), 0);
	CU_ASSERT_EQUAL(s32, -100);
	CU_ASSERT_EQUAL(gguf_get_u32(g, "t.i8", &u32), -ERANGE);
	CU_ASSERT_EQUAL(gguf_get_u32(g, "t.u16", &u32), 0);
	CU_ASSERT_EQUAL(u32, 60000);
	CU_ASSERT_EQUAL(gguf_get_i32(g, "t.i16", &s32), 0);
	CU_ASSERT_EQUAL(s32, -30000);
	CU_ASSERT_EQUAL(gguf_get_u32(g, "t.u32", &u32), 0);
	CU_ASSERT_EQUAL(u32, 4000000000u);
	CU_ASSERT_EQUAL(gguf_get_i32(g, "t.u32", &s32), -ERANGE);
	CU_ASSERT_EQUAL(gguf_get_i32(g, "t.i32", &s32), 0);
	CU_ASSERT_EQUAL(s32, -2000000000);
	CU_ASSERT_EQUAL(gguf_get_i64(g, "t.i32", &s64), 0);
	CU_ASSERT_EQUAL(s64, -2000000000);
	CU_ASSERT_EQUAL(gguf_get_f32(g, "t.f32", &f), 0);
	CU_ASSERT_EQUAL(f, 0.15625f);
	CU_ASSERT_EQUAL(gguf_get_u32(g, "t.f32", &u32), -EINVAL);
	CU_ASSERT_EQUAL(gguf_get_bool(g, "t.bool", &b), 0);
	CU_ASSERT_EQUAL(b, true);
	CU_ASSERT_EQUAL(gguf_get_bool(g, "t.u8", &b), -EINVAL);
	CU_ASSERT_EQUAL(gguf_get_str(g, "t.str", &s), 0);
	CU_ASSERT(str_eq(s, "h\xc3\xa9llo \xe2\x96\x81world"));
	CU_ASSERT_EQUAL(gguf_get_str(g, "t.empty", &s), 0);
	CU_ASSERT_EQUAL(s.len, 0);
	CU_ASSERT_EQUAL(gguf_get_u64(g, "t.u64", &u64), 0);
	CU_ASSERT_EQUAL(u64, 18000000000000000000ULL);
	CU_ASSERT_EQUAL(gguf_get_i64(g, "t.u64", &s64), -ERANGE);
	CU_ASSERT_EQUAL(gguf_get_u32(g, "t.u64", &u32), -ERANGE);
	CU_ASSERT_EQUAL(gguf_get_i64(g, "t.i64", &s64), 0);
	CU_ASSERT_EQUAL(s64, -1234567890123LL);
	CU_ASSERT_EQUAL(gguf_get_u64(g, "t.i64", &u64), -ERANGE);
	CU_ASSERT_EQUAL(gguf_get_f64(g, "t.f64", &d), 0);
	CU_ASSERT_EQUAL(d, -2.718281828459045);
	CU_ASSERT_EQUAL(gguf_get_f32(g, "t.f64", &f), 0);
	CU_ASSERT_EQUAL(f, (float)-2.718281828459045);
}

/* The tensors test_writer_roundtrip wrote: in order, aligned, bytes
 * equal, converted exactly. */
static void check_roundtrip_tensors(gguf_t *g, const float *f32d, size_t f32_bytes, const float *f16v)
{
	CU_ASSERT_EQUAL_FATAL(gguf_n_tensors(g), 4);
	static const char *tn[] = { "t.f32", "t.f16", "t.bf16", "t.q8" };
	for (uint64_t i = 0; i < 4; i++) {
		const gguf_tensor_t *tt = gguf_tensor(g, i);
		CU_ASSERT_STRING_EQUAL(tt->name, tn[i]);
		CU_ASSERT_EQUAL(tt->offset % 32, 0);
		CU_ASSERT_EQUAL(((const uint8_t *)tt->data - (const uint8_t *)gguf_tensor(g, 0)->data) % 32, 0);
	}
	const gguf_tensor_t *tf = gguf_find_tensor(g, "t.f32");
	CU_ASSERT_EQUAL(tf->n_dims, 2);
	CU_ASSERT_EQUAL(tf->ne[0], 3);
	CU_ASSERT_EQUAL(tf->ne[1], 2);
	CU_ASSERT_EQUAL(tf->n_elements, 6);
	float out[128];
	CU_ASSERT_EQUAL(gguf_tensor_to_f32(tf, out), 0);
	CU_ASSERT_EQUAL(memcmp(out, f32d, f32_bytes), 0);
	const gguf_tensor_t *th = gguf_find_tensor(g, "t.f16");
	CU_ASSERT_EQUAL(th->type, GGUF_TTYPE_F16);
	CU_ASSERT_EQUAL(th->nbytes, 16);
	CU_ASSERT_EQUAL(gguf_tensor_to_f32(th, out), 0);
	for (int i = 0; i < 8; i++)
		CU_ASSERT_EQUAL(out[i], f16v[i]);
	CU_ASSERT(signbit(out[4]));
	const gguf_tensor_t *tb = gguf_find_tensor(g, "t.bf16");
	CU_ASSERT_EQUAL(tb->n_dims, 3);
	CU_ASSERT_EQUAL(tb->ne[2], 2);
	CU_ASSERT_EQUAL(tb->ne[3], 1);
	CU_ASSERT_EQUAL(gguf_tensor_to_f32(tb, out), 0);
	CU_ASSERT_EQUAL(out[0], 1.0f);
	CU_ASSERT_EQUAL(out[1], -2.0f);
	CU_ASSERT_EQUAL(out[2], 3.140625f);
	CU_ASSERT(fabsf(out[3] - 1e30f) <= 1e30f / 128);	/* 8-bit mantissa */
	CU_ASSERT(fabsf(out[4] + 1e-30f) <= 1e-30f / 128);
	CU_ASSERT_EQUAL(out[6], 256.0f);
	CU_ASSERT_EQUAL(out[7], -0.0078125f);
	const gguf_tensor_t *tq = gguf_find_tensor(g, "t.q8");
	CU_ASSERT_EQUAL(tq->type, GGUF_TTYPE_Q8_0);
	CU_ASSERT_EQUAL(tq->nbytes, 4 * 34);
	CU_ASSERT_EQUAL(tq->n_elements, 128);
	CU_ASSERT_EQUAL(gguf_tensor_to_f32(tq, out), 0);
	for (int bk = 0; bk < 4; bk++)
		for (int j = 0; j < 32; j++)
			CU_ASSERT_EQUAL(out[bk * 32 + j], ldexpf((float)(j - 16 - bk), -bk));
}

static void test_writer_roundtrip(void)
{
	gguf_writer_t *w = gguf_writer_new();
	CU_ASSERT_PTR_NOT_NULL_FATAL(w);
	uint8_t u8 = 200;
	int8_t i8 = -100;
	uint16_t u16 = 60000;
	int16_t i16 = -30000;
	int64_t i64 = -1234567890123LL;
	double f64 = -2.718281828459045;
	CU_ASSERT_EQUAL(gguf_writer_set_val(w, "t.u8", GGUF_VTYPE_UINT8, &u8), 0);
	CU_ASSERT_EQUAL(gguf_writer_set_val(w, "t.i8", GGUF_VTYPE_INT8, &i8), 0);
	CU_ASSERT_EQUAL(gguf_writer_set_val(w, "t.u16", GGUF_VTYPE_UINT16, &u16), 0);
	CU_ASSERT_EQUAL(gguf_writer_set_val(w, "t.i16", GGUF_VTYPE_INT16, &i16), 0);
	CU_ASSERT_EQUAL(gguf_writer_set_u32(w, "t.u32", 4000000000u), 0);
	CU_ASSERT_EQUAL(gguf_writer_set_i32(w, "t.i32", -2000000000), 0);
	CU_ASSERT_EQUAL(gguf_writer_set_f32(w, "t.f32", 0.15625f), 0);
	CU_ASSERT_EQUAL(gguf_writer_set_bool(w, "t.bool", true), 0);
	CU_ASSERT_EQUAL(gguf_writer_set_str(w, "t.str", "h\xc3\xa9llo \xe2\x96\x81world"), 0);
	CU_ASSERT_EQUAL(gguf_writer_set_u64(w, "t.u64", 18000000000000000000ULL), 0);
	CU_ASSERT_EQUAL(gguf_writer_set_val(w, "t.i64", GGUF_VTYPE_INT64, &i64), 0);
	CU_ASSERT_EQUAL(gguf_writer_set_val(w, "t.f64", GGUF_VTYPE_FLOAT64, &f64), 0);
	CU_ASSERT_EQUAL(gguf_writer_set_str(w, "t.empty", ""), 0);
	/* one array per numeric element type, with a distinct pattern */
	static const enum gguf_vtype at[] = {
		GGUF_VTYPE_UINT8, GGUF_VTYPE_INT8, GGUF_VTYPE_UINT16, GGUF_VTYPE_INT16,
		GGUF_VTYPE_UINT32, GGUF_VTYPE_INT32, GGUF_VTYPE_FLOAT32, GGUF_VTYPE_BOOL,
		GGUF_VTYPE_UINT64, GGUF_VTYPE_INT64, GGUF_VTYPE_FLOAT64,
	};
	uint8_t pattern[8 * 7];
	for (size_t i = 0; i < sizeof(pattern); i++)
		pattern[i] = (uint8_t)(i * 37 + 11);
	uint8_t bools[7] = { 1, 0, 0, 1, 1, 0, 1 };
	char key[64];
	for (size_t k = 0; k < sizeof(at) / sizeof(at[0]); k++) {
		snprintf(key, sizeof(key), "arr.%s", gguf_vtype_name(at[k]));
		const void *d = at[k] == GGUF_VTYPE_BOOL ? (const void *)bools : (const void *)pattern;
		CU_ASSERT_EQUAL(gguf_writer_set_arr(w, key, at[k], d, 7), 0);
	}
	CU_ASSERT_EQUAL(gguf_writer_set_arr(w, "arr.empty", GGUF_VTYPE_INT32, NULL, 0), 0);
	const char *strs[] = { "<unk>", "", "\xe2\x96\x81the", "a b\nc" };
	CU_ASSERT_EQUAL(gguf_writer_set_arr_str(w, "arr.str", strs, 4), 0);

	/* tensors of every loadable type; values exactly representable */
	float f32d[6] = { 1.5f, -2.25f, 0.0f, 3.0e-5f, -65504.0f, 1e20f };
	uint64_t ne_f32[2] = { 3, 2 };
	uint16_t f16d[8];
	float f16v[8] = { 1.0f, -0.5f, 65504.0f, 0x1p-24f, -0.0f, 0.333251953125f, 2048.0f, -1.0f };
	for (int i = 0; i < 8; i++)
		f16d[i] = mg_f32_to_f16(f16v[i]);
	uint64_t ne_f16[1] = { 8 };
	uint16_t bf16d[8];
	float bf16v[8] = { 1.0f, -2.0f, 3.140625f, 1e30f, -1e-30f, 0.0f, 256.0f, -0.0078125f };
	for (int i = 0; i < 8; i++)
		bf16d[i] = gguf_f32_to_bf16(bf16v[i]);
	uint64_t ne_bf16[3] = { 4, 1, 2 };
	/* Q8_0: 64 x 2 = 4 blocks; block b has scale 2^-b and q = j - 16 - b */
	uint8_t q8[4 * GGUF_Q8_0_BYTES];
	for (int b = 0; b < 4; b++) {
		uint16_t d = mg_f32_to_f16(ldexpf(1.0f, -b));
		memcpy(q8 + b * GGUF_Q8_0_BYTES, &d, 2);
		for (int j = 0; j < 32; j++)
			q8[b * GGUF_Q8_0_BYTES + 2 + j] = (uint8_t)(int8_t)(j - 16 - b);
	}
	uint64_t ne_q8[2] = { 64, 2 };
	CU_ASSERT_EQUAL(gguf_writer_add_tensor(w, "t.f32", GGUF_TTYPE_F32, 2, ne_f32, f32d, sizeof(f32d)), 0);
	CU_ASSERT_EQUAL(gguf_writer_add_tensor(w, "t.f16", GGUF_TTYPE_F16, 1, ne_f16, f16d, sizeof(f16d)), 0);
	CU_ASSERT_EQUAL(gguf_writer_add_tensor(w, "t.bf16", GGUF_TTYPE_BF16, 3, ne_bf16, bf16d, sizeof(bf16d)), 0);
	CU_ASSERT_EQUAL(gguf_writer_add_tensor(w, "t.q8", GGUF_TTYPE_Q8_0, 2, ne_q8, q8, sizeof(q8)), 0);

	const char *path = tmp_path("roundtrip.gguf");
	char err[512];
	int rc = gguf_writer_write(w, path, err, sizeof(err));
	if (rc < 0)
		fprintf(stderr, "%s\n", err);
	CU_ASSERT_EQUAL_FATAL(rc, 0);
	gguf_writer_destroy(&w);
	CU_ASSERT_PTR_NULL(w);
	gguf_writer_destroy(&w);

	gguf_t *g = NULL;
	rc = gguf_open(path, &g, err, sizeof(err));
	if (rc < 0)
		fprintf(stderr, "%s\n", err);
	CU_ASSERT_EQUAL_FATAL(rc, 0);
	CU_ASSERT_EQUAL(gguf_version(g), 3);
	CU_ASSERT_EQUAL(gguf_alignment(g), 32);
	CU_ASSERT_EQUAL(gguf_data_offset(g) % 32, 0);
	/* keys in insertion order */
	static const char *order[] = { "t.u8", "t.i8", "t.u16", "t.i16", "t.u32", "t.i32", "t.f32",
				       "t.bool", "t.str", "t.u64", "t.i64", "t.f64", "t.empty" };
	CU_ASSERT_EQUAL_FATAL(gguf_n_kv(g), 13 + 11 + 2);
	for (size_t i = 0; i < 13; i++)
		CU_ASSERT_STRING_EQUAL(gguf_kv_key(g, i), order[i]);
	CU_ASSERT_STRING_EQUAL(gguf_kv_key(g, 25), "arr.str");
	CU_ASSERT_EQUAL(gguf_kv_type(g, 0), GGUF_VTYPE_UINT8);
	CU_ASSERT_EQUAL(gguf_kv_type(g, 11), GGUF_VTYPE_FLOAT64);

	check_roundtrip_scalars(g);

	gguf_str_t s;
	for (size_t k = 0; k < sizeof(at) / sizeof(at[0]); k++) {
		snprintf(key, sizeof(key), "arr.%s", gguf_vtype_name(at[k]));
		enum gguf_vtype t;
		uint64_t n;
		const void *data;
		CU_ASSERT_EQUAL_FATAL(gguf_get_arr(g, key, &t, &n, &data), 0);
		CU_ASSERT_EQUAL(t, at[k]);
		CU_ASSERT_EQUAL(n, 7);
		const void *want = at[k] == GGUF_VTYPE_BOOL ? (const void *)bools : (const void *)pattern;
		CU_ASSERT_EQUAL(memcmp(data, want, 7 * gguf_vtype_size(at[k])), 0);
	}
	enum gguf_vtype t;
	uint64_t n = 99;
	CU_ASSERT_EQUAL(gguf_get_arr(g, "arr.empty", &t, &n, NULL), 0);
	CU_ASSERT_EQUAL(t, GGUF_VTYPE_INT32);
	CU_ASSERT_EQUAL(n, 0);
	CU_ASSERT_EQUAL(gguf_get_arr(g, "t.u8", &t, &n, NULL), -EINVAL);
	CU_ASSERT_EQUAL(gguf_get_arr(g, "arr.str", &t, &n, NULL), 0);
	CU_ASSERT_EQUAL(t, GGUF_VTYPE_STRING);
	CU_ASSERT_EQUAL_FATAL(n, 4);
	for (uint64_t i = 0; i < 4; i++) {
		CU_ASSERT_EQUAL(gguf_get_arr_str(g, "arr.str", i, &s), 0);
		CU_ASSERT(str_eq(s, strs[i]));
	}

	check_roundtrip_tensors(g, f32d, sizeof(f32d), f16v);
	CU_ASSERT_EQUAL(gguf_check_loadable(g, err, sizeof(err)), 0);
	gguf_close(&g);
}

static void test_writer_alignment_and_q4k(void)
{
	gguf_writer_t *w = gguf_writer_new();
	CU_ASSERT_EQUAL(gguf_writer_set_u32(w, "general.alignment", 48), -EINVAL);
	CU_ASSERT_EQUAL(gguf_writer_set_u64(w, "general.alignment", 64), -EINVAL);
	CU_ASSERT_EQUAL(gguf_writer_set_u32(w, "general.alignment", 64), 0);
	CU_ASSERT_EQUAL(gguf_writer_set_u32(w, "general.alignment", 64), -EEXIST);
	CU_ASSERT_EQUAL(gguf_writer_set_str(w, "", "x"), -EINVAL);
	uint8_t iq2[2 * 66] = { 0 };	/* IQ2_XXS: a type margin lists but cannot load */
	float small[3] = { 1, 2, 3 };
	uint64_t ne[2] = { 256, 2 }, ne3[1] = { 3 }, ne0[1] = { 0 };
	CU_ASSERT_EQUAL(gguf_writer_add_tensor(w, "tiny", GGUF_TTYPE_F32, 1, ne3, small, sizeof(small)), 0);
	CU_ASSERT_EQUAL(gguf_writer_add_tensor(w, "tiny", GGUF_TTYPE_F32, 1, ne3, small, sizeof(small)), -EEXIST);
	CU_ASSERT_EQUAL(gguf_writer_add_tensor(w, "bad", GGUF_TTYPE_F32, 1, ne3, small, 8), -EINVAL);
	CU_ASSERT_EQUAL(gguf_writer_add_tensor(w, "bad", GGUF_TTYPE_F32, 1, ne0, small, 0), -EINVAL);
	CU_ASSERT_EQUAL(gguf_writer_add_tensor(w, "bad", GGUF_TTYPE_F32, 5, ne3, small, 12), -EINVAL);
	CU_ASSERT_EQUAL(gguf_writer_add_tensor(w, "bad", GGUF_TTYPE_Q8_0, 1, ne3, small, 12), -EINVAL);
	CU_ASSERT_EQUAL(gguf_writer_add_tensor(w, "blk.0.attn_q.weight", 16, 2, ne, iq2, sizeof(iq2)), 0);
	const char *path = tmp_path("iq2.gguf");
	char err[512];
	CU_ASSERT_EQUAL_FATAL(gguf_writer_write(w, path, err, sizeof(err)), 0);
	gguf_writer_destroy(&w);

	gguf_t *g = NULL;
	CU_ASSERT_EQUAL_FATAL(gguf_open(path, &g, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(gguf_alignment(g), 64);
	CU_ASSERT_EQUAL(gguf_data_offset(g) % 64, 0);
	const gguf_tensor_t *t = gguf_find_tensor(g, "blk.0.attn_q.weight");
	CU_ASSERT_PTR_NOT_NULL_FATAL(t);
	CU_ASSERT_EQUAL(t->offset, 64);	/* "tiny" (12 bytes) padded to 64 */
	CU_ASSERT_EQUAL(t->nbytes, 132);
	CU_ASSERT_STRING_EQUAL(gguf_ttype_name(t->type), "IQ2_XXS");
	float out[512];
	CU_ASSERT_EQUAL(gguf_tensor_to_f32(t, out), -ENOTSUP);
	err[0] = '\0';
	CU_ASSERT_EQUAL(gguf_check_loadable(g, err, sizeof(err)), -ENOTSUP);
	CU_ASSERT_STRING_EQUAL(err, "tensor blk.0.attn_q.weight has type IQ2_XXS; margin loads "
			       "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS");
	gguf_close(&g);
}

static bool has_tmp_leftovers(const char *dir)
{
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "ls '%s' | grep -q '\\.tmp\\.'", dir);
	return system(cmd) == 0;
}

static void test_writer_errors(void)
{
	gguf_writer_t *w = gguf_writer_new();
	CU_ASSERT_EQUAL(gguf_writer_set_str(w, "general.name", "x"), 0);
	char err[512];
	CU_ASSERT(gguf_writer_write(w, "/nonexistent/dir/m.gguf", err, sizeof(err)) == -ENOENT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "/nonexistent/dir/m.gguf"));

	/* a write that runs out of space: the file size limit gives EFBIG on
	 * the write just as a full disk gives ENOSPC */
	static uint8_t big[256 * 1024];
	uint64_t ne[1] = { sizeof(big) / 4 };
	CU_ASSERT_EQUAL(gguf_writer_add_tensor(w, "big", GGUF_TTYPE_F32, 1, ne, big, sizeof(big)), 0);
	char dir[512];
	snprintf(dir, sizeof(dir), "%s/full", cu_tmpdir());
	mkdir(dir, 0755);
	char path[600];
	snprintf(path, sizeof(path), "%s/m.gguf", dir);
	struct rlimit old, lim;
	CU_ASSERT_EQUAL_FATAL(getrlimit(RLIMIT_FSIZE, &old), 0);
	void (*oldsig)(int) = signal(SIGXFSZ, SIG_IGN);
	lim = old;
	lim.rlim_cur = 64 * 1024;
	CU_ASSERT_EQUAL_FATAL(setrlimit(RLIMIT_FSIZE, &lim), 0);
	int rc = gguf_writer_write(w, path, err, sizeof(err));
	setrlimit(RLIMIT_FSIZE, &old);
	signal(SIGXFSZ, oldsig);
	CU_ASSERT_EQUAL(rc, -EFBIG);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, path));
	CU_ASSERT(access(path, F_OK) != 0);	/* nothing half-written in place */
	CU_ASSERT(!has_tmp_leftovers(dir));
	/* and the same writer succeeds once there is room */
	CU_ASSERT_EQUAL(gguf_writer_write(w, path, err, sizeof(err)), 0);
	CU_ASSERT(!has_tmp_leftovers(dir));
	gguf_t *g = NULL;
	CU_ASSERT_EQUAL(gguf_open(path, &g, err, sizeof(err)), 0);
	gguf_close(&g);
	gguf_writer_destroy(&w);
}

/* ---- hostile files ----
 * A tiny valid file is built byte by byte from knobs; each case turns one
 * knob. Layout: header; kv general.architecture (string), general.alignment
 * (u32), tok.tokens (string array of 3), tok.scores (f32 array of 3);
 * tensors a.weight F32 [4,2] at 0 and b.weight Q8_0 [32] at 32; the file
 * ends exactly at the end of b.weight's data. */

typedef struct bld {
	uint8_t *b;
	size_t n, cap;
} bld_t;

static void put(bld_t *m, const void *p, size_t len)
{
	if (m->n + len > m->cap) {
		m->cap = (m->n + len) * 2 + 64;
		m->b = realloc(m->b, m->cap);
	}
	memcpy(m->b + m->n, p, len);
	m->n += len;
}

static void put_u32(bld_t *m, uint32_t v) { put(m, &v, 4); }
static void put_u64(bld_t *m, uint64_t v) { put(m, &v, 8); }

static void put_str(bld_t *m, const char *s)
{
	put_u64(m, strlen(s));
	put(m, s, strlen(s));
}

typedef struct knobs {
	const char *magic;
	uint32_t version;
	uint64_t n_tensors, n_kv;
	uint64_t arch_len;	/* length field of the architecture value */
	uint32_t arch_vtype;
	uint32_t align_vtype;
	uint32_t align;
	uint32_t tok_elem_type;
	uint64_t tok_count;
	uint64_t scores_count;
	const char *key3;	/* name of the fourth key */
	const char *t0_name, *t1_name;
	uint32_t t0_n_dims;
	uint64_t t0_ne[5];
	uint32_t t0_type, t1_type;
	uint64_t t1_ne0;
	uint64_t t0_off, t1_off;
	uint8_t bool_val;	/* appended as a fifth key when != 0xff */
} knobs_t;

static knobs_t knobs_default(void)
{
	knobs_t k = {
		.magic = "GGUF", .version = 3, .n_tensors = 2, .n_kv = 4,
		.arch_len = 5, .arch_vtype = GGUF_VTYPE_STRING,
		.align_vtype = GGUF_VTYPE_UINT32, .align = 32,
		.tok_elem_type = GGUF_VTYPE_STRING, .tok_count = 3, .scores_count = 3,
		.key3 = "tok.scores",
		.t0_name = "a.weight", .t1_name = "b.weight",
		.t0_n_dims = 2, .t0_ne = { 4, 2, 1, 1, 1 }, .t0_type = GGUF_TTYPE_F32,
		.t1_type = GGUF_TTYPE_Q8_0, .t1_ne0 = 32,
		.t0_off = 0, .t1_off = 32, .bool_val = 0xff,
	};
	return k;
}

static bld_t build(const knobs_t *k)
{
	bld_t m = { NULL, 0, 0 };
	put(&m, k->magic, 4);
	put_u32(&m, k->version);
	put_u64(&m, k->n_tensors);
	put_u64(&m, k->n_kv + (k->bool_val != 0xff));
	put_str(&m, "general.architecture");
	put_u32(&m, k->arch_vtype);
	put_u64(&m, k->arch_len);
	put(&m, "llama", 5);
	put_str(&m, "general.alignment");
	put_u32(&m, k->align_vtype);
	put_u32(&m, k->align);
	if (k->align_vtype == GGUF_VTYPE_UINT64)
		put_u32(&m, 0);
	put_str(&m, "tok.tokens");
	put_u32(&m, GGUF_VTYPE_ARRAY);
	put_u32(&m, k->tok_elem_type);
	put_u64(&m, k->tok_count);
	put_str(&m, "a");
	put_str(&m, "bc");
	put_str(&m, "def");
	put_str(&m, k->key3);
	put_u32(&m, GGUF_VTYPE_ARRAY);
	put_u32(&m, GGUF_VTYPE_FLOAT32);
	put_u64(&m, k->scores_count);
	float sc[3] = { -1, -2, -3 };
	put(&m, sc, sizeof(sc));
	if (k->bool_val != 0xff) {
		put_str(&m, "x.flag");
		put_u32(&m, GGUF_VTYPE_BOOL);
		put(&m, &k->bool_val, 1);
	}
	/* tensor infos */
	put_str(&m, k->t0_name);
	put_u32(&m, k->t0_n_dims);
	for (uint32_t d = 0; d < k->t0_n_dims && d < 5; d++)
		put_u64(&m, k->t0_ne[d]);
	put_u32(&m, k->t0_type);
	put_u64(&m, k->t0_off);
	put_str(&m, k->t1_name);
	put_u32(&m, 1);
	put_u64(&m, k->t1_ne0);
	put_u32(&m, k->t1_type);
	put_u64(&m, k->t1_off);
	while (m.n % 32 != 0)
		put(&m, "", 1);
	/* data: a.weight 32 bytes, b.weight one Q8_0 block */
	float a[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	put(&m, a, sizeof(a));
	uint8_t q[34];
	uint16_t d = mg_f32_to_f16(0.25f);
	memcpy(q, &d, 2);
	for (int j = 0; j < 32; j++)
		q[2 + j] = (uint8_t)(j - 10);
	put(&m, q, sizeof(q));
	return m;
}

/* Every open must fail with rc (-EBADMSG or -ENOTSUP) and a message
 * containing word. */
static void expect_bad(const knobs_t *k, int want_rc, const char *word, const char *what)
{
	bld_t m = build(k);
	gguf_t *g = NULL;
	char err[512] = "";
	int rc = gguf_open_buffer(m.b, m.n, &g, err, sizeof(err));
	if (rc != want_rc || strstr(err, word) == NULL) {
		fprintf(stderr, "\n  case %s: rc %d (want %d), err \"%s\" (want \"%s\")\n", what, rc, want_rc,
			err, word);
		CU_FAIL("hostile file not refused as expected");
	}
	CU_ASSERT_PTR_NULL(g);
	gguf_close(&g);
	free(m.b);
}

static void test_hostile_base_valid(void)
{
	knobs_t k = knobs_default();
	bld_t m = build(&k);
	gguf_t *g = NULL;
	char err[512] = "";
	int rc = gguf_open_buffer(m.b, m.n, &g, err, sizeof(err));
	if (rc < 0)
		fprintf(stderr, "%s\n", err);
	CU_ASSERT_EQUAL_FATAL(rc, 0);
	gguf_str_t s;
	CU_ASSERT_EQUAL(gguf_get_arr_str(g, "tok.tokens", 2, &s), 0);
	CU_ASSERT(str_eq(s, "def"));
	float out[32];
	CU_ASSERT_EQUAL(gguf_tensor_to_f32(gguf_find_tensor(g, "b.weight"), out), 0);
	CU_ASSERT_EQUAL(out[0], -2.5f);
	CU_ASSERT_EQUAL(out[31], 5.25f);
	gguf_close(&g);
	/* version 2 has the same little-endian layout */
	knobs_t k2 = knobs_default();
	k2.version = 2;
	bld_t m2 = build(&k2);
	CU_ASSERT_EQUAL(gguf_open_buffer(m2.b, m2.n, &g, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(gguf_version(g), 2);
	CU_ASSERT_EQUAL(gguf_n_tensors(g), 2);
	gguf_close(&g);
	free(m2.b);
	/* every shorter prefix is an error with a message, never a crash */
	for (size_t len = 0; len < m.n; len++) {
		err[0] = '\0';
		rc = gguf_open_buffer(m.b, len, &g, err, sizeof(err));
		if (rc != -EBADMSG || err[0] == '\0') {
			fprintf(stderr, "\n  cut at %zu of %zu: rc %d err \"%s\"\n", len, m.n, rc, err);
			CU_FAIL("truncated file accepted");
			gguf_close(&g);
			break;
		}
	}
	/* a copy in an exactly-sized heap block, so ASan sees any overread */
	for (size_t len = 0; len < m.n; len++) {
		uint8_t *c = malloc(len ? len : 1);
		memcpy(c, m.b, len);
		rc = gguf_open_buffer(c, len, &g, err, sizeof(err));
		CU_ASSERT(rc < 0);
		gguf_close(&g);
		free(c);
	}
	free(m.b);
}

static void test_hostile_cases(void)
{
	knobs_t k;
#define CASE(field_assign, rc, word)                            \
	do {                                                    \
		k = knobs_default();                            \
		field_assign;                                   \
		expect_bad(&k, rc, word, #field_assign);        \
	} while (0)
	CASE(k.magic = "GGUG", -EBADMSG, "magic");
	CASE(k.magic = "FUGG", -EBADMSG, "magic");
	CASE(k.version = 1, -ENOTSUP, "version 1");
	CASE(k.version = 99, -ENOTSUP, "version 99");
	CASE(k.version = 0, -ENOTSUP, "version 0");
	CASE(k.version = 0x03000000, -ENOTSUP, "big-endian");
	CASE(k.n_kv = 1ULL << 40, -EBADMSG, "key count");
	CASE(k.n_kv = UINT64_MAX, -EBADMSG, "key count");
	CASE(k.n_tensors = UINT64_MAX / 3, -EBADMSG, "tensor count");
	CASE(k.n_tensors = 1000, -EBADMSG, "tensor count");
	CASE(k.n_kv = 5, -EBADMSG, "offset");	/* more keys than written: runs into the tensor infos */
	CASE(k.arch_len = UINT64_MAX - 3, -EBADMSG, "general.architecture");
	CASE(k.arch_len = 1ULL << 32, -EBADMSG, "length");
	CASE(k.arch_vtype = 13, -EBADMSG, "unknown value type 13");
	CASE(k.arch_vtype = 0x80000000u, -EBADMSG, "unknown value type");
	CASE(k.tok_elem_type = 99, -EBADMSG, "unknown array element value type 99");
	CASE(k.tok_elem_type = GGUF_VTYPE_ARRAY, -ENOTSUP, "arrays of arrays");
	CASE(k.tok_count = UINT64_MAX, -EBADMSG, "array count");
	CASE(k.tok_count = (UINT64_MAX / 8) + 2, -EBADMSG, "array count");
	CASE(k.tok_count = 1000, -EBADMSG, "tok.tokens");
	CASE(k.scores_count = UINT64_MAX / 4 + 1, -EBADMSG, "array count");	/* x4 wraps to 0 */
	CASE(k.scores_count = 1ULL << 62, -EBADMSG, "tok.scores");
	CASE(k.key3 = "tok.tokens", -EBADMSG, "duplicate key 'tok.tokens'");
	CASE(k.key3 = "", -EBADMSG, "empty");
	CASE(k.bool_val = 2, -EBADMSG, "bool");
	CASE(k.align = 0, -EBADMSG, "general.alignment");
	CASE(k.align = 3, -EBADMSG, "power of two");
	CASE(k.align = 48, -EBADMSG, "general.alignment");
	CASE(k.align = 1u << 31, -EBADMSG, "data section");
	CASE(k.align_vtype = GGUF_VTYPE_UINT64, -EBADMSG, "expected uint32");
	CASE(k.align_vtype = GGUF_VTYPE_STRING, -EBADMSG, "general.alignment");
	CASE(k.t1_off = 1ULL << 20, -EBADMSG, "past the end");
	CASE(k.t1_off = UINT64_MAX - 31, -EBADMSG, "b.weight");	/* offset + size wraps */
	CASE(k.t1_off = 64, -EBADMSG, "past the end");	/* one byte too far */
	CASE(k.t1_off = 33, -EBADMSG, "alignment");
	CASE(k.t1_off = 0, -EBADMSG, "overlap");
	CASE(k.t0_off = 32; k.t1_off = 0, -EBADMSG, "overlap");
	CASE(k.t0_n_dims = 0, -EBADMSG, "n_dims 0");
	CASE(k.t0_n_dims = 5, -EBADMSG, "n_dims 5");
	CASE(k.t0_n_dims = 0xffffffffu, -EBADMSG, "n_dims");
	CASE(k.t0_ne[1] = 0, -EBADMSG, "ne[1] is 0");
	CASE(k.t0_ne[0] = 0, -EBADMSG, "a.weight");
	CASE(k.t0_ne[0] = 1ULL << 32; k.t0_ne[1] = 1ULL << 32, -EBADMSG, "overflow");
	CASE(k.t0_n_dims = 4; k.t0_ne[2] = 1ULL << 40; k.t0_ne[3] = 1ULL << 40, -EBADMSG, "overflow");
	CASE(k.t0_ne[0] = 1ULL << 61, -EBADMSG, "overflow");	/* elements fit, bytes x4 do not */
	CASE(k.t0_type = 99, -EBADMSG, "unknown tensor type 99");
	CASE(k.t0_type = 4, -ENOTSUP, "removed");
	CASE(k.t1_ne0 = 33, -EBADMSG, "block size");
	CASE(k.t1_name = "a.weight", -EBADMSG, "duplicate tensor name 'a.weight'");
	CASE(k.t1_name = "", -EBADMSG, "name length 0");
	CASE(k.t1_name = "a.weight.this.name.is.far.too.long.for.gguf.which.allows.64.bytes.x",
	     -EBADMSG, "name length");
	CASE(k.t0_ne[1] = 1000, -EBADMSG, "past the end");
#undef CASE
	/* a NUL inside a name cannot be looked up: refused */
	knobs_t kk = knobs_default();
	bld_t m = build(&kk);
	uint8_t *p = memmem(m.b, m.n, "a.weight", 8);
	CU_ASSERT_FATAL(p != NULL);
	p[1] = '\0';
	gguf_t *g = NULL;
	char err[512] = "";
	CU_ASSERT_EQUAL(gguf_open_buffer(m.b, m.n, &g, err, sizeof(err)), -EBADMSG);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "NUL"));
	free(m.b);
}

/* The reference model cut at many lengths: every cut before the end of
 * the last tensor's data is an error; byte flips never crash. */
static void test_hostile_stories(void)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	CU_ASSERT_EQUAL_FATAL(read_file(cu_shared_path("models/stories260K.gguf"), &buf, &len), 0);
	gguf_t *g = NULL;
	char err[512];
	CU_ASSERT_EQUAL_FATAL(gguf_open_buffer(buf, len, &g, err, sizeof(err)), 0);
	size_t meta_end = gguf_data_offset(g), data_end = 0;
	for (uint64_t i = 0; i < gguf_n_tensors(g); i++) {
		const gguf_tensor_t *t = gguf_tensor(g, i);
		size_t e = meta_end + (size_t)(t->offset + t->nbytes);
		if (e > data_end)
			data_end = e;
	}
	gguf_close(&g);
	CU_ASSERT_FATAL(meta_end > 1000 && data_end <= len);
	size_t fails = 0, n = 0;
	/* every length through the metadata, then a stride through the data */
	for (size_t cut = 0; cut < data_end; cut += cut < meta_end + 64 ? 1 : 997) {
		err[0] = '\0';
		int rc = gguf_open_buffer(buf, cut, &g, err, sizeof(err));
		n++;
		if (rc != -EBADMSG || err[0] == '\0') {
			if (fails++ == 0)
				fprintf(stderr, "\n  cut at %zu: rc %d err \"%s\"\n", cut, rc, err);
			gguf_close(&g);
		}
	}
	CU_ASSERT_EQUAL(fails, 0);
	CU_ASSERT(n > meta_end);
	CU_ASSERT_EQUAL(gguf_open_buffer(buf, data_end, &g, err, sizeof(err)), 0);
	gguf_close(&g);

	/* deterministic byte flips in the metadata and tensor infos */
	uint64_t st = 0x9e3779b97f4a7c15ULL;
	for (int iter = 0; iter < 3000; iter++) {
		size_t pos[3];
		uint8_t old[3];
		for (int j = 0; j < 3; j++) {
			st = st * 6364136223846793005ULL + 1442695040888963407ULL;
			pos[j] = (size_t)((st >> 33) % meta_end);
			old[j] = buf[pos[j]];
			buf[pos[j]] ^= (uint8_t)(1u << ((st >> 20) & 7));
		}
		err[0] = '\0';
		int rc = gguf_open_buffer(buf, len, &g, err, sizeof(err));
		if (rc < 0)
			CU_ASSERT((rc == -EBADMSG || rc == -ENOTSUP) && err[0] != '\0');
		gguf_close(&g);
		for (int j = 2; j >= 0; j--)
			buf[pos[j]] = old[j];
	}
	free(buf);
}

/* ---- margin-worker inspect ---- */

/* Runs cmd_inspect with stdout and stderr captured; returns its status. */
static int run_inspect(int argc, char **argv, char **ret_out, char **ret_err)
{
	return cu_run_captured(cmd_inspect, argc, argv, ret_out, ret_err);
}

static void test_inspect(void)
{
	char *out = NULL, *err = NULL;
	char model[512];
	snprintf(model, sizeof(model), "%s", cu_shared_path("models/stories260K.gguf"));
	char *a1[] = { "inspect", model, NULL };
	CU_ASSERT_EQUAL(run_inspect(2, a1, &out, &err), 0);
	CU_ASSERT_FATAL(out != NULL && err != NULL);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "GGUF v3, 1185376 bytes, 19 keys, 48 tensors"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "total: 48 tensors, 292800 parameters"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "[string x 512] \"<unk>\", \"<s>\", \"</s>\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "llama.block_count"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "4294967295"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "blk.0.ffn_down.weight"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "172 x 64"));
	CU_ASSERT_EQUAL(err[0], '\0');
	free(out);
	free(err);

	char *a2[] = { "inspect", "--json", model, NULL };
	CU_ASSERT_EQUAL(run_inspect(3, a2, &out, &err), 0);
	json_error_t je;
	json_t *j = json_loads(out, 0, &je);
	CU_ASSERT_PTR_NOT_NULL_FATAL(j);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "n_params")), 292800);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "version")), 3);
	json_t *tens = json_object_get(j, "tensors");
	CU_ASSERT_EQUAL_FATAL(json_array_size(tens), 48);
	json_t *t0 = json_array_get(tens, 0);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(t0, "name")), "token_embd.weight");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(t0, "type")), "F32");
	CU_ASSERT_EQUAL(json_integer_value(json_array_get(json_object_get(t0, "shape"), 1)), 512);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(t0, "bytes")), 131072);
	json_t *meta = json_object_get(j, "metadata");
	int seen = 0;
	for (size_t i = 0; i < json_array_size(meta); i++) {
		json_t *e = json_array_get(meta, i);
		const char *k = json_string_value(json_object_get(e, "key"));
		if (strcmp(k, "llama.embedding_length") == 0) {
			CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "type")), "uint32");
			CU_ASSERT_EQUAL(json_integer_value(json_object_get(e, "value")), 64);
			seen++;
		} else if (strcmp(k, "tokenizer.ggml.tokens") == 0) {
			CU_ASSERT_EQUAL(json_integer_value(json_object_get(e, "count")), 512);
			CU_ASSERT_STRING_EQUAL(json_string_value(json_array_get(json_object_get(e, "head"), 0)), "<unk>");
			seen++;
		}
	}
	CU_ASSERT_EQUAL(seen, 2);
	json_decref(j);
	free(out);
	free(err);

	/* a file with a type margin cannot load is still listed; long strings cut */
	gguf_writer_t *w = gguf_writer_new();
	char longs[301];
	memset(longs, 'x', 300);
	longs[300] = '\0';
	CU_ASSERT_EQUAL(gguf_writer_set_str(w, "general.description", longs), 0);
	static uint8_t iq2[66];	/* IQ2_XXS */
	uint64_t ne[1] = { 256 };
	CU_ASSERT_EQUAL(gguf_writer_add_tensor(w, "blk.0.ffn_up.weight", 16, 1, ne, iq2, sizeof(iq2)), 0);
	const char *path = tmp_path("iq2.gguf");
	char e2[512];
	CU_ASSERT_EQUAL_FATAL(gguf_writer_write(w, path, e2, sizeof(e2)), 0);
	gguf_writer_destroy(&w);
	char *a3[] = { "inspect", (char *)path, NULL };
	CU_ASSERT_EQUAL(run_inspect(2, a3, &out, &err), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "IQ2_XXS"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "not loadable"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "... (300 bytes)"));
	CU_ASSERT_PTR_NULL(strstr(out, longs));
	free(out);
	free(err);

	/* a bad file: the reason on stderr, exit 1 */
	uint8_t *buf = NULL;
	size_t len = 0;
	CU_ASSERT_EQUAL_FATAL(read_file(model, &buf, &len), 0);
	const char *cut = tmp_path("cut.gguf");
	FILE *f = fopen(cut, "wb");
	CU_ASSERT_FATAL(f != NULL);
	fwrite(buf, 1, 5000, f);
	fclose(f);
	free(buf);
	char *a4[] = { "inspect", (char *)cut, NULL };
	CU_ASSERT_EQUAL(run_inspect(2, a4, &out, &err), 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, cut));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "tokenizer.ggml.tokens"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "cut off"));
	free(out);
	free(err);

	char *a5[] = { "inspect", NULL };
	CU_ASSERT_EQUAL(run_inspect(1, a5, &out, &err), 2);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "usage"));
	free(out);
	free(err);
	char *a6[] = { "inspect", "--help", NULL };
	CU_ASSERT_EQUAL(run_inspect(2, a6, &out, &err), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "usage"));
	free(out);
	free(err);
}

/* Runs inspect --json with args; the parsed object, NULL on failure. */
static json_t *inspect_json(char **args, int n)
{
	char *argv[12] = { "inspect", "--json" };
	for (int i = 0; i < n; i++)
		argv[2 + i] = args[i];
	argv[2 + n] = NULL;
	char *out = NULL, *err = NULL;
	int rc = run_inspect(2 + n, argv, &out, &err);
	CU_ASSERT_EQUAL(rc, 0);
	json_error_t je;
	json_t *j = rc == 0 ? json_loads(out, 0, &je) : NULL;
	free(out);
	free(err);
	return j;
}

static int64_t jint(json_t *o, const char *k)
{
	return (int64_t)json_integer_value(json_object_get(o, k));
}

/* The loader's rule, from the file: quantized types as stored, F32 as is,
 * F16/BF16 widened, 1-D f32. */
static uint64_t expected_weights(const char *path, int *ret_quantized)
{
	gguf_t *g = NULL;
	char err[256];
	CU_ASSERT_EQUAL_FATAL(gguf_open(path, &g, err, sizeof(err)), 0);
	uint64_t sum = 0;
	int nq = 0;
	for (uint64_t i = 0; i < gguf_n_tensors(g); i++) {
		const gguf_tensor_t *t = gguf_tensor(g, i);
		if (t->n_dims == 2 && quant_supported(t->type)) {
			sum += t->nbytes;
			nq++;
		} else {
			sum += 4 * t->n_elements;
		}
	}
	gguf_close(&g);
	*ret_quantized = nq;
	return sum;
}

/* inspect's memory column and totals: on the Q4_K_M stories15M the
 * weights are the quantized tensors' bytes plus the f32 norms, the KV
 * cache is model_kv_bytes' formula for the slots; in text and JSON. */
static void test_inspect_memory(void)
{
	char model[512];
	snprintf(model, sizeof(model), "%s", cu_shared_path("models/stories15M-q4_k_m.gguf"));
	int nq = 0;
	uint64_t weights = expected_weights(model, &nq);
	CU_ASSERT_EQUAL(nq, 43);
	CU_ASSERT_EQUAL(weights, 13923072);	/* every tensor as stored: norms are F32 */

	char *args[] = { "--slots", "4", "--ctx", "256", model };
	json_t *j = inspect_json(args, 5);
	CU_ASSERT_PTR_NOT_NULL_FATAL(j);
	json_t *mem = json_object_get(j, "memory");
	uint64_t kv_slot = 2 * 6 * 6 * 256 * 48 * 2;	/* K and V, layers, kv heads, ctx, head dim, f16 */
	CU_ASSERT_EQUAL(jint(mem, "weights"), (int64_t)weights);
	CU_ASSERT_EQUAL(jint(mem, "slots"), 4);
	CU_ASSERT_EQUAL(jint(mem, "ctx"), 256);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(mem, "kv_type")), "f16");
	CU_ASSERT_EQUAL(jint(mem, "kv_bytes_per_slot"), (int64_t)kv_slot);
	CU_ASSERT_EQUAL(jint(mem, "kv_bytes"), (int64_t)(4 * kv_slot));
	CU_ASSERT_EQUAL(jint(mem, "total"), (int64_t)(weights + 4 * kv_slot));
	json_t *tens = json_object_get(j, "tensors");
	int64_t sum = 0;
	for (size_t i = 0; i < json_array_size(tens); i++) {
		json_t *t = json_array_get(tens, i);
		const char *type = json_string_value(json_object_get(t, "type"));
		CU_ASSERT_EQUAL(jint(t, "memory"), jint(t, "bytes"));	/* nothing widened here */
		CU_ASSERT(strcmp(type, "F32") != 0 || json_array_size(json_object_get(t, "shape")) == 1);
		sum += jint(t, "memory");
	}
	CU_ASSERT_EQUAL(sum, (int64_t)weights);
	json_decref(j);

	/* the same in text: the memory column and the three totals */
	char *out = NULL, *err = NULL;
	char *a1[] = { "inspect", model, "--slots", "4", "--ctx", "256", NULL };
	CU_ASSERT_EQUAL(run_inspect(6, a1, &out, &err), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "  memory\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "(4 slots x 256 positions, KV cache f16)"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "weights       13923072 bytes"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "kv             7077888 bytes"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "4 slots x 1769472 = 6 layers x 6 KV heads x 256 positions x 96 B x 2"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "total         21000960 bytes"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "  token_embd.weight         Q8_0     288 x 32000"));
	free(out);
	free(err);

	/* the worker's own figures: the loaded model's weight bytes and
	 * model_kv_bytes */
	model_t *m = NULL;
	char e[256];
	CU_ASSERT_EQUAL_FATAL(model_load(model, &m, e, sizeof(e)), 0);
	CU_ASSERT_EQUAL(model_weight_bytes(m), weights);
	for (int t = MODEL_KV_F32; t <= MODEL_KV_Q8; t++)
		CU_ASSERT_EQUAL(model_config_kv_bytes(model_config(m), 100, (model_kv_type_t)t),
				model_kv_bytes(m, 100, (model_kv_type_t)t));
	model_destroy(&m);

	/* defaults: one slot of the model's whole context */
	char *a2[] = { model };
	j = inspect_json(a2, 1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(j);
	mem = json_object_get(j, "memory");
	CU_ASSERT_EQUAL(jint(mem, "slots"), 1);
	CU_ASSERT_EQUAL(jint(mem, "ctx"), 256);
	CU_ASSERT_EQUAL(jint(mem, "total"), (int64_t)(weights + kv_slot));
	json_decref(j);

	/* bad options: exit 2 with the reason */
	char *b1[] = { "inspect", model, "--ctx", "257", NULL };
	CU_ASSERT_EQUAL(run_inspect(4, b1, &out, &err), 2);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "context of 256"));
	free(out);
	free(err);
	char *b2[] = { "inspect", model, "--slots", "0", NULL };
	CU_ASSERT_EQUAL(run_inspect(4, b2, &out, &err), 2);
	free(out);
	free(err);
	char *b3[] = { "inspect", model, "--kv", "q4_0", NULL };
	CU_ASSERT_EQUAL(run_inspect(4, b3, &out, &err), 2);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "--kv"));
	free(out);
	free(err);
}

/* Synthesized files: F16 matrices count as f32 (the loader widens them),
 * quantized ones as stored; a q8_0 KV cache row is head_dim bytes plus an
 * f16 scale per 32. */
static void test_inspect_memory_synth(void)
{
	char err[256];
	const char *f16 = tmp_path("tiny-k-f16.gguf"), *q4 = tmp_path("tiny-k-q4_k_m.gguf");
	CU_ASSERT_EQUAL_FATAL(synth_write_gguf_mix("tiny-k", 0, "f16", f16, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(synth_write_gguf_mix("tiny-k", 0, "q4_k_m", q4, err, sizeof(err)), 0);
	const model_config_t *c = &synth_preset_find("tiny-k")->cfg;
	uint64_t params = model_config_n_params(c);
	int nq = 0;
	uint64_t wq = expected_weights(q4, &nq);
	CU_ASSERT_EQUAL(nq, 1 + 7 * 8 + 1);

	char *a1[] = { "--kv", "q8_0", "--slots", "3", (char *)f16 };
	json_t *j = inspect_json(a1, 5);
	CU_ASSERT_PTR_NOT_NULL_FATAL(j);
	json_t *mem = json_object_get(j, "memory");
	uint64_t kv_slot = 2ull * 8 * 1 * 256 * (64 + 2 * 2);
	CU_ASSERT_EQUAL(jint(mem, "weights"), (int64_t)(4 * params));
	CU_ASSERT(jint(mem, "weights") > jint(j, "tensor_bytes"));
	CU_ASSERT_EQUAL(jint(mem, "kv_bytes_per_slot"), (int64_t)kv_slot);
	CU_ASSERT_EQUAL(jint(mem, "total"), (int64_t)(4 * params + 3 * kv_slot));
	json_t *t0 = json_array_get(json_object_get(j, "tensors"), 0);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(t0, "type")), "F16");
	CU_ASSERT_EQUAL(jint(t0, "memory"), 2 * jint(t0, "bytes"));
	json_decref(j);
	model_t *m = NULL;	/* what the loader holds */
	CU_ASSERT_EQUAL_FATAL(model_load(f16, &m, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(model_weight_bytes(m), 4 * params);
	model_destroy(&m);
	CU_ASSERT_EQUAL_FATAL(model_load(q4, &m, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(model_weight_bytes(m), wq);
	model_destroy(&m);

	char *a2[] = { "--kv", "f32", (char *)q4 };
	j = inspect_json(a2, 3);
	CU_ASSERT_PTR_NOT_NULL_FATAL(j);
	mem = json_object_get(j, "memory");
	CU_ASSERT_EQUAL(jint(mem, "weights"), (int64_t)wq);
	CU_ASSERT_EQUAL(jint(mem, "weights"), jint(j, "tensor_bytes"));
	CU_ASSERT_EQUAL(jint(mem, "total"), (int64_t)(wq + 2ull * 8 * 256 * 64 * 4));
	json_decref(j);
	unlink(f16);
	unlink(q4);

	/* not a model margin runs (no architecture): the weights it can
	 * load, the KV cache unknown */
	gguf_writer_t *w = gguf_writer_new();
	float v[64] = { 0 };
	static uint8_t iq2[66];
	uint64_t ne[2] = { 32, 2 }, ne2[1] = { 256 };
	CU_ASSERT_EQUAL(gguf_writer_add_tensor(w, "a.weight", GGUF_TTYPE_F32, 2, ne, v, sizeof(v)), 0);
	CU_ASSERT_EQUAL(gguf_writer_add_tensor(w, "b.weight", 16, 1, ne2, iq2, sizeof(iq2)), 0);
	const char *path = tmp_path("noarch.gguf");
	CU_ASSERT_EQUAL_FATAL(gguf_writer_write(w, path, err, sizeof(err)), 0);
	gguf_writer_destroy(&w);
	char *a3[] = { (char *)path };
	j = inspect_json(a3, 1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(j);
	mem = json_object_get(j, "memory");
	CU_ASSERT_EQUAL(jint(mem, "weights"), 256);
	CU_ASSERT(json_is_null(json_object_get(mem, "total")));
	CU_ASSERT_PTR_NOT_NULL(strstr(json_string_value(json_object_get(mem, "error")), "general.architecture"));
	CU_ASSERT(json_is_null(json_object_get(json_array_get(json_object_get(j, "tensors"), 1), "memory")));
	json_decref(j);
	char *out = NULL, *e2 = NULL;
	char *a4[] = { "inspect", (char *)path, NULL };
	CU_ASSERT_EQUAL(run_inspect(2, a4, &out, &e2), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "KV cache unknown"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "weights            256 bytes"));
	free(out);
	free(e2);
	unlink(path);
}

/* gguf_open with allocation n failing, for n = 1, 2, ... until it
 * succeeds: each failure is -ENOMEM with a reason and *ret untouched (the
 * sanitizer build's LeakSanitizer checks that nothing leaked). */
static void test_open_enomem(void)
{
	const char *path = cu_shared_path("models/stories260K.gguf");
	static char mark;	/* *ret before the call: an address gguf_open never returns */
	gguf_t *const sentinel = (gguf_t *)&mark;
	unsigned long n = 1;
	for (;; n++) {
		gguf_t *g = sentinel;
		char err[512] = "";
		cu_alloc_fail_at(n);
		int rc = gguf_open(path, &g, err, sizeof(err));
		bool failed = cu_alloc_reset();
		if (!failed) {
			CU_ASSERT_EQUAL(rc, 0);
			CU_ASSERT(g != sentinel && gguf_n_tensors(g) == 48);
			if (g != sentinel)
				gguf_close(&g);
			break;
		}
		if (rc != -ENOMEM || g != sentinel || err[0] == '\0') {
			fprintf(stderr, "\n  allocation %lu failed: rc=%d err=\"%s\" ret %s\n", n, rc, err,
				g == sentinel ? "untouched" : "written");
			CU_FAIL("gguf_open did not fail cleanly with -ENOMEM");
			if (rc == 0 && g != sentinel)
				gguf_close(&g);
			break;
		}
	}
	CU_ASSERT(n > 1);	/* it allocates, so some runs failed */
}

const cu_test_t gguf_tests[] = {
	{ "open_enomem", test_open_enomem },
	{ "stories260k", test_stories260k },
	{ "stories260k_matches_bin", test_stories260k_matches_bin },
	{ "vocab_files", test_vocab_files },
	{ "open_errors", test_open_errors },
	{ "bf16", test_bf16 },
	{ "writer_roundtrip", test_writer_roundtrip },
	{ "writer_alignment_and_q4k", test_writer_alignment_and_q4k },
	{ "writer_errors", test_writer_errors },
	{ "hostile_base_valid", test_hostile_base_valid },
	{ "hostile_cases", test_hostile_cases },
	{ "hostile_stories", test_hostile_stories },
	{ "inspect", test_inspect },
	{ "inspect_memory", test_inspect_memory },
	{ "inspect_memory_synth", test_inspect_memory_synth },
	{ NULL, NULL },
};
