/* calib: FMA, int8, bandwidth and sgemm ceilings of this machine
 * (calib.h). */
#include "calib.h"

#include "lib/mg_clock.h"

#include <cblas.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#define SGEMM_N 2048
#define SGEMM_REPS 5
#define BW_BYTES (512u << 20)
#define BW_REPS 7
#define MAX_THREADS 256
#define PEAK_REPS 7
#define PEAK_REP_NS 50000000LL	/* about 50 ms a repetition */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int calib_rates(const double *secs, int n, double work, double *ret_rate, double *ret_spread_pct)
{
	if (n < 1 || n > 1000)
		return -EINVAL;
	double r[1000];
	for (int i = 0; i < n; i++) {
		if (!(secs[i] > 0))
			return -EINVAL;
		r[i] = work / secs[i];
	}
	qsort(r, (size_t)n, sizeof(*r), cmp_double);
	double med = n % 2 ? r[n / 2] : (r[n / 2 - 1] + r[n / 2]) / 2;
	*ret_rate = med;
	*ret_spread_pct = med > 0 ? 100.0 * (r[n - 1] - r[0]) / med : 0;
	return 0;
}

/* ---- register-only peaks: the widest vectors this build uses ---- */

#define ACC 12			/* independent accumulators: > latency x ports */

#if defined(__AVX512F__)
#define FMA_KIND "avx512 zmm"
#define FMA_FLOPS_PER_ITER (ACC * 16 * 2)
static float fma_loop(long iters, float seed)
{
	__m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f), s[ACC];
	for (int k = 0; k < ACC; k++)
		s[k] = _mm512_set1_ps(seed + (float)k);
	for (long i = 0; i < iters; i++) {
#pragma GCC unroll 12
		for (int k = 0; k < ACC; k++)
			s[k] = _mm512_fmadd_ps(s[k], a, b);
	}
	for (int k = 1; k < ACC; k++)
		s[0] = _mm512_add_ps(s[0], s[k]);
	return _mm512_reduce_add_ps(s[0]);
}
#elif defined(__AVX2__) && defined(__FMA__)
#define FMA_KIND "avx2 ymm"
#define FMA_FLOPS_PER_ITER (ACC * 8 * 2)
static float fma_loop(long iters, float seed)
{
	__m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f), s[ACC];
	for (int k = 0; k < ACC; k++)
		s[k] = _mm256_set1_ps(seed + (float)k);
	for (long i = 0; i < iters; i++) {
#pragma GCC unroll 12
		for (int k = 0; k < ACC; k++)
			s[k] = _mm256_fmadd_ps(s[k], a, b);
	}
	float t = 0, v[8];
	for (int k = 0; k < ACC; k++) {
		_mm256_storeu_ps(v, s[k]);
		for (int j = 0; j < 8; j++)
			t += v[j];
	}
	return t;
}
#else
#define FMA_KIND "scalar"
#define FMA_FLOPS_PER_ITER (ACC * 2)
static float fma_loop(long iters, float seed)
{
	float s[ACC];
	for (int k = 0; k < ACC; k++)
		s[k] = seed + (float)k;
	for (long i = 0; i < iters; i++)
		for (int k = 0; k < ACC; k++)
			s[k] = s[k] * 0.999999f + 1e-7f;
	float t = 0;
	for (int k = 0; k < ACC; k++)
		t += s[k];
	return t;
}
#endif

/* The int8 products the quantized kernels use (qmm.c): u8 x s8 summed
 * into int32 lanes. An operand goes through an empty asm before each
 * product, so that the compiler can neither hoist the loop-invariant
 * products nor share one among the accumulators. */
#if defined(__AVX512F__) && defined(__AVX512BW__)
/* The lanes' sum, widened: the loops' int32 sums wrap (harmless in the
 * vector lanes), and summing them as int would be signed overflow. */
