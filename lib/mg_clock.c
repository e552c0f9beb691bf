/* mg_clock: see mg_clock.h. */
#include "mg_clock.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t clock_ns(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * MG_NS_PER_S + ts.tv_nsec;
}

int64_t mg_clock_now_ns(void) { return clock_ns(CLOCK_MONOTONIC); }
int64_t mg_clock_wall_ns(void) { return clock_ns(CLOCK_REALTIME); }
int64_t mg_clock_thread_cpu_ns(void) { return clock_ns(CLOCK_THREAD_CPUTIME_ID); }

char *mg_clock_format_iso8601(char *buf, size_t len, int64_t wall_ns)
{
	time_t s = (time_t)(wall_ns / MG_NS_PER_S);
	int ms = (int)((wall_ns % MG_NS_PER_S) / MG_NS_PER_MS);
	struct tm tm;
	gmtime_r(&s, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
		 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
		 tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
	return buf;
}

static const struct {
	const char *suffix;
	int64_t ns;
} units[] = {
	{ "ns", 1 }, { "us", MG_NS_PER_US }, { "ms", MG_NS_PER_MS },
	{ "s", MG_NS_PER_S }, { "sec", MG_NS_PER_S },
	{ "m", 60 * MG_NS_PER_S }, { "min", 60 * MG_NS_PER_S },
	{ "h", 3600 * MG_NS_PER_S }, { "d", 86400 * MG_NS_PER_S },
};

int mg_clock_parse_duration(const char *s, int64_t default_unit_ns, int64_t *ret_ns)
{
	if (s == NULL || *s == '\0')
		return -EINVAL;
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (end == s || errno != 0 || !isfinite(v) || v < 0)
		return -EINVAL;
	while (*end == ' ')
		end++;
	int64_t unit = default_unit_ns;
	if (*end != '\0') {
		unit = 0;
		for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
			if (strcmp(end, units[i].suffix) == 0)
				unit = units[i].ns;
		if (unit == 0)
			return -EINVAL;
	}
	double ns = v * (double)unit;
	if (ns > 9.2e18)
		return -ERANGE;
	*ret_ns = (int64_t)llround(ns);
	return 0;
}

void mg_clock_sleep_ns(int64_t ns)
{
	if (ns <= 0)
		return;
	struct timespec ts = { (time_t)(ns / MG_NS_PER_S), (long)(ns % MG_NS_PER_S) };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}
