/* mg_settings: see mg_settings.h. */
#include "mg_settings.h"
#include "mg_clock.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

enum { OPT_CONFIG = 1000, OPT_SET, OPT_HELP, OPT_VERSION, OPT_ROW = 2000 };

static const mg_setting_t *find_key(const mg_settings_spec_t *spec, const char *section, const char *key)
{
	for (size_t i = 0; i < spec->n; i++) {
		const mg_setting_t *s = &spec->settings[i];
		if (s->key != NULL && strcmp(s->section, section) == 0 && strcmp(s->key, key) == 0)
			return s;
	}
	return NULL;
}

static bool has_flag(const mg_setting_t *s)
{
	return s->flag != NULL || s->short_flag != 0;
}

/* "--flag", or "-n" for a row with only a short flag. */
static void flag_name(const mg_setting_t *s, char *buf, size_t len)
{
	if (s->flag != NULL)
		snprintf(buf, len, "--%s", s->flag);
	else
		snprintf(buf, len, "-%c", s->short_flag);
}

/* A LIST row's i-th value lives under "key", then "key#1", "key#2"... */
static void list_key(const char *key, size_t i, char *buf, size_t len)
{
	if (i == 0)
		snprintf(buf, len, "%s", key);
	else
		snprintf(buf, len, "%s#%zu", key, i);
}

const char *mg_settings_list_get(const mg_config_t *cfg, const char *section, const char *key, size_t i)
{
	char k[160];
	list_key(key, i, k, sizeof(k));
	return mg_config_get(cfg, section, k);
}

static size_t list_max(const mg_setting_t *s)
{
	return s->hi > 0 ? (size_t)s->hi : s->size / sizeof(const char *);
}

static const mg_setting_t *find_flag(const mg_settings_spec_t *spec, const char *flag, size_t len)
{
	for (size_t i = 0; i < spec->n; i++) {
		const mg_setting_t *s = &spec->settings[i];
		if (s->flag != NULL && strlen(s->flag) == len && strncmp(s->flag, flag, len) == 0)
			return s;
	}
	return NULL;
}

int mg_settings_parse_int(const char *s, int64_t lo, int64_t hi, int64_t *ret)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
		return -EINVAL;
	*ret = v;
	return 0;
}

/* ns as the largest unit that divides it: "1h", "90s", "250ms", "7ns". */
static void format_duration(int64_t ns, char *buf, size_t len)
{
	static const struct {
		int64_t ns;
		const char *unit;
	} units[] = {
		{ 86400 * MG_NS_PER_S, "d" }, { 3600 * MG_NS_PER_S, "h" }, { 60 * MG_NS_PER_S, "min" },
		{ MG_NS_PER_S, "s" }, { MG_NS_PER_MS, "ms" }, { 1000, "us" }, { 1, "ns" },
	};
	size_t u = 0;
	while (ns != 0 && ns % units[u].ns != 0)
		u++;
	snprintf(buf, len, "%" PRId64 "%s", ns / units[u].ns, ns == 0 ? "" : units[u].unit);
}

/* Parses text as the row's type into *ret (int64_t for every numeric
 * type, the index for an enum, 0/1 for a bool). 0 or -EINVAL with what
 * was expected in want. */
