/* Daemon test fixture: see fixture.h. */
#include "fixture.h"
#include "ingest.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *fx_newdir(char *buf, size_t len)
{
	static int n;
	snprintf(buf, len, "%s/d%d", cu_tmpdir(), ++n);
	mkdir(buf, 0700);
	return buf;
}

int64_t fx_job_new(journal_t *j, const char *name, int n, const char *endpoint)
{
	journal_job_t job;
	memset(&job, 0, sizeof(job));
	snprintf(job.name, sizeof(job.name), "%s", name);
	snprintf(job.endpoint, sizeof(job.endpoint), "%s", endpoint);
	snprintf(job.model, sizeof(job.model), "m");
	job.state = MG_JOB_IN_PROGRESS;
	job.next_line = 1;
	job.created_at = 1;
	CU_ASSERT_EQUAL_FATAL(journal_begin_durable(j), 0);
	CU_ASSERT_EQUAL_FATAL(journal_job_create(j, &job, "{\"k\":\"v\"}"), 0);
	for (int i = 1; i <= n; i++) {
		char cid[32];
		snprintf(cid, sizeof(cid), "c%d", i);
		CU_ASSERT_EQUAL(journal_request_insert(j, job.id, i, cid, "{}", 10), 0);
	}
	CU_ASSERT_EQUAL(journal_request_insert(j, job.id, n + 1, "c1", "{}", 10), -EEXIST);
	CU_ASSERT_EQUAL_FATAL(journal_commit(j), 0);
	return job.id;
}

void fx_shard_new(journal_t *j, int64_t id, int64_t first, int64_t last, journal_shard_t *ret)
{
	memset(ret, 0, sizeof(*ret));
	ret->job = id;
	ret->first_line = first;
	ret->last_line = last;
	ret->n_requests = last - first + 1;
	snprintf(ret->state, sizeof(ret->state), "inflight");
	CU_ASSERT_EQUAL_FATAL(journal_shard_insert(j, ret), 0);
}

static int capture(void *user, const uint8_t *ident, size_t len, const mg_msg_t *m)
{
	fx_t *f = user;
	if (f->fail_sends_to && strlen(f->unreach_ident) == len &&
	    memcmp(f->unreach_ident, ident, len) == 0)
		return f->fail_sends_to;
	uint8_t *buf;
	size_t n;
	if (mg_wire_pack(m, MG_WIRE_MAX_FRAME, &buf, &n) < 0)
		return -EINVAL;
	mg_msg_t *copy = NULL;
	char err[128];
	int r = mg_wire_unpack(buf, n, MG_WIRE_MAX_FRAME, &copy, err, sizeof(err));
	free(buf);
	if (r < 0)
		return r;
	if (f->n_sent == f->cap_sent) {
		f->cap_sent = f->cap_sent ? f->cap_sent * 2 : 64;
		f->sent = realloc(f->sent, f->cap_sent * sizeof(*f->sent));
	}
	sent_t *s = &f->sent[f->n_sent++];
	snprintf(s->ident, sizeof(s->ident), "%.*s", (int)len, (const char *)ident);
	s->m = copy;
	return 0;
}

static int64_t fx_wall(void *user)
{
	return ((fx_t *)user)->now;
}

static void open_sched(fx_t *f)
{
	char err[512];
	int r = journal_open(f->dir, JOURNAL_SYNC_NORMAL, &f->j, err, sizeof(err));
	if (r < 0)
		fprintf(stderr, "journal_open: %s\n", err);
	CU_ASSERT_EQUAL_FATAL(r, 0);
	/* The fake clock is the journal's wall clock too (before sched_new
	 * marks the workers of a previous run gone). */
	journal_set_clock(f->j, fx_wall, f);
	r = sched_new(f->j, &f->p, capture, f, f->now, &f->s, err, sizeof(err));
	if (r < 0)
		fprintf(stderr, "sched_new: %s\n", err);
	CU_ASSERT_EQUAL_FATAL(r, 0);
}

void fx_open(fx_t *f, const sched_params_t *p)
{
	memset(f, 0, sizeof(*f));
	fx_newdir(f->dir, sizeof(f->dir));
	if (p)
		f->p = *p;
	else
		sched_params_default(&f->p);
	f->now = 1000 * MG_NS_PER_S;
	open_sched(f);
}

