/* sampler: choosing the next token from a row of logits, and the stop
 * conditions that end a generation.
 *
 * Random numbers: every request owns a generator, xoshiro256** (Blackman &
 * Vigna, 2018) whose 256-bit state is filled from the 64-bit seed by four
 * successive splitmix64 outputs. Both are fixed integer algorithms, so a
 * seed gives the same stream on every machine and every build. A uniform
 * double in [0, 1) is the top 53 bits of one output times 2^-53.
 *
 * Selection, in the order llama.cpp's sampler chain applies them:
 *   temperature <= 0  -> greedy: argmax of the raw logits, ties to the
 *   (or top_k == 1)      lowest id; no random number is drawn
 *   otherwise         -> top-k (k > 0): keep the k first tokens in selection
 *                        order (higher logit first, ties to the lower id)
 *                     -> top-p (0 < p < 1): keep the shortest prefix, in
 *                        selection order, of what top-k kept (or of the
 *                        vocabulary) whose mass at temperature 1 reaches p
 *                        of its total; at least one token
 *                     -> temperature: weights exp((l - l_max) / T)
 *                     -> draw: one uniform u; the kept tokens are walked in
 *                        id order, summing their weights in double, and the
 *                        first whose running sum exceeds u x total is chosen.
 * Weights use the sampler's own exp (a fixed float polynomial, sampler.c),
 * not libm, so they are the same bits on every machine; tokens whose
 * weight underflows (more than 87 below the best after scaling) are never
 * drawn. Cost: O(V) per draw with no sort — bins of 1/8 logit below the
 * best narrow top-k/top-p to the one bin holding the boundary, where a
 * quickselect finishes. NaN logits count as -infinity.
 *
 * Stop strings (sampler_stop_t): the generated text is matched against the
 * stop strings after every token, including matches that span token
 * boundaries; on a match the text is cut where the stop string starts.
 * sampler_stop_safe_len() tells how much of the text can be shown while
 * generation goes on: it holds back a tail that could still become a stop
 * string and an incomplete UTF-8 sequence.
 *
 * A sampler_t / sampler_stop_t belongs to one request at a time and is used
 * by one thread. */
#ifndef SAMPLER_H
#define SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sampler_rng {
	uint64_t s[4];
} sampler_rng_t;

/* Fills the state from seed with splitmix64 (never all zero). */
void sampler_rng_seed(sampler_rng_t *r, uint64_t seed);
/* Next xoshiro256** output. */
uint64_t sampler_rng_next(sampler_rng_t *r);
/* Uniform in [0, 1): (next >> 11) * 2^-53. */
double sampler_rng_uniform(sampler_rng_t *r);

typedef struct sampler_params {
	float temperature;	/* <= 0: greedy */
	float top_p;		/* <= 0 or >= 1: off */
	uint32_t top_k;		/* 0: off */
	uint64_t seed;
} sampler_params_t;

typedef struct sampler sampler_t;

/* A sampler for a vocabulary of n_vocab tokens; its candidate buffer is
 * allocated here, once, so sampling never allocates. -EINVAL, -ENOMEM.
 * *ret owned by the caller (sampler_destroy). */
int sampler_new(int n_vocab, sampler_t **ret);
void sampler_destroy(sampler_t **s);
/* Start a new request: parameters and a generator seeded from p->seed. */
void sampler_reset(sampler_t *s, const sampler_params_t *p);
/* Choose a token from logits[n_vocab]; greedy requests draw no random
 * number. Returns the id (>= 0). */
int32_t sampler_sample(sampler_t *s, const float *logits);
/* Index of the largest of x[0..n-1], ties (and NaN) to the lowest index;
 * 0 when every value is NaN. n > 0. */
int32_t sampler_argmax(const float *x, int n);

typedef struct sampler_stop {
	char **stop;		/* owned: [n_stop] copies, empty strings dropped */
	size_t n_stop;
	size_t max_stop_len;
	char *text;		/* owned: generated text so far, NUL-terminated */
	size_t len;
	size_t cap;
	bool stopped;		/* a stop string matched; text ends before it */
} sampler_stop_t;

/* Copies the stop strings. -ENOMEM. On failure *st is still safe to pass
 * to sampler_stop_done. */
int sampler_stop_init(sampler_stop_t *st, const char *const *stop, size_t n_stop);
/* Frees what init and feed allocated; safe on a zeroed struct. */
void sampler_stop_done(sampler_stop_t *st);
/* Forget the text (keeps the buffer and the stop strings). */
void sampler_stop_clear(sampler_stop_t *st);
/* Appends a token's piece. Returns 1 when a stop string is now complete
 * (the text is cut at its start and further feeds are ignored), 0 when
 * not, -ENOMEM. */
int sampler_stop_feed(sampler_stop_t *st, const char *piece, size_t len);
/* Bytes of text that are final while generation continues (all of it once
 * stopped). */
size_t sampler_stop_safe_len(const sampler_stop_t *st);

#endif
