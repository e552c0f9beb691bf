/* sampler: token selection (greedy, top-k, top-p, temperature) with a
 * per-request xoshiro256** generator, and stop-string matching. See
 * sampler.h for the exact rules; they are part of the reproducibility
 * contract, so change them only with a note in the docs. */
#include "sampler.h"
#include "lib/mg_hash.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* --- generator ---------------------------------------------------------- */

static inline uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

void sampler_rng_seed(sampler_rng_t *r, uint64_t seed)
{
	uint64_t x = seed;
	for (int i = 0; i < 4; i++)
		r->s[i] = mg_splitmix64(&x);
	/* splitmix64 is a bijection of its counter, so four successive outputs
	 * cannot all be zero; keep the guard for the generator's invariant. */
	if ((r->s[0] | r->s[1] | r->s[2] | r->s[3]) == 0)
		r->s[0] = 1;
}

uint64_t sampler_rng_next(sampler_rng_t *r)
{
	uint64_t *s = r->s;
	uint64_t out = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return out;
}

double sampler_rng_uniform(sampler_rng_t *r)
{
	return (double)(sampler_rng_next(r) >> 11) * 0x1.0p-53;
}

/* --- selection ---------------------------------------------------------- */

/* GCC/clang vector extensions: AVX-512 registers here, split into smaller
 * ones (or scalars) elsewhere, with the same IEEE results. */
typedef float vf16 __attribute__((vector_size(64)));
typedef int32_t vi16 __attribute__((vector_size(64)));

/* Tokens are binned by their distance below the best logit, 1/8 logit per
 * bin, so top-k and top-p only have to sort out the one bin where their
 * boundary falls. */
#define SAMPLER_BUCKETS 1024
#define BUCKET_SCALE 8.0f

typedef struct cand {
	float logit;		/* NaN already replaced by -inf */
	int32_t id;
	float w;		/* exp(logit - max) at temperature 1 (top-p) */
} cand_t;

struct sampler {
	int n_vocab;
	sampler_params_t p;
	sampler_rng_t rng;
	/* workspace, [n_vocab] each, owned; touched only by non-greedy draws */
	cand_t *cand;		/* selection */
	float *x;		/* exponents */
	float *w;		/* their exp */
	int32_t *kid;		/* kept ids, in id order */
	uint16_t *bucket;	/* each token's bucket (see sampler_sample) */
	uint32_t bcount[SAMPLER_BUCKETS];
	double bmass[SAMPLER_BUCKETS];
};

int sampler_new(int n_vocab, sampler_t **ret)
{
	if (n_vocab <= 0)
		return -EINVAL;
	sampler_t *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	s->n_vocab = n_vocab;
	size_t V = (size_t)n_vocab;
	s->cand = malloc(V * sizeof(*s->cand));
	s->x = malloc(V * sizeof(*s->x));
	s->w = malloc(V * sizeof(*s->w));
	s->kid = malloc(V * sizeof(*s->kid));
	s->bucket = malloc(V * sizeof(*s->bucket));
	if (s->cand == NULL || s->x == NULL || s->w == NULL || s->kid == NULL || s->bucket == NULL) {
		sampler_destroy(&s);
		return -ENOMEM;
	}
	sampler_reset(s, &(sampler_params_t){ 0 });
	*ret = s;
	return 0;
}

void sampler_destroy(sampler_t **ps)
{
	if (ps == NULL || *ps == NULL)
		return;
	free((*ps)->cand);
	free((*ps)->x);
	free((*ps)->w);
	free((*ps)->kid);
	free((*ps)->bucket);
	free(*ps);
	*ps = NULL;
}

void sampler_reset(sampler_t *s, const sampler_params_t *p)
{
	s->p = *p;
	sampler_rng_seed(&s->rng, p->seed);
}

int32_t sampler_argmax(const float *x, int n)
{
	/* the largest value (NaN never wins a comparison), then its first
	 * index: two cheap passes instead of one branchy one */
	size_t N = n > 0 ? (size_t)n : 0, i = 0;
	const vf16 zero = { 0 }, ninf = zero - (float)INFINITY;
	vf16 m = ninf;
	for (; i + 16 <= N; i += 16) {
		vf16 v;
		memcpy(&v, x + i, sizeof(v));
		vi16 gt = v > m;
		m = (vf16)(((vi16)v & gt) | ((vi16)m & ~gt));
	}
	float mx = -INFINITY;
	for (int k = 0; k < 16; k++)
		if (m[k] > mx)
			mx = m[k];
	for (; i < N; i++)
		if (x[i] > mx)
			mx = x[i];
	for (i = 0; i < N; i++)
		if (x[i] == mx)
			return (int32_t)i;
	return 0;	/* every value NaN */
}

