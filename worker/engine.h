/* engine: continuous batching over `slots` sequences of one model.
 *
 * The caller (the worker's engine thread, `run`, `bench`, tests) submits
 * requests (engine_submit tokenizes them, through the chat template for
 * messages, and checks them against the slot context at once), then calls
 * engine_step() until idle, collecting finished requests with
 * engine_take(). Each step: free slots admit queued requests in FIFO order
 * (each slot's KV cache, sampler and buffers were allocated in
 * engine_new), every decoding sequence advances by one token and the
 * remaining token budget prefills prompts in chunks of at most
 * `prefill_chunk` tokens, oldest admission first — all in one batched
 * model_forward(), one matrix product per weight matrix. A finished
 * sequence leaves at once; its slot is reused in the next step.
 *
 * Embedding requests (engine_req_t.embed) are prefilled like any prompt,
 * in chunks sharing the steps, and never sampled: the final hidden states
 * of their tokens (after the output norm; the output head is skipped) are
 * pooled as engine_opts_t.pooling says, cut to `dimensions` and
 * L2-normalized into engine_out_t.embedding. Pooling adds the rows in
 * position order into a double accumulator, so however the input was cut
 * into steps, and whatever shared them, the vector has the same bits.
 *
 * Greedy and sampled requests alike give the same tokens whatever shares
 * their steps: the forward pass is batch-invariant (model.h) and every
 * request draws from its own generator seeded with engine_req_t.seed as
 * given (sampler.h).
 *
 * Accounting: each step's wall time (ns) is split among the sequences in it
 * in proportion to their FLOPs with the largest-remainder method, in
 * integers, so the parts sum exactly to the step; a request's busy_ns is the
 * sum of its parts over the steps it took part in. Over any run, the busy_ns
 * of all requests sum exactly to engine_stats_t.wall_ns.
 *
 * Threads: engine_new calls openblas_set_num_threads(threads) (used only by
 * a model on the OpenBLAS path) and gives the model the same number of
 * attention/matmul threads; the two never run at the same time.
 *
 * An engine_t is used by one thread at a time. */
#ifndef ENGINE_H
#define ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"

typedef struct engine engine_t;

typedef struct engine_opts {
	int slots;		/* sequences in flight (default 8) */
	int n_ctx;		/* KV cache per slot, tokens (default min(model n_ctx, 2048)) */
	int prefill_chunk;	/* max prompt tokens per sequence per step (default 128) */
	int max_step_tokens;	/* max tokens in one forward (default slots + prefill_chunk;
				   raised to slots so every decoder fits a step) */
	int threads;		/* attention + BLAS threads (default: the CPUs in
				   this process's affinity mask, mg_cpu_count) */
	const char *kv_type;	/* KV cache element type: "f32", "f16" or "q8_0"
				   (default MODEL_KV_DEFAULT); engine_opts gives
				   back a static string */
	const char *pooling;	/* embeddings: "mean", "cls" or "last" for a model
				   whose GGUF pooling_type is none or absent
				   (default ENGINE_POOLING_DEFAULT); a model that
				   names one uses it, and a different one here is
				   refused. engine_opts gives back the pooling in
				   effect (static), or "" when the model cannot
				   embed (engine_embed_dims) */
} engine_opts_t;

/* The pooling of a model that names none: the mean of every position's
 * state (docs/models.md says why). */
#define ENGINE_POOLING_DEFAULT "mean"

typedef struct engine_msg {
	const char *role;	/* "system", "user", "assistant" */
	const char *content;
} engine_msg_t;

typedef struct engine_req {
	uint64_t id;		/* caller's handle, returned in engine_out_t */
	const char *prompt;	/* completions: the prompt text (NUL-terminated) */
	const engine_msg_t *messages;	/* chat: formatted by the model's template */
	size_t n_messages;
	const int32_t *prompt_ids;	/* or ready token ids (bench, tests); BOS not added */
	size_t n_prompt_ids;
	uint32_t max_tokens;	/* 0 = until the context is full */
	float temperature;	/* 0 = greedy */
	float top_p;		/* 0 or 1 = off */
	uint32_t top_k;		/* 0 = off */
	uint64_t seed;
	const char *const *stop;	/* stop strings */
	size_t n_stop;
	bool ignore_eos;	/* keep generating past EOS (reference tests, bench) */
	/* embeddings: the prompt (text with BOS as the model adds it, or
	 * prompt_ids as given) is one input, prefilled and pooled; max_tokens,
	 * sampling and stops are ignored */
	bool embed;
	uint32_t dimensions;	/* 0 = the model's dim; else the first this many
				   values, then normalized (1..dim) */
	bool truncate;		/* an input longer than the slot's context is cut
				   to it, keeping the start (else refused) */
	uint32_t input;		/* the input's index in its request, for messages */
} engine_req_t;

