/* opts: the config file, flags over it, and the refusals. */
#include "fixture.h"
#include "lib/mg_clock.h"
#include "lib/mg_curve.h"
#include "opts.h"
#include "tests.h"

#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

static int parse(opts_t *o, char *err, size_t errlen, int argc, const char *const *argv)
{
	char *v[16];
	for (int i = 0; i < argc && i < 16; i++)
		v[i] = (char *)argv[i];
	return opts_parse(o, argc, v, err, errlen);
}

static void test_file_and_flags(void)
{
	char dir[512], path[600], err[512];
	fx_newdir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/margind.conf", dir);
	FILE *f = fopen(path, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fprintf(f, "[scheduler]\nstate_dir = /from/file\nworkers = tcp://0.0.0.0:1\n"
		   "heartbeat = 250ms\nliveness = 5\nshard_requests = 32\njournal_sync = full\n"
		   "[curve]\nenabled = no\n[log]\nlevel = debug\n");
	fclose(f);
	const char *argv[] = { "margind", "--workers", "tcp://127.0.0.1:9", "--config", path,
			       "--set", "scheduler.max_attempts=7", "--http", "127.0.0.1:8080", NULL };
	opts_t o;
	CU_ASSERT_EQUAL_FATAL(parse(&o, err, sizeof(err), 9, argv), 0);
	CU_ASSERT_STRING_EQUAL(o.state_dir, "/from/file");
	CU_ASSERT_STRING_EQUAL(o.workers, "tcp://127.0.0.1:9");	/* the flag wins, wherever it is */
	CU_ASSERT_STRING_EQUAL(o.http, "127.0.0.1:8080");
	CU_ASSERT_EQUAL(o.sched.heartbeat_ns, 250 * MG_NS_PER_MS);
	CU_ASSERT_EQUAL(o.sched.liveness, 5);
	CU_ASSERT_EQUAL(o.sched.shard_max_requests, 32);
	CU_ASSERT_EQUAL(o.sched.max_attempts, 7);
	CU_ASSERT_EQUAL(o.journal_sync, JOURNAL_SYNC_FULL);
	CU_ASSERT_FALSE(o.curve);
	CU_ASSERT_EQUAL(o.log_level, 3);
	opts_done(&o);
}

static void test_refusals(void)
{
	static const struct {
		int argc;
		const char *argv[8];
		int rc;
		const char *want;
	} cases[] = {
		{ 3, { "margind", "--workers", "tcp://x:1" }, -EINVAL, "--state-dir" },
		{ 4, { "margind", "--state-dir", "/s", "--no-curve" }, -EINVAL, "--workers" },
		{ 5, { "margind", "--state-dir", "/s", "--workers", "tcp://x:1" }, -EINVAL, "--curve-secret" },
		{ 6, { "margind", "--state-dir", "/s", "--workers", "tcp://x:1", "--bogus" }, -EINVAL, "unknown option" },
		{ 8, { "margind", "--state-dir", "/s", "--workers", "tcp://x:1", "--no-curve", "--curve-allow", "/k" }, -EINVAL, "excludes" },
		{ 8, { "margind", "--state-dir", "/s", "--workers", "tcp://x:1", "--no-curve", "--set", "scheduler.heartbeat=soon" }, -EINVAL, "heartbeat" },
		{ 8, { "margind", "--state-dir", "/s", "--workers", "tcp://x:1", "--no-curve", "--set", "nodot" }, -EINVAL, "SECTION.KEY" },
		{ 7, { "margind", "--state-dir", "/s", "--workers", "tcp://x:1", "--no-curve", "extra" }, -EINVAL, "unexpected" },
		{ 4, { "margind", "--config", "/nonexistent/margind.conf", "--no-curve" }, -ENOENT, "/nonexistent" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		opts_t o;
		char err[512] = "";
		int r = parse(&o, err, sizeof(err), cases[i].argc, cases[i].argv);
		if (r != cases[i].rc || strstr(err, cases[i].want) == NULL)
			fprintf(stderr, "case %zu: rc %d err \"%s\"\n", i, r, err);
		CU_ASSERT_EQUAL(r, cases[i].rc);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, cases[i].want));
		opts_done(&o);
	}
}

