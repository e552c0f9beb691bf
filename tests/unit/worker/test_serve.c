/* serve: the worker's I/O and engine threads against a ROUTER socket in
 * the test that plays margind on 127.0.0.1 (a random port), over the real
 * protocol. Waits are bounded by a generous guard (a hang fails, a slow
 * machine does not); nothing asserts on durations. */
#include "cmds.h"
#include "cu_clock.h"
#include "cu_main.h"
#include "engine.h"
#include "lib/mg_clock.h"
#include "lib/mg_curve.h"
#include "lib/mg_wire.h"
#include "model.h"
#include "serve.h"
#include "tok.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#define GUARD_MS 20000	/* only a hang reaches this */

typedef struct faked {
	void *ctx;
	void *router;
	char endpoint[128];
	/* what was skipped while waiting for something else */
	int heartbeats, credits;
	uint32_t credit_total;
} faked_t;

/* One message from a worker: its routing id and the decoded frame. */
typedef struct rx {
	uint8_t id[256];
	size_t id_len;
	mg_msg_t *m;
	uint8_t *raw;		/* the frame as received */
	size_t raw_len;
} rx_t;

static void rx_done(rx_t *r)
{
	mg_wire_free(&r->m);
	free(r->raw);
	r->raw = NULL;
}

static void faked_open(faked_t *d, const char *curve_secret)
{
	memset(d, 0, sizeof(*d));
	d->ctx = zmq_ctx_new();
	CU_ASSERT_PTR_NOT_NULL_FATAL(d->ctx);
	d->router = zmq_socket(d->ctx, ZMQ_ROUTER);
	int zero = 0, one = 1;
	zmq_setsockopt(d->router, ZMQ_LINGER, &zero, sizeof(zero));
	if (curve_secret) {
		zmq_setsockopt(d->router, ZMQ_CURVE_SERVER, &one, sizeof(one));
		zmq_setsockopt(d->router, ZMQ_CURVE_SECRETKEY, curve_secret, 40);
	}
	CU_ASSERT_EQUAL_FATAL(zmq_bind(d->router, "tcp://127.0.0.1:*"), 0);
	size_t len = sizeof(d->endpoint);
	CU_ASSERT_EQUAL_FATAL(zmq_getsockopt(d->router, ZMQ_LAST_ENDPOINT, d->endpoint, &len), 0);
}

static void faked_close(faked_t *d)
{
	zmq_close(d->router);
	zmq_ctx_term(d->ctx);
}

/* Next message within timeout_ms: 0, or -EAGAIN. Garbage fails the test. */
static int faked_recv(faked_t *d, int timeout_ms, rx_t *ret)
{
	memset(ret, 0, sizeof(*ret));
	zmq_pollitem_t it = { .socket = d->router, .events = ZMQ_POLLIN };
	int rc;
	do	/* a signal test may interrupt the poll */
		rc = zmq_poll(&it, 1, timeout_ms);
	while (rc < 0 && zmq_errno() == EINTR);
	if (rc <= 0)
		return -EAGAIN;
	int n = zmq_recv(d->router, ret->id, sizeof(ret->id), 0);
	CU_ASSERT_FATAL(n > 0);
	ret->id_len = (size_t)n;
	zmq_msg_t f;
	zmq_msg_init(&f);
	CU_ASSERT_FATAL(zmq_msg_recv(&f, d->router, 0) >= 0);
	CU_ASSERT_FALSE(zmq_msg_more(&f));
	ret->raw_len = zmq_msg_size(&f);
	ret->raw = malloc(ret->raw_len ? ret->raw_len : 1);
	memcpy(ret->raw, zmq_msg_data(&f), ret->raw_len);
	zmq_msg_close(&f);
	char err[256];
	int r = mg_wire_unpack(ret->raw, ret->raw_len, MG_WIRE_MAX_FRAME, &ret->m, err, sizeof(err));
	CU_ASSERT_EQUAL_FATAL(r, 0);
	return 0;
}

/* Waits for a message of the given type, counting the heartbeats and
 * credits that come first (any other type fails the test). */
static int faked_expect(faked_t *d, int body, int timeout_ms, rx_t *ret)
{
	int64_t end = mg_clock_now_ns() + (int64_t)timeout_ms * MG_NS_PER_MS;
	for (;;) {
		int64_t left = (end - mg_clock_now_ns()) / MG_NS_PER_MS;
		if (left < 0 || faked_recv(d, (int)left, ret) < 0)
			return -EAGAIN;
		if ((int)ret->m->body_case == body)
			return 0;
		if (ret->m->body_case == MARGIN__V1__MSG__BODY_HEARTBEAT) {
			d->heartbeats++;
		} else if (ret->m->body_case == MARGIN__V1__MSG__BODY_CREDIT) {
			d->credits++;
			d->credit_total += ret->m->credit->n;
		} else {
			CU_FAIL("unexpected message type");
			fprintf(stderr, "\n  got %s while waiting\n", mg_wire_body_name(ret->m));
		}
		rx_done(ret);
	}
}

static void faked_send(faked_t *d, const rx_t *to, const mg_msg_t *m)
{
	CU_ASSERT_EQUAL(mg_wire_send_to(d->router, to->id, to->id_len, m, 0), 0);
}

static void faked_send_raw(faked_t *d, const rx_t *to, const void *buf, size_t len)
{
	zmq_send(d->router, to->id, to->id_len, ZMQ_SNDMORE);
	zmq_send(d->router, buf, len, 0);
}

static void send_welcome(faked_t *d, const rx_t *to, uint32_t hb_ms, uint32_t liveness)
{
	Margin__V1__Welcome w = MARGIN__V1__WELCOME__INIT;
	w.worker_id = "wk-test";
	w.heartbeat_ms = hb_ms;
	w.liveness = liveness;
	mg_msg_t m = MARGIN__V1__MSG__INIT;
	m.body_case = MARGIN__V1__MSG__BODY_WELCOME;
	m.welcome = &w;
	faked_send(d, to, &m);
}

static void send_ack(faked_t *d, const rx_t *to, uint64_t shard, uint32_t attempt)
{
	Margin__V1__Ack a = MARGIN__V1__ACK__INIT;
	a.shard_id = shard;
	a.attempt = attempt;
	mg_msg_t m = MARGIN__V1__MSG__INIT;
	m.body_case = MARGIN__V1__MSG__BODY_ACK;
	m.ack = &a;
	faked_send(d, to, &m);
}

static void send_cancel(faked_t *d, const rx_t *to, const char *batch)
{
	Margin__V1__Cancel c = MARGIN__V1__CANCEL__INIT;
	c.batch_id = (char *)batch;
	mg_msg_t m = MARGIN__V1__MSG__INIT;
	m.body_case = MARGIN__V1__MSG__BODY_CANCEL;
	m.cancel = &c;
	faked_send(d, to, &m);
}

/* Sends an Assign of the n requests prq. */
static void send_requests(faked_t *d, const rx_t *to, const char *model, const char *batch, uint64_t shard,
			  uint32_t attempt, Margin__V1__Request **prq, size_t n)
{
	Margin__V1__Assign a = MARGIN__V1__ASSIGN__INIT;
	a.batch_id = (char *)batch;
	a.shard_id = shard;
	a.attempt = attempt;
	a.model = (char *)model;
	a.n_requests = n;
	a.requests = prq;
	mg_msg_t m = MARGIN__V1__MSG__INIT;
	m.body_case = MARGIN__V1__MSG__BODY_ASSIGN;
	m.assign = &a;
	faked_send(d, to, &m);
}

/* Assign of n completion requests "<batch>-<i>", line_no 100 + i. */
static void send_assign_ex(faked_t *d, const rx_t *to, const char *model, const char *batch,
			   uint64_t shard, uint32_t attempt, int n, uint32_t max_tokens, uint64_t seed,
			   const char *const *prompts)
{
	Margin__V1__Request *rq = calloc((size_t)n, sizeof(*rq));
	Margin__V1__Request **prq = calloc((size_t)n, sizeof(*prq));
	char (*ids)[32] = calloc((size_t)n, sizeof(*ids));
	for (int i = 0; i < n; i++) {
		margin__v1__request__init(&rq[i]);
		snprintf(ids[i], sizeof(ids[i]), "%s-%d", batch, i);
		rq[i].line_no = 100 + (uint64_t)i;
		rq[i].custom_id = ids[i];
		rq[i].prompt = (char *)(prompts ? prompts[i] : "Once upon a time, in a land far away");
		rq[i].max_tokens = max_tokens;
		rq[i].temperature = 0;
		rq[i].top_p = 1;
		rq[i].seed = seed;
		prq[i] = &rq[i];
	}
	send_requests(d, to, model, batch, shard, attempt, prq, (size_t)n);
	free(rq);
	free(prq);
	free(ids);
}

