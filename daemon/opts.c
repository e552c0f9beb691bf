/* opts: see opts.h. */
#include "opts.h"
#include "journal.h"
#include "lib/mg_clock.h"
#include "lib/mg_log.h"
#include "lib/mg_settings.h"
#include "lib/mg_wire.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MS (MG_NS_PER_MS)
#define S(field) MG_SETTING_AT(opts_t, field)

static const char *const journal_syncs[] = { "normal", "full", NULL };

/* margind's settings: every flag, every key of the file. Defaults equal
 * sched_params_default()'s. */
static const mg_setting_t settings[] = {
	{ .flag = "state-dir", .section = "scheduler", .key = "state_dir", .arg = "DIR",
	  .help = "journal (margin.db), lock and control socket (ctl.sock)", S(state_dir) },
	{ .flag = "http", .section = "http", .key = "listen", .arg = "HOST:PORT",
	  .help = "where the HTTP API listens", S(http) },
	{ .flag = "workers", .section = "scheduler", .key = "workers", .arg = "ENDPOINT",
	  .help = "ZeroMQ endpoint workers connect to, e.g. tcp://0.0.0.0:5555", S(workers) },
	{ .flag = "api-keys", .section = "http", .key = "api_keys", .arg = "FILE",
	  .help = "HTTP API keys, one per line", S(api_keys) },
	{ .flag = "curve-secret", .section = "curve", .key = "secret", .arg = "FILE",
	  .help = "the daemon's CURVE secret key (Z85, from marginctl keygen;\n"
		  "a relative name is looked up in $CREDENTIALS_DIRECTORY)" },
	{ .flag = "curve-allow", .section = "curve", .key = "allow", .arg = "DIR",
	  .help = "directory of allowed worker public keys (*.pub)", S(curve_allow) },
	{ .flag = "no-curve", .section = "curve", .key = "enabled", .type = MG_SETTING_BOOL, .def = "yes",
	  .set = "no", .excludes = "curve-secret,curve-allow",
	  .help = "plain TCP to workers (no encryption, no authentication)", S(curve) },
	{ .flag = "log-level", .section = "log", .key = "level", .arg = "LEVEL",
	  .help = "error, warn, info (default) or debug" },
	{ .flag = "log-file", .section = "log", .key = "file", .arg = "FILE",
	  .help = "append logs to FILE instead of stderr (reopened on SIGHUP)", S(log_file) },
	MG_SETTING_TITLE("metering ([meter] keys, docs/economics.md):"),
	{ .flag = "hardware", .section = "meter", .key = "hardware", .arg = "PROFILE|FILE",
	  .help = "price every worker with this hardware profile (default: the one\n"
		  "each worker announces, from [meter] hardware_dir; else cpu-2vcpu)" },
	{ .flag = "prices", .section = "meter", .key = "prices", .arg = "FILE", .flags = MG_SETTING_REPEAT,
	  .help = "closed-API price table, INI or LiteLLM .json (repeatable)" },
	{ .flag = "period", .section = "meter", .key = "period", .arg = "hour|day",
	  .help = "accounting window: its idle time is shared by the calls in it\n"
		  "(default hour, aligned to UTC)" },
	{ .section = "meter", .key = "hardware_dir", .help = "directory of hardware profiles" },
	{ .section = "meter", .key = "prices_dir", .help = "where bare --prices names are found" },
	{ .section = "meter", .key = "prices_date", .help = "the snapshot date recorded for a LiteLLM .json table" },
	{ .section = "meter", .key = "refs", .help = "reference models of cost reports (chat prices), A,B" },
	{ .section = "meter", .key = "embed_refs",
	  .help = "the embedding prices /v1/embeddings calls are compared with, A,B" },
	{ .section = "meter", .key = "currency", .help = "the currency of the price tables" },
	{ .section = "meter", .key = "sale_price",
	  .help = "P or IN/OUT per 1M tokens (the gross margin gauge)" },
	{ .section = "scheduler", .key = "heartbeat", .type = MG_SETTING_DURATION, .def = "1s",
	  .lo = MS, .hi = INT64_MAX, .help = "heartbeat period both ways", S(sched.heartbeat_ns) },
	{ .section = "scheduler", .key = "liveness", .type = MG_SETTING_INT, .def = "3", .lo = 1, .hi = 1000,
	  .help = "missed heartbeats before a worker is dead", S(sched.liveness) },
	{ .section = "scheduler", .key = "shard_requests", .type = MG_SETTING_INT, .def = "64",
	  .lo = 1, .hi = 100000, .help = "requests per shard", S(sched.shard_max_requests) },
	{ .section = "scheduler", .key = "shard_tokens", .type = MG_SETTING_SIZE, .def = "65536",
	  .help = "estimated tokens per shard (0: 1)", S(sched.shard_max_tokens) },
	{ .section = "scheduler", .key = "max_attempts", .type = MG_SETTING_INT, .def = "3", .lo = 1, .hi = 1000,
	  .help = "failed dispatches before a request fails", S(sched.max_attempts) },
	{ .section = "scheduler", .key = "default_max_tokens", .type = MG_SETTING_INT, .def = "256",
	  .lo = 1, .hi = 1 << 24, .help = "when a body has none", S(sched.default_max_tokens) },
	{ .section = "scheduler", .key = "max_tokens_cap", .type = MG_SETTING_INT, .def = "1048576",
	  .lo = 1, .hi = 1 << 30, .help = "larger max_tokens are refused", S(sched.max_tokens_cap) },
	{ .section = "scheduler", .key = "cancel_grace", .type = MG_SETTING_DURATION, .def = "30s",
	  .help = "how long a cancel waits for in-flight shards", S(sched.cancel_grace_ns) },
	{ .section = "scheduler", .key = "shard_timeout", .type = MG_SETTING_DURATION, .def = "0",
	  .help = "a shard in flight longer is requeued (0: never)", S(sched.shard_timeout_ns) },
	{ .section = "scheduler", .key = "drain_timeout", .type = MG_SETTING_DURATION, .def = "30s",
	  .help = "on SIGTERM, how long shards in flight may finish", S(drain_timeout_ns) },
	{ .section = "scheduler", .key = "ingest_chunk", .type = MG_SETTING_INT, .def = "2048",
	  .lo = 1, .hi = 1 << 20, .help = "input lines validated per loop iteration", S(sched.ingest_chunk) },
	{ .section = "scheduler", .key = "inline_max", .type = MG_SETTING_INT, .def = "10000",
	  .lo = 1, .hi = 1 << 20, .help = "requests in an inline submit", S(sched.inline_max) },
	{ .section = "scheduler", .key = "max_credit", .type = MG_SETTING_INT, .def = "1024",
	  .lo = 1, .hi = 1 << 20, .help = "cap on one worker's credit", S(sched.max_credit) },
	{ .section = "scheduler", .key = "max_frame", .type = MG_SETTING_SIZE, .def = "67108864",
	  .lo = 1024, .hi = MG_WIRE_MAX_FRAME, .help = "largest frame, bytes", S(max_frame) },
	{ .section = "scheduler", .key = "journal_sync", .type = MG_SETTING_ENUM, .def = "normal",
	  .names = journal_syncs, .help = "full: every commit reaches the disk", S(journal_sync) },
	{ .section = "http", .key = "max_upload_bytes", .type = MG_SETTING_SIZE, .def = "209715200",
	  .lo = 1024, .hi = 1ll << 40, .help = "POST /v1/files body", S(http_max_upload_bytes) },
	{ .section = "http", .key = "max_line_bytes", .type = MG_SETTING_SIZE, .def = "8388608",
	  .lo = 64, .hi = 1ll << 30, .help = "one line of an uploaded file (at most max_upload_bytes)",
	  S(http_max_line_bytes) },
	{ .section = "http", .key = "max_body_bytes", .type = MG_SETTING_SIZE, .def = "1048576",
	  .lo = 1024, .hi = 1ll << 30, .help = "JSON request bodies", S(http_max_body_bytes) },
	{ .section = "http", .key = "max_connections", .type = MG_SETTING_INT, .def = "4096",
	  .lo = 4, .hi = 65536, .help = "concurrent connections, all clients", S(http_max_connections) },
	{ .section = "http", .key = "max_connections_per_ip", .type = MG_SETTING_INT, .def = "256",
	  .lo = 1, .hi = 65536, .help = "concurrent connections from one address (at most max_connections)",
	  S(http_max_connections_per_ip) },
	{ .section = "http", .key = "idle_timeout", .type = MG_SETTING_DURATION, .def = "10s",
	  .lo = MG_NS_PER_S, .hi = 3600 * MG_NS_PER_S, .help = "a connection silent this long is closed",
	  S(http_idle_timeout_ns) },
	{ .section = "http", .key = "threads", .type = MG_SETTING_INT, .def = "4", .lo = 1, .hi = 64,
	  .help = "event-loop threads", S(http_threads) },
	{ .section = "http", .key = "sync_timeout", .type = MG_SETTING_DURATION, .def = "10min",
	  .help = "synchronous completions and embeddings", S(http_sync_timeout_ns) },
	{ .section = "http", .key = "batch_expiry", .type = MG_SETTING_DURATION, .def = "24h",
	  .lo = MG_NS_PER_S, .hi = INT64_MAX, .help = "how long the \"24h\" completion window really is",
	  S(http_batch_expiry_ns) },
	{ .section = "journal", .key = "retention", .type = MG_SETTING_DURATION, .def = "30d",
	  .help = "finished batches, their files and rows are kept this long (0: forever)" },
	{ .section = "journal", .key = "min_free", .type = MG_SETTING_SIZE, .def = "67108864",
	  .help = "below this many free bytes, no new work (0: no watch)", S(min_free) },
};

