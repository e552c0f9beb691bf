/* mg_config: see mg_config.h. */
#include "mg_config.h"
#include "mg_clock.h"

#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct entry {
	char *section;	/* owned */
	char *key;	/* owned */
	char *value;	/* owned */
	char *origin;	/* owned: "FILE:LINE" or "command line" */
};

struct mg_config {
	struct entry *v;	/* owned */
	size_t n, cap;
};

mg_config_t *mg_config_new(void)
{
	return calloc(1, sizeof(mg_config_t));
}

static void entry_done(struct entry *e)
{
	free(e->section);
	free(e->key);
	free(e->value);
	free(e->origin);
}

void mg_config_destroy(mg_config_t **p)
{
	if (p == NULL || *p == NULL)
		return;
	for (size_t i = 0; i < (*p)->n; i++)
		entry_done(&(*p)->v[i]);
	free((*p)->v);
	free(*p);
	*p = NULL;
}

static struct entry *find(const mg_config_t *cfg, const char *section, const char *key)
{
	for (size_t i = cfg->n; i-- > 0;)
		if (strcmp(cfg->v[i].section, section) == 0 && strcmp(cfg->v[i].key, key) == 0)
			return &cfg->v[i];
	return NULL;
}

static int put(mg_config_t *cfg, const char *section, const char *key, const char *value,
	       const char *origin)
{
	struct entry *e = find(cfg, section, key);
	if (e != NULL) {
		char *v = strdup(value), *o = strdup(origin);
		if (v == NULL || o == NULL) {
			free(v);
			free(o);
			return -ENOMEM;
		}
		free(e->value);
		free(e->origin);
		e->value = v;
		e->origin = o;
		return 0;
	}
	if (cfg->n == cfg->cap) {
		size_t nc = cfg->cap ? cfg->cap * 2 : 16;
		struct entry *nv = realloc(cfg->v, nc * sizeof(*nv));
		if (nv == NULL)
			return -ENOMEM;
		cfg->v = nv;
		cfg->cap = nc;
	}
	struct entry ne = { strdup(section), strdup(key), strdup(value), strdup(origin) };
	if (!ne.section || !ne.key || !ne.value || !ne.origin) {
		entry_done(&ne);
		return -ENOMEM;
	}
	cfg->v[cfg->n++] = ne;
	return 0;
}

int mg_config_set(mg_config_t *cfg, const char *section, const char *key, const char *value)
{
	return put(cfg, section, key, value, "command line");
}

int mg_config_set_from(mg_config_t *cfg, const char *section, const char *key, const char *value,
		       const char *origin)
{
	return put(cfg, section, key, value, origin);
}

struct load_ctx {
	mg_config_t *cfg;
	const char *name;
	int line;		/* the line the parser is on: it reads one per call */
	int rc;
	FILE *f;		/* the source: a file ... */
	const char *text;	/* ... or the rest of a string */
};

/* ini_parse_stream's reader: one line per call, counted, so that an
 * entry's origin is "FILE:LINE" (inih passes no line to the handler). */
static char *read_line(char *buf, int size, void *user)
{
	struct load_ctx *c = user;
	char *r = NULL;
	if (c->f != NULL) {
		r = fgets(buf, size, c->f);
	} else if (c->text != NULL && *c->text != '\0' && size > 1) {
		size_t n = strcspn(c->text, "\n");
		n += c->text[n] == '\n';
		if (n > (size_t)size - 1)
			n = (size_t)size - 1;
		memcpy(buf, c->text, n);
		buf[n] = '\0';
		c->text += n;
		r = buf;
	}
	c->line += r != NULL;
	return r;
}

static int on_entry(void *user, const char *section, const char *key, const char *value
#if INI_HANDLER_LINENO
		    , int lineno
#endif
		    )
{
	struct load_ctx *c = user;
	char origin[512];
#if INI_HANDLER_LINENO
	c->line = lineno;
#endif
	if (key == NULL)	/* a section header alone (INI_CALL_HANDLER_ON_NEW_SECTION) */
		return 1;
	snprintf(origin, sizeof(origin), "%s:%d", c->name, c->line);
	int r = put(c->cfg, section, key, value ? value : "", origin);
	if (r < 0) {
		c->rc = r;
		return 0;
	}
	return 1;
}