static void send_assign(faked_t *d, const rx_t *to, const char *batch, uint64_t shard, int n)
{
	send_assign_ex(d, to, "tiny", batch, shard, 1, n, 12, 42, NULL);
}

/* Checks that a Result answers send_assign(batch, shard, n): every
 * custom_id exactly once, with its line_no. */
static void check_result_ids(const Margin__V1__Result *r, const char *batch, uint64_t shard, int n)
{
	CU_ASSERT_STRING_EQUAL(r->batch_id, batch);
	CU_ASSERT_EQUAL(r->shard_id, shard);
	CU_ASSERT_EQUAL_FATAL(r->n_outputs, (size_t)n);
	int *seen = calloc((size_t)n, sizeof(int));
	for (size_t i = 0; i < r->n_outputs; i++) {
		const Margin__V1__Output *o = r->outputs[i];
		int k = -1;
		char want[32];
		for (int j = 0; j < n; j++) {
			snprintf(want, sizeof(want), "%s-%d", batch, j);
			if (strcmp(o->custom_id, want) == 0)
				k = j;
		}
		CU_ASSERT_FATAL(k >= 0);
		seen[k]++;
		CU_ASSERT_EQUAL(o->line_no, 100 + (uint64_t)k);
	}
	for (int j = 0; j < n; j++)
		CU_ASSERT_EQUAL(seen[j], 1);
	free(seen);
}

/* Polls until the worker matched n Acks (bounded by the guard). */
static void wait_acks(serve_t *s, uint64_t n)
{
	serve_stats_t st;
	for (int i = 0; i < GUARD_MS / 5; i++) {
		serve_get_stats(s, &st);
		if (st.acks >= n)
			return;
		mg_clock_sleep_ns(5 * MG_NS_PER_MS);
	}
	CU_FAIL("acks not seen");
}

/* Moves the worker's fake clock by ns and waits (bounded by the guard)
 * until its I/O thread has run its timers at the new reading: whatever
 * they do at that time has happened when this returns. */
static void advance(serve_t *s, cu_clock_t *clock, int64_t ns)
{
	int64_t want = cu_clock_advance(clock, ns);
	serve_stats_t st;
	for (int i = 0; i < GUARD_MS / 5; i++) {
		serve_wake(s);
		serve_get_stats(s, &st);
		if (st.timers_at >= want)
			return;
		mg_clock_sleep_ns(5 * MG_NS_PER_MS);
	}
	CU_FAIL("the worker's timers did not run at the new time");
}

static void base_opts(serve_opts_t *o, const faked_t *d)
{
	serve_opts_init(o);
	o->scheduler = d->endpoint;
	o->arch = "tiny";
	o->fake = true;
	o->slots = 4;
	o->threads = 2;
	o->name = "w-test";
	o->hardware = "cpu-test";
	o->reconnect_min_ns = 20 * MG_NS_PER_MS;
	o->reconnect_max_ns = 80 * MG_NS_PER_MS;
	o->grace_ns = 5 * MG_NS_PER_S;
}

/* A worker of stories260K from ../shared (slots 0: base_opts'). */
static void real_opts(serve_opts_t *o, const faked_t *d, int n_ctx, int slots)
{
	base_opts(o, d);
	o->fake = false;
	o->arch = NULL;
	o->model_path = cu_shared_path("models/stories260K.gguf");
	o->n_ctx = n_ctx;
	if (slots > 0)
		o->slots = slots;
}

static serve_t *start(const serve_opts_t *o)
{
	serve_t *s = NULL;
	char err[256] = "";
	int r = serve_new(o, &s, err, sizeof(err));
	if (r < 0)
		fprintf(stderr, "\n  serve_new: %s\n", err);
	CU_ASSERT_EQUAL_FATAL(r, 0);
	CU_ASSERT_EQUAL_FATAL(serve_start(s), 0);
	return s;
}

/* Hello -> Welcome (liveness long enough that the test's own pauses never
 * look like a dead daemon) -> the first Credit. */
static void handshake(faked_t *d, rx_t *hello, uint32_t hb_ms, uint32_t liveness)
{
	CU_ASSERT_EQUAL_FATAL(faked_expect(d, MARGIN__V1__MSG__BODY_HELLO, GUARD_MS, hello), 0);
	send_welcome(d, hello, hb_ms, liveness);
	rx_t c;
	CU_ASSERT_EQUAL_FATAL(faked_expect(d, MARGIN__V1__MSG__BODY_CREDIT, GUARD_MS, &c), 0);
	d->credits++;
	d->credit_total += c.m->credit->n;
	rx_done(&c);
}

static void test_hello_and_credit(void)
{
	faked_t d;
	faked_open(&d, NULL);
	serve_opts_t o;
	base_opts(&o, &d);
	serve_t *s = start(&o);

	rx_t h;
	CU_ASSERT_EQUAL_FATAL(faked_expect(&d, MARGIN__V1__MSG__BODY_HELLO, GUARD_MS, &h), 0);
	const Margin__V1__Hello *hm = h.m->hello;
	CU_ASSERT_EQUAL(hm->proto_version, MG_PROTO_VERSION);
	CU_ASSERT_STRING_EQUAL(hm->worker_name, "w-test");
	CU_ASSERT_EQUAL_FATAL(hm->n_models, 1);
	CU_ASSERT_STRING_EQUAL(hm->models[0]->name, "tiny");
	CU_ASSERT_STRING_EQUAL(hm->models[0]->kv_type, "");	/* --fake: no engine, no memory */
	CU_ASSERT_STRING_EQUAL(hm->models[0]->arith, "");
	CU_ASSERT_EQUAL(hm->models[0]->kv_bytes, 0);
	CU_ASSERT_EQUAL(hm->slots, 4);
	CU_ASSERT_EQUAL(hm->threads, 2);
	CU_ASSERT_STRING_EQUAL(hm->hardware_profile, "cpu-test");
	CU_ASSERT_PTR_NOT_NULL(strstr(hm->build, MARGIN_VERSION));
	CU_ASSERT_NOT_EQUAL(hm->instance_id, 0);

	/* Welcome -> credit for one slot-filling shard + one queued (the
	 * shard size is unknown until the first Assign) */
	send_welcome(&d, &h, 1000, 20);
	rx_t c;
	CU_ASSERT_EQUAL_FATAL(faked_expect(&d, MARGIN__V1__MSG__BODY_CREDIT, GUARD_MS, &c), 0);
	CU_ASSERT_EQUAL(c.m->credit->n, 2);
	rx_done(&c);

	rx_done(&h);
	serve_destroy(&s);
	CU_ASSERT_PTR_NULL(s);
	faked_close(&d);
}

static void test_credit_formula(void)
{
	faked_t d;
	faked_open(&d, NULL);
	serve_opts_t o;
	base_opts(&o, &d);
	/* the shard stays held meanwhile: long enough that a loaded machine
	 * (the sanitizer build beside the integration tests) cannot finish it
	 * before the next message is sent */
	o.fake_delay_ns = 1500 * MG_NS_PER_MS;
	serve_t *s = start(&o);
	rx_t h;
	handshake(&d, &h, 1000, 20);
	CU_ASSERT_EQUAL(d.credit_total, 2);

	/* held: 1 shard of 1 request; est = 1: want = 1 + ceil(3/1) + 1 = 5;
	 * have = 1 held + 1 credit left -> Credit{3} */
	send_assign(&d, &h, "b1", 1, 1);
	rx_t c;
	CU_ASSERT_EQUAL_FATAL(faked_expect(&d, MARGIN__V1__MSG__BODY_CREDIT, GUARD_MS, &c), 0);
	CU_ASSERT_EQUAL(c.m->credit->n, 3);
	rx_done(&c);

	/* a shard of 8 requests fills the 4 slots on its own; with it held,
	 * want = 1 (b1) + 1 (b2 fills) + 1 queued = 3; have = 2 held + 3
	 * granted: no Credit until shards finish */
	send_assign(&d, &h, "b2", 2, 8);
	rx_t r;
	CU_ASSERT_EQUAL_FATAL(faked_expect(&d, MARGIN__V1__MSG__BODY_RESULT, GUARD_MS, &r), 0);
	CU_ASSERT_EQUAL(r.m->result->shard_id, 1);
	CU_ASSERT_EQUAL(d.credits, 1);	/* none arrived before b1's Result */
	rx_done(&r);

	rx_done(&h);
	serve_destroy(&s);
	faked_close(&d);
}

