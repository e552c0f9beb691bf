/* Wire framing: every message type round-trips; garbage is an error. */
#include "tests.h"
#include "mg_wire.h"

#include <errno.h>
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

const cu_test_t wire_tests[] = {
	{ "hello round trip", test_hello },
	{ "credit, heartbeat, welcome, ack, cancel, bye round trip", test_small_messages },
	{ "assign and result round trip", test_assign_result },
	{ "message without body refused", test_no_body_refused },
	{ "garbage frames are errors", test_garbage },
	{ "truncated frames are errors", test_truncated_real_frames },
	{ NULL, NULL },
};
