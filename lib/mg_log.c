/* mg_log: logfmt lines on stderr. See mg_log.h. */
#include "mg_log.h"
#include "mg_clock.h"

#include <ctype.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
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

/* --- a bounded output buffer ------------------------------------------ */

struct out {
	char *buf;
	size_t cap, n;		/* n < cap always; buf[n] == '\0' */
};

static void put(struct out *o, const char *s, size_t len)
{
	if (o->n + 1 >= o->cap)
		return;
	size_t room = o->cap - 1 - o->n;
	if (len > room)
		len = room;
	memcpy(o->buf + o->n, s, len);
	o->n += len;
	o->buf[o->n] = '\0';
}

/* The logfmt escape of a quoted value: \" \\ \n \r \t, other control
 * characters as \xNN; everything else (UTF-8 included) as is. */
static void put_escaped(struct out *o, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		char e[8];
		if (c == '"' || c == '\\') {
			e[0] = '\\';
			e[1] = (char)c;
			put(o, e, 2);
		} else if (c == '\n') {
			put(o, "\\n", 2);
		} else if (c == '\r') {
			put(o, "\\r", 2);
		} else if (c == '\t') {
			put(o, "\\t", 2);
		} else if (c < 0x20 || c == 0x7f) {
			snprintf(e, sizeof(e), "\\x%02x", c);
			put(o, e, 4);
		} else {
			put(o, (const char *)&c, 1);
		}
	}
}

/* A value must be quoted when it holds a space, '=', '"', '\' or a control
 * character: otherwise a reader could not tell where it ends. */
static bool needs_quotes(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= ' ' || c == '=' || c == '"' || c == '\\' || c == 0x7f)
			return true;
	}
	return false;
}

/* --- printf, one conversion at a time --------------------------------- */

/* Formats the conversion at *pf (which points at '%') into tmp, consuming
 * its arguments from ap, and moves *pf past it. The arguments' types are
 * the ones the format attribute of mg_log_write checked at compile time.
 * Returns the length written (tmp is NUL-terminated, maybe truncated). */
static size_t conv(const char **pf, va_list *ap, char *tmp, size_t tmplen)
{
	const char *f = *pf + 1;
	char spec[32];
	size_t k = 0;
	spec[k++] = '%';
	bool star_w = false, star_p = false;
	while (*f && strchr("-+ #0'", *f) && k < 8)
		spec[k++] = *f++;
	if (*f == '*') {
		star_w = true;
		spec[k++] = *f++;
	}
	while (isdigit((unsigned char)*f) && k < 14)
		spec[k++] = *f++;
	if (*f == '.') {
		spec[k++] = *f++;
		if (*f == '*') {
			star_p = true;
			spec[k++] = *f++;
		}
		while (isdigit((unsigned char)*f) && k < 20)
			spec[k++] = *f++;
	}
	enum { L_NONE, L_HH, L_H, L_L, L_LL, L_Z, L_J, L_T, L_LD } lm = L_NONE;
	if (f[0] == 'h' && f[1] == 'h') {
		lm = L_HH;
		spec[k++] = *f++;
		spec[k++] = *f++;
	} else if (f[0] == 'l' && f[1] == 'l') {
		lm = L_LL;
		spec[k++] = *f++;
		spec[k++] = *f++;
	} else if (strchr("hlzjtLq", *f) && *f) {
		lm = *f == 'h' ? L_H : *f == 'l' ? L_L : *f == 'z' ? L_Z : *f == 'j' ? L_J :
		     *f == 't' ? L_T : *f == 'L' ? L_LD : L_LL;
		spec[k++] = *f == 'q' ? 'l' : *f;
		if (*f == 'q')
			spec[k++] = 'l';
		f++;
	}
	char c = *f ? *f++ : '%';
	spec[k++] = c;
	spec[k] = '\0';
	*pf = f;
	int w = star_w ? va_arg(*ap, int) : 0;
	int p = star_p ? va_arg(*ap, int) : 0;
	int r = 0;
#define FMT(arg) do { \
		if (star_w && star_p) r = snprintf(tmp, tmplen, spec, w, p, arg); \
		else if (star_w) r = snprintf(tmp, tmplen, spec, w, arg); \
		else if (star_p) r = snprintf(tmp, tmplen, spec, p, arg); \
		else r = snprintf(tmp, tmplen, spec, arg); \
	} while (0)
	/* spec is built from a checked format: tell the compiler so. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
	switch (c) {
	case 'd': case 'i':
		if (lm == L_L) FMT(va_arg(*ap, long));
		else if (lm == L_LL) FMT(va_arg(*ap, long long));
		else if (lm == L_Z) FMT(va_arg(*ap, ssize_t));
		else if (lm == L_J) FMT(va_arg(*ap, intmax_t));
		else if (lm == L_T) FMT(va_arg(*ap, ptrdiff_t));
		else FMT(va_arg(*ap, int));
		break;
	case 'u': case 'o': case 'x': case 'X':
		if (lm == L_L) FMT(va_arg(*ap, unsigned long));
		else if (lm == L_LL) FMT(va_arg(*ap, unsigned long long));
		else if (lm == L_Z) FMT(va_arg(*ap, size_t));
		else if (lm == L_J) FMT(va_arg(*ap, uintmax_t));
		else if (lm == L_T) FMT(va_arg(*ap, ptrdiff_t));
		else FMT(va_arg(*ap, unsigned));
		break;
	case 'c':
		FMT(va_arg(*ap, int));
		break;
	case 's': {
		const char *sv = va_arg(*ap, const char *);
		FMT(sv ? sv : "(null)");
		break;
	}
	case 'p':
		FMT(va_arg(*ap, void *));
		break;
	case 'e': case 'E': case 'f': case 'F': case 'g': case 'G': case 'a': case 'A':
		if (lm == L_LD) FMT(va_arg(*ap, long double));
		else FMT(va_arg(*ap, double));
		break;
	case 'm':
		r = snprintf(tmp, tmplen, "%s", strerror(errno));
		break;
	case '%':
		r = snprintf(tmp, tmplen, "%%");
		break;
	default:
		/* %n and friends: not for logs. Nothing is consumed. */
		r = snprintf(tmp, tmplen, "%%%c", c);
		break;
	}
