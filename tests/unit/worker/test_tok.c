/* tok: llama.cpp's tokenizer test vectors (shared/testdata/vocab) on the
 * three reference vocabularies, stories260K's prompts, and the rules users
 * rely on (BOS by vocabulary, special tokens, end of generation). */
#include "cmds.h"
#include "cu_main.h"
#include "gguf.h"
#include "tok.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern const cu_test_t tok_tests[];

static char *slurp(const char *path, size_t *ret_len)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return NULL;
	char *buf = NULL;
	size_t len = 0, cap = 0;
	for (;;) {
		if (len + 4096 + 1 > cap) {
			cap = cap ? cap * 2 : 65536;
			char *nb = realloc(buf, cap);
			if (nb == NULL) {
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = nb;
		}
		size_t r = fread(buf + len, 1, cap - len - 1, f);
		len += r;
		if (r == 0)
			break;
	}
	fclose(f);
	buf[len] = '\0';
	*ret_len = len;
	return buf;
}

static tok_t *load(const char *rel)
{
	gguf_t *g = NULL;
	tok_t *t = NULL;
	char err[256] = "";
	int rc = gguf_open(cu_shared_path(rel), &g, err, sizeof(err));
	if (rc < 0)
		fprintf(stderr, "\n%s: %s\n", rel, err);
	CU_ASSERT_EQUAL_FATAL(rc, 0);
	rc = tok_new_from_gguf(g, &t, err, sizeof(err));
	if (rc < 0)
		fprintf(stderr, "\n%s: %s\n", rel, err);
	gguf_close(&g);	/* the tokenizer keeps copies of what it needs */
	CU_ASSERT_EQUAL_FATAL(rc, 0);
	return t;
}

static bool same_ids(const int32_t *a, size_t na, const int32_t *b, size_t nb)
{
	return na == nb && (na == 0 || memcmp(a, b, na * sizeof(*a)) == 0);
}

/* .inp: strings each followed by "\n__ggml_vocab_test__\n"; .out: one line
 * of space-separated ids per string. Encoding is add_special = false,
 * parse_special = false (llama.cpp's test-tokenizer-0). Decoding must give
 * the text back: for BPE byte for byte; for SPM the dummy prefix decodes to
 * a leading space, so the decode of a non-empty string must be " " + the
 * string (the space llama_detokenize strips once), and "" for "". */