/* e^x for x <= 0 from a fixed sequence of float operations (no libm; one
 * operation per statement, so no compiler fuses a multiply-add): the same
 * bits on every machine, in the scalar and the vector version alike.
 *   n = round-to-nearest(x log2 e) by adding and subtracting 1.5 x 2^23
 *   r = x - n ln2 (ln2 split in two so the first product is exact)
 *   e^r by its Taylor polynomial to degree 7 (relative error < 1e-7)
 *   times 2^n built in the exponent bits.
 * x <= -87 (and NaN) gives 0; x is never positive here. */
#define EXP_MAGIC 12582912.0f	/* 1.5 x 2^23 */
#define EXP_LOG2E 1.44269504f
#define EXP_LN2_HI 0.693145751953125f
#define EXP_LN2_LO 1.42860682e-6f
static const float exp_c[8] = { 1.0f / 5040, 1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f };

static float exp_neg(float x)
{
	if (!(x > -87.0f))
		return 0.0f;
	float t = x * EXP_LOG2E;
	float n = t + EXP_MAGIC;
	n = n - EXP_MAGIC;
	float hi = n * EXP_LN2_HI;
	float lo = n * EXP_LN2_LO;
	float r = x - hi;
	r = r - lo;
	float p = exp_c[0];
	for (int i = 1; i < 8; i++) {
		p = p * r;
		p = p + exp_c[i];
	}
	int32_t bits = ((int32_t)n + 127) << 23;	/* n in [-126, 0] */
	float scale;
	memcpy(&scale, &bits, sizeof(scale));
	return p * scale;
}

/* y[i] = exp_neg(x[i]), sixteen at a time. */
static void exp_neg_n(const float *x, float *y, size_t n)
{
	size_t i = 0;
	const vf16 zero = { 0 }, lim = zero - 87.0f;
	for (; i + 16 <= n; i += 16) {
		vf16 v;
		memcpy(&v, x + i, sizeof(v));
		vi16 live = v > lim;	/* -1 where x > -87; NaN compares false */
		v = (vf16)(((vi16)v & live) | ((vi16)lim & ~live));
		vf16 t = v * EXP_LOG2E;
		vf16 nf = t + EXP_MAGIC;
		nf = nf - EXP_MAGIC;
		vf16 hi = nf * EXP_LN2_HI;
		vf16 lo = nf * EXP_LN2_LO;
		vf16 r = v - hi;
		r = r - lo;
		vf16 p = zero + exp_c[0];
		for (int k = 1; k < 8; k++) {
			p = p * r;
			p = p + exp_c[k];
		}
		vi16 bits = (__builtin_convertvector(nf, vi16) + 127) << 23;
		vf16 out = p * (vf16)bits;
		out = (vf16)((vi16)out & live);
		memcpy(y + i, &out, sizeof(out));
	}
	for (; i < n; i++)
		y[i] = exp_neg(x[i]);
}

/* Selection order: higher logit first, then lower id. A total order. */
static inline bool before(float la, int32_t ia, float lb, int32_t ib)
{
	return la > lb || (la == lb && ia < ib);
}

static inline bool cbefore(const cand_t *a, const cand_t *b)
{
	return before(a->logit, a->id, b->logit, b->id);
}

static inline void cswap(cand_t *c, size_t i, size_t j)
{
	cand_t t = c[i];
	c[i] = c[j];
	c[j] = t;
}

/* Partitions c[lo..hi) (hi - lo >= 2) around the median of its first,
 * middle and last elements; returns the pivot's index p: c[lo..p) come
 * before it, c[p+1..hi) after. */
static size_t partition(cand_t *c, size_t lo, size_t hi)
{
	size_t mid = lo + (hi - lo) / 2, last = hi - 1;
	if (cbefore(&c[mid], &c[lo]))
		cswap(c, mid, lo);
	if (cbefore(&c[last], &c[lo]))
		cswap(c, last, lo);
	if (cbefore(&c[last], &c[mid]))
		cswap(c, last, mid);
	cswap(c, mid, last);
	cand_t pv = c[last];
	size_t st = lo;
	for (size_t i = lo; i < last; i++)
		if (cbefore(&c[i], &pv))
			cswap(c, i, st++);
	cswap(c, st, last);
	return st;
}

/* Quickselect: afterwards c[0..k) are the k first in selection order
 * (in no particular order among themselves). 0 < k < n. */
static void select_first(cand_t *c, size_t n, size_t k)
{
	size_t lo = 0, hi = n;
	while (hi - lo > 1) {
		size_t p = partition(c, lo, hi);
		if (p == k || p + 1 == k)
			return;
		if (k < p)
			hi = p;
		else
			lo = p + 1;
	}
}

/* The shortest prefix (in selection order) of c[0..n) whose mass reaches
 * target: moved to c[0..m), m returned (>= 1). Expected O(n). */
