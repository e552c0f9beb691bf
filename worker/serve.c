/* serve: see serve.h; the state machines are drawn in docs/protocol.md.
 *
 * Layout of this file: options and model info (controlling thread), the
 * pipe between the two threads, the engine thread, the I/O thread, then
 * the lifetime functions. */
#include "serve.h"
#include "mg_cpu.h"

#include "chat.h"
#include "engine.h"
#include "gguf.h"
#include "mg_clock.h"
#include "mg_curve.h"
#include "mg_hash.h"
#include "mg_log.h"
#include "mg_utf8.h"
#include "mg_wire.h"
#include "model.h"
#include "synth.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include <zmq.h>

#define COMP "serve"
#define PAIR_ENDPOINT "inproc://serve-engine"
/* How long close() may keep flushing a Bye or a last Result. */
#define LINGER_MS 500
/* Frames taken from one socket per wake-up, so timers stay on time. */
#define DRAIN_MAX 256

/* ---- messages between the threads ------------------------------------ */

/* Frame 0 of every pipe message, by value; frame 1 (when present) is a
 * protobuf frame: the Assign or Cancel as margind sent it, or a packed
 * Msg{Result} ready to go on the wire. */
enum pipe_kind {
	PIPE_ASSIGN = 1,	/* io -> engine, + Msg{Assign} */
	PIPE_CANCEL,		/* io -> engine, + Msg{Cancel} */
	PIPE_QUIT,		/* io -> engine */
	PIPE_RESULT,		/* engine -> io, + Msg{Result} */
	PIPE_PROGRESS,		/* engine -> io: n_left of a shard went down */
	PIPE_DROPPED,		/* engine -> io: shard given up (out of memory), no Result */
};

typedef struct pipe_msg {
	uint32_t kind;
	uint32_t attempt;
	uint64_t shard_id;
	uint32_t n_left;	/* PROGRESS: requests of the shard not finished */
	uint32_t n_requests;	/* RESULT: outputs in it */
} pipe_msg_t;

struct serve {
	/* options; the strings are owned copies */
	serve_opts_t o;
	char *scheduler, *model_path, *arch, *name, *hardware;
	char model_name[128];
	char model_arch[16];
	uint64_t n_params;
	uint32_t n_ctx, n_vocab;
	const char *kv_type;	/* static; "" with fake */
	uint64_t kv_bytes, weight_bytes;
	/* embeddings (ModelInfo): 0 = this worker does not embed */
	uint32_t embed_dims;
	const char *pooling;	/* static; "" when not embedding */
	bool embed_truncatable;
	int slots, threads;
	uint64_t instance_id;	/* random per serve_new: a restart, not a reconnect */

	model_t *model;		/* owned; only the engine thread uses it once started */
	engine_t *engine;	/* owned; same; NULL with fake */

	void *zctx;		/* owned */
	void *io_pair;		/* owned; the I/O thread's end once started */
	void *eng_pair;		/* owned; the engine thread's end once started */
	int ctl[2];		/* self-pipe: serve_stop() writes, the I/O thread reads */
	atomic_int stop_mode;
	atomic_bool io_done;

	pthread_t io_thr, eng_thr;
	bool started, joined;
	/* Written by the I/O thread before it ends, read after the join. */
	int status;
	char status_msg[256];

	struct {
		atomic_uint_fast64_t connects, welcomes, shards_taken, shards_done, results_sent, acks,
			dropped_frames;
		atomic_int_fast64_t timers_at;
	} st;
};

/* The I/O thread's clock (serve_opts_t.clock). */
static int64_t io_now(const serve_t *s)
{
	return s->o.clock != NULL ? s->o.clock(s->o.clock_ctx) : mg_clock_now_ns();
}

static int pipe_send(void *sock, const pipe_msg_t *pm, const void *body, size_t len, int flags)
{
	if (zmq_send(sock, pm, sizeof(*pm), flags | (body ? ZMQ_SNDMORE : 0)) < 0)
		return -zmq_errno();
	if (body != NULL && zmq_send(sock, body, len, flags) < 0)
		return -zmq_errno();
	return 0;
}

/* Receives one pipe message: *pm, and frame 1 into body (zmq_msg_init'ed by
 * the caller; left empty when absent). -EAGAIN when nothing is waiting. */
static int pipe_recv(void *sock, pipe_msg_t *pm, zmq_msg_t *body, int flags)
{
	zmq_msg_t f;
	zmq_msg_init(&f);
	if (zmq_msg_recv(&f, sock, flags) < 0) {
		int e = zmq_errno();
		zmq_msg_close(&f);
		return -e;
	}
	bool ok = zmq_msg_size(&f) == sizeof(*pm);
	if (ok)
		memcpy(pm, zmq_msg_data(&f), sizeof(*pm));
	bool more = zmq_msg_more(&f);
	zmq_msg_close(&f);
	if (more && zmq_msg_recv(body, sock, 0) < 0)
		return -zmq_errno();
	/* the pipe is ours: a malformed message is a programming error */
	assert(ok);
	return ok ? 0 : -EPROTO;
}

/* ---- small helpers ----------------------------------------------------- */

static char *xstrdup(const char *s)
{
	return s ? strdup(s) : NULL;
}

static int grow(void **arr, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	size_t n = *cap ? *cap * 2 : 8;
	while (n < need)
		n *= 2;
	void *p = realloc(*arr, n * elem);
	if (p == NULL)
		return -ENOMEM;
	*arr = p;
	*cap = n;
	return 0;
}

/* ---- the engine thread ------------------------------------------------ */

/* One request of a shard and, once finished, its output. */
typedef struct ereq {
	uint64_t line_no;
	char *custom_id;	/* owned */
	size_t prompt_bytes;	/* prompt, or the message contents together */
	uint32_t max_tokens;
	uint64_t seed;
	bool done;
	char *text;		/* owned, valid UTF-8 */
	const char *finish;	/* static */
	bool failed;
	char err_code[48];
	char err_msg[256];
	uint32_t prompt_tokens, completion_tokens;
	uint64_t busy_ns, flops, queue_ns, first_token_ns;
	/* when it was in the engine's steps (engine path; ran = it took part
	 * in at least one): from its first step to when it was taken */
	bool ran;
	int64_t start_ns, end_ns;
	/* engine requests: ids base_id + eid0 .. + n_eids - 1 (one per input
	 * of an embed request, else one), n_eids_left not yet taken */
	uint32_t eid0, n_eids, n_eids_left;
	bool embed;
	uint32_t dims;		/* embed: values per vector */
	float *emb;		/* owned: embed, [n_eids][dims] in input order */
} ereq_t;

typedef struct eshard {
	char *batch_id;		/* owned */
	uint64_t shard_id;
	uint32_t attempt;
	uint64_t base_id;	/* engine ids base_id .. base_id + n_eids - 1 */
	uint32_t n, n_left, n_eids;
	ereq_t *reqs;		/* owned, [n] */
	int64_t arrival_ns;	/* the engine thread got the Assign */
	int64_t submit_ns;	/* its requests went into the engine */
	bool cancelled;
	bool progressed;	/* n_left went down since the last PROGRESS */
	/* totals of the engine steps its requests took part in (step_stats) */
	uint64_t steps, wall_ns;
	uint32_t max_batch;
	struct eshard *next;
} eshard_t;

/* One engine step as the engine thread timed it. */
typedef struct step_rec {
	int64_t t0, t1;
	uint32_t n;		/* sequences in it */
} step_rec_t;

typedef struct eng {
	serve_t *s;
	void *pair;		/* borrowed: s->eng_pair */
	engine_t *engine;	/* borrowed: s->engine (NULL with fake) */
	eshard_t *head;		/* owned list, in arrival order */
	uint64_t next_id;
	/* owned: the steps since the oldest held shard arrived, to charge
	 * each shard exactly the steps its requests were in */
	step_rec_t *steps;
	size_t n_steps, cap_steps;
	bool stalled;		/* the last step ran nothing though requests are pending */
	bool quit;
} eng_t;

static void eshard_free(eshard_t *sh)
{
	if (sh == NULL)
		return;
	for (uint32_t i = 0; sh->reqs && i < sh->n; i++) {
		free(sh->reqs[i].custom_id);
		free(sh->reqs[i].text);
		free(sh->reqs[i].emb);
	}
	free(sh->reqs);
	free(sh->batch_id);
	free(sh);
}

static void req_fail(ereq_t *r, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void req_fail(ereq_t *r, const char *code, const char *fmt, ...)
{
	r->failed = true;
	r->finish = NULL;
	snprintf(r->err_code, sizeof(r->err_code), "%s", code);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->err_msg, sizeof(r->err_msg), fmt, ap);
	va_end(ap);
}

static void req_finish(eshard_t *sh, ereq_t *r)
{
	if (r->done)
		return;
	r->done = true;
	sh->n_left--;
	sh->progressed = true;
}

/* Packs Msg{Result} of a finished shard into *ret_buf (owned by the
 * caller). drop (NULL: none): for a Result over the frame cap, the
 * outputs marked there (every one, or the largest: eng_complete)
 * becomes a "result_too_large" error without text, so the shard is still
 * answered (and re-dispatch will not help, which the daemon sees). */