static void check_vocab(const char *name)
{
	char rel[256];
	size_t inp_len, out_len;
	snprintf(rel, sizeof(rel), "testdata/vocab/%s", name);
	tok_t *t = load(rel);
	snprintf(rel, sizeof(rel), "testdata/vocab/%s.inp", name);
	char *inp = slurp(cu_shared_path(rel), &inp_len);
	snprintf(rel, sizeof(rel), "testdata/vocab/%s.out", name);
	char *out = slurp(cu_shared_path(rel), &out_len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(inp);
	CU_ASSERT_PTR_NOT_NULL_FATAL(out);

	static const char sep[] = "\n__ggml_vocab_test__\n";
	int n_cases = 0, n_enc = 0, n_dec = 0;
	char *p = inp, *line = out;
	char *end;
	while ((end = strstr(p, sep)) != NULL) {
		size_t len = (size_t)(end - p);
		char *eol = strchr(line, '\n');
		CU_ASSERT_PTR_NOT_NULL_FATAL(eol);
		*eol = '\0';
		int32_t want[512];
		size_t n_want = 0;
		for (char *q = line, *e; n_want < 512; q = e) {
			long v = strtol(q, &e, 10);
			if (e == q)
				break;
			want[n_want++] = (int32_t)v;
		}
		line = eol + 1;

		int32_t *ids = NULL;
		size_t n = 0;
		CU_ASSERT_EQUAL_FATAL(tok_encode(t, p, len, false, false, &ids, &n), 0);
		bool enc_ok = same_ids(ids, n, want, n_want);
		n_enc += enc_ok;
		char *text = NULL;
		size_t tl = 0;
		CU_ASSERT_EQUAL_FATAL(tok_decode(t, want, n_want, false, &text, &tl), 0);
		bool dec_ok;
		if (tok_kind(t) == TOK_KIND_SPM && len > 0)
			dec_ok = tl == len + 1 && text[0] == ' ' && memcmp(text + 1, p, len) == 0;
		else
			dec_ok = tl == len && memcmp(text, p, len) == 0;
		n_dec += dec_ok;
		if (!enc_ok || !dec_ok) {
			fprintf(stderr, "\n  %s case %d \"%.*s\": %s%s\n    got:", name, n_cases,
				(int)len, p, enc_ok ? "" : "ids differ ", dec_ok ? "" : "decode differs");
			for (size_t i = 0; i < n; i++)
				fprintf(stderr, " %d", ids[i]);
			fprintf(stderr, "\n   want:");
			for (size_t i = 0; i < n_want; i++)
				fprintf(stderr, " %d", want[i]);
			fprintf(stderr, "\n");
		}
		free(ids);
		free(text);
		n_cases++;
		p = end + sizeof(sep) - 1;
	}
	fprintf(stderr, "\n  %s: %d/%d encode, %d/%d decode ", name, n_enc, n_cases, n_dec,
		n_cases);
	CU_ASSERT_EQUAL(*p, '\0');	/* the file ends with a separator */
	CU_ASSERT_EQUAL(n_cases, 46);
	CU_ASSERT_EQUAL(n_enc, n_cases);
	CU_ASSERT_EQUAL(n_dec, n_cases);
	free(inp);
	free(out);
	tok_destroy(&t);
	CU_ASSERT_PTR_NULL(t);
}

static void test_vocab_llama_spm(void)
{
	check_vocab("ggml-vocab-llama-spm.gguf");
}

static void test_vocab_llama_bpe(void)
{
	check_vocab("ggml-vocab-llama-bpe.gguf");
}

static void test_vocab_qwen2(void)
{
	check_vocab("ggml-vocab-qwen2.gguf");
}

static size_t json_ids(json_t *arr, int32_t *v, size_t cap)
{
	size_t n = json_array_size(arr);
	CU_ASSERT_FATAL(n <= cap);
	for (size_t i = 0; i < n; i++)
		v[i] = (int32_t)json_integer_value(json_array_get(arr, i));
	return n;
}

/* stories260K: prompts as llama.cpp tokenizes them for generation (BOS,
 * parse_special), and output_text = concatenated pieces of output_tokens. */
static void test_stories_prompts(void)
{
	tok_t *t = load("models/stories260K.gguf");
	json_error_t je;
	json_t *root = json_load_file(cu_shared_path("testdata/stories260K_greedy.json"), 0, &je);
	CU_ASSERT_PTR_NOT_NULL_FATAL(root);
	json_t *cases = json_object_get(root, "cases");
	CU_ASSERT_FATAL(json_array_size(cases) > 0);
	CU_ASSERT_TRUE(tok_add_bos(t));
	CU_ASSERT_EQUAL(tok_bos(t), 1);
	size_t i;
	json_t *c;
	json_array_foreach(cases, i, c) {
		const char *prompt = json_string_value(json_object_get(c, "prompt"));
		const char *want_text = json_string_value(json_object_get(c, "output_text"));
		CU_ASSERT_PTR_NOT_NULL_FATAL(prompt);
		CU_ASSERT_PTR_NOT_NULL_FATAL(want_text);
		int32_t want[1024], outs[1024];
		size_t n_want = json_ids(json_object_get(c, "prompt_tokens"), want, 1024);
		size_t n_out = json_ids(json_object_get(c, "output_tokens"), outs, 1024);
		int32_t *ids = NULL;
		size_t n = 0;
		CU_ASSERT_EQUAL_FATAL(tok_encode(t, prompt, strlen(prompt), true, true, &ids, &n), 0);
		if (!same_ids(ids, n, want, n_want))
			fprintf(stderr, "\n  prompt \"%s\": ids differ", prompt);
		CU_ASSERT_TRUE(same_ids(ids, n, want, n_want));
		free(ids);
		char *text = NULL;
		CU_ASSERT_EQUAL_FATAL(tok_decode(t, outs, n_out, false, &text, NULL), 0);
		CU_ASSERT_STRING_EQUAL(text, want_text);
		free(text);
	}
	json_decref(root);
	tok_destroy(&t);
}

/* A tiny SentencePiece vocabulary: merges by score, byte fallback, unknown. */
static const char *const spm_tokens[] = {
	"<unk>", "<s>", "</s>", "<0x0A>", "<0xC3>", "<0xA9>",
	"\xe2\x96\x81", "a", "b", "c", "ab", "bc", "\xe2\x96\x81" "a", "\xe2\x96\x81" "ab",
};
enum { SPM_UNK, SPM_BOS, SPM_EOS, SPM_NL, SPM_C3, SPM_A9, SPM_SP, SPM_A, SPM_B, SPM_C, SPM_AB,
       SPM_BC, SPM_SPA, SPM_SPAB, SPM_N };

static tok_t *spm_vocab(const float *scores, int add_bos)
{
	int32_t types[SPM_N];
	for (int i = 0; i < SPM_N; i++)
		types[i] = TOK_TYPE_NORMAL;
	types[SPM_UNK] = TOK_TYPE_UNKNOWN;
	types[SPM_BOS] = types[SPM_EOS] = TOK_TYPE_CONTROL;
	types[SPM_NL] = types[SPM_C3] = types[SPM_A9] = TOK_TYPE_BYTE;
	tok_vocab_t v = {
		.kind = TOK_KIND_SPM, .n_tokens = SPM_N, .tokens = spm_tokens,
		.scores = scores, .types = types, .bos = SPM_BOS, .eos = SPM_EOS,
		.unk = SPM_UNK, .pad = -1, .add_bos = add_bos, .add_eos = -1,
	};
	tok_t *t = NULL;
	char err[256];
	CU_ASSERT_EQUAL_FATAL(tok_new(&v, &t, err, sizeof(err)), 0);
	return t;
}

static size_t enc(const tok_t *t, const char *s, bool add_special, bool parse_special,
		  int32_t *out, size_t cap)
{
	int32_t *ids = NULL;
	size_t n = 0;
	CU_ASSERT_EQUAL_FATAL(tok_encode(t, s, strlen(s), add_special, parse_special, &ids, &n), 0);
	CU_ASSERT_FATAL(n <= cap);
	memcpy(out, ids, n * sizeof(*ids));
	free(ids);
	return n;
}

/* The higher-scoring pair merges first: with "bc" above "ab", "abc"
 * becomes ▁a + bc; with "ab" above, ▁ab + c. */
static void test_spm_score_order(void)
{
	float s[SPM_N] = { 0 };
	int32_t ids[16];
	s[SPM_SPA] = -1;
	s[SPM_AB] = -3;
	s[SPM_BC] = -2;
	s[SPM_SPAB] = -4;
	tok_t *t = spm_vocab(s, -1);
	CU_ASSERT_EQUAL(enc(t, "abc", false, false, ids, 16), 2);
	CU_ASSERT_EQUAL(ids[0], SPM_SPA);
	CU_ASSERT_EQUAL(ids[1], SPM_BC);
	tok_destroy(&t);
	s[SPM_BC] = -5;
	t = spm_vocab(s, -1);
	CU_ASSERT_EQUAL(enc(t, "abc", false, false, ids, 16), 2);
	CU_ASSERT_EQUAL(ids[0], SPM_SPAB);
	CU_ASSERT_EQUAL(ids[1], SPM_C);
	tok_destroy(&t);
}

/* Characters without a token become their UTF-8 bytes' <0xNN> tokens, or
 * <unk> where even the byte token is missing; decoding restores the bytes. */
static void test_spm_byte_fallback(void)
{
	float s[SPM_N] = { 0 };
	int32_t ids[16];
	tok_t *t = spm_vocab(s, -1);
	const char *text = "a\xc3\xa9\n\x01";
	size_t n = enc(t, text, false, false, ids, 16);
	CU_ASSERT_EQUAL(n, 5);
	CU_ASSERT_EQUAL(ids[0], SPM_SPA);
	CU_ASSERT_EQUAL(ids[1], SPM_C3);
	CU_ASSERT_EQUAL(ids[2], SPM_A9);
	CU_ASSERT_EQUAL(ids[3], SPM_NL);
	CU_ASSERT_EQUAL(ids[4], SPM_UNK);
	char *out = NULL;
	CU_ASSERT_EQUAL(tok_decode(t, ids, 4, false, &out, NULL), 0);
	CU_ASSERT_STRING_EQUAL(out, " a\xc3\xa9\n");
	free(out);
	/* <unk> prints only as special */
	char buf[16];
	CU_ASSERT_EQUAL(tok_piece(t, SPM_UNK, false, buf, sizeof(buf)), 0);
	CU_ASSERT_EQUAL(tok_piece(t, SPM_UNK, true, buf, sizeof(buf)), 5);
	CU_ASSERT_EQUAL(memcmp(buf, "<unk>", 5), 0);
	CU_ASSERT_EQUAL(tok_piece(t, 99, false, buf, sizeof(buf)), -EINVAL);
	tok_destroy(&t);
}

/* BOS by default for SPM, off when the vocabulary says so; control-token
 * text is plain text unless parse_special, and a special token restarts
 * the dummy prefix. */
static void test_spm_special(void)
{
	float s[SPM_N] = { 0 };
	int32_t ids[32];
	tok_t *t = spm_vocab(s, -1);
	CU_ASSERT_TRUE(tok_add_bos(t));
	size_t n = enc(t, "a", true, false, ids, 32);
	CU_ASSERT_EQUAL(n, 2);
	CU_ASSERT_EQUAL(ids[0], SPM_BOS);
	CU_ASSERT_EQUAL(ids[1], SPM_SPA);
	CU_ASSERT_EQUAL(enc(t, "", true, false, ids, 32), 1);
	CU_ASSERT_EQUAL(enc(t, "", false, false, ids, 32), 0);

	n = enc(t, "a</s>a", false, true, ids, 32);
	CU_ASSERT_EQUAL(n, 3);
	CU_ASSERT_EQUAL(ids[0], SPM_SPA);
	CU_ASSERT_EQUAL(ids[1], SPM_EOS);
	CU_ASSERT_EQUAL(ids[2], SPM_SPA);
	n = enc(t, "a</s>a", false, false, ids, 32);
	CU_ASSERT(n > 3);
	for (size_t i = 0; i < n; i++)
		CU_ASSERT_NOT_EQUAL(ids[i], SPM_EOS);
	CU_ASSERT_TRUE(tok_is_eog(t, SPM_EOS));
	CU_ASSERT_FALSE(tok_is_eog(t, SPM_A));
	char *out = NULL;
	int32_t seq[] = { SPM_BOS, SPM_SPA, SPM_EOS };
	CU_ASSERT_EQUAL(tok_decode(t, seq, 3, false, &out, NULL), 0);
	CU_ASSERT_STRING_EQUAL(out, " a");
	free(out);
	CU_ASSERT_EQUAL(tok_decode(t, seq, 3, true, &out, NULL), 0);
	CU_ASSERT_STRING_EQUAL(out, "<s> a</s>");
	free(out);
	tok_destroy(&t);

	t = spm_vocab(s, 0);
	CU_ASSERT_FALSE(tok_add_bos(t));
	CU_ASSERT_EQUAL(enc(t, "a", true, false, ids, 32), 1);
	tok_destroy(&t);
}

/* A tiny byte-level BPE vocabulary: the 256 byte characters plus merges. */
static tok_t *bpe_vocab(const char *const *merges, uint32_t n_merges, const char *pre)
{
	static char chars[256][3];
	const char *tokens[256 + 8];
	int32_t types[256 + 8];
	uint32_t n = 0, next = 256;
	for (int b = 0; b < 256; b++) {
		unsigned cp = ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174)
			? (unsigned)b : next++;
		if (cp < 0x80) {
			chars[b][0] = (char)cp;
			chars[b][1] = 0;
		} else {
			chars[b][0] = (char)(0xc0 | (cp >> 6));
			chars[b][1] = (char)(0x80 | (cp & 0x3f));
			chars[b][2] = 0;
		}
		types[n] = TOK_TYPE_NORMAL;
		tokens[n++] = chars[b];
	}
	static const char *const extra[] = { "ab", "bc", "\xc4\xa0" "ab", "<|end|>", "[X1]", "abc" };
	for (int i = 0; i < 6; i++) {
		types[n] = i == 3 ? TOK_TYPE_CONTROL : i == 4 ? TOK_TYPE_USER_DEFINED : TOK_TYPE_NORMAL;
		tokens[n++] = extra[i];
	}
	tok_vocab_t v = {
		.kind = TOK_KIND_BPE, .pre = pre, .n_tokens = n, .tokens = tokens, .types = types,
		.n_merges = n_merges, .merges = merges, .bos = -1, .eos = 256 + 3, .unk = -1,
		.pad = -1, .add_bos = -1, .add_eos = -1,
	};
	tok_t *t = NULL;
	char err[256];
	int rc = tok_new(&v, &t, err, sizeof(err));
	if (rc < 0)
		fprintf(stderr, "\n%s\n", err);
	CU_ASSERT_EQUAL_FATAL(rc, 0);
	return t;
}