static int parse_value(const mg_setting_t *s, const char *text, int64_t *ret, char *want, size_t wantlen)
{
	bool ranged = s->hi > s->lo;
	switch (s->type) {
	case MG_SETTING_BOOL: {
		static const char *yes[] = { "1", "yes", "true", "on" }, *no[] = { "0", "no", "false", "off" };
		for (int i = 0; i < 4; i++)
			if (strcasecmp(text, yes[i]) == 0 || strcasecmp(text, no[i]) == 0) {
				*ret = strcasecmp(text, yes[i]) == 0;
				return 0;
			}
		snprintf(want, wantlen, "yes or no");
		return -EINVAL;
	}
	case MG_SETTING_INT:
	case MG_SETTING_SIZE: {
		/* a size or an unranged integer is never negative */
		int64_t lo = ranged ? s->lo : 0, hi = ranged ? s->hi : INT64_MAX, v;
		if (s->type == MG_SETTING_SIZE && lo < 0)
			lo = 0;
		if (mg_settings_parse_int(text, INT64_MIN, INT64_MAX, &v) < 0 || (v < 0 && lo >= 0)) {
			if (ranged)
				snprintf(want, wantlen, "an integer from %" PRId64 " to %" PRId64 "%s", s->lo, s->hi,
					 s->type == MG_SETTING_SIZE ? " (bytes)" : "");
			else
				snprintf(want, wantlen, "a non-negative integer");
			return -EINVAL;
		}
		if (v < lo || v > hi) {
			snprintf(want, wantlen, "%" PRId64 " to %" PRId64 "%s", s->lo, s->hi,
				 s->type == MG_SETTING_SIZE ? " bytes" : "");
			return -EINVAL;
		}
		*ret = v;
		return 0;
	}
	case MG_SETTING_DURATION: {
		int64_t ns;
		if (mg_clock_parse_duration(text, MG_NS_PER_S, &ns) < 0) {
			snprintf(want, wantlen, "a duration such as 500ms, 30s, 10min");
			return -EINVAL;
		}
		if (ranged && (ns < s->lo || ns > s->hi)) {
			char lo[32], hi[32];
			format_duration(s->lo, lo, sizeof(lo));
			format_duration(s->hi, hi, sizeof(hi));
			if (s->hi == INT64_MAX)
				snprintf(want, wantlen, "at least %s", lo);
			else
				snprintf(want, wantlen, "%s to %s", lo, hi);
			return -EINVAL;
		}
		*ret = ns;
		return 0;
	}
	case MG_SETTING_ENUM: {
		size_t used = 0;
		for (int64_t i = 0; s->names[i] != NULL; i++) {
			if (strcmp(text, s->names[i]) == 0) {
				*ret = i;
				return 0;
			}
			/* "a, b or c" */
			const char *sep = i == 0 ? "" : s->names[i + 1] == NULL ? " or " : ", ";
			int w = snprintf(want + used, wantlen - used, "%s%s", sep, s->names[i]);
			if (w > 0 && used + (size_t)w < wantlen)
				used += (size_t)w;
		}
		return -EINVAL;
	}
	case MG_SETTING_STRING:
	case MG_SETTING_LIST:
	case MG_SETTING_HEADING:
		*ret = 0;
		return 0;
	}
	return -EINVAL;
}

int mg_settings_check(const mg_settings_spec_t *spec, const mg_config_t *cfg, const char *section,
		      const char *key, char *err, size_t errlen)
{
	const mg_setting_t *s = find_key(spec, section, key);
	const char *v = mg_config_get(cfg, section, key);
	char want[256];
	int64_t x;
	if (s == NULL || v == NULL || parse_value(s, v, &x, want, sizeof(want)) == 0)
		return 0;
	if (spec->no_config)
		snprintf(err, errlen, "bad value '%s' for %s: expected %s", v, mg_config_origin(cfg, section, key),
			 want);
	else
		snprintf(err, errlen, "%s: [%s] %s = \"%s\": expected %s", mg_config_origin(cfg, section, key),
			 section, key, v, want);
	return -EINVAL;
}

bool mg_settings_from_flag(const mg_settings_spec_t *spec, const mg_config_t *cfg,
			   const char *section, const char *key)
{
	const mg_setting_t *s = find_key(spec, section, key);
	const char *o = mg_config_origin(cfg, section, key);
	if (s == NULL || o == NULL || o[0] != '-')
		return false;
	return (s->flag != NULL && o[1] == '-' && strcmp(o + 2, s->flag) == 0) ||
	       (s->short_flag != 0 && o[1] == s->short_flag && o[2] == '\0');
}