#pragma GCC diagnostic pop
#undef FMT
	if (r < 0)
		r = 0;
	return (size_t)r < tmplen ? (size_t)r : tmplen - 1;
}

/* Past the conversion at f ('%'): flags, width, precision, length, type.
 * (A space flag, "% d", must not end a token.) */
static const char *conv_end(const char *f)
{
	f++;
	while (*f && strchr("-+ #0'*.0123456789hlzjtLq", *f))
		f++;
	return *f ? f + 1 : f;
}

/* Formats fmt[0..end) with every conversion as printf would. */
static void render(struct out *o, const char *fmt, const char *end, va_list *ap, bool escape)
{
	char tmp[1024];
	const char *f = fmt;
	while (f < end) {
		const char *pct = memchr(f, '%', (size_t)(end - f));
		if (pct == NULL) {
			put(o, f, (size_t)(end - f));
			return;
		}
		put(o, f, (size_t)(pct - f));
		f = pct;
		size_t n = conv(&f, ap, tmp, sizeof(tmp));
		if (escape)
			put_escaped(o, tmp, n);
		else
			put(o, tmp, n);
	}
}

/* The key=value part of a format: tokens split at the spaces that are
 * outside literal quotes. What a conversion puts in a value cannot end
 * the value: inside literal quotes (err="%s") it is escaped; in a bare
 * value (name=%s) the whole value is quoted and escaped when it needs to
 * be. Literal text stays as written. */