static int pack_result(const eshard_t *sh, const bool *drop, uint8_t **ret_buf, size_t *ret_len)
{
	int rc = -ENOMEM;
	size_t n = sh->n;
	Margin__V1__Output *outs = calloc(n ? n : 1, sizeof(*outs));
	Margin__V1__Output **pouts = calloc(n ? n : 1, sizeof(*pouts));
	Margin__V1__Error *errs = calloc(n ? n : 1, sizeof(*errs));
	Margin__V1__Usage *usage = calloc(n ? n : 1, sizeof(*usage));
	/* the vectors of the embed requests, all of them in two arrays */
	size_t n_emb = 0;
	for (size_t i = 0; i < n; i++)
		if (sh->reqs[i].embed && !sh->reqs[i].failed && !(drop && drop[i]))
			n_emb += sh->reqs[i].n_eids;
	Margin__V1__Embedding *embs = calloc(n_emb ? n_emb : 1, sizeof(*embs));
	Margin__V1__Embedding **pembs = calloc(n_emb ? n_emb : 1, sizeof(*pembs));
	size_t k_emb = 0;
	if (!outs || !pouts || !errs || !usage || !embs || !pembs)
		goto fail;
	Margin__V1__StepStats ss = MARGIN__V1__STEP_STATS__INIT;
	ss.steps = sh->steps;
	ss.wall_ns = sh->wall_ns;
	ss.max_batch = sh->max_batch;
	for (size_t i = 0; i < n; i++) {
		const ereq_t *r = &sh->reqs[i];
		Margin__V1__Output *o = &outs[i];
		margin__v1__output__init(o);
		margin__v1__error__init(&errs[i]);
		margin__v1__usage__init(&usage[i]);
		o->line_no = r->line_no;
		o->custom_id = r->custom_id ? r->custom_id : "";
		o->prompt_tokens = r->prompt_tokens;
		o->completion_tokens = r->completion_tokens;
		usage[i].busy_ns = r->busy_ns;
		usage[i].flops = r->flops;
		usage[i].queue_ns = r->queue_ns;
		usage[i].first_token_ns = r->first_token_ns;
		o->usage = &usage[i];
		bool strip_text = drop != NULL && drop[i];
		if (r->failed || strip_text) {
			errs[i].code = strip_text ? "result_too_large" : (char *)r->err_code;
			errs[i].message = strip_text ? "the shard's outputs exceed the frame cap" :
				(char *)r->err_msg;
			o->error = &errs[i];
			o->text = "";
			o->finish_reason = "";
		} else if (r->embed) {
			/* text and finish_reason empty; one vector per input */
			o->n_embeddings = r->n_eids;
			o->embeddings = pembs + k_emb;
			for (uint32_t k = 0; k < r->n_eids; k++, k_emb++) {
				margin__v1__embedding__init(&embs[k_emb]);
				embs[k_emb].n_values = r->dims;
				embs[k_emb].values = r->emb + (size_t)k * r->dims;
				pembs[k_emb] = &embs[k_emb];
			}
		} else {
			o->text = r->text ? r->text : "";
			o->finish_reason = (char *)(r->finish ? r->finish : "");
		}
		ss.busy_ns += r->busy_ns;
		ss.flops += r->flops;
		ss.tokens += (uint64_t)r->prompt_tokens + r->completion_tokens;
		pouts[i] = o;
	}
	Margin__V1__Result res = MARGIN__V1__RESULT__INIT;
	res.batch_id = sh->batch_id;
	res.shard_id = sh->shard_id;
	res.attempt = sh->attempt;
	res.n_outputs = n;
	res.outputs = pouts;
	res.step_stats = &ss;
	mg_msg_t m = MARGIN__V1__MSG__INIT;
	m.body_case = MARGIN__V1__MSG__BODY_RESULT;
	m.result = &res;
	rc = mg_wire_pack(&m, MG_WIRE_MAX_FRAME, ret_buf, ret_len);
fail:
	free(outs);
	free(pouts);
	free(errs);
	free(usage);
	free(embs);
	free(pembs);
	return rc;
}

/* StepStats of a finished shard: every logged step that overlaps the time
 * one of its requests was active. Steps it only waited through (queued
 * behind full slots) are not its own. */
static void eng_step_stats(const eng_t *g, eshard_t *sh)
{
	for (size_t k = 0; k < g->n_steps; k++) {
		const step_rec_t *st = &g->steps[k];
		if (st->t1 < sh->arrival_ns)
			continue;
		for (uint32_t i = 0; i < sh->n; i++) {
			const ereq_t *r = &sh->reqs[i];
			if (r->ran && st->t0 <= r->end_ns && st->t1 >= r->start_ns) {
				sh->steps++;
				sh->wall_ns += (uint64_t)(st->t1 - st->t0);
				if (st->n > sh->max_batch)
					sh->max_batch = st->n;
				break;
			}
		}
	}
}

/* The bytes output i takes in a Result, about (over, never under, by
 * the few bytes of each field's tag and length). */
static size_t output_bytes(const ereq_t *r)
{
	size_t b = 96 + strlen(r->custom_id ? r->custom_id : "") + strlen(r->err_msg);
	if (r->failed)
		return b;
	if (r->embed)
		return b + (size_t)r->n_eids * ((size_t)r->dims * sizeof(float) + 16);
	return b + (r->text ? strlen(r->text) : 0);
}

/* Marks in drop[] the largest outputs until the others fit in 15/16 of
 * the frame cap; returns how many. */
static uint32_t result_drop_largest(const eshard_t *sh, bool *drop)
{
	size_t total = 256;
	for (uint32_t i = 0; i < sh->n; i++)
		total += output_bytes(&sh->reqs[i]);
	uint32_t n = 0;
	while (total > MG_WIRE_MAX_FRAME / 16 * 15 && n < sh->n) {
		uint32_t big = 0;
		size_t bb = 0;
		for (uint32_t i = 0; i < sh->n; i++)
			if (!drop[i] && output_bytes(&sh->reqs[i]) >= bb) {
				bb = output_bytes(&sh->reqs[i]);
				big = i;
			}
		drop[big] = true;
		total -= bb - 96;
		n++;
	}
	return n;
}

/* A shard is complete (a cancelled one too): its Result to the I/O thread. */
static void eng_complete(eng_t *g, eshard_t *sh)
{
	eng_step_stats(g, sh);
	pipe_msg_t pm = { .attempt = sh->attempt, .shard_id = sh->shard_id, .n_requests = sh->n };
	uint8_t *buf = NULL;
	size_t len = 0;
	int r = pack_result(sh, NULL, &buf, &len);
	bool *drop = NULL;
	if (r == -EMSGSIZE && (drop = calloc(sh->n ? sh->n : 1, sizeof(*drop))) != NULL) {
		/* the largest outputs (texts, vectors) fail first until the rest
		 * fits; if the estimate was short, every one */
		uint32_t n_drop = result_drop_largest(sh, drop);
		mg_log(MG_LOG_ERROR, COMP, "result exceeds the frame cap, failing its largest outputs batch=%s "
		       "shard=%llu cap=%u failed=%u of %u", sh->batch_id, (unsigned long long)sh->shard_id,
		       MG_WIRE_MAX_FRAME, n_drop, sh->n);
		r = pack_result(sh, drop, &buf, &len);
		if (r == -EMSGSIZE) {
			for (uint32_t i = 0; i < sh->n; i++)
				drop[i] = true;
			r = pack_result(sh, drop, &buf, &len);
		}
	}
	free(drop);
	if (r < 0) {
		/* Out of memory: no Result (the daemon requeues the shard when
		 * it gives up on it or on this worker); DROPPED frees the credit. */
		mg_log(MG_LOG_ERROR, COMP, "cannot pack result batch=%s shard=%llu err=\"%s\"",
		       sh->batch_id, (unsigned long long)sh->shard_id, strerror(-r));
		pm.kind = PIPE_DROPPED;
		pipe_send(g->pair, &pm, NULL, 0, 0);
		return;
	}
	pm.kind = PIPE_RESULT;
	pipe_send(g->pair, &pm, buf, len, 0);
	free(buf);
	atomic_fetch_add(&g->s->st.shards_done, 1);

	uint64_t tokens = 0, busy = 0;
	uint32_t failed = 0;
	for (uint32_t i = 0; i < sh->n; i++) {
		tokens += (uint64_t)sh->reqs[i].prompt_tokens + sh->reqs[i].completion_tokens;
		busy += sh->reqs[i].busy_ns;
		failed += sh->reqs[i].failed;
	}
	mg_log(MG_LOG_INFO, COMP,
	       "shard done batch=%s shard=%llu attempt=%u requests=%u failed=%u tokens=%llu busy_ms=%.1f steps=%llu wall_ms=%.1f",
	       sh->batch_id, (unsigned long long)sh->shard_id, sh->attempt, sh->n, failed,
	       (unsigned long long)tokens, busy / 1e6, (unsigned long long)sh->steps, sh->wall_ns / 1e6);
}

/* Sends PROGRESS / RESULT / DROPPED for shards that moved, and unlinks the
 * complete ones. */
static void eng_flush(eng_t *g)
{
	eshard_t **pp = &g->head;
	while (*pp) {
		eshard_t *sh = *pp;
		if (sh->n_left == 0) {
			eng_complete(g, sh);
			*pp = sh->next;
			eshard_free(sh);
			continue;
		}
		if (sh->progressed) {
			pipe_msg_t pm = { .kind = PIPE_PROGRESS, .attempt = sh->attempt,
					  .shard_id = sh->shard_id, .n_left = sh->n_left };
			pipe_send(g->pair, &pm, NULL, 0, 0);
		}
		sh->progressed = false;
		pp = &sh->next;
	}
}

/* The shard and request of engine id `id` (NULL: none held). */
static eshard_t *eng_find_id(eng_t *g, uint64_t id, ereq_t **ret)
{
	for (eshard_t *sh = g->head; sh; sh = sh->next) {
		if (id < sh->base_id || id >= sh->base_id + sh->n_eids)
			continue;
		/* the requests' eid ranges ascend: the last one starting at or
		 * before id (requests without engine work have empty ranges) */
		uint32_t off = (uint32_t)(id - sh->base_id), lo = 0, hi = sh->n;
		while (hi - lo > 1) {
			uint32_t mid = lo + (hi - lo) / 2;
			if (sh->reqs[mid].eid0 <= off)
				lo = mid;
			else
				hi = mid;
		}
		while (lo > 0 && sh->reqs[lo].n_eids == 0)
			lo--;
		ereq_t *r = &sh->reqs[lo];
		if (off < r->eid0 || off >= r->eid0 + r->n_eids)
			return NULL;
		*ret = r;
		return sh;
	}
	return NULL;
}

/* Cancels the engine requests of r: 0, or < 0 when the engine cannot (then
 * r is not coming back through engine_take). */
static int eng_cancel_req(eng_t *g, eshard_t *sh, const ereq_t *r)
{
	int rc = 0;
	for (uint32_t k = 0; k < r->n_eids; k++) {
		int c = engine_cancel(g->engine, sh->base_id + r->eid0 + k);
		if (c < 0)
			rc = c;
	}
	return r->n_eids > 0 ? rc : -ENOENT;
}

/* One input of an embed request came back: its vector, usage and timing
 * added to r; r finishes with the last one. The first error fails r and
 * cancels its other inputs (their usage still counts). */
