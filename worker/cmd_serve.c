/* margin-worker serve: connect to margind and run shards (see serve.h).
 *
 * Settings come from the [worker] section of the INI file given with
 * --config; flags override it. SIGTERM/SIGINT: finish in-flight shards
 * within the grace period, Bye, exit 0; a second signal stops at once. */
#include "cmds.h"
#include "engine.h"
#include "model.h"
#include "serve.h"

#include "margin_config.h"
#include "lib/mg_clock.h"
#include "lib/mg_curve.h"
#include "lib/mg_notify.h"
#include "lib/mg_config.h"
#include "lib/mg_log.h"
#include "lib/mg_settings.h"

#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECTION "worker"

#define S(field) MG_SETTING_AT(serve_opts_t, field)

/* margin-worker serve's settings: the [worker] keys and their flags.
 * Defaults equal serve_opts_init()'s. */
static const mg_setting_t settings[] = {
	{ .flag = "scheduler", .section = SECTION, .key = "scheduler", .arg = "URL",
	  .help = "margind's worker endpoint", S(scheduler) },
	{ .flag = "model", .section = SECTION, .key = "model", .arg = "FILE", .excludes = "arch",
	  .help = "a GGUF model", S(model_path) },
	{ .flag = "arch", .section = SECTION, .key = "arch", .arg = "PRESET",
	  .help = "a synthetic model preset, e.g. llama-110m", S(arch) },
	{ .flag = "model-name", .section = SECTION, .key = "model_name", .arg = "NAME",
	  .help = "the name margind routes on: Assign.model must equal it\n"
		  "(default: the preset, or the file name without\n"
		  "directory and .gguf)", S(model_name) },
	{ .flag = "slots", .section = SECTION, .key = "slots", .type = MG_SETTING_INT, .lo = 1, .hi = 4096,
	  .def = "8", .arg = "N", .help = "sequences in flight", S(slots) },
	{ .flag = "threads", .section = SECTION, .key = "threads", .type = MG_SETTING_INT, .lo = 0, .hi = 4096,
	  .def = "0", .arg = "N", .help = "engine threads (0: all cores)", S(threads) },
	{ .flag = "ctx", .section = SECTION, .key = "ctx", .type = MG_SETTING_INT, .lo = 0, .hi = 1 << 24,
	  .def = "0", .arg = "N", .help = "KV cache per slot in tokens (0: the engine's default)", S(n_ctx) },
	{ .flag = "kv", .section = SECTION, .key = "kv_type", .arg = "TYPE",
	  .help = "KV cache type: f16 (default), q8_0 (0.53 of f16's\n"
		  "bytes, slightly less exact) or f32", S(kv_type) },
	{ .flag = "weights", .section = SECTION, .key = "weights", .arg = "TYPE",
	  .help = "matrices: auto (the file's quantized tensors stay as\n"
		  "they are, the rest f32), f32, q8_0-panels, or a mix\n"
		  "quantized at load (q8_0, q4_k_m, ...)", S(weights) },
	{ .flag = "arith", .section = SECTION, .key = "arith", .arg = "ORDER",
	  .help = "quantized kernels' float order: llama (default: llama.cpp's\n"
		  "logits bit for bit) or fast (Q5_0, Q8_0, IQ4_NL, Q4_K, Q5_K,\n"
		  "Q6_K blocks summed whole: other bits, faster at batch 8+); every worker\n"
		  "of a model should use the same", S(arith) },
	{ .flag = "pooling", .section = SECTION, .key = "pooling", .arg = "P",
	  .help = "embeddings of a model whose GGUF names no pooling:\n"
		  "mean (default), cls or last; a model that names one\n"
		  "uses it (see docs/models.md)", S(pooling) },
	{ .flag = "embed-truncatable", .section = SECTION, .key = "embed_truncatable",
	  .type = MG_SETTING_BOOL, .def = "no", .arg = "yes|no",
	  .help = "embedding requests may ask for fewer dimensions", S(embed_truncatable) },
	{ .flag = "name", .section = SECTION, .key = "name", .arg = "NAME",
	  .help = "worker name (default: host name)", S(name) },
	{ .flag = "hardware", .section = SECTION, .key = "hardware", .arg = "PROFILE",
	  .help = "hardware profile for the meter", S(hardware) },
	{ .flag = "curve-secret", .section = SECTION, .key = "curve_secret", .arg = "FILE",
	  .help = "this worker's secret key (NAME.key from marginctl keygen;\n"
		  "also looked up in $CREDENTIALS_DIRECTORY)" },
	{ .flag = "curve-server", .section = SECTION, .key = "curve_server", .arg = "FILE",
	  .help = "margind's public key (NAME.pub)" },
	{ .flag = "no-curve", .section = SECTION, .key = "curve", .type = MG_SETTING_BOOL, .set = "no",
	  .excludes = "curve-secret,curve-server",
	  .help = "plain TCP, unencrypted and unauthenticated\n"
		  "(curve = yes when keys are given; never off by omission)" },
	{ .flag = "fake", .section = SECTION, .key = "fake", .type = MG_SETTING_BOOL, .set = "yes",
	  .help = "no model work: answer every request at once with\n"
		  "deterministic text (benchmarks, tests)", S(fake) },
	{ .flag = "fake-delay", .section = SECTION, .key = "fake_delay", .type = MG_SETTING_DURATION,
	  .def = "0", .arg = "DUR", .help = "with --fake, hold the engine thread this long per\n"
					    "shard (e.g. 500ms)", S(fake_delay_ns) },
	{ .flag = "resend", .section = SECTION, .key = "resend_interval", .type = MG_SETTING_DURATION,
	  .def = "5s", .arg = "DUR", .help = "re-send an unacknowledged Result after", S(resend_ns) },
	{ .flag = "grace", .section = SECTION, .key = "shutdown_grace", .type = MG_SETTING_DURATION,
	  .def = "30s", .arg = "DUR", .help = "on SIGTERM, time to finish shards", S(grace_ns) },
	{ .section = SECTION, .key = "heartbeat", .type = MG_SETTING_DURATION, .def = "1s",
	  .help = "until margind's Welcome", S(heartbeat_ns) },
	{ .section = SECTION, .key = "liveness", .type = MG_SETTING_INT, .lo = 1, .hi = 1000, .def = "3",
	  .help = "until margind's Welcome", S(liveness) },
	{ .section = SECTION, .key = "reconnect_min", .type = MG_SETTING_DURATION, .def = "1s",
	  .help = "back-off after a lost connection,", S(reconnect_min_ns) },
	{ .section = SECTION, .key = "reconnect_max", .type = MG_SETTING_DURATION, .def = "32s",
	  .help = "doubling up to this", S(reconnect_max_ns) },
	{ .section = SECTION, .key = "queued_shards", .type = MG_SETTING_INT, .lo = 0, .hi = 1000, .def = "1",
	  .help = "credit beyond filling the slots", S(queued_shards) },
};

