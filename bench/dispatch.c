/* bench-dispatch: how many requests per second margind routes, journals
 * and answers, next to what raw ZeroMQ ROUTER/DEALER carries on the same
 * loopback. Prints figures; never passes or fails.
 *
 *   bench-dispatch [--requests N] [--workers K] [--runs R] [--shard N]
 *                  [--slots N] [--no-curve] [--raw-only] [--keep]
 *
 * Daemon runs: a fresh state directory per run, margind with CURVE (keys
 * from marginctl keygen) on tcp://127.0.0.1, K `margin-worker serve --fake`
 * workers (answers at once, so the daemon is what is measured), one job of
 * N chat requests submitted as a file. Phases: ingest (submit ->
 * in_progress: validate + journal every line) and run (in_progress ->
 * completed: cut shards from the journal, Assign, Result, one transaction
 * per shard with its ledger rows, Ack). Binaries from $MARGIND,
 * $MARGIN_WORKER, $MARGINCTL (set by `ninja bench-dispatch`).
 *
 * Raw: K DEALERs against one ROUTER that answers every message, window of
 * 256 messages in flight per DEALER, CURVE like the daemon: messages of one
 * request (~150 B) and of one 64-request shard (~10 KB). */
#include "lib/mg_clock.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

typedef struct cfg {
	int requests, workers, runs, shard, slots;
	bool curve, raw_only, keep;
} cfg_t;

static char tmp_root[256];

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "bench-dispatch: ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	kill(0, SIGTERM);
	exit(1);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* --- raw ZeroMQ -------------------------------------------------------- */

typedef struct raw {
	char ep[256];
	char server_pub[41];
	bool curve;
	size_t size;
	long per_client;
} raw_t;

static void *raw_client(void *arg)
{
	raw_t *r = arg;
	void *ctx = zmq_ctx_new();
	void *s = zmq_socket(ctx, ZMQ_DEALER);
	if (r->curve) {
		char pub[41], sec[41];
		zmq_curve_keypair(pub, sec);
		zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, r->server_pub, 40);
		zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, pub, 40);
		zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, sec, 40);
	}
	int hwm = 0;
	zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof(hwm));
	zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof(hwm));
	zmq_connect(s, r->ep);
	char *buf = calloc(1, r->size);
	long sent = 0, got = 0;
	const long window = 256;
	while (got < r->per_client) {
		while (sent < r->per_client && sent - got < window) {
			zmq_send(s, buf, r->size, 0);
			sent++;
		}
		zmq_msg_t m;
		zmq_msg_init(&m);
		if (zmq_msg_recv(&m, s, 0) >= 0)
			got++;
		zmq_msg_close(&m);
	}
	free(buf);
	int linger = 0;
	zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger));
	zmq_close(s);
	zmq_ctx_term(ctx);
	return NULL;
}

/* Messages per second, round trip, K clients. */
static double raw_rate(const cfg_t *c, size_t size, long total)
{
	void *ctx = zmq_ctx_new();
	void *router = zmq_socket(ctx, ZMQ_ROUTER);
	raw_t r = { .curve = c->curve, .size = size, .per_client = total / c->workers };
	if (c->curve) {
		char sec[41];
		zmq_curve_keypair(r.server_pub, sec);
		int one = 1;
		zmq_setsockopt(router, ZMQ_CURVE_SERVER, &one, sizeof(one));
		zmq_setsockopt(router, ZMQ_CURVE_SECRETKEY, sec, 40);
	}
	int hwm = 0;
	zmq_setsockopt(router, ZMQ_SNDHWM, &hwm, sizeof(hwm));
	zmq_setsockopt(router, ZMQ_RCVHWM, &hwm, sizeof(hwm));
	if (zmq_bind(router, "tcp://127.0.0.1:*") < 0)
		die("raw bind: %s", zmq_strerror(zmq_errno()));
	size_t len = sizeof(r.ep);
	zmq_getsockopt(router, ZMQ_LAST_ENDPOINT, r.ep, &len);
	pthread_t th[64];
	int k = c->workers > 64 ? 64 : c->workers;
	for (int i = 0; i < k; i++)
		pthread_create(&th[i], NULL, raw_client, &r);
	long want = r.per_client * k, done = 0;
	int64_t t0 = 0;
	while (done < want) {
		zmq_msg_t id, data;
		zmq_msg_init(&id);
		zmq_msg_init(&data);
		zmq_msg_recv(&id, router, 0);
		zmq_msg_recv(&data, router, 0);
		if (t0 == 0)
			t0 = mg_clock_now_ns();
		zmq_msg_send(&id, router, ZMQ_SNDMORE);
		zmq_msg_send(&data, router, 0);
		done++;
	}
	double dt = (double)(mg_clock_now_ns() - t0) / 1e9;
	for (int i = 0; i < k; i++)
		pthread_join(th[i], NULL);
	int linger = 0;
	zmq_setsockopt(router, ZMQ_LINGER, &linger, sizeof(linger));
	zmq_close(router);
	zmq_ctx_term(ctx);
	return (double)want / dt;
}