static float sum_lanes512(__m512i x)
{
	int32_t v[16];
	int64_t t = 0;
	_mm512_storeu_si512(v, x);
	for (int j = 0; j < 16; j++)
		t += v[j];
	return (float)t;
}
#endif

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
#define INT8_KIND "avx512 vnni vpdpbusd zmm"
#define INT8_OPS_PER_ITER (ACC * 64 * 2)
static float int8_loop(long iters, float seed)
{
	__m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8((char)(int)seed), s[ACC];
	for (int k = 0; k < ACC; k++)
		s[k] = _mm512_set1_epi32(k);
	for (long i = 0; i < iters; i++) {
#pragma GCC unroll 12
		for (int k = 0; k < ACC; k++)
			s[k] = _mm512_dpbusd_epi32(s[k], a, b);
	}
	for (int k = 1; k < ACC; k++)
		s[0] = _mm512_add_epi32(s[0], s[k]);
	return sum_lanes512(s[0]);
}
#elif defined(__AVX512F__) && defined(__AVX512BW__)
#define INT8_KIND "avx512bw vpmaddubsw+vpmaddwd zmm"
#define INT8_OPS_PER_ITER (8 * 64 * 2)
static float int8_loop(long iters, float seed)
{
	__m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8((char)(int)seed), one = _mm512_set1_epi16(1), s[8];
	for (int k = 0; k < 8; k++)
		s[k] = _mm512_set1_epi32(k);
	for (long i = 0; i < iters; i++) {
#pragma GCC unroll 8
		for (int k = 0; k < 8; k++) {
			__asm__("" : "+v"(a));	/* a product of its own for each k */
			s[k] = _mm512_add_epi32(s[k], _mm512_madd_epi16(_mm512_maddubs_epi16(a, b), one));
		}
	}
	for (int k = 1; k < 8; k++)
		s[0] = _mm512_add_epi32(s[0], s[k]);
	return sum_lanes512(s[0]);
}
#elif defined(__AVX2__)
#define INT8_KIND "avx2 vpmaddubsw+vpmaddwd ymm"
#define INT8_OPS_PER_ITER (8 * 32 * 2)
static float int8_loop(long iters, float seed)
{
	__m256i a = _mm256_set1_epi8(3), b = _mm256_set1_epi8((char)(int)seed), one = _mm256_set1_epi16(1), s[8];
	for (int k = 0; k < 8; k++)
		s[k] = _mm256_set1_epi32(k);
	for (long i = 0; i < iters; i++) {
#pragma GCC unroll 8
		for (int k = 0; k < 8; k++) {
			__asm__("" : "+x"(a));	/* a product of its own for each k */
			s[k] = _mm256_add_epi32(s[k], _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), one));
		}
	}
	int32_t v[8];
	int64_t t = 0;
	for (int k = 0; k < 8; k++) {
		_mm256_storeu_si256((__m256i *)v, s[k]);
		for (int j = 0; j < 8; j++)
			t += v[j];
	}
	return (float)t;
}
#else
#define INT8_KIND "scalar"
#define INT8_OPS_PER_ITER (ACC * 2)
static float int8_loop(long iters, float seed)
{
	volatile int8_t va = 3;
	int8_t a = va, b = (int8_t)(int)seed;
	uint32_t s[ACC];	/* wraps, as the vector lanes do */
	for (int k = 0; k < ACC; k++)
		s[k] = (uint32_t)k;
	for (long i = 0; i < iters; i++)
		for (int k = 0; k < ACC; k++)
			s[k] += (uint32_t)((int32_t)(uint8_t)a * b) + (uint32_t)i;
	int64_t t = 0;
	for (int k = 0; k < ACC; k++)
		t += s[k];
	return (float)t;
}
#endif

const char *calib_fma_kind(void)
{
	return FMA_KIND;
}

const char *calib_int8_kind(void)
{
	return INT8_KIND;
}

typedef struct peak_part {
	float (*loop)(long, float);
	long iters;
	float seed, out;
} peak_part_t;

static void *peak_run(void *arg)
{
	peak_part_t *p = arg;
	p->out = p->loop(p->iters, p->seed);
	return NULL;
}