static const mg_settings_spec_t spec = {
	.prog = "margind",
	.synopsis = "[--config FILE] --state-dir DIR --http HOST:PORT --workers tcp://HOST:PORT\n"
		    "               [--api-keys FILE] [--curve-secret FILE --curve-allow DIR | --no-curve]\n",
	.version = MARGIN_VERSION,
	.set_example = "scheduler.heartbeat=500ms",
	.settings = settings,
	.n = sizeof(settings) / sizeof(settings[0]),
};

void opts_usage(FILE *f)
{
	mg_settings_usage(&spec, f);
}

static int finish(opts_t *o, char *err, size_t errlen)
{
	mg_config_t *cfg = o->cfg;
	int r;
	sched_params_default(&o->sched);
	if ((r = mg_settings_apply(&spec, cfg, o, err, errlen)) < 0)
		return r;
	if (o->sched.shard_max_tokens == 0)
		o->sched.shard_max_tokens = 1;
	if (o->log_file != NULL && *o->log_file == '\0')
		o->log_file = NULL;
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
	const char *secret = mg_config_get(cfg, "curve", "secret");
	if (o->curve) {
		if (secret == NULL || *secret == '\0' || o->curve_allow == NULL || *o->curve_allow == '\0') {
			snprintf(err, errlen, "CURVE needs --curve-secret FILE and --curve-allow DIR (or --no-curve for plain TCP)");
			return -EINVAL;
		}
		snprintf(o->curve_secret, sizeof(o->curve_secret), "%s", secret);	/* mg_curve_key_load finds it */
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
	return 0;
}

void opts_http_config(const opts_t *o, http_config_t *c)
{
	if (o->http != NULL && *o->http != '\0')
		c->listen = o->http;
	c->max_upload_bytes = o->http_max_upload_bytes;
	/* A line is never longer than the file it is in. */
	c->max_line_bytes = o->http_max_line_bytes < o->http_max_upload_bytes ? o->http_max_line_bytes
									       : o->http_max_upload_bytes;
	c->max_body_bytes = o->http_max_body_bytes;
	c->max_connections = o->http_max_connections;
	/* One address never takes every connection: a per-address limit
	 * above the global one means no per-address limit. */
	c->max_connections_per_ip = o->http_max_connections_per_ip < o->http_max_connections
					    ? o->http_max_connections_per_ip
					    : o->http_max_connections;
	c->idle_timeout_s = (uint32_t)(o->http_idle_timeout_ns / MG_NS_PER_S);
	c->threads = o->http_threads;
	c->sync_timeout_ns = o->http_sync_timeout_ns;
	c->completion_window_s = o->http_batch_expiry_ns / MG_NS_PER_S;
	c->default_max_tokens = o->sched.default_max_tokens;
	c->max_tokens_cap = o->sched.max_tokens_cap;
}

int opts_parse(opts_t *o, int argc, char **argv, char *err, size_t errlen)
{
	memset(o, 0, sizeof(*o));
	o->cfg = mg_config_new();
	if (o->cfg == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	int r = mg_settings_parse(&spec, o->cfg, argc, argv, err, errlen);
	if (r != 0)
		return r;
	return finish(o, err, errlen);
}

void opts_done(opts_t *o)
{
	if (o == NULL)
		return;
	mg_config_destroy(&o->cfg);
	memset(o, 0, sizeof(*o));
}
