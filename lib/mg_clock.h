/* mg_clock: time in integer nanoseconds, durations as systemd writes them. */
#ifndef MG_CLOCK_H
#define MG_CLOCK_H

#include <stddef.h>
#include <stdint.h>

#define MG_NS_PER_US 1000LL
#define MG_NS_PER_MS 1000000LL
#define MG_NS_PER_S  1000000000LL

/* CLOCK_MONOTONIC, for intervals and deadlines. */
int64_t mg_clock_now_ns(void);
/* CLOCK_REALTIME, for timestamps people read. */
int64_t mg_clock_wall_ns(void);
/* Per-thread CPU time. */
int64_t mg_clock_thread_cpu_ns(void);
/* "2026-11-28T21:40:00.123Z" (UTC, milliseconds). Returns buf. */
char *mg_clock_format_iso8601(char *buf, size_t len, int64_t wall_ns);
/* "250ms", "30s", "10min", "2h", "1d", "1.5s", or a bare number of
 * default_unit_ns units. -EINVAL for anything else, -ERANGE on overflow. */
int mg_clock_parse_duration(const char *s, int64_t default_unit_ns, int64_t *ret_ns);
/* Sleep for ns (restarting after signals). */
void mg_clock_sleep_ns(int64_t ns);

#endif
