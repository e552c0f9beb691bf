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
#include "mg_clock.h"
#include "mg_curve.h"
#include "mg_notify.h"
#include "mg_config.h"
#include "mg_log.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECTION "worker"

static const char usage_text[] =
	"usage: margin-worker serve [--config FILE] --scheduler tcp://HOST:PORT\n"
	"           (--model FILE.gguf | --arch PRESET) [--slots N] [--threads N]\n"
	"           [--ctx N] [--kv TYPE] [--weights TYPE]\n"
	"           [--pooling P] [--embed-truncatable yes|no]\n"
	"           [--name NAME] [--hardware PROFILE]\n"
	"           [--curve-secret FILE --curve-server FILE.pub | --no-curve]\n"
	"           [--fake] [--model-name NAME]\n"
	"\n"
	"Connects to margind and runs the shards it assigns on the engine.\n"
	"\n"
	"  --config FILE        INI file; keys of its [worker] section (below) are\n"
	"                       the defaults, flags override them\n"
	"  --scheduler URL      margind's worker endpoint            (scheduler)\n"
	"  --model FILE         a GGUF model                          (model)\n"
	"  --arch PRESET        a synthetic model preset, e.g. llama-110m (arch)\n"
	"  --model-name NAME    the name margind routes on: Assign.model must equal it\n"
	"                       (default: the preset, or the file name without\n"
	"                       directory and .gguf)                  (model_name)\n"
	"  --slots N            sequences in flight (default 8)       (slots)\n"
	"  --threads N          engine threads (default: all cores)   (threads)\n"
	"  --ctx N              KV cache per slot in tokens           (ctx)\n"
	"  --kv TYPE            KV cache type: f16 (default), q8_0 (0.53 of f16's\n"
	"                       bytes, slightly less exact) or f32  (kv_type)\n"
	"  --weights TYPE       matrices: auto (the file's quantized tensors stay as\n"
	"                       they are, the rest f32), f32, q8_0-panels, or a mix\n"
	"                       quantized at load (q8_0, q4_k_m, ...) (weights)\n"
	"  --pooling P          embeddings of a model whose GGUF names no pooling:\n"
	"                       mean (default), cls or last; a model that names one\n"
	"                       uses it (see docs/models.md)          (pooling)\n"
	"  --embed-truncatable yes|no  embedding requests may ask for fewer\n"
	"                       dimensions (default no)               (embed_truncatable)\n"
	"  --name NAME          worker name (default: host name)      (name)\n"
	"  --hardware PROFILE   hardware profile for the meter        (hardware)\n"
	"  --curve-secret FILE  this worker's secret key (NAME.key from marginctl keygen;\n"
	"                       also looked up in $CREDENTIALS_DIRECTORY) (curve_secret)\n"
	"  --curve-server FILE  margind's public key (NAME.pub)       (curve_server)\n"
	"  --no-curve           plain TCP, unencrypted and unauthenticated (curve = no)\n"
	"  --fake               no model work: answer every request at once with\n"
	"                       deterministic text (benchmarks, tests) (fake)\n"
	"  --fake-delay DUR     with --fake, hold the engine thread this long per\n"
	"                       shard (e.g. 500ms)                    (fake_delay)\n"
	"  --resend DUR         re-send an unacknowledged Result after (resend_interval, 5s)\n"
	"  --grace DUR          on SIGTERM, time to finish shards     (shutdown_grace, 30s)\n"
	"\n"
	"Config only: heartbeat (1s) and liveness (3) until margind's Welcome,\n"
	"reconnect_min (1s), reconnect_max (32s), queued_shards (1).\n"
	"Exit status: 0 after SIGTERM/SIGINT, 2 bad usage, 1 failure (model, keys,\n"
	"or margind refused the worker, e.g. a protocol version mismatch).\n";

static serve_t *g_serve;
static volatile sig_atomic_t g_signals;

static void on_signal(int sig)
{
	(void)sig;
	g_signals++;
	serve_stop(g_serve, g_signals > 1 ? SERVE_STOP_NOW : SERVE_STOP_GRACEFUL);
}

enum {
	OPT_CONFIG = 256, OPT_SCHEDULER, OPT_MODEL, OPT_ARCH, OPT_MODEL_NAME, OPT_SLOTS,
	OPT_THREADS, OPT_CTX, OPT_KV, OPT_WEIGHTS, OPT_POOLING, OPT_EMBED_TRUNC, OPT_NAME, OPT_HARDWARE,
	OPT_CURVE_SECRET, OPT_CURVE_SERVER,
	OPT_NO_CURVE, OPT_FAKE, OPT_FAKE_DELAY, OPT_RESEND, OPT_GRACE, OPT_HELP,
};