/* --- the daemon ------------------------------------------------------- */

static pid_t spawn(char *const argv[], const char *log)
{
	pid_t pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		putenv("OPENBLAS_NUM_THREADS=1");
		putenv("MARGIN_LOG_LEVEL=warn");
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

static const char *bin(const char *env)
{
	const char *p = getenv(env);
	if (p == NULL || *p == '\0')
		die("$%s is not set (run `ninja -C build bench-dispatch`)", env);
	return p;
}

static json_t *ctl(const char *state, json_t *req)
{
	char ep[PATH_MAX];
	snprintf(ep, sizeof(ep), "ipc://%s/ctl.sock", state);
	void *ctx = zmq_ctx_new();
	void *s = zmq_socket(ctx, ZMQ_DEALER);
	int linger = 0, to = 30000;
	zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger));
	zmq_setsockopt(s, ZMQ_RCVTIMEO, &to, sizeof(to));
	zmq_connect(s, ep);
	char *txt = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	zmq_send(s, txt, strlen(txt), 0);
	free(txt);
	zmq_msg_t m;
	zmq_msg_init(&m);
	json_t *r = NULL;
	if (zmq_msg_recv(&m, s, 0) >= 0)
		r = json_loadb(zmq_msg_data(&m), zmq_msg_size(&m), 0, NULL);
	zmq_msg_close(&m);
	zmq_close(s);
	zmq_ctx_term(ctx);
	if (r == NULL || json_object_get(r, "error"))
		die("control request failed (%s)", state);
	return r;
}

