/* Wire framing: every message type round-trips; garbage is an error. */
#include "tests.h"
#include "mg_wire.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static mg_msg_t *roundtrip(const mg_msg_t *m)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	CU_ASSERT_EQUAL_FATAL(mg_wire_pack(m, MG_WIRE_MAX_FRAME, &buf, &len), 0);
	mg_msg_t *out = NULL;
	char err[256];
	int r = mg_wire_unpack(buf, len, MG_WIRE_MAX_FRAME, &out, err, sizeof(err));
	free(buf);
	CU_ASSERT_EQUAL_FATAL(r, 0);
	CU_ASSERT_EQUAL(out->body_case, m->body_case);
	return out;
}

static void test_hello(void)
{
	Margin__V1__ModelInfo mi = MARGIN__V1__MODEL_INFO__INIT, *mis[1] = { &mi };
	mi.name = "llama-110m";
	mi.arch = "llama";
	mi.n_params = 109529856;
	mi.n_ctx = 1024;
	Margin__V1__Hello h = MARGIN__V1__HELLO__INIT;
	h.proto_version = MG_PROTO_VERSION;
	h.worker_name = "w1";
	h.n_models = 1;
	h.models = mis;
	h.slots = 32;
	h.threads = 2;
	h.hardware_profile = "cpu-2core";
	h.build = "0.1.0";
	h.instance_id = 0xfeedfacecafebeefULL;
	mg_msg_t m = MARGIN__V1__MSG__INIT;
	m.body_case = MARGIN__V1__MSG__BODY_HELLO;
	m.hello = &h;
	mg_msg_t *o = roundtrip(&m);
	CU_ASSERT_STRING_EQUAL(mg_wire_body_name(o), "hello");
	CU_ASSERT_EQUAL(o->hello->proto_version, MG_PROTO_VERSION);
	CU_ASSERT_STRING_EQUAL(o->hello->worker_name, "w1");
	CU_ASSERT_EQUAL_FATAL(o->hello->n_models, 1);
	CU_ASSERT_STRING_EQUAL(o->hello->models[0]->name, "llama-110m");
	CU_ASSERT_EQUAL(o->hello->models[0]->n_params, 109529856);
	CU_ASSERT_EQUAL(o->hello->slots, 32);
	CU_ASSERT_EQUAL(o->hello->instance_id, 0xfeedfacecafebeefULL);
	mg_wire_free(&o);
	CU_ASSERT_PTR_NULL(o);
}

static void test_small_messages(void)
{
	Margin__V1__Credit c = MARGIN__V1__CREDIT__INIT;
	c.n = 7;
	Margin__V1__Heartbeat hb = MARGIN__V1__HEARTBEAT__INIT;
	Margin__V1__Welcome w = MARGIN__V1__WELCOME__INIT;
	w.worker_id = "wk-1";
	w.heartbeat_ms = 1000;
	w.liveness = 3;
	Margin__V1__Ack a = MARGIN__V1__ACK__INIT;
	a.shard_id = 99;
	a.attempt = 2;
	Margin__V1__Cancel cn = MARGIN__V1__CANCEL__INIT;
	cn.batch_id = "batch_x";
	Margin__V1__Bye b = MARGIN__V1__BYE__INIT;
	b.reason = "protocol version 9 not supported";

	mg_msg_t m = MARGIN__V1__MSG__INIT, *o;
	m.body_case = MARGIN__V1__MSG__BODY_CREDIT;
	m.credit = &c;
	o = roundtrip(&m);
	CU_ASSERT_EQUAL(o->credit->n, 7);
	mg_wire_free(&o);

	m.body_case = MARGIN__V1__MSG__BODY_HEARTBEAT;
	m.heartbeat = &hb;
	o = roundtrip(&m);
	CU_ASSERT_STRING_EQUAL(mg_wire_body_name(o), "heartbeat");
	mg_wire_free(&o);

	m.body_case = MARGIN__V1__MSG__BODY_WELCOME;
	m.welcome = &w;
	o = roundtrip(&m);
	CU_ASSERT_STRING_EQUAL(o->welcome->worker_id, "wk-1");
	CU_ASSERT_EQUAL(o->welcome->heartbeat_ms, 1000);
	CU_ASSERT_EQUAL(o->welcome->liveness, 3);
	mg_wire_free(&o);

	m.body_case = MARGIN__V1__MSG__BODY_ACK;
	m.ack = &a;
	o = roundtrip(&m);
	CU_ASSERT_EQUAL(o->ack->shard_id, 99);
	CU_ASSERT_EQUAL(o->ack->attempt, 2);
	mg_wire_free(&o);

	m.body_case = MARGIN__V1__MSG__BODY_CANCEL;
	m.cancel = &cn;
	o = roundtrip(&m);
	CU_ASSERT_STRING_EQUAL(o->cancel->batch_id, "batch_x");
	mg_wire_free(&o);

	m.body_case = MARGIN__V1__MSG__BODY_BYE;
	m.bye = &b;
	o = roundtrip(&m);
	CU_ASSERT_STRING_EQUAL(o->bye->reason, "protocol version 9 not supported");
	mg_wire_free(&o);
}

