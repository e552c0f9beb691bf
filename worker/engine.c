/* engine: continuous batching with per-step cost accounting (see engine.h).
 *
 * Everything a step needs is allocated in engine_new: the slots' KV caches,
 * samplers and id buffers, the batch arrays (max_step_tokens entries) and
 * the logits rows (one per slot). A step therefore allocates nothing except
 * when a request's text outgrows its buffer (amortized doubling) and when
 * a finished request is handed out.
 *
 * Batch layout of one step: every decoding slot contributes its last
 * sampled token (logits wanted), in slot order; then the prefill budget
 * (max_step_tokens - decoders) is handed out to prefilling slots in the
 * order they were admitted, the next chunk of at most prefill_chunk prompt
 * tokens each (logits wanted only for the prompt's last token; an embed
 * request wants none, only the hidden states its pooling reads). Which slot
 * a request lands in and who shares its step never changes its tokens: the
 * model's numerics are batch-invariant and each request samples from its
 * own generator. */
#include "engine.h"

#include "chat.h"
#include "lib/mg_clock.h"
#include "lib/mg_cpu.h"
#include "lib/mg_split.h"
#include "sampler.h"
#include "tok.h"
#include "lib/mg_int128.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct req {
	struct req *next;
	uint64_t id;
	int32_t *prompt;	/* owned: [n_prompt] ids fed to the model */
	size_t n_prompt;
	uint32_t max_gen;	/* after clamping to the slot's context */
	bool ignore_eos;
	sampler_params_t sp;
	sampler_stop_t stop;	/* owned: stop strings and the text so far */
	int64_t submit_ns;
	bool embed;		/* prefill only, pooled: no token is sampled */
	bool truncated;		/* embed: cut to the context */
	uint32_t dims;		/* embed: values kept before normalizing */
} req_t;

typedef struct slot {
	req_t *req;		/* owned while busy; NULL = free */
	model_kv_t *kv;		/* owned: [n_ctx] positions */
	sampler_t *smp;		/* owned */
	int32_t *gen;		/* owned: [n_ctx] generated ids */
	size_t n_gen;
	int n_past;		/* positions filled in kv */
	int32_t next_tok;	/* sampled, to be fed at position n_past */
	uint64_t busy_ns;
	uint64_t flops;
	uint32_t steps;
	int64_t first_step_ns;	/* 0 = not yet in a step */
	int64_t first_token_ns;
	uint64_t admit_seq;	/* admission order: prefill budget goes oldest first */
	const char *finish;	/* set when the request ends in this step */
	double *acc;		/* owned: [dim] an embed request's pooled state so
				   far (mean: the sum in position order) */
	/* this step */
	int b_first, b_n;	/* its tokens in the batch */
	int row;		/* its logits row, -1 none */
} slot_t;

typedef struct done {
	engine_out_t out;	/* first: engine_take returns &d->out */
	struct done *next;
} done_t;

struct engine {
	const model_t *m;	/* borrowed */
	const tok_t *tok;	/* borrowed: owned by the model */
	int chat_tmpl;		/* enum chat_template for messages (chat_pick) */
	engine_opts_t o;
	int n_vocab;
	slot_t *slots;		/* owned: [o.slots] */
	model_scratch_t *scratch;	/* owned */
	/* owned: the batch of a step, [max_step_tokens] each */
	int32_t *b_tok, *b_pos;
	model_kv_t **b_kv;
	bool *b_want;
	bool *b_hid;		/* hidden state wanted (embed pooling) */
	uint64_t *b_flops;
	float *hidden;		/* owned: [max_step_tokens][dim] */
	int dim;
	int pooling;		/* embeddings: POOL_*, 0 = the model cannot embed */
	char embed_why[192];	/* why it cannot */
	float *logits;		/* owned: [slots][n_vocab], one row per sequence */
	/* owned: per-step scratch, [slots] each */
	uint64_t *w, *parts;
	int *in_step;		/* slots in this step, batch order */
	int *order;		/* slots to serve this step, decoders first */
	uint64_t n_admitted;
	char *piece;		/* owned: [piece_cap] */
	size_t piece_cap;
	req_t *q_head, *q_tail;	/* owned: FIFO of queued requests */
	int n_queued;
	done_t *d_head, *d_tail;	/* owned: finished, not yet taken */
	engine_stats_t st;
};

/* llama.cpp's pooling enum (llama.h), as GGUF {arch}.pooling_type has it */
enum { POOL_NONE = 0, POOL_MEAN = 1, POOL_CLS = 2, POOL_LAST = 3, POOL_RANK = 4 };
static const char *const pool_names[] = { "none", "mean", "cls", "last", "rank" };

