/* serve: the worker side of the margin.v1 protocol (`margin-worker serve`).
 *
 * Two threads per serve_t, which talk only by messages over an inproc PAIR
 * socket (small structs by value and protobuf frames, never shared structs):
 *
 *   I/O thread     owns the DEALER socket to margind and speaks the protocol:
 *                  Hello -> Welcome -> Credit / Assign / Result / Ack /
 *                  Cancel / Heartbeat / Bye, Paranoid Pirate liveness and
 *                  reconnection, Result re-sending until Ack, flow control.
 *   engine thread  owns the model and the engine: turns each Assign's
 *                  requests into engine requests (requests of several shards
 *                  share the engine's slots), steps the engine, and hands a
 *                  packed Result to the I/O thread when every request of a
 *                  shard is finished. A long prefill blocks only this thread,
 *                  so heartbeats keep flowing.
 *
 * The state machines and the credit formula are in docs/protocol.md.
 *
 * Lifetime: serve_new() (loads the model, builds the engine: slow) ->
 * serve_start() -> serve_stop() from any thread or a signal handler ->
 * serve_wait() -> serve_destroy(). serve_new/start/wait/destroy are called
 * by one controlling thread. */
#ifndef SERVE_H
#define SERVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SERVE_KEY_LEN 40	/* a CURVE key in Z85 */

typedef struct serve serve_t;

typedef struct serve_opts {
	const char *scheduler;		/* "tcp://HOST:PORT" of margind (required) */
	const char *model_path;		/* a GGUF file, or ... */
	const char *arch;		/* ... a synthetic preset (exactly one of the two) */
	const char *model_name;		/* advertised in Hello and matched against
					   Assign.model; NULL: the preset name, or the
					   file name without directory and ".gguf" */
	int slots;			/* engine sequences in flight (default 8) */
	int threads;			/* engine threads (0: online cores) */
	int n_ctx;			/* KV cache per slot (0: the engine's default) */
	const char *kv_type;		/* KV cache type (NULL: the engine's default) */
	const char *weights;		/* "auto" (NULL), "f32", "q8_0": model_opts_t */
	const char *arith;		/* "llama" (NULL) or "fast": model_opts_t */
	const char *pooling;		/* embeddings of a model whose GGUF names no
					   pooling: "mean", "cls", "last" (NULL: the
					   engine's default, ENGINE_POOLING_DEFAULT) */
	bool embed_truncatable;		/* requests may ask for fewer dimensions */
	const char *name;		/* worker name (NULL: the host name) */
	const char *hardware;		/* hardware profile name (NULL: "") */
	bool curve;			/* false: plain TCP */
	char curve_server[SERVE_KEY_LEN + 1];	/* Z85: margind's public key */
	char curve_secret[SERVE_KEY_LEN + 1];	/* Z85: this worker's secret key */
	bool fake;			/* answer at once with deterministic text, no model */
	int64_t fake_delay_ns;		/* fake: the engine thread is busy this long
					   per shard (a stand-in for a long prefill) */
	int64_t heartbeat_ns;		/* until Welcome says otherwise (default 1 s) */
	int liveness;			/* until Welcome says otherwise (default 3) */
	int64_t resend_ns;		/* re-send an unacknowledged Result (default 5 s) */
	int64_t reconnect_min_ns;	/* back-off after a lost connection (default 1 s), */
	int64_t reconnect_max_ns;	/* doubling up to this (default 32 s) */
	int64_t grace_ns;		/* graceful stop: time to finish in-flight
					   shards and get their Acks (default 30 s) */
	int queued_shards;		/* credit beyond filling the slots (default 1) */
	/* The I/O thread's monotonic clock, behind every timer it keeps
	 * (heartbeat, liveness, re-sends, back-off, the Hello and stop
	 * deadlines); NULL: mg_clock_now_ns. Tests pass a fake one, move it,
	 * then serve_wake() and wait for serve_stats_t.timers_at to reach it. */
	int64_t (*clock)(void *clock_ctx);
	void *clock_ctx;		/* borrowed: passed to clock */
} serve_opts_t;

typedef enum serve_stop_mode {
	SERVE_STOP_GRACEFUL = 1,	/* take no new shards, finish and deliver the
					   running ones (at most grace_ns), Bye */
	SERVE_STOP_NOW = 2,		/* Bye and stop at once; unfinished shards are
					   the daemon's to re-dispatch */
} serve_stop_mode_t;

/* Counters for tests and the exit summary; read with serve_get_stats(). */
typedef struct serve_stats {
	uint64_t connects;		/* Hello sent (first connection + reconnections) */
	uint64_t welcomes;
	uint64_t shards_taken;		/* Assigns handed to the engine thread */
	uint64_t shards_done;		/* Results produced by the engine thread */
	uint64_t results_sent;		/* Result frames sent, re-sends included */
	uint64_t acks;
	uint64_t dropped_frames;	/* undecodable or unexpected frames from margind */
	int64_t timers_at;		/* the clock's reading at the I/O thread's last
					   pass over its timers (0: none yet) */
} serve_stats_t;

/* Fills o with the defaults above (strings NULL, curve off). */
void serve_opts_init(serve_opts_t *o);

/* Validates o, loads the model (or, with fake, reads only what Hello needs)
 * and builds the engine. o's strings are copied. *ret is owned by the
 * caller (serve_destroy). Errors: -EINVAL (bad options), -errno / -EBADMSG /
 * -ENOTSUP from the model, with err saying what. */
int serve_new(const serve_opts_t *o, serve_t **ret, char *err, size_t errlen);

/* Starts the I/O and engine threads (they block all signals). -errno. */
int serve_start(serve_t *s);

/* Asks the threads to stop. Async-signal-safe and callable from any thread;
 * a later SERVE_STOP_NOW overrides a SERVE_STOP_GRACEFUL in progress. */
void serve_stop(serve_t *s, serve_stop_mode_t mode);

/* Makes the I/O thread read its clock and run its timers now (after a
 * test moved a fake clock). Async-signal-safe, any thread. */
void serve_wake(serve_t *s);

/* Waits for both threads to end (after serve_stop, or by themselves when
 * margind refuses the Hello). Returns 0 after a requested stop, or
 * -ECONNREFUSED when margind answered Hello with Bye (e.g. a protocol
 * version mismatch: retrying cannot help); err then holds the reason. */
int serve_wait(serve_t *s, char *err, size_t errlen);

/* True once the I/O thread has ended (serve_wait will not block). */
bool serve_finished(const serve_t *s);

/* Any thread; the counters are read one by one, not as a snapshot. */
void serve_get_stats(const serve_t *s, serve_stats_t *ret);

/* The model name advertised in Hello (borrowed, lives as long as s). */
const char *serve_model_name(const serve_t *s);

/* Stops (SERVE_STOP_NOW) and joins if still running, frees everything.
 * NULL-safe; sets *s = NULL. */
void serve_destroy(serve_t **s);

#endif