static void test_assign_result(void)
{
	Margin__V1__ChatMessage cm = MARGIN__V1__CHAT_MESSAGE__INIT, *cms[1] = { &cm };
	cm.role = "user";
	cm.content = "Hi there";
	char *stops[2] = { "\n\n", "END" };
	Margin__V1__Request r1 = MARGIN__V1__REQUEST__INIT, r2 = MARGIN__V1__REQUEST__INIT;
	Margin__V1__Request *rs[2] = { &r1, &r2 };
	r1.line_no = 1;
	r1.custom_id = "req-1";
	r1.prompt = "Once upon a time";
	r1.max_tokens = 48;
	r1.temperature = 0.7f;
	r1.top_p = 0.9f;
	r1.seed = 12345678901234ULL;
	r1.n_stop = 2;
	r1.stop = stops;
	r2.line_no = 2;
	r2.custom_id = "req-2";
	r2.n_messages = 1;
	r2.messages = cms;
	r2.chat = 1;
	Margin__V1__Assign as = MARGIN__V1__ASSIGN__INIT;
	as.batch_id = "batch_1";
	as.shard_id = 5;
	as.attempt = 1;
	as.model = "stories260K";
	as.n_requests = 2;
	as.requests = rs;
	mg_msg_t m = MARGIN__V1__MSG__INIT;
	m.body_case = MARGIN__V1__MSG__BODY_ASSIGN;
	m.assign = &as;
	mg_msg_t *o = roundtrip(&m);
	CU_ASSERT_STRING_EQUAL(o->assign->model, "stories260K");
	CU_ASSERT_EQUAL_FATAL(o->assign->n_requests, 2);
	CU_ASSERT_STRING_EQUAL(o->assign->requests[0]->prompt, "Once upon a time");
	CU_ASSERT_EQUAL(o->assign->requests[0]->seed, 12345678901234ULL);
	CU_ASSERT_EQUAL_FATAL(o->assign->requests[0]->n_stop, 2);
	CU_ASSERT_STRING_EQUAL(o->assign->requests[0]->stop[1], "END");
	CU_ASSERT_DOUBLE_EQUAL(o->assign->requests[0]->temperature, 0.7, 1e-6);
	CU_ASSERT_EQUAL_FATAL(o->assign->requests[1]->n_messages, 1);
	CU_ASSERT_STRING_EQUAL(o->assign->requests[1]->messages[0]->content, "Hi there");
	CU_ASSERT_TRUE(o->assign->requests[1]->chat);
	mg_wire_free(&o);

	Margin__V1__Usage u = MARGIN__V1__USAGE__INIT;
	u.busy_ns = 123456789;
	u.flops = 987654321012ULL;
	Margin__V1__Error e = MARGIN__V1__ERROR__INIT;
	e.code = "context_length_exceeded";
	e.message = "prompt of 600 tokens exceeds the 512-token context";
	Margin__V1__Output o1 = MARGIN__V1__OUTPUT__INIT, o2 = MARGIN__V1__OUTPUT__INIT;
	Margin__V1__Output *os[2] = { &o1, &o2 };
	o1.line_no = 1;
	o1.custom_id = "req-1";
	o1.text = ", there was a little girl";
	o1.finish_reason = "length";
	o1.prompt_tokens = 5;
	o1.completion_tokens = 48;
	o1.usage = &u;
	o2.line_no = 2;
	o2.custom_id = "req-2";
	o2.error = &e;
	Margin__V1__StepStats ss = MARGIN__V1__STEP_STATS__INIT;
	ss.steps = 60;
	ss.wall_ns = 5000000;
	Margin__V1__Result res = MARGIN__V1__RESULT__INIT;
	res.batch_id = "batch_1";
	res.shard_id = 5;
	res.attempt = 1;
	res.n_outputs = 2;
	res.outputs = os;
	res.step_stats = &ss;
	m.body_case = MARGIN__V1__MSG__BODY_RESULT;
	m.result = &res;
	o = roundtrip(&m);
	CU_ASSERT_EQUAL_FATAL(o->result->n_outputs, 2);
	CU_ASSERT_STRING_EQUAL(o->result->outputs[0]->text, ", there was a little girl");
	CU_ASSERT_EQUAL(o->result->outputs[0]->completion_tokens, 48);
	CU_ASSERT_EQUAL(o->result->outputs[0]->usage->flops, 987654321012ULL);
	CU_ASSERT_PTR_NULL(o->result->outputs[0]->error);
	CU_ASSERT_PTR_NOT_NULL_FATAL(o->result->outputs[1]->error);
	CU_ASSERT_STRING_EQUAL(o->result->outputs[1]->error->code, "context_length_exceeded");
	CU_ASSERT_EQUAL(o->result->step_stats->steps, 60);
	mg_wire_free(&o);
}

