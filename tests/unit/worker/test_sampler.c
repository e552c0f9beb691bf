/* Sampler: a seed always gives the same tokens; the limits of temperature,
 * top-k and top-p reduce to greedy; draws follow the softmax; stop strings
 * are found across token boundaries and never leak into the text. */
#include "cu_main.h"
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define V 512

/* Logits with a clear winner order: a fixed pseudo-random row. */
static void fill_logits(float *l, int n, uint64_t seed)
{
	sampler_rng_t r;
	sampler_rng_seed(&r, seed);
	for (int i = 0; i < n; i++)
		l[i] = (float)(sampler_rng_uniform(&r) * 8.0 - 4.0);
}

static sampler_t *mk(float temp, float top_p, uint32_t top_k, uint64_t seed)
{
	sampler_t *s = NULL;
	CU_ASSERT_EQUAL_FATAL(sampler_new(V, &s), 0);
	sampler_reset(s, &(sampler_params_t){ temp, top_p, top_k, seed });
	return s;
}

static void test_rng(void)
{
	sampler_rng_t a, b, c;
	sampler_rng_seed(&a, 42);
	sampler_rng_seed(&b, 42);
	sampler_rng_seed(&c, 43);
	int same_c = 0;
	double sum = 0;
	for (int i = 0; i < 10000; i++) {
		uint64_t x = sampler_rng_next(&a);
		CU_ASSERT_EQUAL(x, sampler_rng_next(&b));
		same_c += x == sampler_rng_next(&c);
		double u = sampler_rng_uniform(&a);
		(void)sampler_rng_uniform(&b);
		(void)sampler_rng_uniform(&c);
		CU_ASSERT(u >= 0 && u < 1);
		sum += u;
	}
	CU_ASSERT_EQUAL(same_c, 0);
	CU_ASSERT(fabs(sum / 10000 - 0.5) < 0.02);
	/* seed 0 is a valid seed, not a zero state */
	sampler_rng_seed(&a, 0);
	CU_ASSERT((a.s[0] | a.s[1] | a.s[2] | a.s[3]) != 0);
}

static void test_argmax(void)
{
	float x[6] = { 1, 3, -2, 3, NAN, 0 };
	CU_ASSERT_EQUAL(sampler_argmax(x, 6), 1);	/* tie: lowest id */
	float y[3] = { NAN, -INFINITY, -5 };
	CU_ASSERT_EQUAL(sampler_argmax(y, 3), 2);
	float z[2] = { NAN, NAN };
	CU_ASSERT_EQUAL(sampler_argmax(z, 2), 0);

	float l[V];
	fill_logits(l, V, 7);
	l[300] = 10;
	l[200] = 10;
	sampler_t *s = mk(0, 0, 0, 1);
	CU_ASSERT_EQUAL(sampler_sample(s, l), 200);
	sampler_destroy(&s);
	CU_ASSERT_PTR_NULL(s);
	sampler_destroy(&s);	/* NULL-safe */
}

/* The same seed gives the same tokens (as a request re-run on another
 * worker must); another seed gives others. */
static void test_determinism(void)
{
	static const struct {
		float t, p;
		uint32_t k;
	} cfg[] = { { 1.0f, 0, 0 }, { 0.8f, 0.9f, 0 }, { 1.3f, 0, 40 }, { 0.7f, 0.95f, 50 } };
	float l[V];
	for (size_t c = 0; c < sizeof(cfg) / sizeof(cfg[0]); c++) {
		sampler_t *a = mk(cfg[c].t, cfg[c].p, cfg[c].k, 1234);
		sampler_t *b = mk(cfg[c].t, cfg[c].p, cfg[c].k, 1234);
		sampler_t *o = mk(cfg[c].t, cfg[c].p, cfg[c].k, 1235);
		int differ = 0;
		for (int step = 0; step < 200; step++) {
			fill_logits(l, V, 1000 + (uint64_t)step);
			int32_t ta = sampler_sample(a, l);
			CU_ASSERT_EQUAL(ta, sampler_sample(b, l));
			differ += ta != sampler_sample(o, l);
			CU_ASSERT(ta >= 0 && ta < V);
		}
		CU_ASSERT(differ > 20);
		/* reset replays the stream */
		sampler_reset(a, &(sampler_params_t){ cfg[c].t, cfg[c].p, cfg[c].k, 1235 });
		sampler_reset(o, &(sampler_params_t){ cfg[c].t, cfg[c].p, cfg[c].k, 1235 });
		for (int step = 0; step < 50; step++) {
			fill_logits(l, V, 1000 + (uint64_t)step);
			CU_ASSERT_EQUAL(sampler_sample(a, l), sampler_sample(o, l));
		}
		sampler_destroy(&a);
		sampler_destroy(&b);
		sampler_destroy(&o);
	}
}