static long vm_hwm_kb(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	long kb = -1;
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

static void write_input(const char *path, int n)
{
	FILE *f = fopen(path, "w");
	if (f == NULL)
		die("%s: %s", path, strerror(errno));
	for (int i = 0; i < n; i++)
		fprintf(f, "{\"custom_id\":\"request-%08d\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
			   "\"body\":{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":"
			   "\"Tell me a short story about the number %d.\"}],\"max_tokens\":16}}\n", i, i);
	fclose(f);
}

typedef struct run_result {
	double ingest_s, run_s;
	double run_cpu_s;	/* margind's user+system CPU during the run phase */
	long rss_kb;
} run_result_t;

/* user+system CPU seconds of pid so far. */
static double cpu_s(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return 0;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	const char *p = strrchr(buf, ')');
	unsigned long ut = 0, st = 0;
	if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return 0;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static run_result_t daemon_run(const cfg_t *c, int idx, const char *input)
{
	char dir[300], state[320], log[340], cmd[1400];
	snprintf(dir, sizeof(dir), "%s/run%d", tmp_root, idx);
	snprintf(state, sizeof(state), "%s/st", dir);
	snprintf(cmd, sizeof(cmd), "mkdir -p '%s' && '%s' keygen margind -o '%s/keys' >/dev/null && '%s' keygen w -o '%s/allow' >/dev/null",
		 dir, bin("MARGINCTL"), dir, bin("MARGINCTL"), dir);
	if (system(cmd) != 0)
		die("marginctl keygen failed");
	char dsec[340], dpub[340], wsec[340], allow[320], shard[64];
	snprintf(dsec, sizeof(dsec), "%s/keys/margind.key", dir);
	snprintf(dpub, sizeof(dpub), "%s/keys/margind.pub", dir);
	snprintf(wsec, sizeof(wsec), "%s/allow/w.key", dir);
	snprintf(allow, sizeof(allow), "%s/allow", dir);
	snprintf(shard, sizeof(shard), "scheduler.shard_requests=%d", c->shard);
	snprintf(log, sizeof(log), "%s/margind.log", dir);
	char *dargv[20] = { (char *)bin("MARGIND"), "--state-dir", state, "--workers", "tcp://127.0.0.1:*",
			    "--http", "none", "--set", shard };
	int n = 9;
	if (c->curve) {
		dargv[n++] = "--curve-secret";
		dargv[n++] = dsec;
		dargv[n++] = "--curve-allow";
		dargv[n++] = allow;
	} else {
		dargv[n++] = "--no-curve";
	}
	dargv[n] = NULL;
	pid_t dpid = spawn(dargv, log);
	char endpoints[340], ep[320] = "";
	snprintf(endpoints, sizeof(endpoints), "%s/endpoints", state);
	for (int i = 0; i < 500 && ep[0] == '\0'; i++) {
		FILE *f = fopen(endpoints, "r");
		if (f != NULL) {
			char line[300];
			while (fgets(line, sizeof(line), f))
				if (strncmp(line, "workers=", 8) == 0) {
					line[strcspn(line, "\n")] = '\0';
					snprintf(ep, sizeof(ep), "%s", line + 8);
				}
			fclose(f);
		}
		mg_clock_sleep_ns(20 * MG_NS_PER_MS);
	}
	if (ep[0] == '\0')
		die("margind did not start (see %s)", log);
	pid_t wpids[64];
	char slots[16];
	snprintf(slots, sizeof(slots), "%d", c->slots);
	for (int w = 0; w < c->workers && w < 64; w++) {
		char name[32], wlog[340];
		snprintf(name, sizeof(name), "w%d", w);
		snprintf(wlog, sizeof(wlog), "%s/%s.log", dir, name);
		char *wargv[24] = { (char *)bin("MARGIN_WORKER"), "serve", "--scheduler", ep, "--arch", "tiny",
				    "--fake", "--slots", slots, "--threads", "1", "--name", name };
		int k = 13;
		if (c->curve) {
			wargv[k++] = "--curve-secret";
			wargv[k++] = wsec;
			wargv[k++] = "--curve-server";
			wargv[k++] = dpub;
		} else {
			wargv[k++] = "--no-curve";
		}
		wargv[k] = NULL;
		wpids[w] = spawn(wargv, wlog);
	}
	for (int i = 0;; i++) {
		json_t *r = ctl(state, json_pack("{s:s}", "cmd", "workers"));
		size_t nw = json_array_size(json_object_get(r, "workers"));
		json_decref(r);
		if ((int)nw >= c->workers)
			break;
		if (i > 500)
			die("workers did not register (see %s)", dir);
		mg_clock_sleep_ns(20 * MG_NS_PER_MS);
	}
	int64_t t0 = mg_clock_now_ns(), t1 = 0;
	double c1 = 0;
	json_decref(ctl(state, json_pack("{s:s, s:s, s:s}", "cmd", "submit", "id", "bench", "input_path", input)));
	for (;;) {
		json_t *r = ctl(state, json_pack("{s:s, s:s}", "cmd", "status", "id", "bench"));
		const char *st = json_string_value(json_object_get(r, "state"));
		bool in_progress = strcmp(st, "validating") != 0;
		bool done = strcmp(st, "completed") == 0;
		if (strcmp(st, "failed") == 0 || strcmp(st, "cancelled") == 0)
			die("the job ended %s (see %s)", st, log);
		json_decref(r);
		if (in_progress && t1 == 0) {
			t1 = mg_clock_now_ns();
			c1 = cpu_s(dpid);
		}
		if (done)
			break;
		mg_clock_sleep_ns(5 * MG_NS_PER_MS);
	}
	int64_t t2 = mg_clock_now_ns();
	run_result_t res = { (double)(t1 - t0) / 1e9, (double)(t2 - t1) / 1e9, cpu_s(dpid) - c1,
			     vm_hwm_kb(dpid) };
	for (int w = 0; w < c->workers && w < 64; w++)
		kill(wpids[w], SIGKILL);
	kill(dpid, SIGTERM);
	for (int w = 0; w < c->workers && w < 64; w++)
		waitpid(wpids[w], NULL, 0);
	waitpid(dpid, NULL, 0);
	if (!c->keep) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "bench-dispatch: could not remove %s\n", dir);
	}
	return res;
}