/* Runs fn on n parts, one thread each (the first on this thread). */
static int run_threads(void *parts, size_t size, int n, void *(*fn)(void *))
{
	pthread_t th[MAX_THREADS];
	int started = 0, rc = 0;
	for (int i = 1; i < n; i++) {
		if (pthread_create(&th[i], NULL, fn, (char *)parts + (size_t)i * size) != 0) {
			rc = -EAGAIN;
			break;
		}
		started = i;
	}
	fn(parts);
	for (int i = 1; i <= started; i++)
		pthread_join(th[i], NULL);
	return rc;
}

/* One loop on `threads` threads: sized to about PEAK_REP_NS from an
 * untimed run, then PEAK_REPS timed ones; rate in G(FL)OP/s. */
static int measure_peak(float (*loop)(long, float), double ops_per_iter, int threads, double *ret, double *ret_spread)
{
	static peak_part_t parts[MAX_THREADS];
	volatile float sink = 0;
	long iters = 1 << 16;
	for (;;) {		/* size it: one thread, untimed */
		int64_t t0 = mg_clock_now_ns();
		sink += loop(iters, 1.0f);
		int64_t dt = mg_clock_now_ns() - t0;
		if (dt >= PEAK_REP_NS / 4 || iters > (1L << 40))
			break;
		iters *= 2;
	}
	iters *= 4;
	double secs[PEAK_REPS];
	int rc = 0;
	for (int r = -1; r < PEAK_REPS && rc == 0; r++) {
		for (int i = 0; i < threads; i++)
			parts[i] = (peak_part_t){ loop, iters, 1.0f + (float)i, 0 };
		int64_t t0 = mg_clock_now_ns();
		rc = run_threads(parts, sizeof(parts[0]), threads, peak_run);
		int64_t dt = mg_clock_now_ns() - t0;
		if (r >= 0)
			secs[r] = (double)(dt > 0 ? dt : 1) / 1e9;
		for (int i = 0; i < threads; i++)
			sink += parts[i].out;
	}
	/* With several threads, one more run on one thread: the threads'
	 * rate should be `threads` times it when each has a core of its own.
	 * Falling short (another process holds a core, steadily) counts as a
	 * spread, so that such a calibration is measured again, not kept. */
	double one = 0;
	if (rc == 0 && threads > 1) {
		int64_t t0 = mg_clock_now_ns();
		sink += loop(iters, 1.0f);
		int64_t dt = mg_clock_now_ns() - t0;
		one = ops_per_iter * (double)iters / 1e9 / ((double)(dt > 0 ? dt : 1) / 1e9);
	}
	(void)sink;
	if (rc < 0)
		return rc;
	rc = calib_rates(secs, PEAK_REPS, ops_per_iter * (double)iters * threads / 1e9, ret, ret_spread);
	if (rc == 0 && one * threads > *ret) {
		double short_pct = 100.0 * (one * threads - *ret) / *ret;
		if (short_pct > *ret_spread)
			*ret_spread = short_pct;
	}
	return rc;
}

static int measure_sgemm(int threads, double *ret, double *ret_spread)
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
	double secs[SGEMM_REPS];
	for (int r = -1; r < SGEMM_REPS; r++) {
		int64_t t0 = mg_clock_now_ns();
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
		int64_t dt = mg_clock_now_ns() - t0;
		if (r >= 0)
			secs[r] = (double)(dt > 0 ? dt : 1) / 1e9;
	}
	free(a);
	free(b);
	free(c);
	return calib_rates(secs, SGEMM_REPS, 2.0 * n * n * (double)n / 1e9, ret, ret_spread);
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

static int measure_bandwidth(int threads, double *ret, double *ret_spread)
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
	int rc = run_threads(parts, sizeof(parts[0]), threads, bw_touch);
	double secs[BW_REPS];
	for (int r = -1; r < BW_REPS && rc == 0; r++) {
		int64_t t0 = mg_clock_now_ns();
		rc = run_threads(parts, sizeof(parts[0]), threads, bw_sum);
		int64_t dt = mg_clock_now_ns() - t0;
		if (r >= 0)
			secs[r] = (double)(dt > 0 ? dt : 1) / 1e9;
	}
	/* Use the sums so the compiler must do the reads. */
	volatile float sink = 0;
	for (int i = 0; i < threads; i++)
		sink += parts[i].sum;
	(void)sink;
	free(buf);
	if (rc < 0)
		return rc;
	return calib_rates(secs, BW_REPS, (double)(total * sizeof(float)) / 1e9, ret, ret_spread);
}