/* Limits that must equal greedy. */
static void test_greedy_limits(void)
{
	float l[V];
	sampler_t *cold = mk(1e-4f, 0, 0, 9);
	sampler_t *k1 = mk(1.5f, 0, 1, 9);
	sampler_t *p0 = mk(1.5f, 1e-6f, 0, 9);
	sampler_t *kp = mk(2.0f, 1e-6f, 20, 9);
	for (int step = 0; step < 300; step++) {
		fill_logits(l, V, 50 + (uint64_t)step);
		int32_t g = sampler_argmax(l, V);
		/* a margin, as real logits have (the reference files' smallest is
		 * 0.015): at T = 1e-4 the runner-up then has weight e^-500 */
		l[g] += 0.05f;
		CU_ASSERT_EQUAL(sampler_sample(cold, l), g);
		CU_ASSERT_EQUAL(sampler_sample(k1, l), g);
		CU_ASSERT_EQUAL(sampler_sample(p0, l), g);
		CU_ASSERT_EQUAL(sampler_sample(kp, l), g);
	}
	sampler_destroy(&cold);
	sampler_destroy(&k1);
	sampler_destroy(&p0);
	sampler_destroy(&kp);
}

/* Frequencies of N draws from a row with three live tokens. */
static void draw(float temp, float top_p, uint32_t top_k, const double *prob3, int n, double *freq)
{
	float l[V];
	for (int i = 0; i < V; i++)
		l[i] = -INFINITY;
	l[17] = (float)log(prob3[0]);
	l[3] = (float)log(prob3[1]);
	l[400] = (float)log(prob3[2]);
	sampler_t *s = mk(temp, top_p, top_k, 77);
	int cnt[3] = { 0 }, other = 0;
	for (int i = 0; i < n; i++) {
		int32_t t = sampler_sample(s, l);
		if (t == 17)
			cnt[0]++;
		else if (t == 3)
			cnt[1]++;
		else if (t == 400)
			cnt[2]++;
		else
			other++;
	}
	CU_ASSERT_EQUAL(other, 0);
	for (int j = 0; j < 3; j++)
		freq[j] = (double)cnt[j] / n;
	sampler_destroy(&s);
}

static void test_distribution(void)
{
	const double p[3] = { 0.5, 0.3, 0.2 };
	const int n = 40000;
	double f[3];
	/* T = 1: the softmax itself. 4 sigma of a binomial at n = 40000 is
	 * 0.01; the seed is fixed, so this is deterministic. */
	draw(1.0f, 0, 0, p, n, f);
	for (int j = 0; j < 3; j++)
		CU_ASSERT(fabs(f[j] - p[j]) < 0.01);
	/* T = 2: softmax(l / 2) ∝ sqrt(p) */
	double q[3], z = 0;
	for (int j = 0; j < 3; j++)
		z += (q[j] = sqrt(p[j]));
	draw(2.0f, 0, 0, p, n, f);
	for (int j = 0; j < 3; j++)
		CU_ASSERT(fabs(f[j] - q[j] / z) < 0.01);
	/* top-k 2: the third token never comes; the two renormalize */
	draw(1.0f, 0, 2, p, n, f);
	CU_ASSERT_EQUAL(f[2], 0);
	CU_ASSERT(fabs(f[0] - 0.625) < 0.01);
	/* top-p 0.75: 0.5 < 0.75 <= 0.8, so tokens 17 and 3 stay */
	draw(1.0f, 0.75f, 0, p, n, f);
	CU_ASSERT_EQUAL(f[2], 0);
	CU_ASSERT(fabs(f[0] - 0.625) < 0.01);
	/* top-p 0.4: only the first */
	draw(1.0f, 0.4f, 0, p, n, f);
	CU_ASSERT_EQUAL(f[0], 1.0);
	/* top-p is measured at temperature 1 (llama.cpp order), then T
	 * flattens what is left: T = 2 over {0.5, 0.3} */
	draw(2.0f, 0.75f, 0, p, n, f);
	CU_ASSERT_EQUAL(f[2], 0);
	CU_ASSERT(fabs(f[0] - sqrt(0.5) / (sqrt(0.5) + sqrt(0.3))) < 0.01);
	/* top-k then top-p over the k kept: k = 2 -> {0.625, 0.375}; p = 0.6
	 * keeps only the first */
	draw(1.0f, 0.6f, 2, p, n, f);
	CU_ASSERT_EQUAL(f[0], 1.0);
}

