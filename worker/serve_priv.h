/* serve private header: what the I/O thread (serve_io.c), the engine
 * thread (serve_engine.c) and the lifetime functions (serve.c) share: the
 * struct serve, and the pipe between the two threads. Not part of serve.h's
 * interface. */
#ifndef SERVE_PRIV_H
#define SERVE_PRIV_H

#include "serve.h"
#include "engine.h"
#include "lib/mg_clock.h"
#include "model.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define COMP "serve"
#define PAIR_ENDPOINT "inproc://serve-engine"
/* How long close() may keep flushing a Bye or a last Result. */
#define LINGER_MS 500
/* Frames taken from one socket per wake-up, so timers stay on time. */
#define DRAIN_MAX 256
/* Values per --fake embedding (ModelInfo.embed_dims with --fake). */
#define FAKE_EMBED_DIMS 16

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
	const char *arith;	/* static ("llama", "fast"); "" with fake */
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
static inline int64_t io_now(const serve_t *s)
{
	return s->o.clock != NULL ? s->o.clock(s->o.clock_ctx) : mg_clock_now_ns();
}

static inline int pipe_send(void *sock, const pipe_msg_t *pm, const void *body, size_t len, int flags)
{
	if (zmq_send(sock, pm, sizeof(*pm), flags | (body ? ZMQ_SNDMORE : 0)) < 0)
		return -zmq_errno();
	if (body != NULL && zmq_send(sock, body, len, flags) < 0)
		return -zmq_errno();
	return 0;
}

/* Receives one pipe message: *pm, and frame 1 into body (zmq_msg_init'ed by
 * the caller; left empty when absent). -EAGAIN when nothing is waiting. */
static inline int pipe_recv(void *sock, pipe_msg_t *pm, zmq_msg_t *body, int flags)
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

static inline char *xstrdup(const char *s)
{
	return s ? strdup(s) : NULL;
}

static inline int grow(void **arr, size_t *cap, size_t need, size_t elem)
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

/* The threads' entry points (arg: the serve_t, borrowed), started by
 * serve_start. */
void *serve_engine_main(void *arg);
void *serve_io_main(void *arg);

#endif
