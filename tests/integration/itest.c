/* Integration scenarios: real margind and margin-worker processes on
 * 127.0.0.1, over the real protocol, in temporary state directories.
 *
 *   itest SCENARIO        (one scenario per meson test, suite 'integration')
 *
 * Binaries come from $MARGIND, $MARGIN_WORKER and $MARGINCTL. Every
 * process started is killed when the scenario ends, passes or fails, and a
 * scenario is bounded by an alarm. A failure prints the reason and the tail
 * of the logs. Outputs are compared with an undisturbed run of the same job
 * id (the seeds hash the job id), never with hand-written text. */
#include "cu_main.h"
#include "lib/mg_clock.h"
#include "lib/mg_wire.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#define MAX_PROCS 32
#define SCENARIO_TIMEOUT_S 150

/* --- processes -------------------------------------------------------- */

typedef struct proc {
	pid_t pid;
	char name[32];
	char log[PATH_MAX];
} proc_t;

static proc_t procs[MAX_PROCS];
static int n_procs;
static char tmp_root[512];

static void kill_all(void)
{
	for (int i = 0; i < n_procs; i++)
		if (procs[i].pid > 0) {
			kill(procs[i].pid, SIGCONT);
			kill(procs[i].pid, SIGKILL);
			waitpid(procs[i].pid, NULL, 0);
			procs[i].pid = 0;
		}
}

static void on_alarm(int sig)
{
	static const char msg[] = "itest: scenario timed out\n";
	ssize_t w = write(2, msg, sizeof(msg) - 1);
	(void)w;
	for (int i = 0; i < n_procs; i++)
		if (procs[i].pid > 0)
			kill(procs[i].pid, SIGKILL);
	_exit(1);
}

static void tail_log(const char *path, int lines)
{
	char cmd[PATH_MAX + 64];
	snprintf(cmd, sizeof(cmd), "tail -n %d '%s' 1>&2", lines, path);
	fprintf(stderr, "---- %s ----\n", path);
	fflush(stderr);
	if (system(cmd) != 0)
		fprintf(stderr, "(no log)\n");
}

static void fail(const char *file, int line, const char *fmt, ...) __attribute__((noreturn, format(printf, 3, 4)));

static void fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "FAIL %s:%d: ", file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	for (int i = 0; i < n_procs; i++)
		tail_log(procs[i].log, 25);
	kill_all();
	exit(1);
}

#define CHECK(cond, ...) do { if (!(cond)) fail(__FILE__, __LINE__, __VA_ARGS__); } while (0)

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "itest: ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* Start argv (NULL-terminated) with stdout+stderr into log. */
static proc_t *spawn(const char *name, const char *log, char *const argv[], char *const env[])
{
	CHECK(n_procs < MAX_PROCS, "too many processes");
	pid_t pid = fork();
	CHECK(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		for (int i = 0; env && env[i]; i++)
			putenv(env[i]);
		execv(argv[0], argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	proc_t *p = &procs[n_procs++];
	p->pid = pid;
	snprintf(p->name, sizeof(p->name), "%s", name);
	snprintf(p->log, sizeof(p->log), "%s", log);
	return p;
}

/* Exit status, or -1 if still running after timeout_ms; 128+sig if killed. */
static int wait_proc(proc_t *p, int timeout_ms)
{
	int64_t end = mg_clock_now_ns() + (int64_t)timeout_ms * MG_NS_PER_MS;
	for (;;) {
		int st;
		pid_t r = waitpid(p->pid, &st, WNOHANG);
		if (r == p->pid) {
			p->pid = 0;
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		}
		if (mg_clock_now_ns() >= end)
			return -1;
		mg_clock_sleep_ns(10 * MG_NS_PER_MS);
	}
}

static void kill9(proc_t *p)
{
	kill(p->pid, SIGKILL);
	CHECK(wait_proc(p, 5000) >= 0, "%s did not die", p->name);
}

static bool log_has(const char *path, const char *needle)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return false;
	char *line = NULL;
	size_t cap = 0;
	bool found = false;
	while (!found && getline(&line, &cap, f) > 0)
		found = strstr(line, needle) != NULL;
	free(line);
	fclose(f);
	return found;
}

/* Lines of the log holding needle. */
static int log_count(const char *path, const char *needle)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return 0;
	char *line = NULL;
	size_t cap = 0;
	int n = 0;
	while (getline(&line, &cap, f) > 0)
		n += strstr(line, needle) != NULL;
	free(line);
	fclose(f);
	return n;
}

static bool log_has_both(const char *path, const char *a, const char *b)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return false;
	char *line = NULL;
	size_t cap = 0;
	bool found = false;
	while (!found && getline(&line, &cap, f) > 0)
		found = strstr(line, a) != NULL && strstr(line, b) != NULL;
	free(line);
	fclose(f);
	return found;
}

static const char *bin(const char *env)
{
	const char *p = getenv(env);
	if (p == NULL || *p == '\0')
		fail(__FILE__, __LINE__, "$%s is not set (run through meson test)", env);
	return p;
}

/* --- the daemon and its control socket -------------------------------- */

typedef struct daemon {
	char state[PATH_MAX];
	char ep[512];		/* worker endpoint, port resolved */
	char log[PATH_MAX];
	proc_t *p;
	char *extra[16];	/* extra flags (borrowed strings) */
	int n_extra;
} daemon_t;

static json_t *ctl_try(const daemon_t *d, json_t *req, int timeout_ms)
{
	char ep[PATH_MAX + 16];
	snprintf(ep, sizeof(ep), "ipc://%s/ctl.sock", d->state);
	void *ctx = zmq_ctx_new();
	void *s = zmq_socket(ctx, ZMQ_DEALER);
	int linger = 0;
	zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger));
	zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout_ms, sizeof(timeout_ms));
	zmq_connect(s, ep);
	char *txt = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	json_t *reply = NULL;
	if (zmq_send(s, txt, strlen(txt), 0) >= 0) {
		zmq_msg_t m;
		zmq_msg_init(&m);
		if (zmq_msg_recv(&m, s, 0) >= 0)
			reply = json_loadb(zmq_msg_data(&m), zmq_msg_size(&m), 0, NULL);
		zmq_msg_close(&m);
	}
	free(txt);
	zmq_close(s);
	zmq_ctx_term(ctx);
	return reply;
}

static json_t *ctl(const daemon_t *d, json_t *req)
{
	json_t *r = ctl_try(d, req, 10000);
	CHECK(r != NULL, "no control reply from margind (%s)", d->state);
	json_t *e = json_object_get(r, "error");
	CHECK(e == NULL, "control error: %s: %s", json_string_value(json_object_get(e, "code")),
	      json_string_value(json_object_get(e, "message")));
	return r;
}

static void read_endpoint(daemon_t *d)
{
	char path[PATH_MAX + 16];
	snprintf(path, sizeof(path), "%s/endpoints", d->state);
	FILE *f = fopen(path, "r");
	CHECK(f != NULL, "%s missing", path);
	char line[512];
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "workers=", 8) == 0) {
			line[strcspn(line, "\n")] = '\0';
			snprintf(d->ep, sizeof(d->ep), "%s", line + 8);
		}
	fclose(f);
}

/* Starts margind on d->state; workers endpoint `ep` ("tcp://127.0.0.1:*"
 * for a fresh port). Waits until it answers health. */