int engine_pooling_parse(const char *s)
{
	for (int p = POOL_MEAN; p <= POOL_LAST; p++)
		if (s != NULL && strcmp(s, pool_names[p]) == 0)
			return p;
	return -EINVAL;
}

/* The pooling of model m with the option opt (NULL: none given): 0 and err
 * set when the model cannot embed, -EINVAL and err when opt is not a
 * pooling or contradicts the model's. */
static int pooling_of(const model_config_t *c, const char *opt, char *err, size_t errlen)
{
	int want = 0;
	if (opt != NULL && (want = engine_pooling_parse(opt)) < 0) {
		snprintf(err, errlen, "engine: unknown pooling \"%s\" (mean, cls or last)", opt);
		return -EINVAL;
	}
	int p = c->pooling_type;
	if (p == POOL_NONE)
		return want ? want : engine_pooling_parse(ENGINE_POOLING_DEFAULT);
	if (p > POOL_LAST) {
		snprintf(err, errlen, "the model's %s.pooling_type is %d (%s): margin embeds with mean, cls "
			 "or last pooling", c->arch_name, p, p == POOL_RANK ? "rank, a reranker's score" : "unknown");
		return 0;
	}
	if (want && want != p) {
		snprintf(err, errlen, "engine: pooling %s contradicts the model's %s.pooling_type %d (%s); "
			 "leave pooling unset for this model", opt, c->arch_name, p, pool_names[p]);
		return -EINVAL;
	}
	return p;
}

/* --- accounting ----------------------------------------------------------- */

/* --- requests ------------------------------------------------------------- */

static void req_free(req_t **pr)
{
	if (*pr == NULL)
		return;
	free((*pr)->prompt);
	sampler_stop_done(&(*pr)->stop);
	free(*pr);
	*pr = NULL;
}

static void push_done(engine_t *e, done_t *d)
{
	d->next = NULL;
	if (e->d_tail != NULL)
		e->d_tail->next = d;
	else
		e->d_head = d;
	e->d_tail = d;
}

/* An answer for a request that never ran (or failed): error set, no text.
 * Takes the prompt ids. */
static int push_error(engine_t *e, uint64_t id, int32_t **prompt, size_t n_prompt, int error,
		      const char *code, const char *msg)
{
	done_t *d = calloc(1, sizeof(*d));
	if (d == NULL)
		return -ENOMEM;
	d->out.id = id;
	d->out.text = strdup("");
	if (d->out.text == NULL) {
		free(d);
		return -ENOMEM;
	}
	if (prompt != NULL) {
		d->out.prompt_ids = *prompt;
		d->out.n_prompt_ids = n_prompt;
		*prompt = NULL;
	}
	d->out.error = error;
	snprintf(d->out.error_code, sizeof(d->out.error_code), "%s", code);
	snprintf(d->out.error_msg, sizeof(d->out.error_msg), "%s", msg);
	push_done(e, d);
	return 0;
}

/* The request's prompt ids: given, or the prompt text / chat messages
 * tokenized. A problem of the request itself fills msg and returns < 0
 * (-ENOMEM is the engine's problem, not the request's). */
static int tokenize(engine_t *e, const engine_req_t *r, int32_t **ret, size_t *ret_n, char *msg, size_t msglen)
{
	if (r->prompt_ids != NULL) {
		int32_t *ids = malloc((r->n_prompt_ids ? r->n_prompt_ids : 1) * sizeof(*ids));
		if (ids == NULL)
			return -ENOMEM;
		memcpy(ids, r->prompt_ids, r->n_prompt_ids * sizeof(*ids));
		*ret = ids;
		*ret_n = r->n_prompt_ids;
		return 0;
	}
	if (e->tok == NULL) {
		snprintf(msg, msglen, "request %llu: the model has no tokenizer; send prompt ids",
			 (unsigned long long)r->id);
		return -EINVAL;
	}
	char *text = NULL;
	const char *p = r->prompt;
	tok_span_t *spans = NULL;
	size_t n_spans = 0;
	if (r->messages != NULL) {
		chat_msg_t *cm = malloc((r->n_messages ? r->n_messages : 1) * sizeof(*cm));
		if (cm == NULL)
			return -ENOMEM;
		for (size_t i = 0; i < r->n_messages; i++)
			cm[i] = (chat_msg_t){ r->messages[i].role, r->messages[i].content };
		char cerr[192] = "";
		int rc = chat_format_spans(chat_template_name(e->chat_tmpl), cm, r->n_messages, true, &text,
					   &spans, &n_spans, cerr, sizeof(cerr));
		free(cm);
		if (rc < 0) {
			snprintf(msg, msglen, "request %llu: %s", (unsigned long long)r->id, cerr);
			return rc;
		}
		p = text;
	}
	if (p == NULL) {
		snprintf(msg, msglen, "request %llu: no prompt, messages or prompt ids", (unsigned long long)r->id);
		return -EINVAL;
	}
	/* BOS as the vocabulary asks; control-token text becomes those tokens
	 * in a completion's prompt (the caller wrote all of it, as with
	 * llama.cpp's server) and in a chat template's markup, but not in the
	 * roles and contents of chat messages: there "<|im_end|>" is text, so
	 * a message cannot close its turn or speak as another role. */
	int rc = text != NULL ? tok_encode_plain(e->tok, p, strlen(p), true, spans, n_spans, ret, ret_n)
			      : tok_encode(e->tok, p, strlen(p), true, true, ret, ret_n);
	free(text);
	free(spans);
	if (rc < 0 && rc != -ENOMEM)
		snprintf(msg, msglen, "request %llu: the tokenizer rejected the prompt (%s)",
			 (unsigned long long)r->id, strerror(-rc));
	return rc;
}