static void eng_take_embed(eng_t *g, eshard_t *sh, ereq_t *r, const engine_out_t *o)
{
	uint32_t k = (uint32_t)(o->id - sh->base_id) - r->eid0;
	int64_t start = sh->submit_ns + (int64_t)o->queue_ns;
	uint64_t queue = (uint64_t)(sh->submit_ns - sh->arrival_ns) + o->queue_ns;
	if (r->n_eids_left == r->n_eids || queue < r->queue_ns)
		r->queue_ns = queue;
	if (o->steps > 0 && (!r->ran || start < r->start_ns))
		r->start_ns = start;
	r->ran |= o->steps > 0;
	r->end_ns = mg_clock_now_ns();
	r->prompt_tokens += (uint32_t)o->n_prompt_ids;
	r->busy_ns += o->busy_ns;
	r->flops += o->flops;
	if (!r->failed) {
		if (o->error == -ECANCELED && sh->cancelled)
			req_fail(r, "cancelled", "batch %s was cancelled", sh->batch_id);
		else if (o->error != 0)
			req_fail(r, o->error_code[0] ? o->error_code : "engine_error", "%s",
				 o->error_msg[0] ? o->error_msg : strerror(-o->error));
		else if (o->n_embedding != r->dims)
			req_fail(r, "engine_error", "input %u: %u values, not %u", k, o->n_embedding, r->dims);
		else
			memcpy(r->emb + (size_t)k * r->dims, o->embedding, r->dims * sizeof(float));
		if (r->failed && r->n_eids_left > 1)
			eng_cancel_req(g, sh, r);
	}
	if (--r->n_eids_left == 0)
		req_finish(sh, r);
}

/* Collects every finished request from the engine. */
static void eng_take(eng_t *g)
{
	engine_out_t *o;
	while (g->engine && (o = engine_take(g->engine)) != NULL) {
		ereq_t *r = NULL;
		eshard_t *sh = eng_find_id(g, o->id, &r);
		if (sh == NULL || r->done) {
			engine_out_free(&o);
			continue;
		}
		if (r->embed) {
			eng_take_embed(g, sh, r, o);
			engine_out_free(&o);
			continue;
		}
		r->prompt_tokens = (uint32_t)o->n_prompt_ids;
		r->completion_tokens = (uint32_t)o->n_ids;
		r->busy_ns = o->busy_ns;
		r->flops = o->flops;
		/* Usage.queue_ns counts from the shard's arrival */
		r->queue_ns = (uint64_t)(sh->submit_ns - sh->arrival_ns) + o->queue_ns;
		r->first_token_ns = o->first_token_ns;
		r->ran = o->steps > 0;
		r->start_ns = sh->submit_ns + (int64_t)o->queue_ns;
		r->end_ns = mg_clock_now_ns();
		if (o->error == -ECANCELED && sh->cancelled) {
			req_fail(r, "cancelled", "batch %s was cancelled", sh->batch_id);
		} else if (o->error != 0) {
			const char *code = o->error_code[0] ? o->error_code :
				o->error == -ECANCELED ? "cancelled" : "engine_error";
			if (o->error_msg[0])
				req_fail(r, code, "%s", o->error_msg);
			else
				req_fail(r, code, "engine: %s", strerror(-o->error));
		} else {
			r->text = mg_utf8_clean(o->text ? o->text : "", o->text ? o->text_len : 0, NULL);
			r->finish = o->finish_reason ? o->finish_reason : "stop";
			if (r->text == NULL)
				req_fail(r, "out_of_memory", "worker out of memory for the output text");
		}
		engine_out_free(&o);
		req_finish(sh, r);
	}
}

/* --fake: the text is a function of (custom_id, seed) only, so a
 * re-dispatched shard answers byte for byte the same. */
static void fake_answer(eshard_t *sh)
{
	static const char *const words[16] = {
		"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
		"india", "juliett", "kilo", "lima", "mike", "november", "oscar", "papa",
	};
	for (uint32_t i = 0; i < sh->n; i++) {
		ereq_t *r = &sh->reqs[i];
		if (r->done)
			continue;
		if (r->embed) {
			/* fake_embed computed the vectors when the shard came */
			r->queue_ns = (uint64_t)(mg_clock_now_ns() - sh->arrival_ns);
			req_finish(sh, r);
			continue;
		}
		uint64_t h = mg_fnv1a64(MG_FNV1A64_OFFSET, r->custom_id, strlen(r->custom_id)) ^
			(r->seed * MG_SPLITMIX64_GAMMA);
		char buf[128];
		size_t o = 0;
		for (int w = 0; w < 8; w++, h >>= 4)
			o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s%s", w ? " " : "",
					      words[h & 15]);
		r->text = strdup(buf);
		if (r->text == NULL) {
			req_fail(r, "out_of_memory", "worker out of memory for the output text");
		} else {
			r->finish = "length";
			r->prompt_tokens = (uint32_t)(r->prompt_bytes / 4 ? r->prompt_bytes / 4 : 1);
			r->completion_tokens = r->max_tokens ? r->max_tokens : 16;
			r->queue_ns = (uint64_t)(mg_clock_now_ns() - sh->arrival_ns);
		}
		req_finish(sh, r);
	}
}

/* --fake embeddings: FAKE_EMBED_DIMS values per input, a function of the
 * input (text bytes or token ids) alone, cut to q->dimensions when set,
 * then L2-normalized, as a real model's vectors are. An input longer than
 * the context (text: bytes / 4 + 1 tokens) is refused unless q->truncate. */
#define FAKE_EMBED_DIMS 16

static void fake_embed(const serve_t *s, ereq_t *r, const Margin__V1__Request *q)
{
	uint32_t d = q->dimensions ? q->dimensions : FAKE_EMBED_DIMS;
	r->embed = true;
	if (q->n_inputs == 0) {
		req_fail(r, "invalid_request", "an embedding request without inputs");
		return;
	}
	if (d > FAKE_EMBED_DIMS) {
		req_fail(r, "invalid_request", "dimensions: %u is more than the %u dimensions of model %s's vectors",
			 d, FAKE_EMBED_DIMS, s->model_name);
		return;
	}
	r->emb = calloc(q->n_inputs * (size_t)d, sizeof(float));
	if (r->emb == NULL) {
		req_fail(r, "out_of_memory", "worker out of memory for %zu vectors", q->n_inputs);
		return;
	}
	for (size_t i = 0; i < q->n_inputs; i++) {
		const Margin__V1__EmbedInput *in = q->inputs[i];
		bool text = in->n_tokens == 0;
		uint64_t n_tok = text ? strlen(in->text ? in->text : "") / 4 + 1 : in->n_tokens;
		if (n_tok > s->n_ctx && !q->truncate) {
			req_fail(r, "context_length_exceeded",
				 "input %zu has %llu tokens, more than the context of model %s (%u tokens)", i,
				 (unsigned long long)n_tok, s->model_name, s->n_ctx);
			return;
		}
		r->prompt_tokens += (uint32_t)(n_tok < s->n_ctx ? n_tok : s->n_ctx);
		const char *t = in->text ? in->text : "";
		uint64_t h = text ? mg_fnv1a64(MG_FNV1A64_OFFSET, t, strlen(t)) : 0x84222325cbf29ce4ULL;
		for (size_t k = 0; k < in->n_tokens; k++)	/* FNV-1a over whole ids, not bytes */
			h = (h ^ (uint32_t)in->tokens[k]) * MG_FNV1A64_PRIME;
		float *vec = r->emb + i * d;
		double norm = 0;
		for (uint32_t k = 0; k < d; k++) {
			uint64_t z = mg_mix64(h + (k + 1) * MG_SPLITMIX64_GAMMA);
			vec[k] = (float)((double)(z >> 11) / 9007199254740992.0 * 2.0 - 1.0);
			norm += (double)vec[k] * vec[k];
		}
		norm = sqrt(norm);
		for (uint32_t k = 0; k < d; k++)
			vec[k] = (float)(vec[k] / norm);
	}
	r->dims = d;
}

/* An embed request's problems that need no engine work (the daemon checks
 * the same; a worker does not trust it to): no inputs, a model that does
 * not embed, dimensions it does not allow, an empty input, token ids
 * outside the vocabulary. r fails and finishes; false then. */
static bool embed_check(eng_t *g, eshard_t *sh, ereq_t *r, const Margin__V1__Request *q)
{
	serve_t *s = g->s;
	const char *bad = "invalid_request";
	if (s->embed_dims == 0)
		req_fail(r, bad, "worker %s: model \"%s\" gives no embeddings: %s", s->name, s->model_name,
			 engine_embed_why(g->engine));
	else if (q->n_inputs == 0)
		req_fail(r, bad, "an embedding request needs at least one input");
	else if (q->dimensions > s->embed_dims)
		req_fail(r, bad, "dimensions %u is more than model \"%s\"'s %u", q->dimensions, s->model_name,
			 s->embed_dims);
	else if (q->dimensions != 0 && q->dimensions != s->embed_dims && !s->embed_truncatable)
		req_fail(r, bad, "model \"%s\" does not take dimensions (its %u values are not meaningful "
			 "cut: embed_truncatable = no)", s->model_name, s->embed_dims);
	for (size_t k = 0; !r->failed && k < q->n_inputs; k++) {
		const Margin__V1__EmbedInput *in = q->inputs[k];
		if (in->n_tokens == 0 && (in->text == NULL || in->text[0] == '\0'))
			req_fail(r, bad, "input %zu is empty", k);
		for (size_t t = 0; !r->failed && t < in->n_tokens; t++)
			if (in->tokens[t] < 0 || (uint32_t)in->tokens[t] >= s->n_vocab)
				req_fail(r, bad, "input %zu: token %zu is id %d, outside the vocabulary of %u", k, t,
					 (int)in->tokens[t], s->n_vocab);
	}
	if (r->failed) {
		req_finish(sh, r);
		return false;
	}
	return true;
}

/* Submits one engine request per input of an embed request. */
static void eng_submit_embed(eng_t *g, eshard_t *sh, ereq_t *r, const Margin__V1__Request *q)
{
	r->emb = malloc((size_t)r->n_eids * r->dims * sizeof(float));
	if (r->emb == NULL) {
		req_fail(r, "out_of_memory", "worker out of memory for %u vectors of %u values", r->n_eids, r->dims);
		req_finish(sh, r);
		r->n_eids = 0;
		return;
	}
	for (uint32_t k = 0; k < r->n_eids; k++) {
		const Margin__V1__EmbedInput *in = q->inputs[k];
		engine_req_t er = { .id = sh->base_id + r->eid0 + k, .embed = true, .dimensions = q->dimensions,
				    .truncate = q->truncate, .input = k };
		if (in->n_tokens > 0) {
			er.prompt_ids = in->tokens;
			er.n_prompt_ids = in->n_tokens;
		} else {
			er.prompt = in->text;
		}
		int rc = engine_submit(g->engine, &er);
		if (rc < 0) {
			/* the inputs already in stay (their usage counts) but
			 * are cancelled; the rest never go in */
			req_fail(r, "out_of_memory", "engine cannot take input %u: %s", k, strerror(-rc));
			r->n_eids_left -= r->n_eids - k;
			r->n_eids = k;
			if (k == 0)
				req_finish(sh, r);
			else
				eng_cancel_req(g, sh, r);
			return;
		}
	}
}

