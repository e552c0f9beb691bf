/* calib: this machine's limits, the denominators of the benchmark's
 * percentages. Each is measured on `threads` threads, one untimed
 * repetition first, then the median of the timed ones:
 *
 *   fma_gflops     f32 fused multiply-adds on registers only, at the widest
 *                  vector width this build uses (AVX-512 zmm, AVX2 ymm or
 *                  scalar; calib_fma_kind()): 12 independent accumulators
 *                  per thread hide the FMA latency. 2 FLOPs per lane and
 *                  instruction; 7 repetitions of about 50 ms.
 *   int8_gops      int8 dot products on registers only, the instruction
 *                  the quantized kernels use: VNNI vpdpbusd where the
 *                  build has it, else vpmaddubsw + vpmaddwd + vpaddd
 *                  (AVX-512BW, AVX2), else scalar (calib_int8_kind()).
 *                  One multiply-add = 2 ops; 7 repetitions.
 *   bandwidth_gbs  a read-only sum over 512 MiB, split among the threads,
 *                  each touching its own part first; 7 passes, bytes read
 *                  / time (10^9 bytes per GB).
 *   sgemm_gflops   a reference line: cblas_sgemm on 2048^3 f32 with
 *                  `threads` OpenBLAS threads, 5 calls (2 n^3 FLOPs
 *                  each), labelled with the core type OpenBLAS chose
 *                  (blas_core, openblas_get_corename()).
 *   spread_pct     the largest (max - min) / median over the repetitions
 *                  of any of the four; with several threads, the FMA and
 *                  int8 loops are also run on one thread, and how far the
 *                  threads fall short of `threads` times that counts as a
 *                  spread (a core held by another process).
 *
 * A calibration is kept in a JSON file (by default
 * $XDG_CACHE_HOME/margin/calib-<threads>.json, or ~/.cache/margin/...)
 * with the keys fma_gflops, int8_gops, bandwidth_gbs, sgemm_gflops,
 * blas_core, threads, measured_at, spread_pct, cpu_model, cpu_flags_key
 * (and reps, fma_kind, int8_kind, measured_at_ns), and reused only by the
 * same CPU model, flags and thread count. A measurement whose spread is
 * above CALIB_MAX_SPREAD_PCT is taken again, up to CALIB_TRIES times; when
 * none is steady the steadiest is returned marked unreliable and not
 * saved.
 *
 * Not thread-safe (it sets OpenBLAS's thread count); call it from main's
 * thread before starting work. */
#ifndef CALIB_H
#define CALIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CALIB_MAX_SPREAD_PCT 10.0
#define CALIB_TRIES 3

typedef struct calib {
	double fma_gflops;
	double int8_gops;
	double bandwidth_gbs;
	double sgemm_gflops;
	char blas_core[32];	/* openblas_get_corename() when measured */
	int threads;
	int reps;		/* timed repetitions of the FMA and int8 loops */
	double spread_pct;
	double spreads_pct[4];	/* each one's: fma, int8, bandwidth, sgemm */
	char fma_kind[24];	/* "avx512 zmm", "avx2 ymm", "scalar" */
	char int8_kind[40];
	char cpu_model[96];
	char cpu_flags_key[96];
	int64_t measured_at_ns;	/* wall clock of the measurement */
	/* Not in the file: how calib_get came by it. */
	int tries;		/* measurements taken by this call (0: from the file) */
	bool unreliable;	/* spread above the limit in every try; not saved */
} calib_t;

/* The vector code this build measures with (compile-time, as qmm.c). */
const char *calib_fma_kind(void);
const char *calib_int8_kind(void);

/* This CPU: the model name (/proc/cpuinfo, with family and model) and
 * the flags that decide the kernels ("avx2 fma avx512f avx512bw
 * avx512vnni", those present, and the build's kinds). */
void calib_cpu_id(char *model, size_t model_len, char *flags, size_t flags_len);

/* Repetition times (seconds) of a measurement doing `work` units each:
 * *ret_rate = median of work / time, *ret_spread_pct = (max - min) /
 * median of those rates. -EINVAL for n < 1 or a time <= 0. */
int calib_rates(const double *secs, int n, double work, double *ret_rate, double *ret_spread_pct);

/* Measures in this process (its peak RSS grows by the 512 MiB buffer).
 * -ENOMEM, -EINVAL (threads < 1). */
int calib_measure(int threads, calib_t *ret, char *err, size_t errlen);
/* The same in a forked child, so the caller's heap and peak RSS
 * (getrusage ru_maxrss) are untouched. */
int calib_measure_isolated(int threads, calib_t *ret, char *err, size_t errlen);

/* Tests: calib_get measures with fn instead of calib_measure_isolated
 * (NULL restores it). */
typedef int (*calib_measure_fn)(int threads, calib_t *ret, char *err, size_t errlen);
void calib_set_measure_hook(calib_measure_fn fn);

/* "$XDG_CACHE_HOME/margin/calib-<threads>.json" (or under ~/.cache).
 * -ENOENT when neither variable is set, -ENAMETOOLONG. */
int calib_default_path(int threads, char *buf, size_t len);
/* -ENOENT (no file), -EBADMSG (not a calibration file; err says which
 * key). */
int calib_load(const char *path, calib_t *ret, char *err, size_t errlen);
/* Writes atomically (temporary file + rename), creating the directory. */
int calib_save(const char *path, const calib_t *c, char *err, size_t errlen);

/* The calibration for `threads` on this CPU: from path (NULL: the default
 * path) when it exists, is valid and was made on the same CPU model and
 * flags with the same thread count, unless recalibrate; otherwise
 * measured (isolated, up to CALIB_TRIES times while the spread is above
 * CALIB_MAX_SPREAD_PCT) and, when steady, saved there. A file that
 * cannot be written is not an error (the figures are still returned);
 * *ret_measured tells whether this call measured, ret->unreliable whether
 * no try was steady. */
int calib_get(const char *path, int threads, bool recalibrate, calib_t *ret, bool *ret_measured,
	      char *err, size_t errlen);

/* OpenBLAS on a CPU it does not know. OpenBLAS picks its kernels when the
 * library is loaded, from OPENBLAS_CORETYPE or cpuid; an old OpenBLAS on
 * a newer CPU falls back to a generic SSE core ("Prescott", "Core2",
 * "Nehalem", ...) or to an older family's ("Haswell" on an AVX-512 CPU
 * it does not know). Given the core it chose, the CPU's vector
 * extensions and the environment (OPENBLAS_CORETYPE as set: respected
 * unless it names a generic SSE core; MARGIN_OPENBLAS_CORETYPE = "keep"
 * leaves everything alone), returns the core type to restart with
 * ("SkylakeX" for AVX-512, "Haswell" for AVX2) when the chosen one uses
 * narrower vectors than the CPU has, or NULL to keep it. */
const char *calib_blas_core_fix(const char *core, bool avx512, bool avx2, const char *env_coretype,
				const char *env_opt);
/* Whether core is one of OpenBLAS's generic pre-AVX2 cores. */
bool calib_blas_core_is_generic(const char *core);

#endif
