/* progress: the line `marginctl wait` shows while a batch runs.
 *
 * On a terminal one line redrawn in place (the batch id is printed once
 * above it by the caller):
 *   [##########..........]  50%  10/20 done  1 failed  412 tok/s  ETA 0:42  cost 0.012300 USD
 * elsewhere (a pipe, a log) a plain line per change:
 *   batch_1f… in_progress: 10/20 done, 1 failed, 412 tok/s, ETA 42s, cost 0.012300 USD
 *
 * Rates are averages since the first sample that saw the batch running,
 * so they settle instead of jumping with every poll. Pure functions. */
#ifndef PROGRESS_H
#define PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct progress {
	/* what the last poll said */
	const char *id, *status;
	int64_t total, completed, failed;
	int64_t tokens;			/* generated tokens so far (-1: unknown) */
	int64_t cost_micros;		/* -1: the API does not say */
	const char *currency;		/* NULL: none shown */
	/* derived by progress_update */
	double tok_per_s;		/* < 0: not known yet */
	double eta_s;			/* < 0: not known yet */
	/* first running sample */
	bool started;
	double t0;
	int64_t done0, tokens0;
} progress_t;

/* Takes a new sample at time t (seconds, any origin) from the fields
 * above; updates tok_per_s and eta_s. */
void progress_update(progress_t *p, double t);

/* Formats the line (no newline) into buf. bar: the terminal form, fitted
 * to width columns (>= 40). Returns the length written. */
size_t progress_format(const progress_t *p, bool bar, int width, char *buf, size_t len);

/* "0:42", "1:02:03"; "?" when s < 0. Returns buf. */
char *progress_duration(double s, char *buf, size_t len);

#endif