static int set_kv(mg_config_t *cfg, const char *arg, char *err, size_t errlen)
{
	const char *dot = strchr(arg, '.'), *eq = strchr(arg, '=');
	if (dot == NULL || eq == NULL || dot > eq || dot == arg || eq == dot + 1) {
		snprintf(err, errlen, "--set %s: expected SECTION.KEY=VALUE", arg);
		return -EINVAL;
	}
	char section[128], key[128];
	snprintf(section, sizeof(section), "%.*s", (int)(dot - arg), arg);
	snprintf(key, sizeof(key), "%.*s", (int)(eq - dot - 1), dot + 1);
	return mg_config_set(cfg, section, key, eq + 1);
}

/* The getopt short options: ':' (a missing value is reported as such),
 * then each row's letter, with ':' when it takes a value. Owned by the
 * caller (free). */
static char *short_options(const mg_settings_spec_t *spec, bool head)
{
	char *o = malloc(2 * spec->n + 3);
	size_t n = 0;
	if (o == NULL)
		return NULL;
	if (head)	/* getopt's '+': stop at the first operand */
		o[n++] = '+';
	o[n++] = ':';
	for (size_t i = 0; i < spec->n; i++)
		if (spec->settings[i].short_flag != 0) {
			o[n++] = spec->settings[i].short_flag;
			if (spec->settings[i].set == NULL)
				o[n++] = ':';
		}
	o[n] = '\0';
	return o;
}

/* The row of getopt_long's answer c: a long option's code or a letter. */
static const mg_setting_t *row_of(const mg_settings_spec_t *spec, int c)
{
	if (c >= OPT_ROW && c < OPT_ROW + (int)spec->n)
		return &spec->settings[c - OPT_ROW];
	for (size_t i = 0; c > 0 && c < 256 && i < spec->n; i++)
		if (spec->settings[i].short_flag == c)
			return &spec->settings[i];
	return NULL;
}

/* The getopt_long table: the rows with a flag, then --config, --set,
 * --help and --version. Owned by the caller (free). */
static struct option *long_options(const mg_settings_spec_t *spec)
{
	struct option *o = calloc(spec->n + 5, sizeof(*o));
	size_t n = 0;
	if (o == NULL)
		return NULL;
	for (size_t i = 0; i < spec->n; i++)
		if (spec->settings[i].flag != NULL)
			o[n++] = (struct option){ spec->settings[i].flag,
						  spec->settings[i].set ? no_argument : required_argument,
						  NULL, OPT_ROW + (int)i };
	if (!spec->no_config)
		o[n++] = (struct option){ "config", required_argument, NULL, OPT_CONFIG };
	if (spec->set_example != NULL)
		o[n++] = (struct option){ "set", required_argument, NULL, OPT_SET };
	o[n++] = (struct option){ "help", no_argument, NULL, OPT_HELP };
	if (spec->version != NULL)
		o[n++] = (struct option){ "version", no_argument, NULL, OPT_VERSION };
	return o;
}

/* Appends value to a LIST row: -EINVAL past its maximum, said. */
static int add_list(const mg_setting_t *s, mg_config_t *cfg, const char *value, const char *origin, char *err,
		    size_t errlen)
{
	size_t n = 0, max = list_max(s);
	while (mg_settings_list_get(cfg, s->section, s->key, n) != NULL)
		n++;
	if (n >= max) {
		snprintf(err, errlen, "at most %zu %s", max, origin);
		return -EINVAL;
	}
	char k[160];
	list_key(s->key, n, k, sizeof(k));
	return mg_config_set_from(cfg, s->section, k, value, origin);
}

/* Sets the row's key from its flag (spelled as origin); a repeated REPEAT
 * flag appends with ',', a LIST flag adds a value. */
