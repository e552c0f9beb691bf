/* ingest: OpenAI batch lines are validated, normalized, and turned into
 * wire Requests; bad lines are refused with a reason; files stream. */
#include "fixture.h"
#include "ingest.h"
#include "tests.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const ingest_params_t P = { "batch_x", 256, 4096 };

static int parse(const char *line, ingest_line_t *l, char *err, size_t errlen)
{
	return ingest_line_parse(line, strlen(line), &P, l, err, errlen);
}

static void test_chat_line(void)
{
	ingest_line_t l;
	char err[256];
	const char *line =
		"{\"custom_id\":\"c1\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
		"\"body\":{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},"
		"{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hel\"},{\"type\":\"text\",\"text\":\"lo\"}]}],"
		"\"max_completion_tokens\":40,\"temperature\":0,\"stop\":\"END\",\"seed\":-5}}";
	CU_ASSERT_EQUAL_FATAL(parse(line, &l, err, sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(l.custom_id, "c1");
	CU_ASSERT_STRING_EQUAL(l.model, "m");
	CU_ASSERT_STRING_EQUAL(l.endpoint, "/v1/chat/completions");
	CU_ASSERT(l.est_tokens > 40);
	ingest_req_t r;
	CU_ASSERT_EQUAL_FATAL(ingest_req_fill(&r, 7, l.custom_id, l.body), 0);
	CU_ASSERT_EQUAL(r.pb.line_no, 7);
	CU_ASSERT_STRING_EQUAL(r.pb.custom_id, "c1");
	CU_ASSERT_TRUE(r.pb.chat);
	CU_ASSERT_EQUAL_FATAL(r.pb.n_messages, 2);
	CU_ASSERT_STRING_EQUAL(r.pb.messages[0]->role, "system");
	CU_ASSERT_STRING_EQUAL(r.pb.messages[1]->content, "hello");
	CU_ASSERT_EQUAL(r.pb.max_tokens, 40);
	CU_ASSERT_EQUAL(r.pb.temperature, 0.0f);
	CU_ASSERT_EQUAL(r.pb.top_p, 1.0f);
	CU_ASSERT_EQUAL(r.pb.seed, (uint64_t)-5);
	CU_ASSERT_EQUAL_FATAL(r.pb.n_stop, 1);
	CU_ASSERT_STRING_EQUAL(r.pb.stop[0], "END");
	ingest_req_done(&r);
	ingest_line_done(&l);
	CU_ASSERT_PTR_NULL(l.body);
}

static void test_completion_defaults(void)
{
	ingest_line_t l;
	char err[256];
	CU_ASSERT_EQUAL_FATAL(parse("{\"custom_id\":\"p\",\"url\":\"/v1/completions\","
				    "\"body\":{\"model\":\"m\",\"prompt\":[\"once upon\"],\"top_p\":0.5,\"top_k\":40}}",
				    &l, err, sizeof(err)), 0);
	ingest_req_t r;
	CU_ASSERT_EQUAL_FATAL(ingest_req_fill(&r, 1, l.custom_id, l.body), 0);
	CU_ASSERT_FALSE(r.pb.chat);
	CU_ASSERT_STRING_EQUAL(r.pb.prompt, "once upon");
	CU_ASSERT_EQUAL(r.pb.max_tokens, 256);		/* the daemon default */
	CU_ASSERT_EQUAL(r.pb.temperature, 1.0f);	/* OpenAI's default */
	CU_ASSERT_EQUAL(r.pb.top_p, 0.5f);
	CU_ASSERT_EQUAL(r.pb.top_k, 40);
	CU_ASSERT_EQUAL(r.pb.seed, ingest_seed("batch_x", "p"));
	CU_ASSERT_EQUAL(r.pb.n_stop, 0);
	ingest_req_done(&r);
	ingest_line_done(&l);
}

static void test_bad_lines(void)
{
	static const struct {
		const char *line, *want;
	} cases[] = {
		{ "not json", "not valid JSON" },
		{ "[1,2]", "expected a JSON object" },
		{ "{\"custom_id\":\"a\",\"custom_id\":\"b\",\"url\":\"/v1/completions\",\"body\":{}}", "not valid JSON" },
		{ "{\"url\":\"/v1/completions\",\"body\":{\"model\":\"m\",\"prompt\":\"x\"}}", "custom_id" },
		{ "{\"custom_id\":\"\",\"url\":\"/v1/completions\",\"body\":{\"model\":\"m\",\"prompt\":\"x\"}}", "custom_id" },
		{ "{\"custom_id\":\"a\",\"method\":\"GET\",\"url\":\"/v1/completions\",\"body\":{\"model\":\"m\",\"prompt\":\"x\"}}", "method" },
		{ "{\"custom_id\":\"a\",\"url\":\"/v1/embeddings\",\"body\":{\"model\":\"m\",\"input\":\"x\"}}", "url" },
		{ "{\"custom_id\":\"a\",\"url\":\"/v1/completions\",\"body\":{\"prompt\":\"x\"}}", "body.model" },
		{ "{\"custom_id\":\"a\",\"url\":\"/v1/completions\",\"body\":{\"model\":\"m\"}}", "body.prompt" },
		{ "{\"custom_id\":\"a\",\"url\":\"/v1/chat/completions\",\"body\":{\"model\":\"m\",\"messages\":[]}}", "body.messages" },
		{ "{\"custom_id\":\"a\",\"url\":\"/v1/chat/completions\",\"body\":{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}}", "content[0]" },
		{ "{\"custom_id\":\"a\",\"url\":\"/v1/completions\",\"body\":{\"model\":\"m\",\"prompt\":\"x\",\"max_tokens\":0}}", "body.max_tokens" },
		{ "{\"custom_id\":\"a\",\"url\":\"/v1/completions\",\"body\":{\"model\":\"m\",\"prompt\":\"x\",\"max_tokens\":5000}}", "body.max_tokens" },
		{ "{\"custom_id\":\"a\",\"url\":\"/v1/completions\",\"body\":{\"model\":\"m\",\"prompt\":\"x\",\"temperature\":3}}", "body.temperature" },
		{ "{\"custom_id\":\"a\",\"url\":\"/v1/completions\",\"body\":{\"model\":\"m\",\"prompt\":\"x\",\"n\":2}}", "body.n" },
		{ "{\"custom_id\":\"a\",\"url\":\"/v1/completions\",\"body\":{\"model\":\"m\",\"prompt\":\"x\",\"stream\":true}}", "body.stream" },
		{ "{\"custom_id\":\"a\",\"url\":\"/v1/completions\",\"body\":{\"model\":\"m\",\"prompt\":\"x\",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}}", "body.stop" },
		{ "{\"custom_id\":\"a\",\"url\":\"/v1/completions\",\"body\":{\"model\":\"m\",\"prompt\":\"x\",\"seed\":1.5}}", "body.seed" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ingest_line_t l;
		char err[256] = "";
		int r = parse(cases[i].line, &l, err, sizeof(err));
		CU_ASSERT_EQUAL(r, -EINVAL);
		const char *want = cases[i].want;
		bool found = strstr(err, want) != NULL;
		if (!found)
			fprintf(stderr, "case %zu: error \"%s\" lacks \"%s\"\n", i, err, want ? want : "");
		CU_ASSERT_TRUE(found);
	}
}

static void test_seed_hash(void)
{
	uint64_t a = ingest_seed("batch_1", "x"), b = ingest_seed("batch_1", "y"),
		 c = ingest_seed("batch_2", "x");
	CU_ASSERT_EQUAL(a, ingest_seed("batch_1", "x"));
	CU_ASSERT_NOT_EQUAL(a, b);
	CU_ASSERT_NOT_EQUAL(a, c);
	/* The separator matters: ("ab","c") is not ("a","bc"). */
	CU_ASSERT_NOT_EQUAL(ingest_seed("ab", "c"), ingest_seed("a", "bc"));
}

static void test_corrupt_body(void)
{
	ingest_req_t r;
	CU_ASSERT_EQUAL(ingest_req_fill(&r, 1, "c", "{\"chat\":true,\"messages\":[]}"), -EBADMSG);
	CU_ASSERT_EQUAL(ingest_req_fill(&r, 1, "c", "{oops"), -EBADMSG);
	CU_ASSERT_EQUAL(ingest_req_fill(&r, 1, "c", "{\"chat\":false}"), -EBADMSG);
}

static void test_file_reader(void)
{
	char dir[512], path[600];
	fx_newdir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/f.jsonl", dir);
	FILE *f = fopen(path, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fputs("one\r\n\n  \ntwo\n", f);
	for (unsigned i = 0; i < INGEST_LINE_MAX + 10; i++)
		fputc('x', f);
	fputs("\nthree", f);	/* no final newline */
	fclose(f);
	ingest_file_t *in;
	char err[256];
	CU_ASSERT_EQUAL_FATAL(ingest_file_open(path, 0, 0, &in, err, sizeof(err)), 0);
	const char *t;
	size_t len;
	int64_t line;
	CU_ASSERT_EQUAL(ingest_file_next(in, &t, &len, &line), 1);
	CU_ASSERT_STRING_EQUAL(t, "one");
	CU_ASSERT_EQUAL(line, 1);
	CU_ASSERT_EQUAL(ingest_file_next(in, &t, &len, &line), 1);
	CU_ASSERT_STRING_EQUAL(t, "two");
	CU_ASSERT_EQUAL(line, 4);
	int64_t resume_at = ingest_file_offset(in);
	CU_ASSERT_EQUAL(ingest_file_next(in, &t, &len, &line), -EFBIG);
	CU_ASSERT_EQUAL(line, 5);
	CU_ASSERT_EQUAL(ingest_file_next(in, &t, &len, &line), 1);
	CU_ASSERT_STRING_EQUAL(t, "three");
	CU_ASSERT_EQUAL(line, 6);
	CU_ASSERT_EQUAL(ingest_file_next(in, &t, &len, &line), 0);
	ingest_file_close(&in);
	CU_ASSERT_PTR_NULL(in);
	/* Resume from a saved offset. */
	CU_ASSERT_EQUAL_FATAL(ingest_file_open(path, resume_at, 4, &in, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(ingest_file_next(in, &t, &len, &line), -EFBIG);
	CU_ASSERT_EQUAL(line, 5);
	ingest_file_close(&in);
	CU_ASSERT_EQUAL(ingest_file_open("/nonexistent/f", 0, 0, &in, err, sizeof(err)), -ENOENT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "/nonexistent/f"));
}

const cu_test_t ingest_tests[] = {
	{ "chat_line", test_chat_line },
	{ "completion_defaults", test_completion_defaults },
	{ "bad_lines", test_bad_lines },
	{ "seed_hash", test_seed_hash },
	{ "corrupt_body", test_corrupt_body },
	{ "file_reader", test_file_reader },
	{ NULL, NULL },
};