enum { B_AB = 256, B_BC, B_SPAB, B_END, B_X1, B_ABC };

/* The lowest-ranked merge applies first; a pre-token that is a whole
 * token is taken as is only with llama-bpe (ignore_merges). */
static void test_bpe_rank_order(void)
{
	int32_t ids[16];
	const char *m1[] = { "b c", "a b", "\xc4\xa0 ab" };
	tok_t *t = bpe_vocab(m1, 3, "qwen2");
	CU_ASSERT_EQUAL(enc(t, "abc", false, false, ids, 16), 2);
	CU_ASSERT_EQUAL(ids[0], 'a');
	CU_ASSERT_EQUAL(ids[1], B_BC);
	CU_ASSERT_EQUAL(enc(t, " ab", false, false, ids, 16), 1);
	CU_ASSERT_EQUAL(ids[0], B_SPAB);
	CU_ASSERT_FALSE(tok_add_bos(t));
	tok_destroy(&t);
	const char *m2[] = { "a b", "b c" };
	t = bpe_vocab(m2, 2, "qwen2");
	CU_ASSERT_EQUAL(enc(t, "abc", false, false, ids, 16), 2);
	CU_ASSERT_EQUAL(ids[0], B_AB);
	CU_ASSERT_EQUAL(ids[1], 'c');
	tok_destroy(&t);
	t = bpe_vocab(m2, 2, "llama-bpe");
	CU_ASSERT_EQUAL(enc(t, "abc", false, false, ids, 16), 1);
	CU_ASSERT_EQUAL(ids[0], B_ABC);
	tok_destroy(&t);
}

