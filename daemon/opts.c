/* opts: see opts.h. */
#include "opts.h"
#include "journal.h"
#include "mg_clock.h"
#include "mg_log.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void opts_usage(FILE *f)
{
	fprintf(f,
		"usage: margind [--config FILE] --state-dir DIR --http HOST:PORT --workers tcp://HOST:PORT\n"
		"               [--api-keys FILE] [--curve-secret FILE --curve-allow DIR | --no-curve]\n"
		"\n"
		"  --config FILE         INI settings; the flags below override them\n"
		"  --state-dir DIR       journal (margin.db), lock and control socket (ctl.sock)\n"
		"  --http HOST:PORT      where the HTTP API listens\n"
		"  --workers ENDPOINT    ZeroMQ endpoint workers connect to, e.g. tcp://0.0.0.0:5555\n"
		"  --api-keys FILE       HTTP API keys, one per line\n"
		"  --curve-secret FILE   the daemon's CURVE secret key (Z85, from marginctl keygen)\n"
		"  --curve-allow DIR     directory of allowed worker public keys (*.pub)\n"
		"  --no-curve            plain TCP to workers (no encryption, no authentication)\n"
		"  --log-level LEVEL     error, warn, info (default) or debug\n"
		"  --log-file FILE       append logs to FILE instead of stderr (reopened on SIGHUP)\n"
		"  --set SECTION.KEY=VALUE  any config key, e.g. --set scheduler.heartbeat=500ms\n"
		"  --help, --version\n");
}

enum {
	OPT_CONFIG = 256, OPT_STATE_DIR, OPT_HTTP, OPT_WORKERS, OPT_API_KEYS, OPT_CURVE_SECRET,
	OPT_CURVE_ALLOW, OPT_NO_CURVE, OPT_LOG_LEVEL, OPT_LOG_FILE, OPT_SET, OPT_HELP, OPT_VERSION,
};

