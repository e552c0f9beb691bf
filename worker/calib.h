/* calib: this machine's limits, the denominators of the benchmark's
 * percentages.
 *
 *   sgemm_gflops   cblas_sgemm on 2048 x 2048 x 2048 f32 matrices with
 *                  `threads` OpenBLAS threads: one warm-up, then the
 *                  median of 5 timed calls (2 n^3 FLOPs each).
 *   bandwidth_gbs  a read-only sum over 512 MiB (16x a 32 MiB L3), split
 *                  among `threads` threads, each touching its own part
 *                  first: one warm-up pass, then the median of 7 passes,
 *                  bytes read / time (10^9 bytes per GB).
 *
 * Measuring takes a few seconds, so the result is kept in a JSON file
 * ({"sgemm_gflops":..,"bandwidth_gbs":..,"threads":..,"measured_at":".."};
 * by default $XDG_CACHE_HOME/margin/calib-<threads>.json, or
 * ~/.cache/margin/...) and reused until the caller asks to recalibrate.
 *
 * Not thread-safe (it sets OpenBLAS's thread count); call it from main's
 * thread before starting work. */
#ifndef CALIB_H
#define CALIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct calib {
	double sgemm_gflops;
	double bandwidth_gbs;
	int threads;
	int64_t measured_at_ns;	/* wall clock of the measurement */
} calib_t;

/* Measures in this process (its peak RSS grows by the 512 MiB buffer).
 * -ENOMEM, -EINVAL (threads < 1). */
int calib_measure(int threads, calib_t *ret, char *err, size_t errlen);
/* The same in a forked child, so the caller's heap and peak RSS
 * (getrusage ru_maxrss) are untouched. */
int calib_measure_isolated(int threads, calib_t *ret, char *err, size_t errlen);

/* "$XDG_CACHE_HOME/margin/calib-<threads>.json" (or under ~/.cache).
 * -ENOENT when neither variable is set, -ENAMETOOLONG. */
int calib_default_path(int threads, char *buf, size_t len);
/* -ENOENT (no file), -EBADMSG (not a calibration file; err says why). */
int calib_load(const char *path, calib_t *ret, char *err, size_t errlen);
/* Writes atomically (temporary file + rename), creating the directory. */
int calib_save(const char *path, const calib_t *c, char *err, size_t errlen);

/* The calibration for `threads`: from path (NULL: the default path) when it
 * exists, is valid and was made with the same thread count, unless
 * recalibrate; otherwise measured (isolated) and saved there. A file that
 * cannot be written is not an error (the figures are still returned);
 * *ret_measured tells whether this call measured. */
int calib_get(const char *path, int threads, bool recalibrate, calib_t *ret, bool *ret_measured,
	      char *err, size_t errlen);

#endif