static void test_assign_result(void)
{
	faked_t d;
	faked_open(&d, NULL);
	serve_opts_t o;
	base_opts(&o, &d);
	serve_t *s = start(&o);
	rx_t h;
	handshake(&d, &h, 1000, 20);

	const char *prompts[5] = { "", "abcd", "abcdefgh", "a longer prompt of 32 bytes.....", "x" };
	send_assign_ex(&d, &h, "tiny", "b1", 7, 2, 5, 12, 42, prompts);
	rx_t r;
	CU_ASSERT_EQUAL_FATAL(faked_expect(&d, MARGIN__V1__MSG__BODY_RESULT, GUARD_MS, &r), 0);
	const Margin__V1__Result *res = r.m->result;
	check_result_ids(res, "b1", 7, 5);
	CU_ASSERT_EQUAL(res->attempt, 2);
	for (size_t i = 0; i < res->n_outputs; i++) {
		const Margin__V1__Output *out = res->outputs[i];
		size_t k = out->line_no - 100;
		CU_ASSERT_PTR_NULL(out->error);
		CU_ASSERT(strlen(out->text) > 0);
		CU_ASSERT_STRING_EQUAL(out->finish_reason, "length");
		CU_ASSERT_EQUAL(out->completion_tokens, 12);
		size_t want_pt = strlen(prompts[k]) / 4 ? strlen(prompts[k]) / 4 : 1;
		CU_ASSERT_EQUAL(out->prompt_tokens, want_pt);
		CU_ASSERT_PTR_NOT_NULL_FATAL(out->usage);
		CU_ASSERT_EQUAL(out->usage->busy_ns, 0);
	}
	CU_ASSERT_PTR_NOT_NULL(res->step_stats);
	char text0[256];
	snprintf(text0, sizeof(text0), "%s", res->outputs[0]->text);
	send_ack(&d, &h, 7, 2);
	rx_done(&r);

	/* same (custom_id, seed) in another shard: the same text; another
	 * seed: another text */
	send_assign_ex(&d, &h, "tiny", "b1", 8, 1, 1, 12, 42, NULL);
	CU_ASSERT_EQUAL_FATAL(faked_expect(&d, MARGIN__V1__MSG__BODY_RESULT, GUARD_MS, &r), 0);
	CU_ASSERT_EQUAL(r.m->result->shard_id, 8);
	CU_ASSERT_STRING_EQUAL(r.m->result->outputs[0]->text, text0);
	send_ack(&d, &h, 8, 1);
	rx_done(&r);
	send_assign_ex(&d, &h, "tiny", "b1", 9, 1, 1, 12, 43, NULL);
	CU_ASSERT_EQUAL_FATAL(faked_expect(&d, MARGIN__V1__MSG__BODY_RESULT, GUARD_MS, &r), 0);
	CU_ASSERT_STRING_NOT_EQUAL(r.m->result->outputs[0]->text, text0);
	send_ack(&d, &h, 9, 1);
	rx_done(&r);

	/* a model this worker does not serve: every request fails */
	send_assign_ex(&d, &h, "other-model", "b2", 10, 1, 3, 12, 1, NULL);
	CU_ASSERT_EQUAL_FATAL(faked_expect(&d, MARGIN__V1__MSG__BODY_RESULT, GUARD_MS, &r), 0);
	check_result_ids(r.m->result, "b2", 10, 3);
	for (size_t i = 0; i < r.m->result->n_outputs; i++) {
		CU_ASSERT_PTR_NOT_NULL_FATAL(r.m->result->outputs[i]->error);
		CU_ASSERT_STRING_EQUAL(r.m->result->outputs[i]->error->code, "model_not_found");
	}
	send_ack(&d, &h, 10, 1);
	rx_done(&r);

	/* every Ack was matched to its Result */
	wait_acks(s, 4);
	serve_stats_t st;
	serve_get_stats(s, &st);
	CU_ASSERT_EQUAL(st.acks, 4);
	CU_ASSERT_EQUAL(st.shards_done, 4);

	rx_done(&h);
	serve_destroy(&s);
	faked_close(&d);
}

static void test_resend_until_ack(void)
{
	faked_t d;
	faked_open(&d, NULL);
	serve_opts_t o;
	base_opts(&o, &d);
	cu_clock_t clock = { .ns = 1000 * MG_NS_PER_S };
	o.clock = cu_clock_read;
	o.clock_ctx = &clock;
	o.resend_ns = 50 * MG_NS_PER_MS;
	serve_t *s = start(&o);
	rx_t h;
	handshake(&d, &h, 1000, 20);

	send_assign(&d, &h, "b1", 3, 2);
	rx_t r1, r2;
	CU_ASSERT_EQUAL_FATAL(faked_expect(&d, MARGIN__V1__MSG__BODY_RESULT, GUARD_MS, &r1), 0);
	/* no Ack, but the interval has not passed: not yet sent again */
	serve_stats_t st;
	advance(s, &clock, o.resend_ns - 1);
	serve_get_stats(s, &st);
	CU_ASSERT_EQUAL(st.results_sent, 1);
	/* the interval is over: it comes again, byte for byte */
	advance(s, &clock, 1);
	CU_ASSERT_EQUAL_FATAL(faked_expect(&d, MARGIN__V1__MSG__BODY_RESULT, GUARD_MS, &r2), 0);
	CU_ASSERT_EQUAL_FATAL(r1.raw_len, r2.raw_len);
	CU_ASSERT_EQUAL(memcmp(r1.raw, r2.raw, r1.raw_len), 0);
	send_ack(&d, &h, 3, 1);
	wait_acks(s, 1);
	/* acknowledged: no more re-sends, though four intervals pass */
	serve_get_stats(s, &st);
	uint64_t sent = st.results_sent;
	CU_ASSERT_EQUAL(sent, 2);
	advance(s, &clock, 4 * o.resend_ns);
	serve_get_stats(s, &st);
	CU_ASSERT_EQUAL(st.results_sent, sent);
	rx_done(&r1);
	rx_done(&r2);
	rx_done(&h);
	serve_destroy(&s);
	faked_close(&d);
}

static void test_heartbeats_while_busy(void)
{
	faked_t d;
	faked_open(&d, NULL);
	serve_opts_t o;
	base_opts(&o, &d);
	/* the engine thread is held for 20 heartbeat intervals */
	o.fake_delay_ns = 1000 * MG_NS_PER_MS;
	serve_t *s = start(&o);
	rx_t h;
	handshake(&d, &h, 50, 1000);

	send_assign(&d, &h, "b1", 1, 1);
	d.heartbeats = 0;
	rx_t r;
	CU_ASSERT_EQUAL_FATAL(faked_expect(&d, MARGIN__V1__MSG__BODY_RESULT, GUARD_MS, &r), 0);
	/* ~20 expected; a handful proves they did not wait for the engine */
	CU_ASSERT(d.heartbeats >= 5);
	rx_done(&r);
	rx_done(&h);
	serve_destroy(&s);
	faked_close(&d);
}

static void test_silence_reconnect(void)
{
	faked_t d;
	faked_open(&d, NULL);
	serve_opts_t o;
	base_opts(&o, &d);
	serve_t *s = start(&o);
	rx_t h1, h2;
	handshake(&d, &h1, 1000, 20);
	uint64_t instance = h1.m->hello->instance_id;

	/* a Result the daemon never acknowledges */
	send_assign(&d, &h1, "b1", 5, 3);
	rx_t r1;
	CU_ASSERT_EQUAL_FATAL(faked_expect(&d, MARGIN__V1__MSG__BODY_RESULT, GUARD_MS, &r1), 0);

	/* a second Welcome shortens the heartbeat, then silence: after
	 * 3 x 50 ms the worker drops the socket and says
	 * Hello again, from the same process */
	send_welcome(&d, &h1, 50, 3);
	CU_ASSERT_EQUAL_FATAL(faked_expect(&d, MARGIN__V1__MSG__BODY_HELLO, GUARD_MS, &h2), 0);
	CU_ASSERT_EQUAL(h2.m->hello->instance_id, instance);
	/* a new socket, a new routing id */
	CU_ASSERT(h2.id_len != h1.id_len || memcmp(h2.id, h1.id, h1.id_len) != 0);

	/* after the Welcome the unacknowledged Result goes out again */
	send_welcome(&d, &h2, 1000, 20);
	rx_t r2;
	CU_ASSERT_EQUAL_FATAL(faked_expect(&d, MARGIN__V1__MSG__BODY_RESULT, GUARD_MS, &r2), 0);
	CU_ASSERT_EQUAL(r2.id_len, h2.id_len);
	CU_ASSERT_EQUAL(memcmp(r2.id, h2.id, h2.id_len), 0);
	CU_ASSERT_EQUAL_FATAL(r2.raw_len, r1.raw_len);
	CU_ASSERT_EQUAL(memcmp(r2.raw, r1.raw, r1.raw_len), 0);
	check_result_ids(r2.m->result, "b1", 5, 3);

	serve_stats_t st;
	serve_get_stats(s, &st);
	CU_ASSERT(st.connects >= 2);
	CU_ASSERT_EQUAL(st.welcomes, 2);	/* the repeated Welcome is not a new session */
	rx_done(&r1);
	rx_done(&r2);
	rx_done(&h1);
	rx_done(&h2);
	serve_destroy(&s);
	faked_close(&d);
}