static int set_flag(const mg_setting_t *s, mg_config_t *cfg, const char *value, bool again, bool as_short,
		    char *err, size_t errlen)
{
	char origin[128];
	if (as_short)
		snprintf(origin, sizeof(origin), "-%c", s->short_flag);
	else
		flag_name(s, origin, sizeof(origin));
	if (s->type == MG_SETTING_LIST)
		return add_list(s, cfg, value, origin, err, errlen);
	if (!again || !(s->flags & MG_SETTING_REPEAT))
		return mg_config_set_from(cfg, s->section, s->key, value, origin);
	const char *old = mg_config_get(cfg, s->section, s->key);
	size_t lo = strlen(old), lv = strlen(value);
	char *joined = malloc(lo + lv + 2);
	if (joined == NULL)
		return -ENOMEM;
	memcpy(joined, old, lo);
	joined[lo] = ',';
	memcpy(joined + lo + 1, value, lv + 1);
	int r = mg_config_set_from(cfg, s->section, s->key, joined, origin);
	free(joined);
	return r;
}

/* Two flags of a row's excludes list given together. */
static int check_excludes(const mg_settings_spec_t *spec, const bool *given, char *err, size_t errlen)
{
	for (size_t i = 0; i < spec->n; i++) {
		const char *x = spec->settings[i].excludes;
		while (given[i] && x != NULL && *x != '\0') {
			size_t len = strcspn(x, ",");
			const mg_setting_t *o = find_flag(spec, x, len);
			if (o != NULL && given[o - spec->settings]) {
				char a[64], b[64];
				flag_name(&spec->settings[i], a, sizeof(a));
				flag_name(o, b, sizeof(b));
				snprintf(err, errlen, "%s excludes %s", a, b);
				return -EINVAL;
			}
			x += len + (x[len] == ',');
		}
	}
	return 0;
}

/* Where the options end in head mode: the first operand (argc when none). */
static int head_end(const struct option *lo, const char *so, int argc, char **argv)
{
	opterr = 0;
	optind = 0;
	while (getopt_long(argc, argv, so, lo, NULL) != -1)
		;
	return optind;
}

/* The first pass: --help and --version anywhere win (in head mode,
 * anywhere before the first operand); then --config, so that every flag
 * overrides the file wherever it stands. */
static int first_pass(const mg_settings_spec_t *spec, const struct option *lo, mg_config_t *cfg,
		      const char *so, int argc, char **argv, bool head, char *err, size_t errlen)
{
	int end = head ? head_end(lo, so, argc, argv) : argc;
	for (int i = 1; i < end; i++) {
		if (strcmp(argv[i], "--") == 0)
			break;
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			mg_settings_usage(spec, stdout);
			return 1;
		}
		if (spec->version != NULL && strcmp(argv[i], "--version") == 0) {
			printf("%s %s\n", spec->prog, spec->version);
			return 1;
		}
	}
	int c, r;
	opterr = 0;
	optind = 0;	/* glibc: a full reset, a command may be parsed more than once */
	while ((c = getopt_long(argc, argv, so, lo, NULL)) != -1) {
		if (c == OPT_CONFIG) {
			if ((r = mg_config_load(cfg, optarg, err, errlen)) < 0) {
				if (r != -EINVAL)
					snprintf(err, errlen, "cannot read config %s: %s", optarg, strerror(-r));
				return r;
			}
		} else if (c == '?') {
			if (optopt > 0 && optopt < 256)
				snprintf(err, errlen, "unknown option -%c", optopt);
			else
				snprintf(err, errlen, "unknown option %s", argv[optind - 1]);
			return -EINVAL;
		} else if (c == ':') {
			if (optopt > 0 && optopt < 256)
				snprintf(err, errlen, "option -%c needs a value", optopt);
			else
				snprintf(err, errlen, "option %s needs a value", argv[optind - 1]);
			return -EINVAL;
		}
	}
	int operands = 0;
	if (head)
		return 0;
	for (size_t i = 0; i < spec->n; i++)
		if (spec->settings[i].flags & MG_SETTING_OPERAND)
			operands += spec->settings[i].type == MG_SETTING_LIST ? (int)list_max(&spec->settings[i]) : 1;
	if (argc - optind > operands) {
		snprintf(err, errlen, "unexpected argument \"%s\"", argv[optind + operands]);
		return -EINVAL;
	}
	return 0;
}