/* User-defined tokens are found in plain text; control tokens only with
 * parse_special; invalid UTF-8 is read as U+FFFD, as llama.cpp does. */
static void test_bpe_special(void)
{
	int32_t ids[64];
	const char *m[] = { "a b" };
	tok_t *t = bpe_vocab(m, 1, NULL);
	size_t n = enc(t, "ab[X1]<|end|>", false, false, ids, 64);
	CU_ASSERT_EQUAL(n, 1 + 1 + 7);
	CU_ASSERT_EQUAL(ids[0], B_AB);
	CU_ASSERT_EQUAL(ids[1], B_X1);
	n = enc(t, "ab[X1]<|end|>", false, true, ids, 64);
	CU_ASSERT_EQUAL(n, 3);
	CU_ASSERT_EQUAL(ids[2], B_END);
	CU_ASSERT_TRUE(tok_is_eog(t, B_END));
	char *out = NULL;
	CU_ASSERT_EQUAL(tok_decode(t, ids, 3, false, &out, NULL), 0);
	CU_ASSERT_STRING_EQUAL(out, "ab[X1]");
	free(out);
	n = enc(t, "a\xff", false, false, ids, 64);
	CU_ASSERT_EQUAL(tok_decode(t, ids, n, false, &out, NULL), 0);
	CU_ASSERT_STRING_EQUAL(out, "a\xef\xbf\xbd");
	free(out);
	tok_destroy(&t);
}

