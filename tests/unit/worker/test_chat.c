/* chat: templates picked from the reference vocabularies' metadata, and
 * the prompts they give tokenize into the models' turn tokens. */
#include "chat.h"
#include "cu_main.h"
#include "gguf.h"
#include "tok.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const cu_test_t chat_tests[];

static tok_t *load(const char *rel)
{
	gguf_t *g = NULL;
	tok_t *t = NULL;
	char err[256] = "";
	CU_ASSERT_EQUAL_FATAL(gguf_open(cu_shared_path(rel), &g, err, sizeof(err)), 0);
	int rc = tok_new_from_gguf(g, &t, err, sizeof(err));
	gguf_close(&g);
	CU_ASSERT_EQUAL_FATAL(rc, 0);
	return t;
}

static size_t count(const int32_t *ids, size_t n, int32_t id)
{
	size_t c = 0;
	for (size_t i = 0; i < n; i++)
		c += ids[i] == id;
	return c;
}

static const chat_msg_t conv[] = {
	{ "system", "You are terse." },
	{ "user", "  Hi there!\n" },
	{ "assistant", "Hello." },
	{ "user", "2+2?" },
};

/* qwen2's GGUF template is ChatML; the prompt has one <|im_start|> and
 * <|im_end|> per message, then the assistant's opening. */
static void test_chatml_qwen2(void)
{
	tok_t *t = load("testdata/vocab/ggml-vocab-qwen2.gguf");
	const char *tmpl = tok_chat_template(t);
	CU_ASSERT_PTR_NOT_NULL_FATAL(tmpl);
	CU_ASSERT_EQUAL(chat_detect(tmpl), CHAT_TEMPLATE_CHATML);
	CU_ASSERT_STRING_EQUAL(chat_template_name(chat_detect(tmpl)), "chatml");

	char *s = NULL, err[256] = "";
	CU_ASSERT_EQUAL_FATAL(chat_format(tmpl, conv, 4, true, &s, err, sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(s,
		"<|im_start|>system\nYou are terse.<|im_end|>\n"
		"<|im_start|>user\n  Hi there!\n<|im_end|>\n"
		"<|im_start|>assistant\nHello.<|im_end|>\n"
		"<|im_start|>user\n2+2?<|im_end|>\n"
		"<|im_start|>assistant\n");

	int32_t *ids = NULL;
	size_t n = 0;
	CU_ASSERT_EQUAL_FATAL(tok_encode(t, s, strlen(s), true, true, &ids, &n), 0);
	CU_ASSERT_EQUAL(count(ids, n, 151644), 5);	/* <|im_start|> */
	CU_ASSERT_EQUAL(count(ids, n, 151645), 4);	/* <|im_end|> */
	CU_ASSERT_EQUAL(ids[0], 151644);		/* no BOS for qwen2 */
	CU_ASSERT_EQUAL(ids[n - 3], 151644);
	char *back = NULL;
	CU_ASSERT_EQUAL(tok_decode(t, ids, n, true, &back, NULL), 0);
	CU_ASSERT_STRING_EQUAL(back, s);
	free(back);
	free(ids);
	free(s);

	/* without the generation prompt the text ends after the last turn */
	CU_ASSERT_EQUAL_FATAL(chat_format("chatml", conv, 1, false, &s, err, sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(s, "<|im_start|>system\nYou are terse.<|im_end|>\n");
	free(s);
	tok_destroy(&t);
}

/* llama-3: BOS from the tokenizer, header tokens around each role, content
 * trimmed, <|eot_id|> after each turn. */
static void test_llama3(void)
{
	tok_t *t = load("testdata/vocab/ggml-vocab-llama-bpe.gguf");
	char *s = NULL, err[256] = "";
	CU_ASSERT_EQUAL_FATAL(chat_format("llama3", conv, 2, true, &s, err, sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(s,
		"<|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
		"<|start_header_id|>user<|end_header_id|>\n\nHi there!<|eot_id|>"
		"<|start_header_id|>assistant<|end_header_id|>\n\n");
	int32_t *ids = NULL;
	size_t n = 0;
	CU_ASSERT_EQUAL_FATAL(tok_encode(t, s, strlen(s), true, true, &ids, &n), 0);
	int32_t sh = tok_find(t, "<|start_header_id|>", 19);
	int32_t eh = tok_find(t, "<|end_header_id|>", 17);
	int32_t eot = tok_find(t, "<|eot_id|>", 10);
	CU_ASSERT(sh >= 0 && eh >= 0 && eot >= 0);
	CU_ASSERT_EQUAL(ids[0], 128000);
	CU_ASSERT_EQUAL(ids[1], sh);
	CU_ASSERT_EQUAL(count(ids, n, sh), 3);
	CU_ASSERT_EQUAL(count(ids, n, eh), 3);
	CU_ASSERT_EQUAL(count(ids, n, eot), 2);
	CU_ASSERT_TRUE(tok_is_eog(t, eot));
	free(ids);
	free(s);

	/* detection from a template text carrying both header markers */
	CU_ASSERT_EQUAL(chat_detect("{{ '<|start_header_id|>' + m.role + '<|end_header_id|>' }}"),
			CHAT_TEMPLATE_LLAMA3);
	tok_destroy(&t);
}

static void test_errors(void)
{
	char *s = NULL, err[256] = "";
	/* llama-bpe's GGUF carries no template */
	tok_t *t = load("testdata/vocab/ggml-vocab-llama-bpe.gguf");
	CU_ASSERT_PTR_NULL(tok_chat_template(t));
	CU_ASSERT_EQUAL(chat_format(tok_chat_template(t), conv, 1, true, &s, err, sizeof(err)),
			-ENOTSUP);
	CU_ASSERT_STRING_EQUAL(err, "model has no chat template");
	CU_ASSERT_PTR_NULL(s);
	tok_destroy(&t);

	CU_ASSERT_EQUAL(chat_detect(NULL), -ENOTSUP);
	CU_ASSERT_EQUAL(chat_detect("{% for m in messages %}{{ m.content }}{% endfor %}"), -ENOTSUP);
	CU_ASSERT_EQUAL(chat_format("[INST] {{ m }} [/INST]", conv, 1, true, &s, err, sizeof(err)),
			-ENOTSUP);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "not supported"));
	CU_ASSERT_EQUAL(chat_detect("<|im_start|>{{ role }}<|im_sep|>"), -ENOTSUP);

	chat_msg_t bad[] = { { "user", "hi" }, { NULL, "x" } };
	CU_ASSERT_EQUAL(chat_format("chatml", bad, 2, true, &s, err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "message 1"));
	CU_ASSERT_PTR_NULL(s);
}

const cu_test_t chat_tests[] = {
	{ "chatml_qwen2", test_chatml_qwen2 },
	{ "llama3", test_llama3 },
	{ "errors", test_errors },
	{ NULL, NULL },
};