/* The arguments left after the options, each into the next OPERAND row
 * (a LIST row takes as many as it holds). */
static int set_operands(const mg_settings_spec_t *spec, mg_config_t *cfg, int argc, char **argv, char *err,
			size_t errlen)
{
	int k = optind, r = 0;
	for (size_t i = 0; i < spec->n && k < argc && r == 0; i++) {
		const mg_setting_t *s = &spec->settings[i];
		const char *origin = s->arg ? s->arg : s->key;
		if (!(s->flags & MG_SETTING_OPERAND))
			continue;
		if (s->type != MG_SETTING_LIST)
			r = mg_config_set_from(cfg, s->section, s->key, argv[k++], origin);
		for (size_t n = 0; s->type == MG_SETTING_LIST && n < list_max(s) && k < argc && r == 0; n++)
			r = add_list(s, cfg, argv[k++], origin, err, errlen);
	}
	return r;
}

/* Parses argv; ret_next non-NULL: head mode, the options end at the first
 * operand, whose index it receives. */
static int parse(const mg_settings_spec_t *spec, mg_config_t *cfg, int argc, char **argv, int *ret_next,
		 char *err, size_t errlen)
{
	bool head = ret_next != NULL;
	struct option *lo = long_options(spec);
	char *so = short_options(spec, head);
	bool *given = calloc(spec->n + 1, sizeof(*given));
	int c, r = -ENOMEM;
	if (lo == NULL || so == NULL || given == NULL)
		goto nomem;
	if ((r = first_pass(spec, lo, cfg, so, argc, argv, head, err, errlen)) != 0)
		goto out;
	optind = 0;
	while ((c = getopt_long(argc, argv, so, lo, NULL)) != -1) {
		const mg_setting_t *s = row_of(spec, c);
		r = 0;
		if (c == OPT_SET)
			r = set_kv(cfg, optarg, err, errlen);
		else if (s != NULL) {
			size_t i = (size_t)(s - spec->settings);
			if (s->key != NULL)
				r = set_flag(s, cfg, s->set ? s->set : optarg, given[i], c < OPT_CONFIG, err, errlen);
			given[i] = true;
		}
		if (r == -ENOMEM)
			goto nomem;
		if (r < 0)
			goto out;
	}
	if (head)
		*ret_next = optind;
	else if ((r = set_operands(spec, cfg, argc, argv, err, errlen)) == -ENOMEM)
		goto nomem;
	if (r < 0)
		goto out;
	if ((r = check_excludes(spec, given, err, errlen)) < 0)
		goto out;
	for (size_t i = 0; i < spec->n; i++)
		if (spec->settings[i].key != NULL &&
		    (r = mg_settings_check(spec, cfg, spec->settings[i].section, spec->settings[i].key,
					   err, errlen)) < 0)
			goto out;
	r = 0;
	goto out;
nomem:
	snprintf(err, errlen, "out of memory");
	r = -ENOMEM;
out:
	free(lo);
	free(so);
	free(given);
	return r;
}

int mg_settings_parse(const mg_settings_spec_t *spec, mg_config_t *cfg, int argc, char **argv,
		      char *err, size_t errlen)
{
	return parse(spec, cfg, argc, argv, NULL, err, errlen);
}

int mg_settings_parse_head(const mg_settings_spec_t *spec, mg_config_t *cfg, int argc, char **argv,
			   int *ret_next, char *err, size_t errlen)
{
	int next = argc, r = parse(spec, cfg, argc, argv, &next, err, errlen);
	if (r == 0)
		*ret_next = next;
	return r;
}