static void test_nan_logits(void)
{
	float l[V];
	for (int i = 0; i < V; i++)
		l[i] = NAN;
	l[9] = 0;
	l[10] = 0;
	sampler_t *s = mk(1.0f, 0.9f, 0, 5);
	for (int i = 0; i < 100; i++) {
		int32_t t = sampler_sample(s, l);
		CU_ASSERT(t == 9 || t == 10);
	}
	sampler_destroy(&s);
}

/* Oracle for the kept set: sort everything by (logit desc, id asc). */
typedef struct ol {
	float l;
	int id;
} ol_t;

static int ol_cmp(const void *a, const void *b)
{
	const ol_t *x = a, *y = b;
	if (x->l != y->l)
		return x->l > y->l ? -1 : 1;
	return x->id - y->id;
}

/* top-k / top-p against a plain full-sort oracle, on a vocabulary that is
 * not a multiple of the vector width, with many tied logits (ties at the
 * boundary go to the lower id). */
static void test_kept_set_oracle(void)
{
	enum { N = 1000 };
	float l[N];
	sampler_rng_t r;
	sampler_rng_seed(&r, 99);
	for (int i = 0; i < N; i++) {
		double u1 = sampler_rng_uniform(&r) + 1e-12, u2 = sampler_rng_uniform(&r);
		l[i] = (float)(round(2.0 * sqrt(-2 * log(u1)) * cos(6.283185307 * u2) * 4) / 4);
	}
	ol_t o[N];
	for (int i = 0; i < N; i++)
		o[i] = (ol_t){ l[i], i };
	qsort(o, N, sizeof(o[0]), ol_cmp);
	double w[N], z = 0;
	for (int i = 0; i < N; i++)
		z += (w[i] = exp((double)o[i].l - o[0].l));
	static const struct {
		uint32_t k;
		float p;
	} cfg[] = { { 5, 0 }, { 17, 0 }, { 300, 0 }, { 0, 0.3f }, { 0, 0.8f }, { 0, 0.97f }, { 50, 0.5f }, { 9, 0.9f } };
	for (size_t c = 0; c < sizeof(cfg) / sizeof(cfg[0]); c++) {
		/* the oracle's kept count; p nudged until the boundary is clear
		 * of float-vs-double rounding */
		size_t n = cfg[c].k ? cfg[c].k : N;
		float pp = cfg[c].p;
		if (pp > 0) {
			double zk = 0;
			for (size_t j = 0; j < n; j++)
				zk += w[j];
			for (int tries = 0;; tries++) {
				CU_ASSERT_FATAL(tries < 100);
				double cum = 0;
				size_t j = 0;
				while (j < n && cum < pp * zk)
					cum += w[j++];
				if (fabs(cum - pp * zk) > 1e-4 * zk && fabs(cum - w[j - 1] - pp * zk) > 1e-4 * zk) {
					n = j;
					break;
				}
				pp += 0.001f;
			}
		}
		char kept[N] = { 0 };
		for (size_t j = 0; j < n; j++)
			kept[o[j].id] = 1;
		sampler_t *s = NULL;
		CU_ASSERT_EQUAL_FATAL(sampler_new(N, &s), 0);
		sampler_reset(s, &(sampler_params_t){ 1.0f, pp, cfg[c].k, 3 });
		int seen[N] = { 0 }, outside = 0;
		for (int it = 0; it < 4000; it++) {
			int32_t t = sampler_sample(s, l);
			CU_ASSERT_FATAL(t >= 0 && t < N);
			outside += !kept[t];
			seen[t]++;
		}
		CU_ASSERT_EQUAL(outside, 0);
		/* every kept token that should come up often did */
		double zk = 0;
		for (size_t j = 0; j < n; j++)
			zk += w[j];
		int missing = 0;
		for (size_t j = 0; j < n; j++)
			missing += w[j] / zk > 0.005 && seen[o[j].id] == 0;
		CU_ASSERT_EQUAL(missing, 0);
		sampler_destroy(&s);
	}
}

static int feed(sampler_stop_t *st, const char *piece)
{
	return sampler_stop_feed(st, piece, strlen(piece));
}