static void test_no_body_refused(void)
{
	mg_msg_t m = MARGIN__V1__MSG__INIT;
	uint8_t *buf = NULL;
	size_t len;
	CU_ASSERT_EQUAL(mg_wire_pack(&m, MG_WIRE_MAX_FRAME, &buf, &len), -EINVAL);
	CU_ASSERT_PTR_NULL(buf);
}

static void test_garbage(void)
{
	char err[256];
	mg_msg_t *o = NULL;
	CU_ASSERT_EQUAL(mg_wire_unpack("", 0, MG_WIRE_MAX_FRAME, &o, err, sizeof(err)), -EPROTO);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "empty"));
	/* field 1 (hello), wire type 2, length 200 but only 3 bytes follow */
	const uint8_t trunc[] = { 0x0a, 0xc8, 0x01, 1, 2, 3 };
	CU_ASSERT_EQUAL(mg_wire_unpack(trunc, sizeof(trunc), MG_WIRE_MAX_FRAME, &o, err, sizeof(err)), -EPROTO);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "not a margin.v1.Msg"));
	/* a valid protobuf with only an unknown field: no body */
	const uint8_t unknown[] = { 0xf8, 0x07, 0x01 };
	CU_ASSERT_EQUAL(mg_wire_unpack(unknown, sizeof(unknown), MG_WIRE_MAX_FRAME, &o, err, sizeof(err)), -EPROTO);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "no body"));
	CU_ASSERT_PTR_NULL(o);

	/* oversized frame is refused before decoding */
	CU_ASSERT_EQUAL(mg_wire_unpack(trunc, 1000, 100, &o, err, sizeof(err)), -EMSGSIZE);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "cap"));

	/* random bytes: an error or a message, never a crash; seeded so it repeats */
	uint64_t s = 0x9e3779b97f4a7c15ULL;
	uint8_t buf[512];
	int errors = 0;
	for (int i = 0; i < 20000; i++) {
		size_t len = 1 + (size_t)(s % sizeof(buf));
		for (size_t j = 0; j < len; j++) {
			s ^= s << 13;
			s ^= s >> 7;
			s ^= s << 17;
			buf[j] = (uint8_t)s;
		}
		int r = mg_wire_unpack(buf, len, MG_WIRE_MAX_FRAME, &o, err, sizeof(err));
		if (r < 0) {
			errors++;
			CU_ASSERT_PTR_NULL(o);
		} else {
			CU_ASSERT_NOT_EQUAL(o->body_case, MARGIN__V1__MSG__BODY__NOT_SET);
			mg_wire_free(&o);
		}
	}
	CU_ASSERT(errors > 19000);
}