/* Checks and queues an embed request: input r->input, its ids [n]. */
static int submit_embed(engine_t *e, const engine_req_t *r, int32_t *ids, size_t n, req_t **ret)
{
	char msg[256];
	const char *bad = "invalid_request";
	unsigned in = r->input;
	if (e->pooling == 0) {
		snprintf(msg, sizeof(msg), "input %u: this model gives no embeddings: %s", in, e->embed_why);
		return push_error(e, r->id, &ids, n, -ENOTSUP, bad, msg);
	}
	for (size_t i = 0; i < n; i++) {
		if (ids[i] < 0 || ids[i] >= e->n_vocab) {
			snprintf(msg, sizeof(msg), "input %u: token %zu is id %d, outside the vocabulary of %d",
				 in, i, (int)ids[i], e->n_vocab);
			return push_error(e, r->id, &ids, n, -EINVAL, bad, msg);
		}
	}
	if (n == 0) {
		snprintf(msg, sizeof(msg), "input %u is empty (no tokens, and the model adds no BOS)", in);
		return push_error(e, r->id, &ids, n, -EINVAL, bad, msg);
	}
	if (r->dimensions > (uint32_t)e->dim) {
		snprintf(msg, sizeof(msg), "dimensions %u is more than the model's %d", r->dimensions, e->dim);
		return push_error(e, r->id, &ids, n, -EINVAL, bad, msg);
	}
	bool cut = false;
	if (n > (size_t)e->o.n_ctx) {
		if (!r->truncate) {
			snprintf(msg, sizeof(msg), "input %u has %zu tokens, more than the %d of a slot's "
				 "context (ask for truncation to embed its start)", in, n, e->o.n_ctx);
			return push_error(e, r->id, &ids, n, -E2BIG, "context_length_exceeded", msg);
		}
		n = (size_t)e->o.n_ctx;
		cut = true;
	}
	req_t *q = calloc(1, sizeof(*q));
	if (q == NULL) {
		free(ids);
		return -ENOMEM;
	}
	q->embed = true;
	q->truncated = cut;
	q->dims = r->dimensions ? r->dimensions : (uint32_t)e->dim;
	q->prompt = ids;
	q->n_prompt = n;
	*ret = q;
	return 0;
}

