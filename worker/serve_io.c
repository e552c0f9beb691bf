/* serve_io: the I/O thread of serve (see serve.h, serve_priv.h). */
#include "serve_priv.h"

#include "lib/mg_log.h"
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
	mi.arith = (char *)(s->arith != NULL ? s->arith : "");
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

void *serve_io_main(void *arg)
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