static void test_truncated_real_frames(void)
{
	/* every prefix of a real Assign frame: error or a (shorter) message */
	Margin__V1__Request r = MARGIN__V1__REQUEST__INIT, *rs[1] = { &r };
	r.custom_id = "request-with-a-long-custom-id";
	r.prompt = "Once upon a time there was a prompt long enough to cut in many places";
	Margin__V1__Assign as = MARGIN__V1__ASSIGN__INIT;
	as.batch_id = "batch_truncated";
	as.model = "m";
	as.n_requests = 1;
	as.requests = rs;
	mg_msg_t m = MARGIN__V1__MSG__INIT;
	m.body_case = MARGIN__V1__MSG__BODY_ASSIGN;
	m.assign = &as;
	uint8_t *buf;
	size_t len;
	CU_ASSERT_EQUAL_FATAL(mg_wire_pack(&m, MG_WIRE_MAX_FRAME, &buf, &len), 0);
	int errors = 0;
	for (size_t cut = 0; cut < len; cut++) {
		mg_msg_t *o = NULL;
		char err[256];
		if (mg_wire_unpack(buf, cut, MG_WIRE_MAX_FRAME, &o, err, sizeof(err)) < 0)
			errors++;
		mg_wire_free(&o);
	}
	/* the outer length prefix makes every strict prefix invalid */
	CU_ASSERT_EQUAL(errors, (int)len);
	CU_ASSERT_EQUAL(mg_wire_pack(&m, 10, &buf, &len) == -EMSGSIZE, 1);
	free(buf);
}

/* Packs m and unpacks it as margind does; returns mg_wire_unpack's code. */
static int unpack_code(const mg_msg_t *m, char *err, size_t errlen)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	CU_ASSERT_EQUAL_FATAL(mg_wire_pack(m, MG_WIRE_MAX_FRAME, &buf, &len), 0);
	mg_msg_t *out = NULL;
	err[0] = '\0';
	int r = mg_wire_unpack(buf, len, MG_WIRE_MAX_FRAME, &out, err, errlen);
	free(buf);
	mg_wire_free(&out);
	return r;
}

static void fill(char *buf, size_t n, char c)
{
	memset(buf, c, n);
	buf[n] = '\0';
}

/* The largest Hello the limits allow fits the frame limit before Hello. */
static void test_hello_largest(void)
{
	static char name[MG_HELLO_MAX_NAME + 1], shortv[MG_HELLO_MAX_SHORT + 1];
	fill(name, MG_HELLO_MAX_NAME, 'n');
	fill(shortv, MG_HELLO_MAX_SHORT, 's');
	Margin__V1__ModelInfo mi[MG_HELLO_MAX_MODELS], *mis[MG_HELLO_MAX_MODELS];
	for (unsigned i = 0; i < MG_HELLO_MAX_MODELS; i++) {
		margin__v1__model_info__init(&mi[i]);
		mi[i].name = name;
		mi[i].arch = shortv;
		mi[i].kv_type = shortv;
		mi[i].n_params = mi[i].kv_bytes = mi[i].weight_bytes = UINT64_MAX;
		mi[i].n_ctx = mi[i].n_vocab = UINT32_MAX;
		mis[i] = &mi[i];
	}
	Margin__V1__Hello h = MARGIN__V1__HELLO__INIT;
	h.proto_version = UINT32_MAX;
	h.worker_name = name;
	h.hardware_profile = name;
	h.build = shortv;
	h.n_models = MG_HELLO_MAX_MODELS;
	h.models = mis;
	h.slots = MG_HELLO_MAX_SLOTS;
	h.threads = MG_HELLO_MAX_THREADS;
	h.instance_id = UINT64_MAX;
	mg_msg_t m = MARGIN__V1__MSG__INIT;
	m.body_case = MARGIN__V1__MSG__BODY_HELLO;
	m.hello = &h;
	char err[256];
	CU_ASSERT_EQUAL(unpack_code(&m, err, sizeof(err)), 0);
	size_t n = margin__v1__msg__get_packed_size(&m);
	CU_ASSERT(n <= MG_WIRE_MAX_HELLO_FRAME);
	CU_ASSERT(n > MG_WIRE_MAX_HELLO_FRAME / 2);	/* and the limit is not far above it */
	if (n > MG_WIRE_MAX_HELLO_FRAME || n <= MG_WIRE_MAX_HELLO_FRAME / 2)
		fprintf(stderr, "the largest Hello is %zu bytes\n", n);
}