static void test_stop_strings(void)
{
	const char *stops[] = { "o w", "", "THE END" };
	sampler_stop_t st;
	CU_ASSERT_EQUAL_FATAL(sampler_stop_init(&st, stops, 3), 0);
	CU_ASSERT_EQUAL(st.n_stop, 2);	/* the empty one is dropped */
	CU_ASSERT_EQUAL(feed(&st, "Hel"), 0);
	CU_ASSERT_EQUAL(sampler_stop_safe_len(&st), 3);
	CU_ASSERT_EQUAL(feed(&st, "lo"), 0);
	/* "o" could start "o w": held back */
	CU_ASSERT_EQUAL(sampler_stop_safe_len(&st), 4);
	CU_ASSERT_EQUAL(feed(&st, " "), 0);
	CU_ASSERT_EQUAL(sampler_stop_safe_len(&st), 4);
	/* the match spans three pieces; the text ends before it */
	CU_ASSERT_EQUAL(feed(&st, "world"), 1);
	CU_ASSERT(st.stopped);
	CU_ASSERT_STRING_EQUAL(st.text, "Hell");
	CU_ASSERT_EQUAL(st.len, 4);
	CU_ASSERT_EQUAL(sampler_stop_safe_len(&st), 4);
	CU_ASSERT_EQUAL(feed(&st, "more"), 1);	/* ignored once stopped */
	CU_ASSERT_STRING_EQUAL(st.text, "Hell");

	/* reuse: a false start is released once it cannot match */
	sampler_stop_clear(&st);
	CU_ASSERT_EQUAL(feed(&st, "and THE E"), 0);
	CU_ASSERT_EQUAL(sampler_stop_safe_len(&st), 4);
	CU_ASSERT_EQUAL(feed(&st, "ND"), 1);
	CU_ASSERT_STRING_EQUAL(st.text, "and ");
	sampler_stop_clear(&st);
	CU_ASSERT_EQUAL(feed(&st, "THE EXIT"), 0);
	CU_ASSERT_EQUAL(sampler_stop_safe_len(&st), 7);	/* "T" may start "THE END" */
	/* two stop strings complete in one piece: the earlier one wins */
	CU_ASSERT_EQUAL(feed(&st, "! THE ENDo w"), 1);
	CU_ASSERT_STRING_EQUAL(st.text, "THE EXIT! ");
	sampler_stop_done(&st);
	sampler_stop_done(&st);	/* safe twice */

	/* a stop string inside one token, with text after it */
	const char *nl[] = { "\n\n" };
	CU_ASSERT_EQUAL_FATAL(sampler_stop_init(&st, nl, 1), 0);
	CU_ASSERT_EQUAL(feed(&st, "a\n"), 0);
	CU_ASSERT_EQUAL(sampler_stop_safe_len(&st), 1);
	CU_ASSERT_EQUAL(feed(&st, "\nb"), 1);
	CU_ASSERT_STRING_EQUAL(st.text, "a");
	sampler_stop_done(&st);
}

static void test_stop_utf8_holdback(void)
{
	sampler_stop_t st;
	CU_ASSERT_EQUAL_FATAL(sampler_stop_init(&st, NULL, 0), 0);
	CU_ASSERT_EQUAL(feed(&st, "ab\xE2\x96"), 0);	/* first 2 bytes of U+2581 */
	CU_ASSERT_EQUAL(sampler_stop_safe_len(&st), 2);
	CU_ASSERT_EQUAL(feed(&st, "\x81"), 0);
	CU_ASSERT_EQUAL(sampler_stop_safe_len(&st), 5);
	CU_ASSERT_EQUAL(feed(&st, "\xF0\x9F"), 0);	/* half an emoji */
	CU_ASSERT_EQUAL(sampler_stop_safe_len(&st), 5);
	CU_ASSERT_EQUAL(feed(&st, "\x98\x80"), 0);
	CU_ASSERT_EQUAL(sampler_stop_safe_len(&st), 9);
	sampler_stop_done(&st);
}

const cu_test_t sampler_tests[] = {
	{ "rng", test_rng },
	{ "argmax", test_argmax },
	{ "determinism per seed", test_determinism },
	{ "greedy limits", test_greedy_limits },
	{ "distribution", test_distribution },
	{ "nan logits", test_nan_logits },
	{ "kept set vs oracle", test_kept_set_oracle },
	{ "stop strings", test_stop_strings },
	{ "stop utf8 holdback", test_stop_utf8_holdback },
	{ NULL, NULL },
};