static void test_bad_vocab(void)
{
	const char *tokens[] = { "a", "b" };
	tok_vocab_t v = {
		.kind = TOK_KIND_BPE, .pre = "no-such-pre", .n_tokens = 2, .tokens = tokens,
		.bos = -1, .eos = -1, .unk = -1, .pad = -1, .add_bos = -1, .add_eos = -1,
	};
	tok_t *t = NULL;
	char err[256] = "";
	CU_ASSERT_EQUAL(tok_new(&v, &t, err, sizeof(err)), -ENOTSUP);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "no-such-pre"));
	CU_ASSERT_PTR_NULL(t);
	v.pre = NULL;
	v.eos = 2;
	CU_ASSERT_EQUAL(tok_new(&v, &t, err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "eos"));
	v.eos = -1;
	v.n_tokens = 0;
	CU_ASSERT_EQUAL(tok_new(&v, &t, err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NULL(t);
	tok_destroy(&t);
	tok_destroy(NULL);
}

/* BOS by vocabulary (shared/testdata/vocab/README.md): llama-bpe adds
 * 128000, qwen2 adds none; end of generation covers the turn enders. */
static void test_bos_and_eog(void)
{
	int32_t ids[16];
	tok_t *t = load("testdata/vocab/ggml-vocab-llama-bpe.gguf");
	CU_ASSERT_EQUAL(tok_n_vocab(t), 128256);
	CU_ASSERT_STRING_EQUAL(tok_pre(t), "llama-bpe");
	CU_ASSERT_TRUE(tok_add_bos(t));
	CU_ASSERT(enc(t, "Hello", true, false, ids, 16) >= 2);
	CU_ASSERT_EQUAL(ids[0], 128000);
	CU_ASSERT_EQUAL(tok_eos(t), 128001);
	CU_ASSERT_TRUE(tok_is_eog(t, 128001));
	CU_ASSERT_TRUE(tok_is_eog(t, tok_find(t, "<|eot_id|>", 10)));
	CU_ASSERT_FALSE(tok_is_eog(t, 128000));
	CU_ASSERT_FALSE(tok_is_eog(t, ids[1]));
	CU_ASSERT_PTR_NULL(tok_chat_template(t));
	/* with parse_special the header tokens are single ids */
	size_t n = enc(t, "<|start_header_id|>user<|end_header_id|>", false, true, ids, 16);
	CU_ASSERT_EQUAL(n, 3);
	CU_ASSERT_EQUAL(ids[0], tok_find(t, "<|start_header_id|>", 19));
	tok_destroy(&t);

	t = load("testdata/vocab/ggml-vocab-qwen2.gguf");
	CU_ASSERT_EQUAL(tok_n_vocab(t), 151936);
	CU_ASSERT_FALSE(tok_add_bos(t));
	n = enc(t, "Hello", true, false, ids, 16);
	CU_ASSERT(n >= 1);
	CU_ASSERT_NOT_EQUAL(ids[0], 151643);
	CU_ASSERT_TRUE(tok_is_eog(t, 151643));	/* <|endoftext|> */
	CU_ASSERT_TRUE(tok_is_eog(t, 151645));	/* <|im_end|> */
	CU_ASSERT_FALSE(tok_is_eog(t, 151644));	/* <|im_start|> */
	CU_ASSERT_PTR_NOT_NULL(tok_chat_template(t));
	/* [PADn] are user-defined: one token even without parse_special */
	n = enc(t, "x[PAD151700]y", false, false, ids, 16);
	CU_ASSERT_EQUAL(n, 3);
	CU_ASSERT_EQUAL(ids[1], 151700);
	/* control tokens only with parse_special */
	n = enc(t, "<|im_end|>", false, false, ids, 16);
	CU_ASSERT(n > 1);
	n = enc(t, "<|im_end|>", false, true, ids, 16);
	CU_ASSERT_EQUAL(n, 1);
	CU_ASSERT_EQUAL(ids[0], 151645);
	tok_destroy(&t);
}

/* Long inputs (the request path) encode and decode back to themselves:
 * 64 copies of the whole .inp, and long runs of one character. */
static void test_long_roundtrip(void)
{
	static const char *const names[] = {
		"ggml-vocab-llama-spm.gguf", "ggml-vocab-llama-bpe.gguf", "ggml-vocab-qwen2.gguf",
	};
	size_t inp_len;
	char *inp = slurp(cu_shared_path("testdata/vocab/ggml-vocab-qwen2.gguf.inp"), &inp_len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(inp);
	size_t big_len = 64 * inp_len + 3 * 20000;
	char *big = malloc(big_len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(big);
	for (int i = 0; i < 64; i++)
		memcpy(big + i * inp_len, inp, inp_len);
	memset(big + 64 * inp_len, '!', 20000);
	memset(big + 64 * inp_len + 20000, ' ', 20000);
	memset(big + 64 * inp_len + 40000, '7', 20000);
	for (int v = 0; v < 3; v++) {
		char rel[128];
		snprintf(rel, sizeof(rel), "testdata/vocab/%s", names[v]);
		tok_t *t = load(rel);
		int32_t *ids = NULL;
		size_t n = 0;
		CU_ASSERT_EQUAL_FATAL(tok_encode(t, big, big_len, false, false, &ids, &n), 0);
		CU_ASSERT(n > 0 && n < big_len);
		char *out = NULL;
		size_t out_len = 0;
		CU_ASSERT_EQUAL_FATAL(tok_decode(t, ids, n, false, &out, &out_len), 0);
		size_t skip = tok_kind(t) == TOK_KIND_SPM;	/* the dummy prefix */
		CU_ASSERT_EQUAL(out_len, big_len + skip);
		CU_ASSERT(out_len == big_len + skip && memcmp(out + skip, big, big_len) == 0);
		free(out);
		free(ids);
		tok_destroy(&t);
	}
	free(big);
	free(inp);
}

/* Runs cmd_tokenize with stdout and stderr captured; returns its status. */
static int run_tokenize(char **argv, int argc, char **ret_out)
{
	return cu_run_captured(cmd_tokenize, argc, argv, ret_out, NULL);
}

/* margin-worker tokenize --json prints exactly {"ids":[...]}: the .out ids
 * of "Hello world" (case 11) for llama-spm; bad usage exits 2. */
static void test_cmd_tokenize(void)
{
	size_t len;
	char *out = slurp(cu_shared_path("testdata/vocab/ggml-vocab-llama-spm.gguf.out"), &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	char *line = out;
	for (int i = 0; i < 11; i++)
		line = strchr(line, '\n') + 1;
	*strchr(line, '\n') = '\0';
	char want[256] = "{\"ids\":[";
	for (char *q = line + 1; *q; q++)
		strncat(want, *q == ' ' ? "," : (char[]){ *q, 0 }, sizeof(want) - strlen(want) - 1);
	strncat(want, "]}\n", sizeof(want) - strlen(want) - 1);

	char *model = (char *)cu_shared_path("testdata/vocab/ggml-vocab-llama-spm.gguf");
	char *argv[] = { "tokenize", "--model", model, "--text", "Hello world", "--json", NULL };
	char *got = NULL;
	CU_ASSERT_EQUAL(run_tokenize(argv, 6, &got), 0);
	CU_ASSERT_STRING_EQUAL(got, want);
	free(got);
	char *bad[] = { "tokenize", "--model", model, NULL };
	CU_ASSERT_EQUAL(run_tokenize(bad, 3, &got), 2);
	CU_ASSERT_PTR_NOT_NULL(strstr(got, "--text"));
	free(got);
	char *missing[] = { "tokenize", "--model", "/nonexistent.gguf", "--text", "x", NULL };
	CU_ASSERT_EQUAL(run_tokenize(missing, 5, &got), 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(got, "/nonexistent.gguf"));
	free(got);
	free(out);
}

const cu_test_t tok_tests[] = {
	{ "vocab_llama_spm", test_vocab_llama_spm },
	{ "vocab_llama_bpe", test_vocab_llama_bpe },
	{ "vocab_qwen2", test_vocab_qwen2 },
	{ "stories_prompts", test_stories_prompts },
	{ "spm_score_order", test_spm_score_order },
	{ "spm_byte_fallback", test_spm_byte_fallback },
	{ "spm_special", test_spm_special },
	{ "bpe_rank_order", test_bpe_rank_order },
	{ "bpe_special", test_bpe_special },
	{ "bad_vocab", test_bad_vocab },
	{ "bos_and_eog", test_bos_and_eog },
	{ "long_roundtrip", test_long_roundtrip },
	{ "cmd_tokenize", test_cmd_tokenize },
	{ NULL, NULL },
};