static void store(const mg_setting_t *s, void *base, const char *text, int64_t x)
{
	char *p = (char *)base + s->off;
	if (s->type == MG_SETTING_STRING) {
		memcpy(p, &text, sizeof(text));
	} else if (s->type == MG_SETTING_BOOL) {
		bool b = x != 0;
		memcpy(p, &b, sizeof(b));
	} else if (s->size == sizeof(int32_t)) {
		int32_t v = (int32_t)x;
		memcpy(p, &v, sizeof(v));
	} else if (s->size == sizeof(int64_t)) {
		memcpy(p, &x, sizeof(x));
	}
}

int mg_settings_apply(const mg_settings_spec_t *spec, const mg_config_t *cfg, void *base,
		      char *err, size_t errlen)
{
	for (size_t i = 0; i < spec->n; i++) {
		const mg_setting_t *s = &spec->settings[i];
		if (s->key == NULL || s->size == 0)
			continue;
		if (s->type == MG_SETTING_LIST) {
			size_t n = 0, max = s->size / sizeof(const char *);
			for (const char *v; n < max && (v = mg_settings_list_get(cfg, s->section, s->key, n)) != NULL; n++)
				memcpy((char *)base + s->off + n * sizeof(v), &v, sizeof(v));
			memcpy((char *)base + s->count_off, &n, sizeof(n));
			continue;
		}
		const char *v = mg_config_get(cfg, s->section, s->key);
		if (v == NULL && s->def == NULL)
			continue;
		char want[256];
		int64_t x;
		if (v == NULL)
			v = s->def;
		if (parse_value(s, v, &x, want, sizeof(want)) < 0) {
			snprintf(err, errlen, "%s: [%s] %s = \"%s\": expected %s",
				 mg_config_get(cfg, s->section, s->key) ? mg_config_origin(cfg, s->section, s->key)
									: "default",
				 s->section, s->key, v, want);
			return -EINVAL;
		}
		store(s, base, v, x);
	}
	return 0;
}

int mg_settings_parse_into(const mg_settings_spec_t *spec, mg_config_t *cfg, int argc, char **argv, void *base)
{
	return mg_settings_parse_head_into(spec, cfg, argc, argv, base, NULL);
}

int mg_settings_parse_head_into(const mg_settings_spec_t *spec, mg_config_t *cfg, int argc, char **argv,
				void *base, int *ret_next)
{
	char err[512];
	int r = ret_next ? mg_settings_parse_head(spec, cfg, argc, argv, ret_next, err, sizeof(err))
			 : mg_settings_parse(spec, cfg, argc, argv, err, sizeof(err));
	if (r == 0)
		r = mg_settings_apply(spec, cfg, base, err, sizeof(err));
	if (r < 0)	/* an unknown option may be a typo: point at the list */
		fprintf(stderr, "%s: %s%s\n", spec->prog, err,
			strncmp(err, "unknown option", 14) == 0 ? " (see --help)" : "");
	return r;
}

