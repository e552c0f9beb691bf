/* thru_bench: a `margin-worker bench --json` output read from a file (the
 * figures thru.h's throughputs and a hardware profile's bench = files come
 * from). Format: see thru.h. Any thread. */
#ifndef THRU_BENCH_H
#define THRU_BENCH_H

#include <stddef.h>
#include <stdint.h>

#define THRU_MAX_RUNS 64

typedef struct thru_run {
	uint32_t batch;
	double prefill_tok_s;	/* 0 when absent */
	double decode_tok_s;
	double gflops, roofline_pct, bandwidth_pct, peak_rss_mb;	/* 0 when absent */
} thru_run_t;

typedef struct thru_bench {
	char hardware[64];		/* the profile it was measured on ("hardware"), "" when absent
					 * or "unknown" */
	double sgemm_gflops, bandwidth_gbs;	/* machine section (0 when absent) */
	uint32_t threads;
	char model[96];			/* model.name or model.arch, "" when absent */
	uint64_t n_params;		/* 0 when absent */
	uint64_t params_per_token;	/* weights read per decoded token (no embedding table); 0 when absent */
	size_t n_runs;
	thru_run_t runs[THRU_MAX_RUNS];
	char origin[160];		/* file name */
	int source;			/* thru_source_t: THRU_BENCH when read from a file, THRU_ESTIMATED
					 * when made by speed_target_bench (0 = THRU_GIVEN) */
} thru_bench_t;

typedef enum thru_source {
	THRU_GIVEN,
	THRU_BENCH,
	THRU_ESTIMATED,
	THRU_LEDGER,
} thru_source_t;

/* -EBADMSG (syntax, with line:column) or -EINVAL naming the field. */
int thru_bench_parse(const char *name, const char *text, size_t len, thru_bench_t *ret, char *err, size_t errlen);
int thru_bench_load(const char *path, thru_bench_t *ret, char *err, size_t errlen);

#endif
