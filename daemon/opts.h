/* opts: margind's settings from the INI config file and the command line.
 *
 *   margind [--config FILE] --state-dir DIR --http HOST:PORT --workers tcp://HOST:PORT
 *           [--api-keys FILE] [--curve-secret FILE --curve-allow DIR | --no-curve]
 *           [--log-level LEVEL] [--log-file FILE] [--set SECTION.KEY=VALUE]...
 *
 * The file is read first; every flag then overrides its key (a flag is the
 * same as `--set section.key=value`). One table in opts.c (mg_settings.h)
 * holds every flag and key with its type, range, default and help; --help
 * prints it. Keys (section: key = default):
 *
 *   [scheduler] state_dir, workers, heartbeat = 1s, liveness = 3,
 *               shard_requests = 64, shard_tokens = 65536, max_attempts = 3,
 *               default_max_tokens = 256, max_tokens_cap = 1048576,
 *               cancel_grace = 30s, shard_timeout = 0 (off), drain_timeout = 30s,
 *               ingest_chunk = 2048, inline_max = 10000, max_credit = 1024,
 *               max_frame = 67108864 (bytes), journal_sync = normal | full
 *   [http]      listen, api_keys, max_upload_bytes = 209715200, max_line_bytes = 8388608,
 *               max_body_bytes = 1048576, max_connections = 4096,
 *               max_connections_per_ip = 256, idle_timeout = 10s, threads = 4,
 *               sync_timeout = 10min, batch_expiry = 24h (http.h)
 *   [curve]     enabled = yes, secret, allow
 *   [log]       level = info, file (default: stderr)
 *   [journal]   retention = 30d (finished batches, their files and rows; 0 = forever),
 *               min_free = 67108864 (bytes)
 *   [meter]     hardware, hardware_dir, prices, period, refs, embed_refs, currency,
 *               sale_price (booking.h)
 *
 * A relative [curve] secret is looked up in $CREDENTIALS_DIRECTORY when set
 * (systemd LoadCredential=). */
#ifndef OPTS_H
#define OPTS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "http.h"
#include "lib/mg_config.h"
#include "sched.h"

#define OPTS_RETENTION_DEFAULT_S (30 * 86400)
/* [journal] min_free: 64 MiB, room for the Results of the shards in flight
 * and a WAL checkpoint once new work is refused. */
#define OPTS_MIN_FREE_DEFAULT (64ull << 20)

typedef struct opts {
	mg_config_t *cfg;		/* owned: the merged settings */
	/* Strings below are borrowed from cfg (or NULL). */
	const char *state_dir;
	const char *workers;		/* ZeroMQ endpoint for workers */
	const char *http;		/* HOST:PORT for the HTTP API */
	const char *api_keys;
	const char *log_file;
	int log_level;
	bool curve;
	char curve_secret[4096];	/* as given: mg_curve_key_load finds it */
	char state_dir_abs[4096];	/* state_dir made absolute: the HTTP side and
					   the journal hand paths inside it to other threads */
	const char *curve_allow;
	sched_params_t sched;
	int64_t drain_timeout_ns;
	uint64_t max_frame;
	int journal_sync;		/* enum journal_sync */
	int64_t retention_s;		/* [journal] retention: finished batches are kept
					 * this long (0: forever) */
	uint64_t min_free;		/* [journal] min_free: below it, no new work
					 * (storage.h); 0: no watch */
	/* [http] limits, as the table checked them (opts_http_config) */
	uint64_t http_max_upload_bytes, http_max_line_bytes, http_max_body_bytes;
	uint32_t http_max_connections, http_max_connections_per_ip, http_threads;
	int64_t http_idle_timeout_ns, http_sync_timeout_ns, http_batch_expiry_ns;
} opts_t;

/* Returns 0 with *o filled, 1 when --help or --version was printed (exit
 * 0), -EINVAL for bad usage with the reason in err (exit 2), another
 * negative errno when the config file cannot be read (exit 1). */
int opts_parse(opts_t *o, int argc, char **argv, char *err, size_t errlen);
void opts_done(opts_t *o);
/* The HTTP server's settings from o: [http] listen (when set) and limits,
 * [scheduler] default_max_tokens and max_tokens_cap. The rest of *c
 * (http_config_default, state_dir, keys, ...) is left as it is; strings
 * are borrowed from o. */
void opts_http_config(const opts_t *o, http_config_t *c);
void opts_usage(FILE *f);

#endif
