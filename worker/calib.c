/* calib: sgemm and memory-bandwidth ceilings of this machine (calib.h). */
#include "calib.h"

#include "mg_clock.h"

#include <cblas.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define SGEMM_N 2048
#define SGEMM_REPS 5
#define BW_BYTES (512u << 20)
#define BW_REPS 7
#define MAX_THREADS 256

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

static int measure_sgemm(int threads, double *ret)
{
	const int n = SGEMM_N;
	size_t sz = (size_t)n * n;
	float *a = malloc(sz * sizeof(float)), *b = malloc(sz * sizeof(float)), *c = malloc(sz * sizeof(float));
	if (a == NULL || b == NULL || c == NULL) {
		free(a);
		free(b);
		free(c);
		return -ENOMEM;
	}
	for (size_t i = 0; i < sz; i++) {
		a[i] = (float)((i * 7) % 13) * 0.01f;
		b[i] = (float)((i * 5) % 11) * 0.01f;
	}
	openblas_set_num_threads(threads);
	double g[SGEMM_REPS];
	for (int r = -1; r < SGEMM_REPS; r++) {
		int64_t t0 = mg_clock_now_ns();
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
		int64_t dt = mg_clock_now_ns() - t0;
		if (r >= 0)
			g[r] = 2.0 * n * n * (double)n / (double)(dt > 0 ? dt : 1);
	}
	*ret = median(g, SGEMM_REPS);
	free(a);
	free(b);
	free(c);
	return 0;
}

typedef float v8f __attribute__((vector_size(32)));

typedef struct bw_part {
	const float *p;
	size_t n;		/* floats, a multiple of 32 */
	float sum;		/* kept so the reads are not optimized away */
} bw_part_t;

static void *bw_sum(void *arg)
{
	bw_part_t *w = arg;
	v8f s0 = { 0 }, s1 = { 0 }, s2 = { 0 }, s3 = { 0 };
	for (size_t i = 0; i < w->n; i += 32) {
		v8f x0, x1, x2, x3;
		memcpy(&x0, w->p + i, sizeof(x0));
		memcpy(&x1, w->p + i + 8, sizeof(x1));
		memcpy(&x2, w->p + i + 16, sizeof(x2));
		memcpy(&x3, w->p + i + 24, sizeof(x3));
		s0 += x0;
		s1 += x1;
		s2 += x2;
		s3 += x3;
	}
	v8f s = s0 + s1 + s2 + s3;
	float t = 0;
	for (int k = 0; k < 8; k++)
		t += s[k];
	w->sum = t;
	return NULL;
}

static void *bw_touch(void *arg)
{
	bw_part_t *w = arg;
	float *p = (float *)w->p;
	for (size_t i = 0; i < w->n; i++)
		p[i] = (float)(i & 3);
	return NULL;
}

/* Runs fn over the parts, one thread each (the first on this thread). */
static int run_parts(bw_part_t *parts, int n, void *(*fn)(void *))
{
	pthread_t th[MAX_THREADS];
	int started = 0, rc = 0;
	for (int i = 1; i < n; i++) {
		if (pthread_create(&th[i], NULL, fn, &parts[i]) != 0) {
			rc = -EAGAIN;
			break;
		}
		started = i;
	}
	fn(&parts[0]);
	for (int i = 1; i <= started; i++)
		pthread_join(th[i], NULL);
	return rc;
}

static int measure_bandwidth(int threads, double *ret)
{
	size_t n = BW_BYTES / sizeof(float);
	float *buf = aligned_alloc(64, BW_BYTES);
	if (buf == NULL)
		return -ENOMEM;
	bw_part_t parts[MAX_THREADS] = { 0 };
	size_t per = n / (size_t)threads / 32 * 32, total = 0;
	for (int i = 0; i < threads; i++) {
		parts[i] = (bw_part_t){ buf + (size_t)i * per, per, 0 };
		total += per;
	}
	int rc = run_parts(parts, threads, bw_touch);
	double g[BW_REPS];
	for (int r = -1; r < BW_REPS && rc == 0; r++) {
		int64_t t0 = mg_clock_now_ns();
		rc = run_parts(parts, threads, bw_sum);
		int64_t dt = mg_clock_now_ns() - t0;
		if (r >= 0)
			g[r] = (double)(total * sizeof(float)) / (double)(dt > 0 ? dt : 1);
	}
	/* Use the sums so the compiler must do the reads. */
	volatile float sink = 0;
	for (int i = 0; i < threads; i++)
		sink += parts[i].sum;
	(void)sink;
	free(buf);
	if (rc < 0)
		return rc;
	*ret = median(g, BW_REPS);
	return 0;
}

int calib_measure(int threads, calib_t *ret, char *err, size_t errlen)
{
	if (threads < 1 || threads > MAX_THREADS) {
		snprintf(err, errlen, "calibration: %d threads is outside 1..%d", threads, MAX_THREADS);
		return -EINVAL;
	}
	calib_t c = { .threads = threads };
	int rc = measure_sgemm(threads, &c.sgemm_gflops);
	if (rc < 0) {
		snprintf(err, errlen, "calibration: no memory for the %dx%d sgemm", SGEMM_N, SGEMM_N);
		return rc;
	}
	rc = measure_bandwidth(threads, &c.bandwidth_gbs);
	if (rc < 0) {
		snprintf(err, errlen, "calibration: %s for the %u MiB bandwidth pass",
			 rc == -ENOMEM ? "no memory" : "cannot start threads", BW_BYTES >> 20);
		return rc;
	}
	c.measured_at_ns = mg_clock_wall_ns();
	*ret = c;
	return 0;
}