int engine_submit(engine_t *e, const engine_req_t *r)
{
	int32_t *ids = NULL;
	size_t n = 0;
	char msg[256] = "";
	int rc = tokenize(e, r, &ids, &n, msg, sizeof(msg));
	if (rc == -ENOMEM)
		return rc;
	if (rc < 0)
		return push_error(e, r->id, &ids, n, rc, r->embed ? "invalid_request" : "invalid_prompt", msg);
	req_t *q = NULL;
	if (r->embed) {
		if ((rc = submit_embed(e, r, ids, n, &q)) < 0 || q == NULL)
			return rc;
		goto queue;
	}
	for (size_t i = 0; i < n; i++) {
		if (ids[i] < 0 || ids[i] >= e->n_vocab) {
			snprintf(msg, sizeof(msg), "request %llu: prompt token %zu is id %d, outside the vocabulary of %d",
				 (unsigned long long)r->id, i, (int)ids[i], e->n_vocab);
			return push_error(e, r->id, &ids, n, -EINVAL, "invalid_prompt", msg);
		}
	}
	if (n == 0) {
		snprintf(msg, sizeof(msg), "request %llu: the prompt is empty (no tokens to start from)",
			 (unsigned long long)r->id);
		return push_error(e, r->id, &ids, n, -EINVAL, "invalid_prompt", msg);
	}
	if (n + 1 > (size_t)e->o.n_ctx) {
		snprintf(msg, sizeof(msg),
			 "request %llu: the prompt has %zu tokens, but a slot's context holds %d "
			 "(prompt + at least 1 generated token must fit)",
			 (unsigned long long)r->id, n, e->o.n_ctx);
		return push_error(e, r->id, &ids, n, -E2BIG, "context_length_exceeded", msg);
	}
	q = calloc(1, sizeof(*q));
	if (q == NULL) {
		free(ids);
		return -ENOMEM;
	}
	q->prompt = ids;
	q->n_prompt = n;
	uint32_t room = (uint32_t)((size_t)e->o.n_ctx - n);
	q->max_gen = (r->max_tokens == 0 || r->max_tokens > room) ? room : r->max_tokens;
	q->ignore_eos = r->ignore_eos;
	q->sp = (sampler_params_t){ r->temperature, r->top_p, r->top_k, r->seed };
	if (sampler_stop_init(&q->stop, r->stop, r->n_stop) < 0) {
		req_free(&q);
		return -ENOMEM;
	}
queue:
	q->id = r->id;
	q->submit_ns = mg_clock_now_ns();
	if (e->q_tail != NULL)
		e->q_tail->next = q;
	else
		e->q_head = q;
	e->q_tail = q;
	e->n_queued++;
	return 0;
}

/* --- lifetime ------------------------------------------------------------- */

int engine_new(const model_t *m, const engine_opts_t *opts, engine_t **ret, char *err, size_t errlen)
{
	const model_config_t *cfg = model_config(m);
	engine_opts_t o = opts != NULL ? *opts : (engine_opts_t){ 0 };
	if (o.slots <= 0)
		o.slots = 8;
	if (o.n_ctx <= 0)
		o.n_ctx = cfg->n_ctx > 0 && cfg->n_ctx < 2048 ? cfg->n_ctx : 2048;
	if (o.prefill_chunk <= 0)
		o.prefill_chunk = 128;
	if (o.prefill_chunk < 2)	/* prompts are cut in chunks of 2+ (step) */
		o.prefill_chunk = 2;
	if (o.max_step_tokens <= 0)
		o.max_step_tokens = o.slots + o.prefill_chunk;
	/* every decoding slot must fit in a step, or one could starve, and a
	 * prompt's chunk of 2 or 3 tokens beside the others */
	if (o.max_step_tokens < o.slots + 2)
		o.max_step_tokens = o.slots + 2;
	if (o.threads <= 0)
		o.threads = mg_cpu_count();
	model_kv_type_t kvt;
	if (model_kv_type_parse(o.kv_type != NULL ? o.kv_type : MODEL_KV_DEFAULT, &kvt) < 0) {
		snprintf(err, errlen, "engine: unknown KV cache type \"%s\" (f32, f16 or q8_0)", o.kv_type);
		return -EINVAL;
	}
	o.kv_type = model_kv_type_name(kvt);
	if (o.slots > 4096 || o.max_step_tokens > (1 << 20)) {
		snprintf(err, errlen, "engine: %d slots / %d tokens per step is more than supported (4096 / 1048576)",
			 o.slots, o.max_step_tokens);
		return -EINVAL;
	}

	engine_t *e = calloc(1, sizeof(*e));
	if (e == NULL)
		goto nomem;
	e->m = m;
	e->tok = model_tok(m);
	e->chat_tmpl = chat_pick(e->tok).tmpl;
	e->o = o;
	e->n_vocab = cfg->vocab_size;
	e->dim = cfg->dim;
	int pool = pooling_of(cfg, o.pooling, e->embed_why, sizeof(e->embed_why));
	if (pool < 0) {
		snprintf(err, errlen, "%s", e->embed_why);
		free(e);
		return pool;
	}
	e->pooling = pool;
	e->o.pooling = pool ? pool_names[pool] : "";
	/* BLAS and attention share the same cores in turn, never at once. */
	openblas_set_num_threads(o.threads);

	size_t S = (size_t)o.slots, T = (size_t)o.max_step_tokens;
	e->slots = calloc(S, sizeof(*e->slots));
	e->b_tok = malloc(T * sizeof(*e->b_tok));
	e->b_pos = malloc(T * sizeof(*e->b_pos));
	e->b_kv = malloc(T * sizeof(*e->b_kv));
	e->b_want = malloc(T * sizeof(*e->b_want));
	e->b_hid = malloc(T * sizeof(*e->b_hid));
	e->hidden = malloc(T * (size_t)e->dim * sizeof(*e->hidden));
	e->b_flops = malloc(T * sizeof(*e->b_flops));
	e->logits = malloc(S * (size_t)e->n_vocab * sizeof(*e->logits));
	e->w = malloc(S * sizeof(*e->w));
	e->parts = malloc(S * sizeof(*e->parts));
	e->in_step = malloc(S * sizeof(*e->in_step));
	e->order = malloc(S * sizeof(*e->order));
	e->piece_cap = 256;
	e->piece = malloc(e->piece_cap);
	if (e->slots == NULL || e->b_tok == NULL || e->b_pos == NULL || e->b_kv == NULL ||
	    e->b_want == NULL || e->b_hid == NULL || e->hidden == NULL || e->b_flops == NULL ||
	    e->logits == NULL || e->w == NULL || e->parts == NULL || e->in_step == NULL || e->order == NULL || e->piece == NULL)
		goto nomem;
	for (size_t i = 0; i < S; i++) {
		slot_t *s = &e->slots[i];
		if (model_kv_new(m, o.n_ctx, kvt, &s->kv) < 0) {
			snprintf(err, errlen, "engine: cannot allocate the KV cache of slot %zu (%zu bytes for %d positions of %s)",
				 i, model_kv_bytes(m, o.n_ctx, kvt), o.n_ctx, o.kv_type);
			engine_destroy(&e);
			return -ENOMEM;
		}
		if (sampler_new(e->n_vocab, &s->smp) < 0)
			goto nomem;
		s->gen = malloc((size_t)o.n_ctx * sizeof(*s->gen));
		s->acc = malloc((size_t)e->dim * sizeof(*s->acc));
		if (s->gen == NULL || s->acc == NULL)
			goto nomem;
	}
	int rc = model_scratch_new(m, o.max_step_tokens, o.threads, &e->scratch);
	if (rc < 0) {
		snprintf(err, errlen, "engine: cannot allocate activations for %d tokens per step", o.max_step_tokens);
		engine_destroy(&e);
		return rc;
	}
	*ret = e;
	return 0;
nomem:
	snprintf(err, errlen, "engine: out of memory for %d slots of %d positions", o.slots, o.n_ctx);
	engine_destroy(&e);
	return -ENOMEM;
}