static const struct option long_opts[] = {
	{ "config", required_argument, NULL, OPT_CONFIG },
	{ "state-dir", required_argument, NULL, OPT_STATE_DIR },
	{ "http", required_argument, NULL, OPT_HTTP },
	{ "workers", required_argument, NULL, OPT_WORKERS },
	{ "api-keys", required_argument, NULL, OPT_API_KEYS },
	{ "curve-secret", required_argument, NULL, OPT_CURVE_SECRET },
	{ "curve-allow", required_argument, NULL, OPT_CURVE_ALLOW },
	{ "no-curve", no_argument, NULL, OPT_NO_CURVE },
	{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
	{ "log-file", required_argument, NULL, OPT_LOG_FILE },
	{ "set", required_argument, NULL, OPT_SET },
	{ "help", no_argument, NULL, OPT_HELP },
	{ "version", no_argument, NULL, OPT_VERSION },
	{ NULL, 0, NULL, 0 },
};

/* Flags that are plain config keys. */
static const struct {
	int opt;
	const char *section, *key;
} flag_keys[] = {
	{ OPT_STATE_DIR, "scheduler", "state_dir" },
	{ OPT_WORKERS, "scheduler", "workers" },
	{ OPT_HTTP, "http", "listen" },
	{ OPT_API_KEYS, "http", "api_keys" },
	{ OPT_CURVE_SECRET, "curve", "secret" },
	{ OPT_CURVE_ALLOW, "curve", "allow" },
	{ OPT_LOG_LEVEL, "log", "level" },
	{ OPT_LOG_FILE, "log", "file" },
};

static int set_kv(mg_config_t *cfg, const char *arg, char *err, size_t errlen)
{
	const char *dot = strchr(arg, '.'), *eq = strchr(arg, '=');
	if (dot == NULL || eq == NULL || dot > eq || dot == arg || eq == dot + 1) {
		snprintf(err, errlen, "--set %s: expected SECTION.KEY=VALUE", arg);
		return -EINVAL;
	}
	char section[128], key[128];
	snprintf(section, sizeof(section), "%.*s", (int)(dot - arg), arg);
	snprintf(key, sizeof(key), "%.*s", (int)(eq - dot - 1), dot + 1);
	return mg_config_set(cfg, section, key, eq + 1);
}

/* Typed getters that keep the default when the key is absent. */
static int get_u32(const mg_config_t *cfg, const char *key, uint32_t lo, uint32_t hi,
		   uint32_t *v, char *err, size_t errlen)
{
	uint64_t x;
	int r = mg_config_get_u64(cfg, "scheduler", key, &x, err, errlen);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	if (x < lo || x > hi) {
		snprintf(err, errlen, "%s: [scheduler] %s = %llu: expected %u to %u",
			 mg_config_origin(cfg, "scheduler", key), key, (unsigned long long)x, lo, hi);
		return -EINVAL;
	}
	*v = (uint32_t)x;
	return 0;
}

static int get_dur(const mg_config_t *cfg, const char *key, int64_t *v, char *err, size_t errlen)
{
	int r = mg_config_get_duration(cfg, "scheduler", key, MG_NS_PER_S, v, err, errlen);
	return r == -ENOENT ? 0 : r;
}

static int finish(opts_t *o, char *err, size_t errlen)
{
	mg_config_t *cfg = o->cfg;
	int r;
	o->state_dir = mg_config_get(cfg, "scheduler", "state_dir");
	o->workers = mg_config_get(cfg, "scheduler", "workers");
	o->http = mg_config_get(cfg, "http", "listen");
	o->api_keys = mg_config_get(cfg, "http", "api_keys");
	o->log_file = mg_config_get(cfg, "log", "file");
	if (o->log_file != NULL && *o->log_file == '\0')
		o->log_file = NULL;
	o->curve_allow = mg_config_get(cfg, "curve", "allow");
	if (o->state_dir == NULL || *o->state_dir == '\0') {
		snprintf(err, errlen, "missing --state-dir (or [scheduler] state_dir)");
		return -EINVAL;
	}
	if (o->state_dir[0] != '/') {
		char cwd[4096];
		if (getcwd(cwd, sizeof(cwd)) == NULL) {
			snprintf(err, errlen, "--state-dir %s: cannot resolve a relative path: %s",
				 o->state_dir, strerror(errno));
			return -errno;
		}
		int w = snprintf(o->state_dir_abs, sizeof(o->state_dir_abs), "%s/%s", cwd, o->state_dir);
		if (w < 0 || (size_t)w >= sizeof(o->state_dir_abs)) {
			snprintf(err, errlen, "--state-dir %s: path too long", o->state_dir);
			return -ENAMETOOLONG;
		}
		o->state_dir = o->state_dir_abs;
	}
	if (o->workers == NULL || *o->workers == '\0') {
		snprintf(err, errlen, "missing --workers (or [scheduler] workers), e.g. tcp://0.0.0.0:5555");
		return -EINVAL;
	}
	const char *lvl = mg_config_get(cfg, "log", "level");
	o->log_level = MG_LOG_INFO;
	if (lvl != NULL) {
		o->log_level = mg_log_level_parse(lvl);
		if (o->log_level < 0) {
			snprintf(err, errlen, "log level \"%s\": expected error, warn, info or debug", lvl);
			return -EINVAL;
		}
	}
	r = mg_config_get_bool(cfg, "curve", "enabled", &o->curve, err, errlen);
	if (r == -ENOENT)
		o->curve = true;
	else if (r < 0)
		return r;
	const char *secret = mg_config_get(cfg, "curve", "secret");
	if (o->curve) {
		if (secret == NULL || *secret == '\0' || o->curve_allow == NULL || *o->curve_allow == '\0') {
			snprintf(err, errlen, "CURVE needs --curve-secret FILE and --curve-allow DIR (or --no-curve for plain TCP)");
			return -EINVAL;
		}
		snprintf(o->curve_secret, sizeof(o->curve_secret), "%s", secret);	/* mg_curve_key_load finds it */
	}

	sched_params_t *p = &o->sched;
	sched_params_default(p);
	if ((r = get_dur(cfg, "heartbeat", &p->heartbeat_ns, err, errlen)) < 0 ||
	    (r = get_u32(cfg, "liveness", 1, 1000, &p->liveness, err, errlen)) < 0 ||
	    (r = get_u32(cfg, "shard_requests", 1, 100000, &p->shard_max_requests, err, errlen)) < 0 ||
	    (r = get_u32(cfg, "max_attempts", 1, 1000, &p->max_attempts, err, errlen)) < 0 ||
	    (r = get_u32(cfg, "default_max_tokens", 1, 1u << 24, &p->default_max_tokens, err, errlen)) < 0 ||
	    (r = get_u32(cfg, "max_tokens_cap", 1, 1u << 30, &p->max_tokens_cap, err, errlen)) < 0 ||
	    (r = get_dur(cfg, "cancel_grace", &p->cancel_grace_ns, err, errlen)) < 0 ||
	    (r = get_dur(cfg, "shard_timeout", &p->shard_timeout_ns, err, errlen)) < 0 ||
	    (r = get_u32(cfg, "ingest_chunk", 1, 1u << 20, &p->ingest_chunk, err, errlen)) < 0 ||
	    (r = get_u32(cfg, "inline_max", 1, 1u << 20, &p->inline_max, err, errlen)) < 0 ||
	    (r = get_u32(cfg, "max_credit", 1, 1u << 20, &p->max_credit, err, errlen)) < 0)
		return r;
	if (p->heartbeat_ns < MG_NS_PER_MS) {
		snprintf(err, errlen, "[scheduler] heartbeat: expected at least 1ms");
		return -EINVAL;
	}
	uint64_t tokens;
	r = mg_config_get_u64(cfg, "scheduler", "shard_tokens", &tokens, err, errlen);
	if (r == 0)
		p->shard_max_tokens = tokens ? tokens : 1;
	else if (r != -ENOENT)
		return r;
	o->drain_timeout_ns = 30 * MG_NS_PER_S;
	if ((r = get_dur(cfg, "drain_timeout", &o->drain_timeout_ns, err, errlen)) < 0)
		return r;
	o->max_frame = MG_WIRE_MAX_FRAME;
	r = mg_config_get_u64(cfg, "scheduler", "max_frame", &o->max_frame, err, errlen);
	if (r < 0 && r != -ENOENT)
		return r;
	if (o->max_frame < 1024 || o->max_frame > MG_WIRE_MAX_FRAME) {
		snprintf(err, errlen, "[scheduler] max_frame = %llu: expected 1024 to %u bytes",
			 (unsigned long long)o->max_frame, MG_WIRE_MAX_FRAME);
		return -EINVAL;
	}
	/* [journal]: how long finished batches are kept (retain.h). */
	int64_t retention_ns = OPTS_RETENTION_DEFAULT_S * MG_NS_PER_S;
	r = mg_config_get_duration(cfg, "journal", "retention", MG_NS_PER_S, &retention_ns, err, errlen);
	if (r < 0 && r != -ENOENT)
		return r;
	if (retention_ns != 0 && retention_ns < MG_NS_PER_S) {
		snprintf(err, errlen, "%s: [journal] retention: expected 0 (keep forever) or at least 1s, e.g. 30d",
			 mg_config_origin(cfg, "journal", "retention"));
		return -EINVAL;
	}
	o->retention_s = retention_ns / MG_NS_PER_S;
	o->min_free = OPTS_MIN_FREE_DEFAULT;
	r = mg_config_get_u64(cfg, "journal", "min_free", &o->min_free, err, errlen);
	if (r < 0 && r != -ENOENT)
		return r;

	const char *sync = mg_config_get(cfg, "scheduler", "journal_sync");
	o->journal_sync = JOURNAL_SYNC_NORMAL;
	if (sync != NULL && strcmp(sync, "full") == 0)
		o->journal_sync = JOURNAL_SYNC_FULL;
	else if (sync != NULL && strcmp(sync, "normal") != 0) {
		snprintf(err, errlen, "[scheduler] journal_sync = %s: expected normal or full", sync);
		return -EINVAL;
	}
	return 0;
}

int opts_parse(opts_t *o, int argc, char **argv, char *err, size_t errlen)
{
	memset(o, 0, sizeof(*o));
	o->cfg = mg_config_new();
	if (o->cfg == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	/* First pass: --help, --version and --config (the file goes first so
	 * that every flag overrides it, wherever it stands). */
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			opts_usage(stdout);
			return 1;
		}
		if (strcmp(argv[i], "--version") == 0) {
			printf("margind %s\n", MARGIN_VERSION);
			return 1;
		}
	}
	int c, r;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":", long_opts, NULL)) != -1) {
		if (c == OPT_CONFIG) {
			r = mg_config_load(o->cfg, optarg, err, errlen);
			if (r < 0)
				return r == -EINVAL ? -EINVAL : r;
		} else if (c == '?') {
			snprintf(err, errlen, "unknown option %s", argv[optind - 1]);
			return -EINVAL;
		} else if (c == ':') {
			snprintf(err, errlen, "option %s needs a value", argv[optind - 1]);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		snprintf(err, errlen, "unexpected argument \"%s\"", argv[optind]);
		return -EINVAL;
	}
	bool no_curve = false, curve_flag = false;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":", long_opts, NULL)) != -1) {
		r = 0;
		if (c == OPT_CURVE_SECRET || c == OPT_CURVE_ALLOW)
			curve_flag = true;
		if (c == OPT_NO_CURVE) {
			no_curve = true;
			r = mg_config_set(o->cfg, "curve", "enabled", "no");
		} else if (c == OPT_SET)
			r = set_kv(o->cfg, optarg, err, errlen);
		else
			for (size_t i = 0; i < sizeof(flag_keys) / sizeof(flag_keys[0]); i++)
				if (flag_keys[i].opt == c)
					r = mg_config_set(o->cfg, flag_keys[i].section, flag_keys[i].key, optarg);
		if (r == -ENOMEM)
			snprintf(err, errlen, "out of memory");
		if (r < 0)
			return r;
	}
	if (no_curve && curve_flag) {
		snprintf(err, errlen, "--no-curve excludes --curve-secret and --curve-allow");
		return -EINVAL;
	}
	return finish(o, err, errlen);
}

void opts_done(opts_t *o)
{
	if (o == NULL)
		return;
	mg_config_destroy(&o->cfg);
	memset(o, 0, sizeof(*o));
}
