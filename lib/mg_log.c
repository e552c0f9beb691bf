/* mg_log: logfmt lines on stderr. See mg_log.h. */
#include "mg_log.h"
#include "mg_clock.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

int mg_log_level_current = MG_LOG_INFO;
static int log_fd = 2;
static int log_fd_owned;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

const char *mg_log_level_name(int level)
{
	if (level < 0 || level > MG_LOG_DEBUG)
		return "unknown";
	return level_names[level];
}

int mg_log_level_parse(const char *s)
{
	if (s == NULL)
		return -EINVAL;
	for (int i = 0; i <= MG_LOG_DEBUG; i++)
		if (strcasecmp(s, level_names[i]) == 0)
			return i;
	if (strcasecmp(s, "warning") == 0)
		return MG_LOG_WARN;
	if (s[0] >= '0' && s[0] <= '3' && s[1] == '\0')
		return s[0] - '0';
	return -EINVAL;
}

void mg_log_set_level(int level)
{
	if (level < MG_LOG_ERROR)
		level = MG_LOG_ERROR;
	if (level > MG_LOG_DEBUG)
		level = MG_LOG_DEBUG;
	mg_log_level_current = level;
}

int mg_log_init_from_env(void)
{
	const char *s = getenv("MARGIN_LOG_LEVEL");
	if (s == NULL || *s == '\0')
		return 0;
	int l = mg_log_level_parse(s);
	if (l < 0)
		return l;
	mg_log_set_level(l);
	return 0;
}

int mg_log_set_fd(int fd)
{
	int old = log_fd;
	log_fd = fd;
	log_fd_owned = 0;
	return old;
}

int mg_log_reopen(const char *path)
{
	int fd = 2;
	if (path != NULL) {
		fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
		if (fd < 0)
			return -errno;
	}
	int old = log_fd, old_owned = log_fd_owned;
	log_fd = fd;
	log_fd_owned = path != NULL;
	if (old_owned)
		close(old);
	return 0;
}

/* Where does the key=value part start? At the first " key=" whose key is
 * [A-Za-z_][A-Za-z0-9_.]* ; -1 when there is none. */
static int kv_start(const char *t)
{
	for (int i = 0; t[i]; i++) {
		if (i > 0 && t[i - 1] != ' ')
			continue;
		if (!(isalpha((unsigned char)t[i]) || t[i] == '_'))
			continue;
		int j = i;
		while (isalnum((unsigned char)t[j]) || t[j] == '_' || t[j] == '.')
			j++;
		if (t[j] == '=' && t[j + 1] != '=' && j > i)
			return i;
	}
	return -1;
}

int mg_log_format_line(char *buf, size_t len, long long wall_ns, int level,
		       const char *comp, const char *text)
{
	char ts[40];
	mg_clock_format_iso8601(ts, sizeof(ts), wall_ns);
	size_t n = 0;
#define PUT(...) do { \
		int w_ = snprintf(buf + n, n < len ? len - n : 0, __VA_ARGS__); \
		if (w_ > 0) n += (size_t)w_; \
	} while (0)
	PUT("ts=%s level=%s comp=%s msg=\"", ts, mg_log_level_name(level), comp);
	int kv = kv_start(text);
	size_t mlen = kv < 0 ? strlen(text) : (size_t)kv;
	while (mlen > 0 && text[mlen - 1] == ' ')
		mlen--;
	for (size_t i = 0; i < mlen && n + 8 < len; i++) {
		unsigned char c = (unsigned char)text[i];
		if (c == '"' || c == '\\')
			PUT("\\%c", c);
		else if (c == '\n')
			PUT("\\n");
		else if (c < 0x20)
			PUT("\\x%02x", c);
		else
			buf[n++] = (char)c;
	}
	PUT("\"");
	if (kv >= 0) {
		PUT(" ");
		for (const char *p = text + kv; *p && n + 4 < len; p++)
			buf[n++] = (*p == '\n') ? ' ' : *p;
	}
#undef PUT
	if (n >= len)
		n = len ? len - 1 : 0;
	if (len)
		buf[n] = '\0';
	return (int)n;
}

void mg_log_writev(int level, const char *comp, const char *fmt, va_list ap)
{
	char text[2048], line[4096];
	vsnprintf(text, sizeof(text), fmt, ap);
	int n = mg_log_format_line(line, sizeof(line) - 1, mg_clock_wall_ns(), level, comp, text);
	line[n++] = '\n';
	ssize_t w = write(log_fd, line, (size_t)n);
	(void)w;
}

void mg_log_write(int level, const char *comp, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	mg_log_writev(level, comp, fmt, ap);
	va_end(ap);
}