static size_t select_mass(cand_t *c, size_t n, double target)
{
	size_t lo = 0, hi = n;
	double above = 0;	/* mass of c[0..lo), all kept */
	while (lo < hi) {
		if (hi - lo == 1)
			return lo + 1;
		size_t p = partition(c, lo, hi);
		double m = above;
		for (size_t i = lo; i < p; i++)
			m += c[i].w;
		if (m >= target) {
			hi = p;
		} else if (m + c[p].w >= target) {
			return p + 1;
		} else {
			above = m + c[p].w;
			lo = p + 1;
		}
	}
	/* rounding left the target above the total: keep everything */
	return lo > 0 ? lo : 1;
}

int32_t sampler_sample(sampler_t *s, const float *logits)
{
	const sampler_params_t *p = &s->p;
	size_t V = (size_t)s->n_vocab;
	int32_t best = sampler_argmax(logits, s->n_vocab);
	if (!(p->temperature > 0) || p->top_k == 1)
		return best;
	float lmax = logits[best];
	if (isnan(lmax) || lmax == -INFINITY)
		return best;	/* no token has any weight */

	/* top-k and top-p decide the kept set; it is then named by its last
	 * member in selection order (the boundary). Both work on the bins:
	 * whole bins are in or out, and only the bin holding the boundary is
	 * selected element by element (bins follow the selection order). */
	bool use_k = p->top_k > 0 && p->top_k < V;
	bool use_p = p->top_p > 0 && p->top_p < 1;
	bool bounded = use_k || use_p;
	cand_t bound = { 0 };
	if (bounded) {
		cand_t *c = s->cand;
		memset(s->bcount, 0, sizeof(s->bcount));
		for (size_t i = 0; i < V; i++) {
			float l = isnan(logits[i]) ? -INFINITY : logits[i];
			float d = (lmax - l) * BUCKET_SCALE;
			uint16_t b = d < (float)(SAMPLER_BUCKETS - 1) ? (uint16_t)d : SAMPLER_BUCKETS - 1;
			s->bucket[i] = b;
			s->bcount[b]++;
		}
		size_t n = 0;
		if (use_k) {
			/* bins wholly inside the top k, then the bin that straddles */
			size_t cum = 0;
			uint16_t bk = 0;
			while (cum + s->bcount[bk] < p->top_k)
				cum += s->bcount[bk++];
			for (size_t i = 0; i < V; i++)
				if (s->bucket[i] < bk)
					c[n++] = (cand_t){ logits[i], (int32_t)i, 0 };
			size_t n0 = n;
			for (size_t i = 0; i < V; i++)
				if (s->bucket[i] == bk)
					c[n++] = (cand_t){ isnan(logits[i]) ? -INFINITY : logits[i], (int32_t)i, 0 };
			if (p->top_k - n0 < n - n0)
				select_first(c + n0, n - n0, p->top_k - n0);
			n = p->top_k;
			if (use_p) {
				/* top-p over the k kept, at temperature 1 */
				for (size_t j = 0; j < n; j++)
					s->x[j] = c[j].logit - lmax;
				exp_neg_n(s->x, s->w, n);
				double z = 0;
				for (size_t j = 0; j < n; j++)
					z += (c[j].w = s->w[j]);
				n = select_mass(c, n, (double)p->top_p * z);
			}
		} else {
			/* top-p over the vocabulary: bin masses, then the bin where
			 * the cumulative mass reaches p of the total */
			for (size_t i = 0; i < V; i++)
				s->x[i] = (isnan(logits[i]) ? -INFINITY : logits[i]) - lmax;
			exp_neg_n(s->x, s->w, V);
			memset(s->bmass, 0, sizeof(s->bmass));
			for (size_t i = 0; i < V; i++)
				s->bmass[s->bucket[i]] += s->w[i];
			double z = 0;
			for (int b = 0; b < SAMPLER_BUCKETS; b++)
				z += s->bmass[b];
			double target = (double)p->top_p * z, above = 0;
			int bp = 0;
			while (bp < SAMPLER_BUCKETS - 1 && (s->bcount[bp] == 0 || above + s->bmass[bp] < target))
				above += s->bmass[bp++];
			while (s->bcount[bp] == 0)	/* rounding ran past the end */
				bp--;
			for (size_t i = 0; i < V; i++)
				if (s->bucket[i] == bp)
					c[n++] = (cand_t){ isnan(logits[i]) ? -INFINITY : logits[i], (int32_t)i, s->w[i] };
			n = select_mass(c, n, target - above);
		}
		bound = c[0];
		for (size_t j = 1; j < n; j++)
			if (cbefore(&bound, &c[j]))
				bound = c[j];
	}

	/* The kept tokens in id order, their weights at temperature T. */
	float inv_t = 1.0f / p->temperature;
	size_t m = 0;
	for (size_t i = 0; i < V; i++) {
		float l = isnan(logits[i]) ? -INFINITY : logits[i];
		if (bounded && before(bound.logit, bound.id, l, (int32_t)i))
			continue;
		float d = l - lmax;
		s->kid[m] = (int32_t)i;
		s->x[m++] = d * inv_t;
	}
	exp_neg_n(s->x, s->w, m);
	double total = 0;
	for (size_t j = 0; j < m; j++)
		total += s->w[j];
	double u = sampler_rng_uniform(&s->rng) * total, cum = 0;
	for (size_t j = 0; j < m; j++) {
		cum += s->w[j];
		if (cum > u)
			return s->kid[j];
	}
	for (size_t j = m; j-- > 0;)	/* u rounded up to total */
		if (s->w[j] > 0)
			return s->kid[j];
	return best;
}