void fx_clear(fx_t *f)
{
	for (size_t i = 0; i < f->n_sent; i++)
		mg_wire_free(&f->sent[i].m);
	f->n_sent = 0;
	f->read_pos = 0;
}

void fx_close(fx_t *f)
{
	sched_destroy(&f->s);
	journal_destroy(&f->j);
	fx_clear(f);
	free(f->sent);
	f->sent = NULL;
	f->cap_sent = 0;
}

void fx_reopen(fx_t *f)
{
	sched_destroy(&f->s);
	journal_destroy(&f->j);
	fx_clear(f);
	open_sched(f);
}

void fx_feed(fx_t *f, const char *ident, const mg_msg_t *m)
{
	uint8_t *buf;
	size_t n;
	CU_ASSERT_EQUAL_FATAL(mg_wire_pack(m, MG_WIRE_MAX_FRAME, &buf, &n), 0);
	sched_on_frame(f->s, (const uint8_t *)ident, strlen(ident), buf, n, MG_WIRE_MAX_FRAME, NULL, f->now);
	free(buf);
}

void fx_frame(fx_t *f, const char *ident, const void *data, size_t len)
{
	sched_on_frame(f->s, (const uint8_t *)ident, strlen(ident), data, len, MG_WIRE_MAX_FRAME, NULL, f->now);
}

static void hello(fx_t *f, const char *ident, const char *model, uint64_t instance, uint32_t version,
		  uint32_t embed_dims)
{
	Margin__V1__ModelInfo mi = MARGIN__V1__MODEL_INFO__INIT, *mis[1] = { &mi };
	mi.embed_dims = embed_dims;
	mi.pooling = embed_dims ? "mean" : "";
	mi.embed_truncatable = embed_dims > 0;
	mi.name = (char *)model;
	mi.arch = "llama";
	mi.n_ctx = 512;
	mi.kv_type = "q8_0";
	mi.arith = "fast";
	mi.kv_bytes = 4096;
	mi.weight_bytes = 8192;
	Margin__V1__Hello h = MARGIN__V1__HELLO__INIT;
	h.proto_version = version;
	h.worker_name = (char *)ident;
	h.n_models = 1;
	h.models = mis;
	h.slots = 8;
	h.threads = 1;
	h.hardware_profile = "test-hw";
	h.build = "test";
	h.instance_id = instance;
	mg_msg_t m = MARGIN__V1__MSG__INIT;
	m.body_case = MARGIN__V1__MSG__BODY_HELLO;
	m.hello = &h;
	fx_feed(f, ident, &m);
}

void fx_hello_v(fx_t *f, const char *ident, const char *model, uint64_t instance, uint32_t version)
{
	hello(f, ident, model, instance, version, 0);
}

void fx_hello_embed(fx_t *f, const char *ident, const char *model, uint64_t instance, uint32_t embed_dims)
{
	hello(f, ident, model, instance, MG_PROTO_VERSION, embed_dims);
}

void fx_hello(fx_t *f, const char *ident, const char *model, uint64_t instance)
{
	fx_hello_v(f, ident, model, instance, MG_PROTO_VERSION);
}

void fx_credit(fx_t *f, const char *ident, uint32_t n)
{
	Margin__V1__Credit c = MARGIN__V1__CREDIT__INIT;
	c.n = n;
	mg_msg_t m = MARGIN__V1__MSG__INIT;
	m.body_case = MARGIN__V1__MSG__BODY_CREDIT;
	m.credit = &c;
	fx_feed(f, ident, &m);
}

void fx_heartbeat(fx_t *f, const char *ident)
{
	Margin__V1__Heartbeat hb = MARGIN__V1__HEARTBEAT__INIT;
	mg_msg_t m = MARGIN__V1__MSG__INIT;
	m.body_case = MARGIN__V1__MSG__BODY_HEARTBEAT;
	m.heartbeat = &hb;
	fx_feed(f, ident, &m);
}

void fx_bye(fx_t *f, const char *ident)
{
	Margin__V1__Bye b = MARGIN__V1__BYE__INIT;
	b.reason = "test stops";
	mg_msg_t m = MARGIN__V1__MSG__INIT;
	m.body_case = MARGIN__V1__MSG__BODY_BYE;
	m.bye = &b;
	fx_feed(f, ident, &m);
}