static void daemon_start(daemon_t *d, const char *ep)
{
	char endpoints[PATH_MAX + 16];
	snprintf(endpoints, sizeof(endpoints), "%s/endpoints", d->state);
	unlink(endpoints);
	char *argv[40];
	int n = 0;
	argv[n++] = (char *)bin("MARGIND");
	argv[n++] = "--state-dir";
	argv[n++] = d->state;
	argv[n++] = "--workers";
	argv[n++] = (char *)ep;
	argv[n++] = "--http";
	argv[n++] = "127.0.0.1:0";
	argv[n++] = "--set";
	argv[n++] = "scheduler.heartbeat=200ms";
	bool curve = false;
	for (int i = 0; i < d->n_extra; i++) {
		argv[n++] = d->extra[i];
		curve |= strcmp(d->extra[i], "--curve-secret") == 0;
	}
	if (!curve)
		argv[n++] = "--no-curve";
	argv[n] = NULL;
	d->p = spawn("margind", d->log, argv, NULL);
	int64_t end = mg_clock_now_ns() + 15 * MG_NS_PER_S;
	for (;;) {
		CHECK(mg_clock_now_ns() < end, "margind did not come up");
		int st = wait_proc(d->p, 0);
		CHECK(st < 0, "margind exited with status %d", st);
		if (access(endpoints, R_OK) == 0) {
			json_t *r = ctl_try(d, json_pack("{s:s}", "cmd", "health"), 1000);
			bool ok = r && json_is_true(json_object_get(r, "ok"));
			json_decref(r);
			if (ok)
				break;
		}
		mg_clock_sleep_ns(20 * MG_NS_PER_MS);
	}
	read_endpoint(d);
}

static void daemon_init(daemon_t *d, const char *name)
{
	memset(d, 0, sizeof(*d));
	snprintf(d->state, sizeof(d->state), "%s/%.64s", tmp_root, name);
	snprintf(d->log, sizeof(d->log), "%s/%.64s.log", tmp_root, name);
}

/* --- workers ---------------------------------------------------------- */

/* margin-worker serve; model_args e.g. {"--arch","tiny","--fake",NULL}. */
static proc_t *worker_start(const daemon_t *d, const char *name, const char *const *model_args,
			    const char *const *extra)
{
	char log[PATH_MAX];
	snprintf(log, sizeof(log), "%s/%.64s.log", tmp_root, name);
	char *argv[40];
	int n = 0;
	argv[n++] = (char *)bin("MARGIN_WORKER");
	argv[n++] = "serve";
	argv[n++] = "--scheduler";
	argv[n++] = (char *)d->ep;
	argv[n++] = "--name";
	argv[n++] = (char *)name;
	argv[n++] = "--threads";
	argv[n++] = "1";
	bool curve = false;
	for (int i = 0; model_args && model_args[i]; i++)
		argv[n++] = (char *)model_args[i];
	for (int i = 0; extra && extra[i]; i++) {
		argv[n++] = (char *)extra[i];
		curve |= strcmp(extra[i], "--curve-secret") == 0;
	}
	if (!curve)
		argv[n++] = "--no-curve";
	argv[n] = NULL;
	static char *env[] = { "OPENBLAS_NUM_THREADS=1", NULL };
	return spawn(name, log, argv, env);
}

static const char *const FAKE[] = { "--arch", "tiny", "--fake", NULL };

static int n_workers(const daemon_t *d)
{
	json_t *r = ctl(d, json_pack("{s:s}", "cmd", "workers"));
	int n = (int)json_array_size(json_object_get(r, "workers"));
	json_decref(r);
	return n;
}

static void wait_workers(const daemon_t *d, int n)
{
	int64_t end = mg_clock_now_ns() + 20 * MG_NS_PER_S;
	while (n_workers(d) < n) {
		CHECK(mg_clock_now_ns() < end, "only %d of %d workers registered", n_workers(d), n);
		mg_clock_sleep_ns(20 * MG_NS_PER_MS);
	}
}

/* The model name the first worker advertises. */
static char *worker_model(const daemon_t *d)
{
	json_t *r = ctl(d, json_pack("{s:s}", "cmd", "workers"));
	json_t *m = json_array_get(json_object_get(json_array_get(json_object_get(r, "workers"), 0), "models"), 0);
	char *name = strdup(json_string_value(json_object_get(m, "name")));
	json_decref(r);
	return name;
}

/* --- jobs ------------------------------------------------------------- */

/* n requests, a mix of chat and (when completions) prompts; every 3rd has
 * an explicit seed, every 4th is greedy. */
static void write_input(const char *path, int n, const char *model, int max_tokens, bool chat)
{
	FILE *f = fopen(path, "w");
	CHECK(f != NULL, "%s: %s", path, strerror(errno));
	for (int i = 0; i < n; i++) {
		char extra[96] = "";
		if (i % 3 == 0)
			snprintf(extra, sizeof(extra), ",\"seed\":%d", 1000 + i);
		if (i % 4 == 0)
			strcat(extra, ",\"temperature\":0");
		if (chat)
			fprintf(f, "{\"custom_id\":\"req-%05d\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
				   "\"body\":{\"model\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"Tell story %d\"}],"
				   "\"max_tokens\":%d%s}}\n", i, model, i, max_tokens, extra);
		else
			fprintf(f, "{\"custom_id\":\"req-%05d\",\"method\":\"POST\",\"url\":\"/v1/completions\","
				   "\"body\":{\"model\":\"%s\",\"prompt\":\"Once upon a time %d\","
				   "\"max_tokens\":%d%s}}\n", i, model, i, max_tokens, extra);
	}
	fclose(f);
}

static void submit(const daemon_t *d, const char *id, const char *input)
{
	json_t *r = ctl(d, json_pack("{s:s, s:s, s:s}", "cmd", "submit", "id", id, "input_path", input));
	json_decref(r);
}

static json_t *status(const daemon_t *d, const char *id)
{
	return ctl(d, json_pack("{s:s, s:s}", "cmd", "status", "id", id));
}

static json_int_t count(json_t *st, const char *k)
{
	return json_integer_value(json_object_get(json_object_get(st, "counts"), k));
}

static void wait_done_at_least(const daemon_t *d, const char *id, json_int_t n)
{
	int64_t end = mg_clock_now_ns() + 60 * MG_NS_PER_S;
	for (;;) {
		json_t *st = status(d, id);
		json_int_t done = count(st, "done");
		const char *state = json_string_value(json_object_get(st, "state"));
		bool finished = strcmp(state, "completed") == 0 || strcmp(state, "failed") == 0;
		json_decref(st);
		if (done >= n || finished)
			return;
		CHECK(mg_clock_now_ns() < end, "job %s: only %lld done", id, (long long)done);
		mg_clock_sleep_ns(10 * MG_NS_PER_MS);
	}
}

static void wait_completed(const daemon_t *d, const char *id, int timeout_s)
{
	int64_t end = mg_clock_now_ns() + (int64_t)timeout_s * MG_NS_PER_S;
	for (;;) {
		json_t *st = status(d, id);
		const char *state = json_string_value(json_object_get(st, "state"));
		if (strcmp(state, "completed") == 0) {
			json_decref(st);
			return;
		}
		CHECK(strcmp(state, "failed") != 0 && strcmp(state, "cancelled") != 0,
		      "job %s ended %s", id, state);
		CHECK(mg_clock_now_ns() < end, "job %s still %s (%lld/%lld done) after %d s", id, state,
		      (long long)count(st, "done"), (long long)count(st, "total"), timeout_s);
		json_decref(st);
		mg_clock_sleep_ns(20 * MG_NS_PER_MS);
	}
}

/* All results of a job, in line order: a JSON array of result objects. */
static json_t *results(const daemon_t *d, const char *id)
{
	json_t *all = json_array();
	json_int_t after = 0;
	for (;;) {
		json_t *r = ctl(d, json_pack("{s:s, s:s, s:I, s:i}", "cmd", "results", "id", id,
					     "after", after, "limit", 1000));
		json_t *arr = json_object_get(r, "results");
		json_array_extend(all, arr);
		bool more = json_is_true(json_object_get(r, "has_more"));
		if (json_is_integer(json_object_get(r, "last_line")))
			after = json_integer_value(json_object_get(r, "last_line"));
		json_decref(r);
		if (!more)
			return all;
	}
}

/* Every custom_id req-00000..req-(n-1) answered exactly once, done, with a
 * non-empty output. */
