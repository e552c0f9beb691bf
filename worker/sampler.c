/* sampler: token selection (greedy, top-k, top-p, temperature) with a
 * per-request xoshiro256** generator, and stop-string matching. See
 * sampler.h for the exact rules; they are part of the reproducibility
 * contract, so change them only with a note in the docs. */
#include "sampler.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* --- generator ---------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

void sampler_rng_seed(sampler_rng_t *r, uint64_t seed)
{
	uint64_t x = seed;
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&x);
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

typedef struct cand {
	float logit;
	int32_t id;
} cand_t;

struct sampler {
	int n_vocab;
	sampler_params_t p;
	sampler_rng_t rng;
	cand_t *cand;		/* owned: [n_vocab] heap / kept candidates */
	double *prob;		/* owned: [n_vocab] weights of the kept candidates */
};

int sampler_new(int n_vocab, sampler_t **ret)
{
	if (n_vocab <= 0)
		return -EINVAL;
	sampler_t *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	s->n_vocab = n_vocab;
	s->cand = malloc((size_t)n_vocab * sizeof(*s->cand));
	s->prob = malloc((size_t)n_vocab * sizeof(*s->prob));
	if (s->cand == NULL || s->prob == NULL) {
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
	free((*ps)->prob);
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
	int32_t best = -1;
	float bv = 0;
	for (int i = 0; i < n; i++) {
		if (isnan(x[i]))
			continue;
		if (best < 0 || x[i] > bv) {
			best = i;
			bv = x[i];
		}
	}
	return best < 0 ? 0 : best;
}

/* Heap order: higher logit first, then lower id. */
static inline bool before(cand_t a, cand_t b)
{
	return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

static void sift_down(cand_t *h, size_t n, size_t i)
{
	cand_t x = h[i];
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= n)
			break;
		if (c + 1 < n && before(h[c + 1], h[c]))
			c++;
		if (!before(h[c], x))
			break;
		h[i] = h[c];
		i = c;
	}
	h[i] = x;
}

/* Moves the best of h[0..n-1] to h[n-1]; the heap is then h[0..n-2]. */
static void heap_pop(cand_t *h, size_t n)
{
	cand_t top = h[0];
	h[0] = h[n - 1];
	h[n - 1] = top;
	if (n > 2)
		sift_down(h, n - 1, 0);
}

int32_t sampler_sample(sampler_t *s, const float *logits)
{
	const sampler_params_t *p = &s->p;
	size_t V = (size_t)s->n_vocab;
	if (!(p->temperature > 0) || p->top_k == 1)
		return sampler_argmax(logits, s->n_vocab);

	cand_t *c = s->cand;
	for (size_t i = 0; i < V; i++) {
		float l = logits[i];
		c[i] = (cand_t){ isnan(l) ? -INFINITY : l, (int32_t)i };
	}
	bool use_k = p->top_k > 0 && p->top_k < V;
	bool use_p = p->top_p > 0 && p->top_p < 1;

	/* kept: the candidates that survive, in draw order. With top-k or top-p
	 * they are popped off a max-heap, which leaves them at the end of c in
	 * ascending order; reverse that run so it reads best first. */
	cand_t *kept = c;
	size_t m = V;
	if (use_k || use_p) {
		for (size_t i = V / 2; i-- > 0;)
			sift_down(c, V, i);
		double lmax = c[0].logit;
		size_t popped = 0;
		if (use_k) {
			for (; popped < p->top_k; popped++)
				heap_pop(c, V - popped);
		}
		if (use_p) {
			/* Mass at temperature 1 over what top-k kept (or the whole
			 * vocabulary): Z, then the shortest prefix reaching p·Z. */
			double z = 0;
			if (use_k) {
				for (size_t j = 0; j < popped; j++)
					z += exp((double)c[V - 1 - j].logit - lmax);
			} else {
				for (size_t i = 0; i < V; i++)
					z += exp((double)c[i].logit - lmax);
			}
			double target = (double)p->top_p * z, cum = 0;
			size_t j = 0;
			for (;;) {
				if (!use_k)
					heap_pop(c, V - j);
				cum += exp((double)c[V - 1 - j].logit - lmax);
				j++;
				if (cum >= target || j == (use_k ? popped : V))
					break;
			}
			popped = j;
		}
		m = popped;
		kept = c + (V - m);
		for (size_t a = 0, b = m - 1; a < b; a++, b--) {
			cand_t t = kept[a];
			kept[a] = kept[b];
			kept[b] = t;
		}
	}

	double lmax = -INFINITY;
	for (size_t j = 0; j < m; j++)
		if (kept[j].logit > lmax)
			lmax = kept[j].logit;
	if (lmax == -INFINITY)
		return kept[0].id;	/* nothing has any mass: first in order */
	double inv_t = 1.0 / (double)p->temperature, total = 0;
	for (size_t j = 0; j < m; j++) {
		s->prob[j] = exp(((double)kept[j].logit - lmax) * inv_t);
		total += s->prob[j];
	}
	double u = sampler_rng_uniform(&s->rng) * total, cum = 0;
	for (size_t j = 0; j < m; j++) {
		cum += s->prob[j];
		if (cum > u)
			return kept[j].id;
	}
	/* u rounds to total: the last candidate with any mass. */
	for (size_t j = m; j-- > 0;)
		if (s->prob[j] > 0)
			return kept[j].id;
	return kept[0].id;
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
