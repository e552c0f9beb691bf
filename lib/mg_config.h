/* mg_config: INI configuration (libinih), with command-line overrides.
 *
 * Format: systemd-like INI, `[section]` then `key = value`; `#` and `;`
 * comments. A file is read with mg_config_load(); flags are applied after
 * with mg_config_set(), so they win. Typed getters return -ENOENT when the
 * key is absent and -EINVAL with a message naming section, key, file and
 * line when the value does not parse. One thread at a time. */
#ifndef MG_CONFIG_H
#define MG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mg_config mg_config_t;

mg_config_t *mg_config_new(void);
void mg_config_destroy(mg_config_t **cfg);

/* Reads path; values replace earlier ones. -ENOENT/-EACCES if it cannot be
 * opened, -EINVAL with "FILE:LINE: ..." in err on a syntax error. */
int mg_config_load(mg_config_t *cfg, const char *path, char *err, size_t errlen);
/* Same, from a string (tests); name is used in messages. */
int mg_config_load_string(mg_config_t *cfg, const char *name, const char *text,
			  char *err, size_t errlen);

/* Set or replace a value (origin "command line"). -ENOMEM. */
int mg_config_set(mg_config_t *cfg, const char *section, const char *key, const char *value);
/* Same, with the origin messages give (e.g. the flag "--slots"). -ENOMEM. */
int mg_config_set_from(mg_config_t *cfg, const char *section, const char *key, const char *value,
		       const char *origin);

/* Borrowed string or NULL. */
const char *mg_config_get(const mg_config_t *cfg, const char *section, const char *key);
/* Where a value came from: the file name or "command line" (borrowed). */
const char *mg_config_origin(const mg_config_t *cfg, const char *section, const char *key);

int mg_config_get_u64(const mg_config_t *cfg, const char *section, const char *key,
		      uint64_t *ret, char *err, size_t errlen);
int mg_config_get_double(const mg_config_t *cfg, const char *section, const char *key,
			 double *ret, char *err, size_t errlen);
int mg_config_get_bool(const mg_config_t *cfg, const char *section, const char *key,
		       bool *ret, char *err, size_t errlen);
/* Durations such as "30s", "250ms", "10min" (bare numbers in default_unit_ns). */
int mg_config_get_duration(const mg_config_t *cfg, const char *section, const char *key,
			   int64_t default_unit_ns, int64_t *ret_ns, char *err, size_t errlen);

/* Iterate: calls fn for every entry in load order; stops when fn returns non-zero. */
int mg_config_foreach(const mg_config_t *cfg,
		      int (*fn)(void *user, const char *section, const char *key, const char *value),
		      void *user);

#endif
