/* meter_names: see meter_names.h. */
#include "meter_names.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Where `meson install` puts deploy/hardware and deploy/prices, and the
 * source tree's deploy/ for a build that was never installed (both set by
 * meter/meson.build; "" = no source tree). */
#ifndef MARGIN_DATADIR
#define MARGIN_DATADIR "/usr/local/share/margin"
#endif
#ifndef MARGIN_SOURCE_DEPLOY
#define MARGIN_SOURCE_DEPLOY ""
#endif

static bool is_dir(const char *p)
{
	struct stat st;
	return p[0] != '\0' && stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

bool meter_has_suffix(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && strcmp(s + a - b, suffix) == 0;
}

char *meter_default_dir(const char *kind, char *buf, size_t len)
{
	char alt[4096];
	if (len == 0)
		return buf;
	if (snprintf(buf, len, "%s/%s", MARGIN_DATADIR, kind) < (int)len && is_dir(buf))
		return buf;
	if (MARGIN_SOURCE_DEPLOY[0] != '\0' &&
	    snprintf(alt, sizeof(alt), "%s/%s", MARGIN_SOURCE_DEPLOY, kind) < (int)sizeof(alt) && is_dir(alt))
		snprintf(buf, len, "%s", alt);
	return buf;
}

/* --- names: listing data files, suggesting the close ones -------------- */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void meter_names_free(char ***names)
{
	if (names == NULL || *names == NULL)
		return;
	for (char **p = *names; *p != NULL; p++)
		free(*p);
	free(*names);
	*names = NULL;
}

char **meter_dir_names(const char *dir, bool json, size_t *ret_n)
{
	*ret_n = 0;
	DIR *d = dir != NULL && dir[0] != '\0' ? opendir(dir) : NULL;
	if (d == NULL)
		return NULL;
	char **v = calloc(1, sizeof(*v));
	size_t n = 0, cap = 1;
	struct dirent *de;
	while (v != NULL && (de = readdir(d)) != NULL) {
		const char *nm = de->d_name;
		size_t l = strlen(nm);
		if (nm[0] == '.' || l <= 5 || !(meter_has_suffix(nm, ".conf") || (json && meter_has_suffix(nm, ".json"))))
			continue;
		if (n + 1 >= cap) {
			char **nv = realloc(v, cap * 2 * sizeof(*nv));
			if (nv == NULL)
				goto nomem;
			v = nv;
			cap *= 2;
		}
		if ((v[n] = strndup(nm, l - 5)) == NULL)
			goto nomem;
		v[++n] = NULL;
	}
	closedir(d);
	if (v == NULL)
		return NULL;
	qsort(v, n, sizeof(*v), cmp_str);
	/* NAME.conf and NAME.json name one table. */
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (k > 0 && strcmp(v[k - 1], v[i]) == 0) {
			free(v[i]);
			continue;
		}
		v[k++] = v[i];
	}
	v[k] = NULL;
	*ret_n = k;
	return v;
nomem:
	closedir(d);
	meter_names_free(&v);
	return NULL;
}

/* Levenshtein distance ignoring ASCII case; names longer than 127 bytes
 * count as far from everything. */
static size_t distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), row[128], prev;
	if (la > 127 || lb > 127)
		return SIZE_MAX;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		prev = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t sub = prev + (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
			size_t best = row[j] + 1 < row[j - 1] + 1 ? row[j] + 1 : row[j - 1] + 1;
			prev = row[j];
			row[j] = sub < best ? sub : best;
		}
	}
	return row[lb];
}

static void app(char *buf, size_t len, size_t *o, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void app(char *buf, size_t len, size_t *o, const char *fmt, ...)
{
	if (*o >= len)
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf + *o, len - *o, fmt, ap);
	va_end(ap);
	*o = n < 0 ? len : *o + (size_t)n;
}

struct close {
	size_t d, i;
};

static int cmp_close(const void *pa, const void *pb)
{
	const struct close *a = pa, *b = pb;
	if (a->d != b->d)
		return a->d < b->d ? -1 : 1;
	return a->i < b->i ? -1 : (a->i > b->i);
}

/* The part of a candidate compared with the name: ENTRY of TABLE:ENTRY. */
static const char *key_of(const char *s)
{
	const char *c = strrchr(s, ':');
	return c != NULL ? c + 1 : s;
}

char *meter_suggest(const char *name, const char *const *names, size_t n, bool list_all, char *buf, size_t len)
{
	size_t o = 0, n_close = 0, limit = strlen(name) / 3;
	struct close close[5];
	if (len == 0)
		return buf;
	buf[0] = '\0';
	if (limit < 1)
		limit = 1;
	for (size_t i = 0; i < n; i++) {
		size_t d = distance(name, key_of(names[i]));
		if (d > limit && strcasestr(key_of(names[i]), name) == NULL)
			continue;
		struct close c = { d, i };
		if (n_close < 5) {
			close[n_close++] = c;
		} else if (cmp_close(&c, &close[4]) < 0) {
			close[4] = c;
		} else {
			continue;
		}
		qsort(close, n_close, sizeof(close[0]), cmp_close);
	}
	for (size_t k = 0; k < n_close; k++)
		app(buf, len, &o, "%s%s", k == 0 ? "did you mean " : k + 1 == n_close ? " or " : ", ",
		    names[close[k].i]);
	if (!list_all) {
		app(buf, len, &o, "%s", n_close > 0 ? "?" : "");
		return buf;
	}
	app(buf, len, &o, "%sknown: ", n_close > 0 ? "? " : "");
	if (n == 0)
		app(buf, len, &o, "(none)");
	for (size_t i = 0; i < n; i++) {
		size_t before = o;
		app(buf, len, &o, "%s%s", i ? ", " : "", names[i]);
		if (o + 4 >= len && i + 1 < n) {
			/* Cut at a whole name, with room for "...". */
			o = before;
			buf[o] = '\0';
			app(buf, len, &o, ", ...");
			break;
		}
	}
	if (o >= len && len > 4)
		snprintf(buf + len - 4, 4, "...");
	return buf;
}

int meter_unknown_name(const char *kind, const char *name, const char *dir, bool json, char *err, size_t errlen)
{
	size_t n;
	char **names = meter_dir_names(dir, json, &n);
	char list[1536], base[256];
	/* NAME.conf is compared as NAME; the message says what was given. */
	snprintf(base, sizeof(base), "%s", name);
	if (meter_has_suffix(base, ".conf") || (json && meter_has_suffix(base, ".json")))
		base[strlen(base) - 5] = '\0';
	if (names == NULL)
		snprintf(list, sizeof(list), "the directory cannot be read: %s", strerror(errno));
	else
		meter_suggest(base, (const char *const *)names, n, true, list, sizeof(list));
	snprintf(err, errlen, "no %s \"%s\" in %s: %s", kind, name, dir, list);
	meter_names_free(&names);
	return -ENOENT;
}
