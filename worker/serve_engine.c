/* serve_engine: the engine thread of serve (see serve.h, serve_priv.h). */
#include "serve_priv.h"
#include "engine.h"
#include "lib/mg_clock.h"
#include "model.h"

#include "lib/mg_hash.h"
#include "lib/mg_log.h"
#include "lib/mg_utf8.h"
#include "lib/mg_wire.h"

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
	/* counted before the Result leaves: once it is sent, the daemon's
	 * Ack (and a reader of the stats who saw it) can come before this
	 * thread runs again */
	atomic_fetch_add(&g->s->st.shards_done, 1);
	pm.kind = PIPE_RESULT;
	pipe_send(g->pair, &pm, buf, len, 0);
	free(buf);

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

/* --fake embeddings: FAKE_EMBED_DIMS (serve_priv.h) values per input, a
 * function of the input (text bytes or token ids) alone, cut to
 * q->dimensions when set, then L2-normalized, as a real model's vectors
 * are. An input longer than the context (text: bytes / 4 + 1 tokens) is
 * refused unless q->truncate. */
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

void *serve_engine_main(void *arg)
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