static void check_exactly_once(json_t *res, int n)
{
	CHECK((int)json_array_size(res) == n, "%zu results for %d requests", json_array_size(res), n);
	char *seen = calloc((size_t)n, 1);
	size_t i;
	json_t *o;
	json_array_foreach(res, i, o) {
		const char *cid = json_string_value(json_object_get(o, "custom_id"));
		const char *state = json_string_value(json_object_get(o, "state"));
		int k = -1;
		CHECK(cid && sscanf(cid, "req-%d", &k) == 1 && k >= 0 && k < n, "unknown custom_id %s", cid);
		CHECK(!seen[k], "custom_id %s twice", cid);
		seen[k] = 1;
		CHECK(strcmp(state, "done") == 0, "%s is %s: %s", cid, state,
		      json_string_value(json_object_get(json_object_get(o, "error"), "message")));
		CHECK(json_integer_value(json_object_get(o, "completion_tokens")) >= 1, "%s has no tokens", cid);
	}
	for (int k = 0; k < n; k++)
		CHECK(seen[k], "req-%05d never answered", k);
	free(seen);
}

/* Same custom_id -> same text in both runs. */
static void check_same_outputs(json_t *a, json_t *b)
{
	CHECK(json_array_size(a) == json_array_size(b), "%zu vs %zu results", json_array_size(a), json_array_size(b));
	size_t i;
	json_t *o;
	int diff = 0;
	json_array_foreach(a, i, o) {
		json_t *p = json_array_get(b, i);
		const char *ca = json_string_value(json_object_get(o, "custom_id"));
		const char *cb = json_string_value(json_object_get(p, "custom_id"));
		const char *ta = json_string_value(json_object_get(o, "text"));
		const char *tb = json_string_value(json_object_get(p, "text"));
		CHECK(strcmp(ca, cb) == 0, "line %zu: %s vs %s", i, ca, cb);
		if (ta == NULL || tb == NULL || strcmp(ta, tb) != 0) {
			if (diff++ < 3)
				note("%s differs: \"%s\" vs \"%s\"", ca, ta ? ta : "(null)", tb ? tb : "(null)");
		}
	}
	CHECK(diff == 0, "%d outputs differ from the undisturbed run", diff);
}

/* Rows in the ledger of a job, read from the journal file (the daemon may
 * be stopped). */
static long long ledger_rows(const daemon_t *d, const char *id)
{
	char cmd[PATH_MAX * 2];
	snprintf(cmd, sizeof(cmd), "sqlite3 '%s/margin.db' \"SELECT count(*), count(DISTINCT custom_id) FROM ledger WHERE job='%s'\"",
		 d->state, id);
	FILE *p = popen(cmd, "r");
	if (p == NULL)
		return -1;
	long long n = -1, distinct = -2;
	if (fscanf(p, "%lld|%lld", &n, &distinct) != 2)
		n = -1;
	pclose(p);
	return n == distinct ? n : -1;
}

/* An undisturbed run of the same job (id and input) on a fresh daemon and
 * one worker of the same kind: the reference outputs. */
static json_t *reference_run(const char *name, const char *id, const char *input, int n,
			     const char *const *model_args)
{
	daemon_t d;
	daemon_init(&d, name);
	daemon_start(&d, "tcp://127.0.0.1:*");
	char wname[64];
	snprintf(wname, sizeof(wname), "%s-w", name);
	proc_t *w = worker_start(&d, wname, model_args, NULL);
	wait_workers(&d, 1);
	submit(&d, id, input);
	wait_completed(&d, id, 120);
	json_t *res = results(&d, id);
	check_exactly_once(res, n);
	kill9(w);
	kill(d.p->pid, SIGTERM);
	CHECK(wait_proc(d.p, 10000) == 0, "reference margind did not drain and exit 0");
	return res;
}

/* --- scenarios -------------------------------------------------------- */

/* 1000 requests over two fake workers: every custom_id once; both work. */
static int sc_fake_1000(void)
{
	daemon_t d;
	daemon_init(&d, "d");
	daemon_start(&d, "tcp://127.0.0.1:*");
	worker_start(&d, "w1", FAKE, NULL);
	worker_start(&d, "w2", FAKE, NULL);
	wait_workers(&d, 2);
	char input[PATH_MAX];
	snprintf(input, sizeof(input), "%s/in.jsonl", tmp_root);
	char *model = worker_model(&d);
	write_input(input, 1000, model, 16, true);
	free(model);
	submit(&d, "job1", input);
	wait_completed(&d, "job1", 60);
	json_t *res = results(&d, "job1");
	check_exactly_once(res, 1000);
	json_decref(res);
	json_t *w = ctl(&d, json_pack("{s:s}", "cmd", "workers"));
	size_t i;
	json_t *o;
	json_array_foreach(json_object_get(w, "workers"), i, o)
		CHECK(json_integer_value(json_object_get(o, "requests_done")) > 0, "worker %s did no work",
		      json_string_value(json_object_get(o, "name")));
	json_decref(w);
	CHECK(ledger_rows(&d, "job1") == 1000, "ledger has %lld rows", ledger_rows(&d, "job1"));
	return 0;
}

/* The same with a real tiny model (stories260K), and three greedy
 * requests checked against `margin-worker run` on the same prompt. */
static int sc_model_1000(void)
{
	const char *gguf = cu_shared_path("models/stories260K.gguf");
	CHECK(access(gguf, R_OK) == 0, "%s: %s", gguf, strerror(errno));
	const char *model_args[] = { "--model", gguf, "--slots", "16", NULL };
	daemon_t d;
	daemon_init(&d, "d");
	daemon_start(&d, "tcp://127.0.0.1:*");
	worker_start(&d, "w1", model_args, NULL);
	worker_start(&d, "w2", model_args, NULL);
	wait_workers(&d, 2);
	char input[PATH_MAX];
	snprintf(input, sizeof(input), "%s/in.jsonl", tmp_root);
	char *model = worker_model(&d);
	write_input(input, 1000, model, 8, false);
	free(model);
	submit(&d, "job1", input);
	wait_completed(&d, "job1", 120);
	json_t *res = results(&d, "job1");
	check_exactly_once(res, 1000);
	for (int k = 0; k < 12; k += 4) {	/* every 4th request is greedy */
		char cmd[PATH_MAX * 2], out[PATH_MAX];
		snprintf(out, sizeof(out), "%s/run%d.json", tmp_root, k);
		snprintf(cmd, sizeof(cmd), "OPENBLAS_NUM_THREADS=1 '%s' run --model '%s' --prompt 'Once upon a time %d' -n 8 --json > '%s' 2>/dev/null",
			 bin("MARGIN_WORKER"), gguf, k, out);
		CHECK(system(cmd) == 0, "margin-worker run failed: %s", cmd);
		json_t *ref = json_load_file(out, 0, NULL);
		CHECK(ref != NULL, "margin-worker run printed no JSON");
		const char *want = json_string_value(json_object_get(ref, "text"));
		const char *got = json_string_value(json_object_get(json_array_get(res, (size_t)k), "text"));
		CHECK(want && got && strcmp(want, got) == 0,
		      "req-%05d: daemon text \"%s\" vs margin-worker run \"%s\"", k, got ? got : "", want ? want : "");
		json_decref(ref);
	}
	json_decref(res);
	return 0;
}

static const char *const SLOW_FAKE[] = { "--arch", "tiny", "--fake", "--fake-delay", "15ms", NULL };

/* One worker killed -9 mid-job: the other finishes, exactly once, same
 * outputs as an undisturbed run. */