/* Submits the requests of a new shard to the engine. */
static void eng_submit(eng_t *g, eshard_t *sh, const Margin__V1__Assign *a)
{
	sh->submit_ns = mg_clock_now_ns();
	for (uint32_t i = 0; i < sh->n; i++) {
		const Margin__V1__Request *q = a->requests[i];
		ereq_t *r = &sh->reqs[i];
		if (r->done)
			continue;
		if (r->embed) {
			eng_submit_embed(g, sh, r, q);
			continue;
		}
		engine_msg_t *msgs = NULL;
		engine_req_t er = { 0 };
		er.id = sh->base_id + r->eid0;
		er.max_tokens = q->max_tokens;
		er.temperature = q->temperature;
		er.top_p = q->top_p;
		er.top_k = q->top_k;
		er.seed = q->seed;
		er.stop = (const char *const *)q->stop;
		er.n_stop = q->n_stop;
		if (q->chat || q->n_messages > 0) {
			msgs = calloc(q->n_messages ? q->n_messages : 1, sizeof(*msgs));
			if (msgs == NULL) {
				req_fail(r, "out_of_memory", "worker out of memory submitting the request");
				req_finish(sh, r);
				continue;
			}
			for (size_t k = 0; k < q->n_messages; k++) {
				msgs[k].role = q->messages[k]->role;
				msgs[k].content = q->messages[k]->content;
			}
			er.messages = msgs;
			er.n_messages = q->n_messages;
		} else {
			er.prompt = q->prompt ? q->prompt : "";
		}
		int rc = engine_submit(g->engine, &er);
		free(msgs);
		if (rc < 0) {
			req_fail(r, "out_of_memory", "engine cannot take the request: %s", strerror(-rc));
			req_finish(sh, r);
		}
	}
}

static void eng_on_assign(eng_t *g, const zmq_msg_t *frame)
{
	serve_t *s = g->s;
	mg_msg_t *m = NULL;
	char err[160];
	/* the I/O thread decoded this frame already */
	if (mg_wire_unpack(zmq_msg_data((zmq_msg_t *)frame), zmq_msg_size(frame), MG_WIRE_MAX_FRAME,
			   &m, err, sizeof(err)) < 0 || m->body_case != MARGIN__V1__MSG__BODY_ASSIGN) {
		mg_wire_free(&m);
		return;
	}
	const Margin__V1__Assign *a = m->assign;
	eshard_t *sh = calloc(1, sizeof(*sh));
	if (sh == NULL)
		goto oom;
	sh->n = sh->n_left = (uint32_t)a->n_requests;
	sh->shard_id = a->shard_id;
	sh->attempt = a->attempt;
	sh->arrival_ns = mg_clock_now_ns();
	sh->batch_id = strdup(a->batch_id ? a->batch_id : "");
	sh->reqs = calloc(sh->n ? sh->n : 1, sizeof(*sh->reqs));
	if (sh->batch_id == NULL || sh->reqs == NULL)
		goto oom;
	sh->base_id = g->next_id;
	for (uint32_t i = 0; i < sh->n; i++) {
		const Margin__V1__Request *q = a->requests[i];
		ereq_t *r = &sh->reqs[i];
		/* engine ids: one per input of an embed request, else one */
		r->eid0 = sh->n_eids;
		r->embed = q->embed;
		r->n_eids = q->embed ? (uint32_t)q->n_inputs : 1;
		r->n_eids_left = r->n_eids;
		sh->n_eids += r->n_eids;
		r->line_no = q->line_no;
		r->custom_id = strdup(q->custom_id ? q->custom_id : "");
		if (r->custom_id == NULL)
			goto oom;
		r->max_tokens = q->max_tokens;
		r->seed = q->seed;
		r->prompt_bytes = q->prompt ? strlen(q->prompt) : 0;
		for (size_t k = 0; k < q->n_messages; k++)
			r->prompt_bytes += q->messages[k]->content ? strlen(q->messages[k]->content) : 0;
		if (q->embed && g->engine == NULL)
			fake_embed(s, r, q);
	}
	g->next_id += sh->n_eids;
	/* link at the tail: arrival order is the order shards are served */
	eshard_t **pp = &g->head;
	while (*pp)
		pp = &(*pp)->next;
	*pp = sh;

	if (a->model && a->model[0] && strcmp(a->model, s->model_name) != 0) {
		for (uint32_t i = 0; i < sh->n; i++) {
			req_fail(&sh->reqs[i], "model_not_found",
				 "worker %s serves model \"%s\", not \"%s\"",
				 s->name, s->model_name, a->model);
			req_finish(sh, &sh->reqs[i]);
		}
	} else if (g->engine != NULL) {
		for (uint32_t i = 0; i < sh->n; i++) {
			ereq_t *r = &sh->reqs[i];
			const Margin__V1__Request *q = a->requests[i];
			if (r->embed && embed_check(g, sh, r, q))
				r->dims = q->dimensions ? q->dimensions : s->embed_dims;
		}
		eng_submit(g, sh, a);
	}
	/* fake shards are answered in order by eng_main, after later
	 * messages (a Cancel) had their chance */
	mg_wire_free(&m);
	return;
oom:
	/* Nothing was linked: the shard is not answered (the daemon
	 * requeues it when it gives up on it or on this worker); DROPPED
	 * frees its credit. */
	mg_log(MG_LOG_ERROR, COMP, "out of memory taking a shard batch=%s shard=%llu",
	       a->batch_id, (unsigned long long)a->shard_id);
	pipe_msg_t pm = { .kind = PIPE_DROPPED, .attempt = a->attempt, .shard_id = a->shard_id };
	pipe_send(g->pair, &pm, NULL, 0, 0);
	eshard_free(sh);
	mg_wire_free(&m);
}

static void eng_on_cancel(eng_t *g, const zmq_msg_t *frame)
{
	mg_msg_t *m = NULL;
	char err[160];
	if (mg_wire_unpack(zmq_msg_data((zmq_msg_t *)frame), zmq_msg_size(frame), MG_WIRE_MAX_FRAME,
			   &m, err, sizeof(err)) < 0 || m->body_case != MARGIN__V1__MSG__BODY_CANCEL) {
		mg_wire_free(&m);
		return;
	}
	const char *batch = m->cancel->batch_id ? m->cancel->batch_id : "";
	for (eshard_t *sh = g->head; sh; sh = sh->next) {
		if (sh->cancelled || strcmp(sh->batch_id, batch) != 0)
			continue;
		sh->cancelled = true;
		for (uint32_t i = 0; i < sh->n; i++) {
			ereq_t *r = &sh->reqs[i];
			if (r->done)
				continue;
			/* the engine hands cancelled requests back through
			 * engine_take(); without one they end here */
			if (g->engine == NULL || eng_cancel_req(g, sh, r) < 0) {
				req_fail(r, "cancelled", "batch %s was cancelled", batch);
				req_finish(sh, r);
			}
		}
	}
	mg_wire_free(&m);
}

/* Handles every message waiting on the pipe (all of them, so a Cancel that
 * arrived during a long step is seen before the next step). */
static void eng_drain(eng_t *g, int flags)
{
	for (;;) {
		pipe_msg_t pm;
		zmq_msg_t body;
		zmq_msg_init(&body);
		int r = pipe_recv(g->pair, &pm, &body, flags);
		if (r < 0) {
			zmq_msg_close(&body);
			if (r != -EAGAIN && r != -EINTR)
				g->quit = true;
			return;
		}
		flags = ZMQ_DONTWAIT;
		switch (pm.kind) {
		case PIPE_ASSIGN: eng_on_assign(g, &body); break;
		case PIPE_CANCEL: eng_on_cancel(g, &body); break;
		case PIPE_QUIT: g->quit = true; break;
		default: break;
		}
		zmq_msg_close(&body);
		if (g->quit)
			return;
	}
}

static void eng_drain_wait(eng_t *g, int ms)
{
	zmq_pollitem_t it = { .socket = g->pair, .events = ZMQ_POLLIN };
	zmq_poll(&it, 1, ms);
	eng_drain(g, ZMQ_DONTWAIT);
}

static bool eng_busy(const eng_t *g)
{
	if (g->engine != NULL)
		return engine_pending(g->engine) > 0;
	for (const eshard_t *sh = g->head; sh; sh = sh->next)
		if (sh->n_left > 0)
			return true;
	return false;
}

/* One unit of work: an engine step, or answering the oldest fake shard. */
static void eng_work(eng_t *g)
{
	if (g->engine == NULL) {
		eshard_t *sh = g->head;
		while (sh && sh->n_left == 0)
			sh = sh->next;
		if (sh == NULL)
			return;
		if (g->s->o.fake_delay_ns > 0)
			mg_clock_sleep_ns(g->s->o.fake_delay_ns);
		fake_answer(sh);
		return;
	}
	int64_t t0 = mg_clock_now_ns();
	int n = engine_step(g->engine);
	uint64_t dt = (uint64_t)(mg_clock_now_ns() - t0);
	g->stalled = n == 0;
	if (n < 0) {
		/* A step that fails fails the requests in the engine, not the
		 * worker: cancel them so they come back through engine_take(). */
		mg_log(MG_LOG_ERROR, COMP, "engine step failed err=\"%s\"", strerror(-n));
		for (eshard_t *sh = g->head; sh; sh = sh->next)
			for (uint32_t i = 0; i < sh->n; i++)
				if (!sh->reqs[i].done && eng_cancel_req(g, sh, &sh->reqs[i]) < 0) {
					req_fail(&sh->reqs[i], "engine_error", "engine step failed: %s",
						 strerror(-n));
					req_finish(sh, &sh->reqs[i]);
				}
		return;
	}
	if (n > 0 && grow((void **)&g->steps, &g->cap_steps, g->n_steps + 1, sizeof(*g->steps)) == 0)
		g->steps[g->n_steps++] = (step_rec_t){ .t0 = t0, .t1 = t0 + (int64_t)dt, .n = (uint32_t)n };
}

/* Forgets the steps no held shard can have been in. */
static void eng_trim_steps(eng_t *g)
{
	int64_t oldest = INT64_MAX;
	for (const eshard_t *sh = g->head; sh; sh = sh->next)
		if (sh->arrival_ns < oldest)
			oldest = sh->arrival_ns;
	size_t k = 0;
	while (k < g->n_steps && g->steps[k].t1 < oldest)
		k++;
	if (k == 0)
		return;
	memmove(g->steps, g->steps + k, (g->n_steps - k) * sizeof(*g->steps));
	g->n_steps -= k;
}