/* [journal] retention: a duration, 30 days unless set, 0 = forever. */
static void test_retention(void)
{
	static const struct {
		const char *set;	/* NULL: not set */
		int rc;
		int64_t want_s;
		const char *err;
	} cases[] = {
		{ NULL, 0, 30 * 86400, NULL },
		{ "journal.retention=7d", 0, 7 * 86400, NULL },
		{ "journal.retention=90min", 0, 5400, NULL },
		{ "journal.retention=0", 0, 0, NULL },
		{ "journal.retention=soon", -EINVAL, 0, "retention" },
		{ "journal.retention=500ms", -EINVAL, 0, "[journal] retention: expected 0 (keep forever) or at least 1s" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *argv[] = { "margind", "--state-dir", "/s", "--workers", "tcp://x:1", "--no-curve",
				       "--set", cases[i].set };
		opts_t o;
		char err[512] = "";
		int r = parse(&o, err, sizeof(err), cases[i].set ? 8 : 6, argv);
		if (r != cases[i].rc)
			fprintf(stderr, "case %zu: rc %d err \"%s\"\n", i, r, err);
		CU_ASSERT_EQUAL(r, cases[i].rc);
		if (r == 0) {
			CU_ASSERT_EQUAL(o.retention_s, cases[i].want_s);
		} else {
			CU_ASSERT_PTR_NOT_NULL(strstr(err, cases[i].err));
		}
		opts_done(&o);
	}
}

static void test_curve_credentials(void)
{
	char dir[512], err[512], key[600];
	fx_newdir(dir, sizeof(dir));
	snprintf(key, sizeof(key), "%s/curve.key", dir);
	FILE *f = fopen(key, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fclose(f);
	setenv("CREDENTIALS_DIRECTORY", dir, 1);
	const char *argv[] = { "margind", "--state-dir", "/s", "--workers", "tcp://x:1",
			       "--curve-secret", "curve.key", "--curve-allow", "/k", NULL };
	opts_t o;
	CU_ASSERT_EQUAL_FATAL(parse(&o, err, sizeof(err), 9, argv), 0);
	CU_ASSERT_TRUE(o.curve);
	/* the relative name is found in the credentials when the key is read
	 * (mg_curve_key_load): the empty file there is the one refused */
	char z85[41];
	CU_ASSERT_EQUAL(mg_curve_key_load(o.curve_secret, z85, NULL, err, sizeof(err)), -EBADMSG);
	CU_ASSERT_EQUAL(strncmp(err, key, strlen(key)), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "no CURVE key"));
	CU_ASSERT_STRING_EQUAL(o.curve_allow, "/k");
	opts_done(&o);
	unsetenv("CREDENTIALS_DIRECTORY");
}

/* A bad value names where it came from: the file and its line, or the
 * flag; --help lists every flag with its key and every file-only key. */
/* margind --help holds each of the n lines. */
static void check_usage(const char *const *lines, size_t n)
{
	char *text = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&text, &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(m);
	opts_usage(m);
	fclose(m);
	for (size_t i = 0; i < n; i++) {
		if (strstr(text, lines[i]) == NULL)
			fprintf(stderr, "margind --help lacks \"%s\"\n", lines[i]);
		CU_ASSERT_PTR_NOT_NULL(strstr(text, lines[i]));
	}
	free(text);
}

static void test_where_and_help(void)
{
	char dir[512], path[600], err[512] = "";
	fx_newdir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/margind.conf", dir);
	FILE *f = fopen(path, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fprintf(f, "[scheduler]\nstate_dir = /s\n# the next one is wrong\nliveness = 0\n");
	fclose(f);
	const char *argv[] = { "margind", "--config", path, "--workers", "tcp://x:1", "--no-curve", NULL };
	opts_t o;
	char want[700];
	snprintf(want, sizeof(want), "%s:4: [scheduler] liveness = \"0\": expected 1 to 1000", path);
	CU_ASSERT_EQUAL(parse(&o, err, sizeof(err), 6, argv), -EINVAL);
	if (strstr(err, want) == NULL)
		fprintf(stderr, "err \"%s\", want \"%s\"\n", err, want);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, want));
	opts_done(&o);
	const char *flag[] = { "margind", "--state-dir", "/s", "--workers", "tcp://x:1", "--no-curve",
			       "--set", "scheduler.heartbeat=0", NULL };
	CU_ASSERT_EQUAL(parse(&o, err, sizeof(err), 8, flag), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "command line: [scheduler] heartbeat = \"0\": expected at least 1ms"));
	opts_done(&o);

	static const char *const lines[] = {
		"  --state-dir DIR       journal (margin.db), lock and control socket (ctl.sock) (scheduler.state_dir)\n",
		"  --no-curve            plain TCP to workers (no encryption, no authentication) (curve.enabled = no)\n",
		"  --prices FILE         closed-API price table, INI or LiteLLM .json (repeatable) (meter.prices)\n",
		"  scheduler.liveness    missed heartbeats before a worker is dead (default 3)\n",
		"  journal.min_free      ",
		"  scheduler.max_frame   largest frame, bytes (default 67108864)\n",
	};
	check_usage(lines, sizeof(lines) / sizeof(lines[0]));
}