void fx_result_opts(fx_t *f, const char *ident, const Margin__V1__Assign *a, size_t drop,
		    uint32_t attempt_override)
{
	size_t n = a->n_requests - (drop < a->n_requests ? drop : a->n_requests);
	Margin__V1__Output *outs = calloc(n ? n : 1, sizeof(*outs));
	Margin__V1__Output **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
	Margin__V1__Usage *us = calloc(n ? n : 1, sizeof(*us));
	char (*texts)[600] = calloc(n ? n : 1, sizeof(*texts));
	for (size_t i = 0; i < n; i++) {
		margin__v1__output__init(&outs[i]);
		margin__v1__usage__init(&us[i]);
		const Margin__V1__Request *rq = a->requests[i];
		outs[i].line_no = rq->line_no;
		outs[i].custom_id = rq->custom_id;
		snprintf(texts[i], sizeof(texts[i]), "out:%s", rq->custom_id);
		outs[i].text = texts[i];
		outs[i].finish_reason = "stop";
		outs[i].prompt_tokens = 3;
		outs[i].completion_tokens = 5;
		us[i].busy_ns = 1000;
		us[i].flops = 2000;
		outs[i].usage = &us[i];
		ptrs[i] = &outs[i];
	}
	Margin__V1__Result r = MARGIN__V1__RESULT__INIT;
	r.batch_id = a->batch_id;
	r.shard_id = a->shard_id;
	r.attempt = attempt_override ? attempt_override : a->attempt;
	r.n_outputs = n;
	r.outputs = ptrs;
	mg_msg_t m = MARGIN__V1__MSG__INIT;
	m.body_case = MARGIN__V1__MSG__BODY_RESULT;
	m.result = &r;
	fx_feed(f, ident, &m);
	free(outs);
	free(ptrs);
	free(us);
	free(texts);
}

void fx_result(fx_t *f, const char *ident, const Margin__V1__Assign *a)
{
	fx_result_opts(f, ident, a, 0, 0);
}

const mg_msg_t *fx_next(fx_t *f, int body_case, char *ret_ident)
{
	while (f->read_pos < f->n_sent) {
		sent_t *s = &f->sent[f->read_pos++];
		if ((int)s->m->body_case == body_case) {
			if (ret_ident)
				strcpy(ret_ident, s->ident);
			return s->m;
		}
	}
	return NULL;
}

size_t fx_count(const fx_t *f, const char *ident, int body_case)
{
	size_t n = 0;
	for (size_t i = 0; i < f->n_sent; i++)
		if ((int)f->sent[i].m->body_case == body_case &&
		    (ident == NULL || strcmp(ident, f->sent[i].ident) == 0))
			n++;
	return n;
}

json_t *fx_lines(int n, const char *model, const char *prefix, int max_tokens)
{
	json_t *a = json_array();
	for (int i = 0; i < n; i++) {
		char cid[64], content[64];
		snprintf(cid, sizeof(cid), "%s%d", prefix, i);
		snprintf(content, sizeof(content), "hello %d", i);
		json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:{s:s, s:[{s:s, s:s}], s:i}}",
			"custom_id", cid, "method", "POST", "url", "/v1/chat/completions",
			"body", "model", model, "messages", "role", "user", "content", content,
			"max_tokens", max_tokens));
	}
	return a;
}

void fx_submit(fx_t *f, const char *name, json_t *lines, char *ret)
{
	char err[512];
	int r = sched_submit_inline(f->s, name, NULL, NULL, lines, f->now, ret, err, sizeof(err));
	if (r < 0)
		fprintf(stderr, "submit: %s\n", err);
	CU_ASSERT_EQUAL_FATAL(r, 0);
	json_decref(lines);
}

void fx_job(fx_t *f, const char *name, journal_job_t *ret)
{
	CU_ASSERT_EQUAL_FATAL(journal_job_find(f->j, name, ret), 0);
}

void fx_advance(fx_t *f, int64_t dt)
{
	int64_t end = f->now + dt;
	while (f->now < end) {
		int64_t step = 100 * MG_NS_PER_MS;
		f->now = f->now + step > end ? end : f->now + step;
		sched_tick(f->s, f->now);
	}
}