/* --- stop strings ------------------------------------------------------- */

int sampler_stop_init(sampler_stop_t *st, const char *const *stop, size_t n_stop)
{
	memset(st, 0, sizeof(*st));
	if (n_stop == 0)
		return 0;
	st->stop = calloc(n_stop, sizeof(*st->stop));
	if (st->stop == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < n_stop; i++) {
		if (stop[i] == NULL || stop[i][0] == '\0')
			continue;
		char *d = strdup(stop[i]);
		if (d == NULL)
			return -ENOMEM;
		st->stop[st->n_stop++] = d;
		size_t l = strlen(d);
		if (l > st->max_stop_len)
			st->max_stop_len = l;
	}
	return 0;
}

void sampler_stop_done(sampler_stop_t *st)
{
	if (st == NULL)
		return;
	if (st->stop != NULL)
		for (size_t i = 0; i < st->n_stop; i++)
			free(st->stop[i]);
	free(st->stop);
	free(st->text);
	memset(st, 0, sizeof(*st));
}

void sampler_stop_clear(sampler_stop_t *st)
{
	st->len = 0;
	if (st->text != NULL)
		st->text[0] = '\0';
	st->stopped = false;
}

int sampler_stop_feed(sampler_stop_t *st, const char *piece, size_t len)
{
	if (st->stopped)
		return 1;
	if (st->len + len + 1 > st->cap) {
		size_t cap = st->cap ? st->cap : 64;
		while (cap < st->len + len + 1)
			cap *= 2;
		char *t = realloc(st->text, cap);
		if (t == NULL)
			return -ENOMEM;
		st->text = t;
		st->cap = cap;
	}
	size_t old = st->len;
	memcpy(st->text + old, piece, len);
	st->len += len;
	st->text[st->len] = '\0';
	if (st->n_stop == 0 || len == 0)
		return 0;

	/* A new match must end inside the new bytes, so it starts at most
	 * max_stop_len - 1 bytes before them. The earliest start wins. */
	size_t from = old > st->max_stop_len - 1 ? old - (st->max_stop_len - 1) : 0;
	size_t best = SIZE_MAX;
	for (size_t i = 0; i < st->n_stop; i++) {
		size_t sl = strlen(st->stop[i]);
		const char *hit = memmem(st->text + from, st->len - from, st->stop[i], sl);
		if (hit != NULL && (size_t)(hit - st->text) < best)
			best = (size_t)(hit - st->text);
	}
	if (best == SIZE_MAX)
		return 0;
	st->len = best;
	st->text[best] = '\0';
	st->stopped = true;
	return 1;
}

size_t sampler_stop_safe_len(const sampler_stop_t *st)
{
	if (st->stopped)
		return st->len;
	const char *t = st->text;
	size_t safe = st->len;
	/* Longest tail that is a proper prefix of a stop string. */
	size_t hmax = st->max_stop_len > 0 ? st->max_stop_len - 1 : 0;
	if (hmax > st->len)
		hmax = st->len;
	for (size_t h = hmax; h > 0; h--) {
		bool hit = false;
		for (size_t i = 0; i < st->n_stop && !hit; i++)
			hit = strlen(st->stop[i]) > h && memcmp(t + st->len - h, st->stop[i], h) == 0;
		if (hit) {
			safe = st->len - h;
			break;
		}
	}
	/* Do not cut a UTF-8 sequence: find the lead byte of the last one. */
	size_t i = safe, back = 0;
	while (i > 0 && back < 4 && ((unsigned char)t[i - 1] & 0xC0) == 0x80) {
		i--;
		back++;
	}
	if (i > 0) {
		unsigned char lead = (unsigned char)t[i - 1];
		size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
		if (lead >= 0xC0 && lead < 0xF8 && back + 1 < need)
			safe = i - 1;
	}
	return safe;
}