static int sc_worker_kill(void)
{
	char input[PATH_MAX];
	snprintf(input, sizeof(input), "%s/in.jsonl", tmp_root);
	write_input(input, 1000, "tiny", 16, true);
	json_t *ref = reference_run("ref", "job1", input, 1000, FAKE);
	daemon_t d;
	daemon_init(&d, "d");
	d.extra[d.n_extra++] = "--set";
	d.extra[d.n_extra++] = "scheduler.shard_requests=16";
	daemon_start(&d, "tcp://127.0.0.1:*");
	proc_t *w1 = worker_start(&d, "w1", SLOW_FAKE, NULL);
	worker_start(&d, "w2", SLOW_FAKE, NULL);
	wait_workers(&d, 2);
	submit(&d, "job1", input);
	wait_done_at_least(&d, "job1", 300);
	note("killing w1 with SIGKILL");
	kill9(w1);
	wait_completed(&d, "job1", 60);
	json_t *res = results(&d, "job1");
	check_exactly_once(res, 1000);
	check_same_outputs(res, ref);
	CHECK(log_has(d.log, "worker lost"), "the daemon never logged w1 lost");
	CHECK(log_has(d.log, "shard requeued"), "w1 held no shard when it was killed: nothing was tested");
	CHECK(ledger_rows(&d, "job1") == 1000, "ledger has %lld rows", ledger_rows(&d, "job1"));
	json_decref(res);
	json_decref(ref);
	return 0;
}

/* A worker that stops answering (SIGSTOP): declared dead after liveness,
 * its shards requeued; when it wakes up its stale Results change nothing. */
static int sc_worker_stop(void)
{
	char input[PATH_MAX];
	snprintf(input, sizeof(input), "%s/in.jsonl", tmp_root);
	write_input(input, 600, "tiny", 16, true);
	json_t *ref = reference_run("ref", "job1", input, 600, FAKE);
	daemon_t d;
	daemon_init(&d, "d");
	d.extra[d.n_extra++] = "--set";
	d.extra[d.n_extra++] = "scheduler.shard_requests=16";
	daemon_start(&d, "tcp://127.0.0.1:*");
	proc_t *w1 = worker_start(&d, "w1", SLOW_FAKE, NULL);
	worker_start(&d, "w2", SLOW_FAKE, NULL);
	wait_workers(&d, 2);
	submit(&d, "job1", input);
	wait_done_at_least(&d, "job1", 150);
	note("stopping w1 with SIGSTOP");
	kill(w1->pid, SIGSTOP);
	int64_t t0 = mg_clock_now_ns();
	while (!log_has_both(d.log, "worker lost", "heartbeat timeout")) {
		CHECK(mg_clock_now_ns() - t0 < 10 * MG_NS_PER_S, "w1 was never declared dead");
		mg_clock_sleep_ns(20 * MG_NS_PER_MS);
	}
	note("w1 declared dead after %.2f s", (double)(mg_clock_now_ns() - t0) / 1e9);
	CHECK(log_has(d.log, "shard requeued"), "w1 held no shard when it stopped: nothing was tested");
	wait_completed(&d, "job1", 60);
	kill(w1->pid, SIGCONT);
	/* Let it wake up, re-send what it held, and reconnect. */
	wait_workers(&d, 2);
	json_t *res = results(&d, "job1");
	check_exactly_once(res, 600);
	check_same_outputs(res, ref);
	CHECK(ledger_rows(&d, "job1") == 600, "ledger has %lld rows", ledger_rows(&d, "job1"));
	json_decref(res);
	json_decref(ref);
	return 0;
}

/* margind killed -9 mid-job and restarted on the same state directory and
 * port: the job finishes, nothing committed is lost or repeated, outputs
 * identical to an undisturbed run. */
static int sc_daemon_kill(void)
{
	char input[PATH_MAX];
	snprintf(input, sizeof(input), "%s/in.jsonl", tmp_root);
	write_input(input, 1000, "tiny", 16, true);
	json_t *ref = reference_run("ref", "job1", input, 1000, FAKE);
	daemon_t d;
	daemon_init(&d, "d");
	d.extra[d.n_extra++] = "--set";
	d.extra[d.n_extra++] = "scheduler.shard_requests=16";
	daemon_start(&d, "tcp://127.0.0.1:*");
	char ep[512];
	snprintf(ep, sizeof(ep), "%s", d.ep);
	worker_start(&d, "w1", SLOW_FAKE, NULL);
	worker_start(&d, "w2", SLOW_FAKE, NULL);
	wait_workers(&d, 2);
	submit(&d, "job1", input);
	wait_done_at_least(&d, "job1", 300);
	json_t *st = status(&d, "job1");
	note("killing margind with SIGKILL at %lld done, %lld in flight", (long long)count(st, "done"),
	     (long long)count(st, "in_flight"));
	json_decref(st);
	kill9(d.p);
	daemon_start(&d, ep);
	CHECK(strcmp(d.ep, ep) == 0, "restarted on %s, not %s", d.ep, ep);
	CHECK(log_has(d.log, "batch resumed"), "no 'batch resumed' line after the restart");
	CHECK(!log_has(d.log, "shards_requeued=0"), "no shard was in flight at the kill: nothing was tested");
	wait_completed(&d, "job1", 60);
	json_t *res = results(&d, "job1");
	check_exactly_once(res, 1000);
	check_same_outputs(res, ref);
	CHECK(ledger_rows(&d, "job1") == 1000, "ledger has %lld rows (want 1000, one per custom_id)",
	      ledger_rows(&d, "job1"));
	json_decref(res);
	json_decref(ref);
	return 0;
}

/* Raw frames on the worker endpoint: garbage, empty, multipart, larger
 * than a Hello from a peer that has not said one (dropped undecoded, logged
 * with the sender's identity and answered with Bye), larger than max_frame
 * (the connection is cut), a wrong protocol version (Bye). A real worker
 * keeps being served throughout. */