typedef struct engine_out {
	uint64_t id;
	char *text;		/* owned: generated text (stop string excluded) */
	size_t text_len;
	int32_t *ids;		/* owned: generated ids */
	size_t n_ids;
	int32_t *prompt_ids;	/* owned: the ids fed to the model */
	size_t n_prompt_ids;
	const char *finish_reason;	/* static: "stop", "length", or NULL on error
					   (embed: "stop" once pooled) */
	int error;		/* 0 or negative errno */
	char error_code[48];	/* e.g. "context_length_exceeded" */
	char error_msg[256];
	uint64_t busy_ns;	/* this request's share of the steps it was in */
	uint64_t flops;
	uint64_t queue_ns;	/* submit -> first step */
	uint64_t first_token_ns;	/* first step -> first sampled token */
	uint32_t steps;
	float *embedding;	/* owned: embed requests, [n_embedding] values of
				   L2 norm 1 (NULL otherwise and on error) */
	uint32_t n_embedding;
	bool truncated;		/* embed: the input was cut to the context */
} engine_out_t;

/* Totals since engine_new (or the last engine_stats_reset). */
typedef struct engine_stats {
	uint64_t steps;
	uint64_t wall_ns;	/* sum of step wall times */
	uint64_t forward_ns;	/* of which inside model_forward (the rest is the
				   engine's own: batch assembly, sampling, stops) */
	uint64_t flops;
	uint64_t prefill_tokens;
	uint64_t decode_tokens;
	uint64_t embeddings;	/* embed requests finished (their tokens are
				   prefill_tokens) */
	uint32_t max_batch;	/* most sequences in one step */
	uint64_t phase_ns[MODEL_N_PHASES];	/* forward_ns by phase, with
						   engine_profile on (model.h) */
} engine_stats_t;

/* m is borrowed and must outlive the engine. */
int engine_new(const model_t *m, const engine_opts_t *o, engine_t **ret, char *err, size_t errlen);
void engine_destroy(engine_t **e);

/* Copies everything it needs from r. -ENOMEM; the request's own problems
 * (too long, bad template) come back as an engine_out_t with error set. */
int engine_submit(engine_t *e, const engine_req_t *r);
/* Drop queued and running requests with this id (they come back with
 * error -ECANCELED). */
int engine_cancel(engine_t *e, uint64_t id);
/* Runs one step. Returns the number of sequences that took part (0 when
 * there was nothing to do), or a negative errno. */
int engine_step(engine_t *e);
/* Number of requests queued or running. */
int engine_pending(const engine_t *e);
/* Takes one finished request (caller frees with engine_out_free), or NULL. */
engine_out_t *engine_take(engine_t *e);
void engine_out_free(engine_out_t **o);

void engine_get_stats(const engine_t *e, engine_stats_t *ret);
void engine_stats_reset(engine_t *e);
/* Times the phases of each forward pass into engine_stats_t.phase_ns
 * (model_scratch_profile); off by default. */
void engine_profile(engine_t *e, bool on);
/* The length of an embedding (the model's dim), or 0 when the model cannot
 * embed (a GGUF pooling_type margin does not do, e.g. 4 rank); then
 * engine_embed_why says why and embed requests are refused with it. */
uint32_t engine_embed_dims(const engine_t *e);
const char *engine_embed_why(const engine_t *e);
/* "mean", "cls", "last": a pooling name; -EINVAL for anything else. */
int engine_pooling_parse(const char *s);

/* Bytes of KV cache held by the slots. */
size_t engine_kv_bytes(const engine_t *e);
/* The options in effect (defaults filled in). Borrowed. */
const engine_opts_t *engine_opts(const engine_t *e);

#endif