static int finish_load(struct load_ctx *c, int r, char *err, size_t errlen)
{
	if (c->rc < 0) {
		snprintf(err, errlen, "%s: out of memory", c->name);
		return c->rc;
	}
	if (r == -1) {
		snprintf(err, errlen, "%s: cannot open", c->name);
		return -ENOENT;
	}
	if (r == -2) {
		snprintf(err, errlen, "%s: out of memory", c->name);
		return -ENOMEM;
	}
	if (r > 0) {
		snprintf(err, errlen, "%s:%d: syntax error (expected [section] or key = value, lines of at most 200 characters)",
			 c->name, r);
		return -EINVAL;
	}
	return 0;
}

int mg_config_load(mg_config_t *cfg, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		int e = errno;
		snprintf(err, errlen, "%s: %s", path, strerror(e));
		return -e;
	}
	struct load_ctx c = { .cfg = cfg, .name = path, .f = f };
	int r = ini_parse_stream(read_line, &c, on_entry, &c);
	fclose(f);
	return finish_load(&c, r, err, errlen);
}

int mg_config_load_string(mg_config_t *cfg, const char *name, const char *text,
			  char *err, size_t errlen)
{
	struct load_ctx c = { .cfg = cfg, .name = name, .text = text };
	int r = ini_parse_stream(read_line, &c, on_entry, &c);
	return finish_load(&c, r, err, errlen);
}

const char *mg_config_get(const mg_config_t *cfg, const char *section, const char *key)
{
	const struct entry *e = find(cfg, section, key);
	return e ? e->value : NULL;
}

const char *mg_config_origin(const mg_config_t *cfg, const char *section, const char *key)
{
	const struct entry *e = find(cfg, section, key);
	return e ? e->origin : NULL;
}

static int bad(const mg_config_t *cfg, const char *section, const char *key,
	       const char *what, char *err, size_t errlen)
{
	const struct entry *e = find(cfg, section, key);
	snprintf(err, errlen, "%s: [%s] %s = \"%s\": expected %s", e->origin, section, key,
		 e->value, what);
	return -EINVAL;
}

int mg_config_get_u64(const mg_config_t *cfg, const char *section, const char *key,
		      uint64_t *ret, char *err, size_t errlen)
{
	const char *s = mg_config_get(cfg, section, key);
	if (s == NULL)
		return -ENOENT;
	char *end;
	errno = 0;
	if (*s == '-' || *s == '\0')
		return bad(cfg, section, key, "a non-negative integer", err, errlen);
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return bad(cfg, section, key, "a non-negative integer", err, errlen);
	*ret = v;
	return 0;
}

int mg_config_get_double(const mg_config_t *cfg, const char *section, const char *key,
			 double *ret, char *err, size_t errlen)
{
	const char *s = mg_config_get(cfg, section, key);
	if (s == NULL)
		return -ENOENT;
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0')
		return bad(cfg, section, key, "a number", err, errlen);
	*ret = v;
	return 0;
}

int mg_config_get_bool(const mg_config_t *cfg, const char *section, const char *key,
		       bool *ret, char *err, size_t errlen)
{
	static const char *yes[] = { "1", "yes", "true", "on" }, *no[] = { "0", "no", "false", "off" };
	const char *s = mg_config_get(cfg, section, key);
	if (s == NULL)
		return -ENOENT;
	for (int i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*ret = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*ret = false;
			return 0;
		}
	}
	return bad(cfg, section, key, "yes or no", err, errlen);
}

int mg_config_get_duration(const mg_config_t *cfg, const char *section, const char *key,
			   int64_t default_unit_ns, int64_t *ret_ns, char *err, size_t errlen)
{
	const char *s = mg_config_get(cfg, section, key);
	if (s == NULL)
		return -ENOENT;
	if (mg_clock_parse_duration(s, default_unit_ns, ret_ns) < 0)
		return bad(cfg, section, key, "a duration such as 500ms, 30s, 10min", err, errlen);
	return 0;
}

int mg_config_foreach(const mg_config_t *cfg,
		      int (*fn)(void *user, const char *section, const char *key, const char *value),
		      void *user)
{
	for (size_t i = 0; i < cfg->n; i++) {
		int r = fn(user, cfg->v[i].section, cfg->v[i].key, cfg->v[i].value);
		if (r != 0)
			return r;
	}
	return 0;
}