void engine_destroy(engine_t **pe)
{
	if (pe == NULL || *pe == NULL)
		return;
	engine_t *e = *pe;
	if (e->slots != NULL) {
		for (int i = 0; i < e->o.slots; i++) {
			slot_t *s = &e->slots[i];
			model_kv_destroy(&s->kv);
			sampler_destroy(&s->smp);
			free(s->gen);
			free(s->acc);
			req_free(&s->req);
		}
		free(e->slots);
	}
	while (e->q_head != NULL) {
		req_t *q = e->q_head;
		e->q_head = q->next;
		req_free(&q);
	}
	while (e->d_head != NULL) {
		done_t *d = e->d_head;
		e->d_head = d->next;
		engine_out_t *o = &d->out;
		engine_out_free(&o);
	}
	model_scratch_destroy(&e->scratch);
	free(e->b_tok);
	free(e->b_pos);
	free(e->b_kv);
	free(e->b_want);
	free(e->b_hid);
	free(e->hidden);
	free(e->b_flops);
	free(e->logits);
	free(e->w);
	free(e->parts);
	free(e->in_step);
	free(e->order);
	free(e->piece);
	free(e);
	*pe = NULL;
}

/* --- steps ---------------------------------------------------------------- */

static void admit(engine_t *e)
{
	for (int i = 0; i < e->o.slots && e->q_head != NULL; i++) {
		slot_t *s = &e->slots[i];
		if (s->req != NULL)
			continue;
		req_t *q = e->q_head;
		e->q_head = q->next;
		if (e->q_head == NULL)
			e->q_tail = NULL;
		e->n_queued--;
		q->next = NULL;
		s->req = q;
		s->n_gen = 0;
		s->n_past = 0;
		s->busy_ns = 0;
		s->flops = 0;
		s->steps = 0;
		s->first_step_ns = 0;
		s->first_token_ns = 0;
		s->finish = NULL;
		s->admit_seq = e->n_admitted++;
		if (q->embed)
			memset(s->acc, 0, (size_t)e->dim * sizeof(*s->acc));
		else
			sampler_reset(s->smp, &q->sp);
	}
}

/* An embedding from a slot's pooled state: mean divides by the count,
 * then the first dims values are L2-normalized (in double, in index
 * order) into ret. A zero vector stays zero. */