static const mg_settings_spec_t spec = {
	.prog = "margin-worker serve",
	.synopsis = "[--config FILE] --scheduler tcp://HOST:PORT\n"
		    "           (--model FILE.gguf | --arch PRESET) [--slots N] [--threads N]\n"
		    "           [--ctx N] [--kv TYPE] [--weights TYPE] [--arith ORDER]\n"
		    "           [--pooling P] [--embed-truncatable yes|no]\n"
		    "           [--name NAME] [--hardware PROFILE]\n"
		    "           [--curve-secret FILE --curve-server FILE.pub | --no-curve]\n"
		    "           [--fake] [--model-name NAME]\n",
	.intro = "Connects to margind and runs the shards it assigns on the engine.\n"
		 "Keys of the [worker] section of the --config file are the defaults;\n"
		 "flags override them.\n",
	.epilog = "Exit status: 0 after SIGTERM/SIGINT, 2 bad usage, 1 failure (model, keys,\n"
		  "or margind refused the worker, e.g. a protocol version mismatch).\n",
	.settings = settings,
	.n = sizeof(settings) / sizeof(settings[0]),
};

static serve_t *g_serve;
static volatile sig_atomic_t g_signals;

static void on_signal(int sig)
{
	(void)sig;
	g_signals++;
	serve_stop(g_serve, g_signals > 1 ? SERVE_STOP_NOW : SERVE_STOP_GRACEFUL);
}