int calib_measure_isolated(int threads, calib_t *ret, char *err, size_t errlen)
{
	int fd[2];
	if (pipe(fd) < 0) {
		int e = errno;
		snprintf(err, errlen, "calibration: pipe: %s", strerror(e));
		return -e;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		close(fd[0]);
		close(fd[1]);
		snprintf(err, errlen, "calibration: fork: %s", strerror(e));
		return -e;
	}
	if (pid == 0) {
		close(fd[0]);
		struct {
			int rc;
			calib_t c;
			char err[200];
		} msg = { 0 };
		msg.rc = calib_measure(threads, &msg.c, msg.err, sizeof(msg.err));
		ssize_t w = write(fd[1], &msg, sizeof(msg));
		_exit(w == (ssize_t)sizeof(msg) ? 0 : 1);
	}
	close(fd[1]);
	struct {
		int rc;
		calib_t c;
		char err[200];
	} msg;
	size_t got = 0;
	while (got < sizeof(msg)) {
		ssize_t r = read(fd[0], (char *)&msg + got, sizeof(msg) - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd[0]);
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (got != sizeof(msg)) {
		snprintf(err, errlen, "calibration: the measuring process died (status %d)", status);
		return -EIO;
	}
	if (msg.rc < 0) {
		snprintf(err, errlen, "%s", msg.err);
		return msg.rc;
	}
	*ret = msg.c;
	return 0;
}

int calib_default_path(int threads, char *buf, size_t len)
{
	const char *x = getenv("XDG_CACHE_HOME"), *h = getenv("HOME");
	int n;
	if (x != NULL && x[0] == '/')
		n = snprintf(buf, len, "%s/margin/calib-%d.json", x, threads);
	else if (h != NULL && h[0] != '\0')
		n = snprintf(buf, len, "%s/.cache/margin/calib-%d.json", h, threads);
	else
		return -ENOENT;
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int calib_load(const char *path, calib_t *ret, char *err, size_t errlen)
{
	if (access(path, F_OK) < 0) {
		int e = errno;
		snprintf(err, errlen, "%s: %s", path, strerror(e));
		return -e;
	}
	json_error_t je;
	json_t *j = json_load_file(path, 0, &je);
	if (j == NULL) {
		snprintf(err, errlen, "%s:%d: %s", path, je.line, je.text);
		return -EBADMSG;
	}
	calib_t c = { 0 };
	json_t *g = json_object_get(j, "sgemm_gflops"), *b = json_object_get(j, "bandwidth_gbs"),
	       *t = json_object_get(j, "threads");
	int rc = 0;
	if (!json_is_number(g) || !json_is_number(b) || !json_is_integer(t)) {
		snprintf(err, errlen, "%s: expected numbers sgemm_gflops, bandwidth_gbs and an integer threads", path);
		rc = -EBADMSG;
		goto out;
	}
	c.sgemm_gflops = json_number_value(g);
	c.bandwidth_gbs = json_number_value(b);
	c.threads = (int)json_integer_value(t);
	if (!(c.sgemm_gflops > 0) || !(c.bandwidth_gbs > 0) || c.threads < 1) {
		snprintf(err, errlen, "%s: sgemm_gflops, bandwidth_gbs and threads must be positive", path);
		rc = -EBADMSG;
		goto out;
	}
	json_t *at = json_object_get(j, "measured_at_ns");
	if (json_is_integer(at))
		c.measured_at_ns = json_integer_value(at);
	*ret = c;
out:
	json_decref(j);
	return rc;
}

static int mkdirs(char *dir)
{
	for (char *p = dir + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		int r = mkdir(dir, 0755);
		*p = '/';
		if (r < 0 && errno != EEXIST)
			return -errno;
	}
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

int calib_save(const char *path, const calib_t *c, char *err, size_t errlen)
{
	char dir[PATH_MAX], tmp[PATH_MAX + 16], when[40];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash != NULL && slash != dir) {
		*slash = '\0';
		int rc = mkdirs(dir);
		if (rc < 0) {
			snprintf(err, errlen, "%s: cannot create the directory: %s", dir, strerror(-rc));
			return rc;
		}
	}
	mg_clock_format_iso8601(when, sizeof(when), c->measured_at_ns);
	json_t *j = json_pack("{s:f, s:f, s:i, s:s, s:I}", "sgemm_gflops", c->sgemm_gflops,
			      "bandwidth_gbs", c->bandwidth_gbs, "threads", c->threads,
			      "measured_at", when, "measured_at_ns", (json_int_t)c->measured_at_ns);
	if (j == NULL)
		return -ENOMEM;
	snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
	int rc = 0;
	errno = 0;
	if (json_dump_file(j, tmp, JSON_INDENT(1)) < 0 || rename(tmp, path) < 0) {
		rc = errno ? -errno : -EIO;
		snprintf(err, errlen, "%s: cannot write: %s", path, strerror(-rc));
		unlink(tmp);
	}
	json_decref(j);
	return rc;
}

int calib_get(const char *path, int threads, bool recalibrate, calib_t *ret, bool *ret_measured,
	      char *err, size_t errlen)
{
	char def[PATH_MAX];
	if (path == NULL && calib_default_path(threads, def, sizeof(def)) == 0)
		path = def;
	calib_t c;
	if (!recalibrate && path != NULL && calib_load(path, &c, err, errlen) == 0 && c.threads == threads) {
		*ret = c;
		*ret_measured = false;
		return 0;
	}
	int rc = calib_measure_isolated(threads, &c, err, errlen);
	if (rc < 0)
		return rc;
	if (path != NULL) {
		char ignored[256];
		(void)calib_save(path, &c, ignored, sizeof(ignored));
	}
	*ret = c;
	*ret_measured = true;
	return 0;
}