/* "  --flag ARG   help" with the help's further lines aligned under it. */
static void usage_row(const mg_settings_spec_t *spec, const mg_setting_t *s, FILE *f)
{
	char head[128], fill[1024];
	if (has_flag(s)) {
		char names[80];
		if (s->flag != NULL && s->short_flag != 0)
			snprintf(names, sizeof(names), "-%c, --%s", s->short_flag, s->flag);
		else
			flag_name(s, names, sizeof(names));
		snprintf(head, sizeof(head), "  %s%s%s", names, s->arg ? " " : "", s->arg ? s->arg : "");
	} else if (s->flags & MG_SETTING_OPERAND)
		snprintf(head, sizeof(head), "  %s%s", s->arg ? s->arg : s->key, s->type == MG_SETTING_LIST ? "..." : "");
	else
		snprintf(head, sizeof(head), "  %s.%s", s->section, s->key);
	fprintf(f, "%-24s", head);
	if (strlen(head) >= 24)
		fprintf(f, "\n%24s", "");
	const char *help = s->help ? s->help : "";
	if (s->help_fill != NULL) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
		snprintf(fill, sizeof(fill), help, s->help_fill());
#pragma GCC diagnostic pop
		help = fill;
	}
	for (const char *h = help; *h != '\0';) {
		size_t len = strcspn(h, "\n");
		fprintf(f, "%.*s", (int)len, h);
		h += len;
		if (*h == '\n' && *++h != '\0')
			fprintf(f, "\n%24s", "");
	}
	/* the key and the default: "(w.slots, default 8)", "(w.curve = no)",
	 * "(default 8)" for a key without a flag or a program without a file */
	char note[256] = "";
	bool keyed = s->key != NULL && has_flag(s) && !spec->no_config;
	if (keyed)
		snprintf(note, sizeof(note), "%s.%s", s->section, s->key);
	if (keyed && s->set != NULL)
		snprintf(note + strlen(note), sizeof(note) - strlen(note), " = %s", s->set);
	else if (s->key != NULL && s->def != NULL && s->set == NULL)
		snprintf(note + strlen(note), sizeof(note) - strlen(note), "%sdefault %s", keyed ? ", " : "",
			 *s->def ? s->def : "\"\"");
	if (note[0] != '\0')
		fprintf(f, "%s(%s)", s->help ? " " : "", note);
	fputc('\n', f);
}

const mg_settings_command_t *mg_settings_command_find(const mg_settings_spec_t *spec, const char *name)
{
	for (size_t i = 0; i < spec->n_commands; i++)
		if (strcmp(spec->commands[i].name, name) == 0)
			return &spec->commands[i];
	return NULL;
}

/* "commands:", each with its help in a column after the longest name. */
static void commands_usage(const mg_settings_spec_t *spec, FILE *f)
{
	int w = 0;
	for (size_t i = 0; i < spec->n_commands; i++)
		if ((int)strlen(spec->commands[i].name) > w)
			w = (int)strlen(spec->commands[i].name);
	if (spec->n_commands > 0)
		fprintf(f, "\ncommands:\n");
	for (size_t i = 0; i < spec->n_commands; i++)
		fprintf(f, "  %-*s %s\n", w, spec->commands[i].name, spec->commands[i].help);
	if (spec->n_commands > 0)
		fprintf(f, "\n%s COMMAND --help for the options of each.\n", spec->prog);
}

void mg_settings_usage(const mg_settings_spec_t *spec, FILE *f)
{
	fprintf(f, "usage: %s %s", spec->prog, spec->synopsis);
	if (spec->intro != NULL)
		fprintf(f, "\n%s", spec->intro);
	fputc('\n', f);
	if (!spec->no_config)
		fprintf(f, "  --config FILE         INI settings; the flags below override them\n");
	for (size_t i = 0; i < spec->n; i++) {
		const mg_setting_t *s = &spec->settings[i];
		if (s->type == MG_SETTING_HEADING)
			fprintf(f, "\n%s\n", s->help);
		else if (has_flag(s) || ((s->flags & MG_SETTING_OPERAND) && s->help != NULL))
			usage_row(spec, s, f);
	}
	if (spec->set_example != NULL)
		fprintf(f, "  --set SECTION.KEY=VALUE  any config key, e.g. --set %s\n", spec->set_example);
	fprintf(f, "  --help%s\n", spec->version ? ", --version" : "");
	bool title = false;
	for (size_t i = 0; i < spec->n; i++) {
		const mg_setting_t *s = &spec->settings[i];
		if (has_flag(s) || s->key == NULL || (s->flags & MG_SETTING_OPERAND))
			continue;
		if (!title)
			fprintf(f, "\nconfig file only ([section] key%s):\n",
				spec->set_example ? ", or --set section.key=VALUE" : "");
		title = true;
		usage_row(spec, s, f);
	}
	commands_usage(spec, f);
	if (spec->epilog != NULL)
		fprintf(f, "\n%s", spec->epilog);
}