/* A shard running when the connection is lost keeps running; its Result
 * goes out on the new connection, and the new credit counts it as held. */
static void test_shard_survives_reconnect(void)
{
	faked_t d;
	faked_open(&d, NULL);
	serve_opts_t o;
	base_opts(&o, &d);
	o.fake_delay_ns = 4000 * MG_NS_PER_MS;	/* outlasts the reconnect on a loaded machine */
	serve_t *s = start(&o);
	rx_t h1, h2;
	handshake(&d, &h1, 1000, 20);
	send_assign(&d, &h1, "b1", 6, 1);
	rx_t c;
	CU_ASSERT_EQUAL_FATAL(faked_expect(&d, MARGIN__V1__MSG__BODY_CREDIT, GUARD_MS, &c), 0);
	rx_done(&c);
	send_welcome(&d, &h1, 50, 3);	/* then silence */
	CU_ASSERT_EQUAL_FATAL(faked_expect(&d, MARGIN__V1__MSG__BODY_HELLO, GUARD_MS, &h2), 0);
	send_welcome(&d, &h2, 1000, 20);
	/* slots 4, one 1-request shard held: 1 + ceil(3/1) + 1 queued = 5
	 * shards wanted, 1 held, the old credit forgotten -> 4 */
	CU_ASSERT_EQUAL_FATAL(faked_expect(&d, MARGIN__V1__MSG__BODY_CREDIT, GUARD_MS, &c), 0);
	CU_ASSERT_EQUAL(c.m->credit->n, 4);
	rx_done(&c);
	rx_t r;
	CU_ASSERT_EQUAL_FATAL(faked_expect(&d, MARGIN__V1__MSG__BODY_RESULT, GUARD_MS, &r), 0);
	CU_ASSERT_EQUAL(r.id_len, h2.id_len);
	CU_ASSERT_EQUAL(memcmp(r.id, h2.id, h2.id_len), 0);
	check_result_ids(r.m->result, "b1", 6, 1);
	rx_done(&r);
	rx_done(&h1);
	rx_done(&h2);
	serve_destroy(&s);
	faked_close(&d);
}

static void test_daemon_bye_reconnects(void)
{
	faked_t d;
	faked_open(&d, NULL);
	serve_opts_t o;
	base_opts(&o, &d);
	serve_t *s = start(&o);
	rx_t h1, h2;
	handshake(&d, &h1, 1000, 20);
	Margin__V1__Bye b = MARGIN__V1__BYE__INIT;
	b.reason = "daemon shutting down";
	mg_msg_t m = MARGIN__V1__MSG__INIT;
	m.body_case = MARGIN__V1__MSG__BODY_BYE;
	m.bye = &b;
	faked_send(&d, &h1, &m);
	/* after Welcome a Bye means "come back later", not "go away" */
	CU_ASSERT_EQUAL_FATAL(faked_expect(&d, MARGIN__V1__MSG__BODY_HELLO, GUARD_MS, &h2), 0);
	CU_ASSERT_FALSE(serve_finished(s));
	rx_done(&h1);
	rx_done(&h2);
	serve_destroy(&s);
	faked_close(&d);
}

static void test_refused(void)
{
	faked_t d;
	faked_open(&d, NULL);
	serve_opts_t o;
	base_opts(&o, &d);
	serve_t *s = start(&o);
	rx_t h;
	CU_ASSERT_EQUAL_FATAL(faked_expect(&d, MARGIN__V1__MSG__BODY_HELLO, GUARD_MS, &h), 0);
	Margin__V1__Bye b = MARGIN__V1__BYE__INIT;
	b.reason = "protocol version 1 not supported (want 2)";
	mg_msg_t m = MARGIN__V1__MSG__INIT;
	m.body_case = MARGIN__V1__MSG__BODY_BYE;
	m.bye = &b;
	faked_send(&d, &h, &m);
	/* the threads end by themselves; the reason reaches the caller */
	char err[256] = "";
	CU_ASSERT_EQUAL(serve_wait(s, err, sizeof(err)), -ECONNREFUSED);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "protocol version 1 not supported"));
	CU_ASSERT(serve_finished(s));
	rx_done(&h);
	serve_destroy(&s);
	faked_close(&d);
}

static void test_garbage_dropped(void)
{
	faked_t d;
	faked_open(&d, NULL);
	serve_opts_t o;
	base_opts(&o, &d);
	serve_t *s = start(&o);
	rx_t h;
	handshake(&d, &h, 1000, 20);

	static const uint8_t junk[] = { 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x02 };
	faked_send_raw(&d, &h, junk, sizeof(junk));		/* not protobuf */
	faked_send_raw(&d, &h, "", 0);				/* empty */
	zmq_send(d.router, h.id, h.id_len, ZMQ_SNDMORE);	/* two frames */
	zmq_send(d.router, "a", 1, ZMQ_SNDMORE);
	zmq_send(d.router, "b", 1, 0);
	static const uint8_t nobody[] = { 0x78, 0x01 };	/* a Msg with only an unknown field */
	faked_send_raw(&d, &h, nobody, sizeof(nobody));
	Margin__V1__Credit c = MARGIN__V1__CREDIT__INIT;	/* a worker's message */
	c.n = 99;
	mg_msg_t m = MARGIN__V1__MSG__INIT;
	m.body_case = MARGIN__V1__MSG__BODY_CREDIT;
	m.credit = &c;
	faked_send(&d, &h, &m);
	Margin__V1__Ack a = MARGIN__V1__ACK__INIT;		/* an Ack for nothing */
	a.shard_id = 12345;
	m.body_case = MARGIN__V1__MSG__BODY_ACK;
	m.ack = &a;
	faked_send(&d, &h, &m);

	/* still serving, on the same connection */
	send_assign(&d, &h, "b1", 1, 2);
	rx_t r;
	CU_ASSERT_EQUAL_FATAL(faked_expect(&d, MARGIN__V1__MSG__BODY_RESULT, GUARD_MS, &r), 0);
	check_result_ids(r.m->result, "b1", 1, 2);
	CU_ASSERT_EQUAL(r.id_len, h.id_len);
	CU_ASSERT_EQUAL(memcmp(r.id, h.id, h.id_len), 0);
	serve_stats_t st;
	serve_get_stats(s, &st);
	CU_ASSERT_EQUAL(st.dropped_frames, 5);
	CU_ASSERT_EQUAL(st.connects, 1);
	rx_done(&r);
	rx_done(&h);
	serve_destroy(&s);
	faked_close(&d);
}

static void test_cancel(void)
{
	faked_t d;
	faked_open(&d, NULL);
	serve_opts_t o;
	base_opts(&o, &d);
	o.fake_delay_ns = 2000 * MG_NS_PER_MS;	/* the Cancel must reach B while A runs */
	serve_t *s = start(&o);
	rx_t h;
	handshake(&d, &h, 1000, 20);

	/* A occupies the engine thread; B waits behind it and is cancelled */
	send_assign(&d, &h, "ba", 1, 2);
	send_assign(&d, &h, "bb", 2, 3);
	send_cancel(&d, &h, "bb");
	rx_t r1, r2;
	CU_ASSERT_EQUAL_FATAL(faked_expect(&d, MARGIN__V1__MSG__BODY_RESULT, GUARD_MS, &r1), 0);
	CU_ASSERT_EQUAL_FATAL(faked_expect(&d, MARGIN__V1__MSG__BODY_RESULT, GUARD_MS, &r2), 0);
	const Margin__V1__Result *ra = r1.m->result->shard_id == 1 ? r1.m->result : r2.m->result;
	const Margin__V1__Result *rb = r1.m->result->shard_id == 1 ? r2.m->result : r1.m->result;
	check_result_ids(ra, "ba", 1, 2);
	check_result_ids(rb, "bb", 2, 3);
	for (size_t i = 0; i < ra->n_outputs; i++)
		CU_ASSERT_PTR_NULL(ra->outputs[i]->error);
	for (size_t i = 0; i < rb->n_outputs; i++) {
		CU_ASSERT_PTR_NOT_NULL_FATAL(rb->outputs[i]->error);
		CU_ASSERT_STRING_EQUAL(rb->outputs[i]->error->code, "cancelled");
		CU_ASSERT_STRING_EQUAL(rb->outputs[i]->text, "");
	}
	rx_done(&r1);
	rx_done(&r2);
	rx_done(&h);
	serve_destroy(&s);
	faked_close(&d);
}

