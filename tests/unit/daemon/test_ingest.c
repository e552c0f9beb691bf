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
		{ "{\"custom_id\":\"a\",\"url\":\"/v1/moderations\",\"body\":{\"model\":\"m\",\"input\":\"x\"}}", "url: expected" },
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

/* The default seed decides a request's output, so its values are part of the
 * contract: these were computed before the hash moved to lib/ and must never
 * change (a change would give a resubmitted batch different outputs). */
static void test_seed_golden(void)
{
	static const struct {
		const char *job, *custom_id;
		uint64_t seed;
	} cases[] = {
		{ "batch_1", "x", 0x501ef9c54d0046f8ULL },
		{ "batch_abc123", "request-1", 0xddc3a2dd03ed7272ULL },
		{ "", "", 0x71b8262bb6e2e086ULL },
		{ "job", "caf\xc3\xa9 \xe2\x98\x83", 0x27a40616ccdbeb90ULL },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t got = ingest_seed(cases[i].job, cases[i].custom_id);
		if (got != cases[i].seed)
			fprintf(stderr, "seed(\"%s\", \"%s\") = %016llx, want %016llx\n", cases[i].job,
				cases[i].custom_id, (unsigned long long)got,
				(unsigned long long)cases[i].seed);
		CU_ASSERT_EQUAL(got, cases[i].seed);
	}
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

/* /v1/embeddings: the four shapes of input, each normalized to inputs[]
 * and sent as EmbedInput text or tokens. */
static void embed_ok(const char *body, const char *want_inputs, size_t n_inputs, ingest_req_t *r,
		     ingest_line_t *l)
{
	char line[4096], err[256];
	snprintf(line, sizeof(line), "{\"custom_id\":\"e\",\"method\":\"POST\",\"url\":\"/v1/embeddings\",\"body\":%s}",
		 body);
	int rc = parse(line, l, err, sizeof(err));
	if (rc != 0)
		fprintf(stderr, "embed_ok: %s: %s\n", body, err);
	CU_ASSERT_EQUAL_FATAL(rc, 0);
	CU_ASSERT_STRING_EQUAL(l->endpoint, "/v1/embeddings");
	CU_ASSERT_STRING_EQUAL(l->model, "m");
	json_t *norm = json_loads(l->body, 0, NULL);
	json_t *want = json_loads(want_inputs, 0, NULL);
	CU_ASSERT_TRUE(json_equal(json_object_get(norm, "inputs"), want));
	CU_ASSERT_TRUE(json_is_true(json_object_get(norm, "embed")));
	json_decref(want);
	json_decref(norm);
	CU_ASSERT_EQUAL_FATAL(ingest_req_fill(r, 3, l->custom_id, l->body), 0);
	CU_ASSERT_TRUE(r->pb.embed);
	CU_ASSERT_EQUAL(r->pb.line_no, 3);
	CU_ASSERT_TRUE(r->pb.prompt == NULL || r->pb.prompt[0] == '\0');
	CU_ASSERT_EQUAL(r->pb.n_messages, 0);
	CU_ASSERT_EQUAL_FATAL(r->pb.n_inputs, n_inputs);
}

static void test_embed_shapes(void)
{
	ingest_line_t l;
	ingest_req_t r;
	embed_ok("{\"model\":\"m\",\"input\":\"hello world\"}", "[{\"text\":\"hello world\"}]", 1, &r, &l);
	CU_ASSERT_STRING_EQUAL(r.pb.inputs[0]->text, "hello world");
	CU_ASSERT_EQUAL(r.pb.dimensions, 0);
	CU_ASSERT_FALSE(r.pb.truncate);
	CU_ASSERT_EQUAL(l.est_tokens, 11 / 4 + 1);
	json_t *norm = json_loads(l.body, 0, NULL);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(norm, "encoding_format")), "float");
	json_decref(norm);
	ingest_req_done(&r);
	ingest_line_done(&l);

	embed_ok("{\"model\":\"m\",\"input\":[\"a\",\"bb\",\"ccc\"],\"encoding_format\":\"base64\",\"user\":\"u-1\","
		 "\"dimensions\":8,\"truncate\":true}",
		 "[{\"text\":\"a\"},{\"text\":\"bb\"},{\"text\":\"ccc\"}]", 3, &r, &l);
	CU_ASSERT_STRING_EQUAL(r.pb.inputs[2]->text, "ccc");
	CU_ASSERT_EQUAL(r.pb.dimensions, 8);
	CU_ASSERT_TRUE(r.pb.truncate);
	norm = json_loads(l.body, 0, NULL);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(norm, "encoding_format")), "base64");
	CU_ASSERT_PTR_NULL(json_object_get(norm, "user"));
	json_decref(norm);
	ingest_req_done(&r);
	ingest_line_done(&l);

	/* one input of token ids */
	embed_ok("{\"model\":\"m\",\"input\":[1,2,2147483647]}", "[{\"tokens\":[1,2,2147483647]}]", 1, &r, &l);
	CU_ASSERT_EQUAL_FATAL(r.pb.inputs[0]->n_tokens, 3);
	CU_ASSERT_EQUAL(r.pb.inputs[0]->tokens[2], 2147483647);
	CU_ASSERT_TRUE(r.pb.inputs[0]->text == NULL || r.pb.inputs[0]->text[0] == '\0');
	CU_ASSERT_EQUAL(l.est_tokens, 3);
	ingest_req_done(&r);
	ingest_line_done(&l);

	/* several inputs of token ids */
	embed_ok("{\"model\":\"m\",\"input\":[[5],[6,7,8],[0]],\"encoding_format\":null}",
		 "[{\"tokens\":[5]},{\"tokens\":[6,7,8]},{\"tokens\":[0]}]", 3, &r, &l);
	CU_ASSERT_EQUAL(r.pb.inputs[1]->n_tokens, 3);
	CU_ASSERT_EQUAL(r.pb.inputs[1]->tokens[0], 6);
	CU_ASSERT_EQUAL(r.pb.inputs[1]->tokens[2], 8);
	CU_ASSERT_EQUAL(r.pb.inputs[2]->tokens[0], 0);
	CU_ASSERT_EQUAL(l.est_tokens, 5);
	ingest_req_done(&r);
	ingest_line_done(&l);

	/* a stored embedding body that is not a normalized one: a corrupt journal */
	CU_ASSERT_EQUAL(ingest_req_fill(&r, 1, "e", "{\"embed\":true,\"inputs\":[]}"), -EBADMSG);
	CU_ASSERT_EQUAL(ingest_req_fill(&r, 1, "e", "{\"embed\":true,\"inputs\":[{\"text\":\"a\"},{\"x\":1}]}"),
			-EBADMSG);
	CU_ASSERT_EQUAL(ingest_req_fill(&r, 1, "e", "{\"embed\":true}"), -EBADMSG);
}