/* Flag -> config key: the flags are applied as config values so the file
 * and the command line go through one set of parsers. */
static const struct {
	int opt;
	const char *key;
} flag_keys[] = {
	{ OPT_SCHEDULER, "scheduler" }, { OPT_MODEL, "model" }, { OPT_ARCH, "arch" },
	{ OPT_MODEL_NAME, "model_name" }, { OPT_SLOTS, "slots" }, { OPT_THREADS, "threads" },
	{ OPT_CTX, "ctx" }, { OPT_KV, "kv_type" }, { OPT_WEIGHTS, "weights" },
	{ OPT_POOLING, "pooling" }, { OPT_EMBED_TRUNC, "embed_truncatable" },
	{ OPT_NAME, "name" }, { OPT_HARDWARE, "hardware" },
	{ OPT_CURVE_SECRET, "curve_secret" }, { OPT_CURVE_SERVER, "curve_server" },
	{ OPT_FAKE_DELAY, "fake_delay" }, { OPT_RESEND, "resend_interval" },
	{ OPT_GRACE, "shutdown_grace" },
};

static int get_int(const mg_config_t *c, const char *key, int lo, int hi, int *ret)
{
	char err[256];
	uint64_t v;
	int r = mg_config_get_u64(c, SECTION, key, &v, err, sizeof(err));
	if (r == -ENOENT)
		return 0;
	if (r < 0 || v < (uint64_t)lo || v > (uint64_t)hi) {
		if (r == 0)
			snprintf(err, sizeof(err), "[%s] %s = %llu (from %s) is out of range %d..%d",
				 SECTION, key, (unsigned long long)v, mg_config_origin(c, SECTION, key), lo, hi);
		fprintf(stderr, "margin-worker serve: %s\n", err);
		return -EINVAL;
	}
	*ret = (int)v;
	return 0;
}