static const char *get_str(const mg_config_t *c, const char *key)
{
	const char *v = mg_config_get(c, SECTION, key);
	return v && *v ? v : NULL;
}

/* Reads the [worker] settings into o (strings borrowed from c). 0, or 2
 * (bad usage) / 1 (failure) with the reason printed. */
static int opts_from_config(const mg_config_t *c, serve_opts_t *o)
{
	char err[256];
	serve_opts_init(o);
	if (mg_settings_apply(&spec, c, o, err, sizeof(err)) < 0) {
		fprintf(stderr, "margin-worker serve: %s\n", err);
		return 2;
	}
	/* an empty value is no value: a model flag clears the other key */
	o->scheduler = get_str(c, "scheduler");
	o->model_path = get_str(c, "model");
	o->arch = get_str(c, "arch");
	o->model_name = get_str(c, "model_name");
	o->name = get_str(c, "name");
	o->hardware = get_str(c, "hardware");
	o->kv_type = get_str(c, "kv_type");
	o->weights = get_str(c, "weights");
	model_weights_t wt;
	if (o->weights != NULL && model_weights_parse(o->weights, &wt) < 0) {
		fprintf(stderr, "margin-worker serve: [%s] weights = %s (from %s): not auto, f32, q8_0-panels "
			"or a quantized mix (q8_0, q4_k_m, ...)\n", SECTION,
			o->weights, mg_config_origin(c, SECTION, "weights"));
		return 2;
	}
	o->arith = get_str(c, "arith");
	model_arith_t ar;
	if (o->arith != NULL && model_arith_parse(o->arith, &ar) < 0) {
		fprintf(stderr, "margin-worker serve: [%s] arith = %s (from %s): not llama or fast\n", SECTION,
			o->arith, mg_config_origin(c, SECTION, "arith"));
		return 2;
	}
	o->pooling = get_str(c, "pooling");
	if (o->pooling != NULL && engine_pooling_parse(o->pooling) < 0) {
		fprintf(stderr, "margin-worker serve: [%s] pooling = %s (from %s): not a pooling (mean, cls "
			"or last)\n", SECTION, o->pooling, mg_config_origin(c, SECTION, "pooling"));
		return 2;
	}
	model_kv_type_t kvt;
	if (o->kv_type != NULL && model_kv_type_parse(o->kv_type, &kvt) < 0) {
		fprintf(stderr, "margin-worker serve: [%s] kv_type = %s (from %s): not a KV cache type "
			"(f32, f16 or q8_0)\n", SECTION, o->kv_type, mg_config_origin(c, SECTION, "kv_type"));
		return 2;
	}
	int r;
	if (o->scheduler == NULL) {
		fprintf(stderr, "margin-worker serve: no scheduler: give --scheduler tcp://HOST:PORT "
			"(or scheduler = in the [worker] section)\n");
		return 2;
	}
	if ((o->model_path == NULL) == (o->arch == NULL)) {
		fprintf(stderr, "margin-worker serve: give exactly one of --model FILE.gguf and --arch PRESET\n");
		return 2;
	}

	/* CURVE: on when asked for (curve = yes, or keys given), off only when
	 * explicitly refused; never off by omission. */
	const char *sec = get_str(c, "curve_secret"), *srv = get_str(c, "curve_server");
	bool curve = sec || srv;
	r = mg_config_get_bool(c, SECTION, "curve", &curve, err, sizeof(err));
	if (r < 0 && r != -ENOENT) {
		fprintf(stderr, "margin-worker serve: %s\n", err);
		return 2;
	}
	if (r == -ENOENT && !curve) {
		fprintf(stderr, "margin-worker serve: no CURVE keys: give --curve-secret FILE.key "
			"--curve-server SERVER.pub (see marginctl keygen), or --no-curve to talk to "
			"margind in plain text\n");
		return 2;
	}
	o->curve = curve;
	if (!curve) {
		mg_log(MG_LOG_WARN, "serve", "CURVE is off: traffic to the scheduler is neither encrypted nor authenticated scheduler=%s",
		       o->scheduler);
		return 0;
	}
	if (sec == NULL || srv == NULL) {
		fprintf(stderr, "margin-worker serve: CURVE needs both --curve-secret FILE.key and --curve-server FILE.pub\n");
		return 2;
	}
	if (mg_curve_key_load(sec, o->curve_secret, NULL, err, sizeof(err)) < 0 ||
	    mg_curve_key_load(srv, o->curve_server, NULL, err, sizeof(err)) < 0) {
		fprintf(stderr, "margin-worker serve: %s\n", err);
		return 1;
	}
	return 0;
}