/* A Hello beyond the limits is an error naming the field. */
static void test_hello_limits(void)
{
	Margin__V1__ModelInfo mi = MARGIN__V1__MODEL_INFO__INIT, *mis[1] = { &mi };
	mi.name = "llama-110m";
	Margin__V1__Hello h = MARGIN__V1__HELLO__INIT;
	h.proto_version = MG_PROTO_VERSION;
	h.worker_name = "w1";
	h.n_models = 1;
	h.models = mis;
	h.slots = 8;
	mg_msg_t m = MARGIN__V1__MSG__INIT;
	m.body_case = MARGIN__V1__MSG__BODY_HELLO;
	m.hello = &h;
	char err[256];
	CU_ASSERT_EQUAL(unpack_code(&m, err, sizeof(err)), 0);

	h.slots = 4294967295u;
	CU_ASSERT_EQUAL(unpack_code(&m, err, sizeof(err)), -ERANGE);
	CU_ASSERT_STRING_EQUAL(err, "Hello: slots = 4294967295: expected 1 to 4096");
	h.slots = 0;
	CU_ASSERT_EQUAL(unpack_code(&m, err, sizeof(err)), -ERANGE);
	h.slots = 8;
	h.threads = 4097;
	CU_ASSERT_EQUAL(unpack_code(&m, err, sizeof(err)), -ERANGE);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "threads = 4097"));
	h.threads = 4;

	/* 20,000 models */
	enum { MANY = 20000 };
	Margin__V1__ModelInfo *many = calloc(MANY, sizeof(*many));
	Margin__V1__ModelInfo **pm = calloc(MANY, sizeof(*pm));
	CU_ASSERT_FATAL(many != NULL && pm != NULL);
	for (int i = 0; i < MANY; i++) {
		margin__v1__model_info__init(&many[i]);
		many[i].name = "m";
		pm[i] = &many[i];
	}
	h.models = pm;
	h.n_models = MANY;
	CU_ASSERT_EQUAL(unpack_code(&m, err, sizeof(err)), -ERANGE);
	CU_ASSERT_STRING_EQUAL(err, "Hello: 20000 models: at most 16");
	h.n_models = MG_HELLO_MAX_MODELS + 1;
	CU_ASSERT_EQUAL(unpack_code(&m, err, sizeof(err)), -ERANGE);
	h.n_models = MG_HELLO_MAX_MODELS;
	CU_ASSERT_EQUAL(unpack_code(&m, err, sizeof(err)), 0);
	free(pm);
	free(many);
	h.models = mis;
	h.n_models = 1;

	/* names: length, control characters, UTF-8 */
	char longname[MG_HELLO_MAX_NAME + 2];
	fill(longname, MG_HELLO_MAX_NAME + 1, 'x');
	h.worker_name = longname;
	CU_ASSERT_EQUAL(unpack_code(&m, err, sizeof(err)), -ERANGE);
	CU_ASSERT_STRING_EQUAL(err, "Hello: worker_name is 128 bytes long: expected 1 to 127");
	longname[MG_HELLO_MAX_NAME] = '\0';
	CU_ASSERT_EQUAL(unpack_code(&m, err, sizeof(err)), 0);
	const char *bad[] = { "", "w1\nlevel=error", "w1\x1b[31m", "\xff", "caf\xc3", "\xc0\xaf", "\xed\xa0\x80",
			      "w\xc2\x85" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		h.worker_name = (char *)bad[i];
		CU_ASSERT_EQUAL(unpack_code(&m, err, sizeof(err)), -ERANGE);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, "worker_name"));
	}
	h.worker_name = "café 7 ☃ 𝄞";
	CU_ASSERT_EQUAL(unpack_code(&m, err, sizeof(err)), 0);
	h.hardware_profile = "8xh100\t";
	CU_ASSERT_EQUAL(unpack_code(&m, err, sizeof(err)), -ERANGE);
	CU_ASSERT_STRING_EQUAL(err, "Hello: hardware_profile: byte 6 is a control character or not UTF-8");
	h.hardware_profile = "";
	mi.name = "";
	CU_ASSERT_EQUAL(unpack_code(&m, err, sizeof(err)), -ERANGE);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "models[0].name"));
	mi.name = "tiny";
	mi.arch = "llama\n";
	CU_ASSERT_EQUAL(unpack_code(&m, err, sizeof(err)), -ERANGE);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "models[0].arch"));
}

const cu_test_t wire_tests[] = {
	{ "hello round trip", test_hello },
	{ "credit, heartbeat, welcome, ack, cancel, bye round trip", test_small_messages },
	{ "assign and result round trip", test_assign_result },
	{ "message without body refused", test_no_body_refused },
	{ "garbage frames are errors", test_garbage },
	{ "truncated frames are errors", test_truncated_real_frames },
	{ "the largest Hello fits the frame limit before Hello", test_hello_largest },
	{ "a Hello beyond the limits names the field", test_hello_limits },
	{ NULL, NULL },
};
