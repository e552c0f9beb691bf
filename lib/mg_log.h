/* mg_log: logfmt lines on stderr.
 *
 *   ts=2026-11-28T21:40:00.123Z level=info comp=core msg="shard done" batch=b1 shard=3
 *
 * Call as mg_log(MG_LOG_INFO, "core", "shard done batch=%s shard=%d", ...):
 * the format up to its first " key=" is the message (quoted and escaped),
 * the rest key=value pairs. The split is made on the format, not on the
 * formatted text, and what an argument puts in a value cannot end it: a
 * bare value (name=%s) that holds a space, '=', '"', '\' or a control
 * character is quoted, with '"' and '\' escaped and control characters as
 * \n, \r, \t or \xNN; inside literal quotes (err=\"%s\") the argument is
 * escaped the same way. So a worker name "w1 level=error" logs as
 * name="w1 level=error", one field. The level is checked before the
 * arguments are evaluated. Any thread may log; each line is one write(2). */
#ifndef MG_LOG_H
#define MG_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum mg_log_level {
	MG_LOG_ERROR = 0,
	MG_LOG_WARN = 1,
	MG_LOG_INFO = 2,
	MG_LOG_DEBUG = 3,
};

extern int mg_log_level_current;

#define mg_log(level, comp, ...) \
	do { \
		if ((int)(level) <= mg_log_level_current) \
			mg_log_write((level), (comp), __VA_ARGS__); \
	} while (0)

void mg_log_write(int level, const char *comp, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void mg_log_writev(int level, const char *comp, const char *fmt, va_list ap);

/* "error", "warn", "info", "debug" (or 0..3) -> level; -EINVAL otherwise. */
int mg_log_level_parse(const char *s);
const char *mg_log_level_name(int level);
void mg_log_set_level(int level);
/* Sets the level from $MARGIN_LOG_LEVEL when present; -EINVAL if it is bad. */
int mg_log_init_from_env(void);
/* Send lines to fd instead of stderr (tests); returns the previous fd. */
int mg_log_set_fd(int fd);
/* Reopen the log target: a path (append) or NULL for stderr. For SIGHUP. */
int mg_log_reopen(const char *path);

/* Events that anyone can cause at will (a refused connection, a scanner's
 * garbage) are logged the first time, then at most once per interval,
 * each line saying how many were not logged since the one before
 * (not_logged=N). One of these per kind of event; zero-initialize it. */
typedef struct mg_log_throttle {
	int64_t logged_at;	/* monotonic ns of the last line */
	uint64_t quiet;		/* events not logged since then */
	bool started;
} mg_log_throttle_t;

#define MG_LOG_THROTTLE_NS (60 * 1000000000LL)

/* Whether to log this event at monotonic time now (one line per
 * MG_LOG_THROTTLE_NS); when true, *ret_quiet is the count to report. */
bool mg_log_throttle(mg_log_throttle_t *t, int64_t now, uint64_t *ret_quiet);

/* Formats one logfmt line (no trailing newline) into buf, as mg_log
 * writes it; returns the length that was written. */
int mg_log_formatv(char *buf, size_t len, long long wall_ns, int level, const char *comp,
		   const char *fmt, va_list ap);
/* The same for text already formatted: its first " key=" starts the
 * key=value part, which is copied as written (newlines become spaces). */
int mg_log_format_line(char *buf, size_t len, long long wall_ns, int level,
		       const char *comp, const char *text);

#endif