static bool cpu_has(const char *flags_line, const char *flag)
{
	size_t n = strlen(flag);
	for (const char *p = flags_line; (p = strstr(p, flag)) != NULL; p += n)
		if ((p == flags_line || p[-1] == ' ' || p[-1] == '\t') && (p[n] == ' ' || p[n] == '\n' || p[n] == '\0'))
			return true;
	return false;
}

void calib_cpu_id(char *model, size_t model_len, char *flags, size_t flags_len)
{
	char line[8192], name[128] = "unknown", fam[32] = "?", mod[32] = "?", fl[8192] = "";
	FILE *f = fopen("/proc/cpuinfo", "r");
	while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
		char *colon = strchr(line, ':');
		if (colon == NULL)
			continue;
		char *v = colon + 1 + (colon[1] == ' ');
		v[strcspn(v, "\n")] = '\0';
		if (strncmp(line, "model name", 10) == 0)
			snprintf(name, sizeof(name), "%s", v);
		else if (strncmp(line, "cpu family", 10) == 0)
			snprintf(fam, sizeof(fam), "%s", v);
		else if (strncmp(line, "model\t", 6) == 0 || strncmp(line, "model ", 6) == 0)
			snprintf(mod, sizeof(mod), "%s", v);
		else if (strncmp(line, "flags", 5) == 0) {
			snprintf(fl, sizeof(fl), "%s", v);
			break;	/* the first CPU's block is enough */
		}
	}
	if (f != NULL)
		fclose(f);
	snprintf(model, model_len, "%s (family %s, model %s)", name, fam, mod);
	static const char *const keys[][2] = {
		{ "avx2", "avx2" }, { "fma", "fma" }, { "avx512f", "avx512f" }, { "avx512bw", "avx512bw" },
		{ "avx512_vnni", "avx512vnni" }, { "avx_vnni", "avxvnni" }, { "amx_int8", "amx" },
	};
	size_t o = 0;
	flags[0] = '\0';
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (cpu_has(fl, keys[i][0]) && o < flags_len)
			o += (size_t)snprintf(flags + o, flags_len - o, "%s ", keys[i][1]);
	if (o < flags_len)
		snprintf(flags + o, flags_len - o, "| fma:%s int8:%s", FMA_KIND, INT8_KIND);
}