/* The [http] keys are rows of margind's table: read, bounded, named with
 * the FILE:LINE or flag they came from when wrong, listed by --help, and
 * handed to the HTTP server with its two clamps. */
static void test_http_limits(void)
{
	char dir[512], path[600], err[512] = "", want[700];
	fx_newdir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/margind.conf", dir);
	FILE *f = fopen(path, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fprintf(f, "[scheduler]\nstate_dir = /s\ndefault_max_tokens = 99\n[http]\nmax_connections = 100\n"
		   "idle_timeout = 3s\nthreads = 2\nmax_upload_bytes = 4096\nbatch_expiry = 2s\n");
	fclose(f);
	const char *argv[] = { "margind", "--config", path, "--workers", "tcp://x:1", "--no-curve",
			       "--http", "127.0.0.1:9", NULL };
	opts_t o;
	CU_ASSERT_EQUAL_FATAL(parse(&o, err, sizeof(err), 8, argv), 0);
	http_config_t c;
	http_config_default(&c);
	CU_ASSERT_EQUAL(c.max_connections, 4096);
	CU_ASSERT(c.max_connections_per_ip < c.max_connections);
	opts_http_config(&o, &c);
	CU_ASSERT_STRING_EQUAL(c.listen, "127.0.0.1:9");
	CU_ASSERT_EQUAL(c.max_connections, 100);
	CU_ASSERT_EQUAL(c.max_connections_per_ip, 100);	/* never above the global limit */
	CU_ASSERT_EQUAL(c.idle_timeout_s, 3);
	CU_ASSERT_EQUAL(c.threads, 2);
	CU_ASSERT_EQUAL(c.max_upload_bytes, 4096);
	CU_ASSERT_EQUAL(c.max_line_bytes, 4096);	/* never above the upload limit */
	CU_ASSERT_EQUAL(c.max_body_bytes, 1u << 20);
	CU_ASSERT_EQUAL(c.completion_window_s, 2);
	CU_ASSERT_EQUAL(c.sync_timeout_ns, 600 * MG_NS_PER_S);
	CU_ASSERT_EQUAL(c.default_max_tokens, 99);
	CU_ASSERT_EQUAL(c.max_tokens_cap, 1u << 20);
	opts_done(&o);

	const char *per_ip[] = { "margind", "--config", path, "--workers", "tcp://x:1", "--no-curve",
				 "--set", "http.max_connections_per_ip=8", NULL };
	CU_ASSERT_EQUAL_FATAL(parse(&o, err, sizeof(err), 8, per_ip), 0);
	opts_http_config(&o, &c);
	CU_ASSERT_EQUAL(c.max_connections_per_ip, 8);
	opts_done(&o);

	f = fopen(path, "a");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fprintf(f, "idle_timeout = 500ms\n");
	fclose(f);
	CU_ASSERT_EQUAL(parse(&o, err, sizeof(err), 6, argv), -EINVAL);
	snprintf(want, sizeof(want), "%s:10: [http] idle_timeout = \"500ms\": expected 1s to 1h", path);
	if (strstr(err, want) == NULL)
		fprintf(stderr, "err \"%s\", want \"%s\"\n", err, want);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, want));
	opts_done(&o);

	const char *zero[] = { "margind", "--state-dir", "/s", "--workers", "tcp://x:1", "--no-curve",
			       "--set", "http.max_connections_per_ip=0", NULL };
	CU_ASSERT_EQUAL(parse(&o, err, sizeof(err), 8, zero), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "[http] max_connections_per_ip = \"0\": expected 1 to 65536"));
	opts_done(&o);

	static const char *const lines[] = {
		"  http.max_connections  concurrent connections, all clients (default 4096)\n",
		"  http.idle_timeout     a connection silent this long is closed (default 10s)\n",
		"  http.batch_expiry     ",
		"  http.max_upload_bytes",
	};
	check_usage(lines, sizeof(lines) / sizeof(lines[0]));
}

const cu_test_t opts_tests[] = {
	{ "file_and_flags", test_file_and_flags },
	{ "refusals", test_refusals },
	{ "retention", test_retention },
	{ "curve_credentials", test_curve_credentials },
	{ "where_and_help", test_where_and_help },
	{ "http_limits", test_http_limits },
	{ NULL, NULL },
};