static void test_graceful_stop(void)
{
	faked_t d;
	faked_open(&d, NULL);
	serve_opts_t o;
	base_opts(&o, &d);
	o.fake_delay_ns = 1000 * MG_NS_PER_MS;
	serve_t *s = start(&o);
	rx_t h;
	handshake(&d, &h, 1000, 20);

	send_assign(&d, &h, "b1", 1, 2);
	/* once the shard is in the engine, ask the worker to stop */
	serve_stats_t st;
	for (int i = 0; i < GUARD_MS / 5; i++) {
		serve_get_stats(s, &st);
		if (st.shards_taken == 1)
			break;
		mg_clock_sleep_ns(5 * MG_NS_PER_MS);
	}
	CU_ASSERT_EQUAL_FATAL(st.shards_taken, 1);
	serve_stop(s, SERVE_STOP_GRACEFUL);
	/* the running shard is finished and delivered; no more credit */
	rx_t r;
	CU_ASSERT_EQUAL_FATAL(faked_expect(&d, MARGIN__V1__MSG__BODY_RESULT, GUARD_MS, &r), 0);
	check_result_ids(r.m->result, "b1", 1, 2);
	int credits = d.credits;
	send_ack(&d, &h, 1, 1);
	rx_t b;
	CU_ASSERT_EQUAL_FATAL(faked_expect(&d, MARGIN__V1__MSG__BODY_BYE, GUARD_MS, &b), 0);
	CU_ASSERT_EQUAL(d.credits, credits);
	char err[64];
	CU_ASSERT_EQUAL(serve_wait(s, err, sizeof(err)), 0);
	rx_done(&b);
	rx_done(&r);
	rx_done(&h);
	serve_destroy(&s);
	faked_close(&d);
}

