/* gguf: the reference model and vocab files read back as documented in
 * shared/models/README.md; the writer round-trips every value and tensor
 * type; hostile files built from a valid one are errors, never crashes. */
#include "cu_main.h"
#include "gguf.h"

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

const cu_test_t gguf_tests[] = {
	{ "stories260k", test_stories260k },
	{ "stories260k_matches_bin", test_stories260k_matches_bin },
	{ "vocab_files", test_vocab_files },
	{ "open_errors", test_open_errors },
	{ NULL, NULL },
};