static int sc_garbage(void)
{
	daemon_t d;
	daemon_init(&d, "d");
	d.extra[d.n_extra++] = "--set";
	d.extra[d.n_extra++] = "scheduler.max_frame=65536";
	/* debug: margind logs each accepted connection, the barrier below */
	const char *level = getenv("MARGIN_LOG_LEVEL");
	char saved_level[16];
	snprintf(saved_level, sizeof(saved_level), "%s", level != NULL ? level : "info");
	setenv("MARGIN_LOG_LEVEL", "debug", 1);
	daemon_start(&d, "tcp://127.0.0.1:*");
	setenv("MARGIN_LOG_LEVEL", saved_level, 1);
	worker_start(&d, "w1", FAKE, NULL);
	wait_workers(&d, 1);
	char input[PATH_MAX];
	snprintf(input, sizeof(input), "%s/in.jsonl", tmp_root);
	write_input(input, 300, "tiny", 16, true);
	submit(&d, "job1", input);

	void *ctx = zmq_ctx_new();
	void *s = zmq_socket(ctx, ZMQ_DEALER);
	int linger = 0, rcvto = 3000;
	zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger));
	zmq_setsockopt(s, ZMQ_RCVTIMEO, &rcvto, sizeof(rcvto));
	zmq_setsockopt(s, ZMQ_ROUTING_ID, "garbage-peer", 12);
	CHECK(zmq_connect(s, d.ep) == 0, "connect %s", d.ep);
	zmq_send(s, "\xff\x01not protobuf", 14, 0);
	zmq_send(s, "", 0, 0);
	zmq_send(s, "part1", 5, ZMQ_SNDMORE);
	zmq_send(s, "part2", 5, 0);
	size_t big = 20 * 1024;	/* over the Hello limit, under max_frame */
	char *buf = calloc(1, 400 * 1024);
	zmq_send(s, buf, big, 0);
	zmq_msg_t rm;
	zmq_msg_init(&rm);
	CHECK(zmq_msg_recv(&rm, s, 0) > 0, "no answer to a 20 KiB frame before Hello");
	mg_msg_t *reply = NULL;
	char err[256];
	CHECK(mg_wire_unpack(zmq_msg_data(&rm), zmq_msg_size(&rm), MG_WIRE_MAX_FRAME, &reply, err, sizeof(err)) == 0,
	      "the answer does not decode: %s", err);
	CHECK(reply->body_case == MARGIN__V1__MSG__BODY_BYE && strstr(reply->bye->reason, "before Hello") != NULL,
	      "the answer to a 20 KiB frame before Hello is not a Bye that says so (%s)", mg_wire_body_name(reply));
	mg_wire_free(&reply);
	/* A Hello of an unknown protocol version: answered with Bye. */
	Margin__V1__ModelInfo mi = MARGIN__V1__MODEL_INFO__INIT, *mis[1] = { &mi };
	mi.name = "tiny";
	Margin__V1__Hello h = MARGIN__V1__HELLO__INIT;
	h.proto_version = 99;
	h.worker_name = "v99";
	h.n_models = 1;
	h.models = mis;
	h.slots = 1;
	h.instance_id = 1;
	mg_msg_t hm = MARGIN__V1__MSG__INIT;
	hm.body_case = MARGIN__V1__MSG__BODY_HELLO;
	hm.hello = &h;
	CHECK(mg_wire_send(s, &hm, 0) == 0, "sending a Hello");
	CHECK(zmq_msg_recv(&rm, s, 0) > 0, "no answer to a Hello of version 99");
	CHECK(mg_wire_unpack(zmq_msg_data(&rm), zmq_msg_size(&rm), MG_WIRE_MAX_FRAME, &reply, err, sizeof(err)) == 0,
	      "the answer does not decode: %s", err);
	zmq_msg_close(&rm);
	CHECK(reply->body_case == MARGIN__V1__MSG__BODY_BYE && strstr(reply->bye->reason, "version") != NULL,
	      "the answer to a version-99 Hello is not a Bye naming the version (%s)", mg_wire_body_name(reply));
	mg_wire_free(&reply);
	/* Far over the cap: libzmq cuts this connection. */
	zmq_send(s, buf, 400 * 1024, 0);
	free(buf);

	wait_completed(&d, "job1", 60);
	json_t *res = results(&d, "job1");
	check_exactly_once(res, 300);
	json_decref(res);
	CHECK(log_has_both(d.log, "dropped a frame", "peer=garbage-peer"),
	      "garbage not logged with the peer identity");
	CHECK(log_has_both(d.log, "a message of 2 frames", "garbage-peer"), "multipart not logged");
	CHECK(log_has_both(d.log, "a frame of 20480 bytes before Hello", "garbage-peer"),
	      "a frame over the Hello limit not logged");
	CHECK(log_has_both(d.log, "empty frame", "garbage-peer"), "empty frame not logged");
	CHECK(log_has_both(d.log, "refused a worker", "version 99"), "version refusal not logged");
	int64_t end = mg_clock_now_ns() + 5 * MG_NS_PER_S;
	while (!log_has(d.log, "worker connection closed")) {
		CHECK(mg_clock_now_ns() < end, "the far-oversized frame did not close its connection");
		mg_clock_sleep_ns(20 * MG_NS_PER_MS);
	}
	/* 30 connections that open a ZMTP 3.0 greeting for the PLAIN
	 * mechanism, which this NULL endpoint refuses (a misconfigured client
	 * retrying, a scanner): each refused, one log line for them all (then
	 * one a minute), not 30. */
	unsigned port = 0;
	CHECK(sscanf(d.ep, "tcp://127.0.0.1:%u", &port) == 1, "endpoint %s", d.ep);
	unsigned char greet[64] = { 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0x7f, 3, 0, 'P', 'L', 'A', 'I', 'N' };
	for (int i = 0; i < 30; i++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
		inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
		CHECK(fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "raw connect to %s", d.ep);
		struct timeval tv = { .tv_sec = 1 };
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		CHECK(write(fd, greet, sizeof(greet)) == (ssize_t)sizeof(greet), "raw write");
		char sink[256];
		while (read(fd, sink, sizeof(sink)) > 0)	/* until the daemon hangs up (or 1 s) */
			;
		close(fd);
	}
	end = mg_clock_now_ns() + 5 * MG_NS_PER_S;
	while (log_count(d.log, "handshake failed") + log_count(d.log, "failed its handshake") == 0) {
		CHECK(mg_clock_now_ns() < end, "the non-ZMTP connections were not logged");
		mg_clock_sleep_ns(20 * MG_NS_PER_MS);
	}
	/* A barrier, not a sleep: margind reads its socket monitor's events in
	 * order, so once it logs the accept of one more connection, opened
	 * after the 30 were hung up on, it has handled every event of theirs. */
	int last = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) }, me;
	socklen_t me_len = sizeof(me);
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	CHECK(last >= 0 && connect(last, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	      getsockname(last, (struct sockaddr *)&me, &me_len) == 0, "raw connect to %s", d.ep);
	char accepted[64];
	snprintf(accepted, sizeof(accepted), "accepted\" peer=127.0.0.1:%u\n", (unsigned)ntohs(me.sin_port));
	end = mg_clock_now_ns() + 5 * MG_NS_PER_S;
	while (!log_has(d.log, accepted)) {
		CHECK(mg_clock_now_ns() < end, "margind did not log the connection after the 30 refused ones");
		mg_clock_sleep_ns(20 * MG_NS_PER_MS);
	}
	close(last);
	int lines = log_count(d.log, "handshake failed") + log_count(d.log, "failed its handshake");
	CHECK(lines >= 1 && lines <= 2, "30 refused connections gave %d log lines", lines);
	/* And the daemon still serves a new job. */
	submit(&d, "job2", input);
	wait_completed(&d, "job2", 60);
	zmq_close(s);
	zmq_ctx_term(ctx);
	return 0;
}

/* A raw peer on ep with routing id rid: sends m, returns the first answer
 * (NULL after 3 s of silence). */
static void *raw_peer(void *ctx, const char *ep, const char *rid)
{
	void *s = zmq_socket(ctx, ZMQ_DEALER);
	int linger = 0, rcvto = 3000;
	zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger));
	zmq_setsockopt(s, ZMQ_RCVTIMEO, &rcvto, sizeof(rcvto));
	zmq_setsockopt(s, ZMQ_ROUTING_ID, rid, strlen(rid));
	CHECK(zmq_connect(s, ep) == 0, "connect %s", ep);
	return s;
}

static mg_msg_t *raw_answer(void *s)
{
	zmq_msg_t rm;
	zmq_msg_init(&rm);
	mg_msg_t *reply = NULL;
	char err[256];
	if (zmq_msg_recv(&rm, s, 0) >= 0)
		CHECK(mg_wire_unpack(zmq_msg_data(&rm), zmq_msg_size(&rm), MG_WIRE_MAX_FRAME, &reply, err,
				     sizeof(err)) == 0, "margind's answer does not decode: %s", err);
	zmq_msg_close(&rm);
	return reply;
}

static mg_msg_t *raw_hello(void *s, Margin__V1__Hello *h)
{
	mg_msg_t m = MARGIN__V1__MSG__INIT;
	m.body_case = MARGIN__V1__MSG__BODY_HELLO;
	m.hello = h;
	/* mg_wire_send would refuse nothing: margind is what is tested */
	CHECK(mg_wire_send(s, &m, 0) == 0, "sending a Hello");
	return raw_answer(s);
}

static void check_bye(mg_msg_t **reply, const char *what, const char *want)
{
	CHECK(*reply != NULL, "%s: no answer", what);
	CHECK((*reply)->body_case == MARGIN__V1__MSG__BODY_BYE, "%s: answered with %s, not Bye", what,
	      mg_wire_body_name(*reply));
	CHECK(strstr((*reply)->bye->reason, want) != NULL, "%s: Bye says \"%s\", not \"%s\"", what,
	      (*reply)->bye->reason, want);
	note("%s: Bye{\"%s\"}", what, (*reply)->bye->reason);
	mg_wire_free(reply);
}

