/* shape: preset shapes against hand-computed parameter counts and bytes,
 * and the GGUF reader on a file written here byte by byte, whole and
 * corrupt. */
#include "shape.h"
#include "tests.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_presets(void)
{
	shape_t s;
	char err[512] = "";
	CU_ASSERT_EQUAL_FATAL(shape_preset("llama2-7b", NULL, &s, err, sizeof(err)), 0);
	/* Llama-2-7B: the worker's model_config_n_params and the published
	 * count. Matrices 32 x (4096 x 12288 + 4096^2 + 3 x 4096 x 11008) +
	 * 2 x 4096 x 32000 = 6,738,149,376; norms 32 x 8192 + 4096. */
	CU_ASSERT_EQUAL(s.n_params, 6738415616ull);
	CU_ASSERT_EQUAL(s.n_params_per_token, 6607343616ull);	/* less the embedding table */
	CU_ASSERT_EQUAL(s.weight_bytes, 2 * 6738149376ull + 4 * 266240ull);	/* f16 matrices, f32 norms */
	CU_ASSERT_EQUAL(shape_kv_bytes_per_token(&s), 2ull * 32 * 32 * 128 * 2);	/* 524,288 */
	CU_ASSERT_EQUAL(shape_kv_bytes_per_seq(&s, 2560), 2560ull * 524288);
	CU_ASSERT(s.fp16_compute);
	CU_ASSERT_STRING_EQUAL(s.dtype, "f16");

	/* Llama-2-70B (GQA 64/8): 68,976,648,192 parameters. */
	CU_ASSERT_EQUAL_FATAL(shape_preset("llama2-70b", "f16", &s, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(s.n_params, 68976648192ull);
	CU_ASSERT_EQUAL(shape_kv_bytes_per_token(&s), 2ull * 80 * 8 * 128 * 2);
	/* q8_0: 34 bytes per 32 weights. */
	shape_t q;
	CU_ASSERT_EQUAL_FATAL(shape_preset("llama2-70b", "q8_0", &q, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(q.weight_bytes, (s.weight_bytes - 4 * 1318912ull) / 2 * 34 / 32 + 4 * 1318912ull);

	/* llama-110m as the worker's test_synth: 109,529,856 per token. */
	CU_ASSERT_EQUAL_FATAL(shape_preset("llama-110m", "f32", &s, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(s.n_params_per_token, 109529856ull);
	CU_ASSERT(!s.fp16_compute);
	/* Mistral's window caps the KV cache. */
	CU_ASSERT_EQUAL_FATAL(shape_preset("mistral-7b", NULL, &s, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(shape_kv_bytes_per_seq(&s, 10000), 4096 * shape_kv_bytes_per_token(&s));

	CU_ASSERT_EQUAL(shape_preset("llama-7b", NULL, &s, err, sizeof(err)), -ENOENT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "llama2-7b"));	/* the known names are listed */
	CU_ASSERT_EQUAL(shape_preset("llama2-7b", "fp8", &s, err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "q8_0"));
	CU_ASSERT_EQUAL(shape_load("llama2-7b.gguf", "f16", &s, err, sizeof(err)), -EINVAL);
}

/* A little-endian GGUF v3 writer, enough for the reader's test. */
struct w {
	unsigned char *b;
	size_t n, cap;
};

static void put(struct w *w, const void *p, size_t n)
{
	if (w->n + n > w->cap) {
		w->cap = (w->n + n) * 2;
		w->b = realloc(w->b, w->cap);
		CU_ASSERT_PTR_NOT_NULL_FATAL(w->b);
	}
	memcpy(w->b + w->n, p, n);
	w->n += n;
}

static void u(struct w *w, unsigned long long v, int bytes)
{
	for (int i = 0; i < bytes; i++) {
		unsigned char c = (unsigned char)(v >> (8 * i));
		put(w, &c, 1);
	}
}

static void str(struct w *w, const char *s)
{
	u(w, strlen(s), 8);
	put(w, s, strlen(s));
}

static void kv_u32(struct w *w, const char *k, unsigned v)
{
	str(w, k);
	u(w, 4, 4);
	u(w, v, 4);
}

static void tensor(struct w *w, const char *name, int nd, unsigned long long ne0, unsigned long long ne1,
		   unsigned type, unsigned long long off)
{
	str(w, name);
	u(w, (unsigned)nd, 4);
	u(w, ne0, 8);
	if (nd > 1)
		u(w, ne1, 8);
	u(w, type, 4);
	u(w, off, 8);
}

/* The file: 9 keys (an f32 and a string array to skip), 3 tensors:
 * token_embd [64 x 512] f16, output [64 x 512] q8_0, a norm [64] f32.
 * drop_key: leave out llama.block_count. Returns the offset where the
 * tensor table ends. */
static size_t build(struct w *w, bool drop_key)
{
	w->n = 0;
	u(w, 0x46554747u, 4);
	u(w, 3, 4);
	u(w, 3, 8);
	u(w, drop_key ? 8 : 9, 8);
	str(w, "general.architecture");
	u(w, 8, 4);
	str(w, "llama");
	str(w, "general.name");
	u(w, 8, 4);
	str(w, "unit");
	str(w, "llama.rope.freq_base");
	u(w, 6, 4);
	u(w, 0x461c4000u, 4);	/* 10000.0f */
	str(w, "tokenizer.ggml.tokens");
	u(w, 9, 4);
	u(w, 8, 4);
	u(w, 3, 8);
	str(w, "a");
	str(w, "bc");
	str(w, "def");
	kv_u32(w, "llama.embedding_length", 64);
	if (!drop_key)
		kv_u32(w, "llama.block_count", 2);
	kv_u32(w, "llama.attention.head_count", 4);
	kv_u32(w, "llama.attention.head_count_kv", 2);
	kv_u32(w, "llama.feed_forward_length", 160);
	tensor(w, "token_embd.weight", 2, 64, 512, 1, 0);
	tensor(w, "output.weight", 2, 64, 512, 8, 65536);
	tensor(w, "output_norm.weight", 1, 64, 0, 0, 100352);
	size_t end = w->n;
	while (w->n % 32)
		u(w, 0, 1);
	unsigned char zero[4096] = { 0 };
	for (size_t left = 100608; left > 0;) {	/* 65536 + 34816 + 256 bytes of data */
		size_t k = left < sizeof(zero) ? left : sizeof(zero);
		put(w, zero, k);
		left -= k;
	}
	return end;
}

static int read_back(const struct w *w, size_t len, shape_t *s, char *err, size_t errlen)
{
	char path[] = "/tmp/margin-test-shape-XXXXXX";
	int fd = mkstemp(path);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_EQUAL_FATAL(write(fd, w->b, len), (ssize_t)len);
	close(fd);
	int r = shape_from_gguf(path, s, err, errlen);
	unlink(path);
	return r;
}

static void test_gguf(void)
{
	struct w w = { 0 };
	shape_t s;
	char err[512] = "";
	size_t end = build(&w, false);
	int r = read_back(&w, w.n, &s, err, sizeof(err));
	if (r < 0)
		fprintf(stderr, "%s\n", err);
	CU_ASSERT_EQUAL_FATAL(r, 0);
	CU_ASSERT_STRING_EQUAL(s.arch, "llama");
	CU_ASSERT_STRING_EQUAL(s.name, "unit");
	CU_ASSERT_EQUAL(s.dim, 64);
	CU_ASSERT_EQUAL(s.n_layers, 2);
	CU_ASSERT_EQUAL(s.n_heads, 4);
	CU_ASSERT_EQUAL(s.n_kv_heads, 2);
	CU_ASSERT_EQUAL(s.head_dim, 16);	/* 64 / 4: no key_length */
	CU_ASSERT_EQUAL(s.vocab, 512);
	CU_ASSERT_EQUAL(s.n_params, 32768 + 32768 + 64);
	CU_ASSERT_EQUAL(s.n_params_per_token, 32768 + 64);	/* an output head: the embedding is looked up */
	CU_ASSERT_EQUAL(s.weight_bytes, 100608);
	CU_ASSERT_STRING_EQUAL(s.dtype, "mostly f16");
	CU_ASSERT(s.fp16_compute);
	CU_ASSERT_EQUAL(shape_kv_bytes_per_token(&s), 2 * 2 * 2 * 16 * 2);

	/* Corrupt on purpose: every cut through the header is an error, never
	 * a shape. */
	for (size_t cut = 0; cut < end; cut += 7) {
		r = read_back(&w, cut, &s, err, sizeof(err));
		CU_ASSERT_EQUAL(r, -EBADMSG);
	}
	r = read_back(&w, end + 10, &s, err, sizeof(err));	/* the table whole, the data missing */
	CU_ASSERT_EQUAL(r, -EBADMSG);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "truncated"));
	w.b[0] = 'X';
	CU_ASSERT_EQUAL(read_back(&w, w.n, &s, err, sizeof(err)), -EBADMSG);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "magic"));
	build(&w, true);
	CU_ASSERT_EQUAL(read_back(&w, w.n, &s, err, sizeof(err)), -ENOTSUP);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "llama.block_count"));
	CU_ASSERT_EQUAL(shape_from_gguf("/nonexistent/m.gguf", &s, err, sizeof(err)), -ENOENT);
	free(w.b);
}

const cu_test_t shape_tests[] = {
	{ "presets", test_presets },
	{ "gguf", test_gguf },
	{ NULL, NULL },
};