static void *eng_main(void *arg)
{
	eng_t g = { .s = arg };
	g.pair = g.s->eng_pair;
	g.engine = g.s->engine;
	g.next_id = 1;
	while (!g.quit) {
		if (!eng_busy(&g))
			eng_drain(&g, 0);	/* idle: block until a message */
		else if (g.stalled)
			eng_drain_wait(&g, 10);	/* do not spin on an engine that cannot progress */
		else
			eng_drain(&g, ZMQ_DONTWAIT);
		if (g.quit)
			break;
		eng_take(&g);	/* cancelled ones come back at once */
		eng_flush(&g);
		if (eng_busy(&g)) {
			eng_work(&g);
			eng_take(&g);
			eng_flush(&g);
			eng_trim_steps(&g);
		}
	}
	free(g.steps);
	while (g.head) {
		eshard_t *sh = g.head;
		g.head = sh->next;
		eshard_free(sh);
	}
	return NULL;
}

/* ---- the I/O thread --------------------------------------------------- */

enum io_state {
	IO_HELLO,	/* socket connected (or connecting), Hello sent or pending, no Welcome yet */
	IO_READY,	/* welcomed: work flows */
	IO_BACKOFF,	/* no socket; reconnect at backoff_until */
};

typedef struct held {
	uint64_t shard_id;
	uint32_t attempt;
	uint32_t n_left;	/* requests not finished, from PROGRESS */
} held_t;

typedef struct unacked {
	uint64_t shard_id;
	uint32_t attempt;
	uint8_t *buf;		/* owned: the packed Msg{Result} */
	size_t len;
	int64_t sent_ns;	/* last send, 0 = never */
} unacked_t;

typedef struct io {
	serve_t *s;
	void *dealer;		/* owned; NULL in IO_BACKOFF */
	void *pair;		/* borrowed: s->io_pair */
	enum io_state st;
	bool hello_pending;	/* Hello not accepted by the socket yet (no connection) */
	int64_t hb_ns;
	int liveness;
	int64_t last_in, last_out;	/* last valid frame received / any frame sent */
	int64_t hello_deadline;	/* IO_HELLO: give up on this connection */
	int64_t backoff_ns, backoff_until;
	uint32_t credit;	/* granted and not yet used by an Assign */
	uint32_t est;		/* requests per shard, from the last Assign */
	held_t *held;		/* owned: assigned, not finished, in arrival order */
	size_t n_held, cap_held;
	unacked_t *un;		/* owned: finished, not acknowledged */
	size_t n_un, cap_un;
	bool stopping;
	int64_t stop_deadline;
	bool quit;
	char worker_id[64];
} io_t;

static int io_send(io_t *io, const mg_msg_t *m)
{
	if (io->dealer == NULL)
		return -ENOTCONN;
	int r = mg_wire_send(io->dealer, m, ZMQ_DONTWAIT);
	if (r == 0)
		io->last_out = io_now(io->s);
	return r;
}

static int io_send_hello(io_t *io)
{
	serve_t *s = io->s;
	Margin__V1__ModelInfo mi = MARGIN__V1__MODEL_INFO__INIT, *mis[1] = { &mi };
	mi.name = s->model_name;
	mi.arch = s->model_arch;
	mi.n_params = s->n_params;
	mi.n_ctx = s->n_ctx;
	mi.n_vocab = s->n_vocab;
	mi.kv_type = (char *)(s->kv_type != NULL ? s->kv_type : "");
	mi.kv_bytes = s->kv_bytes;
	mi.weight_bytes = s->weight_bytes;
	mi.embed_dims = s->embed_dims;
	mi.pooling = (char *)(s->pooling != NULL ? s->pooling : "");
	mi.embed_truncatable = s->embed_dims > 0 && s->embed_truncatable;
	Margin__V1__Hello h = MARGIN__V1__HELLO__INIT;
	h.proto_version = MG_PROTO_VERSION;
	h.worker_name = s->name;
	h.n_models = 1;
	h.models = mis;
	h.slots = (uint32_t)s->slots;
	h.threads = (uint32_t)s->threads;
	h.hardware_profile = s->hardware;
	h.build = "margin-worker " MARGIN_VERSION;
	h.instance_id = s->instance_id;
	mg_msg_t m = MARGIN__V1__MSG__INIT;
	m.body_case = MARGIN__V1__MSG__BODY_HELLO;
	m.hello = &h;
	int r = io_send(io, &m);
	if (r == 0) {
		io->hello_pending = false;
		atomic_fetch_add(&s->st.connects, 1);
		mg_log(MG_LOG_DEBUG, COMP, "hello sent scheduler=%s instance=%016llx", s->scheduler,
		       (unsigned long long)s->instance_id);
	}
	return r;
}

static void io_send_bye(io_t *io, const char *reason)
{
	Margin__V1__Bye b = MARGIN__V1__BYE__INIT;
	b.reason = (char *)reason;
	mg_msg_t m = MARGIN__V1__MSG__INIT;
	m.body_case = MARGIN__V1__MSG__BODY_BYE;
	m.bye = &b;
	io_send(io, &m);
}

static int io_connect(io_t *io)
{
	serve_t *s = io->s;
	void *d = zmq_socket(s->zctx, ZMQ_DEALER);
	if (d == NULL)
		return -zmq_errno();
	int one = 1, linger = LINGER_MS;
	int64_t maxmsg = MG_WIRE_MAX_FRAME;
	int rc = 0;
	/* IMMEDIATE: queue nothing until the connection is up, so a Hello
	 * is sent on a live connection, never on a stale queue. */
	if (zmq_setsockopt(d, ZMQ_IMMEDIATE, &one, sizeof(one)) < 0 ||
	    zmq_setsockopt(d, ZMQ_LINGER, &linger, sizeof(linger)) < 0 ||
	    zmq_setsockopt(d, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg)) < 0)
		goto zfail;
	if (s->o.curve) {
		char pub[SERVE_KEY_LEN + 1];
		if (zmq_curve_public(pub, s->o.curve_secret) < 0 ||
		    zmq_setsockopt(d, ZMQ_CURVE_SERVERKEY, s->o.curve_server, SERVE_KEY_LEN) < 0 ||
		    zmq_setsockopt(d, ZMQ_CURVE_PUBLICKEY, pub, SERVE_KEY_LEN) < 0 ||
		    zmq_setsockopt(d, ZMQ_CURVE_SECRETKEY, s->o.curve_secret, SERVE_KEY_LEN) < 0)
			goto zfail;
	}
	if (zmq_connect(d, s->scheduler) < 0)
		goto zfail;
	int64_t now = io_now(s);
	io->dealer = d;
	io->st = IO_HELLO;
	io->hello_pending = true;
	io->credit = 0;
	io->last_in = now;
	io->hello_deadline = now + io->hb_ns * io->liveness;
	return 0;
zfail:
	rc = -zmq_errno();
	zmq_close(d);
	return rc;
}

/* Paranoid Pirate: drop the socket, wait, connect again. The held shards
 * keep running; their Results go out after the next Welcome. */
static void io_disconnect(io_t *io, const char *why)
{
	serve_t *s = io->s;
	if (io->dealer) {
		int zero = 0;
		zmq_setsockopt(io->dealer, ZMQ_LINGER, &zero, sizeof(zero));
		zmq_close(io->dealer);
		io->dealer = NULL;
	}
	int64_t now = io_now(s);
	io->st = IO_BACKOFF;
	io->credit = 0;
	io->backoff_until = now + io->backoff_ns;
	mg_log(MG_LOG_WARN, COMP, "connection lost, reconnecting scheduler=%s reason=\"%s\" retry_ms=%lld held=%zu unacked=%zu",
	       s->scheduler, why, (long long)(io->backoff_ns / MG_NS_PER_MS), io->n_held, io->n_un);
	io->backoff_ns *= 2;
	if (io->backoff_ns > s->o.reconnect_max_ns)
		io->backoff_ns = s->o.reconnect_max_ns;
	/* after a silence, the daemon's heartbeat settings are re-learned */
	io->hb_ns = s->o.heartbeat_ns;
	io->liveness = s->o.liveness;
}

static void io_send_result(io_t *io, unacked_t *u, int64_t now)
{
	zmq_msg_t f;
	if (zmq_msg_init_size(&f, u->len) < 0)
		return;
	memcpy(zmq_msg_data(&f), u->buf, u->len);
	u->sent_ns = now;
	if (zmq_msg_send(&f, io->dealer, ZMQ_DONTWAIT) < 0) {
		zmq_msg_close(&f);
		return;	/* re-sent at the next interval */
	}
	io->last_out = now;
	atomic_fetch_add(&io->s->st.results_sent, 1);
}

static held_t *io_find_held(io_t *io, uint64_t shard_id, uint32_t attempt, size_t *ret_i)
{
	for (size_t i = 0; i < io->n_held; i++)
		if (io->held[i].shard_id == shard_id && io->held[i].attempt == attempt) {
			if (ret_i)
				*ret_i = i;
			return &io->held[i];
		}
	return NULL;
}

static void io_drop_held(io_t *io, uint64_t shard_id, uint32_t attempt)
{
	size_t i;
	if (io_find_held(io, shard_id, attempt, &i) == NULL)
		return;
	memmove(&io->held[i], &io->held[i + 1], (io->n_held - i - 1) * sizeof(*io->held));
	io->n_held--;
}

static unacked_t *io_find_unacked(io_t *io, uint64_t shard_id, uint32_t attempt, size_t *ret_i)
{
	for (size_t i = 0; i < io->n_un; i++)
		if (io->un[i].shard_id == shard_id && io->un[i].attempt == attempt) {
			if (ret_i)
				*ret_i = i;
			return &io->un[i];
		}
	return NULL;
}

/* Credit: see "Flow control" in docs/protocol.md.
 *   want = shards to fill the slots (the held ones in arrival order by their
 *          unfinished requests, then new ones of est requests each)
 *        + queued_shards
 *   send Credit{want - held - credit} when positive. */