static long vm_kib(pid_t pid, const char *field)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	long v = -1;
	while (f && fgets(line, sizeof(line), f))
		if (strncmp(line, field, strlen(field)) == 0)
			v = strtol(line + strlen(field) + 1, NULL, 10);
	if (f)
		fclose(f);
	return v;
}

/* What a worker says in its Hello is bounded (docs/protocol.md, Limits):
 * beyond the limits margind answers Bye naming the field and registers
 * nothing; before a Hello is accepted, a frame larger than the largest
 * Hello is dropped undecoded. A worker's name cannot add log fields. */
static int sc_hello_limits(void)
{
	daemon_t d;
	daemon_init(&d, "d");
	daemon_start(&d, "tcp://127.0.0.1:*");
	void *ctx = zmq_ctx_new();
	Margin__V1__ModelInfo mi = MARGIN__V1__MODEL_INFO__INIT, *mis[1] = { &mi };
	mi.name = "tiny";
	Margin__V1__Hello h = MARGIN__V1__HELLO__INIT;
	h.proto_version = MG_PROTO_VERSION;
	h.worker_name = "raw";
	h.n_models = 1;
	h.models = mis;
	h.slots = 4294967295u;
	h.instance_id = 7;
	void *s1 = raw_peer(ctx, d.ep, "slots-peer");
	mg_msg_t *reply = raw_hello(s1, &h);
	check_bye(&reply, "slots=4294967295", "slots = 4294967295: expected 1 to 4096");
	h.slots = 4;

	/* 20,000 models: 100 KB, dropped before it is decoded */
	enum { MANY = 20000 };
	Margin__V1__ModelInfo *many = calloc(MANY, sizeof(*many));
	Margin__V1__ModelInfo **pm = calloc(MANY, sizeof(*pm));
	CHECK(many != NULL && pm != NULL, "out of memory");
	for (int i = 0; i < MANY; i++) {
		margin__v1__model_info__init(&many[i]);
		many[i].name = "tiny";
		pm[i] = &many[i];
	}
	h.models = pm;
	h.n_models = MANY;
	void *s2 = raw_peer(ctx, d.ep, "models-peer");
	reply = raw_hello(s2, &h);
	check_bye(&reply, "20000 models", "before Hello: at most 8192 bytes");
	/* 17 models fit the frame limit: refused by the count */
	h.n_models = 17;
	reply = raw_hello(s2, &h);
	check_bye(&reply, "17 models", "17 models: at most 16");
	h.models = mis;
	h.n_models = 1;
	json_t *w = ctl(&d, json_pack("{s:s}", "cmd", "workers"));
	CHECK(json_array_size(json_object_get(w, "workers")) == 0, "a refused Hello registered a worker");
	json_decref(w);

	/* A name and a Bye reason that try to add log fields are values. */
	h.worker_name = "evil level=error admin=1";
	void *s3 = raw_peer(ctx, d.ep, "evil-peer");
	reply = raw_hello(s3, &h);
	CHECK(reply != NULL && reply->body_case == MARGIN__V1__MSG__BODY_WELCOME,
	      "a Hello within the limits was not welcomed");
	mg_wire_free(&reply);
	Margin__V1__Bye b = MARGIN__V1__BYE__INIT;
	b.reason = "done\" injected=\"1\nts=2000-01-01T00:00:00Z level=error msg=\"forged";
	mg_msg_t bm = MARGIN__V1__MSG__INIT;
	bm.body_case = MARGIN__V1__MSG__BODY_BYE;
	bm.bye = &b;
	CHECK(mg_wire_send(s3, &bm, 0) == 0, "sending Bye");
	int64_t end = mg_clock_now_ns() + 5 * MG_NS_PER_S;
	while (!log_has(d.log, "worker said bye")) {
		CHECK(mg_clock_now_ns() < end, "the Bye was not logged");
		mg_clock_sleep_ns(20 * MG_NS_PER_MS);
	}
	CHECK(log_has(d.log, "name=\"evil level=error admin=1\""), "the worker's name is not one quoted value");
	CHECK(log_has(d.log, "reason=\"worker said bye: done\\\" injected=\\\"1\\nts=2000-01-01T00:00:00Z level=error msg=\\\"forged\""),
	      "the Bye reason is not escaped");
	CHECK(!log_has(d.log, "msg=\"forged"), "a Bye reason forged a log line");
	FILE *lf = fopen(d.log, "r");
	char *line = NULL;
	size_t cap = 0;
	while (lf != NULL && getline(&line, &cap, lf) > 0)
		CHECK(strncmp(line, "ts=2000", 7) != 0, "a Bye reason started a log line: %s", line);
	free(line);
	if (lf != NULL)
		fclose(lf);

	/* A real worker whose name is over the limit ends with the reason. */
	char longname[200];
	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	proc_t *lw = worker_start(&d, longname, FAKE, NULL);
	CHECK(wait_proc(lw, 15000) == 1, "a worker named with 199 bytes did not exit 1");
	CHECK(log_has(lw->log, "worker_name is 199 bytes long: expected 1 to 127"),
	      "the worker does not say why it was refused");

	/* Junk before Hello: three frames of max_frame (64 MiB), never decoded. */
	long hwm0 = vm_kib(d.p->pid, "VmHWM:");
	char *junk = malloc(MG_WIRE_MAX_FRAME);
	CHECK(junk != NULL, "out of memory");
	memset(junk, 0x0a, MG_WIRE_MAX_FRAME);	/* field 1, length-delimited: "a Hello" */
	void *s4 = raw_peer(ctx, d.ep, "junk-peer");
	for (int i = 0; i < 3; i++)
		CHECK(zmq_send(s4, junk, MG_WIRE_MAX_FRAME, 0) == (int)MG_WIRE_MAX_FRAME, "sending junk");
	free(junk);
	for (int i = 0; i < 3; i++) {
		reply = raw_answer(s4);
		check_bye(&reply, "a 64 MiB frame before Hello", "before Hello");
	}
	long hwm1 = vm_kib(d.p->pid, "VmHWM:");
	note("margind peak memory (VmHWM): %ld MiB before, %ld MiB after three 64 MiB frames before Hello",
	     hwm0 / 1024, hwm1 / 1024);
	/* Still serving. */
	worker_start(&d, "w1", FAKE, NULL);
	wait_workers(&d, 1);
	char input[PATH_MAX];
	snprintf(input, sizeof(input), "%s/in.jsonl", tmp_root);
	write_input(input, 50, "tiny", 8, false);
	submit(&d, "job1", input);
	wait_completed(&d, "job1", 60);
	free(pm);
	free(many);
	zmq_close(s1);
	zmq_close(s2);
	zmq_close(s3);
	zmq_close(s4);
	zmq_ctx_term(ctx);
	return 0;
}

static void keygen(const char *name, const char *dir)
{
	char cmd[PATH_MAX * 2];
	snprintf(cmd, sizeof(cmd), "'%s' keygen %s -o '%s' > /dev/null", bin("MARGINCTL"), name, dir);
	CHECK(system(cmd) == 0, "marginctl keygen %s failed", name);
}

static void read_key(const char *path, char out[41])
{
	FILE *f = fopen(path, "r");
	CHECK(f != NULL, "%s: %s", path, strerror(errno));
	char line[128] = "";
	CHECK(fgets(line, sizeof(line), f) != NULL, "%s empty", path);
	fclose(f);
	line[strcspn(line, "\n")] = '\0';
	CHECK(strlen(line) == 40, "%s: %zu characters, want 40", path, strlen(line));
	snprintf(out, 41, "%s", line);
}

/* A scanner: n connections to ep, each with a new random CURVE key, 25 at a
 * time. Returns how many the server refused (each client's monitor sees its
 * handshake fail on authentication). */
