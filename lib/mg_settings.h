/* mg_settings: one table per program for its settings, as Redis's
 * static_configs[]: each row is a long flag, an INI key, a type with its
 * range or names, a default and a help text. From the table come the
 * getopt_long options, the merge of the INI file with the flags (the file
 * is read first, wherever --config stands; every flag then replaces its
 * key: "flags win"), the checks of every value with errors that name the
 * flag or the FILE:LINE it came from, and --help.
 *
 *   static const mg_setting_t settings[] = {
 *       MG_SETTING_TITLE("scheduling:"),
 *       { .flag = "slots", .section = "worker", .key = "slots", .type = MG_SETTING_INT,
 *         .lo = 1, .hi = 4096, .def = "8", .arg = "N", .help = "sequences in flight",
 *         MG_SETTING_AT(serve_opts_t, slots) },
 *   };
 *
 * A flag is the same as `--set section.key=value`; the value it sets is
 * recorded with the flag as its origin (mg_config_origin), so a range
 * error reads "--slots: [worker] slots = "0": expected 1 to 4096". One
 * thread at a time (getopt_long's globals). */
#ifndef MG_SETTINGS_H
#define MG_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "mg_config.h"

typedef enum mg_setting_type {
	MG_SETTING_STRING,	/* const char * (borrowed from the config) */
	MG_SETTING_BOOL,	/* bool: yes/no, true/false, on/off, 1/0 */
	MG_SETTING_INT,		/* a decimal integer in lo..hi; int32_t/uint32_t or int64_t/uint64_t */
	MG_SETTING_DURATION,	/* int64_t ns, "500ms", "30s", "10min" (bare numbers: seconds), lo..hi ns */
	MG_SETTING_SIZE,	/* uint64_t bytes, lo..hi */
	MG_SETTING_ENUM,	/* int: the index of the value in names[] */
	MG_SETTING_LIST,	/* a repeatable string flag: each value kept whole (a file
				 * name may hold a comma), at most hi of them (hi 0: as many
				 * as the array at off holds); apply() fills const char *[]
				 * at off and its size_t count at count_off (MG_SETTING_LIST_AT) */
	MG_SETTING_HEADING,	/* not a setting: a heading line in --help */
} mg_setting_type_t;

/* Row flags. */
#define MG_SETTING_REPEAT 1u	/* the flag may repeat: its values join with ',' */
#define MG_SETTING_OPERAND 2u	/* a row without flag: the next argument that is no
				 * option ("submit FILE"), named by arg in errors;
				 * a LIST row takes as many as it holds ("TABLE...");
				 * --help lists it when it has a help text */

typedef struct mg_setting {
	const char *flag;		/* long flag without "--"; NULL: no long flag */
	char short_flag;		/* 'n' for -n, or 0; a row without flag nor
					 * short_flag is a file-only key */
	const char *section, *key;	/* the INI key; NULL: a flag that is no key */
	mg_setting_type_t type;
	const char *def;		/* the default as text (used when absent, shown in
					 * --help), or NULL: the field keeps what it holds */
	int64_t lo, hi;			/* INT, DURATION (ns), SIZE: the range, when hi > lo */
	const char *const *names;	/* ENUM: the names, NULL-terminated */
	const char *set;		/* a flag without argument: the value it gives the key */
	const char *excludes;		/* flags (comma-separated) this one refuses beside it */
	unsigned flags;			/* MG_SETTING_REPEAT, MG_SETTING_OPERAND */
	const char *arg;		/* the argument in --help: FILE, N, DUR */
	const char *help;		/* one or more lines */
	const char *(*help_fill)(void);	/* non-NULL: help is a printf format whose
					 * one %s this fills when --help runs (a
					 * directory known at run time) */
	size_t off, size;		/* where apply() stores the value; size 0: nowhere */
	size_t count_off;		/* LIST: where apply() stores the count */
} mg_setting_t;

#define MG_SETTING_AT(type, field) .off = offsetof(type, field), .size = sizeof(((type *)0)->field)
#define MG_SETTING_LIST_AT(type, array, count) MG_SETTING_AT(type, array), .count_off = offsetof(type, count)
#define MG_SETTING_TITLE(text) { .type = MG_SETTING_HEADING, .help = (text) }

/* A program's commands ("marginctl submit", "margin-worker serve"): --help
 * lists them after the flags, mg_settings_command_find looks one up. */