int main(int argc, char **argv)
{
	cfg_t c = { .requests = 100000, .workers = 2, .runs = 3, .shard = 64, .slots = 64, .curve = true };
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--requests") == 0 && v) {
			c.requests = atoi(v);
			i++;
		} else if (strcmp(a, "--workers") == 0 && v) {
			c.workers = atoi(v);
			i++;
		} else if (strcmp(a, "--runs") == 0 && v) {
			c.runs = atoi(v);
			i++;
		} else if (strcmp(a, "--shard") == 0 && v) {
			c.shard = atoi(v);
			i++;
		} else if (strcmp(a, "--slots") == 0 && v) {
			c.slots = atoi(v);
			i++;
		} else if (strcmp(a, "--no-curve") == 0) {
			c.curve = false;
		} else if (strcmp(a, "--raw-only") == 0) {
			c.raw_only = true;
		} else if (strcmp(a, "--keep") == 0) {
			c.keep = true;
		} else {
			fprintf(a[2] == 'h' ? stdout : stderr,
				"usage: bench-dispatch [--requests N] [--workers K] [--runs R] [--shard N] [--slots N] [--no-curve] [--raw-only] [--keep]\n");
			return strcmp(a, "--help") == 0 ? 0 : 2;
		}
	}
	if (c.requests < 1 || c.workers < 1 || c.runs < 1 || c.shard < 1 || c.slots < 1) {
		fprintf(stderr, "bench-dispatch: counts must be positive\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	const char *t = getenv("TMPDIR");
	snprintf(tmp_root, sizeof(tmp_root), "%s/margin-bench-dispatch-XXXXXX", t && *t ? t : "/tmp");
	if (mkdtemp(tmp_root) == NULL)
		die("mkdtemp: %s", strerror(errno));

	printf("bench-dispatch: %d workers, CURVE %s, tcp://127.0.0.1, %d runs (median reported)\n",
	       c.workers, c.curve ? "on" : "off", c.runs);
	double *a = calloc((size_t)c.runs, sizeof(double)), *b = calloc((size_t)c.runs, sizeof(double));
	for (int r = 0; r < c.runs; r++) {
		a[r] = raw_rate(&c, 150, 400000);
		b[r] = raw_rate(&c, 64 * 150, 100000);
	}
	double raw1 = median(a, c.runs), raw64 = median(b, c.runs);
	printf("raw ROUTER/DEALER round trips: %.0f msg/s of 150 B (1 request each); %.0f msg/s of 9.6 KB = %.0f requests/s at 64 per message\n",
	       raw1, raw64, raw64 * 64);
	if (c.raw_only)
		return 0;

	char input[PATH_MAX];
	snprintf(input, sizeof(input), "%s/input.jsonl", tmp_root);
	write_input(input, c.requests);
	printf("margind: one job of %d chat requests, shards of %d, fake workers with %d slots\n",
	       c.requests, c.shard, c.slots);
	double *ing = calloc((size_t)c.runs, sizeof(double)), *run = calloc((size_t)c.runs, sizeof(double)),
	       *e2e = calloc((size_t)c.runs, sizeof(double)), *rss = calloc((size_t)c.runs, sizeof(double)),
	       *cpu = calloc((size_t)c.runs, sizeof(double));
	for (int r = 0; r < c.runs; r++) {
		run_result_t x = daemon_run(&c, r, input);
		ing[r] = c.requests / x.ingest_s;
		run[r] = c.requests / x.run_s;
		e2e[r] = c.requests / (x.ingest_s + x.run_s);
		rss[r] = (double)x.rss_kb / 1024.0;
		cpu[r] = x.run_cpu_s * 1e6 / c.requests;
		printf("  run %d: ingest %.2f s (%.0f lines/s), dispatch+answer %.2f s (%.0f requests/s, margind CPU %.1f us/request), end to end %.0f requests/s, margind peak RSS %.1f MiB\n",
		       r + 1, x.ingest_s, ing[r], x.run_s, run[r], cpu[r], e2e[r], rss[r]);
		fflush(stdout);
	}
	printf("median: ingest %.0f lines/s, routed+journaled+answered %.0f requests/s (margind CPU %.1f us/request), end to end %.0f requests/s, peak RSS %.1f MiB\n",
	       median(ing, c.runs), median(run, c.runs), median(cpu, c.runs), median(e2e, c.runs),
	       median(rss, c.runs));
	unlink(input);
	if (!c.keep)
		rmdir(tmp_root);
	return 0;
}