static void pool_finish(const double *acc, int pooling, size_t n, uint32_t dims, float *ret)
{
	double div = pooling == POOL_MEAN ? (double)n : 1.0, ss = 0.0;
	for (uint32_t k = 0; k < dims; k++)
		ss += (acc[k] / div) * (acc[k] / div);
	double norm = sqrt(ss);
	for (uint32_t k = 0; k < dims; k++)
		ret[k] = (float)(norm > 0.0 ? acc[k] / div / norm : 0.0);
}

/* Adds one hidden row at position pos of a request of n tokens to an
 * embed slot's pooled state. */
static void pool_row(double *acc, int pooling, int pos, size_t n, const float *row, int dim)
{
	if (pooling == POOL_MEAN) {
		for (int k = 0; k < dim; k++)
			acc[k] += (double)row[k];
	} else if ((pooling == POOL_CLS && pos == 0) || (pooling == POOL_LAST && (size_t)pos + 1 == n)) {
		for (int k = 0; k < dim; k++)
			acc[k] = (double)row[k];
	}
}

/* Hand out a slot's request (finished, failed or cancelled) and free it. */
static int finish_slot(engine_t *e, slot_t *s, int error, const char *code, const char *msg)
{
	req_t *q = s->req;
	done_t *d = calloc(1, sizeof(*d));
	if (d == NULL)
		return -ENOMEM;
	engine_out_t *o = &d->out;
	o->ids = malloc((s->n_gen ? s->n_gen : 1) * sizeof(*o->ids));
	if (o->ids == NULL) {
		free(d);
		return -ENOMEM;
	}
	memcpy(o->ids, s->gen, s->n_gen * sizeof(*o->ids));
	o->n_ids = s->n_gen;
	if (q->stop.text != NULL) {
		o->text = q->stop.text;
		o->text_len = q->stop.len;
		q->stop.text = NULL;
	} else {
		o->text = strdup("");
		if (o->text == NULL) {
			free(o->ids);
			free(d);
			return -ENOMEM;
		}
	}
	o->id = q->id;
	o->prompt_ids = q->prompt;
	o->n_prompt_ids = q->n_prompt;
	q->prompt = NULL;
	o->finish_reason = error ? NULL : s->finish;
	o->error = error;
	if (code != NULL)
		snprintf(o->error_code, sizeof(o->error_code), "%s", code);
	if (msg != NULL)
		snprintf(o->error_msg, sizeof(o->error_msg), "%s", msg);
	if (q->embed && !error) {
		o->embedding = malloc(q->dims * sizeof(*o->embedding));
		if (o->embedding == NULL) {
			free(o->ids);
			free(o->text);
			free(d);
			return -ENOMEM;
		}
		o->n_embedding = q->dims;
		pool_finish(s->acc, e->pooling, q->n_prompt, q->dims, o->embedding);
		o->truncated = q->truncated;
		e->st.embeddings++;
	}
	o->busy_ns = s->busy_ns;
	o->flops = s->flops;
	o->steps = s->steps;
	if (s->first_step_ns != 0) {
		o->queue_ns = (uint64_t)(s->first_step_ns - q->submit_ns);
		if (s->first_token_ns != 0)
			o->first_token_ns = (uint64_t)(s->first_token_ns - s->first_step_ns);
	} else {
		o->queue_ns = (uint64_t)(mg_clock_now_ns() - q->submit_ns);
	}
	push_done(e, d);
	req_free(&s->req);
	return 0;
}

/* The text of one token, into e->piece (grown if a piece is longer). */
static int piece_of(engine_t *e, int32_t id, size_t *ret_len)
{
	int n = tok_piece(e->tok, id, false, e->piece, e->piece_cap);
	if (n >= 0 && (size_t)n > e->piece_cap) {
		char *p = realloc(e->piece, (size_t)n);
		if (p == NULL)
			return -ENOMEM;
		e->piece = p;
		e->piece_cap = (size_t)n;
		n = tok_piece(e->tok, id, false, e->piece, e->piece_cap);
	}
	if (n < 0)
		return n;
	*ret_len = (size_t)n;
	return 0;
}

/* Takes a sampled token: records it and decides whether the request ends. */
static int accept_token(engine_t *e, slot_t *s, int32_t t)
{
	req_t *q = s->req;
	s->gen[s->n_gen++] = t;
	bool eog = e->tok != NULL && tok_is_eog(e->tok, t);
	if (eog && !q->ignore_eos) {
		s->finish = "stop";
		return 0;
	}
	if (e->tok != NULL) {
		size_t len = 0;
		int rc = piece_of(e, t, &len);
		if (rc < 0)
			return rc;
		rc = sampler_stop_feed(&q->stop, e->piece, len);
		if (rc < 0)
			return rc;
		if (rc == 1) {
			s->finish = "stop";
			return 0;
		}
	}
	if (s->n_gen >= q->max_gen)
		s->finish = "length";
	else
		s->next_tok = t;
	return 0;
}