static int curve_scan(const char *ep, const char *server_pub, int n)
{
	enum { WAVE = 25 };
	void *ctx = zmq_ctx_new();
	int refused = 0;
	for (int done = 0; done < n; done += WAVE) {
		void *s[WAVE], *mon[WAVE];
		int k = n - done < WAVE ? n - done : WAVE;
		for (int i = 0; i < k; i++) {
			char pub[41], sec[41], mep[64];
			int linger = 0, rcvto = 5000;
			CHECK(zmq_curve_keypair(pub, sec) == 0, "zmq_curve_keypair");
			s[i] = zmq_socket(ctx, ZMQ_DEALER);
			zmq_setsockopt(s[i], ZMQ_LINGER, &linger, sizeof(linger));
			zmq_setsockopt(s[i], ZMQ_CURVE_SERVERKEY, server_pub, 40);
			zmq_setsockopt(s[i], ZMQ_CURVE_PUBLICKEY, pub, 40);
			zmq_setsockopt(s[i], ZMQ_CURVE_SECRETKEY, sec, 40);
			snprintf(mep, sizeof(mep), "inproc://scan-%d", done + i);
			CHECK(zmq_socket_monitor(s[i], mep, ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
						 ZMQ_EVENT_HANDSHAKE_SUCCEEDED) == 0, "monitor");
			mon[i] = zmq_socket(ctx, ZMQ_PAIR);
			zmq_setsockopt(mon[i], ZMQ_LINGER, &linger, sizeof(linger));
			zmq_setsockopt(mon[i], ZMQ_RCVTIMEO, &rcvto, sizeof(rcvto));
			CHECK(zmq_connect(mon[i], mep) == 0, "monitor connect");
			CHECK(zmq_connect(s[i], ep) == 0, "connect %s", ep);
		}
		for (int i = 0; i < k; i++) {
			zmq_msg_t ev;
			zmq_msg_init(&ev);
			if (zmq_msg_recv(&ev, mon[i], 0) >= 6) {
				uint16_t event;
				memcpy(&event, zmq_msg_data(&ev), 2);
				refused += event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
				if (zmq_msg_more(&ev)) {
					zmq_msg_close(&ev);
					zmq_msg_init(&ev);
					zmq_msg_recv(&ev, mon[i], 0);
				}
			}
			zmq_msg_close(&ev);
			zmq_socket_monitor(s[i], NULL, 0);
			zmq_close(mon[i]);
			zmq_close(s[i]);
		}
	}
	zmq_ctx_term(ctx);
	return refused;
}

/* CURVE: an allowed worker gets the work; a worker with an unknown key
 * and one with no key never do, and the refusals are logged (with the key):
 * the first, then one line a minute, however many keys a scanner tries. */
static int sc_curve(void)
{
	char keys[PATH_MAX], allow[PATH_MAX], wkeys[PATH_MAX];
	snprintf(keys, sizeof(keys), "%s/keys", tmp_root);
	snprintf(allow, sizeof(allow), "%s/allow", tmp_root);
	snprintf(wkeys, sizeof(wkeys), "%s/wkeys", tmp_root);
	keygen("margind", keys);
	keygen("good", allow);
	keygen("intruder", wkeys);
	char path[PATH_MAX + 32];
	struct stat st;
	snprintf(path, sizeof(path), "%s/good.key", allow);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600, "good.key mode %o, want 0600", st.st_mode & 0777);
	snprintf(path, sizeof(path), "%s/good.pub", allow);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0644, "good.pub mode %o, want 0644", st.st_mode & 0777);
	char refuse[64];
	snprintf(path, sizeof(path), "%s/intruder.pub", wkeys);
	read_key(path, refuse);
	/* keygen refuses to overwrite. */
	char cmd[PATH_MAX * 2];
	snprintf(cmd, sizeof(cmd), "'%s' keygen good -o '%s' 2>/dev/null", bin("MARGINCTL"), allow);
	CHECK(system(cmd) != 0, "keygen overwrote an existing key");

	char dsec[PATH_MAX + 16], dpub[PATH_MAX + 16], gsec[PATH_MAX + 16], isec[PATH_MAX + 16];
	snprintf(dsec, sizeof(dsec), "%s/margind.key", keys);
	snprintf(dpub, sizeof(dpub), "%s/margind.pub", keys);
	snprintf(gsec, sizeof(gsec), "%s/good.key", allow);
	snprintf(isec, sizeof(isec), "%s/intruder.key", wkeys);
	daemon_t d;
	daemon_init(&d, "d");
	d.extra[d.n_extra++] = "--curve-secret";
	d.extra[d.n_extra++] = dsec;
	d.extra[d.n_extra++] = "--curve-allow";
	d.extra[d.n_extra++] = allow;
	daemon_start(&d, "tcp://127.0.0.1:*");
	CHECK(log_has(d.log, "CURVE on the worker endpoint"), "CURVE not reported on");
	const char *good_args[] = { "--curve-secret", gsec, "--curve-server", dpub, NULL };
	const char *bad_args[] = { "--curve-secret", isec, "--curve-server", dpub, NULL };
	proc_t *bad = worker_start(&d, "intruder", FAKE, bad_args);
	proc_t *plain = worker_start(&d, "plain", FAKE, NULL);
	worker_start(&d, "good", FAKE, good_args);
	wait_workers(&d, 1);
	char input[PATH_MAX];
	snprintf(input, sizeof(input), "%s/in.jsonl", tmp_root);
	write_input(input, 300, "tiny", 16, true);
	submit(&d, "job1", input);
	wait_completed(&d, "job1", 60);
	json_t *res = results(&d, "job1");
	check_exactly_once(res, 300);
	json_decref(res);
	json_t *w = ctl(&d, json_pack("{s:s}", "cmd", "workers"));
	json_t *list = json_object_get(w, "workers");
	CHECK(json_array_size(list) == 1, "%zu workers registered, want only the allowed one", json_array_size(list));
	json_t *w0 = json_array_get(list, 0);
	CHECK(strcmp(json_string_value(json_object_get(w0, "name")), "good") == 0, "the registered worker is not 'good'");
	CHECK(strcmp(json_string_value(json_object_get(w0, "key")), "good") == 0, "the worker's key name is not 'good'");
	CHECK(json_integer_value(json_object_get(w0, "requests_done")) == 300, "the allowed worker did not do all the work");
	json_decref(w);
	int64_t end = mg_clock_now_ns() + 5 * MG_NS_PER_S;
	while (!log_has_both(d.log, "unknown CURVE key", refuse)) {
		CHECK(mg_clock_now_ns() < end, "no refusal logged with the intruder's key %s", refuse);
		mg_clock_sleep_ns(20 * MG_NS_PER_MS);
	}
	/* The plain worker: the server sees the mechanism mismatch, or (a race)
	 * the plain peer hangs up first and the server sees the handshake dropped. */
	while (!log_has(d.log, "no CURVE key") && !log_has(d.log, "dropped the CURVE handshake")) {
		CHECK(mg_clock_now_ns() < end, "the plain worker's refusal was not logged");
		mg_clock_sleep_ns(20 * MG_NS_PER_MS);
	}
	CHECK(!log_has(bad->log, "shard done") && !log_has(plain->log, "shard done"),
	      "a refused worker ran a shard");
	char spub[41];
	read_key(dpub, spub);
	int64_t t0 = mg_clock_now_ns();
	int refused = curve_scan(d.ep, spub, 200);
	CHECK(refused == 200, "%d of 200 random keys were refused", refused);
	/* No wait needed before counting: margind's ZAP handler logs (or
	 * throttles) each refusal before it answers, and every answer has
	 * reached its client (200 handshakes failed on authentication). */
	int lines = log_count(d.log, "unknown CURVE key");
	int minutes = (int)((mg_clock_now_ns() - t0) / (60 * MG_NS_PER_S));
	CHECK(lines <= 2 + minutes, "200 refused keys wrote %d log lines (want the first, then one a minute)",
	      lines);
	note("200 random CURVE keys refused, %d log line(s) about unknown keys", lines);
	return 0;
}