/* Every refusal names the field and, inside input, the index. */
static void test_embed_refusals(void)
{
	static const struct {
		const char *body, *want;
	} cases[] = {
		{ "{\"input\":\"x\"}", "body.model: expected a non-empty string" },
		{ "{\"model\":\"m\"}", "body.input: expected a non-empty string, an array of strings" },
		{ "{\"model\":\"m\",\"input\":\"\"}", "body.input: expected a non-empty string" },
		{ "{\"model\":\"m\",\"input\":[]}", "body.input: expected a non-empty string, an array" },
		{ "{\"model\":\"m\",\"input\":{\"a\":1}}", "body.input: expected a non-empty string, an array" },
		{ "{\"model\":\"m\",\"input\":7}", "body.input: expected a non-empty string, an array" },
		{ "{\"model\":\"m\",\"input\":[\"a\",\"\"]}", "body.input[1]: expected a non-empty string" },
		{ "{\"model\":\"m\",\"input\":[\"a\",\"b\",\"c\",3]}", "body.input[3]: expected a string" },
		{ "{\"model\":\"m\",\"input\":[\"a\",[1]]}", "body.input[1]: expected a string" },
		{ "{\"model\":\"m\",\"input\":[1,\"a\"]}", "body.input[1]: expected a token id" },
		{ "{\"model\":\"m\",\"input\":[1,2.5]}", "body.input[1]: expected a token id" },
		{ "{\"model\":\"m\",\"input\":[1,-1]}", "body.input[1]: expected a token id" },
		{ "{\"model\":\"m\",\"input\":[1,2147483648]}", "body.input[1]: expected a token id" },
		{ "{\"model\":\"m\",\"input\":[[1],[]]}", "body.input[1]: expected a non-empty array of token ids" },
		{ "{\"model\":\"m\",\"input\":[[1],[2,true]]}", "body.input[1][1]: expected a token id" },
		{ "{\"model\":\"m\",\"input\":[[1],\"a\"]}", "body.input[1]: expected an array of token ids" },
		{ "{\"model\":\"m\",\"input\":[null]}", "body.input[0]: expected a string, a token id or an array" },
		{ "{\"model\":\"m\",\"input\":\"a\",\"encoding_format\":\"hex\"}",
		  "body.encoding_format: expected \"float\" or \"base64\"" },
		{ "{\"model\":\"m\",\"input\":\"a\",\"encoding_format\":1}",
		  "body.encoding_format: expected \"float\" or \"base64\"" },
		{ "{\"model\":\"m\",\"input\":\"a\",\"dimensions\":0}", "body.dimensions: expected an integer from 1" },
		{ "{\"model\":\"m\",\"input\":\"a\",\"dimensions\":-3}", "body.dimensions: expected an integer from 1" },
		{ "{\"model\":\"m\",\"input\":\"a\",\"dimensions\":\"8\"}", "body.dimensions: expected an integer from 1" },
		{ "{\"model\":\"m\",\"input\":\"a\",\"dimensions\":1.5}", "body.dimensions: expected an integer from 1" },
		{ "{\"model\":\"m\",\"input\":\"a\",\"truncate\":\"yes\"}", "body.truncate: expected true or false" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char line[1024], err[256] = "";
		ingest_line_t l = { 0 };
		snprintf(line, sizeof(line), "{\"custom_id\":\"e\",\"url\":\"/v1/embeddings\",\"body\":%s}",
			 cases[i].body);
		CU_ASSERT_EQUAL(parse(line, &l, err, sizeof(err)), -EINVAL);
		if (strncmp(err, cases[i].want, strlen(cases[i].want)) != 0) {
			fprintf(stderr, "case %zu %s: got \"%s\", want \"%s...\"\n", i, cases[i].body, err,
				cases[i].want);
			CU_FAIL("embedding refusal message");
		}
		CU_ASSERT_PTR_NULL(l.body);
	}
}

/* At most 2048 inputs, as OpenAI allows; a long token array is one input. */
static void test_embed_input_limit(void)
{
	for (int n = INGEST_EMBED_INPUTS_MAX; n <= INGEST_EMBED_INPUTS_MAX + 1; n++) {
		json_t *in = json_array(), *toks = json_array();
		for (int i = 0; i < n; i++) {
			json_array_append_new(in, json_string("x"));
			json_array_append_new(toks, json_integer(i));
		}
		json_t *line = json_pack("{s:s, s:s, s:{s:s, s:o}}", "custom_id", "e", "url", "/v1/embeddings",
					 "body", "model", "m", "input", in);
		ingest_line_t l;
		char err[256] = "";
		int rc = ingest_line_parse_json(line, &P, &l, err, sizeof(err));
		if (n == INGEST_EMBED_INPUTS_MAX) {
			CU_ASSERT_EQUAL(rc, 0);
			ingest_line_done(&l);
		} else {
			CU_ASSERT_EQUAL(rc, -EINVAL);
			CU_ASSERT_STRING_EQUAL(err, "body.input: 2049 inputs; at most 2048 per request");
		}
		json_object_set_new(json_object_get(line, "body"), "input", toks);
		CU_ASSERT_EQUAL(ingest_line_parse_json(line, &P, &l, err, sizeof(err)), 0);
		ingest_line_done(&l);
		json_decref(line);
	}
}

const cu_test_t ingest_tests[] = {
	{ "chat_line", test_chat_line },
	{ "completion_defaults", test_completion_defaults },
	{ "bad_lines", test_bad_lines },
	{ "seed_hash", test_seed_hash },
	{ "seed_golden", test_seed_golden },
	{ "corrupt_body", test_corrupt_body },
	{ "file_reader", test_file_reader },
	{ "embed_shapes", test_embed_shapes },
	{ "embed_refusals", test_embed_refusals },
	{ "embed_input_limit", test_embed_input_limit },
	{ NULL, NULL },
};