int engine_step(engine_t *e)
{
	int64_t t0 = mg_clock_now_ns();
	admit(e);

	/* Serve decoders first (one token each, always room), then prefills
	 * oldest admission first, so a long wait is never overtaken by a
	 * newcomer in a lower slot. */
	int S = e->o.slots, n_dec = 0, n_ord = 0;
	for (int i = 0; i < S; i++) {
		slot_t *s = &e->slots[i];
		s->b_n = 0;
		s->row = -1;
		if (s->req != NULL && (size_t)s->n_past >= s->req->n_prompt) {
			e->order[n_ord++] = i;
			n_dec++;
		}
	}
	for (int i = 0; i < S; i++) {
		slot_t *s = &e->slots[i];
		if (s->req == NULL || (size_t)s->n_past >= s->req->n_prompt)
			continue;
		int j = n_ord++;
		for (; j > n_dec && e->slots[e->order[j - 1]].admit_seq > s->admit_seq; j--)
			e->order[j] = e->order[j - 1];
		e->order[j] = i;
	}
	int budget = e->o.max_step_tokens - n_dec, n = 0, rows = 0, n_seq = 0, n_hid = 0;
	uint64_t prefill = 0, decode = 0;
	for (int k = 0; k < n_ord; k++) {
		int i = e->order[k];
		slot_t *s = &e->slots[i];
		req_t *q = s->req;
		int take;
		bool want_last;
		if ((size_t)s->n_past >= q->n_prompt) {
			e->b_tok[n] = s->next_tok;
			take = 1;
			want_last = true;
			decode++;
		} else {
			size_t left = q->n_prompt - (size_t)s->n_past;
			take = left < (size_t)e->o.prefill_chunk ? (int)left : e->o.prefill_chunk;
			if (take > budget)
				take = budget;
			/* A prompt of 2+ tokens never gets a chunk, or leaves a
			 * remainder, of one token: llama.cpp's arithmetic for a
			 * token alone differs from a prompt batch's (ops.h,
			 * ops_attn_t.tiled), and the cut of a prompt into steps
			 * depends on the other sequences, so a sequence's logits
			 * must not depend on it. */
			if (left >= 2 && (size_t)take + 1 == left)
				take = take + 1 <= budget ? take + 1 : take - 1;
			if (left >= 2 && take == 1)
				take = 0;
			if (take == 0)
				continue;
			budget -= take;
			memcpy(e->b_tok + n, q->prompt + s->n_past, (size_t)take * sizeof(int32_t));
			want_last = (size_t)take == left;
			prefill += (uint64_t)take;
		}
		s->b_first = n;
		s->b_n = take;
		for (int j = 0; j < take; j++) {
			int pos = s->n_past + j;
			e->b_pos[n + j] = pos;
			e->b_kv[n + j] = s->kv;
			e->b_want[n + j] = false;
			e->b_hid[n + j] = q->embed &&
				(e->pooling == POOL_MEAN || (e->pooling == POOL_CLS && pos == 0) ||
				 (e->pooling == POOL_LAST && (size_t)pos + 1 == q->n_prompt));
			n_hid += e->b_hid[n + j];
		}
		if (want_last && !q->embed) {
			e->b_want[n + take - 1] = true;
			s->row = rows++;
		}
		n += take;
		e->in_step[n_seq++] = i;
	}
	if (n == 0)
		return 0;

	model_batch_t b = {
		.n = n, .tokens = e->b_tok, .pos = e->b_pos, .kv = e->b_kv,
		.logits_wanted = e->b_want, .logits = e->logits, .flops = e->b_flops,
		.hidden_wanted = n_hid > 0 ? e->b_hid : NULL, .hidden = e->hidden,
	};
	int64_t f0 = mg_clock_now_ns();
	int rc = model_forward(e->m, e->scratch, &b);
	int64_t f1 = mg_clock_now_ns();
	if (rc < 0)
		return rc;
	if (rc != rows)
		return -EPROTO;

	const float *hrow = e->hidden;
	for (int k = 0; k < n_seq; k++) {
		slot_t *s = &e->slots[e->in_step[k]];
		uint64_t f = 0;
		for (int j = 0; j < s->b_n; j++) {
			f += e->b_flops[s->b_first + j];
			if (n_hid > 0 && e->b_hid[s->b_first + j]) {
				pool_row(s->acc, e->pooling, s->n_past + j, s->req->n_prompt, hrow, e->dim);
				hrow += e->dim;
			}
		}
		e->w[k] = f;
		s->n_past += s->b_n;
		if (s->req->embed && (size_t)s->n_past >= s->req->n_prompt)
			s->finish = "stop";	/* prefilled and pooled: finish_slot normalizes */
		if (s->first_step_ns == 0)
			s->first_step_ns = t0;
		if (s->row >= 0) {
			int32_t t = sampler_sample(s->smp, e->logits + (size_t)s->row * (size_t)e->n_vocab);
			rc = accept_token(e, s, t);
			if (rc < 0)
				return rc;
		}
	}
	int64_t t1 = mg_clock_now_ns();
	uint64_t wall = (uint64_t)(t1 - t0), flops = 0;
	mg_split_largest_remainder(wall, e->w, (size_t)n_seq, e->parts);
	for (int k = 0; k < n_seq; k++) {
		slot_t *s = &e->slots[e->in_step[k]];
		s->busy_ns += e->parts[k];
		s->flops += e->w[k];
		s->steps++;
		flops += e->w[k];
		if (s->row >= 0 && s->first_token_ns == 0)
			s->first_token_ns = t1;
	}
	e->st.steps++;
	e->st.wall_ns += wall;
	e->st.forward_ns += (uint64_t)(f1 - f0);
	e->st.flops += flops;
	e->st.prefill_tokens += prefill;
	e->st.decode_tokens += decode;
	if ((uint32_t)n_seq > e->st.max_batch)
		e->st.max_batch = (uint32_t)n_seq;

	for (int k = 0; k < n_seq; k++) {
		slot_t *s = &e->slots[e->in_step[k]];
		if (s->finish != NULL && (rc = finish_slot(e, s, 0, NULL, NULL)) < 0)
			return rc;
	}
	return n_seq;
}