/* A state directory held by another margind: a clear error, exit 1. */
static int sc_lock(void)
{
	daemon_t d;
	daemon_init(&d, "d");
	daemon_start(&d, "tcp://127.0.0.1:*");
	char log[PATH_MAX];
	snprintf(log, sizeof(log), "%s/second.log", tmp_root);
	char *argv[] = { (char *)bin("MARGIND"), "--state-dir", d.state, "--workers", "tcp://127.0.0.1:*",
			 "--no-curve", NULL };
	proc_t *p = spawn("second", log, argv, NULL);
	int st = wait_proc(p, 10000);
	CHECK(st == 1, "a second margind on the same state dir exited %d, want 1", st);
	CHECK(log_has(log, "is in use by another margind"), "no clear error for a held state directory");
	/* Bad usage: exit 2. */
	char *argv2[] = { (char *)bin("MARGIND"), "--workers", "tcp://127.0.0.1:*", NULL };
	p = spawn("usage", log, argv2, NULL);
	CHECK(wait_proc(p, 10000) == 2, "margind without --state-dir did not exit 2");
	return 0;
}

/* sd_notify READY/STOPPING/RELOADING, SIGHUP reopens the log, SIGTERM
 * drains and exits 0. */
static int sc_signals(void)
{
	char sock[100];
	CHECK(strlen(tmp_root) < sizeof(sock) - 16, "TMPDIR too long for an AF_UNIX socket");
	snprintf(sock, sizeof(sock), "%.80s/notify.sock", tmp_root);
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	CHECK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "bind %s: %s", sock, strerror(errno));
	struct timeval tv = { 10, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	char env_notify[PATH_MAX + 32];
	snprintf(env_notify, sizeof(env_notify), "NOTIFY_SOCKET=%s", sock);
	daemon_t d;
	daemon_init(&d, "d");
	char logfile[PATH_MAX], moved[PATH_MAX + 8];
	snprintf(logfile, sizeof(logfile), "%s/margind-file.log", tmp_root);
	snprintf(moved, sizeof(moved), "%s.1", logfile);
	char *argv[] = { (char *)bin("MARGIND"), "--state-dir", d.state, "--workers", "tcp://127.0.0.1:*",
			 "--no-curve", "--log-file", logfile, NULL };
	char *env[] = { env_notify, "WATCHDOG_USEC=400000", NULL };
	/* Without WATCHDOG_PID the interval applies to whoever reads it. */
	proc_t *p = spawn("margind", d.log, argv, env);
	char buf[512];
	bool ready = false, watchdog = false;
	int64_t end = mg_clock_now_ns() + 10 * MG_NS_PER_S;
	while (!(ready && watchdog) && mg_clock_now_ns() < end) {
		ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
		if (n <= 0)
			break;
		buf[n] = '\0';
		ready |= strstr(buf, "READY=1") != NULL;
		watchdog |= strstr(buf, "WATCHDOG=1") != NULL;
	}
	CHECK(ready, "no READY=1 on NOTIFY_SOCKET");
	CHECK(watchdog, "no WATCHDOG=1 with WATCHDOG_USEC set");
	CHECK(log_has(logfile, "margind ready"), "--log-file did not get the log");
	CHECK(rename(logfile, moved) == 0, "rename the log");
	kill(p->pid, SIGHUP);
	bool reloading = false, ready2 = false;
	end = mg_clock_now_ns() + 10 * MG_NS_PER_S;
	while (!(reloading && ready2) && mg_clock_now_ns() < end) {
		ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
		if (n <= 0)
			break;
		buf[n] = '\0';
		reloading |= strstr(buf, "RELOADING=1") != NULL;
		if (reloading)
			ready2 |= strstr(buf, "READY=1") != NULL;
	}
	CHECK(reloading && ready2, "SIGHUP: no RELOADING=1 then READY=1");
	end = mg_clock_now_ns() + 5 * MG_NS_PER_S;
	while (!log_has(logfile, "log reopened")) {
		CHECK(mg_clock_now_ns() < end, "SIGHUP did not reopen the log file");
		mg_clock_sleep_ns(20 * MG_NS_PER_MS);
	}
	kill(p->pid, SIGTERM);
	bool stopping = false;
	end = mg_clock_now_ns() + 10 * MG_NS_PER_S;
	while (!stopping && mg_clock_now_ns() < end) {
		ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
		if (n <= 0)
			break;
		buf[n] = '\0';
		stopping |= strstr(buf, "STOPPING=1") != NULL;
	}
	CHECK(stopping, "SIGTERM: no STOPPING=1");
	CHECK(wait_proc(p, 10000) == 0, "margind did not exit 0 after SIGTERM");
	close(fd);
	return 0;
}

/* SIGTERM while shards are in flight: the daemon stops dispatching, waits
 * for them, exits 0; a restart finishes the job. */
static int sc_drain(void)
{
	char input[PATH_MAX];
	snprintf(input, sizeof(input), "%s/in.jsonl", tmp_root);
	write_input(input, 400, "tiny", 16, true);
	daemon_t d;
	daemon_init(&d, "d");
	d.extra[d.n_extra++] = "--set";
	d.extra[d.n_extra++] = "scheduler.shard_requests=16";
	daemon_start(&d, "tcp://127.0.0.1:*");
	char ep[512];
	snprintf(ep, sizeof(ep), "%s", d.ep);
	const char *slow[] = { "--arch", "tiny", "--fake", "--fake-delay", "100ms", NULL };
	worker_start(&d, "w1", slow, NULL);
	wait_workers(&d, 1);
	submit(&d, "job1", input);
	wait_done_at_least(&d, "job1", 32);
	kill(d.p->pid, SIGTERM);
	CHECK(wait_proc(d.p, 20000) == 0, "margind did not drain and exit 0");
	CHECK(log_has(d.log, "drained: no shards in flight"), "no drain line");
	daemon_start(&d, ep);
	wait_completed(&d, "job1", 60);
	json_t *res = results(&d, "job1");
	check_exactly_once(res, 400);
	json_decref(res);
	return 0;
}

static const struct {
	const char *name;
	int (*fn)(void);
} scenarios[] = {
	{ "fake_1000", sc_fake_1000 },
	{ "model_1000", sc_model_1000 },
	{ "worker_kill", sc_worker_kill },
	{ "worker_stop", sc_worker_stop },
	{ "daemon_kill", sc_daemon_kill },
	{ "garbage", sc_garbage },
	{ "hello_limits", sc_hello_limits },
	{ "curve", sc_curve },
	{ "lock", sc_lock },
	{ "signals", sc_signals },
	{ "drain", sc_drain },
};

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: itest SCENARIO\nscenarios:");
		for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
			fprintf(stderr, " %s", scenarios[i].name);
		fputc('\n', stderr);
		return 2;
	}
	const char *t = getenv("TMPDIR");
	snprintf(tmp_root, sizeof(tmp_root), "%s/margin-itest-%s-XXXXXX", t && *t ? t : "/tmp", argv[1]);
	if (mkdtemp(tmp_root) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	signal(SIGALRM, on_alarm);
	signal(SIGPIPE, SIG_IGN);
	alarm(SCENARIO_TIMEOUT_S);
	atexit(kill_all);
	for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
		if (strcmp(argv[1], scenarios[i].name) == 0) {
			int64_t t0 = mg_clock_now_ns();
			int rc = scenarios[i].fn();
			kill_all();
			note("%s passed in %.1f s", argv[1], (double)(mg_clock_now_ns() - t0) / 1e9);
			/* Logs stay only for a failure (or with $KEEP_TMP). */
			const char *keep = getenv("KEEP_TMP");
			if (keep == NULL || *keep == '\0') {
				char cmd[600];
				snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp_root);
				if (system(cmd) != 0)
					note("could not remove %s", tmp_root);
			} else {
				note("logs in %s", tmp_root);
			}
			return rc;
		}
	fprintf(stderr, "itest: unknown scenario %s\n", argv[1]);
	return 2;
}