static void test_curve(void)
{
	char srv_pub[41], srv_sec[41], cli_pub[41], cli_sec[41];
	CU_ASSERT_EQUAL_FATAL(zmq_curve_keypair(srv_pub, srv_sec), 0);
	CU_ASSERT_EQUAL_FATAL(zmq_curve_keypair(cli_pub, cli_sec), 0);

	/* key files as marginctl keygen writes them, one with a comment */
	char kpath[512], ppath[512], cpath[512], bad[512];
	snprintf(kpath, sizeof(kpath), "%s/w1.key", cu_tmpdir());
	snprintf(ppath, sizeof(ppath), "%s/margind.pub", cu_tmpdir());
	snprintf(cpath, sizeof(cpath), "%s/commented.pub", cu_tmpdir());
	snprintf(bad, sizeof(bad), "%s/bad.key", cu_tmpdir());
	FILE *f = fopen(kpath, "w");
	fprintf(f, "%s\n", cli_sec);
	fclose(f);
	f = fopen(ppath, "w");
	fprintf(f, "%s\n", srv_pub);
	fclose(f);
	f = fopen(cpath, "w");
	fprintf(f, "# margind public key\n\n  %s  \r\n", srv_pub);
	fclose(f);
	f = fopen(bad, "w");
	fprintf(f, "# a secret key\n%.39s\n", cli_sec);	/* one character short */
	fclose(f);

	char k[41], err[256];
	CU_ASSERT_EQUAL(mg_curve_key_load(cpath, k, NULL, err, sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(k, srv_pub);
	CU_ASSERT_EQUAL(mg_curve_key_load(bad, k, NULL, err, sizeof(err)), -EBADMSG);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "bad.key:2"));
	CU_ASSERT_EQUAL(mg_curve_key_load("/nonexistent/x.key", k, NULL, err, sizeof(err)), -ENOENT);

	faked_t d;
	faked_open(&d, srv_sec);
	serve_opts_t o;
	base_opts(&o, &d);
	o.curve = true;
	CU_ASSERT_EQUAL_FATAL(mg_curve_key_load(kpath, o.curve_secret, NULL, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(mg_curve_key_load(ppath, o.curve_server, NULL, err, sizeof(err)), 0);
	serve_t *s = start(&o);
	rx_t h;
	CU_ASSERT_EQUAL_FATAL(faked_expect(&d, MARGIN__V1__MSG__BODY_HELLO, GUARD_MS, &h), 0);
	CU_ASSERT_STRING_EQUAL(h.m->hello->worker_name, "w-test");
	rx_done(&h);
	serve_destroy(&s);
	faked_close(&d);
}

static void test_bad_options(void)
{
	serve_opts_t o;
	serve_t *s = NULL;
	char err[256];
	serve_opts_init(&o);
	o.arch = "tiny";
	o.fake = true;
	CU_ASSERT_EQUAL(serve_new(&o, &s, err, sizeof(err)), -EINVAL);	/* no scheduler */
	o.scheduler = "tcp://127.0.0.1:1";
	o.model_path = "x.gguf";
	CU_ASSERT_EQUAL(serve_new(&o, &s, err, sizeof(err)), -EINVAL);	/* both models */
	o.model_path = NULL;
	o.slots = 0;
	CU_ASSERT_EQUAL(serve_new(&o, &s, err, sizeof(err)), -EINVAL);
	o.slots = 4;
	o.curve = true;
	strcpy(o.curve_secret, "short");
	CU_ASSERT_EQUAL(serve_new(&o, &s, err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NULL(s);
	o.curve = false;
	o.model_name = "served-as";
	CU_ASSERT_EQUAL_FATAL(serve_new(&o, &s, err, sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(serve_model_name(s), "served-as");
	serve_destroy(&s);	/* never started */
	serve_destroy(&s);
	/* a file's model name is its stem */
	o.arch = NULL;
	o.model_name = NULL;
	o.model_path = cu_shared_path("models/stories260K.gguf");
	CU_ASSERT_EQUAL_FATAL(serve_new(&o, &s, err, sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(serve_model_name(s), "stories260K");
	serve_destroy(&s);
}

/* The engine path on the reference model: two shards of four reference
 * prompts through four slots (the second shard queues behind the first and
 * joins as slots free up). Each text must be exactly the first 16 greedy
 * tokens of the reference continuation. */
static void test_engine_stories260K(void)
{
	json_error_t je;
	json_t *ref = json_load_file(cu_shared_path("testdata/stories260K_greedy.json"), 0, &je);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ref);
	json_t *cases = json_object_get(ref, "cases");
	CU_ASSERT_FATAL(json_array_size(cases) >= 8);
	model_t *m = NULL;
	char err[256] = "";
	CU_ASSERT_EQUAL_FATAL(model_load(cu_shared_path("models/stories260K.gguf"), &m, err, sizeof(err)), 0);
	const tok_t *tok = model_tok(m);

	enum { N = 8, MAXT = 16 };
	const char *prompts[N];
	char *want[N];
	size_t want_prompt[N];
	for (size_t c = 0; c < N; c++) {
		json_t *jc = json_array_get(cases, c);
		prompts[c] = json_string_value(json_object_get(jc, "prompt"));
		want_prompt[c] = json_array_size(json_object_get(jc, "prompt_tokens"));
		int32_t ids[MAXT];
		for (size_t j = 0; j < MAXT; j++)
			ids[j] = (int32_t)json_integer_value(json_array_get(json_object_get(jc, "output_tokens"), j));
		size_t len;
		CU_ASSERT_EQUAL_FATAL(tok_decode(tok, ids, MAXT, false, &want[c], &len), 0);
	}

	faked_t d;
	faked_open(&d, NULL);
	serve_opts_t o;
	real_opts(&o, &d, 256, 0);
	serve_t *s = start(&o);
	rx_t h;
	CU_ASSERT_EQUAL_FATAL(faked_expect(&d, MARGIN__V1__MSG__BODY_HELLO, GUARD_MS, &h), 0);
	const Margin__V1__ModelInfo *mi = h.m->hello->models[0];
	CU_ASSERT_STRING_EQUAL(mi->name, "stories260K");
	CU_ASSERT_STRING_EQUAL(mi->arch, "llama");
	CU_ASSERT_EQUAL(mi->n_params, model_n_params(m));
	CU_ASSERT_EQUAL(mi->n_ctx, 256);
	CU_ASSERT_EQUAL(mi->n_vocab, 512);
	/* its memory: the default KV type, the slots' caches, the weights */
	CU_ASSERT_STRING_EQUAL(mi->kv_type, MODEL_KV_DEFAULT);
	CU_ASSERT_STRING_EQUAL(mi->arith, "llama");	/* the default order */
	CU_ASSERT_EQUAL(mi->kv_bytes, (uint64_t)o.slots * model_kv_bytes(m, 256, MODEL_KV_F16));
	CU_ASSERT_EQUAL(mi->weight_bytes, model_weight_bytes(m));
	send_welcome(&d, &h, 1000, 20);

	send_assign_ex(&d, &h, "stories260K", "ref", 1, 1, 4, MAXT, 7, prompts);
	send_assign_ex(&d, &h, "stories260K", "ref", 2, 1, 4, MAXT, 7, prompts + 4);
	for (int k = 0; k < 2; k++) {
		rx_t r;
		CU_ASSERT_EQUAL_FATAL(faked_expect(&d, MARGIN__V1__MSG__BODY_RESULT, GUARD_MS, &r), 0);
		const Margin__V1__Result *res = r.m->result;
		CU_ASSERT_FATAL(res->shard_id == 1 || res->shard_id == 2);
		check_result_ids(res, "ref", res->shard_id, 4);
		uint64_t busy = 0;
		for (size_t i = 0; i < res->n_outputs; i++) {
			const Margin__V1__Output *out = res->outputs[i];
			size_t c = (res->shard_id - 1) * 4 + (out->line_no - 100);
			CU_ASSERT_PTR_NULL(out->error);
			CU_ASSERT_STRING_EQUAL(out->finish_reason, "length");
			CU_ASSERT_EQUAL(out->completion_tokens, MAXT);
			CU_ASSERT_EQUAL(out->prompt_tokens, want_prompt[c]);
			CU_ASSERT_STRING_EQUAL(out->text, want[c]);
			CU_ASSERT(out->usage->busy_ns > 0 && out->usage->flops > 0);
			busy += out->usage->busy_ns;
		}
		const Margin__V1__StepStats *ss = res->step_stats;
		CU_ASSERT_PTR_NOT_NULL_FATAL(ss);
		/* each decode is a step of its own; the steps shard 2 waited
		 * through behind full slots are not charged to it */
		CU_ASSERT(ss->steps >= MAXT && ss->steps < 2 * MAXT);
		CU_ASSERT(ss->max_batch >= 1 && ss->max_batch <= 4);
		CU_ASSERT_EQUAL(ss->busy_ns, busy);
		CU_ASSERT(ss->wall_ns >= busy);	/* its requests' shares of the steps it was in */
		send_ack(&d, &h, res->shard_id, 1);
		rx_done(&r);
	}

	for (size_t c = 0; c < N; c++)
		free(want[c]);
	rx_done(&h);
	serve_destroy(&s);
	faked_close(&d);
	model_destroy(&m);
	json_decref(ref);
}

/* The engine's vector of one input (ids), for comparison. */
static engine_out_t *embed_ref(const model_t *m, const int32_t *ids, size_t n, const char *text, uint32_t dims)
{
	engine_opts_t eo = { .slots = 1, .n_ctx = 256, .threads = 2 };
	engine_t *e = NULL;
	char err[256] = "";
	CU_ASSERT_EQUAL_FATAL(engine_new(m, &eo, &e, err, sizeof(err)), 0);
	engine_req_t r = { .id = 0, .prompt_ids = ids, .n_prompt_ids = n, .prompt = text, .embed = true,
			   .dimensions = dims };
	CU_ASSERT_EQUAL_FATAL(engine_submit(e, &r), 0);
	while (engine_pending(e) > 0)
		CU_ASSERT_FATAL(engine_step(e) >= 0);
	engine_out_t *o = engine_take(e);
	engine_destroy(&e);
	CU_ASSERT_PTR_NOT_NULL_FATAL(o);
	CU_ASSERT_EQUAL_FATAL(o->error, 0);
	return o;
}

/* An embed request of a shard: inputs are texts, or token ids when
 * ids[i] is not NULL. */
typedef struct emb_req {
	const char *text[3];
	const int32_t *ids[3];
	size_t n_ids[3];
	size_t n_inputs;
	uint32_t dimensions;
	bool truncate;
	bool generate;		/* a completion request instead */
} emb_req_t;

static void send_embed_assign(faked_t *d, const rx_t *to, const char *batch, uint64_t shard, const emb_req_t *er,
			      size_t n)
{
	Margin__V1__Request *rq = calloc(n, sizeof(*rq));
	Margin__V1__Request **prq = calloc(n, sizeof(*prq));
	Margin__V1__EmbedInput *in = calloc(n * 3, sizeof(*in));
	Margin__V1__EmbedInput **pin = calloc(n * 3, sizeof(*pin));
	char (*ids)[32] = calloc(n, sizeof(*ids));
	for (size_t i = 0; i < n; i++) {
		margin__v1__request__init(&rq[i]);
		snprintf(ids[i], sizeof(ids[i]), "%s-%zu", batch, i);
		rq[i].line_no = 100 + i;
		rq[i].custom_id = ids[i];
		rq[i].seed = 1;
		if (er[i].generate) {
			rq[i].prompt = (char *)"Once upon a time";
			rq[i].max_tokens = 8;
		} else {
			rq[i].embed = true;
			rq[i].dimensions = er[i].dimensions;
			rq[i].truncate = er[i].truncate;
			rq[i].n_inputs = er[i].n_inputs;
			rq[i].inputs = pin + 3 * i;
			for (size_t k = 0; k < er[i].n_inputs; k++) {
				Margin__V1__EmbedInput *x = &in[3 * i + k];
				margin__v1__embed_input__init(x);
				if (er[i].ids[k] != NULL) {
					x->tokens = (int32_t *)er[i].ids[k];
					x->n_tokens = er[i].n_ids[k];
				} else {
					x->text = (char *)er[i].text[k];
				}
				pin[3 * i + k] = x;
			}
		}
		prq[i] = &rq[i];
	}
	send_requests(d, to, "stories260K", batch, shard, 1, prq, n);
	free(rq);
	free(prq);
	free(in);
	free(pin);
	free(ids);
}

static bool same_vec(const Margin__V1__Embedding *e, const engine_out_t *o)
{
	return e->n_values == o->n_embedding && memcmp(e->values, o->embedding, o->n_embedding * sizeof(float)) == 0;
}

/* A real model's worker: Hello says what it embeds (stories260K: 64
 * values, mean by default, not truncatable); an Assign mixing embed and
 * completion requests gets one vector per input, in order, equal to the
 * engine's bits, prompt_tokens summed over the inputs, and per-request
 * errors: dimensions on a model that is not truncatable, an input beyond
 * the context (unless truncate), an empty input, an id outside the
 * vocabulary. */
static void test_engine_embed(void)
{
	model_t *m = NULL;
	char err[256] = "";
	CU_ASSERT_EQUAL_FATAL(model_load(cu_shared_path("models/stories260K.gguf"), &m, err, sizeof(err)), 0);
	int dim = model_config(m)->dim;
	faked_t d;
	faked_open(&d, NULL);
	serve_opts_t o;
	real_opts(&o, &d, 256, 3);
	serve_t *s = start(&o);
	rx_t h;
	CU_ASSERT_EQUAL_FATAL(faked_expect(&d, MARGIN__V1__MSG__BODY_HELLO, GUARD_MS, &h), 0);
	const Margin__V1__ModelInfo *mi = h.m->hello->models[0];
	CU_ASSERT_EQUAL(mi->embed_dims, (uint32_t)dim);
	CU_ASSERT_STRING_EQUAL(mi->pooling, "mean");
	CU_ASSERT(!mi->embed_truncatable);
	send_welcome(&d, &h, 1000, 20);

	const char *t0 = "Once upon a time, there was a little girl.", *t1 = "The cat sat.";
	engine_out_t *r0 = embed_ref(m, NULL, 0, t0, 0), *r1 = embed_ref(m, NULL, 0, t1, 0);
	int32_t long_ids[300];
	for (int i = 0; i < 300; i++)
		long_ids[i] = i == 0 ? 1 : 3 + (i * 37) % 500;
	engine_out_t *rcut = embed_ref(m, long_ids, 256, NULL, 0);
	static const int32_t bad_ids[] = { 1, 9999 };
	emb_req_t er[] = {
		/* 0: text, the same text's ids, another text */
		{ .text = { t0, NULL, t1 }, .ids = { NULL, r0->prompt_ids, NULL }, .n_ids = { 0, r0->n_prompt_ids, 0 },
		  .n_inputs = 3 },
		{ .generate = true },
		{ .text = { t0 }, .n_inputs = 1, .dimensions = 16 },
		{ .text = { t1 }, .ids = { NULL, long_ids }, .n_ids = { 0, 300 }, .n_inputs = 2 },
		{ .text = { t1 }, .ids = { NULL, long_ids }, .n_ids = { 0, 300 }, .n_inputs = 2, .truncate = true },
		{ .text = { t1, "" }, .n_inputs = 2 },
		{ .ids = { bad_ids }, .n_ids = { 2 }, .n_inputs = 1 },
		{ .n_inputs = 0 },
	};
	enum { NR = sizeof(er) / sizeof(er[0]) };
	send_embed_assign(&d, &h, "emb", 1, er, NR);
	rx_t r;
	CU_ASSERT_EQUAL_FATAL(faked_expect(&d, MARGIN__V1__MSG__BODY_RESULT, GUARD_MS, &r), 0);
	const Margin__V1__Result *res = r.m->result;
	CU_ASSERT_EQUAL_FATAL(res->n_outputs, NR);
	const Margin__V1__Output *out[NR] = { 0 };
	for (size_t i = 0; i < NR; i++)
		out[res->outputs[i]->line_no - 100] = res->outputs[i];
	for (size_t i = 0; i < NR; i++)
		CU_ASSERT_PTR_NOT_NULL_FATAL(out[i]);

	CU_ASSERT_PTR_NULL(out[0]->error);
	CU_ASSERT_EQUAL_FATAL(out[0]->n_embeddings, 3);
	CU_ASSERT(same_vec(out[0]->embeddings[0], r0));
	CU_ASSERT(same_vec(out[0]->embeddings[1], r0));
	CU_ASSERT(same_vec(out[0]->embeddings[2], r1));
	CU_ASSERT_EQUAL(out[0]->prompt_tokens, 2 * r0->n_prompt_ids + r1->n_prompt_ids);
	CU_ASSERT_EQUAL(out[0]->completion_tokens, 0);
	CU_ASSERT_STRING_EQUAL(out[0]->text, "");
	CU_ASSERT_STRING_EQUAL(out[0]->finish_reason, "");
	CU_ASSERT(out[0]->usage->busy_ns > 0 && out[0]->usage->flops > 0);
	CU_ASSERT_EQUAL(out[0]->usage->first_token_ns, 0);

	CU_ASSERT_PTR_NULL(out[1]->error);
	CU_ASSERT_EQUAL(out[1]->completion_tokens, 8);
	CU_ASSERT_EQUAL(out[1]->n_embeddings, 0);
	CU_ASSERT(strlen(out[1]->text) > 0);

	CU_ASSERT_PTR_NOT_NULL_FATAL(out[2]->error);
	CU_ASSERT_STRING_EQUAL(out[2]->error->code, "invalid_request");
	CU_ASSERT_PTR_NOT_NULL(strstr(out[2]->error->message, "embed_truncatable"));
	CU_ASSERT_EQUAL(out[2]->n_embeddings, 0);

	CU_ASSERT_PTR_NOT_NULL_FATAL(out[3]->error);
	CU_ASSERT_STRING_EQUAL(out[3]->error->code, "context_length_exceeded");
	CU_ASSERT_PTR_NOT_NULL(strstr(out[3]->error->message, "input 1 has 300 tokens"));
	CU_ASSERT_EQUAL(out[3]->n_embeddings, 0);

	CU_ASSERT_PTR_NULL(out[4]->error);
	CU_ASSERT_EQUAL_FATAL(out[4]->n_embeddings, 2);
	CU_ASSERT(same_vec(out[4]->embeddings[0], r1));
	CU_ASSERT(same_vec(out[4]->embeddings[1], rcut));
	CU_ASSERT_EQUAL(out[4]->prompt_tokens, r1->n_prompt_ids + 256);

	CU_ASSERT_PTR_NOT_NULL_FATAL(out[5]->error);
	CU_ASSERT_STRING_EQUAL(out[5]->error->code, "invalid_request");
	CU_ASSERT_PTR_NOT_NULL(strstr(out[5]->error->message, "input 1 is empty"));
	CU_ASSERT_PTR_NOT_NULL_FATAL(out[6]->error);
	CU_ASSERT_STRING_EQUAL(out[6]->error->code, "invalid_request");
	CU_ASSERT_PTR_NOT_NULL(strstr(out[6]->error->message, "input 0: token 1 is id 9999"));
	CU_ASSERT_PTR_NOT_NULL_FATAL(out[7]->error);
	CU_ASSERT_STRING_EQUAL(out[7]->error->code, "invalid_request");

	/* the shard's step totals still equal its requests' shares */
	uint64_t busy = 0;
	for (size_t i = 0; i < NR; i++)
		busy += out[i]->usage->busy_ns;
	CU_ASSERT_EQUAL(res->step_stats->busy_ns, busy);
	send_ack(&d, &h, 1, 1);
	rx_done(&r);
	rx_done(&h);
	serve_destroy(&s);

	/* embed_truncatable = yes and pooling last: Hello says so, and
	 * dimensions cut the vector (a new daemon: the old one's socket
	 * holds the first worker's Bye) */
	faked_close(&d);
	faked_open(&d, NULL);
	o.scheduler = d.endpoint;
	o.embed_truncatable = true;
	o.pooling = "last";
	s = start(&o);
	CU_ASSERT_EQUAL_FATAL(faked_expect(&d, MARGIN__V1__MSG__BODY_HELLO, GUARD_MS, &h), 0);
	mi = h.m->hello->models[0];
	CU_ASSERT_STRING_EQUAL(mi->pooling, "last");
	CU_ASSERT(mi->embed_truncatable);
	send_welcome(&d, &h, 1000, 20);
	emb_req_t cut = { .text = { t0 }, .n_inputs = 1, .dimensions = 16 };
	send_embed_assign(&d, &h, "emb", 2, &cut, 1);
	CU_ASSERT_EQUAL_FATAL(faked_expect(&d, MARGIN__V1__MSG__BODY_RESULT, GUARD_MS, &r), 0);
	const Margin__V1__Output *c = r.m->result->outputs[0];
	CU_ASSERT_PTR_NULL_FATAL(c->error);
	CU_ASSERT_EQUAL_FATAL(c->n_embeddings, 1);
	CU_ASSERT_EQUAL_FATAL(c->embeddings[0]->n_values, 16);
	double ss = 0.0;
	for (int k = 0; k < 16; k++)
		ss += (double)c->embeddings[0]->values[k] * c->embeddings[0]->values[k];
	CU_ASSERT(ss > 1.0 - 2e-6 && ss < 1.0 + 2e-6);
	send_ack(&d, &h, 2, 1);
	rx_done(&r);
	rx_done(&h);
	serve_destroy(&s);

	engine_out_free(&r0);
	engine_out_free(&r1);
	engine_out_free(&rcut);
	faked_close(&d);
	model_destroy(&m);
}

/* A Result over the frame cap (64 MiB): the largest output (an embed
 * request of 2^18 vectors of 64 values, 70 MB) fails with
 * result_too_large, and the shard's other outputs still arrive whole. */
static void test_embed_result_too_large(void)
{
	faked_t d;
	faked_open(&d, NULL);
	serve_opts_t o;
	real_opts(&o, &d, 16, 512);
	serve_t *s = start(&o);
	rx_t h;
	CU_ASSERT_EQUAL_FATAL(faked_expect(&d, MARGIN__V1__MSG__BODY_HELLO, GUARD_MS, &h), 0);
	CU_ASSERT_EQUAL_FATAL(h.m->hello->models[0]->embed_dims, 64);
	send_welcome(&d, &h, 1000, 200);
	enum { BIG = 1 << 18 };
	static const int32_t bos[1] = { 1 };
	emb_req_t *er = calloc(3, sizeof(*er));
	er[0].generate = true;
	er[2] = (emb_req_t){ .text = { "The cat sat.", "Once" }, .n_inputs = 2 };
	/* the big one: send_embed_assign takes up to 3 inputs, so it is built here */
	Margin__V1__Request rq[3];
	Margin__V1__Request *prq[3] = { &rq[0], &rq[1], &rq[2] };
	Margin__V1__EmbedInput *in = calloc(BIG, sizeof(*in)), **pin = calloc(BIG, sizeof(*pin));
	Margin__V1__EmbedInput in2[2], *pin2[2] = { &in2[0], &in2[1] };
	char ids[3][16];
	for (int i = 0; i < 3; i++) {
		margin__v1__request__init(&rq[i]);
		snprintf(ids[i], sizeof(ids[i]), "big-%d", i);
		rq[i].line_no = 100 + (uint64_t)i;
		rq[i].custom_id = ids[i];
	}
	rq[0].prompt = (char *)"Once upon a time";
	rq[0].max_tokens = 4;
	rq[1].embed = rq[2].embed = true;
	for (int k = 0; k < BIG; k++) {
		margin__v1__embed_input__init(&in[k]);
		in[k].tokens = (int32_t *)bos;
		in[k].n_tokens = 1;
		pin[k] = &in[k];
	}
	rq[1].n_inputs = BIG;
	rq[1].inputs = pin;
	for (int k = 0; k < 2; k++) {
		margin__v1__embed_input__init(&in2[k]);
		in2[k].text = (char *)er[2].text[k];
	}
	rq[2].n_inputs = 2;
	rq[2].inputs = pin2;
	send_requests(&d, &h, "stories260K", "big", 1, 1, prq, 3);
	free(in);
	free(pin);
	free(er);
	rx_t r;
	CU_ASSERT_EQUAL_FATAL(faked_expect(&d, MARGIN__V1__MSG__BODY_RESULT, 10 * GUARD_MS, &r), 0);
	const Margin__V1__Result *res = r.m->result;
	CU_ASSERT_EQUAL_FATAL(res->n_outputs, 3);
	const Margin__V1__Output *out[3] = { 0 };
	for (size_t i = 0; i < 3; i++)
		out[res->outputs[i]->line_no - 100] = res->outputs[i];
	CU_ASSERT_PTR_NULL(out[0]->error);
	CU_ASSERT_EQUAL(out[0]->completion_tokens, 4);
	CU_ASSERT_PTR_NOT_NULL_FATAL(out[1]->error);
	CU_ASSERT_STRING_EQUAL(out[1]->error->code, "result_too_large");
	CU_ASSERT_EQUAL(out[1]->n_embeddings, 0);
	CU_ASSERT_EQUAL(out[1]->prompt_tokens, BIG);	/* the work was done: it is billed */
	CU_ASSERT_PTR_NULL(out[2]->error);
	CU_ASSERT_EQUAL(out[2]->n_embeddings, 2);
	send_ack(&d, &h, 1, 1);
	rx_done(&r);
	rx_done(&h);
	serve_destroy(&s);
	faked_close(&d);
}

static int run_cmd(int argc, char **argv)
{
	return cmd_serve(argc, argv);
}

typedef struct cmd_thread {
	int argc;
	char **argv;
	int status;
} cmd_thread_t;

static void *cmd_main(void *arg)
{
	cmd_thread_t *c = arg;
	c->status = run_cmd(c->argc, c->argv);
	return NULL;
}

/* margin-worker serve: usage errors exit 2 before anything connects. */
static void test_cmd_usage(void)
{
	char *help[] = { "serve", "--help", NULL };
	CU_ASSERT_EQUAL(run_cmd(2, help), 0);
	/* no CURVE keys and no --no-curve: refused */
	char *nocurve[] = { "serve", "--scheduler", "tcp://127.0.0.1:1", "--arch", "tiny", "--fake", NULL };
	CU_ASSERT_EQUAL(run_cmd(6, nocurve), 2);
	char *both[] = { "serve", "--scheduler", "tcp://127.0.0.1:1", "--arch", "tiny", "--model", "x.gguf",
			 "--no-curve", NULL };
	CU_ASSERT_EQUAL(run_cmd(8, both), 2);
	char *noshed[] = { "serve", "--arch", "tiny", "--no-curve", NULL };
	CU_ASSERT_EQUAL(run_cmd(4, noshed), 2);
	char *slots[] = { "serve", "--scheduler", "tcp://127.0.0.1:1", "--arch", "tiny", "--no-curve",
			  "--slots", "0", NULL };
	char *said = NULL;
	CU_ASSERT_EQUAL(cu_run_captured(cmd_serve, 8, slots, &said, NULL), 2);
	/* the refusal names the flag, the key and the range */
	CU_ASSERT_PTR_NOT_NULL(said && strstr(said, "--slots: [worker] slots = \"0\": expected 1 to 4096"));
	free(said);
	char *kv[] = { "serve", "--scheduler", "tcp://127.0.0.1:1", "--arch", "tiny", "--no-curve",
		       "--kv", "q4", NULL };
	CU_ASSERT_EQUAL(run_cmd(8, kv), 2);
	char path[512];
	snprintf(path, sizeof(path), "%s/kv.conf", cu_tmpdir());
	FILE *f = fopen(path, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fprintf(f, "[worker]\nscheduler = tcp://127.0.0.1:1\narch = tiny\ncurve = no\nkv_type = bf8\n");
	fclose(f);
	char *kvconf[] = { "serve", "--config", path, NULL };
	CU_ASSERT_EQUAL(run_cmd(3, kvconf), 2);
	char *wt[] = { "serve", "--scheduler", "tcp://127.0.0.1:1", "--arch", "tiny", "--no-curve",
		       "--weights", "q9_k", NULL };
	CU_ASSERT_EQUAL(run_cmd(8, wt), 2);
	char *ar[] = { "serve", "--scheduler", "tcp://127.0.0.1:1", "--arch", "tiny", "--no-curve",
		       "--arith", "exact", NULL };
	CU_ASSERT_EQUAL(run_cmd(8, ar), 2);
	char *mixed[] = { "serve", "--scheduler", "tcp://127.0.0.1:1", "--arch", "tiny", "--no-curve",
			  "--curve-secret", "w.key", NULL };
	CU_ASSERT_EQUAL(run_cmd(8, mixed), 2);
	char *unknown[] = { "serve", "--arch", "no-such-preset", "--scheduler", "tcp://127.0.0.1:1",
			    "--no-curve", "--fake", NULL };
	CU_ASSERT_EQUAL(run_cmd(7, unknown), 2);
	char *badkey[] = { "serve", "--scheduler", "tcp://127.0.0.1:1", "--arch", "tiny", "--fake",
			   "--curve-secret", "/nonexistent/w.key", "--curve-server", "/nonexistent/d.pub", NULL };
	CU_ASSERT_EQUAL(run_cmd(10, badkey), 1);
	/* embeddings: a pooling that is not one, in a flag or the file; a
	 * truncatable that is not a boolean */
	char *pool[] = { "serve", "--scheduler", "tcp://127.0.0.1:1", "--arch", "tiny", "--no-curve",
			 "--pooling", "median", NULL };
	CU_ASSERT_EQUAL(run_cmd(8, pool), 2);
	f = fopen(path, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fprintf(f, "[worker]\nscheduler = tcp://127.0.0.1:1\narch = tiny\ncurve = no\npooling = rank\n");
	fclose(f);
	CU_ASSERT_EQUAL(run_cmd(3, kvconf), 2);
	char *trunc[] = { "serve", "--scheduler", "tcp://127.0.0.1:1", "--arch", "tiny", "--no-curve",
			  "--embed-truncatable", "maybe", NULL };
	CU_ASSERT_EQUAL(run_cmd(8, trunc), 2);
}

/* The [worker] section of a config file, flags over it, and SIGTERM:
 * Hello shows which value won; the stop sends Bye and exits 0. */
static void test_cmd_config_and_sigterm(void)
{
	faked_t d;
	faked_open(&d, NULL);
	char path[512];
	snprintf(path, sizeof(path), "%s/worker.conf", cu_tmpdir());
	FILE *f = fopen(path, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fprintf(f, "[worker]\nscheduler = %s\narch = llama-110m\nname = from-file\nslots = 3\n"
		"hardware = file-hw\ncurve = no\nfake = yes\nshutdown_grace = 5s\n", d.endpoint);
	fclose(f);
	char *argv[] = { "serve", "--config", path, "--arch", "tiny", "--name", "from-flag", NULL };
	cmd_thread_t c = { .argc = 7, .argv = argv, .status = -1 };
	pthread_t t;
	CU_ASSERT_EQUAL_FATAL(pthread_create(&t, NULL, cmd_main, &c), 0);

	rx_t h;
	CU_ASSERT_EQUAL_FATAL(faked_expect(&d, MARGIN__V1__MSG__BODY_HELLO, GUARD_MS, &h), 0);
	CU_ASSERT_STRING_EQUAL(h.m->hello->worker_name, "from-flag");
	CU_ASSERT_STRING_EQUAL(h.m->hello->models[0]->name, "tiny");
	CU_ASSERT_EQUAL(h.m->hello->slots, 3);
	CU_ASSERT_STRING_EQUAL(h.m->hello->hardware_profile, "file-hw");
	send_welcome(&d, &h, 1000, 20);
	rx_t cr;
	CU_ASSERT_EQUAL_FATAL(faked_expect(&d, MARGIN__V1__MSG__BODY_CREDIT, GUARD_MS, &cr), 0);
	rx_done(&cr);

	/* the command's handler turns SIGTERM into a graceful stop */
	kill(getpid(), SIGTERM);
	rx_t b;
	CU_ASSERT_EQUAL(faked_expect(&d, MARGIN__V1__MSG__BODY_BYE, GUARD_MS, &b), 0);
	rx_done(&b);
	pthread_join(t, NULL);
	CU_ASSERT_EQUAL(c.status, 0);
	rx_done(&h);
	faked_close(&d);
}

const cu_test_t serve_tests[] = {
	{ "hello_and_credit", test_hello_and_credit },
	{ "credit_formula", test_credit_formula },
	{ "assign_result", test_assign_result },
	{ "resend_until_ack", test_resend_until_ack },
	{ "heartbeats_while_busy", test_heartbeats_while_busy },
	{ "silence_reconnect", test_silence_reconnect },
	{ "shard_survives_reconnect", test_shard_survives_reconnect },
	{ "daemon_bye_reconnects", test_daemon_bye_reconnects },
	{ "refused", test_refused },
	{ "garbage_dropped", test_garbage_dropped },
	{ "cancel", test_cancel },
	{ "graceful_stop", test_graceful_stop },
	{ "curve", test_curve },
	{ "bad_options", test_bad_options },
	{ "engine_stories260K", test_engine_stories260K },
	{ "engine_embed", test_engine_embed },
	{ "embed_result_too_large", test_embed_result_too_large },
	{ "cmd_usage", test_cmd_usage },
	{ "cmd_config_and_sigterm", test_cmd_config_and_sigterm },
	{ NULL, NULL },
};
