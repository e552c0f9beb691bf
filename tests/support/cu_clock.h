/* A fake monotonic clock for code that takes one (serve_opts_t.clock): it
 * moves only when the test moves it, so a test that asserts that nothing
 * happened within an interval can fail, whatever the machine's speed. Any
 * thread may read it. */
#ifndef CU_CLOCK_H
#define CU_CLOCK_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct cu_clock {
	_Atomic int64_t ns;	/* start it well above 0: 0 reads as "never" */
} cu_clock_t;

/* The reader to pass with the clock as its context. */
static inline int64_t cu_clock_read(void *clock)
{
	return atomic_load(&((cu_clock_t *)clock)->ns);
}

/* Moves the clock forward by ns; returns the new reading. */
static inline int64_t cu_clock_advance(cu_clock_t *c, int64_t ns)
{
	return atomic_fetch_add(&c->ns, ns) + ns;
}

#endif