/* --- the rest of the interface -------------------------------------------- */

int engine_cancel(engine_t *e, uint64_t id)
{
	int n = 0;
	char msg[256];
	snprintf(msg, sizeof(msg), "request %llu was cancelled", (unsigned long long)id);
	for (req_t **pq = &e->q_head; *pq != NULL;) {
		req_t *q = *pq;
		if (q->id != id) {
			pq = &q->next;
			continue;
		}
		int rc = push_error(e, q->id, &q->prompt, q->n_prompt, -ECANCELED, "cancelled", msg);
		if (rc < 0)
			return rc;
		*pq = q->next;
		e->n_queued--;
		req_free(&q);
		n++;
	}
	e->q_tail = NULL;
	for (req_t *q = e->q_head; q != NULL; q = q->next)
		e->q_tail = q;
	for (int i = 0; i < e->o.slots; i++) {
		slot_t *s = &e->slots[i];
		if (s->req == NULL || s->req->id != id)
			continue;
		int rc = finish_slot(e, s, -ECANCELED, "cancelled", msg);
		if (rc < 0)
			return rc;
		n++;
	}
	return n;
}

int engine_pending(const engine_t *e)
{
	int n = e->n_queued;
	for (int i = 0; i < e->o.slots; i++)
		n += e->slots[i].req != NULL;
	return n;
}

engine_out_t *engine_take(engine_t *e)
{
	done_t *d = e->d_head;
	if (d == NULL)
		return NULL;
	e->d_head = d->next;
	if (e->d_head == NULL)
		e->d_tail = NULL;
	d->next = NULL;
	return &d->out;
}

void engine_out_free(engine_out_t **po)
{
	if (po == NULL || *po == NULL)
		return;
	engine_out_t *o = *po;
	free(o->text);
	free(o->ids);
	free(o->prompt_ids);
	free(o->embedding);
	free(o);	/* o is the first member of its done_t */
	*po = NULL;
}

void engine_get_stats(const engine_t *e, engine_stats_t *ret)
{
	*ret = e->st;
	model_scratch_profile_get(e->scratch, ret->phase_ns);
}

void engine_stats_reset(engine_t *e)
{
	memset(&e->st, 0, sizeof(e->st));
	model_scratch_profile_reset(e->scratch);
}

void engine_profile(engine_t *e, bool on)
{
	model_scratch_profile(e->scratch, on);
}

size_t engine_kv_bytes(const engine_t *e)
{
	return (size_t)e->o.slots * model_kv_bytes(e->m, e->o.n_ctx, model_kv_type(e->slots[0].kv));
}

uint32_t engine_embed_dims(const engine_t *e)
{
	return e->pooling ? (uint32_t)e->dim : 0;
}

const char *engine_embed_why(const engine_t *e)
{
	return e->pooling ? "" : e->embed_why;
}

const engine_opts_t *engine_opts(const engine_t *e)
{
	return &e->o;
}