int calib_measure(int threads, calib_t *ret, char *err, size_t errlen)
{
	if (threads < 1 || threads > MAX_THREADS) {
		snprintf(err, errlen, "calibration: %d threads is outside 1..%d", threads, MAX_THREADS);
		return -EINVAL;
	}
	calib_t c = { .threads = threads, .reps = PEAK_REPS };
	double sp[4] = { 0 };
	int rc = measure_peak(fma_loop, FMA_FLOPS_PER_ITER, threads, &c.fma_gflops, &sp[0]);
	if (rc == 0)
		rc = measure_peak(int8_loop, INT8_OPS_PER_ITER, threads, &c.int8_gops, &sp[1]);
	if (rc < 0) {
		snprintf(err, errlen, "calibration: cannot start %d threads for the peak loops", threads);
		return rc;
	}
	rc = measure_bandwidth(threads, &c.bandwidth_gbs, &sp[2]);
	if (rc < 0) {
		snprintf(err, errlen, "calibration: %s for the %u MiB bandwidth pass",
			 rc == -ENOMEM ? "no memory" : "cannot start threads", BW_BYTES >> 20);
		return rc;
	}
	rc = measure_sgemm(threads, &c.sgemm_gflops, &sp[3]);
	if (rc < 0) {
		snprintf(err, errlen, "calibration: no memory for the %dx%d sgemm", SGEMM_N, SGEMM_N);
		return rc;
	}
	for (int i = 0; i < 4; i++) {
		c.spreads_pct[i] = sp[i];
		if (sp[i] > c.spread_pct)
			c.spread_pct = sp[i];
	}
	snprintf(c.blas_core, sizeof(c.blas_core), "%s", openblas_get_corename());
	snprintf(c.fma_kind, sizeof(c.fma_kind), "%s", FMA_KIND);
	snprintf(c.int8_kind, sizeof(c.int8_kind), "%s", INT8_KIND);
	calib_cpu_id(c.cpu_model, sizeof(c.cpu_model), c.cpu_flags_key, sizeof(c.cpu_flags_key));
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

static int get_number(json_t *j, const char *key, double *ret)
{
	json_t *v = json_object_get(j, key);
	if (!json_is_number(v) || !(json_number_value(v) >= 0))
		return -EBADMSG;
	*ret = json_number_value(v);
	return 0;
}

static int get_string(json_t *j, const char *key, char *buf, size_t len)
{
	json_t *v = json_object_get(j, key);
	if (!json_is_string(v))
		return -EBADMSG;
	snprintf(buf, len, "%s", json_string_value(v));
	return 0;
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
	static const char *const pos[] = { "fma_gflops", "int8_gops", "bandwidth_gbs", "sgemm_gflops" };
	double *pv[] = { &c.fma_gflops, &c.int8_gops, &c.bandwidth_gbs, &c.sgemm_gflops };
	int rc = 0;
	for (int i = 0; i < 4; i++)
		if (get_number(j, pos[i], pv[i]) < 0 || !(*pv[i] > 0)) {
			snprintf(err, errlen, "%s: %s: expected a positive number", path, pos[i]);
			rc = -EBADMSG;
			goto out;
		}
	if (get_number(j, "spread_pct", &c.spread_pct) < 0) {
		snprintf(err, errlen, "%s: spread_pct: expected a number >= 0", path);
		rc = -EBADMSG;
		goto out;
	}
	json_t *t = json_object_get(j, "threads"), *r = json_object_get(j, "reps");
	if (!json_is_integer(t) || json_integer_value(t) < 1 || json_integer_value(t) > MAX_THREADS) {
		snprintf(err, errlen, "%s: threads: expected an integer in 1..%d", path, MAX_THREADS);
		rc = -EBADMSG;
		goto out;
	}
	c.threads = (int)json_integer_value(t);
	c.reps = json_is_integer(r) ? (int)json_integer_value(r) : 0;
	static const char *const strs[] = { "blas_core", "cpu_model", "cpu_flags_key", "measured_at" };
	char when[40];
	char *sv[] = { c.blas_core, c.cpu_model, c.cpu_flags_key, when };
	size_t sl[] = { sizeof(c.blas_core), sizeof(c.cpu_model), sizeof(c.cpu_flags_key), sizeof(when) };
	for (int i = 0; i < 4; i++)
		if (get_string(j, strs[i], sv[i], sl[i]) < 0) {
			snprintf(err, errlen, "%s: %s: expected a string", path, strs[i]);
			rc = -EBADMSG;
			goto out;
		}
	(void)get_string(j, "fma_kind", c.fma_kind, sizeof(c.fma_kind));
	(void)get_string(j, "int8_kind", c.int8_kind, sizeof(c.int8_kind));
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
	json_t *j = json_pack("{s:f, s:f, s:f, s:f, s:s, s:i, s:s, s:I, s:f, s:i, s:s, s:s, s:s, s:s}",
			      "fma_gflops", c->fma_gflops, "int8_gops", c->int8_gops,
			      "bandwidth_gbs", c->bandwidth_gbs, "sgemm_gflops", c->sgemm_gflops,
			      "blas_core", c->blas_core, "threads", c->threads, "measured_at", when,
			      "measured_at_ns", (json_int_t)c->measured_at_ns, "spread_pct", c->spread_pct,
			      "reps", c->reps, "cpu_model", c->cpu_model, "cpu_flags_key", c->cpu_flags_key,
			      "fma_kind", c->fma_kind, "int8_kind", c->int8_kind);
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

static calib_measure_fn measure_hook;

void calib_set_measure_hook(calib_measure_fn fn)
{
	measure_hook = fn;
}

int calib_get(const char *path, int threads, bool recalibrate, calib_t *ret, bool *ret_measured,
	      char *err, size_t errlen)
{
	char def[PATH_MAX], model[sizeof(ret->cpu_model)], flags[sizeof(ret->cpu_flags_key)];
	if (path == NULL && calib_default_path(threads, def, sizeof(def)) == 0)
		path = def;
	calib_cpu_id(model, sizeof(model), flags, sizeof(flags));
	calib_t c;
	if (!recalibrate && path != NULL && calib_load(path, &c, err, errlen) == 0 && c.threads == threads &&
	    strcmp(c.cpu_model, model) == 0 && strcmp(c.cpu_flags_key, flags) == 0) {
		*ret = c;
		*ret_measured = false;
		return 0;
	}
	calib_measure_fn measure = measure_hook != NULL ? measure_hook : calib_measure_isolated;
	calib_t best = { 0 };
	int tries = 0;
	for (; tries < CALIB_TRIES; tries++) {
		int rc = measure(threads, &c, err, errlen);
		if (rc < 0)
			return rc;
		if (tries == 0 || c.spread_pct < best.spread_pct)
			best = c;
		if (c.spread_pct <= CALIB_MAX_SPREAD_PCT) {
			tries++;
			break;
		}
	}
	best.tries = tries;
	best.unreliable = best.spread_pct > CALIB_MAX_SPREAD_PCT;
	if (path != NULL && !best.unreliable) {
		char ignored[256];
		(void)calib_save(path, &best, ignored, sizeof(ignored));
	}
	*ret = best;
	*ret_measured = true;
	return 0;
}

/* OpenBLAS's x86 core names by the widest vectors their kernels use:
 * 0 SSE (the generic fallbacks), 1 AVX, 2 AVX2, 3 AVX-512; -1 another. */
static int core_level(const char *core)
{
	static const struct {
		const char *name;
		int level;
	} cores[] = {
		{ "Prescott", 0 }, { "Core2", 0 }, { "Penryn", 0 }, { "Dunnington", 0 }, { "Nehalem", 0 },
		{ "Atom", 0 }, { "Katmai", 0 }, { "Coppermine", 0 }, { "Northwood", 0 }, { "Banias", 0 },
		{ "Athlon", 0 }, { "Opteron", 0 }, { "Opteron(SSE3)", 0 }, { "Barcelona", 0 }, { "Bobcat", 0 },
		{ "Nano", 0 }, { "Unknown", 0 }, { "Sandybridge", 1 }, { "Bulldozer", 1 }, { "Piledriver", 1 },
		{ "Steamroller", 1 }, { "Excavator", 1 }, { "Haswell", 2 }, { "Zen", 2 }, { "SkylakeX", 3 },
		{ "Cooperlake", 3 }, { "SapphireRapids", 3 },
	};
	if (core == NULL)
		return -1;
	for (size_t i = 0; i < sizeof(cores) / sizeof(cores[0]); i++)
		if (strcasecmp(core, cores[i].name) == 0)
			return cores[i].level;
	return -1;
}

bool calib_blas_core_is_generic(const char *core)
{
	return core_level(core) == 0;
}

const char *calib_blas_core_fix(const char *core, bool avx512, bool avx2, const char *env_coretype,
				const char *env_opt)
{
	if (env_opt != NULL && strcmp(env_opt, "keep") == 0)
		return NULL;
	/* A user's choice is respected unless it is a generic SSE core: that
	 * one is treated as if OpenBLAS had fallen back to it. */
	if (env_coretype != NULL && env_coretype[0] != '\0' && !calib_blas_core_is_generic(env_coretype))
		return NULL;
	int have = core_level(core), want = avx512 ? 3 : avx2 ? 2 : 0;
	if (have < 0 || have >= want)
		return NULL;
	return want == 3 ? "SkylakeX" : "Haswell";
}