static void io_credit(io_t *io)
{
	serve_t *s = io->s;
	if (io->st != IO_READY || io->stopping)
		return;
	uint64_t fill = 0, want = 0;
	for (size_t i = 0; i < io->n_held && fill < (uint64_t)s->slots; i++) {
		fill += io->held[i].n_left;
		want++;
	}
	if (fill < (uint64_t)s->slots) {
		uint64_t est = io->est ? io->est : 1;
		want += ((uint64_t)s->slots - fill + est - 1) / est;
	}
	want += (uint64_t)s->o.queued_shards;
	uint64_t have = io->n_held + io->credit;
	if (want <= have)
		return;
	Margin__V1__Credit c = MARGIN__V1__CREDIT__INIT;
	c.n = (uint32_t)(want - have);
	mg_msg_t m = MARGIN__V1__MSG__INIT;
	m.body_case = MARGIN__V1__MSG__BODY_CREDIT;
	m.credit = &c;
	if (io_send(io, &m) == 0) {
		io->credit += c.n;
		mg_log(MG_LOG_DEBUG, COMP, "credit n=%u held=%zu outstanding=%u", c.n, io->n_held, io->credit);
	}
}

static void io_on_assign(io_t *io, const void *data, size_t len, const Margin__V1__Assign *a)
{
	serve_t *s = io->s;
	if (io->credit > 0)
		io->credit--;
	if (io->stopping) {
		/* The Bye that ends the stop tells the daemon to re-dispatch it. */
		mg_log(MG_LOG_WARN, COMP, "stopping, shard not taken batch=%s shard=%llu attempt=%u",
		       a->batch_id, (unsigned long long)a->shard_id, a->attempt);
		return;
	}
	unacked_t *u = io_find_unacked(io, a->shard_id, a->attempt, NULL);
	if (u != NULL) {
		io_send_result(io, u, io_now(s));
		return;
	}
	if (io_find_held(io, a->shard_id, a->attempt, NULL) != NULL)
		return;	/* a duplicate of a shard being computed */
	if (grow((void **)&io->held, &io->cap_held, io->n_held + 1, sizeof(*io->held)) < 0) {
		mg_log(MG_LOG_ERROR, COMP, "out of memory, shard not taken batch=%s shard=%llu",
		       a->batch_id, (unsigned long long)a->shard_id);
		return;
	}
	pipe_msg_t pm = { .kind = PIPE_ASSIGN, .attempt = a->attempt, .shard_id = a->shard_id };
	if (pipe_send(io->pair, &pm, data, len, ZMQ_DONTWAIT) < 0) {
		mg_log(MG_LOG_ERROR, COMP, "cannot hand shard to the engine thread batch=%s shard=%llu",
		       a->batch_id, (unsigned long long)a->shard_id);
		return;
	}
	io->held[io->n_held++] = (held_t){ .shard_id = a->shard_id, .attempt = a->attempt,
					   .n_left = (uint32_t)a->n_requests };
	if (a->n_requests > 0)
		io->est = (uint32_t)a->n_requests;
	atomic_fetch_add(&s->st.shards_taken, 1);
	mg_log(MG_LOG_DEBUG, COMP, "assign batch=%s shard=%llu attempt=%u requests=%zu model=%s",
	       a->batch_id, (unsigned long long)a->shard_id, a->attempt, a->n_requests, a->model);
}

static void io_on_welcome(io_t *io, const Margin__V1__Welcome *w)
{
	serve_t *s = io->s;
	int64_t now = io_now(s);
	if (w->heartbeat_ms > 0)
		io->hb_ns = (int64_t)w->heartbeat_ms * MG_NS_PER_MS;
	if (w->liveness > 0)
		io->liveness = (int)w->liveness;
	snprintf(io->worker_id, sizeof(io->worker_id), "%s", w->worker_id ? w->worker_id : "");
	if (io->st == IO_READY)
		return;
	io->st = IO_READY;
	io->backoff_ns = s->o.reconnect_min_ns;
	atomic_fetch_add(&s->st.welcomes, 1);
	mg_log(MG_LOG_INFO, COMP, "connected scheduler=%s worker=%s model=%s slots=%d heartbeat_ms=%lld liveness=%d unacked=%zu",
	       s->scheduler, io->worker_id, s->model_name, s->slots,
	       (long long)(io->hb_ns / MG_NS_PER_MS), io->liveness, io->n_un);
	/* what the old connection may have lost */
	for (size_t i = 0; i < io->n_un; i++)
		io_send_result(io, &io->un[i], now);
}

/* One frame from margind. Only frames that decode count as traffic. */
static void io_on_frame(io_t *io, zmq_msg_t *f)
{
	serve_t *s = io->s;
	mg_msg_t *m = NULL;
	char err[160];
	int r = mg_wire_unpack(zmq_msg_data(f), zmq_msg_size(f), MG_WIRE_MAX_FRAME, &m, err, sizeof(err));
	if (r < 0) {
		atomic_fetch_add(&s->st.dropped_frames, 1);
		mg_log(MG_LOG_WARN, COMP, "dropped a frame from the scheduler scheduler=%s err=\"%s\"",
		       s->scheduler, err);
		return;
	}
	io->last_in = io_now(s);
	switch (m->body_case) {
	case MARGIN__V1__MSG__BODY_WELCOME:
		io_on_welcome(io, m->welcome);
		break;
	case MARGIN__V1__MSG__BODY_BYE:
		if (io->st != IO_READY) {
			/* An answer to our Hello: the daemon will not have this
			 * worker (protocol version, model, key). Retrying
			 * cannot help. */
			s->status = -ECONNREFUSED;
			snprintf(s->status_msg, sizeof(s->status_msg), "scheduler %s refused this worker: %s",
				 s->scheduler, m->bye->reason ? m->bye->reason : "");
			mg_log(MG_LOG_ERROR, COMP, "scheduler refused hello scheduler=%s reason=\"%s\"",
			       s->scheduler, m->bye->reason);
			io->quit = true;
		} else {
			mg_log(MG_LOG_WARN, COMP, "scheduler said bye scheduler=%s reason=\"%s\"",
			       s->scheduler, m->bye->reason);
			io_disconnect(io, "bye");
			/* a Bye is an orderly goodbye: reconnect without the
			 * doubled wait */
			io->backoff_until = io_now(s) + s->o.reconnect_min_ns;
			io->backoff_ns = s->o.reconnect_min_ns;
		}
		break;
	case MARGIN__V1__MSG__BODY_HEARTBEAT:
		break;
	case MARGIN__V1__MSG__BODY_ASSIGN:
		if (io->st == IO_READY)
			io_on_assign(io, zmq_msg_data(f), zmq_msg_size(f), m->assign);
		else
			mg_log(MG_LOG_WARN, COMP, "assign before welcome dropped shard=%llu",
			       (unsigned long long)m->assign->shard_id);
		break;
	case MARGIN__V1__MSG__BODY_ACK: {
		size_t i;
		if (io_find_unacked(io, m->ack->shard_id, m->ack->attempt, &i) != NULL) {
			free(io->un[i].buf);
			memmove(&io->un[i], &io->un[i + 1], (io->n_un - i - 1) * sizeof(*io->un));
			io->n_un--;
			atomic_fetch_add(&s->st.acks, 1);
		}
		break;
	}
	case MARGIN__V1__MSG__BODY_CANCEL: {
		pipe_msg_t pm = { .kind = PIPE_CANCEL };
		mg_log(MG_LOG_INFO, COMP, "cancel batch=%s", m->cancel->batch_id);
		pipe_send(io->pair, &pm, zmq_msg_data(f), zmq_msg_size(f), ZMQ_DONTWAIT);
		break;
	}
	default:
		/* worker-to-daemon messages (Hello, Credit, Result) */
		atomic_fetch_add(&s->st.dropped_frames, 1);
		mg_log(MG_LOG_WARN, COMP, "dropped an unexpected message from the scheduler scheduler=%s type=%s",
		       s->scheduler, mg_wire_body_name(m));
		break;
	}
	mg_wire_free(&m);
}