typedef struct mg_settings_command {
	const char *name;
	int (*fn)(int argc, char **argv);	/* argv[0] is the command's name */
	const char *help;			/* one line */
} mg_settings_command_t;

typedef struct mg_settings_spec {
	const char *prog;		/* "margind", "margin-worker serve": starts --help */
	const char *synopsis;		/* the usage lines after "usage: " */
	const char *intro;		/* a paragraph before the flags, or NULL */
	const char *epilog;		/* text after the flags (exit status...), or NULL */
	const char *version;		/* non-NULL: --version prints "prog version" */
	const char *set_example;	/* non-NULL: --set SECTION.KEY=VALUE, with this example */
	bool no_config;			/* flags only (no --config, no file): the keys are
					 * names in an mg_config_t the program fills from
					 * the flags alone; errors and --help name the flag */
	const mg_setting_t *settings;
	size_t n;
	const mg_settings_command_t *commands;	/* NULL: none */
	size_t n_commands;
} mg_settings_spec_t;

/* Parses argv (argv[0] is the program or command name) into cfg: --config
 * FILE is loaded first, then every flag in order. Returns 0; 1 when --help
 * (or --version) was printed to stdout; -EINVAL for bad usage (unknown
 * option, missing value, stray argument, excluded pair, a bad value, a
 * LIST flag given more often than it may: "at most 8 --prices") and
 * another negative errno when the file cannot be read, with the reason in
 * err. Every value the table knows is checked, wherever it came from. */
int mg_settings_parse(const mg_settings_spec_t *spec, mg_config_t *cfg, int argc, char **argv,
		      char *err, size_t errlen);

/* Head mode, for a command with subcommands ("job [--ctl E] SUBCOMMAND
 * ..."), as getopt's "+": the options end at the first operand, and
 * *ret_next receives its index (argc when there is none); the operands are
 * left to the caller (the table's OPERAND rows are not filled). --help
 * counts only before that operand, so "job submit --help" reaches submit.
 * Returns as mg_settings_parse; *ret_next only on 0. */
int mg_settings_parse_head(const mg_settings_spec_t *spec, mg_config_t *cfg, int argc, char **argv,
			   int *ret_next, char *err, size_t errlen);

/* Stores every row's value (or its default when the key is absent) into
 * the struct at base, at the row's offset. 0, or -EINVAL with the reason
 * in err. Strings are borrowed from cfg. */
int mg_settings_apply(const mg_settings_spec_t *spec, const mg_config_t *cfg, void *base,
		      char *err, size_t errlen);

/* For a command's main: mg_settings_parse, then mg_settings_apply into
 * base; a refusal is said on stderr as "prog: reason" (an unknown option
 * adds "(see --help)"). 0; 1 after --help;
 * -EINVAL for bad usage (exit 2); another negative errno (exit 1). Strings
 * in base are borrowed from cfg. */
int mg_settings_parse_into(const mg_settings_spec_t *spec, mg_config_t *cfg, int argc, char **argv, void *base);

/* mg_settings_parse_into in head mode when ret_next is non-NULL
 * (mg_settings_parse_head); NULL: exactly mg_settings_parse_into. */
int mg_settings_parse_head_into(const mg_settings_spec_t *spec, mg_config_t *cfg, int argc, char **argv,
				void *base, int *ret_next);

/* Checks one value the table knows (0 when the key is not in the table). */
int mg_settings_check(const mg_settings_spec_t *spec, const mg_config_t *cfg, const char *section,
		      const char *key, char *err, size_t errlen);

/* The i-th value (from 0) of a LIST row's key, or NULL past the last one.
 * Borrowed from cfg. */
const char *mg_settings_list_get(const mg_config_t *cfg, const char *section, const char *key, size_t i);

/* Whether the key's value came from its flag (not the file, not --set). */
bool mg_settings_from_flag(const mg_settings_spec_t *spec, const mg_config_t *cfg,
			   const char *section, const char *key);

/* A decimal integer in lo..hi, the whole string: 0, or -EINVAL (empty,
 * trailing characters, overflow, out of range). *ret only on success. */
int mg_settings_parse_int(const char *s, int64_t lo, int64_t hi, int64_t *ret);

/* The command called name, or NULL. */
const mg_settings_command_t *mg_settings_command_find(const mg_settings_spec_t *spec, const char *name);

/* --help: the synopsis, the flags with their keys and defaults, then the
 * keys that have no flag. */
void mg_settings_usage(const mg_settings_spec_t *spec, FILE *f);

#endif