/* The file, then the flags over it (mg_settings), then what the flags
 * imply: a model flag replaces whichever model the file named, and keys
 * on the command line turn CURVE on. 0, or the exit status with the
 * reason printed; -1 after --help. */
static int parse_args(int argc, char **argv, mg_config_t *cfg)
{
	char err[512] = "";
	int r = mg_settings_parse(&spec, cfg, argc, argv, err, sizeof(err));
	if (r == 1)
		return -1;
	if (r < 0) {
		fprintf(stderr, "margin-worker serve: %s\n", err);
		if (r == -EINVAL)
			fprintf(stderr, "margin-worker serve --help for the options\n");
		return r == -EINVAL ? 2 : 1;
	}
	bool model = mg_settings_from_flag(&spec, cfg, SECTION, "model");
	bool arch = mg_settings_from_flag(&spec, cfg, SECTION, "arch");
	bool keys = mg_settings_from_flag(&spec, cfg, SECTION, "curve_secret") ||
		    mg_settings_from_flag(&spec, cfg, SECTION, "curve_server");
	if ((model && mg_config_set(cfg, SECTION, "arch", "") < 0) ||
	    (arch && mg_config_set(cfg, SECTION, "model", "") < 0) ||
	    (keys && mg_config_set(cfg, SECTION, "curve", "yes") < 0)) {
		fprintf(stderr, "margin-worker serve: out of memory\n");
		return 1;
	}
	return 0;
}

int cmd_serve(int argc, char **argv)
{
	int status = 1;
	char err[512] = "";
	mg_config_t *cfg = mg_config_new();
	serve_t *s = NULL;

	if (cfg == NULL) {
		fprintf(stderr, "margin-worker serve: out of memory\n");
		goto out;
	}
	status = parse_args(argc, argv, cfg);
	if (status != 0) {
		status = status < 0 ? 0 : status;
		goto out;
	}
	serve_opts_t o;
	status = opts_from_config(cfg, &o);
	if (status != 0)
		goto out;
	int r = serve_new(&o, &s, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "margin-worker serve: %s\n", err);
		status = r == -EINVAL ? 2 : 1;
		goto out;
	}

	g_serve = s;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	r = serve_start(s);
	if (r < 0) {
		fprintf(stderr, "margin-worker serve: cannot start threads: %s\n", strerror(-r));
		status = 1;
		goto out;
	}
	mg_log(MG_LOG_INFO, "serve", "serving scheduler=%s model=%s slots=%d fake=%s",
	       o.scheduler, serve_model_name(s), o.slots, o.fake ? "yes" : "no");
	mg_notify_sendf("READY=1\nSTATUS=serving %s for %s", serve_model_name(s), o.scheduler);
	r = serve_wait(s, err, sizeof(err));
	serve_stats_t st;
	serve_get_stats(s, &st);
	mg_log(MG_LOG_INFO, "serve", "stopped shards=%llu results_sent=%llu acks=%llu connects=%llu dropped_frames=%llu",
	       (unsigned long long)st.shards_done, (unsigned long long)st.results_sent,
	       (unsigned long long)st.acks, (unsigned long long)st.connects,
	       (unsigned long long)st.dropped_frames);
	if (r < 0) {
		fprintf(stderr, "margin-worker serve: %s\n", err);
		status = 1;
	} else {
		status = 0;
	}
out:
	/* the handlers would touch a freed serve_t */
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	g_serve = NULL;
	serve_destroy(&s);
	mg_config_destroy(&cfg);
	return status;
}
