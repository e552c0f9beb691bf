/* ops_pool: the small persistent thread pool of the kernels (see ops.h). */
#include "ops.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ======================= thread pool ======================= */

struct ops_pool {
	int n;			/* workers including the caller */
	pthread_t *th;		/* owned: [n - 1] */
	int n_started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	/* The region word: generation (high 32 bits) and the next task to
	 * claim (low 32; CLOSED while the caller rewrites the region). Tasks
	 * are claimed by compare-and-swap on it, so a worker that wakes late
	 * can never run a task of a region that is over, and the caller never
	 * waits for a worker that did not take part (on a loaded machine a
	 * pool thread may not get a core for milliseconds). */
	_Atomic uint64_t state;
	atomic_int done;	/* tasks finished in the current region */
	atomic_int sleepers;
	atomic_bool stop;
	atomic_bool spin;	/* idle workers spin/yield before sleeping */
	_Atomic(ops_task_fn) fn;	/* the current region */
	_Atomic(void *) arg;
	atomic_int n_tasks;
};

#define CLOSED 0xffffffffu

struct worker_arg {
	ops_pool_t *p;
	int id;
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static uint32_t gen_of(uint64_t s)
{
	return (uint32_t)(s >> 32);
}

/* Waits until the generation moves past seen: a short busy spin (regions
 * of one forward step follow each other within microseconds), then yields
 * (the machine may have fewer free cores than threads), then sleeps. */
static uint32_t wait_gen(ops_pool_t *p, uint32_t seen)
{
	uint32_t g;
	uint64_t t0 = 0;
	bool spin = atomic_load_explicit(&p->spin, memory_order_relaxed);
	for (unsigned i = 0; spin; i++) {
		g = gen_of(atomic_load(&p->state));
		if (g != seen)
			return g;
		if (i < 2000) {
			cpu_relax();
			continue;
		}
		if (t0 == 0)
			t0 = now_ns();
		else if (now_ns() - t0 > 300000)
			break;
		sched_yield();
	}
	pthread_mutex_lock(&p->mu);
	atomic_fetch_add(&p->sleepers, 1);
	while ((g = gen_of(atomic_load(&p->state))) == seen)
		pthread_cond_wait(&p->cv, &p->mu);
	atomic_fetch_sub(&p->sleepers, 1);
	pthread_mutex_unlock(&p->mu);
	return g;
}

/* Claims and runs tasks of region g until none is left or g is over. */
static void run_tasks(ops_pool_t *p, uint32_t g, int worker)
{
	for (;;) {
		uint64_t s = atomic_load(&p->state);
		uint32_t i = (uint32_t)s;
		if (gen_of(s) != g || i == CLOSED || (int64_t)i >= atomic_load(&p->n_tasks))
			return;
		if (!atomic_compare_exchange_weak(&p->state, &s, s + 1))
			continue;
		ops_task_fn fn = atomic_load(&p->fn);
		fn(atomic_load(&p->arg), (int)i, worker);
		atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
	}
}

static void *worker_main(void *a)
{
	struct worker_arg wa = *(struct worker_arg *)a;
	free(a);
	ops_pool_t *p = wa.p;
	uint32_t seen = 0;
	for (;;) {
		seen = wait_gen(p, seen);
		if (atomic_load(&p->stop))
			break;
		run_tasks(p, seen, wa.id);
	}
	return NULL;
}

/* Publishes state (a new generation) and wakes sleeping workers. */
static void publish(ops_pool_t *p, uint64_t state)
{
	atomic_store(&p->state, state);	/* seq_cst: pairs with the sleepers check */
	if (atomic_load(&p->sleepers) > 0) {
		pthread_mutex_lock(&p->mu);
		pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&p->mu);
	}
}

int ops_pool_new(int threads, ops_pool_t **ret)
{
	if (threads < 1 || threads > 1024 || ret == NULL)
		return -EINVAL;
	ops_pool_t *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return -ENOMEM;
	p->n = threads;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	atomic_init(&p->state, CLOSED);
	atomic_init(&p->done, 0);
	atomic_init(&p->sleepers, 0);
	atomic_init(&p->stop, false);
	atomic_init(&p->spin, true);
	atomic_init(&p->fn, NULL);
	atomic_init(&p->arg, NULL);
	atomic_init(&p->n_tasks, 0);
	int rc = 0;
	if (threads > 1) {
		p->th = calloc((size_t)threads - 1, sizeof(*p->th));
		if (p->th == NULL) {
			rc = -ENOMEM;
			goto fail;
		}
	}
	for (int i = 1; i < threads; i++) {
		struct worker_arg *wa = malloc(sizeof(*wa));
		if (wa == NULL) {
			rc = -ENOMEM;
			goto fail;
		}
		wa->p = p;
		wa->id = i;
		int e = pthread_create(&p->th[i - 1], NULL, worker_main, wa);
		if (e != 0) {
			free(wa);
			rc = -e;
			goto fail;
		}
		p->n_started++;
	}
	*ret = p;
	return 0;
fail:
	ops_pool_destroy(&p);
	return rc;
}

