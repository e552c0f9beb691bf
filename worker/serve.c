/* serve: see serve.h; the state machines are drawn in docs/protocol.md.
 *
 * Layout: options, model info and the lifetime functions (controlling
 * thread) here; the engine thread in serve_engine.c, the I/O thread in
 * serve_io.c; the struct and the pipe between the two threads in
 * serve_priv.h. */
#include "serve_priv.h"
#include "engine.h"
#include "gguf.h"
#include "lib/mg_clock.h"
#include "model.h"
#include "lib/mg_cpu.h"

#include "chat.h"
#include "lib/mg_curve.h"
#include "lib/mg_log.h"
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
		if (o->arith != NULL && model_arith_parse(o->arith, &mo.arith) < 0) {
			snprintf(err, errlen, "arith = %s: not llama or fast", o->arith);
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
		s->arith = model_arith_name(mo.arith);
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
		mg_log(MG_LOG_INFO, COMP, "engine ready model=%s slots=%d ctx=%d kv_type=%s kv_bytes=%zu weights=%s arith=%s weight_bytes=%llu threads=%d",
		       s->model_name, ro->slots, ro->n_ctx, ro->kv_type, engine_kv_bytes(s->engine),
		       model_weights_name(mo.weights), model_arith_name(mo.arith),
		       (unsigned long long)model_weight_bytes(s->model), ro->threads);
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
	rc = -pthread_create(&s->eng_thr, NULL, serve_engine_main, s);
	if (rc == 0) {
		rc = -pthread_create(&s->io_thr, NULL, serve_io_main, s);
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