static void io_drain_dealer(io_t *io)
{
	for (int k = 0; k < DRAIN_MAX && io->dealer && !io->quit; k++) {
		zmq_msg_t f;
		zmq_msg_init(&f);
		if (zmq_msg_recv(&f, io->dealer, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(&f);
			return;
		}
		bool more = zmq_msg_more(&f);
		if (!more) {
			io_on_frame(io, &f);
			zmq_msg_close(&f);
			continue;
		}
		/* one message = one frame; a multi-part message is garbage */
		zmq_msg_close(&f);
		while (more) {
			zmq_msg_init(&f);
			if (zmq_msg_recv(&f, io->dealer, 0) < 0) {
				zmq_msg_close(&f);
				break;
			}
			more = zmq_msg_more(&f);
			zmq_msg_close(&f);
		}
		atomic_fetch_add(&io->s->st.dropped_frames, 1);
		mg_log(MG_LOG_WARN, COMP, "dropped a multi-part message from the scheduler scheduler=%s",
		       io->s->scheduler);
	}
}

static void io_drain_pair(io_t *io)
{
	for (int k = 0; k < DRAIN_MAX; k++) {
		pipe_msg_t pm;
		zmq_msg_t body;
		zmq_msg_init(&body);
		if (pipe_recv(io->pair, &pm, &body, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(&body);
			return;
		}
		held_t *h;
		switch (pm.kind) {
		case PIPE_PROGRESS:
			h = io_find_held(io, pm.shard_id, pm.attempt, NULL);
			if (h)
				h->n_left = pm.n_left;
			break;
		case PIPE_DROPPED:
			io_drop_held(io, pm.shard_id, pm.attempt);
			break;
		case PIPE_RESULT: {
			io_drop_held(io, pm.shard_id, pm.attempt);
			uint8_t *buf = malloc(zmq_msg_size(&body));
			if (buf == NULL || grow((void **)&io->un, &io->cap_un, io->n_un + 1, sizeof(*io->un)) < 0) {
				free(buf);
				mg_log(MG_LOG_ERROR, COMP, "out of memory keeping a result shard=%llu",
				       (unsigned long long)pm.shard_id);
				break;
			}
			memcpy(buf, zmq_msg_data(&body), zmq_msg_size(&body));
			unacked_t *u = &io->un[io->n_un++];
			*u = (unacked_t){ .shard_id = pm.shard_id, .attempt = pm.attempt,
					  .buf = buf, .len = zmq_msg_size(&body) };
			if (io->st == IO_READY)
				io_send_result(io, u, io_now(io->s));
			break;
		}
		default:
			break;
		}
		zmq_msg_close(&body);
	}
}

static void io_on_stop(io_t *io)
{
	serve_t *s = io->s;
	char buf[64];
	while (read(s->ctl[0], buf, sizeof(buf)) > 0)
		;
	int mode = atomic_load(&s->stop_mode);
	if (mode == SERVE_STOP_NOW) {
		mg_log(MG_LOG_INFO, COMP, "stopping now held=%zu unacked=%zu", io->n_held, io->n_un);
		if (io->st == IO_READY)
			io_send_bye(io, "worker stopping");
		io->quit = true;
	} else if (mode == SERVE_STOP_GRACEFUL && !io->stopping) {
		io->stopping = true;
		io->stop_deadline = io_now(s) + s->o.grace_ns;
		mg_log(MG_LOG_INFO, COMP, "stopping, finishing in-flight shards held=%zu unacked=%zu grace_ms=%lld",
		       io->n_held, io->n_un, (long long)(s->o.grace_ns / MG_NS_PER_MS));
	}
}

/* Timers: liveness, heartbeat, re-sends, back-off, the stop deadline. */
static void io_timers(io_t *io, int64_t now)
{
	serve_t *s = io->s;
	if (io->stopping) {
		bool drained = io->n_held == 0 && io->n_un == 0;
		if (drained || now >= io->stop_deadline) {
			if (!drained)
				mg_log(MG_LOG_WARN, COMP, "grace period over, leaving work to the scheduler held=%zu unacked=%zu",
				       io->n_held, io->n_un);
			if (io->st == IO_READY)
				io_send_bye(io, "worker stopping");
			io->quit = true;
			return;
		}
	}
	switch (io->st) {
	case IO_BACKOFF:
		if (now >= io->backoff_until) {
			int r = io_connect(io);
			if (r < 0) {
				mg_log(MG_LOG_ERROR, COMP, "cannot connect scheduler=%s err=\"%s\"", s->scheduler,
				       zmq_strerror(-r));
				io_disconnect(io, "connect failed");
			}
		}
		break;
	case IO_HELLO:
		if (now >= io->hello_deadline)
			io_disconnect(io, io->hello_pending ? "no connection (scheduler down, or CURVE keys refused)" : "no welcome");
		break;
	case IO_READY:
		if (now - io->last_in >= io->hb_ns * io->liveness) {
			io_disconnect(io, "scheduler silent");
			break;
		}
		for (size_t i = 0; i < io->n_un; i++)
			if (now - io->un[i].sent_ns >= s->o.resend_ns)
				io_send_result(io, &io->un[i], now);
		if (now - io->last_out >= io->hb_ns) {
			Margin__V1__Heartbeat hb = MARGIN__V1__HEARTBEAT__INIT;
			mg_msg_t m = MARGIN__V1__MSG__INIT;
			m.body_case = MARGIN__V1__MSG__BODY_HEARTBEAT;
			m.heartbeat = &hb;
			if (io_send(io, &m) < 0)
				io->last_out = now;	/* not ready: try again an interval later */
		}
		break;
	}
}

static int64_t io_next_deadline(const io_t *io)
{
	const serve_t *s = io->s;
	int64_t d = INT64_MAX;
	if (io->stopping)
		d = io->stop_deadline;
	switch (io->st) {
	case IO_BACKOFF:
		if (io->backoff_until < d)
			d = io->backoff_until;
		break;
	case IO_HELLO:
		if (io->hello_deadline < d)
			d = io->hello_deadline;
		break;
	case IO_READY: {
		int64_t t = io->last_in + io->hb_ns * io->liveness;
		if (t < d)
			d = t;
		t = io->last_out + io->hb_ns;
		if (t < d)
			d = t;
		for (size_t i = 0; i < io->n_un; i++) {
			t = io->un[i].sent_ns + s->o.resend_ns;
			if (t < d)
				d = t;
		}
		break;
	}
	}
	return d;
}

static void *io_main(void *arg)
{
	serve_t *s = arg;
	io_t io = { .s = s, .pair = s->io_pair };
	io.hb_ns = s->o.heartbeat_ns;
	io.liveness = s->o.liveness;
	io.backoff_ns = s->o.reconnect_min_ns;
	io.est = (uint32_t)s->slots;	/* until an Assign shows the shard size */
	io.st = IO_BACKOFF;
	io.backoff_until = 0;	/* connect at once */

	/* A stop requested before the thread started is already in the pipe. */
	while (!io.quit) {
		int64_t now = io_now(s);
		io_timers(&io, now);
		atomic_store(&s->st.timers_at, now);
		if (io.quit)
			break;
		io_credit(&io);

		zmq_pollitem_t items[3] = {
			{ .socket = io.pair, .events = ZMQ_POLLIN },
			{ .fd = s->ctl[0], .events = ZMQ_POLLIN },
			{ .socket = io.dealer, .events = ZMQ_POLLIN | (io.hello_pending ? ZMQ_POLLOUT : 0) },
		};
		int n = io.dealer ? 3 : 2;
		int64_t d = io_next_deadline(&io);
		now = io_now(s);
		long timeout_ms = d == INT64_MAX ? -1 :
			d <= now ? 0 : (long)((d - now + MG_NS_PER_MS - 1) / MG_NS_PER_MS);
		if (timeout_ms > INT_MAX)
			timeout_ms = INT_MAX;
		int r = zmq_poll(items, n, timeout_ms);
		if (r < 0) {
			if (zmq_errno() == EINTR)
				continue;
			s->status = -zmq_errno();
			snprintf(s->status_msg, sizeof(s->status_msg), "zmq_poll: %s", zmq_strerror(zmq_errno()));
			mg_log(MG_LOG_ERROR, COMP, "poll failed err=\"%s\"", zmq_strerror(zmq_errno()));
			break;
		}
		if (items[1].revents & ZMQ_POLLIN)
			io_on_stop(&io);
		if (io.quit)
			break;
		if (n == 3 && (items[2].revents & ZMQ_POLLIN))
			io_drain_dealer(&io);
		if (io.dealer && io.hello_pending && io.st == IO_HELLO)
			io_send_hello(&io);	/* EAGAIN until the connection is up */
		if (items[0].revents & ZMQ_POLLIN)
			io_drain_pair(&io);
	}

	pipe_msg_t pm = { .kind = PIPE_QUIT };
	pipe_send(io.pair, &pm, NULL, 0, 0);
	if (io.dealer)
		zmq_close(io.dealer);	/* lingers LINGER_MS to flush a Bye */
	for (size_t i = 0; i < io.n_un; i++)
		free(io.un[i].buf);
	free(io.un);
	free(io.held);
	atomic_store(&s->io_done, true);
	return NULL;
}

/* ---- options, model info, lifetime ------------------------------------ */

void serve_opts_init(serve_opts_t *o)
{
	memset(o, 0, sizeof(*o));
	o->slots = 8;
	o->heartbeat_ns = 1 * MG_NS_PER_S;
	o->liveness = 3;
	o->resend_ns = 5 * MG_NS_PER_S;
	o->reconnect_min_ns = 1 * MG_NS_PER_S;
	o->reconnect_max_ns = 32 * MG_NS_PER_S;
	o->grace_ns = 30 * MG_NS_PER_S;
	o->queued_shards = 1;
}

/* The name margind routes on: see "Model name" in docs/protocol.md. */
static void derive_model_name(serve_t *s)
{
	if (s->o.model_name && s->o.model_name[0]) {
		snprintf(s->model_name, sizeof(s->model_name), "%s", s->o.model_name);
		return;
	}
	if (s->arch) {
		snprintf(s->model_name, sizeof(s->model_name), "%s", s->arch);
		return;
	}
	const char *base = strrchr(s->model_path, '/');
	base = base ? base + 1 : s->model_path;
	size_t n = strlen(base);
	if (n > 5 && strcmp(base + n - 5, ".gguf") == 0)
		n -= 5;
	snprintf(s->model_name, sizeof(s->model_name), "%.*s", (int)n, base);
}

/* --fake with a preset: what Hello says, without building the weights. */
static int fake_preset_info(serve_t *s, char *err, size_t errlen)
{
	const synth_preset_t *p = synth_preset_find(s->arch);
	if (p == NULL) {
		size_t o = (size_t)snprintf(err, errlen, "unknown architecture preset \"%s\" (known:", s->arch);
		for (size_t i = 0; i < synth_n_presets() && o < errlen; i++)
			o += (size_t)snprintf(err + o, errlen - o, " %s", synth_preset_at(i)->name);
		if (o < errlen)
			snprintf(err + o, errlen - o, ")");
		return -EINVAL;
	}
	snprintf(s->model_arch, sizeof(s->model_arch), "%s", p->cfg.arch_name);
	s->n_params = model_config_n_params(&p->cfg);
	s->n_ctx = (uint32_t)p->cfg.n_ctx;
	if (s->o.n_ctx > 0 && (uint32_t)s->o.n_ctx < s->n_ctx)
		s->n_ctx = (uint32_t)s->o.n_ctx;
	s->n_vocab = (uint32_t)p->cfg.vocab_size;
	return 0;
}

/* --fake with a file: what Hello says, from the metadata alone. */
static int fake_file_info(serve_t *s, char *err, size_t errlen)
{
	gguf_t *g = NULL;
	int r = gguf_open(s->model_path, &g, err, errlen);
	if (r < 0)
		return r;
	gguf_str_t a;
	if (gguf_get_str(g, "general.architecture", &a) == 0)
		snprintf(s->model_arch, sizeof(s->model_arch), "%.*s", (int)a.len, a.data);
	char key[64];
	uint32_t u;
	snprintf(key, sizeof(key), "%s.context_length", s->model_arch);
	if (gguf_get_u32(g, key, &u) == 0)
		s->n_ctx = u;
	uint64_t nv = 0;
	if (gguf_get_arr(g, "tokenizer.ggml.tokens", NULL, &nv, NULL) == 0)
		s->n_vocab = (uint32_t)nv;
	if (s->o.n_ctx > 0 && (uint32_t)s->o.n_ctx < s->n_ctx)
		s->n_ctx = (uint32_t)s->o.n_ctx;
	s->n_params = 0;
	for (uint64_t i = 0; i < gguf_n_tensors(g); i++)
		s->n_params += gguf_tensor(g, i)->n_elements;
	gguf_close(&g);
	return 0;
}

int serve_new(const serve_opts_t *o, serve_t **ret, char *err, size_t errlen)
{
	int rc = -EINVAL;
	serve_t *s = NULL;
	if (o->scheduler == NULL || o->scheduler[0] == '\0') {
		snprintf(err, errlen, "no scheduler endpoint (tcp://HOST:PORT)");
		return -EINVAL;
	}
	if ((o->model_path == NULL) == (o->arch == NULL)) {
		snprintf(err, errlen, "give exactly one of a model file and an architecture preset");
		return -EINVAL;
	}
	if (o->slots < 1 || o->slots > 4096 || o->threads < 0 || o->liveness < 1 ||
	    o->heartbeat_ns <= 0 || o->resend_ns <= 0 || o->reconnect_min_ns <= 0 ||
	    o->reconnect_max_ns < o->reconnect_min_ns || o->grace_ns < 0 || o->queued_shards < 0 ||
	    o->fake_delay_ns < 0) {
		snprintf(err, errlen, "bad serve options: slots 1..4096, positive intervals, reconnect max >= min");
		return -EINVAL;
	}
	if (o->curve && (!mg_curve_key_valid(o->curve_server) || !mg_curve_key_valid(o->curve_secret))) {
		snprintf(err, errlen, "CURVE keys must be 40 Z85 characters");
		return -EINVAL;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	s->ctl[0] = s->ctl[1] = -1;
	s->o = *o;
	s->scheduler = xstrdup(o->scheduler);
	s->model_path = xstrdup(o->model_path);
	s->arch = xstrdup(o->arch);
	char host[256] = "worker";
	if (o->name == NULL || o->name[0] == '\0') {
		gethostname(host, sizeof(host) - 1);
		host[sizeof(host) - 1] = '\0';
	}
	s->name = strdup(o->name && o->name[0] ? o->name : host);
	s->hardware = strdup(o->hardware ? o->hardware : "");
	/* the pointers in s->o would dangle: only the copies are used */
	s->o.scheduler = s->o.model_path = s->o.arch = s->o.name = s->o.hardware = NULL;
	derive_model_name(s);
	s->o.model_name = NULL;
	if (!s->scheduler || (o->model_path && !s->model_path) || (o->arch && !s->arch) ||
	    !s->name || !s->hardware) {
		rc = -ENOMEM;
		goto fail;
	}
	s->slots = o->slots;
	s->threads = o->threads > 0 ? o->threads : mg_cpu_count();
	if (getrandom(&s->instance_id, sizeof(s->instance_id), 0) != sizeof(s->instance_id))
		s->instance_id = (uint64_t)mg_clock_wall_ns() ^ ((uint64_t)getpid() << 32);
	if (s->instance_id == 0)
		s->instance_id = 1;

	if (o->fake) {
		s->embed_dims = FAKE_EMBED_DIMS;
		s->pooling = "mean";
		s->embed_truncatable = true;
		if (s->model_path) {
			rc = fake_file_info(s, err, errlen);
			if (rc < 0)
				goto fail;
		} else {
			rc = fake_preset_info(s, err, errlen);
			if (rc < 0)
				goto fail;
		}
	} else {
		char merr[256] = "";
		model_opts_t mo = { .weights = MODEL_WEIGHTS_AUTO };
		if (o->weights != NULL && model_weights_parse(o->weights, &mo.weights) < 0) {
			snprintf(err, errlen, "weights = %s: not auto, f32, q8_0-panels or a quantized mix (q8_0, q4_k_m, ...)", o->weights);
			rc = -EINVAL;
			goto fail;
		}
		if (s->model_path)
			rc = model_load_opts(s->model_path, &mo, &s->model, merr, sizeof(merr));
		else
			rc = model_new_synth_opts(s->arch, 0, &mo, &s->model, merr, sizeof(merr));
		if (rc < 0) {
			snprintf(err, errlen, "%s", merr);
			goto fail;
		}
		const model_config_t *c = model_config(s->model);
		snprintf(s->model_arch, sizeof(s->model_arch), "%s", c->arch_name);
		s->n_params = model_n_params(s->model);
		s->n_ctx = (uint32_t)c->n_ctx;
		s->n_vocab = (uint32_t)c->vocab_size;
		engine_opts_t eo = { .slots = s->slots, .n_ctx = o->n_ctx, .threads = s->threads,
				     .kv_type = o->kv_type, .pooling = o->pooling };
		rc = engine_new(s->model, &eo, &s->engine, merr, sizeof(merr));
		if (rc < 0) {
			snprintf(err, errlen, "engine: %s", merr);
			goto fail;
		}
		/* what a request can use: the slot's context, not the training one */
		s->n_ctx = (uint32_t)engine_opts(s->engine)->n_ctx;
		const engine_opts_t *ro = engine_opts(s->engine);
		s->kv_type = ro->kv_type;
		s->kv_bytes = engine_kv_bytes(s->engine);
		s->weight_bytes = model_weight_bytes(s->model);
		s->embed_dims = engine_embed_dims(s->engine);
		s->pooling = ro->pooling;
		s->embed_truncatable = o->embed_truncatable;
		if (s->embed_dims == 0)
			mg_log(MG_LOG_WARN, COMP, "no embeddings from this model model=%s why=\"%s\"", s->model_name,
			       engine_embed_why(s->engine));
		else
			mg_log(MG_LOG_INFO, COMP, "embeddings model=%s dims=%u pooling=%s truncatable=%s", s->model_name,
			       s->embed_dims, s->pooling, s->embed_truncatable ? "yes" : "no");
		mg_log(MG_LOG_INFO, COMP, "engine ready model=%s slots=%d ctx=%d kv_type=%s kv_bytes=%zu weights=%s weight_bytes=%llu threads=%d",
		       s->model_name, ro->slots, ro->n_ctx, ro->kv_type, engine_kv_bytes(s->engine),
		       model_weights_name(mo.weights), (unsigned long long)model_weight_bytes(s->model), ro->threads);
		/* once per model, not per request: its chat requests still run */
		chat_pick_t cp = chat_pick(model_tok(s->model));
		if (cp.fallback && model_tok(s->model) != NULL)
			mg_log(MG_LOG_WARN, COMP, "chat template not recognised, chat requests use a fallback "
			       "model=%s template=%s fallback=%s", s->model_name, cp.found,
			       chat_template_name(cp.tmpl));
	}

	if (pipe2(s->ctl, O_NONBLOCK | O_CLOEXEC) < 0) {
		rc = -errno;
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		goto fail;
	}
	*ret = s;
	return 0;
fail:
	serve_destroy(&s);
	return rc;
}

int serve_start(serve_t *s)
{
	int rc;
	if (s->started)
		return -EALREADY;
	s->zctx = zmq_ctx_new();
	if (s->zctx == NULL)
		return -zmq_errno();
	s->io_pair = zmq_socket(s->zctx, ZMQ_PAIR);
	s->eng_pair = zmq_socket(s->zctx, ZMQ_PAIR);
	/* no high-water mark: the I/O thread must never block on a busy
	 * engine thread; what crosses is bounded by credit */
	int zero = 0;
	if (s->io_pair == NULL || s->eng_pair == NULL ||
	    zmq_setsockopt(s->io_pair, ZMQ_SNDHWM, &zero, sizeof(zero)) < 0 ||
	    zmq_setsockopt(s->io_pair, ZMQ_RCVHWM, &zero, sizeof(zero)) < 0 ||
	    zmq_setsockopt(s->eng_pair, ZMQ_SNDHWM, &zero, sizeof(zero)) < 0 ||
	    zmq_setsockopt(s->eng_pair, ZMQ_RCVHWM, &zero, sizeof(zero)) < 0 ||
	    zmq_bind(s->io_pair, PAIR_ENDPOINT) < 0 || zmq_connect(s->eng_pair, PAIR_ENDPOINT) < 0)
		return -zmq_errno();

	/* The threads take no signals: the controlling thread handles them
	 * and calls serve_stop(). */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = -pthread_create(&s->eng_thr, NULL, eng_main, s);
	if (rc == 0) {
		rc = -pthread_create(&s->io_thr, NULL, io_main, s);
		if (rc < 0) {
			pipe_msg_t pm = { .kind = PIPE_QUIT };
			pipe_send(s->io_pair, &pm, NULL, 0, 0);
			pthread_join(s->eng_thr, NULL);
		}
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc < 0)
		return rc;
	s->started = true;
	return 0;
}

void serve_wake(serve_t *s)
{
	/* async-signal-safe: a byte in a non-blocking pipe; the I/O thread
	 * drains it (io_on_stop: nothing more without a stop_mode) and loops */
	int saved = errno;
	if (s->ctl[1] >= 0 && write(s->ctl[1], "x", 1) < 0) {
		/* full pipe: a wake-up is already pending */
	}
	errno = saved;
}

void serve_stop(serve_t *s, serve_stop_mode_t mode)
{
	if (s == NULL)
		return;
	int cur = atomic_load(&s->stop_mode);
	while ((int)mode > cur && !atomic_compare_exchange_weak(&s->stop_mode, &cur, (int)mode))
		;
	serve_wake(s);
}

int serve_wait(serve_t *s, char *err, size_t errlen)
{
	if (!s->started)
		return -EINVAL;
	if (!s->joined) {
		pthread_join(s->io_thr, NULL);
		pthread_join(s->eng_thr, NULL);
		s->joined = true;
	}
	if (s->status < 0 && err != NULL)
		snprintf(err, errlen, "%s", s->status_msg);
	return s->status;
}

bool serve_finished(const serve_t *s)
{
	return atomic_load(&((serve_t *)s)->io_done);
}

void serve_get_stats(const serve_t *s, serve_stats_t *ret)
{
	serve_t *w = (serve_t *)s;
	ret->connects = atomic_load(&w->st.connects);
	ret->welcomes = atomic_load(&w->st.welcomes);
	ret->shards_taken = atomic_load(&w->st.shards_taken);
	ret->shards_done = atomic_load(&w->st.shards_done);
	ret->results_sent = atomic_load(&w->st.results_sent);
	ret->acks = atomic_load(&w->st.acks);
	ret->dropped_frames = atomic_load(&w->st.dropped_frames);
	ret->timers_at = atomic_load(&w->st.timers_at);
}

const char *serve_model_name(const serve_t *s)
{
	return s->model_name;
}

void serve_destroy(serve_t **p)
{
	if (p == NULL || *p == NULL)
		return;
	serve_t *s = *p;
	if (s->started && !s->joined) {
		serve_stop(s, SERVE_STOP_NOW);
		serve_wait(s, NULL, 0);
	}
	if (s->io_pair)
		zmq_close(s->io_pair);
	if (s->eng_pair)
		zmq_close(s->eng_pair);
	if (s->zctx)
		zmq_ctx_term(s->zctx);
	engine_destroy(&s->engine);
	model_destroy(&s->model);
	if (s->ctl[0] >= 0)
		close(s->ctl[0]);
	if (s->ctl[1] >= 0)
		close(s->ctl[1]);
	free(s->scheduler);
	free(s->model_path);
	free(s->arch);
	free(s->name);
	free(s->hardware);
	free(s);
	*p = NULL;
}
