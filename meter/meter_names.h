/* meter_names: the data files of a directory by name, and the "did you mean"
 * messages for a name that is none of them (hardware profiles, price
 * tables). No shared state; any thread. */
#ifndef METER_NAMES_H
#define METER_NAMES_H

#include <stdbool.h>
#include <stddef.h>

/* The directory of a kind of data file ("hardware", "prices"):
 * DATADIR/margin/KIND when it exists (meson install), else this source
 * tree's deploy/KIND when that exists (a build that was never installed),
 * else DATADIR/margin/KIND all the same, so that a message can name where
 * a name was looked for. Both roots are fixed at build time
 * (meter/meson.build). Returns buf. */
char *meter_default_dir(const char *kind, char *buf, size_t len);

/* The names of the data files in dir: NAME for each NAME.conf (and, with
 * json, NAME.json), sorted, NULL-terminated. Caller frees with
 * meter_names_free. NULL with *ret_n = 0 for a directory that cannot be
 * read; NULL on ENOMEM too. */
char **meter_dir_names(const char *dir, bool json, size_t *ret_n);
void meter_names_free(char ***names);

/* "did you mean X or Y? known: A, B, C" for name among names[0..n): the
 * close ones first (same name ignoring case, then edit distance at most
 * about a third of the name, or containing it; a candidate TABLE:ENTRY is
 * compared by its ENTRY), then, with list_all, every name as far as buf
 * holds ("..." when cut; "(none)" when n is 0). Returns buf. */
char *meter_suggest(const char *name, const char *const *names, size_t n, bool list_all, char *buf, size_t len);

/* The error for a name that is no data file of dir: "no KIND \"NAME\" in
 * DIR: did you mean ...? (known: ...)" (meter_suggest over
 * meter_dir_names; json: .json files count too). Returns -ENOENT. */
int meter_unknown_name(const char *kind, const char *name, const char *dir, bool json, char *err, size_t errlen);

/* True when s ends with suffix (".conf", ".json"). */
bool meter_has_suffix(const char *s, const char *suffix);

#endif