void ops_pool_destroy(ops_pool_t **pp)
{
	if (pp == NULL || *pp == NULL)
		return;
	ops_pool_t *p = *pp;
	if (p->n_started > 0) {
		atomic_store(&p->stop, true);
		uint32_t g = gen_of(atomic_load(&p->state)) + 1;
		publish(p, (uint64_t)g << 32 | CLOSED);
		for (int i = 0; i < p->n_started; i++)
			pthread_join(p->th[i], NULL);
	}
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p->th);
	free(p);
	*pp = NULL;
}

void ops_pool_set_spin(ops_pool_t *p, bool spin)
{
	if (p != NULL)
		atomic_store(&p->spin, spin);
}

int ops_pool_threads(const ops_pool_t *p)
{
	return p == NULL ? 1 : p->n;
}

void ops_pool_run(ops_pool_t *p, ops_task_fn fn, void *arg, int n_tasks)
{
	if (n_tasks <= 0)
		return;
	if (p == NULL || p->n_started == 0 || n_tasks == 1) {
		for (int t = 0; t < n_tasks; t++)
			fn(arg, t, 0);
		return;
	}
	/* Close the old region before rewriting its description: a late
	 * worker's claim on it now fails (see run_tasks). */
	uint32_t g = gen_of(atomic_load(&p->state));
	atomic_store(&p->state, (uint64_t)g << 32 | CLOSED);
	atomic_store(&p->fn, fn);
	atomic_store(&p->arg, arg);
	atomic_store(&p->n_tasks, n_tasks);
	atomic_store(&p->done, 0);
	g++;
	publish(p, (uint64_t)g << 32);
	run_tasks(p, g, 0);
	/* Wait for tasks other workers are still running. */
	for (unsigned i = 0; atomic_load_explicit(&p->done, memory_order_acquire) < n_tasks; i++) {
		if (i < 4000)
			cpu_relax();
		else
			sched_yield();
	}
}

#define MAX_SHARES 64

typedef struct share {
	_Alignas(64) _Atomic uint64_t v;	/* lo | hi << 32: tasks [lo, hi) left */
} share_t;

typedef struct shares_job {
	ops_share_fn fn;
	void *arg;
	int n;			/* shares */
	share_t s[MAX_SHARES];
} shares_job_t;

/* Takes the lowest (the owner) or the highest (a thief) task left in a
 * share; -1 when none is. */
static int share_take(share_t *sh, bool low)
{
	uint64_t v = atomic_load_explicit(&sh->v, memory_order_relaxed);
	for (;;) {
		uint32_t lo = (uint32_t)v, hi = (uint32_t)(v >> 32);
		if (lo >= hi)
			return -1;
		uint64_t nv = low ? v + 1 : ((uint64_t)(hi - 1) << 32 | lo);
		if (atomic_compare_exchange_weak_explicit(&sh->v, &v, nv, memory_order_relaxed,
							  memory_order_relaxed))
			return low ? (int)lo : (int)(hi - 1);
	}
}

/* The task the same walk would take next, if nobody takes it first. */
static int share_peek(share_t *sh, bool low)
{
	uint64_t v = atomic_load_explicit(&sh->v, memory_order_relaxed);
	uint32_t lo = (uint32_t)v, hi = (uint32_t)(v >> 32);
	if (lo >= hi)
		return -1;
	return low ? (int)lo : (int)(hi - 1);
}

static void share_task(void *arg, int share, int worker)
{
	shares_job_t *j = arg;
	for (int d = 0; d < j->n; d++) {
		share_t *sh = &j->s[(share + d) % j->n];
		bool own = d == 0;
		for (int t = share_take(sh, own); t >= 0; t = share_take(sh, own))
			j->fn(j->arg, t, share_peek(sh, own), worker);
	}
}

void ops_pool_run_shares(ops_pool_t *p, ops_share_fn fn, void *arg, int n_tasks)
{
	if (n_tasks <= 0)
		return;
	int n = ops_pool_threads(p);
	if (n > MAX_SHARES)
		n = MAX_SHARES;
	if (n > n_tasks)
		n = n_tasks;
	shares_job_t j = { .fn = fn, .arg = arg, .n = n };
	for (int i = 0; i < n; i++) {
		uint64_t lo = (uint64_t)i * (uint64_t)n_tasks / (uint64_t)n;
		uint64_t hi = (uint64_t)(i + 1) * (uint64_t)n_tasks / (uint64_t)n;
		atomic_init(&j.s[i].v, lo | hi << 32);
	}
	ops_pool_run(p, share_task, &j, n);
}