static int get_dur(const mg_config_t *c, const char *key, int64_t *ret)
{
	char err[256];
	int r = mg_config_get_duration(c, SECTION, key, MG_NS_PER_S, ret, err, sizeof(err));
	if (r == -ENOENT)
		return 0;
	if (r < 0) {
		fprintf(stderr, "margin-worker serve: %s\n", err);
		return -EINVAL;
	}
	return 0;
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
	if (get_int(c, "slots", 1, 4096, &o->slots) < 0 || get_int(c, "threads", 0, 4096, &o->threads) < 0 ||
	    get_int(c, "ctx", 0, 1 << 24, &o->n_ctx) < 0 || get_int(c, "liveness", 1, 1000, &o->liveness) < 0 ||
	    get_int(c, "queued_shards", 0, 1000, &o->queued_shards) < 0 ||
	    get_dur(c, "heartbeat", &o->heartbeat_ns) < 0 || get_dur(c, "resend_interval", &o->resend_ns) < 0 ||
	    get_dur(c, "reconnect_min", &o->reconnect_min_ns) < 0 ||
	    get_dur(c, "reconnect_max", &o->reconnect_max_ns) < 0 ||
	    get_dur(c, "shutdown_grace", &o->grace_ns) < 0 || get_dur(c, "fake_delay", &o->fake_delay_ns) < 0)
		return 2;
	int r = mg_config_get_bool(c, SECTION, "fake", &o->fake, err, sizeof(err));
	if (r < 0 && r != -ENOENT) {
		fprintf(stderr, "margin-worker serve: %s\n", err);
		return 2;
	}
	r = mg_config_get_bool(c, SECTION, "embed_truncatable", &o->embed_truncatable, err, sizeof(err));
	if (r < 0 && r != -ENOENT) {
		fprintf(stderr, "margin-worker serve: %s\n", err);
		return 2;
	}
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

int cmd_serve(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, OPT_CONFIG },
		{ "scheduler", required_argument, NULL, OPT_SCHEDULER },
		{ "model", required_argument, NULL, OPT_MODEL },
		{ "arch", required_argument, NULL, OPT_ARCH },
		{ "model-name", required_argument, NULL, OPT_MODEL_NAME },
		{ "slots", required_argument, NULL, OPT_SLOTS },
		{ "threads", required_argument, NULL, OPT_THREADS },
		{ "ctx", required_argument, NULL, OPT_CTX },
		{ "kv", required_argument, NULL, OPT_KV },
		{ "weights", required_argument, NULL, OPT_WEIGHTS },
		{ "pooling", required_argument, NULL, OPT_POOLING },
		{ "embed-truncatable", required_argument, NULL, OPT_EMBED_TRUNC },
		{ "name", required_argument, NULL, OPT_NAME },
		{ "hardware", required_argument, NULL, OPT_HARDWARE },
		{ "curve-secret", required_argument, NULL, OPT_CURVE_SECRET },
		{ "curve-server", required_argument, NULL, OPT_CURVE_SERVER },
		{ "no-curve", no_argument, NULL, OPT_NO_CURVE },
		{ "fake", no_argument, NULL, OPT_FAKE },
		{ "fake-delay", required_argument, NULL, OPT_FAKE_DELAY },
		{ "resend", required_argument, NULL, OPT_RESEND },
		{ "grace", required_argument, NULL, OPT_GRACE },
		{ "help", no_argument, NULL, OPT_HELP },
		{ NULL, 0, NULL, 0 },
	};
	int status = 1;
	char err[512] = "";
	const char *config = NULL;
	mg_config_t *cfg = NULL, *flags = NULL;
	serve_t *s = NULL;
	bool no_curve = false, curve_keys = false, fake = false, model = false, arch = false;

	/* Flags first go to their own table, applied over the file below. */
	flags = mg_config_new();
	cfg = mg_config_new();
	if (flags == NULL || cfg == NULL) {
		fprintf(stderr, "margin-worker serve: out of memory\n");
		goto out;
	}
	optind = 0;	/* glibc: a full reset, cmd_serve may run more than once */
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_HELP:
			fputs(usage_text, stdout);
			status = 0;
			goto out;
		case OPT_CONFIG: config = optarg; continue;
		case OPT_NO_CURVE: no_curve = true; continue;
		case OPT_FAKE: fake = true; continue;
		case ':':
			fprintf(stderr, "margin-worker serve: %s needs a value\n", argv[optind - 1]);
			status = 2;
			goto out;
		case '?':
			fprintf(stderr, "margin-worker serve: unknown option '%s'\n", argv[optind - 1]);
			fputs(usage_text, stderr);
			status = 2;
			goto out;
		default:
			break;
		}
		model |= c == OPT_MODEL;
		arch |= c == OPT_ARCH;
		curve_keys |= c == OPT_CURVE_SECRET || c == OPT_CURVE_SERVER;
		for (size_t i = 0; i < sizeof(flag_keys) / sizeof(flag_keys[0]); i++)
			if (flag_keys[i].opt == c && mg_config_set(flags, SECTION, flag_keys[i].key, optarg) < 0) {
				fprintf(stderr, "margin-worker serve: out of memory\n");
				goto out;
			}
	}
	if (optind < argc) {
		fprintf(stderr, "margin-worker serve: unexpected argument '%s'\n", argv[optind]);
		status = 2;
		goto out;
	}
	if (model && arch) {
		fprintf(stderr, "margin-worker serve: --model and --arch exclude each other\n");
		status = 2;
		goto out;
	}
	if (no_curve && curve_keys) {
		fprintf(stderr, "margin-worker serve: --no-curve and --curve-secret/--curve-server exclude each other\n");
		status = 2;
		goto out;
	}

	if (config != NULL) {
		int r = mg_config_load(cfg, config, err, sizeof(err));
		if (r < 0) {
			if (r == -EINVAL)
				fprintf(stderr, "margin-worker serve: %s\n", err);
			else
				fprintf(stderr, "margin-worker serve: cannot read config %s: %s\n", config, strerror(-r));
			status = r == -EINVAL ? 2 : 1;
			goto out;
		}
	}
	/* A model flag replaces whichever model the file named. */
	if ((model && mg_config_set(cfg, SECTION, "arch", "") < 0) ||
	    (arch && mg_config_set(cfg, SECTION, "model", "") < 0) ||
	    (no_curve && mg_config_set(cfg, SECTION, "curve", "no") < 0) ||
	    (curve_keys && mg_config_set(cfg, SECTION, "curve", "yes") < 0) ||
	    (fake && mg_config_set(cfg, SECTION, "fake", "yes") < 0)) {
		fprintf(stderr, "margin-worker serve: out of memory\n");
		goto out;
	}
	for (size_t i = 0; i < sizeof(flag_keys) / sizeof(flag_keys[0]); i++) {
		const char *v = mg_config_get(flags, SECTION, flag_keys[i].key);
		if (v && mg_config_set(cfg, SECTION, flag_keys[i].key, v) < 0) {
			fprintf(stderr, "margin-worker serve: out of memory\n");
			goto out;
		}
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
	mg_config_destroy(&flags);
	mg_config_destroy(&cfg);
	return status;
}
