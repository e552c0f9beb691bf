/* meter_catalog: the hardware profiles and price tables margind and
 * marginctl are given (paths or names of data files), the default price
 * tables and reference models. No shared state; any thread.
 *
 * How margind ([meter] settings, --hardware, --prices) and marginctl
 * (cost, economics) resolve the profiles and price tables they are given:
 * a spec is a file path when it contains '/' or names an existing file,
 * else a name looked up in a directory (meter_names.h). */
#ifndef METER_CATALOG_H
#define METER_CATALOG_H

#include <stdbool.h>
#include <stddef.h>

#include "hwprof.h"
#include "meter_names.h"
#include "pricetab.h"

/* What is loaded when nothing is configured (NULL-terminated, in load
 * order): the price tables (exchange rates first) of the prices
 * directory, and the reference models compared with. */
extern const char *const meter_default_price_tables[];
extern const char *const meter_default_refs[];
/* The embedding reference models (mode = embedding entries) that
 * /v1/embeddings calls are compared with by default. */
extern const char *const meter_default_embed_refs[];

/* The endpoint of embedding calls (the journal's jobs.endpoint, the
 * ledger's endpoint column). Embedding calls are compared with embedding
 * prices only, every other call with the other prices only. */
#define METER_ENDPOINT_EMBEDDINGS "/v1/embeddings"
bool meter_endpoint_is_embedding(const char *endpoint);

/* A hardware profile: spec is a file (hwprof_load), or NAME or NAME.conf
 * in dir (hwprof_find: DIR/NAME.conf, whose name must be NAME). -ENOENT
 * with a message when spec is a name and dir is NULL or "", or names no
 * profile there (the message lists the profiles of dir, the close ones
 * first); otherwise hwprof_load's and hwprof_find's errors. *ret is
 * written only on success. */
int meter_load_profile(const char *spec, const char *dir, struct hwprof *ret, char *err, size_t errlen);

/* Adds one price table to t: spec is a file, or DIR/SPEC, else
 * DIR/SPEC.conf (dir NULL or "": spec is taken as a path). A path ending
 * in ".json" is read as LiteLLM's format (date: the date to record for
 * its prices, or NULL for the file's; litellm_load), anything else as INI
 * (pricetab_load). -ENOENT for a name that is no table of dir (the message
 * lists its tables, the close ones first); their errors, -ENAMETOOLONG for
 * a path that does not fit. */
int meter_load_prices(struct pricetab *t, const char *spec, const char *dir, const char *date, char *err,
		      size_t errlen);

/* A price given as text, "P" or "IN/OUT" (exact non-negative decimals,
 * currency units per 1M tokens; "P" is both), into an entry called name
 * (also its model) of provider (NULL: none), mode chat, no batch tier.
 * source is recorded as where each price and the entry came from. -EINVAL
 * with a message for a malformed price or a currency that is not an ISO
 * 4217 code. *ret is written only on success. */
int meter_parse_price_entry(const char *text, const char *name, const char *provider, const char *currency,
			    const char *source, struct pricetab_entry *ret, char *err, size_t errlen);

/* The entry called name of t; -ENOENT with a message naming where (what:
 * "table cn-2024-05-after") and the entries of t, the close ones first. */
int meter_find_entry(const struct pricetab *t, const char *name, const char *what, const struct pricetab_entry **ret,
		     char *err, size_t errlen);

/* A price entry by name, across the price tables of dir: spec is
 * TABLE:ENTRY (TABLE a file or a table of dir) or a bare ENTRY, looked up
 * in every table of dir (meter_dir_names). The entry is copied to *ret and
 * the table it came from (its name in dir, or the file) to ret_table.
 * -ENOENT when no table holds it (the message names the close entries as
 * TABLE:ENTRY), -EEXIST when several do (the message names every
 * candidate as TABLE:ENTRY), the loaders' errors. */
int meter_resolve_entry(const char *spec, const char *dir, struct pricetab_entry *ret, char *ret_table,
			size_t tablelen, char *err, size_t errlen);

/* The meter_default_refs that t holds an entry for, in order, at most max
 * of them, into ret (borrowed: static strings). Returns how many. */
size_t meter_find_default_refs(const struct pricetab *t, const char **ret, size_t max);
/* The same for meter_default_embed_refs. */
size_t meter_find_default_embed_refs(const struct pricetab *t, const char **ret, size_t max);
/* 0 when t has an entry called name of the kind asked for (embedding:
 * mode = embedding; else any other mode); -ENOENT (no such entry) or
 * -EINVAL (the other kind) with a message starting with what (e.g.
 * "[meter] refs") that names the entry, its mode and where it belongs. */
int meter_check_ref_kind(const struct pricetab *t, const char *name, bool embedding, const char *what, char *err,
			 size_t errlen);


#endif