static void render_kv(struct out *o, const char *fmt, va_list *ap)
{
	const char *f = fmt;
	while (*f) {
		if (*f == ' ') {
			put(o, " ", 1);
			f++;
			continue;
		}
		const char *tok = f;
		bool quoted = false, has_conv = false;
		while (*f && (quoted || *f != ' ')) {
			if (*f == '"')
				quoted = !quoted;
			if (*f == '%') {
				has_conv = true;
				f = conv_end(f);
			} else {
				f++;
			}
		}
		if (!has_conv) {
			put(o, tok, (size_t)(f - tok));
			continue;
		}
		const char *eq = tok;
		while (eq < f && (isalnum((unsigned char)*eq) || *eq == '_' || *eq == '.'))
			eq++;
		const char *val = tok;
		if (eq > tok && eq < f && *eq == '=') {
			put(o, tok, (size_t)(eq + 1 - tok));
			val = eq + 1;
		}
		if (*val == '"') {
			/* key="...%s...": copy the quotes, escape what goes inside. */
			const char *q = val;
			while (q < f) {
				const char *next = q;
				while (next < f && *next != '%')
					next++;
				put(o, q, (size_t)(next - q));
				if (next == f)
					break;
				char tmp[1024];
				size_t n = conv(&next, ap, tmp, sizeof(tmp));
				put_escaped(o, tmp, n);
				q = next;
			}
			continue;
		}
		char vbuf[1024];
		struct out v = { vbuf, sizeof(vbuf), 0 };
		vbuf[0] = '\0';
		render(&v, val, f, ap, false);
		if (needs_quotes(vbuf, v.n)) {
			put(o, "\"", 1);
			put_escaped(o, vbuf, v.n);
			put(o, "\"", 1);
		} else {
			put(o, vbuf, v.n);
		}
	}
}

/* ts=… level=… comp=… msg="msg" kv */
static int compose(char *buf, size_t len, long long wall_ns, int level, const char *comp,
		   const char *msg, size_t mlen, const char *kv, bool kv_raw)
{
	char ts[40];
	mg_clock_format_iso8601(ts, sizeof(ts), wall_ns);
	if (len == 0)
		return 0;
	struct out o = { buf, len, 0 };
	buf[0] = '\0';
	char head[128];
	int h = snprintf(head, sizeof(head), "ts=%s level=%s comp=%s msg=\"", ts, mg_log_level_name(level),
			 comp);
	put(&o, head, h > 0 ? (size_t)h : 0);
	while (mlen > 0 && msg[mlen - 1] == ' ')
		mlen--;
	put_escaped(&o, msg, mlen);
	put(&o, "\"", 1);
	if (kv != NULL && *kv) {
		put(&o, " ", 1);
		if (kv_raw) {
			for (const char *p = kv; *p; p++)
				put(&o, *p == '\n' ? " " : p, 1);
		} else {
			put(&o, kv, strlen(kv));
		}
	}
	return (int)o.n;
}

int mg_log_format_line(char *buf, size_t len, long long wall_ns, int level,
		       const char *comp, const char *text)
{
	int kv = kv_start(text);
	size_t mlen = kv < 0 ? strlen(text) : (size_t)kv;
	return compose(buf, len, wall_ns, level, comp, text, mlen, kv < 0 ? NULL : text + kv, true);
}

int mg_log_formatv(char *buf, size_t len, long long wall_ns, int level, const char *comp,
		   const char *fmt, va_list ap)
{
	char msg[1024], kvb[2048];
	struct out m = { msg, sizeof(msg), 0 }, k = { kvb, sizeof(kvb), 0 };
	msg[0] = kvb[0] = '\0';
	int kv = kv_start(fmt);
	const char *split = kv < 0 ? fmt + strlen(fmt) : fmt + kv;
	va_list aq;
	va_copy(aq, ap);
	render(&m, fmt, split, &aq, false);
	if (kv >= 0)
		render_kv(&k, split, &aq);
	va_end(aq);
	return compose(buf, len, wall_ns, level, comp, msg, m.n, kvb, false);
}

void mg_log_writev(int level, const char *comp, const char *fmt, va_list ap)
{
	char line[4096];
	int n = mg_log_formatv(line, sizeof(line) - 1, mg_clock_wall_ns(), level, comp, fmt, ap);
	line[n++] = '\n';
	ssize_t w = write(log_fd, line, (size_t)n);
	(void)w;
}

bool mg_log_throttle(mg_log_throttle_t *t, int64_t now, uint64_t *ret_quiet)
{
	if (t->started && now - t->logged_at < MG_LOG_THROTTLE_NS) {
		t->quiet++;
		return false;
	}
	t->started = true;
	t->logged_at = now;
	*ret_quiet = t->quiet;
	t->quiet = 0;
	return true;
}

void mg_log_write(int level, const char *comp, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	mg_log_writev(level, comp, fmt, ap);
	va_end(ap);
}
